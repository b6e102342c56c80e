"""The vector width of a dot operand's global load that keeps its shared-memory buffer conflict-free.

**Why.** A plain kernel's dot operand goes from its global load to shared memory (``ttg.local_alloc``)
and from there to the tensor cores (``ldmatrix``). Triton 3.6 orders that buffer by the operand:
the reduction dimension and the matrix's other dimension innermost, the batch (split-K slice)
dimension outermost. Later Tritons (3.9 checked; this module assumes every Triton from 3.7) order it
by the *register layout of the load* (``getOrderForMemory``): the dimensions in the order they first
appear among a thread's registers. A split-K tile ``(slices, rows, columns)`` whose load puts every
row on its own lane or warp but repeats the slices in registers is then stored slices second: the 8
rows an ``ldmatrix`` matrix reads are whole slices apart, in one bank group, and each takes its own
wavefront (8-way conflicts; :mod:`rnnbench.kernels.bank_conflicts`; under Triton 3.9 the model put
the Elman forward at H=768 B=16 at 4.45 µs a step instead of 2.13).

Every function here is a ``triton.constexpr_function`` (a kernel may call it at compile time, and
Triton refuses a kernel's reference to a plain function); from host code they are plain calls.

**What.** :func:`operand_vector` reproduces how Triton lays out the load (the coalescing pass:
``BlockedEncodingAttr::get`` from the order of contiguity and the vector width) and which order the
buffer then gets, and returns the widest vector whose buffer puts the operand's rows second. A
narrower vector spreads the contiguous dimension over more lanes, so the rows repeat in registers
before the slices do. The kernels apply it with ``tl.max_contiguous`` (:func:`rnnbench.kernels.
primitives.operand_pointers`); with Triton 3.6 it always returns the natural width, so the code the
lent GPU runs is unchanged.
"""

from __future__ import annotations

import math

import triton

from rnnbench.kernels.plan import TRITON_VERSION

#: lanes of a warp
LANES = 32
#: bytes of the widest global load of one thread (``LDG.128``)
MAX_LOAD_BYTES = 16


#: programs of more warps than this never narrow a load to one element: a thread has 128 registers
#: there (65536 / 32 / 16), and the LSTM backward's (8, 32, 32) state tile in 16 warps, loaded one
#: element a thread at a time, spilled 40-72 bytes (Triton 3.9; that backward runs 8 warps since,
#: conflict-free: :func:`rnnbench.kernels.plan.backward_half_rows`)
SCALAR_LOAD_MAX_WARPS = 8

#: whether the running Triton orders a dot operand's shared buffer by its load's register layout
#: (3.9 does, 3.6 does not; the versions between are assumed to be as 3.9)
ORDERS_BY_REGISTERS = TRITON_VERSION >= (3, 7)


@triton.constexpr_function
def load_order(rank: int, contiguous: int) -> tuple[int, ...]:
    """The coalescing pass's dimension order of a load contiguous along ``contiguous`` only: that
    dimension, then the others from the last (``getOrderFromContiguity``: ties go to the higher
    dimension)."""
    return (contiguous,) + tuple(dim for dim in reversed(range(rank)) if dim != contiguous)


