"""The step-ablation benchmark (:mod:`rnnbench.kernels.step_bench`): every variant computes what it
claims (one program in the interpreter, or on the GPU, against float64), compiles for sm_90 with the
cost model's estimate, and refuses bad input; timing itself needs a GPU (test_kernels_gpu.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import KERNEL_DEVICE
from rnnbench.kernels import step_bench
from rnnbench.kernels import switches
from rnnbench.kernels.plan import GATES, PathUnavailable, plan_recurrence
from rnnbench.kernels.primitives import FLAG_SLOTS
from rnnbench.kernels.tagged_exchange import decode_tagged, word_tags


def _reference(variant, w, state0, other0, hidden_size, block_h, gates, steps, programs=1):
    """Float64 slots after ``steps`` steps of ``variant`` run by the first ``programs`` programs
    (units ``[0, programs * block_h)``)."""
    slots = [other0.copy(), state0.copy()]  # slot 1 is read by step 0
    units = np.arange(min(programs * block_h, hidden_size))
    summed = sum(w[g * hidden_size + units] for g in range(gates))  # (units, H): the gates of each unit added
    for s in range(steps):
        previous = slots[(s + 1) % 2]
        if variant.mma and variant.load:
            pre = previous[:, :hidden_size] @ summed.T
        elif variant.mma:  # the step's offset starts every gate's accumulator
            pre = state0[:, :hidden_size] @ summed.T + gates * (s % 7) * 0.125
        elif variant.load:
            pre = gates * np.repeat(previous.mean(axis=1, keepdims=True), len(units), axis=1)
        else:
            pre = np.full((previous.shape[0], len(units)), gates * (s % 7) * 0.125)
        slots[s % 2][:, units] = np.tanh(pre)
    return slots


@pytest.mark.parametrize("variant", list(step_bench.VARIANTS.values()), ids=lambda v: v.name)
# 20 and 24: one reduction slice (a 2-D dot); 200 and 100: split-K over several chunks (and, with
# Triton 3.6's layouts, the LSTM's gate rows cut in two: M_SPLIT)
@pytest.mark.parametrize("cell, hidden_size", [("lstm", 20), ("rnn", 24), ("lstm", 200), ("rnn", 100)])
def test_variant_computes_its_step(variant, cell, hidden_size, exact_fp32):
    plan = plan_recurrence(cell, hidden_size, 3, torch.float32, "cooperative")
    batch, steps = 3, 5
    w, exchange, sync = step_bench.ablation_buffers(plan, hidden_size, batch, torch.float32, KERNEL_DEVICE, seed=7,
                                                    tagged=variant.tagged)
    state = decode_tagged(exchange, torch.float32) if variant.tagged else exchange
    w64 = w.double().cpu().numpy()[:, :hidden_size]
    other0, state0 = (slot.double().cpu().numpy() for slot in state)
    expected = _reference(variant, w64, state0, other0, hidden_size, plan.block_h, GATES[cell], steps)
    step_bench.run_ablation(plan, variant, hidden_size, steps, (w, exchange, sync), programs=1)
    state = decode_tagged(exchange, torch.float32) if variant.tagged else exchange
    got = state.double().cpu().numpy()
    for slot in (0, 1):
        np.testing.assert_allclose(got[slot], expected[slot], rtol=1e-5, atol=1e-5, err_msg=f"slot {slot}")
    if variant.sync:
        assert int(sync[0]) == steps, "program 0's flag counts its arrivals"
    if variant.tagged:  # the last two steps' tags in their slots, on the columns program 0 writes
        tags = word_tags(exchange).cpu()
        assert (tags[(steps - 1) % 2, :, :plan.block_h] == steps).all() and (tags[steps % 2, :, :plan.block_h] == steps - 1).all()
        assert int(sync[FLAG_SLOTS.value]) == 0, "no wait timed out"


def test_run_ablation_refuses_more_programs_than_the_layout_has():
    plan = plan_recurrence("lstm", 20, 3, torch.float32, "cooperative")
    buffers = step_bench.ablation_buffers(plan, 20, 3, torch.float32, KERNEL_DEVICE)
    with pytest.raises(ValueError, match=r"programs must be in \[1, 3\].*got 4"):
        step_bench.run_ablation(plan, step_bench.VARIANTS["full"], 20, 2, buffers, programs=4)


def test_buffers_of_a_batch_wider_than_one_block_fill_the_first_block():
    """The ablation kernel runs the first batch block's programs, so a batch of several blocks (B=64
    in 32-row blocks) fills that block's rows and leaves the state shape one block high."""
    plan = plan_recurrence("lstm", 1024, 64, torch.bfloat16, "cooperative", 132, arch=90)
    assert (plan.block_b, plan.grid[1]) == (32, 2)
    _, exchange, _ = step_bench.ablation_buffers(plan, 1024, 64, torch.bfloat16, "cpu")
    assert exchange.shape == (2, 32, plan.h_pad)
    assert bool((exchange[:, :, :1024] != 0).all()) and not bool(exchange[:, :, 1024:].any())


