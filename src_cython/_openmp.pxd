# Whether the extension was compiled with OpenMP (without it, prange is serial),
# and the calling thread's OpenMP thread limit (1 without OpenMP).
cdef extern from "openmp_threads.h":
    const bint FASTCALC_OPENMP
    int fastcalc_openmp_max_threads() noexcept nogil
