"""gradient_descent, fit_logistic, fit_linear: the seed's slides, backends, kernels, oracles."""

import collections
import gc
import math
import subprocess
import sys
import textwrap
import weakref

import numpy as np
import pytest
from helpers import (
    assert_interrupted,
    assert_threads_agree,
    kernel_modules,
    layouts,
    run_concurrently,
)
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import fastcalc
import fastcalc.optim
from fastcalc import _cython, _dispatch, _slices
from fastcalc.optim import DescentResult, FitResult, GradCompileError
from fastcalc.reference import optim as reference

# A RuntimeWarning (the library's "diverged" one, numpy's overflow) fails any test that does not
# expect it with pytest.warns.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

COMPILED = kernel_modules("optim")
# The backends with a gradient_descent kernel ("cython" cannot compile a user's grad).
DESCENT_BACKENDS = [name for name in ("numba", "numpy") if name in fastcalc.available_backends()]
requires_numba = pytest.mark.skipif("numba" not in fastcalc.available_backends(),
                                    reason="Numba is not installed")
TOLERANCE = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-12}


@pytest.fixture(params=fastcalc.available_backends())
def fit_backend(request):
    """Every backend name usable here, "auto" included; cython once its optim kernels are built."""
    if request.param == "cython" and not _cython.available_isas("optim"):
        pytest.skip("the cython optim kernels are not built")
    return request.param


def assert_close(actual, expected, rtol, label="", scale=None):
    """Within ``rtol`` of ``scale``: the largest magnitude of ``expected``, at least 1."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{label}: shape {actual.shape} != {expected.shape}"
    if scale is None:
        scale = max(np.abs(expected).max(initial=0), 1.0)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale, err_msg=label)


def assert_results_equal(actual, expected, names):
    for name, value, want in zip(names, actual, expected, strict=True):
        np.testing.assert_array_equal(value, want, err_msg=name)


def fit(loss, X, y, **keywords):
    """``fit_linear`` for ``loss="linear"``, else ``fit_logistic`` with that loss."""
    if loss == "linear":
        return fastcalc.fit_linear(X, y, **keywords)
    return fastcalc.fit_logistic(X, y, loss=loss, **keywords)


def make_data(rng, shape, loss):
    """X of shape ``shape`` (N(0, 1)) and its targets: N(0, 1), or 0/1 labels for the logistic."""
    X = rng.standard_normal(shape)
    if loss == "linear":
        return X, rng.standard_normal(shape[:-1])
    return X, rng.integers(0, 2, shape[:-1])


def objective(loss, X, y, coef, intercept, l2, mean=True):
    """The documented objective, from the textbook formulas of each row loss."""
    z = X @ coef + intercept
    p = 1 / (1 + np.exp(-z))
    rows = {"linear": (z - y) ** 2 / 2, "log": -(y * np.log(p) + (1 - y) * np.log(1 - p)),
            "squared": (p - y) ** 2 / 2}[loss]
    return (rows.mean() if mean else rows.sum()) + l2 / 2 * coef @ coef


# ---------------------------------------------------------------------------------------------
# 1. the seed's slide 3

def seed_f(x):
    return x**2 + 5 * x + 6


def seed_df(x):
    return 2 * x + 5


def seed_gradient_descent(df, x, learn_rate, n_iter):
    """Slide 3's loop, as the seed writes it."""
    for _ in range(n_iter):
        x = x - learn_rate * df(x)
    return x


def test_seed_slide_3(backend):
    if backend == "cython":
        with pytest.raises(ValueError, match="^the cython backend cannot run a user's grad"):
            fastcalc.gradient_descent(seed_df, 0.0, lr=0.1, n_iter=100, backend=backend)
        return
    result = fastcalc.gradient_descent(seed_df, 0.0, lr=0.1, n_iter=100, backend=backend)
    assert isinstance(result, DescentResult)
    assert abs(result.x - -2.5) < 1e-6
    assert abs(seed_f(result.x) - -0.25) < 1e-6
    assert result.x == seed_gradient_descent(seed_df, 0.0, 0.1, 100)
    assert type(result.x) is np.float64
    assert type(result.n_iter) is int and result.n_iter == 100
    assert result.converged is True and result.history is None


def test_a_million_starts_equal_the_seed_loop_started_from_each():
    rng = np.random.default_rng(0)
    starts = rng.uniform(-100, 100, 10**6)
    saved = starts.copy()
    finals = {backend: fastcalc.gradient_descent(seed_df, starts, lr=0.1, n_iter=100,
                                                 backend=backend).x
              for backend in DESCENT_BACKENDS}
    np.testing.assert_array_equal(starts, saved, err_msg="x0 was modified")
    checked = rng.choice(starts.size, 2000, replace=False)
    expected = [seed_gradient_descent(seed_df, float(starts[i]), 0.1, 100) for i in checked]
    for backend, final in finals.items():
        np.testing.assert_array_equal(final[checked], expected, err_msg=backend)
    if len(finals) == 2:
        np.testing.assert_array_equal(finals["numba"], finals["numpy"])


# ---------------------------------------------------------------------------------------------
# 2. numba against numpy

def cubic_grad(x):
    """The gradient of x**4 / 16 + x**2 - x per coordinate: the same math in numpy and Numba."""
    return 0.25 * x * x * x + 2.0 * x - 1.0


def python_descent(grad, x, lr, momentum, n_iter):
    """PyTorch's SGD momentum on one problem, in plain Python floats."""
    velocity = 0.0
    for _ in range(n_iter):
        velocity = momentum * velocity + grad(x)
        x = x - lr * velocity
    return x


STARTS = st.one_of(st.just(()), st.tuples(st.integers(1, 40)),
                   st.tuples(st.integers(1, 12), st.integers(1, 5)))


@requires_numba
@settings(max_examples=60, deadline=None)
@given(shape=STARTS, n_iter=st.integers(0, 30), lr=st.floats(0.01, 0.15),
       momentum=st.one_of(st.just(0.0), st.floats(0.0, 0.5)),
       tol=st.one_of(st.none(), st.floats(1e-3, 0.5)), history=st.booleans(),
       dtype=st.sampled_from([np.float64, np.float32]), seed=st.integers(0, 2**16))
