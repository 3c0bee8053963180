"""The network service on loopback: ``eskernel serve`` in its own process, Python clients
in this one (and in worker processes), and a Redis list queue as the named remote baseline.

Groups and ids (``impl`` in extra_info: ``core`` or ``baseline-redis``):

* ``service-roundtrip`` — one task in flight: ``claim`` then ``complete`` (Redis: ``BLMOVE``
  to a processing list, then ``LREM``); per-task latency p50 / p99.
* ``service-single`` — one connection, one call at a time: ``submit``, ``claim``,
  ``complete`` per task (Redis: ``LPUSH``, ``BLMOVE``, ``LREM``); tasks/s.
* ``service-batched-write`` / ``service-batched-fsync`` — 4 worker processes draining
  pre-submitted tasks with ``claim_many`` / ``complete_many`` of 100 (Redis: pipelined
  ``LMOVE`` / ``LREM`` of 100); tasks/s from the first claim to the last completion, the
  median of 3 rounds.
* ``service-dispatch`` — a claim parked in a worker process, then a submit from this one:
  ns from just before the submit to the parked claim's return (CLOCK_MONOTONIC in both).

Redis runs when ``redis-server`` and the ``redis`` package are installed (``pip install
eskernel[redis]``; Debian: ``apt-get install redis-server``), else it is skipped with a
message.  Run and quote medians:

    .venv/bin/python -m pytest bench/test_service.py --benchmark-only -p no:cacheprovider \
        --benchmark-columns=median,rounds
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from bench.conftest import percentiles
from bench.targets import quick_mode
from eskernel.service import Client

QUICK = quick_mode()
RT_N = 2_000 if QUICK else 10_000
SINGLE_N = 2_000 if QUICK else 10_000
BATCH_N = 20_000 if QUICK else 200_000
DISPATCH_N = 200 if QUICK else 1_000
WORKERS = 4


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen) -> None:
    for _ in range(500):
        if proc.poll() is not None:
            raise RuntimeError("the server exited")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("the server did not start")


class Served:
    """``eskernel serve`` on a fresh directory in a child process."""

    def __init__(self, durability: str = "write") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="esk-bench-"))
        self.port = _port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "eskernel", "serve", str(self.dir / "log"), "--listen",
             f"127.0.0.1:{self.port}", "--durability", durability],
            stderr=subprocess.DEVNULL)
        _wait_port(self.port, self.proc)
        self.address = f"127.0.0.1:{self.port}"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)


class Redis:
    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        try:
            import redis
        except ImportError:
            redis = None
        if exe is None or redis is None:
            pytest.skip("Redis baseline skipped: needs redis-server (apt-get install "
                        "redis-server) and the redis package (pip install eskernel[redis])")
        self.port = _port()
        self.proc = subprocess.Popen([exe, "--port", str(self.port), "--save", "",
                                      "--appendonly", "no", "--bind", "127.0.0.1"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port, self.proc)
        self.r = redis.Redis(port=self.port)

    def close(self) -> None:
        self.r.close()
        self.proc.kill()
        self.proc.wait(30)


@pytest.fixture(scope="module")
def served():
    s = Served()
    with Client(s.address) as c:
        c.declare_queue("q")
        c.register_agent("w", ["q"], 64)
    yield s
    s.close()


@pytest.fixture(scope="module")
def redis_server():
    r = Redis()
    yield r
    r.close()


def _record(benchmark, impl: str, **values: float) -> None:
    benchmark.extra_info["impl"] = impl
    benchmark.extra_info.update(values)


# -- claim -> complete, one in flight -------------------------------------------------------

@pytest.mark.benchmark(group="service-roundtrip")
def test_roundtrip_core(benchmark, served):
    c = Client(served.address)
    lat: list[int] = []

    def setup():
        for i in range(0, RT_N, 1000):
            c.submit_many([{"queue": "q"} for _ in range(1000)])

    def run():
        pc = time.perf_counter_ns
        claim, complete = c.claim, c.complete
        for _ in range(RT_N):
            t0 = pc()
            complete(claim("w"))
            lat.append(pc() - t0)

    benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    p = percentiles(lat)
    _record(benchmark, "core", **{"service.roundtrip.p50": p["p50"],
                                  "service.roundtrip.p99": p["p99"], "items": RT_N})
    c.close()


@pytest.mark.benchmark(group="service-roundtrip")
def test_roundtrip_baseline_redis(benchmark, redis_server):
    r = redis_server.r
    lat: list[int] = []

    def setup():
        r.delete("q", "processing")
        for i in range(0, RT_N, 1000):
            r.rpush("q", *([b"x"] * 1000))

    def run():
        pc = time.perf_counter_ns
        for _ in range(RT_N):
            t0 = pc()
            item = r.blmove("q", "processing", 1, "LEFT", "RIGHT")
            r.lrem("processing", 1, item)
            lat.append(pc() - t0)

    benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    p = percentiles(lat)
    _record(benchmark, "baseline-redis", **{"service.roundtrip.p50": p["p50"],
                                            "service.roundtrip.p99": p["p99"],
                                            "items": RT_N})


# -- one connection, one call at a time -----------------------------------------------------

@pytest.mark.benchmark(group="service-single")
def test_single_core(benchmark, served):
    c = Client(served.address)

    def run():
        submit, claim, complete = c.submit, c.claim, c.complete
        for _ in range(SINGLE_N):
            submit("q")
            complete(claim("w"))

    benchmark.pedantic(run, rounds=3, iterations=1)
    _record(benchmark, "core", items=SINGLE_N,
            **{"service.single": SINGLE_N / benchmark.stats.stats.median})
    c.close()


@pytest.mark.benchmark(group="service-single")
def test_single_baseline_redis(benchmark, redis_server):
    r = redis_server.r

    def run():
        for _ in range(SINGLE_N):
            r.lpush("q", b"x")
            item = r.blmove("q", "processing", 1, "LEFT", "RIGHT")
            r.lrem("processing", 1, item)

    benchmark.pedantic(run, setup=lambda: r.delete("q", "processing"), rounds=3,
                       iterations=1)
    _record(benchmark, "baseline-redis", items=SINGLE_N,
            **{"service.single": SINGLE_N / benchmark.stats.stats.median})


# -- batched, 4 worker processes ------------------------------------------------------------

def _drain(argv_of, fill) -> float:
    """Fill the queue, start the workers (each prints 'ready'), and time until all exit."""
    fill()
    procs = [subprocess.Popen(argv_of(i), stdout=subprocess.PIPE, text=True)
             for i in range(WORKERS)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    t0 = time.perf_counter()
    done = 0
    for p in procs:
        out, _ = p.communicate(timeout=600)
        done += int(out.split()[-1])
    # each worker waits 1 s on an empty queue before it exits: not part of the work
    elapsed = time.perf_counter() - t0 - 1.0
    assert done == BATCH_N, (done, BATCH_N)
    return BATCH_N / elapsed


@pytest.mark.parametrize("durability", ["write", "fsync"])
def test_batched_core(benchmark, durability):
    benchmark.group = f"service-batched-{durability}"
    s = Served(durability)
    try:
        with Client(s.address) as c:
            c.declare_queue("q")
            for i in range(WORKERS):
                c.register_agent(f"b{i}", ["q"], 100)

            def fill():
                for i in range(0, BATCH_N, 5000):
                    c.submit_many([{"queue": "q"} for _ in range(5000)])

            rates: list[float] = []

            def run():
                rates.append(_drain(lambda i: [sys.executable, "-m", "bench.service_procs",
                                               "batch", s.address, f"b{i}", "100"], fill))

            benchmark.pedantic(run, rounds=3, iterations=1)
        _record(benchmark, "core", items=BATCH_N,
                **{f"service.batched.{durability}": sorted(rates)[len(rates) // 2]})
    finally:
        s.close()


@pytest.mark.benchmark(group="service-batched-write")
def test_batched_baseline_redis(benchmark, redis_server):
    r = redis_server.r

    def fill():
        r.delete("q", "processing")
        for i in range(0, BATCH_N, 5000):
            r.rpush("q", *([b"x"] * 5000))

    rates: list[float] = []

    def run():
        rates.append(_drain(lambda i: [sys.executable, "-m", "bench.service_procs",
                                       "redis-batch", str(redis_server.port), "100"], fill))

    benchmark.pedantic(run, rounds=3, iterations=1)
    _record(benchmark, "baseline-redis", items=BATCH_N,
            **{"service.batched.write": sorted(rates)[len(rates) // 2]})


# -- dispatch latency: submit -> parked claim returns ---------------------------------------

def _dispatch(argv: list[str], submit) -> dict[str, float]:
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    for _ in range(DISPATCH_N):
        time.sleep(0.002)           # let the claim park first
        submit(time.monotonic_ns())
    out, _ = p.communicate(timeout=120)
    pairs = json.loads(out)
    return percentiles([t1 - t0 for t1, t0 in pairs])


@pytest.mark.benchmark(group="service-dispatch")
def test_dispatch_core(benchmark, served):
    c = Client(served.address)
    res: list[dict[str, float]] = []

    def run():
        res.append(_dispatch([sys.executable, "-m", "bench.service_procs", "dispatch",
                              served.address, "w", str(DISPATCH_N)],
                             lambda t0: c.submit("q", t0)))

    benchmark.pedantic(run, rounds=1, iterations=1)
    _record(benchmark, "core", **{"service.dispatch.p50": res[0]["p50"],
                                  "service.dispatch.p99": res[0]["p99"]})
    c.close()


@pytest.mark.benchmark(group="service-dispatch")
def test_dispatch_baseline_redis(benchmark, redis_server):
    r = redis_server.r
    r.delete("q", "processing")
    res: list[dict[str, float]] = []

    def run():
        res.append(_dispatch([sys.executable, "-m", "bench.service_procs", "redis-dispatch",
                              str(redis_server.port), str(DISPATCH_N)],
                             lambda t0: r.lpush("q", str(t0))))

    benchmark.pedantic(run, rounds=1, iterations=1)
    _record(benchmark, "baseline-redis", **{"service.dispatch.p50": res[0]["p50"],
                                            "service.dispatch.p99": res[0]["p99"]})


if os.environ.get("ESKERNEL_BENCH_SERVICE_SKIP"):   # pragma: no cover
    pytest.skip("service benchmarks skipped", allow_module_level=True)
