"""The LSTM layer's input projection run beside the Gluon forward instead of before it.

**Why.** Before the recurrent kernel, one GEMM projects every step's input (``xg = x W_ih^T + b``,
:func:`rnnbench.kernels.projections.project_inputs`). At H=768, B=16, T=1024 that GEMM is ~0.12 µs
of the whole call's ~2.6 µs a step (the cost model's ``gemm`` term; the H200's whole call measured
0.21 µs a step above the kernel alone), while the recurrence keeps only 48 of the GPU's 132 SMs
busy. Projected beside it, the GEMM takes the idle SMs and its time leaves the call.

**How.** The projection is split into GEMMs of consecutive steps, ``OVERLAPPED_CHUNK_STEPS`` (C)
first, then doubling (C, C, 2C, 4C, ...: :func:`chunk_ranges`), on a second CUDA stream; after each,
:func:`publish_steps_kernel` sets the ready flag of each of its C-step chunks with a release store.
The kernel (``XG_CHUNK = C``) polls chunk ``t // C``'s flag with an acquire load before it prefetches
the first step of the chunk (:func:`rnnbench.kernels.gluon_primitives.input_ready_wait`, with the
grid barrier's timeout), a step ahead of its use and once per C steps. The first GEMM goes first;
the recurrence is launched after it and the later GEMMs after the recurrence, so the recurrence
starts as soon as the first C steps are projected: a GPU that runs the two streams one after the
other (``CUDA_LAUNCH_BLOCKING=1``) would run the recurrence before the later GEMMs and time out
waiting for them, so :func:`overlap_refusal` refuses it there. The main stream waits for the
second one after the launch (so what follows the layer, and a CUDA graph, see the whole
projection done). Each GEMM is as long as all before it (the last about half the call), and takes
about a 12th of the time the recurrence needs for the same steps (H=768, B=16: the cost model's
0.126 µs a step on 132 SMs, ~0.2 on the 84 the recurrence leaves free, against ~2.4), so after the
first chunk the kernel finds every flag set.

Without CUDA the GEMMs run in order on the tensors' device (what ``tests/test_overlapped_projection.py``
checks of the chunking on CPU); the layer does not take this path there (:func:`overlap_refusal`).
"""

from __future__ import annotations

import contextlib
import os

import torch
import triton
import triton.language as tl

from rnnbench.kernels.projections import project_rows

#: flags one :func:`publish_steps_kernel` program sets
PUBLISH_BLOCK = 1024


def chunk_ranges(steps: int, chunk_steps: int) -> list[tuple[int, int]]:
    """The GEMMs' step ranges ``[start, end)``: ``chunk_steps`` first, then each twice the one before
    (``C, C, 2C, 4C, ...``), the last cut at ``steps``; every start a multiple of ``chunk_steps``,
    so each GEMM completes whole chunks of the kernel's flags."""
    if steps < 1 or chunk_steps < 1:
        raise ValueError(f"steps and chunk_steps must be positive, got {steps} and {chunk_steps}")
    ranges, start, size = [], 0, chunk_steps
    while start < steps:
        ranges.append((start, min(start + size, steps)))
        start += size
        size = start  # C, C, 2C, 4C: the next GEMM as long as everything before it
    return ranges


@triton.jit
def publish_steps_kernel(flags_ptr, first, count, BLOCK: tl.constexpr):
    """Set the ``count`` ready flags from ``first`` on to 1, each with a release store (``atom.exch``,
    gpu scope): a kernel launched after a GEMM on the same stream, so what the GEMM wrote happens
    before the flag a reader acquires."""
    index = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.atomic_xchg(flags_ptr + first + index, 1, mask=index < count, sem="release", scope="gpu")


def publish_steps(flags: torch.Tensor, first: int, count: int) -> None:
    """Launch :func:`publish_steps_kernel` on the current stream."""
    publish_steps_kernel[(triton.cdiv(count, PUBLISH_BLOCK),)](flags, first, count, BLOCK=PUBLISH_BLOCK)


def overlap_refusal(device: torch.device) -> str | None:
    """Why the projection cannot run beside the kernel on ``device`` (None: it can): it needs CUDA
    and two streams that run at the same time."""
    if device.type != "cuda":
        return f"a {device.type} tensor (the projection runs beside the kernel on a second CUDA stream)"
    if os.environ.get("CUDA_LAUNCH_BLOCKING", "0") not in ("", "0"):
        return ("CUDA_LAUNCH_BLOCKING is set: the streams would run one after the other, and the kernel would wait "
                "for GEMMs launched after it")
    return None


_side_streams: dict[int, torch.cuda.Stream] = {}


def _side_stream(device: torch.device) -> torch.cuda.Stream:
    """One second stream per GPU, made once (a stream made during a CUDA graph's capture would be
    captured into it)."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _side_streams:
        _side_streams[index] = torch.cuda.Stream(device=index)
    return _side_streams[index]


class OverlappedProjection:
    """``xg (1, T, B, 4H)`` (one direction) projected in the GEMMs of :func:`chunk_ranges`, with
    ``flags`` (int32, one per chunk of ``chunk_steps`` steps) set as they complete: :meth:`start`
    before the Gluon forward is launched (the first GEMM), :meth:`finish` after (the others, and
    the main stream's wait for them). Pass ``xg``, ``flags`` and ``chunk_steps`` to
    :func:`rnnbench.kernels.gluon_lstm.run_forward` (``input_flags``, ``input_chunk``)."""

    def __init__(self, x: torch.Tensor, w_ih: torch.Tensor, b_ih: torch.Tensor | None, b_hh: torch.Tensor | None,
                 chunk_steps: int):
        steps, batch, _ = x.shape
        directions, width, _ = w_ih.shape
        if directions != 1:
            raise ValueError(f"the overlapped projection runs one direction, got {directions}")
        self.x, self.w_ih = x, w_ih[0]
        self.bias = None if b_ih is None else b_ih[0] + b_hh[0]
        self.chunk_steps = chunk_steps
        self.ranges = chunk_ranges(steps, chunk_steps)
        self.xg = x.new_empty(1, steps, batch, width)
        self.flags = torch.zeros(triton.cdiv(steps, chunk_steps), dtype=torch.int32, device=x.device)
        self.side = _side_stream(x.device) if x.device.type == "cuda" else None

    def _project(self, start: int, end: int) -> None:
        """GEMM of steps ``[start, end)`` into ``xg``, then their chunks' flags, on the current stream."""
        x2d = self.x[start:end].reshape(-1, self.x.shape[-1])
        project_rows(x2d, self.w_ih, self.bias, self.xg[0, start:end].view(x2d.shape[0], -1))
        first = start // self.chunk_steps
        publish_steps(self.flags, first, triton.cdiv(end, self.chunk_steps) - first)

    def _on_side(self):
        """The second stream's context (without CUDA: the current device, in order)."""
        return contextlib.nullcontext() if self.side is None else torch.cuda.stream(self.side)

    def start(self) -> None:
        """The first GEMM (on the second stream, after everything the main stream has queued)."""
        if self.side is not None:
            self.side.wait_stream(torch.cuda.current_stream(self.x.device))
        with self._on_side():
            self._project(*self.ranges[0])

    def finish(self) -> None:
        """The other GEMMs (after the kernel's launch), then the main stream waits for them all."""
        with self._on_side():
            for start, end in self.ranges[1:]:
                self._project(start, end)
        if self.side is not None:
            # the main stream's later work (the allocator's reuse of these tensors' memory included, and
            # a CUDA graph's end) waits for the second stream
            torch.cuda.current_stream(self.x.device).wait_stream(self.side)
