"""Handwritten digits fed pixel by pixel: scikit-learn's bundled 8×8 digits (no download).

``sklearn.datasets.load_digits``: 1797 images, 10 classes, pixel values 0-16. ``seq_len`` must be
64: one pixel per step in row-major order. Inputs float32 ``(n, 64, 1)``, the pixel value / 16 in
[0, 1]; target int64 ``(n,)``, the digit, read after the last pixel. ``shuffled=True`` is the
order control: the 64 pixels are reordered by one fixed permutation (``PERMUTATION_SEED``), the
same for every image, seed and split, so the information is all there but the spatial order is not.

Splits are fixed and disjoint: per class, a permutation with ``SPLIT_SEED`` puts ``TEST_FRACTION``
of the images (rounded) in ``test`` and the rest in ``train`` (1438 / 359 images). ``generate``
draws ``n`` images of a split without replacement in a seeded order; ``n`` up to the split's size.

Baselines: chance 1/10 and the majority class (the training split's most frequent digit, scored on
the test split). Distance: 63, from the first pixel to the readout.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from rnnbench.harness.errors import UsageError
from rnnbench.harness.tasks.base import Param, Task
from rnnbench.harness.tasks.spec import Baseline, InputSpec, TargetSpec, TaskSpec

PIXELS = 64
MAX_PIXEL = 16.0
TEST_FRACTION = 0.2
SPLIT_SEED = 0
PERMUTATION_SEED = 8_888


@lru_cache(maxsize=1)
def splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{split: (pixels float32 (m, 64) in [0, 1], labels int64 (m,))}``."""
    try:  # scikit-learn is imported only when the digits are needed
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise UsageError(f"the digits task needs scikit-learn (pip install scikit-learn): {error}") from error

    digits = load_digits()
    pixels, labels = (digits.data / MAX_PIXEL).astype(np.float32), digits.target.astype(np.int64)
    rng = np.random.default_rng(SPLIT_SEED)
    test = np.zeros(len(labels), dtype=bool)
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        test[members[:round(TEST_FRACTION * len(members))]] = True
    return {"train": (pixels[~test], labels[~test]), "test": (pixels[test], labels[test])}


def permutation() -> np.ndarray:
    """The fixed pixel order of the shuffled control: step t shows pixel ``permutation()[t]``."""
    return np.random.default_rng(PERMUTATION_SEED).permutation(PIXELS)


class Digits(Task):
    name = "digits"
    params = (Param("shuffled", False, "reorder the pixels by one fixed permutation (the order control)"),)

    def check(self, seq_len, params):
        if seq_len != PIXELS:
            raise UsageError(f"digits has exactly {PIXELS} steps (8×8 pixels), got seq_len={seq_len}")

    def describe(self, seq_len, params):
        data = splits()
        train_counts = np.bincount(data["train"][1], minlength=10)
        majority = float(np.mean(data["test"][1] == train_counts.argmax()))
        return TaskSpec(
            name=self.name, seq_len=seq_len, params=params,
            inputs=InputSpec("features", 1), target=TargetSpec("class", 10),
            metrics=("accuracy",),
            baselines=(
                Baseline("chance", "accuracy", 0.1, "a uniform guess of the digit"),
                Baseline("majority", "accuracy", majority, "the training split's most frequent digit"),
            ),
            distance=PIXELS - 1, max_steps=PIXELS,
            split_sizes={split: len(labels) for split, (_, labels) in data.items()},
            data={"source": "sklearn.datasets.load_digits", "images": sum(len(labels) for _, labels in data.values())},
        )

    def sample(self, seq_len, n, rng, split, params):
        pixels, labels = splits()[split]
        if n > len(labels):
            raise UsageError(f"digits {split} split holds {len(labels)} images, got n={n}")
        chosen = rng.permutation(len(labels))[:n]
        images = pixels[chosen]
        if params["shuffled"]:
            images = images[:, permutation()]
        return images[:, :, None], labels[chosen]
