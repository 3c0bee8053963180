"""tick() expiring K overdue leases at once (buffer mode, manual clock): the timed region
is the one ``tick()`` call; ``items`` = K, so the per-lease cost is median / K.  The
kernel appends an ``expired`` event per lease (and schedules the retry); the baseline puts
the task back in its heap.  Informational."""

from __future__ import annotations

from typing import Any

import pytest

from bench.conftest import record
from bench.targets import sizes
from bench.test_submit import Fresh

S = sizes()


@pytest.mark.benchmark(group="tick")
@pytest.mark.parametrize("impl", ["core", "baseline-heapq"])
def test_tick_expiry(benchmark: Any, impl: str) -> None:
    from eskernel import ManualClock
    k = S["tick_k"]
    clock = ManualClock()
    fresh = Fresh(impl, clock=clock)
    result: list[dict[str, int]] = []

    def setup() -> None:
        fresh()
        fresh.sched.submit_many([{"queue": "q", "priority": 1 + i % 5, "timeout": 1.0}
                                 for i in range(k)])
        fresh.sched.claim_many("a", k)
        clock.advance(2.0)

    try:
        benchmark.pedantic(lambda: result.append(fresh.sched.tick()), setup=setup,
                           rounds=3, iterations=1)
    finally:
        fresh.close()
    assert result[-1]["expired"] == k
    med = benchmark.stats.stats.median
    record(benchmark, impl, items=k, per_lease_us=med / k * 1e6)
