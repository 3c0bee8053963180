"""The projection's numbers equal those computed directly from the events in Python, on the
demo workload; incremental ingest equals full ingest; errors are ProjectionError."""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from pathlib import Path

import duckdb
import pytest

from eskernel.analytics import Projection, ProjectionError, QueryNotAllowedError
from eskernel.verify import verify_log
from eskernel.analytics.report import build_report
from eskernel.eventlog import EventLog
from eskernel import Kernel, ManualClock, events
from eskernel.cli._demo import run_demo

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("demo")
    run_demo(d, jobs=60, seed=3, snapshot=False)
    return d


def read_events(d: Path) -> list[dict]:
    with EventLog.open_readonly(d) as r:
        out = []
        for off, rec in r.read():
            ev = events.decode(rec)
            ev["offset"] = off
            out.append(ev)
        return out


# -- the plain-Python reference ----------------------------------------------------------

def reference(evs: list[dict]) -> dict:
    """Tasks, attempts, agents and queues computed by hand from the events."""
    tasks: dict[str, dict] = {}
    leases: dict[int, dict] = {}
    open_lease: dict[str, int] = {}
    agents: dict[str, int] = {}
    queues: dict[str, int] = {}
    completed_at: dict[str, int] = {}
    for ev in evs:
        t = ev["t"]
        if t == "queue_declared":
            queues[ev["queue"]] = ev["max_concurrent"]
        elif t == "agent_registered":
            agents[ev["agent"]] = ev["capacity"]
        elif t == "submitted":
            tasks[ev["task"]] = dict(queue=ev["queue"], priority=ev["priority"],
                                     submitted=ev["ts"], deps=ev["depends_on"],
                                     not_before=ev["not_before"], first_ready=None,
                                     claims=[], last=None)
        elif "task" in ev:
            task = tasks[ev["task"]]
            if t == "ready" and task["first_ready"] is None:
                task["first_ready"] = ev["ts"]
            if t == "claimed":
                task["claims"].append(ev["ts"])
                leases[ev["lease"]] = dict(task=ev["task"], agent=ev["agent"],
                                           queue=task["queue"], start=ev["ts"], end=None,
                                           outcome=None, retry_at=None)
                open_lease[ev["task"]] = ev["lease"]
            elif t in ("completed", "failed", "expired", "released"):
                lease = leases[ev["lease"]]
                lease.update(end=ev["ts"], outcome=t, retry_at=ev.get("retry_at"))
                del open_lease[ev["task"]]
            elif t == "cancelled" and ev["task"] in open_lease:
                leases[open_lease.pop(ev["task"])].update(end=ev["ts"], outcome="cancelled")
            if t == "completed":
                completed_at[ev["task"]] = ev["ts"]
            if t != "heartbeat":
                task["last"] = ev
    for tid, task in tasks.items():
        last = task["last"]
        t = last["t"] if last else "submitted"
        status = {"claimed": "RUNNING", "completed": "COMPLETED",
                  "cancelled": "CANCELLED"}.get(t, "READY")
        if t in ("failed", "expired"):
            status = ("FAILED" if last["retry_at"] is None else
                      "RETRYING" if last["retry_at"] > last["ts"] else "READY")
        deps_done = [completed_at.get(d) for d in task["deps"]]
        if any(x is None for x in deps_done):
            ready = None
        else:
            base = max([task["submitted"]] + deps_done)
            ready = task["first_ready"] if task["not_before"] > base else base
        if t == "submitted":
            status = "PENDING" if ready is None else "READY"
        task["status"] = status
        task["ready"] = ready
        task["finished"] = last["ts"] if status in TERMINAL else None
        claims = task["claims"]
        task["wait"] = claims[0] - ready if claims and ready is not None else None
        task["run"] = task["finished"] - claims[-1] if status == "COMPLETED" else None
        task["e2e"] = (task["finished"] - task["submitted"]
                       if task["finished"] is not None else None)
    return dict(tasks=tasks, leases=leases, agents=agents, queues=queues,
                lo=evs[0]["ts"], hi=evs[-1]["ts"])


