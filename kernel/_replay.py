"""Opening a directory (newest valid snapshot, then the tail) and audit replays."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import events
from ._apply import KernelState
from ._records import RecordError, check_record, record_error
from .errors import EskernelError, InvalidSpecError, SnapshotCorruptError

if TYPE_CHECKING:
    from ._kernel import Kernel

log = logging.getLogger("eskernel.kernel")
BATCH = 8192
#: The event log's options ``Kernel.open`` passes through.
LOG_OPTIONS = frozenset({"segment_bytes", "max_record_bytes", "flush_interval_ms"})
#: Bytes a hot-path record holds beyond its payload or result (ids, names, fields).
RECORD_OVERHEAD = 4096


def _replay_into(state: KernelState, log_: Any, end: int, until_ns: int | None = None,
                 observe: Callable[[int, bytes], None] | None = None) -> None:
    # Every record is checked before it is applied (kernel/_records.py): the C fast path
    # takes only records it has checked itself and declines the rest, which check_record
    # decodes and checks in full.  A bad record raises LogRecordInvalidError; the state is
    # then half-applied and the caller must drop it (open and replay do).  ``observe``
    # (verify's rules) sees each record and its offset before it is applied; what it
    # raises propagates as it is.
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
                    if observe is not None:
                        observe(state.applied, rec)
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


def _load_snapshot(log_: Any, end: int, *, remove_beyond: bool = False) -> KernelState:
    """The state of the newest snapshot that is valid and belongs to this log, else empty.

    A snapshot beyond the log's end describes records the log no longer holds (a repaired
    tail, a crash in buffer mode): it is never loaded, and the writer removes it so that
    records appended later at those offsets can never be hidden by it.  Every snapshot passed
    over is logged with the reason.
    """
    from eskernel.eventlog.snapshots import list_snapshots, remove_snapshots

    path = getattr(log_, "path", None)
    if path is None:
        return KernelState()
    beyond = [off for off in list_snapshots(path) if off > end]
    if beyond:
        log.warning("snapshot(s) at offset(s) %s in %s lie beyond the log's end %d (the tail "
                    "was repaired or never made durable); %s", beyond, path, end,
                    "removing them" if remove_beyond else "ignoring them")
        if remove_beyond:
            remove_snapshots(path, beyond)
    limit = end
    while limit >= 0:
        snap = log_.latest_snapshot(limit)
        if snap is None:
            break
        limit = snap.offset - 1
        try:
            state = usable_snapshot(log_, snap)
        except SnapshotCorruptError as err:
            log.warning("snapshot %s is unusable (%s); trying an older one, else replaying "
                        "the log", snap.path, err)
            continue
        return state
    return KernelState()


def usable_snapshot(log_: Any, snap: Any) -> KernelState:
    """The state of ``snap`` (a stored snapshot of ``log_``) after every check opening makes.

    Raises:
        SnapshotCorruptError: it fails its own checks, does not hold as many events as its
            offset says, or its last record or last event time differ from the log's.
    """
    from ._snapshot import decode, tail_hash
    state, tail = decode(snap.blob)
    if state.applied != snap.offset:
        raise SnapshotCorruptError(f"it holds {state.applied} events, not {snap.offset}")
    last_ts = 0
    if snap.offset:
        record = log_.read_batch(snap.offset - 1, 1)[0]
        if tail_hash(record) != tail:
            raise SnapshotCorruptError(
                f"its last record differs from the log's record {snap.offset - 1}: it "
                "belongs to another history")
        last_ts = _record_ts(record)
    if state.last_ts != last_ts:     # replay(until_time=) trusts it
        raise SnapshotCorruptError(
            f"its last event time {state.last_ts} is not its last record's {last_ts}")
    return state


def _record_ts(record: bytes) -> int:
    try:
        ts = events.decode(record).get("ts")
    except (ValueError, EskernelError):
        ts = None
    if type(ts) is not int:      # replaying the log reports the record itself
        raise SnapshotCorruptError("its last record has no event time")
    return ts


def open_durable(cls: type[Kernel], path: str | os.PathLike[str], *, durability: str, clock: Any,
                 seed: int, snapshot_every: int, snapshot_keep: int, snapshot_growth: float,
                 max_payload_bytes: int, log_options: dict[str, Any], create: Any = True) -> Kernel:
    from pathlib import Path

    from eskernel.eventlog import EventLog
    from eskernel.eventlog.errors import LogNotFoundError
    from ._validate import check_kernel_options
    check_kernel_options(clock=clock, seed=seed, max_payload_bytes=max_payload_bytes)
    unknown = sorted(set(log_options) - LOG_OPTIONS)
    if unknown:
        raise InvalidSpecError(f"Kernel.open got unknown option(s) {unknown}; the options are "
                               "durability, clock, seed, snapshot_every, snapshot_keep, "
                               "snapshot_growth, max_payload_bytes, create and the log's "
                               f"{sorted(LOG_OPTIONS)}")
    if type(create) is not bool:
        raise InvalidSpecError(f"create must be a bool, got {create!r:.80}")
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidSpecError(f"path must be a str or a path, got {path!r:.80}")
    directory = Path(path)
    if not directory.exists():
        if not create:
            raise LogNotFoundError(f"no kernel directory at {directory}; check the path, or "
                                   "pass create=True to create a kernel there")
        if not directory.parent.is_dir():
            raise LogNotFoundError(
                f"the parent directory {directory.parent} of {directory} does not exist; "
                "Kernel.open creates only the last directory of the path: check the path, "
                "or create its parents first")
    for name, value, low in (("snapshot_every", snapshot_every, 0),
                             ("snapshot_keep", snapshot_keep, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidSpecError(f"{name} must be an int >= {low}, got {value!r}")
    if (isinstance(snapshot_growth, bool) or not isinstance(snapshot_growth, (int, float))
            or not 0 <= snapshot_growth <= 1000):
        raise InvalidSpecError(f"snapshot_growth must be a number in [0, 1000], got "
                               f"{snapshot_growth!r}")
    max_record = log_options.get("max_record_bytes", 16 << 20)
    if (isinstance(max_payload_bytes, int) and isinstance(max_record, int)
            and max_payload_bytes + RECORD_OVERHEAD > max_record):
        raise InvalidSpecError(
            f"max_payload_bytes {max_payload_bytes} does not fit in a record of "
            f"max_record_bytes {max_record} (a task's record needs {RECORD_OVERHEAD} bytes "
            "more than its payload); lower max_payload_bytes or raise max_record_bytes")
    log_ = EventLog.open(path, durability=durability, create=create, **log_options)
    try:
        state = _load_snapshot(log_, log_.next_offset, remove_beyond=True)
        _replay_into(state, log_, log_.next_offset)
    except BaseException:
        log_.close()
        raise
    return cls(log_, state, clock=clock, seed=seed, snapshot_every=snapshot_every,
               max_payload_bytes=max_payload_bytes, snapshot_keep=snapshot_keep,
               snapshot_growth=float(snapshot_growth))


def replay_readonly(cls: type[Kernel], path: str | os.PathLike[str], *, until: int | None,
                    until_time: float | None) -> Kernel:
    from eskernel.eventlog import EventLog
    from ._validate import check_int, seconds_to_ns
    if until is not None and until_time is not None:
        raise InvalidSpecError(f"pass either until (an offset, got {until!r:.40}) or "
                               f"until_time (seconds, got {until_time!r:.40}), not both")
    # A time past the int64 ns range (the year 2262) holds every event: replay to the end.
    until_ns = (seconds_to_ns(min(until_time, 9.2e9) if isinstance(until_time, float)
                              and until_time < float("inf")
                              else until_time, "until_time", maximum=float("inf"))
                if until_time is not None else None)
    if until_ns is not None and until_ns > 2**63 - 1:
        until_ns = None
    reader = EventLog.open_readonly(path)
    try:
        end = reader.next_offset
        if until is not None:
            check_int(until, "until", 0, end)
            end = until
        state = _load_snapshot(reader, end if until_ns is None else reader.next_offset)
        if until_ns is not None and state.last_ts > until_ns:
            state = KernelState()
        _replay_into(state, reader, end, until_ns)
    except BaseException:
        reader.close()
        raise
    return cls(reader, state, clock=None, seed=0, snapshot_every=0, max_payload_bytes=1 << 20,
               read_only=True)
