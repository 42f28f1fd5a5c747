"""fastcalc over dask arrays: lazy graphs that compute the in-memory results."""

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastcalc
from fastcalc import _bench

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
fastcalc_dask = pytest.importorskip("fastcalc.dask")

BACKENDS = [name for name in ("numpy", "numba", "cython") if name in fastcalc.available_backends()]
SCHEDULERS = ("sync", "threads")


def _exploding(shape, chunks, dtype=np.float64):
    """A dask array whose blocks raise when computed: building on it must compute nothing."""
    def explode(block):
        raise AssertionError("a block was computed while the graph was built")

    return da.zeros(shape, chunks=chunks, dtype=dtype).map_blocks(explode, dtype=dtype)


# --- elementwise -------------------------------------------------------------------------

@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int32"])
@pytest.mark.parametrize("name", ["sigmoid", "derivative", "from_output"])
def test_elementwise_on_dask_gives_the_in_memory_bits(name, dtype, scheduler):
    rng = np.random.default_rng(0)
    values = (rng.standard_normal((37, 23)) * 20).astype(dtype)
    function = {"sigmoid": fastcalc.sigmoid,
                "derivative": fastcalc.sigmoid_derivative,
                "from_output": lambda x, **kw: fastcalc.sigmoid_derivative(
                    x, from_output=True, **kw)}[name]
    lazy = function(da.from_array(values, chunks=(10, 7)))
    assert isinstance(lazy, da.Array)
    expected = function(values)
    assert lazy.dtype == expected.dtype and lazy.chunks == ((10, 10, 10, 7), (7, 7, 7, 2))
    for backend in BACKENDS:
        got = function(da.from_array(values, chunks=(10, 7)), backend=backend)
        np.testing.assert_array_equal(got.compute(scheduler=scheduler),
                                      function(values, backend=backend))


def test_elementwise_builds_without_computing():
    lazy = fastcalc.sigmoid(_exploding((6, 4), 2))
    assert lazy.shape == (6, 4) and lazy.dtype == np.float64
    with pytest.raises(AssertionError, match="block was computed"):
        lazy.compute(scheduler="sync")


def test_mirror_functions_take_only_dask_arrays():
    with pytest.raises(TypeError, match="x must be a dask.array.Array"):
        fastcalc_dask.sigmoid(np.zeros(3))
    with pytest.raises(TypeError, match="in1 must be a dask.array.Array"):
        fastcalc_dask.correlate2d(np.zeros((3, 3)), np.ones((2, 2)))


@pytest.mark.parametrize("call", [
    lambda x: fastcalc.sigmoid(x, out=np.empty(4)),
    lambda x: fastcalc.correlate2d(x.reshape(2, 2), np.ones((1, 1)), out=np.empty((2, 2))),
])
def test_out_with_a_dask_array_is_a_type_error(call):
    with pytest.raises(TypeError, match="out cannot be given with a dask array"):
        call(da.zeros(4, chunks=2))


def test_bad_input_is_refused_while_the_graph_is_built():
    image = _exploding((5, 5), 2)
    with pytest.raises(TypeError, match="complex"):
        fastcalc.sigmoid(da.zeros(3, chunks=1, dtype=complex))
    with pytest.raises(ValueError, match="mode"):
        fastcalc.correlate2d(image, np.ones((2, 2)), mode="middle")
    with pytest.raises(ValueError, match="in2 must be a non-empty 2-D array"):
        fastcalc.correlate2d(image, np.ones(3))
    with pytest.raises(ValueError, match="one must be at least as large"):
        fastcalc.correlate2d(image, np.ones((6, 2)), mode="valid")


