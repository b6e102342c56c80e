"""Running a suite: cases -> rows in ``DIR/results.csv`` (+ the run's environment in ``DIR/env.json``).

Rows of a case are appended the moment the case ends, so Ctrl-C or a crash loses at most the case in
flight; ``resume=True`` skips every case whose primary row (its experiment's primary metric) is
already in the file. Each invocation
gets its own ``run_id``; ``env.json`` keeps the environment of every run that wrote to the directory.
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from tqdm import tqdm

from rnnbench.harness.backends import SPEEDUP_BASELINE
from rnnbench.harness.env import collect_env
from rnnbench.harness.errors import UsageError
from rnnbench.harness.measure import case_status, measure_case, primary_key
from rnnbench.harness.process import apply_thread_limit
from rnnbench.harness.results import ResultsFile
from rnnbench.harness.suites import Suite


@dataclass
class RunSummary:
    run_id: str
    total_cases: int
    skipped_as_finished: int
    statuses: Counter = field(default_factory=Counter)


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def run_suite(suite: Suite, out_dir: str | Path, resume: bool = False, progress: bool = True) -> RunSummary:
    results = ResultsFile(out_dir)
    if results.path.exists() and results.path.stat().st_size > 0 and not resume:
        raise UsageError(f"{results.path} already exists; pass --resume to continue that run or choose another --out")
    finished = results.finished_keys() if resume else set()
    pending = [case for case in suite.cases if primary_key(case) not in finished]
    summary = RunSummary(new_run_id(), len(suite.cases), len(suite.cases) - len(pending))
    if not suite.cases:
        return summary
    env = collect_env(summary.run_id, suite.name, suite.cases[0].device)
    _record_env(Path(out_dir), {**env, "speedup_baseline": SPEEDUP_BASELINE})
    apply_thread_limit(suite.cases[0].timing.threads)
    bar = tqdm(pending, desc=suite.name, unit="case", disable=not progress, dynamic_ncols=True)
    for case in bar:
        if primary_key(case) in finished:  # measured earlier in this run by another case's gate
            summary.skipped_as_finished += 1
            continue
        bar.set_postfix_str(case.label, refresh=False)
        rows = measure_case(case, summary.run_id)
        results.append(rows)
        finished.update(row.key for row in rows)
        summary.statuses[case_status(case, rows)] += 1
    return summary


def _record_env(out_dir: Path, env: dict) -> None:
    """Append this run's environment to ``env.json`` (``{"runs": [...]}``), written atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "env.json"
    runs = json.loads(path.read_text())["runs"] if path.exists() else []
    runs.append(env)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    temporary.replace(path)
