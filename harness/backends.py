"""The catalogue of backends: every implementation the suite measures, declared once, and the lookups.

A new backend is one ``register(Backend(...))`` entry here (see :class:`rnnbench.harness.registry.Backend`).
:data:`SPEEDUP_BASELINE` is the backend every other one's speed is compared with; it is recorded
in each run's ``env.json`` so that reports, which never import this module, use the same one.

Recurrent backends (families ``rnn`` = Elman tanh RNN, ``lstm``) are checked against the float64
NumPy BPTT on CPU and against ``torch.nn`` in float64 on the GPU (itself tested against NumPy).
The encoders are checked against themselves in float64 on CPU.

Each entry also says how its trainable encoder is built (``Backend.encoder``): the recurrent
modules themselves, and the bag-of-words and CNN encoders behind
:class:`~rnnbench.baselines.step_encoder.StepEncoder` (features of every prefix). ``cnn`` has a
fixed receptive field of 7 steps; ``cnn-dilated`` adds layers until its receptive field covers the
whole sequence (the problem's ``seq_len`` when timed, the task's ``max_steps`` when trained).
"""

from __future__ import annotations

from functools import partial

import torch

from rnnbench.baselines.bow import BagOfWordsEncoder
from rnnbench.baselines.cnn import CNNEncoder, layers_to_cover
from rnnbench.baselines.eager import EagerLSTM, EagerRNN
from rnnbench.harness.errors import Unsupported, UsageError
from rnnbench.baselines.step_encoder import StepEncoder
from rnnbench.harness.problems import PROBLEM_OPTIONS, Problem
from rnnbench.harness.registry import Backend, EncoderSpec
from rnnbench.harness.workloads import NumpyRecurrentWorkload, TorchEncoderWorkload, TorchRecurrentWorkload

ALL_DTYPES = ("float64", "float32", "float16", "bfloat16")
#: speedups in reports are this backend's median latency over another backend's, same shape and run
SPEEDUP_BASELINE = "torch"

_CATALOGUE: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    if backend.name in _CATALOGUE:
        raise ValueError(f"backend {backend.name!r} is registered twice")
    _CATALOGUE[backend.name] = backend
    return backend


def all_backends() -> list[Backend]:
    return list(_CATALOGUE.values())


def get_backend(name: str) -> Backend:
    if name not in _CATALOGUE:
        raise UsageError(f"unknown backend {name!r}; expected one of {', '.join(_CATALOGUE)}")
    return _CATALOGUE[name]


def problem_for(case) -> Problem:
    """The seeded random problem of a speed, memory or numerics case (see :class:`Problem`)."""
    options = {name: bool(case.param_dict.get(name, False)) for name in PROBLEM_OPTIONS}
    return Problem(case.family, case.seq_len, case.batch, case.input_size, case.hidden_size, case.seed, **options)


def build_workload(case):
    """``case``'s backend bound to its problem, dtype and device (see :mod:`rnnbench.harness.workloads`)."""
    return get_backend(case.backend).factory(problem_for(case), case.dtype, case.device)


def shape_case(backend: str, family: str, hidden_size: int, batch: int, seq_len: int, mode: str, dtype: str,
               device: str, input_size: int | None = None, experiment: str = "speed"):
    """The case of one shape on the harness's seeded random problem (seed 0; input size H unless
    given), for the tools that run one call outside a suite (memory breakdown, profiler target)."""
    from rnnbench.harness.cases import Case

    return Case(experiment, "random", backend, family, device, dtype, batch, seq_len, input_size or hidden_size,
                hidden_size, mode, seed=0)
TORCH_CLASSES = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM}
EAGER_CLASSES = {"rnn": EagerRNN, "lstm": EagerLSTM}


def _recurrent_factory(classes):
    def factory(problem, dtype, device):
        return TorchRecurrentWorkload(problem, dtype, device, classes[problem.family])

    return factory


def _encoder_factory(module_factory):
    def factory(problem, dtype, device):
        return TorchEncoderWorkload(problem, dtype, device, module_factory)

    return factory


