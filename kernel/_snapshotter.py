"""When snapshots are taken, written and pruned; off the calling thread.

A snapshot is never ahead of the log: before one is written, the log is synced through the
last record it covers, and the snapshot carries that record's fingerprint, which opening
checks against the log.  Automatic snapshots are captured at a safe point (between calls)
and encoded and written by one background thread, so the call that triggered one pays only
the capture; a failed one is logged and counted (:meth:`Snapshotter.status`), never raised
to that call.  After each, the directory keeps the ``keep`` newest.

Spacing: one is due every ``every`` events, and only once the log has grown by at least
``growth`` (default ``GROWTH``) times the last snapshot's size since it, so the bytes spent
on snapshots stay a bounded multiple of the log's.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from eskernel.eventlog.framing import SEGMENT_SUFFIX
from eskernel.eventlog.snapshots import list_snapshots, prune_snapshots, snapshot_path

from ._snapshot import Capture, tail_hash
from .errors import EskernelError, LogWriteError

log = logging.getLogger("eskernel.kernel")
#: The log must grow by this fraction of the last snapshot's size before the next is due.
GROWTH = 0.5


def log_bytes(directory: Path) -> int:
    """Bytes in the log's segment files (one directory listing)."""
    with os.scandir(directory) as it:
        return sum(e.stat().st_size for e in it if e.name.endswith(SEGMENT_SUFFIX))


class Snapshotter:
    """Takes the snapshots of one durable kernel.  Its methods run on the kernel's thread."""

    def __init__(self, event_log: Any, keep: int, growth: float = GROWTH) -> None:
        self._log = event_log
        self._dir = Path(event_log.path)
        self.keep = keep
        self.growth = growth
        self.taken = self.failed = 0
        self.last_error: str | None = None
        self.last_offset: int | None = None
        self._thread: threading.Thread | None = None
        offsets = list_snapshots(self._dir)
        self._last_size = snapshot_path(self._dir, offsets[-1]).stat().st_size if offsets else 0
        self._log_at_last = log_bytes(self._dir) if offsets else 0

    def status(self) -> dict[str, Any]:
        """Counters: taken, failed, last_offset, last_error, in_progress, keep."""
        return {"taken": self.taken, "failed": self.failed, "last_offset": self.last_offset,
                "last_error": self.last_error, "in_progress": self.busy(), "keep": self.keep}

    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def maybe(self, state: Any) -> None:
        """Start a background snapshot of ``state`` if the log grew enough and none runs."""
        if self.busy():
            return
        grown = log_bytes(self._dir)
        if grown - self._log_at_last < self.growth * self._last_size:
            return
        cap = Capture(state)
        self._thread = threading.Thread(target=self._background, args=(cap, grown),
                                        name="eskernel-snapshot", daemon=True)
        self._thread.start()

    def now(self, state: Any) -> int:
        """Write a snapshot of ``state`` before returning (waits for one in flight).

        Raises:
            LogWriteError: the snapshot could not be written (the kernel is unaffected).
        """
        self.wait()
        cap = Capture(state)
        try:
            self._write(cap, log_bytes(self._dir))
        except OSError as err:
            self._count_failure(err)
            raise LogWriteError(f"writing the snapshot at offset {cap.applied} failed: {err}; "
                                "the kernel and its log are unaffected") from err
        except EskernelError as err:
            self._count_failure(err)
            raise
        return cap.applied

    def wait(self) -> None:
        """Wait for the snapshot in flight, if any."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _background(self, cap: Capture, grown: int) -> None:
        try:
            self._write(cap, grown)
        except Exception as err:  # any failure is reported, never raised to a caller
            self._count_failure(err)
            log.warning("snapshot at offset %d in %s failed (%s: %s); the log is unaffected "
                        "and the next snapshot will be tried later", cap.applied, self._dir,
                        type(err).__name__, err)

    def _count_failure(self, err: BaseException) -> None:
        self.failed += 1
        self.last_error = f"{type(err).__name__}: {err}"

    def _write(self, cap: Capture, grown: int) -> None:
        # Durable through the last covered record first: a snapshot never runs ahead.
        self._log.sync()
        tail = tail_hash(self._log.read_batch(cap.applied - 1, 1)[0]) if cap.applied else b""
        snap = self._log.write_snapshot(cap.applied, cap.encode(tail))
        self._last_size = snap.path.stat().st_size
        self._log_at_last = grown
        self.taken += 1
        self.last_offset = cap.applied
        prune_snapshots(self._dir, self.keep)
