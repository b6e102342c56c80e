"""TritonLSTM / TritonRNN with the options beyond a plain stack of layers, against torch.nn holding
the same weights: bidirectional layers, PackedSequence input (rows of mixed lengths, sorted or
not), proj_size (LSTM), dropout between layers in training, float64 (the eager reference path).

Every comparison covers the output, the final states and the gradients of the input, the initial
states and every parameter, for random upstream gradients; kernel outputs are NaN-poisoned so an
element a kernel forgets to write fails. Tolerances as in test_triton_kernels.py: float32 forward
1e-5, gradients 1e-4, TF32 off. On a machine without a GPU the kernels run in the Triton
interpreter, so shapes stay small; the ``cuda`` tests run bf16 at realistic shapes on a GPU.
"""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from conftest import KERNEL_DEVICE
from rnnbench.kernels.launch import poisoned_outputs
from rnnbench.kernels.lstm import lstm_layer
from rnnbench.kernels.plan import plan_recurrence
from rnnbench.kernels.rnn import rnn_layer
from test_triton_kernels import CELLS, FWD_TOL, GRAD_TOL, several_chunks



pytestmark = pytest.mark.usefixtures("exact_fp32")


@dataclasses.dataclass
class Case:
    """One comparison: a module configuration, an input shape and form, and the tolerances."""

    cell: str
    T: int = 6
    B: int = 3
    I: int = 5
    H: int = 20
    path: str = "auto"
    #: None: a plain tensor; else the lengths of a PackedSequence made from it
    lengths: tuple | None = None
    enforce_sorted: bool = False
    options: dict = dataclasses.field(default_factory=dict)
    train_dropout: bool = False
    dtype: torch.dtype = torch.float32
    fwd_tol: dict = dataclasses.field(default_factory=lambda: FWD_TOL)
    grad_tol: dict = dataclasses.field(default_factory=lambda: GRAD_TOL)


def _modules(case: Case):
    triton_class, torch_class, cell_options = CELLS[case.cell]
    torch.manual_seed(0)
    reference = torch_class(case.I, case.H, **cell_options, **case.options).to(KERNEL_DEVICE, case.dtype)
    candidate = triton_class(case.I, case.H, path=case.path, **cell_options, **case.options).to(KERNEL_DEVICE, case.dtype)
    candidate.load_state_dict(reference.state_dict())
    candidate.train(case.train_dropout)
    # without dropout, training and evaluation compute the same thing; cuDNN only differentiates in
    # training mode, so the reference is put there (on CPU this changes nothing)
    reference.train(case.train_dropout or case.options.get("dropout", 0) == 0)
    return candidate, reference


@contextlib.contextmanager
def _reference_implementation(case: Case):
    """Where torch.nn runs the reference: cuDNN on CUDA, except with dropout in training. cuDNN
    draws its dropout masks from its own generator state, so no other implementation can
    reproduce them; there the reference is torch's native implementation (cuDNN disabled), which
    drops between layers with ``torch.nn.functional.dropout`` as the Triton modules do (and as
    torch.nn always does on CPU)."""
    previous = torch.backends.cudnn.enabled
    torch.backends.cudnn.enabled = not case.train_dropout
    try:
        yield
    finally:
        torch.backends.cudnn.enabled = previous


def _inputs(case: Case, module):
    """Input, initial states ``[h_0(, c_0)]`` and upstream gradients for output and final states."""
    generator = torch.Generator().manual_seed(1)
    batch_first = module.batch_first
    x = torch.randn((case.B, case.T, case.I) if batch_first else (case.T, case.B, case.I), generator=generator)
    layers = module.num_layers * (2 if module.bidirectional else 1)
    width = module.proj_size or module.hidden_size
    states = [0.5 * torch.randn(layers, case.B, width, generator=generator)]
    if case.cell == "lstm":
        states.append(0.5 * torch.randn(layers, case.B, case.H, generator=generator))
    steps = sum(case.lengths) if case.lengths else case.T * case.B
    output_width = width * (2 if module.bidirectional else 1)
    upstream = [torch.randn(steps, output_width, generator=generator)] + [torch.randn(s.shape, generator=generator)
                                                                          for s in states]
    move = lambda t: t.to(KERNEL_DEVICE, case.dtype)  # noqa: E731
    return move(x), [move(s) for s in states], [move(u) for u in upstream]


