"""The stateful model test of tests/test_scheduler_stateful.py, with every command sent
through a :class:`eskernel.service.Client` to a server of the kernel: the same outcomes,
errors (by class), states and invariants as in-process."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path


from eskernel import Kernel
from tests.service.helpers import RemoteKernel
from tests.test_scheduler_stateful import SchedulerMachine


class RemoteSchedulerMachine(SchedulerMachine):
    def make_kernel(self, seed: int) -> RemoteKernel:
        self.sockdir = Path(tempfile.mkdtemp(prefix="esk", dir="/tmp"))
        kernel = Kernel.in_memory(clock=self.clock, seed=seed)
        return RemoteKernel(kernel, str(self.sockdir / "s"), reconnect=0)

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            shutil.rmtree(getattr(self, "sockdir", "/nonexistent"), ignore_errors=True)


TestRemoteScheduler = RemoteSchedulerMachine.TestCase
