"""The kernel's read model: task, tasks, stats, history and lease_task over its state.

:class:`ReadModel` holds the state and the log it reads; the Kernel delegates its queries
to it.  None of them writes an event."""

from __future__ import annotations

from typing import Any

from . import events
from ._apply import KernelState
from ._core import Lease, Scheduler
from ._codes import FLAG_DEAD, FLAG_UPSTREAM, ROW_MAX_ATTEMPTS, ROW_QUEUE, STATUSES
from ._validate import NS, check_int, lookup
from .errors import InvalidSpecError, StaleLeaseError
from .models import AgentStats, QueueStats, Stats, TaskView



def _s(ns: int) -> float | None:
    return ns / NS if ns else None


def task_history(log: Any, task_id: str, end: int | None = None) -> list[dict[str, Any]]:
    """The events of the log (an EventLog, ``[0, end)``) that name ``task_id``, in log order,
    each with its ``offset``: a byte search in C, then a decode of the few records found."""
    needle = b'"task":"%s"' % task_id.encode()
    out = []
    for off, rec in log.read_containing(needle, 0, end):
        ev = events.decode(rec)
        if ev.get("task") == task_id:    # not the same text inside a payload
            ev["offset"] = off
            out.append(ev)
    return out


def lease_handle(sched: Scheduler, lease: Any) -> tuple[int, int]:
    """(task handle, lease id) of a Lease this core issued.

    Raises:
        InvalidSpecError: not a Lease; StaleLeaseError: issued by another kernel (or before
            this one was reopened).
    """
    if type(lease) is not Lease:
        raise InvalidSpecError(f"expected a Lease returned by claim(), got {lease!r:.80}")
    if lease._issuer != sched.ident:
        raise StaleLeaseError(f"lease {lease.lease_id} for task {lease.task_id!r} was not "
                              "issued by this kernel (or was issued before it was "
                              "reopened); do not report on it here")
    return lease._task, lease.lease_id


class ReadModel:
    """Queries over a kernel's state and log (the Kernel's public methods of the same names
    delegate here and document them)."""

    def __init__(self, state: KernelState, log: Any) -> None:
        self._state = state
        self._sched: Scheduler = state.sched
        self._log = log

    def task(self, task_id: str) -> TaskView:
        return self.view(lookup(self._state.task_index, task_id, "task"))

    def view(self, h: int) -> TaskView:
        """The view of the task with handle ``h``."""
        st, sched = self._state, self._sched
        (status, attempts, max_attempts, q, prio, _pinned, last_agent, lease_id, expires,
         submitted, started, finished, due, flags, _unmet) = sched.task_row(h)
        name, tags, key, parent, deps = st.meta[h]
        res = st.results[h]
        return TaskView.model_construct(
            id=sched.task_ids[h], queue=sched.queue_names[q], name=name, status=status,
            priority=prio, attempts=attempts, max_attempts=max_attempts,
            timeout=sched.timeout_of(h) / NS,
            payload=events.loads(st.payloads[h]),
            result=events.loads(res) if res is not None else None, error=st.errors[h],
            agent=sched.agent_names[last_agent] if last_agent >= 0 else None,
            lease_id=lease_id or None, expires_at=_s(expires), submitted_at=submitted / NS,
            started_at=_s(started), finished_at=_s(finished),
            due_at=_s(due) if status in ("PENDING", "RETRYING") else None,
            depends_on=list(deps), tags=tags, key=key, parent=parent,
            dead_lettered=bool(flags & FLAG_DEAD), cancelled_upstream=bool(flags & FLAG_UPSTREAM))

    def lease_task(self, lease: Any) -> tuple[str | None, str, Any, int, float]:
        h, _ = lease_handle(self._sched, lease)
        row = self._sched.task_row(h)
        return (self._state.meta[h][0], self._sched.queue_names[row[ROW_QUEUE]],
                events.loads(self._state.payloads[h]), row[ROW_MAX_ATTEMPTS],
                self._sched.timeout_of(h) / NS)

    def tasks(self, status: str | None = None, queue: str | None = None,
              agent: str | None = None, limit: int | None = None) -> list[TaskView]:
        code = -1
        if status is not None:
            if status not in STATUSES:
                raise InvalidSpecError(f"status {status!r} is not one of {list(STATUSES)}")
            code = STATUSES.index(status)
        st = self._state
        q = lookup(st.queue_index, queue, "queue") if queue is not None else -1
        a = lookup(st.agent_index, agent, "agent") if agent is not None else -1
        hs = self._sched.handles(code, q, a)
        if limit is not None:
            hs = hs[:check_int(limit, "limit", 0, 2**63 - 1)]
        return [self.view(h) for h in hs]

    def stats(self) -> Stats:
        sched, st = self._sched, self._state
        counts = dict(zip(STATUSES, sched.status_counts()))
        queue_counts, prio_counts = sched.status_breakdown()     # one O(n) pass in C
        per_queue = [dict(zip(STATUSES, row)) for row in queue_counts]
        by_prio = {p: dict(zip(STATUSES, row)) for p, row in prio_counts.items()}
        queues = []
        for q, name in enumerate(sched.queue_names):
            mc, paused, running, ready = sched.queue_info(q)
            queues.append(QueueStats.model_construct(
                name=name, max_concurrent=mc, paused=paused, ready=ready, running=running,
                counts=per_queue[q]))
        agents = []
        for a, name in enumerate(sched.agent_names):
            cap, active, online, _ = sched.agent_info(a)
            leases = [{"lease_id": lid, "task_id": sched.task_ids[h], "attempt": att,
                       "expires_at": exp / NS} for lid, h, att, exp in sched.leases_of(a)]
            agents.append(AgentStats.model_construct(
                id=name, capabilities=list(st.agent_caps[a]), capacity=cap, online=online,
                active=active, leases=leases))
        return Stats.model_construct(counts=counts, by_priority=dict(sorted(by_prio.items())),
                                     queues=queues, agents=agents, tasks=sched.n_tasks,
                                     events=st.applied)

    def history(self, task_id: str) -> list[dict[str, Any]]:
        lookup(self._state.task_index, task_id, "task")
        return task_history(self._log, task_id, self._state.applied)

    def dead_letters(self) -> list[TaskView]:
        return self.tasks(status="FAILED")
