"""Records read from the log are untrusted: a record with a valid checksum but no meaning
raises LogRecordInvalidError (file, byte offset, event type, what is wrong) from every entry
point, never crashes the process or leaks an untyped error, and ``eskernel verify`` fails on
it.  One test per case of issue 15 (items 3 and 8), plus the checks replay now makes."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from eskernel.eventlog import EventLog
from eskernel import Kernel, LogCorruptError, LogRecordInvalidError, ManualClock
from eskernel.cli import cli
from eskernel.errors import InvalidSpecError, LeaseExpiredError

T = 1_700_000_000_000_000_000           # ManualClock's default start, in ns
TS = T + 1_000_000_000
TIMEOUT = 30_000_000_000


def _world(d: Path) -> int:
    """q; agent w (capacity 2); a RUNNING under lease 1; b READY.  Returns next offset."""
    k = Kernel.open(d, clock=ManualClock(), snapshot_every=0)
    k.declare_queue("q")
    k.register_agent("w", ["q"], capacity=2)
    k.submit("q", id="a")
    k.submit("q", id="b")
    assert k.claim("w").task_id == "a"
    n = k.next_offset
    k.close()
    return n


def _log_with(tmp_path: Path, *records: bytes) -> tuple[Path, int]:
    d = tmp_path / "log"
    n = _world(d)
    with EventLog.open(d) as log:
        log.append_many(list(records))
    return d, n


def _submitted(task: str = "c", ts: int = TS, priority: int | str = 2, payload: bytes = b"null",
               attempts: int = 3, timeout: int = TIMEOUT, extra: bytes = b"") -> bytes:
    # The layout the hot path writes (the C fast path parses it).
    return (b'{"v":1,"t":"submitted","ts":%d,"task":"%s","queue":"q","priority":%s,'
            b'"payload":%s,"depends_on":[],"max_attempts":%d,"timeout":%d,"not_before":0%s}'
            % (ts, task.encode(), str(priority).encode(), payload, attempts, timeout, extra))


def _frame_at(segment: str, pos: int) -> bytes:
    data = Path(segment).read_bytes()
    (length,) = struct.unpack_from("<I", data, pos)
    return data[pos + 8:pos + 8 + length]


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def _cli(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, list(args))
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    return r.exit_code, r.stdout, r.stderr


def expect_invalid(d: Path, log_offset: int, record_type: str | None, match: str) -> None:
    before = _files(d)
    bad = list(EventLog.open_readonly(d).read(log_offset, log_offset + 1))[0][1]
    for opener in (Kernel.open, Kernel.replay):
        with pytest.raises(LogRecordInvalidError, match=match) as info:
            opener(d)
        err = info.value
        assert isinstance(err, LogCorruptError)
        assert (err.log_offset, err.record_type) == (log_offset, record_type)
        assert err.segment.endswith(".seg") and _frame_at(err.segment, err.offset) == bad
        assert f"event {log_offset} " in str(err) and "eskernel verify" in str(err)
    assert _files(d) == before                    # nothing written, nothing repaired
    code, out, err_text = _cli("status", str(d))
    assert code == 1 and err_text.startswith("error: ") and "passes its checksum" in err_text
    assert "Traceback" not in out + err_text
    code, out, _ = _cli("verify", str(d), "--json")
    row = json.loads(out)[0]
    assert code == 1 and row["ok"] is False and row["offset"] == log_offset, row
    code, _, err_text = _cli("replay", str(d))
    assert code == 1 and "passes its checksum" in err_text


# -- issue 15, item 3: memory corruption from a checksummed record -----------------------

def test_priority_1001_is_refused_not_a_heap_corruption(tmp_path: Path) -> None:
    d, n = _log_with(tmp_path, _submitted(priority=1001))
    expect_invalid(d, n, "submitted", "'priority' is 1001, not an int in \\[0, 1000\\]")


def test_priority_1000000_is_refused_not_a_segfault(tmp_path: Path) -> None:
    d, n = _log_with(tmp_path, _submitted(priority=1_000_000))
    expect_invalid(d, n, "submitted", "'priority' is 1000000")


# -- issue 15, item 8: untyped errors from meaningless records ----------------------------

def test_unknown_queue_is_not_a_keyerror(tmp_path: Path) -> None:
    d, n = _log_with(tmp_path, b'{"v":1,"t":"queue_paused","ts":%d,"queue":"nope"}' % TS)
    expect_invalid(d, n, "queue_paused", "queue 'nope' was never declared")


def test_wrong_type_is_not_a_typeerror(tmp_path: Path) -> None:
    rec = _submitted().replace(b'"depends_on":[]', b'"depends_on":5')
    d, n = _log_with(tmp_path, rec)
    expect_invalid(d, n, "submitted", "'depends_on' is 5, not a list")


def test_huge_lease_is_not_an_overflowerror(tmp_path: Path) -> None:
    rec = (b'{"v":1,"t":"claimed","ts":%d,"task":"b","lease":%d,"agent":"w","attempt":1,'
           b'"expires":%d}' % (TS, 2**70, TS + TIMEOUT))
    d, n = _log_with(tmp_path, rec)
    expect_invalid(d, n, "claimed", "'lease' is 1.18059162071741\\d*e\\+21, not an int")


def test_non_ascii_id_is_not_a_unicodedecodeerror(tmp_path: Path) -> None:
    rec = ('{"v":1,"t":"claimed","ts":%d,"task":"é","lease":2,"agent":"w","attempt":1,'
           '"expires":%d}' % (TS, TS + TIMEOUT)).encode()
    d, n = _log_with(tmp_path, rec)
    expect_invalid(d, n, "claimed", "task 'é' was never submitted")


def test_invalid_utf8_is_not_a_unicodedecodeerror(tmp_path: Path) -> None:
    d, n = _log_with(tmp_path, _submitted(payload=b'"\xff\xfe"'))
    expect_invalid(d, n, "submitted", "not valid JSON")


def test_bad_json_is_not_a_jsondecodeerror(tmp_path: Path) -> None:
    d, n = _log_with(tmp_path, b'{"v":1,"t":"requeued","ts":%d,"task":' % TS)
    expect_invalid(d, n, "requeued", "not valid JSON")


def test_duplicate_task_id_is_refused(tmp_path: Path) -> None:
    d, n = _log_with(tmp_path, _submitted(task="b"))
    expect_invalid(d, n, "submitted", "task 'b' was already submitted")


def test_time_going_backwards_is_refused(tmp_path: Path) -> None:
    d, n = _log_with(tmp_path, _submitted(ts=T - 1))
    expect_invalid(d, n, "submitted", "before the previous event's")


def test_agent_capacity_minus_one_is_refused(tmp_path: Path) -> None:
    rec = (b'{"v":1,"t":"agent_registered","ts":%d,"agent":"w2","capabilities":["q"],'
           b'"capacity":-1}' % TS)
    d, n = _log_with(tmp_path, rec)
    expect_invalid(d, n, "agent_registered", "'capacity' is -1")


def test_deeply_nested_payload_record_is_refused(tmp_path: Path) -> None:
    d, n = _log_with(tmp_path, _submitted(payload=b"[" * 10_000 + b"]" * 10_000))
    expect_invalid(d, n, "submitted", "not valid JSON")


def test_payload_nested_past_the_encoder_is_refused(tmp_path: Path) -> None:
    # orjson reads 1024 levels but writes 254: such a payload could never be stored again
    d, n = _log_with(tmp_path, _submitted(payload=b"[" * 300 + b"]" * 300))
    expect_invalid(d, n, "submitted", "'payload' cannot be stored")


def test_deep_payload_submit_is_a_typed_error(manual_clock: ManualClock) -> None:
    k = Kernel.in_memory(clock=manual_clock)
    k.declare_queue("q")
    deep: list = []
    for _ in range(10_000):
        deep = [deep]
    with pytest.raises(InvalidSpecError, match="not JSON-serializable"):
        k.submit("q", deep)
    assert k.next_offset == 1
    for bad in ({"id": deep}, {"name": deep}, {"tags": deep}, {"depends_on": deep},
                {"key": deep}, {"priority": deep}, {"timeout": deep}, {"backoff": deep}):
        with pytest.raises(InvalidSpecError):        # never RecursionError in the message
            k.submit("q", **bad)
    with pytest.raises(InvalidSpecError):
        k.submit_many([deep])
    with pytest.raises(InvalidSpecError):
        k.register_agent("w", deep)


def test_fail_with_a_lone_surrogate_is_a_typed_error(manual_clock: ManualClock) -> None:
    k = Kernel.in_memory(clock=manual_clock)
    k.declare_queue("q")
    k.register_agent("w", ["q"])
    k.submit("q", id="a")
    lease = k.claim("w")
    with pytest.raises(InvalidSpecError, match="field 'error'"):
        k.fail(lease, error="\udcff")
    assert k.task("a").status == "RUNNING" and k.next_offset == 4
    k.fail(lease, error="ok")                   # nothing was poisoned
    assert k.task("a").status == "RETRYING"


# -- the envelope -------------------------------------------------------------------------

def test_unknown_event_type_is_refused(tmp_path: Path) -> None:
    d, n = _log_with(tmp_path, b'{"v":1,"t":"exploded","ts":%d}' % TS)
    expect_invalid(d, n, "exploded", "event type 'exploded' is unknown")


def test_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    d, n = _log_with(tmp_path, b'{"v":2,"t":"ready","ts":%d,"task":"b"}' % TS)
    expect_invalid(d, n, "ready", "schema version 2")


def test_unknown_field_cannot_smuggle_a_payload(tmp_path: Path) -> None:
    # "_body" is how live submits pass the encoded payload to apply
    d, n = _log_with(tmp_path, _submitted(extra=b',"_body":"x"'))
    expect_invalid(d, n, "submitted", "unknown \\['_body'\\]")


def test_overlong_id_is_refused(tmp_path: Path) -> None:
    d, n = _log_with(tmp_path, _submitted(task="x" * 201))
    expect_invalid(d, n, "submitted", "is not a valid id")


@pytest.mark.parametrize("field,value", [("attempts", 0), ("attempts", 1_000_001),
                                         ("timeout", 10**18 + 1)])
def test_submitted_ranges(tmp_path: Path, field: str, value: int) -> None:
    d, n = _log_with(tmp_path, _submitted(**{field: value}))
    expect_invalid(d, n, "submitted", "not an int in")


# -- leases and transitions ---------------------------------------------------------------

def _claimed(task: str, lease: int, agent: str = "w", attempt: int = 1,
             expires: int = TS + TIMEOUT) -> bytes:
    return (b'{"v":1,"t":"claimed","ts":%d,"task":"%s","lease":%d,"agent":"%s",'
            b'"attempt":%d,"expires":%d}' % (TS, task.encode(), lease, agent.encode(),
                                             attempt, expires))


#: One record after the base log's (task 'a' RUNNING under lease 1, 'b' READY), the event
#: type replay names, and what its message says.
TRANSITIONS = {
    "claim of a running task": (_claimed("a", 2), "claimed", "task 'a' is RUNNING, not READY"),
    "lease ids out of sequence": (_claimed("b", 7), "claimed", "the next one is 2"),
    "claim with a wrong expiry": (_claimed("b", 2, expires=TS + 5), "claimed", "'expires' is"),
    "requeue of a running task": (b'{"v":1,"t":"requeued","ts":%d,"task":"a"}' % TS,
                                  "requeued", "task 'a' is RUNNING; only FAILED"),
    "heartbeat with a forged expiry": (
        b'{"v":1,"t":"heartbeat","ts":%d,"task":"a","lease":1,"expires":%d}' % (TS, TS + 5),
        "heartbeat", "'expires' is"),
    "completed with a stale lease": (
        b'{"v":1,"t":"completed","ts":%d,"task":"a","lease":9,"result":null}' % TS,
        "completed", "its current lease is 1"),
    "completed with a result that is not JSON": (
        b'{"v":1,"t":"completed","ts":%d,"task":"a","lease":1,"result":nul}' % TS,
        "completed", "not valid JSON"),
    "ready for a task that is not waiting": (
        b'{"v":1,"t":"ready","ts":%d,"task":"b"}' % TS, "ready", "not waiting"),
    "retry of a non-retryable failure": (
        b'{"v":1,"t":"failed","ts":%d,"task":"a","lease":1,"error":"x","retryable":false,'
        b'"retry_at":%d}' % (TS, TS + 1), "failed", "schedules a retry"),
    "cancel with an unknown reason": (
        b'{"v":1,"t":"cancelled","ts":%d,"task":"b","reason":"bogus","cause":null}' % TS,
        "cancelled", "reason 'bogus'"),
    "upstream cancel naming a live cause": (
        b'{"v":1,"t":"cancelled","ts":%d,"task":"b","reason":"upstream","cause":"a"}' % TS,
        "cancelled", "its cause 'a' is RUNNING"),
}


@pytest.mark.parametrize("case", list(TRANSITIONS))
def test_an_illegal_transition_is_refused(tmp_path: Path, case: str) -> None:
    rec, etype, message = TRANSITIONS[case]
    d, n = _log_with(tmp_path, rec)
    expect_invalid(d, n, etype, message)


def test_claim_beyond_capacity_is_refused(tmp_path: Path) -> None:
    reg = (b'{"v":1,"t":"agent_registered","ts":%d,"agent":"w2","capabilities":["q"],'
           b'"capacity":1}' % TS)
    d, n = _log_with(tmp_path, reg, _submitted(), _claimed("b", 2, "w2"),
                     _claimed("c", 3, "w2"))
    expect_invalid(d, n + 3, "claimed", "could not have claimed")


# -- what the writer guarantees -----------------------------------------------------------

def test_a_clock_set_back_never_writes_time_backwards(tmp_path: Path) -> None:
    clock = ManualClock()
    with Kernel.open(tmp_path, clock=clock, snapshot_every=0) as k:
        k.declare_queue("q")
        clock.advance(100)
        k.submit("q", id="a")
    with Kernel.open(tmp_path, clock=ManualClock(), snapshot_every=0) as k:  # 100 s earlier
        k.submit("q", id="b")
        k.register_agent("w", ["q"])
        k.complete(k.claim("w"))
    times = [json.loads(rec)["ts"] for _, rec in EventLog.open_readonly(tmp_path).read()]
    assert times == sorted(times) and len(times) == 6
    with Kernel.open(tmp_path, snapshot_every=0) as k:
        assert k.task("a").status == "COMPLETED"
        k._sched._check()


def test_a_clean_log_replays_through_the_checks(tmp_path: Path) -> None:
    d, n = _log_with(tmp_path, _submitted(), _claimed("b", 2))
    with Kernel.open(d, snapshot_every=0) as k:
        assert k.next_offset == n + 2 and k.task("b").status == "RUNNING"
        k._sched._check()
    assert _cli("verify", str(d))[0] == 0


def test_a_log_written_at_the_apis_limits_replays(tmp_path: Path) -> None:
    # The checks refuse nothing the public API can write: every limit at its edge.
    def nest(n: int) -> list:
        v: list = []
        for _ in range(n - 1):
            v = [v]
        return v

    clock = ManualClock()
    with Kernel.open(tmp_path, clock=clock, snapshot_every=0) as k:
        k.declare_queue("q", max_concurrent=2**31 - 1)
        k.register_agent("w" * 200, ["q"], capacity=2**31 - 1)
        k.submit("q", nest(254), id="a" * 200, priority=1000, max_attempts=1_000_000,
                 timeout=1e-10)                       # rounds to a 0 ns timeout
        k.submit("q", id="b", priority=0, timeout=1e9, tags={"t": nest(249)},
                 backoff={"initial": 1e9, "factor": 1e6, "max": 1e9, "jitter": 1.0},
                 key="k", parent="p", name="é\n\x00", max_attempts=1)
        k.submit("q", id="c", not_before=4e9)
        k.submit("q", id="d", delay=1e9, depends_on=["b"])
        k.submit("q", id="e", priority=999)
        with pytest.raises(InvalidSpecError, match="tags nest more than 250"):
            k.submit("q", id="x", tags={"t": nest(250)})
        la = k.claim("w" * 200)
        le = k.claim("w" * 200)
        lb = k.claim("w" * 200)
        k.heartbeat(lb)
        with pytest.raises(LeaseExpiredError):         # a 0 ns lease is expired when granted
            k.complete(la, result=nest(254))
        k.complete(le, result=nest(254))
        k.fail(lb, error="e" * 70_000)                 # kept to 65536 characters
        clock.set(4e9)
        k.tick()
        digest = k._state.digest()
    with Kernel.open(tmp_path, snapshot_every=0) as k:
        assert k._state.digest() == digest
        k._sched._check()
        assert k.task("b").status == "FAILED" and k.task("d").status == "CANCELLED"
        assert k.task("e").status == "COMPLETED" and k.task("a" * 200).status == "RETRYING"
    assert _cli("verify", str(tmp_path))[0] == 0
