"""A Gluon kernel of the LSTM reverse-time recurrence (the backward) for sm_90: the ``gluon`` backward.

It computes exactly what :func:`rnnbench.kernels.lstm_kernels.lstm_backward_kernel` computes in
``COOPERATIVE`` mode, with the same buffers (the saved gates in ``xg`` turned into ``dgates`` in
place, ``c_all``, ``dy``, the exchange of gate gradients, whose columns it orders by producer, and
the synchronisation buffer, see :mod:`rnnbench.kernels.lstm_kernels`), the same grid barrier and
the same handling of directions and per-row lengths. What differs is how a step's product

    dh (16 units x BLOCK_B rows) = W_hh[:, units]^T (16 x 4H) . dgates_{s+1}^T (4H x BLOCK_B)

gets its operands. The plain kernel loads the gate gradients of the step after into registers a
few chunks ahead (``LOOKAHEAD_BYTES``, 16 KiB), stores them to shared memory and reads them back
in the MMA's layout behind a CTA barrier: per warp and step at H=768, B=16 (Triton 3.6) 32 shared
stores, 48 ``ldmatrix`` and 14 CTA barriers, and only 16 KiB in flight of the 96 KiB it reads
from L2. Here:

* **The weights are resident in registers** for the whole sequence: the program's 16 units' columns
  of ``W_hh``, transposed on the host into rows of ``4 * H_PAD`` (:func:`transposed_weights`: gate
  g's weights in columns ``g*H_PAD + [0, H)``, the exchange's gate blocks, zero beyond), are loaded
  once by TMA into shared memory in the copies' layout below and from there into the MMA's operand
  registers (96 per thread at H=768). A step reads only the gate gradients from shared memory; with
  the weights there too it would read 96 KiB more (about 0.4 µs of the SM's shared-memory
  bandwidth at H=768, B=16 in the cost model).
* **The gate gradients come by TMA** straight into shared memory, ``SPLIT`` tiles of
  ``(BLOCK_B, 64)`` per copy (a 3-D box of the exchange viewed ``(tile, row, column)``), all of a
  step's copies in flight at once where shared memory holds them, else in a ring of ``STAGES``
  buffers that are refilled as the MMAs free them (:func:`rnnbench.kernels.plan.gluon_backward_stages`);
  each copy completes on its own mbarrier, armed right after the program's arrival at the grid
  barrier. No register staging, no shared stores.
* **Split-K over the warps as a batched MMA** (``mma_v2``, rank 3, operands by ``ldmatrix``: the
  dot-operand layout's ``k_width`` is 2, two 16-bit elements per 32-bit register; with 8 the
  compiler read them with ``LDS.128`` and shuffled 300 registers per step): warp w multiplies tile
  ``j * SPLIT + w`` of every copy j, M = 16 units (a whole ``m16n8k16`` tile, no padding), N =
  ``BLOCK_B`` rows; the ``SPLIT`` partial products are summed once at the end, each thread adding
  the partials of its own elements from a shared scratch (one CTA barrier; ``gl.sum`` over the warp
  axis compiled to two rounds of shuffles and five barriers). Hopper's warpgroup MMA needs M = 64
  (64 units: a 384-KiB weight slice at H=768), so Ampere's MMA it is.

* **The exchange's columns are producer-major**: program p's 64 gate gradients of a row (gates i,
  f, g, o of its 16 units) are the 64-column tile p, so a copy of ``SPLIT`` tiles holds ``SPLIT``
  producers' gradients (the plain kernel's columns are gate-major).
* **Streamed copies** (``STREAMED``, :func:`rnnbench.kernels.plan.gluon_streamed_copies`; off by
  default, never run on a GPU): a copier warp (:func:`_copier`, ``gl.warp_specialize``) polls the
  producers' flags and issues each copy as soon as its own ``SPLIT`` producers have arrived, and the
  recurrence (:func:`_reverse_steps`) multiplies each copy as soon as it lands, without waiting for
  the grid barrier: the same copies multiplied in the same order, so the same gradients bit for bit.

The elementwise part (dy, the saved gates and cell states, loaded a step ahead into registers),
the barrier (release flags, poll in ``POLL_ORDER``, timeout, status word: the
forward's :func:`rnnbench.kernels.gluon_primitives.barrier_arrive` / ``barrier_wait``, with the proxy
fences that order the other programs' ordinary stores before this program's TMA reads) are the
plain kernel's. Float32 accumulation and elementwise math; the gate gradients are rounded to the
storage dtype where the plain kernel rounds them.

Limits (:func:`rnnbench.kernels.plan.plan_gluon` with ``backward=True``): sm_90, 16-bit storage,
``H >= 256`` divisible by 16 (``H_PAD``: a multiple of 128, so that the ``4 * H_PAD / 64`` tiles are
whole copies of ``SPLIT = 8``), batch blocks of at most 32 rows, the grid co-resident (one program
per SM). ``auto`` takes it for every 16-bit LSTM it can plan (:func:`rnnbench.kernels.plan.prefers_gluon_backward`,
measured faster on an H200). Gluon does not run in the Triton interpreter:
the plain backward is the reference it is tested against (``tests/test_kernels_gpu.py``, GPU only);
ahead of time it is compiled for sm_90 with Triton 3.6 and 3.9 (``tests/test_gluon_aot.py``).
"""

