"""What a training case means (shared by the ``accuracy`` and ``gradient`` experiments).

A case's fields, read as a training run (:class:`~rnnbench.harness.training.TrainingSetup`):

* ``task``: a task name (:data:`rnnbench.harness.tasks.TASKS`); ``seq_len``: the task's length knob
  (its meaning per task is in the task's module: adding's T, copy's delay, parity's longest training
  string, charlm's truncation length);
* ``backend``/``family``: the encoder (``Backend.encoder``); ``hidden_size``: its width;
  ``input_size``: the width of the input layer (token embedding or feature projection);
* ``batch``: sequences per training step (stateful tasks: streams); ``seed``: the training seed;
* ``dtype``: the training dtype (float32 or float64: no loss scaling for 16-bit types);
* ``mode``: ``train``;
* ``params``: the training parameters (:data:`rnnbench.harness.training.PARAMS`) and the task's
  parameters, one flat namespace (their names are disjoint). :func:`prepare_training_case` writes
  every default into ``params``, so the case's identity says exactly what was trained.

The Triton interpreter on CPU (a backend that is not timed on the device) runs about a thousand
times slower than the GPU; training there is allowed for tiny cases only, up to
:data:`INTERPRETED_TIME_STEPS` time steps (``steps × max_steps``), and skipped with the reason above that.
"""

from __future__ import annotations

from dataclasses import replace

from rnnbench.harness.backends import get_backend
from rnnbench.harness.cases import Case
from rnnbench.harness.errors import UsageError
from rnnbench.harness.problems import RECURRENT_FAMILIES
from rnnbench.harness.tasks import TASKS, TaskSpec, describe
from rnnbench.harness.training import PARAM_NAMES, PARAMS, TrainingConfig, TrainingSetup

TRAIN_DTYPES = ("float32", "float64")
#: the most time steps (steps × max_steps) trained through the Triton interpreter
INTERPRETED_TIME_STEPS = 1000

_TRAINING_PARAMS = {param.name: param for param in PARAMS}


def split_params(case: Case) -> tuple[dict, dict]:
    """``(training parameters coerced to their types, task parameters)`` of ``case``."""
    training, task = {}, {}
    for name, value in case.params:
        if name in _TRAINING_PARAMS:
            training[name] = _TRAINING_PARAMS[name].coerce("training", value)
        else:
            task[name] = value
    return training, task


def check_training_case(case: Case) -> str | None:
    """Why ``case`` is not a valid training case (naming the bad value), or None."""
    if case.mode != "train":
        return f"trains, so mode must be 'train' (modes = ['train']), got {case.mode!r}"
    if case.dtype not in TRAIN_DTYPES:
        return f"trains in {' or '.join(TRAIN_DTYPES)}, got dtype {case.dtype!r}"
    if case.task not in TASKS:
        return f"needs a task, one of {', '.join(sorted(TASKS))}; got task {case.task!r}"
    declared = {param.name for param in TASKS[case.task].params}
    unknown = sorted(name for name, _ in case.params if name not in declared and name not in _TRAINING_PARAMS)
    if unknown:
        return (f"got unknown parameter {unknown[0]!r}; expected a training parameter ({', '.join(PARAM_NAMES)}) "
                f"or a {case.task} parameter ({', '.join(sorted(declared)) or 'none'})")
    try:
        training, task = split_params(case)
        spec = describe(case.task, case.seq_len, **task)
    except UsageError as error:
        return str(error)
    return _check_against_spec(case, spec, TrainingConfig(**{"test_size": default_test_size(spec), **training}))


def _check_against_spec(case: Case, spec: TaskSpec, config: TrainingConfig) -> str | None:
    if config.bptt and case.family not in RECURRENT_FAMILIES:
        return f"bptt needs an encoder that carries state ({', '.join(RECURRENT_FAMILIES)}), got family {case.family!r}"
    if config.spectral_radius and case.family != "rnn":
        return f"spectral_radius rescales the Elman RNN's W_hh (family 'rnn'), got family {case.family!r}"
    if spec.target.kind == "step_class" and spec.variable_length:
        return f"per-step targets of variable-length sequences are not supported (task {case.task!r})"
    if spec.split_sizes is None:
        return None
    # finite data: the training split must hold a batch and the test split the test set
    unit = case.seq_len if spec.stateful else 1
    what = "streams of seq_len tokens" if spec.stateful else "sequences"
    for split, wanted in (("train", case.batch), ("test", config.test_size)):
        holds = spec.split_sizes[split] // unit
        if wanted > holds:
            name = "batch" if split == "train" else "test_size"
            return f"{name}={wanted} exceeds the {holds} {what} of {case.task}'s {split} split"
    return None


def default_test_size(spec: TaskSpec) -> int:
    """The held-out set when the case names none: the whole test split of a finite data set (for a
    stateful task: 16 streams of it), else ``TrainingConfig.test_size``."""
    if spec.stateful:
        return 16
    if spec.split_sizes is not None:
        return spec.split_sizes["test"]
    return TrainingConfig().test_size


def prepare_training_case(case: Case) -> Case:
    """``case`` with every training and task parameter written out (defaults filled, types coerced)."""
    training, task = split_params(case)
    spec = describe(case.task, case.seq_len, **task)
    defaults = {param.name: param.default for param in PARAMS}
    defaults["test_size"] = default_test_size(spec)
    return replace(case, params={**defaults, **training, **spec.params})


def setup_for(case: Case) -> TrainingSetup:
    """The training run a (prepared) case describes."""
    training, task = split_params(case)
    return TrainingSetup(task=case.task, seq_len=case.seq_len, task_params=task, backend=case.backend,
                         family=case.family, device=case.device, dtype=case.dtype, batch=case.batch,
                         input_size=case.input_size, hidden_size=case.hidden_size, seed=case.seed,
                         config=TrainingConfig(**training))


def interpreted(case: Case) -> bool:
    """Whether ``case``'s backend runs interpreted on its device (its timings there mean nothing)."""
    backend = get_backend(case.backend)
    return backend.timed_devices is not None and case.device not in backend.timed_devices


def training_requirement(case: Case) -> str | None:
    """Why this machine cannot train ``case`` (no trainable encoder; too big for the interpreter), or None."""
    reason = get_backend(case.backend).training_skip_reason()
    if reason is not None:
        return reason
    if interpreted(case):
        setup = setup_for(case)
        work = setup.config.steps * setup.spec.max_steps
        if work > INTERPRETED_TIME_STEPS:
            return (f"backend {case.backend!r} runs interpreted on {case.device}; training there is limited to "
                    f"steps x max_steps <= {INTERPRETED_TIME_STEPS} time steps, got "
                    f"{setup.config.steps} x {setup.spec.max_steps} = {work}")
    return None
