"""The workloads of the one-call-at-a-time benchmarks (``bench/test_workloads.py``) and the
plain-Python schedulers they are measured against.

- W1: N tasks with priorities 1..4 submitted one ``submit`` at a time, then claimed and
  completed one at a time by one agent.  Variant *starved*: every tenth task is of a type
  (queue) no agent serves; the other 90 % are drained.
- W2: a DAG of L layers x W tasks, each depending on two tasks of the layer before,
  submitted one call at a time with explicit ids, then drained.  Variant *shuffled*: each
  layer is submitted in a shuffled order.
- W3: W1 in ``fsync`` mode (every call acknowledged on disk) against huey's SqliteStorage
  with ``synchronous=FULL``.

Baselines (no log, no validation, no durability):

- :class:`SeedScheduler`: the design of the seeds (a deque per priority; ``claim`` scans
  from the highest priority for the first task whose type the agent serves and whose
  dependencies are complete).  Fast when every task is eligible, O(n) per claim when not.
- :class:`bench.baselines.HeapqScheduler`: heapq + dict (+ dependency counters).
- :func:`graphlib_drain`: ``graphlib.TopologicalSorter`` fed one node at a time, drained
  with ``get_ready`` / ``done`` one node at a time.
- huey ``MemoryStorage`` / ``SqliteStorage`` (``compare`` extra): enqueue / dequeue, and
  ``put_data`` for the result.
"""

from __future__ import annotations

import graphlib
import random
from collections import deque
from pathlib import Path
from typing import Any

__all__ = ["w1_prios", "dag_ids", "SeedScheduler", "graphlib_run", "huey_storage",
           "huey_run", "kernel_w1", "kernel_w2", "baseline_w1", "baseline_w2"]

UNSERVED = "idle"      # the queue no agent serves in the starved variant


def w1_prios(n: int, seed: int = 7) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(1, 4) for _ in range(n)]


def dag_ids(layers: int, width: int, shuffled: bool = False,
            seed: int = 3) -> list[tuple[str, list[str]]]:
    """(id, dependencies) in submission order: layer by layer (each shuffled if asked)."""
    rng = random.Random(seed)
    out: list[tuple[str, list[str]]] = []
    for lv in range(layers):
        row = [(f"d{lv}-{i}", [f"d{lv - 1}-{j}" for j in rng.sample(range(width), 2)]
                if lv else []) for i in range(width)]
        if shuffled:
            rng.shuffle(row)
        out.extend(row)
    return out


class SeedScheduler:
    """The seeds' design: a deque per priority, a linear scan for the first eligible task."""

    def __init__(self) -> None:
        self.by_prio: dict[int, deque[list[Any]]] = {}
        self.tasks: dict[str, list[Any]] = {}     # id -> [queue, prio, status, deps, payload]
        self.agents: dict[str, frozenset[str]] = {}
        self.prios: list[int] = []
        self.n = 0

    def declare_queue(self, name: str) -> None:
        pass

    def register_agent(self, agent: str, capabilities: Any, capacity: int = 1) -> None:
        self.agents[agent] = frozenset(capabilities)

    def submit(self, queue: str, payload: Any = None, *, id: str | None = None,
               priority: int = 2, depends_on: Any = ()) -> str:
        self.n += 1
        tid = id if id is not None else f"t-{self.n}"
        t = [queue, priority, "pending", list(depends_on), payload, tid]
        self.tasks[tid] = t
        dq = self.by_prio.get(priority)
        if dq is None:
            dq = self.by_prio[priority] = deque()
            self.prios = sorted(self.by_prio, reverse=True)
        dq.append(t)
        return tid

    def claim(self, agent: str) -> Any:
        caps, tasks = self.agents[agent], self.tasks
        for p in self.prios:
            dq = self.by_prio[p]
            for i, t in enumerate(dq):
                if t[0] in caps and all(tasks[d][2] == "completed" for d in t[3]):
                    if i == 0:
                        dq.popleft()
                    else:
                        del dq[i]
                    t[2] = "running"
                    return t
        return None

    def complete(self, t: Any, result: Any = None) -> None:
        t[2] = "completed"


def kernel_w1(k: Any, prios: list[int], starved: bool = False) -> int:
    """W1 on a Kernel (or any object with its submit/claim/complete): returns tasks done."""
    submit, claim, complete = k.submit, k.claim, k.complete
    for i, p in enumerate(prios):
        submit(UNSERVED if starved and i % 10 == 9 else "q", i, priority=p)
    n = 0
    while (lease := claim("a")) is not None:
        complete(lease, None)
        n += 1
    return n


baseline_w1 = kernel_w1


def kernel_w2(k: Any, dag: list[tuple[str, list[str]]]) -> int:
    submit, claim, complete = k.submit, k.claim, k.complete
    for tid, deps in dag:
        submit("q", None, id=tid, depends_on=deps)
    n = 0
    while (lease := claim("a")) is not None:
        complete(lease)
        n += 1
    return n


baseline_w2 = kernel_w2


def graphlib_run(dag: list[tuple[str, list[str]]]) -> int:
    ts: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    add = ts.add
    for tid, deps in dag:
        add(tid, *deps)
    ts.prepare()
    n = 0
    while ts.is_active():
        for node in ts.get_ready():     # one node at a time: claim ... complete
            ts.done(node)
            n += 1
    return n


def huey_storage(kind: str, tmp: Path) -> Any:
    from huey.storage import MemoryStorage, SqliteStorage
    if kind == "memory":
        return MemoryStorage("bench")
    # WAL journal, synchronous=FULL (huey's fsync=True): every call on disk when it returns.
    return SqliteStorage("bench", filename=str(tmp / "huey.db"), fsync=True,
                         journal_mode="wal")


def huey_run(st: Any, prios: list[int]) -> int:
    enqueue, dequeue, put_data = st.enqueue, st.dequeue, st.put_data
    for i, p in enumerate(prios):
        enqueue(b"t%d" % i, p)
    n = 0
    while (data := dequeue()) is not None:
        put_data(data, b"null")
        n += 1
    return n