def test_numba_equals_numpy(shape, n_iter, lr, momentum, tol, history, dtype, seed):
    x0 = np.random.default_rng(seed).uniform(-1.5, 1.5, shape).astype(dtype)
    keywords = dict(momentum=momentum, tol=tol, history=history)
    compiled = fastcalc.gradient_descent(cubic_grad, x0, lr, n_iter, backend="numba", **keywords)
    expected = fastcalc.gradient_descent(cubic_grad, x0, lr, n_iter, backend="numpy", **keywords)
    for result in (compiled, expected):
        assert np.shape(result.x) == shape and result.x.dtype == dtype
        if shape:
            assert result.n_iter.shape == result.converged.shape == shape[:1]
        else:
            assert type(result.n_iter) is int and type(result.converged) is bool
        assert (result.history is None) != history
        if history:
            assert result.history.shape == (n_iter + 1, *shape)
            assert result.history.dtype == dtype
    np.testing.assert_array_equal(compiled.n_iter, expected.n_iter)
    np.testing.assert_array_equal(compiled.converged, expected.converged)
    arrays = [(compiled.x, expected.x, "x")]
    if history:
        arrays.append((compiled.history, expected.history, "history"))
    for actual, want, name in arrays:
        if dtype == np.float64:
            np.testing.assert_array_equal(actual, want, err_msg=name)
        else:  # Numba computes 2.0 * x of a float32 x in float64
            np.testing.assert_allclose(actual, want, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("descent_backend", DESCENT_BACKENDS)
@pytest.mark.parametrize("shape", [(7,), (4, 3)])
def test_momentum_is_pytorch_sgd_momentum(descent_backend, shape):
    x0 = np.random.default_rng(1).uniform(-2, 2, shape)
    result = fastcalc.gradient_descent(cubic_grad, x0, 0.1, 25, momentum=0.7,
                                       backend=descent_backend)
    expected = np.vectorize(lambda x: python_descent(cubic_grad, x, 0.1, 0.7, 25))(x0)
    np.testing.assert_array_equal(result.x, expected)
    plain = fastcalc.gradient_descent(cubic_grad, x0, 0.1, 25, backend=descent_backend)
    np.testing.assert_array_equal(plain.x, np.vectorize(
        lambda x: python_descent(cubic_grad, x, 0.1, 0.0, 25))(x0))


QUADRATIC_A = np.array([[4.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 2.0]])
QUADRATIC_C = np.array([1.0, -2.0, 3.0])


def quadratic_grad_of_a_point(p):
    """The gradient of p @ A @ p / 2 - c @ p at one point (D,): Numba's call."""
    return QUADRATIC_A @ p - QUADRATIC_C


def quadratic_grad_of_a_batch(p):
    """The same gradient at a batch of points (B, D): numpy's call."""
    return p @ QUADRATIC_A.T - QUADRATIC_C


def test_quadratic_problems_converge_to_the_solution_of_the_linear_system(backend):
    grad = quadratic_grad_of_a_batch if backend == "numpy" else quadratic_grad_of_a_point
    starts = np.random.default_rng(2).uniform(-10, 10, (50, 3))
    lr = 1 / np.linalg.eigvalsh(QUADRATIC_A).max()
    if backend == "cython":
        with pytest.raises(ValueError, match="^the cython backend cannot"):
            fastcalc.gradient_descent(grad, starts, lr, 300, backend=backend)
        return
    solution = np.linalg.solve(QUADRATIC_A, QUADRATIC_C)
    result = fastcalc.gradient_descent(grad, starts, lr, 300, backend=backend)
    assert_close(result.x, np.broadcast_to(solution, starts.shape), 1e-10)
    assert result.converged.all() and (result.n_iter == 300).all()

    stopped = fastcalc.gradient_descent(grad, starts, lr, 300, tol=1e-8, backend=backend)
    assert stopped.converged.all()
    assert (stopped.n_iter > 10).all() and (stopped.n_iter < 300).all()
    assert (np.linalg.norm(quadratic_grad_of_a_batch(stopped.x), axis=1) < 1e-8).all()


# ---------------------------------------------------------------------------------------------
# 3. history, steps and convergence with tol

def double(x):
    """The gradient of x**2 (|x|**2 for vectors): with lr = 1/4 every step halves x, exactly."""
    return 2 * x


# Starting points and the steps until |2 x0| / 2**k < 1e-3: 2/2**11, 8/2**13, 0, 0.5/2**9.
HALVING_SCALARS = (np.array([1.0, 4.0, 0.0, -0.25]), np.array([11, 13, 0, 9]))
# Rows of norm 5, 0, 1 and 0.1: 10/2**14, 0, 2/2**11, 0.2/2**8.
HALVING_VECTORS = (np.array([[3.0, 4.0], [0.0, 0.0], [0.6, -0.8], [0.0, 0.1]]),
                   np.array([14, 0, 11, 8]))


@pytest.mark.parametrize("descent_backend", DESCENT_BACKENDS)
@pytest.mark.parametrize(("x0", "steps"), [HALVING_SCALARS, HALVING_VECTORS],
                         ids=["scalars", "vectors"])
@pytest.mark.parametrize("n_iter", [0, 5, 12, 20])
def test_history_and_steps_with_tol_follow_the_halving(descent_backend, x0, steps, n_iter):
    result = fastcalc.gradient_descent(double, x0, 0.25, n_iter, tol=1e-3, history=True,
                                       backend=descent_backend)
    taken = np.minimum(steps, n_iter)
    np.testing.assert_array_equal(result.n_iter, taken)
    np.testing.assert_array_equal(result.converged, steps <= n_iter)
    expected_x = x0 / 2.0 ** (taken if x0.ndim == 1 else taken[:, None])
    np.testing.assert_array_equal(result.x, expected_x)
    assert result.history.shape == (n_iter + 1, *x0.shape)
    np.testing.assert_array_equal(result.history[0], x0)
    np.testing.assert_array_equal(result.history[-1], result.x)
    for t, point in enumerate(result.history):  # a stopped problem repeats its last point
        halvings = np.minimum(taken, t)
        np.testing.assert_array_equal(
            point, x0 / 2.0 ** (halvings if x0.ndim == 1 else halvings[:, None]), err_msg=t)


@pytest.mark.parametrize("descent_backend", DESCENT_BACKENDS)
def test_without_tol_every_problem_takes_every_step(descent_backend):
    x0 = HALVING_VECTORS[0]
    result = fastcalc.gradient_descent(double, x0, 0.25, 20, history=True,
                                       backend=descent_backend)
    np.testing.assert_array_equal(result.n_iter, [20] * 4)
    assert not result.n_iter.flags.writeable  # a broadcast of 20: no memory per problem
    np.testing.assert_array_equal(result.converged, [True] * 4)
    np.testing.assert_array_equal(result.history, x0 / 2.0 ** np.arange(21)[:, None, None])


@pytest.mark.parametrize("descent_backend", DESCENT_BACKENDS)
def test_a_scalar_problem_returns_scalars(descent_backend):
    result = fastcalc.gradient_descent(double, np.float32(4), 0.25, 12, tol=1e-3, history=True,
                                       backend=descent_backend)
    assert type(result.x) is np.float32 and result.x == np.float32(4 / 2**12)
    assert type(result.n_iter) is int and result.n_iter == 12
    assert result.converged is False
    np.testing.assert_array_equal(result.history, np.float32(4) / 2 ** np.arange(13))
    assert result.history.dtype == np.float32


@pytest.mark.parametrize("descent_backend", DESCENT_BACKENDS)
@pytest.mark.parametrize("tol", [None, 1e-3])
@pytest.mark.parametrize("shape", [(0,), (0, 3)], ids=["scalars", "vectors"])
def test_no_descent_problems_give_empty_results(descent_backend, tol, shape):
    result = fastcalc.gradient_descent(double, np.empty(shape), 0.25, 5, tol=tol, history=True,
                                       backend=descent_backend)
    assert result.x.shape == shape and result.history.shape == (6, *shape)
    assert result.n_iter.shape == result.converged.shape == (0,)


@pytest.mark.parametrize("descent_backend", DESCENT_BACKENDS)
@pytest.mark.parametrize("tol", [None, 1e-3])
def test_problems_of_no_coordinates_have_a_gradient_of_norm_0(descent_backend, tol):
    result = fastcalc.gradient_descent(double, np.empty((3, 0)), 0.25, 5, tol=tol, history=True,
                                       backend=descent_backend)
    assert result.x.shape == (3, 0) and result.history.shape == (6, 3, 0)
    np.testing.assert_array_equal(result.n_iter, [5 if tol is None else 0] * 3)
    np.testing.assert_array_equal(result.converged, [True] * 3)


# ---------------------------------------------------------------------------------------------
# 4. threads

@pytest.mark.parametrize("descent_backend", DESCENT_BACKENDS)
@pytest.mark.parametrize(("shape", "keywords"), [
    ((2**14,), {}),
    ((2**14,), {"momentum": 0.3, "tol": 1e-6, "history": True}),
    ((2**12, 2), {"momentum": 0.3, "tol": 1e-6, "history": True}),
])
def test_descent_on_one_thread_gives_the_result_of_two(descent_backend, shape, keywords):
    """x.size * n_iter >= 2**19: Numba shares the problems out among two threads."""
    x0 = np.random.default_rng(3).uniform(-2, 2, shape)
    fastcalc.set_num_threads(2)
    two = fastcalc.gradient_descent(cubic_grad, x0, 0.1, 64, backend=descent_backend, **keywords)
    fastcalc.set_num_threads(1)
    one = fastcalc.gradient_descent(cubic_grad, x0, 0.1, 64, backend=descent_backend, **keywords)
    assert_results_equal(one, two, DescentResult._fields)


@pytest.mark.parametrize("batch_size", [None, 7])
def test_fit_on_one_thread_gives_the_result_of_two(fit_backend, batch_size):
    X, y = make_data(np.random.default_rng(4), (16, 30, 6), "log")
    fastcalc.set_num_threads(2)
    two = fastcalc.fit_logistic(X, y, n_iter=200, batch_size=batch_size, seed=5, l2=0.01,
                                backend=fit_backend)
    fastcalc.set_num_threads(1)
    one = fastcalc.fit_logistic(X, y, n_iter=200, batch_size=batch_size, seed=5, l2=0.01,
                                backend=fit_backend)
    assert_results_equal(one, two, FitResult._fields)


def test_thread_safety(fit_backend):
    """8 threads, each descending and fitting its own problems, get the serial results."""
    rng = np.random.default_rng(6)
    starts = [rng.uniform(-2, 2, (500, 3)) for _ in range(8)]
    data = [make_data(rng, (4, 50, 5), "log") for _ in range(8)]
    descends = fit_backend != "cython"

    def work(index):
        fitted = fastcalc.fit_logistic(*data[index], n_iter=300, batch_size=16, seed=index,
                                       backend=fit_backend)
        if not descends:
            return fitted
        descent = fastcalc.gradient_descent(cubic_grad, starts[index], 0.1, 50, momentum=0.5,
                                            tol=1e-6, backend=fit_backend)
        return (*fitted, *descent[:3])

    expected = [work(index) for index in range(8)]
    results = [None] * 8

    def concurrent_work(index):
        for _ in range(3):
            results[index] = work(index)

    run_concurrently(concurrent_work)
    names = FitResult._fields + (DescentResult._fields[:3] if descends else ())
    assert_threads_agree(results, expected, names)


# ---------------------------------------------------------------------------------------------
# 5. errors

UNCOMPILABLE_SETTINGS = {"offset": 5.0}


def uncompilable_grad(x):
    """Numba cannot type a global dict; numpy runs this fine."""
    return 2 * x + UNCOMPILABLE_SETTINGS["offset"]


def pair_grad(x):
    """Two values per point: the wrong shape for scalar problems."""
    return np.array([x, x])


def doubled_grad(p):
    """2D values per point (D,): the wrong shape for vector problems."""
    return np.concatenate((p, p))


DESCENT_ERRORS = [  # (changes, exception, message)
    ({"grad": 5.0}, TypeError, "^grad must be callable, got float"),
    ({"grad": None}, TypeError, "^grad must be callable"),
    ({"x0": np.ones(3, complex)}, TypeError, "^x0 must be a real floating, integer or bool"),
    ({"x0": 1j}, TypeError, "^x0 must be a real"),
    ({"x0": np.array(["a", "b"])}, TypeError, "^x0 must be a real"),
    ({"x0": np.ones((2, 2, 2))}, ValueError, r"^x0 must be a scalar, \(B,\) or \(B, D\) .*"
                                             r"got shape \(2, 2, 2\)"),
    ({"lr": 0}, ValueError, "^lr must be finite and > 0, got 0"),
    ({"lr": -0.1}, ValueError, "^lr must be finite and > 0"),
    ({"lr": math.nan}, ValueError, "^lr must be finite and > 0"),
    ({"lr": math.inf}, ValueError, "^lr must be finite and > 0"),
    ({"lr": "0.1"}, TypeError, "^lr must be a real number, got str"),
    ({"lr": True}, TypeError, "^lr must be a real number, got bool"),
    ({"lr": None}, TypeError, "^lr must be a real number"),
    ({"lr": 1j}, TypeError, "^lr must be a real number"),
    ({"n_iter": -1}, ValueError, "^n_iter must be >= 0, got -1"),
    ({"n_iter": 2.0}, TypeError, "^n_iter must be an integer, got float"),
    ({"n_iter": True}, TypeError, "^n_iter must be an integer, got bool"),
    ({"n_iter": "5"}, TypeError, "^n_iter must be an integer"),
    ({"momentum": -0.1}, ValueError, r"^momentum must be in \[0, 1\)"),
    ({"momentum": 1}, ValueError, r"^momentum must be in \[0, 1\)"),
    ({"momentum": 1.5}, ValueError, r"^momentum must be in \[0, 1\)"),
    ({"momentum": math.nan}, ValueError, r"^momentum must be in \[0, 1\)"),
    ({"momentum": "0.5"}, TypeError, "^momentum must be a real number"),
    ({"momentum": True}, TypeError, "^momentum must be a real number"),
    ({"tol": 0}, ValueError, "^tol must be finite and > 0"),
    ({"tol": -1e-3}, ValueError, "^tol must be finite and > 0"),
    ({"tol": math.nan}, ValueError, "^tol must be finite and > 0"),
    ({"tol": math.inf}, ValueError, "^tol must be finite and > 0"),
    ({"tol": "1e-3"}, TypeError, "^tol must be a real number"),
    ({"tol": True}, TypeError, "^tol must be a real number"),
    ({"grad": pair_grad, "x0": np.ones(4)}, ValueError, r"^grad returned shape \(2,"),
    ({"grad": doubled_grad}, ValueError, r"^grad returned shape"),
    ({"backend": "fortran"}, ValueError, "^unknown backend 'fortran'"),
]


@pytest.mark.parametrize("descent_backend", DESCENT_BACKENDS)
@pytest.mark.parametrize(("changes", "exception", "message"), DESCENT_ERRORS)
def test_descent_errors_name_the_argument(descent_backend, changes, exception, message):
    arguments = {"grad": cubic_grad, "x0": np.ones((4, 3)), "lr": 0.1, "n_iter": 10,
                 "backend": descent_backend, **changes}
    with pytest.raises(exception, match=message):
        fastcalc.gradient_descent(**arguments)


def test_the_cython_backend_cannot_descend():
    with pytest.raises(ValueError, match="^the cython backend cannot run a user's grad"):
        fastcalc.gradient_descent(seed_df, 0.0, backend="cython")
    if "cython" in fastcalc.available_backends():
        with fastcalc.use_backend("cython"), pytest.raises(ValueError, match="^the cython"):
            fastcalc.gradient_descent(seed_df, 0.0)


@requires_numba
def test_a_grad_numba_cannot_compile():
    x0 = np.linspace(-3, 3, 5)
    expected = fastcalc.gradient_descent(uncompilable_grad, x0, backend="numpy")
    np.testing.assert_array_equal(expected.x, fastcalc.gradient_descent(seed_df, x0).x)
    with pytest.raises(GradCompileError, match="^Numba cannot compile grad") as error:
        fastcalc.gradient_descent(uncompilable_grad, x0, backend="numba")
    assert isinstance(error.value, TypeError)
    with pytest.MonkeyPatch.context() as patch, pytest.warns(
            RuntimeWarning, match="running backend='numpy' instead"):
        patch.setattr(fastcalc.optim, "_COMPILE_SECONDS", 0.0)  # auto compiles every grad
        fallback = fastcalc.gradient_descent(uncompilable_grad, x0, backend="auto")
    assert_results_equal(fallback, expected, DescentResult._fields)


VALID_X = np.arange(12.0).reshape(6, 2) / 6
VALID_Y = np.array([0, 1, 0, 1, 1, 0])
FIT_ERRORS = [  # (changes, exception, message)
    ({"lr": 0.0}, ValueError, "^lr must be finite and > 0"),
    ({"lr": -1}, ValueError, "^lr must be finite and > 0"),
    ({"lr": math.nan}, ValueError, "^lr must be finite and > 0"),
    ({"lr": math.inf}, ValueError, "^lr must be finite and > 0"),
    ({"lr": "0.1"}, TypeError, "^lr must be a real number"),
    ({"lr": False}, TypeError, "^lr must be a real number"),
    ({"n_iter": -1}, ValueError, "^n_iter must be >= 0"),
    ({"n_iter": 10.0}, TypeError, "^n_iter must be an integer"),
    ({"n_iter": True}, TypeError, "^n_iter must be an integer"),
    ({"y": VALID_Y[:5]}, ValueError, r"^y has shape \(5,\), expected \(6,\)"),
    ({"y": VALID_Y[:, None]}, ValueError, r"^y has shape \(6, 1\)"),
    ({"y": VALID_Y[None]}, ValueError, r"^y has shape \(1, 6\)"),
    ({"y": VALID_Y.astype(complex)}, TypeError, "^y must be a real numeric array"),
    ({"X": VALID_X[:, 0]}, ValueError, r"^X must be \(N, D\) .* got shape \(6,\)"),
    ({"X": VALID_X[None, None]}, ValueError, r"^X must be \(N, D\) .* or \(P, N, D\)"),
    ({"X": VALID_X[:0], "y": VALID_Y[:0]}, ValueError, "^X has no samples"),
    ({"X": np.ones((3, 0, 2)), "y": np.ones((3, 0))}, ValueError, "^X has no samples"),
    ({"X": VALID_X.astype(complex)}, TypeError, "^X must be a real floating"),
    ({"X": VALID_X.astype(str)}, TypeError, "^X must be a real floating"),
    ({"batch_size": 0}, ValueError, "^batch_size must be >= 1"),
    ({"batch_size": -2}, ValueError, "^batch_size must be >= 1"),
    ({"batch_size": 2.5}, TypeError, "^batch_size must be an integer"),
    ({"batch_size": True}, TypeError, "^batch_size must be an integer"),
    ({"l2": -0.1}, ValueError, "^l2 must be finite and >= 0"),
    ({"l2": math.nan}, ValueError, "^l2 must be finite and >= 0"),
    ({"l2": math.inf}, ValueError, "^l2 must be finite and >= 0"),
    ({"l2": "0.1"}, TypeError, "^l2 must be a real number"),
    ({"l2": True}, TypeError, "^l2 must be a real number"),
    ({"reduction": "avg"}, ValueError, "^reduction must be 'mean' or 'sum', got 'avg'"),
    ({"reduction": "MEAN"}, ValueError, "^reduction must be 'mean' or 'sum'"),
    ({"reduction": None}, ValueError, "^reduction must be 'mean' or 'sum'"),
    ({"w0": np.zeros(3)}, ValueError, r"^w0 has shape \(3,\), expected \(2,\) or \(1, 2\)"),
    ({"w0": np.zeros((2, 2))}, ValueError, r"^w0 has shape \(2, 2\)"),
    ({"w0": np.zeros((1, 1, 2))}, ValueError, r"^w0 has shape \(1, 1, 2\)"),
    ({"w0": np.zeros(2, complex)}, TypeError, "^w0 must be a real floating"),
    ({"backend": "fortran"}, ValueError, "^unknown backend 'fortran'"),
]
LOGISTIC_ERRORS = [
    ({"y": np.array([0, 1, 2, 1, 0, 1])}, ValueError, "^y must hold class labels 0 and 1 only"),
    ({"y": VALID_Y * 0.5}, ValueError, "^y must hold class labels 0 and 1 only"),
    ({"y": np.where(VALID_Y, np.nan, 0)}, ValueError, "^y must hold class labels"),
    ({"y": -VALID_Y}, ValueError, "^y must hold class labels"),
    ({"loss": "hinge"}, ValueError, "^loss must be 'log' or 'squared', got 'hinge'"),
    ({"loss": "log_loss"}, ValueError, "^loss must be 'log' or 'squared'"),
]


@pytest.mark.parametrize("function", [fastcalc.fit_linear, fastcalc.fit_logistic],
                         ids=["linear", "logistic"])
@pytest.mark.parametrize(("changes", "exception", "message"), FIT_ERRORS)
def test_fit_errors_name_the_argument(function, changes, exception, message):
    arguments = {"X": VALID_X, "y": VALID_Y, "n_iter": 10, **changes}
    with pytest.raises(exception, match=message):
        function(**arguments)


@pytest.mark.parametrize(("changes", "exception", "message"), LOGISTIC_ERRORS)
def test_logistic_errors_name_the_argument(changes, exception, message):
    arguments = {"X": VALID_X, "y": VALID_Y, "n_iter": 10, **changes}
    with pytest.raises(exception, match=message):
        fastcalc.fit_logistic(**arguments)


def test_linear_targets_may_be_any_real_numbers():
    y = np.array([0, 1, 2.5, -1, 0.5, 7])
    assert fastcalc.fit_linear(VALID_X, y, n_iter=10).converged is True


# ---------------------------------------------------------------------------------------------
# 6. the seed's slide 4

def seed_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def seed_neuron():
    """Slide 4's data, its starting weights (np.random.seed(1)) and its 10000 steps."""
    X = np.array([[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]])
    y = np.array([[0, 1, 1, 0]]).T
    w0 = 2 * np.random.RandomState(1).random_sample((3, 1)) - 1
    w = w0.copy()
    for _ in range(10_000):
        layer = seed_sigmoid(np.dot(X, w))
        w += np.dot(X.T, (y - layer) * layer * (1 - layer))
    last_loss = 0.5 * np.sum((y - layer) ** 2)  # before the last step
    return X, y[:, 0], w0[:, 0], w[:, 0], last_loss


SEED_NEURON = seed_neuron()


def assert_is_the_seed_neuron(coef, loss):
    X, _, _, w, last_loss = SEED_NEURON
    assert_close(coef, w, 1e-10, "coef", scale=1.0)
    assert_close(seed_sigmoid(X @ coef), seed_sigmoid(X @ w), 1e-10, "layer", scale=1.0)
    assert_close(loss[-1], last_loss, 1e-10, "loss", scale=1.0)


def test_seed_slide_4(fit_backend):
    X, y, w0, _, _ = SEED_NEURON
    neuron = fastcalc.fit_logistic(X, y, lr=1.0, n_iter=10_000, loss="squared", reduction="sum",
                                   fit_intercept=False, w0=w0, backend=fit_backend)
    assert_is_the_seed_neuron(neuron.coef, neuron.loss)
    assert neuron.intercept == 0 and neuron.converged is True


@pytest.mark.parametrize("implementation", ["numpy", *sorted(COMPILED)])
def test_seed_slide_4_in_every_kernel(implementation):
    module = reference if implementation == "numpy" else COMPILED[implementation]
    X, y, w0, _, _ = SEED_NEURON
    coef, intercept = w0[None].copy(), np.zeros(1)
    losses = np.full((1, 10_000), np.nan)
    module.fit(X[None].astype(float), y[None].astype(float), coef, intercept, 1.0, 10_000,
               reference.LOGISTIC_SQUARED, 0.0, batch_scales(4, False, float), False,
               np.empty((0, 4), np.int64), 4, losses, 1)
    assert_is_the_seed_neuron(coef[0], losses[0])
    assert intercept[0] == 0


# ---------------------------------------------------------------------------------------------
# 7. every compiled fit kernel against the reference

def epoch_orders(seed, N, n_iter, batch_size):
    """The mini-batch ``order`` the public functions build: a permutation per epoch."""
    if batch_size is None:
        return np.empty((0, N), np.int64), N
    batch_size = min(batch_size, N)
    epochs = -(-n_iter // -(-N // batch_size))
    rng = np.random.default_rng(seed)
    return np.array([rng.permutation(N) for _ in range(epochs)], np.int64).reshape(-1, N), (
        batch_size)


def batch_scales(batch_size, mean, dtype):
    """The kernels' ``scales``: ``scales[n]`` is 1 / n for the mean of n rows, 1 for the sum."""
    scales = np.ones(batch_size + 1, dtype)
    if mean:
        scales[1:] /= np.arange(1, batch_size + 1)
    return scales


def run_fit_kernel(module, arguments, threads):
    """``(coef, intercept, losses)`` of ``module.fit``, its losses pre-filled with NaN."""
    coef, intercept = arguments["coef"].copy(), arguments["intercept"].copy()
    X = arguments["X"]
    losses = np.full((X.shape[0], arguments["n_iter"]), np.nan, X.dtype)
    module.fit(X, arguments["y"], coef, intercept, arguments["lr"], arguments["n_iter"],
               arguments["loss"], arguments["l2"], arguments["scales"], arguments["fit_intercept"],
               arguments["order"], arguments["batch_size"], losses, threads)
    return coef, intercept, losses


@pytest.mark.skipif(not COMPILED, reason="no compiled optim kernels")
@settings(max_examples=60, deadline=None)
@given(problems=st.integers(0, 4), samples=st.integers(1, 40),
       features=st.sampled_from([0, 1, 2, 3, 4, 5, 7, 8, 9, 10]),
       loss=st.sampled_from(reference.LOSSES), mean=st.booleans(), fit_intercept=st.booleans(),
       l2=st.sampled_from([0.0, 0.05]), batch_size=st.one_of(st.none(), st.integers(1, 45)),
       n_iter=st.integers(0, 25), step=st.floats(0.1, 0.9),
       dtype=st.sampled_from([np.float64, np.float32]), threads=st.sampled_from([1, 2]),
       seed=st.integers(0, 2**16))
def test_compiled_fit_kernels_equal_the_reference(problems, samples, features, loss, mean,
                                                  fit_intercept, l2, batch_size, n_iter, step,
                                                  dtype, threads, seed):
    # No steps of mini-batches overflow the compiled kernels' buffers: a crash, checked in a
    # process of its own by test_no_steps_of_mini_batches_stay_in_their_buffers.
    assume(n_iter or batch_size is None or batch_size >= samples)
    rng = np.random.default_rng(seed)
    shape = (problems, samples, features)
    X, y = make_data(rng, shape, "linear" if loss == reference.LINEAR_SQUARED else "log")
    order, batch = epoch_orders(seed, samples, n_iter, batch_size)
    # lr below 1 / (the curvature's bound): every step is stable.
    rows = 1 + (X**2).sum(axis=-1).max(initial=0)
    lr = step / (rows * (1 if mean else batch) + l2)
    arguments = {"X": X.astype(dtype), "y": y.astype(dtype),
                 "coef": 0.5 * rng.standard_normal((problems, features)).astype(dtype),
                 "intercept": 0.5 * rng.standard_normal(problems).astype(dtype), "lr": lr,
                 "n_iter": n_iter, "loss": loss, "l2": l2,
                 "scales": batch_scales(batch, mean, dtype),
                 "fit_intercept": fit_intercept, "order": order, "batch_size": batch}
    saved = {name: np.copy(value) for name, value in arguments.items()}
    expected = run_fit_kernel(reference, arguments, 1)
    assert np.isfinite(expected[2]).all()
    for label, module in COMPILED.items():
        results = run_fit_kernel(module, arguments, threads)
        for name, actual, want in zip(("coef", "intercept", "losses"), results, expected,
                                      strict=True):
            assert actual.dtype == dtype, f"{label} {name}"
            assert not np.isnan(actual).any(), f"{label} {name}: an element was not written"
            assert_close(actual, want, TOLERANCE[np.dtype(dtype)], f"{label} {name}")
        for name, value in saved.items():
            np.testing.assert_array_equal(arguments[name], value,
                                          err_msg=f"{label} modified {name}")


# ---------------------------------------------------------------------------------------------
# 8. problems, batches and seeds

@pytest.mark.parametrize("loss", ["linear", "log", "squared"])
@pytest.mark.parametrize("batch_size", [None, 3])
def test_problems_at_once_equal_one_call_each(fit_backend, loss, batch_size):
    X, y = make_data(np.random.default_rng(7), (3, 10, 5), loss)
    w0 = np.random.default_rng(8).standard_normal((3, 5))
    keywords = dict(n_iter=50, batch_size=batch_size, seed=9, l2=0.1, backend=fit_backend)
    together = fit(loss, X, y, w0=w0, **keywords)
    assert together.coef.shape == (3, 5) and together.intercept.shape == (3,)
    assert together.loss.shape == (3, 50) and together.converged.shape == (3,)
    for p in range(3):
        alone = fit(loss, X[p], y[p], w0=w0[p], **keywords)
        assert alone.coef.shape == (5,) and alone.loss.shape == (50,)
        assert type(alone.converged) is bool
        assert_results_equal(alone, [array[p] for array in together], FitResult._fields)
    shared = fit(loss, X, y, w0=w0[0], **keywords)  # a (D,) w0 starts every problem there
    assert_results_equal(shared, fit(loss, X, y, w0=np.tile(w0[0], (3, 1)), **keywords),
                         FitResult._fields)


@pytest.mark.parametrize("loss", ["linear", "log", "squared"])
def test_a_seed_gives_the_same_mini_batches_on_every_backend(fit_backend, loss):
    X, y = make_data(np.random.default_rng(10), (2, 23, 4), loss)
    keywords = dict(n_iter=40, batch_size=5, l2=0.01)
    expected = fit(loss, X, y, seed=11, backend="numpy", **keywords)
    result = fit(loss, X, y, seed=11, backend=fit_backend, **keywords)
    for name, actual, want in zip(FitResult._fields, result, expected, strict=True):
        assert_close(actual, want, 1e-12, name)
    assert_results_equal(fit(loss, X, y, seed=np.random.default_rng(11), backend=fit_backend,
                             **keywords), result, FitResult._fields)
    other = fit(loss, X, y, seed=12, backend=fit_backend, **keywords)
    assert np.abs(other.coef - result.coef).max() > 1e-6
    assert np.abs(other.loss - result.loss).max() > 1e-6


@pytest.mark.parametrize("loss", ["linear", "log", "squared"])
@pytest.mark.parametrize("batch_size", [23, 24, 1000])
def test_a_batch_of_all_rows_is_the_full_batch(fit_backend, loss, batch_size):
    X, y = make_data(np.random.default_rng(13), (2, 23, 4), loss)
    full = fit(loss, X, y, n_iter=30, l2=0.01, backend=fit_backend)
    batched = fit(loss, X, y, n_iter=30, l2=0.01, batch_size=batch_size, seed=14,
                  backend=fit_backend)
    for name, actual, want in zip(FitResult._fields, batched, full, strict=True):
        assert_close(actual, want, 1e-12, name)


def sgd_oracle(X, y, lr, n_iter, batch_size, seed, reduction):
    """Mini-batch SGD of a linear least-squares model, as the docstrings describe it."""
    N, D = X.shape
    coef, intercept, losses = np.zeros(D), 0.0, []
    rng = np.random.default_rng(seed)
    batches = []
    while len(batches) < n_iter:
        order = rng.permutation(N)
        batches += [order[start:start + batch_size] for start in range(0, N, batch_size)]
    for rows in batches[:n_iter]:
        residual = X[rows] @ coef + intercept - y[rows]
        scale = 1 / len(rows) if reduction == "mean" else 1
        losses.append(scale * np.sum(residual**2) / 2)
        coef = coef - lr * scale * X[rows].T @ residual
        intercept = intercept - lr * scale * residual.sum()
    return coef, intercept, np.array(losses)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize(("samples", "batch_size"), [(10, 3), (12, 4), (7, 1), (9, 8)])
def test_mini_batches_visit_a_new_permutation_every_epoch(fit_backend, reduction, samples,
                                                          batch_size):
    X, y = make_data(np.random.default_rng(15), (samples, 3), "linear")
    lr = 0.05 if reduction == "mean" else 0.05 / batch_size
    result = fastcalc.fit_linear(X, y, lr=lr, n_iter=25, batch_size=batch_size, seed=16,
                                 reduction=reduction, backend=fit_backend)
    for name, actual, want in zip(("coef", "intercept", "loss"), result[:3],
                                  sgd_oracle(X, y, lr, 25, batch_size, 16, reduction),
                                  strict=True):
        assert_close(actual, want, 1e-12, name)


@pytest.mark.parametrize("loss", ["linear", "log", "squared"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("l2", [0.0, 0.3])
def test_loss_is_the_objective_before_each_step(fit_backend, loss, reduction, l2):
    X, y = make_data(np.random.default_rng(17), (20, 3), loss)
    w0 = np.array([0.5, -0.25, 1.0])
    lr = 0.1 if reduction == "mean" else 0.005
    run = fit(loss, X, y, lr=lr, n_iter=8, reduction=reduction, l2=l2, w0=w0,
              backend=fit_backend)
    for t in range(8):
        before = fit(loss, X, y, lr=lr, n_iter=t, reduction=reduction, l2=l2, w0=w0,
                     backend=fit_backend)
        want = objective(loss, X, y, before.coef, before.intercept, l2, reduction == "mean")
        assert_close(run.loss[t], want, 1e-12, f"loss[{t}]")


# ---------------------------------------------------------------------------------------------
# 9. gradients against finite differences

@pytest.mark.parametrize("loss", ["linear", "log", "squared"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("l2", [0.0, 0.2])
def test_steps_follow_the_gradient_of_the_loss(fit_backend, loss, reduction, l2):
    rng = np.random.default_rng(18)
    X, y = make_data(rng, (12, 4), loss)
    w0 = rng.standard_normal(4)
    lr = 0.01

    def first_loss(X, w):
        return fit(loss, X, y, n_iter=1, lr=lr, reduction=reduction, l2=l2, w0=w,
                   fit_intercept=False, backend=fit_backend).loss[0]

    step = fit(loss, X, y, n_iter=1, lr=lr, reduction=reduction, l2=l2, w0=w0,
               fit_intercept=False, backend=fit_backend)
    gradient = (w0 - step.coef) / lr
    numerical = np.array([(first_loss(X, w0 + 1e-6 * e) - first_loss(X, w0 - 1e-6 * e)) / 2e-6
                          for e in np.eye(4)])
    assert_close(gradient, numerical, 1e-6, "coef", scale=np.abs(numerical).max())

    # The intercept's step is the gradient for a column of ones, there at coefficient 0 (where
    # the penalty's gradient is 0).
    with_intercept = fit(loss, X, y, n_iter=1, lr=lr, reduction=reduction, l2=l2, w0=w0,
                         backend=fit_backend)
    ones = np.column_stack([X, np.ones(12)])
    unit = np.eye(5)[4] * 1e-6
    numerical_intercept = (first_loss(ones, np.append(w0, 0) + unit)
                           - first_loss(ones, np.append(w0, 0) - unit)) / 2e-6
    assert_close(-with_intercept.intercept / lr, numerical_intercept, 1e-6, "intercept",
                 scale=max(abs(numerical_intercept), 1.0))
    np.testing.assert_array_equal(with_intercept.coef, step.coef)


# ---------------------------------------------------------------------------------------------
# 10. scikit-learn and closed forms

def test_logistic_regression_reaches_scikit_learns_objective(fit_backend):
    linear_model = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(19)
    samples, C = 300, 0.5
    X = rng.standard_normal((samples, 4))
    logits = X @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.3
    y = (logits + rng.logistic(size=samples) > 0).astype(int)  # noisy labels: not separable
    l2 = 1 / (C * samples)
    model = linear_model.LogisticRegression(C=C, tol=1e-12, max_iter=10_000).fit(X, y)
    result = fastcalc.fit_logistic(X, y, lr=1.0, n_iter=5000, l2=l2, backend=fit_backend)
    assert result.converged is True
    optimum = objective("log", X, y, model.coef_[0], model.intercept_[0], l2)
    reached = objective("log", X, y, result.coef, result.intercept, l2)
    assert abs(reached - optimum) < 1e-4, (reached, optimum)
    assert abs(result.loss[-1] - reached) < 1e-4
    assert_close(result.coef, model.coef_[0], 1e-2, "coef")


def test_linear_fit_recovers_noiseless_coefficients(fit_backend):
    rng = np.random.default_rng(20)
    X = rng.standard_normal((200, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 3.0
    result = fastcalc.fit_linear(X, y, lr=0.5, n_iter=2000, backend=fit_backend)
    assert_close(result.coef, [1.0, -2.0, 0.5], 1e-8, "coef")
    assert_close(result.intercept, 3.0, 1e-8, "intercept")
    assert result.loss[-1] < 1e-16


@pytest.mark.parametrize("fit_intercept", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_linear_fit_with_l2_is_ridge_regression(fit_backend, fit_intercept, reduction):
    rng = np.random.default_rng(21)
    samples, l2 = 80, 0.3
    X = rng.standard_normal((samples, 4)) + [0.5, -1.0, 0.0, 2.0]
    y = X @ np.array([1.0, -2.0, 0.5, 0.25]) + 1.5 + rng.standard_normal(samples)
    mean_X, mean_y = (X.mean(axis=0), y.mean()) if fit_intercept else (0.0, 0.0)
    centered_X, centered_y = X - mean_X, y - mean_y
    coef = np.linalg.solve(centered_X.T @ centered_X / samples + l2 * np.eye(4),
                           centered_X.T @ centered_y / samples)
    # reduction="sum": the objective times N, of the same minimum with the penalty times N.
    scale = 1 if reduction == "mean" else samples
    result = fastcalc.fit_linear(X, y, lr=0.05 / scale, n_iter=5000, l2=l2 * scale,
                                 reduction=reduction, fit_intercept=fit_intercept,
                                 backend=fit_backend)
    assert_close(result.coef, coef, 1e-8, "coef")
    assert_close(result.intercept, mean_y - mean_X @ coef if fit_intercept else 0.0, 1e-8,
                 "intercept")


# ---------------------------------------------------------------------------------------------
# 11. memory layouts, dtypes and edge cases

@pytest.mark.parametrize("loss", ["linear", "log"])
@pytest.mark.parametrize("argument", ["X", "y", "w0"])
@pytest.mark.parametrize("problems", [(), (4,)], ids=["single", "batched"])
def test_any_memory_layout_gives_the_contiguous_result(fit_backend, loss, argument, problems):
    # N = D = P: every view of layouts(), the transposed one included, is valid.
    rng = np.random.default_rng(22)
    X, y = make_data(rng, (*problems, 4, 4), loss)
    arrays = {"X": X, "y": y.astype(float), "w0": rng.standard_normal((*problems, 4))}

    def run(arrays):
        return fit(loss, arrays["X"], arrays["y"], w0=arrays["w0"], n_iter=20, l2=0.01,
                   batch_size=3, seed=23, backend=fit_backend)

    for label, view in layouts(arrays[argument]).items():
        before = view.copy()
        expected = run({**arrays, argument: np.ascontiguousarray(view, dtype=np.float64)})
        result = run({**arrays, argument: view})
        np.testing.assert_array_equal(view, before, err_msg=f"{label} {argument} changed")
        assert result.coef.dtype == np.float64
        for name, actual, want in zip(FitResult._fields, result, expected, strict=True):
            np.testing.assert_array_equal(actual, want, err_msg=f"{label} {argument}: {name}")


@pytest.mark.parametrize("descent_backend", DESCENT_BACKENDS)
def test_any_x0_layout_gives_the_contiguous_result(descent_backend):
    x0 = np.random.default_rng(24).uniform(-2, 2, (4, 4))
    for label, view in layouts(x0).items():
        before = view.copy()
        expected = fastcalc.gradient_descent(cubic_grad, np.ascontiguousarray(view, float), 0.1,
                                             20, tol=1e-4, history=True, backend=descent_backend)
        result = fastcalc.gradient_descent(cubic_grad, view, 0.1, 20, tol=1e-4, history=True,
                                           backend=descent_backend)
        np.testing.assert_array_equal(view, before, err_msg=f"{label} x0 changed")
        assert_results_equal(result, expected, DescentResult._fields)


@pytest.mark.parametrize("descent_backend", DESCENT_BACKENDS)
@pytest.mark.parametrize("shape", [(), (6,), (3, 2)])
def test_descent_dtypes(descent_backend, shape):
    x0 = np.random.default_rng(25).uniform(-2, 2, shape)

    def descend(x0):
        return fastcalc.gradient_descent(cubic_grad, x0, 0.1, 20, history=True,
                                         backend=descent_backend)

    single = descend(x0.astype(np.float32))
    assert single.x.dtype == single.history.dtype == np.float32
    assert_close(single.x, descend(x0).x, 1e-5, "float32")
    half = descend(x0.astype(np.float16))
    assert half.x.dtype == half.history.dtype == np.float16
    in_float32 = descend(x0.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(half.x, in_float32.x.astype(np.float16))
    np.testing.assert_array_equal(half.history, in_float32.history.astype(np.float16))
    for integers in (np.round(x0).astype(np.int32), x0 > 0):
        result = descend(integers)
        assert result.x.dtype == np.float64
        assert_results_equal(result, descend(integers.astype(np.float64)), DescentResult._fields)
    assert_results_equal(descend(x0.tolist()), descend(x0), DescentResult._fields)


@pytest.mark.parametrize("loss", ["linear", "log", "squared"])
def test_fit_dtypes(fit_backend, loss):
    X, y = make_data(np.random.default_rng(26), (3, 15, 4), loss)

    def run(X, y, w0=None):
        return fit(loss, X, y, n_iter=30, l2=0.01, w0=w0, backend=fit_backend)

    in_float64 = run(X, y)
    single = run(X.astype(np.float32), y)  # int labels or float64 targets: still float32
    for name, actual, want in zip(FitResult._fields[:3], single[:3], in_float64[:3],
                                  strict=True):
        assert actual.dtype == np.float32, name
        assert_close(actual, want, 1e-4, name)
    half = run(X.astype(np.float16), y)
    in_float32 = run(X.astype(np.float16).astype(np.float32), y)
    for name, actual, want in zip(FitResult._fields[:3], half[:3], in_float32[:3], strict=True):
        assert actual.dtype == np.float16, name
        np.testing.assert_array_equal(actual, want.astype(np.float16), err_msg=name)
    integers = np.round(3 * X).astype(np.int16)
    result = run(integers, y)
    assert result.coef.dtype == np.float64
    assert_results_equal(result, run(integers.astype(np.float64), y), FitResult._fields)
    assert_results_equal(run(X, y, w0=np.ones(4, np.float32)), run(X, y, w0=np.ones(4)),
                         FitResult._fields)
    if loss != "linear":
        assert_results_equal(run(X, y.astype(bool)), in_float64, FitResult._fields)


@pytest.mark.parametrize("loss", ["linear", "log"])
@pytest.mark.parametrize("batch_size", [None, 2])
def test_no_problems_give_empty_results(fit_backend, loss, batch_size):
    result = fit(loss, np.empty((0, 5, 3)), np.empty((0, 5)), n_iter=7, batch_size=batch_size,
                 backend=fit_backend)
    assert result.coef.shape == (0, 3) and result.intercept.shape == (0,)
    assert result.loss.shape == (0, 7) and result.converged.shape == (0,)
    assert result.converged.dtype == bool


@pytest.mark.parametrize("loss", ["linear", "log", "squared"])
def test_no_features_fit_the_intercept_alone(fit_backend, loss):
    _, y = make_data(np.random.default_rng(27), (2, 9, 0), loss)
    result = fit(loss, np.empty((2, 9, 0)), y, lr=0.5, n_iter=300, backend=fit_backend)
    assert result.coef.shape == (2, 0)
    expected = fit(loss, np.empty((2, 9, 0)), y, lr=0.5, n_iter=300, backend="numpy")
    assert_close(result.intercept, expected.intercept, 1e-12, "intercept")
    assert_close(result.loss, expected.loss, 1e-12, "loss")
    mean = y.mean(axis=1)
    if loss == "linear":
        assert_close(result.intercept, mean, 1e-12, "intercept")
    elif loss == "log" and 0 < mean.min() and mean.max() < 1:
        assert_close(result.intercept, np.log(mean / (1 - mean)), 1e-8, "logit")


@pytest.mark.parametrize("loss", ["linear", "log", "squared"])
@pytest.mark.parametrize("problems", [(), (3,)], ids=["single", "batched"])
@pytest.mark.parametrize("batch_size", [None, 6])
def test_no_steps_return_the_start(fit_backend, loss, problems, batch_size):
    rng = np.random.default_rng(28)
    X, y = make_data(rng, (*problems, 6, 2), loss)
    w0 = rng.standard_normal((*problems, 2))
    result = fit(loss, X, y, n_iter=0, w0=w0, batch_size=batch_size, backend=fit_backend)
    np.testing.assert_array_equal(result.coef, w0)
    np.testing.assert_array_equal(result.intercept, np.zeros(problems))
    assert result.loss.shape == (*problems, 0)
    assert np.all(result.converged)


NO_STEPS_OF_MINI_BATCHES = """
import numpy as np, fastcalc
X = np.ones((100_000, 8))
w0 = np.arange(8.0)
result = fastcalc.fit_linear(X, X[:, 0], n_iter=0, batch_size=1, w0=w0, backend={backend!r})
assert np.array_equal(result.coef, w0) and result.loss.shape == (0,), result
"""


def test_no_steps_of_mini_batches_stay_in_their_buffers(fit_backend):
    """In a process of its own: writing past a buffer of one row would crash this one."""
    code = textwrap.dedent(NO_STEPS_OF_MINI_BATCHES.format(backend=fit_backend))
    process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=600, check=False)
    assert process.returncode == 0, f"exit status {process.returncode}: {process.stderr[-2000:]}"


def test_one_sample_is_interpolated(fit_backend):
    X, y = np.array([[1.0, -2.0]]), np.array([3.0])
    result = fastcalc.fit_linear(X, y, lr=0.1, n_iter=200, backend=fit_backend)
    assert_close(X @ result.coef + result.intercept, y, 1e-12, "prediction")
    expected = fastcalc.fit_linear(X, y, lr=0.1, n_iter=200, backend="numpy")
    for name, actual, want in zip(FitResult._fields, result, expected, strict=True):
        assert_close(actual, want, 1e-12, name)


@pytest.mark.parametrize("loss", ["linear", "log"])
def test_nan_in_X_fails_only_its_problem(fit_backend, loss):
    X, y = make_data(np.random.default_rng(29), (3, 10, 2), loss)
    clean = fit(loss, X, y, n_iter=20, backend=fit_backend)
    X[1, 4, 0] = np.nan
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning, match="1 of 3 problems diverged"):
        result = fit(loss, X, y, n_iter=20, backend=fit_backend)
    np.testing.assert_array_equal(result.converged, [True, False, True])
    assert np.isnan(result.coef[1]).all() and np.isnan(result.loss[1]).all()
    for name, actual, want in zip(FitResult._fields, result, clean, strict=True):
        np.testing.assert_array_equal(actual[[0, 2]], want[[0, 2]], err_msg=name)


# ---------------------------------------------------------------------------------------------
# 12. divergence

@pytest.mark.parametrize("tol", [None, 1e-6])
def test_a_diverging_descent_warns(backend, tol):
    starts = np.array([0.0, 1.0, -3.0])
    if backend == "cython":
        with pytest.raises(ValueError, match="^the cython backend cannot"):
            fastcalc.gradient_descent(seed_df, starts, lr=2.0, n_iter=2000, backend=backend)
        return
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning, match="3 of 3 problems diverged"):
        result = fastcalc.gradient_descent(seed_df, starts, lr=2.0, n_iter=2000, tol=tol,
                                           backend=backend)
    assert not np.isfinite(result.x).any()
    assert not result.converged.any()
    np.testing.assert_array_equal(result.n_iter, [2000] * 3)
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning, match="diverged"):
        single = fastcalc.gradient_descent(seed_df, 0.0, lr=2.0, n_iter=2000, backend=backend)
    assert np.isnan(single.x) and single.converged is False


@pytest.mark.parametrize("batch_size", [None, 4])
def test_a_diverging_fit_warns(fit_backend, batch_size):
    X, y = make_data(np.random.default_rng(30), (50, 3), "linear")
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning, match="fit_linear: 1 of 1"):
        result = fastcalc.fit_linear(X, y, lr=1e3, n_iter=2000, batch_size=batch_size, seed=0,
                                     backend=fit_backend)
    assert result.converged is False
    assert not np.isfinite(result.coef).all()


# ---------------------------------------------------------------------------------------------
# 13. hardening (issue 15): huge integers and wrong types, the cache of compiled grads, Ctrl-C

HUGE_ARGUMENT_ERRORS = [  # (changes, exception, message): every function, every backend
    ({"n_iter": 2**63}, ValueError, r"^n_iter must be in \[0, 9223372036854775806\], got 2\*\*63"
                                    .replace("2\\*\\*63", str(2**63))),
    ({"n_iter": 2**63 - 1}, ValueError, r"^n_iter must be in \[0, 9223372036854775806\]"),
    ({"n_iter": 10**100}, ValueError, r"^n_iter must be in \[0, "),
    ({"n_iter": np.uint64(2**64 - 1)}, ValueError, r"^n_iter must be in \[0, "),
    ({"lr": 10**400}, ValueError, "^lr must be finite and > 0"),
]


@pytest.mark.parametrize("descent_backend", DESCENT_BACKENDS)
@pytest.mark.parametrize(("changes", "exception", "message"), [
    *HUGE_ARGUMENT_ERRORS,
    ({"history": "no"}, TypeError, "^history must be True or False, got str"),
    ({"history": 1}, TypeError, "^history must be True or False, got int"),
    ({"history": None}, TypeError, "^history must be True or False"),
    ({"history": True, "n_iter": 2**62}, ValueError,
     r"^history=True with n_iter=4611686018427387904 would take .* bytes, more than an array"),
    ({"momentum": math.inf}, ValueError, r"^momentum must be in \[0, 1\)"),
    ({"tol": 10**400}, ValueError, "^tol must be finite and > 0"),
])
def test_descent_arguments_are_checked_before_running(descent_backend, changes, exception,
                                                       message):
    """The issue's gradient_descent(n_iter=2**63) failed after running, not naming n_iter."""
    grad = CountingGrad()
    arguments = {"grad": grad, "x0": np.ones(3), "backend": descent_backend, **changes}
    with pytest.raises(exception, match=message):
        fastcalc.gradient_descent(**arguments)
    assert grad.calls == 0, "grad ran before the arguments were checked"


class CountingGrad:
    """A grad that counts its calls (Numba cannot compile it: a plain object)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        return 2 * x


@pytest.mark.parametrize("function", [fastcalc.fit_linear, fastcalc.fit_logistic],
                         ids=["linear", "logistic"])
@pytest.mark.parametrize(("changes", "exception", "message"), [
    *HUGE_ARGUMENT_ERRORS,
    ({"n_iter": 2**62}, ValueError,
     r"^the loss of n_iter=4611686018427387904 steps of 1 problems would take .* bytes"),
    ({"n_iter": 2**60, "batch_size": 1}, ValueError, r"^the loss of n_iter="),
    ({"fit_intercept": "no"}, TypeError, "^fit_intercept must be True or False, got str"),
    ({"fit_intercept": 0}, TypeError, "^fit_intercept must be True or False, got int"),
    ({"fit_intercept": None}, TypeError, "^fit_intercept must be True or False"),
    ({"seed": "abc"}, TypeError, "^seed must be None, an integer >= 0 or a numpy.random.Generator"),
    ({"seed": 1.5}, TypeError, "^seed must be None, an integer"),
    ({"seed": True}, TypeError, "^seed must be None, an integer"),
    ({"seed": -1}, ValueError, "^seed must be >= 0, got -1"),
    ({"seed": -1, "batch_size": 2}, ValueError, "^seed must be >= 0, got -1"),
    ({"batch_size": 2**63}, None, None),
    ({"batch_size": 10**100, "seed": 2**200}, None, None),
    ({"fit_intercept": np.True_}, None, None),
    ({"seed": np.random.SeedSequence(3), "batch_size": 2}, None, None),
])
def test_fit_arguments_are_checked_before_running(fit_backend, function, changes, exception,
                                                  message):
    """fit_intercept="no" was truthy and fitted an intercept; a bad seed passed without
    batch_size; a huge n_iter failed in numpy's allocation, not naming n_iter."""
    arguments = {"X": VALID_X, "y": VALID_Y, "n_iter": 10, "backend": fit_backend, **changes}
    if exception is None:
        function(**arguments)
    else:
        with pytest.raises(exception, match=message):
            function(**arguments)


def test_a_batch_larger_than_the_samples_is_all_of_them(fit_backend):
    whole = fastcalc.fit_logistic(VALID_X, VALID_Y, n_iter=10, batch_size=len(VALID_Y), seed=1,
                                  backend=fit_backend)
    huge = fastcalc.fit_logistic(VALID_X, VALID_Y, n_iter=10, batch_size=2**64, seed=1,
                                 backend=fit_backend)
    assert_results_equal(huge, whole, FitResult._fields)
    assert fastcalc.fit_linear(VALID_X, VALID_Y, n_iter=10, fit_intercept=False,
                               backend=fit_backend).intercept == 0


@pytest.fixture
def grad_cache():
    """The Numba backend's cache of compiled grads, emptied, its size restored after."""
    if "numba" not in fastcalc.available_backends():
        pytest.skip("Numba is not installed")
    from fastcalc._numba.optim import grads

    maxsize = grads.maxsize
    grads.clear()
    yield grads
    fastcalc.optim.set_grad_cache_size(maxsize)


def compiles(function):
    """The compiles of grads during ``function()``."""
    before = fastcalc.optim.grad_cache_info().misses
    function()
    return fastcalc.optim.grad_cache_info().misses - before


def descend(grad, backend="numba"):
    return fastcalc.gradient_descent(grad, np.linspace(-3, 3, 5), lr=0.1, n_iter=20,
                                     backend=backend).x


def closure_factory(offset, scale=2):
    return lambda x: scale * x + offset


OFFSET = 5.0


def global_grad(x):
    return 2 * x + OFFSET


def test_equal_grads_compile_once(grad_cache):
    x0 = np.linspace(-3, 3, 5)
    assert compiles(lambda: descend(lambda x: 2 * x + 5)) == 1
    assert compiles(lambda: descend(lambda x: 2 * x + 5)) == 0  # the same lambda written again
    assert compiles(lambda: descend(closure_factory(5.0))) == 1
    assert compiles(lambda: descend(closure_factory(5.0))) == 0  # the factory called again
    expected = descend(lambda x: 2 * x + 5, backend="numpy")
    np.testing.assert_array_equal(descend(closure_factory(5.0)), expected)
    info = fastcalc.optim.grad_cache_info()
    assert (info.misses, info.size) == (2, 2) and info.hits >= 3
    assert x0.tolist() == np.linspace(-3, 3, 5).tolist()


def test_unequal_grads_compile_apart_and_give_their_own_results(grad_cache, monkeypatch):
    grads = [lambda x: 2 * x + 5, lambda x: 2 * x + 6, lambda x: 3 * x + 5,
             lambda x: 2 * x + 5.0, lambda x: 2 * x - 0.0, lambda x: 2 * x + 0.0,
             closure_factory(1.0), closure_factory(2.0), closure_factory(1.0, scale=3),
             closure_factory(np.float32(1.0)), global_grad]
    for grad in grads:
        np.testing.assert_array_equal(descend(grad), descend(grad, backend="numpy"))
    assert fastcalc.optim.grad_cache_info().misses == len(grads)
    monkeypatch.setattr(sys.modules[__name__], "OFFSET", -1.0)  # another global object
    np.testing.assert_array_equal(descend(global_grad), descend(global_grad, backend="numpy"))
    assert fastcalc.optim.grad_cache_info().misses == len(grads) + 1


def test_grads_capturing_arrays_compile_apart(grad_cache):
    first, second = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    for shift in (first, second):
        grad = closure_factory(shift)
        result = fastcalc.gradient_descent(grad, np.zeros((3, 2)), n_iter=20, backend="numba").x
        np.testing.assert_array_equal(result, fastcalc.gradient_descent(
            grad, np.zeros((3, 2)), n_iter=20, backend="numpy").x)
    assert fastcalc.optim.grad_cache_info().misses == 2


# ---- auto compiles a grad only when that pays (issue 16) ----

SLIDE_3_FRESH = """
import sys, fastcalc
result = fastcalc.gradient_descent(lambda x: 2*x + 5, 0.0, lr=0.1, n_iter=100)
print(round(float(result.x), 6), "numba" in sys.modules)
"""


def test_auto_runs_the_slide_3_example_on_numpy_without_loading_numba():
    """It compiled the grad (14.5-16.4 s on a busy machine) where numpy takes milliseconds."""
    result = subprocess.run([sys.executable, "-c", SLIDE_3_FRESH], capture_output=True,
                            text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["-2.5", "False"]


@pytest.fixture
def auto_ledger(grad_cache, monkeypatch):
    """auto's record of numpy time per grad, empty; a compile priced at 1 s, a call of
    100 steps of 10 coordinates at 0.3 s."""
    monkeypatch.setattr(fastcalc.optim, "_numpy_seconds", collections.OrderedDict())
    monkeypatch.setattr(fastcalc.optim, "_COMPILE_SECONDS", 1.0)
    monkeypatch.setattr(fastcalc.optim, "_NUMPY_SECONDS_PER_STEP", 0.002)
    monkeypatch.setattr(fastcalc.optim, "_NUMPY_SECONDS_PER_COORDINATE_STEP", 0.0001)
    return grad_cache


def auto_call(grad):
    return fastcalc.gradient_descent(grad, np.linspace(-3, 3, 10), n_iter=100, backend="auto")


@requires_numba
def test_auto_compiles_once_the_numpy_time_of_a_grad_would_pass_a_compile(auto_ledger):
    expected = fastcalc.gradient_descent(lambda x: 2 * x + 5, np.linspace(-3, 3, 10),
                                         n_iter=100, backend="numpy")
    # 0.3 s, 0.6 s, 0.9 s on numpy; the fourth call would reach 1.2 s: it compiles.
    results = []
    for call, compiled in enumerate([0, 0, 0, 1, 0, 0]):
        assert compiles(lambda: results.append(auto_call(lambda x: 2 * x + 5))) == compiled, call
        assert_results_equal(results[-1], expected, DescentResult._fields)
    assert auto_ledger.info().hits == 2  # the two calls after the compiling one
    # Another grad starts on numpy again; an equal one shares the first one's account.
    assert compiles(lambda: auto_call(lambda x: 2 * x + 6)) == 0


def test_auto_s_record_keeps_no_captured_array_alive(auto_ledger):
    def capturing(array):
        return lambda x: x - array[0]

    data = np.ones(1000)
    alive = weakref.ref(data)
    auto_call(capturing(data))
    del data
    gc.collect()
    assert alive() is None


@requires_numba
def test_auto_runs_a_grad_compiled_before_on_numba(auto_ledger):
    descend(closure_factory(7.0))  # compiled by backend="numba"
    hits = auto_ledger.info().hits
    assert compiles(lambda: auto_call(closure_factory(7.0))) == 0
    assert auto_ledger.info().hits == hits + 1


@requires_numba
def test_auto_compiles_a_grad_of_one_point_that_does_not_broadcast(auto_ledger):
    """numpy calls grad on the whole batch: math.tanh of an array of 10 raises TypeError."""
    grad = lambda x: math.tanh(x) + x  # noqa: E731
    assert compiles(lambda: auto_call(grad)) == 1
    np.testing.assert_allclose(auto_call(grad).x, fastcalc.gradient_descent(
        grad, np.linspace(-3, 3, 10), n_iter=100, backend="numba").x, rtol=0, atol=0)


@requires_numba
def test_auto_reraises_numpy_s_error_when_numba_cannot_compile_grad_either(auto_ledger):
    def grad(x):
        return math.tanh(x) + UNCOMPILABLE_SETTINGS["offset"]

    with pytest.raises(TypeError, match="only (length-1|0-dimensional) arrays"):
        auto_call(grad)


def test_an_evicted_grad_is_freed(grad_cache):
    fastcalc.optim.set_grad_cache_size(2)
    first = closure_factory(1.0)
    alive = weakref.ref(first)
    descend(first)
    del first
    descend(closure_factory(2.0))
    gc.collect()
    assert alive() is not None, "held while in the cache"
    descend(closure_factory(3.0))
    gc.collect()
    assert alive() is None, "the evicted grad is still alive"
    info = fastcalc.optim.grad_cache_info()
    assert (info.size, info.maxsize, info.misses) == (2, 2, 3)
    with pytest.raises(ValueError, match="^size must be >= 1"):
        fastcalc.optim.set_grad_cache_size(0)
    with pytest.raises(TypeError, match="^size must be an integer"):
        fastcalc.optim.set_grad_cache_size(2.0)


LAMBDAS_IN_A_LOOP = """
import os, numpy as np, fastcalc
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
def factory(offset):
    return lambda x: 2 * x + offset
x0 = np.linspace(-3, 3, 100)
fastcalc.gradient_descent(lambda x: 2 * x + 5, x0, backend="numba")
before = rss()
for _ in range(200):
    fastcalc.gradient_descent(lambda x: 2 * x + 5, x0, backend="numba")
    fastcalc.gradient_descent(factory(5.0), x0, backend="numba")
print((rss() - before) / 2**20, fastcalc.optim.grad_cache_info().misses)
"""


@pytest.mark.slow
@requires_numba
def test_new_grad_objects_per_call_grow_memory_by_at_most_100_mb():
    """The issue's lambda in a loop: 1.4 s and 4.5 MB per call, never freed (219 -> 1131 MB)."""
    process = subprocess.run([sys.executable, "-c", LAMBDAS_IN_A_LOOP], capture_output=True,
                             text=True, timeout=600, check=False)
    assert process.returncode == 0, process.stderr[-2000:]
    growth, compiles = process.stdout.split()
    assert float(growth) <= 100, f"RSS grew by {growth} MB"
    assert int(compiles) == 2


def count_kernel_calls(monkeypatch):
    """A list that gets one element per kernel call of the public functions."""
    calls = []
    real = _dispatch.kernel

    def kernel(*arguments):
        found = real(*arguments)

        def spy(*values):
            calls.append(None)
            return found(*values)

        return spy

    monkeypatch.setattr(_dispatch, "kernel", kernel)
    return calls


def in_tiny_slices(monkeypatch):
    """Every call measured and cut into slices of about a microsecond."""
    monkeypatch.setattr(fastcalc.optim, "_UNMEASURED_WORK", 0)
    monkeypatch.setattr(fastcalc.optim, "_PROBE_WORK", 4)
    monkeypatch.setattr(fastcalc.optim, "_FIT_SECONDS_PER_ROW_FEATURE", 1e-3)
    monkeypatch.setattr(_slices, "SLICE_SECONDS", 1e-6)


@requires_numba
@settings(max_examples=40, deadline=None)
@given(shape=st.one_of(st.tuples(st.integers(1, 40)), st.tuples(st.integers(1, 12),
                                                                 st.integers(1, 4))),
       n_iter=st.integers(1, 40), momentum=st.sampled_from([0.0, 0.4]),
       tol=st.one_of(st.none(), st.floats(1e-3, 0.5)), history=st.booleans(),
       dtype=st.sampled_from([np.float64, np.float32]), seed=st.integers(0, 2**16))
def test_a_descent_in_slices_is_the_descent_in_one_call(shape, n_iter, momentum, tol, history,
                                                         dtype, seed):
    x0 = np.random.default_rng(seed).uniform(-1.5, 1.5, shape).astype(dtype)
    keywords = dict(momentum=momentum, tol=tol, history=history, backend="numba")
    whole = fastcalc.gradient_descent(cubic_grad, x0, 0.1, n_iter, **keywords)
    with pytest.MonkeyPatch.context() as monkeypatch:
        in_tiny_slices(monkeypatch)
        calls = count_kernel_calls(monkeypatch)
        sliced = fastcalc.gradient_descent(cubic_grad, x0, 0.1, n_iter, **keywords)
    # A compiling call, then a first tile of 4 coordinate-steps a problem, then the rest (but
    # for problems stopped by tol, which stay where they are without a call).
    assert len(calls) > 2 or n_iter * x0[0].size <= 4 or (tol and np.all(whole.converged))
    assert_results_equal(sliced, whole, DescentResult._fields)


COMPILED_FIT_BACKENDS = [name for name in ("cython", "numba")
                         if name in fastcalc.available_backends()
                         and (name == "numba" or _cython.available_isas("optim"))]


@pytest.mark.skipif(not COMPILED_FIT_BACKENDS, reason="no compiled optim kernels")
@settings(max_examples=40, deadline=None)
@given(problems=st.integers(1, 5), samples=st.integers(1, 30), features=st.integers(0, 9),
       loss=st.sampled_from(["linear", "log", "squared"]),
       batch_size=st.one_of(st.none(), st.integers(1, 12)), n_iter=st.integers(1, 30),
       dtype=st.sampled_from([np.float64, np.float32]), seed=st.integers(0, 2**16))
def test_a_fit_in_slices_is_the_fit_in_one_call(problems, samples, features, loss, batch_size,
                                                n_iter, dtype, seed):
    X, y = make_data(np.random.default_rng(seed), (problems, samples, features), loss)
    X = X.astype(dtype)
    for fit_backend in COMPILED_FIT_BACKENDS:
        keywords = dict(lr=0.05, n_iter=n_iter, batch_size=batch_size, seed=seed, l2=0.01,
                        backend=fit_backend)
        whole = fit(loss, X, y, **keywords)
        with pytest.MonkeyPatch.context() as monkeypatch:
            in_tiny_slices(monkeypatch)
            calls = count_kernel_calls(monkeypatch)
            sliced = fit(loss, X, y, **keywords)
        # Steps are cut at epochs of mini-batches.
        epoch = 1 if batch_size is None else -(-samples // min(batch_size, samples))
        assert len(calls) > 1 or problems * -(-n_iter // epoch) == 1
        assert_results_equal(sliced, whole, FitResult._fields)


def test_small_calls_run_in_one_kernel_call(monkeypatch, backend):
    """The README's examples: no measuring, no slices."""
    calls = count_kernel_calls(monkeypatch)
    if backend != "cython":
        fastcalc.gradient_descent(seed_df, 0.0, lr=0.1, n_iter=100, backend=backend)
        fastcalc.gradient_descent(seed_df, np.ones(10_000), lr=0.1, n_iter=100, backend=backend)
    X, y = make_data(np.random.default_rng(0), (100, 256, 8), "log")
    fastcalc.fit_logistic(X, y, n_iter=50, backend=backend)
    assert len(calls) == (1 if backend == "cython" else 3)


INTERRUPTED_SETUP = """
import numpy as np, fastcalc
rng = np.random.default_rng(0)
X = rng.normal(size=(4000, 256, 8))
y = X[..., 0] > 0
"""
INTERRUPTED_CALLS = {  # (backend, call): each several seconds, and each sliced its own way
    "descent numba, 10**7 scalar problems": (
        "numba", "fastcalc.gradient_descent(lambda x: 2*x + 5, np.ones(10**7), n_iter=5000, "
                 "backend='numba')"),
    "descent numba, (B, D) problems": (
        "numba", "fastcalc.gradient_descent(lambda p: 2*p + 1, np.ones((20_000, 50)), lr=0.01, "
                 "n_iter=4000, momentum=0.5, backend='numba')"),
    "descent numba, one problem of many steps": (
        "numba", "fastcalc.gradient_descent(lambda x: 2*x + 5, np.ones(1), n_iter=5 * 10**8, "
                 "tol=1e-300, backend='numba')"),
    "descent numpy": (
        "numpy", "fastcalc.gradient_descent(lambda x: 2*x + 5, np.ones(10**7), n_iter=60, "
                 "momentum=0.5, backend='numpy')"),
    "fit cython, 4000 problems": (
        "cython", "fastcalc.fit_logistic(X, y, n_iter=2000, backend='cython')"),
    "fit cython, one problem of many mini-batches": (
        "cython", "fastcalc.fit_logistic(X[0], y[0], n_iter=10**7, batch_size=32, seed=0, "
                  "backend='cython')"),
    "fit numba, 4000 problems": (
        "numba", "fastcalc.fit_logistic(X, y, n_iter=2000, backend='numba')"),
    "fit numba, one problem of many steps": (
        "numba", "fastcalc.fit_linear(X[0], X[0, :, 0], n_iter=10**7, backend='numba')"),
    "fit numpy, 1000 problems": (
        "numpy", "fastcalc.fit_logistic(X[:1000], y[:1000], n_iter=500, backend='numpy')"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", INTERRUPTED_CALLS)
def test_a_long_call_honours_ctrl_c(case):
    """The issue: 18-43 s on Numba (gradient_descent on (B, D) problems not within 90 s), 23 s
    for Cython's fit_logistic, before a Ctrl-C was taken."""
    backend, call = INTERRUPTED_CALLS[case]
    if backend not in fastcalc.available_backends() or (
            backend == "cython" and not _cython.available_isas("optim")):
        pytest.skip(f"no {backend} backend")
    assert_interrupted(INTERRUPTED_SETUP, call, case)


def test_a_descent_to_non_finite_values_warns_only_that_it_diverged(backend):
    """No numpy RuntimeWarning ("invalid value encountered in subtract") before fastcalc's."""
    if backend == "cython":
        pytest.skip("the cython backend cannot compile a user's grad")
    for starts, momentum in [(np.array([1.0, -1.0]), 0.0), (np.array([[1.0, -1.0]]), 0.5)]:
        with pytest.warns(RuntimeWarning, match="diverged") as caught:
            fastcalc.gradient_descent(lambda x: x * np.inf, starts, n_iter=3, momentum=momentum,
                                      tol=1e-3, backend=backend)
        assert [str(w.message) for w in caught if "diverged" not in str(w.message)] == []
