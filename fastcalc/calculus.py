"""Numerical calculus: derivatives, gradients and gradient checks, quadrature, Taylor series.

The seed's slides 2 and 6-9 as tools: differentiate a function you can only
evaluate, check a hand-written gradient (the everyday use), integrate a
density, approximate a function by its Taylor polynomial.  Everything is
vectorized: a function is called once per stencil or per quadrature rule on
an array of points, never once per point.

Conventions (numpy's):

- ``derivative`` and ``integrate`` take an elementwise ``f``: an array of
  points in, an array of the same shape out.
- ``gradient``, ``jacobian`` and ``check_grad`` take ``f`` of points along
  the last axis: ``x`` of shape ``(..., n)`` in, ``(...)`` out (``(..., m)``
  for ``jacobian``), as a generalized ufunc with signature ``(n)->()``.
  Write ``x[..., 0]`` for the first coordinate; a function of one point
  becomes one with ``np.vectorize(f, signature="(n)->()")``.
- float32 and float64 are computed in; integers and bools in float64.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from fastcalc import _validate

_MAX_COUNT = np.iinfo(np.intp).max  # terms or intervals: an array dimension

__all__ = [
    "Integral",
    "check_grad",
    "derivative",
    "exp_taylor",
    "gradient",
    "integrate",
    "jacobian",
    "normal_probability",
    "taylor",
]

# Finite-difference stencils: offsets (in steps h), weights, and the power
# of the machine epsilon that balances rounding against truncation error for
# a rule of that order (h ~ eps**(1/(order + 1))).
_STENCILS = {
    "forward": ((0, 1), (-1.0, 1.0), 1 / 2),
    "backward": ((-1, 0), (-1.0, 1.0), 1 / 2),
    "central": ((-1, 1), (-0.5, 0.5), 1 / 3),
    "five-point": ((-2, -1, 1, 2), (1 / 12, -8 / 12, 8 / 12, -1 / 12), 1 / 5),
}


# ---------------------------------------------------------------- argument checks


def _callable(f, name: str = "f") -> None:
    if not callable(f):
        raise TypeError(f"{name} must be callable, got {type(f).__name__}")


def _points(x, name: str = "x") -> tuple[np.ndarray, np.dtype]:
    """``x`` as a float array of its compute dtype, and the dtype to return."""
    array = np.asarray(x)
    if array.dtype.kind == "c":
        raise TypeError(f"{name} is complex ({array.dtype}); fastcalc computes real values only")
    compute, returned = _validate.compute_dtype(array.dtype, name)
    return array.astype(compute, copy=False), returned


def _result_dtype(**values) -> tuple[np.dtype, np.dtype]:
    """``(computed in, returned as)`` for arguments used together, by numpy's promotion.

    Python numbers are weak (NEP 50): ``x0=0.0`` keeps a float32 ``x`` in
    float32.  A complex or non-numeric argument is a TypeError naming it.
    """
    operands = [value if type(value) in (int, float) else np.asarray(value)
                for name, value in values.items()]
    for name, operand in zip(values, operands, strict=True):
        if isinstance(operand, np.ndarray):
            _points(operand, name)
    return _validate.compute_dtype(np.result_type(*operands), ", ".join(values))


def _count(n) -> None:
    """``n`` must be an integer from 1 to the largest an array dimension can be."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 1 <= n <= _MAX_COUNT:
        raise ValueError(f"n must be an integer from 1 to {_MAX_COUNT}, got {n!r}")


def _method(method: str, choices) -> str:
    if not isinstance(method, str) or method not in choices:
        raise ValueError(f"method must be one of {', '.join(map(repr, choices))}, got {method!r}")
    return method


def _call(f, points: np.ndarray, name: str):
    """``f(points)``; a function of Python numbers only (``math.sin``) is a TypeError that
    names ``f`` and what to pass instead of numpy's "only 0-dimensional arrays can be
    converted"."""
    try:
        return f(points)
    except TypeError as error:
        if points.ndim == 0 or "0-dimensional arrays" not in str(error):
            raise
        raise TypeError(f"{name} must take arrays of points (numpy's functions do; math's do "
                        f"not): pass np.vectorize({name}) or a numpy function such as np.sin "
                        f"({name} raised: {error})") from error


