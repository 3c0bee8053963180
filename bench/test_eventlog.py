"""Event-log throughput per durability mode, read rate and fsync latency.

Every group runs ``eventlog`` against ``baseline-file`` (bench/log_baselines.py) in the same
run.  Each round appends or reads ``N`` records of ~200 bytes, so the per-record rate is
``N / median``; ``extra_info["records"]`` holds ``N``.

    .venv/bin/python -m pytest bench/test_eventlog.py --benchmark-only -q -p no:cacheprovider
"""

from __future__ import annotations

import itertools
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.log_baselines import BaselineFileLog, baseline_export_json_lines, baseline_read
from eskernel.eventlog import EventLog

N = 100_000
BATCH = 1000
RECORD = (b'{"kind":"task_submitted","task":"render-000001","queue":"render","prio":3,'
          b'"pad":"' + b"x" * 117 + b'"}')
assert len(RECORD) == 200
IMPLS = ["eventlog", "baseline-file"]


@pytest.fixture
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="eventlog-bench-") as d:
        yield Path(d)


class Opened:
    """Opens a fresh log per round and closes them all at the end of the test."""

    def __init__(self, root: Path, impl: str, mode: str) -> None:
        self.root, self.impl, self.mode = root, impl, mode
        self.logs: list = []
        self.counter = itertools.count()

    def new(self):
        d = self.root / f"round-{next(self.counter)}"
        d.mkdir()
        log = (EventLog.open(d, self.mode) if self.impl == "eventlog"
               else BaselineFileLog(d, self.mode))
        self.logs.append(log)
        return log

    def close(self) -> None:
        for log in self.logs:
            log.close()


def _single_appends(log, n: int = N) -> None:
    append, record = log.append, RECORD
    for _ in range(n):
        append(record)
    log.flush()


