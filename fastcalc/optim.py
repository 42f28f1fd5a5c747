"""Batched gradient descent: thousands of small problems at once, compiled.

The seed's slide 3 runs gradient descent on one function from one start, in a
Python loop; slide 4 trains one sigmoid neuron.  Here the same descents run
over whole batches: many starting points of a user's function
(:func:`gradient_descent`), or many small linear and logistic models, one per
customer, sensor or bootstrap sample (:func:`fit_linear`,
:func:`fit_logistic`), each problem independent of the others.
"""

from __future__ import annotations

import collections
import math
import numbers
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from fastcalc import _dispatch, _grad_key, _slices, _validate
from fastcalc.reference import optim as _reference

__all__ = ["MAX_ITERATIONS", "DescentResult", "FitResult", "GradCacheInfo", "GradCompileError",
           "fit_linear", "fit_logistic", "gradient_descent", "grad_cache_info",
           "set_grad_cache_size"]

# A user's grad can only be compiled by Numba; Cython runs the built-in models.
_DESCENT_AUTO_ORDER = ("numba", "numpy")
# From benchmarks/bench_optim.py: Cython is ahead on every case measured.
_FIT_AUTO_ORDER = ("cython", "numba", "numpy")

# "auto" compiles a user's grad only when that pays (ski rental): a grad Numba has
# not compiled runs on numpy while the numpy time of its calls, estimated from their
# size, adds up to less than a compile costs; the call that would pass it compiles.
# Measured here (2 cores, AVX-512): numpy's descent takes 6 us a step plus 1.2-2 ns
# per coordinate for 2*x + 5; Numba compiles a new grad with its descent kernels in
# about 1.1 s, 1.5 s for the first in a process (Numba's import included).
_COMPILE_SECONDS = 1.0
_NUMPY_SECONDS_PER_STEP = 6e-6
_NUMPY_SECONDS_PER_COORDINATE_STEP = 2e-9
# The estimated numpy seconds each grad (by the hash of its key, which keeps no
# captured array alive) has run under "auto", most recent last; bounded, the oldest
# forgotten.
_numpy_seconds: collections.OrderedDict = collections.OrderedDict()
_NUMPY_SECONDS_KEPT = 1024
_numpy_seconds_lock = threading.Lock()

# The loss codes of the kernels (fastcalc.reference.optim.LOSSES).
_LINEAR_SQUARED, _LOGISTIC_LOG, _LOGISTIC_SQUARED = 0, 1, 2

# The most steps: the kernels count steps and the iterates of the history
# (n_iter + 1 of them) in int64.
MAX_ITERATIONS = 2**63 - 2
_MAX_BYTES = np.iinfo(np.intp).max

# Calls of at most this many coordinate-steps (problems x steps x coordinates)
# of a user's grad run in one kernel call, unmeasured: a compiled step costs
# nanoseconds, so even a grad of a microsecond per coordinate ends them within
# about a second.  Longer calls time a first tile of about _PROBE_WORK
# coordinate-steps and run the rest in slices of _slices.SLICE_SECONDS from
# that measure.
_UNMEASURED_WORK = 1 << 20
_PROBE_WORK = 1 << 18
# A generous bound on the compiled fits' time per row and feature of a step,
# on one thread (benchmarks/bench_optim.py: 0.4-0.8 ns with AVX2/AVX-512).
_FIT_SECONDS_PER_ROW_FEATURE = 2e-9


class DescentResult(NamedTuple):
    """What :func:`gradient_descent` returns.

    Attributes
    ----------
    x : ndarray or numpy scalar
        The final points, shaped like ``x0``.
    n_iter : ndarray of int64 or int
        The steps taken by each problem (shape ``x0.shape[:1]``; an int for
        a scalar ``x0``).  Without ``tol`` every problem takes ``n_iter``
        steps, and this is a read-only broadcast of that number (no memory
        per problem).
    converged : ndarray of bool or bool
        Per problem: with ``tol``, whether the gradient's norm at ``x`` is
        below ``tol``; without, whether the iterates stayed finite.
    history : ndarray or None
        With ``history=True``, every iterate: shape ``(n_iter + 1, *x0.shape)``,
        ``history[0]`` is ``x0``; a problem that stopped early repeats its
        last point.  None otherwise.
    """

    x: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray
    history: np.ndarray | None


