"""Reference (numpy) kernels for the Elman RNN family.

Every array is C-contiguous, native, of one dtype (float32 or float64), and
the outputs overlap no input.  A batch of B sequences of T steps:

``rnn_forward(x, h0, Wxh, Whh, Why, bh, by, h, y, start, stop, num_threads)``
with ``x`` (T, B, I), ``h0`` (B, H), ``Wxh`` (H, I), ``Whh`` (H, H), ``Why``
(O, H), ``bh`` (H,), ``by`` (O,) writes batch rows ``start`` to ``stop - 1``
of the hidden states ``h`` (T, B, H) and outputs ``y`` (T, B, O)::

    h[t] = tanh(x[t] @ Wxh.T + h[t - 1] @ Whh.T + bh)     (h[-1] is h0)
    y[t] = h[t] @ Why.T + by

``rnn_backward(dy, x, h, h0, Wxh, Whh, Why, dh_last, clip, dx, dh0, dWxh,
dWhh, dbh, dWhy, dby, start, stop, num_threads)`` gives the gradients of a
loss L given ``dy`` = dL/dy (T, B, O) and ``dh_last`` = dL/dh[T - 1] (B, H),
with ``h`` the forward's hidden states: it writes rows ``start`` to
``stop - 1`` of ``dx`` (T, B, I) and ``dh0`` (B, H), *adds* those rows' share
to the parameter gradients (each shaped like its parameter), then clips
these to [-clip, clip] (``clip = inf``: not clipped).  Backpropagation
through time::

    dh = dy[t] @ Why + da[t + 1] @ Whh          (+ dh_last at t = T - 1)
    da[t] = dh * (1 - h[t] ** 2)                  (tanh' from its output)

and every weight gradient sums the outer products of ``da`` (or ``dy``)
with that step's input.  ``num_threads`` is accepted for the common
signature.  This is the definition the compiled kernels are tested against:
one step at a time, as the seed's slide 11 writes it.

Every kernel module has a ``BLOCK_ROWS``: the batch is cut into fixed blocks
of that many rows (rows 0 to BLOCK_ROWS - 1, and so on), each computed on
its own and added to the parameter gradients in block order, and ``start``
is a multiple of it.  So the results do not depend on the thread count, nor
on how the public function slices a long call (``stop`` - ``start``).
"""

import numpy as np

__all__ = ["BLOCK_ROWS", "rnn_backward", "rnn_forward"]

# numpy's products (BLAS) sum in an order that depends on their shapes, the
# number of rows too: each block has products of its own.
BLOCK_ROWS = 64


def _blocks(start, stop):
    """The slices of the blocks of rows start..stop - 1."""
    return [slice(first, min(stop, first + BLOCK_ROWS))
            for first in range(start, stop, BLOCK_ROWS)]


# inf and NaN silently, as the compiled kernels compute them
@np.errstate(invalid="ignore", over="ignore")
def rnn_forward(x, h0, Wxh, Whh, Why, bh, by, h, y, start, stop, num_threads):
    for rows in _blocks(start, stop):
        h_prev = h0[rows]
        for t in range(x.shape[0]):
            h[t, rows] = np.tanh(x[t, rows] @ Wxh.T + h_prev @ Whh.T + bh)
            h_prev = h[t, rows]
        y[:, rows] = h[:, rows] @ Why.T + by


@np.errstate(invalid="ignore", over="ignore")
def rnn_backward(dy, x, h, h0, Wxh, Whh, Why, dh_last, clip, dx, dh0, dWxh, dWhh, dbh, dWhy,
                 dby, start, stop, num_threads):
    for rows in _blocks(start, stop):
        dWhy += np.tensordot(dy[:, rows], h[:, rows], axes=([0, 1], [0, 1]))
        dby += dy[:, rows].sum(axis=(0, 1))
        sums = [np.zeros_like(gradient) for gradient in (dWxh, dWhh, dbh)]
        dh_next = dh_last[rows]
        for t in reversed(range(x.shape[0])):
            h_prev = h[t - 1, rows] if t > 0 else h0[rows]
            da = (dy[t, rows] @ Why + dh_next) * (1 - h[t, rows] ** 2)
            sums[0] += da.T @ x[t, rows]
            sums[1] += da.T @ h_prev
            sums[2] += da.sum(axis=0)
            dx[t, rows] = da @ Wxh
            dh_next = da @ Whh
        dh0[rows] = dh_next
        for gradient, block_sum in zip((dWxh, dWhh, dbh), sums, strict=True):
            gradient += block_sum
    for gradient in (dWxh, dWhh, dbh, dWhy, dby):
        np.clip(gradient, -clip, clip, out=gradient)
