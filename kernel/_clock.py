"""Clocks.  The kernel reads time only through a clock object, once per command, and records
every value it reads in the event it writes, so replay never needs a clock.
"""

from __future__ import annotations

import math
import time
from typing import Protocol

from .errors import InvalidSpecError

__all__ = ["Clock", "SystemClock", "ManualClock"]


class Clock(Protocol):
    """Anything with ``time_ns() -> int`` (nanoseconds since the epoch)."""

    def time_ns(self) -> int: ...


class SystemClock:
    """The wall clock (:func:`time.time_ns`).

    >>> SystemClock().time_ns() > 0
    True
    """

    time_ns = staticmethod(time.time_ns)

    def now(self) -> float:
        """Seconds since the epoch."""
        return time.time()


class ManualClock:
    """A clock that moves only when told to; for tests and simulations.

    Args:
        start: initial time in seconds since the epoch.

    >>> c = ManualClock(start=100.0)
    >>> c.advance(1.5); c.now()
    101.5
    """

    __slots__ = ("_ns",)

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._ns = _to_ns(start, "start")

    def time_ns(self) -> int:
        """Current time in nanoseconds."""
        return self._ns

    def now(self) -> float:
        """Current time in seconds."""
        return self._ns / 1e9

    def advance(self, seconds: float) -> None:
        """Move forward by ``seconds`` (>= 0)."""
        step = _to_ns(seconds, "seconds")
        if self._ns + step > 4_000_000_000_000_000_000:
            raise InvalidSpecError(f"advancing by {seconds!r} s passes 4e9 s, the latest time "
                                   "eskernel accepts")
        if step < 0:
            raise InvalidSpecError(f"cannot advance a clock by {seconds!r} s: time only moves forward")
        self._ns += step

    def set(self, seconds: float) -> None:
        """Jump to an absolute time, not earlier than now."""
        ns = _to_ns(seconds, "seconds")
        if ns < self._ns:
            raise InvalidSpecError(f"cannot set the clock back to {seconds!r} s (now {self.now()!r})")
        self._ns = ns


def _to_ns(seconds: float, what: str) -> int:
    # Bounded like every kernel time (kernel/_validate.py): int64 ns, now + 31 years.
    if (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
            or not math.isfinite(seconds) or abs(seconds) > 4e9):
        raise InvalidSpecError(f"{what} must be a finite number of seconds within +-4e9, "
                               f"got {seconds!r}")
    return round(seconds * 1_000_000_000)
