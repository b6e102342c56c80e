"""The asv suite (``asv.conf.json``, ``benchmarks/``): asv accepts it, and its benchmarks run or skip.

The benchmarks are wrappers over the harness, so these tests check the wrapping: every backend in a
grid is registered, a CPU backend builds and runs, and a backend that cannot run on this machine is
skipped with asv's ``SkipNotImplemented`` (keeping the grid the same on every machine).
"""

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from asv_runner.benchmarks.mark import SkipNotImplemented
from threadpoolctl import threadpool_limits

from benchmarks import recurrent
from rnnbench.harness.problems import RECURRENT_FAMILIES
from rnnbench.harness.backends import get_backend

REPO_ROOT = Path(__file__).resolve().parent.parent
ASV = Path(sys.executable).parent / "asv"
HAS_CUDA = torch.cuda.is_available()


@pytest.fixture
def restored_thread_limits():
    """The CPU benchmark pins torch and BLAS to one thread for the process; undo it for later tests."""
    torch_threads = torch.get_num_threads()
    with threadpool_limits(limits=None):  # restores the BLAS limits found here on exit
        yield
    torch.set_num_threads(torch_threads)


@pytest.mark.skipif(not ASV.exists(), reason=f"asv is not installed next to the interpreter ({ASV} is missing)")
def test_asv_check_accepts_the_suite():
    completed = subprocess.run([str(ASV), "check", "--python=same"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, f"asv check failed:\n{completed.stdout}\n{completed.stderr}"
    assert "No problems found" in completed.stdout


@pytest.mark.parametrize("backends", [recurrent.CPU_BACKENDS, recurrent.CUDA_BACKENDS], ids=["cpu_grid", "cuda_grid"])
def test_grid_names_registered_recurrent_backends(backends):
    assert set(recurrent.FAMILIES) == set(RECURRENT_FAMILIES)
    for name in backends:
        assert set(recurrent.FAMILIES) <= set(get_backend(name).families), name


@pytest.mark.parametrize("mode", ["fwd", "fwd_bwd"])
def test_cpu_benchmark_builds_and_runs_a_workload(mode, restored_thread_limits):
    benchmark = recurrent.RecurrentCPU()
    benchmark.setup("numpy", "lstm", mode)
    outputs = benchmark.call()
    # the NumPy workload returns its forward outputs (and gradients for fwd_bwd) by name
    assert set(outputs) >= ({"y", "h_n", "c_n"} | ({"dx", "dw_hh"} if mode == "fwd_bwd" else set()))
    assert outputs["y"].shape == (recurrent.CPU_SHAPE["seq_len"], recurrent.CPU_SHAPE["batch"],
                                  recurrent.CPU_SHAPE["hidden_size"])
    benchmark.time_workload("numpy", "lstm", mode)


def test_benchmarks_go_through_the_correctness_gate(monkeypatch, restored_thread_limits):
    from rnnbench.harness.correctness import Comparison

    checked = []

    def failing_gate(case, workload):
        checked.append(case)
        return Comparison(1.0, "y", False, "worst y: 100 of tolerance"), "vs numpy float64 on cpu; worst y"

    monkeypatch.setattr(recurrent, "check_correctness", failing_gate)
    with pytest.raises(recurrent.IncorrectWorkload, match="failed the correctness gate"):
        recurrent.RecurrentCPU().setup("numpy", "rnn", "fwd")
    assert checked and checked[0].backend == "numpy" and checked[0].experiment == "speed"


def test_cpu_benchmark_skips_triton(restored_thread_limits):
    with pytest.raises(SkipNotImplemented, match="triton"):
        recurrent.RecurrentCPU().setup("triton", "rnn", "fwd")


@pytest.mark.skipif(HAS_CUDA, reason="checks the skip on machines without CUDA")
@pytest.mark.parametrize("backend", recurrent.CUDA_BACKENDS)
def test_cuda_benchmark_skips_without_cuda(backend):
    with pytest.raises(SkipNotImplemented, match="CUDA is not available"):
        recurrent.RecurrentCUDA().setup(backend, "lstm", "fwd")


@pytest.mark.cuda
def test_cuda_benchmark_tracks_a_latency():
    benchmark = recurrent.RecurrentCUDA()
    benchmark.setup("torch", "rnn", "fwd")
    latency = benchmark.track_cuda_latency_ms("torch", "rnn", "fwd")
    assert math.isfinite(latency) and latency > 0


def test_driver_overhead_benchmark_measures_the_serial_runner():
    from benchmarks import driver

    assert len(driver.no_op_suite(7).cases) == 7
    per_case = driver.overhead_per_case_ms("serial", short=5, long=25)
    assert math.isfinite(per_case) and per_case < 1000
