"""What only a GPU can check about the Triton kernels (every test is marked ``cuda``; tests/conftest.py
skips them with the reason on a machine without one):

* a cooperative grid of several hidden blocks *and* several batch blocks, forward and backward,
  against ``torch.nn`` in float64 (the interpreter runs such a grid step by step, never its barrier);
* bf16 numerics along T=1024 against float64, and of 32-row batch blocks at B=64;
* cooperative launches captured in a CUDA graph (the harness's ``latency_cudagraph`` rows);
* the grid-barrier micro-benchmark (:mod:`rnnbench.kernels.barrier_bench`) counting every arrival;
* the barrier timeout: a barrier waiting for a program that never arrives raises instead of hanging;
* the Gluon LSTM forward and backward (``path="gluon"``, sm_90 only: skipped with the reason
  elsewhere) against the plain cooperative kernels and float64, the forward's training buffers, and
  both through the drop-in module.

Tolerances are stated where they are used, with the reasoning.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from triton.experimental import gluon
from triton.experimental.gluon import language as gl

from rnnbench.kernels import TritonLSTM, TritonRNN
from rnnbench.kernels import switches
from rnnbench.kernels.gluon_lstm import _reload_stale_vectors
from rnnbench.kernels.launch import check_barriers, make_plan, poisoned_outputs
from rnnbench.kernels.plan import HALF_BLOCK_B, PathUnavailable, plan_recurrence

# fp32 dots exact (TF32 off in cuDNN and so in the kernels), restored after each test
pytestmark = [pytest.mark.cuda, pytest.mark.usefixtures("exact_fp32")]

CELLS = {"lstm": (TritonLSTM, torch.nn.LSTM, {}), "rnn_tanh": (TritonRNN, torch.nn.RNN, {"nonlinearity": "tanh"})}


def _modules(cell: str, input_size: int, hidden_size: int, dtype: torch.dtype, path: str, seed: int = 0):
    """The Triton module in ``dtype`` and a float64 torch.nn reference with the same (rounded) weights."""
    triton_class, torch_class, options = CELLS[cell]
    torch.manual_seed(seed)
    candidate = triton_class(input_size, hidden_size, path=path, **options).to("cuda", dtype)
    reference = torch_class(input_size, hidden_size, **options).to("cuda", torch.float64)
    reference.load_state_dict({name: value.to(torch.float64) for name, value in candidate.state_dict().items()})
    return candidate, reference


def _inputs(cell: str, T: int, B: int, I: int, H: int, dtype: torch.dtype, seed: int = 1, directions: int = 1):
    generator = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(T, B, I, device="cuda", generator=generator).to(dtype)
    states = [(0.5 * torch.randn(directions, B, H, device="cuda", generator=generator)).to(dtype)
              for _ in range(2 if cell == "lstm" else 1)]
    upstream = [torch.randn(T, B, directions * H, device="cuda", generator=generator).to(dtype)]
    upstream += [torch.randn(directions, B, H, device="cuda", generator=generator).to(dtype) for _ in states]
    return x, states, upstream


def _run(module, x, states, upstream):
    """``[output, *final states]`` and ``[dx, *d initial states, *d parameters]``."""
    x = x.detach().clone().requires_grad_()
    states = [state.detach().clone().requires_grad_() for state in states]
    output, final = module(x, tuple(states) if len(states) == 2 else states[0])
    outputs = [output, *(final if isinstance(final, tuple) else (final,))]
    grads = torch.autograd.grad(outputs, [x, *states, *module.parameters()], [u.to(output.dtype) for u in upstream])
    return outputs, list(grads)


def _relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``||actual - expected|| / ||expected||`` (Frobenius, in float64)."""
    difference = actual.to(torch.float64) - expected
    return float(difference.norm() / expected.norm().clamp_min(1e-30))


# ---- a cooperative grid of several hidden and batch blocks ------------------------------------

@pytest.mark.parametrize("cell", CELLS)
def test_cooperative_grid_of_several_hidden_and_batch_blocks_matches_float64(cell):
    """fp32 with exact dots: LSTM H=100 (13 hidden blocks forward, 7 backward) and RNN H=200 (13),
    B=40 (3 batch blocks of 16 rows, the last partly filled), T=64: at most 39 programs, co-resident
    on any H100 (114 SMs on the PCIe card; B=150 made 130 programs of 16-row fp32 blocks, more than it
    has). Each step's rounding is ~1e-7 relative and does not grow on these contractive layers, so
    forward outputs must agree to 1e-5 and gradients (sums over T*B terms) to 1e-4, relative to the
    largest reference value of each tensor."""
    T, B, I, H = 64, 40, 24, 100 if cell == "lstm" else 200
    candidate, reference = _modules(cell, I, H, torch.float32, "cooperative")
    x, states, upstream = _inputs(cell, T, B, I, H, torch.float32)
    plan = make_plan("lstm" if cell == "lstm" else "rnn", H, B, x, "cooperative")
    assert plan.path == "cooperative" and plan.grid[0] > 1 and plan.grid[1] > 1, plan
    with poisoned_outputs():
        outputs, grads = _run(candidate, x, states, upstream)
    check_barriers(wait=True)
    expected_outputs, expected_grads = _run(reference, x.double(), [s.double() for s in states], [u.double() for u in upstream])
    for actual, expected in zip(outputs, expected_outputs):
        scale = float(expected.abs().max())
        torch.testing.assert_close(actual.double(), expected, atol=1e-5 * scale, rtol=0)
    for actual, expected in zip(grads, expected_grads):
        scale = float(expected.abs().max())
        torch.testing.assert_close(actual.double(), expected, atol=1e-4 * scale, rtol=0)


# ---- bf16 along T=1024 ------------------------------------------------------------------------

@pytest.mark.parametrize("cell, hidden_size, path, planned", [
    ("lstm", 768, "cooperative", "cooperative"),  # the review's shape: a grid barrier per step
    ("lstm", 768, "auto", None),  # as a user runs it: on sm_90 the Gluon forward (plan.prefers_gluon), plain backward
    ("lstm", 64, "auto", "persistent"),  # forward only: its backward is cooperative (PERSISTENT_BACKWARD_MAX_ROWS)
    ("rnn_tanh", 768, "auto", "cooperative"),
    ("rnn_tanh", 128, "auto", "persistent"),
])
def test_bfloat16_numerics_at_T1024_against_float64(cell, hidden_size, path, planned):
    """bf16 storage (8 significant bits, unit roundoff 2^-8 = 3.9e-3) with fp32 accumulation, T=1024,
    B=16, against float64 computed from the same bf16-rounded weights and inputs, so only the
    kernels' own rounding is measured: the state is rounded to bf16 every step, an error of about
    one unit roundoff per step that these contractive layers do not accumulate. Bounds: forward
    relative error (Frobenius) <= 1e-2 overall and in the last 128 steps (no growth along T), and
    max |error| <= 5e-2 (about 12 bf16 ulps at 1); gradients relative error <= 5e-2 (stored bf16
    gate gradients feed dW_hh, a sum over T*B terms). A gradient that vanished over the 1024 steps
    (``dh0``, ``dc0`` of a contractive layer, RMS below 1e-6) has no relative error to speak of:
    it must stay below 1e-3 RMS instead."""
    T, B, I = 1024, 16, hidden_size
    candidate, reference = _modules(cell, I, hidden_size, torch.bfloat16, path)
    x, states, upstream = _inputs(cell, T, B, I, hidden_size, torch.bfloat16)
    assert planned is None or make_plan("lstm" if cell == "lstm" else "rnn", hidden_size, B, x, path).path == planned
    with poisoned_outputs():
        outputs, grads = _run(candidate, x, states, upstream)
    expected = _run(reference, x.double(), [s.double() for s in states], [u.double() for u in upstream])
    _assert_bfloat16_bounds(outputs, grads, *expected)


def _assert_cooperative_bfloat16_layer(cell: str, T: int, B: int, I: int, hidden_size: int) -> None:
    """Forward and backward of a bf16 layer forced cooperative (NaN-poisoned outputs, barriers
    checked) within the bounds of :func:`_assert_bfloat16_bounds` against float64."""
    candidate, reference = _modules(cell, I, hidden_size, torch.bfloat16, "cooperative")
    x, states, upstream = _inputs(cell, T, B, I, hidden_size, torch.bfloat16)
    with poisoned_outputs():
        outputs, grads = _run(candidate, x, states, upstream)
    check_barriers(wait=True)
    expected = _run(reference, x.double(), [s.double() for s in states], [u.double() for u in upstream])
    _assert_bfloat16_bounds(outputs, grads, *expected)