def _run(case: Case, module, x, states, upstream):
    """``[output (packed data or flattened), *final states]`` and the gradients of x, the states and
    every parameter."""
    x = x.detach().clone().requires_grad_()
    states = [s.detach().clone().requires_grad_() for s in states]
    hx = tuple(states) if case.cell == "lstm" else states[0]
    input = x
    if case.lengths is not None:
        input = pack_padded_sequence(x, torch.tensor(case.lengths), batch_first=module.batch_first,
                                     enforce_sorted=case.enforce_sorted)
    torch.manual_seed(7)  # the dropout mask
    output, final = module(input, hx)
    output = output.data if case.lengths is not None else output.reshape(-1, output.shape[-1])
    outputs = [output, *(final if isinstance(final, tuple) else (final,))]
    grads = torch.autograd.grad(outputs, [x, *states, *module.parameters()], upstream)
    return outputs, list(grads)


def _assert_matches_torch(case: Case):
    candidate, reference = _modules(case)
    x, states, upstream = _inputs(case, reference)
    with poisoned_outputs():
        outputs, grads = _run(case, candidate, x, states, upstream)
    with _reference_implementation(case):
        expected_outputs, expected_grads = _run(case, reference, x, states, upstream)
    for name, actual, expected in zip(["output", "h_n", "c_n"], outputs, expected_outputs):
        torch.testing.assert_close(actual, expected, **case.fwd_tol, msg=lambda m: f"{name}: {m}")
    grad_names = ["dx", "dh0", "dc0"][: 1 + len(states)] + [f"d{n}" for n, _ in reference.named_parameters()]
    for name, actual, expected in zip(grad_names, grads, expected_grads):
        torch.testing.assert_close(actual, expected, **case.grad_tol, msg=lambda m: f"{name}: {m}")


# ---- every path x bidirectional / packed / projection ------------------------------------------

#: path -> hidden size that takes it in the interpreter: persistent holds all of W_hh (H_PAD 16: an
#: fp32 LSTM persistent program holds at most H_PAD 16, plan.PERSISTENT_MAX_WEIGHT_BYTES);
#: cooperative with one hidden block (H=7) runs the in-kernel time loop and grid barrier; stepwise
#: splits H=20 over two hidden blocks that exchange their states every step
PATH_SIZES = {"persistent": 12, "cooperative": 7, "stepwise": 20}
MIXED = (6, 2, 4)
OPTION_SETS = {
    "bidirectional": (dict(bidirectional=True), None),
    "packed": (dict(), MIXED),
    "bidirectional_packed": (dict(bidirectional=True), MIXED),
    "projection": (dict(proj_size=3), None),
    "projection_bidirectional_packed": (dict(proj_size=3, bidirectional=True), MIXED),
}


def _option_cases():
    for cell in CELLS:
        for path, hidden in PATH_SIZES.items():
            for name, (options, lengths) in OPTION_SETS.items():
                if cell != "lstm" and "proj_size" in options:
                    continue
                if cell == "rnn_relu" and name != "bidirectional_packed":
                    continue  # relu differs from tanh only in the activation, covered elsewhere
                yield pytest.param(Case(cell, H=hidden, path=path, lengths=lengths, options=options),
                                   id=f"{cell}-{path}-{name}")


@pytest.mark.parametrize("case", list(_option_cases()))
def test_options_on_every_path_match_torch_nn(case):
    if case.path == "cooperative":
        assert plan_recurrence("lstm" if case.cell == "lstm" else "rnn", case.H, case.B, torch.float32, case.path).grid[0] == 1
    _assert_matches_torch(case)


# ---- odd shapes and input forms ----------------------------------------------------------------

SHAPE_CASES = {
    "one_step_one_row_two_layers": dict(T=1, B=1, I=4, H=9, lengths=(1,), options=dict(num_layers=2, bidirectional=True)),
    "one_row_packed_i_ne_h_no_bias": dict(T=5, B=1, I=11, H=6, lengths=(5,), options=dict(bidirectional=True, bias=False)),
    "sorted_packed_batch_first_two_layers": dict(T=5, B=4, I=3, H=10, lengths=(5, 4, 2, 1), enforce_sorted=True,
                                                 options=dict(num_layers=2, batch_first=True, bidirectional=True)),
    "packed_all_full_length": dict(T=4, B=2, lengths=(4, 4), options=dict(bidirectional=True)),
    "dropout_training_two_layers": dict(T=4, B=3, H=12, train_dropout=True,
                                        options=dict(num_layers=2, dropout=0.4, bidirectional=True)),
    "dropout_training_packed": dict(T=4, B=3, H=12, train_dropout=True, lengths=(2, 4, 1),
                                    options=dict(num_layers=2, dropout=0.4)),
}


