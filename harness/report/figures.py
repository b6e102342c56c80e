"""The report's figures: one function per figure, registered with :func:`figure`.

A figure is drawn when at least one valid row (``ok``, value not flagged) of a metric it ``needs`` is
in the results; its function returns a :class:`Drawing` (or None when, after all, there is nothing
to draw). Adding a figure is adding one decorated function here. Every axis names its quantity and
unit; log axes only ever see positive values (flagged rows never reach a figure).

The rows each figure reads (metric names from :mod:`rnnbench.harness.report.metrics`; ``params``
keys from the constants below):

* ``latency_vs_seq_len`` / ``cudagraph_latency_vs_seq_len``: speed ``latency`` / ``latency_cudagraph``;
* ``speedup_heatmap`` / ``cudagraph_speedup_heatmap``: speed ``latency`` / ``latency_cudagraph`` of
  the declared baseline and the other backends;
* ``step_time_vs_bound`` / ``cudagraph_step_time_vs_bound``: speed ``latency`` / ``latency_cudagraph``
  in mode ``fwd``, against :mod:`.costmodel`;
* ``peak_memory_vs_seq_len``: memory ``peak_memory``;
* ``task_metric_vs_distance``: :data:`~.metrics.TASK_METRICS` rows; the distance is the first of
  :data:`DISTANCE_PARAMS` in ``params``, else ``seq_len``; the chance level is backend ``baseline``
  or metric ``chance_<metric>`` of the same task;
* ``task_metric_vs_throughput``: task metric rows paired with ``train_throughput`` rows of the same case;
* ``training_loss``: ``train_loss`` with the step in ``params`` (:data:`STEP_PARAM`);
* ``gradient_norm_vs_distance``: ``grad_norm_h`` / ``grad_norm_c`` with ``params``
  ``{"distance": T - k, "trained": false|true}``;
* ``error_vs_time_step``: ``err_p50`` / ``err_p99`` / ``err_max`` with ``params`` ``{"t": step}``.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from typing import Callable

import matplotlib as mpl
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from rnnbench.harness.cases import IDENTITY_FIELDS, decode_params
from rnnbench.harness.report.costmodel import device_peaks, step_lower_bound_us
from rnnbench.harness.report.load import ReportData, param
from rnnbench.harness.report.metrics import TASK_METRICS, axis_label, baseline_metric, metric_info
from rnnbench.harness.report.tables import SHAPE_HEADERS, geomean, series_label, speed_rows, speedups

#: ``params`` keys holding a task's dependency distance, in order of preference (else ``seq_len``)
DISTANCE_PARAMS = ("distance", "delay")
#: ``params`` key of a training step (loss curves)
STEP_PARAM = "step"
#: ``params`` keys of the gradient experiment
GRADIENT_DISTANCE_PARAM, TRAINED_PARAM = "distance", "trained"
GRADIENT_METRICS = ("grad_norm_h", "grad_norm_c")
#: ``params`` key of the time step of numerical error along a sequence
TIME_STEP_PARAM = "t"
ERROR_METRICS = ("err_p50", "err_p99", "err_max")

#: line styles of a panel's baselines (chance, bag-of-words ceiling, ...), in name order
BASELINE_STYLES = ("--", ":", "-.", (0, (1, 4)), (0, (5, 5)), (0, (3, 1, 1, 1)))
FAMILY_STYLES = {"rnn": ("-", "o"), "lstm": ("--", "s"), "bow": (":", "^"), "cnn": ("-.", "D")}
#: seaborn's look; ``text.parse_math`` off so that text from the results (a backend called ``$\frac{$``)
#: is drawn as it is instead of being parsed as mathtext
THEME = {**sns.axes_style("whitegrid"), **sns.plotting_context("notebook", font_scale=0.75), "text.parse_math": False}
DPI = 100


@dataclass(frozen=True)
class Drawing:
    figure: Figure
    #: what the reader must know about this particular drawing (added to the caption)
    note: str = ""


@dataclass(frozen=True)
class FigureSpec:
    name: str
    title: str
    section: str
    needs: tuple[str, ...]
    caption: str
    draw: Callable[[ReportData], Drawing | None]


FIGURES: list[FigureSpec] = []


def figure(name: str, title: str, section: str, needs: tuple[str, ...], caption: str):
    """Register the decorated function as the figure ``name`` of report section ``section``."""

    def register(draw: Callable[[ReportData], Drawing | None]):
        FIGURES.append(FigureSpec(name, title, section, needs, caption, draw))
        return draw

    return register


def render_png(drawing: Drawing) -> bytes:
    buffer = io.BytesIO()
    drawing.figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def draw(spec: FigureSpec, data: ReportData) -> tuple[Drawing, bytes] | None:
    """Draw ``spec`` in the report's theme and render it as PNG (None when there is nothing to draw)."""
    with mpl.rc_context(THEME):
        drawing = spec.draw(data)
        return (drawing, render_png(drawing)) if drawing is not None else None


