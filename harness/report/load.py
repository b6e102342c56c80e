"""A results directory as the report sees it: validated rows, the runs' environments, and every
problem found on the way (dropped rows, superseded duplicates, flagged values).

* Rows come from :func:`rnnbench.harness.results.load_results` (malformed rows are dropped there and
  counted here).
* A key (identity + metric, :data:`rnnbench.harness.results.KEY_COLUMNS`) measured more than once
  keeps its last row. This is how one correctness check per shape is counted once: the gate of a
  speed case and of a memory case at the same shape both write the same ``numerics`` row.
* Every row gets a ``flag``: empty when the row's value may be used, otherwise why not (a value
  breaking its metric's rule from :mod:`rnnbench.harness.report.metrics`, e.g. a zero latency). Only
  ``ok`` rows with an empty flag are drawn, ranked or divided by (:attr:`ReportData.valid`).
* ``env.json`` must be ``{"runs": [{...}, ...]}``; invalid JSON or another shape is an error naming
  the file, line and problem. A missing ``env.json`` is allowed (the report says so).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from rnnbench.harness.cases import decode_params
from rnnbench.harness.errors import UsageError
from rnnbench.harness.report.metrics import value_problem
from rnnbench.harness.results import latest_attempts, load_results

#: statuses whose rows carry a measured value (an incorrect numerics row keeps the error it measured)
MEASURED_STATUSES = ("ok", "incorrect")


@dataclass
class ReportData:
    """Everything a report or a comparison is computed from."""

    directory: Path
    #: every row after validation and de-duplication, with ``flag`` ('' when the value may be used)
    frame: pd.DataFrame
    #: the ``runs`` of env.json (empty when there is none)
    runs: list[dict]
    env_found: bool
    #: one message per malformed row dropped from results.csv
    dropped: list[str] = field(default_factory=list)
    #: rows replaced by a later row with the same key
    superseded: int = 0

    @property
    def valid(self) -> pd.DataFrame:
        """``ok`` rows whose value may be used (drawn, ranked, divided by)."""
        frame = self.frame
        return frame[(frame.status == "ok") & (frame.flag == "")]

    @property
    def flagged(self) -> pd.DataFrame:
        return self.frame[self.frame.flag != ""]

    @property
    def speedup_baseline(self) -> str | None:
        """The backend every speedup is relative to, as declared in env.json (the last run's)."""
        declared = [run["speedup_baseline"] for run in self.runs if isinstance(run.get("speedup_baseline"), str)]
        return declared[-1] if declared else None

    @property
    def suites(self) -> list[str]:
        return sorted({str(run["suite"]) for run in self.runs if run.get("suite")})

    def metrics(self) -> set[str]:
        return set(self.frame.metric)

    def device_names(self) -> set[str]:
        """Where the rows were measured: the ``device_name`` column, or env.json where it is empty."""
        names = {name for name in self.frame.device_name if name}
        if not names or (self.frame.device_name == "").any():
            names |= {env_device_name(run) for run in self.runs}
        return {name for name in names if name}


def env_device_name(run: dict) -> str:
    """The GPU's name of a CUDA run, the CPU model otherwise ('' when unknown)."""
    gpu = run.get("gpu")
    if isinstance(gpu, dict) and gpu.get("name"):
        return str(gpu["name"])
    return str(run.get("cpu_model") or "")


def load(directory: str | Path) -> ReportData:
    """Read and validate ``directory``'s ``results.csv`` and ``env.json``.

    Raises :class:`~rnnbench.harness.errors.UsageError` for a missing results.csv or a file that
    cannot be read as a whole (the message names the file, the line and the problem)."""
    directory = Path(directory)
    try:
        frame, dropped = load_results(directory)
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None
    before = len(frame)
    frame = latest_attempts(frame).reset_index(drop=True)
    frame["flag"] = [_flag(row) for row in frame[["metric", "value", "status"]].itertuples(index=False)]
    runs, env_found = load_env(directory)
    return ReportData(directory, frame, runs, env_found, dropped, before - len(frame))


def _flag(row) -> str:
    if row.status not in MEASURED_STATUSES:
        return ""
    problem = value_problem(row.metric, row.value)
    return f"{problem} {row.metric}" if problem else ""


def load_env(directory: Path) -> tuple[list[dict], bool]:
    """The ``runs`` of ``directory/env.json`` and whether the file exists."""
    path = directory / "env.json"
    if not path.exists():
        return [], False
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise UsageError(f"{path}: not UTF-8 text (byte {error.start}: {error.reason})") from None
    except json.JSONDecodeError as error:
        raise UsageError(f"{path} line {error.lineno} column {error.colno}: invalid JSON: {error.msg}") from None
    runs = document.get("runs") if isinstance(document, dict) else None
    if not isinstance(runs, list):
        raise UsageError(f"{path}: expected an object {{\"runs\": [...]}}, got {type(document).__name__}"
                         f"{' without a runs list' if isinstance(document, dict) else ''}")
    for index, run in enumerate(runs):
        if not isinstance(run, dict):
            raise UsageError(f"{path}: runs[{index}] must be an object, got {type(run).__name__}")
    return runs, True


def param(frame: pd.DataFrame, name: str) -> pd.Series:
    """The value of parameter ``name`` in each row's ``params`` (NaN where a row lacks it)."""
    return frame.params.map(lambda text: decode_params(text).get(name, float("nan")))
