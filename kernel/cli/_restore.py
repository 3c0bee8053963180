"""``eskernel restore DSN DIR``: write a log replicated to PostgreSQL into a directory.

Every other command (``replay``, ``verify``, ``status``, ``sql``...) then reads DIR as any
log; ``Kernel.open(DIR, replicate=DSN)`` makes it a leader again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click


def command(guard: Callable[..., Any]) -> click.Command:
    """The ``restore`` command, its failures reported through ``guard``."""

    @click.command()
    @click.argument("dsn")
    @click.argument("directory", metavar="DIR", type=click.Path())
    @click.option("--partition", type=click.IntRange(0, 2**31 - 1), default=0,
                  show_default=True, help="The chain to restore.")
    @guard
    def restore(dsn: str, directory: str, partition: int) -> None:
        """Write the log replicated to PostgreSQL (DSN: 'postgresql://...' or
        'host=... dbname=...') into DIR: a new directory, or a log the chain extends."""
        from eskernel.replication import restore as restore_log

        p = Path(directory)
        if p.exists() and not p.is_dir():
            raise click.ClickException(f"{directory} is not a directory; pass a new "
                                       "directory or a log directory to extend")
        n = restore_log(dsn, p, partition=partition)
        click.echo(f"restored {n} records of partition {partition} into {directory}")

    return restore
