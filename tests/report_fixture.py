"""A small synthetic results directory covering every experiment and figure of the report.

Written with the harness's own writer (:class:`rnnbench.harness.results.ResultsFile`), so the rows
are exactly what a run would append. The numbers are made up (seeded) with plausible shapes: latency
grows with T, B and H; accuracy falls with the dependency distance; gradient norms decay with distance.
Nothing is measured.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from rnnbench.harness.cases import Case
from rnnbench.harness.results import ResultRow, ResultsFile

RUN_ID = "20260101T000000Z-fixture"
GPU = "NVIDIA H100 80GB HBM3"
SEQ_LENS = (64, 256, 1024)
BATCHES = (1, 16)
HIDDEN = (64, 256)
SPEED_BACKENDS = ("torch", "triton", "eager")
TASKS = {"adding": "mse", "copy": "accuracy", "text": "bpc"}
ENCODERS = (("torch", "lstm"), ("torch", "rnn"), ("bow", "bow"), ("cnn", "cnn"))
DELAYS = (10, 50, 200)
SEEDS = (0, 1)


def env_run(suite: str = "fixture", gpu_name: str = GPU) -> dict:
    return {
        "run_id": RUN_ID, "suite": suite, "device": "cuda", "started_utc": "2026-01-01T00:00:00+00:00",
        "git_sha": "0" * 40, "git_dirty": False, "python": "3.11.7", "platform": "Linux", "torch": "2.13.0",
        "triton": "3.9.0", "numpy": "2.4.6", "cpu_model": "Fixture CPU", "cpu_count": 2, "torch_threads": 2,
        "cuda": "12.8", "cudnn": 91000, "gpu": {"name": gpu_name, "capability": "9.0", "multiprocessors": 132,
                                                 "memory_gib": 79.1, "driver": "570.00"},
        "tf32": {"cudnn.allow_tf32": True, "cuda.matmul.allow_tf32": False}, "speedup_baseline": "torch",
    }


def write_env(directory: Path, runs: list[dict]) -> None:
    (directory / "env.json").write_text(json.dumps({"runs": runs}, indent=2) + "\n")


def make_case(experiment: str, backend: str, family: str, *, task: str = "random", dtype: str = "bfloat16",
          batch: int = 16, seq_len: int = 256, hidden: int = 64, mode: str = "fwd", seed: int = 0,
          params: dict | None = None) -> Case:
    return Case(experiment=experiment, task=task, backend=backend, family=family, device="cuda", dtype=dtype,
                batch=batch, seq_len=seq_len, input_size=hidden, hidden_size=hidden, mode=mode, seed=seed,
                params=params or {})


def make_row(case: Case, metric: str, value: float, unit: str, *, spread: float = 0.0, n: int = 1, status: str = "ok",
         note: str = "") -> ResultRow:
    row = ResultRow.measured(case, RUN_ID, metric, value, unit, q25=value * (1 - spread), q75=value * (1 + spread),
                             n=n, status=status, note=note)
    return ResultRow(**{**row.__dict__, "host": "fixture-host", "device_name": GPU})


def speed_and_memory_rows(rng: np.random.Generator, backends=SPEED_BACKENDS, slowdown: float = 1.0) -> list[ResultRow]:
    """Speed (latency, latency_cudagraph), memory and the correctness gate rows they write."""
    rows = []
    cost = {"torch": 1.0, "triton": 0.6, "eager": 4.0}
    memory_cost = {"torch": 1.0, "triton": 0.8, "eager": 1.5}
    for backend in backends:
        for family in ("rnn", "lstm"):
            for mode in ("fwd", "fwd_bwd"):
                for batch in BATCHES:
                    for hidden in HIDDEN:
                        for seq_len in SEQ_LENS:
                            base = cost.get(backend, 2.0) * seq_len * (1 + batch / 16) * (hidden / 64) ** 1.5 * 2e-3
                            base *= (4 if family == "lstm" else 1) * (3 if mode == "fwd_bwd" else 1) * slowdown
                            latency = base * (1 + 0.02 * rng.standard_normal())
                            speed = make_case("speed", backend, family, batch=batch, seq_len=seq_len, hidden=hidden, mode=mode)
                            rows.append(make_row(speed.with_experiment("numerics"), "max_abs_err", 1e-3 * rng.random(), "",
                                             note="vs torch float64 on cuda"))
                            rows.append(make_row(speed, "latency", latency, "ms", spread=0.03, n=50, note="do_bench"))
                            if backend == "eager":
                                rows.append(ResultRow.missing(speed, RUN_ID, "latency_cudagraph", "ms", "error",
                                                              "graph capture failed: RuntimeError: capture"))
                            else:
                                rows.append(make_row(speed, "latency_cudagraph", latency * 0.8, "ms", spread=0.01, n=10))
                        memory = make_case("memory", backend, family, batch=batch, seq_len=1024, hidden=hidden, mode=mode)
                        # the memory case's gate writes the same numerics row as the speed case's gate
                        rows.append(make_row(memory.with_experiment("numerics"), "max_abs_err", 1e-3 * rng.random(), "",
                                         note="vs torch float64 on cuda"))
                        peak = memory_cost.get(backend, 1.0) * 0.5 * batch * hidden * (2 if mode == "fwd_bwd" else 1)
                        rows.append(make_row(memory, "peak_memory", peak, "MiB"))
    return rows


def numerics_rows(rng: np.random.Generator) -> list[ResultRow]:
    """A failed correctness check, a skipped case and the error along the sequence."""
    rows = []
    failing = make_case("numerics", "triton", "lstm", dtype="float16", mode="fwd_bwd")
    rows.append(make_row(failing, "max_abs_err", 0.5, "", status="incorrect", note="worst dw_hh: 3.1 of tolerance"))
    skipped = make_case("speed", "eager", "rnn", dtype="float16", seq_len=4096)
    rows.append(ResultRow.missing(skipped, RUN_ID, "latency", "ms", "skipped", "not in this fixture's budget"))
    for backend in ("torch", "triton"):
        for dtype in ("bfloat16", "float16"):
            case = make_case("numerics", backend, "lstm", dtype=dtype, seq_len=1024)
            for t in (1, 8, 64, 256, 1024):
                for metric, scale in (("err_p50", 1.0), ("err_p99", 4.0), ("err_max", 9.0)):
                    value = scale * 1e-3 * math.sqrt(t) * (2 if dtype == "bfloat16" else 1) * (1 + 0.1 * rng.random())
                    rows.append(make_row(Case(**{**case.__dict__, "params": {"t": t}}), metric, value, ""))
    return rows


def accuracy_rows(rng: np.random.Generator, task_names: dict[str, str] = TASKS) -> list[ResultRow]:
    """What the accuracy experiment writes: task metrics, the ``distance`` row, chance baselines as
    ``baseline:chance:<metric>`` rows of the same case, training throughput, wall time and loss
    curves (``train_loss`` with the step in params); the copy task also at a second forget-gate
    bias, a knob that is not the distance."""
    rows = []
    for task, metric in task_names.items():
        unit = {"mse": "squared target units", "accuracy": "fraction", "bpc": "bits per character"}[metric]
        for delay in DELAYS:
            chance = {"mse": 1 / 6, "accuracy": 0.125, "bpc": 4.5}[metric]
            for seed in SEEDS:
                for backend, family in ENCODERS:
                    for forget_bias in ((1.0, 5.0) if task == "copy" and family == "lstm" else (1.0,)):
                        case = make_case("accuracy", backend, family, task=task, seq_len=delay, seed=seed, dtype="float32",
                                         params={"delay": delay, "forget_bias": forget_bias})
                        case = Case(**{**case.__dict__, "mode": "train"})
                        skill = {"lstm": 0.95, "rnn": 0.6, "bow": 0.2, "cnn": 0.5}[family] * math.exp(-delay / 400)
                        skill = min(max(skill + 0.03 * rng.standard_normal(), 0.0), 1.0)
                        value = chance + (1 - chance) * skill if metric == "accuracy" else chance * (1 - 0.9 * skill)
                        rows.append(make_row(case, metric, value, unit))
                        rows.append(make_row(case, "distance", delay + 10, "steps"))
                        rows.append(make_row(case, f"baseline:chance:{metric}", chance, unit))
                        throughput = {"lstm": 800, "rnn": 1500, "bow": 20000, "cnn": 9000}[family] * (1 + 0.05 * rng.random())
                        rows.append(make_row(case, "train_throughput", throughput, "sequences/s"))
                        rows.append(make_row(case, "train_wall_time", 2000 / throughput, "s"))
                        for step in (0, 100, 200, 300, 400):
                            loss = 2.0 * math.exp(-step * skill / 150) + 0.05 * rng.random()
                            at_step = Case(**{**case.__dict__, "params": {**case.param_dict, "step": step}})
                            rows.append(make_row(at_step, "train_loss", loss, ""))
    return rows


def gradient_rows(rng: np.random.Generator) -> list[ResultRow]:
    rows = []
    for family in ("rnn", "lstm"):
        for trained in (False, True):
            for seed in SEEDS:
                for distance in (1, 4, 16, 64, 256):
                    case = make_case("gradient", "torch", family, task="adding", seq_len=256, seed=seed, dtype="float32",
                                 params={"distance": distance, "trained": trained})
                    decay = (0.9 if family == "rnn" else 0.995) ** distance * (3 if trained else 1)
                    rows.append(make_row(case, "grad_norm_h", decay * (1 + 0.1 * rng.random()), ""))
                    if family == "lstm":
                        rows.append(make_row(case, "grad_norm_c", decay * 1.5 * (1 + 0.1 * rng.random()), ""))
    return rows


def write_fixture(directory: Path, *, suite: str = "fixture", slowdown: float = 1.0, extra: list[ResultRow] = (),
                  gpu_name: str = GPU) -> Path:
    """Write the complete fixture (every experiment) into ``directory``; returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = speed_and_memory_rows(rng, slowdown=slowdown) + numerics_rows(rng) + accuracy_rows(rng) + gradient_rows(rng)
    ResultsFile(directory).append(rows + list(extra))
    write_env(directory, [env_run(suite, gpu_name)])
    return directory


def write_rows(directory: Path, rows: list[ResultRow], runs: list[dict] | None = None) -> Path:
    """A results directory holding only ``rows`` (and one fixture run in env.json unless ``runs``)."""
    directory.mkdir(parents=True, exist_ok=True)
    ResultsFile(directory).append(rows)
    write_env(directory, [env_run()] if runs is None else runs)
    return directory


def hostile_rows(name: str) -> list[ResultRow]:
    """Rows whose backend, task and note are ``name``."""
    speed = make_case("speed", name, "lstm")
    return [make_row(speed, "latency", 1.0, "ms", spread=0.01, n=5, note=name),
            make_row(make_case("accuracy", name, "lstm", task=name, dtype="float32", params={"delay": 10}), "accuracy", 0.5,
                 "fraction", note=name),
            ResultRow.missing(make_case("speed", name, "rnn"), RUN_ID, "latency", "ms", "skipped", name)]
