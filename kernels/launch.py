"""Host side of a recurrent kernel launch: the path's launch pattern, checks before launching, and
the report of a grid barrier that timed out.

Every recurrent kernel takes ``(..., lengths, sync, T, B, H, w_stride, phase, first_direction)`` followed by the constexprs
``BLOCK_B, BLOCK_H, H_PAD, K_SPLIT, K_CHUNKS, MODE``, kernel-specific ones, ``DIRECTIONS``,
``HAS_LENGTHS``, ``POLL`` and ``POLL_ORDER``. :func:`run_phases` launches it the way
the plan's path requires: once with the time loop inside (``persistent``, ``cooperative``), or once
per phase (``stepwise``, and ``cooperative`` on the interpreter).

**Barrier timeouts.** A cooperative kernel's grid barrier gives up after
:data:`~rnnbench.kernels.primitives.BARRIER_TIMEOUT_NS` and writes the step it was waiting for into
its status word (:func:`~rnnbench.kernels.primitives.grid_barrier`); the kernel then finishes
without waiting, its results garbage. Reading that word at once would stall the host after every
launch, so :func:`run_phases` copies it to pinned host memory behind an event and
:func:`check_barriers` raises :class:`BarrierTimeout` for every finished launch whose status is
set: it runs before each launch (without waiting) and can be called to wait for all of them.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import triton

from rnnbench.kernels import switches
from rnnbench.kernels.plan import DEFAULT_ARCH, GLUON, LIMITS, PathUnavailable, Plan, major_minor, plan_recurrence
from rnnbench.kernels.primitives import BARRIER_TIMEOUT_NS, FLAG_SLOTS, MODE_NAMES, POLL_ORDERS, SYNC_ROW, UNUSED_FLAG

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
#: no software pipelining of the kernels' loops: the pipeliner would issue the next step's loads of
#: the exchanged state before the barrier that makes that state valid (it does not see the barrier)
NUM_STAGES = 1
_poison = False
#: cooperative launches whose barrier status is still to be read: (event, pinned status, what was launched)
_pending: list[tuple[object, torch.Tensor, str]] = []


class BarrierTimeout(RuntimeError):
    """A cooperative kernel's grid barrier waited longer than its timeout (a program never arrived)."""


def barrier_status_message(status: torch.Tensor, what: str, timeout_ns: int = int(BARRIER_TIMEOUT_NS.value)) -> str | None:
    """Why ``what`` failed, from the status words of its synchronisation buffer (``status``, one per
    (direction, batch block); the step a barrier gave up at, 0 when none did), or None."""
    failed = [(index, int(step)) for index, step in enumerate(status.flatten().tolist()) if step]
    if not failed:
        return None
    blocks = ", ".join(f"block {index} at step {step}" for index, step in failed)
    return (f"grid barrier of {what} timed out after {timeout_ns / 1e9:g} s ({blocks}): a program never arrived, so its "
            "results are garbage; the GPU may be shared with a kernel that keeps its multiprocessors busy")


def check_barriers(wait: bool = False) -> None:
    """Raise :class:`BarrierTimeout` for every finished cooperative launch whose barrier timed out
    (``wait``: wait for all pending launches first; otherwise unfinished ones stay pending)."""
    global _pending
    still, failures = [], []
    for event, status, what in _pending:
        if wait:
            event.synchronize()
        if not event.query():
            still.append((event, status, what))
        elif (message := barrier_status_message(status, what)) is not None:
            failures.append(message)
    _pending = still
    if failures:
        raise BarrierTimeout("; ".join(failures))


def sync_buffer(plan: Plan, device) -> torch.Tensor:
    """Fresh int32 ``(D, batch blocks, SYNC_ROW)`` (:func:`reset_sync`): each (direction, batch
    block)'s barrier flags, one per hidden block, and its status word at ``FLAG_SLOTS`` (see
    :func:`rnnbench.kernels.primitives.grid_barrier`); every block's flags start 16-byte aligned."""
    sync = torch.empty(plan.directions, plan.grid[1], int(SYNC_ROW.value), dtype=torch.int32, device=device)
    return reset_sync(sync, plan.grid[0])


