"""An ETL workflow: three sources extracted in parallel, a transform that reads their
results from the workflow context, then a load.  Run: python examples/workflow_etl.py
"""

import asyncio

from eskernel import Kernel, ManualClock
from eskernel.runtime import Runtime
from eskernel.workflows import WorkflowBuilder

k = Kernel.in_memory(clock=ManualClock())
k.declare_queue("extract")
k.declare_queue("transform")
k.declare_queue("load")
rt = Runtime(k, agents=[("etl-1", ["extract", "transform", "load"], 8)])

SOURCES = {"users": [1, 2, 3], "orders": [10, 20], "events": [5, 5, 5, 5]}


@rt.handler("extract")
async def extract(payload):
    rows = SOURCES[payload["source"]]
    await asyncio.sleep(0)
    return {"rows": rows}


@rt.handler("transform")
async def transform(payload):
    counts = {name: len(payload[name]) for name in ("users", "orders", "events")}
    return {"counts": counts, "total": sum(counts.values())}


@rt.handler("load")
async def load(payload):
    print(f"load: {payload['total']} rows {payload['counts']}")
    return {"loaded": payload["total"]}


b = WorkflowBuilder("etl")
for source in SOURCES:
    b.add_task_step(f"extract_{source}", queue="extract", payload={"source": source},
                    outputs={source: "rows"})
etl = (b.add_parallel_step("extract", [f"extract_{s}" for s in SOURCES])
       .add_task_step("transform", queue="transform",
                      inputs={"users": "users", "orders": "orders", "events": "events"},
                      outputs={"counts": "counts", "total": "total"})
       .add_task_step("load", queue="load", inputs={"counts": "counts", "total": "total"})
       .build())


async def main() -> None:
    print("plan:", [(s["stage"], s["step"]) for s in k.plan(etl)["stages"]])
    run = k.start_workflow(etl, id="etl-1")
    print("started together:", sorted(t.id for t in k.tasks(status="READY")))
    await rt.run_until_idle()
    rt.close()
    w = k.workflow(run)
    print(f"etl-1: {w['status']}, context total {w['context']['total']}")


if __name__ == "__main__":
    asyncio.run(main())
