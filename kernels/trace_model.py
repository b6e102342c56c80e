"""The cost model's phases of a traced step beside the trace's: does the model put a step's cycles
where the GPU does?

**Why.** The model (:mod:`rnnbench.kernels.cost`) splits the tagged exchange's step into two chains
that overlap: the loader's, from the recurrence's arrival on ``h_free`` to the loader's arrival on
the state's mbarrier (:class:`~rnnbench.kernels.cost.Handoff`), and the recurrence's, from that
arrival through the MMAs and the gates to its publish. Every kernel change of the last sessions was
chosen by which term the model said it would cut. The step trace (:mod:`rnnbench.kernels.step_trace`)
measures the same step as seven phases (``to_loader`` ... ``gates_publish``), so putting the model's
own phases beside it tests the split itself, phase by phase, not only the step's total.

**How.** The traced kernel (``TRACE=True``, its own compilation) is compiled for ``sm_90`` here, as the
trace ran it (the same variant switches, plan and dtype). Its stamps (:func:`rnnbench.kernels.sass.trace_stamps`)
are the same clock reads in the SASS that stamped the trace on the GPU, so the model's time of an event
is the cycle :func:`~rnnbench.kernels.cost.simulate` issues that read at:

* the recurrence's events (``state_ready``, ``product_done``, ``state_out``, ``step_end``) from its step
  simulated with the loader's handoffs, as :func:`~rnnbench.kernels.cost.step_estimate` does;
* the loader's (``loader_start``, ``first_load``, ``loader_fresh``, ``loader_handed``) from its step
  simulated alone (:func:`~rnnbench.kernels.cost.loader_timeline`), placed on the recurrence's timeline
  from the recurrence's arrival on ``h_free`` a step earlier, plus what its path does not show
  (:func:`~rnnbench.kernels.cost.loader_unseen`): the ``pause`` before its first load, and the
  producers' ``publish`` and half a poll period of ``discovery`` before its words are all fresh (the
  trace sees those as the first load's wait for late words: ``reloads``);
* the tagged step at the trace's mean reloads a step (``polls``), linear between the loader's path
  that finds the state complete at its first load and the one that reloads once, as the model's
  estimates are (:func:`~rnnbench.kernels.cost.between_reloads`);
* the grid barrier's step: its ``barrier`` phase also holds :func:`~rnnbench.kernels.cost.grid_sync_unseen`
  (the flags' arrivals and discovery).

The phases of the model add up to its step exactly, as the trace's do. Both are in cycles of the SM
(the model's latency table is in cycles; the pause is the nominal sleep at the model's clock), raw:
the calibration (``cost-calibration-sm_90.json``) scales the model's terms, not its phases, and is
not applied.

``python -m rnnbench.kernels.trace_model TRACE_SUMMARY_CSV`` (no GPU; Triton 3.6 for the GPU machine's
SASS: ``make gpu-report KBIN=.venv36/bin`` runs it on ``trace/trace-summary.csv``) prints
``trace-model.md``: per traced kernel and phase, the trace's mean and median, the model's cycles and
their difference.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd
import torch

from rnnbench.kernels.cost import (
    DEVICES, between_reloads, grid_sync_unseen, latencies, loader_handoffs, loader_timeline, loader_unseen,
    mbarrier_offset, simulate, step_context,
)
from rnnbench.kernels.plan import LIMITS, Resources, programs_per_multiprocessor
from rnnbench.kernels.sass import count, loader_path, parse, step_path, trace_stamps
from rnnbench.kernels.step_trace import BARRIER_PHASES, TAGGED_PHASES
from rnnbench.kernels.trace_events import EVENTS

#: the loader's events after which each part of its unseen chain has passed
UNSEEN_BEFORE = {"pause": ("first_load", "loader_fresh", "loader_handed"),
                 "publish": ("loader_fresh", "loader_handed"), "discovery": ("loader_fresh", "loader_handed")}
#: the SMs the trace's plan is made for (the H100's and H200's)
MULTIPROCESSORS = 132


def stamped_events(trace: list) -> dict[str, float]:
    """``{event: issue cycle}`` of the trace stamps in a :func:`~rnnbench.kernels.cost.simulate`
    trace (the stamp's clock read, the first where a read that waits for a value is two;
    :data:`~rnnbench.kernels.trace_events.EVENTS` by the store's offset); a stamp stored elsewhere
    than at its event's offset in the step's row is left out."""
    events: dict[str, float] = {}
    for position, offset in sorted(trace_stamps([ins for ins, _, _ in trace]).items()):
        if offset % 8 == 0 and offset // 8 < len(EVENTS):  # the first of a stamp's reads (the one it stores)
            events.setdefault(EVENTS[offset // 8], trace[position][1])
    return events


def model_events(sass_text: str, plan, registers: int, shared_bytes: int, dtype: torch.dtype, arch: int = 90,
                 first_load_complete: bool = False) -> tuple[dict[str, float], float, dict[str, float]]:
    """``(event times, step cycles, unseen cycles)`` of one step of the traced Gluon forward whose
    SASS is ``sass_text`` (module docstring): every stamped event's cycle on the recurrence's
    timeline, the loader's of the same step (those a step earlier are the times less the step's
    cycles); ``unseen``: the loader's :func:`~rnnbench.kernels.cost.loader_unseen` or the barrier's
    ``grid_sync`` beyond its path. ``first_load_complete``: the loader's path without a reload."""
    device, lat = DEVICES[arch], latencies(arch)
    instructions = parse(sass_text)
    steps = step_path(instructions)
    per_sm, _ = programs_per_multiprocessor(Resources(shared_bytes, registers), plan.resident_warps, LIMITS[arch])
    if per_sm == 0:
        raise ValueError(f"the traced kernel does not fit an SM ({registers} registers, {shared_bytes} B shared)")
    context = step_context(plan, dtype, "fwd", per_sm, arch, lat)
    loader = loader_path(instructions, first_load_complete)
    recurrence: list = []
    if loader is None:
        cycles, _ = simulate(steps, context, trace=recurrence)
        events = stamped_events(recurrence)
        unseen = {"grid_sync": grid_sync_unseen(count(steps), plan, lat)}
        if "step_end" in events:  # the barrier's wait done
            events["step_end"] += unseen["grid_sync"]
        return events, cycles + unseen["grid_sync"], unseen
    unseen = loader_unseen(loader, lat, device)
    handoffs = loader_handoffs(steps, loader, context, sum(unseen.values()))
    cycles, _ = simulate(steps, context, handoffs=handoffs, trace=recurrence)
    events = stamped_events(recurrence)
    # the loader's step starts at the recurrence's arrival on h_free of the step before
    h_free = handoffs[0].after
    freed = max(issue for ins, issue, _ in recurrence
                if ins.opcode.startswith("SYNCS.ARRIVE") and mbarrier_offset(ins) == h_free) - cycles
    timeline, start = loader_timeline(steps, loader, context)
    began = timeline[start][1]
    for event, issue in stamped_events(timeline).items():
        if event in EVENTS[EVENTS.index("loader_start"):]:
            passed = sum(part_cycles for part, part_cycles in unseen.items() if event in UNSEEN_BEFORE[part])
            events[event] = freed + issue - began + passed
    return events, cycles, unseen


