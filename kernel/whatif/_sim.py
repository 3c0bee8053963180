"""The simulation: the real kernel re-deciding a recorded workload in virtual time.

An in-memory :class:`~eskernel.Kernel` on a clock the simulation sets receives the recorded
commands at their recorded times (with the changes applied), and agents claim as soon as
they can: whenever a queue they serve may have new work or a slot of theirs frees.  Each
claim is answered with the behaviour recorded for that task's attempt (its k-th claim):
the simulation reports it after the recorded run time, heartbeats at the recorded offsets,
and lets a lease that was never reported expire through ``tick()`` at its expiry time.
Time jumps from one due item to the next; nothing sleeps.

Invariants: ``free[a]`` equals agent a's capacity minus the leases it holds in the kernel;
every lease in ``running`` is current in the kernel unless a cancellation revoked it (then
its end is answered with StaleLeaseError and ignored); items at the same time run in
(recorded log offset, then creation) order, and claims run after every item of that time.
"""

from __future__ import annotations

import heapq
import statistics
from collections.abc import Callable
from typing import Any

from .. import events
from .._apply import KernelState
from .._core import Lease
from .._kernel import Kernel
from .._memlog import MemoryLog
from ..errors import (DependencyError, InvalidStateError, NotFoundError, StaleLeaseError)
from ._changes import Changes
from ._workload import COMPLETE, FAIL, HANG, OPEN, RELEASE, REVOKED, Behaviour, Workload

__all__ = ["simulate", "Simulation"]

_CMD, _END, _HB, _TICK = range(4)
NS = 1_000_000_000


class _Clock:
    """The simulation's clock: the kernel reads ``ns``, which only the loop moves."""

    __slots__ = ("ns",)

    def __init__(self, ns: int) -> None:
        self.ns = ns

    def time_ns(self) -> int:
        return self.ns


class _SimKernel(Kernel):
    # Replays a retry's recorded jitter draw for the attempt that gets the same retry, so
    # that an unchanged simulation waits exactly as long as the recorded retry did.
    draws: dict[int, float]

    def _u(self, lease_id: int) -> float:
        d = self.draws.pop(lease_id, None)
        return super()._u(lease_id) if d is None else d


