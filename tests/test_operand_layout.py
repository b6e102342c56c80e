"""The vector width of a dot operand's load that keeps its shared buffer conflict-free
(rnnbench.kernels.operand_layout): the model of Triton's load layout and buffer order reproduces
what Triton 3.9 compiled (fixed cases read from its TTGIR), and, compiled with the running Triton,
a probe kernel's operands through ``primitives.operand_pointers`` land in conflict-free buffers and,
unhinted, in the order the model predicts. The committed bank-conflict tables of both Tritons list
no conflicted buffer (their freshness is tests/test_bank_conflicts.py's)."""

from pathlib import Path

import pandas as pd
import pytest
import triton
import triton.language as tl

from rnnbench.kernels import operand_layout
from rnnbench.kernels.operand_layout import blocked_layout, load_order, memory_order, natural_vector, operand_vector
from rnnbench.kernels.plan import TRITON_VERSION
from rnnbench.kernels.primitives import operand_pointers

ROOT = Path(__file__).resolve().parent.parent


def test_the_load_order_puts_the_contiguous_dimension_first_and_ties_from_the_last():
    assert load_order(3, 1) == (1, 2, 0)  # the state (slices, K, batch rows): K, rows, slices
    assert load_order(3, 2) == (2, 1, 0)  # the forward's weights (slices, rows, K)


@pytest.mark.parametrize("shape, order, vector, warps, expected", [
    # (4, 64, 16) state of 4 warps: 8 lanes take K's 64 in 16-byte vectors, 4 lanes and 4 warps the rows
    ((4, 64, 16), (1, 2, 0), 8, 4, ((1, 8, 1), (1, 8, 4), (1, 1, 4))),
    ((4, 64, 16), (1, 2, 0), 4, 4, ((1, 4, 1), (1, 16, 2), (1, 1, 4))),
    ((4, 32, 64), (2, 1, 0), 8, 4, ((1, 1, 8), (1, 4, 8), (1, 4, 1))),
])
def test_the_blocked_layout_is_the_one_triton_3_9_compiled(shape, order, vector, warps, expected):
    """Read from Triton 3.9's TTGIR of a probe kernel (``#ttg.blocked`` of its loads)."""
    assert blocked_layout(shape, order, vector, warps) == expected


def test_the_buffer_order_follows_the_registers_then_the_lanes_where_a_thread_holds_one_element():
    """16-byte vectors: a thread's registers hold K, then the 4 slices (the rows are all on lanes and
    warps), so the buffer is K, slices, rows, 8-way conflicted (Triton 3.9's ``[1, 0, 2]``);
    8-byte vectors leave the rows two registers, before the slices (``[1, 2, 0]``). With one element
    a thread along K the lanes' order wins."""
    assert memory_order((4, 64, 16), 1, 8, 4) == (1, 0, 2)
    assert memory_order((4, 64, 16), 1, 4, 4) == (1, 2, 0)
    assert memory_order((8, 32, 16), 1, 2, 8) == (1, 0, 2)
    assert memory_order((8, 32, 16), 1, 1, 8) == (1, 2, 0)


def test_the_vector_is_the_widest_that_puts_the_rows_second():
    assert operand_vector((4, 64, 16), 1, 4, 16, orders_by_registers=True) == 4
    assert operand_vector((4, 32, 64), 2, 4, 16, orders_by_registers=True) == 8  # already rows second
    assert operand_vector((8, 32, 16), 1, 8, 16, orders_by_registers=True) == 1  # the warps cover the rows
    assert operand_vector((8, 16, 32), 1, 8, 16, orders_by_registers=True) == 1  # the backward's weights
    # 16 warps (128 registers a thread): never one element, the natural width rather than 2 (conflicted)
    assert operand_vector((8, 32, 32), 1, 16, 16, orders_by_registers=True) == 8
    assert natural_vector((4, 64, 16), 1, 16, 4) == 8 and natural_vector((4, 64, 16), 1, 32, 4) == 4


def test_triton_3_6_and_a_single_slice_keep_the_natural_width():
    assert operand_vector((4, 64, 16), 1, 4, 16, orders_by_registers=False) == 8
    assert operand_vector((1, 64, 16), 1, 4, 16, orders_by_registers=True) == 8
    assert operand_layout.ORDERS_BY_REGISTERS == (TRITON_VERSION >= (3, 7))


def test_the_kernels_hint_is_zero_where_the_natural_width_stands_and_in_the_interpreter():
    """``operand_contiguity`` is what the kernels call: 0 means no hint (the interpreter passes 0 warps)."""
    assert operand_layout.operand_contiguity((4, 64, 16), 1, 0, 16) == 0
    assert operand_layout.operand_contiguity((4, 32, 64), 2, 4, 16) == 0
    expected = 4 if operand_layout.ORDERS_BY_REGISTERS else 0
    assert operand_layout.operand_contiguity((4, 64, 16), 1, 4, 16) == expected


