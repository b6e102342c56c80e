"""Experiments as plug-ins: the declared interface, a case's status from its primary row, and
task parameters in the one tidy results table."""

from __future__ import annotations

import math
import textwrap

import pytest

from rnnbench.harness import experiments
from rnnbench.harness.cases import Case, decode_params, encode_params
from rnnbench.harness.cli import main
from rnnbench.harness.experiments.base import Experiment
from rnnbench.harness.measure import case_status, measure_case, primary_key
from rnnbench.harness.results import ResultRow, read_results
from rnnbench.harness.runner import run_suite
from rnnbench.harness.suites import load_suite, parse_suite


def _case(**overrides) -> Case:
    fields = dict(experiment="speed", task="random", backend="torch", family="rnn", device="cpu", dtype="float32",
                  batch=2, seq_len=3, input_size=4, hidden_size=5, mode="fwd", seed=0)
    return Case(**{**fields, **overrides})


def test_status_comes_from_the_primary_row_not_the_last_one():
    case = _case()
    rows = [
        ResultRow.measured(case.with_experiment("numerics"), "r", "max_abs_err", 1e-7, ""),
        ResultRow.measured(case, "r", "latency", 1.5, "ms"),
        ResultRow.missing(case, "r", "latency_cudagraph", "ms", "error", "graph capture failed"),
    ]
    assert case_status(case, rows) == "ok"
    assert case_status(case, rows[:1]) == "error"  # no primary row at all


def _plugin(measure, **declared) -> Experiment:
    return Experiment(name="probe", metric="answer", unit="1", description="test double", measure=measure, **declared)


@pytest.fixture
def probe_experiment(monkeypatch):
    """Registers a test experiment named ``probe``; the test sets what it measures."""

    def install(experiment: Experiment) -> None:
        monkeypatch.setitem(experiments.EXPERIMENTS, experiment.name, experiment)

    return install


def test_a_new_experiment_is_one_declaration(probe_experiment):
    def measure(case, workload, run_id):
        assert workload is None  # uses_workload=False: the experiment builds what it needs
        return [ResultRow.measured(case, run_id, "answer", 42, "1"),
                ResultRow.missing(case, run_id, "extra", "1", "error", "an optional extra failed")]

    probe_experiment(_plugin(measure, gated=False, uses_workload=False))
    case = _case(experiment="probe")
    rows = measure_case(case, "r")
    assert [row.metric for row in rows] == ["answer", "extra"]
    assert case_status(case, rows) == "ok"
    assert rows[0].host and rows[0].device_name
    assert primary_key(case) == rows[0].key


def test_a_gated_experiment_is_not_measured_when_the_gate_fails(probe_experiment, monkeypatch):
    from rnnbench.harness import measure as measure_module
    from rnnbench.harness.correctness import Comparison

    probe_experiment(_plugin(lambda case, workload, run_id: pytest.fail("measured despite a failed gate")))
    monkeypatch.setattr(measure_module, "check_correctness",
                        lambda case, workload: (Comparison(0.5, "y", False, "worst y"), "planted failure"))
    case = _case(experiment="probe")
    rows = measure_case(case, "r")
    assert [(row.case.experiment, row.status) for row in rows] == [("numerics", "incorrect"), ("probe", "incorrect")]
    assert case_status(case, rows) == "incorrect" and math.isnan(rows[-1].value)


def test_an_experiment_that_raises_becomes_an_error_primary_row(probe_experiment):
    def measure(case, workload, run_id):
        raise RuntimeError("probe exploded")

    probe_experiment(_plugin(measure, gated=False))
    case = _case(experiment="probe")
    rows = measure_case(case, "r")
    assert case_status(case, rows) == "error" and "probe exploded" in rows[-1].note
    assert rows[-1].key == primary_key(case)


def test_an_experiments_requirement_skips_the_case_with_its_reason(probe_experiment):
    probe_experiment(_plugin(lambda *args: [], requirement=lambda case: "no probe on this machine"))
    rows = measure_case(_case(experiment="probe"), "r")
    assert [(row.status, row.note) for row in rows] == [("skipped", "no probe on this machine")]


def test_params_are_canonical_json_and_part_of_the_identity():
    assert encode_params({"delay": 20, "alpha": 0.5}) == '{"alpha":0.5,"delay":20}'
    assert encode_params({}) == ""
    assert decode_params(encode_params({"b": True, "a": "x"})) == {"a": "x", "b": True}
    assert _case(params={"delay": 1}) != _case(params={"delay": 2})
    assert _case(params={"a": 1, "b": 2}) == _case(params=(("b", 2), ("a", 1)))
    with pytest.raises(ValueError, match="parameter 'delay' must be a finite number"):
        _case(params={"delay": [1, 2]})
    with pytest.raises(ValueError, match="must be a finite number"):
        _case(params={"lr": float("nan")})


PARAMS_SUITE = """
[[cases]]
experiments = ["probe"]
task = "adding"
backends = ["torch"]
families = ["lstm"]
modes = ["fwd_bwd"]
seq_len = [7]
batch = [2]
hidden_size = [3]
[cases.params]
delay = [10, 20]
clip = 1.0
"""


