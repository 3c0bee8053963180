"""Workflows against the plain reference interpreter, and replay determinism.

For random definitions and random task outcomes, a durable kernel driven to quiescence
(claim everything claimable, complete or dead-letter it per the outcome, else advance the
clock and tick) must end the run where ``tests/workflow_model.run_reference`` does: the same
status, and for a run that did not fail, the same context and step statuses.  Reopening the
directory (from the log alone, and from a snapshot taken mid-run) gives the live digest,
and ``Kernel.replay(until=N)`` gives the digest the live kernel had after N events;
``eskernel verify`` finds no violation in the log.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from hypothesis import given, settings, strategies as st

from eskernel import Kernel, ManualClock, StaleLeaseError
from eskernel.verify import verify_log
from eskernel.workflows import parse_definition
from tests.workflow_model import definitions, run_reference

START = 1_700_000_000.0


def outcome_for(seed: int):
    def outcome(task_id: str):
        h = int.from_bytes(hashlib.blake2b(f"{seed}:{task_id}".encode(),
                                           digest_size=8).digest(), "little")
        return None if h % 5 == 0 else {"v": (h // 5) % 4}
    return outcome


def drive(k: Kernel, clock: ManualClock, outcome, digests: dict[int, str],
          snapshot_at: int | None, toggles: list[bool], cancel_at: int | None = None) -> bool:
    """Run every claimable task to its outcome; advance time when none is; stop when a
    clock advance changes nothing.  ``toggles[i]``: pause (or resume) the run at round i
    of the first 30 (a paused run is resumed once nothing else moves), and signal a field
    no condition reads; neither may change where the run ends.  At round ``cancel_at`` the
    run is cancelled if it is not over; returns whether it was."""
    cancelled = False
    rounds = 0
    idle = 0
    while idle < 2:
        rounds += 1
        assert rounds < 500, "the kernel did not settle"
        status = k.workflow("run")["status"]
        if rounds == cancel_at and status in ("running", "paused"):
            k.cancel_workflow("run")
            digests[k.next_offset] = k.digest()
            cancelled = True
            status = "cancelled"
        if (toggles and rounds <= 30 and toggles[rounds % len(toggles)]
                and status in ("running", "paused")):
            if status == "running":
                k.pause_workflow("run")
                k.signal("run", "note", rounds)
            else:
                k.resume_workflow("run")
            digests[k.next_offset] = k.digest()
        leases = k.claim_many("a", 10_000)
        if not leases:
            if k.workflow("run")["status"] == "paused":
                k.resume_workflow("run")
                digests[k.next_offset] = k.digest()
                idle = 0
                continue
            before = k.next_offset
            clock.advance(1000.0)
            k.tick()
            digests[k.next_offset] = k.digest()
            idle = idle + 1 if k.next_offset == before else 0
            continue
        idle = 0
        for lease in leases:
            result = outcome(lease.task_id)
            try:
                if result is None:
                    k.fail(lease, "boom", retryable=False)
                else:
                    k.complete(lease, result)
            except StaleLeaseError:
                pass        # the run failed meanwhile and cancelled the task
            digests[k.next_offset] = k.digest()
            if snapshot_at is not None and len(digests) == snapshot_at:
                k.snapshot()
    return cancelled


@settings(max_examples=max(60, settings.default.max_examples))
@given(defn=definitions(), seed=st.integers(0, 2**32), snap=st.none() | st.integers(1, 12),
       toggles=st.lists(st.booleans(), max_size=5), cancel_at=st.none() | st.integers(1, 6))
def test_kernel_matches_reference_and_replays(defn, seed, snap, toggles, cancel_at):
    outcome = outcome_for(seed)
    want_status, want_ctx, want_steps = run_reference(defn, "run", outcome)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log"
        clock = ManualClock(start=START)
        k = Kernel.open(path, clock=clock, snapshot_every=0)
        k.declare_queue("q")
        k.register_agent("a", ["q"], capacity=10_000)
        digests = {k.next_offset: k.digest()}
        k.start_workflow(parse_definition(defn), id="run")
        digests[k.next_offset] = k.digest()
        cancelled = drive(k, clock, outcome, digests, snap, toggles, cancel_at)
        run = k.workflow("run")
        run["context"].pop("note", None)
        if cancelled:       # the run and every task it started are over
            assert run["status"] == "cancelled"
            assert all(t.status in ("COMPLETED", "FAILED", "CANCELLED") for t in k.tasks()
                       if t.id.startswith("run/"))
        else:
            assert run["status"] == want_status, (run["steps"], want_steps)
        if want_status != "failed" and not cancelled:
            assert run["context"] == want_ctx
            assert {p: s["status"] for p, s in run["steps"].items()} == want_steps
        assert k.check()
        digest, end = k.digest(), k.next_offset
        k.close()
        k2 = Kernel.open(path, clock=clock)
        try:
            assert k2.digest() == digest, "reopening changed the digest"
            again = k2.workflow("run")
            again["context"].pop("note", None)
            assert again == run
        finally:
            k2.close()
        result = verify_log(path)
        assert result.ok, result.violation
        for off in sorted(digests)[:: max(1, len(digests) // 4)] + [end]:
            r = Kernel.replay(path, until=off)
            try:
                assert r.digest() == digests[off], f"replay until {off} differs"
            finally:
                r.close()
