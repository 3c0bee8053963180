"""Incremental ingest: log records ``[start, end)`` -> the projection's tables, in one
DuckDB transaction that also stores the new ``next_offset``.

A chunk is exported by the log reader as NDJSON (in C, ``"offset"`` injected, in parts of
equal record counts written at once), read by DuckDB's ``read_ndjson`` with explicit columns,
checked in the same scan and appended to ``events`` with queue / priority / agent / attempt
filled in from the task's submit and the lease's claim: straight from the reader for a
first chunk, through a temporary stage for a later one (whose touched rows are read before
the insert).  The first chunk derives tasks and attempts from all events; a later
chunk folds its events into the rows of the tasks it *touches* (a task with an event in the
chunk, or whose dependency completed in it) and of the leases it opens or ends, so its cost
follows the chunk and the derived tables, not the length of the history.  Agents and queues
are recomputed when the chunk changes them.  An incremental refresh gives exactly the rows
a full ingest gives (tests/test_analytics.py and tests/test_analytics_incremental.py hold
them equal at many cut points), and a crash mid-chunk rolls back rows and offset together.
"""

from __future__ import annotations

from typing import Any

import duckdb

from eskernel.eventlog import JsonParts
from eskernel.events import EVENT_TYPES

from .schema import EVENT_COLUMNS, LAYOUT_VERSION, SCHEMA_VERSION

__all__ = ["first_bad_record", "ingest_files", "reset"]

_COLUMNS = "{" + ", ".join(f"'{k}': '{v}'" for k, v in EVENT_COLUMNS.items()) + "}"
_KNOWN = ", ".join(f"'{t}'" for t in EVENT_TYPES)
# The events that declare or change an agent or a queue.
_REGISTRY = ", ".join(f"'{t}'" for t in EVENT_TYPES if t.startswith(("agent_", "queue_")))
_EVENT_FIELDS = [k for k in EVENT_COLUMNS if k not in ("v", "offset", "t", "ts")]


def _quote(path: str) -> str:
    return "'" + path.replace("'", "''") + "'"


def _bad(r: str = "") -> str:
    # A record that is not a known v1 event (``r``: the relation's prefix).  It stops the
    # insert (the caller then names it, see first_bad_record): the check rides on the
    # insert's own scan instead of a scan of its own.
    return (f"{r}v IS DISTINCT FROM {SCHEMA_VERSION} OR {r}t IS NULL OR {r}t NOT IN ({_KNOWN}) "
            f"OR {r}ts IS NULL")


_NOT_AN_EVENT = "eskernel: a record is not an eskernel event"


def _read(export: JsonParts) -> str:
    # DuckDB reads in buffers of twice the maximum object size, and some versions refuse a
    # longer line: the smallest size that holds every line keeps the buffers (and their
    # first-touch cost) small.  64 MB instead of 16 MB costs ~30 ms more per million events.
    files = "[" + ", ".join(_quote(str(p)) for p in export.paths) + "]"
    size = max(16 << 20, 1 << export.longest_line.bit_length())
    return (f"read_ndjson({files}, columns = {_COLUMNS}, "
            f"format = 'newline_delimited', maximum_object_size = {size})")


# One statement from the reader into the table, filling queue / priority from the task's
# submit and agent / attempt from the lease's claim: in the chunk, or (later chunks) in the
# rows of earlier ones.  The chunk is read once (the CTE is materialized) and never staged
# in a table: ~0.1 s per million events less than a temporary stage and an insert from it.
_INSERT_EVENTS_SQL = f"""
INSERT INTO events ("offset", ts, type, {", ".join(_EVENT_FIELDS)})
WITH s AS MATERIALIZED (SELECT * FROM {{source}})
SELECT s."offset", s.ts, CASE WHEN {_bad("s.")}
                              THEN error('{_NOT_AN_EVENT}') ELSE s.t END,
       s.task, coalesce(s.queue, k.queue), coalesce(s.agent, l.agent),
       s.lease, coalesce(s.attempt, l.attempt), coalesce(s.priority, k.priority),
       {", ".join("s." + f for f in _EVENT_FIELDS[6:])}
FROM s
LEFT JOIN (SELECT task, queue, priority FROM s WHERE t = 'submitted' {{old_tasks}}) k
    ON s.task = k.task
LEFT JOIN (SELECT lease, agent, attempt FROM s WHERE t = 'claimed' {{old_leases}}) l
    ON s.lease = l.lease
"""
_INSERT_EVENTS = _INSERT_EVENTS_SQL.replace("{old_tasks}", "").replace("{old_leases}", "")
_INSERT_EVENTS_MERGED = _INSERT_EVENTS_SQL.replace(
    "{old_tasks}", "UNION ALL SELECT task, queue, priority FROM old_tasks").replace(
    "{old_leases}", "UNION ALL SELECT lease, agent, attempt FROM old_leases")