def _assert_bfloat16_bounds(outputs, grads, expected_outputs, expected_grads):
    """The bounds of :func:`test_bfloat16_numerics_at_T1024_against_float64`'s docstring."""
    y, expected_y = outputs[0], expected_outputs[0]
    errors = {"forward": _relative_error(y, expected_y), "last 128 steps": _relative_error(y[-128:], expected_y[-128:]),
              "first 128 steps": _relative_error(y[:128], expected_y[:128])}
    assert errors["forward"] <= 1e-2 and errors["last 128 steps"] <= 1e-2, errors
    assert float((y.double() - expected_y).abs().max()) <= 5e-2, errors
    for index, (actual, expected) in enumerate(zip(grads, expected_grads)):
        rms = lambda t: float(t.double().norm()) / t.numel() ** 0.5  # noqa: E731
        if rms(expected) < 1e-6:
            assert rms(actual) <= 1e-3, f"gradient {index} vanished in float64 but not here: RMS {rms(actual):.3g}"
        else:
            error = _relative_error(actual, expected)
            assert error <= 5e-2, f"gradient {index}: relative error {error:.3g} ({errors})"


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("hidden_size", [768, 1024])
def test_bfloat16_in_32_row_blocks_against_float64(cell, hidden_size):
    """B=64 in two 32-row blocks (plan.HALF_BLOCK_B) of 16 LSTM units (64 gate rows forward; 8
    reduction slices backward, at H=1024 since its bound counts one chunk of state) or 32 Elman
    units, forward and backward, T=64, with the bounds of the T=1024 test. The LSTM at H=1024
    needs 128 co-resident programs (H100 SXM, H200: 132 SMs). Forced cooperative: on sm_90 ``auto``
    runs the LSTM forward of this batch with the Gluon kernel (tested below)."""
    T, B, I = 64, 64, 32
    name = "lstm" if cell == "lstm" else "rnn"
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    arch = 90 if torch.cuda.get_device_capability(0) >= (9, 0) else 80
    for backward in (False, True):
        try:
            plan = plan_recurrence(name, hidden_size, B, torch.bfloat16, "cooperative", sms, arch=arch, backward=backward)
        except PathUnavailable as refusal:
            pytest.skip(f"this GPU ({sms} SMs, sm_{arch}) cannot run the H={hidden_size} B={B} layer cooperatively: {refusal}")
        if plan.block_b != HALF_BLOCK_B:
            pytest.skip(f"this GPU ({sms} SMs, sm_{arch}) plans the H={hidden_size} B={B} layer as {plan}")
    _assert_cooperative_bfloat16_layer(cell, T, B, I, hidden_size)


@pytest.mark.parametrize("cell, hidden_size", [("lstm", 256), ("lstm", 128), ("rnn_tanh", 512)])
def test_bfloat16_wide_batch_in_16_row_blocks_against_float64(cell, hidden_size):
    """B=64 in four 16-row batch blocks, the B <= 16 layout (plan.narrow_batch_blocks: one program
    per SM), forward and backward, as ``auto`` plans it on a 132-SM GPU, T=64, with the bounds of
    the T=1024 test: the batch blocks must not see each other's rows or barrier flags."""
    T, B, I = 64, 64, 32
    name = "lstm" if cell == "lstm" else "rnn"
    x = torch.empty(0, dtype=torch.bfloat16, device="cuda")
    for backward in (False, True):
        plan = make_plan(name, hidden_size, B, x, "cooperative", backward=backward)
        if plan.block_b != 16 or plan.grid[1] != 4:
            pytest.skip(f"this GPU ({torch.cuda.get_device_properties(0).multi_processor_count} SMs) plans the "
                        f"H={hidden_size} B={B} layer as {plan}")
    _assert_cooperative_bfloat16_layer(cell, T, B, I, hidden_size)


# ---- CUDA graphs --------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["fwd", "fwd_bwd"])
def test_cooperative_launch_under_cuda_graph_capture(mode):
    """A captured cooperative launch (16 hidden blocks of 16 units x 4 batch blocks of 32 rows) replays to the eager result for
    new inputs copied into the captured buffers. The recurrent kernels are deterministic, but the
    GEMMs around them may pick another cuBLAS algorithm inside a graph, so the bound is a relative
    error of 1e-2 (a few bf16 roundings); a stale buffer or a launch missing from the graph is O(1)."""
    T, B, I, H = 32, 100, 16, 256
    candidate, _ = _modules("lstm", I, H, torch.bfloat16, "cooperative")
    static_x, _, _ = _inputs("lstm", T, B, I, H, torch.bfloat16)
    static_x.requires_grad_(mode == "fwd_bwd")
    assert make_plan("lstm", H, B, static_x, "cooperative").grid == (16, 4)

    def step():
        output, _ = candidate(static_x)
        if mode == "fwd":
            return [output]
        return list(torch.autograd.grad(output, [static_x, *candidate.parameters()], torch.ones_like(output)))

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        step()  # warm-up outside the graph compiles the kernels
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = step()
    for seed in (2, 3):
        fresh, _, _ = _inputs("lstm", T, B, I, H, torch.bfloat16, seed=seed)
        with torch.no_grad():
            static_x.copy_(fresh)
        graph.replay()
        torch.cuda.synchronize()
        eager = step()
        for replayed, expected in zip(captured, eager):
            assert _relative_error(replayed, expected.double()) <= 1e-2


# ---- the grid barrier ---------------------------------------------------------------------------

def _identical_runs(cell, path, settings: dict) -> None:
    """Run one layer (bf16, H=768, B=40: two 32-row batch blocks of 48 hidden blocks on the plain
    path; T=33, forward and backward) within each of ``settings``' contexts (label -> a function
    returning a context manager) and assert that its outputs and every gradient are the same bit
    for bit under all of them."""
    if path == "gluon":
        _require_gluon()
    T, B, I, H = 33, 40, 24, 768
    candidate, _ = _modules(cell, I, H, torch.bfloat16, path)
    x, states, upstream = _inputs(cell, T, B, I, H, torch.bfloat16)
    runs = {}
    for label, context in settings.items():
        with context():
            runs[label] = _run(candidate, x, states, upstream)
            check_barriers(wait=True)
    (first_label, first), *others = runs.items()
    for label, run in others:
        for name, expected, got in zip(("outputs", "gradients"), first, run):
            for index, (e, g) in enumerate(zip(expected, got)):
                assert torch.equal(e, g), f"{name}[{index}] differs between {first_label} and {label}"


@pytest.mark.parametrize("cell, path", [("lstm", "cooperative"), ("rnn_tanh", "cooperative"), ("lstm", "gluon")])
def test_both_poll_orders_give_the_same_results_bit_for_bit(cell, path, monkeypatch):
    """The barrier's poll order (``Plan.poll_order``) changes when a program sees its producers'
    flags, never what it then reads: outputs and every gradient are identical in the two orders."""
    import contextlib
    import dataclasses

    import rnnbench.kernels.lstm
    import rnnbench.kernels.rnn
    from rnnbench.kernels.plan import POLL_ORDER_NAMES

    @contextlib.contextmanager
    def polling(order):
        with monkeypatch.context() as patch:
            for module in (rnnbench.kernels.lstm, rnnbench.kernels.rnn):
                patch.setattr(module, "make_plan", lambda *args, **kw: dataclasses.replace(
                    make_plan(*args, **kw), poll_order=order))
            yield

    _identical_runs(cell, path, {order: lambda order=order: polling(order) for order in POLL_ORDER_NAMES})


@pytest.mark.first_warp_poll
@pytest.mark.parametrize("cell, path", [("lstm", "cooperative"), ("rnn_tanh", "cooperative"), ("lstm", "gluon")])
def test_the_first_warp_polling_alone_gives_the_same_results_bit_for_bit(cell, path):
    """Who polls the grid barrier (``switches.GRID_POLL_FIRST_WARP``: every warp, or each program's
    first warp alone while the others wait at the CTA barrier) changes when a program goes on, never
    what it then reads: outputs and every gradient are identical either way (the Gluon layer's
    training forward and backward run their grid barriers)."""
    _identical_runs(cell, path, {"every warp": lambda: switches.first_warp_polls(False),
                                 "the first warp": lambda: switches.first_warp_polls(True)})


@pytest.mark.first_warp_poll
@pytest.mark.parametrize("num_warps", [4, 8])
@pytest.mark.parametrize("programs", [7, 96, 132])
def test_with_the_first_warp_polling_alone_no_program_leaves_a_barrier_early(programs, num_warps):
    """The barrier micro-benchmark with one polling warp a program: every arrival counted, and after
    every barrier every program finds every flag at the barrier's count (``run_barriers`` raises
    otherwise); the timing is sane. The session runs this stage beside the other switches' (other
    processes' kernels share the GPU in time slices), so the check is on the median of 7 slopes,
    which one slope pair straddling another process's time slice cannot make negative."""
    from rnnbench.kernels.barrier_bench import run_barriers, time_barrier

    assert run_barriers(programs, 500, num_warps, pollers="first") == programs * 500
    median, q25, q75 = time_barrier(programs, barriers=2000, num_warps=num_warps, repeats=7, pollers="first")
    assert q25 <= median <= q75 and 0 < median < 100  # microseconds per barrier


