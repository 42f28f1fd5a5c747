"""derivative, gradient, jacobian, check_grad, integrate, normal_probability, taylor: the seed's
slides 2 and 6-9, convergence orders, oracles (scipy, closed forms), dtypes, shapes, errors."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate as scipy_integrate
from scipy import stats
from scipy.special import expit

import fastcalc
from fastcalc import Integral

# An overflow or an invalid operation (numpy's RuntimeWarning) fails any test.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

SETTINGS = settings(max_examples=30, deadline=None)
EPS64 = np.finfo(np.float64).eps


def assert_close(actual, expected, rtol, scale=None, label=""):
    """Within ``rtol`` of ``scale`` (default: the largest magnitude of ``expected``, at least 1)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{label}: shape {actual.shape} != {expected.shape}"
    if scale is None:
        scale = max(np.abs(expected).max(initial=0), 1.0)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale, err_msg=label)


def max_relative_error(actual, expected, floor=0.0):
    """``max |actual - expected| / max(|expected|, floor)``, elementwise."""
    expected = np.asarray(expected, dtype=np.float64)
    error = np.abs(np.asarray(actual, dtype=np.float64) - expected)
    return float((error / np.maximum(np.abs(expected), floor)).max())


def seed_f(x):
    """The seed's slide 2: ``x**2 + 5x + 6``."""
    return x**2 + 5 * x + 6


def seed_df(x):
    return 2 * x + 5


def textbook_sigmoid(x):
    """The seed's own sigmoid, ``1 / (1 + exp(-x))``."""
    return 1 / (1 + np.exp(-x))


def exact_sigmoid_slope(x):
    """``sigmoid'(x) = sigmoid(x) sigmoid(-x)``, accurate to a few ulp everywhere."""
    x = np.asarray(x, dtype=np.float64)
    return expit(x) * expit(-x)


def slide6_f(p):
    """The seed's slide 6: ``x**2 + 2xy + y**2`` of points ``(..., 2)``."""
    x, y = p[..., 0], p[..., 1]
    return x**2 + 2 * x * y + y**2


def polar(p):
    r, theta = p[..., 0], p[..., 1]
    return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=-1)


def normal_pdf(x):
    return np.exp(-(x**2) / 2) / np.sqrt(2 * np.pi)


# ---------------------------------------------------------------------------------------------
# 1. derivative

def test_the_seed_quadratic_by_central_differences():
    x = np.linspace(-10, 5, 100)
    slope = fastcalc.derivative(seed_f, x)
    assert slope.shape == x.shape and slope.dtype == np.float64
    # Relative to max(|f'|, 1): f' = 2x + 5 crosses 0 at x = -2.5.
    assert max_relative_error(slope, seed_df(x), floor=1.0) < 1e-8


def test_the_seed_quadratic_at_the_docstring_points():
    slope = fastcalc.derivative(seed_f, np.array([-3.0, 0.0, 2.0]))
    np.testing.assert_allclose(slope, [-1.0, 5.0, 9.0], rtol=0, atol=1e-8)


def test_sigmoid_is_accurate_to_1e_8_relative_on_minus_8_to_8():
    x = np.linspace(-8, 8, 1601)
    slope = fastcalc.derivative(textbook_sigmoid, x)
    assert max_relative_error(slope, exact_sigmoid_slope(x)) < 1e-8


def test_sigmoid_far_from_0_is_limited_by_rounding():
    # At |x| near 10 the sigmoid's slope is 4.5e-5 of its value: the central rule's rounding
    # floor eps * |f| / (h |f'|), with h = eps**(1/3) * |x| ~ 6e-5, is about
    # 2.2e-16 / (6e-5 * 4.5e-5) ~ 8e-8 at its worst and ~4e-8 as measured.  1e-7 bounds it;
    # 1e-8 does not hold there.
    x = np.linspace(-10, 10, 2001)
    error = max_relative_error(fastcalc.derivative(textbook_sigmoid, x), exact_sigmoid_slope(x))
    assert error < 1e-7


def test_five_point_is_more_accurate_than_central_on_sin():
    x = np.linspace(-3, 3, 101)
    central = np.abs(fastcalc.derivative(np.sin, x) - np.cos(x)).max()
    five = np.abs(fastcalc.derivative(np.sin, x, method="five-point") - np.cos(x)).max()
    assert five < central / 10
    assert five < 1e-11


@pytest.mark.parametrize("method", ["forward", "backward", "central", "five-point"])
def test_every_method_is_accurate_with_its_default_step(method):
    x = np.linspace(-3, 3, 61)
    tolerance = {"forward": 1e-7, "backward": 1e-7, "central": 1e-9, "five-point": 1e-11}
    assert np.abs(fastcalc.derivative(np.sin, x, method=method) - np.cos(x)).max() < (
        tolerance[method])


# The error of a rule of order p falls by 2**p when h halves, where truncation dominates
# rounding: the steps here are large enough for that (the truncation error is >= 1e-7,
# the rounding error below 1e-13).
@pytest.mark.parametrize(("method", "steps", "ratio"), [
    ("forward", (1e-2, 5e-3, 2.5e-3), 2.0),
    ("backward", (1e-2, 5e-3, 2.5e-3), 2.0),
    ("central", (1e-2, 5e-3, 2.5e-3), 4.0),
    ("five-point", (1e-1, 5e-2, 2.5e-2), 16.0),
])
def test_the_order_of_every_rule(method, steps, ratio):
    x = np.array([-2.0, 0.3, 1.1])
    errors = [np.abs(fastcalc.derivative(np.exp, x, h=h, method=method) - np.exp(x))
              for h in steps]
    for coarse, fine in zip(errors, errors[1:], strict=False):
        np.testing.assert_allclose(coarse / fine, ratio, rtol=0.1)


def test_one_sided_rules_lean_to_their_side():
    # On the convex exp, the forward difference overestimates, the backward one underestimates.
    x = np.array([-1.0, 0.0, 2.0])
    assert (fastcalc.derivative(np.exp, x, h=1e-3, method="forward") > np.exp(x)).all()
    assert (fastcalc.derivative(np.exp, x, h=1e-3, method="backward") < np.exp(x)).all()


@pytest.mark.parametrize(("method", "calls", "power"), [
    ("forward", 2, 1 / 2), ("backward", 2, 1 / 2), ("central", 2, 1 / 3),
    ("five-point", 4, 1 / 5),
])
def test_f_is_called_once_per_stencil_point_with_the_documented_step(method, calls, power):
    x = np.array([[-20.0, -0.5], [0.0, 3.0]])
    seen = []

    def f(points):
        seen.append(np.array(points))
        return points**2

    fastcalc.derivative(f, x, method=method)
    assert len(seen) == calls
    assert all(points.shape == x.shape for points in seen)
    # The stencil's points are x + k h, with h = eps**power * max(|x|, 1), up to its rounding.
    h = EPS64**power * np.maximum(np.abs(x), 1)
    offsets = sorted({float(np.median((points - x) / h)) for points in seen})
    expected = {"forward": [0, 1], "backward": [-1, 0], "central": [-1, 1],
                "five-point": [-2, -1, 1, 2]}[method]
    np.testing.assert_allclose(offsets, expected, atol=1e-6)


