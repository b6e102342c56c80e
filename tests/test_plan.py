"""The size heuristic that picks a kernel path and block sizes (rnnbench.kernels.plan)."""

import dataclasses

import pytest
import torch

import triton

import rnnbench.kernels.plan
from rnnbench.kernels.plan import (
    BATCHED_DOT_SPREADS_WARPS, GATE_ROWS, GATES, HALF_BLOCK_B, HALF_BLOCK_UNITS, FORWARD_ROW_PARTS,
    GLUON, LIMITS, MAX_BLOCK_B, NUM_WARPS, TRITON_VERSION, WIDE_NUM_WARPS, narrow_batch_blocks,
    PATHS, WIDE_FORWARD_H, PathUnavailable, Resources, fits_persistent, kernel_resources, next_power_of_two,
    plan_recurrence, programs_per_multiprocessor, reduction_layout, row_split, split_layout,
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
        forward_runs = backward and largest + 1 <= largest_persistent  # its refusal says so
        with pytest.raises(PathUnavailable, match="but not its backward" if forward_runs else "needs all of W_hh"):
            plan_recurrence(cell, largest + 1, 16, dtype, path="persistent", backward=backward)


@pytest.mark.parametrize("hidden, h_pad, chunk, chunks", [
    (20, 32, 32, 1), (100, 128, 128, 1), (256, 256, 256, 1), (768, 768, 256, 3), (1000, 1024, 256, 4), (1024, 1024, 256, 4),
])
def test_reduction_is_cut_into_chunks_without_power_of_two_padding(hidden, h_pad, chunk, chunks):
    assert reduction_layout(hidden, persistent=False) == (h_pad, chunk, chunks)


@pytest.mark.parametrize("chunk, num_warps, row_parts, layout", [
    (256, 4, 1, (4, 4)), (256, 8, 1, (8, 8)), (256, 8, 2, (4, 8)), (64, 8, 2, (4, 8)), (128, 16, 2, (8, 16)),
    (64, 8, 1, (4, 4)),  # too narrow for 8 slices: 4 slices and 4 warps
    (32, 4, 1, (1, 4)), (32, 8, 2, (1, 8)), (16, 8, 1, (1, 8)),  # too narrow for 4: a 2-D dot
])
def test_split_layout_has_one_slice_per_warp(chunk, num_warps, row_parts, layout):
    k_split, warps = split_layout(chunk, num_warps, row_parts)
    assert (k_split, warps) == layout
    assert k_split == 1 or (k_split * row_parts == warps and chunk % (16 * k_split) == 0)


def test_triton_version_decides_whether_the_compiler_spreads_batched_dot_warps():
    """Triton 3.6 puts every warp of a 3-D dot on its batch dimension (reports/aot, KERNELS2.md)."""
    assert TRITON_VERSION == tuple(int(part) for part in triton.__version__.split(".")[:2])
    assert BATCHED_DOT_SPREADS_WARPS == (TRITON_VERSION >= (3, 9))
    plan = plan_recurrence("lstm", 768, 64, torch.bfloat16, multiprocessors=H100_SMS, allow_gluon=False)
    assert (plan.k_split, plan.num_warps, plan.h_pad // plan.k_chunks) == (4, 8, 256 if BATCHED_DOT_SPREADS_WARPS else 64)
    assert row_split("lstm", False, plan.k_split, plan.num_warps) == (1 if BATCHED_DOT_SPREADS_WARPS else 2)
    backward = plan_recurrence("lstm", 768, 64, torch.bfloat16, multiprocessors=H100_SMS, backward=True,
                               allow_gluon=False)
    assert (backward.k_split, backward.num_warps) == ((4, 8) if BATCHED_DOT_SPREADS_WARPS else (8, 8))
    assert (backward.block_b, backward.block_h, backward.grid) == (32, 16, (48, 2))


@pytest.mark.parametrize("spreads", [False, True], ids=["triton3.6", "triton3.9"])
@pytest.mark.parametrize("arch", [90, 80])
def test_batched_dots_have_one_slice_per_warp_unless_the_compiler_spreads_them(spreads, arch, monkeypatch):
    """Every shipped configuration's dot is 2-D or has K_SPLIT x M_SPLIT == num_warps slices; with
    Triton 3.9 two documented layouts leave the spreading of their extra warps to the compiler."""
    from rnnbench.kernels.aot import DTYPES, shipped_configs

    monkeypatch.setattr(rnnbench.kernels.plan, "BATCHED_DOT_SPREADS_WARPS", spreads)
    spread = []
    for config in shipped_configs(arch):
        slices = config.k_split * row_split(config.cell, config.direction == "bwd", config.k_split, config.num_warps)
        assert config.k_split == 1 or slices <= config.num_warps
        assert config.m_split == 1 or 4 * config.block_h // config.m_split >= 16  # the MMA's M rows per part
        if config.k_split > 1 and slices < config.num_warps:
            spread.append(config)
    if not spreads:  # only where a slice per warp would not fit one SM (kernel_resources' reduction scratch)
        for config in spread:
            plan = dataclasses.replace(config.plan, k_split=config.num_warps)
            needed = kernel_resources(config.cell, plan, DTYPES[config.dtype], config.direction == "bwd")
            assert programs_per_multiprocessor(needed, plan.num_warps, LIMITS[arch])[0] == 0, config
    else:  # four slices (two in the wide forward), the compiler spreads the other warps
        assert spread and all(config.m_split == 1 for config in spread)
        # the wide forward: 8 warps compiled for an H divisible by 16, 16 warps for any other H
        assert all(config.k_split == NUM_WARPS
                   or (config.k_split, config.num_warps, config.h_pad > WIDE_FORWARD_H)
                   == (2, 8 if config.hidden_divisible else 16, True) for config in spread)


def test_lstm_forward_cuts_its_gate_rows_in_two_with_more_than_four_warps(monkeypatch):
    monkeypatch.setattr(rnnbench.kernels.plan, "BATCHED_DOT_SPREADS_WARPS", False)  # Triton 3.6's layouts
    for hidden, batch in ((512, 64), (768, 64)):
        plan = plan_recurrence("lstm", hidden, batch, torch.bfloat16, multiprocessors=H100_SMS, allow_gluon=False)
        assert plan.num_warps > NUM_WARPS
        assert row_split("lstm", False, plan.k_split, plan.num_warps) == FORWARD_ROW_PARTS
        assert plan.k_split * FORWARD_ROW_PARTS == plan.num_warps
        assert row_split("lstm", True, plan.k_split, plan.num_warps) == 1 == row_split("rnn", False, plan.k_split,
                                                                                       plan.num_warps)
    plan = plan_recurrence("lstm", 256, 16, torch.bfloat16, multiprocessors=H100_SMS, allow_gluon=False)
    assert (plan.num_warps, plan.k_split, row_split("lstm", False, plan.k_split, plan.num_warps)) == (4, 4, 1)


@pytest.mark.parametrize("spreads, chunk", [(False, 64), (True, 256)])
def test_lstm_forward_of_a_wide_batch_runs_32_row_blocks_of_16_units_where_they_fit_one_sm(spreads, chunk, monkeypatch):
    monkeypatch.setattr(rnnbench.kernels.plan, "BATCHED_DOT_SPREADS_WARPS", spreads)
    for hidden in (512, 768, 1024):  # 64 hidden blocks of 8 units or more: 16-row blocks would not fit one per SM
        plan = plan_recurrence("lstm", hidden, 64, torch.bfloat16, multiprocessors=H100_SMS, allow_gluon=False)
        assert (plan.path, plan.block_b, plan.block_h, plan.num_warps) == (
            "cooperative", HALF_BLOCK_B, HALF_BLOCK_UNITS["lstm"], WIDE_NUM_WARPS)
        assert (plan.k_split, plan.h_pad // plan.k_chunks) == (NUM_WARPS, min(chunk, hidden))
        assert plan.grid == (hidden // HALF_BLOCK_UNITS["lstm"], 2)
    # sm_80 holds less: 16 units of 768 columns do not fit one SM by the bound, 64-row blocks of 8 do
    sm80 = plan_recurrence("lstm", 768, 64, torch.bfloat16, path="cooperative", arch=80)
    assert (sm80.block_b, sm80.block_h) == (MAX_BLOCK_B, GATE_ROWS["lstm"] // GATES["lstm"])
    assert plan_recurrence("lstm", 512, 64, torch.bfloat16, path="cooperative", arch=80).block_b == HALF_BLOCK_B
    # fp32 keeps 16-row blocks
    assert plan_recurrence("lstm", 768, 64, torch.float32, multiprocessors=H100_SMS, allow_gluon=False).block_b == 16


@pytest.mark.parametrize("cell, hidden, batch, backward", [
    ("lstm", 128, 64, False), ("lstm", 256, 64, False), ("lstm", 64, 64, True), ("lstm", 512, 64, True),
    ("lstm", 200, 40, False), ("rnn", 256, 64, False), ("rnn", 512, 64, True)])
def test_a_wide_batch_runs_the_layout_of_b16_where_it_fits_one_program_per_sm(cell, hidden, batch, backward):
    """A 16-bit batch wider than 16 rows runs the B <= 16 layout in more batch blocks where that grid
    puts at most one program on each SM: every program then runs the step measured at B=16."""
    wide = plan_recurrence(cell, hidden, batch, torch.bfloat16, "cooperative", H100_SMS, backward=backward)
    narrow = plan_recurrence(cell, hidden, 16, torch.bfloat16, "cooperative", H100_SMS, backward=backward)
    assert narrow_batch_blocks(cell, hidden, batch, torch.bfloat16, H100_SMS, backward=backward)
    assert dataclasses.replace(wide, grid=narrow.grid) == narrow and wide.grid == (narrow.grid[0], -(-batch // 16))
    assert wide.programs <= H100_SMS


@pytest.mark.parametrize("cell, hidden, batch, dtype, call, why", [
    ("lstm", 256, 65, torch.bfloat16, {}, "32 hidden blocks x 5 batch blocks > 132 SMs"),
    ("lstm", 512, 64, torch.bfloat16, {}, "64 x 4"),
    ("lstm", 256, 64, torch.bfloat16, dict(directions=2), "both directions: 2 x 128"),
    ("lstm", 128, 64, torch.float32, {}, "fp32 blocks are 16 rows anyway"),
    ("lstm", 128, 64, torch.bfloat16, dict(multiprocessors=None), "no GPU to count SMs of"),
    ("lstm", 128, 16, torch.bfloat16, {}, "B <= 16 is that layout"),
])
def test_a_wide_batch_keeps_its_wide_blocks_elsewhere(cell, hidden, batch, dtype, call, why):
    arguments = dict(multiprocessors=H100_SMS)
    arguments.update(call)
    assert not narrow_batch_blocks(cell, hidden, batch, dtype, **arguments), why
    if arguments["multiprocessors"] is not None and batch > 16 and dtype == torch.bfloat16:
        plan = plan_recurrence(cell, hidden, batch, dtype, "cooperative", **arguments)
        assert plan.block_b == HALF_BLOCK_B, (why, plan)
    interpreted = plan_recurrence("lstm", 128, 64, torch.bfloat16, "cooperative", H100_SMS, interpreter=True)
    assert interpreted.block_b == HALF_BLOCK_B  # the interpreter plans as before (no GPU runs it)


@pytest.mark.parametrize("spreads", [False, True])
def test_elman_of_a_wide_batch_runs_32_row_blocks_of_32_units(spreads, monkeypatch):
    monkeypatch.setattr(rnnbench.kernels.plan, "BATCHED_DOT_SPREADS_WARPS", spreads)
    for hidden in (600, 768, 1024):  # 38 hidden blocks of 16 units or more: 16-row blocks would not fit one per SM
        forward = plan_recurrence("rnn", hidden, 64, torch.bfloat16, multiprocessors=H100_SMS)
        backward = plan_recurrence("rnn", hidden, 64, torch.bfloat16, multiprocessors=H100_SMS, backward=True)
        for plan, layout in ((forward, (NUM_WARPS, NUM_WARPS)), (backward, (WIDE_NUM_WARPS, WIDE_NUM_WARPS))):
            assert (plan.path, plan.block_b, plan.block_h, plan.grid) == (
                "cooperative", HALF_BLOCK_B, HALF_BLOCK_UNITS["rnn"], (-(-hidden // HALF_BLOCK_UNITS["rnn"]), 2))
            assert (plan.k_split, plan.num_warps) == layout
    assert plan_recurrence("rnn", 768, 16, torch.bfloat16, multiprocessors=H100_SMS).block_h == 16  # B <= 16 keeps 16 units


@pytest.mark.parametrize("spreads, slices", [(False, WIDE_NUM_WARPS), (True, NUM_WARPS)])
def test_lstm_backward_at_1024_columns_runs_32_row_blocks_where_they_fit_one_sm(spreads, slices, monkeypatch):
    """32-row blocks of 16 units on 8 warps (Triton 3.6: a slice each; 3.9: 4 slices), with Triton
    3.6 admitted by the LSTM backward's one-chunk state term (with every chunk counted, the
    forward's bound, they would not fit one SM); sm_80 holds less and keeps 64-row blocks of 8
    units."""
    monkeypatch.setattr(rnnbench.kernels.plan, "BATCHED_DOT_SPREADS_WARPS", spreads)
    plan = plan_recurrence("lstm", 1024, 64, torch.bfloat16, multiprocessors=H100_SMS, backward=True, allow_gluon=False)
    assert (plan.path, plan.block_b, plan.block_h, plan.k_split, plan.num_warps) == (
        "cooperative", HALF_BLOCK_B, HALF_BLOCK_UNITS["lstm"], slices, WIDE_NUM_WARPS)
    one_chunk = kernel_resources("lstm", plan, torch.bfloat16, backward=True)
    every_chunk = kernel_resources("lstm", plan, torch.bfloat16)
    assert every_chunk.shared_bytes - one_chunk.shared_bytes == (plan.k_chunks - 1) * 256 * HALF_BLOCK_B * 2
    assert programs_per_multiprocessor(one_chunk, plan.num_warps, LIMITS[90])[0] == 1
    # a slice a warp (3.6) needs the one-chunk term: twice the reduction scratch of 4 slices
    assert programs_per_multiprocessor(every_chunk, plan.num_warps, LIMITS[90])[0] == (1 if spreads else 0)
    sm80 = plan_recurrence("lstm", 1024, 64, torch.bfloat16, path="cooperative", arch=80, backward=True)
    assert (sm80.block_b, sm80.block_h) == (MAX_BLOCK_B, GATE_ROWS["lstm"] // GATES["lstm"])
    assert programs_per_multiprocessor(kernel_resources("lstm", sm80, torch.bfloat16, backward=True), sm80.num_warps,
                                       LIMITS[80])[0] == 1
    # the Elman backward keeps every chunk in its bound
    elman = plan_recurrence("rnn", 1024, 64, torch.bfloat16, multiprocessors=H100_SMS, backward=True)
    assert kernel_resources("rnn", elman, torch.bfloat16, backward=True) == kernel_resources("rnn", elman, torch.bfloat16)


@pytest.mark.parametrize("spreads", [False, True])
@pytest.mark.parametrize("hidden", [300, 768, 4096])
def test_sm80_stepwise_lstm_backward_of_64_rows_runs_four_warps_a_slice_each(hidden, spreads, monkeypatch):
    monkeypatch.setattr(rnnbench.kernels.plan, "BATCHED_DOT_SPREADS_WARPS", spreads)
    plan = plan_recurrence("lstm", hidden, 64, torch.bfloat16, path="stepwise", arch=80, backward=True)
    assert (plan.block_b, plan.k_split, plan.num_warps) == (MAX_BLOCK_B, NUM_WARPS, NUM_WARPS)
    sixteen_rows = plan_recurrence("lstm", hidden, 16, torch.bfloat16, path="stepwise", arch=80, backward=True)
    assert sixteen_rows.num_warps == WIDE_NUM_WARPS


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
@pytest.mark.parametrize("hidden", [20, 100, 256, 768, 1000, 1024])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_every_program_covers_its_units_and_the_grid_covers_all(cell, hidden, dtype):
    plan = plan_recurrence(cell, hidden, 3, dtype, multiprocessors=H100_SMS)
    assert plan.grid[0] * plan.block_h >= hidden > (plan.grid[0] - 1) * plan.block_h
    assert plan.h_pad >= hidden and plan.h_pad % (16 * plan.k_split * plan.k_chunks) == 0
    assert plan.k_split <= plan.num_warps and plan.poll >= plan.grid[0]
    assert plan.k_split == 1 or plan.num_warps % plan.k_split == 0


@pytest.mark.parametrize("hidden", [256, 512, 768, 1024])
@pytest.mark.parametrize("batch", [1, 16, 64])
def test_every_goal_shape_of_16_bit_lstm_is_co_resident(hidden, batch):
    """One weight slice serves a whole batch block, so even H=1024 at B=64 runs 128 programs (64
    hidden blocks of 16 units x 2 batch blocks of 32 rows), co-resident on 132 SMs; so does the
    Gluon forward where ``auto`` prefers it, and the plain kernels where Gluon cannot run."""
    plain = plan_recurrence("lstm", hidden, batch, torch.bfloat16, multiprocessors=H100_SMS, allow_gluon=False)
    assert plain.path in ("persistent", "cooperative") and plain.programs <= H100_SMS
    for backward in (False, True):
        plan = plan_recurrence("lstm", hidden, batch, torch.bfloat16, multiprocessors=H100_SMS, backward=backward)
        assert plan.path in ("persistent", "cooperative", GLUON) and plan.programs <= H100_SMS


def test_cooperative_only_when_the_grid_can_be_co_resident():
    resident = programs_per_multiprocessor(kernel_resources("lstm", plan_recurrence("lstm", 1024, 64, torch.bfloat16),
                                                            torch.bfloat16), 4, LIMITS[90])[0]
    co_resident = plan_recurrence("lstm", 1024, 64, torch.bfloat16, multiprocessors=H100_SMS, allow_gluon=False)
    assert co_resident.path == "cooperative" and co_resident.programs <= resident * H100_SMS
    batch = MAX_BLOCK_B * (resident * H100_SMS // 128 + 1)  # one more batch block than fit
    too_many = plan_recurrence("lstm", 1024, batch, torch.bfloat16, multiprocessors=H100_SMS, allow_gluon=False)
    assert too_many.programs > resident * H100_SMS and too_many.path == "stepwise"
    with pytest.raises(PathUnavailable, match="co-resident programs"):
        plan_recurrence("lstm", 1024, batch, torch.bfloat16, path="cooperative", multiprocessors=H100_SMS, allow_gluon=False)


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


def test_a_batch_beyond_the_kernels_32_bit_step_offsets_is_refused_with_the_largest_that_fits():
    # LSTM H=4096: 2 exchange slots x 4 gates x 4096 columns = 32768 elements per row
    largest = (2**31 - 1) // 32768 // MAX_BLOCK_B * MAX_BLOCK_B
    assert plan_recurrence("lstm", 4096, largest, torch.bfloat16).path == "stepwise"
    with pytest.raises(ValueError, match=rf"batch={largest + 1}: .* at most {largest} rows"):
        plan_recurrence("lstm", 4096, largest + 1, torch.bfloat16, backward=True)
    assert plan_recurrence("rnn", 4096, largest + 1, torch.bfloat16).path == "stepwise"  # one gate: 4x the rows


def test_persistent_refusal_names_what_it_needs():
    assert not fits_persistent("lstm", 256, torch.bfloat16)
    with pytest.raises(PathUnavailable, match=r"path='persistent' needs all of W_hh .* bytes of shared memory"):
        plan_recurrence("lstm", 256, 4, torch.bfloat16, path="persistent")


def test_a_persistent_forward_whose_backward_cannot_be_persistent_says_so():
    """LSTM H=64 in 16-bit: the forward runs persistent, its backward (256 gate rows) cannot."""
    assert plan_recurrence("lstm", 64, 16, torch.bfloat16, path="persistent").path == "persistent"
    with pytest.raises(PathUnavailable, match=r"runs the forward .* but not its backward: .* at most 128 gate rows"
                                              r".* this one has 256; path='auto' runs a persistent forward"):
        plan_recurrence("lstm", 64, 16, torch.bfloat16, path="persistent", backward=True)
    assert plan_recurrence("lstm", 64, 16, torch.bfloat16, multiprocessors=H100_SMS, backward=True).path == "cooperative"


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


def test_small_persistent_programs_run_four_warps():
    """Their 2-D dot is a 64-row wgmma per warpgroup on sm_90: 8 warps on fewer than 128 gate rows
    computed it twice."""
    warps = {(cell, hidden): plan_recurrence(cell, hidden, 16, torch.bfloat16, multiprocessors=H100_SMS).num_warps
             for cell, hidden in (("rnn", 64), ("rnn", 128), ("lstm", 16), ("lstm", 32), ("lstm", 64))}
    assert warps == {("rnn", 64): 4, ("rnn", 128): 8, ("lstm", 16): 4, ("lstm", 32): 8, ("lstm", 64): 8}
    assert plan_recurrence("rnn", 64, 16, torch.bfloat16, multiprocessors=H100_SMS).path == "persistent"


@pytest.mark.parametrize("arch", [90, 80])
def test_a_layout_depends_on_h_only_through_its_padded_size_and_divisibility(arch):
    """Every H that pads to the same size compiles the same kernel (``h_pad`` is what the kernels
    see, with H's divisibility by 16, which Triton specialises), so it must get the same layout: a
    rule with its threshold on H itself gave H=257-511 on sm_80 a layout the compiled H=512 kernel
    never had, and that one spilled."""
    layouts: dict[tuple, set] = {}
    for cell in ("lstm", "rnn"):
        for dtype in (torch.bfloat16, torch.float32):
            for batch in (16, 64):
                for backward in (False, True):
                    for path in PATHS:
                        for hidden in range(8, 1100, 9):
                            try:
                                plan = plan_recurrence(cell, hidden, batch, dtype, path, arch=arch, backward=backward)
                            except PathUnavailable:
                                continue
                            key = (cell, dtype, batch, backward, path, plan.h_pad, hidden % 16 == 0)
                            layouts.setdefault(key, set()).add(
                                (plan.block_b, plan.block_h, plan.k_split, plan.num_warps, plan.k_chunks))
    assert len(layouts) > 100
    differing = {key: found for key, found in layouts.items() if len(found) > 1}
    assert not differing, differing


@pytest.mark.parametrize("cell, hidden, batch, dtype, backward", [
    ("rnn", 768, 16, torch.bfloat16, False), ("rnn", 1024, 1, torch.bfloat16, True),
    ("lstm", 768, 16, torch.bfloat16, False), ("lstm", 1024, 64, torch.bfloat16, True),
    ("lstm", 768, 16, torch.float32, True), ("lstm", 256, 16, torch.bfloat16, False)])
def test_a_plain_cooperative_poll_is_one_vector_load_unless_its_layout_is_register_tight(cell, hidden, batch, dtype,
                                                                                            backward):
    """Above 32 producers a plain cooperative plan polls a power of two of flags in vectors of up to
    4 per thread (``POLL / 32``), one load and one round trip, except in layouts of 16 warps (the
    backward's at B=64), whose vector poll spilled: those poll 32 flags at a time, a multiple of 32.
    Up to 32 producers, one flag per lane; off the cooperative path there is no barrier to poll."""
    plan = plan_recurrence(cell, hidden, batch, dtype, "cooperative", H100_SMS, backward=backward)
    assert plan.poll >= plan.grid[0]
    if plan.grid[0] <= 32:
        assert plan.poll_vector == 1 and plan.poll == next_power_of_two(plan.grid[0]), plan
    elif plan.num_warps >= 16:
        assert plan.poll_vector == 1 and plan.poll % 32 == 0 and plan.poll < plan.grid[0] + 32, plan
    else:
        assert plan.poll == next_power_of_two(plan.grid[0]) and plan.poll_vector == min(plan.poll // 32, 4), plan
    stepwise = plan_recurrence(cell, hidden, batch, dtype, "stepwise", H100_SMS, backward=backward)
    assert stepwise.poll_vector == 1
