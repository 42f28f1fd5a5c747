"""sigmoid and sigmoid_derivative: accuracy, dtypes, layouts, out=, backends, threads."""

import re
import warnings

import numpy as np
import pytest
from helpers import assert_interrupted, kernel_modules, layouts, run_concurrently
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.special import expit

import fastcalc
from fastcalc import activations
from fastcalc.reference import activations as reference

KERNELS = ("sigmoid", "sigmoid_derivative", "sigmoid_derivative_from_output")
RTOL = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-14}
DERIVATIVE_RTOL = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-13}
COMPILED = kernel_modules("activations")


def whole_range(dtype, size=200_000, seed=0):
    """Values spread over the whole finite range where sigmoid is not 0 or 1, and beyond."""
    rng = np.random.default_rng(seed)
    limit = float(np.log(np.finfo(dtype).max)) * 1.2
    parts = [
        rng.uniform(-limit, limit, size),
        rng.standard_normal(size) * 5,
        np.sign(rng.standard_normal(size)) * 10.0 ** rng.uniform(-30, 3, size),
        np.linspace(-120, 120, 10_001),
    ]
    return np.concatenate(parts).astype(dtype)


def true_sigmoid(x):
    return expit(np.asarray(x, dtype=np.float64))


def true_derivative(x):
    x = np.asarray(x, dtype=np.float64)
    return expit(x) * expit(-x)


def assert_relative(actual, expected, dtype, rtol):
    """Relative error <= rtol wherever the truth is a normal number of ``dtype``."""
    tiny = np.finfo(dtype).tiny
    mask = np.abs(expected) >= tiny
    error = np.abs(actual[mask].astype(np.float64) - expected[mask]) / np.abs(expected[mask])
    assert error.max(initial=0) <= rtol, f"max relative error {error.max():.3g} > {rtol:.0e}"


