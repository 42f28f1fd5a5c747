from _fused cimport floating


cdef extern from "vecmath.h" nogil:
    float fc_exp_nonpositive_f32(float t)
    double fc_exp_nonpositive_f64(double t)
    float fc_tanh_f32(float v)
    double fc_tanh_f64(double v)


cdef inline floating exp_nonpositive(floating t) noexcept nogil:
    """exp(t) for t <= 0 or NaN, in the precision of ``t``; vectorizable."""
    if floating is float:
        return fc_exp_nonpositive_f32(t)
    else:
        return fc_exp_nonpositive_f64(t)



cdef inline floating tanh(floating v) noexcept nogil:
    """tanh(v) in the precision of ``v``; vectorizable."""
    if floating is float:
        return fc_tanh_f32(v)
    else:
        return fc_tanh_f64(v)
