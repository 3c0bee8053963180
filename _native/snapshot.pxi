# Snapshot dump/load of the scheduler's C state, and its canonical digest bytes.
# A dump is a raw copy of the arrays (same machine and build only): a snapshot that does not
# load is ignored and the log replayed, since the log, not the snapshot, is the truth.

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


cdef inline bytes _blob(const void* p, Py_ssize_t n):
    return PyBytes_FromStringAndSize(<const char*>p, n)


cdef bytes sched_dump(Scheduler self):
    cdef list parts = []
    cdef int64_t hdr[16]
    cdef Py_ssize_t i
    hdr[0] = sizeof(Task); hdr[1] = self.n_tasks; hdr[2] = self.n_edges
    hdr[3] = self.n_queues; hdr[4] = self.n_agents; hdr[5] = self.n_caps
    hdr[6] = self.n_policies; hdr[7] = self.n_slots; hdr[8] = self.free_slot
    hdr[9] = self.next_lease_id; hdr[10] = self.n_live_leases; hdr[11] = self.timers.n
    hdr[12] = self.expiry.n; hdr[13] = sizeof(LeaseSlot); hdr[14] = sizeof(Queue)
    hdr[15] = sizeof(Agent)
    parts.append(_blob(hdr, sizeof(hdr)))
    parts.append(_blob(self.st_counts, sizeof(self.st_counts)))
    parts.append(_blob(self.tasks, self.n_tasks * sizeof(Task)))
    parts.append(_blob(self.edges, self.n_edges * sizeof(Edge)))
    parts.append(_blob(self.queues, self.n_queues * sizeof(Queue)))
    for i in range(self.n_queues):
        parts.append(_blob(self.queues[i].heap.keys, self.queues[i].heap.n * sizeof(uint64_t)))
    parts.append(_blob(self.agents, self.n_agents * sizeof(Agent)))
    parts.append(_blob(self.caps, self.n_caps * sizeof(int32_t)))
    parts.append(_blob(self.pinned, self.n_caps * sizeof(ReadyHeap)))
    for i in range(self.n_caps):
        parts.append(_blob(self.pinned[i].keys, self.pinned[i].n * sizeof(uint64_t)))
    parts.append(_blob(self.policies, self.n_policies * sizeof(Policy)))
    parts.append(_blob(self.slots, self.n_slots * sizeof(LeaseSlot)))
    parts.append(_blob(self.timers.e, self.timers.n * sizeof(TimeEntry)))
    parts.append(_blob(self.timers.pos, self.n_tasks * sizeof(int32_t)))
    parts.append(_blob(self.expiry.e, self.expiry.n * sizeof(TimeEntry)))
    parts.append(_blob(self.expiry.pos, self.n_slots * sizeof(int32_t)))
    return b"".join(parts)


cdef Scheduler sched_load(bytes blob, list task_ids, list queue_names, list agent_names):
    cdef Scheduler s = Scheduler()
    cdef const char* p = PyBytes_AS_STRING(blob)
    cdef const char* end = p + PyBytes_GET_SIZE(blob)
    cdef int64_t hdr[16]
    cdef Py_ssize_t i
    p = _take(p, end, hdr, sizeof(hdr))
    if (hdr[0] != sizeof(Task) or hdr[13] != sizeof(LeaseSlot) or hdr[14] != sizeof(Queue)
            or hdr[15] != sizeof(Agent)):
        raise ValueError("scheduler snapshot was written by an incompatible build")
    if hdr[1] != len(task_ids) or hdr[3] != len(queue_names) or hdr[4] != len(agent_names):
        raise ValueError("scheduler snapshot does not match its id tables")
    s.n_tasks = hdr[1]; s.n_edges = hdr[2]; s.n_queues = hdr[3]; s.n_agents = hdr[4]
    s.n_caps = hdr[5]; s.n_policies = hdr[6]; s.n_slots = hdr[7]; s.free_slot = <int32_t>hdr[8]
    s.next_lease_id = hdr[9]; s.n_live_leases = hdr[10]
    p = _take(p, end, s.st_counts, sizeof(s.st_counts))
    p = _take_arr(p, end, <void**>&s.tasks, &s.cap_tasks, s.n_tasks, sizeof(Task))
    p = _take_arr(p, end, <void**>&s.edges, &s.cap_edges, s.n_edges, sizeof(Edge))
    p = _take_arr(p, end, <void**>&s.queues, &s.cap_queues, s.n_queues, sizeof(Queue))
    for i in range(s.n_queues):
        s.queues[i].heap.keys = NULL
        s.queues[i].heap.cap = 0
        p = _take_arr(p, end, <void**>&s.queues[i].heap.keys, &s.queues[i].heap.cap,
                      s.queues[i].heap.n, sizeof(uint64_t))
    p = _take_arr(p, end, <void**>&s.agents, &s.cap_agents, s.n_agents, sizeof(Agent))
    p = _take_arr(p, end, <void**>&s.caps, &s.cap_caps, s.n_caps, sizeof(int32_t))
    p = _take_arr(p, end, <void**>&s.pinned, &s.cap_pinned, s.n_caps, sizeof(ReadyHeap))
    for i in range(s.n_caps):
        s.pinned[i].keys = NULL
        s.pinned[i].cap = 0
        p = _take_arr(p, end, <void**>&s.pinned[i].keys, &s.pinned[i].cap, s.pinned[i].n,
                      sizeof(uint64_t))
    p = _take_arr(p, end, <void**>&s.policies, &s.cap_policies, s.n_policies, sizeof(Policy))
    p = _take_arr(p, end, <void**>&s.slots, &s.cap_slots, s.n_slots, sizeof(LeaseSlot))
    s.timers.n = hdr[11]
    p = _take_arr(p, end, <void**>&s.timers.e, &s.timers.cap, s.timers.n, sizeof(TimeEntry))
    p = _take_arr(p, end, <void**>&s.timers.pos, &s.timers.pos_cap, s.n_tasks, sizeof(int32_t))
    s.expiry.n = hdr[12]
    p = _take_arr(p, end, <void**>&s.expiry.e, &s.expiry.cap, s.expiry.n, sizeof(TimeEntry))
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
    return s


cdef const char* _take(const char* p, const char* end, void* dst, size_t n) except NULL:
    if end - p < <Py_ssize_t>n:
        raise ValueError("scheduler snapshot is truncated")
    memcpy(dst, p, n)
    return p + n


cdef const char* _take_arr(const char* p, const char* end, void** dst, Py_ssize_t* cap,
                           Py_ssize_t count, size_t item) except NULL:
    arr_reserve(dst, cap, count if count > 0 else 1, item)
    return _take(p, end, dst[0], count * item)
