"""When an append fails, the kernel refuses further calls, and reopening
replays to the last durable event.  Nothing acknowledged is lost."""

import errno

import pytest

from eskernel import Kernel, KernelClosedError, KernelFailedError, LogWriteError, ManualClock


class _FailingAppend:
    """Wraps the log's append so that the next call raises the OS error ENOSPC."""

    def __init__(self, log):
        self.log = log
        self.armed = False

    def __call__(self, record):
        if self.armed:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.log.append(record)


def _kernel(tmp_path):
    k = Kernel.open(tmp_path, durability="write", clock=ManualClock(), snapshot_every=0)
    k.declare_queue("q")
    k.register_agent("w", ["q"], capacity=4)
    return k


@pytest.mark.parametrize("command", ["submit", "claim", "complete"])
def test_failed_append_poisons_the_kernel_and_reopen_recovers(tmp_path, command):
    k = _kernel(tmp_path)
    k.submit("q", id="a")
    k.submit("q", id="b")
    lease = k.claim("w")
    acknowledged = k.digest()
    offset = k.next_offset
    fault = _FailingAppend(k._log)
    k._append = fault
    fault.armed = True
    call = {"submit": lambda: k.submit("q", id="c"),
            "claim": lambda: k.claim("w"),
            "complete": lambda: k.complete(lease)}[command]
    with pytest.raises(KernelFailedError, match="No space left"):
        call()
    # every later call is refused, even reads of state that might be ahead of the log
    with pytest.raises(KernelFailedError, match="reopen"):
        k.submit("q", id="d")
    with pytest.raises(KernelFailedError):
        k.claim("w")
    assert isinstance(KernelFailedError("x"), LogWriteError)
    k.close()
    k2 = Kernel.open(tmp_path, clock=ManualClock())
    assert k2.next_offset == offset
    assert k2.digest() == acknowledged
    assert k2.task("a").status == "RUNNING"
    k2.close()


def test_a_failed_cancel_append_poisons_the_kernel_and_reopen_recovers(tmp_path):
    k = _kernel(tmp_path)
    k.submit("q", id="a")
    k.submit("q", id="b", depends_on=["a"])
    acknowledged, offset = k.digest(), k.next_offset

    def full(records):
        raise OSError(errno.ENOSPC, "No space left on device")
    k._log.append_many = full
    k._append = k._append              # rebind the core's appends (the batch one is `full`)
    with pytest.raises(KernelFailedError, match="No space left"):
        k.cancel("a")                  # one append for the task and its dependent
    with pytest.raises(KernelFailedError, match="reopen"):
        k.cancel("b")
    k.close()
    with Kernel.open(tmp_path, clock=ManualClock()) as k2:
        assert k2.next_offset == offset and k2.digest() == acknowledged
        assert k2.cancel("a") == ["a", "b"]


def test_closed_kernel_refuses_calls(tmp_path):
    k = _kernel(tmp_path)
    k.close()
    k.close()   # idempotent
    with pytest.raises(KernelClosedError, match="open it again"):
        k.submit("q")
    with pytest.raises(KernelClosedError):
        k.claim("w")


def test_replay_is_read_only(tmp_path):
    k = _kernel(tmp_path)
    k.submit("q", id="a")
    k.close()
    r = Kernel.replay(tmp_path)
    assert r.task("a").status == "READY"
    with pytest.raises(Exception, match="read-only replay"):
        r.submit("q")
    with pytest.raises(Exception, match="read-only replay"):
        r.claim("w")
    r.close()


def test_replay_until_offset_and_time(tmp_path):
    clock = ManualClock(start=100.0)
    k = Kernel.open(tmp_path, clock=clock, snapshot_every=0)
    k.declare_queue("q")
    k.register_agent("w", ["q"])
    k.submit("q", id="a")
    clock.advance(10)
    lease = k.claim("w")
    clock.advance(10)
    k.complete(lease, result=1)
    k.snapshot()
    k.close()
    assert Kernel.replay(tmp_path, until=3).task("a").status == "READY"
    assert Kernel.replay(tmp_path, until=4).task("a").status == "RUNNING"
    assert Kernel.replay(tmp_path, until_time=115.0).task("a").status == "RUNNING"
    assert Kernel.replay(tmp_path, until_time=120.0).task("a").status == "COMPLETED"
    assert Kernel.replay(tmp_path).task("a").result == 1


