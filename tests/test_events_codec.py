"""The event codec: round trips, the C-encoded claim equals events.encode, versions."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eskernel import Kernel, ManualClock, events
from eskernel._core import encode_record

ids = st.from_regex(r"[A-Za-z0-9._:@/+\-]{1,40}", fullmatch=True)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10)


@given(ts=st.integers(0, 2**62), task=ids, lease=st.integers(1, 2**62), result=json_values)
def test_completed_round_trips_and_matches_the_fast_encoder(ts, task, lease, result):
    ev = {"t": "completed", "ts": ts, "task": task, "lease": lease, "result": result}
    rec = events.encode(ev)
    assert rec == encode_record("completed", (ts, task, lease, events.dumps(result)))
    assert events.decode(rec) == {"v": events.SCHEMA_VERSION, **ev}


@given(ts=st.integers(0, 2**62), task=ids, lease=st.integers(1, 2**62), exp=st.integers(0, 2**62))
def test_heartbeat_fast_encoder_matches(ts, task, lease, exp):
    ev = {"t": "heartbeat", "ts": ts, "task": task, "lease": lease, "expires": exp}
    assert events.encode(ev) == encode_record("heartbeat", (ts, task, lease, exp))


@given(ts=st.integers(0, 2**62), task=ids, lease=st.integers(1, 2**62), error=st.text(),
       retryable=st.booleans(), retry_at=st.none() | st.integers(0, 2**62))
def test_failed_c_encoder_matches(ts, task, lease, error, retryable, retry_at):
    ev = {"t": "failed", "ts": ts, "task": task, "lease": lease, "error": error,
          "retryable": retryable, "retry_at": retry_at}
    assert events.encode(ev) == encode_record(
        "failed", (ts, task, lease, events.dumps(error), retryable, retry_at))


@given(ts=st.integers(0, 2**62), task=ids, cause=st.none() | ids)
def test_cancelled_c_encoder_matches(ts, task, cause):
    ev = {"t": "cancelled", "ts": ts, "task": task,
          "reason": "cancelled" if cause is None else "upstream", "cause": cause}
    assert events.encode(ev) == encode_record("cancelled", (ts, task, cause))


@given(ts=st.integers(0, 2**62), task=ids, lease=st.integers(1, 2**62))
def test_released_c_encoder_matches(ts, task, lease):
    ev = {"t": "released", "ts": ts, "task": task, "lease": lease}
    assert events.encode(ev) == encode_record("released", (ts, task, lease))


@given(ts=st.integers(0, 2**62), task=ids, lease=st.integers(1, 2**62), agent=ids,
       attempt=st.integers(1, 10**6), exp=st.integers(0, 2**62))
def test_claimed_c_encoder_matches(ts, task, lease, agent, attempt, exp):
    ev = {"t": "claimed", "ts": ts, "task": task, "lease": lease, "agent": agent,
          "attempt": attempt, "expires": exp}
    assert events.encode(ev) == encode_record("claimed", (ts, task, lease, agent, attempt, exp))


@given(task=ids, agent=ids)
def test_claim_encoded_by_the_core_matches_events_encode(task, agent):
    k = Kernel.in_memory(clock=ManualClock(start=12.5))
    k.declare_queue("q")
    k.register_agent(agent, ["q"])
    k.submit("q", id=task, timeout=3.0)
    lease = k.claim(agent)
    ev = {"t": "claimed", "ts": 12_500_000_000, "task": task, "lease": 1, "agent": agent,
          "attempt": 1, "expires": 15_500_000_000}
    assert lease._event == events.encode(ev)


@given(ts_ns=st.integers(0, 3_900_000_000_000_000_000), timeout_ms=st.integers(1, 10**9),
       claims=st.integers(1, 130))
def test_claims_encoded_by_the_core_match_at_any_magnitude(ts_ns, timeout_ms, claims):
    # Every digit count of ts / expires (1 to 19) and of the lease id (1 to 3).
    clock = ManualClock(start=0.0)
    clock.advance(ts_ns / 1e9)
    k = Kernel.in_memory(clock=clock)
    k.declare_queue("q")
    k.register_agent("w", ["q"], capacity=claims)
    for _ in range(claims):
        k.submit("q", timeout=timeout_ms / 1000)
    for _ in range(claims):
        lease = k.claim("w")
        ev = {"t": "claimed", "ts": clock.time_ns(), "task": lease.task_id,
              "lease": lease.lease_id, "agent": "w", "attempt": 1,
              "expires": clock.time_ns() + timeout_ms * 1_000_000}
        assert lease._event == events.encode(ev)


def test_every_event_type_round_trips():
    for t, fields in events.EVENT_TYPES.items():
        ev = {"t": t, "ts": 1, **{f: None for f in fields}}
        expected = {"v": 1, **ev}
        if t == "submitted":
            expected["backoff"] = events.DEFAULT_BACKOFF   # an absent backoff is the default
        assert events.decode(events.encode(ev)) == expected


def test_optional_fields_are_omitted_when_null_or_default():
    ev = {"t": "submitted", "ts": 1, "task": "a", "queue": "q", "priority": 2, "payload": None,
          "depends_on": [], "max_attempts": 3, "timeout": 5, "not_before": 0, "agent": None,
          "backoff": dict(events.DEFAULT_BACKOFF), "name": None, "tags": None, "key": None,
          "parent": None}
    rec = events.encode(ev)
    for name in ("agent", "backoff", "name", "tags", "key", "parent"):
        assert b'"%s"' % name.encode() not in rec
    assert b'"name":"x"' in events.encode({**ev, "name": "x"})


@given(ts=st.integers(0, 2**62), task=ids, queue=ids, prio=st.integers(0, 1000),
       payload=json_values, attempts=st.integers(1, 10**6), timeout=st.integers(1, 2**50),
       not_before=st.integers(0, 2**62))
def test_submitted_fast_encoder_matches_encode(ts, task, queue, prio, payload, attempts,
                                               timeout, not_before):
    ev = {"t": "submitted", "ts": ts, "task": task, "queue": queue, "priority": prio,
          "payload": payload, "depends_on": [], "max_attempts": attempts, "timeout": timeout,
          "not_before": not_before}
    fast = encode_record("submitted", (ts, task, queue, prio, events.dumps(payload), [],
                                       attempts, timeout, not_before, b""))
    assert fast == events.encode(ev)
    assert events.decode(fast)["payload"] == payload


@given(ts=st.integers(0, 2**62), task=ids, queue=ids, payload=json_values,
       deps=st.lists(ids, max_size=5, unique=True),
       tags=st.none() | st.dictionaries(st.text(max_size=8), json_values, max_size=3),
       key=st.none() | st.text(min_size=1, max_size=10), not_before=st.integers(0, 2**62))
def test_submitted_c_encoder_with_dependencies_tags_and_key_matches(ts, task, queue, payload,
                                                                     deps, tags, key,
                                                                     not_before):
    ev = {"t": "submitted", "ts": ts, "task": task, "queue": queue, "priority": 3,
          "payload": payload, "depends_on": deps, "max_attempts": 2, "timeout": 7,
          "not_before": not_before, "tags": tags, "key": key}
    extra = b""
    if tags is not None:
        extra += b',"tags":' + events.dumps(tags)
    if key is not None:
        extra += b',"key":' + events.dumps(key)
    fast = encode_record("submitted", (ts, task, queue, 3, events.dumps(payload), deps, 2, 7,
                                       not_before, extra))
    assert fast == events.encode(ev)


@given(payload=st.none() | st.integers(-2**63, 2**64 - 1) | json_values, deps=st.integers(0, 3),
       tags=st.none() | st.dictionaries(st.text(max_size=8), json_values, max_size=3),
       key=st.none() | st.text(min_size=1, max_size=10), delay=st.none() | st.floats(0, 1e6))
def test_records_of_the_hot_submit_equal_events_encode(payload, deps, tags, key, delay):
    # Every record the kernel writes on the hot paths is what events.encode makes of the
    # event it decodes to.
    k = Kernel.in_memory(clock=ManualClock(start=3.25))
    k.declare_queue("q")
    k.register_agent("w", ["q"])
    firsts = [k.submit("q") for _ in range(deps)]
    k.submit("q", payload, id="x", depends_on=firsts, tags=tags, key=key, delay=delay)
    while (lease := k.claim("w")) is not None:
        k.heartbeat(lease)
        k.complete(lease, {"r": payload})
    for _, rec in k._log.read():
        assert events.encode(events.decode(rec)) == rec


def test_unknown_version_or_type_is_rejected():
    with pytest.raises(ValueError, match="not an eskernel v1 event"):
        events.decode(b'{"v":2,"t":"claimed","ts":1}')
    with pytest.raises(ValueError):
        events.decode(b'{"v":1,"t":"exploded","ts":1}')


@given(results=st.lists(json_values, min_size=1, max_size=5))
def test_complete_many_records_match_events_encode(results):
    k = Kernel.in_memory(clock=ManualClock(start=3.0))
    k.declare_queue("q")
    k.register_agent("w", ["q"], capacity=10)
    for i in range(len(results)):
        k.submit("q", id=f"job-{i}")
    leases = k.claim_many("w", len(results))
    k.complete_many(leases, results)
    records = [rec for _, rec in k._log.read()][-len(results):]
    for lease, res, rec in zip(leases, results, records):
        ev = {"t": "completed", "ts": 3_000_000_000, "task": lease.task_id,
              "lease": lease.lease_id, "result": res}
        assert rec == events.encode(ev)
        assert k.task(lease.task_id).result == res