def quantile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default, DuckDB quantile_cont)."""
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@pytest.fixture(scope="module")
def proj(demo_dir: Path):
    p = Projection(demo_dir)
    p.refresh()
    yield p
    p.close()


@pytest.fixture(scope="module")
def ref(demo_dir: Path) -> dict:
    return reference(read_events(demo_dir))


# -- the numbers -----------------------------------------------------------------------

def test_events_table_has_every_record(proj: Projection, demo_dir: Path) -> None:
    evs = read_events(demo_dir)
    rows = proj.query('SELECT "offset", type, task, ts FROM events ORDER BY "offset"').rows
    assert rows == [(e["offset"], e["t"], e.get("task"), e["ts"]) for e in evs]


def test_events_carry_queue_and_agent_on_every_task_event(proj: Projection) -> None:
    missing = proj.query(
        "SELECT count(*) FROM events WHERE task IS NOT NULL AND queue IS NULL").rows
    assert missing == [(0,)]
    no_agent = proj.query("SELECT count(*) FROM events WHERE type IN ('completed', 'failed', "
                          "'expired', 'released') AND agent IS NULL").rows
    assert no_agent == [(0,)]


def test_tasks_match_reference(proj: Projection, ref: dict) -> None:
    rows = proj.query("SELECT task, queue, priority, status, ready_at, finished_at, wait_ns, "
                      "run_ns, e2e_ns FROM tasks").to_dicts()
    assert len(rows) == len(ref["tasks"])
    for r in rows:
        t = ref["tasks"][r["task"]]
        assert (r["queue"], r["priority"], r["status"]) == (t["queue"], t["priority"],
                                                            t["status"]), r["task"]
        assert (r["ready_at"], r["finished_at"]) == (t["ready"], t["finished"]), r["task"]
        assert (r["wait_ns"], r["run_ns"], r["e2e_ns"]) == (t["wait"], t["run"], t["e2e"])


def test_task_status_matches_the_kernel(proj: Projection, demo_dir: Path) -> None:
    k = Kernel.replay(demo_dir)
    try:
        expected = {t.id: (t.status, t.attempts, t.agent) for t in k.tasks()}
    finally:
        k.close()
    got = {r[0]: (r[1], r[2], r[3]) for r in
           proj.query("SELECT task, status, attempts, last_agent FROM tasks").rows}
    assert got == expected


def test_attempts_match_reference(proj: Projection, ref: dict) -> None:
    rows = proj.query("SELECT lease, task, agent, claimed_at, ended_at, outcome, retry_at "
                      "FROM attempts").rows
    assert {r[0]: r[1:] for r in rows} == {
        lid: (x["task"], x["agent"], x["start"], x["end"], x["outcome"], x["retry_at"])
        for lid, x in ref["leases"].items()}
    outcomes = {r[5] for r in rows}
    assert {"completed", "failed", "expired"} <= outcomes


def test_latency_percentiles_match_reference(proj: Projection, ref: dict) -> None:
    done = [t for t in ref["tasks"].values() if t["status"] == "COMPLETED"]
    for row in proj.query("SELECT * FROM latency").to_dicts():
        key = "queue" if row["by"] == "queue" else "priority"
        group = [t for t in done if str(t[key]) == row["key"]]
        assert row["n"] == len(group)
        for metric in ("wait", "run", "e2e"):
            vals = [t[metric] for t in group]
            for q, name in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
                assert row[f"{metric}_{name}_s"] == pytest.approx(quantile(vals, q) / 1e9,
                                                                  rel=1e-9, abs=1e-9)
    assert len(proj.query("SELECT * FROM latency WHERE \"by\" = 'priority'")) == 5


def test_throughput_matches_reference(proj: Projection, ref: dict) -> None:
    expected: dict = defaultdict(lambda: [0, 0])
    for t in ref["tasks"].values():
        if t["status"] in ("COMPLETED", "FAILED"):
            bucket = t["finished"] // 60_000_000_000 * 60
            expected[(bucket, t["queue"])][t["status"] == "FAILED"] += 1
    rows = proj.query("SELECT epoch(interval_start)::BIGINT, queue, completed, failed "
                      "FROM throughput").rows
    assert {(r[0], r[1]): [r[2], r[3]] for r in rows} == dict(expected)


def test_utilization_matches_reference(proj: Projection, ref: dict) -> None:
    lo, hi = ref["lo"], ref["hi"]
    busy: dict = defaultdict(int)
    qbusy: dict = defaultdict(int)
    for x in ref["leases"].values():
        end = x["end"] if x["end"] is not None else hi
        busy[x["agent"]] += min(end, hi) - max(x["start"], lo)
        qbusy[x["queue"]] += min(end, hi) - max(x["start"], lo)
    for r in proj.query("SELECT * FROM agent_utilization").to_dicts():
        cap = ref["agents"][r["agent"]]
        assert r["utilization"] == pytest.approx(busy[r["agent"]] / (cap * (hi - lo)))
    for r in proj.query("SELECT * FROM queue_utilization").to_dicts():
        limit = ref["queues"][r["queue"]]
        assert r["avg_running"] == pytest.approx(qbusy[r["queue"]] / (hi - lo))
        if limit:
            assert r["utilization"] == pytest.approx(qbusy[r["queue"]] / (limit * (hi - lo)))
        else:
            assert r["utilization"] is None


def test_failures_match_reference(proj: Projection, ref: dict) -> None:
    rows = {(r["by"], r["key"]): r for r in proj.query("SELECT * FROM failures").to_dicts()}
    for by in ("queue", "agent"):
        counts: dict = defaultdict(lambda: defaultdict(int))
        for x in ref["leases"].values():
            c = counts[x[by]]
            c["attempts"] += 1
            c[x["outcome"]] += 1
            if x["outcome"] in ("failed", "expired"):
                c["retried" if x["retry_at"] is not None else "dead_lettered"] += 1
        for key, c in counts.items():
            r = rows[(by, key)]
            for col in ("attempts", "completed", "failed", "expired", "retried",
                        "dead_lettered"):
                assert r[col] == c[col], (by, key, col)


def test_dashboard_window_counts_only_the_window(proj: Projection, ref: dict) -> None:
    hi = ref["hi"]
    t0 = hi - 120 * 10**9
    rep = build_report(proj, window_s=120)
    lat = {r["key"]: r["n"] for r in rep.sections["latency"].to_dicts() if r["by"] == "queue"}
    expected: dict = defaultdict(int)
    for t in ref["tasks"].values():
        if t["status"] == "COMPLETED" and t["finished"] >= t0:
            expected[t["queue"]] += 1
    assert lat == dict(expected)


# -- incremental ingest ------------------------------------------------------------------

TABLE_QUERIES = {
    "events": 'SELECT * EXCLUDE (time) FROM events ORDER BY "offset"',
    "tasks": "SELECT * FROM tasks ORDER BY task",
    "attempts": "SELECT * FROM attempts ORDER BY lease",
    "agents": "SELECT * FROM agents ORDER BY agent",
    "queues": "SELECT * FROM queues ORDER BY queue",
    "latency": "SELECT * FROM latency",
    "agent_utilization": "SELECT * FROM agent_utilization",
}


def snapshot_tables(p: Projection) -> dict:
    return {name: p.query(sql).rows for name, sql in TABLE_QUERIES.items()}


@pytest.mark.parametrize("cuts", [[1, 2, 3], [500, 501, 1400], [97 * i for i in range(1, 30)]])
def test_incremental_equals_full(demo_dir: Path, proj: Projection, cuts: list[int]) -> None:
    full = snapshot_tables(proj)
    with Projection(demo_dir) as inc:
        for cut in cuts:
            inc.refresh(until=cut)
            assert inc.next_offset == min(cut, inc.log_next_offset)
        inc.refresh()
        assert snapshot_tables(inc) == full


def test_small_chunks_equal_full(demo_dir: Path, proj: Projection) -> None:
    seen = []
    with Projection(demo_dir) as p:
        p.refresh(chunk=333, progress=lambda done, total: seen.append((done, total)))
        assert snapshot_tables(p) == snapshot_tables(proj)
    assert seen[-1][0] == seen[-1][1] and len(seen) > 3


def test_refresh_is_a_no_op_when_caught_up(proj: Projection) -> None:
    assert proj.refresh() == 0


def test_failed_chunk_rolls_back_rows_and_offset(demo_dir: Path, monkeypatch) -> None:
    import eskernel.analytics.ingest as ingest

    with Projection(demo_dir) as p:
        p.refresh(until=1000)
        before = snapshot_tables(p)
        # A late statement of an incremental chunk fails: the events and tasks it already
        # wrote in the transaction roll back with the offset.
        real = ingest._ATTEMPTS_MERGED
        monkeypatch.setattr(ingest, "_ATTEMPTS_MERGED", "SELECT no_such_column FROM events")
        with pytest.raises(ProjectionError):
            p.refresh()
        assert p.next_offset == 1000
        assert snapshot_tables(p) == before
        monkeypatch.setattr(ingest, "_ATTEMPTS_MERGED", real)
        p.refresh()
        assert p.next_offset == p.log_next_offset
        assert snapshot_tables(p) == snapshot_tables_full(demo_dir)


def snapshot_tables_full(d: Path) -> dict:
    with Projection(d) as full:
        full.refresh()
        return snapshot_tables(full)


def test_file_database_keeps_its_offset(demo_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "p.duckdb"
    with Projection(demo_dir, db) as p:
        n = p.refresh(until=800)
    with Projection(demo_dir, db) as p:
        assert p.next_offset == n == 800
        assert p.refresh() == p.log_next_offset - 800
        assert p.query("SELECT count(*) FROM events").rows == [(p.log_next_offset,)]


def test_database_of_an_older_layout_is_rebuilt(demo_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "old.duckdb"
    with Projection(demo_dir, db) as p:
        p.refresh(until=800)
    # What the previous layout looked like: tasks without the incremental-fold columns.
    con = duckdb.connect(str(db))
    con.execute("ALTER TABLE tasks DROP COLUMN last_event")
    con.execute("UPDATE ingest_state SET schema_version = 1")
    con.close()
    with Projection(demo_dir, db) as p:
        assert p.next_offset == 0                       # rebuilt from the log
        p.refresh()
        assert snapshot_tables(p) == snapshot_tables_full(demo_dir)


def test_database_in_use_is_a_projection_error(demo_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "busy.duckdb"
    holder = duckdb.connect(str(db), config={"access_mode": "READ_WRITE"})
    holder.execute("CREATE TABLE x (a INT)")
    holder.close()
    db.write_bytes(b"not a duckdb file" * 100)
    with pytest.raises(ProjectionError, match="cannot open the projection database"):
        Projection(demo_dir, db)


def test_live_log_follow(tmp_path: Path) -> None:
    clock = ManualClock()
    k = Kernel.open(tmp_path, clock=clock)          # a live writer holds the directory
    k.declare_queue("q", max_concurrent=1)
    k.register_agent("a", ["q"])
    with Projection(tmp_path) as p:
        assert p.refresh() == 2
        seen: list[int] = []
        stop = threading.Event()
        t = threading.Thread(target=p.follow, kwargs=dict(interval=0.01, stop=stop,
                                                          on_refresh=seen.append))
        t.start()
        for i in range(5):
            k.submit("q", id=f"t{i}")
            lease = k.claim("a")
            clock.advance(1)
            k.complete(lease)
        k.close()
        deadline = threading.Event()
        for _ in range(500):
            if p.next_offset == 17:
                break
            deadline.wait(0.01)
        stop.set()
        t.join()
        assert sum(seen) == 15
        assert p.query("SELECT count(*) FROM tasks WHERE status = 'COMPLETED'").rows == [(5,)]


# -- errors and extras -------------------------------------------------------------------

def test_record_that_is_not_an_event(tmp_path: Path) -> None:
    with EventLog.open(tmp_path) as log:
        log.append(b'{"v":1,"t":"queue_paused","ts":1,"queue":"q"}')
        log.append(b'{"hello":"world"}')
    with Projection(tmp_path) as p:
        with pytest.raises(ProjectionError, match="record 1 .* is not an eskernel event"):
            p.refresh()
        assert p.next_offset == 0


def test_a_record_larger_than_the_reader_default_is_ingested(tmp_path: Path) -> None:
    # DuckDB versions differ on a line longer than maximum_object_size (16 MB by default):
    # some refuse it.  Ingest passes the export's longest line, so any version reads it.
    blob = b"x" * (20 << 20)
    with EventLog.open(tmp_path, max_record_bytes=32 << 20) as log:
        log.append(b'{"v":1,"t":"queue_declared","ts":0,"queue":"q","max_concurrent":1,'
                   b'"paused":false}')
        log.append(b'{"v":1,"t":"submitted","ts":1,"task":"a","queue":"q","priority":1,'
                   b'"payload":{"blob":"' + blob + b'"},"depends_on":[],"max_attempts":1,'
                   b'"timeout":1,"not_before":0}')
    with Projection(tmp_path) as p:
        assert p.refresh() == 2
        assert p.query("SELECT task, queue, status FROM tasks").rows == [("a", "q", "READY")]


@pytest.mark.parametrize(("bad", "what"), [
    (b'{"v":2,"t":"ready","ts":9,"task":"a"}', "schema version 2, type 'ready'"),
    (b'{"v":1,"t":"teleported","ts":9,"task":"a"}', "schema version 1, type 'teleported'"),
    (b'{"v":1,"t":"ready","task":"a"}', "schema version 1, type 'ready', no ts")])
def test_record_that_is_not_an_event_in_a_later_refresh(tmp_path: Path, bad: bytes,
                                                        what: str) -> None:
    # A later chunk is checked like a first one, and the first bad record is the one named
    # (two are appended; the chunk's earlier good records are not kept either).
    with Kernel.open(tmp_path, clock=ManualClock()) as k:
        k.declare_queue("q")
        k.submit("q", id="a")
    with Projection(tmp_path) as p:
        p.refresh()
        before = p.next_offset, p.query("SELECT count(*) FROM events").rows
        with EventLog.open(tmp_path) as log:
            first_bad = log.append(b'{"v":1,"t":"requeued","ts":8,"task":"a"}') + 1
            log.append_many([bad, bad])
        with pytest.raises(ProjectionError) as info:
            p.refresh()
        assert f"record {first_bad} of the log" in str(info.value)
        assert f"is not an eskernel event ({what});" in str(info.value)
        assert (p.next_offset, p.query("SELECT count(*) FROM events").rows) == before


def test_bad_sql_and_read_only_queries(proj: Projection) -> None:
    with pytest.raises(ProjectionError, match="SQL error"):
        proj.query("SELEC nonsense")
    with pytest.raises(ProjectionError, match="empty"):
        proj.query("  ")
    n = proj.query("SELECT count(*) FROM tasks").rows
    for bad in ("DELETE FROM tasks", "COMMIT; DROP TABLE tasks", "DROP TABLE tasks",
                "COPY (SELECT 1) TO 'x.csv'", "ATTACH 'x.db'", "SET threads = 1",
                "SELECT 1; SELECT 2", "CREATE TABLE x AS SELECT 1"):
        with pytest.raises(QueryNotAllowedError):
            proj.query(bad)
    with pytest.raises(QueryNotAllowedError):
        proj.export("DELETE FROM tasks", "x.csv")
    assert proj.query("SELECT count(*) FROM tasks").rows == n
    assert proj.query("EXPLAIN SELECT 1").columns


def test_sql_error_keeps_duckdbs_whole_message(proj: Projection) -> None:
    with pytest.raises(ProjectionError) as info:
        proj.query("SELECT t FROM events")
    assert "Candidate bindings" in str(info.value) and '"type"' in str(info.value)


def test_read_only_projection_refuses_writes(demo_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "ro.duckdb"
    with Projection(demo_dir, db) as p:
        p.refresh()
        n = p.query("SELECT count(*) FROM tasks").rows
    with Projection(demo_dir, db, read_only=True) as ro:
        assert ro.query("SELECT count(*) FROM tasks").rows == n
        with pytest.raises(ProjectionError, match="read-only"):
            ro.refresh()
        with pytest.raises(ProjectionError, match="read-only"):
            ro.export("tasks", tmp_path / "t.csv")
        for bad in ("DROP TABLE tasks", "COPY (SELECT 1) TO 'x.csv'"):
            with pytest.raises(QueryNotAllowedError):
                ro.query(bad)
        # Beyond the statement check, the connection itself reads no file.
        with pytest.raises(ProjectionError, match="disabled by configuration"):
            ro.query("SELECT * FROM read_csv('/etc/hostname')")
    assert not (tmp_path / "t.csv").exists()
    with pytest.raises(ProjectionError, match="does not exist"):
        Projection(demo_dir, tmp_path / "none.duckdb", read_only=True)


def test_export_parquet_and_csv(proj: Projection, tmp_path: Path) -> None:
    pq = proj.export("tasks", tmp_path / "tasks.parquet")
    cs = proj.export("SELECT task, status FROM tasks", tmp_path / "t.csv")
    n = proj.query("SELECT count(*) FROM tasks").rows[0][0]
    assert duckdb.connect().execute(f"SELECT count(*) FROM '{pq}'").fetchone()[0] == n
    assert len(cs.read_text().splitlines()) == n + 1
    with pytest.raises(ProjectionError, match="not supported"):
        proj.export("tasks", tmp_path / "t.xlsx")
    with pytest.raises(ProjectionError, match="exporting"):
        proj.export("no_such_table", tmp_path / "x.csv")


def test_report_renders(proj: Projection) -> None:
    rep = proj.report()
    # The report splits one utilization pass: the same tables as the two views.
    for name in ("agent_utilization", "queue_utilization"):
        view = proj.query(f"SELECT * FROM {name}")
        assert (rep.sections[name].columns, rep.sections[name].rows) == (view.columns, view.rows)
        assert view.rows
    text = rep.to_text()
    for title in ("Latency percentiles", "Utilization by agent", "Failures"):
        assert title in text
    page = rep.to_html()
    assert page.count("<svg") >= 3 and "<script" not in page and "http-equiv" not in page
    assert set(rep.to_json_obj()) >= {"meta", "latency", "failures", "throughput"}
    assert rep.to_csv().startswith("# summary\n")
    with pytest.raises(ProjectionError):
        proj.report(window_s=-1)
    with pytest.raises(ProjectionError):
        proj.report(bucket_s=0)


def test_missing_log_is_an_error(tmp_path: Path) -> None:
    from eskernel.eventlog import LogNotFoundError
    with pytest.raises(LogNotFoundError):
        Projection(tmp_path / "nope")


# -- verify ------------------------------------------------------------------------------

def test_verify_clean_demo(demo_dir: Path) -> None:
    result = verify_log(demo_dir)
    assert result.ok and result.events == len(read_events(demo_dir))


def _log(tmp_path: Path, lines: list[str]) -> Path:
    with EventLog.open(tmp_path) as log:
        for line in lines:
            log.append(line.encode())
    return tmp_path


HEAD = ['{"v":1,"t":"queue_declared","ts":1,"queue":"q","max_concurrent":1,"paused":false}',
        '{"v":1,"t":"agent_registered","ts":1,"agent":"a","capabilities":["q"],"capacity":1}',
        '{"v":1,"t":"agent_registered","ts":1,"agent":"b","capabilities":["q"],"capacity":2}']


def _sub(task: str, deps: str = "") -> str:
    return ('{"v":1,"t":"submitted","ts":2,"task":"%s","queue":"q","priority":2,"payload":null,'
            '"depends_on":[%s],"max_attempts":3,"timeout":10,"not_before":0,"agent":null,'
            '"backoff":{"initial":1,"factor":2.0,"max":60,"jitter":0.0},"name":null,'
            '"tags":null,"key":null,"parent":null}' % (task, deps))


def _claim(task: str, lease: int, agent: str) -> str:
    return ('{"v":1,"t":"claimed","ts":3,"task":"%s","lease":%d,"agent":"%s","attempt":1,'
            '"expires":13}' % (task, lease, agent))


@pytest.mark.parametrize("tail,offset,rule", [
    ([_sub("x"), _claim("x", 1, "a"), _claim("x", 2, "b")], 5, "task-leased-twice"),
    ([_sub("x"), _sub("y"), _claim("x", 1, "a"), _claim("y", 2, "a")], 6, "agent-capacity"),
    ([_sub("x"), _sub("y"), _claim("x", 1, "b"), _claim("y", 2, "b")], 6,
     "queue-max-concurrent"),
    ([_sub("x"), _sub("y", '"x"'), _claim("y", 1, "a")], 5, "dependency-order"),
    ([_sub("x"), '{"v":1,"t":"completed","ts":4,"task":"x","lease":9,"result":null}'], 4,
     "lease-end"),
    (['{"v":1,"t":"nonsense","ts":4}'], 3, "schema"),
    ([_sub("x"), _sub("x")], 4, "duplicate-task"),
])
def test_verify_names_the_first_violation(tmp_path: Path, tail, offset, rule) -> None:
    v = verify_log(_log(tmp_path, HEAD + tail)).violation
    assert v is not None and (v.offset, v.rule) == (offset, rule), v


def test_verify_reports_corruption(tmp_path: Path) -> None:
    d = _log(tmp_path, HEAD + [_sub("x"), _sub("y")])
    seg = sorted(d.glob("*.seg"))[0]
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0xFF
    seg.write_bytes(bytes(data))
    v = verify_log(d).violation
    assert v is not None and v.rule == "integrity"


def test_verify_compares_snapshots(tmp_path: Path) -> None:
    clock = ManualClock()
    with Kernel.open(tmp_path, clock=clock, snapshot_every=0) as k:
        k.declare_queue("q")
        k.register_agent("a", ["q"])
        k.submit("q", id="x")
        k.complete(k.claim("a"))
        k.snapshot()
    assert verify_log(tmp_path).snapshots == 1 and verify_log(tmp_path).ok


# -- report rates: the peak of a window is never below its average ----------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

from eskernel.analytics.report import peak_rates  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**12), st.integers(1, 10**12), st.integers(1, 600),
       st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=50))
def test_peak_rate_is_at_least_the_average(lo: int, length: int, bucket_s: int,
                                           where: list[float]) -> None:
    end = lo + length
    bucket_ns = bucket_s * 1_000_000_000
    counts: dict[int, int] = {}
    for x in where:                                  # completion times inside [lo, end)
        k = (lo + int(x * length)) // bucket_ns
        counts[k] = counts.get(k, 0) + 1
    average = len(where) / (length / 1e9)
    assert peak_rates(counts, lo, end, bucket_ns) >= average * (1 - 1e-12)


@settings(max_examples=25, deadline=None)
@given(st.floats(0.5, 400), st.integers(1, 120))
def test_report_peak_rate_at_least_average_over_random_windows(demo_dir: Path, last: float,
                                                                bucket_s: int) -> None:
    with Projection(demo_dir) as p:
        p.refresh()
        rep = build_report(p, window_s=last, bucket_s=bucket_s)
    for row in rep.sections["throughput"].to_dicts():
        assert row["peak_per_s"] >= row["completed_per_s"] * (1 - 1e-12), row


def test_timestamp_and_seconds_columns_beside_the_ns_columns(proj: Projection) -> None:
    import datetime
    t = proj.query("SELECT submitted_at, submitted_time, finished_at, finished_time, wait_ns, "
                   "wait_s, e2e_ns, e2e_s FROM tasks WHERE status = 'COMPLETED' LIMIT 20")
    assert t.rows
    epoch = datetime.datetime(1970, 1, 1)
    for sub, sub_t, fin, fin_t, wait_ns, wait_s, e2e_ns, e2e_s in t.rows:
        assert isinstance(sub_t, datetime.datetime) and isinstance(fin_t, datetime.datetime)
        assert (sub_t - epoch) // datetime.timedelta(microseconds=1) == sub // 1000
        assert (fin_t - epoch) // datetime.timedelta(microseconds=1) == fin // 1000
        assert wait_s == wait_ns / 1e9 and e2e_s == e2e_ns / 1e9
    a = proj.query("SELECT claimed_at, claimed_time, duration_ns, duration_s FROM attempts "
                   "WHERE duration_ns IS NOT NULL LIMIT 5")
    assert a.rows and all(r[3] == r[2] / 1e9 and r[1] is not None for r in a.rows)
