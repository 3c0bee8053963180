# The scheduler core: the only compilation unit of eskernel._core.  Components are included
# in dependency order; Scheduler is the one Python-visible class that owns their arrays.
#
# Every state change has exactly one apply_* method, used by live operation and by replay
# alike.  Live, the kernel's general path appends the event and then applies it; the hot
# calls (hot.pxi: submit, claim, complete, heartbeat, release, a retried fail) and the
# batch calls decide and apply here first, encode the event, and append it (the batch
# calls hand it to the kernel); if that append fails the kernel refuses every later call
# (the state is then ahead of the log; reopening replays the log).  The live-only methods
# (choose, decide) never change state.  Times are int64 ns passed in by the caller.
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_ITEM
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from cpython.ref cimport PyObject
from cpython.dict cimport PyDict_GetItem
from libc.math cimport pow
cimport cython

from eskernel.errors import KernelInternalError

include "debug.pxi"
include "common.pxi"
include "arrays.pxi"
include "heap.pxi"
include "timers.pxi"
include "dag.pxi"
include "leases.pxi"
include "pools.pxi"
include "replay.pxi"
include "encode.pxi"
include "hot.pxi"

DEBUG_BUILD = bool(ESKERNEL_DEBUG)


@cython.freelist(64)
@cython.no_gc      # holds only ints, str and bytes: it can be in no reference cycle
cdef class Lease:
    """A granted lease: the right to run one attempt of a task until ``expires_at``.

    The lease id is monotonic across the kernel and doubles as a fencing token: once a
    lease expires, is released or its task is cancelled, completing with it is rejected.
    """
    cdef readonly int64_t lease_id
    cdef readonly str task_id
    cdef readonly str agent_id
    cdef readonly int attempt
    cdef readonly int64_t expires_ns
    cdef readonly int32_t _task
    cdef readonly int64_t _issuer    # Scheduler.ident of the core that granted it
    cdef readonly bytes _event

    @property
    def expires_at(self):
        """Expiry time in seconds (float), on the kernel's clock."""
        cdef object ns = self.expires_ns
        return ns / 1_000_000_000    # exact int / int, like every other time the kernel shows

    def __repr__(self):
        return (f"Lease(lease_id={self.lease_id}, task_id={self.task_id!r}, "
                f"agent_id={self.agent_id!r}, attempt={self.attempt}, "
                f"expires_at={self.expires_at!r})")

    def __eq__(self, other):
        if not isinstance(other, Lease):
            return NotImplemented
        return (<Lease>other).lease_id == self.lease_id and (<Lease>other).task_id == self.task_id

    def __hash__(self):
        return hash((self.lease_id, self.task_id))


