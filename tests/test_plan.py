"""The size heuristic that picks a kernel path and block sizes (rnnbench.kernels.plan)."""

import pytest
import torch

from rnnbench.kernels.plan import W_SLICE_BYTES, plan_recurrence, slice_fits

H100_SMS = 132


@pytest.mark.parametrize("cell, dtype, largest_persistent", [
    ("lstm", torch.bfloat16, 64), ("lstm", torch.float16, 64), ("lstm", torch.float32, 32),
    ("rnn", torch.bfloat16, 128), ("rnn", torch.float32, 64),
])
def test_persistent_up_to_the_documented_size(cell, dtype, largest_persistent):
    assert plan_recurrence(cell, largest_persistent, 16, dtype, multiprocessors=H100_SMS).path == "persistent"
    bigger = plan_recurrence(cell, largest_persistent + 1, 16, dtype, multiprocessors=H100_SMS)
    assert bigger.path == "cooperative"
    assert bigger.grid[0] > 1


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
@pytest.mark.parametrize("hidden", [20, 100, 256, 768, 1000, 1024])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_every_program_holds_a_slice_that_fits_and_covers_all_units(cell, hidden, dtype):
    plan = plan_recurrence(cell, hidden, 3, dtype, multiprocessors=H100_SMS)
    gates = 4 if cell == "lstm" else 1
    size = torch.empty((), dtype=dtype).element_size()
    assert slice_fits(gates, plan.h_pad, plan.block_h, size)
    assert gates * plan.h_pad * plan.block_h * size <= W_SLICE_BYTES
    assert plan.grid[0] * plan.block_h >= hidden > (plan.grid[0] - 1) * plan.block_h
    assert plan.h_pad >= hidden and plan.h_pad % (16 * plan.k_split) == 0
    assert plan.k_split <= plan.num_warps


def test_cooperative_only_when_the_grid_can_be_co_resident():
    small_batch = plan_recurrence("lstm", 1024, 16, torch.bfloat16, multiprocessors=H100_SMS)
    assert small_batch.path == "cooperative" and small_batch.programs <= H100_SMS
    large_batch = plan_recurrence("lstm", 1024, 256, torch.bfloat16, multiprocessors=H100_SMS)
    assert large_batch.programs > H100_SMS and large_batch.path == "stepwise"
    with pytest.raises(ValueError, match="co-resident programs"):
        plan_recurrence("lstm", 1024, 256, torch.bfloat16, path="cooperative", multiprocessors=H100_SMS)


def test_interpreter_never_picks_cooperative_by_itself():
    assert plan_recurrence("lstm", 512, 4, torch.float32, interpreter=True).path == "stepwise"


def test_forced_split_of_a_small_layer_uses_several_programs():
    plan = plan_recurrence("lstm", 48, 3, torch.float32, path="stepwise")
    assert plan.grid[0] >= 2


@pytest.mark.parametrize("bad, message", [
    (dict(cell="gru"), "cell must be one of"),
    (dict(path="fast"), "path must be 'auto' or one of"),
])
def test_bad_arguments(bad, message):
    arguments = dict(cell="lstm", hidden_size=64, batch=4, dtype=torch.float32) | bad
    with pytest.raises(ValueError, match=message):
        plan_recurrence(**arguments)


def test_exact_fp32_halves_the_slice():
    tf32 = plan_recurrence("lstm", 512, 1, torch.float32)
    exact = plan_recurrence("lstm", 512, 1, torch.float32, exact_fp32=True)
    assert exact.block_h * 2 == tf32.block_h


def test_register_cap_leaves_room_for_the_warps():
    plan = plan_recurrence("lstm", 1024, 1, torch.bfloat16)
    assert plan.max_registers * 32 * plan.num_warps <= 65536
