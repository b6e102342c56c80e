"""Fused Triton kernels for the Elman RNN and the LSTM, with drop-in torch.nn modules.

``TritonRNN`` / ``TritonLSTM`` replace ``torch.nn.RNN`` / ``torch.nn.LSTM``; ``plan_recurrence``
shows which kernel path and block sizes a shape gets. This package does not import the harness.
"""

from rnnbench.kernels.modules import TritonLSTM, TritonRNN
from rnnbench.kernels.plan import PATHS, Plan, plan_recurrence

__all__ = ["TritonLSTM", "TritonRNN", "PATHS", "Plan", "plan_recurrence"]
