"""Known answers for the checksums and the frame layout, from an independent implementation.

The writer and every reader share one compiled ``crc32c_frame``, so a wrong checksum would
agree with itself; these tests hold it, the segment header and the bytes the writer puts on
disk against a bit-at-a-time CRC32C written here, on the SSE4.2 path and on the table path.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest

from eskernel.eventlog import EventLog, _framing
from eskernel.eventlog.framing import HEADER_SIZE, MAGIC, VERSION, encode_frame, segment_header

LENGTHS = [0, 1, 3, 4, 7, 8, 15, 16, 63, 64, 4096]
RANDOM_LENGTHS = random.Random(21).sample(range(2, 3000), 12)


def crc32c_reference(data: bytes, crc: int = 0) -> int:
    """CRC32C one bit at a time (reflected polynomial 0x82F63B78): slow and obviously right."""
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def frame_reference(payload: bytes) -> bytes:
    length = struct.pack("<I", len(payload))
    return length + struct.pack("<I", crc32c_reference(length + payload)) + payload


def header_reference(first_offset: int) -> bytes:
    body = struct.pack("<8sHHIQI", MAGIC, VERSION, 0, HEADER_SIZE, first_offset, 0)
    return body + struct.pack("<I", crc32c_reference(body))


def payload(n: int, seed: int = 0) -> bytes:
    return random.Random(n * 7919 + seed).randbytes(n)


def test_reference_crc32c_check_value() -> None:
    assert crc32c_reference(b"123456789") == 0xE3069283       # the iSCSI check value
    assert crc32c_reference(b"") == 0
    assert crc32c_reference(b"56789", crc32c_reference(b"1234")) == 0xE3069283


def test_table_path_can_be_forced() -> None:
    assert _framing._force_table_crc(True) is False
    try:
        assert _framing._force_table_crc(True) is True
        assert _framing.crc32c(b"123456789") == 0xE3069283
    finally:
        _framing._force_table_crc(False)


@pytest.mark.parametrize("n", LENGTHS + RANDOM_LENGTHS)
def test_frame_crc_known_answers(crc_path: str, n: int) -> None:
    data = payload(n)
    expected = crc32c_reference(struct.pack("<I", n) + data)
    assert _framing.frame_crc(data) == expected
    assert _framing.crc32c(data) == crc32c_reference(data)
    # Every alignment of the payload in memory (the table path aligns to 8 bytes first).
    for shift in range(1, 8):
        padded = bytes(shift) + data + bytes(8)
        assert _framing.frame_crc(memoryview(padded)[shift:shift + n]) == expected


@pytest.mark.parametrize("first", [0, 1, 255, 2**32 + 5, 2**62 - 1])
def test_segment_header_known_answer(crc_path: str, first: int) -> None:
    assert segment_header(first) == header_reference(first)


@pytest.mark.parametrize("mode", ["write", "fsync", "buffer"])
def test_written_bytes_match_the_reference_encoders(tmp_path: Path, crc_path: str,
                                                    mode: str) -> None:
    recs = [payload(n, seed=1) for n in LENGTHS + RANDOM_LENGTHS]
    with EventLog.open(tmp_path, mode) as log:
        for r in recs[:5]:
            log.append(r)
        log.append_many(recs[5:])
    data = (tmp_path / "00000000000000000000.seg").read_bytes()
    assert data == segment_header(0) + b"".join(encode_frame(r) for r in recs)
    assert data == header_reference(0) + b"".join(frame_reference(r) for r in recs)
    with EventLog.open_readonly(tmp_path) as reader:     # the scanner verifies on this path
        assert reader.read_batch(0, len(recs)) == recs


def test_the_paths_agree_on_frames(tmp_path: Path) -> None:
    """Written on one path, verified on the other: a log moves between machines."""
    recs = [payload(n, seed=2) for n in LENGTHS]
    was = _framing._force_table_crc(True)
    try:
        with EventLog.open(tmp_path / "table") as log:
            log.append_many(recs)
    finally:
        _framing._force_table_crc(was)
    with EventLog.open(tmp_path / "table") as log:
        assert log.repair is None and log.read_batch(0, 100) == recs
