"""The PostgreSQL side of replication: the tables, the leader lease, shipping and fetching
batches (private).

Tables (created on first use, shared by every partition)::

    eskernel_batches(partition int, batch_seq bigint, epoch bigint, first_offset bigint,
                     record_count int, crc32c bigint, payload bytea,
                     PRIMARY KEY (partition, batch_seq))
    eskernel_leader(partition int PRIMARY KEY, epoch bigint, holder text,
                    lease_until timestamptz)

Invariants of a partition's chain:

- ``batch_seq`` is dense from 0 and assigned by the writer (never a database sequence): a
  writer that is not the one extending the chain collides on the primary key.
- ``first_offset`` of a row is the previous row's ``first_offset + record_count``; the rows'
  records, in ``batch_seq`` order, are the log.
- A row is inserted only while ``eskernel_leader.epoch`` equals the row's epoch, checked in
  the insert itself under a share lock on the lease row, so once a new epoch is committed no
  row of an older epoch can commit after it.
- A barrier row (``record_count = 0``) opens each epoch: everything before it is the
  history the new leader adopted.
- ``payload`` is the records framed as the segment files frame them (u32 length, u32 CRC32C
  of length and payload, payload), and ``crc32c`` is the CRC32C of the whole payload.
- Lease times are PostgreSQL's clock (``now()``), never a node's.
"""

from __future__ import annotations

import re
import struct
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from eskernel.eventlog._framing import crc32c, frame_crc

from ..errors import (InvalidSpecError, NotLeaderError, ReplicationCorruptError,
                      ReplicationError, ReplicationFencedError, ReplicationUnavailableError)

_FRAME = struct.Struct("<II")
#: Records and bytes at most in one shipped row.
ROW_MAX_RECORDS = 65536
ROW_MAX_BYTES = 8 << 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS eskernel_batches (
    partition integer NOT NULL,
    batch_seq bigint NOT NULL CHECK (batch_seq >= 0),
    epoch bigint NOT NULL CHECK (epoch >= 1),
    first_offset bigint NOT NULL CHECK (first_offset >= 0),
    record_count integer NOT NULL CHECK (record_count >= 0),
    crc32c bigint NOT NULL,
    payload bytea NOT NULL,
    PRIMARY KEY (partition, batch_seq));
ALTER TABLE eskernel_batches ALTER COLUMN payload SET STORAGE EXTERNAL;
CREATE TABLE IF NOT EXISTS eskernel_leader (
    partition integer PRIMARY KEY,
    epoch bigint NOT NULL,
    holder text NOT NULL,
    lease_until timestamptz NOT NULL);
