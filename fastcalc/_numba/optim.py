"""Numba kernels for batched gradient descent.

Same names and signatures as :mod:`fastcalc.reference.optim` (its docstring
states the contract).

``gradient_descent`` compiles the user's ``grad`` with Numba (once per
function of the same contents, in a cache of bounded size: :class:`_GradCache`)
and runs every problem without returning to Python, the batch shared out
among threads (the kernels release the GIL).  Scalar
problems run in blocks of ``_BLOCK`` that stay in L1 for all their steps,
the step loop outside the block loop: a step of one problem depends on its
previous one, so only running many problems side by side fills the vector
lanes and hides the latency.  These kernels are compiled per ``grad`` (the
cache entry's own) and not cached on disk (an entry per user function would
only grow).  Sizes and indices are int64, bounded by the arrays' sizes and
by n_iter <= fastcalc.optim.MAX_ITERATIONS (so ``n_iter + 1`` does not
wrap); the fits' by the dimensions of X.  They use no fast-math flags, so a
step rounds exactly as numpy's ``x - lr * g`` does.

``fit`` trains each problem in turn per thread, with its data transposed to
(D, N) once (or each mini-batch gathered so), in L1 for all its steps, and
every pass over the rows vectorized: the sums over rows (the gradient, the
loss) in functions that allow reassociation, the rest without.
"""

import collections
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numba
import numpy as np
from numba import njit, prange
from numba.core.errors import NumbaError

from fastcalc._grad_key import grad_key
from fastcalc._numba import parallel_call
from fastcalc._numba._vecmath import FASTMATH, exp_nonpositive
from fastcalc._numba.activations import _sigmoid_one
from fastcalc.optim import GradCacheInfo, GradCompileError
from fastcalc.reference.optim import LINEAR_SQUARED, LOGISTIC_LOG

__all__ = ["fit", "gradient_descent"]

# Problem-steps (x.size * n_iter) worth one more thread for a user's grad.
PARALLEL_MIN_WORK = 1 << 18

_BLOCK = 512  # scalar problems per block: positions and velocities in L1

_JIT_USER = dict(nogil=True, error_model="numpy")
_JIT = dict(nogil=True, cache=True, error_model="numpy", fastmath=FASTMATH)
# Sums over rows vectorize only if LLVM may reassociate them.  Kept apart from
# the code calling exp_nonpositive, whose rounding tricks reassociation would
# undo once Numba inlined it.
_JIT_SUM = dict(nogil=True, cache=True, error_model="numpy",
                fastmath={"contract", "reassoc"})

_ONE32 = np.float32(1)
_HALF32 = np.float32(0.5)
_ZERO32 = np.float32(0)

# ---------------------------------------------------------------- user grads

class _Compiled(NamedTuple):
    """A cache entry: grad and the two descent kernels around it, compiled on first use.

    ``checked`` holds the (dtype, point shape) of the calls whose grad and
    kernel were already compiled and checked: later calls skip both steps.
    """

    grad: object
    scalars: object
    vectors: object
    checked: set


class _GradCache:
    """The compiled grads, least recently used first, at most ``maxsize`` of them.

    Keyed by :func:`fastcalc._grad_key.grad_key`, so an equal function (the same lambda
    written again, the same closure factory called with equal values, a
    function unpickled on a worker) reuses the compiled code.  Each entry
    has its own descent kernels: the kernels compiled around a grad belong
    to it and go with it when it is evicted (Numba keeps a compiled
    function's machine code until the process ends, but the entry's Python
    objects, the user's function and what it references, are freed).
    """

    def __init__(self, maxsize):
        self.maxsize = maxsize
        self._entries: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, grad) -> _Compiled:
        key = grad_key(grad)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return entry
            try:
                compiled = (grad if isinstance(grad, numba.core.dispatcher.Dispatcher)
                            else njit(**_JIT_USER)(grad))
            except Exception as error:  # noqa: BLE001 (Numba raises several types here)
                raise GradCompileError(f"Numba cannot compile grad {grad!r}: {error}") from error
            entry = _Compiled(compiled, njit(**_JIT_USER)(_descend_scalars),
                              njit(**_JIT_USER)(_descend_vectors), set())
            self.misses += 1
            self._entries[key] = entry
            self._trim()
            return entry

    def __contains__(self, grad) -> bool:
        """Whether ``grad`` (or an equal function) is compiled: no compile, no count."""
        key = grad_key(grad)
        with self._lock:
            return key in self._entries

    def resize(self, maxsize: int) -> None:
        with self._lock:
            self.maxsize = maxsize
            self._trim()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = 0

    def info(self) -> GradCacheInfo:
        with self._lock:
            return GradCacheInfo(self.hits, self.misses, len(self._entries), self.maxsize)

    def _trim(self):
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)


