"""Tidy results: one row per (case, metric), appended to ``results.csv`` as soon as a case ends.

The column order is the field order of :class:`ResultRow`. A case's rows are rendered to one string
and written with a single ``write`` + ``flush`` + ``fsync``, so an interrupted run leaves only whole
rows behind, and :func:`read_results` drops a torn last line if a crash ever produced one.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

STATUSES = ("ok", "skipped", "incorrect", "oom", "error")


@dataclass
class ResultRow:
    """One measured number (or the reason there is none).

    ``value`` is the median for timings, with ``q25``/``q75`` its interquartile range and ``n`` the
    number of samples; for single numbers (an error, a peak) ``q25 = q75 = value`` and ``n = 1``.
    ``value`` is NaN for ``skipped``, ``oom`` and ``error`` rows, whose ``note`` says why; an
    ``incorrect`` numerics row keeps the error it measured, an ``incorrect`` speed or memory row is
    NaN (a configuration that failed its correctness check is never timed).
    """

    run_id: str
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
    metric: str
    value: float
    unit: str
    q25: float
    q75: float
    n: int
    seed: int
    status: str
    note: str = ""

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if self.status in ("skipped", "oom", "error") and not math.isnan(self.value):
            raise ValueError(f"a row with status {self.status!r} must have value NaN, got {self.value!r}")


COLUMNS = tuple(field.name for field in dataclasses.fields(ResultRow))
#: the columns that identify a measurement; two rows with equal keys measured the same thing
KEY_COLUMNS = tuple(c for c in COLUMNS if c not in ("run_id", "value", "unit", "q25", "q75", "n", "status", "note"))


def row_key(row: ResultRow | dict) -> tuple:
    get = row.get if isinstance(row, dict) else lambda name: getattr(row, name)
    return tuple(str(get(column)) for column in KEY_COLUMNS)


class ResultsFile:
    """Append-only ``results.csv`` in a results directory."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.path = self.directory / "results.csv"

    def append(self, rows: list[ResultRow]) -> None:
        """Append whole rows durably (header first if the file is new or empty)."""
        if not rows:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        new_file = not self.path.exists() or self.path.stat().st_size == 0
        if new_file:
            writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([_render(getattr(row, column)) for column in COLUMNS])
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())

    def finished_keys(self) -> set[tuple]:
        """Keys of every row already in the file (used by ``--resume``)."""
        if not self.path.exists():
            return set()
        return {row_key(record) for record in read_results(self.directory).to_dict("records")}


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
    for column in ("value", "q25", "q75"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    for column in ("batch", "seq_len", "input_size", "hidden_size", "n", "seed"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("int64")
    frame["note"] = frame["note"].fillna("")
    return frame
