"""The report's tables, computed from :class:`~rnnbench.harness.report.load.ReportData`.

Each function returns a DataFrame of formatted text cells whose headers carry their units, or an
empty DataFrame when there is nothing to show. Only valid rows (``ok``, value not flagged) are
ranked or divided; speedups pair a backend's row with the declared baseline's row of the same
identity and metric.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from rnnbench.harness.cases import IDENTITY_FIELDS
from rnnbench.harness.report.load import ReportData, env_device_name
from rnnbench.harness.report.metrics import axis_label

SHAPE = ["seq_len", "batch", "input_size", "hidden_size"]
SHAPE_HEADERS = {"seq_len": "T (steps)", "batch": "B (sequences)", "input_size": "I (features)",
                 "hidden_size": "H (units)"}
#: what a speed configuration is, besides its shape
SPEED_GROUP = ["metric", "family", "device", "dtype", "mode"]
#: a row's identity without the backend: what two backends' rows of the same case share
PAIRING = [column for column in IDENTITY_FIELDS if column != "backend"] + ["metric"]
SPEED_METRICS = ("latency", "latency_cudagraph")


def fmt(value: float, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits; '-' for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}g}"


def series_label(backend: str, family: str) -> str:
    """How a backend/family pair is named in legends and tables (``torch lstm``, ``bow``)."""
    return backend if backend == family else f"{backend} {family}"


def speed_rows(data: ReportData) -> pd.DataFrame:
    valid = data.valid
    return valid[(valid.experiment == "speed") & valid.metric.isin(SPEED_METRICS)]


def _paired_with_baseline(data: ReportData, rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` of every backend but the baseline, each with ``baseline_value``: the baseline's valid
    value of the same identity and metric (rows without one, or with a non-positive one, are left out)."""
    baseline = data.speedup_baseline
    if baseline is None or rows.empty:
        return rows.assign(baseline_value=pd.Series(dtype=float)).iloc[0:0]
    reference = rows[rows.backend == baseline][PAIRING + ["value"]].rename(columns={"value": "baseline_value"})
    paired = rows[rows.backend != baseline].merge(reference, on=PAIRING, how="inner")
    return paired[paired.baseline_value > 0]


def speedups(data: ReportData) -> pd.DataFrame:
    """Valid speed rows of every backend but the baseline, with ``speedup`` = baseline median /
    backend median for the same identity and metric (rows without a valid baseline row are left out)."""
    paired = _paired_with_baseline(data, speed_rows(data))
    return paired.assign(speedup=paired.baseline_value / paired.value)


def memory_rows(data: ReportData) -> pd.DataFrame:
    valid = data.valid
    return valid[(valid.experiment == "memory") & (valid.metric == "peak_memory")]


def memory_ratios(data: ReportData) -> pd.DataFrame:
    """Valid peak-memory rows of every backend but the baseline, with ``ratio`` = backend peak /
    baseline peak for the same identity (below 1: the backend needs less)."""
    paired = _paired_with_baseline(data, memory_rows(data))
    return paired.assign(ratio=paired.value / paired.baseline_value)


def geomean(values: pd.Series) -> float:
    return float(np.exp(np.log(values).mean()))


def headline_speedups(data: ReportData) -> pd.DataFrame:
    """Geometric-mean speedup over the baseline per backend and configuration, with its range and
    how many shapes it covers."""
    paired = speedups(data)
    if paired.empty:
        return pd.DataFrame()
    rows = []
    for (metric, family, device, dtype, mode, backend), group in paired.groupby(SPEED_GROUP + ["backend"], sort=True):
        rows.append({
            "backend": series_label(backend, family), "mode": mode, "dtype": dtype, "device": device, "metric": metric,
            f"geomean speedup over {data.speedup_baseline} (×)": fmt(geomean(group.speedup)),
            "range (×)": f"{fmt(group.speedup.min())}–{fmt(group.speedup.max())}",
            "shapes covered": str(len(group)),
        })
    return pd.DataFrame(rows)


def _case_columns(frame: pd.DataFrame) -> list[str]:
    """The identity columns besides the backend that vary, so tables show them."""
    return [column for column in ("task", "params", "seed") if frame[column].nunique() > 1]


def headline_fastest(data: ReportData) -> pd.DataFrame:
    """Per configuration (family, mode, dtype, device, metric): how many shapes each backend is the
    fastest at, among the backends measured at that shape."""
    speed = speed_rows(data)
    if speed.empty:
        return pd.DataFrame()
    rows = []
    for (metric, family, device, dtype, mode), group in speed.groupby(SPEED_GROUP, sort=True):
        cases = group.groupby(SHAPE + ["task", "params", "seed"], sort=False)
        winners = cases.apply(lambda shape: shape.loc[shape.value.idxmin(), "backend"], include_groups=False)
        counts = winners.value_counts()
        rows.append({
            "family": family, "mode": mode, "dtype": dtype, "device": device, "metric": metric,
            "shapes": str(len(winners)),
            "fastest backend (shapes won)": ", ".join(f"{backend} {count}" for backend, count in counts.items()),
            "backends compared": ", ".join(sorted(group.backend.unique())),
        })
    return pd.DataFrame(rows)


