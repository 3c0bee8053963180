"""Agents with different capabilities, and a task pinned to a preferred agent.

cpu-1 serves "cpu"; gpu-1 serves "cpu" and "gpu".  GPU work can only go to gpu-1; one CPU
task is pinned to gpu-1 (agent="gpu-1") and runs there.  Run: python examples/agents.py
"""

import asyncio

from eskernel import Kernel, ManualClock
from eskernel.runtime import Runtime


async def main() -> None:
    k = Kernel.in_memory(clock=ManualClock())
    k.declare_queue("cpu")
    k.declare_queue("gpu")
    rt = Runtime(k, agents=[("cpu-1", ["cpu"], 2), ("gpu-1", ["cpu", "gpu"], 1)])

    async def work(ctx):
        await asyncio.sleep(0)
        return ctx.agent_id

    rt.register("cpu", work, context=True)
    rt.register("gpu", work, context=True)
    ids = [k.submit("gpu", id=f"render-{i}") for i in range(2)]
    ids += [k.submit("cpu", id=f"parse-{i}") for i in range(3)]
    ids.append(k.submit("cpu", id="pinned-encode", agent="gpu-1"))
    await rt.run_until_idle()
    rt.close()
    for t in ids:
        print(f"{t:14} ran on {k.task(t).result}")


if __name__ == "__main__":
    asyncio.run(main())