def _batched_appends(log, n: int = N) -> None:
    batch = [RECORD] * BATCH
    append_many = log.append_many
    for _ in range(n // BATCH):
        append_many(batch)


@pytest.mark.benchmark(group="log-append-buffer")
@pytest.mark.parametrize("impl", IMPLS)
def test_append_buffer(benchmark, workdir: Path, impl: str) -> None:
    opened = Opened(workdir, impl, "buffer")
    try:
        benchmark.extra_info["records"] = N
        benchmark.pedantic(_single_appends, setup=lambda: ((opened.new(),), {}),
                           rounds=15, iterations=1)
    finally:
        opened.close()
    assert opened.logs[0].next_offset == N


@pytest.mark.benchmark(group="log-append-write")
@pytest.mark.parametrize("impl", IMPLS)
def test_append_write(benchmark, workdir: Path, impl: str) -> None:
    opened = Opened(workdir, impl, "write")
    try:
        benchmark.extra_info["records"] = N
        benchmark.pedantic(_single_appends, setup=lambda: ((opened.new(),), {}),
                           rounds=8, iterations=1)
    finally:
        opened.close()


@pytest.mark.benchmark(group="log-append-fsync")
@pytest.mark.parametrize("impl", IMPLS)
def test_append_fsync_batches(benchmark, workdir: Path, impl: str) -> None:
    """Acknowledged on disk: append_many of 1000 records, one fdatasync per batch."""
    opened = Opened(workdir, impl, "fsync")
    try:
        benchmark.extra_info["records"] = N
        benchmark.extra_info["batch"] = BATCH
        benchmark.pedantic(_batched_appends, setup=lambda: ((opened.new(),), {}),
                           rounds=8, iterations=1)
    finally:
        opened.close()


@pytest.fixture(scope="module")
def filled() -> Iterator[Path]:
    """One log and one baseline file of N records each, written once."""
    with tempfile.TemporaryDirectory(prefix="eventlog-bench-read-") as d:
        with EventLog.open(Path(d, "log"), "buffer") as log:
            _batched_appends(log)
        base = BaselineFileLog(Path(d), "buffer")
        _batched_appends(base)
        base.close()
        yield Path(d)


def _read_all(reader) -> int:
    off, read_batch = 0, reader.read_batch
    while batch := read_batch(off, 4096):
        off += len(batch)
    return off


@pytest.mark.benchmark(group="log-read")
@pytest.mark.parametrize("impl", IMPLS)
def test_sequential_read(benchmark, filled: Path, impl: str) -> None:
    """Replay path: every record, checksums verified (read_batch vs struct + zlib.crc32)."""
    benchmark.extra_info["records"] = N
    if impl == "eventlog":
        with EventLog.open_readonly(filled / "log") as reader:
            count = benchmark.pedantic(_read_all, args=(reader,), rounds=15, iterations=1)
    else:
        count = len(benchmark.pedantic(baseline_read, args=(filled / "baseline.log",),
                                       rounds=15, iterations=1))
    assert count == N


@pytest.mark.benchmark(group="log-read-iter")
@pytest.mark.parametrize("impl", IMPLS)
def test_sequential_read_iter(benchmark, filled: Path, impl: str) -> None:
    """(offset, record) pairs through the iterator API."""
    benchmark.extra_info["records"] = N
    if impl == "eventlog":
        with EventLog.open_readonly(filled / "log") as reader:
            count = benchmark.pedantic(lambda: sum(1 for _ in reader.read()), rounds=15,
                                       iterations=1)
    else:
        count = benchmark.pedantic(
            lambda: sum(1 for _ in enumerate(baseline_read(filled / "baseline.log"))),
            rounds=15, iterations=1)
    assert count == N


@pytest.mark.benchmark(group="log-export-jsonl")
@pytest.mark.parametrize("impl", IMPLS)
def test_export_json_lines(benchmark, filled: Path, workdir: Path, impl: str) -> None:
    """The analytics path: records to NDJSON with offsets (baseline: read + inject in Python)."""
    benchmark.extra_info["records"] = N
    dest = workdir / "out.jsonl"
    if impl == "eventlog":
        with EventLog.open_readonly(filled / "log") as reader:
            end = benchmark.pedantic(reader.export_json_lines, args=(dest,), rounds=10,
                                     iterations=1)
    else:
        end = benchmark.pedantic(
            lambda: baseline_export_json_lines(baseline_read(filled / "baseline.log"), dest),
            rounds=10, iterations=1)
    assert end == N


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@pytest.mark.benchmark(group="log-fsync-latency")
@pytest.mark.parametrize("shape", ["2-threads-single", "batch-1000"])
def test_fsync_append_to_durable_latency(benchmark, workdir: Path, shape: str) -> None:
    """Append-to-durable latency in fsync mode (wall time of the call that acknowledges).

    ``2-threads-single``: two threads each call ``append`` 1000 times; every call returns
    once its record is fdatasync'ed, sharing syncs with the other thread (group commit).
    ``batch-1000``: ``append_many`` of 1000 records, one fdatasync; the latency of the
    batch is the latency of each record in it.  p50/p99 in ms are in ``extra_info``.
    """
    latencies: list[float] = []
    per_thread = 1000
    opened = Opened(workdir, "eventlog", "fsync")

    def single(log) -> None:
        def worker() -> None:
            mine = []
            for _ in range(per_thread):
                t0 = time.perf_counter()
                log.append(RECORD)
                mine.append(time.perf_counter() - t0)
            latencies.extend(mine)
        threads = [threading.Thread(target=worker) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def batched(log) -> None:
        batch = [RECORD] * BATCH
        for _ in range(100):
            t0 = time.perf_counter()
            log.append_many(batch)
            latencies.append(time.perf_counter() - t0)

    try:
        benchmark.pedantic(single if shape == "2-threads-single" else batched,
                           setup=lambda: ((opened.new(),), {}), rounds=3, iterations=1)
    finally:
        opened.close()
    benchmark.extra_info["records"] = 2 * per_thread if shape == "2-threads-single" else N
    benchmark.extra_info["p50_ms"] = round(_percentile(latencies, 0.50) * 1e3, 3)
    benchmark.extra_info["p99_ms"] = round(_percentile(latencies, 0.99) * 1e3, 3)
    benchmark.extra_info["calls"] = len(latencies)
    assert all(os.path.exists(log.path) for log in opened.logs)
