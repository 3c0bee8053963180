# Snapshot dump/load of the scheduler's C state, and its canonical digest bytes.
# A dump is a raw copy of the arrays (same machine and build only): a snapshot that does not
# load is ignored and the log replayed, since the log, not the snapshot, is the truth.
#
# A dump read back is untrusted input (a directory may come from anywhere), so sched_load
# never lets a byte of it reach an index unchecked:
#   * every count is checked against the bytes left before anything is allocated;
#   * pointer fields copied in (heap key arrays) are cleared before any count that would
#     make __dealloc__ free them is set, so a load that fails half-way frees only what it
#     allocated;
#   * snap_validate() checks every handle, index, enum and list in bounds (release builds
#     too), then sched_check() checks the invariants between them.  Either failure is a
#     ValueError; nothing else escapes.

cdef bytes sched_state_bytes(Scheduler self):
    # Per task the fields that define its state (not heap positions or slot numbers, which
    # depend on layout), then queue and agent counters.
    cdef bytearray out = bytearray()
    cdef Py_ssize_t h, i
    cdef Task* t
    cdef int64_t row[18]
    for h in range(self.n_tasks):
        t = &self.tasks[h]
        row[0] = t.status; row[1] = t.flags; row[2] = t.attempts; row[3] = t.max_attempts
        row[4] = t.queue; row[5] = t.prio; row[6] = t.pinned; row[7] = t.unmet
        row[8] = t.last_agent; row[9] = t.due; row[10] = t.timeout; row[11] = t.submitted
        row[12] = t.started; row[13] = t.finished; row[14] = t.n_deps; row[15] = t.policy
        row[16] = self.slots[t.lease_slot].lease_id if t.lease_slot >= 0 else 0
        row[17] = self.slots[t.lease_slot].expires if t.lease_slot >= 0 else 0
        out += PyBytes_FromStringAndSize(<char*>row, sizeof(row))
    for i in range(self.n_queues):
        row[0] = self.queues[i].max_concurrent; row[1] = self.queues[i].running
        row[2] = self.queues[i].ready; row[3] = self.queues[i].paused
        out += PyBytes_FromStringAndSize(<char*>row, 4 * sizeof(int64_t))
    for i in range(self.n_agents):
        row[0] = self.agents[i].capacity; row[1] = self.agents[i].active
        row[2] = self.agents[i].online; row[3] = self.agents[i].n_caps
        out += PyBytes_FromStringAndSize(<char*>row, 4 * sizeof(int64_t))
    row[0] = self.next_lease_id; row[1] = self.n_live_leases; row[2] = self.n_edges
    out += PyBytes_FromStringAndSize(<char*>row, 3 * sizeof(int64_t))
    return bytes(out)


cdef struct _Part:
    const void* p
    Py_ssize_t n


