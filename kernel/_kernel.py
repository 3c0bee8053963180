"""The Kernel: the public API.  Every command validates, decides, appends its event, applies.

The claim, complete and heartbeat paths are fused for speed: the compiled core decides and
applies in one call and the event is appended right after (``tick`` likewise applies its
expiries and wake-ups and appends them in batches).  If that append fails the kernel
is *poisoned* — every later call raises :class:`KernelFailedError` — so no caller ever
observes state the log does not hold; reopening replays to the last durable event.
"""

from __future__ import annotations

import gc
import hashlib
import os
import weakref
from collections.abc import Iterable
from typing import Any

from . import events
from ._apply import _NO_META, KernelState
from ._clock import Clock, SystemClock
from ._codes import CHOOSE_AT_CAPACITY, CHOOSE_OFFLINE, ROW_LEASE_ID, ROW_STATUS
from ._core import Lease
from ._memlog import MemoryLog
from ._submit import (NO_IDS, batch_events, hot_extra, keyed_task, new_id, simple_batch,
                      spec_dict, spec_list, submitted_event)
from ._explain import explain
from ._views import ReadModel, lease_handle
from ._validate import NS, check_capabilities, check_id, check_int, check_kernel_options, lookup
from ._snapshotter import Snapshotter
from .errors import (AgentAtCapacityError, AgentOfflineError, DuplicateTaskError, EskernelError,
                     InvalidArgumentError, InvalidSpecError, InvalidStateError, KernelClosedError, KernelFailedError,
                     LeaseExpiredError, StaleLeaseError)
from .models import BackoffPolicy, Priority, Stats, TaskSpec, TaskView
from .workflows.commands import WorkflowCommands

def _early_claims(log: Any) -> bool:
    # fsync mode answers a claim before it is on disk (see _native/hot.pxi).
    return getattr(getattr(log, "durability", None), "value", None) == "fsync"


#: Events ``tick()`` appends per batch.
TICK_BATCH = 4096


def _monotonic(read: Any, state: KernelState) -> Any:
    # Event times never go back in a log (replay refuses a log where they do): a clock
    # stepped back, or a reopen with an earlier clock, reads as the last event's time.
    def now() -> int:
        t = read()
        last = state.last_ts
        return t if t >= last else last
    return now


