"""convolve2d / correlate2d: scipy.signal equivalence, batches, dtypes, layouts, errors."""

import re
import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.signal
from helpers import assert_interrupted, kernel_modules, layouts, run_concurrently
from hypothesis import given, settings
from hypothesis import strategies as st

import fastcalc
from fastcalc.reference import convolution as reference

COMPILED = kernel_modules("convolution")
FUNCTIONS = {"correlate2d": (fastcalc.correlate2d, scipy.signal.correlate2d),
             "convolve2d": (fastcalc.convolve2d, scipy.signal.convolve2d)}


def assert_close(actual, expected, rtol):
    """Within ``rtol`` of the largest output magnitude, as the issue specifies."""
    assert actual.shape == expected.shape
    scale = max(np.abs(expected).max(initial=0), 1e-300)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale)


@settings(max_examples=80, deadline=None)
@given(height=st.integers(1, 12), width=st.integers(1, 12), kh=st.integers(1, 7),
       kw=st.integers(1, 7), name=st.sampled_from(sorted(FUNCTIONS)),
       mode=st.sampled_from(["full", "same", "valid"]),
       boundary=st.sampled_from(["fill", "wrap", "symm", "circular", "symmetric"]),
       fillvalue=st.sampled_from([0.0, 1.5, -3.0]), seed=st.integers(0, 2**16))
def test_equals_scipy_in_every_mode_and_boundary(height, width, kh, kw, name, mode, boundary,
                                                 fillvalue, seed):
    ours, theirs = FUNCTIONS[name]
    rng = np.random.default_rng(seed)
    image, kernel = rng.standard_normal((height, width)), rng.standard_normal((kh, kw))
    try:
        expected = theirs(image, kernel, mode, boundary, fillvalue)
    except ValueError as error:
        with pytest.raises(ValueError, match=re.escape(str(error)[:30])):
            ours(image, kernel, mode, boundary, fillvalue)
        return
    for backend in fastcalc.available_backends():
        assert_close(ours(image, kernel, mode, boundary, fillvalue, backend=backend),
                     expected, 1e-12)
    assert_close(ours(image, kernel, mode, boundary, fillvalue, method="fft"), expected, 1e-12)


SPECIAL = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e300, 5e-324])


@settings(max_examples=80, deadline=None)
@given(height=st.integers(1, 9), width=st.integers(1, 9), kh=st.integers(1, 5),
       kw=st.integers(1, 5), name=st.sampled_from(sorted(FUNCTIONS)),
       mode=st.sampled_from(["full", "same", "valid"]),
       boundary=st.sampled_from(["fill", "wrap", "symm"]),
       fillvalue=st.sampled_from([0.0, 2.0, np.nan]), seed=st.integers(0, 2**16),
       specials=st.lists(st.tuples(st.booleans(), st.integers(0, 80), SPECIAL), max_size=4),
       integers=st.booleans())
def test_special_values_and_integers_as_scipy_gives_them(height, width, kh, kw, name, mode,
                                                        boundary, fillvalue, seed, specials,
                                                        integers):
    """Non-finite and extreme values in either operand, NaN fill values and integer data:
    the default method gives scipy's NaN and infinity pattern and its values, on every
    backend."""
    ours, theirs = FUNCTIONS[name]
    rng = np.random.default_rng(seed)
    if integers:
        image = rng.integers(-50, 50, (height, width))
        kernel = rng.integers(-5, 5, (kh, kw))
    else:
        image, kernel = rng.standard_normal((height, width)), rng.standard_normal((kh, kw))
        for in_kernel, position, value in specials:
            target = kernel if in_kernel else image
            target.flat[position % target.size] = value
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy's own ComplexWarning on integer input
            expected = theirs(image, kernel, mode, boundary, fillvalue)
    except ValueError:
        return  # the shapes scipy refuses: the test above checks ours refuses them too
    finite = np.isfinite(expected)
    scale = np.abs(np.where(finite, expected, 0)).max(initial=0)
    for backend in fastcalc.available_backends():
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # silent, as scipy is
            got = ours(image, kernel, mode, boundary, fillvalue, backend=backend)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=backend)
        np.testing.assert_array_equal(got[~finite & ~np.isnan(expected)],
                                      expected[~finite & ~np.isnan(expected)], err_msg=backend)
        if integers:
            np.testing.assert_array_equal(got, expected, err_msg=backend)
        else:
            np.testing.assert_allclose(got[finite], expected[finite], rtol=0,
                                       atol=1e-12 * max(scale, 1e-300), err_msg=backend)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