def test_import_fastcalc_does_not_import_dask():
    code = ("import sys, numpy, fastcalc; fastcalc.sigmoid(numpy.zeros(3)); "
            "assert 'dask' not in sys.modules, sorted(m for m in sys.modules if 'dask' in m)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=600)


# --- 2-D correlation ---------------------------------------------------------------------

@st.composite
def chunkings(draw, size):
    """Chunk sizes along an axis of ``size``: one chunk, rows of 1, even, or uneven."""
    kind = draw(st.sampled_from(["one", "ones", "even", "uneven"]))
    if kind == "one":
        return (size,)
    if kind == "ones":
        return (1,) * size
    if kind == "even":
        step = draw(st.integers(1, size))
        return (step,) * (size // step) + ((size % step,) if size % step else ())
    cuts = sorted(draw(st.sets(st.integers(1, size - 1), max_size=4))) if size > 1 else []
    return tuple(np.diff([0, *cuts, size]).tolist())


@st.composite
def correlations(draw):
    batch = draw(st.sampled_from([(), (2,), (2, 1)]))
    height, width = draw(st.integers(1, 14)), draw(st.integers(1, 14))
    kernel = (draw(st.integers(1, 8)), draw(st.integers(1, 8)))
    mode = draw(st.sampled_from(["full", "same", "valid"]))
    if mode == "valid" and not (height >= kernel[0] and width >= kernel[1]):
        if batch or not (kernel[0] >= height and kernel[1] >= width):
            kernel = (min(kernel[0], height), min(kernel[1], width))
    chunks = tuple(draw(chunkings(n)) for n in (*batch, height, width))
    return dict(
        shape=(*batch, height, width), kernel=kernel, mode=mode, chunks=chunks,
        boundary=draw(st.sampled_from(["fill", "wrap", "symm"])),
        fillvalue=draw(st.sampled_from([0, 1.5, -2])),
        dtype=draw(st.sampled_from(["float32", "float64"])),
        flip=draw(st.booleans()), seed=draw(st.integers(0, 2**16)))


def _prepared(case):
    """The case's image and kernel, and ``call(in1, **options)``: its correlation of ``in1``."""
    rng = np.random.default_rng(case["seed"])
    image = rng.standard_normal(case["shape"]).astype(case["dtype"])
    kernel = rng.standard_normal(case["kernel"]).astype(case["dtype"])
    function = fastcalc.convolve2d if case["flip"] else fastcalc.correlate2d

    def call(in1, **options):
        return function(in1, kernel, case["mode"], case["boundary"], case["fillvalue"],
                        **options)

    return image, kernel, call


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(correlations())
def test_direct_correlation_on_dask_is_bit_identical_for_every_chunking(case):
    image, _, call = _prepared(case)
    lazy = call(da.from_array(image, chunks=case["chunks"]), method="direct")
    expected = call(image, method="direct")
    assert (lazy.shape, lazy.dtype) == (expected.shape, expected.dtype)
    assert lazy.chunks[:-2] == case["chunks"][:-2]
    for backend in BACKENDS:
        got = call(da.from_array(image, chunks=case["chunks"]), method="direct",
                   backend=backend).compute(scheduler="sync")
        np.testing.assert_array_equal(got, call(image, method="direct", backend=backend),
                                      err_msg=f"backend {backend}")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(correlations())
def test_fft_correlation_on_dask_matches_in_memory_to_its_tolerance(case):
    image, kernel, call = _prepared(case)
    got = call(da.from_array(image, chunks=case["chunks"]), method="fft").compute(
        scheduler="threads")
    expected = call(image, method="fft")
    scale = np.abs(image).max() * np.abs(kernel).sum() + abs(case["fillvalue"]) * np.abs(
        kernel).sum()
    tolerance = (1e-5 if case["dtype"] == "float32" else 1e-12) * scale
    np.testing.assert_allclose(got, expected, rtol=0, atol=tolerance)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_correlation_on_dask_keeps_batch_chunks_and_resizes_image_chunks(scheduler):
    image = np.random.default_rng(1).standard_normal((4, 20, 30)).astype("f4")
    kernel = np.ones((5, 3), "f4")
    lazy_image = da.from_array(image, chunks=(2, 8, 10))
    full = fastcalc.correlate2d(lazy_image, kernel, "full")
    assert full.chunks == ((2, 2), (8, 8, 8), (10, 10, 12))
    valid = fastcalc.correlate2d(lazy_image, kernel, "valid")
    assert valid.chunks == ((2, 2), (8, 8), (10, 10, 8))
    same = fastcalc.correlate2d(lazy_image, kernel, "same", "wrap")
    assert same.chunks == lazy_image.chunks
    np.testing.assert_array_equal(same.compute(scheduler=scheduler),
                                  fastcalc.correlate2d(image, kernel, "same", "wrap"))


def test_correlation_builds_without_computing():
    lazy = fastcalc.correlate2d(_exploding((3, 40, 40), (1, 16, 16)), np.ones((5, 5)), "same",
                                "symm")
    assert lazy.shape == (3, 40, 40) and lazy.dtype == np.float64
    with pytest.raises(AssertionError, match="block was computed"):
        lazy.compute(scheduler="sync")


def _odd_strides(image):
    """A copy of ``image`` that starts one byte into its buffer and whose rows lie 20 bytes
    beyond their end (2.5 float64 elements): unaligned, rows not whole elements apart."""
    row_bytes = image.shape[1] * image.itemsize + 20
    raw = np.zeros(1 + image.shape[0] * row_bytes, np.uint8)
    view = np.ndarray(image.shape, image.dtype, raw, 1, (row_bytes, image.itemsize))
    view[...] = image
    return view


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", ["fortran", "reversed rows", "reversed columns", "columns apart",
                                    "unaligned, odd strides"])
