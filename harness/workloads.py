"""Workloads: a backend bound to one problem, dtype and device, ready to run and to time.

Every backend factory in the registry returns an object with two methods:

* ``callable(mode)``: a zero-argument function to time. ``fwd`` is an inference forward pass (no
  autograd graph); ``fwd_bwd`` is a forward pass with autograd plus the backward pass for the
  problem's upstream gradients, producing the gradients of the input, the initial states and every
  parameter. Both include the input projection ``W_ih x`` for all time steps.
* ``outputs(mode)``: runs once and returns float64 NumPy arrays by name (``y, h_n[, c_n]`` and for
  ``fwd_bwd`` also ``dx, dh0[, dc0], dw_ih, dw_hh, db_ih, db_hh``), for the correctness check.

Calls are asynchronous on CUDA; timing code synchronises (see :mod:`rnnbench.harness.timing`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from rnnbench.baselines import numpy_rnn
from rnnbench.harness.dtypes import NUMPY_DTYPES, torch_dtype
from rnnbench.harness.problems import FORWARD_OUTPUTS, RECURRENT_GRADIENTS, Problem

#: torch.nn parameter names of a one-layer module -> names of the problem's weight arrays
_PARAMETER_ARRAYS = {"weight_ih_l0": "w_ih", "weight_hh_l0": "w_hh", "bias_ih_l0": "b_ih", "bias_hh_l0": "b_hh"}


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

    ``module_class`` is called like the torch.nn class (``input_size, hidden_size`` and, for the RNN,
    ``nonlinearity="tanh"``); the problem's weights are loaded through ``load_state_dict``.
    """

    def __init__(self, problem: Problem, dtype: str, device: str, module_class):
        self.problem = problem
        self.has_cell_state = problem.family == "lstm"
        factory = {"device": device, "dtype": torch_dtype(dtype)}
        self.module = module_class(problem.input_size, problem.hidden_size, **factory)
        arrays = problem.arrays
        state = {name: torch.from_numpy(arrays[key]) for name, key in _PARAMETER_ARRAYS.items()}
        self.module.load_state_dict(state)
        self.parameters = [parameter for _, parameter in self.module.named_parameters()]
        self.tensors = {name: torch.from_numpy(array).to(**factory) for name, array in arrays.items() if name not in _PARAMETER_ARRAYS.values()}

    def _forward(self, x, h0, c0):
        hx = (h0, c0) if self.has_cell_state else h0
        y, state = self.module(x, hx)
        if self.has_cell_state:
            return y, state[0][0], state[1][0]
        return y, state[0], None

    def _inputs(self, requires_grad: bool):
        t = self.tensors
        x = t["x"].detach().requires_grad_(requires_grad)
        h0 = t["h0"].unsqueeze(0).detach().requires_grad_(requires_grad)
        c0 = t["c0"].unsqueeze(0).detach().requires_grad_(requires_grad) if self.has_cell_state else None
        return x, h0, c0

    def _fwd(self, x, h0, c0):
        with torch.no_grad():
            return self._forward(x, h0, c0)

    def _fwd_bwd(self, x, h0, c0):
        y, h_n, c_n = self._forward(x, h0, c0)
        t = self.tensors
        outputs, upstream, inputs = [y, h_n], [t["dy"], t["dh_n"]], [x, h0]
        if self.has_cell_state:
            outputs.append(c_n)
            upstream.append(t["dc_n"])
            inputs.append(c0)
        grads = torch.autograd.grad(outputs, inputs + self.parameters, upstream)
        dx, state_grads, parameter_grads = grads[0], grads[1 : len(inputs)], grads[len(inputs) :]
        # initial states were passed as (1, B, H); report their gradients as (B, H)
        return (y, h_n, c_n), [dx, *(grad[0] for grad in state_grads), *parameter_grads]

    def callable(self, mode: str) -> Callable[[], object]:
        x, h0, c0 = self._inputs(requires_grad=mode == "fwd_bwd")
        step = self._fwd if mode == "fwd" else self._fwd_bwd
        return lambda: step(x, h0, c0)

    def outputs(self, mode: str) -> dict[str, np.ndarray]:
        x, h0, c0 = self._inputs(requires_grad=mode == "fwd_bwd")
        if mode == "fwd":
            forward = self._fwd(x, h0, c0)
        else:
            forward, grads = self._fwd_bwd(x, h0, c0)
        names = FORWARD_OUTPUTS[self.problem.family]
        results = {name: _to_numpy(value) for name, value in zip(names, forward)}
        if mode == "fwd_bwd":
            names = RECURRENT_GRADIENTS[self.problem.family]
            results.update({name: _to_numpy(grad) for name, grad in zip(names, grads)})
        return results


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
        with torch.no_grad():
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
