# The C encoders of the hot records (cancelled, claimed, completed, failed, heartbeat,
# released, submitted):
# fixed fragments plus decimal integers, byte-identical to kernel.events.encode (the
# readable reference; tests/test_events_codec.py holds every encoder here equal to it).
# Ids need no escaping: the kernel admits only [A-Za-z0-9._:@/+-] in ids, and payloads,
# results, tags and keys arrive already JSON-encoded by kernel.events.dumps.
#
# Each enc_<type> writes at p and returns the end; the caller sizes the buffer with
# ENC_FIXED plus the variable parts (every integer takes at most 20 bytes).

cdef enum:
    ENC_FIXED = 256         # fragments + six integers of any record here, with room to spare
    ENC_STACK = 1024        # records up to this size are built on the stack

cdef inline char* enc_put(char* p, const char* s, Py_ssize_t n) noexcept nogil:
    memcpy(p, s, n)
    return p + n

cdef const char* DIGIT_PAIRS = (b"00010203040506070809101112131415161718192021222324"
                                b"25262728293031323334353637383940414243444546474849"
                                b"50515253545556575859606162636465666768697071727374"
                                b"75767778798081828384858687888990919293949596979899")

cdef inline char* enc_i64(char* p, int64_t v) noexcept nogil:
    # Two digits per division (a 19-digit time takes 10, not 19): the core's claim runs
    # ~1,900 instructions instead of ~2,350 (callgrind); its wall time is memory-bound.
    cdef char tmp[24]
    cdef int n = 24
    cdef uint64_t u, q
    cdef Py_ssize_t r
    if v < 0:
        p[0] = 45   # '-'
        p += 1
        u = <uint64_t>(-(v + 1)) + 1
    else:
        u = <uint64_t>v
    while u >= 100:
        q = u // 100
        r = <Py_ssize_t>(u - q * 100) * 2
        n -= 2
        tmp[n] = DIGIT_PAIRS[r]
        tmp[n + 1] = DIGIT_PAIRS[r + 1]
        u = q
    if u >= 10:
        n -= 2
        tmp[n] = DIGIT_PAIRS[u * 2]
        tmp[n + 1] = DIGIT_PAIRS[u * 2 + 1]
    else:
        n -= 1
        tmp[n] = <char>(48 + u)   # '0' + digit
    memcpy(p, tmp + n, 24 - n)
    return p + 24 - n

cdef inline char* enc_str(char* p, str s) noexcept:
    # A quoted id (ASCII: see above); its UTF-8 form is cached by the str itself.
    cdef Py_ssize_t n
    cdef const char* c = PyUnicode_AsUTF8AndSize(s, &n)
    p[0] = 34   # '"'
    p = enc_put(p + 1, c, n)
    p[0] = 34
    return p + 1

cdef inline Py_ssize_t enc_len(str s) noexcept:
    return PyUnicode_GET_LENGTH(s)     # ids are ASCII: characters == bytes

cdef char* enc_claimed(char* p, tick_t now, str tid, int64_t lid, str aid, int64_t attempt,
                       tick_t expires) noexcept:
    p = enc_put(p, b'{"v":1,"t":"claimed","ts":', 26)
    p = enc_i64(p, now)
    p = enc_str(enc_put(p, b',"task":', 8), tid)
    p = enc_i64(enc_put(p, b',"lease":', 9), lid)
    p = enc_str(enc_put(p, b',"agent":', 9), aid)
    p = enc_i64(enc_put(p, b',"attempt":', 11), attempt)
    p = enc_i64(enc_put(p, b',"expires":', 11), expires)
    return enc_put(p, b'}', 1)

cdef char* enc_completed(char* p, tick_t now, str tid, int64_t lid, bytes body) noexcept:
    p = enc_put(p, b'{"v":1,"t":"completed","ts":', 28)
    p = enc_i64(p, now)
    p = enc_str(enc_put(p, b',"task":', 8), tid)
    p = enc_i64(enc_put(p, b',"lease":', 9), lid)
    p = enc_put(p, b',"result":', 10)
    p = enc_put(p, PyBytes_AS_STRING(body), PyBytes_GET_SIZE(body))
    return enc_put(p, b'}', 1)