@pytest.mark.parametrize("cell", ["lstm", "rnn_tanh"])
@pytest.mark.parametrize("name", list(SHAPE_CASES))
def test_odd_shapes_and_input_forms_match_torch_nn(cell, name):
    options = dict(SHAPE_CASES[name])
    if cell == "lstm" and name == "sorted_packed_batch_first_two_layers":
        options["options"] = dict(options["options"], proj_size=4)
    _assert_matches_torch(Case(cell, **options))


@pytest.mark.parametrize("cell", ["lstm", "rnn_tanh"])
def test_float64_runs_the_eager_reference(cell):
    """There is no float64 kernel: float64 modules run the eager step loop, whatever the options."""
    options = dict(bidirectional=True, num_layers=2) | (dict(proj_size=3) if cell == "lstm" else {})
    tight = dict(atol=1e-12, rtol=1e-12)
    _assert_matches_torch(Case(cell, dtype=torch.float64, lengths=MIXED, options=options, fwd_tol=tight, grad_tol=tight))


@pytest.mark.parametrize("cell", ["lstm", "rnn_tanh"])
def test_layer_api_with_lengths_is_zero_past_each_end(cell):
    """The layer functions take a padded batch and per-row lengths directly (what the harness can
    time without packing); their output equals torch.nn's packed output padded with zeros."""
    candidate, reference = _modules(Case(cell, options=dict(bidirectional=True)))
    x = torch.randn(6, 3, 5).to(KERNEL_DEVICE)
    lengths = torch.tensor(MIXED)
    w = candidate._stacked_weights(0)
    zeros = torch.zeros(2, 3, 20, device=KERNEL_DEVICE)
    with poisoned_outputs():
        if cell == "lstm":
            y = lstm_layer(x, zeros, zeros, w.weight_ih, w.weight_hh, w.bias_ih, w.bias_hh, lengths=lengths)[0]
        else:
            y = rnn_layer(x, zeros, w.weight_ih, w.weight_hh, w.bias_ih, w.bias_hh, "tanh", lengths=lengths)[0]
    expected, _ = pad_packed_sequence(reference(pack_padded_sequence(x, lengths, enforce_sorted=False))[0])
    torch.testing.assert_close(y, expected, **FWD_TOL)


# ---- launches ------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", ["lstm", "rnn_tanh"])
def test_both_directions_and_mixed_lengths_are_one_launch(cell, monkeypatch):
    """A bidirectional layer on a packed batch of mixed lengths launches its recurrence once
    (persistent path): the two directions are the grid's third axis and each row stops at its
    own length inside the kernel."""
    import rnnbench.kernels.launch

    launches = []
    original = rnnbench.kernels.launch.run_phases

    def counting(kernel, plan, phases, tensors, sizes, device, **constexprs):
        launches.append((plan.launch_grid, constexprs["HAS_LENGTHS"]))
        return original(kernel, plan, phases, tensors, sizes, device, **constexprs)

    module_name = "rnnbench.kernels.lstm" if cell == "lstm" else "rnnbench.kernels.rnn"
    monkeypatch.setattr(f"{module_name}.run_phases", counting)
    candidate, _ = _modules(Case(cell, H=PATH_SIZES["persistent"], options=dict(bidirectional=True)))
    x = torch.randn(6, 3, 5).to(KERNEL_DEVICE)
    candidate(pack_padded_sequence(x, torch.tensor(MIXED), enforce_sorted=False))[0].data.sum().backward()
    assert launches == [((1, 1, 2), True), ((1, 1, 2), True)]  # the forward, then the backward


@pytest.mark.parametrize("cell", ["lstm", "rnn_tanh"])
def test_directions_one_after_the_other_when_both_would_not_be_co_resident(cell, monkeypatch):
    """On a GPU whose multiprocessors hold one direction's cooperative grid but not both, the two
    directions run as two launches (``first_direction`` 0, then 1). Forced here in the interpreter
    with a single hidden block, so each launch runs the in-kernel loop."""
    import rnnbench.kernels.launch

    original = rnnbench.kernels.launch.make_plan

    def one_direction_per_launch(*args, **kwargs):
        plan = original(*args, **kwargs)
        assert plan.path == "cooperative" and plan.grid[0] == 1
        return dataclasses.replace(plan, launch_directions=1)

    module_name = "rnnbench.kernels.lstm" if cell == "lstm" else "rnnbench.kernels.rnn"
    monkeypatch.setattr(f"{module_name}.make_plan", one_direction_per_launch)
    _assert_matches_torch(Case(cell, H=7, path="cooperative", lengths=MIXED, options=dict(bidirectional=True)))


