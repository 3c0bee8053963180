"""Snapshots are a trust boundary: no code runs, nothing acknowledged is hidden, a failed
snapshot never fails the call that triggered it, and verify reports every bad snapshot."""

from __future__ import annotations

import errno
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from eskernel.eventlog import EventLog
from eskernel.eventlog.snapshots import list_snapshots, write_snapshot
from eskernel import (InvalidSpecError, Kernel, LogWriteError, ManualClock, SnapshotCorruptError)
from eskernel._snapshot import decode
from eskernel.cli import cli

REPO = Path(__file__).resolve().parents[1]


def _world(d: Path, n: int = 20, every: int = 0) -> str:
    """A small kernel in ``d``: tasks in every state; returns its digest."""
    with Kernel.open(d, clock=ManualClock(), snapshot_every=every) as k:
        k.declare_queue("q", max_concurrent=3)
        k.register_agent("a", ["q"], capacity=4)
        ids = [k.submit("q", {"i": i}, id=f"t{i}", priority=i % 5) for i in range(n)]
        k.submit("q", None, id="child", depends_on=[ids[0]], key="k1", tags={"x": 1})
        k.complete(k.claim("a"), result={"ok": 1})
        k.fail(k.claim("a"), error="boom")
        k.claim("a")
        k.cancel(ids[-1])
        return k.digest()


