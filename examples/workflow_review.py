"""A code-review workflow: review and fix in a loop until the reviewer approves (at most 5
rounds), then merge.  Run: python examples/workflow_review.py
"""

import asyncio

from eskernel import Kernel, ManualClock
from eskernel.runtime import Runtime
from eskernel.workflows import WorkflowBuilder, condition

k = Kernel.in_memory(clock=ManualClock())
k.declare_queue("review")
k.declare_queue("dev")
rt = Runtime(k, agents=[("bot", ["review", "dev"], 2)])
rounds = {"n": 0}


@rt.handler("review")
async def review(payload):
    rounds["n"] += 1
    approved = rounds["n"] >= 3
    print(f"review round {rounds['n']}: {'approved' if approved else 'changes requested'}")
    return {"approved": approved, "comments": 0 if approved else 3}


@rt.handler("dev")
async def dev(payload):
    if payload.get("comments"):
        print(f"  fix: addressed {payload['comments']} comments")
    return {"merged": payload.get("pr")} if payload.get("pr") else {"fixed": True}


flow = (WorkflowBuilder("review", context={"pr": 42})
        .add_task_step("review", queue="review", outputs={"approved": "approved",
                                                          "comments": "comments"})
        .add_task_step("fix", queue="dev", inputs={"comments": "comments"})
        .add_loop_step("rounds", condition("approved", "!=", True, default=False),
                       body=["review", "fix"], max_iterations=5)
        .add_task_step("merge", queue="dev", inputs={"pr": "pr"})
        .build())


async def main() -> None:
    run = k.start_workflow(flow, id="pr-42")
    await rt.run_until_idle()
    rt.close()
    w = k.workflow(run)
    print(f"pr-42: {w['status']} after {w['steps']['rounds']['iterations']} rounds, "
          f"merge result {k.task('pr-42/merge').result}")


if __name__ == "__main__":
    asyncio.run(main())
