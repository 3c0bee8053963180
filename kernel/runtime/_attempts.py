"""Attempt lifecycle of the handler runtime (private): start a handler for a claimed lease,
settle its outcome with the kernel, heartbeat it, time it out, abandon it.

A mixin of :class:`eskernel.runtime.Runtime`; the attributes it needs are declared on it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextvars
import heapq
import logging
import math
from concurrent.futures.process import BrokenProcessPool
from collections.abc import Callable, Iterator
from typing import Any

from ._events import EventHub, TaskEvent
from ._handlers import (Handler, TaskContext, describe_exception, process_call,
                                resume_coroutine)
from ._support import (ABANDONED, CANCELLING, DONE, RUNNING, TERMINAL, AgentSlot, Attempt,
                               HandlerTimeoutError, process_pool, thread_pool)
from ..errors import InvalidSpecError, StaleLeaseError

_ERR_TIMEOUT = HandlerTimeoutError.__name__
_log = logging.getLogger("eskernel.runtime")


class Attempts:
    """Start, settle, heartbeat and time out attempts (mixed into ``Runtime``).

    What the attempt logic needs from its host is declared here; ``Runtime.__init__`` sets
    each of these, and mypy holds both sides to the declarations.
    """

    kernel: Any
    completed: int
    failed: int
    timed_out: int
    lost: int
    _loop: asyncio.AbstractEventLoop | None
    _handlers: dict[str, Handler]
    _read: Callable[[Any], tuple[str | None, str, Any, int]]
    _now: Callable[[], float]
    _hub: EventHub
    _threads: cf.Executor | None
    _procs: cf.Executor | None
    _own_procs: bool
    _max_threads: int
    _processes: int | None
    _claim_now: float
    _hb_fraction: float
    _grace: float
    _inflight: dict[int, Attempt]
    _finished: list[Attempt]
    _zombies: set[Attempt]
    _timers: list[tuple[float, int, Attempt]]
    _seq: Iterator[int]

    def _wake(self) -> None:
        raise NotImplementedError   # the host's: wakes its loop

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "attempts start only while the runtime runs"
        return self._loop

    def _start(self, lease: Any, agent: AgentSlot) -> None:
        name, queue, payload, max_attempts = self._read(lease)
        handlers = self._handlers
        h = handlers.get(name) if name is not None else None
        if h is None:
            h = handlers.get(queue)
            if h is None:
                self._fail(lease, agent, name, queue, (
                    f"NoHandlerError: no handler is registered for task {lease.task_id!r} "
                    f"(name {name!r}, queue {queue!r}); register one with "
                    f"Runtime.register({(name or queue)!r}, fn), then Kernel.requeue the task"),
                    False)
                return
        deadline = lease.expires_at
        if h.context:
            payload = TaskContext(lease.task_id, name, queue, payload, lease.attempt,
                                  max_attempts, agent.id, lease.lease_id, deadline)
        mode = h.mode
        if mode == "async":
            ctx = contextvars.copy_context()
            try:
                coro = ctx.run(h.fn, payload)
                yielded = ctx.run(coro.send, None)
            except StopIteration as stop:
                self._succeed(lease, agent, h, name, queue, stop.value)
                return
            except (Exception, asyncio.CancelledError) as exc:
                self._fail(lease, agent, name, queue, describe_exception(exc), h.retryable(exc))
                return
            fut: Any = self._running_loop().create_task(resume_coroutine(coro, yielded),
                                                        context=ctx)
        elif mode == "inline":
            try:
                result = h.fn(payload)
            except Exception as exc:
                self._fail(lease, agent, name, queue, describe_exception(exc), h.retryable(exc))
            else:
                self._succeed(lease, agent, h, name, queue, result)
            return
        elif mode == "thread":
            if self._threads is None:
                self._threads = thread_pool(self._max_threads)
            fut = self._running_loop().run_in_executor(self._threads, h.fn, payload)
        else:
            if self._procs is None:
                self._procs = process_pool(self._processes)
            fut = self._running_loop().run_in_executor(self._procs, process_call, h.fn,
                                                       payload)
        timeout = deadline - self._claim_now
        hb_every = max(timeout * self._hb_fraction, 1e-3)
        att = Attempt(lease, agent, h, name, queue, deadline, timeout, hb_every, fut,
                      max_attempts)
        self._inflight[lease.lease_id] = att
        fut.add_done_callback(lambda _f, a=att: self._on_done(a))
        if math.isfinite(deadline):
            heapq.heappush(self._timers, (min(self._claim_now + hb_every, deadline),
                                          next(self._seq), att))

    def _on_done(self, att: Attempt) -> None:
        self._finished.append(att)
        self._wake()

    def _settle_finished(self) -> bool:
        if not self._finished:
            return False
        done, self._finished = self._finished, []
        for att in done:
            self._settle(att)
        return True

    def _settle(self, att: Attempt) -> None:
        if att.state == ABANDONED:
            self._zombies.discard(att)
            att.agent.zombies -= 1
            return
        del self._inflight[att.lease.lease_id]
        fut, state = att.fut, att.state
        att.state = DONE
        if state == CANCELLING:
            self._fail(att.lease, att.agent, att.name, att.queue, att.error or "", True)
        elif fut.cancelled():
            self._fail(att.lease, att.agent, att.name, att.queue, (
                f"CancelledError: handler {att.handler.key!r} for task {att.lease.task_id!r} "
                f"was cancelled by something other than the runtime"), True)
        elif (exc := fut.exception()) is not None:
            err = describe_exception(exc)
            if isinstance(exc, BrokenProcessPool) and self._own_procs:
                err += "\n(a worker process died; the runtime restarts its process pool)"
                if self._procs is not None:
                    self._procs.shutdown(wait=False, cancel_futures=True)
                    self._procs = None
            self._fail(att.lease, att.agent, att.name, att.queue, err,
                       att.handler.retryable(exc))
        else:
            self._succeed(att.lease, att.agent, att.handler, att.name, att.queue, fut.result())

    def _succeed(self, lease: Any, agent: AgentSlot, h: Handler, name: str | None,
                 queue: str, result: Any) -> None:
        try:
            self.kernel.complete(lease, result)
        except StaleLeaseError:
            self._lost(lease, agent, name, queue)
            return
        except (InvalidSpecError, TypeError, ValueError) as err:
            self._fail(lease, agent, name, queue, (
                f"InvalidResultError: handler {h.key!r} returned a {type(result).__name__} "
                f"for task {lease.task_id!r} that cannot be stored ({err}); return JSON data "
                f"(dict, list, str, int, finite float, bool or None) within the size limit; "
                f"not retried: the same handler would return the same value"), False)
            return
        agent.held -= 1
        self.completed += 1
        self._changed = True
        if self._hub.active:
            self._hub.emit(TaskEvent("completed", lease.task_id, name, queue, lease.attempt,
                                     agent.id, self._now(), result=result))

    def _fail(self, lease: Any, agent: AgentSlot, name: str | None, queue: str, error: str,
              retryable: bool) -> None:
        try:
            self.kernel.fail(lease, error=error, retryable=retryable)
        except StaleLeaseError:
            self._lost(lease, agent, name, queue)
            return
        agent.held -= 1
        self.failed += 1
        self._changed = True
        view = None
        if _log.isEnabledFor(logging.WARNING) or self._hub.active:
            view = self.kernel.task(lease.task_id)
            first = error.split("\n", 1)[0]
            if view.status == "FAILED":
                _log.warning("task %r (queue %r) dead-lettered after attempt %d of %d%s: %s",
                             lease.task_id, queue, lease.attempt, view.max_attempts,
                             "" if retryable else " (not retryable)", first)
            elif view.status not in TERMINAL:
                _log.info("task %r (queue %r) attempt %d of %d failed; retry due at %s: %s",
                          lease.task_id, queue, lease.attempt, view.max_attempts,
                          view.due_at, first)
        if self._hub.active and view is not None:
            now, tid = self._now(), lease.task_id
            emit = self._hub.emit
            emit(TaskEvent("failed", tid, name, queue, lease.attempt, agent.id, now,
                           error=error))
            if view.status == "FAILED":
                emit(TaskEvent("dead_lettered", tid, name, queue, lease.attempt, agent.id, now,
                               error=error))
            elif view.status not in TERMINAL:
                emit(TaskEvent("retried", tid, name, queue, lease.attempt, agent.id, now,
                               due_at=view.due_at if view.due_at is not None else now))

    def _lost(self, lease: Any, agent: AgentSlot, name: str | None, queue: str) -> None:
        _log.warning("lease %d of task %r (queue %r) is no longer current (it expired or the "
                     "task was cancelled); the handler's outcome was dropped", lease.lease_id,
                     lease.task_id, queue)
        agent.held -= 1
        self.lost += 1
        self._changed = True
        if self._hub.active:
            self._hub.emit(TaskEvent("lease_lost", lease.task_id, name, queue, lease.attempt,
                                     agent.id, self._now()))

    # -- timers: heartbeats, timeouts -----------------------------------------------------

    def _fire_timers(self, now: float) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            att = heapq.heappop(timers)[2]
            if att.state == RUNNING:
                if now >= att.deadline:
                    self._on_timeout(att, now)
                else:
                    self._heartbeat(att, now)
            elif att.state == CANCELLING and now >= att.abandon_at:
                self._abandon(att, "fail")

    def _heartbeat(self, att: Attempt, now: float) -> None:
        try:
            self.kernel.heartbeat(att.lease)
        except StaleLeaseError:  # cancelled, or expired by someone's tick: stop the work
            self._abandon(att, "lost")
            return
        heapq.heappush(self._timers, (min(now + att.hb_every, att.deadline), next(self._seq),
                                      att))

    def _on_timeout(self, att: Attempt, now: float) -> None:
        self.timed_out += 1
        msg = (f"{_ERR_TIMEOUT}: handler {att.handler.key!r} for task {att.lease.task_id!r} "
               f"exceeded the task's timeout of {att.timeout:.3g} s on attempt "
               f"{att.lease.attempt} of {att.max_attempts}")
        if att.handler.mode == "async":
            att.error = msg + "; the coroutine was cancelled"
            try:  # keep the lease alive while the coroutine unwinds
                self.kernel.heartbeat(att.lease)
            except StaleLeaseError:
                self._abandon(att, "lost")
                return
            att.state = CANCELLING
            att.abandon_at = now + min(self._grace, att.timeout / 2)
            att.fut.cancel()
            heapq.heappush(self._timers, (att.abandon_at, next(self._seq), att))
        else:
            kind = "thread" if att.handler.mode == "thread" else "worker process"
            att.error = (msg + f"; the {kind} running it cannot be interrupted, so it was "
                         f"abandoned and its result will be ignored")
            self._abandon(att, "fail")

    def _abandon(self, att: Attempt, how: str) -> None:
        """Give up on a running attempt and resolve its lease (``how``: ``"fail"`` with
        ``att.error``, ``"release"`` it, or it was ``"lost"``).  Until the handler returns it
        counts as a zombie of its agent, occupying one slot."""
        self._inflight.pop(att.lease.lease_id, None)
        was_cancelling = att.state == CANCELLING
        att.state = ABANDONED
        att.agent.zombies += 1
        self._zombies.add(att)
        if att.handler.mode == "async" and not was_cancelling:
            att.fut.cancel()
        lease, agent = att.lease, att.agent
        if how == "fail":
            self._fail(lease, agent, att.name, att.queue, att.error or "", True)
        elif how == "lost":
            self._lost(lease, agent, att.name, att.queue)
        else:
            try:
                self.kernel.release(lease)
            except StaleLeaseError:
                pass
            agent.held -= 1
            self._changed = True

    def _abandon_all(self, release: bool) -> None:
        for att in list(self._inflight.values()):
            att.error = att.error or "the runtime shut down"
            self._abandon(att, "release" if release else "fail")
