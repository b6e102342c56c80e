"""The training loop shared by every encoder: one model, one budget, any backend's encoder.

Model (:class:`SequenceModel`) for a task's :class:`~rnnbench.harness.tasks.TaskSpec`:

* input layer: ``nn.Embedding(vocabulary, input_size)`` for token tasks, ``nn.Linear(features,
  input_size)`` for feature tasks;
* encoder: the backend's trainable encoder (``Backend.encoder``, see
  :class:`~rnnbench.harness.registry.Backend`): time-major ``(T, B, input_size) -> (T, B,
  hidden_size)``, output t depending on steps ``<= t`` only, plus a state to carry;
* head: ``Linear(H, H) -> ReLU -> Linear(H, out)``, out = 1 (regression) or the number of classes.

Readout: class and regression targets read each sequence's output at its own last step
(``TaskSpec.lengths - 1``). A recurrence's output there is unaffected by the padding after it; the
bag-of-words and CNN encoders pool over the prefix up to it, so their pads are never pooled either.
Per-step targets (``step_class``) read every step. Loss: squared error (regression), cross-entropy
(class; per-step targets: the mean over every step).

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
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from rnnbench.harness.backends import get_backend
from rnnbench.harness.dtypes import torch_dtype
from rnnbench.harness.registry import EncoderSpec
from rnnbench.harness.tasks import TaskSpec, describe, generate, metrics
from rnnbench.harness.tasks.base import Param
from rnnbench.harness.tasks.vocabulary import decode

#: batches of fresh training data generated per call of the task's generator
BLOCK = 32
#: the seed of every test set (the test split's stream is independent of every training stream)
TEST_SEED = 0
#: sequences per forward pass when scoring held-out data
EVAL_BATCH = 500
#: at most this many points of the training curve are kept (each the mean over its window of steps)
CURVE_POINTS = 50
#: longest text sampled from a language model, in tokens
SAMPLE_LIMIT = 200


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


class SequenceModel(nn.Module):
    """Input layer -> encoder -> head (see the module docstring). Inputs are batch-major as the
    tasks generate them; the encoder runs time-major."""

    def __init__(self, spec: TaskSpec, encoder: nn.Module, input_size: int, hidden_size: int):
        super().__init__()
        self.target = spec.target
        if spec.inputs.kind == "tokens":
            self.input = nn.Embedding(spec.inputs.size, input_size)
        else:
            self.input = nn.Linear(spec.inputs.size, input_size)
        self.encoder = encoder
        outputs = 1 if spec.target.kind == "regression" else spec.target.num_classes
        self.head = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, outputs))

    def encode(self, x: torch.Tensor, state=None, bptt: int = 0):
        """Encoder outputs ``(S, B, H)`` of batch-major ``x`` and the state after the last step.

        With ``bptt`` the sequence runs in chunks of that many steps, aligned to its end (the first
        chunk takes the remainder), and gradients stop between chunks: the loss at the last step
        reaches exactly ``bptt`` steps back."""
        steps = self.input(x.transpose(0, 1))
        if not bptt:
            return self.encoder(steps, state)
        count = steps.shape[0]
        sizes = ([count % bptt] if count % bptt else []) + [bptt] * (count // bptt)
        outputs = []
        for chunk in steps.split(sizes):
            output, state = self.encoder(chunk, state)
            outputs.append(output)
            state = detach_state(state)
        return torch.cat(outputs), state

    def readout(self, outputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Predictions from encoder outputs ``(S, B, H)``: per-step logits ``(B, S, C)``, or at each
        sequence's last step ``lengths - 1``: logits ``(B, C)`` or regression values ``(B,)``."""
        if self.target.kind == "step_class":
            return self.head(outputs).transpose(0, 1)
        last = outputs[lengths - 1, torch.arange(outputs.shape[1], device=outputs.device)]
        predictions = self.head(last)
        return predictions.squeeze(-1) if self.target.kind == "regression" else predictions

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, state=None, bptt: int = 0):
        outputs, state = self.encode(x, state, bptt)
        return self.readout(outputs, lengths), state

    def loss(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.target.kind == "regression":
            return F.mse_loss(predictions, targets)
        return F.cross_entropy(predictions.reshape(-1, predictions.shape[-1]), targets.reshape(-1))


def detach_state(state):
    """``state`` (None, a tensor or a tuple of tensors) cut from the autograd graph."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach()
    return tuple(detach_state(part) for part in state)


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
        _initialise(model.encoder, setup.family, setup.config)
    return model.to(device=setup.device, dtype=torch_dtype(setup.dtype))


def _initialise(encoder: nn.Module, family: str, config: TrainingConfig) -> None:
    """The LSTM forget-gate bias and the Elman RNN's spectral radius, on torch's parameter names
    (``bias_ih_l0``, ``weight_hh_l0``, ...; gate order i, f, g, o), which every recurrent backend shares."""
    parameters = dict(encoder.named_parameters())
    with torch.no_grad():
        if family == "lstm":
            for name, bias in parameters.items():
                if name.startswith(("bias_ih_l", "bias_hh_l")):
                    hidden = bias.shape[0] // 4
                    bias[hidden:2 * hidden] = config.forget_bias if name.startswith("bias_ih") else 0.0
        if family == "rnn" and config.spectral_radius > 0:
            for name, weight in parameters.items():
                if name.startswith("weight_hh_l"):
                    radius = torch.linalg.eigvals(weight.double()).abs().max().item()
                    weight.mul_(config.spectral_radius / radius)


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
                yield _cut(spec, inputs[rows], targets[rows])
    else:
        for block in itertools.count():
            inputs, targets = draw(batch * BLOCK, block_seed(setup.seed, block))
            for start in range(0, len(inputs), batch):
                yield _cut(spec, inputs[start:start + batch], targets[start:start + batch])


def _cut(spec: TaskSpec, inputs: np.ndarray, targets: np.ndarray) -> Batch:
    """The batch without the padding columns beyond its own longest sequence."""
    if spec.variable_length:
        inputs = inputs[:, :spec.lengths(inputs).max()]
    return Batch(inputs, targets)


def as_tensors(model: SequenceModel, spec: TaskSpec, inputs: np.ndarray, targets: np.ndarray | None = None):
    """``(x, lengths[, y])`` as tensors on the model's device; float arrays in the model's dtype."""
    weight = next(model.parameters())
    x = torch.from_numpy(inputs).to(weight.device)
    if x.is_floating_point():
        x = x.to(weight.dtype)
    lengths = torch.from_numpy(spec.lengths(inputs)).to(weight.device)
    if targets is None:
        return x, lengths
    y = torch.from_numpy(targets).to(weight.device)
    return x, lengths, (y.to(weight.dtype) if y.is_floating_point() else y)


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


@torch.no_grad()
def predict(model: SequenceModel, spec: TaskSpec, inputs: np.ndarray) -> np.ndarray:
    """The model's outputs on held-out ``inputs``, as ``TaskSpec.evaluate`` takes them (float64).

    Stateful tasks run every row as one stream, chunk after chunk of ``spec.seq_len`` steps with the
    state carried; other tasks run in batches of :data:`EVAL_BATCH`, each cut to its longest sequence.
    """
    model.eval()
    parts = []
    if spec.stateful:
        state = None
        for start in range(0, inputs.shape[1], spec.seq_len):
            x, lengths = as_tensors(model, spec, inputs[:, start:start + spec.seq_len])
            predictions, state = model(x, lengths, state)
            parts.append(predictions)
        return torch.cat(parts, dim=1).double().cpu().numpy()
    for start in range(0, len(inputs), EVAL_BATCH):
        batch = _cut(spec, inputs[start:start + EVAL_BATCH], np.empty(0))
        predictions, _ = model(*as_tensors(model, spec, batch.inputs))
        parts.append(predictions.double().cpu().numpy())
    return np.concatenate(parts, axis=0)


def evaluate(model: SequenceModel, spec: TaskSpec, inputs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Every metric of ``spec`` on held-out data, plus ``test_loss``: the training loss's measure
    (squared error or cross-entropy in nats) on the same data."""
    outputs = predict(model, spec, inputs)
    scores = spec.evaluate(outputs, targets)
    if spec.target.kind == "regression":
        scores["test_loss"] = metrics.mse(outputs, targets)
    else:
        scores["test_loss"] = metrics.cross_entropy(outputs, targets)
    return scores


def generates_text(spec: TaskSpec) -> bool:
    """Whether the task is next-token prediction over a vocabulary with ``<bos>``/``<eos>``, so a
    trained model can write a sample."""
    vocabulary = spec.inputs.vocabulary or ()
    return (spec.target.kind == "step_class" and spec.target.num_classes == spec.inputs.size
            and "<bos>" in vocabulary and "<eos>" in vocabulary)


@torch.no_grad()
def sample_text(model: SequenceModel, spec: TaskSpec, seed: int, limit: int = SAMPLE_LIMIT) -> str:
    """Text drawn from the model from ``<bos>`` until ``<eos>`` or ``limit`` tokens, each token from
    the softmax of the model's prediction given the whole prefix (so it works for every encoder)."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    tokens = [spec.inputs.token_id("<bos>")]
    end = spec.inputs.token_id("<eos>")
    while len(tokens) <= limit and tokens[-1] != end:
        x, lengths = as_tensors(model, spec, np.array([tokens], dtype=np.int64))
        logits, _ = model(x, lengths)
        probabilities = torch.softmax(logits[0, -1].double().cpu(), dim=-1)
        tokens.append(int(torch.multinomial(probabilities, 1, generator=generator)))
    return decode(tokens, spec.inputs.vocabulary)


def config_from_params(params: Mapping[str, object]) -> TrainingConfig:
    """The :class:`TrainingConfig` of the training parameters in ``params`` (others are ignored)."""
    chosen = {name: value for name, value in params.items() if name in PARAM_NAMES}
    return TrainingConfig(**chosen)