def test_float32_stays_float32_and_matches_scipy_in_float64(backend, name, mode):
    ours, theirs = FUNCTIONS[name]
    rng = np.random.default_rng(0)
    image = rng.standard_normal((40, 33)).astype(np.float32)
    kernel = rng.standard_normal((5, 4)).astype(np.float32)
    result = ours(image, kernel, mode, backend=backend)
    assert result.dtype == np.float32
    expected = theirs(image.astype(np.float64), kernel.astype(np.float64), mode)
    assert_close(result.astype(np.float64), expected, 1e-5)


def test_the_seed_loop_is_valid_correlation(backend):
    rng = np.random.default_rng(1)
    image = rng.random((10, 10))
    sobel = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]])
    np.testing.assert_allclose(fastcalc.correlate2d(image, sobel, mode="valid", backend=backend),
                               reference.seed_convolve2d(image, sobel), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("mode", ["full", "same", "valid"])
def test_batches_are_independent_images(backend, mode):
    rng = np.random.default_rng(2)
    images = rng.standard_normal((2, 3, 9, 11))
    kernel = rng.standard_normal((3, 2))
    result = fastcalc.convolve2d(images, kernel, mode, "wrap", backend=backend)
    for index in np.ndindex(2, 3):
        np.testing.assert_allclose(
            result[index], scipy.signal.convolve2d(images[index], kernel, mode, "wrap"),
            rtol=1e-12, atol=1e-12)
    empty = fastcalc.convolve2d(np.zeros((0, 9, 11)), kernel, mode, backend=backend)
    assert empty.shape[0] == 0


def test_layouts_and_dtypes(backend):
    rng = np.random.default_rng(3)
    base = rng.standard_normal((12, 10))
    kernel = rng.standard_normal((3, 3))
    for label, image in layouts(base).items():
        before = image.copy()
        result = fastcalc.correlate2d(image, kernel, "same", backend=backend)
        np.testing.assert_array_equal(image, before, err_msg=f"{label} input changed")
        expected = scipy.signal.correlate2d(np.array(image, dtype=np.float64), kernel, "same")
        assert_close(result, expected, 1e-12)
    ints = fastcalc.correlate2d(np.ones((4, 4), np.int32), np.ones((2, 2), bool))
    assert ints.dtype == np.float64
    assert fastcalc.correlate2d(np.ones((4, 4), np.float16), np.ones((2, 2), np.float16)).dtype \
        == np.float16


def test_nan_and_inf_propagate(backend):
    image = np.zeros((5, 5))
    image[2, 2] = np.nan
    image[0, 0] = np.inf
    result = fastcalc.correlate2d(image, np.ones((2, 2)), "valid", backend=backend)
    assert np.isnan(result[1:3, 1:3]).all() and np.isinf(result[0, 0])
    assert np.isfinite(result[3:, 3:]).all()


@pytest.mark.parametrize("taps", [3, 45])
def test_fft_and_direct_agree_and_auto_picks_by_size(taps):
    rng = np.random.default_rng(4)
    image, kernel = rng.standard_normal((60, 70)), rng.standard_normal((taps, taps))
    direct = fastcalc.correlate2d(image, kernel, "same", method="direct")
    assert_close(fastcalc.correlate2d(image, kernel, "same", method="fft"), direct, 1e-12)
    assert_close(fastcalc.correlate2d(image, kernel, "same"), direct, 1e-12)


def _direct_bound(image, kernel, mode, boundary, dtype):
    """The direct sum's error bound per output: eps * kh * kw * sum of |weight| * |value|."""
    magnitudes = fastcalc.correlate2d(np.abs(image).astype(np.float64),
                                      np.abs(kernel).astype(np.float64), mode, boundary,
                                      method="direct")
    return magnitudes * kernel.size * np.finfo(dtype).eps


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@pytest.mark.parametrize("boundary", ["fill", "wrap", "symm"])
@pytest.mark.parametrize("scene", ["normal", "dark corner", "zero border"])
def test_auto_keeps_every_output_within_the_direct_sums_bound(scene, boundary, mode, dtype):
    """The FFT's error is set by an image's largest values: outputs next to them but small
    (a dark region, zeros, "full"'s corners) lose digits; auto sums those directly."""
    rng = np.random.default_rng(11)
    image = rng.standard_normal((130, 150)).astype(dtype)
    if scene == "dark corner":
        image[:80, :90] *= 1e-6
    elif scene == "zero border":
        image = np.pad(image[30:-30, 30:-30], 30)
    kernel = rng.standard_normal((61, 61)).astype(dtype)  # past FFT_MIN_TAPS
    assert kernel.size >= fastcalc.convolution.FFT_MIN_TAPS[np.dtype(dtype)]
    direct = fastcalc.correlate2d(image, kernel, mode, boundary, method="direct")
    bound = _direct_bound(image, kernel, mode, boundary, dtype)
    auto = fastcalc.correlate2d(image, kernel, mode, boundary)
    error = np.abs(auto.astype(np.float64) - direct)
    assert ((error <= bound) | (error == 0)).all()
    if scene == "dark corner":  # the FFT alone does not hold the bound
        fft = fastcalc.correlate2d(image, kernel, mode, boundary, method="fft")
        assert (np.abs(fft.astype(np.float64) - direct) > bound).any()


def test_auto_keeps_integers_exact_and_non_finite_values_local():
    rng = np.random.default_rng(12)
    image, kernel = rng.integers(-1000, 1000, (120, 130)), rng.integers(-1000, 1000, (61, 61))
    np.testing.assert_array_equal(fastcalc.correlate2d(image, kernel, "same"),
                                  scipy.signal.correlate2d(image, kernel, "same"))
    spotted = np.zeros((96, 96))
    spotted[10, 10] = np.nan
    result = fastcalc.correlate2d(spotted, np.ones((37, 36)), "same")
    expected = scipy.signal.correlate2d(spotted, np.ones((37, 36)), "same")
    np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))


