"""The C replay fast path applies claimed / completed / heartbeat records exactly as the
general path does, and declines anything it does not recognise."""

from hypothesis import given, settings
from hypothesis import strategies as st

from eskernel import Kernel, ManualClock, events
from eskernel._apply import KernelState

results = st.none() | st.integers(-2**63, 2**63 - 1) | st.text(max_size=10) | st.dictionaries(
    st.text(max_size=5), st.integers(-2**63, 2**63 - 1), max_size=3)


def _records(seed_results):
    clock = ManualClock()
    k = Kernel.in_memory(clock=clock)
    k.declare_queue("q")
    k.register_agent("w", ["q"], capacity=3)
    for i, res in enumerate(seed_results):
        # payloads that contain the record's own tail keys must not confuse the parser
        k.submit("q", {"i": i, "echo": res, "depends_on": [], "max_attempts": 3},
                 id=f"job-{i}", priority=i % 5)
    for res in seed_results:
        lease = k.claim("w")
        clock.advance(0.5)
        k.heartbeat(lease)
        k.complete(lease, result=res)
    return k, [rec for _, rec in k._log.read()]


def _replay(records, fast):
    st_ = KernelState()
    st_.fast_applied = 0
    for rec in records:
        if fast and st_.sched.replay_record(rec, st_.replay_context()):
            st_.applied += 1
            st_.fast_applied += 1
            st_.last_ts = events.decode(rec)["ts"]
            continue
        st_.apply(events.decode(rec))
    return st_


@settings(max_examples=30)
@given(st.lists(results, min_size=1, max_size=6))
def test_fast_and_general_replay_agree(seed_results):
    k, records = _records(seed_results)
    fast, slow = _replay(records, True), _replay(records, False)
    # every submission, claim, heartbeat and completion
    assert fast.fast_applied == 4 * len(seed_results)
    assert fast.digest() == slow.digest() == k.digest()
    fast.sched._check()


def test_fast_path_declines_other_and_malformed_records():
    _, records = _records([1])
    state = _replay(records[:3], False)   # queue, agent, submitted
    sched = state.sched
    args = (state.replay_context(),)
    assert sched.replay_record(records[1], *args) == 0            # agent_registered: general path
    claimed = records[3]
    assert claimed.startswith(b'{"v":1,"t":"claimed"')
    assert sched.replay_record(claimed.replace(b'"lease":1', b'"lease":9'), *args) == 0
    assert sched.replay_record(claimed[:-1], *args) == 0            # truncated
    assert sched.replay_record(claimed.replace(b"job-0", b"nope"), *args) == 0
    assert sched.status_of(0) == 1                                  # still READY: nothing applied
    assert sched.replay_record(claimed, *args) == 1
    assert sched.status_of(0) == 2


def test_submitted_fast_path_declines_records_with_dependencies_or_options():
    k = Kernel.in_memory(clock=ManualClock())
    k.declare_queue("q")
    k.submit("q", id="a")
    k.submit("q", id="b", depends_on=["a"])
    k.submit("q", id="c", name="named", delay=3)
    records = [rec for _, rec in k._log.read()]
    st_ = KernelState()
    st_.apply(events.decode(records[0]))
    ctx = st_.replay_context()
    assert st_.sched.replay_record(records[1], ctx) == 1
    assert st_.sched.replay_record(records[1], ctx) == 0      # a duplicate id
    assert st_.sched.replay_record(records[2], ctx) == 0      # has a dependency
    assert st_.sched.replay_record(records[3], ctx) == 0      # has a name
    assert st_.sched.n_tasks == 1
