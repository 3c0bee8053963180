"""The Kernel's workflow commands and queries, and the points where the kernel calls in.

The workflow engine is a layer over the task kernel: its runs are state in
``KernelState.workflows`` changed only by workflow events, and its tasks are ordinary tasks.
The kernel calls :meth:`WorkflowCommands._wf_after` after a command finished (completed,
dead-lettered or cancelled) tasks that belong to a run, and :meth:`WorkflowCommands._wf_tick`
from ``tick()`` (wait steps whose time has come; and, on a kernel's first tick, every
running run, taking the task outcomes a crash between a task's ``completed`` record and the
run's next decision left undecided).  Both append the decisions in one batch after the
command's own records.
"""

from __future__ import annotations

import gc
from typing import Any, Callable, Iterable

from .. import events
from .._codes import Status
from .._validate import check_id, show
from ..errors import (InvalidSpecError, InvalidStateError, UnknownQueueError,
                      UnknownWorkflowError)
from .interpreter import Interpreter
from .model import (NAME_PATTERN, LoopStep, TaskStep, Workflow, children, parse_definition,
                    step_at, walk)
from .plan import definition_plan, run_plan
from .state import FINISHED, Run

__all__ = ["WorkflowCommands"]


def _max_path(steps: list[Any], prefix: int) -> int:
    # The longest step path a run of these steps can make (loop iterations included).
    best = 0
    for s in steps:
        n = prefix + len(s.name) + (1 if prefix else 0)
        if isinstance(s, LoopStep):
            n += 1 + len(str((s.max_iterations or 1) - 1))
        best = max(best, n, _max_path(children(s), n))
    return best


