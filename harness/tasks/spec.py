"""What a task declares about its data: the :class:`TaskSpec` a training loop is built from.

A spec is resolved for one ``(task, seq_len, params)``: every field is concrete (the vocabulary size,
the number of classes, the baseline values, the dependency distance), so a training loop reads the
spec and never asks which task it is running.

Array conventions (what ``generate`` returns for a spec):

* ``inputs``: ``InputSpec.kind == "tokens"``: int64 ``(n, S)`` token ids in ``[0, InputSpec.size)``;
  ``"features"``: float32 ``(n, S, InputSpec.size)``. Batch-major (the first axis is the sequence).
* ``targets``: ``TargetSpec.kind == "regression"``: float32 ``(n,)``; ``"class"``: int64 ``(n,)``,
  one class per sequence, read after each sequence's own last step (``TaskSpec.lengths``);
  ``"step_class"``: int64 ``(n, S)``, a class per step (the output after reading input step ``t``).
* Variable-length token sequences are right-padded with ``InputSpec.pad_id`` to the longest sequence
  in the array; the pad id occurs nowhere else, so ``TaskSpec.lengths(inputs)`` recovers the lengths.
  A minibatch may be cut to its own longest sequence (``inputs[:, :lengths.max()]``).

The loss follows the target kind: regression, the squared error of the output after the last step;
class, the cross-entropy of the output after step ``lengths - 1``; step_class, the mean
cross-entropy over every step. The arrays are batch-major; the recurrent backends and the NumPy
reference take time-major ``(S, n, I)``, so a training loop transposes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Mapping

import numpy as np

from rnnbench.harness.tasks import metrics

#: the types a task parameter may have: what the results table's JSON ``params`` column can hold
Scalar = int | float | str | bool

SPLITS = ("train", "test")
INPUT_KINDS = ("tokens", "features")
TARGET_KINDS = ("regression", "class", "step_class")
_MAPPINGS = ("params", "split_sizes", "data")


@dataclass(frozen=True)
class InputSpec:
    """How the inputs are encoded.

    ``kind="tokens"``: ``size`` is the vocabulary size including special symbols (an embedding's
    ``num_embeddings``); ``vocabulary[i]`` is the text of token ``i``; ``pad_id`` is the padding id
    of variable-length tasks (``None`` when every sequence fills the array).
    ``kind="features"``: ``size`` is the number of float features per step (a linear layer's
    ``in_features``); ``vocabulary`` and ``pad_id`` are ``None``.
    """

    kind: str
    size: int
    vocabulary: tuple[str, ...] | None = None
    pad_id: int | None = None

    def __post_init__(self):
        if self.kind not in INPUT_KINDS:
            raise ValueError(f"input kind must be one of {INPUT_KINDS}, got {self.kind!r}")
        if self.vocabulary is not None and len(self.vocabulary) != self.size:
            raise ValueError(f"vocabulary has {len(self.vocabulary)} tokens, size says {self.size}")

    def token_id(self, token: str) -> int:
        """The id of ``token`` (e.g. ``"<bos>"``); ValueError if the vocabulary has no such token."""
        if self.vocabulary is None or token not in self.vocabulary:
            raise ValueError(f"token {token!r} is not in this task's vocabulary")
        return self.vocabulary.index(token)


@dataclass(frozen=True)
class TargetSpec:
    """What the model predicts.

    ``kind``: ``"regression"`` (one float per sequence; ``num_classes`` is 0), ``"class"`` (one of
    ``num_classes`` classes per sequence) or ``"step_class"`` (one of ``num_classes`` classes at
    every step; the loss is the mean cross-entropy over every step). ``accuracy_steps``: for
    ``step_class``, the half-open range ``(start, stop)`` of steps whose predictions the
    ``accuracy`` metric counts (copy: only the recalled symbols); ``None``: every step.
    """

    kind: str
    num_classes: int = 0
    accuracy_steps: tuple[int, int] | None = None

    def __post_init__(self):
        if self.kind not in TARGET_KINDS:
            raise ValueError(f"target kind must be one of {TARGET_KINDS}, got {self.kind!r}")
        if (self.kind == "regression") != (self.num_classes == 0):
            raise ValueError(f"a {self.kind} target cannot have num_classes={self.num_classes}")
        if self.kind != "step_class" and self.accuracy_steps is not None:
            raise ValueError(f"accuracy_steps is for step_class targets only, got {self.accuracy_steps} for {self.kind}")


@dataclass(frozen=True)
class Baseline:
    """A reference value of one metric that needs no learning: chance, a constant predictor, a
    model that ignores order or memory. ``name`` is short and stable (it can stand in the results
    table's ``backend`` column); ``how`` says in words what predicts it."""

    name: str
    metric: str
    value: float
    how: str


@dataclass(frozen=True)
class TaskSpec:
    """Everything a training loop needs to know about one ``(task, seq_len, params)``.

    Fields:

    * ``name``, ``seq_len``: as passed to ``describe``/``generate``; ``seq_len`` is the task's own
      length knob (its meaning per task is in the task's module, e.g. the copy task's delay).
    * ``params``: every parameter of the task, defaults filled in, JSON scalars only (read-only
      mapping). ``params_json`` is its canonical JSON text for the results table.
    * ``inputs``, ``target``: encodings, see :class:`InputSpec` and :class:`TargetSpec`.
    * ``metrics``: the metric names to report, the primary one first (see ``tasks.metrics.METRICS``).
    * ``baselines``: the chance or trivial value of some metrics for this configuration.
    * ``distance``: the dependency distance in time steps, the x-axis of accuracy against distance;
      each task's module defines it (mostly the shortest lag between an input the target depends on
      and the step where the target is read).
    * ``max_steps``: the most time steps one input sequence can have, over every split (a
      convolution covering the sequence needs this receptive field). For ``stateful`` tasks it is
      the chunk length fed per forward pass.
    * ``variable_length``: sequences have different lengths, right-padded with ``inputs.pad_id``.
    * ``stateful``: the arrays are ``n`` contiguous streams, one per row; feed them in consecutive
      chunks of ``seq_len`` steps, carrying the recurrent state from one chunk to the next
      (truncated BPTT). The array width is a multiple of ``seq_len``.
    * ``split_sizes``: for tasks with a finite data set, how many sequences (or, for ``stateful``
      tasks, tokens) each split holds; ``None`` for generated tasks whose splits are unlimited.
    * ``data``: facts about the data to record with results (e.g. a corpus's sha256), JSON scalars.
    """

    name: str
    seq_len: int
    params: Mapping[str, Scalar]
    inputs: InputSpec
    target: TargetSpec
    metrics: tuple[str, ...]
    baselines: tuple[Baseline, ...]
    distance: int
    max_steps: int
    variable_length: bool = False
    stateful: bool = False
    split_sizes: Mapping[str, int] | None = None
    data: Mapping[str, Scalar] = field(default_factory=dict)

    def __post_init__(self):
        for name in _MAPPINGS:  # read-only, so a spec cannot drift from the configuration it describes
            if getattr(self, name) is not None:
                object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))
        if self.variable_length and self.inputs.pad_id is None:
            raise ValueError("a variable-length task needs a pad_id")

    def __reduce__(self):
        # a mappingproxy does not pickle; rebuild from plain dicts (a spec may travel to a worker process)
        values = (getattr(self, f.name) for f in fields(self))
        return type(self), tuple(dict(v) if isinstance(v, MappingProxyType) else v for v in values)

    @property
    def params_json(self) -> str:
        """The parameters as canonical JSON (sorted keys): equal configurations give equal text."""
        return json.dumps(dict(self.params), sort_keys=True)

    def lengths(self, inputs: np.ndarray) -> np.ndarray:
        """int64 ``(n,)``: each sequence's own length; its target is read after step ``length - 1``."""
        inputs = np.asarray(inputs)
        if self.variable_length:
            return (inputs != self.inputs.pad_id).sum(axis=1).astype(np.int64)
        return np.full(inputs.shape[0], inputs.shape[1], dtype=np.int64)

    def baseline(self, name: str, metric: str) -> Baseline:
        """The baseline called ``name`` of ``metric``; ValueError listing the ones there are."""
        for baseline in self.baselines:
            if (baseline.name, baseline.metric) == (name, metric):
                return baseline
        there = [(b.name, b.metric) for b in self.baselines]
        raise ValueError(f"no baseline {name!r} of {metric!r} for task {self.name}; expected one of {there}")

    def evaluate(self, outputs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        """``{metric: value}`` for every metric in ``metrics`` of a model's ``outputs`` against ``targets``.

        ``outputs``: regression: predictions ``(n,)``; class: logits ``(n, num_classes)``;
        step_class: logits ``(n, S, num_classes)`` (unnormalised; a log-softmax is taken).
        """
        outputs, targets = np.asarray(outputs), np.asarray(targets)
        expected = targets.shape + ((self.target.num_classes,) if self.target.kind != "regression" else ())
        if outputs.shape != expected:
            raise ValueError(f"outputs have shape {outputs.shape}; {self.name} expects {expected} for targets of shape {targets.shape}")
        # accuracy counts the accuracy_steps only (copy: the recalled symbols); the rest count every target
        steps = (slice(None), slice(*self.target.accuracy_steps)) if self.target.accuracy_steps else ...
        compute = {
            "mse": lambda: metrics.mse(outputs, targets),
            "solved_fraction": lambda: metrics.solved_fraction(outputs, targets),
            "accuracy": lambda: metrics.accuracy(outputs[steps], targets[steps]),
            "cross_entropy": lambda: metrics.cross_entropy(outputs, targets),
            "bpc": lambda: metrics.cross_entropy(outputs, targets) / math.log(2),
        }
        return {name: compute[name]() for name in self.metrics}
