"""Triton kernels of the fused LSTM recurrence (forward and reverse-time backward).

The input projection ``W_ih x_t + b_ih + b_hh`` for all steps is one GEMM done before the forward
kernel (:mod:`rnnbench.kernels.lstm`); the kernels only do what must be sequential. Layouts, row-major:

* ``xg``   ``(T, B, 4H)`` gate pre-activations from the input, gate order i, f, g, o (torch's).
  In training the forward kernel overwrites it, in place, with the activated gates; the backward
  kernel then overwrites those, in place, with the gradients of the pre-activations (``dgates``).
* ``w_hh`` ``(4H, H)``; ``h0, c0, c_n, dh_n, dc_n, dh0, dc0`` ``(B, H)``; ``y, dy``
  ``(T, B, D*H)``, direction d in columns ``[d*H, (d+1)*H)``; ``c_all`` ``(T, B, H)`` float32 cell
  states c_1..c_T (training only); ``lengths`` ``(B,)`` int32 (``HAS_LENGTHS`` only).
* ``exchange``: forward ``(2, B_pad, H_PAD)`` hidden states, backward ``(2, B_pad, 4*H_PAD)`` gate
  gradients (gate blocks ``H_PAD`` apart), zero-filled, storage dtype; see
  :func:`rnnbench.kernels.primitives.exchange_offsets`. The forward expects ``h0`` copied into slot 1.
* With ``DIRECTIONS = 2`` every buffer but ``y``, ``dy`` and ``lengths`` is stacked over the two
  directions (a leading axis of 2) and the grid's third axis is the direction; see
  :mod:`rnnbench.kernels.primitives` for how direction 1 and per-row lengths are run. Past a row's
  end ``y`` and the gate gradients are zero and the states keep their last value.

Program (pid_h, pid_b) owns hidden units ``pid_h*BLOCK_H + [0, BLOCK_H)`` of batch rows
``pid_b*BLOCK_B + [0, BLOCK_B)``. Its slice of ``W_hh``, four split-K gate tiles (see
:mod:`rnnbench.kernels.primitives`), is loaded once per launch and stays on chip (``K_CHUNKS = 1``); layers
too large for that run ``STEPWISE`` and stream the slice in ``K_CHUNKS`` chunks each step. The four
gate matmuls of a
step share one state operand and run back to back in the same kernel, as four dots rather than one
dot over a concatenated ``4*BLOCK_H``-wide tile: splitting that tile's accumulator into gates needs
two layout conversions, and compiled for sm_90 (Triton 3.9, bf16, H=128, 16-row batch block) the
single dot spilled 440-712 bytes per thread where the four dots spilled none.
Cell state, accumulation and all elementwise math are float32; ``h`` enters the dot in the storage
dtype (fp32, fp16 or bf16).
"""

import triton
import triton.language as tl

from rnnbench.kernels.primitives import (
    COOPERATIVE, STEPWISE, carry_state, chunk_offsets, direction_slice, exchange_offsets, exchange_slot,
    final_state_gradient, program_tile, publish_state, row_lengths, running_rows, split_k_dot, step_barrier,
    step_position, streamed_dot, tanh, weight_chunks,
)


@triton.jit
def _gate_tiles(w_hh_ptr, H, cols, TRANSPOSED: tl.constexpr, K_SPLIT: tl.constexpr, BK: tl.constexpr):
    """The four on-chip gate tiles (i, f, g, o) of this program's ``W_hh`` slice."""
    return (weight_chunks(w_hh_ptr, 0 * H, 0, H, cols, TRANSPOSED, K_SPLIT, BK),
            weight_chunks(w_hh_ptr, 1 * H, 0, H, cols, TRANSPOSED, K_SPLIT, BK),
            weight_chunks(w_hh_ptr, 2 * H, 0, H, cols, TRANSPOSED, K_SPLIT, BK),
            weight_chunks(w_hh_ptr, 3 * H, 0, H, cols, TRANSPOSED, K_SPLIT, BK))


