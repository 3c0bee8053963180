"""The kernel's snapshot format: a versioned, checksummed container parsed with bounds checks.

A snapshot is an optimisation, never the truth: a file that fails any check below is
reported and the log replayed instead.  It is read back as untrusted input (a directory may
come from anywhere), so nothing in it can execute code (no pickle: msgpack and raw integer
arrays only) and every value is checked before it reaches the compiled core.

Layout of the blob (stored by :mod:`eskernel.eventlog.snapshots` inside its own checksummed file)::

    0   magic       8 bytes   b"ESKSTATE"
    8   version     u32       FORMAT (3); other versions are refused, not guessed at
    12  sections    u32       SECTION_COUNT
    16  hash        32 bytes  BLAKE2b-256 of everything after the header
    48  table       16 bytes per section: tag u32, length u64, CRC32C u32 of the body
    ..  bodies      in table order, back to back, nothing after the last

Sections, each exactly once and in this order:

    1 HEAD      msgpack map: applied, last_ts, tail (BLAKE2b-128 of the last record the
                snapshot covers, b"" when it covers none), queue_names, agent_names
    2 CORE      the compiled scheduler's arrays (``Scheduler.dump``); validated on load
    3 TASK_IDS  msgpack arrays of str, in handle order
    4 PAYLOADS  msgpack arrays of bytes (each one JSON document)
    5 RESULTS   msgpack arrays of bytes or nil
    6 ERRORS    msgpack arrays of str or nil
    7 META      msgpack arrays of nil or [name, tags (a map), key, parent, depends_on]
    8 WORKFLOWS one JSON document: the workflow runs (``WorkflowTable.dump``), each
                definition re-validated and each open task checked to exist on load

Column sections are a stream of arrays of at most ``CHUNK`` items, so a background writer
hands the GIL back between chunks.  Derived tables (the id indexes, agent capabilities,
idempotency keys, backoff policies) are rebuilt from these on load, never stored twice.

The CRCs name the damaged section; the BLAKE2b hash makes any change to a valid file (even
with every CRC recomputed) a mismatch.  Anyone able to write a whole new snapshot can also
write a whole new log: ``eskernel verify`` replays the log and compares every snapshot.
"""

from __future__ import annotations

import hashlib
import struct
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

import msgpack
import orjson

from eskernel.eventlog.framing import crc32c

from . import events
from ._apply import _NO_META, KernelState
from ._core import Scheduler
from ._validate import MAX_TAG_DEPTH, MAX_TIME_S, NS, depth_ok
from .errors import EskernelError, SnapshotCorruptError

MAGIC = b"ESKSTATE"
FORMAT = 3
HEAD, CORE, TASK_IDS, PAYLOADS, RESULTS, ERRORS, META, WORKFLOWS = range(1, 9)
SECTION_NAMES = {HEAD: "head", CORE: "core", TASK_IDS: "task ids", PAYLOADS: "payloads",
                 RESULTS: "results", ERRORS: "errors", META: "metadata",
                 WORKFLOWS: "workflows"}
SECTION_COUNT = len(SECTION_NAMES)
CHUNK = 8192
_HEADER = struct.Struct("<8sII32s")
_ENTRY = struct.Struct("<IQI")


def tail_hash(record: bytes) -> bytes:
    """The fingerprint of the last record a snapshot covers."""
    return hashlib.blake2b(record, digest_size=16).digest()


