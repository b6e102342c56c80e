"""Negation: many-to-one sentiment whose label depends on word order ("not good" vs "good not").

``seq_len`` = the longest sentence, in tokens including ``<bos>`` and ``<eos>``. A sentence is
``<bos> fillers A fillers B fillers <eos>`` with one sentiment word and, in a fraction
``negated_fraction`` of sentences, one negator: A and B are the two, in either order with equal
probability, exactly ``gap`` steps apart (``gap = 1``: adjacent). In sentences without a negator a
filler takes its place. Lengths are uniform in ``[gap + 3, seq_len]``, the fillers before A uniform
in number, the rest after B. Fillers are words ``w001 ... w<n_fillers>`` drawn with Zipf
probabilities ``∝ 1/rank``.

Label (int64, 1 positive, 0 negative): the sentiment word's polarity, flipped when a negator comes
before it; a negator after it flips nothing. So a sentence and the same sentence with negator and
word swapped have the same bag of words and opposite labels, and both are equally likely.

Vocabulary: the specials (``<pad>`` 0, ``<unk>`` 1, ``<bos>`` 2, ``<eos>`` 3), the negators, the
sentiment words, then the filler words seen at least ``min_count`` times in a fixed reference sample
of ``REFERENCE_DRAWS`` filler draws (as a vocabulary is built from a training corpus); rarer fillers
become ``<unk>``. Inputs int64 ``(n, S)`` right-padded with ``<pad>`` to the longest sentence drawn;
``TaskSpec.lengths`` gives each length, and the label is read at the sentence's ``<eos>``.

Baselines: chance 1/2 (the labels are balanced); the best bag-of-words model is right on every
sentence without a negator and at chance on the rest: ``1 - negated_fraction / 2``.
Distance: ``gap``, the steps from the first of negator and word to the second.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache

import numpy as np

from rnnbench.harness.errors import UsageError
from rnnbench.harness.tasks import vocabulary as vocab
from rnnbench.harness.tasks.base import Param, Task
from rnnbench.harness.tasks.spec import Baseline, InputSpec, TargetSpec, TaskSpec

NEGATORS = ("not", "never")
POSITIVE = ("good", "great", "fine", "nice", "happy")
NEGATIVE = ("bad", "awful", "poor", "sad", "boring")
#: size of the fixed sample of filler draws whose counts decide which fillers the vocabulary keeps
REFERENCE_DRAWS = 10_000
REFERENCE_SEED = 20_240_601


def filler_words(n_fillers: int) -> tuple[str, ...]:
    return tuple(f"w{rank:03d}" for rank in range(1, n_fillers + 1))


def filler_probabilities(n_fillers: int) -> np.ndarray:
    """Zipf probabilities ``∝ 1/rank`` of the filler words, rank 1 first."""
    weights = 1.0 / np.arange(1, n_fillers + 1)
    return weights / weights.sum()


@lru_cache(maxsize=16)
def vocabulary(n_fillers: int, min_count: int) -> tuple[str, ...]:
    """The task's vocabulary (see the module docstring); the same for every seed and split."""
    reference = np.random.default_rng(REFERENCE_SEED).choice(n_fillers, size=REFERENCE_DRAWS, p=filler_probabilities(n_fillers))
    words = filler_words(n_fillers)
    counts = Counter(words[i] for i in reference)
    return vocab.build_vocabulary(counts, min_count, always=NEGATORS + POSITIVE + NEGATIVE)


class Negation(Task):
    name = "negation"
    params = (
        Param("gap", 1, "steps from the first of negator and sentiment word to the second (1: adjacent)", minimum=1),
        Param("negated_fraction", 1.0, "fraction of sentences that hold a negator", minimum=0.0, maximum=1.0),
        Param("n_fillers", 500, "number of distinct filler words before the frequency cut-off", minimum=1, maximum=100_000),
        Param("min_count", 5, "filler words seen fewer times in the reference sample become <unk>", minimum=1),
    )

    def check(self, seq_len, params):
        if seq_len < params["gap"] + 3:
            raise UsageError(f"negation with gap={params['gap']} needs seq_len >= gap + 3 = {params['gap'] + 3} "
                             f"(<bos>, the pair, <eos>), got {seq_len}")

    def describe(self, seq_len, params):
        tokens = vocabulary(params["n_fillers"], params["min_count"])
        return TaskSpec(
            name=self.name, seq_len=seq_len, params=params,
            inputs=InputSpec("tokens", len(tokens), vocabulary=tokens, pad_id=vocab.PAD),
            target=TargetSpec("class", 2),
            metrics=("accuracy",),
            baselines=(
                Baseline("chance", "accuracy", 0.5, "a uniform guess (the labels are balanced)"),
                Baseline("bag_of_words_max", "accuracy", 1 - params["negated_fraction"] / 2,
                         "the best order-free model: right without a negator, a guess with one"),
            ),
            distance=params["gap"], max_steps=seq_len, variable_length=True,
        )

    def sample(self, seq_len, n, rng, split, params):
        gap, tokens = params["gap"], vocabulary(params["n_fillers"], params["min_count"])
        index = {token: i for i, token in enumerate(tokens)}
        filler_ids = vocab.encode(filler_words(params["n_fillers"]), tokens)
        lengths = rng.integers(gap + 3, seq_len + 1, size=n)
        first = 1 + (rng.random(n) * (lengths - gap - 2)).astype(np.int64)  # uniform in [1, length - gap - 2]
        negated = rng.random(n) < params["negated_fraction"]
        negator_first = rng.random(n) < 0.5
        positive = rng.random(n) < 0.5
        negator = np.array([index[w] for w in NEGATORS])[rng.integers(0, len(NEGATORS), size=n)]
        word = np.where(positive, np.array([index[w] for w in POSITIVE])[rng.integers(0, len(POSITIVE), size=n)],
                        np.array([index[w] for w in NEGATIVE])[rng.integers(0, len(NEGATIVE), size=n)])

        inputs = filler_ids[rng.choice(params["n_fillers"], size=(n, seq_len), p=filler_probabilities(params["n_fillers"]))]
        rows, steps = np.arange(n), np.arange(seq_len)
        inputs[:, 0] = vocab.BOS
        inputs[rows, lengths - 1] = vocab.EOS
        inputs[steps[None, :] >= lengths[:, None]] = vocab.PAD
        word_at = np.where(negated & negator_first, first + gap, first)
        inputs[rows, word_at] = word
        inputs[negated, np.where(negator_first, first, first + gap)[negated]] = negator[negated]
        targets = positive ^ (negated & negator_first)
        return inputs[:, :lengths.max()], targets.astype(np.int64)
