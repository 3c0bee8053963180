"""Read a pytest-benchmark JSON file and print one row per target: PASS or MISS.

Usage: ``python -m bench.report RESULTS.json [--peers]``; exit status 1 when a target
that was measured is missed.  Columns: target, threshold, measured value (the median, or
the per-call p50 for latency targets), p99 where the target has one, the baseline's value
from the same run, ``core/base`` (time ratio: below 1 means core is faster), and status.
How benchmarks report values: see :mod:`bench.targets`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any, Iterable

from bench.targets import TARGETS, Target, fmt

_SCALE = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}


@dataclass
class Row:
    target: Target
    value: float | None
    p99: float | None
    baseline: float | None
    status: str              # PASS, MISS, NOT RUN
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """core / baseline in time (below 1: core is faster)."""
        if self.value is None or not self.baseline:
            return None
        if self.target.unit == "/s":
            return self.baseline / self.value if self.value else None
        if self.target.unit == "x":
            return None
        return self.value / self.baseline


def impl_of(entry: dict[str, Any]) -> str:
    impl = entry.get("extra_info", {}).get("impl")
    if impl:
        return str(impl)
    name = entry.get("name", "")
    for cand in ("baseline", "model", "peer"):
        if cand in name:
            return cand
    return "core"


def _from_stats(entry: dict[str, Any], t: Target) -> float | None:
    x = entry.get("extra_info", {})
    if t.extra and t.extra in x:
        return float(x[t.extra])
    median = entry.get("stats", {}).get("median")
    if not median:
        return None
    if t.unit == "/s":
        return float(x.get("items", x.get("records", 1))) / median
    if t.unit in _SCALE:
        return median * _SCALE[t.unit]
    return None


def _scale_flat(entries: list[dict[str, Any]], want: str) -> float | None:
    pts = {}
    for e in entries:
        x = e.get("extra_info", {})
        if e.get("group") == "scale" and impl_of(e) == want and "p50_us" in x:
            pts[int(x["n"])] = float(x["p50_us"])
    if len(pts) < 2:
        return None
    return pts[max(pts)] / pts[min(pts)]


def measure(t: Target, entries: list[dict[str, Any]]) -> Row:
    """The row of one target from the entries of one run."""
    if t.id == "kernel.scale.flat":
        v, b = _scale_flat(entries, "core"), _scale_flat(entries, "baseline-heapq")
        return _row(t, v, None, b)
    core = [e for e in entries if impl_of(e) == "core" and t.key in e.get("extra_info", {})]
    base = [e for e in entries if impl_of(e).startswith("baseline")
            and t.key in e.get("extra_info", {})]
    if core:
        x = core[0]["extra_info"]
        v = float(x[t.key])
        p99 = float(x[t.p99_key]) if t.p99_key and t.p99_key in x else None
        b = float(base[0]["extra_info"][t.key]) if base else None
        return _row(t, v, p99, b)
    # Fallback, only for benchmarks that do not follow the key convention (no "impl").
    group = [e for e in entries if e.get("group") == t.group
             and "impl" not in e.get("extra_info", {})]
    core = [e for e in group if t.match in e.get("name", "") and not
            impl_of(e).startswith(("baseline", "model", "peer"))]
    base = [e for e in group if impl_of(e).startswith("baseline")
            and (t.match in e.get("name", "") or len(group) <= 2)]
    base = base or [e for e in group if impl_of(e).startswith("baseline")]
    if core:
        x = core[0].get("extra_info", {})
        p99 = float(x[t.p99_key]) if t.p99_key and t.p99_key in x else None
        return _row(t, _from_stats(core[0], t), p99,
                    _from_stats(base[0], t) if base else None)
    return Row(t, None, None, None, "NOT RUN")


def _row(t: Target, v: float | None, p99: float | None, b: float | None) -> Row:
    if v is None:
        return Row(t, None, None, b, "NOT RUN")
    return Row(t, v, p99, b, "PASS" if t.met(v) else "MISS")


def rows(entries: list[dict[str, Any]], targets: Iterable[Target] = TARGETS) -> list[Row]:
    return [measure(t, entries) for t in targets]


def peer_lines(entries: list[dict[str, Any]], skipped: list[tuple[str, str]]) -> list[str]:
    out = []
    for e in entries:
        if e.get("group") == "queue" or impl_of(e).startswith("peer"):
            x = e.get("extra_info", {})
            rate = x.get("tasks_per_s")
            out.append(f"  {e.get('group', ''):<10} {impl_of(e):<26} "
                       f"{fmt(rate, '/s') if rate else '-':>10}  {x.get('conditions', '')}")
    for name, why in skipped:
        out.append(f"  {'':<10} {name:<26} {'skipped':>10}  {why}")
    return out


def render(rs: list[Row], *, header: str = "", peers: list[str] | None = None) -> str:
    cols = ("target", "issue", "threshold", "measured", "p99/p99.9", "baseline", "core/base", "status")
    table = [cols]
    for r in rs:
        u = r.target.unit
        table.append((r.target.id, str(r.target.issue), r.target.describe(), fmt(r.value, u),
                      fmt(r.p99, u) if r.p99 is not None else "", fmt(r.baseline, u),
                      f"{r.ratio:.2f}" if r.ratio is not None else "", r.status))
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    lines = [header] if header else []
    for i, row in enumerate(table):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    missed = [r for r in rs if r.status == "MISS"]
    run = [r for r in rs if r.status != "NOT RUN"]
    lines.append("")
    lines.append(f"{len(run) - len(missed)}/{len(run)} measured targets met; "
                 f"{len(rs) - len(run)} not run in this suite")
    for r in missed:
        lines.append(f"MISS {r.target.id}: {fmt(r.value, r.target.unit)} vs "
                     f"{r.target.describe()} ({_by_how_much(r)})")
    if peers is not None:
        lines.append("")
        lines.append("peers (same workload; see conditions):")
        lines.extend(peers or ["  (none)"])
    return "\n".join(lines)


def _by_how_much(r: Row) -> str:
    t = r.target
    if r.value is None or not t.threshold:
        return ""
    f = r.value / t.threshold if t.better == "lower" else t.threshold / r.value
    return f"{f:.1f}x off"


def load(path: str) -> dict[str, Any]:
    with open(path) as f:
        return json.load(f)


def exit_code(rs: list[Row]) -> int:
    return 1 if any(r.status == "MISS" for r in rs) else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json")
    ap.add_argument("--peers", action="store_true", help="list peers, installed or skipped")
    a = ap.parse_args(argv)
    data = load(a.json)
    entries = data.get("benchmarks", [])
    rs = rows(entries)
    peers = None
    if a.peers:
        from bench.peers import skipped_peers
        peers = peer_lines(entries, skipped_peers())
    print(render(rs, peers=peers))
    return exit_code(rs)


if __name__ == "__main__":
    sys.exit(main())
