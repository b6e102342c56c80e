"""Triton building blocks shared by the RNN and LSTM kernels.

**Execution modes** (the ``MODE`` constexpr of every recurrent kernel, chosen by :mod:`rnnbench.kernels.plan`):

* ``PERSISTENT``: one program per batch block owns every hidden unit and all of ``W_hh``; the kernel
  loops over time itself and the state stays in registers from one step to the next.
* ``COOPERATIVE``: the hidden units are split across programs; the kernel loops over time itself and
  separates steps with a grid barrier among the programs of a batch block (:func:`grid_barrier`;
  the grid is launched cooperatively so the driver refuses a grid that cannot be co-resident
  instead of letting it deadlock).
* ``STEPWISE``: the same split, but one launch per time step; the kernel boundary is the barrier.
  Needs nothing co-resident, so it works for every size, and it is how the interpreter (which runs
  programs one after another and cannot spin on a barrier) executes the cooperative path's math.

In every mode but ``PERSISTENT`` the full previous state row (all hidden units of a batch block) is
read from global memory at each step, because other programs wrote parts of it. That exchange goes
through a small padded buffer ``(2, B_pad, ROW_WIDTH)`` rather than through the output itself: its
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

**Tiles are unit-major.** A program's state tile is ``(BLOCK_H, BLOCK_B)``: element ``[j, b]`` is
hidden unit ``units[j]`` of batch row ``rows[b]`` (:func:`program_tile`). The recurrent product is
computed transposed, ``W_slice (M, K) @ state^T (K, BLOCK_B)``, so the MMA's M dimension is the
program's rows of ``W_hh`` (gate rows forward) and N is the batch: one copy of the weight slice
serves every batch row of the program, and a wide batch block costs MMA columns, not weight copies.

**Split-K reduction in chunks.** The reduction dimension is cut into blocks of ``CHUNK = K_SPLIT *
BK`` columns (``H_PAD = K_CHUNKS * CHUNK``, the smallest multiple of the chunk that holds H: 768 is
3 chunks of 256, not padded to 1024). A block's weight tile is ``(K_SPLIT, M, BK)`` and its state
tile ``(K_SPLIT, BK, BLOCK_B)``; ``tl.dot`` on these 3-D tiles puts one warp on each of the
``K_SPLIT`` slices, every block accumulates into the same ``(K_SPLIT, M, BLOCK_B)`` float32
accumulator, and one sum over the slices finishes the product: one cross-warp reduction per step
for all gates (:func:`held_product`, :func:`streamed_product`, :func:`sum_slices`). The batched dot
has as many slices as the program has warps (Triton 3.6 puts every warp of a 3-D dot on its
batch dimension, so fewer slices meant several warps computing each one): the LSTM forward with 8
or 16 warps also cuts its gate rows in ``M_SPLIT`` parts (:func:`split_dot`), and a chunk too narrow
to split (``K_SPLIT = 1``, every persistent program) is a 2-D dot whose warps split the output
(on sm_90 a warpgroup MMA). The in-kernel
loops hold the weight blocks as a tuple loaded before the loop (:func:`held_weights`; Triton keeps
them in shared memory); a ``STEPWISE`` launch streams them block by block, so every hidden size runs.
Every load of a dot operand (weight block or state block) takes its pointers from
:func:`operand_pointers`, whose hint keeps the operand's shared buffer free of bank conflicts under
the Tritons that order it by the load's registers (3.9; :mod:`rnnbench.kernels.operand_layout`).
"""

import triton
import triton.language as tl
from triton.language.extra.cuda import globaltimer

from rnnbench.kernels.operand_layout import operand_contiguity
from rnnbench.kernels.plan import MAX_POLL_VECTOR, POLL_ORDER_NAMES

PERSISTENT: tl.constexpr = tl.constexpr(0)
COOPERATIVE: tl.constexpr = tl.constexpr(1)
STEPWISE: tl.constexpr = tl.constexpr(2)
MODE_NAMES = {"persistent": 0, "cooperative": 1, "stepwise": 2}
#: a grid barrier that waits longer than this gives up and reports it (:class:`rnnbench.kernels.launch.BarrierTimeout`)
BARRIER_TIMEOUT_NS: tl.constexpr = tl.constexpr(2_000_000_000)
#: layout of the grid-synchronisation buffer of one (direction, batch block): a release flag per
#: hidden block (the steps it has finished), padded to a cache line, then the status word
FLAG_SLOTS: tl.constexpr = tl.constexpr(256)
#: int32 slots of one (direction, batch block) in the synchronisation buffer: the flags, the status
#: word at ``FLAG_SLOTS`` and padding to a whole 128-byte line, so every block's flags start 16-byte
#: aligned, as the poll's vector loads need (:func:`slowest_flag`)
SYNC_ROW: tl.constexpr = tl.constexpr(288)
#: the slot after the status word: the first of the Gluon tagged exchange's counts of polls beyond
#: each step's first, one slot per loader warp (:data:`rnnbench.kernels.switches.GLUON_TAGGED_LOADERS`
#: of them, in the padding), every program's summed over a launch
#: (:func:`rnnbench.kernels.gluon_lstm._tagged_loader`; zero in every other kernel)
EXTRA_POLLS_SLOT: tl.constexpr = tl.constexpr(257)
#: flags one poll load brings at most (``ld.v4.b32``; :data:`rnnbench.kernels.plan.MAX_POLL_VECTOR`)
FLAG_VECTOR: tl.constexpr = tl.constexpr(MAX_POLL_VECTOR)
#: what a flag slot of no producer holds (set by the host, never written by a kernel), so that a
#: poll takes the minimum of every slot it loads (:func:`slowest_flag`)
UNUSED_FLAG: tl.constexpr = tl.constexpr(2**31 - 1)
#: how a barrier's wait orders its poll (:func:`barrier_wait`): the flag loads acquires
#: (``ld.acquire.gpu``: on sm_90 ``LDG.E.STRONG.GPU`` then ``CCTL.IVALL``, so a poll's flag loads
#: follow one another, which is why the Gluon kernels load a thread's flags as one vector,
#: :func:`slowest_flag`), or relaxed flag loads, all in flight together, and one ``fence.acq_rel.gpu``
#: (``MEMBAR.ALL.GPU`` + ``CCTL.IVALL``) once every flag has been seen; the status word's load is
#: relaxed in both
ACQUIRE_EACH_POLL: tl.constexpr = tl.constexpr(0)
RELAXED_POLL_THEN_FENCE: tl.constexpr = tl.constexpr(1)
#: the ``POLL_ORDER`` constexpr of each order's name (a plan's :attr:`~rnnbench.kernels.plan.Plan.poll_order`)
POLL_ORDERS = dict(zip(POLL_ORDER_NAMES, (ACQUIRE_EACH_POLL.value, RELAXED_POLL_THEN_FENCE.value)))


