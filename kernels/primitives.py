"""Triton building blocks shared by the RNN and LSTM kernels.

**Execution modes** (the ``MODE`` constexpr of every recurrent kernel, chosen by :mod:`rnnbench.kernels.plan`):

* ``PERSISTENT``: one program per batch block owns every hidden unit and all of ``W_hh``; the kernel
  loops over time itself and the state stays in registers from one step to the next.
* ``COOPERATIVE``: the hidden units are split across programs; the kernel loops over time itself and
  separates steps with a grid barrier among the programs of a batch block (software barrier on an
  atomic counter; the grid is launched cooperatively so the driver refuses a grid that cannot be
  co-resident instead of letting it deadlock).
* ``STEPWISE``: the same split, but one launch per time step; the kernel boundary is the barrier.
  Needs nothing co-resident, so it works for every size, and it is how the interpreter (which runs
  programs one after another and cannot spin on a barrier) executes the cooperative path's math.

In every mode but ``PERSISTENT`` the full previous state row (all hidden units of a batch block) is
read from global memory at each step, because other programs wrote parts of it. That exchange goes
through a small padded buffer ``(2, B_pad, H_PAD)`` rather than through the output itself: its
compile-time strides make the loads maskless and vectorised whatever H is (see
:func:`exchange_offsets`), and two slots alternate between steps (:func:`exchange_slot`).

**Directions and lengths** (the ``DIRECTIONS`` and ``HAS_LENGTHS`` constexprs). The grid of a
bidirectional layer has a third axis: a program's direction is ``program_id(2) + first_direction``
(both directions in one launch, or one launch per direction with ``first_direction`` 0 then 1 when
the two would not be co-resident). The direction picks the program's slice of every buffer stacked
over directions (:func:`direction_slice`), and direction 1 walks time backwards
(:func:`step_position`). With per-row ``lengths``, row b runs steps ``[0, lengths[b])``
and its state is frozen after them (:func:`running_rows`, :func:`publish_state`), so a batch of
mixed lengths is still one launch. With one direction and no lengths both switches compile away.

**Split-K recurrent matmul.** The reduction dimension ``H_PAD`` is split into ``K_SPLIT`` chunks of
``BK = H_PAD / K_SPLIT``: the state is a ``(K_SPLIT, BLOCK_B, BK)`` tile, each weight tile
``(K_SPLIT, BK, BLOCK_H)``, and ``tl.dot`` on these 3-D tiles puts one warp (or more) on each chunk,
so no warp holds the whole state row or the whole weight slice; ``tl.sum`` over the chunks finishes
the product. With a plain 2-D dot and a 16-row batch block every warp would hold the whole
``(16, H_PAD)`` state: compiled for sm_90 that spilled registers from H = 128 on.
"""

import triton
import triton.language as tl

PERSISTENT: tl.constexpr = tl.constexpr(0)
COOPERATIVE: tl.constexpr = tl.constexpr(1)
STEPWISE: tl.constexpr = tl.constexpr(2)
MODE_NAMES = {"persistent": 0, "cooperative": 1, "stepwise": 2}


@triton.jit
def tanh(x):
    """tanh through the sigmoid (Triton has no portable tanh that also runs in the interpreter).

    Absolute error is a few ulp of 1 in fp32; exp overflow is harmless (sigmoid saturates to 0 or 1).
    """
    return 2.0 * tl.sigmoid(2.0 * x) - 1.0


@triton.jit
def grid_barrier(counter_ptr, expected):
    """Wait until ``expected`` arrivals are counted at ``counter_ptr`` (this program's included).

    The counter only grows (one arrival per program per step, expected = programs x steps done), so
    no reset is needed between steps. The CTA barrier before the release makes every thread's stores
    of this step visible before the arrival; the acquire makes the other programs' stores visible
    after it, and loads that follow use ``.cg`` (L2) so no stale L1 line is read.
    """
    tl.debug_barrier()
    tl.atomic_add(counter_ptr, 1, sem="release", scope="gpu")
    arrived = tl.atomic_add(counter_ptr, 0, sem="acquire", scope="gpu")
    while arrived < expected:
        arrived = tl.atomic_add(counter_ptr, 0, sem="acquire", scope="gpu")
    tl.debug_barrier()


@triton.jit
def step_barrier(counter_ptr, expected, MODE: tl.constexpr):
    """The barrier between two in-kernel time steps for ``MODE`` (nothing to do for ``STEPWISE``)."""
    if MODE == COOPERATIVE:
        grid_barrier(counter_ptr, expected)
    elif MODE == PERSISTENT:
        tl.debug_barrier()


