"""The error hierarchy: one root, stdlib bases where they fit, messages that say what to do."""

import inspect

import pytest

import eskernel as kernel
from eskernel import ManualClock, errors
from eskernel.errors import EskernelError


def _public_error_classes():
    return [getattr(errors, n) for n in errors.__all__]


def test_every_public_error_derives_from_the_root():
    for cls in _public_error_classes():
        assert issubclass(cls, EskernelError), cls
        assert cls.__doc__, f"{cls.__name__} has no docstring"


def test_stdlib_bases_for_caller_mistakes():
    assert issubclass(errors.InvalidSpecError, ValueError)
    assert issubclass(errors.UnknownTaskError, LookupError)
    assert issubclass(errors.UnknownQueueError, LookupError)
    assert issubclass(errors.UnknownAgentError, LookupError)


def test_analytics_and_eventlog_errors_share_the_root():
    import eskernel.eventlog as eventlog
    assert issubclass(eventlog.LogCorruptError, kernel.EskernelError)


def _raise_each():
    k = kernel.Kernel.in_memory(clock=ManualClock())
    k.declare_queue("q", max_concurrent=1)
    k.register_agent("w", ["q"], capacity=1)
    k.submit("q", id="a")
    lease = k.claim("w")
    k.complete(lease)
    calls = [
        lambda: k.submit("nope"),
        lambda: k.submit("q", id="a"),
        lambda: k.submit("q", depends_on=["ghost"]),
        lambda: k.submit("q", priority=5000),
        lambda: k.submit("q", timeout=float("nan")),
        lambda: k.submit("q", payload={1, 2}),
        lambda: k.claim("ghost"),
        lambda: k.complete(lease),
        lambda: k.cancel("a"),
        lambda: k.requeue("a"),
        lambda: k.task("missing"),
        lambda: k.submit_many([{"queue": "q", "id": "x", "depends_on": ["y"]},
                               {"queue": "q", "id": "y", "depends_on": ["x"]}]),
    ]
    for call in calls:
        with pytest.raises(EskernelError) as info:
            call()
        yield info.value


def test_messages_name_the_value_and_are_not_tuples():
    seen = set()
    for err in _raise_each():
        msg = str(err)
        assert msg and not msg.startswith("("), repr(err)
        assert len(err.args) == 1 and isinstance(err.args[0], str)
        seen.add(type(err).__name__)
    assert {"UnknownQueueError", "DuplicateTaskError", "UnknownTaskError", "InvalidSpecError",
            "UnknownAgentError", "StaleLeaseError", "InvalidStateError",
            "DependencyError"} <= seen


def test_cycle_message_names_the_cycle():
    k = kernel.Kernel.in_memory(clock=ManualClock())
    k.declare_queue("q")
    with pytest.raises(errors.DependencyError, match="'x' -> 'y' -> 'x'"):
        k.submit_many([{"queue": "q", "id": "x", "depends_on": ["y"]},
                       {"queue": "q", "id": "y", "depends_on": ["x"]}])
    assert k.next_offset == 1


def test_error_classes_are_all_exported():
    defined = {n for n, v in inspect.getmembers(errors, inspect.isclass)
               if issubclass(v, BaseException)}
    assert defined <= set(errors.__all__) | {"BaseException"}


def test_a_meaningless_record_is_a_log_corruption_with_its_place(tmp_path):
    # storage branch: checksummed but meaningless records are LogCorruptError too
    assert issubclass(errors.LogRecordInvalidError, errors.LogCorruptError)
    assert "LogRecordInvalidError" in kernel.__all__
    from eskernel.eventlog import EventLog
    with EventLog.open(tmp_path) as log:
        log.append(b'{"v":1,"t":"queue_paused","ts":1,"queue":"nope"}')
    with pytest.raises(errors.LogCorruptError) as info:
        kernel.Kernel.open(tmp_path)
    err = info.value
    assert type(err) is errors.LogRecordInvalidError
    assert (err.log_offset, err.record_type, err.offset) == (0, "queue_paused", 32)
    assert err.segment.endswith("00000000000000000000.seg")
    msg = str(err)
    assert len(err.args) == 1 and "'nope'" in msg and f"eskernel verify {tmp_path}" in msg
