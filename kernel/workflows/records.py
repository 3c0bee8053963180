"""Checks of workflow records read back from the log (untrusted input), against the state
before them; ``eskernel._records`` runs them like its own before anything is applied.

A record passes when live operation could have written it: the run exists (or, for
``workflow_started``, does not yet) and is in a status that allows the event; a definition
is a valid one whose task queues are declared; a step path names a step of the definition;
a step already over never changes again; a step's task is one just submitted with the id
derived from the run and the path; contexts are objects with valid field names.
"""

from __future__ import annotations

from typing import Any, Callable

from .._validate import ID_PATTERN, show
from ..errors import EskernelError
from .interpreter import task_id_for
from .model import (NAME_PATTERN, ConditionalStep, LoopStep, TaskStep, WaitStep,
                    parse_definition, step_at, walk)
from .state import FINISHED, STEP_STATUSES

__all__ = ["workflow_checks"]

Check = Callable[[Any, dict[str, Any]], None]


def workflow_checks(error: type[Exception]) -> dict[str, Check]:
    """The check of each workflow event type; each raises ``error`` naming the problem."""

    def run_of(st: Any, ev: dict[str, Any], live: bool = True) -> Any:
        wid = ev["workflow"]
        run = st.workflows.runs.get(wid) if type(wid) is str else None
        if run is None:
            raise error(f"workflow {show(wid)} was never started")
        if live and run.status in FINISHED:
            raise error(f"workflow {wid!r} is already {run.status}")
        return run

    def fields(v: Any, what: str) -> None:
        if v is not None and (type(v) is not dict or not all(
                type(k) is str and NAME_PATTERN.fullmatch(k) for k in v)):
            raise error(f"field {what!r} is {show(v)}, not an object of context fields")

    def started(st: Any, ev: dict[str, Any]) -> None:
        wid = ev["workflow"]
        if type(wid) is not str or ID_PATTERN.fullmatch(wid) is None or "/" in wid:
            raise error(f"workflow id {show(wid)} is not a valid id")
        if wid in st.workflows.runs:
            raise error(f"workflow {wid!r} was already started")
        try:
            wf = parse_definition(ev["definition"])
        except EskernelError as err:
            raise error(f"its definition is invalid: {err}") from None
        for s in walk(list(wf.steps)):
            if isinstance(s, TaskStep) and s.queue not in st.queue_index:
                raise error(f"step {s.name!r} names queue {s.queue!r}, never declared")
        if type(ev["context"]) is not dict:
            raise error(f"field 'context' is {show(ev['context'])}, not an object")
        fields(ev["context"], "context")
        ev["_definition"] = wf

    def step(st: Any, ev: dict[str, Any]) -> None:
        run = run_of(st, ev)
        if run.status != "running":
            raise error(f"workflow {run.id!r} is {run.status}: it takes no decision")
        path, status, task, info = ev["path"], ev["status"], ev["task"], ev["info"]
        node = step_at(run.definition, path) if type(path) is str else None
        if node is None:
            raise error(f"path {show(path)} names no step of workflow {run.id!r}")
        if status not in STEP_STATUSES:
            raise error(f"step status {show(status)} is not one of {list(STEP_STATUSES)}")
        rec = run.steps.get(path)
        if rec is not None and rec["status"] != "running":
            raise error(f"step {path!r} of workflow {run.id!r} is already {rec['status']}")
        if info is not None and type(info) is not dict:
            raise error(f"field 'info' is {show(info)}, not an object")
        fields(ev["context"], "context")
        if task is not None:
            attempt = (info or {}).get("attempt")
            if (status != "running" or type(attempt) is not int or attempt < 0
                    or task != task_id_for(run.id, path, attempt)
                    or task not in st.task_index or task in st.workflows.tasks):
                raise error(f"task {show(task)} is not the fresh task of running step "
                            f"{path!r} (attempt {show(attempt)})")
        wake = (info or {}).get("wake")
        if wake is not None and (type(wake) is not int or wake < 0):
            raise error(f"wake time {show(wake)} is not a time in ns")
        if status == "running":
            running(node, path, rec, task, info or {})

    def running(node: Any, path: str, rec: Any, task: Any, info: dict[str, Any]) -> None:
        # What the interpreter records when a step of each kind starts or goes on.
        if isinstance(node, TaskStep):
            ok = task is not None
        elif isinstance(node, WaitStep):
            ok = rec is None and "wake" in info
        elif isinstance(node, ConditionalStep):
            ok = rec is None and info.get("branch") in ("then", "otherwise")
        elif isinstance(node, LoopStep):
            it = info.get("iteration")
            ok = (type(it) is int and 0 <= it < (node.max_iterations or 0)
                  and it == (rec["iteration"] + 1 if rec is not None else 0))
        else:
            ok = rec is None
        if not ok:
            raise error(f"step {path!r} ({node.kind}) cannot be running with task "
                        f"{show(task)} and info {show(info)}")

    def signal(st: Any, ev: dict[str, Any]) -> None:
        run_of(st, ev)
        if type(ev["field"]) is not str or not NAME_PATTERN.fullmatch(ev["field"]):
            raise error(f"signal field {show(ev['field'])} is not a context field name")

    def toggle(want: str) -> Check:
        def check(st: Any, ev: dict[str, Any]) -> None:
            run = run_of(st, ev)
            if run.status != want:
                raise error(f"workflow {run.id!r} is {run.status}, not {want}")
        return check

    def finished(st: Any, ev: dict[str, Any]) -> None:
        run_of(st, ev)
        if ev["status"] not in FINISHED:
            raise error(f"status {show(ev['status'])} is not one of {sorted(FINISHED)}")
        if ev["error"] is not None and type(ev["error"]) is not str:
            raise error(f"field 'error' is {show(ev['error'])}, not a string")

    return {"workflow_started": started, "workflow_step": step, "workflow_signal": signal,
            "workflow_paused": toggle("running"), "workflow_resumed": toggle("paused"),
            "workflow_finished": finished}
