"""Child processes of bench/test_service.py (run with ``python -m bench.service_procs``).

* ``batch ADDRESS AGENT BATCH``: claim_many / complete_many until the queue stays empty
  for a second; prints the number of tasks it completed.
* ``dispatch ADDRESS AGENT N``: N parked claims in a row; prints, for each, the
  CLOCK_MONOTONIC ns at which the claim returned and the task's payload (the producer's
  CLOCK_MONOTONIC ns just before its submit).
* ``redis-batch PORT BATCH`` / ``redis-dispatch PORT N``: the same against a Redis list
  queue (BLMOVE to a processing list, LREM as the acknowledgement).
"""

from __future__ import annotations

import json
import sys
import time


def batch(address: str, agent: str, size: str) -> None:
    from eskernel.service import Client
    n, b = 0, int(size)
    with Client(address, agents=[agent]) as c:
        print("ready", flush=True)
        while True:
            leases = c.claim_many(agent, b, wait=1.0)
            if not leases:
                break
            c.complete_many(leases)
            n += len(leases)
    print(n, flush=True)


def dispatch(address: str, agent: str, count: str) -> None:
    from eskernel.service import Client
    out = []
    with Client(address, agents=[agent]) as c:
        print("ready", flush=True)
        for _ in range(int(count)):
            lease = c.claim(agent, wait=30)
            t1 = time.monotonic_ns()
            c.complete(lease)
            out.append((t1, lease.payload))
    print(json.dumps(out), flush=True)


def redis_batch(port: str, size: str) -> None:
    import redis
    r = redis.Redis(port=int(port))
    n, b = 0, int(size)
    print("ready", flush=True)
    while True:
        pipe = r.pipeline(transaction=False)
        for _ in range(b):
            pipe.lmove("q", "processing", "LEFT", "RIGHT")
        items = [x for x in pipe.execute() if x is not None]
        if not items:
            if r.blmove("q", "processing", 1.0, "LEFT", "RIGHT") is None:
                break
            r.lrem("processing", 1, b"x")
            n += 1
            continue
        pipe = r.pipeline(transaction=False)
        for x in items:
            pipe.lrem("processing", 1, x)
        pipe.execute()
        n += len(items)
    print(n, flush=True)


def redis_dispatch(port: str, count: str) -> None:
    import redis
    r = redis.Redis(port=int(port))
    out = []
    print("ready", flush=True)
    for _ in range(int(count)):
        item = r.blmove("q", "processing", 30, "LEFT", "RIGHT")
        t1 = time.monotonic_ns()
        r.lrem("processing", 1, item)
        out.append((t1, int(item)))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"batch": batch, "dispatch": dispatch, "redis-batch": redis_batch,
     "redis-dispatch": redis_dispatch}[cmd](*args)
