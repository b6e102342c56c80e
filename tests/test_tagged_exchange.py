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
    WORD_DTYPES, _stale, decode_tagged, encode_tagged, retag_, tag_words, word_tags, word_values,
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
def _stale_kernel(words_ptr, out_ptr, step, K: tl.constexpr, BK: tl.constexpr, BB: tl.constexpr, WRITTEN: tl.constexpr):
    """``_stale`` of two blocks ``(K, BK, BB)`` of words, row-major ``(2, K, BK, BB)``, block 1 at
    column ``K * BK``."""
    columns = tl.arange(0, K)[:, None, None] * BK + tl.arange(0, BK)[None, :, None]
    offsets = columns * BB + tl.arange(0, BB)[None, None, :]
    words = (tl.load(words_ptr + offsets), tl.load(words_ptr + K * BK * BB + offsets))
    tl.store(out_ptr, _stale(words, 0, 2, columns, step, WRITTEN))


def _stale_of(words, step, written):
    out = torch.zeros(1, dtype=words.dtype, device=KERNEL_DEVICE)
    _stale_kernel[(1,)](words.to(KERNEL_DEVICE), out, step, K=2, BK=4, BB=2, WRITTEN=written)
    return int(out.item())


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