cdef bytes sched_dump(Scheduler self):
    # The parts are listed first, then copied once into one bytes object (a dump at a
    # million tasks is ~100 MB: a second copy through b"".join doubled the capture's cost).
    cdef int64_t hdr[16]
    cdef Py_ssize_t i, k = 0, total = 0
    cdef Py_ssize_t n_parts = 16 + self.n_queues + self.n_caps
    cdef _Part* parts = <_Part*>PyMem_Malloc(n_parts * sizeof(_Part))
    cdef bytes out
    cdef char* w
    if parts == NULL:
        raise MemoryError("no memory for a snapshot of the scheduler")
    hdr[0] = sizeof(Task); hdr[1] = self.n_tasks; hdr[2] = self.n_edges
    hdr[3] = self.n_queues; hdr[4] = self.n_agents; hdr[5] = self.n_caps
    hdr[6] = self.n_policies; hdr[7] = self.n_slots; hdr[8] = self.free_slot
    hdr[9] = self.next_lease_id; hdr[10] = self.n_live_leases; hdr[11] = self.timers.n
    hdr[12] = self.expiry.n; hdr[13] = sizeof(LeaseSlot); hdr[14] = sizeof(Queue)
    hdr[15] = sizeof(Agent)
    try:
        k = _part(parts, k, hdr, sizeof(hdr))
        k = _part(parts, k, self.st_counts, sizeof(self.st_counts))
        k = _part(parts, k, self.tasks, self.n_tasks * sizeof(Task))
        k = _part(parts, k, self.edges, self.n_edges * sizeof(Edge))
        k = _part(parts, k, self.queues, self.n_queues * sizeof(Queue))
        for i in range(self.n_queues):
            k = _part(parts, k, self.queues[i].heap.keys, self.queues[i].heap.n * sizeof(uint64_t))
        k = _part(parts, k, self.agents, self.n_agents * sizeof(Agent))
        k = _part(parts, k, self.caps, self.n_caps * sizeof(int32_t))
        k = _part(parts, k, self.pinned, self.n_caps * sizeof(ReadyHeap))
        for i in range(self.n_caps):
            k = _part(parts, k, self.pinned[i].keys, self.pinned[i].n * sizeof(uint64_t))
        k = _part(parts, k, self.policies, self.n_policies * sizeof(Policy))
        k = _part(parts, k, self.slots, self.n_slots * sizeof(LeaseSlot))
        k = _part(parts, k, self.timers.e, self.timers.n * sizeof(TimeEntry))
        k = _part(parts, k, self.timers.pos, self.n_tasks * sizeof(int32_t))
        k = _part(parts, k, self.expiry.e, self.expiry.n * sizeof(TimeEntry))
        k = _part(parts, k, self.expiry.pos, self.n_slots * sizeof(int32_t))
        for i in range(k):
            total += parts[i].n
        out = PyBytes_FromStringAndSize(NULL, total)
        w = PyBytes_AS_STRING(out)
        for i in range(k):
            if parts[i].n:
                memcpy(w, parts[i].p, parts[i].n)
                w += parts[i].n
    finally:
        PyMem_Free(parts)
    return out


cdef inline Py_ssize_t _part(_Part* parts, Py_ssize_t k, const void* p,
                             Py_ssize_t n) noexcept:
    parts[k].p = p
    parts[k].n = n
    return k + 1


# Counts above this are nonsense for a snapshot (arrays are indexed by int32 handles).
cdef int64_t SNAP_MAX_COUNT = 0x7FFFFFF0
cdef int64_t SNAP_MAX_LEASE = 1 << 62       # kernel._records.MAX_LEASE


