/*
 * One gradient step of a linear or logistic model on one problem's rows, in
 * C vector types: the loop of fastcalc's fit kernel (optim.pyx).
 *
 * The rows are stored transposed, XT (D, ld) row-major, so a vector holds
 * one feature of L consecutive rows.  Blocks of rows (several vectors)
 * run forward (z = b + sum_d w[d] XT[d]) with z in registers, then
 * through the loss (a short scalar loop the compiler vectorizes: exp is
 * inlined), then back into the gradient, each feature's partial sums kept
 * as a vector in G: XT is read twice per step, from L1, and every vector of
 * it loaded feeds one multiply-add with a register operand.  ld is a
 * multiple of the rows of a block; rows n..ld-1 of XT and y hold zeros.
 *
 * The log loss needs sum(log(1 + e)) with e = exp(-|z|) in (0, 1]: lanes
 * multiply the factors 1 + e (each at most 2) and take one log per 64 of
 * them, a product still inside float32's range.
 */
#ifndef FASTCALC_OPTIM_H
#define FASTCALC_OPTIM_H

#include <math.h>

#include "vecmath.h"
#include "vectors.h"

/* The loss codes of fastcalc.reference.optim. */
enum { FC_LINEAR_SQUARED = 0, FC_LOGISTIC_LOG = 1, FC_LOGISTIC_SQUARED = 2 };

/* A block of rows is FC_FIT_WIDE vectors, or FC_FIT_NARROW in batches smaller
   than a wide block (a mini-batch of 32 rows would be mostly padding).  Eight
   vectors keep enough independent multiply-adds in flight: 268 ns a step
   against 321 ns with four (N = 256, D = 8, float64, AVX-512, linear loss). */
#define FC_FIT_WIDE 8
#define FC_FIT_NARROW 2
#if FC_VECTOR
#define FC_FIT_LANES_F32 (FC_VBYTES / 4)
#define FC_FIT_LANES_F64 (FC_VBYTES / 8)
#else
#define FC_FIT_LANES_F32 1
#define FC_FIT_LANES_F64 1
#endif

/* The rows of the scratch for batches of `rows` rows: padded to whole blocks. */
static Py_ssize_t fc_fit_padded_rows(Py_ssize_t rows, Py_ssize_t lanes)
{
    Py_ssize_t block = (rows >= FC_FIT_WIDE * lanes ? FC_FIT_WIDE : FC_FIT_NARROW) * lanes;
    return (rows + block - 1) / block * block;
}

/* For the R rows of a block (R a constant once inlined), from their linear outputs z (given in r) and
   targets y: r = dloss/dz, the row's loss without log(1 + e) (partial) and
   1 + e (factor; 1 unless the log loss).  One loop per loss, so that each
   vectorizes (exp is inlined). */
#define FC_FIT_ROW(T, NAME, EXP_NONPOSITIVE)                                                    \
FC_ALWAYS_INLINE void NAME(int loss, int R, T* restrict r, const T* restrict y,                  \
                           T* restrict partial, T* restrict factor)                             \
{                                                                                               \
    int i;                                                                                      \
    if (loss == FC_LINEAR_SQUARED) {                                                            \
        for (i = 0; i < R; i++) {                                                               \
            T error = r[i] - y[i];                                                              \
            r[i] = error;                                                                       \
            partial[i] = (T)0.5 * error * error;                                                \
            factor[i] = 1;                                                                      \
        }                                                                                       \
    } else if (loss == FC_LOGISTIC_LOG) {                                                       \
        for (i = 0; i < R; i++) {                                                               \
            T z = r[i], e = EXP_NONPOSITIVE(z < 0 ? z : -z);                                    \
            T p = (z >= 0 ? (T)1 : e) / ((T)1 + e);                                             \
            r[i] = p - y[i];                                                                    \
            partial[i] = (z > 0 ? z : (T)0) - y[i] * z;                                         \
            factor[i] = (T)1 + e;                                                               \
        }                                                                                       \
    } else {                                                                                    \
        for (i = 0; i < R; i++) {                                                               \
            T z = r[i], e = EXP_NONPOSITIVE(z < 0 ? z : -z);                                    \
            T p = (z >= 0 ? (T)1 : e) / ((T)1 + e), error = p - y[i];                           \
            r[i] = error * p * ((T)1 - p);                                                      \
            partial[i] = (T)0.5 * error * error;                                                \
            factor[i] = 1;                                                                      \
        }                                                                                       \
    }                                                                                           \
}
FC_FIT_ROW(float, fc_fit_row_f32, fc_exp_nonpositive_f32)
FC_FIT_ROW(double, fc_fit_row_f64, fc_exp_nonpositive_f64)

