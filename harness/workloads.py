"""Workloads: a backend bound to one problem, dtype and device, ready to run and to time.

Every backend factory in the registry returns an object with two methods:

* ``callable(mode)``: a zero-argument function to time. ``fwd`` is an inference forward pass as
  an inference user runs it: no autograd graph, the module in eval mode (:func:`inference`;
  torch.nn's cuDNN RNNs take their inference algorithm only outside training mode, and the Triton
  LSTM stores gates for a backward only when autograd records the call). ``fwd_bwd`` is a forward
  pass with autograd plus the backward pass for the problem's upstream gradients, producing the
  gradients of the input, the initial states and every parameter. Both include the input
  projection ``W_ih x`` for all time steps.
* ``outputs(mode)``: runs once and returns float64 NumPy arrays by name (``y, h_n[, c_n]`` and for
  ``fwd_bwd`` also ``dx, dh0[, dc0], dw_ih, dw_hh, db_ih, db_hh``), for the correctness check.

Calls are asynchronous on CUDA; timing code synchronises (see :mod:`rnnbench.harness.timing`).
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnbench.baselines import numpy_rnn
from rnnbench.harness.dtypes import NUMPY_DTYPES, torch_dtype
from rnnbench.harness.problems import REVERSE_SUFFIX, Problem



@contextmanager
def inference(module: torch.nn.Module) -> Iterator[None]:
    """``torch.no_grad()`` with ``module`` in eval mode, its mode restored afterwards."""
    was_training = module.training
    module.train(False)
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float64).numpy()


class NumpyRecurrentWorkload:
    """The NumPy forward + hand-written BPTT (``rnnbench.baselines.numpy_rnn``) in float64 or float32."""

    def __init__(self, problem: Problem, dtype: str):
        self.problem = problem
        self.np_dtype = NUMPY_DTYPES[dtype]
        self.arrays = {name: array.astype(self.np_dtype) for name, array in problem.arrays.items()}

    def _forward(self):
        a = self.arrays
        weights = (a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
        if self.problem.family == "lstm":
            y, h_n, c_n, cache = numpy_rnn.lstm_forward(a["x"], a["h0"], a["c0"], *weights, dtype=self.np_dtype)
            return {"y": y, "h_n": h_n, "c_n": c_n}, cache
        y, h_n, cache = numpy_rnn.rnn_forward(a["x"], a["h0"], *weights, dtype=self.np_dtype)
        return {"y": y, "h_n": h_n}, cache

    def _backward(self, cache) -> dict[str, np.ndarray]:
        a = self.arrays
        if self.problem.family == "lstm":
            return numpy_rnn.lstm_backward(a["dy"], a["dh_n"], a["dc_n"], cache)
        return numpy_rnn.rnn_backward(a["dy"], a["dh_n"], cache)

    def _run(self, mode: str) -> dict[str, np.ndarray]:
        results, cache = self._forward()
        if mode == "fwd_bwd":
            results.update(self._backward(cache))
        return results

    def callable(self, mode: str) -> Callable[[], object]:
        return lambda: self._run(mode)

    def outputs(self, mode: str) -> dict[str, np.ndarray]:
        return {name: np.asarray(value, dtype=np.float64) for name, value in self._run(mode).items()}


class TorchRecurrentWorkload:
    """A one-layer ``torch.nn.RNN``/``torch.nn.LSTM`` or a drop-in replacement of it.

    ``module_class`` is called like the torch.nn class (``input_size, hidden_size``, ``bidirectional``
    and, for the RNN, ``nonlinearity="tanh"``); the problem's weights are loaded through
    ``load_state_dict`` (``w_ih`` -> ``weight_ih_l0``, ``w_ih_reverse`` -> ``weight_ih_l0_reverse``).
    A packed problem's batch is packed with ``pack_padded_sequence(enforce_sorted=False)`` and the
    output padded back inside the timed call, as a user of packed sequences pays for both.
    """

    def __init__(self, problem: Problem, dtype: str, device: str, module_class):
        self.problem = problem
        self.has_cell_state = problem.family == "lstm"
        factory = {"device": device, "dtype": torch_dtype(dtype)}
        options = {"bidirectional": True} if problem.bidirectional else {}
        self.module = module_class(problem.input_size, problem.hidden_size, **options, **factory)
        arrays = problem.arrays
        names = {name: _array_name(name) for name in self.module.state_dict()}
        self.module.load_state_dict({name: torch.from_numpy(arrays[key]) for name, key in names.items()})
        self.named_parameters = list(self.module.named_parameters())
        self.tensors = {name: torch.from_numpy(array).to(**factory) for name, array in arrays.items()
                        if name not in names.values() and name != "lengths"}
        self.lengths = torch.from_numpy(arrays["lengths"]) if problem.packed else None

    def _stacked(self, name: str) -> torch.Tensor:
        """A state array over directions, ``(D, B, H)``."""
        directions = [self.tensors[name]] + ([self.tensors[name + REVERSE_SUFFIX]] if self.problem.bidirectional else [])
        return torch.stack(directions)

    def _forward(self, x, h0, c0):
        """``(y (T, B, D*H), h_n (D, B, H), c_n (D, B, H) or None)``."""
        hx = (h0, c0) if self.has_cell_state else h0
        if self.lengths is None:
            y, state = self.module(x, hx)
        else:
            packed = pack_padded_sequence(x, self.lengths, enforce_sorted=False)
            y, state = self.module(packed, hx)
            y = pad_packed_sequence(y, total_length=x.shape[0])[0]
        if self.has_cell_state:
            return y, state[0], state[1]
        return y, state, None

    def _inputs(self, requires_grad: bool):
        x = self.tensors["x"].detach().requires_grad_(requires_grad)
        h0 = self._stacked("h0").detach().requires_grad_(requires_grad)
        c0 = self._stacked("c0").detach().requires_grad_(requires_grad) if self.has_cell_state else None
        return x, h0, c0

    def _fwd(self, x, h0, c0):
        with inference(self.module):
            return self._forward(x, h0, c0), {}

    def _fwd_bwd(self, x, h0, c0):
        y, h_n, c_n = self._forward(x, h0, c0)
        outputs, upstream, inputs = [y, h_n], [self.tensors["dy"], self._stacked("dh_n")], {"dx": x, "dh0": h0}
        if self.has_cell_state:
            outputs.append(c_n)
            upstream.append(self._stacked("dc_n"))
            inputs["dc0"] = c0
        parameters = {"d" + _array_name(name): parameter for name, parameter in self.named_parameters}
        grads = torch.autograd.grad(outputs, [*inputs.values(), *parameters.values()], upstream)
        return (y, h_n, c_n), dict(zip([*inputs, *parameters], grads))

    def callable(self, mode: str) -> Callable[[], object]:
        x, h0, c0 = self._inputs(requires_grad=mode == "fwd_bwd")
        step = self._fwd if mode == "fwd" else self._fwd_bwd
        return lambda: step(x, h0, c0)

    def outputs(self, mode: str) -> dict[str, np.ndarray]:
        """Float64 arrays named as :attr:`Problem.forward_outputs` (and :attr:`Problem.gradients`);
        states and their gradients one ``(B, H)`` array per direction."""
        x, h0, c0 = self._inputs(requires_grad=mode == "fwd_bwd")
        (y, h_n, c_n), grads = (self._fwd if mode == "fwd" else self._fwd_bwd)(x, h0, c0)
        results = {"y": _to_numpy(y), **self._per_direction("h_n", h_n)}
        if self.has_cell_state:
            results.update(self._per_direction("c_n", c_n))
        for name, grad in grads.items():
            results.update(self._per_direction(name, grad) if name in ("dh0", "dc0") else {name: _to_numpy(grad)})
        return results

    def _per_direction(self, name: str, stacked: torch.Tensor) -> dict[str, np.ndarray]:
        suffixes = ("", REVERSE_SUFFIX)[: self.problem.directions]
        return {name + suffix: _to_numpy(stacked[index]) for index, suffix in enumerate(suffixes)}


class SwitchedWorkload:
    """Another workload whose every run happens inside ``switches`` (zero-argument context-manager
    factories, e.g. the kernels' plan switches), the backward included: a ``fwd_bwd`` call's
    gradients are computed inside its callable. Its other attributes are the workload's."""

    def __init__(self, workload, switches: Sequence[Callable[[], object]]):
        self.workload = workload
        self.switches = tuple(switches)

    def __getattr__(self, name: str):
        if name == "workload":  # not set yet (an unpickled copy): no recursion
            raise AttributeError(name)
        return getattr(self.workload, name)

    def _switched(self) -> ExitStack:
        stack = ExitStack()
        for switch in self.switches:
            stack.enter_context(switch())
        return stack

    def callable(self, mode: str) -> Callable[[], object]:
        run = self.workload.callable(mode)

        def switched():
            with self._switched():
                return run()

        return switched

    def outputs(self, mode: str) -> dict[str, np.ndarray]:
        with self._switched():
            return self.workload.outputs(mode)


def _array_name(parameter: str) -> str:
    """The problem's array of a one-layer torch.nn parameter: ``weight_hh_l0_reverse`` -> ``w_hh_reverse``."""
    kind, which, layer, *rest = parameter.split("_")
    if layer != "l0" or kind not in ("weight", "bias") or rest not in ([], ["reverse"]):
        raise ValueError(f"unexpected parameter {parameter!r} of a one-layer recurrent module")
    return f"{kind[0]}_{which}" + (REVERSE_SUFFIX if rest else "")


class TorchEncoderWorkload:
    """A non-recurrent encoder (bag-of-words, CNN) mapping ``x (T, B, I)`` to ``features (B, H)``.

    ``module_factory(input_size, hidden_size)`` builds the module; it is built under
    ``torch.manual_seed(seed)`` in float64 (its parameters rounded as ``problem.rounding`` says) and
    then cast, so every dtype starts from the same weights.
    Gradients are named ``dx`` and ``d<parameter name>``.
    """

    def __init__(self, problem: Problem, dtype: str, device: str, module_factory):
        self.problem = problem
        factory = {"device": device, "dtype": torch_dtype(dtype)}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(problem.seed)
            module = module_factory(problem.input_size, problem.hidden_size).to(torch.float64)
        if problem.rounding is not None:
            with torch.no_grad():
                for parameter in module.parameters():
                    parameter.copy_(parameter.to(getattr(torch, problem.rounding)))
        self.module = module.to(**factory)
        self.named_parameters = list(self.module.named_parameters())
        self.x = torch.from_numpy(problem.arrays["x"]).to(**factory)
        self.dfeatures = torch.from_numpy(problem.arrays["dfeatures"]).to(**factory)

    def _fwd(self, x):
        with inference(self.module):
            return self.module(x)

    def _fwd_bwd(self, x):
        features = self.module(x)
        parameters = [parameter for _, parameter in self.named_parameters]
        return features, torch.autograd.grad([features], [x] + parameters, [self.dfeatures])

    def callable(self, mode: str) -> Callable[[], object]:
        x = self.x.detach().requires_grad_(mode == "fwd_bwd")
        step = self._fwd if mode == "fwd" else self._fwd_bwd
        return lambda: step(x)

    def outputs(self, mode: str) -> dict[str, np.ndarray]:
        x = self.x.detach().requires_grad_(mode == "fwd_bwd")
        if mode == "fwd":
            return {"features": _to_numpy(self._fwd(x))}
        features, grads = self._fwd_bwd(x)
        names = ["dx"] + [f"d{name}" for name, _ in self.named_parameters]
        results = {"features": _to_numpy(features)}
        results.update({name: _to_numpy(grad) for name, grad in zip(names, grads)})
        return results
