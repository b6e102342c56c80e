"""What a backend entry is: one small declarative description per implementation.

A :class:`Backend` says what an implementation is (families it computes, devices and dtypes it
supports, the backend whose float64 outputs it is checked against) and how to build it (a factory
returning a workload, see :mod:`rnnbench.harness.workloads`, and, for training, a builder of its
trainable encoder module from an :class:`EncoderSpec`). The entries themselves, and the
lookups, are the catalogue in :mod:`rnnbench.harness.backends`. Backends that cannot run on this
machine stay listed; :meth:`Backend.skip_reason` says why, and the runner records the case as
``skipped`` with that reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import torch

from rnnbench.harness.problems import FAMILIES

DEVICES = ("cpu", "cuda")
#: environment variable naming backends (comma-separated) to record as skipped on this run: the GPU
#: session sets it for a never-run kernel whose GPU tests failed, so a suite neither times nor hangs on it
WITHHELD_BACKENDS = "RNNBENCH_WITHHOLD_BACKENDS"


def device_skip_reason(device: str) -> str | None:
    """Why ``device`` cannot be used on this machine, or None if it can."""
    if device == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available on this machine (torch.cuda.is_available() is False)"
    return None


def _always_available(device: str, dtype: str) -> str | None:
    return None


@dataclass(frozen=True)
class EncoderSpec:
    """What a trainable encoder is built for: its ``family``, ``input_size`` features per step in,
    ``hidden_size`` features per step out, and ``max_steps``, the longest sequence (or chunk) it
    will see (an encoder with a finite window sizes it to cover this many steps)."""

    family: str
    input_size: int
    hidden_size: int
    max_steps: int


@dataclass(frozen=True)
class Backend:
    """One implementation the suite can measure.

    ``factory(problem, dtype, device)`` returns a workload. ``reference`` names the backend whose
    float64 outputs on CPU are the ground truth for this one; on CUDA ``cuda_reference`` (if set) is
    used instead, in float64 on the GPU, so that large GPU shapes are not checked by a CPU loop.
    ``timed_devices`` lists the devices where speed and memory are meaningful (the Triton
    interpreter on CPU runs numerics only). ``requirement(device, dtype)`` returns a reason the
    backend cannot run here (a missing package, a missing environment variable, a dtype the
    interpreter cannot multiply), or None. ``uses_triton`` says its kernels are Triton's, so the
    process measuring it must choose the interpreter (CPU) or not (CUDA) before importing them
    (:func:`rnnbench.harness.process.process_env`). ``options`` lists the problem options
    (:data:`rnnbench.harness.problems.PROBLEM_OPTIONS`: ``bidirectional``, ``packed``) the backend
    implements; a problem using any of them is checked on CPU against ``options_reference`` in
    float64 instead of ``reference`` (NumPy's BPTT has neither directions nor lengths).

    ``encoder(spec: EncoderSpec)`` builds the backend's trainable encoder (None: it has none, e.g.
    NumPy, which has no autograd): a float32 CPU ``torch.nn.Module`` called like ``torch.nn.LSTM``,
    ``outputs, state = module(x, state)``, with time-major ``x (T, B, input_size)``, ``outputs
    (T, B, hidden_size)`` where output t depends on steps ``<= t`` only, and ``state`` what to pass
    to the next call to continue the sequence (None to start afresh; encoders that carry nothing
    return None). See :mod:`rnnbench.harness.training`.
    """

    name: str
    families: tuple[str, ...]
    devices: tuple[str, ...]
    dtypes: tuple[str, ...]
    factory: Callable
    reference: str
    description: str
    cuda_reference: str | None = None
    timed_devices: tuple[str, ...] | None = None
    requirement: Callable[[str, str], str | None] = _always_available
    #: dtypes whose gradients are part of the correctness check (None: all); see the CNN's entry
    gradient_check_dtypes: tuple[str, ...] | None = None
    uses_triton: bool = False
    options: tuple[str, ...] = ()
    options_reference: str | None = None
    encoder: Callable[[EncoderSpec], torch.nn.Module] | None = None

    def checks_gradients(self, dtype: str) -> bool:
        return self.gradient_check_dtypes is None or dtype in self.gradient_check_dtypes

    def __post_init__(self):
        unknown = set(self.families) - set(FAMILIES)
        if unknown:
            raise ValueError(f"backend {self.name!r}: unknown families {sorted(unknown)}; expected some of {FAMILIES}")

    def training_skip_reason(self) -> str | None:
        """Why this backend cannot be trained, or None if it declares a trainable encoder."""
        if self.encoder is None:
            return f"backend {self.name!r} ({self.description}) has no trainable encoder: no autograd module to optimise"
        return None

    def reference_for(self, device: str, options: tuple[str, ...] = ()) -> tuple[str, str]:
        """``(backend name, device)`` of the float64 reference used on ``device`` for a problem
        with ``options``."""
        if device == "cuda" and self.cuda_reference:
            return self.cuda_reference, "cuda"
        if options:
            return self.options_reference or self.reference, "cpu"
        return self.reference, "cpu"

    def skip_reason(self, family: str, device: str, dtype: str, timed: bool = False,
                    options: tuple[str, ...] = ()) -> str | None:
        """Why this backend cannot run the described case here, or None if it can; ``timed`` says
        the experiment needs a device where this backend's speed means something, ``options`` the
        problem options the case asks for."""
        if self.name in (name.strip() for name in os.environ.get(WITHHELD_BACKENDS, "").split(",")):
            return f"backend {self.name!r} is withheld on this run ({WITHHELD_BACKENDS} names it)"
        if family not in self.families:
            return f"backend {self.name!r} does not implement family {family!r} (it implements {', '.join(self.families)})"
        missing = [option for option in options if option not in self.options]
        if missing:
            supported = ", ".join(self.options) or "none"
            return f"backend {self.name!r} does not implement {', '.join(missing)} (its options: {supported})"
        if device not in self.devices:
            return f"backend {self.name!r} does not run on {device} (it runs on {', '.join(self.devices)})"
        timed_devices = self.timed_devices if self.timed_devices is not None else self.devices
        if timed and device not in timed_devices:
            return (f"backend {self.name!r} is only checked for numerics on {device}; "
                    f"it is measured on {', '.join(timed_devices)}")
        if dtype not in self.dtypes:
            return f"backend {self.name!r} does not support dtype {dtype} (it supports {', '.join(self.dtypes)})"
        return device_skip_reason(device) or self.requirement(device, dtype)
