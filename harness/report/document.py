"""A report as a list of blocks, rendered by :mod:`.markdown` and :mod:`.html` alike.

Every piece of text in a block is plain text: the renderers escape it for their format, so a name
read from a results file (a backend, a task, a note, a suite) can never become markup. ``Code``
marks text to set in a fixed-width font.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd


@dataclass(frozen=True)
class Code:
    text: str


Inline = str | Code


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    parts: tuple[Inline, ...]


@dataclass(frozen=True)
class Bullets:
    items: tuple[Paragraph, ...]


@dataclass(frozen=True)
class Table:
    """A table of plain-text cells (numbers already formatted); headers carry the units."""

    frame: pd.DataFrame


@dataclass(frozen=True)
class Figure:
    """A PNG figure; written to ``figures/<name>.png`` and embedded in the HTML."""

    name: str
    title: str
    caption: str
    png: bytes

    @property
    def path(self) -> str:
        return f"figures/{self.name}.png"


Block = Heading | Paragraph | Bullets | Table | Figure


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def figures(self) -> list[Figure]:
        return [block for block in self.blocks if isinstance(block, Figure)]


def para(*parts: Inline) -> Paragraph:
    return Paragraph(tuple(parts))


def bullets(*items: Paragraph | str) -> Bullets:
    return Bullets(tuple(item if isinstance(item, Paragraph) else para(item) for item in items))
