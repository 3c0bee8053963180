# eskernel.eventlog._framing: the compiled half of the event log.
#
# One compilation unit; components are included in dependency order:
#   framing_crc.pxi     CRC32C, SSE4.2 with a slicing-by-8 fallback
#   framing_io.pxi      POSIX I/O helpers and the segment header encoder
#   framing_writer.pxi  Writer: frames into a reused buffer, durability modes, group commit
#   framing_scan.pxi    SegmentScanner: verified reads, JSON-lines export, resync search
# The on-disk format and its rules are documented in eventlog/framing.py.

cimport cython

from os import strerror as os_strerror
from threading import Condition, Lock

from eskernel.eventlog.errors import (
    InvalidArgumentError,
    LogClosedError,
    LogFailedError,
    LogWriteError,
    RecordTypeError,
)

include "framing_crc.pxi"
include "framing_io.pxi"
include "framing_writer.pxi"
include "framing_scan.pxi"

HW_CRC = bool(eskcrc_hw)


def _force_table_crc(bint on):
    """Tests only: ``True`` makes every checksum (frames, headers, ``crc32c``) take the table
    path even on a CPU with SSE4.2, ``False`` returns to the CPU's path.  Returns the previous
    setting.  Not thread-safe: call it only while no log is in use."""
    return bool(eskcrc_force_table(on))


def crc32c(data, unsigned int value=0):
    """CRC32C (Castagnoli) of ``data``, continuing from ``value`` like ``zlib.crc32``."""
    cdef const uint8_t[::1] view = data
    cdef size_t n = view.shape[0]
    cdef const uint8_t *p = &view[0] if n else NULL
    return eskcrc_update(value ^ 0xFFFFFFFFu, p, n) ^ 0xFFFFFFFFu


def crc32c_portable(data, unsigned int value=0):
    """The table-driven CRC32C, whatever the CPU supports (for tests)."""
    cdef const uint8_t[::1] view = data
    cdef size_t n = view.shape[0]
    cdef const uint8_t *p = &view[0] if n else NULL
    return eskcrc_sw(value ^ 0xFFFFFFFFu, p, n) ^ 0xFFFFFFFFu


def frame_crc(data):
    """The checksum stored in a frame holding ``data``: CRC32C of the length bytes + payload."""
    cdef const uint8_t[::1] view = data
    cdef size_t n = view.shape[0]
    cdef const uint8_t *p = &view[0] if n else NULL
    return crc32c_frame(<uint32_t>n, p, n)