def phases_of(events: dict[str, float], cycles: float, tagged: bool) -> dict[str, float]:
    """The trace's phases (:data:`~rnnbench.kernels.step_trace.TAGGED_PHASES` or ``BARRIER_PHASES``)
    of one step with ``events`` (:func:`model_events`) and ``cycles`` a step, and ``step_cycles``;
    NaN for a phase whose event has no stamp."""
    out = {}
    for name, start, start_offset, end, end_offset in (TAGGED_PHASES if tagged else BARRIER_PHASES):
        out[name] = (events.get(end, np.nan) + end_offset * cycles) - (events.get(start, np.nan) + start_offset * cycles)
    return out | {"step_cycles": cycles}


def model_phases(sass_text: str, plan, registers: int, shared_bytes: int, dtype: torch.dtype, reloads: float,
                 arch: int = 90) -> tuple[dict[str, float], dict[str, float]]:
    """``(phases, unseen)``: the model's cycles of each of the trace's phases of the traced kernel
    (:func:`phases_of`), a tagged exchange's at ``reloads`` reloads a step (linear between its
    loader's path without a reload and with one, :func:`~rnnbench.kernels.cost.between_reloads`)."""
    events, cycles, unseen = model_events(sass_text, plan, registers, shared_bytes, dtype, arch)
    tagged = "loader_start" in events
    one_reload = phases_of(events, cycles, tagged)
    if not tagged:
        return one_reload, unseen
    complete = phases_of(*model_events(sass_text, plan, registers, shared_bytes, dtype, arch, True)[:2], tagged)
    return {name: between_reloads(complete[name], one_reload[name], reloads) for name in one_reload}, unseen