/* NAME(XT, ld, y, n, D, w, b, lr, loss, l2, scale, fit_intercept, G, r, partial, factor):
   one step on rows 0..n-1, w (D,) and *b updated in place; returns the objective
   before the step.  ld = fc_fit_padded_rows(batch size, lanes).  Scratch: G holds
   D * lanes elements, r, partial and factor FC_FIT_WIDE * lanes each. */
#if FC_VECTOR
#define FC_FIT_STEP(T, V, NAME, ROW, U)                                                         \
static T NAME(const T* XT, Py_ssize_t ld, const T* y, Py_ssize_t n, Py_ssize_t D, T* w, T* b,   \
              T lr, int loss, T l2, T scale, int fit_intercept, T* G, T* restrict r,            \
              T* restrict partial, T* restrict factor)                                          \
{                                                                                               \
    enum { L = FC_VBYTES / sizeof(T), R = U * L, FOLD = 64 / U };                              \
    V* gradient = (V*)G;                                                                        \
    V zero = {0}, one = (T)1 + FC_NEGZERO(V), r_sum = zero, loss_sum = zero, product = one;    \
    T logs = 0, penalty = 0, total = 0, r_total = 0;                                            \
    Py_ssize_t start, i, d;                                                                     \
    int u, lane, blocks = 0;                                                                    \
    for (d = 0; d < D; d++)                                                                     \
        gradient[d] = zero;                                                                     \
    for (start = 0; start < n; start += R) {                                                    \
        V z[U], rv[U];                                                                          \
        for (u = 0; u < U; u++)                                                                 \
            z[u] = *b + FC_NEGZERO(V);                                                          \
        for (d = 0; d < D; d++) {                                                               \
            V wd = w[d] + FC_NEGZERO(V);                                                        \
            const T* x = XT + d * ld + start;                                                   \
            for (u = 0; u < U; u++)                                                             \
                z[u] += wd * *(const V*)(x + u * L);                                            \
        }                                                                                       \
        for (u = 0; u < U; u++)                                                                 \
            *(V*)(r + u * L) = z[u];                                                            \
        ROW(loss, R, r, y + start, partial, factor);                                            \
        for (i = n - start; i < R; i++) { /* the padding rows of the last block */              \
            r[i] = 0;                                                                           \
            partial[i] = 0;                                                                     \
            factor[i] = 1;                                                                      \
        }                                                                                       \
        for (u = 0; u < U; u++) {                                                               \
            rv[u] = *(const V*)(r + u * L);                                                     \
            r_sum += rv[u];                                                                     \
            loss_sum += *(const V*)(partial + u * L);                                           \
            product *= *(const V*)(factor + u * L);                                             \
        }                                                                                       \
        if (loss == FC_LOGISTIC_LOG && ++blocks == FOLD) {                                      \
            for (lane = 0; lane < L; lane++)                                                    \
                logs += log(product[lane]);                                                     \
            product = one;                                                                      \
            blocks = 0;                                                                         \
        }                                                                                       \
        for (d = 0; d < D; d++) {                                                               \
            const T* x = XT + d * ld + start;                                                   \
            V g = gradient[d];                                                                  \
            for (u = 0; u < U; u++)                                                             \
                g += rv[u] * *(const V*)(x + u * L);                                            \
            gradient[d] = g;                                                                    \
        }                                                                                       \
    }                                                                                           \
    for (lane = 0; lane < L; lane++) {                                                          \
        if (loss == FC_LOGISTIC_LOG)                                                            \
            logs += log(product[lane]);                                                         \
        total += loss_sum[lane];                                                                \
        r_total += r_sum[lane];                                                                 \
    }                                                                                           \
    for (d = 0; d < D; d++)                                                                     \
        penalty += w[d] * w[d];                                                                 \
    for (d = 0; d < D; d++) {                                                                   \
        T g = 0;                                                                                \
        for (lane = 0; lane < L; lane++)                                                        \
            g += gradient[d][lane];                                                             \
        w[d] -= lr * (scale * g + l2 * w[d]);                                                   \
    }                                                                                           \
    if (fit_intercept)                                                                          \
        *b -= lr * scale * r_total;                                                             \
    return scale * (total + (T)logs) + (T)0.5 * l2 * penalty;                                  \
}
FC_FIT_STEP(float, fc_vf, fc_fit_wide_f32, fc_fit_row_f32, FC_FIT_WIDE)
FC_FIT_STEP(float, fc_vf, fc_fit_narrow_f32, fc_fit_row_f32, FC_FIT_NARROW)
FC_FIT_STEP(double, fc_vd, fc_fit_wide_f64, fc_fit_row_f64, FC_FIT_WIDE)
FC_FIT_STEP(double, fc_vd, fc_fit_narrow_f64, fc_fit_row_f64, FC_FIT_NARROW)

