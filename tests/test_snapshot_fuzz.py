"""Snapshots read back from disk are fuzzed: every outcome is a typed rejection (and the log
is replayed instead) or a loaded state that passes ``check()`` and that either equals the
clean one or is reported by ``eskernel verify``.  Never a crash, never another exception.

A few clean kernels exercising every structure the core stores (queues paused and limited,
agents offline and with several queues, tasks in every status, pinned tasks, dependencies,
idempotency keys, names and tags, backoff policies, timeouts, live and freed lease slots,
timers) each write one snapshot at the log's end.  Their snapshot is then mutated in three
modes:

``file``
    bytes of the whole ``.snap`` file flipped, truncated or extended: the file's own CRC
    fails, the snapshot is passed over.
``section``
    bytes inside one section changed (or inserted, or removed), the section's CRC32C, the
    table and the file's CRC recomputed, the BLAKE2b hash left alone ("a valid checksum"):
    every one is rejected, after being parsed, so the parser meets every input.
``forge``
    a forger who recomputes every checksum *and* the hash: fields of the core's arrays
    picked structure-aware (the header's 16 counts locate each array) and set to edge
    values, items of one array swapped or copied, counts grown or shrunk with the bytes to
    match, raw bytes; and the msgpack sections
    rewritten with wrong types, unknown, duplicate or reordered ids, deep nesting, huge
    lengths, extra chunks.

Most cases are judged with :func:`kernel._snapshot.decode` plus the two checks opening adds
(the event count, the tail hash and the last record's time); a sample, and every forged snapshot that loads a
different state, goes through ``Kernel.open``, ``Kernel.replay`` and ``verify``.

``ESKERNEL_FUZZ_SNAPSHOTS`` sets the mutations per mode and world (default 300: 2,700
mutated snapshots in all, a few seconds); ``ESKERNEL_FUZZ_SEED`` changes the seed.  Fixed
cases: ``REGRESSIONS`` (forged core fields at the edges), and one ``test_known_*`` per wrong
outcome found and not fixed yet (see ``KNOWN``).
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import shutil
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import msgpack
import pytest

from eskernel.verify import verify_log
from eskernel.eventlog import EventLog
from eskernel.eventlog.framing import crc32c
from eskernel.eventlog.snapshots import latest_snapshot, list_snapshots
from eskernel import InvalidSpecError, Kernel, ManualClock, SnapshotCorruptError
from eskernel._snapshot import decode, tail_hash

N = int(os.environ.get("ESKERNEL_FUZZ_SNAPSHOTS", "300"))
SEED = int(os.environ.get("ESKERNEL_FUZZ_SEED", "15"))
#: One case in this many goes through a full Kernel.open / Kernel.replay as well.
FULL_EVERY = 10

# -- the container, re-encoded (kernel/_snapshot.py and eventlog/snapshots.py) ---------------

BLOB_HEADER = struct.Struct("<8sII32s")      # magic, format, section count, BLAKE2b-256
ENTRY = struct.Struct("<IQI")                # tag, length, CRC32C of the body
FILE_HEADER = struct.Struct("<8sQQ")         # magic, offset, blob length; then CRC32C u32
SECTIONS = ["head", "core", "task ids", "payloads", "results", "errors", "metadata"]


def split(blob: bytes) -> tuple[bytes, list[bytes]]:
    """(the stored hash, the section bodies in order) of a well-formed blob."""
    magic, fmt, count, digest = BLOB_HEADER.unpack_from(blob)
    assert (magic, count) == (b"ESKSTATE", len(SECTIONS)), "the snapshot layout changed"
    pos = BLOB_HEADER.size + count * ENTRY.size
    bodies = []
    for i in range(count):
        _, length, _ = ENTRY.unpack_from(blob, BLOB_HEADER.size + i * ENTRY.size)
        bodies.append(blob[pos:pos + length])
        pos += length
    assert pos == len(blob)
    return digest, bodies


def assemble(bodies: list[bytes], digest: bytes | None = None) -> bytes:
    """A blob of these bodies with every CRC recomputed; the BLAKE2b hash too unless
    ``digest`` (a stale one) is given."""
    table = b"".join(ENTRY.pack(tag, len(b), crc32c(b)) for tag, b in enumerate(bodies, 1))
    if digest is None:
        h = hashlib.blake2b(table, digest_size=32)
        for b in bodies:
            h.update(b)
        digest = h.digest()
    return BLOB_HEADER.pack(b"ESKSTATE", 2, len(bodies), digest) + table + b"".join(bodies)


def snap_file(offset: int, blob: bytes) -> bytes:
    """The ``<offset>.snap`` file holding ``blob``, with its CRC."""
    head = FILE_HEADER.pack(b"\x89ESKSNP\n", offset, len(blob))
    return head + struct.pack("<I", crc32c(blob, crc32c(head))) + blob


# -- the core section's layout (_native/snapshot.pxi: sched_dump) ----------------------------

TASK = [("due", "q", 0), ("timeout", "q", 8), ("submitted", "q", 16), ("started", "q", 24),
        ("finished", "q", 32), ("queue", "i", 40), ("pinned", "i", 44), ("unmet", "i", 48),
        ("heap_pos", "i", 52), ("lease_slot", "i", 56), ("last_agent", "i", 60),
        ("attempts", "i", 64), ("max_attempts", "i", 68), ("dependents", "i", 72),
        ("n_deps", "i", 76), ("policy", "i", 80), ("prio", "h", 84), ("status", "B", 86),
        ("flags", "B", 87)]
EDGE = [("target", "i", 0), ("next", "i", 4)]
QUEUE = [("heap.keys", "q", 0), ("heap.n", "q", 8), ("heap.cap", "q", 16),
         ("max_concurrent", "i", 24), ("running", "i", 28), ("ready", "i", 32),
         ("paused", "B", 36)]
AGENT = [("capacity", "i", 0), ("active", "i", 4), ("caps_off", "i", 8), ("n_caps", "i", 12),
         ("online", "B", 16)]
HEAP = [("keys", "q", 0), ("n", "q", 8), ("cap", "q", 16)]
POLICY = [("initial", "q", 0), ("maximum", "q", 8), ("factor", "d", 16), ("jitter", "d", 24)]
SLOT = [("lease_id", "q", 0), ("expires", "q", 8), ("task", "i", 16), ("agent", "i", 20),
        ("attempt", "i", 24), ("next_free", "i", 28)]
TIME = [("at", "q", 0), ("tie", "q", 8), ("id", "i", 16)]
SIZES = {"task": 88, "edge": 8, "queue": 40, "agent": 20, "cap": 4, "pinned": 24,
         "policy": 32, "slot": 32, "time": 24, "pos": 4, "key": 8}


@dataclass(frozen=True)
class Field:
    label: str      # e.g. "task[3].heap_pos", "hdr[9]"
    offset: int     # in the core section
    fmt: str        # struct format character


@dataclass(frozen=True)
class Array:
    name: str       # "task", "edge", ... as in SIZES
    start: int      # offset of its first item in the core section
    count: int
    hdr: int | None  # the header slot holding its count, when it has one


def core_layout(core: bytes) -> tuple[list[Field], list[Array]]:
    """Every field of a clean core section, and where each array starts (walking the
    section as sched_load does)."""
    hdr = struct.unpack_from("<16q", core)
    assert (hdr[0], hdr[13], hdr[14], hdr[15]) == (88, 32, 40, 20), (
        "the core's struct sizes changed: update the layout tables in this file")
    fields = [Field(f"hdr[{i}]", 8 * i, "q") for i in range(16)]
    fields += [Field(f"st_counts[{i}]", 128 + 8 * i, "q") for i in range(7)]
    arrays: list[Array] = []
    pos = 128 + 56

    def take(name: str, count: int, layout: list[tuple[str, str, int]] | None,
             hdr_slot: int | None = None) -> int:
        nonlocal pos
        start, size = pos, SIZES[name]
        arrays.append(Array(name, start, count, hdr_slot))
        for i in range(count):
            if layout is None:
                fmt = "Q" if name == "key" else "i"
                fields.append(Field(f"{name}[{i}]", start + i * size, fmt))
            else:
                fields.extend(Field(f"{name}[{i}].{f}", start + i * size + off, fmt)
                              for f, fmt, off in layout)
        pos += count * size
        return start

    n_tasks, n_edges, n_queues, n_agents, n_caps = hdr[1], hdr[2], hdr[3], hdr[4], hdr[5]
    take("task", n_tasks, TASK, 1)
    take("edge", n_edges, EDGE, 2)
    queues = take("queue", n_queues, QUEUE, 3)
    for q in range(n_queues):
        take("key", struct.unpack_from("<q", core, queues + 40 * q + 8)[0], None)
    take("agent", n_agents, AGENT, 4)
    take("cap", n_caps, None, 5)
    pinned = take("pinned", n_caps, HEAP, 5)
    for c in range(n_caps):
        take("key", struct.unpack_from("<q", core, pinned + 24 * c + 8)[0], None)
    take("policy", hdr[6], POLICY, 6)
    take("slot", hdr[7], SLOT, 7)
    take("time", hdr[11], TIME, 11)
    take("pos", n_tasks, None)
    take("time", hdr[12], TIME, 12)
    take("pos", hdr[7], None)
    assert pos == len(core), "the core section's layout changed: update this file"
    return fields, arrays


def put(buf: bytearray, offset: int, fmt: str, value: Any) -> None:
    """Store ``value`` at ``offset``, wrapped to the field's width."""
    if fmt == "d":
        struct.pack_into("<d", buf, offset, value)
        return
    bits = struct.calcsize(fmt) * 8
    value &= (1 << bits) - 1
    if fmt in "bhiq" and value >= 1 << (bits - 1):
        value -= 1 << bits
    struct.pack_into("<" + fmt, buf, offset, value)