def test_float32_stays_float32_and_is_accurate_to_1e_3():
    x = np.linspace(-3, 3, 61, dtype=np.float32)
    slope = fastcalc.derivative(np.sin, x)
    assert slope.dtype == np.float32
    assert max_relative_error(slope, np.cos(x.astype(np.float64)), floor=1.0) < 1e-3
    x = np.linspace(-10, 5, 100).astype(np.float32)
    slope = fastcalc.derivative(seed_f, x)
    assert slope.dtype == np.float32
    assert max_relative_error(slope, seed_df(x.astype(np.float64)), floor=1.0) < 1e-3


def test_a_float32_step_is_not_the_float64_one():
    # float64's default step (6e-6 |x|) would leave float32 with a rounding error near 1e-2.
    x = np.float32(1.0)
    assert abs(float(fastcalc.derivative(np.sin, x)) - math.cos(1.0)) < 2e-4


@pytest.mark.parametrize("x", [np.arange(-3, 4), np.arange(-3, 4).astype(np.int32),
                               [-3, -2, -1, 0, 1, 2, 3], np.array([True, False])])
def test_integers_and_bools_give_float64(x):
    slope = fastcalc.derivative(seed_f, x)
    assert slope.dtype == np.float64
    assert_close(slope, seed_df(np.asarray(x, dtype=np.float64)), 1e-8)


def test_an_explicit_scalar_step_is_the_step_taken():
    # The forward difference of x**2 + 5x + 6 is exactly 2x + 5 + h.
    x = np.linspace(-4, 4, 9)
    for h in (0.25, 1e-2):
        slope = fastcalc.derivative(seed_f, x, h=h, method="forward")
        assert_close(slope, seed_df(x) + h, 1e-9)
        slope = fastcalc.derivative(seed_f, x, h=h, method="backward")
        assert_close(slope, seed_df(x) - h, 1e-9)


def test_an_explicit_step_array_broadcasts_against_x():
    x = np.linspace(-4, 4, 5)
    per_point = np.array([0.5, 0.25, 0.125, 1.0, 2.0])
    slope = fastcalc.derivative(seed_f, x, h=per_point, method="forward")
    assert_close(slope, seed_df(x) + per_point, 1e-9)
    column = np.array([[0.5], [0.01]])
    slope = fastcalc.derivative(seed_f, x, h=column, method="forward")
    assert slope.shape == (2, 5)
    assert_close(slope, seed_df(x) + column, 1e-9)


def test_the_shape_is_preserved():
    value = fastcalc.derivative(seed_f, 2.0)
    assert np.shape(value) == () and value.dtype == np.float64
    assert abs(float(value) - 9.0) < 1e-8
    x = np.linspace(-2, 2, 12).reshape(3, 4)
    slope = fastcalc.derivative(seed_f, x)
    assert slope.shape == (3, 4)
    assert_close(slope, seed_df(x), 1e-8)
    assert_close(fastcalc.derivative(seed_f, x.T), seed_df(x.T), 1e-8)  # non-contiguous
    for shape in [(0,), (2, 0), (0, 3)]:
        empty = fastcalc.derivative(seed_f, np.zeros(shape))
        assert empty.shape == shape and empty.dtype == np.float64


# ---------------------------------------------------------------------------------------------
# 2. gradient

def test_slide_6_partial_derivatives_at_1_2():
    grad = fastcalc.gradient(slide6_f, [1.0, 2.0])
    assert grad.shape == (2,)
    np.testing.assert_allclose(grad, [6.0, 6.0], rtol=0, atol=1e-8)


def slide6_grad(p):
    both = 2 * p[..., 0] + 2 * p[..., 1]
    return np.stack([both, both], axis=-1)


@pytest.mark.parametrize("shape", [(7, 2), (3, 4, 2), (1, 2), (0, 2)])
def test_gradient_of_a_batch_of_points(shape):
    x = np.random.default_rng(0).uniform(-3, 3, shape)
    grad = fastcalc.gradient(slide6_f, x)
    assert grad.shape == shape
    assert_close(grad, slide6_grad(x), 1e-8)


def test_every_point_of_a_batch_equals_its_own_call():
    x = np.random.default_rng(1).standard_normal((5, 3))

    def f(p):
        return np.sin(p[..., 0]) * p[..., 1] + np.exp(p[..., 2] / 3)

    batch = fastcalc.gradient(f, x)
    for i in range(len(x)):
        np.testing.assert_allclose(batch[i], fastcalc.gradient(f, x[i]), rtol=1e-13, atol=0)


@SETTINGS
@given(n=st.integers(1, 6), batch=st.integers(1, 5), seed=st.integers(0, 2**32 - 1),
       method=st.sampled_from(["central", "five-point"]))
def test_gradient_of_random_quadratics(n, batch, seed, method):
    rng = np.random.default_rng(seed)
    A, b, c = rng.standard_normal((n, n)), rng.standard_normal(n), rng.standard_normal()
    x = rng.uniform(-3, 3, (batch, n))

    def f(p):
        return np.einsum("...i,ij,...j->...", p, A, p) + p @ b + c

    expected = x @ (A + A.T) + b
    grad = fastcalc.gradient(f, x, method=method)
    assert grad.shape == (batch, n)
    assert_close(grad, expected, 1e-6)


def test_gradient_of_one_coordinate():
    grad = fastcalc.gradient(lambda p: p[..., 0] ** 3, [2.0])
    assert grad.shape == (1,)
    np.testing.assert_allclose(grad, [12.0], rtol=1e-8)


def test_gradient_dtypes():
    x32 = np.array([1.0, 2.0], dtype=np.float32)
    grad = fastcalc.gradient(slide6_f, x32)
    assert grad.dtype == np.float32
    np.testing.assert_allclose(grad, [6.0, 6.0], rtol=1e-3)
    assert fastcalc.gradient(slide6_f, np.array([1, 2])).dtype == np.float64


def test_gradient_with_an_explicit_step_per_coordinate():
    # Forward differences of x**2 + 2xy + y**2: d/dx is 2x + 2y + h_x exactly.
    x = np.array([1.0, 2.0])
    h = np.array([0.5, 0.25])
    grad = fastcalc.gradient(slide6_f, x, h=h, method="forward")
    np.testing.assert_allclose(grad, [6.5, 6.25], rtol=1e-12)


@pytest.mark.parametrize("x", [np.array([1.0, 2.0]), np.ones((3, 2)), np.ones((2, 2))])
def test_a_function_of_one_point_works_and_is_refused_as_vectorized(x):
    def f(p):
        return np.sum(p**2)  # no axis=-1: one number for any array

    assert_close(fastcalc.gradient(f, x), 2 * x, 1e-8)
    with pytest.raises(ValueError, match="vectorized=False"):
        fastcalc.gradient(f, x, vectorized=True)


