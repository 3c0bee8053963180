"""W1's per-task time and memory at growing sizes (flat is the target), one process per size.

    python -m bench.w1_scale 10000 100000 1000000 10000000

For each N: a fresh kernel (``buffer`` durability, every event logged) in a temporary
directory; N submits one call at a time, then claim + complete one at a time; prints the
mean time per submit and per claim + complete, and the growth of the resident set per task
after the submits (the core's arrays and the boundary tables: ids, payloads, results).
"""

from __future__ import annotations

import gc
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run(n: int) -> str:
    from eskernel import Kernel
    rng = random.Random(7)
    prios = [rng.randint(1, 4) for _ in range(n)]
    d = tempfile.mkdtemp(prefix="eskw1-")
    try:
        k = Kernel.open(d, durability="buffer", snapshot_every=0)
        k.declare_queue("q")
        k.register_agent("a", ["q"])
        gc.collect()
        r0, submit = _rss(), k.submit
        t0 = time.perf_counter()
        for i in range(n):
            submit("q", i, priority=prios[i])
        t1 = time.perf_counter()
        r1, claim, complete = _rss(), k.claim, k.complete
        while (lease := claim("a")) is not None:
            complete(lease, None)
        t2 = time.perf_counter()
        k.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return (f"N={n:>11,}  submit {(t1 - t0) / n * 1e9:6.0f} ns  claim+complete "
            f"{(t2 - t1) / n * 1e9:6.0f} ns  resident {(r1 - r0) / n:5.0f} B/task")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(run(int(sys.argv[2])), flush=True)
    else:
        for arg in sys.argv[1:] or ["10000", "100000", "1000000"]:
            subprocess.run([sys.executable, "-m", "bench.w1_scale", "--one", arg], check=True)
