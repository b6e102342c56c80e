"""A Gluon kernel of the LSTM forward recurrence for sm_90 (Hopper): the ``gluon`` path.

It computes exactly what :func:`rnnbench.kernels.lstm_kernels.lstm_forward_kernel` computes in
``COOPERATIVE`` mode, with the same buffers (``xg``, ``y``, ``c_all``, ``c_n``, the exchange and the
synchronisation buffer, see :mod:`rnnbench.kernels.lstm_kernels`), the same grid barrier protocol
(release flags, timeout, status word: :func:`rnnbench.kernels.primitives.grid_barrier`) and the same
handling of directions and per-row lengths, but with what plain Triton does not let a kernel choose:

* **The weight slice stays on chip for the whole sequence**, ``K_TILES = H_PAD / 64`` tiles of
  ``(64 gate rows, 64 columns)``, rows gate-major: row ``g * 16 + j`` is gate g (i, f, g, o) of
  unit ``pid_h * 16 + j``. The last ``REGISTER_TILES`` (:func:`rnnbench.kernels.plan.gluon_register_tiles`:
  up to 6, 16 registers per thread each) are loaded once into registers as the warpgroup MMA's A
  operand; the others once by TMA into shared memory in the NVMMA (wgmma) layout. The last, so
  that the MMAs after the last state copy lands, the step's tail, are the fast ones. An MMA
  ``64 x BLOCK_B x 16`` with A in shared memory streams 2 KiB of weights and 0.5 KiB of h through
  the SM's 128 bytes per clock of shared-memory bandwidth, ~20 cycles, against the tensor pipe's
  ~8-12; with A in registers only h is read (the H200 profile of the all-shared version at H=768,
  B=16: its 48 MMAs took ~800 cycles a step, ~17 each, about 20 % of the step).
* **h_{t-1} is fetched by TMA** in a few copies (:func:`rnnbench.kernels.plan.gluon_state_copies`:
  up to 8 tiles of ``(BLOCK_B, 64)`` each, a 3-D box of the exchange viewed ``(tile, row, column)``),
  one mbarrier per copy, so the warpgroup MMAs of the first copy's tiles start while later copies
  are still in flight (:func:`_recurrent_product`). One copy per tile (the first version) cost
  each step 12 copies' address set-up at H=768 (~25 dependent instructions of the issuing thread
  each, in the SASS), 12 mbarrier waits and 12 armings, each behind a CTA barrier; 2 copies of 8
  tiles bring the cost model's step at H=768, B=16 from 2.32 to 1.91 µs (Triton 3.9).
* **One warpgroup MMA chain** (``warpgroup_mma``, M = 64 gate rows, N = ``BLOCK_B`` batch rows,
  K = ``H_PAD``; A in registers or shared memory, B in shared memory) accumulates the whole product in float32
  registers: no split-K and no cross-warp reduction of partial sums. The only data movement
  between warps is the gate split: the ``(64, BLOCK_B)`` product goes through shared memory once
  and comes back as four ``(16, BLOCK_B)`` gate tiles, unit-major (``[j, b]`` is unit j of batch
  row b), each thread holding one batch row (:func:`_pre_activations`).
* **xg of the next step is prefetched a step ahead** into shared memory by ``cp.async`` (one commit
  group, issued before the grid barrier's wait and waited for when the step needs it), not by
  TMA: with lengths going backwards each row has its own time index, which a TMA box cannot follow.
  Its completion is tracked by the commit group, not by an mbarrier.

* **Optionally, the input projection runs inside the kernel** (``INPUT_TILES > 0``,
  :func:`rnnbench.kernels.plan.gluon_input_tiles`, off by default: ``GLUON_FUSED_INPUT``): a second
  warpgroup (``gl.warp_specialize``, :func:`_input_projection`) holds the program's ``W_ih`` slice in
  shared memory, copies each step's input by TMA and hands ``bias + W_ih x_t`` (float32) to the
  recurrence (:func:`_recurrence`) through :data:`INPUT_STAGES` shared-memory buffers, up to that
  many steps ahead; no GEMM before the kernel and no ``xg`` buffer in inference. In the
  recurrence's own warps the projection's 48 MMAs a step (H=768) cost their descriptors' registers
  (spills) or ~650 issue cycles on the step's critical path (cost model 1.93 -> 2.26 µs); in a
  warpgroup of their own they overlap the grid barrier (1.93 -> 1.82 µs, Triton 3.6, whole call).

Limits (the planner, :func:`rnnbench.kernels.plan.plan_recurrence`, refuses the rest with
``PathUnavailable``): sm_90, 16-bit storage (bf16, fp16), ``H >= 256`` and divisible by 16, and
the grid co-resident (one or two programs per SM, as their shared memory allows; the planner takes
the smallest batch block that keeps it so). Forward only; the backward is
:mod:`rnnbench.kernels.gluon_lstm_backward` (``path="gluon"`` forced) or the plain cooperative
kernel. Gluon does not run in the Triton interpreter, so the plain kernel is the reference this one
is tested against (``tests/test_kernels_gpu.py``, on a GPU only).

**Portability.** The same source compiles with Triton 3.6 and 3.9 (checked ahead of time:
``tests/test_gluon_aot.py``, tables in ``reports/aot/gluon-sm_90-triton*.csv``). Names that differ
are chosen at import time (in :mod:`rnnbench.kernels.gluon_primitives`, with the grid barrier both
Gluon kernels share; the ``cp.async`` copy here): the CTA barrier (``gl.thread_barrier`` in 3.6, ``gl.barrier`` in 3.9),
the TMA load (``tma.async_copy_global_to_shared`` / ``tma.async_load``), the ``cp.async`` copy
(``async_copy.async_copy_global_to_shared`` / ``async_copy.async_load``); ``mbarrier.expect``'s byte
count is passed positionally (its keyword differs). Plain ``@triton.jit`` helpers compile inside
Gluon kernels in both versions, so the poll's loads (and, with relaxed polls, the fence after
them) are the plain kernels' own (:func:`rnnbench.kernels.primitives.slowest_flag`). The
activations are not: :func:`_sigmoid` takes its reciprocal with ``rcp.approx`` (inline PTX,
which the interpreter that checks the plain kernels cannot run), 1 ulp of float32 where
``tl.sigmoid``'s division is 2, so the two paths round the gates differently in the last float32
bits, far below the 16-bit storage of h.

**Memory ordering between the generic and the async proxy.** The exchange is written by ordinary
stores of other programs and read here by TMA (the async proxy). The writer issues
``fence.proxy.async.global`` before its release arrival and the reader after its acquire wait
(:func:`rnnbench.kernels.gluon_primitives.proxy_fence`), so the TMA load sees the released stores.
"""

from __future__ import annotations

import zlib

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language._core import builtin as _gluon_builtin
from triton.experimental.gluon.language.nvidia.ampere import async_copy
from triton.experimental.gluon.language.nvidia.hopper import (
    fence_async_shared, mbarrier, warpgroup_mma, warpgroup_mma_init, warpgroup_mma_wait,
)

from rnnbench.kernels import trace_events as ev
from rnnbench.kernels.gluon_primitives import (
    FLAG_SLOTS, SYNC_ROW, barrier_arrive, barrier_wait, clock64, clock64_after, cta_barrier, globaltimer,
    globaltimer_after, input_ready_wait, program_tile, running_rows, time_index, tma_load,
)
from rnnbench.kernels import switches
from rnnbench.kernels.plan import (
    GLUON_BLOCK_H, GLUON_INPUT_STAGES, GLUON_K_TILE, GLUON_NUM_WARPS, gluon_state_copies, gluon_tagged_exchange,
)
from rnnbench.kernels.primitives import BARRIER_TIMEOUT_NS, EXTRA_POLLS_SLOT, POLL_ORDERS, _load_relaxed
from rnnbench.kernels.tagged_exchange import (
    COMPACT_SLOTS, COMPACT_TAG_PAIR, GAVE_UP, bitwise_or, compact_key, compact_stale, compact_state,
    compact_suspects, compact_values, compact_words, give_up_flags, thread_poll_asm, timed_out_stale,
)

GLUON_TYPES = {torch.bfloat16: gl.bfloat16, torch.float16: gl.float16}

UNITS, K_TILE, NUM_WARPS = GLUON_BLOCK_H, GLUON_K_TILE, GLUON_NUM_WARPS
#: steps the fused input projection's warpgroup may run ahead of the recurrence (its float32
#: products' buffers in shared memory, 4 KiB each at BLOCK_B = 16)
INPUT_STAGES: gl.constexpr = gl.constexpr(GLUON_INPUT_STAGES)
#: registers per thread of the input projection's warpgroup (``setmaxnreg``; the recurrence's keep the rest)
INPUT_WARP_REGISTERS: gl.constexpr = gl.constexpr(168)

_async_copy = getattr(async_copy, "async_load", None) or async_copy.async_copy_global_to_shared

_UNITS: gl.constexpr = gl.constexpr(UNITS)
_K_TILE: gl.constexpr = gl.constexpr(K_TILE)
#: registers per thread of the tagged exchange's loader warps (``setmaxnreg``): a step's compact
#: words, 48 a thread at H=768 with 16-row blocks, and their addresses
LOADER_WARP_REGISTERS: gl.constexpr = gl.constexpr(168)
#: warps of the tagged exchange's loaders, in :data:`rnnbench.kernels.switches.GLUON_TAGGED_LOADERS`
#: partitions (the kernel's ``LOADERS``): 4 of one warp, or 1 of four
LOADER_WARPS: gl.constexpr = gl.constexpr(4)
_TIMEOUT_NS: gl.constexpr = gl.constexpr(int(BARRIER_TIMEOUT_NS.value))
_EXTRA_POLLS: gl.constexpr = gl.constexpr(int(EXTRA_POLLS_SLOT.value) - int(FLAG_SLOTS.value))


#: the wgmma operand layout of one ``(BLOCK_B, 64)`` 16-bit state tile (128-byte swizzle)
_TILE_LAYOUT: gl.constexpr = gl.constexpr(gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=16))
#: the same tile seen as ``(BLOCK_B, 32)`` int32 pairs of values (:func:`_as_pairs`): the same bytes
#: (``tests/test_gluon_aot.py`` checks it from the two layouts)
_PAIRS_LAYOUT: gl.constexpr = gl.constexpr(gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=32))
#: the warp-local gate split's layout of the ``(64, 16)`` product whose rows are
#: :func:`local_gate_rows`' (row ``16w + 4G + u``: gate G of unit ``4w + u``; 16-row batch blocks):
#: warp w keeps its accumulator's 16 rows; a thread's registers hold the unit's low bit and the two
#: gate bits, its lane the unit's high bit and the batch row. So the four gates of two adjacent
#: units of one batch row are one thread's, as :func:`_recurrence`'s tile layout with
#: ``LOCAL_GATES`` holds them, and the conversion from the accumulator's layout stays in each warp
_LOCAL_GATES_LAYOUT: gl.constexpr = gl.constexpr(gl.DistributedLinearLayout(
    reg_bases=[[1, 0], [4, 0], [8, 0]], lane_bases=[[2, 0], [0, 1], [0, 2], [0, 4], [0, 8]],
    warp_bases=[[16, 0], [32, 0]], block_bases=[], shape=[4 * UNITS, 16]))


@_gluon_builtin
def _with_layout(tiles, layout, _semantic=None):
    """The shared memory of ``tiles`` seen with another ``layout`` of the same bytes: here a
    ``(PER_COPY, BLOCK_B, 64)`` buffer that one TMA copy writes in its 3-D layout, seen in the 2-D
    tile layout the MMAs read (with 128-byte swizzle and rows a multiple of 8, the two place every
    element at the same address). ``reinterpret`` is ``_reinterpret`` in Triton 3.6; both call this."""
    return _semantic.memdesc_reinterpret(tiles, tiles.dtype, list(tiles.shape), getattr(layout, "value", layout))


def shared_layout(block_shape, dtype: torch.dtype) -> gl.NVMMASharedLayout:
    """The NVMMA shared layout of a 16-bit TMA box / wgmma operand tile ``block_shape`` (128-byte
    swizzle for 64 columns)."""
    return gl.NVMMASharedLayout.get_default_for(list(block_shape), GLUON_TYPES[dtype])


# ---- gate activations ------------------------------------------------------------------------------

@gluon.jit
def _sigmoid(x):
    """``1 / (1 + 2^(-x log2 e))`` in float32 with the reciprocal as one ``rcp.approx.ftz`` (MUFU.RCP,
    max. 1 ulp). ``tl.sigmoid`` divides with ``div.full.f32`` (2 ulp), which wraps the same MUFU.RCP in
    a range check for divisors above 2^126 (FSETP, two FSEL and two FMUL per element in the SASS);
    here a divisor that large (or an infinite one, x < -88) flushes the result to 0, which is what
    the sigmoid is to within 1e-38. The cost model's step at H=768, B=16 (Triton 3.9): 2683 -> 2570
    cycles, 45 fewer instructions in the step (the 20 MUFU of a thread's activations stay)."""
    denominator = 1.0 + gl.exp2(x * -1.4426950408889634)
    return gl.inline_asm_elementwise("rcp.approx.ftz.f32 $0, $1;", "=f,f", [denominator], dtype=gl.float32,
                                     is_pure=True, pack=1)


