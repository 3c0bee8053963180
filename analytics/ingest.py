"""Incremental ingest: log records ``[start, end)`` -> the projection's tables, in one
DuckDB transaction that also stores the new ``next_offset``.

A chunk is exported by the log reader as NDJSON (in C, ``"offset"`` injected), read by
DuckDB's ``read_ndjson`` with explicit columns into a temporary stage, checked, appended
to ``events`` (with queue / priority / agent / attempt filled in from the task's submit and
the lease's claim), and then the derived rows of every *touched* task (a task with an event
in the chunk, or whose dependency completed in it), lease, agent and queue are deleted and
recomputed from ``events``.  So an incremental refresh gives exactly the rows a full ingest
gives, and a crash mid-chunk rolls back rows and offset together.
"""

from __future__ import annotations

from typing import Any

from kernel.events import EVENT_TYPES

from .schema import EVENT_COLUMNS, SCHEMA_VERSION

__all__ = ["ingest_file", "reset"]

_COLUMNS = "{" + ", ".join(f"'{k}': '{v}'" for k, v in EVENT_COLUMNS.items()) + "}"
_KNOWN = ", ".join(f"'{t}'" for t in EVENT_TYPES)
_EVENT_FIELDS = [k for k in EVENT_COLUMNS if k not in ("v", "offset", "t", "ts")]


def _quote(path: str) -> str:
    return "'" + path.replace("'", "''") + "'"


def _stage(con: Any, path: str) -> None:
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE stage AS SELECT * FROM read_ndjson({_quote(path)}, "
        f"columns = {_COLUMNS}, format = 'newline_delimited', maximum_object_size = 67108864)")


def _check_stage(con: Any) -> tuple[int, str] | bool:
    """The first record that is not a known v1 event: ``(offset, description)``; else
    whether the chunk declares or changes any agent or queue."""
    row = con.execute(
        f'SELECT "offset", v, t FROM stage WHERE v IS DISTINCT FROM {SCHEMA_VERSION} '
        f'OR t IS NULL OR t NOT IN ({_KNOWN}) OR ts IS NULL ORDER BY "offset" LIMIT 1'
    ).fetchone()
    if row is not None:
        return row[0], f"schema version {row[1]!r}, type {row[2]!r}"
    return con.execute("SELECT count(*) > 0 FROM stage WHERE t LIKE 'agent_%' "
                       "OR t LIKE 'queue_%'").fetchone()[0]


_INSERT_EVENTS = f"""
INSERT INTO events ("offset", ts, type, {", ".join(_EVENT_FIELDS)})
SELECT s."offset", s.ts, s.t, s.task, coalesce(s.queue, k.queue), coalesce(s.agent, l.agent),
       s.lease, coalesce(s.attempt, l.attempt), coalesce(s.priority, k.priority),
       {", ".join("s." + f for f in _EVENT_FIELDS[6:])}
FROM stage s
LEFT JOIN (SELECT task, queue, priority FROM stage WHERE t = 'submitted'
           UNION ALL
           SELECT task, queue, priority FROM tasks
           WHERE task IN (SELECT task FROM stage)) k ON s.task = k.task
LEFT JOIN (SELECT lease, agent, attempt FROM stage WHERE t = 'claimed'
           UNION ALL
           SELECT lease, agent, attempt FROM attempts
           WHERE lease IN (SELECT lease FROM stage)) l ON s.lease = l.lease
"""

_TOUCHED = """
CREATE OR REPLACE TEMP TABLE touched AS
SELECT DISTINCT task FROM stage WHERE task IS NOT NULL
UNION
SELECT task FROM task_deps WHERE dep IN (SELECT task FROM stage WHERE t = 'completed')
"""