cdef Scheduler sched_load(bytes blob, list task_ids, list queue_names, list agent_names):
    cdef Scheduler s = Scheduler()
    cdef const char* p = PyBytes_AS_STRING(blob)
    cdef const char* end = p + PyBytes_GET_SIZE(blob)
    cdef int64_t hdr[16]
    cdef Py_ssize_t i, n
    p = _take(p, end, hdr, sizeof(hdr))
    if (hdr[0] != sizeof(Task) or hdr[13] != sizeof(LeaseSlot) or hdr[14] != sizeof(Queue)
            or hdr[15] != sizeof(Agent)):
        raise ValueError("scheduler snapshot was written by an incompatible build")
    if hdr[1] != len(task_ids) or hdr[3] != len(queue_names) or hdr[4] != len(agent_names):
        raise ValueError("scheduler snapshot does not match its id tables")
    for i in range(1, 13):
        # field 9, the next lease id, may be up in an epoch's range (kernel/events.py)
        if (hdr[i] < (-1 if i == 8 else 0)
                or hdr[i] > (SNAP_MAX_LEASE if i == 9 else SNAP_MAX_COUNT)):
            raise ValueError(f"scheduler snapshot header field {i} is out of range: {hdr[i]}")
    if hdr[1] > <int64_t>HANDLE_MASK:
        raise ValueError(f"scheduler snapshot holds {hdr[1]} tasks, more than handles can name")
    s.next_lease_id = hdr[9]; s.n_live_leases = hdr[10]; s.free_slot = <int32_t>hdr[8]
    p = _take(p, end, s.st_counts, sizeof(s.st_counts))
    p = _take_arr(p, end, <void**>&s.tasks, &s.cap_tasks, hdr[1], sizeof(Task))
    s.n_tasks = hdr[1]
    p = _take_arr(p, end, <void**>&s.edges, &s.cap_edges, hdr[2], sizeof(Edge))
    s.n_edges = hdr[2]
    p = _take_arr(p, end, <void**>&s.queues, &s.cap_queues, hdr[3], sizeof(Queue))
    for i in range(hdr[3]):    # copied pointers are garbage: clear them before counting
        s.queues[i].heap.keys = NULL
        s.queues[i].heap.cap = 0
    s.n_queues = hdr[3]
    for i in range(s.n_queues):
        n = s.queues[i].heap.n
        s.queues[i].heap.n = 0
        p = _take_arr(p, end, <void**>&s.queues[i].heap.keys, &s.queues[i].heap.cap, n,
                      sizeof(uint64_t))
        s.queues[i].heap.n = n
    p = _take_arr(p, end, <void**>&s.agents, &s.cap_agents, hdr[4], sizeof(Agent))
    s.n_agents = hdr[4]
    p = _take_arr(p, end, <void**>&s.caps, &s.cap_caps, hdr[5], sizeof(int32_t))
    p = _take_arr(p, end, <void**>&s.pinned, &s.cap_pinned, hdr[5], sizeof(ReadyHeap))
    for i in range(hdr[5]):
        s.pinned[i].keys = NULL
        s.pinned[i].cap = 0
    s.n_caps = hdr[5]
    for i in range(s.n_caps):
        n = s.pinned[i].n
        s.pinned[i].n = 0
        p = _take_arr(p, end, <void**>&s.pinned[i].keys, &s.pinned[i].cap, n, sizeof(uint64_t))
        s.pinned[i].n = n
    p = _take_arr(p, end, <void**>&s.policies, &s.cap_policies, hdr[6], sizeof(Policy))
    s.n_policies = hdr[6]
    p = _take_arr(p, end, <void**>&s.slots, &s.cap_slots, hdr[7], sizeof(LeaseSlot))
    s.n_slots = hdr[7]
    p = _take_arr(p, end, <void**>&s.timers.e, &s.timers.cap, hdr[11], sizeof(TimeEntry))
    s.timers.n = hdr[11]
    p = _take_arr(p, end, <void**>&s.timers.pos, &s.timers.pos_cap, s.n_tasks, sizeof(int32_t))
    p = _take_arr(p, end, <void**>&s.expiry.e, &s.expiry.cap, hdr[12], sizeof(TimeEntry))
    s.expiry.n = hdr[12]
    p = _take_arr(p, end, <void**>&s.expiry.pos, &s.expiry.pos_cap, s.n_slots, sizeof(int32_t))
    if p != end:
        raise ValueError("scheduler snapshot has trailing bytes")
    # Position indexes cover their whole capacity: ids past the loaded ones are "not in the
    # heap" (-1), as time_track() would have made them.
    for i in range(s.n_tasks, s.timers.pos_cap):
        s.timers.pos[i] = -1
    for i in range(s.n_slots, s.expiry.pos_cap):
        s.expiry.pos[i] = -1
    s.task_ids = task_ids
    s.queue_names = queue_names
    s.agent_names = agent_names
    snap_validate(s)
    try:
        sched_check(s)
    except KernelInternalError as err:
        raise ValueError(f"scheduler snapshot is inconsistent: {err}") from None
    return s


cdef const char* _take(const char* p, const char* end, void* dst, size_t n) except NULL:
    if end - p < <Py_ssize_t>n:
        raise ValueError("scheduler snapshot is truncated")
    memcpy(dst, p, n)
    return p + n


cdef const char* _take_arr(const char* p, const char* end, void** dst, Py_ssize_t* cap,
                           Py_ssize_t count, size_t item) except NULL:
    # The count is checked against the bytes left before anything is allocated, so a
    # forged count can neither overflow the size nor ask for gigabytes.
    if count < 0 or count > (end - p) // <Py_ssize_t>item:
        raise ValueError(f"scheduler snapshot is truncated or has a bad count ({count})")
    arr_reserve(dst, cap, count if count > 0 else 1, item)
    return _take(p, end, dst[0], count * item)


cdef inline int _bad(str what) except -1:
    raise ValueError(f"scheduler snapshot is invalid: {what}")


