"""Where a cooperative step's microseconds go: the forward step taken apart, timed on a GPU.

The cost model (:mod:`rnnbench.kernels.cost`) under-predicted the cooperative path 1.5-4.7x on the
H200 (``reports/h200/NOTES.md``) and its per-term fit cannot say which term is wrong, because in
the real kernels the terms always come together. This benchmark runs the pieces of one forward
step of the cooperative path separately, in a kernel built from the same primitives
(:mod:`rnnbench.kernels.primitives`) with the same layout the planner gives the LSTM or Elman
forward (:func:`rnnbench.kernels.plan.plan_recurrence`). Per step, each program may:

* ``load``: read the previous state, all ``B x H`` of it, from the exchange slot other programs wrote
  (``.cg`` loads, as the kernels do);
* ``mma``: multiply its held ``W_hh`` slice (:func:`~rnnbench.kernels.primitives.held_weights`) with
  that state: with ``load`` exactly :func:`~rnnbench.kernels.primitives.held_product`, without it
  the state is the one loaded once before the loop (in registers, as on the persistent path) and
  the step's ``(s % 7) / 8`` starts the accumulator, so the product is not loop-invariant;
  ``load`` alone sums the loaded blocks instead, so the loads stay live;
* ``sync``: the grid barrier (:func:`~rnnbench.kernels.primitives.barrier_arrive` and
  :func:`~rnnbench.kernels.primitives.barrier_wait`) among all programs, every poll load an
  acquire; the ``*_relaxed`` variants poll with relaxed loads and fence once after them (the two
  orders of :data:`~rnnbench.kernels.primitives.POLL_ORDERS`; the kernels use their plan's
  :attr:`~rnnbench.kernels.plan.Plan.poll_order`);
* ``tagged``: no barrier: the state travels as tagged words (:mod:`rnnbench.kernels.tagged_exchange`,
  a value and the step that wrote it in one word), and ``load`` waits until every word it loaded is
  the previous step's. An experiment the shipped kernels do not run: it trades the barrier's chain
  of round trips for twice the bytes and a reload of the state when it arrives early (the model
  predicts a loss, 2.87 against 2.40 µs at H=768, B=16, and 2x at B=64; the H200 measured
  1.01-1.16x slower than ``full``); ``tagged_stale`` loads again only the words still stale, not
  the whole state (:func:`rnnbench.kernels.tagged_exchange.wait_fresh`).

Every variant then activates its units (``tanh`` of the summed gates) and publishes them into the
other slot, so the store, its fence (in ``sync``) and the elementwise tail are in every variant.
The variants (:data:`VARIANTS`) are the subsets that separate the terms: ``full`` is the real
step without its input and output streams (``xg``, ``y``); ``real`` times the shipped LSTM forward
kernel itself at the same layout (inference, projection GEMM excluded), so ``real - full`` is what
those streams and the cell-state update cost; ``real_gluon`` times the Gluon forward
(:mod:`rnnbench.kernels.gluon_lstm`, sm_90, at its own layout) on the same inputs; ``real_relaxed``
and ``real_gluon_relaxed`` the same kernels with their grid barrier's poll relaxed (the plan's
:attr:`~rnnbench.kernels.plan.Plan.poll_order` forced), so the two orders are compared on the
shipped kernels in one run (the ``*_relaxed`` variants compare them on the parts of a step);
``real_bwd`` and ``real_bwd_relaxed`` time the shipped backward kernel (gate gradients, no GEMMs)
at its own plan the same way, ``real_gluon_bwd`` the Gluon backward
(:mod:`rnnbench.kernels.gluon_lstm_backward`) on the same inputs, and the ``*_wide_rows`` variants
the plain kernels in the wide batch blocks the planner leaves where the B <= 16 layout fits one
program per SM. ``real_gluon_no_sync`` and ``real_gluon_bwd_no_sync`` run the Gluon kernels without
their grid barrier (``GRID_SYNC=False``: no release, no poll; garbage results), so the shipped
kernel minus it is what the grid synchronisation costs it, on the kernel itself rather than on the
``full``/``no_sync`` pair of the ablation kernel (measured only: the model has no estimate of them).
``real_gluon_shared_weights`` runs the Gluon forward with every weight tile in shared memory (the
kernel before :func:`rnnbench.kernels.plan.gluon_register_tiles`), against ``real_gluon``'s planned
tiles in registers; ``real_gluon_wide_register_weights`` holds tiles in registers in the 32-row
batch blocks as well, which the plan does not (the cost model rates them even there).
``real_gluon_fused_input`` runs the Gluon forward with its input projection fused (input size =
H_PAD; its launches take the input, not xg), the kernel alone against ``real_gluon``'s kernel alone:
it pays where its excess stays below the projection GEMM it saves. Never run on a GPU, it is timed
after its shape's other variants (:data:`DEFERRED`, :func:`schedule`: the goal shape's first, the
others' after every other shape). ``real_gluon_copies_8`` runs the Gluon
forward with its state copied in copies of 8 tiles instead of the plan's 4
(:func:`rnnbench.kernels.switches.state_copy_tiles`), the plan's rule until the H200 timed copies
of 4 faster (7caf667, then ``real_gluon_copies_4``: 2.47 -> 2.41 µs at H=768 B=16): the check, in
every later run, that the change still holds.
``real_gluon`` is the Gluon forward with its grid barrier, whatever the plan would take;
``real_gluon_tagged`` runs it with the tagged exchange instead
(:func:`rnnbench.kernels.switches.tagged_exchange`: one loader of four warps polls the state's compact words,
16-bit values whose spare exponent bit is the tag, into shared memory; no release fence, flags or
TMA copies of the state) where it can run (16-row blocks, one program per SM), timed after
everything else (:data:`DEFERRED`, never run on a GPU); the model adds its loader warps' step,
one reload of stale words included, to the recurrence's (:func:`rnnbench.kernels.sass.loader_path`).
Its rows also count the polls beyond each step's first (:func:`extra_polls`, column
``extra_polls_per_step``): the reload the model assumes, measured. ``real_gluon_tagged_delayed`` is
the same kernel with its loader pausing :data:`TAGGED_POLL_DELAY_NS` before each first load
(:func:`rnnbench.kernels.switches.tagged_poll_delay`): fewer reloads for a fixed delay, if the programs
publish a little apart. ``real_gluon_tagged_four_loaders`` splits the loader into four one-warp
partitions (:func:`rnnbench.kernels.switches.tagged_loaders`; slower on the H200 at 7caf667, where it
was ``real_gluon_tagged`` and the one loader ``real_gluon_tagged_one_loader``).
``real_gluon_tagged_two_chains`` is ``real_gluon_tagged`` with its recurrent product in two
accumulator chains (:func:`rnnbench.kernels.switches.mma_chains`): whether a second chain of MMAs overlaps
the first, which the cost model assumes away (it runs one chain at the tensor pipe's rate already).
``real_gluon_tagged_groups_4`` is ``real_gluon_tagged`` with its loader handing the state over in four
groups of tiles, each as soon as its own words are fresh (:func:`rnnbench.kernels.switches.tagged_groups`):
whether the MMAs on the first tiles overlapping the later tiles' arrival pay for three more
reductions, fences and arrivals a step. ``real_gluon_tagged_thread_poll`` is ``real_gluon_tagged``
with each loader thread checking and polling its own words alone
(:func:`rnnbench.kernels.switches.tagged_thread_poll`): no reduction of the staleness over the loader's
warps (two CTA barriers and seven shuffles a step), so whether that reduction is on the step's path,
as the cost model has it (~0.3 µs at the anchor, Triton 3.6); its ``extra_polls_per_step`` is the
busiest thread's. ``real_gluon_tagged_thread_poll_delayed`` adds the 150 ns pause before each first
load: with threads polling alone a reload costs only its own round trip, so whether fewer of them
still pay for the pause. ``real_gluon_tagged_local_gates`` is ``real_gluon_tagged`` with its gates
split inside each warp (:func:`rnnbench.kernels.switches.local_gates`: ``W_hh``'s rows reordered so that
a warp's accumulator rows hold the four gates of its units, ``xg`` loaded into registers a step
ahead): no gate split through shared memory and two CTA barriers fewer on the recurrence's path,
~0.2 µs at the anchor by the calibrated model; ``real_gluon_tagged_thread_poll_local_gates`` has both
changes, the model's first configuration under the goal's 1.96 µs (1.95, Triton 3.6, whole call).
``real_gluon_bwd_streamed`` is ``real_gluon_bwd`` with its copies streamed
(:func:`rnnbench.kernels.switches.streamed_copies`): a copier warp issues each copy of gate gradients
as soon as its own eight producers have stored them, and the MMAs start on it at once, instead of
the grid barrier's wait for every producer, then every copy (the barrier cost the backward 1.84 of
its 3.82 µs at the anchor on the H200, against 1.01 of the forward's 2.47); ``real_gluon_bwd``
minus it is what waiting for the slowest producer before the first copy costs.

**What a number is.** µs per step: the slope between launches of ``T`` and ``2T`` steps (launch,
start-up and the first barrier cancel), the median over repeats of CUDA-event timings after a
warm-up, with quartiles; inputs are random (never zeros; the batch block's rows past B are zero,
as in the kernels' exchange, so B=1 against B=16 shows what zero rows save), each launch's
barrier status is checked. Every kernel is compiled first in parallel processes (:func:`warm`),
and rows are written as they are measured, so a run cut short keeps them.
``--sweep-programs`` repeats chosen variants with fewer programs than the layout has (each still
reads the whole state), which separates what one program's step costs from what the number of
programs reading the same lines and polling the same flags adds.

    PYTHONPATH=. python3 -m rnnbench.kernels.step_bench --out reports/h100/step-ablation.csv

**Without a GPU** ``--estimate --target sm_90`` compiles every variant and writes the cost model's
estimate of each (the kernel's terms only: no projection GEMM or per-call overhead), in the same
columns, so measured and estimated can be joined per term (``real_gluon``: at the Gluon plan's
own layout, where sm_90 and the shape allow it).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import sys
from dataclasses import dataclass, replace

import torch
import triton
import triton.language as tl

from rnnbench.kernels.barrier_bench import slope_us
from rnnbench.kernels.cost import TERMS
from rnnbench.kernels.launch import (
    NUM_STAGES, BarrierTimeout, barrier_status_message, dot_precision, interpreter_active, make_plan, reset_sync,
)
from rnnbench.kernels import switches
from rnnbench.kernels.plan import (
    DEFAULT_POLL_ORDER, GATES, GLUON, MIN_BLOCK_B, PathUnavailable, Plan, gluon_input_tiles, gluon_register_tiles,
    gluon_state_copies, gluon_streamed_copies, gluon_tagged_exchange, plan_recurrence, row_split,
    tagged_exchange_refusal,
)
from rnnbench.kernels.switches import (
    first_warp_polls, local_gates, mma_chains, state_copy_tiles, streamed_copies, tagged_exchange, tagged_groups, tagged_loaders,
    tagged_poll_delay, tagged_thread_poll,
)
from rnnbench.kernels.primitives import (
    BARRIER_TIMEOUT_NS, EXTRA_POLLS_SLOT, FLAG_SLOTS, POLL_ORDERS, SYNC_ROW, barrier_arrive, barrier_wait,
    exchange_offsets, exchange_slot, gate_rows, held_product, held_weights, split_accumulator, split_dot, split_gates,
    sum_slices, tanh,
)
from rnnbench.kernels.tagged_exchange import WORD_DTYPES, encode_tagged, publish_tagged, retag_, tagged_product


@dataclass(frozen=True)
class Variant:
    """Which parts of the step a variant runs (see the module docstring)."""

    name: str
    load: bool
    mma: bool
    sync: bool
    #: the barrier's poll order (:data:`~rnnbench.kernels.primitives.POLL_ORDERS`), where ``sync``
    poll: str = "acquire"
    #: the state exchanged as tagged words (:mod:`rnnbench.kernels.tagged_exchange`): the loads wait
    #: for the step's words, no barrier (``load`` and ``mma`` only)
    tagged: bool = False
    #: with ``tagged``: a wait loads again only the words still stale, not the whole state
    stale_only: bool = False
    #: with ``sync``: the first warp of each program polls the barrier alone
    #: (:data:`rnnbench.kernels.switches.GRID_POLL_FIRST_WARP`), not every warp
    first_warp: bool = False


VARIANTS = {v.name: v for v in (
    Variant("full", load=True, mma=True, sync=True),
    Variant("no_sync", load=True, mma=True, sync=False),
    Variant("load_sync", load=True, mma=False, sync=True),
    Variant("mma_sync", load=False, mma=True, sync=True),
    Variant("load", load=True, mma=False, sync=False),
    Variant("mma", load=False, mma=True, sync=False),
    Variant("sync", load=False, mma=False, sync=True),
    Variant("full_relaxed", load=True, mma=True, sync=True, poll="relaxed"),
    Variant("sync_relaxed", load=False, mma=False, sync=True, poll="relaxed"),
    Variant("full_first_warp", load=True, mma=True, sync=True, first_warp=True),
    Variant("sync_first_warp", load=False, mma=False, sync=True, first_warp=True),
    Variant("tagged", load=True, mma=True, sync=False, tagged=True),
    Variant("tagged_stale", load=True, mma=True, sync=False, tagged=True, stale_only=True),
)}


@dataclass(frozen=True)
class RealKernel:
    """One shipped LSTM kernel as the step ablation times it (see :data:`REAL_PATHS`)."""

    path: str
    poll_order: str
    #: narrow (16-row) batch blocks allowed where the planner takes them
    narrow: bool
    #: ``fwd``, ``fwd_train`` (the Gluon training forward) or ``bwd``
    direction: str
    #: with its grid barrier (without: garbage results, the step's own chain timed)
    grid_sync: bool = True
    #: the Gluon forward's weight tiles in registers (:data:`REGISTER_WEIGHTS`)
    register_weights: str = "planned"
    #: the Gluon forward with its input projection fused (input size = H_PAD) where it can
    #: (:func:`rnnbench.kernels.plan.gluon_input_tiles`; its launches then take the input, not xg)
    fused_input: bool = False
    #: the Gluon forward's tiles per state copy (0: :func:`rnnbench.kernels.plan.gluon_state_copies`'
    #: rule), compiled, launched and estimated within :meth:`switches`
    copy_tiles: int = 0
    #: the Gluon forward with the tagged exchange (:func:`rnnbench.kernels.switches.tagged_exchange`,
    #: within :meth:`switches`) instead of its grid barrier and TMA copies of the state
    tagged: bool = False
    #: its loader's pause before each step's first load (:func:`rnnbench.kernels.switches.tagged_poll_delay`)
    poll_delay_ns: int = 0
    #: its loader partitions (:func:`rnnbench.kernels.switches.tagged_loaders`; 0: the plan's)
    loaders: int = 0
    #: its recurrent product's MMA chains (:func:`rnnbench.kernels.switches.mma_chains`; 0: the plan's)
    chains: int = 0
    #: its loader's hand-over groups (:func:`rnnbench.kernels.switches.tagged_groups`; 0: the plan's)
    groups: int = 0
    #: its loader's threads polling alone (:func:`rnnbench.kernels.switches.tagged_thread_poll`; None: the plan's)
    thread_poll: bool | None = None
    #: its recurrence's gates split inside each warp (:func:`rnnbench.kernels.switches.local_gates`; None: the plan's)
    local_gates: bool | None = None
    #: the Gluon backward's copies streamed (:func:`rnnbench.kernels.switches.streamed_copies`; None: the plan's)
    streamed: bool | None = None
    #: the grid barrier polled by each program's first warp alone
    #: (:func:`rnnbench.kernels.switches.first_warp_polls`; None: as the switch is)
    first_warp: bool | None = None

    def __post_init__(self):
        if self.register_weights not in REGISTER_WEIGHTS:
            raise ValueError(f"register_weights must be one of {REGISTER_WEIGHTS}, got {self.register_weights!r}")

    @contextlib.contextmanager
    def switches(self):
        """The context this kernel is compiled, launched and estimated in (its tiles per state copy,
        the tagged exchange, its poll delay, its loaders, its MMA chains, its loader's groups,
        whether its loader's threads poll alone, whether its gates are split inside each warp,
        whether the backward's copies are streamed, and whether the first warp polls the grid
        barrier alone)."""
        with state_copy_tiles(self.copy_tiles or None), tagged_exchange(self.tagged), \
                tagged_poll_delay(self.poll_delay_ns if self.tagged else None), \
                tagged_loaders(self.loaders if self.tagged and self.loaders else None), \
                mma_chains(self.chains if self.tagged and self.chains else None), \
                tagged_groups(self.groups if self.tagged and self.groups else None), \
                tagged_thread_poll(self.thread_poll if self.tagged else None), \
                local_gates(self.local_gates if self.tagged else None), \
                streamed_copies(self.streamed if self.direction == "bwd" else None), \
                first_warp_polls(self.first_warp):
            yield

    def plan(self, planned: Plan, dtype: torch.dtype = torch.bfloat16, multiprocessors: int | None = None) -> Plan:
        """``planned`` (the planner's plan of this kernel's path, for ``dtype``) as this variant runs it
        (a fused input projection only where the grid stays co-resident on ``multiprocessors`` SMs)."""
        tiles = {"planned": planned.register_tiles, "none": 0,
                 "any_block": gluon_register_tiles(planned.h_pad, MIN_BLOCK_B)}[self.register_weights]
        plan = replace(planned, poll_order=self.poll_order, register_tiles=tiles if planned.path == GLUON else 0)
        fused = gluon_input_tiles(plan, plan.h_pad, dtype, multiprocessors=multiprocessors, fuse=True) \
            if self.fused_input else 0
        plan = replace(plan, input_tiles=fused)
        if self.tagged and (refusal := tagged_exchange_refusal(plan, multiprocessors)):
            raise PathUnavailable(f"the tagged exchange cannot run this plan: {refusal}")
        return plan


#: :attr:`RealKernel.register_weights`: as the plan holds them (16-row batch blocks only), none (every
#: tile in shared memory), or as many as a 16-row block holds whatever the batch block
REGISTER_WEIGHTS = ("planned", "none", "any_block")


#: the pause ``real_gluon_tagged_delayed``'s loader takes before each step's first load: about half
#: the L2 round trip the H200's timings fit (~560 cycles at 1.98 GHz), so a producer that publishes up
#: to that much later than the loader's own program has landed when the first load arrives
TAGGED_POLL_DELAY_NS = 150
#: the longer pause of ``real_gluon_tagged_delayed_300``: a full such round trip. With four one-warp
#: loaders the 150 ns pause cut the reloads a step from 1.09 to 0.90 at H=768 B=16 and from 0.70 to 0
#: at H=256 B=16 (H200, 7caf667); the one loader reloaded 0.58 times a step without a pause, so two
#: pauses say whether, and how long, it should wait
TAGGED_LONG_POLL_DELAY_NS = 300

#: the shipped LSTM kernels themselves (see :func:`real_launcher`): the plain cooperative forward at
#: the same layout and the Gluon forward (sm_90, H >= 256) at its own, and the backward at its plan,
#: each as planned (the default poll order) and with the other order forced, so one run says which
#: order each kernel should use; the plain kernels in the wide batch blocks the planner no longer
#: takes where the B <= 16 layout fits one program per SM (:func:`rnnbench.kernels.plan.narrow_batch_blocks`);
#: the Gluon kernels without their grid barrier (``real_gluon_no_sync``, ``real_gluon_bwd_no_sync``:
#: no release, no poll; the CTA barriers and proxy fences stay; their results are garbage), so
#: ``real_gluon`` minus it is what the grid synchronisation costs the shipped kernel; and the Gluon
#: forward with every weight tile in shared memory (``real_gluon_shared_weights``: the kernel before
#: :func:`rnnbench.kernels.plan.gluon_register_tiles`, where the plan holds tiles in registers) and
#: with tiles in registers in 32-row batch blocks too (``real_gluon_wide_register_weights``, where
#: the plan holds none: B=64 at H >= 768); and the Gluon forward with its input projection fused
#: (``real_gluon_fused_input``: a second warpgroup projects x_t; input size = H; where it fits,
#: :func:`rnnbench.kernels.plan.gluon_input_tiles`), timed after everything else (:data:`DEFERRED`);
#: and the Gluon forward's state in copies of 8 tiles (``real_gluon_copies_8``; the plan's are 4);
#: and the Gluon forward with the tagged exchange (``real_gluon_tagged``: one loader of four warps
#: polls the state's compact words, no grid barrier; 16-row blocks, one program per SM), and the same
#: with its loader pausing :data:`TAGGED_POLL_DELAY_NS` or :data:`TAGGED_LONG_POLL_DELAY_NS` before
#: each first load (``real_gluon_tagged_delayed``, ``real_gluon_tagged_delayed_300``), and with four
#: one-warp loader partitions instead of one of four
#: warps (``real_gluon_tagged_four_loaders``), and with two MMA chains (``real_gluon_tagged_two_chains``),
#: and with its loader handing the state over in four groups of tiles (``real_gluon_tagged_groups_4``),
#: and with its loader's threads polling alone (``real_gluon_tagged_thread_poll``, and with the pause,
#: ``real_gluon_tagged_thread_poll_delayed``), and with its gates split inside each warp
#: (``real_gluon_tagged_local_gates``, and with the threads polling alone too,
#: ``real_gluon_tagged_thread_poll_local_gates``), timed last too; and the Gluon backward with its
#: copies streamed by a copier warp (``real_gluon_bwd_streamed``), timed last too; and the Gluon
#: training forward with its grid barrier (``real_gluon_train``) and with the tagged exchange
#: (``real_gluon_tagged_train``, timed last); and the plain forward and backward, the Gluon forward,
#: backward and training forward with their grid barriers polled by each program's first warp alone
#: (``real_first_warp``, ``real_bwd_first_warp``, ``real_gluon_first_warp``, ``real_gluon_bwd_first_warp``,
#: ``real_gluon_train_first_warp``; :func:`rnnbench.kernels.switches.first_warp_polls`), timed last too.
#: Every other Gluon forward variant runs
#: the grid barrier, whatever :data:`rnnbench.kernels.switches.GLUON_TAGGED_EXCHANGE` would take.
#: A variant whose plan is an earlier one's (``*_wide_rows`` wherever the rule does not apply, the
#: weight and fused-input variants where they change nothing) is not timed again.
REAL = "real"
REAL_PATHS = {REAL: RealKernel("cooperative", DEFAULT_POLL_ORDER, True, "fwd"),
              "real_relaxed": RealKernel("cooperative", "relaxed", True, "fwd"),
              "real_gluon": RealKernel("gluon", DEFAULT_POLL_ORDER, True, "fwd"),
              "real_gluon_relaxed": RealKernel("gluon", "relaxed", True, "fwd"),
              "real_gluon_no_sync": RealKernel("gluon", DEFAULT_POLL_ORDER, True, "fwd", grid_sync=False),
              "real_gluon_shared_weights": RealKernel("gluon", DEFAULT_POLL_ORDER, True, "fwd", register_weights="none"),
              "real_gluon_wide_register_weights": RealKernel("gluon", DEFAULT_POLL_ORDER, True, "fwd",
                                                             register_weights="any_block"),
              "real_gluon_fused_input": RealKernel("gluon", DEFAULT_POLL_ORDER, True, "fwd", fused_input=True),
              "real_gluon_copies_8": RealKernel("gluon", DEFAULT_POLL_ORDER, True, "fwd", copy_tiles=8),
              "real_gluon_tagged": RealKernel("gluon", DEFAULT_POLL_ORDER, True, "fwd", tagged=True),
              "real_gluon_tagged_delayed": RealKernel("gluon", DEFAULT_POLL_ORDER, True, "fwd", tagged=True,
                                                      poll_delay_ns=TAGGED_POLL_DELAY_NS),
              "real_gluon_tagged_delayed_300": RealKernel("gluon", DEFAULT_POLL_ORDER, True, "fwd", tagged=True,
                                                          poll_delay_ns=TAGGED_LONG_POLL_DELAY_NS),
              "real_gluon_tagged_four_loaders": RealKernel("gluon", DEFAULT_POLL_ORDER, True, "fwd", tagged=True,
                                                           loaders=4),
              "real_gluon_tagged_two_chains": RealKernel("gluon", DEFAULT_POLL_ORDER, True, "fwd", tagged=True,
                                                         chains=2),
              "real_gluon_tagged_groups_4": RealKernel("gluon", DEFAULT_POLL_ORDER, True, "fwd", tagged=True,
                                                       groups=4),
              "real_gluon_tagged_thread_poll": RealKernel("gluon", DEFAULT_POLL_ORDER, True, "fwd", tagged=True,
                                                          thread_poll=True),
              "real_gluon_tagged_thread_poll_delayed": RealKernel("gluon", DEFAULT_POLL_ORDER, True, "fwd",
                                                                  tagged=True, thread_poll=True,
                                                                  poll_delay_ns=TAGGED_POLL_DELAY_NS),
              "real_gluon_tagged_local_gates": RealKernel("gluon", DEFAULT_POLL_ORDER, True, "fwd", tagged=True,
                                                          local_gates=True),
              "real_gluon_tagged_thread_poll_local_gates": RealKernel("gluon", DEFAULT_POLL_ORDER, True, "fwd",
                                                                      tagged=True, thread_poll=True, local_gates=True),
              "real_wide_rows": RealKernel("cooperative", DEFAULT_POLL_ORDER, False, "fwd"),
              "real_bwd": RealKernel("cooperative", DEFAULT_POLL_ORDER, True, "bwd"),
              "real_bwd_relaxed": RealKernel("cooperative", "relaxed", True, "bwd"),
              "real_bwd_wide_rows": RealKernel("cooperative", DEFAULT_POLL_ORDER, False, "bwd"),
              "real_gluon_bwd": RealKernel("gluon", DEFAULT_POLL_ORDER, True, "bwd"),
              "real_gluon_bwd_no_sync": RealKernel("gluon", DEFAULT_POLL_ORDER, True, "bwd", grid_sync=False),
              "real_gluon_bwd_streamed": RealKernel("gluon", DEFAULT_POLL_ORDER, True, "bwd", streamed=True),
              "real_gluon_train": RealKernel("gluon", DEFAULT_POLL_ORDER, True, "fwd_train"),
              "real_gluon_tagged_train": RealKernel("gluon", DEFAULT_POLL_ORDER, True, "fwd_train", tagged=True),
              "real_first_warp": RealKernel("cooperative", DEFAULT_POLL_ORDER, True, "fwd", first_warp=True),
              "real_bwd_first_warp": RealKernel("cooperative", DEFAULT_POLL_ORDER, True, "bwd", first_warp=True),
              "real_gluon_first_warp": RealKernel("gluon", DEFAULT_POLL_ORDER, True, "fwd", first_warp=True),
              "real_gluon_bwd_first_warp": RealKernel("gluon", DEFAULT_POLL_ORDER, True, "bwd", first_warp=True),
              "real_gluon_train_first_warp": RealKernel("gluon", DEFAULT_POLL_ORDER, True, "fwd_train",
                                                        first_warp=True)}
#: variants timed after their shape's others (the goal shape's right after its own, every other
#: shape's after all of them, :func:`schedule`), and not launched by :func:`warm`: kernels that have
#: never run on a GPU, whose mbarrier waits have no timeout, so a hang in one costs few other rows
DEFERRED = ("real_gluon_fused_input", "real_gluon_tagged", "real_gluon_tagged_delayed",
            "real_gluon_tagged_delayed_300", "real_gluon_tagged_four_loaders", "real_gluon_tagged_two_chains",
            "real_gluon_tagged_groups_4", "real_gluon_tagged_thread_poll", "real_gluon_tagged_thread_poll_delayed",
            "real_gluon_tagged_local_gates", "real_gluon_tagged_thread_poll_local_gates", "real_gluon_bwd_streamed",
            "real_gluon_tagged_train", "real_first_warp", "real_bwd_first_warp", "real_gluon_first_warp",
            "real_gluon_bwd_first_warp", "real_gluon_train_first_warp")
#: (cell, hidden size, batch) timed by default, in this order (the most wanted first, so a run cut
#: short keeps them): the goal shape, the B=64 shapes the rewrite moved off the stepwise path, B=1
#: against B=16 (the same layout: what the rows cost), smaller H (fewer programs), the Elman RNN
SHAPES = (("lstm", 768, 16), ("lstm", 1024, 64), ("lstm", 768, 64), ("lstm", 256, 64), ("lstm", 768, 1), ("lstm", 256, 16),
          ("lstm", 512, 16), ("lstm", 1024, 16), ("rnn", 768, 16))
#: variants repeated with fewer programs by ``--sweep-programs``
SWEEP_VARIANTS = ("full", "load_sync", "sync", "sync_relaxed", "sync_first_warp")
#: the cost model's terms of a kernel's step (:data:`rnnbench.kernels.cost.TERMS` without what is
#: around the recurrence: its GEMMs and the per-call overhead)
KERNEL_TERMS = tuple(term for term in TERMS if term not in ("gemm", "per_call"))
BASE_COLUMNS = ["device_name", "cell", "dtype", "hidden_size", "batch", "variant", "programs", "planned_programs",
                "block_b", "block_h", "h_pad", "k_split", "k_chunks", "num_warps", "steps", "us_per_step", "q25_us",
                "q75_us", "source"]
#: a row's columns: the estimate's per-term µs (``t_*``, empty in measured rows) after the base ones,
#: so measured and estimated rows join term by term (:mod:`rnnbench.kernels.calibration`)
#: then, for the tagged exchange's kernels, the polls beyond each step's first (measured rows,
#: :func:`extra_polls`) and the model's µs per step where every first load finds the state complete
#: (estimated rows; their ``us_per_step`` assumes one reload a step)
COLUMNS = BASE_COLUMNS + [f"t_{term}" for term in KERNEL_TERMS] + ["extra_polls_per_step", "first_load_complete_us"]


def read_rows(path, source: str, with_terms: bool = False):
    """The rows of a step-ablation CSV (:data:`COLUMNS`) whose ``source`` starts with ``source``
    (``"measured"`` or ``"estimate"``), as a DataFrame; ``with_terms``: the per-term columns must be
    there too (estimates of this version). Raises ``ValueError`` naming the file otherwise."""
    import pandas as pd

    frame = pd.read_csv(path)
    missing = [column for column in (COLUMNS if with_terms else BASE_COLUMNS) if column not in frame.columns]
    if missing:
        raise ValueError(f"{path} is not a step-ablation CSV of this version (rnnbench.kernels.step_bench): "
                         f"it lacks {missing}")
    frame = frame[frame.source.astype(str).str.startswith(source)]
    if frame.empty:
        raise ValueError(f"{path} has no rows whose source is {source!r}")
    return frame


def whole_grid(frame):
    """The rows of variants run on their layout's whole grid (the shipped kernels at their own
    plans), not the program sweep's."""
    return frame[frame.variant.str.startswith("real") | (frame.programs == frame.planned_programs)]


