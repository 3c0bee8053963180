"""fsync mode for one caller: a claim is answered before it is on disk (it rides on the next
sync); lease ids are fenced across crashes by the epoch record; complete_and_claim
acknowledges a result and takes the next task in one round."""

import shutil

import pytest

from eskernel import Kernel, ManualClock, StaleLeaseError, events


def _open(path, clock):
    return Kernel.open(path, durability="fsync", clock=clock, snapshot_every=0)


def _on_disk(src, dest):
    # What a crash leaves: the files as they are now (the writer's buffer is lost).
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("LOCK"))
    return dest


def _types(k):
    return [events.decode(rec)["t"] for _, rec in k._log.read()]


def test_a_fresh_log_needs_no_epoch(tmp_path):
    with _open(tmp_path / "k", ManualClock()) as k:
        k.declare_queue("q")
        k.register_agent("w", ["q"])
        k.submit("q", id="a")
        assert k.claim("w").lease_id == 1
        assert "epoch" not in _types(k)


def test_a_claim_lost_in_a_crash_never_lends_its_lease_id_again(tmp_path):
    clock = ManualClock()
    with _open(tmp_path / "k", clock) as k:
        k.declare_queue("q")
        k.register_agent("w", ["q"], capacity=2)
        k.submit("q", id="a")
        k.submit("q", id="b")
    k = _open(tmp_path / "k", clock)
    lost = k.claim("w")                       # an epoch record goes to disk first
    assert (lost.task_id, lost.lease_id) == ("a", 1 << 32)
    crashed = _on_disk(tmp_path / "k", tmp_path / "crashed")
    k.close()
    with _open(crashed, clock) as k2:
        assert _types(k2)[-1] == "epoch"      # the claim itself was not on disk
        assert k2.task("a").status == "READY"  # a lost claim only returns the task
        again = k2.claim("w")
        assert again.task_id == "a" and again.lease_id == 2 << 32 != lost.lease_id
        with pytest.raises(StaleLeaseError):
            k2.complete(lost)
        k2.complete(again, "ok")
        digest = k2.digest()
    with Kernel.open(crashed) as k3:           # replay gives the same state
        assert k3.digest() == digest


def test_a_claim_becomes_durable_with_the_next_sync(tmp_path):
    clock = ManualClock()
    with _open(tmp_path / "k", clock) as k:
        k.declare_queue("q")
        k.register_agent("w", ["q"], capacity=2)
        k.submit("q", id="a")
        k.submit("q", id="b")
        lease = k.claim("w")
        k.submit("q", id="c")                  # acknowledged on disk: so is the claim
        crashed = _on_disk(tmp_path / "k", tmp_path / "crashed")
        k.complete(lease)
    with _open(crashed, clock) as k2:
        assert k2.task("a").status == "RUNNING"
        assert k2.task("c").status == "READY"


@pytest.mark.parametrize("durability", ["fsync", "write", "buffer"])
def test_complete_and_claim(tmp_path, durability):
    clock = ManualClock()
    with Kernel.open(tmp_path, durability=durability, clock=clock, snapshot_every=0) as k:
        k.declare_queue("q")
        k.register_agent("w", ["q"])
        ids = [k.submit("q", i) for i in range(3)]
        lease, done = k.claim("w"), []
        while lease is not None:
            done.append(lease.task_id)
            lease = k.complete_and_claim(lease, {"n": len(done)})
        assert done == ids
        assert [k.task(t).result for t in ids] == [{"n": 1}, {"n": 2}, {"n": 3}]
        digest = k.digest()
    with Kernel.open(tmp_path) as k:
        assert k.digest() == digest


def test_complete_and_claim_refuses_like_complete(tmp_path):
    clock = ManualClock()
    k = Kernel.in_memory(clock=clock)
    k.declare_queue("q")
    k.register_agent("w", ["q"])
    k.submit("q", id="a", timeout=1.0)
    k.submit("q", id="b")
    lease = k.claim("w")
    clock.advance(1.0)
    off = k.next_offset
    with pytest.raises(StaleLeaseError):      # expired: nothing completed, nothing claimed
        k.complete_and_claim(lease)
    assert k.next_offset == off and k.task("b").status == "READY"
    k2 = Kernel.in_memory(clock=ManualClock())
    k2.declare_queue("q")
    k2.register_agent("w", ["q"])
    k2.submit("q", id="a")
    k2.submit("q", id="b")
    lease = k2.claim("w")
    k2.agent_offline("w")
    assert k2.complete_and_claim(lease) is None   # the completion stands
    assert k2.task("a").status == "COMPLETED" and k2.task("b").status == "READY"
