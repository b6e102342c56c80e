"""What every drop-in module shares with torch.nn (rnnbench.baselines.drop_in), for both the eager and
the Triton modules: constructor arguments and their errors, parameter names, shapes and order,
``all_weights``, ``flatten_parameters``, ``repr``, empty batches, and every bad input raising the
exception type torch.nn raises for it, with a message that names the bad value.

Nothing here runs a kernel (bad inputs are refused before any launch; B = 0 and float64 run the
eager reference), so these tests are fast on any machine.
"""

from __future__ import annotations

import re
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from rnnbench.baselines.eager import EagerLSTM, EagerRNN
from rnnbench.kernels import TritonLSTM, TritonRNN

#: family -> (torch.nn class, drop-in classes)
FAMILIES = {"lstm": (nn.LSTM, (EagerLSTM, TritonLSTM)), "rnn": (nn.RNN, (EagerRNN, TritonRNN))}
MODULES = [pytest.param(family, cls, id=cls.__name__) for family, (_, classes) in FAMILIES.items() for cls in classes]


def _states(family, h, c=None):
    """``hx`` for a family: ``(h, c)`` for the LSTM (c of h's shape unless given), ``h`` for the RNN."""
    if family == "rnn":
        return h
    return h, (torch.zeros(h.shape[:-1] + (4,)) if c is None else c)


def _packed(width=3, lengths=(5, 2, 3)):
    return pack_padded_sequence(torch.randn(5, len(lengths), width), torch.tensor(lengths), enforce_sorted=False)


def _construct(**arguments):
    return lambda cls, family: cls(**arguments)


def _call(input, hx=lambda family: None, input_size=3):
    """A call of a 2-layer module (input_size 3, hidden_size 4) on ``input()`` with ``hx(family)``."""
    return lambda cls, family: cls(input_size, 4, num_layers=2)(input(), hx(family))


X = lambda: torch.randn(5, 2, 3)  # noqa: E731