def assert_matches(actual, expected):
    """Same NaN pattern, and values equal to the dtype's tolerance."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype
    rtol = 4 * RTOL.get(np.dtype(actual.dtype).newbyteorder("="), 1e-3)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=0 if actual.dtype != np.float16
                               else 1e-3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_accuracy_over_the_whole_range(backend, dtype):
    """Relative error against scipy's expit: <= 1e-6 (float32), <= 1e-14 (float64)."""
    x = whole_range(dtype)
    actual = fastcalc.sigmoid(x, backend=backend)
    assert_relative(actual, true_sigmoid(x), dtype, RTOL[np.dtype(dtype)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_derivative_accuracy_over_the_whole_range(backend, dtype):
    """Relative error against sigmoid(x) * sigmoid(-x): <= 1e-6 / 1e-13."""
    x = whole_range(dtype)
    actual = fastcalc.sigmoid_derivative(x, backend=backend)
    assert_relative(actual, true_derivative(x), dtype, DERIVATIVE_RTOL[np.dtype(dtype)])


def test_naive_derivative_loses_accuracy_where_fastcalc_does_not(backend):
    """At x = 20 in float32 the textbook s * (1 - s) is 0; the true value is ~2e-9."""
    x = np.float32(20)
    s = np.float32(1) / (np.float32(1) + np.exp(-x))
    assert s * (np.float32(1) - s) == 0
    actual = fastcalc.sigmoid_derivative(np.array([x]), backend=backend)[0]
    assert actual == pytest.approx(true_derivative(20.0), rel=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_edge_values(backend, dtype):
    """No warnings; saturation to exactly 0 and 1; NaN stays NaN; gradual underflow."""
    x = np.array([-np.inf, -1000, -0.0, 0.0, 1000, np.inf, np.nan], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = fastcalc.sigmoid(x, backend=backend)
        d = fastcalc.sigmoid_derivative(x, backend=backend)
    np.testing.assert_array_equal(s, np.array([0, 0, 0.5, 0.5, 1, 1, np.nan], dtype=dtype))
    np.testing.assert_array_equal(d, np.array([0, 0, 0.25, 0.25, 0, 0, np.nan], dtype=dtype))
    if dtype == np.float64:
        assert fastcalc.sigmoid(np.array([-720.0]), backend=backend)[0] == pytest.approx(
            np.exp(np.longdouble(-720)), rel=1e-3)


def test_from_output(backend):
    s = np.linspace(0, 1, 11)
    np.testing.assert_allclose(
        fastcalc.sigmoid_derivative(s, from_output=True, backend=backend), s * (1 - s), rtol=1e-15)


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [(np.float16, np.float16), (np.float32, np.float32), (np.float64, np.float64),
     (np.int8, np.float64), (np.int64, np.float64), (np.uint32, np.float64),
     (np.bool_, np.float64)],
)
def test_result_dtype(backend, dtype, expected):
    x = np.array([0, 1, 2]).astype(dtype)
    for function in (fastcalc.sigmoid, fastcalc.sigmoid_derivative):
        result = function(x, backend=backend)
        assert result.dtype == expected
        truth = (true_sigmoid if function is fastcalc.sigmoid else true_derivative)(x)
        np.testing.assert_allclose(result, truth.astype(expected), rtol=1e-3)


def test_float16_is_computed_in_float32(backend):
    x = np.array([-12.0, 0.3, 9.5], dtype=np.float16)
    expected = fastcalc.sigmoid(x.astype(np.float32), backend=backend).astype(np.float16)
    np.testing.assert_array_equal(fastcalc.sigmoid(x, backend=backend), expected)


@pytest.mark.parametrize(
    "value", [np.array([1 + 2j]), np.array(["a"]), np.array([object()]),
              np.array([1], dtype=np.longdouble), np.array([1], dtype="datetime64[s]")],
    ids=["complex", "string", "object", "longdouble", "datetime"],
)
def test_unsupported_dtype_is_a_type_error_naming_it(value):
    for function in (fastcalc.sigmoid, fastcalc.sigmoid_derivative):
        with pytest.raises(TypeError, match=re.escape(str(value.dtype))):
            function(value)


def test_scalars_and_0d_return_numpy_scalars_like_ufuncs(backend):
    result = fastcalc.sigmoid(0.0, backend=backend)
    assert isinstance(result, np.float64) and result == 0.5
    assert isinstance(fastcalc.sigmoid(np.float32(0), backend=backend), np.float32)
    assert isinstance(fastcalc.sigmoid(np.array(0.0), backend=backend), np.float64)
    assert fastcalc.sigmoid([[0.0]], backend=backend).shape == (1, 1)


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 4, 5)])
def test_empty(backend, shape):
    x = np.empty(shape, dtype=np.float32)
    result = fastcalc.sigmoid(x, backend=backend)
    assert result.shape == shape and result.dtype == np.float32


@pytest.mark.parametrize("name", ["sigmoid", "sigmoid_derivative"])
def test_every_layout_gives_the_same_answer_and_keeps_the_input(backend, name):
    function = getattr(fastcalc, name)
    base = np.random.default_rng(1).standard_normal((5, 6)) * 8
    for label, x in layouts(base).items():
        before = x.copy()
        result = function(x, backend=backend)
        np.testing.assert_array_equal(x, before, err_msg=f"{label} input was changed")
        expected = function(np.ascontiguousarray(x, dtype=np.float64), backend="numpy")
        assert_matches(result, expected)


def read_only_arrays(values, directory):
    """``{source: array}``: ``values`` read-only in the three ways a user gets such arrays."""
    flagged = values.copy()
    flagged.flags.writeable = False
    np.save(directory / "values.npy", values)
    return {"writeable=False": flagged,
            "np.load(mmap_mode='r')": np.load(directory / "values.npy", mmap_mode="r"),
            "np.frombuffer(bytes)": np.frombuffer(values.tobytes(), dtype=values.dtype)}


