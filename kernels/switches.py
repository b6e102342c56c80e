"""The kernels' switches: settings that choose between variants of the same kernels.

Each switch is a module global read when a kernel is planned, compiled or launched, so a variant
can be timed against the shipped one in the same run (the step ablation's rows, the harness's
``triton-*`` backends). Most are off until a GPU has passed the variant's tests and timed it: what
each variant measured, or why it is still off, is in its global's documentation. A switch can be
set three ways:

* for a block, by its context manager (:func:`tagged_exchange`, :func:`local_gates`, ...): the
  global is set within the block and restored after; None leaves it as it is. Anything but a value
  the switch takes is refused by name;
* at import, by its environment variable, where it has one (``RNNBENCH_TAGGED_EXCHANGE`` and the
  other ``*_ENV`` names here): how the GPU session turns a variant off whose tests failed, and how
  compiler processes spawned inside a block see the block's setting (the boolean switches that
  change a compiled kernel set their variable within their block too);
* by editing the default here, once a GPU has shown the variant wins.

Where a switch applies is the planner's business (:mod:`rnnbench.kernels.plan`: its ``*_refusal``
functions and :func:`~rnnbench.kernels.plan.gluon_tagged_exchange` read these globals); this module
only holds the settings, so it imports nothing of the package.
"""

from __future__ import annotations

import contextlib
import os


def _from_environment(variable: str, settings: dict, default):
    """The setting the environment variable ``variable`` names (a key of ``settings``, which maps
    it to the value), ``default`` where it is unset; ValueError naming the variable otherwise."""
    value = os.environ.get(variable)
    if value is None:
        return default
    if value not in settings:
        raise ValueError(f"{variable} must be one of {', '.join(settings)}, got {value!r}")
    return settings[value]


#: what a boolean switch's environment variable takes
ON_OFF = {"on": True, "off": False}


@contextlib.contextmanager
def _overriding(name: str, value):
    """Within the block, this module's global ``name`` is ``value`` (None: left as it is), restored
    after: what every switch's context manager does."""
    previous = globals()[name]
    if value is not None:
        globals()[name] = value
    try:
        yield
    finally:
        globals()[name] = previous


@contextlib.contextmanager
def _switching_children(switch, variable: str, value: str | None):
    """``switch`` (a context) with the environment variable ``variable`` set to ``value`` too (None:
    left as it is) and restored after, so processes spawned inside (the AOT compilers) import the
    same setting."""
    previous = os.environ.get(variable)
    with switch:
        if value is not None:
            os.environ[variable] = value
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = previous


def _boolean_switch(name: str, enabled: bool | None, refusal: str, variable: str | None = None):
    """The context of a boolean switch: the global ``name`` is ``enabled`` within the block (None:
    left as it is), and so is the environment variable ``variable`` (``on``/``off``) where given, for
    the compiler processes spawned there. Anything but a bool or None is refused with ``refusal``
    (what the switch is) and the value."""
    if enabled is not None and not isinstance(enabled, bool):
        raise ValueError(f"{refusal}, got {enabled!r}")
    switch = _overriding(name, enabled)
    if variable is None:
        return switch
    return _switching_children(switch, variable, None if enabled is None else ("on" if enabled else "off"))


# ---------------------------------------------------------------------------------------------------
# The grid barrier's poll (every cooperative kernel: the plain ones and the Gluon ones)

