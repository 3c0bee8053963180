"""Opening a directory (newest valid snapshot, then the tail) and audit replays."""

from __future__ import annotations

import gc
import logging
import os
from typing import Any

from ._apply import KernelState
from ._records import RecordError, check_record, record_error
from .errors import EskernelError, InvalidSpecError

log = logging.getLogger("eskernel")
BATCH = 8192


def _replay_into(state: KernelState, log_: Any, end: int, until_ns: int | None = None) -> None:
    # Every record is checked before it is applied (kernel/_records.py): the C fast path
    # takes only records it has checked itself and declines the rest, which check_record
    # decodes and checks in full.  A bad record raises LogRecordInvalidError; the state is
    # then half-applied and the caller must drop it (open and replay do).
    # Decoding retains millions of small objects: the cyclic GC would rescan them again
    # and again, so it is paused for the duration (nothing here makes cycles).
    check, apply = check_record, state.apply
    fast, ctx = state.sched.replay_record, state.replay_context()
    state.sched.last_ts = state.last_ts
    enabled = gc.isenabled()
    gc.disable()
    rec = b""
    try:
        off = state.applied
        while off < end:
            batch = log_.read_batch(off, min(BATCH, end - off))
            if not batch:
                break
            try:
                for rec in batch:
                    if until_ns is None and fast(rec, ctx):
                        state.applied += 1     # the hot-path records, checked and applied in C
                        continue
                    ev = check(state, rec)
                    if until_ns is not None and ev["ts"] > until_ns:
                        return
                    apply(ev)
            except (RecordError, EskernelError, ValueError, TypeError, LookupError,
                    ArithmeticError, RecursionError) as err:
                raise record_error(log_, state.applied, rec, err) from err
            off += len(batch)
    finally:
        state.last_ts = state.sched.last_ts
        if enabled:
            gc.enable()


def _load_snapshot(log_: Any, max_offset: int | None) -> KernelState:
    snap = log_.latest_snapshot(max_offset)
    if snap is None:
        return KernelState()
    try:
        state = KernelState.load(snap.blob)
    except ValueError as err:
        log.warning("snapshot at offset %d in %s is unusable (%s); replaying the log from 0",
                    snap.offset, snap.path, err)
        return KernelState()
    if state.applied != snap.offset:
        log.warning("snapshot %s claims offset %d but holds %d events; replaying from 0",
                    snap.path, snap.offset, state.applied)
        return KernelState()
    return state


def open_durable(cls: Any, path: str | os.PathLike[str], *, durability: str, clock: Any,
                 seed: int, snapshot_every: int, max_payload_bytes: int,
                 log_options: dict[str, Any]) -> Any:
    from eventlog import EventLog
    if isinstance(snapshot_every, bool) or not isinstance(snapshot_every, int) or snapshot_every < 0:
        raise InvalidSpecError(f"snapshot_every must be an int >= 0, got {snapshot_every!r}")
    log_ = EventLog.open(path, durability=durability, **log_options)
    try:
        state = _load_snapshot(log_, None)
        _replay_into(state, log_, log_.next_offset)
    except BaseException:
        log_.close()
        raise
    return cls(log_, state, clock=clock, seed=seed, snapshot_every=snapshot_every,
               max_payload_bytes=max_payload_bytes)


def replay_readonly(cls: Any, path: str | os.PathLike[str], *, until: int | None,
                    until_time: float | None) -> Any:
    from eventlog import EventLog
    from ._validate import MAX_TIME_S, check_int, seconds_to_ns
    reader = EventLog.open_readonly(path)
    try:
        end = reader.next_offset
        if until is not None:
            check_int(until, "until", 0, end)
            end = until
        until_ns = (seconds_to_ns(until_time, "until_time", maximum=MAX_TIME_S)
                    if until_time is not None else None)
        state = _load_snapshot(reader, end if until_ns is None else None)
        if until_ns is not None and state.last_ts > until_ns:
            state = KernelState()
        _replay_into(state, reader, end, until_ns)
    except BaseException:
        reader.close()
        raise
    return cls(reader, state, clock=None, seed=0, snapshot_every=0, max_payload_bytes=1 << 20,
               read_only=True)
