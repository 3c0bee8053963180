"""A throwaway PostgreSQL cluster for the replication tests (one per session), and a fresh
partition of it for each test, so tests never see each other's chains."""

from __future__ import annotations

import itertools

import pytest

from tests.pgcluster import PgCluster, find_bin

_partitions = itertools.count(1)


def _skip_reason() -> str | None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed: pip install 'eskernel[replicate]'"
    if find_bin("initdb") is None:
        return ("PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin):"
                " apt-get install postgresql (.ci/run does)")
    return None


def new_cluster() -> PgCluster:
    """Start a cluster of one's own (for tests that stop and restart it)."""
    reason = _skip_reason()
    if reason is not None:
        pytest.skip(reason)
    cluster = PgCluster()
    try:
        cluster.start()
    except BaseException:
        cluster.close()
        raise
    return cluster


@pytest.fixture(scope="session")
def pg():
    cluster = new_cluster()
    yield cluster
    cluster.close()


@pytest.fixture
def partition(pg):
    return next(_partitions)


#: The longest any test waits for a background thread; past it the test fails, never hangs.
WAIT_BOUND_S = 60.0


def wait_until(predicate, what: str) -> None:
    """Wait for ``predicate()`` to hold (bounded by WAIT_BOUND_S; a failure names ``what``)."""
    import time

    deadline = time.monotonic() + WAIT_BOUND_S
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.01)
