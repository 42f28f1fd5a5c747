"""Activation functions: the logistic sigmoid and its derivative."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from fastcalc import _dispatch, _validate

__all__ = ["sigmoid", "sigmoid_derivative"]

# What "auto" uses, fastest first, from benchmarks/bench_activations.py on a
# 2-core AVX-512 machine (see the README's results table).
_AUTO_ORDER = ("cython", "numba", "numpy")


def _run(name: str, x, out, backend):
    operands = _validate.elementwise(x, out)
    kernel = _dispatch.kernel("activations", name, backend, _AUTO_ORDER)
    kernel(operands[0], operands[1], _dispatch.kernel_threads())
    return _validate.finish(operands)


def sigmoid(x: ArrayLike, out: np.ndarray | None = None, *, backend: str | None = None):
    """Logistic sigmoid ``1 / (1 + exp(-x))``, elementwise and numerically stable.

    Parameters
    ----------
    x : array_like
        Any shape (0-d and empty included) and memory layout.  float32 and
        float64 are computed natively; float16 is computed in float32;
        bool and integers give float64.
    out : ndarray, optional
        Where to write the result: the shape of ``x`` and the result dtype.
        It may be ``x`` itself (in place).
    backend : {"auto", "numpy", "numba", "cython"}, optional
        Overrides :func:`fastcalc.get_backend` for this call.

    Returns
    -------
    ndarray or scalar
        ``out`` if given; else a new array (a numpy scalar for 0-d input).

    Raises
    ------
    TypeError
        If ``x`` is complex, object, string or another non-real dtype.
    ValueError
        If ``out`` has the wrong shape or dtype or is read-only; if
        ``backend`` is not a backend name.

    Notes
    -----
    No overflow anywhere: ``exp`` is only taken of ``-|x|``.  So
    ``sigmoid(-inf) == 0``, ``sigmoid(inf) == 1``, NaN stays NaN, and results
    below the smallest normal number underflow gradually.  Relative error
    against ``scipy.special.expit``: <= 1e-14 (float64), <= 1e-6 (float32).
    The numba and cython backends use a vectorized exponential and run
    large arrays on :func:`fastcalc.get_num_threads` threads; every backend
    gives the same results to those tolerances.

    Examples
    --------
    >>> import numpy as np, fastcalc
    >>> fastcalc.sigmoid(np.array([-np.inf, 0.0, np.inf]))
    array([0. , 0.5, 1. ])
    >>> float(fastcalc.sigmoid(-1000.0))
    0.0
    """
    return _run("sigmoid", x, out, backend)


def sigmoid_derivative(
    x: ArrayLike,
    out: np.ndarray | None = None,
    *,
    from_output: bool = False,
    backend: str | None = None,
):
    """Derivative of the sigmoid, ``sigmoid(x) * (1 - sigmoid(x))``.

    Parameters
    ----------
    x : array_like
        The pre-activation ``z``; or, with ``from_output=True``, the
        activation ``sigmoid(z)`` a training loop kept from its forward pass.
        Same dtype and layout rules as :func:`sigmoid`.
    out : ndarray, optional
        As in :func:`sigmoid`; may be ``x`` itself.
    from_output : bool, default False
        If True, return ``x * (1 - x)``.
    backend : {"auto", "numpy", "numba", "cython"}, optional
        Overrides :func:`fastcalc.get_backend` for this call.

    Returns
    -------
    ndarray or scalar
        ``out`` if given; else a new array (a numpy scalar for 0-d input).

    Raises
    ------
    TypeError, ValueError
        As in :func:`sigmoid`.

    Notes
    -----
    From ``x`` the result is computed as ``sigmoid(x) * sigmoid(-x)``, which
    keeps its relative accuracy everywhere (<= 1e-13 float64, <= 1e-6
    float32): the textbook ``s * (1 - s)`` of numpy, PyTorch and JAX
    returns 0 once ``s`` rounds to 1 (x > ~17 in float32) although the true
    value is ``exp(-x)``.

    Examples
    --------
    >>> import numpy as np, fastcalc
    >>> fastcalc.sigmoid_derivative(np.array([0.0]))
    array([0.25])
    >>> print(f"{fastcalc.sigmoid_derivative(np.float32(20.0)):.4e}")  # s * (1 - s) gives 0
    2.0612e-09
    >>> fastcalc.sigmoid_derivative(np.array([0.5]), from_output=True)
    array([0.25])
    """
    name = "sigmoid_derivative_from_output" if from_output else "sigmoid_derivative"
    return _run(name, x, out, backend)
