"""Gluon building blocks shared by the Gluon LSTM kernels (:mod:`rnnbench.kernels.gluon_lstm`, the
forward, and :mod:`rnnbench.kernels.gluon_lstm_backward`): the grid barrier of the plain kernels
(:func:`rnnbench.kernels.primitives.grid_barrier`: release flags, poll in ``POLL_ORDER``, timeout,
status word) with the proxy fences that let TMA read what other programs stored, a program's tile
of units and batch rows, the time index of a step, and the names that differ between Triton 3.6
and 3.9 (the CTA barrier: ``gl.thread_barrier`` / ``gl.barrier``; the TMA load:
``tma.async_copy_global_to_shared`` / ``tma.async_load``).

Plain ``@triton.jit`` helpers compile inside Gluon kernels with both versions, so the poll's loads
(and, with relaxed polls, the fence after them) are the plain kernels' own
(:func:`rnnbench.kernels.primitives.slowest_flag`, :func:`~rnnbench.kernels.primitives.acquire_fence`).
"""

from __future__ import annotations

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import tma

from rnnbench.kernels.plan import GLUON_BLOCK_H
from rnnbench.kernels.primitives import (
    BARRIER_TIMEOUT_NS, FLAG_SLOTS as _PLAIN_FLAG_SLOTS, FLAG_VECTOR as _PLAIN_FLAG_VECTOR, RELAXED_POLL_THEN_FENCE,
    SYNC_ROW as _PLAIN_SYNC_ROW, _load_relaxed, _poll_load, _strong_load, acquire_fence, slowest_flag,
)

cta_barrier = getattr(gl, "barrier", None) or gl.thread_barrier
tma_load = getattr(tma, "async_load", None) or tma.async_copy_global_to_shared

#: the synchronisation buffer's layout (:data:`rnnbench.kernels.primitives.FLAG_SLOTS`): a release
#: flag per producer, the status word at this offset
FLAG_SLOTS: gl.constexpr = gl.constexpr(int(_PLAIN_FLAG_SLOTS.value))
#: int32 slots of one (direction, batch block) (:data:`rnnbench.kernels.primitives.SYNC_ROW`)
SYNC_ROW: gl.constexpr = gl.constexpr(int(_PLAIN_SYNC_ROW.value))
_TIMEOUT_NS: gl.constexpr = gl.constexpr(int(BARRIER_TIMEOUT_NS.value))
#: the widest vector a poll load brings (:data:`rnnbench.kernels.primitives.FLAG_VECTOR`): the Gluon
#: kernels always poll in vectors (no layout of theirs spilled with them, reports/aot/gluon-*.csv)
_FLAG_VECTOR: gl.constexpr = gl.constexpr(int(_PLAIN_FLAG_VECTOR.value))
_RELAXED_POLL: gl.constexpr = gl.constexpr(int(RELAXED_POLL_THEN_FENCE.value))
#: units per program (the MMA's 16 rows per gate)
_UNITS: gl.constexpr = gl.constexpr(GLUON_BLOCK_H)


# ---- grid barrier (the protocol of primitives.grid_barrier, in Gluon) ------------------------------

@gluon.jit
def globaltimer(like):
    """``%globaltimer`` (ns), one per element of ``like`` (Gluon needs a layout for the result)."""
    return gl.inline_asm_elementwise("mov.u64 $0, %globaltimer;", "=l,r", [like], dtype=gl.int64, is_pure=False,
                                     pack=1)


@gluon.jit
def clock64(like):
    """``%clock64`` (this SM's cycle counter), one per element of ``like``."""
    return gl.inline_asm_elementwise("mov.u64 $0, %clock64;", "=l,r", [like], dtype=gl.int64, is_pure=False, pack=1)


def _read_after(register: str) -> str:
    """PTX reading ``register`` (``%clock64``, ``%globaltimer``) into ``$0`` once ``$2`` is available:
    the read is predicated on a comparison of ``$2`` (either way the same read), so it waits for the
    instruction producing it. An operand the text leaves unused would not do: the inline asm's
    inputs are only bound to registers, and ptxas issues the read right after whatever came before
    it in program order (a load still in flight)."""
    return (f"{{ .reg .pred %after; setp.ne.u32 %after, $2, 0x7fc0beef; @%after mov.u64 $0, {register}; "
            f"@!%after mov.u64 $0, {register}; }}")


_CLOCK64_AFTER: gl.constexpr = gl.constexpr(_read_after("%clock64"))
_GLOBALTIMER_AFTER: gl.constexpr = gl.constexpr(_read_after("%globaltimer"))


@gluon.jit
def clock64_after(like, value):
    """:func:`clock64` read once ``value`` (int32: a scalar, or a tensor of ``like``'s shape and layout)
    is available (the load or reduction a timestamp should follow; :func:`_read_after`)."""
    return gl.inline_asm_elementwise(_CLOCK64_AFTER, "=l,r,r", [like, value], dtype=gl.int64,
                                     is_pure=False, pack=1)


