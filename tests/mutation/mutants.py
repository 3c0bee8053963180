"""Hand-made mutants of the event log: plausible one-line bugs the test suite must kill.

Each mutant is a list of exact text edits (``path``, ``old``, ``new``, ``count``: how many
times ``old`` must occur; every occurrence is replaced).  ``run.py`` applies one mutant at a
time to a scratch copy of the repository, rebuilds, runs the log's tests and reports which
test killed it.  An edit whose ``old`` text is no longer found is reported as stale: update
the mutant together with the code it mutates.

The first two are the survivors of the mutation run in issue 21; the rest are off-by-ones
and dropped steps in the segment roll, torn-tail repair, group commit and failure paths.
"""

from __future__ import annotations

from typing import NamedTuple


class Edit(NamedTuple):
    path: str
    old: str
    new: str
    count: int = 1


class Mutant(NamedTuple):
    name: str
    what: str
    edits: tuple[Edit, ...]


CRC = "_native/framing_crc.pxi"
IO = "_native/framing_io.pxi"
SCAN = "_native/framing_scan.pxi"
WRITER = "_native/framing_writer.pxi"

MUTANTS: tuple[Mutant, ...] = (
    Mutant("crc-frame-skips-last-byte",
           "crc32c_frame hashes n - 1 payload bytes (writer and readers agree with it)",
           (Edit(CRC, "return eskcrc_update(c, payload, n) ^ 0xFFFFFFFFu",
                 "return eskcrc_update(c, payload, n - (n > 0)) ^ 0xFFFFFFFFu"),)),
    Mutant("durable-before-io",
           "group commit: self.durable = self.written + n moved ahead of write + fdatasync",
           (Edit(WRITER, "            fd = self.fd\n            if self.mode == MODE_FSYNC",
                 "            fd = self.fd\n            if sync:\n"
                 "                self.durable = self.written + n\n"
                 "            if self.mode == MODE_FSYNC"),
            Edit(WRITER, "                    self.file_pos += n\n                    if sync:\n"
                         "                        self.durable = self.written\n",
                 "                    self.file_pos += n\n"))),
    Mutant("crc-frame-skips-length",
           "crc32c_frame leaves the 4 length bytes out of the checksum",
           (Edit(CRC, "cdef uint32_t c = eskcrc_update(0xFFFFFFFFu, lb, 4)",
                 "cdef uint32_t c = 0xFFFFFFFFu"),)),
    Mutant("header-crc-27-bytes",
           "the segment header checksum covers bytes 0..26 (encoder and decoder agree)",
           (Edit(IO, "eskcrc_update(0xFFFFFFFFu, h, 28)", "eskcrc_update(0xFFFFFFFFu, h, 27)"),
            Edit("eventlog/framing.py", "crc32c(data[:28])", "crc32c(data[:27])"))),
    Mutant("header-fields-before-crc",
           "decode_header interprets version and length before checking the header CRC",
           (Edit("eventlog/framing.py",
                 "    if crc32c(data[:28]) != crc:\n",
                 "    if version != VERSION or hlen != HEADER_SIZE:\n"
                 "        raise LogCorruptError(\n"
                 "            f\"segment {path} has format version {version}; this eskernel \"\n"
                 "            \"reads version 1: upgrade eskernel\", segment=str(path), offset=0)\n"
                 "    if crc32c(data[:28]) != crc:\n"),)),
    Mutant("scan-frame-end-off-by-one",
           "the scanner takes a frame ending exactly at the end of the data as incomplete",
           (Edit(SCAN, "if <long long>length > end - pos - FRAME_HEADER:",
                 "if <long long>length >= end - pos - FRAME_HEADER:"),)),
    Mutant("find-frame-misses-last",
           "the resync search stops one byte early: a valid empty frame ending the file "
           "is missed, so corruption before it passes for a torn tail",
           (Edit(SCAN, "while q + FRAME_HEADER <= n:", "while q + FRAME_HEADER < n:"),)),
    Mutant("repair-truncates-one-late",
           "torn-tail repair truncates one byte after the first bad frame",
           (Edit("eventlog/repair.py", "os.ftruncate(fd, pos)", "os.ftruncate(fd, pos + 1)"),)),
    Mutant("repair-reports-one-short",
           "the repair report's next offset is one record short",
           (Edit("eventlog/repair.py", "RepairReport(path, pos, size - pos, last_first + count,",
                 "RepairReport(path, pos, size - pos, last_first + count - 1,"),)),
    Mutant("roll-one-frame-early",
           "segment roll: a record that fills the segment exactly rolls instead (>=)",
           (Edit(WRITER, "self.seg_bytes + fl > self.seg_limit",
                 "self.seg_bytes + fl >= self.seg_limit", count=2),)),
    Mutant("roll-header-uncounted",
           "segment roll: a new segment's size is counted without its 32-byte header",
           (Edit(WRITER, "        self.seg_bytes = HEADER_SIZE\n",
                 "        self.seg_bytes = 0\n"),)),
    Mutant("roll-directory-not-synced",
           "segment roll in fsync mode skips the directory fsync after the rename",
           (Edit(WRITER, "        if err == 0 and fs:\n            err = esk_fsync(self.dirfd)\n",
                 ""),)),
    Mutant("append-target-before-frame",
           "group commit: an append's target is taken before its own frame (one record short)",
           (Edit(WRITER, "        off = self._frame(p, n)\n        target = self.appended\n",
                 "        target = self.appended\n        off = self._frame(p, n)\n"),)),
    Mutant("batch-target-one-record-short",
           "group commit: append_many's target stops before the batch's last record",
           (Edit(WRITER, "                self._drain(False, self.appended)\n"
                         "        target = self.appended\n",
                 "                self._drain(False, self.appended)\n"
                 "        target = self.appended - PyBytes_GET_SIZE(items[n - 1])"
                 " - FRAME_HEADER\n"),)),
    Mutant("written-before-io",
           "write mode: self.written += n moved ahead of the write (flush returns early)",
           (Edit(WRITER, "            fd = self.fd\n            if self.mode == MODE_FSYNC",
                 "            fd = self.fd\n            self.written += n\n"
                 "            if self.mode == MODE_FSYNC"),
            Edit(WRITER, "                if err == 0:\n                    self.written += n\n",
                 "                if err == 0:\n"))),
    Mutant("fdatasync-error-ignored",
           "the group commit ignores fdatasync's result",
           (Edit(WRITER, "err = esk_fdatasync(fd)", "esk_fdatasync(fd)", count=2),)),
    Mutant("failure-not-remembered",
           "a failed write or sync is raised but not remembered: the next call retries it",
           (Edit(WRITER, "        self.failed = err\n", ""),)),
    Mutant("short-write-taken-as-whole",
           "esk_write_all treats a short write as complete",
           (Edit(IO, "p += r; n -= (size_t)r;", "p += r; n = 0;"),)),
)
