"""Medians and ratios of bench/test_workloads.py from a ``--benchmark-json`` file.

    python -m pytest bench/test_workloads.py --benchmark-json=w.json
    python bench/workload_report.py w.json

For every group: each implementation's median tasks/s, and the ratio of each ``core*`` row
to every baseline and peer of the group, beside the issue's target where it sets one.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

# (group, core row, other row) -> the ratio the issue asks for at least.
TARGETS = {
    ("w1", "core", "baseline-heapq"): 1.0, ("w1", "core", "peer-huey-memory"): 1.0,
    ("w1", "core", "baseline-seed"): 0.8,
    ("w2", "core", "baseline-heapq"): 1.0, ("w2", "core", "baseline-graphlib"): 1.0,
    ("w1-starved", "core", "baseline-seed"): 10.0,
    ("w2-shuffled", "core", "baseline-seed"): 10.0,
    ("w3", "core-fsync", "peer-huey-sqlite"): 2.0,
}


def main(path: str) -> None:
    data = json.load(open(path))
    groups: dict[str, dict[str, float]] = defaultdict(dict)
    for b in data["benchmarks"]:
        info = b["extra_info"]
        groups[b["group"]][info["impl"]] = info["tasks_per_s"]
    for g, rows in groups.items():
        print(f"[{g}]")
        for impl, rate in rows.items():
            print(f"  {impl:20s} {rate:12,.0f} tasks/s (median)")
        for core in [i for i in rows if i.startswith("core")]:
            for other in [i for i in rows if not i.startswith("core")]:
                ratio = rows[core] / rows[other]
                want = TARGETS.get((g, core, other))
                verdict = "" if want is None else (" met" if ratio >= want else " MISSED") + \
                    f" (target >= {want}x)"
                print(f"  {core} / {other}: {ratio:.2f}x{verdict}")


if __name__ == "__main__":
    main(sys.argv[1])
