"""Every bad input is rejected with its own typed error, and changes nothing.

Each test goes through :func:`rejects`, which asserts the exact error class, a non-empty
message, and that neither the log (``next_offset``) nor the state (``digest()``) moved.
"""

from __future__ import annotations

import math

import pytest

from eskernel import (AgentAtCapacityError, AgentOfflineError, DependencyError,
                    DuplicateTaskError, InvalidSpecError, InvalidStateError, Kernel,
                    ManualClock, StaleLeaseError, UnknownAgentError, UnknownQueueError,
                    UnknownTaskError)


def rejects(k, error, call):
    """Run ``call``; it must raise exactly ``error`` and leave log and state untouched."""
    offset, digest = k.next_offset, k.digest()
    with pytest.raises(error) as info:
        call()
    assert type(info.value) is error, f"expected {error.__name__}, got {info.value!r}"
    message = str(info.value)
    assert message and not message.startswith("("), f"unhelpful message {message!r}"
    assert k.next_offset == offset, "a rejected call wrote an event"
    assert k.digest() == digest, "a rejected call changed the state"
    assert k.check()
    return info.value


@pytest.fixture
def k(kernel):
    kernel.declare_queue("q")
    kernel.register_agent("w", capabilities=["q"])
    kernel.submit("q", id="existing")
    return kernel


# --- unknown names ---------------------------------------------------------------------

def test_submit_to_an_unknown_queue(k):
    rejects(k, UnknownQueueError, lambda: k.submit("nope"))


def test_register_an_agent_for_an_unknown_queue(k):
    rejects(k, UnknownQueueError, lambda: k.register_agent("new", capabilities=["nope"]))


def test_pause_an_unknown_queue(k):
    rejects(k, UnknownQueueError, lambda: k.pause_queue("nope"))


def test_claim_for_an_unknown_agent(k):
    rejects(k, UnknownAgentError, lambda: k.claim("ghost"))


def test_claim_many_for_an_unknown_agent(k):
    rejects(k, UnknownAgentError, lambda: k.claim_many("ghost", 2))


def test_pin_a_task_to_an_unknown_agent(k):
    rejects(k, UnknownAgentError, lambda: k.submit("q", agent="ghost"))


def test_take_an_unknown_agent_offline(k):
    rejects(k, UnknownAgentError, lambda: k.agent_offline("ghost"))


def test_pin_a_task_to_an_agent_that_does_not_serve_the_queue(k):
    k.declare_queue("other")
    rejects(k, InvalidSpecError, lambda: k.submit("other", agent="w"))


def test_cancel_an_unknown_task(k):
    rejects(k, UnknownTaskError, lambda: k.cancel("ghost"))


def test_requeue_an_unknown_task(k):
    rejects(k, UnknownTaskError, lambda: k.requeue("ghost"))


def test_look_up_an_unknown_task(k):
    rejects(k, UnknownTaskError, lambda: k.task("ghost"))


def test_depend_on_an_unknown_task(k):
    rejects(k, UnknownTaskError, lambda: k.submit("q", depends_on=["ghost"]))


def test_complete_with_a_lease_from_another_kernel(k):
    other = Kernel.in_memory(clock=ManualClock())
    other.declare_queue("q")
    other.register_agent("w", ["q"])
    other.submit("q", id="elsewhere")
    foreign = other.claim("w")
    rejects(k, StaleLeaseError, lambda: k.complete(foreign))


def test_complete_with_something_that_is_not_a_lease(k):
    rejects(k, InvalidSpecError, lambda: k.complete({"lease_id": 1, "task_id": "existing"}))


# --- duplicates and dependency shapes ----------------------------------------------------

def test_duplicate_task_id(k):
    rejects(k, DuplicateTaskError, lambda: k.submit("q", id="existing"))


def test_duplicate_task_id_inside_a_batch(k):
    rejects(k, DuplicateTaskError, lambda: k.submit_many(
        [{"queue": "q", "id": "x"}, {"queue": "q", "id": "x"}]))


def test_dependency_cycle_in_a_batch(k):
    rejects(k, DependencyError, lambda: k.submit_many([
        {"queue": "q", "id": "a", "depends_on": ["c"]},
        {"queue": "q", "id": "b", "depends_on": ["a"]},
        {"queue": "q", "id": "c", "depends_on": ["b"]},
    ]))


def test_self_dependency(k):
    rejects(k, DependencyError, lambda: k.submit("q", id="me", depends_on=["me"]))


def test_self_dependency_in_a_batch(k):
    rejects(k, DependencyError, lambda: k.submit_many(
        [{"queue": "q", "id": "me", "depends_on": ["me"]}]))


def test_dependency_on_a_failed_task(k):
    k.submit("q", id="doomed", max_attempts=1, priority=1000)
    k.fail(k.claim("w"), retryable=False)
    assert k.task("doomed").status == "FAILED"
    rejects(k, DependencyError, lambda: k.submit("q", depends_on=["doomed"]))


def test_dependency_on_a_cancelled_task(k):
    k.cancel("existing")
    rejects(k, DependencyError, lambda: k.submit("q", depends_on=["existing"]))


def test_a_rejected_batch_submits_none_of_its_tasks(k):
    rejects(k, UnknownQueueError, lambda: k.submit_many(
        [{"queue": "q", "id": "fine"}, {"queue": "nope", "id": "bad"}]))
    rejects(k, UnknownTaskError, lambda: k.task("fine"))


