"""The Triton GEMM of the recurrent weights' gradient (rnnbench.kernels.weight_grad): the product on
odd shapes against float64, split and unsplit, its split rule, its refusals, and its compilation
for sm_80 and sm_90 (no spills, shared memory within the limit, the loads pipelined on sm_90).

Tolerances: float32 inputs multiply in full float32 (TF32 off), so |error| <= 1e-5 x the largest
|term sum|; float16 products are exact with float32 accumulation and one rounding to float16, so
the error is within half a float16 ulp of the result plus accumulation noise: 2e-3 relative.
"""

import pytest
import torch

from conftest import KERNEL_DEVICE
from rnnbench.kernels import weight_grad as wg
from rnnbench.kernels.aot import SHARED_MEMORY_LIMIT, compile_all

TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}
DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if KERNEL_DEVICE == "cuda" else [])


def operands(B, K, M, N, dtype, seed=0, b_row_stride=None):
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=generator).to(device=KERNEL_DEVICE, dtype=dtype)

    b = rand(K, N) if b_row_stride is None else rand(K, b_row_stride)[:, :N]  # rows of b a strided view
    return (rand(B, M), rand(B, N)), rand(K, M), b


def reference(first, a, b):
    return first[0].double().t() @ first[1].double() + a.double().t() @ b.double()


