"""The copy-memory task (Arjovsky, Shah & Bengio 2016; the official uRNN code's layout).

``seq_len`` = T, the delay (T >= 1); with K = ``n_recall`` and M = ``n_symbols`` a sequence has
S = T + 2K steps. Token ids: 0 blank, 1..M data symbols, M + 1 the delimiter (vocabulary M + 2).
Inputs int64 ``(n, S)``: K data symbols i.i.d. uniform, T - 1 blanks, the delimiter, K blanks.
Targets int64 ``(n, S)`` over the classes 0..M: T + K blanks, then the K data symbols in order.
The loss and ``cross_entropy`` cover every step; ``accuracy`` counts the last K steps only.

Baselines: a memoryless model predicts blank for T + K steps and a uniform guess for the last K:
cross-entropy ``K·ln M / (T + 2K)`` nats (``10·ln 8 / (T + 20)`` with the defaults) and recall
accuracy 1/M. Distance: every symbol is recalled exactly T + K steps after it was shown.
"""

from __future__ import annotations

import math

import numpy as np

from rnnbench.harness.tasks.base import Param, Task
from rnnbench.harness.tasks.spec import Baseline, InputSpec, TargetSpec, TaskSpec

BLANK = 0


class CopyMemory(Task):
    name = "copy"
    params = (
        Param("n_symbols", 8, "number of distinct data symbols M", minimum=2, maximum=1000),
        Param("n_recall", 10, "number of symbols K shown at the start and recalled at the end", minimum=1, maximum=1000),
    )

    def describe(self, seq_len, params):
        n_symbols, n_recall = params["n_symbols"], params["n_recall"]
        steps = seq_len + 2 * n_recall
        vocabulary = ("<blank>", *(f"s{i}" for i in range(1, n_symbols + 1)), "<delimiter>")
        return TaskSpec(
            name=self.name, seq_len=seq_len, params=params,
            inputs=InputSpec("tokens", n_symbols + 2, vocabulary=vocabulary),
            target=TargetSpec("step_class", n_symbols + 1, accuracy_steps=(steps - n_recall, steps)),
            metrics=("accuracy", "cross_entropy"),
            baselines=(
                Baseline("chance", "accuracy", 1 / n_symbols, "a uniform guess of each recalled symbol"),
                Baseline("memoryless", "cross_entropy", n_recall * math.log(n_symbols) / steps,
                         "blank until the recall, then a uniform guess over the data symbols"),
            ),
            distance=seq_len + n_recall, max_steps=steps,
        )

    def sample(self, seq_len, n, rng, split, params):
        n_symbols, n_recall = params["n_symbols"], params["n_recall"]
        steps = seq_len + 2 * n_recall
        symbols = rng.integers(1, n_symbols + 1, size=(n, n_recall))
        inputs = np.full((n, steps), BLANK, dtype=np.int64)
        inputs[:, :n_recall] = symbols
        inputs[:, seq_len + n_recall - 1] = n_symbols + 1
        targets = np.full((n, steps), BLANK, dtype=np.int64)
        targets[:, steps - n_recall:] = symbols
        return inputs, targets