@triton.jit
def _forward_step(
    xg_ptr, y_ptr, c_all_ptr, t, B, H, r_i, r_f, r_g, r_o, c, gate_offsets, state_offsets, y_offsets, state_mask, running,
    TRAINING: tl.constexpr, DIRECTIONS: tl.constexpr, HAS_LENGTHS: tl.constexpr,
):
    """One LSTM step at time index ``t`` for this program's units from the recurrent products
    ``r_* = h_{t-1} W_*^T``: returns ``(h_t, c_t)`` (float32) and stores h_t (and in training the
    gates and c_t). Rows outside ``running`` keep ``c`` and get a zero output."""
    step = tl.cast(t, tl.int64) * B
    xg = xg_ptr + step * 4 * H + gate_offsets
    i = tl.sigmoid(r_i + tl.load(xg, mask=running, other=0.0).to(tl.float32))
    f = tl.sigmoid(r_f + tl.load(xg + H, mask=running, other=0.0).to(tl.float32))
    g = tanh(r_g + tl.load(xg + 2 * H, mask=running, other=0.0).to(tl.float32))
    o = tl.sigmoid(r_o + tl.load(xg + 3 * H, mask=running, other=0.0).to(tl.float32))
    c_t = f * c + i * g
    h = o * tanh(c_t)
    y = y_ptr + step * DIRECTIONS * H + y_offsets
    if HAS_LENGTHS:
        tl.store(y, tl.where(running, h, 0.0).to(y_ptr.dtype.element_ty), mask=state_mask)
        c_t = tl.where(running, c_t, c)
    else:
        tl.store(y, h.to(y_ptr.dtype.element_ty), mask=state_mask)
    if TRAINING:
        out = xg_ptr.dtype.element_ty
        tl.store(xg, i.to(out), mask=running)
        tl.store(xg + H, f.to(out), mask=running)
        tl.store(xg + 2 * H, g.to(out), mask=running)
        tl.store(xg + 3 * H, o.to(out), mask=running)
        tl.store(c_all_ptr + step * H + state_offsets, c_t, mask=running)
    return h, c_t


