"""A generated workload for what-if tests: agents that poll (so claims lag), failures,
hangs that expire, releases, heartbeats, delays, DAG chains, a paused queue, an agent's
offline period, cancellations (one mid-run) and a requeue.  Deterministic per seed."""

from __future__ import annotations

import random
from pathlib import Path

from eskernel import Kernel, ManualClock
from eskernel.errors import EskernelError

START = 1_800_000_000.0
QUEUES = {"a": 3, "b": 0, "c": 2}
AGENTS = {"w1": (["a", "b"], 2), "w2": (["b", "c"], 2), "w3": (["a", "b", "c"], 1)}


def generate(path: Path, *, tasks: int = 300, seed: int = 1, step: float = 0.1) -> dict[str, int]:
    """Write the workload into a new kernel directory ``path``; returns counts."""
    rng = random.Random(seed)
    clock = ManualClock(start=START)
    k = Kernel.open(path, clock=clock, seed=seed, snapshot_every=0)
    counts = {"fail": 0, "hang": 0, "release": 0, "heartbeat": 0, "cancel": 0}
    try:
        for q, mc in QUEUES.items():
            k.declare_queue(q, max_concurrent=mc)
        for a, (caps, cap) in AGENTS.items():
            k.register_agent(a, caps, capacity=cap)
        horizon = tasks / 2.5                       # ~2.5 arrivals per second
        arrivals = sorted(rng.uniform(0, horizon) for _ in range(tasks))
        running: dict[int, tuple[object, float, str, float]] = {}
        submitted: list[str] = []
        i, now = 0, 0.0
        while True:
            while i < len(arrivals) and arrivals[i] <= now:
                q = rng.choice(list(QUEUES))
                spec: dict[str, object] = {"id": f"t{i:05d}", "queue": q,
                                           "priority": rng.randint(1, 5), "timeout": 5.0,
                                           "name": f"kind-{q}{i % 3}"}
                if submitted and rng.random() < 0.3:
                    spec["depends_on"] = [rng.choice(submitted[-5:])]
                if rng.random() < 0.05:
                    spec["delay"] = 2.0
                try:
                    submitted += k.submit_many([spec])
                except EskernelError:               # an upstream that already failed
                    pass
                i += 1
            if abs(now - horizon / 3) < step / 2:
                k.pause_queue("c")
            if abs(now - horizon / 2) < step / 2:
                k.resume_queue("c")
                k.agent_offline("w3")
            if abs(now - 2 * horizon / 3) < step / 2:
                k.agent_online("w3")
                for tid in submitted[-40:-30]:       # cancel a few, some of them running
                    try:
                        k.cancel(tid)
                        counts["cancel"] += 1
                    except EskernelError:
                        pass
            k.tick()
            for lid in [x for x, (_, end, _, _) in running.items() if end <= now]:
                lease, _, outcome, _ = running.pop(lid)
                try:
                    if outcome == "ok":
                        k.complete(lease, {"ok": 1})      # type: ignore[arg-type]
                    elif outcome == "fail":
                        k.fail(lease, "boom")             # type: ignore[arg-type]
                    elif outcome == "release":
                        k.release(lease)                  # type: ignore[arg-type]
                except EskernelError:
                    pass
            for lid, (lease, end, outcome, hb) in list(running.items()):
                if outcome in ("ok", "fail") and hb and now >= hb:
                    try:
                        k.heartbeat(lease)                # type: ignore[arg-type]
                        counts["heartbeat"] += 1
                        running[lid] = (lease, end, outcome, now + 2.0)
                    except EskernelError:
                        running.pop(lid)
            stats = k.stats()
            for ag in stats.agents:
                if not ag.online or ag.active >= ag.capacity or rng.random() < 0.4:
                    continue                                # polls lag: claims are late
                lease = k.claim(ag.id)
                if lease is None:
                    continue
                dur = rng.expovariate(1 / 1.5) + 0.05
                r = rng.random()
                outcome = ("fail" if r < 0.08 else "hang" if r < 0.11 else
                           "release" if r < 0.13 else "ok")
                if outcome == "hang":
                    dur = 1e9
                elif outcome != "release" and dur > 4.0:
                    dur = min(dur, 12.0)                  # long: heartbeats keep it
                counts[outcome if outcome != "ok" else "heartbeat"] += 0
                if outcome in ("fail", "hang", "release"):
                    counts[outcome] += 1
                running[lease.lease_id] = (lease, now + dur, outcome,
                                           now + 2.0 if dur > 4.0 else 0.0)
            done = sum(stats.counts.get(s, 0) for s in ("COMPLETED", "FAILED", "CANCELLED"))
            if i >= len(arrivals) and done == len(submitted):
                break
            if now > horizon + 3600:
                break
            now = round(now + step, 6)
            clock.set(START + now)
        dead = [t for t in submitted if k.task(t).status == "FAILED"]
        if dead:
            k.requeue(dead[0])
            lease = None
            for a in AGENTS:
                lease = k.claim(a) if k.stats().agents else None
                if lease is not None:
                    break
            if lease is not None:
                clock.set(START + now + 1.0)
                k.complete(lease)
        counts["tasks"] = len(submitted)
        counts["events"] = k.next_offset
    finally:
        k.close()
    return counts