def edge_values(fmt: str, orig: Any, n: int, rng: random.Random) -> Any:
    """A value for a field: biased to edges (-1, 0, counts, widths' limits) and neighbours."""
    if fmt == "d":
        return rng.choice([math.nan, math.inf, -math.inf, -1.0, 0.0, 0.5, 0.999999, 1.0,
                           1e6, 1e6 + 1, 1e308, -0.0, orig * 2, orig + 1e-9])
    if fmt == "Q":   # a ready-heap key: (PRIO_MAX - prio) << 40 | handle
        prio, h = orig >> 40, orig & ((1 << 40) - 1)
        return rng.choice([
            (prio << 40) | rng.randrange(n + 3), ((prio + rng.choice([-1, 1])) << 40) | h,
            (rng.randrange(1 << 24) << 40) | h, orig ^ (1 << rng.randrange(64)), 0,
            (1 << 64) - 1, (1 << 40) - 1, orig + 1, orig - 1, (1001 << 40) | h])
    common = [-2, -1, 0, 1, 2, 3, n - 1, n, n + 1, 0x7FFFFFFF, -0x80000000, 0x7FFFFFF0,
              orig + 1, orig - 1, orig ^ (1 << rng.randrange(8 * struct.calcsize(fmt))),
              rng.randrange(-4, n + 4)]
    if fmt == "B":
        common += [4, 5, 6, 7, 8, 255, 128]
    elif fmt == "h":
        common += [999, 1000, 1001, 32767, -32768]
    elif fmt == "q":
        common += [2 ** 62, 2 ** 63 - 1, -2 ** 63, 2 ** 40, 2 ** 31, orig * 2, orig + 10 ** 9,
                   rng.randrange(1 << 64)]
    return rng.choice(common)