@triton.jit
def program_tile(B, H, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """This program's tile: ``(pid_b, rows, cols, offsets, mask)`` for its ``(BLOCK_B, BLOCK_H)``
    block of a row-major ``(B, H)`` state (program axis 0: hidden block, axis 1: batch block)."""
    pid_b = tl.program_id(1)
    rows = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.program_id(0) * BLOCK_H + tl.arange(0, BLOCK_H)
    return pid_b, rows, cols, rows[:, None] * H + cols[None, :], (rows < B)[:, None] & (cols < H)[None, :]


@triton.jit
def chunk_offsets(rows, B, row_stride, width, K_SPLIT: tl.constexpr, BK: tl.constexpr):
    """Offsets and mask of the ``(K_SPLIT, BLOCK_B, BK)`` split-K view of rows ``rows`` of a matrix.

    Element ``[s, b, kk]`` is column ``s*BK + kk`` of row ``rows[b]`` (rows ``row_stride`` apart);
    rows >= B and columns >= ``width`` are masked.
    """
    s = tl.arange(0, K_SPLIT)
    kk = tl.arange(0, BK)
    column = s[:, None, None] * BK + kk[None, None, :]
    return rows[None, :, None] * row_stride + column, (column < width) & (rows < B)[None, :, None]


@triton.jit
def to_chunks(state, BLOCK_B: tl.constexpr, K_SPLIT: tl.constexpr, BK: tl.constexpr):
    """``(BLOCK_B, K_SPLIT*BK)`` -> the ``(K_SPLIT, BLOCK_B, BK)`` split-K view, in registers."""
    return tl.permute(tl.reshape(state, (BLOCK_B, K_SPLIT, BK)), (1, 0, 2))


@triton.jit
def exchange_offsets(rows, cols, ROW_WIDTH: tl.constexpr, K_SPLIT: tl.constexpr, BK: tl.constexpr):
    """Offsets into one slot of an exchange buffer ``(2, B_pad, ROW_WIDTH)``.

    Returns ``(read, write)``: ``read`` is the ``(K_SPLIT, BLOCK_B, BK)`` split-K view of the first
    ``K_SPLIT*BK`` columns of rows ``rows`` (add ``c*K_SPLIT*BK`` for chunk c); ``write`` the
    ``(BLOCK_B, BLOCK_H)`` tile of this program's units. Strides are compile-time constants and the buffer is padded (rows to whole batch blocks,
    columns to ``H_PAD``, padding kept zero), so neither needs a mask and loads vectorise for every H.
    """
    s = tl.arange(0, K_SPLIT)
    kk = tl.arange(0, BK)
    read = rows[None, :, None] * ROW_WIDTH + s[:, None, None] * BK + kk[None, None, :]
    write = rows[:, None] * ROW_WIDTH + cols[None, :]
    return read, write


@triton.jit
def exchange_slot(exchange_ptr, t, ROW_WIDTH: tl.constexpr, BLOCK_B: tl.constexpr):
    """Slot ``t % 2`` of an exchange buffer: step t writes its slot, step t+1 reads it.

    Two slots suffice because the barrier after step t also orders every read of slot ``(t-1) % 2``
    (done during step t) before any write of that slot in step t+1.
    """
    return exchange_ptr + (t % 2) * (tl.num_programs(1) * BLOCK_B * ROW_WIDTH)


@triton.jit
def weight_chunks(w_ptr, row_base, k_base, H, units, TRANSPOSED: tl.constexpr, K_SPLIT: tl.constexpr, BK: tl.constexpr):
    """``(K_SPLIT, BK, BLOCK_H)`` weight tile ``w[s, kk, j]`` of a row-major ``(G*H, H)`` matrix,
    reduction index ``k = k_base + s*BK + kk``.

    ``TRANSPOSED`` (forward): ``W[row_base + units[j], k]``, so ``h @ w`` is ``h W^T``.
    Otherwise (backward): ``W[row_base + k, units[j]]``, so ``d @ w`` is ``d W``.
    Zero outside ``H`` so padded columns contribute nothing.
    """
    s = tl.arange(0, K_SPLIT)
    kk = tl.arange(0, BK)
    k = k_base + s[:, None, None] * BK + kk[None, :, None]
    j = units[None, None, :]
    mask = (k < H) & (j < H)
    if TRANSPOSED:
        tile = tl.load(w_ptr + (row_base + j) * H + k, mask=mask, other=0.0)
    else:
        tile = tl.load(w_ptr + (row_base + k) * H + j, mask=mask, other=0.0)
    return tile


@triton.jit
def split_k_dot(a, w, DOT_PRECISION: tl.constexpr):
    """``(K_SPLIT, BLOCK_B, BK) x (K_SPLIT, BK, BLOCK_H) -> (BLOCK_B, BLOCK_H)`` float32."""
    return tl.sum(tl.dot(a, w, input_precision=DOT_PRECISION), axis=0)


@triton.jit
def streamed_dot(
    a_ptr, read, w_ptr, row_base, H, units,
    TRANSPOSED: tl.constexpr, K_SPLIT: tl.constexpr, BK: tl.constexpr, K_CHUNKS: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """The recurrent product for layers too large to keep a weight slice on chip (``STEPWISE`` only).

    Walks the reduction in ``K_CHUNKS`` chunks of ``K_SPLIT*BK`` columns, loading for each the
    chunk of the state rows (from an exchange slot ``a_ptr``, offsets ``read``) and of the weights,
    so registers hold one chunk whatever H is. Returns ``(BLOCK_B, BLOCK_H)`` float32.
    """
    CHUNK: tl.constexpr = K_SPLIT * BK
    a = tl.load(a_ptr + read, cache_modifier=".cg")
    total = split_k_dot(a, weight_chunks(w_ptr, row_base, 0, H, units, TRANSPOSED, K_SPLIT, BK), DOT_PRECISION)
    for chunk in range(1, K_CHUNKS):
        a = tl.load(a_ptr + chunk * CHUNK + read, cache_modifier=".cg")
        w = weight_chunks(w_ptr, row_base, chunk * CHUNK, H, units, TRANSPOSED, K_SPLIT, BK)
        total += split_k_dot(a, w, DOT_PRECISION)
    return total


@triton.jit
def direction_slice(ptr, count, size, direction, DIRECTIONS: tl.constexpr):
    """``ptr`` advanced to ``direction`` in a buffer stacked over directions, each direction
    ``count * size`` elements (two factors so the product is taken in int64)."""
    if DIRECTIONS == 1:
        return ptr
    else:
        return ptr + direction.to(tl.int64) * count * size


@triton.jit
def row_lengths(lengths_ptr, rows, B, T, HAS_LENGTHS: tl.constexpr):
    """Number of steps of each of this program's rows: ``(BLOCK_B,)`` loaded from ``lengths``
    (int32), or the scalar ``T`` when every row runs all steps."""
    if HAS_LENGTHS:
        return tl.load(lengths_ptr + rows, mask=rows < B, other=0)
    else:
        return T


@triton.jit
def step_position(s, T, length, direction, DIRECTIONS: tl.constexpr, HAS_LENGTHS: tl.constexpr):
    """The time index at which processing step ``s`` reads and writes each row.

    ``s`` going forwards. Going backwards (``direction`` 1): ``length - 1 - s`` while the row
    runs, then ``s`` itself, a padded position that the step fills with zeros, so every position is
    written exactly once. A scalar, or ``(BLOCK_B, 1)`` when rows of different lengths run backwards.
    """
    if DIRECTIONS == 1:
        return s
    elif HAS_LENGTHS:
        backwards = (direction == 1) & (s < length)
        return tl.where(backwards, length - 1 - s, s)[:, None]
    else:
        return tl.where(direction == 1, T - 1 - s, s)


@triton.jit
def running_rows(s, length, state_mask, HAS_LENGTHS: tl.constexpr):
    """``state_mask`` restricted to the rows whose sequence includes processing step ``s``."""
    if HAS_LENGTHS:
        return state_mask & (s < length)[:, None]
    else:
        return state_mask


@triton.jit
def publish_state(exchange_ptr, s, h, write, running, ROW_WIDTH: tl.constexpr, BLOCK_B: tl.constexpr,
                  HAS_LENGTHS: tl.constexpr):
    """Store this program's units of the state after step ``s`` (storage dtype) in slot ``s``;
    rows that have ended keep the state of the step before (read back from the other slot)."""
    if HAS_LENGTHS:
        h = tl.where(running, h, tl.load(exchange_slot(exchange_ptr, s + 1, ROW_WIDTH, BLOCK_B) + write))
    tl.store(exchange_slot(exchange_ptr, s, ROW_WIDTH, BLOCK_B) + write, h)


@triton.jit
def carry_state(h, h_prev, s, length, exchange_ptr, write, running, sync_ptr, expected, MODE: tl.constexpr,
                BLOCK_B: tl.constexpr, K_SPLIT: tl.constexpr, BK: tl.constexpr, H_PAD: tl.constexpr,
                HAS_LENGTHS: tl.constexpr):
    """Hand the state ``h`` after step ``s`` (``(BLOCK_B, BLOCK_H)``, storage dtype) to the next
    step of an in-kernel time loop. ``PERSISTENT``: returns it as the next split-K state operand,
    kept in registers (rows that have ended keep ``h_prev``). ``COOPERATIVE``: publishes it through
    the exchange buffer, waits at the grid barrier (``expected`` arrivals) and returns ``h_prev``
    (the next step loads the state row from the exchange)."""
    if MODE == PERSISTENT:
        h_next = to_chunks(h, BLOCK_B, K_SPLIT, BK)
        if HAS_LENGTHS:
            h_next = tl.where((s < length)[None, :, None], h_next, h_prev)
        return h_next
    else:
        publish_state(exchange_ptr, s, h, write, running, H_PAD, BLOCK_B, HAS_LENGTHS)
        step_barrier(sync_ptr, expected, MODE)
        return h_prev


@triton.jit
def final_state_gradient(dh_n_ptr, state_offsets, state_mask, s, length, HAS_LENGTHS: tl.constexpr):
    """``dh_n`` (float32) for the rows whose last step is ``s``, zero for the others (without
    lengths every row ends at step T-1, the only step that asks)."""
    mask = state_mask
    if HAS_LENGTHS:
        mask = state_mask & (s == length - 1)[:, None]
    return tl.load(dh_n_ptr + state_offsets, mask=mask, other=0.0).to(tl.float32)
