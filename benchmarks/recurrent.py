"""asv benchmarks of the recurrent backends, for regression tracking across commits.

Thin wrappers over the harness: workloads come from :func:`rnnbench.harness.backends.build_workload`, which
backends can run from :meth:`rnnbench.harness.registry.Backend.skip_reason`, and GPU timing from
:func:`rnnbench.harness.timing.cuda_latency`. The parameter grids are the same on every machine; a
combination that cannot run here (Triton on CPU, anything on CUDA without a GPU) raises
``SkipNotImplemented`` and shows as ``n/a``. Every workload passes the harness's correctness gate
(:func:`rnnbench.harness.correctness.check_correctness`) before it is timed; one that fails raises
in ``setup``, so asv reports the benchmark as failed instead of timing a wrong answer.

Names: CPU host timings are ``time_*`` (asv's own timer), GPU latencies ``track_*`` in ms (CUDA
events); both grids exist on every machine, so results from any machine line up by name.

Every timed call is one whole ``workload.callable(mode)()``: ``fwd`` is an inference forward pass
(no autograd graph), ``fwd_bwd`` a forward pass with autograd plus the backward pass producing the
gradients of the input, the initial states and every parameter. Both include the input projection
``W_ih x`` for all time steps. Layout is time-major, ``x (T, B, I)``.
"""

from __future__ import annotations

from asv_runner.benchmarks.mark import SkipNotImplemented

from rnnbench.harness.cases import Case, TimingOptions
from rnnbench.harness.backends import build_workload, get_backend
from rnnbench.harness.correctness import check_correctness
from rnnbench.harness.process import apply_thread_limit
from rnnbench.harness.timing import cuda_latency

FAMILIES = ("rnn", "lstm")
MODES = ("fwd", "fwd_bwd")

#: small enough that every CPU backend finishes a call in milliseconds
CPU_SHAPE = {"seq_len": 64, "batch": 8, "input_size": 64, "hidden_size": 64}
CPU_DTYPE = "float32"
#: one thread: on shared CI runners multi-threaded timings of small shapes mostly measure the load
CPU_THREADS = 1
#: triton is timed only on CUDA (the registry's timed_devices), so it is n/a here on every machine;
#: listed so the CPU grid names the same backends as the GPU one
CPU_BACKENDS = ("numpy", "eager", "torch", "triton")

#: one point of the gpu-core suite's grid (T=1024, B=16, H=256, bf16)
CUDA_SHAPE = {"seq_len": 1024, "batch": 16, "input_size": 256, "hidden_size": 256}
CUDA_DTYPE = "bfloat16"
CUDA_BACKENDS = ("torch", "triton", "eager")


class IncorrectWorkload(AssertionError):
    """The workload failed the correctness gate, so it is not timed."""


def runnable_call(backend: str, family: str, mode: str, device: str, dtype: str, shape: dict[str, int]):
    """The zero-argument function the harness would time for this case, after the case passed the
    harness's correctness gate; ``SkipNotImplemented`` with the registry's reason when the backend
    cannot run it on this machine, :class:`IncorrectWorkload` when it fails the gate."""
    case = Case(experiment="speed", task="random", backend=backend, family=family, device=device,
                dtype=dtype, mode=mode, seed=0, **shape)
    reason = get_backend(backend).skip_reason(family, device, dtype, timed=True)
    if reason is not None:
        raise SkipNotImplemented(reason)
    workload = build_workload(case)
    check, note = check_correctness(case, workload)
    if not check.passed:
        raise IncorrectWorkload(f"{case.label}: failed the correctness gate, not timed ({note})")
    return workload.callable(mode)


class RecurrentCPU:
    """Host wall-clock time of one call on CPU, float32, T=64, B=8, I=H=64, one thread.

    asv times the call with its own timer (``time.perf_counter``), so a sample includes Python
    overhead and allocation of outputs as well as the input projection. One untimed call in
    ``setup`` keeps first-call work out, also under ``--quick``.
    """

    params = (CPU_BACKENDS, FAMILIES, MODES)
    param_names = ("backend", "family", "mode")

    def setup(self, backend: str, family: str, mode: str):
        apply_thread_limit(CPU_THREADS)
        self.call = runnable_call(backend, family, mode, "cpu", CPU_DTYPE, CPU_SHAPE)
        # untimed, as in the harness: the first backward of a process starts autograd's engine (~0.25 s)
        self.call()

    def time_workload(self, backend: str, family: str, mode: str):
        self.call()


class RecurrentCUDA:
    """GPU latency of one call on CUDA, bfloat16, T=1024, B=16, I=H=256, in milliseconds.

    Median of :func:`rnnbench.harness.timing.cuda_latency` samples with default :class:`TimingOptions`:
    CUDA events around each call, L2 flushed before every sample, host launch overhead included
    where the GPU waits for the host. First-call work (Triton compilation, cuDNN plan selection) is
    excluded. Skipped when CUDA is not available.
    """

    params = (CUDA_BACKENDS, FAMILIES, MODES)
    param_names = ("backend", "family", "mode")
    unit = "ms"
    #: Triton compiles its kernels on the first call, and eager runs a Python loop over 1024 steps
    timeout = 300

    def setup(self, backend: str, family: str, mode: str):
        self.call = runnable_call(backend, family, mode, "cuda", CUDA_DTYPE, CUDA_SHAPE)

    def track_cuda_latency_ms(self, backend: str, family: str, mode: str) -> float:
        return cuda_latency(self.call, TimingOptions()).median_ms
