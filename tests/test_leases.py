"""Leases as fencing tokens: an expired lease is refused by complete and heartbeat whether
or not tick() has run, and a lease is honoured only by the kernel (the log) that issued it."""

import pytest

from eskernel import Kernel, LeaseExpiredError, ManualClock, StaleLeaseError


def _kernel(clock, path=None):
    k = (Kernel.in_memory(clock=clock) if path is None
         else Kernel.open(path, clock=clock, snapshot_every=0))
    k.declare_queue("q")
    k.register_agent("w", ["q"], capacity=4)
    return k


@pytest.mark.parametrize("call", ["complete", "heartbeat", "complete_many"])
@pytest.mark.parametrize("past", [0.0, 0.5])
def test_an_expired_lease_is_refused_before_tick_runs(call, past):
    clock = ManualClock(start=100.0)
    k = _kernel(clock)
    k.submit("q", id="a", timeout=2.0)
    lease = k.claim("w")
    clock.advance(2.0 + past)            # expiry == now is expired, as tick() sees it
    off, digest = k.next_offset, k.digest()
    do = {"complete": lambda: k.complete(lease, 1), "heartbeat": lambda: k.heartbeat(lease),
          "complete_many": lambda: k.complete_many([lease])}[call]
    with pytest.raises(LeaseExpiredError, match="expired at 102.0"):
        do()
    assert isinstance(LeaseExpiredError("x"), StaleLeaseError)
    assert k.next_offset == off and k.digest() == digest
    assert k.task("a").status == "RUNNING"
    assert k.tick()["expired"] == 1          # tick() then records the expiry
    with pytest.raises(StaleLeaseError):
        do()


def test_a_lease_just_before_its_expiry_is_honoured():
    clock = ManualClock(start=100.0)
    k = _kernel(clock)
    k.submit("q", id="a", timeout=2.0)
    lease = k.claim("w")
    clock.advance(1.999)
    assert k.heartbeat(lease) == pytest.approx(103.999)
    clock.advance(1.999)
    k.complete(lease, 7)
    assert k.task("a").result == 7


def test_replay_does_not_repeat_the_live_expiry_decision(tmp_path):
    clock = ManualClock(start=100.0)
    with _kernel(clock, tmp_path) as k:
        k.submit("q", id="a", timeout=2.0)
        lease = k.claim("w")
        clock.advance(1.5)
        k.complete(lease, 1)
        digest = k.digest()
    clock.advance(100.0)                      # long past the expiry: replay decides nothing
    with Kernel.open(tmp_path, clock=clock) as k:
        assert k.digest() == digest and k.task("a").status == "COMPLETED"


@pytest.mark.parametrize("durable", [False, True])
def test_a_lease_from_another_kernel_is_refused(tmp_path, durable):
    clock = ManualClock(start=10.0)
    one = _kernel(clock, tmp_path / "one" if durable else None)
    two = _kernel(clock, tmp_path / "two" if durable else None)
    for k in (one, two):
        k.submit("q", id="same")
    l1, l2 = one.claim("w"), two.claim("w")
    assert (l1.task_id, l1.lease_id) == (l2.task_id, l2.lease_id)
    off, digest = two.next_offset, two.digest()
    for call in (lambda: two.complete(l1), lambda: two.heartbeat(l1), lambda: two.release(l1),
                 lambda: two.fail(l1), lambda: two.complete_many([l1])):
        with pytest.raises(StaleLeaseError, match="not issued by this kernel"):
            call()
    assert two.next_offset == off and two.digest() == digest
    two.complete(l2)
    one.complete(l1)
    for k in (one, two):
        k.close()


def test_a_logged_lease_survives_a_clean_reopen(tmp_path):
    clock = ManualClock(start=10.0)
    with _kernel(clock, tmp_path) as k:
        k.submit("q", id="a")
        lease = k.claim("w")
    with Kernel.open(tmp_path, clock=clock) as k:
        k.complete(lease, "done")
        assert k.task("a").result == "done"
