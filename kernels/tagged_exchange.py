"""The tagged exchange: every element of the exchanged state travels with the step that wrote it, in
one word, so a program waits for the state itself instead of for a grid barrier.

**Why.** The cooperative step's grid barrier (:func:`rnnbench.kernels.primitives.grid_barrier`) cost
1.84 µs of the 2.83 µs step at H=768, B=16 on an H200 (``reports/h200/kernels2/ablation.csv``), and
about 1.7 µs from 12 up to 96 programs: a chain of L2 round trips. The arrival's release waits for
the step's stores to be acknowledged, the release add travels to L2, the poll sees it, a CTA
barrier, and only then are the state rows loaded. With a tag in every word a consumer's load of the
state *is* its poll: a word whose tag is the step it needs holds the value that step wrote, because
the word is written and read whole (single-copy atomic: a relaxed ``atom.exch`` of the producer,
``ld.volatile`` of the consumer), so no fence, flag or second round trip is needed. The price: each
word is twice the state's size, and a consumer checks every word it loads. This is the idea of
NCCL's low-latency ("LL") protocol, applied to the recurrence's state exchange.

**Status: an experiment.** Only the step ablation's ``tagged`` variant
(:mod:`rnnbench.kernels.step_bench`) uses it; no shipped kernel does. The cost model predicts it
loses (H=768, B=16, sm_90, Triton 3.9: 2.87 µs per step against the barrier's 2.40; about 2x at
B=64, where a step waits for its four blocks one by one): twice the bytes at the SM's share of L2
bandwidth, and a second load of the state whenever the first one finds a stale word, outweigh the
round trips saved. The model has over-estimated loads (``load``: 1.05 estimated, 0.75 measured on
the H200) and under-estimated the barrier (``sync``: 1.60 against 1.84), both in this exchange's
favour, so the GPU decides whether the kernels get it.

**Words.** ``value | tag << BITS``: a 16-bit value (fp16 or bf16, as bits) with a 15-bit tag in an
int32, or a 32-bit value with a 31-bit tag in an int64 (positive tags, so an arithmetic shift reads
them back). The exchange buffer ``(2, B_pad, ROW_WIDTH)`` of :mod:`rnnbench.kernels.primitives`
holds words instead of values, same layout, same two slots (:func:`~rnnbench.kernels.primitives.exchange_slot`).

**Tags.** The state after ``s`` steps carries tag ``s`` (modulo ``2**(BITS-1)``): the initial state
in slot 1 is tag 0, step ``s`` reads tag ``s`` from slot ``(s+1) % 2`` and writes tag ``s+1`` into
slot ``s % 2``. A slot holds either the tag a reader wants or the one two steps older, never equal
modulo the tag's range, so a stale word is never taken for a fresh one. Two slots are enough
without a barrier: a producer writes slot ``s % 2`` at step ``s`` only after it has read every
program's step ``s-1`` output, and each program computed that output from its own reads of the
same slot at step ``s-1``, so those reads are done (``tests/test_tagged_exchange.py`` runs the
protocol word by word under random schedules, writes landing in any order: no stale word is taken,
no program waits forever; with one slot, or without the tag check, it fails).

**Waiting.** The state's blocks are loaded together (up to :data:`WAIT_BYTES`), checked with one
CTA-wide reduction, and loaded again, together, until every word is fresh (:func:`wait_fresh`,
:func:`tagged_product`): a step that arrives early costs one more L2 round trip, not one per block.
Loaded again means all of the words (what the H200 measured: 1.01-1.16x slower than the barrier),
or with ``STALE_ONLY`` (the ablation's ``tagged_stale``, not yet run on a GPU) only the words still
stale, by masked loads: the first load pays the state's doubled bytes once, and a reload only the
round trip and the late producers' words. At 96 programs a first load that finds no late producer
is rare, so reloading everything paid the doubled bytes about twice a step (the ``tagged`` row's
1.86 µs over ``no_sync`` at H=768, B=16, against the barrier's 1.76); what ``tagged_stale`` saves
over ``tagged`` is what reloading everything cost. A fresh word may be kept across reloads: its
slot is written again only two steps on, after its producer has read this program's next state. A wait longer
than ``timeout_ns`` sets the status word of the synchronisation buffer (as the grid barrier's does,
read by :func:`rnnbench.kernels.launch.barrier_status_message`), and every later wait of the launch
gives up after one poll, so a lost producer ends the launch with garbage and a reported error, not a hang.
Only the columns some program of the launch writes are checked (``WRITTEN``, a compile-time
constant: a check without a column mask is a LOP3 and a max per word); the padding columns past
the last program's units and, in the step ablation, the units of programs not launched are not.

**Compact words (the Gluon forward's, :func:`rnnbench.kernels.gluon_lstm._tagged_loader`).** The
words above are twice the state's bytes, and reading them back costs a Gluon loader ~930
instructions a step at H=768 (the cost model's count), which is why that loader lost in the model
(3.03 against the barrier's 1.77 µs). An LSTM's h is ``o * tanh(c)``, at most 1 in magnitude, and
in fp16 and bf16 every value below 2 has its top exponent bit (bit 14) clear. That bit carries the
tag: :func:`compact_words` stores bit 1 of the tag there (:func:`compact_parity`; the two tags a
slot can hold when read, the wanted one and the one two steps older, differ in exactly that bit),
so a compact word is a 16-bit value, the state's own bytes, read in int32 pairs as the MMAs' tiles
hold them. Reading a pair for a tag is one xor (:func:`compact_key`), after which a fresh value is
itself and a stale half has bit 14 set; :func:`compact_suspects` finds both a stale half and a
published NaN (which has bit 14 set too, so :func:`compact_words` publishes it as ``0x7FFF`` with
bit 14 cleared, a magnitude of 1.99 no h has) with an or, a subtraction and an and per pair, and
:func:`compact_values` turns a NaN's pair back into NaNs (the row's product is NaN either way).
``h0`` can be any value, so it is not encoded: the compact exchange (:func:`compact_state`) has a
third slot holding it as it is, which step 0 reads unchecked; slots 0 and 1 start stale for the
first tags read from them (1 and 2). ``tests/test_tagged_exchange.py`` runs the protocol with the
1-bit tag word by word (and shows that bit 0 of the tag instead would take stale words).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.language.extra.cuda import globaltimer

from rnnbench.kernels.primitives import split_accumulator, split_dot, sum_slices

#: the integer word of each storage dtype's bit width (value and tag, half each)
WORD_DTYPES = {16: torch.int32, 32: torch.int64}


@triton.jit
def tag_words(values, step):
    """Words of ``values`` (fp16/bf16 or fp32) tagged with ``step`` (see the module docstring)."""
    BITS: tl.constexpr = values.dtype.primitive_bitwidth
    if BITS == 16:
        raw = values.to(tl.int16, bitcast=True).to(tl.uint16, bitcast=True).to(tl.int32)
        return raw | ((step & 0x7FFF) << 16)
    else:
        raw = values.to(tl.int32, bitcast=True).to(tl.uint32, bitcast=True).to(tl.int64)
        return raw | (tl.cast(step & 0x7FFFFFFF, tl.int64) << 32)


@triton.jit
def word_values(words, DTYPE: tl.constexpr):
    """The values (``DTYPE``, 16 or 32 bits) in ``words``."""
    if words.dtype.primitive_bitwidth == 32:
        return words.to(tl.int16).to(DTYPE, bitcast=True)
    else:
        return words.to(tl.int32).to(DTYPE, bitcast=True)


@triton.jit
def stale_bits(words, step):
    """The tag bits of ``word ^ wanted``: zero where a word carries ``step``'s tag (a LOP3 per
    word). Non-negative, because tags leave the sign bit clear."""
    BITS: tl.constexpr = words.dtype.primitive_bitwidth // 2
    MASK: tl.constexpr = (1 << (BITS - 1)) - 1
    return (words ^ (tl.cast(step & MASK, words.dtype) << BITS)) & (MASK << BITS)


@triton.jit
def _wrong(words, first_column, columns, step, WRITTEN: tl.constexpr):
    """:func:`stale_bits` of a block of words whose column ``[k, j, b]`` is ``first_column +
    columns[k, j, 0]``, zero where the column is not written (``WRITTEN``; a block of written
    columns needs no mask)."""
    wrong = stale_bits(words, step)
    if first_column + columns.shape[0] * columns.shape[1] > WRITTEN:
        wrong = tl.where(columns + first_column < WRITTEN, wrong, 0)
    return wrong


#: bits of a wait's shared reduction below the tags' (:func:`_stale`): some thread gave up (its
#: clock, or the status word), some thread's clock ran past the timeout
GAVE_UP: tl.constexpr = tl.constexpr(1)
TIMED_OUT: tl.constexpr = tl.constexpr(2)


@triton.jit
def bitwise_or(a, b):
    """The combining function of a bitwise-or reduction."""
    return a | b


@triton.jit
def give_up_flags(status, waited_ns, timeout_ns):
    """One thread's bits for a wait's shared reduction: :data:`GAVE_UP` where the launch's status word
    says another wait timed out, :data:`GAVE_UP` and :data:`TIMED_OUT` where this thread's clock has
    run ``waited_ns`` past ``timeout_ns`` with the status word still clear, else 0."""
    timed_out = (waited_ns > timeout_ns) & (status == 0)
    return tl.where(timed_out, GAVE_UP | TIMED_OUT, tl.where(status != 0, GAVE_UP, 0))


@triton.jit
def timed_out_stale(stale):
    """Whether a wait's shared reduction ``stale`` says to report a timeout: some thread's clock ran
    out and some word is still stale (a wait whose last words came in that same poll is no timeout)."""
    return ((stale & TIMED_OUT) != 0) & ((stale & ~(GAVE_UP | TIMED_OUT)) != 0)


@triton.jit
def _stale(words, FIRST: tl.constexpr, COUNT: tl.constexpr, columns, step, WRITTEN: tl.constexpr, flags=0):
    """Nonzero unless every written word of the ``COUNT`` blocks ``words`` (blocks ``FIRST...``)
    carries ``step``'s tag, or'ed with each thread's ``flags`` (:data:`GAVE_UP`, :data:`TIMED_OUT`):
    one CTA-wide reduction for all of them, so every thread takes the same decision from it."""
    CHUNK: tl.constexpr = columns.shape[0] * columns.shape[1]
    wrong = _wrong(words[0], FIRST * CHUNK, columns, step, WRITTEN)
    for i in tl.static_range(1, COUNT):
        wrong = tl.maximum(wrong, _wrong(words[i], (FIRST + i) * CHUNK, columns, step, WRITTEN))
    return tl.reduce(wrong | flags, None, bitwise_or)


@triton.jit
def _load_words(words_ptr, read, FIRST: tl.constexpr, COUNT: tl.constexpr, CHUNK: tl.constexpr):
    """Blocks ``FIRST ... FIRST+COUNT-1`` of a slot of words (block q at column ``q * CHUNK``),
    volatile loads (``LDG.STRONG.SYS``: from L2, never a stale L1 line, never hoisted), all issued
    before any is used."""
    words = ()
    for q in tl.static_range(FIRST, FIRST + COUNT):
        words = words + (tl.load(words_ptr + q * CHUNK + read, volatile=True),)
    return words


@triton.jit
def _reload_stale(words, words_ptr, read, FIRST: tl.constexpr, COUNT: tl.constexpr, columns, step,
                  WRITTEN: tl.constexpr):
    """The ``COUNT`` blocks ``words`` (blocks ``FIRST...``) with every word that does not carry
    ``step``'s tag loaded again: one masked volatile load per block, so only the stale words travel
    and the fresh ones keep their registers (a fresh word stays valid until this program publishes
    its next step: its producer overwrites that slot only after reading that step, see the module
    docstring)."""
    CHUNK: tl.constexpr = columns.shape[0] * columns.shape[1]
    again = ()
    for i in tl.static_range(COUNT):
        stale = _wrong(words[i], (FIRST + i) * CHUNK, columns, step, WRITTEN) != 0
        again = again + (tl.load(words_ptr + (FIRST + i) * CHUNK + read, mask=stale, other=words[i], volatile=True),)
    return again


@triton.jit
def wait_fresh(words, words_ptr, read, FIRST: tl.constexpr, COUNT: tl.constexpr, columns, step, status_ptr,
               timeout_ns, WRITTEN: tl.constexpr, STALE_ONLY: tl.constexpr = False):
    """The ``COUNT`` blocks ``words`` (:func:`_load_words` of blocks ``FIRST...``), loaded again
    until every written word carries the tag of ``step`` or the launch's wait has timed out (see
    the module docstring): all of them, together, or with ``STALE_ONLY`` only the stale words
    (:func:`_reload_stale`)."""
    CHUNK: tl.constexpr = columns.shape[0] * columns.shape[1]
    stale = _stale(words, FIRST, COUNT, columns, step, WRITTEN)
    if stale != 0:
        # each thread reads the status word and the clock itself: whether to give up goes through the
        # reduction every thread shares, so all leave the loop together (one polling once more than
        # the others would wait at the reduction's CTA barrier for threads gone on)
        start = globaltimer()
        while (stale != 0) & ((stale & GAVE_UP) == 0):
            if STALE_ONLY:
                words = _reload_stale(words, words_ptr, read, FIRST, COUNT, columns, step, WRITTEN)
            else:
                words = _load_words(words_ptr, read, FIRST, COUNT, CHUNK)
            flags = give_up_flags(tl.load(status_ptr, volatile=True), globaltimer() - start, timeout_ns)
            stale = _stale(words, FIRST, COUNT, columns, step, WRITTEN, flags)
            if timed_out_stale(stale):
                tl.atomic_max(status_ptr, step, sem="relaxed", scope="gpu")
    return words


@triton.jit
def publish_tagged(words_ptr, values, step, mask):
    """Store ``values`` tagged with ``step`` at ``words_ptr`` (where ``mask``), each word one relaxed
    ``atom.exch`` at GPU scope: a strong write, whole, that a consumer's volatile load may race."""
    tl.atomic_xchg(words_ptr, tag_words(values, step), mask=mask, sem="relaxed", scope="gpu")


