"""Handler runtime overhead: no-op handlers through ``kernel.runtime.Runtime``.

Groups and ids:

* ``runtime-async`` — ``async def noop(p): return None``:
  ``runtime`` (the Runtime, eager start), ``kernel-loop`` (a bare ``claim_many`` +
  ``complete`` loop with no handler: the kernel's floor) and ``baseline-asyncio`` (plain
  asyncio running the same no-op coroutines as tasks under a semaphore of the same size: the
  named baseline of the issue).
* ``runtime-async-yield`` — a handler that suspends once (``await asyncio.sleep(0)``), so
  every task becomes an ``asyncio.Task``: ``runtime`` vs ``baseline-asyncio``.
* ``runtime-sync`` — ``def noop(p): return None``: ``runtime-thread`` (thread pool),
  ``runtime-inline`` (on the loop) and ``baseline-threadpool`` (``run_in_executor`` under a
  semaphore).

Each round runs N tasks (the kernel and its submitted tasks are built in ``setup``, not
timed); tasks/s = N / round time.  Quote medians:

    .venv/bin/python -m pytest bench/test_runtime.py -p no:cacheprovider \
        --benchmark-only --benchmark-columns=median,rounds -o addopts="--import-mode=importlib"
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import os

import pytest

from eskernel import Kernel
from eskernel.runtime import Runtime

N = 5_000 if os.environ.get("ESKERNEL_BENCH_QUICK") else 20_000
CAPACITY = 256
ROUNDS = 5


async def noop(payload):
    return None


async def yield_once(payload):
    await asyncio.sleep(0)


def sync_noop(payload):
    return None


def _world():
    k = Kernel.in_memory()
    k.declare_queue("q")
    k.register_agent("w", ["q"], capacity=CAPACITY)
    k.submit_many([{"queue": "q"} for _ in range(N)])
    return k


def _runtime(fn, executor="auto"):
    def setup():
        k = _world()
        rt = Runtime(k, agents=["w"], max_threads=8)
        rt.register("q", fn, executor=executor)
        return (k, rt), {}
    return setup


def _run_runtime(k, rt):
    asyncio.run(rt.run_until_idle())
    rt.close()
    assert rt.completed == N, rt.stats()


def _kernel_loop(k):
    claim_many, complete = k.claim_many, k.complete
    done = 0
    while True:
        leases = claim_many("w", CAPACITY)
        if not leases:
            break
        for lease in leases:
            complete(lease, None)
        done += len(leases)
    assert done == N


def _baseline_asyncio(fn):
    async def main():
        sem = asyncio.Semaphore(CAPACITY)

        async def one(i):
            async with sem:
                await fn(i)

        await asyncio.gather(*[one(i) for i in range(N)])
    asyncio.run(main())


def _baseline_threadpool():
    async def main():
        sem = asyncio.Semaphore(CAPACITY)
        loop = asyncio.get_running_loop()
        with cf.ThreadPoolExecutor(max_workers=8) as pool:
            async def one(i):
                async with sem:
                    await loop.run_in_executor(pool, sync_noop, i)

            await asyncio.gather(*[one(i) for i in range(N)])
    asyncio.run(main())


def _record(benchmark):
    stats = benchmark.stats.stats if benchmark.stats else None
    if stats is not None:
        benchmark.extra_info["tasks_per_s_median"] = round(N / stats.median)


@pytest.mark.benchmark(group="runtime-async")
@pytest.mark.parametrize("impl", ["runtime", "kernel-loop", "baseline-asyncio"])
def test_async_noop(benchmark, impl):
    if impl == "runtime":
        benchmark.pedantic(_run_runtime, setup=_runtime(noop), rounds=ROUNDS, iterations=1)
    elif impl == "kernel-loop":
        benchmark.pedantic(_kernel_loop, setup=lambda: ((_world(),), {}), rounds=ROUNDS,
                           iterations=1)
    else:
        benchmark.pedantic(_baseline_asyncio, args=(noop,), rounds=ROUNDS, iterations=1)
    _record(benchmark)


@pytest.mark.benchmark(group="runtime-async-yield")
@pytest.mark.parametrize("impl", ["runtime", "baseline-asyncio"])
def test_async_yielding(benchmark, impl):
    if impl == "runtime":
        benchmark.pedantic(_run_runtime, setup=_runtime(yield_once), rounds=ROUNDS,
                           iterations=1)
    else:
        benchmark.pedantic(_baseline_asyncio, args=(yield_once,), rounds=ROUNDS, iterations=1)
    _record(benchmark)


@pytest.mark.benchmark(group="runtime-sync")
@pytest.mark.parametrize("impl", ["runtime-thread", "runtime-inline", "baseline-threadpool"])
def test_sync_noop(benchmark, impl):
    if impl == "baseline-threadpool":
        benchmark.pedantic(_baseline_threadpool, rounds=ROUNDS, iterations=1)
    else:
        executor = "thread" if impl == "runtime-thread" else "inline"
        benchmark.pedantic(_run_runtime, setup=_runtime(sync_noop, executor), rounds=ROUNDS,
                           iterations=1)
    _record(benchmark)
