"""Triton kernels of the Elman RNN recurrence ``h_t = act(xw_t + W_hh h_{t-1})`` (act = tanh or relu).

``xw (T, B, H)`` holds ``W_ih x_t + b_ih + b_hh`` for all steps, computed by one GEMM beforehand
(:mod:`rnnbench.kernels.rnn`). ``w_hh (H, H)``; ``h0, dh_n, dh0 (B, H)``; ``y, dy (T, B, D*H)``
(direction d in columns ``[d*H, (d+1)*H)``); ``dz (T, B, H)``, the gradient of the pre-activation;
``lengths (B,)`` int32 (``HAS_LENGTHS`` only); ``exchange (2, B_pad, H_PAD)`` carries hidden states
(forward, ``h0`` copied into slot 1 beforehand) or ``dz`` rows (backward) between programs, see
:func:`rnnbench.kernels.primitives.exchange_offsets`; ``sync`` holds the grid barrier's flags
(:func:`rnnbench.kernels.primitives.grid_barrier`). With ``DIRECTIONS = 2`` every buffer but ``y``,
``dy`` and ``lengths`` is stacked over the two directions and the grid's third axis is the
direction; past a row's end ``y`` and ``dz`` are zero and the state keeps its last value. Program (pid_h, pid_b) owns hidden units
``pid_h*BLOCK_H + [0, BLOCK_H)`` of batch rows ``pid_b*BLOCK_B + [0, BLOCK_B)`` (unit-major
``(BLOCK_H, BLOCK_B)`` tiles); its slice of ``W_hh`` (its rows forward, its columns backward) is
loaded once per launch in the in-kernel loops and streamed in blocks by a ``STEPWISE`` launch, and
the next step's ``xw`` (forward) or ``dy`` and ``y`` (backward) are loaded before the grid barrier.
Accumulation and the nonlinearity are float32.
Execution modes and the split-K matmul are described in :mod:`rnnbench.kernels.primitives`.
"""

import triton
import triton.language as tl

from rnnbench.kernels.primitives import (
    COOPERATIVE, STEPWISE, carry_state, chunk_offsets, direction_slice, exchange_offsets, exchange_slot,
    final_state_gradient, gate_rows, held_product, held_weights, program_tile, publish_state, row_lengths,
    running_rows, split_accumulator, split_dot, step_arrive, step_position, step_wait, streamed_product, sync_slice,
    tanh,
)


@triton.jit
def _step_input(xw_ptr, t, B, H, state_offsets, mask):
    """``xw`` at time index ``t`` for this program's ``(BLOCK_H, BLOCK_B)`` tile, zero where ``mask``
    is false, in the storage dtype (converted where it is used, so a load for the next step stays
    in flight across the grid barrier)."""
    return tl.load(xw_ptr + tl.cast(t, tl.int64) * B * H + state_offsets, mask=mask, other=0.0)


@triton.jit
def _forward_step(y_ptr, t, B, H, recurrent, x_in, y_offsets, state_mask, running, RELU: tl.constexpr,
                  DIRECTIONS: tl.constexpr, HAS_LENGTHS: tl.constexpr):
    """``h_t = act(xw_t + recurrent)`` at time index ``t`` for this program's units (``x_in``: the
    step's :func:`_step_input`), stored (zero for rows outside ``running``) and returned (float32)."""
    pre = recurrent + x_in.to(tl.float32)
    if RELU:
        h = tl.maximum(pre, 0.0)
    else:
        h = tanh(pre)
    y = y_ptr + tl.cast(t, tl.int64) * B * DIRECTIONS * H + y_offsets
    if HAS_LENGTHS:
        tl.store(y, tl.where(running, h, 0.0).to(y_ptr.dtype.element_ty), mask=state_mask)
    else:
        tl.store(y, h.to(y_ptr.dtype.element_ty), mask=state_mask)
    return h


