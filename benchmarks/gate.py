"""CI performance-regression gate: this checkout against its parent commit, on the same machine.

    python -m benchmarks.gate [--base REF] [--threshold 0.25] [--out DIR]
    python -m benchmarks.gate --aa --trials 30          # false-alarm rate on identical code
    python -m benchmarks.gate --aa --plant 1.5          # a planted 1.5x slowdown must fail

Method. The parent (``--base``, default ``HEAD^``) is exported with ``git archive`` into a temporary
folder; two worker processes (:mod:`benchmarks.gate_worker`, from this checkout) import ``rnnbench``
one from each tree and build the :data:`BENCHMARKS` (CPU, float32, T=64, B=8, I=H=64, one thread).
Then :data:`ROUNDS` rounds: in each, every benchmark is timed for one block of calls (about
:data:`BLOCK_S` seconds) on each side, the side that goes first alternating from round to round, so
load on the machine hits both sides alike. A sample is the mean time per call of one block.

Decision (the same rule as ``rnnbench compare``, which judges it): a benchmark regresses when the
median of NEW is more than ``1 + threshold`` times BASE's and the two interquartile ranges do not
overlap. Every benchmark that regresses is measured again from scratch (new worker processes, new
rounds); the gate fails only if the re-measurement regresses too. The samples of the final measurement are written as two
results directories (``base/``, ``new/``) and rendered as a comparison under ``--out``.

Exit status: 0 when nothing regressed or the gate is skipped (no parent commit in this clone — a
shallow clone or the first commit —, or a parent that cannot build the benchmarks because it
predates them), with the reason printed; 1 on a confirmed regression or when this checkout cannot
build the benchmarks; 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import select
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rnnbench.harness.cases import Case
from rnnbench.harness.results import ResultRow, ResultsFile

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "gate_worker.py"

#: (backend, family, mode): the implementations this repository owns (NumPy BPTT, the eager loop)
#: plus torch.nn as a control
BENCHMARKS = (
    ("numpy", "lstm", "fwd"),
    ("numpy", "lstm", "fwd_bwd"),
    ("numpy", "rnn", "fwd_bwd"),
    ("eager", "lstm", "fwd"),
    ("torch", "lstm", "fwd_bwd"),
)
SHAPE = {"seq_len": 64, "batch": 8, "input_size": 64, "hidden_size": 64}
DTYPE = "float32"
#: a slowdown by more than this fraction (with non-overlapping IQRs, twice) fails the gate
THRESHOLD = 0.25
ROUNDS = 25
BLOCK_S = 0.08
REPLY_TIMEOUT_S = 300


class Skip(Exception):
    """The gate cannot judge this commit (the message says why); CI passes."""


class Broken(Exception):
    """This checkout cannot run the gate's benchmarks; CI fails."""