def test_out():
    rng = np.random.default_rng(5)
    image, kernel = rng.standard_normal((3, 8, 8)), rng.standard_normal((3, 3))
    out = np.empty((3, 6, 6))
    assert fastcalc.correlate2d(image, kernel, "valid", out=out) is out
    np.testing.assert_allclose(out, fastcalc.correlate2d(image, kernel, "valid"), rtol=1e-15)
    with pytest.raises(ValueError, match="shape"):
        fastcalc.correlate2d(image, kernel, "valid", out=np.empty((3, 7, 7)))
    expected = fastcalc.correlate2d(image, kernel, "same")
    strided = np.empty((3, 8, 16))[:, :, ::2]
    assert fastcalc.correlate2d(image, kernel, "same", out=strided) is strided
    np.testing.assert_allclose(strided, expected, rtol=1e-15)
    in_place = image.copy()  # out is the input itself: the result must not read itself
    assert fastcalc.correlate2d(in_place, kernel, "same", out=in_place) is in_place
    np.testing.assert_allclose(in_place, expected, rtol=1e-15)
    as_float16 = np.empty((3, 8, 8), np.float16)
    fastcalc.correlate2d(image.astype(np.float16), kernel.astype(np.float16), "same",
                         out=as_float16)
    np.testing.assert_allclose(as_float16, expected, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize(
    ("in1", "in2", "kwargs", "error", "match"),
    [(np.ones((4, 4), complex), np.ones((2, 2)), {}, TypeError, "complex"),
     (np.ones((4, 4)), np.ones((2, 2), complex), {}, TypeError, "complex"),
     (np.ones((4, 4)), np.ones((2, 2), object), {}, TypeError, "in2"),
     (np.ones((4, 4)), np.ones((0, 2)), {}, ValueError, "in2 must be a non-empty 2-D"),
     (np.ones((4, 4)), np.ones(3), {}, ValueError, "in2 must be a non-empty 2-D"),
     (np.ones(4), np.ones((2, 2)), {}, ValueError, "in1 must have shape"),
     (np.ones((4, 4)), np.ones((2, 2)), {"mode": "wide"}, ValueError, "mode flags"),
     (np.ones((4, 4)), np.ones((2, 2)), {"boundary": "reflect"}, ValueError, "boundary flags"),
     (np.ones((4, 4)), np.ones((2, 2)), {"method": "winograd"}, ValueError, "method"),
     (np.ones((4, 4)), np.ones((2, 2)), {"mode": 2**70}, TypeError, "mode must be a string"),
     (np.ones((4, 4)), np.ones((2, 2)), {"boundary": ["fill"]}, TypeError, "boundary must be"),
     (np.ones((4, 4)), np.ones((2, 2)), {"method": None}, TypeError, "method must be a string"),
     (np.ones((4, 4)), np.ones((2, 2)), {"out": [[0.0] * 5] * 5}, TypeError, "out must be"),
     (np.ones((4, 4)), np.ones((2, 2)), {"out": np.empty((5, 5), np.float16)}, ValueError,
      "out has dtype float16, expected float64"),
     (np.ones((4, 4)), np.ones((2, 2)), {"fillvalue": [1, 2]}, ValueError, "fillvalue"),
     (np.ones((4, 4)), np.ones((5, 2)), {"mode": "valid"}, ValueError, "at least as large"),
     (np.ones((2, 4, 4)), np.ones((5, 5)), {"mode": "valid"}, ValueError, "at least as large")],
)
def test_bad_input(in1, in2, kwargs, error, match):
    for function in (fastcalc.correlate2d, fastcalc.convolve2d):
        with pytest.raises(error, match=match):
            function(in1, in2, **kwargs)


@pytest.mark.parametrize("implementation", sorted(COMPILED))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "shape",
    # (B, H, W, kh, kw, top, left, Ho, Wo): valid, full, same-like, wider than a column
    # chunk, offsets beyond the image, empty batch
    [(1, 1, 1, 1, 1, 0, 0, 1, 1), (3, 9, 300, 1, 1, 0, 0, 9, 300),
     (2, 60, 700, 3, 3, 2, 2, 62, 702), (1, 40, 2500, 5, 4, 2, 1, 40, 2500),
     (2, 30, 40, 11, 11, 0, 0, 20, 30), (1, 6, 7, 4, 5, 5, 6, 9, 11), (0, 5, 5, 2, 2, 1, 1, 5, 5),
     # widths around one vector and one register block of the Cython kernel, odd heights
     (1, 7, 17, 2, 2, 0, 0, 6, 16), (2, 9, 140, 3, 3, 1, 1, 9, 140), (1, 8, 9, 1, 2, 0, 0, 8, 8),
     (3, 5, 300, 5, 7, 0, 0, 1, 294)],
)
@pytest.mark.parametrize("fillvalue", [0.0, -1.5])
@pytest.mark.parametrize("threads", [1, 2])
def test_compiled_kernels_equal_the_reference(implementation, dtype, shape, fillvalue, threads):
    batch, height, width, kh, kw, top, left, out_height, out_width = shape
    rng = np.random.default_rng(6)
    image = rng.standard_normal((batch, height, width)).astype(dtype)
    kernel = rng.standard_normal((kh, kw)).astype(dtype)
    expected = np.empty((batch, out_height, out_width), dtype)
    reference.correlate(image, kernel, expected, top, left, fillvalue, 1)
    out = np.full_like(expected, np.nan)
    COMPILED[implementation].correlate(image, kernel, out, top, left, fillvalue, threads)
    assert_close(out, expected, 1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("size", [20, 300], ids=["serial", "threaded"])
def test_thread_safety(backend, size):
    """8 threads correlating at once get the results of one thread."""
    rng = np.random.default_rng(7)
    images = [rng.standard_normal((size, size)) for _ in range(8)]
    kernel = rng.standard_normal((5, 5))
    expected = [fastcalc.correlate2d(image, kernel, "same", backend=backend) for image in images]
    results = [None] * 8

    def work(index):
        for _ in range(3):
            results[index] = fastcalc.correlate2d(images[index], kernel, "same", backend=backend)

    run_concurrently(work)
    for result, want in zip(results, expected, strict=True):
        np.testing.assert_array_equal(result, want)


def sprinkled(rng, shape, dtype=np.float64):
    """Normal values with about one in six replaced by inf, -inf or NaN."""
    values = rng.standard_normal(shape).astype(dtype)
    special = rng.random(shape) < 1 / 6
    values[special] = rng.choice([np.inf, -np.inf, np.nan], size=int(special.sum()))
    return values


def assert_same_ieee(actual, expected, rtol):
    """The same NaN, +inf and -inf positions; the finite values within ``rtol``."""
    assert actual.shape == expected.shape
    for pattern in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(pattern(actual), pattern(expected), err_msg=pattern.__name__)
    finite = np.isfinite(expected)
    assert_close(actual[finite], expected[finite], rtol)


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_inf_and_nan_weights_and_fill_give_the_ieee_result(backend, method):
    """Issue 15's reproducers: the fill taps meet an inf or NaN weight (0 * inf is NaN)."""
    with np.errstate(invalid="ignore"):
        expected = scipy.signal.correlate2d(np.ones((4, 4)), [[np.inf, 1], [1, 1]], "full")
    result = fastcalc.correlate2d(np.ones((4, 4)), [[np.inf, 1], [1, 1]], "full",
                                  method=method, backend=backend)
    assert np.isnan(result[0]).all()
    assert_same_ieee(result, expected, 1e-12)
    np.testing.assert_array_equal(
        fastcalc.correlate2d([[0.0]], [[0.0, np.nan]], method=method, backend=backend),
        [[np.nan, np.nan]])


@settings(max_examples=60, deadline=None)
@given(batch=st.integers(1, 2), height=st.integers(1, 40), width=st.integers(1, 40),
       kh=st.integers(1, 6), kw=st.integers(1, 6), corner=st.tuples(st.integers(0, 5),
                                                                       st.integers(0, 5)),
       fillvalue=st.sampled_from([0.0, 1.5, np.inf, -np.inf, np.nan]),
       dtype=st.sampled_from([np.float32, np.float64]), threads=st.sampled_from([1, 2]),
       seed=st.integers(0, 2**16))
def test_compiled_kernels_give_the_references_ieee_result(batch, height, width, kh, kw, corner,
                                                          fillvalue, dtype, threads, seed):
    """Every compiled kernel and Cython ISA, on inf and NaN sprinkled over image and kernel."""
    rng = np.random.default_rng(seed)
    image, kernel = sprinkled(rng, (batch, height, width), dtype), sprinkled(rng, (kh, kw), dtype)
    top, left = min(corner[0], kh - 1), min(corner[1], kw - 1)
    expected = np.empty((batch, height + kh - 1 - top, width + kw - 1 - left), dtype)
    reference.correlate(image, kernel, expected, top, left, fillvalue, 1)
    for label, module in COMPILED.items():
        out = np.zeros_like(expected)
        module.correlate(image, kernel, out, top, left, fillvalue, threads)
        assert_same_ieee(out, expected, 1e-5 if dtype == np.float32 else 1e-12), label


@settings(max_examples=40, deadline=None)
@given(height=st.integers(1, 30), width=st.integers(1, 30), kh=st.integers(1, 6),
       kw=st.integers(1, 6), name=st.sampled_from(sorted(FUNCTIONS)),
       mode=st.sampled_from(["full", "same", "valid"]),
       boundary=st.sampled_from(["fill", "wrap", "symm"]),
       fillvalue=st.sampled_from([0.0, 2.0, np.inf, np.nan]), seed=st.integers(0, 2**16))
def test_every_backend_and_method_agree_on_inf_and_nan(height, width, kh, kw, name, mode,
                                                       boundary, fillvalue, seed):
    ours, _ = FUNCTIONS[name]
    rng = np.random.default_rng(seed)
    image, kernel = sprinkled(rng, (height, width)), sprinkled(rng, (kh, kw))
    arguments = (image, kernel, mode, boundary, fillvalue)
    try:
        expected = ours(*arguments, method="direct", backend="numpy")
    except ValueError:  # "valid" with neither input the larger
        return
    for backend in fastcalc.available_backends():
        for method in ("direct", "fft"):
            assert_same_ieee(ours(*arguments, method=method, backend=backend), expected, 1e-12)


# A kernel larger than the image (issue 16): 2000 x 2000 on 100 x 100 took 3.4-5.4 s in "full"
# against 0.51 s with the two swapped.  "full" and "same" correlate the kernel with the image.

@settings(max_examples=60, deadline=None)
@given(height=st.integers(1, 6), width=st.integers(1, 6), kh=st.integers(1, 14),
       kw=st.integers(1, 14), name=st.sampled_from(sorted(FUNCTIONS)),
       mode=st.sampled_from(["full", "same"]), dtype=st.sampled_from([np.float64, np.float32]),
       seed=st.integers(0, 2**16))
def test_a_kernel_larger_than_the_image_gives_scipy_s_result(height, width, kh, kw, name, mode,
                                                               dtype, seed):
    ours, theirs = FUNCTIONS[name]
    rng = np.random.default_rng(seed)
    image, kernel = rng.standard_normal((height, width)), rng.standard_normal((kh, kw))
    expected = theirs(image, kernel, mode)
    image, kernel = image.astype(dtype), kernel.astype(dtype)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    for backend in fastcalc.available_backends():
        for method in ("direct", "fft"):
            result = ours(image, kernel, mode, method=method, backend=backend)
            assert result.dtype == dtype
            assert_close(result, expected, rtol)
            out = np.full(expected.shape, np.nan, dtype)
            assert ours(image, kernel, mode, method=method, backend=backend, out=out) is out
            np.testing.assert_array_equal(out, result)


@pytest.mark.parametrize("mode", ["full", "same"])
def test_a_kernel_larger_than_the_image_is_what_the_kernel_slides_over(monkeypatch, mode):
    weights = []
    kernel = fastcalc.convolution._dispatch.kernel("convolution", "correlate", "numpy", ())

    def recording(images, taps, *rest):
        weights.append(taps.shape)
        kernel(images, taps, *rest)

    monkeypatch.setattr(fastcalc.convolution._dispatch, "kernel",
                        lambda family, name, *rest: recording if name == "correlate" else 1e-15)
    image, big = np.ones((3, 4)), np.ones((40, 30))
    fastcalc.correlate2d(image, big, mode, method="direct")
    fastcalc.correlate2d(big, image, mode, method="direct")
    assert weights == [(3, 4), (3, 4)]
    weights.clear()
    for changed in ({"boundary": "wrap"}, {"fillvalue": 1.0}):  # zeros around both, only
        fastcalc.correlate2d(image, big, mode, method="direct", **changed)
    big[5, 5] = np.inf  # an inf meets the zeros around the image in one order only
    with np.errstate(invalid="ignore"):
        fastcalc.correlate2d(image, big, mode, method="direct")
    assert weights == [(40, 30)] * 3


@pytest.mark.parametrize("mode", ["full", "same"])
def test_a_larger_kernel_with_inf_and_nan_keeps_the_ieee_result(backend, mode):
    rng = np.random.default_rng(5)
    image, kernel = sprinkled(rng, (4, 3)), sprinkled(rng, (11, 9))
    for name, (ours, theirs) in FUNCTIONS.items():
        with np.errstate(invalid="ignore"):
            expected = theirs(image, kernel, mode)
        assert_same_ieee(ours(image, kernel, mode, backend=backend), expected, 1e-12), name


class Subclass(np.ndarray):
    pass


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_out_has_the_result_dtype_and_any_layout_on_both_methods(backend, method):
    """One rule: out has the result's shape and dtype (float16 for float16), any layout."""
    rng = np.random.default_rng(8)
    image, kernel = rng.standard_normal((2, 9, 8)), rng.standard_normal((3, 2))
    expected = fastcalc.correlate2d(image, kernel, "same", method=method, backend=backend)
    half = (image.astype(np.float16), kernel.astype(np.float16))
    with pytest.raises(ValueError, match="out has dtype float32, expected float16"):
        fastcalc.correlate2d(*half, "same", method=method, backend=backend,
                             out=np.empty((2, 9, 8), np.float32))
    with pytest.raises(ValueError, match="out has dtype float32, expected float64"):
        fastcalc.correlate2d(image, kernel, "same", method=method, backend=backend,
                             out=np.empty((2, 9, 8), np.float32))
    as_float16 = np.empty((2, 9, 8), np.float16)
    assert fastcalc.correlate2d(*half, "same", method=method, backend=backend,
                                out=as_float16) is as_float16
    np.testing.assert_array_equal(
        as_float16, fastcalc.correlate2d(*half, "same", method=method, backend=backend))
    for label, out in {"big-endian": np.empty((2, 9, 8), ">f8"),
                       "Fortran": np.empty((2, 9, 8), order="F"),
                       "subclass": np.empty((2, 9, 8)).view(Subclass),
                       "strided subclass": np.empty((2, 9, 16)).view(Subclass)[..., ::2]}.items():
        result = fastcalc.correlate2d(image, kernel, "same", method=method, backend=backend,
                                      out=out)
        assert result is out, label
        np.testing.assert_array_equal(out, expected, err_msg=label)


@pytest.mark.parametrize(("fillvalue", "error", "match"),
                         [(10**400, ValueError, "fillvalue .* beyond the range"),
                          (1j, TypeError, "fillvalue must be a real number"),
                          ("1", TypeError, "fillvalue must be a real number"),
                          (None, TypeError, "fillvalue must be a real number"),
                          ([1.0, 2.0], ValueError, "`fillvalue` must be scalar")])
def test_bad_fillvalue_is_named(fillvalue, error, match):
    with pytest.raises(error, match=match):
        fastcalc.correlate2d(np.ones((4, 4)), np.ones((2, 2)), fillvalue=fillvalue)


def test_huge_fillvalues_are_numbers():
    """A Python int beyond int64 is a number; beyond float32, float32 computes with inf."""
    np.testing.assert_array_equal(
        fastcalc.correlate2d(np.zeros((1, 1)), np.ones((1, 2)), fillvalue=2**70), [[2.0**70] * 2])
    assert np.isposinf(fastcalc.correlate2d(np.zeros((1, 1), np.float32),
                                            np.ones((1, 2), np.float32), fillvalue=1e300)[0, 0])


@pytest.mark.parametrize("implementation", sorted(COMPILED))
@pytest.mark.parametrize("offsets", [(2**62, 0), (0, 2**62), (-2**62, 1), (1, -2**62),
                                     (2**63 - 1, -2**63)])
def test_compiled_kernels_read_only_the_fill_for_offsets_beyond_the_image(implementation,
                                                                          offsets):
    """Any top/left is safe (no index wraps around): beyond the image there is only fill."""
    rng = np.random.default_rng(9)
    image, kernel = rng.standard_normal((2, 5, 6)), rng.standard_normal((3, 4))
    out = np.full((2, 7, 9), np.nan)
    COMPILED[implementation].correlate(image, kernel, out, *offsets, -1.5, 1)
    expected = np.empty_like(out)
    in_range = [offset if abs(offset) < 2**10 else out.shape[axis + 1] + kernel.shape[axis]
                for axis, offset in enumerate(offsets)]
    reference.correlate(image, kernel, expected, *in_range, -1.5, 1)
    assert_close(out, expected, 1e-12)


@settings(max_examples=40, deadline=None)
@given(batch=st.integers(1, 3), height=st.integers(1, 25), width=st.integers(1, 25),
       kh=st.integers(1, 6), kw=st.integers(1, 6), name=st.sampled_from(sorted(FUNCTIONS)),
       mode=st.sampled_from(["full", "same", "valid"]),
       boundary=st.sampled_from(["fill", "wrap", "symm"]),
       method=st.sampled_from(["direct", "fft"]), cuts=st.data())
def test_slices_leave_the_result_bit_identical(batch, height, width, kh, kw, name, mode,
                                               boundary, method, cuts):
    """Slices of whole images or of bands of rows, wherever they fall, change no bit."""
    ours, _ = FUNCTIONS[name]
    rng = np.random.default_rng(10)
    images, kernel = rng.standard_normal((batch, height, width)), rng.standard_normal((kh, kw))
    if mode == "valid" and (kh > height or kw > width):
        return
    arguments = (images, kernel, mode, boundary, 0.5)

    def run_in_random_slices(run, items, seconds_per_item, *, align=1):
        bounds = sorted(set(cuts.draw(st.lists(st.integers(1, max(1, items - 1)), max_size=6))))
        for start, stop in zip([0, *bounds], [*bounds, items], strict=True):
            if start < stop:
                run(start, stop)

    for backend in fastcalc.available_backends():
        whole = ours(*arguments, method=method, backend=backend)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(fastcalc._slices, "run_in_slices", run_in_random_slices)
            np.testing.assert_array_equal(ours(*arguments, method=method, backend=backend),
                                          whole, err_msg=backend)


def test_a_long_call_is_sliced_and_a_short_one_is_not(monkeypatch):
    calls = []
    kernel = fastcalc.convolution._dispatch.kernel("convolution", "correlate", "numpy", ())

    def counting(*arguments):
        calls.append(arguments[2].shape)
        kernel(*arguments)

    monkeypatch.setattr(fastcalc.convolution._dispatch, "kernel",
                        lambda family, name, *rest: counting if name == "correlate"
                        else 1e-3)  # a millisecond per multiply-add: every call is long
    image = np.random.default_rng(11).standard_normal((2, 30, 20))
    fastcalc.correlate2d(image, np.ones((3, 3)), "same")
    assert len(calls) > 1 and sum(shape[0] * shape[1] for shape in calls) == 60
    calls.clear()
    monkeypatch.setattr(fastcalc.convolution._dispatch, "kernel",
                        lambda family, name, *rest: counting if name == "correlate" else 1e-15)
    fastcalc.correlate2d(image, np.ones((3, 3)), "same")
    assert calls == [(2, 30, 20)]


# (setup, call) per backend and method: a huge image or a large batch, one
# call of one to several seconds on this backend, on an idle 2-core machine.
LONG_CALLS = {
    "numpy": ("image, kernel = np.ones((4096, 4096)), np.ones((13, 13))",
              'correlate2d(image, kernel, "same", method="direct", backend="numpy", out=out)'),
    "numba": ("image, kernel = np.ones((96, 1024, 1024)), np.ones((25, 25))",
              'correlate2d(image, kernel, "same", method="direct", backend="numba", out=out)'),
    "cython": ("image, kernel = np.ones((8192, 8192)), np.ones((27, 27))",
               'convolve2d(image, kernel, "same", method="direct", backend="cython", out=out)'),
    "fft": ("image, kernel = np.ones((8192, 8192), np.float32), np.ones((45, 45), np.float32)",
            'correlate2d(image, kernel, "same", method="fft", out=out)'),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(LONG_CALLS))
def test_ctrl_c_interrupts_a_long_call(case):
    """SIGINT stops the call partway: ``out`` is then partially written.

    A call that reacted only once done would leave no NaN in ``out``; one
    whose work is a single uninterruptible step (an FFT of the whole image)
    would have written nothing.
    """
    if case in ("numba", "cython") and case not in fastcalc.available_backends():
        pytest.skip(f"{case} is not available")
    setup, call = LONG_CALLS[case]
    assert_interrupted(f"""
import numpy as np
from fastcalc import convolve2d, correlate2d
{setup}
out = np.empty_like(image)
""", f"""
out[...] = np.nan
try:
    {call}
except KeyboardInterrupt:
    written = ~np.isnan(out)
    assert written.any() and not written.all(), f"{{written.mean():.0%}} written"
    raise
""", case)


def test_the_fft_method_needs_less_memory_than_its_output():
    """The tiles' memory, not copies of the image (1.4 GB for a 256 MB image before)."""
    image, kernel = np.ones((2048, 2048), np.float32), np.ones((45, 45), np.float32)
    out = np.empty_like(image)
    fastcalc.correlate2d(image, kernel, "same", method="fft", out=out)
    tracemalloc.start()  # numpy reports its buffers to tracemalloc
    try:
        fastcalc.correlate2d(image, kernel, "same", method="fft", out=out)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < out.nbytes / 2, f"{peak / out.nbytes:.2f} x the output"


@pytest.mark.parametrize("name", list(COMPILED))
@settings(max_examples=60, deadline=None)
@given(height=st.integers(1, 40), width=st.integers(1, 70), kh=st.integers(1, 9),
       kw=st.integers(1, 19), fill=st.sampled_from([0.0, 1.5]), dtype=st.sampled_from(["f4", "f8"]),
       window=st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)),
       seed=st.integers(0, 2**16))
