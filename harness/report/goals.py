"""Issue 8's goals for the Triton LSTM, judged on one results directory (one run, one GPU).

The goals (H100-class GPU, T = 1024, the LSTM without options):

* **forward**: the Triton LSTM's bf16 forward no slower than torch.nn's (cuDNN) bf16 at every batch
  of :data:`GOAL_BATCHES` and hidden size of :data:`GOAL_HIDDEN`, and faster by a geometric mean of
  at least :data:`FORWARD_GEOMEAN`;
* **anchor**: at most :data:`ANCHOR_US_PER_STEP` µs a step at H=768, B=16 (bf16 forward; the step of
  cuDNN's fp16 persistent kernel on an H100);
* **training**: forward + backward faster than torch.nn's by a geometric mean of at least
  :data:`TRAINING_GEOMEAN` over the same shapes (bf16), and, as the fair kernel-against-kernel
  comparison, the same against cuDNN's fp16 where the run measured fp16 (torch.nn has no fast bf16
  path: the bf16 figure is what a bf16 user of torch.nn gets);
* **memory**: the training call's peak memory no higher than torch.nn's at every shape;
* and, with no goal of its own, the bf16 forward against cuDNN's fp16 forward (its persistent
  kernel, the anchor's 1.96 µs): the fair kernel-against-kernel comparison of the forward.

Only valid rows count (:attr:`rnnbench.harness.report.load.ReportData.valid`: ``ok`` rows, so only
cases whose correctness check passed, whose value breaks no rule), timed as ``timing`` says
(``latency_cudagraph`` by default: CUDA-graph replay, no host overhead). A speedup is torch.nn's
median over the Triton backend's, both from the same run. A goal whose shapes were not all
measured is *incomplete*, with what was measured, never *met*.
"""

from __future__ import annotations

import math

import pandas as pd

from rnnbench.harness.report.load import ReportData

GOAL_BATCHES = (1, 16, 64)
GOAL_HIDDEN = (64, 128, 256, 512, 768, 1024)
GOAL_STEPS = 1024
ANCHOR = (768, 16)
ANCHOR_US_PER_STEP = 1.96
FORWARD_GEOMEAN = 2.0
TRAINING_GEOMEAN = 1.2
#: the comparison backend: torch.nn (cuDNN on CUDA)
BASELINE = "torch"


def _medians(data: ReportData, backend: str, metric: str, dtype: str, mode: str) -> pd.Series:
    """The backend's values of ``metric`` by ``(hidden_size, batch)`` at the goals' plain LSTM shapes."""
    frame = data.valid
    rows = frame[(frame.backend == backend) & (frame.metric == metric) & (frame.family == "lstm")
                 & (frame.dtype == dtype) & (frame["mode"] == mode) & (frame.seq_len == GOAL_STEPS)
                 & frame.params.fillna("").eq("") & frame.hidden_size.isin(GOAL_HIDDEN)
                 & frame.batch.isin(GOAL_BATCHES)]
    return rows.groupby(["hidden_size", "batch"]).value.median()


def _ratios(data: ReportData, backend: str, metric: str, dtype: str, mode: str,
            baseline_dtype: str | None = None) -> pd.Series:
    """torch.nn's value (in ``baseline_dtype``, by default ``dtype``) over the backend's, by shape,
    where both were measured."""
    baseline = _medians(data, BASELINE, metric, baseline_dtype or dtype, mode)
    ours = _medians(data, backend, metric, dtype, mode)
    shared = baseline.index.intersection(ours.index)
    return (baseline[shared] / ours[shared]).sort_index()


def _geomean(values: pd.Series) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if len(values) else math.nan


def _status(met: bool, measured: int, wanted: int) -> str:
    if measured == 0:
        return "not measured"
    if measured < wanted:
        return f"incomplete ({measured} of {wanted} shapes)" + ("" if met else ": not met")
    return "met" if met else "not met"