class Kernel(WorkflowCommands):
    """An event-sourced task scheduler.  Open one with :meth:`open` or :meth:`in_memory`.

    A Kernel is not thread-safe: call it from one thread (the :class:`Runtime` does), or
    serialize calls with a lock.

    >>> from eskernel import Kernel, ManualClock
    >>> k = Kernel.in_memory(clock=ManualClock())
    >>> k.declare_queue("render", max_concurrent=4)
    >>> k.register_agent("gpu-1", capabilities=["render"], capacity=2)
    >>> t = k.submit("render", {"frame": 7}, id="frame-7")
    >>> lease = k.claim("gpu-1")
    >>> lease.task_id
    'frame-7'
    >>> k.complete(lease, result={"ok": True})
    >>> k.task("frame-7").status
    'COMPLETED'
    """

    # -- construction -------------------------------------------------------------------

    def __init__(self, log: Any, state: KernelState, *, clock: Clock | None, seed: int,
                 snapshot_every: int, max_payload_bytes: int, read_only: bool = False,
                 snapshot_keep: int = 2, snapshot_growth: float = 0.5) -> None:
        self._log = log
        self._state = state
        self._sched = state.sched
        self._clock = clock if clock is not None else SystemClock()
        self._time_ns = self._clock.time_ns     # the hot paths clamp it inline (_monotonic)
        self._now = _monotonic(self._time_ns, state)
        self._seed = seed
        self._snapshot_every = snapshot_every
        self._max_payload = max_payload_bytes
        self._read_only = read_only
        self._failed: BaseException | None = None
        self._closed = False
        self._last_snapshot = state.applied
        self._append_fn = log.append
        self._agent_index = state.agent_index
        self._wf_tasks = state.workflows.tasks     # open workflow tasks (the dict is never rebound)
        self._read = ReadModel(state, log)
        state.sched.blocked = read_only    # closed, failed or read-only: the slow check runs
        self._snapshotter = (Snapshotter(log, snapshot_keep, snapshot_growth)
                             if hasattr(log, "write_snapshot") and not read_only else None)
        path = getattr(log, "path", None)
        if path is not None:
            # A lease carries the identity of the log that issued it: the log directory's
            # (device, inode), stable across reopens (a lease whose claim is logged stays
            # good), distinct for another directory or a copy of this one.  In memory, the
            # core's own process-unique identity serves.
            st_ = os.stat(path)
            state.sched.ident = hash((st_.st_dev, st_.st_ino)) & 0x3FFF_FFFF_FFFF_FFFF | 1 << 62
        if not read_only:
            self._bind_hot(log.appender)
            # The common submit / claim / complete / heartbeat run in one C call: instance
            # attributes shadow the methods, their general paths (_native/hot_calls.pxi),
            # unless a subclass overrides them.
            state.sched.bind_entry(self._time_ns, Kernel, weakref.ref(self),
                                   self._maybe_snapshot if snapshot_every else None)
            for name in ("submit", "claim", "complete", "heartbeat"):
                if getattr(type(self), name) is getattr(Kernel, name):
                    setattr(self, name, getattr(state.sched, "k_" + name))
            # Claims in fsync mode are answered before they are on disk (see
            # _native/hot.pxi): on a log with records, an epoch record comes first.
            state.sched.epoch_due = bool(_early_claims(self._log) and state.applied)
            self._wf_route()          # a reopened kernel may hold runs with open tasks

    def _bind_hot(self, append: Any, append_claim: Any = None) -> None:
        # The hot calls (submit, claim, complete, heartbeat, release) append from C; in
        # fsync mode a claim does not wait for the disk.
        state = self._state
        if append_claim is None:
            append_claim = self._log.append_unsynced if _early_claims(self._log) else append
        state.sched.bind_hot(append, append_claim, self._log.append_many, events.dumps,
                             state.task_index,
                             state.queue_index, state.agent_index, state.payloads, state.results,
                             state.errors, state.meta, _NO_META, state.default_policy,
                             self._max_payload, getattr(self._log, "max_record_bytes", 1 << 62))

    @property
    def _append(self) -> Any:
        """The append of one record every call goes through (a seam for fault tests)."""
        return self._append_fn

    @_append.setter
    def _append(self, append: Any) -> None:
        self._append_fn = append
        self._bind_hot(append, append)

    @classmethod
    def in_memory(cls, *, clock: Clock | None = None, seed: int = 0,
                  max_payload_bytes: int = 1 << 20) -> "Kernel":
        """A kernel whose log lives in memory (nothing durable).

        Args:
            clock: time source with ``time_ns()``; defaults to the wall clock.
            seed: seeds the retry jitter (the drawn values are recorded in events).
            max_payload_bytes: the largest JSON-encoded payload or result accepted.

        Raises:
            InvalidSpecError: a clock without ``time_ns()``, a seed that is not an int, or
                ``max_payload_bytes`` not an int in [1, 2**31].
        """
        check_kernel_options(clock=clock, seed=seed, max_payload_bytes=max_payload_bytes)
        return cls(MemoryLog(), KernelState(), clock=clock, seed=seed, snapshot_every=0,
                   max_payload_bytes=max_payload_bytes)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, durability: str = "write",
             clock: Clock | None = None, seed: int = 0, snapshot_every: int = 100_000,
             snapshot_keep: int = 2, snapshot_growth: float = 0.5,
             max_payload_bytes: int = 1 << 20, create: bool = True,
             **log_options: Any) -> "Kernel":
        """Open (or create) a durable kernel in directory ``path``.

        With ``create=True`` (the default) a missing directory is created, and an existing
        directory without a log gets a new one; only the last directory of ``path`` is ever
        created, so a mistyped parent is an error rather than a new tree.  ``create=False``
        opens an existing log only.  ``log_options`` are the event log's
        ``segment_bytes``, ``max_record_bytes`` and ``flush_interval_ms``.

        Loads the newest valid snapshot, then replays the log's tail through the same apply
        path live operation uses.  ``durability`` is the event log's mode (``"fsync"``,
        ``"write"`` or ``"buffer"``; see :class:`eskernel.eventlog.Durability`).  A snapshot is taken
        every ``snapshot_every`` events (0: only on :meth:`snapshot`) once the log has grown
        by ``snapshot_growth`` times the last snapshot's size, on a background thread; the
        ``snapshot_keep`` newest are kept.  A snapshot that fails its checks, or lies beyond the log's end
        (removed on open), is reported and the log replayed instead.

        Raises:
            LogLockedError: another process holds the directory.
            LogCorruptError: a record before the tail is damaged.
            LogNotFoundError: ``create=False`` and no log at ``path``, or the parent of a
                missing ``path`` does not exist.
            InvalidSpecError: a bad or unknown option, or ``max_payload_bytes`` too large
                for the log's ``max_record_bytes``.
        """
        from ._replay import open_durable
        return open_durable(cls, path, durability=durability, clock=clock, seed=seed,
                            snapshot_every=snapshot_every, snapshot_keep=snapshot_keep,
                            snapshot_growth=snapshot_growth, create=create,
                            max_payload_bytes=max_payload_bytes, log_options=log_options)

    @classmethod
    def replay(cls, path: str | os.PathLike[str], *, until: int | None = None,
               until_time: float | None = None) -> "Kernel":
        """A read-only kernel holding the state as of offset ``until`` (events ``[0,
        until)``) or as of time ``until_time`` (events with ``ts <= until_time``): the audit
        path.  Takes no lock; works while a live kernel writes the log."""
        from ._replay import replay_readonly
        return replay_readonly(cls, path, until=until, until_time=until_time)

    # -- plumbing -------------------------------------------------------------------------

    def _writable(self) -> None:
        if self._failed is not None:
            raise KernelFailedError(
                f"an earlier append failed ({self._failed}); the kernel refuses further calls: "
                "reopen it to replay the log to its last durable event") from self._failed
        if self._closed:
            raise KernelClosedError("the kernel is closed; open it again")
        if self._read_only:
            raise InvalidStateError("this kernel is a read-only replay; open the directory "
                                    "with Kernel.open to change it")

    def _commit(self, evs: list[dict[str, Any]]) -> None:
        """Append events (one record each, one batch) then apply them."""
        records = [events.encode(ev) for ev in evs]
        self._write(records, applied=False)
        for ev in evs:
            self._state.apply(ev)
        self._maybe_snapshot()

    def _write(self, records: list[bytes], applied: bool = True) -> None:
        try:
            if len(records) == 1:
                self._append(records[0])
            else:
                self._log.append_many(records)
        except InvalidArgumentError as err:
            # The log refused the batch before writing a byte (a record over its size
            # limit).  Nothing was applied yet on the general path: the caller's error only.
            if applied:
                raise self._poison(err) from err
            raise InvalidSpecError(
                f"the request makes a record the log refuses ({err}); make the payload, tags "
                "or batch smaller: nothing was written") from err
        except BaseException as err:
            raise self._poison(err) from err

    @property
    def _blocked(self) -> bool:    # closed, failed or read-only; kept in the core
        return self._sched.blocked

    @_blocked.setter
    def _blocked(self, value: bool) -> None:
        self._sched.blocked = value

    def _poison(self, err: BaseException) -> BaseException:
        # An append failed (on the hot paths the core already applied the command): refuse
        # every call from now on; reopening replays the log to its last durable event.
        self._failed = err
        self._blocked = True
        if isinstance(err, EskernelError):
            return err
        return KernelFailedError(f"appending to the log failed: {err}; reopen the kernel")

    def _hot_failed(self, err: BaseException) -> BaseException:
        # A hot call raised: after its state changed (its append failed), the kernel is
        # poisoned; before, nothing changed and the error is the caller's (or a bug's).
        if self._sched.append_failed:
            poisoned = self._poison(err)
            if poisoned is not err:
                poisoned.__cause__ = err
            return poisoned
        return err

    def _append_hot_many(self, records: list[bytes], now: int) -> None:
        # The batch hot paths applied in the core already: one write, then count them.
        self._write(records)
        st = self._state
        st.applied += len(records)
        st.last_ts = now

    def _maybe_snapshot(self) -> None:
        # A safe point: the call's events are appended and applied.
        if self._snapshot_every and self._state.applied - self._last_snapshot >= self._snapshot_every:
            self._last_snapshot = self._state.applied
            if self._snapshotter is not None:
                self._snapshotter.maybe(self._state)

    def _task(self, task_id: Any) -> int:
        return lookup(self._state.task_index, task_id, "task")

    def _queue(self, name: Any) -> int:
        return lookup(self._state.queue_index, name, "queue")

    def _agent(self, agent_id: Any) -> int:
        return lookup(self._state.agent_index, agent_id, "agent")

    def _lease(self, lease: Any) -> tuple[int, int]:
        return lease_handle(self._sched, lease)

    def _refused(self, lease: Any, code: int, verb: str) -> EskernelError:
        # The typed error of a hot call's refusal code (see _native/hot.pxi).
        if code >= -2:
            self._lease(lease)      # raises InvalidSpecError / StaleLeaseError
        if code == -4:
            return LeaseExpiredError(
                f"lease {lease.lease_id} for task {lease.task_id!r} expired at "
                f"{lease.expires_at:.9f} (the kernel's clock reads {self._now() / NS:.9f}); "
                f"stop work on it and do not {verb} it: the task will be retried")
        return self._stale(lease, verb)

    def _stale(self, lease: Lease, verb: str) -> StaleLeaseError:
        row = self._sched.task_row(lease._task)
        status, cur = row[ROW_STATUS], row[ROW_LEASE_ID]
        why = (f"the task was re-leased as {cur}" if cur else f"the task is {status}")
        return StaleLeaseError(
            f"lease {lease.lease_id} for task {lease.task_id!r} is stale: {why}; stop work on "
            f"it and do not {verb} it")

    # -- reads (the read model, kernel/_views.py) ---------------------------------------

    def task(self, task_id: str) -> TaskView:
        """The current state of one task.

        Raises:
            UnknownTaskError: no task has this id.
        """
        return self._read.task(task_id)

    def tasks(self, status: str | None = None, queue: str | None = None,
              agent: str | None = None, limit: int | None = None) -> list[TaskView]:
        """Tasks in submission order, filtered by status name, queue and (last) agent.

        O(n) over all tasks; for analytics over history use :mod:`eskernel.analytics`.
        """
        return self._read.tasks(status, queue, agent, limit)

    def stats(self) -> Stats:
        """Counts by status, queue and priority; queue depths; agents with their leases."""
        return self._read.stats()

    def history(self, task_id: str) -> list[dict[str, Any]]:
        """The events that name this task, in log order, each with its ``offset``.

        Scans the log (O(log size), a byte search in C: ~0.3 s per 5 M events); meant for
        audits, not hot paths.
        """
        return self._read.history(task_id)

    def dead_letters(self) -> list[TaskView]:
        """FAILED tasks (attempts exhausted or a non-retryable error); see ``requeue``."""
        return self._read.dead_letters()

    def lease_task(self, lease: Any) -> tuple[str | None, str, Any, int, float]:
        """``(name, queue, payload, max_attempts, timeout)`` of a leased task: what a worker
        needs to run it, without building a :class:`TaskView`.

        Raises:
            InvalidSpecError: not a Lease; StaleLeaseError: not issued by this kernel.
        """
        return self._read.lease_task(lease)

    def explain(self, task_id: str) -> list[dict[str, Any]]:
        """Why the task is not running now, as structured reasons (each a dict with a
        ``code``, a ``message`` and the fields its code names; see :mod:`eskernel._explain`):
        its dependencies, a delay or backoff, a paused or full queue, no online agent with
        the capability or room, a pinned agent offline or busy; ``claimable`` when nothing
        blocks it.  Changes nothing.

        Raises:
            UnknownTaskError: no task has this id.
        """
        return explain(self._state, task_id, self._now())

    def _view(self, h: int) -> TaskView:
        return self._read.view(h)

    @property
    def clock(self) -> Any:
        """The clock the kernel reads (``time_ns()``); share it with workers and runtimes."""
        return self._clock

    @property
    def next_offset(self) -> int:
        """Number of events in the state (the offset the next event will get)."""
        return int(self._state.applied)

    def digest(self) -> str:
        """A hash of the full state; a replay of the same log gives the same digest."""
        return str(self._state.digest())

    def check(self) -> bool:
        """Run the core's O(n) invariant checker; raises KernelInternalError on a breach."""
        return bool(self._sched._check())

    # -- lifecycle ------------------------------------------------------------------------

    def snapshot(self) -> int:
        """Write a snapshot of the state now and return its offset (0-cost for in-memory).

        The log is synced through that offset first, so a snapshot never covers records a
        crash could lose.  Waits for an automatic snapshot in flight.

        Raises:
            LogWriteError: the snapshot could not be written (ENOSPC, EIO...); the kernel
                and its log are unaffected and later calls work.
        """
        self._writable()
        if self._snapshotter is None:
            return int(self._state.applied)
        offset = self._snapshotter.now(self._state)
        self._last_snapshot = offset
        return int(offset)

    def snapshot_status(self) -> dict[str, Any]:
        """Snapshot counters of this kernel: ``taken``, ``failed``, ``last_offset``,
        ``last_error``, ``in_progress`` and ``keep`` (all zero/None for in-memory)."""
        if self._snapshotter is None:
            return {"taken": 0, "failed": 0, "last_offset": None, "last_error": None,
                    "in_progress": False, "keep": 0}
        status: dict[str, Any] = self._snapshotter.status()
        return status

    @property
    def repair(self) -> Any:
        """What opening repaired in the log (a torn tail), or None."""
        return getattr(self._log, "repair", None)

    def close(self) -> None:
        """Flush the log and release the directory.  Idempotent."""
        if not self._closed:
            self._closed = True
            self._blocked = True
            if self._snapshotter is not None:
                self._snapshotter.wait()
            self._log.close()

    def __enter__(self) -> Kernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- queues and agents -------------------------------------------------------------

    def declare_queue(self, name: str, max_concurrent: int = 0, paused: bool = False) -> None:
        """Declare a queue, or change its limit and paused flag.

        Args:
            name: the queue's id.
            max_concurrent: most tasks of this queue RUNNING at once; 0 = unlimited.
            paused: when true, its tasks stay READY but are not claimed.
        """
        self._writable()
        check_id(name, "queue")
        check_int(max_concurrent, "max_concurrent", 0, 2**31 - 1)
        if type(paused) is not bool:
            raise InvalidSpecError(f"paused must be a bool, got {paused!r}")
        q = self._state.queue_index.get(name)
        if q is not None and self._sched.queue_info(q)[:2] == (max_concurrent, paused):
            return
        self._commit([{"t": "queue_declared", "ts": self._now(), "queue": name,
                       "max_concurrent": max_concurrent, "paused": paused}])

    def pause_queue(self, name: str) -> None:
        """Stop claims from queue ``name`` (its READY tasks wait). Idempotent."""
        self._writable()
        if not self._sched.queue_info(self._queue(name))[1]:
            self._commit([{"t": "queue_paused", "ts": self._now(), "queue": name}])

    def resume_queue(self, name: str) -> None:
        """Let claims take tasks from queue ``name`` again. Idempotent."""
        self._writable()
        if self._sched.queue_info(self._queue(name))[1]:
            self._commit([{"t": "queue_resumed", "ts": self._now(), "queue": name}])

    def register_agent(self, agent_id: str, capabilities: Iterable[str], capacity: int = 1) -> None:
        """Register an agent serving the queues in ``capabilities`` with ``capacity``
        concurrent leases.  Registering again with the same spec is a no-op.

        Raises:
            UnknownQueueError: a capability names an undeclared queue.
            InvalidStateError: the agent exists with a different spec.
        """
        self._writable()
        check_id(agent_id, "agent")
        caps = check_capabilities(list(capabilities) if hasattr(capabilities, "__iter__")
                                  and not isinstance(capabilities, (str, bytes, dict))
                                  else capabilities)
        check_int(capacity, "capacity", 1, 2**31 - 1)
        for q in caps:
            self._queue(q)
        a = self._state.agent_index.get(agent_id)
        if a is not None:
            old_caps, old_cap = self._state.agent_caps[a], self._sched.agent_info(a)[0]
            if old_caps == tuple(caps) and old_cap == capacity:
                return
            raise InvalidStateError(
                f"agent {agent_id!r} is registered with capabilities {list(old_caps)} and "
                f"capacity {old_cap}; register under a new id to change them")
        self._commit([{"t": "agent_registered", "ts": self._now(), "agent": agent_id,
                       "capabilities": caps, "capacity": capacity}])

    def agent_offline(self, agent_id: str) -> None:
        """Mark an agent offline: it cannot claim; its leases run until they expire."""
        self._writable()
        if self._sched.agent_info(self._agent(agent_id))[2]:
            self._commit([{"t": "agent_offline", "ts": self._now(), "agent": agent_id}])

    def agent_online(self, agent_id: str) -> None:
        """Mark an agent online again."""
        self._writable()
        if not self._sched.agent_info(self._agent(agent_id))[2]:
            self._commit([{"t": "agent_online", "ts": self._now(), "agent": agent_id}])

    # -- tasks -------------------------------------------------------------------------

    def submit(self, queue: str, payload: Any = None, *, id: str | None = None,
               name: str | None = None, priority: int = Priority.NORMAL,
               depends_on: Iterable[str] = (), max_attempts: int = 3, timeout: float = 30.0,
               backoff: BackoffPolicy | dict[str, float] | None = None,
               delay: float | None = None, not_before: float | None = None,
               agent: str | None = None, tags: dict[str, Any] | None = None,
               key: str | None = None, parent: str | None = None) -> str:
        """Submit a task; returns its id.

        Args:
            queue: a declared queue.
            payload: any JSON-able value (at most ``max_payload_bytes`` encoded).
            id: the task's id (generated as ``t-<n>`` when omitted).
            priority: int in [0, 1000]; higher runs first (see :class:`Priority`).
            depends_on: ids of tasks that must COMPLETE first.
            max_attempts: attempts before the task is FAILED (dead-lettered).
            timeout: lease duration per attempt, seconds (a heartbeat renews it).
            backoff: retry delays (:class:`BackoffPolicy`); default 1 s doubling to 60 s.
            delay / not_before: run no earlier than now + delay / this time (seconds).
            agent: the only agent allowed to claim it (must serve ``queue``).
            tags, name, parent: metadata kept with the task.
            key: idempotency key: a second submit with the same key, queue, name and
                payload returns the first id (and writes nothing); with another queue, name
                or payload it raises DuplicateTaskError.  Other options are not compared.

        Raises:
            UnknownQueueError, UnknownTaskError, UnknownAgentError, DuplicateTaskError,
            DependencyError, InvalidSpecError.
        """
        if self._blocked:
            self._writable()
        st = self._state
        if agent is None and name is None and backoff is None and not_before is None \
                and parent is None:
            extra: bytes | None = b""
            meta: tuple[Any, ...] | None = None
            if tags is not None or key is not None:
                extra, meta = hot_extra(st, tags, key, depends_on)
            if extra is not None:
                try:
                    tid = self._sched.submit_hot(queue, payload, id, priority, depends_on,
                                           max_attempts, timeout, delay, self._time_ns(),
                                           extra, meta)
                except BaseException as err:
                    raise self._hot_failed(err)
                if tid is not None:
                    if key is not None:
                        st.keys[key] = tid
                    if self._snapshot_every:
                        self._maybe_snapshot()
                    return tid
        if key is not None and type(key) is str and key in st.keys:
            return keyed_task(st, key, queue, payload, name)
        if id is None:
            tid = new_id(st, NO_IDS)
        else:
            tid = check_id(id, "task")
            if tid in st.task_index:
                raise DuplicateTaskError(f"task id {tid!r} is already in use; pick another id "
                                         "or omit it to have one generated")
        ev = submitted_event(st, self._now(), self._max_payload, tid, None, queue, payload,
                             None, name, priority, depends_on, max_attempts, timeout, backoff,
                             delay, not_before, agent, tags, key, parent)
        self._commit([ev])
        return tid

    def submit_many(self, specs: Iterable[TaskSpec | dict[str, Any]]) -> list[str]:
        """Submit a batch atomically (one append); returns ids in input order.

        Dependencies may point forward inside the batch; a cycle raises DependencyError
        naming it.  Either every task is submitted or none is.
        """
        self._writable()
        st = self._state
        gc_was_on = gc.isenabled()
        gc.disable()    # a batch builds many long-lived objects and no cycles
        try:
            specs = spec_list(specs)
            simple = simple_batch(st, self._max_payload, specs)
            now = self._now()
            if simple is None:
                items = [spec_dict(s, i) for i, s in enumerate(specs)]
                ids, evs = batch_events(st, now, self._max_payload, items)
                if evs:
                    self._commit(evs)
                return ids
            ids, args = simple
            if args:
                # Applied in the core first (each call returns the task's record), then
                # appended in one write; a failed append poisons the kernel.
                sub, pol = self._sched.submit_simple, st.default_policy
                records = [sub(tid, q, prio, attempts, timeout_ns, pol, now, body)
                           for tid, q, prio, attempts, timeout_ns, body in args]
                st.add_plain_many(ids, [a[5] for a in args])
                self._append_hot_many(records, now)
                self._maybe_snapshot()
            return ids
        finally:
            if gc_was_on:
                gc.enable()

    def claim(self, agent_id: str) -> Lease | None:
        """Lease the best READY task agent ``agent_id`` may run, or return None.

        Best = highest priority, then earliest submitted, among the queues the agent serves
        that are not paused and below ``max_concurrent``.  O(log n + number of the agent's
        queues); the sub-microsecond path.

        Raises:
            UnknownAgentError, AgentOfflineError, AgentAtCapacityError.
        """
        if self._blocked:
            self._writable()
        try:
            a = self._agent_index[agent_id]
        except (KeyError, TypeError):
            a = self._agent(agent_id)   # raises the right error
        try:
            r = self._sched.claim_hot(a, self._time_ns())
        except BaseException as err:
            raise self._hot_failed(err)
        if isinstance(r, int):
            if r == -5:
                self._new_epoch()
                return self.claim(agent_id)
            raise self._refusal(agent_id, r)
        return r

    def _new_epoch(self) -> None:
        # Lease ids move to a fresh range of 2**32, on disk before any claim of this kernel
        # is answered ahead of the disk: claims a crash lost stay below it (hot.pxi).
        base = ((self._sched.next_lease_id >> 32) + 1) << 32
        self._commit([{"t": "epoch", "ts": self._now(), "lease": base}])
        self._sched.epoch_due = False

    def complete_and_claim(self, lease: Lease, result: Any = None) -> Lease | None:
        """Complete ``lease`` with ``result`` and claim the next task for the same agent, in
        one round: one sync in ``fsync`` mode (the claim rides on the completion's sync).

        Returns the new Lease, or None when nothing is eligible or the agent may not claim
        now (offline); the completion stands either way.  O(log n), like the two calls.

        Raises:
            What :meth:`complete` raises; then nothing is completed or claimed.

        >>> from eskernel import Kernel, ManualClock
        >>> k = Kernel.in_memory(clock=ManualClock())
        >>> k.declare_queue("q"); k.register_agent("w", ["q"])
        >>> a, b = k.submit("q"), k.submit("q")
        >>> nxt = k.complete_and_claim(k.claim("w"), result=1)
        >>> nxt.task_id == b and k.task(a).status == "COMPLETED"
        True
        """
        self.complete(lease, result)
        r = self._sched.claim_hot(self._agent_index[lease.agent_id], self._time_ns()) \
            if not self._sched.epoch_due else -5
        if isinstance(r, int):
            return self.claim(lease.agent_id) if r == -5 else None
        return r

    def _refusal(self, agent_id: str, code: int) -> EskernelError:
        if code == CHOOSE_OFFLINE:
            return AgentOfflineError(f"agent {agent_id!r} is offline; call "
                                     f"agent_online({agent_id!r}) before claiming")
        cap = self._sched.agent_info(self._state.agent_index[agent_id])[0]
        return AgentAtCapacityError(f"agent {agent_id!r} already holds {cap} lease(s), its "
                                    "capacity; complete, fail or release one first")

    def claim_many(self, agent_id: str, n: int) -> list[Lease]:
        """Up to ``n`` leases for one agent in one append (the order single claims give).

        Raises like :meth:`claim` when the agent can take none because it is offline or
        at capacity.
        """
        self._writable()
        a = self._agent(agent_id)
        check_int(n, "n", 1, 2**31 - 1)
        now = self._now()
        leases = self._sched.claim_many(a, n, now)
        if not leases:
            code = self._sched.choose(a)
            if code in (CHOOSE_OFFLINE, CHOOSE_AT_CAPACITY):
                raise self._refusal(agent_id, code)
            return leases
        self._append_hot_many([lease._event for lease in leases], now)
        return leases

    def heartbeat(self, lease: Lease) -> float:
        """Renew a lease to now + the task's timeout; returns the new expiry (seconds).

        Raises:
            StaleLeaseError: the lease is no longer current; stop work on the task.
        """
        if self._blocked:
            self._writable()
        try:
            exp = self._sched.heartbeat_hot(lease, self._time_ns())
        except BaseException as err:
            raise self._hot_failed(err)
        if exp < 0:
            raise self._refused(lease, exp, "heartbeat")
        return exp / NS

    def complete(self, lease: Lease, result: Any = None) -> None:
        """Complete the leased task with a JSON-able ``result``; its dependents whose
        dependencies are all complete become READY.

        Raises:
            StaleLeaseError: the lease expired, was released, or the task was cancelled
                or completed already.
            InvalidSpecError: ``result`` is not JSON-serializable or too large.
        """
        if self._blocked:
            self._writable()
        body = b"null" if result is None else events.dumps(result)
        if len(body) > self._max_payload:
            raise InvalidSpecError(f"result of task {getattr(lease, 'task_id', '?')!r} is "
                                   f"{len(body)} bytes, over the {self._max_payload}-byte limit")
        try:
            code = self._sched.complete_hot(lease, body, self._time_ns())
        except BaseException as err:
            raise self._hot_failed(err)
        if code is not None:
            raise self._refused(lease, code, "complete")
        if self._wf_tasks and lease.task_id in self._wf_tasks:
            self._wf_after((lease.task_id,))

    def complete_many(self, leases: Iterable[Lease], results: Iterable[Any] | None = None) -> None:
        """Complete several leased tasks in one append (one fsync in ``fsync`` mode).

        All-or-nothing: every lease is checked first; a stale or repeated lease raises and
        completes none of them.  ``results`` (if given) pairs with ``leases`` in order.

        Raises:
            StaleLeaseError, InvalidSpecError (lengths differ, a lease twice, bad result).
        """
        self._writable()
        leases = list(leases)
        if results is None:
            bodies = [b"null"] * len(leases)
        else:
            values = list(results)
            if len(values) != len(leases):
                raise InvalidSpecError(f"complete_many got {len(leases)} leases but "
                                       f"{len(values)} results; pass one result per lease")
            bodies = [b"null" if v is None else events.dumps(v) for v in values]
        for lease, body in zip(leases, bodies):
            if len(body) > self._max_payload:
                raise InvalidSpecError(f"result of task {getattr(lease, 'task_id', '?')!r} is "
                                       f"{len(body)} bytes, over the {self._max_payload}-byte "
                                       "limit")
        if len({getattr(lease, "lease_id", None) for lease in leases}) != len(leases):
            raise InvalidSpecError("complete_many got the same lease twice; pass each once")
        if not leases:
            return
        now = self._now()
        st = self._state
        # Checked, then applied in the core (each returns its record), then appended.
        records = self._sched.complete_many(leases, bodies, now, st.results)
        if isinstance(records, int):
            bad = leases[records]
            raise self._refused(bad, self._sched.lease_code(bad, now), "complete")
        self._append_hot_many(records, now)
        if self._wf_tasks:
            self._wf_after([lease.task_id for lease in leases])

    def _u(self, lease_id: int) -> float:
        # The jitter draw for a failed attempt: a pure function of (seed, lease id), so a
        # reopened kernel keeps drawing the same sequence; the result is recorded anyway.
        d = hashlib.blake2b(b"%d:%d" % (self._seed, lease_id), digest_size=8).digest()
        return int.from_bytes(d, "little") / 2**64

    def _failure_events(self, h: int, due: int, head: dict[str, Any]) -> list[dict[str, Any]]:
        evs = [head]
        if due < 0:
            tid = self._sched.task_ids[h]
            evs += [{"t": "cancelled", "ts": head["ts"], "task": self._sched.task_ids[d],
                     "reason": "upstream", "cause": tid}
                    for d in self._sched.cancel_closure(h)]
        return evs

    def fail(self, lease: Lease, error: str = "", retryable: bool = True) -> None:
        """Report a failed attempt.  With attempts left (and ``retryable``) the task is
        RETRYING until its backoff is over; otherwise it is FAILED (dead-lettered) and its
        pending dependents are cancelled.

        Raises:
            StaleLeaseError, InvalidSpecError (error not a str, retryable not a bool).
        """
        if self._blocked:
            self._writable()
        if type(lease) is Lease and type(error) is str and type(retryable) is bool:
            # A retried attempt in one core call; a dead letter (it cascades), an error JSON
            # cannot hold and any refusal take the general path below, which names it.
            err = error[:65536]
            try:
                err_json = events.dumps(err)
            except InvalidSpecError:
                err_json = None
        else:
            err_json = None
        if err_json is not None:
            try:
                code = self._sched.fail_hot(lease, err_json, err, retryable,
                                            self._u(lease.lease_id), self._time_ns())
            except BaseException as exc:
                raise self._hot_failed(exc)
            if code is None:
                self._maybe_snapshot()
                return
        h, lid = self._lease(lease)
        if type(error) is not str:
            raise InvalidSpecError(f"error must be a str, got {error!r:.80}")
        if type(retryable) is not bool:
            raise InvalidSpecError(f"retryable must be a bool, got {retryable!r}")
        if not self._sched.lease_current(h, lid):
            raise self._stale(lease, "fail")
        now = self._now()
        due = self._sched.retry_due(h, now, retryable, self._u(lid))
        evs = self._failure_events(h, due, {
            "t": "failed", "ts": now, "task": lease.task_id, "lease": lid,
            "error": error[:65536], "retryable": retryable, "retry_at": due if due >= 0 else None})
        self._commit(evs)
        if due < 0 and self._wf_tasks:
            self._wf_after([ev["task"] for ev in evs])

    def release(self, lease: Lease) -> None:
        """Give a leased task back (READY again) without using up an attempt."""
        self._writable()
        try:
            code = self._sched.release_hot(lease, self._time_ns())
        except BaseException as err:
            raise self._hot_failed(err)
        if code is not None:
            raise self._refused(lease, code, "release")
        self._maybe_snapshot()

    def cancel(self, task_id: str) -> list[str]:
        """Cancel a task and, transitively, its unfinished dependents; returns the ids
        cancelled.  A RUNNING task's lease is revoked.

        Raises:
            UnknownTaskError; InvalidStateError when the task already finished.
        """
        if self._blocked:
            self._writable()
        try:                    # decided, encoded, applied and appended in one core call
            ids = self._sched.cancel_hot(task_id, self._time_ns())
        except BaseException as err:
            raise self._hot_failed(err)
        if ids is not None:
            if self._wf_tasks:
                self._wf_after(ids)
            return ids
        h = self._task(task_id)           # unknown or malformed: raises; else finished
        raise InvalidStateError(f"task {task_id!r} is already {self._sched.task_row(h)[ROW_STATUS]}; "
                                "there is nothing to cancel")

    def requeue(self, task_id: str) -> None:
        """Bring a FAILED (dead-lettered) task back to READY with fresh attempts.

        Raises:
            UnknownTaskError; InvalidStateError when the task is not FAILED.
        """
        self._writable()
        h = self._task(task_id)
        if self._sched.status_of(h) != 5:
            raise InvalidStateError(f"task {task_id!r} is {self._sched.task_row(h)[ROW_STATUS]}; only "
                                    "FAILED tasks can be requeued")
        self._commit([{"t": "requeued", "ts": self._now(), "task": task_id}])

    def tick(self) -> dict[str, int]:
        """Expire overdue leases (each a failed, retryable attempt), then make READY the
        tasks whose delay or backoff is over.  Returns ``{"expired": n, "ready": m}``.

        Like the hot paths, each event is decided and applied, and the events are appended
        in batches of :data:`TICK_BATCH` (one sync each in ``fsync`` mode: a burst of 100 k
        expiries costs tens of syncs, not 100 k); a failed append poisons the kernel.
        """
        self._writable()
        now = self._now()
        sched, expired, ready = self._sched, 0, 0
        pending: list[bytes] = []
        dead: list[str] = []         # tasks dead-lettered here (workflow steps may own them)
        try:
            while (x := sched.next_expired(now)) is not None:
                h, lid = x
                due = sched.retry_due(h, now, True, self._u(lid))
                self._apply_pending(pending, self._failure_events(h, due, {
                    "t": "expired", "ts": now, "task": sched.task_ids[h], "lease": lid,
                    "retry_at": due if due >= 0 else None}))
                if due < 0 and self._wf_tasks:
                    dead.append(sched.task_ids[h])
                expired += 1
            while (h := sched.next_due(now)) >= 0:
                self._apply_pending(pending, [{"t": "ready", "ts": now,
                                               "task": sched.task_ids[h]}])
                ready += 1
            self._write_pending(pending)
        except BaseException as err:
            if pending and self._failed is None:    # applied what the log does not hold
                raise self._poison(err) from err
            raise                                   # nothing applied, or _write poisoned
        self._maybe_snapshot()
        if dead:
            self._wf_after(dead)
        if self._state.workflows.runs:
            self._wf_tick(now)
        return {"expired": expired, "ready": ready}

    def _apply_pending(self, pending: list[bytes], evs: list[dict[str, Any]]) -> None:
        for ev in evs:
            pending.append(events.encode(ev))
            self._state.apply(ev)
        if len(pending) >= TICK_BATCH:
            self._write_pending(pending)

    def _write_pending(self, pending: list[bytes]) -> None:
        if pending:
            self._write(pending)
            pending.clear()

