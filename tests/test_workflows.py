"""Workflows: definitions and their typed errors, execution, signals, control, plans."""

from __future__ import annotations

import pytest

from eskernel import (DuplicateStepError, EmptyGroupError, InvalidSpecError, InvalidStateError,
                      Kernel, LogRecordInvalidError, ManualClock, MissingMaxIterationsError,
                      UnknownFieldError, UnknownOperatorError, UnknownQueueError,
                      UnknownWorkflowError, WorkflowCycleError, WorkflowSpecError)
from eskernel.workflows import WorkflowBuilder, condition, parse_definition, plan

START = 1_700_000_000.0


@pytest.fixture
def k():
    kernel = Kernel.in_memory(clock=ManualClock(start=START))
    kernel.declare_queue("q")
    kernel.register_agent("a", ["q"], capacity=100)
    return kernel


def run_all(k, results=None, fail=()):
    """Claim and finish everything claimable; returns the task ids in claim order."""
    ran = []
    while True:
        lease = k.claim("a")
        if lease is None:
            return ran
        ran.append(lease.task_id)
        if lease.task_id in fail:
            k.fail(lease, "boom", retryable=False)
        else:
            k.complete(lease, (results or {}).get(lease.task_id, {"ok": True}))


# -- definitions ---------------------------------------------------------------------------

def test_builder_places_named_steps_in_groups():
    wf = (WorkflowBuilder("w").add_task_step("a", queue="q").add_task_step("b", queue="q")
          .add_parallel_step("p", ["a", "b"]).add_task_step("c", queue="q").build())
    assert [s.name for s in wf.steps] == ["p", "c"]
    assert [s.name for s in wf.steps[0].steps] == ["a", "b"]
    assert parse_definition(wf.model_dump(mode="json")) == wf      # JSON round trip


@pytest.mark.parametrize("build, error", [
    (lambda b: b.add_task_step("a", queue="q").add_sequential_step("s", ["s"]),
     WorkflowCycleError),
    (lambda b: b.add_task_step("a", queue="q").add_sequential_step("s1", ["s2"])
     .add_sequential_step("s2", ["s1"]), WorkflowCycleError),
    (lambda b: b.add_task_step("a", queue="q").add_parallel_step("p1", ["a"])
     .add_parallel_step("p2", ["a"]), WorkflowCycleError),
    (lambda b: b.add_parallel_step("p", []), EmptyGroupError),
    (lambda b: b.add_task_step("a", queue="q")
     .add_conditional_step("c", ("a", "~=", 1), then=["a"]), UnknownOperatorError),
    (lambda b: b.add_task_step("a", queue="q")
     .add_conditional_step("c", ("missing", "==", 1), then=["a"]), UnknownFieldError),
    (lambda b: b.add_wait_step("w", condition=("approved", "==", True)), UnknownFieldError),
    (lambda b: b.add_task_step("a", queue="q")
     .add_loop_step("l", ("a", "exists"), body=["a"]), MissingMaxIterationsError),
    (lambda b: b.add_task_step("a", queue="q").add_task_step("a", queue="q"),
     DuplicateStepError),
    (lambda b: b.add_wait_step("w"), WorkflowSpecError),
    (lambda b: b.add_task_step("a", queue="q", on_failure="explode"), WorkflowSpecError),
    (lambda b: b.add_task_step("a", queue="q").add_parallel_step("p", ["nope"]),
     WorkflowSpecError),
])
def test_bad_definitions_raise_typed_errors_and_write_nothing(k, build, error):
    with pytest.raises(error) as info:
        build(WorkflowBuilder("w")).build()
    assert isinstance(info.value, InvalidSpecError) and str(info.value)
    assert k.next_offset == 2


def test_a_default_or_exists_makes_an_unknown_field_acceptable():
    wf = (WorkflowBuilder("w").add_task_step("a", queue="q")
          .add_wait_step("w", condition=condition("approved", "==", True, default=False))
          .add_conditional_step("c", ("flag", "exists"), then=["a"]).build())
    assert wf.steps[0].condition.has_default


