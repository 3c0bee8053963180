"""Malformed and hostile protocol input: each gets a typed error or a closed connection;
the server keeps serving everyone else, and the state and the log are unchanged."""

from __future__ import annotations

import socket
import struct
import time

import msgpack
import pytest

from eskernel import InvalidSpecError
from eskernel.service import Client, Tokens
from eskernel.service import protocol as P
from eskernel.service.auth import Identity
from eskernel.service.run import ServerThread
from eskernel.service.server import ServerConfig

WORKER_A = "worker-token-aaaaaaaaaaaa"
WORKER_B = "worker-token-bbbbbbbbbbbb"
ADMIN = "admin-token-cccccccccccccc"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import tempfile
    from pathlib import Path
    sock = Path(tempfile.mkdtemp(prefix="esk", dir="/tmp")) / "h"
    tokens = Tokens([(WORKER_A.encode(), Identity("worker", ("wa",))),
                     (WORKER_B.encode(), Identity("worker", ("wb", "wc"))),
                     (ADMIN.encode(), Identity("admin"))])
    config = ServerConfig(max_frame=1 << 16, max_connections=40, max_inflight=4,
                          handshake_timeout=1.0, idle_timeout=2.0,
                          write_buffer_high=1 << 16, write_buffer_max=1 << 18)
    st = ServerThread(tmp_path_factory.mktemp("h") / "log", unix=str(sock), tokens=tokens,
                      config=config)
    with Client(st.address, token=ADMIN) as c:
        c.declare_queue("q")
        c.register_agent("wa", ["q"], 2)
        c.register_agent("wb", ["q"], 2)
        c.declare_queue("empty")
        c.register_agent("wc", ["empty"], 8)
        c.submit("q", id="held", timeout=300)
        c.submit("q", id="free", timeout=300)
    with Client(st.address, token=WORKER_A, heartbeat=False) as wa:
        st.lease_a = wa.claim("wa")
    yield st
    st.stop()


def state(st):
    k = st.server.kernel
    return st.call(lambda: (k.next_offset, k.digest()))


def connect(st):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(st.address[5:])
    return s


def hello(token=ADMIN, client="hostile"):
    return P.preamble() + P.frame([1, "hello", {"client": client, "token": token}])


def raw_frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def exchange(s, data: bytes, want: int) -> tuple[list, bool]:
    """Send, then read up to ``want`` frames; (frames, closed)."""
    if data:
        s.sendall(data)
    frames, buf = [], b""
    while len(frames) < want:
        try:
            chunk = s.recv(1 << 16)
        except (ConnectionResetError, BrokenPipeError):
            return frames, True
        if not chunk:
            return frames, True
        buf += chunk
        while len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[:4], "big"):
            n = int.from_bytes(buf[:4], "big")
            frames.append(msgpack.unpackb(buf[4:4 + n], strict_map_key=False))
            buf = buf[4 + n:]
    return frames, False


def healthy(st) -> None:
    with Client(st.address, token=ADMIN, reconnect=0) as c:
        assert c.task("free").status == "READY"


L = ["x"]   # placeholder for the lease reference filled from the fixture