def test_check_grad_called_as_scipy_calls_it_never_gives_a_wrong_number():
    """A function of one point that returns a plausible shape on a batch (x[0] is a row of
    it): called point by point by default, as scipy does; refused as vectorized."""
    x0 = np.array([0.3, -1.2, 2.0])

    def f(x):
        return np.sum(x**3) + x[0] * x[1]

    def grad(x):
        return 3 * x**2 + np.array([x[1], x[0], 0.0])

    assert fastcalc.check_grad(f, grad, x0) < 1e-9
    assert fastcalc.check_grad(f, lambda x: 3 * x**2, x0) > 0.05  # a wrong gradient
    assert fastcalc.check_grad(lambda x: np.sum(x**3), lambda x: 3 * x**2, x0) < 1e-9
    with pytest.raises(ValueError, match="f is not vectorized over points"):
        fastcalc.check_grad(f, grad, x0, vectorized=True)
    vectorized = fastcalc.check_grad(lambda x: np.sum(x**3, axis=-1), lambda x: 3 * x**2,
                                     np.stack([x0, -x0]), vectorized=True)
    assert vectorized.shape == (2,) and (vectorized < 1e-9).all()
    with pytest.raises(TypeError, match="vectorized must be True or False"):
        fastcalc.gradient(f, x0, vectorized="yes")


@pytest.mark.parametrize("call", [lambda: fastcalc.derivative(math.sin, np.array([1.0, 2.0])),
                                  lambda: fastcalc.integrate(math.sin, 0, 1)])
def test_a_function_of_python_numbers_is_a_type_error_naming_f(call):
    with pytest.raises(TypeError, match=r"f must take arrays of points .* np\.vectorize\(f\)"):
        call()


def test_np_vectorize_makes_a_function_of_one_point_usable():
    f = np.vectorize(lambda p: np.sum(p**2), signature="(n)->()")
    x = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0]])
    assert_close(fastcalc.gradient(f, x), 2 * x, 1e-8)


@pytest.mark.parametrize("x", [np.array([1.0, 2.0]), np.ones((4, 2))])
def test_a_vector_valued_function_points_to_jacobian(x):
    with pytest.raises(ValueError, match="jacobian"):
        fastcalc.gradient(polar, x)


# ---------------------------------------------------------------------------------------------
# 3. jacobian

def polar_jacobian(p):
    r, theta = p[..., 0], p[..., 1]
    return np.stack([np.stack([np.cos(theta), -r * np.sin(theta)], axis=-1),
                     np.stack([np.sin(theta), r * np.cos(theta)], axis=-1)], axis=-2)


def test_polar_to_cartesian():
    np.testing.assert_allclose(fastcalc.jacobian(polar, [2.0, 0.0]), [[1.0, 0.0], [0.0, 2.0]],
                               rtol=0, atol=1e-8)
    points = np.column_stack([np.linspace(0.5, 3, 6), np.linspace(-3, 3, 6)])
    jac = fastcalc.jacobian(polar, points)
    assert jac.shape == (6, 2, 2)
    assert_close(jac, polar_jacobian(points), 1e-8)


@pytest.mark.parametrize("batch", [(), (5,), (2, 3)])
def test_the_jacobian_of_a_linear_map_is_its_matrix(batch):
    rng = np.random.default_rng(2)
    A = rng.standard_normal((3, 4))
    x = rng.standard_normal((*batch, 4))
    jac = fastcalc.jacobian(lambda p: p @ A.T, x)
    assert jac.shape == (*batch, 3, 4)
    assert_close(jac, np.broadcast_to(A, jac.shape), 1e-8)


def test_a_jacobian_with_one_output_is_the_gradient():
    x = np.random.default_rng(3).standard_normal((4, 2))
    jac = fastcalc.jacobian(lambda p: slide6_f(p)[..., None], x)
    assert jac.shape == (4, 1, 2)
    np.testing.assert_allclose(jac[:, 0, :], fastcalc.gradient(slide6_f, x), rtol=1e-13)


def test_jacobian_needs_a_vector_per_point():
    with pytest.raises(ValueError, match="vector"):
        fastcalc.jacobian(slide6_f, [1.0, 2.0])


# ---------------------------------------------------------------------------------------------
# 4. check_grad and the seed's slide 7

def sum_sin(p):
    return np.sum(np.sin(p), axis=-1)


def test_a_correct_gradient_passes_and_is_a_python_float():
    result = fastcalc.check_grad(sum_sin, np.cos, [0.5, 1.0, 2.0])
    assert type(result) is float
    assert 0 <= result < 1e-8
    result = fastcalc.check_grad(slide6_f, slide6_grad, [1.0, 2.0])
    assert type(result) is float and result < 1e-8


@pytest.mark.parametrize("wrong", [lambda p: 2 * np.cos(p), lambda p: -np.cos(p), np.sin,
                                   lambda p: np.cos(p) + [0.0, 0.0, 0.5]])
def test_a_wrong_gradient_fails(wrong):
    assert fastcalc.check_grad(sum_sin, wrong, [0.5, 1.0, 2.0]) > 0.1


def test_the_documented_relative_error():
    # grad is 2x the truth: max |2g - g| / max |2g| = 1/2; the opposite sign: 2|g| / |g| = 2.
    x = [0.5, 1.0, 2.0]
    assert abs(fastcalc.check_grad(sum_sin, lambda p: 2 * np.cos(p), x) - 0.5) < 1e-8
    assert abs(fastcalc.check_grad(sum_sin, lambda p: -np.cos(p), x) - 2.0) < 1e-8


def test_check_grad_of_a_batch_flags_the_wrong_points():
    x = np.random.default_rng(4).uniform(-2, 2, (8, 3))

    def grad(p):  # wrong (doubled) where the first coordinate is positive
        return np.cos(p) * np.where(p[..., :1] > 0, 2.0, 1.0)

    result = fastcalc.check_grad(sum_sin, grad, x)
    assert isinstance(result, np.ndarray) and result.shape == (8,)
    wrong = x[:, 0] > 0
    assert 0 < wrong.sum() < 8
    assert (result[wrong] > 0.1).all() and (result[~wrong] < 1e-8).all()
    assert fastcalc.check_grad(sum_sin, np.cos, x.reshape(2, 4, 3)).shape == (2, 4)


def test_a_zero_gradient_at_both_gives_0():
    assert fastcalc.check_grad(lambda p: 0 * p[..., 0], np.zeros_like, [1.0, -2.0]) == 0.0
    # x**2 + y**2 at its minimum: the central difference is exactly 0 as well.
    result = fastcalc.check_grad(lambda p: np.sum(p**2, axis=-1), lambda p: 2 * p,
                                 np.zeros((3, 2)))
    np.testing.assert_array_equal(result, np.zeros(3))


def test_check_grad_in_float32():
    x = np.array([0.5, 1.0, 2.0], dtype=np.float32)
    assert fastcalc.check_grad(sum_sin, np.cos, x) < 1e-3
    assert fastcalc.check_grad(sum_sin, lambda p: 2 * np.cos(p), x) > 0.1


SLIDE_7 = {"x": 2.0, "w1": 3.0, "w2": 4.0}


