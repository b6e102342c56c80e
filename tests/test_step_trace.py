"""The step trace (:mod:`rnnbench.kernels.step_trace`): its phases from synthetic traces of known
timings (CPU), its command's refusals, and on a GPU the traced Gluon forward (tagged and barrier)
computing exactly what the untraced one does, with phases that add up and never run backwards."""

import numpy as np
import pytest
import torch

from rnnbench.kernels import step_trace
from rnnbench.kernels.trace_events import EVENTS

#: each phase's cycles in the synthetic traces below (program p adds p to every one of them)
TAGGED_CYCLES = {"to_loader": 40, "first_load": 700, "reloads": 300, "handover": 120, "wake": 60, "product": 900,
                 "gates_publish": 500}
BARRIER_CYCLES = {"barrier": 1800, "state_copy": 700, "product": 900, "gates_publish": 500}


def _synthetic(spec, cycles: dict, programs: int = 3, steps: int = 20, ghz: float = 2.0) -> np.ndarray:
    """A trace in which every phase of every step of program ``p`` lasts ``cycles[phase] + p`` and
    the clock runs at ``ghz`` (``*_ns`` events at cycles / ghz)."""
    trace = np.zeros((programs, steps, len(EVENTS)), dtype=np.int64)
    for p in range(programs):
        now = 10_000 * (p + 1)
        trace[p, 0, EVENTS.index("state_out")] = now
        for s in range(1, steps):
            for name, start, start_offset, end, end_offset in spec:
                assert trace[p, s + start_offset, EVENTS.index(start)] == now, (name, s)
                now += cycles[name] + p
                trace[p, s + end_offset, EVENTS.index(end)] = now
        trace[p, :, EVENTS.index("state_out_ns")] = trace[p, :, EVENTS.index("state_out")] / ghz
        trace[p, :, EVENTS.index("first_load_ns")] = trace[p, :, EVENTS.index("first_load")] / ghz
    return trace


def test_the_phases_of_a_tagged_trace_are_its_timings_and_add_up_to_the_step():
    trace = _synthetic(step_trace.TAGGED_PHASES, TAGGED_CYCLES)
    assert step_trace.is_tagged(trace)
    table = step_trace.phases(trace, warmup=4)
    assert sorted(table["step"].unique()) == list(range(4, 20))
    for name, value in TAGGED_CYCLES.items():
        assert (table[name] == value + table["program"]).all(), name
    assert (table["step_cycles"] == table[list(TAGGED_CYCLES)].sum(axis=1)).all()
    assert (table["polls"] == 0).all()
    summary = step_trace.summary(table, step_trace.clock_ghz(trace, warmup=4)).set_index("phase")
    assert summary.loc["product", "median"] == 901 and summary.loc["product", "median_ns"] == pytest.approx(450.5)
    assert summary.loc[list(TAGGED_CYCLES), "share"].sum() == pytest.approx(1.0)
    assert summary["negative"].sum() == 0


def test_the_phases_of_a_barrier_trace_are_the_barriers():
    trace = _synthetic(step_trace.BARRIER_PHASES, BARRIER_CYCLES, programs=2)
    assert not step_trace.is_tagged(trace)
    table = step_trace.phases(trace)
    assert set(BARRIER_CYCLES) <= set(table.columns) and "first_load" not in table.columns
    assert (table["barrier"] == 1800 + table["program"]).all()
    assert (table["step_cycles"] == sum(BARRIER_CYCLES.values()) + 4 * table["program"]).all()


def test_the_clock_and_the_timers_resolution_are_read_from_the_trace():
    trace = _synthetic(step_trace.TAGGED_PHASES, TAGGED_CYCLES, ghz=1.6)
    assert step_trace.clock_ghz(trace) == pytest.approx(1.6, rel=1e-3)
    coarse = trace.copy()
    for event in ("state_out_ns", "first_load_ns"):
        coarse[..., EVENTS.index(event)] = coarse[..., EVENTS.index(event)] // 32 * 32
    assert step_trace.timer_resolution_ns(coarse) == 32
    with pytest.raises(ValueError, match="does not advance"):
        step_trace.clock_ghz(np.zeros_like(trace))


