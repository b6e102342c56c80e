"""The training loop: it learns, it is reproducible, every encoder reads each sequence at its own end,
truncation and carried state do what they say, and the initialisation options take effect."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from rnnbench.baselines.bow import BagOfWordsEncoder
from rnnbench.baselines.cnn import CNNEncoder, layers_to_cover
from rnnbench.harness.backends import covering_cnn
from rnnbench.harness.tasks import TASKS, describe, generate
from rnnbench.harness.evaluation import evaluate, generates_text, predict, sample_text
from rnnbench.harness.training import (PARAM_NAMES, PARAMS, TrainingConfig, TrainingSetup, build_model, held_out_data,
                                       train, training_batches)

TRAINABLE_ON_CPU = [("torch", "rnn"), ("torch", "lstm"), ("eager", "lstm"), ("bow", "bow"), ("cnn", "cnn"),
                    ("cnn-dilated", "cnn")]


@pytest.fixture(autouse=True)
def one_thread():
    """Small models train fastest on one thread, and a shared CI machine stays responsive."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _setup(task="adding", seq_len=4, backend="torch", family="lstm", task_params=None, batch=32, hidden=16,
           seed=0, **config) -> TrainingSetup:
    return TrainingSetup(task, seq_len, task_params or {}, backend, family, "cpu", "float32", batch, 8, hidden, seed,
                         TrainingConfig(**{"test_size": 200, **config}))


def test_a_tiny_task_is_learned_in_seconds():
    setup = _setup(steps=250, lr=1e-2)
    result = train(setup, progress=False)
    scores = evaluate(result.model, setup.spec, *held_out_data(setup))
    assert scores["mse"] < 0.02 < 1 / 6  # the constant predictor's MSE is 1/6
    assert result.curve[-1].loss < result.curve[0].loss / 5
    assert result.steps_done == 250 and result.sequences == 250 * 32 and result.diverged_at is None


def test_the_same_seed_gives_the_same_loss_curve():
    first, again = (train(_setup(steps=30), progress=False).curve for _ in range(2))
    other = train(_setup(steps=30, seed=1), progress=False).curve
    assert first == again
    assert [p.loss for p in first] != [p.loss for p in other]


def test_the_curve_keeps_at_most_fifty_windows():
    curve = train(_setup(steps=120, hidden=4), progress=False).curve
    assert len(curve) == 40 and [p.step for p in curve[:2]] == [3, 6] and curve[-1].step == 120
    curve = train(_setup(steps=7, hidden=4), progress=False).curve
    assert [p.step for p in curve] == list(range(1, 8))


