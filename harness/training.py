"""The training loop shared by every encoder: one model, one budget, any backend's encoder.

The model is a :class:`~rnnbench.harness.sequence_model.SequenceModel` (input layer -> the
backend's trainable encoder -> head), built by :func:`build_model` for a :class:`TrainingSetup`;
the trained model is scored by :mod:`rnnbench.harness.evaluation`.

Budget (:class:`TrainingConfig`, whose every field is a case parameter, :data:`PARAMS`): ``steps``
Adam updates on batches of ``batch`` sequences at learning rate ``lr``; the gradient clipped to a
global L2 norm of ``clip`` (0: off); the LSTM forget gate's bias set to ``forget_bias`` at
initialisation; optionally the Elman RNN's ``W_hh`` rescaled to a ``spectral_radius``; ``bptt``:
backpropagation truncated to chunks of that many steps, aligned to the sequence's end (the state
carried forward, detached); ``test_size`` held-out sequences.

Data, by what the spec says about the task:

* generated tasks (no ``split_sizes``): fresh sequences every step, drawn in blocks of
  :data:`BLOCK` batches, each block from its own seed derived from the training seed;
* finite data sets (``split_sizes``, e.g. digits): epochs over the training split, reshuffled
  each epoch; a last partial batch is dropped;
* ``stateful`` tasks (charlm): each batch row is a stream fed in consecutive chunks of ``seq_len``
  steps, the state carried from chunk to chunk and detached (truncated BPTT); a new block of
  streams (another epoch, at another offset) starts from a fresh state.

Held-out data: ``test_size`` sequences of the test split drawn with :data:`TEST_SEED`, the same for
every training seed and encoder. Seeds: the training seed seeds torch (initialisation) and the
training data, so the same seed gives the same loss curve on the same machine and thread count.
On CPU, denormal floats are flushed to zero while training: vanishing gradients are full of them,
and without the flush a tanh RNN trains about twice as slowly on x86 for no difference in result.
"""

from __future__ import annotations

import itertools
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Iterator, Mapping

import numpy as np
import torch
from tqdm import tqdm

from rnnbench.harness.backends import get_backend
from rnnbench.harness.dtypes import torch_dtype
from rnnbench.harness.registry import EncoderSpec
from rnnbench.harness.sequence_model import SequenceModel, as_tensors, cut_to_longest, detach_state, initialise
from rnnbench.harness.tasks import TaskSpec, describe, generate
from rnnbench.harness.tasks.base import Param

#: batches of fresh training data generated per call of the task's generator
BLOCK = 32
#: the seed of every test set (the test split's stream is independent of every training stream)
TEST_SEED = 0
#: at most this many points of the training curve are kept (each the mean over its window of steps)
CURVE_POINTS = 50


@dataclass(frozen=True)
class TrainingConfig:
    """The training budget and options; :data:`PARAMS` says what each field means."""

    steps: int = 2000
    lr: float = 1e-3
    clip: float = 1.0
    forget_bias: float = 1.0
    spectral_radius: float = 0.0
    bptt: int = 0
    test_size: int = 1000


_DEFAULT = TrainingConfig()
#: the training parameters of a case, with their defaults (those of :class:`TrainingConfig`) and ranges
PARAMS = (
    Param("steps", _DEFAULT.steps, "Adam updates, one batch each", minimum=0),
    Param("lr", _DEFAULT.lr, "Adam learning rate", minimum=0.0, maximum=10.0),
    Param("clip", _DEFAULT.clip, "global L2 gradient-norm clipping threshold; 0: no clipping", minimum=0.0),
    Param("forget_bias", _DEFAULT.forget_bias, "the LSTM forget gate's total bias (b_ih + b_hh) at initialisation"),
    Param("spectral_radius", _DEFAULT.spectral_radius,
          "rescale the Elman RNN's W_hh to this spectral radius at initialisation; 0: keep torch's initialisation",
          minimum=0.0),
    Param("bptt", _DEFAULT.bptt,
          "backpropagate through chunks of this many steps, the state carried forward detached; 0: whole sequences",
          minimum=0),
    Param("test_size", _DEFAULT.test_size, "held-out sequences scored (stateful tasks: streams the test text is "
                                           "cut into); finite data sets default to their whole test split", minimum=1),
)
PARAM_NAMES = tuple(f.name for f in fields(TrainingConfig))


@dataclass(frozen=True)
class TrainingSetup:
    """One training run: the task (name, length knob, parameters), the encoder (backend, family,
    widths), where (device, dtype), the batch size, the seed and the budget."""

    task: str
    seq_len: int
    task_params: Mapping[str, object]
    backend: str
    family: str
    device: str
    dtype: str
    batch: int
    input_size: int
    hidden_size: int
    seed: int
    config: TrainingConfig = field(default_factory=TrainingConfig)

    @property
    def spec(self) -> TaskSpec:
        return describe(self.task, self.seq_len, **self.task_params)


@dataclass(frozen=True)
class CurvePoint:
    """The mean training loss and pre-clipping gradient norm over the window of steps ending at ``step``."""

    step: int
    loss: float
    grad_norm: float


@dataclass
class TrainingResult:
    """What training produced: the model, the curve, and what the loop measured.

    ``wall_s``: seconds of the loop (data generation, forward, backward, optimizer steps);
    ``sequences``: sequences (stateful tasks: chunks of ``seq_len`` tokens) trained on;
    ``max_grad_norm``: the largest pre-clipping global gradient norm; ``clipped_steps``: steps whose
    norm exceeded ``clip``; ``diverged_at``: the step whose loss was not finite (training stopped), or None.
    """

    model: "SequenceModel"
    curve: list[CurvePoint]
    wall_s: float
    sequences: int
    steps_done: int
    max_grad_norm: float
    clipped_steps: int
    diverged_at: int | None


