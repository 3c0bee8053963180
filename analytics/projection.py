"""The :class:`Projection`: a DuckDB database kept in step with an event log.

It opens the log read-only (no lock: it works while a live kernel in another process
writes it) and a DuckDB database, in memory or in a file (by convention
``<log dir>/analytics.duckdb``).  :meth:`Projection.refresh` ingests what is new since the
last ingested offset; the rows and the new offset commit in one transaction, so a crash
mid-ingest never double-counts.  :meth:`Projection.follow` keeps refreshing as the log grows.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import duckdb

from eskernel.eventlog import EventLog, JsonParts

from .errors import ProjectionError
from .ingest import first_bad_record, ingest_files, reset
from .query import Table, check_read_only, run_query, sql_error
from .schema import LAYOUT_VERSION, SCHEMA_VERSION, create_schema, drop_schema

__all__ = ["Projection", "DEFAULT_DB_NAME", "DEFAULT_CHUNK"]

DEFAULT_DB_NAME = "analytics.duckdb"
DEFAULT_CHUNK = 2_000_000

Progress = Callable[[int, int], None]


def _duck(err: duckdb.Error, what: str) -> ProjectionError:
    return ProjectionError(sql_error(err, what))


def _locked(err: BaseException | None) -> bool:
    # DuckDB's file lock: one read-write process, or any number of read-only ones.
    return isinstance(err, duckdb.IOException) and "lock" in str(err).lower()


class Projection:
    """A DuckDB projection of the event log in directory ``log_path``.

    Args:
        log_path: the log directory (a kernel's directory).
        db: ``None`` or ``":memory:"`` for an in-memory database, else a file path (created
            if missing; ``Projection.default_db(log_path)`` is the conventional one).
        threads: DuckDB worker threads (default: DuckDB's, one per core).
        read_only: open an existing database file read-only, with file access and the
            configuration locked: any number of processes may read it at once, but
            :meth:`refresh` and :meth:`export` are refused (see :meth:`open_reader`).

    Raises:
        LogNotFoundError: no event log at ``log_path``.
        ProjectionError: the database cannot be opened (e.g. another process has it open).

    >>> import tempfile
    >>> from eskernel.eventlog import EventLog
    >>> d = tempfile.mkdtemp()
    >>> with EventLog.open(d) as log:
    ...     _ = log.append(b'{"v":1,"t":"queue_declared","ts":5,"queue":"q",'
    ...                    b'"max_concurrent":2,"paused":false}')
    >>> with Projection(d) as p:
    ...     p.refresh(), p.query("SELECT queue, max_concurrent FROM queues").rows
    (1, [('q', 2)])
    """

    def __init__(self, log_path: str | os.PathLike[str], db: str | os.PathLike[str] | None = None,
                 *, threads: int | None = None, read_only: bool = False) -> None:
        self.log_path = Path(log_path)
        self._lock = threading.RLock()
        self.db_path = None if db is None or str(db) == ":memory:" else Path(db)
        self.read_only = bool(read_only)
        if self.read_only and (self.db_path is None or not self.db_path.is_file()):
            raise ProjectionError(f"cannot open the projection database {self.db_path} "
                                  "read-only: it does not exist; refresh it first (any "
                                  "`eskernel sql` or `eskernel report` on the directory does)")
        self._reader = EventLog.open_readonly(self.log_path)
        try:
            if self.read_only:
                self._con = duckdb.connect(str(self.db_path), read_only=True, config={
                    "enable_external_access": False, "lock_configuration": True,
                    **({"threads": int(threads)} if threads else {})})
            else:
                self._con = duckdb.connect(str(self.db_path) if self.db_path else ":memory:")
        except duckdb.Error as err:
            self._reader.close()
            raise _duck(err, f"cannot open the projection database {self.db_path}; if "
                        "another eskernel command is using it, wait for it or pass another "
                        "--db") from err
        if self.read_only:
            if self._layout() != LAYOUT_VERSION:
                self.close()
                raise ProjectionError(f"the projection database {self.db_path} was built by "
                                      "another version of eskernel; refresh it first")
            return
        try:
            if threads:
                self._con.execute(f"SET threads = {int(threads)}")
            self._con.execute("SET preserve_insertion_order = true")
            # Refreshes commit often; let the WAL absorb them rather than rewriting the
            # database file at every commit (it is checkpointed on close).
            self._con.execute("SET checkpoint_threshold = '1GB'")
            # A new in-memory database holds nothing to check.
            if self.db_path and self._layout() not in (None, LAYOUT_VERSION):
                drop_schema(self._con)   # built by another version: rebuild from the log
            create_schema(self._con)
        except duckdb.Error as err:
            self.close()
            raise _duck(err, f"the projection database {self.db_path} is not usable") from err

    def _layout(self) -> int | None:
        """The layout version recorded in the database: None for a new database, 0 when it
        has tables but no ingest yet (nothing to keep)."""
        if not self._con.execute("SELECT 1 FROM duckdb_tables() WHERE database_name = "
                                 "current_database() AND table_name = 'ingest_state'").fetchall():
            return None
        row = self._con.execute("SELECT schema_version FROM ingest_state").fetchone()
        return 0 if row is None else int(row[0])

    @staticmethod
    def default_db(log_path: str | os.PathLike[str]) -> Path:
        """The conventional database file kept next to the log: ``<log>/analytics.duckdb``.

        >>> str(Projection.default_db("/data/k"))
        '/data/k/analytics.duckdb'
        """
        return Path(log_path) / DEFAULT_DB_NAME

    # -- state ----------------------------------------------------------------------------

    @property
    def next_offset(self) -> int:
        """The offset after the last ingested record (0 for an empty projection)."""
        rows = self._execute("SELECT next_offset FROM ingest_state")
        return 0 if not rows else int(rows[0][0])

    @property
    def log_next_offset(self) -> int:
        """The log's current next offset (rescans its tail)."""
        return self._reader.next_offset

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The underlying DuckDB connection (for power users; errors are DuckDB's own)."""
        return self._con

    def _execute(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        try:
            with self._lock:
                return self._con.execute(sql, params).fetchall()
        except duckdb.Error as err:
            raise _duck(err, "projection query failed") from err

    # -- ingest ---------------------------------------------------------------------------

    def refresh(self, *, progress: Progress | None = None, chunk: int = DEFAULT_CHUNK,
                until: int | None = None) -> int:
        """Ingest the records appended since the last refresh; return how many.

        Works in chunks of ``chunk`` records, each committed with its offset in one
        transaction.  ``progress(done, total)`` is called after each chunk.  ``until``
        stops at that offset (for tests and audits).

        Raises:
            ProjectionError: a record is not an eskernel event (names its offset), or DuckDB
                failed; nothing of the failing chunk is kept.
            LogCorruptError: the log is damaged before its tail.

        Cost: ~1 µs per event for a first ingest (NDJSON export in C, DuckDB's reader,
        the derived tables); a later refresh folds its events into the rows they touch:
        ~40 ms for 1,000 new events on top of a million, most of it fixed per refresh.
        """
        if chunk < 1:
            raise ProjectionError(f"chunk must be >= 1 records, got {chunk}")
        if self.read_only:
            raise ProjectionError("this projection was opened read-only; open it without "
                                  "read_only=True to refresh it")
        with self._lock:
            if self._con is None:
                raise ProjectionError("the projection is closed; open a new one")
            start = self.next_offset
            end = self._reader.next_offset if until is None else min(until,
                                                                      self._reader.next_offset)
            if start > end and until is None:
                # The log is shorter than what we ingested: it was replaced.  Start over.
                self._transaction(lambda: reset(self._con))
                start = 0
            total = max(0, end - start)
            if total == 0:
                return 0
            tmpdir = tempfile.mkdtemp(prefix="eskernel-ingest-")
            try:
                pos = start
                while pos < end:
                    stop = min(end, pos + chunk)
                    export = self._reader.export_json_parts(tmpdir, pos, stop)
                    self._ingest_chunk(export, pos, stop)
                    for path in export.paths:
                        os.unlink(path)
                    pos = stop
                    if progress is not None:
                        progress(pos - start, total)
            finally:
                shutil.rmtree(tmpdir, ignore_errors=True)
            return total

    def _transaction(self, body: Callable[[], Any]) -> Any:
        # Runs body in one transaction: committed unless it raises or returns False.
        try:
            self._con.execute("BEGIN TRANSACTION")
            try:
                result = body()
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            if result is False:
                self._con.execute("ROLLBACK")
            else:
                self._con.execute("COMMIT")
            return result
        except duckdb.Error as err:
            raise _duck(err, f"ingesting the log {self.log_path} failed") from err

    def _ingest_chunk(self, export: JsonParts, start: int, end: int) -> None:
        if self._transaction(lambda: ingest_files(self._con, export, start, end)):
            return
        try:
            bad = first_bad_record(self._con, export)
        except duckdb.Error as err:
            raise _duck(err, f"reading the log {self.log_path} failed") from err
        offset, what = bad if bad is not None else (f"{start}..{end - 1}", "unreadable")
        raise ProjectionError(
            f"record {offset} of the log {self.log_path} is not an eskernel event "
            f"({what}); this tool reads schema v{SCHEMA_VERSION} logs written by "
            "eskernel's Kernel")

    def follow(self, *, interval: float = 0.5, stop: threading.Event | None = None,
               idle_timeout: float | None = None,
               on_refresh: Callable[[int], None] | None = None) -> int:
        """Keep refreshing as the log grows; return the total number of records ingested.

        Polls every ``interval`` seconds; ends when ``stop`` is set or after ``idle_timeout``
        seconds with nothing new.  ``on_refresh(n)`` is called after each non-empty refresh.

        >>> import tempfile
        >>> from eskernel.eventlog import EventLog
        >>> d = tempfile.mkdtemp()
        >>> with EventLog.open(d) as log:
        ...     _ = log.append(b'{"v":1,"t":"queue_paused","ts":1,"queue":"q"}')
        >>> with Projection(d) as p:
        ...     p.follow(interval=0.01, idle_timeout=0.05)
        1
        """
        if not interval > 0:
            raise ProjectionError(f"interval must be > 0 seconds, got {interval}")
        total = 0
        idle_since = time.monotonic()
        while stop is None or not stop.is_set():
            n = self.refresh()
            if n:
                total += n
                idle_since = time.monotonic()
                if on_refresh is not None:
                    on_refresh(n)
            elif idle_timeout is not None and time.monotonic() - idle_since >= idle_timeout:
                break
            if stop is not None:
                stop.wait(interval)
            else:
                time.sleep(interval)
        return total

    # -- reading --------------------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] | None = None) -> Table:
        """Run read-only SQL against the projection and return a :class:`Table`.

        Only one ``SELECT`` (or ``EXPLAIN``) statement is accepted; it runs in a transaction
        that is rolled back, so it can never change the projection.

        Raises:
            QueryNotAllowedError: anything but one read-only statement (``COMMIT``,
                ``DELETE``, ``COPY ... TO``, several statements...); nothing runs.
            ProjectionError: bad SQL or a failing query (DuckDB's whole message).
        """
        with self._lock:
            return run_query(self._con, sql, params)

    def export(self, source: str, dest: str | os.PathLike[str],
               fmt: str | None = None) -> Path:
        """Write a table, view or ``SELECT`` query to ``dest`` as Parquet or CSV.

        ``fmt`` is ``"parquet"`` or ``"csv"``; by default it follows the file's suffix.

        Raises:
            QueryNotAllowedError: ``source`` is neither a name nor one ``SELECT`` statement.
            ProjectionError: unknown format, bad query, or the file cannot be written, or
                the projection was opened read-only.

        >>> import tempfile, os
        >>> from eskernel.eventlog import EventLog
        >>> d = tempfile.mkdtemp()
        >>> with EventLog.open(d) as log:
        ...     _ = log.append(b'{"v":1,"t":"queue_paused","ts":1,"queue":"q"}')
        >>> with Projection(d) as p:
        ...     _ = p.refresh()
        ...     p.export("events", os.path.join(d, "ev.csv")).name
        'ev.csv'
        """
        path = Path(dest)
        fmt = (fmt or path.suffix.lstrip(".")).lower()
        if fmt not in ("parquet", "csv"):
            raise ProjectionError(f"cannot export to {str(dest)!r}: format {fmt!r} is not "
                                  "supported; use a .parquet or .csv file (or fmt=)")
        if self.read_only:
            raise ProjectionError("this projection was opened read-only, which cannot write "
                                  "files; query it and write the rows yourself, or export "
                                  "from a projection opened without read_only=True")
        src = source.strip().rstrip(";") if isinstance(source, str) else ""
        if src.isidentifier():
            src = f'SELECT * FROM "{src}"'
        check_read_only(src)
        opts = "FORMAT parquet" if fmt == "parquet" else "FORMAT csv, HEADER true"
        target = "'" + str(path).replace("'", "''") + "'"
        with self._lock:
            try:
                self._con.execute(f"COPY ({src}) TO {target} ({opts})")
            except duckdb.Error as err:
                raise _duck(err, f"exporting {source!r} to {path} failed") from err
        return path

    @classmethod
    def open_reader(cls, log_path: str | os.PathLike[str],
                    db: str | os.PathLike[str] | None = None, *, wait: float = 30.0,
                    progress: Progress | None = None) -> tuple[Projection, int]:
        """Bring the database file up to date, then open it read-only; return it and how
        many events it lags the log (0 unless it could not be refreshed).

        The refresh holds DuckDB's write lock only while it ingests; the queries run on a
        read-only connection, so any number of readers share the file.  While another
        process holds the file, a refresh is retried for up to ``wait`` seconds; when only
        readers hold it and it is still behind the log after that, it is opened read-only
        as it is and the lag is returned for the caller to report.

        Raises:
            ProjectionError: the database cannot be opened (a writer held it for ``wait``
                seconds, or it is not a DuckDB file); ingest errors as :meth:`refresh`.
        """
        target = Path(db) if db is not None else cls.default_db(log_path)
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            try:
                with cls(log_path, target) as writer:
                    writer.refresh(progress=progress)
                break
            except ProjectionError as err:
                if not _locked(err.__cause__) or time.monotonic() >= deadline:
                    if not _locked(err.__cause__):
                        raise
                    # Only readers may hold it: use it as it stands.
                    reader = cls(log_path, target, read_only=True)
                    return reader, max(0, reader.log_next_offset - reader.next_offset)
            try:
                reader = cls(log_path, target, read_only=True)
            except ProjectionError as err:
                if not _locked(err.__cause__):
                    raise
            else:   # other readers hold it: fine when it is already up to date
                if reader.next_offset >= reader.log_next_offset:
                    return reader, 0
                reader.close()
            time.sleep(0.1)
        return cls(log_path, target, read_only=True), 0

    def report(self, *, window_s: float | None = None, bucket_s: int = 60) -> "Any":
        """The standard report (see :func:`eskernel.analytics.report.build_report`)."""
        from .report import build_report
        return build_report(self, window_s=window_s, bucket_s=bucket_s)

    # -- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the database and the log reader (idempotent)."""
        con: duckdb.DuckDBPyConnection | None = getattr(self, "_con", None)
        self._con = None  # type: ignore[assignment]  # closed: the query path checks for None
        if con is not None:
            try:
                con.close()
            except duckdb.Error:  # pragma: no cover - closing never fails in practice
                pass
        self._reader.close()

    def __enter__(self) -> Projection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = str(self.db_path) if self.db_path else ":memory:"
        return f"<Projection log={str(self.log_path)!r} db={where!r}>"

