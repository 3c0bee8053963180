# Hand-rolled encoding of the `claimed` record (the one event on the claim path): fixed
# fragments plus decimal integers, byte-identical to kernel.events.encode (a test holds them
# equal).  Ids need no escaping: the kernel admits only [A-Za-z0-9._:@/+-] in ids.

cdef inline char* enc_put(char* p, const char* s, Py_ssize_t n) noexcept nogil:
    memcpy(p, s, n)
    return p + n

cdef inline char* enc_i64(char* p, int64_t v) noexcept nogil:
    cdef char tmp[24]
    cdef int n = 0
    cdef uint64_t u
    if v < 0:
        p[0] = 45   # '-'
        p += 1
        u = <uint64_t>(-(v + 1)) + 1
    else:
        u = <uint64_t>v
    while True:
        tmp[n] = <char>(48 + u % 10)   # '0' + digit
        n += 1
        u //= 10
        if u == 0:
            break
    while n > 0:
        n -= 1
        p[0] = tmp[n]
        p += 1
    return p
