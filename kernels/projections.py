"""The non-sequential parts of a recurrent layer, as GEMMs over all time steps at once.

Shared by the RNN and LSTM layers; ``G*H`` is the width of the stacked gates (4H for the LSTM).
These are torch matmuls: on CUDA they follow ``torch.backends.cuda.matmul.allow_tf32`` (default
off, so fp32 GEMMs are full fp32); 16-bit GEMMs accumulate in fp32.
"""

from __future__ import annotations

import torch


def project_inputs(x: torch.Tensor, w_ih: torch.Tensor, b_ih: torch.Tensor | None, b_hh: torch.Tensor | None) -> torch.Tensor:
    """``W_ih x_t + b_ih + b_hh`` for all steps: ``x (T, B, I)`` -> new contiguous ``(T, B, G*H)``."""
    T, B, I = x.shape
    x2d = x.reshape(T * B, I)
    if b_ih is None:
        out = x2d @ w_ih.t()
    else:
        out = torch.addmm(b_ih + b_hh, x2d, w_ih.t())
    return out.view(T, B, w_ih.shape[0])


def parameter_and_input_grads(dpre, x, h0, y, w_ih, need_dx: bool, need_bias: bool):
    """Gradients from ``dpre (T, B, G*H)``, the gradient of the gate pre-activations.

    ``dx = dpre W_ih``; ``dW_ih = sum_t dpre_t^T x_t``; ``dW_hh = sum_t dpre_t^T h_{t-1}`` with
    ``h_{-1} = h0`` and ``h_t = y_t`` (split in two GEMMs so no shifted copy of ``y`` is made);
    ``db_ih = db_hh = sum over t and b of dpre``. Returns ``(dx, dw_ih, dw_hh, db)`` (None when not needed).
    """
    T, B, I = x.shape
    width = dpre.shape[-1]
    flat = dpre.reshape(T * B, width)
    dx = (flat @ w_ih).view(T, B, I) if need_dx else None
    dw_ih = flat.t() @ x.reshape(T * B, I)
    dw_hh = dpre[0].t() @ h0
    if T > 1:
        dw_hh = torch.addmm(dw_hh, dpre[1:].reshape(-1, width).t(), y[:-1].reshape(-1, y.shape[-1]))
    db = flat.sum(0) if need_bias else None
    return dx, dw_ih, dw_hh, db
