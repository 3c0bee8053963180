"""Read-only SQL over a projection, and :class:`Table`, the result every reader returns.

>>> import duckdb
>>> t = run_query(duckdb.connect(), "SELECT 1 AS a, 'x' AS b")
>>> t.columns, t.rows, t.to_dicts()
(['a', 'b'], [(1, 'x')], [{'a': 1, 'b': 'x'}])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import duckdb

from .errors import ProjectionError, QueryNotAllowedError

__all__ = ["Table", "run_query", "check_read_only"]

# The statement types a read-only query may be: a SELECT (with FROM-first, VALUES, DESCRIBE,
# SHOW and SUMMARIZE, which DuckDB parses as SELECT) or an EXPLAIN of one.
_READ_TYPES = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})


@dataclasses.dataclass(frozen=True)
class Table:
    """A query result: column names and rows (tuples of Python values)."""

    columns: list[str]
    rows: list[tuple[Any, ...]]

    def to_dicts(self) -> list[dict[str, Any]]:
        """The rows as dicts keyed by column name."""
        return [dict(zip(self.columns, row)) for row in self.rows]

    def column(self, name: str) -> list[Any]:
        """The values of one column.

        >>> Table(["a"], [(1,), (2,)]).column("a")
        [1, 2]
        """
        i = self.columns.index(name)
        return [row[i] for row in self.rows]

    def __len__(self) -> int:
        return len(self.rows)


def sql_error(err: duckdb.Error, what: str = "SQL error") -> str:
    """DuckDB's whole message (the candidate bindings and the position included)."""
    text = str(err).strip()
    return f"{what}: {text or type(err).__name__}"


def check_read_only(sql: str) -> None:
    """Refuse anything but one ``SELECT`` (or ``EXPLAIN``) statement.

    Raises:
        QueryNotAllowedError: several statements, or one that is not a query (a ``COMMIT``,
            ``DROP``, ``DELETE``, ``COPY ... TO``, ``ATTACH``, ``SET``, ...).
        ProjectionError: an empty statement, or SQL that does not parse.

    >>> check_read_only("SELECT 1")
    >>> try:
    ...     check_read_only("COMMIT; DROP TABLE tasks")
    ... except QueryNotAllowedError as err:
    ...     print(err)
    the query has 2 statements; run one read-only SELECT at a time
    """
    if not isinstance(sql, str) or not sql.strip():
        raise ProjectionError("the SQL query is empty; pass a statement such as "
                              "\"SELECT * FROM tasks LIMIT 10\"")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as err:
        raise ProjectionError(sql_error(err)) from err
    if len(statements) != 1:
        raise QueryNotAllowedError(f"the query has {len(statements)} statements; run one "
                                   "read-only SELECT at a time")
    kind = statements[0].type
    if kind not in _READ_TYPES:
        raise QueryNotAllowedError(
            f"the statement is a {kind.name} statement, and queries of the projection are "
            "read-only: only SELECT (and EXPLAIN) may run; the projection is rebuilt from the "
            "log, so change the kernel's state through the kernel, and export a result with "
            "`eskernel sql DIR QUERY --out FILE`")


def run_query(con: Any, sql: str, params: Sequence[Any] | None = None) -> Table:
    """Run one read-only ``sql`` statement on ``con``, in a transaction that is rolled back.

    Raises:
        QueryNotAllowedError: not a single SELECT / EXPLAIN statement (nothing runs).
        ProjectionError: the SQL is invalid or fails (DuckDB's whole message); an empty
            statement.
    """
    check_read_only(sql)
    try:
        con.execute("BEGIN TRANSACTION")
    except duckdb.Error as err:  # pragma: no cover - only inside a failed transaction
        raise ProjectionError(f"cannot start a read transaction: {err}") from err
    try:
        cur = con.execute(sql, params)
        if cur.description is None:
            return Table([], [])
        columns = [d[0] for d in cur.description]
        return Table(columns, cur.fetchall())
    except duckdb.Error as err:
        raise ProjectionError(sql_error(err)) from err
    finally:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:
            pass
