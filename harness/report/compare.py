"""Comparing two results directories (BASE, then NEW) case by case.

Rows are matched on their key (the case's identity and the metric). For every matched metric that
has a direction (:mod:`rnnbench.harness.report.metrics`: latency, peak memory, throughput, ...) and a
valid value on both sides, the ratio NEW / BASE is reported with whether the two interquartile
ranges overlap. A **regression** is a change for the worse beyond ``threshold`` (NEW worse by more
than ``1 + threshold`` times) whose IQRs do not overlap, or a case that was ``ok`` in BASE and is
``incorrect``, ``error`` or ``oom`` in NEW. Flagged values (zero, negative, NaN, infinite) are never
divided: their pair is "not comparable", and so is a timing (a median of repeated samples) with
fewer than ``MIN_SAMPLES`` samples on either side, whose one or two samples give no spread to judge
a change by.

Results from different devices are not comparable; :func:`check_same_device` says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib as mpl
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure as MplFigure

from rnnbench.harness.report.document import Document, Figure, Heading, Table, bullets, para
from rnnbench.harness.report.figures import THEME, Drawing, log_axis, render_png
from rnnbench.harness.report.load import ReportData
from rnnbench.harness.report.metrics import MIN_SAMPLES, metric_info
from rnnbench.harness.report.tables import SHAPE, SHAPE_HEADERS, fmt, series_label
from rnnbench.harness.results import KEY_COLUMNS

FAILED_STATUSES = ("incorrect", "error", "oom")
RATIO_TICKS = (0.1, 0.2, 0.5, 0.67, 0.8, 0.9, 1, 1.1, 1.25, 1.5, 2, 5, 10)
VERDICTS = ("regression", "improvement", "unchanged", "not comparable", "fixed", "no direction")


@dataclass
class Comparison:
    threshold: float
    #: one row per matched key: identity, metric, base/new value, IQRs, ratio, overlap, verdict, why
    pairs: pd.DataFrame
    only_in_base: int
    only_in_new: int

    @property
    def regressions(self) -> pd.DataFrame:
        return self.pairs[self.pairs.verdict == "regression"]


def check_same_device(base: ReportData, new: ReportData) -> str | None:
    """Why BASE and NEW cannot be compared (different devices), or None."""
    base_devices, new_devices = base.device_names(), new.device_names()
    if base_devices and new_devices and base_devices != new_devices:
        return (f"BASE was measured on {', '.join(sorted(base_devices))} and NEW on {', '.join(sorted(new_devices))}; "
                "timings from different devices are not comparable (pass --force to compare anyway)")
    return None


def compare(base: ReportData, new: ReportData, threshold: float) -> Comparison:
    """Match BASE and NEW row by row and judge each pair (see the module docstring)."""
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    columns = ["value", "q25", "q75", "n", "status", "flag", "unit"]
    keys = list(KEY_COLUMNS)
    merged = base.frame[keys + columns].merge(new.frame[keys + columns], on=keys, how="outer",
                                              suffixes=("_base", "_new"), indicator=True)
    pairs = merged[merged["_merge"] == "both"].drop(columns="_merge").reset_index(drop=True)
    judged = [_judge(row, threshold) for row in pairs.to_dict("records")]
    pairs["ratio"] = [ratio for ratio, _, _, _ in judged]
    pairs["overlap"] = [overlap for _, overlap, _, _ in judged]
    pairs["verdict"] = [verdict for _, _, verdict, _ in judged]
    pairs["why"] = [why for _, _, _, why in judged]
    return Comparison(threshold, pairs, int((merged["_merge"] == "left_only").sum()),
                      int((merged["_merge"] == "right_only").sum()))


def _judge(row: dict, threshold: float) -> tuple[float, bool | None, str, str]:
    """(ratio NEW/BASE, whether the IQRs overlap, verdict, reason) of one matched pair."""
    base_status, new_status = row["status_base"], row["status_new"]
    if base_status == "ok" and new_status in FAILED_STATUSES:
        return math.nan, None, "regression", f"was ok, now {new_status}"
    if base_status in FAILED_STATUSES and new_status == "ok":
        return math.nan, None, "fixed", f"was {base_status}, now ok"
    if base_status != "ok" or new_status != "ok":
        return math.nan, None, "not comparable", f"status {base_status} → {new_status}"
    if row["flag_base"] or row["flag_new"]:
        return math.nan, None, "not comparable", "flagged value: " + "; ".join(f for f in (row["flag_base"], row["flag_new"]) if f)
    base, new = row["value_base"], row["value_new"]
    if not (base > 0 and new > 0):
        return math.nan, None, "not comparable", "a value is zero: no ratio"
    ratio = new / base
    overlap = _overlap(row)
    metric = metric_info(row["metric"])
    better = metric.better
    fewest = min(row["n_base"], row["n_new"])
    if metric.sampled and better is not None and not fewest >= MIN_SAMPLES:
        return ratio, overlap, "not comparable", (f"{fmt(row['n_base'])} → {fmt(row['n_new'])} samples: fewer than "
                                                  f"{MIN_SAMPLES}, no spread to judge a change by")
    if better is None:
        return ratio, overlap, "no direction", ""
    worse_by = ratio if better == "lower" else 1 / ratio
    if overlap is not True and worse_by > 1 + threshold:
        return ratio, overlap, "regression", f"{fmt(worse_by)}× worse ({better} is better)"
    if overlap is not True and 1 / worse_by > 1 + threshold:
        return ratio, overlap, "improvement", f"{fmt(1 / worse_by)}× better"
    return ratio, overlap, "unchanged", ""


def _overlap(row: dict) -> bool | None:
    """Whether [q25, q75] of BASE and NEW overlap (None when an IQR is missing)."""
    bounds = [row["q25_base"], row["q75_base"], row["q25_new"], row["q75_new"]]
    if not all(np.isfinite(bounds)):
        return None
    return bool(max(row["q25_base"], row["q25_new"]) <= min(row["q75_base"], row["q75_new"]))


def comparison_table(comparison: Comparison, verdicts: tuple[str, ...] = VERDICTS) -> pd.DataFrame:
    """Matched pairs with the given verdicts as formatted text, regressions first."""
    pairs = comparison.pairs[comparison.pairs.verdict.isin(verdicts)]
    if pairs.empty:
        return pd.DataFrame()
    order = pairs.verdict.map({verdict: index for index, verdict in enumerate(VERDICTS)})
    pairs = pairs.assign(_order=order).sort_values(["_order", "ratio"], ascending=[True, False])
    table = pd.DataFrame({
        "verdict": pairs.verdict,
        "backend": [series_label(b, f) for b, f in zip(pairs.backend, pairs.family)],
        **{column: pairs[column].astype(str) for column in ("experiment", "task", "device", "dtype", "mode")},
        **{SHAPE_HEADERS[column]: pairs[column].astype(str) for column in SHAPE},
        "params": pairs.params.astype(str),
        "metric": [f"{metric} ({metric_info(metric, unit).unit})" for metric, unit in zip(pairs.metric, pairs.unit_new)],
        "BASE (IQR)": [_with_iqr(v, lo, hi) for v, lo, hi in zip(pairs.value_base, pairs.q25_base, pairs.q75_base)],
        "NEW (IQR)": [_with_iqr(v, lo, hi) for v, lo, hi in zip(pairs.value_new, pairs.q25_new, pairs.q75_new)],
        "NEW/BASE (×)": pairs.ratio.map(fmt),
        "IQRs overlap": pairs.overlap.map({True: "yes", False: "no"}).fillna("-"),
        "why": pairs.why,
    })
    return table.reset_index(drop=True)


def _with_iqr(value: float, low: float, high: float) -> str:
    return f"{fmt(value, 4)} ({fmt(low, 4)}–{fmt(high, 4)})"


def ratio_figure(comparison: Comparison) -> bytes | None:
    """NEW/BASE ratio of every pair of a metric with a direction (log x), a row per backend, family,
    mode and metric; the dotted lines are the threshold."""
    judged = ~comparison.pairs.verdict.isin(("no direction", "not comparable"))
    pairs = comparison.pairs[np.isfinite(comparison.pairs.ratio) & judged]
    if pairs.empty:
        return None
    pairs = pairs.assign(group=[f"{series_label(b, f)} {m} {metric}" for b, f, m, metric
                                in zip(pairs.backend, pairs.family, pairs["mode"], pairs.metric)])
    with mpl.rc_context(THEME):
        fig = MplFigure(figsize=(8, 1.2 + 0.35 * pairs.group.nunique()), layout="constrained")
        ax = fig.subplots()
        palette = {"regression": "tab:red", "improvement": "tab:blue", "unchanged": "tab:gray"}
        sns.stripplot(pairs.sort_values("group"), x="ratio", y="group", hue="verdict", palette=palette,
                      ax=ax, jitter=0.25, size=4)
        log_axis(ax, "x", pd.concat([pairs.ratio, pd.Series([0.8, 1.25])]), always=True, ticks_at_values=False)
        ax.xaxis.set_major_locator(mticker.FixedLocator(RATIO_TICKS))  # only those in view are drawn
        ax.xaxis.set_minor_locator(mticker.NullLocator())
        ax.axvline(1, color="black", linewidth=1)
        for bound in (1 + comparison.threshold, 1 / (1 + comparison.threshold)):
            ax.axvline(bound, color="black", linestyle=":", linewidth=1)
        ax.set(xlabel="NEW / BASE (×, log scale; > 1 is slower or larger)", ylabel="backend, mode, metric")
        return render_png(Drawing(fig))


def build_comparison(comparison: Comparison, base: ReportData, new: ReportData, device_note: str | None) -> Document:
    counts = comparison.pairs.verdict.value_counts()
    document = Document(f"rnnbench comparison: {base.directory} → {new.directory}")
    notes = [
        f"{len(comparison.pairs)} matched (case, metric) pairs: "
        + (", ".join(f"{counts[v]} {v}" for v in VERDICTS if v in counts) or "none") + ".",
        f"{comparison.only_in_base} only in BASE, {comparison.only_in_new} only in NEW.",
        f"Threshold: {comparison.threshold:.0%}. A regression is NEW worse than BASE by more than "
        f"{1 + comparison.threshold:g}× with non-overlapping interquartile ranges, or a case that was ok "
        "in BASE and failed in NEW.",
    ]
    if device_note:
        notes.append(f"Compared although the devices differ (--force): {device_note}.")
    document.blocks += [Heading(2, "Summary"), bullets(*notes)]
    png = ratio_figure(comparison)
    if png is not None:
        document.blocks.append(Figure("comparison_ratio", "NEW / BASE per case", "Ratio of every pair with a valid "
                                      "value on both sides; dotted lines at the threshold.", png))
    for heading, verdicts in (("Regressions", ("regression",)), ("Improvements", ("improvement", "fixed")),
                              ("Every matched pair", VERDICTS)):
        table = comparison_table(comparison, verdicts)
        document.blocks += [Heading(2, heading), Table(table) if not table.empty else para("None.")]
    return document