def test_cross_program_columns_say_how_late_the_last_producer_was():
    """``publish_spread_ns``: the step's last ``state_out_ns`` minus its first; ``after_last_publish_ns``:
    a program's first load minus the previous step's last publish."""
    trace = _synthetic(step_trace.TAGGED_PHASES, TAGGED_CYCLES, programs=2, ghz=1.0)
    published, arrived = EVENTS.index("state_out_ns"), EVENTS.index("first_load_ns")
    trace[1, 9, published] += 5000  # program 1 publishes step 9 late
    table = step_trace.phases(trace, warmup=2).set_index(["program", "step"])
    expected_spread = trace[:, 9, published].max() - trace[:, 9, published].min()
    assert table.loc[(0, 9), "publish_spread_ns"] == table.loc[(1, 9), "publish_spread_ns"] == expected_spread
    assert table.loc[(0, 10), "after_last_publish_ns"] == trace[0, 10, arrived] - trace[1, 9, published] < 0


def test_the_program_that_publishes_last_is_found_and_its_lag_measured():
    trace = _synthetic(step_trace.TAGGED_PHASES, TAGGED_CYCLES, programs=3, ghz=1.0)
    published = EVENTS.index("state_out_ns")
    trace[..., published] = trace[0, :, published]  # all publish together ...
    trace[2, 10:, published] += 300  # ... but program 2, late from step 10 on
    trace[1, 5:10, published] += 100  # and program 1 for steps 5-9
    late = step_trace.last_publishers(trace, warmup=2)
    assert late["program"].tolist()[:2] == [2, 1]
    assert late.loc[0, "last_share"] == pytest.approx(10 / 18) and late.loc[1, "last_share"] == pytest.approx(5 / 18)
    assert late.loc[0, "median_lag_ns"] == 300 and late.loc[1, "median_lag_ns"] == 0


def test_a_stamp_out_of_order_is_counted_as_negative():
    trace = _synthetic(step_trace.TAGGED_PHASES, TAGGED_CYCLES)
    trace[1, 12, EVENTS.index("loader_handed")] = trace[1, 12, EVENTS.index("loader_fresh")] - 1
    summary = step_trace.summary(step_trace.phases(trace), 2.0).set_index("phase")
    assert summary.loc["handover", "negative"] == 1 and summary.loc["wake", "negative"] == 0


def test_per_step_is_the_median_over_programs():
    trace = _synthetic(step_trace.TAGGED_PHASES, TAGGED_CYCLES, programs=3)
    rows = step_trace.per_step(step_trace.phases(trace))
    assert len(rows) == 20 - step_trace.WARMUP_STEPS and (rows["product"] == 901).all()


def test_a_trace_of_the_wrong_shape_or_too_short_is_refused():
    with pytest.raises(ValueError, match=r"\(programs, steps, 12\)"):
        step_trace.phases(np.zeros((2, 20, 5), dtype=np.int64))
    with pytest.raises(ValueError, match="none after"):
        step_trace.phases(_synthetic(step_trace.TAGGED_PHASES, TAGGED_CYCLES, steps=6))


def test_the_report_names_every_phase_and_both_timings():
    trace = _synthetic(step_trace.TAGGED_PHASES, TAGGED_CYCLES)
    summary = step_trace.summary(step_trace.phases(trace), 2.0)
    timings = {"programs": 3} | {f"{kind}_{stat}": value for kind in ("traced", "untraced")
                                  for stat, value in (("us_per_step", 2.4), ("q25_us", 2.3), ("q75_us", 2.5))}
    text = step_trace.render([{"cell": "lstm", "hidden_size": 768, "batch": 16, "dtype": "bfloat16",
                               "variant": "real_gluon_tagged", "steps": 20, "timings": timings, "ghz": 2.0,
                               "resolution_ns": 32, "summary": summary, "late": step_trace.last_publishers(trace)}],
                             "NVIDIA H100")
    for name in [*TAGGED_CYCLES, "step_cycles", "after_last_publish_ns", "untraced 2.400", "traced 2.400",
                 "last to publish: program "]:
        assert name in text, name


def test_only_gluon_forwards_with_their_exchange_are_traced():
    assert step_trace.parse_variants("real_gluon_tagged, real_gluon") == ("real_gluon_tagged", "real_gluon")
    for bad in ("real_gluon_no_sync", "real", "real_gluon_bwd", ""):
        with pytest.raises(ValueError, match="Gluon forwards with their exchange"):
            step_trace.parse_variants(bad)


