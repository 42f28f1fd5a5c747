"""Numba kernels for the activation family.

Same names and signatures as :mod:`fastcalc.reference.activations`:
``kernel(x, out, num_threads)`` with ``x`` and ``out`` 1-D, C-contiguous,
native byte order, one dtype (float32 or float64); ``out`` is either ``x``
itself (in place) or does not overlap it.
Arrays below ``PARALLEL_MIN_SIZE`` elements, or ``num_threads == 1``, run
serially: starting the thread pool costs more than it saves there.
"""

import types

import numpy as np
from numba import njit, prange

from fastcalc._numba import parallel_call
from fastcalc._numba._vecmath import FASTMATH, exp_nonpositive

__all__ = ["sigmoid", "sigmoid_derivative", "sigmoid_derivative_from_output"]

PARALLEL_MIN_SIZE = 1 << 16
_BLOCK = 1 << 14  # elements per parallel task: large enough to amortize scheduling

# error_model="numpy": the default "python" model adds a zero-division check
# to every division, which keeps LLVM from vectorizing the loop.
_JIT = dict(nogil=True, cache=True, error_model="numpy", fastmath=FASTMATH)


# Literals are float32: exact in both precisions, and unlike Python ints they
# do not promote float32 arithmetic to float64.
_ONE = np.float32(1)
_ZERO = np.float32(0)


@njit(inline="always", **_JIT)
def _sigmoid_one(v):
    e = exp_nonpositive(-abs(v))  # never overflows
    s = _ONE / (_ONE + e)
    return s if v >= _ZERO else e * s


@njit(inline="always", **_JIT)
def _sigmoid_derivative_one(v):
    # sigmoid(v) * sigmoid(-v) = e / (1 + e)**2 with e = exp(-|v|): accurate
    # in relative terms for every v, unlike s * (1 - s).
    e = exp_nonpositive(-abs(v))
    s = _ONE / (_ONE + e)
    return e * s * s


@njit(inline="always", **_JIT)
def _sigmoid_derivative_from_output_one(s):
    return s * (_ONE - s)


# The loops, written once: ``scalar_function``, ``block`` and ``block_in_place``
# are globals of each copy that _elementwise makes (a closure would not do: Numba
# keys its disk cache on the pickled closure variables, and a dispatcher pickles
# differently in every process, so closures compiled again on every start).
# Loops run over range(size) of a slice: with range(start, stop) the index
# might be negative, and Numba's wraparound check blocks vectorization.
def _block(x, out):
    for i in range(x.size):
        out[i] = scalar_function(x[i])  # noqa: F821


def _block_in_place(x):
    for i in range(x.size):
        x[i] = scalar_function(x[i])  # noqa: F821


# Two parallel loops rather than one with an in-place branch: a read-only ``x``
# cannot be typed through a branch that writes it, even one never taken.
def _parallel(x, out):
    n = x.size
    for index in prange((n + _BLOCK - 1) // _BLOCK):
        start, stop = index * _BLOCK, min(n, (index + 1) * _BLOCK)
        block(x[start:stop], out[start:stop])  # noqa: F821


def _parallel_in_place(x):
    n = x.size
    for index in prange((n + _BLOCK - 1) // _BLOCK):
        start, stop = index * _BLOCK, min(n, (index + 1) * _BLOCK)
        block_in_place(x[start:stop])  # noqa: F821


def _copy(template, name, namespace, **options):
    """``template`` compiled with globals ``namespace``, cached on disk under ``name``."""
    function = types.FunctionType(template.__code__, namespace, name)
    function.__qualname__ = name
    return njit(**_JIT, **options)(function)


def _elementwise(scalar_function, name):
    """Build ``kernel(x, out, num_threads)`` applying ``scalar_function``.

    Each loop calls ``scalar_function`` directly, so Numba inlines it and
    LLVM vectorizes the loop.  In place (``out is x``) gets a loop over one
    array: a loop over two arrays would fail LLVM's runtime overlap check when
    they are the same and fall back to scalar code.
    """
    namespace = {**globals(), "scalar_function": scalar_function}
    block = namespace["block"] = _copy(_block, f"{name}_block", namespace)
    block_in_place = namespace["block_in_place"] = _copy(_block_in_place,
                                                         f"{name}_block_in_place", namespace)
    parallel = _copy(_parallel, f"{name}_parallel", namespace, parallel=True)
    parallel_in_place = _copy(_parallel_in_place, f"{name}_parallel_in_place", namespace,
                              parallel=True)

    def kernel(x, out, num_threads):
        threaded = num_threads > 1 and x.size >= PARALLEL_MIN_SIZE
        if x is out:
            if threaded:
                parallel_call(parallel_in_place, num_threads, x)
            else:
                block_in_place(x)
        elif threaded:
            parallel_call(parallel, num_threads, x, out)
        else:
            block(x, out)

    return kernel


sigmoid = _elementwise(_sigmoid_one, "sigmoid")
sigmoid_derivative = _elementwise(_sigmoid_derivative_one, "sigmoid_derivative")
sigmoid_derivative_from_output = _elementwise(_sigmoid_derivative_from_output_one,
                                              "sigmoid_derivative_from_output")
