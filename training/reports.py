"""Self-contained HTML reports: sections of text, tables and matplotlib figures embedded as base64 PNGs.

One file, no external assets, so a report can be mailed, attached to a model review or opened from an S3
console.  Every report is also written as JSON beside the HTML; the HTML is for people, the JSON for tools.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#222;
padding:0 1rem;line-height:1.45}
h1{border-bottom:2px solid #444;padding-bottom:.3rem}h2{margin-top:2.2rem;border-bottom:1px solid #bbb}
table{border-collapse:collapse;margin:.6rem 0;font-size:.86rem}td,th{border:1px solid #ccc;padding:.25rem .5rem;
vertical-align:top;text-align:left}th{background:#f2f2f2}td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;height:auto;margin:.4rem 0}.warn{background:#fff4e5;border-left:4px solid #f0a020;
padding:.4rem .8rem;margin:.3rem 0}.note{color:#555;font-size:.9rem}nav a{margin-right:1rem}
code{background:#f4f4f4;padding:0 .2rem}
"""


def figure_png(figure: Any, *, dpi: int = 90) -> str:
    """A matplotlib figure as a base64 PNG string."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def new_figure(width: float = 7.0, height: float = 3.5, **subplots: Any) -> tuple[Any, Any]:
    """A figure and its axes (``Figure.subplots`` arguments), outside pyplot.

    No backend is involved: reports render without a display, nothing is shown twice in a notebook (which
    displays the returned figure), and figures are freed with their last reference instead of piling up in
    pyplot's registry.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    return figure, figure.subplots(**subplots)


def escape(value: object) -> str:
    return html.escape(str(value), quote=True)


def format_value(value: object, digits: int = 4) -> str:
    """Numbers compactly (4 significant digits), everything else as text."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "∞" if value > 0 else "-∞"
        return f"{value:.{digits}g}"
    return str(value)


def table_html(frame: pd.DataFrame, *, max_rows: int = 50, max_chars: int = 160, index: bool = False) -> str:
    """A DataFrame as an HTML table: long cells truncated, numbers right-aligned, at most ``max_rows`` rows."""
    shown = frame.head(max_rows)
    columns = ([shown.index.name or ""] if index else []) + [str(c) for c in shown.columns]
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    rows = []
    for label, row in zip(shown.index, shown.itertuples(index=False), strict=True):
        cells = [label] if index else []
        cells += list(row)
        parts = []
        for cell in cells:
            numeric = isinstance(cell, (int, float)) and not isinstance(cell, bool)
            text = format_value(cell.item() if hasattr(cell, "item") else cell)
            if len(text) > max_chars:
                text = text[: max_chars - 1] + "…"
            parts.append(f'<td class="num">{escape(text)}</td>' if numeric else f"<td>{escape(text)}</td>")
        rows.append("<tr>" + "".join(parts) + "</tr>")
    more = f'<p class="note">showing {len(shown)} of {len(frame)} rows</p>' if len(frame) > len(shown) else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{more}"


def records_table(records: Sequence[Mapping[str, object]], **kwargs: Any) -> str:
    return table_html(pd.DataFrame(list(records)), **kwargs) if records else '<p class="note">none</p>'


@dataclass
class Section:
    """One ``<section id=…>`` of a report: paragraphs/tables as HTML, then figures as PNGs."""

    id: str
    title: str
    parts: list[str] = field(default_factory=list)
    images: list[tuple[str, str]] = field(default_factory=list)
    """``(alt text, base64 PNG)``."""

    def text(self, text: str) -> Section:
        self.parts.append(f"<p>{escape(text)}</p>")
        return self

    def html(self, fragment: str) -> Section:
        self.parts.append(fragment)
        return self

    def warning(self, text: str) -> Section:
        self.parts.append(f'<div class="warn">{escape(text)}</div>')
        return self

    def table(self, frame: pd.DataFrame, **kwargs: Any) -> Section:
        self.parts.append(table_html(frame, **kwargs))
        return self

    def figure(self, figure: Any, alt: str) -> Section:
        self.images.append((alt, figure_png(figure)))
        return self

    def render(self) -> str:
        images = "".join(
            f'<figure><img alt="{escape(alt)}" src="data:image/png;base64,{png}"></figure>'
            for alt, png in self.images
        )
        return f'<section id="{escape(self.id)}"><h2>{escape(self.title)}</h2>{"".join(self.parts)}{images}</section>'


def render_page(title: str, sections: Sequence[Section], *, subtitle: str = "") -> str:
    """A complete HTML document with a table of contents."""
    nav = "".join(f'<a href="#{escape(s.id)}">{escape(s.title)}</a>' for s in sections)
    body = "".join(section.render() for section in sections)
    sub = f'<p class="note">{escape(subtitle)}</p>' if subtitle else ""
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>{sub}<nav>{nav}</nav>{body}</body></html>"
    )


def json_ready(value: Any) -> Any:
    """Numpy/pandas scalars → Python; NaN → None; ±∞ → "Infinity"/"-Infinity" (Clarify's spelling)."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, TypeError):
            return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def write_json(path: Path, payload: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_ready(payload), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def write_html(path: Path, page: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
