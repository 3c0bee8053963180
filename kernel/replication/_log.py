"""The leader's log: an :class:`~eskernel.eventlog.EventLog` whose batches also go to
PostgreSQL (private; built by :func:`open_leader`).

What an acknowledged append (``append``/``append_many`` returned) means:

- ``ack="replicated"``: the records are in the local log (under its durability mode) *and*
  in a committed PostgreSQL row of this leader's epoch.  The caller ships them itself: each
  call is one row and one commit (concurrent callers share one).
- ``ack="local"``: the records are in the local log; a background thread ships what has
  gathered every ``ship_interval`` seconds as one row.  At most ``max_backlog`` records wait;
  beyond that, and once the lease could not be renewed for ``lease_ttl`` seconds (a standby
  may have taken over), appends raise and nothing more is acknowledged.

Invariants:

- ``_inflight + _pending`` holds exactly the records of offsets ``[_shipped,
  inner.next_offset)``, in order; only the appending side pushes ``_pending``, only the
  shipping side (under ``_ship_lock``) pops it into ``_inflight``.
- ``_shipped`` is the chain's end in records; ``_seq`` is the next row's ``batch_seq``.
- Once ``_failed`` is set (fenced, lease lost, or a failed commit in replicated mode)
  every append raises it: a deposed or cut-off leader acknowledges nothing more.
- A background thread renews the lease every ``lease_ttl / 4``; a renewal that finds
  another epoch sets ``_failed``.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import (EskernelError, InvalidSpecError, LeaderLeaseLostError,
                      ReplicationBacklogError, ReplicationError, ReplicationFencedError,
                      ReplicationUnavailableError)
from ._pg import ROW_MAX_BYTES, ROW_MAX_RECORDS, Pg, frame

log = logging.getLogger("eskernel.replication")
ACK_MODES = ("local", "replicated")


class ReplicatedLog:
    """The leader's log: appends go to the local log, then to PostgreSQL (see the module).

    Everything but appending, syncing and closing is the local log's (reads, snapshots,
    ``path``); the kernel uses it as it uses an :class:`~eskernel.eventlog.EventLog`.
    """

    def __init__(self, inner: Any, pg: Pg, bg: Pg, *, holder: str, epoch: int, seq: int,
                 ack: str, lease_ttl: float, max_backlog: int, ship_interval: float,
                 commit_timeout: float) -> None:
        self._inner = inner
        self._pg = pg
        self._bg = bg
        self.holder = holder
        self.epoch = epoch
        self.ack = ack
        self.partition = pg.partition
        self._ttl = lease_ttl
        self._max_backlog = max_backlog
        self._interval = ship_interval
        self._commit_timeout = commit_timeout
        self._seq = seq
        self._shipped: int = inner.next_offset
        self._pending: collections.deque[bytes] = collections.deque()
        self._inflight: list[bytes] = []
        self._inflight_payload = b""
        self._failed: EskernelError | None = None
        self._ship_lock = threading.Lock()
        self._lease_deadline = time.monotonic() + lease_ttl
        self._stop = threading.Event()
        self._closed = False
        self._inner_append = inner.append
        self._inner_many = inner.append_many
        self.path = inner.path
        self._thread = threading.Thread(target=self._background, daemon=True,
                                        name=f"eskernel-replication:{self.path}")
        self._thread.start()

    # -- appending ----------------------------------------------------------------------

    def _admit(self) -> None:
        if self._failed is not None:
            raise self._failed
        if self.ack == "local":
            if time.monotonic() > self._lease_deadline:
                self._fail(LeaderLeaseLostError(
                    f"the leader lease of partition {self.partition} could not be renewed "
                    f"for {self._ttl:g} s (PostgreSQL unreachable?); a standby may have taken "
                    "over, so this node acknowledges nothing more: reopen it once PostgreSQL "
                    "is back"))
                raise self._failed      # type: ignore[misc]
            if len(self._pending) + len(self._inflight) >= self._max_backlog:
                err = ReplicationBacklogError(
                    f"{self.backlog} records wait to be shipped to PostgreSQL "
                    f"(max_backlog={self._max_backlog}); it stayed away too long: bring it "
                    "back, then reopen the kernel (the local log keeps every record)")
                self._fail(err)
                raise err

    def append(self, record: bytes) -> int:
        """Append one record (see the module for what acknowledged means)."""
        self._admit()
        off: int = self._inner_append(record)
        self._pending.append(record)
        if self.ack == "replicated":
            self._ship_through(off + 1)
        return off

    def append_unsynced(self, record: bytes) -> int:
        """As :meth:`append`: a replicated log answers nothing ahead of its acknowledgement
        (the local log's early claims would bypass the chain)."""
        return self.append(record)

    @property
    def appender(self) -> Callable[[bytes], int]:
        """The append the kernel's hot calls go through: this log's own, never the local
        log's (which :meth:`__getattr__` would hand out and so skip the chain)."""
        return self.append

    def append_many(self, records: Sequence[bytes]) -> int:
        """Append a batch: one local write and (``replicated``) one PostgreSQL row."""
        self._admit()
        first: int = self._inner_many(records)
        self._pending.extend(records)
        if self.ack == "replicated":
            self._ship_through(first + len(records))
        return first

    def _fail(self, err: EskernelError) -> None:
        if self._failed is None:
            self._failed = err
            log.error("replication of %s stopped: %s", self.path, err)

    def _ship_through(self, end: int) -> None:
        # Replicated mode, on the caller's thread: ship everything pending, in one row per
        # round, until the chain holds ``end`` records.  A caller that finds its records
        # shipped by another caller's commit returns without a commit of its own.
        with self._ship_lock:
            while self._shipped < end:
                if self._failed is not None:
                    raise self._failed
                self._ship_round(self._pg)

    def _ship_round(self, pg: Pg) -> int:
        # One row: the in-flight batch (a retry), else what is pending, popped into it.
        # Records leave ``_inflight`` only once committed, so a retry ships them again.
        batch = self._inflight
        if not batch:
            pending = self._pending
            take = pending.popleft
            batch = [take() for _ in range(min(len(pending), ROW_MAX_RECORDS))]
            if not batch:
                return 0
            size = 0
            for i, rec in enumerate(batch):
                size += len(rec) + 8
                if size > ROW_MAX_BYTES and i > 0:      # the rest waits for the next row
                    pending.extendleft(reversed(batch[i:]))
                    del batch[i:]
                    break
            self._inflight = batch
            self._inflight_payload = frame(batch)
        payload = self._inflight_payload
        deadline = time.monotonic() + self._commit_timeout
        delay = 0.01
        while True:
            try:
                pg.insert(self._seq, self.epoch, self._shipped, batch, payload)
                break
            except ReplicationFencedError as err:
                self._fail(err)
                raise
            except ReplicationError as err:
                if not isinstance(err, ReplicationUnavailableError):    # not worth a retry
                    self._fail(err)
                    raise
                if time.monotonic() + delay > deadline:
                    if self.ack == "replicated":
                        self._fail(err)
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
        self._seq += 1
        self._shipped += len(batch)
        self._inflight = []
        self._inflight_payload = b""
        return len(batch)

    # -- the background thread: lease renewal, and shipping in local mode --------------

    def _background(self) -> None:
        renew_every = self._ttl / 4
        next_renew = time.monotonic() + renew_every
        outage = renew_failing = False
        while not self._stop.is_set() and self._failed is None:
            now = time.monotonic()
            if now >= next_renew:
                try:
                    if self._bg.renew(self.holder, self.epoch, self._ttl):
                        self._lease_deadline = now + self._ttl
                        next_renew = now + renew_every
                        renew_failing = False
                    else:
                        epoch, holder, _ = self._bg.leader()
                        self._fail(ReplicationFencedError(
                            f"partition {self.partition} is now led by {holder!r} at epoch "
                            f"{epoch} (this node held epoch {self.epoch}); this node was "
                            "deposed and acknowledges nothing more: stop it and follow the "
                            "new leader"))
                        return
                except ReplicationError as err:
                    if not renew_failing:
                        log.warning("renewing the leader lease of %s failed (retrying): %s",
                                    self.path, err)
                    renew_failing = True
                    next_renew = now + min(renew_every, 0.2)
            more = False
            if self.ack == "local" and (self._pending or self._inflight):
                try:
                    # One row per pass, so that renewals go on under a steady stream.
                    with self._ship_lock:
                        if self._failed is None:
                            self._ship_round(self._bg)
                    more = bool(self._pending)
                    if outage:
                        log.warning("shipping %s to PostgreSQL works again", self.path)
                        outage = False
                except ReplicationError as err:
                    if not outage:      # once per outage, not once per retry
                        log.warning("shipping %s to PostgreSQL failed (retrying): %s",
                                    self.path, err)
                    outage = True
            if not more:
                self._stop.wait(self._interval if self.ack == "local" else renew_every / 4)

    # -- the rest of the log ------------------------------------------------------------

    @property
    def next_offset(self) -> int:
        """The offset the next appended record gets."""
        n: int = self._inner.next_offset
        return n

    @property
    def shipped_offset(self) -> int:
        """Records the PostgreSQL chain holds (its end, as this leader knows it)."""
        return self._shipped

    @property
    def backlog(self) -> int:
        """Records appended locally and not yet committed in PostgreSQL."""
        return len(self._pending) + len(self._inflight)

    @property
    def failed(self) -> EskernelError | None:
        """The error that stopped replication (every append raises it), or None."""
        return self._failed

    def flush_replication(self, timeout: float = 10.0) -> None:
        """Ship everything pending now (``local`` mode drains its backlog).

        Raises:
            ReplicationError: the first error that stopped it, or PostgreSQL did not answer
                within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            if self._failed is not None:
                raise self._failed
            try:
                with self._ship_lock:
                    while self._pending or self._inflight:
                        self._ship_round(self._pg)
                return
            except ReplicationUnavailableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def sync(self) -> None:
        """Sync the local log (the PostgreSQL side is synced by its commits)."""
        self._inner.sync()

    def close(self) -> None:
        """Ship what is pending (``local`` mode, best effort), release the lease so a
        standby may take over at once, close the local log.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        try:
            if self._failed is None:
                try:
                    self.flush_replication(timeout=self._commit_timeout)
                    self._pg.release(self.holder, self.epoch)
                except ReplicationError as err:
                    log.warning("closing %s: %s; the unshipped records stay in the local log "
                                "and are shipped when it is reopened", self.path, err)
        finally:
            self._pg.close()
            self._bg.close()
            self._inner.close()

    @property
    def closed(self) -> bool:
        """Whether the local log is closed."""
        return bool(self._inner.closed)

    def __getattr__(self, name: str) -> Any:
        # Reads, snapshots, repair report, flush: the local log's.
        if name.startswith("__") or name == "_inner":
            raise AttributeError(name)
        return getattr(self._inner, name)

    def __repr__(self) -> str:
        return (f"<ReplicatedLog {str(self.path)!r} partition={self.partition} "
                f"epoch={self.epoch} ack={self.ack} shipped={self._shipped}>")


def check_ack(ack: object) -> str:
    if ack not in ACK_MODES:
        raise InvalidSpecError(f"ack must be 'local' or 'replicated', got {ack!r}; "
                               "'replicated' acknowledges only after the PostgreSQL commit")
    return str(ack)