@triton.jit(do_not_specialize=["T", "B", "phase", "first_direction"])
def rnn_forward_kernel(
    xw_ptr, w_hh_ptr, h0_ptr, y_ptr, exchange_ptr, lengths_ptr, sync_ptr,
    T, B, H, w_stride, phase, first_direction,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, H_PAD: tl.constexpr, K_SPLIT: tl.constexpr, K_CHUNKS: tl.constexpr,
    MODE: tl.constexpr, RELU: tl.constexpr, DOT_PRECISION: tl.constexpr, DIRECTIONS: tl.constexpr,
    HAS_LENGTHS: tl.constexpr, POLL: tl.constexpr, POLL_ORDER: tl.constexpr, POLL_VECTOR: tl.constexpr,
    POLL_FIRST_WARP: tl.constexpr,
):
    """Forward recurrence, :func:`rnnbench.baselines.numpy_rnn.rnn_forward` without the input
    projection; ``phase`` is the processing step of a ``STEPWISE`` launch. Each row's final state
    is in ``y`` (at its last step going forwards, at time 0 going backwards)."""
    BK: tl.constexpr = H_PAD // (K_SPLIT * K_CHUNKS)
    pid_b, rows, units, state_offsets, state_mask = program_tile(B, H, BLOCK_B, BLOCK_H)
    y_offsets = rows[None, :] * DIRECTIONS * H + units[:, None]
    read, write = exchange_offsets(rows, units, H_PAD, K_SPLIT, BK)
    w_rows, w_valid = gate_rows(H, 1, BLOCK_H)
    dtype = y_ptr.dtype.element_ty
    length = row_lengths(lengths_ptr, rows, B, T, HAS_LENGTHS)
    direction = tl.program_id(2) + first_direction
    xw_ptr = direction_slice(xw_ptr, T * B, H, direction, DIRECTIONS)
    w_hh_ptr = direction_slice(w_hh_ptr, H, w_stride, direction, DIRECTIONS)
    h0_ptr = direction_slice(h0_ptr, B, H, direction, DIRECTIONS)
    y_ptr = direction_slice(y_ptr, 1, H, direction, DIRECTIONS)
    exchange_ptr = direction_slice(exchange_ptr, 2 * tl.num_programs(1) * BLOCK_B, H_PAD, direction, DIRECTIONS)
    flags_ptr = sync_slice(sync_ptr, direction, DIRECTIONS)

    if MODE == STEPWISE:
        t = step_position(phase, T, length, direction, DIRECTIONS, HAS_LENGTHS)
        running = running_rows(phase, length, state_mask, HAS_LENGTHS)
        previous = exchange_slot(exchange_ptr, phase + 1, H_PAD, BLOCK_B)
        recurrent = streamed_product(w_hh_ptr, w_rows * w_stride, w_valid, 0, w_stride, 1, previous, read, BLOCK_H, BLOCK_B, K_CHUNKS,
                                     K_CHUNKS, K_SPLIT, BK, DOT_PRECISION)
        h = _forward_step(y_ptr, t, B, H, recurrent, _step_input(xw_ptr, t, B, H, state_offsets, running), y_offsets,
                          state_mask, running, RELU, DIRECTIONS, HAS_LENGTHS)
        publish_state(exchange_ptr, phase, h.to(dtype), write, running, H_PAD, BLOCK_B, HAS_LENGTHS)
    else:
        blocks = held_weights(w_hh_ptr, w_rows * w_stride, w_valid, 0, w_stride, 1, K_CHUNKS, K_CHUNKS, K_SPLIT, BK)
        offsets, mask = chunk_offsets(rows, B, H, H, K_SPLIT, BK)  # the persistent state operand (one block)
        h_prev = tl.load(h0_ptr + offsets, mask=mask, other=0.0).to(dtype)
        x_in = _step_input(xw_ptr, step_position(0, T, length, direction, DIRECTIONS, HAS_LENGTHS), B, H,
                           state_offsets, running_rows(0, length, state_mask, HAS_LENGTHS))
        for s in range(0, T):
            # the next step's input, loaded a whole step ahead (the last step loads its own again)
            upcoming = tl.minimum(s + 1, T - 1)
            following = _step_input(xw_ptr, step_position(upcoming, T, length, direction, DIRECTIONS, HAS_LENGTHS), B,
                                    H, state_offsets, running_rows(upcoming, length, state_mask, HAS_LENGTHS))
            t = step_position(s, T, length, direction, DIRECTIONS, HAS_LENGTHS)
            running = running_rows(s, length, state_mask, HAS_LENGTHS)
            if MODE == COOPERATIVE:
                recurrent = held_product(blocks, exchange_slot(exchange_ptr, s + 1, H_PAD, BLOCK_B), read, BLOCK_H,
                                         BLOCK_B, K_CHUNKS, K_SPLIT, BK, DOT_PRECISION)
            else:
                recurrent = split_dot(blocks[0], h_prev, split_accumulator(BLOCK_H, BLOCK_B, K_SPLIT), BLOCK_H, BLOCK_B,
                                      K_SPLIT, BK, DOT_PRECISION)
            h = _forward_step(y_ptr, t, B, H, recurrent, x_in, y_offsets, state_mask, running, RELU, DIRECTIONS,
                              HAS_LENGTHS)
            h_prev = carry_state(h.to(dtype), h_prev, s, length, exchange_ptr, write, running, flags_ptr, MODE, BLOCK_B,
                                 K_SPLIT, BK, H_PAD, HAS_LENGTHS)
            step_wait(flags_ptr, s + 1, MODE, POLL, POLL_ORDER, POLL_VECTOR, POLL_FIRST_WARP)
            x_in = following