@gluon.jit
def globaltimer_after(like, value):
    """:func:`globaltimer` read once ``value`` is available (as :func:`clock64_after`)."""
    return gl.inline_asm_elementwise(_GLOBALTIMER_AFTER, "=l,r,r", [like, value], dtype=gl.int64,
                                     is_pure=False, pack=1)


@gluon.jit
def proxy_fence(like):
    """``fence.proxy.async.global``: orders this thread's generic-proxy global accesses with its
    async-proxy (TMA) ones. Returns a dummy of ``like``'s shape (inline asm needs a result)."""
    return gl.inline_asm_elementwise("fence.proxy.async.global;\nmov.b32 $0, $1;", "=r,r", [like], dtype=gl.int32,
                                     is_pure=False, pack=1)


@gluon.jit
def barrier_arrive(flags_ptr, producer, lane, GRID: gl.constexpr):
    """Arrival: every thread's stores of the step issued (CTA barrier) and made visible to TMA
    readers (proxy fence), then one release add to this producer's flag (left out where ``GRID`` is
    false: the step ablation's kernels without the grid barrier, whose results are garbage)."""
    proxy_fence(lane)
    cta_barrier()
    if GRID:
        gl.atomic_add(flags_ptr + producer, 1, sem="release", scope="gpu")


@gluon.jit
def status_after_poll(flags_ptr, lane, step, start, status, waiting):
    """The grid barrier's status word after a poll that loaded it as ``status`` (0: no timeout
    anywhere): where this program is still ``waiting`` (a scalar condition), nobody has timed out
    and more than the timeout has passed since ``start`` (``%globaltimer``, ns), this program sets
    it to ``step`` (the waiting step's target, nonzero), ending every program's later waits at once."""
    now = gl.max(globaltimer(lane), axis=0)
    if waiting & (status == 0) & (now - start > _TIMEOUT_NS):
        gl.atomic_max(flags_ptr + FLAG_SLOTS, step, sem="relaxed", scope="gpu")
        status = step
    return status


@gluon.jit
def barrier_wait(flags_ptr, producers, step, lane, POLL: gl.constexpr, ORDER: gl.constexpr, GRID: gl.constexpr,
                 FIRST_WARP: gl.constexpr):
    """Wait until every producer's flag reaches ``step`` (``lane``: ``arange(0, min(POLL, 32))`` in
    a layout that gives each warp all of it), or until the timeout, which sets the status word and
    ends every later wait at once (see :func:`rnnbench.kernels.primitives.grid_barrier`; the poll's
    loads in ``ORDER``, :data:`rnnbench.kernels.primitives.POLL_ORDERS`).

    Each thread loads its ``POLL / 32`` flags as one vector (:func:`rnnbench.kernels.primitives.slowest_flag`),
    so an acquire poll of up to 128 flags is one L2 round trip (``flags_ptr`` 16-byte aligned).
    ``GRID`` false: no poll, the CTA barrier and the proxy fence only (see :func:`barrier_arrive`).
    ``FIRST_WARP``: the program's first warp polls alone, the others wait at the CTA barrier after
    the poll (:func:`rnnbench.kernels.primitives.barrier_wait`'s; the caller runs in the whole
    program or in a warp-specialised kernel's default partition, which holds warp 0)."""
    if not GRID:
        cta_barrier()
    elif producers > 1:
        start = gl.max(globaltimer(lane), axis=0)
        slowest = step - 1
        status = 0
        while (slowest < step) & (status == 0):
            # relaxed in either order, as in the plain barrier: in flight with the flags' load
            status = gl.max(_poll_load(flags_ptr + FLAG_SLOTS + lane * 0, lane * 0, 1, "relaxed", FIRST_WARP)[0], axis=0)
            slowest = gl.min(slowest_flag(flags_ptr, lane, step, POLL, ORDER, _FLAG_VECTOR, FIRST_WARP), axis=0)
            status = status_after_poll(flags_ptr, lane, step, start, status, slowest < step)
        if ORDER == _RELAXED_POLL:
            acquire_fence(lane)
        cta_barrier()
    proxy_fence(lane)


@gluon.jit
def acquire_for_tma(lane, ORDER: gl.constexpr):
    """After a poll that saw producers' release adds: the acquire (a fence where the poll's loads
    were relaxed, ``ORDER``), then the proxy fence, so this thread's TMA copies issued next read
    what those producers stored."""
    if ORDER == _RELAXED_POLL:
        acquire_fence(lane)
    proxy_fence(lane)


