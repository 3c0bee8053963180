"""Complete latency: K leased tasks (one queue, buffer mode) completed one call at a time,
each call timed with ``perf_counter_ns``; the event is appended to the log.  Informational
(no target of its own: it is part of the round-trip targets)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from bench.conftest import percentiles, record
from bench.targets import sizes
from bench.test_submit import Fresh

S = sizes()


@pytest.mark.benchmark(group="complete")
@pytest.mark.parametrize("impl", ["core", "baseline-heapq"])
def test_complete_latency(benchmark: Any, impl: str) -> None:
    k = S["complete_k"]
    fresh = Fresh(impl)
    leases: list[Any] = []
    lat: list[int] = []

    def setup() -> None:
        fresh()
        fresh.sched.submit_many([{"queue": "q", "priority": 1 + i % 5} for i in range(k)])
        leases[:] = fresh.sched.claim_many("a", k)

    def run() -> None:
        pc, complete, out = time.perf_counter_ns, fresh.sched.complete, lat.append
        for lease in leases:
            t0 = pc()
            complete(lease)
            out(pc() - t0)

    try:
        benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    finally:
        fresh.close()
    p = percentiles(lat)
    record(benchmark, impl, items=k, p50_us=p["p50"], p99_us=p["p99"], p999_us=p["p999"])
