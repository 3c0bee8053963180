"""Throughput of whole task lifecycles: submit + claim + complete.

Group ``roundtrip`` (the kernel's targets): one task at a time in ``buffer`` mode; the
batch calls (``submit_many`` + ``claim_many`` + ``complete_many``, batches of 1,000)
in ``buffer`` and ``fsync`` mode.  Each round uses a fresh kernel directory (untimed).
``model`` (tests/model.py, O(n) per claim) runs the one-at-a-time loop at a small size.

Group ``queue`` (side by side with peers, ``--peers``): N tasks with four priority levels
submitted, then one consumer claims and completes them all.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from bench import peers
from bench.baselines import HeapqScheduler
from bench.conftest import BIG_CAPACITY, record
from bench.targets import sizes

S = sizes()


def _prios(n: int, seed: int = 7) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(1, 4) for _ in range(n)]


class Fresh:
    """A new scheduler per round: a kernel in a temp dir, the baseline, or the model."""

    def __init__(self, impl: str, durability: str = "buffer", clock: Any = None) -> None:
        self.impl, self.durability, self.clock = impl, durability, clock
        self.sched: Any = None
        self.dir: str | None = None

    def __call__(self) -> None:
        self.close()
        if self.impl == "core":
            from eskernel import Kernel
            self.dir = tempfile.mkdtemp(prefix="eskb-")
            self.sched = Kernel.open(self.dir, durability=self.durability, snapshot_every=0,
                                     clock=self.clock)
        elif self.impl == "model":
            from eskernel import ManualClock
            from tests.model import Model
            self.sched = Model((self.clock or ManualClock()).time_ns)
        else:
            self.sched = HeapqScheduler(self.clock.time_ns if self.clock else None)
        self.sched.declare_queue("q")
        self.sched.register_agent("a", ["q"], capacity=BIG_CAPACITY)

    def close(self) -> None:
        if self.sched is not None and hasattr(self.sched, "close"):
            self.sched.close()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.sched, self.dir = None, None


def one_at_a_time(s: Any, prios: list[int]) -> None:
    submit, claim, complete = s.submit, s.claim, s.complete
    for p in prios:
        submit("q", priority=p)
        complete(claim("a"))


def batched(s: Any, prios: list[int], batch: int) -> None:
    for i in range(0, len(prios), batch):
        s.submit_many([{"queue": "q", "priority": p} for p in prios[i:i + batch]])
        s.complete_many(s.claim_many("a", batch))


RT_CASES = [
    ("single", "core", "buffer"), ("single", "baseline-heapq", None), ("single", "model", None),
    ("batch", "core", "buffer"), ("batch", "baseline-heapq", None),
    ("fsync", "core", "fsync"),
]


@pytest.mark.benchmark(group="roundtrip")
@pytest.mark.parametrize("mode,impl,durability", RT_CASES,
                         ids=[f"{m}-{i}" + (f"-{d}" if d else "") for m, i, d in RT_CASES])
def test_roundtrip(benchmark: Any, mode: str, impl: str, durability: str | None) -> None:
    n = {"single": S["rt_n"], "batch": S["rt_batch_n"], "fsync": S["rt_fsync_n"]}[mode]
    if impl == "model":
        n = S["model_n"]
    prios = _prios(n)
    fresh = Fresh(impl, durability or "buffer")
    if mode == "single":
        def run() -> None:
            one_at_a_time(fresh.sched, prios)
    else:
        def run() -> None:
            batched(fresh.sched, prios, S["batch"])
    try:
        benchmark.pedantic(run, setup=fresh, rounds=3, iterations=1)
    finally:
        fresh.close()
    rate = n / benchmark.stats.stats.median
    key = f"kernel.roundtrip.{mode}"
    values = {"items": n, "tasks_per_s": rate, "durability": durability or "none"}
    if impl != "model":
        values[key] = rate
        if impl.startswith("baseline") and mode == "batch":
            values["kernel.roundtrip.fsync"] = rate
    record(benchmark, impl, **values)


QUEUE_IMPLS = ["core-buffer", "core-fsync", "baseline-heapq", *peers.PEERS]


@pytest.mark.benchmark(group="queue")
@pytest.mark.parametrize("impl", QUEUE_IMPLS)
def test_queue_workload(benchmark: Any, impl: str, peers_enabled: bool,
                        tmp_path: Path) -> None:
    n = S["rt_n"] // 4 if impl.startswith("peer") else S["rt_n"]
    if impl == "core-fsync":   # one fdatasync per complete(): keep it short
        n = S["rt_fsync_n"]
    prios = _prios(n, seed=11)
    if impl.startswith("peer"):
        peers.require(impl, peers_enabled)
        state: dict[str, Any] = {}

        def setup() -> None:
            d = tempfile.mkdtemp(dir=tmp_path)
            state["run"] = peers.run_queue(impl, prios, Path(d))

        benchmark.pedantic(lambda: state["run"](), setup=setup, rounds=2, iterations=1)
        conditions = peers.CONDITIONS[impl]
    else:
        base, _, dur = impl.partition("-")
        fresh = Fresh("core" if base == "core" else "baseline-heapq", dur or "buffer")

        def run() -> None:
            s = fresh.sched
            s.submit_many([{"queue": "q", "priority": p} for p in prios])
            for _ in range(n):
                s.complete(s.claim("a"))
        try:
            benchmark.pedantic(run, setup=fresh, rounds=2, iterations=1)
        finally:
            fresh.close()
        conditions = (f"eskernel Kernel, {dur} durability; claim=lease with event appended"
                      if base == "core" else "heapq + dict, no log")
    record(benchmark, impl, items=n, tasks_per_s=n / benchmark.stats.stats.median, conditions=conditions)
