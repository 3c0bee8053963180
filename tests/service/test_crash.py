"""kill -9 of the server under load from several worker processes: every acknowledged
submit and completion survives the restart, workers reconnect and finish the work, and a
completion with a lease from before the crash that was re-issued is rejected.

A few iterations here; ``ESKERNEL_SERVE_TORTURE=100`` runs that many."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from eskernel import StaleLeaseError
from eskernel.service import Client
from tests.service.helpers import ServerProcess

ITERATIONS = int(os.environ.get("ESKERNEL_SERVE_TORTURE", "2"))
WORKERS = 3


@pytest.mark.parametrize("durability", ["write", "fsync"])
def test_kill_9_under_load_loses_nothing_acknowledged(tmp_path, sockdir, durability):
    directory, sock = tmp_path / "log", sockdir / "k"
    server = ServerProcess(directory, sock, "--durability", durability).start()
    stop = tmp_path / "stop"
    outs = [tmp_path / f"done-{i}" for i in range(WORKERS)]
    workers = []
    acked: list[str] = []
    producer = probe = None
    try:
        with Client(server.address) as c:
            c.declare_queue("q")
            c.declare_queue("pq")
            for i in range(WORKERS):
                c.register_agent(f"w{i}", ["q"], 16)
            c.register_agent("probe", ["pq"], ITERATIONS + 1)
        for i in range(WORKERS):
            with open(tmp_path / f"worker-{i}.log", "wb") as log:
                workers.append(subprocess.Popen(
                    [sys.executable, "-m", "tests.service.crash_worker", server.address,
                     f"w{i}", str(outs[i]), str(stop)], stderr=log))
        producer = Client(server.address, reconnect=120, client_id="producer")
        probe = Client(server.address, reconnect=120, heartbeat=False)
        stale = []
        for it in range(ITERATIONS):
            for _ in range(5):
                acked += producer.submit_many([{"queue": "q", "payload": it}
                                               for _ in range(40)])
            probe.submit("pq", id=f"probe-{it}", timeout=0.3, priority=100 + it,
                         backoff={"initial": 0.0})
            lease = probe.claim("probe")      # a lease granted before the crash
            assert lease is not None and lease.task_id == f"probe-{it}"
            stale.append(lease)
            server.kill9()
            server.start()
        acked += producer.submit_many([{"queue": "q", "payload": "last"} for _ in range(40)])
        # the probe leases expire after the restart; the tasks are leased again, completed
        probes = [s.task_id for s in stale]
        while any(v.status != "COMPLETED" for v in map(producer.task, probes)):
            lease = probe.claim("probe", wait=1.0)
            if lease is not None:
                assert lease.lease_id not in {s.lease_id for s in stale}
                probe.complete(lease, "re-issued")
        for lease in stale:
            with pytest.raises(StaleLeaseError):
                probe.complete(lease, "late")
        views = producer.wait(acked, timeout=120)
        assert all(v.status == "COMPLETED" for v in views)
        stop.touch()
        for w in workers:
            w.wait(60)
        done = [line.split() for o in outs if o.exists() for line in o.read_text().splitlines()]
        by_task: dict[str, int] = {}
        for tid, lid in done:
            assert tid not in by_task, f"{tid} acknowledged as completed twice"
            by_task[tid] = int(lid)
        assert set(by_task) <= set(acked)
        for v in views:
            assert v.result == v.id
        for tid in sorted(by_task)[:: max(1, len(by_task) // 40)]:
            completions = [e for e in producer.history(tid) if e["t"] == "completed"]
            # exactly one completion, by the lease whose completion was acknowledged
            assert [e["lease"] for e in completions] == [by_task[tid]]
    finally:
        stop.touch()
        for cl in (producer, probe):
            if cl is not None:
                cl.close()
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait(30)
        server.close()


def test_sigterm_shuts_down_cleanly(tmp_path, sockdir):
    directory, sock = tmp_path / "log", sockdir / "t"
    server = ServerProcess(directory, sock).start()
    try:
        with Client(server.address) as c:
            c.declare_queue("q")
            ids = c.submit_many([{"queue": "q"} for _ in range(100)])
        assert server.terminate() == 0
        assert not sock.exists()
        snaps = list(directory.glob("*.snap"))
        assert snaps, "no snapshot written at shutdown"
        server.start()              # the lock was released; the state is all there
        with Client(server.address) as c:
            assert [v.id for v in c.tasks(status="READY")] == ids
    finally:
        server.close()
