"""The recurrent weights' gradient as one Triton reduction GEMM that allocates only what it is told.

``out = first_a^T first_b + a^T b``: ``out (M, N)`` is ``dW_hh`` (``M = G*H`` gate rows, ``N = H``),
``first_a (B, M)`` / ``first_b (B, N)`` the gate gradients and initial state of each row's first
step, ``a (K, M)`` / ``b (K, N)`` the later steps' gate gradients and previous states (``K = (T-1)
B`` rows, each row of ``a`` and ``b`` contiguous). It is the one GEMM of the backward whose
reduction is over time, and the one where cuBLAS's ``addmm_`` allocated blocks of four times the
bytes of ``a`` (up to about 128 MiB) on an H200 (reports/h200/f1c2560/memory-breakdown.md,
reports/cpu-memory/README.md): the Triton layers' whole training-memory excess over torch.nn at
small H. Besides ``out`` this kernel allocates only, when it splits the reduction, one float32
buffer of partial sums of at most :data:`PARTIAL_SUM_BYTES` and their float32 total, and otherwise
a one-element placeholder.

**Split-K.** ``out`` is cut into ``(BLOCK_M, BLOCK_N)`` tiles; a tile's rows of K are cut into
``splits`` contiguous ranges of ``rows_per_split`` (a multiple of ``BLOCK_K``) so that small outputs
(H=64: 2 tiles) still occupy the GPU (:func:`split_count`). Each program accumulates its range in
float32 (split 0 also takes the first step's B rows); with one split it writes ``out`` directly,
with several the partial sums go to ``(splits, M, N)`` and are added in split order by
``torch.sum``: the result does not depend on scheduling, so gradients are reproducible.

Precision: float32 accumulation of exact 16-bit products, rounded once into ``out`` (``addmm_``
rounds the first step's term to ``out``'s dtype before adding the rest); float32 inputs multiply in
full float32 unless ``torch.backends.cuda.matmul.allow_tf32`` is set, as the other GEMMs of the
backward (torch matmuls) do.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from rnnbench.kernels.launch import SUPPORTED_DTYPES

#: the largest float32 buffer of partial sums a split reduction may allocate (bytes)
PARTIAL_SUM_BYTES = 4 * 2**20
#: the fewest rows of K a split is given (a split's loads must hide their latency over a few blocks)
MIN_SPLIT_ROWS = 512
#: programs per multiprocessor a split reduction aims for
PROGRAMS_PER_SM = 2
#: multiprocessors assumed off a GPU (H100 / H200: 132), so the interpreter splits as a GPU would
DEFAULT_MULTIPROCESSORS = 132


@dataclass(frozen=True)
class Blocks:
    """Tile sizes and launch options of one compilation (elements; ``stages``: software pipelining)."""

    block_m: int
    block_n: int
    block_k: int
    num_warps: int
    num_stages: int


def blocks_for(dtype: torch.dtype, n: int) -> Blocks:
    """The tiles for ``dtype`` and an output of ``n`` columns: 16-bit inputs take 128-row tiles,
    64 wide up to ``n = 64`` (the LSTM's H=64: no half-empty tiles), else 128; float32 64 x 64
    (TF32, or full fp32 on the FMA units where asked for: the layers then use cuBLAS instead)."""
    if dtype in (torch.float16, torch.bfloat16):
        return Blocks(128, 64, 64, 4, 3) if n <= 64 else Blocks(128, 128, 64, 8, 3)
    return Blocks(64, 64, 32, 4, 3)


def split_count(m: int, n: int, k: int, blocks: Blocks, multiprocessors: int) -> tuple[int, int]:
    """``(splits, rows_per_split)`` of a reduction over ``k`` rows into an ``(m, n)`` output:
    enough splits for :data:`PROGRAMS_PER_SM` programs per multiprocessor, no fewer than
    :data:`MIN_SPLIT_ROWS` rows each, partial sums within :data:`PARTIAL_SUM_BYTES`; every split
    gets a whole number of ``block_k`` rows and none is empty."""
    tiles = triton.cdiv(m, blocks.block_m) * triton.cdiv(n, blocks.block_n)
    wanted = min(PROGRAMS_PER_SM * multiprocessors // tiles, k // MIN_SPLIT_ROWS, PARTIAL_SUM_BYTES // (4 * m * n))
    if wanted <= 1:
        return 1, max(k, 1)
    rows_per_split = triton.cdiv(triton.cdiv(k, wanted), blocks.block_k) * blocks.block_k
    return triton.cdiv(k, rows_per_split), rows_per_split


@triton.jit
def _accumulate(acc, a_ptr, b_ptr, a_row_stride, b_row_stride, rows, cols_m, cols_n, M, N, BLOCK_K: tl.constexpr,
                DOT_PRECISION: tl.constexpr):
    """``acc += a[:rows]^T b[:rows]`` for columns ``cols_m`` of ``a`` and ``cols_n`` of ``b`` (masked
    at M, N and the last row), ``a_ptr`` and ``b_ptr`` pointing at the first row."""
    block_rows = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + (block_rows[:, None] * a_row_stride + cols_m[None, :])
    b_ptrs = b_ptr + (block_rows[:, None] * b_row_stride + cols_n[None, :])
    in_m, in_n = (cols_m < M)[None, :], (cols_n < N)[None, :]
    for done in range(0, rows, BLOCK_K):
        in_rows = (block_rows < rows - done)[:, None]
        a_tile = tl.load(a_ptrs, mask=in_rows & in_m, other=0.0)
        b_tile = tl.load(b_ptrs, mask=in_rows & in_n, other=0.0)
        acc = tl.dot(tl.trans(a_tile), b_tile, acc, input_precision=DOT_PRECISION)
        a_ptrs += BLOCK_K * a_row_stride
        b_ptrs += BLOCK_K * b_row_stride
    return acc


#: arguments Triton does not specialise: what depends on the sequence length (the suite's
#: precompilation runs 16 steps, rnnbench.harness.precompile) or on the batch (1 would be a constant)
UNSPECIALISED = ["K", "B", "rows_per_split", "splits"]


@triton.jit(do_not_specialize=UNSPECIALISED)
def weight_grad_kernel(out_ptr, partial_ptr, first_a_ptr, first_b_ptr, a_ptr, b_ptr, M, N, K, B, out_row_stride,
                       first_a_row_stride, first_b_row_stride, a_row_stride, b_row_stride, rows_per_split, splits,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                       DOT_PRECISION: tl.constexpr, ACCUMULATE: tl.constexpr = False):
    """One ``(BLOCK_M, BLOCK_N)`` tile of ``out`` (grid axes 0, 1) over one split of the rows (axis 2):
    ``out`` itself when ``splits`` is 1, else slice ``program_id(2)`` of the float32
    ``partial (splits, M, N)``. ``splits`` is a run-time value, so one compilation serves both.
    ``ACCUMULATE`` (``out`` float32, :func:`accumulate_weight_grad`): ``out`` is added to, not
    overwritten, where ``splits`` is 1."""
    split = tl.program_id(2)
    cols_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    in_tile = (cols_m < M)[:, None] & (cols_n < N)[None, :]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if ACCUMULATE:
        if splits == 1:
            acc = tl.load(out_ptr + cols_m[:, None] * out_row_stride + cols_n[None, :], mask=in_tile, other=0.0)
    acc = _accumulate(acc, first_a_ptr, first_b_ptr, first_a_row_stride, first_b_row_stride, tl.where(split == 0, B, 0),
                      cols_m, cols_n, M, N, BLOCK_K, DOT_PRECISION)
    row_start = split.to(tl.int64) * rows_per_split
    acc = _accumulate(acc, a_ptr + row_start * a_row_stride, b_ptr + row_start * b_row_stride, a_row_stride, b_row_stride,
                      tl.minimum(rows_per_split, K - row_start).to(tl.int32), cols_m, cols_n, M, N, BLOCK_K, DOT_PRECISION)
    if splits > 1:
        offsets = split.to(tl.int64) * M * N + cols_m[:, None] * N + cols_n[None, :]
        tl.store(partial_ptr + offsets, acc, mask=in_tile)
    else:
        tl.store(out_ptr + cols_m[:, None] * out_row_stride + cols_n[None, :], acc.to(out_ptr.dtype.element_ty),
                 mask=in_tile)


def dot_precision(dtype: torch.dtype) -> str:
    """``tl.dot`` input precision of the backward's GEMMs: TF32 for float32 exactly when torch
    matmuls use it (``torch.backends.cuda.matmul.allow_tf32``)."""
    return "tf32" if dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32 else "ieee"


def multiprocessors_of(device: torch.device) -> int:
    """The device's multiprocessor count (:data:`DEFAULT_MULTIPROCESSORS` off a GPU)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return DEFAULT_MULTIPROCESSORS


def weight_grad(out: torch.Tensor, first: tuple[torch.Tensor, torch.Tensor], a: torch.Tensor, b: torch.Tensor) -> None:
    """``out = first[0]^T first[1] + a^T b`` in place (shapes in the module docstring; ``K`` may be 0).

    Every operand's rows must be contiguous (unit column stride); ``out`` may have a row stride."""
    _check_operands(out, first, a, b, a.dtype)
    _reduce(out, first, a, b, accumulate=False)


def accumulate_weight_grad(total: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                           first: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
    """``total += first[0]^T first[1] + a^T b`` in place, ``total (M, N)`` float32 and the operands
    16-bit or float32 (``first``: None for none): a sum over several calls, each a range of rows,
    rounded only where its owner rounds ``total``
    (:mod:`rnnbench.kernels.overlapped_gradients`). Deterministic: each tile of ``total`` adds
    its rows in order (a split reduction adds its partial sums in split order)."""
    if total.dtype != torch.float32:
        raise ValueError(f"the sum must be float32, got {total.dtype}")
    _check_operands(total, (a, b) if first is None else first, a, b, torch.float32)
    _reduce(total, (a[:0], b[:0]) if first is None else first, a, b, accumulate=True)  # no first rows: a's and b's


def _check_operands(out, first, a, b, out_dtype: torch.dtype) -> None:
    """ValueError naming the operand whose dtype, shape or layout the kernel cannot take."""
    (first_a, first_b), (M, N), K = first, out.shape, a.shape[0]
    if a.dtype not in SUPPORTED_DTYPES or any(t.dtype != a.dtype for t in (first_a, first_b, b)) \
            or out.dtype != out_dtype:
        raise ValueError(f"operands must share one dtype of {[str(d) for d in SUPPORTED_DTYPES]} and out be {out_dtype}, "
                         f"got {[str(t.dtype) for t in (out, first_a, first_b, a, b)]} (out, first[0], first[1], a, b)")
    for name, tensor, width in (("a", a, M), ("b", b, N), ("first[0]", first_a, M), ("first[1]", first_b, N), ("out", out, N)):
        if tensor.dim() != 2 or tensor.shape[1] != width or (tensor.shape[1] > 1 and tensor.stride(1) != 1):
            raise ValueError(f"{name} must be a 2-D tensor of {width} contiguous columns, got shape {tuple(tensor.shape)} "
                             f"and strides {tensor.stride()}")
    if first_b.shape[0] != first_a.shape[0] or b.shape[0] != K:
        raise ValueError(f"row counts must match: first {first_a.shape[0]} and {first_b.shape[0]}, a {K} and b {b.shape[0]}")


def _reduce(out, first, a, b, accumulate: bool) -> None:
    """The kernel over checked operands: ``out`` overwritten, or added to (``accumulate``)."""
    (first_a, first_b), (M, N), K = first, out.shape, a.shape[0]
    if K == 0:  # nothing to read past the first step: any valid pointers will do
        a, b = first_a, first_b
    blocks = blocks_for(a.dtype, N)
    splits, rows_per_split = split_count(M, N, K, blocks, multiprocessors_of(out.device))
    # a float32 pointer either way (a placeholder of one element when unsplit): one compilation
    partial = out.new_empty((splits, M, N) if splits > 1 else (1,), dtype=torch.float32)
    grid = (triton.cdiv(M, blocks.block_m), triton.cdiv(N, blocks.block_n), splits)
    _launch(grid, blocks, out, partial, first_a, first_b, a, b, K, rows_per_split, accumulate)
    if splits > 1:
        if accumulate:
            out.add_(partial.sum(0))
        else:
            out.copy_(partial.sum(0))


def _launch(grid, blocks: Blocks, out, partial, first_a, first_b, a, b, rows: int, rows_per_split: int,
            accumulate: bool = False) -> None:
    """The kernel launch alone (``memory_breakdown --skip-kernels`` replaces it)."""
    M, N = out.shape
    weight_grad_kernel[grid](out, partial, first_a, first_b, a, b, M, N, rows, first_a.shape[0], out.stride(0),
                             first_a.stride(0), first_b.stride(0), a.stride(0), b.stride(0), rows_per_split, grid[2],
                             BLOCK_M=blocks.block_m, BLOCK_N=blocks.block_n, BLOCK_K=blocks.block_k,
                             DOT_PRECISION=dot_precision(a.dtype), ACCUMULATE=accumulate, num_warps=blocks.num_warps,
                             num_stages=blocks.num_stages)


def compile_for(dtype: torch.dtype, n: int, arch: int, precision: str | None = None, accumulate: bool = False):
    """``triton.compile`` of the kernel as :func:`weight_grad` launches it for ``dtype`` and ``n``
    output columns on ``sm_<arch>``, pointers and row strides 16-divisible (an ahead-of-time check of
    its shared memory, registers and spills; needs no GPU, and no ``TRITON_INTERPRET`` in this process).
    ``M`` and ``N`` are compiled as multiples of 16, as every goal shape runs; ``precision``: the
    ``tl.dot`` input precision, by default what runs (float32 takes this GEMM only with TF32,
    :func:`rnnbench.kernels.projections.weight_grad_formulation`); ``accumulate``: as
    :func:`accumulate_weight_grad` launches it (a float32 ``out`` added to)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from rnnbench.kernels.aot import TRITON_TYPES

    blocks = blocks_for(dtype, n)
    data = TRITON_TYPES[str(dtype).removeprefix("torch.")]
    fn = weight_grad_kernel
    pointers = {"out_ptr": "fp32" if accumulate else data, "partial_ptr": "fp32", "first_a_ptr": data, "first_b_ptr": data, "a_ptr": data, "b_ptr": data}
    signature = {name: "*" + kind for name, kind in pointers.items()}
    integers = ("M", "N", "K", "B", "out_row_stride", "first_a_row_stride", "first_b_row_stride", "a_row_stride",
                "b_row_stride", "rows_per_split", "splits")
    signature.update({name: "i32" for name in integers})
    constexprs = {"BLOCK_M": blocks.block_m, "BLOCK_N": blocks.block_n, "BLOCK_K": blocks.block_k,
                  "DOT_PRECISION": precision or ("tf32" if dtype == torch.float32 else "ieee"), "ACCUMULATE": accumulate}
    signature.update({name: "constexpr" for name in constexprs})
    # Triton specialises integers divisible by 16 at run time: H is at every goal shape, and the
    # loads of a tile are only pipelined (cp.async / TMA) when their column masks come in such groups
    divisible = [name for name in signature if name.endswith("_ptr") or name.endswith("row_stride") or name in ("M", "N")]
    attrs = {(fn.arg_names.index(name),): [["tt.divisibility", 16]] for name in divisible}
    return triton.compile(ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs),
                          target=GPUTarget("cuda", arch, 32),
                          options={"num_warps": blocks.num_warps, "num_stages": blocks.num_stages})


def compiled_resources(config: tuple, arch: int) -> tuple[int, int, int]:
    """``(registers per thread, spill bytes per thread, shared memory bytes)`` of the kernel
    for ``config = (dtype name, n[, accumulate])`` on ``sm_<arch>`` (a job for
    :func:`rnnbench.kernels.aot.compile_all`)."""
    from rnnbench.kernels.aot import cubin_resources

    dtype, n, *accumulate = config
    compiled = compile_for(getattr(torch, dtype), n, arch, accumulate=bool(accumulate and accumulate[0]))
    return (*cubin_resources(compiled.asm["cubin"]), int(compiled.metadata.shared))
