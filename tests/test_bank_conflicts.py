"""Shared-memory bank conflicts of the plain kernels' matrix loads (rnnbench.kernels.bank_conflicts),
from their TTGIR, without a GPU: the offset is Triton's swizzle, an ``ldmatrix`` matrix whose rows
share a bank group takes a wavefront a row, the TTGIR's operand buffers are found, and the committed
tables (``reports/aot/bank-conflicts-sm_90-triton{3.9,3.6}.csv``, ``make bank-conflicts`` with each
Triton) cover the plain kernels and are current for this Triton. Under Triton 3.6 (the GPU
machine's) the LSTM forward's held weights load without conflicts in every layout, the 32-row
blocks of 8 warps included, whose 8-way conflicts the H200 measured (the module docstring)."""

from pathlib import Path

import pandas as pd
import pytest
import triton

from rnnbench.kernels import bank_conflicts
from rnnbench.kernels.aot import compile_all
from rnnbench.kernels.shared_layouts import OperandLoad, SwizzledShared, extra_wavefronts, operand_loads

ROOT = Path(__file__).resolve().parent.parent
TABLE_TRITONS = ("3.9", "3.6")


def test_the_offset_is_tritons_swizzle():
    """Columns XOR ``vec`` times the row's phase; the dimensions past the two most minor stacked outside."""
    layout = SwizzledShared(vec=8, per_phase=1, max_phase=8, order=(1, 0))
    assert [layout.offset((row, 3), (8, 64)) for row in range(8)] == [row * 64 + (3 ^ (8 * row)) for row in range(8)]
    slow = SwizzledShared(vec=8, per_phase=4, max_phase=2, order=(2, 0, 1))  # columns, then dim 0, then dim 1
    assert slow.offset((5, 0, 0), (8, 32, 16)) == 5 * 16 + 8  # row 5: phase 1
    assert slow.offset((0, 1, 0), (8, 32, 16)) == 8 * 16  # dim 1 outside the (8, 16) matrix


@pytest.mark.parametrize("shape, order, per_phase, max_phase, operand, expected", [
    ((4, 32, 64), (2, 1, 0), 1, 8, 0, (1, 1.0)),   # the forward's weights at B=16: rows swizzled
    ((8, 32, 16), (2, 0, 1), 4, 2, 0, (8, 8.0)),   # the 32-row forward's weights before: rows outermost
    ((8, 32, 16), (2, 1, 0), 4, 2, 0, (1, 1.0)),   # after: rows swizzled
    ((4, 64, 16), (1, 2, 0), 1, 8, 1, (1, 1.0)),   # the state (B, K contiguous) under Triton 3.6
    ((4, 64, 16), (1, 0, 2), 1, 8, 1, (8, 8.0)),   # ... and under 3.9: its rows (N) outermost
])
def test_an_ldmatrix_matrix_takes_a_wavefront_per_row_in_one_bank_group(shape, order, per_phase, max_phase, operand,
                                                                         expected):
    load = OperandLoad(shape, "bf16", SwizzledShared(8, per_phase, max_phase, order), operand, 1)
    assert load.wavefronts() == expected


def test_a_buffer_contiguous_along_its_batch_is_not_an_ldmatrix_pattern():
    assert OperandLoad((8, 32, 16), "bf16", SwizzledShared(8, 8, 1, (0, 1, 2)), 0, 1).wavefronts() is None


def test_a_32_bit_operand_contiguous_along_m_is_read_with_lds_not_ldmatrix():
    """float32 (TF32) A contiguous along M, as the backward's under Triton 3.6 (136 ``LDS`` a step, its
    ``LDSM`` are B's): not an ``ldmatrix`` pattern; contiguous along K it is (16-byte rows of 4)."""
    along_m = OperandLoad((8, 16, 16), "f32", SwizzledShared(8, 2, 2, (1, 2, 0)), 0, 16)
    assert along_m.wavefronts() is None
    assert OperandLoad((8, 16, 16), "f32", SwizzledShared(4, 2, 4, (1, 2, 0)), 1, 16).wavefronts() == (1, 1.0)


TTGIR = """#mma = #ttg.nvidia_mma<{versionMajor = 2, versionMinor = 0, warpsPerCTA = [8, 1, 1], instrShape = [1, 16, 8]}>
#shared = #ttg.swizzled_shared<{vec = 8, perPhase = 4, maxPhase = 2, order = [2, 0, 1]}>
#shared1 = #ttg.nvmma_shared<{swizzlingByteWidth = 128, transposed = false, elementBitWidth = 16}>
    %a = ttg.local_load %x : !ttg.memdesc<8x32x16xbf16, #shared, #smem> -> tensor<8x32x16xbf16, #ttg.dot_op<{opIdx = 0, parent = #mma, kWidth = 2}>> loc(#loc1)
    %b = ttg.local_load %y : !ttg.memdesc<8x32x16xbf16, #shared, #smem> -> tensor<8x32x16xbf16, #ttg.dot_op<{opIdx = 0, parent = #mma, kWidth = 2}>> loc(#loc1)
    %c = ttg.local_load %z : !ttg.memdesc<64x64xbf16, #shared1, #smem> -> tensor<64x64xbf16, #ttg.dot_op<{opIdx = 0, parent = #mma, kWidth = 2}>> loc(#loc1)
    %d = ttg.local_load %w : !ttg.memdesc<8x32x16xbf16, #shared, #smem> -> tensor<8x32x16xbf16, #blocked> loc(#loc1)
"""


