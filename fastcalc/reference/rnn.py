"""Reference (numpy) kernels for the Elman RNN family.

Every array is C-contiguous, native, of one dtype (float32 or float64), and
the outputs overlap no input.  A batch of B sequences of T steps:

``rnn_forward(x, h0, Wxh, Whh, Why, bh, by, h, y, num_threads)`` with
``x`` (T, B, I), ``h0`` (B, H), ``Wxh`` (H, I), ``Whh`` (H, H), ``Why``
(O, H), ``bh`` (H,), ``by`` (O,) writes the hidden states ``h`` (T, B, H)
and outputs ``y`` (T, B, O)::

    h[t] = tanh(x[t] @ Wxh.T + h[t - 1] @ Whh.T + bh)     (h[-1] is h0)
    y[t] = h[t] @ Why.T + by

``rnn_backward(dy, x, h, h0, Wxh, Whh, Why, dh_last, clip, dx, dh0, dWxh,
dWhh, dbh, dWhy, dby, num_threads)`` writes the gradients of a loss L given
``dy`` = dL/dy (T, B, O) and ``dh_last`` = dL/dh[T - 1] (B, H), with ``h``
the forward's hidden states: ``dx`` (T, B, I), ``dh0`` (B, H) and the
parameter gradients, each shaped like its parameter, clipped to
[-clip, clip] (``clip = inf``: not clipped).  Backpropagation through time::

    dh = dy[t] @ Why + da[t + 1] @ Whh          (+ dh_last at t = T - 1)
    da[t] = dh * (1 - h[t] ** 2)                  (tanh' from its output)

and every weight gradient sums the outer products of ``da`` (or ``dy``)
with that step's input.  ``num_threads`` is accepted for the common
signature.  This is the definition the compiled kernels are tested against:
one step at a time, as the seed's slide 11 writes it.
"""

import numpy as np

__all__ = ["rnn_backward", "rnn_forward"]


def rnn_forward(x, h0, Wxh, Whh, Why, bh, by, h, y, num_threads):
    h_prev = h0
    for t in range(x.shape[0]):
        h[t] = np.tanh(x[t] @ Wxh.T + h_prev @ Whh.T + bh)
        h_prev = h[t]
    y[...] = h @ Why.T + by


def rnn_backward(dy, x, h, h0, Wxh, Whh, Why, dh_last, clip, dx, dh0, dWxh, dWhh, dbh, dWhy,
                 dby, num_threads):
    dWhy[...] = np.tensordot(dy, h, axes=([0, 1], [0, 1]))
    dby[...] = dy.sum(axis=(0, 1))
    for gradient in (dWxh, dWhh, dbh):
        gradient[...] = 0
    dh_next = dh_last
    for t in reversed(range(x.shape[0])):
        h_prev = h[t - 1] if t > 0 else h0
        da = (dy[t] @ Why + dh_next) * (1 - h[t] ** 2)
        dWxh += da.T @ x[t]
        dWhh += da.T @ h_prev
        dbh += da.sum(axis=0)
        dx[t] = da @ Wxh
        dh_next = da @ Whh
    dh0[...] = dh_next
    for gradient in (dWxh, dWhh, dbh, dWhy, dby):
        np.clip(gradient, -clip, clip, out=gradient)
