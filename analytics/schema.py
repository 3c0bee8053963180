"""DDL of a projection: the tables ingest fills and the views and macros users query.

All times are integer nanoseconds since the epoch (``*_at`` / ``ts`` columns), exactly as in
the log; durations are integer nanoseconds (``*_ns``).  Views report durations in seconds
(``*_s``, DOUBLE) and bucket times as ``TIMESTAMP`` (UTC).  Beside the ns columns, virtual
columns give the same values for analysts: ``events.time``, ``tasks.submitted_time``,
``first_claimed_time``, ``finished_time`` and ``attempts.claimed_time``, ``ended_time``
(``TIMESTAMP``, UTC, µs), ``tasks.wait_s``, ``run_s``, ``e2e_s`` and
``attempts.duration_s`` (``DOUBLE`` seconds).

Tables (filled by :mod:`eskernel.analytics.ingest`):

``events``
    One row per log record: ``"offset"`` (quote it: OFFSET is an SQL keyword), ``ts``,
    ``time`` (virtual TIMESTAMP), ``type`` and the event's fields.  ``queue``/``priority``
    are filled in on every event of a task, ``agent``/``attempt`` on every event of a lease.
``tasks``
    One row per task: queue, priority, status, attempts, submitted / ready / first and last
    claimed / finished times, ``wait_ns`` (first claim − ready), ``run_ns`` (finish − last
    claim), ``e2e_ns`` (finish − submit), last agent, dead-lettered and cancelled flags, and
    the task's last event other than a heartbeat (``last_event``, ``last_event_at``,
    ``last_retry_at``, ``last_reason``) with the attempt number of its last claim
    (``last_attempt``) and its first ``ready`` event (``first_ready_event_at``): what an
    incremental refresh folds new events into.
``attempts``
    One row per lease: task, agent, queue, claimed and ended times, ``outcome``
    (completed / failed / expired / released / cancelled, or NULL while still open).
``agents`` / ``queues``
    The latest declaration of each (capabilities, capacity, max_concurrent, ...).
``task_deps``
    (task, dep) edges of the DAG.

Views: ``throughput`` (per minute and queue), ``latency`` (p50/p95/p99 of wait, run and
end-to-end by queue and by priority, completed tasks), ``agent_utilization``,
``queue_utilization``, ``failures`` (by queue and by agent).  The ``*_in(t0, t1)`` table
macros are the same over the time window ``[t0, t1)`` in ns (``NULL`` = unbounded);
``utilization_in(t0, t1)`` gives both utilizations in one table (``"by"`` = agent | queue).

>>> import duckdb
>>> con = duckdb.connect()
>>> create_schema(con)
>>> con.execute("SELECT count(*) FROM latency").fetchone()
(0,)
"""

from __future__ import annotations

from typing import Any

__all__ = ["SCHEMA_VERSION", "LAYOUT_VERSION", "create_schema", "drop_schema", "TABLES", "VIEWS",
           "EVENT_COLUMNS"]

#: The event schema version this projection reads (``"v"`` of every record).
SCHEMA_VERSION = 1
#: The layout of the projection's tables; a database with another layout is rebuilt.
LAYOUT_VERSION = 3

#: Columns read from the NDJSON export, with their DuckDB types (JSON key -> type).
EVENT_COLUMNS: dict[str, str] = {
    "offset": "BIGINT", "v": "INTEGER", "t": "VARCHAR", "ts": "BIGINT", "task": "VARCHAR",
    "queue": "VARCHAR", "agent": "VARCHAR", "lease": "BIGINT", "attempt": "INTEGER",
    "priority": "INTEGER", "expires": "BIGINT", "retry_at": "BIGINT", "retryable": "BOOLEAN",
    "error": "VARCHAR", "reason": "VARCHAR", "cause": "VARCHAR", "name": "VARCHAR",
    "depends_on": "VARCHAR[]", "not_before": "BIGINT", "max_attempts": "INTEGER",
    "timeout": "BIGINT", "capabilities": "VARCHAR[]", "capacity": "INTEGER",
    "max_concurrent": "INTEGER", "paused": "BOOLEAN",
}

TABLES = ("events", "tasks", "attempts", "agents", "queues", "task_deps")
VIEWS = ("throughput", "latency", "agent_utilization", "queue_utilization", "failures")

