"""The log contract for each durability mode, plus the crash-consistency property."""

from __future__ import annotations

import struct
import tempfile
import threading
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eskernel.eventlog import EventLog, _framing
from eskernel.eventlog.framing import HEADER_SIZE

from .contract import LogContract


class TestFsyncMode(LogContract):
    durability = "fsync"

    def test_concurrent_appends_share_syncs(self, tmp_path: Path) -> None:
        with self.make_log(tmp_path) as log:
            offsets: list[list[int]] = [[] for _ in range(4)]

            def work(k: int) -> None:
                for i in range(50):
                    offsets[k].append(log.append(f"{k}:{i}".encode()))
            threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            everything = sorted(o for per in offsets for o in per)
            assert everything == list(range(200))
            data = dict(log.read())
            for k in range(4):
                assert [data[o] for o in offsets[k]] == [f"{k}:{i}".encode() for i in range(50)]


class TestWriteMode(LogContract):
    durability = "write"

    def test_each_append_reaches_the_file(self, tmp_path: Path) -> None:
        with self.make_log(tmp_path) as log:
            seg = tmp_path / "00000000000000000000.seg"
            log.append(b"abc")
            assert seg.stat().st_size == HEADER_SIZE + 8 + 3
            log.append_many([b"d", b"e"])
            assert seg.stat().st_size == HEADER_SIZE + 3 * 8 + 5


class TestBufferMode(LogContract):
    durability = "buffer"

    def test_idle_buffer_is_written_within_the_interval(self, tmp_path: Path) -> None:
        with self.make_log(tmp_path, flush_interval_ms=5) as log:
            seg = tmp_path / "00000000000000000000.seg"
            log.append(b"abc")
            assert seg.stat().st_size == HEADER_SIZE      # still buffered
            done = threading.Event()
            for _ in range(200):       # the flusher thread writes it while we wait
                if seg.stat().st_size == HEADER_SIZE + 11:
                    break
                done.wait(0.005)
            assert seg.stat().st_size == HEADER_SIZE + 11


def test_crc32c_hardware_and_table_agree() -> None:
    assert _framing.crc32c(b"123456789") == 0xE3069283
    assert _framing.crc32c_portable(b"123456789") == 0xE3069283
    data = bytes(range(256)) * 9
    for i in range(0, 300, 7):
        chunk = data[i:i + 3 * i + 1]
        assert _framing.crc32c(chunk) == _framing.crc32c_portable(chunk)
    assert _framing.crc32c(b"56789", _framing.crc32c(b"1234")) == 0xE3069283


# ---- property: whatever happens, the readable records are a prefix of what was appended ----

def _frame_ends(path: Path) -> list[int]:
    """Byte end of each frame in a segment, parsed in plain Python (a second implementation)."""
    data = path.read_bytes()
    ends, pos = [], HEADER_SIZE
    while pos + 8 <= len(data):
        length, crc = struct.unpack_from("<II", data, pos)
        if pos + 8 + length > len(data) or _framing.frame_crc(data[pos + 8:pos + 8 + length]) != crc:
            break
        pos += 8 + length
        ends.append(pos)
    return ends


payloads = st.binary(max_size=80)
operations = st.lists(st.one_of(
    st.tuples(st.just("append"), payloads),
    st.tuples(st.just("append_many"), st.lists(payloads, max_size=8)),
    st.tuples(st.just("flush"), st.none()),
    st.tuples(st.just("reopen"), st.none()),
    st.tuples(st.just("cut"), st.floats(0, 1)),
), max_size=25)


# At least 50 examples; the ``ci`` hypothesis profile (tests/conftest.py) raises it.
@settings(max_examples=max(50, settings.default.max_examples), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(mode=st.sampled_from(["fsync", "write", "buffer"]), ops=operations)
def test_readable_records_are_a_prefix_of_appends(mode: str, ops: list) -> None:
    with tempfile.TemporaryDirectory() as d:
        model: list[bytes] = []
        log = EventLog.open(d, mode, segment_bytes=300)
        try:
            for op, arg in ops:
                if op == "append":
                    assert log.append(arg) == len(model)
                    model.append(arg)
                elif op == "append_many":
                    assert log.append_many(arg) == len(model)
                    model.extend(arg)
                elif op == "flush":
                    log.flush()
                elif op == "reopen":
                    log.close()
                    log = EventLog.open(d, mode, segment_bytes=300)
                    assert log.repair is None
                else:
                    log.close()
                    last = sorted(Path(d).glob("*.seg"))[-1]
                    size = last.stat().st_size
                    cut = HEADER_SIZE + int(arg * (size - HEADER_SIZE))
                    ends = _frame_ends(last)
                    kept = sum(1 for end in ends if end <= cut)
                    clean = cut == HEADER_SIZE or cut in ends
                    with open(last, "r+b") as f:
                        f.truncate(cut)
                    del model[int(last.stem) + kept:]
                    log = EventLog.open(d, mode, segment_bytes=300)
                    assert (log.repair is None) == clean
                    if not clean:
                        assert log.repair is not None
                        assert (log.repair.segment, log.repair.offset) == (last, ends[kept - 1]
                                                                           if kept else HEADER_SIZE)
                        assert log.repair.bytes_dropped == cut - log.repair.offset
                assert log.next_offset == len(model)
            assert log.read_batch(0, len(model) + 1) == model
        finally:
            log.close()
        with EventLog.open_readonly(d) as reader:
            assert [r for _, r in reader.read()] == model
