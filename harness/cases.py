"""A case: one picklable description of one measurement, and the rows it turns into.

Measuring a case is a function from case to rows (:func:`rnnbench.harness.measure.measure_case`); keeping the
case a small frozen dataclass is what lets ``--resume`` skip finished cases and a failed case become
an ``error`` row instead of a lost run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from rnnbench.harness.results import ResultRow

EXPERIMENTS = ("speed", "memory", "numerics")
MODES = ("fwd", "fwd_bwd")
#: the metric whose row marks a case as finished, and its unit
PRIMARY_METRIC = {"speed": ("latency", "ms"), "memory": ("peak_memory", "MiB"), "numerics": ("max_abs_err", "")}


@dataclass(frozen=True)
class TimingOptions:
    """How latency is sampled (see :mod:`rnnbench.harness.timing`).

    ``warmup`` calls are made before sampling; then samples are drawn until ``min_reps`` samples
    exist and either ``budget_s`` seconds of sampling have passed or ``max_reps`` samples exist.
    On CUDA, ``budget_s`` is the time budget handed to ``triton.testing.do_bench``.
    """

    warmup: int = 1
    min_reps: int = 5
    max_reps: int = 200
    budget_s: float = 0.5
    #: CPU threads for torch and the BLAS behind NumPy (None: leave the library defaults)
    threads: int | None = None


@dataclass(frozen=True)
class Case:
    """One (experiment x backend x family x shape x dtype x mode x seed) measurement.

    Shapes follow the recurrent layout: a sequence of ``seq_len`` steps, ``batch`` sequences,
    ``input_size`` features per step, ``hidden_size`` state width.
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
    timing: TimingOptions = field(default_factory=TimingOptions, compare=False)

    @property
    def primary_metric(self) -> tuple[str, str]:
        return PRIMARY_METRIC[self.experiment]

    @property
    def label(self) -> str:
        return (
            f"{self.experiment} {self.backend}/{self.family} {self.dtype} {self.device} "
            f"T={self.seq_len} B={self.batch} I={self.input_size} H={self.hidden_size} {self.mode}"
        )

    def row(
        self,
        run_id: str,
        metric: str,
        value: float,
        unit: str,
        *,
        status: str = "ok",
        q25: float | None = None,
        q75: float | None = None,
        n: int = 1,
        note: str = "",
        experiment: str | None = None,
    ) -> ResultRow:
        """A result row for this case; ``experiment`` overrides the case's (gate rows are numerics)."""
        value = float(value)
        return ResultRow(
            run_id=run_id,
            experiment=experiment or self.experiment,
            task=self.task,
            backend=self.backend,
            family=self.family,
            device=self.device,
            dtype=self.dtype,
            batch=self.batch,
            seq_len=self.seq_len,
            input_size=self.input_size,
            hidden_size=self.hidden_size,
            mode=self.mode,
            metric=metric,
            value=value,
            unit=unit,
            q25=value if q25 is None else float(q25),
            q75=value if q75 is None else float(q75),
            n=n,
            seed=self.seed,
            status=status,
            note=note,
        )

    def failed_row(self, run_id: str, status: str, note: str) -> ResultRow:
        """The primary-metric row of a case that produced no number (skipped, incorrect, oom, error)."""
        metric, unit = self.primary_metric
        return self.row(run_id, metric, math.nan, unit, status=status, n=0, note=note)

    def primary_key_row(self) -> ResultRow:
        """A placeholder primary row, used only for its key when checking what is already finished."""
        return self.failed_row("", "skipped", "")
