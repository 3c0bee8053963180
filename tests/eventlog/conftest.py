"""Fixtures shared by the log's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from eskernel.eventlog import _framing


@pytest.fixture(params=["sse4.2", "table"])
def crc_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test with every checksum on one path (the table path forced by the seam)."""
    if request.param == "sse4.2" and not _framing.HW_CRC:
        pytest.skip("this CPU has no SSE4.2")
    was = _framing._force_table_crc(request.param == "table")
    try:
        yield request.param
    finally:
        _framing._force_table_crc(was)