def _evaluate(f, points: np.ndarray, shape: tuple, what: str, name: str = "f") -> np.ndarray:
    """``f(points)`` as a float array, checked to have ``shape``; ``name`` is f's argument."""
    values = np.asarray(_call(f, points, name))
    if values.dtype.kind not in "biuf":
        raise TypeError(f"{name} must return real numbers, it returned dtype {values.dtype}")
    if values.shape != shape:
        raise ValueError(
            f"{name} returned shape {values.shape} for points of shape {points.shape}; {what}"
        )
    return values


# ---------------------------------------------------------------- derivatives


def _step(x: np.ndarray, h, power: float) -> np.ndarray:
    """The step per point: ``h`` if given, else ``eps**power * max(|x|, 1)``.

    Either way it is rounded to the step actually taken, ``(x + h) - x``, so
    that the division by ``h`` does not add the rounding of ``x + h``.
    """
    if h is None:
        step = np.finfo(x.dtype).eps ** power * np.maximum(np.abs(x), 1)
    else:
        step = np.asarray(h, dtype=x.dtype)
        if not (np.isfinite(step) & (step > 0)).all():
            raise ValueError(f"h must be finite and > 0, got {h!r}")
    try:
        step = np.asarray((x + step) - x, dtype=x.dtype)
    except ValueError:
        raise ValueError(f"h of shape {step.shape} does not broadcast against x of shape "
                         f"{x.shape}") from None
    if (step <= 0).any():
        raise ValueError(f"h is below the spacing of x's floats: x + h == x (h={h!r})")
    return step


def derivative(f: Callable, x, *, h=None, method: str = "central") -> np.ndarray:
    """The first derivative of ``f`` at every point of ``x``, by finite differences.

    Parameters
    ----------
    f : callable
        An elementwise function: ``f(points)`` returns an array of the
        shape of ``points`` (numpy math on arrays does).  It is called once
        per point of the stencil (2 times, 4 for ``"five-point"``) with all
        of ``x`` at once.
    x : array_like
        The points.  float32 stays float32; integers give float64.
    h : float or array_like, optional
        The step (> 0, broadcast against ``x``).  By default
        ``eps**(1/(k+1)) * max(|x|, 1)`` for a rule of order ``k`` (``eps``
        of ``x``'s dtype): about 1.5e-8 (forward, backward), 6e-6 (central)
        and 7e-4 (five-point) times ``max(|x|, 1)`` in float64.  The step is
        rounded to the one ``x + h`` actually takes.
    method : {"central", "forward", "backward", "five-point"}
        ``(f(x+h) - f(x-h)) / 2h`` (error O(h**2)), one-sided differences
        (O(h)), or the five-point stencil (O(h**4)).

    Returns
    -------
    ndarray or numpy scalar
        ``f'(x)``, shaped like ``x`` (broadcast against an array ``h``), of
        its dtype.

    Raises
    ------
    TypeError
        ``f`` not callable, ``x`` not real, ``f`` returning non-numbers.
    ValueError
        ``h`` not finite and > 0 (or below the spacing of ``x``), an
        unknown ``method``, ``f`` returning the wrong shape.

    Notes
    -----
    The relative error of the central rule is about ``eps * |f| / (h |f'|)``
    plus ``h**2 |f'''| / (6 |f'|)``: near 1e-10 in float64 where ``f'`` is not
    much smaller than ``f``, worse where it is (the sigmoid at x = 10, whose
    slope is 4.5e-5 of its value: about 1e-8).

    Examples
    --------
    The seed's slide 2, ``f(x) = x**2 + 5x + 6`` and ``f'(x) = 2x + 5``:

    >>> import numpy as np, fastcalc
    >>> fastcalc.derivative(lambda x: x**2 + 5*x + 6, np.array([-3.0, 0.0, 2.0]))
    array([-1.,  5.,  9.])
    """
    _callable(f)
    points, returned = _points(x)
    offsets, weights, power = _STENCILS[_method(method, _STENCILS)]
    step = _step(points, h, power)
    shape = np.broadcast_shapes(points.shape, step.shape)
    total = np.zeros(shape, points.dtype)
    for offset, weight in zip(offsets, weights, strict=True):
        total += weight * _evaluate(f, points + offset * step, shape,
                                    "f must be elementwise, returning one value per point")
    return (total / step).astype(returned, copy=False)