def test_plan_runs_directions_together_only_where_both_fit():
    together = plan_recurrence("lstm", 256, 16, torch.bfloat16, multiprocessors=132, directions=2)
    assert together.path == "cooperative" and together.launch_directions == 2 and together.programs == 64
    apart = plan_recurrence("lstm", 1024, 16, torch.bfloat16, multiprocessors=66, directions=2,  # 128 fit, not 256
                            allow_gluon=False)
    assert apart.path == "cooperative" and apart.launch_directions == 1 and apart.programs == 128
    persistent = plan_recurrence("lstm", 64, 256, torch.bfloat16, multiprocessors=132, directions=2)
    assert persistent.path == "persistent" and persistent.launch_grid == (1, 16, 2)
    with pytest.raises(ValueError, match="directions must be 1 or 2, got 3"):
        plan_recurrence("lstm", 64, 4, torch.float32, directions=3)


# ---- a reduction in several chunks, with both options -------------------------------------------

@pytest.mark.parametrize("cell", ["lstm", "rnn_tanh"])
@pytest.mark.parametrize("held", [True, False], ids=["held", "streamed"])
def test_several_chunks_bidirectional_packed(cell, held, monkeypatch):
    """The reduction in two chunks (see test_triton_kernels.several_chunks), held or streamed."""
    several_chunks(monkeypatch, cell, one_hidden_block=held)
    _assert_matches_torch(Case(cell, T=3, B=2, H=80, path="cooperative", lengths=(3, 1), options=dict(bidirectional=True)))


# ---- bf16 on a GPU ------------------------------------------------------------------------------

#: bf16 keeps 8 significant bits; inputs are rounded to bf16 and the reference is torch.nn in
#: float64 from those rounded values; the bound is relative to each tensor's largest magnitude
#: (the harness's correctness gate uses the same 5e-2 for bf16)
BF16_TOL = 5e-2


@pytest.mark.cuda
@pytest.mark.parametrize("cell, options", [
    ("lstm", dict(bidirectional=True)),
    ("lstm", dict(bidirectional=True, num_layers=2, proj_size=128)),
    ("rnn_tanh", dict(bidirectional=True)),
], ids=["lstm", "lstm_projection", "rnn_tanh"])
@pytest.mark.parametrize("hidden, batch", [(256, 32), (768, 16)])
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_bfloat16_bidirectional_and_packed_on_gpu(cell, options, hidden, batch, packed):
    triton_class, torch_class, cell_options = CELLS[cell]
    T, I = 256, 128
    torch.manual_seed(0)
    reference = torch_class(I, hidden, **cell_options, **options).to("cuda", torch.float64)
    candidate = triton_class(I, hidden, **cell_options, **options).to("cuda", torch.bfloat16)
    candidate.load_state_dict(reference.state_dict())
    reference.load_state_dict({k: v.to(torch.bfloat16).double() for k, v in reference.state_dict().items()})
    x = torch.randn(T, batch, I, device="cuda").to(torch.bfloat16)
    lengths = torch.randint(1, T + 1, (batch,)) if packed else None

    def run(module, dtype):
        leaf = x.to(dtype).requires_grad_()
        input = pack_padded_sequence(leaf, lengths, enforce_sorted=False) if packed else leaf
        output, final = module(input)
        output = output.data if packed else output
        outputs = [output, *(final if isinstance(final, tuple) else (final,))]
        generator = torch.Generator(device="cuda").manual_seed(2)
        upstream = [torch.randn(o.shape, device="cuda", generator=generator).to(torch.bfloat16).to(dtype)
                    for o in outputs]
        grads = torch.autograd.grad(outputs, [leaf, *module.parameters()], upstream)
        return [o.double() for o in (*outputs, *grads)]

    with poisoned_outputs():
        actual = run(candidate, torch.bfloat16)
    expected = run(reference, torch.float64)
    for index, (a, e) in enumerate(zip(actual, expected)):
        assert torch.isfinite(a).all(), index
        assert (a - e).abs().max() <= BF16_TOL * max(1.0, e.abs().max()), index
