"""Scoring a trained :class:`~rnnbench.harness.sequence_model.SequenceModel`: its outputs on held-out
data, the task's metrics, and text sampled from a language model."""

from __future__ import annotations

import numpy as np
import torch

from rnnbench.harness.sequence_model import SequenceModel, as_tensors, cut_to_longest
from rnnbench.harness.tasks import TaskSpec, metrics
from rnnbench.harness.tasks.vocabulary import decode

#: sequences per forward pass when scoring held-out data
EVAL_BATCH = 500
#: longest text sampled from a language model, in tokens
SAMPLE_LIMIT = 200


@torch.no_grad()
def predict(model: SequenceModel, spec: TaskSpec, inputs: np.ndarray) -> np.ndarray:
    """The model's outputs on held-out ``inputs``, as ``TaskSpec.evaluate`` takes them (float64).

    Stateful tasks run every row as one stream, chunk after chunk of ``spec.seq_len`` steps with the
    state carried; other tasks run in batches of :data:`EVAL_BATCH`, each cut to its longest sequence.
    """
    model.eval()
    parts = []
    if spec.stateful:
        state = None
        for start in range(0, inputs.shape[1], spec.seq_len):
            x, lengths = as_tensors(model, spec, inputs[:, start:start + spec.seq_len])
            predictions, state = model(x, lengths, state)
            parts.append(predictions)
        return torch.cat(parts, dim=1).double().cpu().numpy()
    for start in range(0, len(inputs), EVAL_BATCH):
        batch = cut_to_longest(spec, inputs[start:start + EVAL_BATCH])
        predictions, _ = model(*as_tensors(model, spec, batch))
        parts.append(predictions.double().cpu().numpy())
    return np.concatenate(parts, axis=0)


def evaluate(model: SequenceModel, spec: TaskSpec, inputs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Every metric of ``spec`` on held-out data, plus ``test_loss``: the training loss's measure
    (squared error or cross-entropy in nats) on the same data."""
    outputs = predict(model, spec, inputs)
    scores = spec.evaluate(outputs, targets)
    if spec.target.kind == "regression":
        scores["test_loss"] = metrics.mse(outputs, targets)
    else:
        scores["test_loss"] = metrics.cross_entropy(outputs, targets)
    return scores


def generates_text(spec: TaskSpec) -> bool:
    """Whether the task is next-token prediction over a vocabulary with ``<bos>``/``<eos>``, so a
    trained model can write a sample."""
    vocabulary = spec.inputs.vocabulary or ()
    return (spec.target.kind == "step_class" and spec.target.num_classes == spec.inputs.size
            and "<bos>" in vocabulary and "<eos>" in vocabulary)


@torch.no_grad()
def sample_text(model: SequenceModel, spec: TaskSpec, seed: int, limit: int = SAMPLE_LIMIT) -> str:
    """Text drawn from the model from ``<bos>`` until ``<eos>`` or ``limit`` tokens, each token from
    the softmax of the model's prediction given the whole prefix (so it works for every encoder)."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    tokens = [spec.inputs.token_id("<bos>")]
    end = spec.inputs.token_id("<eos>")
    while len(tokens) <= limit and tokens[-1] != end:
        x, lengths = as_tensors(model, spec, np.array([tokens], dtype=np.int64))
        logits, _ = model(x, lengths)
        probabilities = torch.softmax(logits[0, -1].double().cpu(), dim=-1)
        tokens.append(int(torch.multinomial(probabilities, 1, generator=generator)))
    return decode(tokens, spec.inputs.vocabulary)
