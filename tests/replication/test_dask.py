"""Handlers on Dask: the runtime keeps the lease while a LocalCluster runs the task."""

from __future__ import annotations

import asyncio
import threading

import pytest

from eskernel import Kernel, Runtime
from eskernel.errors import DaskUnavailableError, InvalidSpecError

distributed = pytest.importorskip(
    "distributed", reason="dask.distributed is not installed: pip install 'eskernel[dask]'")

#: Upper bound on any wait in these tests; they fail rather than hang.
BOUND_S = 60.0


def square(payload):
    return {"sq": payload["x"] ** 2}


def boom(payload):
    raise ValueError(f"cannot take {payload!r}")


#: Set by a test to let ``held`` return (module-level: Dask serializes handlers by reference).
RELEASE = threading.Event()


def held(payload):
    RELEASE.wait(BOUND_S)
    return "done"


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(processes=False, n_workers=1, threads_per_worker=4,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as c:
            yield c


def test_results_and_failures_come_back_through_the_lease(client):
    from eskernel.runtime import DaskExecutor

    k = Kernel.in_memory()
    k.declare_queue("q")
    k.declare_queue("bad")
    rt = Runtime(k, agents=[("w", ["q", "bad"], 8)])
    rt.register("q", square, executor=DaskExecutor(client))
    rt.register("bad", boom, executor="dask")       # the default client
    ids = k.submit_many([{"queue": "q", "payload": {"x": i}} for i in range(12)])
    bad = k.submit("bad", {"x": 1}, max_attempts=2)
    asyncio.run(rt.run_until_idle(timeout=BOUND_S))
    assert [k.task(t).result for t in ids] == [{"sq": i * i} for i in range(12)]
    view = k.task(bad)
    assert view.status == "FAILED" and view.attempts == 2
    assert "ValueError: cannot take {'x': 1}" in view.error
    assert rt.handlers() == {"q": "dask", "bad": "dask"}


def test_the_lease_is_heartbeated_while_the_dask_future_is_pending(client):
    from eskernel.runtime import DaskExecutor

    RELEASE.clear()
    release = RELEASE
    k = Kernel.in_memory()
    k.declare_queue("q")
    rt = Runtime(k, agents=[("w", ["q"], 1)])
    rt.register("q", held, executor=DaskExecutor(client))
    tid = k.submit("q", timeout=0.3)

    async def main():
        async def watch():
            # Released only once the runtime heartbeated the lease at least twice.
            while sum(e["t"] == "heartbeat" for e in k.history(tid)) < 2:
                await asyncio.sleep(0.01)
            release.set()
        await asyncio.wait_for(asyncio.gather(rt.run_until_idle(), watch()), BOUND_S)

    try:
        asyncio.run(main())
    finally:
        release.set()
    assert k.task(tid).status == "COMPLETED" and k.task(tid).result == "done"


def test_an_overrun_attempt_is_failed_and_its_dask_task_cancelled(client):
    from eskernel.runtime import DaskExecutor

    RELEASE.clear()
    release = RELEASE
    k = Kernel.in_memory()
    k.declare_queue("q")
    rt = Runtime(k, agents=[("w", ["q"], 1)], heartbeat_fraction=0.5)
    rt.register("q", held, executor=DaskExecutor(client))
    tid = k.submit("q", timeout=0.2, max_attempts=1)
    try:
        asyncio.run(rt.run_until_idle(timeout=BOUND_S))
    finally:
        release.set()
    view = k.task(tid)
    assert view.status == "FAILED" and "HandlerTimeoutError" in view.error
    assert "Dask task" in view.error


def test_bad_dask_executors_are_typed_errors(client):
    from eskernel.runtime import DaskExecutor

    with pytest.raises(DaskUnavailableError, match="distributed.Client"):
        DaskExecutor(object())
    assert issubclass(DaskUnavailableError, InvalidSpecError)
    k = Kernel.in_memory()
    k.declare_queue("q")
    rt = Runtime(k, agents=[("w", ["q"], 1)])
    with pytest.raises(InvalidSpecError, match="coroutine"):
        async def coro(p):
            return p
        rt.register("q", coro, executor=DaskExecutor(client))
