"""Physical lower bound of one recurrent time step (DESIGN.md, "Cost model").

Per step and batch of ``B`` sequences with hidden size ``H`` and ``s`` bytes per element, the
recurrent matmul does ``8·B·H²`` FLOPs and reads ``4·H²·s`` bytes of weights for an LSTM (four gates),
``2·B·H²`` and ``H²·s`` for the Elman RNN. A step can be no faster than the larger of
FLOPs / peak FLOP/s and bytes / memory bandwidth. This is a forward-pass bound (a step of the
backward pass does about twice the work); it ignores latency (launches, barriers, the dependent
chain inside a step), which is what real kernels at small batch are bound by.

Peaks are dense (no sparsity) tensor-core numbers from the vendors' data sheets; float32 uses the
TF32 peak and float64 the FP64 tensor-core peak, the fastest way the device multiplies in that
format (so the bound stays a lower bound).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: (FLOPs per B·H², weight bytes per H²·s) of one step of each recurrent family
FAMILY_COST = {"lstm": (8, 4), "rnn": (2, 1)}
BYTES_PER_ELEMENT = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2}


@dataclass(frozen=True)
class DevicePeaks:
    """Peak dense throughput in TFLOP/s per dtype and memory bandwidth in TB/s."""

    name: str
    tflops: dict[str, float]
    bandwidth_tbs: float


def _peaks(name: str, half: float, tf32: float, fp64: float, bandwidth: float) -> DevicePeaks:
    return DevicePeaks(name, {"bfloat16": half, "float16": half, "float32": tf32, "float64": fp64}, bandwidth)


#: (pattern matched against the device name in the results, peaks); the first match wins
DEVICE_PEAKS: tuple[tuple[str, DevicePeaks], ...] = (
    (r"H200 NVL", _peaks("H200 NVL", 835.5, 417.5, 60.0, 4.8)),
    (r"H200", _peaks("H200 SXM", 989.4, 494.7, 66.9, 4.8)),
    (r"H100 NVL", _peaks("H100 NVL", 835.5, 417.5, 60.0, 3.9)),
    (r"H100.*PCIe", _peaks("H100 PCIe", 756.5, 378.0, 51.2, 2.0)),
    (r"H100", _peaks("H100 SXM", 989.4, 494.7, 66.9, 3.35)),
    (r"A100.*80GB.*PCIe|A100 80GB PCIe", _peaks("A100 80GB PCIe", 312.0, 156.0, 19.5, 1.935)),
    (r"A100.*80GB", _peaks("A100 80GB SXM", 312.0, 156.0, 19.5, 2.039)),
    (r"A100", _peaks("A100 40GB", 312.0, 156.0, 19.5, 1.555)),
)


def device_peaks(device_name: str) -> DevicePeaks | None:
    """The peaks of the device called ``device_name`` (as torch names it), None when unknown (CPUs)."""
    for pattern, peaks in DEVICE_PEAKS:
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            return peaks
    return None


def step_lower_bound_us(family: str, batch: int, hidden_size: int, dtype: str, peaks: DevicePeaks) -> float | None:
    """Lower bound of one forward time step in µs, None when the family or dtype has no cost model."""
    if family not in FAMILY_COST or dtype not in BYTES_PER_ELEMENT or dtype not in peaks.tflops:
        return None
    flops_per, bytes_per = FAMILY_COST[family]
    flops = flops_per * batch * hidden_size**2
    weight_bytes = bytes_per * hidden_size**2 * BYTES_PER_ELEMENT[dtype]
    return max(flops / (peaks.tflops[dtype] * 1e12), weight_bytes / (peaks.bandwidth_tbs * 1e12)) * 1e6
