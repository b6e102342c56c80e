"""The LSTM backward's GEMMs run beside its recurrence instead of after it.

**Why.** After the reverse-time recurrence has turned the saved gates into the gate gradients
``dpre (T, B, 4H)``, three GEMMs over every step give ``dx = dpre W_ih``, ``dW_ih = sum_t dpre_t^T
x_t`` and ``dW_hh = sum_t dpre_t^T h_{t-1}`` (:func:`rnnbench.kernels.projections.parameter_and_input_grads`).
At H=768, B=16, T=1024 they are 3 x 77 GFLOP, ~0.38 µs a step of the call on 132 SMs (the cost
model's backward ``gemm`` term; the H200's whole training call measured ~0.7 µs a step above its
two kernels alone, reports/h200/7caf667), while the recurrence keeps only 48 of the SMs busy. Each
GEMM is a sum (or, for ``dx``, a map) over steps, and the recurrence finishes steps from the last
to the first: the steps it has finished can be multiplied while it runs the others.

**How.** The steps are cut into the ranges of
:func:`rnnbench.kernels.overlapped_projection.chunk_ranges` (``C, C, 2C, 4C, ...`` from step 0,
C = :data:`rnnbench.kernels.plan.OVERLAPPED_CHUNK_STEPS`), taken from the last (finished first,
half the steps) to the first (finished last, C steps: all that is left after the recurrence). On a
second CUDA stream, for each range ``[s, e)``:

1. :func:`wait_for_steps_kernel` (one one-warp program per synchronisation row) polls the
   recurrence's grid-barrier flags until every program has finished ``T - s`` steps, i.e. stored
   its gate gradients of steps ``>= s`` (each program stores them before its release add, as it
   does for the exchange), then an acquire fence; its completion orders them before the next
   kernels of the stream. A timeout (no progress for the grid barrier's 2 s, or another program's
   timeout in the status word) sets the status word, which the host checks, and ends the wait;
2. ``dx[s:e] = dpre[s:e] W_ih`` (cuBLAS, into the output);
3. ``dW_ih += dpre[s:e]^T x[s:e]`` and ``dW_hh += dpre[s:e]^T h[s-1:e-1]`` (``h0`` for step 0) into
   float32 sums (:func:`rnnbench.kernels.weight_grad.accumulate_weight_grad`), rounded once at the
   end, as the one GEMM rounds them; and the bias gradient ``db += dpre[s:e]^T 1`` the same way
   (after the recurrence it is one matrix-vector product, the largest GEMM left on the call's
   path at the anchor: ~100 MiB read). Only the summation order differs from the GEMMs after the
   recurrence: the gradients agree to float32 rounding before the final 16-bit rounding.

The second stream waits for everything the main stream had queued before the recurrence's launch
(:meth:`OverlappedGradients.start`, called before it), and the main stream waits for the second
stream after the last range (:meth:`~OverlappedGradients.finish`): what follows the layer, the
allocator's reuse of these tensors and a CUDA graph's end see the gradients. The waits run one at
a time (the second stream is in order), each in one SM slot while it spins; the GEMMs they release
run on the SMs the recurrence leaves free. Where the layer cannot take this path it says why
(:func:`rnnbench.kernels.plan.overlapped_gradients_refusal`,
:func:`rnnbench.kernels.overlapped_projection.overlap_refusal`).

Without CUDA (the interpreter) there is no second stream and no wait: :meth:`finish` runs the
ranges in order after the recurrence, the same arithmetic (what ``tests/test_overlapped_gradients.py``
checks on CPU).
"""

from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl
from triton.language.extra.cuda import globaltimer

from rnnbench.kernels.overlapped_projection import _side_stream, chunk_ranges
from rnnbench.kernels.primitives import BARRIER_TIMEOUT_NS, FLAG_SLOTS, SYNC_ROW, _load_relaxed, acquire_fence
from rnnbench.kernels.weight_grad import accumulate_weight_grad


#: how long the wait sleeps between polls (``nanosleep``), so that its one warp does not keep the
#: flags' L2 lines busy while the recurrence's programs poll and write them; far below a range's
#: time (a step is ~2-8 µs, a range at least 32 steps)
POLL_SLEEP_NS = 1000


@triton.jit
def _sleep(lane, NANOSECONDS: tl.constexpr):
    """Every thread sleeps about ``NANOSECONDS`` once per element of ``lane`` it holds; returns zeros
    like ``lane`` (inline asm needs a result)."""
    return tl.inline_asm_elementwise(f"nanosleep.u32 {NANOSECONDS}; mov.u32 $0, 0;", "=r,r", [lane], dtype=tl.int32,
                                     is_pure=False, pack=1)


