"""Cython kernels for the Elman RNN family.

Same names and signatures as :mod:`fastcalc.reference.rnn` (its docstring
states the contract): ``rnn_forward(x, h0, Wxh, Whh, Why, bh, by, h, y,
num_threads)`` and ``rnn_backward(dy, x, h, h0, Wxh, Whh, Why, dh_last,
clip, dx, dh0, dWxh, dWhh, dbh, dWhy, dby, num_threads)``, every array
C-contiguous, native, of one dtype (float32 or float64), batched (T, B, ...).

The whole time loop runs here, without the GIL.  Everything that does not
depend on the previous step is one matrix product over all T * B rows:
the input projection before the loop, the outputs after it; backward, dL/dh
through the outputs before the loop, and the weight gradients and dL/dx
after it.  Inside the loop remain one (B, H) x (H, H) product and the tanh
(or its derivative) per step.  Products of at least ``BLAS_MIN_WORK``
multiply-adds go to BLAS (scipy's, through the function pointers of
``scipy.linalg.cython_blas``), smaller ones to plain loops, which beat a
BLAS call's overhead there (the seed's RNN is all small products).
BLAS threads its large products itself; ``num_threads`` is not used.

setup.py compiles this file once per instruction set; :func:`fastcalc._cython.load`
imports the best one the CPU runs.
"""

cimport cython
cimport numpy as cnp
from cpython.pycapsule cimport PyCapsule_GetName, PyCapsule_GetPointer
from libc.limits cimport INT_MAX

import numpy as np
from scipy.linalg import cython_blas

from _fused cimport floating
from _vecmath cimport tanh

__all__ = ["BLAS_MIN_WORK", "rnn_backward", "rnn_forward"]

cnp.import_array()

ctypedef void (*sgemm_t)(const char* transa, const char* transb, const int* m, const int* n,
                         const int* k, const float* alpha, const float* a, const int* lda,
                         const float* b, const int* ldb, const float* beta, float* c,
                         const int* ldc) noexcept nogil
ctypedef void (*dgemm_t)(const char* transa, const char* transb, const int* m, const int* n,
                         const int* k, const double* alpha, const double* a, const int* lda,
                         const double* b, const int* ldb, const double* beta, double* c,
                         const int* ldc) noexcept nogil


cdef void* _blas_function(str name) except NULL:
    capsule = cython_blas.__pyx_capi__[name]
    return PyCapsule_GetPointer(capsule, PyCapsule_GetName(capsule))


cdef sgemm_t _sgemm = <sgemm_t>_blas_function("sgemm")
cdef dgemm_t _dgemm = <dgemm_t>_blas_function("dgemm")

