# The single writer: frames records into a reused C buffer and hands it to the OS.
#
# Invariants (all state is touched only with the GIL held):
#   - Byte counters are logical over the writer's life: appended >= written >= durable.
#     `appended - written` bytes sit in `buf`; nothing else is buffered anywhere.
#   - At most one thread does I/O at a time (io_busy).  That thread, the leader, swaps `buf`
#     with `spare` before it may release the GIL, so other threads keep framing into the
#     fresh buffer while it writes; their bytes are covered by the next leader (group commit).
#   - A segment roll happens only with no I/O in flight and an empty buffer, and entirely
#     with the GIL held (C calls only), so no thread ever frames into a half-rolled segment.
#   - After the first failed write or sync, `failed` holds the OSError and every call that
#     could write raises LogFailedError: the log can never hold a hole.
#   - The segment's descriptor is not O_APPEND: its file offset is `file_pos`, the end of the
#     bytes written to the file (writes are sequential; only the I/O leader moves it).
#   - fsync mode preallocates the segment file ahead of `file_pos` (posix_fallocate, up to
#     `alloc_end`), so an fdatasync does not also write a new file size each time.  The
#     space past `file_pos` reads as zeros: a frame header of zeros is unwritten space to
#     every scanner (a reader stops there; recovery after a crash truncates it as a torn
#     tail).  A roll and a clean close truncate the file to `file_pos` first (and sync it in
#     fsync mode), so every segment but a crashed writer's last ends at its last frame.

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_GET_SIZE
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy

cdef enum:
    MODE_FSYNC = 0
    MODE_WRITE = 1
    MODE_BUFFER = 2
    CHUNK_BYTES = 1 << 20           # buffer mode: one write(2) per MiB
    PREALLOC_BYTES = 4 << 20        # fsync mode: segment space allocated ahead of the data
    BATCH_BYTES = 8 << 20           # append_many: bound the buffer, one write per 8 MiB
    NOGIL_BYTES = 64 << 10          # release the GIL for writes at least this big


