"""The size heuristic that picks a kernel path and block sizes (rnnbench.kernels.plan)."""

import pytest
import torch

from rnnbench.kernels.plan import (
    LIMITS, MAX_BLOCK_B, PathUnavailable, Resources, fits_persistent, kernel_resources, plan_recurrence,
    programs_per_multiprocessor, reduction_layout,
)

H100_SMS = 132


@pytest.mark.parametrize("cell, dtype, largest_persistent, largest_backward", [
    ("lstm", torch.bfloat16, 64, 32), ("lstm", torch.float16, 64, 32), ("lstm", torch.float32, 16, 16),
    ("rnn", torch.bfloat16, 128, 128), ("rnn", torch.float32, 32, 32),
])
def test_persistent_up_to_the_documented_size(cell, dtype, largest_persistent, largest_backward):
    """Larger persistent programs spill registers (reports/aot), although their weights fit."""
    for backward, largest in ((False, largest_persistent), (True, largest_backward)):
        assert plan_recurrence(cell, largest, 16, dtype, multiprocessors=H100_SMS, backward=backward).path == "persistent"
        bigger = plan_recurrence(cell, largest + 1, 16, dtype, multiprocessors=H100_SMS, backward=backward)
        assert bigger.path == "cooperative"
        assert bigger.grid[0] > 1
        with pytest.raises(PathUnavailable, match="needs all of W_hh"):
            plan_recurrence(cell, largest + 1, 16, dtype, path="persistent", backward=backward)


@pytest.mark.parametrize("hidden, h_pad, k_split, chunks", [
    (20, 32, 2, 1), (100, 128, 4, 1), (256, 256, 4, 1), (768, 768, 4, 3), (1000, 1024, 4, 4), (1024, 1024, 4, 4),
])
def test_reduction_is_cut_into_chunks_without_power_of_two_padding(hidden, h_pad, k_split, chunks):
    assert reduction_layout(hidden, persistent=False) == (h_pad, k_split, chunks)
    assert (h_pad // chunks) % (16 * k_split) == 0


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
@pytest.mark.parametrize("hidden", [20, 100, 256, 768, 1000, 1024])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_every_program_covers_its_units_and_the_grid_covers_all(cell, hidden, dtype):
    plan = plan_recurrence(cell, hidden, 3, dtype, multiprocessors=H100_SMS)
    assert plan.grid[0] * plan.block_h >= hidden > (plan.grid[0] - 1) * plan.block_h
    assert plan.h_pad >= hidden and plan.h_pad % (16 * plan.k_split * plan.k_chunks) == 0
    assert plan.k_split <= plan.num_warps and plan.poll >= plan.grid[0]


@pytest.mark.parametrize("hidden", [256, 512, 768, 1024])
@pytest.mark.parametrize("batch", [1, 16, 64])
def test_every_goal_shape_of_16_bit_lstm_is_co_resident(hidden, batch):
    """One weight slice serves the whole batch block (up to 64 rows), so even H=1024 at B=64 keeps
    one program per hidden block: 128 programs."""
    plan = plan_recurrence("lstm", hidden, batch, torch.bfloat16, multiprocessors=H100_SMS)
    assert plan.path in ("persistent", "cooperative") and plan.grid[1] == 1


def test_cooperative_only_when_the_grid_can_be_co_resident():
    resident = programs_per_multiprocessor(kernel_resources("lstm", plan_recurrence("lstm", 1024, 64, torch.bfloat16),
                                                            torch.bfloat16), 4, LIMITS[90])[0]
    co_resident = plan_recurrence("lstm", 1024, 64, torch.bfloat16, multiprocessors=H100_SMS)
    assert co_resident.path == "cooperative" and co_resident.programs <= resident * H100_SMS
    batch = MAX_BLOCK_B * (resident * H100_SMS // 128 + 1)  # one more batch block than fit
    too_many = plan_recurrence("lstm", 1024, batch, torch.bfloat16, multiprocessors=H100_SMS)
    assert too_many.programs > resident * H100_SMS and too_many.path == "stepwise"
    with pytest.raises(PathUnavailable, match="co-resident programs"):
        plan_recurrence("lstm", 1024, batch, torch.bfloat16, path="cooperative", multiprocessors=H100_SMS)


def test_interpreter_never_picks_cooperative_by_itself():
    assert plan_recurrence("lstm", 512, 4, torch.float32, interpreter=True).path == "stepwise"


def test_forced_split_of_a_small_layer_uses_several_programs():
    plan = plan_recurrence("lstm", 48, 3, torch.float32, path="stepwise")
    assert plan.grid[0] >= 2


@pytest.mark.parametrize("bad, message", [
    (dict(cell="gru"), "cell must be one of"),
    (dict(path="fast"), "path must be 'auto' or one of"),
    (dict(arch=75), "arch must be one of"),
])
def test_bad_arguments(bad, message):
    arguments = dict(cell="lstm", hidden_size=64, batch=4, dtype=torch.float32) | bad
    with pytest.raises(ValueError, match=message) as raised:
        plan_recurrence(**arguments)
    assert not isinstance(raised.value, PathUnavailable)  # a caller's mistake, not a shape the path cannot run


def test_persistent_refusal_names_what_it_needs():
    assert not fits_persistent("lstm", 256, torch.bfloat16)
    with pytest.raises(PathUnavailable, match=r"path='persistent' needs all of W_hh .* bytes of shared memory"):
        plan_recurrence("lstm", 256, 4, torch.bfloat16, path="persistent")


def test_smaller_shared_memory_of_sm80_holds_less():
    assert fits_persistent("lstm", 64, torch.bfloat16, arch=90)
    plan = plan_recurrence("lstm", 2048, 16, torch.bfloat16, path="cooperative")
    needed = kernel_resources("lstm", plan, torch.bfloat16)
    fits = {arch: programs_per_multiprocessor(needed, plan.num_warps, LIMITS[arch])[0] for arch in LIMITS}
    assert fits[90] >= fits[80]


def test_programs_per_multiprocessor_from_registers_shared_memory_and_warps():
    limits = LIMITS[90]
    assert programs_per_multiprocessor(Resources(98304, 109), 8, limits) == (2, "registers")  # 112 x 32 x 8 = 28,672
    assert programs_per_multiprocessor(Resources(98304, 156), 8, limits) == (1, "registers")
    assert programs_per_multiprocessor(Resources(120000, 40), 4, limits) == (1, "shared")
    assert programs_per_multiprocessor(Resources(1024, 24), 16, limits) == (4, "warps")
    assert programs_per_multiprocessor(Resources(240000, 24), 4, limits) == (0, "shared")  # over the per-block limit


def test_register_cap_leaves_room_for_the_warps():
    plan = plan_recurrence("lstm", 1024, 1, torch.bfloat16)
    assert plan.max_registers * 32 * plan.num_warps <= 65536
