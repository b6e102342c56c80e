"""Measuring one case: from a :class:`~rnnbench.harness.cases.Case` to its result rows.

Order of work for every case: check the backend can run here (else one ``skipped`` row); build the
workload; run the correctness gate against the float64 reference at the same shape and record the
error as an ``experiment=numerics`` row; then, only if the gate passed, measure the experiment's
metric. Exceptions become ``error`` rows and out-of-memory conditions ``oom`` rows, keeping any row
already measured for the case.
"""

from __future__ import annotations

import math

from rnnbench.harness import memory, timing
from rnnbench.harness.cases import Case
from rnnbench.harness.correctness import Comparison, compare, reference_outputs
from rnnbench.harness.problems import Problem
from rnnbench.harness.registry import get_backend
from rnnbench.harness.results import ResultRow


def problem_for(case: Case) -> Problem:
    return Problem(case.family, case.seq_len, case.batch, case.input_size, case.hidden_size, case.seed)


def build_workload(case: Case):
    return get_backend(case.backend).factory(problem_for(case), case.dtype, case.device)


def apply_thread_limit(threads: int | None) -> None:
    """Pin torch's intra-op threads and the BLAS threads behind NumPy to ``threads`` (None: defaults)."""
    if threads is None:
        return
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)


def measure_case(case: Case, run_id: str) -> list[ResultRow]:
    backend = get_backend(case.backend)
    reason = backend.skip_reason(case.family, case.device, case.dtype, case.experiment)
    if reason is None and case.experiment == "memory" and case.device == "cpu":
        reason = memory.cpu_peak_memory_supported()
    if reason is not None:
        return [case.failed_row(run_id, "skipped", reason)]
    rows: list[ResultRow] = []
    try:
        workload = build_workload(case)
        check, note = check_correctness(case, workload)
        rows.append(case.row(
            run_id, "max_abs_err", check.max_abs_err, "", experiment="numerics",
            status="ok" if check.passed else "incorrect", note=note,
        ))
        if case.experiment == "numerics":
            return rows
        if not check.passed:
            rows.append(case.failed_row(run_id, "incorrect", f"not measured: correctness check failed ({check.note})"))
            return rows
        rows.extend(_measure_metric(case, workload, run_id))
    except MemoryError as error:
        rows.append(case.failed_row(run_id, "oom", f"out of memory: {error}"))
    except Exception as error:  # a failing backend must not stop the run
        status = "oom" if _is_cuda_oom(error) else "error"
        rows.append(case.failed_row(run_id, status, f"{type(error).__name__}: {error}".strip()[:500]))
    return rows


def check_correctness(case: Case, workload) -> tuple[Comparison, str]:
    """The correctness gate of ``case``: ``workload``'s outputs (and gradients, where the backend's
    entry checks them in this dtype) against the float64 reference at the same shape.

    Returns the comparison and a note naming the reference and the worst tensor."""
    backend = get_backend(case.backend)
    reference_name, reference_device = backend.reference_for(case.device)
    gradients = backend.checks_gradients(case.dtype)
    reference = reference_outputs(problem_for(case), reference_name, reference_device, case.mode, case.dtype, gradients)
    check = compare(workload.outputs(case.mode), reference, case.dtype)
    scope = "" if gradients or case.mode == "fwd" else "forward outputs only; "
    return check, f"vs {reference_name} float64 on {reference_device}; {scope}{check.note}"


def _measure_metric(case: Case, workload, run_id: str) -> list[ResultRow]:
    fn = workload.callable(case.mode)
    if case.experiment == "memory":
        if case.device == "cuda":
            peak = memory.cuda_peak_memory_mib(fn)
        else:
            del fn, workload  # the child process builds its own copy
            peak = memory.cpu_peak_memory_mib(case)
        return [case.row(run_id, "peak_memory", peak, "MiB", note=f"{case.device} peak beyond pre-call allocation")]
    if case.device == "cuda":
        rows = [_timing_row(case, run_id, "latency", timing.cuda_latency(fn, case.timing), "do_bench, CUDA events, L2 flushed")]
        try:
            graphed = timing.cuda_graph_latency(fn, case.timing)
            rows.append(_timing_row(case, run_id, "latency_cudagraph", graphed, "CUDA graph replay, warm L2"))
        except Exception as error:  # some backends cannot be captured; the event timing stands
            rows.append(case.row(run_id, "latency_cudagraph", math.nan, "ms", status="error", n=0,
                                 note=f"graph capture failed: {type(error).__name__}: {error}"[:500]))
        return rows
    return [_timing_row(case, run_id, "latency", timing.cpu_latency(fn, case.timing), "perf_counter per call")]


def _timing_row(case: Case, run_id: str, metric: str, result: timing.Timing, how: str) -> ResultRow:
    return case.row(run_id, metric, result.median_ms, "ms", q25=result.q25_ms, q75=result.q75_ms, n=result.n, note=how)


def _is_cuda_oom(error: Exception) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return isinstance(error, torch.cuda.OutOfMemoryError)