@gluon.jit
def _tanh(x):
    """tanh through :func:`_sigmoid`, as :func:`rnnbench.kernels.primitives.tanh` computes it."""
    return 2.0 * _sigmoid(2.0 * x) - 1.0


# ---- tiles -----------------------------------------------------------------------------------------

@gluon.jit
def _prefetch_gates(xg_smem, xg_ptr, t, B, H, offsets, mask):
    """Start copying the four ``(16, BLOCK_B)`` pre-activation tiles (i, f, g, o) of ``xg`` at time
    index ``t`` into ``xg_smem`` (four ``(16, BLOCK_B)`` buffers, storage dtype; zero where ``mask`` is false)
    with ``cp.async``, as one commit group: :func:`_pre_activations` waits for it."""
    base = xg_ptr + gl.cast(t, gl.int64) * B * 4 * H + offsets
    for g in gl.static_range(4):
        _async_copy(xg_smem[g], base + g * H, mask=mask)
    async_copy.commit_group()


@gluon.jit
def _load_gates(xg_ptr, t, B, H, pair_offsets, mask):
    """The four ``(16, BLOCK_B)`` pre-activation tiles (i, f, g, o) of ``xg`` at time index ``t``
    into registers as ``(8, BLOCK_B)`` int32 pairs of adjacent units' 16-bit values
    (``pair_offsets``: in pairs, into ``xg`` seen as int32; zero where ``mask`` is false), unpacked
    where they are used (:func:`_unpack_gate`): the warp-local gate split's input, loaded a step
    ahead (:func:`_recurrence` with ``LOCAL_GATES``), so no thread reads what another copied and no
    CTA barrier orders it. Packed, a gate tile holds one register a thread across the step, not two
    (Triton 3.6 spilled at H=768 with the values unpacked at the load)."""
    pairs_ptr = xg_ptr.to(gl.pointer_type(gl.int32), bitcast=True)
    base = pairs_ptr + gl.cast(t, gl.int64) * B * 2 * H + pair_offsets
    return (gl.load(base, mask=mask, other=0), gl.load(base + H // 2, mask=mask, other=0),
            gl.load(base + H, mask=mask, other=0), gl.load(base + 3 * (H // 2), mask=mask, other=0))


@gluon.jit
def _unpack_gate(pairs, dtype: gl.constexpr, tile_layout: gl.constexpr, BLOCK_B: gl.constexpr):
    """One gate tile of :func:`_load_gates`' ``(8, BLOCK_B)`` int32 pairs (the lower half the even
    unit) as ``(16, BLOCK_B)`` float32 in ``tile_layout``, whose threads hold those two units."""
    low = (pairs & 0xFFFF).to(gl.int16).to(dtype, bitcast=True).to(gl.float32)
    high = (pairs >> 16).to(gl.int16).to(dtype, bitcast=True).to(gl.float32)
    units = gl.reshape(gl.permute(gl.join(low, high), [0, 2, 1]), [_UNITS, BLOCK_B])
    return gl.convert_layout(units, tile_layout)


@gluon.jit
def _load_weights(w_desc, w_smem, bar, phase, row0, gate_stride, SHARED_TILES: gl.constexpr):
    """The program's first ``SHARED_TILES`` weight tiles (64 gate rows x 64 columns each) of the
    weight rows ``w_desc`` describes into ``w_smem``, 4 TMA boxes of 16 rows per tile (tile rows
    ``16g + [0, 16)`` from rows ``row0 + g*gate_stride``: ``gate_stride`` H where the rows are
    gate-major, 16 where they are :func:`local_gate_rows`), completing ``phase`` of ``bar``; columns
    past the weight matrix are zero-filled by TMA."""
    if SHARED_TILES > 0:
        mbarrier.expect(bar, SHARED_TILES * 4 * w_desc.block_type.nbytes)
        for k in gl.static_range(SHARED_TILES):
            for g in gl.static_range(4):
                tma_load(w_desc, [row0 + g * gate_stride, k * _K_TILE], bar,
                         w_smem.index(k).slice(g * _UNITS, _UNITS))
        mbarrier.wait(bar, phase)


@gluon.jit
def _register_weights(w_ptr, w_stride, row0, H, gate_stride, layout: gl.constexpr, SHARED_TILES: gl.constexpr,
                      K_TILES: gl.constexpr):
    """The program's weight tiles ``[SHARED_TILES, K_TILES)`` as warpgroup-MMA A operands held in
    registers (``layout``: the accumulator's dot-operand layout), a tuple of ``(64, 64)`` tiles
    loaded once from ``W_hh`` rows ``(D*4H, w_stride)``: tile row ``g*16 + j`` is row
    ``row0 + g*gate_stride + j`` (as :func:`_load_weights`); columns past H read as zero."""
    rows = gl.arange(0, 4 * _UNITS, layout=gl.SliceLayout(1, layout))
    rows = row0 + (rows // _UNITS) * gate_stride + rows % _UNITS
    row_offsets = gl.expand_dims(rows.to(gl.int64) * w_stride, 1)
    columns = gl.arange(0, _K_TILE, layout=gl.SliceLayout(0, layout))
    tiles = ()
    for k in gl.static_range(SHARED_TILES, K_TILES):
        column = gl.expand_dims(k * _K_TILE + columns, 0)
        tiles = tiles + (gl.load(w_ptr + row_offsets + column, mask=column < H, other=0.0),)
    return tiles


@gluon.jit
def _arm_copies(bars, desc, COPIES: gl.constexpr):
    """Arm the mbarrier of each of ``COPIES`` TMA copies of ``desc``'s box for the bytes of its next
    load (the state's copies, and the fused input projection's copies of x).

    The state's are armed for the next step right after this program's arrival at the grid barrier:
    Triton 3.6 and 3.9 put a CTA barrier before each arming, which there should overlap the release
    flag's way to the other programs instead of delaying the loads (not measured). Every thread has
    waited on the previous phase by then (the waits precede the gate split's CTA barrier)."""
    for j in gl.static_range(COPIES):
        mbarrier.expect(bars.index(j), desc.block_type.nbytes)


@gluon.jit
def _load_copies(desc, row, smem, bars, PER_COPY: gl.constexpr, COPIES: gl.constexpr):
    """Issue the TMA copies of rows ``row + [0, BLOCK_B)`` of ``desc``'s column tiles (the exchange
    viewed ``(tile, D*2*B_pad, 64)``, or the input viewed ``(tile, T*B, 64)``), ``PER_COPY`` tiles
    per copy into ``smem[j]``, each completing on its own mbarrier ``bars[j]`` (armed by
    :func:`_arm_copies`)."""
    for j in gl.static_range(COPIES):
        tma_load(desc, [j * PER_COPY, row, 0], bars.index(j), smem.index(j))


@gluon.jit
def _recurrent_product(w_smem, w_regs, h_smem, bars, phase, acc_layout: gl.constexpr, BLOCK_B: gl.constexpr,
                       K_TILES: gl.constexpr, PER_COPY: gl.constexpr, SHARED_TILES: gl.constexpr,
                       TAGGED: gl.constexpr = False, CHAINS: gl.constexpr = 1, trace_ptr=None, step=0, lane=None,
                       TRACE: gl.constexpr = False):
    """``W_slice (64, H_PAD) @ h^T (H_PAD, BLOCK_B)`` in float32 (``acc_layout``), with h the state
    :func:`_load_copies` is copying into ``h_smem``: the MMAs of a
    copy's tiles wait for its mbarrier only, so they overlap the transfer of the later copies.
    Unrolled: waits and MMAs issue back to back.

    Tried and not better (CTA barriers counted in the PTX at H=768): arming and loading alternately
    (a barrier before each load too), one mbarrier for several copies (a barrier between loads on
    the same mbarrier), separate allocations per box (more barriers with 3.6, up to 255 registers).

    ``TAGGED``: ``h_smem`` is the tagged exchange's tuple of ``K_TILES`` ``(BLOCK_B, 64)`` tiles, an
    allocation each, which :func:`_tagged_loader` stores one by one (into one allocation, Triton 3.6
    put a partition barrier between every two of its stores), announced on ``bars`` copy by copy
    (the kernel makes it one copy of all ``K_TILES``: ``PER_COPY`` is ``K_TILES`` then).

    ``CHAINS=2`` (one copy of every tile only, :func:`rnnbench.kernels.switches.mma_chains`): two
    accumulators, the tiles whose weights are in shared memory into one and those in registers into
    the other, issued alternately and added at the end (:func:`two_chain_product`).

    ``TRACE``: records :data:`rnnbench.kernels.trace_events.STATE_READY` of ``step`` once the first
    copy's mbarrier has been waited for (``lane``: the recurrence's, :func:`rnnbench.kernels.trace_events.record`)."""
    if CHAINS == 2:
        gl.static_assert(PER_COPY >= K_TILES, "two MMA chains read the state as one copy")
        mbarrier.wait(bars.index(0), phase)
        if TRACE:
            ev.record(trace_ptr, step, lane, ev.STATE_READY, clock64(lane))
        return two_chain_product(w_smem, w_regs, h_smem, acc_layout, BLOCK_B, K_TILES, SHARED_TILES, TAGGED)
    acc = warpgroup_mma_init(gl.zeros([4 * _UNITS, BLOCK_B], gl.float32, acc_layout))
    for k in gl.static_range(K_TILES):
        if k % PER_COPY == 0:
            mbarrier.wait(bars.index(k // PER_COPY), phase)
            if TRACE and k == 0:
                ev.record(trace_ptr, step, lane, ev.STATE_READY, clock64(lane))
        acc = tile_mma(acc, w_smem, w_regs, h_smem, k, SHARED_TILES, PER_COPY, TAGGED)
    return warpgroup_mma_wait(0, deps=(acc,))


@gluon.jit
def tile_mma(acc, w_smem, w_regs, h_smem, k: gl.constexpr, SHARED_TILES: gl.constexpr, PER_COPY: gl.constexpr,
             TAGGED: gl.constexpr):
    """``acc`` plus weight tile ``k`` of the slice (in shared memory below ``SHARED_TILES``, else in
    registers, ``w_regs[k - SHARED_TILES]``) times state tile ``k`` (``h_smem`` as
    :func:`_recurrent_product` reads it: a tuple of tiles with ``TAGGED``, else copies of
    ``PER_COPY`` tiles), issued asynchronously: 4 warpgroup MMAs of k16."""
    if TAGGED:
        tile = h_smem[k]
    else:
        tile = _with_layout(h_smem.index(k // PER_COPY), _TILE_LAYOUT).index(k % PER_COPY)
    if k < SHARED_TILES:
        acc = warpgroup_mma(w_smem.index(k), tile.permute((1, 0)), acc, is_async=True)
    else:
        acc = warpgroup_mma(w_regs[k - SHARED_TILES], tile.permute((1, 0)), acc, is_async=True)
    return acc


@gluon.jit
def two_chain_product(w_smem, w_regs, h_smem, acc_layout: gl.constexpr, BLOCK_B: gl.constexpr,
                      K_TILES: gl.constexpr, SHARED_TILES: gl.constexpr, TAGGED: gl.constexpr):
    """:func:`_recurrent_product` as two independent chains of warpgroup MMAs, the whole state
    landed: chain 0 takes the tiles whose weights are in shared memory and chain 1 those in registers,
    issued alternately (one of each in turn, the longer chain's rest after), then added. Where every
    tile is of one kind the chains take alternate tiles instead.

    Why: a chain of dependent ``64 x 16 x 16`` MMAs advances by a fixed latency per MMA, not by the
    tensor cores' throughput (the H200's probes, 7caf667: 15.3 cycles an MMA with A in registers
    where ``64 x 32 x 16`` takes 18.8 for twice the work; 22.7 with A in shared memory, whose 2.5 KiB
    an MMA need ~20 cycles of the SM's shared-memory bandwidth). A second accumulator lets one
    chain's MMAs issue while the other's wait: the register tiles' MMAs can then run in the shadow of
    the shared ones' bandwidth. Not measured: whether the hardware overlaps them is what the step
    ablation's ``real_gluon_tagged_two_chains`` and the latency probes ``hgmma_mixed_b16_two_chains``
    and ``hgmma_registers_b16_two_chains`` (:mod:`rnnbench.kernels.latency_probe`, which runs this
    function) are for."""
    REGISTER_TILES: gl.constexpr = K_TILES - SHARED_TILES
    MIXED: gl.constexpr = SHARED_TILES > 0 and REGISTER_TILES > 0
    first = warpgroup_mma_init(gl.zeros([4 * _UNITS, BLOCK_B], gl.float32, acc_layout))
    second = warpgroup_mma_init(gl.zeros([4 * _UNITS, BLOCK_B], gl.float32, acc_layout))
    if MIXED:  # shared tile j and register tile j in turn while both kinds last, then the longer kind's rest
        PAIRS: gl.constexpr = SHARED_TILES if SHARED_TILES < REGISTER_TILES else REGISTER_TILES
        for j in gl.static_range(PAIRS):
            first = tile_mma(first, w_smem, w_regs, h_smem, j, SHARED_TILES, K_TILES, TAGGED)
            second = tile_mma(second, w_smem, w_regs, h_smem, SHARED_TILES + j, SHARED_TILES, K_TILES, TAGGED)
        for j in gl.static_range(PAIRS, SHARED_TILES):
            first = tile_mma(first, w_smem, w_regs, h_smem, j, SHARED_TILES, K_TILES, TAGGED)
        for j in gl.static_range(SHARED_TILES + PAIRS, K_TILES):
            second = tile_mma(second, w_smem, w_regs, h_smem, j, SHARED_TILES, K_TILES, TAGGED)
    else:  # one kind: tiles 2j and 2j + 1 in turn (an odd last one into the first chain)
        for j in gl.static_range(K_TILES // 2):
            first = tile_mma(first, w_smem, w_regs, h_smem, 2 * j, SHARED_TILES, K_TILES, TAGGED)
            second = tile_mma(second, w_smem, w_regs, h_smem, 2 * j + 1, SHARED_TILES, K_TILES, TAGGED)
        for j in gl.static_range(K_TILES - K_TILES % 2, K_TILES):
            first = tile_mma(first, w_smem, w_regs, h_smem, j, SHARED_TILES, K_TILES, TAGGED)
    first, second = warpgroup_mma_wait(0, deps=(first, second))
    return first + second


# ---- the tagged exchange's loader ------------------------------------------------------------------

@_gluon_builtin
def _as_pairs(tile, layout, _semantic=None):
    """The ``(BLOCK_B, 64)`` 16-bit state tile ``tile`` seen as ``(BLOCK_B, 32)`` int32 pairs of
    values in ``layout`` (128-byte swizzle of 32-bit elements: every pair at its two values' bytes)."""
    return _semantic.memdesc_reinterpret(tile, gl.int32, [tile.shape[0], tile.shape[1] // 2],
                                         getattr(layout, "value", layout))


@gluon.jit
def _publish_compact(ptrs, h, tag):
    """Store ``h`` (16-bit) at ``ptrs`` as compact words tagged ``tag``
    (:func:`rnnbench.kernels.tagged_exchange.compact_words`), two at a time: each thread holds two
    adjacent units of one batch row (the tile layout's ``[2, 1]`` per thread at 16-row blocks, the
    tagged exchange's only ones), which ``pack=2`` hands to one ``st.relaxed.gpu.global.b32`` at the
    first one's address (4-byte aligned: H_PAD and the unit are even). A strong write of the pair,
    whole, that a reader's 32-bit volatile loads may race: writer and reader access the same 32 bits,
    as the memory model's morally-strong pairs must, where 16-bit stores read back in 32-bit words
    would overlap only in part."""
    gl.inline_asm_elementwise("st.relaxed.gpu.global.b32 [$2], $4; mov.u32 $0, 0; mov.u32 $1, 0;", "=r,=r,l,l,r",
                              [ptrs, compact_words(h, tag)], dtype=gl.int32, is_pure=False, pack=2)


@gluon.jit
def _pause(lane, NANOSECONDS: gl.constexpr):
    """Every thread holding an element of ``lane`` sleeps about ``NANOSECONDS`` (``nanosleep``: the
    hardware sleeps between 0 and twice that)."""
    gl.inline_asm_elementwise(f"nanosleep.u32 {NANOSECONDS}; mov.u32 $0, 0;", "=r,r", [lane], dtype=gl.int32,
                              is_pure=False, pack=1)


@gluon.jit
def _load_pairs(slot_ptr, offsets, TILES: gl.constexpr, STRIDE: gl.constexpr):
    """``TILES`` tiles of this program's rows of one slot of the compact exchange, as int32 pairs
    (``offsets``: the rows' first tile; ``STRIDE`` pairs from one tile to the next), volatile loads
    (from L2, never a stale L1 line), all issued before any is used."""
    pairs = ()
    for k in gl.static_range(TILES):
        pairs = pairs + (gl.load(slot_ptr + k * STRIDE + offsets, volatile=True),)
    return pairs


@gluon.jit
def _reload_stale_vectors(ptrs, read, key):
    """The words as loaded (int32 pairs) behind ``read`` (pairs of compact words read with ``key``,
    :func:`compact_key`; 4 consecutive ones a thread: the loader's 16-byte vectors), every vector
    that holds a stale half loaded again whole from ``ptrs``: one predicated
    ``ld.volatile.global.v4.b32`` a vector (``pack=4``; the first pointer of a vector is 16-byte
    aligned), where a mask per pair would make four scalar loads of it. A vector's 8 values are one
    batch row's units of one producer (:data:`_UNITS` a program, the vector aligned to 8), published
    in the same step by four of its threads: a vector stale at the first load is mostly still owed
    whole (a reload may bring words that were fresh already; the loop checks every word again).
    The test is :func:`compact_stale` of the or of the vector's four pairs read (``tag``:
    :data:`COMPACT_TAG_PAIR` in every element); the other vectors' words are ``read ^ key``, as
    loaded. Nothing in the block reads the loaded words: an instruction that did would wait for
    each load before the next issues (ptxas keeps a predicated one before its predicate register
    is reused), so the caller reads them (``^ key``) after all are issued."""
    tag = gl.full(read.shape, COMPACT_TAG_PAIR, gl.int32, read.type.layout)
    return gl.inline_asm_elementwise(
        "{ .reg .pred %p; .reg .b32 %s, %w0, %w1, %w2, %w3;\n"
        "or.b32 %s, $8, $9; or.b32 %s, %s, $10; or.b32 %s, %s, $11; and.b32 %s, %s, $16;\n"
        "setp.ne.b32 %p, %s, 0;\n"
        "xor.b32 %w0, $8, $12; xor.b32 %w1, $9, $13; xor.b32 %w2, $10, $14; xor.b32 %w3, $11, $15;\n"
        "@%p ld.volatile.global.v4.b32 {%w0, %w1, %w2, %w3}, [$4];\n"
        "mov.b32 $0, %w0; mov.b32 $1, %w1; mov.b32 $2, %w2; mov.b32 $3, %w3; }",
        "=r,=r,=r,=r,l,l,l,l,r,r,r,r,r,r,r,r,r,r,r,r", [ptrs, read, read * 0 + key, tag], dtype=gl.int32,
        is_pure=False, pack=4)


@gluon.jit
def _reduce_or(x):
    """The bitwise or of a loader's 2-D tile ``x`` over its threads (a one-warp loader's: within the
    warp, no CTA barrier; a four-warp loader's: across them, every warp getting the same value)."""
    return gl.reduce(gl.reduce(x, 1, bitwise_or), 0, bitwise_or)


@gluon.jit
def _stale_pairs(pairs, flags, K_TILES: gl.constexpr):
    """Nonzero unless no half of ``pairs`` (read for their tag) is stale, or'ed with ``flags``
    (:func:`rnnbench.kernels.tagged_exchange.give_up_flags`): one reduction over the loader."""
    either = pairs[0]
    for k in gl.static_range(1, K_TILES):
        either = either | pairs[k]  # a half's tag bit is set here if it is in any pair
    return _reduce_or(compact_stale(either) | flags)


@gluon.jit
def _fresh_pairs(pairs, slot_ptr, offsets, tag, status_ptr, lane, K_TILES: gl.constexpr, STRIDE: gl.constexpr,
                 trace_ptr=None, TRACE: gl.constexpr = False):
    """The state's ``pairs`` (:func:`_load_pairs`) read for ``tag``, the 16-byte vectors holding a
    stale half loaded again (:func:`_reload_stale_vectors`: only those travel) until every half
    carries ``tag``, or until the launch's wait timed out (which sets the status word and ends every
    later wait after one poll, as :func:`rnnbench.kernels.tagged_exchange.wait_fresh`), and published
    NaNs restored. The usual step, every word fresh and no NaN, costs a xor, an or, a subtraction and
    an and per pair and one reduction (:func:`rnnbench.kernels.tagged_exchange.compact_suspects`).
    Returns the polls after it too, which :func:`_tagged_loader` adds up and counts in its warp's
    slot from the synchronisation buffer's :data:`~rnnbench.kernels.primitives.EXTRA_POLLS_SLOT` on
    (``status_ptr`` is its status word), so a GPU run says how often a step's first load found the
    state complete.

    One loader's (:func:`_tagged_loader`): its tiles (``K_TILES`` of them, ``STRIDE`` pairs apart),
    its polls its own. Each warp reads the status word and the clock itself (``lane``: 32 elements
    in every warp), so whether to give up goes through the loader's one reduction: a four-warp
    loader's warps leave the loop together, as the CTA barriers inside each of its polls need; a
    one-warp loader has none. The status word is written whichever warp's clock ran out.

    ``TRACE``: records the first load's arrival (:data:`rnnbench.kernels.trace_events.FIRST_LOAD`,
    once its staleness is known) as step ``tag``'s."""
    key = compact_key(tag)
    read = ()
    for k in gl.static_range(K_TILES):
        read = read + (pairs[k] ^ key,)
    suspects = compact_suspects(read[0])
    for k in gl.static_range(1, K_TILES):
        suspects = suspects | compact_suspects(read[k])
    stale = _reduce_or(suspects)
    if TRACE:
        ev.record(trace_ptr, tag, lane, ev.FIRST_LOAD, clock64_after(lane, stale))
        ev.record(trace_ptr, tag, lane, ev.FIRST_LOAD_NS, globaltimer_after(lane, stale))
    polls = 0
    if stale != 0:  # a stale half, or a NaN (which polls once, loading nothing): poll the stale words
        start = gl.max(globaltimer(lane), axis=0)
        while (stale != 0) & ((stale & GAVE_UP) == 0):
            polls += 1
            again = ()
            for k in gl.static_range(K_TILES):
                again = again + (_reload_stale_vectors(slot_ptr + k * STRIDE + offsets, read[k], key) ^ key,)
            read = again
            flags = give_up_flags(gl.max(_load_relaxed(status_ptr + lane * 0), axis=0),
                                  gl.max(globaltimer(lane), axis=0) - start, _TIMEOUT_NS)
            stale = _stale_pairs(read, flags, K_TILES)
            if timed_out_stale(stale):
                gl.atomic_max(status_ptr, tag, sem="relaxed", scope="gpu")
        restored = ()
        for k in gl.static_range(K_TILES):
            restored = restored + (compact_values(read[k]),)
        read = restored
    return read, polls


#: a digest of the thread poll's PTX (:func:`rnnbench.kernels.tagged_exchange.thread_poll_asm`), read
#: by :func:`_thread_fresh_pairs` so that Triton's cache key changes with the text (a builtin's own
#: source and what it calls are not in the key: an edited generator would reuse old binaries)
_THREAD_POLL_ASM_DIGEST: gl.constexpr = gl.constexpr(zlib.crc32(thread_poll_asm(2, 128, 1)[0].encode()))


@_gluon_builtin
def _poll_in_thread(ptrs, pairs, key, status_ptrs, tag, STRIDE, _semantic=None):
    """One thread's wait for its words of ``pairs`` (a tuple of tiles of int32 pairs as loaded, 4
    consecutive pairs, one 16-byte vector, a thread in each; ``ptrs``: the first tile's pointers, the
    others ``STRIDE`` pairs on), alone (:func:`rnnbench.kernels.tagged_exchange.thread_poll_asm`):
    ``(pairs read for the tag, published NaNs restored; polls | TIMED_OUT << 16)``. ``key``,
    ``status_ptrs`` and ``tag`` are tensors of the tiles' shape and layout."""
    tiles = list(pairs)
    stride = getattr(STRIDE, "value", STRIDE)
    asm, constraints = thread_poll_asm(len(tiles), stride * 4, int(_TIMEOUT_NS.value))
    results = gl.inline_asm_elementwise(asm, constraints, [ptrs, *tiles, key, status_ptrs, tag],
                                        dtype=(gl.int32,) * (len(tiles) + 1), is_pure=False, pack=4,
                                        _semantic=_semantic)
    return gl.tuple(list(results[:-1])), results[-1]


@gluon.jit
def _thread_fresh_pairs(pairs, slot_ptr, offsets, tag, status_ptr, K_TILES: gl.constexpr, STRIDE: gl.constexpr):
    """:func:`_fresh_pairs` with every thread waiting for its own words alone
    (:func:`rnnbench.kernels.switches.tagged_thread_poll`; :func:`_poll_in_thread`): no reduction over
    the loader's threads, so no CTA barrier and no shuffle until the hand-over's. Returns the pairs
    and this thread's polls (a tensor of ``pairs``' layout, every element its thread's count)."""
    gl.static_assert(_THREAD_POLL_ASM_DIGEST >= 0)  # in the cache key (see its definition)
    zero = pairs[0] * 0
    read, info = _poll_in_thread(slot_ptr + offsets, pairs, zero + compact_key(tag), status_ptr + zero, zero + tag,
                                 STRIDE)
    return read, info & 0xFFFF


@gluon.jit
def _no_polls(like, THREAD_POLL: gl.constexpr):
    """The polls counted so far, none: a tensor of ``like``'s layout where each thread counts its own
    (``THREAD_POLL``), else a scalar."""
    if THREAD_POLL:
        return like * 0
    else:
        return 0


@gluon.jit
def _fresh(pairs, slot_ptr, offsets, tag, status_ptr, lane, first, K_TILES: gl.constexpr, STRIDE: gl.constexpr,
           trace_ptr, TRACED: gl.constexpr, THREAD_POLL: gl.constexpr):
    """The state's ``pairs`` made fresh for ``tag`` with their polls: :func:`_thread_fresh_pairs` where
    ``THREAD_POLL``, else :func:`_fresh_pairs`. ``TRACED``: the first load's arrival recorded (with
    ``THREAD_POLL``, the loader's first thread's, ``first`` its element: there is no reduction to follow)."""
    if THREAD_POLL:
        if TRACED:
            last = pairs[K_TILES - 1]
            ev.record_at(trace_ptr, tag, ev.FIRST_LOAD, clock64_after(last, last), first)
            ev.record_at(trace_ptr, tag, ev.FIRST_LOAD_NS, globaltimer_after(last, last), first)
        return _thread_fresh_pairs(pairs, slot_ptr, offsets, tag, status_ptr, K_TILES, STRIDE)
    else:
        return _fresh_pairs(pairs, slot_ptr, offsets, tag, status_ptr, lane, K_TILES, STRIDE, trace_ptr, TRACED)


@gluon.jit
def _tagged_loader(state_ptr, flags_ptr, h_smem, bars, h_free, T, b_pad, pid_b, BLOCK_B: gl.constexpr,
                   H_PAD: gl.constexpr, LOADERS: gl.constexpr, WARP: gl.constexpr, POLL_DELAY_NS: gl.constexpr = 0,
                   trace_ptr=None, TRACE: gl.constexpr = False, GROUP_TILES: gl.constexpr = 0,
                   THREAD_POLL: gl.constexpr = False):
    """Loader ``WARP`` of the tagged exchange's ``LOADERS`` (4: one-warp partitions; 1: one partition
    of :data:`LOADER_WARPS` warps, whose reductions cross them), beside :func:`_recurrence`: for
    every step, tiles ``WARP``, ``WARP + LOADERS``, ... of this
    program's ``BLOCK_B`` rows of the compact exchange (``state_ptr``: 16-bit ``(3, B_pad, H_PAD)``,
    :func:`rnnbench.kernels.tagged_exchange.compact_state`) loaded into registers as int32 pairs of
    values and polled until each half carries the step's tag (:func:`_fresh_pairs`; step 0 reads
    ``h0`` from slot 2 as it is), first loaded once the recurrence has published its words of the
    previous step (``h_free``; its MMAs read the state before that, so the shared tiles are free,
    and the other programs' words are due; a poll from the start of the step would reload the state
    a few times a step), then stored into its tiles of ``h_smem``, fenced for the MMAs' async proxy
    and announced on ``bars[0]`` (one arrival a loader: :func:`_recurrent_product` waits for all
    as for one TMA copy of every tile). No grid barrier: the values are the state and their tag bits
    its flags; and with one-warp loaders no CTA barrier: each warp polls on its own.
    ``POLL_DELAY_NS``: a pause between ``h_free`` and the first load of every step but the first
    (:func:`rnnbench.kernels.switches.tagged_poll_delay`), so that programs publishing a little later
    than this one have landed. ``TRACE``: loader ``0`` records its events
    (:mod:`rnnbench.kernels.trace_events`) in ``trace_ptr`` (grouped: the first group's first load,
    the last group's fresh words and arrival).

    ``GROUP_TILES > 0`` (one loader, :func:`rnnbench.kernels.switches.tagged_groups`): every load of the
    step is issued first, then the tiles are handed over in groups of ``GROUP_TILES`` consecutive ones
    (the last maybe smaller), each checked and reloaded until fresh, stored, fenced and announced on
    ``bars[group]`` on its own, so :func:`_recurrent_product` (which waits copy by copy) starts on the
    first group's tiles while the later ones are still arriving or being reloaded.

    ``THREAD_POLL`` (:func:`rnnbench.kernels.switches.tagged_thread_poll`): each thread checks and polls
    its own words alone (:func:`_thread_fresh_pairs`), so the step's only CTA barrier among the
    loader's warps is the hand-over's; its polls are counted per thread, and the launch's count is
    the busiest thread's (a trace's ``polls`` and ``first_load``: the loader's first thread's)."""
    K_TILES: gl.constexpr = H_PAD // _K_TILE
    TRACED: gl.constexpr = TRACE and WARP == 0
    TILES: gl.constexpr = (K_TILES - WARP + LOADERS - 1) // LOADERS
    gl.static_assert(GROUP_TILES == 0 or LOADERS == 1, "the hand-over in groups is one loader's")
    PER_GROUP: gl.constexpr = TILES if GROUP_TILES == 0 else GROUP_TILES
    GROUPS: gl.constexpr = (TILES + PER_GROUP - 1) // PER_GROUP
    PAIRS: gl.constexpr = _K_TILE // 2
    WARPS: gl.constexpr = LOADER_WARPS // LOADERS
    # (BLOCK_B = 16 rows, 32 pairs) a tile: 4 pairs (16 bytes, one vector load) a thread in each of
    # 16 / (4 * WARPS) rows
    layout: gl.constexpr = gl.BlockedLayout(size_per_thread=[1, 4], threads_per_warp=[4, 8], warps_per_cta=[WARPS, 1],
                                            order=[1, 0])
    lane = gl.arange(0, 32, layout=gl.BlockedLayout(size_per_thread=[1], threads_per_warp=[32], warps_per_cta=[WARPS],
                                                    order=[0]))
    rows = pid_b * BLOCK_B + gl.arange(0, BLOCK_B, layout=gl.SliceLayout(1, layout))
    columns = WARP * PAIRS + gl.arange(0, PAIRS, layout=gl.SliceLayout(0, layout))
    offsets = gl.expand_dims(rows, 1) * (H_PAD // 2) + gl.expand_dims(columns, 0)
    # the loader's first thread's element (a thread-polling loader's trace stamps)
    first = (gl.expand_dims(rows, 1) == pid_b * BLOCK_B) & (gl.expand_dims(columns, 0) == WARP * PAIRS)
    pairs_ptr = state_ptr.to(gl.pointer_type(gl.int32), bitcast=True)
    slot_pairs = b_pad * (H_PAD // 2)
    status_ptr = flags_ptr + FLAG_SLOTS
    extra_polls = _no_polls(offsets, THREAD_POLL)
    for s in range(0, T):
        mbarrier.wait(h_free, (s % 2) ^ 1)  # the recurrence has published step s-1 (step 0 finds it free)
        if TRACED:
            ev.record(trace_ptr, s, lane, ev.LOADER_START, clock64(lane))
        polls = _no_polls(offsets, THREAD_POLL)
        if GROUPS == 1:
            if s == 0:  # h0, unchecked
                pairs = _load_pairs(pairs_ptr + 2 * slot_pairs, offsets, TILES, LOADERS * PAIRS)
            else:  # step s reads slot (s+1) % 2, tagged s
                if POLL_DELAY_NS > 0:
                    _pause(lane, POLL_DELAY_NS)
                slot_ptr = pairs_ptr + ((s + 1) % 2) * slot_pairs
                pairs, polls = _fresh(_load_pairs(slot_ptr, offsets, TILES, LOADERS * PAIRS), slot_ptr, offsets, s,
                                      status_ptr, lane, first, TILES, LOADERS * PAIRS, trace_ptr, TRACED, THREAD_POLL)
            if TRACED:
                ev.record(trace_ptr, s, lane, ev.LOADER_FRESH, clock64(lane))
            for t in gl.static_range(TILES):
                _as_pairs(h_smem[WARP + t * LOADERS], _PAIRS_LAYOUT).store(pairs[t])
            fence_async_shared()
            cta_barrier()  # every thread of this loader has stored its tiles
            mbarrier.arrive(bars.index(0))
        else:
            polls = _hand_over_groups(pairs_ptr, slot_pairs, offsets, s, status_ptr, lane, first, h_smem, bars, TILES,
                                      PER_GROUP, GROUPS, PAIRS, POLL_DELAY_NS, trace_ptr, TRACED, THREAD_POLL)
        if TRACED:
            ev.record(trace_ptr, s, lane, ev.LOADER_HANDED, clock64(lane))
            if THREAD_POLL:
                ev.record_at(trace_ptr, s, ev.POLLS, polls.to(gl.int64), first)
            else:
                ev.record(trace_ptr, s, lane, ev.POLLS, polls)
        extra_polls += polls
    if THREAD_POLL:  # the busiest thread's
        busiest = gl.max(gl.max(extra_polls, 1), 0)
    else:
        busiest = extra_polls
    if busiest != 0:  # counted once a launch, not in a step, where a fence would wait for the atomic
        gl.atomic_add(status_ptr + _EXTRA_POLLS + WARP, busiest, sem="relaxed", scope="gpu")


@gluon.jit
def _hand_over_groups(pairs_ptr, slot_pairs, offsets, s, status_ptr, lane, first, h_smem, bars, TILES: gl.constexpr,
                      PER_GROUP: gl.constexpr, GROUPS: gl.constexpr, PAIRS: gl.constexpr,
                      POLL_DELAY_NS: gl.constexpr, trace_ptr, TRACED: gl.constexpr, THREAD_POLL: gl.constexpr):
    """One step of :func:`_tagged_loader` (one loader) handing the state over in ``GROUPS`` groups of
    ``PER_GROUP`` consecutive tiles (the last maybe fewer): all of the step's loads issued first
    (step 0: ``h0``, unchecked), then :func:`_hand_over_group` for each group in turn. Returns the
    step's reloads (all groups')."""
    # step s reads slot (s+1) % 2, tagged s; step 0 reads h0 from slot 2
    slot_ptr = pairs_ptr + ((s + 1) % 2 + (s == 0).to(gl.int32)) * slot_pairs
    if s > 0:
        if POLL_DELAY_NS > 0:
            _pause(lane, POLL_DELAY_NS)
    pairs = _load_pairs(slot_ptr, offsets, TILES, PAIRS)
    polls = _no_polls(offsets, THREAD_POLL)
    for g in gl.static_range(GROUPS):
        polls += _hand_over_group(pairs, slot_ptr, offsets, s, status_ptr, lane, first, h_smem, bars, g, g * PER_GROUP,
                                  min(PER_GROUP, TILES - g * PER_GROUP), PAIRS, trace_ptr, TRACED, GROUPS, THREAD_POLL)
    return polls


@gluon.jit
def _hand_over_group(pairs, slot_ptr, offsets, s, status_ptr, lane, first, h_smem, bars, GROUP: gl.constexpr,
                     FIRST: gl.constexpr, COUNT: gl.constexpr, PAIRS: gl.constexpr, trace_ptr, TRACED: gl.constexpr,
                     GROUPS: gl.constexpr, THREAD_POLL: gl.constexpr):
    """Tiles ``FIRST .. FIRST + COUNT - 1`` of the step's loaded ``pairs``: made fresh (from step 1 on;
    :func:`_fresh_pairs` on these tiles only), stored into their tiles of ``h_smem``, fenced and
    announced on ``bars[GROUP]``. Returns their reloads. ``TRACED``: the first group's first load and
    the last group's fresh words are the step's (:mod:`rnnbench.kernels.trace_events`)."""
    group = ()
    for k in gl.static_range(COUNT):
        group = group + (pairs[FIRST + k],)
    polls = _no_polls(offsets, THREAD_POLL)
    if s > 0:
        group, polls = _fresh(group, slot_ptr + FIRST * PAIRS, offsets, s, status_ptr, lane, first, COUNT, PAIRS,
                              trace_ptr, TRACED and GROUP == 0, THREAD_POLL)
    if TRACED and GROUP == GROUPS - 1:
        ev.record(trace_ptr, s, lane, ev.LOADER_FRESH, clock64(lane))
    for k in gl.static_range(COUNT):
        _as_pairs(h_smem[FIRST + k], _PAIRS_LAYOUT).store(group[k])
    fence_async_shared()
    cta_barrier()  # every thread of this loader has stored the group's tiles
    mbarrier.arrive(bars.index(GROUP))
    return polls


@gluon.jit
def _input_bias(bias_ptr, row0, H, acc_layout: gl.constexpr, BLOCK_B: gl.constexpr):
    """The fused input projection's starting accumulator: ``(64, BLOCK_B)`` float32 in
    ``acc_layout``, row ``g*16 + j`` the bias (``b_ih + b_hh``, float32 ``(D*4H,)``) of gate g of
    the program's unit j (``row0 = direction*4H + first unit``), the same in every column; 0 past H."""
    rows = gl.arange(0, 4 * _UNITS, layout=gl.SliceLayout(1, acc_layout))
    units = row0 % H + rows % _UNITS
    bias = gl.load(bias_ptr + row0 + (rows // _UNITS) * H + rows % _UNITS, mask=units < H, other=0.0)
    return gl.zeros([4 * _UNITS, BLOCK_B], gl.float32, acc_layout) + gl.expand_dims(bias, 1)


@gluon.jit
def _input_product(start, wih_smem, x_smem, x_bars, phase, INPUT_TILES: gl.constexpr, PER_COPY: gl.constexpr):
    """Issue ``start + W_ih slice (64, I_pad) @ x_t^T (I_pad, BLOCK_B)`` as warpgroup MMAs (not
    waited for: the caller waits with ``warpgroup_mma_wait``), ``x_smem`` the ``(copies, PER_COPY,
    BLOCK_B, 64)`` input tiles the TMA copies completing ``phase`` of ``x_bars`` bring, a copy's
    MMAs after its mbarrier."""
    acc = warpgroup_mma_init(start)
    for k in gl.static_range(INPUT_TILES):
        if k % PER_COPY == 0:
            mbarrier.wait(x_bars.index(k // PER_COPY), phase)
        tiles = _with_layout(x_smem.index(k // PER_COPY), _TILE_LAYOUT)
        acc = warpgroup_mma(wih_smem.index(k), tiles.index(k % PER_COPY).permute((1, 0)), acc, is_async=True)
    return acc


@gluon.jit
def _local_gate_tiles(product, tile_layout: gl.constexpr, BLOCK_B: gl.constexpr):
    """The four ``(16, BLOCK_B)`` float32 tiles (i, f, g, o) of the recurrent ``product`` whose rows
    are :func:`local_gate_rows`' (row ``16w + 4G + u``: gate G of unit ``4w + u``), in
    ``tile_layout``, without a CTA barrier: one conversion inside each warp to
    :data:`_LOCAL_GATES_LAYOUT` (Triton 3.6 and 3.9 pass it through shared memory behind a warp
    barrier, 4 stores and 4 loads a thread), then a reshape, a permute and two splits of what each
    thread already holds."""
    z = gl.convert_layout(product, _LOCAL_GATES_LAYOUT)
    # rows 16w + 8 G1 + 4 G0 + u -> (w, G1, G0, u, b) -> (w, u, b, G1, G0) -> (unit, b, G1, G0)
    z = gl.reshape(z, [4, 2, 2, 4, BLOCK_B])
    z = gl.permute(z, [0, 3, 4, 1, 2])
    z = gl.reshape(z, [_UNITS, BLOCK_B, 2, 2])
    low_gate_even, low_gate_odd = gl.split(z)  # G0 = 0 (i, g) and 1 (f, o), each (unit, b, G1)
    z_i, z_g = gl.split(low_gate_even)
    z_f, z_o = gl.split(low_gate_odd)
    return (gl.convert_layout(z_i, tile_layout), gl.convert_layout(z_f, tile_layout),
            gl.convert_layout(z_g, tile_layout), gl.convert_layout(z_o, tile_layout))


@gluon.jit
def _pre_activations(product, gates_smem, inputs_smem, tile_layout: gl.constexpr, FUSED: gl.constexpr):
    """The four ``(16, BLOCK_B)`` float32 pre-activation tiles (i, f, g, o) in ``tile_layout``: the
    ``(64, BLOCK_B)`` recurrent ``product`` (rows gate-major, in the MMA's layout) plus the input
    part: with ``FUSED`` the float32 ``(64, BLOCK_B)`` input product :func:`_input_projection`
    stored in ``inputs_smem`` (its mbarrier waited for), else the four ``xg`` tiles
    :func:`_prefetch_gates` copied into ``inputs_smem``. The product changes hands between warps
    through ``gates_smem``; one CTA barrier covers that and the copies of every thread."""
    if not FUSED:
        async_copy.wait_group(0)
    gates_smem.store(product)
    cta_barrier()
    if FUSED:
        return (gates_smem.slice(0, _UNITS).load(tile_layout) + inputs_smem.slice(0, _UNITS).load(tile_layout),
                gates_smem.slice(_UNITS, _UNITS).load(tile_layout)
                + inputs_smem.slice(_UNITS, _UNITS).load(tile_layout),
                gates_smem.slice(2 * _UNITS, _UNITS).load(tile_layout)
                + inputs_smem.slice(2 * _UNITS, _UNITS).load(tile_layout),
                gates_smem.slice(3 * _UNITS, _UNITS).load(tile_layout)
                + inputs_smem.slice(3 * _UNITS, _UNITS).load(tile_layout))
    else:
        return (gates_smem.slice(0, _UNITS).load(tile_layout) + inputs_smem[0].load(tile_layout).to(gl.float32),
                gates_smem.slice(_UNITS, _UNITS).load(tile_layout) + inputs_smem[1].load(tile_layout).to(gl.float32),
                gates_smem.slice(2 * _UNITS, _UNITS).load(tile_layout)
                + inputs_smem[2].load(tile_layout).to(gl.float32),
                gates_smem.slice(3 * _UNITS, _UNITS).load(tile_layout)
                + inputs_smem[3].load(tile_layout).to(gl.float32))


@gluon.jit
def _recurrence(xg_ptr, w_ptr, w_stride, c0_ptr, y_ptr, c_all_ptr, c_n_ptr, exchange_ptr, ex_desc, lengths_ptr,
                flags_ptr, w_smem, h_smem, gates_smem, inputs_smem, bars, xp_bars, h_free, T, B, H, row0, exchange_row,
                b_pad, direction, acc_layout: gl.constexpr, tile_layout: gl.constexpr, BLOCK_B: gl.constexpr,
                H_PAD: gl.constexpr, TRAINING: gl.constexpr, DIRECTIONS: gl.constexpr,
                HAS_LENGTHS: gl.constexpr, POLL: gl.constexpr, POLL_ORDER: gl.constexpr, PER_COPY: gl.constexpr,
                REGISTER_TILES: gl.constexpr, GRID_SYNC: gl.constexpr, FUSED: gl.constexpr, STAGES: gl.constexpr,
                TAGGED: gl.constexpr = False, CHAINS: gl.constexpr = 1, trace_ptr=None, TRACE: gl.constexpr = False,
                xg_flags_ptr=None, XG_CHUNK: gl.constexpr = 0, LOCAL_GATES: gl.constexpr = False,
                POLL_FIRST_WARP: gl.constexpr = False):
    """The time loop of :func:`lstm_forward_gluon_kernel` (its arguments there; pointers already
    offset to this program's direction; its layouts), run by the kernel's 4 warps, or with a fused input
    projection as the default partition beside :func:`_input_projection`: ``inputs_smem`` is then
    its ``(STAGES, 64, BLOCK_B)`` float32 products, ``xp_bars`` their ``STAGES`` "full" then
    ``STAGES`` "empty" mbarriers; otherwise ``inputs_smem`` is the four ``xg`` tiles this loop
    prefetches by ``cp.async`` (and ``xp_bars`` unused). ``TAGGED``: the state comes from
    :func:`_tagged_loader` (its copies announced on ``bars``, ``h_free`` arrived on once this step's
    MMAs have read it) and goes out as compact words (``exchange_ptr``: the 3-slot compact exchange,
    :func:`rnnbench.kernels.tagged_exchange.compact_state`), no grid barrier. ``TRACE``: records the
    step's events (:mod:`rnnbench.kernels.trace_events`) in ``trace_ptr``, this program's rows.
    ``XG_CHUNK > 0`` (one direction, not fused): ``xg`` is projected beside the kernel
    (:mod:`rnnbench.kernels.overlapped_projection`); before prefetching the first step of each
    chunk of ``XG_CHUNK`` steps the loop waits for that chunk's flag in ``xg_flags_ptr``.
    ``LOCAL_GATES`` (not fused): ``W_hh``'s rows are :func:`local_gate_rows`', the gates are split
    inside each warp (:func:`_local_gate_tiles`) and the next step's ``xg`` is loaded into registers
    as pairs (:func:`_load_gates`, unpacked by :func:`_unpack_gate` where used): no shared memory
    but the MMAs' and no CTA barrier for the gates."""
    K_TILES: gl.constexpr = H_PAD // _K_TILE
    SHARED_TILES: gl.constexpr = K_TILES - REGISTER_TILES
    COPIES: gl.constexpr = (K_TILES + PER_COPY - 1) // PER_COPY
    dtype: gl.constexpr = y_ptr.dtype.element_ty
    poll_layout: gl.constexpr = gl.BlockedLayout(size_per_thread=[1], threads_per_warp=[32], warps_per_cta=[4],
                                                 order=[0])
    lane = gl.arange(0, POLL if POLL < 32 else 32, layout=poll_layout)
    pid_h = gl.program_id(0)
    unit_col, row_row, state_mask, state_offsets, gate_offsets, y_offsets, length = program_tile(
        lengths_ptr, T, B, H, tile_layout, BLOCK_B, DIRECTIONS, HAS_LENGTHS)
    write = row_row * H_PAD + unit_col
    w_regs = _register_weights(w_ptr, w_stride, row0, H, _UNITS if LOCAL_GATES else H,
                               gl.DotOperandLayout(operand_index=0, parent=acc_layout, k_width=2), SHARED_TILES,
                               K_TILES)

    c = gl.load(c0_ptr + state_offsets, mask=state_mask, other=0.0).to(gl.float32)
    if not TAGGED:
        _arm_copies(bars, ex_desc, COPIES)
    if LOCAL_GATES:  # xg's int32 pairs of adjacent units (_load_gates): pair p of tile_layout's units 2p, 2p+1
        pair_layout: gl.constexpr = gl.BlockedLayout(size_per_thread=[1, 1], threads_per_warp=[2, 16],
                                                     warps_per_cta=[4, 1], order=[0, 1])
        pairs = gl.expand_dims(pid_h * (_UNITS // 2)
                               + gl.arange(0, _UNITS // 2, layout=gl.SliceLayout(1, pair_layout)), 1)
        pair_rows = gl.expand_dims(gl.program_id(1) * BLOCK_B
                                   + gl.arange(0, BLOCK_B, layout=gl.SliceLayout(0, pair_layout)), 0)
        pair_offsets = pair_rows * (2 * H) + pairs
        pair_mask = (2 * pairs < H) & (pair_rows < B)
    if not FUSED:
        if XG_CHUNK > 0:
            input_ready_wait(xg_flags_ptr, flags_ptr + FLAG_SLOTS, 1, lane)
        if LOCAL_GATES:  # every row runs every step (the tagged exchange has no lengths)
            xg_next = _load_gates(xg_ptr, time_index(0, T, length, direction, DIRECTIONS, HAS_LENGTHS), B, H,
                                  pair_offsets, pair_mask)
        else:
            _prefetch_gates(inputs_smem, xg_ptr, time_index(0, T, length, direction, DIRECTIONS, HAS_LENGTHS), B, H,
                            gate_offsets, running_rows(0, length, state_mask, HAS_LENGTHS))
    for s in range(0, T):
        if TRACE:
            ev.record(trace_ptr, s, lane, ev.STEP_START, clock64(lane))
        t = time_index(s, T, length, direction, DIRECTIONS, HAS_LENGTHS)
        running = running_rows(s, length, state_mask, HAS_LENGTHS)
        slot = (s + 1) % 2  # step s reads slot (s+1) % 2 and writes slot s % 2
        if not TAGGED:
            _load_copies(ex_desc, exchange_row + slot * b_pad, h_smem, bars, PER_COPY, COPIES)
        product = _recurrent_product(w_smem, w_regs, h_smem, bars, s % 2, acc_layout, BLOCK_B, K_TILES, PER_COPY,
                                     SHARED_TILES, TAGGED, CHAINS, trace_ptr, s, lane, TRACE)
        if TRACE:
            ev.record(trace_ptr, s, lane, ev.PRODUCT_DONE, clock64(lane))
        if FUSED:
            stage = s % STAGES
            mbarrier.wait(xp_bars.index(stage), (s // STAGES) % 2)
            z_i, z_f, z_g, z_o = _pre_activations(product, gates_smem, inputs_smem.index(stage), tile_layout, True)
        elif LOCAL_GATES:
            z_i, z_f, z_g, z_o = _local_gate_tiles(product, tile_layout, BLOCK_B)
            z_i += _unpack_gate(xg_next[0], dtype, tile_layout, BLOCK_B)
            z_f += _unpack_gate(xg_next[1], dtype, tile_layout, BLOCK_B)
            z_g += _unpack_gate(xg_next[2], dtype, tile_layout, BLOCK_B)
            z_o += _unpack_gate(xg_next[3], dtype, tile_layout, BLOCK_B)
        else:
            z_i, z_f, z_g, z_o = _pre_activations(product, gates_smem, inputs_smem, tile_layout, False)
        i = _sigmoid(z_i)
        f = _sigmoid(z_f)
        g = _tanh(z_g)
        o = _sigmoid(z_o)
        c_t = f * c + i * g
        h = o * _tanh(c_t)
        step = gl.cast(t, gl.int64) * B
        y = y_ptr + step * DIRECTIONS * H + y_offsets
        if HAS_LENGTHS:
            gl.store(y, gl.where(running, h, 0.0).to(dtype), mask=state_mask)
            c_t = gl.where(running, c_t, c)
            h = gl.where(running, h, gl.load(exchange_ptr + slot * b_pad * H_PAD + write).to(gl.float32))
        else:
            gl.store(y, h.to(dtype), mask=state_mask)
        if TRAINING:
            gates = xg_ptr + step * 4 * H + gate_offsets
            gl.store(gates, i.to(dtype), mask=running)
            gl.store(gates + H, f.to(dtype), mask=running)
            gl.store(gates + 2 * H, g.to(dtype), mask=running)
            gl.store(gates + 3 * H, o.to(dtype), mask=running)
            gl.store(c_all_ptr + step * H + state_offsets, c_t, mask=running)
        c = c_t
        if TAGGED:
            _publish_compact(exchange_ptr + (s % 2) * b_pad * H_PAD + write, h.to(dtype), s + 1)
            if TRACE:
                ev.record(trace_ptr, s, lane, ev.STATE_OUT, clock64(lane))
                ev.record(trace_ptr, s, lane, ev.STATE_OUT_NS, globaltimer(lane))
            # every thread's MMAs have read the state (before the gate split's CTA barrier): the loader may
            # refill its tiles, and polls for the next step's words from here, this program's own on their way
            mbarrier.arrive(h_free)
        else:
            gl.store(exchange_ptr + (s % 2) * b_pad * H_PAD + write, h.to(dtype), mask=unit_col < H)
            if TRACE:
                ev.record(trace_ptr, s, lane, ev.STATE_OUT, clock64(lane))
                ev.record(trace_ptr, s, lane, ev.STATE_OUT_NS, globaltimer(lane))
            barrier_arrive(flags_ptr, pid_h, lane, GRID_SYNC)
        if FUSED:  # every thread has read this stage (the arrival's CTA barrier): the producer may refill it
            mbarrier.arrive(xp_bars.index(STAGES + s % STAGES))
        else:
            # the next step's inputs, loaded a whole step ahead (the last step loads its own again,
            # waited for after the loop: under the condition below, Triton 3.6 spilled at H=1024)
            upcoming = gl.minimum(s + 1, T - 1)
            if XG_CHUNK > 0:
                if (upcoming % XG_CHUNK == 0) & (upcoming > s):  # the first step of a chunk (not the last again)
                    input_ready_wait(xg_flags_ptr + upcoming // XG_CHUNK, flags_ptr + FLAG_SLOTS, upcoming + 1, lane)
            if LOCAL_GATES:
                xg_next = _load_gates(xg_ptr, time_index(upcoming, T, length, direction, DIRECTIONS, HAS_LENGTHS),
                                      B, H, pair_offsets, pair_mask)
            else:
                _prefetch_gates(inputs_smem, xg_ptr,
                                time_index(upcoming, T, length, direction, DIRECTIONS, HAS_LENGTHS), B, H,
                                gate_offsets, running_rows(upcoming, length, state_mask, HAS_LENGTHS))
        if not TAGGED:
            if s + 1 < T:
                _arm_copies(bars, ex_desc, COPIES)
            barrier_wait(flags_ptr, gl.num_programs(0), s + 1, lane, POLL, POLL_ORDER, GRID_SYNC, POLL_FIRST_WARP)
        if TRACE:
            ev.record(trace_ptr, s, lane, ev.STEP_END, clock64(lane))
    if not FUSED and not LOCAL_GATES:
        async_copy.wait_group(0)  # no copy in flight at the exit
    gl.store(c_n_ptr + state_offsets, c, mask=state_mask)


@gluon.jit
def _input_projection(x_desc, wih_desc, bias_ptr, wih_smem, x_smem, xp_smem, x_bars, xp_bars, wih_bar, T, B, H, row0,
                      batch_row, direction, acc_layout: gl.constexpr, BLOCK_B: gl.constexpr, DIRECTIONS: gl.constexpr,
                      INPUT_TILES: gl.constexpr, INPUT_PER_COPY: gl.constexpr, STAGES: gl.constexpr):
    """The producer partition of the fused input projection (a warpgroup of its own): loads the
    program's ``W_ih`` slice once, then for every step copies ``x_t`` (rows ``batch_row + [0,
    BLOCK_B)`` of the input's column tiles) by TMA, multiplies it (``bias + W_ih x_t``, float32) and
    hands the ``(64, BLOCK_B)`` product to :func:`_recurrence` through stage ``s % STAGES`` of
    ``xp_smem`` ("full" mbarrier ``xp_bars[stage]``, "empty" ``xp_bars[STAGES + stage]``), up to
    ``STAGES`` steps ahead of it. Its MMAs and issue slots are not the recurrence's warps', so they
    stay off the step's critical path."""
    INPUT_COPIES: gl.constexpr = (INPUT_TILES + INPUT_PER_COPY - 1) // INPUT_PER_COPY
    _load_weights(wih_desc, wih_smem, wih_bar, 0, row0, H, INPUT_TILES)
    bias = _input_bias(bias_ptr, row0, H, acc_layout, BLOCK_B)
    _arm_copies(x_bars, x_desc, INPUT_COPIES)
    _load_copies(x_desc, time_index(0, T, T, direction, DIRECTIONS, False) * B + batch_row, x_smem, x_bars,
                INPUT_PER_COPY, INPUT_COPIES)
    for s in range(0, T):
        product = warpgroup_mma_wait(0, deps=(_input_product(bias, wih_smem, x_smem, x_bars, s % 2, INPUT_TILES,
                                                             INPUT_PER_COPY),))
        if s + 1 < T:  # x_smem is free again: the next step's input
            _arm_copies(x_bars, x_desc, INPUT_COPIES)
            _load_copies(x_desc, time_index(s + 1, T, T, direction, DIRECTIONS, False) * B + batch_row, x_smem, x_bars,
                        INPUT_PER_COPY, INPUT_COPIES)
        stage = s % STAGES
        mbarrier.wait(xp_bars.index(STAGES + stage), (s // STAGES) % 2 ^ 1)  # the first round finds it empty
        xp_smem.index(stage).store(product)
        cta_barrier()  # every thread of this partition has stored
        mbarrier.arrive(xp_bars.index(stage))


@gluon.jit(do_not_specialize=["T", "B", "first_direction"])
def lstm_forward_gluon_kernel(
    xg_ptr, w_ptr, w_desc, c0_ptr, y_ptr, c_all_ptr, c_n_ptr, exchange_ptr, ex_desc, lengths_ptr, sync_ptr,
    x_desc, wih_desc, bias_ptr, trace_ptr, xg_flags_ptr,
    T, B, H, w_stride, first_direction,
    BLOCK_B: gl.constexpr, H_PAD: gl.constexpr, TRAINING: gl.constexpr, DIRECTIONS: gl.constexpr,
    HAS_LENGTHS: gl.constexpr, POLL: gl.constexpr, POLL_ORDER: gl.constexpr, PER_COPY: gl.constexpr,
    REGISTER_TILES: gl.constexpr = 0, GRID_SYNC: gl.constexpr = True, INPUT_TILES: gl.constexpr = 0,
    INPUT_PER_COPY: gl.constexpr = 1, TAGGED: gl.constexpr = False, POLL_DELAY_NS: gl.constexpr = 0,
    LOADERS: gl.constexpr = 4, MMA_CHAINS: gl.constexpr = 1, TRACE: gl.constexpr = False, XG_CHUNK: gl.constexpr = 0,
    GROUPS: gl.constexpr = 1, THREAD_POLL: gl.constexpr = False, LOCAL_GATES: gl.constexpr = False,
    POLL_FIRST_WARP: gl.constexpr = False,
):
    """Cooperative LSTM forward over all T steps; program ``(pid_h, pid_b, direction)`` owns units
    ``pid_h*16 + [0, 16)`` of batch rows ``pid_b*BLOCK_B + [0, BLOCK_B)``.

    Buffers as :func:`rnnbench.kernels.lstm_kernels.lstm_forward_kernel`'s (``h0`` already in slot
    1 of the exchange). ``w_ptr``: ``W_hh`` rows ``(D*4H, w_stride)``, whose last ``REGISTER_TILES``
    tiles of 64 columns are loaded into registers; ``w_desc``: TMA descriptor of the same rows, box
    ``(16, 64)``, for the other tiles; ``ex_desc``: of the exchange viewed ``(H_PAD/64, D*2*B_pad, 64)``, box
    ``(PER_COPY, BLOCK_B, 64)``. ``GRID_SYNC=False`` (the step ablation's ``real_gluon_no_sync``
    only) leaves out the grid barrier's release and poll, keeping its CTA barriers and proxy
    fences: the step's own chain, timed, with garbage results.

    ``INPUT_TILES > 0``: the input projection is fused (no lengths), computed by a second warpgroup
    (:func:`_input_projection`, :data:`INPUT_STAGES` steps ahead) while the kernel's warps run the
    recurrence (:func:`_recurrence`): ``x_desc`` describes the input ``x (T, B, I)`` viewed ``(I/64,
    T*B, 64)`` (box ``(INPUT_PER_COPY, BLOCK_B, 64)``), ``wih_desc`` the rows of ``W_ih (D*4H, I)``
    (box ``(16, 64)``), ``bias_ptr`` float32 ``b_ih + b_hh`` ``(D*4H,)``, and ``xg_ptr`` is only the
    training forward's gate output ``(D, T, B, 4H)`` (see :func:`run_forward`).

    ``TAGGED`` (no lengths, no fused input; :func:`rnnbench.kernels.plan.tagged_exchange_refusal`):
    the exchange is the compact one (:func:`rnnbench.kernels.tagged_exchange.compact_state`: 16-bit
    values whose top exponent bit carries a 1-bit tag, three slots a direction, ``h0`` in the third;
    ``ex_desc`` unused) and ``LOADERS`` loader partitions (:func:`_tagged_loader`: one of four warps,
    the planner's, or four of one warp; :data:`rnnbench.kernels.switches.GLUON_TAGGED_LOADERS`) bring the
    state into shared memory, polling the values themselves: no release fence, flag, poll of flags
    or TMA copy.

    ``TRACE`` (:mod:`rnnbench.kernels.step_trace`): every step's timestamps go to ``trace_ptr``, int64
    ``(P, T, EVENT_COUNT)`` (:mod:`rnnbench.kernels.trace_events`); otherwise ``trace_ptr`` is None.

    ``XG_CHUNK > 0`` (one direction, no lengths, not fused): ``xg`` is being projected beside the
    kernel (:mod:`rnnbench.kernels.overlapped_projection`), chunk ``c`` of ``XG_CHUNK`` steps announced
    by int32 flag ``xg_flags_ptr[c]``; otherwise ``xg_flags_ptr`` is None.

    ``LOCAL_GATES`` (tagged, 16-row blocks; :func:`rnnbench.kernels.switches.local_gates`): ``w_ptr`` and
    ``w_desc`` hold :func:`local_gate_rows`' order, program ``pid_h``'s 64 rows from row
    ``pid_h*64``, and the recurrence splits the gates inside each warp (:func:`_recurrence`).
    """
    K_TILES: gl.constexpr = H_PAD // _K_TILE
    SHARED_TILES: gl.constexpr = K_TILES - REGISTER_TILES
    FUSED: gl.constexpr = INPUT_TILES > 0
    gl.static_assert(not (TAGGED and (FUSED or HAS_LENGTHS)), "the tagged exchange runs without lengths or a fused input")
    gl.static_assert(XG_CHUNK == 0 or (DIRECTIONS == 1 and not HAS_LENGTHS and not FUSED),
                     "the overlapped projection's flags announce one direction's steps forwards in time")
    gl.static_assert(MMA_CHAINS == 1 or (MMA_CHAINS == 2 and TAGGED and K_TILES >= 2),
                     "two MMA chains need the tagged exchange's one copy of the state, and two tiles")
    gl.static_assert(not TAGGED or ((LOADERS == 1 or LOADERS == 4) and K_TILES >= LOADERS),
                     "the tagged exchange's loaders (1 or 4 partitions, written out below) need a tile each")
    gl.static_assert(not LOCAL_GATES or (TAGGED and BLOCK_B == 16),
                     "the warp-local gate split is the tagged exchange's, at 16-row blocks")
    INPUT_COPIES: gl.constexpr = (INPUT_TILES + INPUT_PER_COPY - 1) // INPUT_PER_COPY
    # the tagged loader hands the state over in one copy: it holds every tile in registers before it
    # stores any, so more copies would add only their fences and barriers (model, H=768 B=16: 0.07 µs
    # a step with Triton 3.9, 0.10 with 3.6, against copies of PER_COPY tiles); or, with GROUPS > 1
    # (switches.tagged_groups), in that many copies, each handed over as soon as its words are fresh
    gl.static_assert(GROUPS == 1 or (TAGGED and LOADERS == 1 and MMA_CHAINS == 1),
                     "the hand-over in groups is the tagged exchange's one loader's, with one MMA chain")
    STATE_PER_COPY: gl.constexpr = ((K_TILES + GROUPS - 1) // GROUPS) if TAGGED else PER_COPY
    COPIES: gl.constexpr = (K_TILES + STATE_PER_COPY - 1) // STATE_PER_COPY
    dtype: gl.constexpr = y_ptr.dtype.element_ty
    scratch_layout: gl.constexpr = gl.SwizzledSharedLayout(vec=1, per_phase=1, max_phase=1, order=[0, 1])
    acc_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                         instr_shape=[16, BLOCK_B, 16])
    # (16 units, BLOCK_B rows): each thread one batch row and 16 * BLOCK_B / 128 consecutive units,
    # so every buffer is addressed by one pointer per thread plus a constant, and accessed in vectors;
    # the warps split the batch rows, or with LOCAL_GATES the units (warp w: units 4w .. 4w+3, the
    # gates its accumulator holds)
    UNIT_WARPS: gl.constexpr = 4 if LOCAL_GATES else 1
    ROWS_PER_WARP: gl.constexpr = BLOCK_B * UNIT_WARPS // 4
    tile_layout: gl.constexpr = gl.BlockedLayout(size_per_thread=[_UNITS // UNIT_WARPS // (32 // ROWS_PER_WARP), 1],
                                                 threads_per_warp=[32 // ROWS_PER_WARP, ROWS_PER_WARP],
                                                 warps_per_cta=[UNIT_WARPS, 4 // UNIT_WARPS], order=[0, 1])

    pid_h = gl.program_id(0)
    pid_b = gl.program_id(1)
    direction = gl.program_id(2) + first_direction
    b_pad = gl.num_programs(1) * BLOCK_B
    xg_ptr += direction.to(gl.int64) * T * B * 4 * H
    c0_ptr += direction * B * H
    c_n_ptr += direction * B * H
    c_all_ptr += direction.to(gl.int64) * T * B * H
    y_ptr += direction * H
    exchange_ptr += direction * (COMPACT_SLOTS if TAGGED else 2) * b_pad * H_PAD
    flags_ptr = sync_ptr + (pid_b + direction * gl.num_programs(1)) * SYNC_ROW
    exchange_row = direction * 2 * b_pad + pid_b * BLOCK_B
    row0 = direction * 4 * H + pid_h * (4 * _UNITS if LOCAL_GATES else _UNITS)
    if TRACE:
        program = (direction * gl.num_programs(1) + pid_b) * gl.num_programs(0) + pid_h
        trace_ptr += program.to(gl.int64) * T * ev.EVENT_COUNT

    w_smem = gl.allocate_shared_memory(dtype, [max(SHARED_TILES, 1), 4 * _UNITS, _K_TILE], w_desc.layout)
    # the state: one (PER_COPY, BLOCK_B, 64) buffer per TMA copy, whose tiles the MMAs read through
    # a view in the operand layout of one (BLOCK_B, 64) tile (_with_layout; 128-byte swizzle)
    if TAGGED:
        h_smem = ()
        for k in gl.static_range(K_TILES):
            h_smem = h_smem + (gl.allocate_shared_memory(dtype, [BLOCK_B, _K_TILE], _TILE_LAYOUT),)
    else:
        h_smem = gl.allocate_shared_memory(dtype, [COPIES, PER_COPY, BLOCK_B, _K_TILE], ex_desc.layout)
    gates_smem = gl.allocate_shared_memory(gl.float32, [4 * _UNITS, BLOCK_B], scratch_layout)
    # mbarriers: one per state copy, then the weights'
    bars = gl.allocate_shared_memory(gl.int64, [COPIES + 1, 1], mbarrier.MBarrierLayout())
    for j in gl.static_range(COPIES + 1):
        if TAGGED and j < COPIES:  # one copy, announced by every loader warp
            mbarrier.init(bars.index(j), count=LOADERS)
        else:
            mbarrier.init(bars.index(j), count=1)
    if TAGGED:  # the recurrence has read the state and published its words: the loader may store the next one
        read_bar = gl.allocate_shared_memory(gl.int64, [1, 1], mbarrier.MBarrierLayout())
        mbarrier.init(read_bar.index(0), count=1)
        h_free = read_bar.index(0)
    else:  # not used
        h_free = bars.index(COPIES)
    if FUSED:
        wih_smem = gl.allocate_shared_memory(dtype, [INPUT_TILES, 4 * _UNITS, _K_TILE], wih_desc.layout)
        x_smem = gl.allocate_shared_memory(dtype, [INPUT_COPIES, INPUT_PER_COPY, BLOCK_B, _K_TILE], x_desc.layout)
        xp_smem = gl.allocate_shared_memory(gl.float32, [INPUT_STAGES, 4 * _UNITS, BLOCK_B], scratch_layout)
        # W_ih's mbarrier, one per input copy, each stage's "full" then each stage's "empty" (separate
        # allocations: Triton 3.6 cannot index a slice of one)
        wih_bar = gl.allocate_shared_memory(gl.int64, [1, 1], mbarrier.MBarrierLayout())
        x_bars = gl.allocate_shared_memory(gl.int64, [INPUT_COPIES, 1], mbarrier.MBarrierLayout())
        xp_bars = gl.allocate_shared_memory(gl.int64, [2 * INPUT_STAGES, 1], mbarrier.MBarrierLayout())
        mbarrier.init(wih_bar.index(0), count=1)
        for j in gl.static_range(INPUT_COPIES):
            mbarrier.init(x_bars.index(j), count=1)
        for j in gl.static_range(2 * INPUT_STAGES):
            mbarrier.init(xp_bars.index(j), count=1)
    fence_async_shared()
    _load_weights(w_desc, w_smem, bars.index(COPIES), 0, row0, _UNITS if LOCAL_GATES else H, SHARED_TILES)
    if FUSED:
        gl.warp_specialize([
            (_recurrence, (xg_ptr, w_ptr, w_stride, c0_ptr, y_ptr, c_all_ptr, c_n_ptr, exchange_ptr, ex_desc,
                           lengths_ptr, flags_ptr, w_smem, h_smem, gates_smem, xp_smem, bars, xp_bars,
                           h_free, T, B, H, row0, exchange_row, b_pad, direction, acc_layout,
                           tile_layout, BLOCK_B, H_PAD, TRAINING, DIRECTIONS, HAS_LENGTHS, POLL, POLL_ORDER, PER_COPY,
                           REGISTER_TILES, GRID_SYNC, True, INPUT_STAGES, False, 1, trace_ptr, TRACE, None, 0, False,
                           POLL_FIRST_WARP)),
            (_input_projection, (x_desc, wih_desc, bias_ptr, wih_smem, x_smem, xp_smem, x_bars, xp_bars,
                                 wih_bar.index(0), T, B, H, row0, pid_b * BLOCK_B, direction, acc_layout, BLOCK_B,
                                 DIRECTIONS, INPUT_TILES, INPUT_PER_COPY, INPUT_STAGES)),
        ], [4], [INPUT_WARP_REGISTERS])
    else:
        # one allocation per gate: with one (4, 16, BLOCK_B) buffer Triton 3.6 put a CTA barrier between
        # the cp.async copies into its different gates (3 per step; 12 -> 9 at H=768, Triton 3.9: 9 either way)
        xg_smem = ()
        for gate in gl.static_range(4):
            xg_smem = xg_smem + (gl.allocate_shared_memory(dtype, [_UNITS, BLOCK_B], scratch_layout),)
        # the recurrence and its loaders (LOADERS partitions; their arguments but the loader's index alike). The
        # recurrence's arguments are written out in both calls: Gluon takes a partition's arguments as a
        # literal tuple only (a tuple in a variable, or one built by +, cannot carry the constexpr layouts)
        if TAGGED:
            if LOADERS == 4:
                gl.warp_specialize([
                    (_recurrence, (xg_ptr, w_ptr, w_stride, c0_ptr, y_ptr, c_all_ptr, c_n_ptr, exchange_ptr, ex_desc,
                                   lengths_ptr, flags_ptr, w_smem, h_smem, gates_smem, xg_smem, bars, bars, h_free, T,
                                   B, H, row0, exchange_row, b_pad, direction, acc_layout, tile_layout, BLOCK_B, H_PAD,
                                   TRAINING, DIRECTIONS, HAS_LENGTHS, POLL, POLL_ORDER, STATE_PER_COPY, REGISTER_TILES,
                                   GRID_SYNC, False, 1, True, MMA_CHAINS, trace_ptr, TRACE, xg_flags_ptr, XG_CHUNK,
                                   LOCAL_GATES)),
                    (_tagged_loader, (exchange_ptr, flags_ptr, h_smem, bars, h_free, T, b_pad, pid_b, BLOCK_B, H_PAD,
                                      LOADERS, 0, POLL_DELAY_NS, trace_ptr, TRACE, 0, THREAD_POLL)),
                    (_tagged_loader, (exchange_ptr, flags_ptr, h_smem, bars, h_free, T, b_pad, pid_b, BLOCK_B, H_PAD,
                                      LOADERS, 1, POLL_DELAY_NS, None, False, 0, THREAD_POLL)),
                    (_tagged_loader, (exchange_ptr, flags_ptr, h_smem, bars, h_free, T, b_pad, pid_b, BLOCK_B, H_PAD,
                                      LOADERS, 2, POLL_DELAY_NS, None, False, 0, THREAD_POLL)),
                    (_tagged_loader, (exchange_ptr, flags_ptr, h_smem, bars, h_free, T, b_pad, pid_b, BLOCK_B, H_PAD,
                                      LOADERS, 3, POLL_DELAY_NS, None, False, 0, THREAD_POLL)),
                ], [1] * 4, [LOADER_WARP_REGISTERS] * 4)
            else:
                gl.warp_specialize([
                    (_recurrence, (xg_ptr, w_ptr, w_stride, c0_ptr, y_ptr, c_all_ptr, c_n_ptr, exchange_ptr, ex_desc,
                                   lengths_ptr, flags_ptr, w_smem, h_smem, gates_smem, xg_smem, bars, bars, h_free, T,
                                   B, H, row0, exchange_row, b_pad, direction, acc_layout, tile_layout, BLOCK_B, H_PAD,
                                   TRAINING, DIRECTIONS, HAS_LENGTHS, POLL, POLL_ORDER, STATE_PER_COPY, REGISTER_TILES,
                                   GRID_SYNC, False, 1, True, MMA_CHAINS, trace_ptr, TRACE, xg_flags_ptr, XG_CHUNK,
                                   LOCAL_GATES)),
                    (_tagged_loader, (exchange_ptr, flags_ptr, h_smem, bars, h_free, T, b_pad, pid_b, BLOCK_B, H_PAD,
                                      LOADERS, 0, POLL_DELAY_NS, trace_ptr, TRACE,
                                      STATE_PER_COPY if GROUPS > 1 else 0, THREAD_POLL)),
                ], [LOADER_WARPS], [LOADER_WARP_REGISTERS])
        else:
            _recurrence(xg_ptr, w_ptr, w_stride, c0_ptr, y_ptr, c_all_ptr, c_n_ptr, exchange_ptr, ex_desc, lengths_ptr,
                        flags_ptr, w_smem, h_smem, gates_smem, xg_smem, bars, bars, h_free, T, B, H,
                        row0, exchange_row, b_pad, direction, acc_layout, tile_layout, BLOCK_B, H_PAD, TRAINING,
                        DIRECTIONS, HAS_LENGTHS, POLL, POLL_ORDER, PER_COPY, REGISTER_TILES, GRID_SYNC, False, 1,
                        False, 1, trace_ptr, TRACE, xg_flags_ptr, XG_CHUNK, False, POLL_FIRST_WARP)
    for j in gl.static_range(COPIES + 1):
        mbarrier.invalidate(bars.index(j))
    if TAGGED:
        mbarrier.invalidate(h_free)
    if FUSED:
        mbarrier.invalidate(wih_bar.index(0))
        for j in gl.static_range(INPUT_COPIES):
            mbarrier.invalidate(x_bars.index(j))
        for j in gl.static_range(2 * INPUT_STAGES):
            mbarrier.invalidate(xp_bars.index(j))


# ---- host side ---------------------------------------------------------------------------------------

def state_box(plan) -> list[int]:
    """The exchange's TMA box: ``(tiles per copy, BLOCK_B rows, 64 columns)``."""
    return [gluon_state_copies(plan.h_pad)[1], plan.block_b, K_TILE]


def state_tiles(exchange: torch.Tensor, h_pad: int) -> torch.Tensor:
    """The exchange ``(D, 2, B_pad, h_pad)`` as ``(h_pad/64, D*2*B_pad, 64)`` column tiles (strides
    ``(64, h_pad, 1)``): element ``[k, row, x]`` is column ``k*64 + x`` of that row, and a TMA box
    of :func:`state_box` lands whole tiles one after another. A view: TMA must read the buffer."""
    return exchange.view(-1, h_pad // K_TILE, K_TILE).permute(1, 0, 2)


def input_box(plan) -> list[int]:
    """The fused input's TMA box: ``(tiles per copy, BLOCK_B rows, 64 columns)``, the tiles per copy
    as the state's (:func:`rnnbench.kernels.plan.gluon_state_copies` of the input's tiles)."""
    return [gluon_state_copies(max(plan.input_tiles, 1) * K_TILE)[1], plan.block_b, K_TILE]


def input_tiles(x: torch.Tensor) -> torch.Tensor:
    """The input ``x (T, B, I)`` (contiguous, I a multiple of 64) as ``(I/64, T*B, 64)`` column
    tiles, as :func:`state_tiles` views the exchange: a box of :func:`input_box` at row ``t*B + b``
    lands the tiles of rows ``[b, b + BLOCK_B)`` of step t one after another (rows past the last
    step's come back zero; rows past B within a step are the next step's, which only the padding
    rows of the batch block read)."""
    return x.view(-1, x.shape[-1] // K_TILE, K_TILE).permute(1, 0, 2)


def descriptors(plan, w_rows: torch.Tensor, exchange: torch.Tensor, x: torch.Tensor | None = None,
                w_ih_rows: torch.Tensor | None = None):
    """TMA descriptors of the weight rows ``(D, 4H, w_stride)`` viewed ``(D*4H, w_stride)`` (box 16 x
    64), of the exchange's :func:`state_tiles` (box :func:`state_box`) and, for a fused input
    projection (``plan.input_tiles``), of the input's :func:`input_tiles` (box :func:`input_box`)
    and of ``W_ih``'s rows ``(D, 4H, I)`` as the weights' (else None, None)."""
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    views = [(w_rows.view(-1, w_rows.shape[-1]), [UNITS, K_TILE]), (state_tiles(exchange, plan.h_pad), state_box(plan))]
    if plan.input_tiles:
        views += [(input_tiles(x), input_box(plan)), (w_ih_rows.view(-1, w_ih_rows.shape[-1]), [UNITS, K_TILE])]
    descs = [TensorDescriptor(view, list(view.shape), list(view.stride()), box, shared_layout(box, view.dtype))
             for view, box in views]
    return descs + [None] * (4 - len(descs))


def fused_input_arguments(x: torch.Tensor, w_ih: torch.Tensor, b_ih: torch.Tensor | None,
                          b_hh: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What :func:`run_forward` needs to fuse the input projection: ``x (T, B, I)`` contiguous,
    ``W_ih (D, 4H, I)`` contiguous and the summed bias ``b_ih + b_hh`` in float32, ``(D*4H,)``
    (zeros without biases)."""
    directions, width, _ = w_ih.shape
    if b_ih is None:
        bias = torch.zeros(directions * width, dtype=torch.float32, device=x.device)
    else:
        bias = (b_ih.float() + b_hh.float()).reshape(-1)
    return x.contiguous(), w_ih.contiguous(), bias


def local_gate_rows(w_rows: torch.Tensor) -> torch.Tensor:
    """``W_hh``'s rows ``(D, 4H, w_stride)``, gate-major (row ``G*H + j``: gate G of unit j), reordered
    for the warp-local gate split (``LOCAL_GATES``): program p's 64 rows from row ``64p``, row
    ``64p + 16w + 4G + u`` gate G of unit ``16p + 4w + u``, so that warp w's 16 accumulator rows hold
    the four gates of units ``4w .. 4w+3`` (a copy; H a multiple of 16, as the Gluon path's)."""
    directions, rows, width = w_rows.shape
    hidden = rows // 4
    if rows % 4 or hidden % UNITS:
        raise ValueError(f"the warp-local gate split needs 4H rows with H a multiple of {UNITS}, got {rows} rows")
    return (w_rows.view(directions, 4, hidden // UNITS, 4, UNITS // 4, width).permute(0, 2, 3, 1, 4, 5)
            .reshape(directions, rows, width))


def _switch_constexprs(tagged: bool) -> dict:
    """The kernel's constexprs the switches decide. Whether the grid barrier is polled by each
    program's first warp alone (:func:`rnnbench.kernels.switches.first_warp_polls`; never with the
    exchange, which has no grid barrier). The tagged exchange's: on or off, its loaders' poll delay as
    :func:`rnnbench.kernels.switches.tagged_poll_delay` sets it (0 without the exchange) and their
    partitions as :func:`rnnbench.kernels.switches.tagged_loaders` sets them, the recurrence's MMA
    chains as :func:`rnnbench.kernels.switches.mma_chains` does, the loader's groups as
    :func:`rnnbench.kernels.switches.tagged_groups` does (1 each without the exchange), whether its
    threads poll alone as :func:`rnnbench.kernels.switches.tagged_thread_poll` says and whether the
    recurrence splits its gates inside each warp as :func:`rnnbench.kernels.switches.local_gates` says."""
    return {"TAGGED": tagged, "POLL_DELAY_NS": switches.GLUON_TAGGED_POLL_DELAY_NS if tagged else 0,
            "LOADERS": switches.GLUON_TAGGED_LOADERS if tagged else 4,
            "MMA_CHAINS": switches.GLUON_MMA_CHAINS if tagged else 1,
            "GROUPS": switches.GLUON_TAGGED_GROUPS if tagged else 1,
            "THREAD_POLL": switches.GLUON_TAGGED_THREAD_POLL and tagged,
            "LOCAL_GATES": switches.GLUON_LOCAL_GATES and tagged,
            "POLL_FIRST_WARP": switches.GRID_POLL_FIRST_WARP and not tagged}


def run_forward(plan, xg, w_rows, c0, y, c_all, c_n, exchange, lengths, sizes: tuple[int, int, int], training: bool,
                has_lengths: bool, grid_sync: bool = True, fused_input=None, hidden_blocks: int | None = None,
                sync: torch.Tensor | None = None, trace: torch.Tensor | None = None,
                input_flags: torch.Tensor | None = None, input_chunk: int = 0) -> None:
    """Launch :func:`lstm_forward_gluon_kernel` following ``plan`` (a :func:`rnnbench.kernels.plan.plan_gluon`
    plan) on the buffers of :func:`rnnbench.kernels.lstm_kernels.lstm_forward_kernel` (``w_rows``:
    :func:`rnnbench.kernels.launch.aligned_weight_rows`; ``sizes``: ``(T, B, H)``). Cooperative
    launches, checked for barrier timeouts as :func:`rnnbench.kernels.launch.run_phases` does.
    ``grid_sync=False``: without the grid barrier (garbage results; the step ablation's timing of
    the step's own chain, :mod:`rnnbench.kernels.step_bench`).

    Where ``plan.input_tiles`` is not 0 the kernel projects the input itself: ``fused_input`` is
    :func:`fused_input_arguments`' ``(x, W_ih, bias)``, ``xg`` the training forward's gate output
    ``(D, T, B, 4H)`` (an inference forward passes None), and ``has_lengths`` must be false.

    Within :func:`rnnbench.kernels.switches.tagged_exchange` the kernel exchanges its state as compact
    words where the plan allows it on this GPU (:func:`rnnbench.kernels.plan.tagged_exchange_refusal`)
    and every row runs every step: ``exchange`` is then copied into the compact exchange
    (:func:`rnnbench.kernels.tagged_exchange.compact_state`: ``h0`` in its third slot, the two others
    stale), which the kernel uses instead.

    ``hidden_blocks``: launch only the plan's first ``hidden_blocks`` hidden blocks (a test of the
    tagged exchange's timeout: the words of the others never come; garbage results). ``sync``: the
    caller's synchronisation buffer (:func:`rnnbench.kernels.launch.sync_buffer` of ``plan``), reset
    here, whose counters the caller may read after the launch (the tagged exchange's extra polls,
    :data:`~rnnbench.kernels.primitives.EXTRA_POLLS_SLOT`); by default a fresh one. ``trace``: the
    traced kernel (``TRACE``) writes every step's timestamps there, int64 ``(P, T, EVENT_COUNT)``
    (:func:`rnnbench.kernels.step_trace.trace_buffer`). ``input_flags``, ``input_chunk``: ``xg`` is
    being projected beside the kernel (:class:`rnnbench.kernels.overlapped_projection.OverlappedProjection`),
    each chunk of ``input_chunk`` steps announced by its int32 flag (one direction, no lengths, not
    fused)."""
    from rnnbench.kernels.launch import _watch_barriers, check_barriers, reset_sync, sync_buffer

    if sizes[0] < 1:  # the kernel prefetches step 0 and arms its copies before the loop
        raise ValueError(f"the Gluon LSTM forward needs at least one time step, got T={sizes[0]}")
    if plan.input_tiles and (fused_input is None or has_lengths):
        raise ValueError("a plan with a fused input projection (input_tiles > 0) needs fused_input=(x, W_ih, bias) "
                         f"and no lengths; got fused_input={'None' if fused_input is None else 'given'}, "
                         f"has_lengths={has_lengths}")
    if xg is None and (training or not plan.input_tiles):
        raise ValueError("xg may be None only for an inference forward with a fused input projection (the training "
                         f"forward writes its gates there); got training={training}, input_tiles={plan.input_tiles}")
    x, w_ih, bias = fused_input if plan.input_tiles else (None, None, None)
    if input_flags is not None:
        chunks = -(-sizes[0] // input_chunk) if input_chunk > 0 else 0
        if input_chunk < 1 or input_flags.dtype != torch.int32 or input_flags.numel() < chunks:
            raise ValueError(f"input_flags must be int32 with a flag per chunk of input_chunk >= 1 steps (T={sizes[0]}), "
                             f"got input_chunk={input_chunk} and {input_flags.dtype} of {input_flags.numel()}")
        if plan.directions != 1 or has_lengths or plan.input_tiles:
            raise ValueError("the overlapped projection's flags need one direction, no lengths and no fused input; got "
                             f"{plan.directions} directions, has_lengths={has_lengths}, input_tiles={plan.input_tiles}")
    if trace is not None:
        expected = (plan.grid[0] * plan.grid[1] * plan.directions, sizes[0], len(ev.EVENTS))
        if tuple(trace.shape) != expected or trace.dtype != torch.int64:
            raise ValueError(f"trace must be int64 {expected} (programs, T, events), got {trace.dtype} "
                             f"{tuple(trace.shape)}")
    if not torch.cuda.is_current_stream_capturing():
        check_barriers()
    sync = sync_buffer(plan, y.device) if sync is None else reset_sync(sync, plan.grid[0])
    tagged = not has_lengths and gluon_tagged_exchange(
        plan, torch.cuda.get_device_properties(y.device).multi_processor_count, training=training)
    if _switch_constexprs(tagged)["LOCAL_GATES"]:
        w_rows = local_gate_rows(w_rows)
    w_desc, ex_desc, x_desc, wih_desc = descriptors(plan, w_rows, exchange, x, w_ih)
    state = compact_state(exchange) if tagged else exchange
    grid = plan.launch_grid if hidden_blocks is None else (hidden_blocks, *plan.launch_grid[1:])
    for first_direction in range(0, plan.directions, plan.launch_directions):
        lstm_forward_gluon_kernel[grid](
            y if xg is None else xg, w_rows, w_desc, c0, y, c_all, c_n, state, ex_desc, lengths, sync, x_desc,
            wih_desc, bias, trace, input_flags, *sizes, w_rows.stride(-2), first_direction, BLOCK_B=plan.block_b,
            H_PAD=plan.h_pad,
            TRAINING=training, DIRECTIONS=plan.directions, HAS_LENGTHS=has_lengths, POLL=plan.poll,
            POLL_ORDER=POLL_ORDERS[plan.poll_order], PER_COPY=state_box(plan)[0], REGISTER_TILES=plan.register_tiles,
            GRID_SYNC=grid_sync, INPUT_TILES=plan.input_tiles, INPUT_PER_COPY=input_box(plan)[0],
            **_switch_constexprs(tagged),
            TRACE=trace is not None, XG_CHUNK=input_chunk if input_flags is not None else 0, num_warps=plan.num_warps,
            maxnreg=plan.max_registers,
            launch_cooperative_grid=True)
    _watch_barriers(sync, f"{lstm_forward_gluon_kernel.__name__} (grid {grid}, T={sizes[0]})")


def compile_forward(plan, dtype: torch.dtype, training: bool, has_lengths: bool, arch: int = 90,
                    grid_sync: bool = True, trace: bool = False, input_chunk: int = 0):
    """``triton.compile`` of the kernel ``plan`` launches, for ``sm_<arch>`` without a GPU, specialised
    as at run time: pointers 16-byte aligned (every buffer the layer passes is) and ``H`` divisible
    by 16 (the only hidden sizes :func:`rnnbench.kernels.plan.plan_gluon` accepts); ``grid_sync``
    as :func:`run_forward`'s; the tagged exchange where :func:`rnnbench.kernels.plan.gluon_tagged_exchange`
    says (without lengths); ``trace``: the traced kernel (``TRACE``, :mod:`rnnbench.kernels.step_trace`);
    ``input_chunk``: polling the overlapped projection's flags every that many steps (``XG_CHUNK``)."""
    from triton.backends.compiler import GPUTarget
    from triton.experimental.gluon._runtime import GluonASTSource

    data = {torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    tagged = gluon_tagged_exchange(plan, compiled=True, training=training) and not has_lengths
    boxes = {"w_desc": [UNITS, K_TILE], "ex_desc": state_box(plan)}
    pointers = {"xg_ptr": data, "w_ptr": data, "c0_ptr": data, "y_ptr": data, "c_all_ptr": "fp32", "c_n_ptr": "fp32",
                "exchange_ptr": data, "lengths_ptr": "i32", "sync_ptr": "i32"}
    absent = {}  # arguments passed as None (specialised as constants by Triton)
    if trace:
        pointers["trace_ptr"] = "i64"
    else:
        absent["trace_ptr"] = None
    if input_chunk:
        pointers["xg_flags_ptr"] = "i32"
    else:
        absent["xg_flags_ptr"] = None
    if plan.input_tiles:
        boxes.update({"x_desc": input_box(plan), "wih_desc": [UNITS, K_TILE]})
        pointers["bias_ptr"] = "fp32"
    else:
        absent.update(dict.fromkeys(("x_desc", "wih_desc", "bias_ptr")))
    fn = lstm_forward_gluon_kernel
    signature = {}
    for name in fn.arg_names:
        if name in boxes:
            box = boxes[name]
            signature[name] = f"tensordesc<{data}[{', '.join(map(str, box))}],{shared_layout(box, dtype)!r}>"
        elif name in pointers:
            signature[name] = "*" + pointers[name]
        elif name in ("T", "B", "H", "w_stride", "first_direction"):
            signature[name] = "i32"
    constexprs = {"BLOCK_B": plan.block_b, "H_PAD": plan.h_pad, "TRAINING": training, "DIRECTIONS": plan.directions,
                  "HAS_LENGTHS": has_lengths, "POLL": plan.poll, "POLL_ORDER": POLL_ORDERS[plan.poll_order],
                  "PER_COPY": state_box(plan)[0], "REGISTER_TILES": plan.register_tiles, "GRID_SYNC": grid_sync,
                  "INPUT_TILES": plan.input_tiles, "INPUT_PER_COPY": input_box(plan)[0], **_switch_constexprs(tagged),
                  "TRACE": trace, "XG_CHUNK": input_chunk, **absent}
    signature.update({name: "constexpr" for name in constexprs})
    attrs = {(fn.arg_names.index(name),): [["tt.divisibility", 16]] for name, kind in signature.items()
             if kind.startswith("*") or name in ("H", "w_stride")}
    options = {"num_warps": plan.num_warps, "maxnreg": plan.max_registers, "launch_cooperative_grid": True}
    return triton.compile(GluonASTSource(fn, signature, constexprs=constexprs, attrs=attrs),
                          target=GPUTarget("cuda", arch, 32), options=options)
