"""scipy v1.17.1's own tests of convolve2d and correlate2d (``scipy/signal/tests/
test_signaltools.py``, classes TestConvolve2d and TestCorrelate2d), run against fastcalc on
every backend.

Adapted only where fastcalc documents a deviation:

- complex input is a TypeError in fastcalc (``test_valid_mode_complx``,
  ``test_complex_input`` and the complex half of ``test_valid_mode2`` are dropped; a
  complex ``fillvalue`` raises TypeError, not scipy's ValueError);
- integer input gives float64 (scipy keeps the integer dtype): values are compared, not
  dtypes;
- ``test_consistency_*`` compare with numpy's 1-D functions only (fastcalc has no n-d
  ``convolve``); ``test_large_array`` (2**31 elements, marked slow in scipy) is left out.
"""

import functools

import numpy as np
import pytest
import scipy.ndimage as ndi
from numpy.testing import assert_almost_equal, assert_array_equal

import fastcalc

BACKENDS = fastcalc.available_backends()


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def convolve2d(backend):
    return functools.partial(fastcalc.convolve2d, backend=backend)


@pytest.fixture
def correlate2d(backend):
    return functools.partial(fastcalc.correlate2d, backend=backend)


# --- TestConvolve2d -----------------------------------------------------------------------

def test_2d_arrays(convolve2d):
    a = np.asarray([[1, 2, 3], [3, 4, 5]])
    b = np.asarray([[2, 3, 4], [4, 5, 6]])
    d = np.asarray([[2, 7, 16, 17, 12], [10, 30, 62, 58, 38], [12, 31, 58, 49, 30]])
    assert_array_equal(convolve2d(a, b), d)


def test_valid_mode(convolve2d):
    e = np.asarray([[2, 3, 4, 5, 6, 7, 8], [4, 5, 6, 7, 8, 9, 10]])
    f = np.asarray([[1, 2, 3], [3, 4, 5]])
    h = np.asarray([[62, 80, 98, 116, 134]])
    assert_array_equal(convolve2d(e, f, "valid"), h)
    assert_array_equal(convolve2d(f, e, "valid"), h)  # gh-5897


def test_fillvalue(convolve2d):
    a = np.asarray([[1, 2, 3], [3, 4, 5]])
    b = np.asarray([[2, 3, 4], [4, 5, 6]])
    c = convolve2d(a, b, "full", "fill", 1)
    d = np.asarray([[24, 26, 31, 34, 32], [28, 40, 62, 64, 52], [32, 46, 67, 62, 48]])
    assert_array_equal(c, d)


def test_fillvalue_errors(convolve2d):
    with pytest.raises(TypeError, match="fillvalue must be a real number"):  # scipy: ValueError
        convolve2d([[1]], [[1, 2]], fillvalue=1j)
    with pytest.raises(ValueError, match="`fillvalue` must be scalar or an array with "):
        convolve2d([[1]], [[1, 2]], fillvalue=[1, 2])


def test_fillvalue_empty(convolve2d):
    with pytest.raises(ValueError):
        convolve2d([[1]], [[1, 2]], fillvalue=[])


def test_wrap_boundary(convolve2d):
    a = np.asarray([[1, 2, 3], [3, 4, 5]])
    b = np.asarray([[2, 3, 4], [4, 5, 6]])
    d = np.asarray([[80, 80, 74, 80, 80], [68, 68, 62, 68, 68], [80, 80, 74, 80, 80]])
    assert_array_equal(convolve2d(a, b, "full", "wrap"), d)


def test_sym_boundary(convolve2d):
    a = np.asarray([[1, 2, 3], [3, 4, 5]])
    b = np.asarray([[2, 3, 4], [4, 5, 6]])
    d = np.asarray([[34, 30, 44, 62, 66], [52, 48, 62, 80, 84], [82, 78, 92, 110, 114]])
    assert_array_equal(convolve2d(a, b, "full", "symm"), d)


@pytest.mark.parametrize("name", ["convolve2d", "correlate2d"])
@pytest.mark.parametrize("boundary, expected", [("symm", [[37.0, 42.0, 44.0, 45.0]]),
                                                ("wrap", [[43.0, 44.0, 42.0, 39.0]])])
