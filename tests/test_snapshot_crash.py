"""kill -9 with snapshots every few events: nothing acknowledged is lost, and writing after
the reopen is never hidden by a snapshot.

A child process drives a durable kernel in each durability mode with ``snapshot_every``
small (automatic snapshots on the background thread, plus an explicit ``snapshot()`` now and
then) and prints one flushed line per acknowledged call; the parent kills it with SIGKILL at
a random moment, then:

* reopens (repairing the tail): every acknowledged effect is present in ``fsync`` and
  ``write`` mode (``buffer`` mode makes nothing durable on acknowledgement: only
  consistency is checked there), ``check()`` passes and no snapshot lies beyond the log;
* keeps writing (submits, claims, completions, a snapshot), closes and reopens again;
* compares: the reopened digest == the live digest before closing == ``Kernel.replay``'s ==
  the digest of a copy of the directory with every snapshot deleted.

Also: the issue's deterministic scenario (``buffer`` mode, 50 submits, ``snapshot()``,
kill -9), and tails damaged under the newest snapshot (truncated, flipped, zeroed).

``ESKERNEL_TORTURE`` sets the runs per durability mode (default 3; two kills each).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from eskernel.eventlog import EventLog
from eskernel.eventlog.snapshots import list_snapshots
from eskernel.verify import verify_log
from eskernel import Kernel, ManualClock
from tests.test_kernel_crash import kill_after_acks

ROOT = Path(__file__).resolve().parent.parent
TORTURE = int(os.environ.get("ESKERNEL_TORTURE", "3"))
MODES = ["fsync", "write", "buffer"]

CHILD = r"""
import json, random, sys
from eskernel import Kernel, ManualClock
from eskernel.errors import EskernelError

path, mode, seed, every = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
clock = ManualClock(start=float(sys.argv[5]))
opts = {"flush_interval_ms": 60000} if mode == "buffer" else {}
k = Kernel.open(path, durability=mode, clock=clock, snapshot_every=every, snapshot_growth=0,
                snapshot_keep=2, **opts)
k.declare_queue("q")
k.declare_queue("limited", max_concurrent=2)
k.declare_queue("side")
k.register_agent("a", ["q", "limited"], capacity=6)
k.register_agent("b", ["q", "side", "limited"], capacity=3)
k.register_agent("c", ["side"], capacity=1)
tasks, leases = [], []

def ack(op, effects):
    print(json.dumps({"op": op, "off": k.next_offset, "effects": effects}), flush=True)

ack("setup", [])
n = 0
while True:
    n += 1
    r = rng.random()
    try:
        if r < 0.30:
            q = rng.choice(["q", "q", "limited", "side"])
            deps = rng.sample(tasks, min(len(tasks), rng.choice([0, 0, 1, 2])))
            agent = {"q": "a", "limited": "b", "side": "c"}[q] if rng.random() < 0.1 else None
            tid = k.submit(q, {"n": n}, id=f"s{n}", priority=rng.randrange(1001),
                           depends_on=deps, agent=agent, timeout=rng.choice([0.5, 5.0]),
                           max_attempts=rng.randint(1, 3),
                           key=f"key{n}" if rng.random() < 0.2 else None,
                           tags={"n": n} if rng.random() < 0.2 else None)
            tasks.append(tid)
            ack("submit", [[tid, "exists"]])
        elif r < 0.35:
            ids = k.submit_many([{"queue": "q", "id": f"m{n}-{i}", "payload": i}
                                 for i in range(rng.randint(1, 4))])
            tasks.extend(ids)
            ack("batch", [[t, "exists"] for t in ids])
        elif r < 0.55:
            lease = k.claim(rng.choice("abc"))
            if lease is not None:
                leases.append(lease)
                ack("claim", [[lease.task_id, "claimed", lease.lease_id]])
        elif r < 0.75 and leases:
            lease = leases.pop(rng.randrange(len(leases)))
            k.complete(lease, result={"by": n})
            ack("complete", [[lease.task_id, "COMPLETED"]])
        elif r < 0.80 and leases:
            lease = leases.pop(rng.randrange(len(leases)))
            k.fail(lease, error=f"e{n}", retryable=rng.random() < 0.7)
            ack("fail", [])
        elif r < 0.84 and tasks:
            ids = k.cancel(rng.choice(tasks))
            ack("cancel", [[t, "CANCELLED"] for t in ids])
        elif r < 0.90:
            clock.advance(rng.choice([0.1, 0.6, 2.0]))
            k.tick()
            ack("tick", [])
        elif r < 0.92:
            k.snapshot()
            ack("snapshot", [])
        elif r < 0.94:
            (k.pause_queue if rng.random() < 0.5 else k.resume_queue)("side")
            ack("pause", [])
    except EskernelError:
        pass      # a refusal (stale lease, capacity...) acknowledges nothing
