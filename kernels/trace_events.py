"""The timestamps a traced Gluon LSTM forward records every step (``TRACE=True``,
:func:`rnnbench.kernels.gluon_lstm.lstm_forward_gluon_kernel`), and the Gluon helper that writes
them; :mod:`rnnbench.kernels.step_trace` runs a traced forward and reads them back.

**Layout.** ``int64 (P, T, EVENT_COUNT)``, ``P = D * batch blocks * hidden blocks`` (program
``(pid_h, pid_b, direction)`` is row ``(direction * batch_blocks + pid_b) * hidden_blocks + pid_h``),
one row of :data:`EVENTS` per program and step. ``*_ns`` events are ``%globaltimer`` (ns, one clock
for the whole GPU), :data:`POLLS` is a count, the others ``%clock64`` of the program's SM (cycles;
comparable within a program only). Loader events stay 0 without the tagged exchange.

**What each stamp follows** (the recurrence's first thread, or the loader's, stores it):

* ``step_start``: the top of the recurrence's step.
* ``state_ready``: the state's first copy (the tagged exchange: all of it) is in shared memory,
  its mbarrier waited for.
* ``product_done``: the recurrent product's MMAs have completed (``warpgroup_mma_wait``).
* ``state_out`` / ``state_out_ns``: h computed and its stores to the exchange issued.
* ``step_end``: the bottom of the step (the barrier kernel: its grid barrier's wait done).
* ``loader_start``: the tagged loader has seen ``h_free`` (this program published the step before).
* ``first_load`` / ``first_load_ns``: the loader's first load of the step's state has arrived and
  been checked (its staleness reduction is known).
* ``loader_fresh``: every word fresh (after the reloads, if any).
* ``loader_handed``: stored into shared memory, fenced, and its mbarrier arrived on.
* ``polls``: reloads of this step beyond the first load.

A stamp is one ``%clock64`` read and one store of one thread, a few instructions; the traced kernel
is a different compilation from the untraced one (``tests/test_gluon_aot.py`` compares their
registers and spills), so its step time is reported beside the untraced one's, not instead of it.
"""

from __future__ import annotations

from triton.experimental import gluon
from triton.experimental.gluon import language as gl

#: the events of a step, in the order of the trace's last axis
EVENTS = ("step_start", "state_ready", "product_done", "state_out", "state_out_ns", "step_end", "loader_start",
          "first_load", "first_load_ns", "loader_fresh", "loader_handed", "polls")
EVENT_COUNT: gl.constexpr = gl.constexpr(len(EVENTS))
STEP_START: gl.constexpr = gl.constexpr(EVENTS.index("step_start"))
STATE_READY: gl.constexpr = gl.constexpr(EVENTS.index("state_ready"))
PRODUCT_DONE: gl.constexpr = gl.constexpr(EVENTS.index("product_done"))
STATE_OUT: gl.constexpr = gl.constexpr(EVENTS.index("state_out"))
STATE_OUT_NS: gl.constexpr = gl.constexpr(EVENTS.index("state_out_ns"))
STEP_END: gl.constexpr = gl.constexpr(EVENTS.index("step_end"))
LOADER_START: gl.constexpr = gl.constexpr(EVENTS.index("loader_start"))
FIRST_LOAD: gl.constexpr = gl.constexpr(EVENTS.index("first_load"))
FIRST_LOAD_NS: gl.constexpr = gl.constexpr(EVENTS.index("first_load_ns"))
LOADER_FRESH: gl.constexpr = gl.constexpr(EVENTS.index("loader_fresh"))
LOADER_HANDED: gl.constexpr = gl.constexpr(EVENTS.index("loader_handed"))
POLLS: gl.constexpr = gl.constexpr(EVENTS.index("polls"))


@gluon.jit
def record(trace_ptr, step, lane, EVENT: gl.constexpr, value):
    """Store ``value`` (int64, one per element of ``lane``, or a scalar) as ``EVENT`` of ``step``
    in this program's rows of the trace (``trace_ptr``: already at the program's first step), from
    the thread holding ``lane``'s element 0 only."""
    gl.store(trace_ptr + step * EVENT_COUNT + EVENT + lane * 0, value + lane * 0, mask=lane == 0)


@gluon.jit
def record_at(trace_ptr, step, EVENT: gl.constexpr, value, where):
    """Store ``value`` (a tensor, int64) as ``EVENT`` of ``step`` from the one element where ``where``
    (a boolean tensor of its layout) is true: :func:`record` for a value no reduction has gathered."""
    gl.store(trace_ptr + step * EVENT_COUNT + EVENT + where.to(gl.int32) * 0, value, mask=where)
