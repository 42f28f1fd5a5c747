"""Cython kernels for the activation family.

Same names and signatures as :mod:`fastcalc.reference.activations`:
``kernel(x, out, num_threads)`` with ``x`` and ``out`` 1-D, C-contiguous,
native byte order, one dtype (float32 or float64); ``out`` is either ``x``
itself (in place) or does not overlap it.  The caller has validated all of
that; the kernels do not check again.

setup.py compiles this file once per instruction set (``activations_baseline``,
``activations_avx2``, ...); :func:`fastcalc._cython.load` imports the best one
the CPU runs.
"""

cimport cython
from cython.parallel cimport parallel, prange

from _fused cimport floating
from _openmp cimport (FASTCALC_OPENMP, fastcalc_current_cpu, fastcalc_leave_cpu,
                     fastcalc_openmp_max_threads)
from _vecmath cimport exp_nonpositive

__all__ = ["openmp_max_threads", "sigmoid", "sigmoid_derivative",
           "sigmoid_derivative_from_output"]

# Whether prange runs on threads; without OpenMP every kernel is serial.
OPENMP = FASTCALC_OPENMP


def openmp_max_threads():
    """The calling thread's OpenMP thread limit, ``omp_get_max_threads()`` (1 without OpenMP).

    What ``omp_set_num_threads`` sets, and so ``threadpoolctl.threadpool_limits``
    for the OpenMP runtime these kernels run on.
    """
    return fastcalc_openmp_max_threads()


# Elements per parallel task: large enough to amortize scheduling, small
# enough to balance the threads.
cdef Py_ssize_t _BLOCK = 1 << 14

# Arrays below this many elements run serially even when threads are allowed:
# a parallel region costs about 1 us, and with two blocks (one per thread of
# two) the AVX-512 sigmoid already runs 1.5x faster than serially.
cdef Py_ssize_t _PARALLEL_MIN_SIZE = 2 * _BLOCK
PARALLEL_MIN_SIZE = _PARALLEL_MIN_SIZE


# Cython writes a bare 1 in these expressions as the C double 1.0, which would
# promote float32 arithmetic to float64: <floating>1 keeps the type of v.

@cython.cdivision(True)
cdef inline floating _sigmoid_one(floating v) noexcept nogil:
    cdef floating e = exp_nonpositive(-abs(v))  # never overflows
    cdef floating s = <floating>1 / (<floating>1 + e)
    return s if v >= 0 else e * s


@cython.cdivision(True)
cdef inline floating _sigmoid_derivative_one(floating v) noexcept nogil:
    # sigmoid(v) * sigmoid(-v) = e / (1 + e)**2 with e = exp(-|v|): accurate
    # in relative terms for every v, unlike s * (1 - s).
    cdef floating e = exp_nonpositive(-abs(v))
    cdef floating s = <floating>1 / (<floating>1 + e)
    return e * s * s


cdef inline floating _sigmoid_derivative_from_output_one(floating s) noexcept nogil:
    return s * (<floating>1 - s)


# The block loops call the scalar function directly so that the compiler
# inlines it and vectorizes the loop.  In place gets a loop over one pointer,
# which needs no runtime overlap check: LLVM's check (Numba, Clang) treats
# equal pointers as overlapping and falls back to scalar code.  GCC 12's
# accepts them; the one-pointer loop is fast under every compiler.

