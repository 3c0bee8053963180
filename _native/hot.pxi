# The hot calls: each common form of submit, claim, complete, heartbeat and release is
# checked, decided, encoded, applied and appended here in one C call.  kernel/_kernel.py
# validates what it must at the boundary and sends everything unusual to its general path,
# which raises the precise error.
#
# Invariants:
#   * a call that returns a refusal code (or None from submit) changed nothing and
#     appended nothing: every check comes before the first change of state, and the
#     record is encoded before the state changes (so a MemoryError changes nothing either);
#   * after the state changed, the record is appended through bind_hot's `append`; if that
#     raises, append_failed is set and the exception propagates: the kernel then refuses
#     every further call (the core already holds what the log may lack);
#   * a claimed record may go through `append_claim`, which in fsync mode does not wait for
#     the disk: a claim lost in a crash only returns its task to the queue.  Its lease id
#     must then never be issued again: before the first such claim of a kernel opened on a
#     log that has records, the kernel writes (and syncs) an `epoch` record that moves lease
#     ids to a fresh range (epoch_due makes claim_hot ask for it), so a lease issued before
#     a crash can never be mistaken for one issued after;
#   * `now` is clamped to last_ts, so event times never go back (the live-only decision
#     kernel._kernel._monotonic makes for the other calls);
#   * a lease is honoured only if it is a Lease issued by this very Scheduler (ident), its
#     slot still holds its id, and (complete, heartbeat) its expiry is after now: whether
#     tick() has run or not, an expired lease is refused and nothing is logged.  Replay
#     never repeats that check: it is decided live, and only its event is logged.
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_Check, PyLong_CheckExact
from cpython.unicode cimport PyUnicode_GET_LENGTH
from cpython.float cimport PyFloat_CheckExact, PyFloat_AS_DOUBLE

cdef extern from "Python.h":
    PyObject* PyDict_SetDefault(object d, object key, object default) except NULL  # borrowed
from libc.math cimport nearbyint, isfinite

cdef enum:
    HOT_NOT_LEASE = -1      # not a Lease at all
    HOT_FOREIGN = -2        # a Lease issued by another kernel (or before a reopen)
    HOT_STALE = -3          # no longer the task's current lease
    HOT_EXPIRED = -4        # current, but its expiry is past by the kernel's clock
    HOT_EPOCH = -5          # claim: write an epoch record first
    HOT_DEAD = -6           # fail: the attempt dead-letters the task (the general path)
    HOT_MAX_DEPS = 64       # longer depends_on lists take the general path

cdef int64_t hot_idents = 0     # Scheduler idents: one per Scheduler in the process
cdef double HOT_MAX_DURATION_S = 1e9          # kernel._validate.MAX_DURATION_S
cdef double HOT_NS = 1e9


cdef int hot_append(Scheduler self, bytes rec, tick_t now, bint claim=False) except -1:
    try:
        if claim:
            self.h_append_claim(rec)
        else:
            self.h_append(rec)
    except BaseException:
        self.append_failed = True
        raise
    self.applied += 1
    self.last_ts = now
    return 0


cdef inline char* hot_buf(char* stack, Py_ssize_t need) except NULL:
    cdef char* p
    if need <= ENC_STACK:
        return stack
    p = <char*>PyMem_Malloc(need)
    if p == NULL:
        raise MemoryError()
    return p


cdef inline bytes hot_bytes(char* buf, char* end, char* stack):
    cdef bytes rec
    try:
        rec = PyBytes_FromStringAndSize(buf, end - buf)
    finally:
        if buf != stack:
            PyMem_Free(buf)
    return rec


cdef int32_t hot_slot(Scheduler self, object obj, tick_t now, bint expiry) noexcept:
    # The live slot of lease `obj`, or a HOT_* refusal code.
    cdef Lease lease
    cdef int32_t s
    if type(obj) is not Lease:
        return HOT_NOT_LEASE
    lease = <Lease>obj
    if lease._issuer != self.ident:
        return HOT_FOREIGN
    s = self._slot_of(lease._task, lease.lease_id)
    if s < 0:
        return HOT_STALE
    if expiry and self.slots[s].expires <= now:
        return HOT_EXPIRED
    return s


