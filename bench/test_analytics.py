"""Analytics benchmarks: ingest rate, the standard report, a last-hour dashboard window.

Run:  .venv/bin/python -m pytest bench/test_analytics.py -p no:cacheprovider \
          --benchmark-only --benchmark-json=/tmp/bench-analytics.json

Groups and implementations (ids):

* ``ingest`` — 1,000,000 events into an empty in-memory projection.
  ``projection`` is :meth:`Projection.refresh` (C NDJSON export + DuckDB ``read_ndjson`` with
  explicit columns + the derived tasks/attempts/agents tables), timed as a whole: opening
  the database, the refresh, closing it; median of 5 after one warmup round (the refresh
  alone is recorded as ``extra_info["refresh_only_events_per_s"]``);
  ``baseline-orjson-insert`` decodes every record with orjson in Python and inserts the
  columns into DuckDB as list parameters (raw events only, no derived tables).
* ``ingest-incremental`` — a refresh of the last 1,000 / 20,000 events on top of the rest
  (informational, no target).
* ``report`` — the standard report over ESKERNEL_BENCH_TASKS tasks (default 10,000,000;
  tasks and attempts rows generated in SQL, 30 days of history).
* ``dashboard`` — the same report restricted to the last hour (``window_s=3600``).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import duckdb
import orjson
import pytest

from eskernel.analytics import Projection
from eskernel.analytics.report import build_report
from eskernel.eventlog import EventLog

N_EVENTS = int(os.environ.get("ESKERNEL_BENCH_EVENTS", 1_000_000))
N_TASKS = int(os.environ.get("ESKERNEL_BENCH_TASKS", 10_000_000))
T0 = 1_700_000_000 * 10**9
QUEUES = ["ingest", "render", "encode", "notify"]


def _records(n_events: int) -> list[bytes]:
    # Records in exactly the layout the kernel writes (kernel/events.py: optional fields
    # omitted when null), so ingest is measured on what a real log holds.
    out: list[bytes] = [
        b'{"v":1,"t":"queue_declared","ts":%d,"queue":"%s","max_concurrent":8,"paused":false}'
        % (T0, q.encode()) for q in QUEUES]
    out += [b'{"v":1,"t":"agent_registered","ts":%d,"agent":"w%d","capabilities":["ingest",'
            b'"render","encode","notify"],"capacity":4}' % (T0, a) for a in range(16)]
    lease = 0
    i = 0
    while len(out) < n_events:
        ts = T0 + i * 1_000_000
        task = b"t-%d" % i
        q = QUEUES[i % 4].encode()
        out.append(b'{"v":1,"t":"submitted","ts":%d,"task":"%s","queue":"%s","priority":%d,'
                   b'"payload":{"i":%d},"depends_on":[],"max_attempts":3,"timeout":30000000000,'
                   b'"not_before":0}' % (ts, task, q, 1 + i % 5, i))
        lease += 1
        out.append(b'{"v":1,"t":"claimed","ts":%d,"task":"%s","lease":%d,"agent":"w%d",'
                   b'"attempt":1,"expires":%d}' % (ts + 500_000, task, lease, i % 16,
                                                   ts + 30 * 10**9))
        if i % 20 == 7:
            out.append(b'{"v":1,"t":"failed","ts":%d,"task":"%s","lease":%d,"error":"boom",'
                       b'"retryable":true,"retry_at":%d}' % (ts + 900_000, task, lease,
                                                             ts + 900_000))
            lease += 1
            out.append(b'{"v":1,"t":"claimed","ts":%d,"task":"%s","lease":%d,"agent":"w%d",'
                       b'"attempt":2,"expires":%d}' % (ts + 950_000, task, lease, i % 16,
                                                       ts + 30 * 10**9))
        out.append(b'{"v":1,"t":"completed","ts":%d,"task":"%s","lease":%d,"result":{"ok":'
                   b'true}}' % (ts + 990_000, task, lease))
        i += 1
    return out[:n_events]


@pytest.fixture(scope="module")
def event_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("bench-log")
    recs = _records(N_EVENTS)
    with EventLog.open(d, "buffer") as log:
        for k in range(0, len(recs), 100_000):
            log.append_many(recs[k:k + 100_000])
    return d


_REFRESH_S: list[float] = []


def _ingest_projection(d: Path) -> int:
    # Timed as a whole (open + refresh + close); the refresh alone is recorded beside it.
    with Projection(d) as p:
        t = time.perf_counter()
        n = p.refresh()
        _REFRESH_S.append(time.perf_counter() - t)
        return n


_COLS = ["offset", "t", "ts", "task", "queue", "agent", "lease", "attempt", "priority"]


def _ingest_baseline(d: Path) -> int:
    con = duckdb.connect()
    con.execute('CREATE TABLE events ("offset" BIGINT, type VARCHAR, ts BIGINT, task VARCHAR, '
                "queue VARCHAR, agent VARCHAR, lease BIGINT, attempt INTEGER, "
                "priority INTEGER)")
    loads = orjson.loads
    with EventLog.open_readonly(d) as r:
        end = r.next_offset
        off = 0
        while off < end:
            batch = r.read_batch(off, 200_000)
            cols: list[list] = [[] for _ in _COLS]
            for i, rec in enumerate(batch):
                ev = loads(rec)
                ev["offset"] = off + i
                for c, name in zip(cols, _COLS):
                    c.append(ev.get(name))
            con.execute("INSERT INTO events SELECT " + ", ".join(
                f"unnest(${k + 1})" for k in range(len(_COLS))), cols)
            off += len(batch)
    n = con.execute("SELECT count(*) FROM events").fetchone()[0]
    con.close()
    return n


@pytest.mark.benchmark(group="ingest")
@pytest.mark.parametrize("impl", ["projection", "baseline-orjson-insert"])
def test_ingest(benchmark, event_log: Path, impl: str) -> None:
    # The first ingest of a process also pays one-time costs (DuckDB's JSON reader set up,
    # first-touch of its allocator): one warmup round, then 5 timed (the ~5 s baseline: 3).
    fn = _ingest_projection if impl == "projection" else _ingest_baseline
    rounds, warmup = (5, 1) if impl == "projection" else (3, 0)
    _REFRESH_S.clear()
    n = benchmark.pedantic(fn, args=(event_log,), rounds=rounds, iterations=1,
                           warmup_rounds=warmup)
    assert n == N_EVENTS
    benchmark.extra_info["events"] = N_EVENTS
    benchmark.extra_info["events_per_s"] = N_EVENTS / benchmark.stats.stats.median
    if _REFRESH_S:
        benchmark.extra_info["refresh_only_events_per_s"] = (
            N_EVENTS / statistics.median(_REFRESH_S[-rounds:]))


@pytest.mark.benchmark(group="ingest-incremental")
@pytest.mark.parametrize("tail", [1_000, 20_000])
def test_refresh_tail(benchmark, event_log: Path, tail: int) -> None:
    """A refresh of the last ``tail`` events on top of the rest (what follow mode does):
    the cost of folding a chunk into the derived rows, with the history already ingested.
    Informational (no target): compare the rate with the full ingest above."""
    base = N_EVENTS - tail
    projections: list[Projection] = []

    def setup():
        p = Projection(event_log)
        p.refresh(until=base)
        projections.append(p)
        return (p,), {}

    n = benchmark.pedantic(Projection.refresh, setup=setup, rounds=3, iterations=1)
    for p in projections:
        p.close()
    assert n == tail
    benchmark.extra_info["events"] = tail
    benchmark.extra_info["history"] = base
    benchmark.extra_info["events_per_s"] = tail / benchmark.stats.stats.median


_FILL = """
INSERT INTO queues SELECT q, 8, false, {t0}, {t0} FROM (VALUES ('ingest'), ('render'),
    ('encode'), ('notify')) v(q);
