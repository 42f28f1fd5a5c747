/*
 * The FMA probe of fastcalc._bench.peak_gflop_per_s.  Only the convolution
 * module exposes it; the other kernel modules do not include this header.
 */
#ifndef FASTCALC_FMA_PROBE_H
#define FASTCALC_FMA_PROBE_H

#include "vectors.h"

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