cdef object hot_claim(Scheduler self, int32_t a, tick_t now):
    cdef handle_t h
    cdef Lease lease
    if now < self.last_ts:
        now = self.last_ts
    h = self._choose(a)
    if h < 0:
        return None if h == CHOOSE_NONE else h
    if self.epoch_due:
        return HOT_EPOCH
    lease = self._grant(h, a, now)
    hot_append(self, lease._event, now, True)
    return lease


cdef object hot_complete(Scheduler self, object obj, bytes body, tick_t now):
    cdef char stack[ENC_STACK]
    cdef char* buf
    cdef Lease lease
    cdef bytes rec
    if now < self.last_ts:
        now = self.last_ts
    cdef int32_t s = hot_slot(self, obj, now, True)
    if s < 0:
        return s
    lease = <Lease>obj
    buf = hot_buf(stack, ENC_FIXED + enc_len(lease.task_id) + PyBytes_GET_SIZE(body))
    rec = hot_bytes(buf, enc_completed(buf, now, lease.task_id, lease.lease_id, body), stack)
    self._complete(lease._task, now)
    self.h_results[lease._task] = body
    hot_append(self, rec, now)
    return None


cdef object hot_heartbeat(Scheduler self, object obj, tick_t now):
    cdef char buf[ENC_STACK]
    cdef Lease lease
    cdef bytes rec
    cdef tick_t expires
    if now < self.last_ts:
        now = self.last_ts
    cdef int32_t s = hot_slot(self, obj, now, True)
    if s < 0:
        return s
    lease = <Lease>obj
    expires = now + self.tasks[lease._task].timeout
    rec = PyBytes_FromStringAndSize(
        buf, enc_heartbeat(buf, now, lease.task_id, lease.lease_id, expires) - buf)
    self.slots[s].expires = expires
    time_update(&self.expiry, s, expires)
    hot_append(self, rec, now)
    return expires


cdef tick_t hot_retry_due(Scheduler self, handle_t h, tick_t now, bint retryable,
                          double u) noexcept:
    cdef Task* t = &self.tasks[h]
    cdef Policy* p = &self.policies[t.policy]
    cdef double delay
    if not retryable or t.attempts >= t.max_attempts:
        return -1
    delay = <double>p.initial * pow(p.factor, t.attempts - 1)
    if delay > <double>p.maximum:
        delay = <double>p.maximum
    delay *= 1.0 - p.jitter * u
    return now + <tick_t>delay


cdef object hot_fail(Scheduler self, object obj, bytes error_json, str error, bint retryable,
                     double u, tick_t now):
    # A failed attempt that is retried (RETRYING, or READY when its backoff is 0).
    cdef char stack[ENC_STACK]
    cdef char* buf
    cdef Lease lease
    cdef bytes rec
    cdef tick_t due
    if now < self.last_ts:
        now = self.last_ts
    cdef int32_t s = hot_slot(self, obj, now, False)
    if s < 0:
        return s
    lease = <Lease>obj
    due = hot_retry_due(self, lease._task, now, retryable, u)
    if due < 0:
        return HOT_DEAD
    buf = hot_buf(stack, ENC_FIXED + enc_len(lease.task_id) + PyBytes_GET_SIZE(error_json))
    rec = hot_bytes(buf, enc_failed(buf, now, lease.task_id, lease.lease_id, error_json,
                                    retryable, due), stack)
    self.fail(lease._task, lease.lease_id, now, due)
    self.h_errors[lease._task] = error
    hot_append(self, rec, now)
    return None


