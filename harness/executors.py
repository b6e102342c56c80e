"""Executors map "measure one case" over cases; the driver alone writes the results.

An executor's :meth:`~SerialExecutor.map` takes cases and yields ``(case, rows)`` as each case
finishes, in any order; the runner, in the driver process, appends the rows. Whatever happens to a
measurement, its case yields rows: an exception, a worker process that dies (killed, out of memory,
its node lost) becomes an ``error`` (or ``oom``) row whose note names what happened.

* ``serial`` measures one case after another in this process; a case that needs another process
  set-up than this process already has (the Triton interpreter on or off, see
  :mod:`rnnbench.harness.process`) is measured in a child process prepared for it.
* ``ray`` runs them on a Ray cluster (``pip install 'rnnbench[ray]'``): one Ray actor per GPU
  (holding the GPU and one core) measures the CUDA cases one after another, so a GPU case holds a
  whole GPU and its worker keeps its CUDA context and compiled kernels from case to case; the cases
  a report compares with each other go to one actor (:func:`comparison_groups`), and an actor is
  released when no CUDA case is left for it. CPU cases are Ray tasks; a timing case holds every
  core it pins (:func:`ray_resources`), so CPU timings never overlap each other or a GPU case's
  host thread on that node, while numerics cases pack one per core.

Ctrl-C (KeyboardInterrupt in the driver) cancels what is still queued or running when the runner
closes the iterator; every row already yielded has been written.
"""

from __future__ import annotations

import logging
import platform
import socket
from collections import deque
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator

from rnnbench.harness.cases import Case
from rnnbench.harness.children import prepared_child
from rnnbench.harness.errors import UsageError
from rnnbench.harness.experiments import get_experiment
from rnnbench.harness.measure import failure_rows, measure_case
from rnnbench.harness.process import INTERPRET_VARIABLE, can_prepare, prepare_process, process_env
from rnnbench.harness.registry import device_skip_reason
from rnnbench.harness.results import ResultRow

EXECUTORS = ("serial", "ray")
#: CPU tasks queued in Ray at once, per core of the cluster (and at least the minimum): enough to keep
#: every core busy between two rounds of results, few enough that Ctrl-C has little to cancel
CPU_WINDOW_PER_CORE = 4
CPU_WINDOW_MIN = 16
RAY_MISSING = ("--executor ray needs Ray, an optional extra: pip install 'rnnbench[ray]' "
               "(CI pins ray==2.60.0 in constraints.txt); or run with --executor serial")

Finished = Iterator[tuple[Case, list[ResultRow]]]


def measure_prepared(case: Case, run_id: str, threads: int | None = None) -> list[ResultRow]:
    """Prepare this process for ``case`` and measure it: what every worker runs, in any process."""
    prepare_process(case, threads)
    return measure_case(case, run_id)


def make_executor(name: str, ray_address: str | None = None):
    """The executor called ``name`` (``serial`` or ``ray``)."""
    if name not in EXECUTORS:
        raise UsageError(f"unknown executor {name!r}; expected one of {', '.join(EXECUTORS)}")
    if ray_address is not None and name != "ray":
        raise UsageError(f"--ray-address {ray_address!r} needs --executor ray")
    return SerialExecutor() if name == "serial" else RayExecutor(ray_address)


def _raised(case: Case, run_id: str, error: BaseException, where: str) -> list[ResultRow]:
    note = f"{where}: {type(error).__name__}: {error}".strip()[:500]
    return failure_rows(case, run_id, note)


class SerialExecutor:
    """One case after another in this process (a prepared child where this one cannot serve)."""

    name = "serial"

    def __init__(self):
        self._children = {}

    def start(self) -> None:
        """Nothing to start for a serial run."""

    def device_problem(self, device: str) -> str | None:
        """Why no case on ``device`` can run here, or None."""
        return device_skip_reason(device)

    def check(self, cases: list[Case]) -> None:
        """Nothing to check before a serial run."""

    def describe(self) -> dict:
        return {"executor": self.name}

    def map(self, cases: Iterable[Case], run_id: str) -> Finished:
        for case in cases:
            yield case, self._measure(case, run_id)

    def close(self) -> None:
        for pool in self._children.values():
            pool.shutdown(cancel_futures=True)
        self._children.clear()

    def _measure(self, case: Case, run_id: str) -> list[ResultRow]:
        if can_prepare(case):
            try:
                return measure_prepared(case, run_id)
            except Exception as error:  # measure_case records a failing backend itself; this is the rest
                return _raised(case, run_id, error, "measuring raised")
        environment = process_env(case)
        key = tuple(sorted(environment.items()))
        if key not in self._children:
            self._children[key] = prepared_child(environment)
        try:
            return self._children[key].submit(measure_prepared, case, run_id).result()
        except BrokenProcessPool as error:
            self._children.pop(key).shutdown()
            rows = _raised(case, run_id, error, f"the child process measuring it (environment {environment}) died")
            return [replace(row, host=platform.node()) for row in rows]
        except Exception as error:
            return _raised(case, run_id, error, "measuring raised")


