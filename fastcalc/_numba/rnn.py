"""Numba kernels for the Elman RNN family.

Same names and signatures as :mod:`fastcalc.reference.rnn` (its docstring
states the contract).  The whole time loop runs compiled, without the GIL,
one block of ``BLOCK_ROWS`` batch rows after the other; in a block,
whatever does not depend on the previous step is one matrix product over
all T * rows (input projection and outputs forward; dL/dh through the
outputs, weight gradients and dL/dx backward), leaving one (rows, H) x (H, H)
product and the tanh (or its derivative) per step.  Products of at least
``BLAS_MIN_WORK`` multiply-adds go to BLAS through ``np.dot`` (Numba calls
scipy's BLAS), smaller ones to plain loops, which beat a BLAS call's
overhead there.  BLAS threads its large products itself; ``num_threads`` is
not used.  BLAS's threads share out the rows and columns of a product, each
element summed by one thread in one order: the results do not depend on
BLAS's thread count (tests/test_rnn.py runs 1, 2 and 3).

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

__all__ = ["BLAS_MIN_WORK", "BLOCK_ROWS", "rnn_backward", "rnn_forward"]

BLAS_MIN_WORK = 1 << 12

# The rows of a block of the fixed partition of the batch.  BLAS sums an
# element of a product in an order that depends on the product's shape (on
# its number of rows too), so every block is computed with products of its
# own, of the same shapes in every call, sliced or not (see rnn_backward):
# its rows' results and its share of the parameter gradients do not depend
# on the slices.  Large enough that the benchmark's batch of 32 is one block
# (each step's product over the whole batch, one BLAS call).
BLOCK_ROWS = 64

_JIT = dict(nogil=True, cache=True, error_model="numpy", fastmath=FASTMATH)


@njit(**_JIT)
def _matmul(a, b, out, accumulate):
    """``out = a @ b`` (``+=`` if ``accumulate``); ``a`` and ``b`` C- or F-contiguous.

    ``out`` is never read unless accumulating, so it may hold anything (NaN).
    """
    m, k = a.shape
    n = b.shape[1]
    # In float: m * n * k may pass 2**63 where one size is huge and another
    # 0 (the arrays exist, so m * k, k * n and m * n do not).
    if float(m) * n * k >= BLAS_MIN_WORK:
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
    """One block of rows, every array of the block's own (contiguous)."""
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
def _backward(dy, x, h, h0, Wxh, Whh, Why, dh_last, dx, dh0, dWxh, dWhh, dbh, dWhy, dby):
    """One block of rows (arrays of its own): writes dx, dh0, adds to the parameter gradients."""
    T, B, I = x.shape
    H, O = h.shape[2], dy.shape[2]
    dy_rows, h_rows = dy.reshape(T * B, O), h.reshape(T * B, H)
    da = np.empty_like(h)  # dL/d(pre-activation) of every step
    da_rows = da.reshape(T * B, H)
    # Through the outputs: dWhy, dby, and dL/dh[t] from y[t] for every step.
    _matmul(dy_rows.T, h_rows, dWhy, True)
    dby += dy_rows.sum(axis=0)
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
    _matmul(da_rows.T, x.reshape(T * B, I), dWxh, True)
    _matmul(da_rows[B:].T, h_rows[: (T - 1) * B], dWhh, True)
    _matmul(da[0].T, h0, dWhh, True)
    dbh += da_rows.sum(axis=0)
    _matmul(da_rows, Wxh, dx.reshape(T * B, I), False)


@njit(**_JIT)
def _forward_blocks(x, h0, Wxh, Whh, Why, bh, by, h, y, start, stop):
    B = x.shape[1]
    if start == 0 and stop == B <= BLOCK_ROWS:  # one block: the arrays themselves
        _forward(x, h0, Wxh, Whh, Why, bh, by, h, y)
        return
    for first in range(start, stop, BLOCK_ROWS):
        last = min(stop, first + BLOCK_ROWS)
        block_h = np.empty((h.shape[0], last - first, h.shape[2]), h.dtype)
        block_y = np.empty((y.shape[0], last - first, y.shape[2]), y.dtype)
        _forward(np.ascontiguousarray(x[:, first:last]), np.ascontiguousarray(h0[first:last]),
                 Wxh, Whh, Why, bh, by, block_h, block_y)
        h[:, first:last] = block_h
        y[:, first:last] = block_y


@njit(**_JIT)
def _backward_blocks(dy, x, h, h0, Wxh, Whh, Why, dh_last, clip, dx, dh0, dWxh, dWhh, dbh,
                     dWhy, dby, start, stop):
    B = x.shape[1]
    if start == 0 and stop == B <= BLOCK_ROWS:  # one block: the arrays themselves
        _backward(dy, x, h, h0, Wxh, Whh, Why, dh_last, dx, dh0, dWxh, dWhh, dbh, dWhy, dby)
    else:
        for first in range(start, stop, BLOCK_ROWS):
            last = min(stop, first + BLOCK_ROWS)
            block_dx = np.empty((dx.shape[0], last - first, dx.shape[2]), dx.dtype)
            block_dh0 = np.empty((last - first, dh0.shape[1]), dh0.dtype)
            _backward(np.ascontiguousarray(dy[:, first:last]),
                      np.ascontiguousarray(x[:, first:last]),
                      np.ascontiguousarray(h[:, first:last]),
                      np.ascontiguousarray(h0[first:last]), Wxh, Whh, Why,
                      np.ascontiguousarray(dh_last[first:last]), block_dx, block_dh0, dWxh,
                      dWhh, dbh, dWhy, dby)
            dx[:, first:last] = block_dx
            dh0[first:last] = block_dh0
    for gradient in (dWxh.reshape(-1), dWhh.reshape(-1), dbh, dWhy.reshape(-1), dby):
        _clip(gradient, clip)


def rnn_forward(x, h0, Wxh, Whh, Why, bh, by, h, y, start, stop, num_threads):
    _forward_blocks(x, h0, Wxh, Whh, Why, bh, by, h, y, start, stop)


def rnn_backward(dy, x, h, h0, Wxh, Whh, Why, dh_last, clip, dx, dh0, dWxh, dWhh, dbh, dWhy,
                 dby, start, stop, num_threads):
    _backward_blocks(dy, x, h, h0, Wxh, Whh, Why, dh_last, dy.dtype.type(clip), dx, dh0, dWxh,
                     dWhh, dbh, dWhy, dby, start, stop)
