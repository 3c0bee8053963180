"""Replication to PostgreSQL: throughput with batch calls, acknowledgement latency, the
cost of replication in ``local`` mode, standby lag, failover time.

Groups and ids:

* ``replication-throughput`` — one round = ``submit_many`` of B tasks, ``claim_many`` of B,
  ``complete_many`` of B (three calls, three group-commit batches): ``replicated`` (ack
  after the PostgreSQL commit), ``local`` (ack after the local append, shipped in the
  background), ``off`` (no replication: the named baseline).  tasks/s = B / median.
* ``replication-ack`` — the latency of one ``submit_many`` of 100 tasks in ``replicated``
  mode, one call after another (p50 / p99 in ``extra_info``).
* ``replication-lag`` — a standby in another process follows a leader submitting batches
  of 100 every 2 ms; lag = the standby's time of applying an offset minus the leader's
  time of acknowledging it (p50 / p99 in ``extra_info``).
* ``replication-failover`` — kill -9 of a leader process (lease TTL 3 s) to the first
  claim served by the promoted standby; ``ESKERNEL_BENCH_FAILOVER_TRIALS`` trials (5).

PostgreSQL: a throwaway cluster (``tests/pgcluster.py``, fsync on, synchronous_commit on),
on a Unix socket.  Quote medians:

    .venv/bin/python -m pytest bench/test_replication.py -p no:cacheprovider \\
        --benchmark-only --benchmark-columns=median,rounds -o addopts="--import-mode=importlib"
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from eskernel import Kernel

psycopg = pytest.importorskip("psycopg", reason="pip install 'eskernel[replicate]'")
from tests.pgcluster import PgCluster, find_bin  # noqa: E402

B = 1_000 if os.environ.get("ESKERNEL_BENCH_QUICK") else 10_000
FAILOVER_TRIALS = int(os.environ.get("ESKERNEL_BENCH_FAILOVER_TRIALS", "5"))
_partitions = itertools.count(1)


def _pct(values: list[float]) -> dict[str, float]:
    s = sorted(values)
    return {"p50": s[len(s) // 2], "p99": s[min(len(s) - 1, int(0.99 * len(s)))],
            "n": len(s)}


@pytest.fixture(scope="module")
def pg():
    if find_bin("initdb") is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    cluster = PgCluster()
    cluster.start()
    yield cluster
    cluster.close()


def _open(path, pg, mode: str) -> Kernel:
    if mode == "off":
        return Kernel.open(path, durability="write", snapshot_every=0)
    return Kernel.open(path, durability="write", snapshot_every=0, replicate=pg.dsn,
                       partition=next(_partitions), ack=mode)


@pytest.mark.benchmark(group="replication-throughput")
@pytest.mark.parametrize("mode", ["replicated", "local", "off"])
def test_throughput_batch_calls(benchmark, tmp_path, pg, mode):
    k = _open(tmp_path / "k", pg, mode)
    k.declare_queue("q")
    k.register_agent("w", ["q"], capacity=2**31 - 1)
    specs = [{"queue": "q"} for _ in range(B)]

    def round_():
        k.submit_many(specs)
        k.complete_many(k.claim_many("w", B))

    benchmark.pedantic(round_, rounds=7, warmup_rounds=1)
    benchmark.extra_info.update(impl=mode, items=B,
                                tasks_per_s=B / benchmark.stats.stats.median)
    k.close()


@pytest.mark.benchmark(group="replication-ack")
def test_ack_latency_replicated(benchmark, tmp_path, pg):
    k = _open(tmp_path / "k", pg, "replicated")
    k.declare_queue("q")
    specs = [{"queue": "q"} for _ in range(100)]
    lat: list[float] = []

    def call():
        t0 = time.perf_counter()
        k.submit_many(specs)
        lat.append((time.perf_counter() - t0) * 1e3)

    benchmark.pedantic(call, rounds=500, warmup_rounds=20)
    p = _pct(lat)
    benchmark.extra_info.update(impl="replicated", ack_p50_ms=p["p50"], ack_p99_ms=p["p99"])
    k.close()


FOLLOWER = textwrap.dedent("""
    import sys, time
    from eskernel.replication import Standby
    sb = Standby(sys.argv[1], sys.argv[2], partition=int(sys.argv[3]))
    print("ready", sb.offset, flush=True)
    out = []
    while sb.offset < int(sys.argv[4]):
        if sb.poll():
            out.append(f"{sb.offset} {time.time()}")
    print("\\n".join(out), flush=True)
""")


@pytest.mark.benchmark(group="replication-lag")
def test_standby_lag(benchmark, tmp_path, pg):
    part = next(_partitions)
    k = Kernel.open(tmp_path / "k", durability="write", replicate=pg.dsn, partition=part,
                    ack="replicated", snapshot_every=0)
    k.declare_queue("q")
    batches = 300
    end = k._log.next_offset + 100 * batches
    proc = subprocess.Popen([sys.executable, "-c", FOLLOWER, str(tmp_path / "s"), pg.dsn,
                             str(part), str(end)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("ready")
        acked: dict[int, float] = {}
        specs = [{"queue": "q"} for _ in range(100)]

        def run():
            for _ in range(batches):
                k.submit_many(specs)
                acked[k._log.next_offset] = time.time()
                time.sleep(0.002)

        benchmark.pedantic(run, rounds=1, iterations=1)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    applied = {int(a): float(b) for a, b in (ln.split() for ln in out.split("\n") if ln)}
    lags = []
    for off, t_ack in acked.items():
        t_apply = min((t for o, t in applied.items() if o >= off), default=None)
        if t_apply is not None:
            lags.append(max(0.0, t_apply - t_ack) * 1e3)
    p = _pct(lags)
    benchmark.extra_info.update(impl="standby", lag_p50_ms=p["p50"], lag_p99_ms=p["p99"])
    k.close()


LEADER = textwrap.dedent("""
    import sys
    from eskernel import Kernel
    k = Kernel.open(sys.argv[1], replicate=sys.argv[2], partition=int(sys.argv[3]),
                    ack="replicated", lease_ttl=3.0, lease_wait=60)
    k.declare_queue("q")
    k.register_agent("w", ["q"], capacity=1_000_000)
    print("ready", flush=True)
    while True:
        k.submit_many([{"queue": "q"} for _ in range(100)])
        k.complete_many(k.claim_many("w", 50))
""")


@pytest.mark.benchmark(group="replication-failover")
def test_failover_kill_9_to_first_claim(benchmark, tmp_path, pg):
    from eskernel.replication import Standby

    times: list[float] = []
    for trial in range(FAILOVER_TRIALS):
        part = next(_partitions)
        proc = subprocess.Popen([sys.executable, "-c", LEADER, str(tmp_path / f"l{trial}"),
                                 pg.dsn, str(part)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        sb = Standby(tmp_path / f"s{trial}", pg.dsn, partition=part)
        sb.follow(interval=0.001)
        time.sleep(0.5)                       # under load for a while
        t0 = time.perf_counter()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        k = sb.promote(wait=60, lease_ttl=3.0)
        assert k.claim("w") is not None
        times.append(time.perf_counter() - t0)
        k.close()
    p = _pct(times)
    benchmark.pedantic(lambda: None, rounds=1)
    benchmark.extra_info.update(impl="standby", failover_p50_s=p["p50"],
                                failover_max_s=max(times), trials=len(times))
