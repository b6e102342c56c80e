"""The correctness gate: a backend's outputs and gradients against the float64 reference.

Every tensor ``a`` (output or gradient) is compared with its reference ``r`` by

    max|a - r| <= atol + rtol * max|r|

with ``(atol, rtol)`` from :data:`TOLERANCES` for the backend's dtype, where ``r`` comes from the
float64 reference run on the backend's inputs and weights rounded to its dtype. The scale term makes the
check meaningful for weight gradients, which are sums over all ``T*B`` steps and grow with the
problem. The stored error is the raw ``max|a - r|`` over all compared tensors (metric
``max_abs_err``); the note names the worst tensor relative to its tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from rnnbench.harness.problems import Problem
from rnnbench.harness.backends import get_backend, problem_for
from rnnbench.harness.cases import Case

#: (atol, rtol) per dtype. float32 allows for TF32 (cuDNN's default for fp32 RNNs on Ampere and
#: later: torch.backends.cudnn.allow_tf32 is True) and for error growth along T=1024 sequences;
#: 16-bit formats store inputs, weights and states with 11 (fp16) or 8 (bf16) significant bits.
TOLERANCES = {
    "float64": (1e-9, 1e-9),
    "float32": (1e-3, 1e-3),
    "float16": (1e-2, 1e-2),
    "bfloat16": (5e-2, 5e-2),
}


@dataclass(frozen=True)
class Comparison:
    """Outcome of comparing one backend's results with the reference."""

    max_abs_err: float
    worst: str
    passed: bool
    note: str


def compare(results: dict[str, np.ndarray], reference: dict[str, np.ndarray], dtype: str) -> Comparison:
    """Compare every tensor the reference has (extra results are ignored); a missing or misshapen
    tensor fails the check."""
    atol, rtol = TOLERANCES[dtype]
    worst_name, worst_ratio, max_abs_err = "", -1.0, 0.0
    for name, expected in reference.items():
        if name not in results:
            return Comparison(float("nan"), name, False, f"backend returned no {name!r}")
        actual = np.asarray(results[name], dtype=np.float64)
        if actual.shape != expected.shape:
            return Comparison(float("nan"), name, False, f"{name} has shape {actual.shape}, expected {expected.shape}")
        error = float(np.max(np.abs(actual - expected))) if expected.size else 0.0
        if not np.isfinite(error):
            return Comparison(float("nan"), name, False, f"{name} contains NaN or inf")
        bound = atol + rtol * float(np.max(np.abs(expected), initial=0.0))
        max_abs_err = max(max_abs_err, error)
        if error / bound > worst_ratio:
            worst_name, worst_ratio = name, error / bound
    passed = worst_ratio <= 1.0
    note = f"worst {worst_name}: {worst_ratio:.3g} of tolerance (atol={atol:g}, rtol={rtol:g})"
    return Comparison(max_abs_err, worst_name, passed, note)


def check_correctness(case: Case, workload) -> tuple[Comparison, str]:
    """The correctness gate of ``case``: ``workload``'s outputs (and gradients, where the backend's
    entry checks them in this dtype) against the float64 reference at the same shape.

    Returns the comparison and a note naming the reference and the worst tensor."""
    backend = get_backend(case.backend)
    problem = problem_for(case)
    reference_name, reference_device = backend.reference_for(case.device, problem.options)
    gradients = backend.checks_gradients(case.dtype)
    reference = reference_outputs(problem, reference_name, reference_device, case.mode, case.dtype, gradients)
    check = compare(workload.outputs(case.mode), reference, case.dtype)
    scope = "" if gradients or case.mode == "fwd" else "forward outputs only; "
    return check, f"vs {reference_name} float64 on {reference_device}; {scope}{check.note}"


def reference_outputs(problem: Problem, reference_backend: str, device: str, mode: str, dtype: str,
                      gradients: bool = True) -> dict[str, np.ndarray]:
    """Float64 outputs (and for ``fwd_bwd`` with ``gradients``, every gradient) of the reference
    backend, computed from the problem's arrays rounded to ``dtype``.

    One ``fwd_bwd`` run per (problem, dtype) serves both modes; the last few are cached because the
    runner measures every backend and mode of a shape and dtype back to back.
    """
    results = _reference_fwd_bwd(problem.rounded(dtype), reference_backend, device)
    if mode == "fwd_bwd" and gradients:
        return results
    return {name: results[name] for name in problem.forward_outputs}


@lru_cache(maxsize=6)
def _reference_fwd_bwd(problem: Problem, backend_name: str, device: str) -> dict[str, np.ndarray]:
    return get_backend(backend_name).factory(problem, "float64", device).outputs("fwd_bwd")
