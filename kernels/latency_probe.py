"""Latency probes: the primitives a recurrent step is made of, each timed alone on the GPU, beside
what the cost model estimates for the same compiled loop.

**Why.** The cost model (:mod:`rnnbench.kernels.cost`) adds up a latency table of round numbers
taken from papers (its module docstring); calibration then scales whole terms to fit measured
steps, where every primitive comes together with every other (``reports/aot/cost-calibration-sm_90.json``:
four factors clipped at the bound, the barrier's at 6.0). These probes measure the table's entries
one by one, in loops built from the kernels' own primitives, and answer the questions the
kernels' notes left to a GPU (KERNELS2.md):

==================  ============================================================================
probe               what one iteration is (one program on one SM unless stated)
==================  ============================================================================
``load_relaxed``    a dependent chain of ``ld.relaxed.gpu`` (``LDG.E.STRONG.GPU``) through a 4 MiB
                    random cycle of 128-byte lines (L2 hits, near and far partition): the L2
                    round trip of a coherent load
``load_acquire``    the same with ``ld.acquire.gpu`` (``LDG`` then ``CCTL.IVALL``): one poll load
``release``         the grid barrier's arrival (:func:`rnnbench.kernels.primitives.barrier_arrive`:
                    CTA barrier, ``MEMBAR.GPU``, release add) with ``_s0``/``_s1``/``_s4`` stores of
                    every thread before it: what a release costs, and whether the fence waits
                    longer for more stores (the "``y`` after the release" question)
``ping_pong``       two programs on two SMs hand a flag back and forth (release add, acquire
                    poll): two one-way signals between SMs per iteration
``ping_pong_tagged``  the same with the tagged exchange's primitives (:mod:`rnnbench.kernels.tagged_exchange`):
                    the signal a relaxed ``atom.exch`` of the step, the wait a volatile poll of it,
                    no fence, no invalidation: ``ping_pong`` minus this is twice what a tagged
                    hand-over saves over a flag's
``cluster_barrier_C``  ``barrier.cluster.arrive.release`` + ``wait.acquire`` of a cluster of ``C``
                    CTAs on ``C`` SMs (Gluon, ``num_ctas=C``; ``_s1``: after one store per thread,
                    which the release waits for): a synchronisation the hardware does, the
                    alternative to flags for a recurrence whose grid fits one cluster (KERNELS2.md)
``cta_barrier``     ``bar.sync`` of 4 warps
``handover``        the tagged loader's hand-over of the state to the MMAs
                    (:func:`rnnbench.kernels.gluon_lstm._tagged_loader`, the anchor's 12 tiles): 4
                    warps store their int32 pairs into 12 ``(16, 32)`` tiles (``STS.128``, the MMAs'
                    128-byte swizzle), ``fence.proxy.async.shared::cta`` (``MEMBAR.ALL.CTA``,
                    ``FENCE.VIEW.ASYNC.S``), a CTA barrier, an mbarrier arrival and the wait for its
                    phase: the model charges the ``MEMBAR.ALL.CTA`` the table's GPU-scope ``membar``
                    (the release's fence), which a CTA-scope one after shared stores may not cost
``tma_N``           a TMA copy of a ``(N, 16, 64)`` 16-bit box (the Gluon forward's state copies:
                    N tiles of ``(16 rows, 64 columns)``, 2 KiB each) into shared memory, armed,
                    issued and waited for on an mbarrier (Gluon)
``hgmma_A_bN``      24 warpgroup MMAs ``64 x N x 16`` accumulating in one chain, then their wait,
                    with A (the weights) in shared memory or registers (Gluon): at N = 16 is the
                    rate set by the weights' shared-memory bandwidth (~20 cycles an MMA) or by
                    the tensor pipe (~8-12)? ``hgmma_mixed_b16``: half the tiles' A in shared
                    memory, half in registers (the Gluon forward's split at H=768), one chain;
                    ``_two_chains``: the same MMAs into two accumulators issued alternately (the
                    forward's ``two_chain_product``): does a second chain overlap the first?
``hmma_wW_cC``      ``C`` independent accumulators of the plain kernels' ``mma.sync`` (``HMMA.16816``,
                    bf16 into float32), each taking 12 in turn (``hmma_chain``: one taking 24), in
                    every warp of a program of ``W`` warps, the operands in registers: its dependent
                    latency (``hmma_chain``), the tensor pipe's rate with one warp a scheduler
                    (``w4``) and with two (``w8``, the plain forward's layout at B=64, whose ``mma``
                    ablation variant took 3.84 µs at H=768 on the H200, 3.4x the model's 1.14)
==================  ============================================================================

**What a number is.** ``ns_per_iteration``: the slope of CUDA-event times between launches of
``N`` and ``2N`` iterations (launch and start-up cancel; median over repeats, with quartiles, as
:func:`rnnbench.kernels.barrier_bench.slope_us`). ``cycles_per_iteration``: the same slope of the
SM clock (``%clock64``) read around the loop by the first program, so ``cycles / ns`` is the clock
the probe ran at. ``model_cycles``: :func:`rnnbench.kernels.cost.simulate` of the probe's own loop,
its SASS compiled by the Triton that runs it for this GPU (one program, its warps, nothing else on
the SM): ``cycles_per_iteration / model_cycles`` is how far the table is off for that primitive.
The model has no estimate for the ping-pongs (it simulates one program; an iteration there is two
programs' signals in turn) or for the cluster barriers (it has no entry for them).

    PYTHONPATH=. python3 -m rnnbench.kernels.latency_probe --out reports/h200/latency.csv

Rows are written as they are measured, so a run cut short keeps them; a probe that cannot run is
reported on stderr and skipped. ``--render latency.csv`` prints the Markdown tables the GPU
report includes; ``--adopt latency.csv`` writes the measured entries the cost model takes
(``reports/aot/cost-latencies-sm_90.json``; both in :mod:`rnnbench.kernels.latency_table`;
``make gpu-report`` adopts before the calibration, which is then fitted on top of the measured
table). The Gluon probes need sm_90; the others run on any CUDA GPU.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
from dataclasses import dataclass
from typing import Callable

import torch
import triton
import triton.language as tl
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (
    fence_async_shared, mbarrier, warpgroup_mma_init, warpgroup_mma_wait,
)
from triton.language.extra.cuda import globaltimer, smid

from rnnbench.kernels.barrier_bench import slope_us
from rnnbench.kernels.gluon_lstm import _PAIRS_LAYOUT as PAIRS_LAYOUT, tile_mma, two_chain_product
from rnnbench.kernels.gluon_primitives import clock64 as gluon_clock64, cta_barrier, tma_load
from rnnbench.kernels.latency_table import K_TILE, TMA_ROWS, adopt, render, tma_box, tma_copy_bytes
from rnnbench.kernels.primitives import BARRIER_TIMEOUT_NS, POLL_ORDERS, _load_flags, barrier_arrive

COLUMNS = ["device_name", "probe", "what", "iterations", "ops_per_iteration", "ns_per_iteration", "q25_ns", "q75_ns",
           "cycles_per_iteration", "clock_ghz", "model_cycles", "measured_over_model", "ns_per_op", "cycles_per_op"]
#: int32 slots per 128-byte line (flags of different programs sit on different lines)
LINE: tl.constexpr = tl.constexpr(32)
#: the load chase's buffer: 4 MiB of int32 (L2-resident on H100/H200, far larger than L1)
CHASE_WORDS = 1 << 20
HGMMA_TILES = 6  # weight tiles of (64 gate rows, 64 columns) per MMA chain: 24 MMAs of k16
#: a release add compiles to REDG (its result unused) or ATOMG
_ATOMICS = ("REDG", "ATOMG")


# ---- kernels ---------------------------------------------------------------------------------------

@triton.jit
def clock64():
    """``%clock64`` of the SM (cycles)."""
    return tl.inline_asm_elementwise("mov.u64 $0, %clock64;", "=l", [], dtype=tl.int64, is_pure=False, pack=1)


@triton.jit(do_not_specialize=["N"])
def chase_kernel(chain_ptr, out_ptr, N, ORDER: tl.constexpr):
    """``N`` dependent coherent loads ``index = chain[index]`` (``ORDER``: a poll order of
    :data:`~rnnbench.kernels.primitives.POLL_ORDERS`, acquire or relaxed); stores the SM cycles the
    loop took and the last index (so the chain stays live)."""
    index = tl.zeros([1], dtype=tl.int32)
    start = clock64()
    for _ in range(N):
        index = _load_flags(chain_ptr + index, 0, 1, ORDER, False)[0]
    tl.store(out_ptr, clock64() - start)
    tl.store(out_ptr + 1 + tl.arange(0, 1), index.to(tl.int64))


@triton.jit(do_not_specialize=["N"])
def release_kernel(flag_ptr, scratch_ptr, out_ptr, N, STORES: tl.constexpr, THREADS: tl.constexpr):
    """``N`` grid-barrier arrivals (CTA barrier, then one thread's fence and release add), each
    after ``STORES`` coalesced int32 stores of every thread; stores the cycles taken."""
    lane = tl.arange(0, THREADS)
    start = clock64()
    for i in range(N):
        for s in tl.static_range(STORES):
            tl.store(scratch_ptr + s * THREADS + lane, lane + i)
        barrier_arrive(flag_ptr, 0)
    tl.store(out_ptr, clock64() - start)


@triton.jit
def _signal(flag_ptr, i, TAGGED: tl.constexpr):
    """Iteration ``i``'s signal: a release add (a flag), or the step ``i + 1`` written by a relaxed
    ``atom.exch`` (a tagged word, :func:`rnnbench.kernels.tagged_exchange.publish_tagged`)."""
    if TAGGED:
        tl.atomic_xchg(flag_ptr, i + 1, sem="relaxed", scope="gpu")
    else:
        tl.atomic_add(flag_ptr, 1, sem="release", scope="gpu")


@triton.jit
def _seen(flag_ptr, ORDER: tl.constexpr, TAGGED: tl.constexpr):
    """One poll of a flag (a load in ``ORDER``) or of a tagged word (a volatile load, as the
    tagged exchange's)."""
    if TAGGED:
        return tl.max(tl.load(flag_ptr, volatile=True), 0)
    else:
        return tl.max(_load_flags(flag_ptr, 0, 1, ORDER, False)[0], 0)


@triton.jit(do_not_specialize=["N", "timeout_ns"])
def ping_pong_kernel(flags_ptr, out_ptr, N, timeout_ns, ORDER: tl.constexpr, TAGGED: tl.constexpr = False):
    """Two programs: in iteration ``i`` program 0 signals (release add on program 1's flag, or with
    ``TAGGED`` the step written into it, :func:`_signal`) and waits until its own flag passes
    ``i``; program 1 waits, then signals back. Program 0 stores the cycles taken into ``out[0]``;
    each program raises ``out[1 + program]`` to 1 if a wait gave up (after ``timeout_ns``; the flag
    stays set over later launches) and stores its SM into ``out[3 + program]``."""
    me = tl.program_id(0)
    mine = flags_ptr + me * LINE + tl.arange(0, 1)
    theirs = flags_ptr + (1 - me) * LINE
    late = 0
    start = clock64()
    for i in range(N):
        if me == 0:
            _signal(theirs, i, TAGGED)
        began = globaltimer()
        seen = _seen(mine, ORDER, TAGGED)
        while (seen <= i) & (late == 0):
            seen = _seen(mine, ORDER, TAGGED)
            if globaltimer() - began > timeout_ns:
                late = 1
        if me == 1:
            _signal(theirs, i, TAGGED)
    if me == 0:
        tl.store(out_ptr, clock64() - start)
    tl.atomic_max(out_ptr + 1 + me, late.to(tl.int64))
    tl.store(out_ptr + 3 + me, smid().to(tl.int64))


@triton.jit(do_not_specialize=["N"])
def cta_barrier_kernel(out_ptr, N):
    """``N`` CTA barriers; stores the cycles taken."""
    start = clock64()
    for _ in range(N):
        tl.debug_barrier()
    tl.store(out_ptr, clock64() - start)


@gluon.jit(do_not_specialize=["N"])
def handover_kernel(out_ptr, N, TILES: gl.constexpr):
    """``N`` hand-overs of ``TILES`` state tiles as the tagged loader makes them (see the module
    docstring's ``handover``); stores the cycles taken."""
    layout: gl.constexpr = gl.BlockedLayout(size_per_thread=[1, 4], threads_per_warp=[4, 8], warps_per_cta=[4, 1],
                                            order=[1, 0])
    lane = gl.arange(0, 32, layout=gl.BlockedLayout(size_per_thread=[1], threads_per_warp=[32], warps_per_cta=[4],
                                                    order=[0]))
    pairs = (gl.expand_dims(gl.arange(0, 16, layout=gl.SliceLayout(1, layout)), 1) * 32
             + gl.expand_dims(gl.arange(0, 32, layout=gl.SliceLayout(0, layout)), 0))
    tiles = gl.allocate_shared_memory(gl.int32, [TILES, 16, 32], PAIRS_LAYOUT)
    bar = gl.allocate_shared_memory(gl.int64, [1, 1], mbarrier.MBarrierLayout())
    mbarrier.init(bar.index(0), count=1)
    fence_async_shared()
    start = gl.max(gluon_clock64(lane), axis=0)
    for i in range(N):
        for t in gl.static_range(TILES):
            tiles.index(t).store(pairs + i)  # a new value every iteration: the stores stay in the loop
        fence_async_shared()
        cta_barrier()
        mbarrier.arrive(bar.index(0))
        mbarrier.wait(bar.index(0), i % 2)
    cycles = gl.max(gluon_clock64(lane), axis=0) - start
    mbarrier.invalidate(bar.index(0))
    gl.store(out_ptr + lane * 0, cycles + lane * 0)


@gluon.jit
def _cluster_rank(like):
    """``%cluster_ctarank``: this CTA's place in its cluster, one per element of ``like``."""
    return gl.inline_asm_elementwise("mov.u32 $0, %cluster_ctarank;", "=r,r", [like], dtype=gl.int32, is_pure=True,
                                     pack=1)


@gluon.jit
def _cluster_barrier(like):
    """Every thread of every CTA of the cluster arrives (release: this thread's writes before it are
    visible to the cluster) and waits (acquire). ``like`` must hold one element per thread, so each
    thread arrives once. Returns ``like`` (inline asm needs a result)."""
    return gl.inline_asm_elementwise("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;"
                                     "\nmov.b32 $0, $1;", "=r,r", [like], dtype=gl.int32, is_pure=False, pack=1)


@gluon.jit(do_not_specialize=["N"])
def cluster_barrier_kernel(scratch_ptr, out_ptr, N, STORES: gl.constexpr, THREADS: gl.constexpr,
                           layout: gl.constexpr):
    """``N`` cluster barriers (:func:`_cluster_barrier`) of a one-cluster launch, each after ``STORES``
    coalesced int32 stores of every thread into ``scratch`` (its CTA's rows); the cluster's first
    CTA stores the cycles taken. ``layout``: one element per thread of the ``THREADS``, with the
    launch's CTAs in its ``cga_layout`` (every CTA holding the whole tensor); built by the host,
    since Triton 3.6 cannot compare layouts whose CTA bases were written in a kernel."""
    lane = gl.arange(0, THREADS, layout=layout)
    rank = _cluster_rank(lane)
    start = gl.max(gluon_clock64(lane), axis=0)
    for i in range(N):
        for s in gl.static_range(STORES):
            gl.store(scratch_ptr + (rank * STORES + s) * THREADS + lane, lane + i)
        lane = _cluster_barrier(lane)
    cycles = gl.max(gluon_clock64(lane), axis=0) - start
    gl.store(out_ptr + lane * 0, cycles + lane * 0, mask=(rank == 0) & (lane == 0))


@gluon.jit(do_not_specialize=["N"])
def tma_copy_kernel(desc, out_ptr, N):
    """``N`` TMA copies of ``desc``'s box from its tensor's origin into shared memory, each armed,
    issued and waited for on one mbarrier; stores the cycles taken. One warp: with more, Triton puts
    CTA barriers around the mbarrier's arming and wait (2-3 a copy), which the copy's fixed cost
    would then include."""
    layout: gl.constexpr = gl.BlockedLayout(size_per_thread=[1], threads_per_warp=[32], warps_per_cta=[1], order=[0])
    lane = gl.arange(0, 32, layout=layout)
    smem = gl.allocate_shared_memory(desc.dtype, desc.block_type.shape, desc.layout)
    bar = gl.allocate_shared_memory(gl.int64, [1, 1], mbarrier.MBarrierLayout())
    mbarrier.init(bar.index(0), count=1)
    fence_async_shared()
    start = gl.max(gluon_clock64(lane), axis=0)
    for i in range(N):
        mbarrier.expect(bar.index(0), desc.block_type.nbytes)
        tma_load(desc, [0, 0, 0], bar.index(0), smem)
        mbarrier.wait(bar.index(0), i % 2)
    cycles = gl.max(gluon_clock64(lane), axis=0) - start
    mbarrier.invalidate(bar.index(0))
    gl.store(out_ptr + lane * 0, cycles + lane * 0)


@gluon.jit(do_not_specialize=["N"])
def hgmma_kernel(w_ptr, out_ptr, N, BLOCK_B: gl.constexpr, TILES: gl.constexpr, SHARED_TILES: gl.constexpr,
                 CHAINS: gl.constexpr = 1):
    """``N`` products of ``4 * TILES`` warpgroup MMAs ``64 x BLOCK_B x 16`` (float32 accumulators; B,
    ``(BLOCK_B, 64)`` tiles, in shared memory; A, ``(64, 64)`` tiles of ``w_ptr``, the first
    ``SHARED_TILES`` in shared memory and the rest in registers), each waited for and added to a
    running sum (so no product is dead code); stores the cycles taken. ``CHAINS=1``: one chain, the
    shared tiles' MMAs first (:func:`rnnbench.kernels.gluon_lstm.tile_mma` each); ``CHAINS=2``: the
    Gluon forward's two chains (:func:`rnnbench.kernels.gluon_lstm.two_chain_product`, its code). The operands' values do not
    matter to the timing (shared memory is not initialised)."""
    acc_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                         instr_shape=[16, BLOCK_B, 16])
    a_layout: gl.constexpr = gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=16)
    lane_layout: gl.constexpr = gl.BlockedLayout(size_per_thread=[1], threads_per_warp=[32], warps_per_cta=[4],
                                                 order=[0])
    lane = gl.arange(0, 32, layout=lane_layout)
    w_smem = gl.allocate_shared_memory(w_ptr.dtype.element_ty, [max(SHARED_TILES, 1), 64, 64], a_layout)
    h_smem = gl.allocate_shared_memory(w_ptr.dtype.element_ty, [TILES, BLOCK_B, 64], a_layout)
    h_tiles = ()
    for k in gl.static_range(TILES):
        h_tiles = h_tiles + (h_smem.index(k),)
    w_regs = ()
    operand: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=acc_layout, k_width=2)
    rows = gl.expand_dims(gl.arange(0, 64, layout=gl.SliceLayout(1, operand)), 1)
    columns = gl.expand_dims(gl.arange(0, 64, layout=gl.SliceLayout(0, operand)), 0)
    for k in gl.static_range(SHARED_TILES, TILES):
        w_regs = w_regs + (gl.load(w_ptr + (k * 64 + rows) * 64 + columns),)
    total = gl.zeros([64, BLOCK_B], gl.float32, acc_layout)
    start = gl.max(gluon_clock64(lane), axis=0)
    for _ in range(N):
        if CHAINS == 2:
            total += two_chain_product(w_smem, w_regs, h_tiles, acc_layout, BLOCK_B, TILES, SHARED_TILES, True)
        else:
            acc = warpgroup_mma_init(gl.zeros([64, BLOCK_B], gl.float32, acc_layout))
            for k in gl.static_range(TILES):
                acc = tile_mma(acc, w_smem, w_regs, h_tiles, k, SHARED_TILES, TILES, True)
            total += warpgroup_mma_wait(0, deps=(acc,))
    cycles = gl.max(gluon_clock64(lane), axis=0) - start
    gl.store(out_ptr + lane * 0, cycles + lane * 0)
    gl.store(out_ptr + 1 + lane * 0, gl.sum(gl.sum(total, axis=1), axis=0).to(gl.int64) + lane * 0)


