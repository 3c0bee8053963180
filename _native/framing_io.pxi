# Raw POSIX I/O used by the writer and the scanner, plus the segment header encoder.
#
# Invariants:
#   - esk_write_all writes every byte or returns the errno of the first failure (EINTR is
#     retried); a short write followed by an error leaves a torn tail that opening repairs.
#   - Every write, fdatasync and fsync of the writer (appends, group commit, segment rolls)
#     goes through esk_write1/esk_fdatasync/esk_fsync.  Tests may route them through a Python
#     object (_set_io_hook, a fault injector); unset, the hook costs one NULL test per
#     system call, never one per record.
#   - esk_pread_full reads until `n` bytes or end of file; it returns the count or -errno.
#   - The 32-byte segment header written here is the one eventlog/framing.py documents and
#     decodes: magic, version, flags, header length, first offset, reserved, CRC32C of the rest.

from libc.errno cimport EIO
from libc.stdint cimport int64_t

cdef extern from *:
    """
    #include <errno.h>
    #include <fcntl.h>
    #include <time.h>
    #include <unistd.h>

    /* The test seam: NULL unless a test installed a fault injector (see _set_io_hook). */
    static ssize_t (*esk_write_hook)(int fd, const uint8_t *p, size_t n) = NULL;  /* or -errno */
    static int (*esk_sync_hook)(int fd, int full) = NULL;                          /* 0 or errno */

    static void esk_set_hooks(ssize_t (*w)(int, const uint8_t *, size_t), int (*s)(int, int)) {
        esk_write_hook = w;
        esk_sync_hook = s;
    }

    /* One write(2): the bytes written, or -errno. */
    static inline ssize_t esk_write1(int fd, const uint8_t *p, size_t n) {
        if (esk_write_hook) return esk_write_hook(fd, p, n);
        ssize_t r = write(fd, p, n);
        return r < 0 ? -(ssize_t)errno : r;
    }

    static int esk_write_all(int fd, const uint8_t *p, size_t n) {
        while (n) {
            ssize_t r = esk_write1(fd, p, n);
            if (r < 0) { if (r == -EINTR) continue; return (int)-r; }
            p += r; n -= (size_t)r;
        }
        return 0;
    }

    static int esk_fdatasync(int fd) {
        if (esk_sync_hook) return esk_sync_hook(fd, 0);
        return fdatasync(fd) < 0 ? errno : 0;
    }

    static int esk_fsync(int fd) {
        if (esk_sync_hook) return esk_sync_hook(fd, 1);
        return fsync(fd) < 0 ? errno : 0;
    }

    static int64_t esk_pread_full(int fd, uint8_t *p, size_t n, int64_t pos) {
        size_t got = 0;
        while (got < n) {
            ssize_t r = pread(fd, p + got, n - got, (off_t)(pos + (int64_t)got));
            if (r < 0) { if (errno == EINTR) continue; return -(int64_t)errno; }
            if (r == 0) break;
            got += (size_t)r;
        }
        return (int64_t)got;
    }

    static int64_t esk_monotonic_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    }

    static int esk_openat_new(int dirfd, const char *name) {
        int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        return fd < 0 ? -errno : fd;
    }

    /* Allocate [pos, pos + n) of the file (its size grows; the space reads as zeros). */
    static int esk_preallocate(int fd, int64_t pos, int64_t n) {
        return posix_fallocate(fd, (off_t)pos, (off_t)n);
    }

    static int64_t esk_tell(int fd) {      /* the file offset, or -errno */
        off_t r = lseek(fd, 0, SEEK_CUR);
        return r < 0 ? -(int64_t)errno : (int64_t)r;
    }

    static int esk_truncate(int fd, int64_t size) {
        return ftruncate(fd, (off_t)size) < 0 ? errno : 0;
    }

    static int esk_renameat(int dirfd, const char *src, const char *dst) {
        return renameat(dirfd, src, dirfd, dst) < 0 ? errno : 0;
    }
    """
    ctypedef ssize_t (*esk_write_fn)(int fd, const uint8_t *p, size_t n) noexcept nogil
    ctypedef int (*esk_sync_fn)(int fd, int full) noexcept nogil
    void esk_set_hooks(esk_write_fn w, esk_sync_fn s) noexcept nogil
    int esk_write_all(int fd, const uint8_t *p, size_t n) noexcept nogil
    int esk_fdatasync(int fd) noexcept nogil
    int esk_fsync(int fd) noexcept nogil
    int64_t esk_pread_full(int fd, uint8_t *p, size_t n, int64_t pos) noexcept nogil
    int64_t esk_monotonic_ns() noexcept nogil
    int esk_openat_new(int dirfd, const char *name) noexcept nogil
    int esk_renameat(int dirfd, const char *src, const char *dst) noexcept nogil
    int esk_preallocate(int fd, int64_t pos, int64_t n) noexcept nogil
    int esk_truncate(int fd, int64_t size) noexcept nogil
    int64_t esk_tell(int fd) noexcept nogil

