"""Peak memory of one call of a workload, in MiB, beyond what was allocated before the call.

* CUDA: ``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()``, minus
  ``memory_allocated()`` before the call. Counts tensors allocated through PyTorch's caching
  allocator (Triton kernels' outputs included); the allocator's cache and cuDNN's workspace obtained
  through it count, CUDA context and library code do not.
* CPU: the same number for every backend, NumPy and torch alike: the case runs in a fresh child
  process, calls the workload once to warm up, returns freed heap to the OS (``malloc_trim``),
  resets the process's peak resident set size (writing 5 to ``/proc/self/clear_refs``) and reports
  ``VmHWM`` after the measured call minus ``VmRSS`` before it. Linux only.

  The child is forked from a zygote that imported the measuring code (torch, NumPy, the
  backends) and never built or ran a workload (:func:`rnnbench.harness.process.fresh_process_pool`), so no other
  case ever ran in the process whose peak is read: the peak is the case's own, as with a freshly
  started interpreter, without paying for a Python start-up and a torch import per case. The
  child dies with the process that asked for it.

Outputs of the measured call are alive at the peak, so they are included (for ``fwd_bwd``: the
output, final states and every gradient; inputs and parameters are not).
"""

from __future__ import annotations

import ctypes
import gc
import re
from typing import Callable

from rnnbench.harness.backends import build_workload
from rnnbench.harness.process import apply_thread_limit, fresh_process_pool

MIB = 2**20


def cuda_peak_memory_mib(fn: Callable[[], object]) -> float:
    import torch

    fn()
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    result = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - before
    del result
    return peak / MIB


def cpu_peak_memory_supported() -> str | None:
    """Why CPU peak memory cannot be measured here, or None if it can."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError as error:
        return f"resetting the peak RSS needs a writable /proc/self/clear_refs (Linux): {error}"
    return None


def cpu_peak_memory_mib(case) -> float:
    """Run ``case`` in a fresh process and return its incremental peak RSS in MiB."""
    with fresh_process_pool() as pool:
        return pool.submit(_child_peak_memory_mib, case).result()


def _child_peak_memory_mib(case) -> float:
    apply_thread_limit(case.timing.threads)
    fn = build_workload(case).callable(case.mode)
    fn()
    gc.collect()
    _malloc_trim()
    before_kib = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    result = fn()
    peak_kib = _status_kib("VmHWM")
    del result
    return (peak_kib - before_kib) * 1024 / MIB


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        match = re.search(rf"^{field}:\s+(\d+) kB", handle.read(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"/proc/self/status has no {field} line")
    return int(match.group(1))


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
