"""conv2d / conv2d_backward: torch equivalence, gradients, kernels, dtypes, layouts, errors."""


import subprocess
import sys
import textwrap
import tracemalloc

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
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import fastcalc
from fastcalc import _slices
from fastcalc.reference import convolution as reference

try:
    import torch
except ImportError:  # the torch oracle tests skip; everything else runs without it
    torch = None

COMPILED = kernel_modules("convolution")
TOLERANCE = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
RESULTS = ("out", "grad_x", "grad_weight", "grad_bias")
requires_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


def assert_close(actual, expected, rtol, label="", scale=None):
    """Within ``rtol`` of ``scale``, by default the largest magnitude of ``expected``."""
    assert actual.shape == expected.shape, label
    scale = np.abs(expected).max(initial=0) if scale is None else scale
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * max(scale, 1e-300),
                               err_msg=label)


def pair(value):
    return value if isinstance(value, tuple) else (value, value)


def output_shape(x_shape, weight_shape, stride, padding):
    """(N, F, Ho, Wo) of the layer, by the formula of the conv2d docstring."""
    (sh, sw), (ph, pw) = pair(stride), pair(padding)
    (n, _, height, width), (f, _, kh, kw) = x_shape, weight_shape
    return n, f, (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1


def run_layer(x, weight, bias, grad_out, stride, padding, backend):
    """``(out, grad_x, grad_weight, grad_bias)`` of one backend."""
    return (fastcalc.conv2d(x, weight, bias, stride, padding, backend=backend),
            *fastcalc.conv2d_backward(grad_out, x, weight, stride, padding, backend=backend))


def torch_layer(x, weight, bias, grad_out, stride, padding):
    """torch's ``(out, grad_x, grad_weight, grad_bias)`` (autograd), in float64."""
    x, weight, bias = (torch.tensor(np.asarray(a, np.float64), requires_grad=True)
                       for a in (x, weight, bias))
    out = torch.nn.functional.conv2d(x, weight, bias, stride, padding)
    out.backward(torch.tensor(np.asarray(grad_out, np.float64)))
    return out.detach().numpy(), x.grad.numpy(), weight.grad.numpy(), bias.grad.numpy()


def numpy_layer(x, weight, bias, grad_out, stride, padding):
    """The numpy backend in float64: the oracle when torch is absent."""
    arrays = (np.asarray(a, np.float64) for a in (x, weight, bias, grad_out))
    return run_layer(*arrays, stride, padding, "numpy")


def int_or_pair(low, high):
    return st.one_of(st.integers(low, high), st.tuples(st.integers(low, high),
                                                       st.integers(low, high)))


@settings(max_examples=60, deadline=None)
@given(batch=st.integers(0, 3), channels=st.integers(1, 4), height=st.integers(1, 12),
       width=st.integers(1, 12), filters=st.integers(1, 5), kh=st.integers(1, 5),
       kw=st.integers(1, 5), stride=int_or_pair(1, 3), padding=int_or_pair(0, 3),
       dtype=st.sampled_from([np.float32, np.float64]), with_bias=st.booleans(),
       seed=st.integers(0, 2**16))
def test_forward_and_gradients_equal_torch(batch, channels, height, width, filters, kh, kw,
                                           stride, padding, dtype, with_bias, seed):
    """Every backend against torch in float64 (the numpy backend when torch is absent)."""
    ph, pw = pair(padding)
    assume(kh <= height + 2 * ph and kw <= width + 2 * pw)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, channels, height, width)).astype(dtype)
    weight = rng.standard_normal((filters, channels, kh, kw)).astype(dtype)
    bias = rng.standard_normal(filters).astype(dtype) if with_bias else None
    grad_out = rng.standard_normal(output_shape(x.shape, weight.shape, stride, padding))
    grad_out = grad_out.astype(dtype)
    oracle = numpy_layer if torch is None else torch_layer
    arrays = (x, weight, np.zeros(filters) if bias is None else bias, grad_out)
    expected = oracle(*arrays, stride, padding)
    # Rounding errors scale with the sums of the terms' magnitudes, which the results
    # may cancel (grad_bias of few terms): the same layer of absolute values bounds them.
    scales = [bound.max(initial=0) for bound in oracle(*map(np.abs, arrays), stride, padding)]
    for backend in fastcalc.available_backends():
        results = run_layer(x, weight, bias, grad_out, stride, padding, backend)
        for name, actual, want, scale in zip(RESULTS, results, expected, scales, strict=True):
            assert actual.dtype == dtype, f"{backend} {name}"
            assert_close(actual, want, TOLERANCE[np.dtype(dtype)], f"{backend} {name}", scale)