"""


def run_child_and_kill(path: Path, mode: str, seed: int, every: int, rng: random.Random,
                       start: float) -> list[dict]:
    """Run the child (its clock starting at ``start``) until it acknowledged a random number
    of calls, then SIGKILL it at a random moment; return every complete acknowledged line."""
    return kill_after_acks([CHILD, str(path), mode, str(seed), str(every), repr(start)],
                           rng.randint(20, 600), rng.random() * 0.005)


def durable_prefix(acked: list[dict], mode: str) -> list[dict]:
    """The acknowledgements the mode promises survive a crash.  In ``fsync`` mode a claim is
    answered before its event is on disk (the next call that waits syncs it; a claim lost
    in a crash only returns its task to the queue, and an epoch record keeps its lease id
    from being issued again): trailing claims may be lost, with the acknowledgements after
    them that appended nothing (and so synced nothing), and nothing else."""
    if mode != "fsync":
        return acked
    end = len(acked)
    while end > 1 and (acked[end - 1]["op"] == "claim"
                       or acked[end - 1]["off"] == acked[end - 2]["off"]):
        end -= 1
    return acked[:end]


def check_effects(k: Kernel, acked: list[dict]) -> None:
    for line in acked:
        for tid, what, *rest in line["effects"]:
            view = k.task(tid)                  # UnknownTaskError if it was lost
            if what == "claimed":
                leases = [ev["lease"] for ev in k.history(tid) if ev["t"] == "claimed"]
                assert rest[0] in leases, f"acknowledged claim of {tid} (lease {rest[0]}) lost"
            elif what != "exists":
                assert view.status == what, f"acknowledged {line['op']} of {tid} lost"


def keep_writing(k: Kernel, rng: random.Random, tag: str) -> list[str]:
    """Write after a reopen: a new queue and agent, submits, claims, completions, a
    snapshot in the middle; returns the ids submitted."""
    k.declare_queue(f"post-{tag}")
    k.register_agent(f"agent-{tag}", [f"post-{tag}", "q"], capacity=4)
    ids = []
    for i in range(rng.randint(3, 12)):
        ids.append(k.submit(f"post-{tag}", {"after": i}, id=f"{tag}-{i}",
                            depends_on=[ids[0]] if i % 4 == 3 else ()))
        if i % 3 == 2:
            lease = k.claim(f"agent-{tag}")
            if lease is not None:
                k.complete(lease, result=i)
        if i == 5:
            k.snapshot()
    lease = k.claim(f"agent-{tag}")
    if lease is not None:
        k.fail(lease, error="after the crash")
    return ids


def without_snapshots(path: Path, dest: Path) -> Path:
    """A copy of the log directory with its snapshots removed (forces replay from 0)."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(path, dest, ignore=shutil.ignore_patterns("*.snap", "LOCK", "*.tmp*"))
    return dest


