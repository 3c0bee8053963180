"""The interpreter: takes a running workflow's next decisions, live, as events.

:meth:`Interpreter.drive` walks a run's definition against its recorded step states and
the status of its open tasks, and emits what is due now: a task step whose task finished is
completed (its result merged into the context) or failed (then retried, continued past, or
failing the workflow, by its ``on_failure``); a conditional records its branch, a loop its
next iteration or its end, a wait its wake-up time or its end; steps that can start are
started (a task step submits an ordinary task with a derived id); when the root sequence is
over, or a step fails the workflow, the run finishes (its open tasks are cancelled).

Each event is applied as soon as it is made (the next decision sees it) and collected for
one append by the caller, which poisons the kernel if that append fails.  Driving a run
that has nothing due emits nothing: the kernel may drive any run at any time.  Every
decision is a function of the recorded state and ``now``, and recorded: replay applies the
events and never comes here.
"""

from __future__ import annotations

from typing import Any, Callable

from .. import events
from .._codes import Status
from ..errors import EskernelError, InvalidSpecError
from .model import (ConditionalStep, LoopStep, ParallelStep, SequentialStep, TaskStep,
                    WaitStep, evaluate, is_missing, read_path)
from .state import Run

__all__ = ["Interpreter", "task_id_for"]

DONE, BLOCKED, FAILED = 0, 1, 2
_COMPLETED, _FAILED, _CANCELLED = int(Status.COMPLETED), int(Status.FAILED), int(Status.CANCELLED)
NS = 1_000_000_000


def task_id_for(wf_id: str, path: str, attempt: int) -> str:
    """The id of a task step's task: the workflow id and the step's path (``+rN`` for the
    N-th retry of the step), so a run's task ids are known before it starts."""
    return f"{wf_id}/{path}" if attempt == 0 else f"{wf_id}/{path}+r{attempt}"


