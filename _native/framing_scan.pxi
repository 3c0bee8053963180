# Reading frames back: a per-segment scanner over pread windows, the JSON-lines exporter,
# and the resynchronising search that tells a torn tail from corruption.
#
# Invariants:
#   - The scanner never trusts bytes beyond `end` (the caller's verified or observed end) and
#     a fresh scan drops its window, so bytes cached from a tail that was later rewritten
#     (a writer repairing a torn tail) are never reused.
#   - scan() stops at the first frame that is incomplete (before `end`), all-zero (unwritten
#     space) or fails its checksum, and reports which; it never raises for those: deciding
#     whether that is a torn tail or corruption is the caller's policy (eventlog/repair.py).
#   - No mmap: a concurrent truncation (repair) could turn a mapped page into SIGBUS.

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.list cimport PyList_Append
from libc.string cimport memchr

cdef extern from "string.h" nogil:
    void *memmem(const void *haystack, size_t haystacklen, const void *needle, size_t needlelen)

cdef enum:
    SCAN_OK = 0             # reached `end` exactly, or max_records
    SCAN_INCOMPLETE = 1     # a frame runs past `end` (or past end of file)
    SCAN_ZERO = 2           # an all-zero frame header: unwritten space
    SCAN_BADCRC = 3         # a complete frame whose checksum does not match
    EXPORT_NOT_OBJECT = 4   # export_json only: a record that is not a JSON object
    WINDOW_BYTES = 1 << 20


cdef struct JsonOut:
    uint8_t *buf
    Py_ssize_t len, cap


cdef struct ExportState:    # an export's progress, kept across the GIL-free loop
    JsonOut o
    long long pos, count
    uint32_t length         # of the record that stopped the export (EXPORT_NOT_OBJECT)
    Py_ssize_t longest      # the longest line written, newline included
    int status, err         # err: 0, an errno, or -1 for out of memory