#: whether only the first warp of each program polls the grid barrier's flags
#: (:func:`rnnbench.kernels.primitives.barrier_wait`'s ``FIRST_WARP``, the kernels' ``POLL_FIRST_WARP``
#: constexpr) while the program's other warps wait at the CTA barrier after the poll, instead of
#: every warp polling every flag. Every program polls the same few 128-byte lines of flags, so the
#: requests those lines take per poll grow as programs x polling warps, and on the H200 the barrier's
#: cost followed that product, not the programs (reports/h200/7caf667, kernel with its barrier minus
#: without, µs a step): 0.98-1.17 up to 256 requests (the Gluon forward at 16-64 programs of 4 warps,
#: the plain forward at 32 of 4, the Gluon backward at 32 of 8), then 1.67-1.99 at 384 (the plain
#: forward at 96 of 4 and 48 of 8, the Gluon backward at 48 of 8: H=768 B=16, 1.84 of its 3.82) and
#: 2.34-2.89 at 512 (64 of 8, 128 of 4); the barrier micro-benchmark at 8 warps against 4 likewise
#: (reports/h200/acd6756/barrier.csv: 3.12 against 1.96 µs at 96 programs). One warp brings the
#: requests down to the programs (at most 128). False until a GPU has timed it (the step ablation's
#: ``*_first_warp`` variants); the flags a program acts on, and so its results, are the same either way
GRID_POLL_FIRST_WARP = False
#: the environment variable that sets :data:`GRID_POLL_FIRST_WARP` at import: ``on`` or ``off``
#: (:func:`first_warp_polls` sets it within its block too, so compiler processes it spawns see it)
POLL_FIRST_WARP_ENV = "RNNBENCH_POLL_FIRST_WARP"
GRID_POLL_FIRST_WARP = _from_environment(POLL_FIRST_WARP_ENV, ON_OFF, GRID_POLL_FIRST_WARP)


def first_warp_polls(enabled: bool | None):
    """Within the block, :data:`GRID_POLL_FIRST_WARP` is ``enabled`` (a bool; None: left as it is),
    restored after: the grid barrier polled by each program's first warp alone, as compiled and
    launched there (the step ablation's ``*_first_warp`` variants), in this process and in the
    compiler processes it spawns there (:data:`POLL_FIRST_WARP_ENV`)."""
    return _boolean_switch("GRID_POLL_FIRST_WARP", enabled, "the first warp polls alone or every warp does (a bool)",
                           POLL_FIRST_WARP_ENV)


# ---------------------------------------------------------------------------------------------------
# The Gluon forward's state copies (the grid barrier's exchange)

#: 64-column tiles of the state one TMA copy brings (a 3-D box): each copy costs the issuing thread
#: ~25 dependent instructions and its wait an mbarrier poll, so fewer copies shorten the step, while
#: the MMAs of a copy's tiles wait for the whole copy (see :mod:`rnnbench.kernels.gluon_lstm` and
#: :func:`rnnbench.kernels.plan.gluon_state_copies`). 4 since 2026-11-28 (8 before): on the H200
#: (7caf667, step ablation, the Gluon forward with its grid barrier alone, ``real_gluon_copies_4``
#: against ``real_gluon``) copies of 4 were faster, interquartile ranges apart, at 4 of the 6 shapes
#: where they differ (H=768 B=1 2.47 -> 2.38 µs a step, B=16 2.47 -> 2.41, H=1024 B=16 2.83 -> 2.76,
#: B=64 3.50 -> 3.32) and within the spread at the other two (H=512 B=16, H=768 B=64); copies of 4
#: tiles were already what H=256 to 400 ran, and passed their GPU tests there. It serves the
#: forwards that exchange their state by the grid barrier: training, and inference from H=1024. The
#: step ablation's ``real_gluon_copies_8`` times the boxes of 8 against it. The environment's
#: :data:`TILES_PER_COPY_ENV` sets it at import, in every process (the cost table's compiler
#: processes too): how the kernels measured before the change (boxes of 8, up to 7caf667) are
#: estimated as they ran, to calibrate the model on them
GLUON_TILES_PER_COPY = 4
TILES_PER_COPY_ENV = "RNNBENCH_GLUON_TILES_PER_COPY"
GLUON_TILES_PER_COPY = _from_environment(TILES_PER_COPY_ENV, {str(tiles): tiles for tiles in (1, 2, 4, 8)},
                                         GLUON_TILES_PER_COPY)


