"""Where one step of the Gluon LSTM forward spends its cycles, measured inside the kernel: every
program stamps each step's events (:mod:`rnnbench.kernels.trace_events`) and this module splits the
step into the phases between them.

**Why.** The step ablation (:mod:`rnnbench.kernels.step_bench`) times whole kernels and variants
with a part left out; the cost model (:mod:`rnnbench.kernels.cost`) says where a step *should* go.
At H=768 B=16 the tagged forward's step is 2.36 µs (H200) and the model's loader term alone ~1.6 µs,
but which part of the hand-over (the load's round trip, the reloads behind late producers, the
shared-memory hand-over, the MMAs) takes the time was never measured. A trace says it directly,
per program and step, so the next change to the kernel is chosen by data.

**The phases** (cycles of the program's SM; each step measured from the previous step's
``state_out``, when this program's h of that step was computed and its stores issued, to this
step's, so the phases add up to the step exactly):

* with the tagged exchange (:data:`TAGGED_PHASES`): ``to_loader`` (the recurrence's arrival on
  ``h_free`` and the loader's wake-up), ``first_load`` (the loader's load of the state, its round
  trip and check), ``reloads`` (loading stale words again until all are fresh), ``handover`` (its
  stores to shared memory, proxy fence, CTA barrier, mbarrier arrival), ``wake`` (the recurrence
  seeing that arrival), ``product`` (the MMAs), ``gates_publish`` (gate split, activations, stores);
* with the grid barrier (:data:`BARRIER_PHASES`): ``barrier`` (release, the prefetch's issue and
  the wait for every program's flag), ``state_copy`` (the TMA copy of the state up to its first
  copy's arrival), ``product`` (every copy's MMAs), ``gates_publish``.

Across programs (``%globaltimer``, one clock for the GPU): ``publish_spread_ns``, how far apart the
programs' ``state_out`` of one step are, and ``after_last_publish_ns``, how long after the step's
last producer published a program's first load had arrived (negative: it arrived before the last
word could have, and a reload followed); :func:`last_publishers`, whether one program is the late
one step after step. :func:`timer_resolution_ns` reports the timer's observed
granularity, which bounds what those two can resolve.

**What is timed beside it.** The traced kernel is its own compilation (a stamp is a clock read and
one thread's store, ~70 instructions more in all at H=768), so :func:`trace_shape` also
times the untraced kernel in the same run, alternating launches: both as whole launches of ``T``
steps divided by ``T`` (launch, the compact state's copy and the kernel; CUDA events, median).

**What the model says of the same phases:** :mod:`rnnbench.kernels.trace_model` (no GPU) simulates
the traced kernel's SASS and reads its stamps' clock reads, so its phases are these phases.

``python -m rnnbench.kernels.step_trace --out DIR`` (a GPU; ``scripts/gpu-session.sh``'s ``trace``
stage) writes ``trace-steps.csv`` (per step, the median over programs of every phase),
``trace-summary.csv`` and ``trace.md``; ``--raw`` adds each trace as ``.npy``.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import pandas as pd
import torch

from rnnbench.kernels.trace_events import EVENTS

#: (phase, from event, its step offset, to event, its step offset) of the tagged exchange's step:
#: a chain from the previous step's ``state_out`` to this step's
TAGGED_PHASES = (("to_loader", "state_out", -1, "loader_start", 0),
                 ("first_load", "loader_start", 0, "first_load", 0),
                 ("reloads", "first_load", 0, "loader_fresh", 0),
                 ("handover", "loader_fresh", 0, "loader_handed", 0),
                 ("wake", "loader_handed", 0, "state_ready", 0),
                 ("product", "state_ready", 0, "product_done", 0),
                 ("gates_publish", "product_done", 0, "state_out", 0))
#: the same of the grid barrier's step
BARRIER_PHASES = (("barrier", "state_out", -1, "step_end", -1),
                  ("state_copy", "step_end", -1, "state_ready", 0),
                  ("product", "state_ready", 0, "product_done", 0),
                  ("gates_publish", "product_done", 0, "state_out", 0))
#: steps left out at the start of a trace: step 0 reads h0 unchecked, and the first steps warm up
WARMUP_STEPS = 8
#: what is traced by default: the goal shape first, then a small one; the tagged forward and the
#: grid barrier's
SHAPES = (("lstm", 768, 16), ("lstm", 256, 16))
VARIANTS = ("real_gluon_tagged", "real_gluon")


def _event(name: str) -> int:
    return EVENTS.index(name)


def _check(trace: np.ndarray) -> None:
    if trace.ndim != 3 or trace.shape[2] != len(EVENTS):
        raise ValueError(f"a trace is (programs, steps, {len(EVENTS)}) int64, got shape {trace.shape}")


def is_tagged(trace: np.ndarray) -> bool:
    """Whether ``trace`` is of the tagged exchange's kernel (its loader stamped its events)."""
    _check(trace)
    return bool((trace[..., _event("loader_start")] != 0).any())


