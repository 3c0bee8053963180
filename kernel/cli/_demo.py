"""The synthetic workload behind ``eskernel demo``: a media pipeline in simulated time.

Five queues with different concurrency limits, agents with different capabilities and
capacities, multi-stage DAG jobs (ingest -> 3 render frames -> encode -> notify), all five
priorities, failures retried with exponential backoff, a flaky agent whose leases expire,
and one cancelled job.  A :class:`~eskernel.ManualClock` drives time, so a run of ~15
simulated minutes takes about a second and is the same for the same seed.
"""

from __future__ import annotations

import dataclasses
import os
import random
from collections.abc import Callable
from pathlib import Path

from .._clock import ManualClock
from .._codes import TERMINAL
from .._core import Lease
from .._kernel import Kernel
from ..models import BackoffPolicy

__all__ = ["DemoResult", "run_demo", "QUEUES", "AGENTS", "MARKER"]

MARKER = ".eskernel-demo"
START = 1_700_000_000.0

#: queue -> (max_concurrent, mean duration s, failure probability, timeout s)
QUEUES = {
    "ingest": (6, 2.0, 0.03, 20.0),
    "render": (4, 5.0, 0.10, 30.0),
    "encode": (2, 6.0, 0.05, 30.0),
    "notify": (0, 0.5, 0.02, 10.0),
    "report": (1, 20.0, 0.00, 90.0),
}
#: agent -> (capabilities, capacity)
AGENTS = {
    "cpu-1": (["ingest", "encode", "notify"], 3),
    "cpu-2": (["ingest", "encode", "notify"], 3),
    "gpu-1": (["render"], 2),
    "gpu-2": (["render"], 2),
    "mixed-1": (["ingest", "render", "encode", "notify", "report"], 2),
    "flaky-1": (["ingest", "notify"], 2),
}


@dataclasses.dataclass(frozen=True)
class DemoResult:
    """What the demo produced: where, how many tasks and events, simulated seconds."""

    path: Path
    tasks: int
    events: int
    sim_seconds: float
    sample_task: str
    cancelled_task: str


def prepare_dir(path: Path) -> bool:
    """Make ``path`` ready for a demo run; True if an earlier demo there was wiped.

    Refuses (ValueError) a non-empty directory that is not an earlier demo's.
    """
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} exists and is not a directory; pass another DIR")
    if path.is_dir() and any(path.iterdir()):
        if not (path / MARKER).exists():
            raise ValueError(f"{path} is not empty and was not made by `eskernel demo`; "
                             "refusing to touch it: pass a new or empty DIR")
        for entry in path.iterdir():
            if entry.is_dir():
                raise ValueError(f"{path} holds a subdirectory {entry.name!r}, which a demo "
                                 "never makes; refusing to wipe it: pass a new DIR")
        for entry in path.iterdir():
            entry.unlink()
        wiped = True
    else:
        wiped = False
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text("made by `eskernel demo`; re-running the demo wipes this "
                               "directory\n")
    return wiped