"""
_INSERT = ("INSERT INTO eskernel_batches (partition, batch_seq, epoch, first_offset, "
           "record_count, crc32c, payload) SELECT %s, %s, %s, %s, %s, %s, %b "
           "FROM eskernel_leader WHERE partition = %s AND epoch = %s FOR SHARE")
_COLUMNS = "batch_seq, epoch, first_offset, record_count, crc32c, payload"
_DSN_RE = re.compile(r"\A(postgres(ql)?://|\S+=)")


class Row(NamedTuple):
    """One batch as stored: its place in the chain, its epoch and its framed records."""

    batch_seq: int
    epoch: int
    first_offset: int
    record_count: int
    crc: int
    payload: bytes


def frame(records: Sequence[bytes]) -> bytes:
    """The records framed back to back, as a segment file holds them."""
    pack = _FRAME.pack
    parts: list[bytes] = []
    add = parts.append
    for r in records:
        add(pack(len(r), frame_crc(r)))
        add(r)
    return b"".join(parts)


def unframe(row: Row, partition: int) -> list[bytes]:
    """The records of ``row``, every checksum and count checked.

    Raises:
        ReplicationCorruptError: the row's checksum, a frame or the count is wrong.
    """
    data = row.payload

    def bad(why: str) -> ReplicationCorruptError:
        return ReplicationCorruptError(
            f"batch {row.batch_seq} of partition {partition} in PostgreSQL is damaged ({why}); "
            "nothing of it was applied: restore eskernel_batches from a database backup")

    if crc32c(data) != row.crc:
        raise bad("payload checksum mismatch")
    out: list[bytes] = []
    pos, end = 0, len(data)
    while pos < end:
        if end - pos < 8:
            raise bad(f"a frame header is cut at byte {pos}")
        n, crc = _FRAME.unpack_from(data, pos)
        rec = data[pos + 8:pos + 8 + n]
        if len(rec) != n or frame_crc(rec) != crc:
            raise bad(f"the frame at byte {pos} fails its checksum")
        out.append(rec)
        pos += 8 + n
    if len(out) != row.record_count:
        raise bad(f"it holds {len(out)} records, its header says {row.record_count}")
    return out


def check_dsn(dsn: object, name: str = "replicate=") -> str:
    """``dsn`` if it looks like a libpq connection string or URI, else a typed error."""
    if not isinstance(dsn, str) or not _DSN_RE.match(dsn.strip()):
        raise InvalidSpecError(
            f"{name} must be a PostgreSQL connection string ('postgresql://user@host/db' "
            f"or 'host=... dbname=...'), got {dsn!r:.80}")
    return dsn


def check_partition(partition: object) -> int:
    if isinstance(partition, bool) or not isinstance(partition, int) or not (
            0 <= partition < 2**31):
        raise InvalidSpecError(f"partition must be an int in [0, 2**31), got {partition!r}")
    return partition


def check_seconds(name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            low <= value <= high):
        raise InvalidSpecError(f"{name} must be a number of seconds in [{low}, {high}], "
                               f"got {value!r}")
    return float(value)


class Pg:
    """One connection to PostgreSQL for one partition; reconnects on demand.

    Every driver error leaves as an eskernel error: unreachable or failed calls as
    :class:`ReplicationUnavailableError`; psycopg is imported only here.
    """

    def __init__(self, dsn: str, partition: int, *, connect_timeout: float = 5.0) -> None:
        try:
            import psycopg
        except ImportError as err:
            raise InvalidSpecError(
                "replication needs psycopg 3: pip install 'eskernel[replicate]'") from err
        self._psycopg = psycopg
        self.dsn = dsn
        self.partition = partition
        self._timeout = connect_timeout
        self._conn: Any = None

    # -- connection -------------------------------------------------------------------

    def conn(self) -> Any:
        if self._conn is None or self._conn.closed:
            try:
                # Over TCP, a peer that vanished without a reset is noticed within the
                # timeout rather than never (libpq ignores these on a Unix socket).
                self._conn = self._psycopg.connect(
                    self.dsn, autocommit=True, connect_timeout=max(1, round(self._timeout)),
                    keepalives=1, keepalives_idle=max(1, round(self._timeout)),
                    keepalives_interval=1, keepalives_count=3,
                    tcp_user_timeout=max(1000, round(self._timeout * 1000)))
            except self._psycopg.Error as err:
                raise self.unavailable("connect", err) from err
        return self._conn

    def unavailable(self, what: str, err: BaseException) -> ReplicationUnavailableError:
        self.drop()
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return ReplicationUnavailableError(
            f"PostgreSQL did not answer ({what} for partition {self.partition}: {first}); "
            "check that it is up and reachable, then retry (a kernel: reopen it)")

    def drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:   # pragma: no cover - a dead connection closes anyway
                pass

    def execute(self, what: str, query: str, params: Sequence[Any] = ()) -> Any:
        conn = self.conn()
        try:
            return conn.execute(query, params)
        except self._psycopg.errors.UniqueViolation:
            raise
        except self._psycopg.Error as err:
            if isinstance(err, (self._psycopg.OperationalError, self._psycopg.InterfaceError)):
                raise self.unavailable(what, err) from err
            raise ReplicationError(f"PostgreSQL refused {what} for partition "
                                   f"{self.partition}: {err}") from err

    def ensure_schema(self) -> None:
        conn = self.conn()
        try:
            with conn.transaction():
                # CREATE TABLE IF NOT EXISTS races with itself: one creator at a time.
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (0x65736B6C,))
                conn.execute(_SCHEMA)
        except self._psycopg.Error as err:
            raise self.unavailable("creating the replication tables", err) from err

    # -- the lease --------------------------------------------------------------------

    def acquire(self, holder: str, ttl: float, wait: float, *, same_holder: bool) -> int:
        """Take the leader lease with a raised epoch and return it.

        The lease is free when it lapsed, when no row exists, or (``same_holder``) when it
        is held under ``holder`` already: the caller proves the old holder is gone.

        Raises:
            NotLeaderError: another holder's lease did not lapse within ``wait`` seconds.
        """
        deadline = time.monotonic() + wait
        p = self.partition
        while True:
            self.execute("creating the lease row",
                         "INSERT INTO eskernel_leader VALUES (%s, 0, '', now()) "
                         "ON CONFLICT DO NOTHING", (p,))
            row = self.execute(
                "taking the leader lease",
                "UPDATE eskernel_leader SET epoch = epoch + 1, holder = %s, "
                "lease_until = now() + make_interval(secs => %s) WHERE partition = %s AND "
                "(lease_until < now() OR holder = %s) RETURNING epoch",
                (holder, ttl, p, holder if same_holder else "")).fetchone()
            if row is not None:
                return int(row[0])
            cur = self.leader()
            left = deadline - time.monotonic()
            if left <= 0:
                raise NotLeaderError(
                    f"partition {p} is led by {cur[1]!r} (epoch {cur[0]}) whose lease runs "
                    f"{max(cur[2], 0.0):.3g} s more; stop that node, wait for the lease to "
                    "lapse (lease_wait=), or open this directory as a standby")
            time.sleep(min(left, max(0.01, min(cur[2], ttl / 10))))

    def leader(self) -> tuple[int, str, float]:
        """(epoch, holder, seconds the lease still runs; negative once it lapsed)."""
        row = self.execute("reading the leader lease",
                           "SELECT epoch, holder, EXTRACT(EPOCH FROM lease_until - now()) "
                           "FROM eskernel_leader WHERE partition = %s",
                           (self.partition,)).fetchone()
        if row is None:
            return 0, "", -1.0
        return int(row[0]), str(row[1]), float(row[2])

    def renew(self, holder: str, epoch: int, ttl: float) -> bool:
        """Extend the lease; False when this holder no longer has it (deposed)."""
        cur = self.execute("renewing the leader lease",
                           "UPDATE eskernel_leader SET lease_until = now() + "
                           "make_interval(secs => %s) WHERE partition = %s AND epoch = %s "
                           "AND holder = %s", (ttl, self.partition, epoch, holder))
        return bool(cur.rowcount == 1)

    def release(self, holder: str, epoch: int) -> None:
        self.execute("releasing the leader lease",
                     "UPDATE eskernel_leader SET lease_until = now() WHERE partition = %s "
                     "AND epoch = %s AND holder = %s", (self.partition, epoch, holder))

    # -- the chain ----------------------------------------------------------------------

    def tail(self) -> Row | None:
        """The chain's last row (payload left empty), or None for an empty chain."""
        r = self.execute("reading the chain's end",
                         "SELECT batch_seq, epoch, first_offset, record_count, crc32c, "
                         "''::bytea FROM eskernel_batches WHERE partition = %s "
                         "ORDER BY batch_seq DESC LIMIT 1", (self.partition,)).fetchone()
        return Row(*r) if r is not None else None

    def fetch(self, after_seq: int, limit: int) -> list[Row]:
        """Rows with ``batch_seq > after_seq``, in order, at most ``limit``."""
        rows = self.execute("reading batches",
                            f"SELECT {_COLUMNS} FROM eskernel_batches WHERE partition = %s "
                            "AND batch_seq > %s ORDER BY batch_seq LIMIT %s",
                            (self.partition, after_seq, limit)).fetchall()
        return [Row(*r) for r in rows]

    def row_holding(self, offset: int) -> Row | None:
        """The non-empty row whose records include log offset ``offset``."""
        r = self.execute("reading a batch",
                         f"SELECT {_COLUMNS} FROM eskernel_batches WHERE partition = %s AND "
                         "first_offset <= %s AND record_count > 0 ORDER BY batch_seq DESC "
                         "LIMIT 1", (self.partition, offset)).fetchone()
        if r is None:
            return None
        row = Row(*r)
        return row if row.first_offset + row.record_count > offset else None

    def rows_from(self, offset: int, limit: int) -> list[Row]:
        """Rows ending after log offset ``offset``, in order, at most ``limit``."""
        rows = self.execute("reading batches",
                            f"SELECT {_COLUMNS} FROM eskernel_batches WHERE partition = %s "
                            "AND first_offset + record_count > %s ORDER BY batch_seq "
                            "LIMIT %s", (self.partition, offset, limit)).fetchall()
        return [Row(*r) for r in rows]

    def insert(self, seq: int, epoch: int, first: int, records: Sequence[bytes],
               payload: bytes | None = None) -> None:
        """Append the row ``seq`` to the chain, in its own commit.

        Raises:
            ReplicationFencedError: the lease's epoch is not ``epoch`` any more, or row
                ``seq`` exists with other content (another writer extended the chain).
            ReplicationUnavailableError: PostgreSQL did not confirm the commit.  When the
                commit happened after all, a retry finds the identical row and succeeds.
        """
        if payload is None:
            payload = frame(records)
        crc = crc32c(payload)
        p = self.partition
        try:
            cur = self.execute("committing a batch", _INSERT,
                               (p, seq, epoch, first, len(records), crc, payload, p, epoch))
        except self._psycopg.errors.UniqueViolation as err:
            if self._same_row(seq, epoch, first, len(records), crc):
                return      # a retry of a commit whose confirmation was lost
            raise ReplicationFencedError(
                f"batch {seq} of partition {p} was written by another leader (this node "
                f"holds epoch {epoch}); this node was deposed and acknowledges nothing more: "
                "stop it and follow the new leader") from err
        if cur.rowcount != 1:
            if self._same_row(seq, epoch, first, len(records), crc):
                return
            cur_epoch, holder, _ = self.leader()
            raise ReplicationFencedError(
                f"partition {p} is now led by {holder!r} at epoch {cur_epoch} (this node "
                f"holds epoch {epoch}); this node was deposed and acknowledges nothing more: "
                "stop it and follow the new leader")

    def _same_row(self, seq: int, epoch: int, first: int, count: int, crc: int) -> bool:
        r = self.execute("reading a batch",
                         "SELECT epoch, first_offset, record_count, crc32c FROM "
                         "eskernel_batches WHERE partition = %s AND batch_seq = %s",
                         (self.partition, seq)).fetchone()
        return r is not None and tuple(r) == (epoch, first, count, crc)

    def close(self) -> None:
        self.drop()
