"""The GPU scripts under scripts/: they parse, and refuse what they cannot run, before any GPU work."""

from __future__ import annotations

import re
import subprocess
import time
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


def _fake_ab_run(tmp_path, pytest_status: int) -> str:
    """Run gpu-ab.sh in a scratch checkout with a stand-in Python that echoes its arguments and
    exits ``pytest_status`` for pytest (0 for everything else); returns the session log."""
    (tmp_path / ".candidate" / "rnnbench").mkdir(parents=True)
    (tmp_path / ".candidate" / "rnnbench" / "__init__.py").touch()
    (tmp_path / ".candidate" / "kernels").mkdir()
    (tmp_path / ".candidate" / "kernels" / "step_bench.py").touch()
    fake = tmp_path / "fakepy"
    fake.write_text(f'#!/bin/bash\necho "fakepy $*"\ncase "$*" in *pytest*) exit {pytest_status};; esac\nexit 0\n')
    fake.chmod(0o755)
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-ab.sh"), "h100", "200", "gpu-ab"], cwd=tmp_path,
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "GPU_PY": str(fake)})
    assert done.returncode == 0, done.stderr
    return (tmp_path / "reports" / "h100" / "ab-gpu-ab" / "session.log").read_text()


def test_ab_alternates_the_trees_and_runs_the_candidates_ablation(tmp_path):
    log = _fake_ab_run(tmp_path, 0)
    slices = [line.split("start ")[1].split(" ")[0] for line in log.splitlines() if "start suite-" in line]
    assert slices == ["suite-base-1", "suite-candidate-2", "suite-base-3", "suite-candidate-4"], log
    assert "start ablation-candidate" in log and "ablation-base: no step_bench in ." in log
    assert "start barrier" in log  # the base tree's barrier benchmark, both poll orders


def test_ab_drops_a_candidate_whose_tests_hang(tmp_path):
    """timeout's status 124 (the tests ran past their limit) means a hang: no candidate timing follows."""
    log = _fake_ab_run(tmp_path, 124)
    assert "base only" in log
    started = [line.split("start ")[1].split(" ")[0] for line in log.splitlines() if " start " in line]
    assert not [stage for stage in started if stage.startswith(("suite-candidate", "ablation-candidate"))], started
    assert "start suite-base-1" in log and "start suite-base-2" in log


def _fake_profile_run(tmp_path, budget: int) -> tuple[list[str], Path]:
    """gpu-session.sh with STAGES=profile, a stand-in ncu (records its arguments, writes the report
    it is asked for) and a stand-in Python; returns ncu's calls and the results folder."""
    calls = tmp_path / "ncu-calls"
    ncu = tmp_path / "ncu"
    ncu.write_text('#!/bin/bash\necho "$*" >> ' + str(calls) + '\n'
                   'while [ $# -gt 0 ]; do [ "$1" = -o ] && touch "$2.ncu-rep"; shift; done\necho "csv"\n')
    ncu.chmod(0o755)
    fake = tmp_path / "fakepy"
    fake.write_text('#!/bin/bash\necho "fakepy $*"\n')
    fake.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "GPU_PY": str(fake), "NCU": str(ncu), "STAGES": "profile",
           "PROFILES": "triton-gluon:768:16:fwd triton:512:64:fwd_bwd:lstm_backward.*kernel torch:768:16:fwd:RNN|LSTM:float16"}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-session.sh"), "h100", str(budget)], cwd=tmp_path,
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    return (calls.read_text().splitlines() if calls.exists() else []), tmp_path / "reports" / "h100"


def test_session_profile_stage_runs_each_case_under_ncu_and_exports_its_pages(tmp_path):
    """One ncu run per PROFILES case on the harness's profile target, with the case's kernel filter
    (the default one where the case names none), then the source and details pages as CSV."""
    runs, out = _fake_profile_run(tmp_path, 120)
    profiled = [run for run in runs if "--profile-from-start off" in run]
    assert len(profiled) == 3
    assert "regex:lstm_forward.*kernel" in profiled[0] and "regex:lstm_backward.*kernel" in profiled[1]
    assert ("-m rnnbench.harness.profile_target --backend triton-gluon --hidden-size 768 --batch 16 --mode fwd "
            "--dtype bfloat16") in profiled[0]
    assert "--backend triton --hidden-size 512 --batch 64 --mode fwd_bwd" in profiled[1]
    assert "regex:RNN|LSTM" in profiled[2] and "--backend torch --hidden-size 768 --batch 16 --mode fwd --dtype float16" in profiled[2]
    exports = [run for run in runs if run.startswith("-i ")]
    assert len(exports) == 6 and sum("--page source" in run for run in exports) == 3
    assert (out / "profile-torch-h768-b16-fwd-float16-sass.csv").exists()
    assert (out / "profile-triton-gluon-h768-b16-fwd-sass.csv").read_text() == "csv\n"
    assert (out / "profile-triton-h512-b64-fwd_bwd-details.csv").exists()


