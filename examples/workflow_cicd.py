"""A CI/CD workflow: build, unit tests and lint in parallel, an approval wait, then deploy
or roll back depending on the test status.  Every decision is an event in the log.

Run: python examples/workflow_cicd.py
"""

import asyncio

from eskernel import Kernel, ManualClock
from eskernel.runtime import Runtime
from eskernel.workflows import WorkflowBuilder

k = Kernel.in_memory(clock=ManualClock())
for q in ("build", "check", "release"):
    k.declare_queue(q)
rt = Runtime(k, agents=[("ci-1", ["build", "check", "release"], 4)])


@rt.handler("build")
async def build(payload):
    return {"artifact": f"app-{payload['commit']}.tar.gz"}


@rt.handler("check", context=True)
async def check(ctx):
    run, step = k.workflow_of(ctx.task_id)          # the handler's workflow and step
    passed = k.workflow(run)["context"]["commit"] != "bad1"
    print(f"  {step}: {'passed' if passed else 'failed'}")
    return {"status": "passed" if passed else "failed"}


@rt.handler("release", context=True)
async def release(ctx):
    step = ctx.task_id.rsplit("/", 1)[-1]
    print(f"  {step}: {ctx.payload['artifact']}")
    return {"done": step}


pipeline = (
    WorkflowBuilder("cicd", context={"approved": False})
    .add_task_step("build", queue="build", inputs={"commit": "commit"},
                   outputs={"artifact": "artifact"})
    .add_task_step("unit", queue="check", inputs={"commit": "commit"},
                   outputs={"test_status": "status"})
    .add_task_step("lint", queue="check", inputs={"commit": "commit"},
                   outputs={"lint_status": "status"})
    .add_parallel_step("checks", ["unit", "lint"])
    .add_wait_step("approval", condition=("approved", "==", True), timeout=3600)
    .add_task_step("deploy", queue="release", inputs={"artifact": "artifact"})
    .add_task_step("rollback", queue="release", inputs={"artifact": "artifact"})
    .add_conditional_step("ship", ("test_status", "==", "passed"), then=["deploy"],
                          otherwise=["rollback"])
    .build())


async def main() -> None:
    for commit in ("abc7", "bad1"):
        run = k.start_workflow(pipeline, id=f"cicd-{commit}", context={"commit": commit})
        print(f"{run}:")
        await rt.run_until_idle()
        now = k.plan(run)
        print(f"  waiting in: {[r['path'] for r in now['running']]}, next: {now['next']}")
        k.signal(run, "approved", True)            # a human approves the release
        await rt.run_until_idle()
        w = k.workflow(run)
        print(f"  {run}: {w['status']}, branch {w['steps']['ship']['branch']}")
    rt.close()


if __name__ == "__main__":
    asyncio.run(main())
