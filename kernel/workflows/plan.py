"""Execution plans: what a definition would run, in order, and where a run stands."""

from __future__ import annotations

from typing import Any

from .model import (Condition, ConditionalStep, LoopStep, ParallelStep, SequentialStep,
                    TaskStep, WaitStep, Workflow)
from .state import Run

__all__ = ["definition_plan", "run_plan", "describe"]


def _cond(c: Condition) -> str:
    text = f"{c.field} {c.op}" + ("" if c.op == "exists" else f" {c.value!r}")
    return text + (f" (default {c.default!r})" if c.has_default else "")


def describe(step: Any) -> dict[str, Any]:
    """One step as plan data: its kind, what it runs and what it waits for."""
    d: dict[str, Any] = {"step": step.name, "kind": step.kind}
    if isinstance(step, TaskStep):
        d["queue"] = step.queue
        if step.inputs:
            d["waits_for"] = sorted(set(step.inputs.values()))
        if step.on_failure != "fail":
            d["on_failure"] = step.on_failure + (f" x{step.retries}" if step.retries else "")
    elif isinstance(step, (ParallelStep, SequentialStep)):
        d["steps"] = [describe(s) for s in step.steps]
    elif isinstance(step, ConditionalStep):
        d["if"] = _cond(step.condition)
        d["then"] = [describe(s) for s in step.then]
        d["otherwise"] = [describe(s) for s in step.otherwise]
    elif isinstance(step, LoopStep):
        d["while"] = _cond(step.condition)
        d["max_iterations"] = step.max_iterations
        d["body"] = [describe(s) for s in step.body]
    else:
        assert isinstance(step, WaitStep)
        if step.seconds is not None:
            d["waits_for"] = [f"{step.seconds} s"]
        else:
            assert step.condition is not None
            d["waits_for"] = [_cond(step.condition)]
            if step.timeout is not None:
                d["timeout"] = step.timeout
    return d


def definition_plan(wf: Workflow) -> dict[str, Any]:
    """The stages of ``wf`` in the order they run; stage ``n`` starts when stage ``n - 1``
    is over (``after``) and when its own ``waits_for`` (a time, a condition) is met.

    >>> from eskernel.workflows import WorkflowBuilder
    >>> wf = (WorkflowBuilder("w").add_task_step("a", queue="q")
    ...       .add_wait_step("pause", seconds=5).build())
    >>> [(s["stage"], s["step"], s["after"]) for s in definition_plan(wf)["stages"]]
    [(1, 'a', []), (2, 'pause', ['a'])]
    """
    stages = []
    prev: list[str] = []
    for i, step in enumerate(wf.steps, 1):
        d = describe(step)
        d["stage"], d["after"] = i, prev
        stages.append(d)
        prev = [step.name]
    return {"workflow": wf.name, "stages": stages}


def run_plan(run: Run) -> dict[str, Any]:
    """Where ``run`` stands: step paths ``done`` (with their status), ``running`` (with
    their task, if any) and ``next`` (not started, in the order they would start), plus
    the definition's stages."""
    done: list[dict[str, Any]] = []
    running: list[dict[str, Any]] = []
    nxt: list[str] = []
    for path, rec in run.steps.items():
        if rec["status"] == "running":
            if rec.get("task") is not None or "wake" in rec:
                running.append({"path": path, "task": rec.get("task")})
        else:
            done.append({"path": path, "status": rec["status"]})
    if run.status in ("running", "paused"):
        _pending(run, list(run.definition.steps), "", nxt)
    out = definition_plan(run.definition)
    out.update(id=run.id, status=run.status, done=done, running=running, next=nxt)
    return out


def _pending(run: Run, steps: list[Any], prefix: str, out: list[str]) -> None:
    for s in steps:
        path = f"{prefix}/{s.name}" if prefix else s.name
        rec = run.steps.get(path)
        if rec is None:
            out.append(path)
        elif rec["status"] == "running":
            if isinstance(s, (ParallelStep, SequentialStep)):
                _pending(run, list(s.steps), path, out)
            elif isinstance(s, ConditionalStep):
                _pending(run, list(s.then if rec.get("branch") == "then" else s.otherwise),
                         path, out)
            elif isinstance(s, LoopStep):
                _pending(run, list(s.body), f"{path}/{rec['iteration']}", out)
