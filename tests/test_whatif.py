"""What-if replay: the unchanged model reproduces the recording, changes move the measures
the way they must, bad changes are typed errors, and the recorded directory is never
written."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from eskernel import Kernel, ManualClock
from eskernel.cli import cli
from eskernel.cli._demo import prepare_dir, run_demo
from eskernel.errors import InvalidSpecError, LogNotFoundError, WhatIfChangeError
from eskernel.verify import verify_log
from eskernel.whatif import whatif

from tests.whatif_gen import generate

PCT_KEYS = [f"{m}_{p}" for m in ("wait", "run", "e2e") for p in ("p50", "p95", "p99")]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("whatif") / "demo"
    prepare_dir(path)
    run_demo(path, jobs=120, seed=7)
    return path


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("whatif") / "gen"
    counts = generate(path, tasks=300, seed=1)
    assert counts["fail"] and counts["hang"] and counts["heartbeat"] and counts["cancel"]
    return path


def _close(base: float | None, alt: float | None, abs_s: float, rel: float) -> bool:
    if base is None or alt is None:
        return base is alt
    return abs(alt - base) <= max(abs_s, rel * abs(base))


# -- validation of the model ----------------------------------------------------------------

def test_unchanged_demo_reproduces_the_recorded_percentiles(demo: Path) -> None:
    # Stated tolerance: every task together within 0.05 s; each queue and priority with at
    # least 50 tasks within max(0.5 s, 5 %).  Run times are replayed, so they are exact.
    r = whatif(demo)
    b, a = r.baseline["groups"], r.alternative["groups"]
    for key in ("tasks", "completed", "dead_letters", "cancelled", "unfinished"):
        assert a["all"][key] == b["all"][key], key
    for k in PCT_KEYS:
        assert _close(b["all"][k], a["all"][k], 0.05, 0.0), (k, b["all"][k], a["all"][k])
    checked = 0
    for group, gb in b.items():
        if gb["tasks"] < 50:
            continue
        for k in PCT_KEYS:
            assert _close(gb[k], a[group][k], 0.5, 0.05), (group, k, gb[k], a[group][k])
            checked += 1
        for k in ("run_p50", "run_p95", "run_p99"):
            assert _close(gb[k], a[group][k], 0.001, 0.0), (group, k)
    assert checked >= 9 * 8
    assert len(r.alternative["dags"]) == len(r.baseline["dags"]) == 120


def test_unchanged_generated_workload_within_the_stated_tolerance(generated: Path) -> None:
    # Agents that poll claim late in the recording; the model claims at once.  Stated
    # tolerance for the whole workload: wait and end-to-end percentiles within
    # max(1 s, 25 %); run times within 0.1 s.
    r = whatif(generated)
    b, a = r.baseline["groups"]["all"], r.alternative["groups"]["all"]
    assert a["tasks"] == b["tasks"] and a["completed"] == b["completed"]
    for k in PCT_KEYS:
        tol = (0.1, 0.0) if k.startswith("run") else (1.0, 0.25)
        assert _close(b[k], a[k], *tol), (k, b[k], a[k])
    assert r.flags["retried_after_timeout"] and r.flags["cancelled_mid_run"] is not None
    text = r.to_text()
    assert "retried after a lease expired" in text and "Run times and outcomes" in text


def test_simulation_is_deterministic(generated: Path) -> None:
    changes = ["queue.a.max_concurrent=1", "agent.w9=capabilities:a+c,capacity:2"]
    assert whatif(generated, changes).records == whatif(generated, changes).records


# -- changes move the measures --------------------------------------------------------------

def _kernel_dir(tmp_path: Path) -> Path:
    # Four 10 s tasks on one queue limited to 1: the recording runs them one after another.
    with Kernel.open(tmp_path, clock=(c := ManualClock(100.0))) as k:
        k.declare_queue("q", max_concurrent=1)
        k.declare_queue("other")
        k.register_agent("w", ["q"], capacity=4)
        for i in range(4):
            k.submit("q", id=f"t{i}", name="job")
        for _ in range(4):
            lease = k.claim("w")
            assert lease is not None
            c.advance(10)
            k.complete(lease)
    return tmp_path


def test_max_concurrent_agents_and_capacity(tmp_path: Path) -> None:
    d = _kernel_dir(tmp_path)
    base = whatif(d)
    assert base.baseline["makespan_s"] == base.alternative["makespan_s"] == 40.0
    assert whatif(d, ["queue.q.max_concurrent=4"]).alternative["makespan_s"] == 10.0
    assert whatif(d, {"queue.q.max_concurrent": 0}).alternative["makespan_s"] == 10.0
    two = whatif(d, ["queue.q.max_concurrent=4", "agent.w.capacity=2"])
    assert two.alternative["makespan_s"] == 20.0
    extra = whatif(d, ["queue.q.max_concurrent=0", "agent.w.capacity=1",
                       "agent.w2=capabilities:q,capacity:1"])
    assert extra.alternative["makespan_s"] == 20.0
    assert set(extra.alternative["agent_utilization"]) == {"w", "w2"}
    none = whatif(d, ["agent.w.capacity=0"])
    assert none.alternative["groups"]["all"]["unfinished"] == 4
    paused = whatif(d, ["queue.q.paused=true"])
    assert paused.alternative["groups"]["all"]["completed"] == 0


def test_a_new_agent_works_from_the_first_event_of_a_log_starting_at_time_zero(
        tmp_path: Path) -> None:
    with Kernel.open(tmp_path, clock=(c := ManualClock(0.0))) as k:
        k.declare_queue("q")
        k.register_agent("w", ["q"], capacity=1)
        k.submit_many([{"queue": "q", "id": f"t{i}"} for i in range(4)])
        for _ in range(4):
            lease = k.claim("w")
            assert lease is not None
            c.advance(5)
            k.complete(lease)
    r = whatif(tmp_path, ["agent.w2=capabilities:q,capacity:3"])
    assert (r.baseline["makespan_s"], r.alternative["makespan_s"]) == (20.0, 5.0)
    assert r.dag_changes() == []


def test_dag_makespans_are_named_by_their_first_task(demo: Path) -> None:
    r = whatif(demo, ["queue.encode.max_concurrent=8"])
    assert {d["dag"].rsplit(".", 1)[1] for d in r.baseline["dags"]} == {"ingest"}
    rows = r.dag_changes(3)
    assert len(rows) == 3 and rows[0][2] - rows[0][3] >= rows[2][2] - rows[2][3] > 0
    assert "DAGs whose makespan changed most" in r.to_text()


def test_priority_change_reorders(demo: Path) -> None:
    # Render tasks made CRITICAL wait less for the render agents than they did.
    r = whatif(demo, ["task.render.priority=CRITICAL"])
    b, a = r.baseline["groups"]["queue:render"], r.alternative["groups"]["queue:render"]
    assert a["wait_p95"] < b["wait_p95"]
    assert "priority:5" in r.alternative["groups"]
    more = whatif(demo, ["queue.encode.max_concurrent=8"])
    assert (more.alternative["groups"]["queue:encode"]["wait_p95"]
            < more.baseline["groups"]["queue:encode"]["wait_p95"])


@pytest.mark.parametrize("change, needle", [
    ("queue.nope.max_concurrent=8", "no queue 'nope'"),
    ("queue.q.max_concurrent=-1", "out of range"),
    ("queue.q.max_concurrent=lots", "not an integer"),
    ("queue.q.rate_limit=20", "no setting 'rate_limit'"),
    ("agent.w.capacity=-2", "out of range"),
    ("agent.ghost.capacity=2", "no agent 'ghost'"),
    ("agent.w.speed=2", "no setting 'speed'"),
    ("agent.n=capabilities:nope,capacity:1", "unknown queue"),
    ("agent.n=capacity:2", "needs capabilities"),
    ("agent.n=colour:red", "is not capabilities"),
    ("task.job.priority=9999", "out of range"),
    ("task.job.priority=SOON", "not a priority"),
    ("task.ghost.priority=HIGH", "neither a task name"),
    ("task.q.timeout=3", "no setting 'timeout'"),
    ("tenant.a.weight=2", "unknown kind"),
    ("queue.q.paused=maybe", "not true or false"),
    ("no-equals-sign", "key=value"),
])
def test_bad_changes_are_typed_errors_listing_what_can_be_set(tmp_path: Path, change: str,
                                                              needle: str) -> None:
    d = _kernel_dir(tmp_path)
    with pytest.raises(WhatIfChangeError) as info:
        whatif(d, [change])
    msg = str(info.value)
    assert needle in msg and "settable:" in msg and "queue.q.max_concurrent" in msg
    assert "queue.q.max_concurrent" in info.value.settable
    assert isinstance(info.value, InvalidSpecError) and isinstance(info.value, ValueError)


def test_bad_arguments(tmp_path: Path) -> None:
    d = _kernel_dir(tmp_path / "k")
    with pytest.raises(WhatIfChangeError, match="not one string"):
        whatif(d, "queue.q.max_concurrent=2")   # type: ignore[arg-type]
    with pytest.raises(InvalidSpecError, match="before from"):
        whatif(d, [], (200.0, 100.0))
    with pytest.raises(InvalidSpecError, match="window"):
        whatif(d, [], (float("nan"), None))
    with pytest.raises(LogNotFoundError):
        whatif(tmp_path / "empty", [])


# -- the recorded directory is never written ----------------------------------------------

def _fingerprint(d: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(d.iterdir())}


def test_recorded_directory_is_never_written(generated: Path, tmp_path: Path) -> None:
    before = _fingerprint(generated)
    whatif(generated, ["queue.a.max_concurrent=5"], (None, 1_800_000_050.0))
    res = CliRunner().invoke(cli, ["whatif", str(generated), "--set", "agent.w1.capacity=3",
                                   "--html", str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output
    assert _fingerprint(generated) == before


def test_works_on_a_read_only_copy(generated: Path, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    shutil.copytree(generated, ro)
    for p in [*ro.iterdir(), ro]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        before = _fingerprint(ro)
        r = whatif(ro, ["agent.w3.online=false"])
        assert r.alternative["agent_utilization"]["w3"] == 0.0
        assert _fingerprint(ro) == before
    finally:
        for p in [ro, *ro.iterdir()]:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)


# -- outputs --------------------------------------------------------------------------------

def test_window_measures_only_tasks_submitted_in_it(generated: Path) -> None:
    full = whatif(generated)
    part = whatif(generated, [], (1_800_000_020.0, 1_800_000_060.0))
    assert 0 < part.baseline["tasks"] < full.baseline["tasks"]
    assert part.alternative["tasks"] == part.baseline["tasks"]
    assert part.simulated_events < full.simulated_events


def test_save_writes_a_kernel_directory_report_loads(generated: Path, tmp_path: Path) -> None:
    r = whatif(generated, ["queue.c.max_concurrent=4"])
    out = r.save(tmp_path / "alt")
    assert verify_log(out).ok
    k = Kernel.replay(out)
    try:
        assert k.stats().tasks == r.alternative["tasks"]
    finally:
        k.close()
    res = CliRunner().invoke(cli, ["report", str(out), "--memory", "--json"])
    assert res.exit_code == 0, res.output
    with pytest.raises(InvalidSpecError, match="not an empty directory"):
        r.save(out)


def test_cli(generated: Path, tmp_path: Path) -> None:
    run = CliRunner().invoke
    res = run(cli, ["whatif", str(generated), "--set", "queue.a.max_concurrent=6", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["changes"] == ["queue.a.max_concurrent=6"]
    assert doc["baseline"]["groups"]["all"]["tasks"] == doc["alternative"]["groups"]["all"]["tasks"]
    html_file, save = tmp_path / "w.html", tmp_path / "saved"
    res = run(cli, ["whatif", str(generated), "--from", "10", "--until", "60", "--html",
                    str(html_file), "--save", str(save)])
    assert res.exit_code == 0, res.output
    assert "By queue" in res.output and "Limits of this comparison" in res.output
    assert "<svg" in html_file.read_text() and any(save.iterdir())
    res = run(cli, ["whatif", str(generated), "--set", "queue.zz.paused=true"])
    assert res.exit_code == 1 and res.output.startswith("error: change") and "settable" in res.output
    res = run(cli, ["whatif", str(generated), "--from", "yesterday"])
    assert res.exit_code == 1 and "--from 'yesterday'" in res.output
    res = run(cli, ["whatif", str(tmp_path / "missing")])
    assert res.exit_code == 1 and "does not exist" in res.output
    assert os.path.exists(generated)


def test_flags_for_behaviour_that_depended_on_what_ran_before(tmp_path: Path) -> None:
    # Recorded on one slot: x runs 0-10 s; d fails for good at 20 s and is requeued at
    # 25 s, then completes; z waits and is cancelled at 15 s before it ever ran.
    with Kernel.open(tmp_path, clock=(c := ManualClock(0.0))) as k:
        k.declare_queue("q", max_concurrent=1)
        k.register_agent("w", ["q"], capacity=2)
        k.submit_many([{"queue": "q", "id": i} for i in ("x", "d", "z")])
        lease = k.claim("w")
        c.advance(10)
        k.complete(lease)
        lease = k.claim("w")
        assert lease is not None and lease.task_id == "d"
        c.advance(5)
        k.cancel("z")
        c.advance(5)
        k.fail(lease, "corrupt input", retryable=False)
        c.advance(5)
        k.requeue("d")
        lease = k.claim("w")
        c.advance(10)
        k.complete(lease)
    same = whatif(tmp_path)
    assert same.alternative["groups"]["all"] == same.baseline["groups"]["all"]
    assert not any(same.flags.values())
    wide = whatif(tmp_path, ["queue.q.max_concurrent=3", "agent.w.capacity=3"])
    assert wide.flags["unobserved_attempt"] == ["z"]          # z ran: never recorded
    assert wide.flags["cancel_found_task_finished"] == ["z"]   # done before its cancel
    assert wide.alternative["groups"]["all"]["cancelled"] == 0
    assert wide.flags["requeue_found_task_not_failed"] == []   # d failed before 25 s
    assert "finished in the alternative before their recorded cancellation" in wide.to_text()
