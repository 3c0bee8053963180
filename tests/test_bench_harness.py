"""The benchmark harness itself: targets, report, peers and the ``eskernel bench`` command.

Nothing here measures or asserts on time: fake results stand in for a fast and a slow
implementation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import peers, report
from bench.baselines import HeapqScheduler
from bench.targets import TARGETS, by_id


def entry(name: str, group: str, impl: str | None = None, median: float = 1.0,
          **extra: Any) -> dict[str, Any]:
    info = dict(extra)
    if impl is not None:
        info["impl"] = impl
    return {"name": name, "group": group, "stats": {"median": median}, "extra_info": info}


def claim_entries(p50: float) -> list[dict[str, Any]]:
    return [entry("test_claim_latency[core-buffer]", "claim", "core",
                  **{"kernel.claim.buffer.p50": p50, "kernel.claim.buffer.p99": p50 * 3}),
            entry("test_claim_latency[baseline-heapq]", "claim", "baseline-heapq",
                  **{"kernel.claim.buffer.p50": 3.0, "kernel.claim.buffer.p99": 6.0})]


def test_targets_are_unique_and_well_formed() -> None:
    ids = [t.id for t in TARGETS]
    assert len(ids) == len(set(ids))
    assert {t.issue for t in TARGETS} == {2, 3, 4, 5}
    for t in TARGETS:
        assert t.better in ("lower", "higher") and t.threshold > 0


def test_fast_implementation_passes() -> None:
    row = report.measure(by_id("kernel.claim.buffer.p50"), claim_entries(0.5))
    assert row.status == "PASS"
    assert row.value == 0.5 and row.baseline == 3.0
    assert row.ratio == pytest.approx(0.5 / 3.0)
    assert row.p99 == pytest.approx(1.5)


def test_slow_implementation_misses_and_fails_the_run() -> None:
    rows = report.rows(claim_entries(9.0), [by_id("kernel.claim.buffer.p50")])
    assert rows[0].status == "MISS"
    assert report.exit_code(rows) == 1
    text = report.render(rows)
    assert "MISS kernel.claim.buffer.p50" in text and "9.0x off" in text


def test_rates_pass_or_miss_by_direction_and_ratio_is_in_time() -> None:
    t = by_id("kernel.roundtrip.single")
    fast = [entry("test_roundtrip[single-core-buffer]", "roundtrip", "core",
                  **{t.key: 400_000.0}),
            entry("test_roundtrip[single-baseline-heapq]", "roundtrip", "baseline-heapq",
                  **{t.key: 200_000.0})]
    row = report.measure(t, fast)
    assert row.status == "PASS" and row.ratio == pytest.approx(0.5)
    fast[0]["extra_info"][t.key] = 1000.0
    assert report.measure(t, fast).status == "MISS"


def test_fallback_uses_the_median_and_record_count() -> None:
    t = by_id("eventlog.append.write")
    entries = [entry("test_append_write[eventlog]", t.group, median=0.1, records=100_000),
               entry("test_append_write[baseline-file]", t.group, median=0.5, records=100_000)]
    row = report.measure(t, entries)
    assert row.value == pytest.approx(1_000_000) and row.baseline == pytest.approx(200_000)
    assert row.status == "PASS"


def test_targets_without_results_are_not_run_and_do_not_fail() -> None:
    rows = report.rows([], TARGETS)
    assert {r.status for r in rows} == {"NOT RUN"}
    assert report.exit_code(rows) == 0


def test_scale_flat_is_derived_from_the_curve() -> None:
    es = [entry(f"test_claim_scale[core-{n}]", "scale", "core", n=n, p50_us=v)
          for n, v in ((10_000, 1.0), (1_000_000, 2.0))]
    row = report.measure(by_id("kernel.scale.flat"), es)
    assert row.value == pytest.approx(2.0) and row.status == "MISS"


def test_missing_peers_are_reported_as_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(peers._MODULES, "peer-huey-memory", "no_such_module_for_bench")
    skipped = dict(peers.skipped_peers())
    assert "peer-huey-memory" in skipped
    assert "not installed" in skipped["peer-huey-memory"]
    lines = report.peer_lines([], list(skipped.items()))
    assert any("peer-huey-memory" in line and "skipped" in line for line in lines)


def test_report_main_prints_the_table_and_exits_nonzero_on_miss(tmp_path: Path,
                                                                capsys: Any) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"benchmarks": claim_entries(9.0)}))
    assert report.main([str(path)]) == 1
    out = capsys.readouterr().out
    assert "kernel.claim.buffer.p50" in out and "MISS" in out
    path.write_text(json.dumps({"benchmarks": claim_entries(0.5)}))
    assert report.main([str(path)]) == 0


def test_baseline_scheduler_priorities_fifo_capacity_and_deps() -> None:
    s = HeapqScheduler()
    s.declare_queue("q", max_concurrent=2)
    s.register_agent("a", ["q"], capacity=5)
    s.submit("q", id="low", priority=1)
    s.submit("q", id="hi-1", priority=3)
    s.submit("q", id="hi-2", priority=3)
    s.submit("q", id="after", priority=5, depends_on=["low"])
    first, second = s.claim("a"), s.claim("a")
    assert (first[1], second[1]) == ("hi-1", "hi-2")
    assert s.claim("a") is None          # max_concurrent=2 reached
    s.complete(first)
    low = s.claim("a")
    assert low[1] == "low"
    s.complete(low)
    s.complete(second)
    assert s.claim("a")[1] == "after"


def test_cli_bench_builds_the_pytest_command(tmp_path: Path) -> None:
    from eskernel.cli._bench import pytest_args
    args = pytest_args(Path("bench"), "out.json", quick=True, compare=True, save="base",
                       compare_to="base")
    assert "--bench-quick" in args and "--peers" in args
    assert args[args.index("--benchmark-json") + 1] == "out.json"
    assert "--benchmark-save" in args and "--benchmark-compare-fail=median:10%" in args


def test_cli_bench_reports_and_exits_nonzero(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from eskernel.cli import _bench as _cli_bench

    def fake_run(args: list[str], **_: Any) -> Any:
        out = args[args.index("--benchmark-json") + 1]
        Path(out).write_text(json.dumps({"benchmarks": claim_entries(9.0)}))

        class P:
            returncode, stdout = 0, ""
        return P()

    monkeypatch.setattr(_cli_bench.subprocess, "run", fake_run)
    res = CliRunner().invoke(_cli_bench.bench, ["--quick", "--compare"])
    assert res.exit_code == 1
    assert "kernel.claim.buffer.p50" in res.output and "MISS" in res.output
    assert "peers" in res.output
