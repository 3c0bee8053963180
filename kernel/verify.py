"""Audit a log: integrity (checksums, dense offsets) and the scheduler's semantic rules.

:func:`verify_log` reads every event once, in order, and checks:

=======================  ===============================================================
rule                     what must hold
=======================  ===============================================================
``integrity``            every frame passes its checksum; segments are dense
``schema``               every record is a known schema-v1 event
``unknown-ref``          events name declared queues, registered agents, submitted tasks
``duplicate-task``       a task id is submitted once
``task-leased-twice``    a task is never claimed while it holds an open lease
``agent-capacity``       an agent never holds more open leases than its capacity
``queue-max-concurrent`` a queue never runs more tasks than its max_concurrent (0 = no cap)
``agent-capability``     an agent only claims tasks of queues it serves
``dependency-order``     a task is claimed only after all its dependencies completed
``claim-terminal``       a COMPLETED / FAILED / CANCELLED task is never claimed
``lease-monotonic``      lease ids strictly increase (they are fencing tokens)
``lease-end``            heartbeat / complete / fail / expire / release name the task's
                         open lease; every lease ends once (or is still open)
``record``               the event is valid for the state before it, as replay checks it
                         (types, ranges, references, time order, legal transitions)
``apply``                the kernel's own apply path accepts the event
``snapshot-digest``      the state replayed from offset 0 equals each stored snapshot's
``snapshot-corrupt``     every snapshot file passes its checks and its last record is the
                         log's record at that offset
``snapshot-beyond-end``  no snapshot lies beyond the log's end (opening would ignore and
                         remove it: it describes records the log does not hold)
=======================  ===============================================================

It stops at the first violation and names it (offset, event, rule).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import eskernel.eventlog as eventlog
from eskernel.eventlog import EventLog
from eskernel.eventlog.errors import LogCorruptError
from eskernel.eventlog.snapshots import list_snapshots
from . import events as kevents
from ._records import RecordError
from .errors import LogRecordInvalidError

__all__ = ["Violation", "VerifyResult", "verify_log", "RULES"]

RULES = ("integrity", "schema", "unknown-ref", "duplicate-task", "task-leased-twice",
         "agent-capacity", "queue-max-concurrent", "agent-capability", "dependency-order",
         "claim-terminal", "lease-monotonic", "lease-end", "record", "apply",
         "snapshot-digest", "snapshot-corrupt", "snapshot-beyond-end")
BATCH = 8192


@dataclasses.dataclass(frozen=True)
class Violation:
    """The first broken rule: where (``offset``, ``event`` type), which ``rule``, and why."""

    offset: int | None
    event: str | None
    rule: str
    message: str

    def __str__(self) -> str:
        where = f"offset {self.offset}" if self.offset is not None else "the log"
        ev = f" ({self.event})" if self.event else ""
        return f"{where}{ev}: rule {self.rule}: {self.message}"


@dataclasses.dataclass(frozen=True)
class VerifyResult:
    """What was checked: ``events``, ``segments``, ``snapshots`` compared, ``torn_tail_bytes``
    and the first ``violation`` (None when the log is clean)."""

    events: int
    segments: int
    snapshots: int
    torn_tail_bytes: int
    violation: Violation | None

    @property
    def ok(self) -> bool:
        """True when no rule was broken."""
        return self.violation is None


class _Broken(Exception):
    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


class _SnapshotBad(Exception):
    def __init__(self, violation: Violation) -> None:
        super().__init__(str(violation))
        self.violation = violation


class _Checker:
    """The semantic state: open leases, running counts, completed tasks."""

    def __init__(self) -> None:
        self.queues: dict[str, int] = {}
        self.agents: dict[str, tuple[int, frozenset[str]]] = {}
        self.tasks: dict[str, tuple[str, tuple[str, ...]]] = {}
        self.completed: set[str] = set()
        self.terminal: set[str] = set()
        self.open: dict[str, tuple[int, str]] = {}        # task -> (lease, agent)
        self.agent_open: dict[str, int] = {}
        self.queue_running: dict[str, int] = {}
        self.max_lease = 0

    def _task(self, ev: dict[str, Any]) -> str:
        task = ev.get("task")
        if type(task) is not str or task not in self.tasks:
            raise _Broken("unknown-ref", f"task {task!r} was never submitted")
        return task

    def _close(self, task: str, lease: Any, what: str) -> None:
        cur = self.open.get(task)
        if cur is None or cur[0] != lease:
            held = f"its open lease is {cur[0]}" if cur else "it holds no open lease"
            raise _Broken("lease-end", f"{what} of task {task!r} names lease {lease!r} but "
                          f"{held}")
        del self.open[task]
        self.agent_open[cur[1]] -= 1
        self.queue_running[self.tasks[task][0]] -= 1

    def check(self, ev: dict[str, Any]) -> None:
        t = ev["t"]
        if t == "queue_declared":
            self.queues[ev["queue"]] = ev["max_concurrent"] or 0
        elif t in ("queue_paused", "queue_resumed"):
            if ev["queue"] not in self.queues:
                raise _Broken("unknown-ref", f"queue {ev['queue']!r} was never declared")
        elif t == "agent_registered":
            for q in ev["capabilities"] or ():
                if q not in self.queues:
                    raise _Broken("unknown-ref", f"agent {ev['agent']!r} serves queue {q!r}, "
                                  "which was never declared")
            self.agents[ev["agent"]] = (ev["capacity"], frozenset(ev["capabilities"] or ()))
        elif t in ("agent_offline", "agent_online"):
            if ev["agent"] not in self.agents:
                raise _Broken("unknown-ref", f"agent {ev['agent']!r} was never registered")
        elif t == "submitted":
            task, queue = ev["task"], ev["queue"]
            if task in self.tasks:
                raise _Broken("duplicate-task", f"task {task!r} was already submitted")
            if queue not in self.queues:
                raise _Broken("unknown-ref", f"task {task!r} names queue {queue!r}, which was "
                              "never declared")
            deps = tuple(ev["depends_on"] or ())
            for d in deps:
                if d not in self.tasks:
                    raise _Broken("unknown-ref", f"task {task!r} depends on {d!r}, which was "
                                  "never submitted")
            self.tasks[task] = (queue, deps)
        elif t == "claimed":
            self._claim(ev)
        elif t == "heartbeat":
            task = self._task(ev)
            cur = self.open.get(task)
            if cur is None or cur[0] != ev["lease"]:
                raise _Broken("lease-end", f"heartbeat of task {task!r} names lease "
                              f"{ev['lease']!r}, which is not its open lease")
        elif t in ("completed", "failed", "expired", "released"):
            task = self._task(ev)
            self._close(task, ev["lease"], t)
            if t == "completed":
                self.completed.add(task)
                self.terminal.add(task)
            elif t in ("failed", "expired") and ev["retry_at"] is None:
                self.terminal.add(task)
        elif t == "cancelled":
            task = self._task(ev)
            if task in self.open:
                self._close(task, self.open[task][0], t)
            self.terminal.add(task)
        elif t == "requeued":
            self.terminal.discard(self._task(ev))
        elif t == "ready":
            self._task(ev)

    def _claim(self, ev: dict[str, Any]) -> None:
        task, agent, lease = self._task(ev), ev["agent"], ev["lease"]
        if agent not in self.agents:
            raise _Broken("unknown-ref", f"agent {agent!r} was never registered")
        queue, deps = self.tasks[task]
        capacity, serves = self.agents[agent]
        if not isinstance(lease, int) or lease <= self.max_lease:
            raise _Broken("lease-monotonic", f"lease {lease!r} is not above the previous "
                          f"lease id {self.max_lease}")
        self.max_lease = lease
        if task in self.open:
            raise _Broken("task-leased-twice", f"task {task!r} is claimed as lease {lease} "
                          f"while lease {self.open[task][0]} is still open")
        if task in self.terminal:
            raise _Broken("claim-terminal", f"task {task!r} is claimed after it finished")
        if queue not in serves:
            raise _Broken("agent-capability", f"agent {agent!r} claims task {task!r} of "
                          f"queue {queue!r}, which it does not serve")
        if self.agent_open.get(agent, 0) >= capacity:
            raise _Broken("agent-capacity", f"agent {agent!r} claims a lease beyond its "
                          f"capacity {capacity}")
        limit = self.queues[queue]
        if limit and self.queue_running.get(queue, 0) >= limit:
            raise _Broken("queue-max-concurrent", f"queue {queue!r} runs more than its "
                          f"max_concurrent {limit}")
        for d in deps:
            if d not in self.completed:
                raise _Broken("dependency-order", f"task {task!r} is claimed before its "
                              f"dependency {d!r} completed")
        self.open[task] = (lease, agent)
        self.agent_open[agent] = self.agent_open.get(agent, 0) + 1
        self.queue_running[queue] = self.queue_running.get(queue, 0) + 1


def verify_log(path: str | os.PathLike[str], *,
               progress: Callable[[int, int], None] | None = None) -> VerifyResult:
    """Check the log at ``path``; return a :class:`VerifyResult` naming the first violation.

    Raises:
        LogNotFoundError: no log at ``path``.

    Cost: one checksum scan plus one decode-and-check pass (~1-2 µs per event).

    >>> import tempfile
    >>> from eskernel.eventlog import EventLog
    >>> d = tempfile.mkdtemp()
    >>> with EventLog.open(d) as log:
    ...     _ = log.append(b'{"v":1,"t":"queue_paused","ts":1,"queue":"nope"}')
    >>> str(verify_log(d).violation)
    "offset 0 (queue_paused): rule unknown-ref: queue 'nope' was never declared"
    """
    from ._apply import KernelState  # the one apply path; see the module docstring

    path = Path(path)
    try:
        integrity = eventlog.verify(path)
    except LogCorruptError as err:
        return VerifyResult(0, 0, 0, 0, Violation(None, None, "integrity", str(err)))
    with EventLog.open_readonly(path) as reader:
        return _Verify(reader, integrity, progress).run(KernelState())


class _Verify:
    """One pass: each record goes through the checker's rules (an observer of the replay
    loop that opening uses, kernel/_replay.py), then that loop checks and applies it; each
    stored snapshot is compared with the state replayed up to its offset."""

    def __init__(self, reader: Any, integrity: Any,
                 progress: Callable[[int, int], None] | None) -> None:
        self.reader, self.integrity, self.progress = reader, integrity, progress
        self.total = min(reader.next_offset, integrity.records)
        self.snaps = list_snapshots(reader.path)
        self.checker = _Checker()
        self.compared = 0
        self.pending: list[int] = []
        self.ev: dict[str, Any] | None = None     # the record being checked, decoded
        self.state: Any = None

    def run(self, state: Any) -> VerifyResult:
        from ._replay import _replay_into
        self.state = state
        beyond = [s for s in self.snaps if s > self.total]
        if beyond:
            return self._result(self.total, Violation(
                beyond[0], None, "snapshot-beyond-end",
                f"snapshot(s) at offset(s) {beyond} lie beyond the log's end {self.total}: "
                "they describe records the log does not hold; opening the directory removes "
                "them"))
        self.pending = [s for s in self.snaps if s <= self.total]
        try:
            _replay_into(state, self.reader, self.total, observe=self._observe)
            self._snapshots_at(self.total)
        except _Broken as b:
            return self._fail(b.rule, b.message)
        except _SnapshotBad as bad:
            return self._result(state.applied, bad.violation, torn=False)
        except LogRecordInvalidError as err:
            cause = err.__cause__
            if isinstance(cause, RecordError):
                return self._fail("record", f"replay refuses it: {cause}")
            if isinstance(cause, KeyError):
                return self._fail("schema", f"event lacks field {cause}")
            return self._fail("apply", f"the kernel's apply rejects it: {cause}")
        if self.progress is not None:
            self.progress(self.total, self.total)
        return self._result(self.total, None)

    def _observe(self, off: int, rec: bytes) -> None:
        if self.pending and self.pending[0] == off:
            self._snapshots_at(off)
        if self.progress is not None and off and off % BATCH == 0:
            self.progress(off, self.total)
        self.ev = None
        try:
            raw = kevents.loads(rec)    # as replay reads it: optional fields may be absent
            if (type(raw) is not dict or raw.get("v") != kevents.SCHEMA_VERSION
                    or raw.get("t") not in kevents.EVENT_TYPES):
                raise ValueError(f"record {rec[:80]!r} is not an eskernel "
                                 f"v{kevents.SCHEMA_VERSION} event")
            self.ev = raw
            self.checker.check(raw)
        except KeyError as err:
            raise _Broken("schema", f"event lacks field {err}") from None
        except (ValueError, TypeError) as err:
            if self.ev is None:
                raise _Broken("schema", f"record is not an eskernel event: {err}") from None
            raise _Broken("apply", f"the kernel's apply rejects it: {err}") from None

    def _snapshots_at(self, off: int) -> None:
        while self.pending and self.pending[0] == off:
            bad = _compare_snapshot(self.reader, self.pending.pop(0), self.state)
            if bad is not None:
                raise _SnapshotBad(bad)
            self.compared += 1

    def _fail(self, rule: str, msg: str) -> VerifyResult:
        off = self.state.applied
        etype = self.ev.get("t") if isinstance(self.ev, dict) else None
        return self._result(off, Violation(off, etype, rule, msg))

    def _result(self, events: int, violation: Violation | None, *,
                torn: bool = True) -> VerifyResult:
        return VerifyResult(events, self.integrity.segments, self.compared,
                            self.integrity.torn_tail_bytes if torn else 0, violation)


def _compare_snapshot(reader: Any, offset: int, state: Any) -> Violation | None:
    from ._replay import usable_snapshot
    from .errors import SnapshotCorruptError
    snap = reader.latest_snapshot(offset)
    name = reader.path / f"{offset:020d}.snap"
    if snap is None or snap.offset != offset:
        return Violation(offset, None, "snapshot-corrupt",
                         f"snapshot {name} fails its file checks (opening passes over it)")
    try:
        loaded = usable_snapshot(reader, snap)
    except SnapshotCorruptError as err:
        return Violation(offset, None, "snapshot-corrupt",
                         f"snapshot {snap.path} cannot be used: {err} (opening passes over it)")
    stored, replayed = loaded.digest(), state.digest()
    if stored != replayed:
        return Violation(offset, None, "snapshot-digest",
                         f"snapshot {snap.path} has digest {stored[:16]}… but replaying "
                         f"events 0..{offset - 1} gives {replayed[:16]}…")
    return None