@pytest.mark.parametrize("order", ["acquire", "relaxed"])
@pytest.mark.parametrize("programs", [1, 7, 132])
def test_barrier_benchmark_counts_every_arrival(programs, order):
    from rnnbench.kernels.barrier_bench import run_barriers, time_barrier

    assert run_barriers(programs, 500, order=order) == programs * 500
    # 2000 barriers a launch: at one program (0.24 us a barrier on an H200) 200 barriers were a 48 us
    # difference between two launches, within their jitter, and a quartile came out negative
    median, q25, q75 = time_barrier(programs, barriers=2000, repeats=7, order=order)
    assert 0 < q25 <= median <= q75 < 100  # microseconds per barrier


#: the barrier test's child script: warm up (compile), then a grid whose every barrier waits for a
#: program that does not exist, then a healthy grid; prints what happened for the parent to judge
_TIMEOUT_SCRIPT = """
import time
from rnnbench.kernels.barrier_bench import run_barriers
from rnnbench.kernels.launch import BarrierTimeout
run_barriers(programs=5, barriers=1)  # compiles POLL=8, the missing program's grid's
start = time.perf_counter()
try:
    run_barriers(programs=4, barriers=3, missing=1, timeout_ns=50_000_000)
    print("returned")
except BarrierTimeout as error:
    print(f"raised after {time.perf_counter() - start:.3f} s: {error}")
print("healthy grid:", run_barriers(programs=4, barriers=3))
"""


