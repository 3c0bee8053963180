"""Fixtures of the service tests: short socket paths (a Unix socket path is limited to
about 100 bytes) removed after the test."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest


@pytest.fixture
def sockdir():
    d = Path(tempfile.mkdtemp(prefix="esk", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)
