"""``TritonRNN`` and ``TritonLSTM``: drop-in replacements for ``torch.nn.RNN`` / ``torch.nn.LSTM``.

Every constructor argument of the torch modules (``input_size, hidden_size, num_layers, bias,
batch_first, dropout, bidirectional``, ``proj_size`` for the LSTM, ``nonlinearity`` for the RNN),
the same parameter names, shapes and initialisation, so ``load_state_dict`` works in both
directions; the same call signature, input forms (batched, unbatched, ``PackedSequence``) and
return values; see :mod:`rnnbench.baselines.drop_in`. One extra keyword, ``path`` (``"auto"``,
``"persistent"``, ``"cooperative"``, ``"stepwise"``, and for the LSTM forward on sm_90 ``"gluon"``),
forces a kernel path (see :mod:`rnnbench.kernels.plan`); ``TritonLSTM`` also takes ``fuse_input``
(True/False: its Gluon forward fuses the input projection where it can, or never; default None:
:data:`rnnbench.kernels.switches.GLUON_FUSED_INPUT`, off until a GPU has run the fused kernel) and
``tagged_exchange`` (True/False: its Gluon forward exchanges the state as tagged words where it can,
:func:`rnnbench.kernels.plan.tagged_exchange_refusal`, or never; default None:
:data:`rnnbench.kernels.switches.GLUON_TAGGED_EXCHANGE`, ``"auto"``: in inference where it can up to
H=768, where the H200 timed it faster than the grid barrier) and ``overlap_projection`` (True/False:
its Gluon forward's input projection runs beside the kernel on a second stream where it can,
:func:`rnnbench.kernels.plan.overlapped_projection_refusal`, or before it; default None:
:data:`rnnbench.kernels.switches.GLUON_OVERLAPPED_PROJECTION`, off until a GPU has run it) and
``thread_poll`` (True/False: where its Gluon forward exchanges tagged words, each loader thread
polls its own alone, or after a reduction over the loader; default None:
:data:`rnnbench.kernels.switches.GLUON_TAGGED_THREAD_POLL`, off until a GPU has run it) and
``local_gates`` (True/False: where its Gluon forward exchanges tagged words, it splits the gates
inside each warp, or through shared memory; default None:
:data:`rnnbench.kernels.switches.GLUON_LOCAL_GATES`, off until a GPU has run it) and
``overlap_gradients`` (True/False: its backward computes ``dx``, ``dW_ih`` and ``dW_hh`` beside the
recurrence on a second stream where it can, :func:`rnnbench.kernels.plan.overlapped_gradients_refusal`,
or after it; decided at the forward call; default None:
:data:`rnnbench.kernels.switches.OVERLAPPED_GRADIENTS`, off until a GPU has run it).

Both directions of a bidirectional layer run in one kernel launch, and a packed batch of mixed
lengths runs as one launch in which each row stops at its own length. An LSTM with ``proj_size``
runs the same kernels with the projection folded into the recurrent matrix
(:func:`rnnbench.kernels.lstm.projected_lstm_layer`).

Kernel dtypes: float32 (TF32 in the recurrence exactly when ``torch.backends.cudnn.allow_tf32`` is
set, as cuDNN does), float16, bfloat16 (16-bit storage, float32 accumulation and cell state). There
is no float64 kernel: float64 modules, and empty batches (B = 0, nothing to launch), run the eager
step loop :func:`rnnbench.baselines.eager.eager_layer`, the readable reference of the same math.
The kernels run on CUDA, or on CPU tensors in the Triton interpreter when ``TRITON_INTERPRET=1`` was
set before ``kernels`` was imported.
"""

from __future__ import annotations

import torch

from rnnbench.baselines.drop_in import LayerWeights, LSTMDropIn, RNNDropIn
from rnnbench.baselines.eager import eager_layer
from rnnbench.kernels.launch import check_device_and_dtype
from rnnbench.kernels.lstm import lstm_layer, projected_lstm_layer
from rnnbench.kernels.plan import FORCED_PATHS
from rnnbench.kernels.switches import (
    fused_input_projection, local_gates, overlapped_gradients, overlapped_projection, tagged_exchange,
    tagged_thread_poll,
)
from rnnbench.kernels.rnn import rnn_layer


