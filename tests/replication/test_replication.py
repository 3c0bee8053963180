"""Replication to PostgreSQL: the chain equals the log, fencing, the standby, restore."""

from __future__ import annotations

import json

import psycopg
import pytest
from click.testing import CliRunner

from eskernel import Kernel, KernelFailedError, ManualClock
from eskernel.cli import cli
from eskernel.errors import (InvalidSpecError, NotLeaderError, ReplicationDivergedError,
                             ReplicationFencedError)
from eskernel.eventlog import EventLog
from eskernel.replication import Standby, restore
from eskernel.replication._pg import Row, unframe


def chain(dsn: str, partition: int) -> list[Row]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT batch_seq, epoch, first_offset, record_count, crc32c, "
                            "payload FROM eskernel_batches WHERE partition = %s ORDER BY "
                            "batch_seq", (partition,)).fetchall()
    return [Row(*r) for r in rows]


def chain_records(dsn: str, partition: int) -> list[bytes]:
    out: list[bytes] = []
    for row in chain(dsn, partition):
        assert row.first_offset == len(out)
        out += unframe(row, partition)
    return out


def local_records(path) -> list[bytes]:
    with EventLog.open_readonly(path) as r:
        return [bytes(rec) for _, rec in r.read()]


def workload(k: Kernel, n: int = 30, tag: str = "") -> list[str]:
    """Every kind of call: single and batch submits, claims, completes, a failure."""
    k.declare_queue("q")
    k.register_agent("w", ["q"], capacity=1000)
    ids = k.submit_many([{"queue": "q", "payload": {"i": i}} for i in range(n)])
    ids.append(k.submit("q", {"single": tag}))
    leases = k.claim_many("w", n // 2)
    k.complete_many(leases[:-1], [{"r": i} for i in range(len(leases) - 1)])
    k.fail(leases[-1], error="boom")
    lease = k.claim("w")
    k.heartbeat(lease)
    k.complete(lease, {"one": 1})
    k.tick()
    return ids


@pytest.mark.parametrize("ack", ["replicated", "local"])
def test_every_batch_reaches_the_table_and_the_table_equals_the_log(tmp_path, pg, partition,
                                                                    ack):
    k = Kernel.open(tmp_path / "a", replicate=pg.dsn, partition=partition, ack=ack)
    workload(k)
    if ack == "replicated":     # acknowledged = committed: no wait needed
        assert chain_records(pg.dsn, partition) == local_records(tmp_path / "a")
        rows = chain(pg.dsn, partition)
        assert [r.batch_seq for r in rows] == list(range(len(rows)))
        assert rows[0].record_count == 0 and rows[0].epoch == 1     # the first barrier
    k.close()
    assert chain_records(pg.dsn, partition) == local_records(tmp_path / "a")


def test_replicated_mode_one_row_per_call(tmp_path, pg, partition):
    k = Kernel.open(tmp_path / "a", replicate=pg.dsn, partition=partition, ack="replicated")
    k.declare_queue("q")
    before = len(chain(pg.dsn, partition))
    k.submit_many([{"queue": "q"} for _ in range(100)])
    rows = chain(pg.dsn, partition)
    assert len(rows) == before + 1 and rows[-1].record_count == 100
    k.close()


def test_reopen_raises_the_epoch_and_continues_the_chain(tmp_path, pg, partition):
    k = Kernel.open(tmp_path / "a", replicate=pg.dsn, partition=partition, ack="replicated")
    workload(k)
    digest = k.digest()
    k.close()
    k = Kernel.open(tmp_path / "a", replicate=pg.dsn, partition=partition, ack="replicated")
    assert k.digest() == digest
    k.submit("q", id="after-reopen")
    k.close()
    rows = chain(pg.dsn, partition)
    assert [r.epoch for r in rows if r.record_count == 0] == [1, 2]
    assert chain_records(pg.dsn, partition) == local_records(tmp_path / "a")


def test_a_raised_epoch_fences_the_leader(tmp_path, pg, partition):
    k = Kernel.open(tmp_path / "a", replicate=pg.dsn, partition=partition, ack="replicated")
    k.declare_queue("q")
    with psycopg.connect(pg.dsn, autocommit=True) as conn:      # another node took over
        conn.execute("UPDATE eskernel_leader SET epoch = epoch + 1, holder = 'other' "
                     "WHERE partition = %s", (partition,))
    n = len(chain(pg.dsn, partition))
    with pytest.raises(ReplicationFencedError, match="deposed"):
        k.submit("q", id="x")
    with pytest.raises(KernelFailedError):
        k.submit("q", id="y")
    assert len(chain(pg.dsn, partition)) == n       # nothing of the stale leader landed
    k.close()


def test_a_stale_writers_batch_collides_on_the_batch_sequence(tmp_path, pg, partition):
    k = Kernel.open(tmp_path / "a", replicate=pg.dsn, partition=partition, ack="replicated")
    k.declare_queue("q")
    last = chain(pg.dsn, partition)[-1]
    with psycopg.connect(pg.dsn, autocommit=True) as conn:      # someone wrote next row
        conn.execute("INSERT INTO eskernel_batches VALUES (%s, %s, %s, %s, 0, 0, '')",
                     (partition, last.batch_seq + 1, last.epoch,
                      last.first_offset + last.record_count))
    with pytest.raises(ReplicationFencedError, match="another leader"):
        k.submit("q", id="x")
    with pytest.raises(KernelFailedError):
        k.declare_queue("r")
    k.close()


def test_a_live_lease_keeps_a_second_leader_out(tmp_path, pg, partition):
    k = Kernel.open(tmp_path / "a", replicate=pg.dsn, partition=partition)
    with pytest.raises(NotLeaderError, match="lease"):
        Kernel.open(tmp_path / "b", replicate=pg.dsn, partition=partition)
    k.close()       # releases the lease: another node may take over at once
    Kernel.open(tmp_path / "b", replicate=pg.dsn, partition=partition).close()


def test_standby_digest_equals_a_fresh_replay_at_every_batch_boundary(tmp_path, pg, partition):
    clock = ManualClock(start=1_700_000_000.0)
    k = Kernel.open(tmp_path / "a", replicate=pg.dsn, partition=partition, ack="replicated",
                    clock=clock)
    sb = Standby(tmp_path / "s", pg.dsn, partition=partition)
    k.declare_queue("q")
    k.register_agent("w", ["q"], capacity=50)
    steps = [lambda: k.submit_many([{"queue": "q", "timeout": 5} for _ in range(20)]),
             lambda: k.claim_many("w", 7),
             lambda: k.submit("q", id="dep", depends_on=[k.submit("q", id="up")]),
             lambda: clock.advance(10),
             lambda: k.tick(),
             lambda: k.complete_many(k.claim_many("w", 5))]
    for step in steps:
        step()
        sb.catch_up()
        assert sb.offset == k._log.next_offset
        assert sb.digest() == k.digest() == Kernel.replay(tmp_path / "a").digest()
    sb.close()
    k.close()


def test_standby_promotes_once_the_lease_lapses_and_fences_the_old_leader(tmp_path, pg,
                                                                          partition):
    k = Kernel.open(tmp_path / "a", replicate=pg.dsn, partition=partition, ack="replicated",
                    lease_ttl=0.3)
    ids = workload(k)
    sb = Standby(tmp_path / "s", pg.dsn, partition=partition)
    with pytest.raises(NotLeaderError):
        sb.promote()                 # the leader renews its lease
    k._log._stop.set()               # the leader stops renewing (as if it hung)
    k._log._thread.join()
    new = sb.promote(wait=60, lease_ttl=5)
    assert new.digest() == k.digest()
    assert new.task(ids[0]).status == k.task(ids[0]).status
    new.submit("q", id="on-the-new-leader")
    with pytest.raises(ReplicationFencedError):
        k.submit("q", id="on-the-old-leader")
    new.close()
    k.close()
    assert chain_records(pg.dsn, partition) == local_records(tmp_path / "s")
    # The old leader's directory holds a record the chain does not: it cannot lead again.
    with pytest.raises(ReplicationDivergedError, match="restore"):
        Kernel.open(tmp_path / "a", replicate=pg.dsn, partition=partition)


def test_restore_from_postgresql_alone(tmp_path, pg, partition):
    k = Kernel.open(tmp_path / "a", replicate=pg.dsn, partition=partition, ack="local")
    workload(k)
    digest = k.digest()
    k.close()
    res = CliRunner().invoke(cli, ["restore", pg.dsn, str(tmp_path / "r"), "--partition",
                                   str(partition)])
    assert res.exit_code == 0, res.output
    assert Kernel.replay(tmp_path / "r").digest() == digest
    res = CliRunner().invoke(cli, ["verify", str(tmp_path / "r")])
    assert res.exit_code == 0 and res.output.startswith("ok:"), res.output
    res = CliRunner().invoke(cli, ["replay", str(tmp_path / "r"), "--json"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["sql", str(tmp_path / "r"), "--memory", "--json",
                                   "SELECT count(*) AS n FROM tasks"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)[0]["n"] == 31     # every task of workload() projected
    assert restore(pg.dsn, tmp_path / "r", partition=partition) == len(
        local_records(tmp_path / "a"))     # restoring again finds nothing more
    # a new node started from PostgreSQL alone becomes the leader of the same history
    k = Kernel.open(tmp_path / "r", replicate=pg.dsn, partition=partition)
    assert k.digest() == digest
    k.close()


def test_leader_pulls_records_its_local_log_lacks(tmp_path, pg, partition):
    k = Kernel.open(tmp_path / "a", replicate=pg.dsn, partition=partition, ack="replicated",
                    holder="node-a")
    workload(k)
    digest = k.digest()
    k.close()
    # the same node (same holder name) on an empty disk
    k = Kernel.open(tmp_path / "empty", replicate=pg.dsn, partition=partition,
                    holder="node-a")
    assert k.digest() == digest
    k.close()


@pytest.mark.parametrize("options, match", [
    ({"replicate": "not a dsn"}, "connection string"),
    ({"replicate": None, "ack": "replicated"}, "only apply with replicate"),
    ({"ack": "sometimes"}, "ack must be"),
    ({"partition": -1}, "partition"),
    ({"partition": True}, "partition"),
    ({"lease_ttl": 0}, "lease_ttl"),
    ({"lease_ttl": float("nan")}, "lease_ttl"),
    ({"max_backlog": 0}, "max_backlog"),
    ({"holder": ""}, "holder"),
])
def test_bad_replication_options_are_typed_errors(tmp_path, pg, options, match):
    opts = {"replicate": pg.dsn, **options}
    with pytest.raises(InvalidSpecError, match=match):
        Kernel.open(tmp_path / "a", **opts)


def test_bad_standby_and_restore_arguments(tmp_path, pg):
    with pytest.raises(InvalidSpecError, match="DSN"):
        Standby(tmp_path / "s", "nonsense")
    with pytest.raises(InvalidSpecError, match="DSN"):
        restore(42, tmp_path / "r")      # type: ignore[arg-type]
    with pytest.raises(InvalidSpecError, match="partition"):
        restore(pg.dsn, tmp_path / "r", partition="0")      # type: ignore[arg-type]
    res = CliRunner().invoke(cli, ["restore", "nonsense", str(tmp_path / "r")])
    assert res.exit_code == 1 and res.output.startswith("error: the DSN must be")
    assert not (tmp_path / "r").exists()


def test_snapshots_of_a_replicated_kernel_and_of_a_promoted_standby(tmp_path, pg, partition):
    k = Kernel.open(tmp_path / "a", replicate=pg.dsn, partition=partition, ack="replicated",
                    snapshot_every=10, snapshot_growth=0)
    workload(k)
    assert k.snapshot() > 0
    digest = k.digest()
    k.close()
    k = Kernel.open(tmp_path / "a", replicate=pg.dsn, partition=partition, ack="replicated")
    assert k.digest() == digest
    sb = Standby(tmp_path / "s", pg.dsn, partition=partition)
    k.close()                          # releases the lease: the standby takes over at once
    new = sb.promote(snapshot_every=10)
    assert new.digest() == digest
    new.snapshot()
    new.submit("q", id="after")
    digest = new.digest()
    new.close()
    assert Kernel.replay(tmp_path / "s").digest() == digest
    assert chain_records(pg.dsn, partition) == local_records(tmp_path / "s")


@pytest.mark.parametrize("options, match", [
    ({"ack": "eventually"}, "ack must be"),
    ({"wait": -1}, "wait"),
    ({"lease_ttl": "3"}, "lease_ttl"),
    ({"max_backlog": 0}, "max_backlog"),
    ({"commit_timeout": float("inf")}, "commit_timeout"),
    ({"snapshot_every": -1}, "snapshot_every"),
])
def test_bad_promote_options_are_typed_errors_and_leave_the_standby_following(
        tmp_path, pg, partition, options, match):
    k = Kernel.open(tmp_path / "a", replicate=pg.dsn, partition=partition)
    k.declare_queue("q")
    k._log.flush_replication()
    sb = Standby(tmp_path / "s", pg.dsn, partition=partition)
    with pytest.raises(InvalidSpecError, match=match):
        sb.promote(**options)
    with pytest.raises(InvalidSpecError, match="max_rows"):
        sb.poll(max_rows=0)
    k.submit("q", id="more")
    k._log.flush_replication()
    sb.catch_up()
    assert sb.digest() == k.digest()
    sb.close()
    k.close()
