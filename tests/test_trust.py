"""A results directory that can be trusted: one run at a time, resume that re-measures what did not
finish, a fingerprint that refuses silent mixing, refusal of runs that cannot run here, clean errors
for bad input, and measuring children that die with their parent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from rnnbench.harness.cli import main
from rnnbench.harness.lock import LOCK_NAME
from rnnbench.harness.results import latest_attempts, read_results

ROOT = Path(__file__).resolve().parent.parent

SUITE = """
[defaults]
device = "cpu"
modes = ["fwd"]
[timing]
warmup = 0
min_reps = 1
max_reps = 2
budget_s = 0.01
[[cases]]
experiments = ["speed"]
backends = ["torch", "eager"]
families = ["rnn"]
seq_len = [4]
batch = [2]
hidden_size = [5]
"""


def _suite(tmp_path, text=SUITE, name="suite.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def _run(tmp_path, *extra, suite=None):
    return main(["run", suite or _suite(tmp_path), "--out", str(tmp_path / "out"), "--no-progress", *extra])


def _python(code: str, **kwargs) -> subprocess.Popen:
    """A Python process running ``code`` from the repository root, with this checkout importable."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env, **kwargs)


def _wait_for(predicate, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        return int(next(line.split()[1] for line in handle if line.startswith("PPid:")))


HOLD_LOCK = """
    import sys, time
    from rnnbench.harness.lock import locked_results_dir
    with locked_results_dir(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(120)
"""


def test_a_second_run_on_a_locked_directory_is_refused_naming_the_holder(tmp_path, capsys):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOLD_LOCK), str(tmp_path / "out")], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert _run(tmp_path) == 2
        error = capsys.readouterr().err
        assert f"pid {holder.pid} on host" in error and "in use by another run" in error and "started" in error
        assert not (tmp_path / "out" / "results.csv").exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder died without unlocking: the kernel released its lock, so the directory is usable
    assert _run(tmp_path) == 0
    holder_file = json.loads((tmp_path / "out" / LOCK_NAME).read_text())
    assert holder_file["pid"] == os.getpid()


def _rewrite_statuses(out, status, note):
    """Pretend a run recorded every primary row as ``status`` (a run without the device, say)."""
    frame = pd.read_csv(out / "results.csv", keep_default_na=False, dtype=str)
    frame["status"], frame["note"], frame["value"] = status, note, "nan"
    frame.to_csv(out / "results.csv", index=False)


@pytest.mark.parametrize("status", ["skipped", "error", "oom"])
def test_resume_measures_again_what_did_not_finish_and_the_report_shows_the_latest(tmp_path, status):
    assert _run(tmp_path) == 0
    _rewrite_statuses(tmp_path / "out", status, "no device")
    assert _run(tmp_path, "--resume") == 0
    frame = read_results(tmp_path / "out")
    latency = frame[frame.metric == "latency"]
    assert list(latency.status) == [status, status, "ok", "ok"]
    assert list(latest_attempts(latency).status) == ["ok", "ok"]
    assert main(["report", str(tmp_path / "out")]) == 0
    assert "no device" not in (tmp_path / "out" / "report.md").read_text()
    # finished now: a third resume measures nothing
    rows = len(frame)
    assert _run(tmp_path, "--resume") == 0
    assert len(read_results(tmp_path / "out")) == rows


def test_incorrect_is_final(tmp_path):
    assert _run(tmp_path) == 0
    _rewrite_statuses(tmp_path / "out", "incorrect", "failed its check")
    rows = len(read_results(tmp_path / "out"))
    assert _run(tmp_path, "--resume") == 0
    assert len(read_results(tmp_path / "out")) == rows


def test_one_bad_cell_does_not_block_a_resume(tmp_path, capsys):
    assert _run(tmp_path) == 0
    path = tmp_path / "out" / "results.csv"
    lines = path.read_text().splitlines()
    torch_row = next(i for i, line in enumerate(lines) if ",torch," in line and ",latency," in line)
    lines[torch_row] = lines[torch_row].replace(",ok,", ",okay,")
    path.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert _run(tmp_path, "--resume") == 0
    error = capsys.readouterr().err
    assert f"line {torch_row + 1}: status 'okay' is not one of" in error and "measured again" in error
    with open(path) as handle:
        appended = handle.read().splitlines()[len(lines):]
    assert appended and all(",torch," in line for line in appended)


