"""The model every encoder is trained in: input layer -> encoder -> head, and how arrays enter it.

* input layer: ``nn.Embedding(vocabulary, input_size)`` for token tasks, ``nn.Linear(features,
  input_size)`` for feature tasks;
* encoder: a backend's trainable encoder (``Backend.encoder``, see
  :class:`~rnnbench.harness.registry.Backend`): time-major ``(T, B, input_size) -> (T, B,
  hidden_size)``, output t depending on steps ``<= t`` only, plus a state to carry;
* head: ``Linear(H, H) -> ReLU -> Linear(H, out)``, out = 1 (regression) or the number of classes.

Readout: class and regression targets read each sequence's output at its own last step
(``TaskSpec.lengths - 1``). A recurrence's output there is unaffected by the padding after it; the
bag-of-words and CNN encoders pool over the prefix up to it, so their pads are never pooled either.
Per-step targets (``step_class``) read every step. Loss: squared error (regression), cross-entropy
(class; per-step targets: the mean over every step). Arrays come batch-major, as the tasks
generate them (:func:`as_tensors`); the encoder runs time-major.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rnnbench.harness.tasks import TaskSpec


class SequenceModel(nn.Module):
    """Input layer -> encoder -> head (see the module docstring). Inputs are batch-major as the
    tasks generate them; the encoder runs time-major."""

    def __init__(self, spec: TaskSpec, encoder: nn.Module, input_size: int, hidden_size: int):
        super().__init__()
        self.target = spec.target
        if spec.inputs.kind == "tokens":
            self.input = nn.Embedding(spec.inputs.size, input_size)
        else:
            self.input = nn.Linear(spec.inputs.size, input_size)
        self.encoder = encoder
        outputs = 1 if spec.target.kind == "regression" else spec.target.num_classes
        self.head = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, outputs))

    def encode(self, x: torch.Tensor, state=None, bptt: int = 0):
        """Encoder outputs ``(S, B, H)`` of batch-major ``x`` and the state after the last step.

        With ``bptt`` the sequence runs in chunks of that many steps, aligned to its end (the first
        chunk takes the remainder), and gradients stop between chunks: the loss at the last step
        reaches exactly ``bptt`` steps back."""
        steps = self.input(x.transpose(0, 1))
        if not bptt:
            return self.encoder(steps, state)
        count = steps.shape[0]
        sizes = ([count % bptt] if count % bptt else []) + [bptt] * (count // bptt)
        outputs = []
        for chunk in steps.split(sizes):
            output, state = self.encoder(chunk, state)
            outputs.append(output)
            state = detach_state(state)
        return torch.cat(outputs), state

    def readout(self, outputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Predictions from encoder outputs ``(S, B, H)``: per-step logits ``(B, S, C)``, or at each
        sequence's last step ``lengths - 1``: logits ``(B, C)`` or regression values ``(B,)``."""
        if self.target.kind == "step_class":
            return self.head(outputs).transpose(0, 1)
        last = outputs[lengths - 1, torch.arange(outputs.shape[1], device=outputs.device)]
        predictions = self.head(last)
        return predictions.squeeze(-1) if self.target.kind == "regression" else predictions

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, state=None, bptt: int = 0):
        outputs, state = self.encode(x, state, bptt)
        return self.readout(outputs, lengths), state

    def loss(self, predictions: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """The training loss of :meth:`readout`'s ``predictions``, averaged (or summed) over every target."""
        if self.target.kind == "regression":
            return F.mse_loss(predictions, targets, reduction=reduction)
        return F.cross_entropy(predictions.reshape(-1, predictions.shape[-1]), targets.reshape(-1), reduction=reduction)


def detach_state(state):
    """``state`` (None, a tensor or a tuple of tensors) cut from the autograd graph."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach()
    return tuple(detach_state(part) for part in state)


def initialise(encoder: nn.Module, family: str, forget_bias: float, spectral_radius: float) -> None:
    """Sets the LSTM forget gate's total bias (``b_ih + b_hh``) to ``forget_bias`` and, if
    ``spectral_radius`` > 0, rescales the Elman RNN's ``W_hh`` to that spectral radius; by torch's
    parameter names (``bias_ih_l0``, ``weight_hh_l0``, ...; gate order i, f, g, o), which every
    recurrent backend shares. Other families are left as they are."""
    parameters = dict(encoder.named_parameters())
    with torch.no_grad():
        if family == "lstm":
            for name, bias in parameters.items():
                if name.startswith(("bias_ih_l", "bias_hh_l")):
                    hidden = bias.shape[0] // 4
                    bias[hidden:2 * hidden] = forget_bias if name.startswith("bias_ih") else 0.0
        if family == "rnn" and spectral_radius > 0:
            for name, weight in parameters.items():
                if name.startswith("weight_hh_l"):
                    radius = torch.linalg.eigvals(weight.double()).abs().max().item()
                    weight.mul_(spectral_radius / radius)


def cut_to_longest(spec: TaskSpec, inputs: np.ndarray) -> np.ndarray:
    """``inputs`` without the padding columns beyond its own longest sequence."""
    return inputs[:, :spec.lengths(inputs).max()] if spec.variable_length else inputs


def as_tensors(model: SequenceModel, spec: TaskSpec, inputs: np.ndarray, targets: np.ndarray | None = None):
    """``(x, lengths[, y])`` as tensors on the model's device; float arrays in the model's dtype."""
    weight = next(model.parameters())
    x = torch.from_numpy(inputs).to(weight.device)
    if x.is_floating_point():
        x = x.to(weight.dtype)
    lengths = torch.from_numpy(spec.lengths(inputs)).to(weight.device)
    if targets is None:
        return x, lengths
    y = torch.from_numpy(targets).to(weight.device)
    return x, lengths, (y.to(weight.dtype) if y.is_floating_point() else y)
