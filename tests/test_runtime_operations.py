"""What running handlers for real needs: failures that must not be retried, idle detection
that does not wait for abandoned threads, a clear message when worker processes cannot be
spawned, and one ``eskernel`` logger tree."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from eskernel import InvalidSpecError, NonRetryableError

from .test_runtime import last_error, make, run

ROOT = Path(__file__).resolve().parents[1]


# -- item 15: non-retryable failures -----------------------------------------------------

class BadInput(ValueError):
    pass


def test_non_retryable_error_dead_letters_at_once():
    k, _, rt = make()

    @rt.handler("q")
    async def strict(p):
        raise NonRetryableError(f"order {p} does not exist")

    t = k.submit("q", 7, max_attempts=5)
    run(rt.run_until_idle())
    view = k.task(t)
    assert view.status == "FAILED" and view.attempts == 1 and view.dead_lettered
    assert "order 7 does not exist" in last_error(k, t)
    failed = [e for e in k.history(t) if e["t"] == "failed"]
    assert [e["retryable"] for e in failed] == [False]
    rt.close()


@pytest.mark.parametrize("executor", ["thread", "inline"])
def test_registered_non_retryable_types(executor):
    k, _, rt = make()

    def handler(p):
        raise BadInput("bad") if p == "bad" else KeyError("flaky")

    rt.register("q", handler, executor=executor, non_retryable=(ValueError,))
    bad = k.submit("q", "bad", max_attempts=3)
    flaky = k.submit("q", "flaky", max_attempts=3)
    run(rt.run_until_idle())
    assert k.task(bad).status == "FAILED" and k.task(bad).attempts == 1
    assert k.task(flaky).status == "FAILED" and k.task(flaky).attempts == 3
    rt.close()


@pytest.mark.parametrize("bad", [[ValueError, 5], "ValueError", (int,)])
def test_non_retryable_must_be_exception_types(bad):
    _, _, rt = make()
    with pytest.raises(InvalidSpecError, match="non_retryable"):
        rt.register("q", len, non_retryable=bad)


def test_an_unstorable_result_is_not_retried():
    k, _, rt = make()

    @rt.handler("q")
    async def returns_a_set(p):
        return {1, 2}

    t = k.submit("q", max_attempts=3)
    run(rt.run_until_idle())
    assert k.task(t).status == "FAILED" and k.task(t).attempts == 1
    assert "InvalidResultError" in last_error(k, t)


# -- item 16: run_until_idle does not wait for abandoned threads -------------------------

def test_run_until_idle_returns_while_an_abandoned_thread_still_runs():
    k, clock, rt = make(agents=(("w", ["q"], 1),), autojump=False)
    release = threading.Event()
    started = threading.Event()

    def never_returns(p):
        started.set()
        release.wait(30)
        return p

    rt.register("q", never_returns)
    t = k.submit("q", "stuck", timeout=0.5, max_attempts=1)

    async def main():
        task = asyncio.create_task(rt.run_until_idle())
        while not started.is_set():
            await asyncio.sleep(0.001)
        clock.advance(0.5)
        await task                      # returns: nothing is left that the thread blocks

    try:
        run(main())
        assert k.task(t).status == "FAILED"
        assert rt.stats()["abandoned_running"] == 1    # the thread is still running
    finally:
        release.set()
        rt.close()


# -- item 17: spawned worker processes need the main guard -------------------------------

_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
from eskernel import InvalidSpecError, Kernel, ManualClock, Runtime
from pathlib import Path

def work(p):
    return p

{body}
"""

_UNGUARDED = """
k = Kernel.in_memory(clock=ManualClock())
k.declare_queue("q")
rt = Runtime(k, agents=[("w", ["q"], 1)])
try:
    rt.register("q", work, executor="process")
except InvalidSpecError as err:
    print("refused:", err)
"""

_GUARDED = """
if __name__ == "__main__":
    k = Kernel.in_memory(clock=ManualClock())
    k.declare_queue("q")
    rt = Runtime(k, agents=[("w", ["q"], 1)])
    rt.register("q", work, executor="process")
    print("registered")
"""


@pytest.mark.parametrize("body, expect", [(_UNGUARDED, "refused:"), (_GUARDED, "registered")])
def test_process_handlers_need_the_main_guard(tmp_path, body, expect):
    script = tmp_path / "app.py"
    script.write_text(_SCRIPT.format(root=str(ROOT), body=textwrap.dedent(body)))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expect), out.stdout
    if expect == "refused:":
        assert 'if __name__ == "__main__":' in lines[0] and str(script) in lines[0]
        assert "BrokenProcessPool" not in out.stdout + out.stderr


# -- item 18: one logger tree --------------------------------------------------------------

def test_failures_retries_dead_letters_and_expiries_are_logged(caplog):
    k, clock, rt = make()
    k.register_agent("crashed", ["q"])

    @rt.handler("q")
    async def fails(p):
        raise RuntimeError(f"boom {p}")

    t = k.submit("q", 1, max_attempts=2)
    orphan = k.submit("q", 2, max_attempts=2, timeout=1.0)
    with caplog.at_level(logging.DEBUG, logger="eskernel"):
        lease = k.claim("crashed")              # never heartbeats: its lease expires
        assert lease.task_id == t
        run(rt.run_until_idle())
    by_logger = {(r.name, r.levelname) for r in caplog.records}
    assert by_logger <= {("eskernel.runtime", "INFO"), ("eskernel.runtime", "WARNING")}
    text = caplog.text
    assert "expired" in text and "retry due" in text and "dead-lettered" in text
    assert k.task(t).status == "FAILED" and k.task(orphan).status == "FAILED"
    rt.close()


def test_torn_tail_repair_logs_under_eskernel(tmp_path, caplog):
    from eskernel import Kernel
    with Kernel.open(tmp_path) as kk:
        kk.declare_queue("q")
    seg = sorted(tmp_path.glob("*.seg"))[-1]
    with open(seg, "ab") as f:
        f.write(b"\x07" * 5)                     # a torn record at the tail
    with caplog.at_level(logging.WARNING, logger="eskernel"):
        Kernel.open(tmp_path).close()
    assert any(r.name == "eskernel.eventlog" and "torn" in r.getMessage()
               for r in caplog.records), caplog.text
