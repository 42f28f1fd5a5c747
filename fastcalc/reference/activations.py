"""Reference (numpy) kernels for the activation family.

``kernel(x, out, num_threads)``: ``x`` and ``out`` are 1-D, contiguous,
native-byte-order arrays of one dtype (float32 or float64); ``out`` is ``x``
itself (in place) or does not overlap it.  numpy's ufuncs run on one thread,
so ``num_threads`` is accepted for the common signature and not used.
Like the compiled kernels (and the ufunc loops calling them), they raise no
floating-point warnings: non-finite input gives its IEEE result silently.
"""

import numpy as np

__all__ = ["sigmoid", "sigmoid_derivative", "sigmoid_derivative_from_output"]


def _exp_minus_abs(x):
    # exp(-|x|) lies in [0, 1]: it never overflows, which is what makes the
    # formulas below stable for every x.
    return np.exp(-np.abs(x))


@np.errstate(all="ignore")
def sigmoid(x, out, num_threads):
    e = _exp_minus_abs(x)
    positive = x >= 0
    # 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0: both avoid exp(+big).
    np.divide(np.where(positive, 1, e), 1 + e, out=out)


@np.errstate(all="ignore")
def sigmoid_derivative(x, out, num_threads):
    # sigmoid(x) * sigmoid(-x) = e / (1 + e)**2, accurate in relative terms for
    # every x; the textbook s * (1 - s) cancels to 0 once s rounds to 1.
    e = _exp_minus_abs(x)
    np.divide(e, np.square(1 + e), out=out)


@np.errstate(all="ignore")
def sigmoid_derivative_from_output(x, out, num_threads):
    np.multiply(x, 1 - x, out=out)