# A product of fewer multiply-adds runs in the loops below: a BLAS call costs
# about as much as this many of them (measured with benchmarks/bench_rnn.py).
cdef Py_ssize_t _BLAS_MIN_WORK = 1 << 12
BLAS_MIN_WORK = _BLAS_MIN_WORK


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _matmul(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                  const floating* a, Py_ssize_t lda, const floating* b, Py_ssize_t ldb,
                  bint accumulate, floating* c, Py_ssize_t ldc) noexcept nogil:
    """``c = op(a) @ op(b)`` (``+= `` if ``accumulate``), all row-major.

    ``op(a)`` is (m, k): ``a`` itself, or ``a.T`` for ``trans_a``; likewise
    ``op(b)`` (k, n).  ``c`` is never read unless accumulating, so it may
    hold anything (NaN) before.
    """
    cdef int im = <int>m, in_ = <int>n, ik = <int>k, ilda = <int>lda, ildb = <int>ldb
    cdef int ildc = <int>ldc
    cdef char ta = b"T" if trans_a else b"N"
    cdef char tb = b"T" if trans_b else b"N"
    cdef floating one = 1
    cdef floating beta = 1 if accumulate else 0
    cdef Py_ssize_t i, j, p
    cdef floating total
    if (m * n * k >= _BLAS_MIN_WORK and max(m, n, k) <= INT_MAX
            and max(lda, ldb, ldc) <= INT_MAX):
        # Row-major c = op(a) op(b) is column-major c.T = op(b).T op(a).T:
        # BLAS sees each row-major matrix as its transpose.
        if floating is float:
            _sgemm(&tb, &ta, &in_, &im, &ik, &one, b, &ildb, a, &ilda, &beta, c, &ildc)
        else:
            _dgemm(&tb, &ta, &in_, &im, &ik, &one, b, &ildb, a, &ilda, &beta, c, &ildc)
        return
    for i in range(m):
        for j in range(n):
            total = 0
            for p in range(k):
                total += ((a[p * lda + i] if trans_a else a[i * lda + p])
                          * (b[j * ldb + p] if trans_b else b[p * ldb + j]))
            if accumulate:
                c[i * ldc + j] += total
            else:
                c[i * ldc + j] = total


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _fill_rows(floating* out, Py_ssize_t rows, const floating* row,
                     Py_ssize_t n) noexcept nogil:
    """Every one of ``rows`` rows of ``out`` (rows, n) becomes ``row``."""
    cdef Py_ssize_t r, j
    for r in range(rows):
        for j in range(n):
            out[r * n + j] = row[j]


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _column_sums(const floating* a, Py_ssize_t rows, Py_ssize_t n,
                       floating* out) noexcept nogil:
    """``out = a.sum(axis=0)`` for ``a`` (rows, n)."""
    cdef Py_ssize_t r, j
    for j in range(n):
        out[j] = 0
    for r in range(rows):
        for j in range(n):
            out[j] += a[r * n + j]


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _clip(floating* a, Py_ssize_t n, floating limit) noexcept nogil:
    """Clip ``a`` to [-limit, limit] in place; NaN stays NaN."""
    cdef Py_ssize_t i
    for i in range(n):
        a[i] = limit if a[i] > limit else (-limit if a[i] < -limit else a[i])


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _forward(Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, Py_ssize_t O,
                   const floating* x, const floating* h0, const floating* Wxh,
                   const floating* Whh, const floating* Why, const floating* bh,
                   const floating* by, floating* h, floating* y) noexcept:
    cdef Py_ssize_t t, i, step = B * H
    cdef floating* current
    with nogil:
        # h = x @ Wxh.T + bh for all steps at once; then the recurrence adds
        # h[t - 1] @ Whh.T and applies tanh, step by step.
        _fill_rows(h, T * B, bh, H)
        _matmul(False, True, T * B, H, I, x, I, Wxh, I, True, h, H)
        for t in range(T):
            current = h + t * step
            _matmul(False, True, B, H, H, h0 if t == 0 else current - step, H, Whh, H, True,
                    current, H)
            for i in range(step):
                current[i] = tanh(current[i])
        _fill_rows(y, T * B, by, O)
        _matmul(False, True, T * B, O, H, h, H, Why, H, True, y, O)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _backward(Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, Py_ssize_t O,
                    const floating* dy, const floating* x, const floating* h,
                    const floating* h0, const floating* Wxh, const floating* Whh,
                    const floating* Why, const floating* dh_last, floating clip,
                    floating* dx, floating* dh0, floating* dWxh, floating* dWhh,
                    floating* dbh, floating* dWhy, floating* dby, floating* da) noexcept:
    cdef Py_ssize_t t, i, step = B * H
    cdef floating* current
    cdef const floating* state
    with nogil:
        # Through the outputs: dWhy, dby, and dL/dh[t] from y[t] for every step.
        _matmul(True, False, O, H, T * B, dy, O, h, H, False, dWhy, H)
        _column_sums(dy, T * B, O, dby)
        _matmul(False, False, T * B, H, O, dy, O, Why, H, False, da, H)
        # Back through time: add what reaches h[t] from step t + 1, times tanh'.
        for t in range(T - 1, -1, -1):
            current = da + t * step
            if t == T - 1:
                for i in range(step):
                    current[i] += dh_last[i]
            else:
                _matmul(False, False, B, H, H, current + step, H, Whh, H, True, current, H)
            state = h + t * step
            for i in range(step):
                current[i] *= 1 - state[i] * state[i]
        _matmul(False, False, B, H, H, da, H, Whh, H, False, dh0, H)
        # The parameters' gradients, summed over every step.
        _matmul(True, False, H, I, T * B, da, H, x, I, False, dWxh, I)
        _matmul(True, False, H, H, (T - 1) * B, da + step, H, h, H, False, dWhh, H)
        _matmul(True, False, H, H, B, da, H, h0, H, True, dWhh, H)
        _column_sums(da, T * B, H, dbh)
        _matmul(False, False, T * B, I, H, da, H, Wxh, I, False, dx, I)
        _clip(dWxh, H * I, clip)
        _clip(dWhh, H * H, clip)
        _clip(dbh, H, clip)
        _clip(dWhy, O * H, clip)
        _clip(dby, O, clip)