def mutate_core(core: bytes, rng: random.Random) -> tuple[bytes, list[Any]]:
    """A forged core section and the list of what was done to it."""
    fields, arrays = core_layout(core)
    n = struct.unpack_from("<q", core, 8)[0]
    buf = bytearray(core)
    done: list[Any] = []
    r = rng.random()
    if r < 0.75:
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            f = rng.choice(fields)
            orig = struct.unpack_from("<" + f.fmt, buf, f.offset)[0]
            value = edge_values(f.fmt, orig, n, rng)
            put(buf, f.offset, f.fmt, value)
            done.append(("field", f.label, f.offset, f.fmt, value))
    elif r < 0.85:
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(buf))
            buf[i] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
            done.append(("byte", i, buf[i]))
    elif r < 0.9:
        # Two items of one array swapped, or one copied over another: each item is valid
        # on its own, only the links between them break.
        arr = rng.choice([a for a in arrays if a.count > 1] or arrays)
        size = SIZES[arr.name]
        if arr.count > 1:
            i, j = rng.sample(range(arr.count), 2)
            a, b = arr.start + i * size, arr.start + j * size
            item_i, item_j = bytes(buf[a:a + size]), bytes(buf[b:b + size])
            buf[a:a + size] = item_j
            if rng.random() < 0.5:
                buf[b:b + size] = item_i
            done.append(("swap or copy", arr.name, i, j))
        else:
            done.append(("nothing to swap",))
    elif r < 0.95:
        # Grow or shrink one array, its count in the header (and the bytes) to match.
        arr = rng.choice([a for a in arrays if a.hdr is not None])
        size = SIZES[arr.name]
        end = arr.start + arr.count * size
        if arr.count and rng.random() < 0.4:
            i = rng.randrange(arr.count)
            del buf[arr.start + i * size:arr.start + (i + 1) * size]
            delta = -1
        else:
            src = rng.randrange(arr.count) if arr.count else None
            item = (bytes(buf[arr.start + src * size:arr.start + (src + 1) * size])
                    if src is not None and rng.random() < 0.7 else bytes(size))
            buf[end:end] = item
            delta = 1
        struct.pack_into("<q", buf, 8 * arr.hdr,
                         struct.unpack_from("<q", buf, 8 * arr.hdr)[0] + delta)
        done.append(("resize", arr.name, delta))
    else:
        i = rng.randrange(len(buf) + 1)
        if rng.random() < 0.5:
            k = rng.randint(1, 16)
            buf[i:i] = bytes(rng.randrange(256) for _ in range(k))
            done.append(("insert", i, k))
        else:
            k = rng.randint(1, 16)
            del buf[i:i + k]
            done.append(("delete", i, k))
    return bytes(buf), done


# -- msgpack sections --------------------------------------------------------------------

def deep(depth: int, leaf: bytes = b"\xc0") -> bytes:
    """msgpack of a list nested ``depth`` deep (built by hand: packb refuses it)."""
    return b"\x91" * depth + leaf


WEIRD: list[Any] = [None, True, False, 0, -1, 1, 2 ** 31, 2 ** 63 - 1, -2 ** 63, 2 ** 64 - 1,
                    1.5, math.nan, math.inf, "", "x", "\udcff".encode("utf-8", "surrogatepass"),
                    b"", b"x", b"{", b"null", b"[1,2]", [], {}, [None] * 5, {"a": 1},
                    ["n", {}, None, None, []], "t0", "q"]


def weird(rng: random.Random, pool: list[Any]) -> Any:
    return rng.choice(WEIRD + pool)


