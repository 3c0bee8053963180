"""kill -9 a writer mid-append: nothing acknowledged is lost, and the log always opens.

``ESKERNEL_CRASH_ITERATIONS`` (default 20) sets how many kills each test performs.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eskernel.eventlog import EventLog

ROOT = Path(__file__).resolve().parents[2]
ITERATIONS = int(os.environ.get("ESKERNEL_CRASH_ITERATIONS", "20"))

# The child appends records whose content is a function of their offset, and prints each
# offset once append/append_many has returned (acknowledged), flushing stdout.
CHILD = """
import sys
from eskernel.eventlog import EventLog

def record(i):
    return b"rec-%d-" % i + bytes([i % 251]) * (i % 300)

log = EventLog.open(sys.argv[1], sys.argv[2], segment_bytes=int(sys.argv[3]))
print("ready", flush=True)
i = log.next_offset
while True:
    if i % 7 == 0:
        first = log.append_many([record(i + k) for k in range(5)])
        assert first == i
        sys.stdout.write("%d\\n" % (i + 4))
        i += 5
    else:
        assert log.append(record(i)) == i
        sys.stdout.write("%d\\n" % i)
        i += 1
    sys.stdout.flush()
"""


def record(i: int) -> bytes:
    return b"rec-%d-" % i + bytes([i % 251]) * (i % 300)


def run_and_kill(path: Path, mode: str, rng: random.Random) -> int:
    """Start a writer, kill it at a random moment; return the highest acknowledged offset."""
    # Small segments, so that some kills land around a segment roll.
    segment_bytes = 2048 if mode == "fsync" else 65536
    with subprocess.Popen([sys.executable, "-c", CHILD, str(path), mode, str(segment_bytes)],
                          stdout=subprocess.PIPE,
                          env=os.environ | {"PYTHONPATH": str(ROOT)}) as child:
        assert child.stdout is not None
        try:
            assert child.stdout.readline() == b"ready\n"
            time.sleep(rng.uniform(0.0, 0.08))
        finally:
            child.send_signal(signal.SIGKILL)
        lines = child.stdout.read().split(b"\n")
        child.wait()
    assert child.returncode == -signal.SIGKILL
    acked = [int(line) for line in lines[:-1]]     # the last piece may be a partial line
    return max(acked, default=-1)


def check_intact(path: Path) -> int:
    """Reopen (repairing), check every record's content; return the record count."""
    with EventLog.open(path) as log:
        n = log.next_offset
        got = log.read_batch(0, n)
    assert got == [record(i) for i in range(n)]
    return n


@pytest.mark.parametrize("mode", ["write", "fsync"])
def test_kill_loses_nothing_acknowledged(tmp_path: Path, mode: str) -> None:
    rng = random.Random(f"{mode}-{os.getpid()}-{time.time()}")
    iterations = ITERATIONS if mode == "write" else max(1, ITERATIONS // 4)
    repairs = 0
    for _ in range(iterations):
        acked = run_and_kill(tmp_path, mode, rng)
        with EventLog.open(tmp_path) as log:
            repairs += log.repair is not None
        n = check_intact(tmp_path)
        assert n > acked, f"acknowledged offset {acked} lost: the log holds only {n} records"
    segments = len(list(tmp_path.glob("*.seg")))
    print(f"{iterations} kills, {repairs} torn tails repaired, {segments} segments")


def test_kill_in_buffer_mode_leaves_an_openable_prefix(tmp_path: Path) -> None:
    rng = random.Random(f"buffer-{os.getpid()}-{time.time()}")
    before = 0
    for _ in range(max(1, ITERATIONS // 2)):
        run_and_kill(tmp_path, "buffer", rng)
        n = check_intact(tmp_path)      # opens, repaired if torn; content is a prefix
        assert n >= before              # what a previous run left is never lost
        before = n
