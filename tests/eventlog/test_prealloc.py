"""fsync mode preallocates segment space past the last record: readers, verification and
recovery find the end of the records in the zero-filled tail, a crash leaves a tail that
opening repairs, and rolls and clean closes trim it."""

from __future__ import annotations

import shutil
from pathlib import Path

from eskernel.eventlog import EventLog, verify

from .contract import records

SEG0 = "00000000000000000000.seg"


def _data_end(seg: Path, n_records: list[bytes]) -> int:
    return 32 + sum(8 + len(r) for r in n_records)


def test_the_open_segment_is_preallocated_and_readers_stop_at_the_records(tmp_path):
    recs = records(20)
    with EventLog.open(tmp_path, "fsync") as log:
        log.append_many(recs[:10])
        for r in recs[10:]:
            log.append(r)
        seg = tmp_path / SEG0
        end = _data_end(seg, recs)
        data = seg.read_bytes()
        assert len(data) > end and not any(data[end:])       # zeros past the records
        with EventLog.open_readonly(tmp_path) as reader:       # a live reader
            assert reader.read_batch(0, 100) == recs
            log.append(b"more")
            assert reader.read_batch(20, 10) == [b"more"]
        report = verify(tmp_path)                              # unwritten space, no damage
        assert report.records == 21 and report.torn_tail_bytes == len(data) - end - 12
    assert seg.stat().st_size == end + 12                      # a clean close trims it
    assert verify(tmp_path).torn_tail_bytes == 0


def test_a_crash_with_a_preallocated_tail_recovers_every_record(tmp_path, caplog):
    recs = records(30)
    live = tmp_path / "live"
    log = EventLog.open(live, "fsync")
    log.append_many(recs[:25])
    for r in recs[25:]:
        log.append(r)
    crashed = tmp_path / "crashed"                 # the files as a crash leaves them
    shutil.copytree(live, crashed, ignore=shutil.ignore_patterns("LOCK"))
    log.close()
    size = (crashed / SEG0).stat().st_size
    end = _data_end(crashed / SEG0, recs)
    assert size > end
    with EventLog.open(crashed, "fsync") as log:
        assert log.repair is not None and log.repair.offset == end
        assert log.repair.bytes_dropped == size - end and log.next_offset == 30
        assert log.append(b"after") == 30            # right after the last record
        assert log.read_batch(0, 100) == recs + [b"after"]
    with EventLog.open(crashed, "fsync") as log:
        assert log.repair is None and log.read_batch(0, 100) == recs + [b"after"]
    assert (crashed / SEG0).stat().st_size == end + 8 + len(b"after")


def test_rolled_segments_are_trimmed_and_a_crash_after_a_roll_recovers(tmp_path):
    recs = records(200)
    live = tmp_path / "live"
    log = EventLog.open(live, "fsync", segment_bytes=2048)
    for r in recs:
        log.append(r)
    segs = sorted(live.glob("*.seg"))
    assert len(segs) > 3
    for seg in segs[:-1]:                          # every finished segment ends at a frame
        data = seg.read_bytes()
        assert data[-8:] != bytes(8)
    crashed = tmp_path / "crashed"
    shutil.copytree(live, crashed, ignore=shutil.ignore_patterns("LOCK"))
    log.close()
    with EventLog.open(crashed, "fsync", segment_bytes=2048) as log:
        assert log.next_offset == 200
        assert log.read_batch(0, 1000) == recs
        for i in range(50):
            log.append(b"x%d" % i)
    assert verify(crashed).records == 250


def test_other_modes_do_not_preallocate(tmp_path):
    for mode in ("write", "buffer"):
        with EventLog.open(tmp_path / mode, mode) as log:
            log.append_many(records(5))
            log.flush()
            assert (tmp_path / mode / SEG0).stat().st_size == _data_end(None, records(5))
