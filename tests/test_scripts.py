"""The GPU scripts under scripts/: they parse, and refuse what they cannot run, before any GPU work."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted((ROOT / "scripts").glob("*.sh"))


def test_there_are_scripts():
    assert {path.name for path in SCRIPTS} >= {"gpu-session.sh", "gpu-ab.sh", "gpu-lib.sh", "prepare-candidate.sh"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_script_parses(script):
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_ab_refuses_to_run_without_a_candidate(tmp_path):
    """Run from a directory without .candidate/: exit 2 with what to do, and nothing written."""
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-ab.sh"), "h100", "60"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert "scripts/prepare-candidate.sh" in done.stderr
    assert not (tmp_path / "reports").exists()


def test_prepare_candidate_needs_a_ref():
    done = subprocess.run(["bash", str(ROOT / "scripts" / "prepare-candidate.sh")], capture_output=True, text=True)
    assert done.returncode != 0 and "usage" in done.stderr
