"""Parity of a bit string, with test lengths beyond the training lengths (Delétang et al. 2023).

``seq_len`` = L, the longest training string. Training strings have lengths uniform in
``[min_len, L]``; test strings (``split="test"``) lengths uniform in ``[L + 1, test_factor·L]``, so
every test string is longer than any training string. Bits are i.i.d. uniform.

Token ids: 0 ``<pad>``, 1 the bit 0, 2 the bit 1. Inputs int64 ``(n, S)`` right-padded with
``<pad>`` to the longest string drawn (``TaskSpec.lengths`` gives each length). Target int64
``(n,)``: the number of 1 bits mod 2, read after each string's last bit.

Baseline: chance 1/2. (Parity is a function of the count of 1s, so a bag of words followed by a
non-linear head can solve it; a linear head on the counts cannot.) Distance: ``L - 1``, from the
first bit of the longest training string to its readout; the test split reaches ``test_factor·L - 1``.
"""

from __future__ import annotations

import numpy as np

from rnnbench.harness.errors import UsageError
from rnnbench.harness.tasks.base import Param, Task
from rnnbench.harness.tasks.spec import Baseline, InputSpec, TargetSpec, TaskSpec
from rnnbench.harness.tasks.vocabulary import PAD

VOCABULARY = ("<pad>", "0", "1")
ZERO = 1


class Parity(Task):
    name = "parity"
    params = (
        Param("min_len", 1, "shortest training string", minimum=1),
        Param("test_factor", 4, "test strings are up to test_factor times the longest training string", minimum=2, maximum=1000),
    )

    def check(self, seq_len, params):
        if seq_len < params["min_len"]:
            raise UsageError(f"parity needs seq_len >= min_len = {params['min_len']}, got {seq_len}")

    def lengths_range(self, seq_len: int, split: str, params) -> tuple[int, int]:
        """Inclusive ``(shortest, longest)`` string length of ``split``."""
        return (params["min_len"], seq_len) if split == "train" else (seq_len + 1, params["test_factor"] * seq_len)

    def describe(self, seq_len, params):
        return TaskSpec(
            name=self.name, seq_len=seq_len, params=params,
            inputs=InputSpec("tokens", len(VOCABULARY), vocabulary=VOCABULARY, pad_id=PAD),
            target=TargetSpec("class", 2),
            metrics=("accuracy",),
            baselines=(Baseline("chance", "accuracy", 0.5, "a uniform guess"),),
            distance=seq_len - 1, max_steps=params["test_factor"] * seq_len, variable_length=True,
        )

    def sample(self, seq_len, n, rng, split, params):
        shortest, longest = self.lengths_range(seq_len, split, params)
        lengths = rng.integers(shortest, longest + 1, size=n)
        inside = np.arange(lengths.max())[None, :] < lengths[:, None]
        bits = rng.integers(0, 2, size=inside.shape) * inside
        inputs = np.where(inside, bits + ZERO, PAD)
        return inputs.astype(np.int64), (bits.sum(axis=1) % 2).astype(np.int64)
