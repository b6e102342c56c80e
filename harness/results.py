"""Tidy results: one row per (case, metric), appended to ``results.csv`` as soon as a case ends.

Columns: ``run_id``, the case's identity (:data:`rnnbench.harness.cases.IDENTITY_FIELDS`), then
the measurement (:data:`MEASUREMENT_COLUMNS`). A row's key, what makes two rows measurements of the
same thing, is the identity plus the metric (:data:`KEY_COLUMNS`).

A case's rows are rendered to one string and written with a single ``write`` + ``flush`` +
``fsync``, so an interrupted run leaves only whole rows behind, and :func:`read_results` drops a
torn last line if a crash ever produced one.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from rnnbench.harness.cases import IDENTITY_FIELDS, Case, decode_params
from rnnbench.harness.errors import UsageError

STATUSES = ("ok", "skipped", "incorrect", "oom", "error")
#: statuses that settle a row: ``--resume`` measures a case again unless its primary row's latest
#: attempt has one of them (a skipped, failed or out-of-memory case may succeed elsewhere or later)
FINAL_STATUSES = ("ok", "incorrect")
#: statuses of a row that carries no number
NO_VALUE_STATUSES = ("skipped", "oom", "error")
MEASUREMENT_COLUMNS = ("metric", "value", "unit", "q25", "q75", "n", "status", "note", "host", "device_name")
COLUMNS = ("run_id", *IDENTITY_FIELDS, *MEASUREMENT_COLUMNS)
KEY_COLUMNS = (*IDENTITY_FIELDS, "metric")
INTEGER_COLUMNS = ("batch", "seq_len", "input_size", "hidden_size", "seed", "n")
FLOAT_COLUMNS = ("value", "q25", "q75")


@dataclass(frozen=True)
class ResultRow:
    """One measured number of one case (or the reason there is none).

    ``value`` is the median for timings, with ``q25``/``q75`` its interquartile range and ``n`` the
    number of samples; for single numbers (an error, a peak) ``q25 = q75 = value`` and ``n = 1``.
    ``value`` is NaN for ``skipped``, ``oom`` and ``error`` rows, whose ``note`` says why; an
    ``incorrect`` numerics row keeps the error it measured, an ``incorrect`` speed or memory row is
    NaN (a configuration that failed its correctness check is never timed). ``host`` and
    ``device_name`` (GPU or CPU model) say where it was measured.
    """

    run_id: str
    case: Case
    metric: str
    value: float
    unit: str
    q25: float
    q75: float
    n: int
    status: str
    note: str = ""
    host: str = ""
    device_name: str = ""

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if self.status in NO_VALUE_STATUSES and not math.isnan(self.value):
            raise ValueError(f"a row with status {self.status!r} must have value NaN, got {self.value!r}")

    @classmethod
    def measured(cls, case: Case, run_id: str, metric: str, value: float, unit: str, *, q25: float | None = None,
                 q75: float | None = None, n: int = 1, status: str = "ok", note: str = "") -> "ResultRow":
        """A row holding a number; the interquartile range defaults to the value itself."""
        value = float(value)
        return cls(run_id, case, metric, value, unit, value if q25 is None else float(q25),
                   value if q75 is None else float(q75), n, status, note)

    @classmethod
    def missing(cls, case: Case, run_id: str, metric: str, unit: str, status: str, note: str) -> "ResultRow":
        """A row of a metric that produced no number (skipped, incorrect, oom, error), with the reason."""
        return cls(run_id, case, metric, math.nan, unit, math.nan, math.nan, 0, status, note)

    def record(self) -> dict[str, object]:
        """The row as ``results.csv`` columns."""
        measurement = {name: getattr(self, name) for name in MEASUREMENT_COLUMNS}
        return {"run_id": self.run_id, **self.case.identity(), **measurement}

    @property
    def key(self) -> tuple[str, ...]:
        return row_key(self.record())


def case_key(case: Case, metric: str) -> tuple[str, ...]:
    """The key of ``case``'s row of ``metric``, as :func:`row_key` computes it from a stored row."""
    return row_key({**case.identity(), "metric": metric})