# ---------------------------------------------------------------- helpers shared by the figures


def _grid(panels: int, columns: int, width: float = 4.0, height: float = 3.0):
    columns = max(1, min(columns, panels))
    rows = math.ceil(panels / columns)
    fig = Figure(figsize=(width * columns + 1.8, height * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[panels:]:
        ax.set_visible(False)
    return fig, axes[:panels]


def _colors(labels) -> dict[str, tuple]:
    labels = sorted(set(labels))
    return dict(zip(labels, sns.color_palette("tab10", max(len(labels), 1))))


def _legend(fig: Figure, axes) -> None:
    handles = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(handles.values(), handles.keys(), loc="outside right upper", frameon=False)


def _line(ax, frame: pd.DataFrame, x: str, label: str, color, style: str = "-", marker: str = "o",
          low: str | None = None, high: str | None = None) -> None:
    """One series sorted by ``x``, with a shaded band between ``low`` and ``high`` when given."""
    frame = frame.sort_values(x)
    ax.plot(frame[x], frame["value"], linestyle=style, marker=marker, markersize=4, color=color, label=label)
    if low and high and (frame[high] > frame[low]).any():
        ax.fill_between(frame[x], frame[low], frame[high], color=color, alpha=0.2, linewidth=0)


def _over_seeds(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean over seeds with the min-max spread, per ``keys``."""
    grouped = frame.groupby(keys, sort=True).value
    return grouped.agg(value="mean", low="min", high="max").reset_index()


def log_axis(ax, axis: str, values, always: bool = False, ticks_at_values: bool | None = None) -> None:
    """Log scale with plain tick labels when ``values`` (all positive) span more than a factor of 8
    (or ``always``). With ``ticks_at_values`` (the default on x) the ticks are the measured values,
    base 2; otherwise base 10 with the 2s and 5s labelled too. Every log axis goes through here:
    mathtext is off (``THEME``), so matplotlib's default ``10^k`` labels would show as markup."""
    values = pd.Series(values).dropna()
    if not len(values) or values.min() <= 0 or not (always or values.max() / values.min() > 8):
        return
    at_values = axis == "x" if ticks_at_values is None else ticks_at_values
    scale, target = (ax.set_xscale, ax.xaxis) if axis == "x" else (ax.set_yscale, ax.yaxis)
    scale("log", base=2 if at_values else 10)
    target.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
    if at_values:
        target.set_major_locator(mticker.FixedLocator(sorted(values.unique())))
        target.set_minor_locator(mticker.NullLocator())
    else:
        target.set_minor_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))


def _with_series(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with a ``series`` column naming each row's backend and family for legends."""
    return rows.assign(series=[series_label(b, f) for b, f in zip(rows.backend, rows.family)])


def _rows_with_param(data: ReportData, metrics, name: str, column: str, positive: bool = False) -> pd.DataFrame:
    """Valid rows of ``metrics`` with the number in their ``params[name]`` as ``column`` (rows without
    it are left out); only positive values when ``positive`` (for log axes)."""
    valid = data.valid
    rows = valid[valid.metric.isin(metrics) & ((valid.value > 0) if positive else True)]
    return rows.assign(**{column: pd.to_numeric(param(rows, name), errors="coerce")}).dropna(subset=[column])


def _style(family: str) -> tuple[str, str]:
    return FAMILY_STYLES.get(family, ("-", "o"))


def _panel_title(*parts) -> str:
    return ", ".join(str(part) for part in parts if part != "")


# ---------------------------------------------------------------- speed


def _common_shape(rows: pd.DataFrame, vary: str) -> tuple[dict, pd.DataFrame]:
    """The (batch, input, hidden) — less ``vary`` — seen at the most values of ``vary`` (ties: the
    largest), and the rows at it."""
    fixed = [column for column in ("batch", "input_size", "hidden_size") if column != vary]
    coverage = rows.groupby(fixed)[vary].nunique().reset_index(name="points")
    coverage["size"] = coverage[fixed].prod(axis=1)
    best = coverage.sort_values(["points", "size"]).iloc[-1]
    shape = {column: int(best[column]) for column in fixed}
    mask = np.logical_and.reduce([rows[column] == value for column, value in shape.items()])
    return shape, rows[mask]


def _shape_text(shape: dict) -> str:
    return ", ".join(f"{SHAPE_HEADERS[column].split()[0]}={value}" for column, value in shape.items())


def _against_seq_len(rows: pd.DataFrame, ylabel: str) -> Drawing | None:
    """Panels per (mode, dtype, device); a line per backend and family against T with its IQR."""
    if rows.empty:
        return None
    shape, rows = _common_shape(rows, "seq_len")
    rows = rows.groupby(["mode", "dtype", "device", "backend", "family", "seq_len"], sort=True)[["value", "q25", "q75"]].median().reset_index()
    panels = list(rows.groupby(["dtype", "device", "mode"], sort=True))
    fig, axes = _grid(len(panels), rows["mode"].nunique())
    colors = _colors(rows.backend)
    for ax, ((dtype, device, mode), panel) in zip(axes, panels):
        for (backend, family), series in panel.groupby(["backend", "family"], sort=True):
            style, marker = _style(family)
            _line(ax, series, "seq_len", series_label(backend, family), colors[backend], style, marker, "q25", "q75")
        log_axis(ax, "x", panel.seq_len, always=True)
        log_axis(ax, "y", panel.value, always=True)
        ax.set(title=_panel_title(mode, dtype, device), xlabel=SHAPE_HEADERS["seq_len"], ylabel=ylabel)
    _legend(fig, axes)
    fig.suptitle(_shape_text(shape))
    return Drawing(fig, f"Shown at {_shape_text(shape)}, the shape measured at the most sequence lengths.")


@figure("latency_vs_seq_len", "Latency against sequence length", "speed", ("latency",),
        "Median latency of one call per backend (line style: family), shaded between the 25th and 75th "
        "percentiles; log axes; a panel per mode, dtype and device.")
def latency_vs_seq_len(data: ReportData) -> Drawing | None:
    rows = speed_rows(data)
    return _against_seq_len(rows[rows.metric == "latency"], axis_label("latency"))


@figure("cudagraph_latency_vs_seq_len", "CUDA-graph latency against sequence length", "speed", ("latency_cudagraph",),
        "Median latency of one call replayed from a CUDA graph (no host launch overhead, warm L2), "
        "interquartile range shaded; log axes.")
def cudagraph_latency_vs_seq_len(data: ReportData) -> Drawing | None:
    rows = speed_rows(data)
    return _against_seq_len(rows[rows.metric == "latency_cudagraph"], axis_label("latency_cudagraph"))


@figure("speedup_heatmap", "Speedup over the declared baseline", "speed", ("latency",),
        "Baseline median latency / backend median latency at the longest sequence of each panel, over "
        "batch size × hidden size (geometric mean over any other varying input); blue is faster than "
        "the baseline, red slower. Each call is timed with its host launch overhead.")
def speedup_heatmap(data: ReportData) -> Drawing | None:
    return _speedup_heatmap(data, "latency")


@figure("cudagraph_speedup_heatmap", "Speedup over the declared baseline, CUDA-graph replay", "speed",
        ("latency_cudagraph",),
        "As the speedup heatmap, from calls replayed from a CUDA graph: without host launch overhead, "
        "so a baseline that launches many small kernels per step is not charged for launching them.")
def cudagraph_speedup_heatmap(data: ReportData) -> Drawing | None:
    return _speedup_heatmap(data, "latency_cudagraph")


def _speedup_heatmap(data: ReportData, metric: str) -> Drawing | None:
    """Speedup over the declared baseline in ``metric`` (a latency), a heatmap per backend, family,
    mode, dtype and device."""
    paired = speedups(data)
    paired = paired[paired.metric == metric]
    if paired.empty:
        return None
    panels = []
    for key, group in paired.groupby(["backend", "family", "mode", "dtype", "device"], sort=True):
        longest = group[group.seq_len == group.seq_len.max()]
        grid = longest.groupby(["batch", "hidden_size"]).speedup.agg(geomean).unstack("hidden_size")
        panels.append((key, int(longest.seq_len.iloc[0]), grid))
    fig, axes = _grid(len(panels), 4, width=3.4, height=2.8)
    limit = max(abs(np.log2(grid.to_numpy()[np.isfinite(grid.to_numpy())])).max() for _, _, grid in panels)
    limit = max(limit, 0.1)
    for ax, ((backend, family, mode, dtype, device), seq_len, grid) in zip(axes, panels):
        labels = grid.map(lambda v: f"{v:.2g}×" if np.isfinite(v) else "")
        with warnings.catch_warnings():  # seaborn 0.13 calls a colormap method matplotlib 3.11 deprecates
            warnings.filterwarnings("ignore", category=PendingDeprecationWarning, module="seaborn")
            sns.heatmap(np.log2(grid), annot=labels, fmt="", cmap="RdBu", center=0, vmin=-limit, vmax=limit,
                        cbar=False, ax=ax, linewidths=0.5)
        ax.set(title=_panel_title(series_label(backend, family), mode, dtype, device, f"T={seq_len}"),
               xlabel=SHAPE_HEADERS["hidden_size"], ylabel=SHAPE_HEADERS["batch"])
    fig.suptitle(f"speedup over {data.speedup_baseline} (×), {metric_info(metric).label}")
    return Drawing(fig, f"Baseline: {data.speedup_baseline}, as declared in env.json.")


@figure("step_time_vs_bound", "Time per step against the cost-model lower bound", "speed", ("latency",),
        "Forward latency per time step (median / T, µs) against hidden size at the longest sequence; "
        "the dashed black line is the device's lower bound from peak FLOP/s and memory bandwidth "
        "(DESIGN.md, cost model).")
def step_time_vs_bound(data: ReportData) -> Drawing | None:
    return _step_time_vs_bound(data, "latency")


@figure("cudagraph_step_time_vs_bound", "Time per step from a CUDA graph against the cost-model lower bound",
        "speed", ("latency_cudagraph",),
        "As the time per step against the lower bound, from calls replayed from a CUDA graph (no host "
        "launch overhead, warm L2).")
def cudagraph_step_time_vs_bound(data: ReportData) -> Drawing | None:
    return _step_time_vs_bound(data, "latency_cudagraph")


def _step_time_vs_bound(data: ReportData, metric: str) -> Drawing | None:
    """Forward ``metric`` (a latency) per step against hidden size, a panel per family, dtype,
    device and batch, with the cost model's lower bound where the device's peaks are known."""
    rows = speed_rows(data)
    rows = rows[(rows.metric == metric) & (rows["mode"] == "fwd")]
    if rows.empty:
        return None
    rows = rows[rows.seq_len == rows.groupby(["family", "dtype", "device", "batch"]).seq_len.transform("max")]
    rows = rows.assign(value=rows.value * 1e3 / rows.seq_len)
    panels = list(rows.groupby(["family", "dtype", "device", "batch"], sort=True))
    fig, axes = _grid(len(panels), rows.batch.nunique())
    colors = _colors(rows.backend)
    unknown = set()
    for ax, ((family, dtype, device, batch), panel) in zip(axes, panels):
        for backend, series in panel.groupby("backend", sort=True):
            series = series.groupby("hidden_size", as_index=False).value.median()
            _line(ax, series, "hidden_size", backend, colors[backend], "-", _style(family)[1])
        hidden = np.array(sorted(panel.hidden_size.unique()))
        for name in sorted({name for name in panel.device_name if name}):
            peaks = device_peaks(name)
            bounds = [step_lower_bound_us(family, int(batch), int(h), dtype, peaks) for h in hidden] if peaks else [None]
            if None in bounds:
                unknown.add(name)
                continue
            ax.plot(hidden, bounds, "k--", linewidth=1, label=f"lower bound ({peaks.name})")
        log_axis(ax, "x", panel.hidden_size, always=True)
        log_axis(ax, "y", panel.value, always=True)
        ax.set(title=_panel_title(family, dtype, device, f"B={batch}"), xlabel=SHAPE_HEADERS["hidden_size"],
               ylabel="time per step (µs)")
    _legend(fig, axes)
    note = (f"No lower bound for {', '.join(sorted(unknown))}: no peak figures in the cost model's device table "
            "(CPUs have none)." if unknown else "")
    return Drawing(fig, note)


# ---------------------------------------------------------------- memory


@figure("peak_memory_vs_seq_len", "Peak memory against sequence length", "memory", ("peak_memory",),
        "Peak memory of one call beyond what was allocated before it, per backend (line style: family); "
        "a bar chart when a single sequence length was measured.")
def peak_memory_vs_seq_len(data: ReportData) -> Drawing | None:
    valid = data.valid
    rows = valid[(valid.experiment == "memory") & (valid.metric == "peak_memory")]
    if rows.empty:
        return None
    if rows.seq_len.nunique() > 1:
        return _against_seq_len(rows, axis_label("peak_memory"))
    shape, rows = _common_shape(rows, "backend")
    panels = list(rows.groupby(["dtype", "device", "mode"], sort=True))
    fig, axes = _grid(len(panels), rows["mode"].nunique())
    for ax, ((dtype, device, mode), panel) in zip(axes, panels):
        panel = _with_series(panel)
        sns.barplot(panel, x="series", y="value", hue="backend", palette=_colors(rows.backend), ax=ax, legend=False)
        ax.set(title=_panel_title(mode, dtype, device), xlabel="backend", ylabel=axis_label("peak_memory"))
        ax.tick_params(axis="x", rotation=30)
    seq_len = int(rows.seq_len.iloc[0])
    fig.suptitle(f"T={seq_len}, {_shape_text(shape)}")
    return Drawing(fig, f"Only T={seq_len} was measured, at {_shape_text(shape)}.")


# ---------------------------------------------------------------- accuracy (tasks and training)


#: params a row adds to its case's (a loss-curve step, a gradient's distance): left out when rows
#: are matched with their case
ROW_PARAMS = (STEP_PARAM, GRADIENT_DISTANCE_PARAM, TRAINED_PARAM, TIME_STEP_PARAM)


def _case_of(rows: pd.DataFrame) -> pd.Series:
    """Each row's case as a hashable key: its identity with the :data:`ROW_PARAMS` dropped."""
    params = rows.params.map(lambda text: tuple(sorted((k, v) for k, v in decode_params(text).items() if k not in ROW_PARAMS)))
    identity = [column for column in IDENTITY_FIELDS if column not in ("experiment", "params")]
    return pd.Series(list(zip(*(rows[column] for column in identity), params)), index=rows.index, dtype=object)


def _with_distance(rows: pd.DataFrame, data: ReportData) -> pd.DataFrame:
    """``rows`` with a ``distance`` column: the ``distance`` row of the row's case (the accuracy
    experiment records it), else the first :data:`DISTANCE_PARAMS` key present, else T."""
    valid = data.valid
    recorded = valid[valid.metric == "distance"]
    by_case = dict(zip(_case_of(recorded), recorded.value)) if not recorded.empty else {}
    distance = pd.Series([by_case.get(key, np.nan) for key in _case_of(rows)], index=rows.index, dtype=float)
    for name in DISTANCE_PARAMS:
        distance = distance.fillna(pd.to_numeric(param(rows, name), errors="coerce"))
    return rows.assign(distance=pd.to_numeric(distance.fillna(rows.seq_len)))


def _with_variant(rows: pd.DataFrame, panel: list[str]) -> pd.DataFrame:
    """``rows`` with a ``series`` label per backend and family, extended, within each ``panel``
    group, by the params that tell apart that backend's runs at the same distance (two forget-gate
    biases, shuffled pixels); every other param (a task's length knob, a budget shared by the runs)
    stays out of the label, so seeds are averaged and a length sweep stays one line."""
    if rows.empty:
        return rows.assign(series=pd.Series(dtype=str))
    labelled = []
    for _, group in rows.groupby([*panel, "backend", "family"], sort=False):
        params = group.params.map(lambda text: {k: v for k, v in decode_params(text).items() if k not in ROW_PARAMS})
        keys = sorted({key for mapping in params for key in mapping})
        values = pd.DataFrame({key: params.map(lambda m, k=key: str(m.get(k))) for key in keys}, index=group.index)
        at_distance = values.groupby(group.distance)
        varying = [key for key in keys if (at_distance[key].nunique() > 1).any()]
        labels = [series_label(b, f) + "".join(f" {key}={mapping.get(key)}" for key in varying)
                  for b, f, mapping in zip(group.backend, group.family, params)]
        labelled.append(group.assign(series=labels))
    return pd.concat(labelled)


def _task_rows(data: ReportData) -> pd.DataFrame:
    valid = data.valid
    return _with_distance(valid[valid.metric.isin(TASK_METRICS)], data)


def _baselines(data: ReportData, task: str, metric: str) -> pd.DataFrame:
    """The ``baseline:<name>:<metric>`` rows of ``task``: mean per baseline name and distance."""
    valid = data.valid
    names = valid.metric.map(lambda name: (baseline_metric(name) or ("", ""))[0])
    rows = valid[(valid.task == task) & valid.metric.map(lambda name: (baseline_metric(name) or ("", ""))[1] == metric)]
    if rows.empty:
        return pd.DataFrame(columns=["baseline", "distance", "value"])
    rows = _with_distance(rows.assign(baseline=names[rows.index]), data)
    return rows.groupby(["baseline", "distance"], as_index=False).value.mean()


@figure("task_metric_vs_distance", "Task metric against dependency distance", "accuracy", TASK_METRICS,
        "Each encoder's task metric against the dependency distance (mean over seeds, min–max shaded); "
        "the dashed black line is the chance or trivial baseline.")
def task_metric_vs_distance(data: ReportData) -> Drawing | None:
    rows = _task_rows(data)
    if rows.empty:
        return None
    rows = _with_variant(rows, ["task", "metric"])
    panels = list(rows.groupby(["task", "metric"], sort=True))
    fig, axes = _grid(len(panels), 3)
    colors = _colors(rows.series)
    for ax, ((task, metric), panel) in zip(axes, panels):
        for (series, family), group in panel.groupby(["series", "family"], sort=True):
            _line(ax, _over_seeds(group, ["distance"]), "distance", series, colors[series], *_style(family), "low", "high")
        baselines = _baselines(data, task, metric)
        for (name, group), style in zip(baselines.groupby("baseline", sort=True), BASELINE_STYLES):
            _line(ax, group, "distance", f"baseline: {name.replace('_', ' ')}", "black", style, "")
        log_axis(ax, "x", panel.distance)
        ax.set(title=task, xlabel="dependency distance (steps)", ylabel=axis_label(metric, panel.unit.iloc[0]))
    _legend(fig, axes)
    return Drawing(fig)


@figure("task_metric_vs_throughput", "Task metric against training throughput", "accuracy", ("train_throughput",),
        "What each encoder buys for its time: final task metric (mean over seeds) against training "
        "throughput, one point per encoder and dependency distance; log x axis.")
def task_metric_vs_throughput(data: ReportData) -> Drawing | None:
    valid = data.valid
    throughput = valid[valid.metric == "train_throughput"]
    identity = list(IDENTITY_FIELDS)
    paired = _task_rows(data).merge(throughput[identity + ["value"]].rename(columns={"value": "throughput"}), on=identity)
    if paired.empty:
        return None
    paired = _with_variant(paired, ["task", "metric"])
    panels = list(paired.groupby(["task", "metric"], sort=True))
    fig, axes = _grid(len(panels), 3)
    colors = _colors(paired.series)
    for ax, ((task, metric), panel) in zip(axes, panels):
        points = panel.groupby(["series", "family", "distance"], as_index=False)[["value", "throughput"]].mean()
        for (series, family), group in points.groupby(["series", "family"], sort=True):
            ax.scatter(group.throughput, group.value, color=colors[series], marker=_style(family)[1], label=series)
        log_axis(ax, "x", points.throughput, always=True, ticks_at_values=False)
        ax.set(title=task, xlabel=axis_label("train_throughput"), ylabel=axis_label(metric, panel.unit.iloc[0]))
    _legend(fig, axes)
    return Drawing(fig)


@figure("training_loss", "Training loss curves", "accuracy", ("train_loss",),
        "Training loss against step per encoder (mean over seeds, min–max shaded), a panel per task "
        "at its longest dependency distance.")
def training_loss(data: ReportData) -> Drawing | None:
    rows = _with_distance(_rows_with_param(data, ("train_loss",), STEP_PARAM, "step"), data)
    if rows.empty:
        return None
    rows = _with_variant(rows[rows.distance == rows.groupby("task").distance.transform("max")], ["task"])
    panels = list(rows.groupby("task", sort=True))
    fig, axes = _grid(len(panels), 3)
    colors = _colors(rows.series)
    for ax, (task, panel) in zip(axes, panels):
        for (series, family), group in panel.groupby(["series", "family"], sort=True):
            style, _ = _style(family)
            _line(ax, _over_seeds(group, ["step"]), "step", series, colors[series], style, "", "low", "high")
        log_axis(ax, "y", panel.value[panel.value > 0])
        ax.set(title=_panel_title(task, f"distance {panel.distance.iloc[0]:g}"), xlabel="training step",
               ylabel=axis_label("train_loss", panel.unit.iloc[0]))
    _legend(fig, axes)
    return Drawing(fig)


# ---------------------------------------------------------------- gradients and numerics over time


@figure("gradient_norm_vs_distance", "Gradient norm against distance", "gradient", GRADIENT_METRICS,
        "Norm of the loss gradient with respect to the state k steps before the end, against the "
        "distance T − k (log y; mean over seeds, min–max shaded): solid after training, dashed before.")
def gradient_norm_vs_distance(data: ReportData) -> Drawing | None:
    rows = _rows_with_param(data, GRADIENT_METRICS, GRADIENT_DISTANCE_PARAM, "distance", positive=True)
    if rows.empty:
        return None
    rows = _with_series(rows.assign(trained=param(rows, TRAINED_PARAM)))
    panels = list(rows.groupby(["task", "metric"], sort=True))
    fig, axes = _grid(len(panels), 2)
    colors = _colors(rows.series)
    for ax, ((task, metric), panel) in zip(axes, panels):
        for (series, trained), group in panel.groupby(["series", panel.trained.map(repr)], sort=True):
            style = {"True": "-", "False": "--"}.get(trained, ":")
            state = {"True": "trained", "False": "untrained"}.get(trained, "training unknown")
            _line(ax, _over_seeds(group, ["distance"]), "distance", f"{series}, {state}", colors[series], style, "o", "low", "high")
        log_axis(ax, "y", panel.value, always=True)
        log_axis(ax, "x", panel.distance)
        ax.set(title=_panel_title(task, metric), xlabel="distance T − k (steps)", ylabel=axis_label(metric))
    _legend(fig, axes)
    return Drawing(fig)


@figure("error_vs_time_step", "Numerical error against time step", "numerics", ERROR_METRICS,
        "Error of each backend's output against the float64 reference at each time step t (log y), a "
        "panel per family and dtype; line style: statistic over the batch and features.")
def error_vs_time_step(data: ReportData) -> Drawing | None:
    rows = _rows_with_param(data, ERROR_METRICS, TIME_STEP_PARAM, "t", positive=True)
    if rows.empty:
        return None
    panels = list(rows.groupby(["family", "dtype", "device", "mode"], sort=True))
    fig, axes = _grid(len(panels), 3)
    colors = _colors(rows.backend)
    styles = dict(zip(ERROR_METRICS, ("-", "--", ":")))
    for ax, ((family, dtype, device, mode), panel) in zip(axes, panels):
        for (backend, metric), group in panel.groupby(["backend", "metric"], sort=True):
            _line(ax, _over_seeds(group, ["t"]), "t", "_nolegend_", colors[backend], styles[metric], "")
        log_axis(ax, "y", panel.value, always=True)
        ax.set(title=_panel_title(family, dtype, device, mode), xlabel="time step t", ylabel="|error| (unitless)")
    handles = [Line2D([], [], color=color, label=backend) for backend, color in colors.items()]
    handles += [Line2D([], [], color="gray", linestyle=style, label=metric) for metric, style in styles.items()]
    fig.legend(handles=handles, loc="outside right upper", frameon=False)
    return Drawing(fig)
