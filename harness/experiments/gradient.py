"""``gradient``: how far back a loss's gradient reaches, ``‖∂L/∂h_k‖`` (and ``‖∂L/∂c_k‖``) against ``T − k``.

A case is a training run of a recurrent encoder (``rnn``/``lstm``) on a fixed-length task (see
:mod:`rnnbench.harness.experiments.training_case`). On ``batch`` held-out sequences, each sequence's
loss ``L`` at its last step (the readout of class and regression targets; the last step's target
of per-step ones) is differentiated with respect to every state the encoder carried: ``h_k`` (and
the LSTM's cell state ``c_k``) after step ``k = 1..T``, as passed to step ``k + 1`` (torch's modules
pass the state as the pair ``(h, c)``; each derivative holds the other part fixed, so ``∂L/∂c_k``
is the error carried along the cell state, and ``∂L/∂c_T`` is 0 because only ``h_T`` is read out).
The encoder is run one step at a time through the backend's own module, so these are the total
derivatives through the recurrence that the backend's backward pass computes
(:func:`state_gradient_norms`); they are measured at initialisation and again after ``steps``
training steps.

Rows (``distance`` = ``T − k``; ``trained`` false at initialisation, true after training):

* ``grad_norm_h`` / ``grad_norm_c`` with ``{"distance": d, "trained": b}`` in ``params``: the mean
  over sequences of ``‖∂L/∂h_k‖`` (L2 over the H units of the last layer), ``q25``/``q75`` its
  quartiles over sequences, ``n`` the number of sequences; at most :data:`DISTANCE_POINTS` distances
  spread evenly over ``0..T−1``;
* ``grad_decay_h`` / ``grad_decay_c`` with ``{"trained": b}`` (unit ``per step``): the factor η
  by which the mean norm shrinks per step of distance, ``exp`` of the least-squares slope of its
  logarithm over distances ``1..T−1`` (η < 1 vanishing, η > 1 exploding); norms that underflowed to
  zero are left out of the fit;
* ``test_loss`` with ``{"trained": true}``: the trained model's loss on the test split, to show
  training worked;
* primary: ``grad_decay_h`` without a ``trained`` flag, the decay at initialisation (the same
  number as the ``{"trained": false}`` row).
"""

from __future__ import annotations

import numpy as np
import torch

from rnnbench.harness.cases import Case
from rnnbench.harness.evaluation import evaluate
from rnnbench.harness.experiments.accuracy import at, loss_unit
from rnnbench.harness.experiments.base import Experiment
from rnnbench.harness.experiments.training_case import (check_training_case, prepare_training_case, setup_for,
                                                        split_params, training_requirement)
from rnnbench.harness.problems import RECURRENT_FAMILIES
from rnnbench.harness.results import ResultRow
from rnnbench.harness.sequence_model import SequenceModel, as_tensors
from rnnbench.harness.tasks import TaskSpec, describe, generate
from rnnbench.harness.training import TEST_SEED, build_model, held_out_data, train

#: the states each family carries, in the order its modules return them
STATE_NAMES = {"rnn": ("h",), "lstm": ("h", "c")}
DISTANCE_POINTS = 50


def state_gradient_norms(model: SequenceModel, spec: TaskSpec, inputs: np.ndarray, targets: np.ndarray,
                         family: str) -> dict[str, np.ndarray]:
    """``{state name: norms (T, B)}``: row ``k - 1`` holds ``‖∂L_b/∂s_k‖`` for each sequence b, where
    ``s_k`` is the state after step k (of the encoder's last layer) and ``L_b`` sequence b's loss at
    its last step. ``inputs``/``targets`` are batch-major as the task generates them (fixed length)."""
    x, _, y = as_tensors(model, spec, inputs, targets)
    steps = model.input(x.transpose(0, 1))
    state, carried = None, []
    for k in range(steps.shape[0]):
        _, state = model.encoder(steps[k:k + 1], state)
        carried.append(state if isinstance(state, tuple) else (state,))
    # read out from the carried h_T (a one-layer encoder's last output equals it), so that h_T is
    # the state the loss depends on; per-step targets: the last step's
    last_h = carried[-1][0][-1:]
    predictions = model.readout(last_h, torch.ones(len(inputs), dtype=torch.int64, device=last_h.device))
    loss = model.loss(predictions, y[:, -1:] if spec.target.kind == "step_class" else y, reduction="sum")
    names = STATE_NAMES[family]
    wanted = [parts[i] for parts in carried for i in range(len(names))]
    grads = torch.autograd.grad(loss, wanted, allow_unused=True)
    norms = {}
    for i, name in enumerate(names):
        per_step = [grads[k * len(names) + i] for k in range(len(carried))]
        norms[name] = np.stack([
            np.zeros(len(inputs)) if g is None else torch.linalg.vector_norm(g[-1], dim=-1).double().cpu().numpy()
            for g in per_step
        ])
    return norms