@pytest.mark.parametrize("version", ("3.9", "3.6"))
def test_no_plain_kernel_of_the_goal_shapes_loads_a_conflicted_operand(version):
    """Every operand buffer of every plain kernel in the committed table (bf16, sm_90) takes one
    wavefront a matrix (Triton 3.9: 181 of 307 took 8 before the hints, and the LSTM backward's
    state in 16 warps, which no width short of one element orders well, 8 until that backward ran
    8 warps)."""
    table = pd.read_csv(ROOT / "reports" / "aot" / f"bank-conflicts-sm_90-triton{version}.csv")
    table["worst"] = pd.to_numeric(table.worst_wavefronts, errors="coerce")
    assert table.worst.notna().sum() > 200
    assert (table.worst.dropna() == 1).all(), table[table.worst > 1].to_string()


@triton.jit
def _probe_kernel(w_ptr, a_ptr, out_ptr, HINTED: tl.constexpr, ROWS_CONTIGUOUS: tl.constexpr, S: tl.constexpr,
                  M: tl.constexpr, K: tl.constexpr, N: tl.constexpr):
    """``sum_s w[s] @ a[s]`` of an (S, M, K) A contiguous along K (or M) and an (S, K, N) B contiguous
    along K, loaded through ``operand_pointers`` (``HINTED``) or plainly; one (M, N) store."""
    s = tl.arange(0, S)
    m = tl.arange(0, M)
    k = tl.arange(0, K)
    n = tl.arange(0, N)
    if ROWS_CONTIGUOUS:
        w_offsets = s[:, None, None] * (M * K) + m[None, :, None] + k[None, None, :] * M
    else:
        w_offsets = s[:, None, None] * (M * K) + m[None, :, None] * K + k[None, None, :]
    a_offsets = s[:, None, None] * (K * N) + k[None, :, None] + n[None, None, :] * K
    if HINTED:
        w = tl.load(operand_pointers(w_ptr, w_offsets, 1 if ROWS_CONTIGUOUS else 2))
        a = tl.load(operand_pointers(a_ptr, a_offsets, 1))
    else:
        w = tl.load(w_ptr + w_offsets)
        a = tl.load(a_ptr + a_offsets)
    product = tl.sum(tl.dot(w, a, tl.zeros((S, M, N), tl.float32)), axis=0)
    tl.store(out_ptr + m[:, None] * N + n[None, :], product)


def probe_buffers(case, arch: int) -> list[tuple]:
    """``(operand, order, worst wavefronts)`` of each dot-operand buffer of the probe kernel for
    ``case = (hinted, rows_contiguous, S, M, K, N, warps)`` compiled for ``sm_<arch>`` (a
    :func:`~rnnbench.kernels.aot.compile_all` job)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from rnnbench.kernels.shared_layouts import operand_loads

    hinted, rows_contiguous, S, M, K, N, warps = case
    signature = {"w_ptr": "*bf16", "a_ptr": "*bf16", "out_ptr": "*fp32"}
    constexprs = {"HINTED": hinted, "ROWS_CONTIGUOUS": rows_contiguous, "S": S, "M": M, "K": K, "N": N}
    signature.update({name: "constexpr" for name in constexprs})
    attrs = {(index,): [["tt.divisibility", 16]] for index in range(3)}
    source = ASTSource(fn=_probe_kernel, signature=signature, constexprs=constexprs, attrs=attrs)
    compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options={"num_warps": warps})
    return [(load.operand, tuple(load.layout.order), load.wavefronts()[0]) for load in operand_loads(compiled.asm["ttgir"])]


#: (rows_contiguous, S, M, K, N, warps): the Elman forward at H=768 B=16 (K_SPLIT 4), the 32-row
#: Elman forward at H=128, and the backward's 8-warp tiles at H=768 B=16 (weights contiguous along M)
PROBES = [(False, 4, 16, 64, 16, 4), (False, 4, 32, 32, 32, 4), (True, 8, 16, 32, 16, 8)]


def test_the_probe_kernels_operands_are_conflict_free_and_unhinted_where_the_model_says():
    """Compiled with the running Triton (no GPU): through ``operand_pointers`` every operand buffer
    takes one wavefront a matrix; unhinted, each buffer is in the order the model gives the natural
    width (under Triton 3.6, which orders buffers otherwise, only that they are conflict-free)."""
    from rnnbench.kernels.aot import compile_all

    cases = [(hinted,) + probe for probe in PROBES for hinted in (True, False)]
    results = compile_all(90, cases, 2, job=probe_buffers)
    for case, buffers in zip(cases, results):
        hinted, rows_contiguous, S, M, K, N, warps = case
        assert {operand for operand, _, _ in buffers} == {0, 1}, (case, buffers)
        for operand, order, worst in buffers:
            if hinted:
                assert worst == 1, (case, operand, order)
            elif operand_layout.ORDERS_BY_REGISTERS:
                shape, contiguous = ((S, M, K), 1 if rows_contiguous else 2) if operand == 0 else ((S, K, N), 1)
                vector = natural_vector(shape, contiguous, 16, warps)
                assert order == memory_order(shape, contiguous, vector, warps), (case, operand)