def test_session_profile_stage_keeps_within_its_budget(tmp_path):
    """Too little of the budget left (30 s are kept for packing the results): no case starts."""
    runs, out = _fake_profile_run(tmp_path, 40)
    assert runs == []
    assert "profile: no time left for triton-gluon-h768-b16-fwd" in (out / "session.log").read_text()


@pytest.mark.parametrize("budget, limit", [(45, "1[45]"), (35, None)])
def test_session_stages_keep_within_the_budget(tmp_path, budget, limit):
    """A stage's limit is at most what is left of the budget (30 s kept for packing), and a stage
    with less than 10 s left does not start: every stage running to its limit must not outlast the
    device tool's 10 minutes a call."""
    fake = tmp_path / "fakepy"
    fake.write_text('#!/bin/bash\nexit 0\n')
    fake.chmod(0o755)
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "latency_probe.py").write_text("")
    env = {"PATH": "/usr/bin:/bin", "GPU_PY": str(fake), "STAGES": "barrier latency"}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-session.sh"), "h100", str(budget)], cwd=tmp_path,
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    log = (tmp_path / "reports" / "h100" / "session.log").read_text()
    if limit is None:
        assert "no time left for barrier" in log and "no time left for latency" in log and "start " not in log, log
    else:
        assert re.search(rf"start barrier \(limit {limit} s\)", log) and re.search(rf"start latency \(limit {limit} s\)", log), log


@pytest.mark.parametrize("fused_tests_pass, tagged_tests_pass, chains_tests_pass, groups_tests_pass, overlapped_tests_pass, "
                         "thread_poll_tests_pass, local_gates_tests_pass, streamed_tests_pass, tagged_training_tests_pass",
                         [(True, True, True, True, True, True, True, True, True),
                          (False, True, True, True, True, True, True, True, True),
                          (True, False, True, True, True, True, True, True, True),
                          (False, False, True, True, True, True, True, True, True),
                          (True, True, False, True, True, True, True, True, True),
                          (True, True, True, False, True, True, True, True, True),
                          (True, True, True, True, False, True, True, True, True),
                          (True, True, True, True, True, False, True, True, True),
                          (True, True, True, True, True, True, False, True, True),
                          (True, True, True, True, True, True, True, False, True),
                          (True, False, True, True, True, True, True, False, True),
                          (True, True, True, True, True, True, True, True, False),
                          (True, True, True, True, False, False, True, True, True)])
