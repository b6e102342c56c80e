"""The tagged exchange (:mod:`rnnbench.kernels.tagged_exchange`): words carry a value and the step
that wrote it; the kernels' encoding agrees with the host's bit for bit, a stale word is found, and
columns nobody writes are not waited for. Waiting across programs needs a GPU (below, and
test_step_bench.py / test_kernels_gpu.py); in the interpreter one program reads its own words."""

from __future__ import annotations

import pytest
import torch
import triton
import triton.language as tl

from conftest import KERNEL_DEVICE
from rnnbench.kernels.tagged_exchange import (
    COMPACT_SLOTS, GAVE_UP, TIMED_OUT, WORD_DTYPES, _reload_stale, _stale, compact_key, compact_stale, compact_state,
    compact_suspects, compact_values, compact_words, decode_compact, decode_tagged, encode_compact, encode_tagged,
    THREAD_POLL_CARRY, THREAD_POLL_LOW, THREAD_POLL_MAGNITUDE, THREAD_POLL_SUSPECT, host_compact_parity, retag_,
    tag_words, thread_poll_asm, word_tags, word_values,
)

#: the dtypes the interpreter runs (it has no bf16 arithmetic; the host encoding is tested for bf16 too)
KERNEL_DTYPES = (torch.float16, torch.float32)


