"""Reference (numpy) kernels for batched gradient descent.

``gradient_descent(grad, x0, x, velocity, lr, momentum, n_iter, tol, steps,
converged, history, num_threads)`` runs B independent descents from ``x0``
and writes the final points to ``x`` (which may be ``x0``): both (B,) (B
scalar problems) or (B, D) (B points of D coordinates); ``grad`` is the
user's gradient.  Per problem, with ``v`` starting at ``velocity``::

    g = grad(x)
    stop if tol >= 0 and |g| < tol          (|g|: the 2-norm over D)
    v = g                   if momentum == 0
    v = momentum * v + g    otherwise        (PyTorch's SGD momentum)
    x = x - lr * v

at most ``n_iter`` times.  ``velocity``, shaped like ``x``, holds the
starting velocities and receives the final ones; with ``momentum == 0`` it
has no rows and is left alone.  With ``tol >= 0``, ``steps`` (B,) gets the
number of steps taken added to it; without, every problem takes ``n_iter``
steps and ``steps`` is left alone (it may have no elements).  ``converged``
(B,) gets, with ``tol >= 0``, whether ``|grad(x)| < tol`` at the returned
point, and with ``tol < 0`` (no tolerance) whether it is finite.
``history`` is (n_iter + 1, *x.shape) to receive every iterate (a problem
that stopped repeats its last point), or has no rows.  So a descent resumes
exactly where a call with fewer steps left it: call again with ``x0 = x``,
the same ``velocity`` and ``steps``, and the next rows of ``history``.
Here ``grad`` is called on the whole batch at once (so it must broadcast).

``fit(X, y, coef, intercept, lr, n_iter, loss, l2, scales, fit_intercept,
order, batch_size, losses, num_threads)`` trains P independent linear
models ``z = X @ coef + intercept`` in place: ``X`` (P, N, D), ``y``
(P, N), ``coef`` (P, D) and ``intercept`` (P,) (the starting point, then
the result), ``losses`` (P, n_iter) receives the objective before each
step.  ``loss`` is one of :data:`LOSSES`; with ``r`` = dloss/dz::

    LINEAR_SQUARED        loss = (z - y)**2 / 2              r = z - y
    LOGISTIC_LOG          loss = softplus(z) - y z           r = p - y
    LOGISTIC_SQUARED      loss = (p - y)**2 / 2              r = (p - y) p (1 - p)

with ``p = sigmoid(z)``.  Each step takes the rows of a batch, sums loss
and ``r`` over them, multiplies the sums by ``scales[n]`` for a batch of
``n`` rows (``scales`` (batch_size + 1,): ``1 / n`` for the mean, 1 for the
sum), adds
``l2 / 2 * |coef|**2`` to the objective and ``l2 * coef`` to its gradient
(not the intercept's), and moves ``coef`` and (if ``fit_intercept``)
``intercept`` by ``-lr`` times the gradient.  Full batch when ``order``
has no rows (``batch_size`` is then N); otherwise step ``t`` is batch ``k = t % s`` of epoch
``e = t // s`` (``s = ceil(N / batch_size)``): rows
``order[e, k * batch_size:(k + 1) * batch_size]``, the last batch of an
epoch holding the remainder.  ``num_threads`` is accepted for the common
signature.
"""

import numpy as np

from fastcalc.reference.activations import sigmoid

__all__ = ["LINEAR_SQUARED", "LOGISTIC_LOG", "LOGISTIC_SQUARED", "LOSSES", "fit",
           "gradient_descent"]

LINEAR_SQUARED, LOGISTIC_LOG, LOGISTIC_SQUARED = 0, 1, 2
LOSSES = (LINEAR_SQUARED, LOGISTIC_LOG, LOGISTIC_SQUARED)


def _evaluate(grad, x):
    """``grad(x)`` as an array shaped like ``x`` (broadcast if grad returns fewer dims)."""
    g = np.asarray(grad(x))
    if g.dtype.kind not in "biuf":
        raise TypeError(f"grad must return real numbers, it returned dtype {g.dtype}")
    try:
        return np.broadcast_to(g, x.shape)
    except ValueError:
        raise ValueError(
            f"grad returned shape {g.shape} for a batch of points of shape {x.shape}; "
            "with the numpy backend grad is called on the whole batch and must return "
            "one gradient per point"
        ) from None


def _norm(g):
    with np.errstate(invalid="ignore", over="ignore"):
        return np.abs(g) if g.ndim == 1 else np.sqrt(np.einsum("bd,bd->b", g, g))


def gradient_descent(grad, x0, x, velocity, lr, momentum, n_iter, tol, steps, converged,
                     history, num_threads):
    x[...] = x0
    record = history.shape[0] > 0
    moving = np.ones(x.shape[0], dtype=bool)
    if record:
        history[0] = x
    for t in range(n_iter):
        g = _evaluate(grad, x)
        if tol >= 0:
            moving = ~(_norm(g) < tol)
        mask = moving if x.ndim == 1 else moving[:, None]
        with np.errstate(invalid="ignore", over="ignore"):  # inf and NaN as compiled
            if momentum == 0:
                update = g
            else:
                update = np.where(mask, momentum * velocity + g, velocity)
                velocity[...] = update
            np.subtract(x, lr * update, out=x, where=mask, casting="unsafe")
        if record:
            history[t + 1] = x
        if tol >= 0:
            steps += moving
            if not moving.any():
                if record:
                    history[t + 2:] = x
                break
    if tol >= 0:
        converged[:] = _norm(_evaluate(grad, x)) < tol
    else:
        converged[:] = np.isfinite(x).all(axis=tuple(range(1, x.ndim)))


def _residuals(loss, z, y):
    """``(r, loss per row)`` of the linear outputs ``z`` against targets ``y``."""
    if loss == LINEAR_SQUARED:
        r = z - y
        return r, 0.5 * r * r
    p = np.empty_like(z)
    sigmoid(z, p, 1)
    if loss == LOGISTIC_LOG:
        return p - y, np.logaddexp(0, z) - y * z
    error = p - y
    return error * p * (1 - p), 0.5 * error * error


def fit(X, y, coef, intercept, lr, n_iter, loss, l2, scales, fit_intercept, order, batch_size,
        losses, num_threads):
    N = X.shape[1]
    per_epoch = -(-N // batch_size)
    for t in range(n_iter):
        if order.shape[0]:
            epoch, k = divmod(t, per_epoch)
            rows = order[epoch, k * batch_size:(k + 1) * batch_size]
            X_batch, y_batch = X[:, rows], y[:, rows]
        else:
            X_batch, y_batch = X, y
        z = np.einsum("pnd,pd->pn", X_batch, coef) + intercept[:, None]
        r, row_loss = _residuals(loss, z, y_batch)
        scale = scales[X_batch.shape[1]]
        losses[:, t] = scale * row_loss.sum(axis=1) + 0.5 * l2 * np.einsum("pd,pd->p", coef,
                                                                              coef)
        coef -= lr * (scale * np.einsum("pnd,pn->pd", X_batch, r) + l2 * coef)
        if fit_intercept:
            intercept -= lr * scale * r.sum(axis=1)
