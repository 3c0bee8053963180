"""Building ``submitted`` events: validation of one task spec, and batches with forward
references ordered topologically (stable: input order unless a dependency forces a move)."""

from __future__ import annotations

import heapq
from typing import Any

from . import events
from ._apply import KernelState
from ._codes import DEAD_CODES, ROW_STATUS
from ._validate import (ID_PATTERN, NS, check_backoff, check_id, check_int, check_priority, check_tags,
                        MAX_DURATION_S, MAX_TIME_S, lookup, seconds_to_ns, show)
from .errors import (DependencyError, DuplicateTaskError, InvalidSpecError, UnknownAgentError,
                     UnknownTaskError)
from .models import Priority, TaskSpec

SPEC_KEYS = frozenset(TaskSpec.model_fields)


def spec_dict(spec: Any, index: int) -> dict[str, Any]:
    """A submit_many item (TaskSpec or dict) as a dict of TaskSpec keys."""
    if isinstance(spec, TaskSpec):
        return {k: getattr(spec, k) for k in spec.model_fields_set | {"queue"}}
    if not isinstance(spec, dict):
        raise InvalidSpecError(f"item {index} of submit_many is {show(spec)}; pass TaskSpec "
                               "objects or dicts with TaskSpec's keys")
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise InvalidSpecError(f"item {index} of submit_many has unknown keys {sorted(unknown)}; "
                               f"allowed: {sorted(SPEC_KEYS)}")
    if "queue" not in spec:
        raise InvalidSpecError(f"item {index} of submit_many has no 'queue'")
    return spec


def spec_list(specs: Any) -> list[Any]:
    """The items of submit_many's argument as a list (InvalidSpecError if not iterable)."""
    if isinstance(specs, list):
        return specs
    if isinstance(specs, (str, bytes, dict, TaskSpec)) or not hasattr(specs, "__iter__"):
        raise InvalidSpecError(f"submit_many takes a list of TaskSpec objects or dicts, got "
                               f"{show(specs)}; wrap a single task in a list")
    return list(specs)


def keyed_task(state: KernelState, key: str, queue: Any, payload: Any, name: Any) -> str:
    """The id of the task submitted with idempotency key ``key``, when the new submit asks
    for the same queue, name and payload; DuplicateTaskError when it asks for another."""
    tid = state.keys[key]
    h = state.task_index[tid]
    old_queue = state.sched.queue_names[state.sched.task_row(h)[3]]
    old_name, old_payload = state.meta[h][0], events.loads(state.payloads[h])
    new_payload = events.loads(b"null" if payload is None else events.dumps(payload))
    if (old_queue, old_name, old_payload) != (queue, name, new_payload):
        raise DuplicateTaskError(
            f"idempotency key {key!r} was used for task {tid!r} (queue {old_queue!r}, name "
            f"{old_name!r}, payload {show(old_payload)}); this submit asks for queue "
            f"{show(queue)}, name {show(name)}, payload {show(payload)}: use a new key for a "
            "new task, or resubmit the same queue, name and payload to get the same id back")
    return tid


def new_id(state: KernelState, taken: set[str] | frozenset[str]) -> str:
    """A generated id ``t-<n>`` (n = the task's submission number) not yet in use."""
    n = state.sched.n_tasks + len(taken)
    tid = f"t-{n}"
    k = 0
    while tid in state.task_index or tid in taken:
        k += 1
        tid = f"t-{n}-{k}"
    return tid