GRAD_CACHE_SIZE = 64  # the default of fastcalc.optim.set_grad_cache_size
grads = _GradCache(GRAD_CACHE_SIZE)


def _reason(error: NumbaError) -> str:
    """The gist of a Numba typing error: its first lines after the pipeline's name."""
    lines = [line.strip() for line in str(error).splitlines()[1:6] if line.strip()]
    return " ".join(lines) or str(error)


def _check_grad(dispatcher, grad, x):
    """Compile ``grad`` for a point of ``x`` and check what it returns."""
    point = x[0] if x.ndim == 1 else x[0].copy()
    try:
        g = dispatcher(point)
    except NumbaError as error:
        raise GradCompileError(
            f"Numba cannot compile grad {grad!r} for a point of type "
            f"{numba.typeof(point)}: {_reason(error)}. Write grad with "
            "arithmetic and the numpy functions Numba supports, or use backend='numpy'"
        ) from error
    if np.iscomplexobj(g) or np.asarray(g).dtype.kind not in "biuf":
        raise TypeError(f"grad must return real numbers, it returned {g!r}")
    expected = () if x.ndim == 1 else x.shape[1:]
    if np.shape(g) != expected:
        raise ValueError(
            f"grad returned shape {np.shape(g)} for a point of shape {expected}; it must "
            "return the gradient at that point, of the same shape"
        )


def _descend_scalars(grad, x0, x, carried, lo, hi, lr, momentum, n_iter, tol, steps,
                     converged, history):
    position = np.empty(_BLOCK, x.dtype)
    velocity = np.empty(_BLOCK, x.dtype)
    taken = np.empty(_BLOCK, steps.dtype)
    plain = tol < 0 and momentum == 0
    moving = 0
    for start in range(lo, hi, _BLOCK):
        stop = min(start + _BLOCK, hi)
        m = stop - start
        # The block's views, indexed by i >= 0: vector loads and stores, where
        # x[start + i] would compile to gathers and scatters (Numba wraps
        # negative indices).
        source, target, done = x0[start:stop], x[start:stop], converged[start:stop]
        for i in range(m):
            position[i] = source[i]
            velocity[i] = carried[start + i] if carried.shape[0] else 0
            taken[i] = 0
        for t in range(n_iter):
            if plain:
                for i in range(m):
                    position[i] = position[i] - lr * grad(position[i])
            else:
                moving = 0
                for i in range(m):
                    g = grad(position[i])
                    go = not abs(g) < tol
                    v = g if momentum == 0 else momentum * velocity[i] + g
                    velocity[i] = v if go else velocity[i]
                    position[i] = position[i] - lr * v if go else position[i]
                    taken[i] += 1 if go else 0
                    moving += 1 if go else 0
            if history.shape[0]:
                history[t + 1, start:stop] = position[:m]
            if not plain and moving == 0:
                history[t + 2:, start:stop] = position[:m]
                break
        if carried.shape[0]:
            carried[start:stop] = velocity[:m]
        if tol >= 0:
            steps[start:stop] += taken[:m]
            for i in range(m):
                done[i] = abs(grad(position[i])) < tol
        else:
            for i in range(m):
                done[i] = np.isfinite(position[i])
        for i in range(m):
            target[i] = position[i]


def _descend_vectors(grad, x0, x, carried, lo, hi, lr, momentum, n_iter, tol, steps,
                     converged, history):
    D = x.shape[1]
    position = np.empty(D, x.dtype)
    velocity = np.empty(D, x.dtype)
    for b in range(lo, hi):
        position[:] = x0[b]
        if carried.shape[0]:
            velocity[:] = carried[b]
        else:
            velocity[:] = 0
        taken = 0
        for t in range(n_iter + 1 if tol >= 0 else n_iter):
            g = grad(position)
            if g.shape[0] != D:
                raise ValueError("grad returned an array of the wrong length")
            if tol >= 0:
                squares = 0.0
                for d in range(D):
                    squares += g[d] * g[d]
                if math.sqrt(squares) < tol:
                    converged[b] = True
                    break
                if t == n_iter:
                    break
            for d in range(D):
                v = g[d] if momentum == 0 else momentum * velocity[d] + g[d]
                velocity[d] = v
                position[d] = position[d] - lr * v
            taken += 1
            if history.shape[0]:
                history[t + 1, b] = position
        for rest in range(taken + 1, history.shape[0]):
            history[rest, b] = position
        if carried.shape[0]:
            carried[b] = velocity
        if tol >= 0:
            steps[b] += taken
        else:
            converged[b] = np.isfinite(position).all()
        x[b] = position


