"""The operator's commands of ``eskernel``: submit, cancel, requeue, pause / resume a queue,
take an agent offline / online, and tail the log.

A command that changes the state opens the directory as its writer (``Kernel.open`` with
``create=False``): it writes its events, syncs them and closes.  While another process holds
the directory (a program running the kernel) the command is refused, naming that process;
run the operation through that program instead.  ``tail`` only reads, so it works while the
kernel runs.
"""

from __future__ import annotations

import contextlib
import json
from time import sleep as _sleep
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from ._format import emit, ns_time, seconds_fields, table_from_dicts
from ..errors import InvalidSpecError

__all__ = ["OPERATIONS"]

_DIR = click.argument("directory", metavar="DIR", type=click.Path())


def _existing(directory: str) -> Path:
    p = Path(directory)
    if not p.is_dir():
        raise InvalidSpecError(f"{directory} is not a kernel directory; pass the directory "
                               "a program opened with Kernel.open (try `eskernel demo` to "
                               "make one)")
    return p


@contextlib.contextmanager
def _writer(directory: str) -> Iterator[Any]:
    """The directory's kernel, opened as its writer; events are synced on the way out."""
    from .._kernel import Kernel
    with Kernel.open(_existing(directory), create=False, durability="fsync",
                     snapshot_every=0) as k:
        yield k


