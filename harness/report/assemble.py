"""The report of one results directory as a :class:`~rnnbench.harness.report.document.Document`.

Order: a summary first (what the directory holds, what is missing or was dropped or flagged, the
fastest backend per configuration, geometric-mean speedups), then a section per kind of result
(speed, memory, correctness and numerical error, tasks and training, gradients) with its figures and
tables, then every case that produced no number with its reason, flagged values, and the
environment. A section whose results are absent says so; a figure whose rows are absent is listed
as not drawn, with the metric it needs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable

import pandas as pd

from rnnbench.harness.report import tables
from rnnbench.harness.report.document import Block, Code, Document, Figure, Heading, Inline, Table, bullets, para
from rnnbench.harness.report.figures import ERROR_METRICS, FIGURES, GRADIENT_METRICS, draw
from rnnbench.harness.report.load import ReportData
from rnnbench.harness.report.metrics import TASK_METRICS

#: metrics of the training side of the accuracy experiment
TRAINING_METRICS = ("train_throughput", "train_wall_time", "train_loss")


@dataclass(frozen=True)
class Section:
    key: str
    heading: str
    #: the metrics whose rows (any status) mean this section's experiment is in the results
    metrics: tuple[str, ...]
    description: str
    #: what the section's numbers are (a paragraph before its figures)
    method: tuple[Inline, ...]
    #: its tables (after the figures)
    tables: Callable[[ReportData], list[Block]]


def _titled(tables_of: Callable[[ReportData], list[tuple[str, pd.DataFrame]]], empty: str):
    def blocks(data: ReportData) -> list[Block]:
        found = [block for title, table in tables_of(data) for block in (Heading(3, title), Table(table))]
        return found or [para(empty)]

    return blocks


def _numerics_tables(data: ReportData) -> list[Block]:
    blocks: list[Block] = []
    summary = tables.numerics_summary(data)
    if not summary.empty:
        blocks += [Heading(3, "Correctness checks per backend"), Table(summary)]
    failed = tables.failed_checks(data)
    return blocks + [Heading(3, "Failed correctness checks"),
                     Table(failed) if not failed.empty else para("Every correctness check passed.")]


def _summary_table(metrics: tuple[str, ...], by: list[str], empty: str):
    def blocks(data: ReportData) -> list[Block]:
        table = tables.metric_summary(data, metrics, by)
        return [Table(table)] if not table.empty else [para(empty)]

    return blocks


SECTIONS = (
    Section("speed", "Speed", ("latency", "latency_cudagraph"), "speed experiment", (
        "Median latency of one call with its interquartile range, then µs per time step (median / T). "
        "fwd is an inference forward pass; fwd_bwd adds the backward pass for upstream gradients on the "
        "output and final states (all input, state and weight gradients). Both include the input "
        "projection. A speed is only measured after the case passed its correctness check. Speedup is "
        "the baseline's median / the backend's median for the same case.",),
        _titled(tables.speed_tables, "No valid speed rows.")),
    Section("memory", "Peak memory", ("peak_memory",), "memory experiment", (
        "Peak memory of one call in MiB beyond what was allocated before it (outputs and gradients "
        "included; CPU: incremental peak RSS of a fresh process; CUDA: torch.cuda.max_memory_allocated).",),
        _titled(tables.memory_tables, "No valid peak_memory rows.")),
    Section("numerics", "Correctness and numerical error", ("max_abs_err", *ERROR_METRICS),
            "numerics experiment and correctness gate", (
        "max |backend − reference| over outputs and (fwd_bwd) every gradient, against the float64 "
        "reference; a shape passes when every tensor is within its dtype's tolerance. Each shape's check "
        "is counted once, however many experiments ran it.",), _numerics_tables),
    Section("accuracy", "Tasks and training", (*TASK_METRICS, *TRAINING_METRICS),
            "accuracy experiment (task metrics and training)", (
        "Task metrics after training, per encoder, task and dependency distance; the chance or trivial "
        "baseline is backend ", Code("baseline"), " or metric ", Code("chance_<metric>"), "."),
        _summary_table((*TASK_METRICS, "train_throughput", "train_wall_time"), ["task", "backend", "family", "seq_len", "params"],
                       "No valid task or training rows.")),
    Section("gradient", "Gradients", GRADIENT_METRICS, "gradient experiment", (
        "Norm of the gradient of the loss with respect to the hidden (and cell) state k steps before "
        "the end, by distance T − k, before and after training.",),
        _summary_table(GRADIENT_METRICS, ["task", "backend", "family", "params"], "No valid gradient rows.")),
)


def build_report(data: ReportData) -> Document:
    title = f"rnnbench report: {', '.join(data.suites) or data.directory.name}"
    document = Document(title)
    drawn, not_drawn = _figures(data)
    document.blocks += _summary(data, not_drawn)
    for section in SECTIONS:
        document.blocks += _section(data, section, drawn.get(section.key, []))
    document.blocks += _tail(data)
    return document


def _figures(data: ReportData) -> tuple[dict[str, list[Figure]], list[str]]:
    """The figures this data has, by section, and a line for every figure that is not drawn."""
    valid_metrics = set(data.valid.metric)
    drawn: dict[str, list[Figure]] = {}
    not_drawn = []
    for spec in FIGURES:
        try:
            result = draw(spec, data) if valid_metrics & set(spec.needs) else None
        except Exception as error:  # one figure that cannot cope with odd rows must not cost the whole report
            not_drawn.append(f"{spec.name} (failed: {type(error).__name__}: {error})")
            continue
        if result is None:
            needs = "rows present, nothing to pair or draw" if valid_metrics & set(spec.needs) else \
                f"needs {' or '.join(spec.needs)}"
            not_drawn.append(f"{spec.name} ({needs})")
            continue
        drawing, png = result
        caption = f"{spec.caption} {drawing.note}".strip()
        drawn.setdefault(spec.section, []).append(Figure(spec.name, spec.title, caption, png))
    return drawn, not_drawn


def _summary(data: ReportData, not_drawn: list[str]) -> list:
    frame = data.frame
    statuses = Counter(frame.status)
    counts = ", ".join(f"{count} {status}" for status, count in sorted(statuses.items())) or "no rows"
    devices = ", ".join(sorted(data.device_names())) or "unknown devices"
    blocks = [para(f"{len(frame)} result rows ({counts}) from {len(data.runs)} run(s) on {devices}. "
                   "Everything below is computed from results.csv and env.json alone."),
              Heading(2, "Summary")]
    notes = []
    if frame.empty:
        notes.append("results.csv has no rows: nothing was measured.")
    elif not statuses.get("ok"):
        notes.append("No case produced a number: every row is " + " or ".join(sorted(statuses)) + " (reasons under Not measured).")
    if not data.env_found:
        notes.append("No env.json: the environment of these results is unknown.")
    if data.speedup_baseline is None and not tables.speed_rows(data).empty:
        notes.append("env.json declares no speedup baseline (speedup_baseline), so no speedups are shown.")
    if data.dropped:
        shown = "; ".join(data.dropped[:5])
        notes.append(f"Dropped {len(data.dropped)} malformed row(s) of results.csv: {shown}"
                     f"{' ...' if len(data.dropped) > 5 else ''}.")
    if data.superseded:
        notes.append(f"{data.superseded} row(s) repeated the key (case and metric) of a later row and were replaced by it "
                     "(a correctness check shared by the speed and memory cases of one shape, or a re-measured case).")
    if len(data.flagged):
        notes.append(f"{len(data.flagged)} value(s) are flagged (zero, negative, NaN or infinite where the metric "
                     "does not allow it) and left out of every table, figure and ratio; see Flagged values.")
    absent = [section for section in SECTIONS if not set(section.metrics) & set(frame.metric)]
    if absent:
        notes.append("Not in these results: " + "; ".join(f"{s.description} (metrics {', '.join(s.metrics)})" for s in absent) + ".")
    if not_drawn:
        notes.append("Figures not drawn: " + "; ".join(not_drawn) + ".")
    blocks.append(bullets(*notes) if notes else para("Every experiment is present and every row is valid."))
    fastest, speedups = tables.headline_fastest(data), tables.headline_speedups(data)
    if not fastest.empty:
        blocks += [Heading(3, "Fastest backend per configuration"), Table(fastest)]
    if not speedups.empty:
        blocks += [Heading(3, f"Geometric-mean speedup over {data.speedup_baseline}"),
                   para("Geometric mean over the shapes where both the backend and the baseline have a valid "
                        "median; the range and the number of shapes it covers beside it."),
                   Table(speedups)]
    memory = tables.headline_memory(data)
    if not memory.empty:
        blocks += [Heading(3, f"Peak memory against {data.speedup_baseline}"),
                   para("Each backend's peak memory of one call over the baseline's at the same shape: geometric "
                        "mean, range, and the shapes where it needs no more."),
                   Table(memory)]
    return blocks


def _section(data: ReportData, section: Section, figures: list[Figure]) -> list[Block]:
    blocks: list[Block] = [Heading(2, section.heading)]
    if not set(section.metrics) & set(data.frame.metric):
        return blocks + [para(f"No {section.description} results.")]
    return blocks + [para(*section.method), *figures, *section.tables(data)]


def _tail(data: ReportData) -> list:
    blocks = [Heading(2, "Not measured")]
    missing = tables.not_measured(data)
    blocks.append(Table(missing) if not missing.empty else para("Every case produced a number."))
    flagged = tables.flagged_values(data)
    if not flagged.empty:
        blocks += [Heading(2, "Flagged values"),
                   para("Values that break their metric's rule (see rnnbench.harness.report.metrics); they are "
                        "not drawn, ranked or divided by."), Table(flagged)]
    blocks.append(Heading(2, "Environment"))
    environment = tables.environment(data)
    blocks.append(Table(environment) if not environment.empty else para("No env.json: the environment is unknown."))
    return blocks