def _per_point(f, vectorized: bool, name: str = "f"):
    """``f`` over an array of points ``(..., n)``: ``f`` itself if it is ``vectorized``
    (checked on the first point: a function of one point called on a batch can return a
    plausible shape and wrong numbers), else ``f`` called on each point, results stacked."""
    if not isinstance(vectorized, (bool, np.bool_)):
        raise TypeError(f"vectorized must be True or False, got {vectorized!r}")

    def batched(points):
        values = np.asarray(f(points))
        if points.ndim > 1 and points.shape[:-1] and 0 not in points.shape[:-1]:
            first = points[(0,) * (points.ndim - 1)]
            one = np.asarray(f(first))
            head = values[(0,) * (points.ndim - 1)] if values.ndim >= points.ndim - 1 else None
            if head is None or head.shape != one.shape or not np.allclose(
                    head, one, rtol=_SAME_POINT_RTOL[points.dtype.itemsize >= 8], atol=0,
                    equal_nan=True):
                raise ValueError(f"{name} is not vectorized over points (..., n): called on a "
                                 f"batch {points.shape} it gave another value for the first "
                                 f"point than called on that point alone; pass "
                                 f"vectorized=False to call {name} one point at a time")
        return values

    def each(points):
        flat = points.reshape(-1, points.shape[-1])
        values = [np.asarray(f(point)) for point in flat]
        if not values:
            return np.empty(points.shape[:-1])
        if any(value.shape != values[0].shape for value in values):
            raise ValueError(f"{name} returned values of shapes "
                             f"{sorted({value.shape for value in values})} for points of "
                             f"shape {points.shape[-1:]}: one shape for every point is needed")
        return np.stack(values).reshape(points.shape[:-1] + values[0].shape)

    return batched if vectorized else each


# How close f's value for a point must be, called on a batch and alone (float64, float32):
# a vectorized f may sum in another order.
_SAME_POINT_RTOL = {True: 1e-9, False: 1e-4}


