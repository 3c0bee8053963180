"""Killing the process mid-run and resuming from the log.

The parent submits 12 tasks into a durable directory and starts a worker process that runs
them.  After 5 completions the parent kills the worker with SIGKILL (no cleanup at all),
reopens the directory and runs the rest.  Completed tasks are not run again; the tasks the
worker held when it died are retried once their leases (timeout 0.5 s) expire.
Run: python examples/crash_resume.py
"""

import asyncio
import collections
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from eskernel import Kernel
from eskernel.runtime import Runtime


def make_runtime(k: Kernel, ran_file: Path) -> Runtime:
    rt = Runtime(k, agents=["worker"], tick_interval=0.02)

    @rt.handler("work")
    async def work(n):
        with open(ran_file, "a") as f:  # record every execution, even unfinished ones
            f.write(f"{n}\n")
        await asyncio.sleep(0.05)
        return n * 10

    rt.on("completed", lambda e: print(f"completed {e.task_id}", flush=True))
    return rt


def worker(directory: str) -> None:
    k = Kernel.open(directory, durability="write")
    asyncio.run(make_runtime(k, Path(directory) / "ran.txt").run_until_idle())


def main() -> None:
    directory = tempfile.mkdtemp(prefix="eskernel-crash-")
    ran_file = Path(directory) / "ran.txt"
    k = Kernel.open(directory)
    k.declare_queue("work")
    k.register_agent("worker", ["work"], capacity=2)
    for i in range(12):
        k.submit("work", i, id=f"task-{i:02}", timeout=0.5)
    k.close()

    child = subprocess.Popen([sys.executable, __file__, "--worker", directory],
                             stdout=subprocess.PIPE, text=True)
    done_before = []
    for line in child.stdout:
        done_before.append(line.split()[1])
        if len(done_before) == 5:
            os.kill(child.pid, signal.SIGKILL)
            break
    child.wait()
    child.stdout.close()
    print(f"worker killed (signal {-child.returncode}) after {len(done_before)} completions")

    k = Kernel.open(directory)
    counts = collections.Counter(t.status for t in k.tasks())
    print("after reopening:", dict(sorted(counts.items())))
    rt = make_runtime(k, ran_file)
    asyncio.run(rt.run_until_idle())
    rt.close()
    runs = collections.Counter(ran_file.read_text().split())
    again = sorted(f"task-{int(n):02}" for n, c in runs.items() if c > 1)
    rerun_completed = [t for t in done_before if runs[str(int(t[-2:]))] > 1]
    print("all completed:", all(t.status == "COMPLETED" for t in k.tasks()))
    print("run twice (in flight at the kill):", again)
    print("completed before the kill and run again:", rerun_completed)
    k.close()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(sys.argv[2])
    else:
        main()
