"""Bag-of-words encoder: embed every time step on its own, then sum or average over time.

It sees which inputs occur but not in which order, so it is the order-free baseline a recurrence
must beat on tasks whose answer depends on order (temporal order, copy memory, parity).
:class:`StepEmbedding`, the per-step input layer, is shared with :class:`rnnbench.baselines.cnn.CNNEncoder`.
"""

from __future__ import annotations

import torch
from torch import nn

from rnnbench.baselines.drop_in import require_positive_int

POOLINGS = ("sum", "mean")


class StepEmbedding(nn.Module):
    """Maps every time step independently to ``hidden_size`` features, time-major.

    * dense input ``x (T, B, input_size)`` (floating, the parameters' dtype) goes through
      ``nn.Linear(input_size, hidden_size)``;
    * with ``vocab_size``, input is token ids ``x (T, B)`` (integer, each in ``[0, vocab_size)``)
      looked up in ``nn.Embedding(vocab_size, hidden_size)``; ``input_size`` is then not used.

    Returns ``(T, B, hidden_size)``. Unbatched input is not accepted: ``B`` is always present.
    """

    def __init__(self, input_size: int, hidden_size: int, vocab_size: int | None = None):
        super().__init__()
        self.input_size = require_positive_int("input_size", input_size)
        self.hidden_size = require_positive_int("hidden_size", hidden_size)
        self.vocab_size = None if vocab_size is None else require_positive_int("vocab_size", vocab_size)
        if vocab_size is None:
            self.project = nn.Linear(input_size, hidden_size)
        else:
            self.project = nn.Embedding(vocab_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if self.vocab_size is None:
            self._check_dense(x)
        else:
            self._check_tokens(x)
        return self.project(x)

    def _check_dense(self, x: torch.Tensor) -> None:
        if x.dim() != 3:
            raise ValueError(f"x must have 3 dimensions (T, B, input_size), got shape {tuple(x.shape)}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"x.size(-1) must be equal to input_size={self.input_size}, got {x.shape[-1]}")
        _require_time_steps(x)
        weight = self.project.weight
        if x.dtype != weight.dtype:
            raise TypeError(f"x must have dtype {weight.dtype} like the parameters, got {x.dtype}")

    def _check_tokens(self, x: torch.Tensor) -> None:
        if x.dim() != 2:
            raise ValueError(f"token ids x must have 2 dimensions (T, B), got shape {tuple(x.shape)}")
        if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
            raise TypeError(f"token ids x must be an integer tensor, got dtype {x.dtype}")
        _require_time_steps(x)
        # checked here because nn.Embedding fails with an opaque device-side assert on CUDA
        low, high = x.min().item(), x.max().item()
        if low < 0 or high >= self.vocab_size:
            raise ValueError(
                f"token ids must be in [0, vocab_size={self.vocab_size}), got values in [{low}, {high}]"
            )


def _require_time_steps(x: torch.Tensor) -> None:
    # pooling over zero steps has no value (mean is NaN, max is undefined)
    if x.shape[0] == 0:
        raise ValueError(f"x must have at least one time step, got shape {tuple(x.shape)}")


class BagOfWordsEncoder(nn.Module):
    """Order-free encoder: :class:`StepEmbedding` per step, then ``pooling`` ("sum" or "mean") over time.

    Input: dense ``x (T, B, input_size)`` or, with ``vocab_size``, token ids ``x (T, B)``.
    Output: features ``(B, hidden_size)``. Permuting the time steps changes the output only by
    floating-point rounding of the sum.
    """

    def __init__(self, input_size: int, hidden_size: int, vocab_size: int | None = None, pooling: str = "mean"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        self.embed = StepEmbedding(input_size, hidden_size, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = self.embed(x)
        return steps.sum(dim=0) if self.pooling == "sum" else steps.mean(dim=0)

    def step_features(self, x: torch.Tensor) -> torch.Tensor:
        """The features of every prefix, ``(T, B, hidden_size)``: row t is ``forward(x[:t + 1])``
        (a running sum or mean), so a sequence right-padded after step t reads its own row t."""
        # a running sum along the last, contiguous axis is several times faster on CPU than along time-major axis 0
        totals = self.embed(x).movedim(0, -1).cumsum(dim=-1).movedim(-1, 0)
        if self.pooling == "sum":
            return totals
        counts = torch.arange(1, x.shape[0] + 1, device=totals.device, dtype=totals.dtype)
        return totals / counts[:, None, None]

    def extra_repr(self) -> str:
        return f"pooling={self.pooling!r}"
