"""Dtype names used in suites and results, and their torch / NumPy counterparts.

Results always use the canonical names (``float64, float32, float16, bfloat16``); suites may also
use the short aliases ``fp64, fp32, fp16, bf16``.
"""

from __future__ import annotations

import numpy as np
import torch

from rnnbench.harness.errors import UsageError

CANONICAL = ("float64", "float32", "float16", "bfloat16")
ALIASES = {"fp64": "float64", "fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "half": "float16"}

TORCH_DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
#: NumPy has no bfloat16; the NumPy backend supports the two dtypes listed here
NUMPY_DTYPES = {"float64": np.float64, "float32": np.float32}


def canonical_dtype(name: str) -> str:
    """``"bf16" -> "bfloat16"``; raises UsageError for names that are not a supported dtype."""
    if not isinstance(name, str):
        raise UsageError(f"dtype must be a string such as 'float32', got {name!r}")
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in CANONICAL:
        raise UsageError(f"unknown dtype {name!r}; expected one of {', '.join(CANONICAL + tuple(ALIASES))}")
    return key


def torch_dtype(name: str) -> torch.dtype:
    return TORCH_DTYPES[canonical_dtype(name)]
