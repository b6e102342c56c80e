"""The input projection run beside the Gluon forward (:mod:`rnnbench.kernels.overlapped_projection`):
its GEMMs' step ranges, its projection and flags (on KERNEL_DEVICE: the flags' kernel in the
interpreter without a GPU), where the layer refuses it, the kernel's checks of its arguments, and
on a GPU the LSTM with it against the one without and against float64, eagerly and in a CUDA graph."""

import dataclasses

import pytest
import torch

from conftest import KERNEL_DEVICE, replayed_in_graph
from rnnbench.kernels.overlapped_projection import OverlappedProjection, chunk_ranges, overlap_refusal
from rnnbench.kernels.plan import GLUON, overlapped_projection_refusal, plan_gluon
from rnnbench.kernels.switches import overlapped_projection
from rnnbench.kernels.projections import project_inputs


def test_the_gemms_cover_every_step_once_in_doubling_ranges_of_whole_chunks():
    assert chunk_ranges(1024, 32) == [(0, 32), (32, 64), (64, 128), (128, 256), (256, 512), (512, 1024)]
    assert chunk_ranges(100, 32) == [(0, 32), (32, 64), (64, 100)]
    assert chunk_ranges(5, 32) == [(0, 5)] and chunk_ranges(1, 1) == [(0, 1)]
    for steps in (1, 31, 33, 64, 1000):
        ranges = chunk_ranges(steps, 8)
        assert ranges[0][0] == 0 and ranges[-1][1] == steps
        assert all(a[1] == b[0] and b[0] % 8 == 0 for a, b in zip(ranges, ranges[1:]))
    for bad in ((0, 32), (10, 0)):
        with pytest.raises(ValueError, match="must be positive"):
            chunk_ranges(*bad)


