"""The grid barrier without a GPU: the benchmark's kernel compiles for sm_90 with the barrier the
recurrent kernels use, the command and launcher refuse what they cannot do, and the host side of
the barrier timeout reports a timed-out launch (the measurement and the timeout itself are in
tests/test_kernels_gpu.py)."""

import pytest
import torch

from rnnbench.kernels import barrier_bench, launch, sass
from rnnbench.kernels.aot import compile_all


def test_benchmark_kernel_compiles_with_the_kernels_grid_barrier():
    try:
        (text,) = compile_all(90, [8], 1, job=barrier_bench.barrier_sass)
    except sass.SassUnavailable as error:
        pytest.skip(str(error))
    instructions = sass.parse(text)
    opcodes = {ins.opcode for ins in instructions}
    # release (fence, add to the program's own flag), acquire poll (strong load, L1 invalidated),
    # CTA barriers, the timeout's status (max) and its clock
    assert {"MEMBAR.ALL.GPU", "REDG.E.ADD.STRONG.GPU", "LDG.E.STRONG.GPU", "CCTL.IVALL", "BAR.SYNC.DEFER_BLOCKING",
            "REDG.E.MAX.S32.STRONG.GPU"} <= opcodes
    assert any("GLOBALTIMER" in operand for ins in instructions for operand in ins.operands)


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
