"""Snapshot storage: atomic, checksummed blobs tagged with a log offset.

A snapshot is one file ``<20-digit offset>.snap`` in the log directory::

    0  magic     8 bytes  b"\\x89ESKSNP\\n"
    8  offset    u64      the tag (the kernel stores the state after records < offset)
    16 length    u64      blob bytes
    24 crc       u32      CRC32C of bytes 0..23 followed by the blob
    28 blob

Writing goes to a temp file, which is fsynced, renamed over the final name, and the
directory is fsynced: a crash leaves either the old set of snapshots or the new one, never
a half-written file under a final name.  Reading tries the newest first; a file that fails
its checks is skipped with a ``logging`` warning and listed in :attr:`Snapshot.skipped`.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> write_snapshot(d, 10, b"state@10").offset
10
>>> latest_snapshot(d).blob
b'state@10'
>>> latest_snapshot(d, max_offset=9) is None
True
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import struct
from pathlib import Path

from ._framing import crc32c
from .errors import InvalidArgumentError
from .segment import fsync_dir

__all__ = ["Snapshot", "latest_snapshot", "list_snapshots", "prune_snapshots",
           "remove_snapshots", "snapshot_path", "write_snapshot"]

logger = logging.getLogger("eskernel.eventlog")
SNAP_MAGIC = b"\x89ESKSNP\n"
_HEAD = struct.Struct("<8sQQI")
_NAME = re.compile(r"^(\d{20})\.snap$")


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """A stored snapshot: its offset tag, the blob, and the file holding it.

    Attributes:
        offset: the log offset the snapshot was tagged with.
        blob: the bytes that were stored.
        path: the snapshot file.
        skipped: newer snapshot files that failed their checks and were passed over.
    """

    offset: int
    blob: bytes = dataclasses.field(repr=False)
    path: Path
    skipped: tuple[Path, ...] = ()


def _encode(offset: int, blob: bytes) -> bytes:
    head = _HEAD.pack(SNAP_MAGIC, offset, len(blob), 0)[:24]
    crc = crc32c(blob, crc32c(head))
    return head + struct.pack("<I", crc) + blob


def _decode(path: Path, data: bytes) -> tuple[int, bytes] | str:
    """(offset, blob), or the reason the file is not a valid snapshot."""
    if len(data) < _HEAD.size:
        return f"{len(data)} bytes, shorter than the header"
    magic, offset, length, crc = _HEAD.unpack_from(data)
    if magic != SNAP_MAGIC:
        return f"bad magic {magic!r}"
    if len(data) != _HEAD.size + length:
        return f"{len(data)} bytes, expected {_HEAD.size + length}"
    blob = data[_HEAD.size:]
    if crc32c(blob, crc32c(data[:24])) != crc:
        return "checksum mismatch"
    if _NAME.match(path.name) and int(path.name[:20]) != offset:
        return f"header offset {offset} does not match the file name"
    return offset, blob


def snapshot_path(directory: Path, offset: int) -> Path:
    """The file that holds (or would hold) the snapshot tagged ``offset`` in ``directory``."""
    return Path(directory) / f"{offset:020d}.snap"


def write_snapshot(directory: Path, offset: int, blob: bytes) -> Snapshot:
    """Store ``blob`` tagged ``offset`` atomically and durably; replace one with that tag.

    Raises:
        InvalidArgumentError: ``offset`` negative or not an int, ``blob`` not bytes-like.
    """
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise InvalidArgumentError(
            f"snapshot offset must be an int >= 0, got {offset!r}; pass the log offset the "
            "snapshot's state corresponds to")
    if isinstance(blob, str) or not isinstance(blob, (bytes, bytearray, memoryview)):
        raise InvalidArgumentError(
            f"snapshot blob must be bytes, got {type(blob).__name__}; encode it first")
    blob = bytes(blob)
    path = snapshot_path(directory, offset)
    tmp = directory / f".{offset:020d}.snap.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(_encode(offset, blob))
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)
    fsync_dir(directory)
    return Snapshot(offset, blob, path)


def remove_temp_files(directory: Path) -> None:
    """Delete temp files left by a snapshot write that crashed (writer open only)."""
    with os.scandir(directory) as it:
        stale = [e.path for e in it if e.name.startswith(".") and ".snap.tmp-" in e.name]
    for p in stale:
        os.unlink(p)


def list_snapshots(directory: Path) -> list[int]:
    """Offsets of the snapshot files in ``directory`` (valid or not), ascending."""
    with os.scandir(directory) as it:
        return sorted(int(e.name[:20]) for e in it if _NAME.match(e.name))


def remove_snapshots(directory: Path, offsets: list[int]) -> None:
    """Delete the snapshot files with these offsets (missing ones are no error), durably."""
    for off in offsets:
        try:
            os.unlink(snapshot_path(directory, off))
        except FileNotFoundError:
            pass
    if offsets:
        fsync_dir(directory)


def prune_snapshots(directory: Path, keep: int) -> list[int]:
    """Keep the ``keep`` newest snapshot files, delete the rest; returns what was deleted.

    Raises:
        InvalidArgumentError: ``keep`` not an int >= 1.
    """
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise InvalidArgumentError(f"keep must be an int >= 1, got {keep!r}")
    old = list_snapshots(directory)[:-keep]
    remove_snapshots(directory, old)
    return old


def latest_snapshot(directory: Path, max_offset: int | None = None) -> Snapshot | None:
    """The newest valid snapshot (with offset <= ``max_offset`` if given), or ``None``.

    Corrupt newer files are skipped with a warning and listed in ``Snapshot.skipped``.
    Cost: one directory listing plus reading the files it tries.
    """
    if max_offset is not None and (not isinstance(max_offset, int) or max_offset < 0):
        raise InvalidArgumentError(
            f"max_offset must be an int >= 0 or None, got {max_offset!r}")
    with os.scandir(directory) as it:
        names = sorted((e.name for e in it if _NAME.match(e.name)), reverse=True)
    skipped: list[Path] = []
    for name in names:
        if max_offset is not None and int(name[:20]) > max_offset:
            continue
        path = directory / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        decoded = _decode(path, data)
        if isinstance(decoded, str):
            logger.warning("skipping corrupt snapshot %s (%s); falling back to an older one",
                           path, decoded)
            skipped.append(path)
            continue
        return Snapshot(decoded[0], decoded[1], path, tuple(skipped))
    return None