@dataclass(frozen=True)
class Cluster:
    """What the scheduling needs to know about a Ray cluster."""

    largest_node_cpus: int
    cpus: int
    gpus: int
    nodes: int


def ray_resources(case: Case, cluster: Cluster) -> dict:
    """Ray resources of a CPU task measuring ``case``: a timing case (its experiment is ``timed``)
    holds the cores it pins (``timing.threads``, else every core of the largest node) so that no
    other case runs beside it; any other case holds one core. CUDA cases go to a GPU actor, unless
    the cluster has no GPU and they are only recorded as skipped."""
    if case.device == "cpu" and get_experiment(case.experiment).timed:
        cores = case.timing.threads or cluster.largest_node_cpus
        if cores > cluster.largest_node_cpus:
            raise UsageError(f"timing.threads = {cores}, but the largest node of the Ray cluster has "
                             f"{cluster.largest_node_cpus} CPUs")
        return {"num_cpus": cores, "num_gpus": 0}
    return {"num_cpus": 1, "num_gpus": 0}


def comparison_groups(cases: list[Case]) -> list[deque]:
    """``cases`` grouped by everything but backend and experiment, in order of first appearance:
    the cases a report compares with each other (a speedup is one backend's latency over
    another's at the same shape, dtype and mode), which one GPU actor measures back to back so
    that they share a GPU, and its float64 reference is computed once."""
    groups: dict[tuple, deque] = {}
    for case in cases:
        key = tuple(value for name, value in case.identity().items() if name not in ("backend", "experiment"))
        groups.setdefault(key, deque()).append(case)
    return list(groups.values())


def _runtime_env(environment: dict[str, str]) -> dict:
    """A Ray runtime environment with ``environment`` set; when this rnnbench is a checkout rather
    than an installed package, workers import it from the same checkout (``PYTHONPATH``)."""
    import rnnbench

    root = Path(rnnbench.__file__).resolve().parent.parent
    checkout = {"PYTHONPATH": str(root)} if (root / "harness" / "__init__.py").is_file() else {}
    return {"env_vars": {**environment, **checkout}}


