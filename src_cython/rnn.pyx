"""Cython kernels for the Elman RNN family.

Same names and signatures as :mod:`fastcalc.reference.rnn` (its docstring
states the contract): ``rnn_forward(x, h0, Wxh, Whh, Why, bh, by, h, y,
num_threads)`` and ``rnn_backward(dy, x, h, h0, Wxh, Whh, Why, dh_last,
clip, dx, dh0, dWxh, dWhh, dbh, dWhy, dby, num_threads)``, every array
C-contiguous, native, of one dtype (float32 or float64), batched (T, B, ...).

The whole time loop runs here, without the GIL, on batch rows ``start`` to
``stop - 1`` (the public function runs long calls in slices of rows).
Sequences are independent, so threads share out the batch, and each runs
every time step of its rows: no synchronisation per step.  All of a step's
products run on the C kernels of rnn.h, which sum blocks of 4 rows x 2-4
vectors in registers, reading the weights (or their transposes, made once
per call) in place, where they stay in cache from step to step.  BLAS,
which would pack the weights again at every step's small product, measured
slower, and its own thread pool competed with these threads.

The parameter gradients are sums over the batch.  So that they do not
depend on the thread count (nor on the slices), the batch is cut into fixed
blocks of ``BLOCK_ROWS`` rows (0 to BLOCK_ROWS - 1, and so on): each block's
sum is computed on its own (over its steps and rows in a fixed order), and
the blocks' sums are added to the gradients in block order.  Threads take
the blocks in waves of one block each, added between two waves.

setup.py compiles this file once per instruction set; :func:`fastcalc._cython.load`
imports the best one the CPU runs.
"""

cimport cython
cimport numpy as cnp
from cython.parallel cimport parallel, prange

import numpy as np

from _fused cimport floating
from _openmp cimport FASTCALC_OPENMP, fastcalc_current_cpu, fastcalc_leave_cpu
from _vecmath cimport tanh

__all__ = ["BLOCK_ROWS", "OPENMP", "rnn_backward", "rnn_forward"]

# Whether prange runs on threads; without OpenMP the kernels are serial.
OPENMP = FASTCALC_OPENMP

# The rows of a block of the fixed partition of the parameter gradients'
# sums (see above).  Each step's weight-gradient products sum a block's rows
# per load and store of the gradients: 8 rows cost the backward pass a third
# more time on one thread than the 32 of a whole benchmark batch; 16 rows are
# what each of 2 threads summed before, and still give a batch of 32 two
# threads (the backward pass of a batch of B uses at most B / 16 threads).
cdef enum:
    _BLOCK = 16
BLOCK_ROWS = _BLOCK

cnp.import_array()

@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _fill_rows(floating* out, Py_ssize_t rows, const floating* row,
                     Py_ssize_t n) noexcept nogil:
    """Every one of ``rows`` rows of ``out`` (rows, n) becomes ``row``."""
    cdef Py_ssize_t r, j
    for r in range(rows):
        for j in range(n):
            out[r * n + j] = row[j]


