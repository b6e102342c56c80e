"""Shared scaffolding for drop-in replacements of ``torch.nn.RNN`` and ``torch.nn.LSTM``.

A subclass only supplies the single-layer recurrence (:meth:`RecurrentDropIn._layer`); this module
owns everything the user sees and that must match ``torch.nn`` exactly:

* constructor arguments ``input_size, hidden_size, num_layers, bias, batch_first`` (plus
  ``nonlinearity`` for the Elman RNN), with ``dropout``/``bidirectional``/``proj_size`` accepted
  only at their defaults so a ``torch.nn`` call site keeps working or fails loudly;
* parameters with torch's names and shapes (``weight_ih_l{k}`` ``(G*H, I_k)``, ``weight_hh_l{k}``
  ``(G*H, H)``, ``bias_ih_l{k}``/``bias_hh_l{k}`` ``(G*H,)``; G = 4 for the LSTM, gate order
  i, f, g, o; G = 1 for the RNN) and torch's initialisation U(-1/sqrt(H), 1/sqrt(H)), so
  ``load_state_dict`` works in both directions;
* ``forward(input, hx=None)`` with batched ``(T, B, I)`` / ``(B, T, I)`` or unbatched ``(T, I)``
  input, optional initial states, and torch's return values ``output, h_n`` or
  ``output, (h_n, c_n)``;
* input validation with errors that name the bad value and what was expected.

Subclasses receive time-major tensors ``x (T, B, I_k)``, ``h0``/``c0`` ``(B, H)`` and return
``y (T, B, H)`` and the final states of that layer.
"""

from __future__ import annotations

import math

import torch
from torch import nn

NONLINEARITIES = ("tanh", "relu")