class _Payload:
    """Unpickling this runs a command that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):   # noqa: D105
        return (os.system, (f"touch {self.marker}",))


def test_planted_pickle_snapshot_runs_nothing_anywhere(tmp_path):
    d = tmp_path / "k"
    clean = _world(d)
    marker = tmp_path / "pwned"
    end = Kernel.replay(d).next_offset
    write_snapshot(d, end, pickle.dumps(_Payload(marker)))
    with pytest.raises(SnapshotCorruptError):
        decode(pickle.dumps(_Payload(marker)))
    assert Kernel.replay(d).digest() == clean
    runner = CliRunner()
    for args in (["status", str(d)], ["replay", str(d)], ["history", str(d), "t0"],
                 ["report", str(d)]):
        res = runner.invoke(cli, args)
        assert res.exit_code == 0, (args, res.output)
    res = runner.invoke(cli, ["verify", "--json", str(d)])
    assert res.exit_code == 1
    assert json.loads(res.output)[0]["rule"] == "snapshot-corrupt"
    with Kernel.open(d) as k:
        assert k.digest() == clean
    res = runner.invoke(cli, ["snapshot", str(d)])
    assert res.exit_code == 0, res.output
    assert not marker.exists()


def test_snapshot_beyond_the_log_end_never_hides_later_writes(tmp_path):
    # Issue scenario: buffer mode, snapshot, kill -9; the log kept nothing the snapshot holds.
    d = tmp_path / "k"
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        from eskernel import Kernel
        k = Kernel.open({str(d)!r}, durability="buffer", flush_interval_ms=60000,
                        snapshot_every=0)
        k.declare_queue("q")
        k.register_agent("a", ["q"])
        for i in range(50):
            k.submit("q", {{"i": i}}, id=f"t{{i}}")
        k.snapshot()
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path)
    assert proc.returncode == -signal.SIGKILL
    # snapshot() synced the log first: the snapshot is not beyond the end at all.
    assert Kernel.replay(d).next_offset == 52
    # Now force the case: a snapshot ahead of a log whose tail was lost.
    with Kernel.open(d, snapshot_every=0) as k:
        k.snapshot()
        assert list_snapshots(d) == [52]
    for seg in sorted(d.glob("*.seg")):
        seg.write_bytes(seg.read_bytes()[:-40])     # tear the last record
    with Kernel.open(d, durability="write", snapshot_every=0) as k:
        assert k.next_offset == 51
        assert list_snapshots(d) == []              # removed: it described lost records
        k.submit("q", None, id="after-crash")
        k.complete(k.claim("a"), result=None)
        live = k.digest()
    assert Kernel.replay(d).digest() == live
    with Kernel.open(d) as k:
        assert k.task("after-crash").status in ("READY", "COMPLETED")
        assert k.digest() == live


def test_readers_ignore_and_verify_reports_a_snapshot_beyond_the_end(tmp_path, caplog):
    d = tmp_path / "k"
    _world(d)
    with Kernel.open(d, snapshot_every=0) as k:
        end = k.snapshot()
    with EventLog.open_readonly(d) as r:
        blob = r.latest_snapshot().blob
    (d / f"{end:020d}.snap").unlink()
    write_snapshot(d, end + 5, blob)
    with caplog.at_level(logging.WARNING, logger="eskernel"):
        assert Kernel.replay(d).next_offset == end
    assert "beyond the log's end" in caplog.text
    res = CliRunner().invoke(cli, ["verify", "--json", str(d)])
    assert res.exit_code == 1
    assert json.loads(res.output)[0]["rule"] == "snapshot-beyond-end"


def test_snapshot_of_another_history_is_passed_over(tmp_path, caplog):
    a, b = tmp_path / "a", tmp_path / "b"
    _world(a, n=20)
    with Kernel.open(b, clock=ManualClock(), snapshot_every=0) as k:
        k.declare_queue("q")
        k.register_agent("a", ["q"])
        for i in range(100):
            k.submit("q", {"other": i})
        clean_b = k.digest()
    with Kernel.open(a, snapshot_every=0) as k:
        off = k.snapshot()
    with EventLog.open_readonly(a) as r:
        blob = r.latest_snapshot().blob
    write_snapshot(b, off, blob)       # same offset, other log
    with caplog.at_level(logging.WARNING, logger="eskernel"):
        assert Kernel.replay(b).digest() == clean_b
    assert "another history" in caplog.text
    res = CliRunner().invoke(cli, ["verify", "--json", str(b)])
    assert json.loads(res.output)[0]["rule"] == "snapshot-corrupt"


def test_disk_full_during_an_automatic_snapshot_fails_no_call(tmp_path, monkeypatch):
    d = tmp_path / "k"
    import eskernel.eventlog.log as elog
    calls = []

    def full(directory, offset, blob):
        calls.append(offset)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(elog, "write_snapshot", full)
    with Kernel.open(d, clock=ManualClock(), snapshot_every=10) as k:
        k.declare_queue("q")
        k.register_agent("a", ["q"])
        for i in range(100):
            k.submit("q", {"i": i})          # triggers snapshots; none may raise
        k._snapshotter.wait()
        st = k.snapshot_status()
        assert calls and st["failed"] >= 1 and st["taken"] == 0
        assert "No space left" in st["last_error"]
        with pytest.raises(LogWriteError, match="unaffected"):
            k.snapshot()
        k.submit("q", None, id="still-works")
        live = k.digest()
    monkeypatch.undo()
    assert list_snapshots(d) == []
    with Kernel.open(d) as k:
        assert k.digest() == live


def test_snapshots_are_written_off_the_call_and_pruned(tmp_path):
    d = tmp_path / "k"
    with Kernel.open(d, clock=ManualClock(), snapshot_every=50, snapshot_keep=2) as k:
        k.declare_queue("q")
        for i in range(2000):
            k.submit("q", {"i": i, "pad": "x" * 200})
            if i % 100 == 0:
                k._snapshotter.wait()      # let each finish: the test counts them
        k._snapshotter.wait()
        st = k.snapshot_status()
        live = k.digest()
    assert st["taken"] >= 3 and st["failed"] == 0
    assert len(list_snapshots(d)) == 2
    assert list_snapshots(d)[-1] == st["last_offset"]
    with Kernel.open(d) as k:
        assert k.digest() == live


def test_snapshot_keep_is_validated(tmp_path):
    for bad in (0, -1, True, "2"):
        with pytest.raises(InvalidSpecError, match="snapshot_keep"):
            Kernel.open(tmp_path / "k", snapshot_keep=bad)


def test_an_oversized_request_is_refused_without_poisoning(tmp_path):
    with Kernel.open(tmp_path / "k", max_record_bytes=1 << 20,
                     max_payload_bytes=1 << 19) as k:
        k.declare_queue("q")
        before = k.next_offset
        with pytest.raises(InvalidSpecError, match="nothing was written"):
            k.submit("q", None, tags={f"tag-{i}": i for i in range(100_000)})
        assert k.next_offset == before
        k.submit("q", None, id="fine")         # the kernel goes on
        assert k.task("fine").status == "READY"


def test_a_payload_limit_the_log_cannot_hold_is_refused_at_open(tmp_path):
    with pytest.raises(InvalidSpecError, match="max_record_bytes"):
        Kernel.open(tmp_path / "k", max_record_bytes=1 << 20, max_payload_bytes=1 << 20)