@requires_torch
def test_benchmark_shape_equals_torch_autograd_in_float32(backend):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 16, 20, 20)).astype(np.float32)
    weight = rng.standard_normal((8, 16, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(8).astype(np.float32)
    grad_out = rng.standard_normal((4, 8, 20, 20)).astype(np.float32)
    expected = torch_layer(x, weight, bias, grad_out, 1, 1)
    results = run_layer(x, weight, bias, grad_out, 1, 1, backend)
    for name, actual, want in zip(RESULTS, results, expected, strict=True):
        assert actual.dtype == np.float32, name
        assert_close(actual, want, 1e-5, name)


@pytest.mark.parametrize(("stride", "padding"), [(1, 0), (2, 1), ((1, 2), (2, 0))])
def test_gradients_pass_check_grad(backend, stride, padding):
    rng = np.random.default_rng(2)
    arrays = {"x": rng.standard_normal((2, 2, 5, 6)),
              "weight": rng.standard_normal((3, 2, 3, 2)),
              "bias": rng.standard_normal(3)}
    grad_out = rng.standard_normal(output_shape(arrays["x"].shape, arrays["weight"].shape,
                                                stride, padding))
    gradients = fastcalc.conv2d_backward(grad_out, arrays["x"], arrays["weight"], stride,
                                         padding, backend=backend)

    def loss(trial):
        out = fastcalc.conv2d(trial["x"], trial["weight"], trial["bias"], stride, padding,
                              backend=backend)
        return np.sum(grad_out * out)

    assert_gradients_pass_check_grad(loss, arrays, dict(zip(arrays, gradients, strict=True)),
                                     1e-7)


# Layers (N, C, H, W, F, kh, kw, stride, padding) chosen for vector-width edges: forward
# output widths Wo include 1, 7, 8, 15, 16, 17, 31, 33, 64, 65 and 100, input widths W (the
# input gradient's) run from 1 to 100; F is rarely a multiple of 4; C is 1 and 17.  The
# input gradient's call has upsample = stride ((2, 2), (3, 3), (1, 2), (3, 1)) and pad =
# kernel - 1 - padding, negative where the padding reaches the kernel size.  The last two
# are large enough for the compiled kernels' parallel paths with threads=2.
LAYERS = [
    (1, 1, 1, 1, 1, 1, 1, 1, 0),
    (3, 1, 5, 7, 5, 1, 1, 1, 0),
    (1, 17, 4, 10, 3, 3, 3, 1, 0),
    (2, 3, 6, 16, 6, 2, 2, 1, 0),
    (1, 2, 5, 17, 9, 2, 2, 1, 0),
    (2, 1, 6, 17, 1, 3, 3, 1, 1),
    (1, 17, 12, 41, 3, 11, 11, 1, 0),
    (1, 3, 9, 33, 5, 3, 3, 2, 1),
    (3, 2, 11, 98, 6, 5, 5, 3, 2),
    (1, 4, 7, 64, 5, 3, 3, 1, 1),
    (2, 1, 5, 67, 9, 3, 3, 1, 0),
    (1, 5, 8, 100, 3, 7, 7, 1, 3),
    (1, 2, 6, 31, 5, 3, 3, (1, 2), 0),
    (2, 3, 10, 20, 6, 3, 2, (3, 1), (1, 0)),
    (1, 2, 6, 9, 3, 1, 1, 1, 1),
    (2, 3, 7, 12, 5, 2, 3, 2, 3),
    (1, 1, 4, 4, 3, 5, 5, 1, 2),
    (0, 2, 5, 9, 3, 3, 3, 1, 1),
    (1, 17, 5, 8, 1, 2, 7, 2, (0, 3)),
    (3, 8, 20, 33, 9, 3, 3, 1, 1),
    (2, 6, 30, 65, 5, 5, 5, 2, 2),
]


def layer_id(layer):
    n, c, height, width, f, kh, kw, stride, padding = layer
    return (f"x{n}x{c}x{height}x{width}-w{f}x{c}x{kh}x{kw}"
            f"-s{'x'.join(map(str, pair(stride)))}-p{'x'.join(map(str, pair(padding)))}")


@pytest.mark.parametrize("implementation", sorted(COMPILED))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layer", LAYERS, ids=layer_id)
@pytest.mark.parametrize("threads", [1, 2])
def test_compiled_kernels_equal_the_reference(implementation, dtype, layer, threads):
    """The three kernel calls of a layer's forward and backward pass, on the same arguments."""
    n, c, height, width, f, kh, kw, stride, padding = layer
    stride, (ph, pw) = pair(stride), pair(padding)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, c, height, width)).astype(dtype)
    weight = rng.standard_normal((f, c, kh, kw)).astype(dtype)
    grad_out = rng.standard_normal(output_shape(x.shape, weight.shape, stride, padding))
    grad_out = grad_out.astype(dtype)
    flipped = np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    calls = {  # label: (kernel, inputs, output shape, geometry)
        "forward": ("conv2d", (x, weight, rng.standard_normal(f).astype(dtype)), grad_out.shape,
                    (stride, (1, 1), (ph, pw))),
        "upsampled": ("conv2d", (grad_out, flipped, rng.standard_normal(c).astype(dtype)),
                      x.shape, ((1, 1), stride, (kh - 1 - ph, kw - 1 - pw))),
        "weight gradient": ("conv2d_grad_weight", (grad_out, x), (n, *weight.shape),
                            (1, stride, (ph, pw))),
        "weight gradient in blocks of 2": ("conv2d_grad_weight", (grad_out, x),
                                           (-(-n // 2), *weight.shape), (2, stride, (ph, pw))),
    }
    for label, (name, inputs, shape, geometry) in calls.items():
        expected = np.empty(shape, dtype)
        getattr(reference, name)(*inputs, expected, *geometry, 1)
        out = np.full(shape, np.nan, dtype)
        getattr(COMPILED[implementation], name)(*inputs, out, *geometry, threads)
        assert_close(out, expected, TOLERANCE[np.dtype(dtype)], f"{label} {geometry}")


@pytest.mark.parametrize("argument", ["x", "weight", "bias", "grad_out"])
def test_any_memory_layout_gives_the_contiguous_result(backend, argument):
    # Every array a hypercube (kernel 5, padding 2 keep 5 x 5 images), so that each view
    # of layouts(), the transposed one included, is a valid argument.
    rng = np.random.default_rng(4)
    arrays = {"x": rng.standard_normal((5, 5, 5, 5)), "weight": rng.standard_normal((5, 5, 5, 5)),
              "bias": rng.standard_normal(5), "grad_out": rng.standard_normal((5, 5, 5, 5))}
    for label, view in layouts(arrays[argument]).items():
        before = view.copy()
        contiguous = {**arrays, argument: np.ascontiguousarray(view, dtype=np.float64)}
        expected = run_layer(**contiguous, stride=1, padding=2, backend=backend)
        results = run_layer(**{**arrays, argument: view}, stride=1, padding=2, backend=backend)
        np.testing.assert_array_equal(view, before, err_msg=f"{label} {argument} changed")
        for name, actual, want in zip(RESULTS, results, expected, strict=True):
            assert actual.dtype == np.float64
            assert_close(actual, want, 1e-12, f"{label} {argument}: {name}")


@pytest.mark.parametrize(
    ("dtypes", "result"),
    # dtypes of x, weight, and bias and grad_out
    [((np.float32, np.float32, np.float32), np.float32),
     ((np.float64, np.float64, np.float64), np.float64),
     ((np.int32, np.int64, np.int8), np.float64),
     ((np.uint8, bool, np.int16), np.float64),
     ((bool, bool, bool), np.float64),
     ((np.float32, np.float64, np.float32), np.float64),
     ((np.float64, np.float32, np.float32), np.float64),
     ((np.float32, np.float32, np.float64), np.float64),
     ((np.float16, np.float16, np.float16), np.float16)],
)
def test_result_dtypes(backend, dtypes, result):
    rng = np.random.default_rng(5)
    shapes = [(2, 3, 7, 6), (4, 3, 3, 2), (4,), (2, 4, 4, 7)]  # x, weight, bias, grad_out
    x, weight, bias, grad_out = (
        (rng.integers(-3, 4, shape) if np.dtype(dtype).kind in "biu"
         else rng.standard_normal(shape)).astype(dtype)
        for shape, dtype in zip(shapes, (*dtypes, dtypes[2]), strict=True))
    results = run_layer(x, weight, bias, grad_out, (2, 1), 1, backend)
    expected = run_layer(*(a.astype(np.float64) for a in (x, weight, bias, grad_out)), (2, 1), 1,
                         backend)
    rtol = {np.float16: 1e-2, np.float32: 1e-5, np.float64: 1e-12}[result]
    for name, actual, want in zip(RESULTS, results, expected, strict=True):
        assert actual.dtype == result, name
        assert_close(actual.astype(np.float64), want, rtol, name)


def test_float16_is_computed_in_float32(backend):
    rng = np.random.default_rng(6)
    arrays = [rng.standard_normal(shape).astype(np.float16)
              for shape in [(2, 3, 9, 8), (5, 3, 3, 3), (5,), (2, 5, 7, 6)]]
    results = run_layer(*arrays, 1, 0, backend)
    in_float32 = run_layer(*(a.astype(np.float32) for a in arrays), 1, 0, backend)
    for name, actual, want in zip(RESULTS, results, in_float32, strict=True):
        np.testing.assert_array_equal(actual, want.astype(np.float16), err_msg=name)


def bad_layer(**changes):
    """A valid layer (output (1, 3, 4, 4)) with some arguments replaced."""
    return {"x": np.ones((1, 2, 5, 5)), "weight": np.ones((3, 2, 2, 2)), "stride": 1,
            "padding": 0, **changes}


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [(bad_layer(x=np.ones((2, 5, 5))), ValueError,
      r"x must have shape \(N, C, H, W\), got \(2, 5, 5\)"),
     (bad_layer(x=np.ones((1, 1, 2, 5, 5))), ValueError,
      r"x must have shape \(N, C, H, W\), got \(1, 1, 2, 5, 5\)"),
     (bad_layer(weight=np.ones((3, 2, 2))), ValueError,
      r"weight must have shape \(F, C, kh, kw\), got \(3, 2, 2\)"),
     (bad_layer(weight=np.ones((3, 4, 2, 2))), ValueError,
      r"weight \(3, 4, 2, 2\) expects 4 input channels, but x \(1, 2, 5, 5\) has 2"),
     (bad_layer(weight=np.ones((3, 2, 0, 2))), ValueError,
      r"kernel of weight \(3, 2, 0, 2\) must be non-empty"),
     (bad_layer(weight=np.ones((3, 2, 2, 0))), ValueError,
      r"kernel of weight \(3, 2, 2, 0\) must be non-empty"),
     (bad_layer(weight=np.ones((3, 2, 2, 6))), ValueError,
      r"weight \(3, 2, 2, 6\) must be non-empty and fit in the padded input of x "
      r"\(1, 2, 5, 5\): 5 x 5"),
     (bad_layer(weight=np.ones((3, 2, 8, 2)), padding=1), ValueError,
      r"fit in the padded input of x \(1, 2, 5, 5\): 7 x 7 with padding \(1, 1\)"),
     (bad_layer(stride=0), ValueError, "stride must be >= 1, got 0"),
     (bad_layer(stride=(1, -2)), ValueError, r"stride must be >= 1, got \(1, -2\)"),
     (bad_layer(padding=-1), ValueError, "padding must be >= 0, got -1"),
     (bad_layer(padding=(0, -1)), ValueError, r"padding must be >= 0, got \(0, -1\)"),
     (bad_layer(stride=1.5), TypeError, "stride must be an int or a pair of ints, got 1.5"),
     (bad_layer(padding=1.5), TypeError, "padding must be an int or a pair of ints, got 1.5"),
     (bad_layer(stride=(1, 2.0)), TypeError, "stride must be an int or a pair of ints"),
     (bad_layer(stride=(1, 2, 3)), TypeError, "stride must be an int or a pair of ints"),
     (bad_layer(padding="1"), TypeError, "padding must be an int or a pair of ints"),
     (bad_layer(x=np.ones((1, 2, 5, 5), complex)), TypeError, "x is complex"),
     (bad_layer(weight=np.ones((3, 2, 2, 2), np.complex64)), TypeError, "weight is complex"),
     (bad_layer(x=np.ones((1, 2, 5, 5), object)), TypeError,
      "x must be a real floating, integer or bool array, got dtype object"),
     (bad_layer(weight=np.full((3, 2, 2, 2), "a")), TypeError, "weight must be a real")],
)
def test_bad_layer_arguments(arguments, error, match):
    with pytest.raises(error, match=match):
        fastcalc.conv2d(**arguments)
    with pytest.raises(error, match=match):
        fastcalc.conv2d_backward(np.ones((1, 3, 4, 4)), **arguments)


@pytest.mark.parametrize(
    ("bias", "error", "match"),
    [(np.ones(2), ValueError, r"bias must have shape \(3,\) for weight \(3, 2, 2, 2\), got \(2,\)"),
     (np.ones((3, 1)), ValueError, r"bias must have shape \(3,\) .* got \(3, 1\)"),
     (1.0, ValueError, r"bias must have shape \(3,\) .* got \(\)"),
     (np.ones(3, complex), TypeError, "bias is complex"),
     (np.ones(3, object), TypeError, "bias must be a real")],
)
def test_bad_bias(bias, error, match):
    with pytest.raises(error, match=match):
        fastcalc.conv2d(**bad_layer(), bias=bias)


@pytest.mark.parametrize(
    ("grad_out", "changes", "error", "match"),
    [(np.ones((1, 3, 5, 5)), {}, ValueError,
      r"grad_out must have the shape of the layer's output \(1, 3, 4, 4\) "
      r"\(x \(1, 2, 5, 5\), weight \(3, 2, 2, 2\), .*got \(1, 3, 5, 5\)"),
     (np.ones((3, 4, 4)), {}, ValueError, r"output \(1, 3, 4, 4\) .* got \(3, 4, 4\)"),
     (np.ones((1, 3, 4, 4)), {"stride": 2}, ValueError,
      r"output \(1, 3, 2, 2\) .*stride \(2, 2\), padding \(0, 0\)\), got \(1, 3, 4, 4\)"),
     (np.ones((1, 3, 4, 4)), {"padding": (1, 0)}, ValueError,
      r"output \(1, 3, 6, 4\) .*padding \(1, 0\)\), got \(1, 3, 4, 4\)"),
     (np.ones((1, 3, 4, 4), complex), {}, TypeError, "grad_out is complex"),
     (np.ones((1, 3, 4, 4), object), {}, TypeError, "grad_out must be a real")],
)
def test_bad_grad_out(grad_out, changes, error, match):
    with pytest.raises(error, match=match):
        fastcalc.conv2d_backward(grad_out, **bad_layer(**changes))


def test_empty_batch_gives_empty_output_and_zero_parameter_gradients(backend):
    rng = np.random.default_rng(7)
    x = np.zeros((0, 3, 6, 6), np.float32)
    weight = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    out, grad_x, grad_weight, grad_bias = run_layer(
        x, weight, bias, np.zeros((0, 4, 3, 3), np.float32), 2, 1, backend)
    assert out.shape == (0, 4, 3, 3) and grad_x.shape == x.shape
    np.testing.assert_array_equal(grad_weight, np.zeros(weight.shape))
    np.testing.assert_array_equal(grad_bias, np.zeros(4))
    assert {a.dtype for a in (out, grad_x, grad_weight, grad_bias)} == {np.dtype(np.float32)}


def test_no_filters_give_empty_output_and_zero_input_gradient(backend):
    x = np.random.default_rng(8).standard_normal((2, 3, 6, 5))
    out, grad_x, grad_weight, grad_bias = run_layer(
        x, np.zeros((0, 3, 2, 2)), np.zeros(0), np.zeros((2, 0, 5, 4)), 1, 0, backend)
    assert out.shape == (2, 0, 5, 4)
    assert grad_weight.shape == (0, 3, 2, 2) and grad_bias.shape == (0,)
    np.testing.assert_array_equal(grad_x, np.zeros(x.shape))


def test_no_input_channels_give_the_bias(backend):
    rng = np.random.default_rng(9)
    bias, grad_out = rng.standard_normal(3), rng.standard_normal((2, 3, 4, 5))
    out, grad_x, grad_weight, grad_bias = run_layer(
        np.zeros((2, 0, 5, 6)), np.zeros((3, 0, 2, 2)), bias, grad_out, 1, 0, backend)
    np.testing.assert_array_equal(out, np.broadcast_to(bias[:, None, None], (2, 3, 4, 5)))
    assert grad_x.shape == (2, 0, 5, 6) and grad_weight.shape == (3, 0, 2, 2)
    np.testing.assert_allclose(grad_bias, grad_out.sum(axis=(0, 2, 3)), rtol=1e-14)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_and_inf_in_x_reach_exactly_the_windows_over_them(backend, value):
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 2, 7, 8))
    x[1, 0, 3, 5] = value
    weight = rng.uniform(0.5, 1.5, (3, 2, 3, 2))  # positive: inf stays +inf
    out = fastcalc.conv2d(x, weight, rng.standard_normal(3), backend=backend)
    hit = np.zeros(out.shape, bool)
    hit[1, :, 1:4, 4:6] = True  # windows of rows 1..3 and columns 4..5 cover x[1, :, 3, 5]
    np.testing.assert_array_equal(~np.isfinite(out), hit)
    np.testing.assert_array_equal(out[hit], value)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_and_inf_in_grad_out_reach_exactly_the_inputs_under_their_window(backend, value):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 2, 7, 8))
    weight = rng.uniform(0.5, 1.5, (3, 2, 3, 2))
    grad_out = rng.standard_normal((2, 3, 5, 7))
    grad_out[1, 2, 3, 5] = value
    grad_x, grad_weight, grad_bias = fastcalc.conv2d_backward(grad_out, x, weight,
                                                              backend=backend)
    hit = np.zeros(x.shape, bool)
    hit[1, :, 3:6, 5:7] = True  # the window of output (3, 5)
    np.testing.assert_array_equal(~np.isfinite(grad_x), hit)
    np.testing.assert_array_equal(grad_x[hit], value)
    filter_2 = np.zeros(weight.shape, bool)
    filter_2[2] = True
    np.testing.assert_array_equal(~np.isfinite(grad_weight), filter_2)
    np.testing.assert_array_equal(~np.isfinite(grad_bias), [False, False, True])