def seed_sigmoid_derivative(z):
    return textbook_sigmoid(z) * (1 - textbook_sigmoid(z))


def test_slide_7_chain_rule_against_finite_differences():
    x, w1, w2 = SLIDE_7["x"], SLIDE_7["w1"], SLIDE_7["w2"]
    # The seed's own numpy formulas.
    seed_dw2 = seed_sigmoid_derivative(w2 * textbook_sigmoid(w1 * x)) * textbook_sigmoid(w1 * x)
    seed_dw1 = (seed_sigmoid_derivative(w2 * textbook_sigmoid(w1 * x)) * w2
                * seed_sigmoid_derivative(w1 * x) * x)
    # The same chain rule with fastcalc's sigmoid and sigmoid_derivative.
    hidden = fastcalc.sigmoid(w1 * x)
    dw2 = fastcalc.sigmoid_derivative(w2 * hidden) * hidden
    dw1 = fastcalc.sigmoid_derivative(w2 * hidden) * w2 * fastcalc.sigmoid_derivative(w1 * x) * x
    assert abs(dw2 - seed_dw2) <= 1e-14 * abs(seed_dw2)
    assert abs(dw1 - seed_dw1) <= 1e-13 * abs(seed_dw1)
    # Numerically, y as a function of one weight at a time.
    numerical_dw2 = fastcalc.derivative(lambda w: textbook_sigmoid(w * textbook_sigmoid(w1 * x)),
                                        w2)
    numerical_dw1 = fastcalc.derivative(lambda w: textbook_sigmoid(w2 * textbook_sigmoid(w * x)),
                                        w1)
    for closed, numerical in ((dw2, numerical_dw2), (dw1, numerical_dw1),
                              (seed_dw2, numerical_dw2), (seed_dw1, numerical_dw1)):
        assert abs(numerical - closed) <= 1e-8 * abs(closed)
    # The values the seed prints.
    assert abs(dw2 - 0.017787797924672066) < 1e-15
    assert abs(dw1 - 0.00035186016843267315) < 1e-16


def test_slide_7_as_a_gradient_check():
    x = SLIDE_7["x"]

    def y(w):
        return textbook_sigmoid(w[..., 1] * textbook_sigmoid(w[..., 0] * x))

    def chain_rule(w):
        hidden = fastcalc.sigmoid(w[..., 0] * x)
        outer = fastcalc.sigmoid_derivative(w[..., 1] * hidden)
        return np.stack([outer * w[..., 1] * fastcalc.sigmoid_derivative(w[..., 0] * x) * x,
                         outer * hidden], axis=-1)

    weights = np.array([[3.0, 4.0], [0.5, -1.0], [-1.0, 2.0]])
    assert (fastcalc.check_grad(y, chain_rule, weights) < 1e-7).all()

    def forgot_inner(w):  # dy/dw1 without the inner sigmoid's slope
        hidden = fastcalc.sigmoid(w[..., 0] * x)
        outer = fastcalc.sigmoid_derivative(w[..., 1] * hidden)
        return np.stack([outer * w[..., 1] * x, outer * hidden], axis=-1)

    assert (fastcalc.check_grad(y, forgot_inner, weights) > 0.1).all()


# ---------------------------------------------------------------------------------------------
# 5. integrate

# (name, f, a, b, the exact integral)
INTEGRANDS = [
    ("normal pdf", normal_pdf, -1.0, 1.0, math.erf(1 / math.sqrt(2))),
    ("exp", np.exp, 0.0, 1.0, math.e - 1),
    ("sin", np.sin, 0.0, math.pi, 2.0),
    ("1/(1+x^2)", lambda x: 1 / (1 + x**2), 0.0, 1.0, math.pi / 4),
    ("cos", np.cos, -3.0, 7.0, math.sin(7) + math.sin(3)),
    ("polynomial", lambda x: 3 * x**5 - 2 * x**3 + x - 7, -2.0, 3.0, 267.5),
]
INTEGRAND_IDS = [case[0] for case in INTEGRANDS]
METHODS = ["simpson", "trapezoid", "gauss"]


@pytest.fixture(scope="module")
def default_integrals():
    """``{(integrand, method): Integral}`` with the default n: the trapezoid's takes seconds."""
    return {(name, method): fastcalc.integrate(f, a, b, method=method)
            for name, f, a, b, _ in INTEGRANDS for method in METHODS}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("name", "f", "a", "b", "exact"), INTEGRANDS, ids=INTEGRAND_IDS)
def test_integrate_agrees_with_scipy_quad(default_integrals, name, f, a, b, exact, method):
    reference, reference_error = scipy_integrate.quad(f, a, b, epsabs=1e-13, epsrel=1e-13)
    assert reference_error < 1e-11
    result = default_integrals[name, method]
    assert isinstance(result, Integral)
    assert type(result.value) is float and type(result.error) is float
    assert abs(result.value - reference) <= 1e-10 * max(abs(reference), 1)
    value, error = result  # it unpacks like quad's result
    assert (value, error) == (result.value, result.error)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("name", "f", "a", "b", "exact"), INTEGRANDS, ids=INTEGRAND_IDS)
def test_the_error_estimate_bounds_the_error(default_integrals, name, f, a, b, exact, method):
    value, estimate = default_integrals[name, method]
    actual = abs(value - exact)
    scale = max(abs(exact), 1)
    # The exact value is itself rounded: allow a few ulp of it.
    assert actual <= 10 * estimate + 4 * EPS64 * scale
    # n=None aims at an estimate below 1e-12 relative (absolute below 1).
    assert 0 <= estimate <= 1e-11 * scale


@pytest.mark.parametrize("n", range(1, 9))
def test_gauss_is_exact_for_polynomials_of_degree_2n_minus_1(n):
    rng = np.random.default_rng(n)
    a, b = -0.7, 1.3
    exact_rule = np.polynomial.Polynomial(rng.standard_normal(2 * n))
    antiderivative = exact_rule.integ()
    value = fastcalc.integrate(exact_rule, a, b, method="gauss", n=n).value
    exact = antiderivative(b) - antiderivative(a)
    assert abs(value - exact) <= 1e-13 * max(abs(exact), 1)
    # One degree more is not integrated exactly: x**(2n) leaves an error of ~3e-6 or more.
    beyond = np.polynomial.Polynomial.basis(2 * n)
    value = fastcalc.integrate(beyond, a, b, method="gauss", n=n).value
    exact = beyond.integ()(b) - beyond.integ()(a)
    assert abs(value - exact) > 1e-6


def test_the_smallest_rules_are_exact_for_their_degree():
    cubic = np.polynomial.Polynomial([1.0, -2.0, 0.5, 3.0])
    exact = cubic.integ()(2.0) - cubic.integ()(-1.0)
    assert abs(fastcalc.integrate(cubic, -1.0, 2.0, n=2).value - exact) < 1e-13
    line = np.polynomial.Polynomial([1.0, -2.0])
    exact = line.integ()(2.0) - line.integ()(-1.0)
    assert abs(fastcalc.integrate(line, -1.0, 2.0, n=1, method="trapezoid").value - exact) < 1e-14


