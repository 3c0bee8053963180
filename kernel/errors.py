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
    "SnapshotCorruptError", "WhatIfChangeError", "ReplicationError",
    "ReplicationUnavailableError",
    "ReplicationBacklogError", "ReplicationFencedError", "LeaderLeaseLostError",
    "NotLeaderError", "ReplicationDivergedError", "ReplicationCorruptError",
    "DaskUnavailableError",
    "WorkflowSpecError", "WorkflowCycleError", "DuplicateStepError", "UnknownOperatorError",
    "MissingMaxIterationsError", "UnknownFieldError", "EmptyGroupError",
    "UnknownWorkflowError",
    "ServiceError", "ProtocolError", "AuthenticationError", "PermissionDeniedError",
    "ServerBusyError", "ServiceUnavailableError",
]


class InvalidSpecError(InvalidArgumentError):
    """A task, queue or agent specification (or an argument) is invalid."""


class DuplicateTaskError(InvalidSpecError):
    """A task id is already in use; pick another id or let the kernel generate one."""


class DependencyError(InvalidSpecError):
    """A dependency is impossible: a cycle, a self-dependency, or an upstream task that
    already FAILED or was CANCELLED."""


class WhatIfChangeError(InvalidSpecError):
    """A what-if change (``eskernel whatif --set``) is malformed, names a queue, agent or
    task the recorded log does not hold, sets a field that cannot be set, or holds a value
    out of range.  The message lists what can be set; nothing was simulated or written.

    Attributes:
        change: the change as given (e.g. ``"queue.encode.max_concurrent=8"``).
        settable: the settings the log allows, e.g. ``["queue.encode.max_concurrent", ...]``.
    """

    def __init__(self, message: str, *, change: str = "",
                 settable: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.change = change
        self.settable = settable


class WorkflowSpecError(InvalidSpecError):
    """A workflow definition is invalid; the subclass says how.  Raised when the definition
    is built or started: nothing is written."""


class WorkflowCycleError(WorkflowSpecError):
    """A group step contains itself, directly or through other groups; or a step is placed
    in two groups.  Each step has one place in the tree."""


class DuplicateStepError(WorkflowSpecError):
    """Two steps of one workflow share a name; step names are unique in a workflow."""


class UnknownOperatorError(WorkflowSpecError):
    """A condition names an operator the workflow engine does not know."""


class MissingMaxIterationsError(WorkflowSpecError):
    """A loop step has no ``max_iterations``: every loop needs a bound."""


class UnknownFieldError(WorkflowSpecError):
    """A condition reads a context field that nothing provides (not in the initial
    context, not a step's result, not a declared output) and gives no ``default``."""


class EmptyGroupError(WorkflowSpecError):
    """A parallel or sequential group (or a conditional's ``then`` branch, or a loop's
    body) has no steps."""


class NotFoundError(EskernelError, LookupError):
    """Something named by id does not exist."""


class UnknownTaskError(NotFoundError):
    """No task has this id."""


class UnknownQueueError(NotFoundError):
    """No queue has this name; declare it with ``Kernel.declare_queue`` first."""


class UnknownAgentError(NotFoundError):
    """No agent has this id; register it with ``Kernel.register_agent`` first."""


class UnknownWorkflowError(NotFoundError):
    """No workflow has this id; start one with ``Kernel.start_workflow`` first."""


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


class ReplicationError(LogWriteError):
    """Replication to PostgreSQL (:mod:`eskernel.replication`) failed.  Raised from an append,
    it poisons the kernel like any failed append: reopen it (``Kernel.open`` reconciles the
    local log with PostgreSQL first)."""


class ReplicationUnavailableError(ReplicationError):
    """PostgreSQL could not be reached, or did not confirm a commit, within the time allowed.
    In ``ack="replicated"`` mode the append that raised it was not acknowledged; it is in the
    local log and is shipped when the kernel is reopened with PostgreSQL back."""


class ReplicationBacklogError(ReplicationUnavailableError):
    """``ack="local"`` mode: more records wait to be shipped than ``max_backlog`` allows,
    because PostgreSQL stayed away; bring it back, then reopen the kernel."""


class ReplicationFencedError(ReplicationError):
    """This node was deposed: another node raised the epoch in PostgreSQL (a standby was
    promoted) or wrote the next batch.  Nothing more is acknowledged here; stop this node and
    follow the new leader (``eskernel restore`` rebuilds this directory from PostgreSQL)."""


class LeaderLeaseLostError(ReplicationFencedError):
    """``ack="local"`` mode: the leader could not renew its lease in PostgreSQL within the
    lease's time to live, so a standby may have taken over; this node stops acknowledging."""


class NotLeaderError(ReplicationError):
    """Another node holds the leader lease in PostgreSQL and it has not lapsed; wait for it
    to lapse (``lease_wait=``), stop the other node, or open this directory as a standby."""


class ReplicationDivergedError(ReplicationError):
    """The local log and the log in PostgreSQL differ at the same offset: this directory
    holds records of a deposed leader that never reached PostgreSQL.  Rebuild it from
    PostgreSQL (``eskernel restore DSN DIR`` into a new directory)."""


class ReplicationCorruptError(ReplicationError):
    """A batch read from PostgreSQL fails its checksum, its framing or the chain's
    contiguity; nothing of it was applied.  Restore that row from a backup of the database."""


class DaskUnavailableError(InvalidSpecError):
    """A handler asked for the Dask executor but ``dask.distributed`` is not installed or no
    client was given: ``pip install 'eskernel[dask]'`` and pass ``DaskExecutor(client)``."""


class ServiceError(EskernelError):
    """A failure of the network service (``eskernel serve``) or of talking to it."""


class ProtocolError(ServiceError, ValueError):
    """A frame or message broke the wire protocol (``docs/protocol.md``): bad magic or
    version, a frame over the size limit, undecodable bytes, an unknown message type or
    malformed arguments.  Fix the client; the server closes the connection after a framing
    error."""


class AuthenticationError(ServiceError):
    """The server did not accept the credentials of the handshake; check the token."""


class PermissionDeniedError(ServiceError):
    """The session's role (producer, worker, admin) or agent ids do not allow this call;
    use a token bound to a role that may make it."""


class ServerBusyError(ServiceError):
    """The server is saturated (connections, requests in flight) or draining; nothing was
    done.  Retry after ``retry_after`` seconds.

    Attributes:
        retry_after: seconds to wait before retrying.
    """

    def __init__(self, message: str, retry_after: float = 0.1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServiceUnavailableError(ServiceError, ConnectionError):
    """The server could not be reached (or the connection was lost) and reconnecting gave
    up; start the server or check the address.  A request that got no answer may or may
    not have been applied: retry it through a client with the same ``client_id``."""