INSERT INTO agents SELECT 'w' || i, ['ingest', 'render', 'encode', 'notify'], 4, {t0}, {t0},
    true FROM range(64) r(i);
INSERT INTO tasks
SELECT 't-' || i, ['ingest', 'render', 'encode', 'notify'][i % 4 + 1], 1 + i % 5, NULL,
    CASE WHEN i % 50 = 7 THEN 'FAILED' ELSE 'COMPLETED' END, 1, 1, 3,
    s, s, s + w, s + w, s + w + r, w, r, w + r, 'w' || (i % 64), (i % 50 = 7)::INT, 0,
    i % 50 = 7, false, false, 0, 0, i * 3, NULL,
    CASE WHEN i % 50 = 7 THEN 'failed' ELSE 'completed' END, s + w + r, NULL, NULL, 1
FROM (SELECT i, {t0} + i * {step} AS s, (hash(i) % 2000000000)::BIGINT AS w,
             (hash(i * 7) % 5000000000)::BIGINT AS r FROM range({n}) t(i));
INSERT INTO attempts
SELECT i + 1, 't-' || i, 'w' || (i % 64), ['ingest', 'render', 'encode', 'notify'][i % 4 + 1],
    1 + i % 5, 1, s + w, s + w + 30000000000, s + w + r,
    CASE WHEN i % 50 = 7 THEN 'failed' ELSE 'completed' END, r, NULL, NULL, i * 3
FROM (SELECT i, {t0} + i * {step} AS s, (hash(i) % 2000000000)::BIGINT AS w,
             (hash(i * 7) % 5000000000)::BIGINT AS r FROM range({n}) t(i));
INSERT INTO events ("offset", ts, type) VALUES (0, {t0}, 'queue_declared'),
    ({last}, {end}, 'completed');
INSERT OR REPLACE INTO ingest_state VALUES (1, 0, 1);
"""


@pytest.fixture(scope="module")
def big_projection(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("bench-report")
    with EventLog.open(d) as log:
        log.append(b'{"v":1,"t":"queue_paused","ts":0,"queue":"x"}')
    p = Projection(d)
    step = 30 * 86400 * 10**9 // N_TASKS          # 30 days of history
    end = T0 + N_TASKS * step + 7 * 10**9
    p.connection.execute(_FILL.format(t0=T0, step=step, n=N_TASKS, last=3 * N_TASKS,
                                      end=end))
    yield p
    p.close()


@pytest.mark.benchmark(group="report")
def test_report_full(benchmark, big_projection: Projection) -> None:
    rep = benchmark.pedantic(build_report, args=(big_projection,), rounds=3, iterations=1,
                             warmup_rounds=1)
    assert sum(r[1] for r in rep.sections["status"].rows) == N_TASKS
    benchmark.extra_info["tasks"] = N_TASKS


@pytest.mark.benchmark(group="dashboard")
def test_report_last_hour(benchmark, big_projection: Projection) -> None:
    rep = benchmark.pedantic(build_report, args=(big_projection,),
                             kwargs={"window_s": 3600.0}, rounds=20, iterations=1,
                             warmup_rounds=2)
    n = sum(r[1] for r in rep.sections["status"].rows)
    assert 0 < n < N_TASKS
    benchmark.extra_info["tasks_in_window"] = n
