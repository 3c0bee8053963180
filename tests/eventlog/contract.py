"""The contract every durability mode of the event log must honour.

``LogContract`` is abstract (no ``Test`` prefix, so pytest does not collect it); each mode
subclasses it in ``test_modes.py`` and sets ``durability``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import pytest

from eskernel.eventlog import (
    Durability,
    EventLog,
    InvalidArgumentError,
    LogClosedError,
    LogLockedError,
    LogReadOnlyError,
    RecordTypeError,
)
from eskernel.eventlog import reader as reader_module
from eskernel.eventlog.framing import HEADER_SIZE, encode_frame, segment_header

ROOT = Path(__file__).resolve().parents[2]


def records(n: int, start: int = 0) -> list[bytes]:
    """Deterministic records of varying size (0..~60 bytes) for offsets start..start+n-1."""
    return [f"r{i}:".encode() + bytes([i % 256]) * (i % 57) for i in range(start, start + n)]


def dir_bytes(path: Path) -> dict[str, bytes]:
    """Every segment file's bytes, to prove a rejected call wrote nothing."""
    return {p.name: p.read_bytes() for p in sorted(path.glob("*.seg"))}


class LogContract:
    durability: str = ""

    def make_log(self, path: Path, **options: object) -> EventLog:
        return EventLog.open(path, self.durability, **options)

    # ---- append and read -----------------------------------------------------------------

    def test_append_returns_dense_offsets_and_reads_back(self, tmp_path: Path) -> None:
        recs = records(20)
        with self.make_log(tmp_path) as log:
            assert [log.append(r) for r in recs] == list(range(20))
            assert log.next_offset == 20
            assert list(log.read()) == list(enumerate(recs))
            assert log.read_batch(0, 100) == recs
            assert log.durability is Durability(self.durability)
            assert log.path == tmp_path

    def test_file_bytes_are_header_plus_frames(self, tmp_path: Path) -> None:
        recs = records(5)
        with self.make_log(tmp_path) as log:
            log.append_many(recs)
        data = (tmp_path / "00000000000000000000.seg").read_bytes()
        assert data == segment_header(0) + b"".join(encode_frame(r) for r in recs)

    def test_append_many_returns_first_offset(self, tmp_path: Path) -> None:
        with self.make_log(tmp_path) as log:
            assert log.append(b"x") == 0
            assert log.append_many(records(10)) == 1
            assert log.append_many([]) == 11
            assert log.append_many(tuple(records(2))) == 11
            assert log.append_many(iter([b"a"])) == 13
            assert log.next_offset == 14
            assert log.read_batch(1, 10) == records(10)

    def test_bytes_like_records_are_accepted(self, tmp_path: Path) -> None:
        with self.make_log(tmp_path) as log:
            log.append(bytearray(b"ba"))
            log.append(memoryview(b"mv"))
            log.append(b"")
            log.append_many([bytearray(b"x"), memoryview(b"y")])
            assert log.read_batch(0, 10) == [b"ba", b"mv", b"", b"x", b"y"]

    def test_reopen_after_close_keeps_everything(self, tmp_path: Path) -> None:
        with self.make_log(tmp_path) as log:
            log.append_many(records(30))
        with self.make_log(tmp_path) as log:
            assert log.repair is None
            assert log.next_offset == 30
            assert log.append(b"more") == 30
        with EventLog.open_readonly(tmp_path) as reader:
            assert reader.read_batch(0, 100) == records(30) + [b"more"]

    def test_segment_roll_and_reads_across_segments(self, tmp_path: Path) -> None:
        recs = records(200)
        with self.make_log(tmp_path, segment_bytes=512) as log:
            for r in recs[:100]:
                log.append(r)
            log.append_many(recs[100:])
            assert list(log.read(95, 130)) == list(enumerate(recs))[95:130]
        segs = sorted(tmp_path.glob("*.seg"))
        assert len(segs) > 10
        firsts = [int(p.stem) for p in segs]
        assert firsts[0] == 0 and firsts == sorted(firsts)
        for p in segs:
            assert p.stat().st_size <= 512 or p.stat().st_size == HEADER_SIZE + 8 + max(
                map(len, recs))
        with self.make_log(tmp_path, segment_bytes=512) as log:
            assert log.next_offset == 200
            assert log.read_batch(0, 500) == recs
        with EventLog.open_readonly(tmp_path) as reader:
            assert list(reader.read()) == list(enumerate(recs))
            assert reader.read_batch(150, 3) == recs[150:153]

    def test_a_segment_fills_to_exactly_segment_bytes(self, tmp_path: Path) -> None:
        # A 32-byte header and seven 32-byte frames fill 256 bytes exactly: the eighth rolls.
        recs = [bytes([i]) * 24 for i in range(21)]
        with self.make_log(tmp_path, segment_bytes=256) as log:
            for r in recs[:10]:
                log.append(r)
            log.append_many(recs[10:])
        segs = sorted(tmp_path.glob("*.seg"))
        assert [int(p.stem) for p in segs] == [0, 7, 14]
        assert [p.stat().st_size for p in segs] == [256, 256, 256]
        with self.make_log(tmp_path, segment_bytes=256) as log:
            assert log.read_batch(0, 30) == recs

    def test_record_larger_than_a_segment_gets_its_own(self, tmp_path: Path) -> None:
        with self.make_log(tmp_path, segment_bytes=256) as log:
            log.append_many([b"a", b"b" * 1000, b"c"])
            assert log.read_batch(0, 3) == [b"a", b"b" * 1000, b"c"]
        assert len(list(tmp_path.glob("*.seg"))) == 3

    def test_read_ranges(self, tmp_path: Path) -> None:
        recs = records(10)
        with self.make_log(tmp_path) as log:
            log.append_many(recs)
            assert list(log.read(3, 7)) == list(enumerate(recs))[3:7]
            assert list(log.read(5, 5)) == []
            assert list(log.read(10)) == []
            assert log.read_batch(8, 5) == recs[8:]
            assert log.read_batch(10, 5) == []
            assert log.read_batch(2, 0) == []

    def test_read_containing_is_read_filtered_by_the_needle(self, tmp_path: Path) -> None:
        recs = records(300)
        with self.make_log(tmp_path, segment_bytes=1024) as log:
            log.append_many(recs[:150])
            for r in recs[150:]:
                log.append(r)          # some of these may still be in the write buffer
            for needle in (b"r1", b"7:", b"r299:", bytes([5]) * 3, b"absent"):
                expected = [(o, r) for o, r in enumerate(recs) if needle in r]
                assert list(log.read_containing(needle)) == expected
                assert list(log.read_containing(needle, 40, 260)) == [
                    (o, r) for o, r in expected if 40 <= o < 260]
        with EventLog.open_readonly(tmp_path) as reader:
            assert list(reader.read_containing(b"r2")) == [
                (o, r) for o, r in enumerate(recs) if b"r2" in r]

    @pytest.mark.parametrize("needle", [b"", "r1", None, bytearray(b"r1")])
    def test_read_containing_rejects_bad_needles(self, tmp_path: Path, needle: object) -> None:
        with self.make_log(tmp_path) as log:
            log.append_many(records(3))
            with pytest.raises(InvalidArgumentError, match="needle"):
                log.read_containing(needle)  # type: ignore[arg-type]

    # ---- bad input: a typed error, and nothing written -------------------------------------

    @pytest.mark.parametrize("bad", ["text", 42, None, [b"a"], 3.5])
    def test_append_rejects_non_bytes(self, tmp_path: Path, bad: object) -> None:
        with self.make_log(tmp_path) as log:
            log.append(b"ok")
            log.flush()
            before = dir_bytes(tmp_path)
            with pytest.raises(RecordTypeError) as info:
                log.append(bad)  # type: ignore[arg-type]
            assert isinstance(info.value, InvalidArgumentError)
            assert isinstance(info.value, TypeError)
            assert str(info.value)
            with pytest.raises(RecordTypeError):
                log.append_many([b"fine", bad, b"fine"])  # type: ignore[list-item]
            log.flush()
            assert log.next_offset == 1
            assert dir_bytes(tmp_path) == before

    def test_oversized_record_rejected(self, tmp_path: Path) -> None:
        with self.make_log(tmp_path, max_record_bytes=100) as log:
            log.append(b"x" * 100)
            log.flush()
            before = dir_bytes(tmp_path)
            with pytest.raises(InvalidArgumentError, match="101 bytes, over max_record_bytes=100"):
                log.append(b"x" * 101)
            with pytest.raises(InvalidArgumentError, match="record 1 of the batch"):
                log.append_many([b"a", b"x" * 101])
            with pytest.raises(RecordTypeError):
                log.append_many(b"not a list")
            log.flush()
            assert log.next_offset == 1
            assert dir_bytes(tmp_path) == before

    @pytest.mark.parametrize(("start", "end"), [(-1, None), (11, None), (0, 11), (5, 4),
                                                ("0", None), (0, 2.0)])
    def test_read_out_of_range(self, tmp_path: Path, start: object, end: object) -> None:
        with self.make_log(tmp_path) as log:
            log.append_many(records(10))
            with pytest.raises(InvalidArgumentError):
                log.read(start, end)  # type: ignore[arg-type]
            with EventLog.open_readonly(tmp_path) as reader:
                with pytest.raises(InvalidArgumentError):
                    reader.read(start, end)  # type: ignore[arg-type]
            if end is None:
                with pytest.raises(InvalidArgumentError):
                    log.read_batch(start, 1)  # type: ignore[arg-type]

    @pytest.mark.parametrize("options", [
        {"durability": "eventually"}, {"durability": None}, {"segment_bytes": 10},
        {"segment_bytes": "big"}, {"max_record_bytes": 0}, {"max_record_bytes": 2**40},
        {"flush_interval_ms": 0}, {"flush_interval_ms": float("nan")},
    ])
    def test_bad_options(self, tmp_path: Path, options: dict) -> None:
        (key, value), = options.items()
        with pytest.raises(InvalidArgumentError) as info:
            EventLog.open(tmp_path / "log", **({"durability": self.durability} | options))
        assert key in str(info.value) or repr(value) in str(info.value)
        assert repr(value) in str(info.value)
        assert not (tmp_path / "log").exists()

    def test_use_after_close(self, tmp_path: Path) -> None:
        log = self.make_log(tmp_path)
        log.append(b"a")
        log.close()
        log.close()
        assert log.closed
        for call in (lambda: log.append(b"b"), lambda: log.append_many([b"b"]), log.flush,
                     log.sync, lambda: log.read(), lambda: log.read_batch(0, 1),
                     lambda: log.write_snapshot(0, b"")):
            with pytest.raises(LogClosedError):
                call()
        reader = EventLog.open_readonly(tmp_path)
        reader.close()
        with pytest.raises(LogClosedError):
            reader.read_batch(0, 1)

    def test_readonly_refuses_writes(self, tmp_path: Path) -> None:
        with self.make_log(tmp_path) as log:
            log.append(b"a")
        with EventLog.open_readonly(tmp_path) as reader:
            with pytest.raises(LogReadOnlyError):
                reader.append(b"b")
            with pytest.raises(LogReadOnlyError):
                reader.append_many([b"b"])
            with pytest.raises(LogReadOnlyError):
                reader.write_snapshot(0, b"s")
        with self.make_log(tmp_path) as log:
            assert log.next_offset == 1

    # ---- the single-writer lock ----------------------------------------------------------

    def test_second_writer_in_same_process_is_refused(self, tmp_path: Path) -> None:
        with self.make_log(tmp_path) as log:
            with pytest.raises(LogLockedError) as info:
                self.make_log(tmp_path)
            assert info.value.holder_pid == os.getpid()
            assert str(os.getpid()) in str(info.value)
            with EventLog.open_readonly(tmp_path) as reader:   # never blocked
                log.append(b"a")
                log.flush()
                assert reader.next_offset == 1
        with self.make_log(tmp_path) as log:       # released on close
            assert log.next_offset == 1

    def test_writer_in_another_process_is_refused(self, tmp_path: Path) -> None:
        script = ("import sys; from eskernel.eventlog import EventLog\n"
                  f"log = EventLog.open(sys.argv[1], {self.durability!r})\n"
                  "log.append(b'child'); log.flush(); print('ready', flush=True); sys.stdin.readline()\n"
                  "log.close()\n")
        with subprocess.Popen([sys.executable, "-c", script, str(tmp_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              env=os.environ | {"PYTHONPATH": str(ROOT)}) as child:
            assert child.stdout is not None and child.stdin is not None
            try:
                assert child.stdout.readline() == b"ready\n"
                with pytest.raises(LogLockedError) as info:
                    self.make_log(tmp_path)
                assert info.value.holder_pid == child.pid
                assert str(child.pid) in str(info.value)
                with EventLog.open_readonly(tmp_path) as reader:
                    assert reader.read_batch(0, 5) == [b"child"]
                child.stdin.write(b"\n")
                child.stdin.flush()
                assert child.wait(30) == 0
            finally:
                child.kill()
        with self.make_log(tmp_path) as log:
            assert log.read_batch(0, 5) == [b"child"]

    # ---- snapshots -----------------------------------------------------------------------

    def test_snapshots_newest_valid_and_fallback(self, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
        with self.make_log(tmp_path) as log:
            log.append_many(records(10))
            assert log.latest_snapshot() is None
            s3 = log.write_snapshot(3, b"three")
            s7 = log.write_snapshot(7, b"seven")
            assert s7.path.name == "00000000000000000007.snap" and s7.path.exists()
            assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
            assert log.latest_snapshot() == s7
            assert log.latest_snapshot(max_offset=6) == s3
            assert log.latest_snapshot(max_offset=2) is None
            with pytest.raises(InvalidArgumentError):
                log.write_snapshot(11, b"future")
            with pytest.raises(InvalidArgumentError):
                log.write_snapshot(-1, b"x")
            with pytest.raises(InvalidArgumentError):
                log.write_snapshot(1, "text")  # type: ignore[arg-type]
        data = bytearray(s7.path.read_bytes())
        data[-2] ^= 0xFF
        s7.path.write_bytes(bytes(data))
        with caplog.at_level(logging.WARNING, logger="eskernel.eventlog"):
            with EventLog.open_readonly(tmp_path) as reader:
                snap = reader.latest_snapshot()
        assert snap is not None
        assert (snap.offset, snap.blob, snap.skipped) == (3, b"three", (s7.path,))
        assert "00000000000000000007.snap" in caplog.text and "checksum" in caplog.text

    # ---- follow and export ---------------------------------------------------------------

    def test_follow_sees_later_appends(self, tmp_path: Path) -> None:
        recs = records(50)
        with self.make_log(tmp_path, segment_bytes=400) as log:
            log.append_many(recs[:10])
            stop = threading.Event()
            seen: list[tuple[int, bytes]] = []
            with EventLog.open_readonly(tmp_path) as reader:
                def consume() -> None:
                    for item in reader.follow(5, poll_interval=0.005, stop=stop,
                                              idle_timeout=10):
                        seen.append(item)
                        if len(seen) == 45:
                            stop.set()
                thread = threading.Thread(target=consume)
                thread.start()
                for r in recs[10:]:
                    log.append(r)
                    log.flush()
                thread.join(15)
                stop.set()
                assert not thread.is_alive()
        assert seen == list(enumerate(recs))[5:]

    def test_follow_ends_on_idle_timeout(self, tmp_path: Path) -> None:
        with self.make_log(tmp_path) as log:
            log.append(b"a")
            assert list(log.follow(0, poll_interval=0.001, idle_timeout=0.02)) == [(0, b"a")]

    def test_export_json_lines(self, tmp_path: Path) -> None:
        events = [{"kind": "submit", "n": i, "text": "a\nb"} for i in range(30)]
        recs = [orjson.dumps(e) for e in events] + [b"{ }", b'{\n"pretty": true\n}']
        dest = tmp_path / "out.jsonl"
        with self.make_log(tmp_path / "log", segment_bytes=300) as log:
            log.append_many(recs)
            assert log.export_json_lines(dest, 2, 31, offset_key="seq") == 31
        lines = dest.read_bytes().splitlines()
        assert len(lines) == 29
        parsed = [orjson.loads(line) for line in lines]
        assert [p.pop("seq") for p in parsed] == list(range(2, 31))
        assert parsed == events[2:] + [{}]
        with EventLog.open_readonly(tmp_path / "log") as reader:
            assert reader.export_json_lines(dest) == 32
            parsed = [orjson.loads(line) for line in dest.read_bytes().splitlines()]
            assert [p["offset"] for p in parsed] == list(range(32))
            assert parsed[31] == {"offset": 31, "pretty": True}

    @pytest.mark.parametrize("parts", [1, 2, 3, 7])
    def test_export_json_parts_equal_one_export(self, tmp_path: Path, parts: int,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(reader_module, "MIN_PART_RECORDS", 5)
        recs = [orjson.dumps({"n": i, "pad": "x" * (i % 40)}) for i in range(60)]
        one = tmp_path / "one.jsonl"
        parts_dir = tmp_path / "parts"
        parts_dir.mkdir()
        with self.make_log(tmp_path / "log", segment_bytes=400) as log:
            log.append_many(recs)
            log.export_json_lines(one, 7, 53)
            paths, longest = log.export_json_parts(parts_dir, 7, 53, parts=parts)
            assert log.export_json_parts(parts_dir, 20, 20) == ([], 0)
        # Runs of nearly equal record counts, cut inside segments when they fall there.
        firsts = [int(p.stem) for p in paths]
        assert firsts == [7 + 46 * k // parts for k in range(parts)]
        assert sorted(parts_dir.iterdir()) == sorted(paths)
        assert b"".join(p.read_bytes() for p in paths) == one.read_bytes()
        assert longest == max(len(line) + 1 for line in one.read_bytes().splitlines())
        for p, nxt in zip(paths, firsts[1:] + [53]):
            offsets = [orjson.loads(line)["offset"] for line in p.read_bytes().splitlines()]
            assert offsets == list(range(int(p.stem), nxt))

    def test_export_json_parts_are_never_smaller_than_the_minimum(self, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch
                                                                   ) -> None:
        monkeypatch.setattr(reader_module, "MIN_PART_RECORDS", 10)
        with self.make_log(tmp_path / "log") as log:
            log.append_many([b"{}"] * 25)
            assert len(log.export_json_parts(tmp_path, parts=8).paths) == 2
            for p in tmp_path.glob("*.ndjson"):
                p.unlink()
            assert len(log.export_json_parts(tmp_path, 0, 9, parts=8).paths) == 1

    def test_export_json_parts_rejects_bad_arguments(self, tmp_path: Path) -> None:
        with self.make_log(tmp_path / "log") as log:
            log.append(b"{}")
            for parts in (0, 99, 1.5):
                with pytest.raises(InvalidArgumentError, match="parts must be"):
                    log.export_json_parts(tmp_path, parts=parts)
            with pytest.raises(InvalidArgumentError, match="is not a directory"):
                log.export_json_parts(tmp_path / "missing")
            with pytest.raises(InvalidArgumentError, match="outside the log"):
                log.export_json_parts(tmp_path, 5)
        assert [p.name for p in tmp_path.iterdir()] == ["log"]

    def test_export_json_parts_leaves_nothing_on_a_bad_record(self, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
        monkeypatch.setattr(reader_module, "MIN_PART_RECORDS", 5)
        dest = tmp_path / "parts"
        dest.mkdir()
        recs = [orjson.dumps({"n": i, "pad": "x" * 30}) for i in range(40)]
        recs[33] = b"[33]"
        with self.make_log(tmp_path / "log", segment_bytes=300) as log:
            log.append_many(recs)
            for parts in (1, 2, 4):
                with pytest.raises(InvalidArgumentError,
                                   match="record at offset 33 is not a JSON"):
                    log.export_json_parts(dest, parts=parts)
                assert list(dest.iterdir()) == []

    @pytest.mark.parametrize("bad", [b"[1,2]", b"", b" {}", b'"s"'])
    def test_export_rejects_non_objects(self, tmp_path: Path, bad: bytes) -> None:
        dest = tmp_path / "out.jsonl"
        with self.make_log(tmp_path / "log") as log:
            log.append_many([b"{}", b"{}", bad, b"{}"])
            with pytest.raises(InvalidArgumentError, match="record at offset 2 is not a JSON"):
                log.export_json_lines(dest)
        assert not dest.exists()
        assert [p.name for p in tmp_path.iterdir()] == ["log"]