@pytest.mark.parametrize(("method", "n"), [("simpson", None), ("gauss", None), ("simpson", 64),
                                           ("trapezoid", 64), ("gauss", 12)])
def test_integrate_is_vectorized_over_the_bounds(method, n):
    a = np.array([[-1.0], [0.0], [0.5]])
    b = np.array([0.0, 1.0, 2.0, -3.0])
    result = fastcalc.integrate(np.cos, a, b, method=method, n=n)
    assert result.value.shape == (3, 4) and result.error.shape == (3, 4)
    assert result.value.dtype == np.float64
    if n is None:
        assert_close(result.value, np.sin(b) - np.sin(a), 1e-10)
    for i in range(3):
        for j in range(4):
            single = fastcalc.integrate(np.cos, a[i, 0], b[j], method=method, n=n)
            # With n=None the batch runs until every entry's estimate is small: its n may be
            # larger than an entry's own; with an explicit n it is the same computation.
            tolerance = 1e-11 if n is None else 1e-14
            assert abs(result.value[i, j] - single.value) <= tolerance * max(abs(single.value), 1)
            if n is not None:
                assert abs(result.error[i, j] - single.error) <= 1e-14 + 1e-10 * single.error


def test_f_is_called_with_every_integral_at_once():
    shapes = []

    def f(x):
        shapes.append(x.shape)
        return np.cos(x)

    fastcalc.integrate(f, np.zeros((2, 3)), 1.0, method="gauss", n=10)
    # The rule with n and the one with n / 2 for the estimate: two calls, not one per integral.
    assert shapes == [(2, 3, 10), (2, 3, 5)]


