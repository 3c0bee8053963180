# Time heaps: indexed binary min-heaps of (at, tie, id), used twice: the timer heap (ids are
# task handles waiting for not_before or a retry; tie = handle) and the lease-expiry heap
# (ids are lease slots; tie = lease id).  Ties break on `tie`, so pops are deterministic.
#
# Invariants: entries ordered by (at, tie); pos[entries[i].id] == i; pos[id] == -1 when the
# id is not in the heap.

ctypedef struct TimeEntry:
    tick_t at
    int64_t tie
    int32_t id

ctypedef struct TimeHeap:
    TimeEntry* e
    Py_ssize_t n
    Py_ssize_t cap
    int32_t* pos
    Py_ssize_t pos_cap

cdef inline bint time_less(TimeEntry* a, TimeEntry* b) noexcept nogil:
    return a.at < b.at or (a.at == b.at and a.tie < b.tie)

cdef int time_track(TimeHeap* th, int32_t id) except -1:
    # Make pos[] cover id (new ids start outside the heap).
    cdef Py_ssize_t old = th.pos_cap, i
    if id < old:
        return 0
    arr_reserve(<void**>&th.pos, &th.pos_cap, id + 1, sizeof(int32_t))
    for i in range(old, th.pos_cap):
        th.pos[i] = -1
    return 0

cdef void time_sift(TimeHeap* th, Py_ssize_t i) noexcept nogil:
    cdef TimeEntry x = th.e[i]
    cdef Py_ssize_t parent, child, n = th.n
    while i > 0:
        parent = (i - 1) >> 1
        if not time_less(&x, &th.e[parent]):
            break
        th.e[i] = th.e[parent]
        th.pos[th.e[i].id] = <int32_t>i
        i = parent
    while True:
        child = 2 * i + 1
        if child >= n:
            break
        if child + 1 < n and time_less(&th.e[child + 1], &th.e[child]):
            child += 1
        if not time_less(&th.e[child], &x):
            break
        th.e[i] = th.e[child]
        th.pos[th.e[i].id] = <int32_t>i
        i = child
    th.e[i] = x
    th.pos[x.id] = <int32_t>i

cdef int time_push(TimeHeap* th, int32_t id, tick_t at, int64_t tie) except -1:
    time_track(th, id)
    arr_reserve(<void**>&th.e, &th.cap, th.n + 1, sizeof(TimeEntry))
    th.e[th.n].at = at
    th.e[th.n].tie = tie
    th.e[th.n].id = id
    th.n += 1
    time_sift(th, th.n - 1)
    return 0

cdef int time_remove(TimeHeap* th, int32_t id) except -1:
    cdef Py_ssize_t i = th.pos[id]
    if ESKERNEL_DEBUG:
        if i < 0 or i >= th.n:
            raise KernelInternalError(f"time_remove of id {id} that is not in the heap")
    th.pos[id] = -1
    th.n -= 1
    if i == th.n:
        return 0
    th.e[i] = th.e[th.n]
    time_sift(th, i)
    return 0

cdef inline void time_update(TimeHeap* th, int32_t id, tick_t at) noexcept nogil:
    cdef Py_ssize_t i = th.pos[id]
    th.e[i].at = at
    time_sift(th, i)

cdef int time_check(TimeHeap* th, str what) except -1:
    cdef Py_ssize_t i
    for i in range(th.n):
        if i > 0 and time_less(&th.e[i], &th.e[(i - 1) >> 1]):
            raise KernelInternalError(f"{what} heap order broken at index {i}")
        if th.pos[th.e[i].id] != i:
            raise KernelInternalError(f"{what} heap position index broken at index {i}")
    for i in range(th.pos_cap):
        if th.pos[i] != -1 and (th.pos[i] < 0 or th.pos[i] >= th.n or th.e[th.pos[i]].id != i):
            raise KernelInternalError(f"{what} heap position of id {i} points nowhere")
    return 0
