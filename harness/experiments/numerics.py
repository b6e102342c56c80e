"""``numerics``: the error of a backend's outputs and every gradient against the float64 reference.

The measurement is the correctness gate itself (:func:`rnnbench.harness.correctness.check_correctness`):
its ``max_abs_err`` row, stored by the driver, is this experiment's primary row, so ``measure`` adds
nothing.
"""

from __future__ import annotations

from rnnbench.harness.experiments.base import Experiment


def _nothing_beyond_the_gate(case, workload, run_id):
    return []


EXPERIMENT = Experiment(
    name="numerics",
    metric="max_abs_err",
    unit="",
    description="max |backend - float64 reference| over outputs and (fwd_bwd) every gradient",
    measure=_nothing_beyond_the_gate,
    timed=False,
)
