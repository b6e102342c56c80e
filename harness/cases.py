"""A case: one picklable description of one measurement, and the identity every result row shares.

Measuring a case is a function from case to rows (:func:`rnnbench.harness.measure.measure_case`);
keeping the case a small frozen dataclass is what lets ``--resume`` skip finished cases and a failed
case become an ``error`` row instead of a lost run. The fields of :class:`Case` that take part in
equality are, in order, the identity columns of ``results.csv`` (:data:`IDENTITY_FIELDS`): a row's
identity is spelled out here and nowhere else.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields, replace

#: ``fwd``/``fwd_bwd``: one timed call (inference forward; forward and backward); ``train``: a
#: training case (forward, backward and an optimizer step per batch; accuracy, gradient)
MODES = ("fwd", "fwd_bwd", "train")
#: the modes a suite expands when it names none
DEFAULT_MODES = ("fwd", "fwd_bwd")
#: the ``task`` of speed, memory and numerics cases: seeded random inputs and weights
#: (:class:`rnnbench.harness.problems.Problem`), not a learning task
RANDOM_TASK = "random"


@dataclass(frozen=True)
class TimingOptions:
    """How latency is sampled (see :mod:`rnnbench.harness.timing`).

    ``warmup`` calls are made before sampling; then samples are drawn until ``min_reps`` samples
    exist and either ``budget_s`` seconds of sampling have passed or ``max_reps`` samples exist.
    On CUDA, ``budget_s`` is the time budget handed to ``triton.testing.do_bench``, stretched or
    shrunk so that ``min_reps`` to ``max_reps`` calls fit in it (by an estimate of one call).
    """

    warmup: int = 1
    min_reps: int = 5
    max_reps: int = 200
    budget_s: float = 0.5
    #: CPU threads for torch and the BLAS behind NumPy (None: leave the library defaults)
    threads: int | None = None


#: a JSON scalar: what a task or training parameter may be, so it fits one column of the results table
ParamValue = bool | int | float | str


@dataclass(frozen=True)
class Case:
    """One (experiment x backend x family x task x shape x dtype x mode x seed) measurement.

    Shapes follow the recurrent layout: a sequence of ``seq_len`` steps, ``batch`` sequences,
    ``input_size`` features per step, ``hidden_size`` state width. ``params`` holds what else
    identifies the case (a task's delay or vocabulary size, a training budget) as sorted
    ``(name, value)`` pairs of JSON scalars; in ``results.csv`` it is one canonical JSON column, so
    rows of different tasks share one table.
    """

    experiment: str
    task: str
    backend: str
    family: str
    device: str
    dtype: str
    batch: int
    seq_len: int
    input_size: int
    hidden_size: int
    mode: str
    seed: int
    params: tuple[tuple[str, ParamValue], ...] = ()
    timing: TimingOptions = field(default_factory=TimingOptions, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "params", freeze_params(self.params))

    @property
    def param_dict(self) -> dict[str, ParamValue]:
        return dict(self.params)

    def with_experiment(self, experiment: str) -> "Case":
        """The same case under another experiment (the correctness gate's row is a numerics row)."""
        return replace(self, experiment=experiment)

    def identity(self) -> dict[str, object]:
        """The identity columns of this case's rows, ``params`` rendered as canonical JSON."""
        values = {name: getattr(self, name) for name in IDENTITY_FIELDS}
        values["params"] = encode_params(self.params)
        return values

    @property
    def label(self) -> str:
        extra = f" {encode_params(self.params)}" if self.params else ""
        return (
            f"{self.experiment} {self.backend}/{self.family} {self.task} {self.dtype} {self.device} "
            f"T={self.seq_len} B={self.batch} I={self.input_size} H={self.hidden_size} {self.mode}{extra}"
        )


#: the columns that identify a case, in ``results.csv`` order
IDENTITY_FIELDS = tuple(f.name for f in fields(Case) if f.compare)


def freeze_params(params) -> tuple[tuple[str, ParamValue], ...]:
    """``params`` (a mapping or ``(name, value)`` pairs) as sorted pairs of JSON scalars."""
    pairs = params.items() if isinstance(params, dict) else params
    frozen = []
    for name, value in pairs:
        if not isinstance(name, str) or not name:
            raise ValueError(f"parameter names must be non-empty strings, got {name!r}")
        if not isinstance(value, (bool, int, float, str)) or (isinstance(value, float) and not math.isfinite(value)):
            raise ValueError(f"parameter {name!r} must be a finite number, a string or a boolean, got {value!r}")
        frozen.append((name, value))
    names = [name for name, _ in frozen]
    if len(set(names)) != len(names):
        raise ValueError(f"parameter names must be unique, got {names}")
    return tuple(sorted(frozen))


def encode_params(params) -> str:
    """Canonical JSON of ``params`` (sorted keys, no spaces); the empty string when there are none."""
    frozen = freeze_params(params)
    return json.dumps(dict(frozen), sort_keys=True, separators=(",", ":")) if frozen else ""


def decode_params(text: str) -> dict[str, ParamValue]:
    """The inverse of :func:`encode_params`."""
    if not text:
        return {}
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"params must be a JSON object, got {text!r}")
    return dict(freeze_params(value))