_pool: ThreadPoolExecutor | None = None
_pool_workers = 0
_pool_lock = threading.Lock()


def _thread_pool(workers: int) -> ThreadPoolExecutor:
    """A pool of at least ``workers`` threads, kept for later calls."""
    global _pool, _pool_workers
    with _pool_lock:
        if _pool is None or _pool_workers < workers:
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fastcalc")
            _pool_workers = workers
        return _pool


def gradient_descent(grad, x0, x, velocity, lr, momentum, n_iter, tol, steps, converged,
                     history, num_threads):
    compiled = grads.get(grad)
    dispatcher = compiled.grad
    signature = (x.dtype, x.shape[1:])
    kernel = compiled.scalars if x.ndim == 1 else compiled.vectors
    typed = x.dtype.type
    if history.shape[0]:
        history[0] = x0

    def run(lo, hi):
        kernel(dispatcher, x0, x, velocity, lo, hi, typed(lr), typed(momentum), n_iter,
               typed(tol), steps, converged, history)

    if signature not in compiled.checked:
        _check_grad(dispatcher, grad, x0)
        try:
            run(0, 0)  # compiles the kernel for this grad, here rather than in a worker
        except NumbaError as error:
            raise GradCompileError(
                f"Numba cannot compile the descent around grad {grad!r}: "
                f"{_reason(error)}"
            ) from error
        compiled.checked.add(signature)
    problems = x.shape[0]
    threads = max(1, min(num_threads, problems, x.size * max(n_iter, 1) // PARALLEL_MIN_WORK))
    bounds = [problems * k // threads for k in range(threads + 1)]
    if threads == 1:
        run(0, problems)
        return
    pool = _thread_pool(threads - 1)
    others = [pool.submit(run, bounds[k], bounds[k + 1]) for k in range(1, threads)]
    run(bounds[0], bounds[1])
    for future in others:
        future.result()


# ---------------------------------------------------------------- built-in models


@njit(**_JIT_SUM)
def _sum(a, n):
    total = _ZERO32
    for i in range(n):
        total += a[i]
    return total


@njit(**_JIT_SUM)
def _dot(a, b, n):
    total = _ZERO32
    for i in range(n):
        total += a[i] * b[i]
    return total


@njit(**_JIT_SUM)
def _dot4(r, XT, d, n):
    """The sums over rows of r * XT[d + k] for k = 0..3: r loaded once for four."""
    s0 = s1 = s2 = s3 = _ZERO32
    for i in range(n):
        ri = r[i]
        s0 += ri * XT[d, i]
        s1 += ri * XT[d + 1, i]
        s2 += ri * XT[d + 2, i]
        s3 += ri * XT[d + 3, i]
    return s0, s1, s2, s3


@njit(**_JIT_SUM)
def _sum_log(factor, n):
    """sum(log(factor[:n])) for factors in [1, 2], one log per block of products.

    A block of 64 such factors is below 2**64, in float32's range too.
    """
    total = _ZERO32
    for start in range(0, n, 64):
        product = _ONE32
        for i in range(start, min(start + 64, n)):
            product *= factor[i]
        total += math.log(product)
    return total


@njit(**_JIT)
def _forward(XT, n, w, b, z):
    """z[:n] = w @ XT[:, :n] + b, four features per pass over z."""
    D = w.shape[0]
    for i in range(n):
        z[i] = b
    whole = D - D % 4
    for d in range(0, whole, 4):
        w0, w1, w2, w3 = w[d], w[d + 1], w[d + 2], w[d + 3]
        for i in range(n):
            z[i] += w0 * XT[d, i] + w1 * XT[d + 1, i] + w2 * XT[d + 2, i] + w3 * XT[d + 3, i]
    for d in range(whole, D):
        wd = w[d]
        for i in range(n):
            z[i] += wd * XT[d, i]


@njit(**_JIT)
def _residuals(loss, z, y, n, r, partial, factor):
    """r = dloss/dz per row; the row's loss is partial (+ log(factor) for the log loss)."""
    if loss == LINEAR_SQUARED:
        for i in range(n):
            e = z[i] - y[i]
            r[i] = e
            partial[i] = _HALF32 * e * e
    elif loss == LOGISTIC_LOG:
        for i in range(n):
            zi = z[i]
            e = exp_nonpositive(-abs(zi))
            s = _ONE32 / (_ONE32 + e)
            p = s if zi >= 0 else e * s
            r[i] = p - y[i]
            # softplus(z) - y z = log(1 + e) + max(z, 0) - y z
            partial[i] = (zi if zi > 0 else _ZERO32) - y[i] * zi
            factor[i] = _ONE32 + e
    else:
        for i in range(n):
            p = _sigmoid_one(z[i])
            error = p - y[i]
            r[i] = error * p * (_ONE32 - p)
            partial[i] = _HALF32 * error * error


@njit(**_JIT)
def _step(XT, yb, n, w, b, lr, loss, l2, scale, fit_intercept, z, r, partial, factor):
    """One gradient step on the rows XT[:, :n]; returns (objective before it, new b)."""
    D = w.shape[0]
    _forward(XT, n, w, b, z)
    _residuals(loss, z, yb, n, r, partial, factor)
    value = _sum(partial, n)
    if loss == LOGISTIC_LOG:
        value += _sum_log(factor, n)
    objective = scale * value + _HALF32 * l2 * _dot(w, w, D)
    whole = D - D % 4
    for d in range(0, whole, 4):
        s0, s1, s2, s3 = _dot4(r, XT, d, n)
        w[d] -= lr * (scale * s0 + l2 * w[d])
        w[d + 1] -= lr * (scale * s1 + l2 * w[d + 1])
        w[d + 2] -= lr * (scale * s2 + l2 * w[d + 2])
        w[d + 3] -= lr * (scale * s3 + l2 * w[d + 3])
    for d in range(whole, D):
        w[d] -= lr * (scale * _dot(r, XT[d], n) + l2 * w[d])
    if fit_intercept:
        b -= lr * scale * _sum(r, n)
    return objective, b


@njit(**_JIT)
def _fit_one(X, y, w, b, lr, n_iter, loss, l2, scales, fit_intercept, order, batch_size,
             losses):
    """Train one problem (X (N, D), y (N,), w (D,) in place); returns the final b."""
    N, D = X.shape
    XT = np.empty((D, batch_size), X.dtype)
    yb = np.empty(batch_size, X.dtype)
    z = np.empty(batch_size, X.dtype)
    r = np.empty(batch_size, X.dtype)
    partial = np.empty(batch_size, X.dtype)
    factor = np.empty(batch_size, X.dtype)
    full = order.shape[0] == 0
    if full:
        for i in range(N):
            yb[i] = y[i]
            for d in range(D):
                XT[d, i] = X[i, d]
    per_epoch = (N + batch_size - 1) // batch_size
    n = N
    for t in range(n_iter):
        if not full:
            epoch, k = divmod(t, per_epoch)
            start = k * batch_size
            n = min(batch_size, N - start)
            for j in range(n):
                row = order[epoch, start + j]
                yb[j] = y[row]
                for d in range(D):
                    XT[d, j] = X[row, d]
        losses[t], b = _step(XT, yb, n, w, b, lr, loss, l2, scales[n], fit_intercept, z, r,
                             partial, factor)
    return b


@njit(**_JIT)
def _fit_serial(X, y, coef, intercept, lr, n_iter, loss, l2, scales, fit_intercept,
                order, batch_size, losses):
    for p in range(X.shape[0]):
        intercept[p] = _fit_one(X[p], y[p], coef[p], intercept[p], lr, n_iter, loss, l2,
                                scales, fit_intercept, order, batch_size, losses[p])


@njit(parallel=True, **_JIT)
def _fit_parallel(X, y, coef, intercept, lr, n_iter, loss, l2, scales, fit_intercept,
                  order, batch_size, losses):
    for p in prange(X.shape[0]):
        intercept[p] = _fit_one(X[p], y[p], coef[p], intercept[p], lr, n_iter, loss, l2,
                                scales, fit_intercept, order, batch_size, losses[p])


def fit(X, y, coef, intercept, lr, n_iter, loss, l2, scales, fit_intercept, order, batch_size,
        losses, num_threads):
    typed = X.dtype.type
    arguments = (X, y, coef, intercept, typed(lr), n_iter, loss, typed(l2), scales,
                 fit_intercept, order, batch_size, losses)
    if num_threads > 1 and X.shape[0] > 1:
        parallel_call(_fit_parallel, num_threads, *arguments)
    else:
        _fit_serial(*arguments)