def row_key(record: dict) -> tuple[str, ...]:
    """The key of a stored row (a ``results.csv`` record), as strings."""
    return tuple(str(record[column]) for column in KEY_COLUMNS)


class ResultsFile:
    """Append-only ``results.csv`` in a results directory."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.path = self.directory / "results.csv"

    def append(self, rows: list[ResultRow]) -> None:
        """Append whole rows durably (header first if the file is new or empty; a torn last line
        left by a crash is ended first, so it stays one unreadable line instead of spoiling a row)."""
        if not rows:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        size = self.path.stat().st_size if self.path.exists() else 0
        if size == 0:
            writer.writerow(COLUMNS)
        elif not _ends_with_newline(self.path):
            buffer.write("\n")
        for row in rows:
            record = row.record()
            writer.writerow([_render(record[column]) for column in COLUMNS])
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())

    def finished_keys(self) -> tuple[set[tuple], list[str]]:
        """For ``--resume``: the keys whose latest readable row has a final status
        (:data:`FINAL_STATUSES`), and one line per row that could not be read (it counts as not
        finished, so its case is measured again).

        Keys are compared as the strings stored, so this never depends on parsing a number."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return set(), []
        with open(self.path, encoding="utf-8", errors="replace", newline="") as handle:
            records = list(csv.reader(handle))
        if tuple(records[0]) != COLUMNS:
            raise UsageError(f"{self.path} has columns {records[0]}; expected {list(COLUMNS)}: it was not written by "
                             "this version of rnnbench, so it cannot be resumed (choose another --out)")
        latest: dict[tuple, str] = {}
        unreadable = []
        for line, values in enumerate(records[1:], start=2):
            problem = _record_problem(values)
            if problem is not None:
                unreadable.append(f"line {line}: {problem}")
                continue
            record = dict(zip(COLUMNS, values))
            latest[row_key(record)] = record["status"]
        return {key for key, status in latest.items() if status in FINAL_STATUSES}, unreadable


def latest_attempts(frame: pd.DataFrame) -> pd.DataFrame:
    """The last row (in file order) of every key: a case measured again after a resume or a
    repeated gate shows its latest attempt."""
    return frame.drop_duplicates(subset=list(KEY_COLUMNS), keep="last")


def _record_problem(values: list[str]) -> str | None:
    """Why a stored row cannot be trusted (a wrong field count, an unknown status, a number that
    does not parse), or None."""
    if len(values) != len(COLUMNS):
        return f"{len(values)} fields, expected {len(COLUMNS)}"
    record = dict(zip(COLUMNS, values))
    if record["status"] not in STATUSES:
        return f"status {record['status']!r} is not one of {', '.join(STATUSES)}"
    for column in (*FLOAT_COLUMNS, *INTEGER_COLUMNS):
        try:
            number = float(record[column]) if column in FLOAT_COLUMNS else int(record[column])
        except ValueError:
            return f"{column} {record[column]!r} is not a number"
        if column == "value" and record["status"] == "ok" and math.isnan(number):
            return "an ok row has no value"
    try:
        decode_params(record["params"])
    except ValueError as error:
        return f"params {record['params']!r}: {error}"
    return None


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def _render(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return str(value)


def read_results(directory: str | os.PathLike) -> pd.DataFrame:
    """Read ``results.csv`` of a results directory into a DataFrame with the documented columns."""
    path = Path(directory) / "results.csv"
    if not path.exists():
        raise FileNotFoundError(f"no results.csv in {directory}")
    with open(path, encoding="utf-8", newline="") as handle:
        records = list(csv.reader(handle))
    if not records:
        return pd.DataFrame(columns=COLUMNS)
    header, body = records[0], records[1:]
    if tuple(header) != COLUMNS:
        raise ValueError(f"{path} has columns {header}; expected {list(COLUMNS)}")
    whole = [record for record in body if len(record) == len(COLUMNS)]
    frame = pd.DataFrame(whole, columns=COLUMNS)
    for column in FLOAT_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    for column in INTEGER_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("int64")
    for column in ("note", "params", "host", "device_name"):
        frame[column] = frame[column].fillna("")
    return frame
