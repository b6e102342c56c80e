"""How a recurrence is laid out on the GPU: path, block sizes, warps, and whether its programs fit.

Three paths (see :mod:`rnnbench.kernels.primitives` for how each runs):

* ``persistent``: one program per batch block of :data:`PERSISTENT_BLOCK_B` rows holds all of
  ``W_hh`` (one reduction chunk, ``K_SPLIT = 1``: its warps split the gate rows instead) and
  loops over time without a grid barrier. Chosen when that program fits one multiprocessor
  (:func:`kernel_resources`) and W_hh is at most :data:`PERSISTENT_MAX_WEIGHT_BYTES` (larger ones
  spill registers): LSTM H <= 64 and Elman H <= 128 in 16-bit, LSTM H <= 16 and Elman H <= 32 in fp32.
* ``cooperative``: the hidden units are split into blocks of ``BLOCK_H`` (forward, LSTM
  :data:`GATE_ROWS` / 4 units, i.e. 32 gate rows, the MMA's M; Elman 16; backward with 16-row
  batch blocks :data:`BACKWARD_UNITS`, whose gradient rows are the M; the 16-bit LSTM of a batch
  wider than 16 rows :data:`HALF_BLOCK_UNITS` in :data:`HALF_BLOCK_B`-row blocks, forward and
  backward, where they fit one SM, and the Elman likewise, unless the layout of B <= 16 in more
  batch blocks puts at most one program on each SM: then that, :func:`narrow_batch_blocks`); one program per (hidden
  block, batch block) and a grid barrier per step. Chosen when every program of the grid can be resident at
  once (:func:`programs_per_multiprocessor` from :func:`kernel_resources`); a bidirectional layer
  runs both directions in one launch (a third grid axis) when twice the programs still are, else
  one direction after the other (two launches).
* ``stepwise``: the same split, one launch per step, streaming the weight slice block by block:
  for grids that cannot be co-resident and on the interpreter (which runs programs one after
  another and cannot wait on a barrier). Every hidden size runs.

**Blocks.** The batch block ``BLOCK_B`` is the MMA's N: the batch rounded up to a power of two
between :data:`MIN_BLOCK_B` and :data:`MAX_BLOCK_B` (one copy of a weight slice serves all its
rows, so B=64 is one block and H=768 or 1024 stay co-resident); more rows become more programs.
The reduction runs in chunks of ``CHUNK = K_SPLIT * BK`` columns: H rounded up to a power of two,
between 16 and :data:`MAX_CHUNK`, and ``H_PAD`` the smallest multiple of ``CHUNK`` that holds H
(768 = 3 x 256: no padding). Four warps per program; :data:`WIDE_NUM_WARPS` for a persistent
program and a 64-row batch block. The chunk is split over ``K_SPLIT`` warps of ``BK`` columns, one
slice of the batched dot per warp (:func:`split_layout`; the LSTM forward with more than four warps
in two row parts, :func:`row_split`), or not at all (``K_SPLIT = 1``: a 2-D dot, every persistent
program); with Triton 3.9 the split layouts keep four slices and leave the spreading of more
warps to the compiler (:data:`BATCHED_DOT_SPREADS_WARPS`).

**Resources.** :func:`kernel_resources` bounds what the compiler allocates per program: shared
memory (Triton 3.6 and 3.9 keep a held weight operand in shared memory and re-read it each step,
so the weight slice is the bulk of it; the state staged a step ahead and the reduction scratch
the rest) and registers per thread (the ptxas cap). The AOT tables
(``reports/aot/kernels-sm_*.csv``, checked by ``tests/test_kernels_aot.py``) compile every
configuration the planner can launch (:func:`rnnbench.kernels.aot.shipped_configs`) and record
where the bound is below what was compiled, so the planner cannot promise a co-residency the
compiled kernel does not have without a test failing. The bound is loose (compiled shared memory
is 0.15-1.0 of it, median 0.7, on sm_90 with Triton 3.9) because the compiler reuses buffers.

A fourth path, ``gluon`` (:data:`GLUON`, the LSTM kernels of :mod:`rnnbench.kernels.gluon_lstm` and
:mod:`rnnbench.kernels.gluon_lstm_backward`, sm_90 only, see :func:`plan_gluon`), is chosen by
``auto`` for the 16-bit LSTM forward where it was measured faster than the plain cooperative kernel
(:func:`prefers_gluon`) and the GPU runs it (``allow_gluon``), and for the 16-bit LSTM backward,
which was measured faster than the plain one at every shape (:func:`prefers_gluon_backward`);
where the Gluon backward's grid would not be co-resident, a Gluon forward trains with the plain
backward (planned as ``auto``).

A ``path=`` override forces a path (the harness times each one); ``persistent`` is refused when
``W_hh`` does not fit one program, ``cooperative`` when the grid cannot be co-resident on the GPU
(both with :class:`PathUnavailable`, which the harness records as a skipped case). On the
interpreter a cooperative grid of several hidden blocks runs its math step by step.

**Switches.** The variants of the Gluon kernels that are timed against the shipped ones (the tagged
exchange, the fused or overlapped input projection, the streamed backward copies, ...) are settings
of :mod:`rnnbench.kernels.switches`; where each of them applies is decided here (the ``*_refusal``
functions, :func:`gluon_tagged_exchange`, :func:`gluon_input_tiles`, :func:`gluon_streamed_copies`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from rnnbench.kernels import switches

PATHS = ("persistent", "cooperative", "stepwise")
#: the Gluon LSTM kernels for sm_90 (:func:`plan_gluon`); ``auto`` chooses the forward where :func:`prefers_gluon`
GLUON = "gluon"
#: every value ``path=`` accepts besides ``"auto"``
FORCED_PATHS = PATHS + (GLUON,)
GATES = {"lstm": 4, "rnn": 1}
#: how a grid barrier's wait orders its poll loads (:data:`rnnbench.kernels.primitives.POLL_ORDERS`):
#: an acquire per load, or relaxed loads and one fence
POLL_ORDER_NAMES = ("acquire", "relaxed")
#: the order every plan's barrier polls in: acquire, the order measured so far. The step ablation
#: times the shipped kernels in both (``real`` / ``real_relaxed``, :mod:`rnnbench.kernels.step_bench`),
#: so a GPU run can decide per shape
DEFAULT_POLL_ORDER = "acquire"
#: flags one poll load brings at most (``ld.v4.b32``; :data:`rnnbench.kernels.primitives.FLAG_VECTOR`)
MAX_POLL_VECTOR = 4
#: plain layouts of this many warps and more poll in scalar loads (:attr:`Plan.poll_vector`): with
#: vector loads the plain backward's 16-warp layouts (B=64, H=768/1024, at their 128-register cap)
#: spilled under Triton 3.9 (that backward runs 8 warps since; the 16-warp wide forward remains)
SCALAR_POLL_WARPS = 16
#: gate rows (the MMA's M) of one cooperative program forward: LSTM 4 gates x 8 units, Elman 16 units
GATE_ROWS = {"lstm": 32, "rnn": 16}
#: units (the MMA's M) of one cooperative program backward: a full 16-row MMA tile (8 LSTM units
#: would pad it) and half the programs, each reading all gate gradients of its rows every step
#: (16-row batch blocks only: with wider ones the backward kernel spilled registers at H >= 512)
BACKWARD_UNITS = 16
NUM_WARPS = 4
#: warps of a persistent program (up to 512 gate rows) and of a 64-row batch block: with four, the
#: accumulator and the operand fragments of those tiles spilled registers (Triton 3.9, sm_90)
WIDE_NUM_WARPS = 8
#: a persistent program runs :data:`WIDE_NUM_WARPS` from this many gate rows (``G * H_PAD``), else
#: :data:`NUM_WARPS`: its 2-D dot compiles to wgmma on sm_90, 64 rows per warpgroup, so 8 warps on
#: 64 rows (Elman H=64) computed them twice (estimate 0.60 us per step with 8 warps, 0.48 with 4;
#: Triton 3.9)
PERSISTENT_WIDE_ROWS = 128
#: batch rows per program (the MMA's N) of the split paths: the batch, rounded up to a power of two, within
MIN_BLOCK_B, MAX_BLOCK_B = 16, 64
PERSISTENT_BLOCK_B = 16
#: the widest reduction chunk: 4 warps x 64 columns
MAX_CHUNK = 256
#: fp32 on the split paths (whose full-precision dots run on FMA units and hold each warp's columns
#: of both operands in registers): reduction chunks of 4 warps x 32 columns, :data:`WIDE_NUM_WARPS`
#: and 16-row batch blocks. With 64 columns per warp, 4 warps or 64 rows these spilled registers
#: (Triton 3.9, sm_90 and sm_80: LSTM from H=128, Elman from H=256) and the 64-row backward
#: exceeded the shared-memory bound
FP32_CHUNK = 128
FP32_MAX_BLOCK_B = 16
#: the cooperative LSTM forward of a 16-bit 64-row batch block reduces in chunks of
#: :data:`WIDE_FORWARD_CHUNK` columns: with Triton 3.9 (:data:`BATCHED_DOT_SPREADS_WARPS`) over
#: more than :data:`WIDE_FORWARD_H` columns only (H=1024, B=64), in 2 slices of 32 columns and
#: :data:`HUGE_NUM_WARPS` (128 registers, no spill in all four variants; 4 x 64 columns and 8 warps
#: spilled 16 bytes); with Triton 3.6 at every H, in 4 slices of 16 columns x 2 row parts and 8
#: warps (no spill; with the 256-column chunks 3.9 uses up to H=768, 3.6 spilled 8-56 bytes in the
#: training and bidirectional variants at H=256-768, and 3.9's H=1024 layout computes every slice 8
#: times under 3.6, spilling 48-128 bytes). Each version's layout spills with the other Triton (3.9
#: with the 3.6 layout at H=1024: 32-80 bytes). Under 3.9 the warps depend on how the kernel is
#: compiled (:data:`HIDDEN_SPECIALISATION`): with H divisible by 16, :data:`WIDE_NUM_WARPS` (252-254
#: registers, no spill in the four variants, and the cost model's step 6.04 µs against 6.42 at
#: H=1024, B=64), where 16 warps spilled 16-24 bytes; otherwise 16 warps, where 8 spilled 8 bytes
WIDE_FORWARD_H = 768
WIDE_FORWARD_CHUNK = 64
WIDE_FORWARD_SPREAD_SLICES = 2
HUGE_NUM_WARPS = 16
#: Triton specialises an integer kernel argument divisible by this at run time (``tt.divisibility``),
#: so a kernel runs as compiled for an ``H`` divisible by it or not: two compilations whose
#: registers and spills differ (:class:`rnnbench.kernels.aot.KernelConfig`'s ``hidden_divisible``)
HIDDEN_SPECIALISATION = 16
#: the LSTM forward's 32 gate rows (the MMA's M) in two parts of 16 when a program has more than
#: :data:`NUM_WARPS` warps: its batched dot is ``num_warps / 2`` reduction slices x 2 row parts,
#: one per warp, each with a 16-row accumulator (:func:`row_split`)
FORWARD_ROW_PARTS = 2
#: the largest ``W_hh`` (bytes, by element size) a persistent program holds: above it the
#: persistent kernels spilled registers with 4, 8 or 16 warps (Triton 3.9: 16-bit LSTM H=128 and
#: Elman H=256, 8-1048 bytes; fp32 with exact dots LSTM H=32 and Elman H=64), although the weights
#: fit shared memory. 16-bit: LSTM H <= 64, Elman H <= 128; fp32: LSTM H <= 16, Elman H <= 32
PERSISTENT_MAX_WEIGHT_BYTES = {2: 32768, 4: 4096}
#: the most gate rows of a persistent *backward* program (LSTM H <= 32, Elman H <= 128): the LSTM
#: backward at H=64 spilled 16-56 bytes with 4, 8 or 16 warps, so it runs cooperative behind a
#: persistent forward
PERSISTENT_BACKWARD_MAX_ROWS = 128
#: sm_80 (``arch < 90``) stepwise backward: 16-row batch blocks over at least 512 columns run
#: :data:`WIDE_NUM_WARPS` (columns after padding: an H of 257-511 compiles as 512, and with 4 warps
#: the bidirectional LSTM backward spilled 40 bytes for an H not divisible by 16), and the Elman backward's 64-row blocks over more than 1024 columns reduce
#: in chunks of :data:`FP32_CHUNK` (as they were, the LSTM backward at H=512, B=16 and the Elman
#: backward at H=2048 spilled 16-40 bytes on sm_80 only; 8 warps spilled at LSTM H=768 on sm_90, so
#: sm_90 keeps 4; narrower chunks made the sm_80 LSTM backward with 64 rows spill, so it keeps them).
#: The sm_80 LSTM backward's 64-row blocks there run :data:`NUM_WARPS`, a slice each: with 8 warps
#: and 8 slices Triton 3.6 spilled 8 bytes at H=768 (bidirectional with lengths; 8 warps and 4
#: slices compute each slice twice under 3.6, 16 warps spilled 16), with 4 warps no variant spills
#: at 512-4096 columns under either Triton, and the cost model rates the two alike (sm_90 build,
#: bf16 B=64: 8.71-18.78 µs per step, launch and memory bound)
SM80_STEPWISE_BACKWARD_WIDE_H = 512
SM80_STEPWISE_BACKWARD_NARROW_RNN_H = 1024
#: a cooperative backward with 16-row batch blocks over more than this many columns runs
#: :data:`WIDE_NUM_WARPS` (LSTM H=768 and 1024: 4 warps spilled 24 bytes with H unspecialised,
#: 8 warps compile to 208 registers and no spill), one reduction slice per warp also where Triton
#: would spread 4 slices over the 8 warps (:data:`BATCHED_DOT_SPREADS_WARPS`): each warp's chain of
#: dependent MMAs is then half as long (LSTM H=768: 24 instead of 48 per step), and the cost
#: model's step (Triton 3.9, sm_90, bf16) goes 3.84 -> 3.61 µs at LSTM H=768, 4.90 -> 4.53 at
#: H=1024, 1.80 -> 1.73 at Elman H=768 and 2.20 -> 2.10 at Elman H=1024 (no spill in any variant)
BACKWARD_WIDE_H_PAD = 512
#: the 16-bit cooperative LSTM of a batch wider than :data:`MIN_BLOCK_B` runs blocks of this many
#: rows and :data:`HALF_BLOCK_UNITS` units, not 64 rows of 8 units, forward and backward (the
#: Elman 32 units, not 16: :data:`ELMAN_HALF_ROWS`).
#: Forward: 64 gate rows (the MMA's M) per program, 8 warps, each program reading half the state
#: rows per step; LSTM bf16 B=64, cost model, µs per step, Triton 3.9 (4 slices, 256-column
#: chunks): H=256 2.31 -> 2.16, 512 3.17 -> 2.88, 768 4.58 -> 3.91, 1024 6.03 -> 4.95; Triton 3.6
#: (a slice per warp in two row parts, 64-column chunks): 768 4.90 -> 4.02, 1024 6.10 -> 5.06. No
#: spill in the four variants (3.6 with 256-column chunks spilled at 1024 columns).
#: Backward (:func:`backward_half_rows`): half the programs at a given batch block count, each reading all 4H gate gradients of its
#: rows every step, so half the L2 traffic per SM (H=768, B=64: 96 programs of 64 rows, 384 KiB per
#: program and step, became 96 programs of 32 rows, 192 KiB). Cost model, LSTM bf16 B=64, µs per
#: step, before -> after: Triton 3.9 H=256 3.26 -> 2.63, H=512 5.20 -> 4.15, H=768 8.99 -> 6.51;
#: Triton 3.6 H=768 9.13 -> 6.24. The layout: 8 warps, with Triton 3.6 a slice each, with 3.9 4
#: slices (the version's default). Until the state loads narrowed (:mod:`rnnbench.kernels.
#: operand_layout`), 3.9's 8 warps spilled 8-24 bytes above 512 columns, which ran 16 warps with 8
#: slices instead; those could not be loaded conflict-free (one element a thread spilled), so their
#: state buffer was read 4.5 wavefronts an ``ldmatrix``: H=768 B=64 17.33 µs a step against 6.88
#: with 8 warps (H=1024 23.30 -> 9.96, cost model, Triton 3.9). At 1024 columns (since
#: :func:`kernel_resources` counts one chunk of the LSTM backward's state: 209 KiB bounded, 160 KiB
#: compiled) the same, also on sm_80, H=1024 B=64 going
#: 14.46 -> 9.67 (3.9) and 15.07 -> 9.52 (3.6). Where the bound says the 16 units do not fit one SM
#: (sm_80 at 1024 columns), and above 1024 columns, 64-row blocks of 8 units stay
HALF_BLOCK_B = 32
#: units per program with :data:`HALF_BLOCK_B`-row blocks: LSTM 16 (64 gate rows forward, 16
#: gradient rows backward), Elman 32 (the same programs as 64-row blocks of 16)
HALF_BLOCK_UNITS = {"lstm": 16, "rnn": 32}
#: ``(num_warps, slices)`` of the Elman's :data:`HALF_BLOCK_B`-row blocks (``slices`` None: the
#: version's default). Cost model, bf16 B=64, µs per step, 64-row blocks of 16 units -> 32-row
#: blocks of 32: forward (4 warps, 4 slices) Triton 3.9 H=256 1.76 -> 1.53, 512 2.33 -> 1.88,
#: 768 2.95 -> 2.31, 1024 3.47 -> 2.73, Triton 3.6 1.99 -> 1.59, 2.46 -> 1.98, 3.09 -> 2.37,
#: 3.55 -> 2.73; backward (8 warps, 8 slices; 4 warps spilled 8 bytes at 1024 columns, on the
#: step path) 3.9 1.77 -> 1.72, 2.43 -> 2.15, 3.18 -> 2.77, 3.89 -> 3.32, 3.6 1.95 -> 1.75,
#: 2.52 -> 2.23, 3.29 -> 2.77, 3.93 -> 3.33. No spill in any variant.
ELMAN_HALF_ROWS = {False: (NUM_WARPS, None), True: (WIDE_NUM_WARPS, WIDE_NUM_WARPS)}
BACKWARD_HALF_ROWS_MAX_H_PAD = 1024
#: the grid barrier polls one flag per hidden block of a batch block (primitives.FLAG_SLOTS)
MAX_HIDDEN_BLOCKS = 256
#: the kernels address one time step's rows with 32-bit offsets (only the time offset is 64-bit):
#: the widest such span, the backward's exchange of two slots of ``B_pad x G * H_PAD`` elements,
#: must stay within this (:func:`check_step_span`)
MAX_STEP_ELEMENTS = 2**31 - 1
#: 32-bit registers of one multiprocessor
REGISTER_FILE = 65536


def major_minor(version: str) -> tuple[int, int]:
    """``(major, minor)`` of a package's version string, such as ``"3.6.0"`` or ``"2.4.0rc1"``."""
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def _triton_version() -> tuple[int, int]:
    try:
        import triton
    except ImportError:  # planning needs no compiler (the harness's CPU-only backends)
        return (3, 9)
    return major_minor(triton.__version__)


