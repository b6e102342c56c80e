"""One LSTM layer on the Triton kernels, as a ``torch.autograd.Function``.

Forward: one GEMM for the input projection of all steps (:mod:`rnnbench.kernels.projections`), then the
recurrent kernel. In training the kernel overwrites the projection buffer with the activated gates
and stores the float32 cell states; nothing is recomputed in the backward. That costs
``T*B*(4H*s + 4H)`` bytes besides the output (s = bytes per element) and needs no extra buffer
for the gates, since the projection buffer is reused.

Backward: the reverse-time kernel turns the saved gates, in place again, into the gradients of the
gate pre-activations, then GEMMs over all steps give ``dx, dW_ih, dW_hh, db``. Because the saved
gates are consumed, a graph through this layer can be backpropagated once (no
``retain_graph=True`` second pass): a second pass raises instead of returning wrong gradients.
"""

from __future__ import annotations

import torch

from rnnbench.kernels.launch import dot_precision, exchange_buffer, make_plan, output_buffer, run_phases
from rnnbench.kernels.lstm_kernels import lstm_backward_kernel, lstm_forward_kernel
from rnnbench.kernels.projections import parameter_and_input_grads, project_inputs


class LSTMLayerFunction(torch.autograd.Function):
    """``(x, h0, c0, w_ih, w_hh, b_ih, b_hh, path) -> (y, h_n, c_n)``; time-major ``x (T, B, I)``."""

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, path):
        T, B, _ = x.shape
        H = w_hh.shape[1]
        training = any(ctx.needs_input_grad[:7])
        plan = make_plan("lstm", H, B, x, path)
        x = x.contiguous()
        h0, c0, w_hh = h0.contiguous(), c0.contiguous(), w_hh.contiguous()
        gates = project_inputs(x, w_ih, b_ih, b_hh)
        y = output_buffer((T, B, H), x.dtype, x.device)
        c_all = output_buffer((T, B, H), torch.float32, x.device) if training else y
        c_n = output_buffer((B, H), torch.float32, x.device)
        exchange = exchange_buffer(plan, 1, x, first=h0)
        run_phases(lstm_forward_kernel, plan, T, (gates, w_hh, h0, c0, y, c_all, c_n, exchange), (T, B, H), x.device,
                   TRAINING=training, DOT_PRECISION=dot_precision(x.dtype))
        if training:
            ctx.save_for_backward(x, h0, c0, w_ih, w_hh, y)
            ctx.gates, ctx.c_all, ctx.plan, ctx.has_bias = gates, c_all, plan, b_ih is not None
        return y, y[-1].clone(), c_n.to(x.dtype)

    @staticmethod
    def backward(ctx, dy, dh_n, dc_n):
        if ctx.gates is None:
            raise RuntimeError(
                "TritonLSTM's backward can run once per forward: its saved gates are overwritten in place "
                "(retain_graph=True and a second backward are not supported)"
            )
        x, h0, c0, w_ih, w_hh, y = ctx.saved_tensors
        gates, c_all, plan = ctx.gates, ctx.c_all, ctx.plan
        ctx.gates = ctx.c_all = None
        T, B, H = y.shape
        dy = torch.zeros_like(y) if dy is None else dy.contiguous()
        dh_n = torch.zeros_like(h0) if dh_n is None else dh_n.contiguous()
        dc_n = torch.zeros_like(c0) if dc_n is None else dc_n.contiguous()
        dh0 = output_buffer((B, H), torch.float32, x.device)
        dc0 = output_buffer((B, H), torch.float32, x.device)
        exchange = exchange_buffer(plan, 4, x)
        run_phases(lstm_backward_kernel, plan, T + 1, (gates, w_hh, c_all, c0, dy, dh_n, dc_n, dh0, dc0, exchange),
                   (T, B, H), x.device, DOT_PRECISION=dot_precision(x.dtype))
        dgates = gates
        need = ctx.needs_input_grad
        dx, dw_ih, dw_hh, db = parameter_and_input_grads(dgates, x, h0, y, w_ih, need[0], ctx.has_bias)
        return (dx, dh0.to(x.dtype) if need[1] else None, dc0.to(x.dtype) if need[2] else None,
                dw_ih, dw_hh, db, None if db is None else db.clone(), None)


def lstm_layer(x, h0, c0, w_ih, w_hh, b_ih, b_hh, path: str = "auto"):
    """``(y, h_n, c_n)`` of one LSTM layer; shapes as in :mod:`rnnbench.kernels.lstm_kernels`."""
    return LSTMLayerFunction.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, path)