@triton.constexpr_function
def blocked_layout(shape: tuple[int, ...], order: tuple[int, ...], vector: int,
                   warps: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """``(size_per_thread, threads_per_warp, warps_per_cta)`` of the blocked layout Triton gives a load
    of ``shape`` with ``vector`` elements a thread along ``order[0]`` (``BlockedEncodingAttr::get``:
    lanes then warps go to the dimensions in ``order``, each taking what its size leaves, the last
    one the rest)."""
    rank = len(shape)
    per_thread = [1] * rank
    per_thread[order[0]] = vector
    lanes, warps_per = [1] * rank, [1] * rank
    remaining_threads, remaining_lanes, remaining_warps = warps * LANES, LANES, warps
    used_lanes, used_warps = 1, 1
    for dim in order[:-1]:
        threads = min(max(remaining_threads, 1), max(1, shape[dim] // per_thread[dim]))
        lanes[dim] = min(max(threads, 1), remaining_lanes)
        warps_per[dim] = min(max(threads // lanes[dim], 1), remaining_warps)
        remaining_warps //= warps_per[dim]
        remaining_lanes //= lanes[dim]
        remaining_threads //= threads
        used_lanes *= lanes[dim]
        used_warps *= warps_per[dim]
    lanes[order[-1]] = LANES // used_lanes
    warps_per[order[-1]] = warps // used_warps
    return tuple(per_thread), tuple(lanes), tuple(warps_per)


@triton.constexpr_function
def memory_order(shape: tuple[int, ...], contiguous: int, vector: int, warps: int) -> tuple[int, ...]:
    """The order (most minor first) Triton >= 3.7 gives the shared buffer of a load of ``shape``
    contiguous along ``contiguous`` with ``vector`` elements a thread (``getOrderForMemory``): the
    dimensions as they first appear among a thread's registers (its vector, then the repeats of the
    layout's tile in the layout's order), the rest from the last; the lanes' order instead when that
    differs and a thread holds one element along the lanes' first dimension."""
    order = load_order(len(shape), contiguous)
    per_thread, lanes, warps_per = blocked_layout(shape, order, vector, warps)
    tile = [per_thread[dim] * lanes[dim] * warps_per[dim] for dim in range(len(shape))]
    repeats = [max(1, shape[dim] // tile[dim]) for dim in range(len(shape))]
    elements = [per_thread[dim] * repeats[dim] for dim in range(len(shape))]
    registers = [dim for dim in order if per_thread[dim] > 1] + [dim for dim in order if repeats[dim] > 1]
    by_registers = _first_then_rest(registers, tuple(reversed(range(len(shape)))))
    by_lanes = _first_then_rest([dim for dim in order if lanes[dim] > 1], by_registers)
    if by_registers != by_lanes and elements[by_lanes[0]] == 1:
        return by_lanes
    return by_registers


@triton.constexpr_function
def _first_then_rest(dims: list[int], rest: tuple[int, ...]) -> tuple[int, ...]:
    """``dims`` without repeats, then the dimensions of ``rest`` not among them."""
    seen = list(dict.fromkeys(dims))
    return tuple(seen + [dim for dim in rest if dim not in seen])


@triton.constexpr_function
def natural_vector(shape: tuple[int, ...], contiguous: int, element_bits: int, warps: int) -> int:
    """The elements a thread loads along ``contiguous`` without a hint: a 16-byte vector, no more than
    the dimension holds, nor more than the tile has elements a thread."""
    elements = math.prod(shape)
    return max(1, min(MAX_LOAD_BYTES * 8 // element_bits, shape[contiguous], elements // (warps * LANES)))


@triton.constexpr_function
def operand_vector(shape: tuple[int, ...], contiguous: int, warps: int, element_bits: int,
                   orders_by_registers: bool = ORDERS_BY_REGISTERS) -> int:
    """The widest vector (elements a thread along ``contiguous``) whose load of a split-K dot-operand
    tile ``(slices, rows, columns)`` leaves its shared buffer ordered ``contiguous`` then the
    operand's other matrix dimension, conflict-free; the natural width where that already holds,
    where no width helps, or where Triton does not order the buffer by registers (nor for a tile of
    one slice, which has nothing to put in between).

    Down to one element: with 8 or 16 warps over a 16- or 32-row tile the warps cover the rows
    whatever the width, and only a thread holding one element along the contiguous dimension makes
    Triton take the lanes' order instead (the backward's tiles at H=768 B=16; not in programs of more
    than :data:`SCALAR_LOAD_MAX_WARPS` warps). That is 8 loads where one 16-byte load did; the cost
    model still puts it ahead (the Elman backward at H=768 B=16: 2.25 µs a step against 4.60
    conflicted, Triton 3.9)."""
    natural = natural_vector(shape, contiguous, element_bits, warps)
    if not orders_by_registers or len(shape) != 3 or shape[0] == 1:
        return natural
    rows = 3 - contiguous
    narrowest = 1 if warps <= SCALAR_LOAD_MAX_WARPS else 2
    vector = natural
    while vector >= narrowest:
        if memory_order(shape, contiguous, vector, warps)[:2] == (contiguous, rows):
            return vector
        vector //= 2
    return natural


@triton.constexpr_function
def operand_contiguity(shape, contiguous, warps, element_bits):
    """:func:`operand_vector` for a kernel's ``tl.max_contiguous`` hint along ``contiguous``, or 0
    where the natural width stands (no hint) or ``warps`` is 0 (the interpreter, which has no layouts)."""
    shape = tuple(int(size) for size in shape)
    if not warps:
        return 0
    vector = operand_vector(shape, int(contiguous), int(warps), int(element_bits))
    return 0 if vector == natural_vector(shape, int(contiguous), int(element_bits), int(warps)) else vector