@gluon.jit
def arrived_groups(flags_ptr, lane, step, POLL: gl.constexpr, ORDER: gl.constexpr, GROUP: gl.constexpr,
                   GROUPS: gl.constexpr):
    """One poll of a grid barrier's flags (one vector load per lane, one L2 round trip;
    :func:`rnnbench.kernels.primitives.slowest_flag`, ``lane`` as :func:`barrier_wait`'s): a bitmask
    of the groups of ``GROUP`` consecutive producers whose flags have all reached ``step``, bit g for
    producers ``g * GROUP + [0, GROUP)``, g < ``GROUPS`` (at most 31). Lane l holds the
    ``PER_LANE = POLL / min(POLL, 32)`` flags of producers ``l * PER_LANE + [0, PER_LANE)`` (``POLL <=
    32 * FLAG_VECTOR``: one chunk; ``PER_LANE`` divides ``GROUP``), so group g is lanes
    ``g * GROUP / PER_LANE + [0, GROUP / PER_LANE)``. A lane is late where one of its flags is below
    ``step``; the lanes' late bits are summed into one word (distinct bits: the sum is their or)."""
    WIDTH: gl.constexpr = POLL if POLL < 32 else 32
    LANES: gl.constexpr = GROUP // (POLL // WIDTH)
    gl.static_assert(POLL // WIDTH <= _FLAG_VECTOR, "one vector load of flags per lane")
    gl.static_assert(GROUPS * LANES <= WIDTH, "every group's flags within the lanes' one load")
    slowest = slowest_flag(flags_ptr, lane, step, POLL, ORDER, _FLAG_VECTOR, False)
    late = gl.sum(gl.where(slowest < step, 1 << lane, 0), axis=0)
    arrived = late * 0
    for g in gl.static_range(GROUPS):
        arrived |= gl.where(((late >> (g * LANES)) & ((1 << LANES) - 1)) == 0, 1 << g, 0)
    return arrived


@gluon.jit
def input_ready_wait(flag_ptr, status_ptr, step, lane):
    """Wait until the input projection's ready flag at ``flag_ptr`` is set
    (:mod:`rnnbench.kernels.overlapped_projection`), every thread with an acquire load of it, so the
    projection the flag announces is visible to the thread's later loads (its ``cp.async`` copies of
    ``xg``). Gives up as the grid barrier does: on the launch's status word (``status_ptr``), or
    after the timeout, which sets it to ``step`` (nonzero: the waiting step + 1, as the grid
    barrier's target; the launch then reports a timeout, its results garbage). One L2 round trip
    where the flag is already set."""
    ready = gl.max(_strong_load(flag_ptr + lane * 0, 1, "acquire")[0], axis=0)
    if ready == 0:
        start = gl.max(globaltimer(lane), axis=0)
        status = 0
        while (ready == 0) & (status == 0):
            status = gl.max(_load_relaxed(status_ptr + lane * 0), axis=0)
            ready = gl.max(_strong_load(flag_ptr + lane * 0, 1, "acquire")[0], axis=0)
            now = gl.max(globaltimer(lane), axis=0)
            if (ready == 0) & (status == 0) & (now - start > _TIMEOUT_NS):
                gl.atomic_max(status_ptr, step, sem="relaxed", scope="gpu")
                status = step


# ---- tiles -------------------------------------------------------------------------------------------

@gluon.jit
def time_index(s, T, length, direction, DIRECTIONS: gl.constexpr, HAS_LENGTHS: gl.constexpr):
    """Time index of processing step ``s`` (as :func:`rnnbench.kernels.primitives.step_position`):
    a scalar, or ``(1, BLOCK_B)`` with lengths going backwards."""
    if DIRECTIONS == 1:
        return s
    elif HAS_LENGTHS:
        backwards = (direction == 1) & (s < length)
        return gl.expand_dims(gl.where(backwards, length - 1 - s, s), 0)
    else:
        return gl.where(direction == 1, T - 1 - s, s)


@gluon.jit
def running_rows(s, length, mask, HAS_LENGTHS: gl.constexpr):
    """``mask`` restricted to rows that run step ``s`` (as :func:`rnnbench.kernels.primitives.running_rows`)."""
    if HAS_LENGTHS:
        return mask & gl.expand_dims(s < length, 0)
    else:
        return mask


@gluon.jit
def program_tile(lengths_ptr, T, B, H, tile_layout: gl.constexpr, BLOCK_B: gl.constexpr, DIRECTIONS: gl.constexpr,
                 HAS_LENGTHS: gl.constexpr):
    """Program ``(pid_h, pid_b)``'s ``(16 units, BLOCK_B rows)`` tile in ``tile_layout`` (both Gluon
    kernels): ``(unit_col (16, 1), row_row (1, BLOCK_B), state_mask, state_offsets, gate_offsets,
    y_offsets, length)``, offsets into row-major ``(B, H)`` states, ``(B, 4H)`` gate rows and
    ``(B, D*H)`` outputs; ``length``: each row's steps ``(BLOCK_B,)``, or ``T`` without lengths."""
    units = gl.program_id(0) * _UNITS + gl.arange(0, _UNITS, layout=gl.SliceLayout(1, tile_layout))
    rows = gl.program_id(1) * BLOCK_B + gl.arange(0, BLOCK_B, layout=gl.SliceLayout(0, tile_layout))
    unit_col = gl.expand_dims(units, 1)
    row_row = gl.expand_dims(rows, 0)
    if HAS_LENGTHS:
        length = gl.load(lengths_ptr + rows, mask=rows < B, other=0)
    else:
        length = T
    return (unit_col, row_row, (unit_col < H) & (row_row < B), row_row * H + unit_col, row_row * 4 * H + unit_col,
            row_row * DIRECTIONS * H + unit_col, length)