class Capture:
    """The state at one safe point, copied so the kernel can go on while it is encoded.

    Copying costs a memcpy of the core's arrays plus shallow list copies (the items are
    immutable), a few ms per 100 k tasks; encoding and writing can then run on a thread.
    """

    __slots__ = ("applied", "last_ts", "core", "task_ids", "queue_names", "agent_names",
                 "payloads", "results", "errors", "meta", "workflows")

    def __init__(self, state: KernelState) -> None:
        s = state.sched
        self.applied: int = state.applied
        self.last_ts: int = state.last_ts
        self.core = s.dump()
        self.task_ids, self.queue_names = list(s.task_ids), list(s.queue_names)
        self.agent_names = list(s.agent_names)
        self.payloads, self.results = list(state.payloads), list(state.results)
        self.errors, self.meta = list(state.errors), list(state.meta)
        # Encoded now: the runs are mutable and the kernel goes on while this is written.
        self.workflows = events.dumps(state.workflows.dump())

    def encode(self, tail: bytes) -> bytes:
        """The snapshot blob; ``tail`` is :func:`tail_hash` of record ``applied - 1``."""
        head = msgpack.packb({"applied": self.applied, "last_ts": self.last_ts, "tail": tail,
                              "queue_names": self.queue_names,
                              "agent_names": self.agent_names})
        meta = [None if m is _NO_META else [m[0], m[1], m[2], m[3], list(m[4])]
                for m in self.meta]
        bodies = [head, self.core, _column(self.task_ids), _column(self.payloads),
                  _column(self.results), _column(self.errors), _column(meta),
                  self.workflows]
        table = b"".join(_ENTRY.pack(tag, len(body), crc32c(body))
                         for tag, body in zip(SECTION_NAMES, bodies))
        h = hashlib.blake2b(table, digest_size=32)
        for body in bodies:
            h.update(body)
        return b"".join([_HEADER.pack(MAGIC, FORMAT, SECTION_COUNT, h.digest()), table,
                         *bodies])


def _column(items: list[Any]) -> bytes:
    pack = msgpack.Packer().pack
    return b"".join([pack(items[i:i + CHUNK]) for i in range(0, len(items), CHUNK)])


# -- reading --------------------------------------------------------------------------------

class _Hasher(threading.Thread):
    # BLAKE2b releases the GIL on large buffers: the hash runs beside the decoding.
    def __init__(self, data: memoryview) -> None:
        super().__init__(name="eskernel-snapshot-hash", daemon=True)
        self.data, self.digest = data, b""
        self.start()

    def run(self) -> None:
        self.digest = hashlib.blake2b(self.data, digest_size=32).digest()


def _sections(blob: bytes) -> tuple[dict[int, memoryview], Any]:
    if len(blob) < _HEADER.size:
        raise SnapshotCorruptError(f"{len(blob)} bytes, shorter than the snapshot header")
    magic, version, count, digest = _HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise SnapshotCorruptError(f"bad magic {magic!r}: not an eskernel state snapshot")
    if version != FORMAT:
        raise SnapshotCorruptError(
            f"snapshot format {version}; this eskernel reads format {FORMAT} (the log is "
            "replayed instead)")
    if count != SECTION_COUNT:
        raise SnapshotCorruptError(f"{count} sections, expected {SECTION_COUNT}")
    table_end = _HEADER.size + count * _ENTRY.size
    if len(blob) < table_end:
        raise SnapshotCorruptError("the section table is truncated")
    view = memoryview(blob)
    out: dict[int, memoryview] = {}
    pos = table_end
    for i, tag in enumerate(SECTION_NAMES):
        got, length, crc = _ENTRY.unpack_from(blob, _HEADER.size + i * _ENTRY.size)
        if got != tag:
            raise SnapshotCorruptError(f"section {i} has tag {got}, expected {tag}")
        if length > len(blob) - pos:
            raise SnapshotCorruptError(
                f"the {SECTION_NAMES[tag]} section claims {length} bytes, {len(blob) - pos} "
                "are left")
        body = view[pos:pos + length]
        if crc32c(body) != crc:
            raise SnapshotCorruptError(f"the {SECTION_NAMES[tag]} section fails its checksum")
        out[tag] = body
        pos += length
    if pos != len(blob):
        raise SnapshotCorruptError(f"{len(blob) - pos} bytes follow the last section")
    hasher = _Hasher(view[_HEADER.size:])

    def check_hash() -> None:
        hasher.join()
        if hasher.digest != digest:
            raise SnapshotCorruptError("the content hash does not match: the file was altered")
    return out, check_hash


