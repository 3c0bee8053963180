"""Fuzzing the log with records that pass their checksum but carry mutated fields.

A clean log exercising every event type is built with the public API.  Each case replaces
one field of one record (every field of every event type, in turn) with a mutation: out of
range, wrong type, an unknown or duplicate reference, a huge length, bad UTF-8, deep
nesting, a missing or an unknown field; or mutates the record as a whole (dropped,
duplicated, swapped with the next, time moved back, cut short).  The log is written with
valid checksums and opened.  Every outcome must be one of:

* :class:`LogRecordInvalidError` at or after the mutated record (a later record may be the
  first that no longer fits), from both ``Kernel.open`` and ``Kernel.replay``; or
* a consistent state: ``_check()`` passes, ``stats()`` and every task's view work, and the
  digest equals that of replaying the same log again.

Never a crash, never another exception.  On a sample, ``eskernel status`` and ``verify``
run through CliRunner with ``replay`` and ``history``: they exit 0 or 1 with a one-line
error, and status, replay and verify fail whenever replay refused the log.

Bounded for CI (:data:`CI_CASES` cases); ``ESKERNEL_FUZZ_RECORDS=20000`` runs that many
cases and prints the outcome counts.  Crashes found are kept in :data:`REGRESSIONS`.
"""

from __future__ import annotations

import collections
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any, Callable

import orjson
import pytest
from click.testing import CliRunner

from eskernel.eventlog import EventLog
from eskernel import EskernelError, Kernel, LogRecordInvalidError, ManualClock
from eskernel.cli import cli
from eskernel.workflows import WorkflowBuilder

CI_CASES = 600
PER_BASE = 150              # cases per random base log after the fixed one
CLI_EVERY = int(os.environ.get("ESKERNEL_FUZZ_CLI_EVERY", 20))   # CLI on every n-th case
MARK = "@@MUTATION@@"


def base_records() -> list[bytes]:
    """A clean log using every event type and every optional field."""
    clock = ManualClock()
    k = Kernel.in_memory(clock=clock, seed=3)
    k.declare_queue("q", max_concurrent=3)
    k.declare_queue("r", paused=True)
    k.resume_queue("r")
    k.pause_queue("r")
    k.resume_queue("r")
    k.register_agent("w", ["q", "r"], capacity=2)
    k.register_agent("v", ["q"], capacity=1)
    k.agent_offline("v")
    k.agent_online("v")
    k.submit("q", {"n": 1}, id="a", priority=5)
    k.submit("q", [1.5, "x", None, True], id="b", name="bee", tags={"k": [1, {"z": 2}]},
             key="idem-b", parent="a", backoff={"initial": 0.5, "factor": 3.0, "max": 9.0,
                                                 "jitter": 0.5}, max_attempts=2, timeout=5)
    k.submit("q", "c", id="c", depends_on=["a"], agent="w", priority=4)
    k.submit("r", None, id="d", delay=10)
    k.submit("q", {"deep": [[["x"]]]}, id="e", depends_on=["b"])
    la = k.claim("w")                       # a
    k.heartbeat(la)
    clock.advance(1)
    k.complete(la, result={"ok": "é"})      # c becomes READY
    lb = k.claim("v")                       # b
    k.fail(lb, error="boom", retryable=True)
    clock.advance(2)
    k.tick()                                # b ready again
    lc = k.claim("w")                       # c (pinned to w)
    k.release(lc)
    lc = k.claim("w")
    lb = k.claim("v")
    assert (lc.task_id, lb.task_id) == ("c", "b")
    clock.advance(6)
    k.tick()                                # b's lease expires: no attempts left
    clock.advance(10)
    k.tick()                                # d is due
    k.requeue("b")
    k.cancel("d")
    k.complete(lc, result=[1, 2])
    k.submit_many([{"queue": "q", "id": f"s{i}", "payload": i} for i in range(3)])
    k.declare_queue("wq")                   # the workflow events
    k.register_agent("x", ["wq"])
    k.start_workflow(WorkflowBuilder("wf", context={"go": False})
                     .add_task_step("t1", queue="wq", payload={"p": 1}, inputs={"g": "go"})
                     .add_wait_step("gate", condition=("go", "==", True), timeout=60)
                     .add_task_step("t2", queue="wq").build(), id="f")
    k.complete(k.claim("x"), result={"r": 1})
    k.pause_workflow("f")
    k.signal("f", "go", True)
    k.resume_workflow("f")
    k.cancel_workflow("f")
    k._new_epoch()                          # what a reopened fsync kernel writes first
    assert k.claim("w").lease_id == 1 << 32
    return [rec for _, rec in k._log.read()]


