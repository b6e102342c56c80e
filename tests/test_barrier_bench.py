"""The grid-barrier micro-benchmark without a GPU: its kernel compiles for sm_90 with the barrier the
recurrent kernels use, and the command and launcher refuse what they cannot do (the measurement
itself is in tests/test_kernels_gpu.py)."""

import pytest
import torch

from rnnbench.kernels import barrier_bench, sass
from rnnbench.kernels.aot import compile_all


def test_benchmark_kernel_compiles_with_the_kernels_grid_barrier():
    try:
        (text,) = compile_all(90, [8], 1, job=barrier_bench.barrier_sass)
    except sass.SassUnavailable as error:
        pytest.skip(str(error))
    opcodes = {ins.opcode for ins in sass.parse(text)}
    # the review's reading of the recurrent kernels' barrier: fence, release add, acquire poll, invalidate
    assert {"MEMBAR.ALL.GPU", "REDG.E.ADD.STRONG.GPU", "LDG.E.STRONG.GPU", "CCTL.IVALL", "BAR.SYNC.DEFER_BLOCKING"} <= opcodes


def test_missing_arrivals_are_refused_while_the_barrier_has_no_timeout():
    with pytest.raises(ValueError, match="would hang the GPU"):
        barrier_bench.run_barriers(4, 1, missing=1)


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="programs must be >= 1"):
        barrier_bench.run_barriers(0, 10)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_the_command_needs_a_gpu(tmp_path, capsys):
    assert barrier_bench.main(["--out", str(tmp_path / "barrier.csv")]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err
