"""Activation functions: the logistic sigmoid and its derivative, as numpy ufuncs.

:func:`sigmoid` and :func:`sigmoid_derivative` call the numpy ufuncs of
:mod:`fastcalc.ufuncs` and add fastcalc's ``backend=`` keyword.  So pandas,
xarray, masked arrays, torch tensors and ndarray subclasses keep their type
(through ``__array_ufunc__`` and ``__array_wrap__``), ``out=``, ``where=``,
``dtype=``, ``casting=`` and broadcasting behave as in every numpy ufunc,
and a dask array stays lazy (:mod:`fastcalc.dask` computes it block by block).
Each function also carries the ufunc attributes ``types``, ``ntypes``,
``nin``, ``nout``, ``nargs``, ``identity``, ``signature`` and the method ``at``.
"""

from __future__ import annotations

import numpy as np

from fastcalc import _dispatch, _validate

__all__ = ["sigmoid", "sigmoid_derivative"]

# What "auto" uses, fastest first, from benchmarks/bench_activations.py on a
# 2-core AVX-512 machine (see the README's results table).  The ufunc loops
# run the Cython kernels under "auto" (they are part of the Cython module).
_AUTO_ORDER = ("cython", "numba", "numpy")

# No kernel starts threads for fewer elements (the PARALLEL_MIN_SIZE of the
# Cython and Numba modules): smaller calls are handed one thread without
# asking the OpenMP runtime for its limit.
_THREADED_FROM = 1 << 15


def run_backend(name: str, x, out, backend, kernel_ready: bool = False):
    """The kernel ``name`` of ``backend`` on ``x`` into ``out`` (None: a new array).

    What the ufunc loops call for the numba and numpy backends (on 1-D views
    of each block numpy hands them), what :mod:`fastcalc.dask` runs per
    block, and what the activations run where the Cython extension, hence
    the ufuncs, could not be loaded.  ``kernel_ready``: the loops know that
    ``x`` and ``out`` already are what a kernel takes (1-D, contiguous, one
    float dtype, ``out`` either ``x`` or apart from it), so no check is made.
    """
    kernel = _dispatch.kernel("activations", name, backend, _AUTO_ORDER)
    if kernel_ready:
        kernel(x, out, 1 if x.size < _THREADED_FROM else _dispatch.kernel_threads())
        return out
    operands = _validate.elementwise(x, out)
    threads = 1 if operands[0].size < _THREADED_FROM else _dispatch.kernel_threads()
    kernel(operands[0], operands[1], threads)
    return _validate.finish(operands)


# The ufuncs of fastcalc.ufuncs by name, once loaded.
_ufuncs: dict[str, np.ufunc] = {}
_NDARRAY = np.ndarray


def _ufunc(name: str) -> np.ufunc | None:
    """The ufunc ``name`` of :mod:`fastcalc.ufuncs`; None without the Cython extension."""
    from fastcalc import ufuncs

    try:
        found = getattr(ufuncs, name)
    except RuntimeError:
        return None
    _ufuncs[name] = found
    return found


def _call(name: str, x, out, backend, kwargs):
    """The general path of an activation: any input, backend and ufunc keywords."""
    if type(x) is not np.ndarray:
        if _validate.is_dask_array(x):
            _validate.no_out_with_dask(out, "x")
            if kwargs:
                raise TypeError(f"{', '.join(kwargs)}: not supported with a dask array x "
                                "(fastcalc.dask computes it block by block)")
            return _validate.on_dask("elementwise")(name, x, backend)
        _validate.refuse_grad_tensor(x, "x")
    ufunc = _ufuncs.get(name) or _ufunc(name)
    if ufunc is None:
        if kwargs:
            raise TypeError(f"{', '.join(kwargs)}: numpy ufunc keywords need fastcalc's "
                            "Cython extension, which could not be loaded")
        return run_backend(name, x, out, backend)
    token = _enter(backend)
    try:
        return ufunc(x, out, **kwargs)
    except (TypeError, ValueError) as error:
        _explain(error, x, out)
        raise
    finally:
        if token is not None:
            _dispatch.leave_backend(token)


def _enter(backend: str | None):
    """Select ``backend=`` for the ufunc call (:func:`fastcalc._dispatch.enter_backend`);
    None where nothing needs selecting: no ``backend=``, or the backend already selected
    (``"auto"`` by default)."""
    if backend is None or backend == _dispatch.get_backend():
        return None
    return _dispatch.enter_backend(backend)


