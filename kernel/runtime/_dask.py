"""Handlers on a Dask cluster: :class:`DaskExecutor` (private module; exported by
:mod:`eskernel.runtime`).

The kernel keeps the lease: the runtime claims the task, hands the handler and payload to
``dask.distributed`` with ``Client.submit``, heartbeats the lease while the Dask future is
pending, and completes or fails the task with the lease when it settles.  An attempt that
overruns its timeout is failed and its Dask future cancelled.

Only coarse tasks belong there: Dask documents about 1 ms of overhead per task, so a task
that runs for less than ~10 ms is faster in a thread or process pool of the runtime; batch
fine-grained work into one task.  The function and payload travel with Dask's own
serialization (cloudpickle between the client and its workers); nothing read from the log is
unpickled.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from ..errors import DaskUnavailableError

__all__ = ["DaskExecutor"]


class DaskExecutor:
    """Run handlers on a ``dask.distributed`` client: ``rt.register(key, fn,
    executor=DaskExecutor(client))``, or ``executor="dask"`` for the default client.

    Args:
        client: a ``distributed.Client`` (synchronous, i.e. not ``asynchronous=True``).
        pure: passed to ``Client.submit``; False (the default) runs every attempt even
            when an earlier attempt had the same payload.

    Raises:
        DaskUnavailableError: ``distributed`` is not installed, or ``client`` is not a
            ``distributed.Client``.
    """

    def __init__(self, client: Any, *, pure: bool = False) -> None:
        try:
            from distributed import Client
        except ImportError as err:
            raise DaskUnavailableError(
                "executor='dask' needs dask.distributed: pip install 'eskernel[dask]'") from err
        if not isinstance(client, Client):
            raise DaskUnavailableError(
                f"DaskExecutor needs a distributed.Client, got {type(client).__name__}; "
                "create one with distributed.Client(...) (or LocalCluster) and pass it")
        if getattr(client, "asynchronous", False):
            raise DaskUnavailableError(
                "DaskExecutor needs a synchronous distributed.Client (asynchronous=False): "
                "the runtime waits on its futures from its own event loop")
        if type(pure) is not bool:
            raise DaskUnavailableError(f"pure must be a bool, got {pure!r}")
        self.client = client
        self.pure = pure

    @classmethod
    def default(cls) -> DaskExecutor:
        """An executor on the current default ``distributed`` client.

        Raises:
            DaskUnavailableError: no client is running in this process.
        """
        try:
            from distributed import default_client
        except ImportError as err:
            raise DaskUnavailableError(
                "executor='dask' needs dask.distributed: pip install 'eskernel[dask]'") from err
        try:
            client = default_client()      # type: ignore[no-untyped-call]
        except ValueError as err:
            raise DaskUnavailableError(
                "executor='dask' found no running distributed.Client; create one first, or "
                "pass executor=DaskExecutor(client)") from err
        return cls(client)

    def submit(self, fn: Callable[[Any], Any], payload: Any,
               loop: asyncio.AbstractEventLoop) -> asyncio.Future[Any]:
        """Submit ``fn(payload)``; returns an asyncio future of ``loop`` settled with its
        outcome.  Cancelling the returned future cancels the Dask task."""
        afut: asyncio.Future[Any] = loop.create_future()
        dfut = self.client.submit(fn, payload, pure=self.pure)

        def settle(value: Any, exc: BaseException | None) -> None:     # on ``loop``
            if afut.done():
                return
            if exc is not None:
                afut.set_exception(exc)
            else:
                afut.set_result(value)

        def on_dask_done(f: Any) -> None:      # on a thread of the Dask client
            value: Any = None
            exc: BaseException | None = None
            try:
                if f.status == "cancelled":
                    exc = asyncio.CancelledError()
                else:
                    value = f.result()
            except BaseException as err:       # the handler's exception, re-raised by Dask
                exc = err
            if not loop.is_closed():
                loop.call_soon_threadsafe(settle, value, exc)

        def on_cancel(f: asyncio.Future[Any]) -> None:
            if f.cancelled():
                dfut.cancel()      # type: ignore[no-untyped-call]

        afut.add_done_callback(on_cancel)
        dfut.add_done_callback(on_dask_done)       # type: ignore[no-untyped-call]
        return afut

    def __repr__(self) -> str:
        return f"<DaskExecutor {self.client!r}>"