#: ``(major, minor)`` of the installed Triton, which compiles the kernels the planner lays out
TRITON_VERSION = _triton_version()
#: Whether the installed Triton spreads the warps of a batched (3-D) ``tl.dot`` with fewer batch
#: slices than warps over the slices' rows and columns too: Triton 3.9 does (warps per CTA
#: ``[4, 1, 2]`` for 4 slices and 8 warps), Triton 3.6 puts every warp on the batch dimension
#: (``[8, 1, 1]``), so each slice is computed by ``num_warps / slices`` warps at once, every one of
#: them holding that slice's whole accumulator: 2-8x the MMA instructions, and the register
#: spills of the 3.6 tables (3.7 and 3.8 were not checked and are treated as 3.6). With 3.6 the
#: batched dots therefore have one slice per warp (:func:`split_layout`; the LSTM forward in two
#: row parts, :func:`row_split`). With 3.9 the split layouts keep :data:`NUM_WARPS` slices (the wide
#: forward :data:`WIDE_FORWARD_SPREAD_SLICES`) and leave the other warps to the compiler: one slice
#: per warp compiled with 3.9 spilled 8-48 bytes (the LSTM forward with 64-row blocks at H=768 and
#: its stepwise form at H=1024, the fp32 LSTM backward at H=512) and the 64-row Elman and backward
#: kernels' estimates were 1-7 % slower (twice the data through the cross-warp reduction).
#: Both versions: a chunk too narrow for the slices is a 2-D dot
BATCHED_DOT_SPREADS_WARPS = TRITON_VERSION >= (3, 9)


