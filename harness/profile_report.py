"""Read what Nsight Compute sampled in one kernel (the gpu-session stage ``profile``): where its
warps waited, per SASS instruction, as Markdown.

Inputs are the two CSV exports the stage writes beside each ``profile-NAME.ncu-rep``:

* ``profile-NAME-sass.csv`` (``ncu --page source --csv --print-source sass``): a first line naming
  the kernel, then one row per SASS instruction: ``Address`` (hex), ``Source`` (the instruction),
  ``Warp Stall Sampling (All Samples)`` (how often a sampled warp was at this instruction, issued
  or not), ``Instructions Executed`` (warp-level) and one ``stall_REASON`` column per warp state
  (``long_sb``: waiting for a global load's scoreboard, ``barrier``: at a CTA barrier, ...).
  Numbers carry thousands separators.
* ``profile-NAME-details.csv`` (``--page details --csv``): one row per metric (``Metric Name``,
  ``Metric Unit``, ``Metric Value``), of which the report shows the clock, duration, grid and
  registers.

Samples are taken per warp at a fixed interval, so an instruction's share of all samples is the
share of the warps' time spent there: with every warp of a program in the same time loop, the
share times the cycles of a step is roughly what that instruction costs a step. ncu locks the SM
clock to its base (1.32 GHz on an H200), so the kernel runs longer than in the harness.

    python -m rnnbench.harness.profile_report reports/h200/f1c2560/profile-*-sass.csv
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pandas as pd

from rnnbench.harness.report.markdown import markdown_table

SAMPLES = "Warp Stall Sampling (All Samples)"
EXECUTED = "Instructions Executed"
#: the details page's metrics the report shows, in this order
DETAIL_METRICS = ("SM Frequency", "Duration", "Elapsed Cycles", "Grid Size", "Block Size", "Registers Per Thread",
                  "Warp Cycles Per Issued Instruction")


def read_source(path: Path) -> tuple[str, pd.DataFrame]:
    """``(kernel name, instructions)`` of a source-page export: columns ``offset`` (bytes from the
    kernel's first instruction), ``source``, ``opcode`` (the mnemonic without predicate or operands,
    ``LDG.E.STRONG.GPU``), ``samples``, ``executed`` and the ``stall_*`` reasons (all samples, issued
    or not), in address order."""
    text = Path(path).read_text()
    first, _, table = text.partition("\n")
    if not first.startswith('"Kernel Name"'):
        raise ValueError(f"{path} is not an ncu source-page export (its first line should name the kernel, got "
                         f"{first[:80]!r})")
    kernel = first.split(",")[1].strip('"')
    frame = pd.read_csv(io.StringIO(table), thousands=",")
    missing = {"Address", "Source", SAMPLES, EXECUTED} - set(frame.columns)
    if missing:
        raise ValueError(f"{path} lacks the columns {sorted(missing)} (export it with --page source --print-source sass)")
    reasons = [column for column in frame.columns if column.startswith("stall_") and "Not Issued" not in column]
    addresses = frame["Address"].map(lambda address: int(address, 16))
    out = pd.DataFrame({"offset": addresses - addresses.min(), "source": frame["Source"].str.strip()})
    out["opcode"] = out["source"].map(_opcode)
    for name, column in (("samples", SAMPLES), ("executed", EXECUTED)):
        out[name] = pd.to_numeric(frame[column], errors="coerce").fillna(0).astype("int64")
    for column in reasons:
        out[column] = pd.to_numeric(frame[column], errors="coerce").fillna(0).astype("int64")
    return kernel, out.sort_values("offset", ignore_index=True)


def _opcode(source: str) -> str:
    words = source.split()
    if words and words[0].startswith("@"):
        words = words[1:]
    return words[0] if words else ""


def read_details(path: Path) -> dict[str, str]:
    """``{metric name: "value unit"}`` of a details-page export (:data:`DETAIL_METRICS` that it has)."""
    frame = pd.read_csv(path, dtype=str)
    shown = {}
    for _, row in frame.dropna(subset=["Metric Name"]).iterrows():
        if row["Metric Name"] in DETAIL_METRICS and row["Metric Name"] not in shown:
            unit = row.get("Metric Unit")
            shown[row["Metric Name"]] = f"{row['Metric Value']} {unit}".strip() if isinstance(unit, str) else row["Metric Value"]
    return {name: shown[name] for name in DETAIL_METRICS if name in shown}


def stall_shares(instructions: pd.DataFrame) -> pd.Series:
    """Each warp state's share (%) of all samples, largest first (states with none left out)."""
    reasons = instructions[[column for column in instructions.columns if column.startswith("stall_")]].sum()
    total = instructions["samples"].sum()
    shares = (100 * reasons / total).rename(lambda column: column.removeprefix("stall_")) if total else reasons * 0.0
    return shares[shares > 0].sort_values(ascending=False)


def opcode_shares(instructions: pd.DataFrame) -> pd.Series:
    """Each opcode's share (%) of all samples, largest first."""
    total = instructions["samples"].sum()
    shares = instructions.groupby("opcode")["samples"].sum() * 100 / max(total, 1)
    return shares[shares > 0].sort_values(ascending=False)


def hottest(instructions: pd.DataFrame, top: int = 15) -> pd.DataFrame:
    """The ``top`` instructions by samples: offset, source, executed, share (%) and their two
    largest warp states."""
    total = max(instructions["samples"].sum(), 1)
    reasons = [column for column in instructions.columns if column.startswith("stall_")]
    rows = []
    for _, row in instructions.nlargest(top, "samples").iterrows():
        states = row[reasons].astype("int64").nlargest(2)
        rows.append({"offset": f"{row['offset']:#06x}", "instruction": row["source"], "executed": row["executed"],
                     "share_pct": round(100 * row["samples"] / total, 1),
                     "waiting_on": ", ".join(f"{name.removeprefix('stall_')} {100 * value / row['samples']:.0f}%"
                                             for name, value in states.items() if value > 0)})
    return pd.DataFrame(rows)


def markdown(sass_csv: Path, top: int = 15) -> str:
    """One profile's section: the kernel, its details (where the details export lies beside it), the
    warp states, the opcodes and the hottest instructions."""
    kernel, instructions = read_source(sass_csv)
    name = Path(sass_csv).name.removesuffix("-sass.csv")
    lines = [f"## {name}: `{kernel}`", ""]
    details_csv = Path(sass_csv).with_name(f"{name}-details.csv")
    if details_csv.exists():
        lines += [", ".join(f"{metric}: {value}" for metric, value in read_details(details_csv).items()), ""]
    lines += [f"{instructions['samples'].sum()} warp samples over {len(instructions)} instructions.", "",
              "Warp states (% of samples): " + ", ".join(f"{name} {share:.1f}" for name, share in
                                                         stall_shares(instructions).head(8).items()), "",
              "Opcodes (% of samples): " + ", ".join(f"{name} {share:.1f}" for name, share in
                                                     opcode_shares(instructions).head(10).items()), "",
              markdown_table(hottest(instructions, top)), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rnnbench.harness.profile_report", description=__doc__.split("\n")[0])
    parser.add_argument("sass_csv", type=Path, nargs="+", help="profile-NAME-sass.csv files (ncu's source page)")
    parser.add_argument("--top", type=int, default=15, help="hottest instructions listed per kernel")
    args = parser.parse_args(argv)
    if args.top < 1:
        parser.error(f"--top must be at least 1, got {args.top}")
    print("\n".join(markdown(path, args.top) for path in args.sass_csv), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
