"""A served kernel with a small workload for the dashboard tests: two queues, an agent, tasks
in several states (one holding an HTML payload, one dead-lettered), and a token file with
an admin and a producer token."""

from __future__ import annotations

import http.client
from pathlib import Path
from typing import Any

from eskernel.service import Client, Tokens
from eskernel.service.auth import Identity
from eskernel.service.run import ServerThread

ADMIN = "admin-token-dashboard-0000"
PRODUCER = "producer-token-dashboard-0"
HOSTILE = "<script>document.title='owned'</script><img src=x onerror=alert(1)>"
CSRF = {"X-Eskernel-Csrf": "1"}


def start(log: Path, sock: str, n_tasks: int = 12) -> ServerThread:
    """A server on ``sock`` with HTTP on 127.0.0.1 (a free port) and the workload."""
    tokens = Tokens([(ADMIN.encode(), Identity("admin")),
                     (PRODUCER.encode(), Identity("producer"))])
    st = ServerThread(log, unix=sock, tokens=tokens, http="127.0.0.1:0")
    with Client(st.address, token=ADMIN) as c:
        c.declare_queue("q")
        c.declare_queue("batch")
        c.register_agent("w", ["q", "batch"], 2)
        c.submit("q", {"html": HOSTILE}, id="hostile", name="<b>bold</b>")
        c.submit("q", {"n": 0}, id="dead", max_attempts=1)
        c.fail(c.claim("w"), "<i>boom</i>", retryable=False)   # 'hostile' goes first
        c.fail(c.claim("w"), "boom", retryable=False)
        c.requeue("hostile")
        for i in range(n_tasks):
            c.submit("batch" if i % 3 else "q", {"i": i}, id=f"t{i}")
        c.complete(c.claim("w"), {"ok": True})
        c.claim("w")                      # one running task
    return st


def kernel_call(st: ServerThread, fn: Any) -> Any:
    """``fn(kernel)`` on the server's loop thread."""
    assert st.server is not None
    kernel = st.server.kernel
    return st.call(lambda: fn(kernel))


def request(st: ServerThread, method: str, path: str, headers: dict[str, str] | None = None,
            body: bytes | None = None, address: tuple[str, int] | None = None
            ) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request on a fresh connection (to ``address`` or the server's first HTTP
    address): status, headers (lower-case), body."""
    assert st.server is not None
    host, port = address or st.server.http_addresses[0]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()