cdef int _snap_heap(Scheduler s, ReadyHeap* hp, str name) except -1:
    # Every key names a READY task that belongs in exactly this heap at exactly this index.
    cdef Py_ssize_t i
    cdef uint64_t key, h
    cdef Task* t
    for i in range(hp.n):
        key = hp.keys[i]
        h = key & HANDLE_MASK
        if h >= <uint64_t>s.n_tasks:
            _bad(f"{name} holds handle {h} of {s.n_tasks} tasks")
        t = &s.tasks[h]
        if t.status != ST_READY or t.heap_pos != i or key != heap_key(t, <handle_t>h):
            _bad(f"{name} entry {i} (task {h}) does not match the task")
        if s._heap_of(t) != hp:
            _bad(f"task {h} sits in {name}, not in the heap its queue and agent name")
    return 0


cdef int _snap_time(TimeHeap* th, Py_ssize_t n_ids, str name) except -1:
    cdef Py_ssize_t i
    for i in range(th.n):
        if th.e[i].id < 0 or th.e[i].id >= n_ids:
            _bad(f"{name} heap entry {i} names id {th.e[i].id} of {n_ids}")
    for i in range(n_ids):
        if th.pos[i] < -1 or th.pos[i] >= th.n:
            _bad(f"{name} heap position of id {i} is {th.pos[i]} of {th.n}")
    return 0


