"""``TritonRNN`` and ``TritonLSTM``: drop-in replacements for ``torch.nn.RNN`` / ``torch.nn.LSTM``.

Same constructor arguments (``input_size, hidden_size, num_layers, bias, batch_first`` and
``nonlinearity`` for the RNN), parameter names, shapes and initialisation, so ``load_state_dict``
works in both directions; same call signature and return values. One extra keyword, ``path``
(``"auto"``, ``"persistent"``, ``"cooperative"``, ``"stepwise"``), forces a kernel path (see
:mod:`rnnbench.kernels.plan`). Supported dtypes: float32 (TF32 in the recurrence exactly when
``torch.backends.cudnn.allow_tf32`` is set, as cuDNN does), float16, bfloat16 (16-bit storage,
float32 accumulation and cell state). Runs on CUDA, or on CPU tensors in the Triton interpreter
when ``TRITON_INTERPRET=1`` was set before ``kernels`` was imported.
"""

from __future__ import annotations

from rnnbench.baselines.drop_in import LSTMDropIn, RNNDropIn
from rnnbench.kernels.launch import check_device_and_dtype
from rnnbench.kernels.lstm import lstm_layer
from rnnbench.kernels.plan import PATHS
from rnnbench.kernels.rnn import rnn_layer


class _KernelPath:
    """The ``path=`` keyword shared by both modules (validated, then kept as ``self.path``)."""

    def __init__(self, *args, path: str = "auto", **kwargs):
        if path != "auto" and path not in PATHS:
            raise ValueError(f"path must be 'auto' or one of {PATHS}, got {path!r}")
        super().__init__(*args, **kwargs)
        self.path = path


class TritonLSTM(_KernelPath, LSTMDropIn):
    """Drop-in ``torch.nn.LSTM`` on fused Triton kernels (see the module docstring)."""

    def _layer(self, layer, x, h0, c0):
        check_device_and_dtype(type(self).__name__, x)
        return lstm_layer(x, h0, c0, *self.layer_parameters(layer), path=self.path)


class TritonRNN(_KernelPath, RNNDropIn):
    """Drop-in ``torch.nn.RNN`` (tanh or relu) on fused Triton kernels (see the module docstring)."""

    def _layer(self, layer, x, h0, c0):
        check_device_and_dtype(type(self).__name__, x)
        y, h_n = rnn_layer(x, h0, *self.layer_parameters(layer), nonlinearity=self.nonlinearity, path=self.path)
        return y, h_n, None
