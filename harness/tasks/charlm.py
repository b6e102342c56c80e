"""Character-level language modelling on ``pydoc_data.topics``, the help text that ships with CPython.

The corpus is the topics in sorted-key order, each one a document ``<bos> characters <eos>``, as
one token stream; the first ``TRAIN_FRACTION`` of the stream is ``train``, the rest ``test``
(contiguous, so the test text is unseen). Vocabulary: the specials (``<pad>`` 0 unused, ``<unk>`` 1,
``<bos>`` 2, ``<eos>`` 3), then every character of the training text, most frequent first; a test
character never seen in training is ``<unk>``. The text changes with the Python version, so the spec
records the corpus's sha256 (of the topics joined by newlines) and its length.

Layout (truncated BPTT): ``generate(..., seq_len=T, n=rows)`` cuts the split's stream into ``n``
contiguous streams, one per row: row ``i`` holds stream tokens ``[o + i·W, o + (i+1)·W)`` and its
targets are the same tokens shifted by one (the next token at every step). W is the largest multiple
of T that fits, so a training loop feeds the chunks ``[:, k·T:(k+1)·T]`` for k = 0, 1, ... in order
and carries each row's state from one chunk to the next. The offset ``o`` is uniform in ``[0, T)``
per seed for ``train`` (chunk boundaries differ between seeds) and 0 for ``test`` (every seed is
scored on the same text). Inputs and targets int64 ``(n, W)``.

Sampling text: feed ``<bos>`` and draw tokens until ``<eos>`` or a length limit;
``vocabulary.decode`` turns the ids back into text.

Baselines, in bits per character over the test split's next-token predictions: uniform over the
``V - 1`` tokens that can be targets, unigram, and Markov models of order 1-3 (the 2- to 4-gram),
all with counts from the training split and add-``ADD_K`` smoothing. Distance: ``seq_len``, the
truncation length: a gradient reaches at most that many steps back.
"""

from __future__ import annotations

import hashlib
import math
import platform
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from rnnbench.harness.errors import UsageError
from rnnbench.harness.tasks import vocabulary as vocab
from rnnbench.harness.tasks.base import Task
from rnnbench.harness.tasks.spec import Baseline, InputSpec, TargetSpec, TaskSpec

TRAIN_FRACTION = 0.9
ADD_K = 0.1
MARKOV_ORDERS = (1, 2, 3)


@dataclass(frozen=True)
class Corpus:
    """The encoded corpus: ``ids`` int64 (the whole stream), ``cut`` (train is ``ids[:cut]``),
    ``vocabulary``, and the sha256 and length in characters of the topics joined by newlines."""

    ids: np.ndarray
    cut: int
    vocabulary: tuple[str, ...]
    sha256: str
    characters: int

    def split(self, name: str) -> np.ndarray:
        return self.ids[:self.cut] if name == "train" else self.ids[self.cut:]


@lru_cache(maxsize=1)
def corpus() -> Corpus:
    from pydoc_data.topics import topics  # 0.8 MB of text: loaded only when the task is used

    documents = [topics[key] for key in sorted(topics)]
    text = "\n".join(documents)
    tokens = [token for document in documents for token in ("<bos>", *document, "<eos>")]
    cut = int(TRAIN_FRACTION * len(tokens))
    counts = Counter(tokens[:cut])
    for special in vocab.SPECIALS:
        counts.pop(special, None)
    vocabulary = vocab.build_vocabulary(counts, min_count=1)
    return Corpus(vocab.encode(tokens, vocabulary), cut, vocabulary, hashlib.sha256(text.encode()).hexdigest(), len(text))


def markov_bpc(ids: np.ndarray, cut: int, order: int, n_classes: int, add_k: float = ADD_K) -> float:
    """Bits per token of an order-``order`` Markov model (0: unigram) with add-``add_k`` smoothing
    over ``n_classes`` outcomes, counted on ``ids[:cut]`` and scored on every prediction of
    ``ids[cut + 1:]`` (the targets a model sees in the test split), contexts taken from the stream."""
    vocabulary_size = int(ids.max()) + 1
    positions = np.arange(order, len(ids))
    context = np.zeros(len(positions), dtype=np.int64)
    for back in range(1, order + 1):
        context = context * vocabulary_size + ids[positions - back]
    joint = context * vocabulary_size + ids[positions]
    train, test = positions < cut, positions > cut

    def counts(keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
        seen, seen_counts = np.unique(keys, return_counts=True)
        at = np.minimum(np.searchsorted(seen, queries), len(seen) - 1)
        return np.where(seen[at] == queries, seen_counts[at], 0)

    p = (counts(joint[train], joint[test]) + add_k) / (counts(context[train], context[test]) + add_k * n_classes)
    return float(-np.mean(np.log2(p)))


@lru_cache(maxsize=1)
def baselines() -> tuple[Baseline, ...]:
    data = corpus()
    n_classes = len(data.vocabulary) - 1  # every token but <pad> can be a target
    found = [Baseline("uniform", "bpc", math.log2(n_classes), f"a uniform guess over the {n_classes} possible tokens"),
             Baseline("unigram", "bpc", markov_bpc(data.ids, data.cut, 0, n_classes),
                      f"training-split token frequencies, add-{ADD_K} smoothing")]
    for order in MARKOV_ORDERS:
        found.append(Baseline(f"markov{order}", "bpc", markov_bpc(data.ids, data.cut, order, n_classes),
                              f"the next token given the previous {order} ({order + 1}-gram), training-split counts, "
                              f"add-{ADD_K} smoothing"))
    return tuple(found)


class CharLM(Task):
    name = "charlm"

    def describe(self, seq_len, params):
        data = corpus()
        return TaskSpec(
            name=self.name, seq_len=seq_len, params=params,
            inputs=InputSpec("tokens", len(data.vocabulary), vocabulary=data.vocabulary),
            target=TargetSpec("step_class", len(data.vocabulary)),
            metrics=("bpc",), baselines=baselines(),
            distance=seq_len, max_steps=seq_len, stateful=True,
            split_sizes={split: len(data.split(split)) for split in ("train", "test")},
            data={"corpus": "pydoc_data.topics", "corpus_sha256": data.sha256, "corpus_characters": data.characters,
                  "python": platform.python_version()},
        )

    def sample(self, seq_len, n, rng, split, params):
        stream = corpus().split(split)
        offset = int(rng.integers(0, seq_len)) if split == "train" else 0
        width = (len(stream) - 1 - offset) // n // seq_len * seq_len
        if width == 0:
            rows = (len(stream) - 1 - offset) // seq_len
            raise UsageError(f"charlm {split} split ({len(stream)} tokens) holds at most {rows} rows of seq_len={seq_len}, got n={n}")
        starts = offset + width * np.arange(n)
        inputs = stream[starts[:, None] + np.arange(width)[None, :]]
        targets = stream[starts[:, None] + 1 + np.arange(width)[None, :]]
        return inputs, targets