def unpack_all(body: bytes) -> list[Any]:
    """The objects of a clean msgpack section (trusted: it is our own)."""
    u = msgpack.Unpacker(raw=False, strict_map_key=False, use_list=True)
    u.feed(body)
    return list(u)


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def mutate_head(body: bytes, rng: random.Random, pool: list[Any]) -> tuple[bytes, list[Any]]:
    (head,) = unpack_all(body)
    key = rng.choice(sorted(head))
    r = rng.random()
    if r < 0.15:
        del head[key]
        done = ("drop", key)
    elif r < 0.2:
        head[rng.choice(["extra", 1, "Applied"])] = 0
        done = ("extra key",)
    elif key in ("queue_names", "agent_names") and head[key] and r < 0.7:
        names = head[key]
        how = rng.choice(["swap", "dup", "pop", "add", "weird", "rename"])
        if how == "swap" and len(names) > 1:
            i, j = rng.sample(range(len(names)), 2)
            names[i], names[j] = names[j], names[i]
        elif how == "dup":
            names[rng.randrange(len(names))] = names[rng.randrange(len(names))]
        elif how == "pop":
            names.pop(rng.randrange(len(names)))
        elif how == "add":
            names.append(rng.choice(["zz", names[0], "", None]))
        elif how == "rename":
            names[rng.randrange(len(names))] = "renamed"
        else:
            names[rng.randrange(len(names))] = weird(rng, pool)
        done = (key, how)
    elif key in ("applied", "last_ts") and r < 0.7:
        head[key] = rng.choice([head[key] - 1, head[key] + 1, -1, 2 ** 63, 2 ** 64 - 1])
        done = (key, head[key])
    elif key == "tail" and r < 0.7:
        head[key] = rng.choice([b"", b"\x00" * 16, head[key][:15], head[key] + b"\x00",
                                bytes(16 - len(head[key])) + head[key][::-1]])
        done = (key, head[key])
    else:
        head[key] = weird(rng, pool)
        done = (key, head[key])
    return pack(head), [("head",) + done]


def mutate_column(body: bytes, section: str, rng: random.Random,
                  pool: list[Any]) -> tuple[bytes, list[Any]]:
    chunks = unpack_all(body)
    items = [x for c in chunks for x in c]
    n = len(items)
    how = rng.choice(["set", "set", "swap", "dup", "drop", "append", "chunks", "not-a-list",
                      "deep", "huge", "meta"])
    if how == "meta" and section == "metadata" and n and rng.random() < 0.2:
        # Tags (a map) holding a list nested deep: msgpack's own limit stops the deepest.
        h, depth = rng.randrange(n), rng.choice([100, 254, 255, 300, 900, 1000, 1500, 2000])
        out = b"\xdc" + struct.pack(">H", n) + b"".join(pack(x) for x in items[:h])
        out += b"\x95\xc0\x81\xa1a" + deep(depth) + b"\xc0\xc0\x90"
        out += b"".join(pack(x) for x in items[h + 1:])
        return out, [(section, "deep tags", h, depth)]
    if how == "meta" and section == "metadata" and n:
        h = rng.randrange(n)
        m = items[h] if items[h] is not None else [None, None, None, None, []]
        m = list(m)
        j = rng.randrange(6)
        if j == 5:
            m = m[:rng.randrange(5)] + [None] * rng.randrange(2)
        elif j == 4:
            m[4] = rng.choice([["nope"], [pool[h % len(pool)]], [pool[-1]], [m[4]], "t0",
                               None, list(m[4]) * 2, [pool[min(h, len(pool) - 1)]]])
        elif j == 2:
            others = [x[2] for x in items if x is not None and x[2] is not None]
            m[2] = rng.choice(others + [1, b"k"]) if others else 7
        else:
            m[j] = weird(rng, pool)
        items[h] = m
        return pack(items), [(section, "meta", h, j)]
    if how in ("set", "meta") and n:
        i = rng.randrange(n)
        items[i] = weird(rng, pool)
        return pack(items), [(section, "set", i, items[i])]
    if how == "swap" and n > 1:
        i, j = rng.sample(range(n), 2)
        items[i], items[j] = items[j], items[i]
        return pack(items), [(section, "swap", i, j)]
    if how == "dup" and n > 1:
        i, j = rng.sample(range(n), 2)
        items[i] = items[j]
        return pack(items), [(section, "dup", i, j)]
    if how == "drop" and n:
        items.pop(rng.randrange(n))
        return pack(items), [(section, "drop")]
    if how == "chunks":
        # A valid re-chunking (the same items) or one with an empty or a stray chunk.
        cut = rng.randint(0, n)
        extra = rng.choice([[], [[]], [[None]], [None], [{}]])
        out = b"".join(pack(c) for c in [items[:cut], items[cut:]] + extra)
        return out, [(section, "chunks", cut, extra)]
    if how == "not-a-list":
        return pack(rng.choice([{"a": items}, n, b"x", None])), [(section, "not-a-list")]
    if how == "deep":
        depth = rng.choice([100, 200, 300, 600, 1100, 10_000])
        i = rng.randrange(n) if n else 0
        out = b"\xdc" + struct.pack(">H", max(n, 1))
        out += b"".join(pack(x) for x in items[:i]) + deep(depth)
        out += b"".join(pack(x) for x in items[i + 1:])
        return out, [(section, "deep", i, depth)]
    if how == "huge":
        head = rng.choice([b"\xdd\xff\xff\xff\xff", b"\xdd\x7f\xff\xff\xff",
                           b"\xdb\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff",
                           b"\xdf\xff\xff\xff\xff"])
        return head + b"".join(pack(x) for x in items), [(section, "huge", head)]
    items.append(weird(rng, pool))
    return pack(items), [(section, "append")]


def mutate_bytes(body: bytes, rng: random.Random) -> tuple[bytes, list[Any]]:
    """Random bytes changed, inserted or removed."""
    buf = bytearray(body)
    done: list[Any] = []
    for _ in range(rng.choice([1, 1, 2, 4])):
        r = rng.random()
        i = rng.randrange(len(buf) + 1)
        if r < 0.7 and buf:
            i = min(i, len(buf) - 1)
            buf[i] = rng.choice([0, 1, 0x7F, 0x80, 0xC0, 0xFF, buf[i] ^ (1 << rng.randrange(8)),
                                 rng.randrange(256)])
            done.append(("set", i, buf[i]))
        elif r < 0.85:
            k = rng.randint(1, 9)
            buf[i:i] = bytes(rng.randrange(256) for _ in range(k))
            done.append(("insert", i, k))
        else:
            k = rng.randint(1, 9)
            del buf[i:i + k]
            done.append(("delete", i, k))
    return bytes(buf), done


