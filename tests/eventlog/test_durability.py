"""Acknowledged means durable: the group commit, failed syncs and failed writes.

Every test here goes through the writer's I/O hook (``tests/eventlog/faultio.py``), which
stands in for ``write``/``fdatasync`` on the production code path.  "Nothing completes while
a call is held" is checked by waiting 0.3 s for a completion that must not come: a correct
writer never lets it through, however long the wait.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from eskernel.eventlog import EventLog, LogFailedError, LogWriteError
from eskernel.eventlog.framing import HEADER_SIZE, encode_frame, segment_header

from .contract import records
from .faultio import ChoppyIO, CutIO, HoldIO, PassThroughIO, TraceIO, io_hook

SEG0 = "00000000000000000000.seg"
HELD = 0.3      # seconds a held call must keep every dependent call waiting


class Call(threading.Thread):
    """Runs one log call in a thread; records its result or error and what was durable
    (the hook's ``durable_bytes``) the moment it returned."""

    def __init__(self, fn: Callable[[], object], io: PassThroughIO) -> None:
        super().__init__(daemon=True)
        self.fn, self.io = fn, io
        self.done = threading.Event()
        self.result: object = None
        self.error: BaseException | None = None
        self.durable_at_return = -1

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as e:      # noqa: BLE001 - handed to the test
            self.error = e
        self.durable_at_return = self.io.durable_bytes
        self.done.set()


def _start(fn: Callable[[], object], io: PassThroughIO) -> Call:
    call = Call(fn, io)
    call.start()
    return call


def _end_of(offset: int, recs: list[bytes]) -> int:
    """Byte end of record ``offset`` in the first segment holding ``recs``."""
    return HEADER_SIZE + sum(8 + len(r) for r in recs[:offset + 1])


def _wait_then_release(io: HoldIO, leader: Call, waiting: list[Call]) -> None:
    """Assert that no call returns while ``io`` holds the leader's call, then release it
    (when the assertion fails too, so the log can close)."""
    try:
        assert not leader.done.wait(HELD), "the held call returned"
        for call in waiting:
            assert not call.done.wait(HELD / 4), (
                f"{call.fn} returned while the {io.what} it needs was held")
    finally:
        io.release.set()


@pytest.mark.parametrize("mode, held", [("fsync", "fdatasync"), ("fsync", "write"),
                                        ("write", "write")])
def test_nothing_completes_while_the_io_it_needs_is_held(tmp_path: Path, mode: str,
                                                         held: str) -> None:
    with io_hook(HoldIO(held)) as io, EventLog.open(tmp_path, mode) as log:
        log.append(b"before")
        io.armed = True
        leader = _start(lambda: log.append(b"a"), io)
        assert io.entered.wait(10)
        # Each of these needs the held call (or one after it) to finish first.
        waiting = [_start(log.sync, io) if mode == "fsync" else _start(log.flush, io),
                   _start(lambda: log.append(b"c"), io),
                   _start(lambda: log.append_many([b"d", b"e"]), io)]
        _wait_then_release(io, leader, waiting)
        for call in [leader, *waiting]:
            assert call.done.wait(10)
            assert call.error is None, call.error
        assert leader.result == 1
        offsets = sorted([waiting[1].result, waiting[2].result])        # type: ignore[type-var]
        assert offsets == [2, 3]
        recs = [b"before", b"a"] + ([b"c", b"d", b"e"] if waiting[1].result == 2
                                    else [b"d", b"e", b"c"])
        if mode == "fsync":
            # Each returned only once an fdatasync covering its records had returned.
            assert leader.durable_at_return >= _end_of(1, recs)
            assert waiting[0].durable_at_return >= _end_of(1, recs)
            assert waiting[1].durable_at_return >= _end_of(recs.index(b"c"), recs)
            assert waiting[2].durable_at_return >= _end_of(recs.index(b"e"), recs)
        assert log.read_batch(0, 10) == recs


@pytest.mark.parametrize("mode, kind", [("fsync", "append"), ("fsync", "append_many"),
                                        ("write", "sync"), ("buffer", "sync")])
def test_each_acknowledgement_follows_its_own_sync(tmp_path: Path, mode: str,
                                                   kind: str) -> None:
    with io_hook(PassThroughIO()) as io, EventLog.open(tmp_path, mode) as log:
        seg = tmp_path / SEG0
        expected = HEADER_SIZE
        for i, r in enumerate(records(12)):
            syncs = io.syncs
            if kind == "append":
                assert log.append(r) == i
            elif kind == "append_many":
                assert log.append_many([r]) == i
            else:
                log.append(r)
                assert io.syncs == syncs
                log.sync()
            expected += 8 + len(r)
            assert io.syncs == syncs + 1
            assert io.durable_bytes == expected
            data = seg.read_bytes()    # past the records: only the space fsync preallocates
            assert len(data) >= expected and not any(data[expected:])
    assert seg.stat().st_size == expected      # a clean close trims preallocated space


def test_failed_fdatasync_fails_every_waiter_and_is_never_retried(tmp_path: Path) -> None:
    with io_hook(HoldIO("fdatasync", fail=errno.EIO)) as io:
        log = EventLog.open(tmp_path, "fsync")
        acked = records(5)
        log.append_many(acked)
        io.armed = True
        leader = _start(lambda: log.append(b"a"), io)
        assert io.entered.wait(10)
        waiting = [_start(lambda: log.append(b"b"), io),
                   _start(lambda: log.append_many([b"c", b"d"]), io),
                   _start(log.sync, io)]
        syncs = io.syncs
        _wait_then_release(io, leader, waiting)
        for call in [leader, *waiting]:
            assert call.done.wait(10)
        # Nobody was told their record is durable: the leader sees the EIO, the waiters
        # (whose records were never written) the failed log.
        assert isinstance(leader.error, LogWriteError), leader.error
        assert not isinstance(leader.error, LogFailedError)
        cause = leader.error.__cause__
        assert isinstance(cause, OSError) and cause.errno == errno.EIO
        for call in waiting:
            assert isinstance(call.error, LogFailedError), call.error
            assert call.error.__cause__ is cause
        # A failed fdatasync cannot be retried and trusted: every later call refuses, and
        # none of them (nor close) writes or syncs again.
        writes = io.writes
        for refused in (lambda: log.append(b"x"), lambda: log.append_many([b"x"]), log.sync,
                        log.flush):
            with pytest.raises(LogFailedError):
                refused()
        log.close()
        assert (io.writes, io.syncs) == (writes, syncs)
    with EventLog.open(tmp_path, "fsync") as reopened:
        got = reopened.read_batch(0, 100)
        assert got in (acked, acked + [b"a"])       # "a" was written, never acknowledged
        assert reopened.append(b"after") == len(got)


@pytest.mark.parametrize("mode", ["write", "fsync", "buffer"])
@pytest.mark.parametrize("most", [1, 7, 4096])
def test_short_writes_are_completed(tmp_path: Path, mode: str, most: int) -> None:
    recs = records(40) + [bytes(range(256)) * 300]      # 76 KB: written without the GIL
    with io_hook(ChoppyIO(most)) as io:
        with EventLog.open(tmp_path, mode, segment_bytes=4096) as log:
            for r in recs[:10]:
                log.append(r)
            log.append_many(recs[10:])
        assert io.short > 0
    with EventLog.open(tmp_path, segment_bytes=4096) as log:
        assert log.repair is None
        assert log.read_batch(0, 100) == recs
    first = sorted(tmp_path.glob("*.seg"))[0].read_bytes()
    assert first.startswith(segment_header(0) + b"".join(encode_frame(r) for r in recs[:10]))


BATCH = [b"one", b"two-" * 5, b"", b"four" * 9, b"five"]
FRAMES = [8 + len(r) for r in BATCH]
BOUNDARIES = [sum(FRAMES[:k]) for k in range(len(BATCH) + 1)]


@pytest.mark.parametrize("mode", ["write", "fsync"])
@pytest.mark.parametrize("cut", [0, 1, 7, BOUNDARIES[2], BOUNDARIES[2] + 3,
                                 BOUNDARIES[-1] - 1])
def test_enospc_in_the_middle_of_a_batch(tmp_path: Path, mode: str, cut: int) -> None:
    acked = records(6)
    with io_hook(CutIO(cut)) as io:
        log = EventLog.open(tmp_path, mode)
        log.append_many(acked)
        io.armed = True
        with pytest.raises(LogWriteError) as info:
            log.append_many(BATCH)
        assert isinstance(info.value.__cause__, OSError)
        assert info.value.__cause__.errno == errno.ENOSPC
        with pytest.raises(LogFailedError):
            log.append(b"x")
        log.close()
    whole = sum(1 for b in BOUNDARIES[1:] if b <= cut)     # frames that landed complete
    with EventLog.open(tmp_path, mode) as reopened:
        assert (reopened.repair is None) == (cut in BOUNDARIES)
        assert reopened.read_batch(0, 100) == acked + BATCH[:whole]


def test_enospc_on_a_segment_roll(tmp_path: Path) -> None:
    recs = records(30)
    with io_hook(CutIO(0, only=".seg.tmp")) as io:
        log = EventLog.open(tmp_path, "fsync", segment_bytes=400)
        n = 0
        while len(list(tmp_path.glob("*.seg"))) < 2:
            log.append(recs[n])
            n += 1
        io.armed = True
        with pytest.raises(LogWriteError, match="segment roll"):
            for r in recs[n:]:
                log.append(r)
                n += 1
        with pytest.raises(LogFailedError):
            log.append(b"x")
        log.close()
    with EventLog.open(tmp_path, "fsync", segment_bytes=400) as reopened:
        assert reopened.repair is None
        assert reopened.read_batch(0, 100) == recs[:n]
        assert reopened.append(b"after") == n
    assert not list(tmp_path.glob("*.tmp"))


def test_a_new_segment_is_durable_before_a_record_goes_in(tmp_path: Path) -> None:
    with io_hook(TraceIO()) as io, EventLog.open(tmp_path, "fsync", segment_bytes=300) as log:
        for r in records(40):
            log.append(r)
    names = [p.name for p in sorted(tmp_path.glob("*.seg"))[1:]]
    assert len(names) >= 3
    for name in names:
        first_write = io.trace.index(("write", name))
        # header written and synced under a temporary name, renamed, directory synced
        steps = [("write", name + ".tmp"), ("fdatasync", name + ".tmp"),
                 ("fsync", tmp_path.name)]
        assert io.trace[first_write - 3:first_write] == steps, io.trace
