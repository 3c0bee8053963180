"""What-if replay: reading a recorded history and re-simulating it under changes.

- ``whatif-demo``: the demo's history (``eskernel demo``: 725 tasks, ~2,400 events, ~10
  simulated minutes), no change.  Target: well under 1 s.
- ``whatif-large``: a generated history from ``ESKERNEL_BENCH_WHATIF_TASKS`` arrivals
  (default 50,000; the issue's size is 1,000,000), a tenth of them heads of 3-task chains
  (so 1.2x as many tasks), over 8 queues and 40 agents, 3 % of attempts failing once, and
  10 changes.  Target: under 30 s at 1 M tasks.

    ESKERNEL_BENCH_WHATIF_TASKS=1000000 .venv/bin/python -m pytest bench/test_whatif.py \\
        --benchmark-only

The whole call is timed: reading the log, the baseline's measures, the simulation, the
alternative's measures.  Building the histories is not.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest

from eskernel import Kernel, ManualClock
from eskernel.cli._demo import prepare_dir, run_demo
from eskernel.whatif import whatif

N_LARGE = int(os.environ.get("ESKERNEL_BENCH_WHATIF_TASKS", "50000"))
QUEUES = [f"q{i}" for i in range(8)]
CHANGES = ["queue.q0.max_concurrent=64", "queue.q1.max_concurrent=8",
           "queue.q2.paused=false", "queue.q3.max_concurrent=0",
           "agent.a0.capacity=8", "agent.a1.capacity=1", "agent.a2.capabilities=q0+q1+q2",
           "agent.extra-1=capabilities:q4+q5,capacity:4",
           "agent.extra-2=capabilities:q6+q7,capacity:4", "task.q5.priority=HIGH"]


def build_large(path: Path, n: int, seed: int = 3) -> int:
    """A history of ``n`` tasks: ~n/600 arrive each simulated second for 600 s; agents
    claim every second; 3 % of attempts fail once.  Returns the event count."""
    rng = random.Random(seed)
    clock = ManualClock(start=1_700_000_000.0)
    k = Kernel.open(path, clock=clock, durability="buffer", snapshot_every=0)
    try:
        for i, q in enumerate(QUEUES):
            k.declare_queue(q, max_concurrent=[32, 4, 0, 16, 0, 8, 0, 24][i])
        agents = []
        for i in range(40):
            caps = [QUEUES[i % 8], QUEUES[(i + 3) % 8]]
            k.register_agent(f"a{i}", caps, capacity=4)
            agents.append(f"a{i}")
        running: dict[int, list[Any]] = {}
        submitted, sec = 0, 0
        per_s = max(n // 600, 1)
        while submitted < n or running or sec < 700:
            batch = []
            for _ in range(min(per_s, n - submitted)):
                batch.append({"queue": rng.choice(QUEUES), "priority": rng.randint(1, 5),
                              "id": f"t{submitted}"})
                submitted += 1
            chains = batch[:len(batch) // 10]
            plain = batch[len(batch) // 10:]
            if plain:
                k.submit_many(plain)
            for s in chains:      # a 3-step chain each
                k.submit_many([s, {"queue": s["queue"], "id": s["id"] + "b",
                                   "depends_on": [s["id"]]},
                               {"queue": s["queue"], "id": s["id"] + "c",
                                "depends_on": [s["id"] + "b"]}])
            k.tick()
            due = running.pop(sec, [])
            ok = [lease for lease in due if rng.random() >= 0.03]
            for lease in due:
                if lease not in ok:
                    k.fail(lease, "transient")
            if ok:
                k.complete_many(ok)
            busy: dict[str, int] = {}
            for ls in running.values():
                for x in ls:
                    busy[x.agent_id] = busy.get(x.agent_id, 0) + 1
            for a in agents:
                room = 4 - busy.get(a, 0)
                if room > 0:
                    for lease in k.claim_many(a, room):
                        running.setdefault(sec + 1 + min(int(rng.expovariate(1 / 3.0)), 20),
                                           []).append(lease)
            sec += 1
            clock.set(1_700_000_000.0 + sec)
            if sec > 100_000:
                break
        return k.next_offset
    finally:
        k.close()


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("whatif-bench") / "demo"
    prepare_dir(path)
    run_demo(path)
    return path


@pytest.fixture(scope="module")
def large_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    path = tmp_path_factory.mktemp("whatif-bench") / "large"
    return path, build_large(path, N_LARGE)


@pytest.mark.benchmark(group="whatif")
def test_whatif_demo(benchmark: Any, demo_dir: Path) -> None:
    result = benchmark.pedantic(whatif, args=(demo_dir, []), rounds=7, warmup_rounds=1)
    benchmark.extra_info.update(impl="core", events=result.recorded_events,
                                tasks=result.baseline["tasks"])
    assert result.alternative["tasks"] == result.baseline["tasks"]


@pytest.mark.benchmark(group="whatif")
def test_whatif_large_ten_changes(benchmark: Any, large_dir: tuple[Path, int]) -> None:
    path, events = large_dir
    result = benchmark.pedantic(whatif, args=(path, CHANGES), rounds=3, warmup_rounds=0)
    benchmark.extra_info.update(impl="core", events=events, tasks=result.baseline["tasks"],
                                simulated_events=result.simulated_events)
    assert result.alternative["tasks"] == result.baseline["tasks"]
