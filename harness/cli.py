"""The ``rnnbench`` command (also ``python -m rnnbench``).

    rnnbench --version                              the installed version
    rnnbench list                                   backends (with why any cannot run here) and suites
    rnnbench run SUITE --out DIR [--device cpu|cuda|auto] [--resume [--force]] [--record-skips]
                 [--executor serial|ray [--ray-address ADDR]]
    rnnbench precompile SUITE [--device cuda] [--jobs N]
                                                    compile the suite's Triton kernels in N parallel
                                                    processes into Triton's cache (before a GPU run)
    rnnbench report DIR                             DIR/report.md, DIR/report.html, DIR/figures/*.png
                                                    from DIR/results.csv and DIR/env.json
    rnnbench compare BASE NEW [--threshold 0.10] [--force] [--out DIR]
                                                    match the cases of two results directories;
                                                    writes DIR/comparison.{md,html} (DIR: NEW)
    rnnbench kernels --target sm_90 [--csv]         compile every shipped Triton kernel configuration
                                                    ahead of time; resources per configuration
    rnnbench kernels --cost [--calibrate CSV] [--latencies FILE]   per-step cost estimate of every goal shape and path
                                                    from the SASS (see rnnbench.kernels.cost)

Exit status: 0 on success, 1 when ``kernels`` finds a configuration that does not fit or
``compare`` finds a regression, 2 on bad input (unknown suite, backend or device, malformed suite
file, an unusable --out, an existing results directory without --resume, a results directory in use
by another run, a --resume that asks for another suite, commit, timing or device without --force, a
suite none of whose cases can run here without --record-skips, --executor ray without Ray, a
malformed results.csv or env.json, results from different devices given to ``compare`` without
--force), 130 when interrupted (results measured so far are kept; rerun with --resume).
"""

from __future__ import annotations

import argparse
import re
import sys

from rnnbench import __version__
from rnnbench.harness.errors import UsageError