def phases(trace: np.ndarray, warmup: int = WARMUP_STEPS) -> pd.DataFrame:
    """One row per program and step (from ``warmup``, at least 2, on): each phase's cycles
    (:data:`TAGGED_PHASES` or :data:`BARRIER_PHASES`, as :func:`is_tagged`), ``step`` (their sum:
    ``state_out`` to ``state_out``), ``publish_spread_ns`` and, tagged, ``polls`` and
    ``after_last_publish_ns`` (see the module docstring)."""
    _check(trace)
    programs, steps, _ = trace.shape
    first = max(warmup, 2)
    if steps <= first:
        raise ValueError(f"a trace of {steps} steps has none after the {first} left out (warmup={warmup})")
    tagged = is_tagged(trace)
    s = np.arange(first, steps)
    columns = {"program": np.repeat(np.arange(programs), len(s)), "step": np.tile(s, programs)}
    for name, start, start_offset, end, end_offset in (TAGGED_PHASES if tagged else BARRIER_PHASES):
        columns[name] = (trace[:, s + end_offset, _event(end)] - trace[:, s + start_offset, _event(start)]).ravel()
    out = trace[..., _event("state_out")]
    columns["step_cycles"] = (out[:, s] - out[:, s - 1]).ravel()
    published = trace[..., _event("state_out_ns")]
    columns["publish_spread_ns"] = np.tile(published.max(0)[s] - published.min(0)[s], programs)
    if tagged:
        columns["polls"] = trace[:, s, _event("polls")].ravel()
        arrived = trace[:, s, _event("first_load_ns")]
        columns["after_last_publish_ns"] = (arrived - published.max(0)[s - 1]).ravel()
    return pd.DataFrame(columns)


def clock_ghz(trace: np.ndarray, warmup: int = WARMUP_STEPS) -> float:
    """The SMs' clock over the trace (GHz): each program's ``state_out`` cycles against its
    nanoseconds, first kept step to last, the median over programs."""
    _check(trace)
    first = max(warmup, 2)
    cycles = trace[:, -1, _event("state_out")] - trace[:, first, _event("state_out")]
    ns = trace[:, -1, _event("state_out_ns")] - trace[:, first, _event("state_out_ns")]
    if (ns <= 0).any():
        raise ValueError("the trace's state_out_ns does not advance over its steps: not a trace of a run")
    return float(np.median(cycles / ns))


def timer_resolution_ns(trace: np.ndarray) -> int:
    """The smallest step between distinct ``%globaltimer`` values in ``trace`` (ns): the timer's
    granularity as observed (0 with fewer than two distinct values)."""
    _check(trace)
    stamps = trace[..., [_event("state_out_ns"), _event("first_load_ns")]]
    distinct = np.unique(stamps[stamps != 0])
    return int(np.diff(distinct).min()) if len(distinct) > 1 else 0


def summary(table: pd.DataFrame, ghz: float) -> pd.DataFrame:
    """Per phase of :func:`phases`' ``table`` (then the step, the polls and the cross-program
    columns): median, quartiles and mean in cycles and the median in ns at ``ghz``; ``share`` is
    the phase's mean over the step's mean (the shares of a step's phases add up to 1); ``negative``
    counts rows where the phase's end was stamped before its start (a stamp out of order: the
    phase's numbers are then suspect)."""
    names = [column for column in table.columns if column not in ("program", "step")]
    step_mean = table["step_cycles"].mean()
    rows = []
    for name in names:
        values = table[name].to_numpy()
        in_ns = name.endswith("_ns")
        row = {"phase": name, "unit": "ns" if in_ns else ("polls" if name == "polls" else "cycles"),
               "median": float(np.median(values)), "q25": float(np.percentile(values, 25)),
               "q75": float(np.percentile(values, 75)), "mean": float(values.mean()),
               "median_ns": float(np.median(values)) if in_ns else
               (float("nan") if name == "polls" else float(np.median(values)) / ghz),
               "share": float(values.mean() / step_mean) if not in_ns and name not in ("polls", "step_cycles") else
               float("nan"),
               "negative": int((values < 0).sum()) if name != "after_last_publish_ns" else 0}
        rows.append(row)
    return pd.DataFrame(rows)


