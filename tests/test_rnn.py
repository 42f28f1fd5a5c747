"""rnn_forward / rnn_backward: torch equivalence, gradients, kernels, dtypes, layouts, errors."""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import (
    assert_gradients_pass_check_grad,
    assert_interrupted,
    assert_threads_agree,
    kernel_modules,
    layouts,
    run_concurrently,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import fastcalc
from fastcalc import _cython, _dispatch
from fastcalc import rnn as rnn_module
from fastcalc.reference import rnn as reference

try:
    import torch
except ImportError:  # the torch oracle tests skip; everything else runs without it
    torch = None

requires_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")

TOLERANCE = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
RESULTS = ("h", "y", "dx", "dh0", "dWxh", "dWhh", "dbh", "dWhy", "dby")
PARAMETER_GRADIENTS = ("dWxh", "dWhh", "dbh", "dWhy", "dby")
FORWARD_ARGUMENTS = ("x", "h0", "Wxh", "Whh", "Why", "bh", "by")


def rnn_built(backend):
    """Whether ``backend`` (an available one) has its RNN kernels: the compiled ones may not."""
    if backend == "numba":
        return importlib.util.find_spec("fastcalc._numba.rnn") is not None
    if backend == "cython":
        return bool(_cython.available_isas("rnn"))
    return True


def compiled_modules():
    """``kernel_modules("rnn")``, also while the Numba RNN module does not exist yet."""
    if _dispatch.backend_status()["numba"] is None and not rnn_built("numba"):
        return {f"cython-{isa}": _cython.load("rnn", isa) for isa in _cython.available_isas("rnn")}
    return kernel_modules("rnn")


COMPILED = compiled_modules()
# Every backend whose RNN kernels exist here, "auto" included.
BACKENDS = [name for name in fastcalc.available_backends() if name == "auto" or rnn_built(name)]


@pytest.fixture(params=fastcalc.available_backends())
def backend(request):
    """Every backend name usable here, "auto" included (conftest's, but skips unbuilt RNNs)."""
    if request.param not in BACKENDS:
        pytest.skip(f"the {request.param} RNN kernels are not built")
    return request.param


def assert_close(actual, expected, rtol, label="", scale=None):
    """Within ``rtol`` of ``scale``: the largest magnitude of ``expected``, at least 1.

    Every input here is of order 1, so rounding errors are relative to terms of order 1
    also where a result cancels to nearly 0 (a bias gradient of two terms, say).
    """
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{label}: shape {actual.shape} != {expected.shape}"
    if scale is None:
        scale = max(np.abs(expected).max(initial=0), 1.0)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale, err_msg=label)


def make_problem(rng, steps, batch, inputs, hidden, outputs, dtype=np.float64, *,
                 single=False):
    """Random arguments (forward's and backward's, without ``h``) of moderate scale.

    Weights ~ N(0, 1 / fan_in), so the pre-activations are of order 1 and tanh is not
    saturated.  ``single``: one sequence, x (T, I), states (H,); ``batch`` is then ignored.
    """
    b = () if single else (batch,)
    arrays = {
        "x": rng.standard_normal((steps, *b, inputs)),
        "h0": rng.uniform(-1, 1, (*b, hidden)),
        "Wxh": rng.standard_normal((hidden, inputs)) / np.sqrt(inputs),
        "Whh": rng.standard_normal((hidden, hidden)) / np.sqrt(hidden),
        "Why": rng.standard_normal((outputs, hidden)) / np.sqrt(hidden),
        "bh": 0.5 * rng.standard_normal(hidden),
        "by": rng.standard_normal(outputs),
        "dy": rng.standard_normal((steps, *b, outputs)),
        "dh_last": rng.standard_normal((*b, hidden)),
    }
    return {name: value.astype(dtype) for name, value in arrays.items()}


def forward(arrays, backend):
    return fastcalc.rnn_forward(*(arrays.get(name) for name in FORWARD_ARGUMENTS),
                                backend=backend)


def backward(arrays, h, backend, clip=None):
    return fastcalc.rnn_backward(arrays["dy"], arrays["x"], h, arrays.get("h0"), arrays["Wxh"],
                                 arrays["Whh"], arrays["Why"], arrays.get("dh_last"), clip=clip,
                                 backend=backend)


def run_rnn(arrays, backend, clip=None):
    """``(h, y, dx, dh0, dWxh, dWhh, dbh, dWhy, dby)``: forward, then backward on its ``h``."""
    h, y = forward(arrays, backend)
    return (h, y, *backward(arrays, h, backend, clip))


def as_float64(arrays):
    return {name: None if value is None else np.asarray(value, np.float64)
            for name, value in arrays.items()}


def torch_rnn(arrays):
    """torch's ``(h, y, dx, dh0, dWxh, dWhh, dbh, dWhy, dby)`` by autograd, in float64.

    ``nn.RNN`` (tanh) with ``bias_hh = 0``, then ``y = h @ Why.T + by``, and the loss
    ``sum(y * dy) + sum(h[-1] * dh_last)``.  A single sequence is torch's unbatched input.
    """
    t = {name: torch.tensor(np.asarray(value, np.float64)) for name, value in arrays.items()}
    hidden, inputs = t["Wxh"].shape
    rnn = torch.nn.RNN(inputs, hidden, nonlinearity="tanh", dtype=torch.float64)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(t["Wxh"])
        rnn.weight_hh_l0.copy_(t["Whh"])
        rnn.bias_ih_l0.copy_(t["bh"])
        rnn.bias_hh_l0.zero_()
    x, h0, Why, by = (t[name].requires_grad_() for name in ("x", "h0", "Why", "by"))
    h, last = rnn(x, h0.unsqueeze(0))
    torch.testing.assert_close(last[0], h[-1], rtol=0, atol=0)
    y = h @ Why.T + by
    loss = (y * t["dy"]).sum() + (h[-1] * t["dh_last"]).sum()
    loss.backward()
    torch.testing.assert_close(rnn.bias_hh_l0.grad, rnn.bias_ih_l0.grad, rtol=1e-12, atol=0)
    return (h.detach().numpy(), y.detach().numpy(), x.grad.numpy(), h0.grad.numpy(),
            rnn.weight_ih_l0.grad.numpy(), rnn.weight_hh_l0.grad.numpy(),
            rnn.bias_ih_l0.grad.numpy(), Why.grad.numpy(), by.grad.numpy())


# ---------------------------------------------------------------------------------------------
# 1. torch oracle

@requires_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("single", [False, True], ids=["batched", "single"])
@pytest.mark.parametrize("shape", [(6, 3, 5, 7, 4), (10, 32, 64, 128, 64)],
                         ids=lambda shape: "x".join(map(str, shape)))
def test_forward_and_gradients_equal_torch(backend, dtype, single, shape):
    arrays = make_problem(np.random.default_rng(1), *shape, dtype, single=single)
    expected = torch_rnn(arrays)
    results = run_rnn(arrays, backend)
    for name, actual, want in zip(RESULTS, results, expected, strict=True):
        assert actual.dtype == dtype, name
        assert_close(actual, want, TOLERANCE[np.dtype(dtype)], name)


# ---------------------------------------------------------------------------------------------
# 2. property test against the numpy backend in float64

