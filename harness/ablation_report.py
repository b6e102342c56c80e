"""The decisions a step-ablation run (:mod:`rnnbench.kernels.step_bench`) was made for, as tables.

Each question the ablation answers is a pair of rows of one shape, timed in the same run: a
baseline and an alternative (:data:`QUESTIONS`), e.g. the shipped LSTM forward with its barrier's
poll loads acquires (``real``) against the same kernel with them relaxed (``real_relaxed``). For
every shape where both were timed, :func:`compare` gives both medians, the ratio alternative /
baseline (below 1: the alternative is faster) and whether the two interquartile ranges are apart
(``clear``: the difference is larger than either run's spread; otherwise the pair is a tie at this
precision). :func:`against_estimate` joins the measured rows with the cost model's
(``step_bench --estimate``) per variant, the calibration of the model term by term, and
:func:`extra_polls` lists how often the tagged exchange's kernels polled again.

    python -m rnnbench.harness.ablation_report reports/h100/step-ablation.csv \\
        --estimate reports/aot/step-ablation-estimate-sm_90-triton3.6.csv

Both print Markdown; nothing here needs a GPU. Rows of fewer programs than the layout has (the
program sweep) are left out of both tables: they answer another question (what the number of
programs costs), which the CSV shows directly.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import pandas as pd

from rnnbench.kernels.calibration import SHAPE_COLUMNS as SHAPE
from rnnbench.kernels.cost import between_reloads
from rnnbench.kernels.step_bench import read_rows, whole_grid


@dataclass(frozen=True)
class Question:
    """What a pair of variants decides: ``alternative`` against ``baseline``, same shape, same run."""

    name: str
    baseline: str
    alternative: str


QUESTIONS = (
    Question("relaxed poll, shipped plain forward", "real", "real_relaxed"),
    Question("relaxed poll, shipped Gluon forward", "real_gluon", "real_gluon_relaxed"),
    Question("relaxed poll, barrier alone", "sync", "sync_relaxed"),
    Question("relaxed poll, step without streams", "full", "full_relaxed"),
    Question("tagged exchange instead of the barrier", "full", "tagged"),
    Question("tagged exchange reloading only its stale words, instead of the barrier", "full", "tagged_stale"),
    Question("tagged exchange: stale words reloaded against the whole state", "tagged", "tagged_stale"),
    Question("relaxed poll, shipped backward", "real_bwd", "real_bwd_relaxed"),
    Question("16-row batch blocks (planned) against the wide ones", "real_wide_rows", "real"),
    Question("16-row batch blocks (planned) against the wide ones, backward", "real_bwd_wide_rows", "real_bwd"),
    Question("Gluon forward against the plain one", "real", "real_gluon"),
    Question("Gluon backward against the plain one", "real_bwd", "real_gluon_bwd"),
    Question("Gluon forward without its grid barrier", "real_gluon", "real_gluon_no_sync"),
    Question("Gluon backward without its grid barrier", "real_gluon_bwd", "real_gluon_bwd_no_sync"),
    Question("Gluon backward with its copies streamed (each issued once its own producers arrived)", "real_gluon_bwd",
             "real_gluon_bwd_streamed"),
    Question("Gluon training forward: the tagged exchange against the grid barrier", "real_gluon_train",
             "real_gluon_tagged_train"),
    Question("Gluon forward, weight tiles in registers (planned) against all in shared memory",
             "real_gluon_shared_weights", "real_gluon"),
    Question("Gluon forward, weight tiles in registers in 32-row batch blocks too", "real_gluon",
             "real_gluon_wide_register_weights"),
    # the kernels alone: the fused one pays off where its excess stays below the projection GEMM it
    # saves (not timed here; gpu-core's fwd rows of the whole call have it)
    Question("Gluon forward, input projection fused into it (kernel only, without the GEMM it saves)", "real_gluon",
             "real_gluon_fused_input"),
    Question("Gluon forward, state copies of 8 tiles (the plan's until 7caf667's run) against the plan's 4",
             "real_gluon", "real_gluon_copies_8"),
    Question("Gluon forward, tagged exchange (a loader polls the words) instead of its grid barrier",
             "real_gluon", "real_gluon_tagged"),
    Question("Gluon forward tagged, its loaders pausing 150 ns before each first load", "real_gluon_tagged",
             "real_gluon_tagged_delayed"),
    Question("Gluon forward tagged, its loaders pausing 300 ns before each first load", "real_gluon_tagged",
             "real_gluon_tagged_delayed_300"),
    Question("Gluon forward tagged, four one-warp loaders instead of one four-warp loader", "real_gluon_tagged",
             "real_gluon_tagged_four_loaders"),
    Question("Gluon forward tagged, its MMAs in two accumulator chains instead of one", "real_gluon_tagged",
             "real_gluon_tagged_two_chains"),
    Question("Gluon forward tagged, its loader handing the state over in four groups of tiles instead of at once",
             "real_gluon_tagged", "real_gluon_tagged_groups_4"),
    Question("Gluon forward tagged, its loader's threads polling alone instead of reducing their staleness first",
             "real_gluon_tagged", "real_gluon_tagged_thread_poll"),
    Question("Gluon forward tagged, its loader's threads polling alone, pausing 150 ns before each first load",
             "real_gluon_tagged_thread_poll", "real_gluon_tagged_thread_poll_delayed"),
    Question("Gluon forward tagged, its gates split inside each warp instead of through shared memory",
             "real_gluon_tagged", "real_gluon_tagged_local_gates"),
    Question("Gluon forward tagged, its loader's threads polling alone, its gates split inside each warp too",
             "real_gluon_tagged_thread_poll", "real_gluon_tagged_thread_poll_local_gates"),
    Question("barrier alone, polled by each program's first warp alone instead of every warp", "sync", "sync_first_warp"),
    Question("step without streams, barrier polled by the first warp alone", "full", "full_first_warp"),
    Question("shipped plain forward, barrier polled by the first warp alone", "real", "real_first_warp"),
    Question("shipped plain backward, barrier polled by the first warp alone", "real_bwd", "real_bwd_first_warp"),
    Question("Gluon forward, barrier polled by the first warp alone", "real_gluon", "real_gluon_first_warp"),
    Question("Gluon backward, barrier polled by the first warp alone", "real_gluon_bwd", "real_gluon_bwd_first_warp"),
    Question("Gluon training forward, barrier polled by the first warp alone", "real_gluon_train",
             "real_gluon_train_first_warp"),
)


def compare(measured: pd.DataFrame, questions=QUESTIONS) -> pd.DataFrame:
    """One row per question and shape where both variants were timed: medians and quartiles (µs per
    step), ``ratio`` = alternative / baseline and ``clear`` (the interquartile ranges do not overlap)."""
    rows = whole_grid(measured).set_index(SHAPE + ["variant"])
    out = []
    for question in questions:
        for shape, group in rows.groupby(level=SHAPE):
            variants = group.droplevel(SHAPE)
            if question.baseline not in variants.index or question.alternative not in variants.index:
                continue
            base, alt = variants.loc[question.baseline], variants.loc[question.alternative]
            apart = alt.q75_us < base.q25_us or base.q75_us < alt.q25_us
            out.append({"question": question.name, **dict(zip(SHAPE, shape)),
                        "baseline": question.baseline, "baseline_us": base.us_per_step,
                        "alternative": question.alternative, "alternative_us": alt.us_per_step,
                        "ratio": round(alt.us_per_step / base.us_per_step, 3), "clear": bool(apart)})
    return pd.DataFrame(out)


def against_estimate(measured: pd.DataFrame, estimated: pd.DataFrame) -> pd.DataFrame:
    """Measured and estimated µs per step of every variant both have, per shape, with
    ``measured / estimated``."""
    keys = SHAPE + ["variant"]
    joined = whole_grid(measured)[keys + ["programs", "us_per_step"]].merge(
        estimated[keys + ["us_per_step"]], on=keys, suffixes=("_measured", "_estimated"))
    joined["measured_over_estimated"] = (joined.us_per_step_measured / joined.us_per_step_estimated).round(3)
    return joined


def extra_polls(measured: pd.DataFrame, estimated: pd.DataFrame | None = None) -> pd.DataFrame:
    """The rows that counted their extra polls (the Gluon forward with the tagged exchange:
    ``extra_polls_per_step``, polls per program and step beyond the first), with their µs per step;
    empty for a CSV without the column (older runs). With the model's ``estimated`` rows: its µs per
    step where every first load finds the state complete (``model_complete_us``), with one reload
    every step (``model_one_reload_us``, what its ``us_per_step`` assumes), and between the two at the
    measured rate (``model_at_measured_polls_us``: complete + polls x (one reload - complete))."""
    if "extra_polls_per_step" not in measured.columns:
        return pd.DataFrame()
    polled = measured[pd.to_numeric(measured.extra_polls_per_step, errors="coerce").notna()]
    table = polled[SHAPE + ["variant", "programs", "us_per_step", "extra_polls_per_step"]].reset_index(drop=True)
    if estimated is None or "first_load_complete_us" not in estimated.columns:
        return table
    model = estimated[SHAPE + ["variant", "us_per_step", "first_load_complete_us"]].rename(
        columns={"us_per_step": "model_one_reload_us", "first_load_complete_us": "model_complete_us"})
    table = table.merge(model, on=SHAPE + ["variant"], how="left")
    polls = pd.to_numeric(table.extra_polls_per_step)
    complete, reload = pd.to_numeric(table.model_complete_us), pd.to_numeric(table.model_one_reload_us)
    table["model_at_measured_polls_us"] = between_reloads(complete, reload, polls).round(4)
    return table


def main(argv: list[str] | None = None) -> int:
    from rnnbench.harness.report import markdown_table

    parser = argparse.ArgumentParser(prog="python -m rnnbench.harness.ablation_report",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("measured", help="a step-ablation CSV measured on a GPU")
    parser.add_argument("--estimate", help="the cost model's CSV of the same variants (step_bench --estimate)")
    args = parser.parse_args(argv)
    try:
        measured = read_rows(args.measured, "measured")
        estimated = read_rows(args.estimate, "estimate") if args.estimate else None
    except (OSError, ValueError) as error:
        print(f"ablation_report: {error}", file=sys.stderr)
        return 2
    print(f"## Decisions ({measured.device_name.iloc[0]}; ratio = alternative / baseline, below 1: the "
          "alternative is faster; clear: the interquartile ranges do not overlap)\n")
    decisions = compare(measured)
    print(markdown_table(decisions) if not decisions.empty else "No question has both of its variants in this run.")
    polls = extra_polls(measured, estimated)
    if not polls.empty:
        print("\n## The tagged exchange's polls beyond each step's first (the cost model assumes one)\n")
        print(markdown_table(polls))
    if estimated is not None:
        print("\n## Measured against the cost model (µs per step)\n")
        print(markdown_table(against_estimate(measured, estimated)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
