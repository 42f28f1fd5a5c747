"""Numba kernels for the Elman RNN family.

Same names and signatures as :mod:`fastcalc.reference.rnn` (its docstring
states the contract), and the same plan as the Cython kernels
(``src_cython/rnn.pyx``): the whole time loop runs compiled, without the
GIL.  Sequences are independent, so threads share out the batch (in groups
of 4 rows), each running every time step of its rows: one parallel region
per call, no synchronisation per step.  The products of a step run in
loops LLVM vectorizes over the output's columns, 4 rows x 4 terms at a
time, reading the weights (or their transposes, made once per call) in
place, where they stay in cache from step to step.  The weight gradients
are summed per thread and the shares added in a fixed order.
"""

import numba
import numpy as np
from numba import njit, prange

from fastcalc._numba import parallel_call
from fastcalc._numba._vecmath import FASTMATH, tanh

__all__ = ["PARALLEL_MIN_WORK", "rnn_backward", "rnn_forward"]

# Sequences are independent: with more than this many multiply-adds per pass
# (T * B * H * (I + H + O)), threads share out the batch, each running the
# whole time loop on its rows (one parallel region, no synchronisation per step).
PARALLEL_MIN_WORK = 1 << 18

_JIT = dict(nogil=True, cache=True, error_model="numpy", fastmath=FASTMATH)


@njit(**_JIT)
def _rows_add(c, b, a, i, rows, p):
    """``c[i:i + rows] += a[i:i + rows, p:p + 4] @ b[p:p + 4]``, rows <= 4.

    Each element of the four rows of b loaded feeds ``rows`` multiply-adds,
    and each row of c is loaded and stored once per 4 terms: the inner loop
    (over c's columns) runs at the FMA units' pace rather than the stores'.
    """
    b0, b1, b2, b3 = b[p], b[p + 1], b[p + 2], b[p + 3]
    for r in range(rows):
        row = c[i + r]
        a0, a1, a2, a3 = a[i + r, p], a[i + r, p + 1], a[i + r, p + 2], a[i + r, p + 3]
        for j in range(row.size):
            row[j] += a0 * b0[j] + a1 * b1[j] + a2 * b2[j] + a3 * b3[j]


@njit(**_JIT)
def _matmul_add(a, b, c):
    """``c += a @ b``: c (m, n) and b (k, n) C-contiguous, a (m, k) any layout."""
    m, k = a.shape
    for p in range(0, k - k % 4, 4):
        for i in range(0, m, 4):
            _rows_add(c, b, a, i, min(4, m - i), p)
    for p in range(k - k % 4, k):
        bp = b[p]
        for i in range(m):
            row, factor = c[i], a[i, p]
            for j in range(row.size):
                row[j] += factor * bp[j]


