"""Remote commands behave like in-process ones; parked claims, waits, event streams,
session heartbeats, retried requests and the Runtime over a Client."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from eskernel import (DuplicateTaskError, InvalidSpecError, Kernel, ManualClock, Runtime,
                      StaleLeaseError, UnknownQueueError, UnknownTaskError, WaitTimeoutError)
from eskernel.service import Client
from eskernel.service import protocol as P
from eskernel.service.run import ServerThread
from tests.service.helpers import RemoteKernel, quiet_config, raw_connect


@pytest.fixture(params=["write", "fsync"])
def served(tmp_path, sockdir, request):
    st = ServerThread(tmp_path / "log", unix=str(sockdir / "s"), durability=request.param)
    yield st
    st.stop()


@pytest.fixture
def client(served):
    c = Client(served.address, reconnect=2)
    c.declare_queue("q")
    c.register_agent("w", ["q"], 4)
    yield c
    c.close()


def test_every_task_spec_field_round_trips(client):
    client.declare_queue("other")
    client.register_agent("pin", ["q"], 1)
    up = client.submit("q", {"a": 1}, id="up")
    tid = client.submit("q", [1, "x", None], id="t1", name="render", priority=4,
                        depends_on=[up], max_attempts=5, timeout=12.5,
                        backoff={"initial": 0.5, "factor": 3.0, "max": 9.0, "jitter": 0.25},
                        delay=0.0, agent="pin", tags={"team": "a", "n": [1, 2]},
                        key="idem-1", parent="up")
    v = client.task(tid)
    assert (v.name, v.priority, v.depends_on, v.max_attempts, v.timeout, v.tags, v.key,
            v.parent, v.payload, v.status) == (
        "render", 4, ["up"], 5, 12.5, {"team": "a", "n": [1, 2]}, "idem-1", "up",
        [1, "x", None], "PENDING")
    # the idempotency key holds for the same task, and refuses another under it
    assert client.submit("q", [1, "x", None], name="render", key="idem-1") == "t1"
    with pytest.raises(DuplicateTaskError):
        client.submit("q", None, key="idem-1")
    ids = client.submit_many([{"queue": "q", "id": "m1"},
                              {"queue": "q", "id": "m2", "depends_on": ["m1"]}])
    assert ids == ["m1", "m2"]


def test_lifecycle_matches_in_process(client, tmp_path):
    local = Kernel.in_memory(clock=ManualClock())
    local.declare_queue("q")
    local.register_agent("w", ["q"], 4)
    for k in (client, local):
        k.submit("q", {"i": 1}, id="a", max_attempts=2, backoff={"initial": 60.0})
        k.submit("q", {"i": 2}, id="b")
        k.submit("q", id="c", depends_on=["b"])
        la = k.claim("w")
        assert la.task_id == "a" and la.attempt == 1
        k.heartbeat(la)
        k.fail(la, error="boom")
        lb = k.claim_many("w", 3)
        assert [x.task_id for x in lb][:1] == ["b"]
        k.complete_many(lb, [{"r": x.task_id} for x in lb])
        with pytest.raises(StaleLeaseError):
            k.complete(lb[0])
        k.tick()
    for tid in ("a", "b"):
        r, l_ = client.task(tid), local.task(tid)
        assert (r.status, r.attempts, r.result, r.error) == (l_.status, l_.attempts,
                                                             l_.result, l_.error)
    assert client.stats().counts.keys() == local.stats().counts.keys()


def test_errors_are_the_kernels(client):
    with pytest.raises(UnknownQueueError):
        client.submit("nope")
    with pytest.raises(UnknownTaskError):
        client.task("nope")
    with pytest.raises(InvalidSpecError):
        client.submit("q", priority="high")
    with pytest.raises(InvalidSpecError):
        client.submit("q", {1: 2})            # not JSON: a non-str key
    with pytest.raises(InvalidSpecError):
        client.complete("not a lease")
    before = client.next_offset
    with pytest.raises(StaleLeaseError):
        client.complete(type("L", (), {"lease_id": 99, "task_id": "nope"})())
    assert client.next_offset == before


def test_cancel_requeue_pause_resume_release(client):
    client.submit("q", id="x", max_attempts=1)
    client.pause_queue("q")
    assert client.claim("w") is None
    client.resume_queue("q")
    lease = client.claim("w")
    client.release(lease)
    lease = client.claim("w")
    client.fail(lease, "bad", retryable=False)
    assert client.task("x").status == "FAILED"
    assert [v.id for v in client.dead_letters()] == ["x"]
    client.requeue("x")
    assert client.task("x").status == "READY"
    assert client.cancel("x") == ["x"]
    assert [e["t"] for e in client.history("x")][0] == "submitted"


def test_parked_claim_wakes_on_submit_dependency_and_release(client, served):
    got: list = []

    def claim() -> None:
        got.append(client.claim("w", wait=20))

    t = threading.Thread(target=claim)
    t.start()
    with Client(served.address) as producer:
        producer.submit("q", id="p1")
    t.join(30)
    assert got[0].task_id == "p1"
    # dependency met: the dependent becomes READY when p1 completes
    client.submit("q", id="p2", depends_on=["p1"])
    t = threading.Thread(target=claim)
    t.start()
    client.complete(got[0])
    t.join(30)
    assert got[1].task_id == "p2"
    # released: the waiting claim gets the task back
    t = threading.Thread(target=claim)
    t.start()
    client.release(got[1])
    t.join(30)
    assert got[2].task_id == "p2" and got[2].lease_id != got[1].lease_id


def test_parked_claim_wakes_on_retry_due_and_lease_expiry(client, served):
    client.close()
    client = Client(served.address, heartbeat=False)    # leases expire: no heartbeat
    client.submit("q", id="r", timeout=0.3, max_attempts=3,
                  backoff={"initial": 0.2, "factor": 1.0, "max": 0.2})
    first = client.claim("w")
    client.fail(first, "again")
    second = client.claim("w", wait=20)          # the retry comes due on the server's tick
    assert (second.task_id, second.attempt) == ("r", 2)
    third = client.claim("w", wait=20)           # the lease expires, then the retry is due
    assert (third.task_id, third.attempt) == ("r", 3)
    with pytest.raises(StaleLeaseError):
        client.complete(second)
    client.close()


def test_claim_wait_times_out_with_none(client):
    assert client.claim("w", wait=0.05) is None
    assert client.claim_many("w", 3, wait=0.05) == []


def test_session_heartbeat_keeps_leases_of_a_blocked_worker(served):
    with Client(served.address, agents=["w"]) as c:
        c.declare_queue("q")
        c.register_agent("w", ["q"], 1)
        c.submit("q", id="long", timeout=0.6)
        lease = c.claim("w")
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:     # the caller's thread never heartbeats
            time.sleep(0.05)
        c.complete(lease, "done")               # the session heartbeat kept it alive
        assert c.task("long").status == "COMPLETED"


def test_a_vanished_worker_loses_its_leases_at_expiry(served):
    with Client(served.address, heartbeat=False) as w1, Client(served.address) as w2:
        w1.declare_queue("q")
        w1.register_agent("w1", ["q"], 1)
        w1.register_agent("w2", ["q"], 1)
        w1.submit("q", id="v", timeout=0.3)
        lease = w1.claim("w1")
        w1.close()                              # gone without a word
        again = w2.claim("w2", wait=20)
        assert (again.task_id, again.attempt) == ("v", 2)
        w2.complete(again)
        with Client(served.address) as w3, pytest.raises(StaleLeaseError):
            w3.complete(lease)


def test_wait_and_events(client, served):
    client.submit("q", id="e1")
    client.submit("q", id="e2")
    with pytest.raises(WaitTimeoutError):
        client.wait(["e1", "e2"], timeout=0.05)
    with Client(served.address) as watcher:
        stream = watcher.events(["completed"], timeout=10)
        for lease in client.claim_many("w", 2):
            client.complete(lease, lease.task_id)
        seen = [next(stream)["event"]["task"] for _ in range(2)]
    assert sorted(seen) == ["e1", "e2"]
    views = client.wait(["e1", "e2"], timeout=5)
    assert [v.result for v in views] == ["e1", "e2"]


def test_a_repeated_request_id_gets_the_first_reply_and_applies_once(served, client):
    s = raw_connect(served.address)
    s.sendall(P.preamble() + P.frame([1, "hello", {"client": "replayer"}]))
    buf = _read_frames(s, 1)
    assert buf[0][1] == P.OK
    submit = P.frame([2, "submit", {"spec": {"queue": "q"}}])
    s.sendall(submit)
    first = _read_frames(s, 1)[0]
    s.close()
    s = raw_connect(served.address)           # reconnect: the same client id
    s.sendall(P.preamble() + P.frame([1, "hello", {"client": "replayer"}]) + submit)
    again = _read_frames(s, 2)[1]
    s.close()
    assert first == again and first[1] == P.OK
    assert len(client.tasks()) == 1


def test_runtime_runs_unchanged_on_a_client(served):
    with Client(served.address) as c:
        c.declare_queue("thumbs")
        rt = Runtime(c, agents=[("rw", ["thumbs"], 4)], poll_interval=0.005)

        @rt.handler("thumbs")
        async def thumb(payload):
            return {"thumb": payload["img"] + ".small"}

        @rt.handler("boom", executor="thread")
        def boom(payload):
            raise ValueError("no")

        ids = c.submit_many([{"queue": "thumbs", "payload": {"img": f"i{n}"}}
                             for n in range(20)])
        bad = c.submit("thumbs", {}, name="boom", max_attempts=1)
        asyncio.run(rt.run_until_idle(timeout=30))
        rt.close()
        assert [v.result for v in c.wait(ids, timeout=5)][:2] == [{"thumb": "i0.small"},
                                                                   {"thumb": "i1.small"}]
        assert c.task(bad).status == "FAILED" and "ValueError" in c.task(bad).error


def test_client_reconnects_after_a_server_restart(tmp_path, sockdir):
    sock = str(sockdir / "r")
    st = ServerThread(tmp_path / "log", unix=sock)
    c = Client(st.address, reconnect=20)
    c.declare_queue("q")
    c.register_agent("w", ["q"], 1)
    c.submit("q", id="before")
    lease = c.claim("w")
    st.stop()
    st = ServerThread(tmp_path / "log", unix=sock)
    try:
        c.complete(lease, "after restart")    # a live lease from before the restart
        assert c.task("before").result == "after restart"
        assert c.reconnects == 1
    finally:
        c.close()
        st.stop()


def test_remote_kernel_helper_serves_a_manual_clock_kernel(sockdir):
    k = Kernel.in_memory(clock=ManualClock())
    rk = RemoteKernel(k, str(sockdir / "m"))
    try:
        rk.declare_queue("q")
        assert rk.digest() == rk._server.call(k.digest)
    finally:
        rk.close()
    assert quiet_config().tick_interval == 0


def _read_frames(s, n):
    out, buf = [], b""
    while len(out) < n:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
        while len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[:4], "big"):
            size = int.from_bytes(buf[:4], "big")
            out.append(P.decode(buf[4:4 + size], strict=False))
            buf = buf[4 + size:]
    return out


def test_a_handler_blocking_the_loop_keeps_its_lease(served):
    """The session heartbeat runs on the client's thread: a handler that blocks the
    runtime's event loop past its task's timeout still completes its task."""
    import time as _time
    with Client(served.address) as c:
        c.declare_queue("slow")
        rt = Runtime(c, agents=[("sw", ["slow"], 1)], poll_interval=0.005)

        @rt.handler("slow", executor="inline")
        def block(payload):
            _time.sleep(2.0)            # the loop is blocked: no runtime heartbeat
            return "done"

        tid = c.submit("slow", None, timeout=0.6)
        asyncio.run(rt.run_until_idle(timeout=30))
        rt.close()
        v = c.task(tid)
        assert (v.status, v.result, v.attempts) == ("COMPLETED", "done", 1)


def test_idle_wait_parks_claims_only_while_nothing_is_held(served, client):
    got: list = []
    with Client(served.address, idle_wait=20) as idle:
        t = threading.Thread(target=lambda: got.append(idle.claim("w")))
        t.start()                       # no wait given: parks, since it holds nothing
        client.submit("q", id="i1")
        t.join(30)
        assert got[0].task_id == "i1"
        assert idle.claim("w") is None  # holds i1: returns at once
        idle.complete(got[0])