def require_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class RecurrentDropIn(nn.Module):
    """Base of every drop-in recurrent module (see the module docstring)."""

    #: number of gate blocks stacked in the weight matrices (4 for the LSTM, 1 for the RNN)
    gates: int = 1
    #: whether the cell carries a second state (the LSTM's cell state ``c``)
    has_cell_state: bool = False

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.input_size = require_positive_int("input_size", input_size)
        self.hidden_size = require_positive_int("hidden_size", hidden_size)
        self.num_layers = require_positive_int("num_layers", num_layers)
        if dropout != 0.0:
            raise ValueError(f"dropout between layers is not supported, got dropout={dropout!r}; expected 0.0")
        if bidirectional:
            raise ValueError("bidirectional=True is not supported; expected bidirectional=False")
        if proj_size != 0:
            raise ValueError(f"proj_size is not supported, got proj_size={proj_size!r}; expected 0")
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = 0.0
        self.bidirectional = False
        self.proj_size = 0
        factory = {"device": device, "dtype": dtype}
        rows = self.gates * hidden_size
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size
            self.register_parameter(f"weight_ih_l{layer}", nn.Parameter(torch.empty(rows, layer_input, **factory)))
            self.register_parameter(f"weight_hh_l{layer}", nn.Parameter(torch.empty(rows, hidden_size, **factory)))
            if self.bias:
                self.register_parameter(f"bias_ih_l{layer}", nn.Parameter(torch.empty(rows, **factory)))
                self.register_parameter(f"bias_hh_l{layer}", nn.Parameter(torch.empty(rows, **factory)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch.nn's initialisation: every parameter ~ U(-1/sqrt(H), 1/sqrt(H))."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for weight in self.parameters():
                weight.uniform_(-bound, bound)

    def layer_parameters(self, layer: int):
        """``(weight_ih, weight_hh, bias_ih, bias_hh)`` of one layer; biases are None without bias."""
        weight_ih = getattr(self, f"weight_ih_l{layer}")
        weight_hh = getattr(self, f"weight_hh_l{layer}")
        if not self.bias:
            return weight_ih, weight_hh, None, None
        return weight_ih, weight_hh, getattr(self, f"bias_ih_l{layer}"), getattr(self, f"bias_hh_l{layer}")

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        if not self.bias:
            text += ", bias=False"
        if self.batch_first:
            text += ", batch_first=True"
        return text

    # ---- the one thing a subclass implements --------------------------------------------------

    def _layer(self, layer: int, x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor | None):
        """Run layer ``layer`` over time-major ``x (T, B, I_k)`` from states ``(B, H)``.

        Returns ``(y, h_n, c_n)`` with ``y (T, B, H)``; ``c_n`` is None for cells without one.
        """
        raise NotImplementedError

    # ---- forward: validation, layout, layer stacking ------------------------------------------

    def forward(self, input: torch.Tensor, hx=None):
        x, batched = self._validated_input(input)
        if self.batch_first and batched:
            x = x.transpose(0, 1)
        batch = x.shape[1]
        h0, c0 = self._initial_states(hx, batch, batched, x)
        final_h, final_c = [], []
        for layer in range(self.num_layers):
            x, h_n, c_n = self._layer(layer, x, h0[layer], None if c0 is None else c0[layer])
            final_h.append(h_n)
            final_c.append(c_n)
        output = x
        h_n = torch.stack(final_h)
        c_n = torch.stack(final_c) if self.has_cell_state else None
        if batched:
            if self.batch_first:
                output = output.transpose(0, 1)
        else:
            output, h_n = output.squeeze(1), h_n.squeeze(1)
            c_n = None if c_n is None else c_n.squeeze(1)
        if self.has_cell_state:
            return output, (h_n, c_n)
        return output, h_n

    def _validated_input(self, input):
        if not isinstance(input, torch.Tensor):
            raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
        if input.dim() not in (2, 3):
            layout = "(B, T, input_size)" if self.batch_first else "(T, B, input_size)"
            raise ValueError(
                f"input must have 3 dimensions {layout} or 2 dimensions (T, input_size), "
                f"got shape {tuple(input.shape)}"
            )
        if input.shape[-1] != self.input_size:
            raise ValueError(
                f"input.size(-1) must be equal to input_size={self.input_size}, got {input.shape[-1]}"
            )
        reference = self.weight_ih_l0
        if input.dtype != reference.dtype:
            raise TypeError(f"input must have dtype {reference.dtype} like the parameters, got {input.dtype}")
        if input.device != reference.device:
            raise ValueError(
                f"input is on device {input.device} but the parameters are on {reference.device}"
            )
        batched = input.dim() == 3
        x = input if batched else input.unsqueeze(1)
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"input must have at least one time step and one sequence, got shape {tuple(input.shape)}")
        return x, batched

    def _initial_states(self, hx, batch: int, batched: bool, x: torch.Tensor):
        """Initial states as ``(num_layers, B, H)`` tensors (zeros when ``hx`` is None)."""
        expected = (self.num_layers, batch, self.hidden_size) if batched else (self.num_layers, self.hidden_size)
        if hx is None:
            zeros = x.new_zeros(self.num_layers, batch, self.hidden_size)
            return zeros, (zeros if self.has_cell_state else None)
        if self.has_cell_state:
            if not (isinstance(hx, (tuple, list)) and len(hx) == 2):
                raise TypeError(f"hx must be a tuple (h_0, c_0) for {type(self).__name__}, got {type(hx).__name__}")
            states = [self._validated_state(name, state, expected, x) for name, state in zip(("h_0", "c_0"), hx)]
        else:
            states = [self._validated_state("h_0", hx, expected, x), None]
        if not batched:
            states = [None if s is None else s.unsqueeze(1) for s in states]
        return states[0], states[1]

    @staticmethod
    def _validated_state(name: str, state, expected: tuple, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(state, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(state).__name__}")
        if tuple(state.shape) != expected:
            raise ValueError(f"{name} must have shape {expected}, got {tuple(state.shape)}")
        if state.dtype != x.dtype:
            raise TypeError(f"{name} must have dtype {x.dtype} like the input, got {state.dtype}")
        if state.device != x.device:
            raise ValueError(f"{name} is on device {state.device} but the input is on {x.device}")
        return state


class LSTMDropIn(RecurrentDropIn):
    """Drop-in base for ``torch.nn.LSTM``: four gates (i, f, g, o) and a cell state."""

    gates = 4
    has_cell_state = True


class RNNDropIn(RecurrentDropIn):
    """Drop-in base for ``torch.nn.RNN`` (Elman): ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``."""

    gates = 1
    has_cell_state = False

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
    ):
        # torch.nn.RNN's positional order (no proj_size)
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity must be one of {NONLINEARITIES}, got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first, dropout=dropout,
                         bidirectional=bidirectional, device=device, dtype=dtype)

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return text if self.nonlinearity == "tanh" else text + f", nonlinearity={self.nonlinearity!r}"