def speed_tables(data: ReportData) -> list[tuple[str, pd.DataFrame]]:
    """One table per configuration: each backend's median latency [IQR] and µs per step, its speedup
    over the baseline and the fastest backend at each shape."""
    speed = speed_rows(data)
    paired = speedups(data)
    tables = []
    for (metric, family, device, dtype, mode), group in speed.groupby(SPEED_GROUP, sort=True):
        extra = _case_columns(group)
        rows = []
        for key, by_shape in group.groupby(SHAPE + extra, sort=True):
            key = key if isinstance(key, tuple) else (key,)
            row = {SHAPE_HEADERS.get(column, column): str(value) for column, value in zip(SHAPE + extra, key)}
            for record in by_shape.sort_values("backend").itertuples():
                per_step_us = record.value * 1e3 / record.seq_len if record.seq_len > 0 else math.nan
                row[f"{record.backend}: ms (IQR); µs/step"] = (
                    f"{fmt(record.value, 4)} ({fmt(record.q25, 4)}–{fmt(record.q75, 4)}); {fmt(per_step_us)}")
            shape_pairs = paired.merge(by_shape[PAIRING + ["backend"]], on=PAIRING + ["backend"], how="inner")
            for record in shape_pairs.sort_values("backend").itertuples():
                row[f"{record.backend} speedup (×)"] = fmt(record.speedup)
            row["fastest"] = by_shape.loc[by_shape.value.idxmin(), "backend"]
            rows.append(row)
        title = f"{family} {mode}, {dtype} on {device}: {axis_label(metric)}"
        tables.append((title, pd.DataFrame(rows).fillna("-")))
    return tables


def memory_tables(data: ReportData) -> list[tuple[str, pd.DataFrame]]:
    """One table per configuration: each backend's peak in MiB at each shape, then its ratio to the
    baseline's peak."""
    memory = memory_rows(data)
    ratios = memory_ratios(data)
    tables = []
    for (family, device, dtype, mode), group in memory.groupby(["family", "device", "dtype", "mode"], sort=True):
        table = group.pivot_table(index=SHAPE, columns="backend", values="value", aggfunc="first")
        table = table.map(fmt).reset_index().rename(columns=SHAPE_HEADERS)
        table.columns = [f"{column} (MiB)" if column in set(group.backend) else column for column in table.columns]
        shape_ratios = ratios.merge(group[PAIRING + ["backend"]], on=PAIRING + ["backend"], how="inner")
        if not shape_ratios.empty:
            by_backend = shape_ratios.pivot_table(index=SHAPE, columns="backend", values="ratio", aggfunc="first")
            by_backend.columns = [f"{column} / {data.speedup_baseline} (×)" for column in by_backend.columns]
            by_backend = by_backend.map(fmt).reset_index().rename(columns=SHAPE_HEADERS)
            table = table.merge(by_backend, on=[SHAPE_HEADERS[column] for column in SHAPE], how="left")
        tables.append((f"{family} {mode}, {dtype} on {device}: peak memory (MiB)", table.fillna("-").astype(str)))
    return tables


def headline_memory(data: ReportData) -> pd.DataFrame:
    """Per backend and configuration: the geometric mean of its peak memory over the baseline's, the
    range, and at how many of the shapes it needs no more than the baseline."""
    paired = memory_ratios(data)
    if paired.empty:
        return pd.DataFrame()
    rows = []
    for (family, device, dtype, mode, backend), group in paired.groupby(["family", "device", "dtype", "mode", "backend"],
                                                                         sort=True):
        rows.append({
            "backend": series_label(backend, family), "mode": mode, "dtype": dtype, "device": device,
            f"geomean peak / {data.speedup_baseline}'s (×)": fmt(geomean(group.ratio)),
            "range (×)": f"{fmt(group.ratio.min())}–{fmt(group.ratio.max())}",
            f"shapes at or below {data.speedup_baseline}": f"{int((group.ratio <= 1).sum())}/{len(group)}",
        })
    return pd.DataFrame(rows)


def _gate_rows(data: ReportData) -> pd.DataFrame:
    frame = data.frame
    return frame[(frame.experiment == "numerics") & (frame.metric == "max_abs_err") & frame.status.isin(["ok", "incorrect"])]


