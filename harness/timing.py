"""Latency of a zero-argument callable: median and interquartile range, in milliseconds.

* :func:`cpu_latency`: ``time.perf_counter`` around each call after ``warmup`` calls; samples are
  drawn until ``min_reps`` exist and the time budget (or ``max_reps``) is used up. A sample is one
  whole call, so it includes Python overhead, allocation of outputs and the input projection.
* :func:`cuda_latency`: ``triton.testing.do_bench`` with ``return_mode="all"``: CUDA events around
  each call, a 256 MB cache flush enqueued before every sample (outside the timed region) so L2
  starts cold, warm-up and repetitions given as time budgets. Includes host launch overhead where
  the GPU waits for the host.
* :func:`cuda_graph_latency`: ``triton.testing.do_bench_cudagraph``: the calls are captured in one
  CUDA graph and replayed, which removes host launch overhead (important for designs that launch a
  kernel per time step); no cache flush (warm L2).

First-call work (Triton compilation, cuDNN plan selection, lazy allocation) happens in warm-up and
is excluded from every timing.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from rnnbench.harness.cases import TimingOptions


@dataclass(frozen=True)
class Timing:
    """Summary of latency samples in milliseconds."""

    median_ms: float
    q25_ms: float
    q75_ms: float
    n: int

    @classmethod
    def from_samples_ms(cls, samples: list[float]) -> "Timing":
        if not samples:
            raise ValueError("no timing samples were taken")
        q25, q75 = np.percentile(samples, [25, 75])
        return cls(statistics.median(samples), float(q25), float(q75), len(samples))


def cpu_latency(fn: Callable[[], object], options: TimingOptions) -> Timing:
    for _ in range(options.warmup):
        fn()
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < options.min_reps or (
        len(samples) < options.max_reps and time.perf_counter() - started < options.budget_s
    ):
        begin = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - begin) * 1e3)
    return Timing.from_samples_ms(samples)


def cuda_latency(fn: Callable[[], object], options: TimingOptions) -> Timing:
    import torch
    import triton.testing

    fn()  # first-call work, outside the estimate below
    torch.cuda.synchronize()
    budget_ms = options.budget_s * 1e3
    # do_bench takes as many samples as fit in ``rep`` ms by its own estimate of one call, which is
    # a single sample (no spread) for calls longer than the budget: ``rep`` is stretched so that
    # at least min_reps fit, and shrunk so that at most max_reps do
    call_ms = _estimate_call_ms(fn)
    rep_ms = min(max(budget_ms, (options.min_reps + 0.5) * call_ms), (options.max_reps + 0.5) * call_ms)
    samples = triton.testing.do_bench(fn, warmup=max(25.0, budget_ms / 4), rep=rep_ms, return_mode="all")
    return Timing.from_samples_ms(list(samples))


def _estimate_call_ms(fn: Callable[[], object]) -> float:
    """Milliseconds of one warm call of ``fn`` on the current CUDA stream (CUDA events); one call
    is enough to size the repetitions, and do_bench re-estimates on its own anyway."""
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return max(start.elapsed_time(end), 1e-3)


def cuda_graph_latency(fn: Callable[[], object], options: TimingOptions) -> Timing:
    import torch
    import triton.testing

    fn()
    torch.cuda.synchronize()
    samples = triton.testing.do_bench_cudagraph(fn, rep=options.budget_s * 1e3, return_mode="all")
    return Timing.from_samples_ms(list(samples))
