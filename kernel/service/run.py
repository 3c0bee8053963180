"""Running a server: as the ``eskernel serve`` process (signals, uvloop, TLS, tokens), or
on a background thread of this process (:class:`ServerThread`, for tests and embedding).

Invariant: the kernel is opened, served and closed on the server loop's thread only.
"""

from __future__ import annotations

import asyncio
import os
import signal
import ssl as _ssl
import threading
from pathlib import Path
from typing import Any, Callable

from .._kernel import Kernel
from ..errors import InvalidSpecError
from .auth import Tokens
from .server import Server, ServerConfig

__all__ = ["serve", "ServerThread", "new_loop", "tls_context", "parse_listen"]


def new_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop when uvloop is installed, else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``:PORT``, meaning 127.0.0.1) as a pair."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise InvalidSpecError(f"--listen takes HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def tls_context(cert: str | None, key: str | None) -> _ssl.SSLContext | None:
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise InvalidSpecError("TLS needs both --tls-cert and --tls-key")
    ctx = _ssl.create_default_context(_ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


def _open(directory: str | os.PathLike[str], durability: str) -> Kernel:
    if durability not in ("fsync", "write", "buffer"):
        raise InvalidSpecError(f"durability must be 'fsync', 'write' or 'buffer', got "
                               f"{durability!r}")
    # fsync: the log is opened in buffer mode and the server's sync thread writes and
    # syncs it before any reply leaves (group commit over every connection).
    return Kernel.open(directory, durability="buffer" if durability == "fsync" else durability)


async def _main(directory: str | os.PathLike[str] | Kernel, *, listen: tuple[str, int] | None,
                unix: str | None, durability: str, tokens: Tokens,
                ssl: _ssl.SSLContext | None, http: tuple[str, int] | None,
                config: ServerConfig, on_ready: Callable[[Server], None] | None,
                stop: asyncio.Event | None = None) -> None:
    kernel = directory if isinstance(directory, Kernel) else _open(directory, durability)
    server = Server(kernel, tokens, config, fsync=durability == "fsync")
    stop = stop or asyncio.Event()
    http_server = None
    try:
        if unix is not None and Path(unix).is_socket():
            Path(unix).unlink()
        host, port = listen if listen is not None else (None, None)
        await server.start(host, port, unix=unix, ssl=ssl)
        if http is not None:
            from .http import start_http
            http_server = await start_http(server, *http)
        loop = asyncio.get_running_loop()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
        if on_ready is not None:
            on_ready(server)
        await stop.wait()
    finally:
        if http_server is not None:
            http_server.close()
        await server.shutdown()
        if unix is not None and Path(unix).is_socket():
            Path(unix).unlink()


def serve(directory: str | os.PathLike[str], *, listen: str | None = "127.0.0.1:7450",
          unix: str | None = None, durability: str = "write", token_file: str | None = None,
          tls_cert: str | None = None, tls_key: str | None = None, http: str | None = None,
          config: ServerConfig | None = None,
          on_ready: Callable[[Server], None] | None = None) -> None:
    """Own ``directory`` and serve it until SIGTERM or SIGINT, then shut down cleanly: stop
    accepting, refuse new requests, answer parked ones, flush, snapshot, release the lock.

    Raises:
        LogLockedError: another process holds the directory.
        InvalidSpecError: a bad address, durability, token file or TLS option.
    """
    tokens = Tokens.load(token_file) if token_file else Tokens.open()
    ctx = tls_context(tls_cert, tls_key)
    loop = new_loop()
    try:
        loop.run_until_complete(_main(
            directory, listen=parse_listen(listen) if listen else None, unix=unix,
            durability=durability, tokens=tokens, ssl=ctx,
            http=parse_listen(http) if http else None, config=config or ServerConfig(),
            on_ready=on_ready))
    finally:
        loop.close()


class ServerThread:
    """A server on a background thread (tests, benchmarks, embedding).

    >>> import tempfile
    >>> from eskernel.service import Client
    >>> with tempfile.TemporaryDirectory() as d, ServerThread(d) as st:
    ...     with Client(st.address) as c:
    ...         c.declare_queue("q"); c.submit("q", {"n": 1}, id="a")
    'a'
    """

    def __init__(self, directory: str | os.PathLike[str] | Kernel, *,
                 unix: str | None = None,
                 listen: str | None = None, durability: str = "write",
                 tokens: Tokens | None = None, config: ServerConfig | None = None,
                 ssl: _ssl.SSLContext | None = None, http: str | None = None) -> None:
        self.directory = directory
        if unix is None and listen is None:
            if isinstance(directory, Kernel):
                raise InvalidSpecError("serving a Kernel object needs unix= or listen=")
            unix = str(Path(directory) / "eskernel.sock")
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.server: Server | None = None
        self._loop = new_loop()
        self._stop: asyncio.Event | None = None
        args = dict(listen=parse_listen(listen) if listen else None, unix=unix,
                    durability=durability, tokens=tokens or Tokens.open(), ssl=ssl,
                    http=parse_listen(http) if http else None, config=config or ServerConfig())
        self._thread = threading.Thread(target=self._run, args=(args,), daemon=True,
                                        name="eskernel-server")
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        assert self.server is not None
        addr = self.server.addresses[0]
        self.address = f"unix:{addr}" if isinstance(addr, str) else f"{addr[0]}:{addr[1]}"

    def _run(self, args: dict[str, Any]) -> None:
        asyncio.set_event_loop(self._loop)

        def ready(server: Server) -> None:
            self.server = server
            self._ready.set()

        async def main() -> None:
            self._stop = asyncio.Event()
            await _main(self.directory, on_ready=ready, stop=self._stop, **args)

        try:
            self._loop.run_until_complete(main())
        except BaseException as err:
            self._error = err
            self._ready.set()
        finally:
            self._loop.close()

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn()`` on the server's loop thread and return its result (tests inspect
        the kernel this way, never from their own thread)."""
        fut = asyncio.run_coroutine_threadsafe(_call(fn), self._loop)
        return fut.result(30)

    def stop(self) -> None:
        if self._thread.is_alive() and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)
        if self._error is not None and not isinstance(self._error, SystemExit):
            raise self._error

    def __enter__(self) -> "ServerThread":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _call(fn: Callable[[], Any]) -> Any:
    return fn()