#: bytes of words per program that one wait checks together (:func:`tagged_product`): the whole
#: state at H=768, B=16 (48 KiB, 96 registers a thread with 4 warps), so a step waits for one poll,
#: not one per block
WAIT_BYTES: tl.constexpr = tl.constexpr(49152)


@triton.jit
def _group_product(blocks, acc, words, words_ptr, read, columns, step, status_ptr, timeout_ns, FIRST: tl.constexpr,
                   GROUP: tl.constexpr, BLOCKS: tl.constexpr, M: tl.constexpr, BLOCK_B: tl.constexpr,
                   K_SPLIT: tl.constexpr, BK: tl.constexpr, DOT_PRECISION: tl.constexpr, DTYPE: tl.constexpr,
                   WRITTEN: tl.constexpr, M_SPLIT: tl.constexpr, STALE_ONLY: tl.constexpr):
    """One group of :func:`tagged_product`: wait for the loaded ``words`` of blocks ``FIRST...``,
    issue the next group's loads, multiply; returns ``(acc, next group's words)``."""
    COUNT: tl.constexpr = min(GROUP, BLOCKS - FIRST)
    ready = wait_fresh(words, words_ptr, read, FIRST, COUNT, columns, step, status_ptr, timeout_ns, WRITTEN,
                       STALE_ONLY)
    if FIRST + GROUP < BLOCKS:
        words = _load_words(words_ptr, read, FIRST + GROUP, min(GROUP, BLOCKS - FIRST - GROUP), K_SPLIT * BK)
    for i in tl.static_range(COUNT):
        acc = split_dot(blocks[FIRST + i], word_values(ready[i], DTYPE), acc, M, BLOCK_B, K_SPLIT, BK, DOT_PRECISION,
                        M_SPLIT)
    return acc, words


