# The Kernel's entry points for its common calls (Scheduler.k_submit, k_claim, k_complete,
# k_heartbeat).  Kernel.__init__ binds them as the instance's `submit`, `claim`, `complete`
# and `heartbeat`: the common case runs here in one C call (hot.pxi), without a Python
# frame; anything else (a blocked kernel, an unusual argument, a refusal, an epoch due)
# calls the Kernel's own Python method, which decides from scratch and raises the precise
# error.  A refusal changes nothing (hot.pxi), so the second decision sees the same state.
# The kernel's clock is read here, at the boundary: the transitions take `now` as an
# argument, and the time they used is in the record.

cdef object entry_kernel(Scheduler self):
    k = self.e_ref()
    if k is None:
        raise KernelInternalError("the kernel of these calls is gone; keep it referenced "
                                  "while you call it")
    return k


cdef object entry_failed(Scheduler self, object err):
    # The error to raise for an exception of a hot call (the kernel poisons itself when
    # the append failed after the state changed).
    return entry_kernel(self)._hot_failed(err)


cdef object entry_submit(Scheduler self, object queue, object payload, object id_,
                         object priority, object depends_on, object max_attempts,
                         object timeout, object delay):
    cdef object tid
    try:
        tid = hot_submit(self, queue, payload, id_, priority, depends_on, max_attempts,
                         timeout, delay, self.e_clock(), b"", None)
    except BaseException as err:
        raise entry_failed(self, err)
    if tid is not None and self.e_snapshot is not None:
        self.e_snapshot()
    return tid


cdef object entry_claim(Scheduler self, object agent_id):
    cdef PyObject* ref
    cdef object r
    if not self.blocked and type(agent_id) is str:
        ref = PyDict_GetItem(self.e_agents, agent_id)
        if ref != NULL:
            try:
                r = hot_claim(self, <int32_t>(<object>ref), self.e_clock())
            except BaseException as err:
                raise entry_failed(self, err)
            if type(r) is not int:
                return r
    return self.e_class.claim(entry_kernel(self), agent_id)


cdef object entry_complete(Scheduler self, object lease, object result):
    cdef bytes body
    cdef object code
    if not self.blocked:
        body = b"null" if result is None else self.h_dumps(result)
        if PyBytes_GET_SIZE(body) <= self.h_max_payload:
            try:
                code = hot_complete(self, lease, body, self.e_clock())
            except BaseException as err:
                raise entry_failed(self, err)
            if code is None:
                return None
    return self.e_class.complete(entry_kernel(self), lease, result)


cdef object entry_heartbeat(Scheduler self, object lease):
    cdef object exp
    if not self.blocked:
        try:
            exp = hot_heartbeat(self, lease, self.e_clock())
        except BaseException as err:
            raise entry_failed(self, err)
        if exp >= 0:
            return exp / 1_000_000_000       # int / int, as every time the kernel shows
    return self.e_class.heartbeat(entry_kernel(self), lease)
