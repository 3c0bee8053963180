"""The ``eskernel`` command line.  Each command parses, calls one public function, formats.

Every data command prints a readable table by default and takes ``--json`` / ``--csv``;
errors print one line (``error: ...``) and exit 1, never a traceback.  Run ``eskernel demo``
first: it makes a directory with a realistic log to try every other command on.
"""

from __future__ import annotations

import datetime
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from eskernel.analytics import Projection, ProjectionError
from eskernel.verify import verify_log
from eskernel.analytics.query import Table, check_read_only
from eskernel.analytics.report import TITLES, build_report
from eskernel.eventlog.errors import EskernelError

from .. import events
from .._version import __version__
from . import _bench, _restore, _service
from ._format import (emit, emit_sections, ns_time, progress, seconds_fields,
                      table_from_dicts)

__all__ = ["cli", "main"]



class CliError(click.ClickException):
    """A failure reported as one line on stderr, exit status 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


# The advice of the Python API's messages, as the CLI says it: (phrase, CLI wording).
_CLI_ADVICE = (
    ("check the path, or create the log with EventLog.open",
     "check the path; `eskernel demo DIR` makes a directory to try the commands on"),
    ("check the path, or pass create=True to start a log there",
     "check the path; `eskernel demo DIR` makes a directory to try the commands on"),
    ("use that EventLog or close it first, or open a reader with EventLog.open_readonly",
     "close it first; the read commands (status, history, replay, verify, sql, report, "
     "tail) work while it runs"),
    ("stop that process or open a reader with EventLog.open_readonly",
     "stop that process (or run this command through it); the read commands (status, "
     "history, replay, verify, sql, report, tail) work while it runs"),
    ("check the id (kernel.tasks() lists them)",
     "check the id (`eskernel sql DIR \"SELECT task, status FROM tasks\"` lists them)"),
    ("run eventlog.verify() for a full report", "run `eskernel verify DIR` for a full report"),
    ("call declare_queue({q}) first",
     "queues are declared by the program that runs the kernel (Kernel.declare_queue); "
     "`eskernel status DIR` lists the declared ones"),
    ("call register_agent({q}, ...) first",
     "`eskernel status DIR` lists the registered agents"),
)


def _one_line(err: BaseException) -> str:
    text = " ".join((str(err).strip() or type(err).__name__).split())
    for phrase, cli_words in _CLI_ADVICE:
        if "{q}" in phrase:
            head, _, tail = phrase.partition("{q}")
            start = text.find(head)
            end = text.find(tail, start + len(head)) if start >= 0 else -1
            if start >= 0 and end >= 0:
                text = text[:start] + cli_words + text[end + len(tail):]
        else:
            text = text.replace(phrase, cli_words)
    return text


def _guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn every expected failure into one ``error:`` line and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except click.ClickException:
            raise
        except ProjectionError as err:   # DuckDB's message keeps its lines (candidates...)
            raise CliError("\n  ".join(line.rstrip() for line in str(err).strip().splitlines()
                                        if line.strip()) or type(err).__name__) from err
        except (EskernelError, OSError, ValueError) as err:
            raise CliError(_one_line(err)) from err
        except KeyboardInterrupt:
            raise CliError("interrupted") from None

    return wrapper


def _fmt_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--csv", "as_csv", is_flag=True, help="Print CSV.")(fn)
    fn = click.option("--json", "as_json", is_flag=True, help="Print JSON.")(fn)
    return fn


_TABLE = click.option("--table", "table", default=None, metavar="NAME",
                      help="Print only this table (CSV holds one table per call).")


def _fmt(as_json: bool, as_csv: bool) -> str:
    if as_json and as_csv:
        raise CliError("pass either --json or --csv, not both")
    return "json" if as_json else "csv" if as_csv else "text"


def _log_dir(path: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise CliError(f"directory {path} does not exist; pass a kernel directory (try "
                       "`eskernel demo` to make one)")
    if not p.is_dir():
        raise CliError(f"{path} is not a directory; pass a kernel directory")
    return p


_DIR = click.argument("directory", metavar="DIR", type=click.Path())


def _db_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--memory", is_flag=True,
                      help="Use an in-memory projection (re-ingests the whole log).")(fn)
    fn = click.option("--db", "db", type=click.Path(dir_okay=False), default=None,
                      help="Projection database file [default: DIR/analytics.duckdb].")(fn)
    return fn


def _reader(directory: Path, db: str | None, memory: bool) -> Projection:
    """A projection brought up to date, to query: a database file is refreshed, then opened
    read-only, so readers never lock each other out (``--memory`` ingests in memory)."""
    if memory:
        p = _projection(directory, None, True)
        # Ingested: from here on the in-memory database reads no file, like a read-only one.
        p.connection.execute("SET enable_external_access = false")
        p.connection.execute("SET lock_configuration = true")
        return p
    with progress("ingesting the log") as cb:
        p, behind = Projection.open_reader(directory, db, progress=cb)
    if behind:
        click.echo(f"note: another eskernel command holds the projection {p.db_path}; these "
                   f"results stop {behind} events before the end of the log", err=True)
    return p


def _projection(directory: Path, db: str | None, memory: bool) -> Projection:
    """Open the projection read-write and bring it up to date (progress bar on a terminal)."""
    target = None if memory else (db or Projection.default_db(directory))
    p = Projection(directory, target)
    try:
        with progress("ingesting the log") as cb:
            p.refresh(progress=cb)
    except BaseException:
        p.close()
        raise
    return p


# -- the group ---------------------------------------------------------------------------

@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="eskernel")
def cli() -> None:
    """eskernel: an event-sourced task orchestration kernel.

    New here?  Run `eskernel demo` and follow what it prints.
    """


# -- demo --------------------------------------------------------------------------------

@cli.command()
@click.argument("directory", metavar="[DIR]", type=click.Path(), default="eskernel-demo")
@click.option("--jobs", type=click.IntRange(1, 100_000), default=120, show_default=True,
              help="Pipelines to run (each: ingest -> 3 renders -> encode -> notify).")
@click.option("--seed", type=int, default=7, show_default=True, help="Random seed.")
@_guard
def demo(directory: str, jobs: int, seed: int) -> None:
    """Run a realistic synthetic workload into DIR (default ./eskernel-demo), then report.

    Simulated time (a few seconds of real time): five queues with different limits, agents
    with different capabilities and capacities, DAG pipelines, all five priorities, retries
    with backoff, lease expiries and a cancellation.  Re-running wipes an earlier demo in
    DIR; a non-empty DIR that is not a demo is refused.
    """
    from ._demo import prepare_dir, run_demo
    path = Path(directory)
    try:
        wiped = prepare_dir(path)
    except ValueError as err:
        raise CliError(str(err)) from err
    if wiped:
        click.echo(f"wiped the previous demo in {path}", err=True)
    t0 = time.perf_counter()
    with progress("running the demo workload") as cb:
        result = run_demo(path, jobs=jobs, seed=seed, progress=cb)
    elapsed = time.perf_counter() - t0
    p = _projection(path, None, False)
    try:
        report = build_report(p)
        html_path = path / "report.html"
        html_path.write_text(report.to_html(), encoding="utf-8")
    finally:
        p.close()
    click.echo(report.to_text())
    d = str(path)
    click.echo(
        f"Ran {result.tasks} tasks ({result.events} events, {result.sim_seconds / 60:.0f} "
        f"simulated minutes) in {elapsed:.1f} s.\n"
        f"Files in {path.resolve()}:\n"
        f"  *.seg            the event log (the only source of truth)\n"
        f"  *.snap           a snapshot of the kernel state\n"
        f"  analytics.duckdb the DuckDB projection (tables events, tasks, attempts, agents)\n"
        f"  report.html      this report with charts; open it in a browser\n"
        f"Try next:\n"
        f"  eskernel status {d}\n"
        f"  eskernel history {d} {result.sample_task}\n"
        f"  eskernel replay {d} --until {result.events // 2} --task {result.sample_task}\n"
        f"  eskernel verify {d}\n"
        f"  eskernel sql {d} \"SELECT queue, count(*), avg(wait_ns)/1e9 AS wait_s "
        f"FROM tasks GROUP BY queue\"\n"
        f"  eskernel report {d} --html report.html")


# -- status, history, replay -------------------------------------------------------------

def _stats_sections(k: Any) -> dict[str, Any]:
    stats = k.stats()
    counts = Table(["status", "tasks"], [(s, n) for s, n in stats.counts.items()])
    queues = table_from_dicts(
        [{"queue": q.name, "max_concurrent": q.max_concurrent or "unlimited",
          "paused": q.paused, "ready": q.ready, "running": q.running} for q in stats.queues],
        ["queue", "max_concurrent", "paused", "ready", "running"])
    agents = table_from_dicts(
        [{"agent": a.id, "capabilities": ",".join(a.capabilities), "capacity": a.capacity,
          "online": a.online, "active": a.active,
          "leases": " ".join(f"{x.get('lease_id', x.get('lease'))}:{x.get('task_id', x.get('task'))}"
                             for x in a.leases)} for a in stats.agents],
        ["agent", "capabilities", "capacity", "online", "active", "leases"])
    return {"counts": counts, "queues": queues, "agents": agents}


_STATUS_TITLES = {"summary": "Log", "counts": "Tasks by status", "queues": "Queues",
                  "agents": "Agents and their active leases", "task": "Task"}


@cli.command()
@_DIR
@_fmt_options
@_TABLE
@_guard
def status(directory: str, as_json: bool, as_csv: bool, table: str | None) -> None:
    """System status: counts by status, queue depths and limits, agents and their leases.

    Reads the log without locking it (works while a kernel is running).
    """
    fmt = _fmt(as_json, as_csv)
    from .._kernel import Kernel
    with progress("replaying the log"):
        k = Kernel.replay(_log_dir(directory))
    try:
        sections = {"summary": {"events": k.next_offset, "tasks": k.stats().tasks},
                    **_stats_sections(k)}
    finally:
        k.close()
    emit_sections(sections, fmt, _STATUS_TITLES, table=table)


_DETAIL_KEYS = ("error", "retry_at", "reason", "cause", "expires", "depends_on", "not_before",
                "result", "priority", "queue", "retryable")


def _detail(ev: dict[str, Any]) -> str:
    parts = []
    for key in _DETAIL_KEYS:
        v = ev.get(key)
        if v is None or v == [] or (key == "not_before" and v == 0):
            continue
        if key in ("retry_at", "expires", "not_before"):
            v = ns_time(v)
        parts.append(f"{key}={v}")
    return " ".join(parts)


@cli.command()
@_DIR
@click.argument("task")
@_fmt_options
@_guard
def history(directory: str, task: str, as_json: bool, as_csv: bool) -> None:
    """The full event trail of TASK, in log order.

    With --json, times (ts, retry_at, expires, not_before) are seconds since the epoch and
    durations (timeout, backoff) seconds, as the Python API takes them.
    """
    fmt = _fmt(as_json, as_csv)
    from eskernel.eventlog import EventLog

    from .._records import task_events
    from .._validate import check_id
    from ..errors import UnknownTaskError
    check_id(task, "task")
    # A byte search of the log in C: no replay, so it costs the same with or without
    # snapshots (~0.3 s per 5 M events).  Each event found is checked (types, fields).
    with EventLog.open_readonly(_log_dir(directory)) as log:
        trail = task_events(log, task)
    if not any(ev["t"] == "submitted" for ev in trail):
        raise UnknownTaskError(f"no task {task!r} in the log {directory}; check the id "
                               f"(eskernel sql {directory} \"SELECT task FROM tasks\" lists them)")
    if fmt == "json":
        trail = [seconds_fields(ev) for ev in trail]
        emit(table_from_dicts(trail, sorted({c for e in trail for c in e})), fmt)
        return
    agents: dict[int, tuple[str | None, int | None]] = {}
    rows = []
    for ev in trail:
        if ev["t"] == "claimed":
            agents[ev["lease"]] = (ev["agent"], ev["attempt"])
        agent, attempt = agents.get(ev.get("lease", -1), (None, None))
        rows.append({"offset": ev["offset"], "time": ns_time(ev["ts"]), "event": ev["t"],
                     "agent": ev.get("agent") or agent, "lease": ev.get("lease"),
                     "attempt": ev.get("attempt") or attempt, "detail": _detail(ev)})
    emit(table_from_dicts(rows, ["offset", "time", "event", "agent", "lease", "attempt",
                                 "detail"]), fmt, title=f"History of task {task!r}")


def _parse_until(value: str) -> tuple[int | None, float | None]:
    """``--until``: an offset (integer), ``@<epoch seconds>``, or an ISO-8601 time."""
    v = value.strip()
    if v.isdigit():
        return int(v), None
    if v.startswith("@"):
        try:
            return None, float(v[1:])
        except ValueError:
            pass
    else:
        try:
            dt = datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=datetime.timezone.utc)
            return None, dt.timestamp()
        except ValueError:
            pass
    raise CliError(f"--until {value!r} is neither an offset (e.g. 1200), an epoch time "
                   "(e.g. @1700000300.5) nor an ISO time (e.g. 2023-11-14T22:15:00, UTC)")


@cli.command()
@_DIR
@click.option("--until", "until", metavar="OFFSET|TIME", default=None,
              help="Stop before this offset, or after events at TIME "
                   "(@epoch-seconds or ISO-8601, UTC).")
@click.option("--task", "task", default=None, help="Show this task's state at that point.")
@_fmt_options
@_TABLE
@_guard
def replay(directory: str, until: str | None, task: str | None, as_json: bool,
           as_csv: bool, table: str | None) -> None:
    """Rebuild the state at a point of the log and print it (the audit path)."""
    fmt = _fmt(as_json, as_csv)
    offset, at = _parse_until(until) if until is not None else (None, None)
    from .._kernel import Kernel
    log_dir = _log_dir(directory)
    with progress("replaying the log"):
        k = Kernel.replay(log_dir, until=offset, until_time=at)
    try:
        if task is not None:
            view = k.task(task)
            data = view.model_dump()
            for key in ("submitted_at", "started_at", "finished_at", "due_at", "expires_at"):
                if isinstance(data.get(key), (int, float)) and fmt != "json":
                    data[key] = ns_time(int(data[key] * 1e9))
            sections: dict[str, Any] = {"task": data}
        else:
            sections = {"summary": {"events replayed": k.next_offset,
                                    "until": until or "end of log",
                                    "tasks": k.stats().tasks},
                        **_stats_sections(k)}
    finally:
        k.close()
    emit_sections(sections, fmt, _STATUS_TITLES, table=table)


@cli.command("explain")
@_DIR
@click.argument("task")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_guard
def explain_cmd(directory: str, task: str, as_json: bool) -> None:
    """Why TASK is not running: its dependencies, a delay, a paused or full queue, no
    online agent with room... (read-only; works beside a running writer)."""
    from .._kernel import Kernel
    log_dir = _log_dir(directory)
    with progress("replaying the log"):
        k = Kernel.replay(log_dir)
    try:
        reasons = k.explain(task)
    finally:
        k.close()
    if as_json:
        click.echo(events.dumps({"task": task, "reasons": reasons}).decode())
        return
    for r in reasons:
        click.echo(f"{r['code']:<22} {r['message']}")


# -- verify, snapshot --------------------------------------------------------------------

@cli.command()
@_DIR
@_fmt_options
@_guard
def verify(directory: str, as_json: bool, as_csv: bool) -> None:
    """Check the log's integrity and semantics; exit 0 when clean, 1 at the first violation.

    Integrity: checksums and dense offsets.  Semantics: no task leased twice at once, no
    claim beyond an agent's capacity or a queue's max_concurrent, no dependent claimed before
    its dependencies completed, every lease ends once, snapshots equal the replayed state.
    """
    fmt = _fmt(as_json, as_csv)
    log_dir = _log_dir(directory)
    with progress("verifying the log") as cb:
        result = verify_log(log_dir, progress=cb)
    v = result.violation
    row = {"ok": result.ok, "events": result.events, "segments": result.segments,
           "snapshots_checked": result.snapshots, "torn_tail_bytes": result.torn_tail_bytes,
           "offset": v.offset if v else None, "event": v.event if v else None,
           "rule": v.rule if v else None, "message": v.message if v else None}
    if fmt != "text":
        emit(table_from_dicts([row]), fmt)
    elif v is None:
        click.echo(f"ok: {result.events} events in {result.segments} segment(s), "
                   f"{result.snapshots} snapshot(s) checked; no violation")
        if result.torn_tail_bytes:
            click.echo(f"note: {result.torn_tail_bytes} bytes of torn tail; the next "
                       "writer repairs it")
    else:
        click.echo(f"violation: {v}", err=True)
    if v is not None:
        sys.exit(1)


@cli.command()
@_DIR
@_fmt_options
@_guard
def snapshot(directory: str, as_json: bool, as_csv: bool) -> None:
    """Take a snapshot of the kernel state now (needs the directory's writer lock)."""
    fmt = _fmt(as_json, as_csv)
    from eskernel.eventlog.snapshots import snapshot_path

    from .._kernel import Kernel
    log_dir = _log_dir(directory)
    with Kernel.open(log_dir, snapshot_every=0, create=False) as k:
        offset = k.snapshot()
        digest = k.digest()
    path = snapshot_path(log_dir, offset)
    emit(table_from_dicts([{"offset": offset, "digest": digest, "path": str(path)}]), fmt,
         title="Snapshot written")


# -- sql, report -------------------------------------------------------------------------

@cli.command()
@_DIR
@click.argument("query")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the result to this .parquet or .csv file instead of printing it.")
@_db_options
@_fmt_options
@_guard
def sql(directory: str, query: str, out: str | None, db: str | None, memory: bool,
        as_json: bool, as_csv: bool) -> None:
    """Run one read-only SELECT against the projection (refreshed first); print the result.

    Anything but one SELECT (or EXPLAIN) statement is refused before it runs: the query
    runs on a read-only connection without file access.

    Tables: events, tasks, attempts, agents, queues, task_deps.  Views: throughput, latency,
    agent_utilization, queue_utilization, failures.  Times are ns since the epoch; quote
    the "offset" column.
    """
    fmt = _fmt(as_json, as_csv)
    check_read_only(query)
    if out is not None:
        p = _projection(_log_dir(directory), db, memory)
        try:
            path = p.export(query, out)
        finally:
            p.close()
        click.echo(f"wrote {path}")
        return
    p = _reader(_log_dir(directory), db, memory)
    try:
        result = p.query(query)
    finally:
        p.close()
    emit(result, fmt)


@cli.command()
@_DIR
@click.option("--html", "html_file", type=click.Path(dir_okay=False), default=None,
              help="Also write a self-contained HTML page with charts to this file.")
@click.option("--last", "last", type=float, default=None, metavar="SECONDS",
              help="Only the last SECONDS of the log (e.g. 3600 for a dashboard).")
@click.option("--bucket", type=click.IntRange(1, None), default=60, show_default=True,
              help="Throughput interval in seconds.")
@_db_options
@_fmt_options
@_TABLE
@_guard
def report(directory: str, html_file: str | None, last: float | None, bucket: int,
           db: str | None, memory: bool, as_json: bool, as_csv: bool,
           table: str | None) -> None:
    """Throughput, latency percentiles, utilization and failures."""
    fmt = _fmt(as_json, as_csv)
    p = _reader(_log_dir(directory), db, memory)
    try:
        rep = build_report(p, window_s=last, bucket_s=bucket)
    finally:
        p.close()
    if html_file is not None:
        Path(html_file).write_text(rep.to_html(), encoding="utf-8")
    if table is not None or fmt == "csv":
        emit_sections(rep.sections, fmt, TITLES, table=table)
    elif fmt == "json":
        click.echo(rep.to_json())
    else:
        click.echo(rep.to_text())
        if html_file is not None:
            click.echo(f"wrote {html_file}")


def _add_operations() -> None:
    # The operator's commands (kernel/cli/_ops.py), with this module's error handling.
    from ._ops import OPERATIONS
    for command in OPERATIONS:
        assert command.callback is not None
        command.callback = _guard(command.callback)
        cli.add_command(command)


_add_operations()
cli.add_command(_bench.bench)
for _cmd in (_service.serve, _service.worker):
    _cmd.callback = _guard(_cmd.callback)  # type: ignore[arg-type]
    cli.add_command(_cmd)
cli.add_command(_restore.command(_guard))     # eskernel.replication: restore from PostgreSQL

from ._whatif import whatif as _whatif_command  # noqa: E402  (its module imports this one lazily)
cli.add_command(_whatif_command)


@cli.command("workflow")
@_DIR
@click.argument("workflow_id", metavar="ID")
@_fmt_options
@_guard
def workflow(directory: str, workflow_id: str, as_json: bool, as_csv: bool) -> None:
    """A workflow's status, context and per-step timeline (reads without locking)."""
    from ._workflow import show_workflow
    show_workflow(_log_dir(directory), workflow_id, _fmt(as_json, as_csv))


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``eskernel`` console script."""
    cli.main(args=argv, prog_name="eskernel")