@njit(**_JIT)
def _first_row(B, threads, index):
    """The first batch row of thread ``index``: groups of 4 rows, shared out evenly."""
    groups = (B + 3) // 4
    return min(B, 4 * (index * groups // threads))


@njit(**_JIT)
def _forward_rows(x, h0, WxhT, WhhT, WhyT, bh, by, h, y, first, last):
    """Batch rows first..last of every step, all three products of a step at once."""
    for t in range(x.shape[0]):
        current = h[t, first:last]
        current[:] = bh
        _matmul_add(x[t, first:last], WxhT, current)
        _matmul_add(h0[first:last] if t == 0 else h[t - 1, first:last], WhhT, current)
        for row in current:
            for j in range(row.size):
                row[j] = tanh(row[j])
        y[t, first:last] = by
        _matmul_add(current, WhyT, y[t, first:last])


@njit(**_JIT)
def _backward_rows(dy, x, h, h0, Wxh, Whh, Why, dh_last, da, dx, dh0, dWxh, dWhh, dWhy, first,
                   last):
    """Batch rows first..last of every step, back through time.

    dL/dh[t] is what reaches h[t] through y[t] (``dy[t] @ Why``) and from
    step t + 1 (``da[t + 1] @ Whh``, or ``dh_last`` at the last step); times
    tanh' = 1 - h[t] ** 2 it is ``da[t]``, which gives ``dx[t] = da[t] @ Wxh``.
    These rows' share of the weight gradients is summed into dWxh, dWhh, dWhy.
    """
    T = x.shape[0]
    dWxh[:] = 0
    dWhh[:] = 0
    dWhy[:] = 0
    for t in range(T - 1, -1, -1):
        current = da[t, first:last]
        current[:] = 0
        _matmul_add(dy[t, first:last], Why, current)
        if t == T - 1:
            current += dh_last[first:last]
        else:
            _matmul_add(da[t + 1, first:last], Whh, current)
        state = h[t, first:last]
        for r in range(current.shape[0]):
            for j in range(current.shape[1]):
                current[r, j] *= 1 - state[r, j] * state[r, j]
        dx[t, first:last] = 0
        _matmul_add(current, Wxh, dx[t, first:last])
        _matmul_add(current.T, x[t, first:last], dWxh)
        _matmul_add(current.T, h0[first:last] if t == 0 else h[t - 1, first:last], dWhh)
        _matmul_add(dy[t, first:last].T, state, dWhy)
    dh0[first:last] = 0
    _matmul_add(da[0, first:last], Whh, dh0[first:last])


@njit(parallel=True, **_JIT)
def _forward_parallel(x, h0, WxhT, WhhT, WhyT, bh, by, h, y, threads):
    B = x.shape[1]
    for index in prange(threads):
        _forward_rows(x, h0, WxhT, WhhT, WhyT, bh, by, h, y, _first_row(B, threads, index),
                      _first_row(B, threads, index + 1))


@njit(parallel=True, **_JIT)
def _backward_parallel(dy, x, h, h0, Wxh, Whh, Why, dh_last, da, dx, dh0, dWxh, dWhh, dWhy,
                       threads):
    B = x.shape[1]
    for index in prange(threads):
        _backward_rows(dy, x, h, h0, Wxh, Whh, Why, dh_last, da, dx, dh0, dWxh[index],
                       dWhh[index], dWhy[index], _first_row(B, threads, index),
                       _first_row(B, threads, index + 1))


@njit(**_JIT)
def _clip(a, limit):
    """Clip ``a`` (1-D view) to [-limit, limit] in place; NaN stays NaN."""
    for i in range(a.size):
        if a[i] > limit:
            a[i] = limit
        elif a[i] < -limit:
            a[i] = -limit


def _threads(x, H, O, num_threads):
    """How many threads share the batch (1 if the work is too small)."""
    T, B, I = x.shape
    if num_threads <= 1 or T * B * H * (I + H + O) < PARALLEL_MIN_WORK:
        return 1
    return min(num_threads, numba.config.NUMBA_NUM_THREADS, (B + 3) // 4)


def rnn_forward(x, h0, Wxh, Whh, Why, bh, by, h, y, num_threads):
    # The products read the transposed weights row by row.
    WxhT, WhhT, WhyT = (np.ascontiguousarray(w.T) for w in (Wxh, Whh, Why))
    threads = _threads(x, Whh.shape[0], Why.shape[0], num_threads)
    if threads == 1:
        _forward_rows(x, h0, WxhT, WhhT, WhyT, bh, by, h, y, 0, x.shape[1])
    else:
        parallel_call(_forward_parallel, threads, x, h0, WxhT, WhhT, WhyT, bh, by, h, y, threads)


def rnn_backward(dy, x, h, h0, Wxh, Whh, Why, dh_last, clip, dx, dh0, dWxh, dWhh, dbh, dWhy,
                 dby, num_threads):
    da = np.empty_like(h)  # dL/d(pre-activation) of every step
    threads = _threads(x, Whh.shape[0], Why.shape[0], num_threads)
    # One share of each weight gradient per thread, added in a fixed order
    # afterwards: deterministic for a given thread count.
    shares = [np.empty((threads, *w.shape), h.dtype) for w in (dWxh, dWhh, dWhy)]
    if threads == 1:
        _backward_rows(dy, x, h, h0, Wxh, Whh, Why, dh_last, da, dx, dh0,
                       *(share[0] for share in shares), 0, x.shape[1])
    else:
        parallel_call(_backward_parallel, threads, dy, x, h, h0, Wxh, Whh, Why, dh_last, da, dx,
                      dh0, *shares, threads)
    for gradient, share in zip((dWxh, dWhh, dWhy), shares, strict=True):
        np.sum(share, axis=0, out=gradient)
    T, B, _ = x.shape
    np.sum(dy.reshape(T * B, -1), axis=0, out=dby)
    np.sum(da.reshape(T * B, -1), axis=0, out=dbh)
    limit = h.dtype.type(clip)
    for gradient in (dWxh, dWhh, dbh, dWhy, dby):
        _clip(gradient.reshape(-1), limit)