def _trainable_recurrent(classes):
    """``Backend.encoder`` of a recurrent backend: ``classes()`` maps a family to a module class
    called like ``torch.nn.RNN``/``LSTM`` (a function, so the Triton classes are imported when used)."""

    def build(spec: EncoderSpec):
        return classes()[spec.family](spec.input_size, spec.hidden_size)

    return build


def _trainable_step_encoder(module_factory):
    def build(spec: EncoderSpec):
        return StepEncoder(module_factory(spec.input_size, spec.hidden_size))

    return build


#: the CNN's shape: kernel 3, dilations 1, 2, 4, ... (no gaps), so L layers see 2^(L+1) - 1 steps
CNN_KERNEL, CNN_DILATION_BASE = 3, 2
short_cnn = partial(CNNEncoder, num_layers=2, kernel_size=CNN_KERNEL, dilation_base=CNN_DILATION_BASE)


def covering_cnn(input_size: int, hidden_size: int, steps: int) -> CNNEncoder:
    """A dilated CNN whose receptive field covers ``steps`` steps."""
    layers = layers_to_cover(steps, CNN_KERNEL, CNN_DILATION_BASE)
    return CNNEncoder(input_size, hidden_size, num_layers=layers, kernel_size=CNN_KERNEL, dilation_base=CNN_DILATION_BASE)


register(Backend(
    name="numpy",
    families=("rnn", "lstm"),
    devices=("cpu",),
    dtypes=("float64", "float32"),
    factory=lambda problem, dtype, device: NumpyRecurrentWorkload(problem, dtype),
    reference="numpy",
    description="NumPy forward and hand-written BPTT (the float64 ground truth)",
))

register(Backend(
    name="eager",
    families=("rnn", "lstm"),
    devices=("cpu", "cuda"),
    dtypes=ALL_DTYPES,
    factory=_recurrent_factory(EAGER_CLASSES),
    reference="numpy",
    cuda_reference="torch",
    options=PROBLEM_OPTIONS,
    options_reference="torch",
    description="eager PyTorch: a Python loop over time of plain torch ops",
    encoder=_trainable_recurrent(lambda: EAGER_CLASSES),
))

register(Backend(
    name="torch",
    families=("rnn", "lstm"),
    devices=("cpu", "cuda"),
    dtypes=ALL_DTYPES,
    factory=_recurrent_factory(TORCH_CLASSES),
    reference="numpy",
    cuda_reference="torch",
    options=PROBLEM_OPTIONS,
    options_reference="torch",
    description="torch.nn.RNN / torch.nn.LSTM (cuDNN on CUDA, ATen's CPU kernels on CPU)",
    encoder=_trainable_recurrent(lambda: TORCH_CLASSES),
))

register(Backend(
    name="bow",
    families=("bow",),
    devices=("cpu", "cuda"),
    dtypes=ALL_DTYPES,
    factory=_encoder_factory(partial(BagOfWordsEncoder, pooling="mean")),
    reference="bow",
    description="bag-of-words encoder: per-step linear projection, mean over time (order-free)",
    encoder=_trainable_step_encoder(partial(BagOfWordsEncoder, pooling="mean")),
))

register(Backend(
    name="cnn",
    families=("cnn",),
    devices=("cpu", "cuda"),
    dtypes=ALL_DTYPES,
    factory=_encoder_factory(short_cnn),
    reference="cnn",
    description="1-D CNN encoder: 2 dilated conv layers (kernel 3, dilation 1, 2; receptive field 7), global max-pool",
    # the max-pool's gradient goes to the arg-max time step; 16-bit rounding of near ties moves it
    # to another step, which is not an error of the implementation, so 16-bit checks the forward only
    gradient_check_dtypes=("float64", "float32"),
    encoder=_trainable_step_encoder(short_cnn),
))