def decay_per_step(mean_norms: np.ndarray) -> float:
    """η = exp(slope) of ``log(mean_norms[d])`` against distance ``d`` over ``d >= 1`` (zeros left out);
    ``mean_norms`` is indexed by distance. NaN with fewer than two usable distances."""
    distances = np.arange(len(mean_norms))
    usable = (distances >= 1) & (mean_norms > 0) & np.isfinite(mean_norms)
    if usable.sum() < 2:
        return float("nan")
    slope, _ = np.polyfit(distances[usable], np.log(mean_norms[usable]), 1)
    return float(np.exp(slope))


def sampled_distances(seq_len: int, count: int = DISTANCE_POINTS) -> list[int]:
    """At most ``count`` distances spread evenly over ``0..seq_len - 1``, both ends included."""
    return sorted(set(np.linspace(0, seq_len - 1, num=min(count, seq_len)).round().astype(int).tolist()))


def measure_gradient_flow(case: Case, workload, run_id: str) -> list[ResultRow]:
    setup = setup_for(case)
    spec = setup.spec
    inputs, targets = generate(case.task, case.seq_len, n=case.batch, seed=TEST_SEED, split="test", **setup.task_params)
    model = build_model(setup, spec)
    rows, decays = [], {}
    for trained in (False, True):
        if trained:
            train(setup, model=model)
        norms = state_gradient_norms(model, spec, inputs, targets, case.family)
        for name, by_step in norms.items():
            by_distance = by_step[::-1]  # row d: distance d = T - k
            decays[name, trained] = decay_per_step(by_distance.mean(axis=1))
            rows.append(ResultRow.measured(at(case, trained=trained), run_id, f"grad_decay_{name}", decays[name, trained],
                                           "per step", note=f"exp(slope of log mean ‖∂L/∂{name}_k‖ over distance 1..T-1)"))
            for d in sampled_distances(case.seq_len):
                values = by_distance[d]
                rows.append(ResultRow.measured(at(case, distance=d, trained=trained), run_id, f"grad_norm_{name}",
                                               values.mean(), "", q25=np.percentile(values, 25),
                                               q75=np.percentile(values, 75), n=len(values),
                                               note=f"mean over sequences of ‖∂L/∂{name}_k‖, quartiles over sequences"))
    test_inputs, test_targets = held_out_data(setup)
    loss = evaluate(model, spec, test_inputs, test_targets)["test_loss"]
    rows.append(ResultRow.measured(at(case, trained=True), run_id, "test_loss", loss, loss_unit(spec),
                                   note=f"after {setup.config.steps} steps, {len(test_targets)} held-out sequences"))
    rows.append(ResultRow.measured(case, run_id, "grad_decay_h", decays["h", False], "per step", note="at initialisation"))
    return rows


def _check_case(case: Case) -> str | None:
    problem = check_training_case(case)
    if problem is not None:
        return problem
    if case.family not in RECURRENT_FAMILIES:
        return f"needs a recurrent family ({', '.join(RECURRENT_FAMILIES)}) whose state it differentiates, got {case.family!r}"
    spec = describe(case.task, case.seq_len, **split_params(case)[1])
    if spec.variable_length or spec.stateful:
        return f"needs a fixed-length, stateless task (distance T - k from one end), got {case.task!r}"
    return None


EXPERIMENT = Experiment(
    name="gradient",
    metric="grad_decay_h",
    unit="per step",
    description="‖∂L/∂h_k‖ and ‖∂L/∂c_k‖ against distance T-k, at initialisation and after training",
    measure=measure_gradient_flow,
    gated=False,
    timed=False,
    uses_workload=False,
    check_case=_check_case,
    requirement=training_requirement,
    prepare_case=prepare_training_case,
)