def traced_model(task: tuple[str, str, int, int, str, float, int], arch: int = 90) -> dict:
    """The model's phases of one traced kernel, ``(variant, cell, hidden size, batch, dtype name,
    reloads a step, programs)`` as the trace ran it, compiled for ``sm_<arch>`` (a job for
    :func:`rnnbench.kernels.aot.compile_all`): ``{"phases", "unseen", "registers", "programs"}``;
    ValueError where the plan made here has other programs than the trace's."""
    from rnnbench.kernels.aot import cubin_resources
    from rnnbench.kernels.gluon_lstm import compile_forward
    from rnnbench.kernels.plan import plan_recurrence
    from rnnbench.kernels.sass import disassemble
    from rnnbench.kernels.step_bench import REAL_PATHS

    variant, cell, hidden_size, batch, dtype_name, reloads, programs = task
    kernel, dtype = REAL_PATHS[variant], getattr(torch, dtype_name)
    with kernel.switches():
        plan = kernel.plan(plan_recurrence(cell, hidden_size, batch, dtype, kernel.path, MULTIPROCESSORS, arch=arch,
                                           allow_narrow=kernel.narrow), dtype, MULTIPROCESSORS)
        if plan.programs != programs:
            raise ValueError(f"{variant} H={hidden_size} B={batch}: the plan here has {plan.programs} programs, "
                             f"the trace {programs} (another GPU than {MULTIPROCESSORS} SMs?)")
        compiled = compile_forward(plan, dtype, training=False, has_lengths=False, arch=arch, trace=True)
    registers, _ = cubin_resources(compiled.asm["cubin"])
    phases, unseen = model_phases(disassemble(compiled.asm["cubin"]), plan, registers, int(compiled.metadata.shared),
                                  dtype, reloads, arch)
    return {"phases": phases, "unseen": unseen, "registers": registers, "programs": plan.programs}


def traced_model_or_skip(task: tuple, arch: int = 90) -> dict:
    """:func:`traced_model`, or ``{"skipped": reason}`` where the kernel cannot be compiled or
    modelled as traced (one kernel's failure leaves the others' rows)."""
    try:
        return traced_model(task, arch)
    except Exception as error:  # reported in the table, the other kernels still modelled
        return {"skipped": f"{type(error).__name__}: {error}"}


KEY = ["variant", "cell", "hidden_size", "batch", "dtype"]


def traced_kernels(summary: pd.DataFrame) -> list[tuple[str, str, int, int, str, float, int]]:
    """The :func:`traced_model` tasks of a ``trace-summary.csv`` (:mod:`rnnbench.kernels.step_trace`),
    one per traced kernel, with its mean polls a step (0 for the grid barrier)."""
    missing = [column for column in KEY + ["phase", "mean", "programs"] if column not in summary.columns]
    if missing:
        raise ValueError(f"not a trace-summary.csv: no column {missing}")
    tasks = []
    for key, rows in summary.groupby(KEY, sort=False):
        polls = rows.loc[rows["phase"] == "polls", "mean"]
        tasks.append((*key[:2], int(key[2]), int(key[3]), key[4], float(polls.iloc[0]) if len(polls) else 0.0,
                      int(rows["programs"].iloc[0])))
    return tasks


