"""The accuracy and gradient experiments end to end through suites, their rows, their bad input, and
the gradient measurement against the NumPy BPTT."""

from __future__ import annotations

import json
import math
import textwrap

import numpy as np
import pytest
import torch

from rnnbench.baselines import numpy_rnn
from rnnbench.harness.cases import Case
from rnnbench.harness.cli import main
from rnnbench.harness.experiments.gradient import decay_per_step, sampled_distances, state_gradient_norms
from rnnbench.harness.experiments.training_case import prepare_training_case
from rnnbench.harness.results import read_results
from rnnbench.harness.runner import run_suite
from rnnbench.harness.suites import load_suite, parse_suite
from rnnbench.harness.training import TrainingConfig, TrainingSetup, build_model

TINY_TRAINING = """
[defaults]
modes = ["train"]
[timing]
threads = 1
[[cases]]
experiments = ["accuracy"]
task = "adding"
backends = ["torch", "bow", "numpy", "triton"]
families = ["lstm", "bow"]
seq_len = [6]
batch = [8]
hidden_size = [6]
input_size = [4]
params = {steps = 6, test_size = 40}
[[cases]]
experiments = ["accuracy"]
task = "adding"
backends = ["triton"]
families = ["lstm"]
seq_len = [100]
batch = [8]
hidden_size = [6]
params = {steps = 11}
[[cases]]
experiments = ["gradient"]
task = "adding"
backends = ["torch"]
seq_len = [9]
batch = [5]
hidden_size = [6]
params = {steps = 3, test_size = 20}
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("suite") / "tiny.toml"
    path.write_text(textwrap.dedent(TINY_TRAINING))
    out = tmp_path_factory.mktemp("out")
    threads = torch.get_num_threads()
    summary = run_suite(load_suite(str(path)), out, progress=False)
    torch.set_num_threads(threads)
    return summary, read_results(out)


def _rows(frame, **where):
    for column, value in where.items():
        frame = frame[frame[column] == value]
    return frame


def test_accuracy_rows_metrics_baselines_curve_and_speed(tiny_run):
    _, frame = tiny_run
    lstm = _rows(frame, experiment="accuracy", backend="torch", family="lstm")
    assert (lstm.status == "ok").all()
    plain = lstm[lstm.params.map(lambda p: "step" not in json.loads(p))]
    values = dict(zip(plain.metric, plain.value))
    assert {"test_loss", "mse", "solved_fraction", "distance", "train_wall_time", "train_throughput", "grad_norm_max",
            "clipped_fraction", "baseline:constant:mse", "baseline:constant:solved_fraction"} == set(values)
    assert values["test_loss"] == values["mse"] and values["baseline:constant:mse"] == pytest.approx(1 / 6)
    assert values["distance"] == 3 and values["train_throughput"] == pytest.approx(6 * 8 / values["train_wall_time"])
    params = json.loads(plain.params.iloc[0])
    assert params == {"steps": 6, "test_size": 40, "lr": 1e-3, "clip": 1.0, "forget_bias": 1.0,
                      "spectral_radius": 0.0, "bptt": 0}  # every default written out; adding has no parameters
    curve = lstm[lstm.metric == "train_loss"]
    assert [json.loads(p)["step"] for p in curve.params] == list(range(1, 7))
    assert len(lstm[lstm.metric == "grad_norm"]) == 6 and set(curve.unit) == {"squared target units"}


def test_accuracy_skips_with_reasons_and_trains_tiny_cases_in_the_interpreter(tiny_run):
    summary, frame = tiny_run
    numpy_row = _rows(frame, backend="numpy")
    assert list(numpy_row.status) == ["skipped"] and "no trainable encoder" in numpy_row.note.iloc[0]
    small = _rows(frame, backend="triton", seq_len=6, metric="test_loss")
    reference = _rows(frame, backend="torch", family="lstm", seq_len=6, metric="test_loss")
    assert list(small.status) == ["ok"]
    assert small.value.iloc[0] == pytest.approx(reference.value.iloc[0], rel=1e-3)  # same seed, same model
    assert "interpreted" in _rows(frame, backend="triton", seq_len=6, metric="train_wall_time").note.iloc[0]
    large = _rows(frame, backend="triton", seq_len=100)
    assert list(large.status) == ["skipped"] and "11 x 100 = 1100" in large.note.iloc[0]
    assert summary.statuses == {"ok": 5, "skipped": 2}  # torch, bow, small triton, gradient rnn and lstm


def test_gradient_rows_per_distance_at_initialisation_and_after_training(tiny_run):
    _, frame = tiny_run
    gradient = _rows(frame, experiment="gradient")
    assert (gradient.status == "ok").all()
    for family, states in (("rnn", {"h"}), ("lstm", {"h", "c"})):
        rows = _rows(gradient, family=family)
        params = rows.params.map(json.loads)
        norms = rows[rows.metric.str.startswith("grad_norm_")]
        assert {m[-1] for m in norms.metric} == states
        assert sorted({(p["distance"], p["trained"]) for p in params[norms.index]}) == \
            [(d, t) for d in range(9) for t in (False, True)]
        assert (norms.n == 5).all()
        primary = rows[(rows.metric == "grad_decay_h") & params.map(lambda p: "trained" not in p)]
        initial = rows[(rows.metric == "grad_decay_h") & params.map(lambda p: p.get("trained") is False)]
        assert len(primary) == 1 and primary.value.iloc[0] == initial.value.iloc[0]
    rnn = _rows(gradient, family="rnn", metric="grad_norm_h")
    at_init = rnn[rnn.params.map(lambda p: not json.loads(p)["trained"])].sort_values("params", key=lambda s: s.map(
        lambda p: json.loads(p)["distance"]))
    assert at_init.value.iloc[-1] < at_init.value.iloc[1] / 5  # a tanh RNN's gradient vanishes with distance


def _case(**overrides) -> Case:
    fields = dict(experiment="accuracy", task="adding", backend="torch", family="lstm", device="cpu", dtype="float32",
                  batch=4, seq_len=6, input_size=4, hidden_size=5, mode="train", seed=0)
    return Case(**{**fields, **overrides})


def test_prepared_cases_name_every_default():
    explicit = prepare_training_case(_case(params={"steps": 2000, "lr": 0.001}))
    assert explicit == prepare_training_case(_case()) == prepare_training_case(explicit)
    assert prepare_training_case(_case(params={"clip": 1})).param_dict["clip"] == 1.0  # one spelling per value
    copy = prepare_training_case(_case(task="copy", seq_len=5))
    assert copy.param_dict["n_symbols"] == 8 and copy.param_dict["test_size"] == 1000
    assert prepare_training_case(_case(task="digits", seq_len=64)).param_dict["test_size"] == 359


@pytest.mark.parametrize("block, message", [
    ("params = {step = 10}", "unknown parameter 'step'; expected a training parameter (steps, lr"),
    ("params = {lr = -1}", "training parameter lr must be in [0.0, 10.0], got -1"),
    ("params = {steps = 1.5}", "training parameter steps must be int, got 1.5"),
    ("params = {n_relevant = 4}", "temporal_order parameter n_relevant must be in [2, 3], got 4"),
    ("modes = ['fwd']", "mode must be 'train'"),
    ("dtypes = ['bf16']", "trains in float32 or float64, got dtype 'bfloat16'"),
    ("task = 'random'", "needs a task, one of adding, charlm"),
    ("backends = ['bow']\nparams = {bptt = 5}", "bptt needs an encoder that carries state (rnn, lstm), got family 'bow'"),
    ("params = {spectral_radius = 2.0}", "spectral_radius rescales the Elman RNN's W_hh (family 'rnn'), got family 'lstm'"),
    ("seq_len = [5]", "temporal_order needs seq_len >= 10, got 5"),
])
def test_bad_training_cases_exit_2_naming_the_value(tmp_path, capsys, block, message):
    settings = {"modes": "modes = ['train']", "task": "task = 'temporal_order'", "backends": "backends = ['torch']",
                "seq_len": "seq_len = [20]"}
    for key in list(settings):
        if block.startswith(f"{key} ="):
            settings.pop(key)
    text = ("[[cases]]\nexperiments = ['accuracy']\nfamilies = ['lstm', 'bow']\nbatch = [2]\nhidden_size = [4]\n"
            + "\n".join(settings.values()) + "\n" + block + "\n")
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert message in capsys.readouterr().err


def test_finite_data_sets_bound_the_batch_and_the_test_set(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text("[[cases]]\nexperiments = ['accuracy']\nmodes = ['train']\ntask = 'digits'\nbackends = ['torch']\n"
                    "families = ['lstm']\nseq_len = [64]\nbatch = [8]\nhidden_size = [4]\nparams = {test_size = 400}\n")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "test_size=400 exceeds the 359 sequences of digits's test split" in capsys.readouterr().err


def test_gradient_needs_a_recurrent_encoder_and_a_fixed_length_task():
    for block, message in (({"backends": ["bow"]}, "needs a recurrent family"),
                           ({"task": "negation", "seq_len": [6]}, "needs a fixed-length, stateless task")):
        document = {"cases": [{"experiments": ["gradient"], "modes": ["train"], "task": "adding", "backends": ["torch"],
                               "seq_len": [6], "batch": [2], "hidden_size": [4], **block}]}
        with pytest.raises(ValueError, match=message):
            parse_suite("t", document)


@pytest.mark.parametrize("family", ["rnn", "lstm"])
def test_state_gradients_equal_the_numpy_bptt_from_each_state(family):
    """``‖∂L/∂h_k‖`` from the stepped torch module against NumPy BPTT run from ``h_k`` to the end."""
    seq_len, batch = 7, 3
    setup = TrainingSetup("adding", seq_len, {}, "torch", family, "cpu", "float64", batch, 4, 5, 2,
                          TrainingConfig(forget_bias=0.5))
    model = build_model(setup)
    from rnnbench.harness.tasks import generate

    inputs, targets = generate("adding", seq_len, n=batch, seed=1)
    norms = state_gradient_norms(model, setup.spec, inputs, targets, family)

    steps = model.input(torch.from_numpy(inputs).double().transpose(0, 1)).detach().numpy()
    weights = [getattr(model.encoder, f"{kind}_l0").detach().numpy() for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    zeros = np.zeros((batch, 5))
    if family == "rnn":
        _, h_T, _ = numpy_rnn.rnn_forward(steps, zeros, *weights)
    else:
        _, h_T, _, _ = numpy_rnn.lstm_forward(steps, zeros, zeros, *weights)
    last = torch.from_numpy(h_T).requires_grad_()
    loss = ((model.head(last).squeeze(-1) - torch.from_numpy(targets).double()) ** 2).sum()
    (upstream,) = torch.autograd.grad(loss, last)
    upstream = upstream.numpy()
    for k in range(1, seq_len + 1):  # from the state after step k through steps k+1..T
        h_k, c_k = _state_after(family, steps[:k], weights, zeros)
        suffix = steps[k:]
        if k == seq_len:  # h_T feeds the loss only; c_T feeds nothing
            expected = {"h": upstream, "c": np.zeros_like(upstream)} if family == "lstm" else {"h": upstream}
        elif family == "rnn":
            _, _, cache = numpy_rnn.rnn_forward(suffix, h_k, *weights)
            expected = {"h": numpy_rnn.rnn_backward(np.zeros((len(suffix), batch, 5)), upstream, cache)["dh0"]}
        else:
            _, _, _, cache = numpy_rnn.lstm_forward(suffix, h_k, c_k, *weights)
            grads = numpy_rnn.lstm_backward(np.zeros((len(suffix), batch, 5)), upstream, np.zeros_like(upstream), cache)
            expected = {"h": grads["dh0"], "c": grads["dc0"]}
        for name, gradient in expected.items():
            np.testing.assert_allclose(norms[name][k - 1], np.linalg.norm(gradient, axis=-1), rtol=1e-9, atol=1e-12)


def _state_after(family, prefix, weights, zeros):
    if family == "rnn":
        return numpy_rnn.rnn_forward(prefix, zeros, *weights)[1], None
    _, h, c, _ = numpy_rnn.lstm_forward(prefix, zeros, zeros, *weights)
    return h, c


def test_decay_fit_and_distance_sampling():
    distances = np.arange(30)
    assert decay_per_step(0.3 * 0.8**distances) == pytest.approx(0.8)
    assert decay_per_step(np.r_[1.0, 2.0 * 1.1 ** distances[1:]]) == pytest.approx(1.1)
    with_zeros = 0.5**distances
    with_zeros[20:] = 0.0  # underflowed norms are left out of the fit
    assert decay_per_step(with_zeros) == pytest.approx(0.5)
    assert math.isnan(decay_per_step(np.array([1.0, 0.0, 0.0])))
    assert sampled_distances(5) == [0, 1, 2, 3, 4]
    many = sampled_distances(1000)
    assert many[0] == 0 and many[-1] == 999 and len(many) == 50


def test_lrd_suites_parse_and_the_smoke_suite_holds_the_promised_cases():
    smoke = load_suite("lrd-smoke")
    assert {case.mode for case in smoke.cases} == {"train"}
    have = {(case.task, case.seq_len, case.family, case.backend) for case in smoke.cases if case.experiment == "accuracy"}
    assert {("adding", 100, "lstm", "torch"), ("adding", 100, "rnn", "torch")} <= have
    order = {(family, backend) for task, seq_len, family, backend in have if task == "temporal_order" and seq_len >= 50}
    assert {("lstm", "torch"), ("bow", "bow"), ("cnn", "cnn")} <= order
    cpu = load_suite("lrd-cpu")
    assert {case.task for case in cpu.cases} == {"adding", "copy", "temporal_order", "negation", "parity", "listops",
                                                 "digits", "charlm"}
    assert "gradient" in {case.experiment for case in cpu.cases}
    for name in ("lrd-gpu", "lrd-gpu-full"):
        gpu = load_suite(name, device_override="cuda")
        assert {"torch", "triton"} <= {case.backend for case in gpu.cases} and max(c.seq_len for c in gpu.cases) >= 1000
        # cuDNN and Triton train every recurrent configuration with the same seeds
        recurrent = [case for case in gpu.cases if case.backend in ("torch", "triton")]
        by_backend = {backend: {(c.experiment, c.task, c.family, c.seq_len, c.seed, c.params)
                                for c in recurrent if c.backend == backend} for backend in ("torch", "triton")}
        assert by_backend["torch"] == by_backend["triton"], name