SIZES = st.one_of(st.integers(1, 9), st.sampled_from([15, 16, 17, 32, 33]))


@settings(max_examples=40, deadline=None)
@given(steps=st.integers(0, 6), batch=st.integers(1, 5), inputs=SIZES, hidden=SIZES,
       outputs=SIZES,
       dtype=st.sampled_from([np.float32, np.float64]), single=st.booleans(),
       omitted=st.sets(st.sampled_from(["h0", "bh", "by", "dh_last"])),
       seed=st.integers(0, 2**16))
def test_every_backend_equals_the_numpy_backend_in_float64(steps, batch, inputs, hidden,
                                                           outputs, dtype, single, omitted,
                                                           seed):
    shape = (steps, batch, inputs, hidden, outputs)
    arrays = make_problem(np.random.default_rng(seed), *shape, dtype, single=single)
    for name in omitted:
        arrays[name] = None
    expected = run_rnn(as_float64(arrays), "numpy")
    b = () if single else (batch,)
    shapes = [(steps, *b, hidden), (steps, *b, outputs), (steps, *b, inputs), (*b, hidden),
              (hidden, inputs), (hidden, hidden), (hidden,), (outputs, hidden), (outputs,)]
    for backend in BACKENDS:
        results = run_rnn(arrays, backend)
        for name, actual, want, shape in zip(RESULTS, results, expected, shapes, strict=True):
            label = f"{backend} {name}"
            assert actual.dtype == dtype and actual.shape == shape, label
            assert_close(actual, want, TOLERANCE[np.dtype(dtype)], label)


# ---------------------------------------------------------------------------------------------
# 3. every compiled build against the reference kernels

# (T, B, I, H, O): the seed's network first; tails of 4, 8 and 16 lanes; the last ones are
# large enough for the compiled kernels' BLAS (and parallel) paths.
SHAPES = [
    (4, 1, 2, 3, 2),
    (1, 1, 1, 1, 1),
    (7, 3, 5, 9, 4),
    (2, 8, 16, 16, 8),
    (5, 2, 17, 31, 33),
    (6, 5, 31, 33, 17),
    (3, 17, 33, 65, 15),
    (4, 64, 8, 32, 1),
    (5, 40, 100, 70, 30),
    (10, 32, 64, 128, 64),
]


def kernel_results(module, arrays, clip, threads):
    """The nine outputs of ``module``'s two kernels, written on buffers pre-filled with NaN.

    The parameter gradients, which the kernels add to, start at zero.  The backward pass
    gets ``arrays["h"]``, so that it sees the same states everywhere.
    """
    x, h0, Wxh, Whh, Why, bh, by = (arrays[name] for name in FORWARD_ARGUMENTS)
    T, B, _ = x.shape
    h = np.full((T, B, Whh.shape[0]), np.nan, x.dtype)
    y = np.full((T, B, Why.shape[0]), np.nan, x.dtype)
    module.rnn_forward(x, h0, Wxh, Whh, Why, bh, by, h, y, 0, B, threads)
    grads = [np.full(a.shape, np.nan, x.dtype) for a in (x, h0)]
    grads += [np.zeros(a.shape, x.dtype) for a in (Wxh, Whh, bh, Why, by)]
    module.rnn_backward(arrays["dy"], x, arrays["h"], h0, Wxh, Whh, Why, arrays["dh_last"], clip,
                        *grads, 0, B, threads)
    return (h, y, *grads)


@pytest.mark.parametrize("implementation", sorted(COMPILED))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda shape: "x".join(map(str, shape)))
@pytest.mark.parametrize("threads", [1, 2])
def test_compiled_kernels_equal_the_reference(implementation, dtype, shape, threads):
    arrays = make_problem(np.random.default_rng(3), *shape, dtype)
    steps, batch, _, hidden, outputs = shape
    arrays["h"] = np.empty((steps, batch, hidden), dtype)
    reference.rnn_forward(*(arrays[name] for name in FORWARD_ARGUMENTS), arrays["h"],
                          np.empty((steps, batch, outputs), dtype), 0, batch, 1)
    saved = {name: value.copy() for name, value in arrays.items()}
    unclipped = kernel_results(reference, arrays, np.inf, 1)
    # Half of the parameter gradients' entries lie beyond the median: they get clipped.
    clip = float(np.median(np.abs(np.concatenate([g.ravel() for g in unclipped[4:]]))))
    assert clip > 0
    clipped = kernel_results(reference, arrays, clip, 1)
    for limit, expected in [(np.inf, unclipped), (clip, clipped)]:
        results = kernel_results(COMPILED[implementation], arrays, limit, threads)
        for name, actual, want in zip(RESULTS, results, expected, strict=True):
            label = f"{name} clip={limit}"
            assert np.isfinite(actual).all(), f"{label}: an element was not written"
            assert_close(actual, want, TOLERANCE[np.dtype(dtype)], label)
    for name, value in arrays.items():
        np.testing.assert_array_equal(value, saved[name], err_msg=f"{name} was modified")


def whole_range(dtype, size=20_000, seed=0):
    """Values over the whole range of ``dtype``: NaN, infinities, subnormals and the largest."""
    rng = np.random.default_rng(seed)
    info = np.finfo(dtype)
    signs = rng.choice([-1.0, 1.0], (2, size))
    parts = [
        rng.uniform(-50, 50, size),
        rng.standard_normal(size) * 3,
        signs[0] * 10.0 ** rng.uniform(np.log10(float(info.tiny)), np.log10(float(info.max)),
                                       size),
        signs[1] * float(info.smallest_subnormal) * rng.integers(1, 1000, size),
        np.linspace(-45, 45, 9001),
        [0.0, -0.0, np.inf, -np.inf, np.nan, float(info.max), -float(info.max),
         float(info.tiny), -float(info.tiny), float(info.smallest_subnormal)],
    ]
    return np.concatenate(parts).astype(dtype)


@pytest.mark.parametrize("implementation", sorted(COMPILED))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_tanh_over_the_whole_range(implementation, dtype):
    """One step of one unit, Wxh = Why = 1, on B = every value: h = y = tanh(x), per ISA."""
    values = whole_range(dtype)
    count = values.size
    one, zero = np.ones((1, 1), dtype), np.zeros((1, 1), dtype)
    h, y = np.full((2, 1, count, 1), np.nan, dtype)
    COMPILED[implementation].rnn_forward(values.reshape(1, count, 1), np.zeros((count, 1), dtype),
                                         one, zero, one, zero[0], zero[0], h, y, 0, count, 1)
    h = h.ravel()
    np.testing.assert_array_equal(y.ravel(), h, err_msg="y = 1 * h + 0")
    truth = np.tanh(values.astype(np.float64))
    np.testing.assert_array_equal(np.isnan(h), np.isnan(values), err_msg="NaN in, NaN out")
    saturated = np.abs(values) >= (40 if dtype == np.float64 else 20)
    np.testing.assert_array_equal(h[saturated], np.sign(values[saturated]),
                                  err_msg="tanh must saturate to exactly +-1")
    info = np.finfo(dtype)
    normal = np.abs(truth) >= info.tiny
    error = np.abs(h[normal] - truth[normal]) / np.abs(truth[normal])
    rtol = {np.float32: 1e-6, np.float64: 1e-14}[dtype]
    worst = values[normal][error.argmax()]
    assert error.max() <= rtol, f"relative error {error.max():.3g} at x = {worst!r}"
    subnormal = ~normal & ~np.isnan(truth)
    np.testing.assert_allclose(h[subnormal], truth[subnormal], rtol=0,
                               atol=float(info.smallest_subnormal), err_msg="subnormal x")


