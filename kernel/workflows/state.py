"""The workflows' part of the kernel state, and the apply path of the workflow events.

Workflow events (see :mod:`eskernel.events`)::

    workflow_started    workflow, definition (its JSON form), context (the initial one)
    workflow_step       workflow, path, status, task (or null), info (or null),
                        context (fields merged into the context, or null)
    workflow_signal     workflow, field, value
    workflow_paused     workflow
    workflow_resumed    workflow
    workflow_finished   workflow, status ("completed", "failed", "cancelled"), error

Applying one is a plain assignment of what the event says: no condition is evaluated and no
clock read here, so replay reproduces every decision the interpreter took live.

Invariants (held by every apply):

* ``tasks[t] == w`` iff task ``t`` is the current task of a step of run ``w``, that step is
  ``running`` and ``w`` is not finished; then ``runs[w].open[t]`` is that step's path;
* ``runs[w].timers[p]`` is the wake-up time (ns) of the running wait step ``p``, if any;
* a finished run has no open tasks and no timers.
"""

from __future__ import annotations

from typing import Any, Callable

from .model import Workflow, parse_definition

__all__ = ["Run", "WorkflowTable", "STEP_STATUSES", "RUN_STATUSES", "FINISHED"]

STEP_STATUSES = ("running", "completed", "failed", "skipped")
RUN_STATUSES = ("running", "paused", "completed", "failed", "cancelled")
FINISHED = frozenset({"completed", "failed", "cancelled"})
_STEP_DONE = frozenset({"completed", "failed", "skipped"})


class Run:
    """One workflow run: its definition, context, status and per-step records."""

    __slots__ = ("id", "definition", "spec", "context", "status", "started", "finished",
                 "error", "steps", "open", "timers", "waiting", "cursors", "left",
                 "kids")

    def __init__(self, wf_id: str, definition: Workflow, spec: dict[str, Any],
                 context: dict[str, Any], ts: int) -> None:
        self.id = wf_id
        self.definition = definition
        self.spec = spec                     # the definition's JSON form, as logged
        self.context = context
        self.status = "running"
        self.started = ts
        self.finished: int | None = None
        self.error: str | None = None
        self.steps: dict[str, dict[str, Any]] = {}    # path -> status, task, times, info
        self.open: dict[str, str] = {}                # task id -> step path
        self.timers: dict[str, int] = {}              # wait step path -> wake time (ns)
        self.waiting: set[str] = set()                # paths of the running wait steps
        # Caches of the interpreter, derived, never stored (a step once done stays done):
        # per sequence path, how many leading children are done; per parallel path, the
        # indices of its children not done yet.
        self.cursors: dict[str, int] = {}
        self.left: dict[str, set[int]] = {}
        self.kids: dict[str, dict[str, int]] = {}     # parallel path -> child name -> index

    def dump(self) -> dict[str, Any]:
        """The run as JSON data (digest, snapshot, views): everything but the caches."""
        return {"id": self.id, "definition": self.spec, "context": self.context,
                "status": self.status, "started": self.started, "finished": self.finished,
                "error": self.error, "steps": self.steps}


