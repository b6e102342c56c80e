"""Long-range-dependency tasks: seeded generators and the metadata a training loop needs.

    from rnnbench.harness.tasks import describe, generate
    spec = describe("adding", 100)                       # TaskSpec: encodings, metrics, baselines, distance
    x, y = generate("adding", 100, n=1000, seed=0)       # training data
    x_test, y_test = generate("adding", 100, n=1000, seed=0, split="test")   # held-out data

Every task is one module here and one line in ``TASKS``. Generation is NumPy only (scikit-learn for
the digits data), deterministic per ``(seed, split)``, and downloads nothing.

Held-out data: ``split="test"`` draws from a stream independent of ``split="train"`` for the same
seed (generated tasks), or from a fixed disjoint part of the data set (``digits``, ``charlm``).
``parity``'s test split also has longer sequences than its training split.
"""

from __future__ import annotations

from types import MappingProxyType

import numpy as np

from rnnbench.harness.errors import UsageError
from rnnbench.harness.tasks import adding, charlm, copy_memory, digits, listops, negation, parity, temporal_order
from rnnbench.harness.tasks.base import Param, Task, check_positive_int
from rnnbench.harness.tasks.metrics import METRICS, Metric
from rnnbench.harness.tasks.spec import SPLITS, Baseline, InputSpec, Scalar, TargetSpec, TaskSpec

__all__ = ["TASKS", "SPLITS", "METRICS", "describe", "generate", "get_task", "Task", "TaskSpec", "InputSpec",
           "TargetSpec", "Baseline", "Metric", "Param", "Scalar"]

TASKS: MappingProxyType[str, Task] = MappingProxyType({task.name: task for task in (
    adding.Adding(),
    copy_memory.CopyMemory(),
    temporal_order.TemporalOrder(),
    negation.Negation(),
    parity.Parity(),
    listops.ListOps(),
    digits.Digits(),
    charlm.CharLM(),
)})


def get_task(name: object) -> Task:
    """The registered task called ``name``; UsageError listing the names there are."""
    if name not in TASKS:
        raise UsageError(f"unknown task {name!r}; expected one of {sorted(TASKS)}")
    return TASKS[name]


def describe(name: str, seq_len: int, **params: Scalar) -> TaskSpec:
    """The :class:`TaskSpec` of task ``name`` at ``seq_len`` with ``params`` (defaults filled in)."""
    task = get_task(name)
    seq_len, canonical = task.resolve(seq_len, params)
    return task.describe(seq_len, canonical)


def generate(name: str, seq_len: int, n: int, seed: int, *, split: str = "train",
             **params: Scalar) -> tuple[np.ndarray, np.ndarray]:
    """``n`` sequences of task ``name``: ``(inputs, targets)`` as ``describe(name, seq_len, **params)``
    documents them. The same ``(seed, split)`` gives the same arrays; ``split`` is ``"train"`` or
    ``"test"``. Raises ``ValueError`` (``UsageError``) naming any bad argument."""
    task = get_task(name)
    seq_len, canonical = task.resolve(seq_len, params)
    n = check_positive_int(f"{name} n", n)
    rng = task.rng(seed, split)
    return task.sample(seq_len, n, rng, split, canonical)
