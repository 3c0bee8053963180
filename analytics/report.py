"""The standard report: status counts, throughput, latency percentiles, utilization and
failures, as :class:`~eskernel.analytics.query.Table` sections, rendered as text, JSON, CSV or HTML.

>>> import tempfile
>>> from eskernel.eventlog import EventLog
>>> from eskernel.analytics import Projection
>>> d = tempfile.mkdtemp()
>>> with EventLog.open(d) as log:
...     _ = log.append(b'{"v":1,"t":"queue_declared","ts":0,"queue":"q",'
...                    b'"max_concurrent":1,"paused":false}')
>>> with Projection(d) as p:
...     _ = p.refresh()
...     r = build_report(p)
>>> list(r.sections)[:3]
['summary', 'status', 'throughput']
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import json
from typing import TYPE_CHECKING, Any

from .errors import ProjectionError
from .query import Table

if TYPE_CHECKING:  # pragma: no cover
    from .projection import Projection

__all__ = ["Report", "build_report", "format_table", "TITLES", "peak_rates", "bucket_cover"]

_EPOCH = datetime.datetime(1970, 1, 1)

TITLES = {
    "summary": "Summary",
    "status": "Tasks by status",
    "throughput": "Throughput by queue",
    "throughput_series": "Throughput over time",
    "latency": "Latency percentiles of completed tasks (seconds)",
    "agent_utilization": "Utilization by agent",
    "queue_utilization": "Utilization by queue",
    "failures": "Failures by queue and agent",
}


@dataclasses.dataclass
class Report:
    """A rendered-ready report: ordered sections (name -> :class:`Table`) and metadata."""

    sections: dict[str, Table]
    meta: dict[str, Any]

    def to_json_obj(self) -> dict[str, Any]:
        """``{"meta": {...}, "<section>": [row dicts], ...}`` (JSON-able)."""
        out: dict[str, Any] = {"meta": self.meta}
        for name, table in self.sections.items():
            out[name] = [_jsonable_row(r) for r in table.to_dicts()]
        return out

    def to_json(self) -> str:
        """The report as a JSON document."""
        return json.dumps(self.to_json_obj(), indent=2)

    def to_csv(self) -> str:
        """Every section as a CSV block, each preceded by a ``# <section>`` line."""
        buf = io.StringIO()
        for name, table in self.sections.items():
            buf.write(f"# {name}\n")
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(table.columns)
            w.writerows(table.rows)
            buf.write("\n")
        return buf.getvalue()

    def to_text(self, *, max_rows: int = 40) -> str:
        """Aligned text tables, one per section (long sections are cut to ``max_rows``)."""
        parts = []
        for name, table in self.sections.items():
            if name == "throughput_series":
                continue
            parts.append(TITLES.get(name, name))
            parts.append(format_table(table, max_rows=max_rows))
            parts.append("")
        return "\n".join(parts).rstrip() + "\n"

    def to_html(self) -> str:
        """A self-contained HTML page with inline SVG charts (no scripts, no links)."""
        from .html import render_html
        return render_html(self)


def _jsonable_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _jsonable(v) for k, v in row.items()}


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != v:
            return "-"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 100:
            return f"{v:.1f}"
        return f"{v:.3f}"
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    if isinstance(v, datetime.datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, datetime.date):
        return v.isoformat()
    return str(v)