def assert_matches(out, first, a, b):
    expected = reference(first, a, b)
    error = (out.double() - expected).abs().max().item()
    scale = max(1.0, expected.abs().max().item())
    assert error <= TOLERANCE[out.dtype] * scale, (error, scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B, K, M, N", [(1, 0, 4, 1), (3, 12, 68, 17), (1, 300, 260, 70), (5, 7, 12, 3)])
def test_the_product_matches_float64_on_odd_shapes(dtype, B, K, M, N, exact_matmul):
    first, a, b = operands(B, K, M, N, dtype, b_row_stride=N + 5)
    out = torch.full((M, N), float("nan"), device=KERNEL_DEVICE, dtype=dtype)
    wg.weight_grad(out, first, a, b)
    assert_matches(out, first, a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_split_reduction_matches_and_is_reproducible(dtype, monkeypatch, exact_matmul):
    monkeypatch.setattr(wg, "MIN_SPLIT_ROWS", 40)  # 300 rows in splits of 64 (one block_k): 5 splits, the last short
    B, K, M, N = 2, 300, 36, 10
    assert wg.split_count(M, N, K, wg.blocks_for(dtype, N), wg.DEFAULT_MULTIPROCESSORS)[0] == 5
    first, a, b = operands(B, K, M, N, dtype, seed=1)
    outs = [torch.full((M, N), float("nan"), device=KERNEL_DEVICE, dtype=dtype) for _ in range(2)]
    for out in outs:
        wg.weight_grad(out, first, a, b)
    assert_matches(outs[0], first, a, b)
    assert torch.equal(outs[0], outs[1])


def test_the_split_rule_fills_the_gpu_within_its_buffer_and_leaves_no_split_empty():
    """At the LSTM's goal shapes (T=1024): H=64 splits its 2 tiles' 16368 rows (B=16) into 29 splits
    of 576 rows (1.8 MiB of partial sums), H=768 has 144 tiles and one split (no buffer)."""
    bf16 = torch.bfloat16
    for H, B in [(64, 1), (64, 16), (64, 64), (128, 16), (256, 64), (512, 16), (768, 16), (1024, 64)]:
        m, n, k = 4 * H, H, 1023 * B
        blocks = wg.blocks_for(bf16, n)
        splits, rows = wg.split_count(m, n, k, blocks, 132)
        assert splits * rows >= k and (splits - 1) * rows < k, (H, B, splits, rows)
        if splits > 1:
            assert rows % blocks.block_k == 0 and rows >= wg.MIN_SPLIT_ROWS
            assert splits * 4 * m * n <= wg.PARTIAL_SUM_BYTES
    assert wg.split_count(256, 64, 1023 * 16, wg.blocks_for(bf16, 64), 132) == (29, 576)
    assert wg.split_count(3072, 768, 1023 * 16, wg.blocks_for(bf16, 768), 132) == (1, 1023 * 16)
    assert wg.split_count(256, 64, 1023, wg.blocks_for(bf16, 64), 132) == (1, 1023)  # B=1: too few rows to split


def test_bad_operands_are_refused_with_what_was_expected():
    first, a, b = operands(2, 5, 8, 3, torch.float32)
    out = torch.empty(8, 3, device=KERNEL_DEVICE)
    with pytest.raises(ValueError, match="one dtype of .*float64"):
        wg.weight_grad(out.double(), first, a, b)
    with pytest.raises(ValueError, match=r"b must be a 2-D tensor of 3 contiguous columns, got shape \(3, 5\)"):
        wg.weight_grad(out, first, a, b.t().contiguous())
    with pytest.raises(ValueError, match=r"a must be .* contiguous columns, got shape \(5, 8\) and strides \(1, 5\)"):
        wg.weight_grad(out, first, a.t().contiguous().t(), b)
    with pytest.raises(ValueError, match="row counts must match: first 2 and 2, a 5 and b 4"):
        wg.weight_grad(out, first, a, b[:4])


def test_the_kernel_compiles_for_sm_80_and_sm_90_without_spills():
    """Both tile shapes of 16-bit inputs and the float32 one. On sm_90 the 16-bit loads are
    pipelined: shared memory holds the kernel's stages of both tiles, not one."""
    configs = [("bfloat16", 64), ("bfloat16", 768), ("float32", 768)]
    for arch in (80, 90):
        for (dtype, n), (registers, spill, shared) in zip(configs, compile_all(arch, configs, workers=2, job=wg.compiled_resources)):
            blocks = wg.blocks_for(getattr(torch, dtype), n)
            assert spill == 0 and shared <= SHARED_MEMORY_LIMIT[arch], (arch, dtype, n, spill, shared)
            assert registers * 32 * blocks.num_warps <= 65536, (arch, dtype, n, registers)
            if arch == 90 and dtype == "bfloat16":
                stage = (blocks.block_m + blocks.block_n) * blocks.block_k * 2
                assert shared >= blocks.num_stages * stage, (n, shared, stage)



@pytest.mark.cuda
@pytest.mark.parametrize("H, B", [(64, 16), (768, 16)])
def test_on_gpu_the_product_allocates_only_its_partial_sums(H, B):
    """bf16 at the LSTM's shapes (T=1024), the first call in a fresh thread (as autograd's backward
    thread makes it): beyond the inputs and ``out``, at most the split's float32 partial sums and
    their float32 total, or one allocator block (what cuBLAS's ``addmm_`` allocated here was 32-132 MiB)."""
    from rnnbench.harness.gemm_memory import _in_fresh_thread

    M, N, K = 4 * H, H, 1023 * B
    first, a, b = operands(B, K, M, N, torch.bfloat16)
    out = torch.empty(M, N, device="cuda", dtype=torch.bfloat16)
    splits, _ = wg.split_count(M, N, K, wg.blocks_for(torch.bfloat16, N), wg.multiprocessors_of(out.device))
    allowed = (splits + 1) * M * N * 4 if splits > 1 else 512  # unsplit: a one-element placeholder

    def extra():
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        wg.weight_grad(out, first, a, b)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before

    assert _in_fresh_thread(extra) <= allowed
    assert_matches(out, first, a, b)


def test_the_layers_take_the_triton_gemm_in_16_bits_and_tf32_and_cublas_in_exact_float32(monkeypatch, exact_matmul):
    from rnnbench.kernels import TritonLSTM, TritonRNN, projections

    assert projections.weight_grad_formulation(torch.float16) == projections.weight_grad_formulation(torch.bfloat16) == "triton"
    assert projections.weight_grad_formulation(torch.float32) == "addmm"
    torch.backends.cuda.matmul.allow_tf32 = True
    assert projections.weight_grad_formulation(torch.float32) == "triton"
    monkeypatch.setattr(projections, "WEIGHT_GRAD", "chunked")
    assert projections.weight_grad_formulation(torch.float16) == "chunked"
    monkeypatch.setattr(projections, "WEIGHT_GRAD", "auto")
    calls = []
    shipped = projections.WEIGHT_GRAD_FORMULATIONS["triton"]
    monkeypatch.setitem(projections.WEIGHT_GRAD_FORMULATIONS, "triton", lambda *args: calls.append(args[0].shape) or shipped(*args))
    for module in (TritonLSTM(3, 5, bidirectional=True), TritonRNN(3, 5)):
        module = module.to(KERNEL_DEVICE, torch.float16)
        output, _ = module(torch.randn(4, 2, 3, device=KERNEL_DEVICE, dtype=torch.float16))
        output.float().sum().backward()
    assert calls == [(20, 5), (20, 5), (5, 5)]  # one product per direction and layer, (gates x H, H)
