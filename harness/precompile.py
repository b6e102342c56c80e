"""Compile a suite's Triton kernels in parallel processes before the suite is timed.

A suite measures its cases one after another in one process, so every Triton specialization it
needs (one per cell, hidden size, batch block, dtype, path and mode) would otherwise be compiled
serially, at the case's warm-up: minutes of wall-clock time on a GPU run whose device time is
scarce. :func:`precompile` runs each distinct Triton case once, at a short sequence length, in a
pool of ``jobs`` processes; they fill Triton's on-disk cache (``TRITON_CACHE_DIR``, default
``~/.triton/cache``), which the suite's process then reads. Nothing here is timed or recorded.

The sequence length is not a kernel specialization (it is a runtime argument, and
:data:`WARM_SEQ_LEN` keeps its divisibility by 16, the property Triton specializes integers on), so
a case compiled at ``WARM_SEQ_LEN`` steps uses the same kernels as at its own length.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

from rnnbench.harness.cases import Case

#: steps run per case when compiling (a multiple of 16, like every suite's sequence lengths)
WARM_SEQ_LEN = 16


@dataclass(frozen=True)
class Compiled:
    """What compiling one case gave: its wall-clock seconds, or the error that stopped it."""

    case: Case
    seconds: float
    error: str | None = None


def cases_to_compile(cases: list[Case]) -> list[Case]:
    """The distinct Triton cases of ``cases`` that run on CUDA with a timed mode, shortened to
    :data:`WARM_SEQ_LEN` steps (first occurrence kept, in suite order)."""
    from rnnbench.harness.backends import get_backend
    from rnnbench.harness.experiments import get_experiment
    from rnnbench.harness.experiments.base import TIMED_MODES

    chosen: dict[tuple, Case] = {}
    for case in cases:
        if case.device != "cuda" or case.mode not in TIMED_MODES or not get_backend(case.backend).uses_triton:
            continue
        if not get_experiment(case.experiment).uses_workload:
            continue
        short = dataclasses.replace(case, experiment="speed", seq_len=WARM_SEQ_LEN, seed=0)
        key = (short.backend, short.family, short.dtype, short.batch, short.input_size, short.hidden_size,
               short.mode, short.params)
        chosen.setdefault(key, short)
    return list(chosen.values())


def compile_case(case: Case) -> Compiled:
    """Run ``case`` once the ways the suite will (the gate's outputs and the timed call), which
    compiles its kernels into Triton's cache."""
    from rnnbench.harness.backends import build_workload
    from rnnbench.harness.process import prepare_process

    start = time.perf_counter()
    try:
        prepare_process(case)
        import torch

        workload = build_workload(case)
        workload.outputs(case.mode)
        workload.callable(case.mode)()
        torch.cuda.synchronize()
    except Exception as error:  # reported, never raised: the suite records the case's own error
        return Compiled(case, time.perf_counter() - start, f"{type(error).__name__}: {error}")
    return Compiled(case, time.perf_counter() - start)


def precompile(todo: list[Case], jobs: int, report=print) -> list[Compiled]:
    """Run each of ``todo`` (from :func:`cases_to_compile`) once in ``jobs`` fresh processes;
    ``report(line)`` is told of each case as it finishes."""
    if not todo:
        return []
    context = multiprocessing.get_context("spawn")  # a child must import Triton with its own settings
    results = []
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = [pool.submit(compile_case, case) for case in todo]
        for future in as_completed(futures):
            result = future.result()
            results.append(result)
            case = result.case
            outcome = "ok" if result.error is None else f"error: {result.error}"
            report(f"[{len(results)}/{len(todo)}] {case.backend} {case.family} {case.dtype} B={case.batch} "
                   f"I={case.input_size} H={case.hidden_size} {case.mode} {dict(case.params) or ''}: "
                   f"{result.seconds:.1f} s, {outcome}")
    return results
