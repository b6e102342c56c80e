"""The step ablation's decision tables (:mod:`rnnbench.harness.ablation_report`): pairs of one shape
compared with ratio and spread, the sweep's rows left out, measured joined with estimated, and a
file that is not an ablation CSV refused."""

from __future__ import annotations

import pandas as pd
import pytest

from rnnbench.harness import ablation_report
from rnnbench.kernels.step_bench import COLUMNS


def _row(variant, us, spread=0.02, hidden=768, batch=16, programs=96, planned=96, source="measured"):
    row = dict.fromkeys(COLUMNS, 0)
    row.update(device_name="GPU", cell="lstm", dtype="bfloat16", hidden_size=hidden, batch=batch, variant=variant,
               programs=programs, planned_programs=planned, us_per_step=us, q25_us=us - spread, q75_us=us + spread,
               source=source)
    return row


def _frame(*rows):
    return pd.DataFrame(list(rows), columns=COLUMNS)


def test_a_pair_of_one_shape_gives_its_ratio_and_whether_the_spreads_are_apart():
    measured = _frame(_row("real", 3.0), _row("real_relaxed", 2.5), _row("sync", 1.8, spread=0.2),
                      _row("sync_relaxed", 1.7, spread=0.2), _row("real", 4.0, hidden=1024),
                      _row("real_gluon", 2.7, programs=48))
    table = ablation_report.compare(measured).set_index(["question", "hidden_size"])
    relaxed = table.loc[("relaxed poll, shipped plain forward", 768)]
    assert (relaxed.baseline_us, relaxed.alternative_us, relaxed.ratio, relaxed.clear) == (3.0, 2.5, 0.833, True)
    barrier = table.loc[("relaxed poll, barrier alone", 768)]
    assert barrier.ratio == 0.944 and not barrier.clear, "quartiles 1.6-2.0 and 1.5-1.9 overlap: a tie"
    # the Gluon kernel's own layout (48 programs) still counts as the whole grid
    assert table.loc[("Gluon forward against the plain one", 768)].ratio == 0.9
    # a shape with only one side of a pair gives no row for it
    assert ("relaxed poll, shipped plain forward", 1024) not in table.index


def test_the_program_sweep_is_not_compared():
    measured = _frame(_row("full", 2.8), _row("tagged", 2.0, programs=12), _row("tagged", 3.1))
    table = ablation_report.compare(measured)
    assert list(table.alternative_us) == [3.1]


def test_measured_joins_the_estimate_per_variant():
    measured = _frame(_row("full", 2.8), _row("sync", 1.84), _row("full", 2.6, programs=12))
    estimated = _frame(_row("full", 2.4, source="estimate sm_90"), _row("load", 1.1, source="estimate sm_90"))
    joined = ablation_report.against_estimate(measured, estimated)
    assert list(joined.variant) == ["full"] and float(joined.measured_over_estimated.iloc[0]) == round(2.8 / 2.4, 3)


def test_the_tagged_exchanges_polls_are_listed_where_counted():
    measured = _frame(_row("real_gluon", 2.5, programs=48), _row("real_gluon_tagged", 2.2, programs=48))
    measured["extra_polls_per_step"] = ["", 0.375]
    polls = ablation_report.extra_polls(measured)
    assert list(polls.variant) == ["real_gluon_tagged"] and float(polls.extra_polls_per_step.iloc[0]) == 0.375
    assert ablation_report.extra_polls(measured.drop(columns="extra_polls_per_step")).empty, "an older run's CSV"
    estimated = _frame(_row("real_gluon", 1.8, programs=48, source="estimate sm_90"),
                       _row("real_gluon_tagged", 2.7, programs=48, source="estimate sm_90"))
    estimated["first_load_complete_us"] = ["", 1.7]
    joined = ablation_report.extra_polls(measured, estimated).iloc[0]
    assert (joined.model_complete_us, joined.model_one_reload_us) == (1.7, 2.7)
    assert joined.model_at_measured_polls_us == pytest.approx(1.7 + 0.375 * 1.0)


def test_main_prints_both_tables_and_refuses_other_files(tmp_path, capsys):
    measured, estimated, other = tmp_path / "m.csv", tmp_path / "e.csv", tmp_path / "o.csv"
    _frame(_row("real", 3.0), _row("real_relaxed", 2.5)).to_csv(measured, index=False)
    _frame(_row("real", 2.5, source="estimate sm_90")).to_csv(estimated, index=False)
    assert ablation_report.main([str(measured), "--estimate", str(estimated)]) == 0
    out = capsys.readouterr().out
    assert "relaxed poll, shipped plain forward" in out and "measured_over_estimated" in out and "| 1.2 |" in out
    pd.DataFrame({"a": [1]}).to_csv(other, index=False)
    assert ablation_report.main([str(other)]) == 2
    assert "is not a step-ablation CSV" in capsys.readouterr().err
    assert ablation_report.main([str(estimated)]) == 2, "an estimate is not a measurement"
    assert "no rows whose source is 'measured'" in capsys.readouterr().err


@pytest.mark.parametrize("question", ablation_report.QUESTIONS, ids=lambda q: q.alternative)
def test_every_question_names_variants_the_ablation_runs(question):
    from rnnbench.kernels.step_bench import REAL_PATHS, VARIANTS

    assert {question.baseline, question.alternative} <= set(VARIANTS) | set(REAL_PATHS)