def test_main_without_gpu_says_so(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the benchmark would run")
    assert step_bench.main(["--out", str(tmp_path / "x.csv")]) == 2
    assert "--estimate" in capsys.readouterr().err


def test_shapes_are_parsed_and_bad_ones_named(tmp_path, capsys):
    assert step_bench.parse_shapes("lstm:768:16, rnn:256:64") == (("lstm", 768, 16), ("rnn", 256, 64))
    for bad in ("lstm:768", "gru:768:16", "lstm:0:16", "lstm:768:x", ","):
        with pytest.raises(ValueError, match="--shapes"):
            step_bench.parse_shapes(bad)
    with pytest.raises(SystemExit):
        step_bench.main(["--out", str(tmp_path / "x.csv"), "--shapes", "lstm:768"])
    assert "'lstm:768' is not CELL:H:B" in capsys.readouterr().err


def test_main_refuses_too_few_repeats(tmp_path):
    with pytest.raises(SystemExit):
        step_bench.main(["--out", str(tmp_path / "x.csv"), "--repeats", "2"])


def test_estimate_compiles_every_variant_for_sm90():
    pytest.importorskip("triton.backends.nvidia")
    rows = step_bench.estimate([("lstm", 768, 16)], torch.bfloat16, 90)
    variants = [row["variant"] for row in rows]
    # the *_wide_rows variants and the wide register weights are the planned ones at B <= 16: not
    # estimated twice; the unsynchronised Gluon forward is a measurement only (no AOT configuration
    # compiles it)
    assert variants == list(step_bench.VARIANTS) + [name for name, real in step_bench.REAL_PATHS.items()
                                                    if "wide" not in name and real.grid_sync]
    by_name = {row["variant"]: row["us_per_step"] for row in rows}
    assert all(value > 0 for value in by_name.values()), by_name
    # the parts cost less than the whole they are taken from
    assert by_name["load"] < by_name["full"] and by_name["sync"] < by_name["full"], by_name
    assert rows[0]["programs"] == 96 and rows[0]["block_b"] == 16, rows[0]
    by_row = {row["variant"]: row for row in rows}
    assert by_row["real_gluon"]["programs"] == 48 and by_row["real_gluon"]["block_h"] == 16  # the Gluon layout
    assert by_row["real_bwd"]["block_h"] == 16 and by_row["real_bwd"]["programs"] == 48  # the backward's
    # an acquire poll of 48 (Gluon) or 96 (plain, 4 warps) producers is one vector load per thread, one
    # round trip, and needs no fence after it, so it beats the relaxed poll, as the H200 measured for
    # both kernels (reports/h200/f1c2560, acd6756; the plain one then polled in three scalar acquires)
    assert rows[0]["num_warps"] == 4 and by_row["real"]["num_warps"] == 4, rows[0]
    assert by_name["real_gluon"] < by_name["real_gluon_relaxed"], by_name
    # weight tiles held in registers: the MMAs no longer wait for the weights' shared-memory bandwidth
    assert by_row["real_gluon"]["t_mma"] < by_row["real_gluon_shared_weights"]["t_mma"], by_row
    assert by_name["real_gluon"] < by_name["real_gluon_shared_weights"], by_name
    assert by_name["real"] < by_name["real_relaxed"] and by_name["full"] < by_name["full_relaxed"], by_name
    # the tagged exchange's loader warps are on the step's chain, as a term of their own (its loads of
    # the state's compact words and the one reload the model assumes, where the barrier kernel has its
    # TMA copies and its poll), which the barrier kernel does not have
    assert by_row["real_gluon_tagged"]["t_loader"] > 0 == by_row["real_gluon"]["t_loader"], by_row
    assert by_row["real_gluon_tagged"]["t_loader"] > by_row["real_gluon"]["t_l2_load"] > 0, by_row
    assert by_row["real_gluon_tagged"]["t_grid_sync"] < by_row["real_gluon"]["t_grid_sync"], by_row
    # the delayed loader's pause (its NANOSLEEP) is charged to the loader, nominally
    pause = by_row["real_gluon_tagged_delayed"]["t_loader"] - by_row["real_gluon_tagged"]["t_loader"]
    assert pause == pytest.approx(step_bench.TAGGED_POLL_DELAY_NS * 1e-3, abs=2e-3), by_row
    longer = by_row["real_gluon_tagged_delayed_300"]["t_loader"] - by_row["real_gluon_tagged"]["t_loader"]
    assert longer == pytest.approx(step_bench.TAGGED_LONG_POLL_DELAY_NS * 1e-3, abs=2e-3), by_row
    # the tagged rows also say what a step costs when its first load finds the state complete (no
    # reload, a few hundred loader instructions fewer); the other kernels have no such estimate
    tagged, delayed = by_row["real_gluon_tagged"], by_row["real_gluon_tagged_delayed"]
    assert 0 < tagged["first_load_complete_us"] < tagged["us_per_step"] - 0.3, tagged
    assert delayed["first_load_complete_us"] - tagged["first_load_complete_us"] == pytest.approx(0.15, abs=2e-3)
    assert by_row["real_gluon"]["first_load_complete_us"] == "" and by_row["full"]["first_load_complete_us"] == ""


def test_estimate_times_the_wide_batch_blocks_beside_the_narrow_ones_at_b64():
    """At LSTM H=256 B=64 the planner runs four 16-row batch blocks (the B=16 layout, one program
    per SM); ``real_wide_rows`` keeps the 32-row blocks it ran before, so one run times both, and
    the model already rates the narrow layout faster."""
    pytest.importorskip("triton.backends.nvidia")
    rows = {row["variant"]: row for row in step_bench.estimate([("lstm", 256, 64)], torch.bfloat16, 90)}
    real, wide = rows[step_bench.REAL], rows["real_wide_rows"]
    assert (real["block_b"], real["block_h"], real["programs"]) == (16, 8, 128)
    assert (wide["block_b"], wide["block_h"], wide["programs"]) == (32, 16, 32)
    assert real["us_per_step"] < wide["us_per_step"], (real, wide)
    backward, wide_backward = rows["real_bwd"], rows["real_bwd_wide_rows"]
    assert (backward["block_b"], backward["programs"], wide_backward["block_b"], wide_backward["programs"]) == (16, 64, 32, 32)
    assert backward["us_per_step"] < wide_backward["us_per_step"], (backward, wide_backward)


def test_the_mma_variants_multiply_inside_the_time_loop():
    """The variants that hold the state in registers change their accumulator every step: with a
    loop-invariant product the compiler moved every MMA out of the time loop (the H200 timed 0.05 µs)."""
    pytest.importorskip("triton.backends.nvidia")
    from rnnbench.kernels.aot import compile_all
    from rnnbench.kernels.sass import count, parse, step_path

    tasks = [("lstm", 768, 16, "bfloat16", variant) for variant in ("mma", "mma_sync")]
    for task, sass in zip(tasks, compile_all(90, tasks, job=step_bench.variant_sass)):
        path = step_path(parse(sass))
        # the 48 HMMA of a step: 3 blocks x 4 slices x 4 tiles
        assert path.in_loop and count(path).mma == 48, (task, path.in_loop, count(path).mma)


def test_estimate_has_no_gluon_row_where_gluon_cannot_run():
    pytest.importorskip("triton.backends.nvidia")
    rows = step_bench.estimate([("lstm", 128, 16)], torch.bfloat16, 90)  # below the Gluon path's H=256
    assert not [row["variant"] for row in rows if "gluon" in row["variant"]]
    assert {step_bench.REAL, "real_relaxed", "real_bwd", "real_bwd_relaxed"} <= {row["variant"] for row in rows}


@pytest.mark.cuda
@pytest.mark.parametrize("variant", ["full", "full_relaxed", "tagged", "tagged_stale"])
def test_cooperative_grid_computes_the_recurrence_on_gpu(variant):
    """The goal shape's whole grid (96 programs, bf16) with the grid barrier, its poll acquire or
    relaxed-then-fenced, or with the tagged exchange and no barrier: every step reads the state all
    programs wrote, so a program running ahead or reading a stale line shows as an error."""
    plan = plan_recurrence("lstm", 768, 16, torch.bfloat16, "cooperative", torch.cuda.get_device_properties(0).multi_processor_count)
    steps = 9
    chosen = step_bench.VARIANTS[variant]
    w, exchange, sync = step_bench.ablation_buffers(plan, 768, 16, torch.bfloat16, "cuda", seed=3, tagged=chosen.tagged)
    state = decode_tagged(exchange, torch.bfloat16) if chosen.tagged else exchange
    w64 = w.double().cpu().numpy()[:, :768]
    other0, state0 = (slot.double().cpu().numpy() for slot in state)
    step_bench.run_ablation(plan, chosen, 768, steps, (w, exchange, sync))
    expected = _reference(chosen, w64, state0, other0, 768, plan.block_h, 4, steps, plan.grid[0])
    state = decode_tagged(exchange, torch.bfloat16) if chosen.tagged else exchange
    got = state.double().cpu().numpy()
    last = (steps - 1) % 2
    # bf16 state rounding compounds over the steps: 3e-2 absolute on values in [-1, 1]
    np.testing.assert_allclose(got[last], expected[last], atol=3e-2)
    if chosen.tagged:
        assert (word_tags(exchange[last]).cpu() == steps).all(), "every word of the last step carries its tag"
    else:
        assert (sync[: plan.grid[0]].cpu() == steps).all(), "every program arrived once per step"


@pytest.mark.cuda
@pytest.mark.parametrize("variant", ["tagged", "tagged_stale"])
def test_a_tagged_wait_for_words_nobody_writes_times_out_on_gpu(variant):
    """One program of the 96 the layout has, waiting for every column (``WRITTEN`` of the whole
    grid): step 1 never sees the other programs' words, so its wait gives up after the timeout and
    says at which step, every later wait gives up after one poll, and the launch ends."""
    from rnnbench.kernels.launch import barrier_status_message

    plan = plan_recurrence("lstm", 768, 16, torch.bfloat16, "cooperative", torch.cuda.get_device_properties(0).multi_processor_count)
    tagged = step_bench.VARIANTS[variant]
    w, words, sync = step_bench.ablation_buffers(plan, 768, 16, torch.bfloat16, "cuda", tagged=True)
    step_bench.step_ablation_kernel[(1, 1)](w, words, sync, 5, 768, w.stride(0),
                                            **step_bench._constexprs(plan, tagged, torch.bfloat16),
                                            num_warps=plan.num_warps, num_stages=1)
    torch.cuda.synchronize()
    assert int(sync[FLAG_SLOTS.value]) == 1, "step 1 (tag 1 in slot 0) is the first that waits for another program"
    message = barrier_status_message(sync[FLAG_SLOTS.value].reshape(1).cpu(), "the tagged ablation")
    assert message is not None and "at step 1" in message


@pytest.mark.cuda
def test_measure_yields_timed_rows_on_gpu(capsys):
    step_bench.warm([("lstm", 256, 16)], torch.bfloat16, jobs=2)
    # the LSTM's real paths include Gluon's; the never-run (deferred) ones are not warmed up
    kernels = len(step_bench.VARIANTS) + len(step_bench.REAL_PATHS) - len(step_bench.DEFERRED)
    assert f"compiled {kernels} kernels" in capsys.readouterr().out
    # 500 steps a launch: with 50, a variant of one program (about 0.9 us a step on an H200) differed
    # by 45 us between the two launches of a slope, within their jitter, and came out negative
    # the never-run (deferred) kernels are left to the session's stages of their own
    rows = list(step_bench.measure([("lstm", 256, 16)], torch.bfloat16, steps=500, repeats=5, sweep=(1,),
                                   deferred=False))
    variants = {row["variant"] for row in rows}
    assert set(step_bench.VARIANTS) | {step_bench.REAL} <= variants, variants
    assert all(row["us_per_step"] > 0 and row["q25_us"] <= row["q75_us"] for row in rows), rows


def test_real_kernels_hold_the_weight_tiles_their_variant_names():
    """``real_gluon`` runs the plan's tiles in registers (16-row blocks only), ``real_gluon_shared_weights``
    none, ``real_gluon_wide_register_weights`` a 16-row block's count in 32-row blocks too; the plain
    kernels hold none whatever the variant; an unknown choice is refused by name."""
    def tiles(name: str, hidden_size: int, batch: int) -> int:
        kernel = step_bench.REAL_PATHS[name]
        planned = plan_recurrence("lstm", hidden_size, batch, torch.bfloat16, kernel.path, 132, arch=90)
        return kernel.plan(planned).register_tiles

    assert [tiles(name, 768, 16) for name in ("real_gluon", "real_gluon_shared_weights",
                                               "real_gluon_wide_register_weights")] == [6, 0, 6]
    assert [tiles(name, 768, 64) for name in ("real_gluon", "real_gluon_shared_weights",
                                               "real_gluon_wide_register_weights")] == [0, 0, 6]
    assert tiles("real", 768, 16) == 0
    with pytest.raises(ValueError, match="register_weights must be one of .* got 'some'"):
        step_bench.RealKernel("gluon", "acquire", True, "fwd", register_weights="some")


def test_the_fused_input_variant_fuses_where_it_fits_and_is_timed_last():
    """``real_gluon_fused_input`` runs the Gluon forward with its input projection fused (input size =
    H_PAD) where :func:`rnnbench.kernels.plan.gluon_input_tiles` allows, else the plan of
    ``real_gluon`` (then not timed twice); as a never-run kernel it is deferred: not in a shape's
    first pass, only in the pass after every shape's, and never launched by the warm-up."""
    def input_tiles(name: str, hidden_size: int, batch: int) -> int:
        kernel = step_bench.REAL_PATHS[name]
        planned = plan_recurrence("lstm", hidden_size, batch, torch.bfloat16, kernel.path, 132, arch=90)
        return kernel.plan(planned, torch.bfloat16).input_tiles

    assert [input_tiles("real_gluon_fused_input", h, b) for h, b in ((768, 16), (256, 64), (768, 64), (1024, 16))] == [
        12, 4, 0, 0]
    assert input_tiles("real_gluon", 768, 16) == 0
    plan = plan_recurrence("lstm", 768, 16, torch.bfloat16, "cooperative", 132)
    first = [name for name, _ in step_bench._runs(plan, "lstm", (1, 12))]
    later = [name for name, _ in step_bench._runs(plan, "lstm", (1, 12), deferred=True)]
    assert "real_gluon_fused_input" not in first and later == list(step_bench.DEFERRED) == [
        "real_gluon_fused_input", "real_gluon_tagged", "real_gluon_tagged_delayed", "real_gluon_tagged_delayed_300",
        "real_gluon_tagged_four_loaders", "real_gluon_tagged_two_chains", "real_gluon_tagged_groups_4",
        "real_gluon_tagged_thread_poll", "real_gluon_tagged_thread_poll_delayed", "real_gluon_tagged_local_gates",
        "real_gluon_tagged_thread_poll_local_gates", "real_gluon_bwd_streamed", "real_gluon_tagged_train",
        "real_first_warp", "real_bwd_first_warp", "real_gluon_first_warp", "real_gluon_bwd_first_warp",
        "real_gluon_train_first_warp"]
    assert step_bench._runs(plan, "rnn", (1, 12), deferred=True) == []
    # a never-run kernel whose GPU tests failed is left out of the deferred pass, the others stay
    kept = [name for name, _ in step_bench._runs(plan, "lstm", (1, 12), True, ("real_gluon_tagged",
                                                                              "real_gluon_tagged_delayed",
                                                                              "real_gluon_tagged_delayed_300",
                                                                              "real_gluon_tagged_four_loaders",
                                                                              "real_gluon_tagged_two_chains",
                                                                              "real_gluon_tagged_groups_4",
                                                                              "real_gluon_tagged_thread_poll",
                                                                              "real_gluon_tagged_thread_poll_delayed",
                                                                              "real_gluon_tagged_local_gates",
                                                                              "real_gluon_tagged_thread_poll_local_gates",
                                                                              "real_gluon_tagged_train"))]
    assert kept == ["real_gluon_fused_input", "real_gluon_bwd_streamed", "real_first_warp", "real_bwd_first_warp",
                    "real_gluon_first_warp", "real_gluon_bwd_first_warp", "real_gluon_train_first_warp"]


def test_main_leaves_out_only_never_run_variants(tmp_path):
    """``--leave-out`` names deferred variants; anything else is refused before any work."""
    with pytest.raises(SystemExit):
        step_bench.main(["--out", str(tmp_path / "x.csv"), "--leave-out", "real_gluon_tagged,real_gluon"])
    assert not (tmp_path / "x.csv").exists()


def test_the_copies_variant_copies_the_state_in_8_tile_boxes_and_only_where_that_differs():
    """``real_gluon_copies_8``: the Gluon forward's state in copies of 8 tiles within its context (the
    plan's rule, 4, outside it again); where the state has 4 tiles only (H=256) it is the planned
    kernel, not timed twice; a box that is no power of two up to 8 is refused."""
    from rnnbench.kernels.plan import gluon_state_copies
    from rnnbench.kernels.switches import state_copy_tiles

    kernel, planned_kernel = step_bench.REAL_PATHS["real_gluon_copies_8"], step_bench.REAL_PATHS["real_gluon"]
    plan = kernel.plan(plan_recurrence("lstm", 768, 16, torch.bfloat16, "gluon", 132, arch=90))
    assert step_bench._switched(kernel, plan) == ((2, 8), False, 0, 0, 0, 0, False, False, False)
    assert step_bench._switched(planned_kernel, plan) == ((3, 4), False, 0, 0, 0, 0, False, False, False)
    assert gluon_state_copies(768) == (3, 4)  # restored after the context
    small = kernel.plan(plan_recurrence("lstm", 256, 16, torch.bfloat16, "gluon", 132, arch=90))
    assert step_bench._switched(kernel, small) == step_bench._switched(planned_kernel, small) == (
        (1, 4), False, 0, 0, 0, 0, False, False, False)
    backward = plan_recurrence("lstm", 768, 16, torch.bfloat16, "gluon", 132, arch=90, backward=True)
    assert step_bench._switched(step_bench.REAL_PATHS["real_gluon_bwd"], backward) == (False, False)
    assert step_bench._switched(step_bench.REAL_PATHS["real_gluon_bwd_streamed"], backward) == (True, False)
    assert step_bench._switched(step_bench.REAL_PATHS["real_bwd"], backward) is None
    for bad in (3, 16, 0):
        with pytest.raises(ValueError, match=f"a power of two from 1 to 8 .* got {bad}"):
            with state_copy_tiles(bad):
                pass


def test_the_fused_input_variant_keeps_its_grid_co_resident():
    """Fused, a program takes a whole SM (two warpgroups' registers): where the planner's 16-row grid
    of H=512 B=64 (128 programs, two per SM unfused) does not fit 114 SMs (an H100 PCIe), the variant
    runs unfused; on 132 it fuses."""
    kernel = step_bench.REAL_PATHS["real_gluon_fused_input"]
    planned = plan_recurrence("lstm", 512, 64, torch.bfloat16, kernel.path, 132, arch=90)
    assert planned.programs == 128
    assert kernel.plan(planned, torch.bfloat16, 132).input_tiles == 8
    assert kernel.plan(planned, torch.bfloat16, 114).input_tiles == 0


def test_the_goal_shapes_never_run_variants_come_right_after_its_others_the_rest_after_every_shape():
    shapes = [("lstm", 768, 16), ("lstm", 256, 64), ("rnn", 768, 16)]
    assert step_bench.schedule(shapes) == [(False, shapes[0]), (True, shapes[0]), (False, shapes[1]),
                                           (False, shapes[2]), (True, shapes[1]), (True, shapes[2])]
    assert step_bench.schedule(shapes, deferred=False) == [(False, shape) for shape in shapes]
    assert step_bench.schedule(shapes[:1]) == [(False, shapes[0]), (True, shapes[0])]


def test_the_tagged_variant_runs_the_tagged_exchange_where_it_can_and_is_timed_last():
    """``real_gluon_tagged``: the Gluon forward with the tagged exchange within its context (a kernel
    of its own: not the planned one's key), refused with the reason where it cannot run (32-row
    blocks, more programs than SMs), and deferred as a never-run kernel."""
    from rnnbench.kernels import plan as plan_module

    kernel, planned_kernel = step_bench.REAL_PATHS["real_gluon_tagged"], step_bench.REAL_PATHS["real_gluon"]
    planned = plan_recurrence("lstm", 768, 16, torch.bfloat16, "gluon", 132, arch=90)
    plan = kernel.plan(planned, torch.bfloat16, 132)
    assert plan == planned_kernel.plan(planned, torch.bfloat16, 132)
    assert step_bench._switched(kernel, plan) == ((3, 4), True, 0, 1, 1, 1, False, False, False) != \
        step_bench._switched(planned_kernel, plan)
    # real_gluon runs the grid barrier though the planner would take the exchange here
    assert plan_module.gluon_tagged_exchange(plan) and step_bench._switched(planned_kernel, plan) == (
        (3, 4), False, 0, 0, 0, 0, False, False, False)
    delayed = step_bench.REAL_PATHS["real_gluon_tagged_delayed"]
    assert step_bench._switched(delayed, plan) == ((3, 4), True, step_bench.TAGGED_POLL_DELAY_NS, 1, 1, 1, False, False, False)
    longer = step_bench.REAL_PATHS["real_gluon_tagged_delayed_300"]
    assert step_bench._switched(longer, plan) == ((3, 4), True, step_bench.TAGGED_LONG_POLL_DELAY_NS, 1, 1, 1, False,
                                                  False, False)
    four_loaders = step_bench.REAL_PATHS["real_gluon_tagged_four_loaders"]
    assert step_bench._switched(four_loaders, plan) == ((3, 4), True, 0, 4, 1, 1, False, False, False)
    two_chains = step_bench.REAL_PATHS["real_gluon_tagged_two_chains"]
    assert step_bench._switched(two_chains, plan) == ((3, 4), True, 0, 1, 2, 1, False, False, False)
    groups = step_bench.REAL_PATHS["real_gluon_tagged_groups_4"]
    assert step_bench._switched(groups, plan) == ((3, 4), True, 0, 1, 1, 4, False, False, False)
    thread_poll = step_bench.REAL_PATHS["real_gluon_tagged_thread_poll"]
    assert step_bench._switched(thread_poll, plan) == ((3, 4), True, 0, 1, 1, 1, True, False, False)
    thread_poll_delayed = step_bench.REAL_PATHS["real_gluon_tagged_thread_poll_delayed"]
    assert step_bench._switched(thread_poll_delayed, plan) == ((3, 4), True, step_bench.TAGGED_POLL_DELAY_NS, 1, 1, 1,
                                                               True, False, False)
    local = step_bench.REAL_PATHS["real_gluon_tagged_local_gates"]
    assert step_bench._switched(local, plan) == ((3, 4), True, 0, 1, 1, 1, False, True, False)
    both = step_bench.REAL_PATHS["real_gluon_tagged_thread_poll_local_gates"]
    assert step_bench._switched(both, plan) == ((3, 4), True, 0, 1, 1, 1, True, True, False)
    assert switches.GLUON_LOCAL_GATES is False  # restored after the context
    assert switches.GLUON_TAGGED_THREAD_POLL is False  # restored after the context
    assert switches.GLUON_TAGGED_GROUPS == 1  # restored after the context
    assert switches.GLUON_MMA_CHAINS == 1  # restored after the context
    assert switches.GLUON_TAGGED_LOADERS == 1  # restored after the context
    assert switches.GLUON_TAGGED_POLL_DELAY_NS == 0  # restored after the context
    assert switches.GLUON_TAGGED_EXCHANGE == "auto"  # restored after the context
    with pytest.raises(PathUnavailable, match="one program per SM \\(48 programs on 32 SMs\\)"):
        kernel.plan(planned, torch.bfloat16, 32)
    with pytest.raises(PathUnavailable, match="16-row batch blocks \\(got 32\\)"):
        kernel.plan(replace(planned, block_b=32), torch.bfloat16, 132)
    assert "real_gluon_tagged" in step_bench.DEFERRED


def test_only_the_gluon_forward_without_a_fused_input_is_timed_in_training():
    """``real_launcher(direction="fwd_train")`` (``real_gluon_train``, ``real_gluon_tagged_train``)
    launches the Gluon training forward; any other kernel, or a direction it does not know, is
    refused by name before anything is allocated."""
    plain = plan_recurrence("lstm", 768, 16, torch.bfloat16, "cooperative", 132, arch=90)
    with pytest.raises(ValueError, match="fwd_train.* got 'fwd_train' for the cooperative kernel"):
        step_bench.real_launcher(plain, 768, 16, torch.bfloat16, 8, direction="fwd_train")
    with pytest.raises(ValueError, match="got 'sideways'"):
        step_bench.real_launcher(plain, 768, 16, torch.bfloat16, 8, direction="sideways")
    assert [step_bench.REAL_PATHS[name].direction for name in ("real_gluon_train", "real_gluon_tagged_train")] == [
        "fwd_train", "fwd_train"]
