"""A standby: follows a partition's chain into its own log and a warm kernel state, and
takes over when the leader's lease lapses (private; exported by :mod:`eskernel.replication`).

Invariants:

- The local log's records are a prefix of the chain's; ``_state`` is the replay of exactly
  the local log (``_state.applied == local next_offset``), advanced one whole row at a time,
  so between calls the state is the leader's at a batch boundary.
- Rows are applied through the same checks and transitions opening a directory uses
  (``_replay_into``): a row that does not replay stops the standby with the record named.
- :meth:`Standby.promote` raises the epoch only once the lease lapsed; that update waits for
  any commit of the old epoch in flight (share lock), so reading the chain to its end
  afterwards sees every row the old leader ever committed, and the barrier row follows it.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Any

from ..errors import (InvalidSpecError, KernelClosedError, NotLeaderError,
                      ReplicationUnavailableError)
from ._chain import FETCH_ROWS, apply_rows, default_holder, start_after
from ._leader import check_holder, check_shipping
from ._log import ReplicatedLog, check_ack
from ._pg import Pg, Row, check_dsn, check_partition, check_seconds

if TYPE_CHECKING:
    from .._kernel import Kernel


class Standby:
    """Follow the chain of ``partition`` in PostgreSQL at ``dsn`` into directory ``path``.

    Opening replays the local log (snapshot, then tail) and catches up with the chain;
    :meth:`poll` applies rows that arrived since, :meth:`follow` polls on a thread of its
    own, :meth:`promote` makes this node the leader and returns a writable kernel.

    Args:
        path: the standby's own log directory (created if missing).
        dsn: a libpq connection string or ``postgresql://`` URI.
        partition: the chain to follow.
        durability: the local log's durability mode.
        holder: the name this node takes the lease under (default: host and directory).

    Raises:
        InvalidSpecError: a bad argument.
        ReplicationDivergedError: the local log holds records the chain does not.
        ReplicationUnavailableError: PostgreSQL could not be reached.
        LogLockedError: another process holds the directory.

    Cost: one indexed query per :meth:`poll`, returning up to 64 rows.
    """

    def __init__(self, path: str | os.PathLike[str], dsn: str, *, partition: int = 0,
                 durability: str = "write", holder: str | None = None,
                 connect_timeout: float = 5.0, **log_options: Any) -> None:
        from eskernel.eventlog import EventLog

        from .._replay import _load_snapshot, _replay_into
        self._dsn = check_dsn(dsn, "the DSN")
        part = check_partition(partition)
        check_seconds("connect_timeout", connect_timeout, 0.1, 3600.0)
        self._replay = _replay_into
        self._log = EventLog.open(path, durability=durability, **log_options)
        self._closed = False
        self._promoted = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.error: BaseException | None = None
        try:
            self.holder = check_holder(holder, self._log.path)
            self._pg = Pg(self._dsn, part, connect_timeout=connect_timeout)
            self._pg.ensure_schema()
            end = self._log.next_offset
            self._state = _load_snapshot(self._log, end, remove_beyond=True)
            _replay_into(self._state, self._log, end)
            self._end, self._seq = start_after(self._pg, self._log, end)
            self._epoch = 0
            self._apply_local()
            self.catch_up()
        except BaseException:
            self._log.close()
            raise

    @property
    def partition(self) -> int:
        """The chain followed."""
        return self._pg.partition

    @property
    def offset(self) -> int:
        """Records applied (the local log's length)."""
        return self._end

    @property
    def batch_seq(self) -> int:
        """The last row applied (-1 before the first)."""
        return self._seq

    @property
    def epoch(self) -> int:
        """The epoch of the last row applied."""
        return self._epoch

    def digest(self) -> str:
        """The digest of the warm state (equal to the leader's at the same offset)."""
        with self._lock:
            return self._state.digest()

    def _check_open(self) -> None:
        if self._closed or self._promoted:
            raise KernelClosedError("this standby was closed or promoted; open a new one")

    def _apply_local(self) -> None:
        # Apply what the local log holds beyond the state: a row's records, once appended.
        self._replay(self._state, self._log, self._log.next_offset)

    def poll(self, max_rows: int = FETCH_ROWS) -> int:
        """Apply the rows committed since the last poll (at most ``max_rows``); returns the
        number of rows applied.

        Raises:
            ReplicationCorruptError: a row is damaged or the chain has a gap.
            ReplicationUnavailableError: PostgreSQL could not be reached.
            LogRecordInvalidError: a record does not replay.
        """
        self._check_open()
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
            raise InvalidSpecError(f"max_rows must be an int >= 1, got {max_rows!r}")
        rows = self._pg.fetch(self._seq, max_rows)
        if not rows:
            return 0

        def sink(row: Row, records: list[bytes]) -> None:
            if records:
                self._log.append_many(records)
            self._epoch = row.epoch

        with self._lock:
            self._end, self._seq = apply_rows(self._pg, rows, self._end, self._seq, sink)
            self._apply_local()
        return len(rows)

    def catch_up(self) -> int:
        """Poll until the chain's end as it stood; returns the rows applied."""
        total = 0
        while (n := self.poll()) > 0:
            total += n
        return total

    def leader(self) -> dict[str, Any]:
        """The lease row: ``{"epoch", "holder", "lease_left"}`` (seconds; < 0 once lapsed)."""
        self._check_open()
        epoch, holder, left = self._pg.leader()
        return {"epoch": epoch, "holder": holder, "lease_left": left}

    def lag(self) -> dict[str, int]:
        """``{"batches": rows behind, "records": records behind}`` the chain's end now."""
        self._check_open()
        tail = self._pg.tail()
        if tail is None:
            return {"batches": 0, "records": 0}
        return {"batches": tail.batch_seq - self._seq,
                "records": tail.first_offset + tail.record_count - self._end}

    def follow(self, interval: float = 0.005) -> None:
        """Poll on a background thread every ``interval`` seconds (immediately again while
        rows arrive) until :meth:`stop`, :meth:`promote` or :meth:`close`.  PostgreSQL out of
        reach is retried (the error is in :attr:`error` meanwhile); any other error stops
        the thread and stays in :attr:`error`."""
        self._check_open()
        check_seconds("interval", interval, 0.0001, 60.0)
        if self._thread is not None:
            return
        self._stop.clear()

        def run() -> None:
            while not self._stop.is_set():
                try:
                    n = self.poll()
                    self.error = None
                except ReplicationUnavailableError as err:     # a blip: keep trying
                    self.error = err
                    n = 0
                    self._stop.wait(min(1.0, max(interval, 0.1)))
                except BaseException as err:   # kept for the owner; the thread ends
                    self.error = err
                    return
                if n == 0:
                    self._stop.wait(interval)

        self._thread = threading.Thread(target=run, daemon=True,
                                        name=f"eskernel-standby:{self._log.path}")
        self._thread.start()

    def stop(self) -> None:
        """Stop the :meth:`follow` thread (the standby stays open)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def promote(self, *, wait: float = 0.0, ack: str = "replicated", lease_ttl: float = 10.0,
                clock: Any = None, seed: int = 0, snapshot_every: int = 100_000,
                snapshot_keep: int = 2, snapshot_growth: float = 0.5,
                max_payload_bytes: int = 1 << 20, max_backlog: int = 1_000_000,
                ship_interval: float = 0.002, commit_timeout: float = 5.0) -> Kernel:
        """Become the leader once the leader's lease lapsed; returns a writable Kernel.

        Waits up to ``wait`` seconds for the lease to lapse, raises the epoch, applies every
        row the old leader committed, writes the barrier row that fences it, and hands the
        local log and the warm state to a :class:`~eskernel.Kernel` (no replay).  The
        standby is done afterwards.  The other options are ``Kernel.open``'s.

        Raises:
            NotLeaderError: the lease did not lapse within ``wait`` seconds.
            ReplicationUnavailableError, ReplicationCorruptError.
        """
        from .._kernel import Kernel
        from .._replay import check_open_options
        from .._validate import check_kernel_options
        self._check_open()
        mode = check_ack(ack)
        limit = check_seconds("wait", wait, 0.0, 86400.0)
        ttl = check_seconds("lease_ttl", lease_ttl, 0.05, 86400.0)
        check_shipping(max_backlog, ship_interval, commit_timeout)
        check_kernel_options(clock=clock, seed=seed, max_payload_bytes=max_payload_bytes)
        check_open_options(snapshot_every, snapshot_keep, snapshot_growth, max_payload_bytes,
                           None)
        self.stop()
        deadline = time.monotonic() + limit
        pg = self._pg
        while True:
            self.catch_up()
            epoch, holder, left = pg.leader()
            if left < 0:
                try:
                    epoch = pg.acquire(self.holder, ttl, 0.0, same_holder=False)
                    break
                except NotLeaderError:
                    continue        # renewed meanwhile: read the lease again
            if time.monotonic() + min(left, 0.01) > deadline:
                raise NotLeaderError(
                    f"partition {self.partition} is led by {holder!r} (epoch {epoch}) whose "
                    f"lease runs {left:.3g} s more; wait longer (wait=) or stop that node")
            time.sleep(max(0.001, min(left, 0.05, ttl / 10)))
        self._promoted = True
        try:
            with self._lock:
                # Every row of the old epoch is committed now: read them all.
                while rows := pg.fetch(self._seq, FETCH_ROWS):
                    def sink(row: Row, records: list[bytes]) -> None:
                        if records:
                            self._log.append_many(records)
                    self._end, self._seq = apply_rows(pg, rows, self._end, self._seq, sink)
                self._apply_local()
                pg.insert(self._seq + 1, epoch, self._end, [])      # the barrier
                self._seq += 1
                self._epoch = epoch
            rlog = ReplicatedLog(self._log, pg, Pg(self._dsn, self.partition), holder=self.holder,
                                 epoch=epoch, seq=self._seq + 1, ack=mode, lease_ttl=ttl,
                                 max_backlog=max_backlog, ship_interval=float(ship_interval),
                                 commit_timeout=float(commit_timeout))
        except BaseException:
            self._promoted = False
            self.close()
            raise
        return Kernel(rlog, self._state, clock=clock, seed=seed, snapshot_every=snapshot_every,
                      max_payload_bytes=max_payload_bytes, snapshot_keep=snapshot_keep,
                      snapshot_growth=float(snapshot_growth))

    def close(self) -> None:
        """Stop following and close the local log.  Idempotent; a no-op once promoted (the
        kernel owns the log then)."""
        if self._closed or self._promoted:
            return
        self._closed = True
        self.stop()
        self._pg.close()
        self._log.close()

    def __enter__(self) -> Standby:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<Standby {str(self._log.path)!r} partition={self.partition} "
                f"batch_seq={self._seq} offset={self._end}>")


def restore(dsn: str, path: str | os.PathLike[str], *, partition: int = 0,
            durability: str = "fsync") -> int:
    """Write the chain of ``partition`` into the log at ``path`` (a new directory, or a
    log the chain extends) and return the records it holds; ``Kernel.open``,
    ``Kernel.replay``, ``eskernel verify`` and the analytics read it as any log.

    Raises:
        InvalidSpecError: a bad argument.
        ReplicationDivergedError: ``path`` holds a log the chain does not extend.
        ReplicationUnavailableError, ReplicationCorruptError, LogLockedError.

    Cost: one query per 64 rows; every row's and record's checksum is checked.
    """
    from eskernel.eventlog import EventLog

    from ._chain import pull
    dsn = check_dsn(dsn, "the DSN")
    part = check_partition(partition)
    pg = Pg(dsn, part)
    try:
        pg.ensure_schema()      # reached before anything is written to ``path``
    except BaseException:
        pg.close()
        raise
    log_ = EventLog.open(path, durability=durability)
    try:
        end, _seq = pull(pg, log_)
        log_.sync()
        return end
    finally:
        pg.close()
        log_.close()


__all__ = ["Standby", "restore", "default_holder"]
