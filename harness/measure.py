"""Measuring one case: from a :class:`~rnnbench.harness.cases.Case` to its result rows.

Order of work for every case: check the backend and the experiment can run here (else one
``skipped`` row); build the workload if the experiment uses one; if the experiment is gated, run the
correctness gate against the float64 reference at the same shape and record the error as an
``experiment=numerics`` row, stopping with an ``incorrect`` primary row if it fails; then let the
experiment measure. Exceptions become ``error`` rows and out-of-memory conditions ``oom`` rows,
keeping any row already measured for the case. Every row is stamped with the host and the device's
name.
"""

from __future__ import annotations

import platform
from dataclasses import replace
from functools import lru_cache

from rnnbench.harness.backends import build_workload, get_backend
from rnnbench.harness.cases import Case
from rnnbench.harness.correctness import check_correctness
from rnnbench.harness.experiments import get_experiment
from rnnbench.harness.errors import Unsupported
from rnnbench.harness.experiments.base import problem_options
from rnnbench.harness.results import ResultRow, case_key


def measure_case(case: Case, run_id: str) -> list[ResultRow]:
    """Every row of ``case`` (see the module docstring); never raises for a failing backend."""
    rows = _measure(case, run_id)
    where = {"host": platform.node(), "device_name": device_name(case.device)}
    return [replace(row, **where) for row in rows]


def primary_key(case: Case) -> tuple[str, ...]:
    """The key of the row that marks ``case`` finished: its own experiment's primary metric."""
    return case_key(case, get_experiment(case.experiment).metric)


def gate_key(case: Case) -> tuple[str, ...] | None:
    """The key of the correctness-gate row that measuring ``case`` writes, if its experiment is
    gated: the primary key of the ``numerics`` case of the same identity."""
    return primary_key(_gate_case(case)) if get_experiment(case.experiment).gated else None


def failure_rows(case: Case, run_id: str, note: str, status: str = "error") -> list[ResultRow]:
    """The row recorded for ``case`` when it could not be measured at all (its worker died or it
    raised outside the experiment): its primary metric, ``status``, and ``note`` saying why."""
    experiment = get_experiment(case.experiment)
    return [ResultRow.missing(case, run_id, experiment.metric, experiment.unit, status, note)]


def case_status(case: Case, rows: list[ResultRow]) -> str:
    """The status of ``case``: that of its primary row (``error`` if it produced none)."""
    key = primary_key(case)
    statuses = [row.status for row in rows if row.key == key]
    return statuses[-1] if statuses else "error"


def _measure(case: Case, run_id: str) -> list[ResultRow]:
    experiment = get_experiment(case.experiment)

    def primary(status: str, note: str) -> ResultRow:
        return failure_rows(case, run_id, note, status)[0]

    backend = get_backend(case.backend)
    reason = backend.skip_reason(case.family, case.device, case.dtype, timed=experiment.timed,
                                 options=problem_options(case)) or experiment.requirement(case)
    if reason is not None:
        return [primary("skipped", reason)]
    rows: list[ResultRow] = []
    try:
        workload = build_workload(case) if experiment.uses_workload else None
        if experiment.gated:
            check, note = check_correctness(case, workload)
            gate = _gate_case(case)
            rows.append(ResultRow.measured(gate, run_id, get_experiment(gate.experiment).metric, check.max_abs_err, "",
                                           status="ok" if check.passed else "incorrect", note=note))
            if not check.passed:
                if case.experiment != "numerics":
                    rows.append(primary("incorrect", f"not measured: correctness check failed ({check.note})"))
                return rows
        rows.extend(experiment.measure(case, workload, run_id))
    except Unsupported as error:
        rows.append(primary("skipped", str(error)))
    except MemoryError as error:
        rows.append(primary("oom", f"out of memory: {error}"))
    except Exception as error:  # a failing backend must not stop the run
        status = "oom" if _is_cuda_oom(error) else "error"
        rows.append(primary(status, f"{type(error).__name__}: {error}".strip()[:500]))
    return rows


def _gate_case(case: Case) -> Case:
    return case.with_experiment("numerics")


@lru_cache(maxsize=None)
def device_name(device: str) -> str:
    """The GPU's name for ``cuda``, the CPU model otherwise."""
    if device == "cuda":
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    from rnnbench.harness.env import cpu_model

    return cpu_model()


def _is_cuda_oom(error: Exception) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return isinstance(error, torch.cuda.OutOfMemoryError)