#: (id, families, action, pattern our message must match)
BAD_INPUTS = [
    ("input_size_zero", "lstm rnn", _construct(input_size=0, hidden_size=4), r"input_size must be greater than zero, got 0"),
    ("input_size_float", "lstm rnn", _construct(input_size=2.5, hidden_size=4), r"input_size must be an int, got 2\.5"),
    ("hidden_size_negative", "lstm rnn", _construct(input_size=3, hidden_size=-2), r"hidden_size must be greater than zero, got -2"),
    ("hidden_size_float", "lstm rnn", _construct(input_size=3, hidden_size=4.0), r"hidden_size must be an int, got 4\.0"),
    ("num_layers_zero", "lstm rnn", _construct(input_size=3, hidden_size=4, num_layers=0), r"num_layers must be greater than zero, got 0"),
    ("num_layers_float", "lstm rnn", _construct(input_size=3, hidden_size=4, num_layers=1.5), r"num_layers must be an int, got 1\.5"),
    ("num_layers_str", "lstm rnn", _construct(input_size=3, hidden_size=4, num_layers="2"), r"num_layers must be an int, got '2'"),
    ("dropout_negative", "lstm rnn", _construct(input_size=3, hidden_size=4, dropout=-0.1), r"dropout must be a number in \[0, 1\].*got -0\.1"),
    ("dropout_above_one", "lstm rnn", _construct(input_size=3, hidden_size=4, dropout=1.5), r"dropout must be .*got 1\.5"),
    ("dropout_str", "lstm rnn", _construct(input_size=3, hidden_size=4, dropout="0.1"), r"dropout must be .*got '0\.1'"),
    ("dropout_bool", "lstm rnn", _construct(input_size=3, hidden_size=4, dropout=True), r"dropout must be .*got True"),
    ("bias_int", "lstm rnn", _construct(input_size=3, hidden_size=4, bias=0), r"bias must be a bool, got 0"),
    ("batch_first_int", "lstm rnn", _construct(input_size=3, hidden_size=4, batch_first=1), r"batch_first must be a bool, got 1"),
    ("unknown_keyword", "lstm rnn", _construct(input_size=3, hidden_size=4, foo=1), r"unexpected keyword argument 'foo'"),
    ("proj_size_negative", "lstm", _construct(input_size=3, hidden_size=4, proj_size=-1), r"proj_size must be a positive .*got -1"),
    ("proj_size_not_smaller", "lstm", _construct(input_size=3, hidden_size=4, proj_size=4), r"smaller than hidden_size=4, got 4"),
    ("proj_size_float", "lstm", _construct(input_size=3, hidden_size=4, proj_size=2.5), r"proj_size must be an int, got 2\.5"),
    ("proj_size_bool", "lstm", _construct(input_size=3, hidden_size=4, proj_size=True), r"proj_size must be an int, got True"),
    ("nonlinearity_on_lstm", "lstm", _construct(input_size=3, hidden_size=4, nonlinearity="tanh"), r"unexpected keyword argument 'nonlinearity'"),
    ("proj_size_on_rnn", "rnn", _construct(input_size=3, hidden_size=4, proj_size=2), r"only supported by the LSTM.*proj_size=2"),
    ("nonlinearity", "rnn", _construct(input_size=3, hidden_size=4, nonlinearity="gelu"), r"nonlinearity must be one of .*got 'gelu'"),
    ("input_1d", "lstm rnn", _call(lambda: torch.randn(3)), r"got shape \(3,\)"),
    ("input_4d", "lstm rnn", _call(lambda: torch.randn(1, 5, 2, 3)), r"got shape \(1, 5, 2, 3\)"),
    ("input_width", "lstm rnn", _call(lambda: torch.randn(5, 2, 6)), r"input_size=3, got 6"),
    ("input_dtype", "lstm rnn", _call(lambda: torch.randn(5, 2, 3, dtype=torch.float64)), r"dtype torch\.float32 .*got torch\.float64"),
    ("input_integer", "lstm rnn", _call(lambda: torch.ones(5, 2, 3, dtype=torch.long)), r"got torch\.int64"),
    ("input_list", "lstm rnn", _call(lambda: [[1.0, 2.0, 3.0]]), r"Tensor or a PackedSequence, got list"),
    ("input_none", "lstm rnn", _call(lambda: None), r"got NoneType"),
    ("input_no_steps", "lstm rnn", _call(lambda: torch.randn(0, 2, 3)), r"at least one time step, got 0 steps"),
    ("input_device", "lstm rnn", _call(lambda: torch.randn(5, 2, 3, device="meta")), r"input is on device meta"),
    ("h0_batch", "lstm rnn", _call(X, lambda f: _states(f, torch.zeros(2, 3, 4))), r"h_0 must have shape \(2, 2, 4\), got \(2, 3, 4\)"),
    ("h0_layers", "lstm rnn", _call(X, lambda f: _states(f, torch.zeros(1, 2, 4))), r"h_0 must have shape \(2, 2, 4\), got \(1, 2, 4\)"),
    ("h0_2d_for_batched", "lstm rnn", _call(X, lambda f: _states(f, torch.zeros(2, 4))), r"must be 3-D, got 2-D"),
    ("h0_3d_for_unbatched", "lstm rnn", _call(lambda: torch.randn(5, 3), lambda f: _states(f, torch.zeros(2, 1, 4))),
     r"must be 2-D, got 3-D"),
    ("h0_dtype", "lstm rnn", _call(X, lambda f: _states(f, torch.zeros(2, 2, 4, dtype=torch.float64), torch.zeros(2, 2, 4))),
     r"h_0 must have dtype torch\.float32 .*got torch\.float64"),
    ("h0_device", "lstm rnn", _call(X, lambda f: _states(f, torch.zeros(2, 2, 4, device="meta"), torch.zeros(2, 2, 4))),
     r"h_0 is on device meta"),
    ("c0_shape", "lstm", _call(X, lambda f: (torch.zeros(2, 2, 4), torch.zeros(2, 2, 5))), r"c_0 must have shape \(2, 2, 4\), got \(2, 2, 5\)"),
    ("hx_single_tensor", "lstm", _call(X, lambda f: torch.zeros(2, 2, 4)), r"must be 3-D, got 2-D"),
    ("hx_three_states", "lstm", _call(X, lambda f: (torch.zeros(2, 2, 4),) * 3), r"two states \(h_0, c_0\), got 3"),
    ("hx_one_state", "lstm", _call(X, lambda f: (torch.zeros(2, 2, 4),)), r"got 1 element"),
    ("hx_float_lstm", "lstm", _call(X, lambda f: 3.0), r"hx must be a tuple \(h_0, c_0\), got float"),
    ("hx_list_rnn", "rnn", _call(X, lambda f: [torch.zeros(2, 2, 4)]), r"hx must be a torch\.Tensor, got list"),
    ("hx_float_rnn", "rnn", _call(X, lambda f: 3.0), r"hx must be a torch\.Tensor, got float"),
    ("packed_h0_batch", "lstm rnn", _call(_packed, lambda f: _states(f, torch.zeros(2, 2, 4))), r"got \(2, 2, 4\)"),
    ("packed_width", "lstm rnn", _call(lambda: _packed(width=6)), r"input_size=3, got 6"),
]
BAD_INPUT_CASES = [
    pytest.param(family, cls, action, pattern, id=f"{cls.__name__}-{name}")
    for name, families, action, pattern in BAD_INPUTS
    for family in families.split()
    for cls in FAMILIES[family][1]
]


def _raised(action, cls, family) -> BaseException:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            action(cls, family)
        except Exception as error:  # noqa: BLE001 - the type is what is compared
            return error
    raise AssertionError(f"{cls.__name__} accepted the input")


@pytest.mark.parametrize("family, cls, action, pattern", BAD_INPUT_CASES)
def test_bad_input_raises_the_exception_type_of_torch_nn(family, cls, action, pattern):
    torch.manual_seed(0)
    expected = _raised(action, FAMILIES[family][0], family)
    actual = _raised(action, cls, family)
    assert type(actual) is type(expected), f"torch.nn raised {expected!r}, {cls.__name__} raised {actual!r}"
    assert re.search(pattern, str(actual)), f"message {str(actual)!r} does not match {pattern!r}"


