"""The kernels' switches judged on a GPU session's folder (:mod:`rnnbench.harness.report.switch_trials`):
synthetic JUnit XMLs, a step ablation and a gpu-fused run; every verdict, the renames of older
sessions, and the ``rnnbench switches`` command."""

import csv

import pandas as pd
import pytest

from rnnbench.harness.cli import main
from rnnbench.harness.report.switch_trials import (
    ABLATION, FAILED, FUSED_SUITE, MAIN_STAGE, NOT_RUN, PASSED, TRIALS, SwitchTrial, judge, stage_result, verdict,
)
from rnnbench.harness.results import COLUMNS as RESULT_COLUMNS
from rnnbench.kernels import switches
from rnnbench.kernels.step_bench import COLUMNS as ABLATION_COLUMNS
from rnnbench.kernels.step_bench import REAL_PATHS


def _junit(directory, stage, tests=4, failures=0, errors=0, skipped=0, failing=()):
    name = "gpu-tests.xml" if stage == MAIN_STAGE else f"gpu-tests-{stage}.xml"
    cases = "".join(f'<testcase classname="t" name="{case}"><failure message="boom"/></testcase>' for case in failing)
    (directory / name).write_text(
        f'<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="{errors}" '
        f'failures="{failures}" skipped="{skipped}" tests="{tests}">{cases}</testsuite></testsuites>')