class Interpreter:
    """Decides for runs of ``state`` at time ``now``; ``record`` receives each event's
    encoded record after it is applied."""

    def __init__(self, state: Any, now: int, max_payload: int,
                 record: Callable[[bytes], None]) -> None:
        self.st = state
        self.now = now
        self.max_payload = max_payload
        self.record = record
        self.hint: set[str] | None = None

    def emit(self, ev: dict[str, Any]) -> None:
        rec = events.encode(ev)
        self.st.apply(ev)
        self.record(rec)

    def step_event(self, run: Run, path: str, status: str, task: str | None = None,
                   info: dict[str, Any] | None = None,
                   context: dict[str, Any] | None = None) -> None:
        rec = events.encode_workflow_step(self.now, run.id, path, status, task, info, context)
        self.st.apply({"t": "workflow_step", "ts": self.now, "workflow": run.id, "path": path,
                       "status": status, "task": task, "info": info, "context": context})
        self.record(rec)

    # -- the walk ---------------------------------------------------------------------

    def drive(self, run: Run, finished: list[str] | None = None) -> None:
        """Emit every decision of ``run`` that is due now (nothing when paused or over).

        ``finished``: the paths of the only steps whose tasks finished since the last
        drive, when that is all that changed.  Then a parallel group revisits only the
        children holding them, unless a wait step is running (a merged result may wake
        it anywhere).
        """
        if run.status != "running":
            return
        self.hint = None
        if finished is not None and not run.waiting:
            hint = self.hint = set(finished)
            for path in finished:              # and every group holding them
                i = path.find("/")
                while i >= 0:
                    hint.add(path[:i])
                    i = path.find("/", i + 1)
        r = self._seq(run, run.definition.steps, "")
        if r == DONE:
            self.finish(run, "completed", None)
        elif r == FAILED:
            failed = [p for p, s in run.steps.items() if s["status"] == "failed"]
            self.finish(run, "failed", f"step {failed[-1]!r} failed: "
                        f"{run.steps[failed[-1]].get('error')}" if failed else "a step failed")

    def finish(self, run: Run, status: str, error: str | None) -> None:
        """End ``run`` with ``status``; its open tasks are cancelled (after the run's
        event, so their cancellation is not taken for a step outcome)."""
        open_tasks = list(run.open)
        self.emit({"t": "workflow_finished", "ts": self.now, "workflow": run.id,
                   "status": status, "error": error})
        sched, index = self.st.sched, self.st.task_index
        for tid in open_tasks:
            h = index[tid]
            if sched.status_of(h) in (_COMPLETED, _FAILED, _CANCELLED):
                continue
            closure = sched.cancel_closure(h)
            self.emit({"t": "cancelled", "ts": self.now, "task": tid, "reason": "cancelled",
                       "cause": None})
            for d in closure:
                if sched.status_of(d) not in (_COMPLETED, _FAILED, _CANCELLED):
                    self.emit({"t": "cancelled", "ts": self.now, "task": sched.task_ids[d],
                               "reason": "upstream", "cause": tid})

    def _seq(self, run: Run, steps: list[Any], prefix: str) -> int:
        start = run.cursors.get(prefix, 0)
        for i in range(start, len(steps)):
            step = steps[i]
            r = self._node(run, step, f"{prefix}/{step.name}" if prefix else step.name)
            if r != DONE:
                return r
            run.cursors[prefix] = i + 1
        return DONE

    def _node(self, run: Run, step: Any, path: str) -> int:
        rec = run.steps.get(path)
        status = rec["status"] if rec is not None else None
        if status == "completed" or status == "skipped":
            return DONE
        if status == "failed":
            return DONE if getattr(step, "on_failure", "fail") == "continue" else FAILED
        if isinstance(step, TaskStep):
            return self._task(run, step, path, rec)
        if isinstance(step, WaitStep):
            return self._wait(run, step, path, rec)
        if isinstance(step, LoopStep):
            return self._loop(run, step, path, rec)
        if rec is None:
            info = None
            if isinstance(step, ConditionalStep):
                info = {"branch": "then" if evaluate(step.condition, run.context)
                        else "otherwise"}
            self.step_event(run, path, "running", info=info)
            rec = run.steps[path]
        if isinstance(step, ParallelStep):
            r = self._parallel(run, step, path)
        elif isinstance(step, SequentialStep):
            r = self._seq(run, step.steps, path)
        else:
            assert isinstance(step, ConditionalStep)
            r = self._seq(run, step.then if rec["branch"] == "then" else step.otherwise, path)
        if r == DONE:
            self.step_event(run, path, "completed")
        return r

    def _parallel(self, run: Run, step: ParallelStep, path: str) -> int:
        left = run.left.get(path)
        kids = step.steps
        if left is None:
            left = run.left[path] = set(range(len(kids)))
            visit = sorted(left)
        elif self.hint is None:
            visit = sorted(left)
        else:          # only the children holding a finished step can have changed
            index = run.kids.get(path)
            if index is None:
                index = run.kids[path] = {c.name: i for i, c in enumerate(kids)}
            prefix = path + "/"
            cut = len(prefix)
            visit = []
            for p in self.hint:
                if p.startswith(prefix) and p.find("/", cut) < 0:    # a direct child
                    i = index.get(p[cut:])
                    if i is not None:
                        visit.append(i)
            visit.sort()
        failed = False
        for i in visit:
            if i not in left:
                continue
            r = self._node(run, kids[i], f"{path}/{kids[i].name}")
            if r == DONE:
                left.discard(i)
            elif r == FAILED:
                failed = True
        return FAILED if failed else DONE if not left else BLOCKED

    def _loop(self, run: Run, step: LoopStep, path: str, rec: dict[str, Any] | None) -> int:
        limit = step.max_iterations or 0
        while True:
            if rec is None:
                n = 0
            else:
                r = self._seq(run, step.body, f"{path}/{rec['iteration']}")
                if r != DONE:
                    return r
                n = rec["iteration"] + 1
            if n >= limit or not evaluate(step.condition, run.context):
                self.step_event(run, path, "completed",
                                info={"iterations": n, "exhausted": n >= limit})
                return DONE
            self.step_event(run, path, "running", info={"iteration": n})
            rec = run.steps[path]

    def _wait(self, run: Run, step: WaitStep, path: str, rec: dict[str, Any] | None) -> int:
        if rec is None:
            info: dict[str, Any]
            if step.seconds is not None:
                info = {"wake": self.now + round(step.seconds * NS)}
            else:
                info = {"wake": (self.now + round(step.timeout * NS)
                                 if step.timeout is not None else None)}
            self.step_event(run, path, "running", info=info)
            rec = run.steps[path]
        wake = rec.get("wake")
        if step.condition is not None and evaluate(step.condition, run.context):
            self.step_event(run, path, "completed", info={"wake": None, "reason": "condition"})
            return DONE
        if wake is not None and self.now >= wake:
            if step.condition is None:
                self.step_event(run, path, "completed", info={"wake": None, "reason": "time"})
                return DONE
            self.step_event(run, path, "failed", info={
                "wake": None, "reason": "timeout",
                "error": f"condition on {step.condition.field!r} did not hold within "
                         f"{step.timeout} s"})
            return DONE if step.on_failure == "continue" else FAILED
        return BLOCKED

    def _task(self, run: Run, step: TaskStep, path: str, rec: dict[str, Any] | None) -> int:
        if rec is None:
            return self._submit(run, step, path, 0)
        tid = rec.get("task")
        if tid is None:          # it could not be submitted: a failure recorded already
            return BLOCKED
        h = self.st.task_index[tid]
        code = self.st.sched.status_of(h)
        if code == _COMPLETED:
            body = self.st.results[h]
            result = None if body is None or body == b"null" else events.loads(body)
            if step.outputs is None:
                updates = {step.name: result}
            else:
                updates = {}
                for field, rpath in step.outputs.items():
                    v = read_path(result, rpath)
                    if not is_missing(v):
                        updates[field] = v
            self.step_event(run, path, "completed", context=updates)
            return DONE
        if code == _FAILED or code == _CANCELLED:
            error = self.st.errors[h] or ("cancelled" if code == _CANCELLED else "failed")
            return self._failed(run, step, path, rec.get("attempt", 0), error)
        return BLOCKED

    def _failed(self, run: Run, step: TaskStep, path: str, attempt: int, error: str) -> int:
        if step.on_failure == "retry" and attempt < step.retries:
            return self._submit(run, step, path, attempt + 1)
        self.step_event(run, path, "failed", info={"error": error[:1000]})
        return DONE if step.on_failure == "continue" else FAILED

    def _submit(self, run: Run, step: TaskStep, path: str, attempt: int) -> int:
        payload = step.payload
        if step.inputs:
            payload = dict(payload or {})
            for key, field in step.inputs.items():
                v = read_path(run.context, field)
                payload[key] = None if is_missing(v) else v
        tid = task_id_for(run.id, path, attempt)
        st = self.st
        try:
            if tid in st.task_index:
                raise InvalidSpecError(f"task id {tid!r} is already in use")
            body = b"null" if payload is None else events.dumps(payload)
            if len(body) > self.max_payload:
                raise InvalidSpecError(f"its payload is {len(body)} bytes, over the "
                                       f"{self.max_payload}-byte limit")
        except EskernelError as err:     # e.g. inputs made the payload too large
            self.step_event(run, path, "failed",
                            info={"attempt": attempt, "error": f"not submitted: {err}"[:1000]})
            return DONE if step.on_failure == "continue" else FAILED
        # A plain task (the definition was checked: queue declared, priority, attempts and
        # timeout in range; ids are derived from valid names): the core's submit path
        # applies it and returns its record, as Kernel.submit's does.
        rec = st.sched.submit_simple(tid, st.queue_index[step.queue], step.priority,
                                     step.max_attempts, round(step.timeout * NS),
                                     st.default_policy, self.now, body)
        st.add_plain(tid, body)
        st.applied += 1
        st.last_ts = self.now
        self.record(rec)
        self.step_event(run, path, "running", task=tid, info={"attempt": attempt})
        return BLOCKED