cdef object hot_release(Scheduler self, object obj, tick_t now):
    cdef char buf[ENC_STACK]
    cdef Lease lease
    cdef bytes rec
    if now < self.last_ts:
        now = self.last_ts
    cdef int32_t s = hot_slot(self, obj, now, False)
    if s < 0:
        return s
    lease = <Lease>obj
    rec = PyBytes_FromStringAndSize(buf, enc_released(buf, now, lease.task_id,
                                                      lease.lease_id) - buf)
    self.release(lease._task, lease.lease_id, now)
    hot_append(self, rec, now)
    return None


cdef object hot_complete_many(Scheduler self, list leases, list bodies, tick_t now,
                              list results):
    # Scheduler.complete_many: every lease checked, every record encoded, then applied.
    cdef Py_ssize_t i, n = len(leases)
    cdef Lease lease
    cdef list out = []
    cdef bytes body
    cdef char stack[ENC_STACK]
    cdef char* buf
    for i in range(n):
        if hot_slot(self, leases[i], now, True) < 0:
            return i
    for i in range(n):
        lease = <Lease>leases[i]
        body = <bytes>bodies[i]
        buf = hot_buf(stack, ENC_FIXED + enc_len(lease.task_id) + PyBytes_GET_SIZE(body))
        out.append(hot_bytes(buf, enc_completed(buf, now, lease.task_id, lease.lease_id, body),
                             stack))
    for i in range(n):
        lease = <Lease>leases[i]
        self._complete(lease._task, now)
        results[lease._task] = bodies[i]
    return out


cdef object hot_cancel(Scheduler self, object task_id, tick_t now):
    # Cancel a task that is not finished and, transitively, its unfinished dependents, in
    # one append; the ids cancelled, or None (unknown or finished: the general path raises).
    cdef PyObject* ref
    cdef handle_t h
    cdef char buf[ENC_STACK]
    cdef list closure, records, ids
    cdef str tid, why, dep
    if type(task_id) is not str:
        return None
    ref = PyDict_GetItem(self.h_tasks, task_id)
    if ref == NULL:
        return None
    h = <handle_t>(<object>ref)
    if status_terminal(self.tasks[h].status):
        return None
    if now < self.last_ts:
        now = self.last_ts
    closure = self.cancel_closure(h)
    tid = <str>task_id
    ids = [tid]
    records = [PyBytes_FromStringAndSize(buf, enc_cancelled(buf, now, tid, None) - buf)]
    for d in closure:
        dep = <str>PyList_GET_ITEM(self.task_ids, <handle_t>d)
        ids.append(dep)
        records.append(PyBytes_FromStringAndSize(buf, enc_cancelled(buf, now, dep, tid) - buf))
    why = f"cancelled: upstream task {tid!r} failed or was cancelled"   # as _apply records it
    self.cancel(h, now, False)
    for d in closure:
        self.cancel(d, now, True)
        self.h_errors[<handle_t>d] = why
    try:
        self.h_append_many(records)
    except BaseException:
        self.append_failed = True
        raise
    self.applied += len(records)
    self.last_ts = now
    return ids


cdef inline bint hot_id_ok(str s) noexcept:
    # kernel._validate.ID_PATTERN: 1-200 characters of the id alphabet.
    cdef Py_ssize_t i, n = PyUnicode_GET_LENGTH(s)
    cdef Py_UCS4 c
    if n < 1 or n > 200:
        return False
    for i in range(n):
        c = s[i]
        if c > 127 or not RP_ID[c]:
            return False
    return True


cdef inline int hot_seconds(object v, bint allow_zero, tick_t* out) except -1:
    # kernel._validate.seconds_to_ns for the exact types int and float (1 = ok, 0 = let
    # the general path decide and raise).  round() of a float is round-half-even, as
    # nearbyint is in the default rounding mode; an int is exact.
    cdef double d
    cdef int overflow = 0
    cdef long long i
    if PyFloat_CheckExact(v):
        d = PyFloat_AS_DOUBLE(v)
        if not isfinite(d) or d < 0 or (d == 0 and not allow_zero) or d > HOT_MAX_DURATION_S:
            return 0
        out[0] = <tick_t>nearbyint(d * HOT_NS)
        return 1
    if PyLong_CheckExact(v):
        i = PyLong_AsLongLongAndOverflow(v, &overflow)
        if overflow or i < 0 or (i == 0 and not allow_zero) or i > <long long>HOT_MAX_DURATION_S:
            return 0
        out[0] = i * 1_000_000_000
        return 1
    return 0