def test_a_torn_last_line_is_ended_before_rows_are_appended(tmp_path, capsys):
    assert _run(tmp_path) == 0
    path = tmp_path / "out" / "results.csv"
    text = path.read_text()
    path.write_text(text[: text.rindex(",latency,") + 5])  # a crash in the middle of the last row
    assert _run(tmp_path, "--resume") == 0
    assert "cannot be read" in capsys.readouterr().err
    frame = read_results(tmp_path / "out")
    assert set(frame[frame.metric == "latency"].status) == {"ok"} and len(frame[frame.metric == "latency"]) == 2


@pytest.mark.parametrize("change, message", [
    (lambda text: text.replace("budget_s = 0.01", "budget_s = 0.02"), "timing: budget_s recorded 0.01, asked 0.02"),
    (lambda text: text.replace('backends = ["torch", "eager"]', 'backends = ["torch"]'), "suite: recorded 'suite' (2 cases"),
    (lambda text: text.replace('device = "cpu"', 'device = "cuda"'), 'devices: recorded ["cpu"], asked ["cuda"]'),
])
def test_resume_refuses_to_mix_another_suite_timing_or_device(tmp_path, capsys, change, message):
    assert _run(tmp_path) == 0
    changed = _suite(tmp_path, change(textwrap.dedent(SUITE)), "suite.toml")
    capsys.readouterr()
    assert _run(tmp_path, "--resume", suite=changed) == 2
    error = capsys.readouterr().err
    assert message in error and "--force" in error
    assert error.count("recorded") == 1  # only what changed is named


def test_resume_refuses_another_commit_unless_forced(tmp_path, capsys):
    assert _run(tmp_path) == 0
    path = tmp_path / "out" / "fingerprint.json"
    recorded = json.loads(path.read_text())
    recorded["commit"]["git_sha"] = "0" * 40
    path.write_text(json.dumps(recorded))
    assert _run(tmp_path, "--resume") == 2
    assert f"commit: recorded {'0' * 40}" in capsys.readouterr().err
    _rewrite_statuses(tmp_path / "out", "error", "to measure again")
    assert _run(tmp_path, "--resume", "--force") == 0
    assert "--force: mixing" in capsys.readouterr().err
    # the rows measured now were asked for by this commit: the directory records it
    assert json.loads(path.read_text())["commit"]["git_sha"] != "0" * 40


