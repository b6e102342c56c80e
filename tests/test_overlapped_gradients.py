"""The LSTM backward's GEMMs beside its recurrence (:mod:`rnnbench.kernels.overlapped_gradients`):
the float32 sums of the weight-gradient GEMM (:func:`rnnbench.kernels.weight_grad.accumulate_weight_grad`),
the ranges' GEMMs against the GEMMs after the recurrence, where the layer refuses the overlap, the
layer's backward with it (on CPU in order, the interpreter's recurrence first), and on a GPU the
layer with it against without, eagerly and in a CUDA graph, and the wait's timeout.

The interpreter's bfloat16 products are not exact (its dot is not the GPU's), so the CPU tests take
float32 and float16 (as ``tests/test_weight_grad.py`` does)."""

import dataclasses
import re
import subprocess
import sys

import pytest
import torch

from conftest import KERNEL_DEVICE, replayed_in_graph
from rnnbench.kernels import lstm as lstm_module
from rnnbench.kernels.overlapped_gradients import OverlappedGradients
from rnnbench.kernels.plan import GLUON, OVERLAPPED_GRADIENT_SUMS_SHARE, overlapped_gradients_refusal, plan_gluon
from rnnbench.kernels.switches import overlapped_gradients
from rnnbench.kernels.projections import parameter_and_input_grads
from rnnbench.kernels.weight_grad import accumulate_weight_grad

#: absolute tolerance of a sum of products of unit normals, relative to the sum's size (float32
#: accumulation in both; a 16-bit result rounded once more)
SUM_TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}
#: on a GPU bfloat16 too
DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if KERNEL_DEVICE == "cuda" else [])