def state_copy_tiles(tiles: int | None):
    """Within the block, :data:`GLUON_TILES_PER_COPY` is ``tiles`` (a power of two up to 8; None: left
    as it is), restored after: the Gluon forward's state copies
    (:func:`rnnbench.kernels.plan.gluon_state_copies`) as compiled and launched there (the step
    ablation's ``real_gluon_copies_8``). More tiles per copy take a little more shared memory (a last
    box's tiles past ``h_pad``: 79,904 -> 88,088 bytes at H=768 B=16), far from a program's limit;
    a plan made outside the block with at most one program per SM, as the step ablation's are,
    stays co-resident inside."""
    if tiles is not None and (tiles < 1 or tiles > 8 or tiles & (tiles - 1)):
        raise ValueError(f"tiles per state copy must be a power of two from 1 to 8 (a TMA box dimension), got {tiles}")
    return _overriding("GLUON_TILES_PER_COPY", tiles)


# ---------------------------------------------------------------------------------------------------
# The Gluon forward's input projection

#: whether the Gluon forward fuses the input projection where it can
#: (:func:`rnnbench.kernels.plan.gluon_input_tiles`). Off until a GPU has timed it
#: (``tests/test_kernels_gpu.py``' fused tests passed on the H200 at 7caf667; the step ablation's
#: ``real_gluon_fused_input`` has not run yet)
GLUON_FUSED_INPUT = False


def fused_input_projection(fuse: bool | None = True):
    """Within the block, :data:`GLUON_FUSED_INPUT` is ``fuse`` (None: left as it is), restored after:
    the Gluon forward fuses its input projection where it can
    (:func:`rnnbench.kernels.plan.gluon_input_tiles`), or not."""
    return _overriding("GLUON_FUSED_INPUT", fuse)


#: whether the Gluon forward's input projection runs beside it instead of before it
#: (:mod:`rnnbench.kernels.overlapped_projection`: GEMMs of a few steps at a time on a second stream,
#: on the SMs the recurrence leaves free, each announced by a flag the kernel polls once per
#: :data:`rnnbench.kernels.plan.OVERLAPPED_CHUNK_STEPS` steps; :func:`overlapped_projection` switches
#: it, where :func:`rnnbench.kernels.plan.overlapped_projection_refusal` allows it). Off: never run on
#: a GPU yet
GLUON_OVERLAPPED_PROJECTION = False


def overlapped_projection(on: bool | None = True):
    """Within the block, :data:`GLUON_OVERLAPPED_PROJECTION` is ``on`` (None: left as it is),
    restored after: the LSTM layer projects its input beside the Gluon forward where
    :func:`rnnbench.kernels.plan.overlapped_projection_refusal` allows it."""
    return _boolean_switch("GLUON_OVERLAPPED_PROJECTION", on, "the overlapped projection must be True, False or None")


# ---------------------------------------------------------------------------------------------------
# The Gluon forward's tagged exchange (its state as tagged words polled by loader warps)

#: whether the Gluon forward exchanges its state as tagged words
#: (:func:`rnnbench.kernels.plan.gluon_tagged_exchange`): ``"auto"`` in the inference forward where
#: :func:`rnnbench.kernels.plan.tagged_exchange_refusal` allows it and ``h_pad`` is at most
#: :data:`rnnbench.kernels.plan.GLUON_TAGGED_AUTO_MAX_HIDDEN`, True wherever it allows it, False never
#: (the grid barrier and TMA copies; :func:`tagged_exchange` switches it). On the H200 (7caf667, one
#: loader, kernel alone, reports/h200/7caf667/step-ablation.md) it beat the barrier at every shape up
#: to H=768: H=256 B=16 1.47 against 2.10 µs/step, B=64 1.73 against 2.20, H=512 B=16 1.88 against
#: 2.20, H=768 B=1 2.41 against 2.47, B=16 2.36 against 2.47 (interquartile ranges apart), and lost
#: at H=1024 B=16 (3.11 against 2.83); its GPU tests match the barrier kernel bit for bit. The
#: environment's :data:`TAGGED_EXCHANGE_ENV` sets it at import (``scripts/gpu-session.sh`` turns it
#: off where the exchange's GPU tests fail)
GLUON_TAGGED_EXCHANGE = "auto"
#: what :data:`GLUON_TAGGED_EXCHANGE` takes
TAGGED_EXCHANGE_SETTINGS = (True, False, "auto")
#: the environment variable that sets :data:`GLUON_TAGGED_EXCHANGE` at import: ``on``, ``off`` or ``auto``
TAGGED_EXCHANGE_ENV = "RNNBENCH_TAGGED_EXCHANGE"
GLUON_TAGGED_EXCHANGE = _from_environment(TAGGED_EXCHANGE_ENV, {**ON_OFF, "auto": "auto"}, GLUON_TAGGED_EXCHANGE)