@triton.jit
def wait_for_steps_kernel(sync_ptr, producers, target, POLL: tl.constexpr, SLEEP_NS: tl.constexpr):
    """Wait until each of the ``producers`` flags of synchronisation row ``program_id(0)`` (a
    direction and batch block of :func:`rnnbench.kernels.launch.sync_buffer`) has reached ``target``
    (the steps its program has finished), then ``fence.acq_rel.gpu``: an acquire of what those
    programs stored before their release adds. ``POLL``: a power of two >= ``producers``, each
    flag one lane's relaxed load; ``SLEEP_NS`` between polls.

    Gives up where the status word is set (a program of the recurrence timed out) or where no flag
    has moved for :data:`~rnnbench.kernels.primitives.BARRIER_TIMEOUT_NS`: it then sets the status
    word to ``target`` (:func:`rnnbench.kernels.launch.check_barriers` raises), and the GEMMs after
    it read garbage. The clock restarts at each progress, so a long recurrence (the first range
    waits for half the call) does not time out."""
    flags_ptr = sync_ptr + tl.program_id(0) * SYNC_ROW
    lane = tl.arange(0, POLL)
    polled = lane < producers
    seen = target * 0 - 1  # below any flag: the first poll counts as progress
    since = globaltimer()
    slowest = seen
    status = 0
    while (slowest < target) & (status == 0):
        _sleep(tl.arange(0, 32), SLEEP_NS)  # one element a thread of the one warp: one sleep
        status = _load_relaxed(flags_ptr + FLAG_SLOTS)
        flags = _load_relaxed(flags_ptr + tl.where(polled, lane, 0))
        slowest = tl.min(tl.where(polled, flags, target))
        now = globaltimer()
        if slowest > seen:
            seen = slowest
            since = now
        elif (slowest < target) & (status == 0) & (now - since > BARRIER_TIMEOUT_NS):
            tl.atomic_max(flags_ptr + FLAG_SLOTS, target, sem="relaxed", scope="gpu")
            status = target
    acquire_fence(tl.arange(0, 32))


def wait_for_steps(sync: torch.Tensor, producers: int, target: int) -> None:
    """Launch :func:`wait_for_steps_kernel` on the current stream over every row of ``sync``
    (``(D, batch blocks, SYNC_ROW)`` int32)."""
    rows = sync.numel() // int(SYNC_ROW.value)
    poll = max(32, triton.next_power_of_2(producers))
    wait_for_steps_kernel[(rows,)](sync, producers, target, POLL=poll, SLEEP_NS=POLL_SLEEP_NS, num_warps=1)