def _explain(error: TypeError | ValueError, x, out) -> None:
    """Raise fastcalc's error, naming the argument, for numpy's errors that name none:
    no loop for x's dtype, an ``out`` that is no ndarray or that x does not broadcast to."""
    if isinstance(error, TypeError) and getattr(error, "dtypes", None) is not None:
        try:  # numpy found no loop: fastcalc's message names x's dtype
            _validate.compute_dtype(np.asarray(x).dtype, "x")
        except TypeError as explained:
            raise explained from None
    if out is None:
        return
    if not isinstance(out, np.ndarray | tuple):
        raise TypeError(f"out must be an ndarray, got {type(out).__name__}") from None
    if isinstance(error, ValueError) and isinstance(out, np.ndarray):
        shape = np.shape(x)
        try:
            fits = np.broadcast_shapes(shape, out.shape) == out.shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(f"out has shape {out.shape}, which x of shape {shape} does not "
                             "broadcast to") from None


def _like_a_ufunc(function, name: str):
    """Give ``function`` the attributes of the unary ufunc ``name``, and its ``at`` method."""
    from fastcalc import ufuncs

    def at(a, indices, /, *, backend=None):
        """``a[indices] = f(a[indices])`` in place, unbuffered, as :meth:`numpy.ufunc.at`."""
        ufunc = _ufuncs.get(name) or _ufunc(name)
        if ufunc is None:
            raise TypeError("at needs fastcalc's Cython extension, which could not be loaded")
        token = _enter(backend)
        try:
            return ufunc.at(a, indices)
        finally:
            if token is not None:
                _dispatch.leave_backend(token)

    at.__qualname__ = f"{name}.at"
    function.at = at
    function.types = list(ufuncs.LOOP_TYPES)
    function.ntypes = len(ufuncs.LOOP_TYPES)
    function.nin, function.nout, function.nargs = 1, 1, 2
    function.identity = function.signature = None
    return function


_PARAMETERS = """\
x : array_like
        Any shape (0-d and empty included), memory layout and container:
        an ndarray or subclass, a pandas Series or DataFrame, an xarray
        DataArray, a masked array, a torch CPU tensor (not one that requires
        grad: pass ``t.detach()``) are returned as that type, with their
        index, coordinates or mask; a dask array stays lazy.  float32 and
        float64 are computed natively; float16 is computed in float32;
        bool and integers give float64.
    out : ndarray, optional
        Where to write the result, as in numpy's ufuncs: any shape ``x``
        broadcasts to, a dtype the result casts to under ``casting``.  It
        may be ``x`` itself (in place) or overlap it.  If the call is
        interrupted (see Notes), ``out`` is partially written."""

_KEYWORDS = """\
**kwargs
        numpy's ufunc keywords: ``where``, ``casting``, ``order``, ``dtype``,
        ``subok`` (not with a dask ``x``)."""

_ERRORS = """\
TypeError
        If ``x`` is complex, object, string, ``np.longdouble`` or another
        dtype fastcalc does not compute in (the message names it), or a
        torch tensor that requires grad; if ``out`` cannot hold the result
        under ``casting``.
    ValueError
        If ``out`` has a shape ``x`` does not broadcast to or is read-only;
        if ``backend`` is not a backend name."""

_NOTES = """\
Each call runs the numpy ufunc of :mod:`fastcalc.ufuncs`, whose inner
    loops are fastcalc's kernels: the Cython ones under ``"auto"``, else
    the selected backend's, on each block numpy hands the loop.  Input
    may be read-only (``np.load(..., mmap_mode="r")``) and is never
    modified unless it is ``out``.  The loops raise no floating-point
    warnings: NaN and infinities give their IEEE results silently.  Large
    arrays run on :func:`fastcalc.get_num_threads` threads on the compiled
    backends.  A loop checks for Ctrl-C every few tens of milliseconds, so a long
    call raises KeyboardInterrupt within a fraction of a second on every
    backend."""