def tagged_exchange(on: bool | str | None = True):
    """Within the block, :data:`GLUON_TAGGED_EXCHANGE` is ``on`` (one of
    :data:`TAGGED_EXCHANGE_SETTINGS`; None: left as it is), restored after: the Gluon forward
    compiled and launched there exchanges its state as tagged words where
    :func:`rnnbench.kernels.plan.tagged_exchange_refusal` allows it (True), never (False), or as
    ``"auto"`` chooses."""
    if on is not None and not (on is True or on is False or on == "auto"):
        raise ValueError(f"the tagged exchange must be one of {TAGGED_EXCHANGE_SETTINGS} or None, got {on!r}")
    return _overriding("GLUON_TAGGED_EXCHANGE", on)


#: whether ``"auto"`` takes the tagged exchange in the training forward too (the one that saves its
#: gates and cell states for the backward; :func:`tagged_training`): False until a GPU has timed it
#: (``real_gluon_tagged_train`` against ``real_gluon_train``) and its training test has passed (its
#: outputs, saved gates and gradients bit for bit the barrier's). It compiles without a spill on the
#: step's path with both Tritons up to H=768 (Triton 3.6 spills 8 bytes outside the time loop at
#: H=768); the model puts the anchor's training forward at ~2.6 µs a step instead of 3.05
GLUON_TAGGED_TRAINING = False
#: the environment variable that sets :data:`GLUON_TAGGED_TRAINING` at import: ``on`` or ``off``
#: (:func:`tagged_training` sets it within its block too, so compiler processes it spawns see it)
TAGGED_TRAINING_ENV = "RNNBENCH_TAGGED_TRAINING"
GLUON_TAGGED_TRAINING = _from_environment(TAGGED_TRAINING_ENV, ON_OFF, GLUON_TAGGED_TRAINING)


def tagged_training(enabled: bool | None):
    """Within the block, :data:`GLUON_TAGGED_TRAINING` is ``enabled`` (a bool; None: left as it is),
    restored after: ``"auto"``'s tagged exchange in the training forward too, as compiled and
    launched there, in this process and in the compiler processes it spawns there
    (:data:`TAGGED_TRAINING_ENV`)."""
    return _boolean_switch("GLUON_TAGGED_TRAINING", enabled, "the tagged exchange in training is on or off (a bool)",
                           TAGGED_TRAINING_ENV)


#: nanoseconds the tagged exchange's loader waits, once its own program has published a step, before
#: it first loads the next state (:func:`tagged_poll_delay`): 0, at once. A first load that finds a
#: word still stale costs a second round trip and the slow path's instructions (the cost model: ~1 µs
#: a step at H=768 under the doubled round trips), so a delay shorter than that may pay where the
#: programs publish a little apart; what the step ablation's ``real_gluon_tagged_delayed`` measures
GLUON_TAGGED_POLL_DELAY_NS = 0
#: the longest :data:`GLUON_TAGGED_POLL_DELAY_NS` accepted (a step takes ~2 µs)
MAX_TAGGED_POLL_DELAY_NS = 10_000