_TABLE_DDL = """
CREATE TABLE IF NOT EXISTS ingest_state (
    id INTEGER PRIMARY KEY, next_offset BIGINT NOT NULL, schema_version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    "offset" BIGINT NOT NULL, ts BIGINT NOT NULL, type VARCHAR NOT NULL, task VARCHAR,
    queue VARCHAR, agent VARCHAR, lease BIGINT, attempt INTEGER, priority INTEGER,
    expires BIGINT, retry_at BIGINT, retryable BOOLEAN, error VARCHAR, reason VARCHAR,
    cause VARCHAR, name VARCHAR, depends_on VARCHAR[], not_before BIGINT,
    max_attempts INTEGER, timeout BIGINT, capabilities VARCHAR[], capacity INTEGER,
    max_concurrent INTEGER, paused BOOLEAN,
    time TIMESTAMP GENERATED ALWAYS AS (make_timestamp(ts // 1000)) VIRTUAL);
CREATE TABLE IF NOT EXISTS tasks (
    task VARCHAR NOT NULL, queue VARCHAR, priority INTEGER, name VARCHAR, status VARCHAR,
    attempts INTEGER, leases INTEGER, max_attempts INTEGER, submitted_at BIGINT,
    ready_at BIGINT, first_claimed_at BIGINT, last_claimed_at BIGINT, finished_at BIGINT,
    wait_ns BIGINT, run_ns BIGINT, e2e_ns BIGINT, last_agent VARCHAR, failures INTEGER,
    expiries INTEGER, dead_lettered BOOLEAN, cancelled BOOLEAN, cancelled_upstream BOOLEAN,
    n_deps INTEGER, not_before BIGINT, last_offset BIGINT, first_ready_event_at BIGINT,
    last_event VARCHAR, last_event_at BIGINT, last_retry_at BIGINT, last_reason VARCHAR,
    last_attempt INTEGER,
    submitted_time TIMESTAMP GENERATED ALWAYS AS (make_timestamp(submitted_at // 1000)) VIRTUAL,
    first_claimed_time TIMESTAMP GENERATED ALWAYS AS (make_timestamp(first_claimed_at // 1000))
        VIRTUAL,
    finished_time TIMESTAMP GENERATED ALWAYS AS (make_timestamp(finished_at // 1000)) VIRTUAL,
    wait_s DOUBLE GENERATED ALWAYS AS (wait_ns / 1e9) VIRTUAL,
    run_s DOUBLE GENERATED ALWAYS AS (run_ns / 1e9) VIRTUAL,
    e2e_s DOUBLE GENERATED ALWAYS AS (e2e_ns / 1e9) VIRTUAL);
CREATE TABLE IF NOT EXISTS attempts (
    lease BIGINT NOT NULL, task VARCHAR, agent VARCHAR, queue VARCHAR, priority INTEGER,
    attempt INTEGER, claimed_at BIGINT, expires BIGINT, ended_at BIGINT, outcome VARCHAR,
    duration_ns BIGINT, retry_at BIGINT, error VARCHAR, claim_offset BIGINT,
    claimed_time TIMESTAMP GENERATED ALWAYS AS (make_timestamp(claimed_at // 1000)) VIRTUAL,
    ended_time TIMESTAMP GENERATED ALWAYS AS (make_timestamp(ended_at // 1000)) VIRTUAL,
    duration_s DOUBLE GENERATED ALWAYS AS (duration_ns / 1e9) VIRTUAL);
CREATE TABLE IF NOT EXISTS agents (
    agent VARCHAR NOT NULL, capabilities VARCHAR[], capacity INTEGER, registered_at BIGINT,
    updated_at BIGINT, online BOOLEAN);
CREATE TABLE IF NOT EXISTS queues (
    queue VARCHAR NOT NULL, max_concurrent INTEGER, paused BOOLEAN, declared_at BIGINT,
    updated_at BIGINT);
CREATE TABLE IF NOT EXISTS task_deps (task VARCHAR NOT NULL, dep VARCHAR NOT NULL);
"""

# The window of the whole log, used by views: [first event, last event].  The filters below
# repeat the bounds as plain comparisons with the macro's arguments, which DuckDB can check
# against each row group's min/max and skip: a dashboard window reads only recent rows.
_BOUNDS = """(SELECT coalesce(t0::BIGINT, (SELECT min(ts) FROM events)) AS lo,
                     coalesce(t1::BIGINT, (SELECT max(ts) FROM events)) AS hi)"""