@cython.auto_pickle(False)     # holds descriptors and C buffers
cdef class SegmentScanner:
    cdef int fd
    cdef uint8_t *win
    cdef Py_ssize_t win_cap, win_len
    cdef long long win_start
    cdef readonly object path

    def __cinit__(self, int fd, path):
        self.fd = fd
        self.path = path
        self.win_cap = WINDOW_BYTES
        self.win = <uint8_t *>malloc(self.win_cap)
        if self.win == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.win)

    cdef const uint8_t *_window(self, long long pos, Py_ssize_t need,
                                int *err) noexcept nogil:
        # Pointer to file bytes [pos, pos+need), reading a new window if needed; NULL if the
        # file is shorter than that (*err = 0), or on a read error (*err = errno) or when
        # memory runs out (*err = -1).
        cdef Py_ssize_t cap
        cdef int64_t got
        err[0] = 0
        if pos >= self.win_start and pos + need <= self.win_start + self.win_len:
            return self.win + (pos - self.win_start)
        cap = WINDOW_BYTES if need < WINDOW_BYTES else need
        if cap > self.win_cap:
            free(self.win)
            self.win = <uint8_t *>malloc(cap)
            self.win_len = 0
            if self.win == NULL:
                self.win_cap = 0
                err[0] = -1
                return NULL
            self.win_cap = cap
        got = esk_pread_full(self.fd, self.win, cap, pos)
        if got < 0:
            self.win_len = 0
            err[0] = <int>-got
            return NULL
        self.win_start = pos
        self.win_len = got
        if got < need:
            return NULL
        return self.win

    cdef const uint8_t *_at(self, long long pos, Py_ssize_t need) except? NULL:
        # _window for callers holding the GIL: dropped only when a read is needed.
        cdef int err
        cdef const uint8_t *p
        if pos >= self.win_start and pos + need <= self.win_start + self.win_len:
            return self.win + (pos - self.win_start)
        with nogil:
            p = self._window(pos, need, &err)
        if err == -1:
            raise MemoryError()
        if err:
            raise os_error(err)
        return p

    def scan(self, long long pos, long long end, long long max_records, bint verify=True,
             list out=None, long long first_offset=-1, bint fresh=False, bytes needle=None):
        """Walk frames from byte ``pos`` up to ``end``; return (pos, count, status).

        With ``out``, payloads (or (offset, payload) tuples when ``first_offset`` >= 0) are
        appended to it; with ``needle`` too, only the payloads that contain it.  ``verify``
        checks every CRC32C.
        """
        cdef long long count = 0
        cdef const uint8_t *h
        cdef uint32_t length, crc
        cdef int status = SCAN_OK
        cdef object payload
        cdef const char *nd = NULL
        cdef Py_ssize_t nlen = 0
        if needle is not None:
            nd = needle
            nlen = len(needle)
        if fresh:
            self.win_len = 0
        while count < max_records:
            if pos >= end:
                break
            if end - pos < FRAME_HEADER:
                status = SCAN_INCOMPLETE
                break
            h = self._at(pos, FRAME_HEADER)
            if h == NULL:
                status = SCAN_INCOMPLETE
                break
            length = get_u32(h)
            crc = get_u32(h + 4)
            if length == 0 and crc == 0:
                status = SCAN_ZERO
                break
            if <long long>length > end - pos - FRAME_HEADER:
                status = SCAN_INCOMPLETE
                break
            h = self._at(pos, FRAME_HEADER + length)
            if h == NULL:
                status = SCAN_INCOMPLETE
                break
            if verify and crc32c_frame(length, h + FRAME_HEADER, length) != crc:
                status = SCAN_BADCRC
                break
            if out is not None and (nd == NULL or memmem(<const char *>h + FRAME_HEADER, length,
                                                         nd, nlen) != NULL):
                payload = PyBytes_FromStringAndSize(<const char *>h + FRAME_HEADER, length)
                if first_offset >= 0:
                    PyList_Append(out, (first_offset + count, payload))
                else:
                    PyList_Append(out, payload)
            pos += FRAME_HEADER + length
            count += 1
        return pos, count, status

    def export_json(self, long long pos, long long end, long long max_records, int dest_fd,
                    long long first_offset, bytes key_prefix):
        """Write records as JSON lines with ``key_prefix<offset>,`` injected after ``{``.

        Returns (pos, count, status) like :meth:`scan` and the longest line written (bytes,
        newline included); raises InvalidArgumentError naming the offset of a record that is
        not a JSON object.  Runs without the GIL: threads exporting with other scanners run
        in parallel.
        """
        cdef ExportState x
        cdef const uint8_t *body
        cdef const uint8_t *key = key_prefix
        cdef Py_ssize_t klen = len(key_prefix)
        x.pos = pos
        x.count = 0
        x.status = SCAN_OK
        x.err = 0
        x.longest = 0
        x.o.cap = WINDOW_BYTES
        x.o.len = 0
        x.o.buf = <uint8_t *>malloc(x.o.cap)
        if x.o.buf == NULL:
            raise MemoryError()
        try:
            with nogil:
                self._export(&x, end, max_records, dest_fd, first_offset, key, klen)
            if x.err == -1:
                raise MemoryError()
            if x.err:
                raise os_error(x.err)
            if x.status == EXPORT_NOT_OBJECT:
                body = self.win + (x.pos + FRAME_HEADER - self.win_start)
                raise InvalidArgumentError(
                    f"record at offset {first_offset + x.count} is not a JSON object (it "
                    f"starts with {(<char *>body)[:min(x.length, 20)]!r}); "
                    "export_json_lines only exports records that are JSON objects")
        finally:
            free(x.o.buf)
        return x.pos, x.count, x.status, x.longest

    cdef void _export(self, ExportState *x, long long end, long long max_records, int dest_fd,
                      long long first_offset, const uint8_t *key,
                      Py_ssize_t klen) noexcept nogil:
        cdef const uint8_t *h
        cdef const uint8_t *body
        cdef uint32_t length, crc
        cdef Py_ssize_t need, before
        cdef uint8_t *nb
        while x.count < max_records:
            if x.pos >= end:
                break
            if end - x.pos < FRAME_HEADER:
                x.status = SCAN_INCOMPLETE
                break
            h = self._window(x.pos, FRAME_HEADER, &x.err)
            if h == NULL:
                if x.err:
                    return
                x.status = SCAN_INCOMPLETE
                break
            length = get_u32(h)
            crc = get_u32(h + 4)
            if length == 0 and crc == 0:
                x.status = SCAN_ZERO
                break
            if <long long>length > end - x.pos - FRAME_HEADER:
                x.status = SCAN_INCOMPLETE
                break
            h = self._window(x.pos, FRAME_HEADER + length, &x.err)
            if h == NULL:
                if x.err:
                    return
                x.status = SCAN_INCOMPLETE
                break
            body = h + FRAME_HEADER
            if crc32c_frame(length, body, length) != crc:
                x.status = SCAN_BADCRC
                break
            if length == 0 or body[0] != 123:
                x.status = EXPORT_NOT_OBJECT
                x.length = length
                return
            need = klen + 24 + length + 2
            if x.o.len + need > x.o.cap:
                x.err = json_flush(&x.o, dest_fd)
                if x.err:
                    return
                if need > x.o.cap:
                    nb = <uint8_t *>realloc(x.o.buf, need)
                    if nb == NULL:
                        x.err = -1
                        return
                    x.o.buf = nb
                    x.o.cap = need
            before = x.o.len
            json_record(&x.o, key, klen, first_offset + x.count, body, length)
            if x.o.len - before > x.longest:
                x.longest = x.o.len - before
            x.pos += FRAME_HEADER + length
            x.count += 1
        x.err = json_flush(&x.o, dest_fd)


