"""Every latency, throughput and memory target of eskernel, in one place.

The benchmarks (``bench/test_*.py``) and the report (``bench/report.py``, ``eskernel bench``)
both read this module.  A target is met when the measured value of the ``core``
implementation is on the right side of ``threshold``.

How a benchmark reports a measurement (the convention every ``bench/test_*.py`` follows):

- ``benchmark.extra_info["impl"]`` names the implementation (``core``, ``baseline-heapq``,
  ``baseline-file``, ``model``, ``peer-…``); the pytest param id carries the same name.
- ``benchmark.extra_info[target.key] = value`` in the target's ``unit``.  The baseline of
  the same group records the same key, so the report can show both side by side.
- A benchmark that records no key is still usable: the report falls back to the entry's
  ``extra_info[target.extra]``, else its median time (time units) or
  ``extra_info["items"]`` (or ``["records"]``) / median (rates), for the entries of
  ``target.group`` whose name contains ``target.match``.

Sizes: the full run uses the workload sizes of the issues (1 M tasks); ``--quick``
(``ESKERNEL_BENCH_QUICK=1``) shrinks them so the whole suite runs in under a minute on two
cores.  A quick run checks the same thresholds on smaller workloads; the report says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["Target", "TARGETS", "by_id", "sizes", "quick_mode"]


@dataclass(frozen=True)
class Target:
    id: str              # stable name; also the default extra_info key
    issue: int           # the issue that sets it
    group: str           # pytest-benchmark group that measures it
    metric: str          # what is measured, for humans
    workload: str        # the workload of the full run
    threshold: float
    unit: str            # "us", "ms", "s", "/s", "B", "x"
    better: str          # "lower" or "higher"
    p99_key: str = ""    # extra_info key of a p99 shown beside the median, if any
    match: str = "core"  # fallback: substring of the benchmark name that is the measured impl
    extra: str = ""      # fallback: extra_info key holding the value (else the median is used)

    @property
    def key(self) -> str:
        return self.id

    def met(self, value: float) -> bool:
        return value <= self.threshold if self.better == "lower" else value >= self.threshold

    def describe(self) -> str:
        op = "<=" if self.better == "lower" else ">="
        return f"{op} {fmt(self.threshold, self.unit)}"


def fmt(value: float | None, unit: str) -> str:
    """A value with its unit, compactly (``1.2 us``, ``250k/s``)."""
    if value is None:
        return "-"
    if unit == "/s":
        for div, suf in ((1e6, "M"), (1e3, "k")):
            if value >= div:
                return f"{value / div:.3g}{suf}/s"
        return f"{value:.3g}/s"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "B":
        return f"{value:.0f} B"
    return f"{value:.3g} {unit}"


_T = Target
TARGETS: tuple[Target, ...] = (
    # -- issue 2: the event log (bench/test_eventlog.py) -------------------------------
    _T("eventlog.append.buffer", 2, "log-append-buffer", "append rate, buffer mode",
       "~200-byte records, one thread", 2_000_000, "/s", "higher", match="[eventlog]"),
    _T("eventlog.append.write", 2, "log-append-write", "append rate, write mode",
       "~200-byte records, one thread", 400_000, "/s", "higher", match="[eventlog]"),
    _T("eventlog.append.fsync", 2, "log-append-fsync", "acknowledged-on-disk rate, group commit",
       "~200-byte records", 400_000, "/s", "higher", match="[eventlog]"),
    _T("eventlog.fsync.p50", 2, "log-fsync-latency", "append-to-durable latency p50",
       "fsync mode, 2 threads appending", 2.0, "ms", "lower", p99_key="p99_ms",
       match="2-threads-single", extra="p50_ms"),
    _T("eventlog.fsync.p99", 2, "log-fsync-latency", "append-to-durable latency p99",
       "fsync mode, 2 threads appending", 5.0, "ms", "lower", match="2-threads-single",
       extra="p99_ms"),
    _T("eventlog.read", 2, "log-read", "sequential read with checksum verification",
       "~200-byte records", 2_000_000, "/s", "higher", match="[eventlog]"),
    # -- issue 3: the kernel ------------------------------------------------------------
    _T("kernel.claim.buffer.p50", 3, "claim", "claim latency p50 (event appended)",
       "1M ready tasks, 64 queues, agent serves 4, buffer", 1.0, "us", "lower",
       p99_key="kernel.claim.buffer.p99"),
    _T("kernel.claim.buffer.p99", 3, "claim", "claim latency p99",
       "1M ready tasks, 64 queues, agent serves 4, buffer", 5.0, "us", "lower",
       p99_key="kernel.claim.buffer.p999"),
    _T("kernel.claim.write.p50", 3, "claim", "claim latency p50, write durability",
       "1M ready tasks, 64 queues, agent serves 4, write", 3.0, "us", "lower",
       p99_key="kernel.claim.write.p99"),
    _T("kernel.roundtrip.single", 3, "roundtrip", "submit+claim+complete one at a time",
       "one queue, buffer", 250_000, "/s", "higher"),
    _T("kernel.roundtrip.batch", 3, "roundtrip", "submit_many+claim_many+complete",
       "batches of 1,000, buffer", 500_000, "/s", "higher"),
    _T("kernel.roundtrip.fsync", 3, "roundtrip", "same with fsync group commit, on disk",
       "batches of 1,000, fsync", 200_000, "/s", "higher"),
    _T("kernel.dag", 3, "dag", "DAG drained by claim/complete",
       "100 layers x 1,000 tasks, 2 deps each, buffer", 250_000, "/s", "higher"),
    _T("kernel.replay", 3, "replay", "replay rate (open without snapshot)",
       "log of 1M submitted events", 500_000, "/s", "higher"),
    _T("kernel.open_snapshot", 3, "open-snapshot", "open from snapshot",
       "1M live tasks", 1.0, "s", "lower"),
    _T("kernel.memory.core", 3, "memory", "core bytes per queued task (tracemalloc)",
       "1M queued tasks, payloads excluded", 200, "B", "lower"),
    _T("kernel.scale.flat", 3, "scale", "claim p50 at largest size / at 10k",
       "10k, 100k, 1M queued (10M opt-in)", 1.5, "x", "lower"),
    # -- issue 4: analytics (bench/test_analytics.py) -----------------------------------
    _T("analytics.ingest", 4, "ingest", "ingest from the log into DuckDB",
       "1M events of a kernel log", 1_000_000, "/s", "higher", match="[projection]",
       extra="events_per_s"),
    _T("analytics.report", 4, "report", "standard report",
       "10M tasks", 2.0, "s", "lower", match="test_report_full"),
    _T("analytics.window", 4, "dashboard", "dashboard window (last hour)",
       "10M tasks", 50.0, "ms", "lower", match="test_report_last_hour"),
    # -- issue 5: the handler runtime (bench/test_runtime.py) ---------------------------
    _T("runtime.async_noop", 5, "runtime-async", "async no-op handlers through the runtime",
       "one core", 50_000, "/s", "higher", match="[runtime]", extra="tasks_per_s_median"),
    # -- issue 13: the network service (bench/test_service.py; loopback TCP) -------------
    _T("service.roundtrip.p50", 13, "service-roundtrip", "remote claim -> complete p50",
       "one task in flight, one Python client", 150.0, "us", "lower",
       p99_key="service.roundtrip.p99"),
    _T("service.roundtrip.p99", 13, "service-roundtrip", "remote claim -> complete p99",
       "one task in flight, one Python client", 1000.0, "us", "lower"),
    _T("service.single", 13, "service-single", "submit + claim + complete, one call at a time",
       "one connection", 10_000, "/s", "higher"),
    _T("service.batched.write", 13, "service-batched-write", "claim_many / complete_many",
       "4 worker processes, batches of 100, write", 100_000, "/s", "higher"),
    _T("service.batched.fsync", 13, "service-batched-fsync", "claim_many / complete_many",
       "4 worker processes, batches of 100, fsync", 50_000, "/s", "higher"),
    _T("service.dispatch.p50", 13, "service-dispatch", "submit -> parked claim returns p50",
       "one parked worker process", 1000.0, "us", "lower",
       p99_key="service.dispatch.p99"),
)


def by_id(target_id: str) -> Target:
    for t in TARGETS:
        if t.id == target_id:
            return t
    raise KeyError(target_id)


def quick_mode() -> bool:
    return os.environ.get("ESKERNEL_BENCH_QUICK", "") not in ("", "0")


# Workload sizes.  Full: the issues' sizes.  Quick: < 1 minute for the whole suite.
_SIZES = {
    "full": {
        "claim_n": 1_000_000, "claim_k": 20_000, "claim_rounds": 3,
        "rt_n": 20_000, "rt_batch_n": 50_000, "rt_fsync_n": 2_000, "batch": 1_000,
        "dag_layers": 100, "dag_width": 1_000,
        "replay_n": 1_000_000, "memory_n": 1_000_000,
        "scale": (10_000, 100_000, 1_000_000), "scale_k": 5_000,
        "complete_k": 20_000, "tick_k": 20_000, "model_n": 1_000,
    },
    "quick": {
        "claim_n": 50_000, "claim_k": 3_000, "claim_rounds": 3,
        "rt_n": 5_000, "rt_batch_n": 10_000, "rt_fsync_n": 200, "batch": 1_000,
        "dag_layers": 20, "dag_width": 500,
        "replay_n": 50_000, "memory_n": 100_000,
        "scale": (10_000, 50_000), "scale_k": 1_000,
        "complete_k": 3_000, "tick_k": 3_000, "model_n": 300,
    },
}


def sizes() -> dict:
    s = dict(_SIZES["quick" if quick_mode() else "full"])
    if os.environ.get("ESKERNEL_BENCH_10M") and not quick_mode():
        s["scale"] = (*s["scale"], 10_000_000)
    return s