def build_model(setup: TrainingSetup, spec: TaskSpec | None = None) -> SequenceModel:
    """The seeded, initialised model of ``setup`` on its device and dtype."""
    spec = spec or setup.spec
    backend = get_backend(setup.backend)
    reason = backend.training_skip_reason()
    if reason is not None:
        raise ValueError(reason)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(setup.seed)
        encoder = backend.encoder(EncoderSpec(setup.family, setup.input_size, setup.hidden_size, spec.max_steps))
        model = SequenceModel(spec, encoder, setup.input_size, setup.hidden_size)
        initialise(model.encoder, setup.family, setup.config.forget_bias, setup.config.spectral_radius)
    return model.to(device=setup.device, dtype=torch_dtype(setup.dtype))


@dataclass(frozen=True)
class Batch:
    """Batch-major arrays as the task generates them, cut to the batch's longest sequence;
    ``fresh``: the rows start new sequences (a stateful task's state is reset)."""

    inputs: np.ndarray
    targets: np.ndarray
    fresh: bool = True


def block_seed(seed: int, block: int) -> int:
    """The generator seed of block ``block`` of training data for training seed ``seed``."""
    return int(np.random.SeedSequence([seed, block]).generate_state(1)[0])


def training_batches(setup: TrainingSetup, spec: TaskSpec) -> Iterator[Batch]:
    """Endless training batches of ``setup`` (see the module docstring)."""
    def draw(n: int, seed: int):
        return generate(setup.task, setup.seq_len, n=n, seed=seed, **setup.task_params)

    batch = setup.batch
    if spec.stateful:
        for block in itertools.count():
            inputs, targets = draw(batch, block_seed(setup.seed, block))
            for start in range(0, inputs.shape[1], setup.seq_len):
                window = slice(start, start + setup.seq_len)
                yield Batch(inputs[:, window], targets[:, window], fresh=start == 0)
    elif spec.split_sizes is not None:
        inputs, targets = draw(spec.split_sizes["train"], setup.seed)
        rng = np.random.default_rng(setup.seed)
        while True:
            order = rng.permutation(len(targets))
            for start in range(0, len(order) - batch + 1, batch):
                rows = order[start:start + batch]
                yield Batch(cut_to_longest(spec, inputs[rows]), targets[rows])
    else:
        for block in itertools.count():
            inputs, targets = draw(batch * BLOCK, block_seed(setup.seed, block))
            for start in range(0, len(inputs), batch):
                yield Batch(cut_to_longest(spec, inputs[start:start + batch]), targets[start:start + batch])


@contextmanager
def _flushed_denormals(device: str):
    flushed = device == "cpu" and torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if flushed:
            torch.set_flush_denormal(False)


def train(setup: TrainingSetup, model: SequenceModel | None = None, progress: bool = True) -> TrainingResult:
    """Train ``model`` (default: :func:`build_model`) for ``setup.config.steps`` steps.

    ``progress`` shows a bar with the ETA and the running loss, on a terminal only.
    """
    spec = setup.spec
    model = model if model is not None else build_model(setup, spec)
    config = setup.config
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    max_norm = config.clip if config.clip > 0 else math.inf
    window = max(1, math.ceil(config.steps / CURVE_POINTS))
    curve, losses, norms = [], [], []
    result = TrainingResult(model, curve, 0.0, 0, 0, 0.0, 0, None)
    batches = training_batches(setup, spec)
    label = f"{setup.task} T={setup.seq_len} {setup.backend}/{setup.family} seed {setup.seed}"
    bar = tqdm(total=config.steps, desc=label, unit="step", leave=False, disable=None if progress else True,
               mininterval=1.0, dynamic_ncols=True)
    state = None
    started = time.perf_counter()
    with _flushed_denormals(setup.device), bar:
        model.train()
        for step in range(1, config.steps + 1):
            batch = next(batches)
            x, lengths, y = as_tensors(model, spec, batch.inputs, batch.targets)
            predictions, state = model(x, lengths, None if batch.fresh else state, config.bptt)
            state = detach_state(state) if spec.stateful else None
            loss = model.loss(predictions, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
            optimizer.step()
            losses.append(loss.item())
            norms.append(norm)
            result.steps_done, result.sequences = step, result.sequences + len(batch.inputs)
            result.max_grad_norm = max(result.max_grad_norm, norm)
            result.clipped_steps += norm > max_norm
            if not math.isfinite(losses[-1]):
                result.diverged_at = step
            if step % window == 0 or step == config.steps or result.diverged_at:
                curve.append(CurvePoint(step, float(np.mean(losses)), float(np.mean(norms))))
                losses, norms = [], []
                bar.set_postfix(loss=f"{curve[-1].loss:.4g}", refresh=False)
            bar.update()
            if result.diverged_at:
                break
    result.wall_s = time.perf_counter() - started
    return result


def held_out_data(setup: TrainingSetup) -> tuple[np.ndarray, np.ndarray]:
    """The held-out ``(inputs, targets)`` of ``setup``: ``test_size`` sequences of the test split."""
    return generate(setup.task, setup.seq_len, n=setup.config.test_size, seed=TEST_SEED, split="test",
                    **setup.task_params)


