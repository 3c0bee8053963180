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
_ENDS = frozenset({"completed", "failed", "expired", "released", "cancelled"})
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
                 "ready_ev", "agent", "seq")

    def __init__(self, ev: dict[str, Any], seq: int) -> None:
        self.seq = seq                       # submission order
        self.queue: str = ev["queue"]
        self.prio: int = ev["priority"]
        self.sub: int = ev["ts"]
        self.nb: int = ev["not_before"]
        self.deps: list[str] = ev["depends_on"]
        self.first: int | None = None
        self.last: int | None = None         # the current (or last) claim's time
        self.finish: int | None = None
        self.status = ""                     # "", COMPLETED, FAILED, CANCELLED
        self.ready_ev: int | None = None
        self.agent: str | None = None        # holder of the current lease, None: none


class Fold:
    """Fold events (dicts as :func:`eskernel.events.decode` or ``loads`` returns) with
    :meth:`add`; :meth:`summary` measures the tasks submitted in ``[lo, hi]``."""

    def __init__(self) -> None:
        self.tasks: dict[str, _Task] = {}
        self.spans: list[tuple[str, _Task, int, int]] = []     # agent, task, start, end
        self.capacity: dict[str, int] = {}
        self.last_ts = 0

    def add(self, ev: dict[str, Any]) -> None:
        t, ts = ev["t"], ev["ts"]
        self.last_ts = ts
        if t == "submitted":
            self.tasks[ev["task"]] = _Task(ev, len(self.tasks))
            return
        if t == "claimed":
            task = self.tasks[ev["task"]]
            if task.first is None:
                task.first = ts
            task.last, task.agent = ts, ev["agent"]
            return
        task = self.tasks.get(ev.get("task") or "")    # type: ignore[assignment]
        if task is None:
            if t == "agent_registered":
                self.capacity[ev["agent"]] = ev["capacity"]
            return
        if task.agent is not None and t in _ENDS:
            self.spans.append((task.agent, task, task.last or ts, ts))
            task.agent = None
        if t == "completed":
            task.status, task.finish = "COMPLETED", ts
        elif t == "failed" or t == "expired":
            if ev.get("retry_at") is None:
                task.status, task.finish = "FAILED", ts
        elif t == "cancelled":
            task.status, task.finish = "CANCELLED", ts
        elif t == "requeued":
            task.status, task.finish = "", None
        elif t == "ready":
            if task.ready_ev is None:
                task.ready_ev = ts

    def add_all(self, evs: Iterable[dict[str, Any]]) -> "Fold":
        for ev in evs:
            self.add(ev)
        return self

    def summary(self, lo: int | None, hi: int | None) -> dict[str, Any]:
        """The measures of the tasks submitted in ``[lo, hi]`` (ns; None: unbounded)."""
        tasks = self.tasks
        measured = tasks if lo is None and hi is None else {
            tid: x for tid, x in tasks.items()
            if (lo is None or x.sub >= lo) and (hi is None or x.sub <= hi)}
        spans = self.spans
        still = [(x.agent, x, x.last or x.sub, self.last_ts)
                 for x in tasks.values() if x.agent is not None]
        if still:
            spans = spans + still
        if not measured:
            return {"tasks": 0}
        start = lo if lo is not None else min(x.sub for x in measured.values())
        finishes = [x.finish for x in measured.values() if x.finish is not None]
        end = max(finishes) if finishes else self.last_ts
        span = max(end - start, 1)
        # One bucket per (queue, priority): [counts by status, waits, runs, ends-to-end];
        # the queue, priority and overall groups merge buckets.
        buckets: dict[tuple[str, int], tuple[dict[str, int], list[float], list[float],
                                             list[float]]] = {}
        for x in measured.values():
            key = (x.queue, x.prio)
            bk = buckets.get(key)
            if bk is None:
                bk = buckets[key] = ({"": 0, "COMPLETED": 0, "FAILED": 0, "CANCELLED": 0},
                                     [], [], [])
            bk[0][x.status] += 1
            first, finish = x.first, x.finish
            if first is not None:
                base: int | None = x.sub
                for d in x.deps:
                    dt = tasks.get(d)
                    if dt is None or dt.status != "COMPLETED" or dt.finish is None:
                        base = None
                        break
                    if dt.finish > (base or 0):
                        base = dt.finish
                if base is not None:
                    ready = x.ready_ev if x.nb > base and x.ready_ev is not None else base
                    bk[1].append((first - ready) / NS)
            if finish is not None and x.status:
                if x.status == "COMPLETED" and x.last is not None:
                    bk[2].append((finish - x.last) / NS)
                bk[3].append((finish - x.sub) / NS)
        merged: dict[str, list[Any]] = {}
        for (q, prio), bk in buckets.items():
            for gk in ("all", f"queue:{q}", f"priority:{prio}"):
                m = merged.get(gk)
                if m is None:
                    m = merged[gk] = [{"": 0, "COMPLETED": 0, "FAILED": 0, "CANCELLED": 0},
                                      [], [], []]
                for st, n in bk[0].items():
                    m[0][st] += n
                m[1].extend(bk[1])
                m[2].extend(bk[2])
                m[3].extend(bk[3])
        groups: dict[str, Any] = {}
        for gk, (c, *series) in merged.items():
            g: dict[str, Any] = {"tasks": sum(c.values()), "completed": c["COMPLETED"],
                                 "dead_letters": c["FAILED"], "cancelled": c["CANCELLED"],
                                 "unfinished": c[""]}
            for name, values in zip(("wait", "run", "e2e"), series):
                values.sort()
                for pct in PCTS:
                    g[f"{name}_p{round(pct * 100)}"] = percentile(values, pct)
            groups[gk] = g
        c_all = merged["all"][0]
        busy_a: dict[str, int] = {}
        busy_q: dict[str, int] = {}
        whole = measured is tasks
        in_window: set[int] = set() if whole else set(map(id, measured.values()))
        for agent, x, s, e in spans:
            if s < start:
                s = start
            if e > end:
                e = end
            if e > s:
                busy_a[agent] = busy_a.get(agent, 0) + e - s
                if whole or id(x) in in_window:
                    busy_q[x.queue] = busy_q.get(x.queue, 0) + e - s
        util_a = {a: busy_a.get(a, 0) / (cap * span) for a, cap in sorted(self.capacity.items())}
        util_q = {q: busy_q.get(q, 0) / span
                  for q in sorted({x.queue for x in measured.values()})}
        return {"tasks": len(measured), "start": start, "end": end,
                "makespan_s": span / NS,
                "throughput_per_s": c_all["COMPLETED"] / (span / NS),
                "dead_letters": c_all["FAILED"], "groups": groups,
                "agent_utilization": util_a, "queue_busy": util_q,
                "dags": self._dags(measured)}

    def _dags(self, measured: dict[str, _Task]) -> list[dict[str, Any]]:
        # Union-find over the tasks that have or are a measured dependency.
        parent: dict[str, str] = {}

        def find(x: str) -> str:
            while parent.setdefault(x, x) != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for tid, x in measured.items():
            for d in x.deps:
                if d in measured:
                    ra, rb = find(tid), find(d)
                    if ra != rb:
                        parent[ra] = rb
        comps: dict[str, list[str]] = {}
        for tid in list(parent):
            comps.setdefault(find(tid), []).append(tid)
        out: list[dict[str, Any]] = []
        for members in comps.values():
            xs = [measured[m] for m in members]
            first = min(members, key=lambda m: measured[m].seq)
            done = all(x.status and x.finish is not None for x in xs)
            out.append({"dag": first, "tasks": len(members),
                        "completed": all(x.status == "COMPLETED" for x in xs),
                        "makespan_s": ((max(x.finish or 0 for x in xs)
                                        - min(x.sub for x in xs)) / NS) if done else None})
        out.sort(key=lambda d: str(d["dag"]))
        return out