def random_records(seed: int, steps: int = 90) -> list[bytes]:
    """A clean log from a seeded random workload (rejected calls write nothing)."""
    rng = random.Random(seed)
    clock = ManualClock()
    k = Kernel.in_memory(clock=clock, seed=seed)
    k.declare_queue("q", max_concurrent=rng.choice([0, 2]))
    k.declare_queue("r")
    k.register_agent("w", ["q", "r"], capacity=2)
    k.register_agent("v", ["q"], capacity=1)
    leases: list[Any] = []
    ids: list[str] = []
    for step in range(steps):
        op = rng.randrange(12)
        try:
            if op < 3:
                deps = rng.sample(ids, min(len(ids), rng.randint(0, 2)))
                ids.append(k.submit(rng.choice("qr"), {"s": step}, id=f"t{step}",
                                    priority=rng.randint(0, 9), depends_on=deps,
                                    max_attempts=rng.randint(1, 3),
                                    timeout=rng.choice([1, 5, 30]),
                                    delay=rng.choice([None, None, 0.5, 3]),
                                    agent=rng.choice([None, None, "w"])))
            elif op < 5:
                lease = k.claim(rng.choice("wv"))
                if lease is not None:
                    leases.append(lease)
            elif op < 8 and leases:
                lease = leases.pop(rng.randrange(len(leases)))
                [lambda: k.complete(lease, result=step),
                 lambda: k.fail(lease, error=f"e{step}", retryable=rng.random() < 0.7),
                 lambda: k.release(lease)][op - 5]()
            elif op == 8 and leases:
                k.heartbeat(rng.choice(leases))
            elif op == 9:
                clock.advance(rng.choice([0.1, 1, 10]))
                k.tick()
            elif op == 10 and ids:
                rng.choice([k.cancel, k.requeue])(rng.choice(ids))
            elif op == 11:
                rng.choice([lambda: k.pause_queue("r"), lambda: k.resume_queue("r"),
                            lambda: k.agent_offline("v"), lambda: k.agent_online("v")])()
        except EskernelError:
            pass
    return [rec for _, rec in k._log.read()]


def _fields(rec: bytes) -> list[str]:
    return list(orjson.loads(rec))


# -- mutations ----------------------------------------------------------------------------

def _values(rng: random.Random, ids: list[str]) -> list[Any]:
    return [-1, 0, 1, 1001, 1_000_000, 2**31, 2**63 - 1, 2**63, 2**64 - 1, -2**63,
            1.5, float(2**62), True, False, None, "", "x", "ghost", rng.choice(ids),
            "a" * 201, "x" * rng.choice([10**3, 10**5]), "é", "a b", [], [rng.choice(ids)],
            [rng.choice(ids)] * 2, {}, {"initial": -1}, ["q"], ["q", "q"],
            {"initial": 1, "factor": 2.0, "max": 1, "jitter": 7}]


RAW = [b'"\xff\xfe"', b'"\xed\xa0\x80"', b'"\\ud800"', b"[" * 300 + b"]" * 300,
       b"[" * 10_000 + b"]" * 10_000, b"01", b"1e999", b"-0", b'"\x01"', b"nul", b"{",
       b'{"a":1,"a":2}', b"123456789012345678901234567890", b"18446744073709551616",
       b"-9223372036854775809", b"1.5e300", b"-1"]


def mutate(records: list[bytes], i: int, field: str, rng: random.Random) -> tuple[str, list[bytes]]:
    """One mutated copy of the log: field ``field`` of record ``i`` (or the record)."""
    ids = ["a", "b", "c", "t7", "q", "r", "w", "v", "s0",
           orjson.loads(records[-1]).get("task", "x")]
    recs = list(records)
    ev = orjson.loads(recs[i])
    kind = rng.randrange(100)
    if field == "*":            # the record as a whole
        how = rng.choice(["drop", "dup", "swap", "back", "cut", "extra"])
        if how == "drop":
            del recs[i]
        elif how == "dup":
            recs.insert(i, recs[i])
        elif how == "swap" and i + 1 < len(recs):
            recs[i], recs[i + 1] = recs[i + 1], recs[i]
        elif how == "back":
            ev["ts"] -= rng.choice([1, 10**9, ev["ts"]])
            recs[i] = orjson.dumps(ev)
        elif how == "cut":
            recs[i] = recs[i][:rng.randrange(1, len(recs[i]))]
        else:
            ev["_body"] = "x" if rng.random() < 0.5 else None
            recs[i] = orjson.dumps(ev)
        return f"{how}", recs
    if kind < 8:
        del ev[field]
        recs[i] = orjson.dumps(ev)
        return "missing", recs
    if kind < 30:
        raw = rng.choice(RAW)
        ev[field] = MARK
        recs[i] = orjson.dumps(ev).replace(b'"' + MARK.encode() + b'"', raw)
        return f"raw {raw[:12]!r}", recs
    value = rng.choice(_values(rng, ids))
    ev[field] = value
    recs[i] = orjson.dumps(ev)
    return f"value {str(value)[:20]!r}", recs


