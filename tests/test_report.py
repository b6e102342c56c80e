"""``rnnbench report`` and ``rnnbench compare`` on synthetic results directories (nothing is measured).

The complete fixture (tests/report_fixture.py) has every experiment, so every registered figure must
be drawn, written and embedded; the other tests feed partial, empty, malformed and hostile input.
"""

from __future__ import annotations

import base64
import csv
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from chromium import find_chromium, inspect_page
from report_fixture import (RUN_ID, make_case, make_row, env_run, hostile_rows, speed_and_memory_rows, write_fixture,
                            write_rows)
from rnnbench.harness.cli import main
from rnnbench.harness.report import load
from rnnbench.harness.report.costmodel import device_peaks, step_lower_bound_us
from rnnbench.harness.report.figures import FIGURES
from rnnbench.harness.results import COLUMNS, ResultRow, load_results, read_results

REPO_ROOT = Path(__file__).resolve().parent.parent
HOSTILE = "<img src=x onerror=alert(1)>"
#: Markdown, HTML-entity and matplotlib mathtext syntax in one name
MARKUP = r"$\frac{$ *x* _y_ [z](u) | &amp; `q`"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The complete fixture with a hostile suite, backend, task and note, rendered once."""
    directory = write_fixture(tmp_path_factory.mktemp("report") / "results", suite=HOSTILE,
                              extra=hostile_rows(HOSTILE) + hostile_rows(MARKUP))
    assert main(["report", str(directory)]) == 0
    return directory


def test_every_figure_is_drawn_written_and_embedded(rendered):
    markdown = (rendered / "report.md").read_text()
    html = (rendered / "report.html").read_text()
    assert FIGURES, "no figure is registered"
    for spec in FIGURES:
        png = (rendered / "figures" / f"{spec.name}.png").read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n"), spec.name
        assert f"(figures/{spec.name}.png)" in markdown, spec.name
        assert f"data:image/png;base64,{base64.b64encode(png).decode()}" in html, spec.name
    assert "Figures not drawn" not in markdown and "Not in these results" not in markdown


def test_report_sections_units_and_counts(rendered):
    markdown = (rendered / "report.md").read_text()
    for heading in ("## Summary", "### Fastest backend per configuration", "### Geometric-mean speedup over torch",
                    "## Speed", "## Peak memory", "## Correctness and numerical error", "## Tasks and training",
                    "## Gradients", "## Not measured", "## Environment"):
        assert heading in markdown, heading
    assert "µs/step" in markdown and "(MiB)" in markdown and "T (steps)" in markdown
    # the memory case's gate repeats the speed case's check at T=1024: each shape counted once
    data = load(rendered)
    gate = data.frame[(data.frame.experiment == "numerics") & (data.frame.metric == "max_abs_err")]
    assert not gate.duplicated(["backend", "family", "mode", "dtype", "batch", "seq_len", "hidden_size"]).any()
    assert "| torch lstm | cuda | bfloat16 | fwd |" in markdown and "| 12/12 |" in markdown  # 2 B x 2 H x 3 T
    assert "triton lstm | cuda | float16 | fwd_bwd | 0.5 | 0/1 |" in markdown  # the failed check
    assert "not in this fixture" in markdown and "graph capture failed" in markdown  # skipped and error reasons


def test_peak_memory_is_set_against_the_baseline(rendered):
    """The fixture's Triton needs 0.8x torch's peak and the eager loop 1.5x at each of the 4 shapes
    (2 B x 2 H) of each configuration; the headline says so per backend, the tables per shape."""
    markdown = (rendered / "report.md").read_text()
    assert "### Peak memory against torch" in markdown
    assert "| triton lstm | fwd_bwd | bfloat16 | cuda | 0.8 | 0.8–0.8 | 4/4 |" in markdown
    assert "| eager lstm | fwd | bfloat16 | cuda | 1.5 | 1.5–1.5 | 0/4 |" in markdown
    memory = markdown[markdown.index("\n## Peak memory"):markdown.index("\n## Correctness")]
    assert "triton / torch (×)" in memory and "eager / torch (×)" in memory and "torch / torch" not in memory
    row = next(line for line in memory.splitlines() if line.startswith("| 1024 | 16 |"))
    assert row.endswith("| 1.5 | 0.8 |"), row  # the ratios, eager's then triton's, after the MiB columns


def test_report_does_not_import_torch(tmp_path):
    # a small directory: every figure module is imported whatever is drawn
    write_rows(tmp_path, [make_row(make_case("speed", backend, "lstm", seq_len=t), "latency", t * 1e-3, "ms")
                          for backend in ("torch", "eager") for t in (64, 256)])
    code = ("import sys; from rnnbench.harness.report import write_report; from rnnbench.harness.report import compare; "
            "write_report(sys.argv[1]); assert 'torch' not in sys.modules, 'the report imported torch'")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_hostile_names_render_as_text(rendered):
    markdown = (rendered / "report.md").read_text()
    html = (rendered / "report.html").read_text()
    for text in (markdown, html):
        assert "<img src=x" not in text
        assert "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "<script" not in html and "onerror=" not in html.replace("&lt;img src=x onerror=alert(1)&gt;", "")
    assert "Content-Security-Policy" in html
    assert r"$\\frac\{$ \*x\* \_y\_ \[z\](u) \| &amp;amp; \`q\`" in markdown
    assert "$\\frac{$ *x* _y_ [z](u) | &amp;amp; `q`" in html


@pytest.mark.skipif(find_chromium() is None, reason="no Chromium on PATH (.ci/run installs Debian's chromium)")
def test_report_html_in_headless_chromium(rendered):
    page = inspect_page(find_chromium(), rendered / "report.html")
    assert len(page["images"]) == len(FIGURES)
    assert all(image["decoded"] and image["width"] > 100 and image["height"] > 100 for image in page["images"]), page["images"]
    assert page["scripts"] == 0 and page["handlers"] == 0 and page["script_events"] == []
    assert HOSTILE in page["text"] and MARKUP in page["text"]


def test_csv_cells_cannot_act_as_formulas(tmp_path):
    formulas = ["=1+2", "+cmd", "-2+3", "@SUM(A1)", "'quoted", "\tTAB"]
    rows = [make_row(make_case("speed", name, "lstm"), "latency", -0.5 if i == 0 else 1.0, "ms", note=name)
            for i, name in enumerate(formulas)]
    write_rows(tmp_path, rows)
    with open(tmp_path / "results.csv", newline="") as handle:
        records = list(csv.DictReader(handle))
    for record in records:
        for column in ("backend", "note"):
            assert not record[column].startswith(("=", "+", "-", "@", "\t")), record[column]
    assert records[0]["value"] == "-0.5"  # numbers stay numbers
    frame = read_results(tmp_path)
    assert list(frame.backend) == formulas and list(frame.note) == formulas
    assert frame.value.iloc[0] == -0.5


def _only(directory: Path, rows: list[ResultRow]) -> str:
    write_rows(directory, rows)
    assert main(["report", str(directory)]) == 0
    return (directory / "report.md").read_text()


def test_partial_results_say_what_is_missing(tmp_path):
    rows = [make_row(make_case("speed", backend, "lstm", seq_len=t), "latency", t * cost, "ms", spread=0.02, n=9)
            for backend, cost in (("torch", 1.0), ("eager", 3.0)) for t in (64, 256)]
    markdown = _only(tmp_path, rows)
    assert "Not in these results: memory experiment" in markdown and "gradient experiment" in markdown
    assert "Figures not drawn:" in markdown and "peak_memory_vs_seq_len" in markdown
    assert (tmp_path / "figures" / "latency_vs_seq_len.png").exists()
    assert not (tmp_path / "figures" / "peak_memory_vs_seq_len.png").exists()
    assert "No memory experiment results." in markdown


def test_empty_results(tmp_path):
    (tmp_path / "results.csv").write_text(",".join(COLUMNS) + "\n")
    assert main(["report", str(tmp_path)]) == 0
    markdown = (tmp_path / "report.md").read_text()
    assert "results.csv has no rows" in markdown and "No env.json" in markdown
    (tmp_path / "results.csv").write_text("")
    assert main(["report", str(tmp_path)]) == 0


def test_only_skipped_rows(tmp_path):
    rows = [ResultRow.missing(make_case("speed", backend, "lstm"), RUN_ID, "latency", "ms", "skipped", f"{backend} needs CUDA")
            for backend in ("triton", "torch")]
    markdown = _only(tmp_path, rows)
    assert "No case produced a number: every row is skipped" in markdown
    assert "triton needs CUDA" in markdown and "torch needs CUDA" in markdown


def test_zero_negative_nan_and_infinite_values_are_flagged_not_divided(tmp_path):
    bad = {64: 0.0, 128: -1.0, 256: math.nan, 512: math.inf}
    rows = [make_row(make_case("speed", "torch", "lstm", seq_len=t), "latency", 1.0, "ms") for t in bad]
    rows += [make_row(make_case("speed", "eager", "lstm", seq_len=t), "latency", value, "ms") for t, value in bad.items()]
    rows += [make_row(make_case("speed", "eager", "lstm", seq_len=1024), "latency", 2.0, "ms"),
             make_row(make_case("speed", "torch", "lstm", seq_len=1024), "latency", 0.0, "ms")]
    markdown = _only(tmp_path, rows)
    data = load(tmp_path)
    assert sorted(data.flagged.flag) == ["NaN latency", "infinite latency", "negative latency", "zero latency", "zero latency"]
    assert "5 value(s) are flagged" in markdown and "## Flagged values" in markdown
    # every pair has a flagged side (the baseline at T=1024 is zero): no speedup anywhere
    assert "speedup (×)" not in markdown and "Geometric-mean speedup" not in markdown


def test_malformed_rows_are_dropped_and_counted(tmp_path, capsys):
    write_rows(tmp_path, [make_row(make_case("speed", "torch", "lstm", seq_len=t), "latency", 1.0, "ms") for t in (64, 256, 1024)])
    lines = (tmp_path / "results.csv").read_text().splitlines()
    lines[1] = lines[1].replace(",64,64,64,", ",sixty-four,64,64,", 1)  # seq_len is not a number
    lines[2] = lines[2].replace(",ok,", ",fine,")  # unknown status
    lines.append(lines[3][:40])  # a torn last line
    (tmp_path / "results.csv").write_text("\n".join(lines) + "\n")
    frame, dropped = load_results(tmp_path)
    assert len(frame) == 1 and len(dropped) == 3
    assert dropped[0].startswith("results.csv line 2: seq_len 'sixty-four' is not an integer")
    assert dropped[1].startswith("results.csv line 3: status 'fine'") and dropped[2].startswith("results.csv line 5: 4 cells")
    assert main(["report", str(tmp_path)]) == 0
    assert "dropped 3 malformed row(s)" in capsys.readouterr().err
    assert "Dropped 3 malformed row(s) of results.csv" in (tmp_path / "report.md").read_text()
    with pytest.warns(UserWarning, match="dropped 3 malformed"):
        read_results(tmp_path)


@pytest.mark.parametrize("header, problem", [
    (COLUMNS[:-1], "missing column(s) device_name"),
    ((*COLUMNS, "surprise"), "unexpected column(s) 'surprise'"),
    ((COLUMNS[1], COLUMNS[0], *COLUMNS[2:]), "columns are duplicated or out of order"),
])
def test_bad_header_is_an_error_naming_file_and_line(tmp_path, capsys, header, problem):
    (tmp_path / "results.csv").write_text(",".join(header) + "\n")
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'results.csv'} line 1: {problem}" in err and "Traceback" not in err


@pytest.mark.parametrize("text, problem", [
    ('{"runs": [{"run_id": "x"', "line 1 column 25: invalid JSON"),
    ('{"runs": {}}', "expected an object"),
    ('{"runs": [1]}', "runs[0] must be an object"),
    ("\xff\xfe", "not UTF-8"),
])
def test_bad_env_json_is_an_error(tmp_path, capsys, text, problem):
    write_rows(tmp_path, [make_row(make_case("speed", "torch", "lstm"), "latency", 1.0, "ms")])
    (tmp_path / "env.json").write_bytes(text.encode("latin-1"))
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "env.json") in err and problem in err and "Traceback" not in err


def test_binary_results_csv_is_an_error(tmp_path, capsys):
    (tmp_path / "results.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    assert main(["report", str(tmp_path)]) == 2
    assert "not UTF-8 text" in capsys.readouterr().err


def test_reports_are_written_atomically_and_never_through_symlinks(tmp_path, capsys):
    outside = tmp_path / "outside.html"
    outside.write_text("keep me")
    directory = write_rows(tmp_path / "results", [make_row(make_case("speed", "torch", "lstm", seq_len=t), "latency", 1.0 * t, "ms")
                                                  for t in (64, 256)])
    (directory / "report.html").symlink_to(outside)
    assert main(["report", str(directory)]) == 0
    assert outside.read_text() == "keep me"
    assert not (directory / "report.html").is_symlink() and "<!DOCTYPE html>" in (directory / "report.html").read_text()
    assert not [path for path in directory.rglob(".*.tmp")]
    # a symlinked figures folder is refused
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for path in (directory / "figures").iterdir():
        path.unlink()
    (directory / "figures").rmdir()
    (directory / "figures").symlink_to(elsewhere, target_is_directory=True)
    assert main(["report", str(directory)]) == 2
    assert "symlink" in capsys.readouterr().err and not list(elsewhere.iterdir())


def test_missing_speedup_baseline_is_said_not_guessed(tmp_path):
    run = env_run()
    del run["speedup_baseline"]
    write_rows(tmp_path, [make_row(make_case("speed", backend, "lstm"), "latency", 1.0, "ms") for backend in ("torch", "eager")], [run])
    assert main(["report", str(tmp_path)]) == 0
    markdown = (tmp_path / "report.md").read_text()
    assert "declares no speedup baseline" in markdown and "speedup (×)" not in markdown


def test_cost_model_lower_bound():
    h100 = device_peaks("NVIDIA H100 80GB HBM3")
    assert h100.name == "H100 SXM" and device_peaks("NVIDIA H100 PCIe").name == "H100 PCIe"
    assert device_peaks("NVIDIA H200").bandwidth_tbs == 4.8 and device_peaks("NVIDIA A100-SXM4-80GB").name == "A100 80GB SXM"
    assert device_peaks("Intel(R) Xeon(R) Processor") is None
    # LSTM H=768, B=16, bf16: weights 4*768^2*2 B / 3.35 TB/s = 1.41 us > 8*16*768^2 FLOP / 989 TFLOP/s = 0.08 us
    assert step_lower_bound_us("lstm", 16, 768, "bfloat16", h100) == pytest.approx(4 * 768**2 * 2 / 3.35e12 * 1e6)
    # at B=4096 the FLOPs dominate
    assert step_lower_bound_us("rnn", 4096, 1024, "bfloat16", h100) == pytest.approx(2 * 4096 * 1024**2 / 989.4e12 * 1e6)


# ---------------------------------------------------------------- compare


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")

    def speed(name: str, slowdown: float = 1.0) -> Path:
        rows = speed_and_memory_rows(np.random.default_rng(0), backends=("torch", "triton"), slowdown=slowdown)
        return write_rows(root / name, rows)

    return speed("base"), speed("same"), speed("slow", slowdown=1.5)


def test_compare_identical_results_exits_0(pair, capsys):
    base, same, _ = pair
    assert main(["compare", str(base), str(same)]) == 0
    assert "regression" not in capsys.readouterr().out
    assert (same / "comparison.md").exists() and (same / "figures" / "comparison_ratio.png").exists()
    html = (same / "comparison.html").read_text()
    assert "data:image/png;base64," in html


def test_compare_planted_slowdown_exits_1(pair, capsys, tmp_path):
    base, _, slow = pair
    assert main(["compare", str(base), str(slow), "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "regression(s) beyond 10%" in out and "1.5×" in (tmp_path / "comparison.md").read_text()
    comparison = (tmp_path / "comparison.md").read_text()
    assert "## Regressions" in comparison
    # with a threshold above the slowdown nothing regresses
    assert main(["compare", str(base), str(slow), "--threshold", "0.6", "--out", str(tmp_path)]) == 0


def test_compare_refuses_different_devices_unless_forced(pair, tmp_path, capsys):
    base, _, _ = pair
    other = tmp_path / "a100"
    shutil.copytree(base, other)
    rows = pd.read_csv(other / "results.csv", keep_default_na=False, dtype=str)
    rows["device_name"] = "NVIDIA A100-SXM4-80GB"
    rows.to_csv(other / "results.csv", index=False)
    assert main(["compare", str(base), str(other)]) == 2
    assert "not comparable" in capsys.readouterr().err
    assert main(["compare", str(base), str(other), "--force"]) == 0


def test_compare_counts_a_newly_failing_case_as_a_regression(tmp_path):
    case = make_case("speed", "torch", "lstm")
    base = write_rows(tmp_path / "base", [make_row(case, "latency", 1.0, "ms")])
    new = write_rows(tmp_path / "new", [ResultRow.missing(case, RUN_ID, "latency", "ms", "error", "RuntimeError: boom")])
    assert main(["compare", str(base), str(new)]) == 1


@pytest.mark.parametrize("samples, exit_status", [(1, 0), (2, 0), (3, 1)])
def test_compare_judges_a_timing_only_with_three_samples_a_side(tmp_path, capsys, samples, exit_status):
    """A median of one or two samples has no spread: its 2x change is "not comparable", not a
    regression; peak memory (one deterministic sample) is judged whatever its n."""
    case = make_case("speed", "torch", "lstm")
    base = write_rows(tmp_path / "base", [make_row(case, "latency", 1.0, "ms", n=samples)])
    new = write_rows(tmp_path / "new", [make_row(case, "latency", 2.0, "ms", n=samples)])
    assert main(["compare", str(base), str(new)]) == exit_status
    comparison = (new / "comparison.md").read_text()
    assert ("no spread to judge" in comparison) == (samples < 3)
    memory = make_case("memory", "torch", "lstm")
    base = write_rows(tmp_path / "mbase", [make_row(memory, "peak_memory", 100.0, "MiB", n=1)])
    new = write_rows(tmp_path / "mnew", [make_row(memory, "peak_memory", 200.0, "MiB", n=1)])
    assert main(["compare", str(base), str(new)]) == 1


def test_compare_bad_input(tmp_path, pair, capsys):
    base, _, _ = pair
    unrelated = write_rows(tmp_path / "other", [make_row(make_case("speed", "numpy", "rnn", seq_len=7), "latency", 1.0, "ms")])
    assert main(["compare", str(base), str(unrelated)]) == 2
    assert "nothing to compare" in capsys.readouterr().err
    assert main(["compare", str(base), str(base), "--threshold", "-1"]) == 2
    assert main(["compare", str(base), str(tmp_path / "missing")]) == 2


def test_a_failing_figure_is_reported_not_fatal(tmp_path, monkeypatch):
    from dataclasses import replace

    import rnnbench.harness.report.assemble as assemble

    def broken(data):
        raise TypeError("odd rows")

    monkeypatch.setattr(assemble, "FIGURES", [replace(spec, draw=broken) if spec.name == "latency_vs_seq_len" else spec
                                              for spec in FIGURES])
    markdown = _only(tmp_path, [make_row(make_case("speed", "torch", "lstm", seq_len=t), "latency", t * 1e-3, "ms")
                                for t in (64, 256)])
    assert "latency_vs_seq_len (failed: TypeError: odd rows)" in markdown
