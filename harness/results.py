"""Tidy results: one row per (case, metric), appended to ``results.csv`` as soon as a case ends.

Columns: ``run_id``, the case's identity (:data:`rnnbench.harness.cases.IDENTITY_FIELDS`), then
the measurement (:data:`MEASUREMENT_COLUMNS`). A row's key, what makes two rows measurements of the
same thing, is the identity plus the metric (:data:`KEY_COLUMNS`).

A case's rows are rendered to one string and written with a single ``write`` + ``flush`` +
``fsync``, so an interrupted run leaves only whole rows behind.

Reading is strict about the file's shape and forgiving about single rows: a header with missing,
extra or reordered columns, a file that is not UTF-8 text or not CSV raises :class:`ResultsFormatError`
naming the file, the line and the problem; a row with the wrong number of cells (a torn last line), a
cell that is not a number where one is expected, an unknown status or malformed ``params`` is
dropped, and :func:`load_results` returns one message per dropped row (``results.csv line 7: ...``)
so callers can count and show them.

Text cells are written so that no spreadsheet takes them for a formula: a text cell starting with
``=``, ``+``, ``-``, ``@``, a tab, a carriage return or ``'`` gets a leading ``'`` (OWASP's CSV
injection advice), which :func:`load_results` removes again. Number columns are written as numbers
(``-0.5`` stays ``-0.5``).
"""

from __future__ import annotations

import csv
import io
import math
import os
import warnings
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
TEXT_COLUMNS = tuple(column for column in COLUMNS if column not in INTEGER_COLUMNS + FLOAT_COLUMNS)
#: first characters that make a spreadsheet evaluate a cell (and the escape character itself)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


class ResultsFormatError(UsageError):
    """``results.csv`` cannot be read as a results table (the message names the file and line)."""


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

        Keys are built from the parsed row (formula escapes undone), as :func:`case_key` builds them."""
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
            try:
                record = dict(zip(COLUMNS, _parse_row(values)))
            except ValueError as error:
                unreadable.append(f"line {line}: {error}")
                continue
            if record["status"] == "ok" and math.isnan(record["value"]):
                unreadable.append(f"line {line}: an ok row has no value")
                continue
            latest[row_key(record)] = record["status"]
        return {key for key, status in latest.items() if status in FINAL_STATUSES}, unreadable


def latest_attempts(frame: pd.DataFrame) -> pd.DataFrame:
    """The last row (in file order) of every key: a case measured again after a resume or a
    repeated gate shows its latest attempt."""
    return frame.drop_duplicates(subset=list(KEY_COLUMNS), keep="last")


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def _render(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    if isinstance(value, str):
        return escape_formula(value)
    return str(value)


def escape_formula(text: str) -> str:
    """``text`` as a CSV cell no spreadsheet evaluates: a leading ``'`` before a formula start."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def unescape_formula(text: str) -> str:
    """The inverse of :func:`escape_formula`."""
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_STARTS) else text


def read_results(directory: str | os.PathLike) -> pd.DataFrame:
    """``results.csv`` of a results directory as a DataFrame with the documented columns; dropped
    rows (see :func:`load_results`) are reported as one :class:`UserWarning` that counts them."""
    frame, dropped = load_results(directory)
    if dropped:
        warnings.warn(f"dropped {len(dropped)} malformed row(s): {'; '.join(dropped[:3])}"
                      f"{' ...' if len(dropped) > 3 else ''}", stacklevel=2)
    return frame


def load_results(directory: str | os.PathLike) -> tuple[pd.DataFrame, list[str]]:
    """``results.csv`` of ``directory`` and one message per row dropped as malformed.

    Raises ``FileNotFoundError`` when there is no ``results.csv`` and :class:`ResultsFormatError`
    when the file as a whole cannot be read (see the module docstring)."""
    path = Path(directory) / "results.csv"
    if not path.exists():
        raise FileNotFoundError(f"no results.csv in {directory}")
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            records = [(reader.line_num, record) for record in reader]
    except UnicodeDecodeError as error:
        raise ResultsFormatError(f"{path}: not UTF-8 text (byte {error.start}: {error.reason})") from None
    except csv.Error as error:
        raise ResultsFormatError(f"{path} line {reader.line_num}: not CSV: {error}") from None
    if not records:
        return pd.DataFrame({column: pd.Series(dtype=_dtype(column)) for column in COLUMNS}), []
    _check_header(path, records[0][1])
    rows, dropped = [], []
    for line, record in records[1:]:
        try:
            rows.append(_parse_row(record))
        except ValueError as error:
            dropped.append(f"{path.name} line {line}: {error}")
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.astype({column: _dtype(column) for column in COLUMNS}), dropped


def _dtype(column: str) -> str:
    return "int64" if column in INTEGER_COLUMNS else "float64" if column in FLOAT_COLUMNS else "str"


def _check_header(path: Path, header: list[str]) -> None:
    if tuple(header) == COLUMNS:
        return
    missing = [column for column in COLUMNS if column not in header]
    extra = [column for column in header if column not in COLUMNS]
    problems = ([f"missing column(s) {', '.join(missing)}"] if missing else []) + \
               ([f"unexpected column(s) {', '.join(repr(c) for c in extra)}"] if extra else [])
    if not problems:
        problems = ["columns are duplicated or out of order"]
    raise ResultsFormatError(f"{path} line 1: {'; '.join(problems)}; expected the columns {', '.join(COLUMNS)}")


def _parse_row(record: list[str]) -> list[object]:
    """The typed cells of one data row; ``ValueError`` names the first bad cell."""
    if len(record) != len(COLUMNS):
        raise ValueError(f"{len(record)} cells, expected {len(COLUMNS)} (a torn or hand-edited line)")
    cells: list[object] = []
    for column, text in zip(COLUMNS, record):
        if column in FLOAT_COLUMNS:
            cells.append(_number(column, text, float))
        elif column in INTEGER_COLUMNS:
            cells.append(_number(column, text, int))
        else:
            cells.append(unescape_formula(text))
    row = dict(zip(COLUMNS, cells))
    if row["status"] not in STATUSES:
        raise ValueError(f"status {row['status']!r} is not one of {', '.join(STATUSES)}")

    for column in ("experiment", "backend", "metric"):
        if not row[column]:
            raise ValueError(f"empty {column}")
    try:
        decode_params(row["params"])
    except ValueError as error:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"params {row['params']!r} is not a JSON object of scalars ({error})") from None
    return cells


def _number(column: str, text: str, kind: type) -> float | int:
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{column} {text!r} is not {'an integer' if kind is int else 'a number'}") from None
