"""One LSTM layer, every direction, on the Triton kernels, as a ``torch.autograd.Function``.

Forward: one GEMM per direction for the input projection of all steps
(:mod:`rnnbench.kernels.projections`), then one launch of the recurrent kernel for all directions.
In training the kernel overwrites the projection buffer with the activated gates and stores the
float32 cell states; nothing is recomputed in the backward. That costs ``D*T*B*(4H*s + 4H)`` bytes
besides the output (s = bytes per element) and needs no extra buffer for the gates, since the
projection buffer is reused. With :func:`rnnbench.kernels.switches.overlapped_projection` (off by
default) the Gluon forward's projection runs beside it on a second stream instead, a few steps at a
time, each announced by a flag the kernel polls (:mod:`rnnbench.kernels.overlapped_projection`).
Where the plan fuses the input projection into the Gluon forward
(:func:`rnnbench.kernels.plan.gluon_input_tiles`: off by default, ``GLUON_FUSED_INPUT``), there is
no GEMM and no projection buffer: inference allocates none of the ``D*T*B*4H`` elements, training
allocates them for the gates the kernel stores.

With ``path="gluon"`` the recurrences are the Gluon kernels of :mod:`rnnbench.kernels.gluon_lstm`
(forward) and :mod:`rnnbench.kernels.gluon_lstm_backward` (same buffers, sm_90 only); where the
Gluon backward cannot run a shape that the forward can (co-residency), the backward is the plain
kernels' (planned as ``auto``). ``auto`` takes the Gluon forward where it measured faster
(:func:`rnnbench.kernels.plan.prefers_gluon`) and the Gluon backward for every 16-bit LSTM it can
plan (:func:`rnnbench.kernels.plan.prefers_gluon_backward`), after either forward.

Whether the forward saves anything is decided where autograd can still see it: inside
``LSTMLayerFunction.forward`` grad mode is always off and ``ctx.needs_input_grad`` reports the
parameters' ``requires_grad`` even under ``torch.no_grad()``, so :func:`records_graph` is evaluated
by the callers and passed in. An inference call (no grad mode, or nothing that requires grad) runs
the inference kernel: no gates, no cell states stored, no ``c_all`` buffer.

Backward: the reverse-time kernel turns the saved gates, in place again, into the gradients of the
gate pre-activations, then GEMMs over all steps give ``dx, dW_ih, dW_hh, db``. With
:func:`rnnbench.kernels.switches.overlapped_gradients` (off by default) the GEMMs of ``dx, dW_ih, dW_hh``
(and ``db``) run beside the kernel on a second stream instead, a range of finished steps at a time
(:mod:`rnnbench.kernels.overlapped_gradients`). Because the saved
gates are consumed, a graph through this layer can be backpropagated once (no
``retain_graph=True`` second pass): a second pass raises instead of returning wrong gradients.

An LSTM with projection (:func:`projected_lstm_layer`) runs the same kernels on the unprojected
state, with the projection folded into the recurrent matrix.
"""

from __future__ import annotations

import torch

from rnnbench.kernels.launch import (
    aligned_weight_rows, dot_precision, exchange_buffer, lengths_argument, make_plan, output_buffer, run_phases,
    sync_buffer,
)
from rnnbench.kernels.lstm_kernels import lstm_backward_kernel, lstm_forward_kernel
from rnnbench.kernels import plan as plan_module
from rnnbench.kernels import switches
from rnnbench.kernels.overlapped_gradients import OverlappedGradients
from rnnbench.kernels.overlapped_projection import OverlappedProjection, overlap_refusal
from rnnbench.kernels.plan import GLUON, overlapped_gradients_refusal, overlapped_projection_refusal, row_split
from rnnbench.kernels.projections import final_states, first_steps, parameter_and_input_grads, project_inputs
from rnnbench.kernels.weight_grad import multiprocessors_of


def records_graph(*tensors) -> bool:
    """Whether autograd records a call on ``tensors`` (None allowed): grad mode is on and one of them
    requires grad. Decides whether the forward saves what the backward needs."""
    return torch.is_grad_enabled() and any(tensor is not None and tensor.requires_grad for tensor in tensors)