_MACROS = f"""
CREATE OR REPLACE MACRO ns_time(ns) AS make_timestamp(ns // 1000);

CREATE OR REPLACE MACRO throughput_in(t0, t1, bucket_s) AS TABLE
-- Grouped by the integer bucket number; the timestamp is made once per bucket, not per task.
SELECT make_timestamp(k * CAST(bucket_s * 1000000000.0 AS BIGINT) // 1000) AS interval_start,
       queue, completed, failed, completed / bucket_s::DOUBLE AS completed_per_s
FROM (
    SELECT finished_at // CAST(bucket_s * 1000000000.0 AS BIGINT) AS k, queue,
           count(*) FILTER (WHERE status = 'COMPLETED') AS completed,
           count(*) FILTER (WHERE status = 'FAILED') AS failed
    FROM tasks
    WHERE finished_at IS NOT NULL AND status IN ('COMPLETED', 'FAILED')
      AND (t0 IS NULL OR finished_at >= t0) AND (t1 IS NULL OR finished_at < t1)
    GROUP BY ALL)
ORDER BY interval_start, queue;

CREATE OR REPLACE MACRO latency_in(t0, t1) AS TABLE
WITH done AS (
    SELECT queue, priority, wait_ns, run_ns, e2e_ns FROM tasks
    WHERE status = 'COMPLETED'
      AND (t0 IS NULL OR finished_at >= t0) AND (t1 IS NULL OR finished_at < t1)),
q AS (
    SELECT CASE WHEN GROUPING(queue) = 0 THEN 'queue' ELSE 'priority' END AS "by",
           CASE WHEN GROUPING(queue) = 0 THEN queue ELSE priority::VARCHAR END AS "key",
           count(*) AS n,
           quantile_cont(wait_ns, [0.5, 0.95, 0.99]) AS w,
           quantile_cont(run_ns, [0.5, 0.95, 0.99]) AS r,
           quantile_cont(e2e_ns, [0.5, 0.95, 0.99]) AS e
    FROM done GROUP BY GROUPING SETS ((queue), (priority)))
SELECT "by", "key", n,
       w[1] / 1e9 AS wait_p50_s, w[2] / 1e9 AS wait_p95_s, w[3] / 1e9 AS wait_p99_s,
       r[1] / 1e9 AS run_p50_s, r[2] / 1e9 AS run_p95_s, r[3] / 1e9 AS run_p99_s,
       e[1] / 1e9 AS e2e_p50_s, e[2] / 1e9 AS e2e_p95_s, e[3] / 1e9 AS e2e_p99_s
FROM q ORDER BY "by" DESC, CASE WHEN "by" = 'priority' THEN -TRY_CAST("key" AS INTEGER) END,
         "key";

CREATE OR REPLACE MACRO busy_in(t0, t1) AS TABLE
WITH b AS {_BOUNDS}
SELECT agent, queue, greatest(0, least(coalesce(ended_at, b.hi), b.hi)
                                 - greatest(claimed_at, b.lo)) AS busy_ns
FROM attempts, b
WHERE claimed_at < b.hi AND coalesce(ended_at, b.hi) > b.lo
  AND claimed_at < coalesce(t1::BIGINT, 9223372036854775807)
  AND (ended_at IS NULL OR ended_at > coalesce(t0::BIGINT, -1));

-- Agents and queues from one pass over the attempts: busy time per (agent, queue), summed
-- both ways ("by" = 'agent' | 'queue'; "limit" = capacity | max_concurrent).  Two macros
-- of one pass each took ~0.25 s over 10 M attempts, this one ~0.18 s.
CREATE OR REPLACE MACRO utilization_in(t0, t1) AS TABLE
WITH b AS {_BOUNDS},
busy AS MATERIALIZED (SELECT agent, queue, count(*) AS leases, sum(busy_ns) AS busy_ns
                      FROM busy_in(t0, t1) GROUP BY agent, queue),
ag AS (SELECT agent, sum(leases)::BIGINT AS leases, sum(busy_ns) AS busy_ns
       FROM busy GROUP BY agent),
qu AS (SELECT queue, sum(leases)::BIGINT AS leases, sum(busy_ns) AS busy_ns
       FROM busy GROUP BY queue)
SELECT 'agent' AS "by", a.agent AS "key", a.capacity AS "limit",
       coalesce(ag.leases, 0) AS leases, coalesce(ag.busy_ns, 0) / 1e9 AS busy_s,
       (b.hi - b.lo) / 1e9 AS window_s, NULL::DOUBLE AS avg_running,
       CASE WHEN b.hi > b.lo THEN coalesce(ag.busy_ns, 0) / (a.capacity * (b.hi - b.lo))
       END AS utilization
FROM agents a CROSS JOIN b LEFT JOIN ag USING (agent)
UNION ALL
SELECT 'queue', q.queue, q.max_concurrent, coalesce(qu.leases, 0),
       coalesce(qu.busy_ns, 0) / 1e9, (b.hi - b.lo) / 1e9,
       CASE WHEN b.hi > b.lo THEN coalesce(qu.busy_ns, 0) / (b.hi - b.lo) END,
       CASE WHEN b.hi > b.lo AND q.max_concurrent > 0
            THEN coalesce(qu.busy_ns, 0) / (q.max_concurrent * (b.hi - b.lo)) END
FROM queues q CROSS JOIN b LEFT JOIN qu USING (queue);

CREATE OR REPLACE MACRO agent_utilization_in(t0, t1) AS TABLE
SELECT "key" AS agent, "limit" AS capacity, leases, busy_s, window_s, utilization
FROM utilization_in(t0, t1) WHERE "by" = 'agent' ORDER BY agent;

CREATE OR REPLACE MACRO queue_utilization_in(t0, t1) AS TABLE
SELECT "key" AS queue, "limit" AS max_concurrent, leases, busy_s, window_s, avg_running,
       utilization
FROM utilization_in(t0, t1) WHERE "by" = 'queue' ORDER BY queue;

CREATE OR REPLACE MACRO failures_in(t0, t1) AS TABLE
-- Counted once per (queue, agent), then summed both ways: one pass over the attempts
-- instead of one per grouping (counts add up; ~0.24 -> ~0.19 s over 10 M attempts).
WITH a AS (
    SELECT queue, agent,
           count(*) AS attempts,
           count(*) FILTER (WHERE outcome = 'completed') AS completed,
           count(*) FILTER (WHERE outcome = 'failed') AS failed,
           count(*) FILTER (WHERE outcome = 'expired') AS expired,
           count(*) FILTER (WHERE outcome IN ('failed', 'expired')
                            AND retry_at IS NOT NULL) AS retried,
           count(*) FILTER (WHERE outcome IN ('failed', 'expired')
                            AND retry_at IS NULL) AS dead_lettered
    FROM attempts
    WHERE (t0 IS NULL OR claimed_at >= t0) AND (t1 IS NULL OR claimed_at < t1)
    GROUP BY queue, agent),
g AS (
    SELECT CASE WHEN GROUPING(queue) = 0 THEN 'queue' ELSE 'agent' END AS "by",
           CASE WHEN GROUPING(queue) = 0 THEN queue ELSE agent END AS "key",
           sum(attempts)::BIGINT AS attempts, sum(completed)::BIGINT AS completed,
           sum(failed)::BIGINT AS failed, sum(expired)::BIGINT AS expired,
           sum(retried)::BIGINT AS retried, sum(dead_lettered)::BIGINT AS dead_lettered
    FROM a GROUP BY GROUPING SETS ((queue), (agent)))
SELECT "by", "key", attempts, completed, failed, expired, retried, dead_lettered,
       failed / attempts::DOUBLE AS failure_rate, retried / attempts::DOUBLE AS retry_rate,
       expired / attempts::DOUBLE AS expiry_rate,
       dead_lettered / attempts::DOUBLE AS dead_letter_rate
FROM g ORDER BY "by" DESC, "key";

CREATE OR REPLACE VIEW throughput AS SELECT * FROM throughput_in(NULL, NULL, 60);
CREATE OR REPLACE VIEW latency AS SELECT * FROM latency_in(NULL, NULL);
CREATE OR REPLACE VIEW agent_utilization AS SELECT * FROM agent_utilization_in(NULL, NULL);
CREATE OR REPLACE VIEW queue_utilization AS SELECT * FROM queue_utilization_in(NULL, NULL);
CREATE OR REPLACE VIEW failures AS SELECT * FROM failures_in(NULL, NULL);
"""


def drop_schema(con: Any) -> None:
    """Drop every table of the projection (before rebuilding one of another layout)."""
    for table in (*TABLES, "ingest_state"):
        con.execute(f"DROP TABLE IF EXISTS {table} CASCADE")


def create_schema(con: Any) -> None:
    """Create the tables (if missing) and (re)create the macros and views on ``con``.

    Idempotent; cost: a few milliseconds.
    """
    con.execute(_TABLE_DDL)
    con.execute(_MACROS)