def test_compiled_correlate_gives_an_output_the_same_bits_in_any_window(
        name, height, width, kh, kw, fill, dtype, window, seed):
    # What fastcalc.dask relies on: a window of the output computed from the
    # image rows and columns it reads (the rest filled on the fly) holds the
    # bits of the whole call, whichever path (vector rows, narrow rows, edges
    # column by column or in groups of up to 8 columns) computes each element
    # in either call.
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((1, height, width)).astype(dtype)
    kernel = rng.standard_normal((kh, kw)).astype(dtype)
    top, left = kh - 1, kw - 1  # "full"
    whole = np.empty((1, height + kh - 1, width + kw - 1), dtype)
    COMPILED[name].correlate(image, kernel, whole, top, left, fill, 1)
    (r0, r1), (c0, c1) = (sorted(round(f * n) for f in pair) for pair, n in (
        (window[:2], whole.shape[1]), (window[2:], whole.shape[2])))
    r1, c1 = max(r1, r0 + 1), max(c1, c0 + 1)
    if r1 > whole.shape[1] or c1 > whole.shape[2]:
        r0, r1, c0, c1 = 0, whole.shape[1], 0, whole.shape[2]
    low, high = max(0, r0 - top), min(height, r1 + kh - 1 - top)
    first, last = max(0, c0 - left), min(width, c1 + kw - 1 - left)
    part = np.empty((1, r1 - r0, c1 - c0), dtype)
    COMPILED[name].correlate(np.ascontiguousarray(image[:, low:high, first:last]), kernel, part,
                             top - r0 + low, left - c0 + first, fill, 1)
    np.testing.assert_array_equal(part, whole[:, r0:r1, c0:c1])


