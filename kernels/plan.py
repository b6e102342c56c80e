"""How a recurrence is laid out on the GPU: path, block sizes, warps (the size heuristic).

Three paths (see :mod:`rnnbench.kernels.primitives` for how each runs):

* ``persistent``: one program per batch block holds all of ``W_hh`` (``G * H_PAD^2 * s`` bytes;
  G = 4 gates for the LSTM, 1 for the RNN; s = bytes per element; H_PAD = H rounded up to a power
  of two, at least 16) when that fits the slice budget below: LSTM H <= 64 and Elman H <= 128 in
  fp16/bf16, LSTM H <= 32 and Elman H <= 64 in fp32.
* ``cooperative``: otherwise the hidden units are split into blocks of ``BLOCK_H`` whose slice
  ``G * H_PAD * BLOCK_H * s`` fits the budget; one program per (hidden block, batch block) and a
  grid barrier per step. Chosen when the grid has at most one program per multiprocessor (each
  program uses most of an SM's registers), so it can be co-resident. A bidirectional layer runs
  both directions in the same launch (a third grid axis) when twice the programs are still
  co-resident, else one direction after the other (two launches).
* ``stepwise``: the same split, one launch per step, for grids too large to be co-resident, and on
  the interpreter (which runs programs one after another and cannot wait on a barrier). When even
  the narrowest slice or the state row does not fit (H > 2048 in 16-bit, H > 1024 in fp32),
  a stepwise launch streams its slice in ``K_CHUNKS`` chunks of :data:`STREAM_CHUNK` columns
  instead of holding it, so every hidden size runs.

**Slice budget.** Triton keeps a loop-invariant dot operand in registers, so ``W_hh`` lives in the
register file (256 KiB per SM), not in shared memory. A slice gets :data:`W_SLICE_BYTES` when its
``G * BLOCK_H`` gate columns are at most :data:`NARROW_COLUMNS`, else :data:`WIDE_SLICE_BYTES`
(wide blocks also hold wide accumulators and gate temporaries); both are halved when fp32 is
multiplied exactly (``cudnn.allow_tf32`` off), where the dot runs on FMA units with a larger
register layout. Warps: 8, or 4 when the slice is at most :data:`SMALL_SLICE_BYTES`. Batch rows per
program: :data:`BLOCK_B` = 16, the MMA tile height; more rows become more programs. The reduction
of a split slice is spread over ``K_SPLIT = min(warps, H_PAD / 16)`` chunks, one or more warps each
(see :mod:`rnnbench.kernels.primitives`), so no warp holds a whole state row; a persistent program, whose
block is as wide as the layer, keeps ``K_SPLIT = 1`` and spreads its warps over the columns, since
every chunk needs its own copy of the wide accumulators.

These numbers come from compiling every configuration for sm_80 and sm_90 with Triton 3.6 and 3.9
(``rnnbench kernels``) and keeping the rules under which none spills: a 128 KiB slice (LSTM H = 128
in bf16, one program) spilled 56-1176 bytes per thread on sm_90, and 64 KiB slices 64 gate columns
wide spilled 8-40 bytes on sm_80.

A ``path=`` override forces a path (the harness times each one); ``persistent`` is refused when
``W_hh`` does not fit, ``cooperative`` when the grid cannot be co-resident on the GPU. On the
interpreter a cooperative grid of several hidden blocks runs its math step by step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

PATHS = ("persistent", "cooperative", "stepwise")
GATES = {"lstm": 4, "rnn": 1}
#: W_hh bytes one program keeps in registers when its slice is narrow (<= NARROW_COLUMNS columns)
W_SLICE_BYTES = 64 * 1024
#: ... and when it is wider
WIDE_SLICE_BYTES = 32 * 1024
NARROW_COLUMNS = 64
#: slices up to this size get 4 warps instead of 8
SMALL_SLICE_BYTES = 8 * 1024
#: bytes of the (BLOCK_B, H_PAD) state tile a step multiplies, spread over the warps' registers
STATE_TILE_BYTES = 64 * 1024
#: reduction columns per chunk when a slice is streamed rather than held
STREAM_CHUNK = 512
#: batch rows per program: the MMA tile height; larger blocks spilled registers at every size tried
BLOCK_B = 16
MIN_BLOCK = 16
#: 32-bit registers of one multiprocessor, shared by the threads of the one resident program
REGISTER_FILE = 65536


@dataclass(frozen=True)
class Plan:
    """Launch layout of one recurrence. ``grid = (hidden blocks, batch blocks)`` per direction;
    :attr:`launch_grid` adds the directions one launch runs as a third axis."""

    cell: str
    path: str
    block_b: int
    block_h: int
    h_pad: int
    k_split: int
    num_warps: int
    grid: tuple[int, int]
    #: 1 when the W_hh slice stays on chip; otherwise the number of chunks streamed per step
    k_chunks: int = 1
    #: 2 for a bidirectional layer
    directions: int = 1
    #: directions one launch runs: all of them, or 1 when a cooperative layer's two directions
    #: would not be co-resident together and run one after the other
    launch_directions: int = 1

    @property
    def launch_grid(self) -> tuple[int, int, int]:
        return (*self.grid, self.launch_directions)

    @property
    def programs(self) -> int:
        """Programs of one launch (those that must be co-resident on the cooperative path)."""
        return self.grid[0] * self.grid[1] * self.launch_directions

    @property
    def max_registers(self) -> int:
        """Register cap for ptxas: the most a thread can have with one program per SM.

        Passed explicitly because ptxas otherwise capped some of these kernels at 128 registers
        and spilled (seen with the ptxas of Triton 3.6 and 3.9)."""
        return min(255, REGISTER_FILE // (32 * self.num_warps))


def next_power_of_two(value: int) -> int:
    return 1 << (max(int(value), 1) - 1).bit_length()


def element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def padded_hidden(hidden_size: int) -> int:
    return max(MIN_BLOCK, next_power_of_two(hidden_size))


def slice_fits(gates: int, h_pad: int, block_h: int, size: int, exact_fp32: bool = False, streamed: bool = False) -> bool:
    """Whether a ``(G*block_h, H_PAD)`` slice of W_hh fits one program's register budget (for a
    streamed slice, ``h_pad`` is the chunk depth and the budget is that of a wide slice)."""
    budget = W_SLICE_BYTES if gates * block_h <= NARROW_COLUMNS and not streamed else WIDE_SLICE_BYTES
    if exact_fp32:
        budget //= 2
    return gates * h_pad * block_h * size <= budget


def fits_persistent(cell: str, hidden_size: int, dtype: torch.dtype, exact_fp32: bool = False) -> bool:
    h_pad = padded_hidden(hidden_size)
    return slice_fits(GATES[cell], h_pad, h_pad, element_size(dtype), exact_fp32)


def narrowest_block(gates: int, exact_fp32: bool) -> int:
    """Tensor-core dots keep at least 16 gate columns; exact-fp32 (FMA) dots can go down to one."""
    return 1 if exact_fp32 else MIN_BLOCK // gates


def fits_on_chip(cell: str, hidden_size: int, dtype: torch.dtype, exact_fp32: bool = False) -> bool:
    """Whether some split of W_hh, and the whole ``(BLOCK_B, H_PAD)`` state it multiplies, fit the
    programs' registers (else both are streamed in chunks)."""
    gates, h_pad, size = GATES[cell], padded_hidden(hidden_size), element_size(dtype)
    state_fits = BLOCK_B * h_pad * size <= STATE_TILE_BYTES
    return state_fits and slice_fits(gates, h_pad, narrowest_block(gates, exact_fp32), size, exact_fp32)