class WorkflowTable:
    """Every workflow run, by id, and the index of their open tasks."""

    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}
        self.tasks: dict[str, str] = {}       # open task id -> workflow id (never rebound)

    def handlers(self) -> dict[str, Callable[[dict[str, Any]], None]]:
        """The apply function of each workflow event type."""
        return {"workflow_started": self._started, "workflow_step": self._step,
                "workflow_signal": self._signal, "workflow_paused": self._paused,
                "workflow_resumed": self._resumed, "workflow_finished": self._finished}

    def _started(self, ev: dict[str, Any]) -> None:
        wf = ev.get("_definition")      # checked records and live starts carry it parsed
        if wf is None:
            wf = parse_definition(ev["definition"])
        self.runs[ev["workflow"]] = Run(ev["workflow"], wf, ev["definition"],
                                        dict(ev["context"]), ev["ts"])

    def _step(self, ev: dict[str, Any]) -> None:
        run = self.runs[ev["workflow"]]
        path, status, task = ev["path"], ev["status"], ev["task"]
        rec = run.steps.get(path)
        if rec is None:
            rec = run.steps[path] = {"status": status, "started": ev["ts"]}
        old = rec.get("task")
        if old is not None and old in run.open and (task is not None or status != "running"):
            del run.open[old]
            self.tasks.pop(old, None)
        rec["status"] = status
        if ev["info"]:
            rec.update(ev["info"])
        if task is not None:
            rec["task"] = task
            if status == "running":
                run.open[task] = path
                self.tasks[task] = run.id
        if "wake" in rec:                   # only wait steps record a wake
            wake = rec["wake"] if status == "running" else None
            if wake is not None:
                run.timers[path] = wake
            else:
                run.timers.pop(path, None)
            if status == "running":
                run.waiting.add(path)
            else:
                run.waiting.discard(path)
        if status in _STEP_DONE:
            rec["finished"] = ev["ts"]
        if ev["context"]:
            run.context.update(ev["context"])

    def _signal(self, ev: dict[str, Any]) -> None:
        self.runs[ev["workflow"]].context[ev["field"]] = ev["value"]

    def _paused(self, ev: dict[str, Any]) -> None:
        self.runs[ev["workflow"]].status = "paused"

    def _resumed(self, ev: dict[str, Any]) -> None:
        self.runs[ev["workflow"]].status = "running"

    def _finished(self, ev: dict[str, Any]) -> None:
        run = self.runs[ev["workflow"]]
        run.status, run.error, run.finished = ev["status"], ev["error"], ev["ts"]
        for task in run.open:
            self.tasks.pop(task, None)
        run.open.clear()
        run.timers.clear()
        run.waiting.clear()

    # -- digest and snapshots --------------------------------------------------------------

    def dump(self) -> list[dict[str, Any]]:
        """Every run as JSON data, in start order."""
        return [run.dump() for run in self.runs.values()]

    def load(self, runs: list[Any]) -> None:
        """Restore from :meth:`dump` output read back from a snapshot (untrusted: every
        field is checked; raises ValueError naming what is wrong)."""
        for d in runs:
            if type(d) is not dict or set(d) != {"id", "definition", "context", "status",
                                                 "started", "finished", "error", "steps"}:
                raise ValueError("a workflow run is not the expected map")
            wf = parse_definition(d["definition"])
            if (type(d["id"]) is not str or d["id"] in self.runs
                    or type(d["context"]) is not dict or d["status"] not in RUN_STATUSES
                    or type(d["started"]) is not int or type(d["steps"]) is not dict):
                raise ValueError(f"workflow run {d['id']!r:.80} has a field of the wrong kind")
            run = Run(d["id"], wf, d["definition"], d["context"], d["started"])
            run.status, run.finished, run.error = d["status"], d["finished"], d["error"]
            for path, rec in d["steps"].items():
                if (type(rec) is not dict or rec.get("status") not in STEP_STATUSES
                        or type(rec.get("started")) is not int):
                    raise ValueError(f"step {path!r:.80} of workflow {run.id!r} is malformed")
                run.steps[path] = rec
                task, wake = rec.get("task"), rec.get("wake")
                if rec["status"] == "running" and run.status not in FINISHED:
                    if task is not None:
                        if type(task) is not str or task in self.tasks:
                            raise ValueError(f"step {path!r:.80} names a bad or shared task")
                        run.open[task] = path
                        self.tasks[task] = run.id
                    if wake is not None:
                        if type(wake) is not int:
                            raise ValueError(f"step {path!r:.80} has a bad wake time")
                        run.timers[path] = wake
                    if "wake" in rec:
                        run.waiting.add(path)
            self.runs[run.id] = run