def test_session_leaves_out_a_never_run_kernel_whose_tests_failed(tmp_path, fused_tests_pass, tagged_tests_pass,
                                                                  chains_tests_pass, groups_tests_pass,
                                                                  overlapped_tests_pass, thread_poll_tests_pass,
                                                                  local_gates_tests_pass, streamed_tests_pass,
                                                                  tagged_training_tests_pass):
    """The never-run fused input projection and tagged exchange have a test stage each (the tagged
    exchange's first, the main one and the thread poll's, then the other switches' at once); where one fails (or hangs), the step ablation leaves
    its variants out, the gpu-fused suite withholds its backend (RNNBENCH_WITHHOLD_BACKENDS; not run
    at all where both failed), the profiles skip it and, for the fused kernel, the memory stage its
    breakdown. The tagged forward's two MMA chains, its loader's threads polling alone, its
    warp-local gates, its loader's groups and the tagged training forward are tested only where the
    tagged exchange passed: each one's failure leaves out its own variants and nothing else (the
    thread polls' with the local gates too: both in one variant). The step trace traces the tagged
    forward only where its tests passed, the barrier one always. The overlapped input projection's
    tests have a stage of their own too; where they fail the gpu-fused suite withholds its backend
    (and the overlapped backward GEMMs' theirs: the stand-in fails both together; where any training
    switch's stage fails, the suite withholds triton-train-switches too). So do the Gluon backward's
    streamed copies, whatever the tagged exchange's tests did: where they fail the ablation leaves
    out their variant; and the tagged training forward's, where the tagged exchange's passed. The
    grid barrier polled by the first warp alone has a stage whatever the tagged exchange's tests did
    (the stand-in fails it with the streamed copies'): where it fails the ablation leaves out its
    five kernels. The suite withholds triton-inference-switches (every never-run inference switch at
    once) where any of the tagged exchange's, the thread polls', the local gates' or the overlapped
    projection's stages failed, and runs before the step ablation."""
    calls = tmp_path / "calls"
    fake = tmp_path / "fakepy"
    fake.write_text('#!/bin/bash\necho "$* withheld=${RNNBENCH_WITHHOLD_BACKENDS:-} '
                    'tagged_exchange=${RNNBENCH_TAGGED_EXCHANGE:-auto}" >> ' + str(calls) + '\n'
                    f'case "$*" in *"-m fused_input"*) exit {0 if fused_tests_pass else 1};; esac\n'
                    f'case "$*" in *"-m tagged_exchange"*) exit {0 if tagged_tests_pass else 124};; esac\n'
                    f'case "$*" in *"-m mma_chains"*) exit {0 if chains_tests_pass else 1};; esac\n'
                    f'case "$*" in *"-m tagged_groups"*) exit {0 if groups_tests_pass else 1};; esac\n'
                    f'case "$*" in *"-m tagged_thread_poll"*) exit {0 if thread_poll_tests_pass else 1};; esac\n'
                    f'case "$*" in *"-m local_gates"*) exit {0 if local_gates_tests_pass else 1};; esac\n'
                    f'case "$*" in *"-m streamed_copies"*) exit {0 if streamed_tests_pass else 1};; esac\n'
                    f'case "$*" in *"-m first_warp_poll"*) exit {0 if streamed_tests_pass else 1};; esac\n'
                    f'case "$*" in *"-m tagged_training"*) exit {0 if tagged_training_tests_pass else 1};; esac\n'
                    f'case "$*" in *"-m overlapped_projection"*) exit {0 if overlapped_tests_pass else 1};; esac\n'
                    f'case "$*" in *"-m overlapped_gradients"*) exit {0 if overlapped_tests_pass else 1};; esac\nexit 0\n')
    fake.chmod(0o755)
    for stand_in in ("kernels/step_bench.py", "kernels/latency_probe.py", "harness/memory_breakdown.py",
                     "harness/gemm_memory.py", "kernels/step_trace.py"):
        (tmp_path / stand_in).parent.mkdir(exist_ok=True)
        (tmp_path / stand_in).write_text("")
    ncu = tmp_path / "ncu"
    ncu.write_text('#!/bin/bash\necho "ncu $*" >> ' + str(calls) + '\n')
    ncu.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "GPU_PY": str(fake), "NCU": str(ncu),
           "STAGES": "tests latency ablation trace memory fused profile"}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-session.sh"), "h100", "500"], cwd=tmp_path,
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    runs = calls.read_text().splitlines()
    tests = [run for run in runs if run.startswith("-m pytest")]
    assert len(tests) == (12 if tagged_tests_pass else 7) and "-m tagged_exchange" in tests[0], tests
    # then the main stage, the thread poll's, then each other switch's at once
    # (test_session_runs_the_switches_test_stages_at_once)
    main = tests[1]
    assert ("-m not fused_input and not tagged_exchange and not mma_chains and not tagged_groups and not "
            "tagged_thread_poll and not local_gates and not tagged_training and not streamed_copies and not "
            "overlapped_projection and not overlapped_gradients and not first_warp_poll") in main
    markers = sorted(run.split(" -m ")[1].split(" ")[0] for run in tests[1:] if run != main)
    tagged_switches = ["tagged_thread_poll", "local_gates", "tagged_training", "mma_chains", "tagged_groups"]
    assert markers == sorted(["first_warp_poll", "streamed_copies", "overlapped_projection", "overlapped_gradients",
                              "fused_input"] + (tagged_switches if tagged_tests_pass else [])), tests
    # the planner takes the tagged exchange: after its tests failed, everything runs the grid barrier
    later = [run for run in runs[runs.index(tests[0]) + 1:] if "withheld=" in run]  # the Python runs
    assert later and all(run.endswith("tagged_exchange=off") != tagged_tests_pass for run in later), later
    ablation = next(run for run in runs if "rnnbench.kernels.step_bench" in run)
    tagged_variants = ["real_gluon_tagged", "real_gluon_tagged_delayed", "real_gluon_tagged_delayed_300",
                       "real_gluon_tagged_four_loaders", "real_gluon_tagged_two_chains", "real_gluon_tagged_groups_4",
                       "real_gluon_tagged_thread_poll", "real_gluon_tagged_thread_poll_delayed",
                       "real_gluon_tagged_local_gates", "real_gluon_tagged_thread_poll_local_gates",
                       "real_gluon_tagged_train"]
    own = ([] if chains_tests_pass else ["real_gluon_tagged_two_chains"]) + \
        ([] if thread_poll_tests_pass else ["real_gluon_tagged_thread_poll", "real_gluon_tagged_thread_poll_delayed"]) + \
        ([] if local_gates_tests_pass else ["real_gluon_tagged_local_gates"]) + \
        ([] if thread_poll_tests_pass and local_gates_tests_pass else ["real_gluon_tagged_thread_poll_local_gates"]) + \
        ([] if groups_tests_pass else ["real_gluon_tagged_groups_4"]) + \
        ([] if tagged_training_tests_pass else ["real_gluon_tagged_train"])
    left_out = (["real_gluon_fused_input"] if not fused_tests_pass else []) + (
        tagged_variants if not tagged_tests_pass else own) + ([] if streamed_tests_pass else [
            "real_first_warp", "real_bwd_first_warp", "real_gluon_first_warp", "real_gluon_bwd_first_warp",
            "real_gluon_train_first_warp", "real_gluon_bwd_streamed"])
    assert (f"--leave-out {','.join(left_out)}" in ablation) if left_out else "--leave-out" not in ablation, ablation
    (traced,) = [run for run in runs if "rnnbench.kernels.step_trace" in run]
    variants = ["real_gluon_tagged"] + (["real_gluon_tagged_thread_poll"] if thread_poll_tests_pass else []) \
        + ["real_gluon"] + (["real_gluon_tagged_local_gates"] if local_gates_tests_pass else []) \
        + (["real_gluon_tagged_two_chains"] if chains_tests_pass else []) \
        + (["real_gluon_tagged_groups_4"] if groups_tests_pass else []) if tagged_tests_pass else ["real_gluon"]
    assert f"--variants {','.join(variants)} " in traced, traced
    withheld = (["triton-fused"] if not fused_tests_pass else []) \
        + (["triton-tagged", "triton-thread-poll", "triton-local-gates"] if not tagged_tests_pass else []) \
        + (["triton-thread-poll"] if tagged_tests_pass and not thread_poll_tests_pass else []) \
        + (["triton-local-gates"] if tagged_tests_pass and not (thread_poll_tests_pass and local_gates_tests_pass)
           else []) \
        + (["triton-overlapped", "triton-overlapped-grads"] if not overlapped_tests_pass else []) \
        + ([] if tagged_tests_pass and thread_poll_tests_pass and local_gates_tests_pass and overlapped_tests_pass
           else ["triton-inference-switches"]) \
        + ([] if overlapped_tests_pass and streamed_tests_pass and tagged_tests_pass and tagged_training_tests_pass
           else ["triton-train-switches"])
    assert any(run.startswith("-m rnnbench.kernels.latency_probe --out reports/h100/latency.csv withheld="
                              + ",".join(withheld) + " ") for run in runs), runs
    fused_memory = [run for run in runs if "memory_breakdown" in run and "--fused-input" in run]
    fused_suite = [run for run in runs if "gpu-fused" in run]
    assert len(fused_memory) == (1 if fused_tests_pass else 0)
    assert len(fused_suite) == (2 if fused_tests_pass or tagged_tests_pass else 0), fused_suite
    # the whole call against cuDNN (the goal's measurement) before the kernels alone
    assert all(runs.index(run) < runs.index(ablation) for run in fused_suite), runs
    for run in fused_suite:
        assert ("triton-fused" in run.split("withheld=")[1]) != fused_tests_pass, run
        assert ("triton-tagged" in run.split("withheld=")[1]) != tagged_tests_pass, run
    profiled = [run for run in runs if run.startswith("ncu") and "--profile-from-start off" in run]
    assert ("--backend triton-tagged" in profiled[0]) == tagged_tests_pass, profiled[:1]
    assert any("--backend triton-fused" in run for run in profiled) == fused_tests_pass


