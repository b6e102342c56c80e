"""Seeded problem instances: the inputs, weights and upstream gradients a case runs on.

Every backend of a case receives the same float64 arrays (generated once from the seed) and casts
them to its own dtype and device. The float64 reference a backend is checked against runs on the
same arrays rounded to that backend's dtype (``Problem.rounding``), so the measured error is the
error of the computation, not of storing the inputs in 16 bits. Layouts are time-major: ``x (T, B, I)``, states ``(B, H)``, ``y (T, B, H)``; recurrent
weights use torch's layout ``w_ih (G*H, I)``, ``w_hh (G*H, H)``, ``b_* (G*H,)`` with G = 4 (LSTM,
gates i, f, g, o) or 1 (Elman RNN).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import torch

RECURRENT_FAMILIES = ("rnn", "lstm")
ENCODER_FAMILIES = ("bow", "cnn")
FAMILIES = RECURRENT_FAMILIES + ENCODER_FAMILIES
GATES = {"rnn": 1, "lstm": 4}


@dataclass(frozen=True)
class Problem:
    """Shape, family and seed of one problem; arrays are generated lazily and deterministically.

    ``rounding`` (a dtype name such as ``"bfloat16"``) rounds every array to that dtype and back to
    float64; it describes what a reference computation should start from.
    """

    family: str
    seq_len: int
    batch: int
    input_size: int
    hidden_size: int
    seed: int
    rounding: str | None = None
    #: recurrent options (see :data:`PROBLEM_OPTIONS`): both directions, and a packed batch of mixed lengths
    bidirectional: bool = False
    packed: bool = False

    @property
    def options(self) -> tuple[str, ...]:
        """The :data:`PROBLEM_OPTIONS` this problem uses."""
        return tuple(name for name in PROBLEM_OPTIONS if getattr(self, name))

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def forward_outputs(self) -> tuple[str, ...]:
        """Names of the outputs of a forward pass (``y`` is ``(T, B, D*H)`` for D directions)."""
        return FORWARD_OUTPUTS[self.family] + self._reverse(FORWARD_OUTPUTS[self.family][1:])

    @property
    def gradients(self) -> tuple[str, ...]:
        """Names of the gradients of a recurrent backward pass, the reverse direction's last."""
        states = RECURRENT_GRADIENTS[self.family][1:-4]
        weights = RECURRENT_GRADIENTS[self.family][-4:]
        return ("dx", *states, *self._reverse(states), *weights, *self._reverse(weights))

    def _reverse(self, names: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(f"{name}{REVERSE_SUFFIX}" for name in names) if self.bidirectional else ()

    def rounded(self, dtype: str) -> "Problem":
        """The same problem with its arrays rounded to ``dtype``."""
        return replace(self, rounding=dtype)

    @property
    def is_recurrent(self) -> bool:
        return self.family in RECURRENT_FAMILIES

    @cached_property
    def arrays(self) -> dict[str, np.ndarray]:
        """float64 arrays by name.

        Recurrent families: ``x, h0, dy, dh_n, w_ih, w_hh, b_ih, b_hh`` (+ ``c0, dc_n`` for the LSTM);
        weights ~ U(-1/sqrt(H), 1/sqrt(H)) as torch initialises them, inputs and upstream gradients
        ~ N(0, 1), initial states ~ N(0, 0.25). Bidirectional: also the reverse direction's
        ``*_reverse`` weights, initial states and final-state gradients, and ``dy (T, B, 2H)``.
        Packed: ``lengths (B,)`` (int64, :func:`packed_lengths`); ``x`` past a row's end is ignored. Encoder families: ``x`` and the upstream gradient
        ``dfeatures (B, H)``; their parameters come from the module's own seeded initialisation.
        """
        if self.rounding is not None:
            exact = replace(self, rounding=None).arrays
            return {name: array if name == "lengths" else round_to(array, self.rounding) for name, array in exact.items()}
        rng = np.random.default_rng(self.seed)
        T, B, I, H = self.seq_len, self.batch, self.input_size, self.hidden_size
        arrays = {"x": rng.standard_normal((T, B, I))}
        if not self.is_recurrent:
            arrays["dfeatures"] = rng.standard_normal((B, H))
            return arrays
        rows = GATES[self.family] * H
        bound = 1.0 / math.sqrt(H)
        arrays["w_ih"] = rng.uniform(-bound, bound, (rows, I))
        arrays["w_hh"] = rng.uniform(-bound, bound, (rows, H))
        arrays["b_ih"] = rng.uniform(-bound, bound, rows)
        arrays["b_hh"] = rng.uniform(-bound, bound, rows)
        arrays["h0"] = 0.5 * rng.standard_normal((B, H))
        arrays["dy"] = rng.standard_normal((T, B, H))
        arrays["dh_n"] = rng.standard_normal((B, H))
        if self.family == "lstm":
            arrays["c0"] = 0.5 * rng.standard_normal((B, H))
            arrays["dc_n"] = rng.standard_normal((B, H))
        # the options draw from their own streams, so a problem without them keeps its arrays
        if self.bidirectional:
            arrays.update(self._reverse_arrays(np.random.default_rng([self.seed, 1]), rows, bound))
        if self.packed:
            arrays["lengths"] = packed_lengths(np.random.default_rng([self.seed, 2]), T, B)
        return arrays

    def _reverse_arrays(self, rng: np.random.Generator, rows: int, bound: float) -> dict[str, np.ndarray]:
        """The reverse direction's weights and states (``*_reverse``), and ``dy`` widened to ``(T, B, 2H)``."""
        T, B, I, H = self.seq_len, self.batch, self.input_size, self.hidden_size
        arrays = {
            "w_ih_reverse": rng.uniform(-bound, bound, (rows, I)),
            "w_hh_reverse": rng.uniform(-bound, bound, (rows, H)),
            "b_ih_reverse": rng.uniform(-bound, bound, rows),
            "b_hh_reverse": rng.uniform(-bound, bound, rows),
            "h0_reverse": 0.5 * rng.standard_normal((B, H)),
            "dy": rng.standard_normal((T, B, 2 * H)),
            "dh_n_reverse": rng.standard_normal((B, H)),
        }
        if self.family == "lstm":
            arrays["c0_reverse"] = 0.5 * rng.standard_normal((B, H))
            arrays["dc_n_reverse"] = rng.standard_normal((B, H))
        return arrays


def packed_lengths(rng: np.random.Generator, seq_len: int, batch: int) -> np.ndarray:
    """int64 ``(B,)`` sequence lengths of a packed batch: uniform in ``[ceil(T/2), T]``, unsorted, and
    one row of the full length ``T`` so the padded batch is ``T`` steps long."""
    lengths = rng.integers(-(-seq_len // 2), seq_len + 1, batch)
    lengths[rng.integers(batch)] = seq_len
    return lengths.astype(np.int64)


def round_to(array: np.ndarray, dtype: str) -> np.ndarray:
    """``array`` rounded to ``dtype`` (a torch dtype name) and returned as float64."""
    return torch.from_numpy(array).to(getattr(torch, dtype)).to(torch.float64).numpy()


#: options a recurrent problem can ask for (case params of the same names, value ``true``)
PROBLEM_OPTIONS = ("bidirectional", "packed")
#: torch.nn's suffix of the reverse direction's parameters, used for arrays and outputs too
REVERSE_SUFFIX = "_reverse"

#: names of the outputs a forward pass produces, by family
FORWARD_OUTPUTS = {
    "rnn": ("y", "h_n"),
    "lstm": ("y", "h_n", "c_n"),
    "bow": ("features",),
    "cnn": ("features",),
}
#: names of the gradients a recurrent backward pass produces, by family
RECURRENT_GRADIENTS = {
    "rnn": ("dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh"),
    "lstm": ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh"),
}
