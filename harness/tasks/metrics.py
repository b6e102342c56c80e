"""The task metrics, in NumPy: what each one measures, its unit and direction.

A task lists the metric names it reports (``TaskSpec.metrics``); ``TaskSpec.evaluate`` computes them
from a model's outputs with these functions. Regression predictions and targets are ``(n,)``; logits
are ``(..., C)`` over the last axis with integer targets ``(...)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
