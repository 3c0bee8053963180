"""Auditing afterwards: replay the log to a point in time, one task's history, and SQL.

A small run (one flaky task) is written to a durable directory with a manual clock; then
the directory is read back: the state as of an earlier offset (Kernel.replay), the events
of the flaky task (Kernel.history) and a SQL query over all attempts (analytics).
Run: python examples/audit.py
"""

import asyncio
import tempfile

from eskernel import Kernel, ManualClock
from eskernel.runtime import Runtime


async def produce(directory: str) -> int:
    k = Kernel.open(directory, clock=ManualClock(start=1_700_000_000.0))
    k.declare_queue("billing")
    rt = Runtime(k, agents=[("w", ["billing"], 2)])

    @rt.handler("billing", context=True)
    async def charge(ctx):
        if ctx.task_id == "invoice-2" and ctx.attempt < 3:
            raise TimeoutError(f"payment gateway timeout (attempt {ctx.attempt})")
        return {"charged": ctx.payload}

    for i in range(4):
        k.submit("billing", 10 * (i + 1), id=f"invoice-{i}")
    midpoint = None

    def remember(event):
        nonlocal midpoint
        if event.task_id == "invoice-2" and event.kind == "retried" and midpoint is None:
            midpoint = k.next_offset  # the log position right after the first failure

    rt.on("retried", remember)
    await rt.run_until_idle()
    rt.close()
    k.close()
    return midpoint


def main() -> None:
    directory = tempfile.mkdtemp(prefix="eskernel-audit-")
    midpoint = asyncio.run(produce(directory))

    past = Kernel.replay(directory, until=midpoint)
    print(f"state at offset {midpoint}:",
          {t.id: t.status for t in past.tasks()})
    past.close()

    now = Kernel.replay(directory)
    print("state now:", {t.id: t.status for t in now.tasks()})
    print("history of invoice-2:")
    for ev in now.history("invoice-2"):
        extra = (ev.get("error") or "").splitlines()[0] if ev.get("error") else ev.get("lease", "")
        print(f"  offset {ev['offset']:3} {ev['t']:10} {extra}")
    now.close()

    try:
        from eskernel.analytics import Projection
    except ImportError:
        print("analytics is not installed: SQL part skipped")
        return
    with Projection(directory) as p:
        p.refresh()
        table = p.query("SELECT task, count(*) AS attempts, "
                        "count(*) FILTER (WHERE outcome <> 'completed') AS failures "
                        "FROM attempts GROUP BY task ORDER BY task")
        print("SQL: attempts per task")
        for task, attempts, failures in table.rows:
            print(f"  {task}: {attempts} attempt(s), {failures} failure(s)")


if __name__ == "__main__":
    main()
