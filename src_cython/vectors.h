/*
 * Portable SIMD vectors for the convolution kernels: GCC/Clang vector types,
 * as wide as the instruction set this translation unit is compiled for
 * (setup.py compiles each kernel module once per ISA).  Other compilers get
 * FC_VECTOR 0 and the kernels' scalar code.
 */
#ifndef FASTCALC_VECTORS_H
#define FASTCALC_VECTORS_H

#include <stddef.h>

#if defined(__GNUC__) || defined(__clang__)
#define FC_VECTOR 1
#if defined(__AVX512F__)
#define FC_VBYTES 64
#elif defined(__AVX__)
#define FC_VBYTES 32
#else
#define FC_VBYTES 16
#endif
/* Unaligned, aliasing vector types: loads and stores through them are
   vmovups/movups of any address. */
typedef float fc_vf __attribute__((vector_size(FC_VBYTES), aligned(4), may_alias));
typedef double fc_vd __attribute__((vector_size(FC_VBYTES), aligned(8), may_alias));
/* w + FC_NEGZERO(V) broadcasts w exactly (x + -0 == x for every x, so
   the compiler drops the addition; with +0 it must keep it for -0). */
#define FC_NEGZERO(V) (-(V){0})
/* FC_KEEP(x): x is in a register from here on.  Without it GCC folds the
   load of a vector used several times into each use as a memory operand,
   and loads it again each time. */
#if defined(__x86_64__) || defined(__i386__)
#define FC_KEEP(x) __asm__("" : "+v"(x))
#else
#define FC_KEEP(x) ((void)0)
#endif
#else
#define FC_VECTOR 0
#endif

/* NAME(iterations, &lanes) (lanes may be NULL): iterations x FC_PROBE_CHAINS multiply-adds on
   vectors of `lanes` elements, in independent chains (more than any core's
   FMA latency x throughput), so that the loop runs at the core's peak
   floating-point rate.  The benchmarks' yardstick for "share of peak": a
   measurement, where a formula would have to know how many FMA units of
   which width the core has and at which clock it runs.  Chains start at
   k + 0.5: one starting at 1, the fixed point of x -> 0.999 x + 0.001,
   would be hoisted out of the loop by the compiler. */
#define FC_PROBE_CHAINS 12
#if FC_VECTOR
#define FC_FMA_PROBE(T, V, NAME)                                                            \
static T NAME(long iterations, int* lanes)                                                  \
{                                                                                           \
    enum { L = FC_VBYTES / sizeof(T) };                                                     \
    V acc[FC_PROBE_CHAINS], scale = (T)0.999 + FC_NEGZERO(V), shift = (T)0.001 + FC_NEGZERO(V); \
    T sum = 0;                                                                              \
    long i;                                                                                 \
    int k, lane;                                                                            \
    for (k = 0; k < FC_PROBE_CHAINS; k++)                                                   \
        acc[k] = ((T)k + (T)0.5) + FC_NEGZERO(V);                                          \
    for (i = 0; i < iterations; i++)                                                        \
        for (k = 0; k < FC_PROBE_CHAINS; k++)                                               \
            acc[k] = acc[k] * scale + shift;                                                \
    for (k = 0; k < FC_PROBE_CHAINS; k++)                                                   \
        for (lane = 0; lane < L; lane++)                                                    \
            sum += acc[k][lane];                                                            \
    if (lanes)                                                                              \
        *lanes = L;                                                                         \
    return sum;                                                                             \
}
FC_FMA_PROBE(float, fc_vf, fc_fma_probe_float)
FC_FMA_PROBE(double, fc_vd, fc_fma_probe_double)
#else
#define FC_FMA_PROBE(T, NAME)                                                               \
static T NAME(long iterations, int* lanes)                                                  \
{                                                                                           \
    T acc[FC_PROBE_CHAINS], sum = 0;                                                        \
    long i;                                                                                 \
    int k;                                                                                  \
    for (k = 0; k < FC_PROBE_CHAINS; k++)                                                   \
        acc[k] = (T)k + (T)0.5;                                                             \
    for (i = 0; i < iterations; i++)                                                        \
        for (k = 0; k < FC_PROBE_CHAINS; k++)                                               \
            acc[k] = acc[k] * (T)0.999 + (T)0.001;                                          \
    for (k = 0; k < FC_PROBE_CHAINS; k++)                                                   \
        sum += acc[k];                                                                      \
    if (lanes)                                                                              \
        *lanes = 1;                                                                         \
    return sum;                                                                             \
}
FC_FMA_PROBE(float, fc_fma_probe_float)
FC_FMA_PROBE(double, fc_fma_probe_double)
#endif

#endif