from __future__ import annotations

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language._core import builtin as _gluon_builtin
from triton.experimental.gluon.language.nvidia.ampere import mma_v2
from triton.experimental.gluon.language.nvidia.hopper import fence_async_shared, mbarrier

from rnnbench.kernels.gluon_lstm import shared_layout
from rnnbench.kernels.gluon_primitives import (
    FLAG_SLOTS, SYNC_ROW, acquire_for_tma, arrived_groups, barrier_arrive, barrier_wait, cta_barrier, globaltimer,
    program_tile, running_rows, status_after_poll, time_index, tma_load,
)
from rnnbench.kernels.lstm_kernels import _backward_inputs, gate_gradients
from rnnbench.kernels import switches
from rnnbench.kernels.plan import (
    GLUON_BACKWARD_SPLIT, GLUON_BLOCK_H, GLUON_K_TILE, REGISTER_FILE, gluon_backward_stages, gluon_streamed_copies,
)
from rnnbench.kernels.primitives import POLL_ORDERS, _load_relaxed, final_state_gradient

UNITS, K_TILE, SPLIT = GLUON_BLOCK_H, GLUON_K_TILE, GLUON_BACKWARD_SPLIT

_UNITS: gl.constexpr = gl.constexpr(UNITS)
_K_TILE: gl.constexpr = gl.constexpr(K_TILE)
_SPLIT: gl.constexpr = gl.constexpr(SPLIT)
#: registers per thread of the streamed backward's copier warp (``setmaxnreg``): its flags, masks
#: and the copies' coordinates
COPIER_REGISTERS: gl.constexpr = gl.constexpr(64)
#: warps the copier's partition occupies: one, padded by Triton to a whole warpgroup
COPIER_WARPGROUP = 4

@_gluon_builtin
def _weight_view(stage, w_desc, _semantic=None):
    """The first ``(SPLIT, 16, 64)`` tiles' worth of a gate-gradient stage ``(SPLIT, BLOCK_B, 64)``
    seen in the weight descriptor's layout: where a copy of weights lands and is read (128-byte
    swizzle in both; the same bytes for ``BLOCK_B = 16``, their first half for 32)."""
    shape = [int(getattr(size, "value", size)) for size in w_desc.block_type.shape]
    layout = w_desc.layout
    return _semantic.memdesc_reinterpret(stage, stage.dtype, shape, getattr(layout, "value", layout))


@gluon.jit
def _arm_copies(g_desc, bars, STAGES: gl.constexpr):
    """Arm the mbarrier of each of the first ``STAGES`` copies of the next product for its bytes.

    Done right after this program's arrival at the grid barrier, as the forward arms its state
    copies (:func:`rnnbench.kernels.gluon_lstm._arm_copies`): Triton puts a CTA barrier
    before each arming, which there overlaps the release flag's way to the other programs instead
    of delaying the copies. Every thread has waited on the previous phase by then (the waits
    precede the reduction's CTA barrier)."""
    for j in gl.static_range(STAGES):
        mbarrier.expect(bars[j], g_desc.block_type.nbytes)


