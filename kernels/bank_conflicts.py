"""Shared-memory bank conflicts of the plain kernels' matrix loads, read from their TTGIR (no GPU).

**Why.** The plain LSTM forward in 32-row batch blocks of 8 warps ran its MMAs 3-3.6x slower than the
cost model on the H200 (7caf667's step ablation, variant ``mma``: 3.84 µs a step at H=768 B=64
against 1.14 estimated, 4.94 against 1.37 at H=1024), and only that layout. Its held weight blocks,
``(8, 32, 16)`` (slices, rows, columns), sat in shared memory in the order ``[2, 0, 1]``: columns,
then slices, then rows. An ``ldmatrix`` 8x8 matrix reads 8 consecutive rows at one column offset;
with the rows outermost they are 256 bytes apart, all in the same 4 of the 32 banks, so each of the
matrix's 8 rows is its own wavefront: 8-way conflicts. 24 ``LDSM.x4`` a warp, 8 warps: 6144
wavefronts a step where 768 would do, 2.7 µs at 1.98 GHz, which is the measured excess at H=768
(2.70 µs); 32 a warp at H=1024 (3.6 µs against 3.57). The cost model reads SASS, whose addresses do
not say which lanes share a bank; the layout says it.

**What.** A table of every plain kernel's dot-operand buffers and the wavefronts an ``ldmatrix``
matrix of each takes (:mod:`rnnbench.kernels.shared_layouts` reads them from the TTGIR).
``python -m rnnbench.kernels.bank_conflicts --target sm_90 --csv`` compiles the plain kernels of the
goal shapes (bf16, one direction, no lengths, as the planner lays them out with the running Triton)
and prints a row per operand buffer (``reports/aot/bank-conflicts-sm_90-triton<version>.csv``,
``make bank-conflicts``).
"""

from __future__ import annotations

import argparse
import csv
import sys

from rnnbench.kernels.shared_layouts import operand_loads

#: the table's columns (:func:`table_rows`)
COLUMNS = ["triton", "target", "cell", "direction", "path", "h_pad", "block_b", "block_h", "num_warps", "k_split",
           "k_chunks", "operand", "shape", "order", "vec", "per_phase", "max_phase", "loads", "worst_wavefronts",
           "mean_wavefronts"]


def configs(arch: int = 90) -> list:
    """The plain kernels of the goal shapes the table covers: every shipped configuration
    (:func:`rnnbench.kernels.aot.shipped_configs`) off the Gluon path, bf16, one direction, no
    lengths, ``H`` divisible by 16."""
    from rnnbench.kernels.aot import shipped_configs

    return [config for config in shipped_configs(arch) if config.path != "gluon" and config.dtype == "bfloat16"
            and config.directions == 1 and not config.lengths and config.hidden_divisible]


def config_ttgir(config, arch: int) -> str:
    """The TTGIR of ``config`` compiled for ``sm_<arch>`` (a job for :func:`rnnbench.kernels.aot.compile_all`)."""
    from rnnbench.kernels.aot import compile_kernel

    return compile_kernel(config, arch).asm["ttgir"]


def table_rows(config, ttgir: str, arch: int) -> list[dict]:
    """A row per operand buffer of ``config`` (:data:`COLUMNS`)."""
    import triton

    rows = []
    for load in operand_loads(ttgir):
        wavefronts = load.wavefronts()
        rows.append({"triton": triton.__version__, "target": f"sm_{arch}", "cell": config.cell,
                     "direction": config.direction, "path": config.path, "h_pad": config.h_pad,
                     "block_b": config.block_b, "block_h": config.block_h, "num_warps": config.num_warps,
                     "k_split": config.k_split, "k_chunks": config.k_chunks, "operand": "AB"[load.operand],
                     "shape": "x".join(map(str, load.shape)), "order": "".join(map(str, load.layout.order)),
                     "vec": load.layout.vec, "per_phase": load.layout.per_phase, "max_phase": load.layout.max_phase,
                     "loads": load.count, "worst_wavefronts": "" if wavefronts is None else wavefronts[0],
                     "mean_wavefronts": "" if wavefronts is None else round(wavefronts[1], 3)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rnnbench.kernels.bank_conflicts",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="sm_90", help="sm_80 or sm_90")
    parser.add_argument("--csv", action="store_true", help="print CSV (default: the conflicted buffers only, as text)")
    parser.add_argument("--jobs", type=int, default=None, help="compiler processes (default: CPUs)")
    args = parser.parse_args(argv)
    from rnnbench.kernels.aot import compile_all

    arch = int(args.target.removeprefix("sm_"))
    chosen = configs(arch)
    texts = compile_all(arch, chosen, args.jobs, job=config_ttgir)
    rows = [row for config, text in zip(chosen, texts) for row in table_rows(config, text, arch)]
    if args.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
        return 0
    conflicted = [row for row in rows if row["worst_wavefronts"] not in ("", 1)]
    for row in conflicted:
        print(" ".join(f"{key}={row[key]}" for key in COLUMNS))
    print(f"{len(conflicted)} of {len(rows)} operand buffers of {len(chosen)} kernels conflict")
    return 0


if __name__ == "__main__":
    sys.exit(main())
