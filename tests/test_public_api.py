"""The public surface: eskernel.__all__ is the documented list and every name lives in
`eskernel`."""

import eskernel as kernel
from eskernel import errors

DOCUMENTED = {
    "Kernel", "Lease", "Priority", "BackoffPolicy", "TaskSpec", "TaskView", "Stats",
    "QueueStats", "AgentStats", "Clock", "SystemClock", "ManualClock", "Runtime",
    "TaskContext", "TaskEvent", "EventStream", *errors.__all__,
}


def test_all_is_the_documented_list():
    assert set(kernel.__all__) == DOCUMENTED
    assert len(kernel.__all__) == len(set(kernel.__all__))


def test_every_public_name_is_importable_and_documented():
    for name in kernel.__all__:
        obj = getattr(kernel, name)
        assert obj.__doc__, f"eskernel.{name} has no docstring"


def test_no_public_name_comes_from_the_compiled_core_except_lease():
    # Lease is the compiled result type of claim(): a static type whose __module__ cannot be
    # reassigned; everything else is presented as `eskernel`.
    leaked = [n for n in kernel.__all__
              if getattr(getattr(kernel, n), "__module__", "") == "eskernel._core"]
    assert leaked == ["Lease"]
    for name in ("Kernel", "Priority", "TaskView", "ManualClock"):
        assert getattr(kernel, name).__module__ == "eskernel"