def test_the_command_refuses_bad_arguments_and_needs_a_gpu(tmp_path, capsys):
    for argv in (["--shapes", "rnn:768:16"], ["--steps", "5"], ["--variants", "real"]):
        with pytest.raises(SystemExit):
            step_trace.main(["--out", str(tmp_path), *argv])
    if not torch.cuda.is_available():
        assert step_trace.main(["--out", str(tmp_path)]) == 2
        assert "needs a CUDA GPU" in capsys.readouterr().err


def test_a_trace_buffer_is_one_row_of_events_per_program_and_step():
    from rnnbench.kernels.plan import plan_gluon

    plan = plan_gluon("lstm", 768, 16, torch.bfloat16, 132)
    buffer = step_trace.trace_buffer(plan, 10, "cpu")
    assert buffer.shape == (plan.grid[0] * plan.grid[1], 10, len(EVENTS)) and buffer.dtype == torch.int64


def test_the_gluon_forward_refuses_a_trace_of_the_wrong_shape():
    """Checked before anything is launched (so on any machine)."""
    from rnnbench.kernels.gluon_lstm import run_forward
    from rnnbench.kernels.plan import plan_gluon

    plan = plan_gluon("lstm", 768, 16, torch.bfloat16, 132)
    wrong = torch.zeros(3, 10, len(EVENTS), dtype=torch.int64)
    empty = torch.empty(0)
    with pytest.raises(ValueError, match=r"trace must be int64 \(48, 10, 12\)"):
        run_forward(plan, empty, empty, empty, empty, empty, empty, empty, empty, (10, 16, 768), False, False,
                    trace=wrong)


@pytest.mark.cuda
@pytest.mark.parametrize("tagged, thread_poll", [(True, False), (False, False),
                                                 pytest.param(True, True, marks=pytest.mark.tagged_thread_poll)],
                         ids=["tagged", "barrier", "tagged_thread_poll"])
def test_on_gpu_a_traced_forward_computes_what_the_untraced_one_does(monkeypatch, tagged, thread_poll):
    """The traced Gluon forward (H=320, B=16, T=40) writes the untraced one's outputs bit for bit,
    stamps the loader's events exactly when it exchanges tagged words, and its phases never run
    backwards (every stamp after the one before it on its program's SM) and add up to the step;
    also with the loader's threads polling alone (:func:`rnnbench.kernels.switches.tagged_thread_poll`)."""
    from rnnbench.kernels import TritonLSTM, gluon_lstm
    from rnnbench.kernels.plan import gluon_available
    from rnnbench.kernels.switches import tagged_exchange, tagged_thread_poll

    if torch.cuda.get_device_capability() != (9, 0) or not gluon_available():
        pytest.skip("the Gluon forward needs sm_90 and a Triton with Gluon's Hopper API")
    torch.manual_seed(0)
    layer = TritonLSTM(40, 320, path="gluon").to("cuda", torch.bfloat16)
    x = torch.randn(40, 16, 40, device="cuda", dtype=torch.bfloat16)
    traces = []
    untraced_forward = gluon_lstm.run_forward

    def traced_forward(plan, *args, **kwargs):
        traces.append(step_trace.trace_buffer(plan, args[8][0], "cuda"))
        return untraced_forward(plan, *args, **kwargs, trace=traces[-1])

    with tagged_exchange(tagged), tagged_thread_poll(thread_poll), torch.no_grad():
        expected = layer(x)
        monkeypatch.setattr(gluon_lstm, "run_forward", traced_forward)
        got = layer(x)
    assert len(traces) == 1
    for a, b in zip((expected[0], *expected[1]), (got[0], *got[1])):
        assert torch.equal(a, b)
    trace = traces[0].cpu().numpy()
    assert step_trace.is_tagged(trace) == tagged
    table = step_trace.phases(trace, warmup=2)
    phase_names = [name for name, *_ in (step_trace.TAGGED_PHASES if tagged else step_trace.BARRIER_PHASES)]
    assert (table[phase_names] >= 0).all().all(), table[phase_names].min()
    assert (table["step_cycles"] == table[phase_names].sum(axis=1)).all()
    assert 0.5 < step_trace.clock_ghz(trace, warmup=2) < 3.0
    assert step_trace.last_publishers(trace, warmup=2)["last_share"].sum() == pytest.approx(1.0)
