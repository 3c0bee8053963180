"""Records read from the log are untrusted input: each one is checked here against the state
before it, before any of it reaches the compiled core.

A record can pass its checksum and still mean nothing: written by another program, by a
buggy version, or crafted.  :func:`check_record` decodes one record and checks everything
the public API would have checked when the event was made, plus what live operation makes
true by construction:

* the schema: a JSON object of schema version :data:`events.SCHEMA_VERSION`, a known event
  type, exactly its fields (optional ones may be absent), each of the right type;
* ranges: the limits the public API enforces (``kernel/_validate.py``): ids, priority,
  capacity, max_concurrent, max_attempts, timeouts, times;
* order: timestamps never go backwards; lease ids are granted in sequence;
* references: queues, agents and tasks exist (and a submitted task does not yet), leases
  are the task's current one;
* transitions: the event is one the task's status allows and live operation would have
  made (a claim takes the task the core would choose; a retry is scheduled only with
  attempts left; ``ready`` only when the task's time has come...).

The replay fast path (``_native/replay_apply.pxi``) makes the same checks in C for the four
record layouts it parses, and hands anything it does not accept to this module, so a bad
record always ends here, with a precise message.

:func:`record_error` wraps what is wrong into :class:`LogRecordInvalidError`, naming the
segment file, the byte offset, the event type and the way out.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

from . import events
from ._codes import (DEAD, ROW_ATTEMPTS, ROW_DUE, ROW_EXPIRES, ROW_LEASE_ID, ROW_MAX_ATTEMPTS,
                     ROW_STATUS, ROW_UNMET, TERMINAL)
from ._validate import (ID_PATTERN, MAX_DURATION_S, MAX_TAG_DEPTH, MAX_TIME_S, NS, depth_ok,
                        show)
from .errors import EskernelError, LogRecordInvalidError
from .models import PRIORITY_MAX, PRIORITY_MIN
from .workflows.records import workflow_checks

__all__ = ["RecordError", "check_record", "check_shape", "task_events", "record_error",
           "MAX_TS", "MAX_DURATION"]

MAX_TS = int(MAX_TIME_S) * NS               # the latest event time: 4e9 s (year 2096)
MAX_DURATION = int(MAX_DURATION_S) * NS     # the longest timeout, delay or backoff
MAX_DUE = MAX_TS + MAX_DURATION             # a time computed as now + a duration
MAX_INT32 = 2**31 - 1
MAX_LEASE = 2**62
MAX_ERROR = 65536          # Kernel.fail keeps this many characters of an error
_FIELDS = {t: frozenset(("v", "t", "ts") + f) for t, f in events.EVENT_TYPES.items()}
_REQUIRED = {t: f - frozenset(events.OPTIONAL.get(t, ())) for t, f in _FIELDS.items()}
_BACKOFF_KEYS = frozenset(events.DEFAULT_BACKOFF)

class RecordError(Exception):
    """What is wrong with one record (internal; surfaces as LogRecordInvalidError)."""


# -- field checks -------------------------------------------------------------------------

def _int(ev: dict[str, Any], name: str, lo: int, hi: int) -> int:
    v = ev[name]
    if type(v) is not int or not lo <= v <= hi:
        raise RecordError(f"field {name!r} is {show(v)}, not an int in [{lo}, {hi}]")
    return v


def _bool(ev: dict[str, Any], name: str) -> bool:
    v = ev[name]
    if type(v) is not bool:
        raise RecordError(f"field {name!r} is {show(v)}, not a bool")
    return v


def _id(v: Any, what: str) -> str:
    if type(v) is not str or ID_PATTERN.fullmatch(v) is None:
        raise RecordError(f"{what} {show(v)} is not a valid id")
    return v


def _str(ev: dict[str, Any], name: str, limit: int | None = None) -> str | None:
    v = ev.get(name)
    if v is not None and (type(v) is not str or (limit is not None and len(v) > limit)):
        bound = f" of at most {limit} characters" if limit is not None else ""
        raise RecordError(f"field {name!r} is {show(v)}, not a string{bound}")
    return v


def _task(st: Any, v: Any, what: str = "task") -> int:
    h: int | None = st.task_index.get(v) if type(v) is str else None
    if h is None:
        raise RecordError(f"{what} {show(v)} was never submitted")
    return h


def _queue(st: Any, v: Any) -> int:
    q: int | None = st.queue_index.get(v) if type(v) is str else None
    if q is None:
        raise RecordError(f"queue {show(v)} was never declared")
    return q


def _agent(st: Any, v: Any) -> int:
    a: int | None = st.agent_index.get(v) if type(v) is str else None
    if a is None:
        raise RecordError(f"agent {show(v)} was never registered")
    return a


def _json_body(ev: dict[str, Any], name: str) -> bytes:
    try:
        return events.dumps(ev[name])
    except EskernelError as err:
        raise RecordError(f"field {name!r} cannot be stored: {err}") from None


# -- per event type -----------------------------------------------------------------------

def _queue_declared(st: Any, ev: dict[str, Any]) -> None:
    name = _id(ev["queue"], "queue")
    limit = _int(ev, "max_concurrent", 0, MAX_INT32)
    paused = _bool(ev, "paused")
    q = st.queue_index.get(name)
    if q is not None and st.sched.queue_info(q)[:2] == (limit, paused):
        raise RecordError(f"it declares queue {name!r} with the settings it already has "
                          "(the kernel writes no event for that)")


def _queue_toggle(st: Any, ev: dict[str, Any], paused: bool) -> None:
    q = _queue(st, ev["queue"])
    if st.sched.queue_info(q)[1] == paused:
        raise RecordError(f"queue {ev['queue']!r} is already "
                          f"{'paused' if paused else 'running'}")


def _agent_registered(st: Any, ev: dict[str, Any]) -> None:
    name = _id(ev["agent"], "agent")
    if name in st.agent_index:
        raise RecordError(f"agent {name!r} is already registered")
    caps = ev["capabilities"]
    if type(caps) is not list or not caps:
        raise RecordError(f"field 'capabilities' is {show(caps)}, not a non-empty list")
    for c in caps:
        _queue(st, c)
    if len(set(caps)) != len(caps):
        raise RecordError(f"capabilities {show(caps)} list a queue twice")
    _int(ev, "capacity", 1, MAX_INT32)


def _agent_toggle(st: Any, ev: dict[str, Any], online: bool) -> None:
    a = _agent(st, ev["agent"])
    if st.sched.agent_info(a)[2] == online:
        raise RecordError(f"agent {ev['agent']!r} is already {'online' if online else 'offline'}")


def _backoff(v: Any) -> None:
    if type(v) is not dict or v.keys() != _BACKOFF_KEYS:
        raise RecordError(f"field 'backoff' is {show(v)}, not an object with keys "
                          f"{sorted(_BACKOFF_KEYS)}")
    _int(v, "initial", 0, MAX_DURATION)
    _int(v, "max", 0, MAX_DURATION)
    for name, lo, hi in (("factor", 1.0, 1e6), ("jitter", 0.0, 1.0)):
        x = v[name]
        if type(x) not in (int, float) or not math.isfinite(x) or not lo <= x <= hi:
            raise RecordError(f"backoff {name} is {show(x)}, not a number in [{lo}, {hi}]")


def _submitted(st: Any, ev: dict[str, Any]) -> None:
    tid = _id(ev["task"], "task")
    if tid in st.task_index:
        raise RecordError(f"task {tid!r} was already submitted (a duplicate task id)")
    q = _queue(st, ev["queue"])
    _int(ev, "priority", PRIORITY_MIN, PRIORITY_MAX)
    _int(ev, "max_attempts", 1, 1_000_000)
    _int(ev, "timeout", 0, MAX_DURATION)      # a timeout below 0.5 ns rounds to 0
    _int(ev, "not_before", 0, MAX_DUE)
    deps = ev["depends_on"]
    if type(deps) is not list:
        raise RecordError(f"field 'depends_on' is {show(deps)}, not a list of task ids")
    sched = st.sched
    for d in deps:
        status = sched.task_row(_task(st, d, "dependency"))[ROW_STATUS]
        if status in DEAD:
            raise RecordError(f"dependency {d!r} is {status}; the kernel refuses that")
    if len(set(deps)) != len(deps):
        raise RecordError(f"depends_on {show(deps)} lists a task twice")
    agent = ev.get("agent")
    if agent is not None and not sched.agent_serves(_agent(st, agent), q):
        raise RecordError(f"the task is pinned to agent {agent!r}, which does not serve "
                          f"queue {ev['queue']!r}")
    if ev.get("backoff") is not None:
        _backoff(ev["backoff"])
    _str(ev, "name")
    key = _str(ev, "key")
    if key is not None and (not key or key in st.keys):
        raise RecordError(f"idempotency key {key!r} is empty or already used by task "
                          f"{st.keys.get(key)!r}")
    if ev.get("parent") is not None:
        _id(ev["parent"], "parent task")
    tags = ev.get("tags")
    if tags is not None and (type(tags) is not dict or not depth_ok(tags, MAX_TAG_DEPTH)):
        raise RecordError(f"field 'tags' is {show(tags)}, not an object nested at most "
                          f"{MAX_TAG_DEPTH} levels")
    ev["_body"] = _json_body(ev, "payload")      # the apply path stores it as is


def _lease(st: Any, ev: dict[str, Any]) -> tuple[int, tuple[Any, ...]]:
    # The task's row, after checking that the record names the task's current lease.
    h = _task(st, ev["task"])
    lid = _int(ev, "lease", 1, MAX_LEASE)
    row = st.sched.task_row(h)
    if row[ROW_LEASE_ID] != lid:
        cur = (f"its current lease is {row[ROW_LEASE_ID]}" if row[ROW_LEASE_ID]
               else f"it is {row[ROW_STATUS]} with no lease")
        raise RecordError(f"it names lease {lid} of task {ev['task']!r}, but {cur}")
    return h, row


def _claimed(st: Any, ev: dict[str, Any]) -> None:
    sched = st.sched
    h = _task(st, ev["task"])
    a = _agent(st, ev["agent"])
    lid = _int(ev, "lease", 1, MAX_LEASE)
    if lid != sched.next_lease_id:
        raise RecordError(f"it grants lease {lid}, but lease ids are granted in sequence and "
                          f"the next one is {sched.next_lease_id}")
    row = sched.task_row(h)
    if row[ROW_STATUS] != "READY":
        raise RecordError(f"task {ev['task']!r} is {row[ROW_STATUS]}, not READY")
    if sched.choose(a) != h:
        raise RecordError(f"agent {ev['agent']!r} could not have claimed task {ev['task']!r}: "
                          "it is offline or at capacity, the queue is paused or at its "
                          "limit, the agent does not serve it, or another task comes first")
    _int(ev, "attempt", row[ROW_ATTEMPTS] + 1, row[ROW_ATTEMPTS] + 1)
    want = ev["ts"] + sched.timeout_of(h)
    _int(ev, "expires", want, want)


def _heartbeat(st: Any, ev: dict[str, Any]) -> None:
    h, _ = _lease(st, ev)
    want = ev["ts"] + st.sched.timeout_of(h)
    _int(ev, "expires", want, want)


def _completed(st: Any, ev: dict[str, Any]) -> None:
    _lease(st, ev)
    ev["_body"] = _json_body(ev, "result")


def _retry_at(ev: dict[str, Any], row: tuple[Any, ...], retryable: bool) -> None:
    due = ev["retry_at"]
    dead = not retryable or row[ROW_ATTEMPTS] >= row[ROW_MAX_ATTEMPTS]
    if due is None:
        if not dead:
            raise RecordError(f"it dead-letters task {ev['task']!r} with attempts left "
                              f"({row[ROW_ATTEMPTS]} of {row[ROW_MAX_ATTEMPTS]})")
        return
    if dead:
        raise RecordError(f"it schedules a retry of task {ev['task']!r}, which has no "
                          f"attempts left ({row[ROW_ATTEMPTS]} of {row[ROW_MAX_ATTEMPTS]}) or is not "
                          "retryable")
    _int(ev, "retry_at", ev["ts"], ev["ts"] + MAX_DURATION)


def _failed(st: Any, ev: dict[str, Any]) -> None:
    _, row = _lease(st, ev)
    if type(ev["error"]) is not str or len(ev["error"]) > MAX_ERROR:
        raise RecordError(f"field 'error' is {show(ev['error'])}, not a string of at most "
                          f"{MAX_ERROR} characters")
    _retry_at(ev, row, _bool(ev, "retryable"))


def _expired(st: Any, ev: dict[str, Any]) -> None:
    _, row = _lease(st, ev)
    if row[ROW_EXPIRES] > ev["ts"]:
        raise RecordError(f"lease {ev['lease']} expires at {row[ROW_EXPIRES]}, after the "
                          "event's time")
    _retry_at(ev, row, True)


def _released(st: Any, ev: dict[str, Any]) -> None:
    _lease(st, ev)


def _ready(st: Any, ev: dict[str, Any]) -> None:
    row = st.sched.task_row(_task(st, ev["task"]))
    status, due, unmet = row[ROW_STATUS], row[ROW_DUE], row[ROW_UNMET]
    waiting = status == "RETRYING" or (status == "PENDING" and unmet == 0)
    if not waiting or due > ev["ts"]:
        raise RecordError(f"task {ev['task']!r} is {status} (due at {due}, {unmet} "
                          "unmet dependencies): it is not waiting for this time")


def _cancelled(st: Any, ev: dict[str, Any]) -> None:
    row = st.sched.task_row(_task(st, ev["task"]))
    if row[ROW_STATUS] in TERMINAL:
        raise RecordError(f"task {ev['task']!r} is already {row[ROW_STATUS]}")
    reason, cause = ev["reason"], ev["cause"]
    if reason == "cancelled":
        if cause is not None:
            raise RecordError(f"a direct cancel names cause {show(cause)}; it must be null")
    elif reason == "upstream":
        status = st.sched.task_row(_task(st, cause, "cause"))[ROW_STATUS]
        if status not in DEAD:
            raise RecordError(f"its cause {cause!r} is {status}, not FAILED or CANCELLED")
    else:
        raise RecordError(f"reason {show(reason)} is not 'cancelled' or 'upstream'")


def _requeued(st: Any, ev: dict[str, Any]) -> None:
    row = st.sched.task_row(_task(st, ev["task"]))
    if row[ROW_STATUS] != "FAILED":
        raise RecordError(f"task {ev['task']!r} is {row[ROW_STATUS]}; only FAILED tasks are "
                          "requeued")


def _epoch(st: Any, ev: dict[str, Any]) -> None:
    nxt = st.sched.next_lease_id
    _int(ev, "lease", min(nxt, MAX_LEASE), MAX_LEASE)    # lease ids never go back


_CHECKS = {
    "queue_declared": _queue_declared,
    "queue_paused": lambda st, ev: _queue_toggle(st, ev, True),
    "queue_resumed": lambda st, ev: _queue_toggle(st, ev, False),
    "agent_registered": _agent_registered,
    "agent_offline": lambda st, ev: _agent_toggle(st, ev, False),
    "agent_online": lambda st, ev: _agent_toggle(st, ev, True),
    "submitted": _submitted, "claimed": _claimed, "heartbeat": _heartbeat,
    "completed": _completed, "failed": _failed, "expired": _expired, "released": _released,
    "ready": _ready, "cancelled": _cancelled, "requeued": _requeued, "epoch": _epoch,
}
_CHECKS.update(workflow_checks(RecordError))     # the workflow layer's records
assert _CHECKS.keys() == events.EVENT_TYPES.keys()


def decode_record(rec: bytes) -> dict[str, Any]:
    """The event dict of one record whose envelope (JSON object, schema version, type,
    fields, ts) is well-formed; raises RecordError otherwise."""
    try:
        ev = events.loads(rec)
    except ValueError as err:       # orjson.JSONDecodeError: bad JSON, UTF-8, nesting
        raise RecordError(f"it is not valid JSON ({err})") from None
    if type(ev) is not dict:
        raise RecordError(f"it is {show(ev)}, not a JSON object")
    v = ev.get("v")
    if type(v) is not int or v != events.SCHEMA_VERSION:
        raise RecordError(f"it has schema version {show(v)}; this eskernel reads version "
                          f"{events.SCHEMA_VERSION} (upgrade eskernel if the log is newer)")
    t = ev.get("t")
    if type(t) is not str or t not in _FIELDS:
        raise RecordError(f"event type {show(t)} is unknown; known types: "
                          f"{', '.join(events.EVENT_TYPES)}")
    keys = ev.keys()
    if not keys <= _FIELDS[t] or not _REQUIRED[t] <= keys:
        extra, missing = sorted(keys - _FIELDS[t]), sorted(_REQUIRED[t] - keys)
        raise RecordError(f"its fields do not match the {t} event: unknown {extra}, "
                          f"missing {missing}")
    return ev


def check_record(state: Any, rec: bytes) -> dict[str, Any]:
    """Decode ``rec`` and check it against ``state`` (the state just before it); returns
    the event, ready for ``KernelState.apply``.  Raises RecordError naming what is wrong.
    Changes nothing in ``state``.

    >>> from eskernel._apply import KernelState
    >>> check_record(KernelState(), b'{"v":1,"t":"queue_paused","ts":5,"queue":"q"}')
    Traceback (most recent call last):
    ...
    eskernel._records.RecordError: queue 'q' was never declared
    """
    ev = decode_record(rec)
    ts = ev["ts"]
    if type(ts) is not int or not 0 <= ts <= MAX_TS:
        raise RecordError(f"field 'ts' is {show(ts)}, not a time in ns in [0, {MAX_TS}]")
    last = state.sched.last_ts
    if ts < last:
        raise RecordError(f"its time {ts} is before the previous event's ({last}): time "
                          "never goes backwards in a log")
    _CHECKS[ev["t"]](state, ev)
    return ev


_TYPE = re.compile(rb'"t":"([a-z_]{1,40})"')


_INT_FIELDS = ("lease", "attempt", "expires", "retry_at", "not_before", "priority",
               "max_attempts", "timeout", "capacity", "max_concurrent")
_STR_FIELDS = ("task", "queue", "agent", "cause", "parent", "name", "key", "error", "reason")


def check_shape(rec: bytes) -> dict[str, Any]:
    """The event of ``rec`` when its envelope and the types of its fields are valid, without
    the state (what a display of single events needs); raises RecordError otherwise."""
    ev = decode_record(rec)
    for name in ("ts",) + _INT_FIELDS:
        v = ev.get(name)
        if v is not None and (type(v) is not int or not 0 <= v <= MAX_DUE):
            raise RecordError(f"field {name!r} is {show(v)}, not an int in [0, {MAX_DUE}]")
    for name in _STR_FIELDS:
        v = ev.get(name)
        if v is not None and type(v) is not str:
            raise RecordError(f"field {name!r} is {show(v)}, not a string")
    deps = ev.get("depends_on")
    if deps is not None and (type(deps) is not list or any(type(d) is not str for d in deps)):
        raise RecordError(f"field 'depends_on' is {show(deps)}, not a list of task ids")
    return ev


def task_events(log: Any, task_id: str) -> list[dict[str, Any]]:
    """The events of ``log`` that name ``task_id``, in log order, each with its ``offset``
    (like ``_views.task_history``), each checked with :func:`check_shape`.

    Raises:
        LogRecordInvalidError: a record naming the task is not a well-formed event.
    """
    needle = b'"task":"%s"' % task_id.encode()
    out = []
    for off, rec in log.read_containing(needle, 0, None):
        try:
            ev = check_shape(rec)
        except RecordError as err:
            raise record_error(log, off, rec, err) from None
        if ev.get("task") == task_id:    # not the same text inside a payload
            ev["offset"] = off
            out.append(ev)
    return out


def _record_type(rec: bytes) -> str | None:
    # The type the record names: decoded, or found in its first bytes when it is not JSON.
    try:
        ev = events.loads(rec)
        t = ev.get("t") if type(ev) is dict else None
    except ValueError:
        m = _TYPE.search(rec[:64])
        t = m.group(1).decode() if m else None
    return t if type(t) is str else None


def _locate(log: Any, offset: int) -> tuple[str, int]:
    # (segment file, byte offset of the record's frame); only on the error path: it reads
    # the segment's records before this one to sum their frame sizes.
    from eskernel.eventlog.framing import (FRAME_HEADER_SIZE, HEADER_SIZE, parse_segment_name,
                                  segment_name)
    path = getattr(log, "path", None)
    if path is None:
        return "", 0
    try:
        firsts = sorted(f for f in map(parse_segment_name, os.listdir(path))
                        if f is not None and f <= offset)
        first = firsts[-1]
        pos, at = HEADER_SIZE, first
        while at < offset:
            batch = log.read_batch(at, min(8192, offset - at))
            if not batch:
                break
            pos += sum(FRAME_HEADER_SIZE + len(r) for r in batch)
            at += len(batch)
        return str(os.path.join(path, segment_name(first))), pos
    except (OSError, IndexError, EskernelError):
        return str(path), 0


def record_error(log: Any, offset: int, rec: bytes, err: BaseException) -> LogRecordInvalidError:
    """The typed error for record ``offset`` of ``log`` (raw bytes ``rec``), which failed
    with ``err`` (a RecordError, or what the apply path raised)."""
    segment, pos = _locate(log, offset)
    t = _record_type(rec)
    what = str(err) if isinstance(err, RecordError) else (
        f"the kernel's apply path rejects it ({type(err).__name__}: {err})")
    where = f"segment {segment} at byte {pos}" if segment else "the in-memory log"
    msg = (f"event {offset} ({t or 'no event type'}) in {where} passes its checksum but is "
           f"not a valid event: {what}. Nothing was applied; run `eskernel verify "
           f"{getattr(log, 'path', 'DIR')}` for a full report, and restore the log from a "
           "backup or truncate it before this event")
    return LogRecordInvalidError(msg, segment=segment, offset=pos, log_offset=offset,
                                 record_type=t)