@triton.jit(do_not_specialize=["T", "B", "phase", "first_direction"])
def lstm_forward_kernel(
    xg_ptr, w_hh_ptr, h0_ptr, c0_ptr, y_ptr, c_all_ptr, c_n_ptr, exchange_ptr, lengths_ptr, sync_ptr,
    T, B, H, phase, first_direction,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, H_PAD: tl.constexpr, K_SPLIT: tl.constexpr, K_CHUNKS: tl.constexpr,
    MODE: tl.constexpr, TRAINING: tl.constexpr, DOT_PRECISION: tl.constexpr, DIRECTIONS: tl.constexpr,
    HAS_LENGTHS: tl.constexpr,
):
    """Forward recurrence (see the module docstring for layouts).

    ``c_n`` (float32) receives each row's final cell state (its final ``h`` is in ``y``: at its
    last step going forwards, at time 0 going backwards); in ``STEPWISE`` mode ``c_n`` also carries
    the cell state from one launch to the next. ``phase`` is the processing step of a ``STEPWISE`` launch.
    """
    BK: tl.constexpr = H_PAD // (K_SPLIT * K_CHUNKS)
    pid_b, rows, cols, state_offsets, state_mask = program_tile(B, H, BLOCK_B, BLOCK_H)
    gate_offsets = rows[:, None] * 4 * H + cols[None, :]
    y_offsets = rows[:, None] * DIRECTIONS * H + cols[None, :]
    read, write = exchange_offsets(rows, cols, H_PAD, K_SPLIT, BK)
    dtype = y_ptr.dtype.element_ty
    length = row_lengths(lengths_ptr, rows, B, T, HAS_LENGTHS)
    direction = tl.program_id(2) + first_direction
    xg_ptr = direction_slice(xg_ptr, T * B, 4 * H, direction, DIRECTIONS)
    w_hh_ptr = direction_slice(w_hh_ptr, 4 * H, H, direction, DIRECTIONS)
    h0_ptr = direction_slice(h0_ptr, B, H, direction, DIRECTIONS)
    c0_ptr = direction_slice(c0_ptr, B, H, direction, DIRECTIONS)
    c_n_ptr = direction_slice(c_n_ptr, B, H, direction, DIRECTIONS)
    c_all_ptr = direction_slice(c_all_ptr, T * B, H, direction, DIRECTIONS)
    y_ptr = direction_slice(y_ptr, 1, H, direction, DIRECTIONS)
    exchange_ptr = direction_slice(exchange_ptr, 2 * tl.num_programs(1) * BLOCK_B, H_PAD, direction, DIRECTIONS)
    sync_ptr = direction_slice(sync_ptr, tl.num_programs(1), 1, direction, DIRECTIONS)

    if MODE == STEPWISE:
        t = step_position(phase, T, length, direction, DIRECTIONS, HAS_LENGTHS)
        running = running_rows(phase, length, state_mask, HAS_LENGTHS)
        previous = exchange_slot(exchange_ptr, phase + 1, H_PAD, BLOCK_B)
        if K_CHUNKS == 1:
            w_i, w_f, w_g, w_o = _gate_tiles(w_hh_ptr, H, cols, True, K_SPLIT, BK)
            h_prev = tl.load(previous + read, cache_modifier=".cg")
            r_i = split_k_dot(h_prev, w_i, DOT_PRECISION)
            r_f = split_k_dot(h_prev, w_f, DOT_PRECISION)
            r_g = split_k_dot(h_prev, w_g, DOT_PRECISION)
            r_o = split_k_dot(h_prev, w_o, DOT_PRECISION)
        else:
            r_i = streamed_dot(previous, read, w_hh_ptr, 0 * H, H, cols, True, K_SPLIT, BK, K_CHUNKS, DOT_PRECISION)
            r_f = streamed_dot(previous, read, w_hh_ptr, 1 * H, H, cols, True, K_SPLIT, BK, K_CHUNKS, DOT_PRECISION)
            r_g = streamed_dot(previous, read, w_hh_ptr, 2 * H, H, cols, True, K_SPLIT, BK, K_CHUNKS, DOT_PRECISION)
            r_o = streamed_dot(previous, read, w_hh_ptr, 3 * H, H, cols, True, K_SPLIT, BK, K_CHUNKS, DOT_PRECISION)
        if phase == 0:
            c = tl.load(c0_ptr + state_offsets, mask=state_mask, other=0.0).to(tl.float32)
        else:
            c = tl.load(c_n_ptr + state_offsets, mask=state_mask, other=0.0)
        h, c = _forward_step(xg_ptr, y_ptr, c_all_ptr, t, B, H, r_i, r_f, r_g, r_o, c, gate_offsets, state_offsets,
                             y_offsets, state_mask, running, TRAINING, DIRECTIONS, HAS_LENGTHS)
        h = h.to(dtype)
        publish_state(exchange_ptr, phase, h, write, running, H_PAD, BLOCK_B, HAS_LENGTHS)
    else:
        w_i, w_f, w_g, w_o = _gate_tiles(w_hh_ptr, H, cols, True, K_SPLIT, BK)
        offsets, mask = chunk_offsets(rows, B, H, H, K_SPLIT, BK)
        h_prev = tl.load(h0_ptr + offsets, mask=mask, other=0.0).to(dtype)
        c = tl.load(c0_ptr + state_offsets, mask=state_mask, other=0.0).to(tl.float32)
        n_programs_h = tl.num_programs(0)
        for s in range(0, T):
            t = step_position(s, T, length, direction, DIRECTIONS, HAS_LENGTHS)
            running = running_rows(s, length, state_mask, HAS_LENGTHS)
            if MODE == COOPERATIVE:
                h_prev = tl.load(exchange_slot(exchange_ptr, s + 1, H_PAD, BLOCK_B) + read, cache_modifier=".cg")
            r_i = split_k_dot(h_prev, w_i, DOT_PRECISION)
            r_f = split_k_dot(h_prev, w_f, DOT_PRECISION)
            r_g = split_k_dot(h_prev, w_g, DOT_PRECISION)
            r_o = split_k_dot(h_prev, w_o, DOT_PRECISION)
            h, c = _forward_step(xg_ptr, y_ptr, c_all_ptr, t, B, H, r_i, r_f, r_g, r_o, c, gate_offsets,
                                 state_offsets, y_offsets, state_mask, running, TRAINING, DIRECTIONS, HAS_LENGTHS)
            h = h.to(dtype)
            h_prev = carry_state(h, h_prev, s, length, exchange_ptr, write, running, sync_ptr + pid_b,
                                 n_programs_h * (s + 1), MODE, BLOCK_B, K_SPLIT, BK, H_PAD, HAS_LENGTHS)
    tl.store(c_n_ptr + state_offsets, c, mask=state_mask)


