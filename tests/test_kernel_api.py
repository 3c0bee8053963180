"""The public calls of ``Kernel``, end to end, one concept per test.

Read top to bottom, these double as documentation: each test sets up the least it needs on
an in-memory kernel with a manual clock (fixtures in conftest.py) and shows one behaviour.
"""

from __future__ import annotations

import pytest

from eskernel import (AgentAtCapacityError, AgentOfflineError, DependencyError, DuplicateTaskError,
                      InvalidStateError,
                    Kernel, KernelClosedError, Lease, ManualClock, Priority, StaleLeaseError,
                    TaskSpec)

NOW = 1_700_000_000.0


@pytest.fixture
def k(kernel):
    """The in-memory kernel with one queue "q" and one agent "w" (capacity 1) serving it."""
    kernel.declare_queue("q")
    kernel.register_agent("w", capabilities=["q"])
    return kernel


# --- queues and agents --------------------------------------------------------------------

def test_declaring_a_queue_again_with_the_same_values_writes_nothing(kernel):
    kernel.declare_queue("q", max_concurrent=2)
    before = kernel.next_offset
    kernel.declare_queue("q", max_concurrent=2)
    assert kernel.next_offset == before


def test_declaring_a_queue_again_with_other_values_updates_it(kernel):
    kernel.declare_queue("q", max_concurrent=2)
    kernel.declare_queue("q", max_concurrent=5, paused=True)
    q = next(q for q in kernel.stats().queues if q.name == "q")
    assert (q.max_concurrent, q.paused) == (5, True)


def test_registering_an_agent_again_with_the_same_spec_is_a_no_op(k):
    before = k.next_offset
    k.register_agent("w", capabilities=["q"])
    assert k.next_offset == before


def test_registering_an_agent_again_with_another_spec_is_refused(k):
    with pytest.raises(InvalidStateError):
        k.register_agent("w", capabilities=["q"], capacity=2)


# --- submit and claim ---------------------------------------------------------------------

def test_claim_returns_a_lease_on_the_task(k, manual_clock):
    tid = k.submit("q", {"frame": 7}, timeout=30.0)
    lease = k.claim("w")
    assert isinstance(lease, Lease)
    assert (lease.task_id, lease.agent_id, lease.attempt, lease.lease_id) == (tid, "w", 1, 1)
    assert lease.expires_at == NOW + 30.0
    view = k.task(tid)
    assert (view.status, view.attempts, view.agent, view.lease_id) == ("RUNNING", 1, "w", 1)
    assert view.payload == {"frame": 7}


def test_lease_expires_at_equals_the_task_views(k, manual_clock):
    """Lease.expires_at and TaskView.expires_at describe the same instant: equal floats."""
    manual_clock.advance(0.25)
    k.submit("q", timeout=2.0)
    lease = k.claim("w")
    assert lease.expires_at == k.task(lease.task_id).expires_at == NOW + 2.25


def test_claim_returns_none_when_nothing_is_ready(k):
    assert k.claim("w") is None


def test_higher_priority_is_claimed_first(k):
    k.submit("q", id="low", priority=Priority.LOW)
    k.submit("q", id="urgent", priority=Priority.URGENT)
    k.submit("q", id="raw-int", priority=900)
    k.register_agent("big", capabilities=["q"], capacity=3)
    assert [le.task_id for le in k.claim_many("big", 3)] == ["raw-int", "urgent", "low"]


def test_equal_priorities_are_claimed_in_submission_order(k):
    k.register_agent("big", capabilities=["q"], capacity=3)
    for name in ("first", "second", "third"):
        k.submit("q", id=name)
    assert [le.task_id for le in k.claim_many("big", 3)] == ["first", "second", "third"]


def test_claim_many_gives_what_single_claims_would(k):
    k.register_agent("big", capabilities=["q"], capacity=2)
    k.submit("q", id="a")
    k.submit("q", id="b")
    k.submit("q", id="c")
    leases = k.claim_many("big", 5)
    assert [le.task_id for le in leases] == ["a", "b"]        # capped by capacity
    assert [le.lease_id for le in leases] == [1, 2]


def test_generated_task_ids(k):
    assert k.submit("q") == "t-0"
    assert k.submit("q") == "t-1"


def test_a_generated_id_never_collides_with_a_callers_id(k):
    k.submit("q", id="t-1")
    first = k.submit("q")
    second = k.submit("q")
    assert len({"t-1", first, second}) == 3


def test_idempotency_key_returns_the_first_id_and_writes_nothing(k):
    tid = k.submit("q", {"n": 1}, key="order-42")
    before = k.next_offset
    assert k.submit("q", {"n": 1}, key="order-42") == tid
    assert k.next_offset == before
    with pytest.raises(DuplicateTaskError, match="order-42"):   # another spec: refused
        k.submit("q", {"n": 2}, key="order-42")
    assert k.next_offset == before
    assert k.task(tid).payload == {"n": 1}