def _ablation(directory, rows):
    """``rows``: ``(variant, hidden, batch, median, q25, q75)`` measured on the whole grid."""
    with open(directory / "step-ablation.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=ABLATION_COLUMNS)
        writer.writeheader()
        for variant, hidden, batch, median, q25, q75 in rows:
            writer.writerow({column: "" for column in ABLATION_COLUMNS} | dict(
                device_name="GPU X", cell="lstm", dtype="bfloat16", hidden_size=hidden, batch=batch, variant=variant,
                programs=48, planned_programs=48, steps=1024, us_per_step=median, q25_us=q25, q75_us=q75,
                source="measured"))


def _suite(directory, rows):
    """``rows``: ``(backend, mode, hidden, batch, ms a call)``, a spread of 1 % either side."""
    run = directory / FUSED_SUITE
    run.mkdir()
    with open(run / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=RESULT_COLUMNS)
        writer.writeheader()
        for backend, mode, hidden, batch, ms in rows:
            writer.writerow({column: "" for column in RESULT_COLUMNS} | dict(
                run_id="r", experiment="speed", task="random", backend=backend, family="lstm", device="cuda",
                dtype="bfloat16", batch=batch, seq_len=1024, input_size=hidden, hidden_size=hidden, mode=mode, seed=0,
                metric="latency_cudagraph", value=ms, unit="ms", q25=ms * 0.99, q75=ms * 1.01, n=10, status="ok",
                host="h", device_name="GPU X"))


def _session(tmp_path):
    """A session where: the thread poll is faster at both shapes with its tests passed (set); the
    two MMA chains are faster at one shape and slower at the other (mixed); the groups are slower
    (keep); copies of 4 are within the spread (tie); the streamed copies are faster but failed a
    test; the local gates are faster with their own stage missing; the overlapped gradients are
    faster in gpu-fused's fwd_bwd with their tests passed; every inference switch at once is faster in
    gpu-fused's fwd with the local gates' and the overlapped projection's stages missing; nothing else
    was timed."""
    directory = tmp_path / "h200"
    directory.mkdir()
    for stage in (MAIN_STAGE, "tagged", "thread-poll", "chains", "groups", "overlapped-grads"):
        _junit(directory, stage)
    _junit(directory, "streamed", failures=1, failing=("test_streamed_is_bit_for_bit",))
    _ablation(directory, [
        ("real_gluon_tagged", 768, 16, 2.4, 2.38, 2.42), ("real_gluon_tagged", 256, 16, 1.5, 1.48, 1.52),
        ("real_gluon_tagged_thread_poll", 768, 16, 2.0, 1.98, 2.02),
        ("real_gluon_tagged_thread_poll", 256, 16, 1.3, 1.28, 1.32),
        ("real_gluon_tagged_two_chains", 768, 16, 2.2, 2.18, 2.22),
        ("real_gluon_tagged_two_chains", 256, 16, 1.7, 1.68, 1.72),
        ("real_gluon_tagged_groups_4", 768, 16, 2.6, 2.58, 2.62),
        ("real_gluon", 768, 16, 2.5, 2.4, 2.6), ("real_gluon_copies_8", 768, 16, 2.45, 2.35, 2.55),
        ("real_gluon_bwd", 768, 16, 3.8, 3.7, 3.9), ("real_gluon_bwd_streamed", 768, 16, 2.9, 2.85, 2.95),
        ("real_gluon_tagged_thread_poll_local_gates", 768, 16, 1.8, 1.78, 1.82),
    ])
    _suite(directory, [("triton", "fwd_bwd", 768, 16, 7.0), ("triton-overlapped-grads", "fwd_bwd", 768, 16, 6.0),
                       ("triton", "fwd", 768, 16, 2.6), ("triton-inference-switches", "fwd", 768, 16, 1.9)])
    return directory


def test_every_verdict_on_one_session(tmp_path):
    summary, detail = judge(_session(tmp_path))
    verdicts = dict(zip(summary.switch, summary.verdict))
    assert verdicts == {
        "GLUON_TILES_PER_COPY": "tie",
        "GLUON_FUSED_INPUT": "not measured",
        "GLUON_TAGGED_POLL_DELAY_NS": "not measured",
        "GLUON_MMA_CHAINS": "mixed: faster at 1, slower at 1 of 2 shapes",
        "GLUON_TAGGED_GROUPS": "keep",
        "GLUON_TAGGED_THREAD_POLL": "set GLUON_TAGGED_THREAD_POLL = True",
        "GLUON_LOCAL_GATES": "faster, but its tests did not run",
        "GLUON_BACKWARD_STREAMED": "tests failed",
        "GLUON_TAGGED_TRAINING": "not measured",
        "GRID_POLL_FIRST_WARP": "not measured",
        "GLUON_OVERLAPPED_PROJECTION": "not measured",
        "OVERLAPPED_GRADIENTS": "set OVERLAPPED_GRADIENTS = True",
        "GLUON_TAGGED_THREAD_POLL+GLUON_LOCAL_GATES+GLUON_OVERLAPPED_PROJECTION": "faster, but its tests did not run",
    }
    tests = dict(zip(summary.switch, summary.tests))
    assert tests["GLUON_BACKWARD_STREAMED"] == "streamed: 1 of 4 failed (test_streamed_is_bit_for_bit)"
    assert tests["GLUON_LOCAL_GATES"] == "tagged: 4 passed; thread-poll: 4 passed; local-gates: not run"
    poll = detail[detail.switch == "GLUON_TAGGED_THREAD_POLL"].set_index("shape")
    assert poll.ratio.to_dict() == pytest.approx({"lstm bfloat16 H=768 B=16": 2.0 / 2.4,
                                                  "lstm bfloat16 H=256 B=16": 1.3 / 1.5})
    assert poll.apart.all()
    grads = detail[detail.switch == "OVERLAPPED_GRADIENTS"]
    assert grads["shape"].tolist() == ["lstm bfloat16 H=768 B=16 T=1024 fwd_bwd"]
    assert grads.baseline_us.tolist() == pytest.approx([7.0 * 1000 / 1024])


def test_a_stage_passes_only_where_a_test_ran_and_none_failed(tmp_path):
    _junit(tmp_path, "tagged", tests=3, skipped=3)
    _junit(tmp_path, "chains", tests=3, errors=1, failing=("a", "b", "c", "d"))
    (tmp_path / "gpu-tests-groups.xml").write_text("<testsuites><testsuite")
    _junit(tmp_path, MAIN_STAGE, tests=5, skipped=1)
    assert stage_result(tmp_path, "tagged") == ("tagged: every test skipped", NOT_RUN)
    assert stage_result(tmp_path, "chains") == ("chains: 1 of 3 failed (a, b, c, ...)", FAILED)
    assert stage_result(tmp_path, "groups")[1] == NOT_RUN and "unreadable" in stage_result(tmp_path, "groups")[0]
    assert stage_result(tmp_path, MAIN_STAGE) == ("main: 4 passed", PASSED)
    assert stage_result(tmp_path, "streamed") == ("streamed: not run", NOT_RUN)


def test_a_failed_stage_outranks_any_timing():
    trial = SwitchTrial("GLUON_MMA_CHAINS", 2, ("chains",), ABLATION, "a", "b")
    faster = pd.DataFrame({"shape": ["s"], "baseline_us": [2.0], "candidate_us": [1.0], "ratio": [0.5],
                           "apart": [True]})
    assert verdict(trial, [FAILED], faster) == "tests failed"
    assert verdict(trial, [FAILED], faster.iloc[:0]) == "tests failed"
    assert verdict(trial, [PASSED], faster) == "set GLUON_MMA_CHAINS = 2"
    assert verdict(trial, [PASSED], faster.assign(apart=False)) == "tie"


def test_an_older_sessions_variants_are_judged_under_todays_names(tmp_path):
    """At 7caf667 ``real_gluon_tagged`` had four loaders: renamed away, the one loader's rows judge
    the poll delay against the right kernel; a rename of a variant the run lacks is refused."""
    directory = tmp_path / "old"
    directory.mkdir()
    _junit(directory, "tagged")
    _ablation(directory, [("real_gluon_tagged", 768, 16, 3.5, 3.45, 3.55),
                          ("real_gluon_tagged_one_loader", 768, 16, 2.36, 2.34, 2.38),
                          ("real_gluon_tagged_delayed", 768, 16, 3.2, 3.15, 3.25)])
    summary, _ = judge(directory)
    assert dict(zip(summary.switch, summary.verdict))["GLUON_TAGGED_POLL_DELAY_NS"].startswith("set")
    renames = {"real_gluon_tagged": "real_gluon_tagged_four_loaders", "real_gluon_tagged_one_loader": "real_gluon_tagged",
               "real_gluon_tagged_delayed": ""}
    summary, _ = judge(directory, renames)
    assert dict(zip(summary.switch, summary.verdict))["GLUON_TAGGED_POLL_DELAY_NS"] == "not measured"
    with pytest.raises(ValueError, match="not in the measured ablation"):
        judge(directory, {"real_gluon_nope": "x"})


def test_every_trial_names_a_switch_its_variant_sets_and_the_value_it_would_take():
    """The table cannot drift from the switches or the ablation's variants: each switch exists and
    is not already at the trial's value, and an ablation candidate's own field holds the value."""
    fields = {"GLUON_TILES_PER_COPY": "copy_tiles", "GLUON_TAGGED_POLL_DELAY_NS": "poll_delay_ns",
              "GLUON_MMA_CHAINS": "chains", "GLUON_TAGGED_GROUPS": "groups",
              "GLUON_TAGGED_THREAD_POLL": "thread_poll", "GLUON_LOCAL_GATES": "local_gates",
              "GLUON_BACKWARD_STREAMED": "streamed", "GLUON_TAGGED_TRAINING": "tagged",
              "GRID_POLL_FIRST_WARP": "first_warp"}
    for trial in TRIALS:
        assert all(hasattr(switches, name) for name in trial.names), trial.switch
        if trial.source == ABLATION:
            assert trial.baseline in REAL_PATHS and trial.candidate in REAL_PATHS
            assert getattr(REAL_PATHS[trial.candidate], fields[trial.switch]) == trial.value
        if all(getattr(switches, name) == trial.value for name in trial.names):
            pytest.fail(f"{trial.switch} is already {trial.value!r}: its trial decides nothing")


def test_the_command_writes_the_verdicts_and_refuses_a_missing_folder(tmp_path, capsys):
    directory = _session(tmp_path)
    out = tmp_path / "switches.md"
    assert main(["switches", str(directory), "--out", str(out)]) == 0
    text = out.read_text()
    assert "| GLUON_TAGGED_THREAD_POLL |" in text and "set GLUON_TAGGED_THREAD_POLL = True" in text
    assert main(["switches", str(tmp_path / "absent")]) == 2
    assert "no such session folder" in capsys.readouterr().err
    assert main(["switches", str(directory), "--renames", "nonsense"]) == 2
    assert "a variant rename is OLD=NEW" in capsys.readouterr().err


def _estimate(path, rows):
    """A step-ablation estimate: ``rows`` of ``(variant, hidden, batch, {term: µs})``."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=ABLATION_COLUMNS)
        writer.writeheader()
        for variant, hidden, batch, terms in rows:
            writer.writerow({column: "" for column in ABLATION_COLUMNS} | dict(
                cell="lstm", dtype="bfloat16", hidden_size=hidden, batch=batch, variant=variant, programs=48,
                planned_programs=48, us_per_step=sum(terms.values()), source="estimate sm_90")
                | {f"t_{term}": value for term, value in terms.items()})
    return path


def test_the_models_ratios_stand_beside_the_measured_ones_and_count_where_they_agree(tmp_path, capsys):
    """The thread poll (measured 0.83x at H=768, 0.87x at H=256, both apart): raw, the estimate has it
    slower at H=768 (more bar, less loader) and faster at H=256; calibrated with the barrier at 0.5x,
    faster at both. Copies of 8 (measured within the spread): no apart shape, nothing to count."""
    from rnnbench.kernels.calibration import Calibration

    directory = _session(tmp_path)
    estimate = _estimate(tmp_path / "estimate.csv", [
        ("real_gluon_tagged", 768, 16, {"loader": 1.0, "bar": 1.0}),
        ("real_gluon_tagged_thread_poll", 768, 16, {"loader": 0.8, "bar": 1.4}),
        ("real_gluon_tagged", 256, 16, {"loader": 1.0, "bar": 0.5}),
        ("real_gluon_tagged_thread_poll", 256, 16, {"loader": 0.8, "bar": 0.5}),
        ("real_gluon", 768, 16, {"mma": 1.0}), ("real_gluon_copies_8", 768, 16, {"mma": 1.1}),
    ])
    summary, detail = judge(directory, estimate_csv=estimate,
                            calibration=Calibration("sm_90", "GPU X", {"bar": 0.5}, 1.0, 1, 0.1, 0.1))
    poll = detail[detail.switch == "GLUON_TAGGED_THREAD_POLL"].set_index("shape")
    assert poll.raw_ratio["lstm bfloat16 H=768 B=16"] == pytest.approx(2.2 / 2.0)
    assert poll.calibrated_ratio["lstm bfloat16 H=768 B=16"] == pytest.approx(1.5 / 1.5)
    assert poll.raw_ratio["lstm bfloat16 H=256 B=16"] == pytest.approx(1.3 / 1.5)
    verdicts = summary.set_index("switch")["model on the measured side"]
    assert verdicts["GLUON_TAGGED_THREAD_POLL"] == "raw 1/2, calibrated 1/2"  # a ratio of 1 is not faster
    assert verdicts["GLUON_TILES_PER_COPY"] == "-" and verdicts["GLUON_MMA_CHAINS"] == "-"
    without, plain = judge(directory)
    assert "model on the measured side" not in without and "raw_ratio" not in plain
    # the command: --calibration only with --estimate; the Markdown names both files
    calibration = tmp_path / "calibration.json"
    Calibration("sm_90", "GPU X", {"bar": 0.25}, 1.0, 1, 0.1, 0.1).save(calibration)
    out = tmp_path / "switches.md"
    assert main(["switches", str(directory), "--calibration", str(calibration)]) == 2
    assert "give --estimate ESTIMATE_CSV too" in capsys.readouterr().err
    assert main(["switches", str(directory), "--estimate", str(estimate), "--calibration", str(calibration),
                 "--out", str(out)]) == 0
    text = out.read_text()
    assert f"calibrated by {calibration}" in text and "raw_ratio | calibrated_ratio" in text
    # bar at 0.25: the thread poll at H=768 is 0.8 + 0.35 against 1.25, faster, as measured
    assert "| GLUON_TAGGED_THREAD_POLL | lstm bfloat16 H=768 B=16 | 2.4 | 2.0 | 0.833 | True | 1.1 | 0.92 |" in text


def test_every_inference_switch_at_once_is_set_together_where_all_its_stages_passed(tmp_path):
    """The goal's candidate (gpu-fused's ``triton-inference-switches``, the whole call at the anchor)
    against the plan: faster with the tagged, thread-poll, local-gates and overlapped stages passed,
    the verdict sets its three switches together."""
    directory = _session(tmp_path)
    for stage in ("local-gates", "overlapped"):
        _junit(directory, stage)
    summary, detail = judge(directory)
    combined = "GLUON_TAGGED_THREAD_POLL+GLUON_LOCAL_GATES+GLUON_OVERLAPPED_PROJECTION"
    verdicts = dict(zip(summary.switch, summary.verdict))
    assert verdicts[combined] == ("set GLUON_TAGGED_THREAD_POLL and GLUON_LOCAL_GATES and GLUON_OVERLAPPED_PROJECTION "
                                  "= True")
    pair = detail[detail.switch == combined]
    assert pair.ratio.tolist() == pytest.approx([1.9 / 2.6])