def test_start_validates_before_writing(k):
    wf = WorkflowBuilder("w").add_task_step("a", queue="other").build()
    with pytest.raises(UnknownQueueError):
        k.start_workflow(wf)
    with pytest.raises(WorkflowSpecError):
        k.start_workflow({"name": "w", "steps": [{"kind": "loop", "name": "l", "body": [],
                                                   "condition": {"field": "x", "op": "exists"}}]})
    ok = WorkflowBuilder("w").add_task_step("a", queue="q").build()
    with pytest.raises(InvalidSpecError):
        k.start_workflow(ok, context={"bad key": 1})
    with pytest.raises(InvalidSpecError):
        k.start_workflow(ok, context={"x": object()})
    assert k.next_offset == 2 and k.workflows() == []
    with pytest.raises(InvalidSpecError, match="contains '/'"):
        k.start_workflow(ok, id="a/b")          # its task ids could be another run's
    k.start_workflow(ok, id="w1")
    with pytest.raises(InvalidSpecError):
        k.start_workflow(ok, id="w1")


# -- execution --------------------------------------------------------------------------------

def test_results_merge_into_context_and_branches_follow_them(k):
    wf = (WorkflowBuilder("ci").add_task_step("test", queue="q", outputs={"status": "status"})
          .add_task_step("deploy", queue="q").add_task_step("rollback", queue="q")
          .add_conditional_step("ship", ("status", "==", "passed"), then=["deploy"],
                                otherwise=["rollback"]).build())
    k.start_workflow(wf, id="ok")
    k.start_workflow(wf, id="bad")
    ran = run_all(k, {"ok/test": {"status": "passed"}, "bad/test": {"status": "failed"}})
    assert ran == ["ok/test", "bad/test", "ok/ship/deploy", "bad/ship/rollback"]
    assert k.workflow("ok")["context"]["status"] == "passed"
    assert k.workflow("bad")["steps"]["ship"]["branch"] == "otherwise"
    assert k.workflow("ok")["status"] == k.workflow("bad")["status"] == "completed"


def test_workflow_of_names_the_run_and_step_of_an_open_task(k):
    wf = (WorkflowBuilder("w").add_task_step("a", queue="q").add_task_step("b", queue="q")
          .add_parallel_step("p", ["a", "b"]).build())
    k.start_workflow(wf, id="w")
    assert k.workflow_of("w/p/a") == ("w", "p/a")
    k.complete(k.claim("a"))
    assert k.workflow_of("w/p/a") is None and k.workflow_of("nope") is None


def test_inputs_read_the_context_into_the_payload(k):
    wf = (WorkflowBuilder("w", context={"env": "prod"})
          .add_task_step("a", queue="q", payload={"fixed": 1}, inputs={"where": "env"})
          .build())
    k.start_workflow(wf, id="w")
    assert k.task("w/a").payload == {"fixed": 1, "where": "prod"}


def test_loop_runs_until_its_condition_fails_or_its_bound(k):
    wf = (WorkflowBuilder("r").add_task_step("review", queue="q", outputs={"approved": "ok"})
          .add_loop_step("until_ok", condition("approved", "!=", True, default=False),
                         body=["review"], max_iterations=5).build())
    k.start_workflow(wf, id="r")
    no = {f"r/until_ok/{i}/review": {"ok": False} for i in range(2)}
    ran = run_all(k, {**no, "r/until_ok/2/review": {"ok": True}})
    assert ran == ["r/until_ok/0/review", "r/until_ok/1/review", "r/until_ok/2/review"]
    assert k.workflow("r")["steps"]["until_ok"]["iterations"] == 3
    k.start_workflow(wf, id="r2")
    assert len(run_all(k, {f"r2/until_ok/{i}/review": {"ok": 0} for i in range(5)})) == 5
    assert k.workflow("r2")["steps"]["until_ok"]["exhausted"] is True