# -- one case -----------------------------------------------------------------------------

def _write(d: Path, records: list[bytes]) -> None:
    if d.exists():
        shutil.rmtree(d)
    with EventLog.open(d, "buffer") as log:
        log.append_many(records)


def _consistent(k: Any) -> str:
    k._sched._check()
    k.stats()
    for tid in k._sched.task_ids:
        k.task(tid)
    return k._state.digest()


def run_case(d: Path, records: list[bytes], first_bad: int, cli_too: bool,
             canonical: bool = True) -> str:
    """Write, open and replay one log; return the outcome ("invalid" or "ok").

    ``Kernel.replay(until_time=...)`` takes no fast path: every record goes through the full
    check, so it must agree with the fast path (same error, or the same state when the
    records are as orjson writes them: the fast path keeps a value's bytes as written)."""
    _write(d, records)
    outcome = "ok"
    try:
        k = Kernel.open(d, snapshot_every=0)
    except LogRecordInvalidError as err:
        assert err.log_offset >= first_bad, (err.log_offset, first_bad, str(err))
        assert err.segment.endswith(".seg") and err.offset >= 32
        outcome = "invalid"
        for kwargs in ({}, {"until_time": 4e9}):
            with pytest.raises(LogRecordInvalidError) as again:
                Kernel.replay(d, **kwargs)
            assert again.value.log_offset == err.log_offset, (kwargs, str(again.value))
    else:
        with k:
            digest = _consistent(k)
        with Kernel.replay(d) as r:
            assert _consistent(r) == digest
        with Kernel.replay(d, until_time=4e9) as r:
            slow = _consistent(r)
            assert slow == digest or not canonical
    if cli_too:
        runner = CliRunner()
        for cmd in (["status", str(d)], ["verify", str(d), "--json"], ["replay", str(d)],
                    ["history", str(d), "b"], ["history", str(d), "c", "--json"]):
            res = runner.invoke(cli, cmd)
            assert res.exception is None or isinstance(res.exception, SystemExit), \
                repr(res.exception)
            assert res.exit_code in (0, 1) and "Traceback" not in res.output
            if outcome == "ok" and cmd[0] == "verify":
                assert res.exit_code == 0, res.output
            if outcome == "invalid" and cmd[0] != "history":
                assert res.exit_code == 1, (cmd, res.output)
                if cmd[0] == "verify":
                    assert json.loads(res.stdout)[0]["ok"] is False
    return outcome


def fuzz(tmp_path: Path, n_cases: int, seed: int,
         report: Callable[[str], None] | None = None) -> collections.Counter[str]:
    # The fixed base first (every (record, field) pair once), then seeded random workloads,
    # a new one every PER_BASE cases.
    rng = random.Random(seed)
    counts: collections.Counter[str] = collections.Counter()
    records: list[bytes] = []
    pairs: list[tuple[int, str]] = []
    n_pairs = n_records = bases = 0
    for c in range(n_cases):
        if c == 0 or (c >= n_pairs and (c - n_pairs) % PER_BASE == 0):
            records = base_records() if c == 0 else random_records(seed * 1000 + c)
            pairs = [(i, f) for i, rec in enumerate(records) for f in _fields(rec) + ["*"]]
            if c:
                rng.shuffle(pairs)
            n_pairs = n_pairs or len(pairs)
            n_records += len(records)
            bases += 1
        i, field = pairs[c % len(pairs)]
        what, recs = mutate(records, i, field, rng)
        t = orjson.loads(records[i])["t"]
        try:
            outcome = run_case(tmp_path / "case", recs, min(i, len(recs)), c % CLI_EVERY == 0,
                               not what.startswith("raw"))
        except BaseException as err:
            raise AssertionError(f"case {c}: record {i} ({t}) field {field!r} {what}: "
                                 f"{type(err).__name__}: {err}") from err
        counts[outcome] += 1
        counts[f"{outcome}:{t}"] += 1
    if report is not None:
        report(f"{n_cases} cases on {bases} base logs ({n_records} records): "
               f"{dict(sorted(counts.items()))}")
    return counts