cdef object hot_submit(Scheduler self, object queue, object payload, object id_,
                       object priority, object depends_on, object max_attempts,
                       object timeout, object delay, tick_t now, bytes extra, object meta):
    # The submit of a task with no pinned agent, backoff, name, not_before or parent.
    # Returns its id, or None when anything needs the general path.  `extra` holds the
    # encoded tags / key fields (b"" when none) and `meta` the task's metadata tuple (None:
    # built here from depends_on).
    cdef object v, hv
    cdef PyObject* ref
    cdef int32_t q, hd
    cdef int64_t prio, attempts
    cdef tick_t timeout_ns, due = 0, dl
    cdef int overflow = 0
    cdef str tid, qname
    cdef list deps
    cdef handle_t dh[HOT_MAX_DEPS]
    cdef Py_ssize_t nd, i, j, size
    cdef bytes body, rec
    cdef char stack[ENC_STACK]
    cdef char* buf
    cdef handle_t h
    if now < self.last_ts:
        now = self.last_ts
    if type(queue) is not str:
        return None
    ref = PyDict_GetItem(self.h_queues, queue)
    if ref == NULL:
        return None
    q = <int32_t>(<object>ref)
    if not PyLong_Check(priority) or type(priority) is bool:
        return None
    prio = PyLong_AsLongLongAndOverflow(priority, &overflow)
    if overflow or prio < 0 or prio > PRIO_MAX or not PyLong_CheckExact(max_attempts):
        return None
    attempts = PyLong_AsLongLongAndOverflow(max_attempts, &overflow)
    if overflow or attempts < 1 or attempts > 1_000_000:
        return None
    if not hot_seconds(timeout, False, &timeout_ns):
        return None
    if delay is not None:
        if not hot_seconds(delay, True, &dl):
            return None
        due = now + dl
    if id_ is None:
        # kernel._submit.new_id: "t-<n>" (PyUnicode_FromFormat costs ~1,800 instructions)
        stack[0] = c't'
        stack[1] = c'-'
        tid = PyUnicode_DecodeASCII(stack, enc_i64(stack + 2, self.n_tasks) - stack, NULL)
    elif type(id_) is str and hot_id_ok(<str>id_):
        tid = <str>id_
    else:
        return None
    # Dependencies: known, not FAILED or CANCELLED, not the task itself, none twice.
    if type(depends_on) is list:
        deps = <list>depends_on
    elif type(depends_on) is tuple:
        deps = list(depends_on)
    else:
        return None
    nd = len(deps)
    if nd > HOT_MAX_DEPS:
        return None
    size = ENC_FIXED + enc_len(tid) + PyBytes_GET_SIZE(extra)
    for i in range(nd):
        v = <object>PyList_GET_ITEM(deps, i)
        if type(v) is not str:
            return None
        ref = PyDict_GetItem(self.h_tasks, v)
        if ref == NULL:
            return None
        hd = <int32_t>(<object>ref)
        if self.tasks[hd].status == ST_FAILED or self.tasks[hd].status == ST_CANCELLED:
            return None
        for j in range(i):
            if dh[j] == hd:
                return None
        dh[i] = hd
        size += enc_len(<str>v) + 3
    # The payload, encoded once: None and machine ints here, anything else by events.dumps
    # (which raises InvalidSpecError for what JSON cannot hold; nothing has changed yet).
    if payload is None:
        body = b"null"
    elif PyLong_CheckExact(payload):
        PyLong_AsLongLongAndOverflow(payload, &overflow)
        if overflow:
            body = self.h_dumps(payload)
        else:
            body = PyBytes_FromStringAndSize(
                stack, enc_i64(stack, PyLong_AsLongLongAndOverflow(payload, &overflow)) - stack)
    else:
        body = self.h_dumps(payload)
    if PyBytes_GET_SIZE(body) > self.h_max_payload:
        return None
    qname = <str>PyList_GET_ITEM(self.queue_names, q)
    size += enc_len(qname) + PyBytes_GET_SIZE(body)
    buf = hot_buf(stack, size)
    rec = hot_bytes(buf, enc_submitted(buf, now, tid, qname, prio, body, deps, attempts,
                                       timeout_ns, due, extra), stack)
    if PyBytes_GET_SIZE(rec) > self.h_max_record:    # the log would refuse it
        return None
    if meta is None:
        meta = self.h_no_meta if nd == 0 else (None, None, None, None, tuple(deps))
    # The id's last check and its entry in one dict probe (the index is the largest table
    # a submit touches): taken, and the general path raises DuplicateTaskError.
    hv = <object>self.n_tasks
    if PyDict_SetDefault(self.h_tasks, tid, hv) != <PyObject*>hv:
        return None
    # Applied: the task, its dependency edges, then READY / waiting; boundary tables.
    try:
        h = self._add(tid, q, <int>prio, <int32_t>attempts, timeout_ns, -1, due,
                      self.h_policy, nd, now)
    except BaseException:
        del self.h_tasks[tid]      # nothing else changed (a MemoryError growing the table)
        raise
    for i in range(nd):
        dag_link(&self.edges, &self.n_edges, &self.cap_edges, self.tasks, dh[i], h)
        if self.tasks[dh[i]].status != ST_COMPLETED:
            self.tasks[h].unmet += 1
    if self.tasks[h].unmet == 0:
        self._wait_or_ready(h, now)
    self.h_payloads.append(body)
    self.h_results.append(None)
    self.h_errors.append(None)
    self.h_meta.append(meta)
    hot_append(self, rec, now)
    return tid