# (name, bytes after the hello (None: no hello), expected error type or "closed")
CASES = [
    ("bad magic", b"HTTP/1.1 200 OK\r\n", "ProtocolError"),
    ("bad magic after 4 bytes", b"ESKX\x00\x01\x00\x00", "ProtocolError"),
    ("bad version", b"ESKN\x00\x63\x00\x00", "ProtocolError"),
    ("an HTTP request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "ProtocolError"),
    ("zero-length frame", P.preamble() + b"\x00\x00\x00\x00", "ProtocolError"),
    ("2 GiB length", P.preamble() + b"\x80\x00\x00\x00" + b"x" * 100, "ProtocolError"),
    ("4 GiB - 1 length", P.preamble() + b"\xff\xff\xff\xff", "ProtocolError"),
    ("frame over the limit by one", P.preamble() + struct.pack(">I", (1 << 16) + 1),
     "ProtocolError"),
    ("garbage body", P.preamble() + raw_frame(b"\xc1\xc1\xc1"), "ProtocolError"),
    ("two values in one frame", P.preamble() + raw_frame(msgpack.packb([1, "ping", {}]) * 2),
     "ProtocolError"),
    ("truncated msgpack value", P.preamble() + raw_frame(b"\x93\x01"), "ProtocolError"),
    ("extension type", P.preamble() + raw_frame(msgpack.packb(msgpack.ExtType(5, b"x"))),
     "ProtocolError"),
    ("deep nesting", P.preamble() + raw_frame(b"\x91" * 60000 + b"\xc0"), "ProtocolError"),
    ("request is a map", P.preamble() + raw_frame(msgpack.packb({"op": "ping"})),
     "ProtocolError"),
    ("request of 2 items", P.preamble() + raw_frame(msgpack.packb([1, "ping"])),
     "ProtocolError"),
    ("request id 0", P.preamble() + raw_frame(msgpack.packb([0, "hello", {}])),
     "ProtocolError"),
    ("negative request id", P.preamble() + raw_frame(msgpack.packb([-5, "hello", {}])),
     "ProtocolError"),
    ("request id a string", P.preamble() + raw_frame(msgpack.packb(["1", "hello", {}])),
     "ProtocolError"),
    ("request id 2**64-1", P.preamble() + raw_frame(msgpack.packb([2**64 - 1, "ping", {}])),
     "ProtocolError"),
    ("request before hello", P.preamble() + P.frame([1, "submit", {"spec": {"queue": "q"}}]),
     "ProtocolError"),
    ("hello without client", P.preamble() + P.frame([1, "hello", {"token": ADMIN}]),
     "InvalidSpecError"),
    ("hello with a 1 kB client id", P.preamble() + P.frame(
        [1, "hello", {"client": "c" * 1000, "token": ADMIN}]), "InvalidSpecError"),
    ("hello with a wrong token", P.preamble() + P.frame(
        [1, "hello", {"client": "c", "token": "nope"}]), "AuthenticationError"),
    ("hello with no token", P.preamble() + P.frame([1, "hello", {"client": "c"}]),
     "AuthenticationError"),
    ("hello with agents of another worker", P.preamble() + P.frame(
        [1, "hello", {"client": "c", "token": WORKER_A, "agents": ["wb"]}]),
     "PermissionDeniedError"),
]
AFTER_HELLO = [
    ("hello twice", [2, "hello", {"client": "c", "token": ADMIN}], "InvalidSpecError"),
    ("op not a str", [2, 7, {}], "InvalidSpecError"),
    ("args not a map", [2, "ping", [1, 2]], "InvalidSpecError"),
    ("unknown op", [2, "drop_tables", {}], "InvalidSpecError"),
    ("unknown argument", [2, "task", {"task": "free", "sql": "1"}], "InvalidSpecError"),
    ("submit with a str priority", [2, "submit", {"spec": {"queue": "q", "priority": "hi"}}],
     "InvalidSpecError"),
    ("submit with NaN timeout", [2, "submit", {"spec": {"queue": "q",
                                                       "timeout": float("nan")}}],
     "InvalidSpecError"),
    ("submit with an int-keyed payload", [2, "submit", {"spec": {"queue": "q",
                                                                "payload": {1: 2}}}],
     "InvalidSpecError"),
    ("submit with a bytes payload", [2, "submit", {"spec": {"queue": "q", "payload": b"x"}}],
     "InvalidSpecError"),
    ("submit with an unknown field", [2, "submit", {"spec": {"queue": "q", "exec": "rm"}}],
     "InvalidSpecError"),
    ("submit with a NUL in the id", [2, "submit", {"spec": {"queue": "q", "id": "a\x00b"}}],
     "InvalidSpecError"),
    ("submit_many not a list", [2, "submit_many", {"specs": "q"}], "InvalidSpecError"),
    ("submit_many with one bad spec", [2, "submit_many", {"specs": [
        {"queue": "q", "id": "fine"}, {"queue": "nope"}]}], "UnknownQueueError"),
    ("claim with negative wait", [2, "claim", {"agent": "wa", "wait": -1}],
     "InvalidSpecError"),
    ("claim with infinite wait", [2, "claim", {"agent": "wa", "wait": float("inf")}],
     "InvalidSpecError"),
    ("claim for an unknown agent", [2, "claim", {"agent": "zz"}], "UnknownAgentError"),
    ("malformed lease", [2, "complete", {"lease": [1]}], "InvalidSpecError"),
    ("lease with types swapped", [2, "complete", {"lease": ["held", 1]}], "InvalidSpecError"),
    ("forged lease id", [2, "complete", {"lease": [999, "held"]}], "StaleLeaseError"),
    ("lease of an unknown task", [2, "fail", {"lease": [1, "nope"]}], "StaleLeaseError"),
    ("complete_many with a lease twice", "dup", "InvalidSpecError"),
    ("cancel an unknown task", [2, "cancel", {"task": "nope"}], "UnknownTaskError"),
    ("tasks with a bad status", [2, "tasks", {"status": "DONE"}], "InvalidSpecError"),
    ("wait for nothing", [2, "wait", {"tasks": []}], "InvalidSpecError"),
    ("subscribe to an unknown kind", [2, "subscribe", {"kinds": ["everything"]}],
     "InvalidSpecError"),
]


@pytest.mark.parametrize("name,data,expect", CASES, ids=[c[0] for c in CASES])
def test_bad_connection_input(served, name, data, expect):
    before = state(served)
    s = connect(served)
    try:
        frames, closed = exchange(s, data, 1)
        assert frames, f"{name}: no answer"
        assert frames[-1][1] == P.ERR and frames[-1][2]["type"] == expect, frames
        assert frames[-1][2]["message"]
        if expect in ("ProtocolError", "AuthenticationError"):
            assert exchange(s, b"", 1)[1], "the connection stayed open"
    finally:
        s.close()
    assert state(served) == before
    healthy(served)


@pytest.mark.parametrize("name,msg,expect", AFTER_HELLO, ids=[c[0] for c in AFTER_HELLO])
def test_bad_request_gets_a_typed_error_and_the_connection_lives(served, name, msg, expect):
    before = state(served)
    s = connect(served)
    try:
        frames, closed = exchange(s, hello(client=name), 1)
        assert frames[0][1] == P.OK
        if msg == "dup":
            ref = [served.lease_a.lease_id, served.lease_a.task_id]
            msg = [2, "complete_many", {"leases": [ref, ref]}]
        frames, closed = exchange(s, P.frame(msg), 1)
        assert frames[0][:2] == [2, P.ERR] and frames[0][2]["type"] == expect, frames
        frames, closed = exchange(s, P.frame([3, "ping", {}]), 1)   # still serving
        assert frames[0][:2] == [3, P.OK]
    finally:
        s.close()
    assert state(served) == before
    healthy(served)


def test_another_agents_lease_is_refused(served):
    before = state(served)
    ref = [served.lease_a.lease_id, served.lease_a.task_id]
    s = connect(served)
    try:
        exchange(s, hello(WORKER_B, "b"), 1)
        for i, op in enumerate(("complete", "fail", "heartbeat", "release"), 2):
            frames, _ = exchange(s, P.frame([i, op, {"lease": ref}]), 1)
            assert frames[0][2]["type"] == "PermissionDeniedError", (op, frames)
        frames, _ = exchange(s, P.frame([9, "claim", {"agent": "wa"}]), 1)
        assert frames[0][2]["type"] == "PermissionDeniedError"
    finally:
        s.close()
    assert state(served) == before


def test_a_truncated_frame_then_close_leaves_nothing(served):
    before = state(served)
    s = connect(served)
    s.sendall(hello() + struct.pack(">I", 100) + b"\x93\x02")
    s.close()
    healthy(served)
    assert state(served) == before


def test_a_replayed_request_id_is_answered_from_the_cache_not_reapplied(served):
    s = connect(served)
    try:
        exchange(s, hello(client="replay-1"), 1)
        sub = P.frame([2, "submit", {"spec": {"queue": "q", "id": "once"}}])
        first, _ = exchange(s, sub, 1)
        mid = state(served)
        again, _ = exchange(s, sub, 1)
        assert first == again
        assert state(served) == mid
    finally:
        s.close()
        with Client(served.address, token=ADMIN) as c:
            c.cancel("once")


def test_too_many_parked_requests_get_busy(served):
    before = state(served)
    s = connect(served)
    try:
        exchange(s, hello(WORKER_B, "parker"), 1)
        s.sendall(b"".join(P.frame([i, "claim", {"agent": "wc", "wait": 0.5}])
                           for i in range(2, 7)))
        frames, _ = exchange(s, b"", 1)
        assert frames[0][0] == 6 and frames[0][2]["type"] == "ServerBusyError"
        assert frames[0][2]["retry_after"] > 0
    finally:
        s.close()
    # a worker claim that found nothing does not change the state
    assert state(served) == before


def test_a_flood_of_connections(served):
    socks, refused = [], 0
    try:
        for _ in range(60):
            s = connect(served)
            socks.append(s)
        for s in socks:
            s.settimeout(0.01)
            try:
                data = s.recv(4096)
            except (TimeoutError, socket.timeout):
                continue
            if data:
                n = int.from_bytes(data[:4], "big")
                kind = msgpack.unpackb(data[4:4 + n])[2]["type"]
                # over the limit: busy; the rest are closed by the handshake timeout
                assert kind in ("ServerBusyError", "ProtocolError")
                refused += kind == "ServerBusyError"
    finally:
        for s in socks:
            s.close()
    assert refused >= 15
    time.sleep(0.1)
    healthy(served)


def test_a_client_that_never_reads_is_held_back_not_buffered(served):
    """The server stops reading a connection whose replies go unread: the client's sends
    block, and what the server holds for it stays under its write-buffer bound."""
    before = state(served)
    s = connect(served)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        exchange(s, hello(client="never-reads"), 1)
        s.settimeout(1.0)
        with pytest.raises(OSError):            # blocked: the server reads no more
            for i in range(200_000):
                s.sendall(P.frame([i + 2, "tasks", {}]))
        srv = served.server
        held = served.call(lambda: [(c.paused, c.transport.get_write_buffer_size())
                                    for c in srv.conns if c.session is not None
                                    and c.session.client == "never-reads"])
        assert held and all(paused and size <= srv.config.write_buffer_max
                            for paused, size in held), held
    finally:
        s.close()
    healthy(served)
    assert state(served) == before


def test_a_silent_connection_is_closed(served):
    s = connect(served)
    try:
        s.sendall(P.preamble())
        frames, closed = exchange(s, b"", 1)
        assert frames[0][2]["type"] == "ProtocolError" and "idle" in frames[0][2]["message"]
    finally:
        s.close()


def test_a_subscriber_that_never_reads_is_cut_off(served):
    s = connect(served)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        exchange(s, hello(client="slow-sub"), 1)
        frames, _ = exchange(s, P.frame([2, "subscribe", {"kinds": ["completed"]}]), 1)
        assert frames[0][:2] == [2, P.OK]
        with Client(served.address, token=ADMIN, heartbeat=False) as c:
            c.declare_queue("flood")
            c.register_agent("fw", ["flood"], 100)
            with pytest.raises(InvalidSpecError):   # over max_frame: refused before sending
                c.submit_many([{"queue": "flood", "payload": "x" * 1000}] * 100)
            for _ in range(40):
                c.submit_many([{"queue": "flood"} for _ in range(100)])
                leases = c.claim_many("fw", 100)
                c.complete_many(leases, ["x" * 500] * len(leases))
        srv = served.server
        left = served.call(lambda: [c for c in srv.conns if c.session is not None
                                    and c.session.client == "slow-sub"])
        info = served.call(lambda: [(c.paused, c.closed, c.transport.get_write_buffer_size(),
                                     len(c.out), len(srv.subscribers)) for c in left])
        assert left == [], info     # over write_buffer_max: closed, the server goes on
    finally:
        s.close()
    healthy(served)
