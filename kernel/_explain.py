"""Why a task is not running: structured reasons read off the kernel's state.

:func:`explain` answers from the same state the claim decides on (the core's rows, queue and
agent tables), so what it says holds until the next event.  Each reason is a dict with a
``code``, a ``message`` for people and the fields its code names:

=========================  ===================================================================
code                       fields
=========================  ===================================================================
``running``                agent, lease_id, expires_at
``finished``               status (COMPLETED, FAILED or CANCELLED), dead_lettered
``dependencies``           waiting_for: [{task, status}] (the dependencies not COMPLETED)
``delayed``                until (a delay, or a retry's backoff: RETRYING)
``queue_paused``           queue
``queue_full``             queue, running, max_concurrent
``no_agent``               queue (no registered agent serves it)
``no_online_agent``        queue, agents (all serving agents are offline)
``agents_at_capacity``     queue, agents (every online serving agent holds its capacity)
``pinned_agent_offline``   agent
``pinned_agent_busy``      agent, active, capacity
``tick_due``               (its delay or backoff is over; the next ``tick()`` makes it READY)
``claimable``              queue, priority, agents (the online serving agents with room)
=========================  ===================================================================

A READY task with no blocking reason is ``claimable``: the next claim of one of those agents
takes the best READY task of the queues it serves (priority, then submission order), which
may be this one or one ahead of it.
"""

from __future__ import annotations

from typing import Any

from ._apply import KernelState
from ._codes import (FLAG_DEAD, ROW_DUE, ROW_EXPIRES, ROW_FLAGS, ROW_LAST_AGENT, ROW_LEASE_ID,
                     ROW_PINNED, ROW_PRIO, ROW_QUEUE, ROW_STATUS, TERMINAL)
from ._validate import NS, lookup

__all__ = ["explain"]


def explain(state: KernelState, task_id: str, now_ns: int) -> list[dict[str, Any]]:
    """The reasons task ``task_id`` is not running now (``now_ns``, the kernel's clock).

    Raises:
        UnknownTaskError: no task has this id; InvalidSpecError: not an id.
    """
    sched = state.sched
    h = lookup(state.task_index, task_id, "task")
    row = sched.task_row(h)
    status, q = row[ROW_STATUS], row[ROW_QUEUE]
    queue = sched.queue_names[q]
    if status == "RUNNING":
        agent = sched.agent_names[row[ROW_LAST_AGENT]]
        return [_reason("running", f"it runs on agent {agent!r} under lease "
                        f"{row[ROW_LEASE_ID]}", agent=agent, lease_id=row[ROW_LEASE_ID],
                        expires_at=row[ROW_EXPIRES] / NS)]
    if status in TERMINAL:
        dead = bool(row[ROW_FLAGS] & FLAG_DEAD)
        hint = "; requeue() brings a dead-lettered task back" if dead else ""
        return [_reason("finished", f"it is {status}{hint}", status=status,
                        dead_lettered=dead)]
    reasons: list[dict[str, Any]] = []
    if status == "PENDING":
        waiting = [{"task": d, "status": sched.task_row(state.task_index[d])[ROW_STATUS]}
                   for d in state.meta[h][4]
                   if sched.task_row(state.task_index[d])[ROW_STATUS] != "COMPLETED"]
        if waiting:
            names = ", ".join(f"{w['task']!r} ({w['status']})" for w in waiting)
            reasons.append(_reason("dependencies", f"it waits for {names}",
                                   waiting_for=waiting))
    due = row[ROW_DUE]
    if status in ("PENDING", "RETRYING") and due > now_ns:
        what = "its retry backoff" if status == "RETRYING" else "its delay"
        reasons.append(_reason("delayed", f"{what} ends in {(due - now_ns) / NS:.3f} s",
                               until=due / NS))
    if status != "READY" and not reasons:
        reasons.append(_reason("tick_due", "its wait is over; the next tick() makes it "
                               "READY"))
    reasons += _queue_and_agents(state, q, queue, row[ROW_PINNED], row[ROW_PRIO])
    blocked = [r for r in reasons if r["code"] != "claimable"]
    return blocked if blocked or status != "READY" else reasons


def _queue_and_agents(state: KernelState, q: int, queue: str, pinned: int,
                      prio: int) -> list[dict[str, Any]]:
    sched = state.sched
    out: list[dict[str, Any]] = []
    mc, paused, running, _ready = sched.queue_info(q)
    if paused:
        out.append(_reason("queue_paused", f"queue {queue!r} is paused; resume_queue() "
                           "lets claims take from it again", queue=queue))
    if mc and running >= mc:
        out.append(_reason("queue_full", f"queue {queue!r} runs {running} of its "
                           f"max_concurrent {mc}", queue=queue, running=running,
                           max_concurrent=mc))
    if pinned >= 0:
        agent = sched.agent_names[pinned]
        cap, active, up, _ = sched.agent_info(pinned)
        if not up:
            out.append(_reason("pinned_agent_offline", f"it is pinned to agent {agent!r}, "
                               "which is offline", agent=agent))
        elif active >= cap:
            out.append(_reason("pinned_agent_busy", f"it is pinned to agent {agent!r}, which "
                               f"holds {active} of {cap} leases", agent=agent, active=active,
                               capacity=cap))
        elif not out:
            out.append(_reason("claimable", f"agent {agent!r} (pinned) can take it",
                               queue=queue, priority=prio, agents=[agent]))
        return out
    serving = [a for a in range(len(sched.agent_names)) if sched.agent_serves(a, q)]
    names = [sched.agent_names[a] for a in serving]
    online = [a for a in serving if sched.agent_info(a)[2]]
    room = [sched.agent_names[a] for a in online
            if sched.agent_info(a)[1] < sched.agent_info(a)[0]]
    if not serving:
        out.append(_reason("no_agent", f"no registered agent serves queue {queue!r}; "
                           "register_agent() one with it among its capabilities",
                           queue=queue))
    elif not online:
        out.append(_reason("no_online_agent", f"every agent serving queue {queue!r} is "
                           f"offline ({', '.join(names)})", queue=queue, agents=names))
    elif not room:
        busy = [sched.agent_names[a] for a in online]
        out.append(_reason("agents_at_capacity", f"every online agent serving queue "
                           f"{queue!r} holds its capacity ({', '.join(busy)})",
                           queue=queue, agents=busy))
    elif not out:
        out.append(_reason("claimable", f"the next claim of {', '.join(room)} takes the best "
                           f"READY task of the queues it serves (this one or one ahead of "
                           "it)", queue=queue, priority=prio, agents=room))
    return out


def _reason(code: str, message: str, **fields: Any) -> dict[str, Any]:
    return {"code": code, "message": message, **fields}
