"""Inputs a new user gets wrong: each is refused with an EskernelError saying what to do,
and changes nothing (no event, no file)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from eskernel import (DuplicateTaskError, EskernelError, InvalidSpecError, Kernel, ManualClock,
                    TaskSpec)
from eskernel.cli._demo import run_demo
from eskernel.cli import cli
from eskernel.errors import LogNotFoundError

from .test_validation import rejects


@pytest.fixture
def k(kernel):
    kernel.declare_queue("q")
    kernel.declare_queue("r")
    kernel.register_agent("w", capabilities=["q"])
    return kernel


# -- items 8 and 9: untyped errors and silently accepted inputs ---------------------------

def test_register_agent_without_capabilities(k):
    rejects(k, InvalidSpecError, lambda: k.register_agent("c", None))
    rejects(k, InvalidSpecError, lambda: k.register_agent("c", 5))


@pytest.mark.parametrize("specs", [None, 5, "q", {"queue": "q"}])
def test_submit_many_of_something_not_a_list(k, specs):
    e = rejects(k, InvalidSpecError, lambda: k.submit_many(specs))
    assert "list" in str(e)


@pytest.mark.parametrize("options", [{"clock": "now"}, {"clock": 5}, {"seed": "x"},
                                     {"seed": 1.5}, {"max_payload_bytes": -1},
                                     {"max_payload_bytes": 0}, {"max_payload_bytes": "big"}])
def test_in_memory_options(options):
    with pytest.raises(InvalidSpecError):
        Kernel.in_memory(**options)


@pytest.mark.parametrize("options", [{"unknown_option": 1}, {"clock": "now"}, {"seed": "x"},
                                     {"max_payload_bytes": -1}, {"create": "yes"}])
def test_open_options_are_checked_before_anything_is_created(tmp_path, options):
    d = tmp_path / "k"
    with pytest.raises(InvalidSpecError) as info:
        Kernel.open(d, **options)
    assert "EventLog" not in str(info.value)
    assert not d.exists()


def test_taskspec_errors_are_eskernel_errors():
    with pytest.raises(InvalidSpecError, match="priority"):
        TaskSpec(queue="q", priority="x")
    with pytest.raises(InvalidSpecError, match="unknown_key"):
        TaskSpec(queue="q", unknown_key=1)


@pytest.mark.parametrize("limit", [-1, "x", 1.5, True])
def test_tasks_limit(k, limit):
    k.submit("q", id="a")
    with pytest.raises(InvalidSpecError, match="limit"):
        k.tasks(limit=limit)
    assert [t.id for t in k.tasks(limit=0)] == [] and [t.id for t in k.tasks(limit=5)] == ["a"]


def test_replay_with_both_bounds_is_refused(tmp_path):
    with Kernel.open(tmp_path, clock=ManualClock()) as kk:
        kk.declare_queue("q")
    with pytest.raises(InvalidSpecError, match="not both"):
        Kernel.replay(tmp_path, until=1, until_time=1.0)


def test_replay_until_a_far_time_replays_to_the_end(tmp_path):
    with Kernel.open(tmp_path, clock=ManualClock()) as kk:
        kk.declare_queue("q")
        kk.submit("q", id="a")
        digest = kk.digest()
    for far in (4.1e9, 1e12, 1e300):        # 2099 and beyond the int64 ns range
        with Kernel.replay(tmp_path, until_time=far) as r:
            assert r.digest() == digest and r.next_offset == 2


def test_idempotency_key_with_another_spec_is_refused(k):
    t = k.submit("q", payload={"n": 1}, key="K")
    assert k.submit("q", payload={"n": 1}, key="K") == t           # the same spec: same id
    assert k.submit_many([{"queue": "q", "payload": {"n": 1}, "key": "K"}]) == [t]
    rejects(k, DuplicateTaskError, lambda: k.submit("r", payload={"n": 1}, key="K"))
    rejects(k, DuplicateTaskError, lambda: k.submit("q", payload={"n": 2}, key="K"))
    rejects(k, DuplicateTaskError, lambda: k.submit("q", payload={"n": 1}, key="K", name="x"))
    rejects(k, DuplicateTaskError,
            lambda: k.submit_many([{"queue": "q", "payload": {"n": 2}, "key": "K"}]))


# -- item 10 ------------------------------------------------------------------------------

def test_duplicate_id_inside_one_batch_has_its_own_message(k):
    e = rejects(k, DuplicateTaskError, lambda: k.submit_many(
        [{"queue": "q", "id": "a"}, {"queue": "q", "id": "b"}, {"queue": "q", "id": "a"}]))
    assert "twice in this submit_many batch (items 0 and 2)" in str(e)
    assert "already in use" not in str(e)


# -- item 6: only creating a kernel creates a log ----------------------------------------

def _files(d: Path) -> list[str]:
    return sorted(os.listdir(d))


def test_open_without_create_refuses_a_directory_without_a_log(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(LogNotFoundError):
        Kernel.open(tmp_path, create=False)
    with pytest.raises(LogNotFoundError):
        Kernel.open(tmp_path / "missing", create=False)
    assert _files(tmp_path) == ["notes.txt"]


def test_open_never_creates_missing_parents(tmp_path):
    with pytest.raises(LogNotFoundError, match="parent directory"):
        Kernel.open(tmp_path / "typo" / "state")
    assert _files(tmp_path) == []
    with Kernel.open(tmp_path / "state") as kk:        # the last directory is created
        kk.declare_queue("q")
    with Kernel.open(tmp_path / "state", create=False) as kk:
        assert kk.next_offset == 1


@pytest.mark.parametrize("command", [["snapshot"], ["verify"], ["status"], ["replay"],
                                     ["history", "t-1"], ["sql", "SELECT 1"], ["report"]])
@pytest.mark.parametrize("contents", [[], ["notes.txt"]])
def test_cli_read_and_maintenance_commands_never_create_a_log(tmp_path, command, contents):
    for name in contents:
        (tmp_path / name).write_text("mine")
    r = CliRunner().invoke(cli, [command[0], str(tmp_path), *command[1:]])
    assert r.exit_code == 1 and r.stderr.startswith("error: no event log"), r.output
    assert "Traceback" not in r.output
    assert _files(tmp_path) == sorted(contents)


# -- item 11: CLI messages name CLI commands ----------------------------------------------

_PYTHON_WORDS = ("EventLog", "open_readonly", "kernel.tasks()", "eventlog.verify()",
                 "create=True")


def test_cli_messages_name_cli_commands(tmp_path):
    run_demo(tmp_path, jobs=3, snapshot=False)
    messages = []
    for args in (["status", str(tmp_path / "nothing-here")], ["verify", str(tmp_path.parent)],
                 ["snapshot", str(tmp_path.parent)]):
        r = CliRunner().invoke(cli, args)
        messages.append(r.stderr)
    with Kernel.open(tmp_path):
        r = CliRunner().invoke(cli, ["snapshot", str(tmp_path)])
        messages.append(r.stderr)
        assert "eskernel" in r.stderr or "read commands" in r.stderr
    for m in messages:
        assert m.startswith("error: ") and not any(w in m for w in _PYTHON_WORDS), m


def test_every_error_class_is_an_eskernel_error():
    assert issubclass(LogNotFoundError, EskernelError)


def test_replay_until_infinity_is_refused(tmp_path):
    with Kernel.open(tmp_path, clock=ManualClock()) as kk:
        kk.declare_queue("q")
    for bad in (float("inf"), float("nan"), -1.0):
        with pytest.raises(InvalidSpecError, match="until_time"):
            Kernel.replay(tmp_path, until_time=bad)


def test_cli_replay_until_a_date_past_the_last_event(tmp_path):
    run_demo(tmp_path, jobs=3, snapshot=False)
    end = CliRunner().invoke(cli, ["replay", str(tmp_path), "--json"])
    r = CliRunner().invoke(cli, ["replay", str(tmp_path), "--until", "2099-01-01", "--json"])
    assert r.exit_code == 0, r.output
    import json
    a, b = json.loads(end.stdout), json.loads(r.stdout)
    assert a["counts"] == b["counts"] and a["summary"]["events replayed"] == \
        b["summary"]["events replayed"]
