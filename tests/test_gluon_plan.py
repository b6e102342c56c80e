"""The planner's ``gluon`` path (:func:`rnnbench.kernels.plan.plan_gluon`): chosen by ``auto`` where it
was measured faster (:func:`~rnnbench.kernels.plan.prefers_gluon`), refused with
:class:`PathUnavailable` (and the reason) wherever the Gluon kernel cannot run, and laid out so
that one program fits an sm_90 multiprocessor and the grid is co-resident."""

import dataclasses
import os
import re

import pytest
import torch

from rnnbench.kernels import TritonLSTM
from rnnbench.kernels import switches
from rnnbench.kernels.plan import (
    GLUON, GLUON_AUTO_MIN_HIDDEN_NARROW, GLUON_MIN_HIDDEN, LIMITS, PATHS, SHARED_FIXED, PathUnavailable,
    gluon_available, gluon_backward_shared_bytes, gluon_backward_stages, kernel_resources, plan_gluon,
    plan_recurrence, prefers_gluon, prefers_gluon_backward, programs_per_multiprocessor,
)

H100_SMS = 132


needs_gluon = pytest.mark.skipif(not gluon_available(), reason="this Triton has no Gluon Hopper API")


@needs_gluon
@pytest.mark.parametrize("hidden, batch, dtype", [
    (512, 1, torch.bfloat16), (768, 16, torch.bfloat16), (1024, 16, torch.float16),  # from 512 units at B <= 16
    (512, 64, torch.bfloat16), (768, 64, torch.bfloat16), (320, 256, torch.float16),  # H >= 256 at B > 16, where
    (256, 160, torch.bfloat16),  # the plain kernel's 16-row blocks would not fit one program per SM
])
def test_auto_chooses_gluon_where_it_was_measured_faster(hidden, batch, dtype):
    assert plan_recurrence("lstm", hidden, batch, dtype, "auto", H100_SMS) == plan_recurrence(
        "lstm", hidden, batch, dtype, GLUON, H100_SMS)


@needs_gluon
@pytest.mark.parametrize("cell, hidden, batch, dtype, call", [
    ("lstm", 256, 16, torch.bfloat16, {}),             # plain faster: 2.17 vs 2.37 us/step (H200)
    ("lstm", 256, 64, torch.bfloat16, {}),             # the plain B=16 layout in 4 batch blocks, one per SM
    ("lstm", 320, 48, torch.float16, {}),              # the same, 20 x 3 programs
    ("lstm", 496, 1, torch.bfloat16, {}),              # below GLUON_AUTO_MIN_HIDDEN_NARROW at B <= 16
    ("lstm", 128, 64, torch.bfloat16, {}),             # below GLUON_MIN_HIDDEN: plan_gluon refuses
    ("lstm", 770, 64, torch.bfloat16, {}),             # not a multiple of 16: plan_gluon refuses, no error
    ("lstm", 768, 64, torch.float32, {}),              # 16-bit only
    ("rnn", 768, 64, torch.bfloat16, {}),              # the LSTM only
    ("lstm", 768, 64, torch.float32, dict(backward=True)),  # the Gluon backward is 16-bit only too
    ("rnn", 768, 64, torch.bfloat16, dict(backward=True)),
    ("lstm", 128, 16, torch.bfloat16, dict(backward=True)),  # below GLUON_MIN_HIDDEN
    ("lstm", 768, 64, torch.bfloat16, dict(arch=80)),
    ("lstm", 768, 64, torch.bfloat16, dict(allow_gluon=False)),  # a GPU newer than sm_90
    ("lstm", 768, 64, torch.bfloat16, dict(multiprocessors=None)),  # ahead of time: no GPU to plan for
    ("lstm", 768, 64, torch.bfloat16, dict(interpreter=True)),
])
def test_auto_keeps_the_plain_kernels_elsewhere(cell, hidden, batch, dtype, call):
    arguments = dict(multiprocessors=H100_SMS)
    arguments.update(call)
    assert plan_recurrence(cell, hidden, batch, dtype, "auto", **arguments).path in PATHS


@needs_gluon
@pytest.mark.parametrize("hidden, batch, dtype", [(256, 16, torch.bfloat16), (768, 1, torch.bfloat16),
                                                  (768, 16, torch.float16), (1024, 64, torch.bfloat16)])
def test_auto_runs_the_gluon_backward_wherever_it_plans_one(hidden, batch, dtype):
    """Measured faster than the plain backward at every shape (prefers_gluon_backward), also where the
    forward is the plain kernel's (H=256, B=16)."""
    backward = plan_recurrence("lstm", hidden, batch, dtype, "auto", H100_SMS, backward=True)
    assert backward == plan_recurrence("lstm", hidden, batch, dtype, GLUON, H100_SMS, backward=True)
    assert backward.path == GLUON and prefers_gluon_backward("lstm", dtype)
    assert not prefers_gluon_backward("lstm", torch.float32) and not prefers_gluon_backward("rnn", dtype)


def test_the_gluon_rule_matches_plan_gluons_hidden_sizes():
    assert not prefers_gluon("lstm", 256, 16, torch.bfloat16) and prefers_gluon("lstm", 256, 17, torch.bfloat16)
    assert prefers_gluon("lstm", GLUON_AUTO_MIN_HIDDEN_NARROW, 1, torch.float16)
    assert GLUON_AUTO_MIN_HIDDEN_NARROW % 16 == 0 and GLUON_AUTO_MIN_HIDDEN_NARROW >= GLUON_MIN_HIDDEN