register(Backend(
    name="cnn-dilated",
    families=("cnn",),
    devices=("cpu", "cuda"),
    dtypes=ALL_DTYPES,
    factory=lambda problem, dtype, device: TorchEncoderWorkload(
        problem, dtype, device, partial(covering_cnn, steps=problem.seq_len)),
    reference="cnn-dilated",
    description="1-D CNN encoder: dilated conv layers (kernel 3, dilation 1, 2, 4, ...) until the receptive field "
                "covers the sequence, global max-pool",
    gradient_check_dtypes=("float64", "float32"),  # as the cnn's: arg-max ties in 16 bits
    encoder=lambda spec: StepEncoder(covering_cnn(spec.input_size, spec.hidden_size, spec.max_steps)),
))


def _triton_requirement(device: str, dtype: str) -> str | None:
    """The kernels run on CUDA, or on CPU only inside the Triton interpreter (which has no bf16 dot, and
    in Triton 3.6 does not run with NumPy >= 2.4: :func:`rnnbench.kernels.launch.interpreter_refusal`)."""
    try:
        from rnnbench.kernels.launch import interpreter_active, interpreter_refusal
    except ImportError as error:
        return f"Triton is not importable: {error}"
    if device == "cpu" and not interpreter_active():
        return "Triton kernels need CUDA; on CPU they run only in the interpreter (TRITON_INTERPRET=1 before import)"
    if device == "cpu" and (refusal := interpreter_refusal()) is not None:
        return refusal
    if device == "cuda" and interpreter_active():
        return "TRITON_INTERPRET=1 is set: the kernels would run in the interpreter, not on the GPU"
    if device == "cpu" and dtype == "bfloat16":
        return "the Triton interpreter cannot multiply bfloat16 (tl.dot); bf16 is checked on the GPU"
    return None


def _triton_factory(path: str):
    def factory(problem, dtype, device):
        if path != "auto":
            _check_path_fits(problem, dtype, device, path)
        return TorchRecurrentWorkload(problem, dtype, device, _triton_classes(path)[problem.family])

    return factory


def _check_path_fits(problem, dtype: str, device: str, path: str) -> None:
    """Raise :class:`Unsupported` when the forced ``path`` cannot run the problem's shape here, forward
    or backward (the backward has a layout of its own; the workload runs both for ``fwd_bwd``)."""
    from rnnbench.kernels.launch import make_plan
    from rnnbench.kernels.plan import PathUnavailable

    like = torch.empty(0, dtype=getattr(torch, dtype), device=device)
    for backward in (False, True):
        try:
            make_plan(problem.family, problem.hidden_size, problem.batch, like, path, problem.directions, backward)
        except PathUnavailable as error:
            raise Unsupported(f"{'backward: ' if backward else ''}{error}") from None


def _triton_classes(path: str) -> dict:
    from rnnbench.kernels import TritonLSTM, TritonRNN  # imported when used: TRITON_INTERPRET is read at import

    return {"rnn": partial(TritonRNN, path=path), "lstm": partial(TritonLSTM, path=path)}


def _fused_input_factory(problem, dtype, device):
    """The planner's LSTM with its Gluon forward's input projection fused (``TritonLSTM(fuse_input=True)``),
    or :class:`Unsupported` where the plan does not fuse it for this shape here (not sm_90, H=1024,
    32-row batch blocks, an input size that is not a multiple of 64, lengths)."""
    from rnnbench.kernels.launch import make_plan
    from rnnbench.kernels.switches import fused_input_projection

    like = torch.empty(0, dtype=getattr(torch, dtype), device=device)
    with fused_input_projection(True):
        plan = make_plan("lstm", problem.hidden_size, problem.batch, like, "auto", problem.directions,
                         input_size=None if problem.packed else problem.input_size)
    if not plan.input_tiles:
        raise Unsupported(f"the input projection is not fused on the {plan.path} path here (H={problem.hidden_size}, "
                          f"B={problem.batch}, input size {problem.input_size}; see plan.gluon_input_tiles)")
    return _triton_lstm_factory(fuse_input=True)(problem, dtype, device)