def first_bad_record(con: Any, export: JsonParts) -> tuple[int, str] | None:
    """The first record of ``export`` that is not a known v1 event, as
    ``(offset, description)``; None when there is none."""
    row = con.execute(f'SELECT "offset", v, t, ts FROM {_read(export)} WHERE {_bad()} '
                      'ORDER BY "offset" LIMIT 1').fetchone()
    if row is None:
        return None
    offset, v, t, ts = row
    return offset, f"schema version {v!r}, type {t!r}" + (", no ts" if ts is None else "")


# The tasks a chunk touches (an event of theirs, or a dependency completing) and the rows it
# folds into: of those tasks, and of the leases it names.  One scan of each derived table;
# the row ids let the old rows be deleted without another.
_TOUCHED = """
CREATE OR REPLACE TEMP TABLE touched AS
SELECT DISTINCT task FROM stage WHERE task IS NOT NULL
UNION
SELECT task FROM task_deps WHERE dep IN (SELECT task FROM stage WHERE t = 'completed');
CREATE OR REPLACE TEMP TABLE old_tasks AS
SELECT rowid AS row_id, * FROM tasks WHERE task IN (SELECT task FROM touched);
CREATE OR REPLACE TEMP TABLE old_leases AS
SELECT rowid AS row_id, * FROM attempts
WHERE lease IN (SELECT lease FROM stage WHERE lease IS NOT NULL);
"""

# Per task, what its events add up to (the raw fields of a tasks row).  Every field is a
# min / max / count, or a value of the task's latest event of some kind: so the fold of a
# chunk's events into an existing row is exact (see _MERGE).
_AGG = """
SELECT task, queue, priority, name, max_attempts, submitted_at, not_before, n_deps,
    first_ready_event_at, first_claimed_at, last_claimed_at, leases, last_agent,
    last_attempt, failures, expiries, last.type AS last_event, last.ts AS last_event_at,
    last.retry_at AS last_retry_at, last.reason AS last_reason, last_offset
FROM (
    SELECT task,
        max(queue) AS queue, max(priority) AS priority,
        max(name) FILTER (WHERE type = 'submitted') AS name,
        max(max_attempts) FILTER (WHERE type = 'submitted') AS max_attempts,
        min(ts) FILTER (WHERE type = 'submitted') AS submitted_at,
        max(not_before) FILTER (WHERE type = 'submitted') AS not_before,
        max(len(depends_on)) FILTER (WHERE type = 'submitted') AS n_deps,
        min(ts) FILTER (WHERE type = 'ready') AS first_ready_event_at,
        min(ts) FILTER (WHERE type = 'claimed') AS first_claimed_at,
        max(ts) FILTER (WHERE type = 'claimed') AS last_claimed_at,
        count(*) FILTER (WHERE type = 'claimed') AS leases,
        arg_max(agent, "offset") FILTER (WHERE type = 'claimed') AS last_agent,
        arg_max(attempt, "offset") FILTER (WHERE type = 'claimed') AS last_attempt,
        count(*) FILTER (WHERE type = 'failed') AS failures,
        count(*) FILTER (WHERE type = 'expired') AS expiries,
        arg_max({{'type': type, 'ts': ts, 'retry_at': retry_at, 'reason': reason}},
                "offset") FILTER (WHERE type <> 'heartbeat') AS last,
        max("offset") AS last_offset
    FROM events WHERE task IS NOT NULL {filter} GROUP BY task)
"""

