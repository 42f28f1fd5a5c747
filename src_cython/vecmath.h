/*
 * Vectorizable exp and tanh for the Cython kernels: the C port of
 * fastcalc/_numba/_vecmath.py (same algorithm, same constants; that module's
 * docstring explains the method).
 *
 * A libm exp() call in a loop keeps the compiler from vectorizing it; these
 * functions are plain arithmetic, comparisons and bit casts, so once inlined
 * into a loop they compile to SIMD code for whatever -m flags the file is
 * built with.  Bit casts go through memcpy, the portable way that compilers
 * turn into no-ops.
 */
#ifndef FASTCALC_VECMATH_H
#define FASTCALC_VECMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* "inline" is only a hint: in a module with many kernel loops GCC's growth
   limits can leave a call to exp in one of them, and that loop then runs
   scalar.  Forcing the inlining keeps every loop vectorizable. */
#if defined(_MSC_VER)
#define FC_ALWAYS_INLINE static __forceinline
#else
#define FC_ALWAYS_INLINE static inline __attribute__((always_inline))
#endif

FC_ALWAYS_INLINE uint64_t fc_f64_to_bits(double value)
{
    uint64_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

FC_ALWAYS_INLINE double fc_bits_to_f64(uint64_t bits)
{
    double value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

FC_ALWAYS_INLINE uint32_t fc_f32_to_bits(float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

FC_ALWAYS_INLINE float fc_bits_to_f32(uint32_t bits)
{
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* exp(t) for t <= 0 or NaN. */
FC_ALWAYS_INLINE double fc_exp_nonpositive_f64(double t)
{
    const double shift = 6755399441055744.0; /* 1.5 * 2**52 */
    const double inv_ln2 = 1.4426950408889634;
    /* LN2_HI has its low 11 bits zero, so n * LN2_HI is exact. */
    const double ln2_hi = 6.93147180369123816490e-01;
    const double ln2_lo = 1.90821492927058770002e-10;
    /* exp(-1400) rounds to 0, and n >= -2044 keeps both halves of 2**n normal.
       NaN fails the comparison and flows through to the result. */
    double clamped = t < -1400.0 ? -1400.0 : t;
    double shifted = clamped * inv_ln2 + shift;
    double nf = shifted - shift;
    double r = (clamped - nf * ln2_hi) - nf * ln2_lo;
    double p = 1.0 + r * (1.0 + r * (0.49999999999997080899 + r * (0.16666666666610014487
        + r * (0.041666666668962515442 + r * (0.0083333333714697969162
        + r * (0.0013888888333669240662 + r * (0.0001984118450896431152
        + r * (0.000024802096727785499005 + r * (2.7635270528680241402e-6
        + r * 2.7424198643926820825e-7)))))))));
    /* n = round(t / ln2) sits in the low mantissa bits of `shifted`.  The
       unsigned arithmetic is n + 2048 (in [4, 2048]), which halves with a
       logical shift: x86 has no 64-bit arithmetic shift before AVX-512.  For
       NaN the bits are garbage but stay defined, and p is NaN anyway. */
    uint64_t biased = fc_f64_to_bits(shifted) - fc_f64_to_bits(shift) + 2048;
    uint64_t half = (biased >> 1) - 1024;           /* floor(n / 2) */
    uint64_t rest = biased - 2048 - half;           /* n - floor(n / 2) */
    /* Two factors, each a normal number, so that products in the subnormal
       range round once (gradual underflow) instead of flushing to zero. */
    double scale_a = fc_bits_to_f64((half + 1023) << 52);
    double scale_b = fc_bits_to_f64((rest + 1023) << 52);
    return p * scale_a * scale_b;
}

/* exp(t) for t <= 0 or NaN, in float32 throughout. */
FC_ALWAYS_INLINE float fc_exp_nonpositive_f32(float t)
{
    const float shift = 12582912.0f; /* 1.5 * 2**23 */
    const float inv_ln2 = 1.44269504f;
    const float ln2_hi = 0.693145751953125f;
    const float ln2_lo = 1.428606765330187e-06f;
    float clamped = t < -150.0f ? -150.0f : t; /* rounds to 0; n >= -252 */
    float shifted = clamped * inv_ln2 + shift;
    float nf = shifted - shift;
    float r = (clamped - nf * ln2_hi) - nf * ln2_lo;
    float p = 1.0f + r * (1.0f + r * (0.49999988595112801618f + r * (0.1666651845998037474f
        + r * (0.041669533109223250133f + r * (0.0083689163413751266887f
        + r * 0.0013751407895822138688f)))));
    uint32_t biased = fc_f32_to_bits(shifted) - fc_f32_to_bits(shift) + 256;
    uint32_t half = (biased >> 1) - 128;
    uint32_t rest = biased - 256 - half;
    float scale_a = fc_bits_to_f32((half + 127) << 23);
    float scale_b = fc_bits_to_f32((rest + 127) << 23);
    return p * scale_a * scale_b;
}

/* tanh(v) = -m / (2 + m) for v >= 0, with m = expm1(-2 v) from exp's
   reduction: expm1(t) = 2**n (p(r) - 1) + (2**n - 1), where p - 1 = r + r**2 q(r)
   is fitted to expm1 in relative error (see _vecmath.py): full relative
   accuracy near 0, where (1 - e) / (1 + e) would lose it.  Below the clamp
   expm1 is -1 to working precision, so 2**n stays normal.  NaN flows through. */
FC_ALWAYS_INLINE double fc_tanh_f64(double v)
{
    const double shift = 6755399441055744.0;
    const double inv_ln2 = 1.4426950408889634;
    const double ln2_hi = 6.93147180369123816490e-01;
    const double ln2_lo = 1.90821492927058770002e-10;
    double t = -2.0 * fabs(v);
    t = t < -40.0 ? -40.0 : t;
    double shifted = t * inv_ln2 + shift;
    double nf = shifted - shift;
    double r = (t - nf * ln2_hi) - nf * ln2_lo;
    double pm1 = r + r * r * (0.50000000000000057134 + r * (0.16666666666666581365
        + r * (0.041666666666569400127 + r * (0.0083333333333940971649
        + r * (0.0013888888934158971891 + r * (0.00019841269711703169671
        + r * (0.000024801501980650069000 + r * (0.0000027557410967636450028
        + r * (2.7627404606753659245e-7 + r * 2.5053847250655854011e-8)))))))));
    /* n = round(t / ln2) in [-58, 0] sits in the low mantissa bits of shifted. */
    uint64_t biased = fc_f64_to_bits(shifted) - fc_f64_to_bits(shift) + 1023;
    double scale = fc_bits_to_f64(biased << 52);
    double m = pm1 * scale + (scale - 1.0);
    return copysign(-m / (2.0 + m), v);
}

FC_ALWAYS_INLINE float fc_tanh_f32(float v)
{
    const float shift = 12582912.0f;
    const float inv_ln2 = 1.44269504f;
    const float ln2_hi = 0.693145751953125f;
    const float ln2_lo = 1.428606765330187e-06f;
    float t = -2.0f * fabsf(v);
    t = t < -20.0f ? -20.0f : t;
    float shifted = t * inv_ln2 + shift;
    float nf = shifted - shift;
    float r = (t - nf * ln2_hi) - nf * ln2_lo;
    float pm1 = r + r * r * (0.49999998041368250707f + r * (0.16666538676522579667f
        + r * (0.041667221420453641195f + r * (0.0083671814253952113974f
        + r * 0.0013882385488359181840f))));
    uint32_t biased = fc_f32_to_bits(shifted) - fc_f32_to_bits(shift) + 127;
    float scale = fc_bits_to_f32(biased << 23);
    float m = pm1 * scale + (scale - 1.0f);
    return copysignf(-m / (2.0f + m), v);
}

#endif
