"""The kernel's branch of eskernel's error hierarchy, and the one place to import errors from.

Every class derives from :class:`EskernelError`.  Branches are named by who must act:

* caller mistakes — :class:`InvalidSpecError` (also a ``ValueError``), the ``Unknown*Error``
  family (also ``LookupError``), :class:`DuplicateTaskError`, :class:`DependencyError`;
* state conflicts — :class:`StaleLeaseError`, :class:`AgentOfflineError`,
  :class:`AgentAtCapacityError`, :class:`InvalidStateError`;
* storage — the ``Log*Error`` classes re-exported from :mod:`eskernel.eventlog.errors`,
  :class:`LogRecordInvalidError` for a record that passes its checksum but means nothing,
  and :class:`KernelFailedError` once an append failed;
* bugs — :class:`KernelInternalError`.

A rejected call changes nothing and writes no event.

>>> issubclass(UnknownTaskError, LookupError) and issubclass(UnknownTaskError, EskernelError)
True
"""

from __future__ import annotations

from eskernel.eventlog.errors import (
    EskernelError,
    InvalidArgumentError,
    LogClosedError,
    LogCorruptError,
    LogError,
    LogFailedError,
    LogLockedError,
    LogNotFoundError,
    LogReadOnlyError,
    LogWriteError,
    RecordTypeError,
)

__all__ = [
    "EskernelError", "InvalidArgumentError", "InvalidSpecError", "DuplicateTaskError",
    "DependencyError", "NotFoundError", "UnknownTaskError", "UnknownQueueError",
    "UnknownAgentError", "ConflictError", "StaleLeaseError", "LeaseExpiredError",
    "AgentOfflineError",
    "AgentAtCapacityError", "InvalidStateError", "KernelClosedError", "KernelFailedError",
    "KernelInternalError", "HandlerTimeoutError", "NonRetryableError", "WaitTimeoutError",
    "LogError",
    "LogClosedError", "LogCorruptError", "LogRecordInvalidError", "LogFailedError",
    "LogLockedError", "LogNotFoundError", "LogReadOnlyError", "LogWriteError",
    "RecordTypeError",
    "SnapshotCorruptError",
]


class InvalidSpecError(InvalidArgumentError):
    """A task, queue or agent specification (or an argument) is invalid."""


class DuplicateTaskError(InvalidSpecError):
    """A task id is already in use; pick another id or let the kernel generate one."""


class DependencyError(InvalidSpecError):
    """A dependency is impossible: a cycle, a self-dependency, or an upstream task that
    already FAILED or was CANCELLED."""


class NotFoundError(EskernelError, LookupError):
    """Something named by id does not exist."""


class UnknownTaskError(NotFoundError):
    """No task has this id."""


class UnknownQueueError(NotFoundError):
    """No queue has this name; declare it with ``Kernel.declare_queue`` first."""


class UnknownAgentError(NotFoundError):
    """No agent has this id; register it with ``Kernel.register_agent`` first."""


class ConflictError(EskernelError):
    """The call is well-formed but the current state does not allow it."""


class StaleLeaseError(ConflictError):
    """The lease is no longer current (it expired, was released, or its task was cancelled
    or re-leased).  Stop working on the task and do not report its result."""


class LeaseExpiredError(StaleLeaseError):
    """The lease's expiry is past by the kernel's clock (whether or not ``tick()`` has run
    yet): the attempt is over and the task will be retried.  Stop working on it."""


class AgentOfflineError(ConflictError):
    """The agent is marked offline; bring it back with ``Kernel.agent_online``."""


class AgentAtCapacityError(ConflictError):
    """The agent already holds as many leases as its capacity; finish one first."""


class InvalidStateError(ConflictError):
    """The task's status does not allow this call (e.g. cancelling a COMPLETED task)."""


class NonRetryableError(EskernelError):
    """Raise it (or a subclass) from a handler to fail the task at once, without retries:
    the task is dead-lettered whatever attempts it has left.  The message is recorded as the
    attempt's error.  (A handler may also name its own exception types non-retryable with
    ``Runtime.register(..., non_retryable=(ValueError,))``.)"""


class HandlerTimeoutError(EskernelError, TimeoutError):
    """An attempt overran its task's timeout.  The runtime records it (by name, with a
    message naming the task, the handler and the timeout) as the attempt's error; the task
    is retried per its backoff policy, or dead-lettered when its attempts are used up."""


class WaitTimeoutError(EskernelError, TimeoutError):
    """``Runtime.wait`` (or ``run_until_idle(timeout=...)``) gave up before the tasks
    finished.  The tasks keep running; wait again, or cancel them with ``Kernel.cancel``."""


class KernelClosedError(EskernelError):
    """The kernel was closed; open it again."""


class KernelFailedError(LogWriteError):
    """An append to the log failed; the kernel refuses further calls until it is reopened,
    which replays the log to its last durable event."""


class LogRecordInvalidError(LogCorruptError):
    """A record passes its checksum but is not a valid event for the state before it: an
    unknown type or schema version, a field of the wrong type or out of range, a reference
    to a task, queue, agent or lease that does not exist, or a transition the task's status
    does not allow.  Nothing of the log was applied: the kernel is not opened.

    Attributes:
        segment: path of the segment file holding the record (``""`` for an in-memory log).
        offset: byte offset of the record's frame inside that file.
        log_offset: the record's offset in the log (its event number).
        record_type: the event type the record names, or ``None`` when it has none.
    """

    def __init__(self, message: str, *, segment: str, offset: int, log_offset: int,
                 record_type: str | None) -> None:
        super().__init__(message, segment=segment, offset=offset)
        self.log_offset = log_offset
        self.record_type = record_type


class KernelInternalError(EskernelError):
    """An invariant of eskernel broke: this is a bug in eskernel; please report it with
    the log."""


class SnapshotCorruptError(LogError):
    """A snapshot file failed a check (format, checksum, hash, bounds or consistency).

    Opening never raises it: the snapshot is passed over with a warning and the log replayed
    (the log, not a snapshot, is the truth); ``eskernel verify`` reports it as a finding.
    Delete the file, or run ``eskernel snapshot DIR`` to write a fresh one.
    """