@pytest.mark.parametrize("size", [1000, 300_000], ids=["serial", "threaded"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_read_only_input_works_and_is_kept(backend, size, dtype, tmp_path):
    """Numba typed its parallel kernel's in-place branch for a read-only input, and failed."""
    fastcalc.set_num_threads(2)
    values = np.random.default_rng(6).standard_normal(size).astype(dtype) * 10
    expected = {kernel: np.empty_like(values) for kernel in KERNELS}
    for kernel, result in expected.items():
        getattr(reference, kernel)(values, result, 1)
    for source, x in read_only_arrays(values, tmp_path).items():
        assert_matches(fastcalc.sigmoid(x, backend=backend), expected["sigmoid"])
        assert_matches(fastcalc.sigmoid_derivative(x, backend=backend),
                       expected["sigmoid_derivative"])
        assert_matches(fastcalc.sigmoid_derivative(x, from_output=True, backend=backend),
                       expected["sigmoid_derivative_from_output"])
        np.testing.assert_array_equal(x, values, err_msg=f"{source} input was changed")


class Subclass(np.ndarray):
    pass


OUT_SUBCLASSES = {
    "subclass": lambda shape, path: np.empty(shape).view(Subclass),
    "np.memmap": lambda shape, path: np.memmap(path / "out.bin", np.float64, "w+", shape=shape),
    "np.ma.MaskedArray": lambda shape, path: np.ma.masked_array(np.empty(shape)),
    "np.matrix": lambda shape, path: np.asmatrix(np.empty(shape)),
}


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("shape", [(3, 4), (2, 100_000)], ids=["serial", "threaded"])
@pytest.mark.parametrize("kind", sorted(OUT_SUBCLASSES))
def test_out_may_be_an_ndarray_subclass_as_with_ufuncs(backend, kind, shape, tmp_path):
    """A subclass ``out`` is written and returned, as by numpy's ufuncs, on every backend (Numba
    refused a MaskedArray; Cython a matrix, which does not flatten to 1-D)."""
    fastcalc.set_num_threads(2)
    x = np.random.default_rng(7).standard_normal(shape) * 10
    out = OUT_SUBCLASSES[kind](shape, tmp_path)
    assert fastcalc.sigmoid_derivative(x, out, backend=backend) is out
    np.testing.assert_allclose(np.asarray(out), true_derivative(x), rtol=1e-13)
    out = OUT_SUBCLASSES[kind](shape, tmp_path)
    out[...] = x
    assert fastcalc.sigmoid(out, out, backend=backend) is out  # in place
    np.testing.assert_allclose(np.asarray(out), true_sigmoid(x), rtol=1e-14)
    out = OUT_SUBCLASSES[kind](shape[::-1], tmp_path).T  # a Fortran-ordered subclass
    assert fastcalc.sigmoid(x, out, backend=backend) is out
    np.testing.assert_allclose(np.asarray(out), true_sigmoid(x), rtol=1e-14)


class TestOut:
    def test_out_is_returned_and_filled(self, backend):
        x = np.linspace(-3, 3, 12).reshape(3, 4)
        out = np.empty_like(x)
        assert fastcalc.sigmoid(x, out, backend=backend) is out
        np.testing.assert_allclose(out, true_sigmoid(x), rtol=1e-14)

    def test_in_place(self, backend):
        x = np.linspace(-3, 3, 200_000)
        expected = true_sigmoid(x)
        assert fastcalc.sigmoid(x, out=x, backend=backend) is x
        np.testing.assert_allclose(x, expected, rtol=1e-14)

    @pytest.mark.parametrize("kind", ["non-contiguous", "Fortran", "big-endian", "reversed alias"])
    def test_awkward_out(self, backend, kind):
        x = np.random.default_rng(2).standard_normal((4, 6))
        expected = true_derivative(x)
        if kind == "non-contiguous":
            out = np.empty((4, 12))[:, ::2]
        elif kind == "Fortran":
            out = np.empty((4, 6), order="F")
        elif kind == "big-endian":
            out = np.empty((4, 6), dtype=">f8")
        else:  # out overlaps x, element i of out is element n-1-i of x
            flat = x.reshape(-1).copy()
            expected = true_derivative(flat[::-1])
            x, out = flat[::-1], flat
        assert fastcalc.sigmoid_derivative(x, out, backend=backend) is out
        np.testing.assert_allclose(out, expected, rtol=1e-13)

    @pytest.mark.parametrize(
        ("out", "error", "match"),
        [(np.empty(5), ValueError, "shape"), (np.empty((4,), np.int64), TypeError, "cast"),
         ([0.0] * 4, TypeError, "out must be an ndarray")],
        ids=["shape", "dtype", "list"],
    )
    def test_bad_out(self, out, error, match):
        with pytest.raises(error, match=match):
            fastcalc.sigmoid(np.zeros(4), out)

    def test_read_only_out(self):
        out = np.empty(4)
        out.flags.writeable = False
        with pytest.raises(ValueError, match="read-only"):
            fastcalc.sigmoid(np.zeros(4), out)


@st.composite
def arrays_in_layouts(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64, np.float16, np.int32, np.bool_]))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=9))
    values = draw(hnp.arrays(dtype, shape, elements=st.floats(-200, 200, width=16)
                             if dtype in (np.float16, np.float32, np.float64) else None))
    view = draw(st.sampled_from(sorted(layouts(values))))
    return layouts(values)[view]