def last_publishers(trace: np.ndarray, warmup: int = WARMUP_STEPS) -> pd.DataFrame:
    """Per program: ``last_share``, the share of steps (from ``warmup`` on) in which it published its
    h last of all programs (``state_out_ns``; every program 1/P where the lateness is random, one
    program near 1 where a step waits for the same one), and ``median_lag_ns``, how long after the
    step's first publish its own came, median over steps; sorted latest first."""
    _check(trace)
    first = max(warmup, 2)
    published = trace[:, first:, _event("state_out_ns")]
    last = np.bincount(published.argmax(0), minlength=trace.shape[0]) / published.shape[1]
    lag = np.median(published - published.min(0), axis=1)
    return (pd.DataFrame({"program": np.arange(trace.shape[0]), "last_share": last, "median_lag_ns": lag})
            .sort_values(["last_share", "median_lag_ns"], ascending=False, ignore_index=True))


def per_step(table: pd.DataFrame) -> pd.DataFrame:
    """The median over programs of every column of :func:`phases`' ``table``, one row per step."""
    return table.drop(columns="program").groupby("step").median().reset_index()


def trace_buffer(plan, steps: int, device) -> torch.Tensor:
    """A zeroed trace for a launch of ``plan`` over ``steps`` steps: int64 ``(P, steps, events)``."""
    return torch.zeros(plan.grid[0] * plan.grid[1] * plan.directions, steps, len(EVENTS), dtype=torch.int64,
                       device=device)


