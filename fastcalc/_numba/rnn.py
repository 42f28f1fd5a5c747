"""Numba kernels for the Elman RNN family.

Same names and signatures as :mod:`fastcalc.reference.rnn` (its docstring
states the contract).  The whole time loop runs compiled, without the GIL;
whatever does not depend on the previous step is one matrix product
over all T * B rows (input projection and outputs forward; dL/dh through the
outputs, weight gradients and dL/dx backward), leaving one (B, H) x (H, H)
product and the tanh (or its derivative) per step.  Products of at least
``BLAS_MIN_WORK`` multiply-adds go to BLAS through ``np.dot`` (Numba calls
scipy's BLAS), smaller ones to plain loops, which beat a BLAS call's
overhead there.  BLAS threads its large products itself; ``num_threads`` is
not used.

The Cython kernels' plan (threads sharing out the batch, every product in
register-blocked loops) was tried here with loops LLVM vectorizes: it
measured slower than this one, forward + backward 9.7 ms against 6.8 ms at
(T, B, I, H, O) = (100, 32, 64, 128, 64) in float32, and 36 us against
17 us at the seed's (4, 1, 2, 3, 2): LLVM keeps the sums in memory rather
than in registers, and the wrapper did more per call.
"""

import numpy as np
from numba import njit

from fastcalc._numba._vecmath import FASTMATH, tanh

__all__ = ["BLAS_MIN_WORK", "rnn_backward", "rnn_forward"]

BLAS_MIN_WORK = 1 << 12

_JIT = dict(nogil=True, cache=True, error_model="numpy", fastmath=FASTMATH)


@njit(**_JIT)
def _matmul(a, b, out, accumulate):
    """``out = a @ b`` (``+=`` if ``accumulate``); ``a`` and ``b`` C- or F-contiguous.

    ``out`` is never read unless accumulating, so it may hold anything (NaN).
    """
    m, k = a.shape
    n = b.shape[1]
    if m * n * k >= BLAS_MIN_WORK:
        if accumulate:
            product = np.empty_like(out)
            np.dot(a, b, product)
            out += product
        else:
            np.dot(a, b, out)
        return
    for i in range(m):
        for j in range(n):
            total = out.dtype.type(0)
            for p in range(k):
                total += a[i, p] * b[p, j]
            if accumulate:
                out[i, j] += total
            else:
                out[i, j] = total


@njit(**_JIT)
def _clip(a, limit):
    """Clip ``a`` (1-D view) to [-limit, limit] in place; NaN stays NaN."""
    for i in range(a.size):
        if a[i] > limit:
            a[i] = limit
        elif a[i] < -limit:
            a[i] = -limit


@njit(**_JIT)
def _forward(x, h0, Wxh, Whh, Why, bh, by, h, y):
    T, B, I = x.shape
    H = h.shape[2]
    rows = h.reshape(T * B, H)
    # h = x @ Wxh.T + bh for all steps at once; then the recurrence adds
    # h[t - 1] @ Whh.T and applies tanh, step by step.
    rows[:] = bh
    _matmul(x.reshape(T * B, I), Wxh.T, rows, True)
    for t in range(T):
        _matmul(h0 if t == 0 else h[t - 1], Whh.T, h[t], True)
        current = h[t].reshape(B * H)
        for i in range(B * H):
            current[i] = tanh(current[i])
    outputs = y.reshape(T * B, y.shape[2])
    outputs[:] = by
    _matmul(rows, Why.T, outputs, True)


@njit(**_JIT)
def _backward(dy, x, h, h0, Wxh, Whh, Why, dh_last, clip, dx, dh0, dWxh, dWhh, dbh, dWhy,
              dby):
    T, B, I = x.shape
    H, O = h.shape[2], dy.shape[2]
    dy_rows, h_rows = dy.reshape(T * B, O), h.reshape(T * B, H)
    da = np.empty_like(h)  # dL/d(pre-activation) of every step
    da_rows = da.reshape(T * B, H)
    # Through the outputs: dWhy, dby, and dL/dh[t] from y[t] for every step.
    _matmul(dy_rows.T, h_rows, dWhy, False)
    dby[:] = dy_rows.sum(axis=0)
    _matmul(dy_rows, Why, da_rows, False)
    # Back through time: add what reaches h[t] from step t + 1, times tanh'.
    for t in range(T - 1, -1, -1):
        if t == T - 1:
            da[t] += dh_last
        else:
            _matmul(da[t + 1], Whh, da[t], True)
        current, state = da[t].reshape(B * H), h[t].reshape(B * H)
        for i in range(B * H):
            current[i] *= 1 - state[i] * state[i]
    _matmul(da[0], Whh, dh0, False)
    # The parameters' gradients, summed over every step.
    _matmul(da_rows.T, x.reshape(T * B, I), dWxh, False)
    _matmul(da_rows[B:].T, h_rows[: (T - 1) * B], dWhh, False)
    _matmul(da[0].T, h0, dWhh, True)
    dbh[:] = da_rows.sum(axis=0)
    _matmul(da_rows, Wxh, dx.reshape(T * B, I), False)
    for gradient in (dWxh.reshape(-1), dWhh.reshape(-1), dbh, dWhy.reshape(-1), dby):
        _clip(gradient, clip)


def rnn_forward(x, h0, Wxh, Whh, Why, bh, by, h, y, num_threads):
    _forward(x, h0, Wxh, Whh, Why, bh, by, h, y)


def rnn_backward(dy, x, h, h0, Wxh, Whh, Why, dh_last, clip, dx, dh0, dWxh, dWhh, dbh, dWhy,
                 dby, num_threads):
    _backward(dy, x, h, h0, Wxh, Whh, Why, dh_last, dy.dtype.type(clip), dx, dh0, dWxh, dWhh,
              dbh, dWhy, dby)
