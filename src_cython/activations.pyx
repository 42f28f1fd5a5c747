"""Cython kernels for the activation family.

Same names and signatures as :mod:`fastcalc.reference.activations`:
``kernel(x, out, num_threads)`` with ``x`` and ``out`` 1-D, C-contiguous,
native byte order, one dtype (float32 or float64); ``out`` is either ``x``
itself (in place) or does not overlap it.  The caller has validated all of
that; the kernels do not check again.

setup.py compiles this file once per instruction set (``activations_baseline``,
``activations_avx2``, ...); :func:`fastcalc._cython.load` imports the best one
the CPU runs.

:func:`make_ufunc` builds the numpy ufuncs behind :func:`fastcalc.sigmoid`
and :func:`fastcalc.sigmoid_derivative`: their inner loops run these kernels,
or hand the block numpy gives them to the kernels of the numba or numpy
backend when one of those is selected.
"""

cimport cython
cimport numpy as cnp
from cpython.contextvars cimport get_value
from cpython.exc cimport PyErr_CheckSignals
from cpython.object cimport PyObject, PyTypeObject
from cpython.pycapsule cimport PyCapsule_New
from cpython.ref cimport Py_INCREF
from cython.parallel cimport parallel, prange

from _fused cimport floating
from _openmp cimport (FASTCALC_OPENMP, fastcalc_current_cpu, fastcalc_leave_cpu,
                     fastcalc_openmp_max_threads)
from _vecmath cimport exp_nonpositive

__all__ = ["make_ufunc", "openmp_max_threads", "sigmoid",
           "sigmoid_derivative", "sigmoid_derivative_from_output"]

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



# --- The numpy ufuncs ----------------------------------------------------------------------
#
# Each ufunc has one loop per input dtype, registered with numpy's ArrayMethod
# API (PyUFunc_AddLoopFromSpec, numpy >= 2.0), which lets a loop hold the GIL,
# return an error and declare that it raises no floating-point warnings.  The
# loops hold the GIL while they decide and release it to compute, so that
# they can read the selected backend, call the Python kernels of the numba and
# numpy backends, and check for Ctrl-C between slices of a long call.

cnp.import_array()
cnp.import_ufunc()

cdef extern from "Python.h":
    ctypedef struct PyType_Slot:
        int slot
        void *pfunc

cdef extern from "numpy/halffloat.h":
    float npy_half_to_float(cnp.npy_uint16 h) noexcept nogil
    cnp.npy_uint16 npy_float_to_half(float f) noexcept nogil

cdef extern from "numpy/ndarraytypes.h":
    enum:
        NPY_HALF

cdef extern from "numpy/arrayobject.h":
    PyTypeObject PyArray_Type
    object PyArray_NewFromDescr(PyTypeObject *subtype, PyObject *descr, int nd,
                                cnp.npy_intp *dims, cnp.npy_intp *strides, void *data,
                                int flags, PyObject *obj)

cdef extern from "numpy/dtype_api.h":
    ctypedef struct PyArrayMethod_Context:
        PyObject *caller
        PyObject **descriptors
    ctypedef struct PyArrayMethod_Spec:
        const char *name
        int nin
        int nout
        cnp.NPY_CASTING casting
        int flags
        PyObject **dtypes
        PyType_Slot *slots
    enum:
        NPY_METH_strided_loop
        NPY_METH_REQUIRES_PYAPI
        NPY_METH_NO_FLOATINGPOINT_ERRORS

cdef extern from "numpy/ufuncobject.h":
    int PyUFunc_AddLoopFromSpec(object ufunc, PyArrayMethod_Spec *spec) except -1
    int PyUFunc_AddPromoter(object ufunc, object dtypes, object promoter) except -1

# The input types of the loops (bool is read as unsigned char).
ctypedef fused real:
    float
    double
    signed char
    unsigned char
    short
    unsigned short
    int
    unsigned int
    long
    unsigned long
    long long
    unsigned long long

# Elements converted or gathered at a time through a buffer on the stack.
cdef enum:
    _CHUNK = 512
# Elements a loop computes between two checks for Ctrl-C: at most tens of
# milliseconds on the compiled kernels (2**25 float64 take 16 ms on two threads,
# 70 ms through the conversion buffer) and on the numba and numpy backends'
# (2**22: 60 ms on numpy).  Each slice of the compiled kernels starts their
# threads anew, so theirs are larger.
cdef Py_ssize_t _SLICE_COMPILED = 1 << 25
cdef Py_ssize_t _SLICE_PYTHON = 1 << 22
# From this many elements a loop releases the GIL while it computes.
cdef Py_ssize_t _NOGIL_FROM = 1 << 12

