"""Output for the CLI: readable tables by default, ``--json`` and ``--csv`` for scripts, and
progress bars that appear only on a terminal."""

from __future__ import annotations

import contextlib
import csv
import datetime
import io
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import click

from eskernel.analytics.query import Table
from eskernel.analytics.report import format_table

__all__ = ["emit", "emit_sections", "progress", "ns_time", "seconds_fields", "table_from_dicts"]

# Fields of the log's events held in ns, and how the API states them: times since the epoch
# and durations both in seconds.
_NS_FIELDS = ("ts", "retry_at", "expires", "not_before", "timeout")


def seconds_fields(ev: dict[str, Any]) -> dict[str, Any]:
    """An event with its ns times and durations in seconds (``backoff``'s too).

    >>> seconds_fields({"t": "submitted", "ts": 1_500_000_000, "timeout": 30_000_000_000,
    ...                 "backoff": {"initial": 10**9, "factor": 2.0, "max": 6 * 10**10}})
    {'t': 'submitted', 'ts': 1.5, 'timeout': 30.0, 'backoff': {'initial': 1.0, 'factor': 2.0, 'max': 60.0}}
    """
    out = dict(ev)
    for key in _NS_FIELDS:
        if isinstance(out.get(key), int) and not isinstance(out[key], bool):
            out[key] = out[key] / 1e9
    bo = out.get("backoff")
    if isinstance(bo, dict):
        out["backoff"] = {k: (v / 1e9 if k in ("initial", "max") and isinstance(v, int) else v)
                          for k, v in bo.items()}
    return out


def ns_time(ns: int | None) -> str | None:
    """Integer ns since the epoch -> ``YYYY-MM-DD HH:MM:SS.mmm`` (UTC)."""
    if ns is None:
        return None
    dt = datetime.datetime.fromtimestamp(ns / 1e9, datetime.timezone.utc)
    return dt.strftime("%Y-%m-%d %H:%M:%S.") + f"{dt.microsecond // 1000:03d}"


def table_from_dicts(rows: list[dict[str, Any]], columns: list[str] | None = None) -> Table:
    """A Table from row dicts (columns: the given ones, else the first row's keys)."""
    cols = columns if columns is not None else (list(rows[0]) if rows else [])
    return Table(cols, [tuple(r.get(c) for c in cols) for r in rows])


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)


def _rows_json(t: Table) -> list[dict[str, Any]]:
    return [{k: _jsonable(v) for k, v in r.items()} for r in t.to_dicts()]


def _csv(t: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(t.columns)
    for row in t.rows:
        w.writerow([json.dumps(_jsonable(v)) if isinstance(v, (list, dict, tuple)) else
                    ("" if v is None else v) for v in row])
    return buf.getvalue()


def emit(table: Table, fmt: str, *, title: str | None = None) -> None:
    """Print one table as text (default), JSON (a list of objects) or CSV."""
    if fmt == "json":
        click.echo(json.dumps(_rows_json(table), indent=2))
    elif fmt == "csv":
        click.echo(_csv(table), nl=False)
    else:
        if title:
            click.echo(title)
        click.echo(format_table(table))


def emit_sections(sections: Mapping[str, Table | Mapping[str, Any]], fmt: str,
                  titles: Mapping[str, str] | None = None, *, table: str | None = None) -> None:
    """Print several sections: text blocks or one JSON object; or the one section ``table``.

    A section is a Table, or a dict shown as a two-column what/value table.  CSV holds one
    table, so it needs ``table`` unless there is only one section.

    Raises:
        ValueError: ``table`` names no section, or CSV of several sections.
    """
    tables = {name: (s if isinstance(s, Table) else
                     Table(["what", "value"], [(k, v) for k, v in s.items()]))
              for name, s in sections.items()}
    if table is None and fmt == "csv" and len(tables) > 1:
        raise ValueError(f"CSV holds one table: pass --table NAME, one of {', '.join(tables)} "
                         "(or use --json for all of them)")
    if table is not None:
        if table not in tables:
            raise ValueError(f"--table {table!r} is not a table of this command; pass one of "
                             f"{', '.join(tables)}")
        emit(tables[table], fmt, title=(titles or {}).get(table, table))
        return
    if fmt == "json":
        out = {name: (_jsonable(dict(s)) if not isinstance(s, Table) else _rows_json(s))
               for name, s in sections.items()}
        click.echo(json.dumps(out, indent=2))
    elif fmt == "csv":
        click.echo(_csv(next(iter(tables.values()))), nl=False)
    else:
        blocks = [f"{(titles or {}).get(name, name)}\n{format_table(t)}"
                  for name, t in tables.items()]
        click.echo("\n\n".join(blocks))


@contextlib.contextmanager
def progress(label: str, enabled: bool | None = None) -> Iterator[Callable[[int, int], None]]:
    """A ``callback(done, total)`` that drives a progress bar on stderr when it is a
    terminal (or ``enabled``); a no-op otherwise."""
    show = sys.stderr.isatty() if enabled is None else enabled
    if not show:
        yield lambda done, total: None
        return
    bars: list[Any] = []        # the bar, made at the first call (when the total is known)
    shown = [0]

    def update(done: int, total: int) -> None:
        if not bars:
            bars.append(click.progressbar(length=max(total, 1), label=label,
                                          file=sys.stderr))
            bars[0].__enter__()
        bars[0].update(max(0, done - shown[0]))
        shown[0] = done

    try:
        yield update
    finally:
        if bars:
            bars[0].__exit__(None, None, None)