class FitResult(NamedTuple):
    """What :func:`fit_logistic` and :func:`fit_linear` return.

    Attributes
    ----------
    coef : ndarray, shape (D,) or (P, D)
        The fitted weights of each problem.
    intercept : numpy scalar or ndarray, shape (P,)
        The fitted intercepts (zero without ``fit_intercept``).
    loss : ndarray, shape (n_iter,) or (P, n_iter)
        The objective before each step: the loss over the step's batch
        (mean or sum, as ``reduction`` says) plus ``l2 / 2 * |coef|**2``.
    converged : bool or ndarray of bool, shape (P,)
        Whether the coefficients, intercept and last loss are finite; a run
        whose ``lr`` is too large diverges to inf/NaN and gets False (and a
        :class:`RuntimeWarning`).
    """

    coef: np.ndarray
    intercept: np.ndarray
    loss: np.ndarray
    converged: np.ndarray


class GradCompileError(TypeError):
    """Numba could not compile the ``grad`` given to :func:`gradient_descent`."""


class GradCacheInfo(NamedTuple):
    """What :func:`grad_cache_info` returns.

    Attributes
    ----------
    hits : int
        Calls that found their grad compiled.
    misses : int
        Grads compiled.
    size : int
        Compiled grads held.
    maxsize : int
        The most it holds (:func:`set_grad_cache_size`).
    """

    hits: int
    misses: int
    size: int
    maxsize: int


def _numba_grads():
    """The Numba backend's cache of compiled grads, or None without Numba."""
    if _dispatch.backend_status()["numba"] is not None:
        return None
    return _dispatch._module("numba", "optim").grads


def set_grad_cache_size(size: int) -> None:
    """Keep at most ``size`` compiled grads of :func:`gradient_descent` (default 64).

    The numba backend compiles each ``grad`` once, for all the functions of
    the same contents: the same code and constants, defaults, closure cell
    values and referenced globals (the same objects).  So a lambda written
    in a loop, or a closure factory called again with equal values, compiles
    once.  The compiled grads live in a least-recently-used cache of this
    size; evicting one releases the function and what it references (Numba
    keeps the machine code of every function it compiled until the process
    ends, a few megabytes a grad: grads of ever new contents still cost that).
    Without Numba this does nothing.

    Parameters
    ----------
    size : int
        >= 1.

    Raises
    ------
    TypeError
        ``size`` not an integer.
    ValueError
        ``size`` < 1.

    See Also
    --------
    grad_cache_info : the cache's hits, misses and size.
    """
    size = _count(size, "size", 1)
    grads = _numba_grads()
    if grads is not None:
        grads.resize(size)


def grad_cache_info() -> GradCacheInfo:
    """The counts of :func:`gradient_descent`'s cache of compiled grads.

    All zero (and ``maxsize`` 0) without Numba.

    Examples
    --------
    >>> from fastcalc.optim import grad_cache_info
    >>> info = grad_cache_info()
    >>> info.size <= info.maxsize
    True
    """
    grads = _numba_grads()
    return GradCacheInfo(0, 0, 0, 0) if grads is None else grads.info()


def _real(value, name: str) -> float:
    """``value`` as a float (an int past float's range as an infinity), or a TypeError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _positive(value, name: str) -> float:
    number = _real(value, name)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return number


def _count(value, name: str, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be in [{minimum}, {maximum}], got {value!r}")
    return int(value)


def _flag(value, name: str) -> bool:
    """``value`` if it is a bool (Python's or numpy's): "no" or 1 is a TypeError."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__}")
    return bool(value)


def _seed(value):
    """``value`` if it is a seed as documented: None, an int >= 0, a Generator."""
    if isinstance(value, (np.random.Generator, np.random.BitGenerator, np.random.SeedSequence)):
        return value
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(
                f"seed must be None, an integer >= 0 or a numpy.random.Generator, got "
                f"{type(value).__name__}"
            )
        if value < 0:
            raise ValueError(f"seed must be >= 0, got {value!r}")
    return value


def _empty(shape: tuple[int, ...], dtype, what: str) -> np.ndarray:
    """``np.empty(shape, dtype)``, or a ValueError saying which argument asked for too much."""
    size = math.prod(shape) * np.dtype(dtype).itemsize
    if size > _MAX_BYTES or any(n > _MAX_BYTES for n in shape):
        raise ValueError(f"{what} would take {size:,} bytes, more than an array can hold")
    return np.empty(shape, dtype)


