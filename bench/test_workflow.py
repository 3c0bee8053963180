"""Workflow overhead: a 1,000-step workflow run to the end with no-op handlers, against the
same tasks submitted as a plain DAG, in the same run (the issue's target: at most 2x).

Groups and ids:

* ``workflow-sequential`` — 1,000 task steps one after the other: ``workflow``
  (``start_workflow`` + the Runtime until idle) vs ``baseline-dag`` (a chain of 1,000 tasks,
  each depending on the one before, ``submit_many`` + the Runtime until idle);
* ``workflow-parallel`` — one parallel group of 1,000 task steps vs 1,000 independent tasks;
* ``workflow-kernel`` — the sequential case with a bare ``claim`` / ``complete`` loop instead
  of the Runtime: the kernel's own cost, without handler overhead;
* ``workflow-paired`` — both shapes, the workflow and its DAG twin alternating round after
  round (the figure to quote on a shared machine: the median of the per-pair ratios).

The kernel (in memory) is built in ``setup``; a round is the start (or submit) and the run
to the end.  Quote medians:

    .venv/bin/python -m pytest bench/test_workflow.py -p no:cacheprovider --benchmark-only \
        --benchmark-columns=median,rounds -o addopts="--import-mode=importlib" -s
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from typing import Any

import pytest

from eskernel import Kernel
from eskernel.runtime import Runtime
from eskernel.workflows import WorkflowBuilder

N = 1_000
ROUNDS = 3 if os.environ.get("ESKERNEL_BENCH_QUICK") else 7


async def noop(payload: Any) -> None:
    return None


def sequential() -> Any:
    b = WorkflowBuilder("seq")
    for i in range(N):
        b.add_task_step(f"s{i}", queue="q")
    return b.build()


def parallel() -> Any:
    b = WorkflowBuilder("par")
    for i in range(N):
        b.add_task_step(f"s{i}", queue="q")
    return b.add_parallel_step("all", [f"s{i}" for i in range(N)]).build()


def _kernel() -> Kernel:
    k = Kernel.in_memory()
    k.declare_queue("q")
    k.register_agent("w", ["q"], capacity=64)
    return k


def _with_runtime(start: Any) -> Any:
    def setup() -> Any:
        k = _kernel()
        rt = Runtime(k, agents=["w"])
        rt.register("q", noop)
        return (k, rt, start), {}
    return setup


def _run(k: Kernel, rt: Runtime, start: Any) -> None:
    start(k)
    asyncio.run(rt.run_until_idle())
    rt.close()
    assert rt.completed == N, rt.stats()


def _chain(k: Kernel) -> None:
    k.submit_many([{"queue": "q", "id": f"c{i}", "depends_on": [f"c{i - 1}"] if i else []}
                   for i in range(N)])


def _flat(k: Kernel) -> None:
    k.submit_many([{"queue": "q", "id": f"c{i}"} for i in range(N)])


def _drain(k: Kernel, start: Any) -> None:
    start(k)
    claim, complete, done = k.claim, k.complete, 0
    while (lease := claim("w")) is not None:
        complete(lease)
        done += 1
    assert done == N


@pytest.mark.benchmark(group="workflow-sequential")
@pytest.mark.parametrize("impl", ["workflow", "baseline-dag"])
def test_sequential(benchmark: Any, impl: str) -> None:
    wf = sequential()
    start = (lambda k: k.start_workflow(wf, id="w")) if impl == "workflow" else _chain
    benchmark.pedantic(_run, setup=_with_runtime(start), rounds=ROUNDS, iterations=1)
    benchmark.extra_info["impl"] = impl


@pytest.mark.benchmark(group="workflow-parallel")
@pytest.mark.parametrize("impl", ["workflow", "baseline-dag"])
def test_parallel(benchmark: Any, impl: str) -> None:
    wf = parallel()
    start = (lambda k: k.start_workflow(wf, id="w")) if impl == "workflow" else _flat
    benchmark.pedantic(_run, setup=_with_runtime(start), rounds=ROUNDS, iterations=1)
    benchmark.extra_info["impl"] = impl


@pytest.mark.benchmark(group="workflow-kernel")
@pytest.mark.parametrize("impl", ["workflow", "baseline-dag"])
def test_sequential_kernel_only(benchmark: Any, impl: str) -> None:
    wf = sequential()
    start = (lambda k: k.start_workflow(wf, id="w")) if impl == "workflow" else _chain
    benchmark.pedantic(_drain, setup=lambda: ((_kernel(), start), {}), rounds=ROUNDS,
                       iterations=1)
    benchmark.extra_info["impl"] = impl


PAIRS = 5 if os.environ.get("ESKERNEL_BENCH_QUICK") else 21


@pytest.mark.benchmark(group="workflow-paired")
@pytest.mark.parametrize("shape", ["sequential", "parallel"])
def test_paired_ratio(benchmark: Any, shape: str) -> None:
    """The workflow and its plain-DAG twin run alternately, round after round, through the
    Runtime: a load change on the machine hits both alike.  Reported: each median and the
    median of the per-pair ratios (``extra_info``)."""
    wf = sequential() if shape == "sequential" else parallel()
    twin = _chain if shape == "sequential" else _flat
    times: dict[str, list[float]] = {"workflow": [], "baseline-dag": []}

    def one_pair() -> None:
        for impl, start in (("workflow", lambda k: k.start_workflow(wf, id="w")),
                            ("baseline-dag", twin)):
            args, _ = _with_runtime(start)()
            t0 = time.perf_counter()
            _run(*args)
            times[impl].append(time.perf_counter() - t0)

    benchmark.pedantic(one_pair, rounds=PAIRS, iterations=1)
    ratios = sorted(w / b for w, b in zip(times["workflow"], times["baseline-dag"]))
    info = {"impl": "workflow", "workflow_median_ms": statistics.median(times["workflow"]) * 1e3,
            "dag_median_ms": statistics.median(times["baseline-dag"]) * 1e3,
            "ratio_median": ratios[len(ratios) // 2]}
    benchmark.extra_info.update(info)
    print(f"\n{shape}: workflow {info['workflow_median_ms']:.1f} ms, plain DAG "
          f"{info['dag_median_ms']:.1f} ms, median ratio {info['ratio_median']:.2f}x")
