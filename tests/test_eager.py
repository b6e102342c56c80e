"""EagerRNN/EagerLSTM against torch.nn.RNN/LSTM holding the same state dict.

Float64 on CPU: both sides run the same math in a different summation order, so outputs, final
states and every gradient (input, initial states, all parameters) agree to ~1e-15 relative.
"""

import pytest
import torch

from rnnbench.baselines.eager import EagerLSTM, EagerRNN

FLOAT64_ATOL = 1e-12

CELLS = {
    "lstm": (torch.nn.LSTM, EagerLSTM, {}),
    "rnn_tanh": (torch.nn.RNN, EagerRNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (torch.nn.RNN, EagerRNN, {"nonlinearity": "relu"}),
}

#: variant -> (constructor options, input shape as a function of (T, B, I), pass initial states?)
VARIANTS = {
    "one_layer": ({}, lambda T, B, I: (T, B, I), False),
    "two_layers": ({"num_layers": 2}, lambda T, B, I: (T, B, I), False),
    "batch_first": ({"batch_first": True, "num_layers": 2}, lambda T, B, I: (B, T, I), True),
    "unbatched": ({"num_layers": 2}, lambda T, B, I: (T, I), True),
    "initial_states": ({"num_layers": 2}, lambda T, B, I: (T, B, I), True),
    "no_bias": ({"bias": False}, lambda T, B, I: (T, B, I), True),
}


def _pair(cell, dtype=torch.float64, **options):
    """A torch.nn module and an eager module that loaded its state dict."""
    torch_class, eager_class, cell_options = CELLS[cell]
    torch.manual_seed(0)
    reference = torch_class(5, 12, dtype=dtype, **cell_options, **options)
    candidate = eager_class(5, 12, dtype=dtype, **cell_options, **options)
    candidate.load_state_dict(reference.state_dict())
    return reference, candidate


def _initial_states(cell, module, batched, batch):
    """Random ``[h_0]`` or ``[h_0, c_0]`` of shape ``(L, B, H)``, or ``(L, H)`` for unbatched input."""
    shape = (module.num_layers, batch, module.hidden_size) if batched else (module.num_layers, module.hidden_size)
    return [torch.randn(shape, dtype=torch.float64) for _ in range(2 if cell == "lstm" else 1)]


def _forward(module, cell, x, states):
    """Fresh leaf copies of ``x`` and the states, and the outputs ``[output, h_n(, c_n)]`` on them."""
    leaves = [t.detach().requires_grad_() for t in (x, *states)]
    x, *states = leaves
    hx = None if not states else (tuple(states) if cell == "lstm" else states[0])
    output, final = module(x, hx)
    return leaves, [output, *final] if cell == "lstm" else [output, final]


def _outputs_and_gradients(module, cell, x, states, upstream):
    """Outputs, then gradients of x, of the given states and of every parameter, as one list."""
    leaves, outputs = _forward(module, cell, x, states)
    return outputs + list(torch.autograd.grad(outputs, [*leaves, *module.parameters()], upstream))


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("cell", list(CELLS))
def test_matches_torch_nn_forward_and_gradients(cell, variant):
    options, input_shape, give_states = VARIANTS[variant]
    reference, candidate = _pair(cell, **options)
    assert [name for name, _ in candidate.named_parameters()] == [name for name, _ in reference.named_parameters()]
    torch.manual_seed(1)
    x = torch.randn(input_shape(9, 3, 5), dtype=torch.float64)
    states = _initial_states(cell, reference, x.dim() == 3, 3) if give_states else []
    upstream = [torch.randn_like(output) for output in _forward(reference, cell, x, states)[1]]
    expected = _outputs_and_gradients(reference, cell, x, states, upstream)
    actual = _outputs_and_gradients(candidate, cell, x, states, upstream)
    assert len(actual) == len(expected) == 1 + len(upstream) + len(states) + len(list(reference.parameters()))
    for index, (a, e) in enumerate(zip(actual, expected)):
        torch.testing.assert_close(a, e, rtol=0, atol=FLOAT64_ATOL, msg=lambda m: f"item {index}: {m}")


@pytest.mark.parametrize("cell", list(CELLS))
def test_float32_matches_torch_nn(cell):
    reference, candidate = _pair(cell, dtype=torch.float32, num_layers=2)
    x = torch.randn(20, 4, 5)
    expected, actual = reference(x), candidate(x)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
    assert actual[0].dtype == torch.float32


def test_state_dict_loads_back_into_torch_nn():
    reference, candidate = _pair("lstm", num_layers=2)
    with torch.no_grad():
        for parameter in candidate.parameters():
            parameter.add_(0.5)
    reference.load_state_dict(candidate.state_dict())
    x = torch.randn(4, 2, 5, dtype=torch.float64)
    torch.testing.assert_close(candidate(x), reference(x), rtol=0, atol=FLOAT64_ATOL)


# ---- validation (errors name the bad value and what was expected) ------------------------------


@pytest.mark.parametrize("cell", ["lstm", "rnn_tanh"])
@pytest.mark.parametrize(
    "make_input, error, message",
    [
        (lambda: torch.randn(4, 2, 6, dtype=torch.float64), ValueError, r"input.size\(-1\) must be equal to input_size=5, got 6"),
        (lambda: torch.randn(4, 2, 1, 5, dtype=torch.float64), ValueError, r"input must have 3 dimensions .*got shape \(4, 2, 1, 5\)"),
        (lambda: torch.randn(4, 2, 5, dtype=torch.float32), TypeError, r"input must have dtype torch.float64 .*got torch.float32"),
    ],
    ids=["width", "rank", "dtype"],
)
def test_rejects_bad_input(cell, make_input, error, message):
    _, candidate = _pair(cell)
    with pytest.raises(error, match=message):
        candidate(make_input())


@pytest.mark.parametrize("cell", ["lstm", "rnn_tanh"])
def test_rejects_initial_state_of_wrong_shape(cell):
    _, candidate = _pair(cell, num_layers=2)
    states = [torch.zeros(1, 2, 12, dtype=torch.float64)] * (2 if cell == "lstm" else 1)
    with pytest.raises(ValueError, match=r"h_0 must have shape \(2, 2, 12\), got \(1, 2, 12\)"):
        candidate(torch.zeros(4, 2, 5, dtype=torch.float64), tuple(states) if cell == "lstm" else states[0])


def test_rejects_cell_state_of_other_dtype():
    _, candidate = _pair("lstm")
    h0 = torch.zeros(1, 2, 12, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"c_0 must have dtype torch.float64 like the input, got torch.float32"):
        candidate(torch.zeros(4, 2, 5, dtype=torch.float64), (h0, h0.float()))


def test_lstm_rejects_single_tensor_state():
    _, candidate = _pair("lstm")
    with pytest.raises(TypeError, match=r"hx must be a tuple \(h_0, c_0\)"):
        candidate(torch.zeros(4, 2, 5, dtype=torch.float64), torch.zeros(1, 2, 12, dtype=torch.float64))


@pytest.mark.parametrize(
    "eager_class, options, message",
    [
        (EagerLSTM, {"dropout": 0.2}, r"dropout between layers is not supported, got dropout=0.2"),
        (EagerRNN, {"dropout": 0.5}, r"dropout between layers is not supported, got dropout=0.5"),
        (EagerLSTM, {"bidirectional": True}, r"bidirectional=True is not supported"),
        (EagerLSTM, {"proj_size": 4}, r"proj_size is not supported, got proj_size=4"),
        (EagerRNN, {"nonlinearity": "gelu"}, r"nonlinearity must be one of \('tanh', 'relu'\), got 'gelu'"),
        (EagerLSTM, {"hidden_size": 0}, r"hidden_size must be a positive integer, got 0"),
    ],
)
def test_rejects_unsupported_constructor_arguments(eager_class, options, message):
    arguments = {"input_size": 5, "hidden_size": 12, "num_layers": 2, **options}
    with pytest.raises(ValueError, match=message):
        eager_class(**arguments)