def format_table(table: Table, *, max_rows: int | None = None) -> str:
    """Render a Table as aligned text (numbers right-aligned).

    >>> print(format_table(Table(["queue", "n"], [("a", 1), ("bb", 20)])))
    queue   n
    -----  --
    a       1
    bb     20
    """
    if not table.columns:
        return "(no columns)"
    rows = table.rows if max_rows is None else table.rows[:max_rows]
    cells = [[_cell(v) for v in row] for row in rows]
    numeric = [all(isinstance(r[i], (int, float)) and not isinstance(r[i], bool)
                   for r in rows if r[i] is not None) and any(r[i] is not None for r in rows)
               for i in range(len(table.columns))]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(table.columns)]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric)).rstrip()

    out = [line(list(table.columns)), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    if not table.rows:
        out.append("(no rows)")
    elif max_rows is not None and len(table.rows) > max_rows:
        out.append(f"... {len(table.rows) - max_rows} more rows (use --json or --csv for all)")
    return "\n".join(out)


def _window(p: Projection, window_s: float | None) -> tuple[int | None, int | None, int, int]:
    # The report's window is [lo, end) in ns with end = the last event's time + 1: the
    # half-open interval the *_in macros filter on, and the span every rate divides by.
    lo, hi = p.query("SELECT min(ts), max(ts) FROM events").rows[0]
    lo = lo or 0
    hi = hi or 0
    if window_s is None:
        return None, None, lo, hi + 1
    if not window_s > 0:
        raise ProjectionError(f"the report window must be > 0 seconds, got {window_s}")
    t0 = max(lo, hi - int(window_s * 1e9))
    return t0, hi + 1, t0, hi + 1


def bucket_cover(k: int, lo: int, end: int, bucket_ns: int) -> int:
    """The ns of bucket ``k`` (``[k*bucket_ns, (k+1)*bucket_ns)``) inside the window
    ``[lo, end)``: less than a bucket at the window's edges.

    >>> bucket_cover(1, 150, 1000, 100), bucket_cover(3, 150, 1000, 100)
    (50, 100)
    """
    return max(0, min((k + 1) * bucket_ns, end) - max(k * bucket_ns, lo))


def peak_rates(counts: dict[int, int], lo: int, end: int, bucket_ns: int) -> float:
    """The highest rate (per second) of the buckets ``counts`` (bucket number -> events).

    Each bucket's rate divides by the part of it inside ``[lo, end)``, and an edge bucket
    covering less than half a bucket is merged into its neighbour, so a few events in a
    sliver of a bucket do not read as a burst.  The merged buckets still partition the
    window, so the peak is at least the window's average (sum / span): the largest of
    several ratios is at least the ratio of their sums.

    >>> s = 1_000_000_000   # 1 s buckets; the window starts 0.1 s before bucket 1 ends
    >>> round(peak_rates({0: 3, 1: 10, 2: 8}, 9 * s // 10, 3 * s, s), 2)  # 13 in 1.1 s
    11.82
    """
    if not counts:
        return 0.0
    kmin, kmax = lo // bucket_ns, (end - 1) // bucket_ns
    key = {k: k for k in (kmin, kmin + 1, kmax - 1, kmax) if kmin <= k <= kmax}
    if kmax > kmin and bucket_cover(kmin, lo, end, bucket_ns) * 2 < bucket_ns:
        key[kmin] = kmin + 1
    if kmax > kmin and bucket_cover(kmax, lo, end, bucket_ns) * 2 < bucket_ns:
        key[kmax] = key[kmax - 1]
    merged: dict[int, int] = {}
    for k, n in counts.items():
        g = key.get(k, k)
        merged[g] = merged.get(g, 0) + n
    best = 0.0
    for g, n in merged.items():
        cover = sum(bucket_cover(k, lo, end, bucket_ns) for k, v in key.items() if v == g)
        if g not in key:
            cover = bucket_cover(g, lo, end, bucket_ns)
        best = max(best, n / (max(cover, 1) / 1e9))
    return best


def _bucket_of(start: Any, bucket_ns: int) -> int:
    # interval_start is make_timestamp(k * bucket_ns // 1000): microseconds since the epoch.
    us: int = (start - _EPOCH) // datetime.timedelta(microseconds=1)
    return us * 1000 // bucket_ns


def _per_queue(series: Table, lo: int, end: int, bucket_s: int) -> tuple[Table, Table]:
    # Totals and peaks per queue, folded from the interval series already fetched (the same
    # numbers the SQL aggregate gives, without scanning the tasks a second time); the
    # series' rates divide by the part of each interval inside the window.
    bucket_ns = bucket_s * 1_000_000_000
    span = max(end - lo, 1) / 1e9
    totals: dict[str, list[int]] = {}
    counts: dict[str, dict[int, int]] = {}
    rows = []
    for start, queue, completed, failed, _ in series.rows:
        t = totals.setdefault(queue, [0, 0])
        t[0] += completed
        t[1] += failed
        k = _bucket_of(start, bucket_ns)
        counts.setdefault(queue, {})[k] = completed
        cover = max(bucket_cover(k, lo, end, bucket_ns), 1) / 1e9
        rows.append((start, queue, completed, failed, completed / cover))
    per_queue = [(q, c, f, c / span, peak_rates(counts[q], lo, end, bucket_ns))
                 for q, (c, f) in sorted(totals.items())]
    return (Table(["queue", "completed", "failed", "completed_per_s", "peak_per_s"], per_queue),
            Table(series.columns, rows))


def build_report(p: Projection, *, window_s: float | None = None,
                 bucket_s: int = 60) -> Report:
    """Compute the standard report from a (refreshed) projection.

    Args:
        window_s: only the last ``window_s`` seconds of the log (a dashboard); default all.
        bucket_s: the throughput interval in seconds.

    Raises:
        ProjectionError: a bad window or bucket, or a failing query.

    Cost: five aggregate queries; ~1.8 s over 10 M tasks, milliseconds for a last-hour
    window.
    """
    if not isinstance(bucket_s, int) or bucket_s < 1:
        raise ProjectionError(f"the throughput bucket must be a whole number of seconds "
                              f">= 1, got {bucket_s!r}")
    t0, t1, lo, end = _window(p, window_s)
    args = [t0, t1]
    span = max(end - lo, 1) / 1e9
    # Tasks finished in the window, or unfinished and submitted in it: two plain range
    # filters (row groups outside the window are skipped) rather than one coalesce.
    status = p.query(
        "SELECT status, count(*) AS tasks FROM ("
        "SELECT status FROM tasks WHERE $1 IS NULL OR finished_at >= $1 "
        "UNION ALL SELECT status FROM tasks "
        "WHERE $1 IS NOT NULL AND finished_at IS NULL AND submitted_at >= $1) GROUP BY status "
        "ORDER BY CASE status WHEN 'PENDING' THEN 0 WHEN 'READY' THEN 1 WHEN 'RUNNING' THEN 2 "
        "WHEN 'RETRYING' THEN 3 WHEN 'COMPLETED' THEN 4 WHEN 'FAILED' THEN 5 ELSE 6 END",
        [t0])
    series = p.query("SELECT * FROM throughput_in($1, $2, $3)", [t0, t1, bucket_s])
    throughput, series = _per_queue(series, lo, end, bucket_s)
    latency = p.query("SELECT * FROM latency_in($1, $2)", args)
    # Agents and queues from one pass (utilization_in), split as the two views show them.
    util = p.query('SELECT * FROM utilization_in($1, $2) ORDER BY "by", "key"', args)
    agents = Table(["agent", "capacity", "leases", "busy_s", "window_s", "utilization"],
                   [(k, lim, n, b, w, u) for by, k, lim, n, b, w, _, u in util.rows
                    if by == "agent"])
    queues = Table(["queue", "max_concurrent", "leases", "busy_s", "window_s", "avg_running",
                    "utilization"],
                   [(k, lim, n, b, w, r, u) for by, k, lim, n, b, w, r, u in util.rows
                    if by == "queue"])
    failures = p.query("SELECT * FROM failures_in($1, $2)", args)
    n_events = p.query("SELECT count(*) FROM events WHERE ($1 IS NULL OR ts >= $1)",
                       [t0]).rows[0][0]
    meta = {
        "log": str(p.log_path), "events": n_events, "next_offset": p.next_offset,
        "window_start_ns": lo, "window_end_ns": end, "window_s": round(span, 3),
        "bucket_s": bucket_s,
    }
    summary = Table(["what", "value"], [
        ("log", str(p.log_path)), ("events", n_events),
        ("tasks", sum(r[1] for r in status.rows)),
        ("window", f"{_iso(lo)} .. {_iso(end)} ({span:,.1f} s)"),
    ])
    return Report({"summary": summary, "status": status, "throughput": throughput,
                   "throughput_series": series, "latency": latency,
                   "agent_utilization": agents, "queue_utilization": queues,
                   "failures": failures}, meta)


def _iso(ns: int) -> str:
    return datetime.datetime.fromtimestamp(ns / 1e9, datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S")