class WorkflowCommands:
    """Mixed into :class:`~eskernel.Kernel`: the workflow API."""

    _state: Any
    _wf_tasks: dict[str, Any]
    _max_payload: int
    _failed: BaseException | None
    _writable: Callable[[], None]
    _now: Callable[[], int]
    _write: Callable[..., None]
    _poison: Callable[[BaseException], BaseException]
    _maybe_snapshot: Callable[[], None]
    _wf_swept = False           # set by the first tick (see _wf_tick)

    # -- running the interpreter -----------------------------------------------------------

    def _wf_decide(self, decide: Callable[[Interpreter], None], now: int | None = None) -> None:
        # Events are applied as they are made, then appended in one batch: a failed append
        # poisons the kernel (the state holds what the log lacks), like tick().
        pending: list[bytes] = []
        interp = Interpreter(self._state, self._now() if now is None else now,
                             self._max_payload, pending.append)
        gc_was_on = gc.isenabled()
        gc.disable()    # decisions build long-lived objects (step records, results), no cycles
        try:
            decide(interp)
            if pending:
                self._write(pending)
        except BaseException as err:
            if pending and self._failed is None:
                raise self._poison(err) from err
            raise
        finally:
            if gc_was_on:
                gc.enable()
        if pending:
            self._maybe_snapshot()
        self._wf_route()

    def _wf_route(self) -> None:
        # Kernel.__init__ binds the core's entry point as the instance's `complete`, and it
        # does not reach this layer: while runs have open tasks, `complete` is the method
        # (which hands a workflow task's outcome over), then the entry point again.
        bound = self.__dict__.get("complete")
        if self._wf_tasks:
            if bound is not None:
                self.__dict__["_k_complete"] = bound
                del self.__dict__["complete"]
        elif bound is None and self.__dict__.get("_k_complete") is not None:
            self.__dict__["complete"] = self.__dict__["_k_complete"]

    def _wf_after(self, task_ids: Iterable[str]) -> None:
        """Take the decisions of the runs owning ``task_ids`` (tasks just finished)."""
        tasks, runs = self._state.workflows.tasks, self._state.workflows.runs
        finished: dict[str, list[str]] = {}        # run -> paths of its steps' tasks
        for t in task_ids:
            w = tasks.get(t)
            if w is not None:
                finished.setdefault(w, []).append(runs[w].open[t])
        if finished:
            def decide(it: Interpreter) -> None:
                for w, paths in finished.items():
                    it.drive(runs[w], paths)
            self._wf_decide(decide)

    def _wf_tick(self, now: int) -> None:
        """Drive the running runs with a wait step due; the first tick of a kernel drives
        every running run (outcomes a crash kept from being taken into account)."""
        swept = self._wf_swept
        self._wf_swept = True
        runs = [r for r in self._state.workflows.runs.values() if r.status == "running"
                and (not swept or (r.timers and min(r.timers.values()) <= now))]
        if runs:
            def decide(it: Interpreter) -> None:
                for r in runs:
                    it.drive(r)
            self._wf_decide(decide, now)

    def _run(self, workflow_id: Any) -> Run:
        run: Run | None = (self._state.workflows.runs.get(workflow_id)
                           if type(workflow_id) is str else None)
        if run is None:
            check_id(workflow_id, "workflow")
            raise UnknownWorkflowError(f"no workflow has id {workflow_id!r}; check the id "
                                       "(kernel.workflows() lists them)")
        return run

    # -- commands ------------------------------------------------------------------------

    def start_workflow(self, definition: Workflow | dict[str, Any], *,
                       context: dict[str, Any] | None = None, id: str | None = None) -> str:
        """Start a run of ``definition``; returns its id.  The steps that can start at once
        become ordinary tasks (ids ``<id>/<step path>``) in the same append.

        Args:
            definition: a :class:`Workflow` (from :class:`WorkflowBuilder`) or its JSON form.
            context: fields merged over the definition's initial context (JSON values).
            id: the run's id (default: the definition's name, then ``name-2``...).

        Raises:
            WorkflowSpecError (and subclasses): the definition is invalid.
            UnknownQueueError: a task step names an undeclared queue.
            InvalidSpecError: a bad id, an id in use, a context that is not JSON.
        """
        self._writable()
        wf = parse_definition(definition)
        if context is not None and type(context) is not dict:
            raise InvalidSpecError(f"context must be a dict, got {show(context)}")
        ctx = dict(wf.context)
        ctx.update(context or {})
        for key in ctx:
            if type(key) is not str or not NAME_PATTERN.fullmatch(key):
                raise InvalidSpecError(f"context field {show(key)} is invalid: use 1-64 "
                                       "characters from A-Z a-z 0-9 _ -")
        runs = self._state.workflows.runs
        if id is None:
            wid, n = wf.name, 1
            while wid in runs:
                n += 1
                wid = f"{wf.name}-{n}"
        else:
            wid = check_id(id, "workflow")
            if "/" in wid:
                raise InvalidSpecError(f"workflow id {wid!r} contains '/', which separates "
                                       "the run from the step path in its task ids; use "
                                       "another character")
            if wid in runs:
                raise InvalidSpecError(f"workflow id {wid!r} is already in use; pick another")
        if len(wid) + 1 + _max_path(list(wf.steps), 0) + 6 > 200:
            raise InvalidSpecError(f"workflow id {wid!r} with step paths up to "
                                   f"{_max_path(list(wf.steps), 0)} characters makes task ids "
                                   "over 200 characters; use a shorter id or step names")
        queues = self._state.queue_index
        for s in walk(list(wf.steps)):
            if isinstance(s, TaskStep) and s.queue not in queues:
                raise UnknownQueueError(f"step {s.name!r} runs on queue {s.queue!r}, which is "
                                        f"not declared; call declare_queue({s.queue!r}) first")
        spec = wf.model_dump(mode="json")
        now = self._now()
        ev: dict[str, Any] = {"t": "workflow_started", "ts": now, "workflow": wid,
                              "definition": spec, "context": ctx}
        # The run keeps copies decoded from the record: what the caller still holds (the
        # definition's payloads, the context's values) cannot change it afterwards.
        events.encode(ev)               # a context that cannot be stored is refused here
        ev["context"] = events.loads(events.dumps(ctx))
        ev["_definition"] = Workflow.model_validate(spec)

        def decide(it: Interpreter) -> None:
            it.emit(ev)
            it.drive(runs[wid])
        self._wf_decide(decide, now)
        return wid

    def signal(self, workflow_id: str, field: str, value: Any) -> None:
        """Set context ``field`` of a run to ``value`` (JSON); waits on it wake up.

        Raises:
            UnknownWorkflowError; InvalidStateError when the run is over;
            InvalidSpecError for a bad field name or a value that is not JSON.
        """
        self._writable()
        run = self._run(workflow_id)
        if type(field) is not str or not NAME_PATTERN.fullmatch(field):
            raise InvalidSpecError(f"signal field {show(field)} is invalid: use 1-64 "
                                   "characters from A-Z a-z 0-9 _ -")
        if run.status in FINISHED:
            raise InvalidStateError(f"workflow {workflow_id!r} is {run.status}; a signal "
                                    "can no longer change it")
        now = self._now()
        ev = {"t": "workflow_signal", "ts": now, "workflow": workflow_id, "field": field,
              "value": value}
        ev["value"] = events.loads(events.encode(ev))["value"]     # the run keeps a copy

        def decide(it: Interpreter) -> None:
            it.emit(ev)
            it.drive(run)
        self._wf_decide(decide, now)

    def pause_workflow(self, workflow_id: str) -> None:
        """Start no new step of a run (its running tasks go on; their outcomes are taken
        on resume).  Idempotent on a paused run.

        Raises:
            UnknownWorkflowError; InvalidStateError when the run is over.
        """
        self._writable()
        run = self._run(workflow_id)
        if run.status == "paused":
            return
        if run.status in FINISHED:
            raise InvalidStateError(f"workflow {workflow_id!r} is {run.status}; there is "
                                    "nothing to pause")
        self._wf_decide(lambda it: it.emit({"t": "workflow_paused", "ts": it.now,
                                            "workflow": workflow_id}))

    def resume_workflow(self, workflow_id: str) -> None:
        """Resume a paused run: the decisions due meanwhile are taken now.  Idempotent on
        a running run.

        Raises:
            UnknownWorkflowError; InvalidStateError when the run is over.
        """
        self._writable()
        run = self._run(workflow_id)
        if run.status == "running":
            return
        if run.status in FINISHED:
            raise InvalidStateError(f"workflow {workflow_id!r} is {run.status}; it cannot "
                                    "be resumed")

        def decide(it: Interpreter) -> None:
            it.emit({"t": "workflow_resumed", "ts": it.now, "workflow": workflow_id})
            it.drive(run)
        self._wf_decide(decide)

    def cancel_workflow(self, workflow_id: str) -> list[str]:
        """Cancel a run and its open tasks; returns the ids of the tasks cancelled.

        Raises:
            UnknownWorkflowError; InvalidStateError when the run is over.
        """
        self._writable()
        run = self._run(workflow_id)
        if run.status in FINISHED:
            raise InvalidStateError(f"workflow {workflow_id!r} is already {run.status}")
        before = list(run.open)
        self._wf_decide(lambda it: it.finish(run, "cancelled", "cancelled"))
        index, sched = self._state.task_index, self._state.sched
        return [t for t in before if sched.status_of(index[t]) == int(Status.CANCELLED)]

    # -- queries ---------------------------------------------------------------------------

    def workflow(self, workflow_id: str) -> dict[str, Any]:
        """A run as data: id, status, context, error, start/finish times (ns) and
        ``steps`` (path -> status, task, times, branch / iteration / attempt / error).

        Raises:
            UnknownWorkflowError.
        """
        data: dict[str, Any] = _copy(self._run(workflow_id).dump())
        return data

    def workflow_wake(self) -> float | None:
        """The earliest time (seconds) a running run's time wait ends, or None.  ``tick()``
        at or after it takes the decision; the Runtime waits for it like for a retry's
        backoff.  A condition wait's timeout is not counted: such a wait is for input from
        outside (a signal), which an idle Runtime does not wait for (``tick()`` still
        times it out)."""
        wakes = [t for r in self._state.workflows.runs.values() if r.status == "running"
                 for p, t in r.timers.items()
                 if getattr(step_at(r.definition, p), "seconds", None) is not None]
        return min(wakes) / 1e9 if wakes else None

    def workflow_of(self, task_id: str) -> tuple[str, str] | None:
        """``(workflow id, step path)`` of an open task of a running or paused run (a
        handler's way to its run: ``kernel.workflow(wid)["context"]``), else None."""
        wid = self._state.workflows.tasks.get(task_id) if type(task_id) is str else None
        if wid is None:
            return None
        return wid, self._state.workflows.runs[wid].open[task_id]

    def workflows(self) -> list[str]:
        """The ids of every run, in start order."""
        return list(self._state.workflows.runs)

    def plan(self, definition_or_id: Workflow | dict[str, Any] | str) -> dict[str, Any]:
        """The execution plan.  For a definition (nothing is submitted): ``{"stages": [...]}``
        in order, each with its steps and what it waits for.  For a run's id:
        ``{"done": [...], "running": [...], "next": [...]}`` as well.

        Raises:
            WorkflowSpecError for an invalid definition; UnknownWorkflowError.
        """
        if isinstance(definition_or_id, str):
            return run_plan(self._run(definition_or_id))
        return definition_plan(parse_definition(definition_or_id))


def _copy(data: Any) -> Any:
    return events.loads(events.dumps(data))