#: one warp's ``mma.sync`` of a 16 x 8 x 16 tile, bf16 into float32, as the plain kernels' ``tl.dot``
#: compiles (``HMMA.16816.F32.BF16``): outputs ``$0-$3`` the accumulator, inputs A ``$4-$7``, B
#: ``$8-$9`` and the accumulator tied to the outputs
MMA_SYNC: tl.constexpr = tl.constexpr(
    "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {$0, $1, $2, $3}, {$4, $5, $6, $7}, {$8, $9}, "
    "{$10, $11, $12, $13};")


@triton.jit
def _mma_sync(a0, a1, a2, a3, b0, b1, acc):
    """``acc`` (a tuple of four float32 registers a thread) plus one warp's 16 x 8 x 16 product of the
    bf16 pairs ``a0-a3`` (A) and ``b0, b1`` (B), each thread holding its fragment of them."""
    return tl.inline_asm_elementwise(MMA_SYNC, "=f,=f,=f,=f,r,r,r,r,r,r,0,1,2,3",
                                     [a0, a1, a2, a3, b0, b1, acc[0], acc[1], acc[2], acc[3]],
                                     dtype=(tl.float32, tl.float32, tl.float32, tl.float32), is_pure=True, pack=1)


@triton.jit(do_not_specialize=["N"])
def hmma_kernel(out_ptr, N, CHAINS: tl.constexpr, DEPTH: tl.constexpr, THREADS: tl.constexpr):
    """``N`` iterations of ``CHAINS`` independent accumulators each taking ``DEPTH`` warp ``mma.sync``
    (:func:`_mma_sync`) in turn, issued round robin (chain 0, 1, ..., 0, 1, ...), in every warp of
    ``THREADS / 32``; A and B the same registers throughout (their values, from the thread's index,
    do not matter to the timing). Stores the cycles taken into ``out[0]`` and each thread's sum of
    its accumulators into ``out[1:]`` (so no product is dead code)."""
    lane = tl.arange(0, THREADS)
    a0, a1, a2, a3 = lane * 3 + 1, lane * 5 + 2, lane * 7 + 3, lane * 11 + 4
    b0, b1 = lane * 13 + 5, lane * 17 + 6
    accs = ()
    for j in tl.static_range(CHAINS):  # distinct starts: no two chains are the same computation
        first = (lane + j).to(tl.float32)
        accs = accs + ((first, first, first, first),)
    start = clock64()
    for _ in range(N):
        for _d in tl.static_range(DEPTH):
            issued = ()
            for j in tl.static_range(CHAINS):
                issued = issued + (_mma_sync(a0, a1, a2, a3, b0, b1, accs[j]),)
            accs = issued
    cycles = clock64() - start
    total = tl.zeros([THREADS], tl.float32)
    for j in tl.static_range(CHAINS):
        total += accs[j][0] + accs[j][1] + accs[j][2] + accs[j][3]
    tl.store(out_ptr + lane * 0, cycles + lane * 0)
    tl.store(out_ptr + 1 + lane, total.to(tl.int64))