# -- the clean kernels -------------------------------------------------------------------

def build_rich(k: Kernel, clock: ManualClock) -> None:
    k.declare_queue("q", max_concurrent=3)
    k.declare_queue("paused", paused=True)
    k.declare_queue("r")
    k.declare_queue("empty")
    k.register_agent("a", ["q", "r"], capacity=4)
    k.register_agent("b", ["q", "paused", "r", "empty"], capacity=2)
    k.register_agent("off", ["r"], capacity=1)
    k.agent_offline("off")
    for i in range(8):
        k.submit("q", {"i": i}, id=f"t{i}", priority=i % 5, timeout=5 + i)
    k.submit("r", [1, 2], id="pin-a", agent="a", name="pinned", tags={"x": 1, "y": [1]},
             key="key-a")
    k.submit("r", None, id="pin-off", agent="off")
    k.submit("paused", "x", id="held", priority=900)
    k.submit("q", None, id="child", depends_on=["t0", "t1"], key="key-c", parent="t0",
             backoff={"initial": 2.0, "factor": 3.0, "max": 100.0, "jitter": 0.5})
    k.submit("q", {"d": 1}, id="grandchild", depends_on=["child", "t2"], max_attempts=1)
    k.submit("r", None, id="later", delay=100)
    k.complete(k.claim("a"), result={"ok": 1})           # t4: COMPLETED
    k.fail(k.claim("a"), error="boom")                   # t3: RETRYING
    k.fail(k.claim("a"), error="dead", retryable=False)  # t2: FAILED; grandchild CANCELLED
    clock.advance(1.5)
    k.claim("b")                                         # RUNNING
    k.claim("a")                                         # RUNNING
    k.cancel("t5")
    k.submit_many([{"queue": "q", "id": "m1", "depends_on": ["m2"]},
                   {"queue": "q", "id": "m2", "priority": 1000}])


def build_slots(k: Kernel, clock: ManualClock) -> None:
    # Many leases, some freed: the free list of lease slots is long and out of order.
    k.declare_queue("w", max_concurrent=0)
    k.declare_queue("v")
    k.register_agent("x", ["w", "v"], capacity=50)
    k.register_agent("y", ["v"], capacity=3)
    for i in range(40):
        k.submit("w" if i % 3 else "v", {"n": i}, priority=(i * 37) % 1001,
                 depends_on=[f"t-{i // 2}"] if i % 5 == 4 else (),
                 key=f"k{i}" if i % 7 == 0 else None)
    leases = [k.claim("x") for _ in range(20)]
    for i, lease in enumerate(leases):
        if lease is not None and i % 3 == 0:
            k.complete(lease, result=[i])
        elif lease is not None and i % 4 == 1:
            k.fail(lease, error=f"e{i}")
    clock.advance(3.0)
    k.tick()
    for _ in range(3):
        k.claim("y")
    k.pause_queue("v")


def build_small(k: Kernel, clock: ManualClock) -> None:
    k.declare_queue("only")
    k.register_agent("solo", ["only"])
    k.submit("only", None, id="one")


WORLDS: dict[str, Callable[[Kernel, ManualClock], None]] = {
    "rich": build_rich, "slots": build_slots, "small": build_small}


@dataclass
class World:
    name: str
    dir: Path           # the clean log with its snapshot
    work: Path          # a copy of the log, where mutated snapshots are put to be opened
    offset: int
    digest: str
    blob: bytes
    tail: bytes
    pool: list[Any]     # ids and names of this world, for forged references
    extra: dict[str, Any]   # what the digest does not cover: last_ts, the policy table


def make_worlds(base: Path) -> dict[str, World]:
    """Build each clean kernel under ``base`` and snapshot it."""
    out = {}
    for name, build in WORLDS.items():
        d = base / f"world-{name}"
        clock = ManualClock(start=1_700_000_000.0)
        d.mkdir(parents=True)        # Kernel.open creates only the last directory
        with Kernel.open(d / "log", clock=clock, snapshot_every=0) as k:
            build(k, clock)
            offset = k.snapshot()
            digest = k.digest()
            assert k.check()
            pool = [t.id for t in k.tasks()] + [q.name for q in k.stats().queues]
        with EventLog.open_readonly(d / "log") as r:
            snap = r.latest_snapshot()
            tail = tail_hash(r.read_batch(offset - 1, 1)[0])
        assert snap is not None and snap.offset == offset
        state, got_tail = decode(snap.blob)
        assert got_tail == tail and state.digest() == digest
        assert assemble(split(snap.blob)[1]) == snap.blob, "the container helper is wrong"
        work = d / "work"
        shutil.copytree(d / "log", work, ignore=shutil.ignore_patterns("*.snap", "LOCK"))
        out[name] = World(name, d / "log", work, offset, digest, snap.blob, tail, pool,
                          beyond_digest(state))
    return out


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> dict[str, World]:
    return make_worlds(tmp_path_factory.mktemp("fuzz"))


# -- judging one mutated snapshot ------------------------------------------------------------

