"""Task events of the handler runtime: callbacks and async iterators (private).

The runtime emits a :class:`TaskEvent` when it completes a task, when an attempt fails, and
then whether the failed task will be retried or was dead-lettered.  Nothing is built when no
one listens, so hooks cost nothing on the hot path until used.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Iterable

from ..errors import InvalidSpecError

__all__ = ["EVENT_KINDS", "TaskEvent", "EventHub", "EventStream"]

#: Kinds of :class:`TaskEvent`, in the order they can follow each other for one attempt.
EVENT_KINDS = ("completed", "failed", "retried", "dead_lettered", "lease_lost")

_log = logging.getLogger("eskernel.runtime")


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """Something the runtime did to a task.

    Kinds:

    * ``completed`` — the handler returned; ``result`` is the task's result.
    * ``failed`` — an attempt failed (exception, timeout, bad result, no handler); ``error``
      is what was recorded.  A ``retried`` or ``dead_lettered`` event follows it.
    * ``retried`` — the task will run again; ``due_at`` is when (clock seconds).
    * ``dead_lettered`` — the task is FAILED for good (attempts exhausted or not retryable);
      ``Kernel.requeue`` runs it again.
    * ``lease_lost`` — the lease was no longer current when the runtime reported (the task was
      cancelled, or its lease expired); the handler's outcome was discarded.

    Attributes:
        kind: one of :data:`EVENT_KINDS`.
        task_id, name, queue: the task.
        attempt: the attempt's number (from 1).
        agent_id: the agent that ran it.
        at: clock time of the event (seconds).
        result: the result (``completed`` only).
        error: the recorded error (``failed`` only; also on ``dead_lettered``).
        due_at: when the retry becomes ready (``retried`` only).
    """

    kind: str
    task_id: str
    name: str | None
    queue: str
    attempt: int
    agent_id: str
    at: float
    result: Any = None
    error: str | None = None
    due_at: float | None = None


class EventStream:
    """An async iterator over task events, created by ``Runtime.events()``.

    It receives every event emitted after its creation (unbounded buffer) and ends when the
    runtime's current ``run``/``run_until_idle`` returns, or at :meth:`aclose`.
    """

    __slots__ = ("_hub", "_queue", "_kinds", "_closed")

    def __init__(self, hub: "EventHub", kinds: frozenset[str] | None) -> None:
        self._hub = hub
        self._queue: asyncio.Queue[TaskEvent | None] = asyncio.Queue()
        self._kinds = kinds
        self._closed = False

    def __aiter__(self) -> AsyncIterator[TaskEvent]:
        return self

    async def __anext__(self) -> TaskEvent:
        if self._closed and self._queue.empty():
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is None:
            self._closed = True
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        """Stop receiving events; the iteration ends after the buffered ones."""
        self._hub._detach(self)
        if not self._closed:
            self._closed = True
            self._queue.put_nowait(None)

    def _put(self, event: TaskEvent) -> None:
        if self._kinds is None or event.kind in self._kinds:
            self._queue.put_nowait(event)


class EventHub:
    """Callbacks and streams of one runtime."""

    __slots__ = ("active", "_callbacks", "_streams", "_pending")

    def __init__(self) -> None:
        self.active = False
        self._callbacks: list[tuple[frozenset[str] | None, Callable[[TaskEvent], Any]]] = []
        self._streams: list[EventStream] = []
        self._pending: set[asyncio.Future[Any]] = set()

    @staticmethod
    def check_kinds(kinds: str | Iterable[str] | None) -> frozenset[str] | None:
        if kinds is None:
            return None
        chosen = frozenset([kinds] if isinstance(kinds, str) else kinds)
        unknown = sorted(chosen - set(EVENT_KINDS))
        if unknown or not chosen:
            raise InvalidSpecError(
                f"unknown task event kind(s) {unknown or '(none given)'}: use any of "
                f"{', '.join(EVENT_KINDS)}, or None for all")
        return chosen

    def on(self, callback: Callable[[TaskEvent], Any], kinds: frozenset[str] | None) -> None:
        if not callable(callback):
            raise InvalidSpecError(
                f"an event callback must be callable, got {type(callback).__name__}")
        self._callbacks.append((kinds, callback))
        self.active = True

    def off(self, callback: Callable[[TaskEvent], Any]) -> None:
        self._callbacks = [(k, cb) for k, cb in self._callbacks if cb is not callback]
        self.active = bool(self._callbacks or self._streams)

    def stream(self, kinds: frozenset[str] | None) -> EventStream:
        stream = EventStream(self, kinds)
        self._streams.append(stream)
        self.active = True
        return stream

    def _detach(self, stream: EventStream) -> None:
        if stream in self._streams:
            self._streams.remove(stream)
        self.active = bool(self._callbacks or self._streams)

    def emit(self, event: TaskEvent) -> None:
        """Deliver ``event``; a callback's exception is logged, never raised."""
        for kinds, callback in self._callbacks:
            if kinds is not None and event.kind not in kinds:
                continue
            try:
                outcome = callback(event)
                if inspect.isawaitable(outcome):
                    task = asyncio.ensure_future(outcome)
                    self._pending.add(task)
                    task.add_done_callback(self._reap)
            except Exception:
                _log.exception("task event callback %r raised on %s of task %r; ignored",
                               callback, event.kind, event.task_id)
        for stream in self._streams:
            stream._put(event)

    def _reap(self, task: asyncio.Future[Any]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("async task event callback raised; ignored",
                       exc_info=task.exception())

    def end_streams(self) -> None:
        """End every open stream (the runtime stopped)."""
        streams, self._streams = self._streams, []
        for stream in streams:
            if not stream._closed:
                stream._queue.put_nowait(None)
                stream._closed = True
        self.active = bool(self._callbacks)

    async def drain(self) -> None:
        """Wait for async callbacks still running."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
