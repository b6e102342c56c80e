"""``accuracy``: train an encoder on a task (:mod:`rnnbench.harness.training`) and score it on held-out data.

A case is a training run (see :mod:`rnnbench.harness.experiments.training_case` for how its fields
and ``params`` map to one). Its rows, all with the case's identity unless said otherwise:

* ``test_loss`` (primary): the training loss's measure on the test split (``mse`` units for
  regression, nats of cross-entropy otherwise); its note records the task's data facts (e.g. the
  corpus's sha256);
* every metric of ``TaskSpec.metrics`` on the test split, under its own name (``mse``,
  ``solved_fraction``, ``accuracy``, ``cross_entropy``, ``bpc``) and unit
  (:data:`rnnbench.harness.tasks.METRICS`);
* the task's chance and trivial baselines as rows of their own: metric
  ``baseline:<baseline name>:<metric>`` (e.g. ``baseline:bag_of_words_max:accuracy``), the value
  of ``TaskSpec.baselines`` for this configuration, the metric's unit, the note saying what predicts
  it; beside every trained model, so that a table of a task holds its floor;
* ``distance`` (steps): the task's dependency distance at this configuration, the x-axis of
  accuracy against distance;
* the training curve, at most :data:`~rnnbench.harness.training.CURVE_POINTS` points: ``train_loss``
  (mean training loss over the window) and ``grad_norm`` (mean global gradient norm before clipping),
  each with the window's last step in ``params`` (``{"step": s, ...}``);
* ``train_wall_time`` (s) and ``train_throughput`` (sequences/s; stateful tasks: chunks of
  ``seq_len`` tokens per second) of the training loop, data generation included;
* ``grad_norm_max`` (the largest pre-clipping global gradient norm) and, with clipping on,
  ``clipped_fraction`` (the fraction of steps that were clipped);
* language-model tasks: ``sample_length`` (characters) with the sampled text in the note, written
  from ``<bos>`` to ``<eos>`` or :data:`~rnnbench.harness.evaluation.SAMPLE_LIMIT` tokens, escaped
  with Python's ``unicode_escape`` (``\\n`` for a newline).

If the training loss became non-finite, training stops: ``test_loss`` and the metric rows are
``error`` rows saying at which step, while the curve and gradient rows are kept.
"""

from __future__ import annotations

from dataclasses import replace

from rnnbench.harness.cases import Case
from rnnbench.harness.evaluation import evaluate, generates_text, sample_text
from rnnbench.harness.experiments.base import Experiment
from rnnbench.harness.experiments.training_case import (check_training_case, interpreted, prepare_training_case,
                                                        setup_for, training_requirement)
from rnnbench.harness.results import ResultRow
from rnnbench.harness.tasks import METRICS, TaskSpec
from rnnbench.harness.training import TrainingResult, held_out_data, train


def loss_unit(spec: TaskSpec) -> str:
    """The unit of the training loss of ``spec``'s target."""
    return METRICS["mse" if spec.target.kind == "regression" else "cross_entropy"].unit


def at(case: Case, **extra) -> Case:
    """``case`` with ``extra`` parameters added: the identity of a row that is one point of a curve."""
    return replace(case, params={**case.param_dict, **extra})


def measure_accuracy(case: Case, workload, run_id: str) -> list[ResultRow]:
    setup = setup_for(case)
    spec = setup.spec
    result = train(setup)
    rows = _training_rows(case, run_id, spec, result)
    rows += [ResultRow.measured(case, run_id, f"baseline:{b.name}:{b.metric}", b.value, METRICS[b.metric].unit, note=b.how)
             for b in spec.baselines]
    rows.append(ResultRow.measured(case, run_id, "distance", spec.distance, "steps", note="the task's dependency distance"))
    if result.diverged_at is not None:
        why = f"training diverged: the loss was not finite at step {result.diverged_at}"
        return rows + [ResultRow.missing(case, run_id, metric, unit, "error", why)
                       for metric, unit in [(m, METRICS[m].unit) for m in spec.metrics] + [("test_loss", loss_unit(spec))]]
    inputs, targets = held_out_data(setup)
    scores = evaluate(result.model, spec, inputs, targets)
    held_out = f"{len(targets)} held-out sequences of the test split"
    rows += [ResultRow.measured(case, run_id, metric, scores[metric], METRICS[metric].unit, note=held_out)
             for metric in spec.metrics]
    if generates_text(spec):
        text = sample_text(result.model, spec, seed=case.seed)
        rows.append(ResultRow.measured(case, run_id, "sample_length", len(text), "characters",
                                       note=text.encode("unicode_escape").decode("ascii")))
    data = "; ".join(f"{name}={value}" for name, value in spec.data.items())
    rows.append(ResultRow.measured(case, run_id, "test_loss", scores["test_loss"], loss_unit(spec),
                                   note=held_out + (f"; {data}" if data else "")))
    return rows


def _training_rows(case: Case, run_id: str, spec: TaskSpec, result: TrainingResult) -> list[ResultRow]:
    rows = []
    for point in result.curve:
        step = at(case, step=point.step)
        rows.append(ResultRow.measured(step, run_id, "train_loss", point.loss, loss_unit(spec), note="mean over the window"))
        rows.append(ResultRow.measured(step, run_id, "grad_norm", point.grad_norm, "",
                                       note="mean global L2 gradient norm before clipping over the window"))
    how = "training loop incl. data generation" + ("; interpreted: not a speed" if interpreted(case) else "")
    rows.append(ResultRow.measured(case, run_id, "train_wall_time", result.wall_s, "s", note=how))
    rows.append(ResultRow.measured(case, run_id, "train_throughput", result.sequences / result.wall_s, "sequences/s",
                                   note=f"{result.sequences} sequences in {result.steps_done} steps; {how}"))
    rows.append(ResultRow.measured(case, run_id, "grad_norm_max", result.max_grad_norm, "",
                                   note="largest global L2 gradient norm before clipping"))
    clip = case.param_dict["clip"]
    if clip > 0:
        rows.append(ResultRow.measured(case, run_id, "clipped_fraction", result.clipped_steps / max(result.steps_done, 1),
                                       "fraction", note=f"steps whose gradient norm exceeded clip={clip}"))
    return rows


EXPERIMENT = Experiment(
    name="accuracy",
    metric="test_loss",
    unit="",
    description="train on a task, then its metrics on held-out data, its baselines, the loss curve and training speed",
    measure=measure_accuracy,
    gated=False,
    timed=False,
    uses_workload=False,
    check_case=check_training_case,
    requirement=training_requirement,
    prepare_case=prepare_training_case,
)