def test_suite_params_expand_and_round_trip_through_results_csv(probe_experiment, tmp_path):
    def measure(case, workload, run_id):
        return [ResultRow.measured(case, run_id, "answer", case.param_dict["delay"], "1")]

    probe_experiment(_plugin(measure, gated=False, uses_workload=False, check_case=lambda case: None))
    path = tmp_path / "params.toml"
    path.write_text(textwrap.dedent(PARAMS_SUITE))
    suite = load_suite(str(path))
    assert sorted(case.param_dict["delay"] for case in suite.cases) == [10, 20]
    run_suite(suite, tmp_path / "out", progress=False)
    frame = read_results(tmp_path / "out")
    assert sorted(frame.params) == ['{"clip":1.0,"delay":10}', '{"clip":1.0,"delay":20}']
    assert sorted(frame.value) == [10.0, 20.0]
    again = run_suite(suite, tmp_path / "out", resume=True, progress=False)
    assert again.skipped_as_finished == 2 and not again.statuses


@pytest.mark.parametrize("block, message", [
    ("params = {delay = 3}", "experiment 'speed' takes no parameters but the problem options bidirectional, packed; got delay"),
    ("task = 'adding'", "experiment 'speed' task must be 'random'"),
    ("params = {delay = []}", "params.delay must not be empty"),
    ("params = 5", "params must be a table"),
    ("params = {delay = {x = 1}}", "parameter 'delay' must be a finite number"),
])
def test_bad_params_exit_2_naming_the_value(tmp_path, capsys, block, message):
    path = tmp_path / "bad.toml"
    path.write_text("[[cases]]\nexperiments=['speed']\nbackends=['torch']\nseq_len=[1]\nbatch=[1]\nhidden_size=[4]\n" + block + "\n")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert message in capsys.readouterr().err


def test_every_registered_experiment_declares_a_primary_metric_and_unit():
    for name, experiment in experiments.EXPERIMENTS.items():
        assert experiment.name == name and experiment.metric and experiment.description
        assert isinstance(experiment.unit, str)
    training = {"accuracy", "gradient"}  # they train on a task; the others time one call on a random problem
    shape = {"backends": ["torch"], "families": ["rnn"], "seq_len": [2], "batch": [1], "hidden_size": [3]}
    suite = parse_suite("t", {"cases": [
        {"experiments": sorted(set(experiments.EXPERIMENTS) - training), "modes": ["fwd"], **shape},
        {"experiments": sorted(training), "modes": ["train"], "task": "adding", **shape},
    ]})
    assert {case.experiment for case in suite.cases} == set(experiments.EXPERIMENTS)


def test_error_over_time_against_the_reference_at_geometric_steps(tmp_path):
    from rnnbench.harness.experiments.numerics_over_time import sampled_steps

    assert sampled_steps(1) == [1] and sampled_steps(5) == [1, 2, 3, 4, 5]
    steps = sampled_steps(1000)
    assert steps[0] == 1 and steps[-1] == 1000 and len(steps) <= 25 and steps == sorted(set(steps))
    suite = parse_suite("t", {"cases": [{"experiments": ["numerics_over_time"], "backends": ["torch", "eager"],
                                         "families": ["lstm"], "modes": ["fwd"], "dtypes": ["float32", "bfloat16"],
                                         "seq_len": [40], "batch": [3], "hidden_size": [6]}]})
    run_suite(suite, tmp_path / "out", progress=False)
    frame = read_results(tmp_path / "out")
    assert (frame.status == "ok").all()
    per_step = frame[frame.params != ""]
    assert set(per_step.metric) == {"err_p50", "err_p99", "err_max"}
    overall = frame[frame.params == ""].set_index(["backend", "dtype"]).value
    for (backend, dtype), worst in overall.items():
        steps = per_step[(per_step.backend == backend) & (per_step.dtype == dtype) & (per_step.metric == "err_max")]
        assert worst == steps.value.max()
    # bf16 rounds every step's state to 8 significant bits; fp32 stays near its epsilon
    assert overall["torch", "bfloat16"] > 1e-4 > 1e-5 > overall["torch", "float32"]


def test_error_over_time_refuses_encoders_and_backward_mode(tmp_path, capsys):
    for block, message in (("families=['lstm']\nmodes=['fwd_bwd']", "mode must be 'fwd'"),):
        path = tmp_path / "bad.toml"
        path.write_text("[[cases]]\nexperiments=['numerics_over_time']\nbackends=['torch']\nseq_len=[3]\nbatch=[1]\n"
                        "hidden_size=[4]\n" + block + "\n")
        assert main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
        assert message in capsys.readouterr().err
    path = tmp_path / "enc.toml"
    path.write_text("[[cases]]\nexperiments=['numerics_over_time']\nbackends=['bow']\nmodes=['fwd']\nseq_len=[3]\n"
                    "batch=[1]\nhidden_size=[4]\n")
    assert main(["run", str(path), "--out", str(tmp_path / "out2"), "--no-progress"]) == 2
    assert "needs a recurrent family" in capsys.readouterr().err