cdef class Scheduler:
    """Priority heaps, DAG readiness counters, lease table and timers over integer handles."""
    cdef Task* tasks
    cdef readonly Py_ssize_t n_tasks
    cdef Py_ssize_t cap_tasks
    cdef Edge* edges
    cdef Py_ssize_t n_edges, cap_edges
    cdef Queue* queues
    cdef Py_ssize_t n_queues, cap_queues
    cdef Agent* agents
    cdef Py_ssize_t n_agents, cap_agents
    cdef int32_t* caps
    cdef ReadyHeap* pinned
    cdef Py_ssize_t n_caps, cap_caps, cap_pinned
    cdef Policy* policies
    cdef Py_ssize_t n_policies, cap_policies
    cdef LeaseSlot* slots
    cdef Py_ssize_t n_slots, cap_slots
    cdef int32_t free_slot
    cdef TimeHeap timers
    cdef TimeHeap expiry
    cdef readonly int64_t next_lease_id
    cdef public int64_t last_ts      # replay: the time of the last event applied
    cdef readonly int64_t n_live_leases
    cdef int64_t st_counts[7]
    cdef readonly list task_ids
    cdef readonly list queue_names
    cdef readonly list agent_names
    cdef public int64_t ident        # the identity of the log it serves; leases carry it
    cdef public int64_t applied      # events applied (live and replay)
    cdef public bint append_failed   # a hot call's append raised (see hot.pxi)
    cdef public bint epoch_due       # claims wait for an epoch record (see hot.pxi)
    cdef object h_append, h_dumps    # bind_hot: the log's append, kernel.events.dumps
    cdef object h_append_claim       # the append of claimed records (may not wait for a sync)
    cdef object h_append_many        # the append of a batch (cancel)
    cdef public bint blocked         # the kernel is closed, failed or read-only (hot_calls.pxi)
    cdef object e_clock, e_class, e_ref, e_snapshot
    cdef dict e_agents
    cdef dict h_tasks, h_queues
    cdef list h_payloads, h_results, h_errors, h_meta
    cdef tuple h_no_meta
    cdef int32_t h_policy
    cdef Py_ssize_t h_max_payload, h_max_record

    def __cinit__(self):
        global hot_idents
        hot_idents += 1
        self.ident = hot_idents
        self.free_slot = -1
        self.next_lease_id = 1
        memset(&self.timers, 0, sizeof(TimeHeap))
        memset(&self.expiry, 0, sizeof(TimeHeap))
        memset(self.st_counts, 0, sizeof(self.st_counts))
        self.task_ids = []
        self.queue_names = []
        self.agent_names = []

    def __dealloc__(self):
        cdef Py_ssize_t i
        for i in range(self.n_queues):
            PyMem_Free(self.queues[i].heap.keys)
        for i in range(self.n_caps):
            PyMem_Free(self.pinned[i].keys)
        PyMem_Free(self.tasks); PyMem_Free(self.edges); PyMem_Free(self.queues)
        PyMem_Free(self.agents); PyMem_Free(self.caps); PyMem_Free(self.pinned)
        PyMem_Free(self.policies); PyMem_Free(self.slots)
        PyMem_Free(self.timers.e); PyMem_Free(self.timers.pos)
        PyMem_Free(self.expiry.e); PyMem_Free(self.expiry.pos)

    # --- queues, agents and backoff policies ---

    def add_queue(self, str name, int max_concurrent, bint paused):
        """Apply queue_declared for a new queue; returns its handle."""
        arr_reserve(<void**>&self.queues, &self.cap_queues, self.n_queues + 1, sizeof(Queue))
        cdef Queue* q = &self.queues[self.n_queues]
        memset(q, 0, sizeof(Queue))
        q.max_concurrent = max_concurrent
        q.paused = paused
        self.queue_names.append(name)
        self.n_queues += 1
        return self.n_queues - 1

    def set_queue(self, int q, int max_concurrent, bint paused):
        """Apply a change of a queue's limit or paused flag."""
        self.queues[q].max_concurrent = max_concurrent
        self.queues[q].paused = paused

    def queue_info(self, int q):
        """(max_concurrent, paused, running, ready) of queue q."""
        cdef Queue* Q = &self.queues[q]
        return Q.max_concurrent, bool(Q.paused), Q.running, Q.ready

    def add_agent(self, str name, int capacity, list caps):
        """Apply agent_registered for a new agent serving queue handles `caps`."""
        cdef Py_ssize_t i, k = len(caps)
        arr_reserve(<void**>&self.agents, &self.cap_agents, self.n_agents + 1, sizeof(Agent))
        arr_reserve(<void**>&self.caps, &self.cap_caps, self.n_caps + k, sizeof(int32_t))
        arr_reserve(<void**>&self.pinned, &self.cap_pinned, self.n_caps + k, sizeof(ReadyHeap))
        cdef Agent* a = &self.agents[self.n_agents]
        a.capacity = capacity
        a.active = 0
        a.online = 1
        a.caps_off = <int32_t>self.n_caps
        a.n_caps = <int32_t>k
        for i in range(k):
            self.caps[self.n_caps + i] = <int32_t>caps[i]
            memset(&self.pinned[self.n_caps + i], 0, sizeof(ReadyHeap))
        self.n_caps += k
        self.agent_names.append(name)
        self.n_agents += 1
        return self.n_agents - 1

    def set_agent(self, int a, int capacity, bint online):
        """Apply a change of an agent's capacity or online flag."""
        self.agents[a].capacity = capacity
        self.agents[a].online = online

    def agent_info(self, int a):
        """(capacity, active, online, [queue handles]) of agent a."""
        cdef Agent* A = &self.agents[a]
        return (A.capacity, A.active, bool(A.online),
                [self.caps[A.caps_off + i] for i in range(A.n_caps)])

    def agent_serves(self, int a, int q):
        """True when agent a serves queue q."""
        return self._cap_index(a, q) >= 0

    cdef inline int32_t _cap_index(self, int32_t a, int32_t q) noexcept:
        cdef Agent* A = &self.agents[a]
        cdef int32_t i
        for i in range(A.n_caps):
            if self.caps[A.caps_off + i] == q:
                return i
        return -1

    def add_policy(self, tick_t initial, double factor, tick_t maximum, double jitter):
        """Intern a backoff policy; returns its index."""
        arr_reserve(<void**>&self.policies, &self.cap_policies, self.n_policies + 1,
                    sizeof(Policy))
        cdef Policy* p = &self.policies[self.n_policies]
        p.initial = initial
        p.factor = factor
        p.maximum = maximum
        p.jitter = jitter
        self.n_policies += 1
        return self.n_policies - 1

    # --- task lifecycle ---
    #
    # Live-only methods decide (choose, retry_due, next_expired, next_due, cancel_closure)
    # and never change state; the others are the transitions, shared with replay.
    # claim/complete/fail/release/heartbeat check the lease first and change nothing when
    # it is stale (they return -1).

    cdef inline int _set(self, Task* t, uint8_t to) except -1:
        self.st_counts[t.status] -= 1
        status_set(t, to)
        self.st_counts[to] += 1
        return 0

    cdef inline ReadyHeap* _heap_of(self, Task* t) noexcept:
        cdef int32_t i
        if t.pinned >= 0:
            i = self._cap_index(t.pinned, t.queue)
            return &self.pinned[self.agents[t.pinned].caps_off + i]
        return &self.queues[t.queue].heap

    cdef int _make_ready(self, handle_t h) except -1:
        cdef Task* t = &self.tasks[h]
        self._set(t, ST_READY)
        heap_push(self._heap_of(t), self.tasks, h)
        self.queues[t.queue].ready += 1
        return 0

    cdef int _wait_or_ready(self, handle_t h, tick_t now) except -1:
        # A task whose dependencies are met: READY now, or into the timer heap until due.
        cdef Task* t = &self.tasks[h]
        if t.due > now:
            time_push(&self.timers, h, t.due, h)
        else:
            self._make_ready(h)
        return 0

    def add_task(self, str task_id, int queue, int prio, int max_attempts, tick_t timeout,
                 int pinned, tick_t not_before, int policy, list deps, tick_t now):
        """Apply ``submitted``; returns the new handle.  deps are existing handles."""
        cdef handle_t h = self._add(task_id, queue, prio, max_attempts, timeout, pinned,
                                    not_before, policy, len(deps), now)
        cdef handle_t d
        for d in deps:
            dag_link(&self.edges, &self.n_edges, &self.cap_edges, self.tasks, d, h)
            if self.tasks[d].status != ST_COMPLETED:
                self.tasks[h].unmet += 1
        if self.tasks[h].unmet == 0:
            self._wait_or_ready(h, now)
        return h

    def submit_simple(self, str task_id, int queue, int prio, int max_attempts,
                      tick_t timeout, int policy, tick_t now, bytes payload):
        """Apply the submission of a task with no dependencies, delay or optional fields,
        and return its `submitted` record (byte-identical to kernel.events.encode)."""
        cdef char stack[ENC_STACK]
        cdef char* buf = hot_buf(stack, ENC_FIXED + enc_len(task_id) + PyBytes_GET_SIZE(payload)
                                 + enc_len(<str>PyList_GET_ITEM(self.queue_names, queue)))
        cdef bytes rec = hot_bytes(buf, enc_submitted(
            buf, now, task_id, <str>PyList_GET_ITEM(self.queue_names, queue), prio, payload,
            [], max_attempts, timeout, 0, b""), stack)
        cdef handle_t h = self._add(task_id, queue, prio, max_attempts, timeout, -1, 0, policy,
                                    0, now)
        self._wait_or_ready(h, now)
        return rec

    cdef handle_t _add(self, str task_id, int32_t queue, int prio, int32_t max_attempts,
                       tick_t timeout, int32_t pinned, tick_t not_before, int32_t policy,
                       Py_ssize_t n_deps, tick_t now) except -1:
        # The new task, PENDING; the caller links its dependencies and readies it.
        cdef handle_t h = <handle_t>self.n_tasks
        if prio < 0 or prio > PRIO_MAX:      # the ready-heap key and stats index by it
            raise KernelInternalError(f"priority {prio} is outside [0, {PRIO_MAX}]")
        arr_reserve(<void**>&self.tasks, &self.cap_tasks, self.n_tasks + 1, sizeof(Task))
        cdef Task* t = &self.tasks[h]
        memset(t, 0, sizeof(Task))
        t.due = not_before
        t.timeout = timeout
        t.submitted = now
        t.queue = queue
        t.pinned = pinned
        t.heap_pos = -1
        t.lease_slot = -1
        t.last_agent = -1
        t.max_attempts = max_attempts
        t.dependents = -1
        t.n_deps = <int32_t>n_deps
        t.policy = policy
        t.prio = <int16_t>prio
        t.status = ST_PENDING
        self.st_counts[ST_PENDING] += 1
        self.task_ids.append(task_id)
        self.n_tasks += 1
        time_track(&self.timers, h)
        return h

    cdef handle_t _choose(self, int32_t a) noexcept:
        # Best READY task for agent a: the lowest packed key among the heads of the shared
        # and pinned heaps of the queues it serves that are not paused and below their
        # limit, else a CHOOSE_* code (common.pxi).
        cdef Agent* A = &self.agents[a]
        cdef Queue* Q
        cdef ReadyHeap* P
        cdef uint64_t best = <uint64_t>-1
        cdef int32_t i
        if not A.online:
            return CHOOSE_OFFLINE
        if A.active >= A.capacity:
            return CHOOSE_AT_CAPACITY
        for i in range(A.n_caps):
            Q = &self.queues[self.caps[A.caps_off + i]]
            if Q.ready == 0 or Q.paused or (Q.max_concurrent > 0 and Q.running >= Q.max_concurrent):
                continue
            if Q.heap.n and Q.heap.keys[0] < best:
                best = Q.heap.keys[0]
            P = &self.pinned[A.caps_off + i]
            if P.n and P.keys[0] < best:
                best = P.keys[0]
        if best == <uint64_t>-1:
            return CHOOSE_NONE
        return <handle_t>(best & HANDLE_MASK)

    def choose(self, int a):
        """The handle claim(a) would take, or a negative code; changes nothing."""
        return self._choose(a)

    def claim_many(self, int a, int n, tick_t now):
        """Up to n claims for agent a, in the order single claims would give them."""
        cdef list out = []
        cdef handle_t h
        while len(out) < n:
            h = self._choose(a)
            if h < 0:
                break
            out.append(self._grant(h, a, now))
        return out

    cdef Lease _grant(self, handle_t h, int32_t a, tick_t now):
        cdef int64_t lid = self.next_lease_id
        cdef Task* t = &self.tasks[h]
        cdef tick_t expires = now + t.timeout
        cdef Lease lease
        cdef char buf[ENC_STACK]
        self._apply_claim(h, lid, a, now, expires)
        t = &self.tasks[h]
        lease = Lease.__new__(Lease)
        lease.lease_id = lid
        lease.task_id = <str>PyList_GET_ITEM(self.task_ids, h)
        lease.agent_id = <str>PyList_GET_ITEM(self.agent_names, a)
        lease.attempt = t.attempts
        lease.expires_ns = expires
        lease._task = h
        lease._issuer = self.ident
        # ids are at most 200 characters each: the record fits ENC_STACK
        lease._event = PyBytes_FromStringAndSize(buf, enc_claimed(
            buf, now, lease.task_id, lid, lease.agent_id, t.attempts, expires) - buf)
        return lease

    def apply_claim(self, int h, int64_t lid, int a, tick_t now, tick_t expires):
        """Apply ``claimed`` (replay)."""
        if h < 0 or h >= self.n_tasks or self.tasks[h].status != ST_READY:
            raise KernelInternalError(f"claimed event for handle {h} whose task is not READY")
        if lid != self.next_lease_id:
            raise KernelInternalError(f"claimed event has lease {lid}, expected {self.next_lease_id}")
        self._apply_claim(h, lid, a, now, expires)

    cdef int _apply_claim(self, handle_t h, int64_t lid, int32_t a, tick_t now,
                          tick_t expires) except -1:
        cdef Task* t = &self.tasks[h]
        cdef int32_t s
        cdef LeaseSlot* sl
        if ESKERNEL_DEBUG:
            if self.agents[a].active >= self.agents[a].capacity:
                raise KernelInternalError(f"claim for agent {a} beyond its capacity")
        heap_remove(self._heap_of(t), self.tasks, t.heap_pos)
        self.queues[t.queue].ready -= 1
        self._set(t, ST_RUNNING)
        s = lease_alloc(&self.slots, &self.n_slots, &self.cap_slots, &self.free_slot)
        t.attempts += 1
        sl = &self.slots[s]
        sl.lease_id = lid
        sl.expires = expires
        sl.task = h
        sl.agent = a
        sl.attempt = t.attempts
        time_push(&self.expiry, s, expires, lid)
        t.lease_slot = s
        t.started = now
        t.last_agent = a
        self.queues[t.queue].running += 1
        self.agents[a].active += 1
        self.next_lease_id = lid + 1
        self.n_live_leases += 1
        return 0

    cdef inline int32_t _slot_of(self, handle_t h, int64_t lid) noexcept:
        cdef int32_t s
        if h < 0 or h >= self.n_tasks:
            return -1
        s = self.tasks[h].lease_slot
        if s < 0 or self.slots[s].lease_id != lid:
            return -1
        return s

    def lease_current(self, int h, int64_t lid):
        """True when lease lid is task h's live lease."""
        return self._slot_of(h, lid) >= 0

    def live_lease(self, int h, int64_t lid):
        """The Lease object of task h's live lease lid (its event empty: it was logged when
        granted), or None when lid is not h's live lease.  A server rebuilds the leases its
        clients hold after a restart with it; it changes nothing."""
        cdef int32_t s
        cdef Lease lease
        if h < 0 or h >= self.n_tasks:
            return None
        s = self._slot_of(h, lid)
        if s < 0:
            return None
        lease = Lease.__new__(Lease)
        lease.lease_id = lid
        lease.task_id = <str>PyList_GET_ITEM(self.task_ids, h)
        lease.agent_id = <str>PyList_GET_ITEM(self.agent_names, self.slots[s].agent)
        lease.attempt = self.slots[s].attempt
        lease.expires_ns = self.slots[s].expires
        lease._issuer = self.ident
        lease._task = h
        lease._event = b""
        return lease

    cdef int _drop_lease(self, Task* t) except -1:
        cdef int32_t s = t.lease_slot
        if ESKERNEL_DEBUG:
            if s < 0 or self.slots[s].lease_id == 0 or self.agents[self.slots[s].agent].active <= 0:
                raise KernelInternalError(f"dropping lease slot {s} that is not live")
        time_remove(&self.expiry, s)
        self.queues[t.queue].running -= 1
        self.agents[self.slots[s].agent].active -= 1
        lease_free(self.slots, s, &self.free_slot)
        t.lease_slot = -1
        self.n_live_leases -= 1
        return 0

    def apply_heartbeat(self, int h, int64_t lid, tick_t expires):
        """Apply a heartbeat: lease lid now expires at `expires`; -1 when it is not current."""
        cdef int32_t s = self._slot_of(h, lid)
        if s < 0:
            return -1
        self.slots[s].expires = expires
        time_update(&self.expiry, s, expires)
        return expires

    def complete(self, int h, int64_t lid, tick_t now):
        """Apply ``completed``; returns 0, or -1 (nothing changed) when the lease is stale."""
        if self._slot_of(h, lid) < 0:
            return -1
        return self._complete(h, now)

    def complete_many(self, list leases, list bodies, tick_t now, list results):
        """Apply ``completed`` for every lease (results[h] = its JSON body) and return their
        records; or, changing nothing, the index of the first lease that is not a current,
        unexpired Lease of this scheduler (the caller raises).  Leases must be distinct."""
        return hot_complete_many(self, leases, bodies, now, results)

    def apply_epoch(self, int64_t first):
        """Apply epoch: lease ids continue from `first` (>= next_lease_id)."""
        if first < self.next_lease_id:
            raise KernelInternalError(f"epoch at lease {first} below the next lease id "
                                      f"{self.next_lease_id}")
        self.next_lease_id = first

    def lease_code(self, object lease, tick_t now):
        """0 when `lease` is a current, unexpired Lease of this scheduler, else the refusal
        code: -1 not a Lease, -2 issued elsewhere, -3 stale, -4 expired at `now`."""
        cdef int32_t s = hot_slot(self, lease, now, True)
        return s if s < 0 else 0

    # --- the hot calls (hot.pxi) ---

    def bind_hot(self, append, append_claim, append_many, dumps, dict tasks, dict queues, dict agents,
                 list payloads, list results, list errors, list meta, tuple no_meta,
                 int policy, Py_ssize_t max_payload, Py_ssize_t max_record):
        """Attach the boundary tables and the log's append the hot calls use."""
        self.h_append, self.h_append_claim, self.h_dumps = append, append_claim, dumps
        self.h_append_many = append_many
        self.h_tasks, self.h_queues = tasks, queues
        self.h_payloads, self.h_results, self.h_errors, self.h_meta = payloads, results, errors, meta
        self.h_no_meta, self.h_policy, self.h_max_payload = no_meta, policy, max_payload
        self.h_max_record = max_record
        self.e_agents = agents

    def submit_hot(self, queue, payload, id, priority, depends_on, max_attempts, timeout,
                   delay, tick_t now, bytes extra, meta):
        """Submit in one call (see hot.pxi); the task id, or None: take the general path."""
        return hot_submit(self, queue, payload, id, priority, depends_on, max_attempts,
                          timeout, delay, now, extra, meta)

    def claim_hot(self, int a, tick_t now):
        """Claim for agent a and append; a Lease, None, or -2 / -3 (offline / at capacity) /
        -5 (an epoch record must be written first: apply_epoch)."""
        return hot_claim(self, a, now)

    def complete_hot(self, lease, bytes body, tick_t now):
        """Complete and append; None, or a refusal code (see lease_code)."""
        return hot_complete(self, lease, body, now)

    def heartbeat_hot(self, lease, tick_t now):
        """Renew and append; the new expiry (ns), or a refusal code (see lease_code)."""
        return hot_heartbeat(self, lease, now)

    def fail_hot(self, lease, bytes error_json, str error, bint retryable, double u, tick_t now):
        """Fail a retried attempt and append; None, a refusal code (see lease_code) or -6:
        it is dead-lettered (the caller's general path cascades)."""
        return hot_fail(self, lease, error_json, error, retryable, u, now)

    def cancel_hot(self, task_id, tick_t now):
        """Cancel a task and its unfinished dependents and append; their ids, or None."""
        return hot_cancel(self, task_id, now)

    def release_hot(self, lease, tick_t now):
        """Release and append; None, or a refusal code -1 / -2 / -3 (see lease_code)."""
        return hot_release(self, lease, now)

    cdef int _complete(self, handle_t h, tick_t now) except -1:
        cdef Task* t = &self.tasks[h]
        cdef int32_t e
        cdef handle_t d
        self._drop_lease(t)
        self._set(t, ST_COMPLETED)
        t.finished = now
        e = t.dependents
        while e >= 0:
            d = self.edges[e].target
            if self.tasks[d].status == ST_PENDING:
                self.tasks[d].unmet -= 1
                if self.tasks[d].unmet == 0:
                    self._wait_or_ready(d, now)
            e = self.edges[e].next
        return 0

    def retry_due(self, int h, tick_t now, bint retryable, double u):
        """Decide what a failed attempt of task h leads to: the due time of its retry
        (>= now), or -1 when it is dead-lettered.  u in [0, 1) draws the jitter."""
        return hot_retry_due(self, h, now, retryable, u)

    def fail(self, int h, int64_t lid, tick_t now, tick_t due):
        """Apply ``failed`` / ``expired`` with the decided due time (-1: dead-letter).
        Returns 0, or -1 (nothing changed) when the lease is stale."""
        if self._slot_of(h, lid) < 0:
            return -1
        cdef Task* t = &self.tasks[h]
        self._drop_lease(t)
        if due < 0:
            self._set(t, ST_FAILED)
            t.flags |= FLAG_DEAD
            t.finished = now
        elif due <= now:
            self._make_ready(h)
        else:
            self._set(t, ST_RETRYING)
            t.due = due
            time_push(&self.timers, h, due, h)
        return 0

    def release(self, int h, int64_t lid, tick_t now):
        """Apply task_released: back to READY without using an attempt; -1 when stale."""
        if self._slot_of(h, lid) < 0:
            return -1
        cdef Task* t = &self.tasks[h]
        self._drop_lease(t)
        t.attempts -= 1
        self._make_ready(h)
        return 0

    def next_expired(self, tick_t now):
        """(handle, lease id) of the earliest lease expired at `now`, or None."""
        if self.expiry.n == 0 or self.expiry.e[0].at > now:
            return None
        return self.slots[self.expiry.e[0].id].task, self.expiry.e[0].tie

    def next_due(self, tick_t now):
        """Handle of the earliest task whose delay or backoff is due at `now`, or -1."""
        if self.timers.n == 0 or self.timers.e[0].at > now:
            return -1
        return self.timers.e[0].id

    def apply_ready(self, int h, tick_t now):
        """Apply task_ready: a delayed or retrying task whose time has come."""
        cdef Task* t = &self.tasks[h]
        if self.timers.pos[h] < 0 or (t.status != ST_PENDING and t.status != ST_RETRYING):
            raise KernelInternalError(f"ready event for handle {h} that is not waiting on a timer")
        time_remove(&self.timers, h)
        self._make_ready(h)

    def cancel_closure(self, int h):
        """Non-terminal dependents of h, transitively, in breadth-first order (h excluded)."""
        cdef list out = []
        cdef list frontier = [h]
        cdef list nxt
        cdef int32_t e
        cdef handle_t d
        cdef set seen = set()
        while frontier:
            nxt = []
            for x in frontier:
                e = self.tasks[<handle_t>x].dependents
                while e >= 0:
                    d = self.edges[e].target
                    if d not in seen and not status_terminal(self.tasks[d].status):
                        seen.add(d)
                        out.append(d)
                        nxt.append(d)
                    e = self.edges[e].next
            frontier = nxt
        return out

    def cancel(self, int h, tick_t now, bint upstream):
        """Apply ``cancelled`` to one task (revoking its lease if it is RUNNING)."""
        cdef Task* t = &self.tasks[h]
        if t.status == ST_RUNNING:
            self._drop_lease(t)
        elif t.status == ST_READY:
            heap_remove(self._heap_of(t), self.tasks, t.heap_pos)
            self.queues[t.queue].ready -= 1
        elif self.timers.pos[h] >= 0:
            time_remove(&self.timers, h)
        self._set(t, ST_CANCELLED)
        if upstream:
            t.flags |= FLAG_UPSTREAM
        t.finished = now

    def requeue(self, int h, tick_t now):
        """Apply task_requeued: a FAILED task back to READY with a fresh set of attempts."""
        cdef Task* t = &self.tasks[h]
        t.attempts = 0
        t.flags = 0
        t.finished = 0
        self._make_ready(h)

    # --- replay fast path (see replay.pxi) ---

    def replay_record(self, bytes rec, tuple ctx):
        """Apply a record the hot path wrote in a fixed layout (claimed, completed,
        heartbeat, plain submitted), parsed in C; returns 1 when applied, 0 when the caller
        must decode and apply it in full.  ctx = (tasks, agents, queues, payloads, results,
        errors, meta, no_meta, default policy): the boundary tables, from
        KernelState.replay_context()."""
        if sched_replay_record(self, rec, ctx[0], ctx[1], ctx[4]):
            return 1
        return sched_replay_submitted(self, rec, ctx[0], ctx[2], ctx[3], ctx[4], ctx[5],
                                      ctx[6], ctx[7], ctx[8])

    # --- read-only views ---

    def task_row(self, int h):
        """The TASK_ROW_FIELDS of task h, in that order (the status as its name)."""
        cdef Task* t = &self.tasks[h]
        cdef int64_t lid = 0
        cdef tick_t exp = 0
        if t.lease_slot >= 0:
            lid = self.slots[t.lease_slot].lease_id
            exp = self.slots[t.lease_slot].expires
        return (STATUS_NAMES[t.status], t.attempts, t.max_attempts, t.queue, t.prio, t.pinned,
                t.last_agent, lid, exp, t.submitted, t.started, t.finished, t.due, t.flags,
                t.unmet)

    def timeout_of(self, int h):
        """Lease duration (ns) granted to each attempt of task h."""
        return self.tasks[h].timeout

    def status_of(self, int h):
        """Status code (index into STATUS_NAMES) of task h."""
        return self.tasks[h].status

    def handles(self, int status=-1, int queue=-1, int agent=-1):
        """Handles in submission order, filtered by status code, queue and last agent."""
        cdef list out = []
        cdef Py_ssize_t h
        cdef Task* t
        for h in range(self.n_tasks):
            t = &self.tasks[h]
            if status >= 0 and t.status != status:
                continue
            if queue >= 0 and t.queue != queue:
                continue
            if agent >= 0 and t.last_agent != agent:
                continue
            out.append(h)
        return out

    def status_counts(self):
        """Number of tasks per status code."""
        return [self.st_counts[i] for i in range(N_STATUS)]

    def status_breakdown(self):
        """Tasks per status code by queue and by priority, in one pass:
        ``(per_queue, per_priority)`` with ``per_queue[q][status]`` and
        ``per_priority = {priority: [count per status]}`` (priorities that have tasks)."""
        cdef Py_ssize_t h, q, p, k
        cdef Task* t
        cdef size_t qbytes = (self.n_queues + 1) * N_STATUS * sizeof(int64_t)
        cdef size_t pbytes = (PRIO_MAX + 1) * N_STATUS * sizeof(int64_t)
        cdef int64_t* qc = <int64_t*>PyMem_Malloc(qbytes)
        cdef int64_t* pc = <int64_t*>PyMem_Malloc(pbytes)
        if qc == NULL or pc == NULL:
            PyMem_Free(qc)
            PyMem_Free(pc)
            raise MemoryError()
        memset(qc, 0, qbytes)
        memset(pc, 0, pbytes)
        try:
            for h in range(self.n_tasks):
                t = &self.tasks[h]
                qc[t.queue * N_STATUS + t.status] += 1
                pc[t.prio * N_STATUS + t.status] += 1
            per_queue = [[qc[q * N_STATUS + k] for k in range(N_STATUS)]
                         for q in range(self.n_queues)]
            per_prio = {}
            for p in range(PRIO_MAX + 1):
                row = [pc[p * N_STATUS + k] for k in range(N_STATUS)]
                if any(row):
                    per_prio[p] = row
            return per_queue, per_prio
        finally:
            PyMem_Free(qc)
            PyMem_Free(pc)

    def leases_of(self, int a):
        """(lease id, handle, attempt, expires) of the live leases held by agent a."""
        cdef Py_ssize_t s
        return [(self.slots[s].lease_id, self.slots[s].task, self.slots[s].attempt,
                 self.slots[s].expires)
                for s in range(self.n_slots)
                if self.slots[s].lease_id != 0 and self.slots[s].agent == a]

    def state_bytes(self):
        """Canonical bytes of the scheduler state (for digests): independent of heap layout
        and slot numbering."""
        return sched_state_bytes(self)

    def dump(self):
        """The C state as one bytes blob for a snapshot (same machine and build only)."""
        return sched_dump(self)

    def policy_table(self):
        """[(initial, factor, maximum, jitter)] of the interned backoff policies, by index."""
        return [(p.initial, p.factor, p.maximum, p.jitter) for p in self.policies[:self.n_policies]]

    @staticmethod
    def load(bytes blob, list task_ids, list queue_names, list agent_names):
        """A Scheduler restored from dump(); raises ValueError when the blob does not fit."""
        return sched_load(blob, task_ids, queue_names, agent_names)

    def _check(self):
        """O(n) invariant checker; raises KernelInternalError naming the broken invariant."""
        return sched_check(self)

    # --- the Kernel's entry points (hot_calls.pxi) ---

    def bind_entry(self, clock, kernel_class, kernel_ref, snapshot):
        """Attach the kernel's clock (its time_ns), its class (the Python paths), a weak
        reference to it and its snapshot hook (None when automatic snapshots are off)."""
        self.e_clock, self.e_class, self.e_ref = clock, kernel_class, kernel_ref
        self.e_snapshot = snapshot

    def k_submit(self, queue, payload=None, *, id=None, name=None, priority=2, depends_on=(),
                 max_attempts=3, timeout=30.0, backoff=None, delay=None, not_before=None,
                 agent=None, tags=None, key=None, parent=None):
        """Kernel.submit (see there)."""
        if not (self.blocked or name is not None or backoff is not None or agent is not None
                or not_before is not None or parent is not None or tags is not None
                or key is not None):
            tid = entry_submit(self, queue, payload, id, priority, depends_on, max_attempts,
                               timeout, delay)
            if tid is not None:
                return tid
        return self.e_class.submit(
            entry_kernel(self), queue, payload, id=id, name=name, priority=priority,
            depends_on=depends_on, max_attempts=max_attempts, timeout=timeout,
            backoff=backoff, delay=delay, not_before=not_before, agent=agent, tags=tags,
            key=key, parent=parent)

    def k_claim(self, agent_id):
        """Kernel.claim (see there)."""
        return entry_claim(self, agent_id)

    def k_complete(self, lease, result=None):
        """Kernel.complete (see there)."""
        return entry_complete(self, lease, result)

    def k_heartbeat(self, lease):
        """Kernel.heartbeat (see there)."""
        return entry_heartbeat(self, lease)


include "hot_calls.pxi"
include "replay_apply.pxi"
include "snapshot.pxi"
include "check.pxi"