# What the loops read from fastcalc: the context variable of use_backend, the
# module dict holding set_backend's default, the thread count to hand a
# kernel, and the Python entry to the numba and numpy kernels (set by
# make_ufunc).
cdef object _backend_variable = None
cdef dict _dispatch_globals = None
cdef object _kernel_threads = None
cdef object _run_python = None
cdef tuple _KERNEL_NAMES = ("sigmoid", "sigmoid_derivative", "sigmoid_derivative_from_output")


cdef void _through_buffer(Kernel kernel, const real *x, char *out, Py_ssize_t n,
                          Py_ssize_t x_step, Py_ssize_t out_step, floating *buffer) noexcept nogil:
    """The kernel of ``floating`` over strided (or integer) input, through ``buffer``."""
    cdef Py_ssize_t start = 0, i, m
    while start < n:
        m = min(<Py_ssize_t>_CHUNK, n - start)
        for i in range(m):
            buffer[i] = <floating>(<const real*>(<const char*>x + (start + i) * x_step))[0]
        _block(kernel, buffer, buffer, m)
        for i in range(m):
            (<floating*>(out + (start + i) * out_step))[0] = buffer[i]
        start += m


cdef void _floating_slice(Kernel kernel, const floating *x, char *out, Py_ssize_t n,
                          Py_ssize_t x_step, Py_ssize_t out_step, int num_threads,
                          floating *buffer) noexcept nogil:
    cdef Py_ssize_t size = sizeof(floating)
    if x_step != size or out_step != size:
        _through_buffer(kernel, x, out, n, x_step, out_step, buffer)
        return
    if <const char*>x != out and <const char*>x < out + n * size and out < <const char*>(x + n):
        # numpy hands overlapping operands only when reading ahead of writing
        # is safe in one forward pass: no threads.
        num_threads = 1
    _apply(kernel, x, <floating*>out, n, num_threads)


cdef void _half_slice(Kernel kernel, const char *x, char *out, Py_ssize_t n,
                      Py_ssize_t x_step, Py_ssize_t out_step) noexcept nogil:
    """float16 computed in float32 through a buffer."""
    cdef float buffer[_CHUNK]
    cdef Py_ssize_t start = 0, i, m
    while start < n:
        m = min(<Py_ssize_t>_CHUNK, n - start)
        for i in range(m):
            buffer[i] = npy_half_to_float((<const cnp.npy_uint16*>(x + (start + i) * x_step))[0])
        _block(kernel, buffer, buffer, m)
        for i in range(m):
            (<cnp.npy_uint16*>(out + (start + i) * out_step))[0] = npy_float_to_half(buffer[i])
        start += m


cdef void _compiled_slice(Kernel kernel, int type_num, const char *x, char *out, Py_ssize_t n,
                          Py_ssize_t x_step, Py_ssize_t out_step, int num_threads) noexcept nogil:
    cdef float float_buffer[_CHUNK]
    cdef double buffer[_CHUNK]  # integers are computed in float64
    if type_num == cnp.NPY_DOUBLE:
        _floating_slice(kernel, <const double*>x, out, n, x_step, out_step, num_threads, buffer)
    elif type_num == cnp.NPY_FLOAT:
        _floating_slice(kernel, <const float*>x, out, n, x_step, out_step, num_threads,
                        float_buffer)
    elif type_num == NPY_HALF:
        _half_slice(kernel, x, out, n, x_step, out_step)
    elif type_num == cnp.NPY_BOOL or type_num == cnp.NPY_UBYTE:
        _through_buffer(kernel, <const unsigned char*>x, out, n, x_step, out_step, buffer)
    elif type_num == cnp.NPY_BYTE:
        _through_buffer(kernel, <const signed char*>x, out, n, x_step, out_step, buffer)
    elif type_num == cnp.NPY_SHORT:
        _through_buffer(kernel, <const short*>x, out, n, x_step, out_step, buffer)
    elif type_num == cnp.NPY_USHORT:
        _through_buffer(kernel, <const unsigned short*>x, out, n, x_step, out_step, buffer)
    elif type_num == cnp.NPY_INT:
        _through_buffer(kernel, <const int*>x, out, n, x_step, out_step, buffer)
    elif type_num == cnp.NPY_UINT:
        _through_buffer(kernel, <const unsigned int*>x, out, n, x_step, out_step, buffer)
    elif type_num == cnp.NPY_LONG:
        _through_buffer(kernel, <const long*>x, out, n, x_step, out_step, buffer)
    elif type_num == cnp.NPY_ULONG:
        _through_buffer(kernel, <const unsigned long*>x, out, n, x_step, out_step, buffer)
    elif type_num == cnp.NPY_LONGLONG:
        _through_buffer(kernel, <const long long*>x, out, n, x_step, out_step, buffer)
    else:
        _through_buffer(kernel, <const unsigned long long*>x, out, n, x_step, out_step, buffer)


