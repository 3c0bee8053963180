"""Determinism: the log is the truth, and replaying it gives the state back exactly.

For hypothesis-generated workloads on ``Kernel.open(dir, durability="write")``:

* closing and reopening gives the same ``digest()``, and the same behaviour afterwards: a
  continuation workload gives the same results step by step (claims, errors, ids) on the
  reopened kernel as on a twin kernel that never closed;
* the same when snapshots are taken (``snapshot_every=`` small, or ``snapshot()`` mid-run);
* ``Kernel.replay(dir, until=N)`` is the state the live kernel had after its first N
  events (digests are recorded after every command as the workload runs).
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import example, given, settings, strategies as st

from eskernel import Kernel, Lease, ManualClock
from tests.strategies import Driver, workloads

START = 1_700_000_000.0


def norm(x):
    """A comparable form of a command's result: leases by value, errors by class."""
    if isinstance(x, Lease):
        return ("lease", x.lease_id, x.task_id, x.agent_id, x.attempt, x.expires_ns)
    if isinstance(x, list):
        return [norm(i) for i in x]
    if isinstance(x, Exception):
        return ("error", type(x).__name__)
    return x


def fresh_dir(base: Path) -> Path:
    """The log directory inside a fresh temporary directory (one per example)."""
    return base / "log"


def play_durable(path: Path, first: list[tuple], *, snapshot_every: int = 0,
                 snapshot_at: int | None = None, seed: int = 0):
    """Play ``first`` on a durable kernel; returns (kernel, driver, clock, digests by offset)."""
    clock = ManualClock(start=START)
    k = Kernel.open(path, durability="write", clock=clock, seed=seed,
                    snapshot_every=snapshot_every)
    digests = {k.next_offset: k.digest()}
    d = Driver(k, clock)
    d.setup()
    digests[k.next_offset] = k.digest()
    for i, cmd in enumerate(first):
        if i == snapshot_at:
            k.snapshot()
        d.step(cmd)
        digests[k.next_offset] = k.digest()
    return k, d, clock, digests


def check_reopen(tmp_path: Path, first, then, **opts) -> None:
    """Reopened kernel == a twin that never closed: same digest, same results afterwards."""
    path = fresh_dir(tmp_path)
    k, d, clock, _ = play_durable(path, first, **opts)
    twin_clock = ManualClock(start=START)
    twin = Kernel.in_memory(clock=twin_clock, seed=opts.get("seed", 0))
    td = Driver(twin, twin_clock)
    td.setup()
    td.play(first)
    assert twin.digest() == k.digest(), "durable and in-memory kernels diverged"
    digest, offset = k.digest(), k.next_offset
    k.close()

    k2 = Kernel.open(path, durability="write", clock=clock, seed=opts.get("seed", 0),
                     snapshot_every=opts.get("snapshot_every", 0))
    try:
        assert k2.next_offset == offset
        assert k2.digest() == digest, "reopening changed the digest"
        assert k2.check()
        d.kernel = k2            # keep the leases issued before the reopen
        for cmd in then:
            assert norm(d.step(cmd)) == norm(td.step(cmd)), f"diverged after reopen at {cmd!r}"
            assert k2.digest() == twin.digest()
    finally:
        k2.close()
        twin.close()


CONTINUATION = [("submit", 0, 2, [], 2, 1.0, None, False, None), ("claim", 0), ("claim", 1),
                ("advance", 1.5), ("tick",), ("claim", 2), ("complete", 0), ("fail", 1, True),
                ("claim_many", 0, 3), ("release", 2), ("cancel", 0), ("advance", 3.0),
                ("tick",), ("claim", 0), ("heartbeat", 3)]


