"""Chaos: kill -9 of the leader process, PostgreSQL stopped and restarted under load.

``ESKERNEL_REPL_TORTURE=N`` runs N kill -9 trials instead of the few CI runs.
"""

from __future__ import annotations

import os
import threading
import random
import signal
import subprocess
import sys
import textwrap

import pytest

from eskernel import Kernel, KernelFailedError
from eskernel.errors import (ReplicationBacklogError, ReplicationUnavailableError)
from eskernel.replication import Standby, restore

from .conftest import new_cluster, wait_until

TRIALS = int(os.environ.get("ESKERNEL_REPL_TORTURE", "3"))
#: Upper bound on any wait for the child; the test fails rather than hangs.
CHILD_TIMEOUT_S = 120

LEADER = textwrap.dedent("""
    import sys
    from eskernel import Kernel
    dsn, path, partition, ack = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    k = Kernel.open(path, replicate=dsn, partition=partition, ack=ack, lease_ttl=0.5,
                    lease_wait=60, durability="write")
    k.declare_queue("q")
    k.register_agent("w", ["q"], capacity=1_000_000)
    print("ready", flush=True)
    i = 0
    while True:
        ids = k.submit_many([{"queue": "q", "id": f"b{i}-{j}"} for j in range(10)])
        lease = k.claim("w")
        k.complete(lease, {"batch": i})
        print(f"acked {i} {lease.task_id}", flush=True)     # after the calls returned
        i += 1
""")