cdef void _fill_zero(floating* out, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        out[i] = 0


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _add_rows(const floating* a, Py_ssize_t rows, Py_ssize_t n,
                    floating* out) noexcept nogil:
    """``out += a.sum(axis=0)`` for ``a`` (rows, n), row after row."""
    cdef Py_ssize_t r, j
    for r in range(rows):
        for j in range(n):
            out[j] += a[r * n + j]


cdef void _add(const floating* source, Py_ssize_t n, floating* out) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        out[i] += source[i]


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _clip(floating* a, Py_ssize_t n, floating limit) noexcept nogil:
    """Clip ``a`` to [-limit, limit] in place; NaN stays NaN."""
    cdef Py_ssize_t i
    for i in range(n):
        a[i] = limit if a[i] > limit else (-limit if a[i] < -limit else a[i])


cdef extern from "rnn.h" nogil:
    void fc_matmul_add_float(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* a,
                             Py_ssize_t lda, const float* b, Py_ssize_t ldb, float* c,
                             Py_ssize_t ldc)
    void fc_matmul_add_double(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const double* a,
                              Py_ssize_t lda, const double* b, Py_ssize_t ldb, double* c,
                              Py_ssize_t ldc)
    void fc_matmul_t_add_float(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* a,
                               Py_ssize_t lda, const float* b, Py_ssize_t ldb, float* c,
                               Py_ssize_t ldc)
    void fc_matmul_t_add_double(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const double* a,
                                Py_ssize_t lda, const double* b, Py_ssize_t ldb, double* c,
                                Py_ssize_t ldc)


cdef inline void _matmul_add(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const floating* a,
                             const floating* b, floating* c) noexcept nogil:
    """``c += a @ b`` for the recurrence: a (m, k), b (k, n), c (m, n), rows contiguous."""
    if floating is float:
        fc_matmul_add_float(m, n, k, a, k, b, n, c, n)
    else:
        fc_matmul_add_double(m, n, k, a, k, b, n, c, n)


cdef inline void _matmul_t_add(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const floating* a,
                               const floating* b, floating* c) noexcept nogil:
    """``c += a.T @ b`` for the weight gradients: a (k, m), b (k, n), c (m, n)."""
    if floating is float:
        fc_matmul_t_add_float(m, n, k, a, m, b, n, c, n)
    else:
        fc_matmul_t_add_double(m, n, k, a, m, b, n, c, n)


# Sequences are independent: with more than this many multiply-adds per pass
# (T * rows * H * (I + H + O)), threads share out the batch, each running the
# whole time loop on its rows (one parallel region, no synchronisation per step).
cdef double _PARALLEL_MIN_WORK = 1 << 18
# ... and each thread gets at least this many rows: with fewer, the products
# run on blocks too thin to pay (forward + backward at T=100, B=16, H=128 on
# 2 threads: 0.90-1.06x the one-thread time; at B=32, 0.53x; at B=8, 1.23x).
cdef Py_ssize_t _MIN_ROWS_PER_THREAD = 16


cdef int _row_threads(Py_ssize_t T, Py_ssize_t rows, Py_ssize_t I, Py_ssize_t H, Py_ssize_t O,
                      Py_ssize_t groups, int num_threads) noexcept nogil:
    """How many threads share ``groups`` groups of ``rows`` rows (1 if the work is too small,
    at most one per ``_MIN_ROWS_PER_THREAD`` rows).

    The work is counted in double: the product of the sizes may pass 2**63
    where one of them is huge and another 0 or small (the arrays exist).
    """
    if num_threads <= 1 or <double>T * rows * H * (I + H + O) < _PARALLEL_MIN_WORK:
        return 1
    return <int>max(1, min(<Py_ssize_t>num_threads, groups, rows // _MIN_ROWS_PER_THREAD))


cdef inline Py_ssize_t _first_row(Py_ssize_t start, Py_ssize_t rows, int threads,
                                  Py_ssize_t index) noexcept nogil:
    """The first row of thread ``index`` in rows start.. start + rows - 1: groups of 4 rows.

    ``index * groups`` < threads * groups <= rows: no overflow.
    """
    cdef Py_ssize_t groups = (rows + 3) // 4
    return start + min(rows, 4 * (index * groups // threads))


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _forward_rows(Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, Py_ssize_t O,
                        const floating* x, const floating* h0, const floating* WxhT,
                        const floating* WhhT, const floating* WhyT, const floating* bh,
                        const floating* by, floating* h, floating* y, Py_ssize_t first,
                        Py_ssize_t last) noexcept nogil:
    """Batch rows first..last of every step, all three products of a step at once.

    Each row's results do not depend on which rows share the call (the
    products sum every element in the same order in every path of rnn.h).
    """
    cdef Py_ssize_t t, i, rows = last - first
    cdef floating* current
    for t in range(T):
        current = h + (t * B + first) * H
        _fill_rows(current, rows, bh, H)
        _matmul_add(rows, H, I, x + (t * B + first) * I, WxhT, current)
        _matmul_add(rows, H, H, h0 + first * H if t == 0 else current - B * H, WhhT, current)
        for i in range(rows * H):
            current[i] = tanh(current[i])
        _fill_rows(y + (t * B + first) * O, rows, by, O)
        _matmul_add(rows, O, H, current, WhyT, y + (t * B + first) * O)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _backward_block(Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
                          Py_ssize_t O, const floating* dy, const floating* x,
                          const floating* h, const floating* h0, const floating* Wxh,
                          const floating* Whh, const floating* Why, const floating* dh_last,
                          floating* da, floating* dx, floating* dh0, floating* partial,
                          Py_ssize_t first, Py_ssize_t last) noexcept nogil:
    """Batch rows first..last (one block) of every step, back through time.

    dL/dh[t] is what reaches h[t] through y[t] (``dy[t] @ Why``) and from
    step t + 1 (``da[t + 1] @ Whh``, or ``dh_last`` at the last step); times
    tanh' = 1 - h[t] ** 2 it is ``da[t]`` (held in ``da``, (T, rows, H)),
    which gives ``dx[t] = da[t] @ Wxh``.  The block's sums of dWxh, dWhh,
    dWhy, dbh and dby, over its steps (last first) and rows, go to
    ``partial`` in that order.
    """
    cdef Py_ssize_t t, i, rows = last - first
    cdef floating* current
    cdef const floating* state
    cdef floating* dWxh = partial
    cdef floating* dWhh = partial + H * I
    cdef floating* dWhy = partial + H * I + H * H
    cdef floating* dbh = partial + H * I + H * H + O * H
    cdef floating* dby = dbh + H
    _fill_zero(partial, H * I + H * H + O * H + H + O)
    for t in range(T - 1, -1, -1):
        current = da + t * rows * H
        _fill_zero(current, rows * H)
        _matmul_add(rows, H, O, dy + (t * B + first) * O, Why, current)
        if t == T - 1:
            for i in range(rows * H):
                current[i] += dh_last[first * H + i]
        else:
            _matmul_add(rows, H, H, current + rows * H, Whh, current)
        state = h + (t * B + first) * H
        for i in range(rows * H):
            current[i] *= 1 - state[i] * state[i]
        _fill_zero(dx + (t * B + first) * I, rows * I)
        _matmul_add(rows, I, H, current, Wxh, dx + (t * B + first) * I)
        _matmul_t_add(H, I, rows, current, x + (t * B + first) * I, dWxh)
        _matmul_t_add(H, H, rows, current, h0 + first * H if t == 0 else state - B * H, dWhh)
        _matmul_t_add(O, H, rows, dy + (t * B + first) * O, state, dWhy)
        _add_rows(current, rows, H, dbh)
        _add_rows(dy + (t * B + first) * O, rows, O, dby)
    _fill_zero(dh0 + first * H, rows * H)
    _matmul_add(rows, H, H, da, Whh, dh0 + first * H)


cdef void _transpose(const floating* a, Py_ssize_t rows, Py_ssize_t columns,
                     floating* out) noexcept nogil:
    """``out`` (columns, rows) = ``a`` (rows, columns) transposed."""
    cdef Py_ssize_t i, j
    for i in range(rows):
        for j in range(columns):
            out[j * rows + i] = a[i * columns + j]


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _forward(Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, Py_ssize_t O,
                   const floating* x, const floating* h0, const floating* Wxh,
                   const floating* Whh, const floating* Why, const floating* bh,
                   const floating* by, floating* h, floating* y, floating* transposed,
                   Py_ssize_t start, Py_ssize_t stop, int num_threads) noexcept:
    cdef Py_ssize_t index, rows = stop - start
    cdef int caller_cpu
    cdef int threads = _row_threads(T, rows, I, H, O, (rows + 3) // 4, num_threads)
    cdef floating* WxhT = transposed
    cdef floating* WhhT = transposed + H * I
    cdef floating* WhyT = transposed + H * I + H * H
    with nogil:
        _transpose(Wxh, H, I, WxhT)
        _transpose(Whh, H, H, WhhT)
        _transpose(Why, O, H, WhyT)
        if threads == 1:
            _forward_rows(T, B, I, H, O, x, h0, WxhT, WhhT, WhyT, bh, by, h, y, start, stop)
        else:
            caller_cpu = fastcalc_current_cpu()
            with parallel(num_threads=threads):
                fastcalc_leave_cpu(caller_cpu)
                for index in prange(threads, schedule="static"):
                    _forward_rows(T, B, I, H, O, x, h0, WxhT, WhhT, WhyT, bh, by, h, y,
                                  _first_row(start, rows, threads, index),
                                  _first_row(start, rows, threads, index + 1))


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _backward(Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, Py_ssize_t O,
                    const floating* dy, const floating* x, const floating* h,
                    const floating* h0, const floating* Wxh, const floating* Whh,
                    const floating* Why, const floating* dh_last, floating clip,
                    floating* dx, floating* dh0, floating* dWxh, floating* dWhh,
                    floating* dbh, floating* dWhy, floating* dby, floating* da,
                    floating* partial, Py_ssize_t start, Py_ssize_t stop,
                    int threads) noexcept:
    # size: the weights' and biases' sizes; scratch: at most h's T * B * H.
    # Sizes of arrays that exist: no overflow.
    cdef Py_ssize_t size = H * I + H * H + O * H + H + O
    cdef Py_ssize_t scratch = T * min(stop - start, <Py_ssize_t>_BLOCK) * H
    cdef Py_ssize_t blocks = (stop - start + _BLOCK - 1) // _BLOCK
    cdef Py_ssize_t wave, count, index, first
    cdef int caller_cpu
    cdef floating* share
    with nogil:
        wave = 0
        while wave < blocks:
            count = min(<Py_ssize_t>threads, blocks - wave)
            if count == 1:
                first = start + wave * _BLOCK
                _backward_block(T, B, I, H, O, dy, x, h, h0, Wxh, Whh, Why, dh_last, da, dx,
                                dh0, partial, first, min(stop, first + _BLOCK))
            else:
                caller_cpu = fastcalc_current_cpu()
                with parallel(num_threads=count):
                    fastcalc_leave_cpu(caller_cpu)
                    for index in prange(count, schedule="static"):
                        first = start + (wave + index) * _BLOCK
                        _backward_block(T, B, I, H, O, dy, x, h, h0, Wxh, Whh, Why, dh_last,
                                        da + index * scratch, dx, dh0, partial + index * size,
                                        first, min(stop, first + _BLOCK))
            # The blocks' sums, added in block order whatever the waves.
            for index in range(count):
                share = partial + index * size
                _add(share, H * I, dWxh)
                _add(share + H * I, H * H, dWhh)
                _add(share + H * I + H * H, O * H, dWhy)
                _add(share + H * I + H * H + O * H, H, dbh)
                _add(share + H * I + H * H + O * H + H, O, dby)
            wave += count
        _clip(dWxh, H * I, clip)
        _clip(dWhh, H * H, clip)
        _clip(dbh, H, clip)
        _clip(dWhy, O * H, clip)
        _clip(dby, O, clip)


cdef inline void* _data(object array):
    return cnp.PyArray_DATA(<cnp.ndarray>array)


def rnn_forward(x, h0, Wxh, Whh, Why, bh, by, h, y, Py_ssize_t start, Py_ssize_t stop,
                int num_threads):
    """Hidden states ``h`` (T, B, H) and outputs ``y`` (T, B, O) of batch rows start..stop-1."""
    cdef Py_ssize_t T = cnp.PyArray_DIM(x, 0), B = cnp.PyArray_DIM(x, 1)
    cdef Py_ssize_t I = cnp.PyArray_DIM(x, 2), H = cnp.PyArray_DIM(Wxh, 0)
    cdef Py_ssize_t O = cnp.PyArray_DIM(Why, 0)
    # The products read Wxh.T, Whh.T and Why.T row by row.
    transposed = np.empty(Wxh.size + Whh.size + Why.size, Whh.dtype)
    if cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT32:
        _forward[float](T, B, I, H, O, <float*>_data(x), <float*>_data(h0),
                        <float*>_data(Wxh), <float*>_data(Whh), <float*>_data(Why),
                        <float*>_data(bh), <float*>_data(by), <float*>_data(h),
                        <float*>_data(y), <float*>_data(transposed), start, stop, num_threads)
    else:
        _forward[double](T, B, I, H, O, <double*>_data(x), <double*>_data(h0),
                         <double*>_data(Wxh), <double*>_data(Whh), <double*>_data(Why),
                         <double*>_data(bh), <double*>_data(by), <double*>_data(h),
                         <double*>_data(y), <double*>_data(transposed), start, stop,
                         num_threads)


def rnn_backward(dy, x, h, h0, Wxh, Whh, Why, dh_last, double clip, dx, dh0, dWxh, dWhh,
                 dbh, dWhy, dby, Py_ssize_t start, Py_ssize_t stop, int num_threads):
    """Backpropagation through time over batch rows start..stop-1 (see the module docstring).

    Writes those rows of dx and dh0, adds their blocks' sums to the parameter
    gradients, and clips these to [-clip, clip].
    """
    cdef Py_ssize_t T = cnp.PyArray_DIM(x, 0), B = cnp.PyArray_DIM(x, 1)
    cdef Py_ssize_t I = cnp.PyArray_DIM(x, 2), H = cnp.PyArray_DIM(Wxh, 0)
    cdef Py_ssize_t O = cnp.PyArray_DIM(Why, 0)
    cdef Py_ssize_t blocks = (stop - start + _BLOCK - 1) // _BLOCK
    cdef int threads = _row_threads(T, stop - start, I, H, O, blocks, num_threads)
    # One block's dL/d(pre-activation) of every step, and its sums, per thread.
    da = np.empty((threads, T * min(stop - start, <Py_ssize_t>_BLOCK) * H), h.dtype)
    partial = np.empty((threads, Wxh.size + Whh.size + Why.size + Wxh.shape[0] + Why.shape[0]),
                       h.dtype)
    if cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT32:
        _backward[float](T, B, I, H, O, <float*>_data(dy), <float*>_data(x), <float*>_data(h),
                         <float*>_data(h0), <float*>_data(Wxh), <float*>_data(Whh),
                         <float*>_data(Why), <float*>_data(dh_last), <float>clip,
                         <float*>_data(dx), <float*>_data(dh0), <float*>_data(dWxh),
                         <float*>_data(dWhh), <float*>_data(dbh), <float*>_data(dWhy),
                         <float*>_data(dby), <float*>_data(da), <float*>_data(partial),
                         start, stop, threads)
    else:
        _backward[double](T, B, I, H, O, <double*>_data(dy), <double*>_data(x),
                          <double*>_data(h), <double*>_data(h0), <double*>_data(Wxh),
                          <double*>_data(Whh), <double*>_data(Why), <double*>_data(dh_last),
                          clip, <double*>_data(dx), <double*>_data(dh0), <double*>_data(dWxh),
                          <double*>_data(dWhh), <double*>_data(dbh), <double*>_data(dWhy),
                          <double*>_data(dby), <double*>_data(da),
                          <double*>_data(partial), start, stop, threads)