def test_the_ttgir_s_operand_buffers_are_found_and_counted():
    """Two loads of one swizzled buffer into a dot operand are one entry; an NVMMA buffer (the
    hardware's swizzle) and a load into a plain layout are not the ``ldmatrix`` loads this reads."""
    (load,) = operand_loads(TTGIR)
    assert (load.shape, load.dtype, load.operand, load.count) == ((8, 32, 16), "bf16", 0, 2)
    assert load.layout == SwizzledShared(8, 4, 2, (2, 0, 1)) and load.wavefronts() == (8, 8.0)


def test_the_extra_wavefronts_count_every_matrix_of_every_load_and_warp_that_reads_it():
    """Two loads of an (8, 32, 16) bf16 buffer, 8-way: 64 matrices each, 7 wavefronts too many each;
    a 2-D dot's A is read by each of the warps along N (here 2), its B by each along M."""
    assert extra_wavefronts(TTGIR) == 2 * 64 * 7
    assert extra_wavefronts(TTGIR.replace("warpsPerCTA = [8, 1, 1]", "warpsPerCTA = [4, 1, 2]")) == 2 * 2 * 64 * 7
    assert extra_wavefronts(TTGIR.replace("order = [2, 0, 1]", "order = [2, 1, 0]")) == 0
    b_operand = OperandLoad((64, 16), "bf16", SwizzledShared(8, 1, 8, (0, 1)), 1, 3, replication=4)
    assert b_operand.matrices() == 64 * 16 // 64 * 3 * 4


def committed(version: str) -> pd.DataFrame:
    return pd.read_csv(ROOT / "reports" / "aot" / f"bank-conflicts-sm_90-triton{version}.csv", dtype={"order": str})


@pytest.mark.parametrize("version", TABLE_TRITONS)
def test_the_committed_tables_cover_the_plain_kernels_of_the_goal_shapes(version):
    table = committed(version)
    assert set(table.triton.str[:3]) == {version}
    assert {"lstm", "rnn"} <= set(table.cell) and {"fwd", "fwd_train", "bwd"} <= set(table.direction)
    assert {64, 256, 768, 1024} <= set(table.h_pad) and {16, 32} <= set(table.block_b)


def test_under_triton_3_6_the_lstm_forward_s_held_weights_load_without_conflicts():
    """The GPU machine's Triton: the held weight blocks of every plain LSTM forward (A; cooperative
    and persistent, not the stepwise path's streamed ones), the 32-row blocks of 8 warps whose 8-way
    conflicts the H200 measured included, one wavefront a matrix."""
    table = committed("3.6")
    weights = table[(table.cell == "lstm") & (table.direction != "bwd") & (table.operand == "A")
                    & (table.path != "stepwise")]
    assert not weights.empty and ((weights.block_b == 32) & (weights.num_warps == 8)).any()
    assert (weights.worst_wavefronts == 1).all(), weights.to_string()


@pytest.mark.skipif(triton.__version__[:3] not in TABLE_TRITONS, reason=f"the committed tables are Triton {TABLE_TRITONS}'s")
def test_a_sample_compiles_to_the_committed_table():
    """The LSTM forward (16- and 32-row blocks), its backward and the Elman forward at H=768 compile,
    under this Triton, to the operand buffers and wavefronts the committed table lists (a kernel
    change that moves a layout fails here until ``make bank-conflicts`` regenerates it)."""
    chosen = [config for config in bank_conflicts.configs(90) if config.h_pad == 768 and config.path == "cooperative"
              and (config.cell, config.direction) in {("lstm", "fwd"), ("lstm", "bwd"), ("rnn", "fwd")}]
    assert {config.block_b for config in chosen if config.cell == "lstm"} == {16, 32}
    texts = compile_all(90, chosen, 2, job=bank_conflicts.config_ttgir)
    fresh = pd.DataFrame([row for config, text in zip(chosen, texts)
                          for row in bank_conflicts.table_rows(config, text, 90)]).astype({"order": str})
    keys = ["cell", "direction", "path", "h_pad", "block_b", "block_h", "num_warps", "operand", "shape", "order"]
    table = committed(triton.__version__[:3])
    merged = fresh.merge(table, on=keys, suffixes=("", "_committed"))
    assert len(merged) == len(fresh), "the table lists other buffers (make bank-conflicts)"
    fresh_worst, committed_worst = (pd.to_numeric(merged[column], errors="coerce").fillna(0)  # "" (not ldmatrix) as 0
                                    for column in ("worst_wavefronts", "worst_wavefronts_committed"))
    assert (fresh_worst == committed_worst).all(), \
        merged[keys + ["worst_wavefronts", "worst_wavefronts_committed"]].to_string()