_TASKS = """
INSERT INTO tasks
WITH ev AS (SELECT * FROM events WHERE task IS NOT NULL {filter}),
agg AS (
    SELECT task,
        max(queue) AS queue, max(priority) AS priority,
        max(name) FILTER (WHERE type = 'submitted') AS name,
        max(max_attempts) FILTER (WHERE type = 'submitted') AS max_attempts,
        min(ts) FILTER (WHERE type = 'submitted') AS submitted_at,
        max(not_before) FILTER (WHERE type = 'submitted') AS not_before,
        coalesce(max(len(depends_on)) FILTER (WHERE type = 'submitted'), 0) AS n_deps,
        min(ts) FILTER (WHERE type = 'ready') AS first_ready_at,
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
    FROM ev GROUP BY task),
done AS (
    SELECT task, min(ts) AS done_at FROM events
    WHERE type = 'completed' AND task IN (SELECT dep FROM task_deps d {dep_filter})
    GROUP BY task),
deps AS (
    SELECT d.task, count(*) AS n, count(done.done_at) AS n_done, max(done.done_at) AS done_at
    FROM task_deps d LEFT JOIN done ON done.task = d.dep {dep_filter} GROUP BY d.task),
r AS (
    SELECT agg.*,
        CASE WHEN agg.n_deps > 0 AND coalesce(deps.n_done, 0) < agg.n_deps THEN NULL
             ELSE greatest(agg.submitted_at, coalesce(deps.done_at, agg.submitted_at)) END
            AS base
    FROM agg LEFT JOIN deps USING (task)),
s AS (
    SELECT r.*,
        CASE WHEN base IS NULL THEN NULL
             WHEN coalesce(not_before, 0) > base THEN first_ready_at
             ELSE base END AS ready_at,
        CASE last.type
            WHEN 'submitted' THEN 'PENDING'
            WHEN 'claimed' THEN 'RUNNING'
            WHEN 'completed' THEN 'COMPLETED'
            WHEN 'cancelled' THEN 'CANCELLED'
            WHEN 'failed' THEN CASE WHEN last.retry_at IS NULL THEN 'FAILED'
                                    WHEN last.retry_at > last.ts THEN 'RETRYING'
                                    ELSE 'READY' END
            WHEN 'expired' THEN CASE WHEN last.retry_at IS NULL THEN 'FAILED'
                                     WHEN last.retry_at > last.ts THEN 'RETRYING'
                                     ELSE 'READY' END
            ELSE 'READY' END AS st
    FROM r)
SELECT task, queue, priority, name,
    CASE WHEN st = 'PENDING' AND ready_at IS NOT NULL THEN 'READY' ELSE st END AS status,
    CASE last.type WHEN 'requeued' THEN 0
                   WHEN 'released' THEN coalesce(last_attempt, 1) - 1
                   ELSE coalesce(last_attempt, 0) END AS attempts,
    leases, max_attempts, submitted_at, ready_at, first_claimed_at, last_claimed_at,
    CASE WHEN st IN ('COMPLETED', 'FAILED', 'CANCELLED') THEN last.ts END AS finished_at,
    first_claimed_at - ready_at AS wait_ns,
    CASE WHEN st = 'COMPLETED' THEN last.ts - last_claimed_at END AS run_ns,
    CASE WHEN st IN ('COMPLETED', 'FAILED', 'CANCELLED') THEN last.ts - submitted_at END
        AS e2e_ns,
    last_agent, failures, expiries, st = 'FAILED' AS dead_lettered,
    st = 'CANCELLED' AS cancelled,
    st = 'CANCELLED' AND coalesce(last.reason = 'upstream', false) AS cancelled_upstream,
    n_deps, not_before, last_offset
FROM s
"""