def test_parallel_steps_start_together(k):
    wf = (WorkflowBuilder("etl").add_task_step("s1", queue="q").add_task_step("s2", queue="q")
          .add_parallel_step("extract", ["s1", "s2"]).add_task_step("load", queue="q").build())
    k.start_workflow(wf, id="e")
    assert [t.id for t in k.tasks()] == ["e/extract/s1", "e/extract/s2"]
    assert run_all(k) == ["e/extract/s1", "e/extract/s2", "e/load"]


def test_time_wait_ends_on_tick(k):
    clock = k._clock
    wf = (WorkflowBuilder("w").add_wait_step("nap", seconds=60)
          .add_task_step("a", queue="q").build())
    k.start_workflow(wf, id="w")
    k.tick()
    assert k.claim("a") is None
    clock.advance(59.0)
    k.tick()
    assert k.claim("a") is None
    clock.advance(1.0)
    k.tick()
    assert k.claim("a").task_id == "w/a"


def test_signal_wakes_a_condition_wait_and_timeout_fails_it(k):
    wf = (WorkflowBuilder("w", context={"approved": False})
          .add_wait_step("approval", condition=("approved", "==", True), timeout=100)
          .add_task_step("deploy", queue="q").build())
    k.start_workflow(wf, id="yes")
    k.start_workflow(wf, id="no")
    assert k.claim("a") is None
    k.signal("yes", "approved", True)
    assert run_all(k) == ["yes/deploy"]
    k._clock.advance(100.0)
    k.tick()
    no = k.workflow("no")
    assert no["status"] == "failed" and no["steps"]["approval"]["reason"] == "timeout"
    with pytest.raises(InvalidStateError):
        k.signal("no", "approved", True)
    with pytest.raises(UnknownWorkflowError):
        k.signal("nope", "approved", True)
    with pytest.raises(InvalidSpecError):
        k.signal("yes", "bad field", 1)


def test_failure_policies(k):
    wf = (WorkflowBuilder("w")
          .add_task_step("flaky", queue="q", on_failure="retry", retries=2)
          .add_task_step("optional", queue="q", on_failure="continue")
          .add_task_step("last", queue="q").build())
    k.start_workflow(wf, id="w")
    ran = run_all(k, fail={"w/flaky", "w/flaky+r1", "w/optional"})
    assert ran == ["w/flaky", "w/flaky+r1", "w/flaky+r2", "w/optional", "w/last"]
    run = k.workflow("w")
    assert run["status"] == "completed"
    assert run["steps"]["optional"]["status"] == "failed"
    k.start_workflow(wf, id="v")
    run_all(k, fail={"v/flaky", "v/flaky+r1", "v/flaky+r2"})
    assert k.workflow("v")["status"] == "failed"
    assert "flaky" in k.workflow("v")["error"]


def test_a_failed_step_cancels_its_running_siblings(k):
    wf = (WorkflowBuilder("w").add_task_step("a", queue="q").add_task_step("b", queue="q")
          .add_parallel_step("p", ["a", "b"]).build())
    k.start_workflow(wf, id="w")
    la, lb = k.claim("a"), k.claim("a")
    k.fail(la, "boom", retryable=False)
    assert k.workflow("w")["status"] == "failed"
    assert k.task("w/p/b").status == "CANCELLED"


def test_pause_resume_and_cancel(k):
    wf = (WorkflowBuilder("w").add_task_step("a", queue="q").add_task_step("b", queue="q")
          .add_task_step("c", queue="q").build())
    k.start_workflow(wf, id="w")
    lease = k.claim("a")
    k.pause_workflow("w")
    k.pause_workflow("w")                       # idempotent
    k.complete(lease)                           # a running task finishes...
    assert k.claim("a") is None                 # ...but no new step starts
    assert k.workflow("w")["status"] == "paused"
    k.resume_workflow("w")
    assert k.claim("a").task_id == "w/b"
    assert k.cancel_workflow("w") == ["w/b"]
    assert k.workflow("w")["status"] == "cancelled"
    assert k.task("w/b").status == "CANCELLED"
    for call in (k.pause_workflow, k.resume_workflow, k.cancel_workflow):
        with pytest.raises(InvalidStateError):
            call("w")