@triton.jit
def _resident_product(blocks, states, offset, M: tl.constexpr, BLOCK_B: tl.constexpr, BLOCKS: tl.constexpr,
                      K_SPLIT: tl.constexpr, BK: tl.constexpr, DOT_PRECISION: tl.constexpr, M_SPLIT: tl.constexpr):
    """:func:`~rnnbench.kernels.primitives.held_product` of state blocks already in registers, plus
    ``offset`` (float32, a step's) in every element. The offset starts the accumulator, so the
    product changes from step to step and stays in the loop: with a constant accumulator the whole
    product is loop-invariant, the compiler hoisted it out of the time loop, and the ``mma``
    variants timed an empty step (0.04-0.06 µs on the H200)."""
    acc = split_accumulator(M, BLOCK_B, K_SPLIT, M_SPLIT) + offset / K_SPLIT  # the slices' sum adds it once
    for q in tl.static_range(BLOCKS):
        acc = split_dot(blocks[q], states[q], acc, M, BLOCK_B, K_SPLIT, BK, DOT_PRECISION, M_SPLIT)
    return sum_slices(acc, M, BLOCK_B, K_SPLIT, M_SPLIT)


@triton.jit
def _loaded_sum(a_ptr, read, M: tl.constexpr, BLOCK_B: tl.constexpr, BLOCKS: tl.constexpr, K_SPLIT: tl.constexpr,
                BK: tl.constexpr):
    """The state blocks of an exchange slot loaded as :func:`held_product` loads them, averaged per
    row over the ``H_PAD`` columns and broadcast to ``(M, BLOCK_B)`` float32 (the ``load``
    variants' stand-in for the product; an average, so the tanh after it does not saturate)."""
    total = tl.zeros((K_SPLIT, BK, BLOCK_B), tl.float32)
    for q in tl.static_range(BLOCKS):
        total += tl.load(a_ptr + q * (K_SPLIT * BK) + read, cache_modifier=".cg").to(tl.float32)
    mean = tl.sum(tl.sum(total, axis=1), axis=0) * (1.0 / (BLOCKS * K_SPLIT * BK))
    return tl.zeros((M, BLOCK_B), tl.float32) + mean[None, :]


