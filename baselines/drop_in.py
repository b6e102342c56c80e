"""Shared scaffolding for drop-in replacements of ``torch.nn.RNN`` and ``torch.nn.LSTM``.

A subclass only supplies one layer's recurrence, both directions (:meth:`RecurrentDropIn._layer`);
this module owns everything the user sees and that must match ``torch.nn`` exactly:

* every constructor argument of the torch module (``input_size, hidden_size, num_layers, bias,
  batch_first, dropout, bidirectional``, ``proj_size`` for the LSTM, ``nonlinearity`` for the RNN,
  ``device, dtype``), validated in torch's order with torch's exception types;
* parameters with torch's names, shapes and registration order: for layer k and direction suffix
  ``""`` or ``"_reverse"``, ``weight_ih_l{k}`` ``(G*H, I_k)``, ``weight_hh_l{k}`` ``(G*H, R)``,
  ``bias_ih_l{k}``/``bias_hh_l{k}`` ``(G*H,)``, ``weight_hr_l{k}`` ``(P, H)`` (LSTM with
  ``proj_size=P > 0``); G = 4 for the LSTM (gate order i, f, g, o), 1 for the RNN; R = P if P > 0
  else H; I_0 = input_size, I_k = D*R for k > 0 (D = 2 directions if bidirectional, else 1); and
  torch's initialisation U(-1/sqrt(H), 1/sqrt(H)), so ``load_state_dict`` works in both directions;
  ``all_weights`` and ``flatten_parameters()`` (a no-op: nothing here needs a flat weight buffer);
* ``forward(input, hx=None)`` with batched ``(T, B, I)`` / ``(B, T, I)``, unbatched ``(T, I)`` or
  ``PackedSequence`` input, optional initial states ``(L*D, B, R)`` (and ``(L*D, B, H)`` cell
  states), ``dropout`` on the outputs of every layer but the last in training mode, and torch's
  return values ``output, h_n`` or ``output, (h_n, c_n)``; B = 0 gives empty outputs;
* input validation raising the exception type torch.nn raises for the same input, with a message
  that names the bad value and what was expected.

Subclasses receive a padded time-major batch ``x (T, B, I_k)``, per-row ``lengths (B,)`` (int64 on
``x``'s device; None when every row runs all T steps) and the layer's initial states
``h0 (D, B, R)``, ``c0 (D, B, H)``. Direction 1 reads each row's own steps backwards in time.
They return ``y (T, B, D*R)`` (direction d in columns ``[d*R, (d+1)*R)``, zero past each row's
end), ``h_n (D, B, R)`` and ``c_n (D, B, H)``: each row's states after its own last step.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from rnnbench.baselines.packing import PackedLayout, unpack

NONLINEARITIES = ("tanh", "relu")


def require_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class LayerWeights(NamedTuple):
    """The parameters of one direction of one layer (None where the module has none)."""

    weight_ih: torch.Tensor
    weight_hh: torch.Tensor
    bias_ih: torch.Tensor | None
    bias_hh: torch.Tensor | None
    weight_hr: torch.Tensor | None


def _check_size(name: str, value) -> None:
    """torch.nn's checks of input_size and hidden_size: an int (TypeError), then positive (ValueError)."""
    if not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be greater than zero, got {value}")