def test_session_runs_the_switches_test_stages_at_once(tmp_path):
    """The tagged exchange's test stage runs alone first (its result decides how the others run), then
    the main one alone (its timed checks see the contention of every GPU run so far) and the tagged
    loader's thread poll's (its step traces' clock stamps too), then every other switch's stage at
    once, and the session waits for all of them: each pytest here takes a second, so one after the
    other they would take twelve. Each concurrent stage keeps its own limit (150 s), its own log and
    its own exit status (one failing leaves out its own variants only)."""
    fake = tmp_path / "fakepy"
    fake.write_text('#!/bin/bash\ncase "$*" in *"-m pytest"*) sleep 1;; esac\n'
                    'case "$*" in *"-m local_gates"*) exit 1;; esac\nexit 0\n')
    fake.chmod(0o755)
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "step_bench.py").write_text("")
    env = {"PATH": "/usr/bin:/bin", "GPU_PY": str(fake), "STAGES": "tests ablation"}
    started = time.monotonic()
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-session.sh"), "h100", "500"], cwd=tmp_path,
                          capture_output=True, text=True, env=env)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    out = tmp_path / "reports" / "h100"
    log = (out / "session.log").read_text().splitlines()
    starts = [index for index, line in enumerate(log) if re.search(r"\] start gpu-tests[ -]", line)]
    ends = [index for index, line in enumerate(log) if re.search(r"\] end gpu-tests[:-]", line)]
    assert len(starts) == len(ends) == 12, log
    alone = ("gpu-tests-tagged (limit 75 s)", "gpu-tests (limit 200 s)", "gpu-tests-thread-poll (limit 45 s)")
    for position, stage in enumerate(alone):
        assert f"start {stage}" in log[starts[position]] and ends[position] < starts[position + 1], log
    assert max(starts[3:]) < min(ends[3:]), log  # the nine other switches' at once
    assert all("(limit 150 s)" in log[index] for index in starts[3:]), log
    assert took < 9, took
    for name in ("tagged", "first-warp", "thread-poll", "local-gates", "tagged-training", "chains", "groups",
                 "streamed", "overlapped", "overlapped-grads", "fused"):
        assert (out / f"gpu-tests-{name}.log").exists(), name
    (ablation,) = [line for line in log if "start ablation" in line]
    assert "--leave-out real_gluon_tagged_local_gates,real_gluon_tagged_thread_poll_local_gates" in ablation, ablation