def test_complete_many_is_one_append_and_all_or_nothing(tmp_path):
    k = _kernel(tmp_path)
    for i in range(4):
        k.submit("q", id=f"t{i}")
    leases = k.claim_many("w", 4)
    k.complete(leases[3])
    before, offset = k.digest(), k.next_offset
    with pytest.raises(Exception, match="stale"):
        k.complete_many(leases, results=[1, 2, 3, 4])       # leases[3] is already done
    with pytest.raises(Exception, match="same lease twice"):
        k.complete_many([leases[0], leases[0]])
    with pytest.raises(Exception, match="one result per lease"):
        k.complete_many(leases[:3], results=[1])
    assert (k.digest(), k.next_offset) == (before, offset)
    k.complete_many(leases[:3], results=[{"n": 0}, None, "two"])
    assert [k.task(f"t{i}").result for i in range(3)] == [{"n": 0}, None, "two"]
    assert k.next_offset == offset + 3
    live = k.digest()
    k.close()
    assert Kernel.replay(tmp_path).digest() == live


class _CountingLog:
    """Forwards to the log; counts append_many calls and fails the one numbered ``fail_at``."""

    def __init__(self, log, fail_at=None):
        self.log, self.calls, self.fail_at = log, 0, fail_at

    def append_many(self, records):
        self.calls += 1
        if self.calls == self.fail_at:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.log.append_many(records)

    def __getattr__(self, name):
        return getattr(self.log, name)


def _expiring(tmp_path, n):
    clock = ManualClock()
    k = Kernel.open(tmp_path, durability="write", clock=clock, snapshot_every=0)
    k.declare_queue("q")
    k.register_agent("w", ["q"], capacity=n)
    k.submit_many([{"queue": "q", "id": f"t{i}", "timeout": 1.0} for i in range(n)])
    k.claim_many("w", n)
    clock.advance(5.0)
    return k


def test_tick_appends_a_burst_of_expiries_in_batches(tmp_path, monkeypatch):
    import eskernel._kernel as kmod
    monkeypatch.setattr(kmod, "TICK_BATCH", 16)
    k = _expiring(tmp_path, 40)
    before = k.next_offset
    counting = _CountingLog(k._log)
    k._log = counting
    assert k.tick() == {"expired": 40, "ready": 0}
    assert counting.calls == 3                      # 16 + 16 + 8 events
    assert k.next_offset == before + 40 == counting.log.next_offset
    live = k.digest()
    k._log = counting.log
    k.close()
    k2 = Kernel.open(tmp_path, clock=ManualClock())
    assert k2.digest() == live
    assert {t.status for t in k2.tasks()} == {"RETRYING"}
    k2.close()


def test_tick_whose_append_fails_poisons_and_keeps_the_durable_batches(tmp_path, monkeypatch):
    import eskernel._kernel as kmod
    monkeypatch.setattr(kmod, "TICK_BATCH", 16)
    k = _expiring(tmp_path, 40)
    before = k.next_offset
    counting = _CountingLog(k._log, fail_at=2)
    k._log = counting
    with pytest.raises(KernelFailedError, match="No space left"):
        k.tick()
    with pytest.raises(KernelFailedError):
        k.tick()
    k._log = counting.log
    k.close()
    k2 = Kernel.open(tmp_path, clock=ManualClock())
    assert k2.next_offset == before + 16            # the first batch is durable, no more
    statuses = [k2.task(f"t{i}").status for i in range(40)]
    assert statuses.count("RETRYING") == 16 and statuses.count("RUNNING") == 24
    k2.close()