@pytest.mark.parametrize("backend, family", TRAINABLE_ON_CPU)
def test_every_encoder_reads_each_sequence_at_its_own_last_token(backend, family):
    setup = _setup("negation", 12, backend, family, {"gap": 2}, hidden=8)
    model = build_model(setup)
    inputs, _ = generate("negation", 12, n=20, seed=3)
    lengths = setup.spec.lengths(inputs)
    alone = np.concatenate([predict(model, setup.spec, inputs[i:i + 1, :lengths[i]]) for i in range(20)])
    padded = predict(model, setup.spec, np.pad(inputs, ((0, 0), (0, 5))))  # more padding than any batch had
    np.testing.assert_allclose(padded, alone, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("encoder", [BagOfWordsEncoder(3, 5, pooling="mean"), BagOfWordsEncoder(3, 5, pooling="sum"),
                                     CNNEncoder(3, 5, num_layers=3, kernel_size=3, dilation_base=2)])
def test_step_features_are_the_features_of_every_prefix(encoder):
    x = torch.randn(9, 2, 3)
    steps = encoder.step_features(x)
    for t in range(9):
        torch.testing.assert_close(steps[t], encoder(x[:t + 1]))


def test_the_dilated_cnn_covers_the_task():
    for steps in (1, 7, 8, 64, 100, 1000):
        layers = layers_to_cover(steps)
        assert covering_cnn(2, 4, steps).receptive_field >= steps
        assert layers == 1 or CNNEncoder(2, 4, num_layers=layers - 1, dilation_base=2).receptive_field < steps
    model = build_model(_setup("temporal_order", 100, "cnn-dilated", "cnn"))
    assert model.encoder.encoder.receptive_field >= describe("temporal_order", 100).max_steps


def test_truncated_bptt_stops_the_gradient_between_chunks():
    setup = _setup("adding", 12, family="rnn")
    model = build_model(setup)
    inputs, _ = generate("adding", 12, n=4, seed=0)
    lengths = torch.full((4,), 12)
    for bptt, reached in ((0, 12), (5, 5), (8, 8), (12, 12)):  # chunks end at the last step: 2+5+5, 4+8, 12
        x = torch.from_numpy(inputs).requires_grad_()
        predictions, _ = model(x, lengths, bptt=bptt)
        predictions.sum().backward()
        touched = (x.grad.abs().sum(dim=(0, 2)) > 0).nonzero().ravel().tolist()
        assert touched == list(range(12 - reached, 12)), bptt
    forward = [model(torch.from_numpy(inputs), lengths, bptt=bptt)[0] for bptt in (0, 5)]
    torch.testing.assert_close(*forward)  # truncation changes gradients, not outputs


def test_a_stateful_task_carries_the_state_across_chunks():
    setup = _setup("charlm", 16, batch=3)
    batches = training_batches(setup, setup.spec)
    chunks = [next(batches) for _ in range(3)]
    assert [chunk.fresh for chunk in chunks] == [True, False, False]
    stream, _ = generate("charlm", 16, n=3, seed=int(np.random.SeedSequence([0, 0]).generate_state(1)[0]))
    np.testing.assert_array_equal(np.concatenate([c.inputs for c in chunks], axis=1), stream[:, :48])
    # scoring a stream chunk by chunk with the state carried equals one pass over the whole stream
    model = build_model(setup)
    inputs = stream[:, :48]
    chunked = predict(model, setup.spec, inputs)
    whole = predict(model, dataclasses.replace(setup.spec, seq_len=48), inputs)
    np.testing.assert_allclose(chunked, whole, rtol=1e-4, atol=1e-5)


def test_lstm_forget_bias_and_rnn_spectral_radius_are_set_at_initialisation():
    for backend in ("torch", "eager"):
        encoder = build_model(_setup(backend=backend, forget_bias=2.5, hidden=6)).encoder
        bias = (encoder.bias_ih_l0 + encoder.bias_hh_l0).detach()
        assert torch.all(bias[6:12] == 2.5) and not torch.all(bias[:6] == 2.5)
    encoder = build_model(_setup(family="rnn", spectral_radius=1.7, hidden=6)).encoder
    radius = torch.linalg.eigvals(encoder.weight_hh_l0.detach().double()).abs().max().item()
    assert radius == pytest.approx(1.7)


def test_a_language_model_writes_a_sample_from_bos_to_eos_or_the_limit():
    setup = _setup("charlm", 8, batch=2, hidden=8)
    spec = setup.spec
    assert generates_text(spec) and not generates_text(describe("copy", 5))
    model = build_model(setup)
    text = sample_text(model, spec, seed=0, limit=30)
    assert text == sample_text(model, spec, seed=0, limit=30) and 0 < len(text)
    assert len(text) <= 30 * max(len(token) for token in spec.inputs.vocabulary)


def test_a_diverging_loss_stops_training(monkeypatch):
    from rnnbench.harness.sequence_model import SequenceModel

    calls = []
    real = SequenceModel.loss

    def poisoned(self, predictions, targets):
        calls.append(1)
        loss = real(self, predictions, targets)
        return loss * float("nan") if len(calls) >= 4 else loss

    monkeypatch.setattr(SequenceModel, "loss", poisoned)
    result = train(_setup(steps=20), progress=False)
    assert result.diverged_at == 4 and result.steps_done == 4 and result.curve[-1].step == 4


def test_training_and_task_parameters_share_one_namespace_without_clashes():
    assert PARAM_NAMES == tuple(param.name for param in PARAMS)
    assert [param.default for param in PARAMS] == list(dataclasses.astuple(TrainingConfig()))
    for task in TASKS.values():
        assert not {param.name for param in task.params} & set(PARAM_NAMES), task.name
