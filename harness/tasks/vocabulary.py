"""Word and character vocabularies with the special symbols, and right-padding of token lists.

The special symbols come first and keep their ids in every vocabulary: ``<pad>`` 0 (fills the
steps after a sequence's end; never a real token), ``<unk>`` 1 (a token the vocabulary does not
hold), ``<bos>`` 2 and ``<eos>`` 3 (a sequence's or document's start and end).
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

import numpy as np

SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")
PAD, UNK, BOS, EOS = range(len(SPECIALS))


def build_vocabulary(counts: Counter, min_count: int, always: Sequence[str] = ()) -> tuple[str, ...]:
    """The specials, then ``always``, then every other token counted at least ``min_count`` times,
    most frequent first (ties by text); rarer tokens are left out, so ``encode`` maps them to ``<unk>``."""
    kept = sorted((token for token, count in counts.items() if count >= min_count and token not in always),
                  key=lambda token: (-counts[token], token))
    return (*SPECIALS, *always, *kept)


def encode(tokens: Iterable[str], vocabulary: Sequence[str]) -> np.ndarray:
    """int64 ids of ``tokens``; a token not in ``vocabulary`` becomes ``<unk>``."""
    index = {token: i for i, token in enumerate(vocabulary)}
    return np.fromiter((index.get(token, UNK) for token in tokens), dtype=np.int64)


def pad_right(sequences: Sequence[np.ndarray]) -> np.ndarray:
    """int64 ``(n, longest)``: the id sequences left-aligned, ``<pad>`` after each one's end."""
    out = np.full((len(sequences), max(len(s) for s in sequences)), PAD, dtype=np.int64)
    for row, sequence in enumerate(sequences):
        out[row, :len(sequence)] = sequence
    return out


def decode(ids: Iterable[int], vocabulary: Sequence[str], separator: str = "") -> str:
    """The text of ``ids`` joined by ``separator``, leaving out ``<pad>``, ``<bos>`` and ``<eos>``
    (``<unk>`` stays visible)."""
    return separator.join(vocabulary[i] for i in ids if i not in (PAD, BOS, EOS))
