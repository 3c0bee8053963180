# Lease table: one slot per active lease, reused through a free list.  The lease id is
# global and monotonic (it doubles as the fencing token); a completion is accepted only if
# the task's current slot still holds that id.  Expiry is ordered by the lease-expiry heap
# (timers.pxi) keyed by slot.
#
# Invariants: tasks[s.task].lease_slot == s for every live slot s; live slots ==
# RUNNING tasks; agents[a].active == live slots held by a.

ctypedef struct LeaseSlot:
    int64_t lease_id      # 0 when the slot is free
    tick_t expires
    int32_t task
    int32_t agent
    int32_t attempt
    int32_t next_free

cdef int32_t lease_alloc(LeaseSlot** slots, Py_ssize_t* n, Py_ssize_t* cap,
                         int32_t* free_head) except -1:
    cdef int32_t s = free_head[0]
    if s >= 0:
        free_head[0] = slots[0][s].next_free
        return s
    arr_reserve(<void**>slots, cap, n[0] + 1, sizeof(LeaseSlot))
    s = <int32_t>n[0]
    n[0] += 1
    return s

cdef inline void lease_free(LeaseSlot* slots, int32_t s, int32_t* free_head) noexcept nogil:
    slots[s].lease_id = 0
    slots[s].next_free = free_head[0]
    free_head[0] = s
