"""Child processes that die with the process that started them.

* :func:`prepared_child`: a long-lived child with some environment set before it imports anything
  (the serial executor measures there the cases whose Triton interpreter setting this process can
  no longer give; see :mod:`rnnbench.harness.process`).
* :func:`run_in_fresh_process`: one call in a process that no other call ever ran in, forked from
  a zygote: a child spawned once per process that imported the measuring code (torch, NumPy, the
  backends: :data:`ZYGOTE_MODULES`; not the Triton kernels) and ran nothing else. Each call costs a
  ``fork`` instead of a Python start-up and a torch import. (``multiprocessing``'s forkserver
  would do the same, but on Python 3.11 it imports its preloaded modules from the wrong
  ``sys.path``: the current directory's checkout instead of this process's.)

Every child watches the process that asked for it (:func:`die_with`) and exits the moment it ends,
even by SIGKILL, so a killed run leaves no measuring process behind.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import pickle
import select
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Callable

#: what the zygote imports before it forks children
ZYGOTE_MODULES = ("rnnbench.harness.measure",)
#: seconds between checks that a parent is alive, where there is no pidfd to wait on
POLL_S = 0.5

_zygotes: dict[int, ProcessPoolExecutor] = {}
#: in a zygote: the process its children must die with
_watched: list[int] = []


class ChildDied(RuntimeError):
    """A fresh process ended without returning (killed by a signal, or exited)."""


def die_with(pid: int) -> None:
    """End this process as soon as process ``pid`` has ended, however it ended.

    A watcher thread waits on a pidfd of ``pid`` (Linux 5.3+; elsewhere it polls every
    :data:`POLL_S` seconds). ``PR_SET_PDEATHSIG`` is not used: it follows the parent *thread*, and a
    forked child's parent is the zygote, not the process it works for."""
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


def prepared_child(environment: dict[str, str]) -> ProcessPoolExecutor:
    """A pool of one spawned process that sets ``environment`` before it imports anything and
    dies with this process; it imports this process's code (same ``sys.path``)."""
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_prepared, initargs=(environment, os.getpid()))


def run_in_fresh_process(fn: Callable, *args):
    """``fn(*args)`` in a process forked for this call from this process's zygote; its result, or
    its exception re-raised here. Raises :class:`ChildDied` if the process ends without returning."""
    zygote = _zygotes.get(os.getpid())
    if zygote is None:
        zygote = _zygotes[os.getpid()] = ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_start_zygote,
            initargs=(os.getpid(),))
    try:
        return zygote.submit(_fork_and_call, fn, args).result()
    except BrokenProcessPool:
        _zygotes.pop(os.getpid(), None)
        raise ChildDied("the zygote process that forks measuring children died") from None


def _start_prepared(environment: dict[str, str], parent: int) -> None:
    die_with(parent)
    os.environ.update(environment)


def _start_zygote(parent: int) -> None:
    die_with(parent)
    _watched.append(parent)
    for module in ZYGOTE_MODULES:
        importlib.import_module(module)


def _fork_and_call(fn: Callable, args: tuple):
    """In the zygote: fork, call ``fn(*args)`` in the child, return what it sent back."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read)
        die_with(_watched[0])
        try:
            payload = pickle.dumps((True, fn(*args)))
        except BaseException as error:  # the parent re-raises it
            payload = _pickled_error(error)
        with os.fdopen(write, "wb") as pipe:
            pipe.write(payload)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not payload:
        raise ChildDied(f"the fresh process measuring it died ({_describe(status)})")
    returned, value = pickle.loads(payload)
    if returned:
        return value
    raise value


def _pickled_error(error: BaseException) -> bytes:
    try:
        return pickle.dumps((False, error))
    except Exception:
        return pickle.dumps((False, RuntimeError(f"{type(error).__name__}: {error}")))


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