class _KernelPath:
    """The ``path=`` keyword shared by both modules (validated, then kept as ``self.path``), and the
    choice between the kernels and the reference step loop."""

    def __init__(self, *args, path: str = "auto", **kwargs):
        if path != "auto" and path not in FORCED_PATHS:
            raise ValueError(f"path must be 'auto' or one of {FORCED_PATHS}, got {path!r}")
        super().__init__(*args, **kwargs)
        self.path = path

    def _runs_kernels(self, x: torch.Tensor) -> bool:
        """False for what has no kernel (float64, an empty batch): those run :func:`eager_layer`."""
        if x.dtype == torch.float64 or x.shape[1] == 0:
            return False
        check_device_and_dtype(type(self).__name__, x)
        return True

    def _stacked_weights(self, layer: int) -> LayerWeights:
        """The layer's parameters stacked over directions (a leading axis of D; a view when D = 1)."""
        per_direction = [self.direction_weights(layer, d) for d in range(self.num_directions)]

        def stack(tensors):
            if tensors[0] is None:
                return None
            return tensors[0].unsqueeze(0) if len(tensors) == 1 else torch.stack(tensors)

        return LayerWeights(*(stack(list(tensors)) for tensors in zip(*per_direction)))


class TritonLSTM(_KernelPath, LSTMDropIn):
    """Drop-in ``torch.nn.LSTM`` on fused Triton kernels (see the module docstring)."""

    def __init__(self, *args, fuse_input: bool | None = None, tagged_exchange: bool | None = None,
                 overlap_projection: bool | None = None, thread_poll: bool | None = None,
                 local_gates: bool | None = None, overlap_gradients: bool | None = None, **kwargs):
        for name, value in (("fuse_input", fuse_input), ("tagged_exchange", tagged_exchange),
                            ("overlap_projection", overlap_projection), ("thread_poll", thread_poll),
                            ("local_gates", local_gates), ("overlap_gradients", overlap_gradients)):
            if value is not None and not isinstance(value, bool):
                raise ValueError(f"{name} must be None, True or False, got {value!r}")
        super().__init__(*args, **kwargs)
        self.fuse_input = fuse_input
        self.tagged_exchange = tagged_exchange
        self.overlap_projection = overlap_projection
        self.thread_poll = thread_poll
        self.local_gates = local_gates
        self.overlap_gradients = overlap_gradients

    def _layer(self, layer, x, lengths, h0, c0):
        if not self._runs_kernels(x):
            return eager_layer(self, layer, x, lengths, h0, c0)
        w = self._stacked_weights(layer)
        with fused_input_projection(self.fuse_input), tagged_exchange(self.tagged_exchange), \
                overlapped_projection(self.overlap_projection), tagged_thread_poll(self.thread_poll), \
                local_gates(self.local_gates), overlapped_gradients(self.overlap_gradients):
            if w.weight_hr is None:
                return lstm_layer(x, h0, c0, w.weight_ih, w.weight_hh, w.bias_ih, w.bias_hh, lengths, self.path)
            return projected_lstm_layer(x, h0, c0, w.weight_ih, w.weight_hh, w.bias_ih, w.bias_hh, w.weight_hr,
                                        lengths, self.path)


class TritonRNN(_KernelPath, RNNDropIn):
    """Drop-in ``torch.nn.RNN`` (tanh or relu) on fused Triton kernels (see the module docstring)."""

    def _layer(self, layer, x, lengths, h0, c0):
        if not self._runs_kernels(x):
            return eager_layer(self, layer, x, lengths, h0, c0)
        w = self._stacked_weights(layer)
        y, h_n = rnn_layer(x, h0, w.weight_ih, w.weight_hh, w.bias_ih, w.bias_hh, self.nonlinearity, lengths,
                           self.path)
        return y, h_n, None
