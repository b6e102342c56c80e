"""``memory``: peak memory of one call beyond what was allocated before it, in MiB.

CUDA: ``torch.cuda.max_memory_allocated``; CPU: incremental peak RSS of a fresh process (see
:mod:`rnnbench.harness.memory`, which also says what the peak includes).
"""

from __future__ import annotations

from rnnbench.harness import memory
from rnnbench.harness.experiments.base import Experiment
from rnnbench.harness.results import ResultRow


def measure_peak_memory(case, workload, run_id: str) -> list[ResultRow]:
    if case.device == "cuda":
        peak = memory.cuda_peak_memory_mib(workload.callable(case.mode))
    else:
        del workload  # the child process builds its own copy
        peak = memory.cpu_peak_memory_mib(case)
    return [ResultRow.measured(case, run_id, "peak_memory", peak, "MiB", note=f"{case.device} peak beyond pre-call allocation")]


def _requirement(case) -> str | None:
    return memory.cpu_peak_memory_supported() if case.device == "cpu" else None


EXPERIMENT = Experiment(
    name="memory",
    metric="peak_memory",
    unit="MiB",
    description="peak memory of one call beyond what was allocated before it",
    measure=measure_peak_memory,
    requirement=_requirement,
)