def _triton_lstm_factory(**options):
    """A factory of the planner's ``TritonLSTM(**options)`` workload (the kernels imported on first use)."""
    def factory(problem, dtype, device):
        from rnnbench.kernels import TritonLSTM

        return TorchRecurrentWorkload(problem, dtype, device, partial(TritonLSTM, path="auto", **options))

    return factory


def _tagged_factory(**options):
    """A factory of the planner's ``TritonLSTM(tagged_exchange=True, **options)`` workload, its Gluon
    forward's state exchanged as compact tagged words, or :class:`Unsupported` where it would not
    run tagged here (:func:`_refuse_untagged`)."""
    def factory(problem, dtype, device):
        _refuse_untagged(problem, dtype, device)
        return _triton_lstm_factory(tagged_exchange=True, **options)(problem, dtype, device)

    return factory


#: the tagged exchange as the planner runs it; with its loader's threads each polling their own words
#: alone; and with the gates split inside each warp too (the cost model's first configuration under
#: the goal's 1.96 µs a step at H=768 B=16)
_tagged_exchange_factory = _tagged_factory()
_thread_poll_factory = _tagged_factory(thread_poll=True)
_local_gates_factory = _tagged_factory(thread_poll=True, local_gates=True)


def _refuse_untagged(problem, dtype, device) -> None:
    """:class:`Unsupported` where the planner's LSTM would not exchange tagged words here (not the
    Gluon forward, lengths, or :func:`rnnbench.kernels.plan.tagged_exchange_refusal`'s reasons on
    this GPU)."""
    from rnnbench.kernels.launch import make_plan
    from rnnbench.kernels.plan import tagged_exchange_refusal

    like = torch.empty(0, dtype=getattr(torch, dtype), device=device)
    plan = make_plan("lstm", problem.hidden_size, problem.batch, like, "auto", problem.directions)
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device == "cuda" else None
    refusal = "rows of their own lengths" if problem.packed else tagged_exchange_refusal(plan, sms)
    if refusal:
        raise Unsupported(f"the tagged exchange does not run here (the {plan.path} path, H={problem.hidden_size}, "
                          f"B={problem.batch}): {refusal}")


def _refuse_projection_before(problem, dtype, device) -> None:
    """:class:`Unsupported` where the planner's LSTM would project its input before its forward, not
    beside it (not the Gluon forward, two directions, lengths, a fused projection:
    :func:`rnnbench.kernels.plan.overlapped_projection_refusal`)."""
    from rnnbench.kernels.launch import make_plan
    from rnnbench.kernels.plan import overlapped_projection_refusal

    like = torch.empty(0, dtype=getattr(torch, dtype), device=device)
    plan = make_plan("lstm", problem.hidden_size, problem.batch, like, "auto", problem.directions)
    refusal = overlapped_projection_refusal(plan, problem.packed, False)
    if refusal:
        raise Unsupported(f"the input projection does not run beside the kernel here (the {plan.path} path, "
                          f"H={problem.hidden_size}, B={problem.batch}): {refusal}")


def _overlapped_projection_factory(problem, dtype, device):
    """The planner's LSTM with its Gluon forward's input projection run beside the kernel on a second
    stream (``TritonLSTM(overlap_projection=True)``), or :class:`Unsupported` where it would run
    before it (:func:`_refuse_projection_before`)."""
    _refuse_projection_before(problem, dtype, device)
    return _triton_lstm_factory(overlap_projection=True)(problem, dtype, device)


#: the inference forward's switches never timed in a whole call, as ``TritonLSTM`` options: with the
#: tagged exchange, they are the cost model's lowest estimate at the anchor (H=768 B=16 bf16, whole
#: call, calibrated: 1.61 µs a step with Triton 3.9, 1.62 with 3.6, against the planner's 2.16 and
#: 2.42 and the goal's 1.96); :func:`_inference_switches_factory` turns them all on
INFERENCE_SWITCHES = {"thread_poll": True, "local_gates": True, "overlap_projection": True}


