"""Cancelling a stage and watching its dependents cancel.

extract -> clean -> (report, archive).  While "clean" runs, it is cancelled: its lease is
revoked, the runtime stops its handler at the next heartbeat, and every task downstream is
cancelled by the kernel.  Run: python examples/cancel.py
"""

import asyncio

from eskernel import Kernel
from eskernel.runtime import Runtime


async def main() -> None:
    k = Kernel.in_memory()
    k.declare_queue("etl")
    rt = Runtime(k, agents=[("w", ["etl"], 2)], tick_interval=0.01)

    @rt.handler("etl", context=True)
    async def step(ctx):
        if ctx.task_id == "clean":
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                print("clean: handler cancelled (its lease was revoked)")
                raise
        return f"{ctx.task_id} done"

    rt.on("lease_lost", lambda e: print(f"runtime: lease of {e.task_id!r} lost, result discarded"))
    k.submit("etl", id="extract")
    k.submit("etl", id="clean", depends_on=["extract"], timeout=0.3)
    k.submit("etl", id="report", depends_on=["clean"])
    k.submit("etl", id="archive", depends_on=["clean"])
    runner = asyncio.create_task(rt.run())
    while k.task("clean").status != "RUNNING":
        await asyncio.sleep(0.005)
    print("cancelled:", k.cancel("clean"))
    await asyncio.sleep(0.3)  # past the next heartbeat (every timeout / 3 = 0.1 s)
    await rt.shutdown()
    await runner
    for t in ("extract", "clean", "report", "archive"):
        v = k.task(t)
        print(f"{t:8} {v.status}{' (upstream)' if v.cancelled_upstream else ''}")


if __name__ == "__main__":
    asyncio.run(main())