def _unpack(body: memoryview, what: str) -> Iterator[Any]:
    # No ext hook, str keys only, and a buffer no larger than the section: msgpack builds
    # plain values and nothing else.
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=True, max_buffer_size=max(
        len(body), 1), use_list=True)
    unpacker.feed(body)
    try:
        yield from unpacker
    except (ValueError, msgpack.UnpackException) as err:
        raise SnapshotCorruptError(f"the {what} section does not decode: {err}") from None


def _column_items(body: memoryview, tag: int, n: int) -> list[Any]:
    what = SECTION_NAMES[tag]
    out: list[Any] = []
    for chunk in _unpack(body, what):
        if type(chunk) is not list or len(chunk) > n - len(out):
            raise SnapshotCorruptError(f"the {what} section holds more than {n} items")
        out.extend(chunk)
    if len(out) != n:
        raise SnapshotCorruptError(f"the {what} section holds {len(out)} items, expected {n}")
    return out


def _names(value: Any, what: str) -> list[str]:
    if type(value) is not list or not set(map(type, value)) <= {str}:
        raise SnapshotCorruptError(f"{what} is not a list of strings")
    if len(set(value)) != len(value):
        raise SnapshotCorruptError(f"{what} holds a name twice")
    return value


def _check_column(items: list[Any], kinds: set[type], json_docs: bool, what: str) -> None:
    # Whole-column checks (no Python call per item): the kinds present, then every JSON
    # document parsed; only a failure looks for the first bad item to name it.
    if not set(map(type, items)) <= kinds:
        i = next(i for i, x in enumerate(items) if type(x) not in kinds)
        raise SnapshotCorruptError(f"{what} {i} is a {type(items[i]).__name__}")
    if json_docs:
        docs = [x for x in items if x is not None] if type(None) in kinds else items
        try:
            deque(map(orjson.loads, docs), maxlen=0)
        except orjson.JSONDecodeError as err:
            raise SnapshotCorruptError(f"a {what} is not a JSON document: {err}") from None


def _meta(m: Any, task_index: dict[str, int], h: int) -> tuple[Any, ...]:
    if type(m) is not list or len(m) != 5:
        raise SnapshotCorruptError(f"metadata of task {h} is not a 5-item list")
    name, tags, key, parent, deps = m
    if (any(x is not None and type(x) is not str for x in (name, key, parent))
            or (tags is not None and (type(tags) is not dict
                                      or not depth_ok(tags, MAX_TAG_DEPTH)))
            or type(deps) is not list
            or any(type(d) is not str or task_index.get(d, h) >= h for d in deps)):
        raise SnapshotCorruptError(f"metadata of task {h} has a field of the wrong kind or "
                                   "names a dependency that is not an earlier task")
    if tags is not None:
        try:            # JSON types only, as a submit accepts them (msgpack has more)
            orjson.dumps(tags)
        except TypeError:       # orjson.JSONEncodeError is a TypeError
            raise SnapshotCorruptError(f"the tags of task {h} are not JSON") from None
    return (name, tags, key, parent, tuple(deps))


def decode(blob: bytes) -> tuple[KernelState, bytes]:
    """A :class:`KernelState` from a snapshot blob, and the tail hash it claims.

    Raises:
        SnapshotCorruptError: anything at all is wrong; the message says what.
    """
    sec, check_hash = _sections(blob)
    try:
        return _decode(sec)
    finally:
        check_hash()     # a state that fails it is dropped (the finally raises instead)