# --- routing: pinning, limits, capacity, offline agents, paused queues -----------------

def test_a_pinned_task_is_claimed_only_by_its_agent(k):
    k.register_agent("gpu", capabilities=["q"])
    k.submit("q", id="pinned", agent="gpu", priority=Priority.CRITICAL)
    k.submit("q", id="free")
    assert k.claim("w").task_id == "free"
    assert k.claim("gpu").task_id == "pinned"


def test_max_concurrent_limits_running_tasks_per_queue(kernel):
    kernel.declare_queue("q", max_concurrent=1)
    kernel.register_agent("w", capabilities=["q"], capacity=5)
    kernel.submit("q")
    kernel.submit("q")
    assert kernel.claim("w") is not None
    assert kernel.claim("w") is None                   # the queue is at its limit


def test_an_agent_at_capacity_cannot_claim(k):
    k.submit("q")
    k.submit("q")
    k.claim("w")
    with pytest.raises(AgentAtCapacityError):
        k.claim("w")


def test_an_offline_agent_cannot_claim_but_keeps_its_leases(k):
    k.submit("q", id="a")
    k.submit("q", id="b")
    lease = k.claim("w")
    k.agent_offline("w")
    with pytest.raises(AgentOfflineError):
        k.claim("w")
    k.complete(lease)                                  # its lease is still valid
    assert k.task("a").status == "COMPLETED"
    k.agent_online("w")
    assert k.claim("w").task_id == "b"


def test_a_paused_queue_keeps_its_tasks_ready_but_unclaimed(k):
    tid = k.submit("q")
    k.pause_queue("q")
    assert k.claim("w") is None
    assert k.task(tid).status == "READY"
    k.resume_queue("q")
    assert k.claim("w").task_id == tid


# --- completion and dependencies --------------------------------------------------------

def test_complete_records_the_result(k):
    tid = k.submit("q")
    k.complete(k.claim("w"), result={"ok": True})
    view = k.task(tid)
    assert (view.status, view.result, view.lease_id) == ("COMPLETED", {"ok": True}, None)
    assert view.finished_at == NOW


def test_a_dependent_waits_for_all_its_dependencies(k):
    k.submit("q", id="a")
    k.submit("q", id="b")
    k.submit("q", id="c", depends_on=["a", "b"], priority=Priority.CRITICAL)
    assert k.task("c").status == "PENDING"
    k.complete(k.claim("w"))                           # a
    assert k.task("c").status == "PENDING"
    k.complete(k.claim("w"))                           # b
    assert k.task("c").status == "READY"
    assert k.claim("w").task_id == "c"


def test_depending_on_a_completed_task_is_ready_at_once(k):
    k.submit("q", id="a")
    k.complete(k.claim("w"))
    k.submit("q", id="b", depends_on=["a"])
    assert k.task("b").status == "READY"


def test_submit_many_allows_forward_references_and_orders_topologically(k):
    ids = k.submit_many([
        {"queue": "q", "id": "report", "depends_on": ["extract"]},
        TaskSpec(queue="q", id="unrelated"),
        {"queue": "q", "id": "extract"},
    ])
    assert ids == ["report", "unrelated", "extract"]   # input order
    assert k.task("report").status == "PENDING"
    # submission order is input order, except that "report" moved after "extract"
    assert k.claim("w").task_id == "unrelated"


def test_submit_many_rejects_a_cycle_and_submits_nothing(k):
    with pytest.raises(DependencyError, match="cycle"):
        k.submit_many([{"queue": "q", "id": "a", "depends_on": ["b"]},
                       {"queue": "q", "id": "b", "depends_on": ["a"]}])
    assert k.tasks() == []


# --- failure, retries, expiry -------------------------------------------------------------

def test_a_retryable_failure_waits_out_its_backoff(k, manual_clock):
    tid = k.submit("q", backoff={"initial": 2.0, "factor": 3.0, "max": 60.0})
    k.fail(k.claim("w"), error="flaky")
    view = k.task(tid)
    assert (view.status, view.error, view.due_at) == ("RETRYING", "flaky", NOW + 2.0)
    manual_clock.advance(1.0)
    assert k.tick() == {"expired": 0, "ready": 0}
    manual_clock.advance(1.0)
    assert k.tick() == {"expired": 0, "ready": 1}
    assert k.claim("w").attempt == 2