@dataclass(frozen=True)
class Limits:
    """Per-multiprocessor limits of a GPU architecture (bytes; registers are 32-bit)."""

    shared_per_block: int
    shared_per_sm: int
    registers_per_sm: int = REGISTER_FILE
    max_warps_per_sm: int = 64
    max_programs_per_sm: int = 32
    #: shared memory the driver reserves per resident block
    shared_reserved_per_program: int = 1024


#: compute capability (major * 10 + minor) -> limits; shared memory per block is the opt-in maximum
LIMITS = {80: Limits(shared_per_block=166912, shared_per_sm=167936), 90: Limits(shared_per_block=232448, shared_per_sm=233472)}
#: what the planner assumes where it cannot ask a GPU (the interpreter, ahead-of-time tables)
DEFAULT_ARCH = 90


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
    #: reduction chunks of ``h_pad / k_chunks`` columns
    k_chunks: int = 1
    #: 2 for a bidirectional layer
    directions: int = 1
    #: directions one launch runs: all of them, or 1 when a cooperative layer's two directions
    #: would not be co-resident together and run one after the other
    launch_directions: int = 1
    #: the grid barrier's poll order (:data:`POLL_ORDER_NAMES`; the kernels' ``POLL_ORDER``)
    poll_order: str = DEFAULT_POLL_ORDER
    #: the Gluon forward's weight tiles (64 columns each) held in registers as the warpgroup MMA's A
    #: operand rather than read from shared memory every step (:func:`gluon_register_tiles`)
    register_tiles: int = 0
    #: the Gluon forward's fused input projection: tiles of 64 input columns of its ``W_ih`` slice
    #: held in shared memory (0: the projection is a GEMM before the kernel; :func:`gluon_input_tiles`)
    input_tiles: int = 0

    def __post_init__(self):
        if self.poll_order not in POLL_ORDER_NAMES:
            raise ValueError(f"poll_order must be one of {POLL_ORDER_NAMES}, got {self.poll_order!r}")

    @property
    def launch_grid(self) -> tuple[int, int, int]:
        return (*self.grid, self.launch_directions)

    @property
    def programs(self) -> int:
        """Programs of one launch (those that must be co-resident on the cooperative path)."""
        return self.grid[0] * self.grid[1] * self.launch_directions

    @property
    def poll(self) -> int:
        """Flags the grid barrier polls (the kernels' ``POLL``): the hidden blocks rounded up to a
        power of two, whose 32 lanes each load ``POLL / 32`` consecutive flags as vectors
        (:func:`rnnbench.kernels.primitives.slowest_flag`); to a multiple of 32 where the poll is
        scalar above 32 (:attr:`poll_vector` 1: one masked load of 32 flags at a time)."""
        if self.grid[0] <= 32 or self.poll_vector > 1:
            return next_power_of_two(self.grid[0])
        return -(-self.grid[0] // 32) * 32

    @property
    def poll_vector(self) -> int:
        """Flags a thread's poll load brings at most (the plain kernels' ``POLL_VECTOR``): 1 up to 32
        producers (one flag per lane), off the paths with a grid barrier (cooperative, Gluon) and for
        plain layouts of :data:`SCALAR_POLL_WARPS` warps, else
        ``POLL / 32`` up to :data:`MAX_POLL_VECTOR`, so an acquire poll of up to 128 producers is one
        L2 round trip rather than one per 32 (measured on an H200 for the Gluon kernels, which always
        poll so: the forward at H=768 B=16, 48 producers, 2.78 -> 2.51 µs per step, at H=1024 B=64,
        128, 4.35 -> 3.56; reports/h200/acd6756)."""
        if (self.grid[0] <= 32 or self.path not in ("cooperative", GLUON)
                or (self.path != GLUON and self.num_warps >= SCALAR_POLL_WARPS)):
            return 1
        return min(next_power_of_two(self.grid[0]) // 32, MAX_POLL_VECTOR)

    @property
    def resident_warps(self) -> int:
        """Warps one program occupies on its SM: :attr:`num_warps` (the launch's), plus the
        warpgroup of the Gluon forward's fused input projection (:attr:`input_tiles`), which
        ``gl.warp_specialize`` adds."""
        return self.num_warps + (GLUON_NUM_WARPS if self.input_tiles else 0)

    @property
    def max_registers(self) -> int:
        """Register cap for ptxas: the most a thread can have with one program per SM.

        Passed explicitly because ptxas otherwise capped some of these kernels at 128 registers
        and spilled (seen with the ptxas of Triton 3.6 and 3.9)."""
        return min(255, REGISTER_FILE // (32 * self.resident_warps))


@dataclass(frozen=True)
class Resources:
    """What one program of a kernel needs: shared memory (bytes) and registers per thread."""

    shared_bytes: int
    registers: int


def next_power_of_two(value: int) -> int:
    return 1 << (max(int(value), 1) - 1).bit_length()


def element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def reduction_layout(hidden_size: int, persistent: bool, widest: int | None = None) -> tuple[int, int, int]:
    """``(h_pad, chunk, k_chunks)`` of the reduction over ``hidden_size`` (see the module docstring);
    ``widest`` caps the chunk below :data:`MAX_CHUNK`."""
    if persistent:
        h_pad = max(16, next_power_of_two(hidden_size))
        return h_pad, h_pad, 1
    chunk = min(MAX_CHUNK, widest or MAX_CHUNK, max(16, next_power_of_two(hidden_size)))
    chunks = -(-hidden_size // chunk)
    return chunks * chunk, chunk, chunks


def split_layout(chunk: int, num_warps: int, row_parts: int = 1, slices: int | None = None) -> tuple[int, int]:
    """``(k_split, num_warps)``: how a program's warps share a reduction chunk of ``chunk`` columns.

    The batched dot has one slice per warp: ``num_warps / row_parts`` reduction slices of at least
    16 columns each (``row_parts`` parts of the rows each, :func:`row_split`). Where the chunk is
    too narrow for that, 4 slices and 4 warps (64 columns and one row part), else one slice
    (``k_split = 1``: a 2-D dot whose warps split the ``(M, BLOCK_B)`` output, never the reduction).
    ``slices`` fewer than the warps rely on :data:`BATCHED_DOT_SPREADS_WARPS`."""
    slices = slices or num_warps // row_parts
    if chunk // 16 >= slices:
        return slices, num_warps
    if row_parts == 1 and chunk // 16 >= NUM_WARPS:
        return NUM_WARPS, NUM_WARPS
    return 1, num_warps


def kernel_resources(cell: str, plan: Plan, dtype: torch.dtype, backward: bool = False) -> Resources:
    """An upper bound of the shared memory (bytes) and registers (per thread) one program of
    ``plan`` needs, forward and backward alike (see the module docstring for how it is checked).

    Shared memory, the sum of three buffers that can be live together: the weights (the held
    ``(G * block_h, h_pad)`` slice; on the stepwise path one streamed ``(G * block_h, chunk)``
    block), the staged state (all ``h_pad / chunk`` chunks of ``(chunk, block_b)`` when the
    weights are held, as the next step's are loaded a step ahead; one chunk when streamed, and in
    the LSTM ``backward``) and the fp32 ``(k_split, G * block_h, block_b)`` reduction scratch, plus
    :data:`SHARED_FIXED`.

    The LSTM backward's product has ``block_h`` rows (the units), a quarter of what the scratch term
    counts, and every compiled LSTM backward (both Tritons, sm_80 and sm_90) allocated at most its
    weights, one chunk of state and that scratch, several exactly. Counting every chunk, its
    32-row blocks of 16 units over 1024 columns with 8 slices (160 KiB compiled) were bounded at 257
    KiB, more than one SM; with one chunk, 209 KiB (cost model, bf16 B=64: 9.5-9.7 µs per step,
    against 14.5-15.1 for the 64-row blocks it ran instead). The Elman backward (scratch exact: its
    rows are its units) stages more than one chunk beyond it and keeps every chunk in its bound.

    Registers: the cap passed to ptxas (:attr:`Plan.max_registers`), which a compiled kernel never
    exceeds (it spills instead, and the AOT table reports spills)."""
    if plan.path == GLUON:
        if backward:
            shared = gluon_backward_shared_bytes(plan.h_pad, plan.block_b, element_size(dtype))
        else:
            shared = gluon_shared_bytes(plan.h_pad, plan.block_b, element_size(dtype), plan.register_tiles,
                                        plan.input_tiles)
        return Resources(shared + SHARED_FIXED, plan.max_registers)
    size = element_size(dtype)
    rows = GATES[cell] * plan.block_h
    chunk = plan.h_pad // plan.k_chunks
    streamed = plan.path == "stepwise"
    weights = rows * (chunk if streamed else plan.h_pad) * size
    one_chunk = streamed or (backward and cell == "lstm")
    state = (chunk if one_chunk else plan.h_pad) * plan.block_b * size
    scratch = plan.k_split * rows * plan.block_b * 4
    return Resources(weights + state + scratch + SHARED_FIXED, plan.max_registers)


#: barriers, flags and alignment (bytes): what the compiled kernels allocate beyond the three buffers
SHARED_FIXED = 1024


def programs_per_multiprocessor(resources: Resources, num_warps: int, limits: Limits) -> tuple[int, str]:
    """``(programs per SM, the resource that limits it)`` for programs needing ``resources``
    (registers are allocated per warp in units of 256)."""
    per_warp = math.ceil(resources.registers * 32 / 256) * 256
    fits = {
        "registers": limits.registers_per_sm // (per_warp * num_warps) if resources.registers else limits.max_programs_per_sm,
        "shared": limits.shared_per_sm // (resources.shared_bytes + limits.shared_reserved_per_program),
        "warps": limits.max_warps_per_sm // num_warps,
        "blocks": limits.max_programs_per_sm,
    }
    if resources.shared_bytes > limits.shared_per_block:
        fits["shared"] = 0
    limit = min(fits, key=fits.get)
    return fits[limit], limit


def fits_persistent(cell: str, hidden_size: int, dtype: torch.dtype, arch: int = DEFAULT_ARCH, backward: bool = False) -> bool:
    """Whether one program can hold all of ``W_hh`` (the persistent path; ``backward``: its backward
    kernel, limited to :data:`PERSISTENT_BACKWARD_MAX_ROWS`)."""
    plan = _layout(cell, "persistent", hidden_size, 1, dtype=dtype, arch=arch)
    size = element_size(dtype)
    if GATES[cell] * plan.h_pad * plan.h_pad * size > PERSISTENT_MAX_WEIGHT_BYTES[min(size, 4)]:
        return False
    if backward and GATES[cell] * plan.h_pad > PERSISTENT_BACKWARD_MAX_ROWS:
        return False
    return programs_per_multiprocessor(kernel_resources(cell, plan, dtype), plan.num_warps, LIMITS[arch])[0] >= 1


def row_split(cell: str, backward: bool, k_split: int, num_warps: int) -> int:
    """``M_SPLIT`` of the LSTM forward kernel (a launch parameter derived from the plan): the parts
    its 32 gate rows are cut into so that its batched dot has one slice per warp (``K_SPLIT *
    M_SPLIT == num_warps``, :data:`FORWARD_ROW_PARTS`); 1 for a 2-D dot, for every other kernel,
    and for a layout whose extra warps Triton spreads itself (:data:`WIDE_FORWARD_SPREAD_SLICES`)."""
    parts = num_warps // k_split
    if BATCHED_DOT_SPREADS_WARPS or cell != "lstm" or backward or k_split == 1 or parts > FORWARD_ROW_PARTS:
        return 1
    return parts


class PathUnavailable(ValueError):
    """A forced path cannot run this shape (on this GPU): a limit of its design, not a bug. The
    message says why and which path would."""


def backward_half_rows(h_pad: int) -> tuple[int, int | None] | None:
    """``(num_warps, slices)`` of the 16-bit cooperative LSTM backward over ``h_pad`` columns in
    :data:`HALF_BLOCK_B`-row blocks of :data:`HALF_BLOCK_UNITS` units (``slices`` None: the
    version's default), or None where it keeps 64-row blocks of 8 units (no such layout compiled
    without spilling registers in every variant)."""
    if h_pad > BACKWARD_HALF_ROWS_MAX_H_PAD:
        return None
    return WIDE_NUM_WARPS, None


def _layout(cell: str, path: str, hidden_size: int, batch: int, directions: int = 1, backward: bool = False,
            dtype: torch.dtype = torch.bfloat16, arch: int = DEFAULT_ARCH, half_rows_allowed: bool = True,
            narrow_rows: bool = False) -> Plan:
    """The layout of ``path`` for the shape; ``narrow_rows``: :data:`MIN_BLOCK_B`-row batch blocks
    whatever the batch (:func:`narrow_batch_blocks`)."""
    persistent = path == "persistent"
    fp32 = element_size(dtype) >= 4
    widest_b = min(MAX_BLOCK_B, FP32_MAX_BLOCK_B) if fp32 else MAX_BLOCK_B
    rows = MIN_BLOCK_B if narrow_rows else batch
    block_b = PERSISTENT_BLOCK_B if persistent else min(widest_b, max(MIN_BLOCK_B, next_power_of_two(rows)))
    num_warps = WIDE_NUM_WARPS if block_b == MAX_BLOCK_B else NUM_WARPS
    if persistent and GATES[cell] * max(16, next_power_of_two(hidden_size)) >= PERSISTENT_WIDE_ROWS:
        num_warps = WIDE_NUM_WARPS
    forward_lstm = cell == "lstm" and not backward
    half_rows = None  # (warps, slices) of a 16-bit layer in HALF_BLOCK_B-row blocks of HALF_BLOCK_UNITS units
    if path == "cooperative" and not fp32 and block_b > MIN_BLOCK_B and half_rows_allowed:
        if cell == "rnn":
            half_rows = ELMAN_HALF_ROWS[backward]
        elif backward:
            half_rows = backward_half_rows(reduction_layout(hidden_size, False)[0])
        else:
            half_rows = WIDE_NUM_WARPS, None
        if half_rows is not None:
            block_b = HALF_BLOCK_B
    widest = slices = None
    if fp32 and not persistent:
        widest, num_warps = FP32_CHUNK, WIDE_NUM_WARPS
    elif half_rows is not None:
        num_warps, slices = half_rows
        if forward_lstm and not BATCHED_DOT_SPREADS_WARPS:
            widest = WIDE_FORWARD_CHUNK
    elif path == "cooperative" and forward_lstm and block_b == MAX_BLOCK_B and (
            hidden_size > WIDE_FORWARD_H or not BATCHED_DOT_SPREADS_WARPS):
        widest = WIDE_FORWARD_CHUNK
        if BATCHED_DOT_SPREADS_WARPS:
            slices = WIDE_FORWARD_SPREAD_SLICES
            num_warps = WIDE_NUM_WARPS if hidden_size % HIDDEN_SPECIALISATION == 0 else HUGE_NUM_WARPS
    elif path == "cooperative" and backward and block_b == MIN_BLOCK_B and hidden_size > BACKWARD_WIDE_H_PAD:
        num_warps = max(num_warps, WIDE_NUM_WARPS)
        slices = num_warps
    elif path == "stepwise" and backward and arch < 90 and (
            reduction_layout(hidden_size, False)[0] >= SM80_STEPWISE_BACKWARD_WIDE_H):  # the padded size compiles
        if block_b == MIN_BLOCK_B:
            num_warps = WIDE_NUM_WARPS
        elif cell == "lstm":
            num_warps = NUM_WARPS
        elif cell == "rnn" and hidden_size > SM80_STEPWISE_BACKWARD_NARROW_RNN_H:
            widest = FP32_CHUNK
    if BATCHED_DOT_SPREADS_WARPS:
        slices = slices or NUM_WARPS
    h_pad, chunk, k_chunks = reduction_layout(hidden_size, persistent, widest)
    if persistent:
        k_split = 1
    else:
        row_parts = FORWARD_ROW_PARTS if forward_lstm and num_warps > NUM_WARPS else 1
        k_split, num_warps = split_layout(chunk, num_warps, row_parts, slices)
    if persistent:
        block_h = h_pad
    else:
        if half_rows is not None:
            block_h = HALF_BLOCK_UNITS[cell]
        elif backward and block_b == MIN_BLOCK_B:
            block_h = BACKWARD_UNITS
        else:
            block_h = GATE_ROWS[cell] // GATES[cell]
    grid = (-(-hidden_size // block_h), -(-batch // block_b))
    plan = Plan(cell, path, block_b, block_h, h_pad, k_split, num_warps, grid, k_chunks, directions, directions)
    if k_split > NUM_WARPS and not _fits_one_multiprocessor(cell, plan, dtype, arch, backward):
        # a slice per warp doubles the reduction scratch: where that does not fit one SM, NUM_WARPS
        # slices (with Triton 3.6 each computed by two warps: the 8-warp backward with 64-row
        # blocks at H=1024 spilled 48-120 bytes with 4 warps and none with 8)
        k_split = split_layout(chunk, num_warps, slices=NUM_WARPS)[0]
        plan = Plan(cell, path, block_b, block_h, h_pad, k_split, num_warps, grid, k_chunks, directions, directions)
    if half_rows is not None and not _fits_one_multiprocessor(cell, plan, dtype, arch, backward):
        # e.g. 16 units of 768-1024 columns on sm_80 by the bound: 64-row blocks of 8 units
        return _layout(cell, path, hidden_size, batch, directions, backward, dtype, arch, half_rows_allowed=False,
                       narrow_rows=narrow_rows)
    return plan


def narrow_batch_blocks(cell: str, hidden_size: int, batch: int, dtype: torch.dtype, multiprocessors: int | None,
                        directions: int = 1, backward: bool = False, arch: int = DEFAULT_ARCH) -> bool:
    """Whether the cooperative path runs a 16-bit batch wider than :data:`MIN_BLOCK_B` rows in the
    layout of B <= 16 (:data:`MIN_BLOCK_B`-row batch blocks, as many as the batch needs) rather than
    in wider blocks: where that grid, both directions together, puts at most one program on each of
    the ``multiprocessors``. Each program then runs the step measured at B=16, while the wider
    blocks did more work per program for fewer programs: H100, bf16, T=1024, CUDA-graph replay, µs
    per step, B=16 against B=64 in 32-row blocks (reports/h100/ab-gpu-ab/candidate): LSTM forward
    H=128 1.95 vs 3.35, H=256 2.08 vs 4.29, forward+backward 4.08 vs 6.69 and 4.81 vs 8.27, H=512
    6.61 vs 12.20; Elman forward H=256 1.58 vs 2.18, H=512 1.77 vs 2.53 (the narrow B=64 grid
    itself is not measured yet). Only on a known GPU (``multiprocessors``), never in fp32
    (whose blocks are 16 rows anyway) or beyond the barrier's :data:`MAX_HIDDEN_BLOCKS`."""
    if multiprocessors is None or batch <= MIN_BLOCK_B or element_size(dtype) >= 4:
        return False
    narrow = _layout(cell, "cooperative", hidden_size, batch, directions, backward, dtype, arch, narrow_rows=True)
    return narrow.grid[0] <= MAX_HIDDEN_BLOCKS and narrow.grid[0] * narrow.grid[1] * directions <= multiprocessors


def check_step_span(cell: str, hidden_size: int, batch: int) -> None:
    """Refuse a batch whose rows one step of the kernels cannot address with 32-bit offsets
    (:data:`MAX_STEP_ELEMENTS`; forward and backward alike, as a layer trained needs both), naming
    the largest batch that can be."""
    h_pad = reduction_layout(hidden_size, False)[0]
    per_row = 2 * GATES[cell] * h_pad
    span = -(-batch // MAX_BLOCK_B) * MAX_BLOCK_B * per_row
    if span > MAX_STEP_ELEMENTS:
        rows = MAX_STEP_ELEMENTS // per_row // MAX_BLOCK_B * MAX_BLOCK_B
        raise ValueError(
            f"{cell} hidden_size={hidden_size} with batch={batch}: one step spans {span} elements, more than the "
            f"kernels' 32-bit offsets address ({MAX_STEP_ELEMENTS}); run the batch in chunks of at most {rows} rows"
        )


def _fits_one_multiprocessor(cell: str, plan: Plan, dtype: torch.dtype, arch: int, backward: bool) -> bool:
    return programs_per_multiprocessor(kernel_resources(cell, plan, dtype, backward), plan.num_warps, LIMITS[arch])[0] >= 1


def plan_recurrence(
    cell: str,
    hidden_size: int,
    batch: int,
    dtype: torch.dtype,
    path: str = "auto",
    multiprocessors: int | None = None,
    interpreter: bool = False,
    directions: int = 1,
    arch: int = DEFAULT_ARCH,
    backward: bool = False,
    allow_gluon: bool = True,
    allow_narrow: bool = True,
    input_size: int | None = None,
    inference: bool = False,
) -> Plan:
    """Choose path and block sizes for a ``cell`` (``"lstm"``/``"rnn"``) recurrence, forward or
    (``backward``) the reverse-time kernel.

    ``multiprocessors`` is the GPU's SM count (None on the interpreter, where ``cooperative`` is
    never chosen automatically) and ``arch`` its compute capability (``90`` for sm_90), whose
    :data:`LIMITS` decide what fits (the same for TF32 and full-precision fp32 dots);
    ``directions`` is 2 for a bidirectional layer (both directions in one launch where they fit).
    ``allow_gluon`` lets ``auto`` choose the Gluon forward where :func:`prefers_gluon` (it still
    needs ``multiprocessors`` and an sm_90 ``arch``); False where the GPU is newer than sm_90 but
    planned with sm_90's limits (:func:`rnnbench.kernels.launch.make_plan`). ``allow_narrow``: a
    wide 16-bit batch may run the layout of B <= 16 (:func:`narrow_batch_blocks`; False: the wide
    blocks, e.g. to time both). ``input_size``: of a forward that may fuse its input projection
    into the Gluon kernel (:func:`gluon_input_tiles`), None where it cannot (lengths, a first-step
    term, the backward). ``inference``: a forward that saves nothing for a backward and runs every
    batch row every step (no lengths), where ``auto`` also takes the Gluon forward below
    :func:`prefers_gluon`'s sizes if that forward exchanges tagged words
    (:func:`gluon_tagged_exchange`): on the H200 (7caf667, kernel alone, bf16) it ran H=256 B=16 in
    1.47 µs a step against the plain kernel's 1.82 (the Gluon forward with its barrier: 2.10), B=64
    in 1.73 against 1.85.
    """
    if cell not in GATES:
        raise ValueError(f"cell must be one of {tuple(GATES)}, got {cell!r}")
    if directions not in (1, 2):
        raise ValueError(f"directions must be 1 or 2, got {directions!r}")
    if path != "auto" and path not in FORCED_PATHS:
        raise ValueError(f"path must be 'auto' or one of {FORCED_PATHS}, got {path!r}")
    if arch not in LIMITS:
        raise ValueError(f"arch must be one of {tuple(LIMITS)}, got {arch!r}")
    check_step_span(cell, hidden_size, batch)
    if path == GLUON:
        if not backward:
            return plan_gluon(cell, hidden_size, batch, dtype, multiprocessors, interpreter, directions, arch,
                              input_size=input_size)
        try:
            return plan_gluon(cell, hidden_size, batch, dtype, multiprocessors, interpreter, directions, arch,
                              backward=True)
        except PathUnavailable:
            path = "auto"  # a forced Gluon forward trains with the plain backward where Gluon's cannot run
    narrow = allow_narrow and not interpreter and narrow_batch_blocks(cell, hidden_size, batch, dtype, multiprocessors,
                                                                       directions, backward, arch)
    preferred = prefers_gluon_backward(cell, dtype) if backward else prefers_gluon(cell, hidden_size, batch, dtype,
                                                                                    narrow)
    if path == "auto" and allow_gluon and multiprocessors is not None and (preferred or (inference and not backward)):
        try:
            plan = plan_gluon(cell, hidden_size, batch, dtype, multiprocessors, interpreter, directions, arch,
                              backward=backward, input_size=None if backward else input_size)
            if preferred or gluon_tagged_exchange(plan, multiprocessors):
                return plan
        except PathUnavailable:
            pass  # not this GPU, Triton or size: the plain paths below
    limits = LIMITS[arch]
    persistent_ok = fits_persistent(cell, hidden_size, dtype, arch, backward)
    if path == "persistent" and not persistent_ok and backward and fits_persistent(cell, hidden_size, dtype, arch):
        raise PathUnavailable(
            f"path='persistent' runs the forward of {cell} hidden_size={hidden_size} in {dtype} but not its backward: "
            f"a persistent backward holds at most {PERSISTENT_BACKWARD_MAX_ROWS} gate rows (larger ones spilled "
            f"registers), this one has {GATES[cell] * _layout(cell, 'persistent', hidden_size, 1, dtype=dtype).h_pad}; "
            "path='auto' runs a persistent forward and a cooperative backward"
        )
    if path == "persistent" and not persistent_ok:
        plan = _layout(cell, "persistent", hidden_size, batch, dtype=dtype)
        needed = kernel_resources(cell, plan, dtype)
        raise PathUnavailable(
            f"path='persistent' needs all of W_hh in one program, but {cell} hidden_size={hidden_size} in {dtype} needs "
            f"{needed.shared_bytes} bytes of shared memory and {needed.registers} registers per thread, and its "
            f"{GATES[cell] * plan.h_pad ** 2 * element_size(dtype)}-byte W_hh (padded) is more than one sm_{arch} "
            f"multiprocessor holds or than {PERSISTENT_MAX_WEIGHT_BYTES[min(element_size(dtype), 4)]} bytes (larger "
            f"persistent programs spill registers); "
            "use path='cooperative' or 'stepwise'"
        )
    if path == "auto":
        chosen = "persistent" if persistent_ok else "cooperative"
    else:
        chosen = path

    def layout(name: str) -> Plan:
        return _layout(cell, name, hidden_size, batch, directions, backward, dtype, arch,
                       narrow_rows=narrow and name == "cooperative")

    plan = layout(chosen)
    if chosen == "persistent":
        return plan
    on_gpu = multiprocessors is not None and not interpreter
    cooperative = layout("cooperative")
    resident = programs_per_multiprocessor(kernel_resources(cell, cooperative, dtype, backward), cooperative.num_warps,
                                           limits)[0]
    capacity = resident * multiprocessors if on_gpu else 0
    one_launch = plan.grid[0] * plan.grid[1]
    co_resident = on_gpu and one_launch <= capacity and plan.grid[0] <= MAX_HIDDEN_BLOCKS
    if path == "auto":
        chosen = "cooperative" if co_resident else "stepwise"
        plan = layout(chosen)
    if chosen == "cooperative" and on_gpu and not co_resident:
        raise PathUnavailable(
            f"path='cooperative' needs {one_launch} co-resident programs ({plan.grid[0]} hidden blocks x {plan.grid[1]} "
            f"batch blocks) but {multiprocessors} multiprocessors hold {resident} each ({capacity}); use path='stepwise' or "
            "a smaller batch"
        )
    together = not (chosen == "cooperative" and on_gpu and one_launch * directions > capacity)
    return Plan(cell, chosen, plan.block_b, plan.block_h, plan.h_pad, plan.k_split, plan.num_warps, plan.grid,
                plan.k_chunks, directions, directions if together else 1)


#: the Gluon path's limits: Hopper's warpgroup MMA and TMA, 16-bit storage, and hidden sizes whose
#: weight slice (64 gate rows x H) is worth keeping on chip (below, the plain paths are as good)
GLUON_ARCH = 90
GLUON_MIN_HIDDEN = 256
#: ``auto`` prefers the Gluon forward of a batch of at most :data:`MIN_BLOCK_B` rows from this hidden
#: size (:func:`prefers_gluon`)
GLUON_AUTO_MIN_HIDDEN_NARROW = 512
#: rows of xg and of the exchange are copied asynchronously in vectors of 4 to 16 bytes (cp.async,
#: TMA), and Triton proves that alignment from H's divisibility by 16 (its run-time specialisation)
GLUON_HIDDEN_MULTIPLE = 16
GLUON_BLOCK_H = 16
GLUON_K_TILE = 64
GLUON_NUM_WARPS = 4


def gluon_state_copies(h_pad: int) -> tuple[int, int]:
    """``(copies, tiles per copy)`` of one step's state: a power of two (a TMA box dimension must
    be), at most :data:`switches.GLUON_TILES_PER_COPY` and at most the tiles of :data:`GLUON_K_TILE` columns
    there are; the last copy's tiles past ``h_pad`` are zero-filled by TMA and not multiplied.
    The cost model's step at LSTM bf16 H=768, B=16 (Triton 3.9 / 3.6, µs, when the rule was chosen
    as 8): 12 copies of 1 tile 2.32 / 2.62, 6 of 2 2.02 / 2.23, 3 of 4 1.94 / 2.07, 2 of 8 1.91 /
    2.01; the H200 measured 3 of 4 faster (see :data:`switches.GLUON_TILES_PER_COPY`)."""
    tiles = h_pad // GLUON_K_TILE
    per_copy = min(switches.GLUON_TILES_PER_COPY, 1 << (tiles.bit_length() - 1))
    return -(-tiles // per_copy), per_copy


#: weight tiles ``(64 gate rows, 64 columns)`` the Gluon forward holds in registers (16 per thread
#: each), by the tiles of ``h_pad``: at most 6 up to 12 tiles (H <= 768), 2 up to 16 (H <= 1024),
#: none beyond. The most with which no configuration of :func:`rnnbench.kernels.aot.gluon_configs`
#: spills under Triton 3.6 (the GPU machine's: 8 tiles spilled 32-120 bytes at H=768 and 1024,
#: while Triton 3.9 held 8 at H=768) and its poll stays one L2 round trip (at H=1024, 4 and 6
#: tiles left Triton 3.6 one register for the status word's and the flags' loads, so the flags'
#: load waited for the status word's: ``test_the_acquire_poll_is_one_round_trip``)
GLUON_REGISTER_TILES = ((12, 6), (16, 2))


def gluon_register_tiles(h_pad: int, block_b: int) -> int:
    """Weight tiles of the Gluon forward held in registers as the warpgroup MMA's A operand, the
    last of the ``h_pad / 64`` (:data:`GLUON_REGISTER_TILES`); the others stay in shared memory.

    A warpgroup MMA ``64 x N x 16`` with A in shared memory reads 2 KiB of weights and ``N x 32``
    bytes of h through the SM's 128 bytes per clock: at ``N = BLOCK_B = 16`` 20 cycles against the
    tensor pipe's ~8-12, so the weights' bandwidth, not the tensor cores, sets the MMAs' pace (the
    H200's profile at H=768 B=16: ~17 cycles per MMA). With A in registers only h is read. At
    ``N = 32`` the two rates meet (24 cycles either way in the cost model: no gain), so only
    16-row batch blocks hold weights in registers. Cost model, bf16, Triton 3.6, the kernel's step:
    H=768 B=16 1.93 -> 1.77 µs, H=512 1.70 -> 1.55, H=1024 2.16 -> 2.09."""
    tiles = h_pad // GLUON_K_TILE
    if block_b != MIN_BLOCK_B:
        return 0
    return next((min(tiles, held) for most_tiles, held in GLUON_REGISTER_TILES if tiles <= most_tiles), 0)


def gluon_shared_bytes(h_pad: int, block_b: int, size: int = 2, register_tiles: int = 0, input_tiles: int = 0) -> int:
    """Shared memory (bytes) one Gluon program allocates: the weight slice ``(64, h_pad)`` but for
    its ``register_tiles`` tiles of 64 columns in registers (at least one tile is allocated), the
    state tiles ``(block_b, copies x tiles per copy x 64)`` (:func:`gluon_state_copies`), the
    float32 gate scratch ``(64, block_b)``, one 8-byte mbarrier per state copy and for the weights,
    and either the prefetched ``xg`` tiles ``(64, block_b)`` (``size`` bytes per element) or, with
    the input projection fused (``input_tiles``), the ``W_ih`` slice ``(64, input_tiles x 64)``, one
    step's input tiles ``(block_b, copies x tiles per copy x 64)`` (copied as the state is,
    :func:`gluon_state_copies`), :data:`GLUON_INPUT_STAGES` float32 products ``(64, block_b)`` and
    their mbarriers (W_ih's, one per input copy, two per stage)."""
    rows = 4 * GLUON_BLOCK_H
    copies, per_copy = gluon_state_copies(h_pad)
    state_columns = copies * per_copy * GLUON_K_TILE
    weight_columns = max(h_pad - register_tiles * GLUON_K_TILE, GLUON_K_TILE)
    barriers = copies + 1
    if input_tiles:
        input_copies, input_per_copy = gluon_state_copies(input_tiles * GLUON_K_TILE)
        inputs = ((rows * input_tiles + block_b * input_copies * input_per_copy) * GLUON_K_TILE * size
                  + GLUON_INPUT_STAGES * rows * block_b * 4)
        barriers += 1 + input_copies + 2 * GLUON_INPUT_STAGES
    else:
        inputs = rows * block_b * size
    return rows * weight_columns * size + block_b * state_columns * size + rows * block_b * 4 + inputs + 8 * barriers


#: steps the Gluon forward's fused input projection may run ahead of its recurrence (buffers of its
#: float32 products; :func:`rnnbench.kernels.gluon_lstm._input_projection`)
GLUON_INPUT_STAGES = 2

#: steps of the input projection one ready flag announces (the kernel's ``XG_CHUNK``): the first
#: GEMM, which the recurrence waits for, projects this many; the later ones double
OVERLAPPED_CHUNK_STEPS = 32


#: the largest ``h_pad`` at which ``"auto"`` takes the tagged exchange: the largest measured faster
#: than the barrier (above, at H=1024 B=16, each step's reloads of its 16 tiles cost more than the
#: barrier's flags)
GLUON_TAGGED_AUTO_MAX_HIDDEN = 768
#: tiles of 64 columns of words the tagged exchange's loader holds a step (16-row blocks: 4 registers a
#: thread a tile of compact words; set with the 32-bit words of before, 8 a tile, of which Triton 3.6
#: spilled 72 bytes at 18 tiles, H=1152)
GLUON_TAGGED_MAX_TILES = 16


def overlapped_projection_refusal(plan: Plan, has_lengths: bool, has_first: bool) -> str | None:
    """Why the LSTM layer cannot project its input beside the forward of ``plan`` (None: it can):
    only the Gluon forward polls the projection's flags, going forwards in time in one direction
    (the flags announce steps in order), with every row running every step and no extra term on a
    first step (which would have to wait for the first GEMM), and with the projection not fused."""
    reasons = []
    if plan.path != GLUON:
        reasons.append(f"the {plan.path} path does not poll the projection's flags (the Gluon forward does)")
    if plan.directions != 1:
        reasons.append(f"{plan.directions} directions (the flags announce steps forwards in time)")
    if plan.input_tiles:
        reasons.append("the input projection is fused into the kernel")
    if has_lengths:
        reasons.append("rows of their own lengths")
    if has_first:
        reasons.append("an extra term on the first step")
    return "; ".join(reasons) or None


#: the float32 sums of the weight gradients (``2 * 4H * H * 4`` bytes with input size H) may be at
#: most this share of the gate-gradient buffer (``T * B * 4H`` 16-bit elements), i.e. ``T * B >= 16 H``:
#: where the call is short or its batch narrow, its GEMMs are small beside the recurrence and the
#: sums would raise its training peak above torch.nn's (H=1024, B=1: 32 MiB of sums beside ~14 MiB)
OVERLAPPED_GRADIENT_SUMS_SHARE = 0.25
#: the share of the GPU's SMs the backward's recurrence must leave free (at one program per SM) for
#: its GEMMs beside it: they must keep up with it (at the anchor they need ~10 % of the GPU's GEMM
#: rate, ~20 % at H=768 B=64), and the waits need a slot that a cooperative launch filling every SM
#: would not leave (H=1024 B=64: 128 programs, 4 SMs free, refused)
OVERLAPPED_GRADIENT_FREE_SMS = 0.25



def overlapped_gradients_refusal(plan: Plan, dtype: torch.dtype, sizes: tuple[int, int, int, int],
                                 has_lengths: bool, multiprocessors: int | None = None) -> str | None:
    """Why the LSTM layer's backward of ``plan`` cannot compute its GEMMs beside its recurrence (None:
    it can): the recurrence must run in one launch whose grid-barrier flags count its finished steps
    (the Gluon or the cooperative backward), in one direction (the waits count steps backwards in
    time), with every row running every step, in 16 bits (the weight gradients' float32 sums are the
    Triton GEMM's, which runs float32 on the FMA units), and with those sums at most
    :data:`OVERLAPPED_GRADIENT_SUMS_SHARE` of the gate gradients' bytes, and where the GPU has
    ``multiprocessors`` SMs (None: not checked, e.g. the interpreter), with at least
    :data:`OVERLAPPED_GRADIENT_FREE_SMS` of them left free by the recurrence. ``sizes``: ``(T, B, H, I)``
    (steps, batch, hidden and input size)."""
    steps, batch, hidden, input_size = sizes
    reasons = []
    if plan.path not in (GLUON, "cooperative"):
        reasons.append(f"the {plan.path} backward has no grid-barrier flags to wait for")
    if plan.directions != 1:
        reasons.append(f"{plan.directions} directions (the waits count steps backwards in time)")
    if has_lengths:
        reasons.append("rows of their own lengths")
    if dtype not in (torch.float16, torch.bfloat16):
        reasons.append(f"{str(dtype).removeprefix('torch.')} (16-bit operands only)")
    sums = 4 * 4 * hidden * (hidden + input_size)
    gate_gradients = steps * batch * 4 * hidden * 2
    if sums > OVERLAPPED_GRADIENT_SUMS_SHARE * gate_gradients:
        reasons.append(f"float32 sums of the weight gradients ({sums / 2**20:.1f} MiB) above "
                       f"{OVERLAPPED_GRADIENT_SUMS_SHARE:.0%} of the gate gradients ({gate_gradients / 2**20:.1f} MiB "
                       f"at T={steps}, B={batch})")
    if multiprocessors is not None and multiprocessors - plan.programs < OVERLAPPED_GRADIENT_FREE_SMS * multiprocessors:
        reasons.append(f"{plan.programs} programs leave {max(0, multiprocessors - plan.programs)} of {multiprocessors} "
                       f"SMs free, under {OVERLAPPED_GRADIENT_FREE_SMS:.0%}")
    return "; ".join(reasons) or None



def tagged_exchange_refusal(plan: Plan, multiprocessors: int | None = None, compiled: bool = False) -> str | None:
    """Why the Gluon forward of ``plan`` cannot exchange its state as tagged words
    (:mod:`rnnbench.kernels.gluon_lstm`: its loader warps poll the words, no grid barrier), or
    None where it can: a forward plan (:data:`GLUON_NUM_WARPS` warps) without a fused input
    projection (whose warpgroup the loader's would be), 16-row batch blocks, at least
    :data:`switches.GLUON_TAGGED_LOADERS` tiles (one a loader) and at most
    :data:`GLUON_TAGGED_MAX_TILES` tiles (a step's words, 24 KiB at H=768, are in the loader's
    registers), every column of ``h_pad`` written by some program
    (the loader waits for every word), and with ``multiprocessors`` known one program per SM (the
    loaders' warps and registers come on top of the recurrence's). ``compiled``: only what the
    compiled kernel needs, not its launch (ahead of time a plan's grid is a stand-in,
    :attr:`rnnbench.kernels.aot.KernelConfig.plan`)."""
    reasons = []
    if plan.path != GLUON or plan.num_warps != GLUON_NUM_WARPS or plan.input_tiles:
        reasons.append("it is the Gluon forward's without a fused input projection")
    if plan.block_b != MIN_BLOCK_B:
        reasons.append(f"it needs {MIN_BLOCK_B}-row batch blocks (got {plan.block_b})")
    if plan.h_pad < switches.GLUON_TAGGED_LOADERS * GLUON_K_TILE:
        reasons.append(f"its {switches.GLUON_TAGGED_LOADERS} loaders need a tile each (H from "
                       f"{switches.GLUON_TAGGED_LOADERS * GLUON_K_TILE}; got {plan.h_pad // GLUON_K_TILE})")
    if plan.h_pad > GLUON_TAGGED_MAX_TILES * GLUON_K_TILE:
        reasons.append(f"its loader holds at most {GLUON_TAGGED_MAX_TILES} tiles of words a step without spilling "
                       f"(H up to {GLUON_TAGGED_MAX_TILES * GLUON_K_TILE}; got {plan.h_pad // GLUON_K_TILE})")
    if not compiled and plan.grid[0] * GLUON_BLOCK_H != plan.h_pad:
        reasons.append(f"it needs every one of the {plan.h_pad} state columns written (H a multiple of "
                       f"{GLUON_K_TILE}; the programs write {plan.grid[0] * GLUON_BLOCK_H})")
    if not compiled and multiprocessors is not None and plan.programs > multiprocessors:
        reasons.append(f"it needs one program per SM ({plan.programs} programs on {multiprocessors} SMs)")
    return "; ".join(reasons) or None


def gluon_tagged_exchange(plan: Plan, multiprocessors: int | None = None, compiled: bool = False,
                          training: bool = False) -> bool:
    """Whether the Gluon forward of ``plan`` (``training``: the one that saves its gates and cell
    states for the backward) exchanges its state as tagged words: where :data:`switches.GLUON_TAGGED_EXCHANGE`
    is True, or ``"auto"``, an inference forward and ``plan.h_pad`` at most
    :data:`GLUON_TAGGED_AUTO_MAX_HIDDEN`, and :func:`tagged_exchange_refusal` (with
    ``multiprocessors`` and ``compiled``) finds no reason not to. ``"auto"`` leaves the training
    forward its grid barrier unless :data:`switches.GLUON_TAGGED_TRAINING`: only the inference forward was
    timed (H200, 7caf667)."""
    wanted = switches.GLUON_TAGGED_EXCHANGE is True or (switches.GLUON_TAGGED_EXCHANGE == "auto"
                                                        and (not training or switches.GLUON_TAGGED_TRAINING)
                                                        and plan.h_pad <= GLUON_TAGGED_AUTO_MAX_HIDDEN)
    return wanted and tagged_exchange_refusal(plan, multiprocessors, compiled) is None


def gluon_input_tiles(plan: Plan, input_size: int | None, dtype: torch.dtype, arch: int = DEFAULT_ARCH,
                      multiprocessors: int | None = None, fuse: bool | None = None) -> int:
    """Tiles of 64 input columns with which the Gluon forward of ``plan`` projects its input itself
    (:mod:`rnnbench.kernels.gluon_lstm`: ``W_ih``'s slice in shared memory, one step's input copied
    by TMA a step ahead, its MMAs overlapping the end of the previous step and the grid barrier),
    or 0: the projection stays a GEMM over all steps before the kernel, into a ``(D, T, B, 4H)``
    buffer that inference then does not allocate.

    Only where ``fuse`` (default :data:`switches.GLUON_FUSED_INPUT`), the input size is known and a multiple
    of 64 (whole TMA tiles of the input viewed as column tiles), the batch block has 16 rows, the
    program fits the per-block shared memory (at H=768, I=768: 88 -> 206 KiB; at H=1024 or with
    32-row blocks it does not) and, on ``multiprocessors`` SMs, the launch stays co-resident. The
    caller also needs every row to run every step (no lengths) and no per-row first-step term."""
    fuse = switches.GLUON_FUSED_INPUT if fuse is None else fuse
    if (not fuse or plan.path != GLUON or input_size is None or input_size % GLUON_K_TILE
            or plan.block_b != MIN_BLOCK_B):
        return 0
    limits = LIMITS[arch]
    fused = dataclasses.replace(plan, input_tiles=input_size // GLUON_K_TILE)
    resources = kernel_resources(plan.cell, fused, dtype)
    if resources.shared_bytes > limits.shared_per_block:
        return 0
    if multiprocessors is not None:
        per_sm = programs_per_multiprocessor(resources, fused.resident_warps, limits)[0]
        if plan.programs > per_sm * multiprocessors:
            return 0
    return fused.input_tiles


#: warps of the Gluon backward (:mod:`rnnbench.kernels.gluon_lstm_backward`), one reduction slice
#: each: its product is a batched ``mma_v2`` whose batch axis is the warps, summed once at the end;
#: 8 slices give the plain backward's dependent MMA chain (24 deep at H=768)
GLUON_BACKWARD_SPLIT = 8
#: the Gluon backward's ``h_pad`` is a multiple of this: its ``4 * h_pad / 64`` gate-gradient tiles
#: travel in copies of :data:`GLUON_BACKWARD_SPLIT` tiles, one per warp
GLUON_BACKWARD_H_MULTIPLE = GLUON_K_TILE * GLUON_BACKWARD_SPLIT // 4
#: the Gluon backward's widest batch block: 64 rows spill registers (with the weights held in
#: registers, H=1024: 240 bytes with Triton 3.9, 176 with 3.6; H=768: 48 with 3.9), so a
#: bidirectional layer runs its directions one after the other in 32-row blocks rather than together
#: in 64-row ones
GLUON_BACKWARD_MAX_BLOCK_B = 32


def gluon_backward_layout(h_pad: int, block_b: int, size: int = 2) -> tuple[int, int, int]:
    """``(copies, copy bytes, scratch bytes)`` of one Gluon backward program: the step's gate
    gradients travel in ``copies`` TMA copies of :data:`GLUON_BACKWARD_SPLIT` tiles ``(block_b, 64)``
    (the weights, held in registers, pass through the same buffers once, 16 rows of each); the
    float32 reduction over the warps needs ``(SPLIT, 16, block_b)``."""
    copies = 4 * h_pad // GLUON_K_TILE // GLUON_BACKWARD_SPLIT
    copy_bytes = GLUON_BACKWARD_SPLIT * block_b * GLUON_K_TILE * size
    return copies, copy_bytes, GLUON_BACKWARD_SPLIT * GLUON_BLOCK_H * block_b * 4


def gluon_backward_stages(h_pad: int, block_b: int, size: int = 2, arch: int = GLUON_ARCH) -> int:
    """Copies of gate gradients one Gluon backward program keeps in flight (its ring of shared
    buffers): all of a step's copies where shared memory holds them beside the reduction scratch,
    else as many as fit."""
    copies, copy_bytes, scratch = gluon_backward_layout(h_pad, block_b, size)
    room = LIMITS[arch].shared_per_block - SHARED_FIXED - scratch
    return max(0, min(copies, room // copy_bytes))


def gluon_streamed_copies(plan: Plan) -> bool:
    """Whether the Gluon backward of ``plan`` streams its copies (:data:`switches.GLUON_BACKWARD_STREAMED`):
    where it is on, every copy of a step has a stage of its own (:func:`gluon_backward_stages`: no
    ring, so no stage waits for the MMAs of another copy) and one poll load per lane brings every
    producer's flag (``poll <= 32 * MAX_POLL_VECTOR``)."""
    copies = gluon_backward_layout(plan.h_pad, plan.block_b)[0]
    return (switches.GLUON_BACKWARD_STREAMED and gluon_backward_stages(plan.h_pad, plan.block_b) == copies
            and plan.poll <= 32 * MAX_POLL_VECTOR)


def gluon_copy_bytes(plan: Plan, backward: bool, size: int = 2) -> int:
    """Bytes one TMA copy of a Gluon step brings (the box, which the SASS does not show): the
    forward's state copy (:func:`gluon_state_copies`' tiles of ``(block_b, 64)``), the backward's
    :data:`GLUON_BACKWARD_SPLIT` gate-gradient tiles."""
    tiles = GLUON_BACKWARD_SPLIT if backward else gluon_state_copies(plan.h_pad)[1]
    return tiles * plan.block_b * GLUON_K_TILE * size


def gluon_backward_shared_bytes(h_pad: int, block_b: int, size: int = 2) -> int:
    """Shared memory (bytes) one Gluon backward program allocates: the ring of
    :func:`gluon_backward_stages` copies, the reduction scratch and two 8-byte mbarriers per stage
    (the gate gradients', and the weights' while they pass through)."""
    _, copy_bytes, scratch = gluon_backward_layout(h_pad, block_b, size)
    stages = max(1, gluon_backward_stages(h_pad, block_b, size))
    return stages * copy_bytes + scratch + 16 * stages


def prefers_gluon(cell: str, hidden_size: int, batch: int, dtype: torch.dtype, narrow_plain: bool = False) -> bool:
    """Whether ``auto`` runs the Gluon forward (where :func:`plan_gluon` can) rather than the plain
    cooperative kernel: the 16-bit LSTM of :data:`GLUON_AUTO_MIN_HIDDEN_NARROW` units and more, or of
    a batch wider than :data:`MIN_BLOCK_B` rows unless the plain kernel runs that batch in the
    layout of B <= 16 (``narrow_plain``, :func:`narrow_batch_blocks`), where the B <= 16 rule holds
    (at H=256 B=16 the plain kernel measured faster; the B=64 rows below are the plain kernel's
    32-row blocks). Measured (bf16, T=1024, CUDA-graph replay,
    Triton 3.6, µs per step, Gluon against plain; reports/h200/kernels2/gpu-goal and
    reports/h100/ab-gpu-ab): on an H200, B=64: H=256 2.56 vs 4.48, H=768 3.97 vs 8.82, H=1024 4.58 vs
    10.94; B=16: H=256 2.37 vs 2.17 (plain faster), H=512 2.51 vs 2.92, H=768 2.95 vs 3.49; B=1:
    H=256 2.08 vs 1.96 (plain faster), H=512 2.15 vs 2.65. On an H100, H=768 B=16 2.83 vs 3.39 and
    B=64 3.93 vs 8.95."""
    if cell != "lstm" or element_size(dtype) != 2:
        return False
    return (batch > MIN_BLOCK_B and not narrow_plain) or hidden_size >= GLUON_AUTO_MIN_HIDDEN_NARROW


def prefers_gluon_backward(cell: str, dtype: torch.dtype) -> bool:
    """Whether ``auto`` runs the Gluon backward (where :func:`plan_gluon` can plan it: H of at least
    :data:`GLUON_MIN_HIDDEN`, co-resident) rather than the plain cooperative one: every 16-bit LSTM.
    It follows either forward (both save the same gates and cell states). Measured on an H200
    (bf16, Triton 3.6, the backward kernel alone, µs per step, Gluon against plain;
    reports/h200/f1c2560/step-ablation.md): B=16: H=256 2.65 vs 2.80, H=512 2.71 vs 3.79, H=768
    4.04 vs 5.07, H=1024 5.68 vs 6.13; B=64: H=256 2.76 vs 2.90, H=768 7.42 vs 8.92, H=1024 8.91
    vs 10.01; B=1: H=768 3.99 vs 4.65. The whole forward+backward call (gpu-core, CUDA-graph replay,
    Gluon forward in both) at B=16: H=512 5.58 vs 6.61 ms, H=768 7.79 vs 8.70, H=1024 10.21 vs 10.50.
    With the vector acquire poll (reports/h200/acd6756/step-ablation.md): B=16 H=768 3.81 vs 4.95,
    H=1024 4.78 vs 6.16; B=64 H=768 5.99 vs 7.87, H=1024 7.68 vs 8.95."""
    return cell == "lstm" and element_size(dtype) == 2


def gluon_available() -> bool:
    """Whether the installed Triton has Gluon's Hopper API (Triton 3.6 and 3.9 do)."""
    import importlib.util

    try:
        return importlib.util.find_spec("triton.experimental.gluon.language.nvidia.hopper") is not None
    except ModuleNotFoundError:
        return False


def plan_gluon(cell: str, hidden_size: int, batch: int, dtype: torch.dtype, multiprocessors: int | None = None,
               interpreter: bool = False, directions: int = 1, arch: int = DEFAULT_ARCH, backward: bool = False,
               input_size: int | None = None) -> Plan:
    """The plan of :mod:`rnnbench.kernels.gluon_lstm`'s forward, or :class:`PathUnavailable` (not an
    LSTM, not 16-bit, not sm_90, H below :data:`GLUON_MIN_HIDDEN` or not a multiple of
    :data:`GLUON_HIDDEN_MULTIPLE`, the interpreter, no Gluon in this Triton, not co-resident).

    One warpgroup per program, :data:`GLUON_BLOCK_H` units (64 gate rows, the MMA's M); ``h_pad``
    is H rounded up to whole 64-column tiles (``k_chunks`` of them). The batch block (the MMA's N)
    is a power of two within [16, 64] (at most the batch rounded up) whose program fits the
    per-block shared memory (:func:`kernel_resources`). With ``multiprocessors`` known it is the
    *smallest* one whose grid is co-resident with both directions in one launch at one program per
    SM, else the smallest co-resident with programs sharing SMs, else with one direction per launch:
    a program's step costs about its batch rows (MMA time, instructions; the cost model at LSTM bf16
    H=768, B=64: 2.90 µs per step with 32-row blocks on 96 SMs against 3.81 with 64-row blocks on 48,
    Triton 3.9), while the state every program reads per step is the same in total; but two programs
    on one SM share its tensor pipe and shared memory, and the barrier waits for the slower SMs (the
    raw model, training forward, Triton 3.6: H=640 B=64 3.32 µs with 16-row blocks on 160 programs
    against 2.81 with 32-row blocks on 80; H=512 B=256 4.94 against 4.51 with 64-row blocks;
    bidirectional H=512 B=64 3.15 against 2.78; none measured). Without ``multiprocessors`` (ahead
    of time) the largest that fits.

    The forward's plan then holds its last weight tiles in registers where the batch block has 16
    rows (:func:`gluon_register_tiles`); the batch block is chosen as if every tile were in shared
    memory. Given the ``input_size`` of a call that can fuse its input projection (every row runs
    every step), it fuses it where :func:`gluon_input_tiles` allows.

    ``backward``: the plan of :mod:`rnnbench.kernels.gluon_lstm_backward` (same limits and batch
    block rule): :data:`GLUON_BACKWARD_SPLIT` warps, 16 units per program (the MMA's M), ``h_pad``
    a multiple of :data:`GLUON_BACKWARD_H_MULTIPLE` and ``k_split`` the warps' reduction slices."""
    size = element_size(dtype)
    reasons = []
    if cell != "lstm":
        reasons.append(f"it runs the LSTM only (got cell={cell!r})")
    if size != 2:
        reasons.append(f"it runs 16-bit storage only (got {dtype})")
    if hidden_size < GLUON_MIN_HIDDEN or hidden_size % GLUON_HIDDEN_MULTIPLE:
        reasons.append(f"it needs a hidden_size >= {GLUON_MIN_HIDDEN} divisible by {GLUON_HIDDEN_MULTIPLE} (got "
                       f"{hidden_size})")
    if arch != GLUON_ARCH:
        reasons.append(f"it needs sm_{GLUON_ARCH} (got sm_{arch})")
    if interpreter:
        reasons.append("Gluon kernels do not run in the Triton interpreter")
    if not gluon_available():
        reasons.append("this Triton has no Gluon Hopper API")
    if reasons:
        raise PathUnavailable(f"path='gluon' cannot run this layer: {'; '.join(reasons)}; use another path")
    limits = LIMITS[arch]
    multiple = GLUON_BACKWARD_H_MULTIPLE if backward else GLUON_K_TILE
    h_pad = -(-hidden_size // multiple) * multiple
    split, num_warps = (GLUON_BACKWARD_SPLIT, GLUON_BACKWARD_SPLIT) if backward else (1, GLUON_NUM_WARPS)

    def layout(block_b: int) -> Plan:
        grid = (-(-hidden_size // GLUON_BLOCK_H), -(-batch // block_b))
        return Plan(cell, GLUON, block_b, GLUON_BLOCK_H, h_pad, split, num_warps, grid, h_pad // GLUON_K_TILE,
                    directions, directions)

    def resources(plan: Plan) -> Resources:
        return kernel_resources(cell, plan, dtype, backward)

    widest = GLUON_BACKWARD_MAX_BLOCK_B if backward else MAX_BLOCK_B
    largest = min(widest, max(MIN_BLOCK_B, next_power_of_two(batch)))
    plans = [layout(MIN_BLOCK_B << k) for k in range((largest // MIN_BLOCK_B).bit_length())]
    fitting = [plan for plan in plans if resources(plan).shared_bytes <= limits.shared_per_block]
    if not fitting:
        needed = resources(plans[0])
        raise PathUnavailable(f"path='gluon': one program of hidden_size={hidden_size} needs {needed.shared_bytes} "
                              f"bytes of shared memory, more than sm_{arch}'s {limits.shared_per_block}; use another path")
    if plans[0].grid[0] > MAX_HIDDEN_BLOCKS:
        raise PathUnavailable(f"path='gluon': {plans[0].grid[0]} hidden blocks, more than the barrier's {MAX_HIDDEN_BLOCKS}")

    def holding_registers(plan: Plan) -> Plan:
        # chosen with every weight in shared memory: fewer bytes there must not put two programs on
        # one SM where one ran alone (they would share its tensor pipe and shared memory)
        if backward:
            return plan
        plan = dataclasses.replace(plan, register_tiles=gluon_register_tiles(h_pad, plan.block_b))
        return dataclasses.replace(plan, input_tiles=gluon_input_tiles(plan, input_size, dtype, arch, multiprocessors))

    if multiprocessors is None:
        return holding_registers(fitting[-1])

    def capacity(plan: Plan, sharing: bool = True) -> int:
        per_sm = programs_per_multiprocessor(resources(plan), plan.resident_warps, limits)[0]
        return (per_sm if sharing else min(per_sm, 1)) * multiprocessors

    for sharing in (False, True):  # one program per SM first: two on an SM share its tensor pipe
        for plan in fitting:
            if plan.programs <= capacity(plan, sharing):
                return holding_registers(plan)
    for plan in fitting:
        if plan.grid[0] * plan.grid[1] <= capacity(plan):
            return holding_registers(dataclasses.replace(plan, launch_directions=1))  # one direction after the other
    plan = fitting[-1]
    raise PathUnavailable(
        f"path='gluon' needs {plan.grid[0] * plan.grid[1]} co-resident programs per direction ({plan.grid[0]} hidden "
        f"blocks x {plan.grid[1]} batch blocks of {plan.block_b} rows) but {multiprocessors} multiprocessors hold "
        f"{capacity(plan)}; use path='cooperative' or 'stepwise'")
