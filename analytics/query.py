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

from .errors import ProjectionError

__all__ = ["Table", "run_query"]


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


def run_query(con: Any, sql: str, params: Sequence[Any] | None = None) -> Table:
    """Run ``sql`` on ``con`` inside a transaction that is rolled back; return a Table.

    Raises:
        ProjectionError: the SQL is invalid or fails (DuckDB's message, first line); an
            empty statement.
    """
    if not isinstance(sql, str) or not sql.strip():
        raise ProjectionError("the SQL query is empty; pass a statement such as "
                              "\"SELECT * FROM tasks LIMIT 10\"")
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
        text = str(err).strip().splitlines()
        raise ProjectionError(f"SQL error: {text[0] if text else type(err).__name__}"
                              ) from err
    finally:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:
            pass
