"""Workflows: definitions of task, parallel, sequential, conditional, loop and wait steps,
run by the kernel as ordinary tasks with every decision recorded as an event.

The engine is a layer in these modules (``model``: definitions and conditions, ``builder``:
the fluent builder, ``state``: runs and the apply path of the workflow events,
``interpreter``: the live decisions, ``records``: the checks of workflow records read back,
``plan``: execution plans, ``commands``: the Kernel's workflow API).  The kernel calls it at
two points only: after a command finished tasks of a run (complete, complete_many, a
dead-lettering fail, cancel), and on ``tick()`` (time waits; the first tick also takes the
outcomes a crash left undecided).

Why a layer and not part of the compiled core: a workflow decision is rare next to a claim
(one per step, not per call), it reads JSON contexts and conditions, and it needs no new
scheduling rule: every step's task is an ordinary task that the core schedules as any
other.  So the hot paths gain one dictionary test (is this task a workflow's?), the core
and its snapshot arrays are unchanged, and the decisions are events of their own
(``workflow_started``, ``workflow_step``, ``workflow_signal``, ``workflow_paused``,
``workflow_resumed``, ``workflow_finished``) that replay applies without evaluating
anything.  The cost is one to two extra events per step (the step's start and its end),
encoded in Python.

>>> from eskernel import Kernel, ManualClock
>>> from eskernel.workflows import WorkflowBuilder
>>> k = Kernel.in_memory(clock=ManualClock())
>>> k.declare_queue("ci")
>>> k.register_agent("w", ["ci"])
>>> wf = (WorkflowBuilder("ci").add_task_step("test", queue="ci")
...       .add_task_step("deploy", queue="ci").add_task_step("rollback", queue="ci")
...       .add_conditional_step("ship", ("test.status", "==", "passed"),
...                             then=["deploy"], otherwise=["rollback"]).build())
>>> run = k.start_workflow(wf, id="ci-1")
>>> lease = k.claim("w"); lease.task_id
'ci-1/test'
>>> k.complete(lease, {"status": "passed"})
>>> k.claim("w").task_id
'ci-1/ship/deploy'
"""

from .builder import WorkflowBuilder as WorkflowBuilder, condition as condition
from .model import (Condition as Condition, ConditionalStep as ConditionalStep,
                    LoopStep as LoopStep, ParallelStep as ParallelStep,
                    SequentialStep as SequentialStep, TaskStep as TaskStep,
                    WaitStep as WaitStep, Workflow as Workflow,
                    parse_definition as parse_definition)
from .plan import definition_plan as definition_plan

__all__ = ["WorkflowBuilder", "condition", "Condition", "Workflow", "TaskStep", "ParallelStep",
           "SequentialStep", "ConditionalStep", "LoopStep", "WaitStep", "parse_definition",
           "plan"]


def plan(definition: Workflow | dict[str, object]) -> dict[str, object]:
    """The execution plan of a definition before anything is submitted (see
    :meth:`Kernel.plan <eskernel.Kernel.plan>` for a running workflow's)."""
    return definition_plan(parse_definition(definition))
