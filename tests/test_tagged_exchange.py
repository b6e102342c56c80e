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
    GAVE_UP, TIMED_OUT, WORD_DTYPES, _reload_stale, _stale, decode_tagged, encode_tagged, retag_, tag_words, word_tags,
    word_values,
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


# ---- the protocol, simulated word by word ------------------------------------------------------

def _simulate_exchange(programs: int, width: int, steps: int, seed: int, stale_only: bool = False
                       ) -> list[list[int]]:
    """The tagged exchange's protocol (module docstring) run by ``programs`` programs of ``width``
    words each under a random schedule, every word read and written as its own event and every
    write in flight for a random while (so writes land out of order and reads see any mix):
    program p's step s reads all words of slot (s+1) % 2 until every tag is s, then writes the
    words it owns, tagged s+1, into slot s % 2; its value is the sum of what it read plus p.
    ``stale_only``: a poll that found stale words keeps the fresh ones and reads only the others
    again (``STALE_ONLY``), instead of reading every word again.
    Returns each program's accepted sums, one per step, or raises on a deadlock."""
    import random

    rng = random.Random(seed)
    words = programs * width
    memory = [[(0, 0)] * words, [(0, 0)] * words]  # (tag, value); slot 1 holds the state after 0 steps
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
        read[p][index] = memory[(s + 1) % 2][index]
        if len(read[p]) == words:  # a whole poll: accept it or poll again
            if all(tag == s for tag, _ in read[p].values()):
                total = sum(value for _, value in read[p].values()) + p
                accepted[p].append(total)
                pending[p] = [(s % 2, p * width + j, s + 1, total) for j in range(width)]
                step[p] += 1
                read[p] = {}
            else:
                read[p] = {i: word for i, word in read[p].items() if word[0] == s} if stale_only else {}
    raise AssertionError(f"deadlock: steps {step}, in flight {len(in_flight)}")


@pytest.mark.parametrize("stale_only", [False, True], ids=["reload_all", "reload_stale"])
@pytest.mark.parametrize("seed", range(20))
def test_the_protocol_never_takes_a_stale_word_and_never_deadlocks(seed, stale_only):
    """Word by word, writes landing in any order: every program accepts at step s exactly the state
    the sequential recurrence has after s steps, and every program finishes (two slots suffice),
    whether a poll that found stale words reads them all again or only the stale ones."""
    programs, width, steps = 3, 2, 6
    accepted = _simulate_exchange(programs, width, steps, seed, stale_only)
    state = [0] * (programs * width)  # the state after 0 steps (slot 1)
    for s in range(steps):
        totals = [sum(state) + p for p in range(programs)]
        assert [accepted[p][s] for p in range(programs)] == totals, f"step {s}"
        state = [totals[index // width] for index in range(programs * width)]