class PathUnavailable(ValueError):
    """A forced path cannot run this shape (on this GPU): a limit of its design, not a bug. The
    message says why and which path would."""


def plan_recurrence(
    cell: str,
    hidden_size: int,
    batch: int,
    dtype: torch.dtype,
    path: str = "auto",
    multiprocessors: int | None = None,
    interpreter: bool = False,
    exact_fp32: bool = False,
    directions: int = 1,
) -> Plan:
    """Choose path and block sizes for a ``cell`` (``"lstm"``/``"rnn"``) recurrence.

    ``multiprocessors`` is the GPU's SM count (None on the interpreter, where ``cooperative`` is
    never chosen automatically); ``exact_fp32`` says fp32 dots run in full precision, not TF32;
    ``directions`` is 2 for a bidirectional layer (both directions in one launch where they fit).
    """
    if cell not in GATES:
        raise ValueError(f"cell must be one of {tuple(GATES)}, got {cell!r}")
    if directions not in (1, 2):
        raise ValueError(f"directions must be 1 or 2, got {directions!r}")
    if path != "auto" and path not in PATHS:
        raise ValueError(f"path must be 'auto' or one of {PATHS}, got {path!r}")
    gates, size, h_pad = GATES[cell], element_size(dtype), padded_hidden(hidden_size)
    persistent_ok = fits_persistent(cell, hidden_size, dtype, exact_fp32)
    if path == "persistent" and not persistent_ok:
        raise PathUnavailable(
            f"path='persistent' needs all of W_hh in one program, but {gates}*{h_pad}^2*{size} bytes exceed the "
            f"register budget for {cell} hidden_size={hidden_size} in {dtype}; use path='cooperative' or 'stepwise'"
        )
    streamed = not fits_on_chip(cell, hidden_size, dtype, exact_fp32)
    if streamed and path in ("persistent", "cooperative"):
        raise PathUnavailable(
            f"path={path!r} needs W_hh on chip, but {cell} hidden_size={hidden_size} in {dtype} is too large even "
            "split across programs; use path='stepwise' (it streams the weights)"
        )
    persistent = path == "persistent" or (path == "auto" and persistent_ok)
    reduction = STREAM_CHUNK if streamed else h_pad
    block_h = h_pad if persistent else _hidden_block(gates, h_pad, reduction, size, exact_fp32, streamed)
    num_warps = 4 if gates * reduction * block_h * size <= SMALL_SLICE_BYTES else 8
    k_split = 1 if persistent else min(num_warps, reduction // MIN_BLOCK)
    grid = (-(-hidden_size // block_h), -(-batch // BLOCK_B))
    on_gpu = multiprocessors is not None and not interpreter
    co_resident = on_gpu and grid[0] * grid[1] <= multiprocessors
    chosen = path
    if path == "auto":
        chosen = "persistent" if persistent else "cooperative" if co_resident and not streamed else "stepwise"
    if chosen == "cooperative" and on_gpu and not co_resident:
        raise PathUnavailable(
            f"path='cooperative' needs {grid[0] * grid[1]} co-resident programs ({grid[0]} hidden blocks x {grid[1]} "
            f"batch blocks) but the GPU has {multiprocessors} multiprocessors; use path='stepwise' or a smaller batch"
        )
    together = not (chosen == "cooperative" and on_gpu and grid[0] * grid[1] * directions > multiprocessors)
    return Plan(cell, chosen, BLOCK_B, block_h, h_pad, k_split, num_warps, grid, h_pad // reduction, directions,
                directions if together else 1)


def _hidden_block(gates: int, h_pad: int, reduction: int, size: int, exact_fp32: bool, streamed: bool) -> int:
    """Largest power-of-two block of hidden units whose slice (``reduction`` columns deep: all of
    H_PAD, or one streamed chunk) fits; below H_PAD even when all of W_hh would fit, so a forced
    split of a small layer still exchanges state between programs."""
    block = h_pad // 2
    while block > narrowest_block(gates, exact_fp32) and not slice_fits(gates, reduction, block, size, exact_fp32, streamed):
        block //= 2
    return max(block, narrowest_block(gates, exact_fp32))