def threaded_problem(seed, count):
    """A layer large enough for the parallel paths: weight, and ``count`` (x, grad_out)."""
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((8, 8, 3, 3))
    pairs = [(rng.standard_normal((3, 8, 32, 32)), rng.standard_normal((3, 8, 32, 32)))
             for _ in range(count)]
    return weight, pairs


def test_thread_safety(backend):
    """8 threads running the layer at once get the results of one thread."""
    weight, pairs = threaded_problem(12, 8)
    expected = [run_layer(x, weight, None, grad_out, 1, 1, backend) for x, grad_out in pairs]
    results = [None] * 8

    def work(index):
        for _ in range(3):
            x, grad_out = pairs[index]
            results[index] = run_layer(x, weight, None, grad_out, 1, 1, backend)

    run_concurrently(work)
    assert_threads_agree(results, expected, RESULTS)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_thread_gives_the_result_of_all_threads(backend, dtype):
    weight, [(x, grad_out)] = threaded_problem(13, 1)
    arrays = (x.astype(dtype), weight.astype(dtype), None, grad_out.astype(dtype))
    default = run_layer(*arrays, 1, 1, backend)
    fastcalc.set_num_threads(1)
    single = run_layer(*arrays, 1, 1, backend)
    for name, actual, expected in zip(RESULTS, single, default, strict=True):
        assert_close(actual, expected, TOLERANCE[np.dtype(dtype)], name)


