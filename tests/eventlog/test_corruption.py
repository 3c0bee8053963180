"""Every byte of a record is covered: flipping any one of them is caught, never read back.

Not a sample of positions: each byte of a frame (length, checksum, payload, first and last)
is flipped in turn, in the middle of the last segment (corruption), at its end (a torn tail
that opening repairs) and in an older segment (reads and ``verify`` refuse it).  The
segment header is covered the same way.
"""

from __future__ import annotations

import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from eskernel.eventlog import EventLog, LogCorruptError, verify
from eskernel.eventlog.framing import HEADER_SIZE, MAGIC

from .test_checksums import crc32c_reference

# 0, 4 and 8+ byte payloads: every branch of both checksum paths.  The empty record at the
# end means a damaged record is followed by the smallest valid frame there is.
RECORDS = [b"alpha", b"x" * 13, bytes(range(1, 22)), b""]
MASKS = (0x01, 0x80, 0xFF)


def frame_start(recs: list[bytes], index: int) -> int:
    return HEADER_SIZE + sum(8 + len(r) for r in recs[:index])


def damaged_copies(tmp_path: Path, recs: list[bytes], index: int,
                   **options: int) -> Iterator[tuple[int, Path, bytes]]:
    """(byte position, log directory, segment bytes) with one byte of record ``index`` of
    the last segment flipped, for every position and mask."""
    clean = tmp_path / "clean"
    with EventLog.open(clean, **options) as log:
        log.append_many(recs)
    seg = sorted(clean.glob("*.seg"))[-1]
    first = int(seg.stem)
    original = seg.read_bytes()
    start = frame_start(recs[first:], index - first)
    for pos in range(start, start + 8 + len(recs[index])):
        for mask in MASKS:
            d = tmp_path / f"flip-{pos}-{mask}"
            shutil.copytree(clean, d)
            data = bytearray(original)
            data[pos] ^= mask
            (d / seg.name).write_bytes(bytes(data))
            yield pos, d, bytes(data)


def test_every_byte_of_a_middle_record_is_corruption(tmp_path: Path, crc_path: str) -> None:
    start = frame_start(RECORDS, 2)
    checked = 0
    for pos, d, data in damaged_copies(tmp_path, RECORDS, 2):
        seg = d / "00000000000000000000.seg"
        for check in (lambda: EventLog.open(d), lambda: verify(d),
                      lambda: EventLog.open_readonly(d)):
            with pytest.raises(LogCorruptError) as info:
                check()
            assert (info.value.segment, info.value.offset) == (str(seg), start), pos
        assert seg.read_bytes() == data         # nothing truncated
        checked += 1
    assert checked == (8 + len(RECORDS[2])) * len(MASKS)


def test_every_byte_of_the_last_record_is_a_torn_tail(tmp_path: Path, crc_path: str) -> None:
    recs = RECORDS[:3]
    start = frame_start(recs, 2)
    for pos, d, data in damaged_copies(tmp_path, recs, 2):
        assert verify(d).torn_tail_bytes == len(data) - start, pos
        with EventLog.open_readonly(d) as reader:
            assert reader.next_offset == 2, pos
        with EventLog.open(d) as log:
            assert log.repair is not None and log.repair.offset == start, pos
            assert log.next_offset == 2
            assert log.read_batch(0, 5) == recs[:2]


def test_every_byte_of_a_record_before_the_last_segment(tmp_path: Path,
                                                         crc_path: str) -> None:
    recs = [b"r%d:" % i + bytes([i]) * (i % 9) for i in range(40)]
    clean = tmp_path / "clean"
    with EventLog.open(clean, segment_bytes=300) as log:
        log.append_many(recs)
    segs = sorted(clean.glob("*.seg"))
    assert len(segs) >= 3
    victim = segs[1]
    first = int(victim.stem)
    index = first + 1                                   # the second record of the segment
    start = frame_start(recs[first:], 1)
    original = victim.read_bytes()
    for pos in range(start, start + 8 + len(recs[index])):
        for mask in MASKS:
            data = bytearray(original)
            data[pos] ^= mask
            victim.write_bytes(bytes(data))
            with pytest.raises(LogCorruptError) as info:
                verify(clean)
            assert (info.value.segment, info.value.offset) == (str(victim), start), pos
            with EventLog.open_readonly(clean) as reader:
                assert reader.read_batch(0, index) == recs[:index]
                with pytest.raises(LogCorruptError):
                    reader.read_batch(0, len(recs))
    victim.write_bytes(original)
    assert verify(clean).records == len(recs)


# ---- the segment header: its checksum is checked before the fields it covers -------------

def test_every_byte_of_a_segment_header_is_checked(tmp_path: Path, crc_path: str) -> None:
    clean = tmp_path / "clean"
    with EventLog.open(clean) as log:
        log.append_many(RECORDS)
    seg = clean / "00000000000000000000.seg"
    original = seg.read_bytes()
    for pos in range(HEADER_SIZE):
        data = bytearray(original)
        data[pos] ^= 0x01
        seg.write_bytes(bytes(data))
        expected = "not an eskernel log segment" if pos < len(MAGIC) else "corrupt header"
        for check in (lambda: EventLog.open(clean), lambda: verify(clean)):
            with pytest.raises(LogCorruptError, match=expected) as info:
                check()
            assert (info.value.segment, info.value.offset) == (str(seg), 0)
            assert "upgrade" not in str(info.value)
    seg.write_bytes(original)
    assert verify(clean).records == len(RECORDS)


@pytest.mark.parametrize("field, value", [("version", 2), ("length", 48)])
def test_damaged_header_fields_are_damage_not_a_newer_format(tmp_path: Path, field: str,
                                                              value: int) -> None:
    with EventLog.open(tmp_path) as log:
        log.append(b"a")
    seg = tmp_path / "00000000000000000000.seg"
    data = bytearray(seg.read_bytes())
    if field == "version":
        struct.pack_into("<H", data, 8, value)
    else:
        struct.pack_into("<I", data, 12, value)
    seg.write_bytes(bytes(data))
    with pytest.raises(LogCorruptError, match="corrupt header") as info:
        EventLog.open(tmp_path)
    assert "upgrade" not in str(info.value)
    # With its checksum intact, the same field is a format this eskernel does not read.
    struct.pack_into("<I", data, 28, crc32c_reference(bytes(data[:28])))
    seg.write_bytes(bytes(data))
    with pytest.raises(LogCorruptError, match="upgrade eskernel"):
        EventLog.open(tmp_path)
