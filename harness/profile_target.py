"""Calls of one harness workload for a profiler to attach to: ``python -m rnnbench.harness.profile_target``.

Nsight Compute (``ncu``) samples kernels one launch at a time; this module gives it the launches
of interest and nothing else. It builds the harness's own workload for one case (backend, family,
shape, dtype, mode: :func:`rnnbench.harness.backends.build_workload`, so the calls are the ones the
suites time, ``fwd`` an inference forward and ``fwd_bwd`` forward plus backward), runs it once
outside the profiled range (Triton compiles, cuDNN picks its algorithm), then ``--calls`` times
between ``cudaProfilerStart`` and ``cudaProfilerStop``, so that ``ncu --profile-from-start off``
sees only those.

``scripts/gpu-session.sh``'s ``profile`` stage runs it under ``ncu`` with warp-state sampling per
SASS instruction: where a step's cycles go on the GPU, to set against the cost model's
per-instruction trace (:func:`rnnbench.kernels.cost.simulate`). For example:

    python -m rnnbench.harness.profile_target --backend triton-gluon --hidden-size 768 --batch 16
"""

from __future__ import annotations

import argparse
import contextlib

from rnnbench.harness.backends import build_workload, get_backend, shape_case
from rnnbench.harness.errors import UsageError

MODES = ("fwd", "fwd_bwd")


def workload_call(backend: str, family: str, hidden_size: int, batch: int, seq_len: int, mode: str, dtype: str,
                  device: str = "cuda"):
    """One ``mode`` call of ``backend`` on the harness's problem of this shape (input size = H, seed 0)."""
    return build_workload(shape_case(backend, family, hidden_size, batch, seq_len, mode, dtype, device)).callable(mode)


@contextlib.contextmanager
def profiled_range():
    """``cudaProfilerStart`` ... ``cudaProfilerStop``: what ``ncu --profile-from-start off`` profiles."""
    import torch

    torch.cuda.synchronize()
    torch.cuda.profiler.start()
    try:
        yield
    finally:
        torch.cuda.synchronize()
        torch.cuda.profiler.stop()


def profile(call, calls: int) -> None:
    """One warm-up ``call`` outside the profiled range, then ``calls`` inside it."""
    call()
    with profiled_range():
        for _ in range(calls):
            call()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rnnbench.harness.profile_target",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="triton", help="a registered backend (triton, triton-gluon, torch, ...)")
    parser.add_argument("--family", default="lstm", choices=["lstm", "rnn"])
    parser.add_argument("--hidden-size", type=int, default=768)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--mode", default="fwd", choices=MODES)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--calls", type=int, default=1, help="calls inside the profiled range")
    args = parser.parse_args(argv)
    for name in ("hidden_size", "batch", "seq_len", "calls"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    try:
        get_backend(args.backend)
    except UsageError as error:
        parser.error(str(error))
    import torch

    if not torch.cuda.is_available():
        parser.error("profiling needs a CUDA device, and none is available")
    profile(workload_call(args.backend, args.family, args.hidden_size, args.batch, args.seq_len, args.mode, args.dtype),
            args.calls)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