# ---- probes ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Probe:
    """One probe: ``build()`` makes its buffers once and returns ``(launch, check)``:
    ``launch(iterations)`` runs its kernel and returns the output whose element 0 holds the first
    program's SM cycles, ``check()`` raises if a run went wrong (a ping-pong that gave up waiting);
    ``compile(arch)`` is the same kernel compiled for ``sm_<arch>`` (:func:`probe_sass`, which the
    model reads)."""

    name: str
    what: str
    #: primitive operations per iteration (the MMAs of a chain)
    ops: int
    num_warps: int
    build: Callable[[], tuple[Callable[[int], torch.Tensor], Callable[[], None]]]
    compile: Callable[[int], object]
    #: SASS opcodes (base names) of which one iteration executes ``marks`` on the model's path: the
    #: compiler unrolls some loops (4 loads or 4 CTA barriers per pass), so the model's estimate of
    #: one pass is divided by the passes' iterations; empty: no model estimate
    marker: tuple[str, ...]
    marks: int = 1
    gluon: bool = False
    #: iterations of the kernel's loop per measured iteration (``launch(n)`` runs ``n`` times this)
    loop_iterations: int = 1


def _compiler(kernel, signature: dict[str, str], constexprs: dict, num_warps: int, cooperative: bool = False,
              num_ctas: int = 1):
    """A compile function for :class:`Probe`: ``kernel`` (plain Triton or Gluon) compiled for
    ``sm_<arch>`` with pointers 16-byte aligned, as launched (``num_ctas``: CTAs per cluster)."""

    def compile_for(arch: int):
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
        from triton.experimental.gluon._runtime import GluonASTSource, GluonJITFunction

        full = dict(signature) | {name: "constexpr" for name in constexprs}
        attrs = {(kernel.arg_names.index(name),): [["tt.divisibility", 16]] for name, kind in full.items()
                 if kind.startswith("*")}
        gluon_kernel = isinstance(kernel, GluonJITFunction)
        options = {"num_warps": num_warps} | ({} if gluon_kernel else {"num_stages": 1})
        if cooperative:
            options["launch_cooperative_grid"] = True
        if num_ctas > 1:
            options["num_ctas"] = num_ctas
        source = (GluonASTSource if gluon_kernel else ASTSource)(kernel, full, constexprs=constexprs, attrs=attrs)
        return triton.compile(source,
                              target=GPUTarget("cuda", arch, 32), options=options)

    return compile_for