#: the kernels' switches ``rnnbench kernels --cost`` can turn on for its table (each flag ``--NAME``
#: with dashes; ``rnnbench.kernels.switches.NAME(True)`` holds while the table is estimated, in this
#: process and in the compilers it spawns), and what each estimates
COST_SWITCHES = {
    "overlapped_projection": "the LSTM's input projection beside the Gluon forward where it can: only its first "
                             "chunk's GEMM on the call's path",
    "tagged_thread_poll": "the tagged exchange's loader threads each polling their own words alone, in the rows "
                          "that exchange tagged words",
    "local_gates": "the tagged Gluon forward's gates split inside each warp, in the rows that exchange tagged words",
    "tagged_training": "the tagged exchange in the training forward too where it can",
    "streamed_copies": "the Gluon backward's copies streamed by a copier warp, where every copy has a stage of its "
                       "own",
    "overlapped_gradients": "the LSTM backward's dx, dW_ih and dW_hh GEMMs beside its recurrence where it can: only "
                            "the last range's GEMMs (its first chunk's steps) on the call's path",
    "first_warp_polls": "the grid barrier polled by each program's first warp alone, in every row with a grid "
                        "barrier",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rnnbench", description="Benchmark recurrent kernels: speed, memory and numerical error.")
    parser.add_argument("--version", action="version", version=f"rnnbench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("list", help="list backends (and why any cannot run here) and suites")

    run = commands.add_parser("run", help="run a suite and append tidy rows to DIR/results.csv")
    run.add_argument("suite", help="suite name (see `rnnbench list`) or path to a .toml suite file")
    run.add_argument("--out", required=True, help="results directory")
    run.add_argument("--device", help="cpu, cuda or auto (overrides the suite's device)")
    run.add_argument("--resume", action="store_true",
                     help="continue DIR: measure every case whose primary row is not yet ok or incorrect")
    run.add_argument("--force", action="store_true",
                     help="with --resume: continue even if the suite, commit, timing or devices differ from DIR's")
    run.add_argument("--record-skips", action="store_true",
                     help="run even if no case can run here, recording every case as skipped")
    run.add_argument("--executor", default="serial", help="serial (default: one case after another here) or ray")
    run.add_argument("--ray-address", help="with --executor ray: the cluster's address (default: RAY_ADDRESS or a new local cluster)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")

    precompile = commands.add_parser("precompile", help="compile a suite's Triton kernels in parallel, before it is run")
    precompile.add_argument("suite", help="suite name (see `rnnbench list`) or path to a .toml suite file")
    precompile.add_argument("--device", help="cpu, cuda or auto (overrides the suite's device)")
    precompile.add_argument("--jobs", type=int, default=None, help="parallel processes (default: CPU count, at most 16)")

    report = commands.add_parser("report", help="write DIR/report.md, DIR/report.html and DIR/figures/ from DIR/results.csv")
    report.add_argument("directory")

    compare = commands.add_parser("compare", help="compare two results directories case by case; exit 1 on a regression")
    compare.add_argument("base", help="results directory of the reference run")
    compare.add_argument("new", help="results directory of the run to judge")
    compare.add_argument("--threshold", type=float, default=0.10,
                         help="relative change that counts when the IQRs do not overlap (default 0.10 = 10%%)")
    compare.add_argument("--force", action="store_true", help="compare results from different devices")
    compare.add_argument("--out", help="where to write comparison.md, comparison.html and figures/ (default: NEW)")

    goals = commands.add_parser("goals", help="judge issue 8's goals (the Triton LSTM against torch.nn) on one "
                                "results directory, as Markdown")
    goals.add_argument("directory")
    goals.add_argument("--backend", default="triton", help="the Triton backend judged (default: triton, the planner's)")
    goals.add_argument("--timing", default="latency_cudagraph", choices=("latency_cudagraph", "latency"),
                       help="which timing (default: latency_cudagraph, CUDA-graph replay)")
    goals.add_argument("--out", help="write the Markdown here instead of standard output")

    switches = commands.add_parser("switches", help="which of the kernels' switches a GPU session's tests and "
                                   "timings say to set, as Markdown")
    switches.add_argument("directory", help="the session's folder (reports/DEVICE: gpu-tests-*.xml, "
                          "step-ablation.csv, gpu-fused/)")
    switches.add_argument("--renames", default="",
                          help="OLD=NEW,... the step ablation's variants under today's names (OLD= leaves one out), "
                               "for a session of older code")
    switches.add_argument("--estimate", metavar="ESTIMATE_CSV",
                          help="the step ablation's estimate of the code the session ran (make ablation-estimate): the "
                               "cost model's ratio beside each measured one")
    switches.add_argument("--calibration", metavar="FILE",
                          help="with --estimate: the calibration to scale the estimate's terms by (the one before "
                               "this session's refit, e.g. reports/aot/cost-calibration-sm_90.json)")
    switches.add_argument("--out", help="write the Markdown here instead of standard output")

    kernels = commands.add_parser("kernels", help="compile every shipped Triton kernel configuration for a GPU target")
    kernels.add_argument("--target", default="sm_90", help="sm_80 or sm_90 (default sm_90)")
    kernels.add_argument("--csv", action="store_true", help="CSV instead of a Markdown table")
    kernels.add_argument("--jobs", type=int, default=None, help="parallel compiler processes (default: CPU count)")
    kernels.add_argument("--gluon", action="store_true", help="the Gluon LSTM forward's configurations (sm_90 only)")
    kernels.add_argument("--cost", action="store_true", help="estimated µs per step of every goal shape and path")
    kernels.add_argument("--dtypes", default="bfloat16,float16,float32", help="with --cost: comma-separated dtypes")
    kernels.add_argument("--calibrate", metavar="RESULTS_CSV", help="with --cost: fit the estimate to a gpu-core results.csv")
    kernels.add_argument("--ablation", nargs=2, metavar=("MEASURED_CSV", "ESTIMATE_CSV"),
                         help="with --calibrate: fit to a step ablation measured in the same session too, with the "
                         "estimate of the same code (rnnbench.kernels.step_bench --estimate)")
    kernels.add_argument("--ablation-renames", metavar="OLD=NEW,...", default="",
                         help="with --ablation: the measured variants' names in this version's estimate, where they "
                         "were renamed since the run (OLD= leaves a variant out; see calibration.rename_variants)")
    kernels.add_argument("--calibration", metavar="FILE", help="with --cost: calibration to apply, or to write with "
                         "--calibrate (default reports/aot/cost-calibration-TARGET.json; 'none': the raw estimate)")
    for switch, what in COST_SWITCHES.items():
        kernels.add_argument(f"--{switch.replace('_', '-')}", action="store_true",
                             help=f"with --cost: {what} (plan.{switch}; off by default)")
    kernels.add_argument("--latencies", metavar="FILE", help="with --cost: a latency-table JSON to estimate with instead "
                         "of the model's (what rnnbench.kernels.latency_probe --adopt writes; 'prior': the papers' "
                         "table; default reports/aot/cost-latencies-TARGET.json where it exists)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UsageError as error:
        print(f"rnnbench: error: {error}", file=sys.stderr)
        return 2


def _list(args) -> int:
    from rnnbench.harness.backends import all_backends
    from rnnbench.harness.registry import DEVICES
    from rnnbench.harness.report import markdown_table
    from rnnbench.harness.suites import available_suites

    import pandas as pd

    rows = []
    for backend in all_backends():
        status = {}
        for device in backend.devices:
            reason = backend.skip_reason(backend.families[0], device, backend.dtypes[0])
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
    from rnnbench.harness.executors import make_executor
    from rnnbench.harness.runner import run_suite
    from rnnbench.harness.suites import load_suite

    suite = load_suite(args.suite, device_override=args.device)
    if args.force and not args.resume:
        raise UsageError("--force only applies to --resume")
    executor = make_executor(args.executor, args.ray_address)
    try:
        summary = run_suite(suite, args.out, resume=args.resume, progress=not args.no_progress, executor=executor,
                            force=args.force, record_skips=args.record_skips)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished cases are in {args.out}/results.csv; rerun with --resume to continue", file=sys.stderr)
        return 130
    counts = ", ".join(f"{count} {status}" for status, count in sorted(summary.statuses.items())) or "nothing to do"
    print(f"run {summary.run_id}: {sum(summary.statuses.values())} cases measured ({counts}); "
          f"{summary.skipped_as_finished} already finished; results in {args.out}/results.csv")
    return 0


def _precompile(args) -> int:
    import os

    from rnnbench.harness.precompile import cases_to_compile, precompile
    from rnnbench.harness.suites import load_suite

    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be a positive integer, got {args.jobs}")
    suite = load_suite(args.suite, device_override=args.device)
    todo = cases_to_compile(suite.cases)
    if not todo:
        print(f"nothing to compile: suite {args.suite!r} has no Triton case on cuda (on CPU the interpreter compiles nothing)")
        return 0
    import torch

    if not torch.cuda.is_available():
        print("nothing to compile: no CUDA GPU here (the suite records its CUDA cases as skipped)")
        return 0
    jobs = args.jobs or min(os.cpu_count() or 1, 16)
    results = precompile(todo, jobs, report=lambda line: print(line, flush=True))
    failed = [result for result in results if result.error is not None]
    print(f"{len(results) - len(failed)} of {len(results)} Triton cases compiled in {jobs} processes; "
          f"{len(failed)} failed (the suite records their errors)")
    return 0


def _report(args) -> int:
    from rnnbench.harness.report import write_report

    data, paths = write_report(args.directory)
    _warn_dropped(data)
    print(f"wrote {', '.join(str(path) for path in paths if path.suffix != '.png')} and "
          f"{sum(path.suffix == '.png' for path in paths)} figure(s)")
    return 0


def _warn_dropped(data) -> None:
    """Dropped malformed rows go to stderr too (the report lists them as well)."""
    if data.dropped:
        print(f"rnnbench: warning: {data.directory}/results.csv: dropped {len(data.dropped)} malformed row(s)", file=sys.stderr)
        for message in data.dropped[:10]:
            print(f"  {message}", file=sys.stderr)


def _write_or_print(text: str, out: str | None) -> int:
    """``text`` into the file ``out`` (saying so), or on standard output without one."""
    from pathlib import Path

    if out:
        Path(out).write_text(text)
        print(f"wrote {out}")
    else:
        print(text, end="")
    return 0


def _switches(args) -> int:
    from rnnbench.harness.report.switch_trials import trials_markdown
    from rnnbench.kernels.calibration import parse_renames

    try:
        if args.calibration and not args.estimate:
            raise ValueError("--calibration scales the model's estimate: give --estimate ESTIMATE_CSV too")
        text = trials_markdown(args.directory, parse_renames(args.renames), args.estimate, args.calibration)
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(str(error)) from None
    return _write_or_print(text, args.out)


def _goals(args) -> int:
    from rnnbench.harness.report import load
    from rnnbench.harness.report.goals import goals_markdown

    data = load(args.directory)
    _warn_dropped(data)
    if data.valid.empty:
        raise UsageError(f"{args.directory}/results.csv has no valid row to judge the goals on")
    return _write_or_print(goals_markdown(data, args.backend, args.timing), args.out)


def _compare(args) -> int:
    from pathlib import Path

    from rnnbench.harness.report import load, markdown_table
    from rnnbench.harness.report.compare import build_comparison, check_same_device, compare, comparison_table
    from rnnbench.harness.report.files import write_document

    if not (args.threshold > 0 and args.threshold < float("inf")):
        raise UsageError(f"--threshold must be a positive number, got {args.threshold}")
    base, new = load(args.base), load(args.new)
    for data in (base, new):
        _warn_dropped(data)
    device_note = check_same_device(base, new)
    if device_note and not args.force:
        raise UsageError(device_note)
    comparison = compare(base, new, args.threshold)
    if comparison.pairs.empty:
        raise UsageError(f"no case of {args.new} matches a case of {args.base}: nothing to compare")
    out = Path(args.out) if args.out else new.directory
    out.mkdir(parents=True, exist_ok=True)
    paths = write_document(build_comparison(comparison, base, new, device_note), out, "comparison")
    counts = comparison.pairs.verdict.value_counts()
    print(f"{len(comparison.pairs)} matched pairs: " + ", ".join(f"{count} {verdict}" for verdict, count in counts.items()))
    # every pair when few, else every pair that changed (the written comparison has them all)
    shown = comparison_table(comparison) if len(comparison.pairs) <= COMPARE_PRINT_ALL else \
        comparison_table(comparison, ("regression", "improvement", "fixed", "not comparable"))
    if not shown.empty:
        print("\n" + markdown_table(shown.drop(columns=["why"])))
    regressions = comparison.regressions
    if not regressions.empty:
        print(f"\n{len(regressions)} regression(s) beyond {args.threshold:.0%} with non-overlapping IQRs")
    print(f"\nwrote {', '.join(str(path) for path in paths if path.suffix != '.png')}")
    return 1 if not regressions.empty else 0


#: ``compare`` prints every matched pair up to this many, else only the pairs that changed
COMPARE_PRINT_ALL = 60


KERNEL_COLUMNS = ["kernel", "cell", "path", "dtype", "precision", "h_pad", "hidden_divisible", "direction", "directions",
                  "lengths", "block_b", "block_h", "k_split", "k_chunks", "poll", "poll_order", "poll_vector",
                  "register_tiles", "input_tiles", "num_warps", "shared_bytes", "registers", "spill_bytes",
                  "step_spill_accesses", "fits", "model_shared_bytes", "model_registers"]


def _kernels(args) -> int:
    import pandas as pd

    from rnnbench.harness.report import markdown_table
    from rnnbench.kernels.aot import SHARED_MEMORY_LIMIT, compile_all

    match = re.fullmatch(r"sm_(\d+)", args.target)
    if match is None or int(match.group(1)) not in SHARED_MEMORY_LIMIT:
        raise UsageError(f"unknown target {args.target!r}; expected one of {', '.join(f'sm_{a}' for a in SHARED_MEMORY_LIMIT)}")
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be a positive integer, got {args.jobs}")
    if args.cost:
        return _cost(args, int(match.group(1)))
    configs = None
    if args.gluon:
        from rnnbench.kernels.aot import gluon_configs

        if args.target != "sm_90":
            raise UsageError(f"--gluon compiles for sm_90 only, got --target {args.target}")
        configs = gluon_configs()
    rows = compile_all(int(match.group(1)), configs, workers=args.jobs)
    table = pd.DataFrame([row.as_row() for row in rows])[KERNEL_COLUMNS]
    print(table.to_csv(index=False) if args.csv else markdown_table(table), end="" if args.csv else "\n")
    misfits = int((~table["fits"]).sum())
    print(f"{len(table)} configurations compiled for {args.target}; {misfits} do not fit", file=sys.stderr)
    return 1 if misfits else 0


def _pair_agreement_line(agreement: dict[str, float]) -> str:
    """How often the estimate orders measured-apart step-ablation variants as measured, in words."""
    if not agreement.get("pairs"):
        return "no step-ablation pairs to order"
    return (f"{int(agreement['pairs'])} step-ablation pairs ordered as measured: {agreement['raw']:.0%} raw, "
            f"{agreement['calibrated']:.0%} calibrated, {agreement['held_out']:.0%} held out")


def _cost(args, arch: int) -> int:
    from pathlib import Path

    from rnnbench.harness.report import markdown_table
    from rnnbench.kernels import calibration
    from rnnbench.kernels.cost import LATENCIES, SUMMARY_COLUMNS, cost_table, load_latencies, torch_dtype
    from rnnbench.kernels.sass import SassUnavailable

    dtypes = tuple(name.strip() for name in args.dtypes.split(",") if name.strip())
    try:
        # the arguments first: the table takes minutes to estimate
        if args.ablation_renames and not args.ablation:
            raise ValueError("--ablation-renames renames a measured ablation's variants: give --ablation too")
        if args.ablation and not args.calibrate:
            raise ValueError("--ablation adds rows to a fit: give --calibrate RESULTS_CSV too")
        for name in dtypes:
            torch_dtype(name)
        latency_table = None
        if args.latencies == "prior":
            latency_table = LATENCIES[arch]
        elif args.latencies:
            latency_table = load_latencies(args.latencies, arch)
        file = calibration.default_path(args.target) if args.calibration in (None, "none") else Path(args.calibration)
        applied = None
        if not args.calibrate and args.calibration != "none" and file.is_file():
            applied = calibration.Calibration.load(file)
            mismatch = applied.table_mismatch(arch, latency_table)
            if mismatch:
                print(f"warning: {file}: {mismatch}", file=sys.stderr)
        import contextlib

        from rnnbench.kernels import switches

        with contextlib.ExitStack() as stack:
            for switch in COST_SWITCHES:  # on where given, else as the plan has it
                stack.enter_context(getattr(switches, switch)(True if getattr(args, switch) else None))
            table = cost_table(arch, dtypes=dtypes, workers=args.jobs, calibration=applied,
                               latency_table=latency_table)
        if args.calibrate:
            fitted, compared = calibration.fit(table, args.calibrate, args.target,
                                               tuple(args.ablation) if args.ablation else None, latency_table,
                                               calibration.parse_renames(args.ablation_renames))
    except (ValueError, FileNotFoundError, SassUnavailable) as error:
        raise UsageError(str(error)) from None
    if args.calibrate:
        try:
            replaced = calibration.Calibration.load(file) if file.is_file() else None
        except (ValueError, TypeError):  # not a calibration this version reads: nothing to compare with
            replaced = None
        fitted.save(file)
        out = Path(args.calibrate).with_name("cost-vs-measured.csv")
        compared.to_csv(out, index=False)
        pairs_out = out.with_name("cost-vs-measured-pairs.csv")
        calibration.pair_table(compared).round(4).to_csv(pairs_out, index=False)
        print(markdown_table(compared[["cell", "dtype", "hidden_size", "batch", "mode", "path", "measured_us_per_step",
                                       "raw_us_per_step", "calibrated_us_per_step"]].round(3)))
        print(f"calibration of {fitted.rows} rows written to {file}; median |error| {fitted.median_rel_error_raw:.0%} "
              f"raw -> {fitted.median_rel_error_calibrated:.0%} calibrated, {fitted.median_rel_error_held_out:.0%} "
              f"on kernels held out of the fit; {_pair_agreement_line(fitted.pair_agreement)}; comparison in {out}, "
              f"pairs (the held-out estimate's wrong orders first) in {pairs_out}", file=sys.stderr)
        against = calibration.against_previous(replaced, fitted)
        if against:
            print(against, file=sys.stderr)
        return 0
    print(table.round(4).to_csv(index=False) if args.csv else markdown_table(table[SUMMARY_COLUMNS].round(3)), end="" if args.csv else "\n")
    state = f"calibrated by {file}" if applied else "uncalibrated"
    print(f"{len(table)} shape x path rows estimated for {args.target} ({state})", file=sys.stderr)
    return 0


COMMANDS = {"list": _list, "run": _run, "precompile": _precompile, "report": _report, "compare": _compare, "goals": _goals,
            "switches": _switches,
            "kernels": _kernels}