class LSTMLayerFunction(torch.autograd.Function):
    """``(x, lengths, h0, c0, first, w_ih, w_hh, b_ih, b_hh, path, training) -> (y, h_n, c_n)``.

    Time-major ``x (T, B, I)``; ``lengths (B,)`` or None (row b runs steps ``[0, lengths[b])``);
    ``h0, c0 (D, B, H)``; ``first (D, B, 4H)`` or None, added to the pre-activation of each row's
    first step; ``w_ih (D, 4H, I)``, ``w_hh (D, 4H, H)``, biases ``(D, 4H)`` or None. Returns
    ``y (T, B, D*H)`` (zero past each row's end), ``h_n, c_n (D, B, H)`` (each row's last step).
    ``training``: :func:`records_graph` of the tensor arguments (the callers' grad mode), whether
    the forward stores the gates and cell states for the backward.
    """

    @staticmethod
    def forward(ctx, x, lengths, h0, c0, first, w_ih, w_hh, b_ih, b_hh, path, training):
        T, B, I = x.shape
        directions, _, H = w_hh.shape
        x = x.contiguous()
        # the Gluon forward may project the input itself where every row runs every step, no first
        # step has an extra term, and TMA can read x (16-byte aligned)
        fusable = lengths is None and first is None and x.data_ptr() % 16 == 0
        plan = make_plan("lstm", H, B, x, path, directions, input_size=I if fusable else None,
                         inference=not training and lengths is None)
        h0, c0, w_hh = h0.contiguous(), c0.contiguous(), w_hh.contiguous()
        fused_input = overlap = None
        if switches.GLUON_OVERLAPPED_PROJECTION and overlapped_projection_refusal(
                plan, lengths is not None, first is not None) is None and overlap_refusal(x.device) is None:
            # projected beside the kernel on a second stream: the first GEMM now, the others after the launch
            overlap = OverlappedProjection(x, w_ih, b_ih, b_hh, plan_module.OVERLAPPED_CHUNK_STEPS)
            gates = overlap.xg
            overlap.start()
        elif plan.input_tiles:
            from rnnbench.kernels.gluon_lstm import fused_input_arguments  # imports Gluon: only where planned

            fused_input = fused_input_arguments(x, w_ih, b_ih, b_hh)
            # the kernel writes the activated gates here in training; inference keeps no such buffer
            gates = output_buffer((directions, T, B, 4 * H), x.dtype, x.device) if training else None
        else:
            gates = project_inputs(x, w_ih, b_ih, b_hh)
            if first is not None:
                gates[first_steps(gates, lengths)] += first
        lengths_arg, has_lengths = lengths_argument(lengths, x)
        y = output_buffer((T, B, directions * H), x.dtype, x.device)
        c_all = output_buffer((directions, T, B, H), torch.float32, x.device) if training else y
        c_n = output_buffer((directions, B, H), torch.float32, x.device)
        exchange = exchange_buffer(plan, 1, x, first=h0)
        rows = aligned_weight_rows(w_hh)
        if plan.path == GLUON:
            from rnnbench.kernels.gluon_lstm import run_forward  # imports Gluon: only where the planner allowed it

            try:
                run_forward(plan, gates, rows, c0, y, c_all, c_n, exchange, lengths_arg, (T, B, H), training,
                            has_lengths, fused_input=fused_input, input_flags=None if overlap is None else overlap.flags,
                            input_chunk=0 if overlap is None else overlap.chunk_steps)
            finally:
                if overlap is not None:
                    overlap.finish()
        else:
            run_phases(lstm_forward_kernel, plan, T, (gates, rows, h0, c0, y, c_all, c_n, exchange, lengths_arg),
                       (T, B, H, rows.stride(-2)), x.device, TRAINING=training, DOT_PRECISION=dot_precision(x.dtype),
                       HAS_LENGTHS=has_lengths, M_SPLIT=row_split("lstm", False, plan.k_split, plan.num_warps))
        if training:
            ctx.save_for_backward(x, h0, c0, w_ih, w_hh, y, lengths_arg)
            ctx.gates, ctx.c_all, ctx.path = gates, c_all, path
            ctx.has_bias, ctx.has_lengths = b_ih is not None, has_lengths
            # decided now: the backward runs after the caller's switches (TritonLSTM's) are restored
            ctx.overlap_gradients = switches.OVERLAPPED_GRADIENTS
        return y, final_states(y, lengths, directions), c_n.to(x.dtype)

    @staticmethod
    def backward(ctx, dy, dh_n, dc_n):
        if ctx.gates is None:
            raise RuntimeError(
                "TritonLSTM's backward can run once per forward: its saved gates are overwritten in place "
                "(retain_graph=True and a second backward are not supported)"
            )
        x, h0, c0, w_ih, w_hh, y, lengths_arg = ctx.saved_tensors
        gates, c_all = ctx.gates, ctx.c_all
        ctx.gates = ctx.c_all = None
        directions, T, B, _ = gates.shape
        plan = make_plan("lstm", w_hh.shape[2], B, x, ctx.path, directions, backward=True)
        dy = torch.zeros_like(y) if dy is None else dy.contiguous()
        dh_n = torch.zeros_like(h0) if dh_n is None else dh_n.contiguous()
        dc_n = torch.zeros_like(c0) if dc_n is None else dc_n.contiguous()
        dh0 = output_buffer(h0.shape, torch.float32, x.device)
        dc0 = output_buffer(c0.shape, torch.float32, x.device)
        exchange = exchange_buffer(plan, 4, x)
        need = ctx.needs_input_grad
        sync = overlap = None
        if ctx.overlap_gradients and overlap_refusal(x.device) is None and overlapped_gradients_refusal(
                plan, x.dtype, (T, B, w_hh.shape[2], x.shape[2]), ctx.has_lengths,
                multiprocessors_of(x.device)) is None:
            # dx, dW_ih and dW_hh beside the recurrence on a second stream, each range of steps after
            # the recurrence's flags in sync have passed it
            sync = sync_buffer(plan, x.device)
            overlap = OverlappedGradients(gates, x, h0, y, w_ih, need[0], ctx.has_bias,
                                          plan_module.OVERLAPPED_CHUNK_STEPS)
            overlap.start()
        if plan.path == GLUON:
            from rnnbench.kernels.gluon_lstm_backward import run_backward  # imports Gluon: only where planned

            run_backward(plan, gates, w_hh, c_all, c0, dy, dh_n, dc_n, dh0, dc0, exchange, lengths_arg,
                         (T, B, w_hh.shape[2]), ctx.has_lengths, sync=sync)
        else:
            rows = aligned_weight_rows(w_hh)
            run_phases(lstm_backward_kernel, plan, T + 1,
                       (gates, rows, c_all, c0, dy, dh_n, dc_n, dh0, dc0, exchange, lengths_arg),
                       (T, B, w_hh.shape[2], rows.stride(-2)), x.device, sync=sync,
                       DOT_PRECISION=dot_precision(x.dtype), HAS_LENGTHS=ctx.has_lengths)
        dgates = gates
        lengths = lengths_arg if ctx.has_lengths else None
        dfirst = dgates[first_steps(dgates, lengths)] if need[4] else None
        if overlap is None:
            dx, dw_ih, dw_hh, db = parameter_and_input_grads(dgates, x, h0, y, w_ih, need[0], ctx.has_bias, lengths)
        else:
            overlap.finish(sync, plan.grid[0])
            dx = overlap.dx
            dw_ih, dw_hh = overlap.weight_grads(x.dtype)
            db = overlap.bias_grad(x.dtype)
        # separate tensors for the two bias gradients: autograd may keep them as .grad
        return (dx, None, dh0.to(x.dtype) if need[2] else None, dc0.to(x.dtype) if need[3] else None, dfirst,
                dw_ih, dw_hh, db, None if db is None else db.clone(), None, None)


