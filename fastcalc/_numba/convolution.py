"""Numba kernels for the convolution family.

Same names and signatures as :mod:`fastcalc.reference.convolution`.  Each
output row is built by adding ``kernel[a, c] * image_row[c:c + Wo]`` for every
tap: the innermost loop runs along columns with unit stride, which LLVM
vectorizes, and the threads share out the rows.  (An inner dot product per
output element, or an index that may be negative, keeps LLVM from
vectorizing and runs ~10x slower.)
"""

from numba import njit, prange

from fastcalc._numba import parallel_call
from fastcalc._numba._vecmath import FASTMATH

__all__ = ["correlate_valid"]

PARALLEL_MIN_WORK = 200_000  # multiply-adds below which one thread is faster
_COLUMNS = 1024  # output columns per pass: the row chunk stays in L1 for all taps

_JIT = dict(nogil=True, cache=True, error_model="numpy", fastmath=FASTMATH)


@njit(**_JIT)
def _row(image, kernel, out, batch, row):
    kh, kw = kernel.shape
    width = out.shape[2]
    target = out[batch, row]
    for start in range(0, width, _COLUMNS):
        stop = min(width, start + _COLUMNS)
        chunk = target[start:stop]
        chunk[:] = 0
        for a in range(kh):
            source = image[batch, row + a]
            for c in range(kw):
                weight = kernel[a, c]
                taps = source[start + c:stop + c]
                for j in range(chunk.size):
                    chunk[j] += weight * taps[j]


@njit(**_JIT)
def _serial(image, kernel, out):
    for batch in range(out.shape[0]):
        for row in range(out.shape[1]):
            _row(image, kernel, out, batch, row)


@njit(parallel=True, **_JIT)
def _parallel(image, kernel, out):
    rows = out.shape[1]
    for index in prange(out.shape[0] * rows):
        _row(image, kernel, out, index // rows, index % rows)


def correlate_valid(image, kernel, out, num_threads):
    if num_threads > 1 and out.size * kernel.size >= PARALLEL_MIN_WORK:
        parallel_call(_parallel, num_threads, image, kernel, out)
    else:
        _serial(image, kernel, out)
