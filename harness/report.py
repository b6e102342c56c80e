"""Markdown report of a results directory: a pure function of ``results.csv`` + ``env.json``.

Sections: the environment of every run; speed (median latency per call and per time step, the
interquartile range, and speedup over ``torch.nn``); peak memory; numerical error against the float64
reference; and every row that is not ``ok`` with its reason. Only ``ok`` rows enter the tables, so a
configuration that failed its correctness check never shows a speed. A measurement repeated by a
resume shows its latest attempt only.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from rnnbench.harness.results import latest_attempts, read_results

SHAPE = ["seq_len", "batch", "input_size", "hidden_size"]
SHAPE_HEADERS = {"seq_len": "T", "batch": "B", "input_size": "I", "hidden_size": "H"}
#: the speedup baseline of results whose env.json predates recording it
DEFAULT_SPEEDUP_BASELINE = "torch"


def write_report(directory: str | Path) -> Path:
    directory = Path(directory)
    text = render_report(directory)
    path = directory / "report.md"
    path.write_text(text)
    return path


def render_report(directory: str | Path) -> str:
    directory = Path(directory)
    frame = latest_attempts(read_results(directory))
    runs = _runs(directory)
    parts = [f"# rnnbench report: {', '.join(sorted({r.get('suite', '?') for r in runs})) or directory.name}", ""]
    parts += _environment_section(runs)
    ok = frame[frame.status == "ok"]
    baseline = next((run["speedup_baseline"] for run in runs if run.get("speedup_baseline")), DEFAULT_SPEEDUP_BASELINE)
    parts += _speed_section(ok[(ok.experiment == "speed")], baseline)
    parts += _memory_section(ok[(ok.experiment == "memory") & (ok.metric == "peak_memory")])
    parts += _numerics_section(frame[frame.experiment == "numerics"])
    parts += _problems_section(frame[frame.status != "ok"])
    return "\n".join(parts).rstrip() + "\n"


def _runs(directory: Path) -> list[dict]:
    path = directory / "env.json"
    return json.loads(path.read_text())["runs"] if path.exists() else []


def _environment_section(runs: list[dict]) -> list[str]:
    lines = ["## Environment", ""]
    if not runs:
        return lines + ["No env.json: the environment of these results is unknown.", ""]
    if len(runs) > 1:
        lines += [f"{len(runs)} runs wrote to this directory (resumed); numbers from different runs are separate measurements.", ""]
    table = pd.DataFrame([{
        "run": run["run_id"],
        "device": run["device"] if not run.get("gpu") else f"{run['device']} ({run['gpu']['name']})",
        "CPU": f"{run['cpu_model']} ({run['torch_threads']} torch threads)",
        "torch": run["torch"], "triton": run.get("triton") or "-", "numpy": run["numpy"],
        "CUDA/cuDNN": f"{run.get('cuda') or '-'}/{run.get('cudnn') or '-'}",
        "git": f"{(run.get('git_sha') or '?')[:10]}{' (dirty)' if run.get('git_dirty') else ''}",
    } for run in runs])
    return lines + [markdown_table(table), ""]


def _speed_section(speed: pd.DataFrame, baseline: str) -> list[str]:
    lines = ["## Speed", ""]
    if speed.empty:
        return lines + ["No speed results.", ""]
    lines += [
        "Median latency of one call in ms with its interquartile range in brackets, then µs per time step "
        "(median / T). `fwd` is an inference forward pass; `fwd_bwd` adds the backward pass for upstream "
        "gradients on the output and final states (all input, state and weight gradients). Both include the "
        f"input projection. Speedup is `{baseline}` median / backend median from the same run.",
        "",
    ]
    for (metric, family, device, dtype, mode), group in speed.groupby(["metric", "family", "device", "dtype", "mode"], sort=True):
        lines += [f"### {family} {mode}, {dtype} on {device} ({metric})", ""]
        lines += [markdown_table(_speed_table(group, baseline)), ""]
    return lines


def _speed_table(group: pd.DataFrame, baseline_backend: str) -> pd.DataFrame:
    rows = []
    for shape, by_shape in group.groupby(SHAPE, sort=True):
        row = {SHAPE_HEADERS[key]: value for key, value in zip(SHAPE, shape)}
        medians = {}
        for record in by_shape.itertuples():
            medians[(record.backend, record.run_id)] = record.value
            per_step_us = record.value * 1e3 / record.seq_len
            row[record.backend] = f"{record.value:.4g} [{record.q25:.4g}–{record.q75:.4g}] ({per_step_us:.3g} µs/step)"
        for record in by_shape.itertuples():
            baseline = medians.get((baseline_backend, record.run_id))
            if baseline and record.backend != baseline_backend:
                row[f"{record.backend} speedup"] = f"{baseline / record.value:.2f}x"
        rows.append(row)
    return pd.DataFrame(rows).fillna("-")


def _memory_section(memory: pd.DataFrame) -> list[str]:
    lines = ["## Peak memory", ""]
    if memory.empty:
        return lines + ["No memory results.", ""]
    lines += ["Peak memory of one call in MiB beyond what was allocated before it (outputs and gradients included; "
              "CPU: incremental peak RSS of a fresh process; CUDA: torch.cuda.max_memory_allocated).", ""]
    for (family, device, dtype, mode), group in memory.groupby(["family", "device", "dtype", "mode"], sort=True):
        table = group.pivot_table(index=SHAPE, columns="backend", values="value", aggfunc="first")
        table = table.map(lambda v: f"{v:.3g}" if pd.notna(v) else "-").reset_index().rename(columns=SHAPE_HEADERS)
        lines += [f"### {family} {mode}, {dtype} on {device}", "", markdown_table(table), ""]
    return lines


def _numerics_section(numerics: pd.DataFrame) -> list[str]:
    lines = ["## Numerical error", ""]
    measured = numerics[numerics.status.isin(["ok", "incorrect"])]
    if measured.empty:
        return lines + ["No numerics results.", ""]
    lines += ["Largest max|backend − reference| over all shapes, outputs and (for fwd_bwd) every gradient, "
              "against the float64 reference; `passed` counts shapes within the dtype's tolerance.", ""]
    summary = measured.groupby(["family", "backend", "device", "dtype", "mode"], sort=True).agg(
        max_abs_err=("value", "max"),
        passed=("status", lambda s: f"{(s == 'ok').sum()}/{len(s)}"),
    ).reset_index()
    summary["max_abs_err"] = summary["max_abs_err"].map(lambda v: f"{v:.3g}")
    return lines + [markdown_table(summary), ""]


def _problems_section(problems: pd.DataFrame) -> list[str]:
    lines = ["## Not measured", ""]
    if problems.empty:
        return lines + ["Every case produced a number.", ""]
    table = problems.groupby(["status", "experiment", "backend", "family", "device", "dtype", "note"], sort=True).size()
    table = table.rename("rows").reset_index()[["status", "experiment", "backend", "family", "device", "dtype", "rows", "note"]]
    return lines + [markdown_table(table), ""]


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (``|`` in cells escaped)."""
    columns = [str(column) for column in frame.columns]
    cells = [[str(value).replace("|", "\\|").replace("\n", " ") for value in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)
