"""``report/index.html``: a report as one self-contained page that opens from the disk, with no server and no network.

Everything is in the file: the styles, a few lines of JavaScript written here (no library), the figures as PNG
and the example cases' pictures as JPEG data URIs. Its sections:

- **Tables**: Table 1 and Table 2 with the numbers, bold and marks of the Markdown and LaTeX tables and their
  captions, the statistics (``stats.csv``) and the rank stability (``ranks.csv``), the stress and ARC tables
  where the report has them; a click on a column header sorts the rows by it (numbers as numbers), again to
  reverse.
- **Figures**: interactive charts as inline SVG (:func:`chart_svg`; hovering a point shows its method and values:
  each method's mean Dice against SDlogJ, the trainings' validation Dice per epoch, Dice against a stress level),
  then every PNG figure of the report.
- **Cases**: every scored case of every method (``per_case.csv``) with its metrics, filtered by method and
  sortable; a case that is an example pair (``examples/``) opens its pictures for every method side by side
  (:func:`regbench.figures.case_panels`: fixed, moving, moved, difference, warped grid, Jacobian, label
  contours; for a volume, the mid-slice across each axis). Hovering a cell shows the method, case and metric.
- **Provenance**: per run directory, what its manifest records: regbench's version and commit, the profile, the
  dataset and its facts, the device and machine, the seeds, each method's provider and resolved options, and
  the trainings' threads and minutes.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .fileio import atomic_write_text
from .metrics import METRICS
from .naming import Names
from .registry import method_sort_key

PAGE = "index.html"


@dataclass(frozen=True)
class HtmlCell:
    """A table cell: its HTML, the value it sorts by (a number or text; None sorts last) and its hover text."""

    html: str
    sort: float | str | None = None
    title: str = ""


@dataclass(frozen=True)
class HtmlTable:
    id: str
    title: str
    headers: Sequence[str]
    rows: Sequence[Sequence[HtmlCell]]
    caption: str = ""


@dataclass
class HtmlPage:
    """What :func:`write_page` lays out; :mod:`regbench.report` fills it from what it wrote."""

    title: str
    tables: list[HtmlTable] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)  # PNG files
    charts: list[tuple[str, str]] = field(default_factory=list)  # (caption, inline SVG: chart_svg), before the figures
    per_case: pd.DataFrame = field(default_factory=pd.DataFrame)
    metrics: Sequence[str] = ()
    names: Names = field(default_factory=Names)
    examples: dict[str, list[tuple[str, bytes]]] = field(default_factory=dict)  # case id -> (view name, JPEG)
    no_pictures: str = "This run kept no example pairs (example_pairs: 0): no pictures."  # said where examples is empty
    # Per run directory: (a heading, Manifest.provenance(), Manifest.method_provenance()).
    provenance: list[tuple[str, Mapping[str, Any], Mapping[str, Mapping[str, Any]]]] = field(default_factory=list)


def text_cell(text: str, sort: float | str | None = None, title: str = "") -> HtmlCell:
    return HtmlCell(html.escape(text), text if sort is None else sort, title)


def number(value: Any) -> float | None:
    """A finite float of ``value``, else None (sorts last)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if np.isfinite(x) else None


def frame_table(frame: pd.DataFrame, id: str, title: str, caption: str = "", digits: int = 4) -> HtmlTable:
    """A CSV the report wrote, as a sortable table: numbers rounded to ``digits`` significant digits."""
    rows = []
    for record in frame.itertuples(index=False):
        cells = []
        for value in record:
            x = number(value) if not isinstance(value, (bool, np.bool_, str)) else None
            if x is not None:
                cells.append(text_cell(f"{x:.{digits}g}", x))
            else:
                cells.append(text_cell("" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)))
        rows.append(cells)
    return HtmlTable(id, title, [str(c) for c in frame.columns], rows, caption)