def test_a_barrier_that_cannot_complete_raises_instead_of_hanging():
    """Every barrier waits for a program that does not exist: it times out (50 ms here), the kernel
    finishes, and the launcher raises BarrierTimeout naming the step; the GPU stays usable.

    Runs in a child process with a deadline, so a timeout that does not work fails this test (the
    child, and with it the hung kernel, is killed) instead of hanging the session."""
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    try:
        child = subprocess.run([sys.executable, "-c", _TIMEOUT_SCRIPT], cwd=root, env=env, capture_output=True,
                               text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.fail("a grid barrier waiting for a missing program hung (no timeout within 300 s)")
    assert child.returncode == 0, child.stderr[-4000:]
    raised = re.search(r"raised after ([0-9.]+) s: grid barrier of barrier_loop_kernel .* timed out .*step 1", child.stdout)
    assert raised, f"no BarrierTimeout naming step 1:\n{child.stdout}"
    assert float(raised.group(1)) < 10  # three barriers of 50 ms each, not the default timeout
    assert "healthy grid: 12" in child.stdout


# ---- the Gluon LSTM forward (path="gluon", sm_90 only) ------------------------------------------

#: (H, B, T): hidden sizes of 5, 12 and 17 tiles of 64 columns (17: three state copies, the last of
#: one tile, and 65 hidden blocks, whose poll covers 128 flags); one row, a partly filled 16-row
#: block and a partly filled 64-row block; one step, a few steps, and the review's T=1024
GLUON_SHAPES = [(320, 1, 7), (320, 48, 1), (768, 16, 1024), (768, 48, 7), (320, 16, 1024), (768, 1, 1),
                (1040, 16, 7)]
#: relative error (Frobenius) of a 16-bit forward against float64 and against the plain kernel: the
#: state is rounded to the storage type every step (unit roundoff 2^-8 bf16, 2^-11 fp16), an error
#: these contractive layers do not accumulate; the two kernels add the same terms in another order,
#: so they differ by about one rounding of the state
GLUON_TOLERANCE = {torch.bfloat16: 1e-2, torch.float16: 2e-3}


def _require_gluon():
    from rnnbench.kernels.plan import gluon_available

    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip(f"the Gluon path needs sm_90, this GPU is sm_{''.join(map(str, torch.cuda.get_device_capability()))}")
    if not gluon_available():
        pytest.skip("this Triton has no Gluon Hopper API")


def _gluon_plain_and_float64(hidden_size: int, batch: int, steps: int, dtype: torch.dtype):
    """``(gluon, plain, float64 reference, inputs)``: LSTMs of input size 40 with the same (rounded)
    weights on ``path="gluon"``, ``path="cooperative"`` and in float64, and :func:`_inputs`."""
    candidate, reference = _modules("lstm", 40, hidden_size, dtype, "gluon")
    plain = TritonLSTM(40, hidden_size, path="cooperative").to("cuda", dtype)
    plain.load_state_dict(candidate.state_dict())
    return candidate, plain, reference, _inputs("lstm", steps, batch, 40, hidden_size, dtype)


def _layer_output(module, x, states):
    with torch.no_grad():
        output, (h_n, c_n) = module(x, states)
    return [output, h_n, c_n]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("hidden_size, batch, steps", GLUON_SHAPES)
def test_gluon_forward_matches_the_plain_cooperative_kernel_and_float64(dtype, hidden_size, batch, steps):
    """Inference forward (y, h_n, c_n) of path="gluon" against path="cooperative" with the same
    weights and against float64 from the same rounded weights and inputs (:data:`GLUON_TOLERANCE`);
    outputs poisoned with NaN first, so an element the kernel does not write fails."""
    _require_gluon()
    candidate, plain, reference, (x, states, _) = _gluon_plain_and_float64(hidden_size, batch, steps, dtype)
    assert make_plan("lstm", hidden_size, batch, x, "gluon").path == "gluon"
    with poisoned_outputs():
        gluon_out = _layer_output(candidate, x, tuple(states))
        plain_out = _layer_output(plain, x, tuple(states))
    check_barriers(wait=True)
    _assert_forward_within_gluon_tolerance(gluon_out, plain_out, _layer_output(reference, x.double(), tuple(
        s.double() for s in states)), dtype)


def _assert_forward_within_gluon_tolerance(outputs, base, expected, dtype: torch.dtype) -> None:
    """``outputs`` (y, h_n, c_n) finite and within :data:`GLUON_TOLERANCE` of float64 ``expected`` and
    of another kernel's ``base``, the last step's y too (no growth along T)."""
    tolerance = GLUON_TOLERANCE[dtype]
    for name, actual, other, exact in zip(("y", "h_n", "c_n"), outputs, base, expected):
        assert torch.isfinite(actual).all(), name
        assert _relative_error(actual, exact) <= tolerance, (name, _relative_error(actual, exact))
        assert _relative_error(actual, other.double()) <= tolerance, (name, _relative_error(actual, other.double()))
    assert _relative_error(outputs[0][-1], expected[0][-1]) <= tolerance  # no growth along T


#: (H, B, T, directions) the tagged exchange runs (H a multiple of 64, 16-row blocks, one program per
#: SM): the anchor along T=1024, one row, 64 hidden blocks, three batch blocks, both directions
TAGGED_SHAPES = [(768, 16, 1024, 1), (768, 1, 7, 1), (1024, 16, 9, 1), (320, 48, 7, 1), (320, 16, 33, 2)]


@pytest.mark.tagged_exchange
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("hidden_size, batch, steps, directions", TAGGED_SHAPES)
def test_gluon_forward_with_the_tagged_exchange_is_the_barriers_bit_for_bit(monkeypatch, dtype, hidden_size, batch,
                                                                            steps, directions):
    """The four one-warp loaders (the default): :func:`_check_tagged_against_the_barrier`."""
    _check_tagged_against_the_barrier(monkeypatch, dtype, hidden_size, batch, steps, directions)


@pytest.mark.tagged_exchange
@pytest.mark.parametrize("hidden_size, batch, steps", [(768, 16, 257), (320, 16, 9)])
def test_the_tagged_exchanges_four_one_warp_loaders_are_the_barriers_bit_for_bit_too(monkeypatch, hidden_size,
                                                                                      batch, steps):
    """The tagged exchange with four one-warp loader partitions (:func:`rnnbench.kernels.switches.tagged_loaders`,
    the step ablation's ``real_gluon_tagged_four_loaders``; the planner's until the H200 timed them
    slower than one loader of four warps) at the anchor and where they own 2, 1, 1, 1 tiles."""
    from rnnbench.kernels.switches import tagged_loaders

    with tagged_loaders(4):
        _check_tagged_against_the_barrier(monkeypatch, torch.bfloat16, hidden_size, batch, steps, 1)


@pytest.mark.mma_chains
@pytest.mark.parametrize("hidden_size, batch, steps", [(768, 16, 257), (1024, 16, 9), (256, 16, 9), (320, 48, 7)])
def test_the_tagged_forwards_two_mma_chains_agree_with_one(monkeypatch, hidden_size, batch, steps):
    """The recurrent product in two accumulator chains (:func:`rnnbench.kernels.switches.mma_chains`,
    the step ablation's ``real_gluon_tagged_two_chains``): 6 shared and 6 register tiles at the
    anchor, 14 and 2 at H=1024, registers only at H=256 and 320 (alternate tiles, an odd one at 320).
    It sums in another order than the barrier kernel, so it is compared within
    :data:`GLUON_TOLERANCE`, not bit for bit."""
    from rnnbench.kernels.switches import mma_chains

    with mma_chains(2):
        _check_tagged_against_the_barrier(monkeypatch, torch.bfloat16, hidden_size, batch, steps, 1,
                                          bit_for_bit=False)


@pytest.mark.tagged_groups
@pytest.mark.parametrize("groups", [4, 2])
@pytest.mark.parametrize("hidden_size, batch, steps", [(768, 16, 257), (320, 48, 7), (256, 16, 9)])
def test_the_tagged_loaders_hand_over_in_groups_matches_the_barrier_kernel_bit_for_bit(monkeypatch, groups, hidden_size,
                                                                                        batch, steps):
    """The tagged loader handing the state over in groups of tiles (:func:`rnnbench.kernels.switches.tagged_groups`,
    the step ablation's ``real_gluon_tagged_groups_4``): 4 groups of 3 tiles at the anchor, of 2, 2
    and 1 at H=320 (5 tiles; 3 row blocks), of one tile each at H=256. The MMAs read the same tiles
    in the same order into one accumulator, so the outputs are the barrier kernel's bit for bit."""
    from rnnbench.kernels.switches import tagged_groups

    with tagged_groups(groups):
        _check_tagged_against_the_barrier(monkeypatch, torch.bfloat16, hidden_size, batch, steps, 1)


@pytest.mark.tagged_thread_poll
@pytest.mark.parametrize("hidden_size, batch, steps, loaders, groups",
                         [(768, 16, 257, 1, 1), (320, 48, 7, 1, 1), (1024, 16, 9, 1, 1), (256, 16, 33, 4, 1),
                          (768, 16, 33, 1, 4)])
def test_the_tagged_loaders_threads_polling_alone_match_the_barrier_kernel_bit_for_bit(monkeypatch, hidden_size,
                                                                                      batch, steps, loaders, groups):
    """The tagged loader's threads each checking and polling their own words alone
    (:func:`rnnbench.kernels.switches.tagged_thread_poll`, the step ablation's
    ``real_gluon_tagged_thread_poll``; its PTX, :func:`rnnbench.kernels.tagged_exchange.thread_poll_asm`,
    interpreted on the CPU in ``tests/test_tagged_exchange.py``): at the anchor along 257 steps,
    three batch blocks, 16 tiles, four one-warp loaders and the hand-over in groups. The words the
    MMAs read are the same, so the outputs are the barrier kernel's bit for bit."""
    from rnnbench.kernels.switches import tagged_groups, tagged_loaders, tagged_thread_poll

    with tagged_thread_poll(True), tagged_loaders(loaders), tagged_groups(groups):
        _check_tagged_against_the_barrier(monkeypatch, torch.bfloat16, hidden_size, batch, steps, 1)


@pytest.mark.local_gates
@pytest.mark.parametrize("hidden_size, batch, steps, directions, thread_poll, dtype",
                         [(768, 16, 257, 1, False, torch.bfloat16), (768, 16, 257, 1, True, torch.bfloat16),
                          (320, 48, 7, 1, False, torch.bfloat16), (1024, 16, 9, 1, True, torch.bfloat16),
                          (320, 16, 33, 2, False, torch.bfloat16), (256, 16, 9, 1, False, torch.bfloat16),
                          (768, 16, 33, 1, False, torch.float16)])
def test_the_warp_local_gate_split_matches_the_barrier_kernel_bit_for_bit(monkeypatch, hidden_size, batch, steps,
                                                                         directions, thread_poll, dtype):
    """The tagged forward splitting its gates inside each warp (:func:`rnnbench.kernels.switches.local_gates`,
    the step ablation's ``real_gluon_tagged_local_gates``: ``W_hh``'s rows reordered on the host,
    the product converted inside each warp, ``xg`` loaded into registers a step ahead): at the anchor
    along 257 steps (also with the thread-polling loader), three batch blocks, 16 tiles, both
    directions (the second direction's rows from ``4H`` on), 4 tiles, and fp16 (``xg``'s pairs
    unpacked as fp16). Each gate of each unit is
    the same dot product in the same order, so the outputs are the barrier kernel's bit for bit; the
    launch is checked to have reordered the rows (counted)."""
    from rnnbench.kernels import gluon_lstm
    from rnnbench.kernels.switches import local_gates, tagged_thread_poll

    reordered = []
    original = gluon_lstm.local_gate_rows
    monkeypatch.setattr(gluon_lstm, "local_gate_rows", lambda w_rows: reordered.append(1) or original(w_rows))
    with local_gates(True), tagged_thread_poll(thread_poll):
        _check_tagged_against_the_barrier(monkeypatch, dtype, hidden_size, batch, steps, directions)
    assert reordered, "the layer did not launch the warp-local gate split"


def _check_tagged_against_the_barrier(monkeypatch, dtype, hidden_size, batch, steps, directions, bit_for_bit=True):
    """The Gluon forward exchanging its state as compact words (its loader polls the values, no grid
    barrier; :func:`rnnbench.kernels.switches.tagged_exchange`) against the same kernel with its
    grid barrier and TMA copies: the MMAs read the same state values in the same order, so every
    output is bit for bit the same (a stale word taken, a word missed or a step run ahead shows as
    a difference); no wait timed out; and within :data:`GLUON_TOLERANCE` of float64. The layer's
    launch is checked to have run tagged (it builds the compact exchange: counted). ``bit_for_bit=False``
    (a tagged kernel that sums in another order): within :data:`GLUON_TOLERANCE` of the barrier's."""
    from rnnbench.kernels import gluon_lstm
    from rnnbench.kernels.plan import gluon_tagged_exchange, tagged_exchange_refusal
    from rnnbench.kernels.switches import tagged_exchange
    from rnnbench.kernels.tagged_exchange import compact_state

    _require_gluon()
    candidate, _, reference, (x, states, _) = _gluon_plain_and_float64(hidden_size, batch, steps, dtype)
    if directions == 2:
        torch.manual_seed(0)
        candidate = TritonLSTM(40, hidden_size, bidirectional=True, path="gluon").to("cuda", dtype)
        reference = torch.nn.LSTM(40, hidden_size, bidirectional=True).to("cuda", torch.float64)
        reference.load_state_dict({name: value.double() for name, value in candidate.state_dict().items()})
        states = [torch.cat([state, 0.5 * state]) for state in states]
    plan = make_plan("lstm", hidden_size, batch, x, "gluon", directions)
    sms = torch.cuda.get_device_properties().multi_processor_count
    encoded = []
    monkeypatch.setattr(gluon_lstm, "compact_state", lambda exchange: encoded.append(1) or compact_state(exchange))
    with tagged_exchange(True):
        assert gluon_tagged_exchange(plan) and tagged_exchange_refusal(plan, sms) is None, plan
        with poisoned_outputs():
            tagged = _layer_output(candidate, x, tuple(states))
        check_barriers(wait=True)
    assert encoded, "the layer did not run the tagged exchange"
    encoded.clear()
    with tagged_exchange(False), poisoned_outputs():
        flagged = _layer_output(candidate, x, tuple(states))
    check_barriers(wait=True)
    assert not encoded, "the switch did not turn the exchange off"
    for name, actual, base in zip(("y", "h_n", "c_n"), tagged, flagged):
        if bit_for_bit:
            assert torch.equal(actual, base), (name, _relative_error(actual, base.double()))
        else:
            assert _relative_error(actual, base.double()) <= GLUON_TOLERANCE[dtype], (name, _relative_error(actual, base.double()))
    expected = _layer_output(reference, x.double(), tuple(s.double() for s in states))
    for name, actual, exact in zip(("y", "h_n", "c_n"), tagged, expected):
        assert _relative_error(actual, exact) <= GLUON_TOLERANCE[dtype], (name, _relative_error(actual, exact))


@pytest.mark.tagged_training
@pytest.mark.parametrize("hidden_size, batch, steps", [(768, 16, 257), (320, 16, 9)])
def test_the_tagged_training_forward_saves_and_trains_as_the_barriers_bit_for_bit(monkeypatch, hidden_size, batch,
                                                                                   steps):
    """The training forward with the tagged exchange (:func:`rnnbench.kernels.switches.tagged_training`,
    the step ablation's ``real_gluon_tagged_train``) against the barrier's: the same state values
    multiplied in the same order, so its outputs are the barrier's bit for bit, and so is every
    gradient of the backward that reads the gates and cell states it saved; no wait timed out. The
    layer's launch is checked to have run tagged (it builds the compact exchange)."""
    from rnnbench.kernels import gluon_lstm
    from rnnbench.kernels.plan import gluon_tagged_exchange
    from rnnbench.kernels.switches import tagged_training
    from rnnbench.kernels.tagged_exchange import compact_state

    _require_gluon()
    candidate, _, _, (x, states, upstream) = _gluon_plain_and_float64(hidden_size, batch, steps, torch.bfloat16)
    plan = make_plan("lstm", hidden_size, batch, x, "gluon")
    encoded = []
    monkeypatch.setattr(gluon_lstm, "compact_state", lambda exchange: encoded.append(1) or compact_state(exchange))
    with tagged_training(True):
        assert gluon_tagged_exchange(plan, training=True), plan
        with poisoned_outputs():
            tagged = _run(candidate, x, states, upstream)
        check_barriers(wait=True)
    assert encoded, "the training forward did not run the tagged exchange"
    encoded.clear()
    with tagged_training(False), poisoned_outputs():
        barrier = _run(candidate, x, states, upstream)
    check_barriers(wait=True)
    assert not encoded, "the switch did not give the training forward its grid barrier back"
    for index, (actual, expected) in enumerate(zip([*tagged[0], *tagged[1]], [*barrier[0], *barrier[1]])):
        assert torch.equal(actual, expected), (index, _relative_error(actual, expected.double()))


@gluon.jit
def _vector_reload_kernel(memory_ptr, held_ptr, out_ptr, key):
    """``gluon_lstm._reload_stale_vectors`` of one loader tile (16 rows of 32 int32 pairs, in a
    loader warp's layout: 4 rows of 4 pairs a thread), ``held`` the words as a first load found
    them, ``memory`` what the slot holds now; ``out`` the words the helper returns. One warp."""
    layout: gl.constexpr = gl.BlockedLayout(size_per_thread=[1, 4], threads_per_warp=[4, 8], warps_per_cta=[1, 1],
                                            order=[1, 0])
    rows = gl.arange(0, 16, layout=gl.SliceLayout(1, layout))
    columns = gl.arange(0, 32, layout=gl.SliceLayout(0, layout))
    offsets = gl.expand_dims(rows, 1) * 32 + gl.expand_dims(columns, 0)
    read = gl.load(held_ptr + offsets) ^ key
    gl.store(out_ptr + offsets, _reload_stale_vectors(memory_ptr + offsets, read, key))


@pytest.mark.tagged_exchange
@pytest.mark.parametrize("key", [0, 0x40004000], ids=["tag_bit_clear", "tag_bit_set"])
def test_the_tagged_loaders_vector_reload_loads_the_stale_vectors_and_keeps_the_others(key):
    """The tagged loader's reload (:func:`rnnbench.kernels.gluon_lstm._reload_stale_vectors`,
    inline PTX packing 4 pairs a thread into one predicated 16-byte load): every vector with a
    half whose tag bit differs from ``key``'s comes back as memory holds it, every other as it was
    held. A wrong packing order would load a vector from another address (or a misaligned one)."""
    _require_gluon()
    generator = torch.Generator().manual_seed(1 if key else 0)
    values = torch.randint(-2**31, 2**31 - 1, (16, 32), generator=generator, dtype=torch.int64)
    held = (values & ~0x40004000) | key  # every half's tag bit as ``key`` wants it: fresh
    stale = torch.rand(16, 8, generator=generator) < 0.4
    which = torch.randint(0, 4, (16, 8), generator=generator) + 4 * torch.arange(8)  # a pair of each vector
    bit = torch.where(torch.rand(16, 8, generator=generator) < 0.5, 0x4000, 0x40000000)  # and a half of it
    chosen = held.gather(1, which)
    held = held.scatter(1, which, torch.where(stale, chosen ^ bit, chosen))
    held = ((held + 2**31) % 2**32 - 2**31).to(torch.int32).cuda()
    memory = torch.randint(-2**31, 2**31 - 1, (16, 32), generator=generator, dtype=torch.int64).to(torch.int32).cuda()
    out = torch.empty_like(held)
    _vector_reload_kernel[(1,)](memory, held, out, key, num_warps=1)
    reloaded = stale.repeat_interleave(4, dim=1).cuda()
    assert 0 < int(stale.sum()) < stale.numel()
    assert torch.equal(out[reloaded], memory[reloaded]), "a vector holding a stale half is loaded again whole"
    assert torch.equal(out[~reloaded], held[~reloaded]), "a fresh vector is kept as held"


@pytest.mark.tagged_exchange
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_the_tagged_exchange_keeps_any_h0_and_spreads_a_nan_as_the_barrier_does(dtype):
    """Compact words hold values below 2 and NaNs (:mod:`rnnbench.kernels.tagged_exchange`): an ``h0``
    far outside that range (x 30, infinities) must reach step 0 as it is (its own slot), and a NaN
    in ``c0`` of one unit of one batch row, which makes that unit's h NaN from step 0 on and so,
    through the state, the whole row from step 1, must spread exactly as with the grid barrier: the
    same outputs bit for bit, NaN where they are NaN."""
    _check_h0_and_nan_against_the_barrier(dtype)


@pytest.mark.tagged_thread_poll
def test_the_tagged_loaders_threads_polling_alone_keep_any_h0_and_spread_a_nan_as_the_barrier_does():
    """:func:`_check_h0_and_nan_against_the_barrier` with the loader's threads polling alone (each
    restores its own published NaNs: no reduction tells it)."""
    from rnnbench.kernels.switches import tagged_thread_poll

    with tagged_thread_poll(True):
        _check_h0_and_nan_against_the_barrier(torch.bfloat16)


def _check_h0_and_nan_against_the_barrier(dtype):
    """The tagged forward with an ``h0`` it cannot encode and a NaN in ``c0`` against the barrier's
    (see :func:`test_the_tagged_exchange_keeps_any_h0_and_spreads_a_nan_as_the_barrier_does`)."""
    from rnnbench.kernels.switches import tagged_exchange

    _require_gluon()
    hidden_size, batch, steps = 768, 16, 6
    candidate, _, _, (x, (h0, c0), _) = _gluon_plain_and_float64(hidden_size, batch, steps, dtype)
    h0 = (30 * h0).clone()
    h0[0, 2, :2] = torch.tensor([float("inf"), float("-inf")], dtype=dtype)
    c0 = c0.clone()
    c0[0, 5, 100] = float("nan")
    with tagged_exchange(True), poisoned_outputs():
        tagged = _layer_output(candidate, x, (h0, c0))
    check_barriers(wait=True)
    with poisoned_outputs():
        flagged = _layer_output(candidate, x, (h0, c0))
    check_barriers(wait=True)
    y = flagged[0]
    assert y[0, 5].isnan().sum() == 1 and y[1:, 5].isnan().all() and not y[:, [0, 1, 3, 4]].isnan().any(), \
        "the NaN's path (row 2 starts from infinities)"
    for name, actual, base in zip(("y", "h_n", "c_n"), tagged, flagged):
        assert torch.equal(actual.isnan(), base.isnan()), name
        number = ~base.isnan()
        assert torch.equal(actual[number], base[number]), name


@pytest.mark.tagged_thread_poll
def test_the_tagged_loaders_threads_polling_alone_count_the_busiest_threads_polls():
    """With the loader's threads polling alone the launch's count is the busiest thread's
    (:func:`rnnbench.kernels.step_bench.extra_polls`): at least 0 and finite at the anchor."""
    from rnnbench.kernels.switches import tagged_exchange, tagged_thread_poll
    from rnnbench.kernels.step_bench import extra_polls

    _require_gluon()
    H, B, T = 768, 16, 200
    plan = make_plan("lstm", H, B, torch.empty(0, dtype=torch.bfloat16, device="cuda"), "gluon")
    with tagged_exchange(True), tagged_thread_poll(True):
        polls = extra_polls(plan, H, B, torch.bfloat16, T)
    check_barriers(wait=True)
    assert 0 <= polls < float("inf"), polls


@pytest.mark.tagged_exchange
def test_only_the_tagged_exchange_counts_its_extra_polls():
    """The synchronisation buffer's poll counts (one slot per loader warp from
    :data:`~rnnbench.kernels.primitives.EXTRA_POLLS_SLOT`) after a launch of the Gluon forward at the
    anchor: zero with the grid barrier (which never writes them), a count of polls with the tagged
    exchange (:func:`rnnbench.kernels.step_bench.extra_polls`: at least 0 and, in a launch that did
    not time out, finite)."""
    from rnnbench.kernels.launch import sync_buffer
    from rnnbench.kernels.switches import GLUON_TAGGED_LOADERS, tagged_exchange
    from rnnbench.kernels.primitives import EXTRA_POLLS_SLOT
    from rnnbench.kernels.step_bench import extra_polls, real_launcher

    _require_gluon()
    H, B, T = 768, 16, 200
    plan = make_plan("lstm", H, B, torch.empty(0, dtype=torch.bfloat16, device="cuda"), "gluon")
    sync = sync_buffer(plan, "cuda")
    real_launcher(plan, H, B, torch.bfloat16, T, sync=sync)(T)
    check_barriers(wait=True)
    first = int(EXTRA_POLLS_SLOT.value)
    assert int(sync[..., first:first + GLUON_TAGGED_LOADERS].sum()) == 0
    with tagged_exchange(True):
        polls = extra_polls(plan, H, B, torch.bfloat16, T)
    assert 0 <= polls < float("inf"), polls


@pytest.mark.tagged_exchange
def test_a_tagged_wait_for_a_program_never_launched_times_out_instead_of_hanging():
    """The tagged Gluon forward launched with one hidden block fewer than its plan (``hidden_blocks``):
    the missing program's words never come, so every loader's wait of step 1 (the first that reads
    other programs' words) gives up after the timeout, later waits after one poll, and the launch ends
    with the barrier's error naming step 1 (not a hang: the loader's warps leave their poll together)."""
    _check_a_tagged_wait_times_out()


@pytest.mark.tagged_thread_poll
def test_a_thread_polling_alone_for_a_program_never_launched_times_out_instead_of_hanging():
    """:func:`_check_a_tagged_wait_times_out` with the loader's threads polling alone: each thread
    waiting for the missing program's words times out on its own clock and reports step 1, every
    other gives up after one poll once the status word is set."""
    from rnnbench.kernels.switches import tagged_thread_poll

    with tagged_thread_poll(True):
        _check_a_tagged_wait_times_out()


def _check_a_tagged_wait_times_out():
    """The tagged forward one hidden block short ends with the barrier's error naming step 1 (see
    :func:`test_a_tagged_wait_for_a_program_never_launched_times_out_instead_of_hanging`)."""
    from rnnbench.kernels.gluon_lstm import run_forward
    from rnnbench.kernels.launch import BarrierTimeout, aligned_weight_rows, exchange_buffer
    from rnnbench.kernels.switches import tagged_exchange

    _require_gluon()
    T, B, H = 5, 16, 768
    generator = torch.Generator(device="cuda").manual_seed(3)
    xg = torch.randn(1, T, B, 4 * H, device="cuda", generator=generator).to(torch.bfloat16)
    rows = aligned_weight_rows((0.05 * torch.randn(1, 4 * H, H, device="cuda", generator=generator)).to(torch.bfloat16))
    h0 = torch.zeros(1, B, H, dtype=torch.bfloat16, device="cuda")
    c0 = torch.zeros(1, B, H, dtype=torch.float32, device="cuda")
    y = torch.empty(T, B, H, dtype=torch.bfloat16, device="cuda")
    c_n = torch.empty(1, B, H, dtype=torch.float32, device="cuda")
    plan = make_plan("lstm", H, B, y, "gluon")
    check_barriers(wait=True)
    with tagged_exchange(True):
        run_forward(plan, xg, rows, c0, y, y, c_n, exchange_buffer(plan, 1, y, first=h0),
                    torch.zeros(1, dtype=torch.int32, device="cuda"), (T, B, H), training=False, has_lengths=False,
                    hidden_blocks=plan.grid[0] - 1)
    with pytest.raises(BarrierTimeout, match="block 0 at step 1"):
        check_barriers(wait=True)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("hidden_size, batch, steps", [(320, 16, 64), (768, 16, 64), (1024, 1, 64), (400, 5, 9)])
def test_gluon_forward_with_weights_in_registers_matches_all_in_shared_memory(monkeypatch, dtype, hidden_size, batch,
                                                                                steps):
    """The planned weight tiles in registers (:func:`rnnbench.kernels.plan.gluon_register_tiles`: all 5
    of H=320, 6 of 12 at H=768, 2 of 16 at H=1024, 6 of 7 at H=400 with its last tile partly past H)
    give the forward of every tile in shared memory: the same products in the same order on the
    tensor cores, so at most a rounding apart (a wrong register layout is an error of order one)."""
    import rnnbench.kernels.plan as plan_module

    _require_gluon()
    candidate, _, _, (x, states, _) = _gluon_plain_and_float64(hidden_size, batch, steps, dtype)
    assert make_plan("lstm", hidden_size, batch, x, "gluon").register_tiles > 0
    with poisoned_outputs():
        held = _layer_output(candidate, x, tuple(states))
    monkeypatch.setattr(plan_module, "GLUON_REGISTER_TILES", ())
    assert make_plan("lstm", hidden_size, batch, x, "gluon").register_tiles == 0
    with poisoned_outputs():
        shared = _layer_output(candidate, x, tuple(states))
    check_barriers(wait=True)
    for name, actual, base in zip(("y", "h_n", "c_n"), held, shared):
        assert torch.isfinite(actual).all(), name
        error = _relative_error(actual, base.double())
        assert error <= GLUON_TOLERANCE[dtype] / 10, (name, error)


@pytest.mark.parametrize("hidden_size, batch, steps, bidirectional", [(768, 16, 40, False), (1024, 64, 20, False),
                                                                       (768, 64, 20, True), (512, 64, 12, True)])
def test_gluon_forward_in_state_copies_of_4_tiles_is_the_8_tile_boxes_forward(hidden_size, batch, steps,
                                                                               bidirectional):
    """The Gluon forward with its grid barrier copies the state in TMA boxes of 4 tiles
    (:data:`rnnbench.kernels.switches.GLUON_TILES_PER_COPY`, 8 until the H200 timed 4 faster): the MMAs
    read the same state values in the same order, so the inference and the training forward are
    the boxes of 8's bit for bit where the plan is the same, and a rounding apart where the smaller
    program changed the plan (H=768 B=64 both directions: one launch of 64-row blocks, two of 32
    before; H=512 B=64 both directions runs 32-row blocks, one program per SM, either way). Outputs
    poisoned with NaN first."""
    _require_gluon()
    torch.manual_seed(0)
    module = TritonLSTM(40, hidden_size, path="gluon", bidirectional=bidirectional,
                        tagged_exchange=False).to("cuda", torch.bfloat16)
    directions = 2 if bidirectional else 1
    x, states, _ = _inputs("lstm", steps, batch, 40, hidden_size, torch.bfloat16, directions=directions)
    states = tuple(states)

    def forwards():
        plan = make_plan("lstm", hidden_size, batch, x, "gluon", directions)
        with poisoned_outputs():
            inference = _layer_output(module, x, states)
            training_x = x.clone().requires_grad_(True)
            output, (h_n, c_n) = module(training_x, states)
        return plan, inference + [output.detach(), h_n.detach(), c_n.detach()]

    four_plan, fours = forwards()
    with switches.state_copy_tiles(8):
        eight_plan, eights = forwards()
    check_barriers(wait=True)
    same_plan = (four_plan.block_b, four_plan.grid) == (eight_plan.block_b, eight_plan.grid)
    for name, four, eight in zip(("y", "h_n", "c_n", "train y", "train h_n", "train c_n"), fours, eights):
        assert torch.isfinite(four).all(), name
        if same_plan:
            assert torch.equal(four, eight), name
        else:
            assert _relative_error(four, eight.double()) <= GLUON_TOLERANCE[torch.bfloat16] / 10, name


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("directions, lengths", [(1, False), (2, True)], ids=["plain", "bidirectional-lengths"])
def test_gluon_training_forward_saves_the_plain_kernels_gates_and_cell_states(dtype, directions, lengths):
    """The training forward overwrites xg with the activated gates and stores the float32 cell states
    c_all, which the (plain) backward reads: both must equal the plain kernel's, up to the rounding
    difference of :data:`GLUON_TOLERANCE`, including rows that end early (unwritten gates keep xg)."""
    from rnnbench.kernels.lstm import lstm_layer

    _require_gluon()
    T, B, I, H = 9, 48, 24, 320
    generator = torch.Generator(device="cuda").manual_seed(5)
    x = torch.randn(T, B, I, device="cuda", generator=generator).to(dtype)
    h0 = (0.5 * torch.randn(directions, B, H, device="cuda", generator=generator)).to(dtype)
    c0 = (0.5 * torch.randn(directions, B, H, device="cuda", generator=generator)).to(dtype)
    w_ih = (0.2 * torch.randn(directions, 4 * H, I, device="cuda", generator=generator)).to(dtype)
    w_hh = (0.05 * torch.randn(directions, 4 * H, H, device="cuda", generator=generator)).to(dtype)
    b_ih, b_hh = ((0.1 * torch.randn(directions, 4 * H, device="cuda", generator=generator)).to(dtype) for _ in range(2))
    row_lengths = torch.randint(1, T + 1, (B,), generator=torch.Generator().manual_seed(6)) if lengths else None
    saved = {}
    for path in ("gluon", "cooperative"):
        with poisoned_outputs():
            y, _, c_n = lstm_layer(x.clone().requires_grad_(), h0, c0, w_ih, w_hh, b_ih, b_hh, row_lengths, path)
        saved[path] = (y, c_n, y.grad_fn.gates, y.grad_fn.c_all)
    check_barriers(wait=True)
    tolerance = GLUON_TOLERANCE[dtype]
    for name, actual, base in zip(("y", "c_n", "gates", "c_all"), saved["gluon"], saved["cooperative"]):
        if name == "c_all" and lengths:
            # either kernel writes the positions [0, length) of a row, in both directions; the others
            # keep the NaN they were poisoned with
            written = (torch.arange(T)[:, None] < row_lengths[None, :]).to("cuda")[None, :, :, None]
            actual, base = torch.where(written, actual, 0.0), torch.where(written, base, 0.0)
        assert _relative_error(actual, base.double()) <= tolerance, (name, _relative_error(actual, base.double()))


def test_gluon_path_through_the_drop_in_module_forward_and_backward():
    """``TritonLSTM(..., path="gluon")``, bidirectional, on a packed batch of mixed lengths: forward and
    backward by the Gluon kernels, against float64 torch.nn.LSTM (bounds of the bf16 test above:
    outputs 1e-2, gradients 5e-2 relative)."""
    _check_gluon_drop_in()


@pytest.mark.streamed_copies
def test_gluon_path_through_the_drop_in_module_with_streamed_copies():
    """:func:`_check_gluon_drop_in` with the backward's copies streamed (both directions in one
    launch, rows of mixed lengths)."""
    from rnnbench.kernels.plan import gluon_streamed_copies
    from rnnbench.kernels.switches import streamed_copies

    _require_gluon()
    with streamed_copies(True):
        like = torch.empty(0, dtype=torch.bfloat16, device="cuda")
        assert gluon_streamed_copies(make_plan("lstm", 320, 48, like, "gluon", 2, backward=True))
        _check_gluon_drop_in()


def _check_gluon_drop_in():
    """The check of :func:`test_gluon_path_through_the_drop_in_module_forward_and_backward`."""
    _require_gluon()
    T, B, I, H = 33, 48, 24, 320
    torch.manual_seed(0)
    candidate = TritonLSTM(I, H, bidirectional=True, path="gluon").to("cuda", torch.bfloat16)
    like = torch.empty(0, dtype=torch.bfloat16, device="cuda")
    assert make_plan("lstm", H, B, like, "gluon", 2, backward=True).path == "gluon"
    reference = torch.nn.LSTM(I, H, bidirectional=True).to("cuda", torch.float64)
    reference.load_state_dict({name: value.to(torch.float64) for name, value in candidate.state_dict().items()})
    lengths = torch.randint(1, T + 1, (B,), generator=torch.Generator().manual_seed(3))
    x = torch.randn(T, B, I, device="cuda").to(torch.bfloat16)
    results = []
    for module, inputs in ((candidate, x), (reference, x.double())):
        inputs = inputs.detach().clone().requires_grad_()
        packed = torch.nn.utils.rnn.pack_padded_sequence(inputs, lengths, enforce_sorted=False)
        output, (h_n, c_n) = module(packed)
        padded, _ = torch.nn.utils.rnn.pad_packed_sequence(output, total_length=T)
        loss = padded.double().square().sum() + h_n.double().sum() + c_n.double().sum()
        grads = torch.autograd.grad(loss, [inputs, *module.parameters()])
        results.append(([padded, h_n, c_n], grads))
    check_barriers(wait=True)
    (outputs, grads), (expected_outputs, expected_grads) = results
    for actual, expected in zip(outputs, expected_outputs):
        assert _relative_error(actual, expected) <= 1e-2
    for index, (actual, expected) in enumerate(zip(grads, expected_grads)):
        assert _relative_error(actual, expected) <= 5e-2, index


# ---- the Gluon forward with its input projection fused (GLUON_FUSED_INPUT) ---------------------

#: (H, B, T, input size, directions): the goal shape at T=1024, one row with 3 input tiles, 4 batch
#: blocks with 4 tiles, one step of H=448 (a partly used last weight tile) with 16 input tiles, one
#: input tile over 33 steps, and both directions in one launch
FUSED_SHAPES = [(768, 16, 1024, 768, 1), (320, 1, 7, 192, 1), (512, 64, 9, 256, 1), (448, 5, 1, 1024, 1),
                (256, 16, 33, 64, 1), (320, 16, 7, 128, 2)]


def _fused_and_unfused(monkeypatch, hidden_size: int, batch: int, steps: int, input_size: int, directions: int,
                       dtype: torch.dtype):
    """``(module, float64 reference, x, states, run)``: a Gluon LSTM, its float64 torch.nn twin, inputs,
    and ``run(fused)``, the module's inference forward ``[y, h_n, c_n]`` with the input projection
    fused into the Gluon forward (checked planned) or not, outputs poisoned with NaN first."""

    _require_gluon()
    torch.manual_seed(0)
    module = TritonLSTM(input_size, hidden_size, bidirectional=directions == 2, path="gluon").to("cuda", dtype)
    reference = torch.nn.LSTM(input_size, hidden_size, bidirectional=directions == 2).to("cuda", torch.float64)
    reference.load_state_dict({name: value.to(torch.float64) for name, value in module.state_dict().items()})
    generator = torch.Generator(device="cuda").manual_seed(1)
    x = torch.randn(steps, batch, input_size, device="cuda", generator=generator).to(dtype)
    states = tuple((0.5 * torch.randn(directions, batch, hidden_size, device="cuda", generator=generator)).to(dtype)
                   for _ in range(2))

    def run(fused: bool):
        monkeypatch.setattr(switches, "GLUON_FUSED_INPUT", fused)
        plan = make_plan("lstm", hidden_size, batch, x, "gluon", directions, input_size=input_size)
        assert (plan.input_tiles > 0) == fused, plan
        with poisoned_outputs():
            return _layer_output(module, x, states)

    return module, reference, x, states, run


@pytest.mark.fused_input
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("hidden_size, batch, steps, input_size, directions", FUSED_SHAPES)
def test_gluon_forward_with_its_input_projection_fused_matches_the_unfused_one_and_float64(
        monkeypatch, dtype, hidden_size, batch, steps, input_size, directions):
    """The fused forward (a second warpgroup projects x_t a step or two ahead, float32, no xg buffer)
    against the same module with the projection a GEMM (:data:`GLUON_TOLERANCE`: the unfused one
    rounds xg to the storage type, the fused one does not) and against float64, with no growth along
    T; every output written (NaN-poisoned first)."""
    _, reference, x, states, run = _fused_and_unfused(monkeypatch, hidden_size, batch, steps, input_size, directions,
                                                      dtype)
    fused, unfused = run(True), run(False)
    check_barriers(wait=True)
    _assert_forward_within_gluon_tolerance(fused, unfused, _layer_output(reference, x.double(), tuple(
        s.double() for s in states)), dtype)


@pytest.mark.fused_input
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_gluon_training_forward_with_its_input_projection_fused_trains(monkeypatch, dtype):
    """Training through the fused forward (it stores the activated gates into a buffer of its own
    and the float32 cell states, which the backward reads): the saved gates and cell states equal
    the unfused forward's up to :data:`GLUON_TOLERANCE`, and every gradient matches float64 within
    the bounds of the bf16 tests above (5e-2)."""
    from rnnbench.kernels.lstm import lstm_layer


    _require_gluon()
    T, B, I, H = 17, 16, 128, 320
    generator = torch.Generator(device="cuda").manual_seed(5)
    x = torch.randn(T, B, I, device="cuda", generator=generator).to(dtype)
    h0, c0 = ((0.5 * torch.randn(1, B, H, device="cuda", generator=generator)).to(dtype) for _ in range(2))
    w_ih = (0.2 * torch.randn(1, 4 * H, I, device="cuda", generator=generator)).to(dtype)
    w_hh = (0.05 * torch.randn(1, 4 * H, H, device="cuda", generator=generator)).to(dtype)
    b_ih, b_hh = ((0.1 * torch.randn(1, 4 * H, device="cuda", generator=generator)).to(dtype) for _ in range(2))
    parameters = [w_ih, w_hh, b_ih, b_hh]
    saved, grads = {}, {}
    for fused in (True, False):
        monkeypatch.setattr(switches, "GLUON_FUSED_INPUT", fused)
        assert (make_plan("lstm", H, B, x, "gluon", input_size=I).input_tiles > 0) == fused
        inputs = [t.detach().clone().requires_grad_() for t in (x, h0, c0, *parameters)]
        with poisoned_outputs():
            y, h_n, c_n = lstm_layer(*inputs[:3], *inputs[3:], None, "gluon")
        saved[fused] = (y.detach(), y.grad_fn.gates.clone(), y.grad_fn.c_all.clone())
        loss = y.double().square().sum() + h_n.double().sum() + c_n.double().sum()
        grads[fused] = torch.autograd.grad(loss, inputs)
    check_barriers(wait=True)
    tolerance = GLUON_TOLERANCE[dtype]
    for name, actual, base in zip(("y", "gates", "c_all"), saved[True], saved[False]):
        assert torch.isfinite(actual).all(), name
        assert _relative_error(actual, base.double()) <= tolerance, (name, _relative_error(actual, base.double()))
    reference = torch.nn.LSTM(I, H).to("cuda", torch.float64)
    with torch.no_grad():
        for name, value in zip(("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"), parameters):
            getattr(reference, name).copy_(value[0].double())
    inputs = [t.detach().double().requires_grad_() for t in (x, h0, c0)]
    y, (h_n, c_n) = reference(inputs[0], (inputs[1], inputs[2]))
    loss = y.square().sum() + h_n.sum() + c_n.sum()
    expected = torch.autograd.grad(loss, [*inputs, *reference.parameters()])
    for index, (actual, exact) in enumerate(zip(grads[True], expected)):
        assert _relative_error(actual.reshape(exact.shape), exact) <= 5e-2, index


# ---- the Gluon LSTM backward (path="gluon", sm_90 only) -----------------------------------------

#: (H, B, T): h_pad 384 (3 copies of 8 gate-gradient tiles, all in flight), 768 (6 copies, all in
#: flight), 1152 (9 copies in a ring of 4 stages: stages used 3, 2, 2 and 2 times a step) and 1024
#: at B=64 (32-row blocks, 8 copies in a ring of 2); one row, a partly filled block, one step (the
#: product of step -1 only), and T=1024 (parities of a thousand products)
GLUON_BACKWARD_SHAPES = [(320, 1, 7), (320, 48, 1), (768, 16, 1024), (768, 48, 7), (1040, 16, 7), (1024, 64, 7)]
#: relative error (Frobenius) of the gradients against float64 and against the plain backward: each
#: step rounds the gate gradients to the storage type (bf16 2^-8, fp16 2^-11) and dW_hh sums T*B of
#: them (the bound of the bf16 T=1024 test); the two kernels add the same products in another order
GLUON_BACKWARD_TOLERANCE = {torch.bfloat16: 5e-2, torch.float16: 1e-2}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("hidden_size, batch, steps", GLUON_BACKWARD_SHAPES)
def test_gluon_backward_matches_the_plain_cooperative_kernel_and_float64(dtype, hidden_size, batch, steps):
    """Every gradient (dx, dh0, dc0, dW_ih, dW_hh, biases) of path="gluon" (Gluon forward and
    backward) against path="cooperative" and against float64 from the same rounded weights and
    inputs (:data:`GLUON_BACKWARD_TOLERANCE`); outputs poisoned with NaN first. A gradient that
    vanished along T in float64 (RMS below 1e-6) must stay below 1e-3 RMS instead."""
    _check_gluon_backward(dtype, hidden_size, batch, steps)


@pytest.mark.streamed_copies
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("hidden_size, batch, steps", GLUON_BACKWARD_SHAPES)
def test_gluon_backward_with_streamed_copies_matches_the_plain_kernel_float64_and_the_barrier_bit_for_bit(
        dtype, hidden_size, batch, steps):
    """:func:`_check_gluon_backward` with the copies streamed by the copier warp
    (:func:`rnnbench.kernels.switches.streamed_copies`, the step ablation's ``real_gluon_bwd_streamed``),
    where the plan allows it (every copy in a stage of its own); and its gradients equal those of
    the barrier's Gluon backward bit for bit: the same copies multiplied in the same order, only
    issued earlier."""
    from rnnbench.kernels.plan import gluon_streamed_copies
    from rnnbench.kernels.switches import streamed_copies

    _require_gluon()
    with streamed_copies(True):
        candidate, _, _, (x, states, upstream) = _gluon_plain_and_float64(hidden_size, batch, steps, dtype)
        plan = make_plan("lstm", hidden_size, batch, x, "gluon", backward=True)
        if plan.path != "gluon" or not gluon_streamed_copies(plan):
            pytest.skip(f"no streamed copies in the backward plan {plan} of H={hidden_size} B={batch} on this GPU")
        _check_gluon_backward(dtype, hidden_size, batch, steps)
        with poisoned_outputs():
            _, streamed = _run(candidate, x, states, upstream)
    with streamed_copies(False), poisoned_outputs():
        _, barrier = _run(candidate, x, states, upstream)
    check_barriers(wait=True)
    for index, (actual, expected) in enumerate(zip(streamed, barrier)):
        assert torch.equal(actual, expected), (index, float((actual.double() - expected.double()).abs().max()))


@pytest.mark.streamed_copies
def test_a_streamed_backward_waiting_for_a_program_never_launched_times_out_instead_of_hanging():
    """The streamed Gluon backward launched with one hidden block fewer than its plan: the missing
    producer's flag never reaches 1, so every copier's first product (reading step T-1's gate
    gradients, target 1) gives up after the timeout and issues its copies anyway (no mbarrier wait
    of the recurrence hangs), later products after one poll, and the launch ends with the
    barrier's error naming step 1."""
    from rnnbench.kernels.gluon_lstm_backward import run_backward
    from rnnbench.kernels.launch import BarrierTimeout, exchange_buffer
    from rnnbench.kernels.plan import gluon_streamed_copies
    from rnnbench.kernels.switches import streamed_copies

    _require_gluon()
    T, B, H = 5, 16, 768
    generator = torch.Generator(device="cuda").manual_seed(5)
    gates = torch.rand(1, T, B, 4 * H, device="cuda", generator=generator).to(torch.bfloat16)
    w_hh = (0.05 * torch.randn(1, 4 * H, H, device="cuda", generator=generator)).to(torch.bfloat16)
    c_all = torch.randn(1, T, B, H, device="cuda", generator=generator)
    c0 = torch.zeros(1, B, H, dtype=torch.bfloat16, device="cuda")
    dy = torch.randn(T, B, H, device="cuda", generator=generator).to(torch.bfloat16)
    dh_n = torch.zeros(1, B, H, dtype=torch.bfloat16, device="cuda")
    dc_n = torch.zeros(1, B, H, dtype=torch.bfloat16, device="cuda")
    dh0 = torch.empty(1, B, H, dtype=torch.float32, device="cuda")
    dc0 = torch.empty(1, B, H, dtype=torch.float32, device="cuda")
    check_barriers(wait=True)
    with streamed_copies(True):
        plan = make_plan("lstm", H, B, dy, "gluon", backward=True)
        assert gluon_streamed_copies(plan), plan
        run_backward(plan, gates, w_hh, c_all, c0, dy, dh_n, dc_n, dh0, dc0, exchange_buffer(plan, 4, dy),
                     torch.zeros(1, dtype=torch.int32, device="cuda"), (T, B, H), has_lengths=False,
                     hidden_blocks=plan.grid[0] - 1)
    with pytest.raises(BarrierTimeout, match="at step 1"):
        check_barriers(wait=True)


def _check_gluon_backward(dtype, hidden_size, batch, steps):
    """The check of :func:`test_gluon_backward_matches_the_plain_cooperative_kernel_and_float64`."""
    _require_gluon()
    candidate, plain, reference, (x, states, upstream) = _gluon_plain_and_float64(hidden_size, batch, steps, dtype)
    plan = make_plan("lstm", hidden_size, batch, x, "gluon", backward=True)
    if plan.path != "gluon":  # not co-resident on this GPU: forced Gluon trains with the plain backward
        pytest.skip(f"this GPU ({torch.cuda.get_device_properties(0).multi_processor_count} SMs) plans the "
                    f"backward of H={hidden_size} B={batch} as {plan}")
    with poisoned_outputs():
        _, gluon_grads = _run(candidate, x, states, upstream)
        _, plain_grads = _run(plain, x, states, upstream)
    check_barriers(wait=True)
    _, expected = _run(reference, x.double(), [s.double() for s in states], [u.double() for u in upstream])
    tolerance = GLUON_BACKWARD_TOLERANCE[dtype]
    rms = lambda t: float(t.double().norm()) / t.numel() ** 0.5  # noqa: E731
    for index, (actual, base, exact) in enumerate(zip(gluon_grads, plain_grads, expected)):
        assert torch.isfinite(actual).all(), index
        if rms(exact) < 1e-6:
            assert rms(actual) <= 1e-3, f"gradient {index} vanished in float64 but not here: RMS {rms(actual):.3g}"
            continue
        assert _relative_error(actual, exact) <= tolerance, (index, _relative_error(actual, exact))
        assert _relative_error(actual, base.double()) <= tolerance, (index, _relative_error(actual, base.double()))
