"""The stateful model test of tests/test_scheduler_stateful.py, with every command sent
through a :class:`eskernel.service.Client` to a server of the kernel: the same outcomes,
errors (by class), states and invariants as in-process."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis.stateful import initialize
from hypothesis import strategies as st

from eskernel import Kernel
from tests.model import Model
from tests.service.helpers import RemoteKernel
from tests.test_scheduler_stateful import SchedulerMachine


class RemoteSchedulerMachine(SchedulerMachine):
    @initialize(seed=st.integers(0, 3))
    def setup(self, seed: int) -> None:
        self.seed = seed
        self.sockdir = Path(tempfile.mkdtemp(prefix="esk", dir="/tmp"))
        kernel = Kernel.in_memory(clock=self.clock, seed=seed)
        self.k = RemoteKernel(kernel, str(self.sockdir / "s"), reconnect=0)
        self.m = Model(self.clock.time_ns, seed=seed)
        for side in (self.k, self.m):
            side.declare_queue("q0")
            side.declare_queue("q1", max_concurrent=2)
            side.register_agent("a0", capabilities=["q0", "q1"], capacity=2)
            side.register_agent("a1", capabilities=["q1"], capacity=1)

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            shutil.rmtree(getattr(self, "sockdir", "/nonexistent"), ignore_errors=True)


TestRemoteScheduler = RemoteSchedulerMachine.TestCase
