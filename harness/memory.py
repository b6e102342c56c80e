"""Peak memory of one call of a workload, in MiB, beyond what was allocated before the call.

* CUDA: ``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()``, minus
  ``memory_allocated()`` before the call. Counts tensors allocated through PyTorch's caching
  allocator (Triton kernels' outputs included); the allocator's cache and cuDNN's workspace obtained
  through it count, CUDA context and library code do not.
* CPU: the same number for every backend, NumPy and torch alike: the case runs in a fresh child
  process, maps the pages of every file it has mapped (libraries' code and data; see below), calls
  the workload once to warm up, returns freed heap to the OS (``malloc_trim``), resets the
  process's peak resident set size (writing 5 to ``/proc/self/clear_refs``) and reports ``VmHWM``
  after the measured call minus ``VmRSS`` before it. Linux only.

  The child is forked from a zygote that imported the measuring code (torch, NumPy, the backends)
  and never built or ran a workload (:func:`rnnbench.harness.children.run_in_fresh_process`), so
  no other case ever ran in the process whose peak is read: the peak is the case's own, as with a
  freshly started interpreter, without paying for a Python start-up and a torch import per case.
  A forked child starts without page-table entries for its libraries' read-only pages, so library
  code touched for the first time during the measured call (Python 3.11 specialises bytecode after
  the warm-up) would count as resident memory the call allocated; mapping every file-backed page
  first (``madvise(MADV_POPULATE_READ)``, Linux 5.14+; skipped where unsupported) keeps the increment
  to what the call allocates. The child dies with the process that asked for it.

Outputs of the measured call are alive at the peak, so they are included (for ``fwd_bwd``: the
output, final states and every gradient; inputs and parameters are not).
"""

from __future__ import annotations

import ctypes
import gc
import re
from typing import Callable

from rnnbench.harness.backends import build_workload
from rnnbench.harness.children import run_in_fresh_process
from rnnbench.harness.process import apply_thread_limit

MIB = 2**20
#: ``madvise`` advice that fills in page-table entries for a range, reading it (linux/mman.h)
_MADV_POPULATE_READ = 22


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
    return run_in_fresh_process(_child_peak_memory_mib, case)


def _child_peak_memory_mib(case) -> float:
    _map_file_pages()
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


def _map_file_pages() -> None:
    """Map every page of every readable file mapping of this process (see the module docstring)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split()
                if len(fields) >= 6 and fields[5].startswith("/") and "r" in fields[1]:
                    start, end = (int(address, 16) for address in fields[0].split("-"))
                    libc.madvise(start, end - start, _MADV_POPULATE_READ)
    except (OSError, AttributeError):
        pass


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
