"""What the backward's weight-gradient GEMM allocates beyond its output, formulation by formulation.

The H200's memory breakdown (reports/h200/f1c2560/memory-breakdown.md) put the Triton LSTM's
training peak above torch.nn's at small H because of blocks allocated inside one call,
``dw_hh.addmm_(dpre.t(), h_prev)`` at ``kernels/projections.py`` (bf16, a reduction over
K = (T-1) * B rows): 32 MiB at H=64 B=16, 128 MiB at H=64 B=64, 132 MiB at H=768 (B=16 and 64),
none of them on CPU, where the same code runs without cuBLAS. The layers now ship the ``triton``
formulation for 16-bit operands (:mod:`rnnbench.kernels.weight_grad`, which allocates at most 4 MiB
of partial sums by construction; chosen without a GPU). This probe times and measures each of
:data:`rnnbench.kernels.projections.WEIGHT_GRAD_FORMULATIONS` (the same product) on a GPU at the
LSTM's shapes: it checks that choice (memory, and time against cuBLAS) and says which cuBLAS
formulation to fall back on if the Triton GEMM is too slow somewhere.

Each row: ``extra_mib``, the peak allocated beyond the output and the inputs during one call, in MiB
(``max_memory_allocated`` after ``reset_peak_memory_stats``), on the first call in a fresh thread
(``cold``: a thread's first cuBLAS call creates its handle's workspace, as the autograd engine's
backward thread does) and on a repeated call (``warm``); ``us``, the median of CUDA-event times of
10 warm calls in microseconds; ``max_abs_diff`` against ``addmm``.

    python -m rnnbench.harness.gemm_memory --csv FILE      (on a GPU)
    python -m rnnbench.harness.gemm_memory --render FILE   (its Markdown table, anywhere)
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import threading
from pathlib import Path

import torch

from rnnbench.kernels.projections import WEIGHT_GRAD_FORMULATIONS as FORMULATIONS

MIB = 2**20
#: (H, B), T = 1024, LSTM (4 gates): the memory breakdown's cases, then the Triton GEMM's split into
#: 4 (H=256) and its largest output (H=1024 B=64)
SHAPES = ((64, 16), (64, 64), (768, 16), (768, 64), (256, 16), (1024, 64))
COLUMNS = ("device_name", "dtype", "hidden_size", "batch", "seq_len", "k", "m", "n", "formulation", "extra_mib_cold",
           "extra_mib_warm", "us", "max_abs_diff")


def _extra_bytes(run, out, first, a, b) -> int:
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    run(out, first, a, b)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def _in_fresh_thread(fn):
    """``fn()`` run in a new thread (its own cuBLAS handle), its exception raised here."""
    outcome = {}

    def target():
        try:
            outcome["value"] = fn()
        except BaseException as error:  # re-raised in the calling thread below
            outcome["error"] = error

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def probe(hidden_size: int, batch: int, seq_len: int, dtype: torch.dtype, formulation: str) -> dict:
    """One row (:data:`COLUMNS`) for ``formulation`` at one shape, on the current CUDA device: the
    product ``dW_hh = first[0]^T first[1] + a^T b`` of an LSTM layer's backward, ``first`` the first
    step's ``(dpre (B, 4H), h0 (B, H))``, ``a (K, 4H)`` the later steps' ``dpre``, ``b (K, H)`` their
    previous states."""
    run = FORMULATIONS[formulation]
    k, m, n = (seq_len - 1) * batch, 4 * hidden_size, hidden_size
    generator = torch.Generator(device="cuda").manual_seed(0)
    a, b = (torch.randn(k, width, device="cuda", dtype=dtype, generator=generator) for width in (m, n))
    first = tuple(torch.randn(batch, width, device="cuda", dtype=dtype, generator=generator) for width in (m, n))
    out, reference = (torch.empty(m, n, device="cuda", dtype=dtype) for _ in range(2))
    clear_workspaces = getattr(torch._C, "_cuda_clearCublasWorkspaces", lambda: None)
    clear_workspaces()  # each formulation's cold call starts without cached cuBLAS workspaces
    cold = _in_fresh_thread(lambda: _extra_bytes(run, out, first, a, b))
    warm = _extra_bytes(run, out, first, a, b)
    FORMULATIONS["addmm"](reference, first, a, b)
    difference = float((out.float() - reference.float()).abs().max())
    times = []
    for _ in range(10):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run(out, first, a, b)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000.0)
    return {"device_name": torch.cuda.get_device_name(), "dtype": str(dtype).removeprefix("torch."),
            "hidden_size": hidden_size, "batch": batch, "seq_len": seq_len, "k": k, "m": m, "n": n,
            "formulation": formulation, "extra_mib_cold": round(cold / MIB, 3), "extra_mib_warm": round(warm / MIB, 3),
            "us": round(statistics.median(times), 2), "max_abs_diff": difference}


def markdown(rows: list[dict]) -> str:
    """A Markdown table of probe rows (:data:`COLUMNS`, as read back from the CSV): one line per shape
    and formulation, with its time against cuBLAS's ``addmm`` (what shipped before the Triton GEMM)
    at the same shape."""
    shipped = {(row["hidden_size"], row["batch"]): float(row["us"]) for row in rows if row["formulation"] == "addmm"}
    lines = ["| H | B | K | formulation | extra MiB, cold | extra MiB, warm | µs | µs / addmm's | max abs diff |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        base = shipped.get((row["hidden_size"], row["batch"]))
        ratio = f"{float(row['us']) / base:.2f}" if base else "-"
        lines.append(f"| {row['hidden_size']} | {row['batch']} | {row['k']} | {row['formulation']} | "
                     f"{float(row['extra_mib_cold']):.1f} | {float(row['extra_mib_warm']):.1f} | {float(row['us']):.1f} | "
                     f"{ratio} | {float(row['max_abs_diff']):.3g} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rnnbench.harness.gemm_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, help="CSV file to write (rewritten after every row)")
    parser.add_argument("--render", type=Path, metavar="CSV", help="measure nothing: print this CSV as a Markdown table")
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    args = parser.parse_args(argv)
    if args.render:
        with args.render.open(newline="") as handle:
            print(markdown(list(csv.DictReader(handle))), end="")
        return 0
    if args.csv is None:
        parser.error("--csv is required to measure (or --render CSV)")
    if not torch.cuda.is_available():
        print("gemm_memory: needs a CUDA GPU (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    rows = []
    for hidden_size, batch in SHAPES:
        for formulation in FORMULATIONS:
            rows.append(probe(hidden_size, batch, args.seq_len, getattr(torch, args.dtype), formulation))
            print(" ".join(f"{key}={rows[-1][key]}" for key in COLUMNS[2:]), flush=True)
            with args.csv.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=COLUMNS)
                writer.writeheader()
                writer.writerows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