# --- wrong types and values ----------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    {"queue": 5},
    {"priority": "high"},
    {"priority": 2.0},
    {"priority": True},
    {"timeout": "30"},
    {"max_attempts": 1.5},
    {"max_attempts": 0},
    {"depends_on": "existing"},
    {"id": ""},
    {"id": "has space"},
    {"id": "x" * 201},
    {"id": 7},
    {"tags": ["not", "a", "dict"]},
    {"backoff": {"factor": 0.5}},
    {"backoff": {"jitter": 1.5}},
    {"backoff": "fast"},
    {"delay": -1.0},
    {"name": 3},
], ids=lambda kw: repr(kw)[:40])
def test_wrong_types_and_values_in_submit(k, kwargs):
    kwargs = dict(kwargs)
    queue = kwargs.pop("queue", "q")
    rejects(k, InvalidSpecError, lambda: k.submit(queue, **kwargs))


@pytest.mark.parametrize("call", [
    lambda k: k.declare_queue("q", max_concurrent=-1),
    lambda k: k.declare_queue("q", paused="yes"),
    lambda k: k.declare_queue("bad name"),
    lambda k: k.register_agent("new", capabilities="q"),
    lambda k: k.register_agent("new", capabilities=["q"], capacity=0),
    lambda k: k.claim_many("w", 0),
    lambda k: k.tasks(status="DONE"),
    lambda k: k.submit_many([42]),
    lambda k: k.submit_many([{"queue": "q", "colour": "red"}]),
], ids=["max_concurrent<0", "paused-str", "queue-name", "caps-str", "capacity-0", "n-0",
        "status-name", "spec-int", "spec-unknown-key"])
def test_wrong_types_and_values_elsewhere(k, call):
    rejects(k, InvalidSpecError, lambda: call(k))


@pytest.mark.parametrize("priority", [-1, 1001, 10**9])
def test_priority_out_of_range(k, priority):
    rejects(k, InvalidSpecError, lambda: k.submit("q", priority=priority))


@pytest.mark.parametrize("timeout", [-1.0, 0.0, math.nan, math.inf])
def test_negative_zero_nan_or_infinite_timeout(k, timeout):
    rejects(k, InvalidSpecError, lambda: k.submit("q", timeout=timeout))


@pytest.mark.parametrize("payload", [object(), {1, 2}, {"f": lambda: 0}, b"bytes"],
                         ids=["object", "set", "function", "bytes"])
def test_payload_not_json_serializable(k, payload):
    rejects(k, InvalidSpecError, lambda: k.submit("q", payload))


def test_payload_over_the_size_limit():
    k = Kernel.in_memory(clock=ManualClock(), max_payload_bytes=100)
    k.declare_queue("q")
    k.submit("q", "x" * 90)                          # 92 bytes encoded: accepted
    rejects(k, InvalidSpecError, lambda: k.submit("q", "x" * 200))


def test_result_not_json_serializable(k):
    lease = k.claim("w")
    rejects(k, InvalidSpecError, lambda: k.complete(lease, result=object()))


def test_invalid_spec_errors_are_value_errors(k):
    with pytest.raises(ValueError):
        k.submit("q", priority=-5)


# --- stale leases and conflicts ----------------------------------------------------------

def test_stale_lease_after_expiry_and_reclaim(k, manual_clock):
    k.submit("q", id="short", timeout=1.0, backoff={"initial": 0.0},
             priority=1000)
    old = k.claim("w")
    manual_clock.advance(1.0)
    k.tick()
    new = k.claim("w")
    assert new.task_id == old.task_id == "short"
    rejects(k, StaleLeaseError, lambda: k.complete(old))
    rejects(k, StaleLeaseError, lambda: k.fail(old, error="late"))
    rejects(k, StaleLeaseError, lambda: k.heartbeat(old))
    rejects(k, StaleLeaseError, lambda: k.release(old))


def test_completing_twice(k):
    lease = k.claim("w")
    k.complete(lease)
    rejects(k, StaleLeaseError, lambda: k.complete(lease))


def test_claim_for_an_agent_at_capacity(k):
    k.submit("q")
    k.claim("w")
    rejects(k, AgentAtCapacityError, lambda: k.claim("w"))
    rejects(k, AgentAtCapacityError, lambda: k.claim_many("w", 1))


def test_claim_for_an_offline_agent(k):
    k.agent_offline("w")
    rejects(k, AgentOfflineError, lambda: k.claim("w"))
    rejects(k, AgentOfflineError, lambda: k.claim_many("w", 1))


def test_register_an_agent_again_with_another_spec(k):
    rejects(k, InvalidStateError, lambda: k.register_agent("w", capabilities=["q"], capacity=3))


def test_cancel_a_finished_task(k):
    k.complete(k.claim("w"))
    rejects(k, InvalidStateError, lambda: k.cancel("existing"))


def test_requeue_a_task_that_did_not_fail(k):
    rejects(k, InvalidStateError, lambda: k.requeue("existing"))


def test_times_too_far_out_for_int64_nanoseconds(k):
    # now + timeout is int64 ns: durations are capped at 1e9 s, absolute times at 4e9 s.
    rejects(k, InvalidSpecError, lambda: k.submit("q", timeout=9223372037.0))
    rejects(k, InvalidSpecError, lambda: k.submit("q", timeout=1e12, depends_on=[]))
    rejects(k, InvalidSpecError, lambda: k.submit("q", delay=2e9))
    rejects(k, InvalidSpecError, lambda: k.submit("q", not_before=5e9))
    rejects(k, InvalidSpecError, lambda: k.submit_many([{"queue": "q", "timeout": 1e10}]))
    rejects(k, InvalidSpecError, lambda: k.submit("q", backoff={"max": 1e300}))
