"""Cython kernels for the convolution family.

Same names and signatures as :mod:`fastcalc.reference.convolution`:
``correlate_valid(image, kernel, out, num_threads)`` with ``image``
(B, Hp, Wp), ``kernel`` (kh, kw) and ``out`` (B, Hp - kh + 1, Wp - kw + 1)
C-contiguous, native, of one dtype (float32 or float64); ``out`` does not
overlap the inputs.  The caller has validated all of that.

Each output row is built by adding ``kernel[a, c] * image_row[c:c + Wo]`` for
every tap: the innermost loop runs along columns with unit stride, so the
compiler vectorizes it, and the threads share out the rows.  Rows are done in
chunks of ``_COLUMNS`` so that a chunk stays in L1 while all taps add to it.

setup.py compiles this file once per instruction set; :func:`fastcalc._cython.load`
imports the best one the CPU runs.
"""

cimport cython
from cython.parallel cimport prange

from _fused cimport floating
from _openmp cimport FASTCALC_OPENMP

__all__ = ["correlate_valid"]

OPENMP = FASTCALC_OPENMP

# Multiply-adds below which one thread is faster than starting a parallel region.
cdef Py_ssize_t _PARALLEL_MIN_WORK = 200_000
PARALLEL_MIN_WORK = _PARALLEL_MIN_WORK

cdef Py_ssize_t _COLUMNS = 1024


cdef void _row(
    const floating* image, Py_ssize_t image_width, const floating* kernel, Py_ssize_t kh,
    Py_ssize_t kw, floating* out, Py_ssize_t width,
) noexcept nogil:
    # image: the first image row this output row reads; out: the output row.
    cdef Py_ssize_t start = 0, n, a, c, j
    cdef floating weight
    cdef floating* chunk
    cdef const floating* taps
    while start < width:
        n = min(_COLUMNS, width - start)
        chunk = out + start
        for j in range(n):
            chunk[j] = 0
        for a in range(kh):
            for c in range(kw):
                weight = kernel[a * kw + c]
                taps = image + a * image_width + start + c
                for j in range(n):
                    chunk[j] += weight * taps[j]
        start += n


@cython.cdivision(True)
cdef void _correlate_valid(
    const floating* image, Py_ssize_t batch, Py_ssize_t image_height, Py_ssize_t image_width,
    const floating* kernel, Py_ssize_t kh, Py_ssize_t kw, floating* out, int num_threads,
) noexcept nogil:
    cdef Py_ssize_t height = image_height - kh + 1
    cdef Py_ssize_t width = image_width - kw + 1
    cdef Py_ssize_t rows = batch * height
    cdef Py_ssize_t index, b, i
    if num_threads == 1 or rows * width * kh * kw < _PARALLEL_MIN_WORK:
        for index in range(rows):
            b = index // height
            i = index % height
            _row(image + (b * image_height + i) * image_width, image_width, kernel, kh, kw,
                 out + index * width, width)
        return
    for index in prange(rows, num_threads=num_threads, schedule="static"):
        b = index // height
        i = index % height
        _row(image + (b * image_height + i) * image_width, image_width, kernel, kh, kw,
             out + index * width, width)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef _apply(const floating[:, :, ::1] image, const floating[:, ::1] kernel,
            floating[:, :, ::1] out, int num_threads):
    if out.shape[0] == 0:
        return
    with nogil:
        _correlate_valid(&image[0, 0, 0], image.shape[0], image.shape[1], image.shape[2],
                         &kernel[0, 0], kernel.shape[0], kernel.shape[1], &out[0, 0, 0],
                         num_threads)


def correlate_valid(image, kernel, out, int num_threads):
    """Valid cross-correlation of a (B, Hp, Wp) stack with a (kh, kw) kernel into ``out``."""
    # Dispatch on the element size by hand: Cython's dispatcher for a fused def
    # function costs more than a small correlation.
    if image.itemsize == 4:
        _apply[float](image, kernel, out, num_threads)
    else:
        _apply[double](image, kernel, out, num_threads)
