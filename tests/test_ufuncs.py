"""The activations as numpy ufuncs: containers keep their type, numpy's keywords work."""

import pickle

import numpy as np
import pytest
from scipy.special import expit

import fastcalc
from fastcalc import ufuncs

X = np.linspace(-4, 4, 6)
FUNCTIONS = {
    "sigmoid": (fastcalc.sigmoid, {}, lambda x: expit(x)),
    "sigmoid_derivative": (fastcalc.sigmoid_derivative, {}, lambda x: expit(x) * expit(-x)),
    "from_output": (fastcalc.sigmoid_derivative, {"from_output": True}, lambda s: s * (1 - s)),
}


@pytest.fixture(params=sorted(FUNCTIONS))
def activation(request):
    function, keywords, truth = FUNCTIONS[request.param]
    return (lambda *args, **more: function(*args, **keywords, **more)), truth


def test_the_ufuncs_are_numpy_ufuncs_with_fastcalcs_loops():
    for name in ("sigmoid", "sigmoid_derivative", "sigmoid_derivative_from_output"):
        ufunc = getattr(ufuncs, name)
        assert isinstance(ufunc, np.ufunc) and ufunc.__name__ == name
        assert (ufunc.nin, ufunc.nout) == (1, 1)
        assert pickle.loads(pickle.dumps(ufunc)) is ufunc
    for function in (fastcalc.sigmoid, fastcalc.sigmoid_derivative):
        assert function.types == list(ufuncs.LOOP_TYPES) and function.ntypes == 14
        assert "f->f" in function.types and "b->d" in function.types
        assert (function.nin, function.nout, function.nargs) == (1, 1, 2)
        assert function.identity is None and function.signature is None
        assert pickle.loads(pickle.dumps(function)) is function


def test_every_loop_gives_the_documented_dtype_and_values(backend):
    for types in fastcalc.sigmoid.types:
        source, result = (np.dtype(code) for code in types.split("->"))
        x = np.array([0, 1, 3], dtype=source)
        got = fastcalc.sigmoid(x, backend=backend)
        assert got.dtype == result, types
        np.testing.assert_allclose(got, expit(x.astype(np.float64)),
                                   rtol=1e-3 if result.itemsize == 2 else 1e-6)


def test_pandas_series_and_dataframe_keep_index_and_columns(activation, backend):
    pd = pytest.importorskip("pandas")
    function, truth = activation
    series = pd.Series(X, index=list("abcdef"), name="z")
    got = function(series, backend=backend)
    assert type(got) is pd.Series and got.name == "z"
    assert list(got.index) == list("abcdef")
    np.testing.assert_allclose(got.to_numpy(), truth(X), rtol=1e-13)
    frame = pd.DataFrame({"p": X, "q": -X}, index=range(10, 16))
    got = function(frame, backend=backend)
    assert type(got) is pd.DataFrame and list(got.columns) == ["p", "q"]
    assert list(got.index) == list(range(10, 16))
    np.testing.assert_allclose(got["q"].to_numpy(), truth(-X), rtol=1e-13)


def test_xarray_keeps_dims_coords_and_attrs(activation, backend):
    xr = pytest.importorskip("xarray")
    function, truth = activation
    array = xr.DataArray(X.reshape(2, 3), dims=("time", "unit"),
                         coords={"time": [1, 2], "unit": list("uvw")}, name="z")
    got = function(array, backend=backend)
    assert type(got) is xr.DataArray and got.dims == ("time", "unit")
    assert list(got.coords["unit"].values) == list("uvw")
    np.testing.assert_allclose(got.values, truth(X.reshape(2, 3)), rtol=1e-13)


def test_a_masked_array_keeps_its_mask(activation):
    function, truth = activation
    masked = np.ma.masked_array(X, mask=[0, 1, 0, 0, 1, 0])
    got = function(masked)
    assert type(got) is np.ma.MaskedArray
    np.testing.assert_array_equal(got.mask, masked.mask)
    np.testing.assert_allclose(got.compressed(), truth(X[~masked.mask]), rtol=1e-13)


def test_a_dask_array_stays_lazy(activation, backend):
    da = pytest.importorskip("dask.array")
    function, truth = activation
    lazy = da.from_array(X, chunks=4)
    got = function(lazy, backend=backend)
    assert isinstance(got, da.Array) and got.chunks == lazy.chunks
    np.testing.assert_allclose(got.compute(), truth(X), rtol=1e-13)
    with pytest.raises(TypeError, match="where: not supported with a dask array"):
        function(lazy, where=X > 0)


# torch's __array_wrap__ predates numpy 2's signature: numpy warns, and still wraps.
@pytest.mark.filterwarnings("ignore:__array_wrap__ must accept context:DeprecationWarning")
def test_a_torch_tensor_comes_back_a_tensor(activation, backend):
    torch = pytest.importorskip("torch")
    function, truth = activation
    got = function(torch.tensor(X, dtype=torch.float32), backend=backend)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), truth(X), rtol=1e-6)


