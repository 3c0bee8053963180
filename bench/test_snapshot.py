"""Call latency while automatic snapshots are taken, at the claim workload's size (1 M live
tasks in the full run), and the disk the snapshots use.

Each round claims and completes ``claim_k / 2`` tasks one call at a time (every call
timed), after an untimed top-up of as many tasks to the agent's queues.
``core-snapshots`` opens the world with ``snapshot_every=10_000`` and
``snapshot_growth=0``: a snapshot is started every 2,000 events whenever none is in flight,
so the background writer runs nearly all the time (the worst case; the default spacing
waits for the log to grow by half a snapshot's size).  ``core-no-snapshots`` is the same
world with automatic snapshots off: the named baseline.  Reported: p50/p99/p99.9/max per
call, the snapshots taken during the rounds, and the bytes of ``*.snap`` files left (bounded
by ``snapshot_keep`` = 2 whatever the number taken).
"""

from __future__ import annotations

import gc
from typing import Any

import pytest

from bench.conftest import latency_loop, percentiles, record, topup_specs
from bench.targets import sizes

S = sizes()


@pytest.mark.benchmark(group="snapshot-latency")
@pytest.mark.parametrize("impl", ["core-snapshots", "core-no-snapshots"])
def test_call_latency_while_snapshotting(benchmark: Any, worlds: Any, impl: str) -> None:
    from eskernel import Kernel
    n, k_calls = S["claim_n"], S["claim_k"]
    every = 2_000 if impl == "core-snapshots" else 0
    path = worlds.copy(n)
    k = Kernel.open(path, durability="buffer", snapshot_every=every, snapshot_growth=0)
    gc.collect()
    claim_lat: list[int] = []
    done_lat: list[int] = []
    rnd = [0]

    def setup() -> None:      # untimed: keep the agent's queues as full as at the start
        rnd[0] += 1
        k.submit_many(topup_specs(k_calls // 2, seed=rnd[0], tag=f"{impl}{rnd[0]}"))

    def run() -> None:
        leases = latency_loop(k.claim, "a", k_calls // 2, claim_lat)
        for lease in leases:
            latency_loop(k.complete, lease, 1, done_lat)

    try:
        benchmark.pedantic(run, setup=setup, rounds=S["claim_rounds"], iterations=1)
        k._snapshotter.wait()
        status = k.snapshot_status()
        snap_bytes = sum(p.stat().st_size for p in path.glob("*.snap"))
    finally:
        worlds.discard(k)
    p = percentiles(claim_lat + done_lat)
    record(benchmark, impl, live_tasks=n, calls=p["n"], p50_us=p["p50"], p99_us=p["p99"],
           p999_us=p["p999"], max_us=p["max"], snapshots_taken=status["taken"],
           snapshots_failed=status["failed"], snapshot_bytes_left=snap_bytes)
