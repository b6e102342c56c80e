"""Per-step cost of the recurrent kernels, estimated from their compiled SASS without a GPU.

For each goal shape (cell, dtype, hidden size H, batch B), direction (``fwd``: inference forward,
``fwd_train``: forward that saves gates, ``bwd``: reverse-time backward) and path the planner can
take, the kernel is compiled as it runs (:func:`rnnbench.kernels.aot.compile_sass`: pointers and an
``H`` divisible by 16 specialised), the instructions one time step executes are found in its SASS
(:func:`rnnbench.kernels.sass.step_path`: the time loop's body, or the whole kernel for the
``stepwise`` path's one launch per step) and counted (:func:`rnnbench.kernels.sass.count`), and
their time is estimated by :func:`simulate`:

* **One warp, in order.** The step's instructions issue in program order; each waits until the
  registers it reads are written (its producers' latency, below), the warps sharing its scheduler
  get their turn (one instruction per cycle per scheduler, 4 schedulers per SM; the warps of a
  program run the same code, so a warp issues every ``ceil(warps per SM / 4)`` cycles), and
  ``BAR.SYNC`` / ``MEMBAR`` / taken branches hold the next instruction for their latency
  (``BAR`` also until this warp's shared-memory stores have landed, ``MEMBAR.GPU`` until its global
  stores are acknowledged).
* **Shared units.** Tensor cores and special-function units per scheduler, the shuffle unit, shared
  memory (128 B/clock) and the SM's share of L2 bandwidth per SM, are *channels*: a warp's
  instruction is served after the same instruction of every warp that shares the unit (the warps
  are symmetric), so e.g. 24 ``LDSM.x4`` of 8 warps occupy shared memory for 24 x 8 x 4 cycles
  without bank conflicts. With them each matrix takes more wavefronts, which the SASS does not show
  and the kernel's TTGIR does (:func:`rnnbench.kernels.shared_layouts.extra_wavefronts`, spread
  evenly over the step's ``LDSM``): the held weights of the plain LSTM forward in 32-row blocks
  took 8 a matrix under Triton 3.6 before they were loaded rows-first, and the model then puts
  the ``mma`` ablation variant at H=768 B=64 at 3.98 µs a step against 3.84 measured on the H200
  (1.14 without the conflicts).
  Global loads return in order within their latency class: L2 hits and HBM misses are two channels
  sharing the SM's bandwidth, so an L2 hit issued after an HBM miss is not held behind the miss's
  latency (the L2 serves hits while misses are outstanding).
* **Asynchronous copies and warpgroup MMAs** (the Gluon kernel, :mod:`rnnbench.kernels.gluon_lstm`):
  a TMA copy (``UTMALDG``, one per program) takes the L2 round trip plus its box's bytes at the
  SM's share of L2 bandwidth, and the k-th mbarrier wait (``SYNCS...TRYWAIT``) of a step holds its
  predicate until the k-th copy has landed; ``cp.async`` (``LDGSTS``) is an HBM load that
  ``DEPBAR.LE SB0`` waits for; warpgroup MMAs (``HGMMA``) that accumulate into the same registers
  follow each other through the tensor pipe without waiting for each other's result, and
  ``WARPGROUP.DEPBAR`` waits for the last. A warpgroup MMA also streams its shared-memory operands
  through the SM's shared-memory channel (:func:`rnnbench.kernels.sass.hgmma_shared_bytes`: B, and
  A unless it comes from registers), so ``64x16x16`` with both operands there takes 2.5 KiB / 128 B
  = 20 cycles of it, more than its tensor-pipe cycles (the H200 profile of the Gluon forward at
  H=768, B=16: its 48 such MMAs took ~800 cycles a step).
* **Loop steady state.** Three iterations are simulated; the step is the third minus the second,
  so values carried across steps (prefetches) are accounted for.
* **Grid barrier.** The poll loop's body is on the path once; an acquire poll load
  (``LDG.STRONG`` then ``CCTL.IVALL``) is one L2 round trip, and the invalidation waits for its
  load, so acquire loads follow one another (relaxed poll loads overlap, and the one fence after
  them waits for nothing outstanding). The step ablation's barrier alone (``sync``, H200, H=768
  B=16, 96 programs: 1.84 µs, when a poll was five acquire loads, the status word's included)
  says the chain is real. The barrier's timeout report is not on the path (it runs only on a hung
  launch: :func:`rnnbench.kernels.sass.step_path`). Added outside the
  warp: the arrivals of all programs on one counter serialise at L2 (``barrier_arrival`` cycles
  each) and a waiting program notices the last arrival half a poll period late on average. The
  queue of every polling warp's requests at the flags' lines (:func:`poll_line_queue`, producers x
  :func:`polling_warps`) is modelled but costed 0 until a GPU confirms its fit
  (:data:`POLL_LINE_FIT`).
* **Tagged exchange** (:mod:`rnnbench.kernels.tagged_exchange`): no barrier; the wait's poll loop
  (a reload of the state's words) is on the path once, i.e. a step's first load of the state finds
  some words stale and the second finds them all fresh, plus the half poll period of discovery;
  no arrivals (no release fence, every word is its own arrival). In the Gluon forward the wait is
  a loader warp's (:func:`rnnbench.kernels.sass.loader_path`), simulated on its own: from its wait
  for the recurrence's arrival on ``h_free`` (after the publish) to its arrival on the state's
  mbarrier (first load, one reload, the stores into the MMAs' tiles), plus half a round trip for
  the publish to reach L2 and the half poll period (a round trip, plus the reduction's CTA barriers
  where the loader's path has any: the one-warp loaders have none), is how long after the
  recurrence's arrival its wait for the state completes (:func:`loader_handoffs`,
  :class:`Handoff`). So the recurrence's work after its arrival (the next step's ``xg`` copies,
  the loop's CTA barrier) and the loader's before its wait (its own CTA barrier) overlap the
  other's; until 2026-11-28 the loader's whole step was added to the recurrence's, which counted
  them twice (~0.08 µs a step at the anchor with Triton 3.6). A masked reload is charged the bytes of every
  word it could load. The one reload is the heaviest path's assumption, not a measurement: with
  compact words (the Gluon loaders') a step whose first load finds the state complete runs ~260
  loader instructions at H=768 where the reload path runs ~680. ``first_load_complete`` estimates
  that step instead (the loader's heaviest path that never reads the clock), and the kernel logs
  how often it polled
  again (:func:`rnnbench.kernels.step_bench.extra_polls`): a GPU run's rate puts the step between
  the two (:func:`rnnbench.harness.ablation_report.extra_polls`). The cost table's tagged rows are
  read at the measured rate, :data:`TAGGED_RELOADS_PER_STEP` (:func:`at_reload_rate`).
* **Stepwise path.** One launch per step: ``max(host launch, launch gap + waves x kernel)``.
* **Around the recurrence**, per step of a ``seq_len``-step call: the input-projection GEMM (and for
  ``bwd`` the GEMMs for ``dx``, ``dW_ih``, ``dW_hh``) at ``gemm_tflops``, and a fixed per-call
  overhead (launches, allocation, autograd) over ``seq_len`` steps, so the estimate is comparable
  with the measured latency of one call divided by T.

Every cycle of the step is attributed to one term (:data:`TERMS`): the issue slot, or the kind of
instruction (or unit) the warp waited for. The estimate is their sum, optionally multiplied by
per-term factors fitted to measurements (:mod:`rnnbench.kernels.calibration`). One exception: the
recurrence's wait for the Gluon tagged exchange's loader beyond its own poll (the part of the
loader's chain its own work does not overlap: the loader's instructions, the publish's way to L2,
its discovery and pause) is one term, ``loader``, whatever the loader's instructions wait for, so
that calibration scales the loader warps' chain apart from the recurrence's: fitted with the recurrence's factors, inflated
by the barrier kernels' rows, it put the one-loader kernel at H=768 B=16 at 2.93 µs against the
2.36 measured (raw: 2.20; H200, 7caf667).

**Latency table** (cycles at the SM clock; H100 SXM = sm_90, 1.755 GHz as in the static review;
the SXM's maximum boost is 1.98 GHz, which calibration absorbs; A100 SXM = sm_80 at 1.41 GHz):

====================  ======  ======  ===============================================================
what                  sm_90   sm_80   source / reasoning
====================  ======  ======  ===============================================================
FP32/INT ALU          4       4       dependent-issue latency; [AB22] measured 4 on A100, [LU24] same
                                      on Hopper
MUFU (ex2, rcp)       18      18      [AB22]; 16 results/clock/SM ([CG] throughput table): a warp
                                      instruction holds its scheduler's SFUs 8 cycles
SHFL                  24      24      [AB22], [JI18]; 32 results/clock/SM ([CG])
LDS / LDSM            30 / 32 30 / 32 shared-memory load latency [LU24], [AB22]; 128 B/clock/SM
STS (until visible)   20      20      assumption (ordered before the next BAR)
BAR.SYNC              20      20      all warps already arrived; [JI18]
HMMA.16816 (16-bit)   33      33      dependent mma.sync latency [SU22], [AB22]; review: a chain of 8
                                      ~270 cycles
  tensor-pipe cycles  6       8       per HMMA.16816 per scheduler: A100 1024 dense 16-bit FMA/clock/
                                      SM; Hopper mma.sync ~2/3 of its 2048 (wgmma) [LU24]; TF32 half
HGMMA (wgmma)         128     -       result after the last of a chain (assumption); tensor-pipe cycles
                                      at mma.sync's rate above (64xNx16: 16 rows per scheduler; at
                                      wgmma's peak they would be 2/3 of that: not measured for N=16);
                                      its shared-memory operands at 128 B/clock (above)
mbarrier wait         30      -       = LDS (a shared-memory poll; assumption)
TMA copy              280+    -       L2 round trip + box bytes at the SM's share of L2 bandwidth
L2 hit (coherent)     280     250     [CC23] (H100 ~260-290 near, more for the far partition); review
HBM (first touch)     600     550     review ("xg HBM miss ~600"); [LU24] ~480-650
store acknowledged    280     250     = L2 round trip (what MEMBAR.GPU waits for)
atomic (ATOM / RED)   300     270     L2 atomic round trip [LU24]
MEMBAR.GPU            100     100     beyond waiting for the stores: assumption
CCTL.IVALL / ERRBAR   20      20      assumption; CCTL.IVALL also waits for the strong load before
                                      it (an acquire's load)
barrier arrival       4       4       per program, same-address atomics serialised at L2: assumption
                                      (the review's 96-way contention ~400 cycles)
L2 bandwidth          4.0 KB  3.4 KB  bytes/clock for the whole GPU (~7 TB/s, ~4.8 TB/s [CC23]);
                                      at most 64 B/clock into one SM
HBM bandwidth         1.7 KB  1.1 KB  bytes/clock (3.0 TB/s measured on the lent H100; 1.55 TB/s)
host launch           8 us    8 us    one Triton launch from Python: assumption, first to calibrate
launch gap            1 us    1 us    back-to-back kernels on one stream: assumption
per call              40 us   40 us   launches, allocation, autograd around one layer: assumption
GEMM rate             600/50  250/19  TFLOP/s, 16-bit / fp32 (the lent H100 ran 798 at 8192^3)
====================  ======  ======  ===============================================================

Sources: [LU24] Luo et al., "Benchmarking and Dissecting the Nvidia Hopper GPU Architecture",
arXiv:2402.13499 (2024) and arXiv:2501.12084; [AB22] Abdelkhalik et al., "Demystifying the Nvidia
Ampere Architecture through Microbenchmarking and Instruction-level Analysis", arXiv:2208.11174;
[SU22] Sun et al., "Dissecting Tensor Cores via Microbenchmarks", arXiv:2206.02874; [JI18] Jia et
al., "Dissecting the NVIDIA Volta GPU Architecture via Microbenchmarking", arXiv:1804.06826;
[CC23] Chips and Cheese, "Nvidia's H100: Funny L2, and Tons of Bandwidth" (2023); [CG] CUDA C++
Programming Guide, arithmetic-instruction throughput table; review = ../shared/research/
kernels-review.md. The values are round numbers inside the ranges these report, not one paper's
figures; they are the prior that calibration against measured µs/step replaces. Six entries
(the L2 round trips ``l2``, ``store``, ``atomic``, and ``fence``, ``bar``, ``membar``:
:data:`MEASURED_ENTRIES`) are replaced by what a GPU's
latency probes measured (:mod:`rnnbench.kernels.latency_probe`) where
``reports/aot/cost-latencies-sm_<arch>.json`` exists (:func:`latencies`); the calibration is then
fitted on top of that table and records it.

What it leaves out: instruction-cache misses, bank conflicts, the skew between programs, clock
changes under load, and memory-level effects beyond one SM's share of bandwidth. Weak global loads
are taken as HBM misses (the streamed ``xg``, ``dy``, ``c``; in the stepwise path ``W_hh`` is an L2
hit in fact, which the launch floor hides). Co-residency: programs per SM from the compiled
registers and shared memory (:func:`rnnbench.kernels.plan.programs_per_multiprocessor`, the rule the
planner applies to its resource model); a cooperative grid is co-resident when ``programs <= SMs x
programs per SM``.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from rnnbench.kernels.plan import (
    FORCED_PATHS, GATES, GLUON, HIDDEN_SPECIALISATION, LIMITS, Plan, Resources, element_size, gluon_copy_bytes,
    gluon_input_tiles, plan_recurrence, programs_per_multiprocessor,
)
from rnnbench.kernels import switches
from rnnbench.kernels.sass import (
    ASYNC_COPIES, GLOBAL_ATOMICS, GLOBAL_LOADS, GLOBAL_STORES, TMA_LOADS, Instruction, StepCounts, StepPath,
    address_offset, copier_path, count, hgmma_shared_bytes, load_sources, loader_path, parse, reads, sleep_ns,
    step_path, writes,
)

#: the estimate's terms, in the order they appear in tables
TERMS = ("issue", "alu", "mma", "smem", "shfl", "bar", "mufu", "l2_load", "dram_load", "store", "grid_sync",
         "loader", "launch", "gemm", "per_call")
#: goal shapes of the benchmark (gpu-core suite) plus B=256 where the plan allows
GOAL_HIDDEN = (64, 128, 256, 512, 768, 1024)
GOAL_BATCH = (1, 16, 64, 256)
DIRECTIONS = {"lstm": ("fwd", "fwd_train", "bwd"), "rnn": ("fwd", "bwd")}
#: the sequence length a per-call cost is spread over (the suites time T=1024)
SEQ_LEN = 1024
#: reloads a step of the tagged exchange's loader at which the cost table reads its rows (between
#: the step whose first load finds the state complete, 0, and the one-reload step, 1): what the
#: H200 measured for the one four-warp loader at H=768 B=16 (7caf667, ``extra_polls_per_step``:
#: 0.58; 0.55-0.81 over the shapes timed), where the model (raw, Triton 3.6) puts the kernel alone at
#: 2.23 µs against 2.36 measured (2.31 before the loader's step overlapped the recurrence's)
TAGGED_RELOADS_PER_STEP = 0.58


@dataclass(frozen=True)
class Device:
    """What the model needs to know about one GPU (sizes per SM; bandwidths in bytes per SM clock)."""

    name: str
    sms: int
    clock_ghz: float
    l2_bytes_per_clock: float = 4000.0
    sm_l2_bytes_per_clock: float = 64.0
    hbm_bytes_per_clock: float = 1700.0
    #: dense fused multiply-adds per clock per scheduler of mma.sync with 16-bit operands (TF32: half)
    mma_fma_per_clock: float = 2048 / 6
    gemm_tflops_16bit: float = 600.0
    gemm_tflops_fp32: float = 50.0
    host_launch_us: float = 8.0
    launch_gap_us: float = 1.0
    call_overhead_us: float = 40.0


@dataclass(frozen=True)
class Latencies:
    """Cycles from issue to the result (see the module docstring's table)."""

    alu: float = 4
    mufu: float = 18
    shfl: float = 24
    lds: float = 30
    ldsm: float = 32
    sts: float = 20
    bar: float = 20
    mma: float = 33
    hgmma: float = 128
    l2: float = 280
    dram: float = 600
    store: float = 280
    atomic: float = 300
    membar: float = 100
    fence: float = 20
    const: float = 14
    special: float = 20
    branch: float = 4
    barrier_arrival: float = 4
    #: requests a line of a grid barrier's flags takes in one poll round (producers x polling warps)
    #: before they queue at its L2 slice, the cycles each request beyond that adds to the barrier up
    #: to ``poll_line_steep`` requests, and each request beyond those (:func:`poll_line_queue`).
    #: The costs are 0 in the model: fitted to the H200 (:data:`POLL_LINE_FIT`), they cut the raw
    #: model's median error on 7caf667 from 22 to 16 % and its pairs in the wrong order from 12.4 to
    #: 9.9 %, but the held-out pairs in order fell 91.0 -> 90.5 % (79 lost, 71 won), which the
    #: calibration's rule for a model change does not allow; they wait for the step ablation's
    #: ``sync_first_warp`` against ``sync`` (KERNELS2.md, twenty-first session)
    poll_line_knee: float = 256
    poll_line_excess: float = 0.0
    poll_line_steep: float = 512
    poll_line_excess_beyond: float = 0.0
    #: cycles a warp instruction holds its unit: SFU per scheduler, shuffle per SM; shared memory bytes per clock per SM
    mufu_issue: float = 8
    shfl_issue: float = 1
    smem_bytes_per_clock: float = 128


#: the flags' line queue as the H200's barriers fit it (:func:`poll_line_queue`; cycles a request);
#: not in the model yet (see :class:`Latencies`), a what-if: ``replace(latencies(90), **POLL_LINE_FIT)``
POLL_LINE_FIT = {"poll_line_excess": 11.5, "poll_line_excess_beyond": 4.8}

DEVICES = {
    90: Device("H100 SXM", sms=132, clock_ghz=1.755),
    80: Device("A100 SXM", sms=108, clock_ghz=1.41, l2_bytes_per_clock=3400.0,
               hbm_bytes_per_clock=1100.0, mma_fma_per_clock=2048 / 8, gemm_tflops_16bit=250.0, gemm_tflops_fp32=19.0),
}
#: the prior: the table above (papers' round numbers); :func:`latencies` is what the model uses
LATENCIES = {
    90: Latencies(),
    80: Latencies(l2=250, dram=550, store=250, atomic=270),
}
#: the entries a GPU's latency probes may replace (:mod:`rnnbench.kernels.latency_probe`), each
#: within this factor of the prior either way (a probe that measured nonsense is not adopted)
MEASURED_ENTRIES = ("l2", "store", "atomic", "fence", "bar", "membar")
MEASURED_RANGE = 8.0


def latency_table_path(arch: int) -> Path:
    """``reports/aot/cost-latencies-sm_<arch>.json`` of this checkout: the entries the latency
    probes measured on a GPU (:func:`rnnbench.kernels.latency_table.adopt`), if any."""
    return Path(__file__).resolve().parent.parent / "reports" / "aot" / f"cost-latencies-sm_{arch}.json"


def measured_latencies(prior: Latencies, entries: dict[str, float]) -> Latencies:
    """``prior`` with ``entries`` (names of :data:`MEASURED_ENTRIES`) replaced; refuses other names
    and values beyond :data:`MEASURED_RANGE` times the prior either way."""
    for name, value in entries.items():
        if name not in MEASURED_ENTRIES:
            raise ValueError(f"a measured latency table may set {', '.join(MEASURED_ENTRIES)}, got {name!r}")
        base = getattr(prior, name)
        if not base / MEASURED_RANGE <= value <= base * MEASURED_RANGE:
            raise ValueError(f"measured {name} = {value} cycles is not within {MEASURED_RANGE:g}x of the prior {base}")
    return replace(prior, **entries)


def load_latencies(path: str | Path, arch: int) -> Latencies:
    """The prior of ``sm_<arch>`` with the entries of a latency-table JSON (``{"entries": {name:
    cycles}}``, as :func:`rnnbench.kernels.latency_table.adopt` writes it)."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
        raise ValueError(f"{path} is not a latency table: it needs an 'entries' object of measured cycles")
    return measured_latencies(LATENCIES[arch], data["entries"])


@functools.lru_cache(maxsize=None)
def latencies(arch: int) -> Latencies:
    """The latency table the model uses for ``sm_<arch>``: the prior (:data:`LATENCIES`), with the
    entries measured by the latency probes where :func:`latency_table_path` exists (read once per
    process)."""
    path = latency_table_path(arch)
    return load_latencies(path, arch) if path.is_file() else LATENCIES[arch]


# ---- one warp's step -------------------------------------------------------------------------

@dataclass(frozen=True)
class WarpContext:
    """Who shares the units with the simulated warp."""

    warps_per_scheduler: int
    warps_per_sm: int
    #: this SM's share of L2 -> SM bandwidth, and of HBM bandwidth, in bytes per clock
    l2_bytes_per_clock: float
    hbm_bytes_per_clock: float
    mma_fma_per_clock: float
    latencies: Latencies
    #: bytes of one TMA copy (``UTMALDG``: the box, which its SASS does not show) and the programs
    #: whose copies share this SM's bandwidth
    tma_box_bytes: float = 0.0
    programs_per_sm: int = 1
    #: shared-memory wavefronts an ``ldmatrix`` matrix of the step takes on average (1: no bank
    #: conflicts; :func:`step_estimate`'s ``ldsm_extra_wavefronts`` spread over the step's ``LDSM``)
    ldsm_wavefronts: float = 1.0


@dataclass(frozen=True)
class Handoff:
    """Another partition of the program (the tagged exchange's loader, the streamed backward's
    copier) that arrives on the mbarrier at shared offset ``arrives`` ``cycles`` after the simulated
    warps arrived on the one at ``after`` (from the issue of that arrival to the issue of its own;
    :data:`RELEASE`: after the simulated warps' release, their global atomic): the simulated
    warps' wait on ``arrives`` completes no earlier than that (:func:`simulate`)."""

    after: int
    arrives: int
    cycles: float


#: :attr:`Handoff.after` of a handoff that follows the simulated path's release (its global atomic:
#: a grid barrier's arrival) rather than one of its mbarrier arrivals
RELEASE = -1


def mbarrier_offset(ins: Instruction) -> int | None:
    """The immediate offset in the shared-memory address of an mbarrier instruction (``SYNCS``:
    ``[UR8+0x13900]``, ``[R12+URZ+0x13900]``; 0 where the address has none), which names the
    mbarrier across the kernel's partitions (their base registers differ, their offsets do not);
    None for another instruction."""
    if ins.base != "SYNCS":
        return None
    address = next((operand for operand in ins.operands if operand.startswith("[")), None)
    return None if address is None else address_offset(address)


def op_class(ins: Instruction, counter_addresses: frozenset[str] = frozenset(), cached_loads: frozenset[int] = frozenset()) -> str:
    """The kind of ``ins`` for the latency table. A coherent load of a grid-barrier counter (an
    address an atomic on the path also uses) is ``sync_load``, not state traffic; a plain load is an
    HBM miss (``dram_load``) unless its address is in ``cached_loads`` (arrays that stay in L2
    from one step to the next)."""
    base = ins.base
    if ins.never_runs or ins.reports_timeout:  # no work, or only on a hung launch
        return "nop"
    if ins.is_mma:
        return "mma"
    if base == "WARPGROUP" and "DEPBAR" in ins.modifiers:
        return "mma_wait"
    if base in TMA_LOADS:
        return "tma_load"
    if base == "SYNCS":
        return "tma_wait" if "TRYWAIT" in ins.modifiers else "mbarrier"
    if base in ASYNC_COPIES:
        return "async_load"
    if base == "DEPBAR" and any(operand.startswith("SB0") for operand in ins.operands):
        return "async_wait"
    if base in ("LDSM", "LDS", "STS", "STSM"):
        return {"LDSM": "ldsm", "LDS": "lds"}.get(base, "sts")
    if base in GLOBAL_LOADS:
        if ins.strong and any(operand in counter_addresses for operand in ins.operands):
            return "sync_load"
        return "l2_load" if ins.strong or ins.address in cached_loads else "dram_load"
    if base in GLOBAL_STORES:
        return "store"
    if base in GLOBAL_ATOMICS:
        return "atomic"
    simple = {"SHFL": "shfl", "BAR": "bar", "MUFU": "mufu", "MEMBAR": "membar", "CCTL": "fence", "ERRBAR": "fence",
              "CGAERRBAR": "fence", "FENCE": "fence", "LDC": "const", "ULDC": "const", "S2R": "special", "S2UR": "special",
              "BRA": "branch"}
    return simple.get(base, "alu")


#: the term each kind of instruction's waiting time is charged to
TERM_OF = {"nop": "issue", "alu": "alu", "const": "alu", "special": "alu", "branch": "alu", "mma": "mma",
           "mma_wait": "mma", "ldsm": "smem", "lds": "smem", "sts": "smem", "mbarrier": "smem", "shfl": "shfl",
           "bar": "bar", "mufu": "mufu", "l2_load": "l2_load", "tma_load": "l2_load", "tma_wait": "l2_load",
           "handoff_wait": "smem", "loader_wait": "loader",
           "dram_load": "dram_load", "async_load": "dram_load", "async_wait": "dram_load", "store": "store",
           "sync_load": "grid_sync", "atomic": "grid_sync", "membar": "grid_sync", "fence": "grid_sync"}


#: execution units whose turns hold a warp's issue (memory requests queue instead)
ISSUE_BLOCKING_UNITS = {"mma": "tensor", "mufu": "sfu", "shfl": "shfl"}


def _mma_cycles(ins: Instruction, fma_per_clock: float) -> float:
    """Cycles one warp's matrix instruction holds its scheduler's tensor core."""
    shape = next((m for m in ins.modifiers if m.isdigit() and len(m) in (4, 5)), "16816")
    m, n, k = int(shape[:2]), int(shape[2]), int(shape[3:])
    if ins.base == "HGMMA":
        dims = next((mod for mod in ins.modifiers if "x" in mod), "64x16x16").split("x")
        m, n, k = int(dims[0]) // 4, int(dims[1]), int(dims[2])
    rate = fma_per_clock / (2 if "TF32" in ins.modifiers else 1)
    return m * n * k / rate


def simulate(path: StepPath, context: WarpContext, cached_loads: frozenset[int] = frozenset(),
             trace: list | None = None, handoffs: tuple[Handoff, ...] = ()) -> tuple[float, dict[str, float]]:
    """Cycles of one step of ``path`` and their attribution to :data:`TERMS` (see the module
    docstring); ``cached_loads`` as in :func:`op_class`. ``trace``, when given, receives the last
    simulated step's ``(instruction, issue cycle, what it waited for)`` (to read where a step's
    time goes). ``handoffs``: a wait for another partition's arrival (``handoff_wait``) completes
    no earlier than that partition's arrival, :class:`Handoff`'s cycles after the path's own
    arrival (the latest one before the wait, a step earlier in a loop) plus a shared-memory poll;
    time it waits beyond its own poll is charged to ``loader``."""
    lat = context.latencies
    counter_addresses = frozenset(operand for ins in path.instructions if ins.base in GLOBAL_ATOMICS
                                  for operand in ins.operands if "[" in operand)
    classes = _handoffs([op_class(ins, counter_addresses, cached_loads) for ins in path.instructions])
    interval = context.warps_per_scheduler
    ready: dict[str, tuple[float, str]] = {}
    free: dict[str, float] = {}
    last_issue, gate, gate_class = -interval, 0.0, "issue"
    stores_done, sts_done = 0.0, 0.0
    # an acquire load is LDG.STRONG then CCTL.IVALL, and the invalidation waits for the load: a
    # poll of acquire loads is a chain of L2 round trips, one after the other
    strong_load_done = 0.0
    # asynchronous work: TMA copies complete in issue order and the k-th mbarrier wait waits for the
    # k-th copy; a cp.async wait (DEPBAR.LE SB0) for every copy issued before it; a warpgroup MMA
    # wait for every warpgroup MMA before it, which chain through their accumulator inside the
    # tensor pipe (an HGMMA reading the registers an HGMMA accumulates into does not wait for them)
    tma_done: list[float] = []
    tma_waited = 0
    async_done, mma_done = 0.0, 0.0
    accumulating: set[str] = set()
    # issue cycles of the path's latest arrival on each mbarrier (by shared offset), for ``handoffs``
    arrived: dict[int, float] = {}
    partners = {handoff.arrives: handoff for handoff in handoffs}
    iterations = 3 if path.in_loop else 1
    ends = []
    terms: dict[str, float] = {}
    for _ in range(iterations):
        terms = dict.fromkeys(TERMS, 0.0)
        if trace is not None:
            trace.clear()
        for position, (ins, kind) in enumerate(zip(path.instructions, classes)):
            earliest = last_issue + interval
            waits = [(earliest, "issue"), (gate, TERM_OF.get(gate_class, gate_class))]
            chained = accumulating if ins.base == "HGMMA" else ()
            waits += [(ready[r][0], TERM_OF[ready[r][1]]) for r in reads(ins) if r in ready and r not in chained]
            if kind in ISSUE_BLOCKING_UNITS:  # an execution unit still busy with earlier turns holds the issue
                waits.append((free.get(ISSUE_BLOCKING_UNITS[kind], 0.0), TERM_OF[kind]))
            if kind == "bar":
                waits.append((sts_done, "smem"))
            elif kind == "membar":
                waits.append((stores_done, "grid_sync"))
            elif ins.base == "CCTL":
                waits.append((strong_load_done, "grid_sync"))
            elif kind == "mma_wait":
                waits.append((mma_done, "mma"))
            elif kind == "async_wait":
                waits.append((async_done, "dram_load"))
            issue, binding = max(waits, key=lambda wait: wait[0])
            if trace is not None:
                trace.append((ins, issue, binding if issue - last_issue > interval else "issue"))
            terms["issue"] += min(interval, issue - last_issue)
            if issue - last_issue > interval:
                terms[binding] += issue - last_issue - interval
            last_issue = issue
            done = _complete(ins, kind, issue, context, free)
            if kind == "tma_load":
                tma_done.append(done)
            elif kind == "tma_wait":
                done = max(done, tma_done[tma_waited]) if tma_waited < len(tma_done) else done
                tma_waited += 1
            elif kind == "async_load":
                async_done = max(async_done, done)
            elif ins.base == "HGMMA":
                mma_done = max(mma_done, done)
            elif kind == "mbarrier" and ins.opcode.startswith("SYNCS.ARRIVE"):
                arrived[mbarrier_offset(ins)] = issue
            elif kind == "atomic":
                arrived[RELEASE] = issue
            elif kind == "handoff_wait" and (handoff := partners.get(mbarrier_offset(ins))) \
                    and handoff.after in arrived:
                partner_done = arrived[handoff.after] + handoff.cycles + lat.lds
                if partner_done > done:
                    done, kind = partner_done, "loader_wait"
            written = writes(ins)
            for register in written:
                ready[register] = (done, kind)
            accumulating = accumulating.union(written) if ins.base == "HGMMA" else accumulating.difference(written)
            if ins.base in GLOBAL_LOADS and ins.strong:
                strong_load_done = done
            if kind == "sts":
                sts_done = max(sts_done, done)
            elif kind in ("store", "atomic"):
                stores_done = max(stores_done, issue + lat.store)
            gate, gate_class = issue, "issue"
            if kind in ("bar", "membar", "fence"):
                gate, gate_class = issue + {"bar": lat.bar, "membar": lat.membar, "fence": lat.fence}[kind], kind
            elif kind == "branch" and _taken(path, position):
                gate, gate_class = issue + lat.branch, kind
        # a loop step ends when its back-edge issues (the branch's own delay opens the next step);
        # a launch ends when its last stores are acknowledged
        end = last_issue
        if not path.in_loop and stores_done > end:
            terms["store"] += stores_done - end
            end = stores_done
        ends.append(end)
    cycles = ends[-1] - ends[-2] if len(ends) > 1 else ends[-1] + interval
    return cycles, terms


def loader_handoffs(recurrence: StepPath, loader: StepPath, context: WarpContext,
                    unseen_cycles: float) -> tuple[Handoff, ...]:
    """The tagged exchange's loader step as one :class:`Handoff` per loader arrival: from its wait for
    the recurrence's arrival (``h_free``: the first wait of its step on an mbarrier the recurrence
    arrives on) to each of its arrivals (the state's tiles: one, or one a group), as
    :func:`simulate` times the loader's step in ``context``, plus ``unseen_cycles`` (what its path
    does not show). What the loader's step does before that wait, and the recurrence's after its
    arrival, overlap each other. ValueError where the loader waits for none of the recurrence's
    arrivals, or arrives on nothing after it."""
    trace, start = loader_timeline(recurrence, loader, context)
    wait, began, _ = trace[start]
    handoffs = tuple(Handoff(mbarrier_offset(wait), mbarrier_offset(ins), issue - began + unseen_cycles)
                     for ins, issue, _ in trace if ins.opcode.startswith("SYNCS.ARRIVE") and issue > began)
    if not handoffs:
        raise ValueError("the loader's step arrives on no mbarrier after its wait for the recurrence")
    return handoffs


def loader_timeline(recurrence: StepPath, loader: StepPath, context: WarpContext) -> tuple[list, int]:
    """The loader's step as :func:`simulate` traces it in ``context`` (``(instruction, issue cycle,
    what it waited for)`` each) and the position in it of its wait for the recurrence (``h_free``:
    its step's first wait on an mbarrier the recurrence arrives on); ValueError where it has none."""
    releases = {mbarrier_offset(ins) for ins in recurrence.instructions
                if ins.opcode.startswith("SYNCS.ARRIVE") and not ins.never_runs}
    trace: list = []
    simulate(loader, context, trace=trace)
    start = next((position for position, (ins, _, _) in enumerate(trace)
                  if "TRYWAIT" in ins.modifiers and mbarrier_offset(ins) in releases), None)
    if start is None:
        raise ValueError(f"the loader's step waits on none of the mbarriers the recurrence arrives on "
                         f"(shared offsets {[hex(offset) for offset in sorted(releases)]})")
    return trace, start


def copier_handoffs(copier: StepPath, context: WarpContext, unseen_cycles: float) -> tuple[Handoff, ...]:
    """The streamed backward's copies (:func:`rnnbench.kernels.sass.copier_path`) as one
    :class:`Handoff` per copy, after the recurrence's release (:data:`RELEASE`): every program
    releases the step at the same time, so each copy lands ``unseen_cycles`` (the release's way to
    the flags, the copier's discovery: :func:`loader_unseen`) plus, as :func:`simulate` times the
    copier's poll in ``context``, the issue of the copy after the poll's first load, plus the copy
    itself (an L2 round trip and its box at this SM's share of L2 bandwidth, behind the copies
    issued before it) after the release. The mbarrier a copy completes on is the one its arming
    (``SYNCS.ARRIVE.TRANS64``) before it names. ValueError where the poll issues no copy."""
    trace: list = []
    simulate(copier, context, trace=trace)
    start = next(issue for ins, issue, _ in trace if ins.base in GLOBAL_LOADS and ins.strong)
    free: dict[str, float] = {}
    armed, handoffs = None, []
    for ins, issue, _ in trace:
        if ins.opcode.startswith("SYNCS.ARRIVE"):
            armed = mbarrier_offset(ins)
        elif ins.base in TMA_LOADS and armed is not None:
            landed = _complete(ins, "tma_load", issue, context, free)
            handoffs.append(Handoff(RELEASE, armed, landed - start + unseen_cycles))
    if not handoffs:
        raise ValueError("the copier's poll issues no TMA copy after arming an mbarrier")
    return tuple(handoffs)


def _handoffs(classes: list[str]) -> list[str]:
    """``classes`` with the mbarrier waits beyond the step's TMA copies (one wait per copy comes
    first, in the copies' order) as ``handoff_wait``: a wait for another warpgroup of the program
    (the fused input projection's products, :func:`rnnbench.kernels.gluon_lstm._input_projection`),
    taken as already complete, since that warpgroup runs steps ahead, so a shared-memory poll."""
    copies, waits, kinds = classes.count("tma_load"), 0, []
    for kind in classes:
        if kind == "tma_wait":
            waits += 1
            kind = kind if waits <= copies else "handoff_wait"
        kinds.append(kind)
    return kinds


def _taken(path: StepPath, position: int) -> bool:
    """Whether the branch at ``position`` jumps (the path does not continue at the next address)."""
    if position + 1 == len(path.instructions):
        return path.in_loop
    return path.instructions[position + 1].address != path.instructions[position].address + 16


def _complete(ins: Instruction, kind: str, issue: float, context: WarpContext, free: dict[str, float]) -> float:
    """When the result of ``ins`` (issued at ``issue``) is available to this warp."""
    lat = context.latencies
    per_scheduler, per_sm = context.warps_per_scheduler, context.warps_per_sm
    if kind == "mma":
        own = _mma_cycles(ins, context.mma_fma_per_clock)
        latency = lat.hgmma if ins.base == "HGMMA" else lat.mma
        done = _through(free, "tensor", issue, 0.0, own, per_scheduler, latency - own)
        operand_bytes = hgmma_shared_bytes(ins)
        if operand_bytes:  # its operands stream from shared memory; each of the 4 warps issues a quarter
            fed = operand_bytes / 4 / lat.smem_bytes_per_clock
            done = max(done, _through(free, "smem", issue, 0.0, fed, per_sm, latency - own))
        return done
    if kind == "mufu":
        return _through(free, "sfu", issue, 0.0, lat.mufu_issue, per_scheduler, lat.mufu - lat.mufu_issue)
    if kind == "shfl":
        return _through(free, "shfl", issue, 0.0, lat.shfl_issue, per_sm, lat.shfl - lat.shfl_issue)
    if kind in ("lds", "ldsm", "sts"):
        own = max(1.0, 4 * 32 * _registers_moved(ins) / lat.smem_bytes_per_clock)
        if kind == "ldsm":  # a matrix whose rows share a bank group takes a wavefront per row there
            own *= context.ldsm_wavefronts
        latency = {"lds": lat.lds, "ldsm": lat.ldsm, "sts": lat.sts}[kind]
        return _through(free, "smem", issue, 0.0, own, per_sm, max(0.0, latency - own))
    if kind == "mbarrier":  # arming or arriving at an mbarrier: a shared-memory operation
        return _through(free, "smem", issue, 0.0, 1.0, 1, lat.sts - 1.0)
    if kind == "tma_load":  # one copy per program, bandwidth shared with the other programs on the SM
        own = context.tma_box_bytes / context.l2_bytes_per_clock
        return _through(free, "l2", issue, lat.l2, own, context.programs_per_sm, 0.0)
    if kind in ("l2_load", "dram_load", "async_load"):
        rate = context.l2_bytes_per_clock if kind == "l2_load" else min(context.l2_bytes_per_clock, context.hbm_bytes_per_clock)
        own = 32 * ins.access_bytes() / rate
        channel = "l2" if kind == "l2_load" else "dram"
        return _through(free, channel, issue, lat.l2 if kind == "l2_load" else lat.dram, own, per_sm, 0.0)
    latency = {"nop": 0, "alu": lat.alu, "const": lat.const, "special": lat.special, "branch": lat.branch,
               "sync_load": lat.l2, "atomic": lat.atomic, "store": 0, "bar": 0, "membar": 0, "fence": 0,
               "tma_wait": lat.lds, "handoff_wait": lat.lds, "mma_wait": 0, "async_wait": 0}[kind]
    return issue + latency


def _registers_moved(ins: Instruction) -> int:
    if ins.base == "LDSM":
        return int(ins.modifiers[-1]) if ins.modifiers[-1].isdigit() else 1
    return max(1, ins.access_bytes() // 4) if ins.access_bytes() >= 4 else 1


def _through(free: dict[str, float], unit: str, issue: float, head: float, own: float, sharers: int, tail: float) -> float:
    """Serve one warp instruction on ``unit`` behind the same instruction of its ``sharers`` warps:
    it enters ``head`` cycles after issue (when the unit is free), holds it ``own`` cycles per warp,
    and its result follows ``tail`` cycles after the last warp's turn."""
    begin = max(issue + head, free.get(unit, 0.0))
    free[unit] = begin + own * sharers
    return free[unit] + tail


# ---- one shape -------------------------------------------------------------------------------

def at_reload_rate(one_reload: dict[str, object], complete: dict[str, object], reloads: float) -> dict[str, object]:
    """A tagged exchange's estimate at ``reloads`` reloads a step (0 to 1): each time term,
    ``latency_path_us`` and ``raw_us_per_step`` of ``complete`` (:func:`step_estimate` with
    ``first_load_complete``) moved that share of the way to ``one_reload``'s; the counts are the
    one-reload step's; ``tagged_reloads_per_step`` says the rate."""
    if not 0 <= reloads <= 1:
        raise ValueError(f"reloads a step must be between 0 and 1, got {reloads}")
    timed = [key for key in one_reload if key.startswith("t_")] + ["latency_path_us", "raw_us_per_step"]
    return one_reload | {key: between_reloads(complete[key], one_reload[key], reloads) for key in timed} | {
        "tagged_reloads_per_step": reloads}


def between_reloads(complete, one_reload, reloads):
    """A tagged exchange's time (µs, scalars or arrays alike) at ``reloads`` reloads a step, linear
    between ``complete`` (every first load finds the state complete) and ``one_reload`` (one reload
    a step); past 1 too, for a measured busiest loader warp that reloads more than once a step."""
    return complete + reloads * (one_reload - complete)


def step_context(plan: Plan, dtype: torch.dtype, direction: str, per_sm: int, arch: int = 90,
                 latency_table: Latencies | None = None) -> WarpContext:
    """Who shares an SM with the warps that run ``plan``'s step (not the fused input projection's,
    which the model leaves out), ``per_sm`` of its programs resident on an SM at most."""
    device = DEVICES[arch]
    resident = min(per_sm, math.ceil(plan.programs / device.sms))
    active = min(plan.programs, device.sms)
    return WarpContext(
        warps_per_scheduler=math.ceil(resident * plan.num_warps / 4),
        warps_per_sm=resident * plan.num_warps,
        l2_bytes_per_clock=min(device.sm_l2_bytes_per_clock, device.l2_bytes_per_clock / active),
        hbm_bytes_per_clock=device.hbm_bytes_per_clock / active,
        mma_fma_per_clock=device.mma_fma_per_clock,
        latencies=latency_table or latencies(arch),
        # the Gluon kernels' copies of the exchange: several (block_b rows, GLUON_K_TILE columns) tiles
        tma_box_bytes=gluon_copy_bytes(plan, direction == "bwd", element_size(dtype)) if plan.path == GLUON else 0.0,
        programs_per_sm=resident,
    )


def discovery_cycles(lat: Latencies) -> float:
    """Half a poll period of a wait that reduces its poll over the warps of a program: when, on
    average, a poll sees what arrived during the previous one (cycles)."""
    return 0.5 * (lat.l2 + 2 * lat.bar + lat.lds + lat.sts)


def loader_unseen(loader: StepPath, lat: Latencies, device: Device) -> dict[str, float]:
    """The tagged exchange's loader chain beyond its path (cycles; the streamed backward's copier's
    likewise: a poll of flags instead of words, no pause). Its warps are on the step's
    chain, from the recurrence's arrival on ``h_free`` (after its publish) to the loader's arrival
    on the state's mbarrier, which the recurrence's MMAs wait for; its path has its first load, one
    reload of stale words (or none) and the stores into the MMAs' tiles. Beyond it: ``publish``,
    the producers' stores' way to L2; ``discovery``, half a poll period (without the CTA barriers
    of a reduction over warps where the loader is one warp); ``pause``, its sleep before the first
    load (the nominal one: the hardware's is 0 to twice that)."""
    return {"publish": 0.5 * lat.store,
            "discovery": discovery_cycles(lat) if count(loader).bar else 0.5 * lat.l2,
            "pause": sleep_ns(loader) * device.clock_ghz}


def poll_line_queue(producers: int, polling_warps: int, lat: Latencies) -> float:
    """Cycles a grid barrier waits for its flags' lines: every polling warp of every program that
    shares the barrier (its ``producers``) loads every line of the flags (and the status word's)
    each poll round, ``producers x polling_warps`` requests to one L2 slice, which serves up to
    ``poll_line_knee`` of them in a round without a queue and takes ``poll_line_excess`` cycles for
    each beyond, up to ``poll_line_steep``, then ``poll_line_excess_beyond``.

    Fitted to the H200's barriers (reports/h200/7caf667, the kernels with their barrier minus
    without, 19 of them, 16 to 128 producers of 4 or 8 warps, 64 to 512 requests): hinged on
    producers x warps it leaves 0.14 µs RMS, linear in the producers alone 0.47 (a knee at 224
    fits as well as 256). Beyond 512 requests, the barrier micro-benchmark at 128 producers of 8
    warps against 4 (reports/h200/acd6756/barrier.csv: 3.22 against 2.00 µs, 2.4 ns a request
    more)."""
    requests = producers * polling_warps
    steep = min(requests, lat.poll_line_steep) - lat.poll_line_knee
    return (max(0.0, steep) * lat.poll_line_excess
            + max(0.0, requests - max(lat.poll_line_steep, lat.poll_line_knee)) * lat.poll_line_excess_beyond)


def grid_sync_unseen(counts: StepCounts, plan: Plan, lat: Latencies, copier: bool = False) -> float:
    """A grid barrier's time beyond its path (cycles) in ``plan``'s launch: the arrivals of its
    programs at their flags, which follow their release fences, the queue at the flags' lines of
    one barrier's producers (the hidden blocks of a batch block, ``plan.grid[0]``), each polling
    with :func:`polling_warps` (``copier``: the streamed backward's copier polls; see
    :func:`poll_line_queue`), and half a poll period of discovery; 0 without a poll loop (a tagged
    exchange has neither: each word is its own arrival, checked by the loads that read it)."""
    if not counts.poll_loops:
        return 0.0
    flags = (plan.programs * lat.barrier_arrival + poll_line_queue(plan.grid[0], polling_warps(plan, copier), lat)
             if counts.membar else 0.0)
    return flags + discovery_cycles(lat)


def polling_warps(plan: Plan, copier: bool = False) -> int:
    """Warps of each program that poll the grid barrier's flags: the first alone where
    :data:`rnnbench.kernels.switches.GRID_POLL_FIRST_WARP` (or the Gluon backward's copier warp
    polls them, ``copier``), else every warp of the program (the Gluon forward's fused input
    projection's warpgroup polls nothing)."""
    return 1 if switches.GRID_POLL_FIRST_WARP or copier else plan.num_warps


def step_estimate(sass_text: str, plan: Plan, registers: int, shared_bytes: int, *, dtype: torch.dtype, hidden_size: int,
                  batch: int, direction: str, arch: int = 90, seq_len: int = SEQ_LEN,
                  latency_table: Latencies | None = None, first_load_complete: bool = False,
                  ldsm_extra_wavefronts: float = 0.0) -> dict[str, object]:
    """Counts, co-residency and the per-term estimate (µs per step, ``t_*``, summed in
    ``raw_us_per_step``) of one shape on ``plan``'s path, from the SASS of the kernel that runs it
    and its compiled ``registers`` (per thread) and ``shared_bytes``. ``latency_path_us`` is the
    recurrence's step for one warp alone on its SM (no sharing of issue slots or units), the sum of
    latencies a stage-by-stage reading of the SASS adds up. ``latency_table``: another table than
    the model's (:func:`latencies`), for what-if estimates. ``first_load_complete``: a tagged
    exchange's loader finds the state complete at its first load every step (no reload; by default
    one reload a step, :func:`rnnbench.kernels.sass.loader_path`). ``ldsm_extra_wavefronts``: the
    shared-memory wavefronts the step's ``ldmatrix`` loads take beyond one a matrix, all warps
    (bank conflicts, which the SASS does not show; from the kernel's TTGIR:
    :attr:`rnnbench.kernels.aot.KernelResources.ldsm_extra_wavefronts`), spread evenly over the
    step's ``LDSM`` (column ``ldsm_wavefronts``: the mean wavefronts of a matrix)."""
    device, lat = DEVICES[arch], latency_table or latencies(arch)
    instructions = parse(sass_text)
    steps = step_path(instructions)
    counts = count(steps)
    matrices = plan.num_warps * sum(_registers_moved(ins) for ins in steps.instructions if ins.base == "LDSM")
    wavefronts = 1.0 + ldsm_extra_wavefronts / matrices if matrices else 1.0
    programs = plan.programs
    per_sm, limit = programs_per_multiprocessor(Resources(shared_bytes, registers), plan.resident_warps, LIMITS[arch])
    waves = math.ceil(programs / (device.sms * per_sm)) if per_sm else math.inf
    row: dict[str, object] = {
        "programs": programs, "programs_per_sm": per_sm, "occupancy_limit": limit, "coresident": waves == 1,
        **counts.as_row(), "ldsm_wavefronts": round(wavefronts, 3),
        "global_load_bytes_per_program": counts.global_load_bytes * 32 * plan.num_warps,
        "global_load_l2_bytes_per_program": counts.global_load_l2_bytes * 32 * plan.num_warps,
    }
    if per_sm == 0 or (plan.path != "stepwise" and waves > 1):  # the driver refuses such a cooperative launch
        return row | {f"t_{term}": math.nan for term in TERMS} | {"latency_path_us": math.nan, "raw_us_per_step": math.nan}
    context = replace(step_context(plan, dtype, direction, per_sm, arch, lat), ldsm_wavefronts=wavefronts)
    # the Gluon kernel's arguments (TMA descriptors by value) are not the plain kernels' list, and
    # its weights never leave shared memory: no global load of it stays cached
    cached = frozenset() if plan.path == GLUON else _cached_loads(instructions, plan.cell, direction, arch)
    loader = loader_path(instructions, first_load_complete) if plan.path == GLUON and direction != "bwd" else None
    copier = copier_path(instructions) if plan.path == GLUON and direction == "bwd" else None
    row["tagged_exchange"] = loader is not None
    handoffs = ()
    if loader is not None:
        handoffs = loader_handoffs(steps, loader, context, sum(loader_unseen(loader, lat, device).values()))
    elif copier is not None:
        handoffs = copier_handoffs(copier, context, sum(loader_unseen(copier, lat, device).values()))
    cycles, terms = simulate(steps, context, cached, handoffs=handoffs)
    alone, _ = simulate(steps, replace(context, warps_per_scheduler=1, warps_per_sm=1), cached)
    to_us = 1e-3 / device.clock_ghz
    terms_us = {term: value * to_us for term, value in terms.items()}
    terms_us["grid_sync"] += grid_sync_unseen(counts, plan, lat, copier is not None) * to_us
    if plan.path == "stepwise":
        kernel_us = sum(terms_us.values()) * waves
        terms_us = {term: value * waves for term, value in terms_us.items()}
        terms_us["launch"] = device.launch_gap_us + max(0.0, device.host_launch_us - device.launch_gap_us - kernel_us)
    terms_us["gemm"] = (_gemm_flops(plan, hidden_size, batch, direction) / (_gemm_tflops(dtype, device) * 1e6)
                        * serial_gemm_share(plan, direction, seq_len, dtype, batch, hidden_size, device.sms))
    terms_us["per_call"] = device.call_overhead_us / seq_len
    return (row | {f"t_{term}": value for term, value in terms_us.items()}
            | {"latency_path_us": alone * to_us, "raw_us_per_step": sum(terms_us.values())})


#: the kernel argument whose array stays in L2 from one step to the next (``W_hh``, re-read by
#: every step of the stepwise path); every other array a step reads is streamed from HBM
CACHED_ARGUMENTS = ("w_hh_ptr",)
#: constant-bank offset of a kernel's first argument
ARGUMENT_BASE = {80: 0x160, 90: 0x210}


def _cached_loads(instructions, cell: str, direction: str, arch: int) -> frozenset[int]:
    """Addresses of the plain global loads that read only :data:`CACHED_ARGUMENTS` arrays (pointer
    arguments come first, 8 bytes each, from :data:`ARGUMENT_BASE`)."""
    from rnnbench.kernels.aot import KERNEL_POINTERS

    names = [name for name, _ in KERNEL_POINTERS[(cell, "bwd" if direction == "bwd" else "fwd")]]
    offsets = {name: ARGUMENT_BASE[arch] + 8 * i for i, name in enumerate(names)}
    pointers = frozenset(offsets.values())
    cached = frozenset(offsets[name] for name in CACHED_ARGUMENTS)
    return frozenset(address for address, sources in load_sources(instructions).items()
                     if sources & pointers and sources & pointers <= cached)


def _gemm_flops(plan: Plan, hidden_size: int, batch: int, direction: str) -> float:
    """FLOPs per step of the GEMMs around the recurrence, input size = hidden size: the input
    projection forward (none where ``plan`` fuses it into the kernel); ``dx``, ``dW_ih`` and
    ``dW_hh`` backward."""
    if direction != "bwd" and plan.input_tiles:
        return 0.0
    rows = GATES[plan.cell] * hidden_size
    return 2 * batch * rows * hidden_size * (3 if direction == "bwd" else 1)


def serial_gemm_share(plan: Plan, direction: str, seq_len: int, dtype: torch.dtype, batch: int,
                      hidden_size: int, multiprocessors: int) -> float:
    """The share of the GEMMs around the recurrence that the call waits for: all of them, but
    beside the kernel only the steps of ``seq_len`` that are left when it starts or ends, the first
    chunk's (:data:`rnnbench.kernels.plan.OVERLAPPED_CHUNK_STEPS`): with the forward's input
    projection beside it (:func:`rnnbench.kernels.switches.overlapped_projection`, where
    :func:`~rnnbench.kernels.plan.overlapped_projection_refusal` allows it) the later GEMMs, and with
    the backward's GEMMs beside it (:func:`rnnbench.kernels.switches.overlapped_gradients`, where
    :func:`~rnnbench.kernels.plan.overlapped_gradients_refusal` allows it at input size H on
    ``multiprocessors`` SMs) the earlier ones run on the SMs the recurrence leaves free, as fast as
    it finishes their steps (the refusal asks for a quarter of the SMs free). Not modelled: their memory traffic's
    effect on the recurrence, the forward kernel's flag check (a few instructions a step that the
    compiled kernel of the table does not have), the backward's waits (one SM slot each)."""
    from rnnbench.kernels import plan as plan_module

    chunk = min(1.0, plan_module.OVERLAPPED_CHUNK_STEPS / seq_len)
    if direction == "bwd":
        sizes = (seq_len, batch, hidden_size, hidden_size)
        beside = switches.OVERLAPPED_GRADIENTS and not plan_module.overlapped_gradients_refusal(
            plan, dtype, sizes, has_lengths=False, multiprocessors=multiprocessors)
    else:
        beside = switches.GLUON_OVERLAPPED_PROJECTION and not plan_module.overlapped_projection_refusal(
            plan, has_lengths=False, has_first=False)
    return chunk if beside else 1.0


def _gemm_tflops(dtype: torch.dtype, device: Device) -> float:
    return device.gemm_tflops_fp32 if dtype == torch.float32 else device.gemm_tflops_16bit


# ---- the table -------------------------------------------------------------------------------

def shape_rows(cells=tuple(GATES), dtypes=("bfloat16",), hidden_sizes=GOAL_HIDDEN, batches=GOAL_BATCH, arch: int = 90):
    """Every (cell, dtype, H, B, direction, path) to estimate, with the plan it launches:
    dicts with the shape, ``plan`` (None when the planner refuses that path), ``planned`` (the
    path ``auto`` picks on this GPU) and ``config`` (the compiled kernel). Every path appears where
    it can run the shape, also where ``auto`` picks another; a Gluon forward also with its input
    projection fused (input size = H), where :func:`rnnbench.kernels.plan.gluon_input_tiles` can."""
    from rnnbench.kernels.aot import DTYPES, KernelConfig

    device = DEVICES[arch]
    rows = []
    for cell in cells:
        for dtype_name in dtypes:
            dtype = DTYPES[dtype_name]
            for hidden in hidden_sizes:
                for batch in batches:
                    for direction in DIRECTIONS[cell]:
                        backward = direction == "bwd"
                        auto = plan_recurrence(cell, hidden, batch, dtype, "auto", device.sms, arch=arch, backward=backward,
                                               inference=direction == "fwd")
                        for path in FORCED_PATHS:
                            try:
                                plan = plan_recurrence(cell, hidden, batch, dtype, path, device.sms, arch=arch,
                                                       backward=backward)
                                allowed = True
                                if plan.path != path:  # a forced Gluon forward's plain backward: auto's row
                                    continue
                            except ValueError:
                                if path != "cooperative":
                                    continue
                                try:  # the planner's resource model refused it; the compiled resources may not
                                    plan = plan_recurrence(cell, hidden, batch, dtype, path, None, arch=arch,
                                                           backward=backward)
                                except ValueError:
                                    continue
                                allowed = False
                            plans = [plan]
                            fused = gluon_input_tiles(plan, hidden, dtype, arch, device.sms, fuse=True)
                            if direction != "bwd" and fused:  # also with the input projection fused
                                plans.append(replace(plan, input_tiles=fused))
                            rows.extend({"cell": cell, "dtype": dtype_name, "hidden_size": hidden, "batch": batch,
                                         "direction": direction, "path": path,
                                         "planned": (auto.path, auto.input_tiles) == (path, each.input_tiles),
                                         "plan_allows": allowed, "plan": each,
                                         "config": KernelConfig.from_plan(
                                             each, dtype_name, direction,
                                             hidden_divisible=hidden % HIDDEN_SPECIALISATION == 0)}
                                        for each in plans)
    return rows


def cost_table(arch: int = 90, dtypes=("bfloat16",), cells=tuple(GATES), hidden_sizes=GOAL_HIDDEN, batches=GOAL_BATCH,
               workers: int | None = None, calibration=None, latency_table: Latencies | None = None):
    """One row per shape and path (see :func:`shape_rows`) with counts, co-residency, per-term µs
    per step (``t_*``), ``raw_us_per_step`` and ``est_us_per_step`` (calibrated when a
    :class:`~rnnbench.kernels.calibration.Calibration` is given, else the raw estimate);
    ``latency_table``: another table than the model's (:func:`latencies`), for what-if tables."""
    import pandas as pd

    from rnnbench.kernels.aot import compile_all, compile_sass

    if arch not in DEVICES:
        raise ValueError(f"the cost model knows {', '.join(f'sm_{a}' for a in DEVICES)}, got sm_{arch}")
    shapes = shape_rows(cells, dtypes, hidden_sizes, batches, arch)
    configs = list(dict.fromkeys(row["config"] for row in shapes))
    compiled = dict(zip(configs, compile_all(arch, configs, workers, job=compile_sass)))
    rows = []
    for shape in shapes:
        resources, text = compiled[shape["config"]]
        plan = shape["plan"]
        arguments = dict(dtype=torch_dtype(shape["dtype"]), latency_table=latency_table, hidden_size=shape["hidden_size"],
                         batch=shape["batch"], direction=shape["direction"], arch=arch,
                         ldsm_extra_wavefronts=resources.ldsm_extra_wavefronts)
        estimate = step_estimate(text, plan, resources.registers, resources.shared_bytes, **arguments)
        if estimate.get("tagged_exchange"):
            complete = step_estimate(text, plan, resources.registers, resources.shared_bytes, first_load_complete=True,
                                     **arguments)
            estimate = at_reload_rate(estimate, complete, TAGGED_RELOADS_PER_STEP)
        rows.append({key: shape[key] for key in ("cell", "dtype", "hidden_size", "batch", "direction", "path", "planned",
                                                 "plan_allows")}
                    | {"h_pad": plan.h_pad, "block_h": plan.block_h, "block_b": plan.block_b,
                       "input_tiles": plan.input_tiles, "num_warps": plan.num_warps,
                       "registers": resources.registers, "shared_bytes": resources.shared_bytes,
                       "spill_bytes": resources.spill_bytes} | estimate)
    table = pd.DataFrame(rows)
    table.insert(0, "target", f"sm_{arch}")
    table = calibration.apply(table) if calibration is not None else table.assign(est_us_per_step=table["raw_us_per_step"])
    first = ["target", "cell", "dtype", "hidden_size", "batch", "direction", "path", "planned", "plan_allows", "coresident",
             "est_us_per_step", "raw_us_per_step", "latency_path_us"]
    return table[first + [column for column in table.columns if column not in first]]


#: the columns of the Markdown summary (the CSV has every column)
SUMMARY_COLUMNS = ["cell", "dtype", "hidden_size", "batch", "direction", "path", "input_tiles", "planned", "coresident",
                   "programs", "programs_per_sm", "registers", "instructions", "mma", "mma_chain", "ldsm", "bar",
                   "shfl", "global_load_bytes_per_program", "est_us_per_step"]


def torch_dtype(name: str) -> torch.dtype:
    from rnnbench.kernels.aot import DTYPES

    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    return DTYPES[name]