def test_backoff_grows_exponentially_up_to_its_cap(k, manual_clock):
    tid = k.submit("q", max_attempts=4, backoff={"initial": 1.0, "factor": 3.0, "max": 5.0})
    delays = []
    for _ in range(3):
        k.fail(k.claim("w"), error="again")
        delays.append(k.task(tid).due_at - manual_clock.now())
        manual_clock.advance(delays[-1])
        k.tick()
    assert delays == [1.0, 3.0, 5.0]                  # 1, 3, then 9 capped at 5


def test_zero_backoff_makes_the_task_ready_at_once(k):
    tid = k.submit("q", backoff={"initial": 0.0})
    k.fail(k.claim("w"))
    assert k.task(tid).status == "READY"


def test_jitter_shortens_the_delay_reproducibly(manual_clock):
    def due_after_one_failure(seed):
        clock = ManualClock(start=NOW)
        kk = Kernel.in_memory(clock=clock, seed=seed)
        kk.declare_queue("q")
        kk.register_agent("w", ["q"])
        tid = kk.submit("q", backoff={"initial": 10.0, "jitter": 0.5})
        kk.fail(kk.claim("w"))
        return kk.task(tid).due_at - NOW

    delay = due_after_one_failure(seed=7)
    assert 5.0 <= delay <= 10.0
    assert due_after_one_failure(seed=7) == delay


def test_exhausted_attempts_dead_letter_the_task(k):
    tid = k.submit("q", max_attempts=1)
    k.fail(k.claim("w"), error="boom")
    view = k.task(tid)
    assert (view.status, view.dead_lettered, view.error) == ("FAILED", True, "boom")


def test_a_non_retryable_failure_dead_letters_and_cancels_dependents(k):
    k.submit("q", id="root")
    k.submit("q", id="child", depends_on=["root"])
    k.submit("q", id="grandchild", depends_on=["child"])
    k.fail(k.claim("w"), error="fatal", retryable=False)
    assert k.task("root").status == "FAILED"
    for tid in ("child", "grandchild"):
        view = k.task(tid)
        assert (view.status, view.cancelled_upstream) == ("CANCELLED", True)


def test_an_expired_lease_counts_as_a_failed_attempt(k, manual_clock):
    tid = k.submit("q", timeout=5.0, backoff={"initial": 0.0})
    k.claim("w")
    manual_clock.advance(5.0)
    assert k.tick() == {"expired": 1, "ready": 0}
    view = k.task(tid)
    assert (view.status, view.attempts) == ("READY", 1)
    assert "expired" in view.error


def test_an_expired_lease_records_the_error_text_lease_expired(k, manual_clock):
    """The API contract names the error of an expired attempt: "lease expired"."""
    tid = k.submit("q", timeout=1.0)
    k.claim("w")
    manual_clock.advance(1.0)
    k.tick()
    assert k.task(tid).error == "lease expired"


def test_a_stale_lease_is_refused_after_expiry_and_reclaim(k, manual_clock):
    k.submit("q", timeout=1.0, backoff={"initial": 0.0})
    old = k.claim("w")
    manual_clock.advance(1.0)
    k.tick()
    new = k.claim("w")
    assert new.lease_id > old.lease_id
    with pytest.raises(StaleLeaseError):
        k.complete(old)
    k.complete(new)


def test_heartbeat_extends_the_lease(k, manual_clock):
    tid = k.submit("q", timeout=10.0)
    lease = k.claim("w")
    manual_clock.advance(8.0)
    assert k.heartbeat(lease) == NOW + 18.0
    manual_clock.advance(8.0)
    assert k.tick()["expired"] == 0
    assert k.task(tid).expires_at == NOW + 18.0


def test_release_gives_the_attempt_back(k):
    tid = k.submit("q")
    k.release(k.claim("w"))
    assert (k.task(tid).status, k.task(tid).attempts) == ("READY", 0)
    assert k.claim("w").attempt == 1


def test_completing_twice_is_a_stale_lease(k):
    k.submit("q")
    lease = k.claim("w")
    k.complete(lease)
    with pytest.raises(StaleLeaseError):
        k.complete(lease)


# --- delays, cancel, requeue --------------------------------------------------------------

def test_delay_and_not_before_hold_a_task_back_until_tick(k, manual_clock):
    k.submit("q", id="later", delay=5.0)
    k.submit("q", id="at", not_before=NOW + 3.0)
    assert k.claim("w") is None
    manual_clock.advance(3.0)
    assert k.tick() == {"expired": 0, "ready": 1}
    assert k.task("at").status == "READY" and k.task("later").status == "PENDING"


def test_cancel_cascades_to_dependents_and_returns_the_ids(k):
    k.submit("q", id="a", delay=60.0)
    k.submit("q", id="b", depends_on=["a"])
    k.submit("q", id="c", depends_on=["b"])
    assert k.cancel("a") == ["a", "b", "c"]
    assert (k.task("a").cancelled_upstream, k.task("c").cancelled_upstream) == (False, True)


