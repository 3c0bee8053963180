"""Measures of one history (recorded or simulated), folded from its events.

The same fold measures the baseline and the alternative, with the definitions of the
analytics projection (``eskernel.analytics``): wait = first claim - ready (ready: submitted
and every dependency completed, or the first ``ready`` event when a delay held it longer),
run = finish - last claim (completed tasks), end-to-end = finish - submitted (finished
tasks).  Percentiles interpolate linearly between ranks (DuckDB's ``quantile_cont``).

Invariants: only tasks submitted inside the window are measured; utilization counts lease
time inside [start, end], where start is the window's start (or the first measured
submission) and end the last finish of a measured task.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["Fold", "percentile", "PCTS"]

PCTS = (0.50, 0.95, 0.99)
NS = 1e9


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks of a sorted list (None when empty).

    >>> percentile([1.0, 2.0, 3.0, 4.0], 0.5)
    2.5
    """
    n = len(sorted_values)
    if not n:
        return None
    pos = q * (n - 1)
    lo = int(pos)
    hi = min(lo + 1, n - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


class _Task:
    __slots__ = ("queue", "prio", "sub", "nb", "deps", "first", "last", "finish", "status",
                 "ready_ev")

    def __init__(self, ev: dict[str, Any]) -> None:
        self.queue: str = ev["queue"]
        self.prio: int = ev["priority"]
        self.sub: int = ev["ts"]
        self.nb: int = ev["not_before"]
        self.deps: list[str] = ev["depends_on"]
        self.first: int | None = None
        self.last: int | None = None
        self.finish: int | None = None
        self.status = ""                       # "", COMPLETED, FAILED, CANCELLED
        self.ready_ev: int | None = None


class Fold:
    """Fold events (dicts as :func:`eskernel.events.decode` or ``loads`` returns) with
    :meth:`add`; :meth:`summary` measures the tasks submitted in ``[lo, hi]``."""

    def __init__(self) -> None:
        self.tasks: dict[str, _Task] = {}
        self.leases: dict[int, tuple[str, str, int]] = {}    # lease -> task, agent, start
        self.by_task: dict[str, int] = {}                    # task -> its open lease
        self.spans: list[tuple[str, str, int, int]] = []     # agent, task, start, end
        self.capacity: dict[str, int] = {}
        self.last_ts = 0

    def add(self, ev: dict[str, Any]) -> None:
        t, ts = ev["t"], ev["ts"]
        self.last_ts = ts
        if t == "submitted":
            self.tasks[ev["task"]] = _Task(ev)
        elif t == "claimed":
            tid = ev["task"]
            task = self.tasks[tid]
            if task.first is None:
                task.first = ts
            task.last = ts
            self.leases[ev["lease"]] = (tid, ev["agent"], ts)
            self.by_task[tid] = ev["lease"]
        elif t == "completed":
            self._close(ev["lease"], ts)
            task = self.tasks[ev["task"]]
            task.status, task.finish = "COMPLETED", ts
        elif t in ("failed", "expired"):
            self._close(ev["lease"], ts)
            if ev.get("retry_at") is None:
                task = self.tasks[ev["task"]]
                task.status, task.finish = "FAILED", ts
        elif t == "released":
            self._close(ev["lease"], ts)
        elif t == "cancelled":
            tid = ev["task"]
            lid = self.by_task.get(tid)
            if lid is not None:
                self._close(lid, ts)
            task = self.tasks[tid]
            task.status, task.finish = "CANCELLED", ts
        elif t == "requeued":
            task = self.tasks[ev["task"]]
            task.status, task.finish = "", None
        elif t == "ready":
            task = self.tasks[ev["task"]]
            if task.ready_ev is None:
                task.ready_ev = ts
        elif t == "agent_registered":
            self.capacity[ev["agent"]] = ev["capacity"]

    def add_all(self, evs: Iterable[dict[str, Any]]) -> "Fold":
        for ev in evs:
            self.add(ev)
        return self

    def _close(self, lid: int, ts: int) -> None:
        item = self.leases.pop(lid, None)
        if item is not None:
            tid, agent, start = item
            self.by_task.pop(tid, None)
            self.spans.append((agent, tid, start, ts))

    def summary(self, lo: int | None, hi: int | None) -> dict[str, Any]:
        """The measures of the tasks submitted in ``[lo, hi]`` (ns; None: unbounded)."""
        tasks = self.tasks
        measured = {tid: x for tid, x in tasks.items()
                    if (lo is None or x.sub >= lo) and (hi is None or x.sub <= hi)}
        spans = self.spans + [(a, tid, s, self.last_ts) for tid, a, s in self.leases.values()]
        if not measured:
            return {"tasks": 0}
        start = lo if lo is not None else min(x.sub for x in measured.values())
        finishes = [x.finish for x in measured.values() if x.finish is not None]
        end = max(finishes) if finishes else self.last_ts
        span = max(end - start, 1)
        rows: dict[str, dict[str, list[float]]] = {}
        counts: dict[str, dict[str, int]] = {}
        for tid, x in measured.items():
            wait = run = e2e = None
            if x.first is not None:
                base: int | None = x.sub
                for d in x.deps:
                    dt = tasks.get(d)
                    if dt is None or dt.status != "COMPLETED" or dt.finish is None:
                        base = None
                        break
                    base = max(base or 0, dt.finish)
                if base is not None:
                    ready = x.ready_ev if x.nb > base and x.ready_ev is not None else base
                    wait = (x.first - ready) / NS
            if x.status == "COMPLETED" and x.last is not None and x.finish is not None:
                run = (x.finish - x.last) / NS
            if x.status and x.finish is not None:
                e2e = (x.finish - x.sub) / NS
            for key in ("all", f"queue:{x.queue}", f"priority:{x.prio}"):
                r = rows.setdefault(key, {"wait": [], "run": [], "e2e": []})
                c = counts.setdefault(key, {"tasks": 0, "COMPLETED": 0, "FAILED": 0,
                                            "CANCELLED": 0, "unfinished": 0})
                c["tasks"] += 1
                c[x.status or "unfinished"] += 1
                if wait is not None:
                    r["wait"].append(wait)
                if run is not None:
                    r["run"].append(run)
                if e2e is not None:
                    r["e2e"].append(e2e)
        groups: dict[str, Any] = {}
        for key, r in rows.items():
            g: dict[str, Any] = {"tasks": counts[key]["tasks"],
                                 "completed": counts[key]["COMPLETED"],
                                 "dead_letters": counts[key]["FAILED"],
                                 "cancelled": counts[key]["CANCELLED"],
                                 "unfinished": counts[key]["unfinished"]}
            for m, values in r.items():
                values.sort()
                for q in PCTS:
                    g[f"{m}_p{round(q * 100)}"] = percentile(values, q)
            groups[key] = g
        busy_a: dict[str, int] = {}
        busy_q: dict[str, int] = {}
        for agent, tid, s, e in spans:
            s, e = max(s, start), min(e, end)
            if e > s:
                busy_a[agent] = busy_a.get(agent, 0) + e - s
                if tid in measured:
                    tq = measured[tid].queue
                    busy_q[tq] = busy_q.get(tq, 0) + e - s
        util_a = {a: busy_a.get(a, 0) / (cap * span) for a, cap in sorted(self.capacity.items())}
        util_q = {q: busy_q.get(q, 0) / span
                  for q in sorted({x.queue for x in measured.values()})}
        c_all = counts["all"]
        return {"tasks": c_all["tasks"], "start": start, "end": end,
                "makespan_s": span / NS,
                "throughput_per_s": c_all["COMPLETED"] / (span / NS),
                "dead_letters": c_all["FAILED"], "groups": groups,
                "agent_utilization": util_a, "queue_busy": util_q,
                "dags": self._dags(measured)}

    def _dags(self, measured: dict[str, _Task]) -> list[dict[str, Any]]:
        parent = {tid: tid for tid in measured}

        def find(x: str) -> str:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        linked: set[str] = set()
        for tid, x in measured.items():
            for d in x.deps:
                if d in parent:
                    ra, rb = find(tid), find(d)
                    if ra != rb:
                        parent[ra] = rb
                    linked.add(tid)
                    linked.add(d)
        comps: dict[str, list[str]] = {}
        for tid in linked:
            comps.setdefault(find(tid), []).append(tid)
        out: list[dict[str, Any]] = []
        for members in comps.values():
            xs = [measured[m] for m in members]
            first = min(members, key=lambda m: (measured[m].sub, m))
            done = all(x.status and x.finish is not None for x in xs)
            out.append({"dag": first, "tasks": len(members),
                        "completed": all(x.status == "COMPLETED" for x in xs),
                        "makespan_s": ((max(x.finish or 0 for x in xs)
                                        - min(x.sub for x in xs)) / NS) if done else None})
        out.sort(key=lambda d: str(d["dag"]))
        return out
