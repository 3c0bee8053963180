"""Kernel.explain: why a task is not running, one reason code per rule that blocks it."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from eskernel import Kernel, ManualClock, UnknownTaskError
from eskernel.cli import cli


def codes(k: Kernel, tid: str) -> list[str]:
    return [r["code"] for r in k.explain(tid)]


@pytest.fixture
def k() -> Kernel:
    k = Kernel.in_memory(clock=ManualClock())
    k.declare_queue("q")
    k.register_agent("w", ["q"], capacity=1)
    return k


def test_a_ready_task_with_an_agent_with_room_is_claimable(k):
    k.submit("q", id="a", priority=7)
    (r,) = k.explain("a")
    assert r["code"] == "claimable" and r["agents"] == ["w"] and r["priority"] == 7
    assert k.claim("w").task_id == "a"
    assert codes(k, "a") == ["running"]


def test_dependencies_name_what_is_not_complete(k):
    k.submit("q", id="a")
    k.submit("q", id="b")
    k.submit("q", id="c", depends_on=["a", "b"])
    lease = k.claim("w")
    k.complete(lease)
    (r,) = k.explain("c")
    assert r["code"] == "dependencies"
    assert r["waiting_for"] == [{"task": "b", "status": "READY"}]


def test_a_delay_then_the_tick_that_ends_it(k):
    k.submit("q", id="a", delay=10)
    (r,) = k.explain("a")
    assert r["code"] == "delayed" and "10.000 s" in r["message"]
    k.clock.advance(11)
    assert codes(k, "a") == ["tick_due"]
    k.tick()
    assert codes(k, "a") == ["claimable"]


def test_a_retry_backoff_is_a_delay(k):
    k.submit("q", id="a", backoff={"initial": 5})
    k.fail(k.claim("w"), error="boom")
    assert codes(k, "a") == ["delayed"]


def test_paused_and_full_queues(k):
    k.declare_queue("p", max_concurrent=1)
    k.register_agent("x", ["p"], capacity=5)
    k.submit("p", id="run")
    k.submit("p", id="wait")
    k.claim("x")
    assert codes(k, "wait") == ["queue_full"]
    k.pause_queue("p")
    assert codes(k, "wait") == ["queue_paused", "queue_full"]


def test_agents_offline_busy_or_missing(k):
    k.submit("q", id="a")
    k.submit("q", id="b")
    k.claim("w")
    assert codes(k, "b") == ["agents_at_capacity"]
    k.agent_offline("w")
    assert codes(k, "b") == ["no_online_agent"]
    k.declare_queue("lonely")
    k.submit("lonely", id="c")
    assert codes(k, "c") == ["no_agent"]


def test_a_pinned_task_waits_for_its_agent(k):
    k.register_agent("v", ["q"], capacity=1)
    k.submit("q", id="x")
    k.submit("q", id="pin", agent="w")
    assert k.claim("w").task_id == "x"
    assert codes(k, "pin") == ["pinned_agent_busy"]
    k.agent_offline("w")
    assert codes(k, "pin") == ["pinned_agent_offline"]


def test_finished_tasks_and_bad_ids(k):
    k.submit("q", id="a", max_attempts=1)
    k.fail(k.claim("w"), error="boom")
    (r,) = k.explain("a")
    assert r["code"] == "finished" and r["status"] == "FAILED" and r["dead_lettered"]
    with pytest.raises(UnknownTaskError):
        k.explain("nope")
    before, events = k.digest(), k.next_offset
    k.explain("a")
    assert k.digest() == before and k.next_offset == events


def test_explain_command_reads_a_directory(tmp_path):
    with Kernel.open(tmp_path / "k", clock=ManualClock()) as k:
        k.declare_queue("q")
        k.submit("q", id="a")
    res = CliRunner().invoke(cli, ["explain", str(tmp_path / "k"), "a", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["task"] == "a" and [r["code"] for r in out["reasons"]] == ["no_agent"]
    res = CliRunner().invoke(cli, ["explain", str(tmp_path / "k"), "zzz"])
    assert res.exit_code != 0 and "zzz" in res.output


def test_explain_over_the_wire(tmp_path):
    from tests.service.helpers import RemoteKernel
    kernel = Kernel.in_memory(clock=ManualClock())
    remote = RemoteKernel(kernel, str(tmp_path / "s"), reconnect=0)
    try:
        remote.declare_queue("q")
        remote.submit("q", id="a", delay=5)
        assert [r["code"] for r in remote.explain("a")] == ["delayed", "no_agent"]
        with pytest.raises(UnknownTaskError):
            remote.explain("nope")
    finally:
        remote.close()
