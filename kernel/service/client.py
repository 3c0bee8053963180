"""``eskernel.Client``: a kernel served by ``eskernel serve``, with the Kernel's method names
and errors.

Invariants:

* One connection per client, shared by every thread that calls it: requests are pipelined
  with ids, and whichever caller is waiting reads the socket for everyone (no reader thread
  on the hot path; the thread that waits for a reply usually reads it itself).
* Request ids grow monotonically for the life of the client, across reconnects; a request
  whose connection dropped is sent again with the same id, and the server answers a repeat
  of a state-changing request from its reply cache instead of applying it twice.
* The session heartbeat runs on its own thread: a caller that blocks its own thread or
  event loop keeps its leases.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import queue
import random
import socket
import ssl as _ssl
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from .. import errors
from .._clock import SystemClock
from ..errors import InvalidSpecError, ServiceUnavailableError
from ..models import BackoffPolicy, Stats, TaskSpec, TaskView
from . import protocol as P

__all__ = ["Client", "AsyncClient", "RemoteLease", "parse_address"]

_log = logging.getLogger("eskernel.client")
_NS = 1_000_000_000


class RemoteLease:
    """A lease granted by a server: the fields of :class:`~eskernel.Lease`, plus what the
    worker needs to run the task (``name``, ``queue``, ``payload``, ``max_attempts``,
    ``timeout``)."""

    __slots__ = ("lease_id", "task_id", "agent_id", "attempt", "expires_ns", "name", "queue",
                 "payload", "max_attempts", "timeout")

    def __init__(self, w: list[Any]) -> None:
        (self.lease_id, self.task_id, self.agent_id, self.attempt, self.expires_ns,
         self.name, self.queue, self.payload, self.max_attempts, self.timeout) = w

    @property
    def expires_at(self) -> float:
        return float(self.expires_ns / _NS)

    def __eq__(self, other: object) -> bool:
        return bool(getattr(other, "lease_id", None) == self.lease_id
                    and getattr(other, "task_id", None) == self.task_id)

    def __hash__(self) -> int:
        return hash((self.lease_id, self.task_id))

    def __repr__(self) -> str:
        return (f"RemoteLease(lease_id={self.lease_id}, task_id={self.task_id!r}, "
                f"agent_id={self.agent_id!r}, attempt={self.attempt}, "
                f"expires_at={self.expires_at!r})")


def parse_address(address: str) -> tuple[str, Any]:
    """``("unix", path)`` for ``unix:PATH`` or a path; ``("tcp", (host, port))`` for
    ``HOST:PORT`` or ``tcp://HOST:PORT``.

    Raises:
        InvalidSpecError: anything else.
    """
    if type(address) is not str or not address:
        raise InvalidSpecError(f"address must be 'HOST:PORT' or 'unix:PATH', got {address!r:.80}")
    if address.startswith("unix:"):
        return "unix", address[5:]
    if address.startswith("/") or address.startswith("./"):
        return "unix", address
    if address.startswith("tcp://"):
        address = address[6:]
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidSpecError(f"address must be 'HOST:PORT' or 'unix:PATH', got {address!r:.80}")
    return "tcp", (host.strip("[]") or "127.0.0.1", int(port))


class _Lost(Exception):
    """The connection broke; the call is retried on a new one."""


class _Fatal(Exception):
    """The server answered with a connection-level error and closes the connection."""

    def __init__(self, error: errors.EskernelError) -> None:
        super().__init__(str(error))
        self.error = error


class _Conn:
    """One socket and its pipelined replies."""

    def __init__(self, sock: socket.socket, max_frame: int) -> None:
        self.sock = sock
        self.wlock = threading.Lock()
        self.cv = threading.Condition()
        self.replies: dict[int, list[Any]] = {}
        self.pushes: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.reading = False
        self.broken: BaseException | None = None
        self.rbuf = bytearray()
        self.max_frame = max_frame

    def send(self, data: bytes) -> None:
        try:
            with self.wlock:
                self.sock.sendall(data)
        except OSError as err:
            self.kill(err)
            raise _Lost(str(err)) from err

    def kill(self, err: BaseException) -> None:
        with self.cv:
            if self.broken is None:
                self.broken = err
                try:
                    self.sock.close()
                except OSError:
                    pass
            self.cv.notify_all()

    def _read_one(self, deadline: float | None) -> bool:
        # One frame into replies/pushes; False when the deadline passed first.
        buf = self.rbuf
        while True:
            if len(buf) >= 4:
                n = int.from_bytes(buf[:4], "big")
                if n == 0 or n > self.max_frame:
                    raise _Lost(f"the server sent a frame of {n} bytes")
                if len(buf) >= 4 + n:
                    msg = P.decode(bytes(buf[4:4 + n]), strict=False)
                    del buf[:4 + n]
                    if type(msg) is not list or len(msg) != 3:
                        raise _Lost(f"the server sent a malformed message {msg!r:.80}")
                    if msg[0] == 0 and msg[1] == P.ERR:
                        # The server's last word before it closes this connection.
                        raise _Fatal(P.error_from_wire(msg[2]))
                    with self.cv:
                        if msg[1] == P.PUSH:
                            self.pushes.put(msg[2])
                        else:
                            self.replies[msg[0]] = msg
                        self.cv.notify_all()
                    return True
            if deadline is not None and deadline - time.monotonic() <= 0:
                return False
            try:            # the socket's timeout is 1 s: deadlines are checked that often
                chunk = self.sock.recv(1 << 18)
            except (socket.timeout, TimeoutError):
                continue
            except OSError as err:
                raise _Lost(str(err)) from err
            if not chunk:
                raise _Lost("the server closed the connection")
            buf += chunk

    def wait(self, rid: int, deadline: float | None) -> list[Any] | None:
        """The reply to ``rid`` (None: deadline passed); ``rid == 0`` waits for a push."""
        while True:
            with self.cv:
                while True:
                    if rid and rid in self.replies:
                        return self.replies.pop(rid)
                    if not rid and not self.pushes.empty():
                        return [0, P.PUSH, self.pushes.get()]
                    if self.broken is not None:
                        raise _Lost(str(self.broken))
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return None
                    if not self.reading:
                        self.reading = True
                        break
                    self.cv.wait(left)
            try:
                got = self._read_one(deadline)
            except _Fatal as fatal:
                with self.cv:
                    self.reading = False
                self.kill(fatal.error)
                raise fatal.error from None
            except (_Lost, errors.ProtocolError) as err:
                with self.cv:
                    self.reading = False
                self.kill(err)
                raise _Lost(str(err)) from None
            with self.cv:
                self.reading = False
                self.cv.notify_all()
            if not got:
                continue


class Client:
    """A remote kernel.  Same method names, arguments and errors as :class:`~eskernel.Kernel`
    for everything a producer or worker calls, so :class:`~eskernel.Runtime` runs on it
    unchanged.

    Args:
        address: ``HOST:PORT`` or ``unix:PATH``.
        token: the credential (``--token-file`` on the server); None when it has none.
        agents: agent ids this client acts for (their leases get the session heartbeat).
        client_id: stays the same across reconnects (default: random); a restarted
            process that passes its old id gets the replies of its unanswered requests.
        timeout: seconds a call waits for its reply (a claim's ``wait`` is added).
        reconnect: seconds to keep reconnecting with backoff before a call raises
            :class:`ServiceUnavailableError` (0: fail at once).
        ssl: an :class:`ssl.SSLContext` for a server started with ``--tls-cert``.
        heartbeat: run the session heartbeat thread (renews every lease this client holds).
        idle_wait: when this client holds no lease, a claim that finds nothing waits up to
            this many seconds on the server (parked) instead of returning at once: for a
            claim loop such as the Runtime's, which would otherwise poll.  0: off.

    >>> Client("localhost:1", reconnect=0, connect=False).address
    ('tcp', ('localhost', 1))
    """

    def __init__(self, address: str, *, token: str | None = None, agents: Iterable[str] = (),
                 client_id: str | None = None, timeout: float = 30.0, reconnect: float = 30.0,
                 ssl: _ssl.SSLContext | None = None, server_hostname: str | None = None,
                 heartbeat: bool = True, name: str = "", connect: bool = True,
                 idle_wait: float = 0.0) -> None:
        self.address = parse_address(address)
        self._token = token
        self._agents = list(agents)
        self._client_id = client_id or uuid.uuid4().hex
        self._timeout = float(timeout)
        self._reconnect = float(reconnect)
        self._ssl = ssl
        self._server_hostname = server_hostname
        self._name = name or f"pid-{os.getpid()}"
        self._rid = itertools.count(1)
        self._rid_lock = threading.Lock()
        self._conn: _Conn | None = None
        self._conn_lock = threading.Lock()
        self._closed = False
        self._subscribed: list[str] | None = None
        self.info: dict[str, Any] = {}
        self.reconnects = 0
        self._clock = SystemClock()
        self._hb_thread: threading.Thread | None = None
        self._hb_stop = threading.Event()
        self._want_hb = heartbeat
        self._idle_wait = float(idle_wait)
        self._min_timeout = 30.0
        self._leases: dict[tuple[int, str], None] = {}     # held: the heartbeat renews them
        self._held_lock = threading.Lock()
        if connect:
            self._connection()
            if heartbeat and self._agents:
                self._start_heartbeat()

    # -- connection ---------------------------------------------------------------------

    def _open(self) -> _Conn:
        kind, where = self.address
        if kind == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(5.0)
            sock.connect(where)
        else:
            sock = socket.create_connection(where, timeout=5.0)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._ssl is not None:
            host = self._server_hostname or (where[0] if kind == "tcp" else None)
            sock = self._ssl.wrap_socket(sock, server_hostname=host)
        sock.settimeout(1.0)
        conn = _Conn(sock, 1 << 31)
        conn.send(P.preamble() + P.frame([0x7fff_ffff_ffff_ffff - 1, "hello", {
            "client": self._client_id, "token": self._token, "agents": self._agents,
            "name": self._name}]))
        reply = conn.wait(0x7fff_ffff_ffff_ffff - 1, time.monotonic() + 10.0)
        if reply is None:
            conn.kill(TimeoutError("hello"))
            raise _Lost("the server did not answer the handshake")
        if reply[1] != P.OK:
            conn.kill(ConnectionError("refused"))
            raise P.error_from_wire(reply[2])
        self.info = reply[2]
        conn.max_frame = int(self.info.get("max_frame", P.MAX_FRAME)) + 64
        if self._subscribed is not None:
            rid = self._next_rid()
            conn.send(P.frame([rid, "subscribe", {"kinds": self._subscribed}]))
        return conn

    def _connection(self) -> _Conn:
        conn = self._conn
        if conn is not None and conn.broken is None:
            return conn
        with self._conn_lock:
            conn = self._conn
            if conn is not None and conn.broken is None:
                return conn
            if self._closed:
                raise errors.KernelClosedError("the client is closed; create a new Client")
            end = time.monotonic() + self._reconnect
            delay = 0.01
            while True:
                try:
                    self._conn = self._open()
                    if conn is not None:
                        self.reconnects += 1
                    return self._conn
                except (OSError, _Lost, errors.ServerBusyError) as err:
                    if time.monotonic() + delay > end or self._closed:
                        raise ServiceUnavailableError(
                            f"cannot reach the eskernel server at {self.address[1]} ({err}); "
                            "start it (eskernel serve) or check the address") from None
                    time.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 1.0)

    def _next_rid(self) -> int:
        with self._rid_lock:
            return next(self._rid)

    def _call(self, op: str, args: dict[str, Any], extra: float = 0.0) -> Any:
        rid = self._next_rid()
        data = P.frame([rid, op, args])
        limit = self.info.get("max_frame", P.MAX_FRAME)
        if len(data) - 4 > limit:
            raise InvalidSpecError(f"this {op!r} request is {len(data) - 4} bytes, over the "
                                   f"server's frame limit of {limit}; split it into smaller "
                                   "batches")
        deadline = time.monotonic() + self._timeout + extra
        while True:
            conn = self._connection()
            try:
                conn.send(data)
                reply = conn.wait(rid, deadline)
            except _Lost:
                if self._reconnect <= 0 or time.monotonic() > deadline:
                    raise ServiceUnavailableError(
                        f"the connection to {self.address[1]} was lost during {op!r}; it may "
                        "or may not have been applied: retry with the same client_id") from None
                continue
            if reply is None:
                raise ServiceUnavailableError(
                    f"no reply to {op!r} within {self._timeout + extra:.3g} s from "
                    f"{self.address[1]}; it may or may not have been applied")
            if reply[1] == P.OK:
                return reply[2]
            raise P.error_from_wire(reply[2])

    def _start_heartbeat(self) -> None:
        if self._hb_thread is None:
            self._hb_thread = threading.Thread(target=self._heartbeats, daemon=True,
                                               name="eskernel-session-heartbeat")
            self._hb_thread.start()

    def _heartbeats(self) -> None:
        # Every period: the server's advice, or a third of the shortest lease timeout seen
        # (the server renews a lease once it is past half its timeout).
        last = time.monotonic()
        while not self._hb_stop.wait(0.02):
            period = min(float(self.info.get("heartbeat_interval", 1.0)), self._min_timeout / 3)
            if time.monotonic() - last < period:
                continue
            last = time.monotonic()
            try:
                self.session_heartbeat()
            except errors.EskernelError as err:
                _log.warning("session heartbeat failed: %s", err)

    def close(self) -> None:
        """Stop the heartbeat and close the connection.  Idempotent."""
        self._closed = True
        self._hb_stop.set()
        conn = self._conn
        if conn is not None:
            conn.kill(ConnectionAbortedError("closed"))

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- Kernel's API -------------------------------------------------------------------

    @property
    def clock(self) -> SystemClock:
        """A wall clock (the server's kernel runs on the wall clock too)."""
        return self._clock

    @property
    def next_offset(self) -> int:
        """Number of events in the server's log."""
        return int(self._call("next_offset", {}))

    def ping(self) -> dict[str, Any]:
        """The server's time and log position (a round trip)."""
        return dict(self._call("ping", {}))

    def declare_queue(self, name: str, max_concurrent: int = 0, paused: bool = False) -> None:
        self._call("declare_queue", {"name": name, "max_concurrent": max_concurrent,
                                     "paused": paused})

    def pause_queue(self, name: str) -> None:
        self._call("pause_queue", {"name": name})

    def resume_queue(self, name: str) -> None:
        self._call("resume_queue", {"name": name})

    def register_agent(self, agent_id: str, capabilities: Iterable[str],
                       capacity: int = 1) -> None:
        caps = [capabilities] if isinstance(capabilities, str) else list(capabilities)
        self._call("register_agent", {"agent": agent_id, "capabilities": caps,
                                      "capacity": capacity})
        if agent_id not in self._agents:
            self._agents.append(agent_id)

    def agent_online(self, agent_id: str) -> None:
        self._call("agent_online", {"agent": agent_id})

    def agent_offline(self, agent_id: str) -> None:
        self._call("agent_offline", {"agent": agent_id})

    def submit(self, queue: str, payload: Any = None, **fields: Any) -> str:
        """:meth:`Kernel.submit`; the same keyword arguments."""
        spec = _spec({"queue": queue, "payload": payload, **fields})
        return str(self._call("submit", {"spec": spec}))

    def submit_many(self, specs: Iterable[TaskSpec | dict[str, Any]]) -> list[str]:
        """:meth:`Kernel.submit_many`: all or nothing, one append on the server."""
        wire = [_spec(s.model_dump(exclude_unset=True) if isinstance(s, TaskSpec) else s)
                for s in specs]
        return list(self._call("submit_many", {"specs": wire}))

    def claim(self, agent_id: str, wait: float = 0.0) -> RemoteLease | None:
        """:meth:`Kernel.claim`; with ``wait`` > 0 the server holds the request up to that
        many seconds and answers with the first task that becomes claimable."""
        wait = self._park(wait)
        r = self._call("claim", {"agent": agent_id, "wait": wait}, extra=_extra(wait))
        lease = None if r is None else RemoteLease(r)
        self._held(agent_id, [lease] if lease is not None else [])
        return lease

    def claim_many(self, agent_id: str, n: int, wait: float = 0.0) -> list[RemoteLease]:
        """:meth:`Kernel.claim_many`, waiting like :meth:`claim` when there is nothing."""
        wait = self._park(wait)
        r = self._call("claim_many", {"agent": agent_id, "n": n, "wait": wait},
                       extra=_extra(wait))
        leases = [RemoteLease(d) for d in r]
        self._held(agent_id, leases)
        return leases

    def _park(self, wait: Any) -> Any:
        if wait == 0 and self._idle_wait > 0 and not self._leases:
            return self._idle_wait
        return wait

    def _held(self, agent_id: str, leases: list[RemoteLease]) -> None:
        with self._held_lock:
            for lease in leases:
                self._leases[(lease.lease_id, lease.task_id)] = None
                if 0 < lease.timeout < self._min_timeout:
                    self._min_timeout = lease.timeout
        if agent_id not in self._agents and type(agent_id) is str:
            self._agents.append(agent_id)
        if self._want_hb and self._hb_thread is None:
            self._start_heartbeat()

    def heartbeat(self, lease: Any) -> float:
        return float(self._call("heartbeat", {"lease": _ref(lease)}))

    def session_heartbeat(self) -> int:
        """Renew every lease this client holds (claimed and not yet completed, failed or
        released) that is past half its timeout; returns how many were renewed.  The
        heartbeat thread calls it."""
        with self._held_lock:
            refs = list(self._leases)
        if not refs:
            return 0
        r = self._call("session_heartbeat", {"leases": [list(x) for x in refs]})
        if r["stale"]:
            with self._held_lock:
                for lid, tid in r["stale"]:
                    self._leases.pop((lid, tid), None)
        return int(r["renewed"])

    def _done(self, lease: Any) -> None:
        with self._held_lock:
            self._leases.pop((getattr(lease, "lease_id", 0), getattr(lease, "task_id", "")),
                             None)

    def complete(self, lease: Any, result: Any = None) -> None:
        try:
            self._call("complete", {"lease": _ref(lease), "result": result})
        except (errors.StaleLeaseError, errors.PermissionDeniedError):
            self._done(lease)
            raise
        self._done(lease)

    def complete_and_claim(self, lease: Any, result: Any = None) -> RemoteLease | None:
        """:meth:`Kernel.complete_and_claim`: complete ``lease`` and claim the next task for
        its agent in one round trip."""
        try:
            r = self._call("complete_and_claim", {"lease": _ref(lease), "result": result})
        except (errors.StaleLeaseError, errors.PermissionDeniedError):
            self._done(lease)
            raise
        self._done(lease)
        nxt = None if r is None else RemoteLease(r)
        self._held(lease.agent_id, [nxt] if nxt is not None else [])
        return nxt

    def complete_many(self, leases: Iterable[Any], results: Iterable[Any] | None = None) -> None:
        leases = list(leases)
        self._call("complete_many", {"leases": [_ref(x) for x in leases],
                                     "results": None if results is None else list(results)})
        for lease in leases:
            self._done(lease)

    def fail(self, lease: Any, error: str = "", retryable: bool = True) -> None:
        try:
            self._call("fail", {"lease": _ref(lease), "error": error, "retryable": retryable})
        except (errors.StaleLeaseError, errors.PermissionDeniedError):
            self._done(lease)
            raise
        self._done(lease)

    def release(self, lease: Any) -> None:
        try:
            self._call("release", {"lease": _ref(lease)})
        except (errors.StaleLeaseError, errors.PermissionDeniedError):
            self._done(lease)
            raise
        self._done(lease)

    def cancel(self, task_id: str) -> list[str]:
        return list(self._call("cancel", {"task": task_id}))

    def requeue(self, task_id: str) -> None:
        self._call("requeue", {"task": task_id})

    def tick(self) -> dict[str, int]:
        """A no-op: the server expires leases and releases retries on its own timer."""
        return {"expired": 0, "ready": 0}

    def task(self, task_id: str) -> TaskView:
        return TaskView.model_validate(self._call("task", {"task": task_id}))

    def tasks(self, status: str | None = None, queue: str | None = None,
              agent: str | None = None, limit: int | None = None) -> list[TaskView]:
        return [TaskView.model_validate(d) for d in self._call(
            "tasks", {"status": status, "queue": queue, "agent": agent, "limit": limit})]

    def dead_letters(self) -> list[TaskView]:
        return self.tasks(status="FAILED")

    def stats(self) -> Stats:
        return Stats.model_validate(self._call("stats", {}))

    def history(self, task_id: str) -> list[dict[str, Any]]:
        return list(self._call("history", {"task": task_id}))

    def explain(self, task_id: str) -> list[dict[str, Any]]:
        """:meth:`Kernel.explain`: why the task is not running, as the server sees it."""
        return list(self._call("explain", {"task": task_id}))

    def lease_task(self, lease: Any) -> tuple[str | None, str, Any, int, float]:
        """What a worker needs to run a leased task; no round trip for a lease this client
        claimed."""
        if isinstance(lease, RemoteLease) and lease.queue:
            return lease.name, lease.queue, lease.payload, lease.max_attempts, lease.timeout
        name, q, payload, attempts, timeout = self._call("lease_task", {"lease": _ref(lease)})
        return name, q, payload, attempts, timeout

    def snapshot(self) -> int:
        return int(self._call("snapshot", {}))

    def wait(self, task_ids: str | Iterable[str], timeout: float | None = None) -> Any:
        """Block until the task (or every task of a list) is COMPLETED, FAILED or CANCELLED;
        returns its :class:`TaskView` (a list for a list).

        Raises:
            UnknownTaskError; WaitTimeoutError after ``timeout`` seconds.
        """
        single = isinstance(task_ids, str)
        ids = [task_ids] if isinstance(task_ids, str) else list(task_ids)
        max_wait = float(self.info.get("max_wait", 300.0))
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            left = max_wait if end is None else min(max_wait, max(0.0, end - time.monotonic()))
            try:
                views = self._call("wait", {"tasks": ids, "timeout": left}, extra=left)
            except errors.WaitTimeoutError:
                if end is not None and time.monotonic() >= end:
                    raise
                continue
            out = [TaskView.model_validate(v) for v in views]
            return out[0] if single else out

    def events(self, kinds: Iterable[str] | None = None,
               timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Log events of ``kinds`` (default: completed, failed, expired, cancelled) from now
        on, each ``{"offset", "event"}``; stops after ``timeout`` seconds without one."""
        self._subscribed = None if kinds is None else list(kinds)
        self._call("subscribe", {"kinds": self._subscribed})     # now, not at first next()
        if self._subscribed is None:
            self._subscribed = ["completed", "failed", "expired", "cancelled"]
        return self._pushes(timeout)

    def _pushes(self, timeout: float | None) -> Iterator[dict[str, Any]]:
        while True:
            conn = self._connection()
            try:
                got = conn.wait(0, None if timeout is None else time.monotonic() + timeout)
            except _Lost:
                continue
            if got is None:
                return
            yield got[2]

    def __repr__(self) -> str:
        return f"Client({self.address[1]!r}, client_id={self._client_id!r})"


def _extra(wait: Any) -> float:
    return float(wait) if type(wait) in (int, float) and 0 < wait < 1e6 else 0.0


def _ref(lease: Any) -> list[Any]:
    lid, tid = getattr(lease, "lease_id", None), getattr(lease, "task_id", None)
    if type(lid) is not int or type(tid) is not str:
        raise InvalidSpecError(f"expected a Lease returned by claim(), got {lease!r:.80}")
    return [lid, tid]


def _spec(spec: Any) -> Any:
    if not isinstance(spec, dict):
        return spec     # the server answers with the precise error
    out = dict(spec)
    b = out.get("backoff")
    if isinstance(b, BackoffPolicy):
        out["backoff"] = b.model_dump()
    if "priority" in out and isinstance(out["priority"], int):
        out["priority"] = int(out["priority"])
    d = out.get("depends_on")
    if d is not None and not isinstance(d, (str, list)):
        try:
            out["depends_on"] = list(d)
        except TypeError:
            pass
    return out


class AsyncClient:
    """:class:`Client` for asyncio code: the same methods as coroutines, each run on a
    worker thread (``asyncio.to_thread``) so the event loop never blocks on the network.
    Arguments are :class:`Client`'s.

    The session heartbeat still runs on the client's own thread.
    """

    _METHODS = frozenset({
        "ping", "declare_queue", "pause_queue", "resume_queue", "register_agent",
        "agent_online", "agent_offline", "submit", "submit_many", "claim", "claim_many",
        "heartbeat", "session_heartbeat", "complete", "complete_many", "complete_and_claim",
        "fail", "release",
        "cancel", "requeue", "task", "tasks", "dead_letters", "stats", "history", "explain",
        "lease_task", "snapshot", "wait"})

    def __init__(self, address: str, **kwargs: Any) -> None:
        self._args = (address, kwargs)
        self.sync: Client | None = None

    async def connect(self) -> "AsyncClient":
        address, kwargs = self._args
        self.sync = await asyncio.to_thread(Client, address, **kwargs)
        return self

    def __getattr__(self, name: str) -> Any:
        if name not in self._METHODS:
            raise AttributeError(name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.sync is None:
                await self.connect()
            assert self.sync is not None
            return await asyncio.to_thread(getattr(self.sync, name), *args, **kwargs)

        call.__name__ = name
        return call

    async def close(self) -> None:
        if self.sync is not None:
            await asyncio.to_thread(self.sync.close)

    async def __aenter__(self) -> "AsyncClient":
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
