"""Public models: priorities, backoff policies, task specs and the read-only views returned by
the kernel.  Views are pydantic models built from already-validated state with
``model_construct`` (no re-validation on the way out).
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import InvalidSpecError

__all__ = ["Priority", "BackoffPolicy", "TaskSpec", "TaskView", "QueueStats", "AgentStats",
           "Stats", "PRIORITY_MIN", "PRIORITY_MAX"]

PRIORITY_MIN = 0
PRIORITY_MAX = 1000


class Priority(enum.IntEnum):
    """Named priority levels; any int in [0, 1000] is allowed, higher runs first.

    >>> Priority.CRITICAL > Priority.LOW
    True
    """

    LOW = 1
    NORMAL = 2
    HIGH = 3
    URGENT = 4
    CRITICAL = 5


class _Input(BaseModel):
    # A model built from the caller's input: a bad field raises InvalidSpecError (one root
    # for every error of the API), naming each field, what was wrong and the value given.
    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']} "
                f"(got {e['input']!r:.80})" if "input" in e else
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
            raise InvalidSpecError(f"{type(self).__name__} is invalid: {problems}") from None


class BackoffPolicy(_Input):
    """Exponential backoff between attempts: ``min(max, initial * factor**(attempt-1))``,
    reduced by up to ``jitter`` (a fraction in [0, 1]) drawn from the kernel's seeded RNG.

    >>> BackoffPolicy(initial=0.5, factor=2.0, max=10.0).initial
    0.5
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    initial: float = Field(1.0, ge=0, le=1e9, allow_inf_nan=False)
    factor: float = Field(2.0, ge=1.0, le=1e6, allow_inf_nan=False)
    max: float = Field(60.0, ge=0, le=1e9, allow_inf_nan=False)
    jitter: float = Field(0.0, ge=0.0, le=1.0, allow_inf_nan=False)


class TaskSpec(_Input):
    """A task to submit, for :meth:`Kernel.submit_many` (plain dicts with the same keys work).

    >>> TaskSpec(queue="render", payload={"frame": 1}, priority=Priority.HIGH).priority
    3
    >>> try:
    ...     TaskSpec(queue="render", priority="x")
    ... except InvalidSpecError as err:
    ...     print(str(err)[:48])
    TaskSpec is invalid: priority: Input should be a
    """

    model_config = ConfigDict(extra="forbid")
    queue: str
    payload: Any = None
    id: str | None = None
    name: str | None = None
    priority: int = int(Priority.NORMAL)
    depends_on: list[str] = Field(default_factory=list)
    max_attempts: int = 3
    timeout: float = 30.0
    backoff: BackoffPolicy | None = None
    delay: float | None = None
    not_before: float | None = None
    agent: str | None = None
    tags: dict[str, Any] | None = None
    key: str | None = None
    parent: str | None = None


class TaskView(BaseModel):
    """One task's state as the kernel holds it.  Times are seconds since the epoch."""

    id: str
    queue: str
    name: str | None
    status: str
    priority: int
    attempts: int
    max_attempts: int
    timeout: float
    payload: Any
    result: Any
    error: str | None
    agent: str | None
    lease_id: int | None
    expires_at: float | None
    submitted_at: float
    started_at: float | None
    finished_at: float | None
    due_at: float | None
    depends_on: list[str]
    tags: dict[str, Any] | None
    key: str | None
    parent: str | None
    dead_lettered: bool
    cancelled_upstream: bool


class QueueStats(BaseModel):
    """A queue's limits and current load."""

    name: str
    max_concurrent: int
    paused: bool
    ready: int
    running: int
    counts: dict[str, int]


class AgentStats(BaseModel):
    """An agent's capabilities, capacity and the leases it holds."""

    id: str
    capabilities: list[str]
    capacity: int
    online: bool
    active: int
    leases: list[dict[str, Any]]


class Stats(BaseModel):
    """System status: counts by status and priority, queues, agents, and log position."""

    counts: dict[str, int]
    by_priority: dict[int, dict[str, int]]
    queues: list[QueueStats]
    agents: list[AgentStats]
    tasks: int
    events: int