def tagged_poll_delay(nanoseconds: int | None):
    """Within the block, :data:`GLUON_TAGGED_POLL_DELAY_NS` is ``nanoseconds`` (an int from 0 to
    :data:`MAX_TAGGED_POLL_DELAY_NS`; None: left as it is), restored after: how long the tagged
    exchange's loader waits before its first load of each step's state, as compiled and launched there."""
    if nanoseconds is not None and (isinstance(nanoseconds, bool) or not isinstance(nanoseconds, int)
                                    or not 0 <= nanoseconds <= MAX_TAGGED_POLL_DELAY_NS):
        raise ValueError(f"the tagged exchange's poll delay must be an int of nanoseconds from 0 to "
                         f"{MAX_TAGGED_POLL_DELAY_NS}, got {nanoseconds!r}")
    return _overriding("GLUON_TAGGED_POLL_DELAY_NS", nanoseconds)


#: the tagged exchange's loader partitions (:func:`tagged_loaders`): 1 of four warps (every tile,
#: its polls reduced over the four warps), or 4 of one warp each (warp w loads tiles w, w + 4, ... and
#: polls them on its own); the four loader warps and their registers either way. A plan needs a tile
#: per loader. One: on the H200 (7caf667) four one-warp loaders were slower at every shape timed,
#: 3.54 against 2.36 µs/step at H=768 B=16, though the cost model put them 0.2 µs ahead: their
#: busiest warp polled 1.09 times a step beyond the first against the one loader's 0.58, and the
#: kernel's four copies of the loader code (5304 instructions against the barrier kernel's 1688)
#: left 12.7 % of its warp samples waiting for instructions (``no_inst``), which the model has no term for
GLUON_TAGGED_LOADERS = 1
#: the loader counts :func:`tagged_loaders` takes
TAGGED_LOADER_COUNTS = (1, 4)


def tagged_loaders(count: int | None):
    """Within the block, :data:`GLUON_TAGGED_LOADERS` is ``count`` (one of
    :data:`TAGGED_LOADER_COUNTS`; None: left as it is), restored after: the tagged exchange's loader
    partitions as compiled and launched there (the step ablation's ``real_gluon_tagged_four_loaders``)."""
    if count is not None and count not in TAGGED_LOADER_COUNTS:
        raise ValueError(f"the tagged exchange's loaders must be one of {TAGGED_LOADER_COUNTS}, got {count!r}")
    return _overriding("GLUON_TAGGED_LOADERS", count)


#: independent accumulator chains of the Gluon forward's recurrent product with the tagged exchange
#: (:func:`mma_chains`; :func:`rnnbench.kernels.gluon_lstm.two_chain_product`): 1, one chain of
#: dependent MMAs, or 2, the shared-memory tiles' and the register tiles' MMAs into two accumulators,
#: issued alternately. 1 until a GPU has timed 2 (``real_gluon_tagged_two_chains``): two chains
#: also sum the product in another order than the barrier kernel, so they are not bit for bit
GLUON_MMA_CHAINS = 1
#: the chain counts :func:`mma_chains` takes
MMA_CHAIN_COUNTS = (1, 2)


def mma_chains(count: int | None):
    """Within the block, :data:`GLUON_MMA_CHAINS` is ``count`` (one of :data:`MMA_CHAIN_COUNTS`; None:
    left as it is), restored after: the tagged Gluon forward's recurrent product as compiled and
    launched there (the step ablation's ``real_gluon_tagged_two_chains``)."""
    if count is not None and count not in MMA_CHAIN_COUNTS:
        raise ValueError(f"the recurrent product's MMA chains must be one of {MMA_CHAIN_COUNTS}, got {count!r}")
    return _overriding("GLUON_MMA_CHAINS", count)


#: groups of tiles the tagged exchange's loader hands over one after another (:func:`tagged_groups`;
#: :func:`rnnbench.kernels.gluon_lstm._tagged_loader`): 1, the whole state at once once every word of
#: it is fresh, or G, each of G groups of consecutive tiles (the last maybe smaller) checked, stored
#: and announced on an mbarrier of its own as soon as its own words are fresh, so the recurrence's
#: MMAs on the first tiles run while the later ones are still arriving (one loader partition only).
#: 1 until a GPU has timed 4 (``real_gluon_tagged_groups_4``); the MMAs' order and sums are the same
GLUON_TAGGED_GROUPS = 1
#: the group counts :func:`tagged_groups` takes
TAGGED_GROUP_COUNTS = (1, 2, 4)


