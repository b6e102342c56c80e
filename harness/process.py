"""Preparing a process to measure a case.

Every process that measures a case prepares itself from that case, never from the first case of a
suite: a suite may mix devices, and on a cluster each worker sees only the cases it is given.

* Triton kernels run on CUDA, or on CPU tensors in the Triton interpreter. ``triton.jit`` reads
  ``TRITON_INTERPRET`` when it decorates a function, and Triton's own library functions are
  decorated when ``triton`` is first imported, so the choice is made once per process:
  :func:`process_env` says what a case needs, :func:`can_prepare` whether this process can still
  give it, :func:`prepare_process` sets it (and the thread count) before the case is measured.
  A case this process cannot serve any more is measured in a child prepared for it
  (:func:`rnnbench.harness.children.prepared_child`).
"""

from __future__ import annotations

import os
import sys

#: the environment variable ``triton.jit`` reads at import: "1" runs kernels in the interpreter
INTERPRET_VARIABLE = "TRITON_INTERPRET"
_KERNELS = "rnnbench.kernels"
_TRITON = "triton"


def apply_thread_limit(threads: int | None) -> None:
    """Pin torch's intra-op threads and the BLAS threads behind NumPy to ``threads`` (None: defaults)."""
    if threads is None:
        return
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)


def process_env(case, cuda_available: bool | None = None) -> dict[str, str]:
    """Environment variables the process measuring ``case`` needs before it imports anything.

    A Triton backend on CPU needs the interpreter, on CUDA it must not have it; other backends, and
    CUDA cases where there is no CUDA (``cuda_available``, default: on this machine; they are
    recorded as skipped), need nothing."""
    from rnnbench.harness.backends import get_backend

    if not get_backend(case.backend).uses_triton:
        return {}
    if case.device == "cpu":
        return {INTERPRET_VARIABLE: "1"}
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    return {INTERPRET_VARIABLE: "0"} if cuda_available else {}


def can_prepare(case) -> bool:
    """Whether this process can still measure ``case``: Triton is not imported yet, or was
    imported with the interpreter setting the case needs."""
    wanted = process_env(case).get(INTERPRET_VARIABLE)
    if wanted is None or _TRITON not in sys.modules:
        return True
    return _interpreting() == (wanted == "1")


def _interpreting() -> bool:
    """Whether this process's Triton functions run in the interpreter (Triton is imported)."""
    if _KERNELS in sys.modules:
        from rnnbench.kernels.launch import interpreter_active

        return interpreter_active()
    from triton import knobs

    # nothing here changes the variable once Triton is imported, so it still says how it was
    return knobs.runtime.interpret


def prepare_process(case, threads: int | None = None) -> None:
    """Set this process up for ``case``: its environment (before Triton is imported) and its
    thread count (the suite's ``timing.threads``, else ``threads``, else the libraries' defaults)."""
    if _TRITON not in sys.modules:
        os.environ.update(process_env(case))
    apply_thread_limit(case.timing.threads or threads)
