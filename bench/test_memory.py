"""Memory per queued task at N tasks (1 M in the full run).

- ``core`` (the target): ``tracemalloc`` delta of building the compiled
  :class:`kernel._core.Scheduler` directly with N ``add_task`` calls (64 queues, no
  dependencies).  Counted: the C arrays (they are allocated with ``PyMem_*``, which
  tracemalloc sees) and the scheduler's list of id references.  Not counted: the id strings
  themselves (built before tracing; reported as ``id_bytes_per_task``) and payloads.
- ``kernel-rss`` (informational): RSS delta of ``Kernel.open`` of the N-task world from its
  snapshot: the whole kernel (core, id strings, id->handle dict, payload/metadata lists),
  allocator slack included.
- ``baseline-heapq``: ``tracemalloc`` delta of building the heapq scheduler with the same
  tasks, with the id strings prebuilt and excluded the same way.
"""

from __future__ import annotations

import gc
import random
import shutil
import subprocess
import sys
import tracemalloc
from typing import Any

import pytest

from bench.baselines import HeapqScheduler
from bench.conftest import AGENT_QUEUES, BIG_CAPACITY, N_QUEUES, record
from bench.targets import sizes

S = sizes()


_RSS_CHILD = """
import gc, os, sys
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
import eskernel, eskernel.eventlog  # imports are not the kernel's state
gc.collect()
before = rss()
k = eskernel.Kernel.open(sys.argv[1], durability="buffer", snapshot_every=0)
gc.collect()
print(rss() - before)
"""


def _workload(n: int) -> tuple[list[str], list[int], list[int]]:
    rng = random.Random(n)
    queues = [rng.randrange(N_QUEUES) for _ in range(n)]
    prios = [rng.randint(1, 5) for _ in range(n)]
    return [f"t{i}" for i in range(n)], queues, prios


def build_core(ids: list[str], queues: list[int], prios: list[int]) -> Any:
    from eskernel._core import Scheduler
    s = Scheduler()
    for i in range(N_QUEUES):
        s.add_queue(f"q{i}", 0, False)
    pol = s.add_policy(1_000_000_000, 2.0, 60_000_000_000, 0.0)
    add, nodeps = s.add_task, []
    for tid, q, p in zip(ids, queues, prios):
        add(tid, q, p, 3, 30_000_000_000, -1, 0, pol, nodeps, 1)
    return s


def build_baseline(ids: list[str], queues: list[int], prios: list[int]) -> Any:
    s = HeapqScheduler()
    for i in range(N_QUEUES):
        s.declare_queue(f"q{i}")
    s.register_agent("a", list(AGENT_QUEUES), BIG_CAPACITY)
    qn = [f"q{i}" for i in range(N_QUEUES)]
    for tid, q, p in zip(ids, queues, prios):
        s.submit(qn[q], id=tid, priority=p)
    return s


@pytest.mark.benchmark(group="memory")
@pytest.mark.parametrize("impl", ["core", "baseline-heapq", "kernel-rss"])
def test_memory_per_task(benchmark: Any, worlds: Any, impl: str) -> None:
    n = S["memory_n"]
    out: dict[str, float] = {}
    if impl == "kernel-rss":
        path = worlds.copy(n)

        def run() -> None:
            out["bytes"] = float(subprocess.run(
                [sys.executable, "-c", _RSS_CHILD, str(path)], check=True,
                capture_output=True, text=True).stdout.split()[-1])
        try:
            benchmark.pedantic(run, rounds=1, iterations=1)
        finally:
            shutil.rmtree(path, ignore_errors=True)
        record(benchmark, impl, items=n, bytes_per_task=out["bytes"] / n,
               measured="RSS delta of Kernel.open from snapshot in a fresh process")
        return
    ids, queues, prios = _workload(n)
    id_bytes = sum(sys.getsizeof(t) for t in ids) / n
    build = build_core if impl == "core" else build_baseline

    def run() -> None:
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            s = build(ids, queues, prios)
            gc.collect()
            out["bytes"] = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        del s
    benchmark.pedantic(run, rounds=1, iterations=1)
    per = out["bytes"] / n
    record(benchmark, impl, items=n, bytes_per_task=per, id_bytes_per_task=id_bytes,
           measured="tracemalloc delta, id strings excluded", **{"kernel.memory.core": per})