def test_correlation_on_dask_of_chunks_in_any_layout_gives_the_in_memory_bits(layout, backend):
    # A block's inner outputs are computed from its chunk in place where the
    # kernels can read it (rows contiguous, whole elements apart), else from
    # a contiguous copy.
    image = np.random.default_rng(5).standard_normal((20, 24))
    stored = {"fortran": np.asfortranarray(image), "reversed rows": image[::-1].copy()[::-1],
              "reversed columns": image[:, ::-1].copy()[:, ::-1],
              "columns apart": np.repeat(image, 2, axis=1)[:, ::2],
              "unaligned, odd strides": _odd_strides(image)}[layout]
    np.testing.assert_array_equal(stored, image)
    kernel = np.random.default_rng(6).standard_normal((5, 4))
    lazy = fastcalc.correlate2d(da.from_array(stored, chunks=(7, 9)), kernel, "same",
                                backend=backend)
    np.testing.assert_array_equal(lazy.compute(scheduler="sync"),
                                  fastcalc.correlate2d(image, kernel, "same", backend=backend))


@pytest.mark.parametrize("dtype", ["int16", "float16", "bool"])
def test_correlation_on_dask_converts_like_in_memory(dtype):
    # An integer image with a fractional fill value: filled in the compute dtype.
    image = (np.arange(48).reshape(6, 8) % 5).astype(dtype)
    kernel = np.array([[1.0, -2.0], [0.5, 3.0]])
    lazy = fastcalc.correlate2d(da.from_array(image, chunks=3), kernel, "full",
                                fillvalue=0.5)
    expected = fastcalc.correlate2d(image, kernel, "full", fillvalue=0.5)
    assert lazy.dtype == expected.dtype
    np.testing.assert_array_equal(lazy.compute(scheduler="sync"), expected)


@pytest.mark.parametrize("mode", ["full", "same", "valid"])
def test_whole_image_rules_run_on_one_block(mode):
    # scipy's swap in "valid" and a kernel with more taps than the image see
    # the whole image: one block along the image axes, the in-memory result.
    rng = np.random.default_rng(2)
    image, kernel = rng.standard_normal((4, 5)), rng.standard_normal((9, 11))
    lazy = fastcalc.correlate2d(da.from_array(image, chunks=2), kernel, mode)
    expected = fastcalc.correlate2d(image, kernel, mode)
    assert lazy.shape == expected.shape
    np.testing.assert_array_equal(lazy.compute(scheduler="sync"), expected)


# --- on a dask.distributed cluster -------------------------------------------------------

@pytest.fixture(scope="module")
def cluster_client():
    """A LocalCluster of 2 worker processes of 1 thread on loopback, for the module's tests."""
    pytest.importorskip("distributed")
    with _bench.local_cluster(workers=2, threads_per_worker=1) as client:
        yield client


def test_a_local_cluster_computes_the_in_memory_bits(cluster_client):
    rng = np.random.default_rng(3)
    images = rng.standard_normal((3, 50, 41)).astype("f4")
    kernel = rng.standard_normal((5, 4)).astype("f4")
    lazy_images = da.from_array(images, chunks=(2, 16, 16))
    for backend in BACKENDS:
        correlation = fastcalc.correlate2d(lazy_images, kernel, "same", "symm", backend=backend)
        activation = fastcalc.sigmoid(lazy_images, backend=backend)
        got_correlation, got_activation = cluster_client.compute(
            [correlation, activation], sync=True)
        np.testing.assert_array_equal(
            got_correlation, fastcalc.correlate2d(images, kernel, "same", "symm",
                                                  backend=backend))
        np.testing.assert_array_equal(got_activation, fastcalc.sigmoid(images, backend=backend))


def test_a_task_on_a_worker_uses_the_workers_thread_budget(cluster_client):
    # The nanny sets OMP_NUM_THREADS to the worker's threads (1 here): fastcalc
    # inside a task runs its kernels on that many threads, not on every core.
    counts = cluster_client.run(fastcalc.get_num_threads)
    assert set(counts.values()) == {1}, counts
    assert cluster_client.submit(fastcalc.get_num_threads, "cython" if "cython" in BACKENDS
                                 else None, pure=False).result(timeout=120) == 1


# --- functions of independent items along a batch axis ----------------------------------

