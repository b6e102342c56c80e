"""The harness end to end: suites, runner, resume, failure rows, bad input, report."""

from __future__ import annotations

import json
import math
import textwrap

import numpy as np
import pandas as pd
import pytest

from rnnbench.harness import backends
from rnnbench.harness.cases import Case
from rnnbench.harness.cli import main
from rnnbench.harness.correctness import compare
from rnnbench.harness.registry import Backend
from rnnbench.harness.results import COLUMNS, ResultRow, read_results
from rnnbench.harness.runner import run_suite
from rnnbench.harness.suites import load_suite, parse_suite
from rnnbench.harness.timing import Timing
from rnnbench.harness.workloads import TorchRecurrentWorkload

TINY = """
description = "tiny"
[defaults]
device = "cpu"
dtypes = ["float32"]
modes = ["fwd", "fwd_bwd"]
[timing]
warmup = 0
min_reps = 2
max_reps = 3
budget_s = 0.01
[[cases]]
experiments = ["speed", "numerics"]
backends = ["numpy", "eager", "torch", "bow", "cnn"]
seq_len = [5]
batch = [2]
hidden_size = [6]
input_size = [3]
"""


def _suite_file(tmp_path, text=TINY, name="tiny.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def _run(tmp_path, *extra):
    out = tmp_path / "out"
    code = main(["run", _suite_file(tmp_path), "--out", str(out), "--no-progress", *extra])
    return code, out


def test_run_writes_tidy_rows_env_and_report(tmp_path):
    code, out = _run(tmp_path)
    assert code == 0
    frame = read_results(out)
    assert tuple(frame.columns) == COLUMNS
    speed = frame[(frame.experiment == "speed") & (frame.metric == "latency")]
    # 3 recurrent backends x 2 families x 2 modes + 2 encoders x 2 modes
    assert len(speed) == 16
    assert (speed.status == "ok").all() and (speed.value > 0).all()
    assert (speed.q25 <= speed.value).all() and (speed.value <= speed.q75).all()
    numerics = frame[frame.experiment == "numerics"]
    assert (numerics.status == "ok").all() and (numerics.value < 1e-3).all()
    env = json.loads((out / "env.json").read_text())["runs"]
    assert env[0]["torch"] and env[0]["device"] == "cpu"
    assert main(["report", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "## Speed" in report and "µs/step" in report and "torch" in report


def test_numerics_rows_are_shared_by_speed_gate_and_numerics_cases(tmp_path):
    _, out = _run(tmp_path)
    frame = read_results(out)
    keys = frame[frame.experiment == "numerics"].drop(columns=["run_id", "value", "q25", "q75", "note"])
    assert not keys.duplicated().any()


def test_resume_skips_finished_cases_and_finishes_the_rest(tmp_path):
    code, out = _run(tmp_path)
    assert code == 0
    lines = (out / "results.csv").read_text().splitlines()
    (out / "results.csv").write_text("\n".join(lines[:-6]) + "\n")  # lose the last cases
    suite = load_suite(_suite_file(tmp_path))
    summary = run_suite(suite, out, resume=True, progress=False)
    assert 0 < sum(summary.statuses.values()) < len(suite.cases)
    assert summary.skipped_as_finished > 0
    frame = read_results(out)
    assert len(frame[(frame.experiment == "speed") & (frame.metric == "latency")]) == 16
    assert len(json.loads((out / "env.json").read_text())["runs"]) == 2


def test_existing_results_need_resume(tmp_path, capsys):
    _run(tmp_path)
    code, _ = _run(tmp_path)
    assert code == 2
    assert "--resume" in capsys.readouterr().err


def test_interrupt_keeps_measured_cases(tmp_path, monkeypatch):
    import rnnbench.harness.executors

    real = rnnbench.harness.executors.measure_case
    calls = {"n": 0}

    def interrupted(case, run_id):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(case, run_id)

    monkeypatch.setattr(rnnbench.harness.executors, "measure_case", interrupted)
    code, out = _run(tmp_path)
    assert code == 130
    frame = read_results(out)
    assert frame.groupby(["experiment", "backend", "family", "mode"]).ngroups >= 3
    monkeypatch.setattr(rnnbench.harness.executors, "measure_case", real)
    code, _ = _run(tmp_path, "--resume")
    assert code == 0
    assert len(read_results(out).query("experiment == 'speed'")) == 16


def _register(monkeypatch, name, factory):
    backend = Backend(name=name, families=("rnn",), devices=("cpu",), dtypes=("float32",), factory=factory,
                      reference="numpy", description="test double")
    monkeypatch.setitem(backends._CATALOGUE, name, backend)


ONE_BACKEND = """
[defaults]
device = "cpu"
modes = ["fwd"]
[timing]
warmup = 0
min_reps = 1
budget_s = 0.01
[[cases]]
experiments = ["speed"]
backends = ["{name}", "torch"]
families = ["rnn"]
seq_len = [4]
batch = [2]
hidden_size = [5]
"""


def test_a_failing_backend_becomes_an_error_row_and_the_run_goes_on(tmp_path, monkeypatch):
    def broken(problem, dtype, device):
        raise RuntimeError("kernel exploded")

    _register(monkeypatch, "broken", broken)
    out = tmp_path / "out"
    assert main(["run", _suite_file(tmp_path, ONE_BACKEND.format(name="broken")), "--out", str(out), "--no-progress"]) == 0
    frame = read_results(out)
    failed = frame[frame.backend == "broken"]
    assert list(failed.status) == ["error"] and "kernel exploded" in failed.note.iloc[0]
    assert math.isnan(failed.value.iloc[0])
    assert (frame[frame.backend == "torch"].status == "ok").all()


def test_a_wrong_backend_is_not_timed(tmp_path, monkeypatch):
    class Wrong(TorchRecurrentWorkload):
        def outputs(self, mode):
            results = super().outputs(mode)
            results["y"] = results["y"] + 0.1
            return results

    _register(monkeypatch, "wrong", lambda problem, dtype, device: Wrong(problem, dtype, device, torch_rnn()))
    out = tmp_path / "out"
    main(["run", _suite_file(tmp_path, ONE_BACKEND.format(name="wrong")), "--out", str(out), "--no-progress"])
    rows = read_results(out).query("backend == 'wrong'")
    gate = rows[rows.experiment == "numerics"]
    speed = rows[rows.experiment == "speed"]
    assert list(gate.status) == ["incorrect"] and gate.value.iloc[0] == pytest.approx(0.1, rel=1e-3)
    assert list(speed.status) == ["incorrect"] and math.isnan(speed.value.iloc[0])


def torch_rnn():
    import torch

    return torch.nn.RNN


@pytest.mark.parametrize("suite_text, message", [
    ("[[cases]]\nexperiments=['speed']\nbackends=['nope']\nseq_len=[1]\nbatch=[1]\nhidden_size=[4]", "unknown backend 'nope'"),
    ("[[cases]]\nexperiments=['speed']\nbackends=['torch']\nseq_len=[1]\nbatch=[1]\nhidden_size=[4]\ndtypes=['fp8']", "unknown dtype 'fp8'"),
    ("[[cases]]\nexperiments=['sped']\nbackends=['torch']\nseq_len=[1]\nbatch=[1]\nhidden_size=[4]", "unknown experiment 'sped'"),
    ("[[cases]]\nexperiments=['speed']\nbackends=['torch']\nseq_len=[0]\nbatch=[1]\nhidden_size=[4]", "seq_len must be a positive integer, got 0"),
    ("[[cases]]\nexperiments=['speed']\nbackends=['torch']\nseq_len=[1]\nbatch=[1]", "missing required key 'hidden_size'"),
    ("[[cases]]\nexperiments=['speed']\nbackends=['torch']\nseq_len=[1]\nbatch=[1]\nhidden_size=[4]\nhidden=[3]", "unknown key 'hidden'"),
    ("[timing]\nbudget_s = -1\n[[cases]]\nexperiments=['speed']\nbackends=['torch']\nseq_len=[1]\nbatch=[1]\nhidden_size=[4]", "budget_s must be a positive"),
    ("[[cases]\nbroken", "is not valid TOML"),
    ("description = 'no cases'", "at least one [[cases]] block"),
])
def test_malformed_suites_exit_2_with_the_reason(tmp_path, capsys, suite_text, message):
    code = main(["run", _suite_file(tmp_path, suite_text, "bad.toml"), "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 2
    assert message in capsys.readouterr().err


def test_unknown_suite_name_lists_the_known_ones(tmp_path, capsys):
    assert main(["run", "nosuchsuite", "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err
    assert "unknown suite 'nosuchsuite'" in error and "smoke" in error


def test_unknown_device(tmp_path, capsys):
    assert main(["run", "smoke", "--out", str(tmp_path / "o"), "--device", "tpu"]) == 2
    assert "unknown device 'tpu'" in capsys.readouterr().err


def test_report_of_a_missing_directory(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "no results.csv" in capsys.readouterr().err


def test_cuda_cases_are_skipped_with_the_reason_on_a_cpu_machine_when_asked(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the skip path is for CPU-only machines")
    suite = parse_suite("t", {"cases": [{"experiments": ["speed"], "backends": ["torch", "triton"], "families": ["lstm"],
                                        "seq_len": [3], "batch": [1], "hidden_size": [4], "device": "cuda"}]})
    summary = run_suite(suite, tmp_path / "out", progress=False, record_skips=True)
    assert summary.statuses == {"skipped": len(suite.cases)}
    assert read_results(tmp_path / "out").note.str.contains("CUDA is not available").all()


def test_a_withheld_backend_is_skipped_with_the_reason_and_the_others_run(tmp_path, monkeypatch):
    """``RNNBENCH_WITHHOLD_BACKENDS`` (the GPU session's, for a never-run kernel whose GPU tests
    failed): the named backend's cases are recorded as skipped, saying why, and nothing else changes."""
    from rnnbench.harness.registry import WITHHELD_BACKENDS

    monkeypatch.setenv(WITHHELD_BACKENDS, "eager, nothing-such")
    suite = parse_suite("t", {"cases": [{"experiments": ["speed"], "backends": ["torch", "eager"], "families": ["lstm"],
                                        "seq_len": [3], "batch": [1], "hidden_size": [4], "device": "cpu"}]})
    run_suite(suite, tmp_path / "out", progress=False)
    frame = read_results(tmp_path / "out")
    eager, torch_rows = frame[frame.backend == "eager"], frame[frame.backend == "torch"]
    assert len(eager) and (eager.status == "skipped").all(), eager
    assert eager.note.str.contains("withheld on this run").all() and eager.note.str.contains(WITHHELD_BACKENDS).all()
    assert len(torch_rows) and (torch_rows.status == "ok").all(), torch_rows


def test_list_shows_every_backend_and_why_it_cannot_run(capsys):
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    for name in ("numpy", "eager", "torch", "bow", "cnn", "triton", "triton-stepwise"):
        assert f"| {name} |" in text
    assert "smoke" in text and "gpu" in text


def test_shipped_suites_parse():
    for name in ("smoke", "cpu", "gpu", "gpu-core", "gpu-ab", "gpu-extras", "gpu-fused"):
        suite = load_suite(name, device_override="cpu")
        assert suite.cases, name
    # gpu-fused measures the cost model's lowest estimate at the anchor first (a run cut short keeps it),
    # and cuDNN's same shape in the same run
    fused = load_suite("gpu-fused").cases
    assert (fused[0].backend, fused[0].hidden_size, fused[0].batch, fused[0].mode) == \
        ("triton-inference-switches", 768, 16, "fwd")
    assert any((case.backend, case.hidden_size, case.batch, case.dtype, case.mode) ==
               ("torch", 768, 16, "bfloat16", "fwd") for case in fused)
    # the A/B suite is gpu-core's Triton speed cases plus the goal shape's cuDNN anchor
    core = {case.label for case in load_suite("gpu-core").cases if case.backend == "triton" and case.experiment == "speed"}
    ab = load_suite("gpu-ab").cases
    assert core <= {case.label for case in ab}
    assert "torch" not in {case.backend for case in ab if case.hidden_size != 768 or case.batch != 16}  # cuDNN at the goal shape only
    smoke_backends = {case.backend for case in load_suite("smoke").cases}
    assert {"numpy", "eager", "torch", "bow", "cnn", "triton"} <= smoke_backends
    gpu = load_suite("gpu", device_override="cuda")
    assert {"triton", "torch"} <= {case.backend for case in gpu.cases}


def test_compare_uses_per_dtype_tolerance_relative_to_scale():
    reference = {"y": np.array([100.0, -50.0])}
    assert compare({"y": np.array([100.05, -50.0])}, reference, "float32").passed  # 0.05 <= 1e-3 + 1e-3 * 100
    assert not compare({"y": np.array([100.5, -50.0])}, reference, "float32").passed
    assert not compare({"y": np.array([np.nan, -50.0])}, reference, "float64").passed
    assert not compare({}, reference, "float64").passed
    assert not compare({"y": np.zeros(3)}, reference, "float64").passed


def test_timing_summary_is_median_and_interquartile_range():
    timing = Timing.from_samples_ms([1.0, 2.0, 3.0, 4.0, 100.0])
    assert timing.median_ms == 3.0 and timing.q25_ms == 2.0 and timing.q75_ms == 4.0 and timing.n == 5


@pytest.mark.parametrize("call_ms, expected_rep_ms", [
    (1.0, 30.0),    # the budget holds 30 calls, between min_reps and max_reps
    (20.0, 110.0),  # calls longer than budget / min_reps: stretched to (5 + 0.5) calls
    (0.01, 2.005),  # the budget would hold 3000 calls: shrunk to (200 + 0.5) calls
])
def test_cuda_latency_asks_do_bench_for_min_reps_to_max_reps_calls(monkeypatch, call_ms, expected_rep_ms):
    import triton.testing

    from rnnbench.harness import timing
    from rnnbench.harness.cases import TimingOptions

    asked = {}

    def do_bench(fn, warmup, rep, return_mode):
        asked.update(rep=rep, return_mode=return_mode)
        return [1.0, 2.0, 3.0]

    monkeypatch.setattr(triton.testing, "do_bench", do_bench)
    monkeypatch.setattr("torch.cuda.synchronize", lambda: None)
    monkeypatch.setattr(timing, "_estimate_call_ms", lambda fn: call_ms)
    result = timing.cuda_latency(lambda: None, TimingOptions(min_reps=5, max_reps=200, budget_s=0.03))
    assert asked == {"rep": pytest.approx(expected_rep_ms), "return_mode": "all"}
    assert result.n == 3 and result.median_ms == 2.0


@pytest.mark.cuda
def test_cuda_latency_takes_min_reps_samples_of_calls_longer_than_the_budget():
    import torch

    from rnnbench.harness.cases import TimingOptions
    from rnnbench.harness.timing import cuda_latency

    torch.cuda._sleep(1000)  # initialise the context
    result = cuda_latency(lambda: torch.cuda._sleep(50_000_000), TimingOptions(min_reps=5, budget_s=0.005))
    assert result.n >= 5 and result.q25_ms <= result.median_ms <= result.q75_ms


def test_result_rows_without_a_number_must_say_nan():
    case = Case("speed", "random", "b", "rnn", "cpu", "float32", 1, 1, 1, 1, "fwd", 0)
    with pytest.raises(ValueError, match="must have value NaN"):
        ResultRow.measured(case, "r", "latency", 1.0, "ms", status="error")
    with pytest.raises(ValueError, match="status must be one of"):
        ResultRow.measured(case, "r", "latency", 1.0, "ms", status="fine")


def test_cpu_peak_memory_grows_with_the_sequence(tmp_path):
    from rnnbench.harness.memory import cpu_peak_memory_mib, cpu_peak_memory_supported

    if cpu_peak_memory_supported() is not None:
        pytest.skip(cpu_peak_memory_supported())
    case = lambda T: Case("memory", "random", "numpy", "lstm", "cpu", "float64", 8, T, 64, 64, "fwd_bwd", 0)  # noqa: E731
    short, long = cpu_peak_memory_mib(case(16)), cpu_peak_memory_mib(case(512))
    # the LSTM keeps 6 (T, B, H) float64 arrays for BPTT: 512*8*64*8 B = 2 MiB each
    assert long - short > 6.0
    assert short >= 0.0
    assert pd.notna(long)


def test_a_forced_path_that_cannot_run_the_shape_is_skipped_with_the_reason():
    """triton-persistent holds all of W_hh in one program: at H=100 it cannot, which is a limit of
    the design (recorded ``skipped`` with the planner's reason), not an error."""
    from rnnbench.harness.measure import measure_case

    case = Case("numerics", "random", "triton-persistent", "lstm", "cpu", "float32", 2, 3, 4, 100, "fwd", 0)
    rows = measure_case(case, "r")
    assert [row.status for row in rows] == ["skipped"]
    assert "path='persistent' needs all of W_hh in one program" in rows[0].note
    fitting = Case("numerics", "random", "triton-persistent", "lstm", "cpu", "float32", 2, 3, 4, 12, "fwd", 0)
    assert [row.status for row in measure_case(fitting, "r")] == ["ok"]


def test_a_forced_path_whose_backward_cannot_run_the_shape_is_skipped(monkeypatch):
    """The backward plans a layout of its own: a forced path it cannot run skips the case too."""
    from rnnbench.harness.measure import measure_case
    from rnnbench.kernels import launch
    from rnnbench.kernels.plan import PathUnavailable

    planned = launch.make_plan

    def backward_refuses(*args, **kwargs):
        if args[6:7] == (True,) or kwargs.get("backward"):
            raise PathUnavailable("no backward here")
        return planned(*args, **kwargs)

    monkeypatch.setattr(launch, "make_plan", backward_refuses)
    case = Case("numerics", "random", "triton-stepwise", "lstm", "cpu", "float32", 2, 3, 4, 20, "fwd", 0)
    rows = measure_case(case, "r")
    assert [row.status for row in rows] == ["skipped"] and rows[0].note == "backward: no backward here"


@pytest.mark.parametrize("mode, expected", [("fwd", (False, False)), ("fwd_bwd", (True, True))])
def test_inference_forward_runs_the_module_in_eval_mode_without_grad(mode, expected):
    """``fwd`` is what an inference user runs (torch.nn's cuDNN RNNs take their inference algorithm
    only in eval mode): eval mode and no grad during the call, the module's mode restored after."""
    import torch

    from rnnbench.harness.problems import Problem

    seen = []

    class Recording(torch.nn.LSTM):
        def forward(self, *args):
            seen.append((self.training, torch.is_grad_enabled()))
            return super().forward(*args)

    workload = TorchRecurrentWorkload(Problem("lstm", 3, 2, 4, 5, seed=0), "float32", "cpu", Recording)
    workload.callable(mode)()
    assert seen == [expected]
    assert workload.module.training


def test_a_switched_workload_runs_every_call_inside_its_switches_and_is_otherwise_the_workload():
    """``SwitchedWorkload``: the callable and ``outputs`` run with each switch entered (in order) and
    left after, also when the call raises; the callable is made outside them; other attributes are
    the wrapped workload's. ``triton-train-switches`` wraps the planner's LSTM in the plan's four
    training switches."""
    import contextlib

    from rnnbench.harness.backends import TRAINING_SWITCHES, _training_switches_factory
    from rnnbench.harness.workloads import SwitchedWorkload

    events = []

    def switch(name):
        @contextlib.contextmanager
        def entered():
            events.append(f"enter {name}")
            try:
                yield
            finally:
                events.append(f"leave {name}")
        return entered

    class Inner:
        problem = "the problem"

        def callable(self, mode):
            events.append(f"made {mode}")
            return lambda: events.append("ran") or "result"

        def outputs(self, mode):
            events.append(f"outputs {mode}")
            if mode == "bad":
                raise RuntimeError("bad")
            return {"y": 1}

    workload = SwitchedWorkload(Inner(), [switch("a"), switch("b")])
    run = workload.callable("fwd_bwd")
    assert events == ["made fwd_bwd"]
    assert run() == "result" and workload.outputs("fwd") == {"y": 1} and workload.problem == "the problem"
    assert events[1:] == ["enter a", "enter b", "ran", "leave b", "leave a",
                          "enter a", "enter b", "outputs fwd", "leave b", "leave a"]
    with pytest.raises(RuntimeError, match="bad"):
        workload.outputs("bad")
    assert events[-2:] == ["leave b", "leave a"]

    from rnnbench.harness.problems import Problem
    from rnnbench.kernels import switches

    seen = []
    train = _training_switches_factory(Problem("lstm", 3, 2, 4, 8, seed=0), "float32", "cpu")
    assert [switch.args for switch in train.switches] == [(True,)] * 4
    assert [switch.func.__name__ for switch in train.switches] == list(TRAINING_SWITCHES)
    with train._switched():
        seen.append((switches.GLUON_BACKWARD_STREAMED, switches.GLUON_TAGGED_TRAINING,
                     switches.OVERLAPPED_GRADIENTS, switches.GLUON_OVERLAPPED_PROJECTION))
    assert seen == [(True, True, True, True)]
    assert not (switches.GLUON_BACKWARD_STREAMED or switches.GLUON_TAGGED_TRAINING
                or switches.OVERLAPPED_GRADIENTS or switches.GLUON_OVERLAPPED_PROJECTION)
    assert train.callable("fwd_bwd")() is not None  # the interpreter's LSTM runs with the switches (none applies)


def test_a_switched_workload_survives_a_pickle_round_trip():
    """What a process pool or Ray would do to it: no recursion through the delegating attributes."""
    import pickle
    from functools import partial

    from rnnbench.harness.workloads import SwitchedWorkload
    from rnnbench.kernels.switches import overlapped_gradients

    copy = pickle.loads(pickle.dumps(SwitchedWorkload({"a": 1}, [partial(overlapped_gradients, True)])))
    assert copy.workload == {"a": 1} and copy.keys() == {"a": 1}.keys()
