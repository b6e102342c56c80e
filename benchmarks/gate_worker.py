"""One side of the performance gate: times the gate's benchmarks on one source tree, on request.

Run as ``python benchmarks/gate_worker.py TREE`` by :mod:`benchmarks.gate`, which writes one JSON
request per line to stdin and reads one JSON reply per line from stdout. The benchmark definitions
and this timing loop come from the commit being judged; the code measured (``rnnbench`` and its
backends) comes from ``TREE``, which is put first on ``sys.path``. So both sides of the comparison are
timed by the same loop, and only the measured code differs.

Requests:

* ``{"setup": [[backend, family, mode], ...], "shape": {...}, "dtype": ..., "plant": 1.0}``: build
  every workload and call each once (first-call work stays out of the timings); reply ``{"ready":
  true}`` or ``{"error": "..."}`` when ``TREE`` cannot build them (for example a commit that predates
  the gate). ``plant`` > 1 makes every call that much slower (by repeating work, see :func:`_planted`), to
  check that the gate catches a slowdown.
* ``{"time": index, "calls": k}``: time ``k`` back-to-back calls of benchmark ``index``; reply
  ``{"seconds": mean seconds per call}``.
* ``{"calibrate": index}``: reply ``{"seconds": ...}`` for one call.

One CPU thread for torch and the BLAS behind NumPy (set before they are imported); garbage
collection is paused inside a timed block, as ``timeit`` does.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time


def _planted(call, factor: float):
    """``call`` made ``factor`` times slower by doing more of the same work: every call adds
    ``factor - 1`` to a credit and runs the workload once more per whole unit of credit (1.5: one
    extra run every other call). Spinning or sleeping instead would also evict the workload's data
    from the caches and slow it by more than ``factor``."""
    if factor == 1.0:
        return call
    credit = 0.0

    def slowed():
        nonlocal credit
        call()
        credit += factor - 1
        while credit >= 1:
            call()
            credit -= 1

    return slowed


def _setup(tree: str, request: dict) -> list:
    sys.path.insert(0, tree)
    import rnnbench
    import torch

    if not os.path.realpath(rnnbench.__file__).startswith(os.path.realpath(tree) + os.sep):
        raise ImportError(f"rnnbench was imported from {rnnbench.__file__}, not from {tree}")
    torch.set_num_threads(1)
    from rnnbench.harness.backends import build_workload
    from rnnbench.harness.cases import Case

    calls = []
    for backend, family, mode in request["setup"]:
        case = Case(experiment="speed", task="random", backend=backend, family=family, device="cpu",
                    dtype=request["dtype"], mode=mode, seed=0, **request["shape"])
        call = _planted(build_workload(case).callable(mode), float(request.get("plant", 1.0)))
        call()
        calls.append(call)
    return calls


def _time(call, count: int) -> float:
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(count):
            call()
        return (time.perf_counter() - start) / count
    finally:
        gc.enable()


def serve(tree: str) -> None:
    calls: list = []
    for line in sys.stdin:
        request = json.loads(line)
        if "setup" in request:
            try:
                calls = _setup(tree, request)
                reply = {"ready": True}
            except Exception as error:  # the tree cannot run the gate: the driver decides what that means
                reply = {"error": f"{type(error).__name__}: {error}"}
        elif "calibrate" in request:
            reply = {"seconds": _time(calls[request["calibrate"]], 1)}
        else:
            reply = {"seconds": _time(calls[request["time"]], request["calls"])}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = "1"  # before torch and NumPy are imported
    serve(sys.argv[1])
