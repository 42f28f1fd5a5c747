"""Numba kernels for the convolution family.

Same names and signatures as :mod:`fastcalc.reference.convolution`.  Each
output row is built by adding ``kernel[a, c] * image_row[...]`` for every tap:
the innermost loop runs along columns with unit stride, which LLVM
vectorizes, and the threads share out the rows.  Taps that fall outside the
image add ``kernel[a, c] * fillvalue`` instead, so no padded copy is made.
(An inner dot product per output element, or an index that may be negative,
keeps LLVM from vectorizing and runs ~10x slower.)
"""

from numba import njit, prange

from fastcalc._numba import parallel_call
from fastcalc._numba._vecmath import FASTMATH

__all__ = ["correlate"]

PARALLEL_MIN_WORK = 200_000  # multiply-adds below which one thread is faster
_COLUMNS = 1024  # output columns per pass: the row chunk stays in L1 for all taps

_JIT = dict(nogil=True, cache=True, error_model="numpy", fastmath=FASTMATH)


@njit(**_JIT)
def _add(target, weight, source):
    for j in range(target.size):
        target[j] += weight * source[j]


@njit(**_JIT)
def _row(image, kernel, out, top, left, fillvalue, batch, row):
    kh, kw = kernel.shape
    height, width = image.shape[1], image.shape[2]
    target = out[batch, row]
    for start in range(0, target.size, _COLUMNS):
        stop = min(target.size, start + _COLUMNS)
        chunk = target[start:stop]
        chunk[:] = 0
        for a in range(kh):
            source_row = row + a - top
            inside = 0 <= source_row < height
            for c in range(kw):
                weight = kernel[a, c]
                # Output columns [low, high) read image columns j + c - left.
                low = min(stop, max(start, left - c)) if inside else stop
                high = max(low, min(stop, width + left - c)) if inside else stop
                if fillvalue != 0:
                    chunk[:low - start] += weight * fillvalue
                    chunk[high - start:] += weight * fillvalue
                if high > low:
                    _add(chunk[low - start:high - start], weight,
                         image[batch, source_row, low + c - left:high + c - left])


@njit(**_JIT)
def _serial(image, kernel, out, top, left, fillvalue):
    for batch in range(out.shape[0]):
        for row in range(out.shape[1]):
            _row(image, kernel, out, top, left, fillvalue, batch, row)


@njit(parallel=True, **_JIT)
def _parallel(image, kernel, out, top, left, fillvalue):
    rows = out.shape[1]
    for index in prange(out.shape[0] * rows):
        _row(image, kernel, out, top, left, fillvalue, index // rows, index % rows)


def correlate(image, kernel, out, top, left, fillvalue, num_threads):
    fill = image.dtype.type(fillvalue)
    if num_threads > 1 and out.size * kernel.size >= PARALLEL_MIN_WORK:
        parallel_call(_parallel, num_threads, image, kernel, out, top, left, fill)
    else:
        _serial(image, kernel, out, top, left, fill)
