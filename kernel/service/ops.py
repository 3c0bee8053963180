"""The operations a server runs for requests: argument checks, authorization by agent, the
kernel call and the wire form of its result.

Invariants: every check that can refuse a request runs before the kernel call, and a kernel
call that raises has changed nothing (the Kernel's own rule), so a refused request writes no
event.  Leases travel as ``[lease_id, task_id]`` and are rebuilt from the kernel's lease
table (``Scheduler.live_lease``), so a lease granted before a restart is honoured after it
while it is live, and a stale one is refused like in-process.
"""

from __future__ import annotations

import math
from typing import Any

from .. import events
from .._core import Lease
from ..errors import (InvalidSpecError, PermissionDeniedError, StaleLeaseError,
                      UnknownTaskError)
from ..models import TaskSpec
from .auth import Identity

__all__ = ["SPEC_FIELDS", "args_of", "lease_of", "lease_wire", "number", "view_wire",
           "stats_wire", "check_agent", "spec_kwargs", "OUTCOME_KINDS", "EVENT_KINDS"]

SPEC_FIELDS = frozenset(TaskSpec.model_fields)
OUTCOME_KINDS = ("completed", "failed", "expired", "cancelled")
EVENT_KINDS = frozenset(events.EVENT_TYPES)


def args_of(op: str, args: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    """``args`` when every key is one ``op`` takes."""
    extra = [k for k in args if k not in allowed]
    if extra:
        raise InvalidSpecError(f"{op!r} takes arguments {list(allowed)}, not {extra[:5]}; "
                               "see docs/protocol.md")
    return args


def number(value: Any, what: str, low: float, high: float, default: float) -> float:
    """A finite number of seconds in [low, high] (``None``: ``default``)."""
    if value is None:
        return default
    if type(value) not in (int, float) or not math.isfinite(value) or not low <= value <= high:
        raise InvalidSpecError(f"{what} must be a number of seconds in [{low}, {high}], got "
                               f"{value!r:.60}")
    return float(value)


def check_agent(ident: Identity, agent_id: Any, op: str) -> None:
    if not ident.may_act_for(agent_id):
        raise PermissionDeniedError(
            f"this session may not {op} as agent {agent_id!r:.80}: its token allows "
            f"{list(ident.agents) if ident.role == 'worker' else ident.role + ' calls'}; "
            "connect with a worker token listing that agent id")


def lease_of(kernel: Any, ident: Identity, ref: Any, verb: str) -> Lease:
    """The live :class:`Lease` a ``[lease_id, task_id]`` names, checked against the
    session's agents.

    Raises:
        InvalidSpecError: not a ``[int, str]`` pair.
        StaleLeaseError: not the task's live lease (expired, released, finished, re-leased,
            or never issued).
        PermissionDeniedError: the lease belongs to an agent this session may not act for.
    """
    if (type(ref) is not list or len(ref) != 2 or type(ref[0]) is not int
            or type(ref[1]) is not str):
        raise InvalidSpecError(f"a lease is sent as [lease_id (int), task_id (str)], got "
                               f"{ref!r:.80}")
    lid, tid = ref
    h = kernel._state.task_index.get(tid)
    lease = kernel._sched.live_lease(h, lid) if h is not None and 0 < lid < 2**63 else None
    if lease is None:
        if h is None:
            raise StaleLeaseError(f"lease {lid} for task {tid!r:.80} was not issued by this "
                                  "server (no such task); do not report on it")
        row = kernel._sched.task_row(h)
        why = f"the task was re-leased as {row[7]}" if row[7] else f"the task is {row[0]}"
        raise StaleLeaseError(f"lease {lid} for task {tid!r} is stale: {why}; stop work on "
                              f"it and do not {verb} it")
    if not ident.may_act_for(lease.agent_id):
        raise PermissionDeniedError(
            f"lease {lid} of task {tid!r} belongs to agent {lease.agent_id!r}, which this "
            f"session may not act for; only that agent's worker may {verb} it")
    return lease  # type: ignore[no-any-return]


def lease_wire(kernel: Any, lease: Lease) -> list[Any]:
    """A granted lease and what a worker needs to run it, for a claim reply: ``[lease_id,
    task_id, agent_id, attempt, expires_ns, name, queue, payload, max_attempts,
    timeout]`` (an array: a batch of claims is most of the traffic)."""
    name, queue, payload, max_attempts, timeout = kernel.lease_task(lease)
    return [lease.lease_id, lease.task_id, lease.agent_id, lease.attempt, lease.expires_ns,
            name, queue, payload, max_attempts, timeout]


def view_wire(view: Any) -> dict[str, Any]:
    out: dict[str, Any] = view.model_dump()
    return out


def stats_wire(stats: Any) -> dict[str, Any]:
    out: dict[str, Any] = stats.model_dump()
    return out


def spec_kwargs(spec: Any) -> tuple[Any, Any, dict[str, Any]]:
    """``(queue, payload, keyword arguments)`` of ``Kernel.submit`` for a spec map."""
    if type(spec) is not dict:
        raise InvalidSpecError(f"a task spec is a map of TaskSpec fields, got {spec!r:.80}")
    extra = [k for k in spec if k not in SPEC_FIELDS]
    if extra:
        raise InvalidSpecError(f"unknown task spec field(s) {extra[:5]}; the fields are "
                               f"{sorted(SPEC_FIELDS)}")
    if "queue" not in spec:
        raise InvalidSpecError("a task spec needs 'queue'")
    kw = dict(spec)
    queue, payload = kw.pop("queue"), kw.pop("payload", None)
    if kw.get("depends_on") is None:
        kw.pop("depends_on", None)
    for k in ("priority", "max_attempts", "timeout"):
        if k in kw and kw[k] is None:
            del kw[k]
    return queue, payload, kw


def task_handles(kernel: Any, ids: Any) -> list[tuple[str, int]]:
    if type(ids) is str:
        ids = [ids]
    if type(ids) is not list or not ids or len(ids) > 100_000:
        raise InvalidSpecError(f"'tasks' must be a task id or a non-empty list of at most "
                               f"100,000 ids, got {ids!r:.80}")
    out = []
    for tid in ids:
        h = kernel._state.task_index.get(tid) if type(tid) is str else None
        if h is None:
            raise UnknownTaskError(f"no task has id {tid!r:.80}")
        out.append((tid, h))
    return out
