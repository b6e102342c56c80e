"""The NumPy forward + BPTT against torch autograd through torch.nn.RNN/LSTM, both in float64.

Random upstream gradients reach the output and every final state, so each gradient path is checked:
``y``, ``h_T``, ``c_T`` and ``dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh``.
"""

import numpy as np
import pytest
import torch

from rnnbench.baselines import numpy_rnn

#: the two float64 computations differ only in summation order: ~1e-15 relative per op
FLOAT64_ATOL = 1e-10
#: float32 mode against the float64 torch result, relative to each tensor's largest magnitude
FLOAT32_RTOL = 1e-5

CELLS = [("lstm", None), ("rnn", "tanh"), ("rnn", "relu")]
CELL_IDS = ["lstm", "rnn_tanh", "rnn_relu"]


def _problem(family, steps, batch, input_size, hidden, bias=True, seed=0):
    """Inputs, torch-initialised weights and upstream gradients as float64 arrays."""
    rng = np.random.default_rng(seed)
    gates = 4 if family == "lstm" else 1
    bound = 1 / np.sqrt(hidden)
    a = {
        "x": rng.standard_normal((steps, batch, input_size)),
        "h0": rng.standard_normal((batch, hidden)),
        "w_ih": rng.uniform(-bound, bound, (gates * hidden, input_size)),
        "w_hh": rng.uniform(-bound, bound, (gates * hidden, hidden)),
        "b_ih": rng.uniform(-bound, bound, gates * hidden) if bias else None,
        "b_hh": rng.uniform(-bound, bound, gates * hidden) if bias else None,
        "dy": rng.standard_normal((steps, batch, hidden)),
        "dh_T": rng.standard_normal((batch, hidden)),
    }
    if family == "lstm":
        a["c0"] = rng.standard_normal((batch, hidden))
        a["dc_T"] = rng.standard_normal((batch, hidden))
    return a


