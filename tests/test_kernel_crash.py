"""Crash safety: a kernel killed with SIGKILL keeps every command it acknowledged.

A child process drives a durable kernel (``durability="write"``: acknowledged means handed
to the OS, so it survives a killed process) with a seeded random workload, and prints one
line per acknowledged command (flushed): the log offset after it, the live digest, and the
effects to look for.  The parent kills it at a random moment, then reopens the directory:

* every acknowledged command's effect is present (submitted tasks exist, claims are in the
  task's history, completed and cancelled tasks are so);
* the reopened kernel (which loads the newest valid snapshot) has the digest of a fresh
  replay from offset 0, and ``Kernel.replay`` agrees;
* the state as of each checked acknowledged offset replays to the digest the live kernel
  printed there.

``ESKERNEL_CRASH_ITERATIONS`` sets the number of kills (default 10).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eskernel import Kernel

ROOT = Path(__file__).resolve().parent.parent
ITERATIONS = int(os.environ.get("ESKERNEL_CRASH_ITERATIONS", "10"))

CHILD = r"""
import json, random, sys
from eskernel import Kernel, ManualClock
from tests.strategies import AGENTS, QUEUES, Driver

path, seed, every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
clock = ManualClock(start=1_700_000_000.0)
k = Kernel.open(path, durability="write", clock=clock, seed=0, snapshot_every=every)

def effects(d, cmd, result):
    op = cmd[0]
    if op == "submit":
        return [[result, "exists"]]
    if op == "batch":
        return [[tid, "exists"] for tid in result]
    if op == "claim" and result is not None:
        return [[result.task_id, "claimed", result.lease_id]]
    if op == "claim_many":
        return [[le.task_id, "claimed", le.lease_id] for le in result]
    if op == "complete":
        return [[d.leases[cmd[1] % len(d.leases)].task_id, "COMPLETED"]]
    if op == "cancel":
        return [[tid, "CANCELLED"] for tid in result]
    return []

def ack(cmd, result):
    print(json.dumps({"op": cmd[0], "off": k.next_offset, "digest": k.digest(),
                      "effects": effects(d, cmd, result)}), flush=True)

d = Driver(k, clock, on_ack=ack)
d.setup()
print(json.dumps({"op": "setup", "off": k.next_offset, "digest": k.digest(), "effects": []}),
      flush=True)

def command():
    r = rng.random()
    i = rng.randrange(1000)
    if r < 0.25:
        return ("submit", rng.randrange(len(QUEUES)), rng.choice([1, 2, 3]),
                [rng.randrange(1000)] if rng.random() < 0.3 else [], rng.randint(1, 3),
                rng.choice([0.5, 2.0]), rng.choice([None, None, 0.5]), rng.random() < 0.1, None)
    if r < 0.30:
        return ("batch", rng.randint(1, 3), rng.randrange(len(QUEUES)), 2)
    if r < 0.45:
        return ("claim", rng.randrange(len(AGENTS)))
    if r < 0.50:
        return ("claim_many", rng.randrange(len(AGENTS)), rng.randint(1, 3))
    if r < 0.65:
        return ("complete", i)
    if r < 0.70:
        return ("fail", i, rng.random() < 0.7)
    if r < 0.73:
        return ("release", i)
    if r < 0.76:
        return ("heartbeat", i)
    if r < 0.84:
        return ("advance", rng.choice([0.25, 0.5, 1.0, 3.0]))
    if r < 0.90:
        return ("tick",)
    if r < 0.94:
        return ("cancel", i)
    return ("requeue", i)

while True:
    d.step(command())
"""


def run_child_and_kill(path: Path, seed: int, every: int, rng: random.Random) -> list[dict]:
    """Start the child, let it acknowledge a random number of commands, SIGKILL it at a
    random moment; return every acknowledged line (complete lines only)."""
    return kill_after_acks([CHILD, str(path), str(seed), str(every)], rng.randint(1, 250),
                           rng.random() * 0.01)


def kill_after_acks(args: list[str], want: int, linger: float) -> list[dict]:
    """Run ``python -c *args`` from the repository, read ``want`` acknowledged lines, wait
    ``linger`` seconds, SIGKILL it; return every complete acknowledged line, parsed."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: list[bytes] = []
    try:
        while len(lines) < want:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
        time.sleep(linger)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        # read through the same buffered objects readline() used (communicate() would
        # bypass their buffers and lose data)
        rest, err = proc.stdout.read(), proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, f"child died on its own:\n{err.decode()[-3000:]}"
    lines += rest.splitlines(keepends=True)
    return [json.loads(line) for line in lines if line.endswith(b"\n")]


def without_snapshots(path: Path, dest: Path) -> Path:
    """A copy of the log directory with its snapshots removed (forces replay from 0)."""
    shutil.copytree(path, dest, ignore=shutil.ignore_patterns("*.snap", "LOCK", "*.tmp"))
    return dest


def check_effects(k: Kernel, acked: list[dict]) -> None:
    for line in acked:
        for tid, what, *rest in line["effects"]:
            view = k.task(tid)                  # raises UnknownTaskError if lost
            if what == "claimed":
                leases = [ev["lease"] for ev in k.history(tid) if ev["t"] == "claimed"]
                assert rest[0] in leases, f"acknowledged claim of {tid} (lease {rest[0]}) lost"
            elif what != "exists":
                assert view.status == what, f"acknowledged {line['op']} of {tid} lost"


@pytest.mark.parametrize("iteration", range(ITERATIONS))
def test_acknowledged_commands_survive_sigkill(tmp_path, iteration):
    rng = random.Random(1000 + iteration)
    path = tmp_path / "log"
    every = rng.choice([0, 7, 25])
    acked = run_child_and_kill(path, seed=iteration, every=every, rng=rng)
    assert acked, "the child acknowledged nothing"
    last = acked[-1]

    with Kernel.open(path, durability="write") as k:
        assert k.next_offset >= last["off"], "acknowledged events are missing from the log"
        check_effects(k, acked)
        assert k.check()
        reopened = k.digest()
        end = k.next_offset

    fresh_dir = without_snapshots(path, tmp_path / "no-snapshots")
    with Kernel.open(fresh_dir, durability="write") as fresh:
        assert fresh.next_offset == end
        assert fresh.digest() == reopened, "reopening from a snapshot differs from a replay"

    audit = Kernel.replay(path)
    try:
        assert audit.digest() == reopened
    finally:
        audit.close()

    checked = {last["off"]: last["digest"]}
    for line in rng.sample(acked, min(3, len(acked))):
        checked[line["off"]] = line["digest"]
    for off, digest in sorted(checked.items()):
        past = Kernel.replay(fresh_dir, until=off)
        try:
            assert past.digest() == digest, f"state at acknowledged offset {off} differs"
        finally:
            past.close()
