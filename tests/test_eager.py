"""EagerRNN/EagerLSTM against torch.nn.RNN/LSTM holding the same state dict, with every option and
input form: layers, batch_first, unbatched, initial states, bias=False, bidirectional, proj_size,
dropout in training, PackedSequence (sorted or not).

Float64 on CPU: both sides run the same math in a different summation order, so outputs, final
states and every gradient (input, initial states, all parameters) agree to ~1e-15 relative.
"""

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from rnnbench.baselines.eager import EagerLSTM, EagerRNN

FLOAT64_ATOL = 1e-12

CELLS = {
    "lstm": (torch.nn.LSTM, EagerLSTM, {}),
    "rnn_tanh": (torch.nn.RNN, EagerRNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (torch.nn.RNN, EagerRNN, {"nonlinearity": "relu"}),
}

#: variant -> (constructor options, input shape as a function of (T, B, I), pass initial states?,
#: packing: None, or the lengths of a PackedSequence built from the input and whether they are sorted)
VARIANTS = {
    "one_layer": ({}, lambda T, B, I: (T, B, I), False, None),
    "two_layers": ({"num_layers": 2}, lambda T, B, I: (T, B, I), False, None),
    "batch_first": ({"batch_first": True, "num_layers": 2}, lambda T, B, I: (B, T, I), True, None),
    "unbatched": ({"num_layers": 2}, lambda T, B, I: (T, I), True, None),
    "initial_states": ({"num_layers": 2}, lambda T, B, I: (T, B, I), True, None),
    "no_bias": ({"bias": False}, lambda T, B, I: (T, B, I), True, None),
    "bidirectional": ({"bidirectional": True, "num_layers": 2}, lambda T, B, I: (T, B, I), True, None),
    "bidirectional_unbatched": ({"bidirectional": True}, lambda T, B, I: (T, I), True, None),
    "projection": ({"proj_size": 7, "num_layers": 2, "bidirectional": True, "batch_first": True},
                   lambda T, B, I: (B, T, I), True, None),
    "dropout_training": ({"dropout": 0.5, "num_layers": 3, "bidirectional": True}, lambda T, B, I: (T, B, I), True, None),
    "packed_sorted": ({"num_layers": 2}, lambda T, B, I: (T, B, I), True, ([9, 4, 1], True)),
    "packed_unsorted": ({"num_layers": 2, "bidirectional": True}, lambda T, B, I: (T, B, I), True, ([3, 9, 5], False)),
    "packed_unsorted_batch_first": ({"batch_first": True, "bidirectional": True, "proj_size": 4, "dropout": 0.3,
                                     "num_layers": 2}, lambda T, B, I: (B, T, I), True, ([3, 9, 5], False)),
    "packed_full_length": ({"bidirectional": True}, lambda T, B, I: (T, B, I), False, ([9, 9, 9], False)),
}
CASES = [
    pytest.param(cell, variant, id=f"{cell}-{variant}")
    for cell in CELLS for variant, (options, *_) in VARIANTS.items() if cell == "lstm" or "proj_size" not in options
]


def _pair(cell, dtype=torch.float64, **options):
    """A torch.nn module and an eager module that loaded its state dict."""
    torch_class, eager_class, cell_options = CELLS[cell]
    torch.manual_seed(0)
    reference = torch_class(5, 12, dtype=dtype, **cell_options, **options)
    candidate = eager_class(5, 12, dtype=dtype, **cell_options, **options)
    candidate.load_state_dict(reference.state_dict())
    return reference, candidate


def _initial_states(cell, module, batched, batch):
    """Random ``[h_0]`` or ``[h_0, c_0]`` of shape ``(L*D, B, R)``, or ``(L*D, R)`` for unbatched input."""
    layers = module.num_layers * (2 if module.bidirectional else 1)
    shapes = [(layers, batch, module.proj_size or module.hidden_size), (layers, batch, module.hidden_size)]
    shapes = shapes if batched else [(s[0], s[2]) for s in shapes]
    return [torch.randn(shape, dtype=torch.float64) for shape in shapes[: 2 if cell == "lstm" else 1]]


def _forward(module, cell, x, states, packing=None):
    """Fresh leaf copies of ``x`` and the states, and the outputs ``[output, h_n(, c_n)]`` on them
    (the packed output's data for packed input); the dropout RNG is seeded before the call."""
    leaves = [t.detach().requires_grad_() for t in (x, *states)]
    x, *states = leaves
    hx = None if not states else (tuple(states) if cell == "lstm" else states[0])
    if packing is not None:
        lengths, sorted_ = packing
        x = pack_padded_sequence(x, torch.tensor(lengths), batch_first=module.batch_first, enforce_sorted=sorted_)
    torch.manual_seed(7)
    output, final = module(x, hx)
    if packing is not None:
        output = output.data
    return leaves, [output, *final] if cell == "lstm" else [output, final]


def _outputs_and_gradients(module, cell, x, states, upstream, packing=None):
    """Outputs, then gradients of x, of the given states and of every parameter, as one list."""
    leaves, outputs = _forward(module, cell, x, states, packing)
    return outputs + list(torch.autograd.grad(outputs, [*leaves, *module.parameters()], upstream))


@pytest.mark.parametrize("cell, variant", CASES)
def test_matches_torch_nn_forward_and_gradients(cell, variant):
    """Every option of torch.nn at once where it combines: dropout in training draws the same
    elements as torch.nn (same seed, on the packed data for packed input)."""
    options, input_shape, give_states, packing = VARIANTS[variant]
    reference, candidate = _pair(cell, **options)
    assert [name for name, _ in candidate.named_parameters()] == [name for name, _ in reference.named_parameters()]
    torch.manual_seed(1)
    x = torch.randn(input_shape(9, 3, 5), dtype=torch.float64)
    states = _initial_states(cell, reference, x.dim() == 3, 3) if give_states else []
    upstream = [torch.randn_like(output) for output in _forward(reference, cell, x, states, packing)[1]]
    expected = _outputs_and_gradients(reference, cell, x, states, upstream, packing)
    actual = _outputs_and_gradients(candidate, cell, x, states, upstream, packing)
    assert len(actual) == len(expected) == 1 + len(upstream) + len(states) + len(list(reference.parameters()))
    for index, (a, e) in enumerate(zip(actual, expected)):
        torch.testing.assert_close(a, e, rtol=0, atol=FLOAT64_ATOL, msg=lambda m: f"item {index}: {m}")


@pytest.mark.parametrize("cell", list(CELLS))
def test_dropout_only_in_training_and_not_after_the_last_layer(cell):
    reference, candidate = _pair(cell, num_layers=2, dropout=1.0)
    x = torch.randn(4, 2, 5, dtype=torch.float64)
    candidate.eval()
    torch.testing.assert_close(candidate(x)[0], reference.eval()(x)[0], rtol=0, atol=FLOAT64_ATOL)
    candidate.train()
    _, eager_class, cell_options = CELLS[cell]
    single = eager_class(12, 12, dtype=torch.float64, **cell_options)
    single.load_state_dict({name.replace("_l1", "_l0"): p for name, p in candidate.state_dict().items() if "_l1" in name})
    # p = 1 zeroes all of layer 0's output, so layer 1 sees zeros, and its own output is not dropped
    torch.testing.assert_close(candidate(x)[0], single(torch.zeros(4, 2, 12, dtype=torch.float64))[0],
                               rtol=0, atol=FLOAT64_ATOL)


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


# Validation, empty batches and the API beside forward (all_weights, flatten_parameters) are shared
# with the Triton modules and tested against torch.nn for both in test_drop_in.py.