def test_pixels_only_in_the_padding_get_zero_gradient(backend):
    """H=1 with padding 3 and stride 5: the only pixel is never under a window."""
    rng = np.random.default_rng(13)
    x, weight = rng.standard_normal((2, 3, 1, 1)), rng.standard_normal((4, 3, 1, 1))
    out = fastcalc.conv2d(x, weight, None, 5, 3, backend=backend)
    np.testing.assert_array_equal(out, np.zeros((2, 4, 2, 2)))
    grad_x, grad_weight, _ = fastcalc.conv2d_backward(np.ones_like(out), x, weight, 5, 3,
                                                      backend=backend)
    np.testing.assert_array_equal(grad_x, 0)
    np.testing.assert_array_equal(grad_weight, 0)


def run_in_subprocess(code):
    """Run ``code`` in a fresh interpreter: a crash is a failed test, not a dead test run."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.parametrize("backend", ["numpy", "numba", "cython"])
def test_strides_near_2_to_the_63_give_the_reference_result_in_a_subprocess(backend):
    """Issue 15: Cython overflowed 64-bit sizes (a double free, a SIGSEGV)."""
    if backend not in fastcalc.available_backends():
        pytest.skip(f"{backend} is not available")
    run_in_subprocess(f"""
        import numpy as np, fastcalc
        x, w = np.arange(1.0, 65.0).reshape(1, 1, 8, 8), np.ones((1, 1, 4, 4))
        for stride in (2**60, 2**61, 2**62, 2**63 - 1, 2**63, 2**100, (2**62, 1), (1, 2**61)):
            clamped = tuple(min(s, 5) for s in (stride if isinstance(stride, tuple)
                                                else (stride, stride)))
            expected = fastcalc.conv2d(x, w, stride=clamped, backend="numpy")
            out = fastcalc.conv2d(x, w, stride=stride, backend="{backend}")
            assert np.array_equal(out, expected), (stride, out, expected)
            grad_out = np.ones(out.shape)
            expected = fastcalc.conv2d_backward(grad_out, x, w, clamped, backend="numpy")
            got = fastcalc.conv2d_backward(grad_out, x, w, stride, backend="{backend}")
            assert all(np.array_equal(a, b) for a, b in zip(got, expected)), stride
        assert fastcalc.conv2d(x, w, stride=2**62, backend="{backend}").item() == 232.0
        ones = np.ones((1, 1, 8, 8), "f4")
        assert fastcalc.conv2d(ones, ones, stride=2**61, backend="{backend}").item() == 64.0
    """)


@pytest.mark.parametrize("stride", [2**20, 2**27, 2**31, (2**30, 3), (3, 2**31)])
def test_memory_is_bounded_by_the_data_not_the_stride(backend, stride):
    """Issue 15: the scratch grew with the stride (GBs for an 8 x 8 image, TiBs on Numba)."""
    rng = np.random.default_rng(20)
    x, weight = rng.standard_normal((2, 3, 8, 8)), rng.standard_normal((4, 3, 4, 4))
    expected = fastcalc.conv2d(x, weight, None, tuple(min(s, 5) for s in pair(stride)),
                               backend="numpy")
    warm_up = fastcalc.conv2d(x, weight, backend=backend)  # Numba's compilation allocates
    fastcalc.conv2d_backward(np.ones_like(warm_up), x, weight, backend=backend)
    tracemalloc.start()
    try:
        out = fastcalc.conv2d(x, weight, None, stride, backend=backend)
        gradients = fastcalc.conv2d_backward(np.ones_like(out), x, weight, stride,
                                             backend=backend)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    assert gradients[0].shape == x.shape
    assert peak < 1 << 20, f"{peak} bytes"


def test_input_gradient_memory_is_bounded_with_many_more_filters_than_channels(backend):
    """The input gradient's spread-out grad_out has F channels at the size of x."""
    rng = np.random.default_rng(21)
    x, weight = rng.standard_normal((1, 1, 64, 64)), rng.standard_normal((4096, 1, 2, 2))
    grad_out = rng.standard_normal((1, 4096, 1, 1))
    expected = np.zeros(x.shape)
    expected[0, 0, :2, :2] = np.tensordot(grad_out[0, :, 0, 0], weight[:, 0], axes=1)
    fastcalc.conv2d_backward(grad_out, x, weight, 64, backend=backend)  # Numba compiles
    tracemalloc.start()
    try:
        grad_x = fastcalc.conv2d_backward(grad_out, x, weight, 64, backend=backend)[0]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_allclose(grad_x, expected, rtol=1e-12, atol=1e-12)
    # grad_x, grad_weight and their temporaries: 32 and 128 KiB; the spread-out
    # grad_out would have taken 4096 * 65 * 65 * 8 bytes (138 MB).
    assert peak < 4 << 20, f"{peak} bytes"


