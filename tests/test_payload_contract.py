"""Payloads, results and tags: what is stored as it is, what is converted (a documented
contract), and what is refused (NaN and infinities, which JSON cannot hold)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import enum
import math
import uuid

import pytest

from eskernel import InvalidSpecError, Kernel, ManualClock, Runtime

from .test_validation import rejects

NON_FINITE = [math.nan, math.inf, -math.inf]


@pytest.fixture
def k(kernel):
    kernel.declare_queue("q")
    kernel.register_agent("w", capabilities=["q"])
    return kernel


@pytest.mark.parametrize("bad", NON_FINITE)
@pytest.mark.parametrize("wrap", [lambda x: x, lambda x: {"a": x}, lambda x: [1, {"b": (2, x)}],
                                  lambda x: {"null": None, "x": [x]}])
def test_non_finite_payload_is_refused(k, bad, wrap):
    payload = wrap(bad)
    e = rejects(k, InvalidSpecError, lambda: k.submit("q", payload=payload))
    assert repr(bad) in str(e)
    rejects(k, InvalidSpecError, lambda: k.submit_many([{"queue": "q", "payload": payload}]))
    rejects(k, InvalidSpecError,
            lambda: k.submit_many([{"queue": "q", "payload": payload, "name": "n"}]))


@pytest.mark.parametrize("bad", NON_FINITE)
def test_non_finite_tags_are_refused(k, bad):
    rejects(k, InvalidSpecError, lambda: k.submit("q", tags={"score": bad}))


@pytest.mark.parametrize("bad", NON_FINITE)
def test_non_finite_result_is_refused(k, bad):
    k.submit("q", id="t")
    lease = k.claim("w")
    rejects(k, InvalidSpecError, lambda: k.complete(lease, result={"score": bad}))
    rejects(k, InvalidSpecError, lambda: k.complete_many([lease], [[bad]]))
    k.complete(lease, result={"score": 1.5})
    assert k.task("t").result == {"score": 1.5}


def test_null_and_the_string_nan_are_stored(k):
    t = k.submit("q", payload={"a": None, "b": "nan", "c": "null", "d": 1e308})
    assert k.task(t).payload == {"a": None, "b": "nan", "c": "null", "d": 1e308}


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    y: int


def test_conversions_are_a_documented_contract(k):
    u = uuid.UUID(int=7)
    when = datetime.datetime(2026, 5, 1, 12, 30, tzinfo=datetime.timezone.utc)
    payload = {"tuple": (1, 2), "uuid": u, "when": when, "naive": datetime.datetime(2026, 5, 1),
               "day": datetime.date(2026, 5, 1), "colour": Colour.RED, "point": Point(1, 2)}
    t = k.submit("q", payload=payload)
    assert k.task(t).payload == {
        "tuple": [1, 2], "uuid": str(u), "when": "2026-05-01T12:30:00+00:00",
        "naive": "2026-05-01T00:00:00", "day": "2026-05-01", "colour": "red",
        "point": {"x": 1, "y": 2}}


def test_a_handler_returning_nan_fails_without_retries():
    k = Kernel.in_memory(clock=ManualClock())
    k.declare_queue("q")
    rt = Runtime(k, agents=[("w", ["q"], 1)])

    @rt.handler("q")
    async def score(payload):
        return {"score": math.nan}

    t = k.submit("q", max_attempts=3)
    asyncio.run(rt.run_until_idle())
    view = k.task(t)
    assert view.status == "FAILED" and view.result is None and view.attempts == 1
    assert "nan" in view.error and "InvalidResultError" in view.error
