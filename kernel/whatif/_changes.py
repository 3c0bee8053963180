"""What-if changes: ``kind.name.field=value`` strings, checked against a recorded workload.

Settable (each holds for the whole simulated history):

==========================================  =============================================
``queue.Q.max_concurrent=N``                N >= 0 (0 = unlimited) for every declaration
``queue.Q.paused=true|false``               the queue's paused flag; recorded pauses and
                                            resumes of Q are not replayed
``agent.A.capacity=N``                      N >= 0; 0 = the agent never comes online
``agent.A.capabilities=q1+q2``              the queues the agent serves
``agent.A.online=true|false``               always online (recorded offline periods are not
                                            replayed) or never online
``agent.A=capabilities:q1+q2,capacity:N``   a new agent (or a new spec for a recorded one),
                                            registered once its queues exist
``task.SEL.priority=P``                     P in 0..1000 or LOW, NORMAL, HIGH, URGENT,
                                            CRITICAL; SEL is a task name, a queue or a task
                                            id (``name:SEL``, ``queue:SEL``, ``id:SEL`` say
                                            which)
==========================================  =============================================

>>> from eskernel.whatif import Changes
>>> Changes.parse(["queue.encode.max_concurrent=8"], queues={"encode"}, agents=set(),
...               names=set(), tasks=set()).queues
{'encode': {'max_concurrent': 8}}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from .._validate import ID_PATTERN
from ..errors import WhatIfChangeError
from ..models import PRIORITY_MAX, PRIORITY_MIN, Priority

__all__ = ["Changes", "settable"]

QUEUE_FIELDS = ("max_concurrent", "paused")
AGENT_FIELDS = ("capacity", "capabilities", "online")
TASK_FIELDS = ("priority",)
#: Policies the kernel has no rule for yet: named in errors so a caller knows they are
#: not a typo but not supported.
NOT_YET = ("rate limits", "resources", "concurrency keys", "tenant weights", "timeouts",
           "max_attempts", "backoff")
_MAX_INT = 2**31 - 1


def settable(queues: Iterable[str], agents: Iterable[str]) -> tuple[str, ...]:
    """Every setting a workload with these queues and agents allows (for error messages)."""
    out = [f"queue.{q}.{f}" for q in sorted(queues) for f in QUEUE_FIELDS]
    out += [f"agent.{a}.{f}" for a in sorted(agents) for f in AGENT_FIELDS]
    out += ["agent.NEW=capabilities:Q1+Q2,capacity:N", "task.NAME|QUEUE|ID.priority"]
    return tuple(out)


@dataclasses.dataclass
class Changes:
    """Checked changes: per queue and per agent field overrides, new agent specs, and task
    priorities by selector kind (``name`` / ``queue`` / ``id``)."""

    queues: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    agents: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    new_agents: dict[str, tuple[tuple[str, ...], int]] = dataclasses.field(default_factory=dict)
    priority: dict[tuple[str, str], int] = dataclasses.field(default_factory=dict)
    given: list[str] = dataclasses.field(default_factory=list)

    @classmethod
    def parse(cls, changes: Iterable[str] | Mapping[str, Any], *, queues: set[str],
              agents: set[str], names: set[str], tasks: set[str]) -> "Changes":
        """Check ``changes`` (strings ``key=value``, or a mapping key -> value) against a
        workload's queues, agents, task names and task ids.

        Raises:
            WhatIfChangeError: malformed, unknown target or field, or a bad value; the
                message and ``.settable`` list what can be set.
        """
        ctx = _Ctx(queues, agents, names, tasks)
        if isinstance(changes, (str, bytes)):
            raise ctx.err(str(changes), "changes must be a list of 'key=value' strings or a "
                                        "mapping, not one string; wrap it in a list")
        if isinstance(changes, Mapping):
            pairs = [(str(k), v if isinstance(v, str) else _text(v)) for k, v in changes.items()]
        else:
            pairs = []
            for c in changes:
                if not isinstance(c, str) or "=" not in c:
                    raise ctx.err(str(c), "not of the form key=value (e.g. "
                                          "queue.encode.max_concurrent=8)")
                k, v = c.split("=", 1)
                pairs.append((k.strip(), v.strip()))
        out = cls()
        for key, value in pairs:
            ctx.apply(out, key, value)
            out.given.append(f"{key}={value}")
        return out


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "+".join(str(x) for x in v)
    if isinstance(v, Mapping):
        return ",".join(f"{k}:{_text(x)}" for k, x in v.items())
    return str(v)


class _Ctx:
    def __init__(self, queues: set[str], agents: set[str], names: set[str],
                 tasks: set[str]) -> None:
        self.queues, self.agents, self.names, self.tasks = queues, agents, names, tasks

    def err(self, change: str, why: str) -> WhatIfChangeError:
        can = settable(self.queues, self.agents)
        shown = ", ".join(can[:24]) + (f", ... ({len(can)} in all)" if len(can) > 24 else "")
        return WhatIfChangeError(
            f"change {change!r:.120}: {why}; settable: {shown} (not yet settable: "
            f"{', '.join(NOT_YET)})", change=change, settable=can)

    def apply(self, out: Changes, key: str, value: str) -> None:
        change = f"{key}={value}"
        kind, _, rest = key.partition(".")
        if kind not in ("queue", "agent", "task") or not rest:
            raise self.err(change, f"unknown kind {kind!r}: a change starts with queue., "
                                   "agent. or task.")
        name, _, field = rest.rpartition(".")
        if kind == "agent" and (not name or field not in AGENT_FIELDS):
            name, field = rest, ""                  # agent.A=capabilities:...,capacity:N
        if not name:
            raise self.err(change, f"no {kind} named: write {kind}.NAME.FIELD=VALUE")
        if kind == "queue":
            if name not in self.queues:
                raise self.err(change, f"the log has no queue {name!r} (queues: "
                                       f"{', '.join(sorted(self.queues)) or 'none'})")
            if field not in QUEUE_FIELDS:
                raise self.err(change, f"a queue has no setting {field!r}")
            out.queues.setdefault(name, {})[field] = (
                self.count(change, value, 0) if field == "max_concurrent"
                else self.flag(change, value))
        elif kind == "agent":
            self.agent(out, change, name, field, value)
        else:
            if field not in TASK_FIELDS:
                raise self.err(change, f"a task has no setting {field!r}")
            out.priority[self.selector(change, name)] = self.priority(change, value)

    def agent(self, out: Changes, change: str, name: str, field: str, value: str) -> None:
        if not field:
            owner, _, attr = name.rpartition(".")
            if owner in self.agents and ":" not in value:
                raise self.err(change, f"an agent has no setting {attr!r}")
            if not ID_PATTERN.fullmatch(name):
                raise self.err(change, f"{name!r} is not a valid agent id")
            spec: dict[str, str] = {}
            for part in value.split(","):
                k, sep, v = part.partition(":")
                if not sep or k.strip() not in ("capabilities", "capacity"):
                    raise self.err(change, f"{part!r} is not capabilities:Q1+Q2 or capacity:N")
                spec[k.strip()] = v.strip()
            if "capabilities" not in spec:
                raise self.err(change, "a new agent needs capabilities:Q1+Q2")
            caps = self.caps(change, spec["capabilities"])
            cap = self.count(change, spec.get("capacity", "1"), 1)
            out.new_agents[name] = (caps, cap)
            return
        if name not in self.agents:
            raise self.err(change, f"the log has no agent {name!r} (agents: "
                                   f"{', '.join(sorted(self.agents)) or 'none'}); add one "
                                   f"with agent.{name}=capabilities:Q,capacity:N")
        fields = out.agents.setdefault(name, {})
        if field == "capacity":
            fields[field] = self.count(change, value, 0)
        elif field == "capabilities":
            fields[field] = self.caps(change, value)
        else:
            fields[field] = self.flag(change, value)

    def count(self, change: str, value: str, lo: int) -> int:
        try:
            n = int(value)
        except ValueError:
            raise self.err(change, f"{value!r} is not an integer") from None
        if not lo <= n <= _MAX_INT:
            raise self.err(change, f"{n} is out of range: pass {lo}..{_MAX_INT}")
        return n

    def flag(self, change: str, value: str) -> bool:
        v = value.lower()
        if v not in ("true", "false", "1", "0", "yes", "no"):
            raise self.err(change, f"{value!r} is not true or false")
        return v in ("true", "1", "yes")

    def caps(self, change: str, value: str) -> tuple[str, ...]:
        caps = tuple(c.strip() for c in value.split("+") if c.strip())
        if not caps:
            raise self.err(change, "capabilities is empty: name at least one queue")
        bad = [c for c in caps if c not in self.queues]
        if bad:
            raise self.err(change, f"capabilities name unknown queue(s) {bad} (queues: "
                                   f"{', '.join(sorted(self.queues))})")
        return caps

    def priority(self, change: str, value: str) -> int:
        if value.upper() in Priority.__members__:
            return int(Priority[value.upper()])
        try:
            p = int(value)
        except ValueError:
            raise self.err(change, f"{value!r} is not a priority (an integer "
                                   f"{PRIORITY_MIN}..{PRIORITY_MAX} or one of "
                                   f"{', '.join(Priority.__members__)})") from None
        if not PRIORITY_MIN <= p <= PRIORITY_MAX:
            raise self.err(change, f"priority {p} is out of range {PRIORITY_MIN}..{PRIORITY_MAX}")
        return p

    def selector(self, change: str, sel: str) -> tuple[str, str]:
        for prefix, pool in (("name", self.names), ("queue", self.queues), ("id", self.tasks)):
            if sel.startswith(prefix + ":"):
                value = sel[len(prefix) + 1:]
                if value not in pool:
                    raise self.err(change, f"no task has {prefix} {value!r}")
                return prefix, value
        hits = [p for p, pool in (("name", self.names), ("queue", self.queues),
                                  ("id", self.tasks)) if sel in pool]
        if not hits:
            raise self.err(change, f"{sel!r} is neither a task name, a queue nor a task id "
                                   "in the log")
        if len(hits) > 1:
            raise self.err(change, f"{sel!r} is a task {' and a task '.join(hits)}: write "
                                   f"task.{hits[0]}:{sel}.priority or "
                                   f"task.{hits[1]}:{sel}.priority")
        return hits[0], sel
