"""The "eager PyTorch" baseline: a Python loop over time of plain torch ops.

``EagerRNN`` and ``EagerLSTM`` are drop-in replacements of ``torch.nn.RNN``/``torch.nn.LSTM`` with
every option of those (see :mod:`rnnbench.baselines.drop_in`). Each layer and direction computes
the input projection of all T steps as one matmul, then per step one ``(B, R) @ (R, G*H)`` matmul
with ``W_hh``, the elementwise cell and, for an LSTM with ``proj_size``, the projection ``W_hr``,
each op a separate kernel launch; autograd provides the backward pass. This is what a recurrence
costs without fused kernels, on any device and dtype torch supports.

:func:`eager_layer` is also the readable reference of what the Triton modules compute, and their
path for what they have no kernel for (float64, an empty batch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rnnbench.baselines.drop_in import LayerWeights, LSTMDropIn, RNNDropIn, RecurrentDropIn
from rnnbench.baselines.packing import reverse_sequences


def eager_layer(module: RecurrentDropIn, layer: int, x: torch.Tensor, lengths: torch.Tensor | None,
                h0: torch.Tensor, c0: torch.Tensor | None):
    """Layer ``layer`` of ``module``, every direction, as a step loop (the ``_layer`` contract of
    :mod:`rnnbench.baselines.drop_in`: padded ``x (T, B, I)``, states ``(D, B, ·)``).

    The reverse direction runs forwards over each row's steps reversed in time
    (:func:`~rnnbench.baselines.packing.reverse_sequences`), and its outputs are reversed back.
    """
    outputs, final_h, final_c = [], [], []
    for direction in range(module.num_directions):
        reverse = direction == 1
        inputs = reverse_sequences(x, lengths) if reverse else x
        y, h, c = _direction(module, module.direction_weights(layer, direction), inputs, lengths, h0[direction],
                             None if c0 is None else c0[direction])
        outputs.append(reverse_sequences(y, lengths) if reverse else y)
        final_h.append(h)
        final_c.append(c)
    c_n = torch.stack(final_c) if module.has_cell_state else None
    return torch.cat(outputs, dim=-1), torch.stack(final_h), c_n


def _direction(module, weights: LayerWeights, x, lengths, h, c):
    """One direction over ``x (T, B, I)`` from ``h (B, R)``, ``c (B, H)``: ``(y (T, B, R), h_n, c_n)``.

    A row whose sequence has ended keeps its states and outputs zeros.
    """
    projected = F.linear(x, weights.weight_ih, weights.bias_ih)
    outputs = []
    for t, projected_t in enumerate(projected):
        h_t, c_t = _step(module, weights, projected_t, h, c)
        if lengths is None:
            h, c = h_t, c_t
            outputs.append(h)
            continue
        running = (t < lengths)[:, None]
        h = torch.where(running, h_t, h)
        c = None if c is None else torch.where(running, c_t, c)
        outputs.append(torch.where(running, h_t, 0.0))
    return torch.stack(outputs), h, c


def _step(module, weights: LayerWeights, projected_t, h, c):
    """One step of the cell from the input's part of the pre-activation ``W_ih x_t + b_ih``."""
    pre = projected_t + F.linear(h, weights.weight_hh, weights.bias_hh)
    if not module.has_cell_state:
        return (torch.tanh if module.nonlinearity == "tanh" else torch.relu)(pre), None
    z_i, z_f, z_g, z_o = pre.chunk(4, dim=-1)
    c = torch.sigmoid(z_f) * c + torch.sigmoid(z_i) * torch.tanh(z_g)
    h = torch.sigmoid(z_o) * torch.tanh(c)
    if weights.weight_hr is not None:
        h = F.linear(h, weights.weight_hr)
    return h, c


class EagerRNN(RNNDropIn):
    """Elman RNN, ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``, stepped in Python."""

    _layer = eager_layer


class EagerLSTM(LSTMDropIn):
    """LSTM with torch's gate order i, f, g, o (and ``h_t = W_hr h_t`` with ``proj_size``), stepped in Python."""

    _layer = eager_layer
