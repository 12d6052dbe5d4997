"""One small document model for every report facescope writes (evaluation and audit reports, the model
card, dataset statistics): sections of paragraphs, bullet lists, tables and images, rendered to
Markdown, to one self-contained HTML file (images inline as base64 PNG, no external asset), or to
plain JSON for the API. Tables are rendered here and nowhere else.

Light on purpose (standard library only): the web server imports it to serve the model card.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from numbers import Integral, Number

Cell = str | Number | None
# A spreadsheet runs a cell starting with one of these as a formula (a file named "=HYPERLINK(...).jpg").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value):
    """A value for a CSV cell: text a spreadsheet would run as a formula gets a leading `'`, so it is
    shown as text and never evaluated; anything else is returned as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def format_number(value: Cell, digits: int = 3) -> str:
    """A cell as text: integers with thousands separators, other numbers to `digits` significant
    figures (never rounding a small value such as 0.0005 away), missing values as an en dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool) or not isinstance(value, Number):
        return str(value)
    if isinstance(value, Integral) or (float(value).is_integer() and abs(value) >= 10):
        return f"{int(value):,}"
    if abs(value) >= 10 ** digits:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def markdown_table(columns: list[str], rows: list[list[Cell]], numeric: list[bool] | None = None) -> str:
    """A GitHub-flavoured Markdown table; numeric columns right-aligned."""
    numeric = numeric or [all(isinstance(row[i], Number) or row[i] is None for row in rows) and bool(rows)
                          for i in range(len(columns))]
    text = [[_escape_cell(c if isinstance(c, str) else format_number(c)) for c in row] for row in rows]
    lines = ["| " + " | ".join(_escape_cell(c) for c in columns) + " |",
             "|" + "|".join("---:" if right else "---" for right in numeric) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in text]
    return "\n".join(lines)


def _escape_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Cell]]
    caption: str = ""
    muted: list[bool] = field(default_factory=list)  # rows shown greyed (too small to compare)

    def to_dict(self) -> dict:
        """JSON-able: numbers as numbers (numpy's as Python's), NaN as None, anything else as text."""
        return {"columns": list(self.columns), "rows": [[_json_cell(c) for c in row] for row in self.rows]}


def _json_cell(cell: Cell) -> str | int | float | None:
    if cell is None or isinstance(cell, str):
        return cell
    if isinstance(cell, Number) and not isinstance(cell, bool):
        value = cell.item() if hasattr(cell, "item") else cell
        return None if isinstance(value, float) and math.isnan(value) else value
    return str(cell)


@dataclass
class Image:
    name: str  # file name of the PNG written beside report.md
    png: bytes
    alt: str


@dataclass
class Section:
    """A titled section; `blocks` are str (a paragraph), list[str] (bullets), Table, Image or Section."""

    title: str
    blocks: list = field(default_factory=list)

    def add(self, *blocks) -> Section:
        self.blocks.extend(blocks)
        return self

    def to_dict(self) -> dict:
        """The API form: title, paragraphs (bullets joined as "- " lines) and tables; images left out."""
        paragraphs, tables = [], []
        for block in self.blocks:
            if isinstance(block, str):
                paragraphs.append(block)
            elif isinstance(block, list):
                paragraphs.extend(f"- {item}" for item in block)
            elif isinstance(block, Table):
                tables.append(block.to_dict())
        return {"title": self.title, "paragraphs": paragraphs, "tables": tables}


@dataclass
class Document:
    title: str
    sections: list[Section] = field(default_factory=list)
    intro: list = field(default_factory=list)

    def images(self) -> list[Image]:
        found = []

        def walk(blocks):
            for block in blocks:
                if isinstance(block, Image):
                    found.append(block)
                elif isinstance(block, Section):
                    walk(block.blocks)
        walk(self.intro)
        for section in self.sections:
            walk(section.blocks)
        return found

    def to_markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        _markdown_blocks(self.intro, lines, 2)
        for section in self.sections:
            _markdown_blocks([section], lines, 2)
        return "\n".join(lines).rstrip() + "\n"

    def to_html(self) -> str:
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        _html_blocks(self.intro, body, 2)
        for section in self.sections:
            _html_blocks([section], body, 2)
        return HTML_PAGE.format(title=html.escape(self.title), body="\n".join(body))


def _markdown_blocks(blocks: list, lines: list[str], level: int) -> None:
    for block in blocks:
        if isinstance(block, Section):
            lines += [f"{'#' * min(level, 6)} {block.title}", ""]
            _markdown_blocks(block.blocks, lines, level + 1)
        elif isinstance(block, str):
            lines += [block, ""]
        elif isinstance(block, list):
            lines += [f"- {item}" for item in block] + [""]
        elif isinstance(block, Table):
            rows = [[(f"_{c}_" if isinstance(c, str) and c else c) if muted else c for c in row]
                    for row, muted in zip(block.rows, block.muted or [False] * len(block.rows))]
            if block.caption:
                lines += [block.caption, ""]
            lines += [markdown_table(block.columns, rows), ""]
        elif isinstance(block, Image):
            lines += [f"![{block.alt}]({block.name})", ""]


def _html_blocks(blocks: list, body: list[str], level: int) -> None:
    for block in blocks:
        if isinstance(block, Section):
            tag = f"h{min(level, 6)}"
            body.append(f"<section><{tag}>{html.escape(block.title)}</{tag}>")
            _html_blocks(block.blocks, body, level + 1)
            body.append("</section>")
        elif isinstance(block, str):
            body.append(f"<p>{_inline(block)}</p>")
        elif isinstance(block, list):
            body.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block) + "</ul>")
        elif isinstance(block, Table):
            body.append(_html_table(block))
        elif isinstance(block, Image):
            data = base64.b64encode(block.png).decode("ascii")
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.alt)}">'
                        f"</figure>")


def _inline(text: str) -> str:
    """Escape, then the two Markdown marks the reports use: **bold** and `code`."""
    import re

    escaped = html.escape(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)


def _html_table(table: Table) -> str:
    numeric = [all(isinstance(row[i], Number) or row[i] is None for row in table.rows) and bool(table.rows)
               for i in range(len(table.columns))]
    head = "".join(f'<th class="{"num" if n else ""}">{html.escape(str(c))}</th>'
                   for c, n in zip(table.columns, numeric))
    rows = []
    for row, muted in zip(table.rows, table.muted or [False] * len(table.rows)):
        texts = [c if isinstance(c, str) else format_number(c) for c in row]
        # Short cells ("93.6% (92.6% – 94.7%)") never wrap: a wide table scrolls instead of breaking figures.
        cells = "".join(f'<td class="{"num" if n else ""}{" nw" if len(t) <= 32 else ""}">{_inline(t)}</td>'
                        for t, n in zip(texts, numeric))
        rows.append(f'<tr class="{"muted" if muted else ""}">{cells}</tr>')
    caption = f"<caption>{_inline(table.caption)}</caption>" if table.caption else ""
    return (f'<div class="table"><table>{caption}<thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


HTML_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; line-height: 1.5; color: #1b1b1b;
       max-width: 64rem; margin: 0 auto; padding: 1rem; }}
h1 {{ font-size: 1.7rem; }} h2 {{ border-bottom: 1px solid #ccc; padding-bottom: .2rem; margin-top: 2rem; }}
.table {{ overflow-x: auto; margin: .5rem 0 1rem; }}
table {{ border-collapse: collapse; font-size: .9rem; }}
caption {{ text-align: left; font-style: italic; padding-bottom: .3rem; }}
th, td {{ border-bottom: 1px solid #ddd; padding: .25rem .6rem; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }} td.nw {{ white-space: nowrap; }} .num {{ text-align: right; font-variant-numeric: tabular-nums; }}
tr.muted td {{ color: #999; font-style: italic; }}
figure {{ margin: 1rem 0; overflow-x: auto; }} img {{ max-width: 100%; height: auto; }}
@media (max-width: 48rem) {{ figure img {{ max-width: none; }} }}  /* phones: scroll a wide chart, never shrink it */
code {{ background: #f3f3f3; padding: 0 .2rem; }}
</style>
</head>
<body>
{body}
</body>
</html>
"""