cdef inline void _sigmoid_block(const floating* x, floating* out, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    if out == x:
        for i in range(n):
            out[i] = _sigmoid_one(out[i])
    else:
        for i in range(n):
            out[i] = _sigmoid_one(x[i])


cdef inline void _sigmoid_derivative_block(
    const floating* x, floating* out, Py_ssize_t n
) noexcept nogil:
    cdef Py_ssize_t i
    if out == x:
        for i in range(n):
            out[i] = _sigmoid_derivative_one(out[i])
    else:
        for i in range(n):
            out[i] = _sigmoid_derivative_one(x[i])


cdef inline void _sigmoid_derivative_from_output_block(
    const floating* x, floating* out, Py_ssize_t n
) noexcept nogil:
    cdef Py_ssize_t i
    if out == x:
        for i in range(n):
            out[i] = _sigmoid_derivative_from_output_one(out[i])
    else:
        for i in range(n):
            out[i] = _sigmoid_derivative_from_output_one(x[i])


cdef enum Kernel:
    SIGMOID
    SIGMOID_DERIVATIVE
    SIGMOID_DERIVATIVE_FROM_OUTPUT


# Not inline: the serial path and the threads share this one copy of the loops.
cdef void _block(Kernel kernel, const floating* x, floating* out, Py_ssize_t n) noexcept nogil:
    if kernel == SIGMOID:
        _sigmoid_block(x, out, n)
    elif kernel == SIGMOID_DERIVATIVE:
        _sigmoid_derivative_block(x, out, n)
    else:
        _sigmoid_derivative_from_output_block(x, out, n)


@cython.cdivision(True)
cdef void _apply(
    Kernel kernel, const floating* x, floating* out, Py_ssize_t n, int num_threads
) noexcept nogil:
    cdef Py_ssize_t block, start
    # numpy's large arrays start 16 bytes past a page boundary, so every
    # 64-byte store of the AVX-512 loop would straddle two cache lines: with
    # two threads on 2**24 float64 that cost 25%.  The first few elements
    # (up to a 64-byte boundary of out) run alone and the rest store whole lines.
    cdef Py_ssize_t head = min(n, <Py_ssize_t>((-<size_t>out) % 64) // <Py_ssize_t>sizeof(floating))
    if head:
        _block(kernel, x, out, head)
        x += head
        out += head
        n -= head
    if num_threads == 1 or n < _PARALLEL_MIN_SIZE:
        _block(kernel, x, out, n)
        return
    cdef int caller_cpu = fastcalc_current_cpu()
    with parallel(num_threads=num_threads):
        fastcalc_leave_cpu(caller_cpu)
        for block in prange((n + _BLOCK - 1) // _BLOCK, schedule="static"):
            start = block * _BLOCK
            _block(kernel, x + start, out + start, min(_BLOCK, n - start))


@cython.boundscheck(False)
@cython.wraparound(False)
cdef _apply_views(Kernel kernel, const floating[::1] x, floating[::1] out, int num_threads):
    with nogil:
        _apply(kernel, &x[0], &out[0], x.shape[0], num_threads)


cdef _apply_arrays(Kernel kernel, x, out, int num_threads):
    # Dispatch on the element size by hand: Cython's dispatcher for a fused def
    # function costs about 130 ns a call, a quarter of a 1000-element sigmoid.
    if x.itemsize == 4:
        _apply_views[float](kernel, x, out, num_threads)
    else:
        _apply_views[double](kernel, x, out, num_threads)


def sigmoid(x, out, int num_threads):
    """Logistic sigmoid ``1 / (1 + exp(-x))``, computed without overflow.

    Parameters
    ----------
    x : ndarray of float32 or float64
        Input, 1-D and C-contiguous.
    out : ndarray
        Result, like ``x``; ``x`` itself for in place.
    num_threads : int
        Threads to use for large arrays.
    """
    _apply_arrays(SIGMOID, x, out, num_threads)


def sigmoid_derivative(x, out, int num_threads):
    """Derivative of the sigmoid at ``x``, ``sigmoid(x) * sigmoid(-x)``.

    Parameters are those of :func:`sigmoid`.
    """
    _apply_arrays(SIGMOID_DERIVATIVE, x, out, num_threads)


def sigmoid_derivative_from_output(x, out, int num_threads):
    """Derivative of the sigmoid from its output ``s``: ``s * (1 - s)``.

    Parameters are those of :func:`sigmoid`, with ``x`` holding sigmoid values.
    """
    _apply_arrays(SIGMOID_DERIVATIVE_FROM_OUTPUT, x, out, num_threads)
