"""Cython kernels for the convolution family.

Same names and signatures as :mod:`fastcalc.reference.convolution`:
``correlate(image, kernel, out, top, left, fillvalue, num_threads)`` with
``image`` (B, H, W), ``kernel`` (kh, kw) and ``out`` (B, Ho, Wo) C-contiguous,
native, of one dtype (float32 or float64); ``out`` does not overlap the
inputs.  The caller has validated all of that.

Each output row is built by adding ``kernel[a, c] * image_row[...]`` for every
tap: the innermost loop runs along columns with unit stride, so the compiler
vectorizes it, and the threads share out the rows.  Taps outside the image add
``kernel[a, c] * fillvalue`` instead, so no padded copy is made.  Rows are
done in chunks of ``_COLUMNS`` so that a chunk stays in L1 while all taps add
to it.

setup.py compiles this file once per instruction set; :func:`fastcalc._cython.load`
imports the best one the CPU runs.
"""

cimport cython
from cython.parallel cimport prange

from _fused cimport floating
from _openmp cimport FASTCALC_OPENMP

__all__ = ["correlate"]

OPENMP = FASTCALC_OPENMP

# Multiply-adds below which one thread is faster than starting a parallel region.
cdef Py_ssize_t _PARALLEL_MIN_WORK = 200_000
PARALLEL_MIN_WORK = _PARALLEL_MIN_WORK

cdef Py_ssize_t _COLUMNS = 1024


cdef inline void _add(floating* target, floating weight, const floating* source,
                      Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(n):
        target[j] += weight * source[j]


cdef void _row(
    const floating* image, Py_ssize_t height, Py_ssize_t width, const floating* kernel,
    Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t top, Py_ssize_t left, floating fill,
    Py_ssize_t row, floating* out, Py_ssize_t out_width,
) noexcept nogil:
    # image: the image of this output row's batch; out: the output row.
    cdef Py_ssize_t start = 0, stop, a, c, j, low, high, source_row
    cdef floating weight
    cdef bint inside
    while start < out_width:
        stop = min(out_width, start + _COLUMNS)
        for j in range(start, stop):
            out[j] = 0
        for a in range(kh):
            source_row = row + a - top
            inside = 0 <= source_row < height
            for c in range(kw):
                weight = kernel[a * kw + c]
                # Output columns [low, high) read image columns j + c - left.
                if inside:
                    low = min(stop, max(start, left - c))
                    high = max(low, min(stop, width + left - c))
                else:
                    low = stop
                    high = stop
                if fill != 0:
                    for j in range(start, low):
                        out[j] += weight * fill
                    for j in range(high, stop):
                        out[j] += weight * fill
                if high > low:
                    _add(out + low, weight, image + source_row * width + low + c - left,
                         high - low)
        start = stop


@cython.cdivision(True)
cdef void _correlate(
    const floating* image, Py_ssize_t batch, Py_ssize_t height, Py_ssize_t width,
    const floating* kernel, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t top, Py_ssize_t left,
    floating fill, floating* out, Py_ssize_t out_height, Py_ssize_t out_width,
    int num_threads,
) noexcept nogil:
    cdef Py_ssize_t rows = batch * out_height
    cdef Py_ssize_t index
    if num_threads == 1 or rows * out_width * kh * kw < _PARALLEL_MIN_WORK:
        for index in range(rows):
            _row(image + (index // out_height) * height * width, height, width, kernel, kh,
                 kw, top, left, fill, index % out_height, out + index * out_width, out_width)
        return
    for index in prange(rows, num_threads=num_threads, schedule="static"):
        _row(image + (index // out_height) * height * width, height, width, kernel, kh,
             kw, top, left, fill, index % out_height, out + index * out_width, out_width)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef _apply(const floating[:, :, ::1] image, const floating[:, ::1] kernel,
            floating[:, :, ::1] out, Py_ssize_t top, Py_ssize_t left, floating fill,
            int num_threads):
    if out.shape[0] == 0 or out.shape[1] == 0 or out.shape[2] == 0:
        return
    with nogil:
        _correlate(&image[0, 0, 0], image.shape[0], image.shape[1], image.shape[2],
                   &kernel[0, 0], kernel.shape[0], kernel.shape[1], top, left, fill,
                   &out[0, 0, 0], out.shape[1], out.shape[2], num_threads)


def correlate(image, kernel, out, Py_ssize_t top, Py_ssize_t left, double fillvalue,
              int num_threads):
    """out[b, i, j] = sum of kernel[a, c] * image[b, i + a - top, j + c - left], fillvalue outside."""
    # Dispatch on the element size by hand: Cython's dispatcher for a fused def
    # function costs more than a small correlation.
    if image.itemsize == 4:
        _apply[float](image, kernel, out, top, left, <float>fillvalue, num_threads)
    else:
        _apply[double](image, kernel, out, top, left, fillvalue, num_threads)
