# ESKERNEL_DEBUG is a C macro: 1 in `ESKERNEL_DEBUG_BUILD=1` builds, 0 otherwise, so that
# `if ESKERNEL_DEBUG:` blocks are deleted by the C compiler in release builds.
cdef extern from *:
    """
    #ifndef ESKERNEL_DEBUG
    #define ESKERNEL_DEBUG 0
    #endif
    """
    const bint ESKERNEL_DEBUG
