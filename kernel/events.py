"""The event schema of eskernel's log, and its only serializer.

Every record in the log is one event: a JSON object (orjson-encoded, UTF-8, no newlines)
whose first keys are ``"v"`` (the schema version, :data:`SCHEMA_VERSION`), ``"t"`` (the
event type) and ``"ts"`` (the kernel clock at the command, integer nanoseconds since the
epoch).  Times and durations are integer nanoseconds everywhere in the log; ids are strings.

======================  =================================================================
type                    fields (besides v, t, ts)
======================  =================================================================
``queue_declared``      queue, max_concurrent (0 = unlimited), paused
``queue_paused``        queue
``queue_resumed``       queue
``agent_registered``    agent, capabilities (queue names), capacity
``agent_offline``       agent
``agent_online``        agent
``submitted``           task, queue, priority, payload, depends_on, max_attempts, timeout,
                        not_before (0 = none); optional: agent (preferred), backoff
                        {initial, factor, max, jitter}, name, tags, key, parent
``claimed``             task, lease, agent, attempt, expires
``heartbeat``           task, lease, expires
``completed``           task, lease, result
``failed``              task, lease, error, retryable, retry_at (null: dead-lettered)
``expired``             task, lease, retry_at (null: dead-lettered)
``released``            task, lease
``ready``               task (its delay or backoff is over)
``cancelled``           task, reason ("cancelled" or "upstream"), cause (task id or null)
``requeued``            task
``epoch``               lease: lease ids continue from here (see below)
======================  =================================================================

``epoch`` is written, on disk, before the first claim a kernel answers ahead of the disk
(``fsync`` mode on a log that has records): a claim lost in a crash only returns its task
to the queue, and its lease id, below the epoch, is never issued again.

Optional fields are omitted when null (``backoff`` when it is :data:`DEFAULT_BACKOFF`);
:func:`decode` fills them back in, and DuckDB reads a missing key as NULL.

Decisions that depend on the clock or the random source (which task a claim got, a lease's
expiry, a retry's jittered due time) are recorded in these fields, so replay never reads a
clock.  ``submitted``, ``claimed``, ``completed``, ``heartbeat`` and ``released`` are
encoded in C by the scheduler core's hot calls (``_native/encode.pxi``); :func:`encode`
is the readable reference they are tested byte-equal to, and encodes every other event.

>>> ev = decode(encode({"t": "requeued", "ts": 5, "task": "a"}))
>>> ev["v"], ev["t"], ev["task"]
(1, 'requeued', 'a')
"""

from __future__ import annotations

import reprlib
from typing import Any

import orjson

from .errors import InvalidSpecError

__all__ = ["SCHEMA_VERSION", "EVENT_TYPES", "encode", "decode", "dumps", "loads",
           "fragment",
           "OPTIONAL", "DEFAULT_BACKOFF"]

SCHEMA_VERSION = 1

EVENT_TYPES: dict[str, tuple[str, ...]] = {
    "queue_declared": ("queue", "max_concurrent", "paused"),
    "queue_paused": ("queue",),
    "queue_resumed": ("queue",),
    "agent_registered": ("agent", "capabilities", "capacity"),
    "agent_offline": ("agent",),
    "agent_online": ("agent",),
    "submitted": ("task", "queue", "priority", "payload", "depends_on", "max_attempts",
                  "timeout", "not_before", "agent", "backoff", "name", "tags", "key",
                  "parent"),
    "claimed": ("task", "lease", "agent", "attempt", "expires"),
    "heartbeat": ("task", "lease", "expires"),
    "completed": ("task", "lease", "result"),
    "failed": ("task", "lease", "error", "retryable", "retry_at"),
    "expired": ("task", "lease", "retry_at"),
    "released": ("task", "lease"),
    "ready": ("task",),
    "cancelled": ("task", "reason", "cause"),
    "requeued": ("task",),
    "epoch": ("lease",),
}

loads = orjson.loads
fragment = orjson.Fragment

# Optional fields of each type: omitted from the record when they hold these values.
OPTIONAL: dict[str, dict[str, Any]] = {
    "submitted": {"agent": None, "backoff": None, "name": None, "tags": None, "key": None,
                  "parent": None},
}
DEFAULT_BACKOFF = {"initial": 1_000_000_000, "factor": 2.0, "max": 60_000_000_000,
                   "jitter": 0.0}


def dumps(value: Any) -> bytes:
    """JSON-encode a payload or result; raises InvalidSpecError when it is not JSON-able.

    >>> dumps({"a": [1, 2]})
    b'{"a":[1,2]}'
    """
    try:
        # orjson returns its output inside a 4 KiB allocation: a retained payload would cost
        # 4 KiB of memory (and a page fault) each.  A compact copy costs ~0.1 µs.
        return memoryview(orjson.dumps(value)).tobytes()
    except TypeError as err:
        raise InvalidSpecError(
            f"value {_show(value)} is not JSON-serializable ({err}); pass dicts, lists, str "
            "(valid UTF-8, no lone surrogates), int, float, bool or None, nested at most "
            "254 levels") from err


_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxstring, _repr.maxother = 3, 60, 60


def _show(value: Any) -> str:
    # A short repr that cannot recurse without bound (a value may nest 10,000 levels).
    return _repr.repr(value)


def encode(event: dict[str, Any]) -> bytes:
    """Encode one event (a dict with at least ``t`` and ``ts``) as a log record.

    The schema version is added first; the other keys follow in schema order.
    """
    t = event["t"]
    optional = OPTIONAL.get(t)
    out = {"v": SCHEMA_VERSION, "t": t, "ts": event["ts"]}
    for name in EVENT_TYPES[t]:
        value = event.get(name)
        if optional is not None and name in optional:
            if value is None or (name == "backoff" and value == DEFAULT_BACKOFF):
                continue
        out[name] = value
    try:
        return orjson.dumps(out)
    except TypeError:
        for name, value in out.items():     # name the field that cannot be encoded
            try:
                orjson.dumps(value)
            except TypeError as err:
                raise InvalidSpecError(
                    f"{t} event field {name!r} is {_show(value)}, which cannot be stored "
                    f"({err}); pass valid UTF-8 strings (no lone surrogates) and JSON values "
                    "nested at most 253 levels") from err
        raise


def decode(record: bytes) -> dict[str, Any]:
    """Decode one log record into its event dict; rejects unknown versions and types."""
    ev = orjson.loads(record)
    if type(ev) is not dict or ev.get("v") != SCHEMA_VERSION or type(ev.get("t")) is not str \
            or ev["t"] not in EVENT_TYPES:
        raise ValueError(f"record {record[:80]!r} is not an eskernel v{SCHEMA_VERSION} event")
    for name, default in OPTIONAL.get(ev["t"], {}).items():
        if name not in ev:
            ev[name] = DEFAULT_BACKOFF if name == "backoff" else default
    return ev
