"""The grid barrier polled by each program's first warp alone (``switches.GRID_POLL_FIRST_WARP``),
without a GPU: the compiled kernels issue their poll loads in the first warp only, the switch
reaches the compiler processes, the cost model charges the flags' lines the requests of the warps
that poll, and the step ablation times the variant beside the shipped kernel. On a GPU:
tests/test_kernels_gpu.py (marker ``first_warp_poll``)."""

import pytest
import torch

from rnnbench.kernels import cost, sass, step_bench, switches
from rnnbench.kernels.plan import plan_recurrence

#: (cell, path, direction) of every kernel with a grid barrier, at H=768 B=16
BARRIER_KERNELS = [("lstm", "cooperative", "fwd"), ("lstm", "cooperative", "bwd"), ("lstm", "gluon", "fwd_train"),
                   ("lstm", "gluon", "bwd"), ("rnn", "cooperative", "fwd")]


def _polls(config):
    """The compiled kernel's (resources, poll loads and invalidations on its step path, the
    predicate registers set from ``%tid.x``)."""
    from rnnbench.kernels.aot import compile_all, compile_sass

    try:
        ((resources, text),) = compile_all(90, [config], 1, job=compile_sass)
    except sass.SassUnavailable as error:
        pytest.skip(str(error))
    instructions = sass.parse(text)
    path = sass.step_path(instructions).instructions
    # the poll's loads are the narrow strong ones and the vectors of flags (the state's loads are not strong)
    polls = [ins for ins in path if (ins.base in sass.GLOBAL_LOADS and ins.strong) or ins.base == "CCTL"]
    tid = {register for ins in instructions if ins.base == "S2R" and "SR_TID.X" in ins.operands
           for register in sass.writes(ins)}
    from_tid = {predicate for ins in instructions if ins.base == "ISETP" and tid & set(sass.reads(ins))
                and "0x20" in ins.operands for predicate in sass.writes(ins)}
    return resources, polls, from_tid


@pytest.mark.slow
@pytest.mark.parametrize("cell, path, direction", BARRIER_KERNELS)
def test_with_the_switch_only_the_first_warp_issues_the_poll(cell, path, direction, monkeypatch):
    """Off (the default) every poll load and invalidation is issued by every warp; on, every one is
    predicated on ``%tid.x >= 32`` being false (an ``ISETP`` of the ``S2R SR_TID.X`` register against
    32), and the kernel neither spills nor needs more than 2 registers a thread more. The compiler
    processes see the switch through its environment variable (the Gluon forward with its grid
    barrier: the planner's at H=768 exchanges tagged words in inference, so the training forward)."""
    monkeypatch.setenv(switches.TAGGED_EXCHANGE_ENV, "off")
    rows = cost.shape_rows(cells=(cell,), hidden_sizes=(768,), batches=(16,))
    config = next(row["config"] for row in rows if row["path"] == path and row["direction"] == direction
                  and not row["plan"].input_tiles)
    found = {}
    for setting in ("off", "on"):
        monkeypatch.setenv(switches.POLL_FIRST_WARP_ENV, setting)
        found[setting] = _polls(config)
    (off_resources, off_polls, _), (on_resources, on_polls, from_tid) = found["off"], found["on"]
    assert off_polls and not [ins.predicate for ins in off_polls if ins.predicate]
    assert len(on_polls) == len(off_polls)
    predicates = {ins.predicate for ins in on_polls}
    assert len(predicates) == 1 and next(iter(predicates)).startswith("@!")
    assert next(iter(predicates)).removeprefix("@!") in from_tid
    assert on_resources.spill_bytes == 0 and on_resources.registers <= off_resources.registers + 2


