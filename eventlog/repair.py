"""Recovery on open (torn-tail repair) and full verification.

The rule that separates a torn tail from corruption is stated once, in
:mod:`eskernel.eventlog.framing`; :func:`classify_tail` implements it and both the writer's open and
:func:`verify` use it.

>>> import tempfile
>>> from eskernel.eventlog import EventLog
>>> d = tempfile.mkdtemp()
>>> with EventLog.open(d) as log:
...     _ = log.append_many([b"a", b"b"])
>>> report = verify(d)
>>> report.records, report.segments, report.torn_tail_bytes
(2, 1, 0)
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from ._framing import SegmentScanner, find_frame
from .errors import LogNotFoundError
from .framing import HEADER_SIZE, decode_header
from .segment import (
    ALL,
    SCAN_OK,
    SCAN_ZERO,
    STATUS_TEXT,
    corrupt,
    create_segment,
    list_segments,
)

__all__ = ["RepairReport", "VerifyReport", "verify"]

logger = logging.getLogger("eskernel.eventlog")


@dataclasses.dataclass(frozen=True)
class RepairReport:
    """What opening the log truncated: a torn tail left by a crash.

    Attributes:
        segment: the segment file that was truncated.
        offset: the byte offset it was truncated at (the first invalid frame).
        bytes_dropped: how many bytes were removed.
        next_offset: the log's next offset after the repair (records from here were lost).
        reason: which invalid frame started the tail.
    """

    segment: Path
    offset: int
    bytes_dropped: int
    next_offset: int
    reason: str

    def __str__(self) -> str:
        return (f"repaired a torn tail in {self.segment}: truncated {self.bytes_dropped} bytes "
                f"at byte {self.offset} ({self.reason}); the log continues at offset "
                f"{self.next_offset}")


@dataclasses.dataclass(frozen=True)
class VerifyReport:
    """The result of a full checksum scan (:func:`verify`).

    Attributes:
        segments: number of segment files.
        records: number of valid records (the log's next offset).
        bytes: total bytes of valid frames and headers.
        torn_tail_bytes: bytes of a torn tail at the end (0 if none); opening would repair it.
    """

    segments: int
    records: int
    bytes: int
    torn_tail_bytes: int


def classify_tail(fd: int, path: Path, pos: int, size: int, status: int) -> str:
    """Decide whether the bytes from ``pos`` to ``size`` in the last segment are a torn tail.

    Returns the reason text if they are; raises :class:`LogCorruptError` if a valid frame
    follows the bad one (or if the tail is too large to decide).
    """
    reason = STATUS_TEXT.get(status, "trailing bytes")
    if status == SCAN_ZERO:
        return reason
    found = find_frame(os.pread(fd, size - pos, pos), 0)
    if found == -1:
        return reason
    if found == -2:
        raise corrupt(path, pos, f"{reason}, followed by {size - pos} bytes too large to "
                      "tell a torn tail from corruption")
    raise corrupt(path, pos, f"{reason}, followed by a valid record at byte {pos + found}")


def _walk(path: Path, *, verify: bool) -> tuple[int, int, int, int]:
    """(first offset, records, valid end, status) of a whole segment file."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        first = decode_header(os.pread(fd, HEADER_SIZE, 0), path)
        pos, count, status = SegmentScanner(fd, path).scan(
            HEADER_SIZE, size, ALL, verify, None, -1, True)
        if status != SCAN_OK and not verify:
            raise corrupt(path, pos, STATUS_TEXT[status])
        return first, count, pos, status if pos != size else SCAN_OK
    finally:
        os.close(fd)


def _check_names(segs: list[tuple[int, Path]]) -> None:
    for first, path in segs:
        with open(path, "rb") as f:
            header_first = decode_header(f.read(HEADER_SIZE), path)
        if header_first != first:
            raise corrupt(path, 0, f"its header says first offset {header_first}")


def _check_complete(path: Path, next_first: int) -> None:
    first, count, end, status = _walk(path, verify=False)
    size = path.stat().st_size
    if end != size or first + count != next_first:
        raise corrupt(path, end, f"it holds {count} records ending at byte {end} of {size}, "
                      f"but the next segment starts at offset {next_first}")


def recover(directory: Path, *, sync: bool) -> tuple[Path, int, int, RepairReport | None]:
    """Prepare a directory for a writer: (last segment, its size, next offset, repair).

    Creates the first segment of an empty log, checks every header, walks the frame lengths
    of the second-to-last segment, fully verifies the last one and truncates a torn tail.
    """
    with os.scandir(directory) as it:
        stale = [entry.path for entry in it if entry.name.endswith(".seg.tmp")]
    for tmp in stale:
        os.unlink(tmp)
    segs = list_segments(directory)
    if not segs:
        return create_segment(directory, 0, sync=sync), HEADER_SIZE, 0, None
    _check_names(segs)
    if len(segs) > 1:
        _check_complete(segs[-2][1], segs[-1][0])
    last_first, path = segs[-1]
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        pos, count, status = SegmentScanner(fd, path).scan(
            HEADER_SIZE, size, ALL, True, None, -1, True)
        report = None
        if pos != size:
            reason = classify_tail(fd, path, pos, size, status)
            os.ftruncate(fd, pos)
            os.fsync(fd)
            report = RepairReport(path, pos, size - pos, last_first + count, reason)
            logger.warning("%s", report)
        return path, pos, last_first + count, report
    finally:
        os.close(fd)


def verify(path: str | os.PathLike[str]) -> VerifyReport:
    """Scan every record of the log at ``path`` and check every checksum (read-only).

    Takes no lock and changes nothing; a torn tail is reported, not repaired.  Cost: one
    sequential read of the whole log (~2 GB/s from the page cache).

    Raises:
        LogNotFoundError: no segments at ``path``.
        LogCorruptError: the first bad frame before the tail, or an inconsistent segment
            sequence, naming the segment file and byte offset.
    """
    directory = Path(path)
    if not directory.is_dir() or not (segs := list_segments(directory)):
        raise LogNotFoundError(f"no event log at {directory}: no segment files found; "
                               "check the path")
    records = total = torn = 0
    for i, (first, seg_path) in enumerate(segs):
        header_first, count, end, status = _walk(seg_path, verify=True)
        size = seg_path.stat().st_size
        if header_first != first:
            raise corrupt(seg_path, 0, f"its header says first offset {header_first}")
        if first != records:
            raise corrupt(seg_path, 0, f"it starts at offset {first} but the previous "
                          f"segments end at offset {records}")
        if end != size:
            if i != len(segs) - 1:
                raise corrupt(seg_path, end, STATUS_TEXT.get(status, "trailing bytes"))
            fd = os.open(seg_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                classify_tail(fd, seg_path, end, size, status)
            finally:
                os.close(fd)
            torn = size - end
        records += count
        total += end
    return VerifyReport(len(segs), records, total, torn)