def chase_chain(words: int = CHASE_WORDS, seed: int = 0) -> torch.Tensor:
    """int32 ``(words,)``: one random cycle through the first word of every 128-byte line
    (``chain[a] = b``: the next line's first word), the other words 0. Random, so no prefetcher
    follows it; every line once, so every load is a different line."""
    lines = words // LINE.value
    if lines < 2:
        raise ValueError(f"a chase needs at least 2 lines of {LINE.value} words, got {words} words")
    order = torch.randperm(lines, generator=torch.Generator().manual_seed(seed)) * LINE.value
    chain = torch.zeros(words, dtype=torch.int32)
    chain[order] = torch.roll(order, -1).to(torch.int32)
    return chain


def _chase(order: str) -> Probe:
    def build():
        chain = chase_chain().cuda()
        out = torch.zeros(2, dtype=torch.int64, device="cuda")

        def launch(iterations: int) -> torch.Tensor:
            chase_kernel[(1,)](chain, out, iterations, ORDER=POLL_ORDERS[order], num_warps=1, num_stages=1)
            return out

        return launch, lambda: None

    return Probe(f"load_{order}", f"dependent ld.{order}.gpu of L2-resident lines", 1, 1, build,
                 _compiler(chase_kernel, {"chain_ptr": "*i32", "out_ptr": "*i64", "N": "i32"},
                                {"ORDER": POLL_ORDERS[order]}, 1), ("LDG",))