def test_same_with_boundary(name, boundary, expected, backend):
    # gh-8684 and gh-8814: a kernel longer than the image, extended more than once.
    func = functools.partial(getattr(fastcalc, name), backend=backend)
    image = np.asarray([[2.0, -1.0, 3.0, 4.0]])
    result = func(image, np.ones((1, 21)), mode="same", boundary=boundary)
    assert_array_equal(result, np.asarray(expected))


def test_boundary_extension_same(convolve2d):
    # gh-12686
    a = np.arange(1, 10 * 3 + 1, dtype=np.float64).reshape(10, 3)
    b = np.arange(1, 10 * 10 + 1, dtype=np.float64).reshape(10, 10)
    c = convolve2d(a, b, mode="same", boundary="wrap")
    assert_array_equal(c, ndi.convolve(a, b, mode="wrap", origin=(-1, -1)))


def test_boundary_extension_full(convolve2d):
    # gh-12686
    a = np.arange(1, 3 * 3 + 1, dtype=np.float64).reshape(3, 3)
    b = np.arange(1, 6 * 6 + 1, dtype=np.float64).reshape(6, 6)
    c = convolve2d(a, b, mode="full", boundary="wrap")
    apad = np.pad(a, ((3, 3), (3, 3)), "wrap")
    assert_array_equal(c, ndi.convolve(apad, b, mode="wrap")[:-1, :-1])


@pytest.mark.parametrize("name", ["convolve2d", "correlate2d"])
def test_invalid_shapes(name, backend):
    # No array is at least as large as the other in every dimension.
    func = functools.partial(getattr(fastcalc, name), backend=backend)
    a = np.arange(1, 7).reshape((2, 3))
    b = np.arange(-6, 0).reshape((3, 2))
    with pytest.raises(ValueError):
        func(a, b, mode="valid")
    with pytest.raises(ValueError):
        func(b, a, mode="valid")


def test_same_mode(convolve2d):
    e = np.asarray([[1, 2, 3], [3, 4, 5]])
    f = np.asarray([[2, 3, 4, 5, 6, 7, 8], [4, 5, 6, 7, 8, 9, 10]])
    assert_array_equal(convolve2d(e, f, "same"), np.asarray([[22, 28, 34], [80, 98, 116]]))


def test_valid_mode2(convolve2d):
    # gh-5897 (the complex half is dropped: complex input is a TypeError in fastcalc)
    e = np.asarray([[1, 2, 3], [3, 4, 5]])
    f = np.asarray([[2, 3, 4, 5, 6, 7, 8], [4, 5, 6, 7, 8, 9, 10]])
    expected = np.asarray([[62, 80, 98, 116, 134]])
    assert_array_equal(convolve2d(e, f, "valid"), expected)
    assert_array_equal(convolve2d(f, e, "valid"), expected)


def test_consistency_convolve_funcs(convolve2d):
    a, b = np.arange(5), np.asarray([3.2, 1.4, 3])
    for mode in ["full", "valid", "same"]:
        np.testing.assert_allclose(np.squeeze(convolve2d(a[None, :], b[None, :], mode=mode),
                                              axis=0),
                                   np.convolve(a, b, mode=mode), rtol=1e-14)


def test_invalid_dims(convolve2d):
    for a, b in [(3, 4), ([3], [4]), ([[[3]]], [[[4]]])]:
        with pytest.raises(ValueError):
            convolve2d(a, b)


# --- TestCorrelate2d ----------------------------------------------------------------------

def test_consistency_correlate_funcs(correlate2d):
    a, b = np.arange(5), np.array([3.2, 1.4, 3])
    for mode in ["full", "valid", "same"]:
        assert_almost_equal(np.squeeze(correlate2d([a], [b], mode=mode)),
                            np.correlate(a, b, mode=mode))
        if mode == "valid":  # gh-5897
            assert_almost_equal(np.squeeze(correlate2d([b], [a], mode=mode)),
                                np.correlate(b, a, mode=mode))
