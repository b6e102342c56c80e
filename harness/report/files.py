"""Writing a rendered document: ``<stem>.md``, ``<stem>.html`` and ``figures/<name>.png``.

Every file is written atomically (a temporary file in the same folder, flushed and fsynced, then
renamed over the target), so a reader never sees half a report. A rename replaces a symlink at the
target instead of writing through it, so a report never writes outside its directory; a
``figures`` folder that is a symlink is refused.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from rnnbench.harness.errors import UsageError
from rnnbench.harness.report.document import Document
from rnnbench.harness.report.html import render_html
from rnnbench.harness.report.markdown import render_markdown


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (never following a symlink at ``path``)."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def figures_folder(directory: Path) -> Path:
    folder = directory / "figures"
    if folder.is_symlink():
        raise UsageError(f"{folder} is a symlink; refusing to write figures through it (remove it or render elsewhere)")
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_document(document: Document, directory: Path, stem: str, stale: set[str] = frozenset()) -> list[Path]:
    """Write ``document`` into ``directory``; remove figures named in ``stale`` that it no longer has.
    Returns the paths written."""
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a folder")
    written = []
    figures = document.figures()
    if figures or stale:
        folder = figures_folder(directory)
        for figure in figures:
            write_atomic(directory / figure.path, figure.png)
            written.append(directory / figure.path)
        for name in stale - {figure.name for figure in figures}:
            old = folder / f"{name}.png"
            if old.is_file() and not old.is_symlink():
                old.unlink()
    for suffix, text in ((".md", render_markdown(document)), (".html", render_html(document))):
        path = directory / f"{stem}{suffix}"
        write_atomic(path, text.encode("utf-8"))
        written.append(path)
    return written
