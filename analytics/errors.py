"""Errors of the analytics layer.

Every failure of a projection (bad SQL, an unreadable database file, a log record that is not
an eskernel event) surfaces as :class:`ProjectionError`, a branch of eskernel's root
:class:`~eskernel.eventlog.errors.EskernelError`.  DuckDB's own exceptions never cross the public API:
they are chained as ``__cause__``.

>>> from eskernel.eventlog.errors import EskernelError
>>> issubclass(ProjectionError, EskernelError)
True
"""

from __future__ import annotations

from eskernel.eventlog.errors import EskernelError

__all__ = ["ProjectionError", "QueryNotAllowedError"]


class ProjectionError(EskernelError):
    """A projection could not ingest, query or export; the message names what and why."""


class QueryNotAllowedError(ProjectionError, ValueError):
    """A query of the projection that is not one read-only ``SELECT``: it is refused before
    it runs, so the projection is unchanged and no file is written."""