def test_cancelling_a_workflow_task_directly_fails_its_step(k):
    wf = WorkflowBuilder("w").add_task_step("a", queue="q").build()
    k.start_workflow(wf, id="w")
    k.cancel("w/a")
    assert k.workflow("w")["status"] == "failed"


# -- plans ------------------------------------------------------------------------------------

def test_plan_before_and_during_a_run(k):
    wf = (WorkflowBuilder("w", context={"go": True}).add_task_step("a", queue="q")
          .add_task_step("b", queue="q").add_task_step("c", queue="q")
          .add_parallel_step("p", ["b", "c"])
          .add_wait_step("w", condition=("go", "==", True)).build())
    stages = plan(wf)["stages"]
    assert [(s["stage"], s["step"], s["after"]) for s in stages] == [
        (1, "a", []), (2, "p", ["a"]), (3, "w", ["p"])]
    assert stages[2]["waits_for"] == ["go equals True"] or stages[2]["waits_for"] == [
        "go == True"]
    assert k.next_offset == 2                   # planning writes nothing
    k.start_workflow(wf, id="w")
    k.complete(k.claim("a"))
    now = k.plan("w")
    assert [d["path"] for d in now["done"]] == ["a"]
    assert [r["path"] for r in now["running"]] == ["p/b", "p/c"]
    assert now["next"] == ["w"]


# -- durability -------------------------------------------------------------------------------

def test_a_crash_between_completion_and_decision_is_recovered_on_tick(tmp_path):
    clock = ManualClock(start=START)
    k = Kernel.open(tmp_path / "log", clock=clock)
    k.declare_queue("q")
    k.register_agent("a", ["q"])
    k.start_workflow(WorkflowBuilder("w").add_task_step("a", queue="q")
                     .add_task_step("b", queue="q").build(), id="w")
    lease = k.claim("a")
    k._wf_tasks = {}       # the next decision is lost, as if the process died after the append
    k.complete(lease)
    k.close()
    k2 = Kernel.open(tmp_path / "log", clock=clock)
    assert k2.workflow("w")["steps"]["a"]["status"] == "running"
    k2.tick()
    assert k2.claim("a").task_id == "w/b"
    k2.close()


FORGED = [
    (b'"path":"nope","status":"completed","task":null,"info":null,"context":null',
     "names no step"),
    (b'"path":"c","status":"running","task":null,"info":{"branch":"maybe"},"context":null',
     "cannot be running"),
    (b'"path":"l","status":"running","task":null,"info":{"iteration":7},"context":null',
     "cannot be running"),
    (b'"path":"a","status":"running","task":"w/zz","info":{"attempt":0},"context":null',
     "is not the fresh task"),
    (b'"path":"a","status":"completed","task":null,"info":null,"context":{"bad key":1}',
     "not an object of context fields"),
]


@pytest.mark.parametrize("body, message", FORGED)
def test_a_forged_workflow_record_stops_the_open(tmp_path, body, message):
    from eskernel.eventlog import EventLog
    k = Kernel.open(tmp_path / "log", clock=ManualClock(start=START))
    k.declare_queue("q")
    k.start_workflow(WorkflowBuilder("w", context={"x": 1}).add_task_step("a", queue="q")
                     .add_task_step("b", queue="q")
                     .add_conditional_step("c", ("x", "==", 1), then=["b"])
                     .add_task_step("d", queue="q")
                     .add_loop_step("l", ("x", "==", 1), body=["d"], max_iterations=2)
                     .build(), id="w")
    k.close()
    log = EventLog.open(tmp_path / "log")
    log.append(b'{"v":1,"t":"workflow_step","ts":1700000000000000000,"workflow":"w",'
               + body + b'}')
    log.close()
    with pytest.raises(LogRecordInvalidError, match=message):
        Kernel.open(tmp_path / "log")


