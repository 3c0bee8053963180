"""The handler runtime (kernel.runtime): registration, execution modes, timeouts, retries,
heartbeats, limits, idle detection, shutdown, waiting, hooks, resume after a crash.

Time is a ManualClock throughout; ``run_until_idle`` auto-jumps it, so no test sleeps.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eskernel import (InvalidSpecError, InvalidStateError, Kernel, KernelClosedError, ManualClock,
                    Priority, UnknownAgentError, UnknownTaskError)
from eskernel.runtime import (HandlerTimeoutError, Runtime, TaskContext, TaskEvent,
                            WaitTimeoutError)

START = 1_700_000_000.0


def make(queues=(("q", 0),), agents=(("w", ["q"], 4),), **kw):
    clock = ManualClock(start=START)
    k = Kernel.in_memory(clock=clock)
    for name, mc in queues:
        k.declare_queue(name, max_concurrent=mc)
    rt = Runtime(k, agents=list(agents), **kw)
    return k, clock, rt


def run(coro):
    return asyncio.run(coro)


def last_error(k, tid):
    return [e for e in k.history(tid) if e["t"] in ("failed", "expired")][-1].get("error", "")


# -- registration -------------------------------------------------------------------------

def test_decorator_and_plain_registration_run_sync_and_async():
    k, _, rt = make()

    @rt.handler("double")
    async def double(p):
        return p * 2

    rt.register("q", lambda p: p + 1)
    a = k.submit("q", 20, name="double")
    b = k.submit("q", 20)
    run(rt.run_until_idle())
    assert k.task(a).result == 40 and k.task(b).result == 21
    assert rt.handlers() == {"double": "async", "q": "thread"}
    rt.close()


def test_name_takes_precedence_over_queue():
    k, _, rt = make()
    rt.register("q", lambda p: "by-queue", executor="inline")
    rt.register("special", lambda p: "by-name", executor="inline")
    a = k.submit("q", name="special")
    b = k.submit("q", name="other")
    run(rt.run_until_idle())
    assert (k.task(a).result, k.task(b).result) == ("by-name", "by-queue")


@pytest.mark.parametrize("key, fn, kw, needle", [
    ("bad key!", len, {}, "not a valid task or queue name"),
    ("q", 42, {}, "must be a function"),
    ("q", len, {"executor": "gpu"}, "executor 'gpu'"),
    ("q", len, {"executor": "async"}, "not a coroutine function"),
    ("q", lambda p: p, {"executor": "process"}, "cannot be pickled"),
    ("q", len, {"context": 1}, "context="),
])
def test_bad_registration_is_a_clear_invalid_spec_error(key, fn, kw, needle):
    _, _, rt = make()
    with pytest.raises(InvalidSpecError, match=needle):
        rt.register(key, fn, **kw)
    assert rt.handlers() == {}


def test_async_function_cannot_go_to_a_thread_and_duplicates_need_replace():
    _, _, rt = make()

    async def f(p):
        return p

    with pytest.raises(InvalidSpecError, match="coroutine function"):
        rt.register("q", f, executor="thread")
    rt.register("q", f)
    with pytest.raises(InvalidSpecError, match="already registered"):
        rt.register("q", len)
    rt.register("q", len, replace=True)
    assert rt.handlers() == {"q": "thread"}


def test_agent_specs():
    k = Kernel.in_memory(clock=ManualClock(start=START))
    k.declare_queue("q")
    with pytest.raises(UnknownAgentError, match="not registered"):
        Runtime(k, agents=["ghost"])
    with pytest.raises(InvalidSpecError, match="empty"):
        Runtime(k, agents=[])
    with pytest.raises(InvalidSpecError, match="unknown"):
        Runtime(k, agents=[{"id": "a", "capabilities": ["q"], "speed": 3}])
    with pytest.raises(InvalidSpecError, match="twice"):
        Runtime(k, agents=[("a", ["q"], 1), ("a", ["q"], 1)])
    Runtime(k, agents={"id": "a", "capabilities": ["q"], "capacity": 2})
    rt = Runtime(k, agents=["a"])  # registered above: capacity read back from the kernel
    assert rt._agents[0].capacity == 2
    with pytest.raises(InvalidSpecError, match="poll_interval"):
        Runtime(k, agents=["a"], poll_interval=0)


# -- outcomes -----------------------------------------------------------------------------

def test_exception_is_recorded_with_type_message_and_traceback_then_dead_lettered():
    k, _, rt = make()

    def explode(p):
        raise KeyError(f"missing {p}")

    rt.register("q", explode, executor="thread")
    t = k.submit("q", "frame", max_attempts=2)
    run(rt.run_until_idle())
    view = k.task(t)
    assert view.status == "FAILED" and view.dead_lettered and view.attempts == 2
    assert view.error.startswith("KeyError: 'missing frame'\nTraceback")
    assert "concurrent" not in view.error
    assert "in explode" in view.error and "Traceback" in view.error
    rt.close()


def test_non_json_result_fails_the_attempt_clearly():
    k, _, rt = make()
    rt.register("q", lambda p: {1, 2}, executor="inline")
    t = k.submit("q", max_attempts=1)
    run(rt.run_until_idle())
    view = k.task(t)
    assert view.status == "FAILED"
    assert view.error.startswith("InvalidResultError: handler 'q' returned a set")
    assert "JSON" in view.error


def test_missing_handler_fails_without_retry_and_the_runtime_keeps_going():
    k, _, rt = make(queues=(("q", 0), ("other", 0)), agents=(("w", ["q", "other"], 2),))
    rt.register("q", lambda p: "ok", executor="inline")
    orphan = k.submit("other", name="nobody", max_attempts=5)
    fine = k.submit("q")
    run(rt.run_until_idle())
    view = k.task(orphan)
    assert view.status == "FAILED" and view.attempts == 1
    assert "NoHandlerError: no handler is registered for task" in view.error
    assert "Runtime.register('nobody', fn)" in view.error
    assert k.task(fine).status == "COMPLETED"


def test_handler_misbehaviour_never_crashes_the_runtime():
    k, _, rt = make()

    async def weird(p):
        if p == "cancel":
            raise asyncio.CancelledError()
        if p == "base":
            raise ArithmeticError("boom")
        await asyncio.sleep(0)
        return p

    rt.register("q", weird)
    ids = [k.submit("q", p, max_attempts=1) for p in ("cancel", "base", "fine")]
    run(rt.run_until_idle())
    assert [k.task(i).status for i in ids] == ["FAILED", "FAILED", "COMPLETED"]
    assert k.task(ids[0]).error.startswith("asyncio.exceptions.CancelledError\nTraceback")


def test_context_handlers_get_a_task_context():
    k, _, rt = make()
    seen = []

    @rt.handler("q", context=True)
    async def h(ctx):
        seen.append(ctx)
        return ctx.payload

    t = k.submit("q", {"a": 1}, name="job", max_attempts=4, timeout=7.0)
    run(rt.run_until_idle())
    (ctx,) = seen
    assert isinstance(ctx, TaskContext)
    assert (ctx.task_id, ctx.name, ctx.queue, ctx.attempt, ctx.max_attempts, ctx.agent_id) == (
        t, "job", "q", 1, 4, "w")
    assert ctx.deadline == START + 7.0 and ctx.payload == {"a": 1}


def test_suspending_coroutines_and_contextvars_are_isolated():
    import contextvars
    var = contextvars.ContextVar("var", default="unset")
    k, _, rt = make()

    @rt.handler("q")
    async def h(p):
        before = var.get()
        var.set(p)
        fut = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(fut.set_result, p)
        got = await fut
        await asyncio.sleep(0)
        return [before, got, var.get()]

    ids = [k.submit("q", f"v{i}") for i in range(3)]
    run(rt.run_until_idle())
    assert [k.task(i).result for i in ids] == [["unset", f"v{i}", f"v{i}"] for i in range(3)]


def test_fast_task_reader_matches_task_views():
    from eskernel.runtime._support import task_reader
    k, _, _ = make()
    k.submit("q", {"x": [1, 2]}, name="n", max_attempts=5)
    k.submit("q", None)
    fast = task_reader(k)

    class Other:  # no kernel internals: falls back to task()
        task = k.task
    slow = task_reader(Other())
    for lease in k.claim_many("w", 2):
        assert fast(lease) == slow(lease)


# -- timeouts and retries -----------------------------------------------------------------

def test_async_timeout_fails_the_attempt_and_the_retry_succeeds():
    k, clock, rt = make()
    attempts = []
    gate = asyncio.Event  # created inside the loop below

    @rt.handler("q", context=True)
    async def slow_then_fast(ctx):
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            await gate().wait()  # never set: only the timeout ends it
        return "done"

    t = k.submit("q", timeout=2.0)
    run(rt.run_until_idle())
    view = k.task(t)
    assert view.status == "COMPLETED" and view.result == "done" and attempts == [1, 2]
    err = last_error(k, t)
    assert err.startswith("HandlerTimeoutError: handler 'q' for task")
    assert "timeout of 2 s on attempt 1 of 3" in err and "cancelled" in err
    assert rt.timed_out == 1 and issubclass(HandlerTimeoutError, TimeoutError)
    # the retry waited out the default backoff (1 s) after the timeout at START + 2
    assert view.started_at == pytest.approx(START + 3.0)


def test_thread_timeout_abandons_the_thread_which_keeps_its_agent_slot():
    k, clock, rt = make(agents=(("w", ["q"], 1),), autojump=False)
    release = threading.Event()
    started = []

    def blocking(p):
        started.append(p)
        if p == "stuck":
            release.wait(10)
        return p

    rt.register("q", blocking)
    stuck = k.submit("q", "stuck", timeout=1.0, max_attempts=1, priority=Priority.HIGH)
    nxt = k.submit("q", "next")

    async def main():
        task = asyncio.create_task(rt.run_until_idle())
        while not started:
            await asyncio.sleep(0.001)
        clock.advance(1.0)
        while k.task(stuck).status != "FAILED":
            await asyncio.sleep(0.001)
        # the thread still runs: capacity 1 is taken by it, so "next" is not started
        for _ in range(20):
            await asyncio.sleep(0.001)
        assert started == ["stuck"] and k.task(nxt).status == "READY"
        assert rt.stats()["abandoned_running"] == 1
        release.set()
        await task

    run(main())
    assert "thread running it cannot be interrupted" in k.task(stuck).error
    assert k.task(nxt).status == "COMPLETED" and started == ["stuck", "next"]
    rt.close()


def test_coroutine_that_ignores_cancellation_is_abandoned_after_the_grace():
    k, clock, rt = make(agents=(("w", ["q"], 1),), cancel_grace=0.5)
    done = []

    @rt.handler("q")
    async def stubborn(p):
        if p == "stubborn":
            while True:
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    if done:
                        raise
        return p

    s = k.submit("q", "stubborn", timeout=4.0, max_attempts=1, priority=Priority.HIGH)
    o = k.submit("q", "other")

    async def main():
        task = asyncio.create_task(rt.run_until_idle())
        while k.task(s).status != "FAILED":
            await asyncio.sleep(0)
        assert k.task(o).status == "READY"  # the zombie holds the only slot
        assert k.task(s).finished_at == pytest.approx(START + 4.5)
        done.append(1)
        rt._zombies.copy().pop().fut.cancel()
        await task

    run(main())
    assert k.task(o).status == "COMPLETED"


def test_retries_follow_the_exponential_backoff():
    k, clock, rt = make()
    times = []

    @rt.handler("q")
    async def flaky(p):
        times.append(clock.now() - START)
        raise RuntimeError("flaky")

    t = k.submit("q", max_attempts=4, backoff={"initial": 1.0, "factor": 2.0, "max": 60.0})
    run(rt.run_until_idle())
    assert times == [0.0, 1.0, 3.0, 7.0]
    assert k.task(t).status == "FAILED"


# -- heartbeats ---------------------------------------------------------------------------

def test_heartbeats_renew_the_lease_while_a_handler_runs():
    k, clock, rt = make(autojump=False, poll_interval=0.001)
    go = []

    @rt.handler("q")
    async def waits(p):
        while not go:
            await asyncio.sleep(0)
        return "ok"

    t = k.submit("q", timeout=3.0)

    async def main():
        task = asyncio.create_task(rt.run_until_idle())
        for _ in range(5):  # 5 x 0.55 s; a heartbeat is due every 1 s (timeout / 3)
            await asyncio.sleep(0.01)  # the runtime polls a manual clock every 1 ms
            clock.advance(0.55)
        await asyncio.sleep(0.01)
        assert k.task(t).expires_at == pytest.approx(START + 2.2 + 3.0)
        go.append(1)
        await task

    run(main())
    beats = [e for e in k.history(t) if e["t"] == "heartbeat"]
    assert len(beats) >= 2
    assert k.task(t).status == "COMPLETED" and k.task(t).attempts == 1


def test_cancelling_a_running_task_stops_its_handler_and_dependents():
    k, clock, rt = make(autojump=False)
    cancelled = []
    events = []

    @rt.handler("q")
    async def waits(p):
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(p)
            raise

    up = k.submit("q", "up", timeout=3.0)
    down = k.submit("q", "down", depends_on=[up])
    rt.on("lease_lost", events.append)

    async def main():
        task = asyncio.create_task(rt.run_until_idle())
        while k.task(up).status != "RUNNING":
            await asyncio.sleep(0.001)
        assert k.cancel(up) == [up, down]
        clock.advance(1.5)  # the next heartbeat finds the lease revoked
        await task

    run(main())
    assert cancelled == ["up"] and [e.kind for e in events] == ["lease_lost"]
    assert k.task(down).status == "CANCELLED" and k.task(down).cancelled_upstream


# -- limits -------------------------------------------------------------------------------

def test_max_concurrent_and_capacity_hold_at_every_moment():
    k, _, rt = make(queues=(("a", 2), ("b", 0)),
                    agents=(("w1", ["a", "b"], 3), ("w2", ["a"], 1)))
    running = {"a": 0, "b": 0, "w1": 0, "w2": 0}
    peak = dict(running)

    @rt.handler("work", context=True)
    async def work(ctx):
        for key in (ctx.queue, ctx.agent_id):
            running[key] += 1
            peak[key] = max(peak[key], running[key])
        for _ in range(3):
            await asyncio.sleep(0)
        for key in (ctx.queue, ctx.agent_id):
            running[key] -= 1

    for i in range(30):
        k.submit("a" if i % 3 else "b", name="work")
    run(rt.run_until_idle())
    assert peak["a"] == 2 and peak["w1"] <= 3 and peak["w2"] == 1
    assert all(v.status == "COMPLETED" for v in k.tasks())


def test_pinned_task_runs_on_its_agent_and_capabilities_route_work():
    k, _, rt = make(queues=(("cpu", 0), ("gpu", 0)),
                    agents=(("c1", ["cpu"], 2), ("g1", ["cpu", "gpu"], 2)))
    where = {}

    @rt.handler("cpu", context=True)
    @rt.handler("gpu", context=True)
    async def h(ctx):
        where[ctx.task_id] = ctx.agent_id

    g = k.submit("gpu")
    pinned = k.submit("cpu", agent="g1")
    run(rt.run_until_idle())
    assert where[g] == "g1" and where[pinned] == "g1"


# -- run / stop / idle / wait -------------------------------------------------------------

def test_run_until_idle_returns_with_unclaimable_ready_tasks_left():
    k, _, rt = make(queues=(("q", 0), ("p", 0)), agents=(("w", ["q", "p"], 1),))
    rt.register("q", lambda p: 1, executor="inline")
    rt.register("p", lambda p: 1, executor="inline")
    k.pause_queue("p")
    held = k.submit("p")
    later = k.submit("q", delay=30.0)
    run(rt.run_until_idle())
    assert k.task(held).status == "READY"
    assert k.task(later).status == "COMPLETED"  # the delay was due: the clock jumped to it


def test_run_until_idle_without_autojump_waits_for_the_clock():
    k, clock, rt = make(autojump=False)
    rt.register("q", lambda p: 1, executor="inline")
    t = k.submit("q", delay=5.0)

    async def main():
        task = asyncio.create_task(rt.run_until_idle())
        await asyncio.sleep(0.01)
        assert not task.done() and k.task(t).status == "PENDING"
        clock.advance(5.0)
        await asyncio.wait_for(task, 5)

    run(main())
    assert k.task(t).status == "COMPLETED"


def test_run_until_stopped_with_wait_and_events():
    k, _, rt = make()
    rt.register("q", lambda p: p, executor="inline")

    async def main():
        stream = rt.events()
        runner = asyncio.create_task(rt.run())
        a = rt.submit("q", 1)
        view = await rt.wait(a, timeout=5)
        ids = [rt.submit("q", i) for i in range(5)]
        views = await rt.wait(ids, timeout=5)
        rt.stop()
        await runner
        return view, views, [e async for e in stream]

    view, views, evs = run(main())
    assert view.status == "COMPLETED" and [v.result for v in views] == list(range(5))
    assert [e.kind for e in evs] == ["completed"] * 6


def test_wait_errors():
    k, _, rt = make()
    t = k.submit("q")

    async def main():
        with pytest.raises(UnknownTaskError):
            await rt.wait("nope")
        with pytest.raises(WaitTimeoutError, match=r"1 of 1 task\(s\) not finished.*READY"):
            await rt.wait([t], timeout=0.01)

    run(main())
    assert issubclass(WaitTimeoutError, TimeoutError)


def test_graceful_shutdown_finishes_or_releases_in_flight_work():
    k, _, rt = make(agents=(("w", ["q"], 2),), autojump=False)

    @rt.handler("q")
    async def h(p):
        if p == "quick":
            for _ in range(3):
                await asyncio.sleep(0)
            return "finished"
        await asyncio.Event().wait()

    quick = k.submit("q", "quick")
    hang = k.submit("q", "hang")

    async def main():
        runner = asyncio.create_task(rt.run())
        while k.task(hang).status != "RUNNING":
            await asyncio.sleep(0.001)
        await rt.shutdown(grace=0.05)
        await runner

    run(main())
    assert k.task(quick).status == "COMPLETED"
    released = k.task(hang)
    assert released.status == "READY" and released.attempts == 0  # the attempt was given back
    assert any(e["t"] == "released" for e in k.history(hang))


def test_running_twice_is_refused_and_timeout_releases():
    k, _, rt = make(autojump=False)

    @rt.handler("q")
    async def h(p):
        await asyncio.Event().wait()

    t = k.submit("q")

    async def main():
        first = asyncio.create_task(rt.run_until_idle(timeout=0.05))
        await asyncio.sleep(0.01)
        with pytest.raises(InvalidStateError, match="already running"):
            await rt.run_until_idle()
        with pytest.raises(WaitTimeoutError, match="released"):
            await first

    run(main())
    assert k.task(t).status == "READY"


def test_kernel_failure_stops_the_runtime_with_the_kernel_error():
    k, _, rt = make()

    @rt.handler("q")
    async def closes(p):
        k.close()
        return 1

    k.submit("q")
    with pytest.raises(KernelClosedError):
        run(rt.run_until_idle())


# -- hooks --------------------------------------------------------------------------------

def test_callbacks_and_stream_see_failed_retried_dead_lettered_completed():
    k, _, rt = make()
    calls, async_calls = [], []

    @rt.handler("q", context=True)
    async def h(ctx):
        if ctx.payload == "bad" or ctx.attempt == 1:
            raise ValueError("nope")
        return "ok"

    def boom(ev):
        raise RuntimeError("a broken callback must not stop the runtime")

    async def later(ev):
        async_calls.append(ev.kind)

    rt.on(None, calls.append)
    rt.on("dead_lettered", boom)
    rt.on(["completed", "dead_lettered"], later)
    with pytest.raises(InvalidSpecError, match="unknown task event kind"):
        rt.on("exploded", print)
    good = k.submit("q", "good")
    bad = k.submit("q", "bad", max_attempts=1)

    async def main():
        stream = rt.events(["retried", "dead_lettered"])
        await rt.run_until_idle()
        return [(e.kind, e.task_id) async for e in stream]

    streamed = run(main())
    kinds = {tid: [e.kind for e in calls if e.task_id == tid] for tid in (good, bad)}
    assert kinds[good] == ["failed", "retried", "completed"]
    assert kinds[bad] == ["failed", "dead_lettered"]
    assert streamed == [("retried", good), ("dead_lettered", bad)]
    assert sorted(async_calls) == ["completed", "dead_lettered"]
    retried = next(e for e in calls if e.kind == "retried")
    assert isinstance(retried, TaskEvent) and retried.due_at == START + 1.0
    assert next(e for e in calls if e.kind == "failed").error.startswith("ValueError: nope")


# -- process pool -------------------------------------------------------------------------

def test_process_pool_handlers():
    k, _, rt = make(processes=1)
    rt.register("sum", sum, executor="process")
    rt.register("int", int, executor="process")
    ok = k.submit("q", [1, 2, 3], name="sum")
    bad = k.submit("q", "abc", name="int", max_attempts=1)
    run(rt.run_until_idle())
    rt.close()
    assert k.task(ok).result == 6
    assert k.task(bad).error.startswith("ValueError: invalid literal for int()")


# -- crash and resume ---------------------------------------------------------------------

def test_resume_after_a_crash_reruns_only_unfinished_work(tmp_path):
    clock = ManualClock(start=START)
    k = Kernel.open(tmp_path, clock=clock)
    k.declare_queue("q")
    k.register_agent("w", ["q"], capacity=2)
    ids = [k.submit("q", i, id=f"t{i}", timeout=10.0) for i in range(4)]
    # a first process completed t0 and held t1 and t2 when it died
    first = k.claim_many("w", 3)
    k.complete(first[0], "done-before-crash")
    k.close()

    k = Kernel.open(tmp_path, clock=clock)
    ran = []
    rt = Runtime(k, agents=["w"])

    @rt.handler("q")
    async def h(p):
        ran.append(p)
        return p

    run(rt.run_until_idle())
    assert sorted(ran) == [1, 2, 3]  # t0 is not run again; t1 and t2 after their leases expired
    assert k.task("t0").result == "done-before-crash"
    assert all(k.task(i).status == "COMPLETED" for i in ids)
    assert k.task("t1").attempts == 2 and clock.now() >= START + 10.0
    k.close()


# -- property: limits always hold and every task ends consistently ------------------------

OUTCOMES = st.sampled_from(["ok", "raise", "timeout"])


@st.composite
def workloads(draw):
    n_queues = draw(st.integers(1, 3))
    queues = [(f"q{i}", draw(st.integers(0, 3))) for i in range(n_queues)]
    n_agents = draw(st.integers(1, 3))
    agents = []
    for a in range(n_agents):
        caps = draw(st.lists(st.sampled_from([q for q, _ in queues]), min_size=1, unique=True))
        agents.append((f"a{a}", caps, draw(st.integers(1, 3))))
    served = {q for _, caps, _ in agents for q in caps}
    for q, _ in queues:  # every queue must be served, or its tasks would wait forever
        if q not in served:
            agents[0][1].append(q)
    tasks = draw(st.lists(st.tuples(
        st.sampled_from([q for q, _ in queues]), st.integers(1, 3),
        st.lists(OUTCOMES, min_size=3, max_size=3), st.integers(0, 3)), min_size=1, max_size=12))
    return queues, agents, tasks


@settings(max_examples=60)
@given(workloads())
def test_random_outcomes_never_break_limits_and_end_consistently(workload):
    queues, agents, tasks = workload
    k, clock, rt = make(queues=queues, agents=agents)
    limits = dict(queues)
    caps = {a: c for a, _, c in agents}
    running = {**{q: 0 for q in limits}, **{a: 0 for a in caps}}
    violations = []
    plans = {}

    @rt.handler("job", context=True)
    async def job(ctx):
        keys = (ctx.queue, ctx.agent_id)
        for key in keys:
            running[key] += 1
        if limits[ctx.queue] and running[ctx.queue] > limits[ctx.queue]:
            violations.append(("queue", ctx.queue, running[ctx.queue]))
        if running[ctx.agent_id] > caps[ctx.agent_id]:
            violations.append(("agent", ctx.agent_id, running[ctx.agent_id]))
        try:
            outcome = plans[ctx.task_id][ctx.attempt - 1]
            for _ in range(ctx.attempt):
                await asyncio.sleep(0)
            if outcome == "raise":
                raise ValueError(f"planned failure of {ctx.task_id}")
            if outcome == "timeout":
                await asyncio.Event().wait()
            return ctx.attempt
        finally:
            for key in keys:
                running[key] -= 1

    for i, (q, max_attempts, outcomes, prio) in enumerate(tasks):
        tid = k.submit(q, name="job", id=f"t{i}", max_attempts=max_attempts, priority=prio,
                       timeout=2.0, backoff={"initial": 0.5, "factor": 2.0, "max": 4.0})
        plans[tid] = outcomes
    run(rt.run_until_idle())
    rt.close()
    assert violations == []
    assert all(v == 0 for v in running.values())
    for i, (q, max_attempts, outcomes, _) in enumerate(tasks):
        view = k.task(f"t{i}")
        first_ok = next((n for n, o in enumerate(outcomes[:max_attempts], 1) if o == "ok"), None)
        if first_ok is not None:
            assert (view.status, view.attempts, view.result) == ("COMPLETED", first_ok, first_ok)
        else:
            assert (view.status, view.attempts) == ("FAILED", max_attempts)
            assert view.dead_lettered
            last = outcomes[max_attempts - 1]
            assert view.error.startswith(
                "HandlerTimeoutError" if last == "timeout" else "ValueError: planned failure")
    assert k.check()
    assert rt.stats()["in_flight"] == 0 and rt.stats()["abandoned_running"] == 0