@triton.jit
def _backward_inputs(y_ptr, dy_ptr, s, T, B, H, length, direction, y_offsets, state_mask, DIRECTIONS: tl.constexpr,
                     HAS_LENGTHS: tl.constexpr):
    """What phase ``s >= 0`` reads besides the exchange, float32 ``(BLOCK_H, BLOCK_B)`` tiles ``(dy, h)``,
    zero for rows not running at ``s``."""
    t = step_position(s, T, length, direction, DIRECTIONS, HAS_LENGTHS)
    running = running_rows(s, length, state_mask, HAS_LENGTHS)
    offsets = tl.cast(t, tl.int64) * B * DIRECTIONS * H + y_offsets
    return (tl.load(dy_ptr + offsets, mask=running, other=0.0).to(tl.float32),
            tl.load(y_ptr + offsets, mask=running, other=0.0).to(tl.float32))


@triton.jit
def _backward_phase(
    w_hh_ptr, blocks, dh_n_ptr, dz_ptr, dh0_ptr, exchange_ptr, s, T, B, H, w_stride, length, direction, inputs, units, read,
    write, state_offsets, state_mask, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, H_PAD: tl.constexpr,
    K_SPLIT: tl.constexpr, BK: tl.constexpr, K_CHUNKS: tl.constexpr, MODE: tl.constexpr, RELU: tl.constexpr,
    DOT_PRECISION: tl.constexpr, DIRECTIONS: tl.constexpr, HAS_LENGTHS: tl.constexpr,
):
    """Processing step ``s`` (``s = -1``: emit dh0): ``dh_s = dy_s + dz_{s+1} @ W_hh[:, units]``, plus
    ``dh_n`` at each row's last step; ``dz_s = dh_s * act'``, zero for rows that have ended.

    ``inputs`` are the phase's :func:`_backward_inputs`; ``blocks`` the held weight blocks (not ``STEPWISE``)."""
    if s == T - 1:
        dh = final_state_gradient(dh_n_ptr, state_offsets, state_mask, s, length, HAS_LENGTHS)
    else:
        later = exchange_slot(exchange_ptr, s + 1, H_PAD, BLOCK_B)
        if MODE == STEPWISE:
            dh = streamed_product(w_hh_ptr, units, units < w_stride, 0, H, w_stride, later, read, BLOCK_H, BLOCK_B, K_CHUNKS, K_CHUNKS,
                                  K_SPLIT, BK, DOT_PRECISION, ROWS_CONTIGUOUS=True)
        else:
            dh = held_product(blocks, later, read, BLOCK_H, BLOCK_B, K_CHUNKS, K_SPLIT, BK, DOT_PRECISION)
        if HAS_LENGTHS:
            dh += final_state_gradient(dh_n_ptr, state_offsets, state_mask, s, length, HAS_LENGTHS)
    if s < 0:
        tl.store(dh0_ptr + state_offsets, dh, mask=state_mask)
    else:
        t = step_position(s, T, length, direction, DIRECTIONS, HAS_LENGTHS)
        dy, h = inputs
        dh += dy
        # rows that have ended load h = 0 and have dh = 0, so their dz is zero
        if RELU:
            dz = tl.where(h > 0.0, dh, 0.0)
        else:
            dz = dh * (1.0 - h * h)
        dz = dz.to(dz_ptr.dtype.element_ty)
        tl.store(dz_ptr + tl.cast(t, tl.int64) * B * H + state_offsets, dz, mask=state_mask)
        tl.store(exchange_slot(exchange_ptr, s, H_PAD, BLOCK_B) + write, dz)