@pytest.mark.parametrize("name", list(COMPILED))
@settings(max_examples=40, deadline=None)
@given(batch=st.integers(1, 3), height=st.integers(1, 30), width=st.integers(1, 50),
       kh=st.integers(1, 11), kw=st.integers(1, 11), top=st.integers(-2, 12),
       left=st.integers(-2, 12), out_shape=st.tuples(st.integers(1, 40), st.integers(1, 60)),
       reversed_rows=st.booleans(), fill=st.sampled_from([0.0, 1.5]),
       dtype=st.sampled_from(["f4", "f8"]), seed=st.integers(0, 2**16))
def test_compiled_correlate_reads_and_writes_views_whose_rows_lie_apart(
        name, batch, height, width, kh, kw, top, left, out_shape, reversed_rows, fill, dtype,
        seed):
    # fastcalc.dask computes a block's inner outputs straight from its chunk
    # into a window of the block: the image and out are views of larger
    # arrays (rows and images apart, even reversed rows), their rows contiguous.
    rng = np.random.default_rng(seed)
    larger = rng.standard_normal((batch + 2, height + 5, width + 9)).astype(dtype)
    image = larger[1:batch + 1, 2:height + 2, 3:width + 3]
    if reversed_rows:
        image = image[:, ::-1]
    kernel = rng.standard_normal((kh, kw)).astype(dtype)
    around = np.full((batch + 1, out_shape[0] + 3, out_shape[1] + 4), 7, dtype)
    window = (slice(1, None), slice(1, out_shape[0] + 1), slice(2, out_shape[1] + 2))
    COMPILED[name].correlate(image, kernel, around[window], top, left, fill, 1)
    expected = np.empty((batch, *out_shape), dtype)
    COMPILED[name].correlate(np.ascontiguousarray(image), kernel, expected, top, left, fill, 1)
    np.testing.assert_array_equal(around[window], expected)
    untouched = np.ones(around.shape, bool)
    untouched[window] = False
    assert (around[untouched] == 7).all()


@pytest.mark.parametrize("name", [name for name in COMPILED if name.startswith("cython")])
def test_cython_correlate_refuses_rows_that_are_not_contiguous(name):
    with pytest.raises(ValueError, match="contiguous along their last axis"):
        COMPILED[name].correlate(np.ones((1, 4, 8))[:, :, ::2], np.ones((2, 2)),
                                 np.empty((1, 3, 3)), 0, 0, 0.0, 1)
