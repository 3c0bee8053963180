# The replay fast path's transitions (helpers in replay.pxi): records the hot path writes in
# a fixed layout are parsed in C, checked like kernel/_records.py checks them, and applied
# through the same core transitions live operation uses.  Every check comes before the
# first change of state; anything unexpected returns 0 and the caller decodes the record
# fully (and names what is wrong with it).

cdef inline bint rp_time_ok(Scheduler self, int64_t ts) noexcept:
    # An event time in range that does not go back before the previous event's.
    return self.last_ts <= ts <= RP_MAX_TS


cdef int sched_replay_record(Scheduler self, bytes rec, dict tasks, dict agents,
                             list results) except -1:
    cdef const char* p = PyBytes_AS_STRING(rec)
    cdef const char* end = p + PyBytes_GET_SIZE(rec)
    cdef int64_t ts = 0, lid = 0, attempt = 0, expires = 0
    cdef const char* ts_ = NULL
    cdef const char* as_ = NULL
    cdef const char* body
    cdef Py_ssize_t tl = 0, al = 0
    cdef int32_t h, a
    cdef Py_ssize_t n = end - p
    if n > 26 and memcmp(p, P_CLAIMED, 26) == 0:
        p = rp_int(p, end, P_CLAIMED, 26, &ts)
        p = rp_str(p, end, b',"task":"', 9, &ts_, &tl)
        p = rp_int(p, end, b',"lease":', 9, &lid)
        p = rp_str(p, end, b',"agent":"', 10, &as_, &al)
        p = rp_int(p, end, b',"attempt":', 11, &attempt)
        p = rp_int(p, end, b',"expires":', 11, &expires)
        if p == NULL or p + 1 != end or p[0] != b'}' or not rp_time_ok(self, ts):
            return 0
        h = rp_handle(tasks, PyUnicode_DecodeASCII(ts_, tl, NULL))
        a = rp_handle(agents, PyUnicode_DecodeASCII(as_, al, NULL))
        # The claim live operation would have made: the lease next in sequence, the task
        # the core chooses for this agent (which covers online, capacity, paused, limits,
        # capabilities, pinning and order), its next attempt, its timeout.
        if (h < 0 or a < 0 or self.tasks[h].status != ST_READY or lid != self.next_lease_id
                or self._choose(a) != h or attempt != self.tasks[h].attempts + 1
                or expires != ts + self.tasks[h].timeout):
            return 0
        self._apply_claim(h, lid, a, ts, expires)
        self.last_ts = ts
        return 1
    if n > 28 and memcmp(p, P_COMPLETED, 28) == 0:
        p = rp_int(p, end, P_COMPLETED, 28, &ts)
        p = rp_str(p, end, b',"task":"', 9, &ts_, &tl)
        p = rp_int(p, end, b',"lease":', 9, &lid)
        if (p == NULL or end - p < 12 or memcmp(p, b',"result":', 10) != 0
                or (end - 1)[0] != b'}' or not rp_time_ok(self, ts)):
            return 0
        body = p + 10
        if rp_json(body, end - 1, 1) != end - 1:
            return 0
        h = rp_handle(tasks, PyUnicode_DecodeASCII(ts_, tl, NULL))
        if h < 0 or self._slot_of(h, lid) < 0:
            return 0
        self._complete(h, ts)
        results[h] = PyBytes_FromStringAndSize(body, end - 1 - body)
        self.last_ts = ts
        return 1
    if n > 28 and memcmp(p, P_HEARTBEAT, 28) == 0:
        p = rp_int(p, end, P_HEARTBEAT, 28, &ts)
        p = rp_str(p, end, b',"task":"', 9, &ts_, &tl)
        p = rp_int(p, end, b',"lease":', 9, &lid)
        p = rp_int(p, end, b',"expires":', 11, &expires)
        if p == NULL or p + 1 != end or p[0] != b'}' or not rp_time_ok(self, ts):
            return 0
        h = rp_handle(tasks, PyUnicode_DecodeASCII(ts_, tl, NULL))
        if h < 0 or expires != ts + self.tasks[h].timeout or self.apply_heartbeat(h, lid, expires) < 0:
            return 0
        self.last_ts = ts
        return 1
    return 0


cdef int sched_replay_submitted(Scheduler self, bytes rec, dict tasks, dict queues,
                                list payloads, list results, list errors, list meta,
                                tuple no_meta, int policy) except -1:
    cdef const char* p = PyBytes_AS_STRING(rec)
    cdef const char* end = p + PyBytes_GET_SIZE(rec)
    cdef const char* body
    cdef const char* tail
    cdef const char* ts_ = NULL
    cdef const char* qs_ = NULL
    cdef Py_ssize_t tl = 0, ql = 0
    cdef int64_t ts = 0, prio = 0, attempts = 0, timeout = 0, nb = 0
    cdef int32_t q
    cdef handle_t h
    cdef object tid
    if end - p < 28 or memcmp(p, P_SUBMITTED, 28) != 0:
        return 0
    p = rp_int(p, end, P_SUBMITTED, 28, &ts)
    p = rp_str(p, end, b',"task":"', 9, &ts_, &tl)
    p = rp_str(p, end, b',"queue":"', 10, &qs_, &ql)
    p = rp_int(p, end, b',"priority":', 12, &prio)
    if p == NULL or end - p < 11 or memcmp(p, b',"payload":', 11) != 0:
        return 0
    body = p + 11
    tail = rp_rfind(body, end, K_DEPS, 32)
    if tail == NULL or tail == body:
        return 0
    p = rp_int(tail, end, K_DEPS, 32, &attempts)
    p = rp_int(p, end, b',"timeout":', 11, &timeout)
    p = rp_int(p, end, b',"not_before":', 14, &nb)
    if p == NULL or p + 1 != end or p[0] != b'}':
        return 0
    # The ranges of the public API (kernel/_records.py checks the same).
    if (not rp_time_ok(self, ts) or prio > PRIO_MAX or attempts < 1 or attempts > 1_000_000
            or timeout > RP_MAX_DURATION or nb > RP_MAX_DUE
            or rp_json(body, tail, 1) != tail):
        return 0
    tid = PyUnicode_DecodeASCII(ts_, tl, NULL)
    q = rp_handle(queues, PyUnicode_DecodeASCII(qs_, ql, NULL))
    if q < 0 or PyDict_GetItem(tasks, tid) != NULL:
        return 0
    h = self._add(tid, q, <int>prio, <int32_t>attempts, timeout, -1, nb, policy, 0, ts)
    self._wait_or_ready(h, ts)
    tasks[tid] = h
    payloads.append(PyBytes_FromStringAndSize(body, tail - body))
    results.append(None)
    errors.append(None)
    meta.append(no_meta)
    self.last_ts = ts
    return 1
