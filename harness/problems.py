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
        ~ N(0, 1), initial states ~ N(0, 0.25). Encoder families: ``x`` and the upstream gradient
        ``dfeatures (B, H)``; their parameters come from the module's own seeded initialisation.
        """
        if self.rounding is not None:
            exact = replace(self, rounding=None).arrays
            return {name: round_to(array, self.rounding) for name, array in exact.items()}
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
        return arrays


def round_to(array: np.ndarray, dtype: str) -> np.ndarray:
    """``array`` rounded to ``dtype`` (a torch dtype name) and returned as float64."""
    return torch.from_numpy(array).to(getattr(torch, dtype)).to(torch.float64).numpy()


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
