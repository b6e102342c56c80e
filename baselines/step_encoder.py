"""An order-free or fixed-window encoder behind the recurrent call signature, for training.

:class:`StepEncoder` wraps an encoder that has ``step_features(x) -> (T, B, H)`` (the features of
every prefix: :class:`~rnnbench.baselines.bow.BagOfWordsEncoder`,
:class:`~rnnbench.baselines.cnn.CNNEncoder`) and is called like ``torch.nn.LSTM``:
``outputs, state = module(x, state)`` with time-major ``x (T, B, I)`` and ``outputs (T, B, H)``.
Output t depends on the steps up to t only, as a recurrence's does, so one readout (each
sequence's output at its own last step) serves every encoder and padding after that step is never
seen. These encoders carry no state from one call to the next: ``state`` must be None and None is
returned.
"""

from __future__ import annotations

import torch
from torch import nn


class StepEncoder(nn.Module):
    """``outputs, None = StepEncoder(encoder)(x, None)`` with ``outputs = encoder.step_features(x)``."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        if not callable(getattr(encoder, "step_features", None)):
            raise TypeError(f"encoder must have a step_features method, got {type(encoder).__name__}")
        self.encoder = encoder

    def forward(self, x: torch.Tensor, state=None) -> tuple[torch.Tensor, None]:
        if state is not None:
            raise ValueError(f"{type(self.encoder).__name__} carries no state between calls; state must be None, "
                             f"got {type(state).__name__}")
        return self.encoder.step_features(x), None