@pytest.mark.parametrize(
    "padding", [2**40, 2**63, 2**100, (0, 2**40), (2**40, 0), 2**20, (3, 2**33)])
def test_absurd_padding_is_a_value_error_before_anything_is_allocated(padding):
    x, weight = np.ones((2, 3, 8, 8)), np.ones((4, 3, 3, 3))
    for call in (lambda: fastcalc.conv2d(x, weight, padding=padding),
                 lambda: fastcalc.conv2d_backward(np.ones((2, 4, 6, 6)), x, weight,
                                                  padding=padding),
                 lambda: fastcalc.conv2d(x, weight, stride=2**62, padding=padding)):
        tracemalloc.start()
        try:
            with pytest.raises(ValueError, match=r"padding \(.*\) is too large.*memory"):
                call()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 1 << 20, f"{peak} bytes"


def test_a_huge_stride_equals_the_largest_stride_that_changes_the_output(backend):
    rng = np.random.default_rng(22)
    x, weight = rng.standard_normal((2, 3, 9, 7)), rng.standard_normal((4, 3, 2, 3))
    bias = rng.standard_normal(4)
    for huge, clamped in [(2**63, (10, 8)), ((2**64, 2), (10, 2)), ((1, np.int64(2**62)), (1, 8))]:
        out = fastcalc.conv2d(x, weight, bias, huge, 1, backend=backend)
        np.testing.assert_array_equal(out, fastcalc.conv2d(x, weight, bias, clamped, 1,
                                                           backend=backend))
        grad_out = rng.standard_normal(out.shape)
        for actual, expected in zip(
                fastcalc.conv2d_backward(grad_out, x, weight, huge, 1, backend=backend),
                fastcalc.conv2d_backward(grad_out, x, weight, clamped, 1, backend=backend),
                strict=True):
            np.testing.assert_array_equal(actual, expected)


