"""The Ray executor on a local cluster started here (2 CPUs and one logical GPU, shared by the module).

The same rows as a serial run, a killed worker as an error row, a resume that measures exactly what
is missing, Ctrl-C that cancels what is in flight, and the scheduling rules. The full ``smoke`` suite
through Ray is the ``slow`` test; the default run uses :data:`SMOKE_KINDS`, a reduced suite with
every kind of case ``smoke`` has (CPU speed and memory of every CPU backend, numerics in three dtypes
including skipped ones, Triton numerics in the interpreter).
"""

from __future__ import annotations

import os
import shutil
import signal
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from rnnbench.harness.cases import Case, TimingOptions
from rnnbench.harness.errors import UsageError
from rnnbench.harness.executors import Cluster, RayExecutor, comparison_groups, ray_resources
from rnnbench.harness.results import KEY_COLUMNS, ResultsFile, latest_attempts, read_results
from rnnbench.harness.runner import run_suite
from rnnbench.harness.suites import load_suite

ray = pytest.importorskip("ray", reason="the ray executor's tests need Ray: pip install 'rnnbench[ray]'")

SMOKE_KINDS = """
description = "every kind of case in smoke, fewer of each"
[defaults]
device = "cpu"
modes = ["fwd", "fwd_bwd"]
[timing]
warmup = 1
min_reps = 3
max_reps = 10
budget_s = 0.05
[[cases]]
experiments = ["speed"]
backends = ["numpy", "eager", "torch", "bow", "cnn"]
families = ["lstm", "bow", "cnn"]
seq_len = [16]
batch = [2]
hidden_size = [12]
input_size = [5]
[[cases]]
experiments = ["memory"]
backends = ["numpy", "torch"]
families = ["rnn"]
modes = ["fwd_bwd"]
seq_len = [16]
batch = [2]
hidden_size = [12]
input_size = [5]
[[cases]]
experiments = ["numerics"]
backends = ["numpy", "torch", "cnn"]
families = ["rnn", "cnn"]
dtypes = ["float64", "bfloat16"]
seq_len = [3]
batch = [2]
hidden_size = [6]
input_size = [4]
[[cases]]
experiments = ["numerics"]
backends = ["triton"]
families = ["rnn"]
dtypes = ["float32", "bfloat16"]
modes = ["fwd"]
seq_len = [3]
batch = [2]
hidden_size = [6]
input_size = [4]
"""

