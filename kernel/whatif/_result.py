"""A what-if result: the baseline and the alternative side by side, as text, JSON or HTML,
and the alternative's log written out as a kernel directory."""

from __future__ import annotations

import dataclasses
import datetime
import html
import os
from pathlib import Path
from typing import Any

from .. import events
from ..errors import InvalidSpecError

__all__ = ["WhatIfResult"]

MEASURES = ("wait", "run", "e2e")
_PCT = ("p50", "p95", "p99")
LIMITS = (
    "Run times and outcomes are the recorded ones: each attempt is assumed to take as long "
    "and end the same way whatever the policy (agent speed, contention and load are not "
    "modelled).",
    "Agents claim as soon as they have a free slot and a queue they serve has work; the "
    "recording's claim delays (polling, network) are not reproduced.",
    "An attempt's outcome belongs to the task's k-th claim, not to the agent that ran it "
    "(a hang caused by one agent moves with the task).",
    "Commands from outside (submissions, cancellations, requeues, pauses, agents going "
    "offline) happen at their recorded times, whatever state they find.",
)
_FLAG_TEXT = {
    "retried_after_timeout": "retried after a lease expired (the retry's timing depended on "
                             "the expiry)",
    "cancelled_mid_run": "cancelled while running (the attempt's end is unknown)",
    "still_running_at_end": "still running at the end of the log (run time unknown)",
    "released": "released by the handler (a decision that may depend on what else ran)",
    "unobserved_attempt": "claimed more often than recorded: extra attempts assumed to "
                          "complete in the queue's median run time",
    "rejected_at_submission": "refused at submission in the alternative (an upstream task "
                              "failed or was cancelled earlier)",
    "cancel_found_task_finished": "finished in the alternative before their recorded "
                                  "cancellation",
    "requeue_found_task_not_failed": "not dead-lettered in the alternative when the recorded "
                                     "requeue came",
}