@triton.jit(do_not_specialize=["T"])
def step_ablation_kernel(
    w_ptr, exchange_ptr, sync_ptr, T, H, w_stride,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, H_PAD: tl.constexpr, K_SPLIT: tl.constexpr, K_CHUNKS: tl.constexpr,
    GATES: tl.constexpr, LOAD: tl.constexpr, MMA: tl.constexpr, SYNC: tl.constexpr, POLL: tl.constexpr,
    DOT_PRECISION: tl.constexpr, M_SPLIT: tl.constexpr, ORDER: tl.constexpr, TAGGED: tl.constexpr,
    WRITTEN: tl.constexpr, POLL_VECTOR: tl.constexpr, STALE_ONLY: tl.constexpr, FIRST_WARP: tl.constexpr,
):
    """``T`` steps of the parts of a cooperative forward step that ``LOAD``, ``MMA`` and ``SYNC``
    select, one batch block of ``BLOCK_B`` rows, program p owning units ``[p*BLOCK_H, (p+1)*BLOCK_H)``.

    Layouts: ``w (GATES*H, w_stride)`` the recurrent weights; ``exchange (2, BLOCK_B, H_PAD)`` the
    two state slots (slot 1 read by step 0), columns past H zero; ``sync`` int32 ``(SYNC_ROW)``,
    reset for each launch (:func:`rnnbench.kernels.launch.reset_sync`). Step s writes
    ``tanh(sum of the unit's gates)`` of its product (or stand-in, see :func:`_loaded_sum`) into
    slot ``s % 2``. ``TAGGED``: ``exchange`` holds tagged
    words of ``w``'s dtype (:mod:`rnnbench.kernels.tagged_exchange`, the initial state tag 0; the
    programs write ``WRITTEN`` columns, all of their tiles) and ``sync``'s status word reports a
    wait that timed out; with ``STALE_ONLY`` a wait loads again only the words still stale.
    ``FIRST_WARP``: the barrier polled by each program's first warp alone.
    """
    BK: tl.constexpr = H_PAD // (K_SPLIT * K_CHUNKS)
    M: tl.constexpr = GATES * BLOCK_H
    rows = tl.arange(0, BLOCK_B)
    units = tl.program_id(0) * BLOCK_H + tl.arange(0, BLOCK_H)
    read, write = exchange_offsets(rows, units, H_PAD, K_SPLIT, BK)
    w_rows, w_valid = gate_rows(H, GATES, BLOCK_H)
    blocks = held_weights(w_ptr, w_rows * w_stride, w_valid, 0, w_stride, 1, K_CHUNKS, K_CHUNKS, K_SPLIT, BK, M_SPLIT)
    states = ()
    for q in tl.static_range(K_CHUNKS):
        states = states + (tl.load(exchange_slot(exchange_ptr, 1, H_PAD, BLOCK_B) + q * (K_SPLIT * BK) + read),)
    for s in range(T):
        previous = exchange_slot(exchange_ptr, s + 1, H_PAD, BLOCK_B)
        if TAGGED:
            pre = tagged_product(blocks, previous, read, s, sync_ptr + FLAG_SLOTS, BARRIER_TIMEOUT_NS, M, BLOCK_B,
                                 K_CHUNKS, K_SPLIT, BK, DOT_PRECISION, w_ptr.dtype.element_ty, WRITTEN, M_SPLIT,
                                 STALE_ONLY)
        elif MMA and LOAD:
            pre = held_product(blocks, previous, read, M, BLOCK_B, K_CHUNKS, K_SPLIT, BK, DOT_PRECISION, M_SPLIT)
        elif MMA:
            pre = _resident_product(blocks, states, (s % 7) * 0.125, M, BLOCK_B, K_CHUNKS, K_SPLIT, BK, DOT_PRECISION,
                                    M_SPLIT)
        elif LOAD:
            pre = _loaded_sum(previous, read, M, BLOCK_B, K_CHUNKS, K_SPLIT, BK)
        else:
            pre = tl.zeros((M, BLOCK_B), tl.float32) + (s % 7) * 0.125
        if GATES == 4:
            i, f, g, o = split_gates(pre, BLOCK_H, BLOCK_B)
            h = tanh(i + f + g + o)
        else:
            h = tanh(pre)
        if TAGGED:  # every unit of the tile (those past H are zero)
            publish_tagged(exchange_slot(exchange_ptr, s, H_PAD, BLOCK_B) + write, h.to(w_ptr.dtype.element_ty), s + 1,
                           None)
        else:
            tl.store(exchange_slot(exchange_ptr, s, H_PAD, BLOCK_B) + write, h.to(exchange_ptr.dtype.element_ty),
                     mask=(units < H)[:, None])
        if SYNC:
            barrier_arrive(sync_ptr, tl.program_id(0))
            barrier_wait(sync_ptr, tl.num_programs(0), s + 1, BARRIER_TIMEOUT_NS, POLL, ORDER, POLL_VECTOR, FIRST_WARP)