# -- audit and CLI ----------------------------------------------------------------------------

def _durable_run(path):
    k = Kernel.open(path, clock=ManualClock(start=START))
    k.declare_queue("q")
    k.register_agent("a", ["q"])
    k.start_workflow(WorkflowBuilder("w", context={"go": False}).add_task_step("a", queue="q")
                     .add_wait_step("gate", condition=("go", "==", True))
                     .add_task_step("b", queue="q").build(), id="w")
    k.complete(k.claim("a"), {"n": 1})
    return k


def test_verify_accepts_workflows_and_names_a_step_of_an_unknown_one(tmp_path):
    from eskernel.eventlog import EventLog
    from eskernel.verify import verify_log
    _durable_run(tmp_path / "log").close()
    assert verify_log(tmp_path / "log").ok
    log = EventLog.open(tmp_path / "log")
    log.append(b'{"v":1,"t":"workflow_signal","ts":1700000000000000000,"workflow":"zz",'
               b'"field":"go","value":true}')
    log.close()
    result = verify_log(tmp_path / "log")
    assert not result.ok and result.violation.rule == "workflow-order"


def test_cli_workflow_prints_status_context_and_timeline(tmp_path):
    from click.testing import CliRunner
    from eskernel.cli import cli
    k = _durable_run(tmp_path / "log")
    k.close()
    out = CliRunner().invoke(cli, ["workflow", str(tmp_path / "log"), "w"])
    assert out.exit_code == 0, out.output
    assert "status    running" in out.output and "next      b" in out.output
    assert "w/a" in out.output and "gate" in out.output
    js = CliRunner().invoke(cli, ["workflow", str(tmp_path / "log"), "w", "--json"])
    import json
    data = json.loads(js.output)
    assert data["context"]["a"] == {"n": 1}
    assert [s["step"] for s in data["steps"]] == ["a", "gate"]
    bad = CliRunner().invoke(cli, ["workflow", str(tmp_path / "log"), "nope"])
    assert bad.exit_code == 1 and "no workflow has id 'nope'" in bad.output


def test_a_snapshot_carries_runs_mid_flight(tmp_path):
    from eskernel.eventlog.snapshots import list_snapshots
    k = _durable_run(tmp_path / "log")
    k.snapshot()
    assert list_snapshots(tmp_path / "log")
    run, digest = k.workflow("w"), k.digest()
    k.close()
    k2 = Kernel.open(tmp_path / "log", clock=ManualClock(start=START))
    assert k2.digest() == digest and k2.workflow("w") == run
    k2.signal("w", "go", True)                   # the run goes on from the snapshot
    assert k2.claim("a").task_id == "w/b"
    k2.close()


def test_a_snapshot_with_a_forged_workflow_section_is_refused(tmp_path):
    from eskernel._snapshot import decode
    from eskernel.errors import SnapshotCorruptError
    from eskernel.eventlog import EventLog
    k = _durable_run(tmp_path / "log")
    k.snapshot()
    k.close()
    with EventLog.open(tmp_path / "log") as log:
        blob = log.latest_snapshot(10**9).blob
    state, _ = decode(blob)
    assert list(state.workflows.runs) == ["w"]
    from tests.test_snapshot_fuzz import assemble, split
    _, bodies = split(blob)
    for old, new in ((b'"status":"running"', b'"status":"runnin!"'),
                     (b'"task":"w/gate"', b'"task":"w/zzzz"'),
                     (b'"kind":"loop"', b'"kind":"loop"'),
                     (b'"name":"gate"', b'"name":"a"')):
        body = bodies[7].replace(old, new, 1)
        if body == bodies[7]:
            continue
        with pytest.raises(SnapshotCorruptError, match="workflows section"):
            decode(assemble(bodies[:7] + [body]))