@settings(max_examples=max(10, settings.default.max_examples // 2))
@given(first=workloads(max_size=40), then=workloads(max_size=25))
def test_reopen_without_snapshots(tmp_path_factory, first, then):
    check_reopen(tmp_path_factory.mktemp("reopen"), first, then + CONTINUATION)


@settings(max_examples=max(10, settings.default.max_examples // 2))
@given(first=workloads(max_size=40), then=workloads(max_size=25),
       every=st.integers(1, 12))
@example(first=[("submit", 0, 2, [], 1, 1.0, None, False, None)] * 2, then=[], every=3)
def test_reopen_with_periodic_snapshots(tmp_path_factory, first, then, every):
    check_reopen(tmp_path_factory.mktemp("snap"), first, then + CONTINUATION,
                 snapshot_every=every)


@settings(max_examples=max(10, settings.default.max_examples // 2))
@given(first=workloads(min_size=2, max_size=40), then=workloads(max_size=25),
       at=st.integers(0, 40))
def test_reopen_after_manual_snapshot(tmp_path_factory, first, then, at):
    check_reopen(tmp_path_factory.mktemp("manual"), first, then + CONTINUATION,
                 snapshot_at=at % len(first))


def check_replay_until(path: Path, digests: dict[int, str]) -> None:
    for offset, digest in sorted(digests.items()):
        r = Kernel.replay(path, until=offset)
        try:
            assert r.next_offset == offset
            assert r.digest() == digest, f"replay(until={offset}) is not the state at {offset}"
            assert r.check()
        finally:
            r.close()


@settings(max_examples=max(10, settings.default.max_examples // 2))
@given(first=workloads(max_size=40))
def test_replay_until_gives_the_state_at_that_offset(tmp_path_factory, first):
    path = fresh_dir(tmp_path_factory.mktemp("until"))
    k, _, _, digests = play_durable(path, first)
    try:
        check_replay_until(path, digests)     # while the writer is open
    finally:
        k.close()
    check_replay_until(path, {max(digests): digests[max(digests)]})


@settings(max_examples=max(10, settings.default.max_examples // 2))
@given(first=workloads(max_size=40), every=st.integers(1, 12))
@example(first=[("submit", 0, 2, [], 1, 1.0, None, False, None)] * 2, every=3)
def test_replay_until_with_snapshots(tmp_path_factory, first, every):
    path = fresh_dir(tmp_path_factory.mktemp("until-snap"))
    k, _, _, digests = play_durable(path, first, snapshot_every=every)
    k.close()
    check_replay_until(path, digests)


def test_reopen_keeps_the_digest_when_two_agents_share_a_queue(tmp_logdir, manual_clock):
    """Minimal: no snapshot, three events.  The state after reopening is equal field by
    field, so the digest must be equal too."""
    k = Kernel.open(tmp_logdir, durability="write", clock=manual_clock, snapshot_every=0)
    k.declare_queue("q")
    k.register_agent("a", ["q"])
    k.register_agent("b", ["q"])
    digest = k.digest()
    k.close()
    with Kernel.open(tmp_logdir, clock=manual_clock, snapshot_every=0) as k2:
        assert k2.digest() == digest


def test_snapshot_then_one_submit_reopens_to_the_same_digest(tmp_logdir, manual_clock):
    """Minimal: a snapshot after 3 events, one more submit, reopen."""
    k = Kernel.open(tmp_logdir, durability="write", clock=manual_clock, snapshot_every=3)
    k.declare_queue("q")
    k.register_agent("a", ["q"])
    k.submit("q", id="one")
    k.submit("q", id="two")
    digest = k.digest()
    k.close()
    with Kernel.open(tmp_logdir, clock=manual_clock) as k2:
        assert [t.id for t in k2.tasks()] == ["one", "two"]
        assert k2.check()
        assert k2.digest() == digest


def test_task_submitted_after_loading_a_snapshot_passes_check(tmp_logdir, manual_clock):
    """A task submitted after the kernel was restored from a snapshot must not look like
    it sits in the timer heap (the invariant checker says it does)."""
    k = Kernel.open(tmp_logdir, durability="write", clock=manual_clock, snapshot_every=0)
    k.declare_queue("q")
    k.register_agent("a", ["q"])
    k.submit("q", id="before")
    k.snapshot()
    k.close()
    with Kernel.open(tmp_logdir, clock=manual_clock) as k2:
        k2.submit("q", id="after")
        assert k2.check()


def test_delayed_task_still_becomes_ready_after_snapshot_reopen_and_cancel(tmp_logdir,
                                                                          manual_clock):
    """User-visible effect of the same defect: cancelling a dependency-waiting task that
    was submitted after a snapshot load removes *another* task's delay timer, so that
    task never becomes READY."""
    k = Kernel.open(tmp_logdir, durability="write", clock=manual_clock, snapshot_every=0)
    k.declare_queue("q")
    k.register_agent("a", ["q"])
    k.submit("q", id="delayed", delay=10.0)
    k.submit("q", id="parent")
    k.snapshot()
    k.close()
    with Kernel.open(tmp_logdir, clock=manual_clock) as k2:
        k2.submit("q", id="child", depends_on=["parent"])
        assert k2.cancel("child") == ["child"]
        manual_clock.advance(11.0)
        assert k2.tick() == {"expired": 0, "ready": 1}
        assert k2.task("delayed").status == "READY"


def test_in_memory_and_durable_kernels_agree(tmp_logdir):
    """The storage never changes decisions: the same commands give the same digest."""
    cmds = [("submit", 0, 3, [], 2, 1.0, None, False, None),
            ("submit", 1, 1, [0], 1, 2.0, 0.5, True, None),
            ("claim", 0), ("advance", 2.0), ("tick",), ("claim", 0), ("complete", 1),
            ("advance", 1.0), ("tick",), ("claim", 0), ("fail", 2, False)]
    c1, c2 = ManualClock(start=START), ManualClock(start=START)
    mem = Kernel.in_memory(clock=c1)
    dur = Kernel.open(tmp_logdir, clock=c2)
    d1, d2 = Driver(mem, c1), Driver(dur, c2)
    d1.setup()
    d2.setup()
    for cmd in cmds:
        assert norm(d1.step(cmd)) == norm(d2.step(cmd))
    assert mem.digest() == dur.digest()
    dur.close()
