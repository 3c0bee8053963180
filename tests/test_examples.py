"""Every example in examples/ runs as a script and prints what it claims to show."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

EXPECTED = {
    "priority": ["ran in order: CRITICAL-0 CRITICAL-1 URGENT-0 HIGH-0 NORMAL-0 NORMAL-1 "
                 "LOW-0 LOW-1"],
    "max_concurrent": ["completed 10 of 10; peak concurrency 3 (limit 3)"],
    "pipeline": ["merge: 4 parts, sum of squares 204", "publish: result 204",
                 "final: COMPLETED {'published': 204}"],
    "retries": ["t=  0.0s flaky attempt 1", "t=  1.0s flaky attempt 2",
                "t=  3.0s flaky attempt 3", "t=  7.0s flaky attempt 4",
                "flaky: COMPLETED ok after 4 attempts",
                "  broken: dead-lettered: ValueError: bad configuration",
                "broken: FAILED dead letters: ['broken']",
                "broken after requeue: COMPLETED ok after requeue"],
    "timeout": ["attempt 1 failed: HandlerTimeoutError: handler 'api' for task 't-0' exceeded "
                "the task's timeout of 0.2 s on attempt 1 of 3; the coroutine was cancelled",
                "task COMPLETED after 2 attempts: fast answer"],
    "agents": ["render-0       ran on gpu-1", "render-1       ran on gpu-1",
               "parse-0        ran on cpu-1", "pinned-encode  ran on gpu-1"],
    "cancel": ["cancelled: ['clean', 'archive', 'report']",
               "clean: handler cancelled (its lease was revoked)",
               "extract  COMPLETED", "clean    CANCELLED", "report   CANCELLED (upstream)",
               "archive  CANCELLED (upstream)"],
    "crash_resume": ["worker killed (signal 9) after 5 completions", "all completed: True",
                     "completed before the kill and run again: []"],
    "service": ["worker 1 killed (signal 9) after", "all completed: True",
                "squares: 8555"],
    "whatif": ["recorded makespan 60.0 s; unchanged model 60.0 s",
               "queue.render.max_concurrent=4: makespan 30.0 s, e2e p95 60.0 s -> 30.0 s",
               "agent.gpu-3=capabilities:render,capacity:2: makespan 20.0 s",
               "refused: change 'queue.render.rate_limit=20': a queue has no setting"],
    "audit": ["state now: {'invoice-0': 'COMPLETED', 'invoice-1': 'COMPLETED', "
              "'invoice-2': 'COMPLETED', 'invoice-3': 'COMPLETED'}",
              "'invoice-2': 'RETRYING'", "failed     TimeoutError: payment gateway timeout "
              "(attempt 1)", "  invoice-2: 3 attempt(s), 2 failure(s)"],
    "workflow_cicd": ["  waiting in: ['approval'], next: ['ship']",
                      "  deploy: app-abc7.tar.gz", "  cicd-abc7: completed, branch then",
                      "  rollback: app-bad1.tar.gz", "  cicd-bad1: completed, branch otherwise"],
    "workflow_etl": ["plan: [(1, 'extract'), (2, 'transform'), (3, 'load')]",
                     "started together: ['etl-1/extract/extract_events', "
                     "'etl-1/extract/extract_orders', 'etl-1/extract/extract_users']",
                     "load: 9 rows {'users': 3, 'orders': 2, 'events': 4}",
                     "etl-1: completed, context total 9"],
    "workflow_review": ["review round 2: changes requested", "review round 3: approved",
                        "pr-42: completed after 3 rounds, merge result {'merged': 42}"],
}


def test_every_example_is_checked():
    assert sorted(p.stem for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example(name):
    proc = subprocess.run([sys.executable, "-W", "error", str(EXAMPLES / f"{name}.py")],
                          capture_output=True, text=True, timeout=60,
                          cwd=EXAMPLES.parent)
    assert proc.returncode == 0, proc.stderr
    for needle in EXPECTED[name]:
        assert needle in proc.stdout, f"{needle!r} not in output:\n{proc.stdout}"
