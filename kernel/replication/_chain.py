"""Reconciling a local log with a partition's chain in PostgreSQL (private).

A local log and the chain agree when one's records are a prefix of the other's.  They can
only come to differ at the start of an epoch (a barrier): a deposed leader's local records
that never reached PostgreSQL, where the new leader wrote others.  :func:`check_overlap`
compares the bytes of the chain's row holding the last offset both have with the local
records at those offsets.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ReplicationCorruptError, ReplicationDivergedError
from ._pg import ROW_MAX_BYTES, ROW_MAX_RECORDS, Pg, Row, unframe

#: Rows read per query while catching up.
FETCH_ROWS = 64


def default_holder(path: str | os.PathLike[str]) -> str:
    """The lease holder name of a node serving directory ``path`` on this host."""
    return f"{socket.gethostname()}:{os.path.realpath(path)}"


def check_overlap(pg: Pg, log_: Any, local_end: int, chain_end: int) -> Row | None:
    """Check that the local log and the chain agree on the last offset both hold; returns
    the chain's row holding that offset (None when either is empty).

    Raises:
        ReplicationDivergedError: the records differ.
        ReplicationCorruptError: the chain lacks a row it must have, or a row is damaged.
    """
    both = min(local_end, chain_end)
    if both == 0:
        return None
    row = pg.row_holding(both - 1)
    if row is None:
        raise ReplicationCorruptError(
            f"the chain of partition {pg.partition} ends at offset {chain_end} but no row "
            f"holds offset {both - 1}: its rows are not contiguous; restore eskernel_batches "
            "from a database backup")
    records = unframe(row, pg.partition)
    upto = min(row.first_offset + row.record_count, local_end)
    local = log_.read_batch(row.first_offset, upto - row.first_offset)
    if [bytes(r) for r in local] != records[:upto - row.first_offset]:
        raise ReplicationDivergedError(
            f"the local log at {getattr(log_, 'path', '?')} and PostgreSQL (partition "
            f"{pg.partition}, batch {row.batch_seq}, epoch {row.epoch}) hold different "
            f"records at offsets {row.first_offset}..{upto - 1}: this directory holds records "
            "of a deposed leader; rebuild it with 'eskernel restore DSN DIR' into a new "
            "directory")
    return row


def chain_end(tail: Row | None) -> tuple[int, int]:
    """(next batch_seq, records in the chain) given its last row."""
    if tail is None:
        return 0, 0
    return tail.batch_seq + 1, tail.first_offset + tail.record_count


def apply_rows(pg: Pg, rows: Sequence[Row], end: int, seq: int,
               sink: Callable[[Row, list[bytes]], None]) -> tuple[int, int]:
    """Hand each row's records past offset ``end`` to ``sink``, checking that each row
    follows the last (``batch_seq`` dense, ``first_offset`` contiguous); returns the new
    (end, last batch_seq).

    Raises:
        ReplicationCorruptError: a gap, an overlap or a damaged row.
    """
    for row in rows:
        if row.batch_seq != seq + 1 or row.first_offset > end or (
                row.first_offset + row.record_count < end):
            raise ReplicationCorruptError(
                f"batch {row.batch_seq} of partition {pg.partition} (offsets "
                f"{row.first_offset}+{row.record_count}) does not follow batch {seq} "
                f"ending at offset {end}: the chain has a gap; restore eskernel_batches "
                "from a database backup")
        records = unframe(row, pg.partition)[end - row.first_offset:]
        sink(row, records)
        end += len(records)
        seq = row.batch_seq
    return end, seq


def start_after(pg: Pg, log_: Any, local_end: int) -> tuple[int, int]:
    """Where a follower of the chain resumes: (end, last batch_seq applied), having
    appended the rest of a row the local log holds only a part of.

    Raises:
        ReplicationDivergedError: the local log holds records the chain does not.
    """
    tail = pg.tail()
    seq_next, end_chain = chain_end(tail)
    if local_end > end_chain:
        raise ReplicationDivergedError(
            f"the local log at {getattr(log_, 'path', '?')} holds {local_end} records, more "
            f"than the {end_chain} of partition {pg.partition} in PostgreSQL: it was a "
            "leader whose last records never reached PostgreSQL; open it as the leader "
            "(Kernel.open with replicate=) or rebuild it with 'eskernel restore DSN DIR'")
    row = check_overlap(pg, log_, local_end, end_chain)
    if row is None:
        return 0, -1
    records = unframe(row, pg.partition)[local_end - row.first_offset:]
    if records:
        log_.append_many(records)
    return row.first_offset + row.record_count, row.batch_seq


def pull(pg: Pg, log_: Any, *, until_seq: int | None = None) -> tuple[int, int]:
    """Append to ``log_`` every record of the chain it lacks; returns (end, last seq).

    Raises:
        ReplicationDivergedError, ReplicationCorruptError, ReplicationUnavailableError.
    """
    end, seq = start_after(pg, log_, log_.next_offset)

    def sink(_row: Row, records: list[bytes]) -> None:
        if records:
            log_.append_many(records)

    while until_seq is None or seq < until_seq:
        rows = pg.fetch(seq, FETCH_ROWS)
        if not rows:
            break
        end, seq = apply_rows(pg, rows, end, seq, sink)
    return end, seq


def push(pg: Pg, log_: Any, epoch: int, seq: int, start: int, end: int) -> int:
    """Ship local records ``[start, end)`` as rows from ``batch_seq`` ``seq``; returns the
    next ``batch_seq``."""
    off = start
    while off < end:
        batch: list[bytes] = []
        size = 0
        for rec in log_.read_batch(off, min(ROW_MAX_RECORDS, end - off)):
            batch.append(bytes(rec))
            size += len(rec) + 8
            if size >= ROW_MAX_BYTES:
                break
        pg.insert(seq, epoch, off, batch)
        off += len(batch)
        seq += 1
    return seq