@pytest.mark.parametrize("tagged_status", [1, "no time"])
def test_a_later_call_leaves_out_what_the_first_calls_tests_failed(tmp_path, tagged_status):
    """A session in two calls (the device tool's 10 minutes a call): the first runs the tests, the
    second (STAGES without ``tests``, the first's reports in the tree) adds to the same session.log
    and takes each test stage's status from it. Where the tagged exchange's tests failed (or had no
    time left, status 124) and the local gates' failed, the second call's ablation leaves their
    variants out, its gpu-fused suite withholds their backends and everything runs the grid
    barrier; the stages that passed are not left out."""
    calls = tmp_path / "calls"
    fake = tmp_path / "fakepy"
    fake.write_text('#!/bin/bash\necho "$* withheld=${RNNBENCH_WITHHOLD_BACKENDS:-} '
                    'tagged_exchange=${RNNBENCH_TAGGED_EXCHANGE:-auto}" >> ' + str(calls) + '\n'
                    'case "$*" in *"-m tagged_exchange"*) exit 1;; *"-m local_gates"*) exit 1;; esac\nexit 0\n')
    fake.chmod(0o755)
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "step_bench.py").write_text("")
    log = tmp_path / "reports" / "h100" / "session.log"
    if tagged_status == 1:
        first = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-session.sh"), "h100", "500"], cwd=tmp_path,
                               capture_output=True, text=True,
                               env={"PATH": "/usr/bin:/bin", "GPU_PY": str(fake), "STAGES": "tests"})
        assert first.returncode == 0, first.stderr
    else:  # a first call whose budget ran out before the tagged exchange's stage
        log.parent.mkdir(parents=True)
        log.write_text("[3 s] no time left for gpu-tests-tagged (4 s of the budget)\n"
                       "[5 s] start gpu-tests-local-gates (limit 150 s): ...\n"
                       "[9 s] end gpu-tests-local-gates: exit 1 after 4 s\n")
    first_log = log.read_text()
    calls.write_text("")
    second = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-session.sh"), "h100", "500"], cwd=tmp_path,
                            capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "GPU_PY": str(fake), "STAGES": "ablation fused"})
    assert second.returncode == 0, second.stderr
    runs = calls.read_text().splitlines()
    assert not [run for run in runs if run.startswith("-m pytest")], runs
    ablation = next(run for run in runs if "rnnbench.kernels.step_bench" in run)
    left_out = ablation.split("--leave-out ")[1].split(" ")[0].split(",")
    assert {"real_gluon_tagged", "real_gluon_tagged_thread_poll", "real_gluon_tagged_local_gates"} <= set(left_out)
    assert "real_gluon_bwd_streamed" not in left_out and "real_gluon_fused_input" not in left_out, left_out
    assert all(run.endswith("tagged_exchange=off") for run in runs if not run.startswith("-c ")), runs
    withheld = ablation.split("withheld=")[1].split(" ")[0].split(",")
    assert {"triton-tagged", "triton-inference-switches"} <= set(withheld) and "triton-fused" not in withheld
    both = log.read_text()
    assert both.startswith(first_log) and "--- another call: STAGES=ablation fused" in both, both