#define FC_FIT_DISPATCH(T, NAME, WIDE, NARROW, LANES)                                           \
static T NAME(const T* XT, Py_ssize_t ld, const T* y, Py_ssize_t n, Py_ssize_t D, T* w, T* b,   \
              T lr, int loss, T l2, T scale, int fit_intercept, T* G, T* r, T* partial,        \
              T* factor)                                                                        \
{                                                                                               \
    if (ld % (FC_FIT_WIDE * LANES) == 0)                                                        \
        return WIDE(XT, ld, y, n, D, w, b, lr, loss, l2, scale, fit_intercept, G, r, partial,   \
                    factor);                                                                    \
    return NARROW(XT, ld, y, n, D, w, b, lr, loss, l2, scale, fit_intercept, G, r, partial,     \
                  factor);                                                                      \
}
FC_FIT_DISPATCH(float, fc_fit_step_f32, fc_fit_wide_f32, fc_fit_narrow_f32, FC_FIT_LANES_F32)
FC_FIT_DISPATCH(double, fc_fit_step_f64, fc_fit_wide_f64, fc_fit_narrow_f64, FC_FIT_LANES_F64)
#else
#define FC_FIT_STEP(T, NAME, ROW)                                                               \
static T NAME(const T* XT, Py_ssize_t ld, const T* y, Py_ssize_t n, Py_ssize_t D, T* w, T* b,   \
              T lr, int loss, T l2, T scale, int fit_intercept, T* G, T* r, T* partial,        \
              T* factor)                                                                        \
{                                                                                               \
    T logs = 0, penalty = 0, total = 0, r_total = 0, z;                                        \
    Py_ssize_t i, d;                                                                            \
    for (d = 0; d < D; d++)                                                                     \
        G[d] = 0;                                                                               \
    for (i = 0; i < n; i++) {                                                                   \
        z = *b;                                                                                 \
        for (d = 0; d < D; d++)                                                                 \
            z += w[d] * XT[d * ld + i];                                                         \
        ROW(loss, z, y[i], r, partial, factor);                                                 \
        total += *partial;                                                                      \
        logs += log(*factor);                                                                   \
        r_total += *r;                                                                          \
        for (d = 0; d < D; d++)                                                                 \
            G[d] += *r * XT[d * ld + i];                                                        \
    }                                                                                           \
    for (d = 0; d < D; d++)                                                                     \
        penalty += w[d] * w[d];                                                                 \
    for (d = 0; d < D; d++)                                                                     \
        w[d] -= lr * (scale * G[d] + l2 * w[d]);                                                \
    if (fit_intercept)                                                                          \
        *b -= lr * scale * r_total;                                                             \
    return scale * (total + logs) + (T)0.5 * l2 * penalty;                                     \
}
FC_FIT_STEP(float, fc_fit_step_f32, fc_fit_row_f32)
FC_FIT_STEP(double, fc_fit_step_f64, fc_fit_row_f64)
#endif

#endif