_ATTEMPTS = """
INSERT INTO attempts
WITH c AS (SELECT * FROM events WHERE type = 'claimed' {filter}),
e AS (SELECT lease, type, ts, retry_at, error FROM events
      WHERE type IN ('completed', 'failed', 'expired', 'released')
        AND lease IN (SELECT lease FROM c)),
x AS (SELECT task, ts, "offset" FROM events WHERE type = 'cancelled' {filter})
SELECT c.lease, c.task, c.agent, c.queue, c.priority, c.attempt, c.ts AS claimed_at,
    c.expires,
    coalesce(e.ts, CASE WHEN x."offset" > c."offset" THEN x.ts END) AS ended_at,
    coalesce(e.type, CASE WHEN x."offset" > c."offset" THEN 'cancelled' END) AS outcome,
    coalesce(e.ts, CASE WHEN x."offset" > c."offset" THEN x.ts END) - c.ts AS duration_ns,
    e.retry_at, e.error, c."offset" AS claim_offset
FROM c LEFT JOIN e USING (lease) LEFT JOIN x USING (task)
ORDER BY c."offset"
"""

_AGENTS = """
DELETE FROM agents WHERE agent IN (SELECT agent FROM stage WHERE t LIKE 'agent_%');
INSERT INTO agents
SELECT agent,
    arg_max(capabilities, "offset") FILTER (WHERE type = 'agent_registered'),
    arg_max(capacity, "offset") FILTER (WHERE type = 'agent_registered'),
    min(ts) FILTER (WHERE type = 'agent_registered'), max(ts),
    arg_max(type, "offset") <> 'agent_offline'
FROM events
WHERE type IN ('agent_registered', 'agent_offline', 'agent_online')
  AND agent IN (SELECT agent FROM stage WHERE t LIKE 'agent_%')
GROUP BY agent;
DELETE FROM queues WHERE queue IN (SELECT queue FROM stage WHERE t LIKE 'queue_%');
INSERT INTO queues
SELECT queue,
    arg_max(max_concurrent, "offset") FILTER (WHERE type = 'queue_declared'),
    arg_max(CASE type WHEN 'queue_paused' THEN true WHEN 'queue_resumed' THEN false
                 ELSE coalesce(paused, false) END, "offset"),
    min(ts) FILTER (WHERE type = 'queue_declared'), max(ts)
FROM events
WHERE type IN ('queue_declared', 'queue_paused', 'queue_resumed')
  AND queue IN (SELECT queue FROM stage WHERE t LIKE 'queue_%')
GROUP BY queue;
"""

_DEPS = """
INSERT INTO task_deps
SELECT task, unnest(depends_on) FROM stage WHERE t = 'submitted' AND len(depends_on) > 0
"""


def ingest_file(con: Any, path: str, start: int, end: int) -> tuple[int, str] | None:
    """Ingest the NDJSON export of records ``[start, end)`` inside the caller's transaction.

    Returns None on success, or ``(offset, description)`` of the first record that is not an
    eskernel event (the caller rolls back).  ``start == 0`` is a full ingest: derived rows
    are computed without the touched-set filter.
    """
    _stage(con, path)
    checked = _check_stage(con)
    if isinstance(checked, tuple):
        return checked
    first = start == 0
    con.execute(_INSERT_EVENTS)
    con.execute(_DEPS)
    if first:
        flt = dep_flt = ""
    else:
        con.execute(_TOUCHED)
        flt = "AND task IN (SELECT task FROM touched)"
        dep_flt = "WHERE d.task IN (SELECT task FROM touched)"
        con.execute("DELETE FROM tasks WHERE task IN (SELECT task FROM touched)")
        con.execute("DELETE FROM attempts WHERE task IN (SELECT task FROM touched)")
    con.execute(_TASKS.format(filter=flt, dep_filter=dep_flt))
    con.execute(_ATTEMPTS.format(filter=flt))
    if checked:
        con.execute(_AGENTS)
    con.execute("INSERT OR REPLACE INTO ingest_state VALUES (1, ?, ?)", [end, SCHEMA_VERSION])
    con.execute("DROP TABLE IF EXISTS stage; DROP TABLE IF EXISTS touched")
    return None


def reset(con: Any) -> None:
    """Empty every table (used when the log was replaced by a shorter one)."""
    for table in ("events", "tasks", "attempts", "agents", "queues", "task_deps",
                  "ingest_state"):
        con.execute(f"DELETE FROM {table}")
