"""One Elman RNN layer (tanh or relu) on the Triton kernels, as a ``torch.autograd.Function``.

Forward: one GEMM for ``W_ih x_t + b_ih + b_hh`` over all steps, then the recurrent kernel. The
backward needs only the outputs ``y`` (the derivative of tanh is ``1 - h^2``, of relu ``h > 0``),
so training saves nothing beyond what the forward returns; the projection buffer is freed.
Backward: the reverse-time kernel writes the pre-activation gradients ``dz (T, B, H)``, then GEMMs
over all steps give ``dx, dW_ih, dW_hh, db``.
"""

from __future__ import annotations

import torch

from rnnbench.kernels.launch import dot_precision, exchange_buffer, make_plan, output_buffer, run_phases
from rnnbench.kernels.projections import parameter_and_input_grads, project_inputs
from rnnbench.kernels.rnn_kernels import rnn_backward_kernel, rnn_forward_kernel


class RNNLayerFunction(torch.autograd.Function):
    """``(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, path) -> (y, h_n)``; time-major ``x (T, B, I)``."""

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, path):
        T, B, _ = x.shape
        H = w_hh.shape[1]
        plan = make_plan("rnn", H, B, x, path)
        x, h0, w_hh = x.contiguous(), h0.contiguous(), w_hh.contiguous()
        relu = nonlinearity == "relu"
        projected = project_inputs(x, w_ih, b_ih, b_hh)
        y = output_buffer((T, B, H), x.dtype, x.device)
        exchange = exchange_buffer(plan, 1, x, first=h0)
        run_phases(rnn_forward_kernel, plan, T, (projected, w_hh, h0, y, exchange), (T, B, H), x.device,
                   RELU=relu, DOT_PRECISION=dot_precision(x.dtype))
        ctx.save_for_backward(x, h0, w_ih, w_hh, y)
        ctx.plan, ctx.relu, ctx.has_bias = plan, relu, b_ih is not None
        return y, y[-1].clone()

    @staticmethod
    def backward(ctx, dy, dh_n):
        x, h0, w_ih, w_hh, y = ctx.saved_tensors
        T, B, H = y.shape
        dy = torch.zeros_like(y) if dy is None else dy.contiguous()
        dh_n = torch.zeros_like(h0) if dh_n is None else dh_n.contiguous()
        dz = output_buffer((T, B, H), y.dtype, y.device)
        dh0 = output_buffer((B, H), torch.float32, x.device)
        exchange = exchange_buffer(ctx.plan, 1, y)
        run_phases(rnn_backward_kernel, ctx.plan, T + 1, (y, w_hh, dy, dh_n, dz, dh0, exchange), (T, B, H), x.device,
                   RELU=ctx.relu, DOT_PRECISION=dot_precision(x.dtype))
        need = ctx.needs_input_grad
        dx, dw_ih, dw_hh, db = parameter_and_input_grads(dz, x, h0, y, w_ih, need[0], ctx.has_bias)
        # separate tensors for the two bias gradients: autograd may keep them as .grad
        return dx, dh0.to(x.dtype) if need[1] else None, dw_ih, dw_hh, db, None if db is None else db.clone(), None, None


def rnn_layer(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity: str = "tanh", path: str = "auto"):
    """``(y, h_n)`` of one Elman layer; shapes as in :mod:`rnnbench.kernels.rnn_kernels`."""
    return RNNLayerFunction.apply(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, path)