@pytest.mark.parametrize("steps, bias", [(70, True), (9, False), (1, True)])
def test_the_chunked_projection_is_the_whole_ones_and_sets_every_flag(steps, bias):
    """``start`` then ``finish``: the GEMMs of :func:`chunk_ranges` give the one GEMM's ``xg`` (float32:
    exactly, a row's sum does not depend on how many rows the GEMM has here) and set one flag per
    chunk of 8 steps, after the first GEMM only the first's."""
    torch.manual_seed(0)
    x = torch.randn(steps, 3, 5, device=KERNEL_DEVICE)
    w_ih = torch.randn(1, 12, 5, device=KERNEL_DEVICE)
    b_ih, b_hh = (torch.randn(1, 12, device=KERNEL_DEVICE), torch.randn(1, 12, device=KERNEL_DEVICE)) if bias else (None, None)
    projection = OverlappedProjection(x, w_ih, b_ih, b_hh, 8)
    projection.start()
    if KERNEL_DEVICE == "cpu":  # in order on the host: the first GEMM's chunk alone is announced
        assert projection.flags.tolist() == [1] + [0] * (len(projection.flags) - 1)
    projection.finish()
    if KERNEL_DEVICE == "cuda":
        torch.cuda.synchronize()
    assert projection.flags.tolist() == [1] * -(-steps // 8)
    torch.testing.assert_close(projection.xg, project_inputs(x, w_ih, b_ih, b_hh), rtol=1e-5, atol=1e-5)


def test_the_overlapped_projection_runs_one_direction():
    x = torch.randn(4, 2, 3)
    with pytest.raises(ValueError, match="one direction, got 2"):
        OverlappedProjection(x, torch.randn(2, 8, 3), None, None, 8)


def test_where_the_layer_refuses_to_overlap_the_projection():
    """Only the Gluon forward polls the flags, forwards in one direction, without lengths, a first-step
    term or a fused projection; and only on CUDA, with streams that run together."""
    plan = plan_gluon("lstm", 768, 16, torch.bfloat16, 132)
    assert plan.path == GLUON and overlapped_projection_refusal(plan, False, False) is None
    both = overlapped_projection_refusal(dataclasses.replace(plan, directions=2, input_tiles=12), True, True)
    for reason in ("2 directions", "fused", "lengths", "first step"):
        assert reason in both, both
    plain = dataclasses.replace(plan, path="cooperative")
    assert "the cooperative path does not poll" in overlapped_projection_refusal(plain, False, False)
    assert "a cpu tensor" in overlap_refusal(torch.device("cpu"))


def test_cuda_launch_blocking_refuses_the_overlap(monkeypatch):
    """Serialised streams would run the kernel before the GEMMs launched after it: refused."""
    monkeypatch.setenv("CUDA_LAUNCH_BLOCKING", "1")
    assert "CUDA_LAUNCH_BLOCKING" in overlap_refusal(torch.device("cuda"))
    monkeypatch.setenv("CUDA_LAUNCH_BLOCKING", "0")
    assert overlap_refusal(torch.device("cuda")) is None


def test_the_switch_refuses_anything_but_a_boolean_or_none():
    with pytest.raises(ValueError, match="must be True, False or None, got 'on'"):
        with overlapped_projection("on"):
            pass


def test_the_interpreted_layer_keeps_its_projection_before_the_kernel(monkeypatch):
    """On CPU (no Gluon path, no second stream) the switch changes nothing: the one GEMM runs."""
    from rnnbench.kernels import TritonLSTM
    from rnnbench.kernels import lstm as lstm_module

    made = []
    monkeypatch.setattr(lstm_module, "OverlappedProjection", lambda *args: made.append(args))
    torch.manual_seed(0)
    layer = TritonLSTM(8, 16)
    x = torch.randn(3, 2, 8)
    expected = layer(x)[0]
    with torch.no_grad():
        got = TritonLSTM(8, 16, overlap_projection=True)
        got.load_state_dict(layer.state_dict())
        torch.testing.assert_close(got(x)[0], expected)
    assert made == []


def test_the_gluon_forward_checks_the_projections_flags():
    """Checked before anything is launched (so on any machine): a flag per chunk, int32, and one
    direction without lengths."""
    pytest.importorskip("triton.experimental.gluon.nvidia.hopper")
    from rnnbench.kernels.gluon_lstm import run_forward

    plan = plan_gluon("lstm", 768, 16, torch.bfloat16, 132)
    empty = torch.empty(0)
    arguments = (plan, empty, empty, empty, empty, empty, empty, empty, empty, (100, 16, 768), False)
    with pytest.raises(ValueError, match="a flag per chunk of input_chunk >= 1 steps \\(T=100\\), got input_chunk=32 "
                                         "and torch.int32 of 3"):
        run_forward(*arguments, False, input_flags=torch.zeros(3, dtype=torch.int32), input_chunk=32)
    with pytest.raises(ValueError, match="got input_chunk=0"):
        run_forward(*arguments, False, input_flags=torch.zeros(4, dtype=torch.int32), input_chunk=0)
    with pytest.raises(ValueError, match="one direction, no lengths"):
        run_forward(*arguments, True, input_flags=torch.zeros(4, dtype=torch.int32), input_chunk=32)


@pytest.mark.cuda
@pytest.mark.overlapped_projection
@pytest.mark.parametrize("exchange", ["tagged", "barrier", "inference-switches"])
@pytest.mark.parametrize("steps", [300, 20])
def test_on_gpu_the_overlapped_projection_gives_the_layers_results_eagerly_and_in_a_graph(monkeypatch, exchange,
                                                                                          steps):
    """The LSTM (H=320, B=16, input 40, bf16) with its projection beside the Gluon forward against the
    same layer projecting before it: the kernel reads the same xg once every flag it polls is set,
    so the outputs agree to the GEMMs' rounding (the chunks' GEMMs may sum in another order than
    the whole one's); no wait timed out (a launch that did raises at the next check); and replayed
    from a CUDA graph, the same outputs again. ``steps`` 300: GEMMs of 32, 32, 64, 128 and 44
    steps (:data:`rnnbench.kernels.plan.OVERLAPPED_CHUNK_STEPS` 32); 20: one. ``exchange``: the
    state exchanged as tagged words or through the grid barrier, or ``inference-switches``: tagged,
    with every other never-run switch of the inference forward on as well (the harness's
    ``triton-inference-switches``: the loader's threads polling alone, the gates split inside each
    warp, whose reordered rows the launch is checked to have used), against the plain tagged layer."""
    from rnnbench.harness.backends import INFERENCE_SWITCHES
    from rnnbench.kernels import TritonLSTM, gluon_lstm
    from rnnbench.kernels.launch import check_barriers
    from rnnbench.kernels.plan import gluon_available
    from rnnbench.kernels.switches import tagged_exchange

    if torch.cuda.get_device_capability() != (9, 0) or not gluon_available():
        pytest.skip("the Gluon forward needs sm_90 and a Triton with Gluon's Hopper API")
    reordered = []
    original = gluon_lstm.local_gate_rows
    monkeypatch.setattr(gluon_lstm, "local_gate_rows", lambda w_rows: reordered.append(1) or original(w_rows))
    options = INFERENCE_SWITCHES if exchange == "inference-switches" else {"overlap_projection": True}
    torch.manual_seed(0)
    before = TritonLSTM(40, 320, path="gluon").to("cuda", torch.bfloat16)
    beside = TritonLSTM(40, 320, path="gluon", **options).to("cuda", torch.bfloat16)
    beside.load_state_dict(before.state_dict())
    x = torch.randn(steps, 16, 40, device="cuda", dtype=torch.bfloat16)
    with tagged_exchange(exchange != "barrier"), torch.no_grad():
        expected = before(x)
        got = beside(x)
        check_barriers(wait=True)
        for a, b in zip((expected[0], *expected[1]), (got[0], *got[1])):
            torch.testing.assert_close(b, a, rtol=2e-2, atol=2e-2)
        captured = replayed_in_graph(lambda: beside(x))
        for a, b in zip((expected[0], *expected[1]), (captured[0], *captured[1])):
            torch.testing.assert_close(b, a, rtol=2e-2, atol=2e-2)
    assert bool(reordered) == (exchange == "inference-switches"), reordered
