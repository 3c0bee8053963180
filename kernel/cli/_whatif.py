"""``eskernel whatif``: re-run a recorded history under other settings and compare."""

from __future__ import annotations

import datetime
from pathlib import Path

import click

from eskernel.eventlog.errors import EskernelError

from ..errors import InvalidSpecError

__all__ = ["whatif"]


def _when(value: str | None, first_s: float, what: str) -> float | None:
    """``--from`` / ``--until``: seconds after the log's first event (``300``), an epoch
    time (``@1700000300``) or an ISO-8601 time (UTC when it names no zone)."""
    if value is None:
        return None
    v = value.strip()
    try:
        if v.startswith("@"):
            return float(v[1:])
        return first_s + float(v)
    except ValueError:
        pass
    try:
        dt = datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidSpecError(
            f"--{what} {value!r} is neither seconds after the log's start (e.g. 300), an "
            "epoch time (e.g. @1700000300) nor an ISO time (e.g. 2023-11-14T22:15:00)"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return dt.timestamp()


def _first_s(directory: Path) -> float:
    from eskernel.eventlog import EventLog

    from .. import events
    with EventLog.open_readonly(directory) as log:
        first = log.read_batch(0, 1)
    return float(events.decode(first[0])["ts"]) / 1e9 if first else 0.0


@click.command("whatif")
@click.argument("directory", metavar="DIR", type=click.Path())
@click.option("--set", "changes", multiple=True, metavar="KEY=VALUE",
              help="A change, e.g. queue.encode.max_concurrent=8, agent.gpu-3=capabilities:"
                   "render,capacity:2, agent.gpu-1.capacity=4, queue.render.paused=false, "
                   "task.render.priority=HIGH.  Repeatable.")
@click.option("--from", "from_", metavar="TIME", default=None,
              help="Measure tasks submitted from TIME (seconds after the log's start, "
                   "@epoch or ISO-8601).")
@click.option("--until", metavar="TIME", default=None,
              help="Measure (and simulate) tasks submitted until TIME.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False), default=None,
              help="Also write an HTML page with charts to this file.")
@click.option("--save", "save_dir", type=click.Path(file_okay=False), default=None,
              help="Write the alternative's log to this new directory (a kernel directory "
                   "`eskernel report` loads).")
def whatif(directory: str, changes: tuple[str, ...], from_: str | None, until: str | None,
           as_json: bool, html_file: str | None, save_dir: str | None) -> None:
    """Re-run the history recorded in DIR with changed settings, side by side.

    The recorded run times and outcomes are replayed against the real scheduler in virtual
    time; DIR is only read.  With no --set, the result shows how closely the model
    reproduces the recording.
    """
    from . import CliError, _log_dir, _one_line
    from ..whatif import whatif as run
    from ._format import progress
    try:
        path = _log_dir(directory)
        first = _first_s(path) if (from_ or until) else 0.0
        window = (_when(from_, first, "from"), _when(until, first, "until"))
        with progress("simulating"):
            result = run(path, list(changes), window if any(w is not None for w in window)
                         else None)
        if save_dir is not None:
            result.save(save_dir)
        if html_file is not None:
            Path(html_file).write_text(result.to_html(), encoding="utf-8")
    except click.ClickException:
        raise
    except (EskernelError, OSError, ValueError) as err:
        raise CliError(_one_line(err)) from err
    if as_json:
        click.echo(result.to_json())
        return
    click.echo(result.to_text(), nl=False)
    if save_dir is not None:
        click.echo(f"wrote the alternative's log to {save_dir} (try: eskernel report "
                   f"{save_dir})")
    if html_file is not None:
        click.echo(f"wrote {html_file}")