@triton.jit
def tanh(x):
    """tanh through the sigmoid (Triton has no portable tanh that also runs in the interpreter).

    Absolute error is a few ulp of 1 in fp32; exp overflow is harmless (sigmoid saturates to 0 or 1).
    """
    return 2.0 * tl.sigmoid(2.0 * x) - 1.0


# ---- grid synchronisation ------------------------------------------------------------------------

@triton.jit
def _load_relaxed(pointers):
    """``ld.relaxed.gpu`` of each int32: a strong load (it reads L2, never a stale L1 line) that
    orders nothing after it, so several are in flight at once."""
    return _strong_load(pointers, 1, "relaxed")[0]


@triton.jit
def _strong_load(pointers, V: tl.constexpr, SEM: tl.constexpr):
    """``ld.global.SEM.gpu`` (``SEM``: ``"acquire"`` or ``"relaxed"``) of ``V`` (1, 2 or 4)
    consecutive int32 from each pointer (aligned to ``4 * V`` bytes), one (vector) load: a tuple of
    ``V`` tensors. Inline PTX: Triton 3.6 has no acquire load, and an atomic read would serialise
    every poller on the flag's address."""
    if V == 4:
        return tl.inline_asm_elementwise("ld.global." + SEM + ".gpu.v4.b32 {$0, $1, $2, $3}, [$4];", "=r,=r,=r,=r,l",
                                         [pointers], dtype=(tl.int32, tl.int32, tl.int32, tl.int32), is_pure=False,
                                         pack=1)
    elif V == 2:
        return tl.inline_asm_elementwise("ld.global." + SEM + ".gpu.v2.b32 {$0, $1}, [$2];", "=r,=r,l", [pointers],
                                         dtype=(tl.int32, tl.int32), is_pure=False, pack=1)
    else:
        return tl.inline_asm_elementwise("ld.global." + SEM + ".gpu.b32 $0, [$1];", "=r,l", [pointers],
                                         dtype=(tl.int32,), is_pure=False, pack=1)


@triton.jit
def _in_first_warp(like):
    """1 in the threads of the program's first warp (``%tid.x < 32``), 0 elsewhere, shaped as
    ``like`` (an int32 tensor or scalar, not read). Pure, so the compiler hoists it out of a poll
    loop (read inside the loads' asm, ``%tid.x`` was read again before every poll)."""
    return tl.inline_asm_elementwise("{\n.reg .u32 %tid_x;\n.reg .pred %p_first;\nmov.u32 %tid_x, %tid.x;\n"
                                     "setp.lt.u32 %p_first, %tid_x, 32;\nselp.u32 $0, 1, 0, %p_first;\n}",
                                     "=r,r", [like], dtype=tl.int32, is_pure=True, pack=1)


@triton.jit
def _first_warp_load(pointers, default, V: tl.constexpr, SEM: tl.constexpr):
    """:func:`_strong_load` in the threads of the program's first warp (:func:`_in_first_warp`)
    only; every other thread issues no load and gets ``default`` (an int32 tensor like
    ``pointers``) in each of its ``V`` results. Only for code the whole program (or a
    warp-specialised kernel's default partition, warps 0 ..) runs: in a partition without warp 0
    nothing would be loaded."""
    polling = _in_first_warp(default)
    if V == 4:
        return tl.inline_asm_elementwise("{\n.reg .pred %p_poll;\nsetp.ne.u32 %p_poll, $6, 0;\n"
                                         "mov.b32 $0, $5;\nmov.b32 $1, $5;\nmov.b32 $2, $5;\nmov.b32 $3, $5;\n"
                                         "@%p_poll ld.global." + SEM + ".gpu.v4.b32 {$0, $1, $2, $3}, [$4];\n}",
                                         "=r,=r,=r,=r,l,r,r", [pointers, default, polling],
                                         dtype=(tl.int32, tl.int32, tl.int32, tl.int32), is_pure=False, pack=1)
    elif V == 2:
        return tl.inline_asm_elementwise("{\n.reg .pred %p_poll;\nsetp.ne.u32 %p_poll, $4, 0;\n"
                                         "mov.b32 $0, $3;\nmov.b32 $1, $3;\n"
                                         "@%p_poll ld.global." + SEM + ".gpu.v2.b32 {$0, $1}, [$2];\n}",
                                         "=r,=r,l,r,r", [pointers, default, polling], dtype=(tl.int32, tl.int32),
                                         is_pure=False, pack=1)
    else:
        return tl.inline_asm_elementwise("{\n.reg .pred %p_poll;\nsetp.ne.u32 %p_poll, $3, 0;\n"
                                         "mov.b32 $0, $2;\n@%p_poll ld.global." + SEM + ".gpu.b32 $0, [$1];\n}",
                                         "=r,l,r,r", [pointers, default, polling], dtype=(tl.int32,), is_pure=False,
                                         pack=1)


