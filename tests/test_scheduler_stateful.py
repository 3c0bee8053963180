"""The kernel against the plain reference model (tests/model.py), command by command.

A hypothesis ``RuleBasedStateMachine`` applies the same random command to an in-memory
``Kernel`` and to ``Model`` and asserts, after every step:

* the same outcome: the same task claimed (id, attempt, lease id, expiry), the same ids
  returned, or the same error *class*; a rejected command writes no event and leaves the
  digest unchanged;
* the same state for every task (status, attempts, agent, lease, result, error, flags, due);
* ``kernel.check()`` (the core's O(n) invariant checker) passes;
* invariants read from the kernel's own views: no task leased twice, no agent over its
  capacity, no queue over ``max_concurrent`` after a claim, no task RUNNING or COMPLETED
  before all its dependencies COMPLETED, and a claim never skips a strictly better
  eligible task (priority desc, then submission order).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import event, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from eskernel import Kernel, ManualClock
from eskernel.errors import EskernelError, StaleLeaseError
from tests.model import NS, Model
from tests.strategies import backoffs

START = 1_700_000_000.0
QUEUES = ["q0", "q1", "q2", "q3"]          # q3 is never declared
AGENTS = ["a0", "a1", "a2", "a9"]          # a9 is never registered
EXPLICIT_IDS = [f"x{i}" for i in range(6)]
KEYS = [None, None, None, "k0", "k1"]

picks = st.integers(0, 1_000)


class SchedulerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(start=START)
        self.seed = 0
        self.k: Kernel | None = None
        self.m: Model | None = None
        self.ids: list[str] = []                 # task ids, submission order
        self.leases: list[tuple] = []            # (kernel lease, model lease), all ever issued
        self.batches = 0

    # --- plumbing ---------------------------------------------------------------------

    def both(self, kcall, mcall):
        """Run a command on both sides; assert the same error class (or none).  A rejected
        command must leave the log length and the digest unchanged."""
        off, dig = self.k.next_offset, self.k.digest()
        kr = mr = ke = me = None
        try:
            kr = kcall()
        except EskernelError as err:
            ke = err
        try:
            mr = mcall()
        except EskernelError as err:
            me = err
        assert type(ke) is type(me), f"kernel: {ke!r} / model: {me!r}"
        event(f"rejected: {type(ke).__name__}" if ke is not None else "accepted")
        if ke is not None:
            assert self.k.next_offset == off, f"rejected call ({ke!r}) wrote an event"
            assert self.k.digest() == dig, f"rejected call ({ke!r}) changed the state"
        return kr, mr, ke

    @staticmethod
    def same_lease(kl, ml) -> None:
        assert (kl.lease_id, kl.task_id, kl.agent_id, kl.attempt) == (
            ml.lease_id, ml.task_id, ml.agent_id, ml.attempt)
        # the exact ns; Lease.expires_at (a float) has its own test in test_kernel_api
        assert kl.expires_ns == ml.expires_ns

    def task_id(self, i: int) -> str:
        return self.ids[i % len(self.ids)] if self.ids else "nope"

    def claim_expectation(self, agent: str) -> tuple[int, int] | None:
        """Best sort key (-priority, submission index) among the tasks ``agent`` may claim
        now, computed from the kernel's own views (pinning from the model)."""
        if agent not in self.m.agents:
            return None
        stats = self.k.stats()
        queues = {q.name: q for q in stats.queues}
        me = next(a for a in stats.agents if a.id == agent)
        order = {tid: i for i, tid in enumerate(self.ids)}
        best = None
        for t in self.k.tasks(status="READY"):
            q = queues[t.queue]
            if t.queue not in me.capabilities or q.paused:
                continue
            if q.max_concurrent and q.running >= q.max_concurrent:
                continue
            if self.m.tasks[t.id].pinned not in (None, agent):
                continue
            key = (-t.priority, order[t.id])
            best = key if best is None or key < best else best
        return best

    def check_claim(self, agent: str, lease, best) -> None:
        """A claim took the best eligible task, and its queue is within its limit."""
        order = {tid: i for i, tid in enumerate(self.ids)}
        view = self.k.task(lease.task_id)
        assert (-view.priority, order[lease.task_id]) == best, "claim skipped a better task"
        q = next(q for q in self.k.stats().queues if q.name == view.queue)
        assert not q.max_concurrent or q.running <= q.max_concurrent

    # --- setup ------------------------------------------------------------------------

    def make_kernel(self, seed: int) -> Any:
        """The kernel under test (a subclass may put a client in front of it)."""
        return Kernel.in_memory(clock=self.clock, seed=seed)

    @initialize(seed=st.integers(0, 3))
    def setup(self, seed: int) -> None:
        self.seed = seed
        self.k = self.make_kernel(seed)
        self.m = Model(self.clock.time_ns, seed=seed)
        for side in (self.k, self.m):
            side.declare_queue("q0")
            side.declare_queue("q1", max_concurrent=2)
            side.register_agent("a0", capabilities=["q0", "q1"], capacity=2)
            side.register_agent("a1", capabilities=["q1"], capacity=1)

    def teardown(self) -> None:
        if self.k is not None:
            event(f"leases issued: {min(len(self.leases), 10) // 5 * 5}+, tasks: "
                  f"{min(len(self.ids), 20) // 5 * 5}+")
            self.k.close()

    # --- queues and agents ------------------------------------------------------------

    ADMIN = st.one_of(
        st.tuples(st.just("declare"), st.sampled_from(QUEUES[:3]), st.integers(0, 3),
                  st.booleans()),
        st.tuples(st.just("register"), st.sampled_from(AGENTS[:3]),
                  st.lists(st.sampled_from(QUEUES), min_size=1, max_size=3, unique=True),
                  st.integers(1, 3)),
        st.tuples(st.just("online"), st.sampled_from(AGENTS), st.booleans()),
        st.tuples(st.just("pause"), st.sampled_from(QUEUES), st.booleans()),
    )

    @rule(op=ADMIN)
    def admin(self, op):
        """Declare or re-declare a queue, register an agent, take an agent offline or back
        online, pause or resume a queue."""
        kind, name, *args = op
        k, m = self.k, self.m
        if kind == "declare":
            mc, paused = args
            self.both(lambda: k.declare_queue(name, max_concurrent=mc, paused=paused),
                      lambda: m.declare_queue(name, max_concurrent=mc, paused=paused))
        elif kind == "register":
            caps, capacity = args
            self.both(lambda: k.register_agent(name, capabilities=caps, capacity=capacity),
                      lambda: m.register_agent(name, capabilities=caps, capacity=capacity))
        elif kind == "online":
            if args[0]:
                self.both(lambda: k.agent_online(name), lambda: m.agent_online(name))
            else:
                self.both(lambda: k.agent_offline(name), lambda: m.agent_offline(name))
        elif args[0]:
            self.both(lambda: k.pause_queue(name), lambda: m.pause_queue(name))
        else:
            self.both(lambda: k.resume_queue(name), lambda: m.resume_queue(name))

    # --- submission -------------------------------------------------------------------

    @rule(queue=st.sampled_from(QUEUES[:3] * 3 + QUEUES[3:]),
          priority=st.sampled_from([0, 1, 2, 2, 3, 5, 1000]),
          deps=st.lists(picks, max_size=3), unknown_dep=st.integers(0, 15),
          explicit=st.one_of(st.none(), st.none(), st.sampled_from(EXPLICIT_IDS)),
          pinned=st.one_of(st.none(), st.none(), st.none(), st.sampled_from(AGENTS)),
          delay=st.sampled_from([None, None, None, 0.0, 0.5, 2.0]),
          not_before=st.sampled_from([None, None, None, None, -1.0, 1.5]),
          max_attempts=st.integers(1, 3), timeout=st.sampled_from([0.5, 1.0, 2.0, 5.0]),
          backoff=backoffs, key=st.sampled_from(KEYS))
    def submit(self, queue, priority, deps, unknown_dep, explicit, pinned, delay, not_before,
               max_attempts, timeout, backoff, key):
        dep_ids = list(dict.fromkeys(self.task_id(d) for d in deps)) if self.ids else []
        if unknown_dep == 0:
            dep_ids.append("ghost")
        kw = dict(priority=priority, depends_on=dep_ids, id=explicit, agent=pinned,
                  delay=delay, max_attempts=max_attempts, timeout=timeout, backoff=backoff,
                  key=key, payload={"n": len(self.ids)})
        if not_before is not None:
            kw["not_before"] = self.clock.now() + not_before
        kr, mr, err = self.both(lambda: self.k.submit(queue, **kw),
                                lambda: self.m.submit(queue, **kw))
        if err is None:
            assert kr == mr
            if kr not in self.ids:
                self.ids.append(kr)

    @rule(n=st.integers(1, 4), queue=st.sampled_from(QUEUES[:3]),
          links=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), max_size=4),
          outside=st.lists(st.tuples(st.integers(0, 3), picks), max_size=2),
          keyed=st.sampled_from([None, None, 0]),
          priority=st.sampled_from([1, 2, 3]))
    def submit_many(self, n, queue, links, outside, keyed, priority):
        """A batch with forward references (link (i, j): task i depends on task j of the
        batch; i == j is a self-dependency, i -> j -> i a cycle)."""
        self.batches += 1
        bids = [f"b{self.batches}-{i}" for i in range(n)]
        specs = [{"queue": queue, "id": b, "priority": priority, "depends_on": [],
                  "timeout": 2.0} for b in bids]
        for i, j in links:
            if i < n and j < n and bids[j] not in specs[i]["depends_on"]:
                specs[i]["depends_on"].append(bids[j])
        for i, d in outside:
            if i < n and self.ids and self.task_id(d) not in specs[i]["depends_on"]:
                specs[i]["depends_on"].append(self.task_id(d))
        if keyed is not None:
            specs[keyed]["key"] = "k0"
        kr, mr, err = self.both(lambda: self.k.submit_many([dict(s) for s in specs]),
                                lambda: self.m.submit_many([dict(s) for s in specs]))
        if err is None:
            assert kr == mr
            submitted = [tid for tid in self.m.tasks if tid not in self.ids]
            self.ids.extend(sorted(submitted, key=lambda t: self.m.tasks[t].seq))

    @rule(queue=st.sampled_from(["q0", "q1"]), priority=st.sampled_from([1, 2, 3]),
          chain=st.booleans(), timeout=st.sampled_from([0.5, 2.0]),
          max_attempts=st.integers(1, 3))
    def submit_simple(self, queue, priority, chain, timeout, max_attempts):
        """A valid submit, optionally depending on the latest task (weights the run
        towards work that can actually be claimed)."""
        deps = [self.ids[-1]] if chain and self.ids else []
        kw = dict(priority=priority, depends_on=deps, timeout=timeout,
                  max_attempts=max_attempts, backoff={"initial": 0.5, "factor": 2.0})
        kr, mr, err = self.both(lambda: self.k.submit(queue, **kw),
                                lambda: self.m.submit(queue, **kw))
        if err is None:
            assert kr == mr
            self.ids.append(kr)

    submit_simple_2 = submit_simple

    # --- claims and leases ------------------------------------------------------------

    @rule(agent=st.sampled_from(AGENTS[:3] * 3 + AGENTS[3:]))
    def claim(self, agent):
        best = self.claim_expectation(agent)
        kr, mr, err = self.both(lambda: self.k.claim(agent), lambda: self.m.claim(agent))
        if err is not None:
            return
        assert (kr is None) == (mr is None), f"kernel: {kr!r} / model: {mr!r}"
        assert (kr is None) == (best is None)
        event(f"claim got a task: {kr is not None}")
        if kr is not None:
            self.same_lease(kr, mr)
            self.check_claim(agent, kr, best)
            self.leases.append((kr, mr))

    @rule(agent=st.sampled_from(AGENTS), n=st.integers(0, 3))
    def claim_many(self, agent, n):
        kr, mr, err = self.both(lambda: self.k.claim_many(agent, n),
                                lambda: self.m.claim_many(agent, n))
        if err is None:
            assert len(kr) == len(mr), f"kernel: {kr!r} / model: {mr!r}"
            for kl, ml in zip(kr, mr):
                self.same_lease(kl, ml)
                self.leases.append((kl, ml))

    @rule(agent=st.sampled_from(["a0", "a0", "a1", "a2"]),
          outcome=st.sampled_from(["complete", "complete", "fail", "fail-final", "release",
                                   "keep"]))
    def claim_and_finish(self, agent, outcome):
        """Claim, then at once complete / fail / release the lease (or keep it running)."""
        self.claim(agent)
        if not self.leases or self.leases[-1][0].agent_id != agent:
            return
        kl, ml = self.leases[-1]
        if outcome == "complete":
            self.both(lambda: self.k.complete(kl, result=kl.lease_id),
                      lambda: self.m.complete(ml, result=ml.lease_id))
        elif outcome.startswith("fail"):
            retryable = outcome == "fail"
            self.both(lambda: self.k.fail(kl, error="x", retryable=retryable),
                      lambda: self.m.fail(ml, error="x", retryable=retryable))
        elif outcome == "release":
            self.both(lambda: self.k.release(kl), lambda: self.m.release(ml))

    claim_and_finish_2 = claim_and_finish

    @precondition(lambda self: self.leases)
    @rule(i=picks, op=st.sampled_from(["complete", "complete", "fail", "fail-final", "release",
                                       "heartbeat", "complete-twice", "complete-and-claim"]),
          result=st.sampled_from([None, 1, "ok", {"a": [1, 2]}]))
    def lease_op(self, i, op, result):
        """complete / fail / release / heartbeat any lease ever issued (many are stale)."""
        kl, ml = self.leases[i % len(self.leases)]
        k, m = self.k, self.m
        if op == "complete":
            self.both(lambda: k.complete(kl, result=result), lambda: m.complete(ml, result=result))
        elif op.startswith("fail"):
            retryable = op == "fail"
            self.both(lambda: k.fail(kl, error="boom", retryable=retryable),
                      lambda: m.fail(ml, error="boom", retryable=retryable))
        elif op == "release":
            self.both(lambda: k.release(kl), lambda: m.release(ml))
        elif op == "heartbeat":
            kr, mr, err = self.both(lambda: k.heartbeat(kl), lambda: m.heartbeat(ml))
            if err is None:
                assert kr == mr
        elif op == "complete-and-claim":
            kr, mr, err = self.both(lambda: k.complete_and_claim(kl, result),
                                    lambda: m.complete_and_claim(ml, result))
            if err is None:
                assert (kr is None) == (mr is None), f"kernel: {kr!r} / model: {mr!r}"
                if kr is not None:
                    self.same_lease(kr, mr)
                    self.leases.append((kr, mr))
        else:
            self.both(lambda: k.complete(kl), lambda: m.complete(ml))
            _, _, err = self.both(lambda: k.complete(kl), lambda: m.complete(ml))
            assert isinstance(err, StaleLeaseError), "completing twice was accepted"

    # --- time -------------------------------------------------------------------------

    @rule(seconds=st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, 5.0, 31.0]), tick=st.booleans())
    def advance(self, seconds, tick):
        self.clock.advance(seconds)
        if tick:
            kr, mr, _ = self.both(self.k.tick, self.m.tick)
            assert kr == mr
            event(f"tick expired>0: {kr['expired'] > 0}, ready>0: {kr['ready'] > 0}")

    # --- cancel and requeue -----------------------------------------------------------

    @rule(i=picks, unknown=st.integers(0, 15))
    def cancel(self, i, unknown):
        tid = "ghost" if unknown == 0 or not self.ids else self.task_id(i)
        kr, mr, err = self.both(lambda: self.k.cancel(tid), lambda: self.m.cancel(tid))
        if err is None:
            assert kr[0] == mr[0] == tid
            assert sorted(kr[1:]) == sorted(mr[1:]), f"kernel: {kr} / model: {mr}"
            assert len(kr) == len(set(kr))
            event(f"cancel cascaded: {len(kr) > 1}")

    @rule(i=picks, unknown=st.integers(0, 15))
    def requeue(self, i, unknown):
        tid = "ghost" if unknown == 0 or not self.ids else self.task_id(i)
        self.both(lambda: self.k.requeue(tid), lambda: self.m.requeue(tid))

    # --- invariants -------------------------------------------------------------------

    @invariant()
    def core_invariants_hold(self):
        if self.k is not None:
            assert self.k.check()

    @invariant()
    def same_state_as_model(self):
        if self.k is None:
            return
        views = self.k.tasks()
        assert [v.id for v in views] == self.ids
        for v in views:
            t = self.m.tasks[v.id]
            assert v.status == t.status, f"{v.id}: kernel {v.status} / model {t.status}"
            expect_due = (t.due_ns / NS if t.due_ns else None) if t.status in (
                "PENDING", "RETRYING") else None
            assert (v.attempts, v.max_attempts, v.priority, v.queue, v.agent, v.lease_id,
                    v.dead_lettered, v.cancelled_upstream, v.result, v.error, v.due_at,
                    v.depends_on) == (
                t.attempts, t.max_attempts, t.priority, t.queue, t.agent, t.lease_id,
                t.dead_lettered, t.cancelled_upstream, t.result, t.error, expect_due,
                t.depends_on), f"task {v.id}: kernel {v!r} / model {t!r}"
            if t.status == "RUNNING":
                assert v.expires_at == t.expires_ns / NS
        stats = self.k.stats()
        assert stats.counts == self.m.counts()
        # the per-queue and per-priority breakdowns add up the model's tasks
        per_queue: dict = {}
        per_prio: dict = {}
        for t in self.m.tasks.values():
            per_queue.setdefault(t.queue, Counter())[t.status] += 1
            per_prio.setdefault(t.priority, Counter())[t.status] += 1
        assert {q.name: Counter({s: n for s, n in q.counts.items() if n})
                for q in stats.queues if any(q.counts.values())} == per_queue
        assert {p: Counter({s: n for s, n in c.items() if n})
                for p, c in stats.by_priority.items()} == per_prio

    @invariant()
    def leases_capacity_and_dependencies(self):
        if self.k is None:
            return
        views = {v.id: v for v in self.k.tasks()}
        running = [v for v in views.values() if v.status == "RUNNING"]
        lease_ids = [v.lease_id for v in running]
        assert None not in lease_ids and len(set(lease_ids)) == len(lease_ids)
        stats = self.k.stats()
        held = [le["lease_id"] for a in stats.agents for le in a.leases]
        assert sorted(held) == sorted(lease_ids), "a lease is held twice or lost"
        for a in stats.agents:
            assert a.active == len(a.leases) <= a.capacity
        for v in views.values():
            if v.status in ("RUNNING", "COMPLETED"):
                assert all(views[d].status == "COMPLETED" for d in v.depends_on), v.id


TestScheduler = SchedulerMachine.TestCase
TestScheduler.settings = settings(settings.default,
                                  max_examples=settings.default.max_examples * 4)
