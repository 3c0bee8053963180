"""Opening a leader: take the lease, reconcile the local log with the chain, open the epoch
with a barrier row (private)."""

from __future__ import annotations

import logging
from typing import Any

from ..errors import InvalidSpecError
from ._chain import check_overlap, chain_end, default_holder, pull, push
from ._log import ReplicatedLog, check_ack
from ._pg import Pg, check_dsn, check_partition, check_seconds

log = logging.getLogger("eskernel.replication")

#: The options ``Kernel.open`` takes for replication, with their defaults.
LEADER_OPTIONS: dict[str, Any] = {
    "replicate": None, "ack": "local", "partition": 0, "lease_ttl": 10.0, "lease_wait": 0.0,
    "holder": None, "max_backlog": 1_000_000, "ship_interval": 0.002, "commit_timeout": 5.0,
    "connect_timeout": 5.0,
}


def split_options(options: dict[str, Any]) -> dict[str, Any] | None:
    """Remove the replication options from ``options`` (``Kernel.open``'s keyword
    arguments for the log); None when ``replicate`` is not among them.

    Raises:
        InvalidSpecError: a replication option without ``replicate=``.
    """
    found = {k: options.pop(k) for k in list(options) if k in LEADER_OPTIONS}
    if found.get("replicate") is None:
        if found:
            raise InvalidSpecError(
                f"{', '.join(sorted(found))} only apply with replicate='postgresql://...'; "
                "pass replicate= or drop them")
        return None
    return {**LEADER_OPTIONS, **found}


def check_shipping(max_backlog: object, ship_interval: object, commit_timeout: object) -> None:
    """Raise InvalidSpecError for a bad shipping option of a leader."""
    check_seconds("ship_interval", ship_interval, 0.0001, 10.0)
    check_seconds("commit_timeout", commit_timeout, 0.0, 3600.0)
    if isinstance(max_backlog, bool) or not isinstance(max_backlog, int) or max_backlog < 1:
        raise InvalidSpecError(f"max_backlog must be an int >= 1 (records), got "
                               f"{max_backlog!r}")


def check_holder(holder: object, path: Any) -> str:
    if holder is None:
        return default_holder(path)
    if not isinstance(holder, str) or not 0 < len(holder) <= 200:
        raise InvalidSpecError(f"holder must be a non-empty str of at most 200 characters "
                               f"naming this node, got {holder!r:.80}")
    return holder


def open_leader(inner: Any, *, replicate: str, ack: str, partition: int, lease_ttl: float,
                lease_wait: float, holder: str | None, max_backlog: int, ship_interval: float,
                commit_timeout: float, connect_timeout: float) -> ReplicatedLog:
    """Make ``inner`` (an open EventLog) the leader's log of ``partition``.

    Takes the lease with a raised epoch (at once when it lapsed or this directory held it;
    else waiting up to ``lease_wait`` seconds), then: pulls the records the chain holds and
    the local log lacks, or ships those the local log holds and the chain lacks, after
    checking both agree where they overlap; then writes the epoch's barrier row.

    Raises:
        InvalidSpecError: a bad option.
        NotLeaderError: another node holds the lease.
        ReplicationDivergedError: the local log differs from the chain.
        ReplicationUnavailableError: PostgreSQL could not be reached.
    """
    dsn = check_dsn(replicate)
    mode = check_ack(ack)
    part = check_partition(partition)
    ttl = check_seconds("lease_ttl", lease_ttl, 0.05, 86400.0)
    wait = check_seconds("lease_wait", lease_wait, 0.0, 86400.0)
    check_shipping(max_backlog, ship_interval, commit_timeout)
    check_seconds("connect_timeout", connect_timeout, 0.1, 3600.0)
    name = check_holder(holder, inner.path)
    pg = Pg(dsn, part, connect_timeout=connect_timeout)
    bg = Pg(dsn, part, connect_timeout=connect_timeout)
    epoch = 0
    try:
        pg.ensure_schema()
        epoch = pg.acquire(name, ttl, wait, same_holder=True)
        # The epoch is ours: no other writer can extend the chain from here on.
        seq, end = chain_end(pg.tail())
        local = inner.next_offset
        if end > local:
            pull(pg, inner)
            inner.sync()
        elif local > end:
            check_overlap(pg, inner, local, end)
            log.warning("shipping %d local record(s) of %s that PostgreSQL lacks",
                        local - end, inner.path)
            seq = push(pg, inner, epoch, seq, end, local)
        else:
            check_overlap(pg, inner, local, end)
        seq, end = chain_end(pg.tail())
        pg.insert(seq, epoch, end, [])          # the barrier that opens this epoch
        return ReplicatedLog(inner, pg, bg, holder=name, epoch=epoch, seq=seq + 1, ack=mode,
                             lease_ttl=ttl, max_backlog=max_backlog,
                             ship_interval=float(ship_interval),
                             commit_timeout=float(commit_timeout))
    except BaseException:
        if epoch:
            try:
                pg.release(name, epoch)     # let another node take over at once
            except Exception:
                pass
        pg.close()
        bg.close()
        raise
