"""The interface every task module implements: declared parameters, a spec, a sampler.

A task is a subclass of :class:`Task` with a ``name``, its parameters declared as :class:`Param`
entries, and three methods: ``check`` (constraints between parameters and ``seq_len``), ``describe``
(the :class:`~rnnbench.harness.tasks.spec.TaskSpec`) and ``sample`` (the arrays). Type and range
checks of single parameters, defaults, seeds and splits are handled here once, so a task module holds
only what is particular to the task.
"""

from __future__ import annotations

import math
import numbers
import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from rnnbench.harness.errors import UsageError
from rnnbench.harness.tasks.spec import SPLITS, Scalar, TaskSpec


@dataclass(frozen=True)
class Param:
    """One task parameter: its default (whose type is the parameter's type: int, float, str or
    bool), an inclusive range for numbers, the allowed values for strings, and what it means."""

    name: str
    default: Scalar
    doc: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None

    def coerce(self, task: str, value: object) -> Scalar:
        """``value`` as this parameter's type (numpy integers become int, ints become float where a
        float is expected); UsageError naming the task, the parameter, the value and what was expected."""
        kind = type(self.default)
        if kind is bool:
            ok = isinstance(value, (bool, np.bool_))
        elif kind is int:
            ok = isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
        elif kind is float:
            ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and math.isfinite(value)
        else:
            ok = isinstance(value, str)
        if not ok:
            expected = "a finite float" if kind is float else kind.__name__
            raise UsageError(f"{task} parameter {self.name} must be {expected}, got {value!r}")
        value = kind(value)
        if self.choices is not None and value not in self.choices:
            raise UsageError(f"{task} parameter {self.name} must be one of {list(self.choices)}, got {value!r}")
        if self.minimum is not None and value < self.minimum or self.maximum is not None and value > self.maximum:
            bounds = f"[{self.minimum if self.minimum is not None else '-inf'}, {self.maximum if self.maximum is not None else 'inf'}]"
            raise UsageError(f"{task} parameter {self.name} must be in {bounds}, got {value!r}")
        return value


def check_positive_int(what: str, value: object, minimum: int = 1) -> int:
    """``value`` as int if it is an integer >= ``minimum``, else UsageError naming ``what``."""
    if not isinstance(value, numbers.Integral) or isinstance(value, (bool, np.bool_)) or value < minimum:
        raise UsageError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class Task(ABC):
    """Base class of a task module's task. Subclasses set ``name`` and ``params`` and implement
    ``describe`` and ``sample``; ``check`` is optional."""

    name: ClassVar[str]
    params: ClassVar[tuple[Param, ...]] = ()

    def resolve(self, seq_len: object, params: dict[str, object]) -> tuple[int, dict[str, Scalar]]:
        """``seq_len`` and the complete, canonical parameters (defaults filled in, types coerced,
        keys in declaration order); UsageError for unknown names and bad values."""
        seq_len = check_positive_int(f"{self.name} seq_len", seq_len)
        declared = {param.name: param for param in self.params}
        unknown = sorted(set(params) - set(declared))
        if unknown:
            raise UsageError(f"unknown {self.name} parameter {unknown[0]!r}; expected one of {sorted(declared) or 'none'}")
        canonical = {name: param.coerce(self.name, params.get(name, param.default)) for name, param in declared.items()}
        self.check(seq_len, canonical)
        return seq_len, canonical

    def rng(self, seed: object, split: object) -> np.random.Generator:
        """The generator for one (seed, split) of this task: streams of different splits, seeds and
        tasks are independent, so a test set never repeats the training stream."""
        seed = check_positive_int("seed", seed, minimum=0)
        if split not in SPLITS:
            raise UsageError(f"split must be one of {list(SPLITS)}, got {split!r}")
        return np.random.default_rng([seed, SPLITS.index(split), zlib.crc32(self.name.encode())])

    def check(self, seq_len: int, params: dict[str, Scalar]) -> None:
        """Constraints between ``seq_len`` and the parameters (e.g. T too short); raise UsageError."""

    @abstractmethod
    def describe(self, seq_len: int, params: dict[str, Scalar]) -> TaskSpec:
        """The spec of one configuration; ``params`` are canonical (from ``resolve``)."""

    @abstractmethod
    def sample(self, seq_len: int, n: int, rng: np.random.Generator, split: str,
               params: dict[str, Scalar]) -> tuple[np.ndarray, np.ndarray]:
        """``n`` sequences of ``split``: ``(inputs, targets)`` as the spec describes them."""
