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

/*
 * fc_madd_T(a, b, c) = a * b + c (T float or double) as the vector kernels'
 * sums compute it: one rounding (an FMA) where the instruction set has FMA, where
 * -ffp-contract=fast fuses the vector kernels' acc += w * x; two roundings
 * where it has none.  The scalar paths (image edges, rows narrower than a
 * vector) use it, so that every output element is the same rounded sum on
 * every path: a result does not depend on which path computed it, so not on
 * the image's size or on where a block of it starts (fastcalc.dask).
 */
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__FMA__) || defined(__ARM_FEATURE_FMA))
static inline double fc_madd_double(double a, double b, double c) { return __builtin_fma(a, b, c); }
static inline float fc_madd_float(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
#else
static inline double fc_madd_double(double a, double b, double c) { return a * b + c; }
static inline float fc_madd_float(float a, float b, float c) { return a * b + c; }
#endif

#endif
