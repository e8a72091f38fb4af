"""A report as data (sections of blocks), rendered once to Markdown and once to HTML.

The report is built in one place (:mod:`eval.report`); each renderer only decides how a
block looks, so the Markdown and HTML reports can never say different things. The HTML is
not the Markdown run through a Markdown renderer (markdown-it-py is installed): the HTML
report is one self-contained file with its plots embedded and the faithfulness check's spans
marked, which plain Markdown cannot carry.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Text:
    text: str
    bold: bool = False


@dataclass(frozen=True)
class Table:
    head: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Image:
    name: str  # file stem next to report.md
    png: bytes


@dataclass(frozen=True)
class Code:
    text: str


@dataclass(frozen=True)
class Marked:
    """Text with stretches to point at (``(start, end)`` offsets), e.g. the facts of a summary
    its dialogue does not support: ``<mark>`` in HTML, ``⟦...⟧`` in Markdown."""

    text: str
    spans: tuple[tuple[int, int], ...]

    def pieces(self) -> list[tuple[str, bool]]:
        """The text cut into (piece, marked) in order."""
        out, at = [], 0
        for start, end in sorted(self.spans):
            out += [(self.text[at:start], False), (self.text[start:end], True)]
            at = end
        return [p for p in [*out, (self.text[at:], False)] if p[0]]


@dataclass(frozen=True)
class Item:
    """One evaluated item shown side by side: a title, its input, labelled outputs."""

    title: str
    source: str
    outputs: list[tuple[str, str | Marked]]


Block = Text | Table | Image | Code | Item


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)
    level: int = 2


@dataclass
class Report:
    title: str
    sections: list[Section]

    def images(self) -> list[Image]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Image)]


def png_of(fig) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


# -- Markdown -------------------------------------------------------------------------------------
def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_text(text: str | Marked) -> str:
    if isinstance(text, str):
        return text
    return "".join(f"⟦{piece}⟧" if marked else piece for piece, marked in text.pieces())


def _md_block(block: Block) -> str:
    if isinstance(block, Text):
        return f"**{block.text}**" if block.bold else block.text
    if isinstance(block, Table):
        lines = ["| " + " | ".join(map(_md_cell, block.head)) + " |", "|" + "---|" * len(block.head)]
        return "\n".join(lines + ["| " + " | ".join(map(_md_cell, row)) + " |" for row in block.rows])
    if isinstance(block, Image):
        return f"![{block.name}]({block.name}.png)"
    if isinstance(block, Code):
        return f"```\n{block.text}\n```"
    outputs = _md_block(Table(["", "text"], [[label, _md_text(text)] for label, text in block.outputs]))
    return f"**{block.title}**\n\n```\n{block.source}\n```\n\n{outputs}"


def to_markdown(report: Report) -> str:
    parts = [f"# {report.title}"]
    for section in report.sections:
        if section.title:
            parts.append("#" * section.level + " " + section.title)
        parts += [_md_block(b) for b in section.blocks]
    return "\n\n".join(parts) + "\n"


# -- HTML -----------------------------------------------------------------------------------------
STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;"
    "vertical-align:top}pre{background:#f6f6f6;padding:8px;white-space:pre-wrap}.item{margin-bottom:1.5em}"
    "img{max-width:100%}"
)


def _html_text(text: str | Marked) -> str:
    if isinstance(text, str):
        return html.escape(text)
    return "".join(
        f"<mark>{html.escape(p)}</mark>" if marked else html.escape(p) for p, marked in text.pieces()
    )


def _html_block(block: Block) -> str:
    esc = html.escape
    if isinstance(block, Text):
        return f"<p><b>{esc(block.text)}</b></p>" if block.bold else f"<p>{esc(block.text)}</p>"
    if isinstance(block, Table):
        head = "".join(f"<th>{esc(h)}</th>" for h in block.head)
        rows = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in block.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    if isinstance(block, Image):
        return f"<img alt='{esc(block.name)}' src='data:image/png;base64,{base64.b64encode(block.png).decode()}'>"
    if isinstance(block, Code):
        return f"<pre>{esc(block.text)}</pre>"
    outputs = "".join(
        f"<tr><th>{esc(label)}</th><td>{_html_text(text)}</td></tr>" for label, text in block.outputs
    )
    return f"<div class='item'><b>{esc(block.title)}</b><pre>{esc(block.source)}</pre><table>{outputs}</table></div>"


def to_html(report: Report) -> str:
    body = [f"<h1>{html.escape(report.title)}</h1>"]
    for section in report.sections:
        if section.title:
            body.append(f"<h{section.level}>{html.escape(section.title)}</h{section.level}>")
        body += [_html_block(b) for b in section.blocks]
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(report.title)}</title>'
        f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
