"""Incremental refresh folds each chunk into the derived rows; for hypothesis-generated
kernel workloads (every command: retries, releases, requeues, cancels with open leases,
expiries, heartbeats, dependencies, pauses, agents going offline) the projection refreshed
at arbitrary cut points equals one built in a single pass, and both agree with the kernel's
own view of every task.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings, strategies as st

from eskernel.analytics import Projection
from eskernel import Kernel, ManualClock
from tests.strategies import Driver, workloads
from tests.test_analytics import snapshot_tables

START = 1_700_000_000.0


def play(path: Path, commands: list[tuple]) -> None:
    clock = ManualClock(start=START)
    k = Kernel.open(path, durability="buffer", clock=clock)
    try:
        d = Driver(k, clock)
        d.setup()
        d.play(commands)
    finally:
        k.close()


def kernel_view(path: Path) -> dict[str, tuple]:
    k = Kernel.replay(path)
    try:
        return {t.id: (t.status, t.attempts) for t in k.tasks()}
    finally:
        k.close()


@settings(max_examples=25)
@given(commands=workloads(min_size=5, max_size=80),
       cuts=st.lists(st.integers(1, 200), min_size=1, max_size=6, unique=True))
def test_refresh_at_any_cut_points_equals_one_pass(tmp_path_factory, commands, cuts) -> None:
    path = tmp_path_factory.mktemp("inc") / "log"
    play(path, commands)
    with Projection(path) as full:
        full.refresh()
        expected = snapshot_tables(full)
        status = {r[0]: (r[1], r[2]) for r in
                  full.query("SELECT task, status, attempts FROM tasks").rows}
    assert status == kernel_view(path)
    with Projection(path) as inc:
        for cut in sorted(cuts):
            inc.refresh(until=cut)
        inc.refresh()
        assert snapshot_tables(inc) == expected


def every_kind_of_event(path: Path) -> None:
    clock = ManualClock(start=START)
    k = Kernel.open(path, durability="buffer", clock=clock)
    try:
        k.declare_queue("q", max_concurrent=2)
        k.register_agent("w", ["q"], capacity=2)
        a = k.submit("q", id="a", priority=4, max_attempts=2, timeout=1.0,
                     backoff={"initial": 0.5, "factor": 2.0, "max": 4.0, "jitter": 0.0})
        lease = k.claim("w")
        k.heartbeat(lease)
        k.fail(lease, "boom")                        # retried after a backoff
        clock.advance(1.0)
        k.tick()                                     # ready
        k.release(k.claim("w"))
        clock.advance(2.0)
        k.claim("w")
        clock.advance(2.0)
        k.tick()                                     # expired: attempts exhausted
        k.requeue(a)
        k.complete(k.claim("w"))
        k.submit("q", id="x")
        k.submit("q", id="y", depends_on=["x"], delay=30.0)
        k.complete(k.claim("w"))                     # x: y's dependency completes
        k.submit("q", id="c")
        k.claim("w")
        k.cancel("c")                                # cancelled with its lease open
        k.agent_offline("w")
        k.agent_online("w")
        k.pause_queue("q")
        k.resume_queue("q")
        clock.advance(30.0)
        k.tick()                                     # y's delay is over
        k.complete(k.claim("w"))
    finally:
        k.close()


def test_one_record_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "log"
    every_kind_of_event(path)
    with Projection(path) as full:
        full.refresh()
        expected = snapshot_tables(full)
        types = {r[0] for r in full.query("SELECT DISTINCT type FROM events").rows}
        status = {r[0]: (r[1], r[2]) for r in
                  full.query("SELECT task, status, attempts FROM tasks").rows}
    assert status == kernel_view(path)
    assert {"heartbeat", "failed", "expired", "released", "requeued", "cancelled",
            "ready", "completed"} <= types
    with Projection(path) as inc:
        while inc.refresh(chunk=1, until=inc.next_offset + 1):
            pass
        assert snapshot_tables(inc) == expected
