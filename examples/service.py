"""The kernel as a service: a server process, two worker processes and a producer.

The parent starts ``eskernel serve`` on a Unix socket, two ``eskernel worker`` processes
running ``setup`` below, and submits 30 tasks as a producer.  After a few completions it
kills worker 1 with SIGKILL; the tasks it held are run by worker 2 once their leases
(timeout 1 s) expire.  Every task ends COMPLETED; the ones worker 1 was running when it died
ran twice (execution is at least once, completion exactly once).
Run: python examples/service.py
"""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def setup(rt):
    """Called by ``eskernel worker`` with its Runtime: register the handlers."""
    ran = Path(os.environ["EXAMPLE_RAN"])

    @rt.handler("jobs")
    async def job(n):
        import asyncio
        with open(ran, "a") as f:           # record every execution, even unfinished ones
            f.write(f"{n}\n")
        await asyncio.sleep(0.1)
        return {"square": n * n, "worker": os.getpid()}


def main() -> None:
    from eskernel.service import Client

    tmp = Path(tempfile.mkdtemp(prefix="esk-example-"))
    sock = tmp / "kernel.sock"
    env = dict(os.environ, EXAMPLE_RAN=str(tmp / "ran"))
    cmd = [sys.executable, "-m", "eskernel"]
    server = subprocess.Popen(cmd + ["serve", str(tmp / "state"), "--listen", "",
                                     "--unix", str(sock)], stderr=subprocess.DEVNULL)
    while not sock.exists():
        time.sleep(0.02)
    workers = [subprocess.Popen(cmd + ["worker", "--connect", f"unix:{sock}", "--agent",
                                       f"w{i}", "--queue", "jobs", "--capacity", "4",
                                       "service:setup"], cwd=HERE, env=env,
                                stderr=subprocess.DEVNULL) for i in (1, 2)]
    try:
        with Client(f"unix:{sock}") as producer:
            while "jobs" not in {q.name for q in producer.stats().queues}:
                time.sleep(0.02)
            ids = producer.submit_many([{"queue": "jobs", "payload": n, "timeout": 1.0}
                                        for n in range(30)])
            while sum(v.status == "COMPLETED" for v in producer.tasks()) < 5:
                time.sleep(0.01)
            workers[0].send_signal(signal.SIGKILL)
            workers[0].wait()
            print(f"worker 1 killed (signal 9) after "
                  f"{sum(v.status == 'COMPLETED' for v in producer.tasks())} completions")
            views = producer.wait(ids, timeout=60)
            print("all completed:", all(v.status == "COMPLETED" for v in views))
            print("squares:", sum(v.result["square"] for v in views))
            runs = (tmp / "ran").read_text().split()
            twice = sorted({int(n) for n in runs if runs.count(n) > 1})
            print(f"{len(runs)} executions for {len(ids)} tasks; run twice: {twice}")
    finally:
        for p in workers:
            p.send_signal(signal.SIGTERM)
        for p in workers:
            p.wait(30)
        server.send_signal(signal.SIGTERM)
        server.wait(30)


if __name__ == "__main__":
    main()
