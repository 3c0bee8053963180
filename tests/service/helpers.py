"""Servers for the service tests: in this process on a thread, or as an `eskernel serve`
child process (killed by pid in teardown)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from eskernel.service import Client
from eskernel.service.run import ServerThread
from eskernel.service.server import ServerConfig

__all__ = ["ServerThread", "ServerProcess", "RemoteKernel", "quiet_config", "raw_connect"]


def quiet_config(**kw: Any) -> ServerConfig:
    """No background tick: tests with a manual clock tick explicitly."""
    kw.setdefault("tick_interval", 0)
    return ServerConfig(**kw)


class RemoteKernel(Client):
    """A Client to an in-process server of ``kernel``, with the Kernel's test-only calls
    (digest, check, tick, close) run on the server's loop thread."""

    def __init__(self, kernel: Any, sock: str, **kw: Any) -> None:
        self._server = ServerThread(kernel, unix=sock, config=quiet_config())
        self._kernel = kernel
        super().__init__(self._server.address, **kw)

    def tick(self) -> dict[str, int]:
        return dict(self._call("tick", {}))

    def digest(self) -> str:
        return str(self._server.call(self._kernel.digest))

    def check(self) -> bool:
        return bool(self._server.call(self._kernel.check))

    def close(self) -> None:
        super().close()
        self._server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``eskernel serve DIR`` as a child process on a Unix socket in ``DIR/..``."""

    def __init__(self, directory: Path, sock: Path, *args: str) -> None:
        self.directory, self.sock, self.args = directory, sock, args
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.sock.with_suffix(".log")

    def _log(self) -> Any:
        if getattr(self, "_logf", None) is None:
            self._logf = open(self.log_path, "ab")
        return self._logf

    def start(self) -> "ServerProcess":
        if self.sock.exists():
            self.sock.unlink()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "eskernel", "serve", str(self.directory), "--listen", "",
             "--unix", str(self.sock), *self.args],
            stdout=subprocess.DEVNULL, stderr=self._log())
        for _ in range(600):
            if self.sock.exists():
                try:
                    with socket.socket(socket.AF_UNIX) as s:
                        s.connect(str(self.sock))
                    return self
                except OSError:
                    pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()}")
            time.sleep(0.02)
        raise RuntimeError("server did not start")

    @property
    def address(self) -> str:
        return f"unix:{self.sock}"

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def close(self) -> None:
        self.kill9()
        if getattr(self, "_logf", None) is not None:
            self._logf.close()
            self._logf = None

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def raw_connect(address: str) -> socket.socket:
    path = address[5:]
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(path)
    return s