@pytest.mark.parametrize("family, cls", MODULES)
@pytest.mark.parametrize("bad", ["dtype", "flat_states"])
def test_packed_errors_where_torch_lstm_and_rnn_disagree_follow_torch_rnn(family, cls, bad):
    """For these two packed inputs torch.nn.LSTM fails inside its C++ kernel (RuntimeError for the
    dtype, IndexError for 2-D states) while torch.nn.RNN's Python checks raise ValueError and
    RuntimeError; the drop-ins raise torch.nn.RNN's type for both cells (a documented difference)."""
    packed = _packed()
    if bad == "dtype":
        action = lambda c, f: c(3, 4)(pack_padded_sequence(torch.randn(5, 3, 3, dtype=torch.float64),  # noqa: E731
                                                           torch.tensor([5, 2, 3]), enforce_sorted=False))
    else:
        action = lambda c, f: c(3, 4)(packed, _states(f, torch.zeros(1, 4), torch.zeros(1, 4)))  # noqa: E731
    expected = type(_raised(action, nn.RNN, "rnn"))
    assert type(_raised(action, cls, family)) is expected


OPTION_GRID = [
    dict(), dict(num_layers=3, bidirectional=True), dict(num_layers=2, bias=False, bidirectional=True),
    dict(num_layers=2, proj_size=3), dict(num_layers=2, proj_size=3, bidirectional=True, bias=False),
    dict(num_layers=2, batch_first=True, dropout=0.25),
]


def _options(family):
    return [options for options in OPTION_GRID if family == "lstm" or "proj_size" not in options]


@pytest.mark.parametrize("family, cls", MODULES)
def test_parameters_all_weights_and_repr_match_torch_nn(family, cls):
    torch_class = FAMILIES[family][0]
    for options in _options(family):
        reference, candidate = torch_class(5, 7, **options), cls(5, 7, **options)
        assert [(n, p.shape) for n, p in candidate.named_parameters()] == \
            [(n, p.shape) for n, p in reference.named_parameters()], options
        assert [[w.shape for w in ws] for ws in candidate.all_weights] == \
            [[w.shape for w in ws] for ws in reference.all_weights], options
        assert candidate._flat_weights_names == reference._flat_weights_names
        assert candidate.extra_repr() == reference.extra_repr(), options
        assert candidate.all_weights[-1][0] is getattr(candidate, reference._all_weights[-1][0])
        bound = 1 / 7 ** 0.5
        assert all(p.abs().max() <= bound for p in candidate.parameters())


@pytest.mark.parametrize("family, cls", MODULES)
def test_flatten_parameters_is_a_no_op(family, cls):
    module = cls(5, 7, bidirectional=True)
    before = {name: parameter.clone() for name, parameter in module.named_parameters()}
    assert module.flatten_parameters() is None
    assert all(torch.equal(before[name], parameter) for name, parameter in module.named_parameters())


@pytest.mark.parametrize("family, cls", MODULES)
def test_dropout_with_one_layer_warns_like_torch_nn(family, cls):
    with pytest.warns(UserWarning, match="dropout=0.5 and num_layers=1"):
        cls(5, 7, dropout=0.5)


EMPTY_BATCH_OPTIONS = {"plain": dict(), "bidirectional": dict(bidirectional=True, num_layers=2, batch_first=True),
                       "projection": dict(proj_size=2, bidirectional=True)}


@pytest.mark.parametrize("family, cls, options", [
    pytest.param(family, cls, options, id=f"{cls.__name__}-{name}")
    for family, (_, classes) in FAMILIES.items() for cls in classes for name, options in EMPTY_BATCH_OPTIONS.items()
    if family == "lstm" or "proj_size" not in options
])
def test_empty_batch_returns_empty_outputs_and_zero_gradients(family, cls, options):
    torch.manual_seed(0)
    reference = FAMILIES[family][0](3, 4, **options)
    candidate = cls(3, 4, **options)
    candidate.load_state_dict(reference.state_dict())
    x = torch.randn((0, 5, 3) if options.get("batch_first") else (5, 0, 3))
    expected, actual = reference(x), candidate(x)
    flatten = lambda out: [out[0], *(out[1] if isinstance(out[1], tuple) else (out[1],))]  # noqa: E731
    assert [t.shape for t in flatten(actual)] == [t.shape for t in flatten(expected)]
    sum(t.sum() for t in flatten(actual)).backward()
    assert all(p.grad is not None and not p.grad.any() for p in candidate.parameters())


@pytest.mark.parametrize("family, cls", MODULES)
def test_bias_false_and_truthy_bidirectional_are_accepted_like_torch_nn(family, cls):
    module = cls(3, 4, bias=False, bidirectional=1)
    assert module.bidirectional and not module.bias and len(list(module.parameters())) == 4