def reset_sync(sync: torch.Tensor, producers: int) -> torch.Tensor:
    """Make ``sync`` (int32, ``(..., SYNC_ROW)``) a fresh synchronisation buffer for barriers of
    ``producers`` programs, in place: their flags and the status word zero, every other flag slot
    :data:`~rnnbench.kernels.primitives.UNUSED_FLAG` (a vector poll,
    :func:`~rnnbench.kernels.primitives.slowest_flag`, reads all ``POLL`` slots unmasked: the Gluon
    kernels' always, the plain kernels' where their plan's ``poll_vector`` is above 1; a scalar poll
    masks its own)."""
    if not 1 <= producers <= FLAG_SLOTS.value:
        raise ValueError(f"producers must be in [1, {FLAG_SLOTS.value}] (one flag slot each), got {producers}")
    sync.zero_()
    sync[..., producers:int(FLAG_SLOTS.value)] = int(UNUSED_FLAG.value)
    return sync


def _watch_barriers(sync: torch.Tensor, what: str) -> None:
    """Queue the status words of ``sync`` for :func:`check_barriers`. Not inside a CUDA graph
    capture: the copy would replay without anyone reading it, and a graph's barriers go unchecked."""
    if torch.cuda.is_current_stream_capturing():
        return
    status = torch.empty(sync.shape[:-1], dtype=sync.dtype, pin_memory=True)
    status.copy_(sync[..., int(FLAG_SLOTS.value)], non_blocking=True)
    event = torch.cuda.Event()
    event.record()
    _pending.append((event, status, what))


@contextlib.contextmanager
def poisoned_outputs():
    """Fill every buffer a kernel must write with NaN first (tests: an unwritten element shows)."""
    global _poison
    previous, _poison = _poison, True
    try:
        yield
    finally:
        _poison = previous


def output_buffer(shape, dtype: torch.dtype, device) -> torch.Tensor:
    """An uninitialised buffer that a kernel fills completely (NaN-filled under :func:`poisoned_outputs`)."""
    if _poison:
        return torch.full(shape, float("nan"), dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)


def interpreter_active() -> bool:
    """True when Triton kernels run in the interpreter (``TRITON_INTERPRET=1`` before import)."""
    from rnnbench.kernels.lstm_kernels import lstm_forward_kernel

    return not isinstance(lstm_forward_kernel, triton.runtime.JITFunction)


#: the first Triton whose interpreter reads a one-element index array with ``.squeeze()`` first
#: (Triton 3.6's ``tensor.__index__`` calls ``int()`` on the array itself)
INTERPRETER_INDEX_FIXED = (3, 7)
#: the first NumPy whose ``int()`` refuses an array of more than zero dimensions (a TypeError, after
#: a DeprecationWarning since 1.25; 2.3.5 still converts)
NUMPY_REFUSES_ARRAY_SCALARS = (2, 4)


def interpreter_refusal(triton_version: str | None = None, numpy_version: str | None = None) -> str | None:
    """Why the Triton interpreter cannot run the kernels with these versions (default: the installed
    ones), or None: Triton 3.6's interpreter turns a one-element index array into a Python int with
    ``int(array)``, which NumPy 2.4 refuses ("only 0-dimensional arrays can be converted to Python
    scalars"), so every kernel whose loop bounds or offsets are runtime scalars fails there. On a GPU
    the interpreter is not used and these versions are fine."""
    triton_version = triton_version or triton.__version__
    numpy_version = numpy_version or np.__version__
    if (major_minor(triton_version) < INTERPRETER_INDEX_FIXED
            and major_minor(numpy_version) >= NUMPY_REFUSES_ARRAY_SCALARS):
        fixed, refusing = (".".join(map(str, v)) for v in (INTERPRETER_INDEX_FIXED, NUMPY_REFUSES_ARRAY_SCALARS))
        return (f"the interpreter of Triton {triton_version} cannot run with NumPy {numpy_version} (its tensors' "
                f"__index__ calls int() on a one-element array, which NumPy >= {refusing} refuses): on CPU the "
                f"kernels need Triton >= {fixed} or NumPy < {refusing}")
    return None


