"""Hypothesis strategies for ids, specs and whole workloads, and the driver that plays a
workload against a kernel.

A *workload* is a list of small tuples (see :func:`workloads`) whose arguments are plain
indices; :func:`play` resolves them against what exists at that moment (modulo the number of
tasks or leases), so every generated list is runnable and shrinks well.  Rejected commands
are expected (stale leases, cancelling a finished task...): :func:`play` swallows typed
kernel errors and records which commands were acknowledged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from hypothesis import strategies as st

# Durations are multiples of 1/4 s so that seconds <-> ns conversions are exact.
QUARTERS = st.integers(1, 40).map(lambda n: n / 4)

ids = st.from_regex(r"[A-Za-z0-9._:@/+-]{1,12}", fullmatch=True)
priorities = st.sampled_from([0, 1, 2, 2, 3, 4, 5, 1000])
timeouts = st.sampled_from([0.5, 1.0, 2.0, 5.0, 30.0])
max_attempts = st.integers(1, 3)

backoffs = st.one_of(
    st.none(),
    st.builds(dict, initial=st.sampled_from([0.0, 0.25, 1.0]), factor=st.sampled_from([1.0, 2.0]),
              max=st.sampled_from([0.5, 4.0, 60.0]), jitter=st.just(0.0)),
    st.builds(dict, initial=st.sampled_from([0.5, 1.0, 3.0]), factor=st.sampled_from([1.5, 2.0]),
              max=st.sampled_from([2.0, 60.0]), jitter=st.sampled_from([0.1, 0.5, 1.0])),
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)

# --- workloads ---------------------------------------------------------------------------

QUEUES = [("q0", 0), ("q1", 2), ("q2", 0)]
AGENTS = [("a0", ["q0", "q1"], 2), ("a1", ["q1", "q2"], 1), ("a2", ["q0", "q2"], 3)]

_idx = st.integers(0, 1_000)
_submit = st.tuples(st.just("submit"), st.integers(0, len(QUEUES) - 1), priorities,
                    st.lists(_idx, max_size=2), max_attempts, timeouts,
                    st.sampled_from([None, None, 0.5, 2.0]), st.booleans(), backoffs)
_command = st.one_of(
    _submit, _submit,
    st.tuples(st.just("claim"), st.integers(0, len(AGENTS) - 1)),
    st.tuples(st.just("claim"), st.integers(0, len(AGENTS) - 1)),
    st.tuples(st.just("claim_many"), st.integers(0, len(AGENTS) - 1), st.integers(1, 3)),
    st.tuples(st.just("complete"), _idx),
    st.tuples(st.just("complete"), _idx),
    st.tuples(st.just("fail"), _idx, st.booleans()),
    st.tuples(st.just("release"), _idx),
    st.tuples(st.just("heartbeat"), _idx),
    st.tuples(st.just("advance"), QUARTERS),
    st.tuples(st.just("tick")),
    st.tuples(st.just("cancel"), _idx),
    st.tuples(st.just("requeue"), _idx),
    st.tuples(st.just("pause"), st.integers(0, len(QUEUES) - 1)),
    st.tuples(st.just("resume"), st.integers(0, len(QUEUES) - 1)),
    st.tuples(st.just("offline"), st.integers(0, len(AGENTS) - 1)),
    st.tuples(st.just("online"), st.integers(0, len(AGENTS) - 1)),
    st.tuples(st.just("batch"), st.integers(1, 4), st.integers(0, len(QUEUES) - 1), priorities),
)


def workloads(min_size: int = 1, max_size: int = 60) -> st.SearchStrategy[list[tuple]]:
    """Lists of workload commands (tuples) for :func:`play`."""
    return st.lists(_command, min_size=min_size, max_size=max_size)


@dataclass
class Driver:
    """Plays workload commands against one kernel, keeping the tasks and leases it made.

    ``on_ack(cmd, result)`` is called after every acknowledged (not rejected) command.
    """

    kernel: Any
    clock: Any
    tasks: list[str] = field(default_factory=list)
    leases: list[Any] = field(default_factory=list)
    on_ack: Callable[[tuple, Any], None] | None = None
    batches: int = 0

    def setup(self) -> None:
        for name, mc in QUEUES:
            self.kernel.declare_queue(name, max_concurrent=mc)
        for name, caps, cap in AGENTS:
            self.kernel.register_agent(name, capabilities=caps, capacity=cap)

    def _task(self, i: int) -> str | None:
        return self.tasks[i % len(self.tasks)] if self.tasks else None

    def _lease(self, i: int) -> Any:
        return self.leases[i % len(self.leases)] if self.leases else None

    def play(self, commands: list[tuple]) -> None:
        for cmd in commands:
            self.step(cmd)

    def step(self, cmd: tuple) -> Any:
        """Run one command; returns its result, or the typed error it was rejected with."""
        from eskernel.errors import EskernelError

        try:
            result = self._run(cmd)
        except EskernelError as err:
            return err
        if result is not _SKIP and self.on_ack is not None:
            self.on_ack(cmd, result)
        return result

    def _run(self, cmd: tuple) -> Any:
        k = self.kernel
        op = cmd[0]
        if op == "submit":
            _, q, prio, deps, ma, timeout, delay, pin, backoff = cmd
            queue = QUEUES[q][0]
            dep_ids = sorted({self._task(d) for d in deps if self.tasks})
            agent = None
            if pin:
                agent = next(a for a, caps, _ in AGENTS if queue in caps)
            tid = k.submit(queue, {"n": len(self.tasks)}, priority=prio, depends_on=dep_ids,
                           max_attempts=ma, timeout=timeout, delay=delay, agent=agent,
                           backoff=backoff)
            self.tasks.append(tid)
            return tid
        if op == "batch":
            _, n, q, prio = cmd
            self.batches += 1
            ids = [f"b{self.batches}-{i}" for i in range(n)]
            # each task depends on the next one (a forward reference) and on the last task
            # submitted so far
            specs = []
            for i, tid in enumerate(ids):
                deps = [ids[i + 1]] if i + 1 < n else []
                if self.tasks and i == 0:
                    deps.append(self.tasks[-1])
                specs.append({"queue": QUEUES[q][0], "id": tid, "priority": prio,
                              "depends_on": deps, "timeout": 2.0})
            out = k.submit_many(specs)
            self.tasks.extend(out)
            return out
        if op == "claim":
            lease = k.claim(AGENTS[cmd[1]][0])
            if lease is not None:
                self.leases.append(lease)
            return lease
        if op == "claim_many":
            got = k.claim_many(AGENTS[cmd[1]][0], cmd[2])
            self.leases.extend(got)
            return got
        if op in ("complete", "fail", "release", "heartbeat"):
            lease = self._lease(cmd[1])
            if lease is None:
                return _SKIP
            if op == "complete":
                return k.complete(lease, result={"lease": lease.lease_id})
            if op == "fail":
                return k.fail(lease, error="boom", retryable=cmd[2])
            if op == "release":
                return k.release(lease)
            return k.heartbeat(lease)
        if op == "advance":
            self.clock.advance(cmd[1])
            return _SKIP
        if op == "tick":
            return k.tick()
        if op in ("cancel", "requeue"):
            tid = self._task(cmd[1])
            if tid is None:
                return _SKIP
            return k.cancel(tid) if op == "cancel" else k.requeue(tid)
        if op in ("pause", "resume"):
            name = QUEUES[cmd[1]][0]
            return k.pause_queue(name) if op == "pause" else k.resume_queue(name)
        if op in ("offline", "online"):
            name = AGENTS[cmd[1]][0]
            return k.agent_offline(name) if op == "offline" else k.agent_online(name)
        raise AssertionError(f"unknown workload command {cmd!r}")


_SKIP = object()
