"""The adding problem, in the variant of Arjovsky et al. 2016 (uRNN) and later papers.

``seq_len`` = T, the number of steps (T >= 2). Inputs float32 ``(n, T, 2)``: channel 0 a value
~ U[0, 1], channel 1 a marker that is 1 at exactly two steps, one uniform in the first half
``[0, T//2)`` and one uniform in the second half ``[T//2, T)``, 0 elsewhere. Target float32 ``(n,)``:
the sum of the two marked values, read after the last step.

Baselines: predicting the constant 1 (the target's mean) gives MSE = Var(U1 + U2) = 2/12 = 1/6, and
|1 - target| < 0.04 on a fraction 2·0.04 - 0.04² = 0.0784 of sequences (the sum of two uniforms has
the triangular density 1 - |s - 1| around 1). Distance: the first marked value must be held until
the readout at step T - 1, at least ``T - T//2`` steps (HS97's "minimal lag").
"""

from __future__ import annotations

import numpy as np

from rnnbench.harness.errors import UsageError
from rnnbench.harness.tasks.base import Task
from rnnbench.harness.tasks.metrics import SOLVED_TOLERANCE
from rnnbench.harness.tasks.spec import Baseline, InputSpec, TargetSpec, TaskSpec


class Adding(Task):
    name = "adding"

    def check(self, seq_len, params):
        if seq_len < 2:
            raise UsageError(f"adding needs seq_len >= 2 (one marker in each half), got {seq_len}")

    def describe(self, seq_len, params):
        return TaskSpec(
            name=self.name, seq_len=seq_len, params=params,
            inputs=InputSpec("features", 2), target=TargetSpec("regression"),
            metrics=("mse", "solved_fraction"),
            baselines=(
                Baseline("constant", "mse", 1 / 6, "predict 1, the mean of the target"),
                Baseline("constant", "solved_fraction", 2 * SOLVED_TOLERANCE - SOLVED_TOLERANCE**2,
                         "predict 1, the mean of the target"),
            ),
            distance=seq_len - seq_len // 2, max_steps=seq_len,
        )

    def sample(self, seq_len, n, rng, split, params):
        half = seq_len // 2
        values = rng.random((n, seq_len))
        first = rng.integers(0, half, size=n)
        second = rng.integers(half, seq_len, size=n)
        rows = np.arange(n)
        markers = np.zeros((n, seq_len))
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        inputs = np.stack([values, markers], axis=-1).astype(np.float32)
        # the target is the sum of the values the model sees, rounded to float32 as they are
        targets = inputs[rows, first, 0] + inputs[rows, second, 0]
        return inputs, targets.astype(np.float32)
