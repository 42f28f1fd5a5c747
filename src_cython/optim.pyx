"""Cython kernels for batched gradient descent: the built-in linear and logistic models.

Same name and signature as :mod:`fastcalc.reference.optim` (its docstring
states the contract): ``fit(X, y, coef, intercept, lr, n_iter, loss, l2,
scales, fit_intercept, order, batch_size, losses, num_threads)``, every array
C-contiguous, native, of one dtype (float32 or float64).  A user's
``grad`` cannot run here (it would have to be compiled ahead of time):
there is no ``gradient_descent`` in this module.

The problems are independent, so threads share them out, and each thread
trains one problem at a time with its rows transposed to (D, N) (or each
mini-batch gathered so) in a scratch buffer that stays in L1 cache for all
the steps; every step is one pass of the C kernel of optim.h over it.

setup.py compiles this file once per instruction set; :func:`fastcalc._cython.load`
imports the best one the CPU runs.
"""

cimport cython
cimport numpy as cnp
from cython.parallel cimport parallel, prange

import numpy as np

from _fused cimport floating
from _openmp cimport FASTCALC_OPENMP, fastcalc_current_cpu, fastcalc_leave_cpu

__all__ = ["OPENMP", "fit"]

# Whether prange runs on threads; without OpenMP the kernels are serial.
OPENMP = FASTCALC_OPENMP

cnp.import_array()

cdef extern from "optim.h" nogil:
    Py_ssize_t FC_FIT_WIDE, FC_FIT_LANES_F32, FC_FIT_LANES_F64
    Py_ssize_t fc_fit_padded_rows(Py_ssize_t rows, Py_ssize_t lanes)
    float fc_fit_step_f32(const float* XT, Py_ssize_t ld, const float* y, Py_ssize_t n,
                          Py_ssize_t D, float* w, float* b, float lr, int loss, float l2,
                          float scale, int fit_intercept, float* G, float* r, float* partial,
                          float* factor)
    double fc_fit_step_f64(const double* XT, Py_ssize_t ld, const double* y, Py_ssize_t n,
                           Py_ssize_t D, double* w, double* b, double lr, int loss, double l2,
                           double scale, int fit_intercept, double* G, double* r,
                           double* partial, double* factor)

# Problem-steps x rows x features worth one more thread.
cdef Py_ssize_t _PARALLEL_MIN_WORK = 1 << 16


cdef inline Py_ssize_t _lanes(floating unused) noexcept nogil:
    """The elements of a vector of the C step."""
    if floating is float:
        return FC_FIT_LANES_F32
    else:
        return FC_FIT_LANES_F64


