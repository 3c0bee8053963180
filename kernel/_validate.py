"""Input validation for the public calls: one function per kind of input, each raising a
typed error that names the bad value and the fix.  Nothing here touches state."""

from __future__ import annotations

import math
import re
import reprlib
from typing import Any

from .errors import (InvalidSpecError, NotFoundError, UnknownAgentError, UnknownQueueError,
                     UnknownTaskError)
from .models import PRIORITY_MAX, PRIORITY_MIN, BackoffPolicy

_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxstring, _repr.maxother = 3, 100, 100


def show(value: Any) -> str:
    """A bounded repr for error messages: a value may nest far past the recursion limit."""
    return _repr.repr(value)


ID_PATTERN = re.compile(r"[A-Za-z0-9._:@/+\-]{1,200}")
_ID_RULE = "1-200 characters from A-Z a-z 0-9 . _ : @ / + -"
NS = 1_000_000_000


def check_id(value: Any, what: str) -> str:
    """Return ``value`` when it is a valid id for ``what`` (task, queue, agent...)."""
    if type(value) is not str or ID_PATTERN.fullmatch(value) is None:
        raise InvalidSpecError(f"{what} id {show(value)} is invalid: use {_ID_RULE}")
    return value


# How an unknown id is reported, per kind: the error class and a message naming the fix.
_UNKNOWN: dict[str, tuple[type[NotFoundError], str]] = {
    "task": (UnknownTaskError, "no task has id {0!r}; check the id (kernel.tasks() lists them)"),
    "queue": (UnknownQueueError, "queue {0!r} is not declared; call declare_queue({0!r}) first"),
    "agent": (UnknownAgentError,
              "agent {0!r} is not registered; call register_agent({0!r}, ...) first"),
}


def lookup(index: dict[str, int], key: Any, what: str) -> int:
    """The handle of ``key`` in ``index``; a malformed id raises InvalidSpecError and an
    unknown one the ``Unknown*Error`` of ``what`` ("task", "queue" or "agent")."""
    h = index.get(key) if type(key) is str else None
    if h is None:
        check_id(key, what)
        error, message = _UNKNOWN[what]
        raise error(message.format(key))
    return h


def check_int(value: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidSpecError(f"{what} must be an int in [{lo}, {hi}], got {show(value)}")
    return int(value)


def check_priority(value: Any) -> int:
    return check_int(value, "priority", PRIORITY_MIN, PRIORITY_MAX)


# Times are int64 ns since the epoch (good to the year 2262): durations stay below ~31
# years and absolute times below the year 2096, so `now + duration` can never overflow.
MAX_DURATION_S = 1e9
MAX_TIME_S = 4e9


def seconds_to_ns(value: Any, what: str, *, allow_zero: bool = True,
                  maximum: float = MAX_DURATION_S) -> int:
    """Seconds (int or float, finite, >= 0; > 0 unless allow_zero; <= maximum) to int ns."""
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or value < 0 or (not allow_zero and value == 0)
            or value > maximum):
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidSpecError(f"{what} must be a finite number of seconds {bound} and at "
                               f"most {maximum:g}, got {show(value)}")
    return round(value * NS)


def check_backoff(value: Any) -> BackoffPolicy | None:
    if value is None or isinstance(value, BackoffPolicy):
        return value
    if isinstance(value, dict):
        try:
            return BackoffPolicy(**value)
        except ValueError as err:
            raise InvalidSpecError(f"backoff {show(value)} is invalid: {err}") from None
    raise InvalidSpecError(f"backoff must be a BackoffPolicy or a dict, got {show(value)}")


# Tags are kept in the digest's tables, three levels down: orjson encodes 254 levels.
MAX_TAG_DEPTH = 250


def depth_ok(value: Any, limit: int) -> bool:
    """True when dicts and lists in ``value`` nest at most ``limit`` levels (iterative: a
    value may nest far deeper than Python's recursion limit)."""
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list, tuple)):
            if d > limit:
                return False
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return True


def check_tags(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(type(k) is str for k in value):
        raise InvalidSpecError(f"tags must be a dict with str keys, got {show(value)}")
    if not depth_ok(value, MAX_TAG_DEPTH):
        raise InvalidSpecError(f"tags nest more than {MAX_TAG_DEPTH} levels; flatten them")
    from .events import dumps
    dumps(value)     # tags follow the payload contract (no NaN or infinity)
    return value


def check_capabilities(value: Any) -> list[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)) or not value:
        raise InvalidSpecError(
            f"capabilities must be a non-empty list of queue names, got {show(value)}")
    caps = [check_id(q, "queue") for q in value]
    if len(set(caps)) != len(caps):
        raise InvalidSpecError(f"capabilities {caps!r} list a queue twice")
    return caps


def check_kernel_options(*, clock: Any, seed: Any, max_payload_bytes: Any) -> None:
    """The options every kernel takes (``Kernel.open`` and ``Kernel.in_memory``)."""
    if clock is not None and not callable(getattr(clock, "time_ns", None)):
        raise InvalidSpecError(f"clock must have a time_ns() method returning int ns since the "
                               f"epoch (SystemClock, ManualClock), got {show(clock)}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidSpecError(f"seed must be an int, got {show(seed)}")
    check_int(max_payload_bytes, "max_payload_bytes", 1, 1 << 31)