# ----------------------------------------------------------------------------------------------- the page
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1b1b1b;background:#fff}
header{background:#22313f;color:#fff;padding:.8em 1.5em}header h1{font-size:1.25em;margin:0}
nav{position:sticky;top:0;background:#f3f5f7;border-bottom:1px solid #d5dbe1;padding:.45em 1.5em;z-index:2}
nav a{margin-right:1.2em;color:#22313f;text-decoration:none;font-weight:600}
main{padding:0 1.5em 3em}section{margin-top:1.8em}h2{border-bottom:2px solid #22313f;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid #e1e5ea;padding:.25em .6em;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
table.sortable th{cursor:pointer;background:#f3f5f7;position:sticky;top:0}
th[data-order=asc]::after{content:" \\25B2"}th[data-order=desc]::after{content:" \\25BC"}
caption{caption-side:bottom;text-align:left;color:#555;font-size:.9em;max-width:70em;white-space:normal;padding-top:.4em}
.scroll{overflow-x:auto;max-height:70vh;overflow-y:auto}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #e1e5ea}figcaption{color:#555}
tr.example td:nth-child(2){font-weight:600;color:#0b5394;cursor:pointer}tr.picked td{background:#fff4c2}
.case-images img{max-width:100%}section,.case-images{scroll-margin-top:3em}dl{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em}
dt{font-weight:600}dd{margin:0;word-break:break-word}details{margin:.3em 0}
"""

SCRIPT = """
function sortKey(cell){const v=cell.dataset.v;if(v===undefined||v==='')return null;const x=Number(v);return isNaN(x)?v:x}
function sortBy(th){
  const table=th.closest('table'),body=table.tBodies[0],col=th.cellIndex,asc=th.dataset.order!=='asc';
  const rows=Array.from(body.rows);
  rows.sort((a,b)=>{const x=sortKey(a.cells[col]),y=sortKey(b.cells[col]);
    if(x===null)return y===null?0:1;if(y===null)return -1;
    const c=(typeof x==='number'&&typeof y==='number')?x-y:String(x).localeCompare(String(y));return asc?c:-c});
  rows.forEach(r=>body.appendChild(r));
  table.querySelectorAll('th').forEach(h=>delete h.dataset.order);th.dataset.order=asc?'asc':'desc';
}
document.querySelectorAll('table.sortable th').forEach(th=>th.addEventListener('click',()=>sortBy(th)));
const methodFilter=document.getElementById('method-filter');
if(methodFilter){methodFilter.addEventListener('change',()=>{
  document.querySelectorAll('#cases tbody tr').forEach(r=>{r.hidden=!!methodFilter.value&&r.dataset.method!==methodFilter.value})})}
function showCase(id){
  document.querySelectorAll('.case-images').forEach(d=>{d.hidden=d.dataset.case!==id});
  document.querySelectorAll('#cases tbody tr').forEach(r=>r.classList.toggle('picked',r.dataset.case===id));
  const shown=document.querySelector('.case-images:not([hidden])');if(shown)shown.scrollIntoView();
}
document.querySelectorAll('#cases tbody tr.example').forEach(r=>r.addEventListener('click',()=>showCase(r.dataset.case)));
"""


@dataclass(frozen=True)
class Series:
    """A line (or a set of dots) of an interactive chart: its legend label and its points (x, y, hover text)."""

    label: str
    points: Sequence[tuple[float, float, str]]
    dashed: bool = False


COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def chart_svg(series: Sequence[Series], x_label: str, y_label: str, joined: bool = True, width: int = 760, height: int = 380) -> str:
    """An inline SVG chart: per series its points (joined by a line where ``joined``), a colour each and a
    legend; hovering a point shows its text (an SVG ``<title>``: no script, no library). Empty where no point
    is finite."""
    drawn = [(k, s, [(x, y, t) for x, y, t in s.points if np.isfinite(x) and np.isfinite(y)]) for k, s in enumerate(series)]
    drawn = [(k, s, pts) for k, s, pts in drawn if pts]
    if not drawn:
        return ""
    legend_width = 230
    left, right, top, bottom = 64, legend_width, 12, 44
    xs = [x for _, _, pts in drawn for x, _, _ in pts]
    ys = [y for _, _, pts in drawn for _, y, _ in pts]

    def padded(lo: float, hi: float) -> tuple[float, float]:
        return (lo - 0.5, hi + 0.5) if hi == lo else (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))

    (x0, x1), (y0, y1) = padded(min(xs), max(xs)), padded(min(ys), max(ys))

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def py(y: float) -> float:
        return height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" class="chart">']
    parts.append(f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" fill="none" stroke="#aab4be"/>')
    for k in range(5):
        xv, yv = x0 + (k + 0.5) / 5 * (x1 - x0), y0 + (k + 0.5) / 5 * (y1 - y0)
        parts.append(f'<text x="{px(xv):.1f}" y="{height - bottom + 16}" text-anchor="middle" font-size="11">{xv:.3g}</text>')
        parts.append(f'<text x="{left - 6}" y="{py(yv) + 4:.1f}" text-anchor="end" font-size="11">{yv:.3g}</text>')
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 8}" text-anchor="middle" font-size="12">{html.escape(x_label)}</text>')
    parts.append(f'<text transform="translate(14 {(top + height - bottom) / 2}) rotate(-90)" text-anchor="middle" font-size="12">{html.escape(y_label)}</text>')
    for row, (k, one, pts) in enumerate(drawn):
        colour = COLOURS[k % len(COLOURS)]
        dash = ' stroke-dasharray="5 3"' if one.dashed else ""
        if joined and len(pts) > 1:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y, _ in sorted(pts))
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5"{dash}/>')
        for x, y, text in pts:
            parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" fill="{colour}" fill-opacity="0.85"><title>{html.escape(text)}</title></circle>')
        ly = top + 10 + 15 * row
        if ly < height - 10:
            parts.append(f'<line x1="{width - right + 12}" y1="{ly}" x2="{width - right + 30}" y2="{ly}" stroke="{colour}" stroke-width="2"{dash}/>')
            parts.append(f'<text x="{width - right + 35}" y="{ly + 4}" font-size="11">{html.escape(one.label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _cell_html(cell: HtmlCell) -> str:
    """A ``<td>`` with the value it sorts by (``data-v``) and its hover text."""
    sort = html.escape(str(cell.sort), quote=True) if cell.sort is not None else ""
    title = f' title="{html.escape(cell.title, quote=True)}"' if cell.title else ""
    return f'<td data-v="{sort}"{title}>{cell.html}</td>'


def _table_html(table: HtmlTable) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
    body = []
    for row in table.rows:
        cells = "".join(_cell_html(c) for c in row)
        body.append(f"<tr>{cells}</tr>")
    caption = f"<caption>{html.escape(table.caption)}</caption>" if table.caption else ""
    return (
        f'<h3 id="{table.id}-title">{html.escape(table.title)}</h3><div class="scroll"><table class="sortable" id="{table.id}">'
        f"{caption}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _data_uri(data: bytes, kind: str) -> str:
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"


def _charts_html(charts: Sequence[tuple[str, str]]) -> str:
    return "".join(f"<figure>{svg}<figcaption>{html.escape(caption)} Hover a point for its values.</figcaption></figure>" for caption, svg in charts if svg)


def _figures_html(figures: Sequence[Path]) -> str:
    parts = []
    for path in figures:
        parts.append(
            f'<figure id="figure-{html.escape(path.stem)}"><img alt="{html.escape(path.stem)}" src="{_data_uri(path.read_bytes(), "image/png")}">'
            f"<figcaption>{html.escape(path.stem.replace('_', ' '))} ({html.escape(path.name)})</figcaption></figure>"
        )
    return "".join(parts) or "<p>No figures: the report was written without them (<code>regbench report RUN</code> draws them).</p>"


CASE_COLUMNS = ("method", "dataset", "case_id", "subject", "seed", "status")


def _cases_html(per_case: pd.DataFrame, metrics: Sequence[str], names: Names, examples: Mapping[str, list[tuple[str, bytes]]], no_pictures: str) -> str:
    if per_case.empty:
        return "<p>No scored cases.</p>"
    methods = sorted(dict.fromkeys(per_case["method"]), key=method_sort_key)
    shown = [m for m in metrics if m in per_case]
    headers = ["Method", "Case", "Subject", "Seed", "Status", *(METRICS[m].label if m in METRICS else m for m in shown), "Reason"]
    rows = []
    for record in per_case.sort_values("method", key=lambda s: s.map({m: i for i, m in enumerate(methods)}), kind="stable").to_dict("records"):
        method, case = str(record["method"]), str(record["case_id"])
        example = case in examples
        cells = [
            text_cell(names.method(method), methods.index(method)),
            text_cell(case + (" ▸" if example else ""), case, "show its pictures" if example else ""),
            text_cell("" if pd.isna(record.get("subject")) else str(record.get("subject"))),
            text_cell("" if pd.isna(record.get("seed")) else f"{int(record['seed'])}", number(record.get("seed"))),
            text_cell(str(record.get("status", ""))),
        ]
        for metric in shown:
            x = number(record.get(metric))
            scale = METRICS[metric].table_scale if metric in METRICS else 1.0
            label = METRICS[metric].label if metric in METRICS else metric
            cells.append(text_cell("" if x is None else f"{scale * x:.4g}", x, f"{names.method(method)}, {case}: {label}"))
        cells.append(text_cell(str(record.get("reason") or "")))
        row = "".join(_cell_html(c) for c in cells)
        attributes = f'data-method="{html.escape(method, quote=True)}" data-case="{html.escape(case, quote=True)}"' + (' class="example"' if example else "")
        rows.append(f"<tr {attributes}>{row}</tr>")
    options = "".join(f'<option value="{html.escape(m, quote=True)}">{html.escape(names.method(m))}</option>' for m in methods)
    pictures = "".join(
        f'<div class="case-images" data-case="{html.escape(case, quote=True)}" hidden><h3>{html.escape(case)}</h3>'
        + "".join(
            f'<figure><img alt="{html.escape(case)} {html.escape(view)}" src="{_data_uri(data, "image/jpeg")}"><figcaption>{html.escape(case + (f", {view}" if view else ""))}</figcaption></figure>'
            for view, data in views
        )
        + "</div>"
        for case, views in examples.items()
    )
    note = (
        f"<p>{len(examples)} example case(s), marked ▸: click one for its pictures, every method side by side.</p>"
        if examples
        else f"<p>{html.escape(no_pictures)}</p>"
    )
    return (
        f'<label>Method <select id="method-filter"><option value="">every method</option>{options}</select></label>{note}'
        f'<div class="scroll"><table class="sortable" id="cases"><thead><tr>{"".join(f"<th>{html.escape(h)}</th>" for h in headers)}</tr></thead>'
        f'<tbody>{"".join(rows)}</tbody></table></div><div id="case-view">{pictures}</div>'
    )


def _provenance_html(provenance: Sequence[tuple[str, Mapping[str, Any], Mapping[str, Mapping[str, Any]]]]) -> str:
    parts = []
    for heading, facts, methods in provenance:
        rows = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in facts.items())
        details = []
        for method, info in methods.items():
            body = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in info.items())
            details.append(
                f"<details><summary>{html.escape(str(info.get('display name') or method))} ({html.escape(method)})</summary><dl>{body}</dl></details>"
            )
        parts.append(f"<h3>{html.escape(heading)}</h3><dl>{rows}</dl><h4>Methods</h4>{''.join(details)}")
    return "".join(parts)


def page_html(page: HtmlPage) -> str:
    """The whole page as text."""
    tables = "".join(_table_html(t) for t in page.tables)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        # No fetch of any kind: a page opened from the disk needs nothing else, and says so to the browser.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
        f"<title>{html.escape(page.title)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{html.escape(page.title)}</h1></header>"
        '<nav><a href="#tables">Tables</a><a href="#figures">Figures</a><a href="#cases-section">Cases</a><a href="#provenance">Provenance</a></nav><main>'
        f'<section id="tables"><h2>Tables</h2>{tables}</section>'
        f'<section id="figures"><h2>Figures</h2>{_charts_html(page.charts)}{_figures_html(page.figures)}</section>'
        f'<section id="cases-section"><h2>Cases</h2>{_cases_html(page.per_case, page.metrics, page.names, page.examples, page.no_pictures)}</section>'
        f'<section id="provenance"><h2>Provenance</h2>{_provenance_html(page.provenance)}</section>'
        f"</main><script>{SCRIPT}</script></body></html>\n"
    )


def write_page(out_dir: Path, page: HtmlPage) -> Path:
    """``out_dir/index.html``."""
    path = Path(out_dir) / PAGE
    atomic_write_text(path, page_html(page))
    return path