def _release(stores: int, num_warps: int = 4) -> Probe:
    threads = 32 * num_warps

    def build():
        flag = torch.zeros(LINE.value, dtype=torch.int32, device="cuda")
        scratch = torch.zeros(max(stores, 1) * threads, dtype=torch.int32, device="cuda")
        out = torch.zeros(1, dtype=torch.int64, device="cuda")

        def launch(iterations: int) -> torch.Tensor:
            release_kernel[(1,)](flag, scratch, out, iterations, STORES=stores, THREADS=threads, num_warps=num_warps,
                                 num_stages=1)
            return out

        return launch, lambda: None

    return Probe(f"release_s{stores}", f"CTA barrier + fence + release add after {stores} stores per thread",
                 1, num_warps, build,
                 _compiler(release_kernel, {"flag_ptr": "*i32", "scratch_ptr": "*i32", "out_ptr": "*i64",
                                                 "N": "i32"}, {"STORES": stores, "THREADS": threads}, num_warps),
                 _ATOMICS)


def _ping_pong(tagged: bool = False) -> Probe:
    order = POLL_ORDERS["acquire"]
    timeout = int(BARRIER_TIMEOUT_NS.value)
    name = "ping_pong_tagged" if tagged else "ping_pong"

    def build():
        flags = torch.zeros(2 * LINE.value, dtype=torch.int32, device="cuda")
        out = torch.zeros(5, dtype=torch.int64, device="cuda")

        def launch(iterations: int) -> torch.Tensor:
            flags.zero_()
            ping_pong_kernel[(2,)](flags, out, iterations, timeout, ORDER=order, TAGGED=tagged, num_warps=1,
                                   num_stages=1, launch_cooperative_grid=True)
            return out

        def check():
            late, sms = out[1:3].tolist(), out[3:5].tolist()
            if any(late):
                raise RuntimeError(f"{name}: a program gave up waiting after {timeout} ns in some launch (the two "
                                   "programs were not co-resident, or a signal was lost)")
            if sms[0] == sms[1]:
                raise RuntimeError(f"{name}: both programs ran on SM {sms[0]}: no signal crossed between SMs")

        return launch, check

    how = "relaxed atom.exch of the step, volatile poll" if tagged else "release add, acquire poll"
    return Probe(name, f"two programs signal each other in turn ({how}): two one-way signals", 2, 1, build,
                 _compiler(ping_pong_kernel, {"flags_ptr": "*i32", "out_ptr": "*i64", "N": "i32",
                                                   "timeout_ns": "i32"}, {"ORDER": order, "TAGGED": tagged}, 1, True),
                 ())


