"""DuckDB projections of eskernel's event log: how fast, how busy, what happened — in SQL.

:class:`Projection` ingests the log incrementally into the ``events``, ``tasks``,
``attempts``, ``agents`` and ``queues`` tables and defines the ``throughput``, ``latency``,
``agent_utilization``, ``queue_utilization`` and ``failures`` views (see
:mod:`eskernel.analytics.schema`).  :func:`build_report` renders the standard report (the
semantic audit of a log, :func:`eskernel.verify.verify_log`, is in the kernel layer).

>>> import eskernel.analytics as analytics
>>> sorted(analytics.__all__)[:2]
['Projection', 'ProjectionError']
"""

from .errors import ProjectionError as ProjectionError, QueryNotAllowedError as QueryNotAllowedError
from .projection import Projection as Projection
from .query import Table as Table
from .report import Report as Report, build_report as build_report

__all__ = ["Projection", "ProjectionError", "QueryNotAllowedError", "Report", "Table",
           "build_report"]
