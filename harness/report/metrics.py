"""What the report knows about each metric: a readable label, the unit, which values are valid, and
which direction is better.

This table is the one place to adapt when an experiment adds or renames a metric. A metric that is
not listed still renders (its label is its name, its unit the ``unit`` column, any finite value is
valid), it just has no direction, so ``compare`` does not gate on it.

Validity rules (a value that breaks its rule is flagged in the report and never divided by or drawn
on a log axis):

* ``positive``: finite and > 0 (times, sizes, rates: things that are divided by or drawn on log axes);
* ``nonnegative``: finite and >= 0 (errors, losses, norms: a float64 reference can match exactly);
* ``fraction``: finite and in [0, 1];
* ``finite``: any finite number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    label: str
    unit: str
    rule: str = "finite"
    #: "lower" or "higher" is better; None: no direction (not gated by ``compare``)
    better: str | None = None
    #: the value is the median of repeated noisy samples (``n`` of them, IQR ``q25``-``q75``);
    #: ``compare`` judges it only with at least :data:`MIN_SAMPLES` samples on each side
    sampled: bool = False


#: fewer samples than this have no interquartile range worth the name
MIN_SAMPLES = 3


METRICS: dict[str, Metric] = {
    # speed, memory, numerics (harness/experiments/)
    "latency": Metric("latency", "ms", "positive", "lower", sampled=True),
    "latency_cudagraph": Metric("latency, CUDA-graph replay", "ms", "positive", "lower", sampled=True),
    "peak_memory": Metric("peak memory", "MiB", "positive", "lower"),
    "max_abs_err": Metric("max |error| vs float64 reference", "unitless", "nonnegative"),
    # numerical error along the sequence (params {"t": step})
    "err_p50": Metric("median |error| at step t", "unitless", "nonnegative"),
    "err_p99": Metric("99th-percentile |error| at step t", "unitless", "nonnegative"),
    "err_max": Metric("max |error| at step t", "unitless", "nonnegative"),
    # accuracy experiment (harness/experiments/accuracy.py): task metrics on held-out data; a task's
    # chance or trivial baselines are rows "baseline:<name>:<metric>" of the same case
    "accuracy": Metric("accuracy", "fraction", "fraction", "higher"),
    "solved_fraction": Metric("fraction solved (|error| < 0.04)", "fraction", "fraction", "higher"),
    "mse": Metric("mean squared error", "squared target units", "nonnegative", "lower"),
    "bpc": Metric("bits per character", "bits per character", "nonnegative", "lower"),
    "cross_entropy": Metric("cross-entropy", "nats", "nonnegative", "lower"),
    "test_loss": Metric("held-out loss", "unitless", "nonnegative", "lower"),
    "distance": Metric("dependency distance", "steps", "nonnegative"),
    "train_throughput": Metric("training throughput", "sequences/s", "positive", "higher"),
    "train_wall_time": Metric("training wall time", "s", "positive", "lower"),
    "train_loss": Metric("training loss", "unitless", "nonnegative"),
    "grad_norm": Metric("gradient norm before clipping", "unitless", "nonnegative"),
    "grad_norm_max": Metric("largest gradient norm before clipping", "unitless", "nonnegative"),
    "clipped_fraction": Metric("fraction of steps clipped", "fraction", "fraction"),
    "sample_length": Metric("generated sample length", "characters", "nonnegative"),
    # gradient experiment (params {"distance": T - k, "trained": bool})
    "grad_norm_h": Metric("‖∂L/∂h_k‖", "unitless", "nonnegative"),
    "grad_norm_c": Metric("‖∂L/∂c_k‖", "unitless", "nonnegative"),
    "grad_decay_h": Metric("decay of ‖∂L/∂h_k‖ per step", "factor per step", "nonnegative"),
    "grad_decay_c": Metric("decay of ‖∂L/∂c_k‖ per step", "factor per step", "nonnegative"),
}

#: task metrics (accuracy experiment), in the order their panels are drawn
TASK_METRICS = ("accuracy", "solved_fraction", "mse", "bpc", "cross_entropy")
#: a task metric's chance or trivial baseline: metric ``baseline:<name>:<metric>`` of the same case
BASELINE_PREFIX = "baseline:"


def baseline_metric(name: str) -> tuple[str, str] | None:
    """``(baseline name, task metric)`` of a ``baseline:<name>:<metric>`` metric, else None."""
    if not name.startswith(BASELINE_PREFIX) or name.count(":") != 2:
        return None
    _, baseline, metric = name.split(":")
    return baseline, metric


def metric_info(name: str, unit: str = "") -> Metric:
    """The entry of ``name``; ``baseline:<name>:<metric>`` shares its metric's unit and rule;
    unknown metrics get a plain entry with ``unit`` (from the results) as their unit."""
    if name in METRICS:
        return METRICS[name]
    parts = baseline_metric(name)
    if parts is not None and parts[1] in METRICS:
        base = METRICS[parts[1]]
        return Metric(f"{parts[0].replace('_', ' ')} baseline: {base.label}", base.unit, base.rule)
    return Metric(name, unit or "unitless")


def axis_label(name: str, unit: str = "") -> str:
    """``label (unit)`` for an axis or a column header."""
    info = metric_info(name, unit)
    return f"{info.label} ({info.unit})"


def value_problem(name: str, value: float) -> str | None:
    """Why ``value`` is not a valid value of metric ``name`` (None when it is)."""
    rule = metric_info(name).rule
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "infinite"
    if rule == "positive" and value <= 0:
        return "zero" if value == 0 else "negative"
    if rule in ("nonnegative", "fraction") and value < 0:
        return "negative"
    if rule == "fraction" and value > 1:
        return "above 1 for a fraction"
    return None