def run_demo(path: str | os.PathLike[str], *, jobs: int = 120, seed: int = 7,
             step: float = 0.5, progress: Callable[[int, int], None] | None = None,
             snapshot: bool = True) -> DemoResult:
    """Run the workload into a kernel at ``path`` (a new or empty directory).

    ``jobs`` pipelines arrive over the first ~10 simulated minutes; the run ends when every
    task has finished.  ``progress(done, jobs)`` is called as jobs finish.
    """
    rng = random.Random(seed)
    clock = ManualClock(start=START)
    k = Kernel.open(path, clock=clock, seed=seed, snapshot_every=0)
    try:
        for q, (limit, _, _, _) in QUEUES.items():
            k.declare_queue(q, max_concurrent=limit)
        for a, (caps, cap) in AGENTS.items():
            k.register_agent(a, capabilities=caps, capacity=cap)
        backoff = BackoffPolicy(initial=2.0, factor=2.0, max=30.0, jitter=0.2)
        arrivals = sorted(rng.uniform(0, 600) for _ in range(jobs))
        running: dict[int, tuple[Lease, float, str]] = {}   # lease -> (lease, end, outcome)
        all_tasks: list[str] = []
        cancel_job = jobs // 3
        poison = {f"job{j:04d}.encode" for j in range(11, jobs, 29)}
        cancelled = ""
        job = 0
        now = 0.0
        done_jobs = 0
        last_report = -1
        while True:
            while job < jobs and arrivals[job] <= now:
                prio = 1 + (job * 7 + rng.randrange(5)) % 5
                tid = f"job{job:04d}"
                specs = [dict(id=f"{tid}.ingest", queue="ingest", priority=prio,
                              payload={"job": job, "source": f"s3://media/{job}.mov"},
                              timeout=QUEUES["ingest"][3], backoff=backoff)]
                frames = [f"{tid}.render{i}" for i in range(3)]
                specs += [dict(id=f, queue="render", priority=prio, depends_on=[specs[0]["id"]],
                               payload={"job": job, "frame": i}, timeout=QUEUES["render"][3],
                               backoff=backoff, max_attempts=4) for i, f in enumerate(frames)]
                specs.append(dict(id=f"{tid}.encode", queue="encode", priority=prio,
                                  depends_on=frames, payload={"job": job},
                                  timeout=QUEUES["encode"][3], backoff=backoff))
                specs.append(dict(id=f"{tid}.notify", queue="notify", priority=prio,
                                  depends_on=[f"{tid}.encode"], payload={"job": job},
                                  timeout=QUEUES["notify"][3], backoff=backoff))
                all_tasks += k.submit_many(specs)
                if job == cancel_job:
                    cancelled = f"{tid}.ingest"
                    k.cancel(cancelled)
                job += 1
            minute = int(now // 120)
            if minute != last_report and job < jobs:
                last_report = minute
                all_tasks.append(k.submit("report", {"minute": minute}, id=f"report-{minute}",
                                          priority=5, timeout=QUEUES["report"][3]))
            k.tick()
            for lease_id in [lid for lid, (_, end, _) in running.items() if end <= now]:
                ending, _, outcome = running.pop(lease_id)
                try:
                    if outcome == "ok":
                        k.complete(ending, result={"ok": True})
                    elif outcome == "poison":
                        k.fail(ending, error="corrupt input: unsupported codec",
                               retryable=False)
                    elif outcome == "fail":
                        k.fail(ending, error=rng.choice(["decoder crashed", "out of memory",
                                                        "upstream 503"]))
                except Exception:          # the lease expired or was revoked meanwhile
                    pass
            stats = k.stats()
            active = {a.id: a.active for a in stats.agents}
            names = list(AGENTS)
            shift = int(now / step) % len(names)        # rotate who claims first
            for agent in names[shift:] + names[:shift]:
                cap = AGENTS[agent][1]
                for _ in range(cap - active.get(agent, 0)):
                    lease = k.claim(agent)
                    if lease is None:
                        break
                    q = lease.task_id.rsplit(".", 1)[-1].rstrip("0123456789")
                    q = q if q in QUEUES else "report"
                    _, mean, p_fail, _ = QUEUES[q]
                    dur = rng.expovariate(1 / mean) + 0.1
                    if agent == "flaky-1" and rng.random() < 0.15:
                        outcome, dur = "hang", 1e9     # never reports: its lease expires
                    elif q == "encode" and lease.task_id in poison:
                        outcome = "poison"             # corrupt input: not retryable
                    else:
                        outcome = "fail" if rng.random() < p_fail else "ok"
                    running[lease.lease_id] = (lease, now + dur, outcome)
            finished = sum(stats.counts.get(s, 0) for s in TERMINAL)
            new_done = finished * jobs // max(len(all_tasks), 1)
            if progress is not None and new_done != done_jobs:
                done_jobs = new_done
                progress(done_jobs, jobs)
            if job >= jobs and finished == len(all_tasks):
                break
            now += step
            clock.set(START + now)
            if now > 7200:      # safety net: never loop forever
                break
        if snapshot:
            k.snapshot()
        events = k.next_offset
    finally:
        k.close()
    sample = next((t for t in all_tasks if t.endswith("render1")), all_tasks[0])
    return DemoResult(Path(path), len(all_tasks), events, now, sample, cancelled)