cdef object _view(PyArrayMethod_Context *context, int operand, char *data, Py_ssize_t n,
                  Py_ssize_t step):
    """A 1-D ndarray over one operand of the loop (no copy)."""
    cdef cnp.npy_intp size = n, stride = step
    cdef PyObject *descriptor = context.descriptors[operand]
    Py_INCREF(<object>descriptor)  # PyArray_NewFromDescr steals it
    return PyArray_NewFromDescr(&PyArray_Type, descriptor, 1, &size, &stride, data,
                                cnp.NPY_ARRAY_WRITEABLE if operand else 0, NULL)


cdef int _loop(Kernel kernel, PyArrayMethod_Context *context, char **data,
               const cnp.npy_intp *dimensions, const cnp.npy_intp *strides) except -1:
    """One inner-loop call: ``dimensions[0]`` elements of ``data[0]`` into ``data[1]``."""
    cdef Py_ssize_t n = dimensions[0], start, m
    cdef Py_ssize_t x_step = strides[0], out_step = strides[1]
    cdef int type_num = (<cnp.dtype>context.descriptors[0]).type_num, num_threads
    backend = get_value(_backend_variable)
    if backend is None:
        backend = _dispatch_globals["_default_backend"]
    compiled = backend == "auto" or backend == "cython"
    cdef Py_ssize_t slice_size = _SLICE_COMPILED if compiled else _SLICE_PYTHON
    cdef Py_ssize_t size = (<cnp.dtype>context.descriptors[0]).itemsize
    cdef bint kernel_ready = False
    if not compiled:
        x, out = _view(context, 0, data[0], n, x_step), _view(context, 1, data[1], n, out_step)
        # What the Python kernels take as they are: contiguous float32 or
        # float64, out either x or apart from it.
        kernel_ready = ((type_num == cnp.NPY_FLOAT or type_num == cnp.NPY_DOUBLE)
                        and x_step == size and out_step == size
                        and (data[0] == data[1] or data[0] + n * size <= data[1]
                             or data[1] + n * size <= data[0]))
    start = 0
    while start < n:
        # Ctrl-C between two slices, and before each call: a long call of
        # numpy's buffered path (conversions) is many short ones.
        if PyErr_CheckSignals() < 0:
            return -1
        m = min(slice_size, n - start)
        if not compiled:
            if m < n:
                _run_python(_KERNEL_NAMES[kernel], x[start:start + m], out[start:start + m],
                            backend, kernel_ready)
            else:
                _run_python(_KERNEL_NAMES[kernel], x, out, backend, kernel_ready)
            start += m
            continue
        num_threads = 1 if m < _PARALLEL_MIN_SIZE else _kernel_threads()
        if m < _NOGIL_FROM:
            _compiled_slice(kernel, type_num, data[0] + start * x_step,
                            data[1] + start * out_step, m, x_step, out_step, num_threads)
        else:
            with nogil:
                _compiled_slice(kernel, type_num, data[0] + start * x_step,
                                data[1] + start * out_step, m, x_step, out_step, num_threads)
        start += m
    return 0


cdef int _sigmoid_loop(PyArrayMethod_Context *context, char **data,
                       const cnp.npy_intp *dimensions, const cnp.npy_intp *strides,
                       void *auxdata) except -1:
    return _loop(SIGMOID, context, data, dimensions, strides)


cdef int _sigmoid_derivative_loop(PyArrayMethod_Context *context, char **data,
                                  const cnp.npy_intp *dimensions, const cnp.npy_intp *strides,
                                  void *auxdata) except -1:
    return _loop(SIGMOID_DERIVATIVE, context, data, dimensions, strides)