cdef char* enc_heartbeat(char* p, tick_t now, str tid, int64_t lid, tick_t expires) noexcept:
    p = enc_put(p, b'{"v":1,"t":"heartbeat","ts":', 28)
    p = enc_i64(p, now)
    p = enc_str(enc_put(p, b',"task":', 8), tid)
    p = enc_i64(enc_put(p, b',"lease":', 9), lid)
    p = enc_i64(enc_put(p, b',"expires":', 11), expires)
    return enc_put(p, b'}', 1)

cdef char* enc_failed(char* p, tick_t now, str tid, int64_t lid, bytes error_json,
                      bint retryable, tick_t retry_at) noexcept:
    # error_json: the error string, JSON-encoded; retry_at < 0 is null (dead-lettered).
    p = enc_put(p, b'{"v":1,"t":"failed","ts":', 25)
    p = enc_i64(p, now)
    p = enc_str(enc_put(p, b',"task":', 8), tid)
    p = enc_i64(enc_put(p, b',"lease":', 9), lid)
    p = enc_put(p, b',"error":', 9)
    p = enc_put(p, PyBytes_AS_STRING(error_json), PyBytes_GET_SIZE(error_json))
    if retryable:
        p = enc_put(p, b',"retryable":true,"retry_at":', 29)
    else:
        p = enc_put(p, b',"retryable":false,"retry_at":', 30)
    if retry_at < 0:
        p = enc_put(p, b'null', 4)
    else:
        p = enc_i64(p, retry_at)
    return enc_put(p, b'}', 1)

cdef char* enc_cancelled(char* p, tick_t now, str tid, str cause) noexcept:
    # cause None: cancelled by the caller; else the cancelled task it depended on.
    p = enc_put(p, b'{"v":1,"t":"cancelled","ts":', 28)
    p = enc_i64(p, now)
    p = enc_str(enc_put(p, b',"task":', 8), tid)
    if cause is None:
        p = enc_put(p, b',"reason":"cancelled","cause":null', 34)
    else:
        p = enc_str(enc_put(p, b',"reason":"upstream","cause":', 29), cause)
    return enc_put(p, b'}', 1)

cdef char* enc_released(char* p, tick_t now, str tid, int64_t lid) noexcept:
    p = enc_put(p, b'{"v":1,"t":"released","ts":', 27)
    p = enc_i64(p, now)
    p = enc_str(enc_put(p, b',"task":', 8), tid)
    p = enc_i64(enc_put(p, b',"lease":', 9), lid)
    return enc_put(p, b'}', 1)

cdef char* enc_submitted(char* p, tick_t now, str tid, str queue, int64_t prio, bytes payload,
                         list deps, int64_t max_attempts, tick_t timeout, tick_t not_before,
                         bytes extra) noexcept:
    # deps: dependency ids (str); extra: the encoded optional fields (`,"tags":...`) or b"".
    cdef Py_ssize_t i
    p = enc_put(p, b'{"v":1,"t":"submitted","ts":', 28)
    p = enc_i64(p, now)
    p = enc_str(enc_put(p, b',"task":', 8), tid)
    p = enc_str(enc_put(p, b',"queue":', 9), queue)
    p = enc_i64(enc_put(p, b',"priority":', 12), prio)
    p = enc_put(p, b',"payload":', 11)
    p = enc_put(p, PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))
    p = enc_put(p, b',"depends_on":[', 15)
    for i in range(len(deps)):
        if i:
            p[0] = 44   # ','
            p += 1
        p = enc_str(p, <str>PyList_GET_ITEM(deps, i))
    p = enc_i64(enc_put(p, b'],"max_attempts":', 17), max_attempts)
    p = enc_i64(enc_put(p, b',"timeout":', 11), timeout)
    p = enc_i64(enc_put(p, b',"not_before":', 14), not_before)
    p = enc_put(p, PyBytes_AS_STRING(extra), PyBytes_GET_SIZE(extra))
    return enc_put(p, b'}', 1)
