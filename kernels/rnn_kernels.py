"""Triton kernels of the Elman RNN recurrence ``h_t = act(xw_t + W_hh h_{t-1})`` (act = tanh or relu).

``xw (T, B, H)`` holds ``W_ih x_t + b_ih + b_hh`` for all steps, computed by one GEMM beforehand
(:mod:`rnnbench.kernels.rnn`). ``w_hh (H, H)``; ``h0, dh_n, dh0 (B, H)``; ``y, dy, dz (T, B, H)`` where
``dz`` is the gradient of the pre-activation; ``exchange (2, B_pad, H_PAD)`` carries hidden states
(forward, ``h0`` copied into slot 1 beforehand) or ``dz`` rows (backward) between programs, see
:func:`rnnbench.kernels.primitives.exchange_offsets`. Program (pid_h, pid_b) owns hidden units
``pid_h*BLOCK_H + [0, BLOCK_H)`` of batch rows ``pid_b*BLOCK_B + [0, BLOCK_B)`` and keeps its
split-K ``W_hh`` tile on chip for the whole launch (``K_CHUNKS = 1``; layers too large for that run
``STEPWISE`` and stream it in chunks); accumulation and the nonlinearity are float32.
Execution modes and the split-K matmul are described in :mod:`rnnbench.kernels.primitives`.
"""

import triton
import triton.language as tl

from rnnbench.kernels.primitives import (
    COOPERATIVE, PERSISTENT, STEPWISE, chunk_offsets, exchange_offsets, exchange_slot, program_tile, split_k_dot,
    step_barrier, streamed_dot, tanh, to_chunks, weight_chunks,
)


@triton.jit
def _forward_step(xw_ptr, y_ptr, t, B, H, recurrent, state_offsets, state_mask, RELU: tl.constexpr):
    """``h_t = act(xw_t + recurrent)`` for this program's units, stored and returned (float32)."""
    step = tl.cast(t, tl.int64) * B * H
    pre = recurrent + tl.load(xw_ptr + step + state_offsets, mask=state_mask, other=0.0).to(tl.float32)
    if RELU:
        h = tl.maximum(pre, 0.0)
    else:
        h = tanh(pre)
    tl.store(y_ptr + step + state_offsets, h.to(y_ptr.dtype.element_ty), mask=state_mask)
    return h


