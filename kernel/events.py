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
``workflow_started``    workflow, definition (the JSON form of a workflow definition),
                        context (the initial context)
``workflow_step``       workflow, path (e.g. ``review/2/fix``), status ("running",
                        "completed", "failed", "skipped"), task (or null), info (what was
                        decided: branch, iteration, attempt, wake, error; or null),
                        context (fields merged into the workflow context, or null)
``workflow_signal``     workflow, field, value
``workflow_paused``     workflow
``workflow_resumed``    workflow
``workflow_finished``   workflow, status ("completed", "failed", "cancelled"), error
``epoch``               lease: lease ids continue from here (see below)
======================  =================================================================

The workflow events are decisions of ``eskernel.workflows``' interpreter, taken live and
recorded; replay applies them as they are and evaluates no condition.

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
           "encode_workflow_step",
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
    "workflow_started": ("workflow", "definition", "context"),
    "workflow_step": ("workflow", "path", "status", "task", "info", "context"),
    "workflow_signal": ("workflow", "field", "value"),
    "workflow_paused": ("workflow",),
    "workflow_resumed": ("workflow",),
    "workflow_finished": ("workflow", "status", "error"),
    "epoch": ("lease",),
}

loads = orjson.loads
fragment = orjson.Fragment

# Optional fields of each type: omitted from the record when they hold these values.
OPTIONAL: dict[str, dict[str, Any]] = {
    "submitted": {"agent": None, "backoff": None, "name": None, "tags": None, "key": None,
                  "parent": None},
}
#: (initial ns, factor, max ns, jitter): the backoff a task without one gets.
DEFAULT_BACKOFF_KEY: tuple[int, float, int, float] = (1_000_000_000, 2.0, 60_000_000_000, 0.0)
DEFAULT_BACKOFF: dict[str, float] = dict(zip(("initial", "factor", "max", "jitter"),
                                             DEFAULT_BACKOFF_KEY))


_ACCEPTED = ("pass dicts (str keys), lists, str (valid UTF-8, no lone surrogates), int, "
             "finite float, bool or None, nested at most 254 levels")


def dumps(value: Any) -> bytes:
    """JSON-encode a payload or result; raises InvalidSpecError when it is not JSON-able.

    The contract: dicts with str keys, lists, str, int, finite floats, bool and None are
    stored as they are.  A few other values are stored as their JSON form and come back as
    that form, not as the object: a tuple as a list, an enum as its value, a ``uuid.UUID``
    as its canonical str, a ``datetime``/``date``/``time`` as an RFC 3339 str (a naive
    datetime stays without offset) and a dataclass instance as a dict of its fields.  A
    NaN or infinite float is refused (JSON has no such number; orjson would store
    ``null``).

    >>> dumps({"a": [1, 2], "b": (3,)})
    b'{"a":[1,2],"b":[3]}'
    >>> try:
    ...     dumps({"x": float("nan")})
    ... except InvalidSpecError as err:
    ...     print(str(err)[:50])
    value {'x': nan} holds the float nan at ['x'], whi
    """
    try:
        # orjson returns its output inside a 4 KiB allocation: a retained payload would cost
        # 4 KiB of memory (and a page fault) each.  A compact copy costs ~0.1 µs.
        body = memoryview(orjson.dumps(value)).tobytes()
    except TypeError as err:
        raise InvalidSpecError(
            f"value {_show(value)} is not JSON-serializable ({err}); {_ACCEPTED}") from err
    # orjson writes a non-finite float as null: only a body holding "null" can hide one.
    if b"null" in body:
        _check_finite(value)
    return body


def _check_finite(value: Any) -> None:
    # Iterative: the value may nest up to orjson's 254 levels.
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    while stack:
        v, path = stack.pop()
        if isinstance(v, float):
            if v != v or v in (_INF, -_INF):
                where = "".join(f"[{p!r}]" for p in path) or "the top level"
                raise InvalidSpecError(
                    f"value {_show(value)} holds the float {v!r} at {where}, which JSON "
                    f"cannot store; pass a finite number, None or a str such as \"{v!r}\"")
        elif isinstance(v, dict):
            stack.extend((x, path + (k,)) for k, x in v.items())
        elif isinstance(v, (list, tuple)):
            stack.extend((x, path + (i,)) for i, x in enumerate(v))


_INF = float("inf")


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


def encode_workflow_step(ts: int, workflow: str, path: str, status: str, task: str | None,
                         info: dict[str, Any] | None, context: dict[str, Any] | None) -> bytes:
    """The ``workflow_step`` record (a workflow's per-step decisions; byte-identical to
    :func:`encode`).  Raises InvalidSpecError, like :func:`encode`, for a value that
    cannot be stored."""
    try:
        return orjson.dumps({"v": SCHEMA_VERSION, "t": "workflow_step", "ts": ts,
                             "workflow": workflow, "path": path, "status": status,
                             "task": task, "info": info, "context": context})
    except TypeError:
        return encode({"t": "workflow_step", "ts": ts, "workflow": workflow, "path": path,
                       "status": status, "task": task, "info": info, "context": context})
