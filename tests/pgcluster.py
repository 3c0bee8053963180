"""A throwaway PostgreSQL cluster for tests and benchmarks: initdb into a temporary directory,
the server listening on a Unix socket in that directory only, stopped by pid and removed.

Run as root, the cluster belongs to the ``postgres`` user (initdb refuses root); run as
anyone else, it belongs to that user.  ``find_bin`` looks on PATH, then in Debian's
``/usr/lib/postgresql/*/bin``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

#: Longest wait for the server to accept connections or to exit.
START_TIMEOUT_S = 60.0


def find_bin(name: str) -> str | None:
    """The path of PostgreSQL program ``name``, or None when PostgreSQL is not installed."""
    for pattern in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        path = os.path.join(pattern, name)
        if os.access(path, os.X_OK):
            return path
    return shutil.which(name)


class PgCluster:
    """One cluster: ``start()``, ``stop()`` (fast shutdown), ``close()`` (stop and
    remove).  ``dsn`` names the Unix socket."""

    def __init__(self) -> None:
        initdb, self._postgres = find_bin("initdb"), find_bin("postgres")
        if initdb is None or self._postgres is None:
            raise RuntimeError("PostgreSQL is not installed (no initdb/postgres on PATH or in "
                               "/usr/lib/postgresql/*/bin); install the 'postgresql' package")
        self._user = "postgres" if os.geteuid() == 0 else None
        self.dir = Path(tempfile.mkdtemp(prefix="eskernel-pg-"))
        if self._user is not None:
            pw = pwd.getpwnam(self._user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.data = self.dir / "data"
        self.port = 5432
        cmd = [initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync",
               "-E", "UTF8", "--locale=C"]
        subprocess.run(cmd, check=True, capture_output=True, timeout=START_TIMEOUT_S,
                       user=self._user)
        self.dsn = f"host={self.dir} port={self.port} user=postgres dbname=postgres"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.proc is None, "already running"
        log = open(self.dir / "server.log", "ab")
        self.proc = subprocess.Popen(
            [self._postgres, "-D", str(self.data), "-k", str(self.dir), "-p", str(self.port),
             "-c", "listen_addresses=", "-c", "fsync=on", "-c", "synchronous_commit=on",
             "-c", "max_connections=100"],
            stdout=log, stderr=log, user=self._user, start_new_session=True)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        import psycopg
        while True:
            try:
                psycopg.connect(self.dsn, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("PostgreSQL did not start: "
                                       + (self.dir / "server.log").read_text()[-2000:])
                time.sleep(0.05)

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster, by pid): clients are disconnected."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)
            try:
                proc.wait(START_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(START_TIMEOUT_S)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
