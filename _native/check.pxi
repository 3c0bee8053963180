# The O(n) invariant checker behind Scheduler._check(): recomputes every counter and index
# from the task array and compares.  The stateful tests call it after every step.

cdef bint sched_check(Scheduler self) except -1:
    cdef Py_ssize_t h, i, s, live = 0
    cdef Task* t
    cdef int32_t e
    cdef int64_t counts[7]
    cdef list unmet = [0] * self.n_tasks
    cdef list running = [0] * self.n_queues
    cdef list ready = [0] * self.n_queues
    cdef list active = [0] * self.n_agents
    cdef bint waiting
    memset(counts, 0, sizeof(counts))
    for h in range(self.n_tasks):
        t = &self.tasks[h]
        counts[t.status] += 1
        if t.status != ST_COMPLETED:
            e = t.dependents
            while e >= 0:
                unmet[self.edges[e].target] += 1
                e = self.edges[e].next
    for h in range(self.n_tasks):
        t = &self.tasks[h]
        if not status_terminal(t.status) and t.unmet != unmet[h]:
            raise KernelInternalError(f"task {h}: unmet {t.unmet} != {unmet[h]} unfinished deps")
        if (t.status == ST_READY) != (t.heap_pos >= 0):
            raise KernelInternalError(f"task {h}: READY iff in a ready heap is broken")
        if t.status == ST_READY:
            ready[t.queue] += 1
            if t.unmet:
                raise KernelInternalError(f"task {h} is READY with {t.unmet} unmet deps")
            if self._heap_of(t).keys[t.heap_pos] & HANDLE_MASK != <uint64_t>h:
                raise KernelInternalError(f"task {h} is not where its heap_pos says")
        if (t.status == ST_RUNNING) != (t.lease_slot >= 0):
            raise KernelInternalError(f"task {h}: RUNNING iff leased is broken")
        if t.status == ST_RUNNING:
            running[t.queue] += 1
            if self.slots[t.lease_slot].task != h or self.slots[t.lease_slot].lease_id == 0:
                raise KernelInternalError(f"task {h}: lease slot does not point back")
        waiting = t.status == ST_RETRYING or (t.status == ST_PENDING and t.unmet == 0)
        if waiting != (self.timers.pos[h] >= 0):
            raise KernelInternalError(f"task {h}: waiting iff in the timer heap is broken")
    for i in range(N_STATUS):
        if counts[i] != self.st_counts[i]:
            raise KernelInternalError(f"status count {STATUS_NAMES[i]} is off")
    for s in range(self.n_slots):
        if self.slots[s].lease_id != 0:
            live += 1
            active[self.slots[s].agent] += 1
            if self.expiry.pos[s] < 0:
                raise KernelInternalError(f"live lease slot {s} is not in the expiry heap")
    if live != self.n_live_leases or live != self.expiry.n:
        raise KernelInternalError("live lease count is off")
    for i in range(self.n_queues):
        if self.queues[i].running != running[i] or self.queues[i].ready != ready[i]:
            raise KernelInternalError(f"queue {i} running/ready counters are off")
        heap_check(&self.queues[i].heap, self.tasks)
    for i in range(self.n_caps):
        heap_check(&self.pinned[i], self.tasks)
    for i in range(self.n_agents):
        if self.agents[i].active != active[i]:
            raise KernelInternalError(f"agent {i} active lease count is off")
        if self.agents[i].active > self.agents[i].capacity:
            raise KernelInternalError(f"agent {i} holds more leases than its capacity")
    time_check(&self.timers, "timer")
    time_check(&self.expiry, "lease-expiry")
    return True