@triton.jit(do_not_specialize=["T", "B", "phase"])
def rnn_forward_kernel(
    xw_ptr, w_hh_ptr, h0_ptr, y_ptr, exchange_ptr, sync_ptr,
    T, B, H, phase,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, H_PAD: tl.constexpr, K_SPLIT: tl.constexpr, K_CHUNKS: tl.constexpr,
    MODE: tl.constexpr, RELU: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """Forward recurrence; ``phase`` is the time step of a ``STEPWISE`` launch. h_T is ``y[T-1]``."""
    BK: tl.constexpr = H_PAD // (K_SPLIT * K_CHUNKS)
    pid_b, rows, cols, state_offsets, state_mask = program_tile(B, H, BLOCK_B, BLOCK_H)
    read, write = exchange_offsets(rows, cols, H_PAD, K_SPLIT, BK)
    dtype = y_ptr.dtype.element_ty

    if MODE == STEPWISE:
        previous = exchange_slot(exchange_ptr, phase + 1, H_PAD, BLOCK_B)
        if K_CHUNKS == 1:
            w = weight_chunks(w_hh_ptr, 0, 0, H, cols, True, K_SPLIT, BK)
            recurrent = split_k_dot(tl.load(previous + read, cache_modifier=".cg"), w, DOT_PRECISION)
        else:
            recurrent = streamed_dot(previous, read, w_hh_ptr, 0, H, cols, True, K_SPLIT, BK, K_CHUNKS, DOT_PRECISION)
        h = _forward_step(xw_ptr, y_ptr, phase, B, H, recurrent, state_offsets, state_mask, RELU)
        tl.store(exchange_slot(exchange_ptr, phase, H_PAD, BLOCK_B) + write, h.to(dtype))
    else:
        w = weight_chunks(w_hh_ptr, 0, 0, H, cols, True, K_SPLIT, BK)
        offsets, mask = chunk_offsets(rows, B, H, H, K_SPLIT, BK)
        h_prev = tl.load(h0_ptr + offsets, mask=mask, other=0.0).to(dtype)
        n_programs_h = tl.num_programs(0)
        for t in range(0, T):
            if MODE == COOPERATIVE:
                h_prev = tl.load(exchange_slot(exchange_ptr, t + 1, H_PAD, BLOCK_B) + read, cache_modifier=".cg")
            h = _forward_step(xw_ptr, y_ptr, t, B, H, split_k_dot(h_prev, w, DOT_PRECISION), state_offsets, state_mask, RELU)
            if MODE == PERSISTENT:
                h_prev = to_chunks(h.to(dtype), BLOCK_B, K_SPLIT, BK)
            else:
                tl.store(exchange_slot(exchange_ptr, t, H_PAD, BLOCK_B) + write, h.to(dtype))
                step_barrier(sync_ptr + pid_b, n_programs_h * (t + 1), MODE)


@triton.jit
def _backward_phase(
    y_ptr, w_hh_ptr, w, dy_ptr, dh_n_ptr, dz_ptr, dh0_ptr, exchange_ptr, t, T, B, H, cols, read, write, state_offsets,
    state_mask, BLOCK_B: tl.constexpr, H_PAD: tl.constexpr, K_SPLIT: tl.constexpr, BK: tl.constexpr,
    K_CHUNKS: tl.constexpr, RELU: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """Phase ``t`` (``t = -1``: emit dh0): ``dh_t = dy_t + dz_{t+1} @ W_hh[:, units]``, ``dz_t = dh_t * act'``.

    ``w`` is the on-chip tile when ``K_CHUNKS == 1``."""
    if t == T - 1:
        dh = tl.load(dh_n_ptr + state_offsets, mask=state_mask, other=0.0).to(tl.float32)
    else:
        later = exchange_slot(exchange_ptr, t + 1, H_PAD, BLOCK_B)
        if K_CHUNKS == 1:
            dh = split_k_dot(tl.load(later + read, cache_modifier=".cg"), w, DOT_PRECISION)
        else:
            dh = streamed_dot(later, read, w_hh_ptr, 0, H, cols, False, K_SPLIT, BK, K_CHUNKS, DOT_PRECISION)
    if t < 0:
        tl.store(dh0_ptr + state_offsets, dh, mask=state_mask)
    else:
        step = tl.cast(t, tl.int64) * B * H
        dh += tl.load(dy_ptr + step + state_offsets, mask=state_mask, other=0.0).to(tl.float32)
        h = tl.load(y_ptr + step + state_offsets, mask=state_mask, other=0.0).to(tl.float32)
        if RELU:
            dz = tl.where(h > 0.0, dh, 0.0)
        else:
            dz = dh * (1.0 - h * h)
        dz = dz.to(dz_ptr.dtype.element_ty)
        tl.store(dz_ptr + step + state_offsets, dz, mask=state_mask)
        tl.store(exchange_slot(exchange_ptr, t, H_PAD, BLOCK_B) + write, dz)


@triton.jit(do_not_specialize=["T", "B", "phase"])
def rnn_backward_kernel(
    y_ptr, w_hh_ptr, dy_ptr, dh_n_ptr, dz_ptr, dh0_ptr, exchange_ptr, sync_ptr,
    T, B, H, phase,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, H_PAD: tl.constexpr, K_SPLIT: tl.constexpr, K_CHUNKS: tl.constexpr,
    MODE: tl.constexpr, RELU: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """Reverse-time recurrence writing ``dz`` and ``dh0`` (float32); phases t = T-1, ..., 0, -1.

    In ``STEPWISE`` mode ``phase`` counts launches (t = T-1-phase).
    """
    BK: tl.constexpr = H_PAD // (K_SPLIT * K_CHUNKS)
    pid_b, rows, cols, state_offsets, state_mask = program_tile(B, H, BLOCK_B, BLOCK_H)
    read, write = exchange_offsets(rows, cols, H_PAD, K_SPLIT, BK)
    if K_CHUNKS == 1:
        w = weight_chunks(w_hh_ptr, 0, 0, H, cols, False, K_SPLIT, BK)
    else:  # streamed: the phase loads its weight chunks itself
        w = w_hh_ptr

    if MODE == STEPWISE:
        _backward_phase(y_ptr, w_hh_ptr, w, dy_ptr, dh_n_ptr, dz_ptr, dh0_ptr, exchange_ptr, T - 1 - phase, T, B, H, cols,
                        read, write, state_offsets, state_mask, BLOCK_B, H_PAD, K_SPLIT, BK, K_CHUNKS, RELU, DOT_PRECISION)
    else:
        n_programs_h = tl.num_programs(0)
        for p in range(0, T + 1):
            _backward_phase(y_ptr, w_hh_ptr, w, dy_ptr, dh_n_ptr, dz_ptr, dh0_ptr, exchange_ptr, T - 1 - p, T, B, H, cols,
                            read, write, state_offsets, state_mask, BLOCK_B, H_PAD, K_SPLIT, BK, K_CHUNKS, RELU,
                            DOT_PRECISION)
            step_barrier(sync_ptr + pid_b, n_programs_h * (p + 1), MODE)