@pytest.mark.parametrize("earlier_log", [None, "[3 s] start suite (limit 500 s): ...\n[9 s] done\n"],
                         ids=["no_log", "log_without_tests"])
def test_a_call_without_tests_or_an_earlier_log_leaves_every_never_run_kernel_out(tmp_path, earlier_log):
    """A call whose STAGES lack ``tests`` on a tree without an earlier call's session.log (its
    reports not unpacked), or with one of a call that ran no test stage, has no test results: the
    never-run switches' ablation variants are left out and their gpu-fused backends withheld, as if
    their tests had failed, while the shipped tagged exchange runs as the planner has it."""
    calls = tmp_path / "calls"
    fake = tmp_path / "fakepy"
    fake.write_text('#!/bin/bash\necho "$* withheld=${RNNBENCH_WITHHOLD_BACKENDS:-} '
                    'tagged_exchange=${RNNBENCH_TAGGED_EXCHANGE:-auto}" >> ' + str(calls) + '\nexit 0\n')
    fake.chmod(0o755)
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "step_bench.py").write_text("")
    if earlier_log is not None:
        (tmp_path / "reports" / "h100").mkdir(parents=True)
        (tmp_path / "reports" / "h100" / "session.log").write_text(earlier_log)
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-session.sh"), "h100", "500"], cwd=tmp_path,
                          capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "GPU_PY": str(fake), "STAGES": "ablation fused"})
    assert done.returncode == 0, done.stderr
    runs = calls.read_text().splitlines()
    ablation = next(run for run in runs if "rnnbench.kernels.step_bench" in run)
    left_out = set(ablation.split("--leave-out ")[1].split(" ")[0].split(","))
    assert {"real_gluon_fused_input", "real_gluon_tagged_thread_poll", "real_gluon_tagged_local_gates",
            "real_gluon_bwd_streamed", "real_gluon_first_warp", "real_gluon_tagged_train"} <= left_out, left_out
    assert "real_gluon_tagged" not in left_out
    withheld = set(ablation.split("withheld=")[1].split(" ")[0].split(","))
    assert {"triton-fused", "triton-thread-poll", "triton-local-gates", "triton-inference-switches",
            "triton-overlapped", "triton-train-switches"} <= withheld and "triton-tagged" not in withheld, withheld
    assert all(run.endswith("tagged_exchange=auto") for run in runs if not run.startswith("-c ")), runs
    log = (tmp_path / "reports" / "h100" / "session.log").read_text()
    assert "no earlier call's test results" in log, log
