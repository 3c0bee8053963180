"""The plain-Python baseline every kernel benchmark runs beside ``core``.

:class:`HeapqScheduler` is what a competent engineer writes in an afternoon: one ``heapq``
of ``(-priority, seq, task_id)`` tuples per queue, dicts for tasks, agents and leases.  It
has the same semantics subset as :class:`kernel.Kernel` that the benchmarks exercise:
priorities (higher first), FIFO within a priority, queues with ``max_concurrent``, agents
serving some queues with a capacity, dependencies (a counter per task, dependents lists),
lease expiry on ``tick``.  It has no event log, no validation and no durability, so the
ratio ``core / baseline-heapq`` shows what the log and the checks cost against a scheduler
with none of them.  Its method names mirror the Kernel's so one workload drives both.
"""

from __future__ import annotations

import heapq
from typing import Any

__all__ = ["HeapqScheduler"]

# Task record fields (a list per task: cheaper than an object, still readable).
QUEUE, PRIO, SEQ, STATUS, UNMET, DEPENDENTS, TIMEOUT = range(7)
PENDING, READY, RUNNING, COMPLETED = 0, 1, 2, 3


def _zero() -> int:
    return 0


class HeapqScheduler:
    """A heapq + dict scheduler; see the module docstring."""

    def __init__(self, now_ns: Any = None) -> None:
        self.now_ns = now_ns or _zero
        self.tasks: dict[str, list[Any]] = {}
        self.heaps: dict[str, list[tuple[int, int, str]]] = {}
        self.limits: dict[str, int] = {}
        self.running: dict[str, int] = {}
        self.agents: dict[str, tuple[list[str], int]] = {}
        self.active: dict[str, int] = {}
        self.leases: dict[int, tuple[str, str, int]] = {}
        self.expiry: list[tuple[int, int]] = []
        self._seq = 0
        self._lease = 0

    def declare_queue(self, name: str, max_concurrent: int = 0, paused: bool = False) -> None:
        self.heaps.setdefault(name, [])
        self.limits[name] = max_concurrent
        self.running.setdefault(name, 0)

    def register_agent(self, agent_id: str, capabilities: Any, capacity: int = 1) -> None:
        self.agents[agent_id] = (list(capabilities), capacity)
        self.active[agent_id] = 0

    def submit(self, queue: str, payload: Any = None, *, id: str | None = None,
               priority: int = 2, depends_on: Any = (), timeout: float = 30.0,
               **_: Any) -> str:
        seq = self._seq = self._seq + 1
        tid = id if id is not None else f"t-{seq}"
        unmet = 0
        for d in depends_on:
            dep = self.tasks[d]
            if dep[STATUS] != COMPLETED:
                unmet += 1
                dep[DEPENDENTS].append(tid)
        self.tasks[tid] = [queue, priority, seq, PENDING, unmet, [], int(timeout * 1e9)]
        if unmet == 0:
            self.tasks[tid][STATUS] = READY
            heapq.heappush(self.heaps[queue], (-priority, seq, tid))
        return tid

    def submit_many(self, specs: Any) -> list[str]:
        return [self.submit(s["queue"], s.get("payload"), id=s.get("id"),
                            priority=s.get("priority", 2), depends_on=s.get("depends_on", ()),
                            timeout=s.get("timeout", 30.0))
                for s in specs]

    def claim(self, agent_id: str) -> tuple[int, str, str] | None:
        caps, capacity = self.agents[agent_id]
        if self.active[agent_id] >= capacity:
            raise RuntimeError(f"agent {agent_id!r} is at capacity")
        best = None
        best_q = None
        for q in caps:
            h = self.heaps[q]
            if h and (not self.limits[q] or self.running[q] < self.limits[q]):
                if best is None or h[0] < best:
                    best, best_q = h[0], q
        if best_q is None:
            return None
        tid = heapq.heappop(self.heaps[best_q])[2]
        t = self.tasks[tid]
        t[STATUS] = RUNNING
        self.running[best_q] += 1
        self.active[agent_id] += 1
        lid = self._lease = self._lease + 1
        expires = self.now_ns() + t[TIMEOUT]
        self.leases[lid] = (tid, agent_id, expires)
        heapq.heappush(self.expiry, (expires, lid))
        return (lid, tid, agent_id)

    def claim_many(self, agent_id: str, n: int) -> list[tuple[int, str, str]]:
        out = []
        caps, capacity = self.agents[agent_id]
        while len(out) < n and self.active[agent_id] < capacity:
            lease = self.claim(agent_id)
            if lease is None:
                break
            out.append(lease)
        return out

    def _end(self, lid: int) -> tuple[str, list[Any]]:
        tid, agent, _ = self.leases.pop(lid)
        t = self.tasks[tid]
        self.running[t[QUEUE]] -= 1
        self.active[agent] -= 1
        return tid, t

    def complete_many(self, leases: list[tuple[int, str, str]]) -> None:
        for lease in leases:
            self.complete(lease)

    def complete(self, lease: tuple[int, str, str], result: Any = None) -> None:
        lid = lease[0]
        if lid not in self.leases:
            raise KeyError(f"lease {lid} is stale")
        _, t = self._end(lid)
        t[STATUS] = COMPLETED
        for d in t[DEPENDENTS]:
            dt = self.tasks[d]
            dt[UNMET] -= 1
            if dt[UNMET] == 0:
                dt[STATUS] = READY
                heapq.heappush(self.heaps[dt[QUEUE]], (-dt[PRIO], dt[SEQ], d))

    def tick(self) -> dict[str, int]:
        """Expire overdue leases: their tasks are READY again (no backoff here)."""
        now, n = self.now_ns(), 0
        while self.expiry and self.expiry[0][0] <= now:
            _, lid = heapq.heappop(self.expiry)
            if lid in self.leases:
                tid, t = self._end(lid)
                t[STATUS] = READY
                heapq.heappush(self.heaps[t[QUEUE]], (-t[PRIO], t[SEQ], tid))
                n += 1
        return {"expired": n, "ready": 0}

    def close(self) -> None:
        pass