def three_digests_agree(path: Path, scratch: Path, live: str) -> None:
    """Kernel.open == Kernel.replay == a replay with every snapshot deleted == ``live``, and
    verify (which replays the log and compares every snapshot) finds nothing."""
    with Kernel.open(path, snapshot_every=0) as k:
        assert k.check()
        opened, end = k.digest(), k.next_offset
    assert opened == live, "the reopened state differs from the one written before closing"
    assert all(off <= end for off in list_snapshots(path)), "a snapshot lies beyond the log"
    audit = Kernel.replay(path)
    try:
        assert audit.digest() == live, "Kernel.replay differs from Kernel.open"
    finally:
        audit.close()
    with Kernel.open(without_snapshots(path, scratch), snapshot_every=0) as fresh:
        assert fresh.next_offset == end
        assert fresh.digest() == live, "a replay from offset 0 differs from the snapshot path"
    result = verify_log(path)
    assert result.ok, str(result.violation)


@pytest.mark.parametrize("iteration", range(TORTURE))
@pytest.mark.parametrize("mode", MODES)
def test_sigkill_with_snapshots_then_keep_writing(tmp_path, mode, iteration):
    rng = random.Random(f"{mode}-{iteration}")
    path = tmp_path / "log"
    every = rng.choice([7, 13, 50])
    # Each writer's clock starts after the last one's (the child's advances a few minutes).
    acked = run_child_and_kill(path, mode, iteration, every, rng, start=1_700_000_000.0)
    assert acked and acked[0]["op"] == "setup", "the child acknowledged nothing"

    with Kernel.open(path, durability="write", snapshot_every=every,
                     clock=ManualClock(start=1_800_000_000.0)) as k:
        assert k.check()
        end = k.next_offset
        assert all(off <= end for off in list_snapshots(path)), "a snapshot lies beyond the log"
        if mode != "buffer":
            durable = durable_prefix(acked, mode)
            assert end >= durable[-1]["off"], "acknowledged events are missing from the log"
            check_effects(k, durable)
        posted = keep_writing(k, rng, "post")
        assert k.check()
        live = k.digest()
    with Kernel.open(path, snapshot_every=0) as k:
        assert all(k.task(t) for t in posted)
    three_digests_agree(path, tmp_path / "fresh", live)

    # A second kill in the same directory, after the writes that followed the first.
    acked = run_child_and_kill(path, mode, 100 + iteration, every, rng, start=1_900_000_000.0)
    with Kernel.open(path, durability="fsync", snapshot_every=every,
                     clock=ManualClock(start=2_000_000_000.0)) as k:
        if mode != "buffer":
            durable = durable_prefix(acked, mode)
            assert k.next_offset >= durable[-1]["off"]
            check_effects(k, durable)
        assert all(k.task(t) for t in posted), "writes made after the first reopen were lost"
        keep_writing(k, rng, "again")
        live = k.digest()
    three_digests_agree(path, tmp_path / "fresh", live)