def _launch_us(launch, steps: int) -> float:
    """One launch of ``steps`` steps, µs per step (CUDA events around it)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    launch(steps)
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1000.0 / steps


def trace_shape(cell: str, hidden_size: int, batch: int, dtype: torch.dtype, variant: str, steps: int,
                repeats: int = 5) -> tuple[np.ndarray, dict]:
    """Trace ``variant`` (a Gluon forward of :data:`rnnbench.kernels.step_bench.REAL_PATHS`) at one
    shape on this GPU: returns the last traced launch's trace and the traced and untraced launches'
    µs per step (median and quartiles of ``repeats`` each, interleaved)."""
    from rnnbench.kernels.launch import check_barriers
    from rnnbench.kernels.step_bench import REAL_PATHS, _real_plan, real_launcher

    kernel = REAL_PATHS[variant]
    if kernel.path != "gluon" or kernel.direction != "fwd" or not kernel.grid_sync:
        raise ValueError(f"only the Gluon forward with its exchange is traced, not {variant!r}")
    with kernel.switches():
        plan = _real_plan(variant, cell, hidden_size, batch, dtype)
        trace = trace_buffer(plan, steps, "cuda")
        traced = real_launcher(plan, hidden_size, batch, dtype, steps, trace=trace)
        untraced = real_launcher(plan, hidden_size, batch, dtype, steps)
        traced(steps), untraced(steps)  # compiled and warm
        check_barriers(wait=True)
        times = {"traced": [], "untraced": []}
        for _ in range(repeats):  # alternating, so drifts of the clock touch both alike
            times["traced"].append(_launch_us(traced, steps))
            times["untraced"].append(_launch_us(untraced, steps))
        check_barriers(wait=True)
    timings = {f"{name}_{stat}": float(np.percentile(values, q)) for name, values in times.items()
               for stat, q in (("us_per_step", 50), ("q25_us", 25), ("q75_us", 75))}
    return trace.cpu().numpy(), timings | {"programs": trace.shape[0]}


def render(results: list[dict], device_name: str) -> str:
    """``trace.md``: per traced kernel, its timings and its phases' summary."""
    lines = [f"# Step traces ({device_name})", "",
             "Cycles of each program's SM per phase of a step (module docstring of "
             "`rnnbench.kernels.step_trace`); medians and quartiles over programs and steps, the first "
             f"{WARMUP_STEPS} steps left out. `share`: the phase's mean over the step's mean. The launch "
             "timings are whole launches of T steps over T (launch, state copy, kernel), traced and untraced "
             "interleaved in this run.", ""]
    for result in results:
        timing = result["timings"]
        lines += [f"## {result['variant']}: {result['cell']} H={result['hidden_size']} B={result['batch']} "
                  f"{result['dtype']}, T={result['steps']}, {timing['programs']} programs", "",
                  f"- untraced {timing['untraced_us_per_step']:.3f} µs/step (IQR {timing['untraced_q25_us']:.3f}-"
                  f"{timing['untraced_q75_us']:.3f}), traced {timing['traced_us_per_step']:.3f} "
                  f"({timing['traced_q25_us']:.3f}-{timing['traced_q75_us']:.3f})",
                  f"- SM clock {result['ghz']:.3f} GHz (from the trace); %globaltimer resolution "
                  f"{result['resolution_ns']} ns",
                  "- last to publish: " + ", ".join(
                      f"program {row.program} in {row.last_share:.0%} of steps (median {row.median_lag_ns:.0f} ns "
                      "after the first)" for row in result["late"].head(3).itertuples())
                  + f" (each {1 / timing['programs']:.0%} if it were random)", "",
                  "| phase | unit | median | q25 | q75 | mean | median ns | share | negative |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for row in result["summary"].itertuples():
            share = "" if np.isnan(row.share) else f"{row.share:.3f}"
            ns = "" if np.isnan(row.median_ns) else f"{row.median_ns:.0f}"
            lines.append(f"| {row.phase} | {row.unit} | {row.median:.0f} | {row.q25:.0f} | {row.q75:.0f} | "
                         f"{row.mean:.1f} | {ns} | {share} | {row.negative} |")
        lines.append("")
    return "\n".join(lines)


def parse_variants(text: str) -> tuple[str, ...]:
    """``"real_gluon_tagged,real_gluon"`` -> the names, each a Gluon forward with its exchange
    (``ValueError`` naming a bad one and those allowed)."""
    from rnnbench.kernels.step_bench import REAL_PATHS

    allowed = tuple(name for name, kernel in REAL_PATHS.items()
                    if kernel.path == "gluon" and kernel.direction == "fwd" and kernel.grid_sync)
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    bad = [name for name in names if name not in allowed]
    if bad or not names:
        raise ValueError(f"--variants takes Gluon forwards with their exchange ({', '.join(allowed)}), got {text!r}")
    return names


def main(argv: list[str] | None = None) -> int:
    from rnnbench.kernels.step_bench import parse_shapes

    parser = argparse.ArgumentParser(prog="python -m rnnbench.kernels.step_trace", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="directory to write trace-steps.csv, trace-summary.csv, trace.md")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16"))
    parser.add_argument("--steps", type=int, default=1024, help="steps per launch (T)")
    parser.add_argument("--repeats", type=int, default=5, help="timed launches of each kernel, traced and untraced")
    parser.add_argument("--shapes", default=",".join(f"{c}:{h}:{b}" for c, h, b in SHAPES),
                        help="comma-separated CELL:H:B shapes (LSTM only)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated step_bench REAL_PATHS names")
    parser.add_argument("--raw", action="store_true", help="also write each trace as .npy")
    args = parser.parse_args(argv)
    try:
        shapes = parse_shapes(args.shapes)
        variants = parse_variants(args.variants)
    except ValueError as error:
        parser.error(str(error))
    if any(cell != "lstm" for cell, _, _ in shapes):
        parser.error(f"only the LSTM forward is traced, got shapes {args.shapes!r}")
    if args.steps <= WARMUP_STEPS + 1 or args.repeats < 1:
        parser.error(f"--steps must be > {WARMUP_STEPS + 1} and --repeats >= 1, got {args.steps} and {args.repeats}")
    if not torch.cuda.is_available():
        print("step_trace: needs a CUDA GPU (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    dtype = getattr(torch, args.dtype)
    os.makedirs(args.out, exist_ok=True)
    device_name = torch.cuda.get_device_name()
    results, steps_frames, summaries = [], [], []
    for cell, hidden_size, batch in shapes:
        for variant in variants:
            key = {"cell": cell, "hidden_size": hidden_size, "batch": batch, "dtype": args.dtype, "variant": variant,
                   "steps": args.steps}
            try:
                trace, timings = trace_shape(cell, hidden_size, batch, dtype, variant, args.steps, args.repeats)
            except Exception as error:  # reported, and the other kernels still traced
                print(f"step_trace: {key}: skipped: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
                continue
            table = phases(trace)
            result = key | {"timings": timings, "ghz": clock_ghz(trace), "resolution_ns": timer_resolution_ns(trace)}
            result["summary"] = summary(table, result["ghz"])
            result["late"] = last_publishers(trace)
            results.append(result)
            steps_frames.append(per_step(table).assign(**key))
            summaries.append(result["summary"].assign(**key, **timings, ghz=result["ghz"],
                                                      resolution_ns=result["resolution_ns"]))
            if args.raw:
                np.save(os.path.join(args.out, f"trace-{variant}-h{hidden_size}-b{batch}.npy"), trace)
            # written after every kernel: a run cut short keeps what it traced
            pd.concat(steps_frames).to_csv(os.path.join(args.out, "trace-steps.csv"), index=False)
            pd.concat(summaries).to_csv(os.path.join(args.out, "trace-summary.csv"), index=False)
            with open(os.path.join(args.out, "trace.md"), "w") as handle:
                handle.write(render(results, device_name))
            print(f"traced {variant} H={hidden_size} B={batch}: untraced {timings['untraced_us_per_step']:.3f}, "
                  f"traced {timings['traced_us_per_step']:.3f} µs/step", flush=True)
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