def goal_rows(data: ReportData, backend: str = "triton", timing: str = "latency_cudagraph") -> pd.DataFrame:
    """One row per goal: ``goal, target, measured, shapes, status``."""
    wanted = len(GOAL_BATCHES) * len(GOAL_HIDDEN)
    rows = []
    forward = _ratios(data, backend, timing, "bfloat16", "fwd")
    slowest = forward.idxmin() if len(forward) else None
    rows.append(("bf16 forward no slower than torch.nn at every shape", "speedup ≥ 1 everywhere",
                 f"slowest {forward.min():.2f}x at H={slowest[0]}, B={slowest[1]}" if slowest else "-",
                 len(forward), _status(bool(len(forward)) and forward.min() >= 1, len(forward), wanted)))
    mean = _geomean(forward)
    rows.append(("bf16 forward, geometric mean speedup", f"≥ {FORWARD_GEOMEAN:g}x",
                 f"{mean:.2f}x" if len(forward) else "-", len(forward),
                 _status(mean >= FORWARD_GEOMEAN, len(forward), wanted)))
    anchor = _medians(data, backend, timing, "bfloat16", "fwd")
    step = anchor.get(ANCHOR, math.nan) * 1000 / GOAL_STEPS
    rows.append((f"bf16 forward at H={ANCHOR[0]}, B={ANCHOR[1]}", f"≤ {ANCHOR_US_PER_STEP} µs/step",
                 f"{step:.2f} µs/step" if not math.isnan(step) else "-", int(not math.isnan(step)),
                 _status(step <= ANCHOR_US_PER_STEP, int(not math.isnan(step)), 1)))
    fair = _ratios(data, backend, timing, "bfloat16", "fwd", baseline_dtype="float16")
    rows.append(("bf16 forward against cuDNN's fp16 forward, geometric mean (no goal: the fair kernel comparison)",
                 "-", f"{_geomean(fair):.2f}x, no slower at {(fair >= 1).sum()} of {len(fair)} shapes"
                 if len(fair) else "-",
                 len(fair), "informational" if len(fair) else "not measured"))
    training = _ratios(data, backend, timing, "bfloat16", "fwd_bwd")
    mean = _geomean(training)
    rows.append(("bf16 forward+backward, geometric mean speedup", f"≥ {TRAINING_GEOMEAN:g}x",
                 f"{mean:.2f}x (slowest {training.min():.2f}x)" if len(training) else "-", len(training),
                 _status(mean >= TRAINING_GEOMEAN, len(training), wanted)))
    fair = _ratios(data, backend, timing, "float16", "fwd_bwd")
    mean = _geomean(fair)
    rows.append(("fp16 forward+backward against cuDNN's fp16, geometric mean", f"≥ {TRAINING_GEOMEAN:g}x",
                 f"{mean:.2f}x" if len(fair) else "-", len(fair), _status(mean >= TRAINING_GEOMEAN, len(fair), wanted)))
    memory = 1 / _ratios(data, backend, "peak_memory", "bfloat16", "fwd_bwd")
    worst = memory.idxmax() if len(memory) else None
    rows.append(("bf16 training peak memory no higher than torch.nn's", "ratio ≤ 1 everywhere",
                 f"highest {memory.max():.2f}x at H={worst[0]}, B={worst[1]}" if worst else "-", len(memory),
                 _status(bool(len(memory)) and memory.max() <= 1, len(memory), wanted)))
    return pd.DataFrame(rows, columns=["goal", "target", "measured", "shapes", "status"])


def shape_rows(data: ReportData, backend: str = "triton", timing: str = "latency_cudagraph") -> pd.DataFrame:
    """Per goal shape: µs per step of torch.nn and the backend (bf16 forward, forward+backward), the
    speedups, and the training peak's ratio (the backend's over torch.nn's); '-' where not measured."""
    columns = {}
    for mode in ("fwd", "fwd_bwd"):
        for name, source in ((BASELINE, BASELINE), ("triton", backend)):
            columns[f"{name} {mode} µs/step"] = _medians(data, source, timing, "bfloat16", mode) * 1000 / GOAL_STEPS
        columns[f"{mode} speedup"] = _ratios(data, backend, timing, "bfloat16", mode)
    columns["training memory ratio"] = 1 / _ratios(data, backend, "peak_memory", "bfloat16", "fwd_bwd")
    frame = pd.DataFrame(columns).reindex(pd.MultiIndex.from_product([GOAL_HIDDEN, GOAL_BATCHES],
                                                                      names=["H", "B"]))
    return frame.reset_index().map(lambda v: "-" if isinstance(v, float) and math.isnan(v) else
                                   (f"{v:.2f}" if isinstance(v, float) else v))


def goals_markdown(data: ReportData, backend: str = "triton", timing: str = "latency_cudagraph") -> str:
    """The goals' table and the per-shape table as Markdown, with where they come from."""
    from rnnbench.harness.report.markdown import markdown_table

    devices = ", ".join(sorted(data.device_names())) or "an unnamed device"
    return "\n\n".join([
        f"# Issue 8's goals: `{backend}` against torch.nn, {data.directory}",
        f"One run on {devices}; `{timing}` medians, bf16 unless stated, T = {GOAL_STEPS}, valid rows only "
        f"(correctness passed). Goal shapes: B in {list(GOAL_BATCHES)} x H in {list(GOAL_HIDDEN)} "
        f"(rnnbench.harness.report.goals).",
        markdown_table(goal_rows(data, backend, timing)),
        "## Per shape",
        markdown_table(shape_rows(data, backend, timing)),
    ]) + "\n"
