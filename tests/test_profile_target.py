"""The profiler's target (rnnbench.harness.profile_target): the harness's workload, one warm-up call
outside the profiled range and the asked-for calls inside it, and clear errors before any GPU work."""

from __future__ import annotations

import contextlib

import pytest
import torch

from rnnbench.harness import profile_target


def test_the_call_is_the_harness_workload_of_the_case():
    (y, _, _), gradients = profile_target.workload_call("torch", "lstm", 12, 3, 5, "fwd_bwd", "float32", device="cpu")()
    assert y.shape == (5, 3, 12) and gradients["dx"].shape == (5, 3, 12) and gradients["dw_hh"].shape == (48, 12)
    forward = profile_target.workload_call("torch", "lstm", 12, 3, 5, "fwd", "float32", device="cpu")()
    assert not any(t.requires_grad for t in _tensors(forward))  # inference: nothing recorded for a backward


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors(item)


def test_one_warm_up_call_outside_the_range_then_the_calls_inside(monkeypatch):
    events = []

    @contextlib.contextmanager
    def recorded_range():
        events.append("start")
        yield
        events.append("stop")

    monkeypatch.setattr(profile_target, "profiled_range", recorded_range)
    profile_target.profile(lambda: events.append("call"), calls=2)
    assert events == ["call", "start", "call", "call", "stop"]


@pytest.mark.parametrize("argv, message", [
    (["--backend", "nope"], "unknown backend 'nope'"),
    (["--calls", "0"], "--calls must be at least 1, got 0"),
    (["--hidden-size", "-3"], "--hidden-size must be at least 1, got -3"),
])
def test_bad_arguments_are_named(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        profile_target.main(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_without_cuda_it_refuses_before_building_anything(capsys):
    with pytest.raises(SystemExit):
        profile_target.main([])
    assert "needs a CUDA device" in capsys.readouterr().err
