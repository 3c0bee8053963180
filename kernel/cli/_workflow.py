"""``eskernel workflow DIR ID``: a workflow's status, context and per-step timeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._format import emit_sections, ns_time, table_from_dicts

_INFO = ("branch", "iteration", "iterations", "attempt", "reason", "error")


def show_workflow(directory: Path, workflow_id: str, fmt: str) -> None:
    """Replay the log at ``directory`` (no lock) and print run ``workflow_id``."""
    from .._kernel import Kernel
    from .._validate import check_id
    check_id(workflow_id, "workflow")
    k = Kernel.replay(directory)
    try:
        run = k.workflow(workflow_id)
        plan = k.plan(workflow_id)
    finally:
        k.close()
    summary: dict[str, Any] = {
        "workflow": run["id"], "status": run["status"], "started": ns_time(run["started"]),
        "finished": ns_time(run["finished"]), "error": run["error"],
        "next": ", ".join(plan["next"]) or "-"}
    if run["finished"] is not None:
        summary["took (s)"] = round((run["finished"] - run["started"]) / 1e9, 3)
    steps = []
    # A stable sort: steps that started at one time stay in the order they started.
    for path, rec in sorted(run["steps"].items(), key=lambda kv: kv[1]["started"]):
        end = rec.get("finished")
        steps.append({
            "step": path, "status": rec["status"], "task": rec.get("task"),
            "started": ns_time(rec["started"]), "finished": ns_time(end),
            "took (s)": round((end - rec["started"]) / 1e9, 3) if end is not None else None,
            "detail": ", ".join(f"{key}={rec[key]}" for key in _INFO
                                if rec.get(key) is not None)})
    context = {key: value for key, value in sorted(run["context"].items())}
    emit_sections({"summary": summary, "context": context,
                   "steps": table_from_dicts(steps, ["step", "status", "task", "started",
                                                     "finished", "took (s)", "detail"])},
                  fmt, {"summary": f"Workflow {workflow_id!r}", "context": "Context",
                        "steps": "Steps (timeline)"})
