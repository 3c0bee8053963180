# Queues and agents.  A queue owns the shared ready heap of its tasks; an agent owns one
# pinned ready heap per queue it serves (tasks that name it as their preferred agent).
# caps[agent.caps_off + i] is the i-th queue the agent serves and pinned[agent.caps_off + i]
# that queue's pinned heap for the agent.
#
# Invariants: queue.running == RUNNING tasks of the queue; agent.active == its live leases;
# queue.running <= max_concurrent (when > 0) and agent.active <= capacity at all times.

ctypedef struct Queue:
    ReadyHeap heap
    int32_t max_concurrent   # 0 means unlimited
    int32_t running
    int32_t ready            # tasks in this queue's heaps (shared + pinned)
    uint8_t paused

ctypedef struct Agent:
    int32_t capacity
    int32_t active
    int32_t caps_off
    int32_t n_caps
    uint8_t online

ctypedef struct Policy:
    tick_t initial
    tick_t maximum
    double factor
    double jitter
