"""Shared fixtures of the benchmark suite: options, seeded workloads, prebuilt worlds.

Building a kernel with 1 M tasks takes tens of seconds (``submit_many`` costs ~20-50 µs
per task on a 2-core machine), so each world is built once per session into a durable
directory, snapshotted, and every benchmark that needs it opens a *copy* of that directory
(one writer per directory) from the snapshot.  Nothing here is timed.
"""

from __future__ import annotations

import gc
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from bench.baselines import HeapqScheduler
from bench.targets import sizes

N_QUEUES = 64
AGENT_QUEUES = ("q0", "q1", "q2", "q3")
BIG_CAPACITY = 2**31 - 1


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("eskernel bench")
    g.addoption("--bench-quick", action="store_true", default=False,
                help="small workloads (the whole suite in under a minute)")
    g.addoption("--peers", action="store_true", default=False,
                help="also run the installed peer systems (huey, persist-queue, dask)")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--bench-quick", default=False):
        os.environ["ESKERNEL_BENCH_QUICK"] = "1"


# -- helpers used by the test modules --------------------------------------------------

def percentiles(lat_ns: list[int]) -> dict[str, float]:
    """p50 / p99 / p99.9 / max of per-call latencies, in microseconds."""
    s = sorted(lat_ns)
    n = len(s)

    def q(p: float) -> float:
        return s[min(n - 1, int(p * n))] / 1000.0

    return {"p50": q(0.50), "p99": q(0.99), "p999": q(0.999), "max": s[-1] / 1000.0, "n": n}


def timer_overhead_ns() -> float:
    """Median cost of the two ``perf_counter_ns`` calls around each timed call."""
    pc = time.perf_counter_ns
    samples = []
    for _ in range(20_000):
        t0 = pc()
        samples.append(pc() - t0)
    samples.sort()
    return float(samples[len(samples) // 2])


def task_specs(n: int, seed: int, queues: int = N_QUEUES,
               prefix: str = "t") -> list[dict[str, Any]]:
    """n seeded task specs spread over ``queues`` queues with priorities 1..5."""
    rng = random.Random(seed)
    return [{"queue": f"q{rng.randrange(queues)}", "priority": rng.randint(1, 5),
             "id": f"{prefix}{i}"} for i in range(n)]


def topup_specs(n: int, seed: int, tag: str) -> list[dict[str, Any]]:
    """n fresh tasks on the agent's four queues (to keep the ready count constant)."""
    rng = random.Random(seed)
    return [{"queue": AGENT_QUEUES[rng.randrange(4)], "priority": rng.randint(1, 5),
             "id": f"u{tag}-{i}"} for i in range(n)]


def setup_world(k: Any, queues: int = N_QUEUES) -> None:
    for i in range(queues):
        k.declare_queue(f"q{i}")
    k.register_agent("a", list(AGENT_QUEUES), capacity=BIG_CAPACITY)


def submit_all(k: Any, specs: list[dict[str, Any]], batch: int = 50_000) -> None:
    enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(0, len(specs), batch):
            k.submit_many(specs[i:i + batch])
    finally:
        if enabled:
            gc.enable()


def record(benchmark: Any, impl: str, **values: Any) -> None:
    benchmark.extra_info["impl"] = impl
    benchmark.extra_info.update(values)


# -- worlds ------------------------------------------------------------------------------

class Worlds:
    """Durable directories holding the claim workload at a given size, built on demand."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._built: dict[int, Path] = {}
        self._copies = 0
        self.build_seconds: dict[int, float] = {}

    def directory(self, n: int) -> Path:
        if n not in self._built:
            from eskernel import Kernel
            d = self.root / f"world-{n}"
            t0 = time.perf_counter()
            k = Kernel.open(d, durability="buffer", snapshot_every=0)
            try:
                setup_world(k)
                submit_all(k, task_specs(n, seed=n))
                k.snapshot()
            finally:
                k.close()
            gc.collect()
            self.build_seconds[n] = time.perf_counter() - t0
            self._built[n] = d
        return self._built[n]

    def copy(self, n: int, snapshot: bool = True) -> Path:
        src = self.directory(n)
        self._copies += 1
        dst = self.root / f"copy-{self._copies}"
        ignore = None if snapshot else shutil.ignore_patterns("*.snap")
        shutil.copytree(src, dst, ignore=ignore)
        return dst

    def open(self, n: int, durability: str) -> Any:
        from eskernel import Kernel
        k = Kernel.open(self.copy(n), durability=durability, snapshot_every=0)
        gc.collect()
        return k

    @staticmethod
    def discard(k: Any) -> None:
        path = getattr(getattr(k, "_log", None), "path", None)
        k.close()
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)
        gc.collect()


@pytest.fixture(scope="session")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worlds]:
    w = Worlds(tmp_path_factory.mktemp("worlds"))
    yield w
    shutil.rmtree(w.root, ignore_errors=True)


def baseline_world(n: int) -> HeapqScheduler:
    s = HeapqScheduler()
    setup_world(s)
    submit_all(s, task_specs(n, seed=n))
    gc.collect()
    return s


@pytest.fixture(scope="session")
def size() -> dict[str, Any]:
    return sizes()


@pytest.fixture
def peers_enabled(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--peers"))


def latency_loop(call: Callable[[Any], Any], arg: Any, k: int, out: list[int]) -> list[Any]:
    """``call(arg)`` k times, appending each call's latency (ns) to ``out``; the results."""
    pc = time.perf_counter_ns
    res: list[Any] = []
    append, lat = res.append, out.append
    for _ in range(k):
        t0 = pc()
        r = call(arg)
        lat(pc() - t0)
        append(r)
    return res