class Worker:
    """A :mod:`benchmarks.gate_worker` process timing the benchmarks on one tree."""

    def __init__(self, tree: Path, plant: float):
        self.tree = tree
        self.process = subprocess.Popen([sys.executable, str(WORKER), str(tree)], cwd=tree, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.plant = plant

    def request(self, message: dict) -> dict:
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        # one reply line per request, so nothing waits in the pipe's buffer between requests
        if not select.select([self.process.stdout], [], [], REPLY_TIMEOUT_S)[0]:
            self.process.kill()
            raise RuntimeError(f"the gate worker for {self.tree} did not answer within {REPLY_TIMEOUT_S} s")
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the gate worker for {self.tree} exited with status {self.process.wait()}")
        return json.loads(line)

    def setup(self) -> str | None:
        """Build the benchmarks; the error when the tree cannot."""
        reply = self.request({"setup": [list(b) for b in BENCHMARKS], "shape": SHAPE, "dtype": DTYPE, "plant": self.plant})
        return reply.get("error")

    def time(self, index: int, calls: int) -> float:
        return self.request({"time": index, "calls": calls})["seconds"]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Measurement:
    """Samples (seconds per call) per side and benchmark index."""

    base: dict[int, list[float]] = field(default_factory=dict)
    new: dict[int, list[float]] = field(default_factory=dict)


def measure(base: Worker, new: Worker, indices: list[int], rounds: int) -> Measurement:
    """Interleaved blocks: per round and benchmark one block on each side, alternating who goes first."""
    calls = {}
    for index in indices:
        one = min(base.request({"calibrate": index})["seconds"], new.request({"calibrate": index})["seconds"])
        calls[index] = max(1, round(BLOCK_S / max(one, 1e-6)))
    result = Measurement({i: [] for i in indices}, {i: [] for i in indices})
    for round_index in range(rounds):
        for index in indices:
            order = ((base, result.base), (new, result.new))
            for worker, samples in order if round_index % 2 == 0 else order[::-1]:
                samples[index].append(worker.time(index, calls[index]))
    return result


def write_side(directory: Path, samples: dict[int, list[float]], label: str, revision: str) -> Path:
    """``samples`` as a results directory (``latency`` rows in ms) that ``rnnbench compare`` reads."""
    from rnnbench.harness.env import cpu_model

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.csv").unlink(missing_ok=True)
    rows = []
    for index, seconds in sorted(samples.items()):
        backend, family, mode = BENCHMARKS[index]
        case = Case(experiment="speed", task="random", backend=backend, family=family, device="cpu", dtype=DTYPE,
                    mode=mode, seed=0, **SHAPE)
        ms = np.asarray(seconds) * 1e3
        q25, median, q75 = np.percentile(ms, [25, 50, 75])
        row = ResultRow.measured(case, f"gate-{label}", "latency", median, "ms", q25=q25, q75=q75, n=len(ms),
                                 note=f"perf gate, {label}: mean per call of interleaved blocks")
        rows.append(ResultRow(**{**row.__dict__, "host": platform.node(), "device_name": cpu_model()}))
    ResultsFile(directory).append(rows)
    env = {"run_id": f"gate-{label}", "suite": f"perf-gate {label}", "device": "cpu", "git_sha": revision,
           "cpu_model": cpu_model(), "python": platform.python_version(), "speedup_baseline": None}
    (directory / "env.json").write_text(json.dumps({"runs": [env]}, indent=2) + "\n")
    return directory


def judge(base_dir: Path, new_dir: Path, threshold: float):
    from rnnbench.harness.report import load
    from rnnbench.harness.report.compare import compare

    return compare(load(base_dir), load(new_dir), threshold)


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    except OSError as error:
        raise Skip(f"git cannot run here: {error}") from None
    if done.returncode != 0:
        raise Skip(f"git {' '.join(args)} failed: {done.stderr.strip() or done.returncode}")
    return done.stdout.strip()


def export_revision(ref: str, into: Path) -> tuple[Path, str]:
    """``ref``'s tree exported into ``into`` (no worktree is registered); returns it and the sha."""
    try:
        sha = _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except Skip:
        raise Skip(f"{ref} is not in this clone (a shallow clone or the first commit): nothing to compare against") from None
    archive = subprocess.run(["git", "archive", "--format=tar", sha], cwd=ROOT, capture_output=True)
    if archive.returncode != 0:
        raise Skip(f"git archive {sha} failed: {archive.stderr.decode(errors='replace').strip()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into, sha


def measure_fresh(base_tree: Path, base_label: str, plant: float, indices: list[int], rounds: int) -> Measurement:
    """Start a worker per side, build the benchmarks, measure ``indices`` interleaved, stop them.

    Fresh processes for every measurement: a process's memory layout can make it a few percent
    faster or slower for its whole life, so a re-measurement in the same processes would repeat
    that bias instead of testing it."""
    base, new = Worker(base_tree, 1.0), Worker(ROOT, plant)
    try:
        error = new.setup()
        if error:
            raise Broken(f"this checkout cannot build the gate's benchmarks: {error}")
        error = base.setup()
        if error:
            raise Skip(f"the base revision {base_label} cannot build the gate's benchmarks (it predates them?): {error}")
        return measure(base, new, indices, rounds)
    finally:
        base.close()
        new.close()


def run_gate(base_tree: Path, base_label: str, threshold: float, plant: float, out: Path, rounds: int = ROUNDS,
             quiet: bool = False) -> tuple[int, str]:
    """Measure, re-measure the suspects, judge; returns (exit status, one-line summary)."""
    say = (lambda *a: None) if quiet else print
    first = measure_fresh(base_tree, base_label, plant, list(range(len(BENCHMARKS))), rounds)
    comparison = judge(write_side(out / "base", first.base, "base", base_label),
                       write_side(out / "new", first.new, "new", "working tree"), threshold)
    suspects = [i for i, b in enumerate(BENCHMARKS) if _verdict(comparison, b) == "regression"]
    first_largest = comparison.pairs.ratio.max()
    final = first
    if suspects:
        say(f"perf gate: {len(suspects)} suspected regression(s); measuring them again in fresh processes")
        again = measure_fresh(base_tree, base_label, plant, suspects, rounds)
        final = Measurement({**first.base, **again.base}, {**first.new, **again.new})
    base_dir = write_side(out / "base", final.base, "base", base_label)
    new_dir = write_side(out / "new", final.new, "new", "working tree")
    comparison = judge(base_dir, new_dir, threshold)
    confirmed = [i for i in suspects if _verdict(comparison, BENCHMARKS[i]) == "regression"]
    _render(comparison, base_dir, new_dir, out)
    say(_table(comparison))
    named = ", ".join(f"{' '.join(BENCHMARKS[i])} {_ratio(comparison, BENCHMARKS[i]):.2f}x" for i in confirmed)
    summary = (f"{len(confirmed)} confirmed regression(s) beyond {threshold:.0%}{': ' + named if named else ''} "
               f"({len(suspects)} suspected in the first measurement; its largest NEW/BASE {first_largest:.3f})")
    return (1 if confirmed else 0), summary


def _pair(comparison, benchmark: tuple[str, str, str]):
    backend, family, mode = benchmark
    pairs = comparison.pairs
    return pairs[(pairs.backend == backend) & (pairs.family == family) & (pairs["mode"] == mode)]


def _verdict(comparison, benchmark: tuple[str, str, str]) -> str:
    match = _pair(comparison, benchmark)
    return str(match.verdict.iloc[0]) if len(match) else "missing"


def _ratio(comparison, benchmark: tuple[str, str, str]) -> float:
    match = _pair(comparison, benchmark)
    return float(match.ratio.iloc[0]) if len(match) else float("nan")


def _table(comparison) -> str:
    from rnnbench.harness.report import markdown_table
    from rnnbench.harness.report.compare import comparison_table

    table = comparison_table(comparison)
    return markdown_table(table[["verdict", "backend", "mode", "BASE (IQR)", "NEW (IQR)", "NEW/BASE (×)", "IQRs overlap"]])


def _render(comparison, base_dir: Path, new_dir: Path, out: Path) -> None:
    from rnnbench.harness.report import load
    from rnnbench.harness.report.compare import build_comparison
    from rnnbench.harness.report.files import write_document

    write_document(build_comparison(comparison, load(base_dir), load(new_dir), None), out, "comparison")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gate", description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="HEAD^", help="git revision to compare this checkout with (default HEAD^)")
    parser.add_argument("--aa", action="store_true", help="compare this checkout with itself (false-alarm check)")
    parser.add_argument("--threshold", type=float, default=THRESHOLD, help=f"default {THRESHOLD}")
    parser.add_argument("--plant", type=float, default=1.0,
                        help="make every call of this checkout's side this many times slower (gate self-test)")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"interleaved rounds per measurement (default {ROUNDS})")
    parser.add_argument("--trials", type=int, default=1, help="run the whole gate this many times and count failures")
    parser.add_argument("--out", help="keep the measurements and the comparison here (default: a temporary folder)")
    args = parser.parse_args(argv)
    if not (0 < args.threshold < 10) or args.plant < 1 or args.trials < 1 or args.rounds < 4:
        parser.error("--threshold must be in (0, 10), --plant >= 1, --trials >= 1 and --rounds >= 4")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rnnbench-gate-") as scratch:
        scratch = Path(scratch)
        out = Path(args.out) if args.out else scratch / "out"
        try:
            if args.aa:
                base_tree, base_label = ROOT, "this checkout (A/A)"
            else:
                base_tree, sha = export_revision(args.base, scratch / "base-tree")
                base_label = f"{args.base} ({sha[:10]})"
            failures = 0
            for trial in range(args.trials):
                status, summary = run_gate(base_tree, base_label, args.threshold, args.plant, out, args.rounds,
                                           quiet=args.trials > 1)
                failures += status
                if args.trials > 1:
                    print(f"trial {trial + 1}/{args.trials}: {'FAIL' if status else 'pass'}: {summary}", flush=True)
        except Skip as reason:
            print(f"perf gate skipped: {reason}")
            return 0
        except Broken as reason:
            print(f"perf gate failed: {reason}")
            return 1
    elapsed = time.monotonic() - started
    if args.trials > 1:
        print(f"perf gate: {failures}/{args.trials} trials failed (threshold {args.threshold:.0%}, plant {args.plant}x, "
              f"{elapsed:.0f} s)")
        return 0
    print(f"perf gate {'FAILED' if failures else 'passed'}: {summary}; base {base_label}, {elapsed:.0f} s"
          + (f"; comparison in {out}" if args.out else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
