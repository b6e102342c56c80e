"""A :class:`~rnnbench.harness.report.document.Document` as one self-contained HTML page.

Figures are embedded as base64 ``data:`` URIs, the style sheet is inline, and there is no script:
a Content-Security-Policy (``default-src 'none'; img-src data:; style-src 'unsafe-inline'``) lets the
browser load nothing else, so the page opens offline from anywhere and cannot run code even if some
text slipped through unescaped. Every piece of text is escaped with :func:`html.escape`.
"""

from __future__ import annotations

import base64
import html

from rnnbench.harness.report.document import Bullets, Code, Document, Figure, Heading, Inline, Paragraph, Table

CONTENT_SECURITY_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 75em;
       padding: 0 1em; color: #222; }
h1, h2, h3 { line-height: 1.2; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; display: block; overflow-x: auto; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; white-space: nowrap; }
th { background: #f4f4f4; } tr:nth-child(even) td { background: #fafafa; }
code { background: #f4f4f4; padding: 0 .2em; border-radius: 3px; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 13px; }
"""


def _inline(part: Inline) -> str:
    if isinstance(part, Code):
        return f"<code>{html.escape(part.text)}</code>"
    return html.escape(part)


def _paragraph(paragraph: Paragraph) -> str:
    return "".join(_inline(part) for part in paragraph.parts)


def _table(block: Table) -> str:
    head = "".join(f"<th>{html.escape(str(column))}</th>" for column in block.frame.columns)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(value))}</td>" for value in row) + "</tr>"
                   for row in block.frame.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _figure(block: Figure) -> str:
    data = base64.b64encode(block.png).decode("ascii")
    return (f'<figure id="figure-{html.escape(block.name)}"><img src="data:image/png;base64,{data}" '
            f'alt="{html.escape(block.title)}"><figcaption><b>{html.escape(block.title)}.</b> '
            f"{html.escape(block.caption)}</figcaption></figure>")


def render_html(document: Document) -> str:
    body = [f"<h1>{html.escape(document.title)}</h1>"]
    for block in document.blocks:
        if isinstance(block, Heading):
            level = min(max(block.level, 2), 6)
            body.append(f"<h{level}>{html.escape(block.text)}</h{level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_paragraph(block)}</p>")
        elif isinstance(block, Bullets):
            body.append("<ul>" + "".join(f"<li>{_paragraph(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            body.append(_table(block))
        elif isinstance(block, Figure):
            body.append(_figure(block))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(document.title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body) + "\n</body>\n</html>\n"
    )