def _numpy_result(family, nonlinearity, a, dtype=np.float64):
    """Forward outputs and gradients by name, from rnnbench.baselines.numpy_rnn."""
    weights = (a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
    if family == "lstm":
        y, h_T, c_T, cache = numpy_rnn.lstm_forward(a["x"], a["h0"], a["c0"], *weights, dtype=dtype)
        grads = numpy_rnn.lstm_backward(a["dy"], a["dh_T"], a["dc_T"], cache)
        return {"y": y, "h_T": h_T, "c_T": c_T, **grads}
    y, h_T, cache = numpy_rnn.rnn_forward(a["x"], a["h0"], *weights, nonlinearity=nonlinearity, dtype=dtype)
    return {"y": y, "h_T": h_T, **numpy_rnn.rnn_backward(a["dy"], a["dh_T"], cache)}


def _torch_result(family, nonlinearity, a):
    """The same names computed by torch.nn.RNN/LSTM in float64 and torch.autograd."""
    bias = a["b_ih"] is not None
    input_size, hidden = a["x"].shape[2], a["h0"].shape[1]
    if family == "lstm":
        module = torch.nn.LSTM(input_size, hidden, bias=bias, dtype=torch.float64)
    else:
        module = torch.nn.RNN(input_size, hidden, nonlinearity=nonlinearity, bias=bias, dtype=torch.float64)
    names = {"weight_ih_l0": "w_ih", "weight_hh_l0": "w_hh", "bias_ih_l0": "b_ih", "bias_hh_l0": "b_hh"}
    module.load_state_dict({name: torch.from_numpy(a[key]) for name, key in names.items() if a[key] is not None})
    t = {name: torch.from_numpy(value) for name, value in a.items() if value is not None}
    x, h0 = t["x"].requires_grad_(), t["h0"].requires_grad_()
    if family == "lstm":
        c0 = t["c0"].requires_grad_()
        y, (h_n, c_n) = module(x, (h0[None], c0[None]))
        result = {"y": y, "h_T": h_n[0], "c_T": c_n[0]}
        inputs, upstream = {"dx": x, "dh0": h0, "dc0": c0}, [t["dy"], t["dh_T"], t["dc_T"]]
    else:
        y, h_n = module(x, h0[None])
        result = {"y": y, "h_T": h_n[0]}
        inputs, upstream = {"dx": x, "dh0": h0}, [t["dy"], t["dh_T"]]
    inputs.update({f"d{names[name]}": parameter for name, parameter in module.named_parameters()})
    grads = torch.autograd.grad(list(result.values()), list(inputs.values()), upstream)
    result.update(zip(inputs, grads))
    result = {name: value.detach().numpy() for name, value in result.items()}
    return result if bias else {**result, "db_ih": None, "db_hh": None}


def _expected_names(family):
    states = ["h_T", "c_T", "dh0", "dc0"] if family == "lstm" else ["h_T", "dh0"]
    return {"y", "dx", "dw_ih", "dw_hh", "db_ih", "db_hh", *states}


@pytest.mark.parametrize("family, nonlinearity", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("steps", [1, 7, 33])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("hidden, input_size", [(20, 13), (48, 5)])
def test_matches_torch_autograd_float64(family, nonlinearity, steps, batch, hidden, input_size):
    a = _problem(family, steps, batch, input_size, hidden, seed=steps * 100 + batch * 10 + hidden)
    actual, expected = _numpy_result(family, nonlinearity, a), _torch_result(family, nonlinearity, a)
    assert set(actual) == set(expected) == _expected_names(family)
    for name, reference in expected.items():
        assert actual[name].dtype == np.float64, name
        np.testing.assert_allclose(actual[name], reference, rtol=0, atol=FLOAT64_ATOL, err_msg=name)


@pytest.mark.parametrize("family, nonlinearity", CELLS, ids=CELL_IDS)
def test_without_bias_matches_torch_and_returns_no_bias_gradients(family, nonlinearity):
    a = _problem(family, steps=7, batch=3, input_size=13, hidden=20, bias=False)
    actual, expected = _numpy_result(family, nonlinearity, a), _torch_result(family, nonlinearity, a)
    assert actual["db_ih"] is None and actual["db_hh"] is None
    for name, reference in expected.items():
        if reference is not None:
            np.testing.assert_allclose(actual[name], reference, rtol=0, atol=FLOAT64_ATOL, err_msg=name)


@pytest.mark.parametrize("family, nonlinearity", CELLS, ids=CELL_IDS)
def test_float32_mode_computes_in_float32_and_agrees(family, nonlinearity):
    a = _problem(family, steps=33, batch=3, input_size=13, hidden=48)
    actual = _numpy_result(family, nonlinearity, a, dtype=np.float32)
    expected = _torch_result(family, nonlinearity, a)
    for name, reference in expected.items():
        assert actual[name].dtype == np.float32, name
        scale = max(1.0, np.max(np.abs(reference)))
        assert np.max(np.abs(actual[name] - reference)) <= FLOAT32_RTOL * scale, name


def test_bias_gradients_are_separate_arrays():
    # callers may update db_ih in place (an optimizer step); that must not change db_hh
    a = _problem("rnn", steps=2, batch=1, input_size=3, hidden=4)
    grads = _numpy_result("rnn", "tanh", a)
    grads["db_ih"] += 1.0
    assert not np.allclose(grads["db_ih"], grads["db_hh"])


# ---- validation -------------------------------------------------------------------------------


def _lstm_args(**overrides):
    a = _problem("lstm", steps=5, batch=3, input_size=7, hidden=20)
    args = {name: a[name] for name in ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh")}
    args.update(overrides)
    return args


def test_error_message_names_argument_shape_and_expected_shape():
    with pytest.raises(ValueError) as error:
        numpy_rnn.lstm_forward(**_lstm_args(w_hh=np.zeros((80, 21))))
    assert str(error.value) == "w_hh must have shape (80, 20) = (4*hidden_size, hidden_size), got shape (80, 21)"


@pytest.mark.parametrize(
    "name, bad",
    [
        ("x", np.zeros((5, 7))),
        ("x", np.zeros((5, 3, 7), dtype=complex)),
        ("h0", np.zeros((4, 20))),
        ("h0", np.zeros((1, 3, 20))),
        ("c0", np.zeros((3, 21))),
        ("w_ih", np.zeros((80, 6))),
        ("w_ih", np.zeros((20, 7))),
        ("w_hh", np.zeros((80, 20, 1))),
        ("b_ih", np.zeros(20)),
        ("b_hh", np.zeros((80, 1))),
    ],
)
def test_lstm_forward_rejects_bad_argument(name, bad):
    with pytest.raises(ValueError, match=rf"^{name} must "):
        numpy_rnn.lstm_forward(**_lstm_args(**{name: bad}))


def test_rnn_forward_names_single_gate_block_in_expected_shape():
    a = _problem("rnn", steps=5, batch=3, input_size=7, hidden=20)
    with pytest.raises(ValueError, match=r"^w_ih must have shape \(20, 7\) = \(hidden_size, input_size\)"):
        numpy_rnn.rnn_forward(a["x"], a["h0"], np.zeros((20, 8)), a["w_hh"])


@pytest.mark.parametrize("keyword, value", [("nonlinearity", "sigmoid"), ("dtype", np.int32), ("dtype", np.float16)])
def test_rnn_forward_rejects_bad_option(keyword, value):
    a = _problem("rnn", steps=2, batch=1, input_size=3, hidden=4)
    with pytest.raises(ValueError, match=rf"^{keyword} must be"):
        numpy_rnn.rnn_forward(a["x"], a["h0"], a["w_ih"], a["w_hh"], **{keyword: value})


@pytest.mark.parametrize("name", ["dy", "dh_T", "dc_T"])
def test_lstm_backward_checks_upstream_shapes_against_cache(name):
    a = _problem("lstm", steps=5, batch=3, input_size=7, hidden=20)
    *_, cache = numpy_rnn.lstm_forward(a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"])
    upstream = {"dy": a["dy"], "dh_T": a["dh_T"], "dc_T": a["dc_T"]}
    upstream[name] = upstream[name][..., :-1]
    with pytest.raises(ValueError, match=rf"^{name} must have shape .*, got shape"):
        numpy_rnn.lstm_backward(upstream["dy"], upstream["dh_T"], upstream["dc_T"], cache)


@pytest.mark.parametrize("name", ["dy", "dh_T"])
def test_rnn_backward_checks_upstream_shapes_against_cache(name):
    a = _problem("rnn", steps=5, batch=3, input_size=7, hidden=20)
    *_, cache = numpy_rnn.rnn_forward(a["x"], a["h0"], a["w_ih"], a["w_hh"])
    upstream = {"dy": a["dy"], "dh_T": a["dh_T"]}
    upstream[name] = upstream[name][:-1]
    with pytest.raises(ValueError, match=rf"^{name} must have shape"):
        numpy_rnn.rnn_backward(upstream["dy"], upstream["dh_T"], cache)


def test_backward_rejects_cache_of_the_other_cell():
    a = _problem("lstm", steps=2, batch=1, input_size=3, hidden=4)
    *_, cache = numpy_rnn.lstm_forward(a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"])
    with pytest.raises(TypeError, match="cache must be the RNNCache returned by rnn_forward, got LSTMCache"):
        numpy_rnn.rnn_backward(a["dy"], a["dh_T"], cache)
