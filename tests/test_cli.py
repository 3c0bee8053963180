"""Every ``eskernel`` command through click's CliRunner, including each error case."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from eskernel.eventlog import EventLog
from eskernel import Kernel
from eskernel.cli._demo import run_demo
from eskernel.cli import cli


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("clidemo") / "demo"
    result = CliRunner().invoke(cli, ["demo", str(d), "--jobs", "20"])
    assert result.exit_code == 0, result.output
    return d


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("clean")
    run_demo(d, jobs=20, snapshot=False)
    return d


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, [str(a) for a in args])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    return r.exit_code, r.stdout, r.stderr


def assert_error(args: list, match: str, *, lines_after: bool = False) -> None:
    code, out, err = run(*args)
    assert code == 1, (out, err)
    lines = err.strip().splitlines()
    # One "error:" line; a SQL error may continue with DuckDB's lines, indented.
    assert lines[0].startswith("error: ") and match in err, err
    assert len(lines) == 1 or (lines_after and all(x.startswith("  ") for x in lines[1:])), err
    assert "Traceback" not in out + err


# -- demo ------------------------------------------------------------------------------

def test_demo_prints_report_files_and_next_steps(demo: Path) -> None:
    assert (demo / "report.html").exists() and (demo / "analytics.duckdb").exists()
    assert list(demo.glob("*.seg")) and list(demo.glob("*.snap"))


def test_demo_rerun_wipes_its_own_directory(tmp_path: Path) -> None:
    d = tmp_path / "d"
    code, out, _ = run("demo", d, "--jobs", "5")
    assert code == 0 and "Try next:" in out and f"eskernel status {d}" in out
    assert "Latency percentiles" in out
    code, out, err = run("demo", d, "--jobs", "5")
    assert code == 0 and "wiped the previous demo" in err


def test_demo_refuses_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    assert_error(["demo", tmp_path], "refusing to touch it")
    assert (tmp_path / "precious.txt").exists()


def test_demo_refuses_a_file(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    assert_error(["demo", f], "not a directory")


# -- status / history / replay ----------------------------------------------------------

def test_status_formats(demo: Path) -> None:
    code, out, _ = run("status", demo)
    assert code == 0 and "Tasks by status" in out and "gpu-1" in out
    code, out, _ = run("status", demo, "--json")
    data = json.loads(out)
    assert set(data) == {"summary", "counts", "queues", "agents"}
    assert sum(r["tasks"] for r in data["counts"]) == data["summary"]["tasks"]
    # CSV holds one table per call: --table picks it.
    assert_error(["status", demo, "--csv"], "--table")
    code, out, _ = run("status", demo, "--csv", "--table", "agents")
    assert code == 0 and out.startswith("agent,capabilities,capacity,")
    code, out, _ = run("status", demo, "--json", "--table", "counts")
    assert {r["status"] for r in json.loads(out)} >= {"COMPLETED"}
    assert_error(["status", demo, "--table", "nope"], "counts")


def test_json_and_csv_together_is_an_error(demo: Path) -> None:
    assert_error(["status", demo, "--json", "--csv"], "either --json or --csv")


def test_missing_directory(tmp_path: Path) -> None:
    for cmd in ("status", "verify", "snapshot", "report"):
        assert_error([cmd, tmp_path / "nope"], "does not exist")
    assert_error(["history", tmp_path / "nope", "t"], "does not exist")
    assert_error(["sql", tmp_path / "nope", "SELECT 1"], "does not exist")


def test_not_a_log(tmp_path: Path) -> None:
    assert_error(["status", tmp_path], "no event log")
    assert_error(["report", tmp_path], "no event log")


def test_history(demo: Path) -> None:
    code, out, _ = run("history", demo, "job0000.render1")
    assert code == 0 and "submitted" in out and "claimed" in out
    code, out, _ = run("history", demo, "job0000.render1", "--json")
    trail = json.loads(out)
    assert trail[0]["t"] == "submitted" and all("offset" in e for e in trail)
    code, out, _ = run("history", demo, "job0000.render1", "--csv")
    assert list(csv.reader(io.StringIO(out)))[0][:3] == ["offset", "time", "event"]


def test_history_json_is_in_seconds(demo: Path) -> None:
    code, out, _ = run("history", demo, "job0000.render1", "--json")
    trail = json.loads(out)
    sub = next(e for e in trail if e["t"] == "submitted")
    assert sub["timeout"] < 1e6 and 1e9 < sub["ts"] < 1e10          # seconds, not ns
    claimed = next(e for e in trail if e["t"] == "claimed")
    assert 0 < claimed["expires"] - claimed["ts"] <= sub["timeout"]


def test_history_unknown_task(demo: Path) -> None:
    assert_error(["history", demo, "no-such-task"], "no-such-task")


def test_replay_until_offset_and_task(demo: Path) -> None:
    code, out, _ = run("replay", demo, "--until", "40", "--json")
    data = json.loads(out)
    assert data["summary"]["events replayed"] == 40
    code, out, _ = run("replay", demo, "--until", "40", "--task", "job0000.ingest", "--json")
    assert json.loads(out)["task"]["id"] == "job0000.ingest"
    code, out, _ = run("replay", demo)
    assert code == 0 and "Agents and their active leases" in out


def test_replay_until_time(demo: Path) -> None:
    code, out, _ = run("replay", demo, "--until", "2023-11-14T22:14:00", "--json")
    assert code == 0
    n_iso = json.loads(out)["summary"]["events replayed"]
    code, out, _ = run("replay", demo, "--until", "@1700000040", "--json")
    assert json.loads(out)["summary"]["events replayed"] == n_iso
    assert 0 < n_iso


def test_replay_errors(demo: Path) -> None:
    assert_error(["replay", demo, "--until", "yesterday"], "neither an offset")
    assert_error(["replay", demo, "--until", "99999999"], "until")
    assert_error(["replay", demo, "--task", "ghost"], "ghost")


# -- verify / snapshot ------------------------------------------------------------------

def test_verify_clean(clean: Path) -> None:
    code, out, _ = run("verify", clean)
    assert code == 0 and out.startswith("ok: ")
    code, out, _ = run("verify", clean, "--json")
    assert code == 0 and json.loads(out)[0]["ok"] is True


def test_verify_demo_with_snapshot(demo: Path) -> None:
    assert run("verify", demo)[0] == 0


def test_verify_violation_exits_1(tmp_path: Path) -> None:
    with EventLog.open(tmp_path) as log:
        log.append(b'{"v":1,"t":"queue_paused","ts":1,"queue":"ghost"}')
    code, out, err = run("verify", tmp_path)
    assert code == 1 and "offset 0 (queue_paused): rule unknown-ref" in err
    code, out, _ = run("verify", tmp_path, "--json")
    row = json.loads(out)[0]
    assert code == 1 and (row["offset"], row["event"], row["rule"]) == (0, "queue_paused",
                                                                        "unknown-ref")


def test_corrupt_log(tmp_path: Path) -> None:
    run_demo(tmp_path, jobs=3, snapshot=False)
    seg = sorted(tmp_path.glob("*.seg"))[0]
    data = bytearray(seg.read_bytes())
    data[len(data) // 3] ^= 0xFF
    seg.write_bytes(bytes(data))
    code, _, err = run("verify", tmp_path)
    assert code == 1 and "rule integrity" in err


def test_corrupt_log_is_an_error_for_readers(tmp_path: Path) -> None:
    run_demo(tmp_path, jobs=3, snapshot=False)
    seg = sorted(tmp_path.glob("*.seg"))[0]
    data = bytearray(seg.read_bytes())
    data[len(data) // 3] ^= 0xFF
    seg.write_bytes(bytes(data))
    assert_error(["status", tmp_path], "corrupt")


def test_snapshot(tmp_path: Path) -> None:
    run_demo(tmp_path, jobs=3, snapshot=False)
    code, out, _ = run("snapshot", tmp_path, "--json")
    row = json.loads(out)[0]
    assert code == 0 and Path(row["path"]).exists()


def test_snapshot_of_a_locked_log(tmp_path: Path) -> None:
    run_demo(tmp_path, jobs=3, snapshot=False)
    with Kernel.open(tmp_path):
        assert_error(["snapshot", tmp_path], "lock")


# -- sql / report -----------------------------------------------------------------------

def test_sql(demo: Path) -> None:
    q = "SELECT status, count(*) AS n FROM tasks GROUP BY status ORDER BY status"
    code, out, _ = run("sql", demo, q)
    assert code == 0 and "COMPLETED" in out
    code, out, _ = run("sql", demo, q, "--json")
    assert {r["status"] for r in json.loads(out)} >= {"COMPLETED"}
    code, out, _ = run("sql", demo, q, "--csv", "--memory")
    assert out.splitlines()[0] == "status,n"


def test_sql_out_file(demo: Path, tmp_path: Path) -> None:
    target = tmp_path / "lat.parquet"
    code, out, _ = run("sql", demo, "SELECT * FROM latency", "--out", target)
    assert code == 0 and target.exists()
    assert_error(["sql", demo, "SELECT 1", "--out", tmp_path / "x.txt"], "not supported")


def test_sql_errors(demo: Path, tmp_path: Path) -> None:
    assert_error(["sql", demo, "SELEC 1"], "SQL error", lines_after=True)
    assert_error(["sql", demo, "SELECT * FROM nope"], "nope", lines_after=True)
    # DuckDB's whole message: the candidate bindings name the right column.
    assert_error(["sql", demo, "SELECT t FROM events"], "Candidate bindings", lines_after=True)
    assert_error(["sql", demo, "SELECT 1", "--db", tmp_path / "no" / "such" / "x.duckdb"],
                 "cannot open the projection database")


def test_sql_is_read_only(tmp_path: Path) -> None:
    run_demo(tmp_path, jobs=5, snapshot=False)
    q = "SELECT count(*) AS n FROM tasks"
    _, before, _ = run("sql", tmp_path, q, "--json")
    for bad in ("COMMIT; DROP TABLE tasks", "DELETE FROM tasks", "DROP TABLE tasks",
                f"COPY (SELECT 1) TO '{tmp_path / 'x.csv'}'", "INSERT INTO tasks (task) VALUES ('x')"):
        assert_error(["sql", tmp_path, bad], "read-only")
        assert_error(["sql", tmp_path, bad, "--memory"], "read-only")
        assert_error(["sql", tmp_path, bad, "--out", tmp_path / "o.csv"], "read-only")
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "o.csv").exists()
    for extra in ([], ["--memory"]):                    # and reads no file
        assert_error(["sql", tmp_path, "SELECT * FROM read_csv('/etc/hostname')", *extra],
                     "disabled by configuration", lines_after=True)
    _, after, _ = run("sql", tmp_path, q, "--json")
    assert json.loads(after) == json.loads(before) and json.loads(after)[0]["n"] > 0


_HOLD_READ_ONLY = """
import sys
from eskernel.analytics import Projection
p = Projection(sys.argv[1], sys.argv[2], read_only=True)
print("holding", flush=True)
sys.stdin.readline()
p.close()
"""


def test_readers_do_not_lock_each_other_out(tmp_path: Path) -> None:
    import subprocess
    import sys
    run_demo(tmp_path, jobs=5, snapshot=False)
    code, _, err = run("sql", tmp_path, "SELECT 1")          # builds analytics.duckdb
    assert code == 0, err
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_READ_ONLY, str(tmp_path),
                               str(tmp_path / "analytics.duckdb")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[1])
    try:
        assert holder.stdout.readline().strip() == "holding"
        code, out, err = run("sql", tmp_path, "SELECT count(*) AS n FROM tasks", "--json")
        assert code == 0 and json.loads(out)[0]["n"] > 0, err
        code, out, err = run("report", tmp_path, "--json")
        assert code == 0 and json.loads(out)["meta"]["events"] > 0, err
    finally:
        holder.communicate("\n", timeout=60)


def test_report(demo: Path, tmp_path: Path) -> None:
    page = tmp_path / "r.html"
    code, out, _ = run("report", demo, "--html", page)
    assert code == 0 and "Utilization by agent" in out and page.exists()
    assert "<svg" in page.read_text() and "<script" not in page.read_text()
    code, out, _ = run("report", demo, "--json", "--last", "120", "--bucket", "10")
    data = json.loads(out)
    assert data["meta"]["bucket_s"] == 10 and data["meta"]["window_s"] <= 120
    assert_error(["report", demo, "--csv"], "--table")
    code, out, _ = run("report", demo, "--csv", "--table", "latency")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and rows and "wait_p50_s" in rows[0] and "#" not in out


def test_report_bad_window(demo: Path) -> None:
    assert_error(["report", demo, "--last", "-5"], "window")


def test_main_and_module_entry() -> None:
    from eskernel.cli import main
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