@settings(max_examples=60, deadline=None)
@given(x=arrays_in_layouts(), name=st.sampled_from(["sigmoid", "sigmoid_derivative"]))
def test_every_backend_equals_the_reference_on_random_arrays(x, name):
    function = getattr(fastcalc, name)
    expected = function(x, backend="numpy")
    for backend in fastcalc.available_backends():
        assert_matches(function(x, backend=backend), expected)


@pytest.mark.parametrize("implementation", sorted(COMPILED))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("threads", [1, 2])
def test_compiled_kernels_equal_the_reference(implementation, dtype, kernel, threads):
    """Each compiled build, serial and threaded (the array exceeds PARALLEL_MIN_SIZE)."""
    module = COMPILED[implementation]
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(300_001) * 30).astype(dtype)
    if kernel == "sigmoid_derivative_from_output":
        x = expit(x).astype(dtype)
    expected = np.empty_like(x)
    getattr(reference, kernel)(x, expected, 1)
    out = np.empty_like(x)
    getattr(module, kernel)(x, out, threads)
    assert_matches(out, expected)
    in_place = x.copy()
    getattr(module, kernel)(in_place, in_place, threads)
    np.testing.assert_array_equal(in_place, out)


@pytest.mark.parametrize("implementation", sorted(COMPILED))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2])
def test_compiled_kernels_at_every_start_within_a_cache_line(implementation, dtype, threads):
    """Cython runs the elements before ``out``'s first 64-byte boundary on their own: ``out``
    at each position within a line, ``x`` at another, lengths shorter and longer than that
    head, and threaded, in place or not, all equal the reference."""
    module = COMPILED[implementation]
    per_line = 64 // np.dtype(dtype).itemsize
    source = (np.random.default_rng(6).standard_normal(300_001 + per_line) * 10).astype(dtype)
    buffer = np.empty_like(source)
    for start in range(per_line):
        for size in (0, 1, per_line - 1, per_line + 1, 1000, 300_001):
            x = source[(3 * start + 1) % per_line:][:size]
            out = buffer[start:start + size]
            expected = np.empty_like(x)
            reference.sigmoid(x, expected, 1)
            module.sigmoid(x, out, threads)
            assert_matches(out, expected)
            out[:] = x
            module.sigmoid(out, out, threads)
            assert_matches(out, expected)