def submitted_event(state: KernelState, now: int, max_payload: int, tid: str,
                    batch: dict[str, dict[str, Any]] | None, queue: Any, payload: Any = None,
                    id: Any = None, name: Any = None, priority: Any = Priority.NORMAL,
                    depends_on: Any = (), max_attempts: Any = 3, timeout: Any = 30.0,
                    backoff: Any = None, delay: Any = None, not_before: Any = None,
                    agent: Any = None, tags: Any = None, key: Any = None,
                    parent: Any = None) -> dict[str, Any]:
    """Validate one spec; return its ``submitted`` event (nothing is changed)."""
    q = lookup(state.queue_index, queue, "queue")
    prio = check_priority(priority)
    if isinstance(depends_on, (str, bytes)) or not hasattr(depends_on, "__iter__"):
        raise InvalidSpecError(f"depends_on must be a list of task ids, got {show(depends_on)}")
    deps = list(depends_on)
    for d in deps:
        if d == tid:
            raise DependencyError(f"task {tid!r} depends on itself; remove it from depends_on")
        h = state.task_index.get(d) if type(d) is str else None
        if h is None:
            if batch is not None and d in batch:
                continue
            check_id(d, "dependency")
            raise UnknownTaskError(f"task {tid!r} depends on unknown task {d!r}; submit it first "
                                   "(or in the same submit_many batch)")
        if state.sched.status_of(h) in DEAD_CODES:
            status = state.sched.task_row(h)[ROW_STATUS]
            raise DependencyError(f"task {tid!r} depends on {d!r}, which is {status}; requeue "
                                  f"{d!r} first or drop the dependency")
    if len(set(deps)) != len(deps):
        raise InvalidSpecError(f"task {tid!r} lists a dependency twice: {deps!r}")
    attempts = check_int(max_attempts, "max_attempts", 1, 1_000_000)
    timeout_ns = seconds_to_ns(timeout, "timeout", allow_zero=False)
    pol = check_backoff(backoff)
    bo = events.DEFAULT_BACKOFF if pol is None else {
        "initial": round(pol.initial * NS), "factor": pol.factor, "max": round(pol.max * NS),
        "jitter": pol.jitter}
    if delay is not None and not_before is not None:
        raise InvalidSpecError("pass either delay or not_before, not both")
    due = 0
    if delay is not None:
        due = now + seconds_to_ns(delay, "delay")
    elif not_before is not None:
        due = seconds_to_ns(not_before, "not_before", maximum=MAX_TIME_S)
    if agent is not None:
        a = state.agent_index.get(agent) if type(agent) is str else None
        if a is None:
            check_id(agent, "agent")
            raise UnknownAgentError(f"preferred agent {agent!r} is not registered; register it first")
        if not state.sched.agent_serves(a, q):
            raise InvalidSpecError(f"preferred agent {agent!r} does not serve queue {queue!r}; "
                                   "pin the task to an agent that does")
    if name is not None and type(name) is not str:
        raise InvalidSpecError(f"name must be a str, got {show(name)}")
    if key is not None and (type(key) is not str or not key):
        raise InvalidSpecError(f"key (idempotency key) must be a non-empty str, got {show(key)}")
    if parent is not None:
        check_id(parent, "parent task")
    body = events.dumps(payload)
    if len(body) > max_payload:
        raise InvalidSpecError(f"payload of task {tid!r} is {len(body)} bytes, over the "
                               f"{max_payload}-byte limit; store large data elsewhere and pass a "
                               "reference")
    tags = check_tags(tags)
    ev = {"t": "submitted", "ts": now, "task": tid, "queue": queue, "priority": prio,
          "payload": events.fragment(body), "_body": body, "depends_on": deps,
          "max_attempts": attempts, "timeout": timeout_ns, "not_before": due, "agent": agent,
          "backoff": bo, "name": name, "tags": tags, "key": key, "parent": parent}
    return ev


def hot_extra(state: KernelState, tags: Any, key: Any,
              depends_on: Any) -> tuple[bytes | None, tuple[Any, ...] | None]:
    """The encoded optional fields and the metadata of a one-call submit with tags or a key
    (``Scheduler.submit_hot``); (None, None) sends the call to the general path (an
    existing key returns its id there; bad input raises there)."""
    if key is not None and (type(key) is not str or not key or key in state.keys):
        return None, None
    if type(depends_on) not in (list, tuple):
        return None, None
    try:
        tags = check_tags(tags)
    except InvalidSpecError:
        return None, None
    extra = b""
    if tags is not None:
        extra = b',"tags":' + events.dumps(tags)
    if key is not None:
        extra += b',"key":' + events.dumps(key)
    return extra, (None, tags, key, None, tuple(depends_on))


