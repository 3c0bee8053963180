"""Segment files: listing a log directory, validating headers, reading frames from one file.

A :class:`Segment` is the read side of one ``<first offset>.seg`` file.  It keeps a
read-only descriptor and a compiled :class:`~eskernel.eventlog._framing.SegmentScanner` (pread windows,
no mmap) and remembers a cursor, so sequential reads never rescan the file from its start.
Writing is the compiled ``Writer``'s job (``eventlog/log.py``).

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> p = create_segment(d, 0, sync=False)
>>> p.name, [first for first, _ in list_segments(d)]
('00000000000000000000.seg', [0])
"""

from __future__ import annotations

import os
from pathlib import Path

from ._framing import SegmentScanner
from .errors import LogCorruptError
from .framing import HEADER_SIZE, decode_header, parse_segment_name, segment_header, segment_name

__all__ = ["Segment", "create_segment", "fsync_dir", "list_segments"]

SCAN_OK, SCAN_INCOMPLETE, SCAN_ZERO, SCAN_BADCRC = 0, 1, 2, 3
STATUS_TEXT = {
    SCAN_INCOMPLETE: "an incomplete frame",
    SCAN_ZERO: "an all-zero frame header",
    SCAN_BADCRC: "a frame that fails its CRC32C checksum",
}
ALL = 2**62


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """The directory's segments as (first offset, path), ordered by first offset."""
    found = []
    with os.scandir(directory) as it:
        for entry in it:
            first = parse_segment_name(entry.name)
            if first is not None:
                found.append((first, Path(entry.path)))
    found.sort()
    return found


def fsync_dir(directory: Path) -> None:
    """fsync a directory, making renames and new files inside it durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_segment(directory: Path, first_offset: int, *, sync: bool) -> Path:
    """Create an empty segment atomically: header into a temp file, (fsync,) rename."""
    path = directory / segment_name(first_offset)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, segment_header(first_offset))
        if sync:
            os.fdatasync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if sync:
        fsync_dir(directory)
    return path


def corrupt(path: Path, pos: int, what: str) -> LogCorruptError:
    """The corruption error for byte ``pos`` of segment ``path``."""
    return LogCorruptError(
        f"event log segment {path} is corrupt at byte {pos}: {what}; nothing was skipped. "
        "Restore the segment from a backup, or run eventlog.verify() for a full report",
        segment=str(path), offset=pos)


class Segment:
    """Read side of one segment file (descriptor, scanner, verified end, cursor)."""

    __slots__ = ("first", "path", "fd", "scanner", "count", "end_pos", "complete",
                 "cursor_offset", "cursor_pos")

    def __init__(self, first: int, path: Path) -> None:
        self.first = first
        self.path = path
        self.fd: int | None = None
        self.scanner: SegmentScanner | None = None
        self.count = 0          # records known to be valid (all of them once complete)
        self.end_pos = HEADER_SIZE   # byte end of those records
        self.complete = False   # a newer segment exists: count and end_pos are final
        self.cursor_offset = first
        self.cursor_pos = HEADER_SIZE

    def open(self) -> SegmentScanner:
        """Open the descriptor (checking the header) if it is not open yet."""
        if self.scanner is None:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                first = decode_header(os.pread(fd, HEADER_SIZE, 0), self.path)
            except BaseException:
                os.close(fd)
                raise
            if first != self.first:
                os.close(fd)
                raise corrupt(self.path, 0, f"its header says first offset {first}")
            self.fd = fd
            self.scanner = SegmentScanner(fd, self.path)
            if self.end_pos < 0:
                self.end_pos = os.fstat(fd).st_size
        return self.scanner

    def assume_complete(self, next_first: int) -> None:
        """Trust the directory listing: this segment ends where the next one starts.

        Reads still verify every checksum and raise if the file holds fewer records.
        """
        self.count = next_first - self.first
        self.end_pos = -1       # the file size, read when the descriptor opens
        self.complete = True

    def close(self) -> None:
        """Close the descriptor; the segment reopens on its next use."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
            self.scanner = None

    def file_size(self) -> int:
        """Current size of the file in bytes."""
        self.open()
        assert self.fd is not None
        return os.fstat(self.fd).st_size

    def scan_tail(self) -> int:
        """Extend ``count``/``end_pos`` over newly completed frames; return the scan status."""
        scanner = self.open()
        size = self.file_size()
        if size <= self.end_pos:
            return SCAN_OK if size == self.end_pos else SCAN_INCOMPLETE
        pos, n, status = scanner.scan(self.end_pos, size, ALL, True, None, -1, True)
        self.end_pos = pos
        self.count += n
        if status != SCAN_OK and pos < size:
            # A reader stops at the first bad frame, but must not mistake corruption for
            # the end of the log: a valid frame after it means damage, never a torn tail.
            from .repair import classify_tail
            assert self.fd is not None
            classify_tail(self.fd, self.path, pos, size, status)
        return status

    def finish(self, next_first: int) -> None:
        """A newer segment starting at ``next_first`` exists: this one must be complete."""
        status = self.scan_tail()
        size = self.file_size()
        if self.end_pos != size:
            raise corrupt(self.path, self.end_pos, STATUS_TEXT.get(status, "trailing bytes")
                          + f" before the next segment (offset {next_first})")
        if self.first + self.count != next_first:
            raise corrupt(self.path, self.end_pos,
                          f"it holds {self.count} records but the next segment starts at "
                          f"offset {next_first}, expected {self.first + self.count}")
        self.complete = True

    def locate(self, offset: int) -> int:
        """Byte position of record ``offset`` (which must be below first + count)."""
        if offset == self.cursor_offset:
            return self.cursor_pos
        if self.cursor_offset < offset:
            start_off, pos = self.cursor_offset, self.cursor_pos
        else:
            start_off, pos = self.first, HEADER_SIZE
        scanner = self.open()
        want = offset - start_off
        new_pos, n, status = scanner.scan(pos, self.end_pos, want, False, None, -1, False)
        if n != want:
            raise corrupt(self.path, new_pos, STATUS_TEXT.get(status, "a short segment"))
        self.cursor_offset, self.cursor_pos = offset, new_pos
        return new_pos
