"""Workflow definitions: pydantic models that serialise to JSON (stored in the log as the
``definition`` of a ``workflow_started`` event), and the one validator they go through.

A definition is a tree.  The root is a sequence of steps; a step is one of

* ``task``: one ordinary task (queue, payload, priority, attempts, timeout as usual); its
  result is merged into the workflow context under ``outputs`` (context field -> dotted
  path into the result) or, without ``outputs``, under the step's name;
* ``parallel``: its children start together; it is over when all of them are;
* ``sequential``: its children run one after the other;
* ``conditional``: evaluates its condition once, then runs ``then`` or ``otherwise``;
* ``loop``: while its condition holds (checked before each iteration) runs its body, at most
  ``max_iterations`` times;
* ``wait``: for ``seconds``, or until its condition holds (a signal, a result), failing after
  ``timeout`` seconds when one is given.

Conditions are data (field, operator, value, default), never code: reading a definition from
the log executes nothing.  Invariants :func:`check_definition` establishes: step names are
unique and match :data:`NAME_PATTERN`; groups are non-empty; operators are known; every loop
has ``max_iterations``; every condition's field is provided by something (initial context,
a task step's name or declared output) or has a default.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import (EmptyGroupError, MissingMaxIterationsError, UnknownFieldError,
                      UnknownOperatorError, WorkflowSpecError, DuplicateStepError)
from .._validate import MAX_DURATION_S, show
from ..models import PRIORITY_MAX, PRIORITY_MIN

__all__ = ["Condition", "TaskStep", "ParallelStep", "SequentialStep", "ConditionalStep",
           "LoopStep", "WaitStep", "Step", "Workflow", "OPERATORS", "NAME_PATTERN",
           "check_definition", "parse_definition", "evaluate", "read_path", "step_at"]

#: A step name: letters, digits, ``_`` and ``-`` (``/`` separates a step path's parts).
NAME_PATTERN = re.compile(r"[A-Za-z0-9_\-]{1,64}")
#: Operator spellings accepted, each mapped to its canonical name.
OPERATORS: dict[str, str] = {
    "equals": "equals", "eq": "equals", "==": "equals",
    "not_equals": "not_equals", "ne": "not_equals", "!=": "not_equals",
    "less_than": "less_than", "lt": "less_than", "<": "less_than",
    "greater_than": "greater_than", "gt": "greater_than", ">": "greater_than",
    "less_or_equal": "less_or_equal", "le": "less_or_equal", "<=": "less_or_equal",
    "greater_or_equal": "greater_or_equal", "ge": "greater_or_equal",
    ">=": "greater_or_equal",
    "in": "in", "not_in": "not_in", "exists": "exists",
}
FAILURE_POLICIES = ("fail", "continue", "retry")

_STRICT = ConfigDict(extra="forbid", frozen=True)


class Condition(BaseModel):
    """A test on one context field: ``field`` (a dotted path), ``op`` (see
    :data:`OPERATORS`), ``value``, and ``default``, used when the field is absent if
    ``has_default`` is true (:func:`~eskernel.workflows.condition` sets both).

    >>> Condition(field="tests.status", op="==", value="passed").holds({"tests": {"status": "passed"}})
    True
    """

    model_config = _STRICT
    field: str
    op: str = "equals"
    value: Any = None
    default: Any = None
    has_default: bool = False

    def holds(self, context: dict[str, Any]) -> bool:
        """Whether the condition holds on ``context`` (pure; see :func:`evaluate`)."""
        return evaluate(self, context)


class _StepBase(BaseModel):
    model_config = _STRICT
    name: str


class TaskStep(_StepBase):
    """One task.  ``inputs`` maps payload keys to context fields read when the step starts;
    ``outputs`` maps context fields to dotted paths into the result ("" = all of it)."""

    kind: Literal["task"] = "task"
    queue: str
    payload: Any = None
    inputs: dict[str, str] = Field(default_factory=dict)
    outputs: dict[str, str] | None = None
    priority: int = 2
    max_attempts: int = 3
    timeout: float = 30.0
    on_failure: str = "fail"
    retries: int = 0


class ParallelStep(_StepBase):
    """Children that start together; over when all of them are."""

    kind: Literal["parallel"] = "parallel"
    steps: list["Step"]


class SequentialStep(_StepBase):
    """Children that run one after the other."""

    kind: Literal["sequential"] = "sequential"
    steps: list["Step"]


class ConditionalStep(_StepBase):
    """Runs ``then`` when its condition holds when the step starts, else ``otherwise``."""

    kind: Literal["conditional"] = "conditional"
    condition: Condition
    then: list["Step"]
    otherwise: list["Step"] = Field(default_factory=list)


class LoopStep(_StepBase):
    """Runs ``body`` while ``condition`` holds (checked before each iteration), at most
    ``max_iterations`` times."""

    kind: Literal["loop"] = "loop"
    condition: Condition
    body: list["Step"]
    max_iterations: int | None = None


class WaitStep(_StepBase):
    """Waits ``seconds``, or until ``condition`` holds; after ``timeout`` seconds (when
    given) a condition wait fails, handled by ``on_failure`` ("fail" or "continue")."""

    kind: Literal["wait"] = "wait"
    seconds: float | None = None
    condition: Condition | None = None
    timeout: float | None = None
    on_failure: str = "fail"


Step = Annotated[Union[TaskStep, ParallelStep, SequentialStep, ConditionalStep, LoopStep,
                       WaitStep], Field(discriminator="kind")]


class Workflow(BaseModel):
    """A workflow definition: a name, the initial context and the root sequence of steps.
    Build one with :class:`~eskernel.workflows.WorkflowBuilder`; it round-trips through
    ``model_dump(mode="json")`` and :func:`parse_definition`."""

    model_config = _STRICT
    name: str
    steps: list[Step]
    context: dict[str, Any] = Field(default_factory=dict)


for _m in (ParallelStep, SequentialStep, ConditionalStep, LoopStep, Workflow):
    _m.model_rebuild()


# -- evaluation (pure, deterministic) -----------------------------------------------------

_MISSING = object()


def read_path(data: Any, path: str) -> Any:
    """The value at dotted ``path`` inside ``data`` ("" = ``data``), or a private
    sentinel when absent (test with :func:`is_missing`)."""
    if path == "":
        return data
    for part in path.split("."):
        if type(data) is dict and part in data:
            data = data[part]
        else:
            return _MISSING
    return data


def is_missing(value: Any) -> bool:
    return value is _MISSING


def _compare(op: str, a: Any, b: Any) -> bool:
    # Only numbers with numbers and strings with strings order; anything else is False.
    num = (int, float)
    if not ((type(a) in num and type(b) in num) or (type(a) is str and type(b) is str)):
        return False
    if op == "less_than":
        return bool(a < b)
    if op == "greater_than":
        return bool(a > b)
    if op == "less_or_equal":
        return bool(a <= b)
    return bool(a >= b)


def evaluate(cond: Condition, context: dict[str, Any]) -> bool:
    """Whether ``cond`` holds on ``context``.  A deterministic function of its arguments:
    an absent field reads as ``default`` when the condition has one, else the condition is
    false (``exists``: whether the field is present).  Equality is JSON equality (``1 ==
    1.0``, ``True != 1``); ordering compares numbers with numbers, strings with strings."""
    op = OPERATORS[cond.op]
    v = read_path(context, cond.field)
    if op == "exists":
        return v is not _MISSING
    if v is _MISSING:
        if not cond.has_default:
            return False
        v = cond.default
    if op in ("equals", "not_equals"):
        same = _json_equal(v, cond.value)
        return same if op == "equals" else not same
    if op in ("in", "not_in"):
        inside = type(cond.value) is list and any(_json_equal(v, x) for x in cond.value)
        return inside if op == "in" else not inside
    return _compare(op, v, cond.value)


def _json_equal(a: Any, b: Any) -> bool:
    if type(a) is bool or type(b) is bool:
        return type(a) is type(b) and a == b
    if type(a) is dict and type(b) is dict:
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if type(a) is list and type(b) is list:
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    return bool(a == b)


# -- validation -----------------------------------------------------------------------------

def parse_definition(data: Any) -> Workflow:
    """A :class:`Workflow` from its JSON form (or a Workflow), checked by
    :func:`check_definition`; raises a :class:`WorkflowSpecError` subclass."""
    if isinstance(data, Workflow):
        wf = data
    else:
        try:
            wf = Workflow.model_validate(data)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise WorkflowSpecError(
                f"workflow definition is invalid at {where or 'the top'}: {first['msg']} "
                f"({err.error_count()} problem(s)); fix the definition") from None
    check_definition(wf)
    return wf


def children(step: Any) -> list[Any]:
    """The steps directly inside ``step`` (both branches of a conditional)."""
    if isinstance(step, (ParallelStep, SequentialStep)):
        return list(step.steps)
    if isinstance(step, ConditionalStep):
        return list(step.then) + list(step.otherwise)
    if isinstance(step, LoopStep):
        return list(step.body)
    return []


def walk(steps: list[Any]) -> list[Any]:
    """Every step of the tree, depth first, in definition order."""
    out: list[Any] = []
    for s in steps:
        out.append(s)
        out.extend(walk(children(s)))
    return out


def provided_fields(wf: Workflow) -> set[str]:
    """The top-level context fields something in ``wf`` provides (besides signals)."""
    out = set(wf.context)
    for s in walk(list(wf.steps)):
        if isinstance(s, TaskStep):
            out.update(s.outputs if s.outputs is not None else (s.name,))
    return out


def _check_condition(c: Condition, where: str, known: set[str]) -> None:
    if c.op not in OPERATORS:
        raise UnknownOperatorError(
            f"{where}: operator {show(c.op)} is unknown; use one of "
            f"{', '.join(sorted(set(OPERATORS.values())))} (or ==, !=, <, >, <=, >=)")
    if not c.field or any(not p for p in c.field.split(".")):
        raise WorkflowSpecError(f"{where}: field {show(c.field)} is not a dotted path")
    if OPERATORS[c.op] in ("in", "not_in") and type(c.value) is not list:
        raise WorkflowSpecError(f"{where}: operator {c.op!r} needs a list value, got "
                                f"{show(c.value)}")
    if OPERATORS[c.op] != "exists" and not c.has_default and c.field.split(".")[0] not in known:
        raise UnknownFieldError(
            f"{where}: field {c.field!r} is not in the initial context, not a step's result "
            "and not a declared output; add it to the context, give the condition a "
            "default, or use the 'exists' operator")


def _number(v: Any, lo: float, hi: float) -> bool:
    return (type(v) in (int, float) and math.isfinite(v) and lo < v <= hi)


def check_definition(wf: Workflow) -> None:
    """Check ``wf`` beyond its types; raises a :class:`WorkflowSpecError` subclass naming
    the step and the fix.  Changes nothing."""
    if not NAME_PATTERN.fullmatch(wf.name):
        raise WorkflowSpecError(f"workflow name {show(wf.name)} is invalid: use 1-64 "
                                "characters from A-Z a-z 0-9 _ -")
    if not wf.steps:
        raise EmptyGroupError(f"workflow {wf.name!r} has no steps; add at least one")
    known = provided_fields(wf)
    seen: set[str] = set()
    for s in walk(list(wf.steps)):
        where = f"step {s.name!r}"
        if not NAME_PATTERN.fullmatch(s.name):
            raise WorkflowSpecError(f"step name {show(s.name)} is invalid: use 1-64 "
                                    "characters from A-Z a-z 0-9 _ -")
        if s.name in seen:
            raise DuplicateStepError(f"two steps are named {s.name!r}; rename one")
        seen.add(s.name)
        if isinstance(s, (ParallelStep, SequentialStep)) and not s.steps:
            raise EmptyGroupError(f"{where} is an empty {s.kind} group; give it steps")
        if isinstance(s, ConditionalStep):
            if not s.then:
                raise EmptyGroupError(f"{where} has no 'then' steps; give it at least one")
            _check_condition(s.condition, where, known)
        if isinstance(s, LoopStep):
            if s.max_iterations is None:
                raise MissingMaxIterationsError(
                    f"{where} is a loop without max_iterations; every loop needs a bound "
                    "(e.g. max_iterations=10)")
            if type(s.max_iterations) is not int or not 1 <= s.max_iterations <= 100_000:
                raise WorkflowSpecError(f"{where}: max_iterations must be an int in "
                                        f"[1, 100000], got {show(s.max_iterations)}")
            if not s.body:
                raise EmptyGroupError(f"{where} is a loop with an empty body; give it steps")
            _check_condition(s.condition, where, known)
        if isinstance(s, TaskStep):
            _check_task(s, where)
        if isinstance(s, WaitStep):
            _check_wait(s, where, known)


def _check_task(s: TaskStep, where: str) -> None:
    if not PRIORITY_MIN <= s.priority <= PRIORITY_MAX:
        raise WorkflowSpecError(f"{where}: priority must be in [{PRIORITY_MIN}, "
                                f"{PRIORITY_MAX}], got {s.priority}")
    if not 1 <= s.max_attempts <= 1_000_000:
        raise WorkflowSpecError(f"{where}: max_attempts must be in [1, 1000000], got "
                                f"{s.max_attempts}")
    if not _number(s.timeout, 0, MAX_DURATION_S):
        raise WorkflowSpecError(f"{where}: timeout must be in (0, {MAX_DURATION_S}] seconds, "
                                f"got {show(s.timeout)}")
    if s.on_failure not in FAILURE_POLICIES:
        raise WorkflowSpecError(f"{where}: on_failure {show(s.on_failure)} is unknown; use "
                                "'fail', 'continue' or 'retry'")
    if not 0 <= s.retries <= 1000 or (s.on_failure == "retry") != (s.retries > 0):
        raise WorkflowSpecError(f"{where}: retries must be in [1, 1000] with "
                                "on_failure='retry' and 0 otherwise")
    if s.inputs and s.payload is not None and type(s.payload) is not dict:
        raise WorkflowSpecError(f"{where}: inputs are merged into the payload, which must "
                                f"then be a dict, got {show(s.payload)}")
    for field in s.inputs.values():
        if not field or any(not p for p in field.split(".")):
            raise WorkflowSpecError(f"{where}: input field {show(field)} is not a dotted path")
    for field in (s.outputs or {}):
        if not NAME_PATTERN.fullmatch(field):
            raise WorkflowSpecError(f"{where}: output field {show(field)} is not a valid "
                                    "context field name (A-Z a-z 0-9 _ -)")


def _check_wait(s: WaitStep, where: str, known: set[str]) -> None:
    if (s.seconds is None) == (s.condition is None):
        raise WorkflowSpecError(f"{where}: a wait takes either seconds or a condition, not "
                                "both or neither")
    if s.seconds is not None and not _number(s.seconds, 0, MAX_DURATION_S):
        raise WorkflowSpecError(f"{where}: seconds must be in (0, {MAX_DURATION_S}], got "
                                f"{show(s.seconds)}")
    if s.timeout is not None and (s.condition is None
                                  or not _number(s.timeout, 0, MAX_DURATION_S)):
        raise WorkflowSpecError(f"{where}: timeout applies to a condition wait and must be "
                                f"in (0, {MAX_DURATION_S}] seconds, got {show(s.timeout)}")
    if s.on_failure not in ("fail", "continue"):
        raise WorkflowSpecError(f"{where}: a wait's on_failure is 'fail' or 'continue', got "
                                f"{show(s.on_failure)}")
    if s.condition is not None:
        _check_condition(s.condition, where, known)


def step_at(wf: Workflow, path: str) -> Any:
    """The step a run path names (``a/b``, loop iterations as ``loop/3/child``), or None.

    >>> wf = Workflow(name="w", steps=[LoopStep(name="l", max_iterations=2,
    ...     condition=Condition(field="x", op="exists"), body=[WaitStep(name="z", seconds=1)])])
    >>> step_at(wf, "l/1/z").name, step_at(wf, "l/z")
    ('z', None)
    """
    parts = path.split("/")
    steps: list[Any] = list(wf.steps)
    step: Any = None
    i = 0
    while i < len(parts):
        step = next((s for s in steps if s.name == parts[i]), None)
        if step is None:
            return None
        i += 1
        if isinstance(step, LoopStep) and i < len(parts):
            it = parts[i]
            if not it.isdigit() or str(int(it)) != it or int(it) >= (step.max_iterations or 0):
                return None
            i += 1
        steps = children(step)
    return step
