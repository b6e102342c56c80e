"""The temporal-order task (Hochreiter & Schmidhuber 1997, Experiments 6a and 6b).

``seq_len`` = T, the number of steps (fixed; HS97 drew T from [100, 110]). A sequence starts with
``E``, ends with the trigger ``B``, and holds k = ``n_relevant`` relevant symbols, each X or Y, at
random positions in k windows; every other step is a distractor drawn uniformly from a, b, c, d.
The windows are HS97's, scaled from T = 100 (6a: [10, 20] and [50, 60]; 6b: [10, 20], [33, 43] and
[66, 76]), i.e. ``[floor(lo·T), floor(hi·T)]`` with the fractions in ``WINDOWS``.

Token ids: 0 E, 1 B, 2-5 a-d, 6 X, 7 Y. Inputs int64 ``(n, T)``; target int64 ``(n,)``, the class
``sum_j [symbol j is Y]·2^(k-1-j)`` of the relevant symbols in order (6a: XX 0, XY 1, YX 2, YY 3),
read after the trigger.

Baselines: chance 1/2^k. A bag-of-words model sees only the counts of X and Y (the distractors and
positions are independent of the class), so it separates the classes by their number of Ys and no
further: at most (k + 1)/2^k, i.e. 75 % for 6a and 50 % for 6b. Distance: the first relevant symbol
must be held until the readout at step T - 1, at least ``T - 1 - floor(0.2·T)`` steps.
"""

from __future__ import annotations

import math

import numpy as np

from rnnbench.harness.errors import UsageError
from rnnbench.harness.tasks.base import Param, Task
from rnnbench.harness.tasks.spec import Baseline, InputSpec, TargetSpec, TaskSpec

VOCABULARY = ("E", "B", "a", "b", "c", "d", "X", "Y")
START, TRIGGER, FIRST_DISTRACTOR, X = 0, 1, 2, 6
N_DISTRACTORS = 4

#: relevant-symbol windows as fractions of T, inclusive (HS97's positions at T = 100)
WINDOWS = {2: ((0.10, 0.20), (0.50, 0.60)), 3: ((0.10, 0.20), (0.33, 0.43), (0.66, 0.76))}
#: the shortest T at which every window holds positions of its own between E and B (for 6a and 6b)
MIN_SEQ_LEN = 10


def windows(seq_len: int, n_relevant: int) -> list[tuple[int, int]]:
    """The inclusive position windows ``[(lo, hi), ...]`` of the relevant symbols at length ``seq_len``."""
    return [(math.floor(lo * seq_len), math.floor(hi * seq_len)) for lo, hi in WINDOWS[n_relevant]]


class TemporalOrder(Task):
    name = "temporal_order"
    params = (Param("n_relevant", 2, "relevant symbols: 2 (HS97 6a, 4 classes) or 3 (6b, 8 classes)", minimum=2, maximum=3),)

    def check(self, seq_len, params):
        if seq_len < MIN_SEQ_LEN:
            raise UsageError(f"temporal_order needs seq_len >= {MIN_SEQ_LEN}, got {seq_len}")

    def describe(self, seq_len, params):
        k = params["n_relevant"]
        classes = 2**k
        return TaskSpec(
            name=self.name, seq_len=seq_len, params=params,
            inputs=InputSpec("tokens", len(VOCABULARY), vocabulary=VOCABULARY),
            target=TargetSpec("class", classes),
            metrics=("accuracy",),
            baselines=(
                Baseline("chance", "accuracy", 1 / classes, "a uniform guess of the class"),
                Baseline("bag_of_words_max", "accuracy", (k + 1) / classes,
                         "the best order-free model: it sees how many relevant symbols are Y, not their order"),
            ),
            distance=seq_len - 1 - windows(seq_len, k)[0][1], max_steps=seq_len,
        )

    def sample(self, seq_len, n, rng, split, params):
        k = params["n_relevant"]
        inputs = rng.integers(FIRST_DISTRACTOR, FIRST_DISTRACTOR + N_DISTRACTORS, size=(n, seq_len))
        inputs[:, 0] = START
        inputs[:, -1] = TRIGGER
        is_y = rng.integers(0, 2, size=(n, k))
        rows = np.arange(n)
        for j, (lo, hi) in enumerate(windows(seq_len, k)):
            inputs[rows, rng.integers(lo, hi + 1, size=n)] = X + is_y[:, j]
        targets = is_y @ (2 ** np.arange(k - 1, -1, -1))
        return inputs.astype(np.int64), targets.astype(np.int64)