def tagged_groups(count: int | None):
    """Within the block, :data:`GLUON_TAGGED_GROUPS` is ``count`` (one of :data:`TAGGED_GROUP_COUNTS`;
    None: left as it is), restored after: the tagged exchange's hand-over in groups of tiles as
    compiled and launched there (the step ablation's ``real_gluon_tagged_groups_4``)."""
    if count is not None and count not in TAGGED_GROUP_COUNTS:
        raise ValueError(f"the tagged loader's groups must be one of {TAGGED_GROUP_COUNTS}, got {count!r}")
    return _overriding("GLUON_TAGGED_GROUPS", count)


#: whether each thread of the tagged exchange's loader checks and polls its own words alone
#: (:func:`tagged_thread_poll`; :func:`rnnbench.kernels.gluon_lstm._thread_fresh_pairs`) instead of
#: reducing their staleness over the loader's warps first (two CTA barriers and seven shuffles a
#: step at the anchor, the cost model's ~350 of the loader's ~2200 cycles when its first load finds
#: the state complete). False until a GPU has timed it (``real_gluon_tagged_thread_poll``); the
#: words the MMAs read are the same either way
GLUON_TAGGED_THREAD_POLL = False
#: the environment variable that sets :data:`GLUON_TAGGED_THREAD_POLL` at import: ``on`` or ``off``
#: (:func:`tagged_thread_poll` sets it within its block too, so compiler processes it spawns see it)
TAGGED_THREAD_POLL_ENV = "RNNBENCH_TAGGED_THREAD_POLL"
GLUON_TAGGED_THREAD_POLL = _from_environment(TAGGED_THREAD_POLL_ENV, ON_OFF, GLUON_TAGGED_THREAD_POLL)


def tagged_thread_poll(enabled: bool | None):
    """Within the block, :data:`GLUON_TAGGED_THREAD_POLL` is ``enabled`` (a bool; None: left as it
    is), restored after: the tagged exchange's loader threads polling alone, as compiled and launched
    there (the step ablation's ``real_gluon_tagged_thread_poll``), in this process and in the
    compiler processes it spawns there (:data:`TAGGED_THREAD_POLL_ENV`)."""
    return _boolean_switch("GLUON_TAGGED_THREAD_POLL", enabled,
                           "the tagged loader's thread polls are on or off (a bool)", TAGGED_THREAD_POLL_ENV)


#: whether the tagged Gluon forward splits its gates inside each warp (:func:`local_gates`;
#: :func:`rnnbench.kernels.gluon_lstm._local_gate_tiles`): ``W_hh``'s rows reordered on the host so
#: that warp w's accumulator rows hold the four gates of units ``4w .. 4w+3``
#: (:func:`rnnbench.kernels.gluon_lstm.local_gate_rows`), split by a conversion inside each warp
#: instead of a round trip through shared memory, and the next step's ``xg`` loaded into registers
#: instead of copied into shared memory: two CTA barriers fewer on the step's critical path (the
#: calibrated model, whole call at H=768 B=16, Triton 3.6: 2.56 -> 2.36 µs, and 2.14 -> 1.95 with
#: :data:`GLUON_TAGGED_THREAD_POLL`). False until a GPU has timed it
#: (``real_gluon_tagged_local_gates``); the products and activations are the same, so are the outputs
GLUON_LOCAL_GATES = False
#: the environment variable that sets :data:`GLUON_LOCAL_GATES` at import: ``on`` or ``off``
#: (:func:`local_gates` sets it within its block too, so compiler processes it spawns see it)
LOCAL_GATES_ENV = "RNNBENCH_LOCAL_GATES"
GLUON_LOCAL_GATES = _from_environment(LOCAL_GATES_ENV, ON_OFF, GLUON_LOCAL_GATES)