def check_device_and_dtype(name: str, tensor: torch.Tensor) -> None:
    """Refuse what the kernels cannot run, naming the value and the way out."""
    interpreter = interpreter_active()
    if tensor.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{name} supports dtypes float32, float16 and bfloat16, got {tensor.dtype}")
    if tensor.device.type == "cpu" and not interpreter:
        raise ValueError(
            f"{name} got a CPU tensor, but its Triton kernels run on CUDA: move the module and inputs to a CUDA "
            "device, or set TRITON_INTERPRET=1 before importing kernels to run them in the (slow) Triton interpreter"
        )
    if tensor.device.type not in ("cpu", "cuda"):
        raise ValueError(f"{name} runs on CUDA (or the interpreter on CPU), got a tensor on {tensor.device}")
    refusal = interpreter_refusal() if interpreter and tensor.device.type == "cpu" else None
    if refusal is not None:
        raise RuntimeError(f"{name}: {refusal}")
    if interpreter and tensor.dtype == torch.bfloat16:
        raise TypeError(
            f"{name}: the Triton interpreter cannot multiply bfloat16 (tl.dot on bf16 is unsupported there); "
            "run bfloat16 on a GPU, or use float32/float16 under TRITON_INTERPRET=1"
        )


def make_plan(cell: str, hidden_size: int, batch: int, like: torch.Tensor, path: str, directions: int = 1,
              backward: bool = False, allow_narrow: bool = True, input_size: int | None = None,
              inference: bool = False) -> Plan:
    """:func:`~rnnbench.kernels.plan.plan_recurrence` for the device of ``like`` (its SM count and
    architecture; on sm_90 exactly, ``auto`` may take the Gluon forward; ``input_size`` of a forward
    that may fuse its input projection; ``inference``: a forward without a backward or lengths)."""
    interpreter = interpreter_active()
    multiprocessors, arch, exactly_sm_90 = None, DEFAULT_ARCH, False
    if like.device.type == "cuda" and not interpreter:
        multiprocessors = torch.cuda.get_device_properties(like.device).multi_processor_count
        major, minor = torch.cuda.get_device_capability(like.device)
        arch = max((a for a in LIMITS if a <= 10 * major + minor), default=min(LIMITS))
        exactly_sm_90 = (major, minor) == (9, 0)  # LIMITS maps newer GPUs to sm_90's limits
        if path == GLUON and not exactly_sm_90:
            raise PathUnavailable(f"path='gluon' runs on sm_90 only (Hopper's wgmma), this GPU is sm_{major}{minor}")
    return plan_recurrence(cell, hidden_size, batch, like.dtype, path, multiprocessors, interpreter, directions, arch,
                           backward, allow_gluon=exactly_sm_90, allow_narrow=allow_narrow, input_size=input_size,
                           inference=inference)


def dot_precision(dtype: torch.dtype) -> str:
    """``tl.dot`` input precision matching cuDNN: TF32 for fp32 when ``cudnn.allow_tf32`` is set.

    (16-bit inputs are multiplied exactly with fp32 accumulation whatever this says.)
    """
    if dtype == torch.float32 and torch.backends.cudnn.allow_tf32:
        return "tf32"
    return "ieee"


def exchange_buffer(plan: Plan, gates: int, like: torch.Tensor, first: torch.Tensor | None = None) -> torch.Tensor:
    """Zeroed ``(D, 2, B_pad, gates*H_PAD)`` buffer for state rows shared between programs (see
    :func:`rnnbench.kernels.primitives.exchange_offsets`); ``first (D, B, H)`` goes into slot 1, read by step 0.

    A persistent forward keeps its state in registers and gets a one-element placeholder."""
    if first is not None and plan.path == "persistent":
        return like.new_zeros(1)
    buffer = like.new_zeros(plan.directions, 2, plan.grid[1] * plan.block_b, gates * plan.h_pad)
    if first is not None:
        buffer[:, 1, : first.shape[1], : first.shape[2]] = first
    return buffer


