# Replay fast path: the records the hot path writes in a fixed layout (claimed, completed,
# heartbeat, plain submitted) are parsed here in C instead of going through orjson and a
# Python dispatch.  They are applied through the very transitions live operation uses
# (_apply_claim, complete, apply_heartbeat, _add).
#
# Records are untrusted input (a checksum is not a proof of meaning).  Invariants:
#   * the parsers accept a strict subset of what orjson and kernel/_records.py accept:
#     canonical integers, ids from the id alphabet, JSON values without whitespace whose
#     numbers orjson reads back as the same finite value and whose strings are UTF-8;
#   * a record is applied only after every check kernel/_records.py makes for its type
#     passed here; anything else returns 0 *before changing state*, and the caller decodes
#     and checks the record in full (which names what is wrong).  So a record this parser
#     misreads can be declined, never applied wrongly.
from libc.string cimport memcmp, memchr
from cpython.dict cimport PyDict_GetItem
from cpython.ref cimport PyObject
from cpython.unicode cimport PyUnicode_DecodeASCII

cdef const char* P_CLAIMED = b'{"v":1,"t":"claimed","ts":'
cdef const char* P_COMPLETED = b'{"v":1,"t":"completed","ts":'
cdef const char* P_HEARTBEAT = b'{"v":1,"t":"heartbeat","ts":'
cdef const char* P_SUBMITTED = b'{"v":1,"t":"submitted","ts":'
cdef const char* K_DEPS = b',"depends_on":[],"max_attempts":'

# The limits of kernel/_records.py (MAX_TS, MAX_DURATION, MAX_DUE), in ns.
cdef int64_t RP_MAX_TS = 4_000_000_000_000_000_000
cdef int64_t RP_MAX_DURATION = 1_000_000_000_000_000_000
cdef int64_t RP_MAX_DUE = 5_000_000_000_000_000_000
cdef int RP_MAX_DEPTH = 254     # orjson encodes at most 254 nested levels

# RP_ID[c] is 1 for the bytes of kernel._validate.ID_PATTERN's alphabet.
cdef uint8_t RP_ID[256]
for _c in range(256):
    RP_ID[_c] = _c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:@/+-"


cdef inline const char* rp_int(const char* p, const char* end, const char* key, size_t klen,
                               int64_t* out) noexcept:
    # Expect `key` (e.g. ,"lease":) at p, then a canonical non-negative JSON integer below
    # 2**63 (no sign, no leading zero, at most 19 digits); returns the position after it.
    cdef uint64_t v = 0
    cdef const char* start
    if p == NULL or end - p < <Py_ssize_t>klen or memcmp(p, key, klen) != 0:
        return NULL
    p += klen
    start = p
    while p < end and c'0' <= p[0] <= c'9' and p - start < 20:
        v = v * 10 + <uint64_t>(p[0] - c'0')
        p += 1
    if p == start or p - start > 19 or (start[0] == c'0' and p - start > 1):
        return NULL
    if v > <uint64_t>0x7FFFFFFFFFFFFFFF:
        return NULL
    out[0] = <int64_t>v
    return p


cdef inline const char* rp_str(const char* p, const char* end, const char* key, size_t klen,
                               const char** s, Py_ssize_t* slen) noexcept:
    # Expect `key` then a quoted id: 1-200 bytes of the id alphabet (so no escapes and
    # nothing PyUnicode_DecodeASCII could refuse); (s, slen) = the id's bytes.
    cdef const char* q
    if p == NULL or end - p < <Py_ssize_t>klen or memcmp(p, key, klen) != 0:
        return NULL
    p += klen
    q = p
    while q < end and RP_ID[<uint8_t>q[0]]:
        q += 1
    if q == end or q[0] != b'"' or q == p or q - p > 200:
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


cdef inline const char* rp_digits(const char* p, const char* end, int most) noexcept:
    # 1..most decimal digits at p; the position after them, or NULL.
    cdef const char* start = p
    while p < end and c'0' <= p[0] <= c'9':
        p += 1
    if p == start or p - start > most:
        return NULL
    return p