@pytest.mark.parametrize("hidden, batch, block_b, grid, h_pad", [
    (256, 1, 16, (16, 1), 256),
    (320, 48, 16, (20, 3), 320),      # 5 tiles of 64 columns, no padding; the smallest co-resident block
    (768, 16, 16, (48, 1), 768),
    (768, 64, 32, (48, 2), 768),      # 96 programs of 32 rows, not 48 of 64
    (1024, 64, 32, (64, 2), 1024),    # a 64-row block would need 256 KiB of shared memory
    (512, 150, 64, (32, 3), 512),     # three batch blocks, the last partly filled, one program per SM
                                      # (five of 32 rows would put two programs on some SMs)
])
def test_forced_gluon_layout(hidden, batch, block_b, grid, h_pad):
    plan = plan_recurrence("lstm", hidden, batch, torch.bfloat16, GLUON, H100_SMS)
    assert (plan.path, plan.block_h, plan.block_b, plan.grid, plan.h_pad, plan.k_chunks, plan.num_warps) == (
        GLUON, 16, block_b, grid, h_pad, h_pad // 64, 4)
    resources = kernel_resources("lstm", plan, torch.bfloat16)
    assert resources.shared_bytes <= LIMITS[90].shared_per_block
    assert plan.programs <= H100_SMS * programs_per_multiprocessor(resources, plan.num_warps, LIMITS[90])[0]


def test_both_directions_run_one_after_the_other_when_together_they_are_not_co_resident():
    together = plan_recurrence("lstm", 768, 16, torch.float16, GLUON, H100_SMS, directions=2)
    assert together.launch_directions == 2 and together.programs == 96
    apart = plan_recurrence("lstm", 1024, 64, torch.float16, GLUON, H100_SMS, directions=2)
    assert apart.launch_directions == 1 and apart.programs == 128


@pytest.mark.parametrize("arguments, reason", [
    (dict(cell="rnn"), "LSTM only"),
    (dict(dtype=torch.float32), "16-bit storage only"),
    (dict(hidden=128), "hidden_size >= 256 divisible by 16 (got 128)"),
    (dict(hidden=300), "divisible by 16 (got 300)"),
    (dict(arch=80), "needs sm_90 (got sm_80)"),
    (dict(interpreter=True), "interpreter"),
    (dict(batch=1000), "co-resident programs"),
])
def test_refusals_name_the_reason(arguments, reason):
    call = dict(cell="lstm", hidden=768, batch=16, dtype=torch.bfloat16, arch=90, interpreter=False)
    call.update(arguments)
    with pytest.raises(PathUnavailable, match=re.escape(reason)):
        plan_recurrence(call["cell"], call["hidden"], call["batch"], call["dtype"], GLUON, H100_SMS,
                        call["interpreter"], arch=call["arch"])


@pytest.mark.parametrize("hidden, batch, directions, block_b, h_pad, launch_directions", [
    (768, 16, 1, 16, 768, 1), (320, 48, 1, 16, 384, 1), (1040, 16, 1, 16, 1152, 1), (1024, 64, 1, 32, 1024, 1),
    (256, 64, 2, 16, 256, 2), (1024, 64, 2, 32, 1024, 1),
])
def test_backward_of_the_gluon_path_is_the_gluon_backward(hidden, batch, directions, block_b, h_pad, launch_directions):
    """Eight warps (one reduction slice each), 16 units per program, h_pad a multiple of 128 (whole
    copies of 8 tiles), batch blocks of at most 32 rows (both directions one after the other rather
    than 64-row blocks), one program per SM and the grid co-resident."""
    plan = plan_recurrence("lstm", hidden, batch, torch.bfloat16, GLUON, H100_SMS, directions=directions,
                           backward=True)
    assert (plan.path, plan.num_warps, plan.k_split, plan.block_h) == (GLUON, 8, 8, 16)
    assert (plan.block_b, plan.h_pad, plan.launch_directions) == (block_b, h_pad, launch_directions)
    resources = kernel_resources("lstm", plan, torch.bfloat16, backward=True)
    assert resources.shared_bytes <= LIMITS[90].shared_per_block
    assert plan.programs <= H100_SMS * programs_per_multiprocessor(resources, plan.num_warps, LIMITS[90])[0]
    assert gluon_backward_stages(plan.h_pad, plan.block_b) >= 1


def test_a_forced_gluon_forward_trains_with_the_plain_backward_where_gluons_does_not_fit():
    """H=512, B=256: the forward's 32-row blocks are co-resident (256 programs, two per SM); the
    backward's (one per SM) are not, so it is the plain kernels' (``auto``)."""
    assert plan_recurrence("lstm", 512, 256, torch.bfloat16, GLUON, H100_SMS).path == GLUON
    backward = plan_recurrence("lstm", 512, 256, torch.bfloat16, GLUON, H100_SMS, backward=True)
    assert backward == plan_recurrence("lstm", 512, 256, torch.bfloat16, "auto", H100_SMS, backward=True)
    assert backward.path != GLUON


@pytest.mark.parametrize("hidden, batch, stages", [(256, 16, 2), (768, 16, 6), (1024, 16, 8), (768, 64, 6),
                                                    (1024, 64, 6)])
def test_the_backward_keeps_as_many_copies_in_flight_as_shared_memory_holds(hidden, batch, stages):
    """All of a step's gate-gradient copies where they fit beside the reduction scratch (the
    weights are held in registers: H=768, B=16 keeps its 96 KiB of copies), else a ring of as many
    as fit (H=1024, B=64: 6 of 8 copies of 32 KiB); the model's bytes within the per-block limit."""
    plan = plan_recurrence("lstm", hidden, batch, torch.bfloat16, GLUON, H100_SMS, backward=True)
    copies = 4 * plan.h_pad // 64 // 8
    assert gluon_backward_stages(plan.h_pad, plan.block_b) == min(stages, copies) == stages
    one_more = gluon_backward_shared_bytes(plan.h_pad, plan.block_b) + 8 * plan.block_b * 64 * 2
    assert gluon_backward_shared_bytes(plan.h_pad, plan.block_b) + SHARED_FIXED <= LIMITS[90].shared_per_block
    assert stages == copies or one_more + SHARED_FIXED > LIMITS[90].shared_per_block


def test_the_backwards_host_side_lays_weights_and_gradients_out_as_the_kernel_reads_them():
    """The transposed weights (checkable without a GPU), in the exchange's producer-major columns:
    tile k of a program's 16 rows is producer k's, column ``c = 64k + 16g + j`` holding
    ``W_hh[g*H + 16k + j, unit]`` (zero for 16k + j >= H); the exchange's tiles are its columns;
    both descriptors' boxes are one copy of 8 tiles."""
    pytest.importorskip("triton.experimental.gluon.nvidia.hopper")
    from rnnbench.kernels.gluon_lstm_backward import column_tiles, descriptors, tile_box, transposed_weights

    hidden, batch = 320, 48
    plan = plan_recurrence("lstm", hidden, batch, torch.bfloat16, GLUON, H100_SMS, backward=True)
    w_hh = torch.randn(2, 4 * hidden, hidden).to(torch.bfloat16)
    tiles = column_tiles(transposed_weights(w_hh, plan.h_pad), 4 * plan.h_pad)
    assert tiles.shape == (4 * plan.h_pad // 64, 2 * hidden, 64)
    for direction, unit, column in [(0, 0, 0), (1, 17, 5), (0, 319, 383), (1, 200, 384 + 319), (0, 3, 3 * 384 + 100),
                                    (0, 7, 19 * 64 + 63), (1, 7, 20 * 64 + 17), (0, 300, 23 * 64 + 48)]:
        producer, (gate, j) = column // 64, divmod(column % 64, 16)
        row = 16 * producer + j
        expected = w_hh[direction, gate * hidden + row, unit] if row < hidden else 0.0
        assert tiles[column // 64, direction * hidden + unit, column % 64] == expected, (direction, unit, column)
    b_pad = plan.grid[1] * plan.block_b
    exchange = torch.randn(2, 2, b_pad, 4 * plan.h_pad).to(torch.bfloat16)
    gradients = column_tiles(exchange, 4 * plan.h_pad)
    assert gradients.data_ptr() == exchange.data_ptr()  # a view: TMA reads the buffer the kernel writes
    assert torch.equal(gradients[7], exchange.view(-1, 4 * plan.h_pad)[:, 448:512])
    weights, state = descriptors(plan, w_hh, exchange)
    assert (weights.block_shape, state.block_shape) == (tile_box(plan, 16), tile_box(plan, plan.block_b)) == (
        [8, 16, 64], [8, plan.block_b, 64])
    assert (state.shape, state.strides) == ([4 * plan.h_pad // 64, 4 * b_pad, 64], [64, 4 * plan.h_pad, 1])


def test_without_a_gpu_the_plan_is_not_checked_for_co_residency():
    # ahead-of-time compilation plans without multiprocessors, as the cooperative path does
    # the largest block that fits: 64 rows since the state's copies hold 4 tiles (222 KB; 32 with 8)
    assert plan_gluon("lstm", 768, 1000, torch.bfloat16).grid == (48, 16)
    with switches.state_copy_tiles(8):
        assert plan_gluon("lstm", 768, 1000, torch.bfloat16).grid == (48, 32)


def test_modules_accept_the_gluon_path_and_refuse_unknown_ones():
    assert TritonLSTM(8, 256, path="gluon").path == "gluon"
    with pytest.raises(ValueError, match="'gluon'"):
        TritonLSTM(8, 256, path="glue")


def test_the_triton_gluon_backend_is_skipped_with_the_planners_reason_where_gluon_cannot_run():
    """On this machine the kernels run in the interpreter, where Gluon cannot: the harness records
    the case as skipped with the reason (as for every forced path that cannot run a shape)."""
    from rnnbench.harness.cases import Case
    from rnnbench.harness.measure import measure_case

    case = Case("numerics", "random", "triton-gluon", "lstm", "cpu", "float16", 2, 3, 4, 256, "fwd", 0)
    rows = measure_case(case, "r")
    assert [row.status for row in rows] == ["skipped"]
    assert "path='gluon' cannot run this layer" in rows[0].note and "interpreter" in rows[0].note


@pytest.mark.parametrize("hidden, batch", [(768, 16), (320, 48), (1024, 64), (448, 16)])
def test_state_copies_are_whole_64_column_tiles_of_the_exchange(hidden, batch):
    """The host side of the Gluon kernel's 3-D state copies (checkable without a GPU): tile k of the
    view is columns 64k .. 64k+63 of every exchange row, and the copies cover every tile."""
    pytest.importorskip("triton.experimental.gluon.nvidia.hopper")
    from rnnbench.kernels.gluon_lstm import descriptors, state_box, state_tiles
    from rnnbench.kernels.plan import gluon_state_copies
    from rnnbench.kernels.switches import GLUON_TILES_PER_COPY

    plan = plan_recurrence("lstm", hidden, batch, torch.bfloat16, GLUON, H100_SMS)
    b_pad = plan.grid[1] * plan.block_b
    exchange = torch.randn(1, 2, b_pad, plan.h_pad).to(torch.bfloat16)
    tiles = state_tiles(exchange, plan.h_pad)
    rows = exchange.view(-1, plan.h_pad)
    assert tiles.data_ptr() == exchange.data_ptr()  # a view: TMA reads the buffer the kernels write
    for k in range(plan.h_pad // 64):
        assert torch.equal(tiles[k], rows[:, 64 * k:64 * (k + 1)])
    copies, per_copy = gluon_state_copies(plan.h_pad)
    assert state_box(plan) == [per_copy, plan.block_b, 64] and per_copy <= GLUON_TILES_PER_COPY
    assert per_copy & (per_copy - 1) == 0  # a TMA box dimension is a power of two
    assert (copies - 1) * per_copy < plan.h_pad // 64 <= copies * per_copy
    w_rows = torch.zeros(1, 4 * hidden, plan.h_pad, dtype=torch.bfloat16)
    _, state, inputs, input_weights = descriptors(plan, w_rows, exchange)
    assert (state.shape, state.strides, state.block_shape) == (
        [plan.h_pad // 64, 2 * b_pad, 64], [64, plan.h_pad, 1], state_box(plan))
    assert inputs is None and input_weights is None  # no fused input projection planned


def test_the_tiles_per_state_copy_come_from_the_environment_at_import_in_every_process():
    """``RNNBENCH_GLUON_TILES_PER_COPY=8`` estimates the boxes of 8 that ran on the GPUs up to
    7caf667 (to calibrate the model on them); anything but a TMA box's power of two is refused by
    name, in a fresh interpreter as the cost table's compiler processes are."""
    import os
    import subprocess
    import sys

    def imported(value: str) -> subprocess.CompletedProcess:
        environment = {**os.environ, switches.TILES_PER_COPY_ENV: value}
        return subprocess.run([sys.executable, "-c", "from rnnbench.kernels import plan, switches; "
                               "print(switches.GLUON_TILES_PER_COPY, plan.gluon_state_copies(1024))"],
                              env=environment, capture_output=True, text=True)

    assert imported("8").stdout.split() == ["8", "(2,", "8)"]  # the default (4): 4 copies of 4 tiles
    refused = imported("3")
    assert refused.returncode != 0
    assert "RNNBENCH_GLUON_TILES_PER_COPY must be one of 1, 2, 4, 8, got '3'" in refused.stderr


@pytest.mark.parametrize("hidden, batch, input_size", [(768, 16, 768), (320, 1, 192), (448, 16, 1024)])
def test_the_fused_inputs_copies_are_whole_64_column_tiles_of_each_steps_rows(hidden, batch, input_size):
    """The host side of the fused input projection's copies: tile k of the input's view is columns
    64k .. 64k+63 of every ``(t, b)`` row, a step's rows ``t*B + [0, B)`` one after another, and the
    descriptors are of the input and of ``W_ih``'s rows (box 16 x 64), with the copies covering
    every tile in powers of two."""
    pytest.importorskip("triton.experimental.gluon.nvidia.hopper")
    from rnnbench.kernels.gluon_lstm import descriptors, fused_input_arguments, input_box, input_tiles
    from rnnbench.kernels.plan import gluon_input_tiles
    from rnnbench.kernels.switches import GLUON_TILES_PER_COPY

    planned = plan_recurrence("lstm", hidden, batch, torch.bfloat16, GLUON, H100_SMS)
    plan = dataclasses.replace(planned, input_tiles=gluon_input_tiles(planned, input_size, torch.bfloat16, fuse=True))
    assert plan.input_tiles == input_size // 64
    x = torch.randn(5, batch, input_size).to(torch.bfloat16)
    tiles = input_tiles(x)
    assert tiles.data_ptr() == x.data_ptr() and tiles.shape == (input_size // 64, 5 * batch, 64)
    for k in range(input_size // 64):
        assert torch.equal(tiles[k].view(5, batch, 64), x[..., 64 * k:64 * (k + 1)])
    per_copy = input_box(plan)[0]
    assert per_copy & (per_copy - 1) == 0 and per_copy <= GLUON_TILES_PER_COPY and per_copy <= plan.input_tiles
    w_ih = torch.randn(1, 4 * hidden, input_size).to(torch.bfloat16)
    b_ih, b_hh = torch.randn(1, 4 * hidden), torch.randn(1, 4 * hidden)
    x_arg, w_arg, bias = fused_input_arguments(x, w_ih, b_ih.to(torch.bfloat16), b_hh.to(torch.bfloat16))
    assert bias.dtype == torch.float32 and bias.shape == (4 * hidden,)
    assert torch.equal(bias, (b_ih.to(torch.bfloat16).float() + b_hh.to(torch.bfloat16).float()).reshape(-1))
    exchange = torch.zeros(1, 2, plan.grid[1] * plan.block_b, plan.h_pad).to(torch.bfloat16)
    w_rows = torch.zeros(1, 4 * hidden, plan.h_pad, dtype=torch.bfloat16)
    *_, inputs, input_weights = descriptors(plan, w_rows, exchange, x_arg, w_arg)
    assert (inputs.shape, inputs.strides, inputs.block_shape) == (
        [input_size // 64, 5 * batch, 64], [64, input_size, 1], input_box(plan))
    assert (input_weights.shape, input_weights.block_shape) == ([4 * hidden, input_size], [16, 64])
    assert torch.equal(fused_input_arguments(x, w_ih, None, None)[2], torch.zeros(4 * hidden))


def test_the_poll_is_a_power_of_two_for_every_hidden_size_the_path_accepts():
    """The Gluon poll is one ``gl.arange(0, POLL)``, which must be a power of two (the plain kernels'
    96 flags at 65-96 hidden blocks did not compile there)."""
    accepted = 0
    for hidden in range(256, 2049, 16):
        try:
            plan = plan_recurrence("lstm", hidden, 16, torch.bfloat16, GLUON, H100_SMS)
        except PathUnavailable:
            continue
        accepted += 1
        assert plan.poll & (plan.poll - 1) == 0 and plan.grid[0] <= plan.poll < 2 * plan.grid[0], (hidden, plan)
    assert accepted >= (1344 - 256) // 16 + 1  # at least every size up to 84 hidden blocks


def test_the_launcher_refuses_a_sequence_without_steps():
    """The kernel prefetches step 0 before its loop; T=0 is refused before anything runs (the
    drop-in modules refuse it earlier, as torch.nn.LSTM does)."""
    pytest.importorskip("triton.experimental.gluon.nvidia.hopper")
    from rnnbench.kernels.gluon_lstm import run_forward

    plan = plan_recurrence("lstm", 768, 16, torch.bfloat16, GLUON, H100_SMS)
    with pytest.raises(ValueError, match="at least one time step, got T=0"):
        run_forward(plan, *[None] * 8, sizes=(0, 16, 768), training=False, has_lengths=False)
    from rnnbench.kernels.gluon_lstm_backward import run_backward

    plan = plan_recurrence("lstm", 768, 16, torch.bfloat16, GLUON, H100_SMS, backward=True)
    with pytest.raises(ValueError, match="the Gluon LSTM backward needs at least one time step, got T=0"):
        run_backward(plan, *[None] * 11, sizes=(0, 16, 768), has_lengths=False)


def test_the_smallest_co_resident_batch_block_is_chosen():
    """More, smaller programs: 16-row blocks where the grid still fits the SMs, larger ones only
    where it would not (with both directions in one launch first)."""
    assert plan_recurrence("lstm", 256, 64, torch.bfloat16, GLUON, H100_SMS).grid == (16, 4)
    assert plan_recurrence("lstm", 1024, 64, torch.bfloat16, GLUON, H100_SMS).block_b == 32
    both = plan_recurrence("lstm", 512, 32, torch.bfloat16, GLUON, H100_SMS, directions=2)
    assert (both.block_b, both.launch_directions) == (16, 2) and both.programs == 128


def test_a_gluon_copy_is_charged_its_whole_box():
    """The cost model's bytes per TMA copy (``UTMALDG``, whose box the SASS does not show): the
    forward's copies hold :func:`gluon_state_copies` tiles of ``(block_b, 64)`` (4 at H=768 and at
    H=256; 8 at H=768 in copies of 8 tiles), the backward's 8. Until 2026-11-26 the model charged every copy one tile, which put
    the Gluon forward at H=768, B=16 0.13 µs below what it now estimates (raw, Triton 3.6)."""
    from rnnbench.kernels.plan import gluon_copy_bytes

    tile = 16 * 64 * 2
    assert gluon_copy_bytes(plan_gluon("lstm", 768, 16, torch.bfloat16, H100_SMS), backward=False) == 4 * tile
    with switches.state_copy_tiles(8):
        assert gluon_copy_bytes(plan_gluon("lstm", 768, 16, torch.bfloat16, H100_SMS), backward=False) == 8 * tile
    assert gluon_copy_bytes(plan_gluon("lstm", 256, 16, torch.bfloat16, H100_SMS), backward=False) == 4 * tile
    wide = plan_gluon("lstm", 768, 64, torch.bfloat16, H100_SMS, backward=True)
    assert wide.block_b == 32 and gluon_copy_bytes(wide, backward=True) == 8 * 2 * tile


@needs_gluon
def test_the_input_projection_is_fused_only_where_switched_on_and_it_fits(monkeypatch):
    """:func:`rnnbench.kernels.plan.gluon_input_tiles`: off by default (``GLUON_FUSED_INPUT``, until a
    GPU has run it); switched on, the forward of 16-row batch blocks fuses an input of whole 64-column
    tiles where W_ih's slice and one step's input fit beside the rest and the grid (now a second
    warpgroup per program) stays co-resident; never the backward, 32-row blocks, H=1024, or an
    input size that is not a multiple of 64."""
    from rnnbench.kernels.plan import gluon_input_tiles

    assert plan_gluon("lstm", 768, 16, torch.bfloat16, H100_SMS, input_size=768).input_tiles == 0
    monkeypatch.setattr(switches, "GLUON_FUSED_INPUT", True)
    fused = plan_gluon("lstm", 768, 16, torch.bfloat16, H100_SMS, input_size=768)
    assert (fused.input_tiles, fused.resident_warps, fused.max_registers) == (12, 8, 255)
    assert fused.block_b == 16 and fused == dataclasses.replace(
        plan_gluon("lstm", 768, 16, torch.bfloat16, H100_SMS), input_tiles=12)
    resources = kernel_resources("lstm", fused, torch.bfloat16)
    assert resources.shared_bytes <= LIMITS[90].shared_per_block
    assert plan_recurrence("lstm", 768, 16, torch.bfloat16, "auto", H100_SMS, input_size=768).input_tiles == 12
    assert plan_recurrence("lstm", 512, 64, torch.float16, GLUON, H100_SMS, input_size=256).input_tiles == 4
    for hidden, batch, input_size, call in [
        (768, 16, None, {}),                     # the caller cannot fuse (lengths, a first-step term)
        (768, 16, 400, {}),                      # not whole 64-column tiles
        (768, 16, 768, dict(backward=True)),     # the backward has no input projection
        (768, 64, 768, {}),                      # 32-row blocks
        (1024, 16, 1024, {}),                    # W_ih's 128 KiB do not fit beside W_hh's slice
        (768, 16, 2048, {}),                     # nor a wide input's
    ]:
        plan = plan_gluon("lstm", hidden, batch, torch.bfloat16, H100_SMS, input_size=input_size, **call)
        assert plan.input_tiles == 0, (hidden, batch, input_size, call)
    assert plan_recurrence("lstm", 768, 16, torch.bfloat16, "cooperative", H100_SMS, input_size=768).input_tiles == 0
    # co-residency on fewer SMs: the 64 programs of H=256 B=64 (16-row blocks, as planned on an H100)
    # would fit 40 SMs two by two with 4 warps each, not with the second warpgroup's registers
    plain = plan_gluon("lstm", 256, 64, torch.bfloat16, H100_SMS)
    assert plain.programs == 64 and gluon_input_tiles(plain, 256, torch.bfloat16, multiprocessors=40) == 0
    assert gluon_input_tiles(plain, 256, torch.bfloat16, multiprocessors=H100_SMS) == 4


def test_the_lstm_layer_lets_its_forward_fuse_only_calls_whose_rows_run_every_step(monkeypatch):
    """The layer passes its input size to the planner (which may fuse the projection) only where
    every row runs every step and no first step has an extra term: not with lengths, not for an
    LSTM with projection (its folded ``h0 W_hh`` term), never for the backward."""
    from rnnbench.kernels import lstm as lstm_module

    seen = []
    real = lstm_module.make_plan

    def recording(*args, **kwargs):
        seen.append((kwargs.get("backward", False), kwargs.get("input_size")))
        return real(*args, **kwargs)

    monkeypatch.setattr(lstm_module, "make_plan", recording)
    x = torch.randn(3, 2, 8)
    layer = TritonLSTM(8, 16)
    layer(x)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor([3, 2]))
    layer(packed)
    TritonLSTM(8, 16, proj_size=4)(x)
    assert seen == [(False, 8), (False, None), (False, None)]
    seen.clear()
    layer(x.requires_grad_())[0].sum().backward()
    assert seen == [(False, 8), (True, None)]


@pytest.mark.parametrize("option, switch, context, default",
                         [("fuse_input", "GLUON_FUSED_INPUT", "fused_input_projection", False),
                          ("tagged_exchange", "GLUON_TAGGED_EXCHANGE", "tagged_exchange", "auto"),
                          ("overlap_projection", "GLUON_OVERLAPPED_PROJECTION", "overlapped_projection", False),
                          ("thread_poll", "GLUON_TAGGED_THREAD_POLL", "tagged_thread_poll", False),
                          ("local_gates", "GLUON_LOCAL_GATES", "local_gates", False)])
def test_a_module_option_switches_the_plan_for_its_own_calls_and_is_restored(monkeypatch, option, switch, context,
                                                                             default):
    """``TritonLSTM(fuse_input=...)``, ``TritonLSTM(tagged_exchange=...)``,
    ``TritonLSTM(overlap_projection=...)``, ``TritonLSTM(thread_poll=...)`` and
    ``TritonLSTM(local_gates=...)`` switch the plan's global (``GLUON_FUSED_INPUT``,
    ``GLUON_TAGGED_EXCHANGE``, ``GLUON_OVERLAPPED_PROJECTION``, ``GLUON_TAGGED_THREAD_POLL``,
    ``GLUON_LOCAL_GATES``) for their own calls only (None leaves it at its default: off, ``"auto"``,
    off, off and off),
    refuse anything but None/True/False by name (1 is not True), and the context manager restores
    the switch after its block, also when the block raises."""
    from rnnbench.kernels import lstm as lstm_module

    seen = []
    real = lstm_module.make_plan
    monkeypatch.setattr(lstm_module, "make_plan",
                        lambda *args, **kwargs: seen.append(getattr(switches, switch)) or real(*args, **kwargs))
    x = torch.randn(3, 2, 8)
    for value in (True, False, None):
        TritonLSTM(8, 16, **{option: value})(x)
    assert seen == [True, False, default] and getattr(switches, switch) == default
    for bad, shown in (("yes", "'yes'"), (1, "1")):
        with pytest.raises(ValueError, match=f"{option} must be None, True or False, got {shown}"):
            TritonLSTM(8, 16, **{option: bad})
    with pytest.raises(RuntimeError), getattr(switches, context)(True):
        assert getattr(switches, switch) is True
        raise RuntimeError
    assert getattr(switches, switch) == default


def test_the_tagged_backend_is_refused_with_the_reason_where_it_would_not_run_tagged():
    """The harness's ``triton-tagged`` backend runs only where the Gluon forward would exchange tagged
    words: in the interpreter (no Gluon path) it is :class:`Unsupported`, naming the path, the shape
    and the reason."""
    from rnnbench.harness.backends import _tagged_exchange_factory
    from rnnbench.harness.errors import Unsupported
    from rnnbench.harness.problems import Problem

    problem = Problem("lstm", 5, 2, 64, 64, seed=0)
    with pytest.raises(Unsupported, match=r"the tagged exchange does not run here \(the \w+ path, H=64, B=2\): "
                                          r"it is the Gluon forward's"):
        _tagged_exchange_factory(problem, "float32", "cpu")


@pytest.mark.parametrize("factory", ["_thread_poll_factory", "_local_gates_factory", "_inference_switches_factory"])
def test_the_tagged_variants_backends_are_refused_where_the_tagged_one_is(factory):
    """The harness's ``triton-thread-poll`` backend (the tagged exchange, its loader's threads polling
    alone), ``triton-local-gates`` (the same with its gates split inside each warp) and
    ``triton-inference-switches`` (those and the input projection beside the kernel) are
    :class:`Unsupported` with the tagged backend's reason where that one is."""
    from rnnbench.harness import backends
    from rnnbench.harness.errors import Unsupported
    from rnnbench.harness.problems import Problem

    problem = Problem("lstm", 5, 2, 64, 64, seed=0)
    with pytest.raises(Unsupported, match=r"the tagged exchange does not run here \(the \w+ path, H=64, B=2\): "
                                          r"it is the Gluon forward's"):
        getattr(backends, factory)(problem, "float32", "cpu")


def test_the_overlapped_backend_is_refused_with_the_reason_where_the_projection_runs_before_the_kernel():
    """The harness's ``triton-overlapped`` backend runs only where the layer would project beside the
    Gluon forward: in the interpreter (no Gluon path) it is :class:`Unsupported`, naming the path,
    the shape and the reason."""
    from rnnbench.harness.backends import _overlapped_projection_factory
    from rnnbench.harness.errors import Unsupported
    from rnnbench.harness.problems import Problem

    problem = Problem("lstm", 5, 2, 64, 64, seed=0)
    with pytest.raises(Unsupported, match=r"does not run beside the kernel here \(the \w+ path, H=64, B=2\): the \w+ "
                                          r"path does not poll"):
        _overlapped_projection_factory(problem, "float32", "cpu")


def test_the_fused_backend_is_refused_with_the_reason_where_the_plan_does_not_fuse():
    """The harness's ``triton-fused`` backend runs only where the plan fuses the input projection: in
    the interpreter (no Gluon path) it is :class:`Unsupported`, naming the path and the shape."""
    from rnnbench.harness.backends import _fused_input_factory
    from rnnbench.harness.errors import Unsupported
    from rnnbench.harness.problems import Problem

    problem = Problem("lstm", 5, 2, 64, 64, seed=0)
    with pytest.raises(Unsupported, match=r"the input projection is not fused on the \w+ path here \(H=64, B=2"):
        _fused_input_factory(problem, "float32", "cpu")


def test_the_gluon_forward_refuses_a_missing_gate_buffer_where_it_would_write_one():
    """``run_forward`` takes ``xg=None`` only for an inference forward with a fused input projection:
    a training forward writes its gates there (passing ``y`` instead would write past it), and the
    unfused forward reads xg."""
    pytest.importorskip("triton.experimental.gluon.nvidia.hopper")
    from rnnbench.kernels.gluon_lstm import run_forward

    planned = plan_recurrence("lstm", 768, 16, torch.bfloat16, GLUON, H100_SMS)
    fused = dataclasses.replace(planned, input_tiles=12)
    buffers = [torch.empty(0)] * 7
    inputs = (torch.empty(0), torch.empty(0), torch.empty(0))
    with pytest.raises(ValueError, match="xg may be None only for an inference forward .* training=True"):
        run_forward(fused, None, *buffers, (8, 16, 768), training=True, has_lengths=False, fused_input=inputs)
    with pytest.raises(ValueError, match="xg may be None only .* input_tiles=0"):
        run_forward(planned, None, *buffers, (8, 16, 768), training=False, has_lengths=False)
    with pytest.raises(ValueError, match="needs fused_input=.* and no lengths; got fused_input=None"):
        run_forward(fused, torch.empty(0), *buffers, (8, 16, 768), training=False, has_lengths=False)


@needs_gluon
def test_the_tagged_exchange_runs_where_its_loader_fits_and_as_switched():
    """The Gluon forward exchanges tagged words where :func:`tagged_exchange_refusal` finds nothing
    against it and the switch wants it: ``"auto"`` (the default) in inference forwards up to H=768,
    True at any H and in training too, False never; the switch takes nothing else. The refusal names each reason (the backward's plan, a fused
    input, 32-row blocks, more tiles of words than the loader holds, fewer tiles than loaders, state
    columns nobody writes, more programs than SMs)."""
    from rnnbench.kernels import plan as plan_module
    from rnnbench.kernels.plan import gluon_tagged_exchange, tagged_exchange_refusal
    from rnnbench.kernels.switches import tagged_exchange, tagged_loaders

    plan = plan_gluon("lstm", 768, 16, torch.bfloat16, H100_SMS)
    wide = plan_gluon("lstm", 1024, 16, torch.bfloat16, H100_SMS)
    assert tagged_exchange_refusal(plan, H100_SMS) is None and tagged_exchange_refusal(wide, H100_SMS) is None
    assert switches.GLUON_TAGGED_EXCHANGE == "auto" and plan_module.GLUON_TAGGED_AUTO_MAX_HIDDEN == 768
    assert gluon_tagged_exchange(plan) and not gluon_tagged_exchange(wide)
    assert not gluon_tagged_exchange(plan, training=True)  # "auto": the inference forward only
    with tagged_exchange(True):
        assert gluon_tagged_exchange(plan) and gluon_tagged_exchange(wide)
        assert gluon_tagged_exchange(plan, training=True)
        with tagged_exchange(None):  # None leaves the switch as it is
            assert gluon_tagged_exchange(wide)
    with tagged_exchange(False):
        assert not gluon_tagged_exchange(plan) and not gluon_tagged_exchange(wide)
    for bad in (1, 0, "on", "AUTO"):
        with pytest.raises(ValueError, match=f"must be one of .* or None, got {bad!r}"):
            tagged_exchange(bad)
    assert switches.GLUON_TAGGED_EXCHANGE == "auto"
    forward_only = "the Gluon forward's without a fused input projection"
    refusals = [
        (forward_only, plan_gluon("lstm", 768, 16, torch.bfloat16, H100_SMS, backward=True)),
        (forward_only, dataclasses.replace(plan, input_tiles=12)),
        ("16-row batch blocks (got 32)", dataclasses.replace(plan, block_b=32)),
        ("every one of the 320 state columns written", plan_gluon("lstm", 272, 16, torch.bfloat16, H100_SMS)),
        ("at most 16 tiles of words", plan_gluon("lstm", 1152, 16, torch.bfloat16, H100_SMS)),
    ]
    for reason, refused in refusals:
        message = tagged_exchange_refusal(refused)
        assert message is not None and reason in message, (reason, message)
        with tagged_exchange(True):
            assert not gluon_tagged_exchange(refused), reason
    with tagged_loaders(4), tagged_exchange(True):
        assert "4 loaders need a tile each (H from 256; got 3)" in tagged_exchange_refusal(
            dataclasses.replace(plan, h_pad=192))
        assert not gluon_tagged_exchange(dataclasses.replace(plan, h_pad=192))
    assert "one program per SM (48 programs on 32 SMs)" in tagged_exchange_refusal(plan, 32)


def test_the_mma_chains_are_switched_for_a_block_and_take_one_or_two():
    from rnnbench.kernels.switches import mma_chains

    with mma_chains(2):
        assert switches.GLUON_MMA_CHAINS == 2
        with mma_chains(None):
            assert switches.GLUON_MMA_CHAINS == 2
    assert switches.GLUON_MMA_CHAINS == 1
    for bad in (0, 3, "2"):
        with pytest.raises(ValueError, match=f"MMA chains must be one of \\(1, 2\\), got {bad!r}"):
            mma_chains(bad)


#: the tagged forward's boolean switches: (context manager, plan global, kernel constexpr, environment
#: variable's name in the plan module, the refusal's words)
BOOLEAN_SWITCHES = [("tagged_thread_poll", "GLUON_TAGGED_THREAD_POLL", "THREAD_POLL", "TAGGED_THREAD_POLL_ENV",
                     "thread polls are on or off"),
                    ("local_gates", "GLUON_LOCAL_GATES", "LOCAL_GATES", "LOCAL_GATES_ENV",
                     "gate split is on or off")]


@pytest.mark.parametrize("context, switch, constexpr, _, refusal", BOOLEAN_SWITCHES)
def test_a_tagged_switch_holds_for_its_block_and_takes_only_a_bool(context, switch, constexpr, _, refusal):
    """:func:`rnnbench.kernels.switches.tagged_thread_poll` and :func:`rnnbench.kernels.switches.local_gates`:
    on within the block (and for the kernel's constexpr only where it runs tagged), None leaves it,
    off again after, anything but a bool refused by name."""
    from rnnbench.kernels import gluon_lstm

    switched = getattr(switches, context)
    assert getattr(switches, switch) is False
    with switched(True):
        assert getattr(switches, switch) is True
        assert gluon_lstm._switch_constexprs(True)[constexpr] and not gluon_lstm._switch_constexprs(False)[constexpr]
        with switched(None):
            assert getattr(switches, switch) is True
    assert getattr(switches, switch) is False and not gluon_lstm._switch_constexprs(True)[constexpr]
    for bad in (1, "on", 0):
        with pytest.raises(ValueError, match=f"{refusal} \\(a bool\\), got {bad!r}"):
            switched(bad)


@pytest.mark.parametrize("context, _, __, variable, ___", BOOLEAN_SWITCHES)
def test_a_tagged_switch_reaches_spawned_compilers_through_the_environment(monkeypatch, context, _, __, variable,
                                                                           ___):
    """The switch sets its environment variable (``RNNBENCH_TAGGED_THREAD_POLL``,
    ``RNNBENCH_LOCAL_GATES``) within its block (restored after), and the module reads it at import:
    what a spawned AOT compiler sees."""
    import os


    name, switched = getattr(switches, variable), getattr(switches, context)
    monkeypatch.delenv(name, raising=False)
    with switched(True):
        assert os.environ[name] == "on"
        with switched(False):
            assert os.environ[name] == "off"
        assert os.environ[name] == "on"
    assert name not in os.environ
    settings = {"on": True, "off": False}
    assert switches._from_environment(name, settings, False) is False
    monkeypatch.setenv(name, "on")
    assert switches._from_environment(name, settings, False) is True
    monkeypatch.setenv(name, "yes")
    with pytest.raises(ValueError, match=f"{name} must be one of on, off, got 'yes'"):
        switches._from_environment(name, settings, False)


def test_the_tagged_poll_delay_is_switched_for_a_block_and_takes_only_nanoseconds_in_range():
    from rnnbench.kernels.switches import MAX_TAGGED_POLL_DELAY_NS, tagged_poll_delay

    with tagged_poll_delay(150):
        assert switches.GLUON_TAGGED_POLL_DELAY_NS == 150
        with tagged_poll_delay(None):
            assert switches.GLUON_TAGGED_POLL_DELAY_NS == 150
    assert switches.GLUON_TAGGED_POLL_DELAY_NS == 0
    for bad in (-1, MAX_TAGGED_POLL_DELAY_NS + 1, 1.5, True, "100"):
        with pytest.raises(ValueError, match=f"an int of nanoseconds from 0 to {MAX_TAGGED_POLL_DELAY_NS}, got"):
            tagged_poll_delay(bad)


@pytest.mark.parametrize("value, expected", [("on", "True"), ("off", "False"), ("auto", "'auto'"), (None, "'auto'")])
def test_the_environment_sets_the_tagged_exchange_at_import(value, expected):
    """``RNNBENCH_TAGGED_EXCHANGE`` (what scripts/gpu-session.sh sets to ``off`` where the exchange's GPU
    tests fail) sets ``switches.GLUON_TAGGED_EXCHANGE`` at import; anything else is refused by name."""
    import os
    import subprocess
    import sys

    env = {key: item for key, item in os.environ.items() if key != "RNNBENCH_TAGGED_EXCHANGE"}
    if value is not None:
        env["RNNBENCH_TAGGED_EXCHANGE"] = value
    code = "from rnnbench.kernels import switches; print(repr(switches.GLUON_TAGGED_EXCHANGE))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and done.stdout.strip() == expected, done.stderr
    env["RNNBENCH_TAGGED_EXCHANGE"] = "yes"
    refused = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert refused.returncode != 0 and "RNNBENCH_TAGGED_EXCHANGE must be one of on, off, auto, got 'yes'" in refused.stderr


@needs_gluon
def test_auto_takes_the_tagged_gluon_forward_in_inference_where_it_beat_the_plain_kernel():
    """At H=256 B<=16 ``auto`` runs the plain cooperative forward (faster than the Gluon one with its
    barrier), but an inference forward (``inference=True``: no backward, no lengths) takes the Gluon
    one where it exchanges tagged words (H200: 1.47 against the plain 1.82 µs a step); not with the
    exchange off, not where the exchange is refused (H=272: state columns nobody writes), not the
    training forward, and the backward's plan is unchanged."""
    from rnnbench.kernels.plan import plan_recurrence
    from rnnbench.kernels.switches import tagged_exchange

    def path(hidden, batch=16, **options):
        return plan_recurrence("lstm", hidden, batch, torch.bfloat16, "auto", H100_SMS, arch=90, **options).path

    assert path(256) == "cooperative" and path(256, inference=True) == "gluon"
    assert path(256, batch=1, inference=True) == "gluon" and path(256, batch=64, inference=True) == "gluon"
    with tagged_exchange(False):
        assert path(256, inference=True) == "cooperative"
    assert path(272, inference=True) == "cooperative"
    assert path(256, backward=True) == path(256, backward=True, inference=True)
    assert path(768, inference=True) == path(768) == "gluon"


def test_the_backwards_copies_stream_only_where_switched_on_and_every_copy_has_its_own_stage(monkeypatch):
    """:func:`~rnnbench.kernels.plan.gluon_streamed_copies`: off by default (never run on a GPU);
    switched on (:func:`~rnnbench.kernels.switches.streamed_copies`, which the compiler processes see
    through ``RNNBENCH_BACKWARD_STREAMED``), it holds where every copy of a step has a stage of its
    own (H=768 and 1024 in 16-row blocks) and not where copies share a ring (H=1024 in 32-row
    blocks: 6 of 8 stages); anything but a bool is refused by name."""
    from rnnbench.kernels.plan import gluon_backward_layout, gluon_streamed_copies
    from rnnbench.kernels.switches import BACKWARD_STREAMED_ENV, streamed_copies

    monkeypatch.delenv(BACKWARD_STREAMED_ENV, raising=False)
    narrow = plan_gluon("lstm", 768, 16, torch.bfloat16, 132, backward=True)
    wide = plan_gluon("lstm", 1024, 64, torch.bfloat16, 132, backward=True)
    assert not switches.GLUON_BACKWARD_STREAMED and not gluon_streamed_copies(narrow)
    with streamed_copies(True):
        assert gluon_streamed_copies(narrow) and gluon_streamed_copies(
            plan_gluon("lstm", 1024, 16, torch.bfloat16, 132, backward=True))
        assert os.environ[BACKWARD_STREAMED_ENV] == "on"
        copies = gluon_backward_layout(wide.h_pad, wide.block_b)[0]
        assert wide.block_b == 32 and gluon_backward_stages(wide.h_pad, wide.block_b) < copies
        assert not gluon_streamed_copies(wide)
    assert not gluon_streamed_copies(narrow) and BACKWARD_STREAMED_ENV not in os.environ
    with pytest.raises(ValueError, match="on or off .* got 'yes'"):
        with streamed_copies("yes"):
            pass


def test_auto_takes_the_tagged_exchange_in_training_only_where_switched_on(monkeypatch):
    """:func:`~rnnbench.kernels.plan.gluon_tagged_exchange` with ``training=True``: under ``"auto"``
    the training forward keeps its grid barrier (never timed tagged) unless
    :func:`~rnnbench.kernels.switches.tagged_training` is on, and then only where the inference forward
    would be tagged too (not above H=768); anything but a bool is refused by name."""
    from rnnbench.kernels.plan import gluon_tagged_exchange
    from rnnbench.kernels.switches import TAGGED_TRAINING_ENV, tagged_exchange, tagged_training

    monkeypatch.delenv(TAGGED_TRAINING_ENV, raising=False)
    anchor, large = (plan_gluon("lstm", hidden, 16, torch.bfloat16, 132) for hidden in (768, 1024))
    with tagged_exchange("auto"):
        assert gluon_tagged_exchange(anchor) and not gluon_tagged_exchange(anchor, training=True)
        with tagged_training(True):
            assert gluon_tagged_exchange(anchor, training=True) and os.environ[TAGGED_TRAINING_ENV] == "on"
            assert not gluon_tagged_exchange(large, training=True)
        assert not gluon_tagged_exchange(anchor, training=True) and TAGGED_TRAINING_ENV not in os.environ
    with pytest.raises(ValueError, match="on or off .* got 1"):
        with tagged_training(1):
            pass
