"""The one-call-at-a-time workloads of bench/workloads.py, each beside its named baselines
in the same run (group = workload; param id = implementation):

- ``w1``: N tasks, priorities 1..4: ``core`` (buffer), ``baseline-seed``,
  ``baseline-heapq``, ``peer-huey-memory``.
- ``w1-starved``: the same with every tenth task of a type no agent serves (the seed design
  runs one round: it is O(n) per claim).
- ``w2``, ``w2-shuffled``: the DAG (each layer shuffled): ``core``, ``baseline-seed``,
  ``baseline-heapq`` (heapq + dependency counters), ``baseline-graphlib``.
- ``w3``: W1 durable: ``core-fsync`` (every call acknowledged on disk; claims through
  ``complete_and_claim``), ``core-fsync-plain`` (claim, complete one call each) and
  ``peer-huey-sqlite`` (WAL, synchronous=FULL).

huey comes with the ``compare`` extra; without it its rows are skipped with the reason.
Every round starts from a fresh scheduler (untimed); the timed part is the whole workload.
``python bench/workload_report.py out.json`` prints medians and the ratios to each baseline.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import pytest

from bench import peers
from bench.baselines import HeapqScheduler
from bench.conftest import BIG_CAPACITY, record
from bench.targets import quick_mode
from bench.workloads import (SeedScheduler, UNSERVED, dag_ids, graphlib_run, huey_run,
                             huey_storage, kernel_w1, kernel_w2, w1_prios)

QUICK = quick_mode()
W1_N = 10_000 if QUICK else 100_000
STARVED_N = 5_000 if QUICK else 100_000
W2_SHAPE = (20, 500) if QUICK else (100, 1_000)
W3_N = 300 if QUICK else 20_000
ROUNDS = 3


class Fresh:
    """A new scheduler (and directory) per round."""

    def __init__(self, impl: str, durability: str = "buffer") -> None:
        self.impl, self.durability = impl, durability
        self.sched: Any = None
        self.dir: str | None = None

    def __call__(self) -> None:
        self.close()
        if self.impl == "core":
            from eskernel import Kernel
            self.dir = tempfile.mkdtemp(prefix="eskw-")
            self.sched = Kernel.open(self.dir, durability=self.durability, snapshot_every=0)
        elif self.impl == "baseline-seed":
            self.sched = SeedScheduler()
        else:
            self.sched = HeapqScheduler()
        for q in ("q", UNSERVED):
            self.sched.declare_queue(q)
        self.sched.register_agent("a", ["q"], capacity=1 if self.impl != "baseline-heapq"
                                  else BIG_CAPACITY)

    def close(self) -> None:
        if self.sched is not None and hasattr(self.sched, "close"):
            self.sched.close()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.sched, self.dir = None, None


def _run(benchmark: Any, impl: str, n: int, setup: Callable[[], None],
         run: Callable[[], int], expect: int, rounds: int = ROUNDS, **info: Any) -> None:
    done: list[int] = []
    benchmark.pedantic(lambda: done.append(run()), setup=setup, rounds=rounds, iterations=1)
    assert done[-1] == expect, (impl, done[-1], expect)
    record(benchmark, impl, items=n, tasks_per_s=n / benchmark.stats.stats.median, **info)


def _huey(impl: str) -> None:
    why = peers.available(impl)
    if why:
        pytest.skip(why)


W1_IMPLS = ["core", "baseline-seed", "baseline-heapq", "peer-huey-memory"]


@pytest.mark.benchmark(group="w1")
@pytest.mark.parametrize("impl", W1_IMPLS)
def test_w1(benchmark: Any, impl: str, tmp_path: Path) -> None:
    prios = w1_prios(W1_N)
    if impl.startswith("peer"):
        _huey(impl)
        box: dict[str, Any] = {}
        _run(benchmark, impl, W1_N, lambda: box.update(st=huey_storage("memory", tmp_path)),
             lambda: huey_run(box["st"], prios), W1_N)
        return
    fresh = Fresh(impl)
    try:
        _run(benchmark, impl, W1_N, fresh, lambda: kernel_w1(fresh.sched, prios), W1_N)
    finally:
        fresh.close()


@pytest.mark.benchmark(group="w1-starved")
@pytest.mark.parametrize("impl", ["core", "baseline-seed", "baseline-heapq"])
def test_w1_starved(benchmark: Any, impl: str) -> None:
    prios = w1_prios(STARVED_N)
    served = STARVED_N - STARVED_N // 10
    fresh = Fresh(impl)
    try:
        # the seed design is O(n) per claim here: one round (tens of seconds at 100k)
        _run(benchmark, impl, STARVED_N, fresh, lambda: kernel_w1(fresh.sched, prios, True),
             served, rounds=1 if impl == "baseline-seed" and not QUICK else ROUNDS)
    finally:
        fresh.close()


@pytest.mark.benchmark(group="w2")
@pytest.mark.parametrize("shuffled", [False, True], ids=["layered", "shuffled"])
@pytest.mark.parametrize("impl", ["core", "baseline-seed", "baseline-heapq", "baseline-graphlib"])
def test_w2(benchmark: Any, impl: str, shuffled: bool) -> None:
    benchmark.group = "w2-shuffled" if shuffled else "w2"
    dag = dag_ids(*W2_SHAPE, shuffled=shuffled)
    n = len(dag)
    if impl == "baseline-graphlib":
        _run(benchmark, impl, n, lambda: None, lambda: graphlib_run(dag), n)
        return
    fresh = Fresh(impl)
    try:
        _run(benchmark, impl, n, fresh, lambda: kernel_w2(fresh.sched, dag), n)
    finally:
        fresh.close()


def _w3_core(k: Any, prios: list[int]) -> int:
    # One caller, one call at a time, every call acknowledged on disk; the result of a task
    # and the claim of the next go in one call (and one sync).
    submit, complete_and_claim = k.submit, k.complete_and_claim
    for i, p in enumerate(prios):
        submit("q", i, priority=p)
    n = 0
    lease = k.claim("a")
    while lease is not None:
        lease = complete_and_claim(lease, None)
        n += 1
    return n


@pytest.mark.benchmark(group="w3")
@pytest.mark.parametrize("impl", ["core-fsync", "core-fsync-plain", "peer-huey-sqlite"])
def test_w3(benchmark: Any, impl: str, tmp_path: Path) -> None:
    prios = w1_prios(W3_N)
    if impl.startswith("peer"):
        _huey(impl)
        box: dict[str, Any] = {}

        def setup() -> None:
            d = Path(tempfile.mkdtemp(dir=tmp_path))
            box["st"] = huey_storage("sqlite", d)
        _run(benchmark, impl, W3_N, setup, lambda: huey_run(box["st"], prios), W3_N,
             conditions="huey SqliteStorage, WAL, synchronous=FULL")
        return
    fresh = Fresh("core", "fsync")
    run = ((lambda: _w3_core(fresh.sched, prios)) if impl == "core-fsync"
           else (lambda: kernel_w1(fresh.sched, prios)))
    try:
        _run(benchmark, impl, W3_N, fresh, run, W3_N, conditions="eskernel, fsync durability")
    finally:
        fresh.close()
