"""The writer: :class:`EventLog`, one per directory, with three durability modes.

What "acknowledged" means (an append is acknowledged when ``append``/``append_many``
returns an offset without raising):

- ``fsync``: the record is on disk: its bytes were written and ``fdatasync`` returned
  (and, for a new segment, the file and the directory entry were synced), so it survives
  power loss.  Group commit: ``append_many`` shares one ``fdatasync`` for its batch, and
  concurrent appends from several threads share one too: the thread that finds no sync in
  flight becomes the leader, releases the GIL for ``write`` + ``fdatasync`` of everything
  buffered so far; the others keep framing into a fresh buffer and wait, and the next
  leader covers them.
- ``write``: the record has been handed to the operating system (``write(2)`` returned;
  one call per append, or per ``append_many``), so it survives the process being killed at
  any instant, but not a power loss or kernel crash.
- ``buffer``: the record is in the process's buffer.  Buffers are handed to the OS once a
  MiB has gathered, when the oldest buffered record is ``flush_interval_ms`` old (checked
  on every append with a monotonic clock read in C, and by a daemon thread while the
  writer is idle), on :meth:`EventLog.flush`/``sync``/``read`` and on close.  A killed
  process loses at most the last ``flush_interval_ms`` of appends (plus what the GIL
  delays the idle thread by), and the log it leaves always opens: a torn tail is repaired.

In every mode ``sync()`` makes everything appended so far durable, and ``close()`` hands
everything to the OS (and syncs in ``fsync`` mode).

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as d:
...     with EventLog.open(d, "fsync") as log:
...         log.append(b"durable")
...     with EventLog.open(d) as log:
...         log.next_offset, log.read_batch(0, 1)
0
(1, [b'durable'])
"""

from __future__ import annotations

import enum
import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

from ._framing import Writer
from .errors import InvalidArgumentError, LogClosedError, LogError, LogNotFoundError
from .framing import MAX_RECORD_LIMIT, parse_segment_name
from .lock import DirLock
from .reader import Catalog, LogReader, ReadAPI
from .segment import list_segments
from .repair import RepairReport, VerifyReport, recover, verify
from .snapshots import Snapshot, remove_temp_files, write_snapshot

__all__ = ["Durability", "EventLog"]

MIN_SEGMENT_BYTES = 256


class Durability(str, enum.Enum):
    """What an acknowledged append guarantees (see the :mod:`eskernel.eventlog.log` docstring).

    >>> Durability("fsync") is Durability.FSYNC
    True
    """

    FSYNC = "fsync"
    WRITE = "write"
    BUFFER = "buffer"


_MODE = {Durability.FSYNC: 0, Durability.WRITE: 1, Durability.BUFFER: 2}


def _durability(value: object) -> Durability:
    try:
        return Durability(value)
    except ValueError:
        raise InvalidArgumentError(
            f"durability must be one of 'fsync', 'write', 'buffer' (or a Durability), got "
            f"{value!r}; 'write' survives a killed process, 'fsync' a power loss") from None