def test_cancelling_a_running_task_revokes_its_lease(k):
    tid = k.submit("q")
    lease = k.claim("w")
    k.cancel(tid)
    with pytest.raises(StaleLeaseError):
        k.complete(lease)
    assert k.stats().agents[0].active == 0


def test_cancelling_a_finished_task_is_refused(k):
    tid = k.submit("q")
    k.complete(k.claim("w"))
    with pytest.raises(InvalidStateError):
        k.cancel(tid)


def test_requeue_brings_a_failed_task_back_with_fresh_attempts(k):
    k.submit("q", id="job", max_attempts=1)
    k.submit("q", id="after", depends_on=["job"])
    k.fail(k.claim("w"))
    k.requeue("job")
    assert (k.task("job").status, k.task("job").attempts) == ("READY", 0)
    assert k.task("job").dead_lettered is False
    assert k.task("after").status == "CANCELLED"       # its cancelled dependents stay so


def test_only_failed_tasks_can_be_requeued(k):
    tid = k.submit("q")
    with pytest.raises(InvalidStateError):
        k.requeue(tid)


# --- views and lifecycle ------------------------------------------------------------------

def test_tasks_filters_by_status_queue_and_agent(k):
    k.declare_queue("other")
    k.submit("q", id="a")
    k.submit("q", id="b")
    k.submit("other", id="c")
    k.claim("w")
    assert [t.id for t in k.tasks()] == ["a", "b", "c"]
    assert [t.id for t in k.tasks(status="READY")] == ["b", "c"]
    assert [t.id for t in k.tasks(queue="other")] == ["c"]
    assert [t.id for t in k.tasks(agent="w")] == ["a"]


def test_stats_counts_tasks_by_status(k):
    k.submit("q")
    k.submit("q")
    k.claim("w")
    s = k.stats()
    assert (s.counts["RUNNING"], s.counts["READY"], s.tasks) == (1, 1, 2)
    assert s.agents[0].active == 1 and s.queues[0].running == 1


def test_history_lists_a_tasks_events_in_order(k):
    tid = k.submit("q")
    k.complete(k.claim("w"), result=1)
    assert [ev["t"] for ev in k.history(tid)] == ["submitted", "claimed", "completed"]


def test_the_digest_follows_the_state(k):
    before = k.digest()
    k.submit("q")
    assert k.digest() != before


def test_equal_command_sequences_give_equal_digests():
    def run():
        kk = Kernel.in_memory(clock=ManualClock(start=NOW), seed=3)
        kk.declare_queue("q")
        kk.register_agent("w", ["q"])
        kk.submit("q", {"x": 1})
        kk.fail(kk.claim("w"), error="e")
        return kk.digest()

    assert run() == run()


def test_check_runs_the_invariant_checker(k):
    k.submit("q")
    k.claim("w")
    assert k.check() is True


def test_a_closed_kernel_refuses_commands(k):
    k.close()
    with pytest.raises(KernelClosedError):
        k.submit("q")


def test_durable_kernel_reopens_with_its_tasks(tmp_logdir, manual_clock):
    with Kernel.open(tmp_logdir, durability="write", clock=manual_clock) as kk:
        kk.declare_queue("q")
        kk.submit("q", id="kept", payload={"a": 1})
    with Kernel.open(tmp_logdir, clock=manual_clock) as kk:
        assert kk.task("kept").payload == {"a": 1}


def test_replay_until_an_offset_is_a_read_only_past_state(tmp_logdir, manual_clock):
    with Kernel.open(tmp_logdir, clock=manual_clock) as kk:
        kk.declare_queue("q")
        kk.submit("q", id="one")
        offset = kk.next_offset
        kk.submit("q", id="two")
    past = Kernel.replay(tmp_logdir, until=offset)
    try:
        assert [t.id for t in past.tasks()] == ["one"]
        with pytest.raises(InvalidStateError):
            past.submit("q")
    finally:
        past.close()


def test_the_common_calls_run_in_the_core_unless_a_subclass_overrides_them():
    from eskernel import Kernel as K, ManualClock as MC

    class Counting(K):
        claims = 0

        def claim(self, agent_id):
            Counting.claims += 1
            return super().claim(agent_id)

    plain = K.in_memory(clock=MC())
    assert plain.submit.__self__ is plain._sched      # the core's entry point
    k = Counting.in_memory(clock=MC())
    k.declare_queue("q")
    k.register_agent("w", ["q"])
    k.submit("q", id="a")
    assert k.claim("w").task_id == "a" and Counting.claims == 1