cdef inline const char* rp_utf8(const char* p, const char* end) noexcept:
    # One well-formed UTF-8 sequence of 2-4 bytes at p (no overlongs, no surrogates, at
    # most U+10FFFF: what orjson accepts); the position after it, or NULL.
    cdef uint8_t c = <uint8_t>p[0]
    cdef uint8_t lo = 0x80, hi = 0xBF
    cdef int n
    if 0xC2 <= c <= 0xDF:
        n = 1
    elif 0xE0 <= c <= 0xEF:
        n = 2
        if c == 0xE0:
            lo = 0xA0
        elif c == 0xED:
            hi = 0x9F
    elif 0xF0 <= c <= 0xF4:
        n = 3
        if c == 0xF0:
            lo = 0x90
        elif c == 0xF4:
            hi = 0x8F
    else:
        return NULL
    if end - p <= n or not lo <= <uint8_t>p[1] <= hi:
        return NULL
    for c in range(2, n + 1):
        if not 0x80 <= <uint8_t>p[c] <= 0xBF:
            return NULL
    return p + n + 1


cdef inline const char* rp_string(const char* p, const char* end) noexcept:
    # A JSON string at p (the opening quote); the position after its closing quote.
    # \u escapes of surrogates are declined (orjson writes characters, not pairs).
    cdef char c
    cdef int i
    p += 1
    while p < end:
        c = p[0]
        if c == b'"':
            return p + 1
        if c == b'\\':
            if p + 1 >= end:
                return NULL
            c = p[1]
            if c == b'u':
                if end - p < 6:
                    return NULL
                for i in range(2, 6):
                    if memchr(b"0123456789abcdefABCDEF", p[i], 22) == NULL or p[i] == 0:
                        return NULL
                if (p[2] == b'd' or p[2] == b'D') and memchr(b"89abcdefABCDEF", p[3], 14) != NULL:
                    return NULL
                p += 6
            elif c != 0 and memchr(b'"\\/bfnrt', c, 8) != NULL:
                p += 2
            else:
                return NULL
        elif <uint8_t>c < 0x20:
            return NULL
        elif <uint8_t>c < 0x80:
            p += 1
        else:
            p = rp_utf8(p, end)
            if p == NULL:
                return NULL
    return NULL


cdef inline const char* rp_number(const char* p, const char* end) noexcept:
    # A JSON number that orjson reads back as the same finite value: an integer in
    # [-2**63, 10**19), or at most 19 + 18 digits with an exponent of at most 2 digits.
    cdef const char* start
    cdef bint neg = p[0] == b'-'
    if neg:
        p += 1
    start = p
    if p < end and p[0] == c'0':
        p += 1
        if p < end and c'0' <= p[0] <= c'9':
            return NULL        # a leading zero
    else:
        p = rp_digits(p, end, 19)
        if p == NULL:
            return NULL
    if p < end and (p[0] == b'.' or p[0] == b'e' or p[0] == b'E'):
        if p[0] == b'.':
            p = rp_digits(p + 1, end, 18)
            if p == NULL:
                return NULL
        if p < end and (p[0] == b'e' or p[0] == b'E'):
            p += 1
            if p < end and (p[0] == b'+' or p[0] == b'-'):
                p += 1
            p = rp_digits(p, end, 2)
        return p
    if neg and p - start == 19 and memcmp(start, b"9223372036854775808", 19) > 0:
        return NULL            # below -2**63: orjson would read a float
    return p


cdef const char* rp_json(const char* p, const char* end, int depth) noexcept:
    # One JSON value at p with no whitespace (as orjson writes it); returns the position
    # after it, or NULL to decline.
    cdef char c, close
    if p >= end or depth > RP_MAX_DEPTH:
        return NULL
    c = p[0]
    if c == b'"':
        return rp_string(p, end)
    if c == b'{' or c == b'[':
        close = c'}' if c == b'{' else c']'
        p += 1
        if p < end and p[0] == close:
            return p + 1
        while True:
            if c == b'{':
                if p >= end or p[0] != b'"':
                    return NULL
                p = rp_string(p, end)
                if p == NULL or p >= end or p[0] != b':':
                    return NULL
                p += 1
            p = rp_json(p, end, depth + 1)
            if p == NULL or p >= end:
                return NULL
            if p[0] == b',':
                p += 1
                continue
            if p[0] == close:
                return p + 1
            return NULL
    if c == b'-' or c'0' <= c <= c'9':
        return rp_number(p, end)
    if end - p >= 4 and (memcmp(p, b"true", 4) == 0 or memcmp(p, b"null", 4) == 0):
        return p + 4
    if end - p >= 5 and memcmp(p, b"false", 5) == 0:
        return p + 5
    return NULL