# A tasks row from the raw fields in `agg` and the completion times of dependencies in
# `done` (task, done_at); {dep_filter} restricts the dependency edges read.
_DERIVE = """
deps AS (
    SELECT d.task, count(*) AS n, count(done.done_at) AS n_done, max(done.done_at) AS done_at
    FROM task_deps d LEFT JOIN done ON done.task = d.dep {dep_filter} GROUP BY d.task),
r AS (
    SELECT agg.* REPLACE (coalesce(agg.n_deps, 0) AS n_deps),
        CASE WHEN coalesce(agg.n_deps, 0) > 0 AND coalesce(deps.n_done, 0) < agg.n_deps
             THEN NULL
             ELSE greatest(agg.submitted_at, coalesce(deps.done_at, agg.submitted_at)) END
            AS base
    FROM agg LEFT JOIN deps USING (task)),
s AS (
    SELECT r.*,
        CASE WHEN base IS NULL THEN NULL
             WHEN coalesce(not_before, 0) > base THEN first_ready_event_at
             ELSE base END AS ready_at,
        CASE last_event
            WHEN 'submitted' THEN 'PENDING'
            WHEN 'claimed' THEN 'RUNNING'
            WHEN 'completed' THEN 'COMPLETED'
            WHEN 'cancelled' THEN 'CANCELLED'
            WHEN 'failed' THEN CASE WHEN last_retry_at IS NULL THEN 'FAILED'
                                    WHEN last_retry_at > last_event_at THEN 'RETRYING'
                                    ELSE 'READY' END
            WHEN 'expired' THEN CASE WHEN last_retry_at IS NULL THEN 'FAILED'
                                     WHEN last_retry_at > last_event_at THEN 'RETRYING'
                                     ELSE 'READY' END
            ELSE 'READY' END AS st
    FROM r)
SELECT task, queue, priority, name,
    CASE WHEN st = 'PENDING' AND ready_at IS NOT NULL THEN 'READY' ELSE st END AS status,
    CASE last_event WHEN 'requeued' THEN 0
                    WHEN 'released' THEN coalesce(last_attempt, 1) - 1
                    ELSE coalesce(last_attempt, 0) END AS attempts,
    leases, max_attempts, submitted_at, ready_at, first_claimed_at, last_claimed_at,
    CASE WHEN st IN ('COMPLETED', 'FAILED', 'CANCELLED') THEN last_event_at END AS finished_at,
    first_claimed_at - ready_at AS wait_ns,
    CASE WHEN st = 'COMPLETED' THEN last_event_at - last_claimed_at END AS run_ns,
    CASE WHEN st IN ('COMPLETED', 'FAILED', 'CANCELLED') THEN last_event_at - submitted_at END
        AS e2e_ns,
    last_agent, failures, expiries, st = 'FAILED' AS dead_lettered,
    st = 'CANCELLED' AS cancelled,
    st = 'CANCELLED' AND coalesce(last_reason = 'upstream', false) AS cancelled_upstream,
    n_deps, not_before, last_offset, first_ready_event_at, last_event, last_event_at,
    last_retry_at, last_reason, last_attempt
FROM s
"""

# Full ingest: every task from all its events.
_TASKS = f"""
INSERT INTO tasks
WITH agg AS ({_AGG.format(filter="")}),
done AS (SELECT task, min(ts) AS done_at FROM events WHERE type = 'completed'
         AND task IN (SELECT dep FROM task_deps) GROUP BY task),
{_DERIVE.format(dep_filter="")}
"""

# Incremental ingest: fold the chunk's events (offset >= {{start}}) into the touched tasks'
# rows.  Values of a latest event come from the chunk when it has one (its offsets are all
# newer), minima / maxima / counts combine.  A completed task never has another event, so
# its completion time is its last event's time.
_MERGE = f"""
CREATE OR REPLACE TEMP TABLE merged AS
WITH c AS ({_AGG.format(filter='AND "offset" >= {start}')}),
o AS (SELECT * EXCLUDE (row_id) FROM old_tasks)
SELECT task,
    greatest(o.queue, c.queue) AS queue, greatest(o.priority, c.priority) AS priority,
    greatest(o.name, c.name) AS name, greatest(o.max_attempts, c.max_attempts) AS max_attempts,
    least(o.submitted_at, c.submitted_at) AS submitted_at,
    greatest(o.not_before, c.not_before) AS not_before, greatest(o.n_deps, c.n_deps) AS n_deps,
    least(o.first_ready_event_at, c.first_ready_event_at) AS first_ready_event_at,
    least(o.first_claimed_at, c.first_claimed_at) AS first_claimed_at,
    greatest(o.last_claimed_at, c.last_claimed_at) AS last_claimed_at,
    coalesce(o.leases, 0) + coalesce(c.leases, 0) AS leases,
    coalesce(c.last_agent, o.last_agent) AS last_agent,
    coalesce(c.last_attempt, o.last_attempt) AS last_attempt,
    coalesce(o.failures, 0) + coalesce(c.failures, 0) AS failures,
    coalesce(o.expiries, 0) + coalesce(c.expiries, 0) AS expiries,
    CASE WHEN c.last_event IS NULL THEN o.last_event ELSE c.last_event END AS last_event,
    CASE WHEN c.last_event IS NULL THEN o.last_event_at ELSE c.last_event_at END
        AS last_event_at,
    CASE WHEN c.last_event IS NULL THEN o.last_retry_at ELSE c.last_retry_at END
        AS last_retry_at,
    CASE WHEN c.last_event IS NULL THEN o.last_reason ELSE c.last_reason END AS last_reason,
    greatest(o.last_offset, c.last_offset) AS last_offset
FROM o FULL OUTER JOIN c USING (task)
"""

