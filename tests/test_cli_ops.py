"""The operator's commands: submit, cancel, requeue, pause / resume, agent offline /
online, tail; each refuses clearly while another process holds the directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from eskernel import Kernel, ManualClock
from eskernel.cli import cli

ROOT = Path(__file__).resolve().parents[1]


def run(*args) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, [str(a) for a in args])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    return r.exit_code, r.stdout, r.stderr


def error(*args) -> str:
    code, out, err = run(*args)
    assert code == 1 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, \
        (out, err)
    return err


@pytest.fixture
def d(tmp_path: Path) -> Path:
    with Kernel.open(tmp_path, clock=ManualClock()) as k:
        k.declare_queue("q")
        k.declare_queue("r")
        k.register_agent("w", ["q", "r"], capacity=2)
        k.submit("q", id="a", max_attempts=1)
        k.submit("q", id="b", depends_on=["a"])
        k.submit("r", id="c", max_attempts=1)
        for _ in range(2):
            lease = k.claim("w")
            k.fail(lease, error="boom")             # a and c are dead letters
    return tmp_path


def state(d: Path) -> Kernel:
    return Kernel.replay(d)


def test_submit(d: Path) -> None:
    code, out, _ = run("submit", d, "q", "--payload", '{"frame": 7}', "--id", "new",
                       "--priority", "5", "--timeout", "12.5")
    assert code == 0 and out.strip() == "new"
    with state(d) as k:
        v = k.task("new")
        assert (v.payload, v.priority, v.timeout, v.status) == ({"frame": 7}, 5, 12.5, "READY")
    code, out, _ = run("submit", d, "q", "--json")
    assert json.loads(out)[0]["status"] == "READY"


@pytest.mark.parametrize("args, match", [
    (["q", "--payload", "{bad"], "not JSON"),
    (["q", "--payload", "NaN"], "nan"),
    (["nope"], "not declared"),
    (["q", "--id", "a"], "already in use"),
    (["q", "--priority", "5000"], "priority"),
    (["q", "--depends-on", "ghost"], "ghost"),
])
def test_submit_errors_change_nothing(d: Path, args: list, match: str) -> None:
    with state(d) as k:
        before = (k.next_offset, k.digest())
    assert match in error("submit", d, *args)
    with state(d) as k:
        assert (k.next_offset, k.digest()) == before


def test_cancel_cascades(d: Path) -> None:
    run("submit", d, "q", "--id", "x")
    run("submit", d, "q", "--id", "y", "--depends-on", "x")
    code, out, _ = run("cancel", d, "x")
    assert code == 0 and "cancelled x and 1 dependent task(s): y" in out
    with state(d) as k:
        assert k.task("y").status == "CANCELLED"
    assert "already CANCELLED" in error("cancel", d, "x")


def test_requeue_one_task_or_a_queues_dead_letters(d: Path) -> None:
    code, out, _ = run("requeue", d, "c")
    assert code == 0 and "requeued 1 task(s): c" in out
    code, out, _ = run("requeue", d, "--queue", "q", "--json")
    assert [r["task"] for r in json.loads(out)] == ["a"]
    with state(d) as k:
        assert k.task("a").status == "READY" and k.task("c").status == "READY"
    assert "only FAILED" in error("requeue", d, "a")
    assert "--queue" in error("requeue", d)
    assert "--queue" in error("requeue", d, "a", "--queue", "q")


def test_pause_resume_and_agents(d: Path) -> None:
    assert run("pause", d, "q")[0] == 0
    with state(d) as k:
        assert next(q for q in k.stats().queues if q.name == "q").paused
    assert run("resume", d, "q")[0] == 0
    assert run("agent", d, "offline", "w")[0] == 0
    with state(d) as k:
        assert not k.stats().agents[0].online
    assert run("agent", d, "online", "w")[0] == 0
    assert "not declared" in error("pause", d, "nope")
    assert "not registered" in error("agent", d, "offline", "ghost")


def test_write_commands_never_create_a_log(tmp_path: Path) -> None:
    for args in (["submit", tmp_path, "q"], ["pause", tmp_path, "q"], ["cancel", tmp_path, "t"],
                 ["tail", tmp_path, "--no-follow"]):
        assert "no event log" in error(*args)
    assert list(tmp_path.iterdir()) == []


_HOLD = """
import sys
sys.path.insert(0, sys.argv[2])
from eskernel import Kernel
k = Kernel.open(sys.argv[1])
print("holding", flush=True)
sys.stdin.readline()
k.close()
"""


def test_write_commands_refuse_while_another_process_holds_the_directory(d: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(d), str(ROOT)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with state(d) as k:
            before = k.next_offset
        for args in (["submit", d, "q"], ["cancel", d, "b"], ["requeue", d, "a"],
                     ["pause", d, "q"], ["agent", d, "offline", "w"]):
            err = error(*args)
            assert f"pid {holder.pid}" in err and "EventLog" not in err, err
        code, out, _ = run("tail", d, "--no-follow")     # reading needs no lock
        assert code == 0 and "submitted" in out
        with state(d) as k:
            assert k.next_offset == before
    finally:
        holder.communicate("\n", timeout=60)


def test_tail_filters(d: Path) -> None:
    code, out, _ = run("tail", d, "--no-follow", "--last", "100", "--queue", "r", "--json")
    evs = [json.loads(line) for line in out.splitlines()]
    assert {e["t"] for e in evs} >= {"submitted", "claimed", "failed", "queue_declared"}
    assert all(e.get("task") in (None, "c") for e in evs)
    assert all(e["t"] != "agent_registered" for e in evs)
    code, out, _ = run("tail", d, "--no-follow", "--last", "100", "--task", "a",
                       "--type", "failed")
    assert code == 0 and len(out.splitlines()) == 1 and "failed" in out
    code, out, _ = run("tail", d, "--no-follow", "--last", "2")
    assert len(out.splitlines()) == 2
    assert "not an event type" in error("tail", d, "--type", "nope")


def test_tail_follows_new_events(d: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The events are appended at tail's first wait for new ones: after it has read the
    # whole log, so only following can show them.
    import eskernel.cli._ops as ops
    waits = []

    def append_then_wait(seconds: float) -> None:
        if not waits:
            with Kernel.open(d, clock=ManualClock(start=2e9)) as k:
                k.submit("q", id="late-1")
                k.submit("r", id="late-2")
        waits.append(seconds)

    monkeypatch.setattr(ops, "_sleep", append_then_wait)
    code, out, _ = run("tail", d, "--last", "0", "--type", "submitted", "--count", "2",
                       "--interval", "0.01", "--json")
    assert code == 0 and [json.loads(x)["task"] for x in out.splitlines()] == ["late-1",
                                                                                "late-2"]
    assert waits == [0.01]
