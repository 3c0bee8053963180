"""The named plain-Python baseline for the event-log benchmarks: ``baseline-file``.

What a careful engineer writes without a compiled core: one buffered ``file.write`` of an
8-byte header (length, ``zlib.crc32``) plus the payload per record.  Per mode:

- buffer: the ``io.BufferedWriter`` (1 MiB buffer) decides when to write;
- write: ``flush()`` after every append (one ``write(2)`` each: survives a killed process);
- fsync: ``flush()`` + ``os.fdatasync`` once per batch (group commit by batching).

Reads parse the file with ``struct`` and verify ``zlib.crc32``.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

_HEAD = struct.Struct("<II")


class BaselineFileLog:
    """Append-only file of (length, crc32, payload) records."""

    def __init__(self, directory: Path, durability: str) -> None:
        self.path = Path(directory) / "baseline.log"
        self.durability = durability
        self._f = open(self.path, "ab", buffering=1 << 20)
        self.next_offset = 0

    def append(self, record: bytes) -> int:
        self._f.write(_HEAD.pack(len(record), zlib.crc32(record)) + record)
        if self.durability == "write":
            self._f.flush()
        elif self.durability == "fsync":
            self._f.flush()
            os.fdatasync(self._f.fileno())
        off = self.next_offset
        self.next_offset = off + 1
        return off

    def append_many(self, records: Sequence[bytes]) -> int:
        write, pack, crc = self._f.write, _HEAD.pack, zlib.crc32
        for record in records:
            write(pack(len(record), crc(record)) + record)
        if self.durability in ("write", "fsync"):
            self._f.flush()
        if self.durability == "fsync":
            os.fdatasync(self._f.fileno())
        first = self.next_offset
        self.next_offset = first + len(records)
        return first

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def baseline_read(path: Path) -> list[bytes]:
    """Every record of a baseline file, checksums verified."""
    data = Path(path).read_bytes()
    out = []
    pos, end = 0, len(data)
    unpack, crc = _HEAD.unpack_from, zlib.crc32
    while pos + 8 <= end:
        length, check = unpack(data, pos)
        payload = data[pos + 8:pos + 8 + length]
        if len(payload) != length or crc(payload) != check:
            raise ValueError(f"bad record at byte {pos}")
        out.append(payload)
        pos += 8 + length
    return out


def baseline_export_json_lines(records: list[bytes], dest: Path, start: int = 0) -> int:
    """Inject ``"offset":N,`` after each record's ``{`` in Python and write JSON lines."""
    with open(dest, "wb") as f:
        f.write(b"".join(b'{"offset":%d,%s\n' % (start + i, r[1:])
                         for i, r in enumerate(records)))
    return start + len(records)