@triton.jit
def _backward_phase(
    xg_ptr, w_hh_ptr, w_i, w_f, w_g, w_o, c_all_ptr, c0_ptr, dy_ptr, dh_n_ptr, dh0_ptr, dc0_ptr, exchange_ptr,
    s, T, B, H, length, direction, dc_carry, cols, read, write, gate_offsets, state_offsets, y_offsets, state_mask,
    BLOCK_B: tl.constexpr, H_PAD: tl.constexpr, K_SPLIT: tl.constexpr, BK: tl.constexpr, K_CHUNKS: tl.constexpr,
    DOT_PRECISION: tl.constexpr, DIRECTIONS: tl.constexpr, HAS_LENGTHS: tl.constexpr,
):
    """Backward phase for processing step ``s`` (``s = -1``: emit dh0, dc0). Returns the new ``dc`` carry.

    ``dh_s = dy_s + sum_gate dgates_{s+1}[gate] @ W_hh[gate rows, units]``, plus ``dh_n`` at each
    row's last step (at s = T-1 without lengths, where there are no matmuls);
    ``dc_s = dc_carry + dh_s * o * (1 - tanh(c_s)^2)`` with ``dc_carry = dc_{s+1} * f_{s+1}``
    (``dc_n`` until a row's last step). Rows that have ended get zero gate gradients.
    ``w_*`` are the on-chip tiles when ``K_CHUNKS == 1``.
    """
    if s == T - 1:
        dh = final_state_gradient(dh_n_ptr, state_offsets, state_mask, s, length, HAS_LENGTHS)
    else:
        later = exchange_slot(exchange_ptr, s + 1, 4 * H_PAD, BLOCK_B)
        if K_CHUNKS == 1:
            dh = split_k_dot(tl.load(later + read, cache_modifier=".cg"), w_i, DOT_PRECISION)
            dh += split_k_dot(tl.load(later + H_PAD + read, cache_modifier=".cg"), w_f, DOT_PRECISION)
            dh += split_k_dot(tl.load(later + 2 * H_PAD + read, cache_modifier=".cg"), w_g, DOT_PRECISION)
            dh += split_k_dot(tl.load(later + 3 * H_PAD + read, cache_modifier=".cg"), w_o, DOT_PRECISION)
        else:
            dh = streamed_dot(later, read, w_hh_ptr, 0 * H, H, cols, False, K_SPLIT, BK, K_CHUNKS, DOT_PRECISION)
            dh += streamed_dot(later + H_PAD, read, w_hh_ptr, 1 * H, H, cols, False, K_SPLIT, BK, K_CHUNKS, DOT_PRECISION)
            dh += streamed_dot(later + 2 * H_PAD, read, w_hh_ptr, 2 * H, H, cols, False, K_SPLIT, BK, K_CHUNKS, DOT_PRECISION)
            dh += streamed_dot(later + 3 * H_PAD, read, w_hh_ptr, 3 * H, H, cols, False, K_SPLIT, BK, K_CHUNKS, DOT_PRECISION)
        if HAS_LENGTHS:
            dh += final_state_gradient(dh_n_ptr, state_offsets, state_mask, s, length, HAS_LENGTHS)
    if s < 0:
        tl.store(dh0_ptr + state_offsets, dh, mask=state_mask)
        tl.store(dc0_ptr + state_offsets, dc_carry, mask=state_mask)
    else:
        t = step_position(s, T, length, direction, DIRECTIONS, HAS_LENGTHS)
        running = running_rows(s, length, state_mask, HAS_LENGTHS)
        step = tl.cast(t, tl.int64) * B
        dh += tl.load(dy_ptr + step * DIRECTIONS * H + y_offsets, mask=running, other=0.0).to(tl.float32)
        gates = xg_ptr + step * 4 * H + gate_offsets
        i = tl.load(gates, mask=running, other=0.0).to(tl.float32)
        f = tl.load(gates + H, mask=running, other=0.0).to(tl.float32)
        g = tl.load(gates + 2 * H, mask=running, other=0.0).to(tl.float32)
        o = tl.load(gates + 3 * H, mask=running, other=0.0).to(tl.float32)
        c = tl.load(c_all_ptr + step * H + state_offsets, mask=running, other=0.0)
        if s == 0:
            c_prev = tl.load(c0_ptr + state_offsets, mask=running, other=0.0).to(tl.float32)
        else:
            before = tl.cast(step_position(s - 1, T, length, direction, DIRECTIONS, HAS_LENGTHS), tl.int64) * B * H
            c_prev = tl.load(c_all_ptr + before + state_offsets, mask=running, other=0.0)
        # rows that have ended load zero gates, so all four gate gradients below are zero
        tanh_c = tanh(c)
        dc = dc_carry + dh * o * (1.0 - tanh_c * tanh_c)
        out = xg_ptr.dtype.element_ty
        di = (dc * g * i * (1.0 - i)).to(out)
        df = (dc * c_prev * f * (1.0 - f)).to(out)
        dg = (dc * i * (1.0 - g * g)).to(out)
        do = (dh * tanh_c * o * (1.0 - o)).to(out)
        tl.store(gates, di, mask=state_mask)
        tl.store(gates + H, df, mask=state_mask)
        tl.store(gates + 2 * H, dg, mask=state_mask)
        tl.store(gates + 3 * H, do, mask=state_mask)
        shared = exchange_slot(exchange_ptr, s, 4 * H_PAD, BLOCK_B) + write
        tl.store(shared, di)
        tl.store(shared + H_PAD, df)
        tl.store(shared + 2 * H_PAD, dg)
        tl.store(shared + 3 * H_PAD, do)
        if HAS_LENGTHS:
            dc_carry = tl.where(running, dc * f, dc_carry)
        else:
            dc_carry = dc * f
    return dc_carry


