"""An in-memory log with the subset of :class:`eskernel.eventlog.EventLog`'s API the kernel uses."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from .errors import InvalidArgumentError


class MemoryLog:
    """Records in a list; nothing is durable.  Used by ``Kernel.in_memory()``."""

    def __init__(self) -> None:
        self._records: list[bytes] = []
        self.closed = False
        self.repair = None

    @property
    def next_offset(self) -> int:
        return len(self._records)

    def append(self, record: bytes) -> int:
        # A compact copy: encoders may hand over bytes inside a much larger allocation.
        self._records.append(memoryview(record).tobytes())
        return len(self._records) - 1

    append_unsynced = append

    @property
    def appender(self) -> Any:
        """The callable appending one record (see ``eventlog.EventLog.appender``)."""
        return self.append

    def append_many(self, records: Sequence[bytes]) -> int:
        first = len(self._records)
        self._records.extend(memoryview(r).tobytes() for r in records)
        return first

    def read(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes]]:
        stop = len(self._records) if end is None else end
        if start < 0 or stop > len(self._records) or start > stop:
            raise InvalidArgumentError(
                f"read range [{start}, {end}) is outside the log's [0, {len(self._records)})")
        for off in range(start, stop):
            yield off, self._records[off]

    def read_containing(self, needle: bytes, start: int = 0,
                        end: int | None = None) -> Iterator[tuple[int, bytes]]:
        return ((off, rec) for off, rec in self.read(start, end) if needle in rec)

    def read_batch(self, start: int, max_records: int) -> list[bytes]:
        return self._records[start:start + max_records]

    def flush(self) -> None:
        pass

    def sync(self) -> None:
        pass

    def latest_snapshot(self, max_offset: int | None = None) -> None:
        return None

    def close(self) -> None:
        self.closed = True
