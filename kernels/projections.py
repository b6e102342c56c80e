"""The non-sequential parts of a recurrent layer, as GEMMs over all time steps at once.

Shared by the RNN and LSTM layers; ``G*H`` is the width of the stacked gates (4H for the LSTM) and
D the number of directions (weights and per-direction buffers carry a leading axis of D). These are
torch matmuls, but for the recurrent weights' gradient in 16 bits (and TF32), a Triton GEMM
(:func:`weight_grad_formulation`, :mod:`rnnbench.kernels.weight_grad`); all follow
``torch.backends.cuda.matmul.allow_tf32`` on CUDA (default off, so fp32 GEMMs are full fp32), and
16-bit GEMMs accumulate in fp32.
"""

from __future__ import annotations

import torch

from rnnbench.kernels.weight_grad import dot_precision as weight_grad_dot_precision
from rnnbench.kernels.weight_grad import weight_grad as _weight_grad_triton_gemm


def project_inputs(x: torch.Tensor, w_ih: torch.Tensor, b_ih: torch.Tensor | None, b_hh: torch.Tensor | None) -> torch.Tensor:
    """``W_ih x_t + b_ih + b_hh`` for all steps and directions: ``x (T, B, I)``, ``w_ih (D, G*H, I)``,
    biases ``(D, G*H)`` or None -> new contiguous ``(D, T, B, G*H)``."""
    T, B, I = x.shape
    directions, width, _ = w_ih.shape
    x2d = x.reshape(T * B, I)
    out = x.new_empty(directions, T * B, width)
    for d in range(directions):
        project_rows(x2d, w_ih[d], None if b_ih is None else b_ih[d] + b_hh[d], out[d])
    return out.view(directions, T, B, width)


def project_rows(x2d: torch.Tensor, w_ih: torch.Tensor, bias: torch.Tensor | None, out: torch.Tensor) -> None:
    """``out = x2d W_ih^T (+ bias)``: rows ``(N, I)``, one direction's ``w_ih (G*H, I)``, ``bias (G*H,)``
    or None, into ``out (N, G*H)`` (one GEMM)."""
    if bias is None:
        torch.mm(x2d, w_ih.t(), out=out)
    else:
        torch.addmm(bias, x2d, w_ih.t(), out=out)


