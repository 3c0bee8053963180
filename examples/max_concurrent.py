"""A queue with max_concurrent=3 running 10 tasks: never more than 3 at once.

The agents could run 8 at once between them; the queue's limit caps it at 3.
Run: python examples/max_concurrent.py
"""

import asyncio

from eskernel import Kernel
from eskernel.runtime import Runtime


async def main() -> None:
    k = Kernel.in_memory()
    k.declare_queue("uploads", max_concurrent=3)
    rt = Runtime(k, agents=[("a", ["uploads"], 4), ("b", ["uploads"], 4)])
    running, peak = 0, 0

    @rt.handler("uploads")
    async def upload(n):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        print(f"start upload {n} (running now: {running})")
        await asyncio.sleep(0.01)
        running -= 1
        return n

    ids = [k.submit("uploads", i) for i in range(10)]
    await rt.run_until_idle()
    rt.close()
    done = sum(k.task(t).status == "COMPLETED" for t in ids)
    print(f"completed {done} of 10; peak concurrency {peak} (limit 3)")


if __name__ == "__main__":
    asyncio.run(main())