cdef inline floating _step(const floating* XT, Py_ssize_t ld, const floating* y, Py_ssize_t n,
                           Py_ssize_t D, floating* w, floating* b, floating lr, int loss,
                           floating l2, floating scale, int fit_intercept, floating* G,
                           floating* r, floating* partial, floating* factor) noexcept nogil:
    if floating is float:
        return fc_fit_step_f32(XT, ld, y, n, D, w, b, lr, loss, l2, scale, fit_intercept, G, r,
                               partial, factor)
    else:
        return fc_fit_step_f64(XT, ld, y, n, D, w, b, lr, loss, l2, scale, fit_intercept, G, r,
                               partial, factor)


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)
cdef void _fit_problems(const floating* X, const floating* y, floating* coef,
                        floating* intercept, Py_ssize_t N, Py_ssize_t D, floating lr,
                        Py_ssize_t n_iter, int loss, floating l2, const floating* scales,
                        int fit_intercept, const cnp.int64_t* order, Py_ssize_t epochs,
                        Py_ssize_t batch_size, floating* losses, floating* scratch,
                        Py_ssize_t first, Py_ssize_t last) noexcept nogil:
    """Train problems first..last-1, one after the other, in ``scratch``."""
    cdef Py_ssize_t lanes = _lanes(<floating>0)
    cdef Py_ssize_t ld = fc_fit_padded_rows(batch_size, lanes)
    cdef floating* XT = scratch
    cdef floating* y_batch = XT + D * ld
    cdef floating* G = y_batch + ld
    cdef floating* r = G + D * lanes
    cdef floating* partial = r + FC_FIT_WIDE * lanes
    cdef floating* factor = partial + FC_FIT_WIDE * lanes
    cdef Py_ssize_t per_epoch = (N + batch_size - 1) // batch_size
    cdef Py_ssize_t p, t, i, d, n = N, row, start
    cdef const floating* x
    cdef floating b
    for i in range(D * ld + ld):  # the padding rows stay zero
        scratch[i] = 0
    for p in range(first, last):
        x = X + p * N * D
        if epochs == 0:
            for i in range(N):
                y_batch[i] = y[p * N + i]
                for d in range(D):
                    XT[d * ld + i] = x[i * D + d]
        b = intercept[p]
        for t in range(n_iter):
            if epochs:
                start = t % per_epoch * batch_size
                n = min(batch_size, N - start)
                for i in range(n):
                    row = order[t // per_epoch * N + start + i]
                    y_batch[i] = y[p * N + row]
                    for d in range(D):
                        XT[d * ld + i] = x[row * D + d]
                for i in range(n, batch_size):  # a short last batch: zero the rest
                    y_batch[i] = 0
                    for d in range(D):
                        XT[d * ld + i] = 0
            losses[p * n_iter + t] = _step(XT, ld, y_batch, n, D, coef + p * D, &b, lr, loss,
                                           l2, scales[n], fit_intercept, G, r, partial, factor)
        intercept[p] = b


cdef void _fit(const floating* X, const floating* y, floating* coef, floating* intercept,
               Py_ssize_t P, Py_ssize_t N, Py_ssize_t D, floating lr, Py_ssize_t n_iter,
               int loss, floating l2, const floating* scales, int fit_intercept,
               const cnp.int64_t* order, Py_ssize_t epochs, Py_ssize_t batch_size,
               floating* losses, floating* scratch, Py_ssize_t scratch_size,
               int threads) noexcept:
    cdef Py_ssize_t index
    cdef int caller_cpu
    with nogil:
        if threads == 1:
            _fit_problems(X, y, coef, intercept, N, D, lr, n_iter, loss, l2, scales,
                          fit_intercept, order, epochs, batch_size, losses, scratch, 0, P)
        else:
            caller_cpu = fastcalc_current_cpu()
            with parallel(num_threads=threads):
                fastcalc_leave_cpu(caller_cpu)
                for index in prange(threads, schedule="static"):
                    _fit_problems(X, y, coef, intercept, N, D, lr, n_iter, loss, l2, scales,
                                  fit_intercept, order, epochs, batch_size, losses,
                                  scratch + index * scratch_size, P * index // threads,
                                  P * (index + 1) // threads)


cdef inline void* _data(object array):
    return cnp.PyArray_DATA(<cnp.ndarray>array)


def fit(X, y, coef, intercept, double lr, Py_ssize_t n_iter, int loss, double l2, scales,
        bint fit_intercept, order, Py_ssize_t batch_size, losses, int num_threads):
    """Train the P models of X (P, N, D) in place: coef, intercept and losses."""
    cdef Py_ssize_t P = cnp.PyArray_DIM(X, 0), N = cnp.PyArray_DIM(X, 1)
    cdef Py_ssize_t D = cnp.PyArray_DIM(X, 2), epochs = cnp.PyArray_DIM(order, 0)
    cdef bint single = cnp.PyArray_TYPE(X) == cnp.NPY_FLOAT32
    cdef Py_ssize_t lanes = _lanes(<float>0) if single else _lanes(<double>0)
    # No overflow in the sizes: batch_size <= N and D are dimensions of X, an
    # array of N * D elements per problem, so (D + 1) * ld (ld < N + 128, the
    # padding of a block) and threads * scratch_size (threads <= P) stay near
    # X's own size; every index into X, y, coef, losses and order is below
    # that array's size.
    cdef Py_ssize_t ld = fc_fit_padded_rows(batch_size, lanes)
    cdef Py_ssize_t scratch_size = (D + 1) * ld + D * lanes + 3 * FC_FIT_WIDE * lanes
    # The work in double: P * n_iter * N * D may pass 2**63 (n_iter is only
    # bounded by int64).
    cdef double work = <double>P * <double>n_iter * <double>N * <double>max(D, 1)
    cdef int threads = <int>max(1, min(num_threads, P, work / _PARALLEL_MIN_WORK))
    scratch = np.empty(threads * scratch_size, X.dtype)
    if single:
        _fit[float](<float*>_data(X), <float*>_data(y), <float*>_data(coef),
                    <float*>_data(intercept), P, N, D, <float>lr, n_iter, loss, <float>l2,
                    <float*>_data(scales), fit_intercept, <cnp.int64_t*>_data(order), epochs,
                    batch_size, <float*>_data(losses), <float*>_data(scratch), scratch_size,
                    threads)
    else:
        _fit[double](<double*>_data(X), <double*>_data(y), <double*>_data(coef),
                     <double*>_data(intercept), P, N, D, lr, n_iter, loss, l2,
                     <double*>_data(scales), fit_intercept, <cnp.int64_t*>_data(order),
                     epochs, batch_size, <double*>_data(losses), <double*>_data(scratch),
                     scratch_size, threads)