def cluster_layout(ctas: int, num_warps: int) -> gl.BlockedLayout:
    """One element per thread of ``num_warps`` warps, every one of a cluster's ``ctas`` CTAs holding
    all of it (``cga_layout``: ``log2(ctas)`` zero bases)."""
    if ctas < 2 or ctas & (ctas - 1):
        raise ValueError(f"a cluster probe needs a power of two of at least 2 CTAs, got {ctas}")
    return gl.BlockedLayout(size_per_thread=[1], threads_per_warp=[32], warps_per_cta=[num_warps], order=[0],
                            cga_layout=[[0]] * (ctas.bit_length() - 1))


def _cluster_barrier_probe(ctas: int, stores: int = 0, num_warps: int = 4) -> Probe:
    threads = 32 * num_warps
    layout = cluster_layout(ctas, num_warps)
    constexprs = {"STORES": stores, "THREADS": threads, "layout": layout}

    def build():
        scratch = torch.zeros(ctas * max(stores, 1) * threads, dtype=torch.int32, device="cuda")
        out = torch.zeros(1, dtype=torch.int64, device="cuda")

        def launch(iterations: int) -> torch.Tensor:
            cluster_barrier_kernel[(1,)](scratch, out, iterations, **constexprs, num_warps=num_warps, num_ctas=ctas)
            return out

        return launch, lambda: None

    suffix = f"_s{stores}" if stores else ""
    return Probe(f"cluster_barrier_{ctas}{suffix}", f"cluster barrier (arrive.release, wait.acquire) of {ctas} CTAs"
                 + (f" after {stores} store per thread" if stores else ""), 1, num_warps, build,
                 _compiler(cluster_barrier_kernel, {"scratch_ptr": "*i32", "out_ptr": "*i64", "N": "i32"}, constexprs,
                           num_warps, num_ctas=ctas), (), gluon=True)


def _cta_barrier(num_warps: int = 4, per_iteration: int = 64) -> Probe:
    def build():
        out = torch.zeros(1, dtype=torch.int64, device="cuda")

        def launch(iterations: int) -> torch.Tensor:
            cta_barrier_kernel[(1,)](out, iterations * per_iteration, num_warps=num_warps, num_stages=1)
            return out

        return launch, lambda: None

    # one barrier (~20 cycles) per iteration would leave 1000 iterations ~10 µs apart from 2000,
    # within a launch's jitter on the CUDA events: an iteration is 64 of them
    return Probe("cta_barrier", f"{per_iteration} bar.sync of {num_warps} warps", per_iteration, num_warps, build,
                 _compiler(cta_barrier_kernel, {"out_ptr": "*i64", "N": "i32"}, {}, num_warps), ("BAR",),
                 loop_iterations=per_iteration)


#: state tiles of the hand-over probe: the anchor's (H=768, 64 columns a tile)
HANDOVER_TILES = 12


def _handover(tiles: int = HANDOVER_TILES) -> Probe:
    def build():
        out = torch.zeros(1, dtype=torch.int64, device="cuda")

        def launch(iterations: int) -> torch.Tensor:
            handover_kernel[(1,)](out, iterations, TILES=tiles, num_warps=4)
            return out

        return launch, lambda: None

    return Probe("handover", f"the tagged loader's hand-over: {tiles} tiles stored, fence.proxy.async, CTA barrier, "
                 "mbarrier arrival and wait (4 warps)", 1, 4, build,
                 _compiler(handover_kernel, {"out_ptr": "*i64", "N": "i32"}, {"TILES": tiles}, 4), ("FENCE",),
                 gluon=True)


def _tma(tiles: int) -> Probe:
    box = tma_box(tiles)

    def build():
        from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

        from rnnbench.kernels.gluon_lstm import shared_layout

        source = torch.randn(tiles, 4 * TMA_ROWS, K_TILE, device="cuda").to(torch.bfloat16)
        desc = TensorDescriptor(source, list(source.shape), list(source.stride()), box,
                                shared_layout(box, torch.bfloat16))
        out = torch.zeros(1, dtype=torch.int64, device="cuda")

        def launch(iterations: int) -> torch.Tensor:
            tma_copy_kernel[(1,)](desc, out, iterations, num_warps=1)
            return out

        return launch, lambda: None

    def compile_for(arch: int):
        from rnnbench.kernels.gluon_lstm import shared_layout

        layout = shared_layout(box, torch.bfloat16)
        return _compiler(tma_copy_kernel, {"desc": f"tensordesc<bf16[{', '.join(map(str, box))}],{layout!r}>",
                                                "out_ptr": "*i64", "N": "i32"}, {}, 1)(arch)

    return Probe(f"tma_{tiles}", f"TMA copy of a ({tiles}, {TMA_ROWS}, {K_TILE}) bf16 box, {tiles * 2} KiB, "
                 "armed, issued, waited for (one warp)", 1, 1, build, compile_for, ("UTMALDG",), gluon=True)