def _positive_int(name: str, value: object, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidArgumentError(
            f"{name} must be an int between {low} and {high}, got {value!r}")
    return value


def _flusher(writer: Writer, stop: threading.Event, interval: float) -> None:
    # Buffer mode's idle flush.  It only gets the GIL when the appending thread is idle,
    # which is exactly when it is needed; a busy writer flushes itself on append.
    while not stop.is_set():
        try:
            left = writer.flush_if_due()
        except LogError:
            return      # the writer is failed; appends report it
        stop.wait(interval if left < 0 else left / 1e9)


class EventLog(ReadAPI):
    """The single writer of a log directory: append byte records, read them back.

    Offsets are dense from 0 and continue across segments.  Durability modes and what an
    acknowledged append means are documented in :mod:`eskernel.eventlog.log`: ``fsync`` (on disk,
    group commit), ``write`` (handed to the OS, survives a killed process), ``buffer``
    (in the process, written every ``flush_interval_ms``; fastest).

    Open with :meth:`open`; one writer per directory (others get :class:`LogLockedError`),
    any number of :meth:`open_readonly` readers.  If opening truncated a torn tail,
    :attr:`repair` describes it.  After a failed write the log raises
    :class:`LogFailedError` until reopened.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d, EventLog.open(d, "buffer") as log:
    ...     log.append(b"a"), log.append_many([b"b", b"c"]), log.next_offset
    ...     list(log.read())
    (0, 1, 3)
    [(0, b'a'), (1, b'b'), (2, b'c')]
    """

    path: Path
    durability: Durability
    repair: RepairReport | None
    max_record_bytes: int
    _lock: DirLock
    _writer: Writer
    _catalog: Catalog | None
    _stop: threading.Event
    _thread: threading.Thread | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("use EventLog.open(path, ...) to open a log")

    @classmethod
    def open(cls, path: str | os.PathLike[str], durability: Durability | str = "write", *,
             segment_bytes: int = 64 * 2**20, max_record_bytes: int = 16 * 2**20,
             flush_interval_ms: float = 5.0, create: bool = True) -> EventLog:
        """Open (or create) the log at ``path`` for writing.

        Args:
            path: the log directory (created with its parents if ``create``).
            durability: ``"fsync"``, ``"write"`` or ``"buffer"`` (or a :class:`Durability`).
            segment_bytes: roll to a new segment when the next record would pass this size.
            max_record_bytes: the largest record accepted.
            flush_interval_ms: buffer mode's maximum age of a buffered record.
            create: create the directory and first segment if missing.

        Opening takes the lock, checks every segment header, fully verifies the last
        segment and truncates a torn tail (reported in :attr:`repair` and logged).

        Raises:
            InvalidArgumentError: a bad option (the message names it).
            LogNotFoundError: no log at ``path`` and ``create`` is false.
            LogLockedError: another writer holds the directory (names its pid).
            LogCorruptError: corruption before the tail (names segment and byte offset).

        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     EventLog.open(d, segment_bytes=1)
        Traceback (most recent call last):
        ...
        eskernel.eventlog.errors.InvalidArgumentError: segment_bytes must be an int between 256 and 2147483647, got 1
        """
        mode = _durability(durability)
        _positive_int("segment_bytes", segment_bytes, MIN_SEGMENT_BYTES, 2**31 - 1)
        _positive_int("max_record_bytes", max_record_bytes, 1, MAX_RECORD_LIMIT)
        if (isinstance(flush_interval_ms, bool) or not isinstance(flush_interval_ms, (int, float))
                or not 0 < flush_interval_ms < math.inf):
            raise InvalidArgumentError(
                f"flush_interval_ms must be a positive number of milliseconds, got "
                f"{flush_interval_ms!r}")
        directory = Path(path)
        if not directory.exists():
            if not create:
                raise LogNotFoundError(f"no event log at {directory}; pass create=True to "
                                       "create one")
            directory.mkdir(parents=True, exist_ok=True)
        elif not directory.is_dir():
            raise InvalidArgumentError(f"{directory} is not a directory; an event log is a "
                                       "directory of segment files")
        elif not create and not list_segments(directory):
            raise LogNotFoundError(f"no event log in {directory}: it holds no segment files; "
                                   "check the path, or pass create=True to start a log there")
        lock = DirLock.acquire(directory)
        fd = dirfd = -1
        try:
            remove_temp_files(directory)
            seg_path, size, next_offset, report = recover(
                directory, sync=mode is Durability.FSYNC)
            fd = os.open(seg_path, os.O_WRONLY | os.O_CLOEXEC)
            os.lseek(fd, size, os.SEEK_SET)    # the writer writes at the file offset
            dirfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            first = parse_segment_name(seg_path.name)
            assert first is not None, "recover() returns a segment file"
            writer = Writer(fd, dirfd, first, size, next_offset, segment_bytes,
                            max_record_bytes, _MODE[mode], float(flush_interval_ms))
        except BaseException:
            for f in (fd, dirfd):
                if f >= 0:
                    os.close(f)
            lock.release()
            raise
        self = object.__new__(cls)
        self.path = directory
        self.durability = mode
        self.max_record_bytes = max_record_bytes
        self.repair = report
        self._lock = lock
        self._writer = writer
        self._catalog = None
        # The per-record calls go straight to the compiled writer: no Python layer.
        self.append = writer.append          # type: ignore[method-assign]
        self.append_many = writer.append_many    # type: ignore[method-assign]
        self._stop = threading.Event()
        self._thread = None
        if mode is Durability.BUFFER:
            self._thread = threading.Thread(
                target=_flusher, args=(writer, self._stop, flush_interval_ms / 1e3),
                name=f"eventlog-flusher:{directory}", daemon=True)
            self._thread.start()
        return self

    @staticmethod
    def open_readonly(path: str | os.PathLike[str]) -> LogReader:
        """Open a read-only :class:`LogReader`: no lock, never blocked, never repairs.

        Raises:
            LogNotFoundError: no segment files at ``path``.
        """
        return LogReader(path)

    def append(self, record: bytes) -> int:
        """Append one record and return its offset (acknowledged per the durability mode).

        ``record`` is bytes (a contiguous bytearray/memoryview is accepted).  Cost in buffer
        mode: ~0.1-0.3 µs (framing + CRC32C in C); write mode adds one ``write(2)``; fsync
        mode waits for an ``fdatasync`` shared with concurrent appenders.

        Raises:
            RecordTypeError: not bytes-like (an ``InvalidArgumentError`` and ``TypeError``).
            InvalidArgumentError: longer than ``max_record_bytes``.
            LogClosedError: the log is closed.
            LogWriteError: the OS refused the write or sync; the log is now failed.
            LogFailedError: an earlier write failed; reopen the log.

        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d, EventLog.open(d) as log:
        ...     log.append(b"x"), log.append(b"y")
        (0, 1)
        """
        return self._writer.append(record)

    def append_unsynced(self, record: bytes) -> int:
        """Append one record that need not be durable when the call returns; return its
        offset.  In ``fsync`` mode it is written (not synced) a MiB at a time or when the
        flush interval is due, and becomes durable with the next :meth:`append` or
        :meth:`append_many` (whose sync covers every byte before it), :meth:`sync` or
        :meth:`close`; a crash before then may lose it (and only the records after the last
        sync).  In the other modes it is :meth:`append`.  Raises what :meth:`append` raises.

        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d, EventLog.open(d, durability="fsync") as log:
        ...     log.append_unsynced(b"claim"), log.append(b"done")
        (0, 1)
        """
        return self._writer.append_unsynced(record)

    @property
    def appender(self) -> Callable[[bytes], int]:
        """The writer's own ``append``: the same contract as :meth:`append`, without this
        method's call in between (for callers appending millions of records one by one).

        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d, EventLog.open(d) as log:
        ...     log.appender(b"x")
        0
        """
        return self._writer.append

    def append_many(self, records: Sequence[bytes]) -> int:
        """Append a batch and return the first offset; validated entirely before writing.

        One ``write(2)`` (and, in fsync mode, one ``fdatasync``) for the whole batch.
        Raises the same errors as :meth:`append`, for the first bad record in the batch;
        then nothing of the batch is written.

        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d, EventLog.open(d) as log:
        ...     log.append_many([b"a", b"b"]), log.append_many([b"c"])
        (0, 2)
        """
        return self._writer.append_many(records)

    def flush(self) -> None:
        """Hand every buffered byte to the operating system (a no-op when nothing is buffered).

        Raises:
            LogClosedError, LogWriteError, LogFailedError
        """
        self._writer.flush()

    def sync(self) -> None:
        """Flush, then ``fdatasync``: everything appended so far is durable.

        Raises:
            LogClosedError, LogWriteError, LogFailedError
        """
        self._writer.sync()

    @property
    def next_offset(self) -> int:
        """The offset the next appended record will get (= the number of records)."""
        return self._writer.next_offset

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._writer.closed

    def _current_next(self) -> int:
        self._writer.flush()
        return self._writer.next_offset

    def _catalog_for_read(self) -> Catalog:
        if self._writer.closed:
            raise LogClosedError("the event log is closed; open it again with EventLog.open")
        if self._catalog is None:
            self._catalog = Catalog(self.path)
        return self._catalog

    def write_snapshot(self, offset: int, blob: bytes) -> Snapshot:
        """Store a snapshot ``blob`` tagged with ``offset`` (<= ``next_offset``), atomically.

        Temp file, fsync, rename, directory fsync; checksummed.  Read back with
        :meth:`latest_snapshot`, which skips (and reports) a corrupt newest file.

        Raises:
            InvalidArgumentError: ``offset`` negative or beyond ``next_offset``, blob not bytes.
            LogClosedError: the log is closed.

        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d, EventLog.open(d) as log:
        ...     _ = log.append_many([b"a", b"b"])
        ...     _ = log.write_snapshot(1, b"state after a")
        ...     _ = log.write_snapshot(2, b"state after b")
        ...     log.latest_snapshot().offset, log.latest_snapshot(max_offset=1).blob
        (2, b'state after a')
        """
        if self._writer.closed:
            raise LogClosedError("the event log is closed; open it again with EventLog.open")
        nxt = self._writer.next_offset
        if isinstance(offset, int) and not isinstance(offset, bool) and offset > nxt:
            raise InvalidArgumentError(
                f"snapshot offset {offset} is beyond the log's next_offset {nxt}; a snapshot "
                "can only describe records that were appended")
        return write_snapshot(self.path, offset, blob)

    def verify(self) -> VerifyReport:
        """Flush, then check every record's checksum (see :func:`eskernel.eventlog.verify`)."""
        self._writer.flush()
        return verify(self.path)

    def close(self) -> None:
        """Flush (and sync in fsync mode), close the files, release the lock; idempotent.

        Raises:
            LogWriteError: the final flush failed (the log is closed anyway).
        """
        if getattr(self, "_writer", None) is None or self._writer.closed:
            return
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        try:
            self._writer.close(self.durability is Durability.FSYNC)
        finally:
            if self._catalog is not None:
                self._catalog.close()
            self._lock.release()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:   # pragma: no cover - best effort at garbage collection
            pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"next_offset={self.next_offset}"
        return f"<EventLog {str(self.path)!r} {self.durability.value} {state}>"