@triton.jit(do_not_specialize=["T", "B", "phase", "first_direction"])
def rnn_backward_kernel(
    y_ptr, w_hh_ptr, dy_ptr, dh_n_ptr, dz_ptr, dh0_ptr, exchange_ptr, lengths_ptr, sync_ptr,
    T, B, H, w_stride, phase, first_direction,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, H_PAD: tl.constexpr, K_SPLIT: tl.constexpr, K_CHUNKS: tl.constexpr,
    MODE: tl.constexpr, RELU: tl.constexpr, DOT_PRECISION: tl.constexpr, DIRECTIONS: tl.constexpr,
    HAS_LENGTHS: tl.constexpr, POLL: tl.constexpr, POLL_ORDER: tl.constexpr, POLL_VECTOR: tl.constexpr,
    POLL_FIRST_WARP: tl.constexpr,
):
    """Reverse-time recurrence writing ``dz`` and ``dh0`` (float32), the recurrent part of
    :func:`rnnbench.baselines.numpy_rnn.rnn_backward`; processing steps s = T-1, ..., 0, -1.

    In ``STEPWISE`` mode ``phase`` counts launches (s = T-1-phase).
    """
    BK: tl.constexpr = H_PAD // (K_SPLIT * K_CHUNKS)
    pid_b, rows, units, state_offsets, state_mask = program_tile(B, H, BLOCK_B, BLOCK_H)
    y_offsets = rows[None, :] * DIRECTIONS * H + units[:, None]
    read, write = exchange_offsets(rows, units, H_PAD, K_SPLIT, BK)
    length = row_lengths(lengths_ptr, rows, B, T, HAS_LENGTHS)
    direction = tl.program_id(2) + first_direction
    y_ptr = direction_slice(y_ptr, 1, H, direction, DIRECTIONS)
    dy_ptr = direction_slice(dy_ptr, 1, H, direction, DIRECTIONS)
    w_hh_ptr = direction_slice(w_hh_ptr, H, w_stride, direction, DIRECTIONS)
    dh_n_ptr = direction_slice(dh_n_ptr, B, H, direction, DIRECTIONS)
    dh0_ptr = direction_slice(dh0_ptr, B, H, direction, DIRECTIONS)
    dz_ptr = direction_slice(dz_ptr, T * B, H, direction, DIRECTIONS)
    exchange_ptr = direction_slice(exchange_ptr, 2 * tl.num_programs(1) * BLOCK_B, H_PAD, direction, DIRECTIONS)
    flags_ptr = sync_slice(sync_ptr, direction, DIRECTIONS)

    if MODE == STEPWISE:
        s = T - 1 - phase
        inputs = _backward_inputs(y_ptr, dy_ptr, tl.maximum(s, 0), T, B, H, length, direction, y_offsets, state_mask,
                                  DIRECTIONS, HAS_LENGTHS)
        _backward_phase(w_hh_ptr, w_hh_ptr, dh_n_ptr, dz_ptr, dh0_ptr, exchange_ptr, s, T, B, H, w_stride, length,
                        direction, inputs, units, read, write, state_offsets, state_mask, BLOCK_B, BLOCK_H, H_PAD, K_SPLIT,
                        BK, K_CHUNKS, MODE, RELU, DOT_PRECISION, DIRECTIONS, HAS_LENGTHS)
    else:
        blocks = held_weights(w_hh_ptr, units, units < w_stride, 0, H, w_stride, K_CHUNKS, K_CHUNKS, K_SPLIT, BK,
                              ROWS_CONTIGUOUS=True)
        inputs = _backward_inputs(y_ptr, dy_ptr, T - 1, T, B, H, length, direction, y_offsets, state_mask, DIRECTIONS,
                                  HAS_LENGTHS)
        for p in range(0, T + 1):
            s = T - 1 - p
            # the next phase's inputs, loaded a whole phase ahead (phase -1 reads nothing: the last
            # two phases load step 0's)
            following = _backward_inputs(y_ptr, dy_ptr, tl.maximum(s - 1, 0), T, B, H, length, direction, y_offsets,
                                         state_mask, DIRECTIONS, HAS_LENGTHS)
            _backward_phase(w_hh_ptr, blocks, dh_n_ptr, dz_ptr, dh0_ptr, exchange_ptr, s, T, B, H, w_stride, length,
                            direction, inputs, units, read, write, state_offsets, state_mask, BLOCK_B, BLOCK_H, H_PAD,
                            K_SPLIT, BK, K_CHUNKS, MODE, RELU, DOT_PRECISION, DIRECTIONS, HAS_LENGTHS)
            step_arrive(flags_ptr, MODE)
            step_wait(flags_ptr, p + 1, MODE, POLL, POLL_ORDER, POLL_VECTOR, POLL_FIRST_WARP)
            inputs = following
