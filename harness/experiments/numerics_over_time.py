"""``numerics_over_time``: how a backend's error against the float64 reference grows along a sequence.

For a recurrent case (``rnn``/``lstm``, forward mode) the backend's outputs ``h_t = y[t-1]`` for
``t = 1..T`` are compared with the float64 reference (NumPy on CPU, ``torch.nn`` in float64 on the
GPU) computed from the same inputs and weights rounded to the case's dtype, so the error is that of
the computation, not of storing the inputs. At about :data:`SAMPLED_STEPS` steps spaced
geometrically from 1 to T (always including T), the absolute errors over the ``B x H`` elements of
``h_t`` are summarised as percentiles: rows ``err_p50``, ``err_p99``, ``err_max`` whose params
carry the step (``{"t": t}``); ``|h_t| <= 1`` for both cells, so these are also errors relative to
the state's range. The primary row, ``err_max`` without ``t``, is the largest error at any step.

This is a measurement of error, not a pass/fail check: it is not gated, and its status is ``ok``
whenever both sides ran (the correctness gate of the other experiments decides pass/fail).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from rnnbench.harness.backends import get_backend, problem_for
from rnnbench.harness.cases import Case
from rnnbench.harness.correctness import reference_outputs
from rnnbench.harness.experiments.base import Experiment, accepts_random_problems_only
from rnnbench.harness.problems import RECURRENT_FAMILIES
from rnnbench.harness.results import ResultRow

SAMPLED_STEPS = 24
PERCENTILES = {"err_p50": 50.0, "err_p99": 99.0, "err_max": 100.0}


def sampled_steps(seq_len: int, count: int = SAMPLED_STEPS) -> list[int]:
    """About ``count`` steps in ``1..seq_len``, spaced geometrically, always including ``seq_len``."""
    if seq_len <= count:
        return list(range(1, seq_len + 1))
    steps = np.unique(np.round(np.geomspace(1, seq_len, num=count)).astype(int))
    return sorted(set(steps.tolist()) | {seq_len})


def error_by_step(outputs: np.ndarray, reference: np.ndarray, steps: list[int]) -> dict[int, dict[str, float]]:
    """Percentiles of ``|outputs - reference|`` over each sampled step's ``(B, H)`` slice; arrays are
    time-major ``(T, B, H)``, steps 1-based."""
    errors = {}
    for t in steps:
        absolute = np.abs(outputs[t - 1] - reference[t - 1]).ravel()
        errors[t] = {metric: float(np.percentile(absolute, q)) for metric, q in PERCENTILES.items()}
    return errors


def measure_error_over_time(case: Case, workload, run_id: str) -> list[ResultRow]:
    problem = problem_for(case)
    reference_name, reference_device = get_backend(case.backend).reference_for(case.device, problem.options)
    reference = reference_outputs(problem, reference_name, reference_device, "fwd", case.dtype)["y"]
    outputs = workload.outputs("fwd")["y"]
    if outputs.shape != reference.shape:
        raise ValueError(f"backend output y has shape {outputs.shape}, expected {reference.shape}")
    if not np.isfinite(outputs).all():
        raise FloatingPointError("backend output y contains NaN or inf")
    by_step = error_by_step(outputs, reference, sampled_steps(case.seq_len))
    how = f"|h_t - {reference_name} float64 on {reference_device}| over B x H"
    rows = []
    for t, summary in by_step.items():
        at_step = replace(case, params=(*case.params, ("t", t)))  # re-sorted by Case
        rows += [ResultRow.measured(at_step, run_id, metric, value, "", note=how) for metric, value in summary.items()]
    worst = max(summary["err_max"] for summary in by_step.values())
    rows.append(ResultRow.measured(case, run_id, "err_max", worst, "", note=f"largest {how} at any sampled step"))
    return rows


def _check_case(case: Case) -> str | None:
    problem = accepts_random_problems_only(case)
    if problem is not None:
        return problem
    if case.family not in RECURRENT_FAMILIES:
        return f"needs a recurrent family ({', '.join(RECURRENT_FAMILIES)}), got {case.family!r}"
    if case.mode != "fwd":
        return f"compares forward states, so mode must be 'fwd', got {case.mode!r}"
    return None


EXPERIMENT = Experiment(
    name="numerics_over_time",
    metric="err_max",
    unit="",
    description="error of h_t against the float64 reference at steps 1..T (percentiles over B x H)",
    measure=measure_error_over_time,
    gated=False,
    timed=False,
    check_case=_check_case,
)