def first_steps(buffer: torch.Tensor, lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Index ``(direction, time, row)`` of each row's first processing step in a ``(D, T, B, ...)``
    buffer: time 0 going forwards, the row's last step (``lengths[b] - 1``, or T-1) going backwards.
    ``buffer[first_steps(buffer, lengths)]`` is ``(D, B, ...)``."""
    directions, T, B = buffer.shape[:3]
    device = buffer.device
    last = torch.full((B,), T - 1, device=device) if lengths is None else lengths.long() - 1
    times = torch.stack([torch.zeros_like(last), last])[:directions]
    return torch.arange(directions, device=device)[:, None], times, torch.arange(B, device=device)[None, :]


def final_states(y: torch.Tensor, lengths: torch.Tensor | None, directions: int) -> torch.Tensor:
    """Each row's state after its last step, ``(D, B, R)``, from a layer's output ``y (T, B, D*R)``:
    at time ``lengths[b] - 1`` (T-1 without lengths) going forwards, at time 0 going backwards."""
    T, B, width = y.shape
    R = width // directions
    if lengths is None:
        forwards = y[T - 1, :, :R]
    else:
        forwards = y[lengths.long() - 1, torch.arange(B, device=y.device), :R]
    return torch.stack([forwards, y[0, :, R:]][:directions])


def _weight_grad_addmm(out, first, a, b):
    torch.mm(first[0].t(), first[1], out=out)
    out.addmm_(a.t(), b)


def _weight_grad_mm_out(out, first, a, b):
    torch.mm(a.t(), b, out=out)
    out.addmm_(first[0].t(), first[1])


#: rows of K per GEMM of the ``chunked`` weight-gradient formulation
WEIGHT_GRAD_CHUNK_ROWS = 4096


def _weight_grad_chunked(out, first, a, b):
    torch.mm(first[0].t(), first[1], out=out)
    for start in range(0, a.shape[0], WEIGHT_GRAD_CHUNK_ROWS):
        out.addmm_(a[start:start + WEIGHT_GRAD_CHUNK_ROWS].t(), b[start:start + WEIGHT_GRAD_CHUNK_ROWS])


def _weight_grad_transposed(out, first, a, b):
    torch.mm(first[0].t(), first[1], out=out)
    out.t().addmm_(b.t(), a)


def _weight_grad_contiguous(out, first, a, b):
    torch.mm(first[0].t(), first[1], out=out)
    out.addmm_(a.t().contiguous(), b)


def _weight_grad_triton(out, first, a, b):
    rows = [t if t.shape[-1] == 1 or t.stride(-1) == 1 else t.contiguous() for t in (*first, a, b)]
    _weight_grad_triton_gemm(out, (rows[0], rows[1]), rows[2], rows[3])


#: ways to compute ``out = first[0]^T first[1] + a^T b`` (``out (M, N)``, ``first`` the first step's
#: ``(dpre (B, M), h0 (B, N))``, ``a (K, M)`` the later steps' ``dpre``, ``b (K, N)`` their previous
#: states): the recurrent weights' gradient, a reduction over ``K = (T-1) * B`` rows. All give the same
#: product; on an H200 ``addmm`` (cuBLAS, shipped until the Triton GEMM) allocated 32-132 MiB of
#: blocks inside the call, the whole excess of the Triton LSTM's training memory over torch.nn's at
#: small H (reports/h200/f1c2560/memory-breakdown.md), none of it on CPU. ``python -m
#: rnnbench.harness.gemm_memory`` measures what each allocates and costs on a GPU, ``python -m
#: rnnbench.harness.memory_breakdown --weight-grad NAME`` the layer's peak with each:
#: ``addmm`` (beta = 1 on top of the first step's term), ``mm_out`` (beta = 0, then the first step's
#: term), ``chunked`` (``addmm_`` over chunks of :data:`WEIGHT_GRAD_CHUNK_ROWS` rows), ``transposed``
#: (the product computed as its transpose), ``contiguous`` (``a^T`` copied to ``(M, K)`` first, the
#: layout of the ``dW_ih`` product, which allocates no such blocks), ``triton``
#: (:mod:`rnnbench.kernels.weight_grad`: one Triton GEMM that allocates at most a bounded buffer of
#: partial sums, needs CUDA tensors or the interpreter).
WEIGHT_GRAD_FORMULATIONS = {"addmm": _weight_grad_addmm, "mm_out": _weight_grad_mm_out,
                            "chunked": _weight_grad_chunked, "transposed": _weight_grad_transposed,
                            "contiguous": _weight_grad_contiguous, "triton": _weight_grad_triton}
#: the formulation :func:`parameter_and_input_grads` uses: a name of
#: :data:`WEIGHT_GRAD_FORMULATIONS`, or ``"auto"`` (:func:`weight_grad_formulation`)
WEIGHT_GRAD = "auto"


def weight_grad_formulation(dtype: torch.dtype) -> str:
    """The ``dW_hh`` formulation for operands of ``dtype``: :data:`WEIGHT_GRAD`, where ``"auto"``
    means the Triton GEMM for 16-bit operands and TF32 (tensor cores; its only allocation a bounded
    buffer of partial sums) and cuBLAS's ``addmm`` for exact float32, whose products Triton would
    multiply on the FMA units, slower than cuBLAS's SGEMM (chosen without a GPU; the next GPU run's
    ``gemm-memory.md`` times both)."""
    if WEIGHT_GRAD != "auto":
        return WEIGHT_GRAD
    if dtype == torch.float32 and weight_grad_dot_precision(dtype) == "ieee":
        return "addmm"
    return "triton"


def bias_grad(flat: torch.Tensor) -> torch.Tensor:
    """The bias gradient ``(D, W)``: ``flat (D, N, W)`` summed over its N rows (time steps and batch
    rows), as one matrix-vector product per direction against N ones (cuBLAS's GEMV on CUDA, float32
    accumulation), written into the output.

    Not ``flat.sum(1)``: for a column sum this long, torch's CUDA reduction allocates a staging buffer
    of partial sums bigger than ``flat`` itself, 132 MiB at H=768 (B=16 and 64) and 32 MiB at H=64
    B=16 (bf16, T=1024: the H200 run of 7caf667, ``reports/h200/7caf667/memory-breakdown.md``), which
    put the Triton LSTM's training peak above torch.nn's at H=64 and 128. The product allocates only
    the ones (2N bytes in bf16) and the output; cuBLAS's workspace is the handle's, allocated once."""
    directions, rows, width = flat.shape
    ones = flat.new_ones(rows)
    db = flat.new_empty(directions, width)
    for d in range(directions):
        torch.mv(flat[d].t(), ones, out=db[d])
    return db


def parameter_and_input_grads(dpre, x, h0, y, w_ih, need_dx: bool, need_bias: bool, lengths=None):
    """Gradients from ``dpre (D, T, B, G*H)``, the gradient of the gate pre-activations (zero past
    each row's end), given ``x (T, B, I)``, ``h0 (D, B, R)``, ``y (T, B, D*R)``, ``w_ih (D, G*H, I)``.

    ``dx = sum_d dpre_d W_ih_d``; ``dW_ih = sum_t dpre_t^T x_t``; ``dW_hh = sum_t dpre_t^T h_prev_t``,
    where the state before time t is ``y[t-1]`` going forwards and ``y[t+1]`` going backwards, and
    ``h0`` at each row's first step (a product over shifted views of ``y``, which is zero past a row's
    end, so no shifted copy is made, computed as :func:`weight_grad_formulation` says; no later steps
    when T = 1);
    ``db_ih = db_hh = sum over t and b of dpre``.
    Returns ``(dx (T, B, I), dw_ih (D, G*H, I), dw_hh (D, G*H, R), db (D, G*H))`` (None when not needed).
    """
    T, B, I = x.shape
    directions, _, _, width = dpre.shape
    R = h0.shape[-1]
    flat = dpre.reshape(directions, T * B, width)
    dx = None
    if need_dx:
        dx = flat[0] @ w_ih[0]
        for d in range(1, directions):
            dx.addmm_(flat[d], w_ih[d])
        dx = dx.view(T, B, I)
    dw_ih = flat.transpose(1, 2) @ x.reshape(T * B, I)
    dw_hh = dpre.new_empty(directions, width, R)
    for d, first in enumerate(dpre[first_steps(dpre, lengths)]):
        states = y[..., d * R:(d + 1) * R]
        later, earlier = dpre[d, 1:], dpre[d, :-1]
        pre, state = (later, states[:-1]) if d == 0 else (earlier, states[1:])
        formulation = WEIGHT_GRAD_FORMULATIONS[weight_grad_formulation(dpre.dtype)]
        formulation(dw_hh[d], (first, h0[d]), pre.reshape(-1, width), state.reshape(-1, R))
    db = bias_grad(flat) if need_bias else None
    return dx, dw_ih, dw_hh, db
