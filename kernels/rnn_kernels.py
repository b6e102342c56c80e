"""Triton kernels of the Elman RNN recurrence ``h_t = act(xw_t + W_hh h_{t-1})`` (act = tanh or relu).

``xw (T, B, H)`` holds ``W_ih x_t + b_ih + b_hh`` for all steps, computed by one GEMM beforehand
(:mod:`rnnbench.kernels.rnn`). ``w_hh (H, H)``; ``h0, dh_n, dh0 (B, H)``; ``y, dy (T, B, D*H)``
(direction d in columns ``[d*H, (d+1)*H)``); ``dz (T, B, H)``, the gradient of the pre-activation;
``lengths (B,)`` int32 (``HAS_LENGTHS`` only); ``exchange (2, B_pad, H_PAD)`` carries hidden states
(forward, ``h0`` copied into slot 1 beforehand) or ``dz`` rows (backward) between programs, see
:func:`rnnbench.kernels.primitives.exchange_offsets`. With ``DIRECTIONS = 2`` every buffer but ``y``,
``dy`` and ``lengths`` is stacked over the two directions and the grid's third axis is the
direction; past a row's end ``y`` and ``dz`` are zero and the state keeps its last value. Program (pid_h, pid_b) owns hidden units
``pid_h*BLOCK_H + [0, BLOCK_H)`` of batch rows ``pid_b*BLOCK_B + [0, BLOCK_B)`` and keeps its
split-K ``W_hh`` tile on chip for the whole launch (``K_CHUNKS = 1``; layers too large for that run
``STEPWISE`` and stream it in chunks); accumulation and the nonlinearity are float32.
Execution modes and the split-K matmul are described in :mod:`rnnbench.kernels.primitives`.
"""

import triton
import triton.language as tl

from rnnbench.kernels.primitives import (
    COOPERATIVE, STEPWISE, carry_state, chunk_offsets, direction_slice, exchange_offsets, exchange_slot,
    final_state_gradient, program_tile, publish_state, row_lengths, running_rows, split_k_dot, step_barrier,
    step_position, streamed_dot, tanh, weight_chunks,
)


@triton.jit
def _forward_step(xw_ptr, y_ptr, t, B, H, recurrent, state_offsets, y_offsets, state_mask, running,
                  RELU: tl.constexpr, DIRECTIONS: tl.constexpr, HAS_LENGTHS: tl.constexpr):
    """``h_t = act(xw_t + recurrent)`` at time index ``t`` for this program's units, stored (zero
    for rows outside ``running``) and returned (float32)."""
    step = tl.cast(t, tl.int64) * B
    pre = recurrent + tl.load(xw_ptr + step * H + state_offsets, mask=running, other=0.0).to(tl.float32)
    if RELU:
        h = tl.maximum(pre, 0.0)
    else:
        h = tanh(pre)
    y = y_ptr + step * DIRECTIONS * H + y_offsets
    if HAS_LENGTHS:
        tl.store(y, tl.where(running, h, 0.0).to(y_ptr.dtype.element_ty), mask=state_mask)
    else:
        tl.store(y, h.to(y_ptr.dtype.element_ty), mask=state_mask)
    return h


