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
* ``sync``: int32 ``(D, batch blocks, SYNC_ROW)``, fresh from :func:`rnnbench.kernels.launch.reset_sync`
  (the producers' flags and the status zero, every other flag slot ``UNUSED_FLAG``, which a vector
  poll reads unmasked): the grid barrier's flags and status
  (:func:`rnnbench.kernels.primitives.grid_barrier`).
* With ``DIRECTIONS = 2`` every buffer but ``y``, ``dy`` and ``lengths`` is stacked over the two
  directions (a leading axis of 2) and the grid's third axis is the direction; see
  :mod:`rnnbench.kernels.primitives` for how direction 1 and per-row lengths are run. Past a row's
  end ``y`` and the gate gradients are zero and the states keep their last value.

Program (pid_h, pid_b) owns hidden units ``pid_h*BLOCK_H + [0, BLOCK_H)`` of batch rows
``pid_b*BLOCK_B + [0, BLOCK_B)``; its tiles are unit-major ``(BLOCK_H, BLOCK_B)`` (see
:mod:`rnnbench.kernels.primitives`). Forward, its slice of ``W_hh`` is the ``4*BLOCK_H`` gate rows of
its units, one ``(4*BLOCK_H, H_PAD)`` operand whose product with the state rows gives all four
gates at once, split by :func:`~rnnbench.kernels.primitives.split_gates` without moving data;
backward, it is the ``(BLOCK_H, 4*H_PAD)`` transpose of its units' columns, multiplied with all
gate gradients of the step after. The slice is loaded once per launch in the in-kernel loops and
streamed in blocks by a ``STEPWISE`` launch. In the loops the step's inputs from global memory
(``xg`` forward; ``dy``, the saved gates and cell states backward) are loaded for the next step
before the grid barrier, so their latency overlaps the wait. Cell state, accumulation and all
elementwise math are float32; ``h`` enters the dot in the storage dtype (fp32, fp16 or bf16).
"""

import triton
import triton.language as tl

from rnnbench.kernels.primitives import (
    COOPERATIVE, STEPWISE, carry_state, chunk_offsets, direction_slice, exchange_offsets, exchange_slot,
    final_state_gradient, gate_rows, held_product, held_weights, program_tile, publish_state, row_lengths,
    running_rows, split_accumulator, split_dot, split_gates, step_arrive, step_position, step_wait, streamed_product,
    sync_slice, tanh,
)


@triton.jit
def _gate_inputs(xg_ptr, t, B, H, gate_offsets, mask):
    """The ``(4*BLOCK_H, BLOCK_B)`` gate pre-activations from ``xg`` at time index ``t`` (rows as
    :func:`gate_rows` orders them), zero where ``mask`` is false, in the storage dtype: a load for
    the next step stays in flight across the grid barrier until :func:`_forward_step` converts it."""
    return tl.load(xg_ptr + tl.cast(t, tl.int64) * B * 4 * H + gate_offsets, mask=mask, other=0.0)


@triton.jit
def _forward_step(
    xg_ptr, y_ptr, c_all_ptr, t, B, H, pre, inputs, c, gate_offsets, state_offsets, y_offsets, state_mask, running,
    gate_running, BLOCK_H: tl.constexpr, BLOCK_B: tl.constexpr, TRAINING: tl.constexpr, DIRECTIONS: tl.constexpr,
    HAS_LENGTHS: tl.constexpr,
):
    """One LSTM step at time index ``t`` for this program's units from the recurrent product
    ``pre`` and ``inputs`` (the step's :func:`_gate_inputs`), both ``(4*BLOCK_H, BLOCK_B)`` with
    rows as :func:`gate_rows` orders them: returns ``(h_t, c_t)`` (float32) and stores h_t (and in
    training the gates and c_t). Rows outside ``running`` keep ``c`` and get a zero output."""
    GROUP: tl.constexpr = min(BLOCK_H, 8)
    z = pre + inputs.to(tl.float32)
    cell_gate = ((tl.arange(0, 4 * BLOCK_H) // GROUP) % 4 == 2)[:, None]  # g: tanh; i, f, o: sigmoid
    activated = tl.sigmoid(tl.where(cell_gate, 2.0 * z, z))
    activated = tl.where(cell_gate, 2.0 * activated - 1.0, activated)
    i, f, g, o = split_gates(activated, BLOCK_H, BLOCK_B)
    c_t = f * c + i * g
    h = o * tanh(c_t)
    step = tl.cast(t, tl.int64) * B
    y = y_ptr + step * DIRECTIONS * H + y_offsets
    if HAS_LENGTHS:
        tl.store(y, tl.where(running, h, 0.0).to(y_ptr.dtype.element_ty), mask=state_mask)
        c_t = tl.where(running, c_t, c)
    else:
        tl.store(y, h.to(y_ptr.dtype.element_ty), mask=state_mask)
    if TRAINING:
        tl.store(xg_ptr + step * 4 * H + gate_offsets, activated.to(xg_ptr.dtype.element_ty), mask=gate_running)
        tl.store(c_all_ptr + step * H + state_offsets, c_t, mask=running)
    return h, c_t


@triton.jit(do_not_specialize=["T", "B", "phase", "first_direction"])
def lstm_forward_kernel(
    xg_ptr, w_hh_ptr, h0_ptr, c0_ptr, y_ptr, c_all_ptr, c_n_ptr, exchange_ptr, lengths_ptr, sync_ptr,
    T, B, H, w_stride, phase, first_direction,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, H_PAD: tl.constexpr, K_SPLIT: tl.constexpr, K_CHUNKS: tl.constexpr,
    MODE: tl.constexpr, TRAINING: tl.constexpr, DOT_PRECISION: tl.constexpr, DIRECTIONS: tl.constexpr,
    HAS_LENGTHS: tl.constexpr, POLL: tl.constexpr, POLL_ORDER: tl.constexpr, POLL_VECTOR: tl.constexpr,
    POLL_FIRST_WARP: tl.constexpr,
    M_SPLIT: tl.constexpr = 1,
):
    """Forward recurrence (see the module docstring for layouts); computes
    :func:`rnnbench.baselines.numpy_rnn.lstm_forward` without the input projection.

    ``c_n`` (float32) receives each row's final cell state (its final ``h`` is in ``y``: at its
    last step going forwards, at time 0 going backwards); in ``STEPWISE`` mode ``c_n`` also carries
    the cell state from one launch to the next. ``phase`` is the processing step of a ``STEPWISE`` launch.
    ``M_SPLIT``: the parts the gate rows are cut into in the batched dot (:func:`~rnnbench.kernels.primitives.split_dot`,
    :func:`rnnbench.kernels.plan.row_split`).
    """
    BK: tl.constexpr = H_PAD // (K_SPLIT * K_CHUNKS)
    M: tl.constexpr = 4 * BLOCK_H
    pid_b, rows, units, state_offsets, state_mask = program_tile(B, H, BLOCK_B, BLOCK_H)
    w_rows, w_valid = gate_rows(H, 4, BLOCK_H)
    gate_offsets = rows[None, :] * 4 * H + w_rows[:, None]
    gate_mask = w_valid[:, None] & (rows < B)[None, :]
    y_offsets = rows[None, :] * DIRECTIONS * H + units[:, None]
    read, write = exchange_offsets(rows, units, H_PAD, K_SPLIT, BK)
    dtype = y_ptr.dtype.element_ty
    length = row_lengths(lengths_ptr, rows, B, T, HAS_LENGTHS)
    direction = tl.program_id(2) + first_direction
    xg_ptr = direction_slice(xg_ptr, T * B, 4 * H, direction, DIRECTIONS)
    w_hh_ptr = direction_slice(w_hh_ptr, 4 * H, w_stride, direction, DIRECTIONS)
    h0_ptr = direction_slice(h0_ptr, B, H, direction, DIRECTIONS)
    c0_ptr = direction_slice(c0_ptr, B, H, direction, DIRECTIONS)
    c_n_ptr = direction_slice(c_n_ptr, B, H, direction, DIRECTIONS)
    c_all_ptr = direction_slice(c_all_ptr, T * B, H, direction, DIRECTIONS)
    y_ptr = direction_slice(y_ptr, 1, H, direction, DIRECTIONS)
    exchange_ptr = direction_slice(exchange_ptr, 2 * tl.num_programs(1) * BLOCK_B, H_PAD, direction, DIRECTIONS)
    flags_ptr = sync_slice(sync_ptr, direction, DIRECTIONS)

    if MODE == STEPWISE:
        t = step_position(phase, T, length, direction, DIRECTIONS, HAS_LENGTHS)
        running = running_rows(phase, length, state_mask, HAS_LENGTHS)
        previous = exchange_slot(exchange_ptr, phase + 1, H_PAD, BLOCK_B)
        pre = streamed_product(w_hh_ptr, w_rows * w_stride, w_valid, 0, w_stride, 1, previous, read, M, BLOCK_B, K_CHUNKS, K_CHUNKS,
                               K_SPLIT, BK, DOT_PRECISION, M_SPLIT)
        if phase == 0:
            c = tl.load(c0_ptr + state_offsets, mask=state_mask, other=0.0).to(tl.float32)
        else:
            c = tl.load(c_n_ptr + state_offsets, mask=state_mask, other=0.0)
        gate_running = running_rows(phase, length, gate_mask, HAS_LENGTHS)
        inputs = _gate_inputs(xg_ptr, t, B, H, gate_offsets, gate_running)
        h, c = _forward_step(xg_ptr, y_ptr, c_all_ptr, t, B, H, pre, inputs, c, gate_offsets, state_offsets,
                             y_offsets, state_mask, running, gate_running, BLOCK_H, BLOCK_B, TRAINING, DIRECTIONS,
                             HAS_LENGTHS)
        publish_state(exchange_ptr, phase, h.to(dtype), write, running, H_PAD, BLOCK_B, HAS_LENGTHS)
    else:
        blocks = held_weights(w_hh_ptr, w_rows * w_stride, w_valid, 0, w_stride, 1, K_CHUNKS, K_CHUNKS, K_SPLIT, BK,
                              M_SPLIT)
        offsets, mask = chunk_offsets(rows, B, H, H, K_SPLIT, BK)  # the persistent state operand (one block)
        h_prev = tl.load(h0_ptr + offsets, mask=mask, other=0.0).to(dtype)
        c = tl.load(c0_ptr + state_offsets, mask=state_mask, other=0.0).to(tl.float32)
        inputs = _gate_inputs(xg_ptr, step_position(0, T, length, direction, DIRECTIONS, HAS_LENGTHS), B, H,
                              gate_offsets, running_rows(0, length, gate_mask, HAS_LENGTHS))
        for s in range(0, T):
            # the next step's inputs, loaded a whole step ahead (the last step loads its own again)
            upcoming = tl.minimum(s + 1, T - 1)
            following = _gate_inputs(xg_ptr, step_position(upcoming, T, length, direction, DIRECTIONS, HAS_LENGTHS), B,
                                     H, gate_offsets, running_rows(upcoming, length, gate_mask, HAS_LENGTHS))
            t = step_position(s, T, length, direction, DIRECTIONS, HAS_LENGTHS)
            running = running_rows(s, length, state_mask, HAS_LENGTHS)
            if MODE == COOPERATIVE:
                pre = held_product(blocks, exchange_slot(exchange_ptr, s + 1, H_PAD, BLOCK_B), read, M, BLOCK_B,
                                   K_CHUNKS, K_SPLIT, BK, DOT_PRECISION, M_SPLIT)
            else:
                pre = split_dot(blocks[0], h_prev, split_accumulator(M, BLOCK_B, K_SPLIT), M, BLOCK_B, K_SPLIT, BK,
                                DOT_PRECISION)
            h, c = _forward_step(xg_ptr, y_ptr, c_all_ptr, t, B, H, pre, inputs, c, gate_offsets, state_offsets,
                                 y_offsets, state_mask, running, running_rows(s, length, gate_mask, HAS_LENGTHS),
                                 BLOCK_H, BLOCK_B, TRAINING, DIRECTIONS, HAS_LENGTHS)
            h_prev = carry_state(h.to(dtype), h_prev, s, length, exchange_ptr, write, running, flags_ptr, MODE, BLOCK_B,
                                 K_SPLIT, BK, H_PAD, HAS_LENGTHS)
            step_wait(flags_ptr, s + 1, MODE, POLL, POLL_ORDER, POLL_VECTOR, POLL_FIRST_WARP)
            inputs = following
    tl.store(c_n_ptr + state_offsets, c, mask=state_mask)


@triton.jit
def _backward_inputs(xg_ptr, c_all_ptr, c0_ptr, dy_ptr, s, T, B, H, length, direction, gate_offsets, state_offsets,
                     y_offsets, state_mask, DIRECTIONS: tl.constexpr, HAS_LENGTHS: tl.constexpr):
    """What phase ``s >= 0`` reads besides the exchange, float32 ``(BLOCK_H, BLOCK_B)`` tiles
    ``(dy, i, f, g, o, c_s, c_{s-1})``, zero for rows not running at ``s``."""
    t = step_position(s, T, length, direction, DIRECTIONS, HAS_LENGTHS)
    running = running_rows(s, length, state_mask, HAS_LENGTHS)
    step = tl.cast(t, tl.int64) * B
    dy = tl.load(dy_ptr + step * DIRECTIONS * H + y_offsets, mask=running, other=0.0).to(tl.float32)
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
    return dy, i, f, g, o, c, c_prev


@triton.jit
def gate_gradients(dh, dc_carry, inputs, out: tl.constexpr):
    """One step's cell-state gradient and gate gradients from ``dh`` (the recurrent part, float32),
    the carried ``dc`` and the step's :func:`_backward_inputs`: ``(dc, f, di, df, dg, do)``, the four
    gate gradients (of the pre-activations) rounded to ``out``. Rows that have ended load zero
    gates, so their four gate gradients are zero. Both backward kernels' (the Gluon one's too)."""
    dy, i, f, g, o, c, c_prev = inputs
    dh += dy
    tanh_c = tanh(c)
    dc = dc_carry + dh * o * (1.0 - tanh_c * tanh_c)
    return (dc, f, (dc * g * i * (1.0 - i)).to(out), (dc * c_prev * f * (1.0 - f)).to(out),
            (dc * i * (1.0 - g * g)).to(out), (dh * tanh_c * o * (1.0 - o)).to(out))


@triton.jit
def _backward_phase(
    xg_ptr, w_hh_ptr, blocks, dh_n_ptr, dh0_ptr, dc0_ptr, exchange_ptr, s, T, B, H, w_stride, length, direction, dc_carry,
    inputs, units, read, write, gate_offsets, state_offsets, state_mask,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, H_PAD: tl.constexpr, K_SPLIT: tl.constexpr, BK: tl.constexpr,
    K_CHUNKS: tl.constexpr, MODE: tl.constexpr, DOT_PRECISION: tl.constexpr, DIRECTIONS: tl.constexpr,
    HAS_LENGTHS: tl.constexpr,
):
    """Backward phase for processing step ``s`` (``s = -1``: emit dh0, dc0). Returns the new ``dc`` carry.

    ``dh_s = dy_s + sum_gate dgates_{s+1}[gate] @ W_hh[gate rows, units]``, plus ``dh_n`` at each
    row's last step (at s = T-1 without lengths, where there are no matmuls);
    ``dc_s = dc_carry + dh_s * o * (1 - tanh(c_s)^2)`` with ``dc_carry = dc_{s+1} * f_{s+1}``
    (``dc_n`` until a row's last step). Rows that have ended get zero gate gradients. ``inputs``
    are the phase's :func:`_backward_inputs`; ``blocks`` the held weight blocks (not ``STEPWISE``).
    """
    if s == T - 1:
        dh = final_state_gradient(dh_n_ptr, state_offsets, state_mask, s, length, HAS_LENGTHS)
    else:
        later = exchange_slot(exchange_ptr, s + 1, 4 * H_PAD, BLOCK_B)
        if MODE == STEPWISE:
            dh = streamed_product(w_hh_ptr, units, units < w_stride, H * w_stride, H, w_stride, later, read, BLOCK_H, BLOCK_B, 4 * K_CHUNKS,
                                  K_CHUNKS, K_SPLIT, BK, DOT_PRECISION, ROWS_CONTIGUOUS=True)
        else:
            dh = held_product(blocks, later, read, BLOCK_H, BLOCK_B, 4 * K_CHUNKS, K_SPLIT, BK, DOT_PRECISION)
        if HAS_LENGTHS:
            dh += final_state_gradient(dh_n_ptr, state_offsets, state_mask, s, length, HAS_LENGTHS)
    if s < 0:
        tl.store(dh0_ptr + state_offsets, dh, mask=state_mask)
        tl.store(dc0_ptr + state_offsets, dc_carry, mask=state_mask)
    else:
        t = step_position(s, T, length, direction, DIRECTIONS, HAS_LENGTHS)
        running = running_rows(s, length, state_mask, HAS_LENGTHS)
        dc, f, di, df, dg, do = gate_gradients(dh, dc_carry, inputs, xg_ptr.dtype.element_ty)
        gates = xg_ptr + tl.cast(t, tl.int64) * B * 4 * H + gate_offsets
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
    sync_ptr, T, B, H, w_stride, phase, first_direction,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, H_PAD: tl.constexpr, K_SPLIT: tl.constexpr, K_CHUNKS: tl.constexpr,
    MODE: tl.constexpr, DOT_PRECISION: tl.constexpr, DIRECTIONS: tl.constexpr, HAS_LENGTHS: tl.constexpr,
    POLL: tl.constexpr, POLL_ORDER: tl.constexpr, POLL_VECTOR: tl.constexpr,
    POLL_FIRST_WARP: tl.constexpr,
):
    """Reverse-time recurrence: turns the saved gates in ``xg`` into ``dgates`` in place; computes
    the recurrent part of :func:`rnnbench.baselines.numpy_rnn.lstm_backward`.

    Runs processing steps ``s = T-1, ..., 0, -1``; step -1 writes ``dh0`` and ``dc0`` (float32). In
    ``STEPWISE`` mode ``phase`` counts launches (s = T-1-phase) and ``dc0`` carries the cell
    gradient from one launch to the next. Every unit's gradient needs all 4H gate gradients of its
    batch row from the step after, so those go through the exchange buffer in every mode.
    """
    BK: tl.constexpr = H_PAD // (K_SPLIT * K_CHUNKS)
    pid_b, rows, units, state_offsets, state_mask = program_tile(B, H, BLOCK_B, BLOCK_H)
    gate_offsets = rows[None, :] * 4 * H + units[:, None]
    y_offsets = rows[None, :] * DIRECTIONS * H + units[:, None]
    read, write = exchange_offsets(rows, units, 4 * H_PAD, K_SPLIT, BK)
    length = row_lengths(lengths_ptr, rows, B, T, HAS_LENGTHS)
    direction = tl.program_id(2) + first_direction
    xg_ptr = direction_slice(xg_ptr, T * B, 4 * H, direction, DIRECTIONS)
    w_hh_ptr = direction_slice(w_hh_ptr, 4 * H, w_stride, direction, DIRECTIONS)
    c_all_ptr = direction_slice(c_all_ptr, T * B, H, direction, DIRECTIONS)
    c0_ptr = direction_slice(c0_ptr, B, H, direction, DIRECTIONS)
    dh_n_ptr = direction_slice(dh_n_ptr, B, H, direction, DIRECTIONS)
    dc_n_ptr = direction_slice(dc_n_ptr, B, H, direction, DIRECTIONS)
    dh0_ptr = direction_slice(dh0_ptr, B, H, direction, DIRECTIONS)
    dc0_ptr = direction_slice(dc0_ptr, B, H, direction, DIRECTIONS)
    dy_ptr = direction_slice(dy_ptr, 1, H, direction, DIRECTIONS)
    exchange_ptr = direction_slice(exchange_ptr, 2 * tl.num_programs(1) * BLOCK_B, 4 * H_PAD, direction, DIRECTIONS)
    flags_ptr = sync_slice(sync_ptr, direction, DIRECTIONS)

    if MODE == STEPWISE:
        s = T - 1 - phase
        if phase == 0:
            dc_carry = tl.load(dc_n_ptr + state_offsets, mask=state_mask, other=0.0).to(tl.float32)
        else:
            dc_carry = tl.load(dc0_ptr + state_offsets, mask=state_mask, other=0.0)
        inputs = _backward_inputs(xg_ptr, c_all_ptr, c0_ptr, dy_ptr, tl.maximum(s, 0), T, B, H, length, direction,
                                  gate_offsets, state_offsets, y_offsets, state_mask, DIRECTIONS, HAS_LENGTHS)
        dc_carry = _backward_phase(xg_ptr, w_hh_ptr, w_hh_ptr, dh_n_ptr, dh0_ptr, dc0_ptr, exchange_ptr, s, T, B, H,
                                   w_stride, length, direction, dc_carry, inputs, units, read, write, gate_offsets, state_offsets,
                                   state_mask, BLOCK_B, BLOCK_H, H_PAD, K_SPLIT, BK, K_CHUNKS, MODE, DOT_PRECISION,
                                   DIRECTIONS, HAS_LENGTHS)
        if s >= 0:
            tl.store(dc0_ptr + state_offsets, dc_carry, mask=state_mask)
    else:
        blocks = held_weights(w_hh_ptr, units, units < w_stride, H * w_stride, H, w_stride, 4 * K_CHUNKS, K_CHUNKS, K_SPLIT, BK,
                              ROWS_CONTIGUOUS=True)
        dc_carry = tl.load(dc_n_ptr + state_offsets, mask=state_mask, other=0.0).to(tl.float32)
        inputs = _backward_inputs(xg_ptr, c_all_ptr, c0_ptr, dy_ptr, T - 1, T, B, H, length, direction, gate_offsets,
                                  state_offsets, y_offsets, state_mask, DIRECTIONS, HAS_LENGTHS)
        for p in range(0, T + 1):
            s = T - 1 - p
            # the next phase's inputs, loaded a whole phase ahead (phase -1 reads nothing: the last
            # two phases load step 0's)
            following = _backward_inputs(xg_ptr, c_all_ptr, c0_ptr, dy_ptr, tl.maximum(s - 1, 0), T, B, H, length,
                                         direction, gate_offsets, state_offsets, y_offsets, state_mask, DIRECTIONS,
                                         HAS_LENGTHS)
            dc_carry = _backward_phase(xg_ptr, w_hh_ptr, blocks, dh_n_ptr, dh0_ptr, dc0_ptr, exchange_ptr, s, T, B, H,
                                       w_stride, length, direction, dc_carry, inputs, units, read, write, gate_offsets,
                                       state_offsets, state_mask, BLOCK_B, BLOCK_H, H_PAD, K_SPLIT, BK, K_CHUNKS, MODE,
                                       DOT_PRECISION, DIRECTIONS, HAS_LENGTHS)
            step_arrive(flags_ptr, MODE)
            step_wait(flags_ptr, p + 1, MODE, POLL, POLL_ORDER, POLL_VECTOR, POLL_FIRST_WARP)
            inputs = following
