"""Helpers shared by the test modules: compiled implementations, memory layouts, threads."""

import threading

import numpy as np

import fastcalc
from fastcalc import _cython, _dispatch


def kernel_modules(family):
    """``{label: module}`` of every compiled implementation usable here.

    Numba, and every Cython ISA variant this CPU runs (not only the one
    ``auto`` loads), so each compiled build is checked against the reference.
    """
    modules = {}
    if _dispatch.backend_status()["numba"] is None:
        modules["numba"] = _dispatch._module("numba", family)
    for isa in _cython.available_isas(family):
        modules[f"cython-{isa}"] = _cython.load(family, isa)
    return modules


def layouts(array):
    """``{name: view}``: the same values in awkward memory layouts."""
    result = {"C": array}
    if array.ndim >= 2:
        result["Fortran"] = np.asfortranarray(array)
        result["transposed"] = array.T
    if array.ndim >= 1 and array.size:
        doubled = np.repeat(array, 2, axis=-1)
        result["strided"] = doubled[..., ::2]
        result["negative strides"] = array[..., ::-1]
    swapped = array.astype(array.dtype.newbyteorder(">" if array.dtype.byteorder != ">" else "<"))
    result["big-endian" if swapped.dtype.byteorder == ">" else "little-endian"] = swapped
    readonly = array.copy()
    readonly.flags.writeable = False
    result["read-only"] = readonly
    return result


def run_concurrently(work, count=8):
    """Call ``work(index)`` for every index < ``count``, each in its own thread, all at once."""
    barrier = threading.Barrier(count)

    def start(index):
        barrier.wait()
        work(index)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def assert_threads_agree(results, expected, names):
    """Every thread's ``results[i]`` (a tuple of arrays named ``names``) equals ``expected[i]``."""
    for result, want in zip(results, expected, strict=True):
        assert result is not None, "a thread failed"
        for name, actual, value in zip(names, result, want, strict=True):
            np.testing.assert_array_equal(actual, value, err_msg=name)


def assert_gradients_pass_check_grad(loss, arrays, gradients, tolerance):
    """Each of ``gradients`` (``{name: gradient}``) against :func:`fastcalc.check_grad`.

    ``loss(arrays)`` is a scalar function of the named ``arrays``; the
    gradient named ``name`` is checked as the derivative of ``loss`` with
    ``arrays[name]`` varied and every other array held.
    """
    for name, gradient in gradients.items():
        array = arrays[name]

        def loss_of_one(point, name=name, shape=array.shape):
            return loss({**arrays, name: point.reshape(shape)})

        error = fastcalc.check_grad(np.vectorize(loss_of_one, signature="(n)->()"),
                                    lambda point, gradient=gradient: gradient.ravel(),
                                    array.ravel())
        assert error < tolerance, f"{name}: relative error {error:.2e}"
