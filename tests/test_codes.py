"""The Python names of the core's codes are the core's (kernel/_codes.py reads them)."""

from __future__ import annotations

from eskernel import _codes, _core


def test_statuses_are_the_cores_in_order():
    assert tuple(s.name for s in _codes.Status) == _core.STATUS_NAMES == _codes.STATUSES
    assert [int(s) for s in _codes.Status] == list(range(len(_core.STATUS_NAMES)))


def test_terminal_and_dead_sets_agree_by_name_and_code():
    assert {_codes.Status[n] for n in _codes.TERMINAL} == _codes.TERMINAL_CODES
    assert {_codes.Status[n] for n in _codes.DEAD} == _codes.DEAD_CODES
    assert _codes.DEAD < _codes.TERMINAL


def test_row_positions_name_the_cores_fields():
    fields = _core.TASK_ROW_FIELDS
    positions = {name: getattr(_codes, "ROW_" + name.upper()) for name in fields}
    assert positions == {name: i for i, name in enumerate(fields)}
    assert len([n for n in dir(_codes) if n.startswith("ROW_")]) == len(fields)


def test_a_row_has_the_fields_it_names():
    from eskernel import Kernel
    k = Kernel.in_memory()
    k.declare_queue("q")
    k.register_agent("a", capabilities=["q"])
    k.submit("q", id="t", max_attempts=4)
    lease = k.claim("a")
    row = k._sched.task_row(k._state.task_index["t"])
    assert len(row) == len(_core.TASK_ROW_FIELDS)
    assert row[_codes.ROW_STATUS] == "RUNNING"
    assert row[_codes.ROW_MAX_ATTEMPTS] == 4
    assert row[_codes.ROW_LEASE_ID] == lease.lease_id


def test_claim_refusal_and_flag_codes():
    assert _codes.CHOOSE_OFFLINE == _core.CHOOSE_CODES["OFFLINE"]
    assert _codes.CHOOSE_AT_CAPACITY == _core.CHOOSE_CODES["AT_CAPACITY"]
    assert len(set(_core.CHOOSE_CODES.values())) == 3 and max(_core.CHOOSE_CODES.values()) < 0
    assert (_codes.FLAG_DEAD, _codes.FLAG_UPSTREAM) == (_core.TASK_FLAGS["DEAD"],
                                                        _core.TASK_FLAGS["UPSTREAM"])
