"""The core's vocabularies under Python names: task statuses, claim refusals, row fields.

The values are the core's (``_native/common.pxi``); ``tests/test_codes.py`` holds every
name here equal to the one the core exports, so neither side can drift from the other.
Plain ints, not enum members, where a hot path indexes with them.
"""

from __future__ import annotations

import enum

from ._core import CHOOSE_CODES, STATUS_NAMES, TASK_FLAGS


class Status(enum.IntEnum):
    """A task's status code, as the core stores it."""
    PENDING = 0
    READY = 1
    RUNNING = 2
    RETRYING = 3
    COMPLETED = 4
    FAILED = 5
    CANCELLED = 6


#: Names in code order, as ``Kernel.tasks(status=...)`` and the views spell them.
STATUSES: tuple[str, ...] = STATUS_NAMES
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
#: Statuses a task that can no longer run ends in (a dependency in one cancels dependents).
DEAD = frozenset({"FAILED", "CANCELLED"})
DEAD_CODES = frozenset({int(Status.FAILED), int(Status.CANCELLED)})
TERMINAL_CODES = frozenset({int(Status.COMPLETED), int(Status.FAILED), int(Status.CANCELLED)})

# Scheduler.choose() / claim() answers besides a handle or a lease.
CHOOSE_OFFLINE: int = CHOOSE_CODES["OFFLINE"]
CHOOSE_AT_CAPACITY: int = CHOOSE_CODES["AT_CAPACITY"]

# Task flags.
FLAG_DEAD: int = TASK_FLAGS["DEAD"]
FLAG_UPSTREAM: int = TASK_FLAGS["UPSTREAM"]

# Positions in Scheduler.task_row(h).
(ROW_STATUS, ROW_ATTEMPTS, ROW_MAX_ATTEMPTS, ROW_QUEUE, ROW_PRIO, ROW_PINNED, ROW_LAST_AGENT,
 ROW_LEASE_ID, ROW_EXPIRES, ROW_SUBMITTED, ROW_STARTED, ROW_FINISHED, ROW_DUE, ROW_FLAGS,
 ROW_UNMET) = range(15)