def topo_order(ids: list[str], deps: list[list[str]]) -> list[int]:
    """Indexes of a batch in stable topological order; DependencyError names a cycle."""
    pos = {tid: i for i, tid in enumerate(ids)}
    indeg = [0] * len(ids)
    out_edges: list[list[int]] = [[] for _ in ids]
    for i, ds in enumerate(deps):
        for d in ds:
            j = pos.get(d)
            if j is not None:
                indeg[i] += 1
                out_edges[j].append(i)
    ready = [i for i, n in enumerate(indeg) if n == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for j in out_edges[i]:
            indeg[j] -= 1
            if indeg[j] == 0:
                heapq.heappush(ready, j)
    if len(order) < len(ids):
        left = {i for i, n in enumerate(indeg) if n > 0}
        cur = min(left)
        path: list[int] = []
        while cur not in path:
            path.append(cur)
            cur = next(pos[d] for d in deps[cur] if d in pos and pos[d] in left)
        cycle = path[path.index(cur):] + [cur]
        raise DependencyError("dependency cycle in submit_many: "
                              + " -> ".join(repr(ids[i]) for i in cycle)
                              + "; break the cycle")
    return order


def batch_events(state: KernelState, now: int, max_payload: int,
                 specs: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Validate a batch; return (ids in input order, events in topological order)."""
    ids: list[str] = []
    fresh: dict[str, dict[str, Any]] = {}
    taken: set[str] = set()
    existing: dict[int, str] = {}
    for i, spec in enumerate(specs):
        key = spec.get("key")
        if key is not None and type(key) is str and key in state.keys:
            existing[i] = keyed_task(state, key, spec.get("queue"), spec.get("payload"),
                                     spec.get("name"))
            ids.append(existing[i])
            continue
        tid = spec.get("id")
        if tid is None:
            tid = new_id(state, taken)
        else:
            check_id(tid, "task")
            if tid in taken:
                raise DuplicateTaskError(
                    f"task id {tid!r} appears twice in this submit_many batch (items "
                    f"{ids.index(tid)} and {i}); give each task its own id, or omit it to have "
                    "one generated")
            if tid in state.task_index:
                raise DuplicateTaskError(f"task id {tid!r} is already in use; pick another id "
                                         "or omit it to have one generated")
        taken.add(tid)
        fresh[tid] = spec
        ids.append(tid)
    live = [i for i in range(len(specs)) if i not in existing]
    live_ids = [ids[i] for i in live]
    for i in live:
        d = specs[i].get("depends_on", ())
        if isinstance(d, (str, bytes)) or not hasattr(d, "__iter__"):
            raise InvalidSpecError(f"depends_on must be a list of task ids, got {show(d)}")
    order = topo_order(live_ids, [list(specs[i].get("depends_on", ())) for i in live])
    evs = []
    keys_seen: set[str] = set()
    for k in order:
        spec = specs[live[k]]
        fields = {f: v for f, v in spec.items() if f != "id"}
        key = fields.get("key")
        if key is not None:
            if key in keys_seen:
                raise InvalidSpecError(f"idempotency key {key!r} appears twice in one batch")
            keys_seen.add(key)
        evs.append(submitted_event(state, now, max_payload, live_ids[k], fresh, **fields))
    return ids, evs


_SIMPLE_KEYS = frozenset({"queue", "payload", "priority", "id", "max_attempts", "timeout"})


NO_IDS: frozenset[str] = frozenset()


def simple_batch(state: KernelState, max_payload: int,
                 specs: list[Any]) -> tuple[list[str], list[tuple[Any, ...]]] | None:
    """Validate a batch of plain tasks (dicts with no dependencies or optional fields) in
    one tight loop: the submit_many hot path (one task at a time, ``Scheduler.submit_hot``
    makes the same checks in C).

    Returns (ids, core arguments ``(id, queue handle, priority, max_attempts, timeout ns,
    payload JSON)`` per task), or None when any item needs the general path (which also
    produces the precise error for a bad one).  Changes nothing.
    """
    queues, tasks = state.queue_index, state.task_index
    ids: list[str] = []
    args: list[tuple[Any, ...]] = []
    taken: set[str] = set()
    dumps, fullmatch = events.dumps, ID_PATTERN.fullmatch
    n = state.sched.n_tasks
    for spec in specs:
        if type(spec) is not dict or not spec.keys() <= _SIMPLE_KEYS:
            return None
        queue = spec.get("queue")
        q = queues.get(queue) if type(queue) is str else None
        prio = spec.get("priority", 2)
        attempts = spec.get("max_attempts", 3)
        timeout = spec.get("timeout", 30.0)
        tp, tt = type(prio), type(timeout)
        if (q is None or not (tp is int or tp is Priority) or not 0 <= prio <= 1000
                or type(attempts) is not int or not 1 <= attempts <= 1_000_000
                or not (tt is float or tt is int) or not 0 < timeout <= MAX_DURATION_S):
            return None
        tid = spec.get("id")
        if tid is None:
            tid = f"t-{n + len(ids)}"      # new_id() without the collision search
            if tid in tasks or tid in taken:
                return None
        elif type(tid) is not str or tid in tasks or tid in taken or not fullmatch(tid):
            return None
        payload = spec.get("payload")
        body = b"null" if payload is None else dumps(payload)
        if len(body) > max_payload:
            return None
        taken.add(tid)
        ids.append(tid)
        args.append((tid, q, prio, attempts, round(timeout * NS), body))
    return ids, args