def _close(got: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    scale = max(1.0, expected.double().abs().max().item())
    torch.testing.assert_close(got.double(), expected.double(), rtol=0, atol=SUM_TOLERANCE[dtype] * scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows, first_rows", [(37, 3), (0, 5), (1100, 0)], ids=["rows", "first-only", "split"])
def test_the_float32_sum_adds_the_products_to_what_it_held(dtype, rows, first_rows):
    """``total += first_a^T first_b + a^T b`` against float64: a few rows, only the first step's
    (K = 0), and enough rows for a split reduction (its partial sums added to the total)."""
    from rnnbench.kernels import weight_grad as wg

    torch.manual_seed(0)
    M, N = 24, 20
    a, b = torch.randn(rows, M, dtype=dtype, device=KERNEL_DEVICE), torch.randn(rows, N, dtype=dtype, device=KERNEL_DEVICE)
    first = (torch.randn(first_rows, M, dtype=dtype, device=KERNEL_DEVICE),
             torch.randn(first_rows, N, dtype=dtype, device=KERNEL_DEVICE))
    total = torch.randn(M, N, device=KERNEL_DEVICE)
    expected = total.double() + a.double().t() @ b.double() + first[0].double().t() @ first[1].double()
    accumulate_weight_grad(total, a, b, first=first if first_rows else None)
    _close(total, expected, dtype)
    splits, _ = wg.split_count(M, N, rows, wg.blocks_for(dtype, N), wg.multiprocessors_of(total.device))
    assert (splits > 1) == (rows == 1100)


def test_the_float32_sum_refuses_other_sums_and_mixed_operands():
    a, b = torch.randn(4, 8, dtype=torch.float16), torch.randn(4, 6, dtype=torch.float16)
    with pytest.raises(ValueError, match="the sum must be float32, got torch.float16"):
        accumulate_weight_grad(torch.zeros(8, 6, dtype=torch.float16), a, b)
    with pytest.raises(ValueError, match="share one dtype"):
        accumulate_weight_grad(torch.zeros(8, 6), a, b.float())
    with pytest.raises(ValueError, match="b must be a 2-D tensor of 6 contiguous columns, got shape \\(4, 5\\)"):
        accumulate_weight_grad(torch.zeros(8, 6), a, b[:, :5])


def _finished(steps: int, producers: int) -> torch.Tensor | None:
    """A synchronisation row whose ``producers`` flags say every one of ``steps`` steps is finished
    (a GPU's second stream waits on it), None without CUDA (no wait)."""
    if KERNEL_DEVICE != "cuda":
        return None
    from rnnbench.kernels.launch import reset_sync
    from rnnbench.kernels.primitives import SYNC_ROW

    sync = reset_sync(torch.empty(1, 1, int(SYNC_ROW.value), dtype=torch.int32, device="cuda"), producers)
    sync[..., :producers] = steps
    return sync


def _operands(steps: int, dtype: torch.dtype, batch: int = 3, inputs: int = 20, hidden: int = 24):
    torch.manual_seed(1)
    make = lambda *shape: torch.randn(*shape, dtype=dtype, device=KERNEL_DEVICE)  # noqa: E731
    return make(1, steps, batch, 4 * hidden), make(steps, batch, inputs), make(1, batch, hidden), \
        make(steps, batch, hidden), make(1, 4 * hidden, inputs)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("steps", [45, 8, 1])
def test_the_ranges_gemms_give_the_gemms_after_the_recurrence(dtype, steps):
    """On CPU in order (no second stream, no wait), on a GPU on the second stream after waits on
    flags already there: ``dx`` as the one GEMM (each row's product; exactly on CPU), ``dW_ih`` and
    ``dW_hh`` and ``db`` to float32 rounding (other summation order), rounded once to ``dtype``;
    the ranges are :func:`chunk_ranges`' last first."""
    dpre, x, h0, y, w_ih = _operands(steps, dtype)
    dx, dw_ih, dw_hh, db = parameter_and_input_grads(dpre, x, h0, y, w_ih, True, True)
    overlap = OverlappedGradients(dpre, x, h0, y, w_ih, True, True, 8)
    assert overlap.ranges == {45: [(32, 45), (16, 32), (8, 16), (0, 8)], 8: [(0, 8)], 1: [(0, 1)]}[steps]
    overlap.start()
    overlap.finish(_finished(steps, 4), 4)
    got_ih, got_hh = overlap.weight_grads(dtype)
    assert got_ih.dtype == got_hh.dtype == dtype and overlap.dw_hh.dtype == torch.float32
    if KERNEL_DEVICE == "cpu":
        torch.testing.assert_close(overlap.dx, dx, rtol=0, atol=0)
    _close(overlap.dx, dx, dtype)
    _close(got_ih, dw_ih, dtype)
    _close(got_hh, dw_hh, dtype)
    _close(overlap.bias_grad(dtype), db, dtype)


def test_without_dx_or_bias_none_is_computed_and_one_direction_only():
    dpre, x, h0, y, w_ih = _operands(10, torch.float32)
    overlap = OverlappedGradients(dpre, x, h0, y, w_ih, False, False, 4)
    overlap.start()
    overlap.finish(_finished(10, 1), 1)
    assert overlap.dx is None and overlap.bias_grad(torch.float32) is None
    with pytest.raises(ValueError, match="one direction, got 2"):
        OverlappedGradients(dpre.expand(2, -1, -1, -1), x, h0, y, w_ih, True, True, 4)


def test_where_the_layer_refuses_to_overlap_its_gradients():
    """One launch with grid-barrier flags (Gluon or cooperative), one direction, no lengths, 16-bit,
    and float32 sums at most a quarter of the gate gradients (T * B >= 16 H at input size H)."""
    plan = plan_gluon("lstm", 768, 16, torch.bfloat16, 132, backward=True)
    anchor = (1024, 16, 768, 768)
    assert plan.path == GLUON and overlapped_gradients_refusal(plan, torch.bfloat16, anchor, False) is None
    assert overlapped_gradients_refusal(dataclasses.replace(plan, path="cooperative"), torch.float16, anchor, False) is None
    every = overlapped_gradients_refusal(dataclasses.replace(plan, path="stepwise", directions=2), torch.float32,
                                         (1024, 1, 1024, 1024), True)
    for reason in ("the stepwise backward has no grid-barrier flags", "2 directions", "lengths", "float32 (16-bit",
                   "float32 sums of the weight gradients (32.0 MiB) above 25% of the gate gradients (8.0 MiB at "
                   "T=1024, B=1)"):
        assert reason in every, every
    # the sums' share: T * B = 16 H is the last batch that takes it at input size H
    assert OVERLAPPED_GRADIENT_SUMS_SHARE == 0.25
    assert overlapped_gradients_refusal(plan, torch.bfloat16, (768, 16, 768, 768), False) is None
    assert "float32 sums" in overlapped_gradients_refusal(plan, torch.bfloat16, (767, 16, 768, 768), False)
    # a quarter of the SMs free: the anchor's 48 programs leave 84 of 132; H=1024 B=64's 128 leave 4
    assert overlapped_gradients_refusal(plan, torch.bfloat16, anchor, False, 132) is None
    wide = plan_gluon("lstm", 1024, 64, torch.bfloat16, 132, backward=True)
    assert overlapped_gradients_refusal(wide, torch.bfloat16, (1024, 64, 1024, 1024), False) is None
    assert overlapped_gradients_refusal(wide, torch.bfloat16, (1024, 64, 1024, 1024), False, 132) == \
        "128 programs leave 4 of 132 SMs free, under 25%"


def test_the_switch_refuses_anything_but_a_boolean_or_none():
    with pytest.raises(ValueError, match="must be True, False or None, got 'on'"):
        with overlapped_gradients("on"):
            pass
    from rnnbench.kernels import TritonLSTM

    with pytest.raises(ValueError, match="overlap_gradients must be None, True or False, got 1"):
        TritonLSTM(4, 8, overlap_gradients=1)


def test_the_environment_sets_the_switch_and_names_a_bad_value():
    code = "from rnnbench.kernels import switches; print(switches.OVERLAPPED_GRADIENTS)"
    for value, printed in (("on", "True"),):  # "off" is the default's value: one child fewer
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**__import__("os").environ, "RNNBENCH_OVERLAPPED_GRADIENTS": value})
        assert run.stdout.strip() == printed, run.stderr
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**__import__("os").environ, "RNNBENCH_OVERLAPPED_GRADIENTS": "yes"})
    assert run.returncode != 0 and "RNNBENCH_OVERLAPPED_GRADIENTS must be one of on, off, got 'yes'" in run.stderr


