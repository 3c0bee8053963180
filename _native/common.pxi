# Shared types, the task status enum and its one gatekeeper, status_set().
#
# Invariants:
#   * every status change goes through status_set(), which consults LEGAL[from][to];
#   * times are int64 nanoseconds supplied by the caller (the core never reads a clock).
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint64_t
from libc.string cimport memcpy, memset
from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free

ctypedef int32_t handle_t
ctypedef int64_t tick_t

cdef enum:  # task status codes
    ST_PENDING = 0     # waiting on dependencies or a not_before time
    ST_READY = 1       # in a ready heap
    ST_RUNNING = 2     # leased
    ST_RETRYING = 3    # waiting out a backoff (in the timer heap)
    ST_COMPLETED = 4
    ST_FAILED = 5      # attempts exhausted or non-retryable: dead-lettered
    ST_CANCELLED = 6
    N_STATUS = 7

STATUS_NAMES = ("PENDING", "READY", "RUNNING", "RETRYING", "COMPLETED", "FAILED", "CANCELLED")

# What _choose() answers besides a handle (Scheduler.choose / claim hand these to Python).
cdef enum:
    CHOOSE_NONE = -1         # nothing eligible
    CHOOSE_OFFLINE = -2      # the agent is offline
    CHOOSE_AT_CAPACITY = -3  # the agent holds as many leases as its capacity
CHOOSE_CODES = {"NONE": CHOOSE_NONE, "OFFLINE": CHOOSE_OFFLINE,
                "AT_CAPACITY": CHOOSE_AT_CAPACITY}

# The fields of Scheduler.task_row(), in order.
TASK_ROW_FIELDS = ("status", "attempts", "max_attempts", "queue", "prio", "pinned",
                   "last_agent", "lease_id", "expires", "submitted", "started", "finished",
                   "due", "flags", "unmet")

# LEGAL[a][b] is 1 when a -> b is a legal transition.  RUNNING -> READY is a release or a
# retry with no backoff; FAILED -> READY is a requeue of a dead-lettered task.
cdef uint8_t LEGAL[7][7]
memset(LEGAL, 0, sizeof(LEGAL))
LEGAL[ST_PENDING][ST_READY] = 1
LEGAL[ST_PENDING][ST_CANCELLED] = 1
LEGAL[ST_READY][ST_RUNNING] = 1
LEGAL[ST_READY][ST_CANCELLED] = 1
LEGAL[ST_RUNNING][ST_COMPLETED] = 1
LEGAL[ST_RUNNING][ST_RETRYING] = 1
LEGAL[ST_RUNNING][ST_READY] = 1
LEGAL[ST_RUNNING][ST_FAILED] = 1
LEGAL[ST_RUNNING][ST_CANCELLED] = 1
LEGAL[ST_RETRYING][ST_READY] = 1
LEGAL[ST_RETRYING][ST_CANCELLED] = 1
LEGAL[ST_FAILED][ST_READY] = 1

cdef inline bint status_terminal(uint8_t s) noexcept nogil:
    return s == ST_COMPLETED or s == ST_FAILED or s == ST_CANCELLED

# Priorities are ints in [0, PRIO_MAX]; the ready-heap key packs (PRIO_MAX - prio) into the
# high bits and the task handle (= submission order) into the low 40 bits, so one u64
# compare orders by priority desc, then FIFO.
cdef enum:
    PRIO_MAX = 1000
cdef uint64_t HANDLE_MASK = (<uint64_t>1 << 40) - 1

cdef enum TaskFlag:
    FLAG_DEAD = 1        # FAILED with attempts exhausted or a non-retryable error
    FLAG_UPSTREAM = 2    # CANCELLED because a dependency failed or was cancelled
TASK_FLAGS = {"DEAD": FLAG_DEAD, "UPSTREAM": FLAG_UPSTREAM}

# One task; handles index a dense array of these.  No Python objects: ids, payloads and
# results live at the boundary (kernel/), keyed by the same handle.
ctypedef struct Task:
    tick_t due            # not_before, or when a retry becomes due
    tick_t timeout        # lease duration granted per attempt
    tick_t submitted
    tick_t started        # last claim
    tick_t finished
    int32_t queue
    int32_t pinned        # agent handle that alone may claim it, or -1
    int32_t unmet         # dependencies not yet COMPLETED
    int32_t heap_pos      # index in its ready heap, -1 when in none
    int32_t lease_slot    # -1 unless RUNNING
    int32_t last_agent    # -1 until first claimed
    int32_t attempts      # attempts started (a release gives one back)
    int32_t max_attempts
    int32_t dependents    # head of its dependents' edge list, -1 when none
    int32_t n_deps
    int32_t policy        # index into the backoff policy table
    int16_t prio
    uint8_t status
    uint8_t flags

cdef int status_set(Task* t, uint8_t to) except -1:
    # The single gatekeeper of task status.
    if not LEGAL[t.status][to]:
        raise KernelInternalError(
            f"illegal task transition {STATUS_NAMES[t.status]} -> {STATUS_NAMES[to]}; "
            "this is a bug in eskernel, please report it with the log")
    t.status = to
    return 0