# ---------------------------------------------------------------------------------------------
# 4. finite differences

def test_gradients_pass_check_grad(backend):
    arrays = make_problem(np.random.default_rng(4), 4, 2, 3, 5, 3)
    h, _ = forward(arrays, backend)
    gradients = backward(arrays, h, backend)

    def loss(trial):
        h, y = forward(trial, backend)
        return np.sum(y * trial["dy"]) + np.sum(h[-1] * trial["dh_last"])

    names = ("x", "h0", "Wxh", "Whh", "bh", "Why", "by")
    assert_gradients_pass_check_grad(loss, arrays, dict(zip(names, gradients, strict=True)),
                                     1e-7)


# ---------------------------------------------------------------------------------------------
# 5. memory layouts

@pytest.mark.parametrize("argument", ["x", "h0", "Wxh", "Whh", "Why", "bh", "by", "dy", "h",
                                      "dh_last"])
def test_any_memory_layout_gives_the_contiguous_result(backend, argument):
    # T = B = I = H = O: every view of layouts(), the transposed one included, is valid.
    arrays = make_problem(np.random.default_rng(5), 4, 4, 4, 4, 4)
    arrays["h"] = forward(arrays, "numpy")[0]

    def run(arrays):
        return (*forward(arrays, backend), *backward(arrays, arrays["h"], backend))

    for label, view in layouts(arrays[argument]).items():
        before = view.copy()
        expected = run({**arrays, argument: np.ascontiguousarray(view, dtype=np.float64)})
        results = run({**arrays, argument: view})
        np.testing.assert_array_equal(view, before, err_msg=f"{label} {argument} changed")
        for name, actual, want in zip(RESULTS, results, expected, strict=True):
            assert actual.dtype == np.float64
            assert_close(actual, want, 1e-12, f"{label} {argument}: {name}")


def test_inputs_are_not_modified(backend):
    arrays = make_problem(np.random.default_rng(6), 5, 3, 4, 6, 2)
    saved = {name: value.copy() for name, value in arrays.items()}
    h, _ = forward(arrays, backend)
    saved_h = h.copy()
    backward(arrays, h, backend, clip=0.1)
    for name, value in arrays.items():
        np.testing.assert_array_equal(value, saved[name], err_msg=f"{name} was modified")
    np.testing.assert_array_equal(h, saved_h, err_msg="h was modified")


def test_lists_give_the_result_of_arrays(backend):
    arrays = make_problem(np.random.default_rng(7), 3, 2, 2, 3, 2)
    expected = run_rnn(arrays, backend)
    results = run_rnn({name: value.tolist() for name, value in arrays.items()}, backend)
    for name, actual, want in zip(RESULTS, results, expected, strict=True):
        assert actual.dtype == np.float64
        np.testing.assert_array_equal(actual, want, err_msg=name)


# ---------------------------------------------------------------------------------------------
# 6. dtypes

@pytest.mark.parametrize(
    ("dtypes", "result"),
    # dtypes of x, of the weights, and of h0, the biases, dy and dh_last
    [((np.float32, np.float32, np.float32), np.float32),
     ((np.float64, np.float64, np.float64), np.float64),
     ((np.float16, np.float16, np.float16), np.float16),
     ((np.int32, np.int64, np.int8), np.float64),
     ((np.uint8, bool, np.int16), np.float64),
     ((bool, bool, bool), np.float64),
     ((np.float32, np.float64, np.float32), np.float64),
     ((np.float64, np.float32, np.float32), np.float64),
     ((np.float32, np.float32, np.float64), np.float64),
     ((np.float16, np.float32, np.float16), np.float32),
     ((np.float16, np.float64, np.float16), np.float64),
     ((np.int8, np.float32, np.float32), np.float32),
     ((np.uint8, np.float16, np.float16), np.float16),
     ((np.int32, np.float32, np.float32), np.float64)],
)
def test_result_dtypes(backend, dtypes, result):
    rng = np.random.default_rng(8)
    group = {"x": 0, "Wxh": 1, "Whh": 1, "Why": 1}
    arrays = {}
    for name, value in make_problem(rng, 4, 3, 5, 6, 2).items():
        dtype = np.dtype(dtypes[group.get(name, 2)])
        if dtype.kind in "biu":
            value = rng.integers(0, 2, value.shape) if dtype.kind == "b" else (
                rng.integers(-3, 4, value.shape))
        arrays[name] = value.astype(dtype)
    h, y = forward(arrays, backend)
    results = (h, y, *backward(arrays, h, backend))
    expected_h, expected_y = forward(as_float64(arrays), "numpy")
    expected = (expected_h, expected_y, *backward(as_float64(arrays), expected_h, "numpy"))
    rtol = {np.float16: 1e-2, np.float32: 1e-5, np.float64: 1e-12}[result]
    for name, actual, want in zip(RESULTS, results, expected, strict=True):
        assert actual.dtype == result, name
        assert_close(actual.astype(np.float64), want, rtol, name)


def test_float16_is_computed_in_float32(backend):
    arrays = make_problem(np.random.default_rng(9), 5, 3, 4, 7, 3, np.float16)
    h, y = forward(arrays, backend)
    results = (h, y, *backward(arrays, h, backend))
    in_float32 = {name: value.astype(np.float32) for name, value in arrays.items()}
    h32, y32 = forward(in_float32, backend)
    expected = (h32, y32, *backward(in_float32, h.astype(np.float32), backend))
    for name, actual, want in zip(RESULTS, results, expected, strict=True):
        assert actual.dtype == np.float16, name
        np.testing.assert_array_equal(actual, want.astype(np.float16), err_msg=name)


def valid_arguments(**changes):
    """rnn_backward's arguments of a valid problem (T 3, B 2, I 4, H 5, O 6), with changes."""
    arguments = {"dy": np.ones((3, 2, 6)), "x": np.ones((3, 2, 4)), "h": np.zeros((3, 2, 5)),
                 "h0": np.zeros((2, 5)), "Wxh": np.ones((5, 4)), "Whh": np.ones((5, 5)),
                 "Why": np.ones((6, 5)), "dh_last": np.ones((2, 5))}
    return {**arguments, **changes}


BACKWARD_ARGUMENTS = ("dy", "x", "h", "h0", "Wxh", "Whh", "Why", "dh_last")


def call_forward(arguments, **keywords):
    return fastcalc.rnn_forward(**{n: arguments[n] for n in FORWARD_ARGUMENTS if n in arguments},
                                **keywords)


def call_backward(arguments, **keywords):
    return fastcalc.rnn_backward(
        **{n: arguments[n] for n in BACKWARD_ARGUMENTS if n in arguments}, **keywords)