cdef int snap_validate(Scheduler s) except -1:
    # Bounds first: after this, every handle and index in the state points inside its array,
    # every enum is known and every linked list ends, so sched_check() can follow them.
    cdef Py_ssize_t h, i, e, seen, live = 0
    cdef Task* t
    cdef Agent* A
    cdef Policy* P
    cdef LeaseSlot* L
    cdef bytearray mark
    cdef list indeg
    cdef set lease_ids = set()
    cdef int64_t total = 0
    for i in range(N_STATUS):
        if s.st_counts[i] < 0 or s.st_counts[i] > s.n_tasks:
            _bad(f"status count {i} is {s.st_counts[i]}")
    if s.free_slot < -1 or s.free_slot >= s.n_slots:
        _bad(f"free lease slot {s.free_slot} of {s.n_slots}")
    if s.next_lease_id < 1 or s.n_live_leases > s.n_slots:
        _bad("lease counters are out of range")
    if s.timers.n > s.n_tasks or s.expiry.n > s.n_slots:
        _bad("a time heap is larger than the ids it can hold")
    for i in range(s.n_queues):
        if (s.queues[i].max_concurrent < 0 or s.queues[i].running < 0 or s.queues[i].ready < 0
                or s.queues[i].paused > 1 or s.queues[i].heap.n > s.n_tasks):
            _bad(f"queue {i} has out-of-range fields")
    for i in range(s.n_agents):
        A = &s.agents[i]
        if (A.capacity < 0 or A.active < 0 or A.online > 1 or A.n_caps < 0
                or A.caps_off != total or A.n_caps > s.n_caps - total):
            _bad(f"agent {i} has out-of-range fields")
        total += A.n_caps
    if total != s.n_caps:
        _bad(f"agents serve {total} queues, the table holds {s.n_caps}")
    for i in range(s.n_caps):
        if s.caps[i] < 0 or s.caps[i] >= s.n_queues or s.pinned[i].n > s.n_tasks:
            _bad(f"agent queue entry {i} is out of range")
    for i in range(s.n_policies):
        P = &s.policies[i]
        if (P.initial < 0 or P.maximum < 0 or not (1.0 <= P.factor <= 1e6)
                or not (0.0 <= P.jitter <= 1.0)):
            _bad(f"backoff policy {i} is out of range")
    for h in range(s.n_tasks):
        t = &s.tasks[h]
        if t.status >= N_STATUS or t.flags > (FLAG_DEAD | FLAG_UPSTREAM):
            _bad(f"task {h} has status {t.status} and flags {t.flags}")
        if (t.queue < 0 or t.queue >= s.n_queues or t.pinned < -1 or t.pinned >= s.n_agents
                or t.last_agent < -1 or t.last_agent >= s.n_agents
                or t.lease_slot < -1 or t.lease_slot >= s.n_slots
                or t.dependents < -1 or t.dependents >= s.n_edges
                or t.policy < 0 or t.policy >= s.n_policies):
            _bad(f"task {h} names a queue, agent, lease, edge or policy that does not exist")
        if t.pinned >= 0 and s._cap_index(t.pinned, t.queue) < 0:
            _bad(f"task {h} is pinned to agent {t.pinned}, which does not serve its queue")
        if (t.prio < 0 or t.prio > PRIO_MAX or t.n_deps < 0 or t.unmet < 0
                or t.unmet > t.n_deps or t.attempts < 0 or t.max_attempts < 1
                or t.due < 0 or t.timeout < 0 or t.submitted < 0 or t.started < 0
                or t.finished < 0):
            _bad(f"task {h} has out-of-range fields")
        if t.heap_pos < -1 or (t.heap_pos >= 0 and t.heap_pos >= s._heap_of(t).n):
            _bad(f"task {h} has heap position {t.heap_pos} outside its heap")
    # Edges: every edge on exactly one list, each list ending, pointing at later handles,
    # and each task's in-degree equal to its dependency count.
    mark = bytearray(s.n_edges)
    indeg = [0] * s.n_tasks
    seen = 0
    for h in range(s.n_tasks):
        e = s.tasks[h].dependents
        while e >= 0:
            if e >= s.n_edges or mark[e]:
                _bad(f"the dependents list of task {h} loops or shares an edge")
            mark[e] = 1
            seen += 1
            if s.edges[e].target <= h or s.edges[e].target >= s.n_tasks:
                _bad(f"edge {e} from task {h} points at task {s.edges[e].target}")
            indeg[s.edges[e].target] += 1
            e = s.edges[e].next
            if e < -1:
                _bad(f"edge list of task {h} has link {e}")
    if seen != s.n_edges:
        _bad(f"{s.n_edges - seen} edges are on no task's list")
    for h in range(s.n_tasks):
        if indeg[h] != s.tasks[h].n_deps:
            _bad(f"task {h} has {s.tasks[h].n_deps} dependencies but {indeg[h]} edges")
    # Lease slots: live slots point at their RUNNING task and back; the free list holds
    # exactly the other slots, once each.
    for i in range(s.n_slots):
        L = &s.slots[i]
        if L.lease_id < 0 or L.lease_id >= s.next_lease_id:
            _bad(f"lease slot {i} holds lease id {L.lease_id} (next is {s.next_lease_id})")
        if L.lease_id != 0:
            live += 1
            if (L.task < 0 or L.task >= s.n_tasks or L.agent < 0 or L.agent >= s.n_agents
                    or s.tasks[L.task].lease_slot != i or L.attempt < 0 or L.expires < 0):
                _bad(f"lease slot {i} names a task or agent that does not hold it")
            if L.lease_id in lease_ids:
                _bad(f"lease id {L.lease_id} is held twice")
            lease_ids.add(L.lease_id)
        elif L.next_free < -1 or L.next_free >= s.n_slots:
            _bad(f"free lease slot {i} links to {L.next_free}")
    mark = bytearray(s.n_slots)
    i = s.free_slot
    seen = 0
    while i >= 0:
        if mark[i] or s.slots[i].lease_id != 0:
            _bad(f"the free lease list loops or holds live slot {i}")
        mark[i] = 1
        seen += 1
        i = s.slots[i].next_free
    if seen + live != s.n_slots:
        _bad(f"{s.n_slots - live - seen} free lease slots are not on the free list")
    for h in range(s.n_tasks):
        if s.tasks[h].lease_slot >= 0 and s.slots[s.tasks[h].lease_slot].task != h:
            _bad(f"task {h} names lease slot {s.tasks[h].lease_slot}, which is not its own")
    _snap_time(&s.timers, s.n_tasks, "timer")
    _snap_time(&s.expiry, s.n_slots, "lease-expiry")
    for i in range(s.timers.n):
        if s.timers.e[i].tie != s.timers.e[i].id or s.timers.e[i].at != s.tasks[s.timers.e[i].id].due:
            _bad(f"timer heap entry {i} does not match its task")
    for i in range(s.expiry.n):
        L = &s.slots[s.expiry.e[i].id]
        if L.lease_id == 0 or s.expiry.e[i].tie != L.lease_id or s.expiry.e[i].at != L.expires:
            _bad(f"lease-expiry heap entry {i} does not match its lease slot")
    for i in range(s.n_queues):
        _snap_heap(s, &s.queues[i].heap, f"the ready heap of queue {i}")
    for i in range(s.n_caps):
        _snap_heap(s, &s.pinned[i], f"pinned ready heap {i}")
    return 0