def numerics_summary(data: ReportData) -> pd.DataFrame:
    """Per backend and configuration: the largest error over its shapes and how many shapes passed
    their correctness check (each shape's check counted once)."""
    gate = _gate_rows(data)
    if gate.empty:
        return pd.DataFrame()
    rows = []
    for (family, backend, device, dtype, mode), group in gate.groupby(["family", "backend", "device", "dtype", "mode"], sort=True):
        usable = group[group.flag == ""]
        rows.append({
            "backend": series_label(backend, family), "device": device, "dtype": dtype, "mode": mode,
            "largest max |error| (unitless)": fmt(usable.value.max()) if not usable.empty else "-",
            "shapes passed": f"{int((group.status == 'ok').sum())}/{len(group)}",
        })
    return pd.DataFrame(rows)


def failed_checks(data: ReportData) -> pd.DataFrame:
    """Every failed correctness check: the shape, the error and the gate's note."""
    failed = _gate_rows(data)
    failed = failed[failed.status == "incorrect"]
    return _listing(failed, ["backend", "family", "device", "dtype", "mode", *SHAPE], value="max |error| (unitless)")


def not_measured(data: ReportData) -> pd.DataFrame:
    """Every case that produced no number (skipped, incorrect, oom, error) with its reason."""
    frame = data.frame
    missing = frame[(frame.status != "ok") & ~((frame.experiment == "numerics") & (frame.status == "incorrect"))]
    if missing.empty:
        return pd.DataFrame()
    columns = ["status", "experiment", "metric", "backend", "family", "device", "dtype", "note"]
    table = missing.groupby(columns, sort=True).size().rename("rows").reset_index()
    table["rows"] = table["rows"].astype(str)
    return table[["status", "experiment", "metric", "backend", "family", "device", "dtype", "rows", "note"]]


def flagged_values(data: ReportData) -> pd.DataFrame:
    """Rows whose value breaks its metric's rule (zero, negative, NaN, infinite): not used anywhere."""
    return _listing(data.flagged, ["experiment", "backend", "family", "device", "dtype", "mode", *SHAPE, "params", "metric"],
                    value="value", extra={"problem": "flag"})


def _listing(frame: pd.DataFrame, columns: list[str], value: str, extra: dict[str, str] | None = None) -> pd.DataFrame:
    if frame.empty:
        return pd.DataFrame()
    table = frame[columns].astype(str).rename(columns=SHAPE_HEADERS)
    table[value] = frame.value.map(fmt).to_numpy()
    for header, column in (extra or {}).items():
        table[header] = frame[column].astype(str).to_numpy()
    table["note"] = frame.note.astype(str).to_numpy()
    return table.reset_index(drop=True)


def environment(data: ReportData) -> pd.DataFrame:
    """One row per run that wrote to the directory."""
    rows = []
    for run in data.runs:
        gpu = run.get("gpu") if isinstance(run.get("gpu"), dict) else None
        rows.append({
            "run": run.get("run_id", "?"), "suite": run.get("suite", "?"), "started (UTC)": run.get("started_utc", "?"),
            "device": f"{run.get('device', '?')} ({env_device_name(run) or '?'})",
            "GPU capability / SMs / memory (GiB) / driver": (
                f"{gpu.get('capability', '?')} / {gpu.get('multiprocessors', '?')} / {gpu.get('memory_gib', '?')} / "
                f"{gpu.get('driver', '?')}" if gpu else "-"),
            "CPU (cores; torch threads)": f"{run.get('cpu_model', '?')} ({run.get('cpu_count', '?')}; {run.get('torch_threads', '?')})",
            "python / torch / triton / numpy": " / ".join(str(run.get(name) or "-") for name in ("python", "torch", "triton", "numpy")),
            "CUDA / cuDNN": f"{run.get('cuda') or '-'} / {run.get('cudnn') or '-'}",
            "git": f"{str(run.get('git_sha') or '?')[:10]}{' (dirty)' if run.get('git_dirty') else ''}",
            "speedup baseline": str(run.get("speedup_baseline") or "-"),
        })
    return pd.DataFrame(rows).astype(str) if rows else pd.DataFrame()


def metric_summary(data: ReportData, metrics: tuple[str, ...], by: list[str]) -> pd.DataFrame:
    """Mean and range over seeds of each metric in ``metrics``, per ``by`` (task results)."""
    valid = data.valid
    rows = valid[valid.metric.isin(metrics)]
    if rows.empty:
        return pd.DataFrame()
    table = rows.groupby(by + ["metric", "unit"], sort=True).value.agg(["mean", "min", "max", "count"]).reset_index()
    table["value (mean over seeds)"] = table["mean"].map(fmt)
    table["range over seeds"] = [f"{fmt(low)}–{fmt(high)}" for low, high in zip(table["min"], table["max"])]
    table["seeds"] = table["count"].astype(str)
    table["metric"] = [axis_label(metric, unit) for metric, unit in zip(table.metric, table.unit)]
    return table[by + ["metric", "value (mean over seeds)", "range over seeds", "seeds"]].astype(str)

