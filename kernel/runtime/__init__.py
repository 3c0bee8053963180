"""The handler runtime: register Python functions, and it runs your tasks through the kernel.

A :class:`Runtime` claims work from a :class:`~eskernel.Kernel` as one or more agents, runs the
handler registered for each task, heartbeats while it runs, and completes or fails the task.
Retries, backoff and dead-lettering are the kernel's: the runtime reports each attempt's
outcome and calls ``Kernel.tick()`` so that expired leases and due retries are released.

>>> import asyncio
>>> from eskernel import Kernel, ManualClock
>>> from eskernel.runtime import Runtime
>>> k = Kernel.in_memory(clock=ManualClock())
>>> k.declare_queue("images")
>>> rt = Runtime(k, agents=[{"id": "w1", "capabilities": ["images"], "capacity": 4}])
>>> @rt.handler("resize")
... async def resize(payload):
...     return {"width": payload["width"] // 2}
>>> t = k.submit("images", {"width": 640}, name="resize")
>>> asyncio.run(rt.run_until_idle())
>>> k.task(t).result
{'width': 320}
>>> rt.close()

How handlers run:

* ``async def`` handlers run on the event loop.  They start *eagerly* (the runtime sends
  into the coroutine right away, like Python 3.12's eager task factory), so one that never
  suspends costs no ``asyncio.Task``; one that suspends continues as a task.
* sync handlers run in a thread pool (``executor="thread"``, the default for them), in a
  process pool (``executor="process"``: the function must be picklable, i.e. defined at the
  top level of a module; payloads are JSON and results must be picklable and JSON-able), or
  on the loop itself (``executor="inline"``: cheapest, but it blocks the loop and cannot be
  timed out).

Timeouts: an attempt may run for its task's ``timeout`` (the lease's initial duration).  An
async handler that overruns is cancelled; a thread or process handler cannot be interrupted,
so it is *abandoned*: the attempt fails at once with a :class:`HandlerTimeoutError`, the
handler's eventual result is ignored, and until it returns it keeps occupying a slot of its
agent's capacity (so the runtime never runs more handlers than an agent's capacity).  It no
longer counts toward its queue's ``max_concurrent`` in the kernel, though: a queue limit
holds at every moment for async handlers, and for thread/process handlers only as long as
none overruns.  The interpreter waits for an abandoned thread at exit.

Concurrency: the kernel grants leases within queue ``max_concurrent`` and agent capacity;
the runtime never runs a handler it holds no lease for, and claims for an agent only as many
tasks as it has free slots.

Time: deadlines, heartbeats and ticks follow the kernel's clock.  With a
:class:`~eskernel.ManualClock`, ``run_until_idle`` *auto-jumps* the clock (unless
``autojump=False``): when nothing can progress but a deadline, heartbeat, retry or lease
expiry lies ahead, it sets the clock to it, so tests and simulations finish at once.  Use it
with handlers that wait on events, not real-time sleeps.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import itertools
import logging
import math
from collections.abc import Iterable
from typing import Any, Callable, TypeVar

from ._attempts import Attempts

#: A handler function, kept as it is by :meth:`Runtime.register` and :meth:`Runtime.handler`.
F = TypeVar("F", bound=Callable[..., Any])
from ._events import EVENT_KINDS, EventHub, EventStream, TaskEvent
from ._handlers import EXECUTORS, Handler, TaskContext, make_handler
from ._support import (TERMINAL, AgentSlot, Attempt, HandlerTimeoutError,
                               WaitTimeoutError, parse_agents, task_reader)
from ..errors import (AgentAtCapacityError, AgentOfflineError, EskernelError, InvalidSpecError,
                      InvalidStateError, NonRetryableError)

__all__ = ["Runtime", "TaskContext", "TaskEvent", "EventStream", "HandlerTimeoutError",
           "NonRetryableError", "WaitTimeoutError", "EVENT_KINDS", "EXECUTORS"]

_log = logging.getLogger("eskernel.runtime")
_QUIET_PASSES = 20      # loop passes with no progress before the clock auto-jumps


def _positive(value: object, what: str, allow_zero: bool = False) -> float:
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value) and (value >= 0 if allow_zero else value > 0))
    if not ok:
        raise InvalidSpecError(f"{what} must be a {'non-negative' if allow_zero else 'positive'}"
                               f" finite number of seconds, got {value!r}")
    return float(value)  # type: ignore[arg-type]


class Runtime(Attempts):
    """Runs registered handlers for a kernel's tasks.

    Args:
        kernel: the :class:`~eskernel.Kernel` to claim from.
        agents: the agents to claim as: ids already registered with the kernel, mappings
            ``{"id": ..., "capabilities": [queue, ...], "capacity": n}`` or tuples
            ``(id, capabilities, capacity)`` (registered on the spot; registering the same
            spec again is a no-op).
        clock: the kernel's clock (defaults to the kernel's own); must have ``now()`` or
            ``time_ns()``.
        tick_interval: how often (clock seconds) ``Kernel.tick()`` runs with a real clock;
            with a manual clock it runs whenever the clock moved.
        heartbeat_fraction: a running attempt's lease is renewed every ``timeout * fraction``.
        poll_interval: longest real-time sleep of the loop, which bounds how late it notices
            tasks submitted behind its back (``Runtime.submit`` wakes it at once).
        cancel_grace: clock seconds a timed-out coroutine gets to unwind before it is
            abandoned.
        max_threads: size of the thread pool for sync handlers (default: total capacity).
        processes: size of the process pool (default: CPU count).
        thread_pool, process_pool: executors to use instead (not shut down by ``close``).
        autojump: auto-jump a manual clock in ``run_until_idle`` (default: True when the
            clock has ``set()``).

    Raises:
        InvalidSpecError: a bad option or agent spec.
        UnknownAgentError / UnknownQueueError: an agent id or capability the kernel lacks.

    Overhead: a few µs of Python per task for an async handler that does not suspend, on
    top of the kernel's claim and complete; ``bench/test_runtime.py`` measures it against
    plain asyncio tasks under a semaphore.
    """

    def __init__(self, kernel: Any, *, agents: object, clock: Any = None,
                 tick_interval: float = 0.05, heartbeat_fraction: float = 1 / 3,
                 poll_interval: float = 0.01, cancel_grace: float = 1.0,
                 max_threads: int | None = None, processes: int | None = None,
                 thread_pool: cf.Executor | None = None,
                 process_pool: cf.Executor | None = None,
                 autojump: bool | None = None) -> None:
        self.kernel = kernel
        self._tick_interval = _positive(tick_interval, "tick_interval", allow_zero=True)
        self._poll = _positive(poll_interval, "poll_interval")
        self._grace = _positive(cancel_grace, "cancel_grace", allow_zero=True)
        hb = heartbeat_fraction
        if not isinstance(hb, (int, float)) or isinstance(hb, bool) or not 0 < hb < 1:
            raise InvalidSpecError(f"heartbeat_fraction must be in (0, 1), got {hb!r}")
        self._hb_fraction = float(hb)
        for value, what in ((max_threads, "max_threads"), (processes, "processes")):
            if value is not None and (type(value) is not int or value < 1):
                raise InvalidSpecError(f"{what} must be a positive int or None, got {value!r}")
        clock = clock if clock is not None else getattr(kernel, "clock", None)
        if clock is None:
            clock = getattr(kernel, "clock", None)
        if clock is None or not (hasattr(clock, "now") or hasattr(clock, "time_ns")):
            raise InvalidSpecError("pass clock= (the kernel's clock, with now() or time_ns())")
        self.clock = clock
        self._now: Callable[[], float] = (clock.now if hasattr(clock, "now")
                                          else lambda: clock.time_ns() / 1e9)
        manual = hasattr(clock, "set") and hasattr(clock, "advance")
        self._manual = manual
        self._autojump = manual if autojump is None else bool(autojump)
        if self._autojump and not manual:
            raise InvalidSpecError("autojump=True needs a manual clock (one with set())")
        self._agents: list[AgentSlot] = parse_agents(kernel, agents)
        self._served = frozenset(q for a in self._agents for q in a.capabilities)
        self._max_threads = max_threads or max(4, sum(a.capacity for a in self._agents))
        self._processes = processes
        self._threads: cf.Executor | None = thread_pool
        self._procs: cf.Executor | None = process_pool
        self._own_threads = thread_pool is None
        self._own_procs = process_pool is None
        self._handlers: dict[str, Handler] = {}
        self._read = task_reader(kernel)
        self._hub = EventHub()
        self._inflight: dict[int, Attempt] = {}
        self._finished: list[Attempt] = []
        self._zombies: set[Attempt] = set()
        self._timers: list[tuple[float, int, Attempt]] = []
        self._seq = itertools.count()
        self._watchers: list[asyncio.Future[None]] = []
        self._waiter: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = False
        self._stopping = False
        self._stop_grace: float | None = 5.0
        self._last_tick = -math.inf
        self._changed = False
        self._due_cache: tuple[int, float, float | None] | None = None
        self._claim_now = 0.0
        self.completed = 0      #: tasks completed by this runtime
        self.failed = 0         #: attempts failed by this runtime (incl. timeouts)
        self.timed_out = 0      #: attempts that overran their timeout
        self.lost = 0           #: attempts whose lease was no longer current at the end

    # -- registration ---------------------------------------------------------------------

    def register(self, key: str, fn: F, *, executor: str = "auto", context: bool = False,
                 replace: bool = False,
                 non_retryable: tuple[type[BaseException], ...] = ()) -> F:
        """Register ``fn`` for tasks whose name is ``key``, or whose queue is ``key``.

        A task's handler is looked up by its name first, then by its queue.  ``fn`` gets the
        task's payload (or a :class:`TaskContext` with ``context=True``) and returns its
        result (JSON data).  Returns ``fn``.

        Args:
            executor: ``"auto"`` (async functions on the loop, sync ones in threads),
                ``"async"``, ``"thread"``, ``"process"`` or ``"inline"``.
            replace: allow replacing a handler already registered for ``key``.
            non_retryable: exception types that fail the task at once, without retries
                (like :class:`~kernel.NonRetryableError`, which always does).  A result
                that cannot be stored (not JSON, a NaN, too large) is never retried either.

        Raises:
            InvalidSpecError: bad key, not callable, an executor that does not fit the
                function, an unpicklable process handler, or ``key`` already registered.

        >>> from eskernel import Kernel
        >>> k = Kernel.in_memory(); k.declare_queue("q")
        >>> rt = Runtime(k, agents=[("w", ["q"], 1)])
        >>> _ = rt.register("q", len)
        >>> rt.handlers()
        {'q': 'thread'}
        """
        handler = make_handler(key, fn, executor, context, non_retryable)
        if key in self._handlers and not replace:
            raise InvalidSpecError(f"a handler is already registered for {key!r} "
                                   f"({self._handlers[key].fn!r}); pass replace=True to swap it")
        self._handlers[key] = handler
        return fn

    def handler(self, key: str, *, executor: str = "auto", context: bool = False,
                replace: bool = False, non_retryable: tuple[type[BaseException], ...] = ()
                ) -> Callable[[F], F]:
        """Decorator form of :meth:`register`: ``@rt.handler("resize")``; the function keeps
        its type."""
        def decorate(fn: F) -> F:
            return self.register(key, fn, executor=executor, context=context, replace=replace,
                                 non_retryable=non_retryable)
        return decorate

    def handlers(self) -> dict[str, str]:
        """Registered keys and how each runs."""
        return {k: h.mode for k, h in self._handlers.items()}

    # -- hooks ----------------------------------------------------------------------------

    def on(self, kinds: str | Iterable[str] | None,
           callback: Callable[[TaskEvent], Any]) -> Callable[[TaskEvent], Any]:
        """Call ``callback(event)`` for task events of ``kinds`` (None: all kinds).

        Callbacks run on the loop, right after the kernel recorded the outcome; a coroutine
        callback is scheduled as a task.  Exceptions are logged to ``eskernel.runtime`` and
        otherwise ignored.  Returns ``callback``.

        Raises:
            InvalidSpecError: an unknown kind (see :data:`EVENT_KINDS`).
        """
        self._hub.on(callback, EventHub.check_kinds(kinds))
        return callback

    def off(self, callback: Callable[[TaskEvent], Any]) -> None:
        """Stop calling ``callback``."""
        self._hub.off(callback)

    def events(self, kinds: str | Iterable[str] | None = None) -> EventStream:
        """An async iterator of task events from now on; it ends when the current (or next)
        ``run``/``run_until_idle`` returns.  Create it before starting the run.

        >>> import asyncio
        >>> from eskernel import Kernel, ManualClock
        >>> k = Kernel.in_memory(clock=ManualClock()); k.declare_queue("q")
        >>> rt = Runtime(k, agents=[("w", ["q"], 2)])
        >>> _ = rt.register("q", lambda p: p * 2, executor="inline")
        >>> _ = k.submit("q", 21, id="x")
        >>> async def main():
        ...     stream = rt.events("completed")
        ...     await rt.run_until_idle()
        ...     return [(e.task_id, e.result) async for e in stream]
        >>> asyncio.run(main())
        [('x', 42)]
        """
        return self._hub.stream(EventHub.check_kinds(kinds))

    # -- user calls -----------------------------------------------------------------------

    def submit(self, *args: Any, **kwargs: Any) -> str:
        """``Kernel.submit`` that also wakes a running runtime at once."""
        task_id = self.kernel.submit(*args, **kwargs)
        self._wake()
        return str(task_id)

    async def run_until_idle(self, *, timeout: float | None = None) -> None:
        """Run until nothing is ready, running or due for this runtime's agents.

        "Due" covers retries waiting out a backoff, delayed tasks and leases held by others
        (e.g. a crashed process) that will expire.  Ready tasks this runtime cannot claim
        (paused queue, pinned to another agent, an offline agent) do not keep it running.

        Args:
            timeout: real seconds after which to stop (releasing in-flight leases) and raise
                :class:`WaitTimeoutError`.

        Raises:
            InvalidStateError: the runtime is already running.
            KernelFailedError and other kernel errors that stop the kernel itself.
        """
        if timeout is None:
            await self._serve(until_idle=True)
            return
        _positive(timeout, "timeout", allow_zero=True)
        try:
            await asyncio.wait_for(self._serve(until_idle=True), timeout)
        except TimeoutError:
            raise WaitTimeoutError(
                f"run_until_idle did not finish within {timeout} s; in-flight leases were "
                f"released; call it again to continue") from None

    async def run(self) -> None:
        """Run until :meth:`stop` is called, then shut down gracefully (stop claiming, let
        in-flight handlers finish within the grace period, release what remains)."""
        await self._serve(until_idle=False)

    def stop(self, grace: float | None = 5.0) -> None:
        """Ask a running runtime to stop: it claims nothing more, gives in-flight handlers
        ``grace`` real seconds (None: unlimited) to finish, then cancels them and releases
        their leases (the attempt is given back).  Returns at once; safe from callbacks."""
        if grace is not None:
            _positive(grace, "grace", allow_zero=True)
        self._stop_grace = grace
        self._stopping = True
        self._wake()

    async def shutdown(self, grace: float | None = 5.0) -> None:
        """:meth:`stop`, wait until the run has returned, then :meth:`close`."""
        self.stop(grace)
        while self._running:
            await asyncio.sleep(self._poll)
        self.close()

    def close(self) -> None:
        """Shut down the executors the runtime created.  Idempotent."""
        zombies = bool(self._zombies) or bool(self._inflight)
        if self._threads is not None and self._own_threads:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None
        if self._procs is not None and self._own_procs:
            self._procs.shutdown(wait=not zombies, cancel_futures=True)
            self._procs = None

    async def __aenter__(self) -> "Runtime":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    async def wait(self, task_ids: str | Iterable[str], timeout: float | None = None) -> Any:
        """Wait until a task (or every task of a set) is COMPLETED, FAILED or CANCELLED.

        Returns the :class:`~eskernel.TaskView` (a list of them for a set, in order).  The
        runtime must be running (``run``) in another task for work to progress; ``timeout``
        is in real seconds.

        Raises:
            UnknownTaskError: an id the kernel does not know.
            WaitTimeoutError: some tasks were not finished in time (the message names them).
        """
        single = isinstance(task_ids, str)
        ids = [task_ids] if single else list(task_ids)
        if timeout is not None:
            _positive(timeout, "timeout", allow_zero=True)
        views = {i: self.kernel.task(i) for i in ids}
        loop = asyncio.get_running_loop()
        end = None if timeout is None else loop.time() + timeout
        while True:
            pending = [i for i in views if views[i].status not in TERMINAL]
            if not pending:
                return views[ids[0]] if single else [views[i] for i in ids]
            left = None if end is None else end - loop.time()
            if left is not None and left <= 0:
                names = ", ".join(f"{i!r} ({views[i].status})" for i in pending[:10])
                raise WaitTimeoutError(
                    f"{len(pending)} of {len(views)} task(s) not finished after {timeout} s: "
                    f"{names}{', ...' if len(pending) > 10 else ''}; they keep running: wait "
                    f"again, or cancel them with Kernel.cancel")
            fut: asyncio.Future[None] = loop.create_future()
            self._watchers.append(fut)
            delay = 5 * self._poll if left is None else min(5 * self._poll, left)
            handle = loop.call_later(delay, _resolve, fut)
            try:
                await fut
            finally:
                handle.cancel()
            for i in pending:
                views[i] = self.kernel.task(i)

    def stats(self) -> dict[str, int]:
        """This runtime's counters and what it holds right now."""
        return {"completed": self.completed, "failed": self.failed,
                "timed_out": self.timed_out, "lost": self.lost,
                "in_flight": len(self._inflight), "abandoned_running": len(self._zombies)}

    # -- the loop -------------------------------------------------------------------------

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def _sleep(self, seconds: float) -> None:
        loop = self._loop
        assert loop is not None
        fut = self._waiter = loop.create_future()
        handle = loop.call_later(max(seconds, 0.0), _resolve, fut)
        try:
            await fut
        finally:
            handle.cancel()
            self._waiter = None

    async def _serve(self, until_idle: bool) -> None:
        if self._running:
            raise InvalidStateError("this runtime is already running; call stop() first, or "
                                    "wait() for tasks from another coroutine")
        self._running, self._stopping = True, False
        self._loop = asyncio.get_running_loop()
        try:
            await self._main(until_idle)
        finally:
            self._running = False
            try:
                if self._inflight:  # cancelled from outside, or a kernel error: give back
                    self._abandon_all(release=True)
                self._settle_finished()
            except EskernelError:  # the kernel itself failed; its error is already raised
                pass
            self._hub.end_streams()
            await self._hub.drain()
            self._notify()

    async def _main(self, until_idle: bool) -> None:
        quiet = forced = 0
        while True:
            progress = self._settle_finished()
            now = self._now()
            if self._timers and self._timers[0][0] <= now:
                self._fire_timers(now)
            if now != self._last_tick and (self._manual
                                            or now - self._last_tick >= self._tick_interval):
                self._last_tick = now
                ticked = self.kernel.tick()
                if isinstance(ticked, dict) and ticked.get("expired"):
                    _log.info("%d lease(s) expired (their holders stopped heartbeating); the "
                              "tasks are retried or dead-lettered", ticked["expired"])
            if self._stopping:
                await self._drain()
                return
            if self._claim_all(now):
                progress = True
            if self._changed:
                self._notify()
            if progress or self._finished:
                quiet = forced = 0
                await asyncio.sleep(0)
                continue
            if not self._inflight:
                # An abandoned handler keeps running only if work waits for its slot.
                if not until_idle or (self._zombies and self._blocked_by_zombies()):
                    await self._sleep(self._poll)
                    continue
                due = self._next_due(now)
                if due is None:
                    return
                if due <= now:  # due but not yet released: tick now
                    forced += 1
                    if forced > 3:
                        return
                    self._last_tick = -math.inf
                    continue
                if self._autojump:
                    self.clock.set(due)
                    continue
                await self._sleep(self._poll if self._manual else min(due - now, self._poll))
                continue
            nxt = self._timers[0][0] if self._timers else None
            if until_idle and self._autojump and all(
                    a.handler.mode == "async" for a in self._inflight.values()):
                quiet += 1
                if quiet < _QUIET_PASSES:
                    await asyncio.sleep(0)
                    continue
                target = nxt if nxt is not None else self._next_due(now)
                if target is not None and target > now:
                    quiet = 0
                    self.clock.set(target)
                    continue
            if nxt is None or self._manual:
                await self._sleep(self._poll)
            else:
                await self._sleep(min(nxt - now, self._poll))

    def _claim_all(self, now: float) -> int:
        total = 0
        self._claim_now = now
        claim_many = self.kernel.claim_many
        agents = self._agents
        if len(agents) > 1:  # rotate who claims first, so no agent starves the others
            agents.append(agents.pop(0))
        for agent in agents:
            free = agent.capacity - agent.held - agent.zombies
            if free <= 0:
                continue
            try:
                leases = claim_many(agent.id, free)
            except (AgentAtCapacityError, AgentOfflineError):
                continue  # offline, or leases of an earlier incarnation still live
            if leases:
                agent.held += len(leases)
                total += len(leases)
                for lease in leases:
                    self._start(lease, agent)
        return total

    async def _drain(self) -> None:
        loop = self._loop
        assert loop is not None
        grace = self._stop_grace
        end = None if grace is None else loop.time() + grace
        while self._inflight:
            self._settle_finished()
            now = self._now()
            if self._timers and self._timers[0][0] <= now:
                self._fire_timers(now)
            if not self._inflight or (end is not None and loop.time() >= end):
                break
            await self._sleep(self._poll if end is None else min(self._poll, end - loop.time()))
        self._abandon_all(release=True)
        pending = [a.fut for a in self._zombies if a.handler.mode == "async"]
        if pending:
            await asyncio.wait(pending, timeout=0.1)
        self._settle_finished()

    def _blocked_by_zombies(self) -> bool:
        """Whether a READY task waits for a slot that an abandoned handler holds."""
        blocked = {q for a in self._agents if a.zombies and a.capacity - a.held - a.zombies <= 0
                   for q in a.capabilities}
        return bool(blocked) and any(
            v.queue in blocked for v in self.kernel.tasks(status="READY"))

    def _next_due(self, now: float) -> float | None:
        """Earliest time something in a served queue becomes ready without our help: a
        retry or delay ending, or a lease held by someone else expiring.  O(those tasks)."""
        key = (self.kernel.next_offset, now)
        cached = self._due_cache
        if cached is not None and cached[:2] == key:
            return cached[2]
        best = None
        for status in ("RETRYING", "PENDING", "RUNNING"):
            for view in self.kernel.tasks(status=status):
                if view.queue not in self._served:
                    continue
                t = view.expires_at if status == "RUNNING" else view.due_at
                if t is not None and (best is None or t < best):
                    best = t
        self._due_cache = (key[0], key[1], best)
        return best

    def _notify(self) -> None:
        self._changed = False
        watchers, self._watchers = self._watchers, []
        for fut in watchers:
            _resolve(fut)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
