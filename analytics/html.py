"""The HTML report: one self-contained page (inline CSS and SVG; no scripts, no links).

Charts: throughput over time (one line per queue), end-to-end latency percentiles by queue
(grouped bars), utilization by agent (horizontal bars); then every report table.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from .query import Table

if TYPE_CHECKING:  # pragma: no cover
    from .report import Report

__all__ = ["render_html", "line_chart", "bar_chart"]

PALETTE = ["#4269d0", "#efb118", "#ff725c", "#6cc5b0", "#3ca951", "#ff8ab7", "#a463f2",
           "#97bbf5", "#9c6b4e", "#9498a0"]
_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:2px 10px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
svg text{font:11px system-ui,sans-serif;fill:#333}.legend span{margin-right:1em}
"""


def _esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _fmt(v: Any) -> str:
    from .report import _cell
    return _cell(v)


def _legend(names: list[str]) -> str:
    return '<div class="legend">' + "".join(
        f'<span><svg width="10" height="10"><rect width="10" height="10" '
        f'fill="{PALETTE[i % len(PALETTE)]}"/></svg> {_esc(n)}</span>'
        for i, n in enumerate(names)) + "</div>"


def line_chart(series: dict[str, list[tuple[float, float]]], *, width: int = 900,
               height: int = 260, y_label: str = "") -> str:
    """An SVG line chart of ``{name: [(x, y), ...]}`` (x in seconds).

    >>> line_chart({"q": [(0, 1), (60, 3)]}).startswith("<svg")
    True
    """
    pts = [p for s in series.values() for p in s]
    if not pts:
        return "<p>(no data)</p>"
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y1 = max(max(p[1] for p in pts), 1e-9)
    ml, mb, mt, mr = 50, 25, 10, 10
    w, h = width - ml - mr, height - mb - mt

    def sx(x: float) -> float:
        return ml + (w * (x - x0) / (x1 - x0) if x1 > x0 else w / 2)

    def sy(y: float) -> float:
        return mt + h - h * y / y1

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'role="img">']
    for i in range(5):
        y = y1 * i / 4
        out.append(f'<line x1="{ml}" x2="{ml + w}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" '
                   f'stroke="#eee"/><text x="{ml - 4}" y="{sy(y) + 4:.1f}" '
                   f'text-anchor="end">{y:.3g}</text>')
    for i, (name, s) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        d = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in sorted(s))
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{d}">'
                   f'<title>{_esc(name)}</title></polyline>')
    out.append(f'<text x="{ml}" y="{height - 6}">{_esc(y_label)} — {(x1 - x0):,.0f} s '
               f'shown</text></svg>')
    return "".join(out)


def bar_chart(labels: list[str], groups: dict[str, list[float]], *, width: int = 900,
              horizontal: bool = False, unit: str = "") -> str:
    """An SVG grouped bar chart: one group per label, one bar per ``groups`` entry.

    >>> bar_chart(["a"], {"p50": [1.0]}).startswith("<svg")
    True
    """
    if not labels:
        return "<p>(no data)</p>"
    vmax = max([v for vals in groups.values() for v in vals if v is not None] + [1e-9])
    k = max(len(groups), 1)
    y: float
    bw: float
    bh: float
    if horizontal:
        bh, gap, ml = 14, 8, 160
        height = len(labels) * (bh * k + gap) + 20
        w = width - ml - 60
        out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">']
        for i, label in enumerate(labels):
            y = 10 + i * (bh * k + gap)
            out.append(f'<text x="{ml - 6}" y="{y + bh * k / 2 + 4}" text-anchor="end">'
                       f'{_esc(label)}</text>')
            for j, (name, vals) in enumerate(groups.items()):
                v = vals[i] or 0.0
                bw = w * v / vmax
                out.append(f'<rect x="{ml}" y="{y + j * bh}" width="{bw:.1f}" '
                           f'height="{bh - 2}" fill="{PALETTE[j % len(PALETTE)]}">'
                           f'<title>{_esc(name)}: {v:.3g}{unit}</title></rect>'
                           f'<text x="{ml + bw + 4:.1f}" y="{y + j * bh + bh - 4}">'
                           f'{v:.3g}{unit}</text>')
        out.append("</svg>")
        return "".join(out)
    height, mb, mt, ml = 260, 40, 10, 50
    h = height - mb - mt
    gw = (width - ml - 10) / len(labels)
    bw = max(gw * 0.8 / k, 1)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">']
    for i in range(5):
        y = vmax * i / 4
        py = mt + h - h * y / vmax
        out.append(f'<line x1="{ml}" x2="{width - 10}" y1="{py:.1f}" y2="{py:.1f}" '
                   f'stroke="#eee"/><text x="{ml - 4}" y="{py + 4:.1f}" '
                   f'text-anchor="end">{y:.3g}</text>')
    for i, label in enumerate(labels):
        gx = ml + i * gw + gw * 0.1
        for j, (name, vals) in enumerate(groups.items()):
            v = vals[i] or 0.0
            bh = h * v / vmax
            out.append(f'<rect x="{gx + j * bw:.1f}" y="{mt + h - bh:.1f}" width="{bw - 1:.1f}"'
                       f' height="{bh:.1f}" fill="{PALETTE[j % len(PALETTE)]}"><title>'
                       f'{_esc(label)} {_esc(name)}: {v:.4g}{unit}</title></rect>')
        out.append(f'<text x="{ml + i * gw + gw / 2:.1f}" y="{height - mb + 15}" '
                   f'text-anchor="middle">{_esc(label)}</text>')
    out.append("</svg>")
    return "".join(out)


def _table_html(t: Table) -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in t.columns)
    body = "".join("<tr>" + "".join(f"<td>{_esc(_fmt(v))}</td>" for v in row) + "</tr>"
                   for row in t.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: Report) -> str:
    """The report as one HTML page."""
    from .report import TITLES
    s = report.sections
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>eskernel report"
             f"</title><style>{_CSS}</style></head><body><h1>eskernel report</h1>",
             _table_html(s["summary"])]
    series = s["throughput_series"]
    by_q: dict[str, list[tuple[float, float]]] = {}
    t0 = None
    for row in series.to_dicts():
        x = row["interval_start"].timestamp()
        t0 = x if t0 is None else min(t0, x)
        by_q.setdefault(row["queue"], []).append((x, row["completed_per_s"]))
    by_q = {q: [(x - (t0 or 0), y) for x, y in pts] for q, pts in by_q.items()}
    parts += ["<h2>Throughput over time (completed tasks/s per "
              f"{report.meta.get('bucket_s', 60)} s interval)</h2>", _legend(list(by_q)),
              line_chart(by_q, y_label="tasks/s")]
    lat = [r for r in s["latency"].to_dicts() if r["by"] == "queue"]
    parts += ["<h2>End-to-end latency by queue (seconds)</h2>",
              _legend(["p50", "p95", "p99"]),
              bar_chart([r["key"] for r in lat],
                        {p: [r[f"e2e_{p}_s"] for r in lat] for p in ("p50", "p95", "p99")},
                        unit=" s")]
    ag = s["agent_utilization"].to_dicts()
    parts += ["<h2>Utilization by agent (leased time ÷ capacity × window)</h2>",
              bar_chart([r["agent"] for r in ag],
                        {"utilization": [r["utilization"] for r in ag]}, horizontal=True)]
    for name, table in s.items():
        if name in ("summary", "throughput_series"):
            continue
        parts += [f"<h2>{_esc(TITLES.get(name, name))}</h2>", _table_html(table)]
    parts.append("</body></html>")
    return "\n".join(parts)