def test_the_flags_lines_queue_beyond_256_requests():
    """:func:`cost.poll_line_queue` with the H200's fit (``cost.POLL_LINE_FIT``; the model's own
    costs are 0 until a GPU confirms it): nothing up to ``poll_line_knee`` requests (producers x
    polling warps), ``poll_line_excess`` cycles each up to ``poll_line_steep``,
    ``poll_line_excess_beyond`` after; one polling warp of at most 128 producers never queues."""
    assert cost.poll_line_queue(128, 8, cost.latencies(90)) == 0  # not in the model yet
    lat = cost.Latencies(**cost.POLL_LINE_FIT)
    assert cost.poll_line_queue(64, 4, lat) == 0 == cost.poll_line_queue(128, 1, lat)
    assert cost.poll_line_queue(96, 4, lat) == pytest.approx(128 * 11.5)
    assert cost.poll_line_queue(64, 8, lat) == pytest.approx(256 * 11.5)
    assert cost.poll_line_queue(128, 8, lat) == pytest.approx(256 * 11.5 + 512 * 4.8)


def test_the_model_counts_the_warps_that_poll(monkeypatch):
    """``cost.polling_warps``: every warp of the plan's program, one with the switch on or where
    the Gluon backward's copier polls; the queue is charged to the barrier's producers (the hidden
    blocks of one batch block), not to every program of the launch."""
    plan = plan_recurrence("lstm", 768, 64, torch.bfloat16, "cooperative", arch=90)
    assert plan.grid[1] > 1
    with switches.first_warp_polls(False):
        assert cost.polling_warps(plan) == plan.num_warps and cost.polling_warps(plan, copier=True) == 1
    with switches.first_warp_polls(True):
        assert cost.polling_warps(plan) == 1
    counts = sass.StepCounts(poll_loops=1, membar=1)
    lat = cost.Latencies(**cost.POLL_LINE_FIT)
    with switches.first_warp_polls(False):
        every = cost.grid_sync_unseen(counts, plan, lat)
        assert every - cost.grid_sync_unseen(counts, plan, lat, copier=True) == \
            pytest.approx(cost.poll_line_queue(plan.grid[0], plan.num_warps, lat))
        # no release fence: a tagged exchange's poll, no flags
        assert cost.grid_sync_unseen(sass.StepCounts(poll_loops=1), plan, lat) == pytest.approx(cost.discovery_cycles(lat))
    with switches.first_warp_polls(True):
        assert every - cost.grid_sync_unseen(counts, plan, lat) == \
            pytest.approx(cost.poll_line_queue(plan.grid[0], plan.num_warps, lat))


def test_the_ablation_times_the_first_warp_variants_as_kernels_of_their_own():
    """Each shipped kernel with a grid barrier has a ``*_first_warp`` variant, timed last (never run
    on a GPU), with the switch set within its context; the shipped kernel and its variant are two
    kernels to time (:func:`step_bench._switched` tells them apart), and the barrier alone with one
    polling warp is swept over the programs beside every warp's."""
    pairs = {"real": "real_first_warp", "real_bwd": "real_bwd_first_warp", "real_gluon": "real_gluon_first_warp",
             "real_gluon_bwd": "real_gluon_bwd_first_warp", "real_gluon_train": "real_gluon_train_first_warp"}
    for shipped, variant in pairs.items():
        kernel = step_bench.REAL_PATHS[variant]
        assert variant in step_bench.DEFERRED and shipped not in step_bench.DEFERRED
        assert (kernel.path, kernel.direction) == (step_bench.REAL_PATHS[shipped].path,
                                                   step_bench.REAL_PATHS[shipped].direction)
        with kernel.switches():
            assert switches.GRID_POLL_FIRST_WARP is True
        assert switches.GRID_POLL_FIRST_WARP is False
    plain = plan_recurrence("lstm", 768, 16, torch.bfloat16, "cooperative", arch=90)
    assert step_bench._switched(step_bench.REAL_PATHS["real"], plain) == (False,)
    assert step_bench._switched(step_bench.REAL_PATHS["real_first_warp"], plain) == (True,)
    assert step_bench.VARIANTS["sync_first_warp"].first_warp and "sync_first_warp" in step_bench.SWEEP_VARIANTS
    assert not step_bench.VARIANTS["sync"].first_warp