def test_base_log_uses_every_event_type() -> None:
    from eskernel import events
    types = {orjson.loads(r)["t"] for r in base_records()}
    assert types == set(events.EVENT_TYPES)


def test_fuzz_records(tmp_path: Path) -> None:
    n = int(os.environ.get("ESKERNEL_FUZZ_RECORDS", CI_CASES))
    counts = fuzz(tmp_path, n, seed=int(os.environ.get("ESKERNEL_FUZZ_SEED", "15")),
                  report=print)
    assert counts["invalid"] and counts["ok"]          # both outcomes are exercised


# -- crashes found, kept as fixed regression cases -------------------------------------------
#
# What this fuzzer found in eskernel before records were checked (seed 15): two aborts of the
# process ("corrupted double-linked list" in stats(), a priority beyond the ready-heap key)
# and one case of each untyped error.  Each is (name, index of the record in base_records(),
# the record that replaces it).

REGRESSIONS: list[tuple[str, int, bytes]] = [
    ('bad-utf8-jsondecodeerror', 0, b'{"v":"\xff\xfe","t":"queue_declared","ts":1700000000000000000,"queue":"q","max_concurrent":3,"paused":false}'),
    ('type-0-keyerror', 0, b'{"v":1,"t":0,"ts":1700000000000000000,"queue":"q","max_concurrent":3,"paused":false}'),
    ('queue-float-typeerror', 0, b'{"v":1,"t":"queue_declared","ts":1700000000000000000,"queue":4.611686018427388e+18,"max_concurrent":3,"paused":false}'),
    ('infinity-jsondecodeerror', 0, b'{"v":1,"t":"queue_declared","ts":1700000000000000000,"queue":"q","max_concurrent":1e999,"paused":false}'),
    ('missing-queue-keyerror', 1, b'{"v":1,"t":"queue_declared","ts":1700000000000000000,"max_concurrent":0,"paused":true}'),
    ('surrogate-bytes-unicodedecodeerror', 9, b'{"v":1,"t":"submitted","ts":1700000000000000000,"task":"a","queue":"\xed\xa0\x80","priority":5,"payload":{"n":1},"depends_on":[],"max_attempts":3,"timeout":30000000000,"not_before":0}'),
    ('priority-float-overflowerror', 9, b'{"v":1,"t":"submitted","ts":1700000000000000000,"task":"a","queue":"q","priority":4.611686018427388e+18,"payload":{"n":1},"depends_on":[],"max_attempts":3,"timeout":30000000000,"not_before":0}'),
    ('ts-float-internal-error', 12, b'{"v":1,"t":"submitted","ts":4.611686018427388e+18,"task":"d","queue":"r","priority":2,"payload":null,"depends_on":[],"max_attempts":3,"timeout":30000000000,"not_before":1700000010000000000}'),
    ('ff-fe-unicodedecodeerror', 12, b'{"v":1,"t":"submitted","ts":1700000000000000000,"task":"d","queue":"\xff\xfe","priority":2,"payload":null,"depends_on":[],"max_attempts":3,"timeout":30000000000,"not_before":1700000010000000000}'),
    ('attempt-0-internal-error', 14, b'{"v":1,"t":"claimed","ts":1700000000000000000,"task":"a","lease":1,"agent":"w","attempt":0,"expires":1700000030000000000}'),
    ('priority-1001-abort', 32, b'{"v":1,"t":"submitted","ts":1700000019000000000,"task":"s2","queue":"q","priority":1001,"payload":2,"depends_on":[],"max_attempts":3,"timeout":30000000000,"not_before":0}'),
    ('priority-int64-max-abort', 12, b'{"v":1,"t":"submitted","ts":1700000000000000000,"task":"d","queue":"r","priority":9223372036854775807,"payload":null,"depends_on":[],"max_attempts":3,"timeout":30000000000,"not_before":1700000010000000000}'),
]


@pytest.mark.parametrize("index,record", [r[1:] for r in REGRESSIONS],
                         ids=[r[0] for r in REGRESSIONS])
def test_regressions(tmp_path: Path, index: int, record: bytes) -> None:
    records = base_records()
    records[index] = record
    assert run_case(tmp_path / "case", records, index, True) == "invalid"