#: row stride, in elements, the kernels' weight rows are aligned to
WEIGHT_ROW_ALIGNMENT = 16


def aligned_weight_rows(w_hh: torch.Tensor) -> torch.Tensor:
    """``w_hh (D, G*H, H)`` with a row stride that is a multiple of :data:`WEIGHT_ROW_ALIGNMENT`
    elements (its kernel argument ``w_stride``): itself when H is one, else a zero-padded copy.

    Triton specialises a stride divisible by 16, so the kernels load their weight slice with
    16-byte vectors whatever H is; with an odd stride every element is its own load and the
    compiled kernels need ~100 more registers per thread (seen with Triton 3.9, sm_90)."""
    width = w_hh.shape[-1]
    if width % WEIGHT_ROW_ALIGNMENT == 0:
        return w_hh.contiguous()
    padded = w_hh.new_zeros(*w_hh.shape[:-1], -(-width // WEIGHT_ROW_ALIGNMENT) * WEIGHT_ROW_ALIGNMENT)
    padded[..., :width] = w_hh
    return padded


def lengths_argument(lengths: torch.Tensor | None, like: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """The kernels' ``(lengths, HAS_LENGTHS)``: int32 lengths, or a placeholder when every row runs all steps."""
    if lengths is None:
        return like.new_zeros(1, dtype=torch.int32), False
    return lengths.to(device=like.device, dtype=torch.int32), True


def run_phases(kernel, plan: Plan, phases: int, tensors: tuple, sizes: tuple[int, int, int, int], device,
               sync: torch.Tensor | None = None, **constexprs) -> None:
    """Launch ``kernel(*tensors, sync, T, B, H, w_stride, phase, ...)`` over ``phases`` phases following
    ``plan`` (``tensors`` ends with the lengths argument; ``constexprs`` includes ``HAS_LENGTHS``).
    ``sync``: the cooperative path's synchronisation buffer (:func:`sync_buffer`), where the caller
    reads its flags while the kernel runs (:mod:`rnnbench.kernels.overlapped_gradients`); by
    default a fresh one."""
    interpreter = interpreter_active()
    # the interpreter runs programs one after another: a barrier with more than one participant per
    # batch block would wait forever, so the cooperative path's math runs one launch per step there
    stepwise = plan.path == "stepwise" or (plan.path == "cooperative" and interpreter and plan.grid[0] > 1)
    if not interpreter and not torch.cuda.is_current_stream_capturing():
        check_barriers()
    if sync is None:
        sync = sync_buffer(plan, device) if plan.path == "cooperative" else torch.zeros(1, dtype=torch.int32, device=device)
    common = dict(BLOCK_B=plan.block_b, BLOCK_H=plan.block_h, H_PAD=plan.h_pad, K_SPLIT=plan.k_split,
                  K_CHUNKS=plan.k_chunks, DIRECTIONS=plan.directions, POLL=plan.poll,
                  POLL_ORDER=POLL_ORDERS[plan.poll_order], POLL_VECTOR=plan.poll_vector,
                  POLL_FIRST_WARP=switches.GRID_POLL_FIRST_WARP, num_warps=plan.num_warps,
                  num_stages=NUM_STAGES, maxnreg=plan.max_registers, **constexprs)
    if stepwise:
        grid = (*plan.grid, plan.directions)
        for phase in range(phases):
            kernel[grid](*tensors, sync, *sizes, phase, 0, MODE=MODE_NAMES["stepwise"], **common)
        return
    if plan.path == "cooperative" and not interpreter:
        # the driver refuses a cooperative grid that cannot be co-resident instead of letting it spin forever
        common["launch_cooperative_grid"] = True
    for first_direction in range(0, plan.directions, plan.launch_directions):
        kernel[plan.launch_grid](*tensors, sync, *sizes, 0, first_direction, MODE=MODE_NAMES[plan.path], **common)
    if plan.path == "cooperative" and not interpreter:
        _watch_barriers(sync, f"{kernel.__name__} (grid {plan.launch_grid}, T={sizes[0]})")
