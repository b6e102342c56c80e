"""`rnnbench precompile`: which cases it compiles, its refusals, and (on CUDA) that it compiles."""

from __future__ import annotations

import dataclasses

import pytest

from rnnbench.harness.cli import main
from rnnbench.harness.precompile import WARM_SEQ_LEN, cases_to_compile, precompile
from rnnbench.harness.suites import load_suite


def test_one_short_case_per_distinct_triton_kernel_setup():
    cases = load_suite("gpu-core").cases
    chosen = cases_to_compile(cases)
    triton_cases = [case for case in cases if case.backend.startswith("triton")]
    setups = {(c.backend, c.family, c.dtype, c.batch, c.input_size, c.hidden_size, c.mode, c.params)
              for c in triton_cases}
    assert len(chosen) == len(setups) > 0  # speed and memory share kernels; torch cases compile nothing
    assert {case.backend for case in chosen} == {"triton", "triton-gluon"}  # each forced path its own kernels
    assert {case.seq_len for case in chosen} == {WARM_SEQ_LEN}
    assert {(c.backend, c.family, c.dtype, c.batch, c.input_size, c.hidden_size, c.mode, c.params)
            for c in chosen} == setups


def test_sequence_length_keeps_the_divisibility_triton_specializes_on():
    assert WARM_SEQ_LEN % 16 == 0


def test_cpu_cases_compile_nothing():
    cases = load_suite("smoke").cases
    assert cases_to_compile(cases) == []
    on_cuda = [dataclasses.replace(case, device="cuda") for case in cases if case.backend == "triton"]
    assert cases_to_compile(on_cuda)  # the same cases on CUDA would be compiled


def test_cli_refuses_a_bad_job_count(capsys):
    assert main(["precompile", "gpu-core", "--jobs", "0"]) == 2
    assert "--jobs must be a positive integer, got 0" in capsys.readouterr().err


def test_cli_says_why_nothing_is_compiled(capsys):
    assert main(["precompile", "smoke"]) == 0
    assert "nothing to compile" in capsys.readouterr().out


@pytest.mark.cuda
def test_compiles_a_small_suite_on_cuda():
    cases = [case for case in load_suite("gpu-core").cases if case.hidden_size == 64 and case.batch == 1]
    todo = cases_to_compile(cases)
    results = precompile(todo, jobs=2, report=lambda line: None)
    assert len(results) == len(todo) > 0
    assert [result.error for result in results if result.error] == []