def test_the_wait_and_the_float32_sum_compile_for_sm_90_without_spills():
    """Ahead of time, as launched: the wait (one warp, 48 and 256 flags) and the weight-gradient
    GEMM adding to a float32 sum (both 16-bit tile shapes)."""
    from rnnbench.kernels import overlapped_gradients as og
    from rnnbench.kernels import weight_grad as wg
    from rnnbench.kernels.aot import compile_all

    for poll, (registers, spill, shared, sass) in zip((64, 256), compile_all(90, [64, 256], workers=2,
                                                                          job=og.compiled_resources)):
        assert spill == 0 and registers <= 255, (poll, registers, spill)
        # one sleep a poll and one acquire fence after it, whatever the flags a thread holds
        assert sass.count("NANOSLEEP") == 1 and sass.count("MEMBAR.ALL.GPU") == 1, (poll, sass)
        assert sass.count("LDG.E.STRONG.GPU") >= 2 and re.search(r"(RED|ATOM)G?\.E\.MAX", sass), poll
    configs = [("bfloat16", 64, True), ("float16", 768, True)]
    for config, (registers, spill, shared) in zip(configs, compile_all(90, configs, workers=2, job=wg.compiled_resources)):
        assert spill == 0 and registers * 32 * wg.blocks_for(getattr(torch, config[0]), config[1]).num_warps <= 65536, \
            (config, registers, spill)