def _run_leader_and_kill(dsn: str, path, partition: int, ack: str, after: int):
    """Start a leader process, read ``after`` acknowledgements, kill -9 it; returns the
    acknowledged batches and completed task ids."""
    proc = subprocess.Popen([sys.executable, "-c", LEADER, dsn, str(path), str(partition), ack],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    acked: list[int] = []
    completed: list[str] = []
    watchdog = threading.Timer(CHILD_TIMEOUT_S, proc.kill)   # a hung child fails the test
    watchdog.start()
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == "ready\n", line + proc.stderr.read() if proc.stderr else ""
        while len(acked) < after:
            line = proc.stdout.readline()
            assert line.startswith("acked"), line
            _, i, tid = line.split()
            acked.append(int(i))
            completed.append(tid)
    finally:
        watchdog.cancel()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(CHILD_TIMEOUT_S)
        proc.stdout.close()     # type: ignore[union-attr]
        proc.stderr.close()     # type: ignore[union-attr]
    return acked, completed


@pytest.mark.parametrize("trial", range(TRIALS))
def test_replicated_ack_loses_nothing_across_kill_9_and_the_standby_takes_over(
        tmp_path, pg, partition, trial):
    rng = random.Random(trial)
    sb = Standby(tmp_path / "standby", pg.dsn, partition=partition)
    sb.follow(interval=0.001)
    acked, completed = _run_leader_and_kill(pg.dsn, tmp_path / "leader", partition,
                                            "replicated", rng.randint(1, 40))
    k = sb.promote(wait=60, lease_ttl=5)        # once the dead leader's lease lapsed
    for i in acked:
        for j in range(10):
            k.task(f"b{i}-{j}")                 # raises UnknownTaskError if lost
    for tid in completed:
        assert k.task(tid).status == "COMPLETED"
    assert k.claim("w") is not None            # the new leader serves
    digest = k.digest()
    k.close()
    # The standby's state is the chain's: a fresh restore replays to the same digest.
    restore(pg.dsn, tmp_path / "fresh", partition=partition)
    assert Kernel.replay(tmp_path / "fresh").digest() == digest


@pytest.mark.parametrize("ack", ["replicated", "local"])
def test_a_killed_leader_reopens_and_ships_what_postgresql_lacks(tmp_path, pg, partition, ack):
    acked, completed = _run_leader_and_kill(pg.dsn, tmp_path / "leader", partition, ack, 15)
    # the same directory (same holder: its lock proves the old process is gone)
    k = Kernel.open(tmp_path / "leader", replicate=pg.dsn, partition=partition, ack=ack)
    for tid in completed:
        assert k.task(tid).status == "COMPLETED"
    digest = k.digest()
    k.close()
    restore(pg.dsn, tmp_path / "fresh", partition=partition)
    assert Kernel.replay(tmp_path / "fresh").digest() == digest


def test_postgresql_stopped_and_restarted_under_load_in_replicated_mode(tmp_path):
    cluster = new_cluster()
    try:
        k = Kernel.open(tmp_path / "a", replicate=cluster.dsn, ack="replicated",
                        commit_timeout=0.2, lease_ttl=60)
        k.declare_queue("q")
        acked: list[str] = []
        for i in range(20):
            acked += k.submit_many([{"queue": "q", "id": f"t{i}-{j}"} for j in range(5)])
        cluster.stop()
        with pytest.raises(ReplicationUnavailableError, match="PostgreSQL did not answer"):
            k.submit("q", id="unacknowledged")
        with pytest.raises(KernelFailedError):
            k.submit("q", id="refused")
        k.close()
        with pytest.raises(ReplicationUnavailableError):
            Kernel.open(tmp_path / "a", replicate=cluster.dsn, ack="replicated")
        cluster.start()
        k = Kernel.open(tmp_path / "a", replicate=cluster.dsn, ack="replicated")
        for tid in acked:
            k.task(tid)
        k.submit("q", id="after-recovery")
        digest = k.digest()
        k.close()
        restore(cluster.dsn, tmp_path / "fresh")
        assert Kernel.replay(tmp_path / "fresh").digest() == digest
    finally:
        cluster.close()


def test_local_mode_keeps_acknowledging_through_a_blip_then_bounds_the_backlog(tmp_path):
    cluster = new_cluster()
    try:
        k = Kernel.open(tmp_path / "a", replicate=cluster.dsn, ack="local", max_backlog=50,
                        commit_timeout=0.1, lease_ttl=600)
        k.declare_queue("q")
        k._log.flush_replication()
        cluster.stop()
        acked = [k.submit("q", id=f"blip-{i}") for i in range(50)]     # acknowledged locally
        with pytest.raises(ReplicationBacklogError, match="max_backlog=50"):
            k.submit("q", id="one-too-many")
        with pytest.raises(KernelFailedError):
            k.submit("q", id="refused")
        k.close()
        cluster.start()
        k = Kernel.open(tmp_path / "a", replicate=cluster.dsn, ack="local")
        for tid in acked:
            k.task(tid)
        digest = k.digest()
        k.close()
        restore(cluster.dsn, tmp_path / "fresh")
        assert Kernel.replay(tmp_path / "fresh").digest() == digest
    finally:
        cluster.close()


def test_local_mode_ships_the_backlog_when_postgresql_returns(tmp_path):
    cluster = new_cluster()
    try:
        k = Kernel.open(tmp_path / "a", replicate=cluster.dsn, ack="local",
                        commit_timeout=0.1, lease_ttl=600)
        k.declare_queue("q")
        k._log.flush_replication()
        cluster.stop()
        for i in range(20):
            k.submit("q", id=f"blip-{i}")
        assert k._log.backlog > 0
        cluster.start()
        k._log.flush_replication(timeout=CHILD_TIMEOUT_S)
        assert k._log.backlog == 0
        k.submit("q", id="after")
        digest = k.digest()
        k.close()
        restore(cluster.dsn, tmp_path / "fresh")
        assert Kernel.replay(tmp_path / "fresh").digest() == digest
    finally:
        cluster.close()


def test_local_mode_stops_acknowledging_once_the_lease_could_not_be_renewed(tmp_path):
    # A leader cut off from PostgreSQL longer than its lease may have been replaced by a
    # standby: in local mode it must stop acknowledging (no split brain).
    from eskernel.errors import LeaderLeaseLostError

    cluster = new_cluster()
    try:
        k = Kernel.open(tmp_path / "a", replicate=cluster.dsn, ack="local", lease_ttl=0.2,
                        commit_timeout=0.05)
        k.declare_queue("q")
        cluster.stop()
        with pytest.raises(LeaderLeaseLostError, match="could not be renewed"):
            for i in range(10_000_000):         # bounded: the lease lapses long before
                k.submit("q", id=f"t{i}")
                if i % 1000 == 0:
                    threading.Event().wait(0.01)
        with pytest.raises(KernelFailedError):
            k.submit("q", id="refused")
        k.close()
    finally:
        cluster.close()


LOADED = textwrap.dedent("""
    import sys
    from eskernel import Kernel
    from eskernel.errors import EskernelError
    dsn, path = sys.argv[1], sys.argv[2]
    k = Kernel.open(path, replicate=dsn, ack="replicated", lease_ttl=60, commit_timeout=0.5,
                    durability="write")
    k.declare_queue("q")
    print("ready", flush=True)
    i = 0
    try:
        while True:
            k.submit_many([{"queue": "q", "id": f"b{i}-{j}"} for j in range(10)])
            print(f"acked {i}", flush=True)
            i += 1
    except EskernelError as err:
        print(f"error {type(err).__name__}", flush=True)
        try:
            k.submit("q", id="after-error")
        except EskernelError as again:
            print(f"then {type(again).__name__}", flush=True)
""")


def test_postgresql_stopped_while_a_leader_process_commits(tmp_path):
    cluster = new_cluster()
    try:
        proc = subprocess.Popen([sys.executable, "-c", LOADED, cluster.dsn,
                                 str(tmp_path / "a")], stdout=subprocess.PIPE, text=True)
        watchdog = threading.Timer(CHILD_TIMEOUT_S, proc.kill)
        watchdog.start()
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
            acked = []
            while len(acked) < 20:
                acked.append(int(proc.stdout.readline().split()[1]))
            cluster.stop()          # fast shutdown while the leader commits
            out, _ = proc.communicate(timeout=CHILD_TIMEOUT_S)
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(CHILD_TIMEOUT_S)
        lines = out.splitlines()
        acked += [int(ln.split()[1]) for ln in lines if ln.startswith("acked")]
        assert lines[-2:] == ["error ReplicationUnavailableError", "then KernelFailedError"]
        cluster.start()
        k = Kernel.open(tmp_path / "a", replicate=cluster.dsn, ack="replicated")
        for i in acked:
            for j in range(10):
                k.task(f"b{i}-{j}")
        digest = k.digest()
        k.close()
        restore(cluster.dsn, tmp_path / "fresh")
        fresh = Kernel.replay(tmp_path / "fresh")
        assert fresh.digest() == digest
        for i in acked:
            fresh.task(f"b{i}-0")
    finally:
        cluster.close()


def test_a_following_standby_rides_out_a_postgresql_restart(tmp_path):
    cluster = new_cluster()
    try:
        k = Kernel.open(tmp_path / "a", replicate=cluster.dsn, ack="replicated",
                        lease_ttl=600)
        k.declare_queue("q")
        sb = Standby(tmp_path / "s", cluster.dsn)
        sb.follow(interval=0.001)
        k.close()
        cluster.stop()
        wait_until(lambda: sb.error is not None, "the standby to meet the outage")
        assert isinstance(sb.error, ReplicationUnavailableError)
        cluster.start()
        k = Kernel.open(tmp_path / "a", replicate=cluster.dsn, ack="replicated")
        k.submit("q", id="after-restart")
        wait_until(lambda: sb.offset == k._log.next_offset,
                   "the standby's thread to catch up after the restart")
        sb.stop()
        assert sb.digest() == k.digest()
        sb.close()
        k.close()
    finally:
        cluster.close()
