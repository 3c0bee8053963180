"""The root of eskernel's error hierarchy and the storage branch.

Every error eskernel raises derives from :class:`EskernelError`.  It lives here, in the
lowest layer, so that ``eventlog`` can raise it without knowing about the kernel;
``eskernel.errors`` re-exports everything so users import from one place.
"""

from __future__ import annotations


class EskernelError(Exception):
    """Root of every error raised by eskernel."""


class InvalidArgumentError(EskernelError, ValueError):
    """A caller passed a value that is not allowed; the message names it and the fix."""


class LogError(EskernelError):
    """Base class for event-log storage errors."""


class LogClosedError(LogError):
    """The log was used after :meth:`close`; reopen it."""


class LogReadOnlyError(LogError):
    """A write was attempted on a read-only log; open it with ``EventLog.open`` to write."""


class LogCorruptError(LogError):
    """A record before the tail failed its checksum or framing.

    Attributes:
        segment: path of the segment file holding the bad record.
        offset: byte offset of the bad record inside that file.
    """

    def __init__(self, message: str, *, segment: str, offset: int) -> None:
        super().__init__(message)
        self.segment = segment
        self.offset = offset


class LogLockedError(LogError):
    """Another writer holds the directory's lock.

    Attributes:
        holder_pid: the process id of the writer holding the lock (``None`` if unknown).
    """

    def __init__(self, message: str, *, holder_pid: int | None) -> None:
        super().__init__(message)
        self.holder_pid = holder_pid


class LogWriteError(LogError):
    """The operating system refused a write or sync (ENOSPC, EIO, ...).

    After one, the log refuses further appends until it is reopened, so it can never hold a
    hole.  Reopening replays up to the last durable record.
    """


class LogFailedError(LogWriteError):
    """An earlier write failed; the log refuses appends until it is reopened."""


class RecordTypeError(InvalidArgumentError, TypeError):
    """A record was not bytes-like (a ``str``, an int, ...); encode it to bytes first."""


class LogNotFoundError(LogError, FileNotFoundError):
    """No event log exists at the path; pass ``create=True`` or check the path."""