@pytest.mark.interpreter
@pytest.mark.skipif(KERNEL_DEVICE != "cpu", reason="the interpreter's layer: CPU tensors")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_the_interpreted_layer_with_the_overlap_gives_the_same_gradients(monkeypatch, dtype):
    """The layer's backward through :class:`OverlappedGradients` (its CUDA-only refusal lifted, so the
    ranges run in order after the interpreter's recurrence, three of them: 4-step chunks at T=10)
    against the GEMMs after it: every gradient, at B=7 H=16; the choice is made at the forward, inside
    ``TritonLSTM``'s switches, not at the backward, after them. float32 operands take cuBLAS's GEMMs
    without the overlap and the Triton GEMM with it (the refusal lifted for the test)."""
    from rnnbench.kernels import TritonLSTM

    finished = []
    original = OverlappedGradients.finish
    monkeypatch.setattr(lstm_module, "overlap_refusal", lambda device: None)
    monkeypatch.setattr(lstm_module, "overlapped_gradients_refusal", lambda *args: None)
    monkeypatch.setattr(lstm_module.plan_module, "OVERLAPPED_CHUNK_STEPS", 4)
    monkeypatch.setattr(OverlappedGradients, "finish", lambda self, *args: (finished.append(self.ranges),
                                                                            original(self, *args)))
    torch.manual_seed(0)
    after = TritonLSTM(12, 16, path="cooperative").to(dtype)
    beside = TritonLSTM(12, 16, path="cooperative", overlap_gradients=True).to(dtype)
    beside.load_state_dict(after.state_dict())
    x = torch.randn(10, 7, 12, dtype=dtype)
    results = []
    for layer in (after, beside):
        inputs = x.clone().requires_grad_()
        y, (h_n, c_n) = layer(inputs)
        (y.float().sum() + h_n.float().square().sum() + c_n.float().sum()).backward()
        results.append([inputs.grad] + [p.grad for p in layer.parameters()])
    assert finished == [[(8, 10), (4, 8), (0, 4)]]  # the layer's backward took the overlap, once
    for expected, got in zip(*results):
        _close(got, expected, dtype)


@pytest.mark.cuda
@pytest.mark.overlapped_gradients
@pytest.mark.parametrize("path, hidden, steps", [("gluon", 768, 800), ("gluon", 256, 300), ("cooperative", 256, 300),
                                                 ("gluon", 320, 20)])
def test_on_gpu_the_overlapped_gradients_give_the_layers_gradients_eagerly_and_in_a_graph(monkeypatch, path, hidden,
                                                                                        steps):
    """The LSTM (B=16, input 40, bf16) with its backward's GEMMs beside the recurrence against the
    same layer's GEMMs after it: ``dh0`` and ``dc0`` equal (the same recurrence), ``dx`` and the
    weight and bias gradients to their rounding (the ranges' GEMMs are other cuBLAS calls, the
    weight gradients sum in another order); the overlap ran (a spy on its ``finish``); no wait
    timed out; and replayed from a CUDA graph, the same gradients again. ``steps`` 800 and 300:
    ranges of 288, 256, 128, 64, 32 and 32 (or 44, 128, 64, 32, 32) steps, each behind a wait
    (T * B >= 16 H); 20: one range, after the recurrence (its refusal of a call that short lifted)."""
    from rnnbench.kernels import TritonLSTM
    from rnnbench.kernels.launch import check_barriers
    from rnnbench.kernels.plan import gluon_available

    if path == "gluon" and (torch.cuda.get_device_capability() != (9, 0) or not gluon_available()):
        pytest.skip("the Gluon backward needs sm_90 and a Triton with Gluon's Hopper API")
    if steps * 16 < 16 * hidden:
        monkeypatch.setattr(lstm_module, "overlapped_gradients_refusal", lambda *args: None)
    finished = []
    original = OverlappedGradients.finish
    monkeypatch.setattr(OverlappedGradients, "finish", lambda self, *args: (finished.append(self.ranges),
                                                                            original(self, *args)))
    torch.manual_seed(0)
    after = TritonLSTM(40, hidden, path=path).to("cuda", torch.bfloat16)
    beside = TritonLSTM(40, hidden, path=path, overlap_gradients=True).to("cuda", torch.bfloat16)
    beside.load_state_dict(after.state_dict())
    x = torch.randn(steps, 16, 40, device="cuda", dtype=torch.bfloat16)
    h0 = torch.randn(1, 16, hidden, device="cuda", dtype=torch.bfloat16)
    c0 = torch.randn(1, 16, hidden, device="cuda", dtype=torch.bfloat16)
    weights = torch.randn(steps, 16, hidden, device="cuda", dtype=torch.bfloat16)

    def gradients(layer):
        leaves = [t.clone().requires_grad_() for t in (x, h0, c0)]
        layer.zero_grad(set_to_none=True)
        y, (h_n, c_n) = layer(leaves[0], (leaves[1], leaves[2]))
        ((y.float() * weights.float()).sum() + h_n.float().sum() + c_n.float().square().sum()).backward()
        return [leaf.grad for leaf in leaves] + [p.grad.clone() for p in layer.parameters()]

    expected = gradients(after)
    assert finished == []
    got = gradients(beside)
    check_barriers(wait=True)
    assert len(finished) == 1 and finished[0][-1] == (0, min(steps, 32)), finished
    for index, (a, b) in enumerate(zip(expected, got)):
        if index in (1, 2):  # dh0, dc0: the same recurrence
            torch.testing.assert_close(b, a, rtol=0, atol=0)
        else:
            torch.testing.assert_close(b.float(), a.float(), rtol=2e-2, atol=2e-2 * max(1.0, a.float().abs().max().item()))
    for a, b in zip(got, replayed_in_graph(lambda: gradients(beside))):
        torch.testing.assert_close(b, a, rtol=0, atol=0)


