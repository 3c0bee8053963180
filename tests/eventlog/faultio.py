"""Fault injectors for the writer's I/O, installed with ``eventlog._framing._set_io_hook``.

The hook replaces the writer's ``write``/``fdatasync``/``fsync`` system calls on their own
code path (the GIL-free group commit included), so a fault test exercises what production
runs.  Install one only through :func:`io_hook`, which always removes it again.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterator
from typing import TypeVar

from eskernel.eventlog import _framing

H = TypeVar("H", bound="PassThroughIO")


@contextlib.contextmanager
def io_hook(hook: H) -> Iterator[H]:
    """Route every writer's I/O through ``hook`` inside the block."""
    previous = _framing._set_io_hook(hook)
    try:
        yield hook
    finally:
        _framing._set_io_hook(previous)


def fd_path(fd: int) -> str:
    """The file a descriptor is open on (Linux)."""
    return os.readlink(f"/proc/self/fd/{fd}")


class PassThroughIO:
    """Does what the system calls do and counts them; subclasses inject the faults.

    ``durable_bytes`` is the end of the bytes written to the last file whose ``fdatasync``
    returned (its file offset; the size of the file, but for the space fsync mode
    preallocates past it), read after it returned: a record ending at or below it is on
    disk.
    """

    def __init__(self) -> None:
        self.writes = self.syncs = self.fsyncs = 0
        self.durable_bytes = 0

    def write(self, fd: int, data: bytes) -> int:
        self.writes += 1
        return os.write(fd, data)

    def fdatasync(self, fd: int) -> None:
        self.syncs += 1
        os.fdatasync(fd)
        self.durable_bytes = os.lseek(fd, 0, os.SEEK_CUR)

    def fsync(self, fd: int) -> None:
        self.fsyncs += 1
        os.fsync(fd)


class TraceIO(PassThroughIO):
    """Records every call as (call, file name) in ``trace``."""

    def __init__(self) -> None:
        super().__init__()
        self.trace: list[tuple[str, str]] = []

    def write(self, fd: int, data: bytes) -> int:
        self.trace.append(("write", os.path.basename(fd_path(fd))))
        return super().write(fd, data)

    def fdatasync(self, fd: int) -> None:
        self.trace.append(("fdatasync", os.path.basename(fd_path(fd))))
        super().fdatasync(fd)

    def fsync(self, fd: int) -> None:
        self.trace.append(("fsync", os.path.basename(fd_path(fd))))
        super().fsync(fd)


class FaultyIO(PassThroughIO):
    """Once armed, the next write hands over only ``partial`` bytes (if set) and the one after
    raises ``OSError(write_errno)``; or the next sync raises ``OSError(sync_errno)``."""

    def __init__(self) -> None:
        super().__init__()
        self.write_errno: int | None = None
        self.sync_errno: int | None = None
        self.partial: int | None = None

    def write(self, fd: int, data: bytes) -> int:
        if self.write_errno is not None:
            self.writes += 1
            if self.partial:
                n, self.partial = self.partial, None
                return os.write(fd, data[:n])
            raise OSError(self.write_errno, os.strerror(self.write_errno))
        return super().write(fd, data)

    def fdatasync(self, fd: int) -> None:
        if self.sync_errno is not None:
            self.syncs += 1
            raise OSError(self.sync_errno, os.strerror(self.sync_errno))
        super().fdatasync(fd)


class HoldIO(PassThroughIO):
    """Once ``armed``, holds the next ``write`` or ``fdatasync`` (``what``) until ``release``
    is set, then lets it proceed, or fails it with ``OSError(fail)``."""

    def __init__(self, what: str, fail: int | None = None) -> None:
        super().__init__()
        assert what in ("write", "fdatasync")
        self.what = what
        self.fail = fail
        self.armed = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def _hold(self, call: str) -> None:
        if self.armed and call == self.what:
            self.armed = False
            self.entered.set()
            assert self.release.wait(30), "the test never released the held call"
            if self.fail is not None:
                raise OSError(self.fail, os.strerror(self.fail))

    def write(self, fd: int, data: bytes) -> int:
        self._hold("write")
        return super().write(fd, data)

    def fdatasync(self, fd: int) -> None:
        self._hold("fdatasync")
        super().fdatasync(fd)


class ChoppyIO(PassThroughIO):
    """Every write hands over at most ``most`` bytes: the caller must loop on short writes."""

    def __init__(self, most: int) -> None:
        super().__init__()
        self.most = most
        self.short = 0

    def write(self, fd: int, data: bytes) -> int:
        if len(data) > self.most:
            self.short += 1
        return super().write(fd, data[:self.most])


class CutIO(PassThroughIO):
    """Once armed, writes ``cut`` more bytes in all, then fails every write with ENOSPC
    (``only`` limits the cut to files whose path ends with it)."""

    def __init__(self, cut: int, only: str = "") -> None:
        super().__init__()
        self.cut = cut
        self.only = only
        self.armed = False

    def write(self, fd: int, data: bytes) -> int:
        if self.armed and fd_path(fd).endswith(self.only):
            if self.cut == 0:
                self.writes += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            data = data[:self.cut]
            self.cut -= len(data)
        return super().write(fd, data)