# -- the C fast path against the full check, byte by byte --------------------------------

BYTES = [b"", b"0", b"9", b"-", b"+", b" ", b'"', b"\\", b"}", b"{", b"[", b"]", b",", b":",
         b".", b"e", b"\x00", b"\x7f", b"\x80", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90",
         b"\xff", b"u", b"\\u", b"null", b"99999999999999999999", b"1e99"]


FRAGMENTS = [b"[", b"]", b"{", b"}", b'"a"', b'"k":', b":", b",", b"1", b"0", b"-0", b"-1",
             b"1.5e3", b"1e999", b"01", b"9223372036854775808", b"-9223372036854775809",
             b'"\\u00e9"', b'"\\ud800"', b'"\\n"', b'"\\x"', "\"é\"".encode(), b'"\xc3"',
             b'"\xed\xa0\x80"', b"true", b"false", b"null", b"nul", b" ", b'"\x01"', b'"\x7f"']


def _mutate_value(rec: bytes, rng: random.Random) -> bytes:
    """Replace the payload or result with random JSON-ish fragments, or one digit of an int."""
    for key, stop in ((b'"payload":', b',"depends_on"'), (b'"result":', b"}")):
        a = rec.find(key)
        if a >= 0:
            a += len(key)
            b = rec.rfind(stop)
            value = b"".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 8)))
            if rng.random() < 0.5:     # often well-formed: a list of well-formed atoms
                atoms = [f for f in FRAGMENTS if f not in (b"[", b"]", b"{", b"}", b":",
                                                            b",", b'"k":', b" ")]
                value = b"[" + b",".join(rng.choice(atoms) for _ in range(rng.randint(0, 4))) + b"]"
            return rec[:a] + value + rec[b:]
    digits = [j for j, ch in enumerate(rec) if 48 <= ch <= 57]
    j = rng.choice(digits)
    return rec[:j] + bytes([rng.choice(b"0123456789")]) + rec[j + 1:]


def _replayed(records: list[bytes]) -> Any:
    from eskernel._apply import KernelState
    from eskernel._records import check_record
    st = KernelState()
    for rec in records:
        if not st.sched.replay_record(rec, st.replay_context()):
            st.apply(check_record(st, rec))
        else:
            st.applied += 1
    return st


def test_fast_path_accepts_only_what_the_full_check_accepts() -> None:
    """Byte-level mutations of the four fast-path layouts: a record the C parser applies
    is one check_record accepts, with the same state (for records as orjson writes them);
    a record it declines leaves the state as it was."""
    from eskernel._records import RecordError, check_record
    n = int(os.environ.get("ESKERNEL_FUZZ_RECORDS", CI_CASES)) * 4
    rng = random.Random(int(os.environ.get("ESKERNEL_FUZZ_SEED", "15")))
    logs = [base_records()] + [random_records(s) for s in range(3)]
    fast_types = (b'"t":"submitted"', b'"t":"claimed"', b'"t":"completed"', b'"t":"heartbeat"')
    spots = [(log, i) for log in logs for i, r in enumerate(log) if any(t in r for t in fast_types)]
    counts: collections.Counter[str] = collections.Counter()
    for c in range(n):
        log, i = rng.choice(spots)
        if rng.random() < 0.5:
            mut = _mutate_value(log[i], rng)
        else:
            rec = bytearray(log[i])
            for _ in range(rng.choice([1, 1, 2, 3])):
                at = rng.randrange(len(rec) + 1)
                cut = rng.choice([0, 0, 1, 2])
                rec[at:at + cut] = rng.choice(BYTES)
            mut = bytes(rec)
        fast_st, full_st = _replayed(log[:i]), _replayed(log[:i])
        before = fast_st.digest()
        took = fast_st.sched.replay_record(mut, fast_st.replay_context())
        try:
            full_st.apply(check_record(full_st, mut))
            full = True
        except RecordError:
            full = False
        where = f"case {c}: {log[i]!r} -> {mut!r}"
        if took:
            fast_st.applied += 1
            assert full, where
            fast_st.sched._check()
            try:
                canonical = orjson.dumps(orjson.loads(mut)) == mut
            except orjson.JSONDecodeError:
                canonical = False
            assert fast_st.digest() == full_st.digest() or not canonical, where
        else:
            assert fast_st.digest() == before, where
        counts[f"fast={bool(took)} full={full}"] += 1
    print(f"{n} byte mutations of fast-path records: {dict(sorted(counts.items()))}")
    assert counts["fast=True full=True"] and counts["fast=False full=False"]