cdef extern from "<unistd.h>" nogil:
    int close(int fd)

cdef extern from "<stdio.h>" nogil:
    int snprintf(char *s, size_t n, const char *fmt, ...)

cdef enum:
    HEADER_SIZE = 32        # segment header bytes
    FRAME_HEADER = 8        # u32 length + u32 crc32c
    VERSION = 1

cdef bytes MAGIC = b"\x89ESKLOG\n"


cdef inline void put_u32(uint8_t *p, uint32_t v) noexcept nogil:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF
    p[2] = (v >> 16) & 0xFF
    p[3] = (v >> 24) & 0xFF


cdef inline uint32_t get_u32(const uint8_t *p) noexcept nogil:
    return <uint32_t>p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef void header_encode(uint8_t *h, long long first_offset) noexcept:
    cdef const uint8_t *m = MAGIC
    cdef int i
    for i in range(8):
        h[i] = m[i]
    h[8] = VERSION
    h[9] = 0
    h[10] = 0               # flags
    h[11] = 0
    put_u32(h + 12, HEADER_SIZE)
    put_u32(h + 16, <uint32_t>(first_offset & 0xFFFFFFFF))
    put_u32(h + 20, <uint32_t>((first_offset >> 32) & 0xFFFFFFFF))
    put_u32(h + 24, 0)      # reserved
    put_u32(h + 28, eskcrc_update(0xFFFFFFFFu, h, 28) ^ 0xFFFFFFFFu)


def segment_header(long long first_offset):
    """The 32-byte header of a segment whose first record has offset ``first_offset``."""
    cdef uint8_t h[32]
    header_encode(h, first_offset)
    return (<char *>h)[:32]


cdef object os_error(int err):
    return OSError(err, os_strerror(err))


# ---- the test seam: a Python fault injector in place of write/fdatasync/fsync ------------

cdef object io_hook = None


cdef int hook_errno(BaseException e) noexcept:
    # An OSError carries its errno; anything else a hook raises is reported as EIO.
    if isinstance(e, OSError) and (<object>e).errno:
        return (<object>e).errno
    return EIO


cdef ssize_t hook_write(int fd, const uint8_t *p, size_t n) noexcept nogil:
    cdef ssize_t r
    with gil:
        try:
            r = io_hook.write(fd, (<const char *>p)[:n])
        except BaseException as e:
            return -hook_errno(e)
    if r <= 0 or <size_t>r > n:     # a hook that wrote nothing would loop forever
        return -EIO
    return r


cdef int hook_sync(int fd, int full) noexcept nogil:
    with gil:
        try:
            if full:
                io_hook.fsync(fd)
            else:
                io_hook.fdatasync(fd)
        except BaseException as e:
            return hook_errno(e)
        return 0


def _set_io_hook(hook):
    """Tests only: route the writer's I/O through ``hook``; ``None`` restores the OS calls.

    ``hook.write(fd, data)`` returns the number of bytes it wrote (at least 1; it may be
    fewer than ``len(data)``); ``hook.fdatasync(fd)`` and ``hook.fsync(fd)`` return nothing;
    all three raise ``OSError`` to fail.  The hook applies to every writer in the process,
    on the same code path as the OS calls (including the GIL-free group commit).  Returns the
    previous hook.
    """
    global io_hook
    previous = io_hook
    if hook is None:
        esk_set_hooks(NULL, NULL)
        io_hook = None
    else:
        io_hook = hook
        esk_set_hooks(hook_write, hook_sync)
    return previous
