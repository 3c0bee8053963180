"""submit() and submit_many() validate plain tasks with two inlined copies of the same checks
(each on its own hot path): they must accept, reject and record exactly alike."""

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from eskernel import EskernelError, Kernel, ManualClock, Priority

# Mostly valid values (so that many batches succeed), mixed with every kind of bad one.
bad = st.one_of(st.none(), st.booleans(), st.integers(-5, 2000), st.floats(allow_nan=True),
                st.text(max_size=3), st.sampled_from([1e13, 9223372037.0, -0.0, "30"]))
specs = st.fixed_dictionaries({"queue": st.sampled_from(["q", "q", "q", "other", "", 7])}, optional={
    "payload": st.one_of(st.none(), st.integers(-2**63, 2**63 - 1), st.text(max_size=5),
                         st.just({1, 2})),
    "id": st.one_of(st.none(), st.sampled_from(["a", "t-1", "t-2", "bad id", "", "x" * 201])),
    "priority": st.one_of(st.integers(0, 1000), st.sampled_from(list(Priority)), bad),
    "max_attempts": st.one_of(st.integers(1, 10), bad),
    "timeout": st.one_of(st.floats(0.001, 1e6), st.integers(1, 10**9), bad),
})


def _kernel():
    k = Kernel.in_memory(clock=ManualClock())
    k.declare_queue("q")
    k.submit("q", id="t-1")       # so that a generated id has to step around it
    return k


def _outcome(call):
    try:
        return "ok", call()
    except EskernelError as err:
        return "error", type(err).__name__


@settings(max_examples=200)
@given(st.lists(specs, min_size=1, max_size=4))
@example([{"queue": "q", "timeout": 9223372037.0}])   # overflowed int64 ns in the core
@example([{"queue": "q", "timeout": 1e12}])
@example([{"queue": "q", "id": "t-1"}, {"queue": "q"}])
def test_submit_and_submit_many_agree_on_plain_tasks(items):
    one, many = _kernel(), _kernel()
    singles = [_outcome(lambda s=s: one.submit(**s)) for s in items]
    batch = _outcome(lambda: many.submit_many([dict(s) for s in items]))
    if all(kind == "ok" for kind, _ in singles):
        assert batch == ("ok", [tid for _, tid in singles])
        assert one.digest() == many.digest()
    else:
        # the batch is all-or-nothing: it fails with the first item's error, writing nothing
        first_error = next(v for kind, v in singles if kind == "error")
        assert batch[0] == "error"
        assert many.next_offset == 2
        if len(items) == 1:
            assert batch[1] == first_error


@pytest.mark.parametrize("spec", [
    {"queue": "q"}, {"queue": "q", "priority": Priority.CRITICAL, "timeout": 1},
    {"queue": "q", "id": "t-2", "payload": {"a": [1]}, "max_attempts": 7},
])
def test_plain_records_are_identical(spec):
    one, many = _kernel(), _kernel()
    one.submit(**spec)
    many.submit_many([spec])
    assert list(one._log.read()) == list(many._log.read())