def _json_arg(value: str | None, what: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError as err:
        raise InvalidSpecError(f"{what} {value!r} is not JSON ({err}); quote it for the "
                               "shell, e.g. --payload '{\"frame\": 7}'") from None


def _done(rows: list[dict[str, Any]], fmt_json: bool, text: str) -> None:
    if fmt_json:
        emit(table_from_dicts(rows), "json")
    else:
        click.echo(text)


# -- submit, cancel, requeue -------------------------------------------------------------

@click.command()
@_DIR
@click.argument("queue")
@click.option("--payload", default=None, metavar="JSON", help="The task's payload (JSON).")
@click.option("--id", "task_id", default=None, help="The task's id [default: generated].")
@click.option("--name", default=None, help="The task's name (selects its handler).")
@click.option("--priority", type=int, default=2, show_default=True,
              help="0-1000, higher first (LOW=1 ... CRITICAL=5).")
@click.option("--depends-on", "depends_on", multiple=True, metavar="TASK",
              help="A task that must complete first (repeat for several).")
@click.option("--max-attempts", type=int, default=3, show_default=True)
@click.option("--timeout", type=float, default=30.0, show_default=True,
              help="Seconds an attempt may run without a heartbeat.")
@click.option("--delay", type=float, default=None, help="Run no earlier than in SECONDS.")
@click.option("--key", default=None, help="Idempotency key: the same key and spec give "
                                          "the same task.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def submit(directory: str, queue: str, payload: str | None, task_id: str | None,
           name: str | None, priority: int, depends_on: tuple[str, ...], max_attempts: int,
           timeout: float, delay: float | None, key: str | None, as_json: bool) -> None:
    """Submit a task to QUEUE and print its id (needs the directory's writer lock)."""
    body = _json_arg(payload, "--payload")
    with _writer(directory) as k:
        tid = k.submit(queue, body, id=task_id, name=name, priority=priority,
                       depends_on=list(depends_on), max_attempts=max_attempts,
                       timeout=timeout, delay=delay, key=key)
        status = k.task(tid).status
    _done([{"task": tid, "queue": queue, "status": status}], as_json, tid)


@click.command()
@_DIR
@click.argument("task")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def cancel(directory: str, task: str, as_json: bool) -> None:
    """Cancel TASK and its unfinished dependents (a running attempt's lease is revoked)."""
    with _writer(directory) as k:
        ids = k.cancel(task)
    more = f" and {len(ids) - 1} dependent task(s): {' '.join(ids[1:])}" if len(ids) > 1 else ""
    _done([{"task": t, "status": "CANCELLED"} for t in ids], as_json,
          f"cancelled {task}{more}")


@click.command()
@_DIR
@click.argument("task", required=False)
@click.option("--queue", default=None, help="Requeue every dead letter (FAILED task) of QUEUE.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def requeue(directory: str, task: str | None, queue: str | None, as_json: bool) -> None:
    """Bring a FAILED (dead-lettered) TASK back to READY with fresh attempts, or every dead
    letter of a queue with --queue."""
    if (task is None) == (queue is None):
        raise InvalidSpecError("pass one TASK, or --queue QUEUE for all its dead letters")
    with _writer(directory) as k:
        if task is not None:
            ids = [task]
            k.requeue(task)
        else:
            k.stats()                      # nothing below writes until every id is known
            ids = [v.id for v in k.tasks(status="FAILED", queue=queue)]
            for tid in ids:
                k.requeue(tid)
    _done([{"task": t, "status": "READY"} for t in ids], as_json,
          f"requeued {len(ids)} task(s)" + (f": {' '.join(ids[:20])}" if ids else "")
          + (" ..." if len(ids) > 20 else ""))


# -- queues and agents ---------------------------------------------------------------------

@click.command()
@_DIR
@click.argument("queue")
def pause(directory: str, queue: str) -> None:
    """Pause QUEUE: nothing more is claimed from it; running attempts finish."""
    with _writer(directory) as k:
        k.pause_queue(queue)
    click.echo(f"paused queue {queue}")


@click.command()
@_DIR
@click.argument("queue")
def resume(directory: str, queue: str) -> None:
    """Resume a paused QUEUE."""
    with _writer(directory) as k:
        k.resume_queue(queue)
    click.echo(f"resumed queue {queue}")


@click.command()
@_DIR
@click.argument("state", type=click.Choice(["offline", "online"]))
@click.argument("agent_id", metavar="AGENT")
def agent(directory: str, state: str, agent_id: str) -> None:
    """Take AGENT offline (it claims nothing; its leases run until they end) or online."""
    with _writer(directory) as k:
        (k.agent_offline if state == "offline" else k.agent_online)(agent_id)
    click.echo(f"agent {agent_id} is {state}")


# -- tail ----------------------------------------------------------------------------------

def _queues_of_tasks(reader: Any, upto: int) -> dict[str, str]:
    # Task -> queue from every submitted event (a byte search in C, then decode the hits).
    from ..events import decode
    out = {}
    for _, rec in reader.read_containing(b'"t":"submitted"', 0, upto):
        ev = decode(rec)
        out[ev["task"]] = ev["queue"]
    return out


@click.command()
@_DIR
@click.option("--queue", default=None, help="Only events of this queue (its tasks' too).")
@click.option("--task", default=None, help="Only events of this task.")
@click.option("--type", "types", multiple=True, metavar="TYPE",
              help="Only events of this type (repeat for several): submitted, claimed, "
                   "completed, failed, expired, cancelled, ...")
@click.option("--last", "last", type=click.IntRange(0, None), default=10, show_default=True,
              help="Start with the last N events of the log.")
@click.option("--follow/--no-follow", default=True, show_default=True,
              help="Keep printing new events as they are appended.")
@click.option("--count", type=click.IntRange(1, None), default=None,
              help="Stop after printing this many events.")
@click.option("--interval", type=click.FloatRange(0.01, 60), default=0.2, show_default=True,
              help="Seconds between polls of the log.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per line (times in seconds since the epoch).")
def tail(directory: str, queue: str | None, task: str | None, types: tuple[str, ...],
         last: int, follow: bool, count: int | None, interval: float, as_json: bool) -> None:
    """Print the log's events as they are appended (Ctrl-C to stop); reads without a lock."""
    from eskernel.eventlog import EventLog

    from ..events import EVENT_TYPES, decode
    unknown = sorted(set(types) - set(EVENT_TYPES))
    if unknown:
        raise InvalidSpecError(f"--type {', '.join(unknown)} is not an event type; the types "
                               f"are {', '.join(EVENT_TYPES)}")
    wanted = set(types)
    printed = 0
    with EventLog.open_readonly(_existing(directory)) as reader:
        end = reader.next_offset
        pos = max(0, end - last)
        queues = _queues_of_tasks(reader, pos) if queue is not None else {}
        while True:
            end = reader.next_offset
            while pos < end:
                batch = reader.read_batch(pos, min(4096, end - pos))
                for rec in batch:
                    ev = decode(rec)
                    ev["offset"] = pos
                    pos += 1
                    if ev["t"] == "submitted":
                        queues[ev["task"]] = ev["queue"]
                    of_task = ev.get("task")
                    if (task is not None and of_task != task) or (
                            wanted and ev["t"] not in wanted) or (
                            queue is not None and ev.get("queue", queues.get(of_task or ""))
                            != queue):
                        continue
                    click.echo(_line(ev, as_json))
                    printed += 1
                    if count is not None and printed >= count:
                        return
            if not follow:
                return
            _sleep(interval)


def _line(ev: dict[str, Any], as_json: bool) -> str:
    shown = seconds_fields(ev)
    shown.pop("v", None)
    if as_json:
        return json.dumps(shown, default=str)
    skip = ("t", "ts", "offset", "task", "payload", "result")
    detail = " ".join(f"{k}={v}" for k, v in shown.items()
                      if k not in skip and v not in (None, []))
    return (f"{ev['offset']:>8}  {ns_time(ev['ts'])}  {ev['t']:<16} "
            f"{ev.get('task') or ''}  {detail}").rstrip()


OPERATIONS = (submit, cancel, requeue, pause, resume, agent, tail)