def test_what_the_caller_still_holds_cannot_change_a_run(k):
    wf = (WorkflowBuilder("w", context={"items": [1]})
          .add_task_step("a", queue="q", payload={"cfg": {"n": 1}})
          .add_wait_step("gate", condition=("go", "exists")).build())
    ctx = {"extra": {"deep": [1]}}
    k.start_workflow(wf, id="w", context=ctx)
    digest = k.digest()
    ctx["extra"]["deep"].append(2)
    wf.context["items"].append(2)
    wf.steps[0].payload["cfg"]["n"] = 99
    value = {"v": [1]}
    assert k.digest() == digest
    k.signal("w", "note", value)
    digest = k.digest()
    value["v"].append(2)
    assert k.digest() == digest
    assert k.workflow("w")["context"] == {"items": [1], "extra": {"deep": [1]},
                                          "note": {"v": [1]}}


def test_a_step_task_dead_lettered_by_expiry_fails_its_step_on_that_tick(k):
    wf = (WorkflowBuilder("w").add_task_step("slow", queue="q", max_attempts=1, timeout=5,
                                             on_failure="continue")
          .add_task_step("next", queue="q").build())
    k.start_workflow(wf, id="w")
    k.tick()                                    # the first tick sweeps: nothing to decide
    assert k.claim("a").task_id == "w/slow"
    k._clock.advance(6.0)
    assert k.tick()["expired"] == 1
    run = k.workflow("w")
    assert run["steps"]["slow"]["status"] == "failed"
    assert k.claim("a").task_id == "w/next"


def test_the_runtime_waits_out_a_time_wait(k):
    import asyncio
    from eskernel.runtime import Runtime
    rt = Runtime(k, agents=["a"])

    @rt.handler("q")
    async def noop(payload):
        return {"ok": True}

    wf = (WorkflowBuilder("w").add_task_step("before", queue="q")
          .add_wait_step("cool_down", seconds=600).add_task_step("after", queue="q").build())
    k.start_workflow(wf, id="w")
    assert k.workflow_wake() is None
    asyncio.run(rt.run_until_idle())
    rt.close()
    run = k.workflow("w")
    assert run["status"] == "completed"
    gap = run["steps"]["after"]["started"] - run["steps"]["before"]["finished"]
    assert gap >= 600 * 10**9


def test_the_workflow_step_encoder_matches_the_reference_encoder():
    from eskernel import events
    for info, context in ((None, None), ({"attempt": 2, "wake": None}, {"a": [1, {"b": "é"}]})):
        ev = {"t": "workflow_step", "ts": 7, "workflow": "w", "path": "l/0/a",
              "status": "running", "task": "w/l/0/a", "info": info, "context": context}
        assert events.encode_workflow_step(7, "w", "l/0/a", "running", "w/l/0/a", info,
                                           context) == events.encode(ev)
    with pytest.raises(InvalidSpecError):
        events.encode_workflow_step(7, "w", "a", "completed", None, None, {"x": object()})


def test_an_idle_runtime_does_not_wait_out_a_condition_timeout(k):
    import asyncio
    from eskernel.runtime import Runtime
    rt = Runtime(k, agents=["a"])
    rt.register("q", lambda payload: None)
    wf = (WorkflowBuilder("w", context={"ok": False})
          .add_wait_step("approval", condition=("ok", "==", True), timeout=3600)
          .add_task_step("after", queue="q").build())
    k.start_workflow(wf, id="w")
    assert k.workflow_wake() is None
    asyncio.run(rt.run_until_idle())        # returns: the run waits for a signal
    assert k.workflow("w")["status"] == "running"
    k.signal("w", "ok", True)
    asyncio.run(rt.run_until_idle())
    rt.close()
    assert k.workflow("w")["status"] == "completed"
