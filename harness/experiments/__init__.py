"""The experiments a suite can ask for, one module each; a new experiment is one module that
declares an :class:`~rnnbench.harness.experiments.base.Experiment` plus one line here."""

from __future__ import annotations

from rnnbench.harness.errors import UsageError
from rnnbench.harness.experiments import accuracy, gradient, memory, numerics, numerics_over_time, speed
from rnnbench.harness.experiments.base import Experiment

EXPERIMENTS: dict[str, Experiment] = {
    experiment.name: experiment
    for experiment in (
        speed.EXPERIMENT,
        memory.EXPERIMENT,
        numerics.EXPERIMENT,
        numerics_over_time.EXPERIMENT,
        accuracy.EXPERIMENT,
        gradient.EXPERIMENT,
    )
}


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise UsageError(f"unknown experiment {name!r}; expected one of {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


__all__ = ["EXPERIMENTS", "Experiment", "get_experiment"]