FORWARD_BACKWARD = [call_forward, call_backward]
# (call, argument) for every array argument of each function
CALL_AND_ARGUMENT = [
    pytest.param(call, name, id=f"{label}-{name}")
    for label, call, names in [("forward", call_forward, FORWARD_ARGUMENTS),
                               ("backward", call_backward, BACKWARD_ARGUMENTS)]
    for name in names
]


@pytest.mark.parametrize(("call", "name"), CALL_AND_ARGUMENT)
@pytest.mark.parametrize("dtype", [np.complex128, np.complex64])
def test_complex_input_is_a_type_error_naming_it(call, name, dtype):
    arguments = valid_arguments(bh=np.ones(5), by=np.ones(6))
    arguments[name] = arguments[name].astype(dtype)
    with pytest.raises(TypeError, match=rf"^{name} is complex"):
        call(arguments)


@pytest.mark.parametrize(("call", "name"), CALL_AND_ARGUMENT)
@pytest.mark.parametrize("kind", ["object", "str"])
def test_non_numeric_input_is_a_type_error_naming_it(call, name, kind):
    arguments = valid_arguments(bh=np.ones(5), by=np.ones(6))
    value = arguments[name]
    arguments[name] = value.astype(object) if kind == "object" else np.full(value.shape, "a")
    with pytest.raises(TypeError, match=rf"^{name} must be a real floating, integer or bool"):
        call(arguments)


# ---------------------------------------------------------------------------------------------
# 7. errors

SHARED_ERRORS = [  # (changes, argument named first in the message, rest of the message)
    ({"x": np.ones(4)}, "x", r"must have shape \(T, B, I\) or \(T, I\), got \(4,\)"),
    ({"x": np.ones((3, 2, 4, 1))}, "x", r"must have shape \(T, B, I\) or \(T, I\)"),
    ({"x": np.float64(1.0)}, "x", r"must have shape .* got \(\)"),
    ({"Wxh": np.ones((5, 3))}, "Wxh", r"must have shape \(H, I\) with I = 4 .* got \(5, 3\)"),
    ({"Wxh": np.ones(5)}, "Wxh", r"must have shape \(H, I\)"),
    ({"Wxh": np.ones((5, 4, 1))}, "Wxh", r"must have shape \(H, I\)"),
    ({"Whh": np.ones((5, 4))}, "Whh", r"must have shape \(H, H\) = \(5, 5\) .* got \(5, 4\)"),
    ({"Whh": np.ones((4, 5))}, "Whh", r"must have shape \(H, H\) = \(5, 5\)"),
    ({"Whh": np.ones(5)}, "Whh", r"must have shape \(H, H\) = \(5, 5\)"),
    ({"Why": np.ones((6, 4))}, "Why", r"must have shape \(O, H\) with H = 5 .* got \(6, 4\)"),
    ({"Why": np.ones(5)}, "Why", r"must have shape \(O, H\)"),
    ({"h0": np.ones((3, 5))}, "h0", r"must have shape \(2, 5\) .* got \(3, 5\)"),
    ({"h0": np.ones((2, 4))}, "h0", r"must have shape \(2, 5\)"),
    ({"h0": np.ones(5)}, "h0", r"must have shape \(2, 5\) .* got \(5,\)"),
    ({"h0": np.ones((1, 2, 5))}, "h0", r"must have shape \(2, 5\)"),
]
BIAS_ERRORS = [  # rnn_forward's only
    ({"bh": np.ones(4)}, "bh", r"must have shape \(5,\) .* got \(4,\)"),
    ({"bh": np.ones((1, 5))}, "bh", r"must have shape \(5,\)"),
    ({"bh": 1.0}, "bh", r"must have shape \(5,\) .* got \(\)"),
    ({"by": np.ones(5)}, "by", r"must have shape \(6,\) .* got \(5,\)"),
    ({"by": np.ones((6, 1))}, "by", r"must have shape \(6,\)"),
]
SINGLE = {"x": np.ones((3, 4)), "h": np.zeros((3, 5)), "h0": np.zeros(5), "dy": np.ones((3, 6)),
          "dh_last": np.ones(5)}
SINGLE_ERRORS = [
    ({**SINGLE, "h0": np.ones((2, 5))}, "h0", r"must have shape \(5,\) .* got \(2, 5\)"),
    ({**SINGLE, "h0": np.ones((1, 5))}, "h0", r"must have shape \(5,\)"),
]
BACKWARD_ERRORS = [
    ({"h": np.zeros((3, 2, 4))}, "h", r"must have shape \(3, 2, 5\) .* got \(3, 2, 4\)"),
    ({"h": np.zeros((4, 2, 5))}, "h", r"must have shape \(3, 2, 5\)"),
    ({"h": np.zeros((3, 5))}, "h", r"must have shape \(3, 2, 5\)"),
    ({"dy": np.ones((3, 2, 5))}, "dy", r"must have shape \(3, 2, 6\) .* got \(3, 2, 5\)"),
    ({"dy": np.ones((2, 2, 6))}, "dy", r"must have shape \(3, 2, 6\)"),
    ({"dy": np.ones((3, 6))}, "dy", r"must have shape \(3, 2, 6\)"),
    ({"dh_last": np.ones((2, 4))}, "dh_last", r"must have shape \(2, 5\) .* got \(2, 4\)"),
    ({"dh_last": np.ones(5)}, "dh_last", r"must have shape \(2, 5\)"),
    ({**SINGLE, "h": np.zeros((3, 2, 5))}, "h", r"must have shape \(3, 5\)"),
    ({**SINGLE, "h": np.zeros((3, 1, 5))}, "h", r"must have shape \(3, 5\)"),
    ({**SINGLE, "dy": np.ones((3, 1, 6))}, "dy", r"must have shape \(3, 6\)"),
    ({**SINGLE, "dh_last": np.ones((1, 5))}, "dh_last", r"must have shape \(5,\)"),
]


@pytest.mark.parametrize("call", FORWARD_BACKWARD, ids=["forward", "backward"])
@pytest.mark.parametrize(("changes", "name", "message"), SHARED_ERRORS + SINGLE_ERRORS)
def test_inconsistent_shapes_are_value_errors_naming_the_argument(call, changes, name, message):
    with pytest.raises(ValueError, match=rf"^{name} {message}"):
        call(valid_arguments(**changes))


@pytest.mark.parametrize(("changes", "name", "message"), BIAS_ERRORS)
def test_inconsistent_bias_shapes_are_value_errors_naming_the_bias(changes, name, message):
    with pytest.raises(ValueError, match=rf"^{name} {message}"):
        call_forward(valid_arguments(**changes))


@pytest.mark.parametrize(("changes", "name", "message"), BACKWARD_ERRORS)
def test_inconsistent_backward_shapes_are_value_errors_naming_the_argument(changes, name,
                                                                           message):
    with pytest.raises(ValueError, match=rf"^{name} {message}"):
        call_backward(valid_arguments(**changes))


@pytest.mark.parametrize("clip", [0, 0.0, -1.0, -np.inf, np.nan, np.float32(-2)])
def test_clip_not_positive_is_a_value_error(clip):
    with pytest.raises(ValueError, match="^clip must be > 0"):
        call_backward(valid_arguments(), clip=clip)