REJECTED, PASSED_OVER, LOADED_EQUAL, LOADED_DIFFERS, FILE_REJECTED = (
    "rejected", "passed over on open", "loaded, equal", "loaded, differs (verify reports it)",
    "file rejected")


def beyond_digest(state: Any) -> dict[str, Any]:
    """The loaded values the digest (and so verify) does not compare."""
    return {"last_ts": state.last_ts, "policies": state.sched.policy_table()}


class SilentlyDifferent(Exception):
    """A snapshot loaded with the clean digest, yet some state it carries differs."""

    def __init__(self, fields: set[str]) -> None:
        super().__init__(f"loaded with the clean digest, but {sorted(fields)} differ; verify "
                         "cannot see it")
        self.fields = fields


def judge_blob(w: World, blob: bytes) -> tuple[str, Any]:
    """Decode as opening does; any exception but SnapshotCorruptError propagates."""
    try:
        state, tail = decode(blob)
    except SnapshotCorruptError:
        return REJECTED, None
    if state.applied != w.offset or tail != w.tail or state.last_ts != w.extra["last_ts"]:
        return PASSED_OVER, None
    assert state.sched._check()
    if state.digest() != w.digest:
        return LOADED_DIFFERS, state
    got = beyond_digest(state)
    differ = {key for key in got if repr(got[key]) != repr(w.extra[key])}
    if differ:
        raise SilentlyDifferent(differ)
    return LOADED_EQUAL, state


def reopen(w: World, file_bytes: bytes, outcome: str) -> None:
    """Put the mutated file beside the log, open and replay it, and hold the outcome."""
    for off in list_snapshots(w.work):
        (w.work / f"{off:020d}.snap").unlink()
    (w.work / f"{w.offset:020d}.snap").write_bytes(file_bytes)
    with Kernel.open(w.work, snapshot_every=0) as k:
        assert k.check()
        assert k.next_offset == w.offset
        opened = k.digest()
    audit = Kernel.replay(w.work)
    try:
        assert audit.digest() == opened
    finally:
        audit.close()
    if outcome == LOADED_DIFFERS:
        assert opened != w.digest
        found = verify_log(w.work).violation
        assert found is not None and found.rule == "snapshot-digest", found
    else:
        assert opened == w.digest, f"{outcome}, yet the state differs from the clean one"
    assert list_snapshots(w.work) == [w.offset]


def exercise(state: Any) -> None:
    """Drive a loaded state a little (claims, completions, time, stats): a forged state that
    passes check() must keep working; typed refusals are fine."""
    from eskernel._kernel import Kernel as K
    from eskernel._memlog import MemoryLog
    from eskernel.errors import EskernelError, KernelInternalError
    clock = ManualClock(start=min(max(state.last_ts / 1e9, 1_700_000_000.0), 4e9))
    k = K(MemoryLog(), state, clock=clock, seed=0, snapshot_every=0, max_payload_bytes=1 << 20)
    k.stats()
    list(k.tasks())
    for _ in range(3):
        for agent in list(state.agent_index):
            try:
                lease = k.claim(agent)
                if lease is not None:
                    k.complete(lease, result=None)
            except KernelInternalError:
                raise
            except EskernelError:
                pass
        clock.advance(1000.0)
        k.tick()
    assert k.check()


def run_case(w: World, mode: str, file_bytes: bytes, blob: bytes | None, what: Any,
             full: bool) -> str:
    try:
        if blob is None:     # the file itself is damaged: its own checks must refuse it
            scratch = w.work.parent / "scratch"
            scratch.mkdir(exist_ok=True)
            path = scratch / f"{w.offset:020d}.snap"
            path.write_bytes(file_bytes)
            snap = latest_snapshot(scratch)
            path.unlink()
            if snap is None:
                outcome, state = FILE_REJECTED, None
            else:
                outcome, state = judge_blob(w, snap.blob)
        else:
            outcome, state = judge_blob(w, blob)
        if mode == "section":
            assert outcome == REJECTED, "a snapshot with a stale hash was not rejected"
        if state is not None:
            exercise(state)
        if full or outcome == LOADED_DIFFERS:
            reopen(w, file_bytes, outcome)
    except Exception as err:
        known = next((name for name, match in KNOWN.items() if match(err)), None)
        if known is None:
            raise AssertionError(f"world {w.name}, mode {mode}, mutation {what!r}: "
                                 f"{type(err).__name__}: {err}") from err
        outcome = f"known bug: {known}"
    return outcome


#: Wrong outcomes this fuzzer found that are not fixed yet: a case ending in one is counted
#: under its name instead of failing, and has an explicit ``test_known_*`` case below marked
#: xfail(strict).  Empty: the four it found (a non-string task id raising TypeError, a forged
#: last_ts, a forged backoff policy, tags nested too deep) are fixed and kept as
#: ``test_known_*`` regression cases.
KNOWN: dict[str, Callable[[BaseException], bool]] = {}


# -- the three modes ------------------------------------------------------------------------

def file_case(w: World, rng: random.Random) -> tuple[bytes, list[Any]]:
    data = bytearray(snap_file(w.offset, w.blob))
    r = rng.random()
    if r < 0.6:
        done = []
        for _ in range(rng.choice([1, 1, 2, 8])):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8) if rng.random() < 0.7 else rng.randrange(1, 256)
            done.append(("flip", i, data[i]))
    elif r < 0.8:
        k = rng.choice([1, 4, rng.randrange(1, len(data))])
        del data[len(data) - k:]
        done = [("truncate", k)]
    else:
        extra = rng.choice([b"\x00", b"\x00" * 4096, bytes(rng.randrange(256) for _ in range(9))])
        data += extra
        done = [("extend", len(extra))]
    return bytes(data), done