cdef int _sigmoid_derivative_from_output_loop(
    PyArrayMethod_Context *context, char **data, const cnp.npy_intp *dimensions,
    const cnp.npy_intp *strides, void *auxdata
) except -1:
    return _loop(SIGMOID_DERIVATIVE_FROM_OUTPUT, context, data, dimensions, strides)


cdef int _compute_in_output_dtype(PyObject *ufunc, PyObject **op_dtypes, PyObject **signature,
                                  PyObject **new_op_dtypes) noexcept:
    """numpy's promoter, asked when no loop takes the input's dtype as it is.

    With a result dtype the caller fixed (``dtype=``, ``signature=``): the
    loop of that dtype, the input cast to it as ``casting`` allows (what
    ``np.exp(ints, dtype=np.float32)`` does).  Otherwise the dtypes given,
    unchanged, which numpy answers with its "no loop" error.
    """
    cdef PyObject *result = op_dtypes[1]
    cdef PyObject *source = op_dtypes[0] if result == NULL else result
    if source != NULL:
        Py_INCREF(<object>source)
    if result != NULL:
        Py_INCREF(<object>result)
    new_op_dtypes[0], new_op_dtypes[1] = source, result
    return 0


# Names and docstrings of the ufuncs made, kept alive: numpy keeps the pointers.
cdef list _kept = []


def make_ufunc(str kernel, str doc, tuple loop_types, backend_variable, dict dispatch_globals,
               kernel_threads, run_python):
    """A numpy ufunc named ``kernel`` computing that kernel.

    Parameters
    ----------
    kernel : str
        ``"sigmoid"``, ``"sigmoid_derivative"`` or ``"sigmoid_derivative_from_output"``.
    doc : str
        The ufunc's docstring.
    loop_types : tuple of str
        Its loops, as ``ufunc.types`` writes them (``"b->d"``): integer and
        bool inputs to float64 or float16, float32 or float64 to themselves.
    backend_variable : contextvars.ContextVar
        Holds the backend of :func:`fastcalc.use_backend` (None outside one).
    dispatch_globals : dict
        Where ``_default_backend``, the backend of :func:`fastcalc.set_backend`, is read.
    kernel_threads : callable
        The thread count to hand a kernel, called for large calls only.
    run_python : callable
        ``run_python(kernel, x, out, backend, kernel_ready)`` runs the kernel
        of the numba or numpy backend on 1-D arrays (any strides and input
        dtype; ``kernel_ready`` when they are contiguous float32 or float64
        and ``out`` is ``x`` or apart from it).
    """
    global _backend_variable, _dispatch_globals, _kernel_threads, _run_python
    _backend_variable, _dispatch_globals = backend_variable, dispatch_globals
    _kernel_threads, _run_python = kernel_threads, run_python
    cdef void *loop
    if kernel == "sigmoid":
        loop = <void*>_sigmoid_loop
    elif kernel == "sigmoid_derivative":
        loop = <void*>_sigmoid_derivative_loop
    elif kernel == "sigmoid_derivative_from_output":
        loop = <void*>_sigmoid_derivative_from_output_loop
    else:
        raise ValueError(f"unknown kernel {kernel!r}")
    name_bytes, doc_bytes = kernel.encode(), doc.encode()
    _kept.append((name_bytes, doc_bytes))
    ufunc = cnp.PyUFunc_FromFuncAndData(NULL, NULL, NULL, 0, 1, 1, cnp.PyUFunc_None,
                                        name_bytes, doc_bytes, 0)
    cdef PyArrayMethod_Spec spec
    cdef PyType_Slot slots[2]
    cdef PyObject *dtypes[2]
    slots[0].slot, slots[0].pfunc = NPY_METH_strided_loop, loop
    slots[1].slot, slots[1].pfunc = 0, NULL
    spec.name, spec.nin, spec.nout = b"fastcalc_activation", 1, 1
    spec.casting = cnp.NPY_NO_CASTING
    spec.flags = NPY_METH_REQUIRES_PYAPI | NPY_METH_NO_FLOATINGPOINT_ERRORS
    spec.dtypes, spec.slots = dtypes, slots
    for types in loop_types:
        operands = [type(cnp.dtype(code)) for code in types.split("->")]
        dtypes[0], dtypes[1] = <PyObject*>operands[0], <PyObject*>operands[1]
        PyUFunc_AddLoopFromSpec(ufunc, &spec)
    promoter = PyCapsule_New(<void*>_compute_in_output_dtype, "numpy._ufunc_promoter", NULL)
    PyUFunc_AddPromoter(ufunc, (None, None), promoter)
    return ufunc