def local_gates(enabled: bool | None):
    """Within the block, :data:`GLUON_LOCAL_GATES` is ``enabled`` (a bool; None: left as it is),
    restored after: the tagged Gluon forward's warp-local gate split, as compiled and launched there
    (the step ablation's ``real_gluon_tagged_local_gates``), in this process and in the compiler
    processes it spawns there (:data:`LOCAL_GATES_ENV`)."""
    return _boolean_switch("GLUON_LOCAL_GATES", enabled, "the warp-local gate split is on or off (a bool)",
                           LOCAL_GATES_ENV)


# ---------------------------------------------------------------------------------------------------
# The backward

#: whether the Gluon backward streams its copies of gate gradients
#: (:func:`rnnbench.kernels.plan.gluon_streamed_copies`;
#: :func:`rnnbench.kernels.gluon_lstm_backward._streamed_gradient`): each copy of a step's
#: :data:`rnnbench.kernels.plan.GLUON_BACKWARD_SPLIT` producers' tiles issued as soon as those
#: producers' flags say they have stored them, its MMAs run as soon as it lands, instead of the grid
#: barrier's wait for every producer and then every copy at once. On the H200 the barrier cost the
#: Gluon backward 1.84 µs of its 3.82 a step at H=768 B=16 (against 1.01 of the forward's 2.47;
#: reports/h200/acd6756), where each program pulls 96 KiB of gate gradients after it, all programs at
#: once. False until a GPU has timed it (``real_gluon_bwd_streamed``); the products are summed in the
#: same order either way
GLUON_BACKWARD_STREAMED = False
#: the environment variable that sets :data:`GLUON_BACKWARD_STREAMED` at import: ``on`` or ``off``
#: (:func:`streamed_copies` sets it within its block too, so compiler processes it spawns see it)
BACKWARD_STREAMED_ENV = "RNNBENCH_BACKWARD_STREAMED"
GLUON_BACKWARD_STREAMED = _from_environment(BACKWARD_STREAMED_ENV, ON_OFF, GLUON_BACKWARD_STREAMED)


def streamed_copies(enabled: bool | None):
    """Within the block, :data:`GLUON_BACKWARD_STREAMED` is ``enabled`` (a bool; None: left as it is),
    restored after: the Gluon backward's streamed copies, as compiled and launched there (the step
    ablation's ``real_gluon_bwd_streamed``), in this process and in the compiler processes it spawns
    there (:data:`BACKWARD_STREAMED_ENV`)."""
    return _boolean_switch("GLUON_BACKWARD_STREAMED", enabled,
                           "the Gluon backward's streamed copies are on or off (a bool)", BACKWARD_STREAMED_ENV)


#: whether the LSTM layer's backward computes ``dx``, ``dW_ih`` and ``dW_hh`` beside its recurrence
#: instead of after it (:mod:`rnnbench.kernels.overlapped_gradients`: GEMMs of the steps the
#: recurrence has finished, on a second stream and the SMs it leaves free, each after a one-program
#: kernel that waits for the recurrence's grid-barrier flags to pass them; the weight gradients summed
#: over those GEMMs in float32). :func:`overlapped_gradients` switches it, where
#: :func:`rnnbench.kernels.plan.overlapped_gradients_refusal` allows it. Off: never run on a GPU yet
OVERLAPPED_GRADIENTS = False
#: the environment variable that sets :data:`OVERLAPPED_GRADIENTS` at import: ``on`` or ``off``
OVERLAPPED_GRADIENTS_ENV = "RNNBENCH_OVERLAPPED_GRADIENTS"
OVERLAPPED_GRADIENTS = _from_environment(OVERLAPPED_GRADIENTS_ENV, ON_OFF, OVERLAPPED_GRADIENTS)


def overlapped_gradients(on: bool | None = True):
    """Within the block, :data:`OVERLAPPED_GRADIENTS` is ``on`` (None: left as it is), restored after:
    the LSTM layer's backward computes its GEMMs beside its recurrence where
    :func:`rnnbench.kernels.plan.overlapped_gradients_refusal` allows it."""
    return _boolean_switch("OVERLAPPED_GRADIENTS", on, "the overlapped gradients must be True, False or None")
