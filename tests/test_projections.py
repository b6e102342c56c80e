"""The bias gradient of the Triton layers' backward (rnnbench.kernels.projections.bias_grad): the
column sum of the gate gradients on odd shapes against float64, and on a GPU its allocations.

Tolerances: float32 sums in float32 (|error| <= 1e-5 x the sum of |terms|); float16 and bfloat16
accumulate in float32 and round once to the storage dtype, so the error is within one ulp of the
result (2**-10 and 2**-7 relative) plus the float32 accumulation noise, again relative to the sum
of |terms|.
"""

import pytest
import torch

from conftest import KERNEL_DEVICE
from rnnbench.kernels.projections import bias_grad

TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("directions, rows, width", [(1, 1, 4), (2, 37, 12), (1, 1023, 20), (2, 5, 1)])
def test_the_bias_gradient_sums_every_row_of_each_direction(dtype, directions, rows, width):
    generator = torch.Generator().manual_seed(rows)
    flat = torch.randn(directions, rows, width, generator=generator).to(KERNEL_DEVICE, dtype)
    db = bias_grad(flat)
    assert db.shape == (directions, width) and db.dtype == dtype and db.device == flat.device
    expected = flat.double().sum(1)
    scale = flat.double().abs().sum(1).clamp_min(1.0)
    assert ((db.double() - expected).abs() <= TOLERANCE[dtype] * scale).all(), (db, expected)


def test_the_bias_gradient_of_a_view_with_strided_rows():
    """The layers pass ``dpre.reshape(D, T*B, W)`` (contiguous); a view with padded rows works too."""
    padded = torch.randn(2, 9, 16, dtype=torch.float64)
    assert torch.allclose(bias_grad(padded[:, :, :11]), padded[:, :, :11].sum(1))


@pytest.mark.cuda
@pytest.mark.parametrize("H, B", [(64, 16), (768, 16)])
def test_on_gpu_the_bias_gradient_allocates_only_its_ones_and_output(H, B):
    """bf16 gate gradients of an LSTM (T=1024), in a fresh thread as autograd's backward runs it:
    beyond the input, at most the N ones and the output, one 512-byte block each at least, and
    cuBLAS's workspace where this thread had none yet (``flat.sum(1)`` allocated 32 MiB at H=64
    and 132 MiB at H=768 on the H200; reports/h200/7caf667/memory-breakdown.md)."""
    from rnnbench.harness.gemm_memory import _in_fresh_thread

    flat = torch.randn(1, 1024 * B, 4 * H, device="cuda", dtype=torch.bfloat16)

    def extra(runs: int):
        for _ in range(runs):  # the first run in this thread may create cuBLAS's workspace
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            db = bias_grad(flat)
            torch.cuda.synchronize()
            del db
        return torch.cuda.max_memory_allocated() - before

    allowed = max(flat.shape[1] * 2, 512) + max(4 * H * 2, 512)
    assert _in_fresh_thread(lambda: extra(2)) <= allowed