def test_a_cuda_suite_without_cuda_is_refused_unless_skips_are_asked_for(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert _run(tmp_path, "--device", "cuda") == 2
    error = capsys.readouterr().err
    assert "none of the 2 cases to run can run here" in error and "CUDA is not available" in error
    assert "--record-skips" in error and not (tmp_path / "out" / "results.csv").exists()
    assert _run(tmp_path, "--device", "cuda", "--record-skips") == 0
    assert set(read_results(tmp_path / "out").status) == {"skipped"}


@pytest.mark.parametrize("text, message", [
    ("defaults = 5\n[[cases]]\nexperiments=['speed']\nbackends=['torch']\nseq_len=[1]\nbatch=[1]\nhidden_size=[4]",
     "defaults must be a table ([defaults]), got 5"),
    ("[[cases]]\nexperiments=['speed']\nseq_len=[1]\nbatch=[1]\nhidden_size=[4]\n[cases.backends]\ntorch = 1",
     "backends must be a value or a list of values, got {'torch': 1}"),
    ("[[cases]]\nexperiments=['speed']\nbackends=[['torch']]\nseq_len=[1]\nbatch=[1]\nhidden_size=[4]",
     "backends must be a value or a list of values, got [['torch']]"),
])
def test_suites_of_the_wrong_structure_exit_2_naming_file_and_value(tmp_path, capsys, text, message):
    path = _suite(tmp_path, text, "wrong.toml")
    assert _run(tmp_path, suite=path) == 2
    error = capsys.readouterr().err
    assert message in error and path in error and "Traceback" not in error


def test_a_suite_that_is_not_utf8_exits_2(tmp_path, capsys):
    path = tmp_path / "latin1.toml"
    path.write_bytes('description = "Größe"\n'.encode("latin-1"))
    assert _run(tmp_path, suite=str(path)) == 2
    assert f"suite file {path} is not UTF-8 text: byte 0xf6" in capsys.readouterr().err


def test_unusable_out_exits_2_naming_it(tmp_path, capsys):
    suite = _suite(tmp_path)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    unwritable = "/sys" if os.geteuid() == 0 else "/"
    for out, message in [("", "--out must name a results directory, got ''"),
                         (str(a_file), f"--out {str(a_file)!r} is a file, not a directory"),
                         (str(a_file / "below"), f"--out {str(a_file / 'below')!r} cannot be created"),
                         (unwritable, f"--out {unwritable!r} is not writable")]:
        assert main(["run", suite, "--out", out, "--no-progress"]) == 2, out
        assert message in capsys.readouterr().err


def test_ray_missing_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    assert _run(tmp_path, "--executor", "ray") == 2
    assert "pip install 'rnnbench[ray]'" in capsys.readouterr().err


def test_an_unreachable_ray_cluster_exits_2(tmp_path, capsys):
    pytest.importorskip("ray")
    assert _run(tmp_path, "--executor", "ray", "--ray-address", "127.0.0.1:1") == 2
    assert "cannot connect to the Ray cluster at '127.0.0.1:1'" in capsys.readouterr().err


def test_unknown_executor_and_a_stray_ray_address(tmp_path, capsys):
    assert _run(tmp_path, "--executor", "dask") == 2
    assert "unknown executor 'dask'; expected one of serial, ray" in capsys.readouterr().err
    assert _run(tmp_path, "--ray-address", "auto") == 2
    assert "--ray-address 'auto' needs --executor ray" in capsys.readouterr().err


MIXED = """
[timing]
warmup = 0
min_reps = 1
max_reps = 2
budget_s = 0.01
[[cases]]
device = "cuda"
experiments = ["speed"]
backends = ["torch"]
families = ["rnn"]
modes = ["fwd"]
seq_len = [3]
batch = [1]
hidden_size = [4]
[[cases]]
device = "cpu"
experiments = ["numerics"]
backends = ["triton"]
families = ["rnn"]
modes = ["fwd"]
seq_len = [3]
batch = [1]
hidden_size = [4]
"""


@pytest.mark.interpreter
def test_a_suite_that_mixes_devices_prepares_each_case_for_its_own(tmp_path):
    """Each case prepares its process: a CUDA case first must not keep the CPU cases' Triton
    kernels out of the interpreter, and a process whose kernels were already imported for CUDA
    measures CPU kernel cases in a child prepared for them."""
    suite, out = _suite(tmp_path, MIXED), tmp_path / "out"
    code = f"""
        import os, sys
        os.environ["TRITON_INTERPRET"] = "0"
        import rnnbench.kernels  # this process's kernels are compiled for the GPU, not interpreted
        from rnnbench.harness.cli import main
        sys.exit(main(["run", {suite!r}, "--out", {str(out)!r}, "--no-progress"]))
    """
    for preimport in (False, True):
        environment = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
        source = code if preimport else code.replace("import rnnbench.kernels", "pass")
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(source)], cwd=ROOT, capture_output=True, text=True,
                              env={**environment, "PYTHONPATH": str(ROOT)}, timeout=300)
        assert done.returncode == 0, done.stderr
        frame = read_results(out)
        triton = frame[frame.backend == "triton"]
        assert list(triton.status) == ["ok"], triton.note.tolist()
        for name in ("results.csv", "fingerprint.json", "env.json"):
            (out / name).unlink()


def test_the_memory_child_dies_with_its_parent(tmp_path):
    sleeper = tmp_path / "sleeper.py"
    sleeper.write_text("import os, time\n\ndef sleep(path):\n    open(path, 'w').write(str(os.getpid()))\n    time.sleep(120)\n")
    pid_file = tmp_path / "child.pid"
    parent = _python(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from rnnbench.harness.children import run_in_fresh_process
        import sleeper
        if __name__ == "__main__":
            run_in_fresh_process(sleeper.sleep, {str(pid_file)!r})
    """)
    try:
        # the child creates the file before it writes its pid: wait for the pid, not the file
        assert _wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 120), "the child never started"
        child = int(pid_file.read_text())
        zygote = _parent_of(child)
        assert _alive(child) and _parent_of(zygote) == parent.pid
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    assert _wait_for(lambda: not _alive(child) and not _alive(zygote), 10), "the children outlived their killed parent"


def test_each_cpu_memory_peak_is_the_cases_own(tmp_path):
    """A case measured after a much larger one reports the same peak as when measured first."""
    from rnnbench.harness.cases import Case
    from rnnbench.harness.memory import cpu_peak_memory_mib, cpu_peak_memory_supported

    if cpu_peak_memory_supported() is not None:
        pytest.skip(cpu_peak_memory_supported())
    case = lambda T: Case("memory", "random", "numpy", "lstm", "cpu", "float64", 8, T, 64, 64, "fwd_bwd", 0)  # noqa: E731
    small_first = cpu_peak_memory_mib(case(32))
    cpu_peak_memory_mib(case(2048))
    small_after = cpu_peak_memory_mib(case(32))
    assert small_after == pytest.approx(small_first, abs=0.5)