@pytest.mark.parametrize("size", [1000, 300_000], ids=["serial", "threaded"])
def test_thread_safety(backend, size):
    """8 threads calling the same kernel at once get the serial result."""
    rng = np.random.default_rng(4)
    inputs = [rng.standard_normal(size) * 10 for _ in range(8)]
    expected = [fastcalc.sigmoid_derivative(x, backend=backend) for x in inputs]
    results = [None] * 8

    def work(index):
        for _ in range(5):
            results[index] = fastcalc.sigmoid_derivative(inputs[index], backend=backend)

    run_concurrently(work)
    for result, want in zip(results, expected, strict=True):
        np.testing.assert_array_equal(result, want)


def test_one_and_two_threads_agree(backend):
    x = np.random.default_rng(5).standard_normal(500_000).astype(np.float32) * 10
    fastcalc.set_num_threads(1)
    one = fastcalc.sigmoid(x, backend=backend)
    fastcalc.set_num_threads(2)
    np.testing.assert_array_equal(fastcalc.sigmoid(x, backend=backend), one)


def test_calls_handed_one_thread_would_start_none_anyway():
    """Calls of fewer than activations._THREADED_FROM elements are handed one thread: no
    compiled kernel may run them on threads."""
    modules = kernel_modules("activations")
    assert modules  # at least one compiled backend
    for label, module in modules.items():
        assert activations._THREADED_FROM <= module.PARALLEL_MIN_SIZE, label


# The elements a ufunc loop computes between two checks for Ctrl-C (the _SLICE_PYTHON
# and _SLICE_COMPILED of src_cython/activations.pyx).
LOOP_SLICE = {"numpy": 1 << 22, "numba": 1 << 22, "cython": 1 << 25, "auto": 1 << 25}


@pytest.mark.parametrize("out_kind", ["none", "out", "in place", "reversed alias", "subclass"])
def test_calls_longer_than_a_slice_equal_short_calls_bit_for_bit(backend, out_kind):
    """A loop computes long calls in slices (checking for Ctrl-C between two): same bits
    as calls of one slice or less."""
    x = np.random.default_rng(8).standard_normal(LOOP_SLICE[backend] + 4099).astype(np.float32)
    half = len(x) // 2
    expected = np.concatenate([fastcalc.sigmoid_derivative(x[:half], backend=backend),
                               fastcalc.sigmoid_derivative(x[half:], backend=backend)])
    out = {"none": None, "out": np.empty_like(x), "in place": x, "reversed alias": x[::-1],
           "subclass": np.empty_like(x).view(Subclass)}[out_kind]
    result = fastcalc.sigmoid_derivative(x, out, backend=backend)
    np.testing.assert_array_equal(np.asarray(result), expected)


# 2**26 float16 elements (128 MiB of out), read through a stride of 0 from one element: every
# slice converts to float32 and back, which takes seconds on every backend.
LONG_CALL_SETUP = """
import numpy as np, fastcalc
x = np.broadcast_to(np.float16(0.5), (2**28,))
out = np.empty(2**28, np.float16)
"""


@pytest.mark.slow
@pytest.mark.parametrize("kernel", ["sigmoid", "sigmoid_derivative"])
def test_a_long_call_honours_ctrl_c(backend, kernel):
    assert_interrupted(LONG_CALL_SETUP, f"fastcalc.{kernel}(x, out, backend={backend!r})",
                       f"{backend} {kernel}")


@pytest.mark.slow
def test_a_long_contiguous_call_honours_ctrl_c():
    """No copy at all, the slices are views: 2**27 float64 elements in place (1 GiB) take
    seconds on the numpy backend (the compiled ones finish in a fraction of a second)."""
    assert_interrupted("""
import numpy as np, fastcalc
x = np.zeros(2**27)
""", "fastcalc.sigmoid_derivative(x, x, backend='numpy')", "numpy in place")
