"""A deliberately plain reference interpreter of workflow definitions (never imported by
the package), and a strategy of random definitions for it.

``run_reference`` executes a definition (its JSON form) in one recursive pass: every task
step's outcome comes from ``outcome(task_id)`` at once, a time wait always ends, a
condition wait ends at once when its condition holds, else times out (when it has a
timeout) or blocks forever.  It returns the run's final status, context and step statuses,
which a kernel driven to quiescence must reach too.  Conditions are evaluated by its own
plain code, not the package's.
"""

from __future__ import annotations

from typing import Any, Callable

from hypothesis import strategies as st

DONE, BLOCKED, FAILED = "done", "blocked", "failed"
MISSING = object()


def lookup(ctx: Any, field: str) -> Any:
    for part in field.split("."):
        if not isinstance(ctx, dict) or part not in ctx:
            return MISSING
        ctx = ctx[part]
    return ctx


def holds(cond: dict[str, Any], ctx: dict[str, Any]) -> bool:
    v = lookup(ctx, cond["field"])
    op = cond["op"]
    if op == "exists":
        return v is not MISSING
    if v is MISSING:
        if not cond.get("has_default"):
            return False
        v = cond.get("default")
    want = cond.get("value")
    if op == "==":
        return v == want and type(v) is type(want)
    if op == "!=":
        return not (v == want and type(v) is type(want))
    if op == "in":
        return any(v == x and type(v) is type(x) for x in want)
    if not (isinstance(v, int) and isinstance(want, int)):
        return False
    return {"<": v < want, ">": v > want, "<=": v <= want, ">=": v >= want}[op]


def run_reference(defn: dict[str, Any], wf_id: str,
                  outcome: Callable[[str], Any]) -> tuple[str, dict[str, Any], dict[str, str]]:
    """(status, context, {step path: status}) of a run of ``defn`` taken to quiescence."""
    ctx = dict(defn.get("context") or {})
    steps: dict[str, str] = {}

    def seq(items: list[dict[str, Any]], prefix: str) -> str:
        for s in items:
            r = node(s, f"{prefix}/{s['name']}" if prefix else s["name"])
            if r != DONE:
                return r
        return DONE

    def leaf_failed(s: dict[str, Any], path: str) -> str:
        steps[path] = "failed"
        return DONE if s.get("on_failure") == "continue" else FAILED

    def node(s: dict[str, Any], path: str) -> str:
        kind = s["kind"]
        steps[path] = "running"
        if kind == "task":
            attempt = 0
            while True:
                tid = f"{wf_id}/{path}" + (f"+r{attempt}" if attempt else "")
                result = outcome(tid)
                if result is not None:
                    ctx[s["name"]] = result
                    steps[path] = "completed"
                    return DONE
                if s.get("on_failure") == "retry" and attempt < s.get("retries", 0):
                    attempt += 1
                    continue
                return leaf_failed(s, path)
        if kind == "wait":
            if s.get("seconds") is not None or holds(s["condition"], ctx):
                steps[path] = "completed"
                return DONE
            if s.get("timeout") is None:
                return BLOCKED
            return leaf_failed(s, path)
        if kind == "parallel":
            rs = [node(c, f"{path}/{c['name']}") for c in s["steps"]]
            r = FAILED if FAILED in rs else BLOCKED if BLOCKED in rs else DONE
        elif kind == "sequential":
            r = seq(s["steps"], path)
        elif kind == "conditional":
            r = seq(s["then"] if holds(s["condition"], ctx) else s["otherwise"], path)
        else:
            assert kind == "loop"
            n = 0
            r = DONE
            while n < s["max_iterations"] and holds(s["condition"], ctx):
                r = seq(s["body"], f"{path}/{n}")
                if r != DONE:
                    break
                n += 1
        if r == DONE:
            steps[path] = "completed"
        return r

    r = seq(defn["steps"], "")
    status = {DONE: "completed", FAILED: "failed", BLOCKED: "running"}[r]
    return status, ctx, steps


# -- random definitions -----------------------------------------------------------------------

INIT = {"x0": 0, "x1": 1, "x2": "a"}


@st.composite
def definitions(draw: Any, max_depth: int = 3) -> dict[str, Any]:
    """A random valid definition.  Conditions read the initial context or results of tasks
    in earlier root stages (and a loop's own body): never a sibling running beside them, so
    the order in which parallel tasks finish cannot change a decision."""
    counter = [0]

    def name(prefix: str) -> str:
        counter[0] += 1
        return f"{prefix}{counter[0]}"

    def cond(fields: list[str]) -> dict[str, Any]:
        field = draw(st.sampled_from(fields))
        op = draw(st.sampled_from(["==", "!=", "<", ">", "<=", ">=", "in", "exists"]))
        value: Any = draw(st.integers(0, 3)) if op != "in" else draw(
            st.lists(st.integers(0, 3), max_size=3))
        if field == "x2" and op in ("==", "!="):
            value = draw(st.sampled_from(["a", "b"]))
        c: dict[str, Any] = {"field": field, "op": op, "value": value}
        if draw(st.booleans()):
            c.update(default=draw(st.integers(0, 3)), has_default=True)
        return c

    def step(depth: int, fields: list[str], tasks: list[str]) -> dict[str, Any]:
        kinds = ["task", "task", "wait"] + (["parallel", "sequential", "conditional", "loop"]
                                            if depth < max_depth else [])
        kind = draw(st.sampled_from(kinds))
        if kind == "task":
            n = name("t")
            tasks.append(n)
            policy = draw(st.sampled_from(["fail", "continue", "retry"]))
            return {"kind": "task", "name": n, "queue": "q", "max_attempts": 1,
                    "on_failure": policy, "retries": 2 if policy == "retry" else 0}
        if kind == "wait":
            if draw(st.booleans()):
                return {"kind": "wait", "name": name("w"), "seconds": draw(st.integers(1, 50))}
            c = cond(fields)
            c.update(has_default=True, default=c.get("default", 0))
            w = {"kind": "wait", "name": name("w"), "condition": c,
                 "on_failure": draw(st.sampled_from(["fail", "continue"]))}
            if draw(st.integers(0, 4)):
                w["timeout"] = draw(st.integers(1, 100))
            return w
        if kind in ("parallel", "sequential"):
            kids = [step(depth + 1, fields, tasks) for _ in range(draw(st.integers(1, 3)))]
            return {"kind": kind, "name": name(kind[0]), "steps": kids}
        if kind == "conditional":
            c = cond(fields)
            then = [step(depth + 1, fields, tasks) for _ in range(draw(st.integers(1, 2)))]
            other = [step(depth + 1, fields, tasks) for _ in range(draw(st.integers(0, 2)))]
            return {"kind": "conditional", "name": name("c"), "condition": c, "then": then,
                    "otherwise": other}
        body_tasks: list[str] = []
        body = [step(depth + 1, fields, body_tasks) for _ in range(draw(st.integers(1, 2)))]
        tasks.extend(body_tasks)
        own = [f"{t}.v" for t in body_tasks]
        c = cond(fields + own)
        c.update(has_default=True, default=c.get("default", 0))
        return {"kind": "loop", "name": name("l"), "condition": c, "body": body,
                "max_iterations": draw(st.integers(1, 3))}

    fields = list(INIT)
    root = []
    for _ in range(draw(st.integers(1, 4))):
        tasks: list[str] = []
        root.append(step(0, list(fields), tasks))
        fields += [f"{t}.v" for t in tasks]      # visible to later root stages only
    return {"name": "wf", "context": dict(INIT), "steps": root}
