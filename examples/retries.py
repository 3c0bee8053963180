"""A flaky handler retried with exponential backoff; one that ends dead-lettered, is fixed
and requeued.  A manual clock makes the backoff instant but exact.
Run: python examples/retries.py
"""

import asyncio

from eskernel import Kernel, ManualClock
from eskernel.runtime import Runtime

clock = ManualClock(start=0.0)
k = Kernel.in_memory(clock=clock)
k.declare_queue("net")
rt = Runtime(k, agents=[("w", ["net"], 2)])
fixed = False


@rt.handler("flaky", context=True)
async def flaky(ctx):
    print(f"t={clock.now():5.1f}s flaky attempt {ctx.attempt}")
    if ctx.attempt < 4:
        raise ConnectionError(f"network blip on attempt {ctx.attempt}")
    return "ok after 4 attempts"


@rt.handler("broken", context=True)
async def broken(ctx):
    if not fixed:
        raise ValueError("bad configuration")
    return "ok after requeue"


rt.on("retried", lambda e: print(f"  {e.task_id}: retry due at t={e.due_at:.1f}s"))
rt.on("dead_lettered", lambda e: print(f"  {e.task_id}: dead-lettered: {e.error.splitlines()[0]}"))


async def main() -> None:
    global fixed
    backoff = {"initial": 1.0, "factor": 2.0, "max": 30.0}
    k.submit("net", id="flaky", name="flaky", max_attempts=5, backoff=backoff)
    k.submit("net", id="broken", name="broken", max_attempts=2, backoff=backoff)
    await rt.run_until_idle()
    print("flaky:", k.task("flaky").status, k.task("flaky").result)
    print("broken:", k.task("broken").status, "dead letters:",
          [t.id for t in k.dead_letters()])
    fixed = True
    k.requeue("broken")
    await rt.run_until_idle()
    rt.close()
    print("broken after requeue:", k.task("broken").status, k.task("broken").result)


if __name__ == "__main__":
    asyncio.run(main())
