# DAG readiness.  Each task keeps `unmet`, the number of its dependencies not yet COMPLETED,
# and a singly linked list of its dependents (edges in one array, head in Task.dependents).
# Dependencies always point at earlier handles (a batch is submitted in topological order),
# so the graph is acyclic by construction.
#
# Invariant (checked by _check): for every non-terminal task, unmet == the number of its
# dependencies whose status is not COMPLETED.

ctypedef struct Edge:
    int32_t target    # the dependent task
    int32_t next      # next edge of the same source, -1 at the end

cdef int dag_link(Edge** edges, Py_ssize_t* n, Py_ssize_t* cap, Task* tasks,
                  handle_t source, handle_t target) except -1:
    arr_reserve(<void**>edges, cap, n[0] + 1, sizeof(Edge))
    edges[0][n[0]].target = target
    edges[0][n[0]].next = tasks[source].dependents
    tasks[source].dependents = <int32_t>n[0]
    n[0] += 1
    return 0
