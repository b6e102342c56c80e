"""Everything the Triton kernels are compared against.

``numpy_rnn``: NumPy forward + BPTT (the float64 ground truth); ``eager``: a Python step loop of
torch ops; ``bow`` and ``cnn``: order-free and fixed-window encoders. ``torch.nn.RNN``/``LSTM``
(cuDNN on CUDA) is used directly. ``drop_in`` is the shared base of drop-in recurrent modules and
``packing`` turns a ``PackedSequence`` into the padded batch with per-row lengths they run on.
"""

from rnnbench.baselines.bow import BagOfWordsEncoder
from rnnbench.baselines.cnn import CNNEncoder
from rnnbench.baselines.drop_in import LSTMDropIn, RNNDropIn
from rnnbench.baselines.eager import EagerLSTM, EagerRNN
from rnnbench.baselines.numpy_rnn import lstm_backward, lstm_forward, rnn_backward, rnn_forward

__all__ = [
    "BagOfWordsEncoder",
    "CNNEncoder",
    "EagerLSTM",
    "EagerRNN",
    "LSTMDropIn",
    "RNNDropIn",
    "lstm_backward",
    "lstm_forward",
    "rnn_backward",
    "rnn_forward",
]
