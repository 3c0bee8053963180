"""The server: one event loop owns the Kernel and serves it over TCP and/or a Unix socket.

Invariants:

* Only the loop's thread calls the kernel; every request runs to completion before the next
  (a parked claim or wait is re-tried by the loop, never by another thread).
* A reply leaves only after the events of its request are durable under the server's mode:
  replies are queued while a connection's frames are processed and written in one flush.
  In ``fsync`` mode every reply (reads included: nobody observes state the log lacks)
  waits for a sync started after it was queued; one sync thread syncs while the loop keeps
  serving, and each sync releases all the replies queued before it began (group commit).
* A request the server refuses (framing, auth, limits, validation) changes nothing and
  writes no event.  A framing error closes that connection only.
* The reply of every state-changing request is kept per client (bounded): a request id the
  client sends again after a dropped connection gets the same reply and is not applied
  twice.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import hashlib
import itertools
import logging
import ssl as _ssl
import time
from dataclasses import dataclass
from typing import Any

from .. import errors
from ..errors import (InvalidSpecError, ProtocolError, ServerBusyError, WaitTimeoutError)
from . import protocol as P
from .auth import Tokens, check
from .connection import Connection, Session
from .ops import (OUTCOME_KINDS, EVENT_KINDS, check_agent, lease_of, lease_wire, number,
                  spec_kwargs, stats_wire, task_handles, view_wire)

__all__ = ["Server", "ServerConfig"]

_log = logging.getLogger("eskernel.service")
_TERMINAL = (4, 5, 6)
_PARKED = object()


@dataclass
class ServerConfig:
    """Limits and timings of a server (every field has a safe default)."""

    max_frame: int = P.MAX_FRAME            #: largest frame body accepted, bytes
    max_connections: int = 1024
    max_inflight: int = 256                 #: parked claims / waits per connection
    max_wait: float = 300.0                 #: longest wait a claim or wait may ask, seconds
    idle_timeout: float = 300.0             #: close a connection silent this long, seconds
    handshake_timeout: float = 10.0
    write_buffer_high: int = 4 << 20        #: stop reading a connection above this
    write_buffer_max: int = 64 << 20        #: close a connection that never reads past this
    tick_interval: float = 0.01             #: expire leases / release retries (0: never)
    heartbeat_interval: float = 1.0         #: the session heartbeat period clients are told
    replies_kept: int = 4096                #: replies kept per client for retried requests
    clients_kept: int = 10_000


class Waiter:
    """A parked claim or wait, filed under ``key`` in ``table`` (the server's ``parked``
    or ``waits``) until it is answered or its connection closes."""

    __slots__ = ("conn", "rid", "op", "agent", "n", "tasks", "timer", "done", "key", "table")

    def __init__(self, conn: Connection, rid: int, op: str, agent: Any = None, n: int = 1,
                 tasks: list[tuple[str, int]] | None = None) -> None:
        self.conn, self.rid, self.op, self.agent, self.n = conn, rid, op, agent, n
        self.tasks = tasks
        self.timer: Any = None
        self.done = False
        self.key = 0
        self.table: dict[int, "Waiter"] | None = None


class Server:
    """Serves one :class:`~eskernel.Kernel` to clients (see :mod:`eskernel.service.server`).

    Args:
        kernel: an open, writable kernel; the server owns it from now on.
        tokens: accepted credentials (:meth:`Tokens.open` accepts everyone as admin).
        config: limits and timings.
        fsync: acknowledge only after an ``fdatasync`` of the log.  Open the kernel in
            ``buffer`` mode: a sync thread writes and syncs the log while the loop goes on
            serving, and each sync releases every reply queued before it started (group
            commit across connections, pipelined with the work).
    """

    OP_NAMES = frozenset(P.OPS)

    def __init__(self, kernel: Any, tokens: Tokens | None = None,
                 config: ServerConfig | None = None, *, fsync: bool = False) -> None:
        self.kernel = kernel
        self.tokens = tokens or Tokens.open()
        self.config = config or ServerConfig()
        self.fsync = fsync
        self.conns: set[Connection] = set()
        self.pending: set[Connection] = set()
        self.parked: collections.OrderedDict[int, Waiter] = collections.OrderedDict()
        self.waits: dict[int, Waiter] = {}
        self.subscribers: set[Connection] = set()
        # (client id, token digest) -> (rid -> reply frame, [highest rid evicted])
        self.replies: collections.OrderedDict[
            tuple[str, bytes], tuple[collections.OrderedDict[int, bytes], list[int]]] = \
            collections.OrderedDict()
        self._seq = itertools.count(1)
        self._flush_scheduled = False
        self._sync_busy = False
        self._sync_pool = concurrent.futures.ThreadPoolExecutor(1, "eskernel-sync")
        self.changed = False
        self.dirty = False
        self.draining = False
        self.sessions = itertools.count(1)
        self._servers: list[Any] = []
        self._ticker: asyncio.Task[None] | None = None
        self._seen = kernel.next_offset
        self.loop: asyncio.AbstractEventLoop | None = None
        self.metrics: Any = None
        self.counters: collections.Counter[str] = collections.Counter()
        self.addresses: list[Any] = []

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, host: str | None = None, port: int | None = None,
                    unix: str | None = None, ssl: _ssl.SSLContext | None = None) -> None:
        """Listen on ``host:port`` (port 0: any free port) and/or the Unix socket ``unix``."""
        self.loop = asyncio.get_running_loop()
        if host is not None:
            srv = await self.loop.create_server(lambda: Connection(self), host, port or 0,
                                                ssl=ssl, backlog=512)
            self._servers.append(srv)
            self.addresses.append(srv.sockets[0].getsockname()[:2])
        if unix is not None:
            srv = await self.loop.create_unix_server(lambda: Connection(self), unix, ssl=ssl,
                                                     backlog=512)
            self._servers.append(srv)
            self.addresses.append(unix)
        if not self._servers:
            raise InvalidSpecError("give a TCP address or a Unix socket path to listen on")
        if self.config.tick_interval > 0:
            self._ticker = asyncio.ensure_future(self._tick_loop())

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop accepting, refuse new requests, answer parked ones, flush, snapshot and
        close the kernel (releasing the directory's lock)."""
        self.draining = True
        for srv in self._servers:
            srv.close()
        for w in list(self.parked.values()) + list(self.waits.values()):
            self._finish(w, [] if w.op == "claim_many" else None, timeout_err=w.op == "wait")
        self.flush()
        if self._ticker is not None:
            self._ticker.cancel()
        loop = asyncio.get_running_loop()
        end = loop.time() + grace
        while self._sync_busy and loop.time() < end:
            await asyncio.sleep(0.005)
        while loop.time() < end and any(
                c.transport.get_write_buffer_size() for c in self.conns if not c.closed):
            await asyncio.sleep(0.01)
        for c in list(self.conns):
            c.closed = True
            c.transport.close()
        for srv in self._servers:
            await srv.wait_closed()
        try:
            if self.kernel._failed is None:
                self.kernel.snapshot()
        finally:
            self.kernel.close()
            self._sync_pool.shutdown(wait=True)

    async def _tick_loop(self) -> None:
        interval = self.config.tick_interval
        housekeeping = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            try:
                r = self.kernel.tick()
            except errors.EskernelError as err:     # the kernel failed: keep answering
                _log.error("tick failed: %s", err)
                await asyncio.sleep(1.0)
                continue
            if r["expired"] or r["ready"]:
                self.counters["expired"] += r["expired"]
                self.changed = self.dirty = True
                self.schedule_flush()
            now = time.monotonic()
            if now - housekeeping >= 1.0:
                housekeeping = now
                self._close_idle(now)

    def _close_idle(self, now: float) -> None:
        cfg = self.config
        for c in list(self.conns):
            limit = cfg.idle_timeout if c.session is not None else cfg.handshake_timeout
            if not c.closed and not c.parked and c not in self.subscribers \
                    and now - c.last_active > limit:
                # a peer that reads nothing either would hold its unread replies forever
                c.fatal(ProtocolError(f"connection idle for over {limit} s; reconnect"),
                        abort=c.transport.get_write_buffer_size() > 0)

    # -- flushing -----------------------------------------------------------------------

    def schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            assert self.loop is not None
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Serve parked requests if the state changed, then send every queued reply (one
        write per connection) once the events behind them are durable."""
        self._flush_scheduled = False
        if self.changed:
            self.changed = False
            if self.parked:
                self._serve_parked()
            if self.waits:
                self._serve_waits()
        if self.subscribers and self.kernel.next_offset > self._seen:
            self._publish()
        if self.fsync:
            if self._sync_busy:
                return      # these replies go out after the next sync, which covers them
            if self.dirty:
                self.dirty = False
                self._sync_busy = True
                batch = self._take()
                assert self.loop is not None
                fut = self.loop.run_in_executor(self._sync_pool, self._sync)
                fut.add_done_callback(lambda f: self._synced(f, batch))
                return
        self._send(self._take())

    def _sync(self) -> None:
        # On the sync thread: the writer lets the loop keep framing records meanwhile.
        t0 = time.perf_counter()
        self.kernel._log.sync()
        if self.metrics is not None:
            self.metrics.sync_seconds.observe(time.perf_counter() - t0)

    def _take(self) -> list[tuple[Connection, bytes]]:
        pending, self.pending = self.pending, set()
        out = []
        for c in pending:
            if not c.closed and c.out:
                out.append((c, b"".join(c.out) if len(c.out) > 1 else c.out[0]))
                c.out.clear()
        return out

    def _send(self, batch: list[tuple[Connection, bytes]]) -> None:
        cap = self.config.write_buffer_max
        for c, data in batch:
            if c.closed:
                continue
            c.transport.write(data)
            if c.transport.get_write_buffer_size() > cap:
                c.fatal(ServerBusyError(f"over {cap} bytes of replies unread; read your "
                                        "replies", retry_after=1.0), abort=True)

    def _synced(self, fut: Any, batch: list[tuple[Connection, bytes]]) -> None:
        # The sync thread finished: the events behind ``batch`` are on disk.
        self._sync_busy = False
        err = fut.exception()
        if err is not None:     # nothing more is acknowledged; the kernel refuses calls
            _log.error("sync failed: %s", err)
            self.kernel._poison(err)
            for c, _ in batch:
                c.fatal(errors.KernelFailedError(f"the log could not be synced ({err})"))
            return
        self._send(batch)
        if self.pending or self.dirty or self.changed:
            self.flush()

    # -- request handling ---------------------------------------------------------------

    def handle(self, conn: Connection, rid: int, op: str, args: dict[str, Any]) -> None:
        sess = conn.session
        if sess is None:
            if op != "hello":
                raise ProtocolError(f"the first request must be 'hello', got {op!r}")
            self._hello(conn, rid, args)
            return
        if op == "hello":
            raise InvalidSpecError("this connection already said hello")
        check(sess.ident, op)
        mutating = op not in P.READ_ONLY
        if mutating:
            cached = self._cached(sess, rid)
            if cached is not None:
                conn.send(cached)
                return
            if self.draining:
                raise ServerBusyError("the server is shutting down; retry against the next "
                                      "server", retry_after=1.0)
        self.counters[op] += 1
        metrics = self.metrics
        t0 = time.perf_counter() if metrics is not None else 0.0
        try:
            value = getattr(self, "op_" + op)(conn, sess, rid, args)
        except Exception as err:
            if isinstance(err, errors.StaleLeaseError):
                self.counters["stale"] += 1
            conn.reply_error(rid, err, cache=mutating and not isinstance(err, ServerBusyError))
            return
        if metrics is not None:
            metrics.request_seconds.labels(op).observe(time.perf_counter() - t0)
        if value is _PARKED:
            return
        if mutating:
            self.changed = self.dirty = True
        conn.reply(rid, value, cache=mutating)

    def _hello(self, conn: Connection, rid: int, args: dict[str, Any]) -> None:
        client, token, agents = args.get("client"), args.get("token"), args.get("agents")
        name = args.get("name") or ""
        if type(client) is not str or not 1 <= len(client) <= 128:
            raise InvalidSpecError(f"hello needs 'client': a str of 1 to 128 characters that "
                                   f"stays the same across reconnects, got {client!r:.60}")
        if agents is None:
            agents = []
        if type(agents) is not list or len(agents) > 10_000 or any(
                type(a) is not str for a in agents):
            raise InvalidSpecError(f"hello 'agents' must be a list of agent ids, got "
                                   f"{agents!r:.60}")
        if type(name) is not str or len(name) > 256:
            raise InvalidSpecError("hello 'name' must be a str of at most 256 characters")
        ident = self.tokens.identify(token)
        if ident is None:
            err = errors.AuthenticationError("the token was not accepted; check --token-file "
                                             "on the server and the client's token")
            conn.reply_error(rid, err)
            conn.closed = True
            conn.transport.write(b"".join(conn.out))
            conn.out.clear()
            conn.transport.close()
            return
        for a in agents:
            check_agent(ident, a, "act")
        digest = hashlib.sha256(token.encode() if type(token) is str else b"").digest()
        conn.session = Session(client, ident, set(agents), (client, digest), name)
        conn.reply(rid, {"server": "eskernel", "protocol": P.VERSION,
                         "session": next(self.sessions), "role": ident.role,
                         "heartbeat_interval": self.config.heartbeat_interval,
                         "max_frame": self.config.max_frame,
                         "max_inflight": self.config.max_inflight,
                         "max_wait": self.config.max_wait,
                         "durability": "fsync" if self.fsync else str(
                             getattr(getattr(self.kernel._log, "durability", None), "value",
                                     "memory"))})

    # -- the reply cache ----------------------------------------------------------------

    def _cached(self, sess: Session, rid: int) -> bytes | None:
        entry = self.replies.get(sess.cache_key)
        if entry is None:
            return None
        self.replies.move_to_end(sess.cache_key)
        kept, floor = entry
        data = kept.get(rid)
        if data is None and rid <= floor[0]:
            raise ProtocolError(f"request id {rid} was used by this client long ago and its "
                                "reply is no longer kept; use a new request id")
        return data

    def remember(self, sess: Session, rid: int, data: bytes) -> None:
        entry = self.replies.get(sess.cache_key)
        if entry is None:
            entry = self.replies[sess.cache_key] = (collections.OrderedDict(), [0])
            while len(self.replies) > self.config.clients_kept:
                self.replies.popitem(last=False)
        kept, floor = entry
        kept[rid] = data
        while len(kept) > self.config.replies_kept:
            old, _ = kept.popitem(last=False)
            floor[0] = max(floor[0], old)

    # -- parked claims and waits --------------------------------------------------------

    def _park(self, conn: Connection, w: Waiter, wait: float, table: dict[int, Waiter]) -> Any:
        if conn.parked >= self.config.max_inflight:
            raise ServerBusyError(f"this connection already has {conn.parked} parked "
                                  "requests, its limit; wait for one to return",
                                  retry_after=0.05)
        key = next(self._seq)
        table[key] = w
        w.key, w.table = key, table
        conn.parked += 1
        assert self.loop is not None
        w.timer = self.loop.call_later(wait, self._expire, key, table)
        return _PARKED

    def _expire(self, key: int, table: dict[int, Waiter]) -> None:
        w = table.pop(key, None)
        if w is not None:
            self._finish(w, [] if w.op == "claim_many" else None, timeout_err=w.op == "wait")
            self.schedule_flush()

    def _finish(self, w: Waiter, value: Any, error: BaseException | None = None,
                timeout_err: bool = False) -> None:
        if w.done:
            return
        w.done = True
        w.conn.parked -= 1
        if w.timer is not None:
            w.timer.cancel()
        if w.table is not None:
            w.table.pop(w.key, None)
        if timeout_err:
            pend = [t for t, h in (w.tasks or []) if self.kernel._sched.status_of(h)
                    not in _TERMINAL]
            error = WaitTimeoutError(f"{len(pend)} task(s) not finished in time: "
                                     f"{pend[:10]!r}; they keep running: wait again")
        if w.op in ("claim", "claim_many") and w.conn.session is not None:
            cache = True
        else:
            cache = False
        if error is not None:
            w.conn.reply_error(w.rid, error, cache=cache)
        else:
            w.conn.reply(w.rid, value, cache=cache)

    def drop_parked(self, conn: Connection) -> None:
        self.subscribers.discard(conn)
        if not conn.parked:
            return
        for table in (self.parked, self.waits):
            for k, w in list(table.items()):
                if w.conn is conn:
                    del table[k]
                    w.done = True
                    if w.timer is not None:
                        w.timer.cancel()

    def _serve_parked(self) -> None:
        k = self.kernel
        tried: set[str] = set()
        for key, w in list(self.parked.items()):
            if w.done or w.agent in tried:
                continue
            try:
                leases = k.claim_many(w.agent, w.n)
            except (errors.AgentAtCapacityError, errors.AgentOfflineError):
                tried.add(w.agent)
                continue
            except errors.EskernelError as err:
                self._finish(w, None, error=err)
                continue
            if not leases:
                tried.add(w.agent)
                continue
            self.dirty = True
            self.counters["claimed"] += len(leases)
            wire = [lease_wire(k, lease) for lease in leases]
            self._finish(w, wire if w.op == "claim_many" else wire[0])

    def _serve_waits(self) -> None:
        status_of = self.kernel._sched.status_of
        for w in list(self.waits.values()):
            if all(status_of(h) in _TERMINAL for _, h in w.tasks or []):
                self._finish(w, [view_wire(self.kernel.task(t)) for t, _ in w.tasks or []])

    def _publish(self) -> None:
        start, end = self._seen, self.kernel.next_offset
        self._seen = end
        if self.fsync:
            self.kernel._log.flush()    # the log is opened in buffer mode: make it readable
        from .. import events
        for off, rec in self.kernel._log.read(start, end):
            ev = events.decode(rec)
            t = ev.get("t")
            for c in list(self.subscribers):
                kinds = c.session.subscribed if c.session is not None else None
                if kinds is not None and t in kinds:
                    c.send(P.frame([0, P.PUSH, {"offset": off, "event": ev}]))

    # -- operations (op_<name>: the server's half of each request type) -------------------

    def op_ping(self, conn: Connection, sess: Session, rid: int, a: dict[str, Any]) -> Any:
        return {"time_ns": time.time_ns(), "next_offset": self.kernel.next_offset}

    def op_submit(self, conn: Connection, sess: Session, rid: int, a: dict[str, Any]) -> Any:
        queue, payload, kw = spec_kwargs(a.get("spec"))
        return self.kernel.submit(queue, payload, **kw)

    def op_submit_many(self, conn: Connection, sess: Session, rid: int,
                       a: dict[str, Any]) -> Any:
        specs = a.get("specs")
        if type(specs) is not list:
            raise InvalidSpecError(f"'specs' must be a list of task spec maps, got "
                                   f"{specs!r:.60}")
        for s in specs:
            spec_kwargs(s)
        return self.kernel.submit_many(specs)

    def op_declare_queue(self, conn: Connection, sess: Session, rid: int,
                         a: dict[str, Any]) -> Any:
        self.kernel.declare_queue(a.get("name"), a.get("max_concurrent", 0),
                                  a.get("paused", False))

    def op_pause_queue(self, conn: Connection, sess: Session, rid: int, a: dict[str, Any]) -> Any:
        self.kernel.pause_queue(a.get("name"))

    def op_resume_queue(self, conn: Connection, sess: Session, rid: int,
                        a: dict[str, Any]) -> Any:
        self.kernel.resume_queue(a.get("name"))

    def op_register_agent(self, conn: Connection, sess: Session, rid: int,
                          a: dict[str, Any]) -> Any:
        check_agent(sess.ident, a.get("agent"), "register")
        caps = a.get("capabilities")
        if type(caps) is not list:
            raise InvalidSpecError(f"'capabilities' must be a list of queue names, got "
                                   f"{caps!r:.60}")
        self.kernel.register_agent(a.get("agent"), caps, a.get("capacity", 1))

    def op_agent_online(self, conn: Connection, sess: Session, rid: int,
                        a: dict[str, Any]) -> Any:
        check_agent(sess.ident, a.get("agent"), "bring online")
        self.kernel.agent_online(a.get("agent"))

    def op_agent_offline(self, conn: Connection, sess: Session, rid: int,
                         a: dict[str, Any]) -> Any:
        check_agent(sess.ident, a.get("agent"), "take offline")
        self.kernel.agent_offline(a.get("agent"))

    def _claim(self, conn: Connection, sess: Session, rid: int, a: dict[str, Any],
               many: bool) -> Any:
        agent = a.get("agent")
        check_agent(sess.ident, agent, "claim")
        wait = number(a.get("wait"), "wait", 0.0, self.config.max_wait, 0.0)
        k = self.kernel
        if many:
            n = a.get("n", 1)
            leases = k.claim_many(agent, n)
        else:
            n = 1
            lease = k.claim(agent)
            leases = [lease] if lease is not None else []
        sess.agents.add(str(agent))
        if leases:
            self.counters["claimed"] += len(leases)
            wire = [lease_wire(k, lease) for lease in leases]
            return wire if many else wire[0]
        if wait <= 0 or self.draining:
            return [] if many else None
        return self._park(conn, Waiter(conn, rid, "claim_many" if many else "claim", agent, n),
                          wait, self.parked)

    def op_claim(self, conn: Connection, sess: Session, rid: int, a: dict[str, Any]) -> Any:
        return self._claim(conn, sess, rid, a, False)

    def op_claim_many(self, conn: Connection, sess: Session, rid: int,
                      a: dict[str, Any]) -> Any:
        return self._claim(conn, sess, rid, a, True)

    def op_heartbeat(self, conn: Connection, sess: Session, rid: int, a: dict[str, Any]) -> Any:
        return self.kernel.heartbeat(lease_of(self.kernel, sess.ident, a.get("lease"),
                                              "heartbeat"))

    def op_session_heartbeat(self, conn: Connection, sess: Session, rid: int,
                             a: dict[str, Any]) -> Any:
        """Renew the leases the client says it holds (those past half their timeout: each
        renewal is an event); returns how many were renewed and which are no longer live,
        so the client drops them.  Leases the client does not list are left to expire: a
        lease whose claim reply was lost (a crash before the reply left) is never kept
        alive by a worker that does not know it holds it."""
        refs = a.get("leases")
        if type(refs) is not list or len(refs) > 1_000_000:
            raise InvalidSpecError("'leases' must be the list of [lease_id, task_id] the "
                                   "session holds")
        k, renewed, stale = self.kernel, 0, []
        now = k._now()
        for ref in refs:
            try:
                lease = lease_of(k, sess.ident, ref, "heartbeat")
            except errors.StaleLeaseError:
                stale.append(ref)
                continue
            if lease.expires_ns - now <= k._sched.timeout_of(lease._task) // 2:
                k.heartbeat(lease)
                renewed += 1
        return {"renewed": renewed, "stale": stale}

    def op_complete(self, conn: Connection, sess: Session, rid: int, a: dict[str, Any]) -> Any:
        lease = lease_of(self.kernel, sess.ident, a.get("lease"), "complete")
        self.kernel.complete(lease, a.get("result"))
        self.counters["completed"] += 1

    def op_complete_and_claim(self, conn: Connection, sess: Session, rid: int,
                              a: dict[str, Any]) -> Any:
        """Complete a lease and claim the next task for the same agent in one round (and
        one sync in fsync mode); the reply is the new lease or nil."""
        lease = lease_of(self.kernel, sess.ident, a.get("lease"), "complete")
        nxt = self.kernel.complete_and_claim(lease, a.get("result"))
        self.counters["completed"] += 1
        if nxt is None:
            return None
        self.counters["claimed"] += 1
        return lease_wire(self.kernel, nxt)

    def op_complete_many(self, conn: Connection, sess: Session, rid: int,
                         a: dict[str, Any]) -> Any:
        refs, results = a.get("leases"), a.get("results")
        if type(refs) is not list:
            raise InvalidSpecError(f"'leases' must be a list of [lease_id, task_id], got "
                                   f"{refs!r:.60}")
        if results is not None and type(results) is not list:
            raise InvalidSpecError("'results' must be a list (one per lease) or nil")
        leases = [lease_of(self.kernel, sess.ident, r, "complete") for r in refs]
        self.kernel.complete_many(leases, results)
        self.counters["completed"] += len(leases)

    def op_fail(self, conn: Connection, sess: Session, rid: int, a: dict[str, Any]) -> Any:
        lease = lease_of(self.kernel, sess.ident, a.get("lease"), "fail")
        self.kernel.fail(lease, a.get("error", ""), a.get("retryable", True))

    def op_release(self, conn: Connection, sess: Session, rid: int, a: dict[str, Any]) -> Any:
        self.kernel.release(lease_of(self.kernel, sess.ident, a.get("lease"), "release"))

    def op_cancel(self, conn: Connection, sess: Session, rid: int, a: dict[str, Any]) -> Any:
        return self.kernel.cancel(a.get("task"))

    def op_requeue(self, conn: Connection, sess: Session, rid: int, a: dict[str, Any]) -> Any:
        self.kernel.requeue(a.get("task"))

    def op_task(self, conn: Connection, sess: Session, rid: int, a: dict[str, Any]) -> Any:
        return view_wire(self.kernel.task(a.get("task")))

    def op_tasks(self, conn: Connection, sess: Session, rid: int, a: dict[str, Any]) -> Any:
        limit = a.get("limit")
        if limit is not None and (type(limit) is not int or limit < 0):
            raise InvalidSpecError(f"'limit' must be a non-negative int or nil, got {limit!r:.40}")
        return [view_wire(v) for v in self.kernel.tasks(
            status=a.get("status"), queue=a.get("queue"), agent=a.get("agent"), limit=limit)]

    def op_stats(self, conn: Connection, sess: Session, rid: int, a: dict[str, Any]) -> Any:
        return stats_wire(self.kernel.stats())

    def op_history(self, conn: Connection, sess: Session, rid: int, a: dict[str, Any]) -> Any:
        return self.kernel.history(a.get("task"))

    def op_explain(self, conn: Connection, sess: Session, rid: int, a: dict[str, Any]) -> Any:
        return self.kernel.explain(a.get("task"))   # the kernel checks the id

    def op_lease_task(self, conn: Connection, sess: Session, rid: int,
                      a: dict[str, Any]) -> Any:
        return list(self.kernel.lease_task(lease_of(self.kernel, sess.ident, a.get("lease"),
                                                    "read")))

    def op_next_offset(self, conn: Connection, sess: Session, rid: int,
                       a: dict[str, Any]) -> Any:
        return self.kernel.next_offset

    def op_tick(self, conn: Connection, sess: Session, rid: int, a: dict[str, Any]) -> Any:
        return self.kernel.tick()

    def op_snapshot(self, conn: Connection, sess: Session, rid: int, a: dict[str, Any]) -> Any:
        return self.kernel.snapshot()

    def op_wait(self, conn: Connection, sess: Session, rid: int, a: dict[str, Any]) -> Any:
        tasks = task_handles(self.kernel, a.get("tasks"))
        timeout = number(a.get("timeout"), "timeout", 0.0, self.config.max_wait,
                         self.config.max_wait)
        status_of = self.kernel._sched.status_of
        if all(status_of(h) in _TERMINAL for _, h in tasks):
            return [view_wire(self.kernel.task(t)) for t, _ in tasks]
        if timeout <= 0:
            raise WaitTimeoutError(f"task(s) {[t for t, _ in tasks][:10]!r} not finished; "
                                   "they keep running: wait again")
        return self._park(conn, Waiter(conn, rid, "wait", tasks=tasks), timeout, self.waits)

    def op_subscribe(self, conn: Connection, sess: Session, rid: int,
                     a: dict[str, Any]) -> Any:
        kinds = a.get("kinds")
        if kinds is None:
            kinds = list(OUTCOME_KINDS)
        if type(kinds) is not list or any(k not in EVENT_KINDS for k in kinds):
            raise InvalidSpecError(f"'kinds' must be a list of event types from "
                                   f"{sorted(EVENT_KINDS)}, got {kinds!r:.80}")
        if not self.subscribers:
            self._seen = self.kernel.next_offset
        sess.subscribed = frozenset(kinds)
        self.subscribers.add(conn)
        return {"offset": self._seen}
