"""1-D convolutional encoder: dilated causal convolutions over time, then a global max-pool.

It sees order, but only within a fixed window (its receptive field), so it is the baseline that
separates "needs order" from "needs memory longer than a window" on the long-range tasks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rnnbench.baselines.bow import StepEmbedding
from rnnbench.baselines.drop_in import require_positive_int


def layers_to_cover(steps: int, kernel_size: int = 3, dilation_base: int = 2) -> int:
    """The fewest layers whose receptive field (see :attr:`CNNEncoder.receptive_field`) is at least
    ``steps``, so the last position of a ``steps``-long sequence sees its first step."""
    require_positive_int("steps", steps)
    layers, field = 1, kernel_size
    while field < steps:
        field += (kernel_size - 1) * dilation_base**layers
        layers += 1
    return layers


class CNNEncoder(nn.Module):
    """:class:`~rnnbench.baselines.bow.StepEmbedding` per step, then ``num_layers`` dilated causal convolutions.

    Input: dense ``x (T, B, input_size)`` or, with ``vocab_size``, token ids ``x (T, B)``.
    Layer ``l`` (from 0) is a ``Conv1d(hidden_size, hidden_size, kernel_size)`` with dilation
    ``dilation_base**l`` (``dilation_base <= kernel_size``, so the layers tile their window without
    gaps); ReLU sits between layers (not after the last). Padding is causal: each layer pads
    ``(kernel_size - 1) * dilation`` zeros on the left only, so every layer keeps length T and output
    position t sees exactly the input steps ``t - receptive_field + 1 .. t`` (fewer near the start).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 2,
        kernel_size: int = 3,
        dilation_base: int = 1,
        vocab_size: int | None = None,
    ):
        super().__init__()
        self.num_layers = require_positive_int("num_layers", num_layers)
        self.kernel_size = require_positive_int("kernel_size", kernel_size)
        self.dilation_base = require_positive_int("dilation_base", dilation_base)
        if dilation_base > kernel_size:
            # taps of a layer would then skip steps that no lower layer covers (the "gridding"
            # gaps), so receptive_field would overstate the steps that can influence an output
            raise ValueError(
                f"dilation_base must be at most kernel_size={kernel_size} so the receptive field has no gaps, "
                f"got {dilation_base}"
            )
        self.embed = StepEmbedding(input_size, hidden_size, vocab_size)
        self.convs = nn.ModuleList(
            nn.Conv1d(hidden_size, hidden_size, kernel_size, dilation=dilation_base**layer)
            for layer in range(num_layers)
        )

    @property
    def receptive_field(self) -> int:
        """Input time steps that can influence one output position: ``1 + sum_l (k-1) * base**l``."""
        return 1 + sum((self.kernel_size - 1) * self.dilation_base**layer for layer in range(self.num_layers))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Per-position features ``(T, B, hidden_size)`` before pooling; position t depends on steps <= t."""
        return self._convolve(x).permute(2, 0, 1)

    def _convolve(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`features` in Conv1d's layout ``(B, hidden_size, T)``."""
        h = self.embed(x).permute(1, 2, 0)
        for layer, conv in enumerate(self.convs):
            if layer > 0:
                h = torch.relu(h)
            h = conv(F.pad(h, ((self.kernel_size - 1) * conv.dilation[0], 0)))
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``(B, hidden_size)``: :meth:`features` max-pooled over all T positions."""
        return self.features(x).amax(dim=0)

    def step_features(self, x: torch.Tensor) -> torch.Tensor:
        """The features of every prefix, ``(T, B, hidden_size)``: row t is ``forward(x[:t + 1])``
        (a running max-pool of the causal :meth:`features`), so a sequence right-padded after step
        t reads its own row t."""
        # the running max along the last, contiguous axis is several times faster on CPU than along axis 0
        return torch.cummax(self._convolve(x), dim=-1).values.permute(2, 0, 1)

    def extra_repr(self) -> str:
        return f"receptive_field={self.receptive_field}"
