"""The single-writer lock: ``fcntl.flock`` on ``<dir>/LOCK`` plus a per-process registry.

The OS lock stops writers in other processes; the registry gives a writer in the same
process (which could otherwise confuse itself with a second descriptor) the same clear
error.  The holder writes its pid into the file so the error can name it.  Readers never
touch the lock.

>>> import tempfile
>>> d = tempfile.mkdtemp()
>>> lock = DirLock.acquire(d)
>>> try:
...     DirLock.acquire(d)
... except LogLockedError as e:
...     e.holder_pid == os.getpid()
True
>>> lock.release()
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from .errors import LogLockedError

__all__ = ["DirLock"]

_registry: dict[tuple[int, int], int] = {}
_registry_lock = threading.Lock()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


class DirLock:
    """An exclusive writer lock on a log directory, held until :meth:`release`."""

    __slots__ = ("path", "_fd", "_key")

    def __init__(self, path: Path, fd: int, key: tuple[int, int]) -> None:
        self.path = path
        self._fd: int | None = fd
        self._key = key

    @classmethod
    def acquire(cls, directory: str | os.PathLike[str]) -> DirLock:
        """Take the lock or raise :class:`LogLockedError` naming the holder's pid."""
        path = Path(directory) / "LOCK"
        st = os.stat(directory)
        key = (st.st_dev, st.st_ino)
        with _registry_lock:
            if _registry.get(key) == os.getpid():
                raise LogLockedError(
                    f"the event log at {directory} is already open for writing in this "
                    f"process (pid {os.getpid()}); use that EventLog or close it first, or "
                    "open a reader with EventLog.open_readonly", holder_pid=os.getpid())
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd)
                os.close(fd)
                raise LogLockedError(
                    f"the event log at {directory} is locked by another writer (pid {pid}); "
                    "stop that process or open a reader with EventLog.open_readonly",
                    holder_pid=pid) from None
            except BaseException:
                os.close(fd)
                raise
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            _registry[key] = os.getpid()
        return cls(path, fd, key)

    def release(self) -> None:
        """Release the lock (idempotent).  The LOCK file stays; only the flock matters."""
        with _registry_lock:
            if self._fd is None:
                return
            if _registry.get(self._key) == os.getpid():
                del _registry[self._key]
            os.close(self._fd)      # closing the descriptor drops the flock
            self._fd = None
