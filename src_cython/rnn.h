/*
 * The RNN's products in C vector types: c += a @ b (or a.T @ b) for the
 * small matrices of one time step, a (m, k) (or (k, m)) and b (k, n) row-major.
 *
 * BLAS packs b on every call, which at one (B, H) x (H, H) product per step
 * costs as much as the product itself.  Here b (Whh or its transpose) stays
 * where it is, in cache from one step to the next, and blocks of 4 rows x
 * FC_RNN_NV vectors of c are summed in registers over all of k: every b
 * vector loaded feeds 4 multiply-adds.  Columns past the last whole vector
 * and rows past the last group of 4 take narrower loops.
 *
 * Whatever the path, an element is summed in one order: in the vector
 * columns from c's value over p = 0 .. k - 1, in the scalar tail columns
 * (the same columns for every row) from 0 over p, then added to c.  So a
 * row's result does not depend on which rows share the call: rnn.pyx's
 * threads and slices rely on it (tests/test_rnn.py checks the bits).  Every
 * index is below the size of a, b or c, arrays that exist: no overflow.
 */
#ifndef FASTCALC_RNN_H
#define FASTCALC_RNN_H

#include "vectors.h"

/* Element (i, p) of the left factor: a (m, k) row-major, or (FC_A_T) the
   transpose of a (k, m) row-major, for the weight gradients' a.T @ b. */
#define FC_A(a, lda, i, p) (a)[(i) * (lda) + (p)]
#define FC_A_T(a, lda, i, p) (a)[(p) * (lda) + (i)]

#if FC_VECTOR
/* 4 x 4 accumulators fit AVX-512's 32 registers; 4 x 2 the 16 of AVX2 / SSE2. */
#if FC_VBYTES == 64
#define FC_RNN_NV 4
#else
#define FC_RNN_NV 2
#endif

#define FC_MATMUL_ADD(T, V, NAME, A)                                                   \
static void NAME(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const T* a, Py_ssize_t lda, \
                 const T* b, Py_ssize_t ldb, T* c, Py_ssize_t ldc)                     \
{                                                                                      \
    enum { L = FC_VBYTES / sizeof(T), NV = FC_RNN_NV };                                \
    Py_ssize_t i, j, p;                                                                \
    int r, u;                                                                          \
    for (i = 0; i + 4 <= m; i += 4) {                                                  \
        for (j = 0; j + NV * L <= n; j += NV * L) {                                    \
            V acc[4][NV];                                                              \
            for (r = 0; r < 4; r++)                                                    \
                for (u = 0; u < NV; u++)                                               \
                    acc[r][u] = *(const V*)(c + (i + r) * ldc + j + u * L);            \
            for (p = 0; p < k; p++) {                                                  \
                V bv[NV];                                                              \
                for (u = 0; u < NV; u++) {                                             \
                    bv[u] = *(const V*)(b + p * ldb + j + u * L);                      \
                    FC_KEEP(bv[u]);                                                    \
                }                                                                      \
                for (r = 0; r < 4; r++) {                                              \
                    V av = A(a, lda, i + r, p) + FC_NEGZERO(V);                       \
                    for (u = 0; u < NV; u++)                                           \
                        acc[r][u] += av * bv[u];                                       \
                }                                                                      \
            }                                                                          \
            for (r = 0; r < 4; r++)                                                    \
                for (u = 0; u < NV; u++)                                               \
                    *(V*)(c + (i + r) * ldc + j + u * L) = acc[r][u];                  \
        }                                                                              \
        for (; j + L <= n; j += L) {                                                   \
            V acc[4];                                                                  \
            for (r = 0; r < 4; r++)                                                    \
                acc[r] = *(const V*)(c + (i + r) * ldc + j);                           \
            for (p = 0; p < k; p++) {                                                  \
                V bv = *(const V*)(b + p * ldb + j);                                   \
                for (r = 0; r < 4; r++)                                                \
                    acc[r] += (A(a, lda, i + r, p) + FC_NEGZERO(V)) * bv;             \
            }                                                                          \
            for (r = 0; r < 4; r++)                                                    \
                *(V*)(c + (i + r) * ldc + j) = acc[r];                                 \
        }                                                                              \
        for (; j < n; j++)                                                             \
            for (r = 0; r < 4; r++) {                                                  \
                T total = 0;                                                           \
                for (p = 0; p < k; p++)                                                \
                    total += A(a, lda, i + r, p) * b[p * ldb + j];                    \
                c[(i + r) * ldc + j] += total;                                         \
            }                                                                          \
    }                                                                                  \
    for (; i < m; i++) {                                                               \
        for (j = 0; j + L <= n; j += L) {                                              \
            V acc = *(const V*)(c + i * ldc + j);                                      \
            for (p = 0; p < k; p++)                                                    \
                acc += (A(a, lda, i, p) + FC_NEGZERO(V)) * *(const V*)(b + p * ldb + j); \
            *(V*)(c + i * ldc + j) = acc;                                              \
        }                                                                              \
        for (; j < n; j++) {                                                           \
            T total = 0;                                                               \
            for (p = 0; p < k; p++)                                                    \
                total += A(a, lda, i, p) * b[p * ldb + j];                              \
            c[i * ldc + j] += total;                                                   \
        }                                                                              \
    }                                                                                  \
}
FC_MATMUL_ADD(float, fc_vf, fc_matmul_add_float, FC_A)
FC_MATMUL_ADD(double, fc_vd, fc_matmul_add_double, FC_A)
FC_MATMUL_ADD(float, fc_vf, fc_matmul_t_add_float, FC_A_T)
FC_MATMUL_ADD(double, fc_vd, fc_matmul_t_add_double, FC_A_T)
#else
#define FC_MATMUL_ADD(T, NAME, A)                                                      \
static void NAME(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const T* a, Py_ssize_t lda, \
                 const T* b, Py_ssize_t ldb, T* c, Py_ssize_t ldc)                     \
{                                                                                      \
    Py_ssize_t i, j, p;                                                                \
    for (i = 0; i < m; i++)                                                            \
        for (j = 0; j < n; j++) {                                                      \
            T total = 0;                                                               \
            for (p = 0; p < k; p++)                                                    \
                total += A(a, lda, i, p) * b[p * ldb + j];                              \
            c[i * ldc + j] += total;                                                   \
        }                                                                              \
}
FC_MATMUL_ADD(float, fc_matmul_add_float, FC_A)
FC_MATMUL_ADD(double, fc_matmul_add_double, FC_A)
FC_MATMUL_ADD(float, fc_matmul_t_add_float, FC_A_T)
FC_MATMUL_ADD(double, fc_matmul_t_add_double, FC_A_T)
#endif

#endif
