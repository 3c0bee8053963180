"""Claim p50 as the number of queued tasks grows (10 k, 100 k, 1 M; 10 M only with
``ESKERNEL_BENCH_10M=1``: building it through ``submit_many`` takes ~5-10 minutes and
several GB).  Same workload as ``bench/test_claim.py`` in ``buffer`` mode; each round
claims at most 1/32 of the agent's share and tops it up first, so the size holds.
"""

from __future__ import annotations

import gc
from typing import Any

import pytest

from bench.conftest import (baseline_world, latency_loop, percentiles, record, topup_specs)
from bench.targets import sizes

S = sizes()
CASES = [(impl, n) for n in S["scale"] for impl in ("core", "baseline-heapq")]


@pytest.mark.benchmark(group="scale")
@pytest.mark.parametrize("impl,n", CASES, ids=[f"{i}-{n}" for i, n in CASES])
def test_claim_scale(benchmark: Any, worlds: Any, impl: str, n: int) -> None:
    k_claims = max(100, min(S["scale_k"], n // 16 // 32))
    rounds = min(20, max(3, -(-3 * S["scale_k"] // k_claims)))
    sched = worlds.open(n, "buffer") if impl == "core" else baseline_world(n)
    lat: list[int] = []
    rnd = [0]

    def setup() -> None:
        rnd[0] += 1
        sched.submit_many(topup_specs(k_claims, seed=rnd[0], tag=f"s{impl}{n}-{rnd[0]}"))
        gc.collect()

    try:
        benchmark.pedantic(lambda: latency_loop(sched.claim, "a", k_claims, lat),
                           setup=setup, rounds=rounds, iterations=1)
    finally:
        if impl == "core":
            worlds.discard(sched)
    p = percentiles(lat)
    record(benchmark, impl, n=n, items=k_claims, p50_us=p["p50"], p99_us=p["p99"],
           p999_us=p["p999"], claims=p["n"])
