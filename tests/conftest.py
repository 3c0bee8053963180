"""Shared fixtures and hypothesis profiles.

Profiles (select with ``HYPOTHESIS_PROFILE``): ``dev`` (default) keeps the whole suite fast;
``ci`` runs many more examples.  No test asserts on time, so ``deadline`` is off.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "dev",
    max_examples=30,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "ci",
    max_examples=400,
    stateful_step_count=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

START = 1_700_000_000.0


@pytest.fixture
def manual_clock():
    """A ManualClock at a fixed, round start time (1_700_000_000.0 s)."""
    from eskernel import ManualClock

    return ManualClock(start=START)


@pytest.fixture
def kernel(manual_clock):
    """An in-memory kernel on ``manual_clock``, seed 0."""
    from eskernel import Kernel

    k = Kernel.in_memory(clock=manual_clock, seed=0)
    yield k
    k.close()


@pytest.fixture
def tmp_logdir(tmp_path: Path) -> Path:
    """A fresh, not yet existing directory for a durable kernel's log."""
    return tmp_path / "log"