SCENARIO = r"""
import os, signal, sys
from eskernel.verify import verify_log
from eskernel import Kernel, ManualClock
k = Kernel.open(sys.argv[1], durability="buffer", flush_interval_ms=60000, snapshot_every=0)
k.declare_queue("q")
k.register_agent("a", ["q"])
for i in range(50):
    k.submit("q", {"i": i}, id=f"t{i}")
k.snapshot()
for i in range(int(sys.argv[2])):
    k.submit("q", {"i": i}, id=f"unsynced{i}")
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("unsynced", [0, 20])
def test_buffer_mode_snapshot_then_sigkill(tmp_path, unsynced):
    # The scenario: buffer mode, 50 submits, snapshot(), kill -9 (and a variant
    # with 20 more submits that were never handed to the OS).
    path = tmp_path / "log"
    proc = subprocess.run([sys.executable, "-c", SCENARIO, str(path), str(unsynced)],
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-3000:]
    with Kernel.open(path, durability="write", snapshot_every=0) as k:
        end = k.next_offset
        assert end >= 52, "snapshot() must make the records it covers durable first"
        assert list_snapshots(path) == [52]
        assert all(k.task(f"t{i}").status == "READY" for i in range(50))
        k.submit("q", None, id="after-crash")
        k.complete(k.claim("a"), result="done")
        live = k.digest()
    audit = Kernel.replay(path)
    try:
        assert audit.digest() == live
        assert audit.task("after-crash").status == "READY"
    finally:
        audit.close()
    with Kernel.open(path, snapshot_every=0) as k:
        assert k.task("after-crash").status == "READY"
        assert k.task("t0").status == "COMPLETED"
    three_digests_agree(path, tmp_path / "fresh", live)


# -- damaged tails under a snapshot ---------------------------------------------------------------

def last_segment(path: Path) -> Path:
    return sorted(path.glob("*.seg"))[-1]


def damage_tail(path: Path, how: str, rng: random.Random, last_frame: int) -> str:
    """Damage the last segment's tail only (what a torn write can leave): the repair then
    cuts the log below the newest snapshot.  Returns what was done."""
    seg = last_segment(path)
    data = bytearray(seg.read_bytes())
    if how == "truncate":
        cut = rng.randint(1, min(len(data) - 32, 3 * last_frame))
        del data[len(data) - cut:]
        what = f"truncated {cut} bytes"
    elif how == "flip":
        # Inside the last frame: a checksum-failing record with no valid frame after it.
        i = len(data) - rng.randint(1, last_frame)
        data[i] ^= 1 << rng.randrange(8)
        what = f"flipped a bit at {i}"
    else:
        k = rng.randint(1, min(len(data) - 32, 2 * last_frame))
        data[len(data) - k:] = bytes(k)
        what = f"zeroed the last {k} bytes"
    seg.write_bytes(bytes(data))
    return what


def build(path: Path, rng: random.Random) -> int:
    """A kernel with snapshots every few events and one at the log's end; returns the size
    of the last record's frame."""
    with Kernel.open(path, durability="write", snapshot_every=5, snapshot_growth=0,
                     snapshot_keep=3) as k:
        k.declare_queue("q")
        k.register_agent("a", ["q"], capacity=3)
        for i in range(rng.randint(10, 60)):
            k.submit("q", {"i": i, "pad": "x" * rng.randrange(40)}, id=f"t{i}")
            if i % 4 == 3:
                lease = k.claim("a")
                if lease is not None:
                    k.complete(lease, result=i)
        end = k.snapshot()
        assert list_snapshots(path)[-1] == end
    with EventLog.open_readonly(path) as r:
        return len(r.read_batch(end - 1, 1)[0]) + 8


@pytest.mark.parametrize("seed", range(max(3, TORTURE)))
@pytest.mark.parametrize("how", ["truncate", "flip", "zero"])
def test_damaged_tail_under_a_snapshot(tmp_path, how, seed):
    rng = random.Random(f"{how}-{seed}")
    path = tmp_path / "log"
    last_frame = build(path, rng)
    newest = list_snapshots(path)[-1]
    what = damage_tail(path, how, rng, last_frame)
    # What the damaged log holds, replayed from offset 0 (a reader stops at the torn tail).
    honest = Kernel.replay(without_snapshots(path, tmp_path / "honest"))
    want, want_end = honest.digest(), honest.next_offset
    honest.close()
    assert want_end < newest, what

    with Kernel.open(path, durability="write", snapshot_every=4, snapshot_growth=0) as k:
        assert k.repair is not None or how == "truncate", what   # a cut may fall between frames
        assert k.next_offset == want_end, what
        assert k.digest() == want, f"{what}: the state is not the repaired log's"
        assert newest not in list_snapshots(path), f"{what}: the snapshot beyond the end stays"
        assert k.check()
        posted = keep_writing(k, rng, "post")
        live = k.digest()
    with Kernel.open(path, snapshot_every=0) as k:
        assert all(k.task(t) for t in posted), f"{what}: writes after the repair are hidden"
    three_digests_agree(path, tmp_path / "fresh", live)