@pytest.mark.parametrize("clip", ["1.0", True, 1j, [1.0], np.ones(1)])
def test_clip_not_a_real_number_is_a_type_error(clip):
    with pytest.raises(TypeError, match="^clip must be a real number"):
        call_backward(valid_arguments(), clip=clip)


@pytest.mark.parametrize("call", FORWARD_BACKWARD, ids=["forward", "backward"])
@pytest.mark.parametrize("name", ["fortran", "NUMPY", "", "Auto"])
def test_unknown_backend_is_a_value_error(call, name):
    with pytest.raises(ValueError, match=f"^unknown backend '{name}'"):
        call(valid_arguments(), backend=name)


# ---------------------------------------------------------------------------------------------
# 8. edge cases

@pytest.mark.parametrize("single", [False, True], ids=["batched", "single"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_dh_last", [True, False])
def test_no_steps_give_empty_states_and_zero_parameter_gradients(backend, single, dtype,
                                                                 with_dh_last):
    arrays = make_problem(np.random.default_rng(10), 0, 3, 4, 5, 2, dtype, single=single)
    if not with_dh_last:
        arrays["dh_last"] = None
    batch = () if single else (3,)
    h, y, dx, dh0, *parameters = run_rnn(arrays, backend)
    assert h.shape == (0, *batch, 5) and y.shape == (0, *batch, 2)
    assert dx.shape == (0, *batch, 4)
    expected_dh0 = arrays["dh_last"] if with_dh_last else np.zeros((*batch, 5))
    np.testing.assert_array_equal(dh0, expected_dh0)
    for name, gradient in zip(PARAMETER_GRADIENTS, parameters, strict=True):
        shape = arrays[name[1:]].shape
        np.testing.assert_array_equal(gradient, np.zeros(shape), err_msg=name)
    assert {a.dtype for a in (h, y, dx, dh0, *parameters)} == {np.dtype(dtype)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_empty_batch_gives_empty_results_and_zero_parameter_gradients(backend, dtype):
    arrays = make_problem(np.random.default_rng(11), 4, 0, 3, 5, 2, dtype)
    h, y, dx, dh0, *parameters = run_rnn(arrays, backend)
    assert h.shape == (4, 0, 5) and y.shape == (4, 0, 2)
    assert dx.shape == (4, 0, 3) and dh0.shape == (0, 5)
    for name, gradient in zip(PARAMETER_GRADIENTS, parameters, strict=True):
        np.testing.assert_array_equal(gradient, np.zeros(arrays[name[1:]].shape), err_msg=name)
    assert {a.dtype for a in (h, y, dx, dh0, *parameters)} == {np.dtype(dtype)}


@pytest.mark.parametrize("empty", ["I", "H", "O"])
def test_empty_inputs_hidden_or_outputs(backend, empty):
    sizes = {"I": 3, "H": 4, "O": 2, empty: 0}
    arrays = make_problem(np.random.default_rng(12), 5, 3, sizes["I"], sizes["H"], sizes["O"])
    h, y, dx, dh0, dWxh, dWhh, dbh, dWhy, dby = run_rnn(arrays, backend)
    expected = run_rnn(arrays, "numpy")
    for name, actual, want in zip(RESULTS, (h, y, dx, dh0, dWxh, dWhh, dbh, dWhy, dby), expected,
                                  strict=True):
        assert_close(actual, want, 1e-12, name)
    if empty == "H":  # no state: y is the bias, and x does not matter
        np.testing.assert_array_equal(y, np.broadcast_to(arrays["by"], y.shape))
        np.testing.assert_array_equal(dx, np.zeros(dx.shape))
        assert_close(dby, arrays["dy"].sum(axis=(0, 1)), 1e-12, "dby")
    if empty == "O":  # no output: only dh_last reaches the states
        assert_close(dh0, backward({**arrays, "dy": np.zeros((5, 3, 0))}, h, "numpy").dh0,
                     1e-12, "dh0")


def test_nan_in_x_reaches_its_sequence_from_that_step_on(backend):
    rng = np.random.default_rng(13)
    arrays = make_problem(rng, 6, 3, 4, 5, 3)
    clean_h, clean_y = forward(arrays, backend)
    arrays["x"][2, 1, 3] = np.nan
    h, y = forward(arrays, backend)
    hit = np.zeros(h.shape, bool)
    hit[2:, 1] = True  # sequence 1 from step 2 on
    np.testing.assert_array_equal(np.isnan(h), hit)
    np.testing.assert_array_equal(np.isnan(y), hit[..., :3])
    assert_close(h[~hit], clean_h[~hit], 1e-12, "h")
    assert_close(y[~hit[..., :3]], clean_y[~hit[..., :3]], 1e-12, "y")

    for clip in (None, 0.1):
        dx, dh0, dWxh, dWhh, dbh, dWhy, dby = backward(arrays, h, backend, clip)
        sequence = np.zeros(dx.shape, bool)
        sequence[:, 1] = True  # backwards from step 2, and through every later step
        np.testing.assert_array_equal(np.isnan(dx), sequence, err_msg=f"dx clip={clip}")
        np.testing.assert_array_equal(np.isnan(dh0), [[False] * 5, [True] * 5, [False] * 5],
                                      err_msg=f"dh0 clip={clip}")
        for name, gradient in zip(("dWxh", "dWhh", "dbh", "dWhy"), (dWxh, dWhh, dbh, dWhy),
                                  strict=True):
            assert np.isnan(gradient).all(), f"{name} clip={clip}: NaN must stay NaN"
        expected_dby = arrays["dy"].sum(axis=(0, 1))
        if clip is not None:
            expected_dby = np.clip(expected_dby, -clip, clip)
        assert_close(dby, expected_dby, 1e-12, f"dby clip={clip}")


@pytest.mark.parametrize(("dtype", "scale"), [(np.float64, 20.0), (np.float64, 1e3),
                                              (np.float64, 1e150), (np.float64, 1e300),
                                              (np.float64, 1e308), (np.float32, 10.0),
                                              (np.float32, 1e3), (np.float32, 1e30),
                                              (np.float32, 1e38)])
def test_large_inputs_saturate_tanh_to_exactly_one(backend, dtype, scale):
    """Pre-activations of magnitude >= 2 * scale (inf at the largest): h is exactly +-1."""
    rng = np.random.default_rng(14)
    steps, batch, inputs, hidden = 5, 3, 4, 6
    arrays = make_problem(rng, steps, batch, inputs, hidden, 2)
    x_signs = rng.choice([-1.0, 1.0], (steps, batch, 1))
    row_signs = rng.choice([-1.0, 1.0], hidden)
    arrays["x"] = scale * x_signs * np.ones(inputs)
    arrays["Wxh"] = row_signs[:, None] * rng.uniform(0.5, 1.5, (hidden, inputs))
    arrays = {name: value.astype(dtype) for name, value in arrays.items()}
    with np.errstate(over="ignore"):
        h, y, dx, dh0, dWxh, dWhh, dbh, dWhy, dby = run_rnn(arrays, backend)
    np.testing.assert_array_equal(h, x_signs * row_signs)
    assert_close(y, h @ arrays["Why"].T + arrays["by"], TOLERANCE[np.dtype(dtype)], "y")
    for name, gradient in [("dx", dx), ("dh0", dh0), ("dWxh", dWxh), ("dWhh", dWhh),
                           ("dbh", dbh)]:  # tanh' = 1 - h ** 2 = 0
        np.testing.assert_array_equal(gradient, np.zeros(gradient.shape), err_msg=name)
    dy = arrays["dy"].astype(np.float64)
    assert_close(dWhy, np.einsum("tbo,tbh->oh", dy, h), TOLERANCE[np.dtype(dtype)], "dWhy")
    assert_close(dby, dy.sum(axis=(0, 1)), TOLERANCE[np.dtype(dtype)], "dby")


def test_clip_clips_only_the_parameter_gradients(backend):
    arrays = make_problem(np.random.default_rng(15), 5, 3, 4, 6, 3)
    h, _ = forward(arrays, backend)
    free = backward(arrays, h, backend)
    values = np.abs(np.concatenate([getattr(free, name).ravel() for name in PARAMETER_GRADIENTS]))
    clip = float(np.median(values))
    assert (values > clip).sum() >= 10
    clipped = backward(arrays, h, backend, clip)
    np.testing.assert_array_equal(clipped.dx, free.dx)
    np.testing.assert_array_equal(clipped.dh0, free.dh0)
    for name in PARAMETER_GRADIENTS:
        actual = getattr(clipped, name)
        assert np.abs(actual).max() <= clip, name
        assert_close(actual, np.clip(getattr(free, name), -clip, clip), 1e-12, name)
    # inf is no clipping; an int and a numpy scalar are real numbers
    for same, other in [(free, backward(arrays, h, backend, np.inf)),
                        (backward(arrays, h, backend, 1.0), backward(arrays, h, backend, 1)),
                        (backward(arrays, h, backend, 0.5),
                         backward(arrays, h, backend, np.float32(0.5)))]:
        for name, actual, want in zip(RESULTS[2:], other, same, strict=True):
            np.testing.assert_array_equal(actual, want, err_msg=name)


def test_grads_are_a_named_tuple_of_the_gradients(backend):
    arrays = make_problem(np.random.default_rng(16), 3, 2, 3, 4, 2)
    h, _ = forward(arrays, backend)
    grads = backward(arrays, h, backend)
    assert isinstance(grads, fastcalc.RNNGrads)
    assert grads._fields == RESULTS[2:]
    no_h0 = backward({**arrays, "h0": None}, forward({**arrays, "h0": None}, backend)[0], backend)
    assert no_h0.dh0.shape == (2, 4)  # like h0 would have been


# ---------------------------------------------------------------------------------------------
# 9. the seed's slide 11

def seed_tanh(x):
    return np.tanh(x)


def seed_tanh_derivative(x):
    return 1 - np.tanh(x)**2


def seed_rnn_forward(x, h_prev, Wxh, Whh, Why):
    """Slide 11's step, as the seed writes it (its weights are globals there)."""
    h = seed_tanh(np.dot(Wxh, x) + np.dot(Whh, h_prev))
    y = np.dot(Why, h)
    return h, y


def seed_network(seed):
    """Slide 11's parameters and example input, drawn as the seed draws them (seeded)."""
    hidden_size, sequence_length, input_size = 3, 4, 2
    np_random = np.random.RandomState(seed)
    Wxh = np_random.randn(hidden_size, input_size) * 0.01
    Whh = np_random.randn(hidden_size, hidden_size) * 0.01
    Why = np_random.randn(input_size, hidden_size) * 0.01
    x = np_random.randn(input_size, 1)
    h_prev = np.zeros((hidden_size, 1))
    xs = [x] + [np_random.randn(input_size, 1) for _ in range(sequence_length - 1)]
    return Wxh, Whh, Why, x, h_prev, xs


@pytest.mark.parametrize("seed", [0, 11, 2024])
def test_seed_slide_11_one_step(backend, seed):
    Wxh, Whh, Why, x, h_prev, _ = seed_network(seed)
    h_seed, y_seed = seed_rnn_forward(x, h_prev, Wxh, Whh, Why)
    # The seed's column vectors are fastcalc's rows: x.T is a sequence of one step.
    for h0 in (None, h_prev[:, 0]):
        h, y = fastcalc.rnn_forward(x.T, h0, Wxh, Whh, Why, backend=backend)
        assert h.shape == (1, 3) and y.shape == (1, 2)
        assert_close(h, h_seed.T, 1e-13, "h", scale=np.abs(h_seed).max())
        assert_close(y, y_seed.T, 1e-13, "y", scale=np.abs(y_seed).max())

    # One step backwards with the seed's tanh_derivative, from dL/dy = 1.
    dy = np.ones_like(y_seed)
    da = np.dot(Why.T, dy) * seed_tanh_derivative(np.dot(Wxh, x) + np.dot(Whh, h_prev))
    grads = fastcalc.rnn_backward(dy.T, x.T, h_seed.T, h_prev[:, 0], Wxh, Whh, Why,
                                  backend=backend)
    for name, want in [("dx", np.dot(Wxh.T, da).T), ("dh0", np.dot(Whh.T, da)[:, 0]),
                       ("dWxh", np.dot(da, x.T)), ("dWhh", np.dot(da, h_prev.T)),
                       ("dbh", da[:, 0]), ("dWhy", np.dot(dy, h_seed.T)), ("dby", dy[:, 0])]:
        actual = getattr(grads, name)
        assert_close(actual, want, 1e-12, name, scale=max(np.abs(want).max(), 1e-300))


@pytest.mark.parametrize("seed", [0, 11])
def test_seed_slide_11_over_its_sequence(backend, seed):
    """The seed's step applied over its sequence_length = 4 equals one fastcalc call."""
    Wxh, Whh, Why, _, h_prev, xs = seed_network(seed)
    hs, ys = [], []
    for x in xs:
        h_prev, y = seed_rnn_forward(x, h_prev, Wxh, Whh, Why)
        hs.append(h_prev[:, 0])
        ys.append(y[:, 0])
    h, y = fastcalc.rnn_forward(np.hstack(xs).T, None, Wxh, Whh, Why, backend=backend)
    assert_close(h, np.array(hs), 1e-12, "h", scale=np.abs(hs).max())
    assert_close(y, np.array(ys), 1e-12, "y", scale=np.abs(ys).max())


# ---------------------------------------------------------------------------------------------
# 10. threads

THREADED_SHAPE = (8, 16, 48, 96, 24)  # large enough for the compiled BLAS and parallel paths


def test_thread_safety(backend):
    """8 threads, each running forward and backward on its own data, get the serial results."""
    problems = [make_problem(np.random.default_rng(100 + i), *THREADED_SHAPE) for i in range(8)]
    expected = [run_rnn(arrays, backend, clip=1.0) for arrays in problems]
    results = [None] * 8

    def work(index):
        for _ in range(3):
            results[index] = run_rnn(problems[index], backend, clip=1.0)

    run_concurrently(work)
    assert_threads_agree(results, expected, RESULTS)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [THREADED_SHAPE, (10, 32, 64, 128, 64), (3, 5, 7, 9, 4)],
                         ids=lambda shape: "x".join(map(str, shape)))
def test_one_thread_gives_the_result_of_two(backend, dtype, shape):
    arrays = make_problem(np.random.default_rng(17), *shape, dtype)
    fastcalc.set_num_threads(2)
    two = run_rnn(arrays, backend)
    fastcalc.set_num_threads(1)
    one = run_rnn(arrays, backend)
    for name, actual, expected in zip(RESULTS, one, two, strict=True):
        assert_close(actual, expected, TOLERANCE[np.dtype(dtype)], name)


# ---------------------------------------------------------------------------------------------
# 11. results bit for bit the same for any thread count, and in slices (issue 15)

# (T, B, I, H, O): enough work for the Cython threads; batches of several blocks, not a
# multiple of either block size (16 on Cython, 64 on Numba and numpy), and of less than one.
DETERMINISM_SHAPES = [(6, 37, 16, 40, 8), (3, 130, 9, 33, 5), (4, 5, 24, 64, 16)]


@pytest.mark.parametrize("implementation", sorted(COMPILED))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", DETERMINISM_SHAPES, ids=lambda shape: "x".join(map(str, shape)))
def test_compiled_kernels_give_the_same_bits_for_any_thread_count(implementation, dtype, shape):
    arrays = make_problem(np.random.default_rng(18), *shape, dtype)
    arrays["h"] = forward(arrays, "numpy")[0]
    one = kernel_results(COMPILED[implementation], arrays, np.inf, 1)
    for threads in (2, 3, 8):
        results = kernel_results(COMPILED[implementation], arrays, np.inf, threads)
        for name, actual, expected in zip(RESULTS, results, one, strict=True):
            np.testing.assert_array_equal(actual, expected, err_msg=f"{name}, {threads} threads")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_backend_gives_the_same_bits_for_any_thread_count(backend, dtype):
    arrays = make_problem(np.random.default_rng(19), *DETERMINISM_SHAPES[0], dtype)
    try:
        fastcalc.set_num_threads(1)
        one = run_rnn(arrays, backend, clip=0.5)
        for threads in (2, 3, 8):
            fastcalc.set_num_threads(threads)
            results = run_rnn(arrays, backend, clip=0.5)
            for name, actual, expected in zip(RESULTS, results, one, strict=True):
                np.testing.assert_array_equal(actual, expected,
                                              err_msg=f"{name}, {threads} threads")
    finally:
        fastcalc.set_num_threads(_dispatch._default_num_threads())


BLAS_THREADS_SCRIPT = """
import hashlib, numpy as np, fastcalc
rng = np.random.default_rng(20)
T, B, I, H, O = 20, 96, 256, 256, 128
x, h0, dy = (rng.standard_normal(shape) for shape in ((T, B, I), (B, H), (T, B, O)))
Wxh, Whh, Why = (rng.standard_normal(s) / 16 for s in ((H, I), (H, H), (O, H)))
for dtype in (np.float32, np.float64):
    a = [v.astype(dtype) for v in (x, h0, Wxh, Whh, Why, dy)]
    h, y = fastcalc.rnn_forward(*a[:5], backend="numba")
    grads = fastcalc.rnn_backward(a[5], a[0], h, *a[1:5], backend="numba")
    print(*(hashlib.sha256(r.tobytes()).hexdigest() for r in (h, y, *grads)))
"""


@pytest.mark.skipif("numba" not in BACKENDS, reason="the Numba RNN is not available")
def test_numba_results_do_not_depend_on_blas_threads():
    """Numba's large products run in BLAS, on its own threads: 1, 2 or 3 give the same bits."""
    outputs = set()
    for threads in ("1", "2", "3"):
        environment = {**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads}
        done = subprocess.run([sys.executable, "-c", BLAS_THREADS_SCRIPT], env=environment,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        outputs.add(done.stdout)
    assert len(outputs) == 1


@pytest.mark.parametrize("implementation", sorted(COMPILED))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", DETERMINISM_SHAPES[:2],
                         ids=lambda shape: "x".join(map(str, shape)))
def test_compiled_kernels_in_slices_give_the_whole_call_bits(implementation, dtype, shape):
    """Rows in slices cut on multiples of BLOCK_ROWS: the bits of one call over the batch."""
    module = COMPILED[implementation]
    arrays = make_problem(np.random.default_rng(21), *shape, dtype)
    arrays["h"] = forward(arrays, "numpy")[0]
    whole = kernel_results(module, arrays, np.inf, 2)
    batch, block = shape[1], module.BLOCK_ROWS
    cuts = [0, *range(block, batch, 2 * block), batch]  # slices of 1 block, then of 2
    x, h0, Wxh, Whh, Why, bh, by = (arrays[name] for name in FORWARD_ARGUMENTS)
    h, y = (np.full(a.shape, np.nan, dtype) for a in whole[:2])
    grads = [np.full(a.shape, np.nan, dtype) for a in (x, h0)]
    grads += [np.zeros(a.shape, dtype) for a in (Wxh, Whh, bh, Why, by)]
    for start, stop in zip(cuts, cuts[1:], strict=False):
        module.rnn_forward(x, h0, Wxh, Whh, Why, bh, by, h, y, start, stop, 2)
        module.rnn_backward(arrays["dy"], x, arrays["h"], h0, Wxh, Whh, Why, arrays["dh_last"],
                            np.inf, *grads, start, stop, 2)
    assert len(cuts) > 2 or batch <= block
    for name, actual, expected in zip(RESULTS, (h, y, *grads), whole, strict=True):
        np.testing.assert_array_equal(actual, expected, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("single", [False, True], ids=["batched", "single"])
def test_a_call_in_slices_gives_the_whole_call_bits(backend, dtype, single, monkeypatch):
    """An estimate of hours per sequence: the public functions run every block alone."""
    arrays = make_problem(np.random.default_rng(22), 5, 150, 7, 20, 6, dtype, single=single)
    whole = run_rnn(arrays, backend, clip=0.3)
    calls = []
    run_in_slices = rnn_module._slices.run_in_slices

    def recording(run, items, seconds_per_item, *, align):
        calls.append((items, align))
        run_in_slices(run, items, seconds_per_item, align=align)

    monkeypatch.setattr(rnn_module, "_SECONDS_PER_MULTIPLY_ADD", 1.0)
    monkeypatch.setattr(rnn_module._slices, "run_in_slices", recording)
    sliced = run_rnn(arrays, backend, clip=0.3)
    assert len(calls) == 2
    for name, actual, expected in zip(RESULTS, sliced, whole, strict=True):
        np.testing.assert_array_equal(actual, expected, err_msg=name)


def test_slices_are_aligned_on_each_backends_block():
    assert {name: module.BLOCK_ROWS for name, module in COMPILED.items()} == {
        name: 64 if name == "numba" else 16 for name in COMPILED}
    assert reference.BLOCK_ROWS == 64


# ---------------------------------------------------------------------------------------------
# 12. Ctrl-C (issue 15): a long call raises KeyboardInterrupt within a slice, on every backend

INTERRUPT_SETUP = """
import numpy as np, fastcalc
rng = np.random.default_rng(0)
T, B, I, H, O = 10, {batch}, 64, 512, 64
x, dy = (rng.standard_normal((T, B, n), np.float32) for n in (I, O))
h0, h = (rng.uniform(-1, 1, shape).astype(np.float32) for shape in ((B, H), (T, B, H)))
Wxh, Whh, Why = (rng.standard_normal(s, np.float32) / 32 for s in ((H, I), (H, H), (O, H)))
"""
# Batches of one to a few seconds per call on each backend, on an idle 2-core machine.
INTERRUPT_BATCH = {"numpy": 16384, "numba": 8192, "cython": 32768}


@pytest.mark.slow
@pytest.mark.parametrize("kernel", ["forward", "backward"])
@pytest.mark.parametrize("backend_name", [name for name in INTERRUPT_BATCH if name in BACKENDS])
def test_a_long_call_honours_ctrl_c(backend_name, kernel):
    calls = {"forward": 'fastcalc.rnn_forward(x, h0, Wxh, Whh, Why, backend="{backend}")',
             "backward": 'fastcalc.rnn_backward(dy, x, h, h0, Wxh, Whh, Why, backend="{backend}")'}
    assert_interrupted(INTERRUPT_SETUP.format(batch=INTERRUPT_BATCH[backend_name]),
                       calls[kernel].format(backend=backend_name), f"{backend_name} {kernel}")


# ---------------------------------------------------------------------------------------------
# 13. junk arguments (issue 15): one rule on every backend, errors naming the argument

@pytest.mark.parametrize("call", FORWARD_BACKWARD, ids=["forward", "backward"])
def test_ragged_lists_are_value_errors_naming_the_argument(backend, call):
    with pytest.raises(ValueError, match="^Wxh must be an array of numbers"):
        call(valid_arguments(Wxh=[[1.0, 2.0], [3.0]]), backend=backend)


@pytest.mark.parametrize("dims", [(2**29, 2**29, 0), (2**58, 2, 0), (1, 2**59, 0),
                                  (0, 2**40, 0)])
def test_empty_inputs_whose_states_numpy_cannot_allocate_are_value_errors(backend, dims):
    """x exists (it is empty), h or h0 would not fit: named before anything is allocated."""
    with pytest.raises(ValueError, match=r"^x \(.*\) with H = 5 \(Wxh\) and O = 6 \(Why\) "
                                         "gives results of .* more than this machine's memory"):
        fastcalc.rnn_forward(np.empty(dims), None, np.empty((5, 0)), np.ones((5, 5)),
                             np.ones((6, 5)), backend=backend)


def test_a_backward_pass_of_no_steps_and_a_huge_batch_is_a_value_error(backend):
    """Found by the fuzz suite: T = 0 with B = 2**40 asked numpy for dh0 of 24 TiB."""
    x = np.empty((0, 2**40, 5))
    with pytest.raises(ValueError, match="more than this machine's memory"):
        fastcalc.rnn_backward(np.empty((0, 2**40, 2)), x, np.empty((0, 2**40, 3)), None,
                              np.ones((3, 5)), np.ones((3, 3)), np.ones((2, 3)), backend=backend)


@pytest.mark.parametrize("dims", [(2**29, 2**29, 0), (2**40, 1, 0)])
def test_empty_steps_of_huge_batches_return_at_once(backend, dims):
    """H = O = 0 with T * B huge: nothing to compute, no loop over the steps (it would hang)."""
    x = np.empty(dims)
    h, y = fastcalc.rnn_forward(x, None, np.empty((0, 0)), np.empty((0, 0)), np.empty((0, 0)),
                                backend=backend)
    assert h.shape == y.shape == (*dims[:2], 0)
    grads = fastcalc.rnn_backward(y, x, h, None, np.empty((0, 0)), np.empty((0, 0)),
                                  np.empty((0, 0)), backend=backend)
    assert grads.dx.shape == dims and grads.dh0.shape == (dims[1], 0)


@pytest.mark.parametrize("clip", [2**1024, -(2**2000), 10**400])
def test_clip_beyond_float_range_is_a_value_error_naming_it(backend, clip):
    with pytest.raises(ValueError, match="^clip must be a float, got an int beyond"):
        call_backward(valid_arguments(), clip=clip, backend=backend)


@pytest.mark.parametrize("clip", [2**62, 1e300, np.float64(1e300), np.inf])
def test_clip_beyond_every_gradient_clips_nothing(backend, clip):
    arguments = valid_arguments(x=np.random.default_rng(23).standard_normal((3, 2, 4)))
    free = call_backward(arguments, backend=backend)
    for name, actual, expected in zip(RESULTS[2:], call_backward(arguments, clip=clip,
                                                                 backend=backend), free,
                                      strict=True):
        np.testing.assert_array_equal(actual, expected, err_msg=name)


@pytest.mark.parametrize("call", FORWARD_BACKWARD, ids=["forward", "backward"])
@pytest.mark.parametrize("name", ["x", "Wxh", "Whh", "Why", "h0"])
@pytest.mark.parametrize("junk", [np.datetime64("2026-01-01"), "abc", {"a": 1}, np.float128(1)
                                  if hasattr(np, "float128") else np.longdouble(1)])
def test_junk_arrays_are_type_errors_naming_the_argument(backend, call, name, junk):
    arguments = valid_arguments()
    arguments[name] = np.full(arguments[name].shape, junk)
    with pytest.raises(TypeError, match=f"^{name} (must be a real|has dtype)"):
        call(arguments, backend=backend)


@pytest.mark.parametrize("call", FORWARD_BACKWARD, ids=["forward", "backward"])
def test_read_only_big_endian_and_strided_inputs_together(backend, call):
    """Every array in an awkward layout at once: the bits of contiguous native ones."""
    rng = np.random.default_rng(24)
    kinds = ["Fortran", "strided", "negative strides", "big-endian", "read-only"]
    awkward = {}
    for index, (name, value) in enumerate(valid_arguments().items()):
        views = layouts(rng.standard_normal(value.shape))
        kind = kinds[index % len(kinds)]
        awkward[name] = views[kind] if kind in views else views["read-only"]
    expected = call({name: np.ascontiguousarray(view, dtype=np.float64)
                     for name, view in awkward.items()}, backend=backend)
    for actual, want in zip(call(awkward, backend=backend), expected, strict=True):
        np.testing.assert_array_equal(actual, want)


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_non_finite_values_pass_silently_with_every_backend(backend):
    """inf and NaN give IEEE's results without a warning (numpy's "invalid value" ones
    included), so that calls run under ``-W error`` as the compiled kernels do."""
    x, h0 = np.full((2, 1, 1), np.inf), np.zeros((1, 2))
    Wxh, Whh, Why = np.ones((2, 1)), np.full((2, 2), np.inf), np.ones((1, 2))
    h, y = fastcalc.rnn_forward(x, h0, Wxh, Whh, Why, backend=backend)
    grads = fastcalc.rnn_backward(np.full((2, 1, 1), np.inf), x, h, h0, Wxh, Whh, Why,
                                  backend=backend)
    expected = fastcalc.rnn_backward(np.full((2, 1, 1), np.inf), x, h, h0, Wxh, Whh, Why,
                                     backend="numpy")
    for name, got, want in zip(grads._fields, grads, expected, strict=True):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=name)