def lstm_layer(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=None, path: str = "auto"):
    """``(y, h_n, c_n)`` of one LSTM layer, all D directions in one launch; shapes as in
    :class:`LSTMLayerFunction` (weights and states stacked over directions)."""
    training = records_graph(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    return LSTMLayerFunction.apply(x, lengths, h0, c0, None, w_ih, w_hh, b_ih, b_hh, path, training)


def projected_lstm_layer(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths=None, path: str = "auto"):
    """One LSTM layer with projection (torch's ``proj_size = P``): ``h_t = W_hr (o_t * tanh(c_t))``.

    ``h0 (D, B, P)``, ``c0 (D, B, H)``, ``w_hh (D, 4H, P)``, ``w_hr (D, P, H)``; returns
    ``y (T, B, D*P)``, ``h_n (D, B, P)``, ``c_n (D, B, H)``.

    The kernels run the recurrence on the unprojected ``m_t = o_t * tanh(c_t)``: since
    ``h_{t-1} W_hh^T = m_{t-1} (W_hh W_hr)^T``, the recurrent matrix is ``W_hh W_hr (4H, H)`` and
    ``h0 W_hh^T`` is added to each row's first step; ``y = m W_hr^T`` is one GEMM after the loop.
    The function is torch's exactly (only the rounding differs), autograd through these torch ops
    gives ``dW_hh`` and ``dW_hr``; the recurrence costs what an unprojected layer of size H costs.
    """
    T, B, _ = x.shape
    directions, H = c0.shape[0], c0.shape[2]
    folded = w_hh @ w_hr
    first = h0 @ w_hh.transpose(1, 2)
    training = records_graph(x, c0, first, w_ih, folded, b_ih, b_hh)
    m, m_n, c_n = LSTMLayerFunction.apply(x, lengths, h0.new_zeros(directions, B, H), c0, first, w_ih, folded,
                                          b_ih, b_hh, path, training)
    y = torch.einsum("tbdh,dph->tbdp", m.view(T, B, directions, H), w_hr).reshape(T, B, -1)
    return y, torch.einsum("dbh,dph->dbp", m_n, w_hr), c_n