def section_case(w: World, rng: random.Random) -> tuple[bytes, list[Any]]:
    digest, bodies = split(w.blob)
    i = rng.randrange(len(bodies))
    body, done = mutate_bytes(bodies[i], rng)
    if body == bodies[i]:
        body += b"\x00"
    bodies[i] = body
    return assemble(bodies, digest), [SECTIONS[i]] + done


def forge_case(w: World, rng: random.Random) -> tuple[bytes, list[Any]]:
    _, bodies = split(w.blob)
    r = rng.random()
    if r < 0.5:
        bodies[1], done = mutate_core(bodies[1], rng)
    elif r < 0.62:
        bodies[0], done = mutate_head(bodies[0], rng, w.pool)
    elif r < 0.9:
        i = rng.randrange(2, 7)
        bodies[i], done = mutate_column(bodies[i], SECTIONS[i], rng, w.pool)
    else:
        i = rng.randrange(len(bodies))
        bodies[i], done = mutate_bytes(bodies[i], rng)
        done = [SECTIONS[i]] + done
    return assemble(bodies), done


MODES = {"file": file_case, "section": section_case, "forge": forge_case}


@pytest.mark.parametrize("mode", list(MODES))
def test_mutated_snapshots_are_rejected_or_equivalent(worlds, mode):
    seen: Counter[str] = Counter()
    for name, w in worlds.items():
        for i in range(N):
            rng = random.Random(f"{SEED}-{mode}-{name}-{i}")
            data, what = MODES[mode](w, rng)
            if mode == "file":
                file_bytes, blob = data, None
            else:
                file_bytes, blob = snap_file(w.offset, data), data
            seen[run_case(w, mode, file_bytes, blob, what, full=i % FULL_EVERY == 0)] += 1
    assert sum(seen.values()) == N * len(worlds)
    if mode == "section":
        assert set(seen) == {REJECTED}
    if mode == "file":
        assert seen[FILE_REJECTED] == sum(seen.values())
    if mode == "forge" and N >= 100:
        # The forger must reach past the checks sometimes, or the fuzzer is too weak.
        assert seen[REJECTED] and (seen[LOADED_EQUAL] + seen[LOADED_DIFFERS]), seen
    print(f"\n{mode}: {dict(seen)}")


# -- fixed cases -------------------------------------------------------------------------------

#: Explicit forged mutations of a world's core: (world, field label, value).  Each one sets
#: one field, recomputes every checksum and the hash, and must be rejected or be harmless.
#: Handles out of bounds, lists that loop, counts that disagree, and limits of each width.
REGRESSIONS: list[tuple[str, str, Any]] = [
    ("rich", "hdr[1]", 0x7FFFFFFF), ("rich", "hdr[2]", -1), ("rich", "hdr[7]", 0x7FFFFFF0),
    ("rich", "hdr[8]", 0), ("rich", "hdr[9]", 0), ("rich", "hdr[10]", 99),
    ("rich", "hdr[11]", 1000), ("rich", "hdr[12]", 2 ** 63 - 1), ("rich", "hdr[0]", 87),
    ("rich", "st_counts[1]", -1), ("rich", "st_counts[2]", 2 ** 62),
    ("rich", "task[0].queue", 4), ("rich", "task[0].queue", -1),
    ("rich", "task[8].pinned", 2), ("rich", "task[8].pinned", 3),
    ("rich", "task[0].heap_pos", 0x7FFFFFFF), ("rich", "task[0].lease_slot", 0),
    ("rich", "task[0].dependents", -1), ("rich", "task[1].dependents", 0),
    ("rich", "task[2].dependents", 1),
    ("rich", "task[0].policy", 1), ("rich", "task[0].policy", 7), ("rich", "task[0].prio", 1001),
    ("rich", "task[0].prio", -1), ("rich", "task[0].status", 7), ("rich", "task[0].status", 2),
    ("rich", "task[0].flags", 4), ("rich", "task[12].n_deps", 0), ("rich", "task[12].unmet", 3),
    ("rich", "task[0].max_attempts", 0), ("rich", "task[0].due", -1),
    ("rich", "edge[0].target", 0), ("rich", "edge[0].next", 0), ("rich", "edge[1].next", 0),
    ("rich", "edge[0].target", 0x7FFFFFFF), ("rich", "queue[0].heap.n", 0x7FFFFFFF),
    ("rich", "queue[0].paused", 2), ("rich", "queue[0].max_concurrent", -1),
    ("rich", "agent[0].caps_off", 1), ("rich", "agent[0].n_caps", 0x7FFFFFFF),
    ("rich", "agent[2].online", 2), ("rich", "agent[0].capacity", -1),
    ("rich", "cap[0]", 4), ("rich", "cap[0]", -1), ("rich", "pinned[0].n", 1),
    ("rich", "policy[1].factor", math.nan), ("rich", "policy[0].jitter", math.inf),
    ("rich", "slot[0].lease_id", 0), ("rich", "slot[0].task", -1),
    ("rich", "slot[0].next_free", 0), ("rich", "time[0].id", 0x7FFFFFFF),
    ("rich", "pos[0]", 0x7FFFFFFF), ("rich", "pos[0]", -2), ("rich", "key[0]", 0),
    ("rich", "key[0]", (1 << 64) - 1),
    ("slots", "slot[0].next_free", 0), ("slots", "hdr[8]", 0x7FFFFFFF),
    ("slots", "slot[1].lease_id", 2 ** 62), ("slots", "task[0].lease_slot", 5),
    ("small", "hdr[1]", 2), ("small", "task[0].heap_pos", 1), ("small", "key[0]", 1),
]