@triton.jit(do_not_specialize=["T", "B", "phase", "first_direction"])
def rnn_forward_kernel(
    xw_ptr, w_hh_ptr, h0_ptr, y_ptr, exchange_ptr, lengths_ptr, sync_ptr,
    T, B, H, phase, first_direction,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, H_PAD: tl.constexpr, K_SPLIT: tl.constexpr, K_CHUNKS: tl.constexpr,
    MODE: tl.constexpr, RELU: tl.constexpr, DOT_PRECISION: tl.constexpr, DIRECTIONS: tl.constexpr,
    HAS_LENGTHS: tl.constexpr,
):
    """Forward recurrence; ``phase`` is the processing step of a ``STEPWISE`` launch. Each row's
    final state is in ``y`` (at its last step going forwards, at time 0 going backwards)."""
    BK: tl.constexpr = H_PAD // (K_SPLIT * K_CHUNKS)
    pid_b, rows, cols, state_offsets, state_mask = program_tile(B, H, BLOCK_B, BLOCK_H)
    y_offsets = rows[:, None] * DIRECTIONS * H + cols[None, :]
    read, write = exchange_offsets(rows, cols, H_PAD, K_SPLIT, BK)
    dtype = y_ptr.dtype.element_ty
    length = row_lengths(lengths_ptr, rows, B, T, HAS_LENGTHS)
    direction = tl.program_id(2) + first_direction
    xw_ptr = direction_slice(xw_ptr, T * B, H, direction, DIRECTIONS)
    w_hh_ptr = direction_slice(w_hh_ptr, H, H, direction, DIRECTIONS)
    h0_ptr = direction_slice(h0_ptr, B, H, direction, DIRECTIONS)
    y_ptr = direction_slice(y_ptr, 1, H, direction, DIRECTIONS)
    exchange_ptr = direction_slice(exchange_ptr, 2 * tl.num_programs(1) * BLOCK_B, H_PAD, direction, DIRECTIONS)
    sync_ptr = direction_slice(sync_ptr, tl.num_programs(1), 1, direction, DIRECTIONS)

    if MODE == STEPWISE:
        t = step_position(phase, T, length, direction, DIRECTIONS, HAS_LENGTHS)
        running = running_rows(phase, length, state_mask, HAS_LENGTHS)
        previous = exchange_slot(exchange_ptr, phase + 1, H_PAD, BLOCK_B)
        if K_CHUNKS == 1:
            w = weight_chunks(w_hh_ptr, 0, 0, H, cols, True, K_SPLIT, BK)
            recurrent = split_k_dot(tl.load(previous + read, cache_modifier=".cg"), w, DOT_PRECISION)
        else:
            recurrent = streamed_dot(previous, read, w_hh_ptr, 0, H, cols, True, K_SPLIT, BK, K_CHUNKS, DOT_PRECISION)
        h = _forward_step(xw_ptr, y_ptr, t, B, H, recurrent, state_offsets, y_offsets, state_mask, running, RELU,
                          DIRECTIONS, HAS_LENGTHS)
        h = h.to(dtype)
        publish_state(exchange_ptr, phase, h, write, running, H_PAD, BLOCK_B, HAS_LENGTHS)
    else:
        w = weight_chunks(w_hh_ptr, 0, 0, H, cols, True, K_SPLIT, BK)
        offsets, mask = chunk_offsets(rows, B, H, H, K_SPLIT, BK)
        h_prev = tl.load(h0_ptr + offsets, mask=mask, other=0.0).to(dtype)
        n_programs_h = tl.num_programs(0)
        for s in range(0, T):
            t = step_position(s, T, length, direction, DIRECTIONS, HAS_LENGTHS)
            running = running_rows(s, length, state_mask, HAS_LENGTHS)
            if MODE == COOPERATIVE:
                h_prev = tl.load(exchange_slot(exchange_ptr, s + 1, H_PAD, BLOCK_B) + read, cache_modifier=".cg")
            h = _forward_step(xw_ptr, y_ptr, t, B, H, split_k_dot(h_prev, w, DOT_PRECISION), state_offsets, y_offsets,
                              state_mask, running, RELU, DIRECTIONS, HAS_LENGTHS).to(dtype)
            h_prev = carry_state(h, h_prev, s, length, exchange_ptr, write, running, sync_ptr + pid_b,
                                 n_programs_h * (s + 1), MODE, BLOCK_B, K_SPLIT, BK, H_PAD, HAS_LENGTHS)


@triton.jit
def _backward_phase(
    y_ptr, w_hh_ptr, w, dy_ptr, dh_n_ptr, dz_ptr, dh0_ptr, exchange_ptr, s, T, B, H, length, direction, cols, read, write,
    state_offsets, y_offsets, state_mask, BLOCK_B: tl.constexpr, H_PAD: tl.constexpr, K_SPLIT: tl.constexpr,
    BK: tl.constexpr, K_CHUNKS: tl.constexpr, RELU: tl.constexpr, DOT_PRECISION: tl.constexpr,
    DIRECTIONS: tl.constexpr, HAS_LENGTHS: tl.constexpr,
):
    """Processing step ``s`` (``s = -1``: emit dh0): ``dh_s = dy_s + dz_{s+1} @ W_hh[:, units]``, plus
    ``dh_n`` at each row's last step; ``dz_s = dh_s * act'``, zero for rows that have ended.

    ``w`` is the on-chip tile when ``K_CHUNKS == 1``."""
    if s == T - 1:
        dh = final_state_gradient(dh_n_ptr, state_offsets, state_mask, s, length, HAS_LENGTHS)
    else:
        later = exchange_slot(exchange_ptr, s + 1, H_PAD, BLOCK_B)
        if K_CHUNKS == 1:
            dh = split_k_dot(tl.load(later + read, cache_modifier=".cg"), w, DOT_PRECISION)
        else:
            dh = streamed_dot(later, read, w_hh_ptr, 0, H, cols, False, K_SPLIT, BK, K_CHUNKS, DOT_PRECISION)
        if HAS_LENGTHS:
            dh += final_state_gradient(dh_n_ptr, state_offsets, state_mask, s, length, HAS_LENGTHS)
    if s < 0:
        tl.store(dh0_ptr + state_offsets, dh, mask=state_mask)
    else:
        t = step_position(s, T, length, direction, DIRECTIONS, HAS_LENGTHS)
        running = running_rows(s, length, state_mask, HAS_LENGTHS)
        step = tl.cast(t, tl.int64) * B
        dh += tl.load(dy_ptr + step * DIRECTIONS * H + y_offsets, mask=running, other=0.0).to(tl.float32)
        # rows that have ended load h = 0 and have dh = 0, so their dz is zero
        h = tl.load(y_ptr + step * DIRECTIONS * H + y_offsets, mask=running, other=0.0).to(tl.float32)
        if RELU:
            dz = tl.where(h > 0.0, dh, 0.0)
        else:
            dz = dh * (1.0 - h * h)
        dz = dz.to(dz_ptr.dtype.element_ty)
        tl.store(dz_ptr + step * H + state_offsets, dz, mask=state_mask)
        tl.store(exchange_slot(exchange_ptr, s, H_PAD, BLOCK_B) + write, dz)


