"""asv benchmark of what the runner itself costs per case, besides measuring: planning, handing the
case to the executor, collecting its rows and appending them (one write and fsync per case).

The cases do nothing: NumPy on ``cuda`` is skipped the moment it is looked at, on every machine
(recorded with ``record_skips``, since a machine without CUDA would otherwise refuse the run). The
cost per case is the difference between a long and a short run divided by the difference in cases,
which cancels what is paid once per run (the lock, the fingerprint, env.json); a first, untimed run
starts the executor's workers, and Ray's cluster is started once for both runs.
"""

from __future__ import annotations

import shutil
import tempfile
import time

from asv_runner.benchmarks.mark import SkipNotImplemented

from rnnbench.harness.executors import make_executor
from rnnbench.harness.runner import run_suite
from rnnbench.harness.suites import parse_suite

SHORT_RUN, LONG_RUN = 50, 250


def no_op_suite(cases: int):
    """``cases`` cases that are skipped as soon as they are measured."""
    return parse_suite("driver-overhead", {"cases": [{
        "experiments": ["speed"], "backends": ["numpy"], "families": ["rnn"], "device": "cuda", "modes": ["fwd"],
        "seq_len": list(range(1, cases + 1)), "batch": [1], "hidden_size": [4],
    }]})


def run_seconds(executor_name: str, cases: int) -> float:
    """Wall time of running :func:`no_op_suite` with ``cases`` cases into a fresh directory, in s."""
    out = tempfile.mkdtemp(prefix="rnnbench-driver-")
    try:
        started = time.perf_counter()
        run_suite(no_op_suite(cases), out, progress=False, executor=make_executor(executor_name), record_skips=True)
        return time.perf_counter() - started
    finally:
        shutil.rmtree(out, ignore_errors=True)


def overhead_per_case_ms(executor_name: str, short: int = SHORT_RUN, long: int = LONG_RUN) -> float:
    """The runner's cost per case in ms: (long run - short run) / (long - short), after a warm-up run."""
    run_seconds(executor_name, short)
    return (run_seconds(executor_name, long) - run_seconds(executor_name, short)) * 1e3 / (long - short)


class DriverOverhead:
    params = ["serial", "ray"]
    param_names = ["executor"]
    unit = "ms"
    timeout = 300
    number = 1
    repeat = 1

    def setup(self, executor):
        if executor == "ray":
            try:
                import ray
            except ImportError:
                raise SkipNotImplemented("the ray executor needs Ray: pip install 'rnnbench[ray]'") from None
            ray.init(include_dashboard=False, log_to_driver=False)

    def teardown(self, executor):
        if executor == "ray":
            import ray

            ray.shutdown()

    def track_overhead_per_case_ms(self, executor):
        return overhead_per_case_ms(executor)
