"""Fault injection: refused writes and syncs, flipped bytes, torn and zeroed tails."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pytest

from eskernel.eventlog import (
    EventLog,
    LogCorruptError,
    LogFailedError,
    LogWriteError,
    verify,
)
from eskernel.eventlog import reader as reader_module
from eskernel.eventlog.framing import HEADER_SIZE

from .contract import records
from .faultio import FaultyIO, io_hook


def _contents(path: Path) -> list[bytes]:
    with EventLog.open(path) as log:
        return log.read_batch(0, 10**6)


@pytest.mark.parametrize("mode", ["write", "fsync", "buffer"])
@pytest.mark.parametrize("partial", [None, 5])
def test_enospc_fails_the_log_until_reopened(tmp_path: Path, mode: str,
                                             partial: int | None) -> None:
    with io_hook(FaultyIO()) as io:
        log = EventLog.open(tmp_path, mode)
        acked = records(10)
        log.append_many(acked[:5])
        for r in acked[5:]:
            log.append(r)
        log.flush()
        io.write_errno, io.partial = errno.ENOSPC, partial
        with pytest.raises(LogWriteError) as info:
            log.append(b"refused")
            log.flush()       # buffer mode: the write happens here
        assert not isinstance(info.value, LogFailedError)
        assert isinstance(info.value.__cause__, OSError)
        assert info.value.__cause__.errno == errno.ENOSPC
        assert "reopen" in str(info.value)
        for call in (lambda: log.append(b"x"), lambda: log.append_many([b"x"]), log.flush,
                     log.sync, lambda: log.read_batch(0, 1)):
            with pytest.raises(LogFailedError) as failed:
                call()
            assert failed.value.__cause__ is info.value.__cause__
        log.close()
        io.write_errno = None
        reopened = EventLog.open(tmp_path, mode)
        try:
            assert reopened.read_batch(0, 100) == acked
            assert (reopened.repair is not None) == bool(partial)
            assert reopened.append(b"after") == 10
        finally:
            reopened.close()


def test_eio_on_fdatasync_is_a_write_error(tmp_path: Path) -> None:
    with io_hook(FaultyIO()) as io, EventLog.open(tmp_path, "fsync") as log:
        log.append_many(records(3))
        assert io.syncs == 1
        io.sync_errno = errno.EIO
        with pytest.raises(LogWriteError) as info:
            log.append(b"maybe")
        assert info.value.__cause__.errno == errno.EIO  # type: ignore[union-attr]
        with pytest.raises(LogFailedError):
            log.append(b"no")
    got = _contents(tmp_path)
    assert got[:3] == records(3)       # every acknowledged record
    assert got in (records(3), records(3) + [b"maybe"])   # nothing else


def test_flipped_byte_in_last_segment_is_corruption_on_open(tmp_path: Path) -> None:
    with EventLog.open(tmp_path) as log:
        log.append_many(records(20))
    seg = tmp_path / "00000000000000000000.seg"
    frames = [HEADER_SIZE]
    for r in records(20):
        frames.append(frames[-1] + 8 + len(r))
    data = bytearray(seg.read_bytes())
    data[frames[7] + 8 + 2] ^= 0x40           # a payload byte of record 7
    seg.write_bytes(bytes(data))
    with pytest.raises(LogCorruptError) as info:
        EventLog.open(tmp_path)
    assert (info.value.segment, info.value.offset) == (str(seg), frames[7])
    assert str(seg) in str(info.value) and str(frames[7]) in str(info.value)
    with pytest.raises(LogCorruptError) as info:
        verify(tmp_path)
    assert (info.value.segment, info.value.offset) == (str(seg), frames[7])
    # Readers stop at a torn tail, but damage followed by valid records is reported to them
    # too: a projection or an audit must never see a silently shortened log.
    with pytest.raises(LogCorruptError) as info:
        EventLog.open_readonly(tmp_path)
    assert (info.value.segment, info.value.offset) == (str(seg), frames[7])
    assert seg.read_bytes() == bytes(data)            # nothing was truncated


def test_flipped_length_byte_is_corruption_not_a_torn_tail(tmp_path: Path) -> None:
    with EventLog.open(tmp_path) as log:
        log.append_many(records(20))
    seg = tmp_path / "00000000000000000000.seg"
    data = bytearray(seg.read_bytes())
    data[HEADER_SIZE + 3] = 0x7F              # record 0's length now runs past the end
    seg.write_bytes(bytes(data))
    with pytest.raises(LogCorruptError) as info:
        EventLog.open(tmp_path)
    assert (info.value.segment, info.value.offset) == (str(seg), HEADER_SIZE)


def test_flipped_byte_in_older_segment_is_found_by_reads(tmp_path: Path) -> None:
    recs = records(100)
    with EventLog.open(tmp_path, segment_bytes=400) as log:
        log.append_many(recs)
    segs = sorted(tmp_path.glob("*.seg"))
    victim = segs[1]
    first = int(victim.stem)
    data = bytearray(victim.read_bytes())
    pos = HEADER_SIZE + 8 + len(recs[first]) + 8 + len(recs[first + 1])   # record first+2
    data[pos + 8] ^= 0x01
    victim.write_bytes(bytes(data))
    with EventLog.open(tmp_path, segment_bytes=400) as log:   # open checks only the tail
        assert log.read_batch(0, first + 2) == recs[:first + 2]
        with pytest.raises(LogCorruptError) as info:
            log.read_batch(0, 100)
        assert (info.value.segment, info.value.offset) == (str(victim), pos)
        with pytest.raises(LogCorruptError):
            list(log.read(first + 2, first + 3))
        with pytest.raises(LogCorruptError):   # a search checks every record it skips
            list(log.read_containing(b"no record has this"))
    with pytest.raises(LogCorruptError) as info:
        verify(tmp_path)
    assert (info.value.segment, info.value.offset) == (str(victim), pos)


def test_exports_check_every_record_and_leave_nothing_on_corruption(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader_module, "MIN_PART_RECORDS", 5)
    objects = [b'{"n":%d}' % i for i in range(100)]
    obj_dir = tmp_path / "objects"
    with EventLog.open(obj_dir, segment_bytes=400) as log:
        log.append_many(objects)
    victim = sorted(obj_dir.glob("*.seg"))[2]
    data = bytearray(victim.read_bytes())
    data[HEADER_SIZE + 8 + 2] ^= 0x01
    victim.write_bytes(bytes(data))
    dest = tmp_path / "export"
    dest.mkdir()
    with EventLog.open(obj_dir, segment_bytes=400) as log:
        for parts in (1, 2, 3):
            with pytest.raises(LogCorruptError) as info:
                log.export_json_parts(dest, parts=parts)
            assert (info.value.segment, info.value.offset) == (str(victim), HEADER_SIZE)
            assert list(dest.iterdir()) == []
        with pytest.raises(LogCorruptError):
            log.export_json_lines(dest / "one.jsonl")
    assert list(dest.iterdir()) == []


def test_torn_tail_is_repaired_and_reported(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    with EventLog.open(tmp_path) as log:
        log.append_many(records(10))
    seg = tmp_path / "00000000000000000000.seg"
    size = seg.stat().st_size
    with open(seg, "r+b") as f:
        f.truncate(size - 3)                   # the last record loses its last 3 bytes
    assert verify(tmp_path).torn_tail_bytes == len(records(10)[-1]) + 8 - 3
    with EventLog.open_readonly(tmp_path) as reader:
        assert reader.next_offset == 9         # readers see only complete records
    assert seg.stat().st_size == size - 3      # ... and repair nothing
    with caplog.at_level(logging.WARNING, logger="eskernel.eventlog"):
        log = EventLog.open(tmp_path)
    with log:
        report = log.repair
        assert report is not None
        assert report.segment == seg
        assert report.offset == size - 8 - len(records(10)[-1])
        assert report.bytes_dropped == len(records(10)[-1]) + 8 - 3
        assert report.next_offset == 9 == log.next_offset
        assert "torn tail" in caplog.text and str(seg) in caplog.text
        assert log.append(b"new") == 9
    assert _contents(tmp_path) == records(9) + [b"new"]


def test_zero_filled_tail_is_unwritten_space(tmp_path: Path) -> None:
    with EventLog.open(tmp_path, "fsync") as log:
        log.append_many(records(5))
    seg = tmp_path / "00000000000000000000.seg"
    with open(seg, "ab") as f:
        f.write(bytes(4096))
    with EventLog.open_readonly(tmp_path) as reader:
        assert reader.read_batch(0, 10) == records(5)
    with EventLog.open(tmp_path) as log:
        assert log.repair is not None and log.repair.bytes_dropped == 4096
        assert log.next_offset == 5


def test_foreign_segment_file_is_rejected(tmp_path: Path) -> None:
    with EventLog.open(tmp_path) as log:
        log.append(b"a")
    (tmp_path / "00000000000000000001.seg").write_bytes(b"PK\x03\x04" + bytes(60))
    with pytest.raises(LogCorruptError, match="not an eskernel log segment") as info:
        EventLog.open(tmp_path)
    assert info.value.segment == str(tmp_path / "00000000000000000001.seg")
    with pytest.raises(LogCorruptError):
        verify(tmp_path)


def test_missing_records_before_a_roll_are_corruption(tmp_path: Path) -> None:
    recs = records(60)
    with EventLog.open(tmp_path, segment_bytes=400) as log:
        log.append_many(recs)
    segs = sorted(tmp_path.glob("*.seg"))
    second_last = segs[-2]
    data = second_last.read_bytes()
    last_len = len(recs[int(segs[-1].stem) - 1])
    second_last.write_bytes(data[:len(data) - 8 - last_len])   # drop its last record
    with pytest.raises(LogCorruptError) as info:
        EventLog.open(tmp_path, segment_bytes=400)
    assert info.value.segment == str(second_last)
    assert "next segment starts" in str(info.value)
