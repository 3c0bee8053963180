"""What-if replay: re-run a recorded history under another policy and compare.

The workload is read from a kernel directory's log (read-only: the directory is never
written): each task's submission time, spec and dependencies, each attempt's recorded run
time and outcome, the agents and their online periods, the queues' limits and pauses.  The
real kernel then re-decides that workload in virtual time with the changes applied
(:mod:`eskernel.whatif._sim`), and the recorded and simulated histories are measured by the
same fold (:mod:`eskernel.whatif._metrics`).  This subpackage is a layer above the kernel
and the analytics (whose HTML chart helpers it uses).

>>> import tempfile
>>> from eskernel import Kernel, ManualClock
>>> from eskernel.whatif import whatif
>>> d = tempfile.mkdtemp()
>>> with Kernel.open(d, clock=(c := ManualClock(0.0))) as k:
...     k.declare_queue("q", max_concurrent=1)
...     k.register_agent("w", ["q"], capacity=2)
...     for i in range(2):
...         _ = k.submit("q", id=f"t{i}")
...     lease = k.claim("w"); c.advance(10); k.complete(lease)
...     lease = k.claim("w"); c.advance(10); k.complete(lease)
>>> r = whatif(d, ["queue.q.max_concurrent=2"])
>>> r.baseline["makespan_s"], r.alternative["makespan_s"]
(20.0, 10.0)
"""

from __future__ import annotations

import gc
import math
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .. import events
from ..errors import InvalidSpecError
from ._changes import Changes, settable
from ._metrics import Fold
from ._result import LIMITS, WhatIfResult
from ._sim import simulate
from ._workload import read_workload

__all__ = ["whatif", "WhatIfResult", "Changes", "settable"]


def _window_ns(window: Any) -> tuple[int | None, int | None]:
    if window is None:
        return None, None
    if not isinstance(window, (tuple, list)) or len(window) != 2:
        raise InvalidSpecError(f"window must be (from, until) in seconds since the epoch, "
                               f"either None; got {window!r:.80}")
    out: list[int | None] = []
    for what, v in zip(("from", "until"), window):
        if v is None:
            out.append(None)
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                or not 0 <= v <= 4e9:
            raise InvalidSpecError(f"window {what} must be seconds since the epoch in "
                                   f"[0, 4e9] or None, got {v!r:.80}")
        out.append(round(v * 1e9))
    lo, hi = out
    if lo is not None and hi is not None and hi < lo:
        raise InvalidSpecError(f"window until ({window[1]}) is before from ({window[0]}); "
                               "swap them")
    return lo, hi


def whatif(path: str | os.PathLike[str], changes: Iterable[str] | Mapping[str, Any] = (),
           window: tuple[float | None, float | None] | None = None, *,
           progress: Callable[[int, int], None] | None = None) -> WhatIfResult:
    """Re-simulate the history recorded in ``path`` under ``changes`` and compare.

    Args:
        path: a kernel directory (read, never written; a read-only copy works).
        changes: ``"key=value"`` strings or a mapping (see :mod:`eskernel.whatif._changes`
            for what can be set), e.g. ``["queue.encode.max_concurrent=8",
            "agent.gpu-3=capabilities:render,capacity:2", "task.render.priority=HIGH"]``.
        window: ``(from, until)`` seconds since the epoch, either None: only tasks
            submitted in it are measured, and tasks submitted after ``until`` are not
            simulated.  The changes hold for the whole simulated history.

    Costs one read of the log and one simulation: roughly the log's length times a few
    microseconds per event.

    Raises:
        WhatIfChangeError: a malformed change, an unknown queue/agent/task/setting, or a
            bad value; nothing is simulated.
        InvalidSpecError: a bad window.
        LogNotFoundError, LogCorruptError, LogRecordInvalidError: no or a damaged log.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidSpecError(f"path must be a kernel directory, got {path!r:.80}")
    lo, hi = _window_ns(window)
    # Reading, simulating and measuring retain millions of small objects and make no
    # cycles: the cyclic GC would rescan them again and again, so it is paused.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _whatif(path, changes, lo, hi, progress)
    finally:
        if enabled:
            gc.enable()


def _whatif(path: str | os.PathLike[str], changes: Iterable[str] | Mapping[str, Any],
            lo: int | None, hi: int | None,
            progress: Callable[[int, int], None] | None) -> WhatIfResult:
    base = Fold()
    wl = read_workload(path, until_ns=hi, observe=base.add)
    ch = Changes.parse(changes, queues=set(wl.queues), agents=set(wl.agents),
                       names=set(wl.task_name.values()),
                       tasks=set(wl.task_queue))
    records, sim_flags = simulate(wl, ch, progress)
    alt = Fold()
    loads, add = events.loads, alt.add
    for rec in records:
        add(loads(rec))
    flags = {**wl.flags, **sim_flags}
    return WhatIfResult(str(path), ch.given, (lo, hi), base.summary(lo, hi),
                        alt.summary(lo, hi), flags, LIMITS, wl.events, len(records), records)
