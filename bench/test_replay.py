"""Replay rate and open-from-snapshot time, on the claim workload's world (N submitted
tasks across 64 queues, all live).

- ``replay``: ``Kernel.open`` of a copy of the directory *without* its snapshot, so every
  event is decoded and applied; events/s = events / median open time.  The baseline reads
  the same records with ``EventLog.open_readonly`` + ``orjson.loads`` and applies them to
  the heapq scheduler.
- ``open-snapshot``: ``Kernel.open`` of a copy *with* the snapshot taken after the last
  event (no tail to replay).  The baseline is ``pickle.loads`` of the heapq scheduler
  holding the same tasks.
"""

from __future__ import annotations

import pickle
import shutil
from typing import Any

import orjson
import pytest

from bench.baselines import HeapqScheduler
from bench.conftest import baseline_world, record
from bench.targets import sizes

S = sizes()


def baseline_replay(path: Any) -> int:
    from eskernel.eventlog import EventLog
    s = HeapqScheduler()
    n = 0
    with EventLog.open_readonly(path) as r:
        end = r.next_offset
        while n < end:
            batch = r.read_batch(n, 8192)
            if not batch:
                break
            for rec in batch:
                ev = orjson.loads(rec)
                t = ev["t"]
                if t == "submitted":
                    s.submit(ev["queue"], ev["payload"], id=ev["task"],
                             priority=ev["priority"], depends_on=ev["depends_on"])
                elif t == "queue_declared":
                    s.declare_queue(ev["queue"], ev["max_concurrent"])
                elif t == "agent_registered":
                    s.register_agent(ev["agent"], ev["capabilities"], ev["capacity"])
            n += len(batch)
    return n


@pytest.mark.benchmark(group="replay")
@pytest.mark.parametrize("impl", ["core", "baseline-heapq"])
def test_replay(benchmark: Any, worlds: Any, impl: str) -> None:
    from eskernel import Kernel
    n = S["replay_n"]
    path = worlds.copy(n, snapshot=False)
    events = []

    def run() -> None:
        if impl == "core":
            k = Kernel.open(path, durability="buffer", snapshot_every=0)
            events.append(k.next_offset)
            k.close()
        else:
            events.append(baseline_replay(path))

    try:
        benchmark.pedantic(run, rounds=2, iterations=1)
    finally:
        shutil.rmtree(path, ignore_errors=True)
    rate = events[-1] / benchmark.stats.stats.median
    record(benchmark, impl, items=events[-1], events_per_s=rate, **{"kernel.replay": rate})


@pytest.mark.benchmark(group="open-snapshot")
@pytest.mark.parametrize("impl", ["core", "baseline-heapq"])
def test_open_from_snapshot(benchmark: Any, worlds: Any, impl: str) -> None:
    from eskernel import Kernel
    n = S["replay_n"]
    if impl == "core":
        path = worlds.copy(n, snapshot=True)

        def run() -> None:
            k = Kernel.open(path, durability="buffer", snapshot_every=0)
            assert k.next_offset > n
            k.close()
    else:
        blob = pickle.dumps(baseline_world(n), protocol=pickle.HIGHEST_PROTOCOL)
        path = None

        def run() -> None:
            pickle.loads(blob)
    try:
        benchmark.pedantic(run, rounds=2, iterations=1)
    finally:
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)
    record(benchmark, impl, live_tasks=n, **{"kernel.open_snapshot": benchmark.stats.stats.median})