@pytest.mark.parametrize("method", METHODS)
def test_reversed_bounds_give_the_negative(method):
    forward = fastcalc.integrate(normal_pdf, -1.0, 2.0, method=method, n=16)
    backward = fastcalc.integrate(normal_pdf, 2.0, -1.0, method=method, n=16)
    assert backward.value == -forward.value and forward.value > 0
    assert backward.error == forward.error
    both = fastcalc.integrate(np.exp, [0.0, 1.0], [1.0, 0.0], method=method)
    assert both.value[1] == pytest.approx(-both.value[0], rel=1e-14)
    assert both.value[0] == pytest.approx(math.e - 1, rel=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_equal_bounds_give_0(method):
    assert fastcalc.integrate(np.exp, 2.0, 2.0, method=method) == (0.0, 0.0)
    result = fastcalc.integrate(np.exp, [0.0, 1.0, -3.0], [1.0, 1.0, -3.0], method=method)
    np.testing.assert_array_equal(result.value[1:], [0.0, 0.0])
    np.testing.assert_array_equal(result.error[1:], [0.0, 0.0])
    assert result.value[0] == pytest.approx(math.e - 1, rel=1e-10)
    if method == "gauss":  # equal infinite bounds are an empty interval, not the whole line
        assert fastcalc.integrate(normal_pdf, np.inf, np.inf, method=method) == (0.0, 0.0)
        result = fastcalc.integrate(normal_pdf, [-np.inf, -np.inf], [-np.inf, np.inf],
                                    method=method)
        np.testing.assert_array_equal(result.error[0], 0.0)
        np.testing.assert_allclose(result.value, [0.0, 1.0], rtol=0, atol=1e-10)


@pytest.mark.parametrize(("f", "a", "b", "exact"), [
    (normal_pdf, -np.inf, np.inf, 1.0),
    (normal_pdf, 0.0, np.inf, 0.5),
    (normal_pdf, -np.inf, 0.0, 0.5),
    (normal_pdf, -np.inf, 1.0, stats.norm.cdf(1.0)),
    (normal_pdf, 3.0, np.inf, stats.norm.sf(3.0)),
    (lambda x: np.exp(-x), 0.0, np.inf, 1.0),
    (lambda x: np.exp(-x), np.inf, 0.0, -1.0),
    (lambda x: 1 / (1 + x**2), -np.inf, np.inf, math.pi),
], ids=["pdf (-inf, inf)", "pdf (0, inf)", "pdf (-inf, 0)", "pdf (-inf, 1)", "pdf (3, inf)",
        "exp(-x) (0, inf)", "exp(-x) (inf, 0)", "1/(1+x^2) (-inf, inf)"])
def test_infinite_bounds_with_gauss(f, a, b, exact):
    value, error = fastcalc.integrate(f, a, b, method="gauss")
    assert abs(value - exact) <= 1e-10 * max(abs(exact), 1)
    assert math.isfinite(error)


def test_infinite_bounds_in_a_batch():
    a = np.array([-np.inf, -1.0, 0.0, np.inf])
    b = np.array([np.inf, 1.0, np.inf, np.inf])
    value, _ = fastcalc.integrate(normal_pdf, a, b, method="gauss")
    expected = [1.0, math.erf(1 / math.sqrt(2)), 0.5, 0.0]
    np.testing.assert_allclose(value, expected, rtol=0, atol=1e-10)


def composite(method, f, a, b, n):
    """The composite rule with n intervals (nodes for Gauss), written out."""
    if method == "gauss":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        return (b - a) / 2 * np.sum(weights * f(a + (b - a) * (nodes + 1) / 2))
    x = np.linspace(a, b, n + 1)
    if method == "trapezoid":
        return scipy_integrate.trapezoid(f(x), x)
    return scipy_integrate.simpson(f(x), x=x)


@pytest.mark.parametrize(("method", "n", "coarse", "divisor"), [
    ("simpson", 8, 4, 15), ("simpson", 32, 16, 15), ("simpson", 4, 2, 15),
    ("trapezoid", 8, 4, 3), ("trapezoid", 2, 1, 3), ("gauss", 8, 4, 1), ("gauss", 2, 1, 1),
])
def test_an_explicit_n_gives_the_documented_estimate(method, n, coarse, divisor):
    a, b = -0.5, 2.0
    value, error = fastcalc.integrate(np.exp, a, b, method=method, n=n)
    fine = composite(method, np.exp, a, b, n)
    assert abs(value - fine) <= 1e-14 * abs(fine)
    expected = abs(fine - composite(method, np.exp, a, b, coarse)) / divisor
    assert error == pytest.approx(expected, rel=1e-8)


@pytest.mark.parametrize(("method", "n"), [("simpson", 2), ("trapezoid", 1), ("gauss", 1)])
def test_the_smallest_n_has_no_error_estimate(method, n):
    value, error = fastcalc.integrate(np.exp, -0.5, 2.0, method=method, n=n)
    assert math.isnan(error)
    assert abs(value - composite(method, np.exp, -0.5, 2.0, n)) < 1e-13
    batch = fastcalc.integrate(np.exp, [0.0, 1.0], 2.0, method=method, n=n)
    assert np.isnan(batch.error).all() and np.isfinite(batch.value).all()


def test_the_gauss_rule_with_one_node_is_the_midpoint():
    value, _ = fastcalc.integrate(np.exp, 0.0, 2.0, method="gauss", n=1)
    assert value == pytest.approx(2 * math.e, rel=1e-15)


def test_float32_bounds_integrate_in_float32():
    a = np.zeros(2, dtype=np.float32)
    value, error = fastcalc.integrate(np.sin, a, np.float32(1.0))
    assert value.dtype == np.float32 and error.dtype == np.float32
    np.testing.assert_allclose(value, 1 - math.cos(1.0), rtol=1e-6)
    assert fastcalc.integrate(np.sin, np.zeros(2, dtype=int), 1).value.dtype == np.float64


@pytest.mark.parametrize("method", ["simpson", "trapezoid"])
def test_integrate_warns_when_it_stops_above_its_tolerance(method):
    # sqrt's derivative is infinite at 0: the error falls as n**-1.5 only.
    with pytest.warns(RuntimeWarning, match=f"integrate: {method} with .* estimates an error"):
        value, error = fastcalc.integrate(np.sqrt, 0, 1, method=method)
    assert 1e-12 < error < 1e-9 and abs(value - 2 / 3) < 1e-9


def test_float32_stops_at_its_own_tolerance():
    # float32 aims at an estimate below 1.2e-6 relative, not float64's 1e-12: the trapezoid
    # gets there with 256 intervals, where 1e-12 would take it to 2**22.
    nodes = []

    def f(x):
        nodes.append(x.shape[-1])
        return np.sin(x)

    value, error = fastcalc.integrate(f, np.float32(0.0), np.float32(1.0), method="trapezoid")
    assert max(nodes) <= 1025
    assert error <= 1.2e-6 and abs(value - (1 - math.cos(1.0))) < 2e-6


# ---------------------------------------------------------------------------------------------
# 6. normal_probability

def test_slide_8_probability_within_one_sigma():
    probability = fastcalc.normal_probability(-1, 1)
    assert f"{probability:.4f}" == "0.6827"
    assert f"P(-1 < X < 1) = {probability:.4f}" == "P(-1 < X < 1) = 0.6827"
    assert abs(probability - math.erf(1 / math.sqrt(2))) < 1e-15
    # The seed's own computation, to the last bits.
    assert abs(probability - (stats.norm.cdf(1, 0, 1) - stats.norm.cdf(-1, 0, 1))) < 1e-15
    assert f"{fastcalc.normal_probability(-2, 2):.4f}" == "0.9545"


@SETTINGS
@given(a=st.floats(-12, 12), width=st.floats(0, 15), mu=st.floats(-3, 3),
       sigma=st.floats(0.05, 5))
def test_normal_probability_equals_scipy(a, width, mu, sigma):
    b = a + width
    expected = stats.norm.cdf(b, mu, sigma) - stats.norm.cdf(a, mu, sigma)
    probability = fastcalc.normal_probability(a, b, mu, sigma)
    assert abs(probability - expected) <= 1e-12
    assert 0 <= probability <= 1


@SETTINGS
@given(a=st.floats(0, 35), width=st.floats(0, 5))
def test_normal_probability_keeps_its_relative_accuracy_in_both_tails(a, width):
    b = a + width
    expected = stats.norm.sf(a) - stats.norm.sf(b)
    assert fastcalc.normal_probability(a, b) == pytest.approx(expected, rel=1e-10, abs=1e-300)
    assert fastcalc.normal_probability(-b, -a) == pytest.approx(expected, rel=1e-10, abs=1e-300)


def test_normal_probability_broadcasts_mu_and_sigma():
    a, b = np.array([-1.0, 0.0]), np.array([1.0, 2.0])
    mu, sigma = np.array([[0.0], [1.0], [-2.0]]), np.array([1.0, 3.0])
    probability = fastcalc.normal_probability(a, b, mu, sigma)
    assert probability.shape == (3, 2)
    expected = stats.norm.cdf(b, mu, sigma) - stats.norm.cdf(a, mu, sigma)
    np.testing.assert_allclose(probability, expected, rtol=0, atol=1e-13)
    for i in range(3):
        for j in range(2):
            single = fastcalc.normal_probability(a[j], b[j], mu[i, 0], sigma[j])
            assert probability[i, j] == single


def test_normal_probability_with_infinite_bounds():
    p = fastcalc.normal_probability
    assert p(-np.inf, np.inf) == 1.0
    assert p(-np.inf, 0.0) == 0.5 and p(0.0, np.inf) == 0.5
    assert p(1.0, np.inf) == pytest.approx(stats.norm.sf(1.0), rel=1e-14)
    assert p(-np.inf, -1.0) == pytest.approx(stats.norm.cdf(-1.0), rel=1e-14)
    assert p(-np.inf, 3.0, 3.0, 2.0) == 0.5
    assert p(np.inf, np.inf) == 0.0 and p(-np.inf, -np.inf) == 0.0
    np.testing.assert_allclose(p([-np.inf, -1.0], [1.0, np.inf]),
                               [stats.norm.cdf(1.0), stats.norm.sf(-1.0)], rtol=1e-14)


def test_normal_probability_far_in_the_tail():
    expected = stats.norm.sf(30) - stats.norm.sf(31)
    assert expected > 0
    # The seed's difference of CDFs rounds both to 1 and gives 0.
    assert stats.norm.cdf(31) - stats.norm.cdf(30) == 0
    assert fastcalc.normal_probability(30, 31) == pytest.approx(expected, rel=1e-10)
    assert fastcalc.normal_probability(-31, -30) == pytest.approx(expected, rel=1e-10)
    # The same event, shifted and scaled.
    assert fastcalc.normal_probability(305, 315, 5, 10) == pytest.approx(expected, rel=1e-10)


def test_normal_probability_dtypes():
    p32 = fastcalc.normal_probability(np.float32(-1), np.float32(1))
    assert p32.dtype == np.float32 and abs(p32 - 0.6826895) < 1e-6
    arrays = fastcalc.normal_probability(np.array([-1, -2], np.float32), np.float32(2), 0.0, 1.0)
    assert arrays.dtype == np.float32 and arrays.shape == (2,)
    assert fastcalc.normal_probability(-1, 1).dtype == np.float64
    assert fastcalc.normal_probability(np.float32(-1), 1.0, np.float64(0.0)).dtype == np.float64


# ---------------------------------------------------------------------------------------------
# 7. taylor and exp_taylor

@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), degree=st.integers(0, 12), x0=st.floats(-2, 2))
def test_taylor_is_horner_of_polyval(seed, degree, x0):
    rng = np.random.default_rng(seed)
    coeffs = rng.standard_normal(degree + 1)
    x = rng.uniform(-3, 3, 17)
    value = fastcalc.taylor(coeffs, x, x0)
    expected = np.polynomial.polynomial.polyval(x - x0, coeffs)
    # Relative to sum |c_k| |x - x0|**k, the condition number's numerator.
    scale = np.polynomial.polynomial.polyval(np.abs(x - x0), np.abs(coeffs))
    assert value.shape == x.shape
    np.testing.assert_allclose(value, expected, rtol=0, atol=1e-13 * scale.max())


