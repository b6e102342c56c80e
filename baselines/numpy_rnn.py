"""NumPy forward pass and hand-written BPTT of the Elman RNN and the LSTM: the float64 ground truth.

Layouts follow torch.nn exactly:

* ``x (T, B, I)`` time-major; ``h0``, ``c0`` ``(B, H)``; outputs ``y (T, B, H)``;
* ``w_ih (G*H, I)``, ``w_hh (G*H, H)``, ``b_ih``/``b_hh`` ``(G*H,)`` (or None for no bias), with
  G = 1 for the RNN and G = 4 for the LSTM, gate order i, f, g, o.

Forward functions return ``(y, h_T[, c_T], cache)``; backward functions take the upstream gradients
``(dy, dh_T[, dc_T], cache)`` and return a dict with ``dx, dh0[, dc0], dw_ih, dw_hh, db_ih, db_hh``
(bias gradients are None without biases). The input projection of all steps is one matmul, the
recurrence a loop over t, and the weight gradients matmuls over all ``T*B`` rows. Computation is
float64 by default; ``dtype=np.float32`` computes in float32 throughout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NONLINEARITIES = ("tanh", "relu")


@dataclass(frozen=True)
class RNNCache:
    """What :func:`rnn_backward` needs from :func:`rnn_forward`."""

    x: np.ndarray
    h0: np.ndarray
    w_ih: np.ndarray
    w_hh: np.ndarray
    y: np.ndarray
    nonlinearity: str
    has_bias: bool


@dataclass(frozen=True)
class LSTMCache:
    """What :func:`lstm_backward` needs from :func:`lstm_forward`: activated gates ``(T, B, 4H)``
    in order i, f, g, o and cell states ``(T, B, H)``."""

    x: np.ndarray
    h0: np.ndarray
    c0: np.ndarray
    w_ih: np.ndarray
    w_hh: np.ndarray
    y: np.ndarray
    gates: np.ndarray
    cells: np.ndarray
    has_bias: bool


def _check(name: str, array: np.ndarray, shape: tuple, meaning: str) -> None:
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape} = {meaning}, got shape {array.shape}")


def _real(name: str, value, dtype) -> np.ndarray:
    array = np.asarray(value)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name} must be a real-valued array, got dtype {array.dtype}")
    return array.astype(dtype, copy=False)


def _prepare(gates: int, x, h0, c0, w_ih, w_hh, b_ih, b_hh, dtype):
    """Cast to ``dtype`` and check every shape against ``x`` and ``w_hh``; returns the arrays and
    the combined bias ``b_ih + b_hh`` (None without biases)."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float64, np.float32):
        raise ValueError(f"dtype must be float64 or float32, got {dtype}")
    x, h0, w_ih, w_hh = (_real(name, a, dtype) for name, a in (("x", x), ("h0", h0), ("w_ih", w_ih), ("w_hh", w_hh)))
    if x.ndim != 3:
        raise ValueError(f"x must have 3 dimensions (T, B, I), got shape {x.shape}")
    T, B, I = x.shape
    if T == 0 or B == 0:
        raise ValueError(f"x must have at least one step and one sequence, got shape {x.shape}")
    if h0.ndim != 2 or h0.shape[0] != B:
        raise ValueError(f"h0 must have shape ({B}, hidden_size) = (batch, hidden_size), got shape {h0.shape}")
    H = h0.shape[1]
    width = f"{gates}*hidden_size" if gates > 1 else "hidden_size"
    _check("w_hh", w_hh, (gates * H, H), f"({width}, hidden_size)")
    _check("w_ih", w_ih, (gates * H, I), f"({width}, input_size)")
    if c0 is not None:
        c0 = _real("c0", c0, dtype)
        _check("c0", c0, (B, H), "(batch, hidden_size)")
    if (b_ih is None) != (b_hh is None):
        raise ValueError("b_ih and b_hh must both be given or both be None")
    bias = None
    if b_ih is not None:
        b_ih, b_hh = _real("b_ih", b_ih, dtype), _real("b_hh", b_hh, dtype)
        meaning = f"({width},)"
        _check("b_ih", b_ih, (gates * H,), meaning)
        _check("b_hh", b_hh, (gates * H,), meaning)
        bias = b_ih + b_hh
    return x, h0, c0, w_ih, w_hh, bias


def _project(x: np.ndarray, w_ih: np.ndarray, bias) -> np.ndarray:
    """``W_ih x_t (+ b_ih + b_hh)`` for all steps as one matmul: ``(T, B, G*H)``."""
    T, B, I = x.shape
    projected = x.reshape(T * B, I) @ w_ih.T
    if bias is not None:
        projected += bias
    return projected.reshape(T, B, w_ih.shape[0])


def _upstream(cache, kind: type, dy, dh_T, dc_T=None):
    if not isinstance(cache, kind):
        producer = "rnn_forward" if kind is RNNCache else "lstm_forward"
        raise TypeError(f"cache must be the {kind.__name__} returned by {producer}, got {type(cache).__name__}")
    y = cache.y
    dy, dh_T = np.asarray(dy, dtype=y.dtype), np.asarray(dh_T, dtype=y.dtype)
    _check("dy", dy, y.shape, "(T, batch, hidden_size) like y")
    _check("dh_T", dh_T, y.shape[1:], "(batch, hidden_size)")
    if dc_T is None:
        return dy, dh_T, None
    dc_T = np.asarray(dc_T, dtype=y.dtype)
    _check("dc_T", dc_T, y.shape[1:], "(batch, hidden_size)")
    return dy, dh_T, dc_T


