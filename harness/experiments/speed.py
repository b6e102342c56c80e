"""``speed``: latency of one call (see :mod:`rnnbench.harness.timing` for what a timing includes).

CPU: ``latency`` from ``perf_counter`` around each call. CUDA: ``latency`` from
``triton.testing.do_bench`` (CUDA events, L2 flushed) and ``latency_cudagraph`` from a CUDA-graph
replay (warm L2, no launch overhead); a backend that cannot be captured gets an ``error``
``latency_cudagraph`` row while its ``latency`` row, the primary one, stands.
"""

from __future__ import annotations

from rnnbench.harness import timing
from rnnbench.harness.experiments.base import Experiment
from rnnbench.harness.results import ResultRow


def measure_latency(case, workload, run_id: str) -> list[ResultRow]:
    fn = workload.callable(case.mode)
    if case.device != "cuda":
        return [_timing_row(case, run_id, "latency", timing.cpu_latency(fn, case.timing), "perf_counter per call")]
    rows = [_timing_row(case, run_id, "latency", timing.cuda_latency(fn, case.timing), "do_bench, CUDA events, L2 flushed")]
    try:
        graphed = timing.cuda_graph_latency(fn, case.timing)
        rows.append(_timing_row(case, run_id, "latency_cudagraph", graphed, "CUDA graph replay, warm L2"))
    except Exception as error:  # some backends cannot be captured; the event timing stands
        rows.append(ResultRow.missing(case, run_id, "latency_cudagraph", "ms", "error",
                                      f"graph capture failed: {type(error).__name__}: {error}"[:500]))
    return rows


def _timing_row(case, run_id: str, metric: str, result: timing.Timing, how: str) -> ResultRow:
    return ResultRow.measured(case, run_id, metric, result.median_ms, "ms", q25=result.q25_ms, q75=result.q75_ms,
                              n=result.n, note=how)


EXPERIMENT = Experiment(
    name="speed",
    metric="latency",
    unit="ms",
    description="median latency of one call with its interquartile range",
    measure=measure_latency,
)