class OverlappedGradients:
    """``dx``, ``dW_ih`` and ``dW_hh`` of one direction's LSTM layer computed range by range as its
    backward recurrence finishes their steps (see the module docstring).

    ``dpre (1, T, B, 4H)``: the gate gradients, written in place by the recurrence; ``x (T, B, I)``,
    ``h0 (1, B, H)``, ``y (T, B, H)``, ``w_ih (1, 4H, I)`` as
    :func:`rnnbench.kernels.projections.parameter_and_input_grads` takes them. :meth:`start` before
    the recurrence's launch, :meth:`finish` after it (with its synchronisation buffer and programs
    per row), then :attr:`dx` ``(T, B, I)`` (None unless ``need_dx``), :meth:`weight_grads` and
    :meth:`bias_grad` (None unless ``need_bias``)."""

    def __init__(self, dpre: torch.Tensor, x: torch.Tensor, h0: torch.Tensor, y: torch.Tensor, w_ih: torch.Tensor,
                 need_dx: bool, need_bias: bool, chunk_steps: int):
        directions, steps, batch, width = dpre.shape
        if directions != 1:
            raise ValueError(f"the overlapped gradients run one direction, got {directions}")
        hidden, inputs = h0.shape[-1], x.shape[-1]
        self.dpre, self.x, self.h0, self.y, self.w_ih = dpre[0], x, h0[0], y, w_ih[0]
        self.ranges = chunk_ranges(steps, chunk_steps)[::-1]  # the recurrence finishes the last steps first
        # allocated on the main stream before the launch: the allocator keeps them for this call
        self.dx = x.new_empty(steps, batch, inputs) if need_dx else None
        self.dw_ih = torch.zeros(width, inputs, dtype=torch.float32, device=x.device)
        self.dw_hh = torch.zeros(width, hidden, dtype=torch.float32, device=x.device)
        # the bias gradient as a product with a column of ones (the largest range's rows of it)
        self.db = torch.zeros(width, 1, dtype=torch.float32, device=x.device) if need_bias else None
        widest = max(end - start for start, end in self.ranges) * batch
        self.ones = x.new_ones(widest, 1) if need_bias else None
        self.side = _side_stream(x.device) if x.device.type == "cuda" else None

    def _on_side(self):
        """The second stream's context (without CUDA: the current device, in order)."""
        return contextlib.nullcontext() if self.side is None else torch.cuda.stream(self.side)

    def start(self) -> None:
        """Before the recurrence's launch: the second stream waits for what the main stream queued
        so far (the forward's outputs, the zeroed sums), not for the recurrence."""
        if self.side is not None:
            self.side.wait_stream(torch.cuda.current_stream(self.x.device))

    def _range(self, start: int, end: int) -> None:
        """The GEMMs of steps ``[start, end)`` on the current stream."""
        steps, batch, width = self.dpre.shape
        rows = self.dpre[start:end].reshape(-1, width)
        if self.dx is not None:
            torch.mm(rows, self.w_ih, out=self.dx[start:end].view(rows.shape[0], -1))
        accumulate_weight_grad(self.dw_ih, rows, self.x[start:end].reshape(rows.shape[0], -1))
        if self.db is not None:
            accumulate_weight_grad(self.db, rows, self.ones[:rows.shape[0]])
        # h_{t-1} of step t: y[t-1], and h0 for step 0 (the first range's first rows)
        hidden = self.h0.shape[-1]
        later = max(start, 1)
        accumulate_weight_grad(self.dw_hh, self.dpre[later:end].reshape(-1, width),
                               self.y[later - 1:end - 1].reshape(-1, hidden),
                               first=(self.dpre[0], self.h0) if start == 0 else None)

    def finish(self, sync: torch.Tensor | None, producers: int) -> None:
        """After the recurrence's launch: each range waits for the recurrence's flags in ``sync``
        (``producers`` programs per row; None without CUDA, where the recurrence has finished) to
        pass it, then runs its GEMMs; the main stream then waits for them all and queues the status
        words for :func:`rnnbench.kernels.launch.check_barriers`."""
        from rnnbench.kernels.launch import _watch_barriers

        steps = self.dpre.shape[0]
        with self._on_side():
            for start, end in self.ranges:
                if self.side is not None:
                    wait_for_steps(sync, producers, steps - start)
                self._range(start, end)
        if self.side is not None:
            torch.cuda.current_stream(self.x.device).wait_stream(self.side)
            _watch_barriers(sync, f"{wait_for_steps_kernel.__name__} (T={steps})")

    def weight_grads(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``(dW_ih (1, 4H, I), dW_hh (1, 4H, H))`` rounded to ``dtype`` (after :meth:`finish`)."""
        return self.dw_ih.to(dtype).unsqueeze(0), self.dw_hh.to(dtype).unsqueeze(0)

    def bias_grad(self, dtype: torch.dtype) -> torch.Tensor | None:
        """``db (1, 4H)`` rounded to ``dtype`` (after :meth:`finish`), None unless ``need_bias``."""
        return None if self.db is None else self.db.to(dtype).view(1, -1)


def compile_wait(poll: int, arch: int):
    """``triton.compile`` of :func:`wait_for_steps_kernel` for ``POLL = poll`` on ``sm_<arch>``, as
    :func:`wait_for_steps` launches it (no GPU needed, nor ``TRITON_INTERPRET`` in this process)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = wait_for_steps_kernel
    signature = {"sync_ptr": "*i32", "producers": "i32", "target": "i32", "POLL": "constexpr", "SLEEP_NS": "constexpr"}
    source = ASTSource(fn=fn, signature=signature, constexprs={"POLL": poll, "SLEEP_NS": POLL_SLEEP_NS},
                       attrs={(fn.arg_names.index("sync_ptr"),): [["tt.divisibility", 16]]})
    return triton.compile(source, target=GPUTarget("cuda", arch, 32), options={"num_warps": 1})


def compiled_resources(poll: int, arch: int) -> tuple[int, int, int, str]:
    """``(registers per thread, spill bytes per thread, shared memory bytes, SASS)`` of
    :func:`compile_wait` (a job for :func:`rnnbench.kernels.aot.compile_all`)."""
    from rnnbench.kernels.aot import cubin_resources
    from rnnbench.kernels.sass import disassemble

    compiled = compile_wait(poll, arch)
    return (*cubin_resources(compiled.asm["cubin"]), int(compiled.metadata.shared), disassemble(compiled.asm["cubin"]))
