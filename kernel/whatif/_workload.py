"""The workload a recorded log describes: what arrived when, and how each attempt behaved.

A :class:`Workload` is read once from a log (never written) and holds what a simulation
needs to re-decide the history under another policy:

* the *commands* that came from outside the scheduler, in log order with their times:
  queue declarations, pauses and resumes, agent registrations and online periods, task
  submissions (the recorded ``submitted`` event is the spec), user cancellations and
  requeues;
* each task's *behaviours*: for its k-th claim, what the handler did and how long after the
  claim: completed (with its result), failed (error, retryable), released, never reported
  (the lease expired), revoked by a cancellation mid-run, or still running at the end of the
  log; plus the heartbeat offsets and the recorded jitter draw of a retry.

Invariants: ``commands`` is sorted by (time, log offset); every task of ``tasks`` has a
``submitted`` command; ``behaviours[task][k]`` describes the task's k-th claim in the log.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

from .. import events
from ..errors import LogRecordInvalidError

__all__ = ["Behaviour", "Workload", "read_workload", "COMPLETE", "FAIL", "RELEASE", "HANG",
           "REVOKED", "OPEN", "OUTCOME_NAMES"]

#: Behaviour kinds: what the handler did at the end of an attempt.
COMPLETE, FAIL, RELEASE, HANG, REVOKED, OPEN = range(6)
OUTCOME_NAMES = ("completed", "failed", "released", "expired", "revoked", "open")

#: Command types a simulation replays (all other events are the scheduler's own decisions).
COMMANDS = frozenset({"queue_declared", "queue_paused", "queue_resumed", "agent_registered",
                      "agent_offline", "agent_online", "submitted", "cancelled", "requeued"})


@dataclasses.dataclass(slots=True)
class Behaviour:
    """One attempt as the handler lived it, relative to its claim.

    ``duration`` is ns from the claim to the handler's report (for HANG: to the recorded
    expiry; REVOKED: to the cancellation; OPEN: to the end of the log).  ``heartbeats`` are
    ns offsets from the claim.  ``draw`` is the jitter draw in [0, 1) the kernel used for the
    retry after this attempt (None: none recorded).
    """

    kind: int
    duration: int
    result: Any = None
    error: str = ""
    retryable: bool = True
    heartbeats: tuple[int, ...] = ()
    draw: float | None = None
    agent: str = ""


@dataclasses.dataclass(slots=True)
class Workload:
    """What a log recorded, split into commands and behaviours (see the module docstring)."""

    path: str
    commands: list[dict[str, Any]]
    behaviours: dict[str, list[Behaviour]]
    queues: dict[str, tuple[int, bool]]          # last declared (max_concurrent, paused)
    agents: dict[str, tuple[tuple[str, ...], int]]   # (capabilities, capacity)
    task_queue: dict[str, str]
    task_name: dict[str, str]                    # tasks that have a name
    dependents: dict[str, list[str]]
    first_ts: int
    last_ts: int
    events: int
    flags: dict[str, list[str]]                  # reason -> task ids (see Limits)


_PENDING = Behaviour(OPEN, 0)


class _Open:
    __slots__ = ("task", "ts", "agent", "hb", "index")

    def __init__(self, task: str, ts: int, agent: str, index: int) -> None:
        self.task, self.ts, self.agent, self.index = task, ts, agent, index
        self.hb: list[int] = []             # heartbeat offsets from the claim


def _draw(ev: dict[str, Any], sub: dict[str, Any], attempt: int) -> float | None:
    # Inverts the core's retry_due: delay = min(max, initial * factor**(attempt-1)) * (1 -
    # jitter * u).  None when there is no retry or no jitter to replay.
    due = ev.get("retry_at")
    b = sub.get("backoff") or events.DEFAULT_BACKOFF
    if due is None or not b["jitter"]:
        return None
    base = min(float(b["max"]), float(b["initial"]) * float(b["factor"]) ** (attempt - 1))
    if base <= 0:
        return None
    u = (1.0 - float(due - ev["ts"]) / base) / float(b["jitter"])
    return float(min(max(u, 0.0), 0.999999999))


def read_workload(path: str | os.PathLike[str], until_ns: int | None = None,
                  observe: Callable[[dict[str, Any]], None] | None = None) -> Workload:
    """Read the workload of the log in ``path`` (read-only: no lock, nothing written).

    Tasks submitted after ``until_ns`` are left out with everything that concerns them.
    ``observe`` sees every decoded event first (the baseline's measures fold them).

    Raises:
        LogNotFoundError: ``path`` holds no log.
        LogCorruptError / LogRecordInvalidError: a record is damaged or means nothing.
    """
    from eskernel.eventlog import EventLog

    with EventLog.open_readonly(path) as log:
        end = log.next_offset
        wl = Workload(str(path), [], {}, {}, {}, {}, {}, {}, 0, 0, end,
                      {"retried_after_timeout": [], "cancelled_mid_run": [],
                       "still_running_at_end": [], "released": []})
        subs: dict[str, dict[str, Any]] = {}
        leases: dict[int, _Open] = {}
        running: dict[str, int] = {}           # task -> its open lease
        off = 0
        ev: dict[str, Any] = {}
        loads, version, types = events.loads, events.SCHEMA_VERSION, events.EVENT_TYPES
        try:
            while off < end:
                batch = log.read_batch(off, min(8192, end - off))
                if not batch:
                    break
                for rec in batch:
                    # Optional fields stay absent (read with .get); the version and type
                    # are checked as decode() checks them.
                    ev = loads(rec)
                    if ev["v"] != version or ev["t"] not in types:
                        events.decode(rec)            # raises, naming the record
                    if observe is not None:
                        observe(ev)
                    _fold(wl, ev, off, subs, leases, running, until_ns)
                    off += 1
        except LogRecordInvalidError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError) as err:
            raise LogRecordInvalidError(
                f"record {off} of the log in {path} ({ev.get('t') if isinstance(ev, dict) else '?'}"
                f") cannot be read as a workload ({type(err).__name__}: {err}); run `eskernel "
                f"verify {path}` to check the log", segment=str(path), offset=-1,
                log_offset=off,
                record_type=ev.get("t") if isinstance(ev, dict) else None) from err
    for lid, op in leases.items():
        wl.behaviours[op.task][op.index] = Behaviour(
            OPEN, wl.last_ts - op.ts, heartbeats=tuple(op.hb), agent=op.agent)
        wl.flags["still_running_at_end"].append(op.task)
    for tid, q in wl.task_queue.items():
        for d in subs[tid]["depends_on"]:
            wl.dependents.setdefault(d, []).append(q)
    return wl


def _fold(wl: Workload, ev: dict[str, Any], off: int, subs: dict[str, dict[str, Any]],
          leases: dict[int, _Open], running: dict[str, int], until_ns: int | None) -> None:
    t, ts = ev["t"], ev["ts"]
    if off == 0:
        wl.first_ts = ts
    task: str = ev.get("task") or ""
    if until_ns is not None and task and t != "submitted" and task not in subs:
        return                                  # a task outside the window
    wl.last_ts = ts
    if t == "submitted":
        if until_ns is not None and ts > until_ns:
            return
        subs[task] = ev
        wl.task_queue[task] = ev["queue"]
        name = ev.get("name")
        if name is not None:
            wl.task_name[task] = name
        wl.behaviours[task] = []
        ev["_off"] = off
        wl.commands.append(ev)
    elif t == "claimed":
        beh = wl.behaviours[task]
        op = _Open(task, ts, ev["agent"], len(beh))
        beh.append(_PENDING)                    # replaced when the attempt ends
        leases[ev["lease"]] = op
        running[task] = ev["lease"]
    elif t == "heartbeat":
        op = leases[ev["lease"]]
        op.hb.append(ts - op.ts)
    elif t == "completed":
        op = leases.pop(ev["lease"])
        del running[task]
        wl.behaviours[task][op.index] = Behaviour(
            COMPLETE, ts - op.ts, ev["result"], "", True, tuple(op.hb) if op.hb else (), None,
            op.agent)
    elif t in ("failed", "expired", "released"):
        op = leases.pop(ev["lease"])
        running.pop(task, None)
        b = Behaviour(COMPLETE, ts - op.ts, heartbeats=tuple(op.hb), agent=op.agent)
        if t == "failed":
            b.kind, b.error, b.retryable = FAIL, ev["error"], ev["retryable"]
            b.draw = _draw(ev, subs[task], op.index + 1)
        elif t == "expired":
            b.kind, b.draw = HANG, _draw(ev, subs[task], op.index + 1)
            if ev.get("retry_at") is not None:
                wl.flags["retried_after_timeout"].append(task)
        else:
            b.kind = RELEASE
            wl.flags["released"].append(task)
        wl.behaviours[task][op.index] = b
    elif t == "cancelled":
        lid = running.pop(task, None)
        if lid is not None:
            op = leases.pop(lid)
            wl.behaviours[task][op.index] = Behaviour(
                REVOKED, ts - op.ts, heartbeats=tuple(op.hb), agent=op.agent)
            wl.flags["cancelled_mid_run"].append(task)
        if ev["reason"] == "cancelled":
            ev["_off"] = off
            wl.commands.append(ev)
    elif t in COMMANDS:
        if t == "queue_declared":
            wl.queues[ev["queue"]] = (ev["max_concurrent"], ev["paused"])
        elif t == "agent_registered":
            wl.agents[ev["agent"]] = (tuple(ev["capabilities"]), ev["capacity"])
        ev["_off"] = off
        wl.commands.append(ev)
