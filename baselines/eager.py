"""The "eager PyTorch" baseline: a Python loop over time of plain torch ops.

``EagerRNN`` and ``EagerLSTM`` are drop-in replacements of ``torch.nn.RNN``/``torch.nn.LSTM`` (see
:mod:`rnnbench.baselines.drop_in`). Each layer computes the input projection of all T steps as one matmul,
then per step one ``(B, H) @ (H, G*H)`` matmul with ``W_hh`` and the elementwise cell, each op a
separate kernel launch; autograd provides the backward pass. This is what a recurrence costs without
fused kernels, on any device and dtype torch supports.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rnnbench.baselines.drop_in import LSTMDropIn, RNNDropIn


def _project_inputs(module, layer: int, x: torch.Tensor):
    """``W_ih x_t + b_ih`` for all steps of time-major ``x (T, B, I)`` as one matmul -> ``(T, B, G*H)``.

    Returns it with the layer's recurrent weight ``(G*H, H)`` and bias ``(G*H,)`` (None without bias).
    """
    weight_ih, weight_hh, bias_ih, bias_hh = module.layer_parameters(layer)
    return F.linear(x, weight_ih, bias_ih), weight_hh, bias_hh


class EagerRNN(RNNDropIn):
    """Elman RNN, ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``, stepped in Python."""

    def _layer(self, layer, x, h0, c0):
        projected, weight_hh, bias_hh = _project_inputs(self, layer, x)
        activation = torch.tanh if self.nonlinearity == "tanh" else torch.relu
        h = h0
        outputs = []
        for projected_t in projected:
            h = activation(projected_t + F.linear(h, weight_hh, bias_hh))
            outputs.append(h)
        return torch.stack(outputs), h, None


class EagerLSTM(LSTMDropIn):
    """LSTM with torch's gate order i, f, g, o, stepped in Python."""

    def _layer(self, layer, x, h0, c0):
        projected, weight_hh, bias_hh = _project_inputs(self, layer, x)
        h, c = h0, c0
        outputs = []
        for projected_t in projected:
            z_i, z_f, z_g, z_o = (projected_t + F.linear(h, weight_hh, bias_hh)).chunk(4, dim=-1)
            c = torch.sigmoid(z_f) * c + torch.sigmoid(z_i) * torch.tanh(z_g)
            h = torch.sigmoid(z_o) * torch.tanh(c)
            outputs.append(h)
        return torch.stack(outputs), h, c