def compare(summary: pd.DataFrame, models: list[dict]) -> pd.DataFrame:
    """One row per traced kernel and phase (then ``loader_chain``, ``recurrence_chain`` for the tagged
    exchange, and ``step_cycles``): the trace's ``mean`` and ``median`` (cycles) beside ``model``
    and ``model_minus_mean``, for ``models`` in :func:`traced_kernels`' order."""
    rows = []
    for (key, measured), model in zip(summary.groupby(KEY, sort=False), models):
        if "skipped" in model:
            continue
        measured = measured.set_index("phase")
        phases = dict(model["phases"])
        tagged = "to_loader" in phases
        names = [name for name, *_ in (TAGGED_PHASES if tagged else BARRIER_PHASES)]
        chains = {"loader_chain": names[:5], "recurrence_chain": names[5:]} if tagged else {}
        for chain, parts in chains.items():
            phases[chain] = sum(phases[name] for name in parts)
        for name in names + list(chains) + ["step_cycles"]:
            parts = chains.get(name, [name])
            mean = measured.loc[parts, "mean"].sum() if set(parts) <= set(measured.index) else np.nan
            median = measured.loc[name, "median"] if name in measured.index else np.nan
            rows.append(dict(zip(KEY, key)) | {"phase": name, "mean": mean, "median": median, "model": phases[name],
                                               "model_minus_mean": phases[name] - mean})
    return pd.DataFrame(rows)


def render(table: pd.DataFrame, models: list[dict], tasks: list[tuple], title: str = "") -> str:
    """``trace-model.md``: per traced kernel, :func:`compare`'s rows and the model's unseen cycles."""
    lines = [f"# The cost model's phases beside the step trace's{': ' + title if title else ''}", "",
             "Cycles of the SM per step (module docstring of `rnnbench.kernels.trace_model`). `mean`, `median`: "
             "the trace's, over programs and steps (`trace.md`); a chain's mean is its phases' sum. `model`: "
             "the raw cost model's, from the traced kernel's SASS compiled here, the tagged exchange at the "
             "trace's mean reloads a step. The phases of each add up to its step.", ""]
    rows_of = dict(iter(table.groupby(KEY, sort=False))) if len(table) else {}
    for model, task in zip(models, tasks):
        variant, cell, hidden_size, batch, dtype = task[:5]
        if "skipped" in model:
            lines += [f"## {variant}: {cell} H={hidden_size} B={batch} {dtype}", "", f"- skipped: {model['skipped']}", ""]
            continue
        rows = rows_of[tuple(task[:5])]
        unseen = ", ".join(f"{part} {cycles:.0f}" for part, cycles in model["unseen"].items())
        lines += [f"## {variant}: {cell} H={hidden_size} B={batch} {dtype}, {model['programs']} programs", "",
                  f"- reloads a step (the trace's mean polls): {task[5]:.2f}; the model's cycles beyond the SASS: "
                  f"{unseen}", "",
                  "| phase | mean | median | model | model - mean |", "|---|---|---|---|---|"]
        for row in rows.itertuples():
            cells = [f"{value:.0f}" if not np.isnan(value) else "" for value in
                     (row.mean, row.median, row.model, row.model_minus_mean)]
            lines.append(f"| {row.phase} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from rnnbench.kernels.aot import compile_all

    parser = argparse.ArgumentParser(prog="python -m rnnbench.kernels.trace_model", description=__doc__.splitlines()[0])
    parser.add_argument("summary", help="a trace-summary.csv of rnnbench.kernels.step_trace")
    parser.add_argument("--title", default="", help="a heading's tail (e.g. the device and commit)")
    args = parser.parse_args(argv)
    try:
        summary = pd.read_csv(args.summary)
        tasks = traced_kernels(summary)
    except (OSError, ValueError) as error:
        parser.error(f"{args.summary}: {error}")
    if not tasks:
        parser.error(f"{args.summary} holds no traced kernel")
    models = compile_all(90, tasks, job=traced_model_or_skip)
    print(render(compare(summary, models), models, tasks, args.title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
