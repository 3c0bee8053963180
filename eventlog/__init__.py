"""A durable, append-only log of byte records: segments, CRC32C framing, three durability
modes, a single-writer lock, lock-free readers that follow the tail, torn-tail repair and
snapshot storage.  It knows nothing about tasks.

>>> import tempfile
>>> from eskernel.eventlog import EventLog
>>> with tempfile.TemporaryDirectory() as d:
...     with EventLog.open(d, "fsync") as log:
...         log.append(b'{"kind":"hello"}')
...     with EventLog.open_readonly(d) as reader:
...         list(reader.read())
0
[(0, b'{"kind":"hello"}')]

The format and the torn-tail rule: :mod:`eskernel.eventlog.framing`; what each durability mode
acknowledges: :mod:`eskernel.eventlog.log`.
"""
from .errors import (
    EskernelError as EskernelError,
    InvalidArgumentError as InvalidArgumentError,
    LogClosedError as LogClosedError,
    LogCorruptError as LogCorruptError,
    LogError as LogError,
    LogFailedError as LogFailedError,
    LogLockedError as LogLockedError,
    LogNotFoundError as LogNotFoundError,
    LogReadOnlyError as LogReadOnlyError,
    LogWriteError as LogWriteError,
    RecordTypeError as RecordTypeError,
)
from .log import Durability as Durability, EventLog as EventLog
from .reader import JsonParts as JsonParts, LogReader as LogReader
from .repair import RepairReport as RepairReport, VerifyReport as VerifyReport, verify as verify
from .snapshots import Snapshot as Snapshot

__all__ = [
    "Durability",
    "EskernelError",
    "EventLog",
    "InvalidArgumentError",
    "JsonParts",
    "LogClosedError",
    "LogCorruptError",
    "LogError",
    "LogFailedError",
    "LogLockedError",
    "LogNotFoundError",
    "LogReadOnlyError",
    "LogReader",
    "LogWriteError",
    "RecordTypeError",
    "RepairReport",
    "Snapshot",
    "VerifyReport",
    "verify",
]