def scattered_input_gradient(grad_out, weight, stride, padding, x_shape):
    """The exact input gradient by its definition: only the terms that exist, in loops."""
    (sh, sw), (ph, pw) = pair(stride), pair(padding)
    grad_x = np.zeros(x_shape)
    _, _, kh, kw = weight.shape
    for n, f, i, j in np.ndindex(grad_out.shape):
        for c, a, b in np.ndindex(weight.shape[1:]):
            y, x = i * sh + a - ph, j * sw + b - pw
            if 0 <= y < x_shape[2] and 0 <= x < x_shape[3]:
                grad_x[n, c, y, x] += grad_out[n, f, i, j] * weight[f, c, a, b]
    return grad_x


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_a_non_finite_weight_reaches_only_the_inputs_under_it(backend, value):
    """Issue 15: NaN in grad_x at inputs the layer never reads (stride 3 > kernel 2)."""
    weight = np.ones((1, 1, 2, 2))
    weight[0, 0, 1, 1] = value
    grad_x = fastcalc.conv2d_backward(np.ones((1, 1, 2, 2)), np.ones((1, 1, 5, 5)), weight, 3,
                                      backend=backend)[0]
    v = value
    expected = np.array([[1, 1, 0, 1, 1],
                         [1, v, 0, 1, v],
                         [0, 0, 0, 0, 0],  # row 2 (and column 2) is never read
                         [1, 1, 0, 1, 1],
                         [1, v, 0, 1, v]])
    np.testing.assert_array_equal(grad_x[0, 0], expected)