def _parameter_grads(dpre: np.ndarray, cache) -> dict:
    """``dx, dw_ih, dw_hh, db_*`` from the pre-activation gradients ``dpre (T, B, G*H)``."""
    x, h0, y, w_ih = cache.x, cache.h0, cache.y, cache.w_ih
    T, B, I = x.shape
    flat = dpre.reshape(T * B, -1)
    h_prev = np.concatenate([h0[None], y[:-1]]).reshape(T * B, -1)
    db = flat.sum(axis=0) if cache.has_bias else None
    return {
        "dx": (flat @ w_ih).reshape(T, B, I),
        "dw_ih": flat.T @ x.reshape(T * B, I),
        "dw_hh": flat.T @ h_prev,
        "db_ih": db,
        "db_hh": None if db is None else db.copy(),
    }


def rnn_forward(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh", dtype=np.float64):
    """Elman RNN ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``; returns ``(y, h_T, cache)``."""
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity must be one of {NONLINEARITIES}, got {nonlinearity!r}")
    x, h0, _, w_ih, w_hh, bias = _prepare(1, x, h0, None, w_ih, w_hh, b_ih, b_hh, dtype)
    projected = _project(x, w_ih, bias)
    y = np.empty(projected.shape, dtype=x.dtype)
    h = h0
    w_hh_t = np.ascontiguousarray(w_hh.T)
    for t in range(x.shape[0]):
        z = projected[t] + h @ w_hh_t
        h = np.tanh(z) if nonlinearity == "tanh" else np.maximum(z, 0.0)
        y[t] = h
    return y, h.copy(), RNNCache(x, h0, w_ih, w_hh, y, nonlinearity, bias is not None)


def rnn_backward(dy, dh_T, cache) -> dict:
    """BPTT of :func:`rnn_forward` for upstream gradients on ``y`` and ``h_T``."""
    dy, dh, _ = _upstream(cache, RNNCache, dy, dh_T)
    y, w_hh = cache.y, cache.w_hh
    dz = np.empty_like(y)
    for t in reversed(range(y.shape[0])):
        total = dy[t] + dh
        dz[t] = total * (1.0 - y[t] ** 2) if cache.nonlinearity == "tanh" else total * (y[t] > 0)
        dh = dz[t] @ w_hh
    grads = _parameter_grads(dz, cache)
    grads["dh0"] = dh
    return grads


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, dtype=np.float64):
    """LSTM with gates i, f, g, o: ``c_t = f*c_{t-1} + i*g``, ``h_t = o*tanh(c_t)``.

    Returns ``(y, h_T, c_T, cache)``; the cache keeps the activated gates ``(T, B, 4H)`` and cell
    states ``(T, B, H)`` for the backward pass.
    """
    x, h0, c0, w_ih, w_hh, bias = _prepare(4, x, h0, c0, w_ih, w_hh, b_ih, b_hh, dtype)
    T, B, _ = x.shape
    H = w_hh.shape[1]
    # sigmoid(z) = (1 + tanh(z/2)) / 2, so one tanh over all four gates does it once the i, f, o
    # pre-activations are halved, which is folded into the projection and W_hh; the step loop then
    # works in place, since at small H it is bound by these elementwise passes, not by the matmul
    scale = np.full(4 * H, 0.5, dtype=x.dtype)
    scale[2 * H:3 * H] = 1.0
    gates = _project(x, w_ih, bias)  # becomes the activated gates, step by step, in place
    gates *= scale
    w_hh_t = np.ascontiguousarray(w_hh.T) * scale
    cells = np.empty((T, B, H), dtype=x.dtype)
    y = np.empty((T, B, H), dtype=x.dtype)
    h, c = h0, c0
    for t in range(T):
        pre = gates[t]
        pre += h @ w_hh_t
        np.tanh(pre, out=pre)
        for block in (pre[:, :2 * H], pre[:, 3 * H:]):
            block += 1.0
            block *= 0.5
        i, f, g, o = pre[:, :H], pre[:, H:2 * H], pre[:, 2 * H:3 * H], pre[:, 3 * H:]
        c = np.multiply(f, c, out=cells[t])
        c += i * g
        h = np.tanh(c, out=y[t])
        h *= o
    return y, h.copy(), c.copy(), LSTMCache(x, h0, c0, w_ih, w_hh, y, gates, cells, bias is not None)


def lstm_backward(dy, dh_T, dc_T, cache) -> dict:
    """BPTT of :func:`lstm_forward` for upstream gradients on ``y``, ``h_T`` and ``c_T``."""
    dy, dh, dc = _upstream(cache, LSTMCache, dy, dh_T, dc_T)
    gates, cells, w_hh, c0 = cache.gates, cache.cells, cache.w_hh, cache.c0
    T, B, H = cells.shape
    dpre = np.empty_like(gates)
    for t in reversed(range(T)):
        i, f, g, o = (gates[t][:, k * H:(k + 1) * H] for k in range(4))
        tanh_c = np.tanh(cells[t])
        c_prev = cells[t - 1] if t > 0 else c0
        total = dy[t] + dh
        dc = dc + total * o * (1.0 - tanh_c ** 2)
        dpre[t] = np.concatenate([
            dc * g * i * (1.0 - i),
            dc * c_prev * f * (1.0 - f),
            dc * i * (1.0 - g ** 2),
            total * tanh_c * o * (1.0 - o),
        ], axis=1)
        dh = dpre[t] @ w_hh
        dc = dc * f
    grads = _parameter_grads(dpre, cache)
    grads["dh0"], grads["dc0"] = dh, dc
    return grads