@gluon.jit
def _held_weights(w_desc, g_smem, bars, row, mma_layout: gl.constexpr, COPIES: gl.constexpr, STAGES: gl.constexpr):
    """This program's 16 rows ``row + [0, 16)`` of the transposed weights (:func:`transposed_weights`)
    as ``COPIES`` MMA operands ``(SPLIT, 16, 64)`` in registers, loaded once: copy j (tiles
    ``j * SPLIT + [0, SPLIT)``) by TMA into the first 16 rows of the gate-gradient stage
    ``j % STAGES`` (completing on ``bars[j % STAGES]``, the setup's own mbarriers), then by
    ``ldmatrix`` into registers; a stage is refilled once every warp has read it. Each step then
    reads only the gate gradients from shared memory, and no shared memory stays reserved for the
    weights, which leaves it to the ring of copies."""
    a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma_layout, k_width=2)
    for j in gl.static_range(STAGES):
        mbarrier.expect(bars[j], w_desc.block_type.nbytes)
        tma_load(w_desc, [j * _SPLIT, row, 0], bars[j], _weight_view(g_smem.index(j), w_desc))
    held = ()
    for j in gl.static_range(COPIES):
        mbarrier.wait(bars[j % STAGES], (j // STAGES) % 2)
        held = held + (_weight_view(g_smem.index(j % STAGES), w_desc).load(a_layout),)
        if j + STAGES < COPIES:
            cta_barrier()
            mbarrier.expect(bars[j % STAGES], w_desc.block_type.nbytes)
            tma_load(w_desc, [(j + STAGES) * _SPLIT, row, 0], bars[j % STAGES],
                      _weight_view(g_smem.index(j % STAGES), w_desc))
    cta_barrier()  # every warp has its weights before the stages take gate gradients
    return held


@gluon.jit
def _recurrent_gradient(g_desc, row, held, g_smem, scratch, bars, step_count, mma_layout: gl.constexpr,
                        tile_layout: gl.constexpr, BLOCK_B: gl.constexpr, COPIES: gl.constexpr,
                        STAGES: gl.constexpr):
    """``dh``'s recurrent part ``(16, BLOCK_B)`` float32 in ``tile_layout``: the gate gradients in
    the exchange rows ``row + [0, BLOCK_B)`` (all ``COPIES * SPLIT`` tiles) times the resident
    weights, through ``scratch`` (``(SPLIT, 16, BLOCK_B)`` float32) for the sum over the warps.

    The first ``STAGES`` copies (armed by :func:`_arm_copies`) are started at once; copy ``j`` waits
    for its own mbarrier, and the stage it used is refilled with copy ``j + STAGES`` once every
    warp has read it (a CTA barrier). ``step_count`` is how many products this launch ran before
    this one: stage i completes ``USES_i = ceil((COPIES - i) / STAGES)`` phases per product, so its
    u-th use of this product waits for parity ``(step_count * USES_i + u) % 2``."""
    b_layout: gl.constexpr = gl.DotOperandLayout(operand_index=1, parent=mma_layout, k_width=2)
    for j in gl.static_range(STAGES):
        tma_load(g_desc, [j * _SPLIT, row, 0], bars[j], g_smem.index(j))
    acc = gl.zeros([_SPLIT, _UNITS, BLOCK_B], gl.float32, mma_layout)
    for j in gl.static_range(COPIES):
        # stage j % STAGES, used (COPIES - j % STAGES + STAGES - 1) // STAGES times per product (its
        # USES; constexpr arithmetic, no names: Triton 3.9 refuses a constexpr assigned in an unrolled loop)
        mbarrier.wait(bars[j % STAGES],
                      (step_count * ((COPIES - j % STAGES + STAGES - 1) // STAGES) + j // STAGES) % 2)
        b = g_smem.index(j % STAGES).permute((0, 2, 1)).load(b_layout)  # (SPLIT, 64 gate rows, BLOCK_B)
        if j + STAGES < COPIES:
            cta_barrier()
            mbarrier.expect(bars[j % STAGES], g_desc.block_type.nbytes)
            tma_load(g_desc, [(j + STAGES) * _SPLIT, row, 0], bars[j % STAGES], g_smem.index(j % STAGES))
        acc = mma_v2(held[j], b, acc)  # (SPLIT, 16 units, 64 gate rows) x (SPLIT, 64, BLOCK_B)
    return _warp_sum(acc, scratch, tile_layout, BLOCK_B)


@gluon.jit
def _warp_sum(acc, scratch, tile_layout: gl.constexpr, BLOCK_B: gl.constexpr):
    """The sum over the warps of the split-K accumulator ``acc`` ``(SPLIT, 16, BLOCK_B)``, as
    ``(16, BLOCK_B)`` float32 in ``tile_layout``: each thread adds the ``SPLIT`` partial sums of its
    own elements from ``scratch`` (one CTA barrier)."""
    scratch.store(gl.reshape(acc, [_SPLIT * _UNITS, BLOCK_B]))
    cta_barrier()
    total = scratch.slice(0, _UNITS).load(tile_layout)
    for w in gl.static_range(1, _SPLIT):
        total += scratch.slice(w * _UNITS, _UNITS).load(tile_layout)
    return total


@gluon.jit
def _copier(g_desc, flags_ptr, g_smem, bars, g_free, T, exchange_row, b_pad, POLL: gl.constexpr,
            ORDER: gl.constexpr, COPIES: gl.constexpr):
    """The streamed backward's copier, one warp beside :func:`_reverse_steps` (``STREAMED``): for the
    products ``q = 0 .. T-1`` (of processing steps ``s = T-2 .. -1``, each reading the gate
    gradients of step ``s + 1``), once the recurrence has freed the stages (``g_free``: its weights
    read out of them before the first, the previous product's MMAs before every other), it polls
    every producer's flag (:func:`rnnbench.kernels.gluon_primitives.arrived_groups`) and issues
    each copy as soon as its own :data:`SPLIT` producers have reached ``q + 1`` (an acquire, the
    proxy fence, the arming and the TMA copy into the copy's own stage, on ``bars[copy]``), until
    every copy of the product is issued, rather than once every producer has (the grid barrier).
    A timeout (its own or another program's, in the status word) issues every remaining copy, so
    the recurrence's mbarrier waits do not hang; the launch then reports it, its results garbage.
    A warp of its own: its polls hold no CTA barrier of the recurrence's warps."""
    EVERY: gl.constexpr = (1 << COPIES) - 1
    lane = gl.arange(0, POLL if POLL < 32 else 32,
                     layout=gl.BlockedLayout(size_per_thread=[1], threads_per_warp=[32], warps_per_cta=[1], order=[0]))
    for q in range(0, T):
        later = exchange_row + ((T - 1 - q) % 2) * b_pad  # step s + 1 = T - 1 - q
        mbarrier.wait(g_free, q % 2)
        start = gl.max(globaltimer(lane), axis=0)
        issued = gl.max(lane, axis=0) * 0
        while issued != EVERY:
            status = gl.max(_load_relaxed(flags_ptr + FLAG_SLOTS + lane * 0), axis=0)
            arrived = arrived_groups(flags_ptr, lane, q + 1, POLL, ORDER, _SPLIT, COPIES)
            status = status_after_poll(flags_ptr, lane, q + 1, start, status, arrived != EVERY)
            if status != 0:
                arrived = EVERY + issued * 0
            newly = arrived & ~issued
            if newly != 0:
                acquire_for_tma(lane, ORDER)
                for k in gl.static_range(COPIES):
                    take = ((newly >> k) & 1) != 0
                    mbarrier.expect(bars[k], g_desc.block_type.nbytes, pred=take)
                    tma_load(g_desc, [k * _SPLIT, later, 0], bars[k], g_smem.index(k), pred=take)
            issued |= newly


@gluon.jit
def _streamed_gradient(held, g_smem, scratch, bars, g_free, step_count, mma_layout: gl.constexpr,
                       tile_layout: gl.constexpr, BLOCK_B: gl.constexpr, COPIES: gl.constexpr):
    """:func:`_recurrent_gradient` with the copies issued by :func:`_copier`: copy j (its own stage)
    multiplied as soon as it has landed, whichever copies are still on their way; then the stages
    are handed back (``g_free``). Each stage completes one phase per product: parity
    ``step_count % 2``."""
    b_layout: gl.constexpr = gl.DotOperandLayout(operand_index=1, parent=mma_layout, k_width=2)
    acc = gl.zeros([_SPLIT, _UNITS, BLOCK_B], gl.float32, mma_layout)
    for j in gl.static_range(COPIES):
        mbarrier.wait(bars[j], step_count % 2)
        b = g_smem.index(j).permute((0, 2, 1)).load(b_layout)  # (SPLIT, 64 gate rows, BLOCK_B)
        acc = mma_v2(held[j], b, acc)
    total = _warp_sum(acc, scratch, tile_layout, BLOCK_B)  # its CTA barrier: every warp has read every stage
    mbarrier.arrive(g_free)
    return total


@gluon.jit
def _reverse_steps(xg_ptr, w_desc, c_all_ptr, c0_ptr, dy_ptr, dh_n_ptr, dc_n_ptr, dh0_ptr, dc0_ptr, exchange_ptr,
                   lengths_ptr, flags_ptr, g_smem, scratch, bars, weight_bars, g_free, T, B, H, direction, b_pad,
                   BLOCK_B: gl.constexpr, H_PAD: gl.constexpr, DIRECTIONS: gl.constexpr, HAS_LENGTHS: gl.constexpr,
                   POLL: gl.constexpr, POLL_ORDER: gl.constexpr, STAGES: gl.constexpr, GRID_SYNC: gl.constexpr,
                   STREAMED: gl.constexpr, g_desc=None, exchange_row=None, POLL_FIRST_WARP: gl.constexpr = False):
    """The reverse-time recurrence of :func:`lstm_backward_gluon_kernel` in its ``SPLIT`` warps:
    the weights into registers, then every step's product, gate gradients, stores and arrival.
    ``STREAMED``: the default partition beside :func:`_copier`, which issues the copies (then
    ``g_desc`` and ``exchange_row`` are not needed here), handed the stages on ``g_free`` once the
    weights have left them and after every product; else the copies follow the grid barrier's wait
    (:func:`_recurrent_gradient`)."""
    GATE_TILES: gl.constexpr = H_PAD // _K_TILE
    COPIES: gl.constexpr = 4 * GATE_TILES // _SPLIT
    ROW_WIDTH: gl.constexpr = 4 * H_PAD
    dtype: gl.constexpr = xg_ptr.dtype.element_ty
    mma_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[2, 0], warps_per_cta=[_SPLIT, 1, 1],
                                                         instr_shape=[1, 16, 8])
    # (16 units, BLOCK_B rows): a warp holds 16 units of 2 rows, so each row's units are one
    # 32-byte (16-bit) or 64-byte (float32) access
    tile_layout: gl.constexpr = gl.BlockedLayout(size_per_thread=[1, BLOCK_B // (2 * _SPLIT)], threads_per_warp=[16, 2],
                                                 warps_per_cta=[1, _SPLIT], order=[0, 1])
    poll_layout: gl.constexpr = gl.BlockedLayout(size_per_thread=[1], threads_per_warp=[32], warps_per_cta=[_SPLIT],
                                                 order=[0])
    lane = gl.arange(0, POLL if POLL < 32 else 32, layout=poll_layout)

    pid_h = gl.program_id(0)
    unit_col, row_row, state_mask, state_offsets, gate_offsets, y_offsets, length = program_tile(
        lengths_ptr, T, B, H, tile_layout, BLOCK_B, DIRECTIONS, HAS_LENGTHS)
    xg_ptr += direction.to(gl.int64) * T * B * 4 * H
    c_all_ptr += direction.to(gl.int64) * T * B * H
    c0_ptr += direction * B * H
    dh_n_ptr += direction * B * H
    dc_n_ptr += direction * B * H
    dh0_ptr += direction * B * H
    dc0_ptr += direction * B * H
    dy_ptr += direction * H
    exchange_ptr += direction * 2 * b_pad * ROW_WIDTH
    # producer-major columns: program p's 64 (gate i, f, g, o x 16 units) at p*64, one 64-column
    # tile, so a copy of SPLIT tiles holds the gradients of SPLIT producers (:func:`transposed_weights`)
    write = row_row * ROW_WIDTH + unit_col + pid_h * (3 * _UNITS)

    held = _held_weights(w_desc, g_smem, weight_bars, direction * H + pid_h * _UNITS, mma_layout, COPIES, STAGES)
    if STREAMED:
        mbarrier.arrive(g_free)  # the stages are the copier's (its first product waits for this)

    dc_carry = gl.load(dc_n_ptr + state_offsets, mask=state_mask, other=0.0).to(gl.float32)
    inputs = _backward_inputs(xg_ptr, c_all_ptr, c0_ptr, dy_ptr, T - 1, T, B, H, length, direction, gate_offsets,
                              state_offsets, y_offsets, state_mask, DIRECTIONS, HAS_LENGTHS)
    for p in range(0, T + 1):
        s = T - 1 - p
        # the next step's inputs, loaded a whole step ahead (step -1 reads none: the last two
        # steps load step 0's)
        following = _backward_inputs(xg_ptr, c_all_ptr, c0_ptr, dy_ptr, gl.maximum(s - 1, 0), T, B, H, length,
                                     direction, gate_offsets, state_offsets, y_offsets, state_mask, DIRECTIONS,
                                     HAS_LENGTHS)
        if p == 0:
            dh = final_state_gradient(dh_n_ptr, state_offsets, state_mask, s, length, HAS_LENGTHS)
        else:
            if STREAMED:
                dh = _streamed_gradient(held, g_smem, scratch, bars, g_free, p - 1, mma_layout, tile_layout,
                                        BLOCK_B, COPIES)
            else:
                later = exchange_row + ((s + 1) % 2) * b_pad
                dh = _recurrent_gradient(g_desc, later, held, g_smem, scratch, bars, p - 1, mma_layout,
                                         tile_layout, BLOCK_B, COPIES, STAGES)
            if HAS_LENGTHS:
                dh += final_state_gradient(dh_n_ptr, state_offsets, state_mask, s, length, HAS_LENGTHS)
        if s < 0:
            gl.store(dh0_ptr + state_offsets, dh, mask=state_mask)
            gl.store(dc0_ptr + state_offsets, dc_carry, mask=state_mask)
        else:
            t = time_index(s, T, length, direction, DIRECTIONS, HAS_LENGTHS)
            running = running_rows(s, length, state_mask, HAS_LENGTHS)
            dc, f, di, df, dg, do = gate_gradients(dh, dc_carry, inputs, dtype)
            gates = xg_ptr + gl.cast(t, gl.int64) * B * 4 * H + gate_offsets
            gl.store(gates, di, mask=state_mask)
            gl.store(gates + H, df, mask=state_mask)
            gl.store(gates + 2 * H, dg, mask=state_mask)
            gl.store(gates + 3 * H, do, mask=state_mask)
            shared = exchange_ptr + (s % 2) * b_pad * ROW_WIDTH + write
            gl.store(shared, di, mask=unit_col < H)
            gl.store(shared + _UNITS, df, mask=unit_col < H)
            gl.store(shared + 2 * _UNITS, dg, mask=unit_col < H)
            gl.store(shared + 3 * _UNITS, do, mask=unit_col < H)
            if HAS_LENGTHS:
                dc_carry = gl.where(running, dc * f, dc_carry)
            else:
                dc_carry = dc * f
        barrier_arrive(flags_ptr, pid_h, lane, GRID_SYNC)
        if not STREAMED:
            if p < T:  # the next step multiplies
                _arm_copies(g_desc, bars, STAGES)
            barrier_wait(flags_ptr, gl.num_programs(0), p + 1, lane, POLL, POLL_ORDER, GRID_SYNC, POLL_FIRST_WARP)
        inputs = following


@gluon.jit(do_not_specialize=["T", "B", "first_direction"])
def lstm_backward_gluon_kernel(
    xg_ptr, w_desc, c_all_ptr, c0_ptr, dy_ptr, dh_n_ptr, dc_n_ptr, dh0_ptr, dc0_ptr, exchange_ptr, g_desc,
    lengths_ptr, sync_ptr, T, B, H, first_direction,
    BLOCK_B: gl.constexpr, H_PAD: gl.constexpr, DIRECTIONS: gl.constexpr, HAS_LENGTHS: gl.constexpr,
    POLL: gl.constexpr, POLL_ORDER: gl.constexpr, STAGES: gl.constexpr, GRID_SYNC: gl.constexpr = True,
    STREAMED: gl.constexpr = False, POLL_FIRST_WARP: gl.constexpr = False,
):
    """Reverse-time recurrence over steps ``s = T-1, ..., 0, -1`` (-1 writes ``dh0`` and ``dc0``,
    float32); program ``(pid_h, pid_b, direction)`` owns units ``pid_h*16 + [0, 16)`` of batch rows
    ``pid_b*BLOCK_B + [0, BLOCK_B)``. Buffers as
    :func:`rnnbench.kernels.lstm_kernels.lstm_backward_kernel`'s; ``w_desc``: TMA descriptor of
    :func:`transposed_weights` viewed ``(4*H_PAD/64, D*H, 64)``, box ``(SPLIT, 16, 64)``; ``g_desc``:
    of the exchange viewed ``(4*H_PAD/64, D*2*B_pad, 64)``, box ``(SPLIT, BLOCK_B, 64)``
    (:func:`descriptors`). ``GRID_SYNC=False`` (the step ablation's ``real_gluon_bwd_no_sync`` only)
    leaves out the grid barrier's release and poll: the step's own chain, timed, with garbage results.
    ``STREAMED`` (every copy in a stage of its own, ``STAGES == COPIES``; :func:`_streamed_gradient`):
    no wait after the arrival; each copy of the next product is issued once its own producers have
    arrived.
    """
    GATE_TILES: gl.constexpr = H_PAD // _K_TILE
    COPIES: gl.constexpr = 4 * GATE_TILES // _SPLIT
    dtype: gl.constexpr = xg_ptr.dtype.element_ty
    pid_b = gl.program_id(1)
    direction = gl.program_id(2) + first_direction
    b_pad = gl.num_programs(1) * BLOCK_B
    flags_ptr = sync_ptr + (pid_b + direction * gl.num_programs(1)) * SYNC_ROW
    exchange_row = direction * 2 * b_pad + pid_b * BLOCK_B

    g_smem = gl.allocate_shared_memory(dtype, [STAGES, _SPLIT, BLOCK_B, _K_TILE], g_desc.layout)
    scratch = gl.allocate_shared_memory(gl.float32, [_SPLIT * _UNITS, BLOCK_B],
                                        gl.SwizzledSharedLayout(vec=1, per_phase=1, max_phase=1, order=[1, 0]))
    # one mbarrier per stage for the gate gradients, and one per stage for the setup's weights, each its
    # own allocation: Triton 3.6 put a CTA barrier between accesses to different mbarriers of one
    # allocation (20 per step at H=768, B=16 with two arrays, 10 this way; Triton 3.9 12 either way)
    bars = ()
    weight_bars = ()
    for j in gl.static_range(STAGES):
        bars = bars + (gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout()),)
        weight_bars = weight_bars + (gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout()),)
    for j in gl.static_range(STAGES):
        mbarrier.init(bars[j], count=1)
        mbarrier.init(weight_bars[j], count=1)
    if STREAMED:
        g_free = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
        mbarrier.init(g_free, count=1)
        fence_async_shared()
        gl.warp_specialize([
            (_reverse_steps, (xg_ptr, w_desc, c_all_ptr, c0_ptr, dy_ptr, dh_n_ptr, dc_n_ptr, dh0_ptr, dc0_ptr,
                              exchange_ptr, lengths_ptr, flags_ptr, g_smem, scratch, bars, weight_bars, g_free, T, B,
                              H, direction, b_pad, BLOCK_B, H_PAD, DIRECTIONS, HAS_LENGTHS, POLL, POLL_ORDER, STAGES,
                              GRID_SYNC, STREAMED, None, None, POLL_FIRST_WARP)),
            (_copier, (g_desc, flags_ptr, g_smem, bars, g_free, T, exchange_row, b_pad, POLL, POLL_ORDER, COPIES)),
        ], [1], [COPIER_REGISTERS])
        mbarrier.invalidate(g_free)
    else:
        fence_async_shared()
        _reverse_steps(xg_ptr, w_desc, c_all_ptr, c0_ptr, dy_ptr, dh_n_ptr, dc_n_ptr, dh0_ptr, dc0_ptr, exchange_ptr,
                       lengths_ptr, flags_ptr, g_smem, scratch, bars, weight_bars, None, T, B, H, direction, b_pad,
                       BLOCK_B, H_PAD, DIRECTIONS, HAS_LENGTHS, POLL, POLL_ORDER, STAGES, GRID_SYNC, STREAMED,
                       g_desc, exchange_row, POLL_FIRST_WARP)
    for j in gl.static_range(STAGES):
        mbarrier.invalidate(bars[j])
        mbarrier.invalidate(weight_bars[j])


# ---- host side ---------------------------------------------------------------------------------------

def tile_box(plan, rows: int) -> list[int]:
    """A TMA box of one copy: ``(SPLIT tiles, rows, 64 columns)``; ``rows`` is 16 (units) for the
    weights, ``plan.block_b`` for the gate gradients."""
    return [SPLIT, rows, K_TILE]


def column_tiles(matrix: torch.Tensor, width: int) -> torch.Tensor:
    """A row-major buffer of rows ``width`` elements wide as ``(width/64, rows, 64)`` column tiles
    (strides ``(64, width, 1)``): element ``[k, r, x]`` is column ``k*64 + x`` of row r. A view: TMA
    must read the buffer."""
    return matrix.view(-1, width // K_TILE, K_TILE).permute(1, 0, 2)


def transposed_weights(w_hh: torch.Tensor, h_pad: int) -> torch.Tensor:
    """``w_hh (D, 4H, H)`` as ``(D, H, 4*h_pad)`` in the exchange's producer-major columns: row u
    holds the weights of unit u's column, column ``64p + 16g + j`` the one of gate g's row
    ``16p + j`` (producer p's unit j), zero where ``16p + j >= H``. A copy per backward call (4.5 MiB
    at H=768, bf16), so that a program's weights are the same ``(16, 64)`` K-contiguous tiles as its
    gate gradients: one TMA box per copy, read by ``ldmatrix`` without transposition."""
    directions, rows, hidden = w_hh.shape
    padded = w_hh.new_zeros(directions, 4, h_pad, hidden)
    padded[:, :, :hidden] = w_hh.view(directions, 4, hidden, hidden)
    by_producer = padded.view(directions, 4, h_pad // UNITS, UNITS, hidden).permute(0, 4, 2, 1, 3)
    return by_producer.reshape(directions, hidden, 4 * h_pad)


def descriptors(plan, w_hh: torch.Tensor, exchange: torch.Tensor):
    """TMA descriptors of :func:`transposed_weights` and of the exchange ``(D, 2, B_pad, 4*h_pad)``,
    both as :func:`column_tiles` (boxes :func:`tile_box`). The weight descriptor holds the
    transposed copy (its ``base``), which the launch's stream order keeps valid until read."""
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    width = 4 * plan.h_pad
    views = ((column_tiles(transposed_weights(w_hh, plan.h_pad), width), tile_box(plan, UNITS)),
             (column_tiles(exchange, width), tile_box(plan, plan.block_b)))
    return [TensorDescriptor(view, list(view.shape), list(view.stride()), box, shared_layout(box, view.dtype))
            for view, box in views]


def max_registers(plan, grid_sync: bool = True) -> int:
    """ptxas's register cap of the kernel ``plan`` launches: the plan's, or with the streamed copies
    (:func:`rnnbench.kernels.plan.gluon_streamed_copies`) what a thread may have at launch with the
    copier's warp padded to a whole warpgroup beside the plan's warps (Triton pads every
    ``warp_specialize`` to whole warpgroups, so that ``setmaxnreg`` can move their registers; 168
    at 8 + 4 warps). The copier's warpgroup then gives its registers up (:data:`COPIER_REGISTERS`,
    16 in its padding warps), and the recurrence's warps take them: 216 a thread at 8 warps."""
    if grid_sync and gluon_streamed_copies(plan):
        return min(plan.max_registers, REGISTER_FILE // (32 * (plan.num_warps + COPIER_WARPGROUP)) // 8 * 8)
    return plan.max_registers


def _constexprs(plan, has_lengths: bool, grid_sync: bool) -> dict:
    return {"BLOCK_B": plan.block_b, "H_PAD": plan.h_pad, "DIRECTIONS": plan.directions, "HAS_LENGTHS": has_lengths,
            "POLL": plan.poll, "POLL_ORDER": POLL_ORDERS[plan.poll_order],
            "STAGES": gluon_backward_stages(plan.h_pad, plan.block_b), "GRID_SYNC": grid_sync,
            "STREAMED": grid_sync and gluon_streamed_copies(plan), "POLL_FIRST_WARP": switches.GRID_POLL_FIRST_WARP}


def run_backward(plan, xg, w_hh, c_all, c0, dy, dh_n, dc_n, dh0, dc0, exchange, lengths, sizes: tuple[int, int, int],
                 has_lengths: bool, grid_sync: bool = True, hidden_blocks: int | None = None,
                 sync: torch.Tensor | None = None) -> None:
    """Launch :func:`lstm_backward_gluon_kernel` following ``plan`` (a :func:`rnnbench.kernels.plan.plan_gluon`
    backward plan) on the buffers of :func:`rnnbench.kernels.lstm_kernels.lstm_backward_kernel`
    (``w_hh (D, 4H, H)`` contiguous; ``sizes``: ``(T, B, H)``).
    Cooperative launches, checked for barrier timeouts as :func:`rnnbench.kernels.launch.run_phases` does.
    ``grid_sync=False``: without the grid barrier (garbage results; the step ablation's timing of
    the step's own chain, :mod:`rnnbench.kernels.step_bench`). ``hidden_blocks``: launch that many
    instead of the plan's (tests of the timeout: a program never launched never arrives). ``sync``:
    the synchronisation buffer (:func:`rnnbench.kernels.launch.sync_buffer`), where the caller reads
    its flags while the kernel runs (:mod:`rnnbench.kernels.overlapped_gradients`); by default a
    fresh one."""
    from rnnbench.kernels.launch import _watch_barriers, check_barriers, sync_buffer

    if sizes[0] < 1:
        raise ValueError(f"the Gluon LSTM backward needs at least one time step, got T={sizes[0]}")
    if not torch.cuda.is_current_stream_capturing():
        check_barriers()
    if sync is None:
        sync = sync_buffer(plan, dy.device)
    w_desc, g_desc = descriptors(plan, w_hh, exchange)
    grid = plan.launch_grid if hidden_blocks is None else (hidden_blocks, *plan.launch_grid[1:])
    for first_direction in range(0, plan.directions, plan.launch_directions):
        lstm_backward_gluon_kernel[grid](
            xg, w_desc, c_all, c0, dy, dh_n, dc_n, dh0, dc0, exchange, g_desc, lengths, sync, *sizes, first_direction,
            **_constexprs(plan, has_lengths, grid_sync), num_warps=plan.num_warps,
            maxnreg=max_registers(plan, grid_sync),
            launch_cooperative_grid=True)
    _watch_barriers(sync, f"{lstm_backward_gluon_kernel.__name__} (grid {grid}, T={sizes[0]})")


def compile_backward(plan, dtype: torch.dtype, has_lengths: bool, arch: int = 90, grid_sync: bool = True):
    """``triton.compile`` of the kernel ``plan`` launches, for ``sm_<arch>`` without a GPU, specialised
    as at run time (pointers 16-byte aligned, ``H`` divisible by 16; ``grid_sync`` as
    :func:`run_backward`'s)."""
    from triton.backends.compiler import GPUTarget
    from triton.experimental.gluon._runtime import GluonASTSource

    data = {torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    boxes = {"w_desc": tile_box(plan, UNITS), "g_desc": tile_box(plan, plan.block_b)}
    pointers = {"xg_ptr": data, "c_all_ptr": "fp32", "c0_ptr": data, "dy_ptr": data, "dh_n_ptr": data,
                "dc_n_ptr": data, "dh0_ptr": "fp32", "dc0_ptr": "fp32", "exchange_ptr": data, "lengths_ptr": "i32",
                "sync_ptr": "i32"}
    fn = lstm_backward_gluon_kernel
    signature = {}
    for name in fn.arg_names:
        if name in boxes:
            box = boxes[name]
            signature[name] = f"tensordesc<{data}[{', '.join(map(str, box))}],{shared_layout(box, dtype)!r}>"
        elif name in pointers:
            signature[name] = "*" + pointers[name]
        elif name in ("T", "B", "H", "first_direction"):
            signature[name] = "i32"
    constexprs = _constexprs(plan, has_lengths, grid_sync)
    signature.update({name: "constexpr" for name in constexprs})
    attrs = {(fn.arg_names.index(name),): [["tt.divisibility", 16]] for name, kind in signature.items()
             if kind.startswith("*") or name == "H"}
    options = {"num_warps": plan.num_warps, "maxnreg": max_registers(plan, grid_sync),
               "launch_cooperative_grid": True}
    return triton.compile(GluonASTSource(fn, signature, constexprs=constexprs, attrs=attrs),
                          target=GPUTarget("cuda", arch, 32), options=options)