@pytest.mark.parametrize(("stride", "padding"), [(1, 0), (2, 1), (3, 0), ((3, 1), (0, 2))])
def test_non_finite_weights_give_the_exact_input_gradient(backend, stride, padding):
    rng = np.random.default_rng(23)
    x, weight = rng.standard_normal((2, 3, 8, 7)), rng.standard_normal((4, 3, 2, 3))
    weight[1, 2, 1, 0], weight[3, 0, 0, 2], weight[0, 1, 1, 1] = np.inf, -np.inf, np.nan
    grad_out = rng.standard_normal(output_shape(x.shape, weight.shape, stride, padding))
    grad_x = fastcalc.conv2d_backward(grad_out, x, weight, stride, padding, backend=backend)[0]
    expected = scattered_input_gradient(grad_out, weight, stride, padding, x.shape)
    np.testing.assert_array_equal(np.isnan(grad_x), np.isnan(expected))
    np.testing.assert_allclose(grad_x, expected, rtol=1e-12, atol=1e-12)


def test_the_input_gradient_paths_agree_on_finite_weights(backend, monkeypatch):
    """The tap-by-tap scatter (non-finite weights, many filters) against the correlation."""
    rng = np.random.default_rng(24)
    x, weight = rng.standard_normal((3, 2, 9, 8)), rng.standard_normal((5, 2, 3, 2))
    for stride, padding in [(1, 0), (2, 1), ((3, 2), (2, 0))]:
        grad_out = rng.standard_normal(output_shape(x.shape, weight.shape, stride, padding))
        expected = fastcalc.conv2d_backward(grad_out, x, weight, stride, padding,
                                            backend=backend)[0]
        with monkeypatch.context() as patch:
            patch.setattr(fastcalc.convolution, "_SPREAD_RATIO", 0)
            scattered = fastcalc.conv2d_backward(grad_out, x, weight, stride, padding,
                                                 backend=backend)[0]
        np.testing.assert_allclose(scattered, expected, rtol=1e-12, atol=1e-12)