_TASKS_MERGED = f"""
INSERT INTO tasks
WITH agg AS (SELECT * FROM merged),
done AS (SELECT task, last_event_at AS done_at FROM merged WHERE last_event = 'completed'
         UNION ALL
         SELECT task, finished_at FROM tasks
         WHERE status = 'COMPLETED' AND task IN (SELECT dep FROM task_deps
                                                 WHERE task IN (SELECT task FROM touched))),
{_DERIVE.format(dep_filter="WHERE d.task IN (SELECT task FROM touched)")}
"""

_ATTEMPT_ROWS = """
SELECT c.lease, c.task, c.agent, c.queue, c.priority, c.attempt, c.ts AS claimed_at,
    c.expires,
    coalesce(e.ts, CASE WHEN x."offset" > c."offset" THEN x.ts END) AS ended_at,
    coalesce(e.type, CASE WHEN x."offset" > c."offset" THEN 'cancelled' END) AS outcome,
    coalesce(e.ts, CASE WHEN x."offset" > c."offset" THEN x.ts END) - c.ts AS duration_ns,
    e.retry_at, e.error, c."offset" AS claim_offset
FROM c LEFT JOIN e USING (lease) LEFT JOIN x USING (task)
ORDER BY c."offset"
"""

_ATTEMPTS = f"""
INSERT INTO attempts
WITH c AS (SELECT * FROM events WHERE type = 'claimed'),
e AS (SELECT lease, type, ts, retry_at, error FROM events
      WHERE type IN ('completed', 'failed', 'expired', 'released')),
x AS (SELECT task, ts, "offset" FROM events WHERE type = 'cancelled')
{_ATTEMPT_ROWS}
"""

# Incremental: the chunk's claims, plus the earlier leases it ends (an end event, or the
# cancellation of the task while the lease was open), rebuilt from their attempts rows.
_ATTEMPTS_MERGED = f"""
CREATE OR REPLACE TEMP TABLE ends AS
SELECT lease, type, ts, retry_at, error FROM events
WHERE "offset" >= {{start}} AND type IN ('completed', 'failed', 'expired', 'released');
CREATE OR REPLACE TEMP TABLE cancels AS
SELECT task, ts, "offset" FROM events WHERE "offset" >= {{start}} AND type = 'cancelled';
CREATE OR REPLACE TEMP TABLE reopened AS
SELECT * FROM old_leases WHERE lease IN (SELECT lease FROM ends)
{{cancelled_open}};
DELETE FROM attempts WHERE rowid IN (SELECT row_id FROM reopened);
INSERT INTO attempts
WITH c AS (SELECT lease, task, agent, queue, priority, attempt, claimed_at AS ts, expires,
                  claim_offset AS "offset" FROM reopened
           UNION ALL
           SELECT lease, task, agent, queue, priority, attempt, ts, expires, "offset"
           FROM events WHERE type = 'claimed' AND "offset" >= {{start}}),
e AS (SELECT * FROM ends),
x AS (SELECT * FROM cancels)
{_ATTEMPT_ROWS}
"""
# Leases still open when the chunk cancels their task (they carry no event of their own).
_CANCELLED_OPEN = """
UNION ALL
SELECT rowid AS row_id, * FROM attempts
WHERE outcome IS NULL AND task IN (SELECT task FROM cancels)
  AND lease NOT IN (SELECT lease FROM ends)
"""

