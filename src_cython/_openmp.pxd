# Whether the extension was compiled with OpenMP (without it, prange is serial).
cdef extern from *:
    """
    #ifdef _OPENMP
    #define FASTCALC_OPENMP 1
    #else
    #define FASTCALC_OPENMP 0
    #endif
    """
    const bint FASTCALC_OPENMP
