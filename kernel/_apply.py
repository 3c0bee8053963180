"""The kernel's state and its one apply path (every change, live or replayed, goes through it).

:class:`KernelState` holds the compiled :class:`~eskernel._core.Scheduler` plus the boundary
data keyed by the same dense handles (ids, payloads, results, errors, metadata).  Live
commands and replay change it only through :meth:`KernelState.apply` (or, on the hot path,
the same core transitions that ``apply`` calls), so the two can never drift.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

from . import events
from ._core import Scheduler
from .errors import KernelInternalError
from .workflows.state import WorkflowTable

#: The metadata of the many tasks that carry none, shared (snapshots test identity with it).
_NO_META: tuple[Any, ...] = (None, None, None, None, ())


class KernelState:
    """Scheduler + boundary data.  Not thread-safe; the Kernel serializes calls."""

    def __init__(self) -> None:
        self.sched = Scheduler()
        self.task_index: dict[str, int] = {}
        self.queue_index: dict[str, int] = {}
        self.agent_index: dict[str, int] = {}
        self.agent_caps: list[tuple[str, ...]] = []
        self.payloads: list[bytes] = []
        self.results: list[bytes | None] = []
        self.errors: list[str | None] = []
        self.meta: list[tuple[Any, ...]] = []      # (name, tags, key, parent, depends_on)
        self.keys: dict[str, str] = {}
        self.policies: dict[tuple[int, float, int, float], int] = {}
        self.workflows = WorkflowTable()       # the workflow layer's runs (kernel/workflows/)
        self._dispatch: dict[str, Callable[[dict[str, Any]], None]] = {
            name: getattr(self, "_on_" + name) for name in events.EVENT_TYPES
            if not name.startswith("workflow_")}
        self._dispatch.update(self.workflows.handlers())
        self.default_policy = self.policy(*events.DEFAULT_BACKOFF_KEY)

    # The count of events applied and the last one's time live in the core, which the hot
    # calls (see _native/hot.pxi) advance themselves.
    @property
    def applied(self) -> int:
        return self.sched.applied

    @applied.setter
    def applied(self, value: int) -> None:
        self.sched.applied = value

    @property
    def last_ts(self) -> int:
        return self.sched.last_ts

    @last_ts.setter
    def last_ts(self, value: int) -> None:
        self.sched.last_ts = value

    # -- the apply path -------------------------------------------------------------

    def apply(self, ev: dict[str, Any]) -> None:
        """Apply one event: made live, or read from the log and checked by
        ``eskernel._records.check_record`` first (apply trusts its input)."""
        self._dispatch[ev["t"]](ev)
        sched = self.sched
        sched.last_ts = ev["ts"]
        sched.applied += 1

    def policy(self, initial: int, factor: float, maximum: int, jitter: float) -> int:
        key = (initial, factor, maximum, jitter)
        idx = self.policies.get(key)
        if idx is None:
            idx = self.policies[key] = self.sched.add_policy(initial, factor, maximum, jitter)
        return idx

    def _on_queue_declared(self, ev: dict[str, Any]) -> None:
        q = self.queue_index.get(ev["queue"])
        if q is None:
            self.queue_index[ev["queue"]] = self.sched.add_queue(
                ev["queue"], ev["max_concurrent"], ev["paused"])
        else:
            self.sched.set_queue(q, ev["max_concurrent"], ev["paused"])

    def _set_paused(self, name: str, paused: bool) -> None:
        q = self.queue_index[name]
        self.sched.set_queue(q, self.sched.queue_info(q)[0], paused)

    def _on_queue_paused(self, ev: dict[str, Any]) -> None:
        self._set_paused(ev["queue"], True)

    def _on_queue_resumed(self, ev: dict[str, Any]) -> None:
        self._set_paused(ev["queue"], False)

    def _on_agent_registered(self, ev: dict[str, Any]) -> None:
        caps = [self.queue_index[q] for q in ev["capabilities"]]
        self.agent_index[ev["agent"]] = self.sched.add_agent(ev["agent"], ev["capacity"], caps)
        self.agent_caps.append(tuple(ev["capabilities"]))

    def _set_online(self, name: str, online: bool) -> None:
        a = self.agent_index[name]
        self.sched.set_agent(a, self.sched.agent_info(a)[0], online)

    def _on_agent_offline(self, ev: dict[str, Any]) -> None:
        self._set_online(ev["agent"], False)

    def _on_agent_online(self, ev: dict[str, Any]) -> None:
        self._set_online(ev["agent"], True)

    def add_task(self, tid: str, q: int, prio: int, max_attempts: int, timeout: int,
                 pinned: int, not_before: int, policy: int, deps: list[int], ts: int,
                 payload: bytes, meta: tuple[Any, ...]) -> int:
        """The submitted transition (live and replay): core task plus boundary data."""
        h = self.sched.add_task(tid, q, prio, max_attempts, timeout, pinned, not_before,
                                policy, deps, ts)
        self.task_index[tid] = h
        self.payloads.append(payload)
        self.results.append(None)
        self.errors.append(None)
        self.meta.append(meta)
        if meta[2] is not None:
            self.keys[meta[2]] = tid
        return h

    def add_plain(self, tid: str, body: bytes) -> None:
        """Boundary data of a task the core just added with ``submit_simple``."""
        self.task_index[tid] = len(self.payloads)
        self.payloads.append(body)
        self.results.append(None)
        self.errors.append(None)
        self.meta.append(_NO_META)

    def add_plain_many(self, ids: list[str], bodies: list[bytes]) -> None:
        """Boundary data of a batch the core just added with ``submit_simple``."""
        first = len(self.payloads)
        self.task_index.update(zip(ids, range(first, first + len(ids))))
        self.payloads.extend(bodies)
        self.results.extend([None] * len(ids))
        self.errors.extend([None] * len(ids))
        self.meta.extend([_NO_META] * len(ids))

    def _on_submitted(self, ev: dict[str, Any]) -> None:
        get = ev.get
        b = get("backoff")
        pol = (self.default_policy if b is None
               else self.policy(b["initial"], b["factor"], b["max"], b["jitter"]))
        dep_ids = ev["depends_on"]
        agent = get("agent")
        name, tags, key, parent = get("name"), get("tags"), get("key"), get("parent")
        if name is None and tags is None and key is None and parent is None and not dep_ids:
            meta = _NO_META    # shared: most tasks carry no metadata
        else:
            meta = (name, tags, key, parent, tuple(dep_ids))
        body = get("_body")   # live submits carry the payload already encoded
        self.add_task(ev["task"], self.queue_index[ev["queue"]], ev["priority"],
                      ev["max_attempts"], ev["timeout"],
                      self.agent_index[agent] if agent is not None else -1, ev["not_before"],
                      pol, [self.task_index[d] for d in dep_ids], ev["ts"],
                      body if body is not None else events.dumps(ev["payload"]), meta)

    def _on_claimed(self, ev: dict[str, Any]) -> None:
        self.sched.apply_claim(self.task_index[ev["task"]], ev["lease"],
                               self.agent_index[ev["agent"]], ev["ts"], ev["expires"])

    def _on_heartbeat(self, ev: dict[str, Any]) -> None:
        if self.sched.apply_heartbeat(self.task_index[ev["task"]], ev["lease"], ev["expires"]) < 0:
            raise _inconsistent(ev)

    def complete(self, h: int, lease: int, ts: int, result: bytes) -> int:
        """The completed transition (live and replay); -1 when the lease is stale."""
        rc = self.sched.complete(h, lease, ts)
        if rc == 0:
            self.results[h] = result
        return rc

    def _on_completed(self, ev: dict[str, Any]) -> None:
        body = ev.get("_body")     # checked records carry the result already encoded
        if self.complete(self.task_index[ev["task"]], ev["lease"], ev["ts"],
                         body if body is not None else events.dumps(ev["result"])) < 0:
            raise _inconsistent(ev)

    def _fail(self, ev: dict[str, Any], error: str) -> None:
        h = self.task_index[ev["task"]]
        due = ev["retry_at"]
        if self.sched.fail(h, ev["lease"], ev["ts"], -1 if due is None else due) < 0:
            raise _inconsistent(ev)
        self.errors[h] = error

    def _on_failed(self, ev: dict[str, Any]) -> None:
        self._fail(ev, ev["error"])

    def _on_expired(self, ev: dict[str, Any]) -> None:
        self._fail(ev, "lease expired")

    def _on_released(self, ev: dict[str, Any]) -> None:
        if self.sched.release(self.task_index[ev["task"]], ev["lease"], ev["ts"]) < 0:
            raise _inconsistent(ev)

    def _on_ready(self, ev: dict[str, Any]) -> None:
        self.sched.apply_ready(self.task_index[ev["task"]], ev["ts"])

    def _on_cancelled(self, ev: dict[str, Any]) -> None:
        h = self.task_index[ev["task"]]
        upstream = ev["reason"] == "upstream"
        self.sched.cancel(h, ev["ts"], upstream)
        if upstream:
            self.errors[h] = f"cancelled: upstream task {ev['cause']!r} failed or was cancelled"

    def _on_requeued(self, ev: dict[str, Any]) -> None:
        self.sched.requeue(self.task_index[ev["task"]], ev["ts"])

    def _on_epoch(self, ev: dict[str, Any]) -> None:
        self.sched.apply_epoch(ev["lease"])

    def replay_context(self) -> tuple[Any, ...]:
        """The boundary tables ``Scheduler.replay_record`` fills, in its order."""
        return (self.task_index, self.agent_index, self.queue_index, self.payloads,
                self.results, self.errors, self.meta, _NO_META, self.default_policy)

    # -- digest and snapshots -----------------------------------------------------------

    def digest(self) -> str:
        """A hash over the canonical state: equal for live and replayed kernels."""
        h = hashlib.blake2b(digest_size=16)
        h.update(self.sched.state_bytes())
        for parts in (self.sched.task_ids, self.sched.queue_names, self.sched.agent_names):
            h.update("\x00".join(parts).encode())
        # JSON, not pickle: pickle's memo makes equal values with different object
        # identity (a live id string vs the same id decoded on replay) encode differently.
        h.update(events.dumps([self.agent_caps, self.errors, self.meta,
                               sorted(self.keys.items()),
                               self.sched.last_ts,
                               self.sched.policy_table()]))
        if self.workflows.runs:
            h.update(events.dumps(self.workflows.dump()))
        for blob in self.payloads:
            h.update(blob)
        for res in self.results:
            h.update(res if res is not None else b"\x00")
        return h.hexdigest()

    def dump(self) -> bytes:
        """Snapshot blob of the state now (see :mod:`eskernel._snapshot` for the format).

        Only for a state whose last applied record is not at hand (tests); the kernel's own
        snapshots go through :class:`eskernel._snapshot.Capture` and carry the tail hash."""
        from ._snapshot import Capture
        return Capture(self).encode(b"\x00" * 16 if self.applied else b"")

    @classmethod
    def load(cls, blob: bytes) -> "KernelState":
        """Restore from a snapshot blob; raises SnapshotCorruptError when it does not fit."""
        from ._snapshot import decode
        return decode(blob)[0]


def _inconsistent(ev: dict[str, Any]) -> KernelInternalError:
    return KernelInternalError(
        f"event {ev!r:.200} does not apply to the replayed state (its lease is not current); "
        "this is a bug in eskernel or a log written by another program; please report it "
        "with the log")
