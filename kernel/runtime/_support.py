"""Pieces of the handler runtime that are not the run loop (private): agent specs, the
per-attempt record, the fast task reader, executors and the runtime's own errors."""

from __future__ import annotations

import concurrent.futures as cf
import math
import multiprocessing
import os
from collections.abc import Iterable, Mapping
from typing import Any, Callable

from ._handlers import Handler
from .._codes import TERMINAL
from ..errors import InvalidSpecError, UnknownAgentError

__all__ = ["HandlerTimeoutError", "WaitTimeoutError", "AgentSlot", "Attempt", "parse_agents",
           "task_reader", "thread_pool", "process_pool", "TERMINAL", "RUNNING", "CANCELLING",
           "ABANDONED", "DONE"]


# Attempt states.  RUNNING and CANCELLING hold a lease; ABANDONED no longer does, but its
# handler may still be running (a thread cannot be interrupted; a coroutine may ignore its
# cancellation), so it keeps occupying a slot of its agent until it returns.  DONE: settled.
from ..errors import HandlerTimeoutError, WaitTimeoutError  # noqa: E402  (re-exported)

RUNNING, CANCELLING, ABANDONED, DONE = 0, 1, 2, 3


class AgentSlot:
    """The runtime's view of one agent: its capacity and what it holds right now."""

    __slots__ = ("id", "capabilities", "capacity", "held", "zombies")

    def __init__(self, agent_id: str, capabilities: tuple[str, ...], capacity: int) -> None:
        self.id = agent_id
        self.capabilities = capabilities
        self.capacity = capacity
        self.held = 0       # leases this runtime holds for the agent
        self.zombies = 0    # abandoned handlers still running (no lease, but a slot)


class Attempt:
    """One attempt the runtime is running: its lease, handler, deadline and future."""

    __slots__ = ("lease", "agent", "handler", "name", "queue", "deadline", "timeout",
                 "hb_every", "fut", "state", "error", "abandon_at", "max_attempts")

    def __init__(self, lease: Any, agent: AgentSlot, handler: Handler, name: str | None,
                 queue: str, deadline: float, timeout: float, hb_every: float, fut: Any,
                 max_attempts: int) -> None:
        self.lease = lease
        self.agent = agent
        self.handler = handler
        self.name = name
        self.queue = queue
        self.deadline = deadline
        self.timeout = timeout
        self.hb_every = hb_every
        self.fut = fut
        self.state = RUNNING
        self.error: str | None = None
        self.abandon_at = math.inf
        self.max_attempts = max_attempts


def parse_agents(kernel: Any, agents: object) -> list[AgentSlot]:
    """Turn ``agents=`` into slots, registering agents the kernel does not know yet.

    Each item is an agent id already registered with the kernel, a mapping
    ``{"id": ..., "capabilities": [...], "capacity": n}`` or a tuple
    ``(id, capabilities, capacity)``.
    """
    if isinstance(agents, (str, Mapping)) or not isinstance(agents, Iterable):
        agents = [agents]
    known = None
    slots: list[AgentSlot] = []
    to_register: list[AgentSlot] = []
    for item in agents:
        if isinstance(item, str):
            if known is None:
                known = {a.id: a for a in kernel.stats().agents}
            info = known.get(item)
            if info is None:
                raise UnknownAgentError(
                    f"agent {item!r} is not registered with the kernel: register it first, "
                    f"or pass {{'id': {item!r}, 'capabilities': [...], 'capacity': n}}")
            slot = AgentSlot(item, tuple(info.capabilities), int(info.capacity))
        else:
            if isinstance(item, Mapping):
                extra = set(item) - {"id", "capabilities", "capacity"}
                if extra or "id" not in item:
                    raise InvalidSpecError(
                        f"agent spec {dict(item)!r} must have keys 'id', 'capabilities' and "
                        f"optionally 'capacity' (unknown: {sorted(extra)})")
                aid, caps, cap = item["id"], item.get("capabilities", ()), item.get("capacity", 1)
            elif isinstance(item, tuple) and len(item) in (2, 3):
                aid, caps, cap = (*item, 1) if len(item) == 2 else item
            else:
                raise InvalidSpecError(
                    f"agent spec {item!r} is not an agent id, a mapping or an "
                    f"(id, capabilities, capacity) tuple")
            if isinstance(caps, str):
                caps = [caps]
            slot = AgentSlot(aid, tuple(caps), cap)
            to_register.append(slot)
        if any(s.id == slot.id for s in slots):
            raise InvalidSpecError(f"agent {slot.id!r} is listed twice in agents=")
        slots.append(slot)
    if not slots:
        raise InvalidSpecError("agents= is empty: a runtime needs at least one agent to claim "
                               "work as")
    for slot in to_register:  # all specs parsed: only now touch the kernel
        kernel.register_agent(slot.id, capabilities=list(slot.capabilities),
                              capacity=slot.capacity)
    return slots


def task_reader(kernel: Any) -> Callable[[Any], tuple[str | None, str, Any, int]]:
    """``read(lease) -> (name, queue, payload, max_attempts)`` for a freshly claimed lease.

    Uses :meth:`Kernel.lease_task` (about 1.5 µs) rather than ``Kernel.task``, which builds
    a full :class:`TaskView` (about 19 µs); a kernel without it falls back to ``task()``.
    """
    lease_task = getattr(kernel, "lease_task", None)
    if lease_task is None:
        def slow(lease: Any) -> tuple[str | None, str, Any, int]:
            v = kernel.task(lease.task_id)
            return v.name, v.queue, v.payload, v.max_attempts
        return slow

    def fast(lease: Any) -> tuple[str | None, str, Any, int]:
        row: tuple[str | None, str, Any, int, float] = lease_task(lease)
        return row[:4]

    return fast


def thread_pool(max_workers: int) -> cf.ThreadPoolExecutor:
    return cf.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="eskernel-handler")


def process_pool(max_workers: int | None) -> cf.ProcessPoolExecutor:
    # spawn, not fork: the runtime process has threads (the handler pool), and forking a
    # threaded process can deadlock the child.
    return cf.ProcessPoolExecutor(max_workers=max_workers or os.cpu_count() or 1,
                                  mp_context=multiprocessing.get_context("spawn"))
