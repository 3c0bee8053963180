# Replay fast path: the records the hot path writes in a fixed layout (claimed, completed,
# heartbeat) are parsed here in C instead of going through orjson and a Python dispatch.
# They are applied through the very transitions live operation uses (_apply_claim,
# complete, apply_heartbeat).  Anything unexpected returns 0 and the caller takes the general
# path, which parses the record fully — so a record this parser misreads cannot be applied
# wrongly, only slowly.
from libc.string cimport memcmp, memchr
from libc.stdlib cimport strtoll
from cpython.dict cimport PyDict_GetItem
from cpython.ref cimport PyObject
from cpython.unicode cimport PyUnicode_DecodeASCII

cdef const char* P_CLAIMED = b'{"v":1,"t":"claimed","ts":'
cdef const char* P_COMPLETED = b'{"v":1,"t":"completed","ts":'
cdef const char* P_HEARTBEAT = b'{"v":1,"t":"heartbeat","ts":'
cdef const char* P_SUBMITTED = b'{"v":1,"t":"submitted","ts":'
cdef const char* K_DEPS = b',"depends_on":[],"max_attempts":'


cdef inline const char* rp_int(const char* p, const char* end, const char* key, size_t klen,
                               int64_t* out) noexcept:
    # Expect `key` (e.g. ,"lease":) at p, then an integer; returns the position after it.
    cdef char* stop
    if p == NULL or end - p < <Py_ssize_t>klen or memcmp(p, key, klen) != 0:
        return NULL
    p += klen
    out[0] = strtoll(p, &stop, 10)
    if stop == p:
        return NULL
    return stop


cdef inline const char* rp_str(const char* p, const char* end, const char* key, size_t klen,
                               const char** s, Py_ssize_t* slen) noexcept:
    # Expect `key` then a quoted id without escapes; (s, slen) = the id's bytes.
    cdef const char* q
    if p == NULL or end - p < <Py_ssize_t>klen or memcmp(p, key, klen) != 0:
        return NULL
    p += klen
    q = <const char*>memchr(p, b'"', end - p)
    if q == NULL:
        return NULL
    s[0] = p
    slen[0] = q - p
    return q + 1


cdef inline int32_t rp_handle(dict index, object key) noexcept:
    cdef PyObject* v = PyDict_GetItem(index, key)
    if v == NULL:
        return -1
    return <int32_t>(<object>v)


cdef inline const char* rp_rfind(const char* lo, const char* end, const char* key,
                                 size_t klen) noexcept:
    # Last occurrence of key in [lo, end); the tail after a payload is short, so this scan
    # from the end touches a few dozen bytes.
    cdef const char* p = end - klen
    while p >= lo:
        if p[0] == key[0] and memcmp(p, key, klen) == 0:
            return p
        p -= 1
    return NULL