@triton.jit
def tagged_product(blocks, words_ptr, read, step, status_ptr, timeout_ns, M: tl.constexpr, BLOCK_B: tl.constexpr,
                   BLOCKS: tl.constexpr, K_SPLIT: tl.constexpr, BK: tl.constexpr, DOT_PRECISION: tl.constexpr,
                   DTYPE: tl.constexpr, WRITTEN: tl.constexpr, M_SPLIT: tl.constexpr = 1,
                   STALE_ONLY: tl.constexpr = False):
    """:func:`~rnnbench.kernels.primitives.held_product` of the state after ``step`` steps, read
    from a slot of tagged words (``words_ptr``; ``read`` from
    :func:`~rnnbench.kernels.primitives.exchange_offsets`). The blocks are taken in groups of
    :data:`WAIT_BYTES`: a group's loads are issued together, the group is waited for
    (:func:`wait_fresh`), the next group's loads are issued, then the group is multiplied.
    ``DTYPE``: the state's storage dtype; ``WRITTEN``: the columns the launch's programs write (the
    first ones; the others are not checked, and a block of written columns checks without a mask);
    ``STALE_ONLY``: a wait loads again only the words still stale (:func:`wait_fresh`)."""
    WORD_BYTES: tl.constexpr = words_ptr.dtype.element_ty.primitive_bitwidth // 8
    GROUP: tl.constexpr = max(1, min(BLOCKS, WAIT_BYTES // (K_SPLIT * BK * BLOCK_B * WORD_BYTES)))
    columns = tl.arange(0, K_SPLIT)[:, None, None] * BK + tl.arange(0, BK)[None, :, None]
    words = _load_words(words_ptr, read, 0, GROUP, K_SPLIT * BK)
    acc = split_accumulator(M, BLOCK_B, K_SPLIT, M_SPLIT)
    for first in tl.static_range(0, BLOCKS, GROUP):
        acc, words = _group_product(blocks, acc, words, words_ptr, read, columns, step, status_ptr, timeout_ns, first,
                                    GROUP, BLOCKS, M, BLOCK_B, K_SPLIT, BK, DOT_PRECISION, DTYPE, WRITTEN, M_SPLIT,
                                    STALE_ONLY)
    return sum_slices(acc, M, BLOCK_B, K_SPLIT, M_SPLIT)


# ---- compact words: the tag in the value's spare bit ------------------------------------------------

#: the bit of a 16-bit state value (fp16 or bf16) that carries a compact word's tag: the top exponent
#: bit, 0 in every value of magnitude below 2 (an LSTM's h is ``o * tanh(c)``, at most 1)
COMPACT_TAG_BIT: tl.constexpr = tl.constexpr(14)
#: the pattern a NaN of h is published as (both formats' all-ones NaN, tag bit cleared: 1.998 in fp16,
#: 1.992 in bf16, a magnitude h never has), restored to a NaN by the reader
COMPACT_NAN: tl.constexpr = tl.constexpr(0x7FFF)
#: per half of an int32 pair of compact values: the tag bit, the sign bit, the smallest magnitude
#: (bits) a published h cannot have (the NaN pattern, or any value whose tag bit is wrong)
COMPACT_TAG_PAIR: tl.constexpr = tl.constexpr(0x40004000)
_SIGN_PAIR: tl.constexpr = tl.constexpr(-0x7FFF8000)  # 0x80008000 as an int32
_LIMIT_PAIR: tl.constexpr = tl.constexpr(0x3FFF3FFF)
_NAN_PAIR: tl.constexpr = tl.constexpr(0x7FFF7FFF)


@triton.jit
def compact_parity(tag):
    """The tag bit of a compact word carrying ``tag`` (steps done): bit 1 of ``tag``, so that the two
    tags a slot can hold when read (the wanted one and the one two steps older) differ in it."""
    return (tag >> 1) & 1


@triton.jit
def compact_words(values, tag):
    """int16 compact words of ``values`` (fp16 or bf16, magnitude below 2 or NaN) tagged ``tag``: the
    value's bits with bit :data:`COMPACT_TAG_BIT` set to :func:`compact_parity`, a NaN as
    :data:`COMPACT_NAN` (whose tag bit would be set)."""
    raw = values.to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF
    raw = tl.where(values != values, COMPACT_NAN, raw)
    return ((raw & 0xBFFF) | (compact_parity(tag) << COMPACT_TAG_BIT)).to(tl.int16)


@triton.jit
def compact_key(tag):
    """What an int32 pair of compact words is xor'ed with to read it for ``tag``: its values where
    the words carry ``tag``, the tag bit set in each half that is stale."""
    return compact_parity(tag) * COMPACT_TAG_PAIR


@triton.jit
def compact_suspects(pairs):
    """The sign bit of each 16-bit half of ``pairs`` (int32 pairs of read compact words,
    :func:`compact_key` applied) whose magnitude no fresh h has: a stale half (tag bit set) or a NaN
    (:data:`COMPACT_NAN`); zero where both halves are fresh numbers. An or, a subtraction, an and."""
    return ((pairs | _SIGN_PAIR) - _LIMIT_PAIR) & _SIGN_PAIR


@triton.jit
def compact_stale(pairs):
    """Nonzero where a half of ``pairs`` (read for its tag) is stale: its tag bit is set."""
    return pairs & COMPACT_TAG_PAIR


@triton.jit
def compact_values(pairs):
    """``pairs`` (read for their tag, none stale) with each pair that holds a published NaN
    (:data:`COMPACT_NAN`) two NaNs: the product of a batch row with a NaN in its state is NaN
    whichever of its values is, so the row's result is the barrier kernel's."""
    return tl.where(compact_suspects(pairs) != 0, _NAN_PAIR, pairs)


#: per half of an int32 pair of read compact words: the 14 bits below the tag bit, and the carry into
#: the tag bit that adding one to them makes where they are all ones (the NaN pattern's): a half is
#: stale or a published NaN exactly where ``((pair & LOW) + CARRY) | pair`` has the tag bit set, the
#: set :func:`compact_suspects` finds (``tests/test_tagged_exchange.py`` checks every half)
THREAD_POLL_LOW = 0x3FFF3FFF
THREAD_POLL_CARRY = 0x00010001
#: the usual step's test instead (one 16x2 max a pair): each half's magnitude (sign cleared by
#: ``THREAD_POLL_MAGNITUDE``) is :data:`THREAD_POLL_SUSPECT` (the NaN pattern) or more (tag bit set:
#: stale) exactly where :func:`compact_suspects` finds the half suspect
THREAD_POLL_MAGNITUDE = 0x7FFF7FFF
THREAD_POLL_SUSPECT = 0x3FFF


def thread_poll_asm(vectors: int, stride_bytes: int, timeout_ns: int) -> tuple[str, str]:
    """PTX and constraints of one thread's whole wait for its ``vectors`` 16-byte vectors of compact
    words (4 int32 pairs each, ``stride_bytes`` apart from the first), for
    :func:`rnnbench.kernels.gluon_lstm._poll_in_thread` (``inline_asm_elementwise``, ``pack=4``).

    Operands: out, each vector's 4 pairs read for the tag (published NaNs restored, as
    :func:`compact_values`), then 4 copies of ``polls | TIMED_OUT << 16``; in, the first vector's
    pointer (4 copies), each vector's 4 pairs as loaded, the key (:func:`compact_key`), the launch's
    status word's pointer and the tag (4 copies each).

    **The usual step** (every half fresh, no NaN): a xor, an and and a 16x2 max a pair
    (:data:`THREAD_POLL_MAGNITUDE`), one test and a branch, in this thread alone: no reduction over
    threads, no CTA barrier. **Otherwise** the thread polls on its own: the vectors holding a stale
    half loaded again (predicated ``ld.volatile.global.v4.b32``, all issued before any is read);
    after each poll it reads the status word (nonzero: another wait of the launch timed out, give up)
    and the global timer, then runs the usual step's test again: passed, the words are read as in
    the usual step. ``timeout_ns`` after its first poll it gives up, and if a half is still
    stale, reports the tag in the status word (``red.max``, as
    :func:`rnnbench.kernels.tagged_exchange.wait_fresh` does) and sets ``TIMED_OUT`` in its result.
    Where it gives up, or where the test's suspect is no stale half (a published NaN), every pair
    holding a stale half or a NaN pattern becomes two NaNs (7 instructions a pair: only there)."""
    if vectors < 1:
        raise ValueError(f"a thread polls at least one vector, got {vectors}")
    n = 4 * vectors
    info, pointer = n, n + 4
    raw = pointer + 4
    key, status, tag = raw + n, raw + n + 4, raw + n + 8
    tag_pair = int(COMPACT_TAG_PAIR.value)

    def flagged(i: int) -> list[str]:  # %t: pair i's tag bits where a half is stale or the NaN pattern
        return [f"and.b32 %t, ${i}, {THREAD_POLL_LOW};", f"add.u32 %t, %t, {THREAD_POLL_CARRY};",
                f"or.b32 %t, %t, ${i};"]

    # %v: the words as loaded (reloads land there); the outputs: read for the tag (xor the key)
    lines = ["{", f".reg .b32 %v<{n}>;", ".reg .b32 %t, %u, %s, %n;", f".reg .pred %p<{vectors}>;",
             ".reg .pred %q, %e;", ".reg .b64 %t0, %t1;"]
    lines += [f"mov.b32 %v{i}, ${raw + i};" for i in range(n)]
    lines += ["mov.b32 %n, 0;", "setp.ne.b32 %e, %n, %n;"]
    # the usual step's test, and again after every poll: the largest magnitude of any half read (its sign
    # cleared), per half of the pairs, then of the two halves; a stale half or the NaN pattern is
    # THREAD_POLL_SUSPECT or more
    lines += ["CHECK:", "mov.b32 %s, 0;"]
    for i in range(n):
        lines += [f"xor.b32 %t, %v{i}, ${key};", f"and.b32 %t, %t, {THREAD_POLL_MAGNITUDE};",
                  "max.u16x2 %s, %s, %t;"]
    lines += ["shr.b32 %t, %s, 16;", "and.b32 %s, %s, 65535;", "max.u32 %s, %s, %t;",
              f"setp.lt.u32 %q, %s, {THREAD_POLL_SUSPECT};", "@%q bra DONE;",
              # the first poll's time (the timeout counts from it)
              "setp.eq.b32 %q, %n, 0;", "@%q mov.u64 %t0, %globaltimer;", "mov.b32 %s, 0;"]
    # the stale vectors of the words as they are now (temporaries only: no instruction between the
    # loads below reads what they load, so all are in flight together); none: the suspect is a NaN
    for k in range(vectors):
        lines.append(f"xor.b32 %t, %v{4 * k}, ${key};")
        for j in range(1, 4):
            lines += [f"xor.b32 %u, %v{4 * k + j}, ${key};", "or.b32 %t, %t, %u;"]
        lines += [f"and.b32 %t, %t, {tag_pair};", f"setp.ne.b32 %p{k}, %t, 0;", "or.b32 %s, %s, %t;"]
    lines += ["setp.eq.b32 %q, %s, 0;", "@%q bra FIX;", "@%e bra REPORT;", "add.u32 %n, %n, 1;"]
    for k in range(vectors):
        v = ", ".join(f"%v{4 * k + j}" for j in range(4))
        lines.append(f"@%p{k} ld.volatile.global.v4.b32 {{{v}}}, [${pointer}+{k * stride_bytes}];")
    # after a poll the words are tested first, so one that brought the last stale word is no timeout
    lines += [f"ld.relaxed.gpu.global.b32 %t, [${status}];", "setp.ne.b32 %q, %t, 0;", "@%q bra FIX;",
              "mov.u64 %t1, %globaltimer;", "sub.u64 %t1, %t1, %t0;", f"setp.gt.u64 %e, %t1, {int(timeout_ns)};",
              "bra CHECK;", "REPORT:", f"red.relaxed.gpu.global.max.s32 [${status}], ${tag};",
              f"or.b32 %n, %n, {int(TIMED_OUT.value) << 16};", "FIX:"]
    for i in range(n):
        lines += [f"xor.b32 ${i}, %v{i}, ${key};", *flagged(i), f"and.b32 %t, %t, {tag_pair};",
                  "setp.ne.b32 %q, %t, 0;", f"selp.b32 ${i}, {int(_NAN_PAIR.value)}, ${i}, %q;"]
    lines += ["bra END;", "DONE:"] + [f"xor.b32 ${i}, %v{i}, ${key};" for i in range(n)]
    lines += ["END:"] + [f"mov.b32 ${info + j}, %n;" for j in range(4)]
    lines.append("}")
    constraints = ",".join(["=r"] * (n + 4) + ["l"] * 4 + ["r"] * (n + 4) + ["l"] * 4 + ["r"] * 4)
    return "\n".join(lines), constraints


# ---- host side -----------------------------------------------------------------------------------

def _value_bits(dtype: torch.dtype) -> int:
    bits = torch.empty(0, dtype=dtype).element_size() * 8
    if bits not in WORD_DTYPES:
        raise ValueError(f"the tagged exchange holds 16- or 32-bit values, got {dtype} ({bits} bits)")
    return bits


def encode_tagged(values: torch.Tensor, step: int = 0) -> torch.Tensor:
    """Words (:data:`WORD_DTYPES`) of ``values`` tagged with ``step``, on ``values``' device."""
    bits = _value_bits(values.dtype)
    word = WORD_DTYPES[bits]
    raw = values.view(torch.int16 if bits == 16 else torch.int32).to(word) & ((1 << bits) - 1)
    return raw | ((step & ((1 << (bits - 1)) - 1)) << bits)


def decode_tagged(words: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The ``dtype`` values in ``words`` (the inverse of :func:`encode_tagged`, tags dropped)."""
    bits = _value_bits(dtype)
    if words.dtype != WORD_DTYPES[bits]:
        raise ValueError(f"words of {dtype} values are {WORD_DTYPES[bits]}, got {words.dtype}")
    return words.to(torch.int16 if bits == 16 else torch.int32).view(dtype)


def word_tags(words: torch.Tensor) -> torch.Tensor:
    """The tag of each word (int64)."""
    bits = words.element_size() * 4
    return (words >> bits).to(torch.int64)


def retag_(words: torch.Tensor, step: int = 0) -> torch.Tensor:
    """Set the tag of every word to ``step`` in place, values kept (a relaunch from the same state)."""
    bits = words.element_size() * 4
    words &= (1 << bits) - 1
    words |= (step & ((1 << (bits - 1)) - 1)) << bits
    return words


def _check_compact_dtype(dtype: torch.dtype) -> None:
    if dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(f"compact words hold fp16 or bf16 values, got {dtype}")


def host_compact_parity(tag: int) -> int:
    """:func:`compact_parity` on the host."""
    return (tag >> 1) & 1


def encode_compact(values: torch.Tensor, tag: int) -> torch.Tensor:
    """int16 compact words of ``values`` (fp16 or bf16) tagged ``tag``, as :func:`compact_words`
    writes them. A value of magnitude 2 or more cannot be encoded (its tag bit is taken): ValueError."""
    _check_compact_dtype(values.dtype)
    finite = values[~values.isnan()]
    if finite.numel() and finite.abs().max() >= 2:
        raise ValueError(f"compact words hold values of magnitude below 2 or NaN, got {finite.abs().max().item()}")
    raw = values.view(torch.int16).to(torch.int32) & 0xFFFF
    raw = torch.where(values.isnan(), COMPACT_NAN.value, raw)
    return ((raw & 0xBFFF) | (host_compact_parity(tag) << COMPACT_TAG_BIT.value)).to(torch.int16)


def decode_compact(words: torch.Tensor, tag: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, stale)`` of int16 compact ``words`` read for ``tag``: the ``dtype`` values (a NaN
    wherever one was published) and where a word does not carry ``tag`` (its value is then garbage)."""
    _check_compact_dtype(dtype)
    bits = words.to(torch.int32) ^ (host_compact_parity(tag) << COMPACT_TAG_BIT.value)
    stale = (bits & (1 << COMPACT_TAG_BIT.value)) != 0
    published_nan = COMPACT_NAN.value & ~(1 << COMPACT_TAG_BIT.value)
    bits = torch.where(~stale & ((bits & 0x7FFF) == published_nan), COMPACT_NAN.value, bits)
    return bits.to(torch.int16).view(dtype), stale


#: slots of the compact exchange per direction: two of words, then the initial state as it is
COMPACT_SLOTS: tl.constexpr = tl.constexpr(3)


def compact_state(exchange: torch.Tensor) -> torch.Tensor:
    """The compact exchange of the exchange ``(D, 2, B_pad, H_PAD)`` (fp16/bf16, ``h0`` in slot 1):
    ``(D, 3, B_pad, H_PAD)``, slot 2 ``h0`` as it is (step 0 reads it unchecked: ``h0`` may be any
    value), slots 0 and 1 words stale for the first tags read from them (1 and 2), so no step takes
    them for fresh. Step ``s >= 1`` reads tag ``s`` from slot ``(s+1) % 2``; step ``s`` writes tag
    ``s+1`` into slot ``s % 2``. Build it for every launch: after one, its slots hold tags a
    relaunch's steps would take for fresh (slot 1 holds tag 2 after T=3)."""
    _check_compact_dtype(exchange.dtype)
    state = torch.empty((exchange.shape[0], COMPACT_SLOTS.value, *exchange.shape[2:]), dtype=exchange.dtype,
                        device=exchange.device)
    words = state.view(torch.int16)
    for slot, first_tag in ((0, 1), (1, 2)):  # the tag bit the first reader does not want
        words[:, slot] = (1 - host_compact_parity(first_tag)) << COMPACT_TAG_BIT.value
    state[:, 2] = exchange[:, 1]
    return state