@triton.jit(do_not_specialize=["T", "B", "phase", "first_direction"])
def rnn_backward_kernel(
    y_ptr, w_hh_ptr, dy_ptr, dh_n_ptr, dz_ptr, dh0_ptr, exchange_ptr, lengths_ptr, sync_ptr,
    T, B, H, phase, first_direction,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, H_PAD: tl.constexpr, K_SPLIT: tl.constexpr, K_CHUNKS: tl.constexpr,
    MODE: tl.constexpr, RELU: tl.constexpr, DOT_PRECISION: tl.constexpr, DIRECTIONS: tl.constexpr,
    HAS_LENGTHS: tl.constexpr,
):
    """Reverse-time recurrence writing ``dz`` and ``dh0`` (float32); processing steps s = T-1, ..., 0, -1.

    In ``STEPWISE`` mode ``phase`` counts launches (s = T-1-phase).
    """
    BK: tl.constexpr = H_PAD // (K_SPLIT * K_CHUNKS)
    pid_b, rows, cols, state_offsets, state_mask = program_tile(B, H, BLOCK_B, BLOCK_H)
    y_offsets = rows[:, None] * DIRECTIONS * H + cols[None, :]
    read, write = exchange_offsets(rows, cols, H_PAD, K_SPLIT, BK)
    length = row_lengths(lengths_ptr, rows, B, T, HAS_LENGTHS)
    direction = tl.program_id(2) + first_direction
    y_ptr = direction_slice(y_ptr, 1, H, direction, DIRECTIONS)
    dy_ptr = direction_slice(dy_ptr, 1, H, direction, DIRECTIONS)
    w_hh_ptr = direction_slice(w_hh_ptr, H, H, direction, DIRECTIONS)
    dh_n_ptr = direction_slice(dh_n_ptr, B, H, direction, DIRECTIONS)
    dh0_ptr = direction_slice(dh0_ptr, B, H, direction, DIRECTIONS)
    dz_ptr = direction_slice(dz_ptr, T * B, H, direction, DIRECTIONS)
    exchange_ptr = direction_slice(exchange_ptr, 2 * tl.num_programs(1) * BLOCK_B, H_PAD, direction, DIRECTIONS)
    sync_ptr = direction_slice(sync_ptr, tl.num_programs(1), 1, direction, DIRECTIONS)
    if K_CHUNKS == 1:
        w = weight_chunks(w_hh_ptr, 0, 0, H, cols, False, K_SPLIT, BK)
    else:  # streamed: the phase loads its weight chunks itself
        w = w_hh_ptr

    if MODE == STEPWISE:
        _backward_phase(y_ptr, w_hh_ptr, w, dy_ptr, dh_n_ptr, dz_ptr, dh0_ptr, exchange_ptr, T - 1 - phase, T, B, H,
                        length, direction, cols, read, write, state_offsets, y_offsets, state_mask, BLOCK_B, H_PAD, K_SPLIT, BK,
                        K_CHUNKS, RELU, DOT_PRECISION, DIRECTIONS, HAS_LENGTHS)
    else:
        n_programs_h = tl.num_programs(0)
        for p in range(0, T + 1):
            _backward_phase(y_ptr, w_hh_ptr, w, dy_ptr, dh_n_ptr, dz_ptr, dh0_ptr, exchange_ptr, T - 1 - p, T, B, H,
                            length, direction, cols, read, write, state_offsets, y_offsets, state_mask, BLOCK_B, H_PAD, K_SPLIT,
                            BK, K_CHUNKS, RELU, DOT_PRECISION, DIRECTIONS, HAS_LENGTHS)
            step_barrier(sync_ptr + pid_b, n_programs_h * (p + 1), MODE)
