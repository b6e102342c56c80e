"""A :class:`~rnnbench.harness.report.document.Document` as GitHub-flavoured Markdown.

Text is escaped so that it renders as the same text: Markdown punctuation gets a backslash and
``&``, ``<``, ``>`` become entities (so ``<img src=x onerror=...>`` is text, not HTML). Figures are
linked as ``figures/<name>.png`` beside the Markdown file.
"""

from __future__ import annotations

import re

import pandas as pd

from rnnbench.harness.report.document import Bullets, Code, Document, Figure, Heading, Inline, Paragraph, Table

#: Markdown punctuation; ``_`` only where it can open or close emphasis (``fwd_bwd`` stays readable)
_PUNCTUATION = re.compile(r"([\\`*\[\]{}|#~!]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def escape(text: str) -> str:
    """``text`` as Markdown that renders as exactly this text, on one line."""
    text = _PUNCTUATION.sub(r"\\\1", " ".join(str(text).splitlines()))
    return "".join(_ENTITIES.get(char, char) for char in text)


def _inline(part: Inline) -> str:
    if isinstance(part, Code) and not re.search(r"[`|\n\r]", part.text):
        return f"`{part.text}`"
    return escape(part.text if isinstance(part, Code) else part)


def _paragraph(paragraph: Paragraph) -> str:
    return "".join(_inline(part) for part in paragraph.parts)


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of ``frame`` with every cell escaped."""
    columns = [escape(column) for column in frame.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(escape(value) for value in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def render_markdown(document: Document) -> str:
    parts = [f"# {escape(document.title)}"]
    for block in document.blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {escape(block.text)}")
        elif isinstance(block, Paragraph):
            parts.append(_paragraph(block))
        elif isinstance(block, Bullets):
            parts.append("\n".join(f"- {_paragraph(item)}" for item in block.items))
        elif isinstance(block, Table):
            parts.append(markdown_table(block.frame))
        elif isinstance(block, Figure):
            parts.append(f"![{escape(block.title)}]({block.path})\n\n*{escape(block.caption)}*")
    return "\n\n".join(parts) + "\n"