def _exact_on(backend, fields):
    """The fields computed per item with the same bits in any chunk: on the compiled
    backends; numpy's batched products round by the BLAS's blocking."""
    return set() if backend == "numpy" else set(fields)


def _assert_fields(got, expected, exact, rtol):
    """Each field of ``got`` (dask) against ``expected``: those named in ``exact`` bit for
    bit, the others within ``rtol``."""
    assert type(got) is type(expected)
    for name, (a, b) in zip(getattr(expected, "_fields", range(len(expected))),
                            zip(got, expected, strict=True), strict=True):
        if b is None:
            assert a is None, name
            continue
        assert isinstance(a, da.Array), name
        value = a.compute(scheduler="sync")
        assert value.shape == np.shape(b) and value.dtype == np.asarray(b).dtype, name
        if name in exact:
            np.testing.assert_array_equal(value, b, err_msg=str(name))
        else:
            np.testing.assert_allclose(value, b, rtol=rtol, atol=rtol, err_msg=str(name))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_conv2d_on_dask_chunks_of_the_batch(backend, dtype):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((7, 3, 12, 10)).astype(dtype)
    weight, bias = rng.standard_normal((4, 3, 3, 3)).astype(dtype), rng.standard_normal(4)
    lazy_x = da.from_array(x, chunks=(3, 2, 12, 10))  # C is joined per chunk of N
    forward = fastcalc.conv2d(lazy_x, weight, bias, 2, 1, backend=backend)
    assert isinstance(forward, da.Array) and forward.chunks[0] == (3, 3, 1)
    np.testing.assert_array_equal(forward.compute(scheduler="threads"),
                                  fastcalc.conv2d(x, weight, bias, 2, 1, backend=backend))
    grad_out = rng.standard_normal(forward.shape).astype(dtype)
    got = fastcalc.conv2d_backward(da.from_array(grad_out, chunks=2), lazy_x, weight, 2, 1,
                                   backend=backend)
    expected = fastcalc.conv2d_backward(grad_out, x, weight, 2, 1, backend=backend)
    _assert_fields(got, expected, exact=_exact_on(backend, {0}),
                   rtol=1e-4 if dtype == "float32" else 1e-12)


@st.composite
def layers(draw):
    """A conv2d call on images chunked along H and W, chunks as small as one row."""
    height, width = draw(st.integers(1, 13)), draw(st.integers(1, 13))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    kernel = (draw(st.integers(1, height + 2 * padding[0])),
              draw(st.integers(1, width + 2 * padding[1])))
    return dict(shape=(draw(st.integers(1, 3)), draw(st.integers(1, 3)), height, width),
                chunks=(draw(st.integers(1, 3)), draw(st.integers(1, 3)),
                        draw(chunkings(height)), draw(chunkings(width))),
                kernel=kernel, filters=draw(st.integers(1, 3)),
                stride=(draw(st.integers(1, 4)), draw(st.integers(1, 4))), padding=padding,
                bias=draw(st.booleans()), dtype=draw(st.sampled_from(["float32", "float64"])),
                backend=draw(st.sampled_from(BACKENDS)))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers())
def test_conv2d_on_dask_chunks_of_the_images_gives_the_in_memory_result(case):
    rng = np.random.default_rng(6)
    x = rng.standard_normal(case["shape"]).astype(case["dtype"])
    weight = rng.standard_normal((case["filters"], x.shape[1], *case["kernel"]))
    bias = rng.standard_normal(case["filters"]) if case["bias"] else None
    call = dict(stride=case["stride"], padding=case["padding"], backend=case["backend"])
    lazy_x = da.from_array(x, chunks=case["chunks"])
    lazy = fastcalc.conv2d(lazy_x, weight.astype(x.dtype), bias, **call)
    expected = fastcalc.conv2d(x, weight.astype(x.dtype), bias, **call)
    assert lazy.chunks[0] == lazy_x.chunks[0] and lazy.dtype == expected.dtype
    got = lazy.compute(scheduler="sync")
    if case["backend"] == "numpy":  # its matrix products round by their blocking
        np.testing.assert_allclose(got, expected, rtol=1e-4 if x.dtype == np.float32 else 1e-12,
                                   atol=1e-5 if x.dtype == np.float32 else 1e-12)
    else:
        np.testing.assert_array_equal(got, expected)