def _inference_switches_factory(problem, dtype, device):
    """The planner's LSTM with the tagged exchange and every switch of :data:`INFERENCE_SWITCHES` on:
    the whole inference call the forward's goal would be measured with if all of them were set on
    in the plan. :class:`Unsupported` where the tagged exchange would not run
    (:func:`_refuse_untagged`) or the projection would not run beside the kernel
    (:func:`_refuse_projection_before`): not a mixture of some of the switches."""
    _refuse_untagged(problem, dtype, device)
    _refuse_projection_before(problem, dtype, device)
    return _triton_lstm_factory(tagged_exchange=True, **INFERENCE_SWITCHES)(problem, dtype, device)


def _overlapped_gradients_factory(problem, dtype, device):
    """The planner's LSTM with its backward's GEMMs run beside the recurrence on a second stream
    (``TritonLSTM(overlap_gradients=True)``), or :class:`Unsupported` where they would run after it
    (:func:`rnnbench.kernels.plan.overlapped_gradients_refusal`: not one launch with grid-barrier
    flags, two directions, lengths, 32-bit, float32 sums too big beside the gate gradients, or too
    few SMs left free)."""
    from rnnbench.kernels.launch import make_plan
    from rnnbench.kernels.plan import overlapped_gradients_refusal

    torch_dtype = getattr(torch, dtype)
    like = torch.empty(0, dtype=torch_dtype, device=device)
    plan = make_plan("lstm", problem.hidden_size, problem.batch, like, "auto", problem.directions, backward=True)
    sizes = (problem.seq_len, problem.batch, problem.hidden_size, problem.input_size)
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device == "cuda" else None
    refusal = overlapped_gradients_refusal(plan, torch_dtype, sizes, problem.packed, sms)
    if refusal:
        raise Unsupported(f"the backward's GEMMs do not run beside its recurrence here (the {plan.path} path, "
                          f"H={problem.hidden_size}, B={problem.batch}): {refusal}")
    return _triton_lstm_factory(overlap_gradients=True)(problem, dtype, device)


#: the switches of the kernels never timed in a whole training call, each off by default and each
#: with its own backend or step-ablation variant: :func:`_training_switches_factory` turns them all on
TRAINING_SWITCHES = ("streamed_copies", "tagged_training", "overlapped_gradients", "overlapped_projection")


def _training_switches_factory(problem, dtype, device):
    """The planner's LSTM with every switch of :data:`TRAINING_SWITCHES` on for each of its calls,
    forward and backward (each taken where its own refusal allows it): the whole training call
    the training goal would be measured with if every one of them were set on in the plan."""
    from rnnbench.harness.workloads import SwitchedWorkload
    from rnnbench.kernels import switches

    contexts = [partial(getattr(switches, name), True) for name in TRAINING_SWITCHES]
    return SwitchedWorkload(_triton_lstm_factory()(problem, dtype, device), contexts)


def _triton_backend(name: str, factory, description: str, **fields) -> Backend:
    """A backend of the Triton kernels: timed on CUDA, checked against NumPy (CPU) or torch.nn (CUDA) in
    float64, and against torch.nn where a problem has directions or lengths; ``fields`` override
    the families, devices, dtypes or add an encoder."""
    common = dict(families=("rnn", "lstm"), devices=("cpu", "cuda"), dtypes=("float32", "float16", "bfloat16"),
                  reference="numpy", cuda_reference="torch", options=PROBLEM_OPTIONS, options_reference="torch",
                  timed_devices=("cuda",), requirement=_triton_requirement, uses_triton=True)
    return Backend(name=name, factory=factory, description=description, **(common | fields))


for _path, _what in (("auto", "the size heuristic's choice"), ("persistent", "forced persistent path"),
                     ("cooperative", "forced cooperative path"), ("stepwise", "forced stepwise path"),
                     ("gluon", "forced Gluon LSTM forward and backward, sm_90")):
    register(_triton_backend("triton" if _path == "auto" else f"triton-{_path}", _triton_factory(_path),
                             f"fused Triton kernels ({_what}); on CPU numerics only, in the interpreter",
                             encoder=_trainable_recurrent(partial(_triton_classes, _path))))

