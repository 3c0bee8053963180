"""Priority ordering: CRITICAL runs first, LOW last, FIFO within a level.

One agent with capacity 1 runs tasks one at a time, so the order they run in is the order
the kernel hands them out.  Run: python examples/priority.py
"""

import asyncio

from eskernel import Kernel, ManualClock, Priority
from eskernel.runtime import Runtime


async def main() -> None:
    k = Kernel.in_memory(clock=ManualClock())
    k.declare_queue("jobs")
    rt = Runtime(k, agents=[("worker", ["jobs"], 1)])
    order = []

    @rt.handler("jobs")
    async def record(payload):
        order.append(payload)

    for level, n in [("LOW", 2), ("NORMAL", 2), ("CRITICAL", 2), ("HIGH", 1), ("URGENT", 1)]:
        for i in range(n):
            k.submit("jobs", f"{level}-{i}", priority=Priority[level])
    await rt.run_until_idle()
    rt.close()
    print("ran in order:", " ".join(order))


if __name__ == "__main__":
    asyncio.run(main())