@pytest.mark.parametrize("case", REGRESSIONS, ids=lambda c: f"{c[0]}:{c[1]}={c[2]!r}")
def test_forged_core_field(worlds, case):
    name, label, value = case
    w = worlds[name]
    _, bodies = split(w.blob)
    fields = {f.label: f for f in core_layout(bodies[1])[0]}
    f = fields[label]
    core = bytearray(bodies[1])
    put(core, f.offset, f.fmt, value)
    assert bytes(core) != bodies[1]
    bodies[1] = bytes(core)
    blob = assemble(bodies)
    outcome = run_case(w, "forge", snap_file(w.offset, blob), blob, case, full=True)
    assert outcome in (REJECTED, LOADED_EQUAL, LOADED_DIFFERS)


def test_a_rechunked_column_loads_the_clean_state(worlds):
    # The forger's tools are sound: a valid re-encoding (columns split in other chunks,
    # every checksum and the hash recomputed) loads, equal to the clean state.
    w = worlds["slots"]
    _, bodies = split(w.blob)
    for i in range(2, 7):
        items = [x for c in unpack_all(bodies[i]) for x in c]
        bodies[i] = b"".join(pack(items[j:j + 3]) for j in range(0, len(items), 3))
    blob = assemble(bodies)
    assert run_case(w, "forge", snap_file(w.offset, blob), blob, "rechunk", True) == LOADED_EQUAL


def test_a_forged_field_outside_the_digest_is_caught(worlds):
    # A forged submission time loads (every check passes: it is a plausible value) and
    # differs from the clean state; verify names the snapshot.
    w = worlds["rich"]
    _, bodies = split(w.blob)
    f = {f.label: f for f in core_layout(bodies[1])[0]}["task[0].submitted"]
    core = bytearray(bodies[1])
    put(core, f.offset, "q", struct.unpack_from("<q", core, f.offset)[0] + 1)
    bodies[1] = bytes(core)
    blob = assemble(bodies)
    assert run_case(w, "forge", snap_file(w.offset, blob), blob, "submitted+1",
                    True) == LOADED_DIFFERS


# -- known wrong outcomes, as explicit cases ----------------------------------------------------

def forged(w: World, section: int, body: bytes) -> bytes:
    _, bodies = split(w.blob)
    bodies[section] = body
    return assemble(bodies)


def test_known_a_task_id_that_is_a_list_is_rejected(worlds):
    # Reproduction: the task ids column of the "small" world holds [[]] instead of ["one"].
    w = worlds["small"]
    blob = forged(w, 2, pack([[]]))
    with pytest.raises(SnapshotCorruptError):
        decode(blob)


def test_known_a_forged_last_ts_does_not_change_a_time_replay(worlds):
    # Reproduction: the head's last_ts set to 0 in the "rich" world's snapshot.
    w = worlds["rich"]
    head = unpack_all(split(w.blob)[1][0])[0]
    head["last_ts"] = 0
    blob = forged(w, 0, pack(head))
    reopen_dir = w.work.parent / "last-ts"
    shutil.copytree(w.work, reopen_dir, ignore=shutil.ignore_patterns("*.snap", "LOCK"))
    until = w.extra["last_ts"] / 1e9 - 1.0      # before the snapshot's last events
    honest = Kernel.replay(reopen_dir, until_time=until)
    want = honest.digest()
    honest.close()
    (reopen_dir / f"{w.offset:020d}.snap").write_bytes(snap_file(w.offset, blob))
    try:
        decode(blob)
    except SnapshotCorruptError:
        return
    k = Kernel.replay(reopen_dir, until_time=until)
    try:
        assert k.digest() == want, "a time replay used a snapshot holding later events"
    finally:
        k.close()


def test_known_a_forged_backoff_policy_is_rejected_or_reported(worlds):
    # Reproduction: policy[1].maximum set to 0x7fffffff in the "rich" world's core section.
    w = worlds["rich"]
    core = bytearray(split(w.blob)[1][1])
    f = {f.label: f for f in core_layout(bytes(core))[0]}["policy[1].maximum"]
    put(core, f.offset, "q", 0x7FFFFFFF)
    blob = forged(w, 1, bytes(core))
    try:
        state, _ = decode(blob)
    except SnapshotCorruptError:
        return
    assert state.sched.policy_table() != w.extra["policies"]
    assert state.digest() != w.digest, "a different policy table has the clean digest"


@pytest.mark.parametrize("depth", [300, 1000])
def test_known_deeply_nested_tags_are_rejected(worlds, depth):
    # Reproduction: the "small" world's metadata column holds
    # [[None, {"a": [[...[None]...]]}, None, None, []]] with the list nested ``depth`` deep.
    w = worlds["small"]
    blob = forged(w, 6, b"\x91\x95\xc0\x81\xa1a" + deep(depth) + b"\xc0\xc0\x90")
    try:
        state, _ = decode(blob)
    except SnapshotCorruptError:
        return
    assert state.digest() != w.digest