#: what a backend of one of the Gluon LSTM forward's variants runs: the LSTM, on CUDA (sm_90), in 16 bits
GLUON_LSTM_ONLY = dict(families=("lstm",), devices=("cuda",), dtypes=("float16", "bfloat16"))

register(_triton_backend("triton-fused", _fused_input_factory,
                         "the planner's Triton LSTM with the Gluon forward's input projection fused (sm_90; "
                         "switches.GLUON_FUSED_INPUT forced on; never run on a GPU before)",
                         **GLUON_LSTM_ONLY))
register(_triton_backend("triton-tagged", _tagged_exchange_factory,
                         "the planner's Triton LSTM with the Gluon forward's state exchanged as compact tagged words "
                         "(16-bit values, the tag in a spare exponent bit) by a loader partition, no grid barrier "
                         "(sm_90; switches.GLUON_TAGGED_EXCHANGE forced on, at every H; 'auto', the planner's, "
                         "takes it in inference up to H=768)",
                         **GLUON_LSTM_ONLY))
register(_triton_backend("triton-thread-poll", _thread_poll_factory,
                         "triton-tagged with its loader's threads each polling their own words alone, no reduction "
                         "over the loader's warps (switches.GLUON_TAGGED_THREAD_POLL forced on; never run on a GPU "
                         "before)",
                         **GLUON_LSTM_ONLY))
register(_triton_backend("triton-local-gates", _local_gates_factory,
                         "triton-thread-poll with the gates split inside each warp too (W_hh's rows reordered so that a "
                         "warp's accumulator holds its units' four gates; xg loaded into registers; "
                         "switches.GLUON_LOCAL_GATES forced on; never run on a GPU before)",
                         **GLUON_LSTM_ONLY))
register(_triton_backend("triton-overlapped", _overlapped_projection_factory,
                         "the planner's Triton LSTM with the Gluon forward's input projection run beside the kernel "
                         "(GEMMs of a few steps on a second stream, each announced by a flag the kernel polls; "
                         "switches.GLUON_OVERLAPPED_PROJECTION forced on; never run on a GPU before)",
                         **GLUON_LSTM_ONLY))
register(_triton_backend("triton-inference-switches", _inference_switches_factory,
                         "the planner's Triton LSTM with the tagged exchange and every never-timed inference switch on: "
                         "its loader's threads polling alone, the gates split inside each warp, the input projection "
                         "beside the kernel (the cost model's lowest estimate at H=768 B=16; switches.tagged_exchange, "
                         "tagged_thread_poll, local_gates and overlapped_projection forced on; never run on a GPU "
                         "before)",
                         **GLUON_LSTM_ONLY))
register(_triton_backend("triton-overlapped-grads", _overlapped_gradients_factory,
                         "the planner's Triton LSTM with its backward's dx, dW_ih and dW_hh GEMMs run beside the "
                         "recurrence (ranges of finished steps on a second stream, each after a wait for the "
                         "recurrence's grid-barrier flags; float32 sums of the weight gradients; "
                         "switches.OVERLAPPED_GRADIENTS forced on; never run on a GPU before)",
                         **GLUON_LSTM_ONLY))
register(_triton_backend("triton-train-switches", _training_switches_factory,
                         "the planner's Triton LSTM with every never-timed training switch on: the Gluon backward's "
                         "streamed copies, the tagged exchange in the training forward, the backward's GEMMs and the "
                         "input projection beside the kernels (switches.streamed_copies, tagged_training, "
                         "overlapped_gradients, overlapped_projection forced on, each where it can run)",
                         **GLUON_LSTM_ONLY))
register(_triton_backend("triton-barrier", _triton_lstm_factory(tagged_exchange=False),
                         "the planner's Triton LSTM with the Gluon forward's grid barrier and TMA copies of the state "
                         "(switches.GLUON_TAGGED_EXCHANGE forced off): what the planner ran before it took the tagged "
                         "exchange in inference up to H=768",
                         **GLUON_LSTM_ONLY))
