"""Replication of a kernel's log to PostgreSQL, a warm standby, and restore.

The leader ships each group-commit batch of its log (one ``append``/``append_many`` call,
or in ``ack="local"`` mode what gathered since the last shipment) to PostgreSQL as one row
under a contiguous, leader-assigned ``batch_seq`` and its epoch; a stale writer's row
collides with the primary key or fails the epoch check, which fences it.  Turn it on with
``Kernel.open(dir, replicate="postgresql://...", ack="local" | "replicated")``:

- ``ack="local"``: an append is acknowledged once in the local log, as without
  replication; a background thread ships the batches.
- ``ack="replicated"``: an append is acknowledged only after the PostgreSQL commit that
  holds it.  Zero loss across machines needs PostgreSQL's own synchronous replication.

Other options of ``Kernel.open``: ``partition`` (the chain; several kernels can share a
database), ``lease_ttl`` (seconds the leader lease lasts unless renewed; renewed every
quarter of it), ``lease_wait`` (seconds to wait for another holder's lease to lapse),
``holder`` (this node's name; default host name and directory: a node reopening the
directory it led takes the lease back at once, its directory lock proving the old process
gone, so nodes that share a host name and path, as containers may, need distinct names), ``max_backlog`` (records that
may wait to be shipped in ``local`` mode), ``ship_interval``, ``commit_timeout`` (seconds
a commit is retried before the append fails), ``connect_timeout``.

A :class:`Standby` follows the chain into its own directory and warm state and
:meth:`Standby.promote` makes it the leader once the lease lapsed; :func:`restore` writes
the chain into a directory that every reader of a log can then read.

Execution stays at-least-once across a failover: a handler may run again on the new
leader's lease; a completion is accepted once, under the current lease.

The epoch lives in the rows and the lease row, not in the log's events: a new leader
continues the lease ids of the state it replayed.  With ``ack="replicated"`` every lease a
worker was told of is in the chain, so the new leader never issues it again.  With
``ack="local"`` a lease granted by the old leader after its last shipped row can be issued
again, for the same task, by the new one; lease ids that carry the epoch (the core's
integration point: the epoch of :attr:`ReplicatedLog.epoch` recorded in the log) close that.
"""

from ._leader import LEADER_OPTIONS as LEADER_OPTIONS
from ._log import ReplicatedLog as ReplicatedLog
from ._standby import Standby as Standby, restore as restore

__all__ = ["LEADER_OPTIONS", "ReplicatedLog", "Standby", "restore"]