@cython.auto_pickle(False)     # holds descriptors and C buffers
cdef class Writer:
    cdef int fd, dirfd
    cdef uint8_t *buf
    cdef uint8_t *spare
    cdef Py_ssize_t buf_len, buf_cap, spare_cap
    cdef readonly long long next_offset
    cdef readonly long long segment_first
    cdef long long seg_bytes, seg_limit
    cdef long long file_pos, alloc_end
    cdef Py_ssize_t max_record
    cdef readonly int mode
    cdef int64_t interval_ns, first_buffered_ns
    cdef long long appended, written, durable
    cdef bint io_busy
    cdef readonly bint closed
    cdef int waiters
    cdef object cond
    cdef readonly object failed

    def __cinit__(self, int fd, int dirfd, long long segment_first, long long segment_size,
                  long long next_offset, long long segment_limit, Py_ssize_t max_record,
                  int mode, double flush_interval_ms):
        self.fd = fd
        self.dirfd = dirfd
        self.segment_first = segment_first
        self.seg_bytes = segment_size
        self.file_pos = segment_size
        self.alloc_end = segment_size
        self.next_offset = next_offset
        self.seg_limit = segment_limit
        self.max_record = max_record
        self.mode = mode
        self.interval_ns = <int64_t>(flush_interval_ms * 1e6)
        self.cond = Condition(Lock())
        self.failed = None
        self.buf_cap = CHUNK_BYTES + 64 * 1024
        self.spare_cap = self.buf_cap
        self.buf = <uint8_t *>malloc(self.buf_cap)
        self.spare = <uint8_t *>malloc(self.spare_cap)
        if self.buf == NULL or self.spare == NULL:
            raise MemoryError()

    def __dealloc__(self):
        if not self.closed:
            if self.fd >= 0:
                close(self.fd)
            if self.dirfd >= 0:
                close(self.dirfd)
        free(self.buf)
        free(self.spare)

    # ---- the per-record path -------------------------------------------------------------

    def append(self, record):
        """Append one record; return its offset (see ``EventLog.append``)."""
        cdef Py_buffer view
        cdef long long off
        if self.closed or self.failed is not None:
            self._check_open()
        if PyBytes_CheckExact(record):
            return self._append_one(<const uint8_t *>PyBytes_AS_STRING(record),
                                    PyBytes_GET_SIZE(record))
        self._get_buffer(record, &view, -1)
        try:
            off = self._append_one(<const uint8_t *>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)
        return off

    def append_unsynced(self, record):
        """Append one record without waiting for it to be durable; return its offset (see
        ``EventLog.append_unsynced``)."""
        cdef long long off
        if self.closed or self.failed is not None:
            self._check_open()
        if not PyBytes_CheckExact(record):
            record = self._as_bytes(record, -1)
        if PyBytes_GET_SIZE(record) > self.max_record:
            raise InvalidArgumentError(
                f"record is {PyBytes_GET_SIZE(record)} bytes, over max_record_bytes="
                f"{self.max_record}; split it or open the log with a larger max_record_bytes")
        off = self._frame(<const uint8_t *>PyBytes_AS_STRING(record), PyBytes_GET_SIZE(record))
        if self.mode == MODE_WRITE:
            self._drain(False, self.appended)
        else:
            # fsync mode: written (not synced) a MiB at a time or when due, and synced with
            # the next append that waits, or sync() / close().
            self._buffer_policy()
        return off

    def append_many(self, records):
        """Append a sequence of records; return the first offset (see ``EventLog.append_many``)."""
        cdef Py_ssize_t i, n, total = 0, size
        cdef long long first, target
        cdef object rec
        if self.closed or self.failed is not None:
            self._check_open()
        if not isinstance(records, (list, tuple)):
            if isinstance(records, (bytes, bytearray, memoryview, str)):
                raise RecordTypeError(
                    f"append_many takes a sequence of records, got {type(records).__name__}; "
                    "wrap a single record in a list or call append()")
            records = list(records)
        n = len(records)
        items = records
        # Validate everything before framing anything: a rejected batch writes nothing.
        for i in range(n):
            rec = records[i]
            if not PyBytes_CheckExact(rec):
                if items is records:
                    items = list(records)
                items[i] = self._as_bytes(rec, i)
                rec = items[i]
            size = PyBytes_GET_SIZE(rec)
            if size > self.max_record:
                raise InvalidArgumentError(
                    f"record {i} of the batch is {size} bytes, over max_record_bytes="
                    f"{self.max_record}; split it or open the log with a larger max_record_bytes")
            total += size + FRAME_HEADER
        first = self.next_offset
        if n == 0:
            return first
        if self.buf_len + total > self.buf_cap and total < BATCH_BYTES:
            self._grow(self.buf_len + total)
        for i in range(n):
            rec = items[i]
            self._frame(<const uint8_t *>PyBytes_AS_STRING(rec), PyBytes_GET_SIZE(rec))
            if self.buf_len >= BATCH_BYTES:
                self._drain(False, self.appended)
        target = self.appended
        if self.mode == MODE_FSYNC:
            self._drain(True, target)
        elif self.mode == MODE_WRITE:
            self._drain(False, target)
        else:
            self._buffer_policy()
        return first

    cdef long long _append_one(self, const uint8_t *p, Py_ssize_t n) except -1:
        cdef long long off, target
        if n > self.max_record:
            raise InvalidArgumentError(
                f"record is {n} bytes, over max_record_bytes={self.max_record}; split it or "
                "open the log with a larger max_record_bytes")
        off = self._frame(p, n)
        target = self.appended
        if self.mode == MODE_WRITE:
            self._drain(False, target)
        elif self.mode == MODE_FSYNC:
            self._drain(True, target)
        else:
            self._buffer_policy()
        return off

    cdef long long _frame(self, const uint8_t *p, Py_ssize_t n) except -1:
        # Frame = u32 length | u32 crc32c(length bytes + payload) | payload, little-endian.
        cdef Py_ssize_t fl = n + FRAME_HEADER
        cdef uint8_t *dst
        cdef long long off
        if self.seg_bytes + fl > self.seg_limit and self.seg_bytes > HEADER_SIZE:
            self._roll_for(fl)
        if self.buf_len + fl > self.buf_cap:
            self._grow(self.buf_len + fl)
        if self.buf_len == 0:
            self.first_buffered_ns = esk_monotonic_ns()
        dst = self.buf + self.buf_len
        put_u32(dst, <uint32_t>n)
        put_u32(dst + 4, crc32c_frame(<uint32_t>n, p, n))
        memcpy(dst + FRAME_HEADER, p, n)
        self.buf_len += fl
        self.seg_bytes += fl
        self.appended += fl
        off = self.next_offset
        self.next_offset = off + 1
        return off

    cdef int _buffer_policy(self) except -1:
        # Buffer mode: write once a MiB has gathered or the oldest buffered byte is due.
        if self.buf_len >= CHUNK_BYTES or (
                esk_monotonic_ns() - self.first_buffered_ns >= self.interval_ns):
            self._drain(False, self.appended)
        return 0

    # ---- validation helpers --------------------------------------------------------------

    cdef int _check_open(self) except -1:
        if self.closed:
            raise LogClosedError("the event log is closed; open it again with EventLog.open")
        if self.failed is not None:
            raise LogFailedError(
                f"an earlier write failed ({self.failed}); the log refuses appends until it is "
                "reopened with EventLog.open, which recovers every acknowledged record"
            ) from self.failed
        return 0

    cdef int _get_buffer(self, object record, Py_buffer *view, Py_ssize_t index) except -1:
        where = "record" if index < 0 else f"record {index} of the batch"
        if isinstance(record, str):
            raise RecordTypeError(
                f"{where} is a str ({record[:40]!r}); records are bytes: encode it first, "
                "e.g. text.encode()")
        try:
            PyObject_GetBuffer(record, view, PyBUF_SIMPLE)
        except (TypeError, BufferError):
            raise RecordTypeError(
                f"{where} is a {type(record).__name__}, not bytes; pass bytes (or a "
                "contiguous bytearray/memoryview)") from None
        return 0

    cdef bytes _as_bytes(self, object record, Py_ssize_t index):
        cdef Py_buffer view
        self._get_buffer(record, &view, index)
        try:
            return (<char *>view.buf)[:view.len]
        finally:
            PyBuffer_Release(&view)

    cdef int _grow(self, Py_ssize_t need) except -1:
        cdef Py_ssize_t cap = self.buf_cap
        cdef uint8_t *nb
        while cap < need:
            cap *= 2
        nb = <uint8_t *>realloc(self.buf, cap)
        if nb == NULL:
            raise MemoryError()
        self.buf = nb
        self.buf_cap = cap
        return 0

    # ---- I/O: the leader protocol --------------------------------------------------------

    cdef int _wait_io(self) except -1:
        self.waiters += 1
        try:
            with self.cond:
                while self.io_busy:
                    self.cond.wait()
        finally:
            self.waiters -= 1
        return 0

    cdef int _drain(self, bint sync, long long target) except -1:
        # Ensure bytes up to `target` are written (and synced if `sync`).  Whoever finds no
        # I/O in flight becomes the leader and covers everything buffered so far.
        cdef uint8_t *data
        cdef Py_ssize_t n, cap
        cdef int err = 0
        cdef int fd
        while True:
            if self.failed is not None:
                self._check_open()
            if (self.durable if sync else self.written) >= target:
                return 0
            if self.io_busy:
                self._wait_io()
                continue
            data = self.buf
            n = self.buf_len
            cap = self.buf_cap
            self.buf = self.spare
            self.buf_cap = self.spare_cap
            self.buf_len = 0
            self.spare = data
            self.spare_cap = cap
            self.io_busy = True
            fd = self.fd
            if self.mode == MODE_FSYNC and self.file_pos + n > self.alloc_end:
                self._prealloc(fd, n)
            try:
                if sync or n >= NOGIL_BYTES:
                    with nogil:
                        err = esk_write_all(fd, data, n)
                        if err == 0 and sync:
                            err = esk_fdatasync(fd)
                else:
                    err = esk_write_all(fd, data, n)
                    if err == 0 and sync:
                        err = esk_fdatasync(fd)
            finally:
                self.io_busy = False
                if err == 0:
                    self.written += n
                    self.file_pos += n
                    if sync:
                        self.durable = self.written
                if self.buf_len:
                    self.first_buffered_ns = esk_monotonic_ns()
                if self.waiters:
                    with self.cond:
                        self.cond.notify_all()
            if err:
                self._fail(os_error(err), "sync" if sync else "write")

    cdef void _prealloc(self, int fd, Py_ssize_t n) noexcept:
        # Space for the next write and PREALLOC_BYTES more, within the segment's limit (a
        # record bigger than what is left is written past it).  Failure only costs speed:
        # the write then extends the file as without preallocation.
        cdef long long want = self.file_pos + n + PREALLOC_BYTES
        if want > self.seg_limit:
            want = self.seg_limit if self.seg_limit > self.file_pos + n else self.file_pos + n
        if want > self.alloc_end and esk_preallocate(fd, self.alloc_end,
                                                     want - self.alloc_end) == 0:
            self.alloc_end = want

    cdef int _trim(self, bint sync, bint quiet) except -1:
        # Truncate preallocated space past the bytes written (before a roll or a close): at
        # the file offset, which also covers a write that failed half-way (its frames that
        # landed whole are recovered, its torn end is repaired, as without preallocation).
        cdef int err = 0
        cdef int64_t end
        if self.alloc_end > self.file_pos:
            end = esk_tell(self.fd)
            err = -<int>end if end < 0 else esk_truncate(self.fd, end)
            if err == 0 and sync:
                err = esk_fdatasync(self.fd)
            if err and not quiet:
                self._fail(os_error(err), "truncate")
            self.alloc_end = self.file_pos
        return 0

    cdef int _fail(self, object err, str what) except -1:
        self.failed = err
        raise LogWriteError(
            f"the operating system refused a {what} of the event log ({err}); no further "
            "appends are accepted: free space or fix the device, then reopen the log"
        ) from err

    # ---- segments ------------------------------------------------------------------------

    cdef int _roll_for(self, Py_ssize_t fl) except -1:
        cdef bint fs = self.mode == MODE_FSYNC
        while self.seg_bytes + fl > self.seg_limit and self.seg_bytes > HEADER_SIZE:
            if self.io_busy:
                self._wait_io()
            elif self.written < self.appended or (fs and self.durable < self.written):
                self._drain(fs, self.appended)
            else:
                self._roll()
        return 0

    cdef int _roll(self) except -1:
        # Called with no I/O in flight and an empty buffer; never releases the GIL.
        cdef char name[64]
        cdef char tmp[64]
        cdef uint8_t h[32]
        cdef int nfd, err = 0
        cdef bint fs = self.mode == MODE_FSYNC
        self._trim(fs, False)
        snprintf(name, 64, b"%020lld.seg", self.next_offset)
        snprintf(tmp, 64, b"%020lld.seg.tmp", self.next_offset)
        header_encode(h, self.next_offset)
        nfd = esk_openat_new(self.dirfd, tmp)
        if nfd < 0:
            self._fail(os_error(-nfd), "segment roll")
        err = esk_write_all(nfd, h, HEADER_SIZE)
        if err == 0 and fs:
            err = esk_fdatasync(nfd)
        if err == 0:
            err = esk_renameat(self.dirfd, tmp, name)
        if err == 0 and fs:
            err = esk_fsync(self.dirfd)
        if err:
            close(nfd)
            self._fail(os_error(err), "segment roll")
        close(self.fd)
        self.fd = nfd
        self.segment_first = self.next_offset
        self.seg_bytes = HEADER_SIZE
        self.file_pos = HEADER_SIZE
        self.alloc_end = HEADER_SIZE
        return 0

    # ---- explicit flushing and closing ---------------------------------------------------

    def flush(self):
        """Hand every buffered byte to the operating system."""
        self._check_open()
        self._drain(False, self.appended)

    def sync(self):
        """Flush, then fdatasync: everything appended so far is durable."""
        self._check_open()
        self._drain(True, self.appended)

    def flush_if_due(self):
        """Buffer mode's timer: write if the oldest buffered byte is due.

        Returns the nanoseconds until the next check is needed, or -1 if nothing is buffered.
        """
        cdef int64_t left
        if self.closed or self.failed is not None or self.buf_len == 0:
            return -1
        left = self.first_buffered_ns + self.interval_ns - esk_monotonic_ns()
        if left > 0:
            return left
        self._drain(False, self.appended)
        return -1

    def close(self, bint sync=False):
        """Flush (and sync if asked), then close the segment; idempotent."""
        if self.closed:
            return
        try:
            if self.failed is None:
                self._drain(sync, self.appended)
                self._trim(sync, False)
            else:
                self._trim(False, True)    # best effort, no sync: recovery handles zeros too
        finally:
            self.closed = True
            close(self.fd)
            close(self.dirfd)
            self.fd = -1
            self.dirfd = -1
