"""A DAG of L layers x W tasks, each task depending on two tasks of the layer before,
drained by one agent with ``claim`` / ``complete`` one call at a time (``buffer`` mode).

The DAG is submitted in the untimed setup (one ``submit_many`` per layer); only the drain
is timed.  Full run: 100 x 1,000 (the kernel issue's workload); ``--quick``: 20 x 500.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from bench import peers
from bench.conftest import record
from bench.targets import sizes
from bench.test_submit import Fresh

S = sizes()


def dag_layers(layers: int, width: int, seed: int = 3) -> list[list[tuple[str, list[str]]]]:
    rng = random.Random(seed)
    out: list[list[tuple[str, list[str]]]] = []
    for lv in range(layers):
        row = []
        for i in range(width):
            deps = ([f"d{lv - 1}-{j}" for j in rng.sample(range(width), 2)] if lv else [])
            row.append((f"d{lv}-{i}", deps))
        out.append(row)
    return out


def drain(s: Any) -> int:
    claim, complete, n = s.claim, s.complete, 0
    while (lease := claim("a")) is not None:
        complete(lease)
        n += 1
    return n


@pytest.mark.benchmark(group="dag")
@pytest.mark.parametrize("impl", ["core", "baseline-heapq", "peer-dask"])
def test_dag_drain(benchmark: Any, impl: str, peers_enabled: bool) -> None:
    layers = dag_layers(S["dag_layers"], S["dag_width"])
    n = S["dag_layers"] * S["dag_width"]
    if impl.startswith("peer"):
        peers.require(impl, peers_enabled)
        run = peers.run_dag(impl, layers)
        benchmark.pedantic(run, rounds=2, iterations=1)
        record(benchmark, impl, items=n, tasks_per_s=n / benchmark.stats.stats.median,
               conditions="dask.get (sync), same DAG, no-op tasks; no log, no leases")
        return
    fresh = Fresh(impl)
    drained = []

    def setup() -> None:
        fresh()
        for row in layers:
            fresh.sched.submit_many([{"queue": "q", "id": tid, "depends_on": deps}
                                     for tid, deps in row])

    try:
        benchmark.pedantic(lambda: drained.append(drain(fresh.sched)), setup=setup,
                           rounds=2, iterations=1)
    finally:
        fresh.close()
    assert drained[-1] == n
    rate = n / benchmark.stats.stats.median
    record(benchmark, impl, items=n, tasks_per_s=rate, layers=S["dag_layers"],
           width=S["dag_width"], **{"kernel.dag": rate})
