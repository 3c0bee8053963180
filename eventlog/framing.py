"""The on-disk format of the event log: segment files, their header, and record frames.

A log is a directory of segment files named by the offset of their first record,
``<20-digit first offset>.seg`` (for example ``00000000000000000000.seg``), plus a ``LOCK``
file and snapshot files (``<20-digit offset>.snap``).  Offsets are dense from 0 and continue
across segments: a segment's first offset is the previous segment's first offset plus its
record count.

Segment header, 32 bytes, little-endian::

    0  magic          8 bytes  b"\\x89ESKLOG\\n"   (a foreign file is rejected)
    8  version        u16      1
    10 flags          u16      0
    12 header length  u32      32
    16 first offset   u64      must equal the number in the file name
    24 reserved       u32      0
    28 header crc     u32      CRC32C of bytes 0..27

Then frames, back to back, until the end of the file::

    0  length         u32      payload bytes (0 is allowed)
    4  crc            u32      CRC32C of the 4 length bytes followed by the payload
    8  payload        length bytes

**Why one checksum per record rather than per batch (as Kafka does).**  In ``write`` and
``fsync`` mode records reach the file one at a time, and a follower tailing the log must be
able to hand out each record as soon as it is complete; per-record frames make "complete"
a local property.  A torn write costs at most the record it tore, never a whole batch of
acknowledged neighbours, and a reader can start at any offset without decoding a batch.
The price is 8 bytes per record (4% of a 200-byte event) and one CRC32C per record, which
with the SSE4.2 instruction is ~26 ns: well inside every throughput target.  The checksum
covers the length field, so a flipped length bit is detected, and CRC32C with the usual
inverted init/final value never checks for an all-zero header: zero bytes (space a crash
or a filesystem left unwritten) can never be mistaken for an empty record.

**End of data, torn tails and corruption** (the rule opening, reading and ``verify`` apply;
``p`` is the first frame in a segment that is incomplete, all-zero or fails its checksum):

- In the *last* segment, the bytes from ``p`` to the end of the file are a **torn tail** if
  the frame header at ``p`` is all zero (unwritten space), or if no complete,
  checksum-valid frame starts anywhere after ``p``.  A writer opening the log truncates it
  at ``p`` and reports it (:class:`~eskernel.eventlog.RepairReport`, and a ``logging`` warning).
  A read-only reader simply stops at ``p`` (the writer may still be writing there).
- Otherwise (a valid frame follows the bad one) it is **corruption**:
  :class:`~eskernel.eventlog.LogCorruptError` names the segment file and ``p``, the byte offset of
  the bad frame's first byte.  Nothing is truncated or skipped.
- In any *earlier* segment every byte must be a valid frame and the record count must
  equal the next segment's first offset minus this one's; anything else is corruption.
  Opening checks every header and walks the frame lengths of the second-to-last segment;
  reads verify every checksum they pass; :func:`eskernel.eventlog.verify` checks everything.

Example:

>>> frame = encode_frame(b"hello")
>>> len(frame), frame[:4]
(13, b'\\x05\\x00\\x00\\x00')
>>> segment_name(42)
'00000000000000000042.seg'
>>> parse_segment_name('00000000000000000042.seg')
42
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

from ._framing import crc32c, frame_crc, segment_header
from .errors import LogCorruptError

__all__ = [
    "FRAME_HEADER_SIZE",
    "HEADER_SIZE",
    "MAGIC",
    "MAX_RECORD_LIMIT",
    "VERSION",
    "crc32c",
    "decode_header",
    "encode_frame",
    "parse_segment_name",
    "segment_header",
    "segment_name",
]

MAGIC = b"\x89ESKLOG\n"
VERSION = 1
HEADER_SIZE = 32
FRAME_HEADER_SIZE = 8
MAX_RECORD_LIMIT = 2**31 - 1 - FRAME_HEADER_SIZE - HEADER_SIZE
SEGMENT_SUFFIX = ".seg"
_HEADER = struct.Struct("<8sHHIQII")
_NAME = re.compile(r"^(\d{20})\.seg$")


def segment_name(first_offset: int) -> str:
    """File name of the segment whose first record has offset ``first_offset``."""
    return f"{first_offset:020d}{SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    """First offset encoded in a segment file name, or ``None`` if it is not one."""
    m = _NAME.match(name)
    return int(m.group(1)) if m else None


def encode_frame(payload: bytes) -> bytes:
    """One frame (length, CRC32C, payload): the reference the compiled writer must match."""
    return struct.pack("<II", len(payload), frame_crc(payload)) + bytes(payload)


def decode_header(data: bytes, path: Path | str) -> int:
    """Validate a segment header and return its first offset.

    The checksum is checked before any field it covers is interpreted, so a damaged version
    or length field is reported as damage, never as a format from a newer eskernel.  Only the
    magic comes first: a file without it is not a segment at all.

    Raises:
        LogCorruptError: short, foreign (bad magic), bad header checksum, or unknown version.
    """
    if len(data) < HEADER_SIZE:
        raise LogCorruptError(
            f"segment {path} is {len(data)} bytes, shorter than its {HEADER_SIZE}-byte "
            "header; restore it from a backup or remove it if it holds no records",
            segment=str(path), offset=0)
    magic, version, _flags, hlen, first, _res, crc = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise LogCorruptError(
            f"{path} is not an eskernel log segment (magic {magic!r}); move foreign files "
            "out of the log directory", segment=str(path), offset=0)
    if crc32c(data[:28]) != crc:
        raise LogCorruptError(
            f"segment {path} has a corrupt header (checksum mismatch); restore it from a "
            "backup", segment=str(path), offset=0)
    if version != VERSION or hlen != HEADER_SIZE:
        raise LogCorruptError(
            f"segment {path} has format version {version} (header {hlen} bytes); this "
            f"eskernel reads version {VERSION}: upgrade eskernel", segment=str(path), offset=0)
    return int(first)
