# Growable raw arrays.  All component arrays grow geometrically through arr_reserve(), so a
# push is amortised O(1) and no per-call allocation happens on the hot path once warm.

cdef int arr_reserve(void** data, Py_ssize_t* cap, Py_ssize_t need, size_t item) except -1:
    cdef Py_ssize_t new_cap
    cdef void* p
    if need <= cap[0]:
        return 0
    new_cap = cap[0] * 2 if cap[0] > 0 else 16
    while new_cap < need:
        new_cap *= 2
    p = PyMem_Realloc(data[0], <size_t>new_cap * item)
    if p == NULL:
        raise MemoryError(f"eskernel core could not grow an array to {new_cap} items")
    data[0] = p
    cap[0] = new_cap
    return 0
