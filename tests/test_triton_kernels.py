"""TritonRNN / TritonLSTM against torch.nn.RNN / torch.nn.LSTM with the same weights.

On a machine without a GPU these run in the Triton interpreter on CPU tensors (see conftest.py),
so shapes stay small. Every comparison covers the output, the final states and the gradients of the
input, the initial states and every parameter, for random upstream gradients on the output and on
the final states; output buffers are NaN-poisoned so an element a kernel forgets to write fails.

Tolerances: float32 forward 1e-5, gradients 1e-4 (absolute and relative), with TF32 off on both
sides so the GPU run compares true fp32 arithmetic (the interpreter is exact fp32 anyway).
"""

from __future__ import annotations

import pytest
import torch

from conftest import KERNEL_DEVICE
from rnnbench.kernels import TritonLSTM, TritonRNN
from rnnbench.kernels.launch import make_plan, poisoned_outputs
from rnnbench.kernels.plan import PathUnavailable, fits_persistent, plan_recurrence

FWD_TOL = dict(atol=1e-5, rtol=1e-5)
GRAD_TOL = dict(atol=1e-4, rtol=1e-4)
CELLS = {
    "lstm": (TritonLSTM, torch.nn.LSTM, {}),
    "rnn_tanh": (TritonRNN, torch.nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (TritonRNN, torch.nn.RNN, {"nonlinearity": "relu"}),
}
#: (T, B, I, H): T = 1, non-power-of-two H, batch 1, I != H, H needing padding to 128, and H=12 (padded
#: to 16), the largest an fp32 LSTM runs persistent
SHAPES = [(1, 1, 5, 20), (7, 3, 5, 48), (33, 3, 20, 100), (7, 1, 48, 20), (9, 2, 7, 12)]
PATHS = ("auto", "persistent", "cooperative", "stepwise")


pytestmark = pytest.mark.usefixtures("exact_fp32")


def _pair(cell: str, input_size: int, hidden_size: int, dtype=torch.float32, path="auto", **options):
    triton_class, torch_class, cell_options = CELLS[cell]
    torch.manual_seed(0)
    reference = torch_class(input_size, hidden_size, **cell_options, **options).to(KERNEL_DEVICE, dtype)
    candidate = triton_class(input_size, hidden_size, path=path, **cell_options, **options).to(KERNEL_DEVICE, dtype)
    candidate.load_state_dict(reference.state_dict())
    return candidate, reference


def _run(module, x, hx, upstream):
    """Outputs and gradients ``[output, *final states, dx, *d initial states, *d parameters]``."""
    x = x.detach().clone().requires_grad_()
    states = [state.detach().clone().requires_grad_() for state in hx]
    output, final = module(x, tuple(states) if len(states) == 2 else states[0])
    outputs = [output, *(final if isinstance(final, tuple) else (final,))]
    grads = torch.autograd.grad(outputs, [x, *states, *module.parameters()], upstream)
    return outputs, list(grads)


def _inputs(cell, T, B, I, H, layers=1, batch_first=False, dtype=torch.float32):
    generator = torch.Generator().manual_seed(1)
    shape = (B, T, I) if batch_first else (T, B, I)
    x = torch.randn(shape, generator=generator)
    hx = [0.5 * torch.randn(layers, B, H, generator=generator) for _ in range(2 if cell == "lstm" else 1)]
    out_shape = (B, T, H) if batch_first else (T, B, H)
    upstream = [torch.randn(out_shape, generator=generator)] + [torch.randn(layers, B, H, generator=generator) for _ in hx]
    move = lambda t: t.to(KERNEL_DEVICE, dtype)  # noqa: E731
    return move(x), [move(h) for h in hx], [move(u) for u in upstream]


def _assert_same(candidate, reference, x, hx, upstream, fwd_tol=FWD_TOL, grad_tol=GRAD_TOL):
    with poisoned_outputs():
        outputs, grads = _run(candidate, x, hx, upstream)
    expected_outputs, expected_grads = _run(reference, x, hx, upstream)
    names = ["output", "h_n", "c_n"][: len(outputs)]
    for name, actual, expected in zip(names, outputs, expected_outputs):
        torch.testing.assert_close(actual, expected, **fwd_tol, msg=lambda m: f"{name}: {m}")
    grad_names = ["dx"] + [f"d{n}" for n in ("h0", "c0")[: len(hx)]] + [f"d{n}" for n, _ in reference.named_parameters()]
    for name, actual, expected in zip(grad_names, grads, expected_grads):
        torch.testing.assert_close(actual, expected, **grad_tol, msg=lambda m: f"{name}: {m}")


def _valid(cell, path, H, dtype=torch.float32):
    cell = "lstm" if cell == "lstm" else "rnn"
    return path != "persistent" or (fits_persistent(cell, H, dtype) and fits_persistent(cell, H, dtype, backward=True))


CASES = [
    pytest.param(cell, path, shape, id=f"{cell}-{path}-T{shape[0]}B{shape[1]}I{shape[2]}H{shape[3]}")
    for cell in CELLS for path in PATHS for shape in SHAPES if _valid(cell, path, shape[3])
]


@pytest.mark.parametrize("cell, path, shape", CASES)
def test_matches_torch_nn(cell, path, shape):
    T, B, I, H = shape
    candidate, reference = _pair(cell, I, H, path=path)
    x, hx, upstream = _inputs(cell, T, B, I, H)
    _assert_same(candidate, reference, x, hx, upstream)


@pytest.mark.parametrize("cell", CELLS)
def test_two_layers_batch_first(cell):
    candidate, reference = _pair(cell, 6, 24, num_layers=2, batch_first=True)
    x, hx, upstream = _inputs(cell, 5, 3, 6, 24, layers=2, batch_first=True)
    _assert_same(candidate, reference, x, hx, upstream)


@pytest.mark.parametrize("cell", CELLS)
def test_grid_barrier_path(cell):
    """A cooperative launch with a single hidden block (H=8) runs the in-kernel loop and its grid
    barrier's arrival even in the interpreter (one participant per barrier has nothing to wait
    for); in 16-bit three batch blocks of 32 rows (plan.HALF_BLOCK_B); in fp32 (16-row blocks,
    plan.FP32_MAX_BLOCK_B) five."""
    name = "lstm" if cell == "lstm" else "rnn"
    assert plan_recurrence(name, 8, 70, torch.float16, "cooperative").grid == (1, 3)
    assert plan_recurrence(name, 8, 70, torch.float32, "cooperative").grid == (1, 5)
    candidate, reference = _pair(cell, 3, 8, path="cooperative")
    x, hx, upstream = _inputs(cell, 3, 70, 3, 8)
    _assert_same(candidate, reference, x, hx, upstream)


@pytest.mark.parametrize("cell", CELLS)
def test_defaults_without_bias_or_initial_state(cell):
    candidate, reference = _pair(cell, 4, 12, bias=False)
    x = torch.randn(6, 2, 4).to(KERNEL_DEVICE)
    with poisoned_outputs():
        output, final = candidate(x)
    expected_output, expected_final = reference(x)
    torch.testing.assert_close(output, expected_output, **FWD_TOL)
    for actual, expected in zip(final if isinstance(final, tuple) else (final,), expected_final if isinstance(expected_final, tuple) else (expected_final,)):
        torch.testing.assert_close(actual, expected, **FWD_TOL)


@pytest.mark.parametrize("cell", CELLS)
def test_unbatched_input(cell):
    candidate, reference = _pair(cell, 4, 12)
    x = torch.randn(5, 4).to(KERNEL_DEVICE)
    output, _ = candidate(x)
    expected, _ = reference(x)
    assert output.shape == (5, 12)
    torch.testing.assert_close(output, expected, **FWD_TOL)


# ---- fp16 against the float64 NumPy reference -------------------------------------------------

#: fp16 stores 11 significant bits (unit roundoff 4.9e-4): inputs are rounded to fp16 first and the
#: reference is computed in float64 from those rounded values, so the bound below measures the
#: kernels' own rounding (states, gates and products stored in fp16 each step, fp32 accumulation),
#: relative to the largest reference magnitude of each tensor.
FP16_FWD_TOL = 4e-3
FP16_GRAD_TOL = 1e-2


@pytest.mark.parametrize("cell", ["lstm", "rnn_tanh"])
@pytest.mark.parametrize("path", ["auto", "stepwise"])
def test_float16_against_numpy_float64(cell, path):
    T, B, I, H = 9, 3, 7, 40
    candidate, _ = _pair(cell, I, H, dtype=torch.float16, path=path)
    _assert_float16_matches_float64(candidate, cell, T, B, I, H)


@pytest.mark.parametrize("cell", ["lstm", "rnn_tanh"])
def test_wide_float16_backward_with_a_slice_per_warp_against_numpy_float64(cell, monkeypatch):
    """The 16-bit cooperative backward's layout above ``BACKWARD_WIDE_H_PAD`` (8 warps, 8 reduction
    slices of the held weight blocks, summed by ``sum_slices``' halving), lowered to H=80 (one
    chunk of 128 columns) and one hidden block of 128 units, so the interpreter runs the in-kernel
    loop over the held blocks (whose 8 slices' scratch would not fit one SM's shared memory, a limit
    the interpreter does not have)."""
    import rnnbench.kernels.plan

    name = "lstm" if cell == "lstm" else "rnn"
    monkeypatch.setattr(rnnbench.kernels.plan, "BACKWARD_WIDE_H_PAD", 32)
    monkeypatch.setattr(rnnbench.kernels.plan, "BACKWARD_UNITS", 128)
    monkeypatch.setattr(rnnbench.kernels.plan, "_fits_one_multiprocessor", lambda *args: True)
    plan = rnnbench.kernels.plan.plan_recurrence(name, 80, 3, torch.float16, "cooperative", backward=True)
    assert (plan.k_split, plan.num_warps, plan.k_chunks, plan.grid) == (8, 8, 1, (1, 1))
    skip_where_a_gpu_refuses(name, 80, 3, torch.float16)
    T, B, I, H = 6, 3, 5, 80
    candidate, _ = _pair(cell, I, H, dtype=torch.float16, path="cooperative")
    _assert_float16_matches_float64(candidate, cell, T, B, I, H)


@pytest.mark.parametrize("cell, hidden, units, hidden_blocks", [
    ("lstm", 40, 16, 3), ("lstm", 16, 16, 1), ("rnn_tanh", 40, 32, 2), ("rnn_tanh", 32, 32, 1)])
def test_float16_in_32_row_blocks_against_numpy_float64(cell, hidden, units, hidden_blocks):
    """The 16-bit cooperative layer of a batch wider than 16 rows (plan.HALF_BLOCK_B,
    plan.HALF_BLOCK_UNITS), forward and backward: B=20 in one 32-row block; H=40 in several blocks
    of units, the last partly filled (the interpreter runs them step by step), or one block (the
    in-kernel time loop)."""
    from rnnbench.kernels.plan import plan_recurrence

    name = "lstm" if cell == "lstm" else "rnn"
    for backward in (False, True):
        plan = plan_recurrence(name, hidden, 20, torch.float16, "cooperative", backward=backward)
        assert (plan.block_b, plan.block_h, plan.grid) == (32, units, (hidden_blocks, 1))
    T, B, I, H = 5, 20, 6, hidden
    candidate, _ = _pair(cell, I, H, dtype=torch.float16, path="cooperative")
    _assert_float16_matches_float64(candidate, cell, T, B, I, H)


@pytest.mark.parametrize("cell, hidden", [("lstm", 40), ("lstm", 8), ("rnn_tanh", 40)])
def test_float16_wide_batch_in_16_row_blocks_against_numpy_float64(cell, hidden, monkeypatch):
    """A 16-bit batch wider than 16 rows in the layout of B <= 16 (plan.narrow_batch_blocks, which a
    GPU plans where the grid fits one program per SM), forward and backward: B=40 in three 16-row
    blocks, the last partly filled; H=40 in several blocks of units (run step by step here), or H=8
    in one (the in-kernel time loop). The interpreter plans no GPU, so the layers are handed the
    132-SM plan."""
    import rnnbench.kernels.lstm
    import rnnbench.kernels.rnn
    from rnnbench.kernels.plan import plan_recurrence

    name = "lstm" if cell == "lstm" else "rnn"
    T, B, I = 5, 40, 6

    def gpu_plan(cell_name, hidden_size, batch, like, path, directions=1, backward=False, input_size=None,
                 inference=False):
        return plan_recurrence(cell_name, hidden_size, batch, like.dtype, path, 132, directions=directions, arch=90,
                               backward=backward, input_size=input_size, inference=inference)

    for backward in (False, True):
        plan = gpu_plan(name, hidden, B, torch.empty(0, dtype=torch.float16), "cooperative", backward=backward)
        assert plan.block_b == 16 and plan.grid[1] == 3, plan
    for module in (rnnbench.kernels.lstm, rnnbench.kernels.rnn):
        monkeypatch.setattr(module, "make_plan", gpu_plan)
    candidate, _ = _pair(cell, I, hidden, dtype=torch.float16, path="cooperative")
    _assert_float16_matches_float64(candidate, cell, T, B, I, hidden)


def _assert_float16_matches_float64(candidate, cell, T, B, I, H):
    """Outputs and gradients of the fp16 module ``candidate`` on random inputs against the NumPy
    float64 reference computed from the same fp16-rounded weights and inputs."""
    import numpy as np

    from rnnbench.baselines import numpy_rnn

    x, hx, upstream = _inputs(cell, T, B, I, H, dtype=torch.float16)
    with poisoned_outputs():
        outputs, grads = _run(candidate, x, hx, upstream)
    as64 = lambda t: t.detach().to("cpu", torch.float64).numpy()  # noqa: E731
    weights = [as64(p) for p in candidate.parameters()]
    if cell == "lstm":
        y, h_n, c_n, cache = numpy_rnn.lstm_forward(as64(x), as64(hx[0][0]), as64(hx[1][0]), *weights)
        expected = [y, h_n, c_n]
        back = numpy_rnn.lstm_backward(as64(upstream[0]), as64(upstream[1][0]), as64(upstream[2][0]), cache)
        expected_grads = [back[k] for k in ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh")]
    else:
        y, h_n, cache = numpy_rnn.rnn_forward(as64(x), as64(hx[0][0]), *weights)
        expected = [y, h_n]
        back = numpy_rnn.rnn_backward(as64(upstream[0]), as64(upstream[1][0]), cache)
        expected_grads = [back[k] for k in ("dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh")]
    squeeze = lambda t, ref: as64(t).reshape(ref.shape)  # noqa: E731  (states carry a layer axis)
    for actual, ref in zip(outputs, expected):
        assert np.max(np.abs(squeeze(actual, ref) - ref)) <= FP16_FWD_TOL * max(1.0, np.max(np.abs(ref)))
    for actual, ref in zip(grads, expected_grads):
        assert np.max(np.abs(squeeze(actual, ref) - ref)) <= FP16_GRAD_TOL * max(1.0, np.max(np.abs(ref)))


# ---- a short training run ---------------------------------------------------------------------

def _copy_task_losses(lstm_class, steps=30):
    """Losses of 30 Adam steps on a lag-2 copy task (T=10, 4 symbols), from fixed initial weights."""
    generator = torch.Generator().manual_seed(3)
    symbols = torch.randint(0, 4, (10, 8), generator=generator)
    x = torch.nn.functional.one_hot(symbols, 4).float().to(KERNEL_DEVICE)
    target = torch.cat([torch.zeros(2, 8, dtype=torch.long), symbols[:-2]]).to(KERNEL_DEVICE)
    torch.manual_seed(4)
    reference = torch.nn.LSTM(4, 16).to(KERNEL_DEVICE)
    readout = torch.nn.Linear(16, 4).to(KERNEL_DEVICE)
    lstm = lstm_class(4, 16).to(KERNEL_DEVICE)
    lstm.load_state_dict(reference.state_dict())
    optimizer = torch.optim.Adam([*lstm.parameters(), *readout.parameters()], lr=1e-2)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        output, _ = lstm(x)
        loss = torch.nn.functional.cross_entropy(readout(output).reshape(-1, 4), target.reshape(-1))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_training_loss_curve_matches_torch_lstm():
    triton_losses = _copy_task_losses(TritonLSTM)
    torch_losses = _copy_task_losses(torch.nn.LSTM)
    assert triton_losses[-1] < triton_losses[0] - 0.05, "the copy task did not train at all"
    assert max(abs(a - b) for a, b in zip(triton_losses, torch_losses)) <= 1e-4


# ---- bad input -----------------------------------------------------------------------------------

# Bad inputs shared with torch.nn (shapes, dtypes, devices of the input and states) are tested for
# both drop-in families in test_drop_in.py; these are the Triton modules' own.

def test_cpu_tensor_without_interpreter_tells_how(monkeypatch):
    import rnnbench.kernels.launch

    monkeypatch.setattr(rnnbench.kernels.launch, "interpreter_active", lambda: False)
    module = TritonRNN(4, 8)
    with pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
        module(torch.randn(3, 2, 4))


@pytest.mark.parametrize("triton_version, numpy_version, refused", [
    ("3.6.0", "2.4.0", True), ("3.6.0", "2.5.2", True), ("3.6.1", "2.4.6rc1", True),
    ("3.6.0", "2.3.5", False), ("3.7.0", "2.4.6", False), ("3.9.0", "2.4.6", False), ("4.0.0", "3.0.0", False),
])
def test_interpreter_refusal_names_the_versions_that_cannot_run(triton_version, numpy_version, refused):
    """Triton 3.6's interpreter with NumPy >= 2.4 fails every kernel with "only 0-dimensional arrays
    can be converted to Python scalars" (seen with the GPU machine's torch 2.11 and Triton 3.6 on this
    CPU); both versions and the way out are named instead."""
    from rnnbench.kernels.launch import interpreter_refusal

    reason = interpreter_refusal(triton_version, numpy_version)
    assert (reason is not None) == refused, reason
    if refused:
        assert f"Triton {triton_version}" in reason and f"NumPy {numpy_version}" in reason
        assert "Triton >= 3.7 or NumPy < 2.4" in reason


def test_refused_interpreter_is_a_clear_error_and_a_skipped_backend(monkeypatch):
    import rnnbench.kernels.launch
    from rnnbench.harness.backends import _triton_requirement

    monkeypatch.setattr(rnnbench.kernels.launch.triton, "__version__", "3.6.0")
    monkeypatch.setattr(rnnbench.kernels.launch.np, "__version__", "2.4.6")
    with pytest.raises(RuntimeError, match="TritonRNN: the interpreter of Triton 3.6.0 cannot run with NumPy 2.4.6"):
        TritonRNN(4, 8)(torch.randn(3, 2, 4))
    assert "NumPy 2.4.6" in _triton_requirement("cpu", "float32")
    assert _triton_requirement("cuda", "float32") != _triton_requirement("cpu", "float32")


def test_unknown_path():
    with pytest.raises(ValueError, match="path must be 'auto' or one of"):
        TritonLSTM(4, 8, path="fastest")


def test_persistent_refused_when_weights_do_not_fit():
    module, _ = _pair("lstm", 4, 200, path="persistent")
    with pytest.raises(ValueError, match="path='persistent' needs all of W_hh"):
        module(torch.randn(2, 1, 4).to(KERNEL_DEVICE))


def _kernel_modes(monkeypatch) -> list[bool]:
    """The ``TRAINING`` constexpr of every LSTM forward launch from now on (the kernels still run)."""
    import rnnbench.kernels.lstm

    modes, launch = [], rnnbench.kernels.lstm.run_phases

    def recording(*args, **constexprs):
        if "TRAINING" in constexprs:
            modes.append(constexprs["TRAINING"])
        return launch(*args, **constexprs)

    monkeypatch.setattr(rnnbench.kernels.lstm, "run_phases", recording)
    return modes


@pytest.mark.parametrize("proj_size", [0, 3])
def test_lstm_inference_forward_stores_nothing_for_a_backward(proj_size, monkeypatch):
    """Under ``torch.no_grad()`` (the parameters still require grad: ``ctx.needs_input_grad`` says
    so even there) and with nothing requiring grad, the LSTM runs the inference kernel, with the
    same outputs; only a call autograd records runs the training forward."""
    modes = _kernel_modes(monkeypatch)
    module, _ = _pair("lstm", 5, 12, proj_size=proj_size)
    x = torch.randn(6, 2, 5).to(KERNEL_DEVICE)
    with torch.no_grad():
        inference, _ = module(x)
    assert modes == [False]
    recorded, _ = module(x)
    assert modes == [False, True]
    torch.testing.assert_close(inference, recorded.detach(), atol=0, rtol=0)
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    module(x)
    assert modes == [False, True, False]


def test_second_backward_raises_instead_of_wrong_gradients():
    module, _ = _pair("lstm", 4, 8)
    output, _ = module(torch.randn(3, 2, 4).to(KERNEL_DEVICE))
    loss = output.sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward can run once per forward"):
        loss.backward()


# ---- a reduction in several chunks ---------------------------------------------------------------

def several_chunks(monkeypatch, cell: str, one_hidden_block: bool) -> None:
    """Shrink the reduction chunk to 64 columns (four warps of 16), so H=80 reduces over two chunks
    (H_PAD=128) split over 4 slices (and, for the LSTM forward's 8 fp32 warps, 2 row parts: a
    batched dot of 8 slices); with ``one_hidden_block`` also widen the hidden block to 128 units,
    so a cooperative launch has a single hidden block and runs its in-kernel loop (the held weight
    blocks) in the interpreter instead of one launch per step (the streamed blocks)."""
    import rnnbench.kernels.plan

    monkeypatch.setattr(rnnbench.kernels.plan, "MAX_CHUNK", 64)
    # Triton 3.6's layouts (one slice per warp) with any Triton: the interpreter runs both
    monkeypatch.setattr(rnnbench.kernels.plan, "BATCHED_DOT_SPREADS_WARPS", False)
    if one_hidden_block:
        monkeypatch.setitem(rnnbench.kernels.plan.GATE_ROWS, "lstm" if cell == "lstm" else "rnn",
                            128 * rnnbench.kernels.plan.GATES["lstm" if cell == "lstm" else "rnn"])
        monkeypatch.setattr(rnnbench.kernels.plan, "BACKWARD_UNITS", 128)
    name = "lstm" if cell == "lstm" else "rnn"
    for backward in (False, True):
        plan = rnnbench.kernels.plan.plan_recurrence(name, 80, 2, torch.float32, "cooperative", backward=backward)
        assert (plan.h_pad, plan.k_split, plan.k_chunks, plan.grid[0] == 1) == (128, 4, 2, one_hidden_block)
        parts = rnnbench.kernels.plan.row_split(name, backward, plan.k_split, plan.num_warps)
        assert parts == (2 if name == "lstm" and not backward else 1)
    skip_where_a_gpu_refuses(name, 80, 2, torch.float32)


def skip_where_a_gpu_refuses(cell: str, hidden_size: int, batch: int, dtype: torch.dtype) -> None:
    """Skip (with the planner's reason) a test of a lowered layout that this GPU cannot hold co-resident,
    forward or backward: e.g. one fp32 LSTM block of 128 units needs 256 KiB of W_hh, more than an SM's
    shared memory. The interpreter has no such limit, so there the test runs."""
    if KERNEL_DEVICE != "cuda":
        return
    like = torch.empty(1, device="cuda", dtype=dtype)
    for backward in (False, True):
        try:
            make_plan(cell, hidden_size, batch, like, "cooperative", backward=backward)
        except PathUnavailable as refusal:
            pytest.skip(f"a layout for the interpreter only; on this GPU: {refusal}")


@pytest.mark.parametrize("cell", ["lstm", "rnn_tanh"])
@pytest.mark.parametrize("held", [True, False], ids=["held", "streamed"])
def test_reduction_in_several_chunks(cell, held, monkeypatch):
    several_chunks(monkeypatch, cell, one_hidden_block=held)
    candidate, reference = _pair(cell, 5, 80, path="cooperative")
    x, hx, upstream = _inputs(cell, 3, 2, 5, 80)
    _assert_same(candidate, reference, x, hx, upstream)