def test_taylor_docstring_example_and_broadcasting():
    np.testing.assert_array_equal(fastcalc.taylor([1.0, 2.0, 3.0], [0.0, 1.0, 2.0]),
                                  [1.0, 6.0, 17.0])
    x0 = np.array([[0.0], [1.0]])
    value = fastcalc.taylor([1.0, 2.0, 3.0], [0.0, 1.0, 2.0], x0)
    assert value.shape == (2, 3)
    np.testing.assert_array_equal(value, [[1.0, 6.0, 17.0], [2.0, 1.0, 6.0]])
    np.testing.assert_array_equal(fastcalc.taylor([3.0], [1.0, 2.0]), [3.0, 3.0])
    assert np.shape(fastcalc.taylor([1.0, 1.0], 2.0)) == ()


def seed_taylor_series(x, n):
    """The seed's slide 9, with math.factorial for NumPy 2's removed np.math.factorial."""
    return sum(np.power(x, i) / math.factorial(i) for i in range(n))


@pytest.mark.parametrize("n", range(1, 21))
def test_exp_taylor_is_the_seed_taylor_series(n):
    x = np.linspace(-5, 5, 21)
    expected = seed_taylor_series(x, n)
    value = fastcalc.exp_taylor(x, n)
    assert value.shape == x.shape and value.dtype == np.float64
    # Relative to max(|value|, 1): the n=2 polynomial 1 + x is 0 at x = -1.
    assert max_relative_error(value, expected, floor=1.0) < 1e-14


def test_exp_taylor_converges_to_e():
    assert abs(fastcalc.exp_taylor(1.0, 25) - math.e) <= 1e-15
    assert abs(fastcalc.exp_taylor(1.0, 5) - 65 / 24) <= 1e-15
    assert abs(fastcalc.exp_taylor(1.0, 10) - math.e) > 1e-7  # 10 terms are not enough


def test_exp_taylor_with_200_terms_does_not_overflow():
    # 200! overflows float64 (170! is the largest); the coefficients 1/k! must not.
    x = np.array([-1.0, 0.0, 1.0, 5.0, 10.0, 30.0])
    value = fastcalc.exp_taylor(x, 200)
    assert np.isfinite(value).all()
    np.testing.assert_allclose(value, np.exp(x), rtol=1e-13)
    assert np.isfinite(fastcalc.exp_taylor(np.float32(3.0), 200))


