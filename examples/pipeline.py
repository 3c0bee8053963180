"""A multi-stage pipeline with dependencies resolved by the kernel, with fan-out / fan-in.

fetch -> split -> 4 x transform (fan-out, in parallel) -> merge (fan-in) -> publish.
A handler reads its upstream results from the kernel.  Run: python examples/pipeline.py
"""

import asyncio

from eskernel import Kernel, ManualClock
from eskernel.runtime import Runtime

k = Kernel.in_memory(clock=ManualClock())
k.declare_queue("etl")
rt = Runtime(k, agents=[("w", ["etl"], 4)])


def upstream(ctx):
    return [k.task(d).result for d in k.task(ctx.task_id).depends_on]


@rt.handler("fetch")
async def fetch(payload):
    print("fetch: got 8 records")
    return list(range(1, 9))


@rt.handler("transform", context=True)
async def transform(ctx):
    (records,) = upstream(ctx)
    part = records[ctx.payload["part"]::4]
    await asyncio.sleep(0)
    print(f"transform part {ctx.payload['part']}: {part} -> squares")
    return [r * r for r in part]


@rt.handler("merge", context=True)
async def merge(ctx):
    parts = upstream(ctx)
    total = sum(sum(p) for p in parts)
    print(f"merge: {len(parts)} parts, sum of squares {total}")
    return total


@rt.handler("publish", context=True)
async def publish(ctx):
    (total,) = upstream(ctx)
    print(f"publish: result {total}")
    return {"published": total}


async def main() -> None:
    k.submit_many(
        [{"queue": "etl", "id": "fetch", "name": "fetch"}]
        + [{"queue": "etl", "id": f"t{i}", "name": "transform", "payload": {"part": i},
            "depends_on": ["fetch"]} for i in range(4)]
        + [{"queue": "etl", "id": "merge", "name": "merge",
            "depends_on": [f"t{i}" for i in range(4)]},
           {"queue": "etl", "id": "publish", "name": "publish", "depends_on": ["merge"]}])
    await rt.run_until_idle()
    rt.close()
    print("final:", k.task("publish").status, k.task("publish").result)


if __name__ == "__main__":
    asyncio.run(main())
