"""One client connection of a server: framing, the handshake state, its queued replies.

Invariants: bytes are consumed only as whole frames; the first frame error answers once
(``[0, 1, error]``) and closes this connection, and nothing else; a request's typed error
is answered with its ``rid`` and the connection goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from .. import errors
from ..errors import InvalidSpecError, ProtocolError, ServerBusyError
from . import protocol as P
from .auth import Identity
from .ops import args_of

__all__ = ["Connection", "Session"]

_log = logging.getLogger("eskernel.service")


class Session:
    __slots__ = ("client", "ident", "agents", "cache_key", "subscribed", "name")

    def __init__(self, client: str, ident: Identity, agents: set[str], cache_key: tuple[str, bytes],
                 name: str) -> None:
        self.client = client
        self.ident = ident
        self.agents = agents
        self.cache_key = cache_key
        self.subscribed: frozenset[str] | None = None
        self.name = name


class Connection(asyncio.Protocol):
    """One client connection: framing, handshake state and its queued replies."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.transport: Any = None
        self.buf = bytearray()
        self.greeted = False               # the 8-byte preamble was accepted
        self.session: Session | None = None
        self.out: list[bytes] = []
        self.parked = 0
        self.last_active = time.monotonic()
        self.closed = False
        self.paused = False

    # -- asyncio callbacks --------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        srv = self.server
        if len(srv.conns) >= srv.config.max_connections or srv.draining:
            why = ("the server is shutting down" if srv.draining else
                   f"the server holds {len(srv.conns)} connections, its limit")
            transport.write(P.frame([0, P.ERR, P.error_to_wire(ServerBusyError(
                f"{why}; retry later", retry_after=1.0))]))
            self.closed = True
            transport.close()
            return
        srv.conns.add(self)
        transport.set_write_buffer_limits(high=srv.config.write_buffer_high)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self.server.conns.discard(self)
        self.server.drop_parked(self)

    def pause_writing(self) -> None:
        if not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.paused:
            self.paused = False
            if not self.closed:
                self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_active = time.monotonic()
        buf = self.buf
        buf += data
        srv = self.server
        pos = 0
        try:
            if not self.greeted:
                if len(buf) < P.PREAMBLE.size:
                    if not P.MAGIC.startswith(bytes(buf[:4])):
                        raise ProtocolError(f"bad magic {bytes(buf[:4])!r}: this port speaks "
                                            "the eskernel protocol (docs/protocol.md)")
                    return
                magic, version, _flags = P.PREAMBLE.unpack_from(buf, 0)
                if magic != P.MAGIC:
                    raise ProtocolError(f"bad magic {magic!r}: this port speaks the eskernel "
                                        "protocol (docs/protocol.md), which starts with b'ESKN'")
                if version != P.VERSION:
                    raise ProtocolError(f"protocol version {version} is not supported; this "
                                        f"server speaks version {P.VERSION}")
                self.greeted = True
                pos = P.PREAMBLE.size
            n_buf, limit = len(buf), srv.config.max_frame
            while n_buf - pos >= 4:
                n = int.from_bytes(buf[pos:pos + 4], "big")
                if n == 0 or n > limit:
                    raise ProtocolError(f"frame length {n} is outside [1, {limit}]; split the "
                                        "request (e.g. smaller submit_many batches)")
                end = pos + 4 + n
                if end > n_buf:
                    break
                body = bytes(buf[pos + 4:end])
                pos = end
                self.request(body)
                if self.closed:
                    return
        except ProtocolError as err:
            self.fatal(err)
            return
        finally:
            if pos and not self.closed:
                del buf[:pos]
        if srv.fsync:
            srv.schedule_flush()    # one sync for every connection served this loop pass
        else:
            srv.flush()

    # -- requests -----------------------------------------------------------------------

    def request(self, body: bytes) -> None:
        msg = P.decode(body, strict=False)     # non-str keys: refused by validation
        if (type(msg) is not list or len(msg) != 3 or type(msg[0]) is not int
                or not 1 <= msg[0] <= P.MAX_RID):
            raise ProtocolError(f"a request is [rid (int >= 1), op (str), args (map)], got "
                                f"{msg!r:.80}")
        rid, op, args = msg
        try:
            if type(op) is not str or type(args) is not dict:
                raise InvalidSpecError(f"a request is [rid, op (str), args (map)], got op "
                                       f"{op!r:.40} and args {args!r:.40}")
            if op not in P.OPS:
                raise InvalidSpecError(f"unknown request type {op!r:.40}; the types are "
                                       f"listed in docs/protocol.md")
            args_of(op, args, P.OPS[op])
            self.server.handle(self, rid, op, args)
        except ProtocolError:
            raise
        except Exception as err:
            self.reply_error(rid, err)

    def reply(self, rid: int, value: Any, cache: bool = False) -> None:
        try:
            data = P.frame([rid, P.OK, value])
        except errors.EskernelError as err:
            data = P.frame([rid, P.ERR, P.error_to_wire(err)])
        self.send(data)
        if cache and self.session is not None:
            self.server.remember(self.session, rid, data)

    def reply_error(self, rid: int, err: BaseException, cache: bool = False) -> None:
        if not isinstance(err, errors.EskernelError):
            _log.exception("request %d failed", rid, exc_info=err)
        data = P.frame([rid, P.ERR, P.error_to_wire(err)])
        self.send(data)
        if cache and self.session is not None:
            self.server.remember(self.session, rid, data)

    def send(self, data: bytes) -> None:
        if self.closed:
            return
        self.out.append(data)
        self.server.pending.add(self)

    def fatal(self, err: BaseException, abort: bool = False) -> None:
        """Answer a framing error once and close this connection (``abort``: drop what is
        buffered for it at once: a peer that does not read would hold it forever)."""
        if self.closed:
            return
        self.closed = True
        if abort:
            self.out.clear()
            self.transport.abort()
            return
        try:    # the replies to the requests before the bad frame, then the error
            self.transport.write(b"".join(self.out) + P.frame([0, P.ERR, P.error_to_wire(err)]))
        except Exception:   # pragma: no cover - transport already broken
            pass
        self.out.clear()
        self.transport.close()
