"""The HTML report: one self-contained page (inline CSS and SVG; no scripts, no links).

The page stays a plain file that opens anywhere, is safe to mail and archive, and renders
the same offline: hence SVG drawn here rather than a JavaScript charting library.

Charts: completions over time as one small chart per queue (so no series hides another),
every interval of the window drawn, empty ones as zero, on a time axis with round ticks
(UTC); end-to-end latency percentiles by queue; utilization by agent and by queue on a
fixed 0-100 % scale; failures (failed attempts, expiries, dead letters) by queue and by
agent.  Then every report table, each scrolling inside its own box when it is wide.
"""

from __future__ import annotations

import datetime
import html
import math
from typing import TYPE_CHECKING, Any

from .query import Table

if TYPE_CHECKING:  # pragma: no cover
    from .report import Report

__all__ = ["render_html", "line_chart", "bar_chart", "nice_ticks", "time_ticks",
           "column_chart", "hbar_chart"]

PALETTE = ["#4269d0", "#efb118", "#ff725c", "#6cc5b0", "#3ca951", "#ff8ab7", "#a463f2",
           "#97bbf5", "#9c6b4e", "#9498a0"]
_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:1000px;padding:0 1em;
color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
h3{font-size:1em;margin:1em 0 .3em}
p.note{color:#555;margin:.2em 0 .6em}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:2px 10px;text-align:right;
vertical-align:top}
th{background:#f3f3f3;white-space:nowrap}td:first-child,th:first-child{text-align:left}
td{white-space:nowrap}td.long{white-space:normal;min-width:16em;max-width:40em;
overflow-wrap:anywhere}
svg{display:block;max-width:100%;height:auto}
svg text{font:11px system-ui,sans-serif;fill:#333}svg .title{font-weight:600}
.legend span{margin-right:1em}
"""
_AXIS = "#999"
_GRID = "#eee"


def _esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _fmt(v: Any) -> str:
    from .report import _cell
    return _cell(v)


def _num(v: float) -> str:
    # A tick label: no float noise (0.30000000000000004) and no needless decimals.
    return f"{v:,.0f}" if abs(v) >= 100 or v == int(v) else f"{v:.4g}"


def _svg(width: float, height: float) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" '
            f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" role="img">')


def _legend(names: list[str]) -> str:
    return '<div class="legend">' + "".join(
        f'<span><svg width="10" height="10" style="display:inline"><rect width="10" '
        f'height="10" fill="{PALETTE[i % len(PALETTE)]}"/></svg> {_esc(n)}</span>'
        for i, n in enumerate(names)) + "</div>"


def nice_ticks(vmax: float, n: int = 4) -> list[float]:
    """Round axis ticks from 0 to at least ``vmax``: steps of 1, 2 or 5 times a power of 10.

    >>> nice_ticks(0.7)
    [0.0, 0.2, 0.4, 0.6, 0.8]
    >>> nice_ticks(37)
    [0.0, 10.0, 20.0, 30.0, 40.0]
    >>> nice_ticks(0)
    [0.0, 1.0]
    """
    if not vmax > 0 or not math.isfinite(vmax):
        return [0.0, 1.0]
    raw = vmax / max(n, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw * (1 - 1e-9))
    count = math.ceil(vmax / step - 1e-9)
    return [round(i * step, 12) for i in range(count + 1)]


# Round steps for a time axis, in seconds.
_TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
               43200, 86400, 172800, 604800)


def time_ticks(t0: float, t1: float, n: int = 8) -> tuple[list[float], str]:
    """Round times (epoch seconds) inside ``[t0, t1]`` for at most ``n`` labels, and the
    ``strftime`` format that shows them (UTC).

    >>> ticks, fmt = time_ticks(1_700_000_005, 1_700_000_300)
    >>> [datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(fmt)
    ...  for t in ticks][:3], fmt
    (['22:14', '22:15', '22:16'], '%H:%M')
    """
    span = max(t1 - t0, 1e-9)
    step = next((s for s in _TIME_STEPS if span / s <= n), _TIME_STEPS[-1])
    first = math.ceil(t0 / step) * step
    ticks = []
    t = first
    while t <= t1 + 1e-9:
        ticks.append(float(t))
        t += step
    fmt = "%H:%M:%S" if step < 60 else "%H:%M" if step < 86400 else "%m-%d"
    return ticks, fmt


def _utc(t: float, fmt: str) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(fmt)


def column_chart(title: str, buckets: list[tuple[float, float]], bucket_s: float,
                 t0: float, t1: float, *, width: int = 960, height: int = 120,
                 color: str = PALETTE[0], unit: str = "") -> str:
    """One small chart of values per interval: ``buckets`` is ``[(interval start, value)]``
    (epoch seconds) covering the window ``[t0, t1)``, zeros included, on a time axis.

    >>> column_chart("q", [(0, 1.0), (60, 0.0)], 60, 0, 120).count("<rect")
    2
    """
    ml, mr, mt, mb = 56, 12, 18, 22
    w, h = width - ml - mr, height - mt - mb
    ys = nice_ticks(max([v for _, v in buckets] + [0.0]), 3)
    top = ys[-1]
    span = max(t1 - t0, 1e-9)

    def sx(t: float) -> float:
        return ml + w * (t - t0) / span

    def sy(v: float) -> float:
        return mt + h - h * v / top

    out = [_svg(width, height), f'<text class="title" x="{ml}" y="12">{_esc(title)}</text>']
    for y in ys:
        out.append(f'<line x1="{ml}" x2="{ml + w}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" '
                   f'stroke="{_GRID}"/><text x="{ml - 4}" y="{sy(y) + 4:.1f}" '
                   f'text-anchor="end">{_num(y)}</text>')
    for start, v in buckets:
        x0, x1 = max(sx(start), ml), min(sx(start + bucket_s), ml + w)
        bw = max(x1 - x0 - (1 if x1 - x0 > 3 else 0), 0.5)
        out.append(f'<rect x="{x0:.1f}" y="{sy(v):.1f}" width="{bw:.1f}" '
                   f'height="{sy(0) - sy(v):.1f}" fill="{color}"><title>'
                   f'{_utc(start, "%Y-%m-%d %H:%M:%S")} UTC: {v:.4g}{unit}</title></rect>')
    ticks, fmt = time_ticks(t0, t1)
    out.append(f'<line x1="{ml}" x2="{ml + w}" y1="{sy(0):.1f}" y2="{sy(0):.1f}" '
               f'stroke="{_AXIS}"/>')
    for t in ticks:
        out.append(f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{sy(0):.1f}" '
                   f'y2="{sy(0) + 4:.1f}" stroke="{_AXIS}"/><text x="{sx(t):.1f}" '
                   f'y="{height - 6}" text-anchor="middle">{_utc(t, fmt)}</text>')
    out.append("</svg>")
    return "".join(out)


def hbar_chart(labels: list[str], values: list[float | None], *, width: int = 960,
               vmax: float | None = None, percent: bool = False,
               color: str = PALETTE[0]) -> str:
    """Horizontal bars with a value axis: on 0..``vmax`` (``percent``: 0-100 % for values
    in 0..1; a value above the scale is drawn to the end and labelled with its value; a
    None draws no bar).

    >>> "100%" in hbar_chart(["a"], [0.5], vmax=1.0, percent=True)
    True
    """
    if not labels:
        return "<p>(no data)</p>"
    missing = [v is None or v != v for v in values]
    vals = [0.0 if m else float(v) for v, m in zip(values, missing)]  # type: ignore[arg-type]
    ticks = nice_ticks(vmax if vmax is not None else max(vals + [0.0]), 4)
    if vmax is not None:
        ticks = [t for t in ticks if t <= vmax + 1e-12]
    top = ticks[-1]
    ml = min(14 + 7 * max(len(str(x)) for x in labels), 260)
    mr, bh, gap, mt = 70, 16, 6, 6
    w = width - ml - mr
    height = mt + len(labels) * (bh + gap) + 24

    def label(v: float) -> str:
        return f"{v * 100:.0f}%" if percent else _num(v)

    out = [_svg(width, height)]
    base = mt + len(labels) * (bh + gap)
    for t in ticks:
        x = ml + w * t / top
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{mt}" y2="{base}" stroke="{_GRID}"/>'
                   f'<text x="{x:.1f}" y="{base + 14}" text-anchor="middle">{label(t)}</text>')
    for i, (name, v) in enumerate(zip(labels, vals)):
        y = mt + i * (bh + gap)
        bw = w * min(v, top) / top
        shown = ("no limit" if missing[i] else f"{v * 100:.1f}%" if percent else f"{v:.4g}")
        out.append(f'<text x="{ml - 6}" y="{y + bh - 4}" text-anchor="end">{_esc(name)}</text>'
                   f'<rect x="{ml}" y="{y}" width="{bw:.1f}" height="{bh}" fill="{color}">'
                   f'<title>{_esc(name)}: {shown}</title></rect>'
                   f'<text x="{ml + bw + 4:.1f}" y="{y + bh - 4}">{shown}</text>')
    out.append(f'<line x1="{ml}" x2="{ml}" y1="{mt}" y2="{base}" stroke="{_AXIS}"/></svg>')
    return "".join(out)


def bar_chart(labels: list[str], groups: dict[str, list[float]], *, width: int = 960,
              height: int = 260, unit: str = "") -> str:
    """Grouped vertical bars: one group per label, one bar per ``groups`` entry, on round
    value ticks.

    >>> bar_chart(["a"], {"p50": [1.0]}).startswith("<svg")
    True
    """
    if not labels:
        return "<p>(no data)</p>"
    vals = [v for vs in groups.values() for v in vs if v is not None and v == v]
    ys = nice_ticks(max(vals + [0.0]), 4)
    top = ys[-1]
    ml, mr, mt, mb = 56, 12, 10, 40
    h = height - mt - mb
    gw = (width - ml - mr) / len(labels)
    k = max(len(groups), 1)
    bw = max(gw * 0.8 / k, 1)
    out = [_svg(width, height)]
    for y in ys:
        py = mt + h - h * y / top
        out.append(f'<line x1="{ml}" x2="{width - mr}" y1="{py:.1f}" y2="{py:.1f}" '
                   f'stroke="{_GRID}"/><text x="{ml - 4}" y="{py + 4:.1f}" '
                   f'text-anchor="end">{_num(y)}{_esc(unit)}</text>')
    for i, name in enumerate(labels):
        gx = ml + i * gw + gw * 0.1
        for j, (series, vs) in enumerate(groups.items()):
            v = vs[i] if vs[i] is not None and vs[i] == vs[i] else 0.0
            bh = h * v / top
            out.append(f'<rect x="{gx + j * bw:.1f}" y="{mt + h - bh:.1f}" '
                       f'width="{max(bw - 1, 0.5):.1f}" height="{bh:.1f}" '
                       f'fill="{PALETTE[j % len(PALETTE)]}"><title>{_esc(name)} '
                       f'{_esc(series)}: {v:.4g}{_esc(unit)}</title></rect>')
        out.append(f'<text x="{ml + i * gw + gw / 2:.1f}" y="{height - mb + 15}" '
                   f'text-anchor="middle">{_esc(name)}</text>')
    out.append(f'<line x1="{ml}" x2="{width - mr}" y1="{mt + h}" y2="{mt + h}" '
               f'stroke="{_AXIS}"/></svg>')
    return "".join(out)


def line_chart(series: dict[str, list[tuple[float, float]]], *, width: int = 960,
               height: int = 260, y_label: str = "") -> str:
    """Lines of ``{name: [(x seconds, y), ...]}`` on round ticks (kept for callers that
    draw their own series; the report uses :func:`column_chart`).

    >>> line_chart({"q": [(0, 1), (60, 3)]}).startswith("<svg")
    True
    """
    pts = [p for s in series.values() for p in s]
    if not pts:
        return "<p>(no data)</p>"
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    ys = nice_ticks(max(p[1] for p in pts), 4)
    top = ys[-1]
    ml, mb, mt, mr = 56, 25, 10, 12
    w, h = width - ml - mr, height - mb - mt

    def sx(x: float) -> float:
        return ml + (w * (x - x0) / (x1 - x0) if x1 > x0 else w / 2)

    def sy(y: float) -> float:
        return mt + h - h * y / top

    out = [_svg(width, height)]
    for y in ys:
        out.append(f'<line x1="{ml}" x2="{ml + w}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" '
                   f'stroke="{_GRID}"/><text x="{ml - 4}" y="{sy(y) + 4:.1f}" '
                   f'text-anchor="end">{_num(y)}</text>')
    for i, (name, s) in enumerate(series.items()):
        d = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in sorted(s))
        out.append(f'<polyline fill="none" stroke="{PALETTE[i % len(PALETTE)]}" '
                   f'stroke-width="1.8" points="{d}"><title>{_esc(name)}</title></polyline>')
    out.append(f'<text x="{ml}" y="{height - 6}">{_esc(y_label)}</text></svg>')
    return "".join(out)


def _table_html(t: Table) -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in t.columns)
    def cell(v: Any) -> str:
        text = _fmt(v)
        return f'<td class="long">{_esc(text)}</td>' if len(text) > 40 else f"<td>{_esc(text)}</td>"

    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in t.rows)
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}'
            f"</tbody></table></div>")


def _throughput(report: Report) -> list[str]:
    # One small chart per queue over the whole window, every interval drawn (zero when
    # nothing completed in it), each on its own round scale.
    bucket = int(report.meta.get("bucket_s", 60))
    lo = report.meta.get("window_start_ns", 0) / 1e9
    hi = report.meta.get("window_end_ns", 0) / 1e9
    counts: dict[str, dict[int, int]] = {}
    for row in report.sections["throughput_series"].to_dicts():
        start = row["interval_start"].replace(tzinfo=datetime.timezone.utc).timestamp()
        counts.setdefault(row["queue"], {})[round(start / bucket)] = row["completed"]
    first, last = math.floor(lo / bucket), math.floor(max(hi - 1e-9, lo) / bucket)
    note = (f"Tasks completed per {bucket} s interval, one chart per queue, each on its own "
            f"scale; times in UTC, {_utc(lo, '%Y-%m-%d %H:%M:%S')} to "
            f"{_utc(hi, '%H:%M:%S')}.")
    parts = ["<h2>Completed tasks over time</h2>", f'<p class="note">{_esc(note)}</p>']
    if not counts or last - first > 5000:
        return parts + ["<p>(no completions in the window)</p>" if not counts else
                        "<p>(too many intervals to draw; pass a larger --bucket)</p>"]
    for i, (queue, per) in enumerate(sorted(counts.items())):
        buckets = [(float(k * bucket), float(per.get(k, 0))) for k in range(first, last + 1)]
        parts.append(column_chart(f"{queue} — {sum(per.values())} completed", buckets, bucket,
                                  lo, max(hi, lo + bucket), color=PALETTE[i % len(PALETTE)],
                                  unit=" tasks"))
    return parts


def _failures(failures: Table) -> list[str]:
    parts = ["<h2>Failures</h2>", '<p class="note">Failed attempts, lease expiries and dead '
             "letters, by queue and by agent.</p>"]
    kinds = ("failed", "expired", "dead_lettered")
    for by in ("queue", "agent"):
        rows = [r for r in failures.to_dicts() if r["by"] == by]
        if rows:
            parts += [f"<h3>By {by}</h3>", _legend([f"{k.replace('_', ' ')}" for k in kinds]),
                      bar_chart([str(r["key"]) for r in rows],
                                {k: [float(r[k] or 0) for r in rows] for k in kinds},
                                height=200)]
    return parts


def render_html(report: Report) -> str:
    """The report as one HTML page."""
    from .report import TITLES
    s = report.sections
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><meta name='viewport' "
             "content='width=device-width'><title>eskernel report</title>"
             f"<style>{_CSS}</style></head><body><h1>eskernel report</h1>",
             _table_html(s["summary"])]
    parts += _throughput(report)
    lat = [r for r in s["latency"].to_dicts() if r["by"] == "queue"]
    parts += ["<h2>End-to-end latency by queue</h2>",
              '<p class="note">Percentiles of submit-to-finish time of completed tasks, in '
              "seconds.</p>", _legend(["p50", "p95", "p99"]),
              bar_chart([r["key"] for r in lat],
                        {p: [r[f"e2e_{p}_s"] for r in lat] for p in ("p50", "p95", "p99")},
                        unit=" s")]
    ag = s["agent_utilization"].to_dicts()
    qu = s["queue_utilization"].to_dicts()
    parts += ["<h2>Utilization</h2>",
              '<p class="note">Agents: leased time ÷ (capacity × window). Queues: average '
              "running ÷ max_concurrent (unlimited queues have no bar).</p>",
              "<h3>By agent</h3>",
              hbar_chart([r["agent"] for r in ag], [r["utilization"] for r in ag],
                         vmax=1.0, percent=True),
              "<h3>By queue</h3>",
              hbar_chart([r["queue"] for r in qu], [r["utilization"] for r in qu],
                         vmax=1.0, percent=True, color=PALETTE[3])]
    parts += _failures(s["failures"])
    for name, table in s.items():
        if name in ("summary", "throughput_series"):
            continue
        parts += [f"<h2>{_esc(TITLES.get(name, name))}</h2>", _table_html(table)]
    parts.append("</body></html>")
    return "\n".join(parts)