def _constexprs(plan: Plan, variant: Variant, dtype: torch.dtype, programs: int | None = None) -> dict:
    """The kernel's compile-time arguments for ``variant`` on ``programs`` programs (default: the
    layout's hidden blocks; only the tagged variants compile differently for fewer)."""
    programs = plan.grid[0] if programs is None else programs
    return dict(BLOCK_B=plan.block_b, BLOCK_H=plan.block_h, H_PAD=plan.h_pad, K_SPLIT=plan.k_split,
                K_CHUNKS=plan.k_chunks, GATES=GATES[plan.cell], LOAD=variant.load, MMA=variant.mma, SYNC=variant.sync,
                POLL=plan.poll, POLL_VECTOR=plan.poll_vector, DOT_PRECISION=dot_precision(dtype),
                M_SPLIT=row_split(plan.cell, False, plan.k_split, plan.num_warps), ORDER=POLL_ORDERS[variant.poll],
                TAGGED=variant.tagged, WRITTEN=min(plan.h_pad, programs * plan.block_h) if variant.tagged else 0,
                STALE_ONLY=variant.stale_only, FIRST_WARP=variant.first_warp)


def ablation_buffers(plan: Plan, hidden_size: int, batch: int, dtype: torch.dtype, device, seed: int = 0,
                     tagged: bool = False):
    """Random ``(w, exchange, sync)`` for :func:`step_ablation_kernel`: ``w`` scaled by
    ``1/sqrt(H)``, the state of the first ``batch`` rows (at most one batch block: the kernel runs the
    first block's programs) in ``[-1, 1)`` (the other rows of the block and the columns past H zero,
    as in the kernels' exchange), the flags zero; ``tagged``: the state as tagged words (the
    :data:`Variant.tagged` variants; the same values for the same seed)."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    rows = GATES[plan.cell] * hidden_size
    stride = -(-hidden_size // 16) * 16
    w = torch.zeros(rows, stride, dtype=dtype)
    w[:, :hidden_size] = (torch.rand(rows, hidden_size, generator=generator) * 2 - 1) / hidden_size ** 0.5
    exchange = torch.zeros(2, plan.block_b, plan.h_pad, dtype=dtype)
    filled = min(batch, plan.block_b)
    exchange[:, :filled, :hidden_size] = torch.rand(2, filled, hidden_size, generator=generator) * 2 - 1
    sync = torch.zeros(int(SYNC_ROW.value), dtype=torch.int32)
    if tagged:
        exchange = encode_tagged(exchange)
    return w.to(device), exchange.to(device), sync.to(device)


def run_ablation(plan: Plan, variant: Variant, hidden_size: int, steps: int, buffers, programs: int | None = None) -> None:
    """Launch :func:`step_ablation_kernel` once for ``steps`` steps on ``programs`` programs (default:
    the layout's hidden blocks); raises :class:`~rnnbench.kernels.launch.BarrierTimeout` when a barrier
    timed out (the status word is read, so this waits for the kernel)."""
    programs = plan.grid[0] if programs is None else programs
    if not 1 <= programs <= plan.grid[0]:
        raise ValueError(f"programs must be in [1, {plan.grid[0]}] (the layout's hidden blocks), got {programs}")
    w, exchange, sync = buffers
    if variant.tagged != (exchange.dtype == WORD_DTYPES.get(w.element_size() * 8)):
        raise ValueError(f"variant {variant.name!r} needs {'tagged words' if variant.tagged else 'a state'} of "
                         f"{w.dtype} in its exchange (ablation_buffers(..., tagged={variant.tagged})), got {exchange.dtype}")
    if variant.tagged:
        retag_(exchange, 0)  # a launch starts from the state after 0 steps
    reset_sync(sync, programs)
    options = dict(num_warps=plan.num_warps, num_stages=NUM_STAGES, maxnreg=plan.max_registers)
    if not interpreter_active():
        options["launch_cooperative_grid"] = True
    step_ablation_kernel[(programs, 1)](w, exchange, sync, steps, hidden_size, w.stride(0),
                                        **_constexprs(plan, variant, w.dtype, programs), **options)
    if (variant.sync or variant.tagged) and sync.is_cuda:
        status = sync[int(FLAG_SLOTS.value)].reshape(1).cpu()
        message = barrier_status_message(status, f"step_ablation_kernel ({variant.name})")
        if message is not None:
            raise BarrierTimeout(message)


def real_launcher(plan: Plan, hidden_size: int, batch: int, dtype: torch.dtype, steps: int, direction: str = "fwd",
                  grid_sync: bool = True, sync: torch.Tensor | None = None, trace: torch.Tensor | None = None):
    """``launch(count)`` for ``count`` in ``(steps, 2*steps)``: one launch of the shipped LSTM forward
    kernel (inference) that ``plan`` describes (the plain kernel, or the Gluon one where ``plan.path``
    is ``gluon``) for ``batch`` rows, random gate inputs and initial state, no projection GEMM (the
    kernel's launch and its buffers are what is timed); ``direction="fwd_train"``: the Gluon training
    forward (it overwrites the gate inputs with the activated gates and stores every step's cell
    state, as a forward before a backward does; later launches start from those gates, which only
    the timing sees); ``direction="bwd"``: the reverse-time
    backward kernel (:func:`_backward_launcher`); ``grid_sync=False``: a Gluon kernel without its
    grid barrier (garbage results; the plain kernels have no such switch); ``sync``: the Gluon
    forward's synchronisation buffer, the caller's (:func:`extra_polls` reads its counters); ``trace``:
    the traced Gluon forward writes its timestamps there (:mod:`rnnbench.kernels.step_trace`)."""
    from rnnbench.kernels.launch import exchange_buffer, run_phases
    from rnnbench.kernels.lstm_kernels import lstm_forward_kernel

    if not grid_sync and plan.path != GLUON:
        raise ValueError(f"only the Gluon kernels run without their grid barrier, not the {plan.path} ones")
    if trace is not None and (plan.path != GLUON or direction != "fwd"):
        raise ValueError(f"only the Gluon forward is traced, not the {plan.path} {direction} kernel")
    if direction == "bwd":
        return _backward_launcher(plan, hidden_size, batch, dtype, steps, grid_sync)
    if direction not in ("fwd", "fwd_train") or (direction == "fwd_train" and (plan.path != GLUON or plan.input_tiles)):
        raise ValueError(f"direction must be fwd, bwd or (the Gluon forward without a fused input) fwd_train, got "
                         f"{direction!r} for the {plan.path} kernel")
    training = direction == "fwd_train"
    device = "cuda"
    generator = torch.Generator(device=device).manual_seed(1)
    w_hh = ablation_buffers(plan, hidden_size, batch, dtype, device)[0]
    # the gate inputs xg, or with a fused input projection the input x (input size = H_PAD)
    width = plan.h_pad if plan.input_tiles else 4 * hidden_size
    states = {count: (torch.rand(count, batch, width, generator=generator, device=device).to(dtype) * 2 - 1)
              for count in (steps, 2 * steps)}
    if plan.input_tiles:
        from rnnbench.kernels.gluon_lstm import fused_input_arguments

        w_ih = (torch.rand(1, 4 * hidden_size, plan.h_pad, generator=generator, device=device) * 0.1 - 0.05).to(dtype)
        bias = torch.rand(1, 4 * hidden_size, generator=generator, device=device) * 0.2 - 0.1
    h0 = torch.rand(1, batch, hidden_size, generator=generator, device=device).to(dtype)
    c0 = torch.zeros(1, batch, hidden_size, dtype=torch.float32, device=device) + 0.5
    no_lengths = torch.zeros(1, dtype=torch.int32, device=device)

    def launch(count: int) -> None:
        y = torch.empty(count, batch, hidden_size, dtype=dtype, device=device)
        c_n = torch.empty(1, batch, hidden_size, dtype=torch.float32, device=device)
        exchange = exchange_buffer(plan, 1, y, first=h0)
        if plan.path == GLUON:
            from rnnbench.kernels.gluon_lstm import run_forward

            if plan.input_tiles:
                run_forward(plan, None, w_hh, c0, y, y, c_n, exchange, no_lengths, (count, batch, hidden_size),
                            training=False, has_lengths=False, grid_sync=grid_sync,
                            fused_input=fused_input_arguments(states[count], w_ih, bias, torch.zeros_like(bias)),
                            sync=sync, trace=trace)
            else:
                c_all = torch.empty(1, count, batch, hidden_size, dtype=torch.float32, device=device) if training else y
                run_forward(plan, states[count], w_hh, c0, y, c_all, c_n, exchange, no_lengths,
                            (count, batch, hidden_size), training=training, has_lengths=False, grid_sync=grid_sync,
                            sync=sync, trace=trace)
        else:
            run_phases(lstm_forward_kernel, plan, count, (states[count], w_hh, h0, c0, y, y, c_n, exchange, no_lengths),
                       (count, batch, hidden_size, w_hh.stride(0)), device, TRAINING=False,
                       DOT_PRECISION=dot_precision(dtype), HAS_LENGTHS=False)

    return launch


def extra_polls(plan: Plan, hidden_size: int, batch: int, dtype: torch.dtype, steps: int) -> float:
    """Polls per program and step beyond the first of the Gluon forward with the tagged exchange
    (``plan``, inside :func:`rnnbench.kernels.switches.tagged_exchange`), from one launch of ``steps``
    steps by :func:`real_launcher`: 0 where every step's first load found the state complete, 1
    where each step loaded its stale words once more (what the cost model assumes). Of the
    :data:`~rnnbench.kernels.switches.GLUON_TAGGED_LOADERS` loader warps, which poll each on its
    own tiles, the busiest's: a step waits for its slowest loader (the busiest warp's average is a
    lower bound of the average of each step's slowest)."""
    from rnnbench.kernels.launch import check_barriers, sync_buffer
    from rnnbench.kernels.switches import GLUON_TAGGED_LOADERS

    sync = sync_buffer(plan, "cuda")
    real_launcher(plan, hidden_size, batch, dtype, steps, sync=sync)(steps)
    check_barriers(wait=True)
    first = int(EXTRA_POLLS_SLOT.value)
    per_warp = sync[..., first:first + GLUON_TAGGED_LOADERS].reshape(-1, GLUON_TAGGED_LOADERS).sum(0)
    # step 0 reads h0 unchecked: the polls are those of steps 1 ... steps-1
    return float(per_warp.max().item()) / (max(steps - 1, 1) * plan.programs)


def _backward_launcher(plan: Plan, hidden_size: int, batch: int, dtype: torch.dtype, steps: int,
                       grid_sync: bool = True):
    """:func:`real_launcher` of the LSTM backward kernel (``plan`` a backward plan): activated gates in
    ``(0, 1)``, cell states, upstream gradients random, no GEMM around it. The kernel turns the gates
    into gate gradients in place, so a repeat reads gradients as gates: the same instructions on other
    values (the timing does not depend on them)."""
    from rnnbench.kernels.launch import exchange_buffer, run_phases
    from rnnbench.kernels.lstm_kernels import lstm_backward_kernel

    device = "cuda"
    generator = torch.Generator(device=device).manual_seed(2)

    def uniform(*shape, dtype=dtype, low=-1.0):
        """Uniform in ``[low, 1)``."""
        return (torch.rand(*shape, generator=generator, device=device) * (1 - low) + low).to(dtype)

    w_hh = ablation_buffers(plan, hidden_size, batch, dtype, device)[0]
    # (activated gates, float32 cell states, upstream gradient of y) of each launch length
    buffers = {count: (uniform(1, count, batch, 4 * hidden_size, low=0.0),
                       uniform(1, count, batch, hidden_size, dtype=torch.float32), uniform(count, batch, hidden_size))
               for count in (steps, 2 * steps)}
    c0, dh_n, dc_n = (uniform(1, batch, hidden_size) for _ in range(3))
    dh0, dc0 = (torch.empty(1, batch, hidden_size, dtype=torch.float32, device=device) for _ in range(2))
    no_lengths = torch.zeros(1, dtype=torch.int32, device=device)

    def launch(count: int) -> None:
        gates, c_all, dy = buffers[count]
        exchange = exchange_buffer(plan, 4, dy)
        if plan.path == GLUON:
            from rnnbench.kernels.gluon_lstm_backward import run_backward

            run_backward(plan, gates, w_hh[None, :, :hidden_size].contiguous(), c_all, c0, dy, dh_n, dc_n, dh0, dc0,
                         exchange, no_lengths, (count, batch, hidden_size), has_lengths=False, grid_sync=grid_sync)
        else:
            run_phases(lstm_backward_kernel, plan, count + 1,
                       (gates, w_hh, c_all, c0, dy, dh_n, dc_n, dh0, dc0, exchange, no_lengths),
                       (count, batch, hidden_size, w_hh.stride(0)), device, DOT_PRECISION=dot_precision(dtype),
                       HAS_LENGTHS=False)

    return launch


def _runs(plan: Plan, cell: str, sweep: tuple[int, ...], deferred: bool = False,
          left_out: tuple[str, ...] = ()) -> list[tuple[str, int]]:
    """``(variant, programs)`` timed for one shape, the most wanted first (a run cut short by its
    time limit keeps them): every variant on the whole grid, the shipped kernels (LSTM), then the
    sweep's variants on fewer programs; ``deferred``: the :data:`DEFERRED` ones only, but those
    ``left_out``."""
    if deferred:
        return [(name, plan.grid[0]) for name in DEFERRED if name not in left_out] if cell == "lstm" else []
    runs = [(name, plan.grid[0]) for name in VARIANTS]
    if cell == "lstm":
        runs += [(name, plan.grid[0]) for name in REAL_PATHS if name not in DEFERRED]
    return runs + [(name, count) for name in SWEEP_VARIANTS for count in sweep if count < plan.grid[0]]


def _switched(kernel: RealKernel, plan: Plan) -> tuple | None:
    """What of a Gluon kernel the switches decide as ``kernel`` runs ``plan``, so that two variants
    with the same plan and these are one kernel, timed once (None for any other kernel). The
    forward: ``((copies, tiles per copy), tagged exchange, its poll delay, its loader partitions,
    its MMA chains, its loader's groups, its threads polling alone, its gates split inside each
    warp)`` of its state (delay, loaders, chains and groups 0, no thread polls and no local gates
    without the exchange). The backward: ``(streamed copies,)``. Each ends with whether the first
    warp polls the grid barrier alone (a plain cooperative kernel's tuple holds that alone)."""
    with kernel.switches():
        first_warp = switches.GRID_POLL_FIRST_WARP
        if plan.path != GLUON or kernel.path != GLUON:
            return (first_warp,) if plan.path == "cooperative" else None
        if kernel.direction == "bwd":
            return (gluon_streamed_copies(plan), first_warp)
        tagged = gluon_tagged_exchange(plan, training=kernel.direction == "fwd_train")
        return (gluon_state_copies(plan.h_pad), tagged, kernel.poll_delay_ns if tagged else 0,
                switches.GLUON_TAGGED_LOADERS if tagged else 0, switches.GLUON_MMA_CHAINS if tagged else 0,
                switches.GLUON_TAGGED_GROUPS if tagged else 0, switches.GLUON_TAGGED_THREAD_POLL and tagged,
                switches.GLUON_LOCAL_GATES and tagged, first_warp and not tagged)


def _real_plan(name: str, cell: str, hidden_size: int, batch: int, dtype: torch.dtype) -> Plan:
    """The plan the shipped kernel ``name`` (:data:`REAL_PATHS`) runs this shape with on this GPU
    (:class:`~rnnbench.kernels.plan.PathUnavailable` where it cannot, e.g. Gluon off sm_90)."""
    kernel = REAL_PATHS[name]
    like = torch.empty(0, dtype=dtype, device="cuda")
    planned = make_plan(cell, hidden_size, batch, like, kernel.path, backward=kernel.direction == "bwd",
                        allow_narrow=kernel.narrow)
    return kernel.plan(planned, dtype, torch.cuda.get_device_properties().multi_processor_count)


def _warm(task: tuple[str, int, int, str, str]) -> str | None:
    """Compile one ``(cell, hidden size, batch, dtype name, variant)`` into Triton's cache by
    launching it for one step (a worker process's job); returns the error, if any."""
    cell, hidden_size, batch, dtype_name, name = task
    dtype = getattr(torch, dtype_name)
    try:
        if name in REAL_PATHS:
            with REAL_PATHS[name].switches():
                real_launcher(_real_plan(name, cell, hidden_size, batch, dtype), hidden_size, batch, dtype, 1,
                              REAL_PATHS[name].direction, REAL_PATHS[name].grid_sync)(1)
        else:
            plan = make_plan(cell, hidden_size, batch, torch.empty(0, dtype=dtype, device="cuda"), "cooperative")
            buffers = ablation_buffers(plan, hidden_size, batch, dtype, "cuda", tagged=VARIANTS[name].tagged)
            run_ablation(plan, VARIANTS[name], hidden_size, 1, buffers)
        torch.cuda.synchronize()
    except Exception as error:  # reported by the parent; the timing loop reports it again
        return f"{task}: {type(error).__name__}: {error}"
    return None


def warm(shapes, dtype: torch.dtype, jobs: int) -> None:
    """Compile every kernel :func:`measure` will launch in ``jobs`` processes first (filling
    Triton's on-disk cache), so the timing loop does not compile ~60 kernels one by one."""
    import multiprocessing
    import time
    from concurrent.futures import ProcessPoolExecutor

    name = str(dtype).removeprefix("torch.")
    tasks = [(cell, hidden_size, batch, name, variant) for cell, hidden_size, batch in shapes
             for variant in [*VARIANTS, *(REAL_PATHS if cell == "lstm" else [])] if variant not in DEFERRED]
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        errors = [error for error in pool.map(_warm, tasks) if error]
    for error in errors:
        print(f"warm-up: {error}", file=sys.stderr)
    print(f"compiled {len(tasks)} kernels in {jobs} processes in {time.perf_counter() - start:.1f} s", flush=True)


def _row(plan: Plan, cell: str, dtype: torch.dtype, hidden_size: int, batch: int, variant: str, programs: int,
         steps: int, stats, source: str, device_name: str, terms: dict | None = None) -> dict:
    median, q25, q75 = stats
    row = {"device_name": device_name, "cell": cell, "dtype": str(dtype).removeprefix("torch."),
           "hidden_size": hidden_size, "batch": batch, "variant": variant, "programs": programs,
           "planned_programs": plan.grid[0], "block_b": plan.block_b, "block_h": plan.block_h, "h_pad": plan.h_pad,
           "k_split": plan.k_split, "k_chunks": plan.k_chunks, "num_warps": plan.num_warps, "steps": steps,
           "us_per_step": round(median, 4), "q25_us": round(q25, 4), "q75_us": round(q75, 4), "source": source}
    return row | {f"t_{term}": round(terms[f"t_{term}"], 4) if terms else "" for term in KERNEL_TERMS} \
        | {"extra_polls_per_step": "", "first_load_complete_us": ""}


def schedule(shapes, deferred: bool = True) -> list[tuple[bool, tuple[str, int, int]]]:
    """The order :func:`measure` times ``shapes`` in, as ``(deferred pass, shape)``: the first shape
    (the goal's) with its :data:`DEFERRED` variants right after its others, since those are what a
    run is most wanted for and a run cut short by its time limit should keep them; then every
    other shape, and their deferred variants after all of them (a hang in a never-run kernel costs
    no other shape's row). ``deferred=False``: no deferred pass."""
    passes = (False, True) if deferred else (False,)
    return [(later, shape) for later in passes for shape in shapes[:1]] + \
        [(later, shape) for later in passes for shape in shapes[1:]]


def measure(shapes, dtype: torch.dtype, steps: int, repeats: int, sweep: tuple[int, ...], deferred: bool = True,
            left_out: tuple[str, ...] = ()):
    """Time every variant of every shape on the current GPU in the order of :func:`schedule`,
    yielding a row (:data:`COLUMNS`) as each is measured (``deferred=False``: the :data:`DEFERRED`
    variants not at all; ``left_out``: those of them not); a variant that fails is reported on
    stderr and skipped."""
    device_name = torch.cuda.get_device_name()
    like = torch.empty(0, dtype=dtype, device="cuda")
    timed_plans: dict[tuple, list] = {}  # per shape: the (plan, direction, grid_sync, switches) of the kernels timed
    for later, (cell, hidden_size, batch) in schedule(shapes, deferred):
        plan = make_plan(cell, hidden_size, batch, like, "cooperative")
        if not later:
            buffers = {tagged: ablation_buffers(plan, hidden_size, batch, dtype, "cuda", tagged=tagged)
                       for tagged in (False, True)}
        real_plans = timed_plans.setdefault((cell, hidden_size, batch), [])
        for name, programs in _runs(plan, cell, sweep, later, left_out):
            timed = plan
            polls = None  # the tagged exchange's extra polls a step, where a kernel has it
            try:
                if name in REAL_PATHS:
                    kernel = REAL_PATHS[name]
                    timed = _real_plan(name, cell, hidden_size, batch, dtype)
                    direction, grid_sync = kernel.direction, kernel.grid_sync
                    switched = _switched(kernel, timed)
                    if (timed, direction, grid_sync, switched) in real_plans:
                        continue
                    real_plans.append((timed, direction, grid_sync, switched))
                    programs = timed.programs
                    with kernel.switches():
                        stats = slope_us(real_launcher(timed, hidden_size, batch, dtype, steps, direction, grid_sync),
                                         steps, repeats)
                        polls = extra_polls(timed, hidden_size, batch, dtype, steps) \
                            if kernel.tagged and direction == "fwd" else None
                else:
                    variant = VARIANTS[name]
                    stats = slope_us(lambda count: run_ablation(plan, variant, hidden_size, count, buffers[variant.tagged],
                                                                programs), steps, repeats)
            except Exception as error:  # a launch the driver refuses or a barrier timeout: report it, keep the rest
                print(f"{cell} H={hidden_size} B={batch} {name} programs={programs}: {type(error).__name__}: {error}",
                      file=sys.stderr)
                continue
            print(f"{cell:4s} H={hidden_size:5d} B={batch:3d} {name:10s} {programs:4d} programs: {stats[0]:7.3f} us/step"
                  + ("" if polls is None else f", {polls:.3f} extra polls/step"), flush=True)
            row = _row(timed, cell, dtype, hidden_size, batch, name, programs, steps, stats, "measured", device_name)
            yield row | ({} if polls is None else {"extra_polls_per_step": round(polls, 4)})


def estimate(shapes, dtype: torch.dtype, arch: int, workers: int | None = None) -> list[dict]:
    """The cost model's µs per step of every variant of ``shapes``, compiled for ``sm_<arch>`` without a
    GPU, one compiler process per shape (the ``real`` rows are the shipped kernel's estimate,
    inference forward)."""
    from rnnbench.kernels.aot import compile_all

    name = str(dtype).removeprefix("torch.")
    per_shape = compile_all(arch, [(cell, hidden_size, batch, name) for cell, hidden_size, batch in shapes], workers,
                            job=_estimate_shape)
    return [row for rows in per_shape for row in rows]


def compile_variant(plan: Plan, variant: Variant, dtype: torch.dtype, arch: int):
    """The ``triton.compile`` result of :func:`step_ablation_kernel` for ``variant`` at ``plan``'s
    layout on ``sm_<arch>``, pointers and the weight stride specialised as they run."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from rnnbench.kernels.aot import TRITON_TYPES

    data = TRITON_TYPES[str(dtype).removeprefix("torch.")]
    words = "*i32" if dtype.itemsize == 2 else "*i64"
    constexprs = _constexprs(plan, variant, dtype)
    signature = {"w_ptr": "*" + data, "exchange_ptr": words if variant.tagged else "*" + data, "sync_ptr": "*i32",
                 "T": "i32", "H": "i32", "w_stride": "i32"} | {key: "constexpr" for key in constexprs}
    aligned = {(index,): [["tt.divisibility", 16]] for index in (0, 1, 2, 5)}
    source = ASTSource(fn=step_ablation_kernel, signature=signature, constexprs=constexprs, attrs=aligned)
    return triton.compile(source, target=GPUTarget("cuda", arch, 32),
                          options={"num_warps": plan.num_warps, "num_stages": NUM_STAGES, "maxnreg": plan.max_registers,
                                   "launch_cooperative_grid": True})


def variant_sass(task: tuple[str, int, int, str, str], arch: int, multiprocessors: int = 132) -> str:
    """SASS of one ``(cell, hidden size, batch, dtype name, variant)`` compiled for ``sm_<arch>`` at the
    planned cooperative layout (a job for :func:`rnnbench.kernels.aot.compile_all`, whose fresh
    processes compile even where this one runs the interpreter)."""
    from rnnbench.kernels.sass import disassemble

    cell, hidden_size, batch, dtype_name, name = task
    dtype = getattr(torch, dtype_name)
    plan = plan_recurrence(cell, hidden_size, batch, dtype, "cooperative", multiprocessors, arch=arch)
    return disassemble(compile_variant(plan, VARIANTS[name], dtype, arch).asm["cubin"])


def _estimate_shape(shape: tuple[str, int, int, str], arch: int, multiprocessors: int = 132) -> list[dict]:
    """:func:`estimate` of one ``(cell, hidden size, batch, dtype name)`` (a worker process's job)."""
    from rnnbench.kernels.aot import KernelConfig, compile_sass, cubin_resources
    from rnnbench.kernels.cost import step_estimate
    from rnnbench.kernels.sass import disassemble
    from rnnbench.kernels.shared_layouts import extra_wavefronts

    cell, hidden_size, batch, dtype_name = shape
    dtype = getattr(torch, dtype_name)
    # one batch block is benchmarked: the layout's batch blocks are independent of each other
    plan = plan_recurrence(cell, hidden_size, batch, dtype, "cooperative", multiprocessors, arch=arch)

    def kernel_estimate(sass: str, registers: int, shared_bytes: int, plan: Plan, direction: str = "fwd",
                        first_load_complete: bool = False, conflicts: float = 0.0) -> tuple[tuple, dict]:
        """``((value, value, value), terms)``: the kernel's estimated µs per step as the three
        statistics of a row, and its terms (``conflicts``: its bank conflicts' extra wavefronts, see
        :func:`~rnnbench.kernels.cost.step_estimate`)."""
        terms = step_estimate(sass, plan, registers, shared_bytes, dtype=dtype, hidden_size=hidden_size, batch=batch,
                              direction=direction, arch=arch, first_load_complete=first_load_complete,
                              ldsm_extra_wavefronts=conflicts)
        value = sum(terms[f"t_{term}"] for term in KERNEL_TERMS)
        return (value, value, value), terms

    rows = []
    for variant in VARIANTS.values():
        compiled = compile_variant(plan, variant, dtype, arch)
        registers, _ = cubin_resources(compiled.asm["cubin"])
        with first_warp_polls(variant.first_warp):  # what the model reads of who polls
            stats, terms = kernel_estimate(disassemble(compiled.asm["cubin"]), registers,
                                           int(compiled.metadata.shared), plan,
                                           conflicts=extra_wavefronts(compiled.asm["ttgir"]))
        rows.append(_row(plan, cell, dtype, hidden_size, batch, variant.name, plan.grid[0], 0, stats,
                         f"estimate sm_{arch}", "", terms))
    if cell == "lstm":
        real_plans = []
        for name, kernel in REAL_PATHS.items():
            if not kernel.grid_sync:  # the AOT configurations compile the shipped kernels only
                continue
            direction = kernel.direction
            try:
                real = kernel.plan(plan_recurrence(cell, hidden_size, batch, dtype, kernel.path, multiprocessors,
                                                   arch=arch, allow_narrow=kernel.narrow, backward=direction == "bwd"),
                                   dtype, multiprocessors)
            except PathUnavailable:  # the Gluon kernel off sm_90, in fp32 or below H=256
                continue
            switched = _switched(kernel, real)
            if (real, direction, switched) in real_plans:
                continue
            real_plans.append((real, direction, switched))
            with kernel.switches():
                resources, sass = compile_sass(KernelConfig.from_plan(real, dtype_name, direction), arch)
                stats, terms = kernel_estimate(sass, resources.registers, resources.shared_bytes, real, direction,
                                               conflicts=resources.ldsm_extra_wavefronts)
                complete = kernel_estimate(sass, resources.registers, resources.shared_bytes, real, direction, True,
                                           resources.ldsm_extra_wavefronts)[0][0] if kernel.tagged and switched[1] else None
            row = _row(real, cell, dtype, hidden_size, batch, name, real.programs, 0, stats, f"estimate sm_{arch}", "",
                       terms)
            rows.append(row | ({} if complete is None else {"first_load_complete_us": round(complete, 4)}))
    return rows


def parse_shapes(text: str) -> tuple[tuple[str, int, int], ...]:
    """``"lstm:768:16,rnn:256:64"`` -> ``(("lstm", 768, 16), ("rnn", 256, 64))``; a bad entry raises
    ``ValueError`` naming it and the form expected."""
    shapes = []
    for entry in (part.strip() for part in text.split(",") if part.strip()):
        fields = entry.split(":")
        if len(fields) != 3 or fields[0] not in GATES or not all(f.isdigit() and int(f) > 0 for f in fields[1:]):
            raise ValueError(f"--shapes entry {entry!r} is not CELL:H:B with CELL one of {tuple(GATES)} and positive "
                             "H and B (e.g. lstm:768:16)")
        shapes.append((fields[0], int(fields[1]), int(fields[2])))
    if not shapes:
        raise ValueError(f"--shapes names no shape: {text!r}")
    return tuple(shapes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rnnbench.kernels.step_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="CSV file to write")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    parser.add_argument("--steps", type=int, default=1000, help="steps per launch (T; the slope uses T and 2T)")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--sweep-programs", default="1,12,24,48", help="comma-separated program counts for "
                        f"{', '.join(SWEEP_VARIANTS)} ('' for none)")
    parser.add_argument("--estimate", action="store_true", help="no GPU: the cost model's estimate of every variant")
    parser.add_argument("--target", default="sm_90", help="with --estimate: sm_80 or sm_90")
    parser.add_argument("--jobs", type=int, default=None, help="compiler processes (default: CPUs, at most 8 on a GPU)")
    parser.add_argument("--shapes", default=None, help="comma-separated CELL:H:B shapes, in the order to time them "
                        f"(default: {','.join(f'{c}:{h}:{b}' for c, h, b in SHAPES)})")
    parser.add_argument("--no-deferred", action="store_true",
                        help=f"leave out the never-run variants timed last ({', '.join(DEFERRED)})")
    parser.add_argument("--leave-out", default="",
                        help="comma-separated never-run variants to leave out (whose kernels failed their GPU tests)")
    args = parser.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    if args.steps < 1 or args.repeats < 4:
        parser.error(f"--steps must be >= 1 and --repeats >= 4 (quartiles), got {args.steps} and {args.repeats}")
    try:
        shapes = SHAPES if args.shapes is None else parse_shapes(args.shapes)
    except ValueError as error:
        parser.error(str(error))
    left_out = tuple(name.strip() for name in args.leave_out.split(",") if name.strip())
    if set(left_out) - set(DEFERRED):
        parser.error(f"--leave-out takes never-run variants ({', '.join(DEFERRED)}), got "
                     f"{', '.join(sorted(set(left_out) - set(DEFERRED)))}")
    if args.estimate:
        rows = estimate(shapes, dtype, int(args.target.removeprefix("sm_")), args.jobs)
    elif not torch.cuda.is_available():
        print("step_bench: needs a CUDA GPU (torch.cuda.is_available() is False); --estimate works without one",
              file=sys.stderr)
        return 2
    else:
        sweep = tuple(int(p) for p in args.sweep_programs.split(",") if p.strip())
        jobs = args.jobs or min(8, os.cpu_count() or 1)
        if jobs > 1:
            warm(shapes, dtype, jobs)
        rows = measure(shapes, dtype, args.steps, args.repeats, sweep, deferred=not args.no_deferred,
                       left_out=left_out)
    written = 0
    with open(args.out, "w", newline="") as handle:  # row by row: a run cut short keeps what it measured
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            handle.flush()
            written += 1
    print(f"wrote {written} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