def encode_record(str t, tuple f):
    """The C encoder of hot record type `t` on fields `f` (ts first, then the type's fields
    in kernel.events' order; payload and result as JSON bytes; submitted ends with the
    encoded optional fields): what tests hold byte-equal to kernel.events.encode."""
    cdef char stack[ENC_STACK]
    cdef Py_ssize_t size = ENC_FIXED + sum([len(x) + 3 for x in f if type(x) in (str, bytes)])
    cdef char* buf
    if t == "submitted":
        size += sum([len(d) + 3 for d in f[5]])
    buf = hot_buf(stack, size)
    if t == "claimed":
        return hot_bytes(buf, enc_claimed(buf, f[0], f[1], f[2], f[3], f[4], f[5]), stack)
    if t == "completed":
        return hot_bytes(buf, enc_completed(buf, f[0], f[1], f[2], f[3]), stack)
    if t == "heartbeat":
        return hot_bytes(buf, enc_heartbeat(buf, f[0], f[1], f[2], f[3]), stack)
    if t == "failed":
        return hot_bytes(buf, enc_failed(buf, f[0], f[1], f[2], f[3], f[4],
                                         -1 if f[5] is None else f[5]), stack)
    if t == "cancelled":
        return hot_bytes(buf, enc_cancelled(buf, f[0], f[1], f[2]), stack)
    if t == "released":
        return hot_bytes(buf, enc_released(buf, f[0], f[1], f[2]), stack)
    if t == "submitted":
        return hot_bytes(buf, enc_submitted(buf, f[0], f[1], f[2], f[3], f[4], list(f[5]),
                                            f[6], f[7], f[8], f[9]), stack)
    if buf != stack:
        PyMem_Free(buf)
    raise ValueError(f"no C encoder for record type {t!r}")