cdef inline void* _data(object array):
    return cnp.PyArray_DATA(<cnp.ndarray>array)


def rnn_forward(x, h0, Wxh, Whh, Why, bh, by, h, y, int num_threads):
    """Hidden states ``h`` (T, B, H) and outputs ``y`` (T, B, O) of the RNN."""
    cdef Py_ssize_t T = cnp.PyArray_DIM(x, 0), B = cnp.PyArray_DIM(x, 1)
    cdef Py_ssize_t I = cnp.PyArray_DIM(x, 2), H = cnp.PyArray_DIM(Wxh, 0)
    cdef Py_ssize_t O = cnp.PyArray_DIM(Why, 0)
    if cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT32:
        _forward[float](T, B, I, H, O, <float*>_data(x), <float*>_data(h0),
                        <float*>_data(Wxh), <float*>_data(Whh), <float*>_data(Why),
                        <float*>_data(bh), <float*>_data(by), <float*>_data(h),
                        <float*>_data(y))
    else:
        _forward[double](T, B, I, H, O, <double*>_data(x), <double*>_data(h0),
                         <double*>_data(Wxh), <double*>_data(Whh), <double*>_data(Why),
                         <double*>_data(bh), <double*>_data(by), <double*>_data(h),
                         <double*>_data(y))


def rnn_backward(dy, x, h, h0, Wxh, Whh, Why, dh_last, double clip, dx, dh0, dWxh, dWhh,
                 dbh, dWhy, dby, int num_threads):
    """Backpropagation through time: writes dx, dh0 and the parameter gradients."""
    cdef Py_ssize_t T = cnp.PyArray_DIM(x, 0), B = cnp.PyArray_DIM(x, 1)
    cdef Py_ssize_t I = cnp.PyArray_DIM(x, 2), H = cnp.PyArray_DIM(Wxh, 0)
    cdef Py_ssize_t O = cnp.PyArray_DIM(Why, 0)
    da = np.empty_like(h)  # dL/d(pre-activation) of every step
    if cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT32:
        _backward[float](T, B, I, H, O, <float*>_data(dy), <float*>_data(x), <float*>_data(h),
                         <float*>_data(h0), <float*>_data(Wxh), <float*>_data(Whh),
                         <float*>_data(Why), <float*>_data(dh_last), <float>clip,
                         <float*>_data(dx), <float*>_data(dh0), <float*>_data(dWxh),
                         <float*>_data(dWhh), <float*>_data(dbh), <float*>_data(dWhy),
                         <float*>_data(dby), <float*>_data(da))
    else:
        _backward[double](T, B, I, H, O, <double*>_data(dy), <double*>_data(x),
                          <double*>_data(h), <double*>_data(h0), <double*>_data(Wxh),
                          <double*>_data(Whh), <double*>_data(Why), <double*>_data(dh_last),
                          clip, <double*>_data(dx), <double*>_data(dh0), <double*>_data(dWxh),
                          <double*>_data(dWhh), <double*>_data(dbh), <double*>_data(dWhy),
                          <double*>_data(dby), <double*>_data(da))