@pytest.mark.parametrize("call", [
    lambda x: fastcalc.derivative(np.sin, x), lambda x: fastcalc.taylor(np.ones(2, x.dtype), x),
    lambda x: fastcalc.exp_taylor(x, 4), lambda x: fastcalc.normal_probability(x, 2.0)],
    ids=["derivative", "taylor", "exp_taylor", "normal_probability"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_a_scalar_gives_a_numpy_scalar_of_its_dtype(call, dtype):
    result = call(dtype(0.5))
    assert isinstance(result, np.generic) and result.dtype == dtype


def test_taylor_and_exp_taylor_dtypes():
    x32 = np.linspace(-1, 1, 5, dtype=np.float32)
    assert fastcalc.exp_taylor(x32, 12).dtype == np.float32
    np.testing.assert_allclose(fastcalc.exp_taylor(x32, 12), np.exp(x32), rtol=1e-6)
    assert fastcalc.exp_taylor(np.float32(1.0), 12).dtype == np.float32
    assert fastcalc.exp_taylor(np.arange(3), 5).dtype == np.float64
    assert fastcalc.taylor(np.ones(3, np.float32), x32).dtype == np.float32
    assert fastcalc.taylor(np.ones(3, np.float32), x32, 0.5).dtype == np.float32  # weak x0
    assert fastcalc.taylor(np.ones(3), x32).dtype == np.float64
    assert fastcalc.taylor([1, 2], [1, 2]).dtype == np.float64


# ---------------------------------------------------------------------------------------------
# 8. bad input

def point_sum(p):
    return np.sum(p, axis=-1)


BAD_CALLS = [
    # not callable
    ("derivative f", lambda: fastcalc.derivative(3.0, 1.0), TypeError, r"\bf\b.*callable"),
    ("gradient f", lambda: fastcalc.gradient("sin", [1.0]), TypeError, r"\bf\b.*callable"),
    ("jacobian f", lambda: fastcalc.jacobian(None, [1.0]), TypeError, r"\bf\b.*callable"),
    ("check_grad grad", lambda: fastcalc.check_grad(point_sum, 1, [1.0]), TypeError,
     r"\bgrad\b.*callable"),
    ("check_grad f", lambda: fastcalc.check_grad(1, np.ones_like, [1.0]), TypeError,
     r"\bf\b.*callable"),
    ("integrate f", lambda: fastcalc.integrate(0, 0, 1), TypeError, r"\bf\b.*callable"),
    # the step
    ("h=0", lambda: fastcalc.derivative(np.sin, 1.0, h=0), ValueError, r"\bh\b"),
    ("h<0", lambda: fastcalc.derivative(np.sin, 1.0, h=-1e-3), ValueError, r"\bh\b"),
    ("h=nan", lambda: fastcalc.derivative(np.sin, 1.0, h=np.nan), ValueError, r"\bh\b"),
    ("h=inf", lambda: fastcalc.derivative(np.sin, 1.0, h=np.inf), ValueError, r"\bh\b"),
    ("one h<0", lambda: fastcalc.derivative(np.sin, [1.0, 2.0], h=[1e-3, -1e-3]), ValueError,
     r"\bh\b"),
    ("h below spacing", lambda: fastcalc.derivative(np.sin, 1e20, h=1e-10), ValueError,
     r"\bh\b"),
    ("gradient h=0", lambda: fastcalc.gradient(point_sum, [1.0, 2.0], h=0), ValueError,
     r"\bh\b"),
    ("jacobian h<0", lambda: fastcalc.jacobian(polar, [1.0, 2.0], h=-1.0), ValueError,
     r"\bh\b"),
    ("check_grad h=nan", lambda: fastcalc.check_grad(point_sum, np.ones_like, [1.0], h=np.nan),
     ValueError, r"\bh\b"),
    # n
    ("integrate n=0", lambda: fastcalc.integrate(np.sin, 0, 1, n=0), ValueError, r"\bn\b"),
    ("integrate n<0", lambda: fastcalc.integrate(np.sin, 0, 1, n=-4, method="gauss"),
     ValueError, r"\bn\b"),
    ("integrate n float", lambda: fastcalc.integrate(np.sin, 0, 1, n=8.0), ValueError, r"\bn\b"),
    ("integrate n bool", lambda: fastcalc.integrate(np.sin, 0, 1, n=True, method="gauss"),
     ValueError, r"\bn\b"),
    ("simpson odd n", lambda: fastcalc.integrate(np.sin, 0, 1, n=7), ValueError,
     r"\bn\b.*even"),
    ("exp_taylor n=0", lambda: fastcalc.exp_taylor(1.0, 0), ValueError, r"\bn\b"),
    ("exp_taylor n<0", lambda: fastcalc.exp_taylor(1.0, -3), ValueError, r"\bn\b"),
    ("exp_taylor n float", lambda: fastcalc.exp_taylor(1.0, 2.5), ValueError, r"\bn\b"),
    # method
    ("derivative method", lambda: fastcalc.derivative(np.sin, 1.0, method="centered"),
     ValueError, "method"),
    ("gradient method", lambda: fastcalc.gradient(point_sum, [1.0], method="five_point"),
     ValueError, "method"),
    ("integrate method", lambda: fastcalc.integrate(np.sin, 0, 1, method="romberg"),
     ValueError, "method"),
    # bounds
    ("simpson a=-inf", lambda: fastcalc.integrate(np.sin, -np.inf, 1), ValueError, r"\ba\b"),
    ("simpson b=inf", lambda: fastcalc.integrate(np.sin, 0, np.inf), ValueError, r"\bb\b"),
    ("trapezoid a=inf", lambda: fastcalc.integrate(np.sin, [0, np.inf], 1, method="trapezoid"),
     ValueError, r"\ba\b"),
    ("trapezoid b=-inf", lambda: fastcalc.integrate(np.sin, 0, -np.inf, method="trapezoid"),
     ValueError, r"\bb\b"),
    ("integrate a=nan", lambda: fastcalc.integrate(np.sin, np.nan, 1), ValueError, r"\ba\b"),
    ("gauss b=nan", lambda: fastcalc.integrate(np.sin, 0, [1, np.nan], method="gauss"),
     ValueError, r"\bb\b"),
    ("normal a=nan", lambda: fastcalc.normal_probability(np.nan, 1), ValueError, r"\ba\b"),
    ("normal b=nan", lambda: fastcalc.normal_probability(0, np.nan), ValueError, r"\bb\b"),
    ("normal a>b", lambda: fastcalc.normal_probability(1, 0), ValueError, r"\ba\b.*\bb\b"),
    ("normal one a>b", lambda: fastcalc.normal_probability([0, 2], [1, 1]), ValueError,
     r"\ba\b.*\bb\b"),
    # sigma and mu
    ("sigma=0", lambda: fastcalc.normal_probability(-1, 1, sigma=0), ValueError, "sigma"),
    ("sigma<0", lambda: fastcalc.normal_probability(-1, 1, sigma=-1.0), ValueError, "sigma"),
    ("one sigma<0", lambda: fastcalc.normal_probability(-1, 1, sigma=[1.0, -1.0]), ValueError,
     "sigma"),
    ("sigma=inf", lambda: fastcalc.normal_probability(-1, 1, sigma=np.inf), ValueError,
     "sigma"),
    ("sigma=nan", lambda: fastcalc.normal_probability(-1, 1, sigma=np.nan), ValueError,
     "sigma"),
    ("mu=nan", lambda: fastcalc.normal_probability(-1, 1, mu=np.nan), ValueError, r"\bmu\b"),
    ("mu=inf", lambda: fastcalc.normal_probability(-1, 1, mu=np.inf), ValueError, r"\bmu\b"),
    # complex and non-numeric input
    ("derivative x complex", lambda: fastcalc.derivative(np.sin, 1j), TypeError, r"\bx\b"),
    ("derivative x str", lambda: fastcalc.derivative(np.sin, "1.0"), TypeError, r"\bx\b"),
    ("gradient x complex", lambda: fastcalc.gradient(point_sum, [1j, 2.0]), TypeError,
     r"\bx\b"),
    ("check_grad x complex", lambda: fastcalc.check_grad(point_sum, np.ones_like, [1j]),
     TypeError, r"\bx\b"),
    ("integrate a complex", lambda: fastcalc.integrate(np.sin, 1j, 2), TypeError, r"\ba\b"),
    ("integrate b complex", lambda: fastcalc.integrate(np.sin, 0, [1j]), TypeError, r"\bb\b"),
    ("normal sigma complex", lambda: fastcalc.normal_probability(-1, 1, 0, 1 + 1j), TypeError,
     "sigma"),
    ("exp_taylor x complex", lambda: fastcalc.exp_taylor(1j, 3), TypeError, r"\bx\b"),
    ("taylor x complex", lambda: fastcalc.taylor([1.0, 2.0], 1j), TypeError, r"\bx\b"),
    ("taylor coeffs complex", lambda: fastcalc.taylor([1j], 1.0), TypeError, "coeffs"),
    ("f returns complex", lambda: fastcalc.derivative(lambda x: x + 0j, [1.0]), TypeError,
     r"\bf\b.*real"),
    # coeffs
    ("taylor empty", lambda: fastcalc.taylor([], 1.0), ValueError, "coeffs"),
    ("taylor 2-D", lambda: fastcalc.taylor([[1.0, 2.0]], 1.0), ValueError, "coeffs"),
    # shapes
    ("gradient scalar x", lambda: fastcalc.gradient(point_sum, 1.0), ValueError, r"\bx\b"),
    ("jacobian scalar x", lambda: fastcalc.jacobian(polar, 1.0), ValueError, r"\bx\b"),
    ("derivative f reduces", lambda: fastcalc.derivative(np.sum, np.ones(3)), ValueError,
     r"\bf\b.*shape"),
    ("derivative f drops", lambda: fastcalc.derivative(lambda x: x[:1], np.ones(3)),
     ValueError, r"\bf\b.*shape"),
    ("derivative f scalar", lambda: fastcalc.derivative(lambda x: 1.0, np.ones(3)),
     ValueError, r"\bf\b.*shape"),
    ("integrate f reduces", lambda: fastcalc.integrate(np.sum, 0, 1), ValueError,
     r"\bf\b.*shape"),
    ("integrate f transposes", lambda: fastcalc.integrate(lambda x: x.T, [0, 1], 2, n=4),
     ValueError, r"\bf\b.*shape"),
    ("check_grad grad shape", lambda: fastcalc.check_grad(point_sum, point_sum, [1.0, 2.0]),
     ValueError, r"^grad returned shape"),
    ("h does not fit x", lambda: fastcalc.derivative(np.sin, np.ones(3), h=np.ones(2)),
     ValueError, r"^h of shape \(2,\) does not broadcast against x"),
]


@pytest.mark.parametrize(("call", "error", "match"), [case[1:] for case in BAD_CALLS],
                         ids=[case[0] for case in BAD_CALLS])
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_the_bound_named_is_the_infinite_one():
    # a is finite, b is not: the message must not blame a.
    with pytest.raises(ValueError, match="b must be finite") as caught:
        fastcalc.integrate(np.sin, 0.0, np.inf, method="trapezoid")
    assert "a must" not in str(caught.value)


@pytest.mark.parametrize("n", [2**63, 2**64, 10**30])
def test_counts_past_an_array_dimension_are_value_errors_naming_n(n):
    """Found by the fuzz suite: numpy's "Maximum allowed size exceeded" named nothing."""
    with pytest.raises(ValueError, match="^n must be an integer from 1 to"):
        fastcalc.integrate(np.sin, 0.0, 1.0, n=n)
    with pytest.raises(ValueError, match="^n must be an integer from 1 to"):
        fastcalc.exp_taylor(1.0, n)