def _partials(f: Callable, x, h, method: str, name: str,
              vectorized: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(f(x), d f / d x_j)`` for f of points along x's last axis.

    The partials have shape ``(..., *f's value per point, n)``.
    """
    _callable(f)
    points, returned = _points(x)
    if points.ndim == 0:
        raise ValueError("x must be a point (n,) or a batch of points (..., n), got a scalar")
    offsets, weights, power = _STENCILS[_method(method, _STENCILS)]
    evaluate = _per_point(f, vectorized)
    batch, n = points.shape[:-1], points.shape[-1]
    needs = (f"{name} needs f of points (..., n) returning one result per point: write "
             "x[..., 0] for the first coordinate and sum with axis=-1, or pass "
             "vectorized=False to call f one point at a time")
    value = np.asarray(_call(evaluate, points, "f"))
    if value.shape[:len(batch)] != batch:
        raise ValueError(f"f returned shape {value.shape} for points of shape "
                         f"{points.shape}; {needs}")
    per_point = value.shape[len(batch):]
    step = _step(points, h, power)
    if step.shape != points.shape:
        step = np.broadcast_to(step, points.shape)
    # Every stencil point of every coordinate at once: (..., n directions, n).
    eye = np.eye(n, dtype=points.dtype)
    directions = step[..., :, None] * eye
    total = np.zeros((*batch, n, *per_point), points.dtype)
    for offset, weight in zip(offsets, weights, strict=True):
        shifted = points[..., None, :] + offset * directions
        total += weight * _evaluate(evaluate, shifted, (*batch, n, *per_point), needs)
    spacing = step.reshape(*batch, n, *(1,) * len(per_point))
    partials = np.moveaxis(total / spacing, len(batch), -1)
    return value.astype(returned, copy=False), partials.astype(returned, copy=False)


def gradient(f: Callable, x, *, h=None, method: str = "central",
             vectorized: bool = False) -> np.ndarray:
    """The partial derivatives of ``f: R^n -> R`` at a point or a batch of points.

    Parameters
    ----------
    f : callable
        A function of one point ``(n,)`` returning a number, as
        :func:`scipy.optimize.check_grad` takes it; with
        ``vectorized=True``, of points ``(..., n)`` returning one number per
        point, shape ``(...)`` (numpy code written with ``x[..., j]`` for
        coordinate ``j`` and sums along ``axis=-1``).
    x : array_like
        A point ``(n,)`` or points ``(..., n)``.
    h, method
        As for :func:`derivative` (``h`` broadcasts against ``x``).
    vectorized : bool
        False (the default): ``f`` is called on one point at a time, ``1 +
        2n`` times per point (central).  True: ``f`` is called on arrays
        of points, ``1 + 2`` times (central) on ``n`` perturbed copies of
        every point, much faster for many points; the first point of each
        call is checked against ``f`` of that point alone (a ValueError if
        ``f`` is not vectorized: it could return a plausible shape and wrong
        numbers).

    Returns
    -------
    ndarray
        ``df/dx_j``, shaped like ``x``.

    Raises
    ------
    TypeError, ValueError
        As for :func:`derivative`; also a scalar ``x`` and an ``f`` that
        does not return one number per point (use :func:`jacobian` for
        vector-valued ``f``).

    Examples
    --------
    The seed's slide 6, ``f = x**2 + 2xy + y**2`` at ``(1, 2)``: ``(6, 6)``.

    >>> import fastcalc
    >>> f = lambda p: p[0]**2 + 2*p[0]*p[1] + p[1]**2
    >>> fastcalc.gradient(f, [1.0, 2.0]).round(8)
    array([6., 6.])

    Vectorized over a batch of points:

    >>> f = lambda p: p[..., 0]**2 + 2*p[..., 0]*p[..., 1] + p[..., 1]**2
    >>> fastcalc.gradient(f, [[1.0, 2.0], [0.0, 1.0]], vectorized=True).round(8)
    array([[6., 6.],
           [2., 2.]])
    """
    value, partials = _partials(f, x, h, method, "gradient", vectorized)
    if value.ndim != np.ndim(x) - 1:
        raise ValueError(
            f"f returned shape {value.shape} for points of shape {np.shape(x)}: gradient "
            "needs one number per point; use jacobian for a vector-valued f"
        )
    return partials


def jacobian(f: Callable, x, *, h=None, method: str = "central",
             vectorized: bool = False) -> np.ndarray:
    """The Jacobian of ``f: R^n -> R^m`` at a point or a batch of points.

    Parameters
    ----------
    f : callable
        A function of one point ``(n,)`` returning ``(m,)``; with
        ``vectorized=True``, of points ``(..., n)`` returning ``(..., m)``.
    x : array_like
        A point ``(n,)`` or points ``(..., n)``.
    h, method, vectorized
        As for :func:`gradient`.

    Returns
    -------
    ndarray
        ``J[..., i, j] = df_i / dx_j``, shape ``(..., m, n)`` (PyTorch's
        ``jacobian`` layout: the output's shape, then the input's).

    Examples
    --------
    Polar to Cartesian coordinates, at radius 2 and angle 0:

    >>> import numpy as np, fastcalc
    >>> polar = lambda p: np.array([p[0] * np.cos(p[1]), p[0] * np.sin(p[1])])
    >>> fastcalc.jacobian(polar, [2.0, 0.0]).round(8)
    array([[1., 0.],
           [0., 2.]])
    """
    value, partials = _partials(f, x, h, method, "jacobian", vectorized)
    if value.ndim != np.ndim(x):
        raise ValueError(
            f"f returned shape {value.shape} for points of shape {np.shape(x)}: jacobian "
            "needs a vector (m,) per point"
        )
    return partials


def check_grad(f: Callable, grad: Callable, x, *, h=None, method: str = "central",
               vectorized: bool = False):
    """How far a hand-written gradient is from the numerical one: the largest relative error.

    Parameters
    ----------
    f : callable
        ``f: R^n -> R`` of one point, as :func:`scipy.optimize.check_grad`
        takes it (of points ``(..., n)`` with ``vectorized=True``).
    grad : callable
        Its gradient: ``grad(point)`` returns ``(n,)`` (``grad(points)``
        an array shaped like the points ``(..., n)`` with ``vectorized=True``).
    x : array_like
        A point ``(n,)`` or points ``(..., n)`` to check at.
    h, method, vectorized
        As for :func:`gradient`.

    Returns
    -------
    float or ndarray
        Per point, ``max_j |grad_j - numerical_j| / max_j max(|grad_j|,
        |numerical_j|)``: the largest error relative to the gradient's
        largest component (0 when both are zero).  A float for one point,
        shape ``(...)`` for points ``(..., n)``.  A correct float64 gradient
        gives about 1e-9 or less with the central rule; a wrong one, errors
        near 1.  Unlike :func:`scipy.optimize.check_grad` (the 2-norm of the
        absolute error) it does not grow with the gradient's size.

    Examples
    --------
    >>> import numpy as np, fastcalc
    >>> f = lambda p: np.sum(np.sin(p))
    >>> bool(fastcalc.check_grad(f, np.cos, [0.5, 1.0, 2.0]) < 1e-9)
    True
    >>> bool(fastcalc.check_grad(f, np.sin, [0.5, 1.0, 2.0]) > 0.1)  # a wrong gradient
    True
    >>> f = lambda p: np.sum(np.sin(p), axis=-1)                      # many points at once
    >>> fastcalc.check_grad(f, np.cos, np.ones((4, 3)), vectorized=True).shape
    (4,)
    """
    _callable(grad, "grad")
    numerical = gradient(f, x, h=h, method=method, vectorized=vectorized)
    analytic = _evaluate(_per_point(grad, vectorized, "grad"),
                         np.asarray(x, dtype=numerical.dtype), numerical.shape,
                         "grad must return one gradient (n,) per point", "grad")
    error = np.abs(analytic - numerical).max(axis=-1, initial=0)
    scale = np.maximum(np.abs(analytic), np.abs(numerical)).max(axis=-1, initial=0)
    relative = np.divide(error, scale, out=np.zeros_like(error, dtype=np.float64),
                         where=scale > 0)
    return float(relative) if relative.ndim == 0 else relative


# ---------------------------------------------------------------- integrals


class Integral(NamedTuple):
    """What :func:`integrate` returns: it unpacks like :func:`scipy.integrate.quad`.

    Attributes
    ----------
    value : ndarray or float
        The integral, shaped like the broadcast bounds.
    error : ndarray or float
        An estimate of its absolute error.
    """

    value: np.ndarray | float
    error: np.ndarray | float


_METHODS = ("simpson", "trapezoid", "gauss")
_FIRST_N = {"simpson": 16, "trapezoid": 16, "gauss": 8}
_MAX_N = {"simpson": 1 << 20, "trapezoid": 1 << 22, "gauss": 1 << 10}
_RTOL = 1e-12  # what n=None aims for: the error estimate below it, relative (absolute near 0)


def _rule(method: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights on [0, 1] for the composite rule with ``n`` intervals (nodes)."""
    if method == "gauss":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        return (nodes + 1) / 2, weights / 2
    nodes = np.linspace(0.0, 1.0, n + 1)
    weights = np.full(n + 1, 1.0 / n)
    if method == "trapezoid":
        weights[[0, -1]] /= 2
    else:
        weights[1:-1:2] *= 4 / 3
        weights[2:-1:2] *= 2 / 3
        weights[[0, -1]] /= 3
    return nodes, weights


def _substitution(a: np.ndarray, b: np.ndarray, t: np.ndarray):
    """Points x(t) and dx/dt mapping t in (0, 1) onto [a, b], infinite bounds included.

    Finite: x = a + (b - a) t.  [a, inf): x = a + t / (1 - t).  (-inf, b]:
    x = b - (1 - t) / t.  (-inf, inf): x = u / (1 - u**2) with u = 2t - 1.
    """
    a, b = a[..., None], b[..., None]
    finite_a, finite_b = np.isfinite(a), np.isfinite(b)
    u = 2 * t - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(finite_a & finite_b, a + (b - a) * t,
                     np.where(finite_a, a + t / (1 - t),
                              np.where(finite_b, b - (1 - t) / t, u / (1 - u * u))))
        dx = np.where(finite_a & finite_b, b - a,
                      np.where(finite_a, 1 / (1 - t) ** 2,
                               np.where(finite_b, 1 / t**2,
                                        2 * (1 + u * u) / (1 - u * u) ** 2)))
    return x, dx


def _quadrature(f, a, b, method, n, dtype) -> np.ndarray:
    t, weights = _rule(method, n)
    x, dx = _substitution(a, b, t.astype(dtype))
    values = _evaluate(f, x.astype(dtype, copy=False), x.shape,
                       "f must be elementwise, returning one value per point")
    return np.sum(values * dx * weights.astype(dtype), axis=-1)


def _coarser(method: str, n: int) -> int:
    """The count of the rule that estimates the error of the rule with ``n``: about ``n / 2``."""
    return n // 2 - (n // 2) % 2 if method == "simpson" else n // 2


def _error_estimate(method: str, n: int, m: int, fine: np.ndarray,
                    coarse: np.ndarray | None) -> np.ndarray:
    """The error of ``fine`` (the rule with ``n``), from ``coarse`` (the rule with ``m``).

    With ``p`` the rule's order, the error of ``I_n`` is about
    ``|I_n - I_m| / ((n / m)**p - 1)`` (15 for Simpson halved, 3 for the
    trapezoid); Gauss's error falls faster than any power, and
    ``|I_n - I_m|`` overestimates it.  NaN without a coarser rule.
    """
    if coarse is None:
        return np.full(fine.shape, np.nan, fine.dtype)
    order = {"simpson": 4, "trapezoid": 2}.get(method)
    divisor = 1 if order is None else (n / m) ** order - 1
    return np.abs(fine - coarse) / divisor


def integrate(f: Callable, a, b, *, n: int | None = None, method: str = "simpson") -> Integral:
    """The integral of ``f`` from ``a`` to ``b``, for every pair of bounds at once.

    Parameters
    ----------
    f : callable
        An elementwise function: ``f(points)`` returns an array shaped like
        ``points``; it is called with the nodes of every integral at once,
        an array ``(*bounds' shape, nodes)``.
    a, b : array_like
        The bounds, broadcast together; ``b < a`` gives the negative of the
        integral from ``b`` to ``a``.  ``method="gauss"`` takes infinite
        bounds (by a change of variables, for integrands that decay); the
        other methods need finite ones.
    n : int, optional
        Intervals (even, for ``"simpson"``) or, for ``"gauss"``, nodes.  By
        default the number is doubled from 32 (16 nodes) until the error
        estimate is below ``1e-12`` relative (or absolute, for integrals
        below 1; ``1.2e-6`` in float32), up to 2**20 intervals (2**22 for
        the trapezoid, 1024 nodes).
    method : {"simpson", "trapezoid", "gauss"}
        Composite Simpson (error O(n**-4)), composite trapezoid (O(n**-2)),
        or Gauss-Legendre with ``n`` nodes (exact for polynomials of degree
        ``2n - 1``).

    Returns
    -------
    Integral
        ``(value, error)``, each shaped like the broadcast bounds (floats for
        scalar bounds): the result with ``n`` and an estimate of its
        absolute error from the same rule with ``m``, about ``n / 2``:
        ``|I_n - I_m| / ((n / m)**p - 1)`` for a rule of order ``p`` (4 for
        Simpson, 2 for the trapezoid: 15 and 3 when ``m = n / 2``), and for
        Gauss ``|I_n - I_m|``, an overestimate; NaN for the smallest ``n``
        (1, or 2 for Simpson), which has no coarser rule.  When ``n=None``
        stops at its limit above its tolerance, a RuntimeWarning says so.

    Raises
    ------
    TypeError
        ``f`` not callable, bounds not real.
    ValueError
        NaN bounds, infinite bounds with ``"simpson"`` or ``"trapezoid"``,
        ``n < 1`` (odd for ``"simpson"``), an unknown ``method``.

    Examples
    --------
    The seed's slide 8, the normal density between -1 and 1:

    >>> import numpy as np, fastcalc
    >>> pdf = lambda x: np.exp(-x**2 / 2) / np.sqrt(2 * np.pi)
    >>> value, error = fastcalc.integrate(pdf, -1, 1)
    >>> print(f"{value:.4f}", error < 1e-12)
    0.6827 True
    >>> fastcalc.integrate(pdf, [-1, -2, -np.inf], [1, 2, np.inf], method="gauss").value
    array([0.68268949, 0.95449974, 1.        ])
    """
    _callable(f)
    method = _method(method, _METHODS)
    dtype, _ = _result_dtype(a=a, b=b)
    lower, upper = np.broadcast_arrays(np.asarray(a, dtype), np.asarray(b, dtype))
    for name, bound in (("a", lower), ("b", upper)):
        if np.isnan(bound).any():
            raise ValueError(f"{name} must not be NaN")
        if method != "gauss" and not np.isfinite(bound).all():
            raise ValueError(
                f"{name} must be finite for method={method!r}; method='gauss' takes infinite "
                "bounds"
            )
    if n is not None:
        _count(n)
        if method == "simpson" and n % 2:
            raise ValueError(f"n must be even for method='simpson', got {n}")
    # Integrate from the smaller bound, then give the sign back.
    sign = np.where(upper < lower, -1, 1).astype(dtype)
    low, high = np.minimum(lower, upper), np.maximum(lower, upper)
    smallest = 2 if method == "simpson" else 1
    results: dict[int, np.ndarray] = {}

    def rule(count: int) -> np.ndarray | None:
        if count < smallest:
            return None
        if count not in results:
            results[count] = _quadrature(f, low, high, method, count, dtype)
        return results[count]

    tolerance = max(_RTOL, 10 * np.finfo(dtype).eps)
    count = 2 * _FIRST_N[method] if n is None else n
    while True:
        fine = rule(count)
        coarser = _coarser(method, count)
        error = _error_estimate(method, count, coarser, fine, rule(coarser))
        met = np.all(error <= tolerance * np.maximum(np.abs(fine), 1))
        if n is not None or met:
            break
        if count >= _MAX_N[method]:
            warnings.warn(
                f"integrate: {method} with {count} intervals (nodes, for gauss) estimates an "
                f"error of {np.max(error):.2g}, above the {tolerance:.0e} relative it aims at "
                "(a singular or non-smooth integrand?); see Integral.error",
                RuntimeWarning, stacklevel=2)
            break
        count *= 2
    value = np.where(low == high, 0, sign * fine)
    error = np.where(low == high, 0, error)
    if value.ndim == 0:
        return Integral(float(value), float(error))
    return Integral(value, error)


def normal_probability(a, b, mu=0.0, sigma=1.0):
    """``P(a < X < b)`` for ``X ~ N(mu, sigma**2)``, vectorized.

    Parameters
    ----------
    a, b : array_like
        The bounds, broadcast together with ``mu`` and ``sigma``; may be
        infinite; ``a <= b``.
    mu, sigma : array_like
        The mean and the standard deviation (> 0).

    Returns
    -------
    ndarray or numpy scalar
        The probability, of numpy's promotion of the arguments' dtypes
        (float32 bounds stay float32; integers give float64).
        It is computed from whichever tail is smaller, so it keeps its
        relative accuracy far out in either tail (where the seed's
        ``cdf(b) - cdf(a)`` cancels to 0).

    Raises
    ------
    ValueError
        ``sigma <= 0`` or not finite, non-finite ``mu``, NaN bounds, ``a > b``.

    Examples
    --------
    The seed's slide 8:

    >>> import fastcalc
    >>> print(f"P(-1 < X < 1) = {fastcalc.normal_probability(-1, 1):.4f}")
    P(-1 < X < 1) = 0.6827
    """
    from scipy.special import ndtr

    dtype, returned = _result_dtype(a=a, b=b, mu=mu, sigma=sigma)
    a, b, mu, sigma = np.broadcast_arrays(*(np.asarray(v, dtype) for v in (a, b, mu, sigma)))
    if not (np.isfinite(sigma) & (sigma > 0)).all():
        raise ValueError("sigma must be finite and > 0")
    if not np.isfinite(mu).all():
        raise ValueError("mu must be finite")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("a and b must not be NaN")
    if (a > b).any():
        raise ValueError("a must be <= b (the event a < X < b is empty otherwise)")
    low, high = (a - mu) / sigma, (b - mu) / sigma
    # Both bounds above the mean: the difference of the upper tails is exact
    # where the difference of two CDFs near 1 would round away.
    upper = low > 0
    probability = np.where(upper, ndtr(-low) - ndtr(-high), ndtr(high) - ndtr(low))
    return probability.astype(returned, copy=False)[()]


# ---------------------------------------------------------------- Taylor series


def taylor(coeffs, x, x0=0.0) -> np.ndarray:
    """The polynomial ``sum_k coeffs[k] * (x - x0)**k``, by Horner's rule.

    Parameters
    ----------
    coeffs : array_like, shape (K,)
        The coefficients, lowest order first (``numpy.polynomial``'s order):
        for a Taylor series, ``f^(k)(x0) / k!``.
    x : array_like
        Where to evaluate.
    x0 : float or array_like
        The expansion point (broadcast against ``x``).

    Returns
    -------
    ndarray or numpy scalar
        Shaped like ``x`` broadcast against ``x0``, of numpy's promotion of
        the arguments' dtypes (float32 stays float32; integers give float64).

    Raises
    ------
    ValueError
        ``coeffs`` empty or not 1-D.

    Examples
    --------
    >>> import fastcalc
    >>> fastcalc.taylor([1.0, 2.0, 3.0], [0.0, 1.0, 2.0])   # 1 + 2x + 3x**2
    array([ 1.,  6., 17.])
    """
    dtype, returned = _result_dtype(coeffs=coeffs, x=x, x0=x0)
    c = np.asarray(coeffs, dtype)
    if c.ndim != 1 or c.size == 0:
        raise ValueError(f"coeffs must be a non-empty 1-D array, got shape {c.shape}")
    offset = np.asarray(x, dtype) - np.asarray(x0, dtype)
    total = np.full(offset.shape, c[-1], dtype)
    for coefficient in c[-2::-1]:
        total *= offset
        total += coefficient
    return total.astype(returned, copy=False)[()]


def exp_taylor(x, n: int) -> np.ndarray:
    """``exp(x)`` by its Taylor polynomial of ``n`` terms: ``sum_{k<n} x**k / k!`` (slide 9).

    Parameters
    ----------
    x : array_like
        Where to evaluate.
    n : int
        The number of terms (>= 1), as in the seed's ``taylor_series(x, n)``.

    Returns
    -------
    ndarray or numpy scalar
        Shaped like ``x``, of its dtype (integers give float64).

    Notes
    -----
    The seed's code calls ``np.math.factorial``, which NumPy 2 removed
    (``np.math`` was the standard ``math`` module, re-exported).  Here the
    coefficients come from ``c_k = c_{k-1} / k``, exact as long as ``k!``
    is, and never overflowing (``170!`` is the largest float64).

    Examples
    --------
    >>> import numpy as np, fastcalc
    >>> fastcalc.exp_taylor(1.0, 5)          # 1 + 1 + 1/2 + 1/6 + 1/24
    np.float64(2.708333333333333)
    >>> bool(abs(fastcalc.exp_taylor(1.0, 20) - np.e) < 1e-15)
    True
    """
    _count(n)
    points, returned = _points(x)
    coeffs = np.ones(int(n), points.dtype)
    for k in range(1, int(n)):
        coeffs[k] = coeffs[k - 1] / k
    return taylor(coeffs, points).astype(returned, copy=False)[()]

