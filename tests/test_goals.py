"""Issue 8's goals judged on a results directory (:mod:`rnnbench.harness.report.goals`): a synthetic
run with every goal shape, one where shapes are missing, rows that must not count, and the
``rnnbench goals`` command on it."""

import csv
import math


from rnnbench.harness.cli import main
from rnnbench.harness.report import load
from rnnbench.harness.report.goals import GOAL_BATCHES, GOAL_HIDDEN, goal_rows, shape_rows
from rnnbench.harness.results import COLUMNS


def _write(directory, rows):
    directory.mkdir(exist_ok=True)
    with open(directory / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({column: row.get(column, "") for column in COLUMNS})
    return directory


def _row(backend, dtype, hidden, batch, mode, metric, value, status="ok"):
    experiment = "memory" if metric == "peak_memory" else "speed"
    return dict(run_id="r", experiment=experiment, task="random", backend=backend, family="lstm", device="cuda",
                dtype=dtype, batch=batch, seq_len=1024, input_size=hidden, hidden_size=hidden, mode=mode, seed=0,
                params="", metric=metric, value=value, unit="MiB" if metric == "peak_memory" else "ms", q25=value,
                q75=value, n=10, status=status, note="", host="h", device_name="GPU X")


def _run(forward=3.0, training=1.5, memory=0.9, anchor_ms=2.0, skip=()):
    """torch.nn at 6 ms a call (fwd), 12 (fwd_bwd), 100 MiB; Triton ``forward``/``training`` times
    faster and ``memory`` times the peak, at every goal shape but ``skip``; the anchor's Triton forward
    at ``anchor_ms``."""
    rows = []
    for hidden in GOAL_HIDDEN:
        for batch in GOAL_BATCHES:
            if (hidden, batch) in skip:
                continue
            ours = anchor_ms if (hidden, batch) == (768, 16) else 6.0 / forward
            rows += [_row("torch", "bfloat16", hidden, batch, "fwd", "latency_cudagraph", 6.0),
                     _row("triton", "bfloat16", hidden, batch, "fwd", "latency_cudagraph", ours),
                     _row("torch", "bfloat16", hidden, batch, "fwd_bwd", "latency_cudagraph", 12.0),
                     _row("triton", "bfloat16", hidden, batch, "fwd_bwd", "latency_cudagraph", 12.0 / training),
                     _row("torch", "bfloat16", hidden, batch, "fwd_bwd", "peak_memory", 100.0),
                     _row("triton", "bfloat16", hidden, batch, "fwd_bwd", "peak_memory", 100.0 * memory)]
    return rows


def _statuses(directory):
    rows = goal_rows(load(directory))
    return dict(zip(rows.goal, rows.status))


def test_every_goal_is_judged_on_every_goal_shape(tmp_path):
    """The anchor at 2.0 ms a call is 1.95 µs a step (met); the forward 3x faster everywhere but the
    anchor (6 / 2.0 = 3x too); training 1.5x; memory 0.9; fp16 not measured."""
    statuses = _statuses(_write(tmp_path / "run", _run()))
    assert statuses == {
        "bf16 forward no slower than torch.nn at every shape": "met",
        "bf16 forward, geometric mean speedup": "met",
        "bf16 forward at H=768, B=16": "met",
        "bf16 forward against cuDNN's fp16 forward, geometric mean (no goal: the fair kernel comparison)":
            "not measured",
        "bf16 forward+backward, geometric mean speedup": "met",
        "fp16 forward+backward against cuDNN's fp16, geometric mean": "not measured",
        "bf16 training peak memory no higher than torch.nn's": "met",
    }
    rows = goal_rows(load(tmp_path / "run")).set_index("goal")
    assert rows.loc["bf16 forward at H=768, B=16", "measured"] == f"{2.0 * 1000 / 1024:.2f} µs/step"
    assert rows.loc["bf16 forward, geometric mean speedup", "measured"] == "3.00x"


def test_a_goal_missed_or_half_measured_is_never_met(tmp_path):
    """One shape slower than torch.nn (and a slow anchor), a geometric mean below 2x, training below
    1.2x, one shape's peak above torch.nn's; and a run missing shapes is incomplete."""
    rows = _run(forward=1.9, training=1.1, memory=0.9, anchor_ms=7.0)
    rows = [dict(row, value=120.0) if row["backend"] == "triton" and row["metric"] == "peak_memory"
            and row["hidden_size"] == 64 and row["batch"] == 64 else row for row in rows]
    statuses = _statuses(_write(tmp_path / "missed", rows))
    assert statuses["bf16 forward no slower than torch.nn at every shape"] == "not met"  # the anchor: 6/7
    assert statuses["bf16 forward, geometric mean speedup"] == "not met"
    assert statuses["bf16 forward at H=768, B=16"] == "not met"
    assert statuses["bf16 forward+backward, geometric mean speedup"] == "not met"
    assert statuses["bf16 training peak memory no higher than torch.nn's"] == "not met"
    partial = _statuses(_write(tmp_path / "partial", _run(skip={(64, 1), (1024, 64)})))
    assert partial["bf16 forward, geometric mean speedup"] == "incomplete (16 of 18 shapes)"
    assert partial["bf16 forward at H=768, B=16"] == "met"


def test_rows_that_failed_their_check_or_carry_options_do_not_count(tmp_path):
    """An incorrect Triton row (its correctness check failed) and a row with options (bidirectional)
    leave their shape unmeasured; the per-shape table shows '-' there."""
    rows = _run()
    rows = [dict(row, status="incorrect") if row["backend"] == "triton" and row["hidden_size"] == 64
            and row["batch"] == 1 and row["mode"] == "fwd" else row for row in rows]
    rows.append(dict(_row("triton", "bfloat16", 64, 1, "fwd", "latency_cudagraph", 0.1), params='{"bidirectional": true}'))
    directory = _write(tmp_path / "run", rows)
    assert _statuses(directory)["bf16 forward, geometric mean speedup"] == "incomplete (17 of 18 shapes)"
    table = shape_rows(load(directory)).set_index(["H", "B"])
    assert table.loc[(64, 1), "fwd speedup"] == "-" and table.loc[(64, 16), "fwd speedup"] == "3.00"
    assert math.isclose(float(table.loc[(64, 16), "torch fwd µs/step"]), 6.0 * 1000 / 1024, abs_tol=0.01)


def test_the_goals_command_prints_or_writes_the_markdown_and_refuses_an_empty_run(tmp_path, capsys):
    directory = _write(tmp_path / "run", _run())
    assert main(["goals", str(directory)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("# Issue 8's goals: `triton` against torch.nn") and "| 768 | 16 |" in printed
    assert main(["goals", str(directory), "--out", str(tmp_path / "goals.md")]) == 0
    assert (tmp_path / "goals.md").read_text() == printed
    _write(tmp_path / "empty", [])
    assert main(["goals", str(tmp_path / "empty")]) != 0
    assert "no valid row" in capsys.readouterr().err


def test_the_fair_forward_comparison_is_reported_against_cudnns_fp16_without_a_goal(tmp_path):
    """cuDNN's fp16 forward at 2 ms a call where measured (three shapes): the bf16 Triton forward
    (2 ms at others, 2.0 at the anchor) against it, informational."""
    rows = _run() + [_row("torch", "float16", hidden, 16, "fwd", "latency_cudagraph", 2.0) for hidden in (64, 128, 768)]
    table = goal_rows(load(_write(tmp_path / "run", rows))).set_index("goal")
    fair = table.loc["bf16 forward against cuDNN's fp16 forward, geometric mean (no goal: the fair kernel comparison)"]
    assert (fair.status, fair.shapes, fair.measured) == ("informational", 3, "1.00x, no slower at 3 of 3 shapes")