def _check_arguments(input_size, hidden_size, num_layers, bias, batch_first, dropout, proj_size) -> None:
    """The constructor checks of ``torch.nn.RNNBase``, in its order and with its exception types."""
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Number) or not 0 <= dropout <= 1:
        raise ValueError(
            f"dropout must be a number in [0, 1] (the probability of zeroing an element), got {dropout!r}"
        )
    if dropout > 0 and num_layers == 1:
        warnings.warn(
            "dropout option adds dropout after all but last recurrent layer, so non-zero dropout expects "
            f"num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}",
            stacklevel=4,
        )
    for name, flag in (("bias", bias), ("batch_first", batch_first)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {flag!r} of type {type(flag).__name__}")
    _check_size("input_size", input_size)
    _check_size("hidden_size", hidden_size)
    if not isinstance(num_layers, numbers.Real):
        raise TypeError(f"num_layers must be an int, got {num_layers!r} of type {type(num_layers).__name__}")
    if num_layers <= 0:
        raise ValueError(f"num_layers must be greater than zero, got {num_layers}")
    if not isinstance(num_layers, int):
        raise TypeError(f"num_layers must be an int, got {num_layers!r} of type {type(num_layers).__name__}")
    if not isinstance(proj_size, numbers.Real):
        raise TypeError(f"proj_size must be an int, got {proj_size!r} of type {type(proj_size).__name__}")
    if proj_size < 0:
        raise ValueError(f"proj_size must be a positive integer, or zero for no projection, got {proj_size}")
    if proj_size >= hidden_size:
        raise ValueError(f"proj_size must be smaller than hidden_size={hidden_size}, got {proj_size}")
    if proj_size != 0 and (isinstance(proj_size, bool) or not isinstance(proj_size, int)):
        raise TypeError(f"proj_size must be an int, got {proj_size!r} of type {type(proj_size).__name__}")


class RecurrentDropIn(nn.Module):
    """Base of every drop-in recurrent module (see the module docstring)."""

    #: number of gate blocks stacked in the weight matrices (4 for the LSTM, 1 for the RNN)
    gates: int = 1
    #: whether the cell carries a second state (the LSTM's cell state ``c``)
    has_cell_state: bool = False
    #: the torch.nn class name, for messages
    kind: str = "RNN"

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
        _check_arguments(input_size, hidden_size, num_layers, bias, batch_first, dropout, proj_size)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = int(num_layers)
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.proj_size = int(proj_size)
        factory = {"device": device, "dtype": dtype}
        rows, state = self.gates * hidden_size, self.state_size
        self._flat_weights_names: list[str] = []
        self._all_weights: list[list[str]] = []
        for layer in range(self.num_layers):
            for direction in range(self.num_directions):
                layer_input = input_size if layer == 0 else state * self.num_directions
                shapes = {"weight_ih": (rows, layer_input), "weight_hh": (rows, state)}
                if bias:
                    shapes.update(bias_ih=(rows,), bias_hh=(rows,))
                if self.proj_size:
                    shapes["weight_hr"] = (self.proj_size, hidden_size)
                names = []
                for kind, shape in shapes.items():
                    names.append(self._parameter_name(kind, layer, direction))
                    self.register_parameter(names[-1], nn.Parameter(torch.empty(shape, **factory)))
                self._flat_weights_names.extend(names)
                self._all_weights.append(names)
        self.reset_parameters()

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def state_size(self) -> int:
        """Width R of the hidden state ``h`` and of each direction's output: proj_size if > 0, else hidden_size."""
        return self.proj_size or self.hidden_size

    @staticmethod
    def _parameter_name(kind: str, layer: int, direction: int) -> str:
        return f"{kind}_l{layer}{'_reverse' if direction == 1 else ''}"

    def reset_parameters(self) -> None:
        """torch.nn's initialisation: every parameter ~ U(-1/sqrt(H), 1/sqrt(H))."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for weight in self.parameters():
                weight.uniform_(-bound, bound)

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        """The parameters grouped per layer and direction, in torch.nn's order."""
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def flatten_parameters(self) -> None:
        """A no-op, for torch.nn's API: these modules read each parameter where it is."""

    def direction_weights(self, layer: int, direction: int = 0) -> LayerWeights:
        """The parameters of one direction (0: forward in time, 1: reverse) of layer ``layer``."""
        return LayerWeights(*(getattr(self, self._parameter_name(kind, layer, direction), None)
                              for kind in LayerWeights._fields))

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            text += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        if not self.bias:
            text += ", bias=False"
        if self.batch_first:
            text += ", batch_first=True"
        if self.dropout:
            text += f", dropout={self.dropout}"
        if self.bidirectional:
            text += ", bidirectional=True"
        return text

    # ---- the one thing a subclass implements --------------------------------------------------

    def _layer(self, layer: int, x: torch.Tensor, lengths: torch.Tensor | None, h0: torch.Tensor,
               c0: torch.Tensor | None):
        """Run layer ``layer``, every direction, over ``x (T, B, I_k)``; see the module docstring.

        Returns ``(y, h_n, c_n)``; ``c_n`` is None for cells without a cell state.
        """
        raise NotImplementedError

    # ---- forward: validation, layout, layer stacking ------------------------------------------

    def forward(self, input, hx=None):
        layout: PackedLayout | None = None
        if isinstance(input, PackedSequence):
            x, layout = unpack(input)
            batched = True
        else:
            x, batched = self._time_major(input)
        h0, c0 = self._initial_states(hx, x, batched)
        self._check_input(x)
        h0, c0 = (None if s is None else self._check_state(name, s, shape, x)
                  for name, s, shape in zip(("h_0", "c_0"), (h0, c0), self._state_shapes(x.shape[1])))
        if x.shape[0] == 0:
            raise RuntimeError(f"{self.kind}: input must have at least one time step, got {x.shape[0]} steps of "
                               f"shape {tuple(x.shape[1:])}")
        lengths = None
        if layout is not None:
            h0, c0 = layout.to_sorted(h0), None if c0 is None else layout.to_sorted(c0)
            lengths = None if layout.full_length else layout.lengths
        output, h_n, c_n = self._layers(x, lengths, h0, c0, layout)
        if layout is not None:
            output, h_n = layout.pack(output), layout.to_caller_order(h_n)
            c_n = None if c_n is None else layout.to_caller_order(c_n)
        elif not batched:
            output, h_n = output.squeeze(1), h_n.squeeze(1)
            c_n = None if c_n is None else c_n.squeeze(1)
        elif self.batch_first:
            output = output.transpose(0, 1)
        return (output, (h_n, c_n)) if self.has_cell_state else (output, h_n)

    def _layers(self, x, lengths, h0, c0, layout):
        """Every layer in turn, with dropout between layers in training; states ``(L*D, B, ·)``."""
        final_h, final_c = [], []
        directions = self.num_directions
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0 and self.training:
                # on the packed data when the input was packed: the elements torch.nn drops, in its RNG order
                x = (F.dropout(x, self.dropout, True) if layout is None
                     else layout.scatter(F.dropout(layout.gather(x), self.dropout, True)))
            span = slice(layer * directions, (layer + 1) * directions)
            x, h_n, c_n = self._layer(layer, x, lengths, h0[span], None if c0 is None else c0[span])
            final_h.append(h_n)
            final_c.append(c_n)
        return x, torch.cat(final_h), torch.cat(final_c) if self.has_cell_state else None

    def _time_major(self, input) -> tuple[torch.Tensor, bool]:
        """A tensor input as ``(T, B, I)`` and whether it was batched."""
        if not isinstance(input, torch.Tensor):
            raise AttributeError(
                f"{self.kind}: input must be a torch.Tensor or a PackedSequence, got {type(input).__name__}"
            )
        if input.dim() not in (2, 3):
            layout = "(B, T, input_size)" if self.batch_first else "(T, B, input_size)"
            raise ValueError(
                f"{self.kind}: input must have 3 dimensions {layout} or 2 dimensions (T, input_size), "
                f"got shape {tuple(input.shape)}"
            )
        if input.dim() == 2:
            return input.unsqueeze(1), False
        return (input.transpose(0, 1) if self.batch_first else input), True

    def _check_input(self, x: torch.Tensor) -> None:
        reference = self.weight_ih_l0
        if x.dtype != reference.dtype:
            raise ValueError(
                f"{self.kind}: input must have dtype {reference.dtype} like the parameters, got {x.dtype}"
            )
        if x.shape[-1] != self.input_size:
            raise RuntimeError(f"{self.kind}: input.size(-1) must be equal to input_size={self.input_size}, "
                               f"got {x.shape[-1]}")
        if x.device != reference.device:
            raise RuntimeError(f"{self.kind}: input is on device {x.device} but the parameters are on {reference.device}")

    def _state_shapes(self, batch: int) -> tuple[tuple, tuple | None]:
        layers = self.num_layers * self.num_directions
        cell = (layers, batch, self.hidden_size) if self.has_cell_state else None
        return (layers, batch, self.state_size), cell

    def _initial_states(self, hx, x: torch.Tensor, batched: bool):
        """``(h_0, c_0)`` as 3-D tensors (zeros when ``hx`` is None; ``c_0`` None without a cell
        state), after torch.nn's checks of the type and number of dimensions of ``hx``."""
        if hx is None:
            h_shape, c_shape = self._state_shapes(x.shape[1])
            zeros = lambda shape: x.new_zeros(shape)  # noqa: E731
            return zeros(h_shape), (zeros(c_shape) if self.has_cell_state else None)
        states = self._split_states(hx)
        wanted = 3 if batched else 2
        dims = [state.dim() for state in states]
        if any(dim != wanted for dim in dims):
            names = " and ".join(("h_0", "c_0")[: len(states)])
            raise RuntimeError(
                f"{self.kind}: for {'batched 3-D' if batched else 'unbatched 2-D'} input, {names} must be "
                f"{wanted}-D, got {', '.join(f'{dim}-D' for dim in dims)}"
            )
        if self.has_cell_state and isinstance(hx, torch.Tensor):
            raise TypeError(f"LSTM: hx must be a tuple (h_0, c_0), got a Tensor of shape {tuple(hx.shape)}")
        if not batched:
            states = [state.unsqueeze(1) for state in states]
        return states[0], (states[1] if self.has_cell_state else None)

    def _split_states(self, hx) -> list[torch.Tensor]:
        """``[h_0]`` or ``[h_0, c_0]`` from ``hx``, with the exception types torch.nn gives a malformed one."""
        if not self.has_cell_state:
            if not isinstance(hx, torch.Tensor):
                raise AttributeError(f"RNN: hx must be a torch.Tensor, got {type(hx).__name__}")
            return [hx]
        if not isinstance(hx, (tuple, list, torch.Tensor)):
            raise TypeError(f"LSTM: hx must be a tuple (h_0, c_0), got {type(hx).__name__}")
        if len(hx) < 2:
            raise IndexError(f"LSTM: hx must be a tuple (h_0, c_0), got {len(hx)} element(s)")
        if len(hx) > 2 and not isinstance(hx, torch.Tensor):
            raise RuntimeError(f"LSTM: hx must be a tuple of two states (h_0, c_0), got {len(hx)}")
        for name, state in zip(("h_0", "c_0"), hx[:2]):
            if not isinstance(state, torch.Tensor):
                raise AttributeError(f"LSTM: {name} must be a torch.Tensor, got {type(state).__name__}")
        return [hx[0], hx[1]]

    def _check_state(self, name: str, state: torch.Tensor, expected: tuple, x: torch.Tensor) -> torch.Tensor:
        if tuple(state.shape) != expected:
            raise RuntimeError(f"{self.kind}: {name} must have shape {expected}, got {tuple(state.shape)}")
        if state.device != x.device:
            raise RuntimeError(f"{self.kind}: {name} is on device {state.device} but the input is on {x.device}")
        if state.dtype != x.dtype:
            raise RuntimeError(f"{self.kind}: {name} must have dtype {x.dtype} like the input, got {state.dtype}")
        return state


class LSTMDropIn(RecurrentDropIn):
    """Drop-in base for ``torch.nn.LSTM``: four gates (i, f, g, o), a cell state, optional projection."""

    gates = 4
    has_cell_state = True
    kind = "LSTM"


class RNNDropIn(RecurrentDropIn):
    """Drop-in base for ``torch.nn.RNN`` (Elman): ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``."""

    gates = 1
    has_cell_state = False
    kind = "RNN"

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
        proj_size=None,
    ):
        # torch.nn.RNN's positional order; it refuses proj_size whatever its value
        if proj_size is not None:
            raise ValueError(f"proj_size is only supported by the LSTM, not the RNN; got proj_size={proj_size!r}")
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity must be one of {NONLINEARITIES}, got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first, dropout=dropout,
                         bidirectional=bidirectional, device=device, dtype=dtype)

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return text if self.nonlinearity == "tanh" else text + f", nonlinearity={self.nonlinearity!r}"
