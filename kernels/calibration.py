"""Calibrating the per-step cost model (:mod:`rnnbench.kernels.cost`) against measured µs per step.

**Measured.** A ``results.csv`` of the ``gpu-core`` suite (or any suite timing the ``triton``
backend on CUDA): its rows ``experiment=speed, metric=latency, backend=triton, status=ok`` give
milliseconds per call of a ``seq_len``-step sequence, so ``µs/step = value * 1000 / seq_len``.
Mode ``fwd`` is compared with the ``fwd`` estimate, ``fwd_bwd`` with ``fwd_train + bwd`` (the RNN's
``fwd + bwd``: it trains with its one forward kernel); the path
is the one the planner picks (``planned``), as the suite runs ``path="auto"``. The GPU results
committed before 2026-11-27 ran the LSTM's *training* forward under mode ``fwd`` (the layer took
``ctx.needs_input_grad``, true for parameters even under ``no_grad``, for a training call; fixed
in :func:`rnnbench.kernels.lstm.records_graph`), so their ``fwd`` rows overstate the inference
kernel's time by the gate and cell-state stores; matching them to ``fwd_train`` instead moved the
median raw error of the H100 source from 25.7 % to 24.6 % (cost table of that date), so they are
left as they are.

**Step ablation.** Optionally also a step-ablation CSV measured in the same session
(:mod:`rnnbench.kernels.step_bench`) with the model's estimate of the same variants
(``step_bench --estimate``, whose rows carry the terms): each variant runs some parts of a step
(loads only, the barrier only, ...), so its rows separate terms that the suite's shapes always
show together (:func:`ablation_comparison`, mode ``ablation``). The estimate must be of the code
that was measured (the same commit): the ablation's variants changed between versions.

**Fit.** The estimate is a sum of terms (:data:`rnnbench.kernels.cost.TERMS`); calibration finds
one factor per term, ``est = sum_k s_k * t_k``, minimising

    sum_i ((m_i - sum_k s_k t_ik) / m_i)^2  +  RIDGE * sum_k (s_k - 1)^2

(relative errors, so every shape counts alike; the ridge keeps a term the measurements cannot
separate from the others at its prior factor 1), every factor inside :data:`FACTOR_RANGE`: the
minimum within those bounds (:func:`bounded_least_squares`), not the unbounded minimum clipped to
them, which the fits before 2026-11-28 took (on 7caf667's 247 rows the clipping moved four factors
from below 0 to 0.1 and left the others fitted as if it had not: a root-mean-square relative error
of 28 % where the bounded minimum has 21 %). The single overall factor (median of measured / raw)
and the median relative error before and after are recorded too, so a reader sees how much the
per-term fit adds.

**How far to trust it.** A fit's error on its own rows flatters it, and the model's use is to judge
kernels it was not fitted on. So the calibration also records

* ``median_rel_error_held_out``: every kernel (a step-ablation variant, or the planned path in one
  suite mode) estimated by the factors fitted on the *other* kernels' rows
  (:func:`held_out_estimates`), the median of those errors;
* ``pair_agreement``: of the pairs of step-ablation variants measured at the same shape at least
  :data:`PAIR_MIN_DIFFERENCE` apart, the share the estimate puts in the measured order
  (:func:`pair_agreement`), raw, calibrated and held out. That is the question a switch asks the
  model: which of two kernels is faster.

**File.** The calibration is JSON (:meth:`Calibration.save`), committed as
``reports/aot/cost-calibration-<target>.json`` (:func:`default_path`); ``rnnbench kernels --cost``
applies it when it exists (``est_us_per_step``; ``raw_us_per_step`` stays the prior). It records
the latency-table entries its raw estimates were computed with where a GPU measured them
(:func:`rnnbench.kernels.cost.latencies`); ``rnnbench kernels --cost`` warns when the model now
uses another table.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rnnbench.kernels.cost import TERMS

RIDGE = 0.01
FACTOR_RANGE = (0.1, 10.0)
#: pairs of variants measured closer than this (relative) are left out of :func:`pair_agreement`:
#: that close, one run's order of the two is noise
PAIR_MIN_DIFFERENCE = 0.03
#: measured mode -> the estimated directions whose sum it is (see :func:`mode_directions`)
MODE_DIRECTIONS = {"fwd": ("fwd",), "fwd_bwd": ("fwd_train", "bwd")}
#: the forward kernel each cell trains with: the Elman RNN has no training variant (its ``fwd``
#: already writes what its backward reads)
TRAINING_FORWARD = {"lstm": "fwd_train", "rnn": "fwd"}
SHAPE_COLUMNS = ["cell", "dtype", "hidden_size", "batch"]


@dataclass(frozen=True)
class Calibration:
    """Per-term factors fitted on one device, and how well they fit."""

    target: str
    device_name: str
    scales: dict[str, float]
    overall: float
    rows: int
    median_rel_error_raw: float
    median_rel_error_calibrated: float
    source: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    #: the latency-table entries the raw estimates were computed with where they were measured
    #: (:func:`rnnbench.kernels.cost.latencies`; empty: the prior table)
    latencies: dict[str, float] = field(default_factory=dict)
    #: the fit's ridge (:data:`RIDGE` when it was fitted; None: a calibration older than the field)
    ridge: float | None = None
    #: median relative error of each kernel's rows estimated by the factors fitted on the other
    #: kernels' rows (:func:`held_out_estimates`); None: not computed (fitted before 2026-11-28)
    median_rel_error_held_out: float | None = None
    #: the shares of measured-apart pairs of step-ablation variants that the estimate orders as
    #: measured (:func:`pair_agreement`): ``raw``, ``calibrated``, ``held_out`` (none without pairs);
    #: ``pairs``: how many
    pair_agreement: dict[str, float] = field(default_factory=dict)
    #: the kernels' switch variables set in the fit's environment (``RNNBENCH_GLUON_TILES_PER_COPY``:
    #: ``8`` to estimate the boxes of 8 that 7caf667 ran): the code the estimates are of
    environment: dict[str, str] = field(default_factory=dict)

    def table_mismatch(self, arch: int, table=None) -> str | None:
        """Why this calibration does not fit ``table`` (default: the latency table the model now uses
        for ``sm_<arch>``): it scales terms computed with another one; or None."""
        current = _measured_entries(arch, table)
        if current == self.latencies:
            return None
        return (f"the calibration was fitted with latency entries {self.latencies or 'of the prior table'}, the model "
                f"now uses {current or 'the prior table'}: refit it (make gpu-report) before trusting est_us_per_step")

    def apply(self, table):
        """``table`` (a cost table) with ``est_us_per_step`` = the calibrated sum of its ``t_*`` terms."""
        table = table.copy()
        factors = np.array([self.scales.get(term, 1.0) for term in TERMS])
        terms = table[[f"t_{term}" for term in TERMS]].to_numpy(dtype=float)
        table["est_us_per_step"] = terms @ factors
        return table

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Calibration":
        data = json.loads(Path(path).read_text())
        unknown = set(data.get("scales", {})) - set(TERMS)
        if unknown:
            raise ValueError(f"calibration {path} has factors for unknown terms {sorted(unknown)}; known: {TERMS}")
        return cls(**data)


def _measured_entries(arch: int, table=None) -> dict[str, float]:
    """The entries of ``table`` (default: the model's latency table for ``sm_<arch>``) that differ
    from the prior."""
    from rnnbench.kernels.cost import LATENCIES, MEASURED_ENTRIES, latencies

    table, prior = table or latencies(arch), LATENCIES[arch]
    return {name: getattr(table, name) for name in MEASURED_ENTRIES if getattr(table, name) != getattr(prior, name)}


def default_path(target: str) -> Path:
    """``reports/aot/cost-calibration-<target>.json`` of the checkout this module runs from."""
    return Path(__file__).resolve().parent.parent / "reports" / "aot" / f"cost-calibration-{target}.json"


def load_default(target: str) -> Calibration | None:
    path = default_path(target)
    return Calibration.load(path) if path.is_file() else None


def measured_us_per_step(results_csv: str | Path):
    """Measured µs/step of the Triton backend: columns ``cell, dtype, hidden_size, batch, mode,
    measured_us_per_step, device_name`` (one row per shape and mode, the median when repeated)."""
    import pandas as pd

    results = pd.read_csv(results_csv)
    required = {"experiment", "metric", "backend", "status", "family", "dtype", "hidden_size", "batch", "seq_len", "mode", "value"}
    missing = required - set(results.columns)
    if missing:
        raise ValueError(f"{results_csv} is not a results.csv: it lacks columns {sorted(missing)}")
    rows = results[(results.experiment == "speed") & (results.metric == "latency") & (results.backend == "triton")
                   & (results.status == "ok")].copy()
    if rows.empty:
        raise ValueError(f"{results_csv} has no ok speed/latency rows of the triton backend to calibrate against")
    rows["measured_us_per_step"] = rows["value"] * 1000.0 / rows["seq_len"]
    rows = rows.rename(columns={"family": "cell"})
    if "device_name" not in rows:
        rows["device_name"] = ""
    grouped = rows.groupby(SHAPE_COLUMNS + ["mode"], as_index=False).agg(
        measured_us_per_step=("measured_us_per_step", "median"), device_name=("device_name", "first"))
    return grouped


def mode_directions(mode: str, cell: str) -> tuple[str, ...]:
    """The cost-table directions whose estimates add up to one measured ``mode`` of ``cell``."""
    return tuple(TRAINING_FORWARD[cell] if direction == "fwd_train" else direction for direction in MODE_DIRECTIONS[mode])


def comparison(table, measured):
    """Measured rows joined with the planned path's estimate terms (summed over the directions a mode runs)."""
    import pandas as pd

    planned = table[table.planned]
    term_columns = [f"t_{term}" for term in TERMS]
    parts = []
    for mode in MODE_DIRECTIONS:
        runs = [direction in mode_directions(mode, cell) for cell, direction in zip(planned.cell, planned.direction)]
        estimate = (planned[runs]
                    .groupby(SHAPE_COLUMNS, as_index=False)[term_columns + ["raw_us_per_step", "est_us_per_step"]].sum(min_count=1))
        estimate["mode"] = mode
        parts.append(estimate)
    joined = measured.merge(pd.concat(parts), on=SHAPE_COLUMNS + ["mode"], how="inner")
    usable = np.isfinite(joined["raw_us_per_step"]) & np.isfinite(joined["measured_us_per_step"]) & (joined["measured_us_per_step"] > 0)
    joined = joined[usable]
    paths = planned.drop_duplicates(SHAPE_COLUMNS)[SHAPE_COLUMNS + ["path"]]
    return joined.merge(paths, on=SHAPE_COLUMNS, how="left")


def parse_renames(text: str) -> dict[str, str]:
    """``"OLD=NEW,OLD2=,..."`` as a dict (an empty NEW: leave that variant out); see
    :func:`rename_variants`."""
    renames = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        old, separator, new = item.partition("=")
        if not separator or not old.strip():
            raise ValueError(f"a variant rename is OLD=NEW (or OLD= to leave OLD out), got {item!r}")
        renames[old.strip()] = new.strip()
    return renames


def rename_variants(frame, renames: dict[str, str]):
    """A measured step ablation's rows under the variant names of the code it is compared with.
    Variants were renamed between versions (at 7caf667 ``real_gluon_tagged`` had four loader
    partitions and ``real_gluon_tagged_one_loader`` one, now ``real_gluon_tagged_four_loaders`` and
    ``real_gluon_tagged``), so a CSV measured with older code joins the newer estimate only through
    such a map: every rename applies at once (names may swap), ``OLD -> ""`` drops ``OLD``'s rows
    (a variant the newer code no longer has), and a name the CSV lacks is refused as a likely typo."""
    absent = sorted(set(renames) - set(frame.variant))
    if absent:
        raise ValueError(f"variants to rename {absent} are not in the measured ablation; it has "
                         f"{sorted(set(frame.variant))}")
    renamed = frame.assign(variant=frame.variant.map(lambda name: renames.get(name, name)))
    return renamed[renamed.variant != ""]


def ablation_comparison(measured_csv: str | Path, estimate_csv: str | Path, renames: dict[str, str] | None = None):
    """A measured step ablation joined with its estimate, per shape and variant on its whole grid
    (the program sweep left out): the columns of :func:`comparison`, ``mode`` ``ablation`` and
    ``path`` the variant. ``renames``: the measured variants' names in the estimate's code
    (:func:`rename_variants`).

    A tagged exchange's row is compared at the reloads its loader measured
    (``extra_polls_per_step``), not at the estimate's one reload a step: every term of the estimate
    is scaled by :func:`rnnbench.kernels.cost.between_reloads` of that rate over the one-reload
    total (the estimate CSV keeps the no-reload step's total, ``first_load_complete_us``, not its
    terms, so each term moves in proportion; the cost table's own rows move term by term,
    :func:`rnnbench.kernels.cost.at_reload_rate`)."""
    import pandas as pd

    from rnnbench.kernels.cost import between_reloads
    from rnnbench.kernels.step_bench import read_rows, whole_grid

    keys = SHAPE_COLUMNS + ["variant"]
    measured = whole_grid(read_rows(measured_csv, "measured"))
    if renames:
        measured = rename_variants(measured, renames)
    measured = measured.reindex(columns=keys + ["us_per_step", "device_name", "extra_polls_per_step"])
    estimated = whole_grid(read_rows(estimate_csv, "estimate", with_terms=True))
    term_columns = [f"t_{term}" for term in TERMS if f"t_{term}" in estimated.columns]
    joined = measured.rename(columns={"us_per_step": "measured_us_per_step"}).merge(
        estimated[keys + term_columns + ["us_per_step", "first_load_complete_us"]].rename(
            columns={"us_per_step": "raw_us_per_step"}), on=keys)
    for term in TERMS:  # the GEMMs and per-call overhead: no part of a kernel's step
        joined[f"t_{term}"] = joined.get(f"t_{term}", 0.0)
    polls = pd.to_numeric(joined.pop("extra_polls_per_step"), errors="coerce")
    complete = pd.to_numeric(joined.pop("first_load_complete_us"), errors="coerce")
    raw = joined.raw_us_per_step.astype(float)
    share = (between_reloads(complete, raw, polls) / raw).where(polls.notna() & (complete > 0), 1.0)
    for column in [f"t_{term}" for term in TERMS] + ["raw_us_per_step"]:
        joined[column] = joined[column].astype(float) * share
    joined = joined[(joined.measured_us_per_step > 0) & np.isfinite(joined.raw_us_per_step)]
    return joined.assign(mode="ablation", path=joined.variant, est_us_per_step=joined.raw_us_per_step).drop(
        columns="variant")


#: step-ablation variants left out of the fit: kernels whose time the model has no term for, so
#: their rows would bend the factors of the terms it has. The four one-warp loaders wait for
#: instructions (12.7 % ``no_inst`` in the H200's profile of a 5304-instruction loop) and each reloads
#: on its own; the hand-over in groups overlaps the MMAs with the later groups' loads, which the model
#: follows since 2026-11-28 (each group's arrival a :class:`rnnbench.kernels.cost.Handoff`) but with a
#: reload charged to every group (its estimate at the anchor, Triton 3.6: 4.91 µs against the one
#: hand-over's 2.59; 5.37 and 2.67 before). Their measured rows stay in the ablation report.
UNMODELLED_VARIANTS = ("real_gluon_tagged_four_loaders", "real_gluon_tagged_groups_4")


def fit(table, results_csv: str | Path, target: str, ablation: tuple[str | Path, str | Path] | None = None,
        latency_table=None, renames: dict[str, str] | None = None) -> tuple[Calibration, object]:
    """Fit per-term factors of ``table`` (a raw cost table) to the measurements in ``results_csv``
    and, given ``ablation = (measured CSV, estimate CSV)``, to a step ablation's variants too
    (``renames``: :func:`rename_variants` of its measured rows; :data:`UNMODELLED_VARIANTS` left out);
    returns the calibration and the per-row comparison (measured, raw, calibrated, relative errors);
    ``latency_table``: the table ``table`` was computed with, where not the model's."""
    import pandas as pd

    joined = comparison(table, measured_us_per_step(results_csv))
    if joined.empty:
        raise ValueError(f"no measured shape of {results_csv} matches a planned shape of the cost table")
    if ablation is not None:
        variants = ablation_comparison(*ablation, renames=renames)
        variants = variants[~variants.path.isin(UNMODELLED_VARIANTS)]
        if variants.empty:
            raise ValueError(f"no measured variant of {ablation[0]} matches an estimated one of {ablation[1]}")
        joined = pd.concat([joined, variants], ignore_index=True)
    x = joined[[f"t_{term}" for term in TERMS]].to_numpy(dtype=float)
    y = joined["measured_us_per_step"].to_numpy(dtype=float)
    scales = fit_factors(x, y)
    raw = joined["raw_us_per_step"].to_numpy(dtype=float)
    calibrated = x @ scales
    held_out = held_out_estimates(x, y, kernel_groups(joined))
    joined = joined.assign(calibrated_us_per_step=calibrated, held_out_us_per_step=held_out,
                           rel_error_raw=raw / y - 1, rel_error_calibrated=calibrated / y - 1)
    pairs = pair_table(joined)
    agreement = {"pairs": len(pairs)} | {name: round(float(pairs[f"{name}_in_order"].mean()), 4)
                                         for name in ESTIMATE_COLUMNS if len(pairs)}
    import triton
    import torch

    calibration = Calibration(
        target=target,
        device_name=str(joined["device_name"].iloc[0]),
        scales={term: round(float(s), 4) for term, s in zip(TERMS, scales)},
        overall=round(float(np.median(y / raw)), 4),
        rows=int(len(y)),
        median_rel_error_raw=round(float(np.median(np.abs(raw / y - 1))), 4),
        median_rel_error_calibrated=round(float(np.median(np.abs(calibrated / y - 1))), 4),
        source=str(results_csv) + (f" + ablation {ablation[0]}" if ablation is not None else "")
        + (f" (variants renamed {','.join(f'{old}={new}' for old, new in renames.items())})" if renames else ""),
        versions={"triton": triton.__version__, "torch": torch.__version__},
        latencies=_measured_entries(int(target.removeprefix("sm_")), latency_table),
        ridge=RIDGE,
        median_rel_error_held_out=round(float(np.median(np.abs(held_out / y - 1))), 4),
        pair_agreement=agreement,
        environment=switch_environment(),
    )
    return calibration, joined


def against_previous(previous: "Calibration | None", fitted: Calibration) -> str | None:
    """How ``fitted`` does against the calibration it replaces, in words, where both were fitted
    on the same measurements (the same ``source``) and ``previous`` has the held-out numbers: the
    check a change to the model itself must pass (KERNELS2.md, 2026-11-28: a model change ships
    where the held-out pair agreement does not drop). None otherwise (new measurements are another
    question)."""
    if previous is None or previous.source != fitted.source or previous.median_rel_error_held_out is None:
        return None
    line = (f"against the calibration it replaces (same measurements): held-out median error "
            f"{previous.median_rel_error_held_out:.1%} -> {fitted.median_rel_error_held_out:.1%}")
    before, after = previous.pair_agreement.get("held_out"), fitted.pair_agreement.get("held_out")
    if before is not None and after is not None:
        verdict = "dropped: the model change does not pass" if after < before else "did not drop"
        line += f", held-out pairs in order {before:.1%} -> {after:.1%} ({verdict})"
    return line


def switch_environment() -> dict[str, str]:
    """The environment variables of :mod:`rnnbench.kernels.switches` (its ``*_ENV`` names) that are
    set: they change the kernels a cost table estimates."""
    import os

    from rnnbench.kernels import switches

    names = sorted(getattr(switches, name) for name in dir(switches) if name.endswith("_ENV"))
    return {name: os.environ[name] for name in names if name in os.environ}


def bounded_least_squares(design, target, low: float, high: float, tolerance: float = 1e-12,
                          max_iterations: int = 200_000):
    """``argmin_s |design @ s - target|^2`` with every ``low <= s_k <= high``: accelerated projected
    gradient (FISTA, its momentum restarted where it goes uphill), stopped where one more projected
    gradient step moves no factor by more than ``tolerance`` (the bounded problem's optimality
    condition). The fit's problem is strongly convex (its ridge rows), so it converges. NumPy only:
    the GPU machine's Triton 3.6 environment has no SciPy (the tests compare with its ``lsq_linear``)."""
    design, target = np.asarray(design, dtype=float), np.asarray(target, dtype=float)
    gram, moment = design.T @ design, design.T @ target
    step = 1.0 / np.linalg.eigvalsh(gram)[-1]
    current = np.clip(np.linalg.lstsq(design, target, rcond=None)[0], low, high)
    point, momentum = current.copy(), 1.0
    for _ in range(max_iterations):
        following = np.clip(point - step * (gram @ point - moment), low, high)
        if np.max(np.abs(np.clip(following - step * (gram @ following - moment), low, high) - following)) <= tolerance:
            return following
        next_momentum = (1 + math.sqrt(1 + 4 * momentum ** 2)) / 2
        if (following - current) @ (gram @ following - moment) > 0:  # uphill: restart the momentum
            point, momentum = following.copy(), 1.0
        else:
            point, momentum = following + (momentum - 1) / next_momentum * (following - current), next_momentum
        current = following
    raise RuntimeError(f"bounded least squares did not converge in {max_iterations} iterations")


def fit_factors(terms, measured, ridge: float = RIDGE):
    """Per-term factors (one per column of ``terms``) minimising the relative error of
    ``terms @ factors`` against ``measured`` (µs per step, one row per measurement) plus ``ridge``
    times the squared distance of the factors from 1, within :data:`FACTOR_RANGE`."""
    terms, measured = np.asarray(terms, dtype=float), np.asarray(measured, dtype=float)
    count = terms.shape[1]
    design = np.vstack([terms / measured[:, None], math.sqrt(ridge) * np.eye(count)])
    target_values = np.concatenate([np.ones(len(measured)), math.sqrt(ridge) * np.ones(count)])
    return bounded_least_squares(design, target_values, *FACTOR_RANGE)


def kernel_groups(joined):
    """One label per row of a comparison: the kernel it measured (a step-ablation variant, or the
    planned path in one suite mode), the unit :func:`held_out_estimates` leaves out."""
    return (joined["mode"].astype(str) + ":" + joined["path"].astype(str)).to_numpy()


def held_out_estimates(terms, measured, groups):
    """Each row's estimate by the factors fitted on every row of the *other* groups
    (:func:`fit_factors`): how the calibrated model does on a kernel it was not fitted on. With one
    group only (nothing else to fit on) the rows keep their raw estimate."""
    terms, measured, groups = np.asarray(terms, dtype=float), np.asarray(measured, dtype=float), np.asarray(groups)
    estimates = terms.sum(axis=1)
    for group in np.unique(groups):
        inside = groups == group
        if (~inside).any():
            estimates[inside] = terms[inside] @ fit_factors(terms[~inside], measured[~inside])
    return estimates


def ablation_pairs(joined):
    """The pairs of step-ablation rows (``mode`` ``ablation``) at the same shape whose measured µs
    per step differ by at least :data:`PAIR_MIN_DIFFERENCE`: two arrays of positions in ``joined``
    (first, second; first before second in ``joined``)."""
    measured = joined["measured_us_per_step"].to_numpy(dtype=float)
    rows = np.flatnonzero((joined["mode"] == "ablation").to_numpy())
    shapes = joined[SHAPE_COLUMNS].astype(str).agg("|".join, axis=1).to_numpy()
    firsts, seconds = [], []
    for shape in np.unique(shapes[rows]):
        members = rows[shapes[rows] == shape]
        first, second = (members[index] for index in np.triu_indices(len(members), k=1))
        apart = np.abs(measured[first] / measured[second] - 1) >= PAIR_MIN_DIFFERENCE
        firsts.append(first[apart])
        seconds.append(second[apart])
    if not firsts:
        return np.array([], dtype=int), np.array([], dtype=int)
    return np.concatenate(firsts), np.concatenate(seconds)


def pair_agreement(joined, estimate) -> tuple[float, int]:
    """Of the :func:`ablation_pairs` of ``joined``, the share that ``estimate`` (one value per row
    of ``joined``) puts in the measured order, and how many pairs there were (the share is NaN
    without any)."""
    estimate = np.asarray(estimate, dtype=float)
    measured = joined["measured_us_per_step"].to_numpy(dtype=float)
    first, second = ablation_pairs(joined)
    if not len(first):
        return float("nan"), 0
    agree = np.sign(estimate[first] - estimate[second]) == np.sign(measured[first] - measured[second])
    return float(agree.mean()), len(first)


#: the estimates a fit's comparison carries, as :func:`pair_table` names their ratios
ESTIMATE_COLUMNS = {"raw": "raw_us_per_step", "calibrated": "calibrated_us_per_step", "held_out": "held_out_us_per_step"}


def pair_table(joined):
    """One row per :func:`ablation_pairs` pair of a fit's comparison (:func:`fit`'s second value):
    the shape, the two variants, the measured ratio of the first's µs per step to the second's and
    each estimate's (``raw``, ``calibrated``, ``held_out``), and whether that estimate puts the
    pair in the measured order; the pairs the held-out estimate orders wrong first, the widest
    measured gaps first: where the model is wrong about which kernel is faster."""
    first, second = ablation_pairs(joined)
    rows = joined.iloc[first].reset_index(drop=True)
    others = joined.iloc[second].reset_index(drop=True)
    table = rows[SHAPE_COLUMNS].assign(variant=rows.path, other=others.path,
                                       measured_ratio=rows.measured_us_per_step / others.measured_us_per_step)
    for name, column in ESTIMATE_COLUMNS.items():
        ratio = rows[column] / others[column]
        table[f"{name}_ratio"] = ratio
        table[f"{name}_in_order"] = np.sign(ratio - 1) == np.sign(table.measured_ratio - 1)
    gap = (np.log(table.measured_ratio)).abs()
    return table.assign(_gap=gap).sort_values(["held_out_in_order", "_gap"], ascending=[True, False]).drop(
        columns="_gap").reset_index(drop=True)
