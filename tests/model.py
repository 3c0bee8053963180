"""A deliberately plain reference scheduler, the oracle of the differential tests.

``Model`` implements the public semantics of :class:`kernel.Kernel` (see the kernel's API
contract) with lists, dicts and ``sorted``: no heaps, no counters, no handles.  Every
decision is recomputed from scratch, so it is slow and obviously right, which is the point.
It raises the same error *classes* as the kernel (imported from ``kernel.errors``); messages
are not compared.  ``kernel/`` never imports this module.

Time is kept in integer nanoseconds, read from a ``now_ns`` callable (the tests pass the
kernel's ``ManualClock.time_ns``), so no float drift can make the two sides disagree.
Jitter: the kernel draws ``u`` for a failed attempt as a pure function of (seed, lease id)
(so a reopened kernel draws the same values); :func:`jitter_u` is that function, written
out independently here.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

from eskernel.errors import (
    AgentAtCapacityError,
    AgentOfflineError,
    DependencyError,
    DuplicateTaskError,
    InvalidSpecError,
    InvalidStateError,
    LeaseExpiredError,
    StaleLeaseError,
    UnknownAgentError,
    UnknownQueueError,
    UnknownTaskError,
)

NS = 1_000_000_000
ID_RE = re.compile(r"[A-Za-z0-9._:@/+-]{1,200}")
STATUSES = ("PENDING", "READY", "RUNNING", "RETRYING", "COMPLETED", "FAILED", "CANCELLED")
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}
DEFAULT_BACKOFF = (1 * NS, 2.0, 60 * NS, 0.0)  # initial ns, factor, max ns, jitter


def jitter_u(seed: int, lease_id: int) -> float:
    """The u in [0, 1) drawn for a failed attempt of lease ``lease_id``."""
    d = hashlib.blake2b(f"{seed}:{lease_id}".encode(), digest_size=8).digest()
    return int.from_bytes(d, "little") / 2**64


def to_ns(seconds: float) -> int:
    """Seconds (float) to integer nanoseconds, the way the kernel converts them."""
    return round(seconds * NS)


@dataclass(frozen=True)
class MLease:
    """The model's lease: same fields as ``kernel.Lease``, expiry kept in ns."""

    lease_id: int
    task_id: str
    agent_id: str
    attempt: int
    expires_ns: int

    @property
    def expires_at(self) -> float:
        return self.expires_ns / NS


@dataclass
class MTask:
    id: str
    queue: str
    seq: int                      # submission order (FIFO tie-break)
    priority: int
    max_attempts: int
    timeout_ns: int
    backoff: tuple[int, float, int, float]
    due_ns: int                   # not_before, later the due time of a retry
    pinned: str | None
    depends_on: list[str]
    payload: Any = None
    name: str | None = None
    tags: Any = None
    key: str | None = None
    parent: str | None = None
    status: str = "PENDING"
    attempts: int = 0
    result: Any = None
    error: str | None = None
    agent: str | None = None      # last agent that claimed it
    lease_id: int | None = None
    expires_ns: int | None = None
    submitted_ns: int = 0
    started_ns: int | None = None
    finished_ns: int | None = None
    dead_lettered: bool = False
    cancelled_upstream: bool = False


@dataclass
class MQueue:
    max_concurrent: int = 0
    paused: bool = False


@dataclass
class MAgent:
    capabilities: list[str] = field(default_factory=list)
    capacity: int = 1
    online: bool = True


def _check_id(value: Any, what: str) -> None:
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise InvalidSpecError(f"bad {what} id {value!r}")