cdef int json_flush(JsonOut *o, int fd) noexcept nogil:
    cdef int err = esk_write_all(fd, o.buf, o.len)
    o.len = 0
    return err


cdef void json_record(JsonOut *o, const uint8_t *key, Py_ssize_t klen, long long offset,
                      const uint8_t *body, uint32_t length) noexcept nogil:
    # `{` + key + digits + (`,` unless the object is empty) + body[1:] + `\n`.  Raw CR/LF can
    # only be insignificant whitespace in valid JSON, so they become spaces: one line per record.
    cdef uint8_t digits[24]
    cdef int nd = 0, k
    cdef uint32_t j = 1
    cdef uint8_t *d = o.buf + o.len
    cdef uint8_t c
    cdef unsigned long long v = <unsigned long long>offset
    d[0] = 123
    memcpy(d + 1, key, klen)
    d += 1 + klen
    while True:
        digits[nd] = <uint8_t>(48 + v % 10)
        nd += 1
        v //= 10
        if v == 0:
            break
    for k in range(nd - 1, -1, -1):
        d[0] = digits[k]
        d += 1
    while j < length and (body[j] == 32 or body[j] == 9 or body[j] == 10
                          or body[j] == 13):
        j += 1
    if j >= length or body[j] != 125:
        d[0] = 44
        d += 1
    memcpy(d, body + 1, length - 1)
    if memchr(d, 10, length - 1) != NULL or memchr(d, 13, length - 1) != NULL:
        for k in range(<int>length - 1):
            c = d[k]
            if c == 10 or c == 13:
                d[k] = 32
    d += length - 1
    d[0] = 10
    d += 1
    o.len = d - o.buf


def find_frame(const uint8_t[::1] data, Py_ssize_t start, long long budget=256 << 20):
    """Index of the first complete, checksum-valid frame starting after ``start``.

    Returns -1 if there is none, or -2 if ``budget`` checksum bytes were spent without an
    answer.  Runs of zero bytes (unwritten space) are skipped without checksumming.
    """
    cdef Py_ssize_t n = data.shape[0], q = start + 1, z
    cdef uint32_t length, crc
    cdef const uint8_t *p
    if n == 0:
        return -1
    p = &data[0]
    while q + FRAME_HEADER <= n:
        if p[q] == 0:
            z = q
            while z < n and p[z] == 0:
                z += 1
            if z - q > FRAME_HEADER:
                q = z - (FRAME_HEADER - 1)
                continue
        length = get_u32(p + q)
        crc = get_u32(p + q + 4)
        if (length or crc) and <long long>length <= n - q - FRAME_HEADER:
            budget -= length + 4
            if crc32c_frame(length, p + q + FRAME_HEADER, length) == crc:
                return q
            if budget < 0:
                return -2
        q += 1
    return -1