def sigmoid(x, out=None, *, backend=None, **kwargs):
    """Logistic sigmoid ``1 / (1 + exp(-x))``, elementwise and numerically stable.

    A numpy ufunc, :data:`fastcalc.ufuncs.sigmoid`, with a ``backend=`` keyword.

    Parameters
    ----------
    {parameters}
    backend : {{"auto", "numpy", "numba", "cython"}}, optional
        Overrides :func:`fastcalc.get_backend` for this call.
    {keywords}

    Returns
    -------
    ndarray, container or scalar
        ``out`` if given; else a new array of the type ``x`` asks for (a
        numpy scalar for a scalar or 0-d ``x``).

    Raises
    ------
    {errors}

    Notes
    -----
    No overflow anywhere: ``exp`` is only taken of ``-|x|``.  So
    ``sigmoid(-inf) == 0``, ``sigmoid(inf) == 1``, NaN stays NaN, and results
    below the smallest normal number underflow gradually.  Relative error
    against ``scipy.special.expit``: <= 1e-14 (float64), <= 1e-6 (float32).
    The numba and cython backends use a vectorized exponential; every
    backend gives the same results to those tolerances.

    {notes}

    Examples
    --------
    >>> import numpy as np, fastcalc
    >>> fastcalc.sigmoid(np.array([-np.inf, 0.0, np.inf]))
    array([0. , 0.5, 1. ])
    >>> float(fastcalc.sigmoid(-1000.0))
    0.0
    >>> fastcalc.sigmoid(np.zeros(3), where=[True, False, True], out=np.full(3, -1.0))
    array([ 0.5, -1. ,  0.5])
    """
    if backend is not None or kwargs or type(x) is not _NDARRAY or "sigmoid" not in _ufuncs:
        return _call("sigmoid", x, out, backend, kwargs)
    try:  # the common case, kept short: ~0.1 us over the ufunc itself
        return _ufuncs["sigmoid"](x) if out is None else _ufuncs["sigmoid"](x, out)
    except (TypeError, ValueError) as error:
        _explain(error, x, out)
        raise


def sigmoid_derivative(x, out=None, *, from_output=False, backend=None, **kwargs):
    """Derivative of the sigmoid, ``sigmoid(x) * (1 - sigmoid(x))``.

    A numpy ufunc, :data:`fastcalc.ufuncs.sigmoid_derivative`, with
    ``from_output=`` and ``backend=`` keywords.

    Parameters
    ----------
    {parameters}
    from_output : bool, default False
        If True, ``x`` holds the activation ``s = sigmoid(z)`` a training
        loop kept from its forward pass, and the result is ``s * (1 - s)``
        (the ufunc :data:`fastcalc.ufuncs.sigmoid_derivative_from_output`).
    backend : {{"auto", "numpy", "numba", "cython"}}, optional
        Overrides :func:`fastcalc.get_backend` for this call.
    {keywords}

    Returns
    -------
    ndarray, container or scalar
        As in :func:`sigmoid`.

    Raises
    ------
    {errors}

    Notes
    -----
    From ``x`` the result is computed as ``sigmoid(x) * sigmoid(-x)``, which
    keeps its relative accuracy everywhere (<= 1e-13 float64, <= 1e-6
    float32): the textbook ``s * (1 - s)`` of numpy, PyTorch and JAX
    returns 0 once ``s`` rounds to 1 (x > ~17 in float32) although the true
    value is ``exp(-x)``.

    {notes}

    Examples
    --------
    >>> import numpy as np, fastcalc
    >>> fastcalc.sigmoid_derivative(np.array([0.0]))
    array([0.25])
    >>> print(f"{{fastcalc.sigmoid_derivative(np.float32(20.0)):.4e}}")  # s * (1 - s) gives 0
    2.0612e-09
    >>> fastcalc.sigmoid_derivative(np.array([0.5]), from_output=True)
    array([0.25])
    """
    name = "sigmoid_derivative_from_output" if from_output else "sigmoid_derivative"
    if backend is not None or kwargs or type(x) is not _NDARRAY or name not in _ufuncs:
        return _call(name, x, out, backend, kwargs)
    try:
        return _ufuncs[name](x) if out is None else _ufuncs[name](x, out)
    except (TypeError, ValueError) as error:
        _explain(error, x, out)
        raise


for _function in (sigmoid, sigmoid_derivative):
    _function.__doc__ = _function.__doc__.format(
        parameters=_PARAMETERS, keywords=_KEYWORDS, errors=_ERRORS, notes=_NOTES)
    _like_a_ufunc(_function, _function.__name__)
del _function