# Agents and queues named by the chunk are recomputed from their events: the chunk's own
# for a first ingest ({source} = registry), all of them later ({source} = the events table).
# Agent and queue events never name a task (kernel/events.py): `task IS NULL` lets DuckDB
# skip every row group without such a row by its statistics.
_REGISTRY_ROWS = f"""
CREATE OR REPLACE TEMP TABLE registry AS
SELECT "offset", type, ts, task, agent, queue, capabilities, capacity, max_concurrent, paused
FROM events WHERE "offset" >= {{start}} AND task IS NULL AND type IN ({_REGISTRY})
"""
_AGENTS_SQL = """
DELETE FROM agents WHERE agent IN (SELECT agent FROM registry WHERE type LIKE 'agent_%');
INSERT INTO agents
SELECT agent,
    arg_max(capabilities, "offset") FILTER (WHERE type = 'agent_registered'),
    arg_max(capacity, "offset") FILTER (WHERE type = 'agent_registered'),
    min(ts) FILTER (WHERE type = 'agent_registered'), max(ts),
    arg_max(type, "offset") <> 'agent_offline'
FROM {source}
WHERE task IS NULL AND type IN ('agent_registered', 'agent_offline', 'agent_online')
  AND agent IN (SELECT agent FROM registry WHERE type LIKE 'agent_%')
GROUP BY agent;
DELETE FROM queues WHERE queue IN (SELECT queue FROM registry WHERE type LIKE 'queue_%');
INSERT INTO queues
SELECT queue,
    arg_max(max_concurrent, "offset") FILTER (WHERE type = 'queue_declared'),
    arg_max(CASE type WHEN 'queue_paused' THEN true WHEN 'queue_resumed' THEN false
                 ELSE coalesce(paused, false) END, "offset"),
    min(ts) FILTER (WHERE type = 'queue_declared'), max(ts)
FROM {source}
WHERE task IS NULL AND type IN ('queue_declared', 'queue_paused', 'queue_resumed')
  AND queue IN (SELECT queue FROM registry WHERE type LIKE 'queue_%')
GROUP BY queue;
"""
_AGENTS = _AGENTS_SQL.format(source="registry")
_AGENTS_MERGED = _AGENTS_SQL.format(source="events")

_DEPS = """
INSERT INTO task_deps
SELECT task, unnest(depends_on) FROM events
WHERE "offset" >= {start} AND type = 'submitted' AND len(depends_on) > 0
"""


_TEMP_TABLES = ("stage", "touched", "old_tasks", "old_leases", "merged", "ends", "cancels",
                "reopened", "registry")


def ingest_files(con: Any, export: JsonParts, start: int, end: int) -> bool:
    """Ingest the NDJSON export of records ``[start, end)`` (``EventLog.export_json_parts``)
    inside the caller's transaction.

    Returns False, with the transaction aborted, when a record is not an eskernel event (the
    caller rolls back and names it with :func:`first_bad_record`).  ``start == 0`` is a full
    ingest (derived rows from all events); later chunks fold their events into the rows they
    touch, so their cost follows the chunk and the tasks / attempts tables, never the whole
    history.
    """
    at = str(int(start))
    try:
        if start == 0:
            con.execute(_INSERT_EVENTS.replace("{source}", _read(export)))
        else:
            # The touched rows are read before the insert (they fill its queue / agent).
            con.execute(f"CREATE OR REPLACE TEMP TABLE stage AS SELECT * FROM {_read(export)}")
            con.execute(_TOUCHED)
            con.execute(_INSERT_EVENTS_MERGED.replace("{source}", "stage"))
    except duckdb.InvalidInputException as err:
        if _NOT_AN_EVENT in str(err):
            return False
        raise
    con.execute(_DEPS.replace("{start}", at))
    if start == 0:
        con.execute(_TASKS)
        con.execute(_ATTEMPTS)
    else:
        con.execute(_MERGE.replace("{start}", at))
        con.execute("DELETE FROM tasks WHERE rowid IN (SELECT row_id FROM old_tasks)")
        con.execute(_TASKS_MERGED)
        cancels = con.execute('SELECT count(*) FROM events WHERE "offset" >= ? '
                              "AND type = 'cancelled'", [start]).fetchone()[0]
        con.execute(_ATTEMPTS_MERGED.replace("{start}", at).replace(
            "{cancelled_open}", _CANCELLED_OPEN if cancels else ""))
    con.execute(_REGISTRY_ROWS.replace("{start}", at))
    if con.execute("SELECT count(*) FROM registry").fetchone()[0]:
        con.execute(_AGENTS if start == 0 else _AGENTS_MERGED)
    con.execute("INSERT OR REPLACE INTO ingest_state VALUES (1, ?, ?)", [end, LAYOUT_VERSION])
    con.execute("; ".join(f"DROP TABLE IF EXISTS {t}" for t in _TEMP_TABLES))
    return True


def reset(con: Any) -> None:
    """Empty every table (used when the log was replaced by a shorter one)."""
    for table in ("events", "tasks", "attempts", "agents", "queues", "task_deps",
                  "ingest_state"):
        con.execute(f"DELETE FROM {table}")
