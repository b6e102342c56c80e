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

**What.** For each ``ttg.local_load`` of a dot operand (``#ttg.dot_op<{opIdx = ...}>``) from a
``#ttg.swizzled_shared`` buffer: the wavefronts one 8x8 ``ldmatrix`` matrix takes, worst and mean
over every matrix of the buffer. An element's offset is Triton's (``swizzledSharedToLinearLayout``):
the two most minor dimensions of ``order`` are the swizzled columns and rows (the 16-byte vector
index of a column XOR ``(row / perPhase) % maxPhase``), the others are stacked outside them. A matrix
reads 16-byte vectors along the buffer's contiguous dimension, one per row of the operand's other
matrix dimension (A ``(.., M, K)``, B ``(.., K, N)``); rows in distinct 16-byte bank groups of a
128-byte line take one wavefront, each row more in the same group one more. 1 is conflict-free; 8
is every row alone. A buffer whose contiguous dimension is a batch dimension is not an ``ldmatrix``
pattern (None).

``python -m rnnbench.kernels.bank_conflicts --target sm_90 --csv`` compiles the plain kernels of the
goal shapes (bf16, one direction, no lengths, as the planner lays them out with the running Triton)
and prints a row per operand buffer (``reports/aot/bank-conflicts-sm_90-triton<version>.csv``,
``make bank-conflicts``).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import re
import sys
from dataclasses import dataclass

#: bytes a shared-memory wavefront serves: 32 banks of 4 bytes, 8 groups of 16 (one ``ldmatrix`` row)
LINE_BYTES = 128
ROW_BYTES = 16
ELEMENT_BYTES = {"bf16": 2, "f16": 2, "f32": 4, "i32": 4, "i16": 2, "i8": 1}
_SHARED = re.compile(r"^(#shared\w*) = #ttg\.swizzled_shared<\{vec = (\d+), perPhase = (\d+), maxPhase = (\d+), "
                     r"order = \[([\d, ]+)\]")
_LOAD = re.compile(r"ttg\.local_load %\S+ : !ttg\.memdesc<([\dx]+)x(\w+), (#shared\w*), [^>]*> -> "
                   r"tensor<[^,]+, #ttg\.dot_op<\{opIdx = (\d)")


@dataclass(frozen=True)
class SwizzledShared:
    """A ``#ttg.swizzled_shared`` layout: ``vec`` elements a swizzled vector, the phase changing every
    ``per_phase`` rows, ``max_phase`` phases; ``order`` the dimensions from the most minor."""

    vec: int
    per_phase: int
    max_phase: int
    order: tuple[int, ...]

    def offset(self, index: tuple[int, ...], shape: tuple[int, ...]) -> int:
        """The element offset of ``index`` in a buffer of ``shape``."""
        columns, rows = self.order[0], self.order[1]
        phase = (index[rows] // self.per_phase) % self.max_phase
        width = shape[columns]
        column = (index[columns] ^ (self.vec * phase % width)) if width > 1 else 0
        offset, stride = index[rows] * width + column, shape[rows] * width
        for dim in self.order[2:]:
            offset += index[dim] * stride
            stride *= shape[dim]
        return offset


@dataclass(frozen=True)
class OperandLoad:
    """The loads of one dot operand's shared buffer in a kernel: ``operand`` 0 (A, ``(.., M, K)``)
    or 1 (B, ``(.., K, N)``), ``count`` ``local_load`` ops of it."""

    shape: tuple[int, ...]
    dtype: str
    layout: SwizzledShared
    operand: int
    count: int

    def wavefronts(self) -> tuple[int, float] | None:
        """``(worst, mean)`` wavefronts of an 8x8 ``ldmatrix`` matrix over the buffer (see the module
        docstring); None where its contiguous dimension is not one of the operand's matrix
        dimensions."""
        rank, element = len(self.shape), ELEMENT_BYTES[self.dtype]
        k = rank - 1 if self.operand == 0 else rank - 2
        other = rank - 2 if self.operand == 0 else rank - 1
        contiguous = self.layout.order[0]
        if contiguous not in (k, other):
            return None
        rows = other if contiguous == k else k
        per_row = max(1, ROW_BYTES // element)
        fixed_dims = [d for d in range(rank) if d not in (rows, contiguous)]
        worst, total, matrices = 0, 0, 0
        for fixed in itertools.product(*(range(self.shape[d]) for d in fixed_dims)):
            for first in range(0, self.shape[rows], 8):
                for column in range(0, self.shape[contiguous], per_row):
                    groups: dict[int, set[int]] = {}
                    for row in range(first, min(first + 8, self.shape[rows])):
                        index = [0] * rank
                        for dim, value in zip(fixed_dims, fixed):
                            index[dim] = value
                        index[rows], index[contiguous] = row, column
                        unit = self.layout.offset(tuple(index), self.shape) * element // ROW_BYTES
                        groups.setdefault(unit % (LINE_BYTES // ROW_BYTES), set()).add(unit)
                    count = max(len(units) for units in groups.values())
                    worst, total, matrices = max(worst, count), total + count, matrices + 1
        return worst, total / matrices


def operand_loads(ttgir: str) -> list[OperandLoad]:
    """Every dot operand's shared buffer a kernel's TTGIR loads from (``ttg.local_load`` into a
    ``dot_op``), one entry per distinct (shape, dtype, layout, operand) with its count of loads."""
    layouts = {}
    for line in ttgir.splitlines():
        if match := _SHARED.match(line):
            layouts[match.group(1)] = SwizzledShared(int(match.group(2)), int(match.group(3)), int(match.group(4)),
                                                     tuple(int(d) for d in match.group(5).split(",")))
    counts: dict[tuple, int] = {}
    for match in _LOAD.finditer(ttgir):
        if match.group(3) not in layouts:  # another shared layout (NVMMA: the hardware's swizzle)
            continue
        key = (tuple(int(d) for d in match.group(1).split("x")), match.group(2), layouts[match.group(3)],
               int(match.group(4)))
        counts[key] = counts.get(key, 0) + 1
    return [OperandLoad(shape, dtype, layout, operand, count) for (shape, dtype, layout, operand), count in counts.items()]


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
