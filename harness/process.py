"""Preparing a process to measure a case, and the fresh processes a measurement may need.

Every process that measures a case prepares itself from that case, never from the first case of a
suite: a suite may mix devices, and on a cluster each worker sees only the cases it is given.

* Triton kernels run on CUDA, or on CPU tensors in the Triton interpreter. ``triton.jit`` reads
  ``TRITON_INTERPRET`` when it decorates a function, and Triton's own library functions are
  decorated when ``triton`` is first imported, so the choice is made once per process:
  :func:`process_env` says what a case needs, :func:`can_prepare` whether this process can still
  give it, :func:`prepare_process` sets it (and the thread count) before the case is measured.
* :func:`fresh_process_pool` forks one process per use from a zygote that has imported the
  measuring modules but run nothing (``multiprocessing``'s forkserver), so a child starts in a
  known state at the cost of a ``fork`` instead of a Python start-up and a ``torch`` import; the
  child dies with the process that asked for it (:func:`die_with`).
"""

from __future__ import annotations

import multiprocessing
import os
import select
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor

#: the environment variable ``triton.jit`` reads at import: "1" runs kernels in the interpreter
INTERPRET_VARIABLE = "TRITON_INTERPRET"
_KERNELS = "rnnbench.kernels"
_TRITON = "triton"
#: what the zygote of :func:`fresh_process_pool` imports before it forks children
ZYGOTE_MODULES = ("rnnbench.harness.measure",)
#: seconds between checks that a child's parent is alive, where there is no pidfd to wait on
POLL_S = 0.5


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


def die_with(pid: int) -> None:
    """End this process as soon as process ``pid`` (the one that asked for it) has ended.

    A watcher thread waits on a pidfd of ``pid`` (Linux 5.3+; elsewhere it polls every
    :data:`POLL_S` seconds) and exits the process the moment ``pid`` is gone, however it died.
    ``PR_SET_PDEATHSIG`` alone is not enough: a forked child's parent is the zygote, which lives as
    long as any child it forked does."""
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):
        handle = None

    def watch() -> None:
        if handle is not None:
            select.select([handle], [], [])
        else:
            while _exists(pid):
                time.sleep(POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name=f"die-with-{pid}", daemon=True).start()


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fresh_process_pool(environment: dict[str, str] | None = None) -> ProcessPoolExecutor:
    """A pool of one process forked from a zygote that imported the measuring code
    (:data:`ZYGOTE_MODULES`: torch, NumPy, the backends; not the Triton kernels) and ran nothing;
    the process sets ``environment`` first and dies with its parent.

    The zygote (``multiprocessing``'s forkserver, one per process that asks) inherits the
    environment and ``sys.path`` of the first call, and exits when this process does."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(ZYGOTE_MODULES))
    return ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_start_child,
                               initargs=(environment or {}, os.getpid()))


def _start_child(environment: dict[str, str], parent: int) -> None:
    die_with(parent)
    os.environ.update(environment)
