"""Running a suite: plan -> executor -> rows appended to ``DIR/results.csv`` (+ ``env.json``).

1. The results directory is checked and locked (:mod:`rnnbench.harness.lock`): one run at a time.
2. Plan: with ``resume=True``, a case is finished when the latest attempt of its primary row (its
   experiment's primary metric) has a final status, ``ok`` or ``incorrect``
   (:meth:`ResultsFile.finished_keys`); ``skipped``, ``error`` and ``oom`` cases, and cases whose
   rows cannot be read, are measured again. A resume must ask for what the directory's rows were
   asked for (:mod:`rnnbench.harness.fingerprint`) unless ``force``. If no case left can run here
   (it needs a device that neither this machine nor the cluster has), the run is refused unless
   ``record_skips``.
3. The executor (:mod:`rnnbench.harness.executors`) measures the cases; this process, the driver,
   is the only writer: each case's rows are appended (and fsynced) the moment it finishes, so
   Ctrl-C or a crash loses at most the cases in flight. A ``numerics`` case whose row the
   correctness gate of another planned case also writes waits until that case has finished, and
   runs only if the gate did not settle it.

Each invocation gets its own ``run_id``; ``env.json`` keeps the environment of every run that wrote
to the directory, and which executor ran it.
"""

from __future__ import annotations

import json
import secrets
import sys
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from tqdm import tqdm

from rnnbench.harness.backends import SPEEDUP_BASELINE
from rnnbench.harness.cases import Case
from rnnbench.harness.env import collect_env
from rnnbench.harness.errors import UsageError
from rnnbench.harness.executors import SerialExecutor
from rnnbench.harness.fingerprint import differences, fingerprint, read_fingerprint, write_fingerprint
from rnnbench.harness.lock import locked_results_dir
from rnnbench.harness.measure import case_status, gate_key, primary_key
from rnnbench.harness.results import FINAL_STATUSES, ResultsFile
from rnnbench.harness.suites import Suite

#: unreadable rows named one by one in the warning before the rest are counted
NAMED_UNREADABLE_ROWS = 3


@dataclass
class RunSummary:
    run_id: str
    total_cases: int
    skipped_as_finished: int
    statuses: Counter = field(default_factory=Counter)


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def run_suite(suite: Suite, out_dir: str | Path, resume: bool = False, progress: bool = True, executor=None,
              force: bool = False, record_skips: bool = False) -> RunSummary:
    """Measure ``suite``'s cases into ``out_dir`` (see the module docstring); ``executor``
    defaults to a :class:`~rnnbench.harness.executors.SerialExecutor` and is closed at the end."""
    executor = executor or SerialExecutor()
    with closing(executor), locked_results_dir(out_dir) as directory:
        results = ResultsFile(directory)
        if results.path.exists() and results.path.stat().st_size > 0 and not resume:
            raise UsageError(f"{results.path} already exists; pass --resume to continue that run or choose another --out")
        asked = fingerprint(suite)
        if resume and results.path.exists() and results.path.stat().st_size > 0:
            _check_fingerprint(directory, asked, force)
        finished = _finished_keys(results) if resume else set()
        pending = [case for case in suite.cases if primary_key(case) not in finished]
        summary = RunSummary(new_run_id(), len(suite.cases), len(suite.cases) - len(pending))
        if not pending:
            return summary
        executor.start()
        _refuse_if_nothing_can_run(pending, executor, record_skips)
        executor.check(pending)
        write_fingerprint(directory, asked)
        devices = ",".join(sorted({case.device for case in suite.cases}))
        env = collect_env(summary.run_id, suite.name, devices)
        _record_env(directory, {**env, **executor.describe(), "speedup_baseline": SPEEDUP_BASELINE})
        first, waiting = plan(pending)
        with tqdm(total=len(pending), desc=suite.name, unit="case", disable=not progress, dynamic_ncols=True) as bar:
            _measure(first, executor, results, finished, summary, bar)
            settled = [case for case in waiting if primary_key(case) in finished]
            summary.skipped_as_finished += len(settled)
            bar.update(len(settled))
            _measure([case for case in waiting if case not in settled], executor, results, finished, summary, bar)
    return summary


def plan(cases: list[Case]) -> tuple[list[Case], list[Case]]:
    """Split ``cases`` into those to measure first and the ``numerics`` cases whose row a gated
    case among them writes anyway (measured afterwards only if that gate did not settle them)."""
    gates = {gate_key(case) for case in cases if case.experiment != "numerics"} - {None}
    waiting = [case for case in cases if case.experiment == "numerics" and primary_key(case) in gates]
    waiting_set = set(waiting)
    return [case for case in cases if case not in waiting_set], waiting


def _measure(cases: list[Case], executor, results: ResultsFile, finished: set, summary: RunSummary, bar) -> None:
    if not cases:
        return
    with closing(executor.map(cases, summary.run_id)) as measured:
        for case, rows in measured:
            results.append(rows)
            finished.update(row.key for row in rows if row.status in FINAL_STATUSES)
            summary.statuses[case_status(case, rows)] += 1
            bar.set_postfix_str(case.label, refresh=False)
            bar.update(1)


def _finished_keys(results: ResultsFile) -> set[tuple]:
    finished, unreadable = results.finished_keys()
    if unreadable:
        named = "; ".join(unreadable[:NAMED_UNREADABLE_ROWS])
        more = f" and {len(unreadable) - NAMED_UNREADABLE_ROWS} more" if len(unreadable) > NAMED_UNREADABLE_ROWS else ""
        print(f"rnnbench: warning: {len(unreadable)} rows of {results.path} cannot be read ({named}{more}); "
              "they do not count as finished, so their cases are measured again", file=sys.stderr)
    return finished


def _check_fingerprint(directory: Path, asked: dict, force: bool) -> None:
    try:
        recorded = read_fingerprint(directory)
    except UsageError:
        if not force:
            raise
        recorded = None
    if recorded is None:
        print(f"rnnbench: warning: {directory} records no fingerprint (written before rnnbench recorded one); "
              "resuming without checking what its rows were asked for", file=sys.stderr)
        return
    changed = differences(recorded, asked)
    if changed and not force:
        raise UsageError(f"--resume into {directory} asks for something else than its rows were measured with: "
                         + "; ".join(changed) + ". Choose another --out, or pass --force to mix them")
    if changed:
        print(f"rnnbench: warning: --force: mixing into {directory}: " + "; ".join(changed), file=sys.stderr)


def _refuse_if_nothing_can_run(cases: list[Case], executor, record_skips: bool) -> None:
    problems = {device: executor.device_problem(device) for device in sorted({case.device for case in cases})}
    if record_skips or any(problem is None for problem in problems.values()):
        return
    reasons = "; ".join(f"{device}: {problem}" for device, problem in problems.items())
    raise UsageError(f"none of the {len(cases)} cases to run can run here ({reasons}); "
                     "pass --record-skips to record them as skipped")


def _record_env(out_dir: Path, env: dict) -> None:
    """Append this run's environment to ``env.json`` (``{"runs": [...]}``), written atomically."""
    path = out_dir / "env.json"
    runs = json.loads(path.read_text())["runs"] if path.exists() else []
    runs.append(env)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    temporary.replace(path)