def _run_tiles(run, problems: int, steps: int, *, seconds: float | None = None,
               work: int = 1, align: int = 1, slice_problems: bool = True) -> None:
    """``run(lo, hi, t0, t1)`` (steps t0..t1-1 of problems lo..hi-1) over every tile.

    A kernel resumes a problem from its state (the positions and velocities,
    the coefficients), so a call can be cut in problems and in steps at once
    (steps at multiples of ``align``: the epochs of mini-batches; problems
    only if ``slice_problems``) without changing its result.  ``seconds``: a
    generous estimate of one problem-step's time; None (a user's grad, of
    unknown cost) measures it, unless the call has at most _UNMEASURED_WORK
    coordinate-steps (``work`` per problem-step) and runs whole.  The tiles
    run in slices of bounded time (:func:`fastcalc._slices.run_in_slices`), so
    that Ctrl-C is honoured between two of them.
    """
    if seconds is not None:
        _run_slices(run, problems, steps, seconds, align, slice_problems)
        return
    if problems * steps * work <= _UNMEASURED_WORK:
        run(0, problems, 0, steps)
        return
    # Compile (a tile of no steps) before timing a first tile of whole problems if it can.
    run(0, 1 if slice_problems else problems, 0, 0)
    first_steps = min(steps, max(1, _PROBE_WORK // work))
    first = (min(problems, max(1, _PROBE_WORK // (first_steps * work))) if slice_problems
             else problems)
    began = time.perf_counter()
    run(0, first, 0, first_steps)
    seconds = (time.perf_counter() - began) / (first * first_steps)
    _run_slices(lambda lo, hi, t0, t1: run(lo, hi, t0 + first_steps, t1 + first_steps), first,
                steps - first_steps, seconds, align, slice_problems)
    _run_slices(lambda lo, hi, t0, t1: run(lo + first, hi + first, t0, t1), problems - first,
                steps, seconds, align, slice_problems)


def _run_slices(run, problems: int, steps: int, seconds: float, align: int,
                slice_problems: bool) -> None:
    """:func:`_run_tiles` past its first tile, ``seconds`` a problem-step.

    Slices of whole problems when one problem's steps fit in a slice (each
    kernel call then runs all the steps of its problems, as an unsliced call
    does); else slices of steps, each over every problem (in slices of them
    too, if one step of all of them is long).
    """
    if problems == 0 or steps == 0:
        return
    if slice_problems and steps * seconds < _slices.SLICE_SECONDS:
        _slices.run_in_slices(lambda lo, hi: run(lo, hi, 0, steps), problems, steps * seconds)
        return

    def run_steps(t0, t1):
        if slice_problems:
            _slices.run_in_slices(lambda lo, hi: run(lo, hi, t0, t1), problems,
                                  (t1 - t0) * seconds)
        else:
            run(0, problems, t0, t1)

    _slices.run_in_slices(run_steps, steps, problems * seconds, align=align)


def _warn_diverged(function: str, finite: np.ndarray) -> None:
    failed = finite.size - int(np.count_nonzero(finite))
    if failed:
        warnings.warn(
            f"{function}: {failed} of {finite.size} problems diverged (their values "
            "turned to inf or NaN); try a smaller lr",
            RuntimeWarning,
            stacklevel=3,
        )


def gradient_descent(
    grad: Callable,
    x0: ArrayLike,
    lr: float = 0.1,
    n_iter: int = 100,
    *,
    momentum: float = 0.0,
    tol: float | None = None,
    history: bool = False,
    backend: str | None = None,
) -> DescentResult:
    """Minimize by gradient descent, over a batch of independent problems at once.

    Every problem takes steps ``x = x - lr * v`` with ``v = grad(x)`` (or,
    with momentum, ``v = momentum * v + grad(x)``, PyTorch's SGD momentum),
    ``n_iter`` times or, with ``tol``, until its gradient's norm falls below
    ``tol``.

    Parameters
    ----------
    grad : callable
        The gradient of the function to minimize at one point: a plain
        Python function of arithmetic and numpy math, e.g.
        ``lambda x: 2*x + 5`` for f(x) = x**2 + 5x + 6.  For scalar problems
        it takes and returns a number; for D-dimensional ones an array (D,).
        The numba backend compiles it (once for all functions of the same
        contents, see :func:`set_grad_cache_size`) and calls it point by
        point; the numpy backend calls it once per step on the whole batch
        ((B,) or (B, D)), so it must broadcast.
    x0 : array_like, scalar, (B,) or (B, D)
        The starting points: a scalar is one problem (the seed's slide 3),
        (B,) holds B scalar problems, (B, D) B problems of D coordinates.
        One problem in D dimensions (:func:`scipy.optimize.minimize`'s
        ``x0`` of shape (D,)) is ``x0[None]``, of shape (1, D).
        float32 stays float32, float16 is computed in float32, integers and
        bool give float64.
    lr : float, optional
        The learning rate (step size), finite and > 0.
    n_iter : int, optional
        The most steps any problem takes, in [0, 2**63 - 2] (``MAX_ITERATIONS``).
    momentum : float, optional
        In [0, 1); 0 is plain gradient descent.
    tol : float, optional
        A problem stops once the norm of its gradient is below ``tol``
        (checked before every step and at the end).  None: every problem
        takes ``n_iter`` steps.
    history : bool, optional
        Also return every iterate (memory: ``n_iter + 1`` copies of ``x0``).
    backend : {"auto", "numba", "numpy"}, optional
        Overrides :func:`fastcalc.get_backend`.  ``"auto"`` compiles ``grad``
        only when that pays: a grad Numba has not compiled runs on numpy
        while the numpy time of its calls, estimated as ``n_iter * (6 us +
        2 ns * x0.size)``, adds up to less than a compile (priced at 1 s);
        the call that would pass it, and every call of a grad compiled
        already, run on numba.  A grad of one point that does not broadcast
        over the batch is compiled at once; one Numba cannot compile runs on
        numpy with a warning.  numba runs every problem without returning to Python,
        on :func:`fastcalc.get_num_threads` threads, scalar problems in
        vectorized blocks; its results equal numpy's except where ``grad``'s
        own math differs (Numba types ``2 * x`` of a float32 ``x`` as float64).
        ``"cython"`` cannot compile user code and is a ValueError.
        A long numba call runs in slices of about 0.1 s (of problems, and of
        steps when few problems take many: a descent resumes exactly where
        it stopped, so the result is the one of a single call), timed on a
        first slice, and Ctrl-C raises KeyboardInterrupt between two of them;
        numpy takes it between two numpy operations.  Nothing is returned
        then, and ``x0`` is never written.

    Returns
    -------
    DescentResult
        The named tuple ``(x, n_iter, converged, history)``.  Problems whose
        iterates turned to inf or NaN (``lr`` too large) have
        ``converged=False`` and raise a :class:`RuntimeWarning`.

    Raises
    ------
    TypeError
        ``grad`` not callable, or (:class:`GradCompileError`) not
        compilable by Numba with ``backend="numba"``; ``x0`` complex or not
        numeric; ``lr``, ``momentum`` or ``tol`` not a real number, ``n_iter``
        not an integer, ``history`` not a bool.
    ValueError
        ``lr`` not finite and > 0, ``n_iter`` outside [0, 2**63 - 2] or a
        history no array can hold, ``momentum`` outside [0, 1), ``tol`` not
        finite and > 0, ``x0`` with more than 2 dimensions, ``grad``
        returning the wrong shape, or the cython backend.  All checked
        before ``grad`` is first called.

    Examples
    --------
    The seed's slide 3, then a million starting points at once:

    >>> import numpy as np, fastcalc
    >>> f = lambda x: x**2 + 5*x + 6
    >>> result = fastcalc.gradient_descent(lambda x: 2*x + 5, 0.0, lr=0.1, n_iter=100)
    >>> print(f"Minimum found at x = {result.x:.2f}, f(x) = {f(result.x):.2f}")
    Minimum found at x = -2.50, f(x) = -0.25
    >>> starts = np.linspace(-10, 10, 1_000_000)
    >>> minima = fastcalc.gradient_descent(lambda x: 2*x + 5, starts, n_iter=100).x
    >>> minima.shape, bool(np.abs(minima + 2.5).max() < 1e-6)
    ((1000000,), True)

    One problem in two dimensions, ``x @ A @ x / 2 - b @ x``, whose
    gradient is ``A @ x - b``:

    >>> A, b = np.array([[3.0, 1.0], [1.0, 2.0]]), np.array([1.0, -1.0])
    >>> fastcalc.gradient_descent(lambda p: A @ p - b, np.zeros((1, 2)), lr=0.2, n_iter=200).x
    array([[ 0.6, -0.8]])
    """
    if _validate.is_dask_array(x0):
        return _validate.on_dask("gradient_descent")(
            grad, x0, lr, n_iter, momentum=momentum, tol=tol, history=history, backend=backend)
    if not callable(grad):
        raise TypeError(f"grad must be callable, got {type(grad).__name__}")
    array = _validate.as_array(x0, "x0")
    compute, returned = _validate.compute_dtype(array.dtype, "x0")
    if array.ndim > 2:
        raise ValueError(
            f"x0 must be a scalar, (B,) or (B, D) array of starting points, got shape "
            f"{array.shape}"
        )
    lr = _positive(lr, "lr")
    n_iter = _count(n_iter, "n_iter", 0, MAX_ITERATIONS)
    if not 0 <= _real(momentum, "momentum") < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    momentum = float(momentum)
    tolerance = -1.0 if tol is None else _positive(tol, "tol")
    history = _flag(history, "history")

    # The kernels read the starting points from x0 and write the results to x:
    # no copy of x0 when it already is a contiguous array of the compute dtype.
    x0 = np.ascontiguousarray(array.reshape(-1) if array.ndim == 0 else array, dtype=compute)
    x = np.empty_like(x0)
    problems = x.shape[0]
    # Without tol every problem takes n_iter steps: the kernels count them only with it.
    steps = np.zeros(problems if tol is not None else 0, dtype=np.int64)
    # Without momentum the velocity is the gradient: no state to carry between slices.
    velocity = np.zeros((problems if momentum else 0, *x.shape[1:]), dtype=compute)
    converged = np.zeros(problems, dtype=bool)
    record = (_empty((n_iter + 1, *x.shape), compute, f"history=True with n_iter={n_iter}")
              if history else np.empty((0, *x.shape), dtype=compute))

    chosen = _dispatch.get_backend() if backend is None else backend
    if chosen == "cython":
        raise ValueError(
            "the cython backend cannot run a user's grad (Cython compiles fastcalc's own "
            "kernels ahead of time); use backend='numba' to compile grad, or 'numpy'"
        )
    auto = chosen == "auto"
    if auto and not _compiling_pays(grad, x.size, n_iter):
        chosen = "numpy"
    kernel = _dispatch.kernel("optim", "gradient_descent", chosen, _DESCENT_AUTO_ORDER)
    threads = _dispatch.kernel_threads()

    def run(kernel, lo, hi, t0, t1):
        """Steps t0..t1-1 of problems lo..hi-1, from where the previous tile left them."""
        if t0 and tol is not None and converged[lo:hi].all():
            # Each stopped at a gradient below tol, where it stays for every later step.
            record[t0 + 1:t1 + 1, lo:hi] = x[lo:hi]
            return
        kernel(grad, (x if t0 else x0)[lo:hi], x[lo:hi], velocity[lo:hi], lr, momentum,
               t1 - t0, tolerance, steps[lo:hi], converged[lo:hi], record[t0:t1 + 1, lo:hi],
               threads)

    def descend(kernel):
        # numpy steps in Python, which takes Ctrl-C between two numpy operations.
        if (kernel is _reference.gradient_descent
                or x.size * n_iter <= _UNMEASURED_WORK):  # small calls: one kernel call
            kernel(grad, x0, x, velocity, lr, momentum, n_iter, tolerance, steps, converged,
                   record, threads)
        else:
            _run_tiles(lambda lo, hi, t0, t1: run(kernel, lo, hi, t0, t1), problems, n_iter,
                       work=math.prod(x.shape[1:]), slice_problems=not history)

    if x.size == 0:  # no problems, or problems of no coordinates: gradient norm 0
        converged[:] = True
    else:
        def descend_again(backend):
            steps[:] = 0
            velocity[:] = 0
            descend(_dispatch.kernel("optim", "gradient_descent", backend, ()))

        try:
            descend(kernel)
        except GradCompileError as error:
            if not auto:
                raise
            warnings.warn(f"{error}; running backend='numpy' instead", RuntimeWarning,
                          stacklevel=2)
            descend_again("numpy")
        except Exception as error:
            # Under auto a small call ran on numpy, which calls grad on the whole batch:
            # a grad of one point that does not broadcast is compiled by Numba after all.
            if not auto or chosen != "numpy" or "numba" not in _dispatch.available_backends():
                raise
            try:
                descend_again("numba")
            except GradCompileError:
                raise error from None
    # Without tol the kernels' converged says whether x is finite.
    finite = converged if tol is None else np.isfinite(x).all(axis=tuple(range(1, x.ndim)))
    _warn_diverged("gradient_descent", finite)

    x = x.astype(returned, copy=False)
    record = record.astype(returned, copy=False) if history else None
    if tol is None:
        steps = np.broadcast_to(np.int64(n_iter), (problems,))
    if array.ndim == 0:
        return DescentResult(x[0], int(steps[0]), bool(converged[0]),
                             None if record is None else record[:, 0])
    return DescentResult(x, steps, converged, record)


def _compiling_pays(grad, coordinates: int, n_iter: int) -> bool:
    """Whether "auto" runs this call on Numba: ``grad`` is compiled already, or this call's
    estimated numpy time with what its earlier calls ran on numpy reaches a compile's cost.

    Never imports Numba: a grad it has not compiled is not compiled yet.
    """
    if type(grad).__module__.startswith("numba."):  # compiled by the user: use it
        return True
    numba_optim = sys.modules.get("fastcalc._numba.optim")
    if numba_optim is not None and grad in numba_optim.grads:
        return True
    key = hash(_grad_key.grad_key(grad))
    estimate = n_iter * (_NUMPY_SECONDS_PER_STEP
                         + coordinates * _NUMPY_SECONDS_PER_COORDINATE_STEP)
    with _numpy_seconds_lock:
        spent = _numpy_seconds.pop(key, 0.0) + estimate
        if spent >= _COMPILE_SECONDS:
            return True
        _numpy_seconds[key] = spent
        while len(_numpy_seconds) > _NUMPY_SECONDS_KEPT:
            _numpy_seconds.popitem(last=False)
    return False


def _minibatch_order(samples: int, batch: int, n_iter: int, seed) -> np.ndarray:
    """The rows mini-batch SGD visits: a permutation per epoch drawn from ``seed``.

    Shape (epochs, samples), int64, for ``n_iter`` steps of ``batch`` rows;
    allocated before it is drawn (a ValueError naming n_iter if no array can
    hold it), epoch by epoch (Ctrl-C is honoured in between).
    """
    per_epoch = -(-samples // batch)
    rng = np.random.default_rng(seed)
    order = _empty((-(-n_iter // per_epoch), samples), np.int64,
                   f"the mini-batch order of n_iter={n_iter} steps of {batch} rows")
    for epoch in order:
        epoch[:] = rng.permutation(samples)
    return order


def _fit(function: str, loss_code: int, X, y, lr, n_iter, reduction, batch_size, l2,
         fit_intercept, w0, seed, backend) -> FitResult:
    """Validate, run the ``fit`` kernel of the chosen backend, shape the result."""
    X = _validate.as_array(X, "X")
    y = _validate.as_array(y, "y")
    compute, returned = _validate.compute_dtype(X.dtype, "X")
    if y.dtype.kind not in "biuf":
        raise TypeError(f"y must be a real numeric array, got dtype {y.dtype}")
    if X.ndim not in (2, 3):
        raise ValueError(
            f"X must be (N, D) for one problem or (P, N, D) for P problems, got shape {X.shape}"
        )
    if y.shape != X.shape[:-1]:
        raise ValueError(
            f"y has shape {y.shape}, expected {X.shape[:-1]}: one target per row of X "
            f"{X.shape}"
        )
    if X.shape[-2] == 0:
        raise ValueError(f"X has no samples (shape {X.shape}); N must be >= 1")
    if loss_code != _LINEAR_SQUARED and not np.isin(y, (0, 1)).all():
        raise ValueError(f"y must hold class labels 0 and 1 only for {function}, got "
                         f"{np.unique(y[~np.isin(y, (0, 1))])[:5]}")
    lr = _positive(lr, "lr")
    n_iter = _count(n_iter, "n_iter", 0, MAX_ITERATIONS)
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    if not (math.isfinite(_real(l2, "l2")) and l2 >= 0):
        raise ValueError(f"l2 must be finite and >= 0, got {l2!r}")
    fit_intercept = _flag(fit_intercept, "fit_intercept")
    seed = _seed(seed)
    if batch_size is not None:
        # Any size is valid: larger than N means N (what the kernels get).
        _count(batch_size, "batch_size", 1)

    single = X.ndim == 2
    X3 = np.ascontiguousarray(X[None] if single else X, dtype=compute)
    y2 = np.ascontiguousarray(y[None] if single else y, dtype=compute)
    P, N, D = X3.shape
    if w0 is None:
        coef = np.zeros((P, D), dtype=compute)
    else:
        w0 = _validate.as_array(w0, "w0")
        _validate.compute_dtype(w0.dtype, "w0")
        if w0.shape not in ((D,), (P, D)):
            raise ValueError(f"w0 has shape {w0.shape}, expected ({D},) or ({P}, {D})")
        coef = np.array(np.broadcast_to(w0, (P, D)), dtype=compute, order="C")
    intercept = np.zeros(P, dtype=compute)
    losses = _empty((P, n_iter), compute, f"the loss of n_iter={n_iter} steps of {P} problems")
    if batch_size is None or n_iter == 0:
        batch = N
        order = np.empty((0, N), dtype=np.int64)
    else:
        batch = min(batch_size, N)
        order = _minibatch_order(N, batch, n_iter, seed)
    per_epoch = -(-N // batch)
    # scales[n]: what the sums over a batch of n rows are multiplied by.
    scales = np.ones(batch + 1, dtype=compute)
    if reduction == "mean":
        scales[1:] /= np.arange(1, batch + 1)

    kernel = _dispatch.kernel("optim", "fit", backend, _FIT_AUTO_ORDER)
    threads = _dispatch.kernel_threads()

    def run(lo, hi, t0, t1):
        """Steps t0..t1-1 (t0 at an epoch's start) of problems lo..hi-1, from their coef."""
        whole = t0 == 0 and t1 == n_iter
        tile = losses[lo:hi] if whole else np.empty((hi - lo, t1 - t0), compute)
        kernel(X3[lo:hi], y2[lo:hi], coef[lo:hi], intercept[lo:hi], lr, t1 - t0, loss_code,
               float(l2), scales, fit_intercept, order[t0 // per_epoch:], batch, tile, threads)
        if not whole:
            losses[lo:hi, t0:t1] = tile

    seconds = _FIT_SECONDS_PER_ROW_FEATURE * batch * max(D, 1)  # a problem-step
    # numpy steps in Python, which takes Ctrl-C between two numpy operations.
    if kernel is _reference.fit or P * n_iter * seconds < 2 * _slices.SLICE_SECONDS:
        if P:  # small calls: one kernel call
            kernel(X3, y2, coef, intercept, lr, n_iter, loss_code, float(l2), scales,
                   fit_intercept, order, batch, losses, threads)
    else:
        _run_tiles(run, P, n_iter, seconds=seconds, align=per_epoch if order.shape[0] else 1)
    converged = np.isfinite(coef).all(axis=1) & np.isfinite(intercept)
    if n_iter:
        converged &= np.isfinite(losses[:, -1])
    _warn_diverged(function, converged)

    coef, intercept, losses = (a.astype(returned, copy=False) for a in (coef, intercept, losses))
    if single:
        return FitResult(coef[0], intercept[0], losses[0], bool(converged[0]))
    return FitResult(coef, intercept, losses, converged)


_FIT_PARAMETERS = """X : array_like, shape (N, D) or (P, N, D)
        N samples of D features: one problem, or P independent problems
        solved at once.  float32 stays float32 (float16 is computed in
        float32), integers and bool give float64.
    y : array_like, shape (N,) or (P, N)
        The targets of each row of X.{y_note}
    lr : float, optional
        The learning rate, finite and > 0.
    n_iter : int, optional
        The number of gradient steps, in [0, 2**63 - 2]; with mini-batches,
        each step takes one batch.{loss_parameter}
    reduction : {{"mean", "sum"}}, optional
        Whether a step's loss and gradient are the mean over its batch's rows
        or their sum.
    batch_size : int, optional
        None: full-batch gradient descent.  An integer >= 1: mini-batch SGD,
        every epoch visiting the rows in a new random order (the last batch of
        an epoch holds the remainder); larger than N (any size) means N.
    l2 : float, optional
        L2 penalty ``l2 / 2 * |coef|**2`` added to the objective (the
        intercept is not penalized); >= 0.
    fit_intercept : bool, optional
        Also fit an intercept (starting at 0): True or False (numpy's bools
        too), nothing else.
    w0 : array_like, shape (D,) or (P, D), optional
        The starting coefficients (default zeros); (D,) starts every problem
        there.
    seed : int or numpy.random.Generator, optional
        Seeds the mini-batch order (``numpy.random.default_rng(seed)``); the
        P problems share the order, and every backend gives the same result
        for the same seed.  Checked with or without ``batch_size``.
    backend : {{"auto", "numpy", "numba", "cython"}}, optional
        Overrides :func:`fastcalc.get_backend`.  numpy runs the P problems
        together, step by step, in batched matrix products.  Numba and Cython
        share the problems out among :func:`fastcalc.get_num_threads`
        threads, each training one problem at a time with its data in L1
        cache for all its steps (Cython, with register-blocked C loops, is the
        fastest and ``"auto"`` picks it).  They agree with numpy to rounding.
        A long compiled call runs in slices of about 0.1 s (of problems, and
        of steps, at epochs' starts, when few problems take many: a fit
        resumes exactly from its coefficients, so the result is the one of a
        single call), and Ctrl-C raises KeyboardInterrupt between two of
        them; numpy takes it between two numpy operations.  Nothing is
        returned then; the inputs are never written.

    Returns
    -------
    FitResult
        The named tuple ``(coef, intercept, loss, converged)``.

    Raises
    ------
    TypeError
        A complex or non-numeric X, y or w0; a non-numeric lr, l2, n_iter or
        batch_size; fit_intercept not a bool; seed not None, an int or a
        numpy.random.Generator.
    ValueError
        X not 2-D or 3-D, y not shaped ``X.shape[:-1]`` (e.g. another N), no
        samples, lr not finite and > 0, n_iter outside [0, 2**63 - 2] or a
        loss history (P, n_iter) no array can hold, batch_size < 1, l2 not
        finite and >= 0, seed < 0, an unknown reduction{extra_errors}.  All
        checked before the first step."""


def fit_logistic(
    X: ArrayLike,
    y: ArrayLike,
    *,
    lr: float = 0.1,
    n_iter: int = 1000,
    loss: str = "log",
    reduction: str = "mean",
    batch_size: int | None = None,
    l2: float = 0.0,
    fit_intercept: bool = True,
    w0: ArrayLike | None = None,
    seed: int | np.random.Generator | None = None,
    backend: str | None = None,
) -> FitResult:
    if _validate.is_dask_array(X):
        return _validate.on_dask("fit_logistic")(
            X, y, lr=lr, n_iter=n_iter, loss=loss, reduction=reduction, batch_size=batch_size,
            l2=l2, fit_intercept=fit_intercept, w0=w0, seed=seed, backend=backend)
    if loss == "log":
        loss_code = _LOGISTIC_LOG
    elif loss == "squared":
        loss_code = _LOGISTIC_SQUARED
    else:
        raise ValueError(f"loss must be 'log' or 'squared', got {loss!r}")
    return _fit("fit_logistic", loss_code, X, y, lr, n_iter, reduction, batch_size, l2,
                fit_intercept, w0, seed, backend)


def fit_linear(
    X: ArrayLike,
    y: ArrayLike,
    *,
    lr: float = 0.1,
    n_iter: int = 1000,
    reduction: str = "mean",
    batch_size: int | None = None,
    l2: float = 0.0,
    fit_intercept: bool = True,
    w0: ArrayLike | None = None,
    seed: int | np.random.Generator | None = None,
    backend: str | None = None,
) -> FitResult:
    if _validate.is_dask_array(X):
        return _validate.on_dask("fit_linear")(
            X, y, lr=lr, n_iter=n_iter, reduction=reduction, batch_size=batch_size, l2=l2,
            fit_intercept=fit_intercept, w0=w0, seed=seed, backend=backend)
    return _fit("fit_linear", _LINEAR_SQUARED, X, y, lr, n_iter, reduction, batch_size, l2,
                fit_intercept, w0, seed, backend)


fit_logistic.__doc__ = """Fit logistic regressions (sigmoid neurons) by gradient descent, P at once.

    The model is ``p = sigmoid(X @ coef + intercept)``.  ``loss="log"``
    minimizes the cross-entropy ``-[y log p + (1 - y) log(1 - p)]``, as
    scikit-learn's LogisticRegression does (with ``l2 = 1 / (C N)`` and
    ``reduction="mean"`` the objectives are the same up to a factor);
    ``loss="squared"`` minimizes ``(p - y)**2 / 2``: with ``reduction="sum"``
    and ``lr=1`` that is exactly the seed's slide-4 neuron, whose update
    ``w += X.T @ ((y - p) p (1 - p))`` is this loss's gradient step.

    Parameters
    ----------
    """ + _FIT_PARAMETERS.format(
    y_note=" Class labels 0 and 1 (bool or numbers).",
    loss_parameter="""
    loss : {"log", "squared"}, optional
        Cross-entropy, or the squared error of the probability.""",
    extra_errors=", an unknown loss, or y holding values other than 0 and 1",
) + """

    Examples
    --------
    The seed's slide 4, trained by one call:

    >>> import numpy as np, fastcalc
    >>> X = np.array([[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]])
    >>> y = np.array([0, 1, 1, 0])
    >>> w0 = 2 * np.random.RandomState(1).random_sample(3) - 1
    >>> neuron = fastcalc.fit_logistic(X, y, lr=1.0, n_iter=10_000, loss="squared",
    ...                                reduction="sum", fit_intercept=False, w0=w0)
    >>> fastcalc.sigmoid(X @ neuron.coef).round(3)
    array([0.5, 0.5, 0.5, 0.5])

    A thousand problems at once, each with its own data:

    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(1000, 256, 8))
    >>> y = (X[..., 0] + rng.normal(size=(1000, 256)) > 0)
    >>> fit = fastcalc.fit_logistic(X, y, n_iter=500)
    >>> fit.coef.shape, fit.loss.shape, bool(fit.converged.all())
    ((1000, 8), (1000, 500), True)
    """

fit_linear.__doc__ = """Fit linear least-squares models by gradient descent, P at once.

    The model is ``z = X @ coef + intercept`` and the loss per row
    ``(z - y)**2 / 2``; ``l2`` makes it ridge regression.

    Parameters
    ----------
    """ + _FIT_PARAMETERS.format(
    y_note="",
    loss_parameter="",
    extra_errors="",
) + """

    Examples
    --------
    >>> import numpy as np, fastcalc
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3))
    >>> y = X @ np.array([1.0, -2.0, 0.5]) + 3.0
    >>> fit = fastcalc.fit_linear(X, y, lr=0.1, n_iter=500)
    >>> fit.coef.round(4), round(float(fit.intercept), 4)
    (array([ 1. , -2. ,  0.5]), 3.0)
    """
