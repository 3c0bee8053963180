"""A timeout that fails an attempt, and a retry that succeeds (real clock, short timeout).

Attempt 1 hangs; after the task's 0.2 s timeout the runtime cancels it and records a
HandlerTimeoutError; the retry (after a 0.1 s backoff) finishes in time.
Run: python examples/timeout.py
"""

import asyncio
import time

from eskernel import Kernel
from eskernel.runtime import Runtime


async def main() -> None:
    k = Kernel.in_memory()
    k.declare_queue("api")
    rt = Runtime(k, agents=[("w", ["api"], 1)], tick_interval=0.01)
    t0 = time.monotonic()

    @rt.handler("api", context=True)
    async def call(ctx):
        print(f"{time.monotonic() - t0:.2f}s attempt {ctx.attempt} starts")
        if ctx.attempt == 1:
            await asyncio.sleep(10)  # hangs far past the timeout
        return "fast answer"

    rt.on("failed", lambda e: print(f"{time.monotonic() - t0:.2f}s attempt {e.attempt} failed:"
                                    f" {e.error}"))
    t = k.submit("api", timeout=0.2, backoff={"initial": 0.1, "factor": 2.0, "max": 1.0})
    await rt.run_until_idle()
    rt.close()
    view = k.task(t)
    print(f"{time.monotonic() - t0:.2f}s task {view.status} after {view.attempts} attempts:"
          f" {view.result}")


if __name__ == "__main__":
    asyncio.run(main())