class Simulation:
    """One run of a workload under changes; :meth:`run` returns the alternative's records."""

    def __init__(self, wl: Workload, changes: Changes) -> None:
        self.wl, self.ch = wl, changes
        self.clock = _Clock(wl.first_ts)
        self.log = MemoryLog()
        self.k = _SimKernel(self.log, KernelState(), clock=self.clock, seed=0,
                            snapshot_every=0, max_payload_bytes=1 << 30)
        self.k.draws = {}
        self.heap: list[tuple[int, int, int, Any]] = []
        self.seq = wl.events                     # generated items sort after recorded ones
        self.free: dict[str, int] = {}
        self.order: dict[str, int] = {}          # agent -> rank of its last claim
        self.rank = 0
        self.serves: dict[str, list[str]] = {}   # queue -> agents serving it
        self.online: set[str] = set()
        self.pinned_off: set[str] = set()        # agents a change keeps offline
        self.wake_q: set[str] = set()
        self.wake_a: set[str] = set()
        self.claims: dict[str, int] = {}         # task -> claims so far
        self.running: dict[int, tuple[Lease, str, Behaviour]] = {}   # lease id -> ...
        self.open: dict[int, int] = {}           # OPEN lease id -> its expiry
        self.deferred: list[dict[str, Any]] = []  # registrations waiting for a queue
        self.tick_due = False
        self.batch: list[int] = []               # leases completing at the current time
        self.flags: dict[str, list[str]] = {"unobserved_attempt": [],
                                            "rejected_at_submission": [],
                                            "cancel_found_task_finished": [],
                                            "requeue_found_task_not_failed": []}
        self.fallback_q: dict[str, int] | None = None    # computed when first needed

    # -- the loop -------------------------------------------------------------------------

    def push(self, t: int, kind: int, arg: Any) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, arg))

    def run(self, progress: Callable[[int, int], None] | None = None) -> list[bytes]:
        self._load_commands()
        heap, pop, clock = self.heap, heapq.heappop, self.clock
        handlers = (self._command, self._end, self._heartbeat, self._tick_item)
        running, batch = self.running, self.batch
        steps = 0
        while heap:
            t = heap[0][0]
            clock.ns = t
            while True:
                while heap and heap[0][0] == t:
                    _, _, kind, arg = pop(heap)
                    if kind == _END:
                        item = running.get(arg)
                        if item is not None and item[2].kind == COMPLETE:
                            batch.append(arg)     # completed together, in this order
                            continue
                    if batch:
                        self._complete(batch)
                    handlers[kind](arg)
                if batch:
                    self._complete(batch)
                if self.tick_due:
                    self._tick()
                if self.wake_q or self.wake_a:
                    self._claim_all(t)
                if not heap or heap[0][0] != t:
                    break
            steps += 1
            if progress is not None and steps % 4096 == 0:
                progress(self.log.next_offset, 0)
        return self.log.read_batch(0, self.log.next_offset)

    def _load_commands(self) -> None:
        # Submissions recorded at one time in a row become one submit_many batch (a batch
        # may hold forward dependencies).  The workload's command list is consumed: each
        # command lives on only in the heap, and is freed once it has run.
        cmds, self.wl.commands = self.wl.commands, []
        i, n = 0, len(cmds)
        for a, spec in self.ch.new_agents.items():
            if a not in self.wl.agents:
                self.push(self.wl.first_ts, _CMD, {"t": "agent_registered", "agent": a,
                                                   "capabilities": list(spec[0]),
                                                   "capacity": spec[1]})
        while i < n:
            ev = cmds[i]
            if ev["t"] == "submitted":
                j = i + 1
                while j < n and cmds[j]["t"] == "submitted" and cmds[j]["ts"] == ev["ts"]:
                    j += 1
                heapq.heappush(self.heap, (ev["ts"], ev["_off"], _CMD, cmds[i:j]))
                i = j
            else:
                heapq.heappush(self.heap, (ev["ts"], ev["_off"], _CMD, ev))
                i += 1

    # -- commands ---------------------------------------------------------------------------

    def _command(self, ev: Any) -> None:
        if isinstance(ev, list):
            self._submit(ev)
            return
        t, k, ch = ev["t"], self.k, self.ch
        if t == "queue_declared":
            q = ev["queue"]
            over = ch.queues.get(q, {})
            k.declare_queue(q, max_concurrent=over.get("max_concurrent", ev["max_concurrent"]),
                            paused=over.get("paused", ev["paused"]))
            self.wake_q.add(q)
            pending, self.deferred = self.deferred, []
            for reg in pending:
                self._register(reg)
        elif t in ("queue_paused", "queue_resumed"):
            q = ev["queue"]
            if "paused" not in ch.queues.get(q, {}):
                if t == "queue_paused":
                    k.pause_queue(q)
                else:
                    k.resume_queue(q)
                    self.wake_q.add(q)
        elif t == "agent_registered":
            self._register(ev)
        elif t in ("agent_offline", "agent_online"):
            a = ev["agent"]
            if a in self.pinned_off or "online" in ch.agents.get(a, {}) or a not in self.free:
                return
            if t == "agent_offline":
                k.agent_offline(a)
                self.online.discard(a)
            else:
                k.agent_online(a)
                self.online.add(a)
                self.wake_a.add(a)
        elif t == "cancelled":
            self._cancel(ev["task"])
        elif t == "requeued":
            tid = ev["task"]
            try:
                k.requeue(tid)
            except InvalidStateError:
                self.flags["requeue_found_task_not_failed"].append(tid)
                return
            except NotFoundError:
                return
            self.wake_q.add(self.wl.task_queue[tid])

    def _register(self, ev: dict[str, Any]) -> None:
        a = ev["agent"]
        over: dict[str, Any] = self.ch.agents.get(a) or {}
        spec = self.ch.new_agents.get(a, (tuple(ev["capabilities"]), int(ev["capacity"])))
        caps: tuple[str, ...] = tuple(over["capabilities"] if "capabilities" in over
                                      else spec[0])
        cap: int = int(over["capacity"]) if "capacity" in over else spec[1]
        if any(q not in self.k._state.queue_index for q in caps):
            self.deferred.append(ev)            # registered once its queues are declared
            return
        self.k.register_agent(a, list(caps), capacity=max(cap, 1))
        self.order[a] = -len(self.wl.agents) - len(self.ch.new_agents) + len(self.order)
        self.free[a] = max(cap, 1)
        for q in caps:
            self.serves.setdefault(q, []).append(a)
        if cap == 0 or over.get("online") is False:
            self.k.agent_offline(a)
            self.pinned_off.add(a)
        else:
            self.online.add(a)
            self.wake_a.add(a)

    def _spec(self, ev: dict[str, Any]) -> dict[str, Any]:
        tid, q, name = ev["task"], ev["queue"], ev.get("name")
        pr = self.ch.priority
        prio = ev["priority"]
        if pr:
            prio = pr.get(("id", tid), pr.get(("name", name or ""), pr.get(("queue", q), prio)))
        b = ev.get("backoff")
        spec = {"id": tid, "queue": q, "payload": ev["payload"], "priority": prio,
                "max_attempts": ev["max_attempts"], "timeout": ev["timeout"] / NS}
        # Only the fields a task has: a plain task takes submit_many's fast path.
        if ev["depends_on"]:
            spec["depends_on"] = ev["depends_on"]
        for key in ("agent", "name", "tags", "key", "parent"):
            if ev.get(key) is not None:
                spec[key] = ev[key]
        if b is not None and b != events.DEFAULT_BACKOFF:
            spec["backoff"] = {"initial": b["initial"] / NS, "factor": b["factor"],
                               "max": b["max"] / NS, "jitter": b["jitter"]}
        nb = ev["not_before"]
        if nb:
            spec["not_before"] = nb / NS
            self.push(max(nb, round(nb / NS * NS)), _TICK, q)
        return spec

    def _submit(self, batch: list[dict[str, Any]]) -> None:
        specs = [self._spec(ev) for ev in batch]
        for run in _runs(specs):
            self._submit_run(run)
        self.wake_q.update(spec["queue"] for spec in specs)

    def _submit_run(self, specs: list[dict[str, Any]]) -> None:
        try:
            self.k.submit_many(specs)
        except (DependencyError, NotFoundError):
            # An upstream task failed or was cancelled earlier than in the recording: the
            # kernel refuses its dependents, as it would have refused the producer.
            for spec in specs:
                try:
                    self.k.submit_many([spec])
                except (DependencyError, NotFoundError):
                    self.flags["rejected_at_submission"].append(spec["id"])

    def _cancel(self, tid: str) -> None:
        before = self.log.next_offset
        try:
            self.k.cancel(tid)
        except InvalidStateError:
            self.flags["cancel_found_task_finished"].append(tid)
            return
        except NotFoundError:
            return
        self._after(before)

    # -- attempts ---------------------------------------------------------------------------

    def _claim_all(self, now: int) -> None:
        agents: set[str] = set(self.wake_a)
        serves = self.serves
        for q in self.wake_q:
            agents.update(serves.get(q, ()))
        self.wake_q.clear()
        self.wake_a.clear()
        free, online, order = self.free, self.online, self.order
        ready = [a for a in agents if free.get(a, 0) > 0 and a in online]
        if len(ready) > 1:
            # The agent that claimed least recently goes first (then registration order):
            # competing agents that poll share the work rather than one taking it all.
            ready.sort(key=order.__getitem__)
        claim, start = self.k.claim, self._start
        for a in ready:
            # Single claims: the kernel's fastest path (free[a] > 0 holds on entry, and
            # _start takes one slot per lease).
            lease = claim(a)
            if lease is None:
                continue
            self.rank += 1
            order[a] = self.rank
            while True:
                start(lease, a, now)
                if not free[a]:
                    break
                lease = claim(a)
                if lease is None:
                    break

    def _start(self, lease: Lease, agent: str, now: int) -> None:
        tid = lease.task_id
        self.free[agent] -= 1
        i = self.claims.get(tid, 0)
        self.claims[tid] = i + 1
        bs = self.wl.behaviours.get(tid, ())
        if i < len(bs):
            b = bs[i]
        else:
            b = Behaviour(COMPLETE, self._fallback(self.wl.task_queue.get(tid, "")))
            self.flags["unobserved_attempt"].append(tid)
        lid = lease.lease_id
        self.running[lid] = (lease, agent, b)
        for off in b.heartbeats:
            self.push(now + off, _HB, lid)
        kind = b.kind
        if kind in (COMPLETE, FAIL, RELEASE):
            self.push(now + b.duration, _END, lid)
        elif kind == OPEN:
            self.open[lid] = lease.expires_ns
        else:                                   # HANG, REVOKED: the lease runs out
            if b.draw is not None:
                self.k.draws[lid] = b.draw
            self.push(lease.expires_ns, _TICK, None)

    def _fallback(self, queue: str) -> int:
        # An attempt the log never saw: the median recorded run time of a completed attempt
        # in its queue (in the whole log when the queue has none; 0 when nothing completed).
        if self.fallback_q is None:
            by_q: dict[str, list[int]] = {}
            for tid, bs in self.wl.behaviours.items():
                by_q.setdefault(self.wl.task_queue[tid], []).extend(
                    b.duration for b in bs if b.kind == COMPLETE)
            done = [d for ds in by_q.values() for d in ds]
            self.fallback_q = {q: int(statistics.median(d)) for q, d in by_q.items() if d}
            self.fallback_q[""] = int(statistics.median(done)) if done else 0
        return self.fallback_q.get(queue, self.fallback_q[""])

    def _finish(self, lid: int) -> tuple[Lease, Behaviour] | None:
        item = self.running.pop(lid, None)
        if item is None:
            return None
        lease, agent, b = item
        self.free[agent] += 1
        self.wake_a.add(agent)
        self.wake_q.add(self.wl.task_queue[lease.task_id])
        return lease, b

    def _end(self, lid: int) -> None:
        item = self.running.get(lid)
        if item is None:
            return                              # revoked by a cancellation
        lease, _, b = item
        k = self.k
        before = self.log.next_offset
        try:
            if b.kind == COMPLETE:
                k.complete(lease, b.result)
            elif b.kind == FAIL:
                if b.draw is not None:
                    k.draws[lid] = b.draw
                k.fail(lease, b.error, b.retryable)
            else:
                k.release(lease)
        except StaleLeaseError:
            # The lease ran out by the clock before the report: the tick at this time
            # expires it, and its expiry frees the agent.
            self.push(self.clock.ns, _TICK, None)
            return
        self._finish(lid)
        if b.kind == COMPLETE:
            self.wake_q.update(self.wl.dependents.get(lease.task_id, ()))
        else:
            self._after(before)

    def _complete(self, batch: list[int]) -> None:
        # Attempts that complete at the same time: one complete_many, one append.  Each
        # lease in the batch is running (checked when it was batched; nothing in between).
        running = self.running
        leases = [running[lid][0] for lid in batch]
        try:
            self.k.complete_many(leases, [running[lid][2].result for lid in batch])
        except StaleLeaseError:
            for lid in batch:                   # one ran out by the clock: one at a time
                self._end(lid)
            batch.clear()
            return
        deps = self.wl.dependents
        wake = self.wake_q
        for lid, lease in zip(batch, leases):
            self._finish(lid)
            d = deps.get(lease.task_id)
            if d:
                wake.update(d)
        batch.clear()

    def _heartbeat(self, lid: int) -> None:
        item = self.running.get(lid)
        if item is None:
            return
        lease, _, b = item
        try:
            self.k.heartbeat(lease)
        except StaleLeaseError:
            return
        if b.kind in (HANG, REVOKED):
            self.push(self.clock.ns + self._timeout(lease), _TICK, None)

    def _timeout(self, lease: Lease) -> int:
        # The task's timeout in ns, as the kernel holds it (a heartbeat renews to now + it).
        return self.k._sched.timeout_of(lease._task)

    def _tick_item(self, queue: str | None) -> None:
        self.tick_due = True
        if queue is not None:
            self.wake_q.add(queue)

    def _tick(self) -> None:
        self.tick_due = False
        now = self.clock.ns
        for lid, exp in list(self.open.items()):
            if exp <= now and lid in self.running:   # still running at the end of the log
                self.open[lid] = now + self._timeout(self.running[lid][0])
                self.k.heartbeat(self.running[lid][0])
        before = self.log.next_offset
        if self.k.tick() != {"expired": 0, "ready": 0}:
            self._after(before)

    def _after(self, before: int) -> None:
        # Follow what a call decided (retries due, expiries, readiness, cancellations).
        for rec in self.log.read_batch(before, self.log.next_offset - before):
            ev = events.loads(rec)
            t = ev["t"]
            if t in ("failed", "expired"):
                if t == "expired":
                    self._finish(ev["lease"])
                    self.k.draws.pop(ev["lease"], None)
                if ev["retry_at"] is not None:
                    self.push(ev["retry_at"], _TICK, self.wl.task_queue[ev["task"]])
            elif t == "ready":
                self.wake_q.add(self.wl.task_queue[ev["task"]])
            elif t == "cancelled":
                h = self.k._state.task_index[ev["task"]]
                for lid, (lease, _, _) in list(self.running.items()):
                    if lease._task == h:
                        self._finish(lid)
                        self.open.pop(lid, None)
            elif t == "released":
                pass


def _runs(specs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    # A recorded batch cut into runs of plain tasks (submit_many's fast path) and of the
    # others, in order; kept whole when a task depends on a later one of the batch.
    if len(specs) < 2:
        return [specs]
    plain = [len(s) == 6 for s in specs]
    if all(plain) or not any(plain):
        return [specs]
    pos = {s["id"]: i for i, s in enumerate(specs)}
    for i, s in enumerate(specs):
        if any(pos.get(d, -1) > i for d in s.get("depends_on", ())):
            return [specs]
    runs: list[list[dict[str, Any]]] = []
    for s, p in zip(specs, plain):
        if runs and (len(runs[-1][0]) == 6) == p:
            runs[-1].append(s)
        else:
            runs.append([s])
    return runs


def simulate(wl: Workload, changes: Changes,
             progress: Callable[[int, int], None] | None = None) -> tuple[list[bytes],
                                                                            dict[str, list[str]]]:
    """Run ``wl`` under ``changes``; returns the alternative's log records and its flags."""
    sim = Simulation(wl, changes)
    records = sim.run(progress)
    return records, sim.flags
