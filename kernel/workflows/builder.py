"""The fluent builder of workflow definitions.

Every ``add_*`` call declares one step by name.  Group steps (parallel, sequential,
conditional branches, loop bodies) name their children; a named child is placed inside the
group and leaves the root sequence, which holds the steps no group names, in the order they
were added.  :meth:`WorkflowBuilder.build` resolves the names into the tree and checks it:
a group that contains itself (directly or through other groups), a step placed in two
groups, an unknown name, or any problem :func:`~.model.check_definition` finds raises a
:class:`~eskernel.WorkflowSpecError` subclass.  Building writes nothing.
"""

from __future__ import annotations

from typing import Any

from .._validate import show
from ..errors import (MissingMaxIterationsError, WorkflowCycleError, WorkflowSpecError,
                      DuplicateStepError)
from .model import Condition, Workflow, parse_definition

__all__ = ["WorkflowBuilder", "condition"]

_NO_DEFAULT = object()


def condition(field: str, op: str = "equals", value: Any = None, *,
              default: Any = _NO_DEFAULT) -> Condition:
    """A :class:`Condition` on context ``field``; ``default`` is used when it is absent.

    >>> condition("tests", "==", "passed", default="unknown").holds({})
    False
    """
    if type(field) is not str or type(op) is not str:
        raise WorkflowSpecError(f"a condition takes a field and an operator as strings, got "
                                f"{show(field)} and {show(op)}")
    if default is _NO_DEFAULT:
        return Condition(field=field, op=op, value=value)
    return Condition(field=field, op=op, value=value, default=default, has_default=True)


def _cond(c: Any, where: str) -> Condition:
    if isinstance(c, Condition):
        return c
    if isinstance(c, (tuple, list)) and 2 <= len(c) <= 3:
        return condition(*c)
    if isinstance(c, dict):
        c = dict(c)
        default = c.pop("default", _NO_DEFAULT)
        if set(c) - {"field", "op", "value"} or "field" not in c:
            raise WorkflowSpecError(f"{where}: a condition dict has keys field, op, value "
                                    f"and default, got {sorted(c)}")
        return condition(c["field"], c.get("op", "equals"), c.get("value"), default=default)
    raise WorkflowSpecError(f"{where}: condition {show(c)} is not a Condition, a "
                            "(field, op, value) tuple or a dict")