def _s(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def _diff(a: Any, b: Any) -> str:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return ""
    d = b - a
    pct = f" ({d / a * 100:+.0f}%)" if a else ""
    return (f"{d:+.3f}" if isinstance(d, float) else f"{d:+d}") + pct


def _table(columns: list[str], rows: list[list[Any]]) -> str:
    cells = [columns] + [[_s(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                       enumerate(zip(r, widths))) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@dataclasses.dataclass
class WhatIfResult:
    """The outcome of :func:`eskernel.whatif.whatif`.

    Attributes:
        path: the recorded directory.
        changes: the changes as given (``key=value``).
        window: (from, until) in ns since the epoch, either None.
        baseline: the recorded history's measures (see ``eskernel.whatif._metrics``).
        alternative: the simulated history's measures, same keys.
        flags: reason -> task ids whose behaviour the model can only approximate.
        limits: the model's assumptions, as sentences.
        recorded_events / simulated_events: log lengths.
    """

    path: str
    changes: list[str]
    window: tuple[int | None, int | None]
    baseline: dict[str, Any]
    alternative: dict[str, Any]
    flags: dict[str, list[str]]
    limits: tuple[str, ...]
    recorded_events: int
    simulated_events: int
    records: list[bytes] = dataclasses.field(repr=False)

    # -- views ------------------------------------------------------------------------------

    def overview(self) -> list[list[Any]]:
        """Rows ``[measure, baseline, alternative, change]`` for the whole workload."""
        b, a = self.baseline, self.alternative
        gb, ga = b.get("groups", {}).get("all", {}), a.get("groups", {}).get("all", {})
        rows: list[list[Any]] = []
        for key in ("tasks", "completed", "dead_letters", "cancelled", "unfinished"):
            rows.append([key, gb.get(key), ga.get(key), _diff(gb.get(key), ga.get(key))])
        for key in ("makespan_s", "throughput_per_s"):
            rows.append([key, b.get(key), a.get(key), _diff(b.get(key), a.get(key))])
        for m in MEASURES:
            for p in _PCT:
                k = f"{m}_{p}"
                rows.append([f"{k}_s", gb.get(k), ga.get(k), _diff(gb.get(k), ga.get(k))])
        db, da = _dag_stats(b), _dag_stats(a)
        for k in db:
            rows.append([k, db[k], da[k], _diff(db[k], da[k])])
        return rows

    def groups(self, prefix: str) -> list[list[Any]]:
        """Rows ``[group, measure, baseline, alternative, change]`` by queue or priority."""
        gb, ga = self.baseline.get("groups", {}), self.alternative.get("groups", {})
        keys = sorted({k for k in (*gb, *ga) if k.startswith(prefix + ":")},
                      key=lambda k: (len(k), k))
        rows: list[list[Any]] = []
        for key in keys:
            xb, xa = gb.get(key, {}), ga.get(key, {})
            for m in ("tasks", "dead_letters", *(f"{m}_{p}" for m in ("wait", "e2e")
                                                for p in _PCT), "run_p50"):
                rows.append([key.split(":", 1)[1], m, xb.get(m), xa.get(m),
                             _diff(xb.get(m), xa.get(m))])
        return rows

    def utilization(self, key: str) -> list[list[Any]]:
        """Rows ``[name, baseline, alternative, change]`` for agent_utilization/queue_busy."""
        ub, ua = self.baseline.get(key, {}), self.alternative.get(key, {})
        return [[n, ub.get(n), ua.get(n), _diff(ub.get(n), ua.get(n))]
                for n in sorted({*ub, *ua})]

    def dag_changes(self, limit: int = 10) -> list[list[Any]]:
        """Rows ``[dag, tasks, baseline, alternative, change]`` (makespans in seconds) of
        the ``limit`` DAGs whose makespan changed most; a DAG is named by its first task."""
        alt = {d["dag"]: d for d in self.alternative.get("dags", [])}
        rows = []
        for d in self.baseline.get("dags", []):
            a = alt.get(d["dag"], {}).get("makespan_s")
            b = d["makespan_s"]
            key = abs(a - b) if a is not None and b is not None else float("inf")
            rows.append((key, [d["dag"], d["tasks"], b, a, _diff(b, a)]))
        rows.sort(key=lambda r: -r[0])
        return [r for _, r in rows[:limit]]

    def flag_lines(self) -> list[str]:
        """One line per kind of task the model approximates, with its count."""
        return [f"{len(set(ids))} task(s) {_FLAG_TEXT.get(k, k)}"
                for k, ids in self.flags.items() if ids]

    # -- formats ----------------------------------------------------------------------------

    def to_text(self) -> str:
        """The comparison as readable tables."""
        lo, hi = self.window
        head = [f"What-if on {self.path}: {self.recorded_events} events recorded, "
                f"{self.simulated_events} simulated",
                "changes: " + ("; ".join(self.changes) or "none (the model re-simulated)"),
                f"window: tasks submitted from {_when(lo)} until {_when(hi)}"]
        out = ["\n".join(head), "",
               "Overall (seconds; change = alternative - baseline)",
               _table(["measure", "baseline", "alternative", "change"], self.overview()), "",
               "By queue",
               _table(["queue", "measure", "baseline", "alternative", "change"],
                      self.groups("queue")), "",
               "By priority",
               _table(["priority", "measure", "baseline", "alternative", "change"],
                      self.groups("priority")), "",
               "Utilization by agent (leased time / capacity x makespan)",
               _table(["agent", "baseline", "alternative", "change"],
                      self.utilization("agent_utilization")), "",
               "Busy slots by queue (mean tasks running)",
               _table(["queue", "baseline", "alternative", "change"],
                      self.utilization("queue_busy")), ""]
        dags = self.dag_changes()
        if dags:
            out += [f"DAGs whose makespan changed most (of {len(self.baseline['dags'])}; "
                    "all in --json)",
                    _table(["dag", "tasks", "baseline", "alternative", "change"], dags), ""]
        out += ["Limits of this comparison"]
        out += [f"  - {line}" for line in (*self.limits, *self.flag_lines())]
        return "\n".join(out) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON-able data."""
        return {"path": self.path, "changes": self.changes,
                "window": {"from": self.window[0], "until": self.window[1]},
                "recorded_events": self.recorded_events,
                "simulated_events": self.simulated_events,
                "baseline": self.baseline, "alternative": self.alternative,
                "flags": {k: sorted(set(v)) for k, v in self.flags.items()},
                "limits": list(self.limits) + self.flag_lines()}

    def to_json(self) -> str:
        """:meth:`to_dict` as a JSON document."""
        return events.dumps(self.to_dict()).decode()

    def to_html(self) -> str:
        """A self-contained HTML page with charts (inline SVG) and every table."""
        from eskernel.analytics.html import _CSS, _legend, bar_chart

        def table(columns: list[str], rows: list[list[Any]]) -> str:
            head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
            body = "".join("<tr>" + "".join(f"<td>{html.escape(_s(c))}</td>" for c in r)
                           + "</tr>" for r in rows)
            return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

        gb, ga = self.baseline.get("groups", {}), self.alternative.get("groups", {})
        queues = sorted(k.split(":", 1)[1] for k in {*gb, *ga} if k.startswith("queue:"))
        parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>eskernel what-if"
                 f"</title><style>{_CSS}</style></head><body><h1>What-if: "
                 f"{html.escape('; '.join(self.changes) or 'no change')}</h1>",
                 f"<p>{html.escape(self.path)}: {self.recorded_events} events recorded, "
                 f"{self.simulated_events} simulated.</p>",
                 table(["measure", "baseline", "alternative", "change"], self.overview())]
        for m, title in (("e2e", "End-to-end"), ("wait", "Wait")):
            for p in ("p50", "p95"):
                parts += [f"<h2>{title} {p} by queue (seconds)</h2>",
                          _legend(["baseline", "alternative"]),
                          bar_chart(queues, {
                              "baseline": [gb.get(f"queue:{q}", {}).get(f"{m}_{p}") or 0.0
                                           for q in queues],
                              "alternative": [ga.get(f"queue:{q}", {}).get(f"{m}_{p}") or 0.0
                                              for q in queues]}, unit=" s")]
        util = self.utilization("agent_utilization")
        parts += ["<h2>Utilization by agent</h2>", _legend(["baseline", "alternative"]),
                  bar_chart([r[0] for r in util], {"baseline": [r[1] or 0.0 for r in util],
                                                   "alternative": [r[2] or 0.0 for r in util]})]
        parts += ["<h2>By queue</h2>",
                  table(["queue", "measure", "baseline", "alternative", "change"],
                        self.groups("queue")),
                  "<h2>By priority</h2>",
                  table(["priority", "measure", "baseline", "alternative", "change"],
                        self.groups("priority")),
                  "<h2>Busy slots by queue</h2>",
                  table(["queue", "baseline", "alternative", "change"],
                        self.utilization("queue_busy")),
                  "<h2>DAGs whose makespan changed most (seconds)</h2>",
                  table(["dag", "tasks", "baseline", "alternative", "change"],
                        self.dag_changes(25)),
                  "<h2>Limits of this comparison</h2><ul>"]
        parts += [f"<li>{html.escape(x)}</li>" for x in (*self.limits, *self.flag_lines())]
        parts.append("</ul></body></html>")
        return "\n".join(parts)

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the alternative's log as a kernel directory (new or empty), which
        ``Kernel.open``, ``eskernel report`` and the analytics projection load.

        Raises:
            InvalidSpecError: ``directory`` exists and is not an empty directory.
        """
        from eskernel.eventlog import EventLog
        path = Path(directory)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise InvalidSpecError(f"{path} exists and is not an empty directory; pass a new "
                                   "or empty directory for the alternative's log")
        if str(path.resolve()) == str(Path(self.path).resolve()):
            raise InvalidSpecError("--save names the recorded directory; pass another one")
        path.mkdir(parents=True, exist_ok=True)
        with EventLog.open(path, durability="write") as log:
            for i in range(0, len(self.records), 8192):
                log.append_many(self.records[i:i + 8192])
        return path


def _dag_stats(m: dict[str, Any]) -> dict[str, Any]:
    from ._metrics import percentile
    dags = m.get("dags", [])
    spans = sorted(d["makespan_s"] for d in dags if d["makespan_s"] is not None)
    return {"dags": len(dags), "dags_unfinished": sum(d["makespan_s"] is None for d in dags),
            "dag_makespan_p50_s": percentile(spans, 0.5),
            "dag_makespan_p95_s": percentile(spans, 0.95),
            "dag_makespan_max_s": spans[-1] if spans else None}


def _when(ns: int | None) -> str:
    if ns is None:
        return "-"
    return datetime.datetime.fromtimestamp(ns / 1e9, datetime.timezone.utc).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")
