"""Shared-memory bank conflicts of a kernel's matrix loads, read from its TTGIR (no GPU).

The cost model reads SASS, whose shared-memory addresses do not say which lanes share a bank; the
layouts of the TTGIR do (:mod:`rnnbench.kernels.bank_conflicts` has why it matters: the H200's
unexplained B=64 excess was 8-way conflicts).

**What.** For each ``ttg.local_load`` of a dot operand (``#ttg.dot_op<{opIdx = ...}>``) from a
``#ttg.swizzled_shared`` buffer: the wavefronts one 8x8 ``ldmatrix`` matrix takes, worst and mean
over every matrix of the buffer. An element's offset is Triton's (``swizzledSharedToLinearLayout``):
the two most minor dimensions of ``order`` are the swizzled columns and rows (the 16-byte vector
index of a column XOR ``(row / perPhase) % maxPhase``), the others are stacked outside them. A matrix
reads 16-byte vectors along the buffer's contiguous dimension, one per row of the operand's other
matrix dimension (A ``(.., M, K)``, B ``(.., K, N)``); rows in distinct 16-byte bank groups of a
128-byte line take one wavefront, each row more in the same group one more. 1 is conflict-free; 8
is every row alone. A buffer whose contiguous dimension is a batch dimension is not an ``ldmatrix``
pattern (None), and neither is a 32-bit one contiguous along M or N (float32's TF32 operands, which
Triton reads with ``LDS``).

:func:`extra_wavefronts` sums what a kernel's loads take beyond one wavefront a matrix; the
cost model charges it (:func:`rnnbench.kernels.cost.step_estimate`, from
:attr:`rnnbench.kernels.aot.KernelResources.ldsm_extra_wavefronts`).
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass

#: bytes a shared-memory wavefront serves: 32 banks of 4 bytes, 8 groups of 16 (one ``ldmatrix`` row)
LINE_BYTES = 128
ROW_BYTES = 16
ELEMENT_BYTES = {"bf16": 2, "f16": 2, "f32": 4, "i32": 4, "i16": 2, "i8": 1}
_SHARED = re.compile(r"^(#shared\w*) = #ttg\.swizzled_shared<\{vec = (\d+), perPhase = (\d+), maxPhase = (\d+), "
                     r"order = \[([\d, ]+)\]")
_LOAD = re.compile(r"ttg\.local_load %\S+ : !ttg\.memdesc<([\dx]+)x(\w+), (#shared\w*), [^>]*> -> "
                   r"tensor<[^,]+, #ttg\.dot_op<\{opIdx = (\d)(?:, parent = (#mma\w*))?")
_MMA = re.compile(r"^(#mma\w*) = #ttg\.nvidia_mma<\{[^}]*warpsPerCTA = \[([\d, ]+)\]")


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
    or 1 (B, ``(.., K, N)``), ``count`` ``local_load`` ops of it, each matrix of it read by
    ``replication`` warps (the MMA's warps along the other operand's matrix dimension: N for A, M
    for B)."""

    shape: tuple[int, ...]
    dtype: str
    layout: SwizzledShared
    operand: int
    count: int
    replication: int = 1

    def matrices(self) -> int:
        """The 8x8 ``ldmatrix`` matrices (8 rows of 16 bytes) of all its loads, every warp's."""
        return math.prod(self.shape) * ELEMENT_BYTES[self.dtype] // (8 * ROW_BYTES) * self.count * self.replication

    def wavefronts(self) -> tuple[int, float] | None:
        """``(worst, mean)`` wavefronts of an 8x8 ``ldmatrix`` matrix over the buffer (see the module
        docstring); None where its contiguous dimension is not one of the operand's matrix
        dimensions, or not K for elements of another width than 16 bits (no ``ldmatrix`` reads
        those)."""
        rank, element = len(self.shape), ELEMENT_BYTES[self.dtype]
        k = rank - 1 if self.operand == 0 else rank - 2
        other = rank - 2 if self.operand == 0 else rank - 1
        contiguous = self.layout.order[0]
        if contiguous not in (k, other) or (element != 2 and contiguous != k):
            return None  # ldmatrix.trans moves 16-bit elements only: Triton reads the others with LDS
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
    warps = {match.group(1): tuple(int(d) for d in match.group(2).split(","))
             for match in map(_MMA.match, ttgir.splitlines()) if match}
    counts: dict[tuple, int] = {}
    for match in _LOAD.finditer(ttgir):
        if match.group(3) not in layouts:  # another shared layout (NVMMA: the hardware's swizzle)
            continue
        operand, mma_warps = int(match.group(4)), warps.get(match.group(5), (1, 1))
        key = (tuple(int(d) for d in match.group(1).split("x")), match.group(2), layouts[match.group(3)], operand,
               mma_warps[-1] if operand == 0 else mma_warps[-2])
        counts[key] = counts.get(key, 0) + 1
    return [OperandLoad(shape, dtype, layout, operand, count, replication)
            for (shape, dtype, layout, operand, replication), count in counts.items()]


def extra_wavefronts(ttgir: str) -> float:
    """The shared-memory wavefronts a kernel's ``ldmatrix`` loads of its dot operands take beyond one
    a matrix, every warp's, over all its ``local_load`` ops (the plain kernels issue them once a time
    step, inside the time loop): 0 without bank conflicts. The cost model spreads them over the
    step's ``LDSM`` instructions (:func:`rnnbench.kernels.cost.step_estimate`); a conversion that
    Triton lowers to ``LDSM`` without a ``local_load`` (the state operand of some layouts) is not
    counted, and is charged as conflict-free."""
    return sum(load.matrices() * (wavefronts[1] - 1) for load in operand_loads(ttgir)
               if (wavefronts := load.wavefronts()) is not None)
