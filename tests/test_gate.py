"""The CI performance gate (benchmarks/gate.py): it fails on a planted slowdown and skips cleanly
when there is nothing to compare against. Its false-alarm rate on identical code is measured with
``python -m benchmarks.gate --aa --trials N`` (README, "Performance gate")."""

from __future__ import annotations

import pytest

from benchmarks import gate


@pytest.mark.slow
def test_gate_fails_on_a_planted_slowdown(tmp_path, capsys):
    # identical code on both sides, NEW made 1.5x slower by repeating work; few rounds to stay fast
    assert gate.main(["--aa", "--plant", "1.5", "--rounds", "4", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "perf gate FAILED" in out and "regression" in out
    assert (tmp_path / "comparison.html").exists() and (tmp_path / "new" / "results.csv").exists()


def test_gate_skips_without_a_base_revision(capsys):
    assert gate.main(["--base", "no-such-revision-anywhere"]) == 0
    assert "perf gate skipped: no-such-revision-anywhere is not in this clone" in capsys.readouterr().out


@pytest.mark.slow
def test_gate_skips_a_base_that_cannot_build_the_benchmarks(tmp_path):
    with pytest.raises(gate.Skip, match="cannot build the gate's benchmarks"):
        gate.run_gate(tmp_path, "an empty tree", gate.THRESHOLD, 1.0, tmp_path / "out", rounds=4, quiet=True)