@triton.jit(do_not_specialize=["T", "B", "phase", "first_direction"])
def lstm_backward_kernel(
    xg_ptr, w_hh_ptr, c_all_ptr, c0_ptr, dy_ptr, dh_n_ptr, dc_n_ptr, dh0_ptr, dc0_ptr, exchange_ptr, lengths_ptr,
    sync_ptr, T, B, H, phase, first_direction,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, H_PAD: tl.constexpr, K_SPLIT: tl.constexpr, K_CHUNKS: tl.constexpr,
    MODE: tl.constexpr, DOT_PRECISION: tl.constexpr, DIRECTIONS: tl.constexpr, HAS_LENGTHS: tl.constexpr,
):
    """Reverse-time recurrence: turns the saved gates in ``xg`` into ``dgates`` in place.

    Runs processing steps ``s = T-1, ..., 0, -1``; step -1 writes ``dh0`` and ``dc0`` (float32). In
    ``STEPWISE`` mode ``phase`` counts launches (s = T-1-phase) and ``dc0`` carries the cell
    gradient from one launch to the next. Every unit's gradient needs all 4H gate gradients of its
    batch row from the step after, so those go through the exchange buffer in every mode.
    """
    BK: tl.constexpr = H_PAD // (K_SPLIT * K_CHUNKS)
    pid_b, rows, cols, state_offsets, state_mask = program_tile(B, H, BLOCK_B, BLOCK_H)
    gate_offsets = rows[:, None] * 4 * H + cols[None, :]
    y_offsets = rows[:, None] * DIRECTIONS * H + cols[None, :]
    read, write = exchange_offsets(rows, cols, 4 * H_PAD, K_SPLIT, BK)
    length = row_lengths(lengths_ptr, rows, B, T, HAS_LENGTHS)
    direction = tl.program_id(2) + first_direction
    xg_ptr = direction_slice(xg_ptr, T * B, 4 * H, direction, DIRECTIONS)
    w_hh_ptr = direction_slice(w_hh_ptr, 4 * H, H, direction, DIRECTIONS)
    c_all_ptr = direction_slice(c_all_ptr, T * B, H, direction, DIRECTIONS)
    c0_ptr = direction_slice(c0_ptr, B, H, direction, DIRECTIONS)
    dh_n_ptr = direction_slice(dh_n_ptr, B, H, direction, DIRECTIONS)
    dc_n_ptr = direction_slice(dc_n_ptr, B, H, direction, DIRECTIONS)
    dh0_ptr = direction_slice(dh0_ptr, B, H, direction, DIRECTIONS)
    dc0_ptr = direction_slice(dc0_ptr, B, H, direction, DIRECTIONS)
    dy_ptr = direction_slice(dy_ptr, 1, H, direction, DIRECTIONS)
    exchange_ptr = direction_slice(exchange_ptr, 2 * tl.num_programs(1) * BLOCK_B, 4 * H_PAD, direction, DIRECTIONS)
    sync_ptr = direction_slice(sync_ptr, tl.num_programs(1), 1, direction, DIRECTIONS)
    if K_CHUNKS == 1:
        w_i, w_f, w_g, w_o = _gate_tiles(w_hh_ptr, H, cols, False, K_SPLIT, BK)
    else:  # streamed: the phase loads its weight chunks itself
        w_i, w_f, w_g, w_o = w_hh_ptr, w_hh_ptr, w_hh_ptr, w_hh_ptr

    if MODE == STEPWISE:
        s = T - 1 - phase
        if phase == 0:
            dc_carry = tl.load(dc_n_ptr + state_offsets, mask=state_mask, other=0.0).to(tl.float32)
        else:
            dc_carry = tl.load(dc0_ptr + state_offsets, mask=state_mask, other=0.0)
        dc_carry = _backward_phase(xg_ptr, w_hh_ptr, w_i, w_f, w_g, w_o, c_all_ptr, c0_ptr, dy_ptr, dh_n_ptr, dh0_ptr,
                                   dc0_ptr, exchange_ptr, s, T, B, H, length, direction, dc_carry, cols, read, write,
                                   gate_offsets, state_offsets, y_offsets, state_mask, BLOCK_B, H_PAD, K_SPLIT, BK,
                                   K_CHUNKS, DOT_PRECISION, DIRECTIONS, HAS_LENGTHS)
        if s >= 0:
            tl.store(dc0_ptr + state_offsets, dc_carry, mask=state_mask)
    else:
        dc_carry = tl.load(dc_n_ptr + state_offsets, mask=state_mask, other=0.0).to(tl.float32)
        n_programs_h = tl.num_programs(0)
        for p in range(0, T + 1):
            s = T - 1 - p
            dc_carry = _backward_phase(xg_ptr, w_hh_ptr, w_i, w_f, w_g, w_o, c_all_ptr, c0_ptr, dy_ptr, dh_n_ptr,
                                       dh0_ptr, dc0_ptr, exchange_ptr, s, T, B, H, length, direction, dc_carry, cols,
                                       read, write, gate_offsets, state_offsets, y_offsets, state_mask, BLOCK_B, H_PAD,
                                       K_SPLIT, BK, K_CHUNKS, DOT_PRECISION, DIRECTIONS, HAS_LENGTHS)
            step_barrier(sync_ptr + pid_b, n_programs_h * (p + 1), MODE)