class WorkflowBuilder:
    """Builds a :class:`~eskernel.workflows.Workflow` step by step.

    >>> wf = (WorkflowBuilder("ci", context={"approved": False})
    ...       .add_task_step("build", queue="ci")
    ...       .add_task_step("unit", queue="ci").add_task_step("lint", queue="ci")
    ...       .add_parallel_step("checks", ["unit", "lint"])
    ...       .add_wait_step("approval", condition=("approved", "==", True), timeout=3600)
    ...       .build())
    >>> [s.name for s in wf.steps]
    ['build', 'checks', 'approval']
    """

    def __init__(self, name: str, context: dict[str, Any] | None = None) -> None:
        self._name = name
        self._context = dict(context) if context is not None else {}
        self._steps: dict[str, dict[str, Any]] = {}       # name -> fields (children by name)
        self._groups: dict[str, list[str]] = {}           # name -> every child it names

    def _add(self, name: str, fields: dict[str, Any], kids: list[str] | None = None) -> None:
        if type(name) is not str:
            raise WorkflowSpecError(f"a step name must be a str, got {show(name)}")
        if name in self._steps:
            raise DuplicateStepError(f"a step named {name!r} was already added; pick another "
                                     "name")
        self._steps[name] = dict(fields, name=name)
        if kids is not None:
            self._groups[name] = kids

    @staticmethod
    def _names(steps: Any, where: str) -> list[str]:
        if isinstance(steps, str) or not isinstance(steps, (list, tuple)) or \
                any(type(s) is not str for s in steps):
            raise WorkflowSpecError(f"{where}: steps must be a list of step names, got "
                                    f"{show(steps)}")
        return list(steps)

    def add_task_step(self, name: str, queue: str, payload: Any = None, *,
                      inputs: dict[str, str] | None = None,
                      outputs: dict[str, str] | None = None, priority: int = 2,
                      max_attempts: int = 3, timeout: float = 30.0,
                      on_failure: str = "fail", retries: int = 0) -> "WorkflowBuilder":
        """A task on ``queue``.  ``inputs``: payload key -> context field (read when the
        step starts); ``outputs``: context field -> dotted path in the result (default: the
        whole result under the step's name).  ``on_failure``: "fail" (the workflow fails),
        "continue", or "retry" (a new task, up to ``retries`` times)."""
        self._add(name, {"kind": "task", "queue": queue, "payload": payload,
                         "inputs": inputs or {}, "outputs": outputs, "priority": priority,
                         "max_attempts": max_attempts, "timeout": timeout,
                         "on_failure": on_failure, "retries": retries})
        return self

    def add_parallel_step(self, name: str, steps: list[str]) -> "WorkflowBuilder":
        """A group whose named steps start together; over when all of them are."""
        self._add(name, {"kind": "parallel"}, self._names(steps, f"step {name!r}"))
        self._steps[name]["steps"] = self._groups[name]
        return self

    def add_sequential_step(self, name: str, steps: list[str]) -> "WorkflowBuilder":
        """A group whose named steps run one after the other."""
        self._add(name, {"kind": "sequential"}, self._names(steps, f"step {name!r}"))
        self._steps[name]["steps"] = self._groups[name]
        return self

    def add_conditional_step(self, name: str, condition: Any, then: list[str],
                             otherwise: list[str] | None = None) -> "WorkflowBuilder":
        """Runs the ``then`` steps when ``condition`` holds as the step starts, else the
        ``otherwise`` steps.  ``condition``: a :func:`condition`, a ``(field, op, value)``
        tuple or a dict."""
        where = f"step {name!r}"
        t, o = self._names(then, where), self._names(otherwise or [], where)
        self._add(name, {"kind": "conditional", "condition": _cond(condition, where),
                         "then": t, "otherwise": o}, t + o)
        return self

    def add_loop_step(self, name: str, condition: Any, body: list[str], *,
                      max_iterations: int | None = None) -> "WorkflowBuilder":
        """Runs ``body`` while ``condition`` holds (checked before each iteration), at most
        ``max_iterations`` times (required)."""
        where = f"step {name!r}"
        if max_iterations is None:
            raise MissingMaxIterationsError(f"{where} is a loop without max_iterations; every "
                                            "loop needs a bound (e.g. max_iterations=10)")
        b = self._names(body, where)
        self._add(name, {"kind": "loop", "condition": _cond(condition, where), "body": b,
                         "max_iterations": max_iterations}, b)
        return self

    def add_wait_step(self, name: str, seconds: float | None = None, *,
                      condition: Any = None, timeout: float | None = None,
                      on_failure: str = "fail") -> "WorkflowBuilder":
        """Waits ``seconds``, or until ``condition`` holds (a :meth:`Kernel.signal` or a
        result sets the field); a condition wait fails after ``timeout`` seconds."""
        where = f"step {name!r}"
        self._add(name, {"kind": "wait", "seconds": seconds, "timeout": timeout,
                         "on_failure": on_failure,
                         "condition": None if condition is None else _cond(condition, where)})
        return self

    def build(self) -> Workflow:
        """The checked :class:`Workflow`; raises a :class:`WorkflowSpecError` subclass."""
        parent: dict[str, str] = {}
        for group, kids in self._groups.items():
            for kid in kids:
                if kid not in self._steps:
                    raise WorkflowSpecError(f"step {group!r} names step {kid!r}, which was "
                                            "never added; add it or fix the name")
                if kid == group:
                    raise WorkflowCycleError(f"step {group!r} contains itself")
                if kid in parent:
                    raise WorkflowCycleError(
                        f"step {kid!r} is placed in both {parent[kid]!r} and {group!r}; a "
                        "step has one place (add a second step under another name)")
                parent[kid] = group
        for name in self._steps:                 # follow parents: a loop back is a cycle
            seen, at = [name], name
            while at in parent:
                at = parent[at]
                if at in seen:
                    chain = " -> ".join(seen[seen.index(at):] + [at])
                    raise WorkflowCycleError(f"groups contain each other: {chain}; a group "
                                             "cannot contain itself")
                seen.append(at)
        roots = [n for n in self._steps if n not in parent]
        data = {"name": self._name, "context": self._context,
                "steps": [self._tree(n) for n in roots]}
        return parse_definition(data)

    def _tree(self, name: str) -> dict[str, Any]:
        fields = dict(self._steps[name])
        for key in ("steps", "then", "otherwise", "body"):
            if key in fields:
                fields[key] = [self._tree(k) for k in fields[key]]
        if isinstance(fields.get("condition"), Condition):
            fields["condition"] = fields["condition"].model_dump()
        return fields