class Tagged(np.ndarray):
    """A subclass as a user might write one: it must come back as itself."""


def test_an_ndarray_subclass_comes_back_as_itself(activation):
    function, truth = activation
    got = function(X.view(Tagged))
    assert type(got) is Tagged
    np.testing.assert_allclose(np.asarray(got), truth(X), rtol=1e-13)


def test_where_writes_only_where_true(activation, backend):
    function, truth = activation
    where = np.array([True, False] * 3)
    out = np.full(6, -7.0)
    assert function(X, out, where=where, backend=backend) is out
    np.testing.assert_allclose(out[where], truth(X[where]), rtol=1e-13)
    assert (out[~where] == -7.0).all()


def test_out_broadcasts_the_input_as_in_numpy(activation, backend):
    function, truth = activation
    out = np.empty((3, 6))
    function(X, out=out, backend=backend)
    np.testing.assert_allclose(out, np.broadcast_to(truth(X), (3, 6)), rtol=1e-13)


def test_dtype_and_casting_as_in_numpy(backend):
    x = np.arange(4)
    assert fastcalc.sigmoid(x, dtype=np.float32, backend=backend).dtype == np.float32
    np.testing.assert_allclose(fastcalc.sigmoid(x, dtype=np.float32), expit(x), rtol=1e-6)
    with pytest.raises(TypeError, match="Cannot cast"):
        fastcalc.sigmoid(X, dtype=np.float32, casting="safe", backend=backend)
    with pytest.raises(TypeError, match="Cannot cast"):
        fastcalc.sigmoid(X, out=np.empty(6, np.int64))
    assert fastcalc.sigmoid(X, out=np.empty(6, np.float32)).dtype == np.float32  # same_kind


def test_scalars_give_numpy_scalars(activation):
    function, truth = activation
    for value in (0.5, np.float64(0.5), np.array(0.5)):
        got = function(value)
        assert type(got) is np.float64
        np.testing.assert_allclose(got, truth(0.5), rtol=1e-15)
    assert type(fastcalc.sigmoid(np.float32(0.5))) is np.float32


def test_at_applies_in_place_at_the_indices(backend):
    x = X.copy()
    fastcalc.sigmoid.at(x, [0, 2, 2], backend=backend)  # twice at 2, as numpy's at does
    np.testing.assert_allclose(x[[0, 2]], [expit(X[0]), expit(expit(X[2]))], rtol=1e-14)
    np.testing.assert_array_equal(x[[1, 3, 4, 5]], X[[1, 3, 4, 5]])


def test_the_ufunc_follows_use_backend(monkeypatch):
    """fastcalc.ufuncs' loops call the selected backend's kernels (counted here)."""
    from fastcalc import _dispatch

    calls = []
    kernel = _dispatch.kernel
    monkeypatch.setattr(_dispatch, "kernel", lambda *args: calls.append(args[2]) or kernel(*args))
    ufuncs.sigmoid(X)  # auto: the Cython loops
    for backend in ("numpy", "numba"):
        if backend in fastcalc.available_backends():
            with fastcalc.use_backend(backend):
                np.testing.assert_allclose(ufuncs.sigmoid(X), expit(X), rtol=1e-14)
    assert calls == [b for b in ("numpy", "numba") if b in fastcalc.available_backends()]


def test_non_finite_values_raise_no_floating_point_warnings(activation, backend):
    function, _ = activation
    x = np.array([np.nan, np.inf, -np.inf, 1e300, -1e300, 5e-324])
    single = np.array([np.nan, np.inf, -np.inf, 3e38, -3e38, 1e-45], np.float32)
    with np.errstate(all="raise"):
        function(x, backend=backend)
        function(single, backend=backend)


def test_unsupported_dtypes_keep_fastcalcs_messages():
    for value, match in [(np.array([1j]), "got dtype complex128"),
                         (np.array(["a"]), "got dtype <U1"),
                         (np.array([1], np.longdouble), "convert it to float64 or float32")]:
        for function in (fastcalc.sigmoid, fastcalc.sigmoid_derivative):
            with pytest.raises(TypeError, match=match):
                function(value)
            with pytest.raises(TypeError, match=match):
                function(list(value))


def test_unknown_keywords_and_backends_are_refused():
    with pytest.raises(TypeError, match="from_output"):
        fastcalc.sigmoid(X, from_output=True)
    with pytest.raises(ValueError, match="unknown backend"):
        fastcalc.sigmoid(X, backend="gpu")


def test_xarray_holding_dask_stays_lazy_and_computes_per_block():
    xr = pytest.importorskip("xarray")
    da = pytest.importorskip("dask.array")
    array = xr.DataArray(da.from_array(X, chunks=4), dims=("t",), coords={"t": range(6)})
    got = fastcalc.sigmoid(array)
    assert type(got) is xr.DataArray and isinstance(got.data, da.Array)
    np.testing.assert_allclose(got.compute().values, expit(X), rtol=1e-14)
