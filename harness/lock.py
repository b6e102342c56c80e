"""One run at a time per results directory: ``--out`` checked and locked before anything is measured.

Two runs writing one ``results.csv`` would measure every case twice while fighting for the same
cores or GPU, and both sets of timings would be contaminated. :func:`locked_results_dir` takes an
exclusive ``flock`` on ``DIR/.rnnbench.lock`` and writes who holds it (pid, host, start time,
command) into that file; a second run is refused with :class:`UsageError` naming the holder.

The kernel releases an ``flock`` when its process dies, however it dies, so a lock left by a killed
run is never stale: the next run takes it and overwrites the holder's description. Where a
filesystem does not release locks of a machine that went away (an NFS server that lost a client),
delete ``DIR/.rnnbench.lock`` once the holder named in it is known to be gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from rnnbench.harness.errors import UsageError

LOCK_NAME = ".rnnbench.lock"


@contextlib.contextmanager
def locked_results_dir(directory: str | os.PathLike) -> Iterator[Path]:
    """Create ``directory`` if needed, lock it for this process and yield it as a Path; the lock
    is released on exit. Raises UsageError for an unusable ``--out`` or a directory in use."""
    path = _usable_directory(directory)
    lock_path = path / LOCK_NAME
    try:
        handle = open(lock_path, "a+", encoding="utf-8")
    except OSError as error:
        raise UsageError(f"--out {str(directory)!r} is not writable: {error.strerror} ({lock_path})") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"results directory {str(directory)!r} is in use by another run ({_holder(lock_path)}); "
                             "wait for it to finish or choose another --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(_this_process()) + "\n")
        handle.flush()
        try:
            yield path
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _usable_directory(directory: str | os.PathLike) -> Path:
    if not str(directory).strip():
        raise UsageError(f"--out must name a results directory, got {str(directory)!r}")
    path = Path(directory)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {str(directory)!r} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--out {str(directory)!r} cannot be created: {error.strerror}") from None
    return path


def _this_process() -> dict:
    return {
        "pid": os.getpid(),
        "host": platform.node(),
        "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
    }


def _holder(lock_path: Path) -> str:
    """The lock holder as written in the lock file, for the refusal message."""
    try:
        holder = json.loads(lock_path.read_text(encoding="utf-8"))
        return f"pid {holder['pid']} on host {holder['host']}, started {holder['started_utc']}: {holder['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return f"holder unknown; see {lock_path}"
