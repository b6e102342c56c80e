"""What an experiment declares: what it measures, its primary metric and unit, whether the
correctness gate runs first, and how it turns a case into result rows.

The driver (:func:`rnnbench.harness.measure.measure_case`) does everything experiments share: it
asks the backend (and the experiment) whether the case can run here, builds the workload when the
experiment uses one, runs the correctness gate when the experiment is ``gated``, turns exceptions
into ``error``/``oom`` rows, and decides the case's status from its primary row — the row of the
case's own experiment and :attr:`Experiment.metric`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from rnnbench.harness.cases import DEFAULT_MODES, RANDOM_TASK, Case
from rnnbench.harness.problems import PROBLEM_OPTIONS, RECURRENT_FAMILIES
from rnnbench.harness.results import ResultRow

#: the modes of one timed call (``train`` is for the training experiments)
TIMED_MODES = DEFAULT_MODES
#: ``measure(case, workload, run_id) -> rows``; ``workload`` is None when ``uses_workload`` is False
Measure = Callable[[Case, object, str], list[ResultRow]]


def accepts_random_problems_only(case: Case) -> str | None:
    """The case check of experiments that run on seeded random problems: their only parameters are
    the recurrent problem options (``bidirectional = true``, ``packed = true``; omitted otherwise)."""
    if case.task != RANDOM_TASK:
        return f"task must be {RANDOM_TASK!r} (seeded random inputs and weights), got {case.task!r}"
    unknown = [name for name, _ in case.params if name not in PROBLEM_OPTIONS]
    if unknown:
        return f"takes no parameters but the problem options {', '.join(PROBLEM_OPTIONS)}; got {', '.join(unknown)}"
    for name, value in case.params:
        if value is not True:
            return f"problem option {name} must be true when given (leave it out otherwise), got {value!r}"
    if case.params and case.family not in RECURRENT_FAMILIES:
        return f"problem options apply to the recurrent families {', '.join(RECURRENT_FAMILIES)}, not {case.family!r}"
    if case.mode not in TIMED_MODES:
        return f"mode must be one of {', '.join(TIMED_MODES)}, got {case.mode!r}"
    return None


def problem_options(case: Case) -> tuple[str, ...]:
    """The problem options a case asks for (see :func:`accepts_random_problems_only`)."""
    return tuple(name for name in PROBLEM_OPTIONS if case.param_dict.get(name) is True)


def always_runnable(case: Case) -> str | None:
    return None


def unchanged(case: Case) -> Case:
    return case


@dataclass(frozen=True)
class Experiment:
    """One kind of measurement; one module under ``harness/experiments/`` declares each.

    * ``metric``/``unit``: the primary metric. Its row marks the case finished for ``--resume`` and
      its status is the case's status; other rows of the case (a CUDA-graph timing, a loss curve)
      are extra information.
    * ``gated``: the float64 correctness gate at the case's shape runs first and is stored as a
      ``numerics`` row; if it fails, the experiment is not measured (status ``incorrect``).
    * ``timed``: needs a device where the backend's timings mean something (``Backend.timed_devices``;
      the Triton interpreter on CPU is checked for numerics only).
    * ``uses_workload``: ``measure`` gets the backend's workload for the case's random problem
      (:mod:`rnnbench.harness.workloads`); otherwise it gets None and builds what it needs.
    * ``check_case(case)``: why a case is malformed for this experiment (wrong task, unknown or bad
      parameter), or None; suites call it when they are loaded, so bad input fails before a run.
    * ``requirement(case)``: why this machine cannot run the case (besides the backend's own
      reasons), or None; the case is then recorded ``skipped`` with that reason.
    * ``prepare_case(case)``: the case completed, called by suites after ``check_case`` passed:
      every parameter the experiment would otherwise default is written into ``params``, so the
      case's identity (and its rows' ``params`` column) says exactly what was run.
    """

    name: str
    metric: str
    unit: str
    description: str
    measure: Measure
    gated: bool = True
    timed: bool = True
    uses_workload: bool = True
    check_case: Callable[[Case], str | None] = accepts_random_problems_only
    requirement: Callable[[Case], str | None] = always_runnable
    prepare_case: Callable[[Case], Case] = unchanged
