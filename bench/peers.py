"""Peer systems a user would otherwise pick, on the same workloads (``--compare``).

None of them is a dependency of eskernel: install them with the ``compare`` extra
(``pip install huey persist-queue dask``).  A peer that cannot be imported is reported as
skipped with the reason, never silently dropped.

Workload "queue": N tasks with four priority levels are submitted, then one consumer claims
and completes them all.  What "claim" and "complete" mean differs, and is printed with
every number (``conditions``):

- huey storage (``MemoryStorage``, ``SqliteStorage``): claim = ``dequeue()`` (the task is
  removed; there is no lease), complete = ``put_data(task, result)``.  SQLite: huey's
  defaults (WAL journal, ``synchronous`` as huey sets it).
- persist-queue ``SQLiteAckQueue``: claim = ``get()`` (marked unacked), complete =
  ``ack()``; ``auto_commit=True``, FIFO only (no priorities).
- dask's in-process synchronous scheduler (``dask.get``): a graph of N independent no-op
  tasks; no queues, priorities or leases.  For the DAG workload, the 100 x 1,000 graph.
"""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path
from typing import Any, Callable

__all__ = ["PEERS", "DAG_PEERS", "available", "require", "skipped_peers", "run_queue", "run_dag"]

_MODULES = {
    "peer-huey-memory": "huey",
    "peer-huey-sqlite": "huey",
    "peer-persistqueue-sqlite": "persistqueue",
    "peer-dask": "dask",
}
PEERS = tuple(_MODULES)
DAG_PEERS = ("peer-dask",)

CONDITIONS = {
    "peer-huey-memory": "huey MemoryStorage; claim=dequeue (no lease), complete=put_data; not durable",
    "peer-huey-sqlite": "huey SqliteStorage; claim=dequeue (no lease), complete=put_data; SQLite file",
    "peer-persistqueue-sqlite": "persist-queue SQLiteAckQueue; claim=get, complete=ack; auto_commit; FIFO only",
    "peer-dask": "dask.get (sync, in-process); N independent no-op tasks; no queues/priorities/leases",
}


def available(name: str) -> str | None:
    """None when the peer can run, else the reason it is skipped."""
    mod = _MODULES[name]
    try:
        importlib.import_module(mod)
    except Exception as err:  # ImportError, or a broken install
        return f"not installed ({mod}: {type(err).__name__}); pip install 'eskernel[compare]'"
    return None


def require(name: str, enabled: bool) -> None:
    """Skip the calling benchmark unless peers were asked for (``--peers``) and ``name``
    can run."""
    import pytest
    if not enabled:
        pytest.skip("peers run with --peers (eskernel bench --compare)")
    why = available(name)
    if why:
        pytest.skip(why)


def skipped_peers(names: tuple[str, ...] = PEERS) -> list[tuple[str, str]]:
    out = []
    for n in names:
        why = available(n)
        if why is not None:
            out.append((n, why))
    return out


def _huey_storage(kind: str, tmp: Path) -> Any:
    from huey.storage import MemoryStorage, SqliteStorage
    if kind == "memory":
        return MemoryStorage("bench")
    return SqliteStorage("bench", filename=str(tmp / "huey.db"))


def run_queue(name: str, prios: list[int], tmp: Path) -> Callable[[], None]:
    """A callable running the queue workload on peer ``name`` (setup happens here)."""
    n = len(prios)
    if name.startswith("peer-huey"):
        st = _huey_storage("memory" if name.endswith("memory") else "sqlite", tmp)

        def run() -> None:
            for i, p in enumerate(prios):
                st.enqueue(b"t%d" % i, p)
            for _ in range(n):
                data = st.dequeue()
                st.put_data(data, b"null")
        return run
    if name == "peer-persistqueue-sqlite":
        from persistqueue import SQLiteAckQueue
        d = tempfile.mkdtemp(dir=tmp)
        q = SQLiteAckQueue(d, auto_commit=True, multithreading=False)

        def run() -> None:
            for i in range(n):
                q.put(i)
            for _ in range(n):
                q.ack(q.get())
        return run
    if name == "peer-dask":
        import dask

        def noop() -> None:
            return None
        graph = {f"t{i}": (noop,) for i in range(n)}
        keys = list(graph)

        def run() -> None:
            dask.get(graph, keys)
        return run
    raise KeyError(name)


def run_dag(name: str, layers: list[list[tuple[str, list[str]]]]) -> Callable[[], None]:
    """A callable executing the DAG on peer ``name``."""
    if name != "peer-dask":
        raise KeyError(name)
    import dask

    def node(*_: Any) -> None:
        return None
    graph = {tid: (node, *deps) for layer in layers for tid, deps in layer}
    last = [tid for tid, _ in layers[-1]]

    def run() -> None:
        dask.get(graph, last)
    return run
