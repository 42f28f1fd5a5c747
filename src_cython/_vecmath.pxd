from _fused cimport floating


cdef extern from "vecmath.h" nogil:
    float fc_exp_nonpositive_f32(float t)
    double fc_exp_nonpositive_f64(double t)


cdef inline floating exp_nonpositive(floating t) noexcept nogil:
    """exp(t) for t <= 0 or NaN, in the precision of ``t``; vectorizable."""
    if floating is float:
        return fc_exp_nonpositive_f32(t)
    else:
        return fc_exp_nonpositive_f64(t)

