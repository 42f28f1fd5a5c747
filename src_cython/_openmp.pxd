# Whether the extension was compiled with OpenMP (without it, prange is serial),
# the calling thread's OpenMP thread limit (1 without OpenMP), and the step
# every thread of a team takes as a parallel region starts (see openmp_threads.h).
cdef extern from "openmp_threads.h":
    const bint FASTCALC_OPENMP
    int fastcalc_openmp_max_threads() noexcept nogil
    int fastcalc_current_cpu() noexcept nogil
    void fastcalc_leave_cpu(int caller_cpu) noexcept nogil