def _check_number(value: Any, what: str, *, allow_zero: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidSpecError(f"{what} must be a number, got {value!r}")
    if math.isnan(value) or math.isinf(value) or value < 0 or (not allow_zero and value == 0):
        raise InvalidSpecError(f"bad {what} {value!r}")


class Model:
    """The reference scheduler.  Same public calls as ``Kernel`` (the subset the tests use)."""

    def __init__(self, now_ns: Callable[[], int], seed: int = 0,
                 max_payload_bytes: int = 1 << 20) -> None:
        self.clock_ns = now_ns
        self.latest_ns = 0
        self.seed = seed
        self.queues: dict[str, MQueue] = {}
        self.agents: dict[str, MAgent] = {}
        self.tasks: dict[str, MTask] = {}
        self.keys: dict[str, str] = {}
        self.next_lease_id = 1
        self.next_seq = 0
        self.max_payload = max_payload_bytes

    def now_ns(self) -> int:
        """The clock, never earlier than a time already read: event times never go back in
        a log (replay refuses such a log), so a clock stepped back reads as the latest."""
        self.latest_ns = max(self.latest_ns, self.clock_ns())
        return self.latest_ns

    # --- queues and agents ---

    def declare_queue(self, name: str, max_concurrent: int = 0, paused: bool = False) -> None:
        _check_id(name, "queue")
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or max_concurrent < 0:
            raise InvalidSpecError(f"bad max_concurrent {max_concurrent!r}")
        if not isinstance(paused, bool):
            raise InvalidSpecError(f"bad paused {paused!r}")
        q = self.queues.setdefault(name, MQueue())
        q.max_concurrent = max_concurrent
        q.paused = paused

    def _queue(self, name: str) -> MQueue:
        if name not in self.queues:
            raise UnknownQueueError(name)
        return self.queues[name]

    def _agent(self, agent_id: str) -> MAgent:
        if agent_id not in self.agents:
            raise UnknownAgentError(agent_id)
        return self.agents[agent_id]

    def register_agent(self, agent_id: str, capabilities: list[str], capacity: int = 1) -> None:
        _check_id(agent_id, "agent")
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise InvalidSpecError(f"bad capacity {capacity!r}")
        caps = list(capabilities)
        for q in caps:
            self._queue(q)
        if agent_id in self.agents:
            a = self.agents[agent_id]
            if a.capabilities != caps or a.capacity != capacity:
                raise InvalidStateError(f"agent {agent_id} registered with another spec")
            return
        self.agents[agent_id] = MAgent(caps, capacity)

    def agent_offline(self, agent_id: str) -> None:
        self._agent(agent_id).online = False

    def agent_online(self, agent_id: str) -> None:
        self._agent(agent_id).online = True

    def pause_queue(self, name: str) -> None:
        self._queue(name).paused = True

    def resume_queue(self, name: str) -> None:
        self._queue(name).paused = False

    # --- submission ---

    def _new_id(self, taken: set[str]) -> str:
        n = len(self.tasks) + len(taken)
        tid, k = f"t-{n}", 0
        while tid in self.tasks or tid in taken:
            k += 1
            tid = f"t-{n}-{k}"
        return tid

    def _validate(self, s: dict, tid: str | None, batch: set[str] = frozenset()) -> dict:
        """Every check of one spec, in the kernel's order; returns the normalized spec.
        ``tid`` is the task's id (None when it will be generated); ``batch`` holds the ids
        of the same submit_many batch (forward references)."""
        s = dict(s)
        self._queue(s["queue"])
        prio = s.get("priority", 2)
        if isinstance(prio, bool) or not isinstance(prio, int) or not 0 <= prio <= 1000:
            raise InvalidSpecError(f"bad priority {prio!r}")
        s["priority"] = int(prio)
        deps = list(s.get("depends_on") or ())
        for d in deps:
            if d == tid:
                raise DependencyError(f"task {tid} depends on itself")
            if d in self.tasks:
                if self.tasks[d].status in ("FAILED", "CANCELLED"):
                    raise DependencyError(f"dependency {d} is {self.tasks[d].status}")
            elif d not in batch:
                _check_id(d, "dependency")
                raise UnknownTaskError(d)
        if len(set(deps)) != len(deps):
            raise InvalidSpecError(f"dependency listed twice: {deps}")
        s["depends_on"] = deps
        ma = s.get("max_attempts", 3)
        if isinstance(ma, bool) or not isinstance(ma, int) or not 1 <= ma <= 1_000_000:
            raise InvalidSpecError(f"bad max_attempts {ma!r}")
        s["max_attempts"] = ma
        _check_number(s.get("timeout", 30.0), "timeout", allow_zero=False)
        b = s.get("backoff")
        if b is None:
            s["_backoff"] = DEFAULT_BACKOFF
        else:
            b = dict(b)
            s["_backoff"] = (to_ns(b.get("initial", 1.0)), float(b.get("factor", 2.0)),
                             to_ns(b.get("max", 60.0)), float(b.get("jitter", 0.0)))
        if s.get("delay") is not None and s.get("not_before") is not None:
            raise InvalidSpecError("delay and not_before")
        for k in ("delay", "not_before"):
            if s.get(k) is not None:
                _check_number(s[k], k)
        pinned = s.get("agent")
        if pinned is not None:
            a = self._agent(pinned)
            if s["queue"] not in a.capabilities:
                raise InvalidSpecError(f"agent {pinned} does not serve {s['queue']}")
        try:
            body = orjson.dumps(s.get("payload"))
        except TypeError as err:
            raise InvalidSpecError(f"payload not JSON-serializable: {err}") from None
        if len(body) > self.max_payload:
            raise InvalidSpecError("payload too large")
        return s

    def _add(self, s: dict, tid: str) -> None:
        now = self.now_ns()
        due = 0
        if s.get("delay") is not None:
            due = now + to_ns(s["delay"])
        if s.get("not_before") is not None:
            due = to_ns(s["not_before"])
        t = MTask(id=tid, queue=s["queue"], seq=self.next_seq, priority=s["priority"],
                  max_attempts=s.get("max_attempts", 3), timeout_ns=to_ns(s.get("timeout", 30.0)),
                  backoff=s["_backoff"], due_ns=due, pinned=s.get("agent"),
                  depends_on=list(s.get("depends_on") or ()), payload=s.get("payload"),
                  name=s.get("name"), tags=s.get("tags"), key=s.get("key"),
                  parent=s.get("parent"), submitted_ns=now)
        self.next_seq += 1
        self.tasks[tid] = t
        if t.key is not None:
            self.keys[t.key] = tid
        self._maybe_ready(t, now)

    def _maybe_ready(self, t: MTask, now: int) -> None:
        """A PENDING task whose dependencies are all COMPLETED and whose due time passed
        becomes READY."""
        if t.status == "PENDING" and self._deps_met(t) and t.due_ns <= now:
            t.status = "READY"

    def _deps_met(self, t: MTask) -> bool:
        return all(self.tasks[d].status == "COMPLETED" for d in t.depends_on)

    def submit(self, queue: str, payload: Any = None, *, id: str | None = None,
               name: str | None = None, priority: int = 2, depends_on=(), max_attempts: int = 3,
               timeout: float = 30.0, backoff: dict | None = None, delay: float | None = None,
               not_before: float | None = None, agent: str | None = None, tags=None,
               key: str | None = None, parent: str | None = None) -> str:
        spec = dict(queue=queue, payload=payload, name=name, priority=priority,
                    depends_on=list(depends_on), max_attempts=max_attempts, timeout=timeout,
                    backoff=backoff, delay=delay, not_before=not_before, agent=agent,
                    tags=tags, key=key, parent=parent)
        if key is not None and key in self.keys:
            return self._keyed(key, queue, name, payload)
        if id is not None:
            _check_id(id, "task")
            if id in self.tasks:
                raise DuplicateTaskError(id)
        tid = id if id is not None else self._new_id(set())
        s = self._validate(spec, tid)
        self._add(s, tid)
        return tid

    def _keyed(self, key: str, queue: str, name: str | None, payload: Any) -> str:
        """A key seen before returns its task when queue, name and payload are the same."""
        t = self.tasks[self.keys[key]]
        if (t.queue, t.name, t.payload) != (queue, name, payload):
            raise DuplicateTaskError(f"key {key} reused with another spec")
        return t.id

    def submit_many(self, specs: list[dict]) -> list[str]:
        """Batch submit: forward references inside the batch; submitted in the stable
        topological order (input order, each task moved after its in-batch dependencies).
        Ids are generated in input order; a spec whose key was seen maps to that task."""
        ids: list[str] = []
        fresh: dict[str, dict] = {}
        for sp in specs:
            k = sp.get("key")
            if k is not None and k in self.keys:
                ids.append(self._keyed(k, sp["queue"], sp.get("name"), sp.get("payload")))
                continue
            tid = sp.get("id")
            if tid is None:
                tid = self._new_id(set(fresh))
            else:
                _check_id(tid, "task")
                if tid in self.tasks or tid in fresh:
                    raise DuplicateTaskError(tid)
            fresh[tid] = sp
            ids.append(tid)
        order = list(fresh)
        placed: list[str] = []
        while len(placed) < len(order):
            for tid in order:
                if tid in placed:
                    continue
                if all(d in placed for d in fresh[tid].get("depends_on") or () if d in fresh):
                    placed.append(tid)
                    break
            else:
                raise DependencyError("cycle inside the batch")
        norm = []
        keys_seen: set[str] = set()
        for tid in placed:
            k = fresh[tid].get("key")
            if k is not None:
                if k in keys_seen:
                    raise InvalidSpecError(f"key {k} twice in one batch")
                keys_seen.add(k)
            sp = {f: v for f, v in fresh[tid].items() if f != "id"}
            norm.append((tid, self._validate(sp, tid, set(fresh))))
        for tid, s in norm:
            self._add(s, tid)
        return ids

    # --- claims and leases ---

    def running_in(self, queue: str) -> int:
        return sum(1 for t in self.tasks.values() if t.queue == queue and t.status == "RUNNING")

    def active_of(self, agent_id: str) -> int:
        return sum(1 for t in self.tasks.values() if t.status == "RUNNING" and t.agent == agent_id)

    def eligible(self, agent_id: str) -> list[MTask]:
        """READY tasks agent_id may take now, best first (priority desc, then FIFO)."""
        a = self.agents[agent_id]
        out = []
        for t in self.tasks.values():
            if t.status != "READY" or t.queue not in a.capabilities:
                continue
            q = self.queues[t.queue]
            if q.paused or (q.max_concurrent and self.running_in(t.queue) >= q.max_concurrent):
                continue
            if t.pinned is not None and t.pinned != agent_id:
                continue
            out.append(t)
        return sorted(out, key=lambda t: (-t.priority, t.seq))

    def claim(self, agent_id: str) -> MLease | None:
        a = self._agent(agent_id)
        if not a.online:
            raise AgentOfflineError(agent_id)
        if self.active_of(agent_id) >= a.capacity:
            raise AgentAtCapacityError(agent_id)
        best = self.eligible(agent_id)
        if not best:
            return None
        t = best[0]
        now = self.now_ns()
        t.status = "RUNNING"
        t.attempts += 1
        t.agent = agent_id
        t.lease_id = self.next_lease_id
        self.next_lease_id += 1
        t.expires_ns = now + t.timeout_ns
        t.started_ns = now
        return MLease(t.lease_id, t.id, agent_id, t.attempts, t.expires_ns)

    def claim_many(self, agent_id: str, n: int) -> list[MLease]:
        a = self._agent(agent_id)
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n < 2**31:
            raise InvalidSpecError(f"bad n {n!r}")
        if not a.online:
            raise AgentOfflineError(agent_id)
        if self.active_of(agent_id) >= a.capacity:
            raise AgentAtCapacityError(agent_id)
        out: list[MLease] = []
        while len(out) < n and self.active_of(agent_id) < a.capacity:
            lease = self.claim(agent_id)
            if lease is None:
                break
            out.append(lease)
        return out

    def _live(self, lease: Any) -> MTask:
        t = self.tasks.get(lease.task_id)
        if t is None or t.status != "RUNNING" or t.lease_id != lease.lease_id:
            raise StaleLeaseError(f"lease {lease.lease_id} is stale")
        return t

    def _unexpired(self, lease: Any) -> MTask:
        # complete and heartbeat refuse a lease whose expiry is past by the clock, whether
        # or not tick() has run.
        t = self._live(lease)
        if t.expires_ns <= self.now_ns():
            raise LeaseExpiredError(f"lease {lease.lease_id} expired")
        return t

    def heartbeat(self, lease: Any) -> float:
        t = self._unexpired(lease)
        t.expires_ns = self.now_ns() + t.timeout_ns
        return t.expires_ns / NS

    def _drop_lease(self, t: MTask) -> None:
        t.lease_id = None
        t.expires_ns = None

    def complete(self, lease: Any, result: Any = None) -> None:
        try:
            orjson.dumps(result)
        except TypeError as err:
            raise InvalidSpecError(f"result not JSON-serializable: {err}") from None
        t = self._unexpired(lease)
        now = self.now_ns()
        self._drop_lease(t)
        t.status = "COMPLETED"
        t.result = result
        t.finished_ns = now
        for d in self.tasks.values():
            if t.id in d.depends_on:
                self._maybe_ready(d, now)

    def complete_and_claim(self, lease: Any, result: Any = None) -> MLease | None:
        """complete, then claim for the lease's agent; None when it can claim nothing now
        (nothing eligible, or offline: the completion stands)."""
        self.complete(lease, result)
        a = self.agents[lease.agent_id]
        if not a.online or self.active_of(lease.agent_id) >= a.capacity:
            return None
        return self.claim(lease.agent_id)

    def retry_due(self, t: MTask, now: int, retryable: bool, u: float) -> int:
        """Due time (ns) of the retry of t's failed attempt, or -1 when it dead-letters."""
        if not retryable or t.attempts >= t.max_attempts:
            return -1
        initial, factor, maximum, jitter = t.backoff
        delay = float(initial) * factor ** (t.attempts - 1)
        if delay > float(maximum):
            delay = float(maximum)
        delay *= 1.0 - jitter * u
        return now + int(delay)

    def _fail(self, t: MTask, now: int, error: str, retryable: bool) -> None:
        u = jitter_u(self.seed, t.lease_id)
        due = self.retry_due(t, now, retryable, u)
        self._drop_lease(t)
        t.error = error
        if due < 0:
            t.status = "FAILED"
            t.dead_lettered = True
            t.finished_ns = now
            self._cascade(t, now)
        elif due <= now:
            t.status = "READY"
        else:
            t.status = "RETRYING"
            t.due_ns = due

    def fail(self, lease: Any, error: str = "", retryable: bool = True) -> None:
        if not isinstance(error, str):
            raise InvalidSpecError(f"error must be a str, got {error!r}")
        t = self._live(lease)
        self._fail(t, self.now_ns(), error, retryable)

    def release(self, lease: Any) -> None:
        t = self._live(lease)
        self._drop_lease(t)
        t.attempts -= 1
        t.status = "READY"

    # --- cancel, requeue, tick ---

    def closure(self, tid: str) -> list[str]:
        """Non-terminal transitive dependents of tid (tid excluded), in submission order."""
        found: set[str] = set()
        frontier = [tid]
        while frontier:
            nxt = []
            for t in self.tasks.values():
                if t.id in found or t.status in TERMINAL:
                    continue
                if any(d in frontier for d in t.depends_on):
                    found.add(t.id)
                    nxt.append(t.id)
            frontier = nxt
        return [t.id for t in sorted(self.tasks.values(), key=lambda t: t.seq) if t.id in found]

    def _cancel_one(self, t: MTask, now: int, upstream: bool) -> None:
        self._drop_lease(t)
        t.status = "CANCELLED"
        t.cancelled_upstream = upstream
        t.finished_ns = now

    def _cascade(self, t: MTask, now: int) -> list[str]:
        out = self.closure(t.id)
        for d in out:
            self._cancel_one(self.tasks[d], now, True)
            self.tasks[d].error = f"cancelled: upstream task {t.id!r} failed or was cancelled"
        return out

    def cancel(self, task_id: str) -> list[str]:
        t = self.task(task_id)
        if t.status in TERMINAL:
            raise InvalidStateError(f"task {task_id} is {t.status}")
        now = self.now_ns()
        self._cancel_one(t, now, False)
        return [task_id] + self._cascade(t, now)

    def requeue(self, task_id: str) -> None:
        t = self.task(task_id)
        if t.status != "FAILED":
            raise InvalidStateError(f"task {task_id} is {t.status}, not FAILED")
        t.status = "READY"
        t.attempts = 0
        t.dead_lettered = False
        t.finished_ns = None

    def tick(self) -> dict:
        now = self.now_ns()
        expired = 0
        while True:
            overdue = [t for t in self.tasks.values()
                       if t.status == "RUNNING" and t.expires_ns <= now]
            if not overdue:
                break
            t = min(overdue, key=lambda t: (t.expires_ns, t.lease_id))
            self._fail(t, now, "lease expired", True)
            expired += 1
        waiting = [t for t in self.tasks.values()
                   if t.due_ns <= now and (t.status == "RETRYING"
                                           or (t.status == "PENDING" and self._deps_met(t)))]
        for t in sorted(waiting, key=lambda t: (t.due_ns, t.seq)):
            t.status = "READY"
        return {"expired": expired, "ready": len(waiting)}

    # --- views ---

    def task(self, task_id: str) -> MTask:
        if not isinstance(task_id, str) or task_id not in self.tasks:
            raise UnknownTaskError(task_id)
        return self.tasks[task_id]

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        for t in self.tasks.values():
            out[t.status] += 1
        return out
