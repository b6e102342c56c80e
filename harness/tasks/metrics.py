"""The task metrics, in NumPy: what each one measures, its unit and direction.

A task lists the metric names it reports (``TaskSpec.metrics``); :func:`evaluate` computes them from a
model's outputs. The shapes follow the target kind (see :mod:`rnnbench.harness.tasks.spec`):
regression predictions ``(n,)``; class logits ``(n, C)``; step-class logits ``(n, S, C)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rnnbench.harness.tasks.spec import TaskSpec

#: HS97's criterion for a solved adding-problem sequence: |prediction - target| below this
SOLVED_TOLERANCE = 0.04


@dataclass(frozen=True)
class Metric:
    """A metric's ``name`` (as in ``TaskSpec.metrics`` and the results' ``metric`` column), its
    ``unit`` and whether a higher value is better."""

    name: str
    unit: str
    higher_is_better: bool
    description: str


METRICS = {
    metric.name: metric
    for metric in (
        Metric("mse", "squared target units", False, "mean squared error of the regression target"),
        Metric("solved_fraction", "fraction", True,
               f"fraction of sequences with |prediction - target| < {SOLVED_TOLERANCE} (Hochreiter & Schmidhuber 1997)"),
        Metric("accuracy", "fraction", True, "fraction of argmax predictions equal to the target class"),
        Metric("cross_entropy", "nats", False, "mean negative log-likelihood of the target class"),
        Metric("bpc", "bits per character", False, "mean negative log2-likelihood of the next token"),
    )
}


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """float64 log-probabilities over the last axis, computed stably."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def mse(predictions: np.ndarray, targets: np.ndarray) -> float:
    return float(np.mean((np.asarray(predictions, np.float64) - targets) ** 2))


def solved_fraction(predictions: np.ndarray, targets: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(predictions, np.float64) - targets) < SOLVED_TOLERANCE))


def accuracy(logits: np.ndarray, targets: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=-1) == targets))


def cross_entropy(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean over every target entry, in nats."""
    log_p = log_softmax(logits)
    return float(-np.mean(np.take_along_axis(log_p, np.asarray(targets)[..., None], axis=-1)))


def evaluate(spec: "TaskSpec", outputs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """``{metric: value}`` for every metric the spec lists (see ``TaskSpec.evaluate``)."""
    outputs, targets = np.asarray(outputs), np.asarray(targets)
    expected = targets.shape + ((spec.target.num_classes,) if spec.target.kind != "regression" else ())
    if outputs.shape != expected:
        raise ValueError(f"outputs have shape {outputs.shape}; {spec.name} expects {expected} for targets of shape {targets.shape}")
    values = {}
    for name in spec.metrics:
        if name == "mse":
            values[name] = mse(outputs, targets)
        elif name == "solved_fraction":
            values[name] = solved_fraction(outputs, targets)
        elif name == "accuracy" and spec.target.accuracy_steps is not None:
            start, stop = spec.target.accuracy_steps
            values[name] = accuracy(outputs[:, start:stop], targets[:, start:stop])
        elif name == "accuracy":
            values[name] = accuracy(outputs, targets)
        elif name == "cross_entropy":
            values[name] = cross_entropy(outputs, targets)
        elif name == "bpc":
            values[name] = cross_entropy(outputs, targets) / math.log(2)
        else:
            raise ValueError(f"unknown metric {name!r}; expected one of {sorted(METRICS)}")
    return values
