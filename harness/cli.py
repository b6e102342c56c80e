"""The ``rnnbench`` command (also ``python -m rnnbench``).

    rnnbench --version                              the installed version
    rnnbench list                                   backends (with why any cannot run here) and suites
    rnnbench run SUITE --out DIR [--device cpu|cuda|auto] [--resume]
    rnnbench report DIR                             DIR/report.md from DIR/results.csv
    rnnbench kernels --target sm_90 [--csv]         compile every shipped Triton kernel configuration
                                                    ahead of time; resources per configuration

Exit status: 0 on success, 1 when ``kernels`` finds a configuration that does not fit, 2 on bad input (unknown suite, backend or device, malformed suite file,
an existing results directory without --resume), 130 when interrupted (results measured so far are
kept; rerun with --resume).
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from rnnbench import __version__
from rnnbench.harness.errors import UsageError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rnnbench", description="Benchmark recurrent kernels: speed, memory and numerical error.")
    parser.add_argument("--version", action="version", version=f"rnnbench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("list", help="list backends (and why any cannot run here) and suites")

    run = commands.add_parser("run", help="run a suite and append tidy rows to DIR/results.csv")
    run.add_argument("suite", help="suite name (see `rnnbench list`) or path to a .toml suite file")
    run.add_argument("--out", required=True, help="results directory")
    run.add_argument("--device", help="cpu, cuda or auto (overrides the suite's device)")
    run.add_argument("--resume", action="store_true", help="skip cases already in DIR/results.csv")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")

    report = commands.add_parser("report", help="write DIR/report.md from DIR/results.csv")
    report.add_argument("directory")

    kernels = commands.add_parser("kernels", help="compile every shipped Triton kernel configuration for a GPU target")
    kernels.add_argument("--target", default="sm_90", help="sm_80 or sm_90 (default sm_90)")
    kernels.add_argument("--csv", action="store_true", help="CSV instead of a Markdown table")
    kernels.add_argument("--jobs", type=int, default=None, help="parallel compiler processes (default: CPU count)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UsageError as error:
        print(f"rnnbench: error: {error}", file=sys.stderr)
        return 2


def _list(args) -> int:
    from rnnbench.harness.registry import DEVICES, all_backends
    from rnnbench.harness.report import markdown_table
    from rnnbench.harness.suites import available_suites

    import pandas as pd

    rows = []
    for backend in all_backends():
        status = {}
        for device in backend.devices:
            reason = backend.skip_reason(backend.families[0], device, backend.dtypes[0], "numerics")
            status[device] = "ok" if reason is None else f"skipped: {reason}"
        rows.append({
            "backend": backend.name,
            "families": ",".join(backend.families),
            "dtypes": ",".join(backend.dtypes),
            **{device: status.get(device, "-") for device in DEVICES},
            "reference": backend.reference,
            "description": backend.description,
        })
    print(markdown_table(pd.DataFrame(rows)))
    print()
    print("suites: " + ", ".join(available_suites()))
    return 0


def _run(args) -> int:
    from rnnbench.harness.runner import run_suite
    from rnnbench.harness.suites import load_suite

    suite = load_suite(args.suite, device_override=args.device)
    if suite.cases and suite.cases[0].device == "cpu":
        # on CPU the Triton kernels can only run in the interpreter (numerics only); it must be
        # switched on before the kernels module is first imported
        os.environ.setdefault("TRITON_INTERPRET", "1")
    try:
        summary = run_suite(suite, args.out, resume=args.resume, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished cases are in {args.out}/results.csv; rerun with --resume to continue", file=sys.stderr)
        return 130
    counts = ", ".join(f"{count} {status}" for status, count in sorted(summary.statuses.items())) or "nothing to do"
    print(f"run {summary.run_id}: {sum(summary.statuses.values())} cases measured ({counts}); "
          f"{summary.skipped_as_finished} already finished; results in {args.out}/results.csv")
    return 0


def _report(args) -> int:
    from rnnbench.harness.report import write_report

    try:
        path = write_report(args.directory)
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None
    print(f"wrote {path}")
    return 0


KERNEL_COLUMNS = ["kernel", "cell", "path", "dtype", "precision", "hidden_size", "direction", "directions", "lengths",
                  "block_b", "block_h", "k_split", "k_chunks", "num_warps", "shared_bytes", "registers", "spill_bytes",
                  "fits"]


def _kernels(args) -> int:
    import pandas as pd

    from rnnbench.harness.report import markdown_table
    from rnnbench.kernels.aot import SHARED_MEMORY_LIMIT, compile_all

    match = re.fullmatch(r"sm_(\d+)", args.target)
    if match is None or int(match.group(1)) not in SHARED_MEMORY_LIMIT:
        raise UsageError(f"unknown target {args.target!r}; expected one of {', '.join(f'sm_{a}' for a in SHARED_MEMORY_LIMIT)}")
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be a positive integer, got {args.jobs}")
    rows = compile_all(int(match.group(1)), workers=args.jobs)
    table = pd.DataFrame([row.as_row() for row in rows])[KERNEL_COLUMNS]
    print(table.to_csv(index=False) if args.csv else markdown_table(table), end="" if args.csv else "\n")
    misfits = int((~table["fits"]).sum())
    print(f"{len(table)} configurations compiled for {args.target}; {misfits} do not fit", file=sys.stderr)
    return 1 if misfits else 0


COMMANDS = {"list": _list, "run": _run, "report": _report, "kernels": _kernels}
