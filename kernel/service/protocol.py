"""The wire protocol of ``eskernel serve`` (specified in ``docs/protocol.md``): framing,
the msgpack codec, message shapes and the mapping of errors to and from the wire.

Invariants:

* A connection opens with the 8-byte preamble ``MAGIC + u16 version + u16 flags`` from the
  client; every byte after it, both ways, is a frame: a big-endian u32 length ``1 <= n <=
  max_frame`` and ``n`` bytes of one msgpack value.
* A request is ``[rid, op, args]`` (``rid`` an int in ``[1, 2**63)``, ``op`` a str, ``args``
  a map with str keys); a reply is ``[rid, OK, value]`` or ``[rid, ERR, error]``; a push
  from the server is ``[0, PUSH, event]``.
* Decoding never builds anything but nil, bool, int, float, str, bytes, array and map:
  msgpack extension types are refused, so nothing read from the network runs code.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from .. import errors

__all__ = ["MAGIC", "VERSION", "PREAMBLE", "OK", "ERR", "PUSH", "MAX_FRAME", "HEADER",
           "encode", "decode", "frame", "error_to_wire", "error_from_wire", "OPS",
           "READ_ONLY", "preamble"]

MAGIC = b"ESKN"
VERSION = 1
PREAMBLE = struct.Struct(">4sHH")     # magic, protocol version, flags (0)
HEADER = struct.Struct(">I")
OK, ERR, PUSH = 0, 1, 2
#: Default largest frame body a server accepts (announced in the hello reply).
MAX_FRAME = 8 << 20
MAX_RID = 2**63 - 1

#: Every request type, with the arguments it takes (docs/protocol.md gives their types).
OPS: dict[str, tuple[str, ...]] = {
    "hello": ("client", "token", "agents", "name"),
    "ping": (),
    "submit": ("spec",),
    "submit_many": ("specs",),
    "declare_queue": ("name", "max_concurrent", "paused"),
    "pause_queue": ("name",),
    "resume_queue": ("name",),
    "register_agent": ("agent", "capabilities", "capacity"),
    "agent_online": ("agent",),
    "agent_offline": ("agent",),
    "claim": ("agent", "wait"),
    "claim_many": ("agent", "n", "wait"),
    "heartbeat": ("lease",),
    "session_heartbeat": ("leases",),
    "complete": ("lease", "result"),
    "complete_many": ("leases", "results"),
    "complete_and_claim": ("lease", "result"),
    "fail": ("lease", "error", "retryable"),
    "release": ("lease",),
    "cancel": ("task",),
    "requeue": ("task",),
    "task": ("task",),
    "tasks": ("status", "queue", "agent", "limit"),
    "stats": (),
    "history": ("task",),
    "explain": ("task",),
    "lease_task": ("lease",),
    "next_offset": (),
    "tick": (),
    "snapshot": (),
    "wait": ("tasks", "timeout"),
    "subscribe": ("kinds",),
}
#: Requests that change nothing: a replayed request id of one of these is simply run again.
READ_ONLY = frozenset({"ping", "task", "tasks", "stats", "history", "explain", "lease_task",
                       "next_offset", "wait", "subscribe"})

_packer = msgpack.Packer(use_bin_type=True, datetime=False)


def _no_ext(code: int, data: bytes) -> Any:
    raise errors.ProtocolError(f"msgpack extension type {code} is not part of the protocol; "
                               "send only nil, bool, int, float, str, bin, array and map")


def preamble(version: int = VERSION) -> bytes:
    """The 8 bytes a client sends first."""
    return PREAMBLE.pack(MAGIC, version, 0)


def encode(value: Any) -> bytes:
    """One msgpack value (a reply, request or push) as bytes."""
    try:
        data: bytes = _packer.pack(value)
        return data
    except (TypeError, ValueError, OverflowError) as err:
        raise errors.InvalidSpecError(
            f"a value cannot be sent over the wire ({err}); send JSON-like data") from None


def frame(value: Any) -> bytes:
    """``value`` encoded and prefixed with its u32 length."""
    body = encode(value)
    return HEADER.pack(len(body)) + body


def decode(body: bytes, strict: bool = True) -> Any:
    """Decode one frame body; any malformed input raises :class:`ProtocolError`.  Requests
    are decoded ``strict`` (map keys are str); replies may have int keys (by priority)."""
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=strict, ext_hook=_no_ext,
                               timestamp=0, use_list=True)
    except errors.ProtocolError:
        raise
    except Exception as err:      # msgpack raises ValueError, ExtraData, StackError, ...
        raise errors.ProtocolError(f"frame body is not one valid msgpack value ({type(err).__name__}: "
                                   f"{str(err)[:120]}); send one msgpack value per frame") from None


# -- errors -------------------------------------------------------------------------------

_BY_NAME: dict[str, type[errors.EskernelError]] = {
    name: getattr(errors, name) for name in errors.__all__
    if isinstance(getattr(errors, name), type)
    and issubclass(getattr(errors, name), errors.EskernelError)}


def error_to_wire(err: BaseException) -> dict[str, Any]:
    """The wire form of an error: ``{"type", "message"}`` plus ``retry_after`` when busy.
    Anything outside the hierarchy is reported as ``KernelInternalError``."""
    if isinstance(err, errors.EskernelError):
        name = type(err).__name__
        if name not in _BY_NAME:     # a subclass from elsewhere: the nearest public base
            name = next(c.__name__ for c in type(err).__mro__ if c.__name__ in _BY_NAME)
        out: dict[str, Any] = {"type": name, "message": str(err)}
        if isinstance(err, errors.ServerBusyError):
            out["retry_after"] = err.retry_after
        return out
    return {"type": "KernelInternalError",
            "message": f"the server failed on this request ({type(err).__name__}: {err}); "
                       "this is a bug in eskernel; please report it with the server's log"}


def error_from_wire(value: Any) -> errors.EskernelError:
    """Rebuild the typed error a server sent; an unknown type is a :class:`ServiceError`."""
    if not isinstance(value, dict):
        return errors.ProtocolError(f"the server sent a malformed error {value!r:.100}")
    name, message = value.get("type"), value.get("message")
    message = message if isinstance(message, str) else repr(message)
    cls = _BY_NAME.get(name) if isinstance(name, str) else None
    if cls is None:
        return errors.ServiceError(f"{name}: {message}")
    if cls is errors.ServerBusyError:
        ra = value.get("retry_after")
        return errors.ServerBusyError(message, float(ra) if isinstance(ra, (int, float)) else 0.1)
    if issubclass(cls, errors.LogCorruptError):
        return errors.LogCorruptError(message, segment="", offset=-1)
    if issubclass(cls, errors.LogLockedError):
        return errors.LogLockedError(message, holder_pid=None)
    try:
        return cls(message)
    except TypeError:
        return errors.ServiceError(f"{name}: {message}")