class RayExecutor:
    """Cases on a Ray cluster: ``address`` as for ``ray.init`` (None: the cluster this process is
    already connected to, the one ``RAY_ADDRESS`` names, or a new local one)."""

    name = "ray"

    def __init__(self, address: str | None = None):
        try:
            import ray
        except ImportError:
            raise UsageError(RAY_MISSING) from None
        self._ray = ray
        self.address = address
        self._started_here = False
        self.cluster = Cluster(0, 0, 0, 0)
        self._task = ray.remote(max_retries=0)(measure_prepared)
        self._gpu_worker = ray.remote(num_gpus=1, num_cpus=1, max_restarts=0, max_task_retries=0)(GpuWorker)
        self._actors: list = []
        #: what each GPU actor has left of the comparison group it is measuring
        self._gpu_work: dict = {}
        self._in_flight: dict = {}

    def start(self) -> None:
        """Connect to the cluster (or start a local one) and see what it holds."""
        ray = self._ray
        if not ray.is_initialized():
            _refuse_unreachable(self.address)
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
            except (ConnectionError, ValueError, RuntimeError) as error:
                raise UsageError(f"cannot connect to the Ray cluster at {self.address!r}: {error}") from None
            self._started_here = True
        nodes = [node for node in ray.nodes() if node.get("Alive")]
        self.cluster = Cluster(
            largest_node_cpus=max((int(node["Resources"].get("CPU", 0)) for node in nodes), default=0),
            cpus=int(sum(node["Resources"].get("CPU", 0) for node in nodes)),
            gpus=int(sum(node["Resources"].get("GPU", 0) for node in nodes)),
            nodes=len(nodes),
        )

    def device_problem(self, device: str) -> str | None:
        if device == "cuda" and self.cluster.gpus == 0:
            return f"the Ray cluster ({self.cluster.nodes} nodes) has no GPU"
        return None

    def check(self, cases: list[Case]) -> None:
        """Refuse, before anything runs, a case the cluster could never schedule."""
        if self.cluster.largest_node_cpus < 1:
            raise UsageError("the Ray cluster has no CPU to run cases on")
        for case in cases:
            ray_resources(case, self.cluster)

    def describe(self) -> dict:
        return {"executor": self.name, "ray": {"address": self.address, "version": self._ray.__version__,
                                               "nodes": self.cluster.nodes, "cpus": self.cluster.cpus,
                                               "gpus": self.cluster.gpus}}

    def map(self, cases: Iterable[Case], run_id: str) -> Finished:
        ray = self._ray
        cases = list(cases)
        groups = deque(comparison_groups([case for case in cases if self._on_gpu(case)]))
        cpu_cases = deque(case for case in cases if not self._on_gpu(case))
        window = max(CPU_WINDOW_MIN, CPU_WINDOW_PER_CORE * self.cluster.cpus)
        cpu_in_flight = 0
        try:
            for _ in range(min(self.cluster.gpus, len(groups))):
                self._dispatch_gpu(self._new_gpu_actor(), groups, run_id)
            while cpu_cases or self._in_flight:
                while cpu_cases and cpu_in_flight < window:
                    case = cpu_cases.popleft()
                    resources = ray_resources(case, self.cluster)
                    environment = process_env(case, cuda_available=self.cluster.gpus > 0)
                    task = self._task.options(**resources, runtime_env=_runtime_env(environment))
                    self._in_flight[task.remote(case, run_id, resources["num_cpus"])] = (case, None)
                    cpu_in_flight += 1
                ray.wait(list(self._in_flight), num_returns=1)
                ready, _ = ray.wait(list(self._in_flight), num_returns=len(self._in_flight), timeout=0)
                for done in ready:
                    case, actor = self._in_flight.pop(done)
                    rows, worker_died = self._collect(done, case, run_id)
                    if actor is None:
                        cpu_in_flight -= 1
                    else:
                        self._dispatch_gpu(self._replace_actor(actor) if worker_died else actor, groups, run_id)
                    yield case, rows
        finally:
            self._cancel()

    def _dispatch_gpu(self, actor, groups: deque, run_id: str) -> None:
        """Give ``actor`` the next case of its group, or the next group; release it if none is left
        (its CPU may be what a CPU timing case waits for)."""
        work = self._gpu_work.get(actor)
        if not work and groups:
            work = self._gpu_work[actor] = groups.popleft()
        if not work:
            self._release_actor(actor)
            return
        case = work.popleft()
        self._in_flight[actor.measure.remote(case, run_id)] = (case, actor)

    def close(self) -> None:
        self._cancel()
        if self._started_here:
            self._ray.shutdown()
            self._started_here = False

    def _on_gpu(self, case: Case) -> bool:
        return case.device == "cuda" and self.cluster.gpus > 0

    def _new_gpu_actor(self):
        # every CUDA case runs without the Triton interpreter, set before the actor imports anything
        actor = self._gpu_worker.options(runtime_env=_runtime_env({INTERPRET_VARIABLE: "0"})).remote()
        self._actors.append(actor)
        return actor

    def _replace_actor(self, actor):
        """A new actor in place of a dead one, taking over the rest of its group."""
        work = self._gpu_work.pop(actor, deque())
        self._release_actor(actor)
        replacement = self._new_gpu_actor()
        self._gpu_work[replacement] = work
        return replacement

    def _release_actor(self, actor) -> None:
        self._gpu_work.pop(actor, None)
        self._actors.remove(actor)
        self._ray.kill(actor)

    def _collect(self, ref, case: Case, run_id: str) -> tuple[list[ResultRow], bool]:
        """The rows of a finished measurement and whether its worker died."""
        ray = self._ray
        try:
            return ray.get(ref), False
        except ray.exceptions.RayTaskError as error:
            return _raised(case, run_id, error.cause or error, "measuring raised"), False
        except ray.exceptions.OutOfMemoryError as error:
            note = f"the Ray worker measuring it was killed for lack of memory: {_first_line(error)}"
            return failure_rows(case, run_id, note[:500], status="oom"), True
        except ray.exceptions.RayError as error:
            note = f"the Ray worker measuring it died ({type(error).__name__}): {_first_line(error)}"
            return failure_rows(case, run_id, note[:500]), True

    def _cancel(self) -> None:
        for ref, (_, actor) in list(self._in_flight.items()):
            if actor is None:
                self._ray.cancel(ref, force=True)
        self._in_flight.clear()
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors.clear()
        self._gpu_work.clear()


class GpuWorker:
    """A Ray actor holding one GPU for a run: measures CUDA cases one after another."""

    def measure(self, case: Case, run_id: str) -> list[ResultRow]:
        return measure_prepared(case, run_id, threads=1)


#: seconds to wait for a TCP connection to a cluster's address before calling it unreachable
CONNECT_TIMEOUT_S = 5.0


def _refuse_unreachable(address: str | None) -> None:
    """Refuse a ``HOST:PORT`` address nothing answers on (Ray itself retries for minutes)."""
    host, _, port = (address or "").rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise UsageError(f"cannot connect to the Ray cluster at {address!r}: {error.strerror or error}") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