def _values(dtype, count=64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    values = (torch.rand(count, generator=generator) * 4 - 2).to(dtype)
    values[:4] = torch.tensor([0.0, -0.0, float("inf"), -1.5]).to(dtype)  # sign bits and special values survive
    return values


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_host_encoding_round_trips_values_and_tags(dtype):
    values = _values(dtype)
    for step in (0, 1, 12345, 2**15 + 3):
        words = encode_tagged(values, step)
        assert words.dtype == WORD_DTYPES[values.element_size() * 8]
        assert torch.equal(decode_tagged(words, dtype).view(torch.uint8), values.view(torch.uint8))
        bits = values.element_size() * 8
        assert (word_tags(words) == step % 2 ** (bits - 1)).all(), "the tag, modulo its range, whatever the value's sign"
        assert (words >= 0).all(), "tags leave the sign bit clear"


def test_retag_keeps_values():
    words = encode_tagged(_values(torch.float16), 7)
    retag_(words, 3)
    assert (word_tags(words) == 3).all()
    assert torch.equal(decode_tagged(words, torch.float16), _values(torch.float16))


def test_encoding_refuses_what_it_cannot_hold():
    with pytest.raises(ValueError, match=r"16- or 32-bit values, got torch.float64"):
        encode_tagged(torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"words of torch.float16 values are torch.int32, got torch.int64"):
        decode_tagged(torch.zeros(2, dtype=torch.int64), torch.float16)


@triton.jit
def _encode_kernel(values_ptr, words_ptr, decoded_ptr, step, N: tl.constexpr):
    offsets = tl.arange(0, N)
    values = tl.load(values_ptr + offsets)
    words = tag_words(values, step)
    tl.store(words_ptr + offsets, words)
    tl.store(decoded_ptr + offsets, word_values(words, values_ptr.dtype.element_ty))


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
def test_kernel_encoding_is_the_host_encoding(dtype):
    values = _values(dtype).to(KERNEL_DEVICE)
    words = torch.empty(values.shape, dtype=WORD_DTYPES[values.element_size() * 8], device=KERNEL_DEVICE)
    decoded = torch.empty_like(values)
    _encode_kernel[(1,)](values, words, decoded, 40000, N=values.numel())
    assert torch.equal(words.cpu(), encode_tagged(values.cpu(), 40000))
    assert torch.equal(decoded.cpu().view(torch.uint8), values.cpu().view(torch.uint8))


@triton.jit
def _stale_kernel(words_ptr, out_ptr, step, K: tl.constexpr, BK: tl.constexpr, BB: tl.constexpr, WRITTEN: tl.constexpr,
                  FLAGS: tl.constexpr = 0):
    """``_stale`` of two blocks ``(K, BK, BB)`` of words, row-major ``(2, K, BK, BB)``, block 1 at
    column ``K * BK``, with ``FLAGS`` or'ed in where the first word is (one thread's flags)."""
    columns = tl.arange(0, K)[:, None, None] * BK + tl.arange(0, BK)[None, :, None]
    offsets = columns * BB + tl.arange(0, BB)[None, None, :]
    words = (tl.load(words_ptr + offsets), tl.load(words_ptr + K * BK * BB + offsets))
    tl.store(out_ptr, _stale(words, 0, 2, columns, step, WRITTEN, tl.where(offsets == 0, FLAGS, 0)))


def _stale_of(words, step, written, flags=0):
    out = torch.zeros(1, dtype=words.dtype, device=KERNEL_DEVICE)
    _stale_kernel[(1,)](words.to(KERNEL_DEVICE), out, step, K=2, BK=4, BB=2, WRITTEN=written, FLAGS=flags)
    return int(out.item())


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
def test_a_waits_give_up_bits_survive_its_reduction_beside_stale_tags(dtype):
    """The wait's shared reduction carries one thread's "gave up" and "timed out" bits below the
    tags' bits, whether the words are fresh or not (a maximum would drop them beside another
    word's stale tag, and the threads would leave the wait apart)."""
    step = 5
    fresh = encode_tagged(_values(dtype, 32), step).reshape(2, 2, 4, 2)
    both = GAVE_UP.value | TIMED_OUT.value
    assert _stale_of(fresh, step, written=16, flags=GAVE_UP.value) == GAVE_UP.value
    one_stale = fresh.clone()
    one_stale[1, 1, 3, 1] = encode_tagged(_values(dtype, 8), step - 2)[0]  # not the flagged word
    stale = _stale_of(one_stale, step, written=16, flags=both)
    assert stale & both == both and stale >> 16 != 0


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
def test_a_stale_word_is_found_in_either_block_unless_nobody_writes_its_column(dtype):
    step = 5
    fresh = encode_tagged(_values(dtype, 32), step).reshape(2, 2, 4, 2)  # (block, K, BK, BB): 16 columns
    assert _stale_of(fresh, step, written=16) == 0
    assert _stale_of(fresh, step + 2, written=16) != 0, "the tag two steps on (the slot's other content) differs"
    for block, k, j, b in [(0, 0, 0, 0), (1, 1, 3, 1), (1, 0, 2, 0)]:
        words = fresh.clone()
        words[block, k, j, b] = encode_tagged(_values(dtype, 8), step - 2)[5]
        column = block * 8 + k * 4 + j
        assert _stale_of(words, step, written=16) != 0, (block, k, j, b)
        assert (_stale_of(words, step, written=column) == 0), "a column past the written ones is not checked"
        assert _stale_of(words, step, written=column + 1) != 0


@triton.jit
def _reload_kernel(held_ptr, memory_ptr, out_ptr, step, K: tl.constexpr, BK: tl.constexpr, BB: tl.constexpr,
                   WRITTEN: tl.constexpr):
    """``_reload_stale`` of two blocks of words held in registers (loaded from ``held``) against a
    slot ``memory``; both ``(BB, 2 * K * BK)`` row-major, block 1 at column ``K * BK``, as the
    exchange is addressed; the result, in the same layout, into ``out``."""
    columns = tl.arange(0, K)[:, None, None] * BK + tl.arange(0, BK)[None, :, None]
    read = tl.arange(0, BB)[None, None, :] * (2 * K * BK) + columns
    held = (tl.load(held_ptr + read), tl.load(held_ptr + K * BK + read))
    again = _reload_stale(held, memory_ptr, read, 0, 2, columns, step, WRITTEN)
    tl.store(out_ptr + read, again[0])
    tl.store(out_ptr + K * BK + read, again[1])


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
def test_a_reload_of_stale_words_loads_those_and_keeps_the_fresh_ones(dtype):
    """The held words that carry another step's tag are replaced by the slot's; those that carry
    the step's tag keep their value even where the slot now holds another (they were not loaded
    again), and so do stale words of columns nobody writes."""
    step, rows, columns, written = 6, 2, 16, 12  # K=2, BK=4: two blocks of 8 columns
    memory = encode_tagged(_values(dtype, rows * columns, seed=1), step).reshape(rows, columns)
    held = encode_tagged(_values(dtype, rows * columns, seed=2), step).reshape(rows, columns)  # fresh, other values
    stale = torch.zeros(rows, columns, dtype=torch.bool)
    stale[0, [0, 5, 9, 13]] = True  # both blocks, written and unwritten columns
    stale[1, [2, 11]] = True
    held[stale] = encode_tagged(_values(dtype, int(stale.sum()), seed=3), step - 2)
    out = torch.empty_like(held, device=KERNEL_DEVICE)
    _reload_kernel[(1,)](held.to(KERNEL_DEVICE), memory.to(KERNEL_DEVICE), out, step, K=2, BK=4, BB=rows,
                         WRITTEN=written)
    out = out.cpu()
    reloaded = stale & (torch.arange(columns) < written)
    assert torch.equal(out[reloaded], memory[reloaded]), "a stale word of a written column is the slot's"
    assert torch.equal(out[~reloaded], held[~reloaded]), "every other word is the one held"


# ---- compact words ---------------------------------------------------------------------------------

COMPACT_DTYPES = (torch.float16, torch.bfloat16)


def _h_values(dtype, count=64, seed=0):
    """Values an LSTM's h can take (magnitude at most 1), with the special ones: signed zeros, the
    ends of the range, the smallest subnormal, a NaN."""
    generator = torch.Generator().manual_seed(seed)
    values = (torch.rand(count, generator=generator) * 2 - 1).to(dtype)
    special = torch.tensor([0.0, -0.0, 1.0, -1.0, float("nan"), 2.0 ** -24 if dtype == torch.float16 else 2.0 ** -133])
    values[:len(special)] = special.to(dtype)
    return values


def _same_bits_or_nan(actual, expected):
    """Bit for bit where ``expected`` is a number; a NaN where it is a NaN (any NaN)."""
    nan = expected.isnan()
    return torch.equal(actual.isnan(), nan) and torch.equal(actual[~nan].view(torch.int16),
                                                            expected[~nan].view(torch.int16))


@pytest.mark.parametrize("dtype", COMPACT_DTYPES)
def test_compact_words_are_the_values_read_for_their_tag_and_stale_for_the_next_one(dtype):
    values = _h_values(dtype)
    for tag in range(6):
        words = encode_compact(values, tag)
        read, stale = decode_compact(words, tag, dtype)
        assert not stale.any() and _same_bits_or_nan(read, values), tag
        assert decode_compact(words, tag + 2, dtype)[1].all(), "two steps on, the slot's next tag: every word stale"
        number = ~values.isnan()
        assert torch.equal(words[number] & ~0x4000, values[number].view(torch.int16)), "a number keeps its other bits"


def test_compact_words_refuse_what_they_cannot_hold():
    with pytest.raises(ValueError, match=r"magnitude below 2 or NaN, got 2.0"):
        encode_compact(torch.tensor([0.5, -2.0], dtype=torch.float16), 1)
    with pytest.raises(ValueError, match=r"fp16 or bf16 values, got torch.float32"):
        encode_compact(torch.zeros(2), 1)


@pytest.mark.parametrize("dtype", COMPACT_DTYPES)
def test_the_compact_exchange_keeps_h0_as_it_is_and_starts_stale(dtype):
    """``h0`` may be any value (here up to 100 in magnitude, infinities, a NaN): it sits in slot 2 bit
    for bit; slots 0 and 1 are stale for the first tags read from them, 1 and 2."""
    exchange = torch.randn(2, 2, 16, 64).to(dtype) * 30
    exchange[1, 1, 0, :3] = torch.tensor([float("inf"), float("-inf"), float("nan")]).to(dtype)
    state = compact_state(exchange)
    assert state.shape == (2, COMPACT_SLOTS.value, 16, 64) and state.dtype == dtype
    assert torch.equal(state[:, 2].view(torch.int16), exchange[:, 1].view(torch.int16))
    assert decode_compact(state[:, 0].view(torch.int16), 1, dtype)[1].all()
    assert decode_compact(state[:, 1].view(torch.int16), 2, dtype)[1].all()


@triton.jit
def _compact_kernel(values_ptr, words_ptr, read_ptr, suspects_ptr, stale_ptr, restored_ptr, tag, read_tag,
                    N: tl.constexpr):
    """Encode ``N`` values for ``tag``; read the words back as int32 pairs for ``read_tag``: the pairs
    read, their suspects, their stale bits and the pairs with NaNs restored (``N // 2`` each)."""
    offsets = tl.arange(0, N)
    tl.store(words_ptr + offsets, compact_words(tl.load(values_ptr + offsets), tag))
    pairs = tl.arange(0, N // 2)
    read = tl.load(words_ptr.to(tl.pointer_type(tl.int32)) + pairs) ^ compact_key(read_tag)
    tl.store(read_ptr + pairs, read)
    tl.store(suspects_ptr + pairs, compact_suspects(read))
    tl.store(stale_ptr + pairs, compact_stale(read))
    tl.store(restored_ptr + pairs, compact_values(read))


def _compact_in_kernel(values, tag, read_tag):
    values = values.to(KERNEL_DEVICE)
    pairs = values.numel() // 2
    words = torch.empty(values.shape, dtype=torch.int16, device=KERNEL_DEVICE)
    read, suspects, stale, restored = (torch.empty(pairs, dtype=torch.int32, device=KERNEL_DEVICE) for _ in range(4))
    _compact_kernel[(1,)](values, words, read, suspects, stale, restored, tag, read_tag, N=values.numel())
    return [t.cpu() for t in (words, read, suspects, stale, restored)]


def test_the_kernels_compact_words_are_the_hosts_and_their_checks_find_stale_halves_and_nans():
    """In a kernel (fp16: the interpreter has no bf16 arithmetic): the words are the host's; read for
    their tag every pair without a NaN is its two values, no half stale; a pair is a suspect exactly
    where it holds a NaN, and restored it is two NaNs, the other pairs unchanged; read for the slot's
    next tag every half is stale and a suspect."""
    dtype = torch.float16
    values = _h_values(dtype)
    nan_pairs = values.isnan().view(-1, 2).any(dim=1)
    for tag in (1, 2, 5):
        words, read, suspects, stale, restored = _compact_in_kernel(values, tag, tag)
        assert torch.equal(words, encode_compact(values, tag))
        number_pairs = ~nan_pairs.repeat_interleave(2)
        assert torch.equal(read.view(torch.int16)[number_pairs], values.view(torch.int16)[number_pairs])
        assert not stale.any()
        assert torch.equal(suspects != 0, nan_pairs), (tag, suspects)
        assert restored.view(dtype).view(-1, 2)[nan_pairs].isnan().all()
        assert torch.equal(restored[~nan_pairs], read[~nan_pairs])
        _, _, suspects, stale, _ = _compact_in_kernel(values, tag, tag + 2)
        halves = torch.tensor([0x4000, 0x40000000], dtype=torch.int32)
        assert ((stale.unsqueeze(1) & halves) != 0).all(), "both halves of every pair stale"
        assert (suspects != 0).all()


def test_a_half_stale_pair_is_stale_and_a_suspect():
    """One half fresh, the other from two steps before (the two halves of a pair are written by
    separate stores): the pair is stale, in the half that is."""
    dtype = torch.float16
    values = _h_values(dtype, 8, seed=4).nan_to_num(0.25)
    words = encode_compact(values, 3)
    words[5] = encode_compact(values[5:6], 1)[0]  # the high half of pair 2 from tag 1
    read = (words.view(torch.int32) ^ (host_compact_parity(3) * 0x40004000)).to(KERNEL_DEVICE)
    flags = torch.empty(4, dtype=torch.int32, device=KERNEL_DEVICE)
    _suspects_kernel[(1,)](read, flags, N=4)
    assert (flags.cpu() != 0).tolist() == [False, False, True, False]


@triton.jit
def _suspects_kernel(read_ptr, out_ptr, N: tl.constexpr):
    offsets = tl.arange(0, N)
    tl.store(out_ptr + offsets, compact_suspects(tl.load(read_ptr + offsets)))


# ---- the protocol, simulated word by word ------------------------------------------------------

#: how the simulated protocol tells a fresh word (tag, the tag wanted): the whole tag (the 32-bit
#: words), bit 1 of it (compact words, whose exchange starts with ``h0`` in a slot of its own and the
#: two slots stale, :func:`compact_state`), or bit 0 (wrong: a slot's tags all have the same bit 0)
TAG_CHECKS = {"tag": lambda tag, wanted: tag == wanted,
              "compact": lambda tag, wanted: host_compact_parity(tag) == host_compact_parity(wanted),
              "bit0": lambda tag, wanted: tag % 2 == wanted % 2}


#: words a simulated vector reload reads together (one more than a program's 2 words, so vectors
#: straddle producers)
VECTOR_WORDS = 3
#: which words of a poll that found stale ones are kept, read for the step s (:func:`_simulate_exchange`)
RELOADS = {
    "all": lambda fresh: lambda read, index, s: False,
    "stale": lambda fresh: lambda read, index, s: fresh(read[index][0], s),
    "vectors": lambda fresh: lambda read, index, s: all(
        fresh(read[other][0], s) for other in read if other // VECTOR_WORDS == index // VECTOR_WORDS),
}


def _simulate_exchange(programs: int, width: int, steps: int, seed: int, reload: str = "all",
                       tags: str = "tag") -> list[list[int]]:
    """The tagged exchange's protocol (module docstring) run by ``programs`` programs of ``width``
    words each under a random schedule, every word read and written as its own event and every
    write in flight for a random while (so writes land out of order and reads see any mix):
    program p's step s reads all words of slot (s+1) % 2 until every tag is s, then writes the
    words it owns, tagged s+1, into slot s % 2; its value is the sum of what it read plus p.
    ``reload``: what a poll that found stale words reads again: ``"all"`` its words, ``"stale"``
    the stale ones, keeping the fresh (``STALE_ONLY``), ``"vectors"`` every group of
    :data:`VECTOR_WORDS` consecutive words holding a stale one, keeping the others (the Gluon
    loader's 16-byte vectors, here across producers too). ``tags``: how a word is told fresh
    (:data:`TAG_CHECKS`); with compact tags step 0 reads the initial state from a third slot,
    unchecked, and slots 0 and 1 start with tags -1 and 0 (stale for tags 1 and 2).
    Returns each program's accepted sums, one per step, or raises on a deadlock."""
    import random

    rng = random.Random(seed)
    fresh = TAG_CHECKS[tags]
    words = programs * width
    compact = tags != "tag"
    keep = RELOADS[reload](fresh)
    # (tag, value); the state after 0 steps is zeros, in slot 1 (tag 0) or, compact, in slot 2
    memory = [[(-1 if compact else 0, 0)] * words, [(0, 0)] * words, [(0, 0)] * words]
    in_flight = []  # (slot, index, tag, value) not yet visible
    step = [0] * programs
    read = [dict() for _ in range(programs)]  # the words program p has read this poll
    pending = [[] for _ in range(programs)]  # writes program p still has to issue
    accepted = [[] for _ in range(programs)]
    for _ in range(200_000):
        if all(s == steps for s in step) and not in_flight and not any(pending):
            return accepted
        choice = rng.random()
        if in_flight and choice < 0.3:  # a write lands
            slot, index, tag, value = in_flight.pop(rng.randrange(len(in_flight)))
            memory[slot][index] = (tag, value)
            continue
        p = rng.randrange(programs)
        if pending[p]:  # issue one of its writes (it goes in flight)
            in_flight.append(pending[p].pop(rng.randrange(len(pending[p]))))
            continue
        s = step[p]
        if s == steps:
            continue
        unread = [index for index in range(words) if index not in read[p]]
        index = rng.choice(unread)  # read one word of the slot step s reads
        read[p][index] = memory[2 if compact and s == 0 else (s + 1) % 2][index]
        if len(read[p]) == words:  # a whole poll: accept it or poll again
            if (compact and s == 0) or all(fresh(tag, s) for tag, _ in read[p].values()):
                total = sum(value for _, value in read[p].values()) + p
                accepted[p].append(total)
                pending[p] = [(s % 2, p * width + j, s + 1, total) for j in range(width)]
                step[p] += 1
                read[p] = {}
            else:
                read[p] = {i: word for i, word in read[p].items() if keep(read[p], i, s)}
    raise AssertionError(f"deadlock: steps {step}, in flight {len(in_flight)}")


def _sequential(programs: int, width: int, steps: int) -> list[list[int]]:
    """What each program must accept at each step: the sums of the sequential recurrence."""
    state, accepted = [0] * (programs * width), [[] for _ in range(programs)]
    for _ in range(steps):
        totals = [sum(state) + p for p in range(programs)]
        for p in range(programs):
            accepted[p].append(totals[p])
        state = [totals[index // width] for index in range(programs * width)]
    return accepted


@pytest.mark.parametrize("tags", ["tag", "compact"])
@pytest.mark.parametrize("reload", list(RELOADS))
@pytest.mark.parametrize("seed", range(20))
def test_the_protocol_never_takes_a_stale_word_and_never_deadlocks(seed, reload, tags):
    """Word by word, writes landing in any order: every program accepts at step s exactly the state
    the sequential recurrence has after s steps, and every program finishes (two slots suffice),
    whether a poll that found stale words reads them all again, only the stale ones or the vectors
    holding one, and whether
    a word carries its whole tag or, compact, bit 1 of it."""
    programs, width, steps = 3, 2, 6
    assert _simulate_exchange(programs, width, steps, seed, reload, tags) == _sequential(programs, width, steps)


def test_a_one_bit_tag_must_be_bit_1_of_the_step():
    """Bit 0 of the tag is the same for every word a slot ever holds (slot s % 2 gets tags s+1, s+3,
    ...): taken for the tag it accepts stale words, and some schedule shows it."""
    programs, width, steps = 3, 2, 6
    wrong = 0
    for seed in range(20):
        try:
            accepted = _simulate_exchange(programs, width, steps, seed, "stale", "bit0")
            wrong += accepted != _sequential(programs, width, steps)
        except AssertionError:  # a deadlock is as wrong
            wrong += 1
    assert wrong > 0


# ---- a loader thread polling its own words alone (the PTX of thread_poll_asm, interpreted) ----------

def _suspect_halves_by_thread_poll(pairs: torch.Tensor) -> torch.Tensor:
    """Per pair, the tag bits :func:`thread_poll_asm`'s slow path sets (its constants, on the host)."""
    low, carry = THREAD_POLL_LOW, THREAD_POLL_CARRY
    return (((pairs & low) + carry) | pairs) & 0x40004000


def _suspect_halves_by_magnitude(pairs: torch.Tensor) -> torch.Tensor:
    """Per pair, the halves :func:`thread_poll_asm`'s usual step finds suspect (magnitude, sign
    cleared, at least :data:`THREAD_POLL_SUSPECT`), as that half's tag bit."""
    magnitude = pairs & THREAD_POLL_MAGNITUDE
    return torch.where((magnitude & 0xFFFF) >= THREAD_POLL_SUSPECT, 0x4000, 0) \
        | torch.where((magnitude >> 16) >= THREAD_POLL_SUSPECT, 0x40000000, 0)


def test_the_thread_polls_test_flags_exactly_the_halves_compact_suspects_does():
    """Every 16-bit half, in either half of a pair beside a fresh value: both of the thread poll's
    tests (the usual step's magnitude, the slow path's and, add and or, with no carry between the
    halves) flag a half exactly where :func:`compact_suspects` does (a stale half or the published
    NaN pattern), in the same half."""
    halves = torch.arange(2**16, dtype=torch.int64)
    fresh_other = 0x3C00  # 1.0 in fp16, a fresh value
    for pairs, half_bit in (((halves << 16) | fresh_other, 0x40000000), (halves | (fresh_other << 16), 0x4000)):
        pairs = ((pairs + 2**31) % 2**32 - 2**31).to(torch.int32).to(KERNEL_DEVICE)
        flagged = torch.empty_like(pairs)
        for start in range(0, 2**16, 4096):
            _suspects_kernel[(1,)](pairs[start:start + 4096], flagged[start:start + 4096], N=4096)
        suspected = (flagged.cpu() != 0)
        for test in (_suspect_halves_by_thread_poll, _suspect_halves_by_magnitude):
            ours = test(pairs.cpu().to(torch.int64) % 2**32)
            assert torch.equal(ours != 0, suspected), (test.__name__, int((ours.ne(0) != suspected).sum()))
            assert ((ours == 0) | (ours == half_bit)).all(), "flagged in the half that is suspect, never the other"
        assert 0 < int(suspected.sum()) < 2**16


#: the first vector's address, the next vectors' stride and the status word's address in the tests below
_BASE, _STRIDE, _STATUS = 0x1000, 128, 0x10


def _thread_poll(loaded: list[list[int]], later: dict[int, list[list[int]]], key: int, tag: int = 5,
                 status: int = 0, timeout_ns: int = 10**6, timer_step_ns: int = 1, executed: list | None = None):
    """Run :func:`thread_poll_asm` for ``len(loaded)`` vectors of 4 raw pairs as first loaded;
    ``later[k]``: what vector k's successive reloads bring (the last repeats; no entry: no reload
    expected). Returns ``(pairs read, polls, timed out, memory)``; ``executed`` receives the
    opcodes run (:func:`ptx_subset.run`)."""
    from ptx_subset import Memory, run

    vectors = len(loaded)
    asm, constraints = thread_poll_asm(vectors, _STRIDE, timeout_ns)
    assert len(constraints.split(",")) == 4 * vectors + 4 + 4 + 4 * vectors + 12
    words = {_STATUS: [status]}
    for k, reloads in later.items():
        for j in range(4):
            words[_BASE + k * _STRIDE + 4 * j] = [vector[j] for vector in reloads]
    memory = Memory(words, timer_step_ns=timer_step_ns)
    n = 4 * vectors
    operands = {n + 4 + i: _BASE for i in range(4)}
    operands |= {n + 8 + 4 * k + j: loaded[k][j] % 2**32 for k in range(vectors) for j in range(4)}
    operands |= {2 * n + 8 + i: key for i in range(4)} | {2 * n + 12 + i: _STATUS for i in range(4)}
    operands |= {2 * n + 16 + i: tag for i in range(4)}
    registers = run(asm, operands, memory, executed=executed)
    read = [[registers[f"${4 * k + j}"] for j in range(4)] for k in range(vectors)]
    info = {registers[f"${n + i}"] for i in range(4)}
    assert len(info) == 1, "every element of a thread gets its count"
    info = info.pop()
    return read, info & 0xFFFF, bool((info >> 16) & int(TIMED_OUT.value)), memory


def _fresh_vector(seed: int, key: int) -> list[int]:
    """4 pairs of fresh fp16 values below 1 in magnitude, their tag bits as ``key`` wants, raw."""
    values = _h_values(torch.float16, 8, seed).nan_to_num(0.5).clamp(-0.99, 0.99)
    pairs = values.view(torch.int32).to(torch.int64) % 2**32
    return [int(p) ^ key for p in pairs]


def _with_a_stale_half(vector: list[int]) -> list[int]:
    """``vector`` with the tag bit of the high half of its third pair flipped (from two steps before)."""
    return [p ^ 0x40000000 if j == 2 else p for j, p in enumerate(vector)]


@pytest.mark.parametrize("key", [0, 0x40004000], ids=["tag_bit_clear", "tag_bit_set"])
def test_a_thread_whose_words_are_fresh_reads_them_without_a_load_or_a_poll(key):
    loaded = [_fresh_vector(seed, key) for seed in range(3)]
    read, polls, timed_out, memory = _thread_poll(loaded, {}, key)
    assert read == [[p ^ key for p in vector] for vector in loaded]
    assert polls == 0 and not timed_out and memory.loads == {}


@pytest.mark.parametrize("key", [0, 0x40004000], ids=["tag_bit_clear", "tag_bit_set"])
def test_a_thread_reloads_only_its_stale_vectors_until_they_are_fresh(key):
    """Vector 0 fresh at once, vector 1 fresh at its first reload, vector 2 at its second (its first
    reload still stale): two polls, vector 1 loaded once and vector 2 twice (all four words each),
    vector 0 never, and the pairs read are the fresh ones."""
    fresh = [_fresh_vector(seed, key) for seed in range(3)]
    loaded = [fresh[0], _with_a_stale_half(_fresh_vector(7, key)), _with_a_stale_half(_fresh_vector(8, key))]
    later = {1: [fresh[1]], 2: [_with_a_stale_half(_fresh_vector(9, key)), fresh[2]]}
    executed = []
    read, polls, timed_out, memory = _thread_poll(loaded, later, key, executed=executed)
    assert read == [[p ^ key for p in vector] for vector in fresh]
    assert polls == 2 and not timed_out
    # once the last poll brought every word fresh, they are read as in the usual step: the NaN fix-up
    # (7 instructions a pair, a selp each) never runs
    assert "selp.b32" not in executed, executed.count("selp.b32")
    assert memory.loads == {_BASE + k * _STRIDE + 4 * j: count for k, count in ((1, 1), (2, 2)) for j in range(4)} \
        | {_STATUS: 2}, memory.loads


def test_a_published_nan_becomes_two_nans_without_a_poll():
    """The NaN pattern (0x7FFF with the tag bit as the key wants) in one half of a fresh pair: that
    pair reads as two NaNs (:data:`_NAN_PAIR` as :func:`compact_values` makes it), every other pair
    as it is, and nothing is loaded again."""
    key = 0x40004000
    loaded = [_fresh_vector(seed, key) for seed in range(2)]
    loaded[1][3] = (loaded[1][3] & 0xFFFF0000) | (0x3FFF ^ 0x4000)
    read, polls, timed_out, memory = _thread_poll(loaded, {}, key)
    expected = [[p ^ key for p in vector] for vector in loaded]
    expected[1][3] = 0x7FFF7FFF
    executed = []
    assert _thread_poll(loaded, {}, key, executed=executed)[0] == expected
    assert read == expected and polls == 0 and not timed_out and memory.loads == {}
    assert executed.count("selp.b32") == 4 * len(loaded), "the fix-up, once a pair"


def test_a_thread_gives_up_after_one_poll_once_the_status_word_is_set():
    """Another wait of the launch timed out (status word nonzero): a thread with a stale word polls
    once, reads the status word, and leaves without reporting (its stale pair reads as NaNs)."""
    key = 0
    stale = _with_a_stale_half(_fresh_vector(1, key))
    read, polls, timed_out, memory = _thread_poll([stale], {0: [stale]}, key, status=3)
    assert polls == 1 and not timed_out
    assert memory.words[_STATUS] == [3], "no report over another wait's"
    assert read[0][2] == 0x7FFF7FFF and read[0][:2] == [p ^ key for p in stale[:2]]


def test_a_thread_whose_words_never_come_reports_its_tag_after_the_timeout():
    """No producer: the thread polls until its timer has run ``timeout_ns`` past its first poll, then
    reports the step's tag in the status word (``red.max``) and says it timed out."""
    key = 0x40004000
    stale = _with_a_stale_half(_fresh_vector(2, key))
    read, polls, timed_out, memory = _thread_poll([stale], {0: [stale]}, key, tag=7, timeout_ns=50,
                                                  timer_step_ns=10)
    assert timed_out and memory.words[_STATUS] == [7]
    assert 3 <= polls <= 7, polls


def test_a_wait_whose_last_word_comes_with_the_timeout_is_no_timeout():
    """The timer has run out after the first poll, which brought the last stale word: fresh, not
    reported (the test after a poll looks at the words before the clock)."""
    key = 0
    fresh = _fresh_vector(3, key)
    stale = _with_a_stale_half(fresh)
    read, polls, timed_out, memory = _thread_poll([stale], {0: [fresh]}, key, timeout_ns=5, timer_step_ns=10)
    assert not timed_out and polls == 1 and memory.words[_STATUS] == [0]
    assert read == [[p ^ key for p in fresh]]


def test_the_thread_poll_asm_refuses_no_vectors():
    with pytest.raises(ValueError, match="at least one vector, got 0"):
        thread_poll_asm(0, 128, 10)
