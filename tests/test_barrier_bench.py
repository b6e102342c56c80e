"""The grid barrier without a GPU: the benchmark's kernel compiles for sm_90 with the barrier the
recurrent kernels use, the command and launcher refuse what they cannot do, and the host side of
the barrier timeout reports a timed-out launch (the measurement and the timeout itself are in
tests/test_kernels_gpu.py)."""

import pytest
import torch

from rnnbench.kernels import barrier_bench, launch, sass
from rnnbench.kernels.aot import compile_all
from rnnbench.kernels.plan import plan_recurrence
from rnnbench.kernels.primitives import FLAG_SLOTS, SYNC_ROW, UNUSED_FLAG


def _poll_loop(instructions: list[sass.Instruction]) -> list[sass.Instruction]:
    """The innermost loop (a backward branch's range) that loads a flag from L2 (``.STRONG.GPU``)."""
    loops = [[i for i in instructions if branch.target <= i.address <= branch.address]
             for branch in instructions if branch.base == "BRA" and branch.target is not None
             and branch.target <= branch.address]
    polls = [body for body in loops if any(i.base == "LDG" and "GPU" in i.modifiers for i in body)]
    return min(polls, key=len)


@pytest.mark.parametrize("order", ["acquire", "relaxed"])
def test_benchmark_kernel_compiles_with_the_kernels_grid_barrier(order):
    """Release (fence, add to the program's own flag), the poll (strong loads of the status word and
    4 x 32 flags at POLL=128), CTA barriers, the timeout's status (max) and its clock; an acquire
    poll invalidates L1 after every flag load (the status word's load is relaxed in both orders), a
    relaxed one loads all five back to back and fences once after the loop (a second MEMBAR besides
    the release's)."""
    try:
        (text,) = compile_all(90, [(8, order)], 1, job=barrier_bench.barrier_sass)
    except sass.SassUnavailable as error:
        pytest.skip(str(error))
    instructions = sass.parse(text)
    opcodes = [ins.opcode for ins in instructions]
    assert {"MEMBAR.ALL.GPU", "LDG.E.STRONG.GPU", "CCTL.IVALL", "BAR.SYNC.DEFER_BLOCKING"} <= set(opcodes)
    atomics = {(ins.modifiers[1], "STRONG" in ins.modifiers) for ins in instructions if ins.base in ("REDG", "ATOMG")}
    assert {("ADD", True), ("MAX", True)} <= atomics  # REDG, or ATOMG with Triton 3.6 in the relaxed kernel
    assert any("GLOBALTIMER" in operand for ins in instructions for operand in ins.operands)
    poll = _poll_loop(instructions)
    loads = [ins for ins in poll if ins.opcode == "LDG.E.STRONG.GPU"]
    invalidations = [ins for ins in poll if ins.base == "CCTL"]
    assert len(loads) == 5
    if order == "acquire":
        assert len(invalidations) == len(loads) - 1 and opcodes.count("MEMBAR.ALL.GPU") == 1
    else:
        assert not invalidations and opcodes.count("MEMBAR.ALL.GPU") == 2


def test_unknown_poll_orders_are_refused(tmp_path):
    with pytest.raises(ValueError, match="poll order must be one of \\('acquire', 'relaxed'\\), got 'weak'"):
        barrier_bench.run_barriers(4, 1, order="weak")
    with pytest.raises(SystemExit):
        barrier_bench.main(["--out", str(tmp_path / "barrier.csv"), "--orders", "acquire,weak"])


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="programs must be >= 1"):
        barrier_bench.run_barriers(0, 10)
    with pytest.raises(ValueError, match="programs \\+ missing must be at most 256"):
        barrier_bench.run_barriers(200, 1, missing=100)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_the_command_needs_a_gpu(tmp_path, capsys):
    assert barrier_bench.main(["--out", str(tmp_path / "barrier.csv")]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


class _Event:
    def __init__(self, done: bool):
        self.done = done

    def query(self) -> bool:
        return self.done

    def synchronize(self) -> None:
        self.done = True


def test_status_words_name_the_blocks_and_steps_that_timed_out():
    assert launch.barrier_status_message(torch.zeros(2, 3, dtype=torch.int32), "k") is None
    status = torch.tensor([[0, 7], [0, 0]], dtype=torch.int32)
    message = launch.barrier_status_message(status, "lstm_forward_kernel (grid (96, 2, 1), T=9)", 2_000_000_000)
    assert message.startswith("grid barrier of lstm_forward_kernel (grid (96, 2, 1), T=9) timed out after 2 s")
    assert "block 1 at step 7" in message and "block 0" not in message


def test_finished_launches_are_checked_and_unfinished_ones_kept(monkeypatch):
    clean = (_Event(True), torch.zeros(1, 1, dtype=torch.int32), "clean")
    running = (_Event(False), torch.tensor([[3]], dtype=torch.int32), "running")
    monkeypatch.setattr(launch, "_pending", [clean, running])
    launch.check_barriers()  # the failed one has not finished: nothing to report yet
    assert launch._pending == [running]
    with pytest.raises(launch.BarrierTimeout, match="grid barrier of running timed out .*block 0 at step 3"):
        launch.check_barriers(wait=True)
    assert launch._pending == []


def test_a_fresh_sync_buffer_marks_the_slots_of_no_producer():
    """The Gluon kernels' poll reads all POLL slots without a mask, so the slots past the producers hold a flag
    no step reaches; every row starts 16-byte aligned for the poll's vector loads."""
    sync = launch.reset_sync(torch.full((2, 3, int(SYNC_ROW.value)), 7, dtype=torch.int32), 5)
    assert (sync[..., :5] == 0).all() and (sync[..., FLAG_SLOTS.value:] == 0).all()
    assert (sync[..., 5:FLAG_SLOTS.value] == UNUSED_FLAG.value).all() and UNUSED_FLAG.value == torch.iinfo(torch.int32).max
    assert SYNC_ROW.value * 4 % 16 == 0 and SYNC_ROW.value > FLAG_SLOTS.value
    plan = plan_recurrence("lstm", 768, 16, torch.bfloat16, "cooperative", 132)
    fresh = launch.sync_buffer(plan, "cpu")
    assert fresh.shape == (1, plan.grid[1], SYNC_ROW.value) and (fresh[..., : plan.grid[0]] == 0).all()
    assert plan.grid[0] == 96 and (fresh[..., plan.grid[0]:FLAG_SLOTS.value] == UNUSED_FLAG.value).all()
    with pytest.raises(ValueError, match="producers must be in \\[1, 256\\] \\(one flag slot each\\), got 257"):
        launch.reset_sync(sync, 257)
