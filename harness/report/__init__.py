"""Reports: a pure function of a results directory's ``results.csv`` and ``env.json``.

``write_report(DIR)`` writes ``DIR/report.md``, one self-contained ``DIR/report.html`` (figures
embedded, no scripts, opens offline) and ``DIR/figures/*.png``; ``compare`` matches the cases of two
results directories and renders the comparison the same way. Nothing here measures anything or
imports torch.

Modules, one job each: :mod:`.load` (read and validate, de-duplicate, flag bad values),
:mod:`.metrics` (what each metric is: label, unit, valid values, direction), :mod:`.tables`,
:mod:`.figures` (one function per figure), :mod:`.costmodel` (per-step lower bound and device
peaks), :mod:`.assemble` (the report's sections), :mod:`.document` (the blocks a report is made of),
:mod:`.markdown` and :mod:`.html` (renderers), :mod:`.files` (atomic writes), :mod:`.compare`.
"""

from __future__ import annotations

from pathlib import Path

from rnnbench.harness.report.load import ReportData, load
from rnnbench.harness.report.markdown import markdown_table


def write_report(directory: str | Path) -> tuple[ReportData, list[Path]]:
    """Render ``directory``'s report; returns what was read and the paths written."""
    # matplotlib and seaborn load only when something is drawn (``rnnbench list`` needs only tables)
    from rnnbench.harness.report.assemble import build_report
    from rnnbench.harness.report.figures import FIGURES
    from rnnbench.harness.report.files import write_document

    data = load(directory)
    document = build_report(data)
    return data, write_document(document, data.directory, "report", stale={spec.name for spec in FIGURES})


__all__ = ["ReportData", "load", "markdown_table", "write_report"]
