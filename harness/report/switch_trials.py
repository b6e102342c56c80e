"""Which of the kernels' switches one GPU session says to set, from its tests and its timings.

Every switch of :mod:`rnnbench.kernels.switches` that is off (or at its measured best) waits for a
GPU to pass its variant's tests and time it against what ships. A session
(``scripts/gpu-session.sh``) leaves both in its folder: each test stage's JUnit XML
(``gpu-tests-<stage>.xml``, ``gpu-tests.xml`` for the main stage), the step ablation's kernels alone
(``step-ablation.csv``, :mod:`rnnbench.kernels.step_bench`) and the whole calls of the ``gpu-fused``
suite (``gpu-fused/results.csv``). :data:`TRIALS` says, for each switch, which stages must have passed
and which pair of rows decides it; :func:`judge` reads them and gives one verdict a switch:

* ``set NAME = VALUE``: every stage passed, and the candidate is faster than the baseline, the two
  interquartile ranges apart, at one shape at least and slower (likewise apart) at none;
* ``keep``: slower at a shape at least and faster at none;
* ``tests failed``: a stage failed (whatever the timings: they are of a kernel that is wrong somewhere);
* ``mixed``: faster at some shapes, slower at others (a rule by shape is a human's call);
* ``tie``: no shape where the ranges are apart;
* ``not measured``, or ``faster, but its tests did not run``: what is missing.

Each timing pair comes from one run, so the ratio is a same-machine, same-session comparison; a
verdict is only as good as that run (read its spread). Nothing here needs a GPU.

**What the model said beforehand.** Given the step ablation's estimate of the same code
(``step-ablation-estimate-sm_90-triton<minor>.csv``) and the cost model's calibration as it was
before the session's timings were fitted (:func:`model_ratios`), each ablation pair also carries
the model's candidate / baseline ratio, raw and calibrated, and each trial says at how many of its
apart shapes each put the candidate on the measured side of 1: a record, decision by decision, of
whether the model can be trusted with the next switch. (Tagged variants are estimated at one
reload a step, both sides of a pair alike.)
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

#: the main test stage's name (its file is ``gpu-tests.xml``)
MAIN_STAGE = "main"
ABLATION = "ablation"
FUSED_SUITE = "gpu-fused"
#: the timing of the gpu-fused suite's rows compared (CUDA-graph replay)
SUITE_TIMING = "latency_cudagraph"


@dataclass(frozen=True)
class SwitchTrial:
    """What decides one switch: set ``switch`` (a global of :mod:`rnnbench.kernels.switches`, or
    several joined by ``+``, set together) to ``value`` if the test ``stages`` passed and
    ``candidate`` beats ``baseline`` in ``source`` (:data:`ABLATION`: step-ablation variants, the
    kernels alone; :data:`FUSED_SUITE`: gpu-fused backends in ``mode``, the whole call)."""

    switch: str
    value: object
    stages: tuple[str, ...]
    source: str
    baseline: str
    candidate: str
    mode: str = "fwd"

    @property
    def names(self) -> tuple[str, ...]:
        """The globals the trial sets (one, or those of a combination)."""
        return tuple(self.switch.split("+"))


#: every switch a session can decide, in the order the README lists them
TRIALS = (
    # copies of 4 won on the H200 (7caf667) and ship: the trial checks that copies of 8 do not win back
    SwitchTrial("GLUON_TILES_PER_COPY", 8, (MAIN_STAGE,), ABLATION, "real_gluon", "real_gluon_copies_8"),
    SwitchTrial("GLUON_FUSED_INPUT", True, ("fused",), FUSED_SUITE, "triton", "triton-fused"),
    SwitchTrial("GLUON_TAGGED_POLL_DELAY_NS", 150, ("tagged",), ABLATION, "real_gluon_tagged",
                "real_gluon_tagged_delayed"),
    SwitchTrial("GLUON_MMA_CHAINS", 2, ("tagged", "chains"), ABLATION, "real_gluon_tagged",
                "real_gluon_tagged_two_chains"),
    SwitchTrial("GLUON_TAGGED_GROUPS", 4, ("tagged", "groups"), ABLATION, "real_gluon_tagged",
                "real_gluon_tagged_groups_4"),
    SwitchTrial("GLUON_TAGGED_THREAD_POLL", True, ("tagged", "thread-poll"), ABLATION, "real_gluon_tagged",
                "real_gluon_tagged_thread_poll"),
    # the gates split inside each warp are judged with the thread poll on, as they would ship
    SwitchTrial("GLUON_LOCAL_GATES", True, ("tagged", "thread-poll", "local-gates"), ABLATION,
                "real_gluon_tagged_thread_poll", "real_gluon_tagged_thread_poll_local_gates"),
    SwitchTrial("GLUON_BACKWARD_STREAMED", True, ("streamed",), ABLATION, "real_gluon_bwd", "real_gluon_bwd_streamed"),
    SwitchTrial("GLUON_TAGGED_TRAINING", True, ("tagged", "tagged-training"), ABLATION, "real_gluon_train",
                "real_gluon_tagged_train"),
    # the grid barrier's poll serves every cooperative kernel; judged where the model expects most of it
    # in training at the anchor, the Gluon backward's (48 producers of 8 warps; the step ablation's
    # other *_first_warp pairs are in its report)
    SwitchTrial("GRID_POLL_FIRST_WARP", True, ("first-warp",), ABLATION, "real_gluon_bwd", "real_gluon_bwd_first_warp"),
    SwitchTrial("GLUON_OVERLAPPED_PROJECTION", True, ("overlapped",), FUSED_SUITE, "triton", "triton-overlapped"),
    # the goal's candidate: every inference switch at once against the plan, the whole call at the anchor
    SwitchTrial("GLUON_TAGGED_THREAD_POLL+GLUON_LOCAL_GATES+GLUON_OVERLAPPED_PROJECTION", True,
                ("tagged", "thread-poll", "local-gates", "overlapped"), FUSED_SUITE, "triton",
                "triton-inference-switches"),
    SwitchTrial("OVERLAPPED_GRADIENTS", True, ("overlapped-grads",), FUSED_SUITE, "triton", "triton-overlapped-grads",
                mode="fwd_bwd"),
)


def stage_file(directory: Path, stage: str) -> Path:
    """The JUnit XML a session writes for ``stage``."""
    return directory / ("gpu-tests.xml" if stage == MAIN_STAGE else f"gpu-tests-{stage}.xml")


#: failing tests a stage's summary names (the rest are in its XML and log)
SHOWN_FAILURES = 3
#: a test stage's states (:func:`stage_result`)
PASSED, FAILED, NOT_RUN = "passed", "failed", "not run"


def stage_result(directory: Path, stage: str) -> tuple[str, str]:
    """``(what the stage's XML says, PASSED | FAILED | NOT_RUN)``: passed only where it ran a test and
    none failed or errored; a stage whose every test was skipped did not exercise the variant, and an
    unreadable XML says nothing (both :data:`NOT_RUN`)."""
    path = stage_file(directory, stage)
    if not path.is_file():
        return f"{stage}: not run", NOT_RUN
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as error:
        return f"{stage}: unreadable {path.name} ({error})", NOT_RUN
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    counts = {key: sum(int(suite.get(key, 0)) for suite in suites) for key in ("tests", "failures", "errors", "skipped")}
    broken = counts["failures"] + counts["errors"]
    ran = counts["tests"] - counts["skipped"]
    if broken:
        failing = [case.get("name", "?") for case in root.iter("testcase")
                   if case.find("failure") is not None or case.find("error") is not None]
        shown = ", ".join(failing[:SHOWN_FAILURES]) + (", ..." if len(failing) > SHOWN_FAILURES else "")
        return f"{stage}: {broken} of {counts['tests']} failed ({shown})", FAILED
    if ran <= 0:
        return f"{stage}: every test skipped", NOT_RUN
    return f"{stage}: {ran} passed", PASSED


#: the columns of :func:`ablation_pairs` and :func:`suite_pairs`
PAIR_COLUMNS = ["shape", "baseline_us", "candidate_us", "ratio", "apart"]
#: the model's columns of an ablation pair (:func:`model_ratios`)
MODEL_COLUMNS = ["raw_ratio", "calibrated_ratio"]


def _shape_label(row) -> str:
    return f"{row.cell} {row.dtype} H={row.hidden_size} B={row.batch}"


def estimated_steps(estimate: pd.DataFrame, calibration=None) -> pd.DataFrame:
    """A step-ablation estimate with its terms (as :func:`rnnbench.kernels.step_bench.read_rows`
    reads it), its whole-grid rows only, labelled by ``shape`` (as :func:`ablation_pairs` labels
    the measured ones) and with ``calibrated_us``: the terms as ``calibration`` (a
    :class:`rnnbench.kernels.calibration.Calibration`) scales them, or the raw estimate without one."""
    from rnnbench.kernels.cost import TERMS
    from rnnbench.kernels.step_bench import whole_grid

    rows = whole_grid(estimate)
    # the GEMMs and per-call overhead are no part of a kernel's step: the estimate has no column for them
    rows = rows.assign(**{f"t_{term}": rows.get(f"t_{term}", 0.0) for term in TERMS}).fillna(
        {f"t_{term}": 0.0 for term in TERMS})
    calibrated = calibration.apply(rows).est_us_per_step if calibration is not None else rows.us_per_step
    return rows.assign(shape=[_shape_label(row) for row in rows.itertuples()], calibrated_us=calibrated)


def model_ratios(estimated: pd.DataFrame, trial: SwitchTrial) -> pd.DataFrame:
    """The cost model's candidate / baseline ratio of an ablation trial at every shape where
    ``estimated`` (:func:`estimated_steps`) has both variants: ``raw_ratio`` (the estimates'
    ``us_per_step``) and ``calibrated_ratio`` (their ``calibrated_us``), indexed by the shape's label."""
    baseline, candidate = (estimated[estimated.variant == variant].drop_duplicates("shape").set_index("shape")[
        ["us_per_step", "calibrated_us"]].add_suffix(suffix) for variant, suffix in
        ((trial.baseline, "_baseline"), (trial.candidate, "_candidate")))
    joined = baseline.join(candidate, how="inner")
    return pd.DataFrame({"raw_ratio": joined.us_per_step_candidate / joined.us_per_step_baseline,
                         "calibrated_ratio": joined.calibrated_us_candidate / joined.calibrated_us_baseline},
                        index=joined.index)


def model_agreement(pairs: pd.DataFrame) -> str:
    """At how many of the pairs' apart shapes the model's raw and calibrated ratios put the
    candidate on the measured side of 1 (``-`` where no apart shape has an estimate)."""
    apart = pairs[pairs.apart.astype(bool)].dropna(subset=MODEL_COLUMNS) if set(MODEL_COLUMNS) <= set(pairs) else []
    if not len(apart):
        return "-"
    measured = apart.ratio.astype(float) < 1
    raw = int(((apart.raw_ratio < 1) == measured).sum())
    calibrated = int(((apart.calibrated_ratio < 1) == measured).sum())
    return f"raw {raw}/{len(apart)}, calibrated {calibrated}/{len(apart)}"


def ablation_pairs(measured: pd.DataFrame, trial: SwitchTrial) -> pd.DataFrame:
    """The trial's two variants at every shape of a step-ablation run (``measured``, as
    :func:`rnnbench.kernels.step_bench.read_rows` reads it) where both were timed, µs per step: the
    step ablation's own decision table (:func:`rnnbench.harness.ablation_report.compare`)."""
    from rnnbench.harness.ablation_report import Question, compare

    table = compare(measured, [Question(trial.switch, trial.baseline, trial.candidate)])
    if table.empty:
        return pd.DataFrame(columns=PAIR_COLUMNS)
    return pd.DataFrame({
        "shape": [_shape_label(row) for row in table.itertuples()],
        "baseline_us": table.baseline_us, "candidate_us": table.alternative_us,
        "ratio": table.alternative_us / table.baseline_us, "apart": table.clear})


def suite_pairs(data, trial: SwitchTrial) -> pd.DataFrame:
    """The trial's two backends at every shape of a suite run (``data``, a
    :class:`rnnbench.harness.report.load.ReportData`) where both have a valid
    :data:`SUITE_TIMING` row in the trial's mode (the plain LSTM, no options), µs per step."""
    frame = data.valid
    rows = frame[(frame.metric == SUITE_TIMING) & (frame["mode"] == trial.mode) & (frame.family == "lstm")
                 & frame.params.fillna("").eq("")]
    shape = ["dtype", "hidden_size", "batch", "seq_len"]
    sides = []
    for side, backend in (("baseline", trial.baseline), ("candidate", trial.candidate)):
        picked = rows[rows.backend == backend].drop_duplicates(shape, keep="last").set_index(shape)
        per_step = 1000 / picked.index.get_level_values("seq_len").to_numpy()  # ms a call -> µs a step
        sides.append(pd.DataFrame({f"{side}_us": picked.value * per_step, f"{side}_q25": picked.q25 * per_step,
                                   f"{side}_q75": picked.q75 * per_step}))
    joined = sides[0].join(sides[1], how="inner").reset_index()
    if joined.empty:
        return pd.DataFrame(columns=PAIR_COLUMNS)
    apart = (joined.candidate_q75 < joined.baseline_q25) | (joined.baseline_q75 < joined.candidate_q25)
    return pd.DataFrame({"shape": [f"lstm {row.dtype} H={row.hidden_size} B={row.batch} T={row.seq_len} {trial.mode}"
                                   for row in joined.itertuples()],
                         "baseline_us": joined.baseline_us, "candidate_us": joined.candidate_us,
                         "ratio": joined.candidate_us / joined.baseline_us, "apart": apart})


def verdict(trial: SwitchTrial, stages: list[str], pairs: pd.DataFrame) -> str:
    """The trial's verdict (see the module docstring) from its test stages' states
    (:func:`stage_result`) and its timing pairs."""
    if FAILED in stages:
        return "tests failed"
    if pairs.empty:
        return "not measured"
    faster = int((pairs.apart & (pairs.ratio < 1)).sum())
    slower = int((pairs.apart & (pairs.ratio > 1)).sum())
    if faster and slower:
        return f"mixed: faster at {faster}, slower at {slower} of {len(pairs)} shapes"
    if slower:
        return "keep"
    if not faster:
        return "tie"
    if NOT_RUN in stages:
        return "faster, but its tests did not run"
    return f"set {' and '.join(trial.names)} = {trial.value!r}"


def judge(directory: str | Path, renames: dict[str, str] | None = None, trials=TRIALS,
          estimate_csv: str | Path | None = None, calibration=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(one row per trial, one row per trial and shape)`` for the session folder ``directory``:
    the verdicts and the timings behind them. A missing step ablation or gpu-fused run leaves the
    trials it decides ``not measured``. ``renames``: the step ablation's variants under today's
    names, for a session of older code (:func:`rnnbench.kernels.calibration.rename_variants`: at
    7caf667 ``real_gluon_tagged`` had four loaders). ``estimate_csv`` (a step-ablation estimate of
    the code the session ran) and ``calibration`` (a :class:`rnnbench.kernels.calibration.Calibration`;
    None: raw only): the model's ratios beside the ablation pairs (:func:`model_ratios`,
    :func:`model_agreement`)."""
    from rnnbench.harness.report import load
    from rnnbench.kernels.calibration import rename_variants
    from rnnbench.kernels.step_bench import read_rows

    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such session folder")
    ablation_csv = directory / "step-ablation.csv"
    measured = read_rows(ablation_csv, "measured") if ablation_csv.is_file() else None
    if measured is not None and renames:
        measured = rename_variants(measured, renames)
    fused = load(directory / FUSED_SUITE) if (directory / FUSED_SUITE / "results.csv").is_file() else None
    estimate = (estimated_steps(read_rows(estimate_csv, "estimate", with_terms=True), calibration)
                if estimate_csv is not None else None)
    summary, details = [], []
    for trial in trials:
        results = [stage_result(directory, stage) for stage in trial.stages]
        if trial.source == ABLATION:
            pairs = ablation_pairs(measured, trial) if measured is not None else pd.DataFrame(columns=PAIR_COLUMNS)
            if estimate is not None:
                pairs = pairs.join(model_ratios(estimate, trial), on="shape")
        else:
            pairs = suite_pairs(fused, trial) if fused is not None else pd.DataFrame(columns=PAIR_COLUMNS)
        best = pairs.ratio.min() if len(pairs) else math.nan
        summary.append({"switch": trial.switch, "candidate": trial.candidate, "baseline": trial.baseline,
                        "tests": "; ".join(text for text, _ in results), "shapes": len(pairs),
                        "best ratio": round(best, 3) if not math.isnan(best) else "-",
                        "verdict": verdict(trial, [state for _, state in results], pairs)}
                       | ({"model on the measured side": model_agreement(pairs)} if estimate is not None else {}))
        details.extend({"switch": trial.switch, **row} for row in pairs.to_dict("records"))
    detail = pd.DataFrame(details, columns=["switch"] + PAIR_COLUMNS + (MODEL_COLUMNS if estimate is not None else []))
    return pd.DataFrame(summary), detail


def trials_markdown(directory: str | Path, renames: dict[str, str] | None = None,
                    estimate_csv: str | Path | None = None, calibration_file: str | Path | None = None) -> str:
    """:func:`judge` as Markdown: the verdicts, then every timing pair behind them; with
    ``estimate_csv``, the model's ratios too, calibrated by ``calibration_file`` (a
    :class:`rnnbench.kernels.calibration.Calibration` JSON; none: raw only)."""
    from rnnbench.harness.report.markdown import markdown_table
    from rnnbench.kernels.calibration import Calibration

    calibration = Calibration.load(calibration_file) if calibration_file is not None else None
    summary, detail = judge(directory, renames, estimate_csv=estimate_csv, calibration=calibration)
    pairs = [f"{old} -> {new or '(left out)'}" for old, new in (renames or {}).items()]
    renamed = f" The step ablation's variants renamed: {', '.join(pairs)}." if pairs else ""
    model = (f" raw_ratio / calibrated_ratio: the cost model's candidate / baseline from {estimate_csv}"
             + (f", calibrated by {calibration_file}" if calibration_file is not None else " (no calibration: "
                "the calibrated ratio is the raw one)") + "; the summary's model column counts the apart shapes "
             "where each puts the candidate on the measured side of 1." if estimate_csv is not None else "")
    detail = detail.assign(**{column: detail[column].astype(float).round(3)
                              for column in ["baseline_us", "candidate_us", "ratio"] + MODEL_COLUMNS
                              if column in detail})
    return "\n\n".join([
        f"# The kernels' switches, judged on {directory}",
        "One session's GPU tests (each stage's JUnit XML) and timings (`step-ablation.csv`: the kernels "
        f"alone; `gpu-fused`: the whole call, `{SUITE_TIMING}`), µs per step; ratio = candidate / baseline "
        "(below 1: the candidate is faster), apart = the interquartile ranges do not overlap. A switch is "
        "set only where its tests passed and it is faster, apart, at one shape at least and slower at none "
        f"(rnnbench.harness.report.switch_trials).{renamed}{model}",
        markdown_table(summary),
        "## Per shape",
        markdown_table(detail) if len(detail) else "No trial has both of its rows in this session.",
    ]) + "\n"