def bit_identity_problem(dtype):
    rng = np.random.default_rng(25)
    x = rng.standard_normal((5, 8, 24, 21)).astype(dtype)
    weight = rng.standard_normal((10, 8, 3, 3)).astype(dtype)
    grad_out = rng.standard_normal(output_shape(x.shape, weight.shape, (2, 1), 1)).astype(dtype)
    return x, weight, grad_out


@pytest.mark.parametrize("implementation", sorted(COMPILED))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("block", [1, 2, 5])
def test_weight_gradient_kernels_are_bit_identical_for_any_thread_count(implementation, dtype,
                                                                       block):
    """Issue 15: the last bits of grad_weight changed between 1 and 2 threads."""
    x, weight, grad_out = bit_identity_problem(dtype)
    results = {}
    for threads in (1, 2, 3, 8):
        partial = np.full((-(-len(x) // block), *weight.shape), np.nan, dtype)
        COMPILED[implementation].conv2d_grad_weight(grad_out, x, partial, block, (2, 1), (1, 1),
                                                    threads)
        results[threads] = partial
    expected = np.empty_like(results[1])
    for k in range(len(expected)):
        reference.conv2d_grad_weight(grad_out[k * block:(k + 1) * block],
                                     x[k * block:(k + 1) * block], expected[k:k + 1], block,
                                     (2, 1), (1, 1), 1)
    assert_close(results[1], expected, TOLERANCE[np.dtype(dtype)])
    for threads, partial in results.items():
        np.testing.assert_array_equal(partial, results[1], err_msg=f"{threads} threads")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradients_are_bit_identical_for_any_thread_count_and_slicing(backend, dtype,
                                                                     monkeypatch):
    x, weight, grad_out = bit_identity_problem(dtype)
    fastcalc.set_num_threads(1)
    expected = fastcalc.conv2d_backward(grad_out, x, weight, (2, 1), 1, backend=backend)
    runs = {}
    for threads in (2, 3, 8):
        fastcalc.set_num_threads(threads)
        runs[f"{threads} threads"] = fastcalc.conv2d_backward(grad_out, x, weight, (2, 1), 1,
                                                              backend=backend)
    # Slices of one block of images at a time (every slice aiming at a nanosecond).
    monkeypatch.setattr(_slices, "SLICE_SECONDS", 1e-9)
    runs["sliced"] = fastcalc.conv2d_backward(grad_out, x, weight, (2, 1), 1, backend=backend)
    for label, results in runs.items():
        for name, actual, want in zip(RESULTS[1:], results, expected, strict=True):
            np.testing.assert_array_equal(actual, want, err_msg=f"{label}: {name}")


def test_a_sliced_forward_pass_equals_a_whole_one(backend, monkeypatch):
    x, weight, _ = bit_identity_problem(np.float64)
    expected = fastcalc.conv2d(x, weight, None, 2, 1, backend=backend)
    monkeypatch.setattr(_slices, "SLICE_SECONDS", 1e-9)
    np.testing.assert_array_equal(fastcalc.conv2d(x, weight, None, 2, 1, backend=backend),
                                  expected)


# Per backend, a layer of one to several seconds on an idle machine (numpy is slower).
LONG_LAYERS = {"numpy": 160, "numba": 240, "cython": 480}


@pytest.mark.slow
@pytest.mark.parametrize("function", ["conv2d", "conv2d_backward"])
@pytest.mark.parametrize("backend", sorted(LONG_LAYERS))
def test_ctrl_c_interrupts_a_long_call(backend, function):
    if backend not in fastcalc.available_backends():
        pytest.skip(f"{backend} is not available")
    setup = f"""
import numpy as np, fastcalc
rng = np.random.default_rng(0)
x = rng.standard_normal(({LONG_LAYERS[backend]}, 64, 48, 48)).astype(np.float32)
weight = rng.standard_normal((64, 64, 5, 5)).astype(np.float32)
grad_out = rng.standard_normal((len(x), 64, 48, 48)).astype(np.float32)
"""
    call = {"conv2d": f"fastcalc.conv2d(x, weight, padding=2, backend={backend!r})",
            "conv2d_backward": f"fastcalc.conv2d_backward(grad_out, x, weight, padding=2, "
                               f"backend={backend!r})"}[function]
    assert_interrupted(setup, call, f"{backend} {function}")