@pytest.mark.cuda
@pytest.mark.overlapped_gradients
def test_on_gpu_a_wait_for_steps_no_program_finishes_times_out_and_is_reported():
    """A wait on flags that never reach its target gives up after the grid barrier's timeout of no
    progress (not forever), sets the status word to its target, and the check raises; a wait on
    flags already there returns at once."""
    import time

    from rnnbench.kernels.launch import BarrierTimeout, _watch_barriers, check_barriers, reset_sync
    from rnnbench.kernels.overlapped_gradients import wait_for_steps
    from rnnbench.kernels.primitives import FLAG_SLOTS, SYNC_ROW

    sync = reset_sync(torch.empty(1, 2, int(SYNC_ROW.value), dtype=torch.int32, device="cuda"), 5)
    sync[..., :5] = 7
    wait_for_steps(sync, 5, 7)
    torch.cuda.synchronize()
    assert sync[..., int(FLAG_SLOTS.value)].tolist() == [[0, 0]]
    sync[0, 1, 3] = 6  # one program of the second row one step short
    start = time.perf_counter()
    wait_for_steps(sync, 5, 7)
    torch.cuda.synchronize()
    assert 1.5 < time.perf_counter() - start < 30
    assert sync[..., int(FLAG_SLOTS.value)].tolist() == [[0, 7]]
    _watch_barriers(sync, "the test's wait")
    with pytest.raises(BarrierTimeout):
        check_barriers(wait=True)


@pytest.mark.skipif(KERNEL_DEVICE != "cpu", reason="the interpreter's plans: CPU tensors")
def test_the_backend_is_refused_with_the_reason_where_the_gemms_run_after_the_recurrence():
    """The harness's ``triton-overlapped-grads`` runs only where the layer's backward would take the
    overlap: a short call (T * B below 16 H) in float32 is :class:`Unsupported`, naming the path,
    the shape and the reasons; so is the interpreter's persistent path at small H (no grid barrier)."""
    from rnnbench.harness.backends import _overlapped_gradients_factory
    from rnnbench.harness.errors import Unsupported
    from rnnbench.harness.problems import Problem

    with pytest.raises(Unsupported, match=r"do not run beside its recurrence here \(the \w+ path, H=64, B=2\): .*"
                                          r"float32 \(16-bit operands only\).*float32 sums"):
        _overlapped_gradients_factory(Problem("lstm", 5, 2, 64, 64, seed=0), "float32", "cpu")
    with pytest.raises(Unsupported, match=r"\(the persistent path, H=16, B=16\): the persistent backward has no "
                                          r"grid-barrier flags to wait for$"):
        _overlapped_gradients_factory(Problem("lstm", 64, 16, 16, 16, seed=0), "float16", "cpu")
