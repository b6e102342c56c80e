"""One Elman RNN layer (tanh or relu), every direction, on the Triton kernels, as a ``torch.autograd.Function``.

Forward: one GEMM per direction for ``W_ih x_t + b_ih + b_hh`` over all steps, then one launch of
the recurrent kernel for all directions. The backward needs only the outputs ``y`` (the derivative
of tanh is ``1 - h^2``, of relu ``h > 0``), so training saves nothing beyond what the forward
returns; the projection buffer is freed. Backward: the reverse-time kernel writes the
pre-activation gradients ``dz (D, T, B, H)``, then GEMMs over all steps give ``dx, dW_ih, dW_hh, db``.
"""

from __future__ import annotations

import torch

from rnnbench.kernels.launch import (
    aligned_weight_rows, dot_precision, exchange_buffer, lengths_argument, make_plan, output_buffer, run_phases,
)
from rnnbench.kernels.projections import final_states, parameter_and_input_grads, project_inputs
from rnnbench.kernels.rnn_kernels import rnn_backward_kernel, rnn_forward_kernel


class RNNLayerFunction(torch.autograd.Function):
    """``(x, lengths, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, path) -> (y, h_n)``.

    Time-major ``x (T, B, I)``; ``lengths (B,)`` or None (row b runs steps ``[0, lengths[b])``);
    ``h0 (D, B, H)``; ``w_ih (D, H, I)``, ``w_hh (D, H, H)``, biases ``(D, H)`` or None. Returns
    ``y (T, B, D*H)`` (zero past each row's end) and ``h_n (D, B, H)`` (each row's last step).
    """

    @staticmethod
    def forward(ctx, x, lengths, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, path):
        T, B, _ = x.shape
        directions, _, H = w_hh.shape
        plan = make_plan("rnn", H, B, x, path, directions)
        x, h0, w_hh = x.contiguous(), h0.contiguous(), w_hh.contiguous()
        relu = nonlinearity == "relu"
        projected = project_inputs(x, w_ih, b_ih, b_hh)
        lengths_arg, has_lengths = lengths_argument(lengths, x)
        y = output_buffer((T, B, directions * H), x.dtype, x.device)
        exchange = exchange_buffer(plan, 1, x, first=h0)
        rows = aligned_weight_rows(w_hh)
        run_phases(rnn_forward_kernel, plan, T, (projected, rows, h0, y, exchange, lengths_arg),
                   (T, B, H, rows.stride(-2)), x.device, RELU=relu, DOT_PRECISION=dot_precision(x.dtype),
                   HAS_LENGTHS=has_lengths)
        ctx.save_for_backward(x, h0, w_ih, w_hh, y, lengths_arg)
        ctx.path, ctx.relu, ctx.has_bias, ctx.has_lengths = path, relu, b_ih is not None, has_lengths
        return y, final_states(y, lengths, directions)

    @staticmethod
    def backward(ctx, dy, dh_n):
        x, h0, w_ih, w_hh, y, lengths_arg = ctx.saved_tensors
        T, B, _ = y.shape
        directions, _, H = w_hh.shape
        dy = torch.zeros_like(y) if dy is None else dy.contiguous()
        dh_n = torch.zeros_like(h0) if dh_n is None else dh_n.contiguous()
        dz = output_buffer((directions, T, B, H), y.dtype, y.device)
        dh0 = output_buffer(h0.shape, torch.float32, x.device)
        plan = make_plan("rnn", H, B, x, ctx.path, directions, backward=True)
        exchange = exchange_buffer(plan, 1, y)
        rows = aligned_weight_rows(w_hh)
        run_phases(rnn_backward_kernel, plan, T + 1, (y, rows, dy, dh_n, dz, dh0, exchange, lengths_arg),
                   (T, B, H, rows.stride(-2)), x.device, RELU=ctx.relu, DOT_PRECISION=dot_precision(x.dtype),
                   HAS_LENGTHS=ctx.has_lengths)
        need = ctx.needs_input_grad
        lengths = lengths_arg if ctx.has_lengths else None
        dx, dw_ih, dw_hh, db = parameter_and_input_grads(dz, x, h0, y, w_ih, need[0], ctx.has_bias, lengths)
        # separate tensors for the two bias gradients: autograd may keep them as .grad
        return (dx, None, dh0.to(x.dtype) if need[2] else None, dw_ih, dw_hh, db,
                None if db is None else db.clone(), None, None)


def rnn_layer(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity: str = "tanh", lengths=None, path: str = "auto"):
    """``(y, h_n)`` of one Elman layer, all D directions in one launch; shapes as in
    :class:`RNNLayerFunction` (weights and states stacked over directions)."""
    return RNNLayerFunction.apply(x, lengths, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, path)