def test_conv2d_on_chunks_of_the_images_builds_without_computing():
    x = _exploding((2, 3, 40, 40), (1, 3, 16, 16))
    lazy = fastcalc.conv2d(x, da.ones((4, 3, 5, 5), chunks=2), da.zeros(4, chunks=2),
                           stride=2, padding=2)
    assert lazy.shape == (2, 4, 20, 20) and lazy.chunks[2:] == ((8, 8, 4), (8, 8, 4))
    image = np.random.default_rng(7).standard_normal((2, 3, 40, 40))
    weight, bias = np.arange(300.0).reshape(4, 3, 5, 5) / 300, np.arange(4.0)
    lazy = fastcalc.conv2d(da.from_array(image, chunks=(1, 3, 16, 16)),
                           da.from_array(weight, chunks=2), da.from_array(bias, chunks=2),
                           stride=2, padding=2, backend="numba")
    np.testing.assert_array_equal(lazy.compute(scheduler="sync"), fastcalc.conv2d(
        image, weight, bias, stride=2, padding=2, backend="numba"))
    with pytest.raises(ValueError, match="must be non-empty and fit"):
        fastcalc.conv2d(x, np.ones((1, 3, 45, 1)))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("clip", [None, 0.5])
def test_rnn_on_dask_chunks_of_the_batch(backend, clip):
    rng = np.random.default_rng(5)
    T, B, I, H, O = 6, 9, 4, 5, 3  # noqa: E741 (the RNN's names)
    x, h0 = rng.standard_normal((T, B, I)), rng.standard_normal((B, H))
    weights = (rng.standard_normal((H, I)) * 0.5, rng.standard_normal((H, H)) * 0.3,
               rng.standard_normal((O, H)) * 0.5)
    lazy_x = da.from_array(x, chunks=(2, 4, 4))
    got = fastcalc.rnn_forward(lazy_x, h0, *weights, backend=backend)
    expected = fastcalc.rnn_forward(x, h0, *weights, backend=backend)
    _assert_fields(got, expected, exact=_exact_on(backend, {0, 1}), rtol=1e-12)
    h, dy = expected[0], rng.standard_normal((T, B, O))
    got = fastcalc.rnn_backward(dy, lazy_x, h, h0, *weights, clip=clip, backend=backend)
    expected = fastcalc.rnn_backward(dy, x, h, h0, *weights, clip=clip, backend=backend)
    _assert_fields(got, expected, exact=_exact_on(backend, {"dx", "dh0"}), rtol=1e-12)


@pytest.mark.parametrize("history", [False, True])
def test_gradient_descent_on_dask_chunks_of_problems(history):
    x0 = np.linspace(-5, 5, 11)
    got = fastcalc.gradient_descent(lambda x: 2 * x + 5, da.from_array(x0, chunks=4), 0.1, 20,
                                    history=history, backend="numpy")
    expected = fastcalc.gradient_descent(lambda x: 2 * x + 5, x0, 0.1, 20, history=history,
                                         backend="numpy")
    _assert_fields(got, expected, exact=set(expected._fields), rtol=0)  # elementwise steps


@pytest.mark.parametrize("backend", BACKENDS)
def test_fits_on_dask_chunks_of_problems(backend):
    rng = np.random.default_rng(6)
    X = rng.standard_normal((10, 40, 3)).astype("f4")
    y = (rng.random((10, 40)) < 0.5).astype("f4")
    lazy_X = da.from_array(X, chunks=(3, 40, 3))
    for function in (fastcalc.fit_logistic, fastcalc.fit_linear):
        options = dict(n_iter=25, batch_size=8, seed=np.random.default_rng(7), backend=backend)
        got = function(lazy_X, y, **options)
        options["seed"] = np.random.default_rng(7)
        expected = function(X, y, **options)
        _assert_fields(got, expected, exact=_exact_on(backend, expected._fields), rtol=1e-5)
    with pytest.raises(ValueError, match="batch_size needs a seed on dask"):
        fastcalc.fit_logistic(lazy_X, y, batch_size=8)


def test_batched_arguments_must_agree_on_the_batch():
    with pytest.raises(ValueError, match="h0 must have 5 items along axis 0"):
        fastcalc.rnn_forward(da.zeros((3, 5, 2), chunks=2), np.zeros((4, 3)), np.ones((3, 2)),
                             np.ones((3, 3)), np.ones((1, 3)))
    with pytest.raises(ValueError, match="padding"):
        fastcalc.conv2d(_exploding((2, 1, 4, 4), 1), np.ones((1, 1, 2, 2)), padding=-1)


def test_the_cluster_helper_leaves_the_environment_as_it_was():
    # distributed's nanny sets OMP_NUM_THREADS=1 (and more) in the process that starts it.
    pytest.importorskip("distributed")
    import os

    before = dict(os.environ)
    with _bench.local_cluster(workers=1, threads_per_worker=1) as client:
        assert client.run(fastcalc.get_num_threads)
    assert dict(os.environ) == before
