"""Activation functions: the logistic sigmoid and its derivative."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from fastcalc import _dispatch, _slices, _validate

__all__ = ["sigmoid", "sigmoid_derivative"]

# What "auto" uses, fastest first, from benchmarks/bench_activations.py on a
# 2-core AVX-512 machine (see the README's results table).
_AUTO_ORDER = ("cython", "numba", "numpy")

# Generous estimates of one element's time: on the numpy backend, or with a
# dtype, byte-order or layout conversion on the way in and out (the slowest
# paths); and in a compiled kernel on one thread.  A call estimated above two
# slices of _slices.SLICE_SECONDS runs in slices, so that Ctrl-C is honoured;
# below _SLICED_FROM elements (10**7) a call pays one comparison.
_SECONDS_PER_ELEMENT = 2e-8
_SECONDS_PER_ELEMENT_COMPILED = 4e-9
_SLICED_FROM = round(2 * _slices.SLICE_SECONDS / _SECONDS_PER_ELEMENT)
_REFERENCE = "fastcalc.reference.activations"
# No kernel starts threads for fewer elements (the PARALLEL_MIN_SIZE of the
# Cython and Numba modules): smaller calls are handed one thread without
# asking the OpenMP runtime for its limit.
_THREADED_FROM = 1 << 15


def _run(name: str, x, out, backend, sliceable: bool = True):
    kernel = _dispatch.kernel("activations", name, backend, _AUTO_ORDER)
    operands = _validate.elementwise_fast(x, out)
    if operands is None or (sliceable and operands[0].size >= _SLICED_FROM):
        if _validate.is_dask_array(x):
            _validate.no_out_with_dask(out, "x")
            return _validate.on_dask("elementwise")(name, x, backend)
        if sliceable and isinstance(x, np.ndarray) and x.size >= _SLICED_FROM:
            # Large: sliced before any copy.  No conversion and a compiled
            # kernel: faster, so larger slices.
            compiled = operands is not None and kernel.__module__ != _REFERENCE
            seconds = _SECONDS_PER_ELEMENT_COMPILED if compiled else _SECONDS_PER_ELEMENT
            return _run_in_slices(name, x, out, backend, seconds)
        operands = _validate.elementwise(x, out)
    threads = 1 if operands[0].size < _THREADED_FROM else _dispatch.kernel_threads()
    kernel(operands[0], operands[1], threads)
    return _validate.finish(operands)


def _run_in_slices(name: str, x: np.ndarray, out, backend, seconds_per_element: float):
    """:func:`_run` over consecutive slices of ``x`` and ``out``, in memory order.

    Each slice is validated, converted and computed on its own, so the copies
    a dtype, byte order or layout needs are sliced too (and their temporaries
    bounded by a slice).  Elementwise kernels give every element the same
    result wherever a slice falls.
    """
    array = np.asarray(x)  # a subclass is read through a plain view
    _, result_dtype = _validate.compute_dtype(array.dtype, "x")
    order = "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"
    if out is None:
        result = target = np.empty(array.shape, dtype=result_dtype, order=order)
    else:
        _validate.check_out(out, array.shape, result_dtype)
        result, target = out, np.asarray(out)
        if np.may_share_memory(array, target) and not _validate.same_buffer(array, target):
            array = array.copy()  # a slice of out would overwrite elements not read yet
    # Slices run along the axis outermost in memory; both arrays contiguous
    # (the usual large case), along their elements.
    source, target = (array, target) if order == "C" else (array.T, target.T)
    if source.flags.c_contiguous and target.flags.c_contiguous:
        source, target = source.reshape(-1), target.reshape(-1)
    items = len(source)
    _slices.run_in_slices(
        lambda start, stop: _run(name, source[start:stop], target[start:stop], backend,
                                 sliceable=False),
        items, seconds_per_element * array.size / items)
    return result


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
        It may be ``x`` itself (in place), overlap it, or be an ndarray
        subclass (``np.memmap``, a masked array, ...), which is written and
        returned as by numpy's ufuncs.  If the call is interrupted (see
        Notes), ``out`` is partially written: some elements hold the
        result, the others what they held before.
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
    gives the same results to those tolerances.  Input may be read-only
    (``np.load(..., mmap_mode="r")``, ``np.frombuffer``) and is never
    modified unless it is ``out``.

    Calls estimated to take more than about 0.2 s (10**7 elements on the
    numpy backend or when ``x`` or ``out`` needs a conversion, 5 * 10**7 on
    the compiled backends) run in consecutive slices of about 0.1 s, copies
    included, so that Ctrl-C raises KeyboardInterrupt within a fraction of a
    second on every backend; the result is the same bit for bit.

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
        As in :func:`sigmoid` (may be ``x`` itself; partially written if the
        call is interrupted).
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
    value is ``exp(-x)``.  Read-only input, ``out=`` and Ctrl-C behave as in
    :func:`sigmoid`.

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