@triton.jit
def _poll_load(pointers, default, V: tl.constexpr, SEM: tl.constexpr, FIRST_WARP: tl.constexpr):
    """A poll's strong load of ``V`` int32 from each pointer (:func:`_strong_load`), in the first
    warp only where ``FIRST_WARP`` (:func:`_first_warp_load`: the other warps get ``default``)."""
    if FIRST_WARP:
        return _first_warp_load(pointers, default, V, SEM)
    else:
        return _strong_load(pointers, V, SEM)


@triton.jit
def _load_flags(pointers, default, V: tl.constexpr, ORDER: tl.constexpr, FIRST_WARP: tl.constexpr):
    """A poll's load of ``V`` consecutive flags from each pointer (:func:`_poll_load`), acquire
    or relaxed as ``ORDER`` says (see :data:`POLL_ORDERS`). One acquire costs one L2 round trip
    however many flags it brings."""
    if ORDER == RELAXED_POLL_THEN_FENCE:
        return _poll_load(pointers, default, V, "relaxed", FIRST_WARP)
    else:
        return _poll_load(pointers, default, V, "acquire", FIRST_WARP)


@triton.jit
def slowest_flag(flags_ptr, lane, step, POLL: tl.constexpr, ORDER: tl.constexpr, VECTOR: tl.constexpr,
                 FIRST_WARP: tl.constexpr):
    """One poll of a grid barrier's flags in vector loads (the Gluon kernels'
    :func:`rnnbench.kernels.gluon_primitives.barrier_wait`, and the plain kernels' :func:`barrier_wait`
    where their plan's ``poll_vector`` is above 1): per lane, the least of ``step`` and the flags it
    loaded.
    ``lane``: ``arange(0, min(POLL, 32))``, replicated in every warp, so each warp polls all
    ``POLL`` (a power of two) flags; lane ``l`` loads ``POLL / 32`` consecutive flags as vectors of
    up to ``VECTOR`` (<= :data:`FLAG_VECTOR`; ``flags_ptr`` 16-byte aligned, :data:`SYNC_ROW`), so
    a poll of up to ``32 * VECTOR`` flags is one load per thread: in the acquire order one L2 round
    trip, not one per 32 flags (measured on an H200, the scalar acquires' invalidations took a
    quarter of the Gluon forward's step and a third of the plain one's at H=768 B=16,
    reports/h200/f1c2560; one vector took the Gluon forward from 2.78 to 2.51 µs per step,
    reports/h200/acd6756). The slots of no producer up to ``POLL`` (``<= FLAG_SLOTS``) hold
    :data:`UNUSED_FLAG` (the host's :func:`rnnbench.kernels.launch.reset_sync`), so no mask is
    needed. ``FIRST_WARP``: only the program's first warp loads (:func:`_first_warp_load`); the
    others' lanes hold ``step``, as if every flag had reached it."""
    WIDTH: tl.constexpr = min(POLL, 32)
    PER_LANE: tl.constexpr = POLL // WIDTH
    V: tl.constexpr = min(PER_LANE, VECTOR)
    slowest = step + lane * 0
    for chunk in tl.static_range(PER_LANE // V):
        flags = _load_flags(flags_ptr + chunk * WIDTH * V + lane * V, slowest, V, ORDER, FIRST_WARP)
        for k in tl.static_range(V):
            slowest = tl.minimum(slowest, flags[k])
    return slowest


@triton.jit
def acquire_fence(like):
    """``fence.acq_rel.gpu`` in every thread, after relaxed loads that saw the producers' release
    adds: with them an acquire pattern of the PTX memory model, so what each producer stored before
    its release is visible to this thread. Returns ``like`` (inline asm needs a result to order
    later code by)."""
    return tl.inline_asm_elementwise("fence.acq_rel.gpu;\nmov.b32 $0, $1;", "=r,r", [like], dtype=tl.int32,
                                     is_pure=False, pack=1)


@triton.jit
def barrier_arrive(flags_ptr, producer):
    """Arrival at a grid barrier (see :func:`grid_barrier`): a CTA barrier, so every thread's
    stores of the step are issued, then one thread's release add to this producer's flag."""
    tl.debug_barrier()
    tl.atomic_add(flags_ptr + producer, 1, sem="release", scope="gpu")


@triton.jit
def barrier_wait(flags_ptr, producers, step, timeout_ns, POLL: tl.constexpr, ORDER: tl.constexpr,
                 VECTOR: tl.constexpr, FIRST_WARP: tl.constexpr):
    """Wait at a grid barrier (see :func:`grid_barrier`) until every producer's flag reaches ``step``,
    its poll loads ordered as ``ORDER`` says (:data:`POLL_ORDERS`; the kernels' ``POLL_ORDER``
    constexpr, from their plan's :attr:`~rnnbench.kernels.plan.Plan.poll_order`), each thread's
    flags in vectors of up to ``VECTOR`` (the kernels' ``POLL_VECTOR``, the plan's
    :attr:`~rnnbench.kernels.plan.Plan.poll_vector`: 1, masked scalar loads of 32 flags at a time,
    or 2 and 4, :func:`slowest_flag`'s unmasked vectors over a power-of-two ``POLL``). No default:
    Triton's cache key hashes the globals a function's body reads, not its default arguments, so a
    default order changed in the source would be served the kernels compiled with the old one from
    the cache.

    Every warp polls on its own, or with ``FIRST_WARP`` (the kernels' ``POLL_FIRST_WARP``,
    :data:`rnnbench.kernels.switches.GRID_POLL_FIRST_WARP`) the first warp alone: the others' loads
    are not issued and see every flag complete and the status 0 (:func:`_first_warp_load`), so
    they leave the loop at once and wait at the CTA barrier after it. Every warp of every program
    polls the same few lines of flags, so the requests those lines take per poll grow as programs x
    polling warps (H200: a barrier at 96 programs of 4 warps cost 1.84 µs a step, at 48 of 4 warps
    1.01 and at 48 of 8 warps 1.84; reports/h200/7caf667). The status word is written by the
    program's first thread only (the compiled atomic is predicated on thread 0), so a warp that
    times out before warp 0 leaves its loop alone and the status is set when warp 0 times out too.
    The CTA barrier after the loop holds the program until every warp has left it, and a warp that
    left because the flags were complete acquired them (with ``FIRST_WARP``, the first warp did,
    and the CTA barrier orders its acquire before every warp's later loads), so the program goes on
    with valid data or with the status set."""
    if producers > 1:
        # 32 flags at a time: a 32-element tensor is replicated in every warp, so each warp polls
        # all flags and reduces them with warp shuffles, and the poll loop has no CTA barrier
        WIDTH: tl.constexpr = min(POLL, 32)
        lane = tl.arange(0, WIDTH)
        start = globaltimer()
        slowest = step - 1
        status = 0
        while (slowest < step) & (status == 0):
            # the status load first, relaxed in either order (it guards no data: a timed-out launch's
            # results are garbage anyway), so it is in flight with the first flag load instead of an
            # acquire round trip ahead of them; relaxed flag loads are all in flight together,
            # acquire ones one by one (one per load: a chunk of 32 flags is one scalar load per
            # thread, a vector of VECTOR chunks one vector load; vector loads made the plain
            # backward's 16-warp layouts spill at their 128-register cap with Triton 3.9, so their
            # plans keep VECTOR 1)
            status = _poll_load(flags_ptr + FLAG_SLOTS, step * 0, 1, "relaxed", FIRST_WARP)[0]
            if VECTOR > 1:
                slowest = tl.min(slowest_flag(flags_ptr, lane, step, POLL, ORDER, VECTOR, FIRST_WARP))
            else:
                slowest = step
                for chunk in tl.static_range(POLL // WIDTH):
                    index = chunk * WIDTH + lane
                    polled = index < producers
                    flags = _load_flags(flags_ptr + tl.where(polled, index, 0), step + lane * 0, 1, ORDER, FIRST_WARP)[0]
                    slowest = tl.minimum(slowest, tl.min(tl.where(polled, flags, step)))
            if (slowest < step) & (status == 0) & (globaltimer() - start > timeout_ns):
                tl.atomic_max(flags_ptr + FLAG_SLOTS, step, sem="relaxed", scope="gpu")
                status = step
        if ORDER == RELAXED_POLL_THEN_FENCE:
            acquire_fence(lane)
        tl.debug_barrier()


@triton.jit
def grid_barrier(flags_ptr, producer, producers, step, timeout_ns, POLL: tl.constexpr, ORDER: tl.constexpr,
                 VECTOR: tl.constexpr, FIRST_WARP: tl.constexpr):
    """Wait until all ``producers`` programs sharing ``flags_ptr`` have finished ``step`` steps.

    ``flags_ptr`` (16-byte aligned) holds one int32 release flag per producer (the steps it has
    finished) followed, at ``FLAG_SLOTS``, by a status word. Arrival (:func:`barrier_arrive`): a CTA
    barrier (every thread's stores of the step issued), then one thread's release add to its own
    flag, so arrivals never contend for an address. Wait (:func:`barrier_wait`): the flags of all
    producers (``POLL >= producers``, a power of two up to 32, else a multiple of 32, or a power of
    two where ``VECTOR`` > 1) are polled in ``ORDER`` (acquire loads, or relaxed loads and one
    acquire fence) in vectors of up to ``VECTOR`` flags, and a CTA barrier after the poll extends what
    they acquired to the whole program; the exchange loads that follow use
    ``.cg`` (L2), so no stale L1 line is read. ``>=`` tolerates producers that have already run
    ahead. Work that needs no synchronisation (the next step's input loads) goes between the two.

    A wait longer than ``timeout_ns`` (``%globaltimer``) stores ``step`` into the status word,
    and a program that sees a nonzero status stops waiting: every program then finishes its loop
    without synchronisation (its results are garbage) instead of hanging the GPU, and the host
    raises :class:`rnnbench.kernels.launch.BarrierTimeout`. One producer (a grid of one hidden
    block, which the interpreter runs too) has nothing to wait for.
    """
    barrier_arrive(flags_ptr, producer)
    barrier_wait(flags_ptr, producers, step, timeout_ns, POLL, ORDER, VECTOR, FIRST_WARP)


@triton.jit
def step_arrive(flags_ptr, MODE: tl.constexpr):
    """Arrival at the barrier after an in-kernel time step (only ``COOPERATIVE`` has a grid barrier)."""
    if MODE == COOPERATIVE:
        barrier_arrive(flags_ptr, tl.program_id(0))


@triton.jit
def step_wait(flags_ptr, step, MODE: tl.constexpr, POLL: tl.constexpr, ORDER: tl.constexpr, VECTOR: tl.constexpr,
              FIRST_WARP: tl.constexpr):
    """Wait at the barrier after ``step`` in-kernel time steps: the grid barrier's wait for
    ``COOPERATIVE`` (its poll in ``ORDER``, in vectors of up to ``VECTOR`` flags, by the first warp
    alone where ``FIRST_WARP``), a CTA barrier for ``PERSISTENT`` (nothing for ``STEPWISE``)."""
    if MODE == COOPERATIVE:
        barrier_wait(flags_ptr, tl.num_programs(0), step, BARRIER_TIMEOUT_NS, POLL, ORDER, VECTOR, FIRST_WARP)
    elif MODE == PERSISTENT:
        tl.debug_barrier()


@triton.jit
def sync_slice(sync_ptr, direction, DIRECTIONS: tl.constexpr):
    """This program's flags in the ``(D, batch blocks, SYNC_ROW)`` synchronisation buffer."""
    block = tl.program_id(1)
    if DIRECTIONS > 1:
        block += direction * tl.num_programs(1)
    return sync_ptr + block * SYNC_ROW


# ---- tiles ---------------------------------------------------------------------------------------

@triton.jit
def program_tile(B, H, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """This program's tile of a row-major ``(B, H)`` state: ``(pid_b, rows, units, offsets, mask)``,
    offsets and mask ``(BLOCK_H, BLOCK_B)``, element ``[j, b]`` at unit ``units[j]`` of row
    ``rows[b]`` (program axis 0: hidden block, axis 1: batch block)."""
    pid_b = tl.program_id(1)
    rows = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    units = tl.program_id(0) * BLOCK_H + tl.arange(0, BLOCK_H)
    return pid_b, rows, units, rows[None, :] * H + units[:, None], (units < H)[:, None] & (rows < B)[None, :]


@triton.jit
def gate_rows(H, GATES: tl.constexpr, BLOCK_H: tl.constexpr):
    """Row indices into ``W_hh (GATES*H, H)`` (equally, column indices into a row of gate
    pre-activations) and validity of the ``GATES * BLOCK_H`` rows of this program's forward tiles.

    Tile row ``r`` holds gate ``g`` of unit ``j`` at ``r = (j // GROUP) * GATES * GROUP + g * GROUP
    + j % GROUP`` with ``GROUP = min(BLOCK_H, 8)``: in the MMA accumulator the 8-row groups of one
    unit block's gates are register repeats of the same threads, so :func:`split_gates` needs no
    data movement.
    """
    GROUP: tl.constexpr = min(BLOCK_H, 8)
    r = tl.arange(0, GATES * BLOCK_H)
    j = (r // (GATES * GROUP)) * GROUP + r % GROUP
    unit = tl.program_id(0) * BLOCK_H + j
    return (r // GROUP) % GATES * H + unit, unit < H


@triton.jit
def split_gates(pre, BLOCK_H: tl.constexpr, BLOCK_B: tl.constexpr):
    """The four ``(BLOCK_H, BLOCK_B)`` gate blocks (i, f, g, o) of a ``(4*BLOCK_H, BLOCK_B)`` product
    whose rows are ordered as :func:`gate_rows` orders them."""
    GROUP: tl.constexpr = min(BLOCK_H, 8)
    grouped = tl.reshape(pre, (BLOCK_H // GROUP, 2, 2, GROUP, BLOCK_B))  # (unit group, g // 2, g % 2, unit, row)
    grouped = tl.reshape(tl.permute(grouped, (0, 3, 4, 1, 2)), (BLOCK_H, BLOCK_B, 2, 2))
    even, odd = tl.split(grouped)
    i, g = tl.split(even)
    f, o = tl.split(odd)
    return i, f, g, o


def launch_warps(_semantic=None):
    """The ``num_warps`` of the launch being compiled, as a constexpr (a builtin: the compiler passes
    ``_semantic``); 0 in the interpreter, which calls it as plain Python and has no layouts."""
    return tl.constexpr(_semantic.builder.options.num_warps if _semantic is not None else 0)


setattr(launch_warps, tl.core.TRITON_BUILTIN, True)


@triton.jit
def operand_pointers(base, offsets, CONTIGUOUS: tl.constexpr):
    """``base + offsets`` for the load of a split-K dot-operand tile (the sum slices first,
    contiguous along dimension ``CONTIGUOUS`` in memory; either may broadcast), with a contiguity
    hint that narrows the load's vector where the running Triton would otherwise lay the tile's
    shared buffer out with 8-way bank conflicts (:mod:`rnnbench.kernels.operand_layout`); no hint
    where it would not (every tile under Triton 3.6). The sum is made here because a hint attaches
    to the operation that defines a value, and an argument's is in the caller."""
    pointers = base + offsets
    VECTOR: tl.constexpr = operand_contiguity(pointers.shape, CONTIGUOUS, launch_warps(),
                                              base.dtype.element_ty.primitive_bitwidth)
    if VECTOR > 0:
        if CONTIGUOUS == 1:
            pointers = tl.max_contiguous(pointers, [1, VECTOR, 1])
        else:
            pointers = tl.max_contiguous(pointers, [1, 1, VECTOR])
    return pointers


@triton.jit
def weight_block(w_ptr, m_offsets, m_mask, q, gate_stride, k_limit, k_stride, K_CHUNKS: tl.constexpr,
                 K_SPLIT: tl.constexpr, BK: tl.constexpr, M_SPLIT: tl.constexpr = 1, ROWS_FIRST: tl.constexpr = False,
                 ROWS_CONTIGUOUS: tl.constexpr = False):
    """Reduction block ``q`` of a weight slice: the ``(K_SPLIT, M, BK)`` tile
    ``w[s, m, kk] = w_ptr[(q // K_CHUNKS) * gate_stride + m_offsets[m] + k * k_stride]`` with
    ``k = (q % K_CHUNKS) * K_SPLIT * BK + s * BK + kk``, zero where ``m_mask`` is false or
    ``k >= k_limit`` (so padded units and columns contribute nothing). With ``M_SPLIT > 1`` the
    rows are cut into ``M_SPLIT`` parts as well: ``(K_SPLIT * M_SPLIT, M / M_SPLIT, BK)``, slice
    ``s * M_SPLIT + r`` holding rows ``[r * M / M_SPLIT, (r + 1) * M / M_SPLIT)`` (see :func:`split_dot`).

    Forward: M = gate rows (``m_offsets`` from :func:`gate_rows`), k = column of ``W_hh``, one gate
    stride. Backward: M = units (``m_offsets`` = the units), k = row within gate ``q // K_CHUNKS``,
    the rows contiguous in memory (``ROWS_CONTIGUOUS``; the load's hint of :func:`operand_pointers`
    needs to know). A mask along the contiguous dimension (forward ``k_limit``, backward
    ``m_mask``) should be a bound divisible by 16, the row stride (the columns past H are zero
    there), or the loads cannot be vectorised.

    ``ROWS_FIRST`` (with ``M_SPLIT > 1``): loaded as ``(M / M_SPLIT, K_SPLIT * M_SPLIT, BK)``, then
    permuted. Triton 3.6 orders the load's dimensions by contiguity, and of the two that tie (rows and
    slices) it puts dimension 0 first; the shared buffer the dot operand passes through keeps that
    order. Loaded slices-first, the buffer had the rows outermost, unswizzled, and every ``ldmatrix``
    of it took 8 wavefronts (:mod:`rnnbench.kernels.bank_conflicts`: 2.7 µs a step of the 32-row
    forward at H=768 B=64 on the H200); loaded rows-first, the rows are swizzled and it takes one.
    The held weights (:func:`held_weights`) are loaded so. The streamed ones are not yet: with it,
    Triton 3.6 stops unrolling :func:`streamed_product`'s chunk loop, whose effect on the stepwise
    step wants a GPU first.
    """
    s = tl.arange(0, K_SPLIT)
    kk = tl.arange(0, BK)
    if M_SPLIT == 1:
        k = (q % K_CHUNKS) * (K_SPLIT * BK) + s[:, None, None] * BK + kk[None, None, :]
        # summed in the order the kernels always had (pointer, rows, then columns): Triton 3.6, which
        # gets no hint, compiles the code it did
        pointers = operand_pointers(w_ptr + (q // K_CHUNKS) * gate_stride + m_offsets[None, :, None], k * k_stride,
                                    1 if ROWS_CONTIGUOUS else 2)
        return tl.load(pointers, mask=m_mask[None, :, None] & (k < k_limit), other=0.0)
    else:
        PART: tl.constexpr = m_offsets.shape[0] // M_SPLIT
        if ROWS_FIRST:
            SLICES: tl.constexpr = K_SPLIT * M_SPLIT
            slices = tl.arange(0, SLICES)
            k = (q % K_CHUNKS) * (K_SPLIT * BK) + (slices // M_SPLIT)[None, :, None] * BK + kk[None, None, :]
            # slice s * M_SPLIT + r holds part r's rows
            rows = tl.reshape(tl.broadcast_to(tl.reshape(m_offsets, (M_SPLIT, PART))[None, :, :],
                                              (K_SPLIT, M_SPLIT, PART)), (SLICES, PART))
            valid = tl.reshape(tl.broadcast_to(tl.reshape(m_mask, (M_SPLIT, PART))[None, :, :],
                                               (K_SPLIT, M_SPLIT, PART)), (SLICES, PART))
            w = tl.load(w_ptr + (q // K_CHUNKS) * gate_stride + tl.trans(rows)[:, :, None] + k * k_stride,
                        mask=tl.trans(valid)[:, :, None] & (k < k_limit), other=0.0)
            return tl.permute(w, (1, 0, 2))
        k = (q % K_CHUNKS) * (K_SPLIT * BK) + s[:, None, None, None] * BK + kk[None, None, None, :]
        rows = tl.reshape(m_offsets, (M_SPLIT, PART))[None, :, :, None]
        valid = tl.reshape(m_mask, (M_SPLIT, PART))[None, :, :, None]
        w = tl.load(w_ptr + (q // K_CHUNKS) * gate_stride + rows + k * k_stride, mask=valid & (k < k_limit), other=0.0)
        return tl.reshape(w, (K_SPLIT * M_SPLIT, PART, BK))


@triton.jit
def held_weights(w_ptr, m_offsets, m_mask, gate_stride, k_limit, k_stride, BLOCKS: tl.constexpr,
                 K_CHUNKS: tl.constexpr, K_SPLIT: tl.constexpr, BK: tl.constexpr, M_SPLIT: tl.constexpr = 1,
                 ROWS_CONTIGUOUS: tl.constexpr = False):
    """The tuple of all ``BLOCKS`` weight blocks (:func:`weight_block`, rows outside the slices), loaded
    once per launch."""
    blocks = ()
    for q in tl.static_range(BLOCKS):
        blocks = blocks + (weight_block(w_ptr, m_offsets, m_mask, q, gate_stride, k_limit, k_stride, K_CHUNKS,
                                        K_SPLIT, BK, M_SPLIT, True, ROWS_CONTIGUOUS),)
    return blocks


#: bytes of state blocks a held product loads ahead of the one it multiplies: enough in flight to
#: cover the L2 latency (~280 cycles at ~40 B/clock per SM is ~11 KiB; a 16-row block of 256
#: columns is 8 KiB), few enough that the loaded blocks stay in registers (two 64-row blocks ahead
#: spilled registers in the backward kernel)
LOOKAHEAD_BYTES: tl.constexpr = tl.constexpr(16384)


@triton.jit
def split_dot(w, a, acc, M: tl.constexpr, BLOCK_B: tl.constexpr, K_SPLIT: tl.constexpr, BK: tl.constexpr,
              DOT_PRECISION: tl.constexpr, M_SPLIT: tl.constexpr = 1):
    """``acc + w @ a`` of a weight block from :func:`weight_block` and a ``(K_SPLIT, BK, BLOCK_B)``
    state block into the split-K accumulator (:func:`split_accumulator`).

    One slice (``K_SPLIT == 1``) is a 2-D dot, whose warps split the ``(M, BLOCK_B)`` output (and
    which Triton may run as a warpgroup MMA on sm_90). More slices are a 3-D (batched) dot of
    ``K_SPLIT * M_SPLIT`` slices, as many as the program has warps (the planner's rule,
    :data:`rnnbench.kernels.plan.SPLIT_IS_WARPS`): Triton 3.6 puts every warp of a 3-D dot on
    its batch dimension, so with fewer slices than warps several warps computed the same slice,
    each holding its whole accumulator. With ``M_SPLIT > 1`` the weight rows are cut into parts
    (one slice each) and every part multiplies the same state block."""
    if K_SPLIT == 1:
        return tl.dot(tl.reshape(w, (M, BK)), tl.reshape(a, (BK, BLOCK_B)), acc, input_precision=DOT_PRECISION)
    elif M_SPLIT == 1:
        return tl.dot(w, a, acc, input_precision=DOT_PRECISION)
    else:
        a = tl.reshape(tl.broadcast_to(a[:, None, :, :], (K_SPLIT, M_SPLIT, BK, BLOCK_B)), (K_SPLIT * M_SPLIT, BK, BLOCK_B))
        return tl.dot(w, a, acc, input_precision=DOT_PRECISION)


@triton.jit
def split_accumulator(M: tl.constexpr, BLOCK_B: tl.constexpr, K_SPLIT: tl.constexpr, M_SPLIT: tl.constexpr = 1):
    """The zero float32 accumulator of :func:`split_dot`: ``(M, BLOCK_B)`` for one slice, else
    ``(K_SPLIT * M_SPLIT, M / M_SPLIT, BLOCK_B)``."""
    if K_SPLIT == 1:
        return tl.zeros((M, BLOCK_B), tl.float32)
    else:
        return tl.zeros((K_SPLIT * M_SPLIT, M // M_SPLIT, BLOCK_B), tl.float32)


@triton.jit
def _halve(x, M: tl.constexpr, BLOCK_B: tl.constexpr, SLICES: tl.constexpr):
    """``(M, BLOCK_B, SLICES)`` -> ``(M, BLOCK_B, SLICES // 2)``: slice ``j`` plus slice ``j + SLICES // 2``."""
    low, high = tl.split(tl.permute(tl.reshape(x, (M, BLOCK_B, 2, SLICES // 2)), (0, 1, 3, 2)))
    return low + high


@triton.jit
def sum_slices(acc, M: tl.constexpr, BLOCK_B: tl.constexpr, K_SPLIT: tl.constexpr, M_SPLIT: tl.constexpr = 1):
    """The ``(M, BLOCK_B)`` sum over the slices of a split-K accumulator from :func:`split_dot`
    (``K_SPLIT`` a power of two up to 16).

    Through ``tl.split`` rather than ``tl.sum``: to split, Triton moves the slices (one per warp)
    into the same thread with one layout conversion through shared memory and the sum is then in
    registers, where ``tl.sum`` over the warps took a dozen shared-memory round trips, one per
    16x8 accumulator tile and phase (25 BAR.SYNC per step at H=768, B=16; Triton 3.9, sm_90)."""
    if M_SPLIT > 1:
        acc = tl.reshape(acc, (K_SPLIT, M, BLOCK_B))
    if K_SPLIT == 1:
        return acc
    elif K_SPLIT == 2:
        first, second = tl.split(tl.permute(acc, (1, 2, 0)))
        return first + second
    elif K_SPLIT == 4:
        even, odd = tl.split(tl.reshape(tl.permute(acc, (1, 2, 0)), (M, BLOCK_B, 2, 2)))
        s0, s2 = tl.split(even)
        s1, s3 = tl.split(odd)
        return (s0 + s1) + (s2 + s3)
    else:
        x = tl.permute(acc, (1, 2, 0))
        if K_SPLIT == 16:
            x = _halve(x, M, BLOCK_B, 16)
        x = _halve(x, M, BLOCK_B, 8)
        even, odd = tl.split(tl.reshape(x, (M, BLOCK_B, 2, 2)))
        s0, s2 = tl.split(even)
        s1, s3 = tl.split(odd)
        return (s0 + s1) + (s2 + s3)


@triton.jit
def held_product(blocks, a_ptr, read, M: tl.constexpr, BLOCK_B: tl.constexpr, BLOCKS: tl.constexpr,
                 K_SPLIT: tl.constexpr, BK: tl.constexpr, DOT_PRECISION: tl.constexpr, M_SPLIT: tl.constexpr = 1):
    """``(M, BLOCK_B)`` float32 product of the held weight ``blocks`` with the state rows in an
    exchange slot ``a_ptr`` (block ``q`` at columns ``q * K_SPLIT * BK``; ``read`` from
    :func:`exchange_offsets`): all blocks accumulate per warp, then one reduction over the warps.
    The loads of the next ``LOOKAHEAD_BYTES`` of blocks are issued before block ``q`` is
    multiplied, so the blocks' L2 round trips overlap instead of adding up."""
    LOOKAHEAD: tl.constexpr = max(1, LOOKAHEAD_BYTES // (K_SPLIT * BK * BLOCK_B * a_ptr.dtype.element_ty.primitive_bitwidth // 8))
    states = ()
    for q in tl.static_range(min(LOOKAHEAD, BLOCKS)):
        states = states + (tl.load(operand_pointers(a_ptr + q * (K_SPLIT * BK), read, 1), cache_modifier=".cg"),)
    acc = split_accumulator(M, BLOCK_B, K_SPLIT, M_SPLIT)
    for q in tl.static_range(BLOCKS):
        if q + LOOKAHEAD < BLOCKS:
            states = states + (tl.load(operand_pointers(a_ptr + (q + LOOKAHEAD) * (K_SPLIT * BK), read, 1), cache_modifier=".cg"),)
        acc = split_dot(blocks[q], states[q], acc, M, BLOCK_B, K_SPLIT, BK, DOT_PRECISION, M_SPLIT)
    return sum_slices(acc, M, BLOCK_B, K_SPLIT, M_SPLIT)


@triton.jit
def streamed_product(w_ptr, m_offsets, m_mask, gate_stride, k_limit, k_stride, a_ptr, read, M: tl.constexpr,
                     BLOCK_B: tl.constexpr, BLOCKS: tl.constexpr, K_CHUNKS: tl.constexpr, K_SPLIT: tl.constexpr,
                     BK: tl.constexpr, DOT_PRECISION: tl.constexpr, M_SPLIT: tl.constexpr = 1,
                     ROWS_CONTIGUOUS: tl.constexpr = False):
    """:func:`held_product` loading each weight block when it is used (``STEPWISE``: one launch per
    step, so nothing is reused and registers hold one block whatever H is)."""
    acc = split_accumulator(M, BLOCK_B, K_SPLIT, M_SPLIT)
    for q in range(BLOCKS):
        w = weight_block(w_ptr, m_offsets, m_mask, q, gate_stride, k_limit, k_stride, K_CHUNKS, K_SPLIT, BK, M_SPLIT,
                         ROWS_CONTIGUOUS=ROWS_CONTIGUOUS)
        a = tl.load(operand_pointers(a_ptr + q * (K_SPLIT * BK), read, 1), cache_modifier=".cg")
        acc = split_dot(w, a, acc, M, BLOCK_B, K_SPLIT, BK, DOT_PRECISION, M_SPLIT)
    return sum_slices(acc, M, BLOCK_B, K_SPLIT, M_SPLIT)


@triton.jit
def chunk_offsets(rows, B, row_stride, width, K_SPLIT: tl.constexpr, BK: tl.constexpr):
    """Offsets and mask of the ``(K_SPLIT, BK, BLOCK_B)`` split-K view of rows ``rows`` of a matrix:
    element ``[s, kk, b]`` is column ``s*BK + kk`` of row ``rows[b]`` (rows ``row_stride`` apart);
    rows >= B and columns >= ``width`` are masked."""
    s = tl.arange(0, K_SPLIT)
    kk = tl.arange(0, BK)
    column = s[:, None, None] * BK + kk[None, :, None]
    return rows[None, None, :] * row_stride + column, (column < width) & (rows < B)[None, None, :]


@triton.jit
def to_chunks(state, BLOCK_B: tl.constexpr, K_SPLIT: tl.constexpr, BK: tl.constexpr):
    """``(K_SPLIT*BK, BLOCK_B)`` -> the ``(K_SPLIT, BK, BLOCK_B)`` split-K view, in registers."""
    return tl.reshape(state, (K_SPLIT, BK, BLOCK_B))


@triton.jit
def exchange_offsets(rows, units, ROW_WIDTH: tl.constexpr, K_SPLIT: tl.constexpr, BK: tl.constexpr):
    """Offsets into one slot of an exchange buffer ``(2, B_pad, ROW_WIDTH)``.

    Returns ``(read, write)``: ``read`` is the ``(K_SPLIT, BK, BLOCK_B)`` split-K view of the first
    ``K_SPLIT*BK`` columns of rows ``rows`` (add ``q*K_SPLIT*BK`` for block q); ``write`` the
    ``(BLOCK_H, BLOCK_B)`` tile of this program's units. Strides are compile-time constants and the
    buffer is padded (rows to whole batch blocks, columns to ``H_PAD``, padding kept zero), so
    neither needs a mask and loads vectorise for every H.
    """
    s = tl.arange(0, K_SPLIT)
    kk = tl.arange(0, BK)
    read = rows[None, None, :] * ROW_WIDTH + s[:, None, None] * BK + kk[None, :, None]
    write = rows[None, :] * ROW_WIDTH + units[:, None]
    return read, write


@triton.jit
def exchange_slot(exchange_ptr, t, ROW_WIDTH: tl.constexpr, BLOCK_B: tl.constexpr):
    """Slot ``t % 2`` of an exchange buffer: step t writes its slot, step t+1 reads it.

    Two slots suffice because the barrier after step t also orders every read of slot ``(t-1) % 2``
    (done during step t) before any write of that slot in step t+1.
    """
    return exchange_ptr + (t % 2) * (tl.num_programs(1) * BLOCK_B * ROW_WIDTH)


# ---- directions, lengths and the state between steps ---------------------------------------------

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
    written exactly once. A scalar, or ``(1, BLOCK_B)`` when rows of different lengths run backwards.
    """
    if DIRECTIONS == 1:
        return s
    elif HAS_LENGTHS:
        backwards = (direction == 1) & (s < length)
        return tl.where(backwards, length - 1 - s, s)[None, :]
    else:
        return tl.where(direction == 1, T - 1 - s, s)


@triton.jit
def running_rows(s, length, state_mask, HAS_LENGTHS: tl.constexpr):
    """``state_mask`` restricted to the rows whose sequence includes processing step ``s``."""
    if HAS_LENGTHS:
        return state_mask & (s < length)[None, :]
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
def carry_state(h, h_prev, s, length, exchange_ptr, write, running, flags_ptr, MODE: tl.constexpr,
                BLOCK_B: tl.constexpr, K_SPLIT: tl.constexpr, BK: tl.constexpr, H_PAD: tl.constexpr,
                HAS_LENGTHS: tl.constexpr):
    """Hand the state ``h`` after step ``s`` (``(BLOCK_H, BLOCK_B)``, storage dtype) to the next
    step of an in-kernel time loop. ``PERSISTENT``: returns it as the next split-K state operand,
    kept in registers (rows that have ended keep ``h_prev``). ``COOPERATIVE``: publishes it through
    the exchange buffer, arrives at the grid barrier (the caller waits, :func:`step_wait`, once it
    has issued the next step's input loads) and returns ``h_prev`` (the next step loads the state
    rows from the exchange)."""
    if MODE == PERSISTENT:
        h_next = to_chunks(h, BLOCK_B, K_SPLIT, BK)
        if HAS_LENGTHS:
            h_next = tl.where((s < length)[None, None, :], h_next, h_prev)
        return h_next
    else:
        publish_state(exchange_ptr, s, h, write, running, H_PAD, BLOCK_B, HAS_LENGTHS)
        step_arrive(flags_ptr, MODE)
        return h_prev


@triton.jit
def final_state_gradient(dh_n_ptr, state_offsets, state_mask, s, length, HAS_LENGTHS: tl.constexpr):
    """``dh_n`` (float32) for the rows whose last step is ``s``, zero for the others (without
    lengths every row ends at step T-1, the only step that asks)."""
    mask = state_mask
    if HAS_LENGTHS:
        mask = state_mask & (s == length - 1)[None, :]
    return tl.load(dh_n_ptr + state_offsets, mask=mask, other=0.0).to(tl.float32)
