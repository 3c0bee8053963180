"""Claim latency with N ready tasks across 64 queues; the agent serves 4 of them.

Each round claims ``claim_k`` tasks one call at a time, timing every call with
``perf_counter_ns`` (the timer's own cost, ~50-100 ns, is included and recorded as
``timer_overhead_ns``).  Before each round (untimed) ``claim_k`` fresh tasks are submitted
to the agent's queues, so the ready count stays at N.  The event of every claim is appended
to the log (``buffer`` or ``write`` durability); the baseline has no log.
"""

from __future__ import annotations

import gc
from typing import Any

import pytest

from bench.conftest import (baseline_world, latency_loop, percentiles, record,
                            timer_overhead_ns, topup_specs)
from bench.targets import sizes

S = sizes()
CASES = [("core", "buffer"), ("core", "write"), ("baseline-heapq", None)]


@pytest.mark.benchmark(group="claim")
@pytest.mark.parametrize("impl,durability", CASES,
                         ids=["core-buffer", "core-write", "baseline-heapq"])
def test_claim_latency(benchmark: Any, worlds: Any, impl: str, durability: str | None) -> None:
    n, k_claims = S["claim_n"], S["claim_k"]
    sched = worlds.open(n, durability) if impl == "core" else baseline_world(n)
    lat: list[int] = []
    rnd = [0]

    def setup() -> None:
        rnd[0] += 1
        sched.submit_many(topup_specs(k_claims, seed=rnd[0], tag=f"{impl}{durability}{rnd[0]}"))
        gc.collect()

    def run() -> None:
        got = latency_loop(sched.claim, "a", k_claims, lat)
        assert got[-1] is not None

    try:
        benchmark.pedantic(run, setup=setup, rounds=S["claim_rounds"], iterations=1)
    finally:
        if impl == "core":
            worlds.discard(sched)
    p = percentiles(lat)
    values: dict[str, Any] = {"n_ready": n, "claims": p["n"], "durability": durability or "none",
                              "p50_us": p["p50"], "p99_us": p["p99"], "p999_us": p["p999"],
                              "max_us": p["max"], "timer_overhead_ns": timer_overhead_ns(),
                              "items": k_claims}
    modes = [durability] if durability else ["buffer", "write"]
    for mode in modes:
        values[f"kernel.claim.{mode}.p50"] = p["p50"]
        values[f"kernel.claim.{mode}.p99"] = p["p99"]
        values[f"kernel.claim.{mode}.p999"] = p["p999"]
    record(benchmark, impl, **values)