#: where the probes' MMAs find A: the number of its tiles in shared memory (the rest in registers)
HGMMA_SHARED_TILES = {"shared": HGMMA_TILES, "registers": 0, "mixed": HGMMA_TILES // 2}


def _hgmma(where: str, block_b: int, chains: int = 1) -> Probe:
    constexprs = {"BLOCK_B": block_b, "TILES": HGMMA_TILES, "SHARED_TILES": HGMMA_SHARED_TILES[where], "CHAINS": chains}

    def build():
        weights = torch.randn(HGMMA_TILES * 64, 64, device="cuda").to(torch.bfloat16)
        out = torch.zeros(2, dtype=torch.int64, device="cuda")

        def launch(iterations: int) -> torch.Tensor:
            hgmma_kernel[(1,)](weights, out, iterations, **constexprs, num_warps=4)
            return out

        return launch, lambda: None

    placed = "half in shared, half in registers" if where == "mixed" else where
    chained = "chained" if chains == 1 else "in two chains,"
    return Probe(f"hgmma_{where}_b{block_b}" + ("" if chains == 1 else "_two_chains"),
                 f"{4 * HGMMA_TILES} wgmma 64x{block_b}x16 {chained} A in {placed}, then their wait",
                 4 * HGMMA_TILES, 4, build,
                 _compiler(hgmma_kernel, {"w_ptr": "*bf16", "out_ptr": "*i64", "N": "i32"}, constexprs, 4),
                 ("HGMMA",), 4 * HGMMA_TILES, gluon=True)


#: the HMMA probes' ``(warps, chains, depth)``: one chain (the latency), the plain forward's B=16
#: product (4 warps, 4 chains) and B=64 product (8 warps, 8 chains of 12), and 8 chains with one warp
#: a scheduler (the pipe's rate at the B=16 layout's occupancy)
HMMA_SHAPES = ((4, 1, 24), (4, 4, 12), (4, 8, 12), (8, 8, 12))


def hmma_probe_name(warps: int, chains: int) -> str:
    """The name of the HMMA probe of ``chains`` chains in ``warps`` warps (``hmma_chain`` for one)."""
    return "hmma_chain" if chains == 1 else f"hmma_w{warps}_c{chains}"


def _hmma(warps: int, chains: int, depth: int) -> Probe:
    threads = 32 * warps
    constexprs = {"CHAINS": chains, "DEPTH": depth, "THREADS": threads}

    def build():
        out = torch.zeros(1 + threads, dtype=torch.int64, device="cuda")

        def launch(iterations: int) -> torch.Tensor:
            hmma_kernel[(1,)](out, iterations, **constexprs, num_warps=warps, num_stages=1)
            return out

        return launch, lambda: None

    chained = "chained" if chains == 1 else f"in {chains} chains of {depth}"
    return Probe(hmma_probe_name(warps, chains),
                 f"{chains * depth} mma.sync m16n8k16 bf16 {chained} in each of {warps} warps, operands in registers",
                 chains * depth, warps, build,
                 _compiler(hmma_kernel, {"out_ptr": "*i64", "N": "i32"}, constexprs, warps), ("HMMA",),
                 chains * depth)


def probes() -> list[Probe]:
    """Every probe, in the order they are run."""
    return ([_chase("relaxed"), _chase("acquire")] + [_release(stores) for stores in (0, 1, 4)]
            + [_ping_pong(), _ping_pong(tagged=True), _cta_barrier(), _handover()]
            + [_tma(tiles) for tiles in (1, 2, 4, 8)]
            + [_hgmma(where, block_b) for block_b in (16, 32) for where in ("shared", "registers")]
            + [_hgmma("mixed", 16), _hgmma("mixed", 16, chains=2), _hgmma("registers", 16, chains=2)]
            + [_hmma(*shape) for shape in HMMA_SHAPES]
            + [_cluster_barrier_probe(2), _cluster_barrier_probe(16), _cluster_barrier_probe(16, stores=1)])


# ---- the model's estimate ----------------------------------------------------------------------------

def probe_sass(probe: Probe, arch: int) -> str:
    """SASS of ``probe``'s kernel compiled for ``sm_<arch>`` (no GPU needed)."""
    from rnnbench.kernels.sass import disassemble

    return disassemble(probe.compile(arch).asm["cubin"])


def compiled_probe(name: str, arch: int) -> tuple[str, tuple[int, int]]:
    """``(SASS, (registers, spill bytes))`` of the probe called ``name`` for ``sm_<arch>``: a job for
    :func:`rnnbench.kernels.aot.compile_all` (its processes compile where this one interprets)."""
    from rnnbench.kernels.aot import cubin_resources
    from rnnbench.kernels.sass import disassemble

    cubin = {probe.name: probe for probe in probes()}[name].compile(arch).asm["cubin"]
    return disassemble(cubin), cubin_resources(cubin)


def model_cycles(probe: Probe, sass_text: str, arch: int = 90) -> float | None:
    """:func:`rnnbench.kernels.cost.simulate` of one iteration of ``probe``'s loop (its SASS), one
    program of ``probe.num_warps`` warps alone on its SM (a TMA probe's box at the SM's share of
    L2 bandwidth); None for a probe without a :attr:`Probe.marker` (the ping-pongs: the model
    simulates one program, and an iteration is the two programs' signals in turn; the cluster
    barriers: the model has no entry for them)."""
    from rnnbench.kernels.cost import DEVICES, LATENCIES, WarpContext, simulate
    from rnnbench.kernels.sass import loop_path, parse

    if not probe.marker:
        return None
    device = DEVICES[arch]
    box_bytes = tma_copy_bytes(probe.name) if probe.name.startswith("tma_") else 0.0
    context = WarpContext(warps_per_scheduler=math.ceil(probe.num_warps / 4), warps_per_sm=probe.num_warps,
                          l2_bytes_per_clock=device.sm_l2_bytes_per_clock, hbm_bytes_per_clock=device.hbm_bytes_per_clock,
                          mma_fma_per_clock=device.mma_fma_per_clock, latencies=LATENCIES[arch],
                          tma_box_bytes=box_bytes, programs_per_sm=1)
    path = loop_path(parse(sass_text))
    marks = sum(1 for ins in path.instructions if ins.base in probe.marker)
    if marks == 0 or marks % probe.marks:
        raise ValueError(f"{probe.name}: {marks} of {'/'.join(probe.marker)} in the loop, expected a multiple of "
                         f"{probe.marks} (one iteration's)")
    cycles, _ = simulate(path, context)
    return cycles * probe.marks / marks * probe.loop_iterations


# ---- measuring ------------------------------------------------------------------------------------

def cycles_per_iteration(launch: Callable[[int], torch.Tensor], iterations: int, repeats: int) -> float:
    """Median slope of the in-kernel cycle count (``launch(n)[0]``) between ``n = iterations`` and
    ``2 * iterations``."""
    slopes = []
    for _ in range(repeats):
        counts = []
        for n in (iterations, 2 * iterations):
            counts.append(int(launch(n)[0].item()))
        slopes.append((counts[1] - counts[0]) / iterations)
    return statistics.median(slopes)


def measure(probe: Probe, iterations: int = 1000, repeats: int = 11, model: float | None = None) -> dict:
    """One CSV row of ``probe`` (see the module docstring) on the current GPU."""
    launch, check = probe.build()
    median, q25, q75 = slope_us(launch, iterations, repeats)
    torch.cuda.synchronize()
    check()
    cycles = cycles_per_iteration(launch, iterations, max(3, repeats // 2))
    check()
    ns = median * 1000.0
    return {"device_name": torch.cuda.get_device_name(), "probe": probe.name, "what": probe.what,
            "iterations": iterations, "ops_per_iteration": probe.ops, "ns_per_iteration": round(ns, 2),
            "q25_ns": round(q25 * 1000.0, 2), "q75_ns": round(q75 * 1000.0, 2),
            "cycles_per_iteration": round(cycles, 1), "clock_ghz": round(cycles / ns, 3) if ns > 0 else math.nan,
            "model_cycles": None if model is None else round(model, 1),
            "measured_over_model": None if not model else round(cycles / model, 2),
            "ns_per_op": round(ns / probe.ops, 2), "cycles_per_op": round(cycles / probe.ops, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rnnbench.kernels.latency_probe", description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--out", help="CSV file to write (measures on the GPU)")
    action.add_argument("--render", help="a CSV this command wrote: print its Markdown table")
    action.add_argument("--adopt", metavar="CSV", help="a CSV this command wrote: write its measured entries as the "
                        "cost model's latency table (--table-file)")
    parser.add_argument("--table-file", help="with --adopt: the JSON to write (default "
                        "reports/aot/cost-latencies-sm_90.json, which the cost model reads)")
    parser.add_argument("--probes", default="", help="comma-separated probe names (default: all)")
    parser.add_argument("--iterations", type=int, default=1000, help="iterations per launch (N; the slope uses N and 2N)")
    parser.add_argument("--repeats", type=int, default=11, help="timed pairs of launches per probe")
    args = parser.parse_args(argv)
    if args.render:
        with open(args.render, newline="") as handle:
            sys.stdout.write(render(list(csv.DictReader(handle))))
        return 0
    if args.adopt:
        from rnnbench.kernels.cost import latency_table_path

        with open(args.adopt, newline="") as handle:
            rows = list(csv.DictReader(handle))
        path = args.table_file or latency_table_path(90)
        try:
            data = adopt(rows, path)
        except ValueError as error:
            print(f"latency_probe: {error}", file=sys.stderr)
            return 1
        print(f"wrote {path}: {data['entries']}" + (f"; rejected {data['rejected']}" if data["rejected"] else ""))
        return 0
    known = {probe.name: probe for probe in probes()}
    names = [name.strip() for name in args.probes.split(",") if name.strip()] or list(known)
    unknown = [name for name in names if name not in known]
    if unknown:
        parser.error(f"unknown probe(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if args.iterations < 1 or args.repeats < 2:
        parser.error(f"--iterations must be >= 1 and --repeats >= 2, got {args.iterations} and {args.repeats}")
    if not torch.cuda.is_available():
        print("latency_probe: needs a CUDA GPU (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    major, minor = torch.cuda.get_device_capability()
    arch = 10 * major + minor
    written = 0
    with open(args.out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for name in names:
            probe = known[name]
            if probe.gluon and arch != 90:
                print(f"{name}: skipped, a Gluon probe for sm_90 (this GPU is sm_{arch})", file=sys.stderr)
                continue
            try:
                try:
                    model = model_cycles(probe, probe_sass(probe, arch), arch)
                except Exception as error:  # the model's estimate is optional; the measurement is not
                    print(f"{name}: no model estimate ({type(error).__name__}: {error})", file=sys.stderr)
                    model = None
                row = measure(probe, args.iterations, args.repeats, model)
            except Exception as error:
                print(f"{name}: {type(error).__name__}: {error}", file=sys.stderr)
                continue
            writer.writerow(row)
            handle.flush()
            written += 1
            print(f"{name}: {row['ns_per_iteration']} ns, {row['cycles_per_iteration']} cycles per iteration "
                  f"(model {row['model_cycles']})")
    print(f"wrote {written} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