def _decode(sec: dict[int, memoryview]) -> tuple[KernelState, bytes]:
    heads = list(_unpack(sec[HEAD], "head"))
    head = heads[0] if len(heads) == 1 else None
    if type(head) is not dict or set(head) != {"applied", "last_ts", "tail", "queue_names",
                                               "agent_names"}:
        raise SnapshotCorruptError("the head section is not the expected map")
    applied, last_ts, tail = head["applied"], head["last_ts"], head["tail"]
    if (type(applied) is not int or type(last_ts) is not int or not 0 <= applied < 2**62
            or not 0 <= last_ts <= MAX_TIME_S * NS
            or type(tail) is not bytes or len(tail) != (16 if applied else 0)):
        raise SnapshotCorruptError("the head section's counters are out of range")
    queue_names = _names(head["queue_names"], "the queue names")
    agent_names = _names(head["agent_names"], "the agent names")
    n = _core_task_count(sec[CORE])
    task_ids = _column_items(sec[TASK_IDS], TASK_IDS, n)
    if not set(map(type, task_ids)) <= {str}:      # before hashing: a list is unhashable
        raise SnapshotCorruptError("the task ids are not all strings")
    task_index = dict(zip(task_ids, range(n)))     # hashes each id once, for both uses
    if len(task_index) != n:
        raise SnapshotCorruptError("the task ids are not distinct strings")
    try:
        sched = Scheduler.load(bytes(sec[CORE]), task_ids, queue_names, agent_names)
    except (ValueError, MemoryError) as err:
        raise SnapshotCorruptError(f"the core section does not load: {err}") from None
    payloads = _column_items(sec[PAYLOADS], PAYLOADS, n)
    results = _column_items(sec[RESULTS], RESULTS, n)
    errors = _column_items(sec[ERRORS], ERRORS, n)
    _check_column(payloads, {bytes}, True, "payload")
    _check_column(results, {bytes, type(None)}, True, "result")
    _check_column(errors, {str, type(None)}, False, "error")
    st = KernelState()
    st.sched = sched
    st.task_index = task_index
    st.queue_index = {q: h for h, q in enumerate(queue_names)}
    st.agent_index = {a: h for h, a in enumerate(agent_names)}
    st.meta = [_NO_META if m is None else _meta(m, task_index, h)
               for h, m in enumerate(_column_items(sec[META], META, n))]
    for h, m in enumerate(st.meta):
        if m[2] is not None:
            if m[2] in st.keys:
                raise SnapshotCorruptError(f"idempotency key {m[2]!r} is held by two tasks")
            st.keys[m[2]] = task_ids[h]
    st.agent_caps = [tuple(queue_names[q] for q in sched.agent_info(a)[3])
                     for a in range(len(agent_names))]
    st.payloads, st.results, st.errors = payloads, results, errors
    st.policies = {p: i for i, p in enumerate(sched.policy_table())}
    default = events.DEFAULT_BACKOFF_KEY
    if default not in st.policies or len(st.policies) != len(sched.policy_table()):
        raise SnapshotCorruptError("the backoff policy table lacks the default or repeats one")
    st.default_policy = st.policies[default]
    st.applied, st.last_ts = applied, last_ts
    _workflows(st, sec[WORKFLOWS])
    return st, tail


def _workflows(st: KernelState, body: memoryview) -> None:
    try:
        runs = orjson.loads(body)
        if type(runs) is not list:
            raise ValueError("not a list of runs")
        st.workflows.load(runs)
    except (ValueError, EskernelError) as err:
        raise SnapshotCorruptError(f"the workflows section does not load: {err}") from None
    for task in st.workflows.tasks:
        if task not in st.task_index:
            raise SnapshotCorruptError(f"the workflows section names task {task!r:.80}, "
                                       "which the snapshot does not hold")


def _core_task_count(core: memoryview) -> int:
    # The core's header: 16 int64, the task count second (see _native/snapshot.pxi).
    if len(core) < 16:
        raise SnapshotCorruptError("the core section is truncated")
    n = struct.unpack_from("<q", core, 8)[0]
    if not 0 <= n <= len(core):
        raise SnapshotCorruptError(f"the core section claims {n} tasks")
    return int(n)
