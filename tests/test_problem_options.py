"""Bidirectional and packed problems: every recurrent backend measured against torch.nn in float64
with the same option, through the same correctness gate as plain problems."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from rnnbench.harness import backends
from rnnbench.harness.cli import main
from rnnbench.harness.problems import Problem
from rnnbench.harness.registry import Backend
from rnnbench.harness.results import read_results
from rnnbench.harness.runner import run_suite
from rnnbench.harness.suites import parse_suite
from rnnbench.harness.workloads import TorchRecurrentWorkload


def test_options_leave_the_plain_problems_arrays_unchanged():
    plain = Problem("lstm", 6, 3, 4, 5, seed=7).arrays
    both = Problem("lstm", 6, 3, 4, 5, seed=7, bidirectional=True, packed=True).arrays
    for name, array in plain.items():
        if name != "dy":  # widened to (T, B, 2H) for two directions
            np.testing.assert_array_equal(array, both[name])
    assert both["dy"].shape == (6, 3, 10) and both["w_hh_reverse"].shape == (20, 5)


@pytest.mark.parametrize("seq_len, batch", [(1, 1), (7, 5), (100, 64)])
def test_packed_lengths_are_mixed_and_one_row_is_full(seq_len, batch):
    lengths = Problem("rnn", seq_len, batch, 2, 3, seed=1, packed=True).arrays["lengths"]
    assert lengths.shape == (batch,) and lengths.dtype == np.int64
    assert lengths.max() == seq_len and lengths.min() >= -(-seq_len // 2)
    if batch > 8:
        assert len(set(lengths.tolist())) > 1


def _options_suite(options: dict, backends_: list[str], dtypes=("float32",)) -> dict:
    return {"cases": [{"experiments": ["numerics"], "backends": backends_, "modes": ["fwd", "fwd_bwd"],
                       "dtypes": list(dtypes), "seq_len": [7], "batch": [3], "hidden_size": [5], "input_size": [4],
                       "params": options}]}


@pytest.mark.parametrize("options", [{"bidirectional": True}, {"packed": True}, {"bidirectional": True, "packed": True}])
def test_every_recurrent_backend_matches_torch_float64_with_the_option(tmp_path, options):
    suite = parse_suite("t", _options_suite(options, ["numpy", "eager", "torch", "triton"]))
    run_suite(suite, tmp_path, progress=False)
    frame = read_results(tmp_path)
    numpy_rows = frame[frame.backend == "numpy"]
    assert (numpy_rows.status == "skipped").all() and numpy_rows.note.str.contains("does not implement").all()
    measured = frame[frame.backend != "numpy"]
    assert len(measured) == 3 * 2 * 2 and (measured.status == "ok").all(), measured[["backend", "status", "note"]]
    assert measured.note.str.contains("vs torch float64 on cpu").all()
    assert (measured.value < 1e-5).all()


def test_the_gate_catches_a_backend_that_ignores_the_lengths(tmp_path, monkeypatch):
    import torch

    def runs_every_row_to_the_end(problem, dtype, device):
        return TorchRecurrentWorkload(replace(problem, packed=False), dtype, device, torch.nn.LSTM)

    monkeypatch.setitem(backends._CATALOGUE, "unpacked", Backend(
        name="unpacked", families=("lstm",), devices=("cpu",), dtypes=("float32",), factory=runs_every_row_to_the_end,
        reference="numpy", description="test double", options=("packed",), options_reference="torch"))
    suite = parse_suite("t", _options_suite({"packed": True}, ["unpacked"]))
    run_suite(suite, tmp_path, progress=False)
    frame = read_results(tmp_path)
    assert len(frame) == 2 and (frame.status == "incorrect").all()


@pytest.mark.parametrize("block, message", [
    ("params = {bidirectional = false}", "problem option bidirectional must be true when given"),
    ("params = {packed = true}\nbackends = ['bow']", "problem options apply to the recurrent families"),
])
def test_bad_options_exit_2(tmp_path, capsys, block, message):
    path = tmp_path / "bad.toml"
    text = "[[cases]]\nexperiments=['speed']\nseq_len=[3]\nbatch=[1]\nhidden_size=[4]\n" + block + "\n"
    if "backends" not in block:
        text += "backends=['torch']\n"
    path.write_text(text)
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert message in capsys.readouterr().err