SLOW_SPEED = """
[defaults]
device = "cpu"
modes = ["fwd"]
[timing]
warmup = 0
min_reps = 1
max_reps = 100000
budget_s = {budget_s}
[[cases]]
experiments = ["speed"]
backends = ["numpy"]
families = ["rnn"]
seq_len = [8]
batch = [1, 2, 3]
hidden_size = [4]
"""


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster for the module: starting one costs seconds."""
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def smoke_kinds_through_ray(cluster, tmp_path_factory):
    """:data:`SMOKE_KINDS` measured through Ray once for the module: (suite, results directory)."""
    tmp_path = tmp_path_factory.mktemp("smoke-kinds")
    suite = _suite(tmp_path, SMOKE_KINDS)
    summary = run_suite(suite, tmp_path / "ray", progress=False, executor=RayExecutor())
    assert sum(summary.statuses.values()) + summary.skipped_as_finished == len(suite.cases)
    return suite, tmp_path / "ray"


def _suite(tmp_path, text, name="suite.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return load_suite(str(path))


def _keys_and_statuses(out) -> set[tuple]:
    frame = latest_attempts(read_results(out))
    return set(map(tuple, frame[[*KEY_COLUMNS, "status"]].astype(str).values))


def _parent(pid: int) -> int:
    """The parent pid of ``pid`` (0 once it is gone): field 4 of ``/proc/PID/stat``, after the name."""
    try:
        return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _descends_from_this_process(pid: int) -> bool:
    while pid > 1:
        pid = _parent(pid)
        if pid == os.getpid():
            return True
    return False


def _measuring_workers() -> list[int]:
    """Pids of this module's Ray workers measuring a case now (Ray names the process after the
    running task): descendants of this process (its local cluster's raylet starts them), so a
    cluster another test process runs at the same time is left alone."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(b"ray::measure_prepared"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return [pid for pid in pids if _descends_from_this_process(pid)]


def _wait_for(predicate, timeout_s=60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_ray_gives_the_rows_of_a_serial_run(smoke_kinds_through_ray, tmp_path):
    suite, out = smoke_kinds_through_ray
    run_suite(suite, tmp_path / "serial", progress=False)
    serial, through_ray = _keys_and_statuses(tmp_path / "serial"), _keys_and_statuses(out)
    assert through_ray == serial
    statuses = {status for *_, status in through_ray}
    assert statuses == {"ok", "skipped"}  # bf16 in NumPy and in the Triton interpreter is skipped, the rest measured
    frame = read_results(out)
    assert (frame.host != "").all() and (frame.device_name != "").all()


@pytest.mark.slow
def test_smoke_through_ray_gives_the_rows_of_a_serial_run(cluster, tmp_path):
    suite = load_suite("smoke")
    run_suite(suite, tmp_path / "serial", progress=False)
    run_suite(suite, tmp_path / "ray", progress=False, executor=RayExecutor())
    assert _keys_and_statuses(tmp_path / "ray") == _keys_and_statuses(tmp_path / "serial")


def test_a_worker_killed_mid_case_becomes_an_error_row_and_the_run_goes_on(cluster, tmp_path):
    suite = _suite(tmp_path, SLOW_SPEED.format(budget_s=1.0))
    killed = []

    def kill_the_first_measuring_worker():
        if _wait_for(lambda: bool(_measuring_workers())):
            time.sleep(0.3)
            pid = _measuring_workers()[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    killer = threading.Thread(target=kill_the_first_measuring_worker)
    killer.start()
    summary = run_suite(suite, tmp_path / "out", progress=False, executor=RayExecutor())
    killer.join()
    assert killed
    frame = read_results(tmp_path / "out")
    latency = frame[frame.metric == "latency"]
    assert summary.statuses == {"ok": 2, "error": 1}
    died = latency[latency.status == "error"]
    assert len(died) == 1 and "the Ray worker measuring it died" in died.note.iloc[0]
    assert (latency[latency.status == "ok"].value > 0).all()


def test_a_resumed_ray_run_measures_exactly_the_missing_cases(smoke_kinds_through_ray, tmp_path):
    suite, measured_once = smoke_kinds_through_ray
    out = tmp_path / "out"
    shutil.copytree(measured_once, out)
    frame = pd.read_csv(out / "results.csv", keep_default_na=False, dtype=str)
    primary = frame[frame.metric.isin(["latency", "peak_memory"])]
    lost = primary.index[:3]  # three cases lost their primary rows
    failed = primary.index[3:5]  # two more ended in error
    frame.loc[failed, ["status", "value", "note"]] = ["error", "nan", "worker lost"]
    frame.drop(index=lost).to_csv(out / "results.csv", index=False)
    skipped = frame.index[(frame.status == "skipped") & (frame.experiment == "numerics")]  # never final: tried again
    missing = {tuple(frame.loc[index, list(KEY_COLUMNS)]) for index in [*lost, *failed, *skipped]}

    summary = run_suite(suite, out, resume=True, progress=False, executor=RayExecutor())
    after = read_results(out)
    primary_metrics = ["latency", "peak_memory"]
    measured = after[(after.run_id == summary.run_id) & (after.metric.isin(primary_metrics) | (after.status == "skipped"))]
    assert {tuple(map(str, key)) for key in measured[list(KEY_COLUMNS)].values} == missing
    assert sum(summary.statuses.values()) == len(missing) == 5 + len(skipped)
    assert set(measured[measured.metric.isin(primary_metrics)].status) == {"ok"}


def test_ctrl_c_cancels_what_is_in_flight_and_keeps_finished_rows(cluster, tmp_path, monkeypatch):
    suite = _suite(tmp_path, SLOW_SPEED.format(budget_s=1.0))
    real_append = ResultsFile.append

    def append_then_interrupt(self, rows):
        real_append(self, rows)
        raise KeyboardInterrupt

    monkeypatch.setattr(ResultsFile, "append", append_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, tmp_path / "out", progress=False, executor=RayExecutor())
    frame = read_results(tmp_path / "out")
    assert list(frame[frame.metric == "latency"].status) == ["ok"]
    # nothing of the run is left running: the cluster's CPUs are free again
    assert _wait_for(lambda: not _measuring_workers() and ray.available_resources().get("CPU") == 2.0, 30)


def test_cuda_cases_run_on_a_gpu_worker(cluster, tmp_path):
    """The cluster declares a GPU, so CUDA cases go to a GPU actor (on this machine torch finds no
    CUDA there, so they are recorded as skipped; the point is that they run and come back)."""
    suite = _suite(tmp_path, SLOW_SPEED.format(budget_s=0.01).replace('device = "cpu"', 'device = "cuda"'))
    summary = run_suite(suite, tmp_path / "out", progress=False, executor=RayExecutor())
    assert sum(summary.statuses.values()) == 3
    assert _wait_for(lambda: ray.available_resources().get("GPU") == 1.0, 30)  # the actor was released


def _case(experiment="speed", device="cpu", threads=None):
    return Case(experiment, "random", "torch", "rnn", "cpu" if device == "cpu" else device, "float32", 1, 1, 1, 1, "fwd", 0,
                timing=TimingOptions(threads=threads))


def test_a_cpu_timing_case_holds_the_cores_it_pins_and_numerics_pack():
    cluster = Cluster(largest_node_cpus=8, cpus=12, gpus=0, nodes=2)
    assert ray_resources(_case("speed"), cluster) == {"num_cpus": 8, "num_gpus": 0}
    assert ray_resources(_case("memory"), cluster) == {"num_cpus": 8, "num_gpus": 0}
    assert ray_resources(_case("speed", threads=2), cluster) == {"num_cpus": 2, "num_gpus": 0}
    assert ray_resources(_case("numerics"), cluster) == {"num_cpus": 1, "num_gpus": 0}
    with pytest.raises(UsageError, match="timing.threads = 16, but the largest node of the Ray cluster has 8 CPUs"):
        ray_resources(_case("speed", threads=16), cluster)


def test_cases_compared_with_each_other_are_one_group_for_one_gpu():
    suite = load_suite("gpu-core")
    groups = comparison_groups(list(suite.cases))
    assert sum(len(group) for group in groups) == len(suite.cases)
    for group in groups:
        shapes = {(case.family, case.dtype, case.seq_len, case.batch, case.hidden_size, case.mode) for case in group}
        assert len(shapes) == 1
    # every backend and experiment of a shape: torch and triton, speed and memory, and the forced
    # Gluon kernels' speed where gpu-core times them
    assert max(len(group) for group in groups) == 5
