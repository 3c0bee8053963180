# Ready heaps: 4-ary min-heaps of packed u64 keys (see common.pxi).  Four children share a
# cache line, so a pop at a million entries touches half the levels a binary heap would.
# A task is in at most one ready heap; tasks[h].heap_pos is its index there, kept exact by
# every sift, so that cancel can remove it in O(log n).
#
# Invariants: keys[(i-1)//4] <= keys[i]; tasks[keys[i] & HANDLE_MASK].heap_pos == i.

ctypedef struct ReadyHeap:
    uint64_t* keys
    Py_ssize_t n
    Py_ssize_t cap

cdef inline uint64_t heap_key(Task* t, handle_t h) noexcept nogil:
    return ((<uint64_t>(PRIO_MAX - t.prio)) << 40) | <uint64_t>h

cdef inline void heap_sift_up(ReadyHeap* hp, Task* tasks, Py_ssize_t i) noexcept nogil:
    cdef uint64_t key = hp.keys[i]
    cdef Py_ssize_t parent
    while i > 0:
        parent = (i - 1) >> 2
        if hp.keys[parent] <= key:
            break
        hp.keys[i] = hp.keys[parent]
        tasks[hp.keys[i] & HANDLE_MASK].heap_pos = <int32_t>i
        i = parent
    hp.keys[i] = key
    tasks[key & HANDLE_MASK].heap_pos = <int32_t>i

cdef inline void heap_sift_down(ReadyHeap* hp, Task* tasks, Py_ssize_t i) noexcept nogil:
    cdef uint64_t key = hp.keys[i]
    cdef Py_ssize_t n = hp.n, child, first, last, c
    while True:
        first = 4 * i + 1
        if first >= n:
            break
        last = first + 4 if first + 4 <= n else n
        child = first
        for c in range(first + 1, last):
            if hp.keys[c] < hp.keys[child]:
                child = c
        if key <= hp.keys[child]:
            break
        hp.keys[i] = hp.keys[child]
        tasks[hp.keys[i] & HANDLE_MASK].heap_pos = <int32_t>i
        i = child
    hp.keys[i] = key
    tasks[key & HANDLE_MASK].heap_pos = <int32_t>i

cdef int heap_push(ReadyHeap* hp, Task* tasks, handle_t h) except -1:
    arr_reserve(<void**>&hp.keys, &hp.cap, hp.n + 1, sizeof(uint64_t))
    hp.keys[hp.n] = heap_key(&tasks[h], h)
    hp.n += 1
    heap_sift_up(hp, tasks, hp.n - 1)
    return 0

cdef int heap_remove(ReadyHeap* hp, Task* tasks, Py_ssize_t i) except -1:
    # Remove the entry at index i (0 for a pop); the removed task's heap_pos becomes -1.
    if ESKERNEL_DEBUG:
        if i < 0 or i >= hp.n:
            raise KernelInternalError(f"heap_remove at index {i} of a heap of {hp.n}")
    cdef handle_t h = <handle_t>(hp.keys[i] & HANDLE_MASK)
    hp.n -= 1
    tasks[h].heap_pos = -1
    if i == hp.n:
        return 0
    hp.keys[i] = hp.keys[hp.n]
    if i > 0 and hp.keys[i] < hp.keys[(i - 1) >> 2]:
        heap_sift_up(hp, tasks, i)
    else:
        heap_sift_down(hp, tasks, i)
    return 0

cdef int heap_check(ReadyHeap* hp, Task* tasks) except -1:
    cdef Py_ssize_t i
    for i in range(hp.n):
        if i > 0 and hp.keys[(i - 1) >> 2] > hp.keys[i]:
            raise KernelInternalError(f"ready heap order broken at index {i}")
        if tasks[hp.keys[i] & HANDLE_MASK].heap_pos != i:
            raise KernelInternalError(f"ready heap position index broken at index {i}")
        if tasks[hp.keys[i] & HANDLE_MASK].status != ST_READY:
            raise KernelInternalError(f"non-READY task in a ready heap at index {i}")
    return 0
