"""Numba kernels for the convolution family.

Same names and signatures as :mod:`fastcalc.reference.convolution`.

``correlate``: each output row is built by adding ``kernel[a, c] *
image_row[...]`` for every tap: the innermost loop runs along columns with
unit stride, which LLVM vectorizes, and the threads share out the rows.
Taps that fall outside the image add ``kernel[a, c] * fillvalue`` instead, so
no padded copy is made (skipped only when that product is zero: an inf or
NaN weight or fill gives NaN, as in the reference).  (An inner dot product
per output element, or an index that may be negative, keeps LLVM from
vectorizing and runs ~10x slower.)  Indices are sums of array sizes and of
``top`` and ``left``, which ``correlate`` clamps to [-H, Ho + kh] and [-W,
Wo + kw] (beyond, a tap reads only the fill value, as just beyond): none can
overflow, and the slices and the ``inside`` test keep every access inside
its array whatever offsets the caller passes.

``conv2d`` and ``conv2d_grad_weight`` copy one image at a time into a
per-thread, zero-initialised buffer (rather than padding the whole batch:
a fresh batch-sized array costs page faults, and one image stays in L2).
The buffer holds the canvas P in *phase planes*: canvas row ``r * sh + u``
and column ``k * sw + v`` are stored at row ``r``, column ``k`` of plane
``(c, u, v)``, each plane ``Hr x Wk`` with ``Hr = Ho + (kh - 1) // sh`` and
``Wk = Wo + (kw - 1) // sw``.  Tap ``(c, a, b)`` then reads plane ``(c, a %
sh, b % sw)`` shifted by ``(a // sh, b // sw)``, so whatever the stride,
output ``(i, j)`` reads the tap's input at ``offset[tap] + i * Wk + j``: a
run over whole output rows is one contiguous, unit-stride loop, whose
columns ``j >= Wo`` are junk, thrown away (``(kw - 1) // sw`` per row: 3% of
the work for 3 x 3 at 64 wide).  The positions where the image lands are
the same for every image of a call, so the zeros elsewhere are written once.

The forward pass adds ``weight * run`` into four output rows (four filters)
for four taps per pass: each accumulator is loaded and stored once per 16
FMAs, which keeps the loop on the FMA units rather than the store port.
The weight gradient is 16 dot products per pass (four filters by four taps)
of ``grad_out`` rows, copied into the same ``Wk`` pitch with zeros in the
junk columns, with the runs.  Those zeros meet canvas values, which is exact
unless one is inf or NaN (0 * inf is NaN): then that image is done row by
row, without the junk.  Filters and taps are padded to multiples of four
(zero weights; taps reading a run of zeros) and the padding's results
dropped.  Both kernels run at 75-80 GFLOP/s per core in float32 (3 x 3, 16
channels, 64 x 64), two thirds of the ~116 GFLOP/s that independent FMA
chains reach per core here (Zen 4).

The forward pass' threads each take a contiguous range of (image, block of
four filters) items, so each builds the canvas of about N / threads images.
The weight gradient is summed per block of images (the caller's, fixed by
the shapes) into one buffer per block; threads take whole blocks (or, when
blocks are fewer than threads, chunks of filters of one), so every sum runs
over the same images in the same order for any thread count.
"""

import math

import numpy as np
from numba import njit, prange

from fastcalc._numba import parallel_call
from fastcalc._numba._vecmath import FASTMATH

__all__ = ["CONV2D_SECONDS_PER_MULTIPLY_ADD", "CORRELATE_SECONDS_PER_TAP", "conv2d",
           "conv2d_grad_weight", "correlate"]

# A generous time per multiply-add of conv2d and its weight gradient, on rows
# at least 16 wide and on narrower ones: a little slower than the slowest
# measured on one loaded core, float32 and float64 (1.9 and 0.7 GMAC/s).  The
# public functions slice long calls from it, for Ctrl-C.
CONV2D_SECONDS_PER_MULTIPLY_ADD = (2.5e-10, 2e-9)

PARALLEL_MIN_WORK = 200_000  # multiply-adds below which one thread is faster
# A generous time of one multiply-add of ``correlate`` on one thread: what the
# public functions slice long calls by (fastcalc._slices).
CORRELATE_SECONDS_PER_TAP = 5e-10
_COLUMNS = 1024  # output columns per pass: the row chunk stays in L1 for all taps
_RUN = 1024  # canvas positions per conv2d pass: its four accumulator rows stay in L1

_JIT = dict(nogil=True, cache=True, error_model="numpy", fastmath=FASTMATH)
# Dot products: without reassociation LLVM must add the terms in loop order,
# one at a time; with it each sum is kept as vector lanes added up at the end
# (a fixed order, so results are still reproducible).
_DOT_JIT = dict(_JIT, fastmath=FASTMATH | {"reassoc"})


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
                weighted_fill = weight * fillvalue
                # Output columns [low, high) read image columns j + c - left.
                low = min(stop, max(start, left - c)) if inside else stop
                high = max(low, min(stop, width + left - c)) if inside else stop
                # Outside taps add nothing only if weight * fillvalue is zero: an
                # inf or NaN weight or fill gives NaN (0 * inf), as in the reference.
                if weighted_fill != 0:
                    chunk[:low - start] += weighted_fill
                    chunk[high - start:] += weighted_fill
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
    # Any offset is safe: one beyond the image reads only fill values, as one
    # just beyond it does, so clamped to there it gives the same result, and
    # every index _row computes stays within a few validated sizes.
    top = min(max(top, -image.shape[1]), out.shape[1] + kernel.shape[0])
    left = min(max(left, -image.shape[2]), out.shape[2] + kernel.shape[1])
    fill = image.dtype.type(fillvalue)
    if num_threads > 1 and out.size * kernel.size >= PARALLEL_MIN_WORK:
        parallel_call(_parallel, num_threads, image, kernel, out, top, left, fill)
    else:
        _serial(image, kernel, out, top, left, fill)


def _per_thread(threads, shape, dtype):
    """Zeroed scratch arrays, one per thread: ``(threads, *shape)``.

    Each row is one cache line longer than asked, so no line is written by two
    threads (sharing one costs the forward pass a third of its speed).
    """
    gap = 64 // np.dtype(dtype).itemsize
    return np.zeros((threads, *shape[:-1], shape[-1] + gap), dtype)


class _Layout:
    """Where everything lies in the phase-plane canvas buffer of one call.

    ``placement`` says where the image lands: ``rows`` pairs each image row
    that lands in the buffer with the offset of its canvas row inside a
    channel's planes; ``columns`` has, per column phase, the first image
    column, its offset in the canvas row and the count, image and canvas
    columns advancing by ``steps``.  ``offsets`` are the taps' (c, a, b in C
    order, padded to a multiple of four) and ``chunk_rows`` the output rows
    per pass.
    """

    def __init__(self, image_shape, kernel_shape, out_shape, stride, upsample, pad):
        (channels, height, width), (kh, kw), (out_height, out_width) = \
            image_shape, kernel_shape, out_shape
        (sh, sw), (uh, uw) = stride, upsample
        plane_height, self.pitch = out_height + (kh - 1) // sh, out_width + (kw - 1) // sw
        plane_size = plane_height * self.pitch
        channel_size = sh * sw * plane_size

        y = pad[0] + np.arange(height) * uh
        kept = (y >= 0) & (y < sh * plane_height)
        rows = np.stack([np.flatnonzero(kept),
                         (y[kept] % sh * sw * plane_height + y[kept] // sh) * self.pitch])
        # The image columns of one phase are every (sw / g)-th, landing on every
        # (uw / g)-th column of its plane (g = gcd(sw, uw)).
        common = math.gcd(sw, uw)
        steps = np.array([sw // common, uw // common])
        first = max(0, -(pad[1] // uw))
        stop = min(width, -((pad[1] - sw * self.pitch) // uw))
        columns = np.zeros((sw, 3), np.int64)
        for start in range(first, min(stop, first + steps[0])):
            column = pad[1] + start * uw
            columns[column % sw] = (start, column % sw * plane_size + column // sw,
                                    len(range(start, stop, steps[0])))
        self.placement = (rows, columns, steps, channel_size)

        taps = np.arange(channels * kh * kw)
        c, a, b = taps // (kh * kw), taps // kw % kh, taps % kw
        offsets = ((((c * sh + a % sh) * sw + b % sw) * plane_height + a // sh) * self.pitch
                   + b // sw)
        # Padding taps read a run of zeros after the planes.
        padding = -offsets.size % 4
        self.size = channels * channel_size + (plane_size if padding else 0)
        self.offsets = np.concatenate([offsets, np.full(padding, channels * channel_size)])

        passes = -(-out_height * self.pitch // _RUN)
        self.chunk_rows = -(-out_height // passes)


@njit(**_JIT)
def _fill(canvas, image, placement):
    """Copy ``image`` (C, H, W) where it lands in the canvas; the rest stays zero."""
    rows, columns, steps, channel_size = placement
    # Explicit loops over slices: a slice assignment, or a call per row,
    # costs more than copying the row itself.
    for c in range(image.shape[0]):
        for r in range(rows.shape[1]):
            source = image[c, rows[0, r]]
            row = canvas[c * channel_size + rows[1, r]:]
            for v in range(columns.shape[0]):
                first, offset, count = columns[v, 0], columns[v, 1], columns[v, 2]
                if steps[0] == 1 and steps[1] == 1:
                    target, chunk = row[offset:offset + count], source[first:first + count]
                    for m in range(count):
                        target[m] = chunk[m]
                else:
                    for m in range(count):
                        row[offset + m * steps[1]] = source[first + m * steps[0]]


@njit(**_JIT)
def _fma4x4(acc, canvas, offsets, weights, f, t, start, size):
    """``acc[k, :size] += sum over u of weights[f + k, t + u] * run of tap t + u``."""
    w00, w01, w02, w03 = weights[f, t], weights[f, t + 1], weights[f, t + 2], weights[f, t + 3]
    w10, w11, w12, w13 = (weights[f + 1, t], weights[f + 1, t + 1], weights[f + 1, t + 2],
                          weights[f + 1, t + 3])
    w20, w21, w22, w23 = (weights[f + 2, t], weights[f + 2, t + 1], weights[f + 2, t + 2],
                          weights[f + 2, t + 3])
    w30, w31, w32, w33 = (weights[f + 3, t], weights[f + 3, t + 1], weights[f + 3, t + 2],
                          weights[f + 3, t + 3])
    s0 = canvas[offsets[t] + start:offsets[t] + start + size]
    s1 = canvas[offsets[t + 1] + start:offsets[t + 1] + start + size]
    s2 = canvas[offsets[t + 2] + start:offsets[t + 2] + start + size]
    s3 = canvas[offsets[t + 3] + start:offsets[t + 3] + start + size]
    # One 2-D accumulator rather than four row views: LLVM then checks each
    # run for overlap with one range, not with four.
    for j in range(size):
        v0, v1, v2, v3 = s0[j], s1[j], s2[j], s3[j]
        acc[0, j] = acc[0, j] + w00 * v0 + w01 * v1 + w02 * v2 + w03 * v3
        acc[1, j] = acc[1, j] + w10 * v0 + w11 * v1 + w12 * v2 + w13 * v3
        acc[2, j] = acc[2, j] + w20 * v0 + w21 * v1 + w22 * v2 + w23 * v3
        acc[3, j] = acc[3, j] + w30 * v0 + w31 * v1 + w32 * v2 + w33 * v3


@njit(**_JIT)
def _conv2d_items(x, weights, bias, out, placement, offsets, pitch, chunk_rows, canvas, acc,
                  begin, end):
    """Items ``begin <= item < end``: item = image * filter blocks + block of four."""
    filters, out_height, out_width = out.shape[1], out.shape[2], out.shape[3]
    blocks = weights.shape[0] // 4
    image = -1
    for item in range(begin, end):
        n, f = item // blocks, item % blocks * 4
        if n != image:
            _fill(canvas, x[n], placement)
            image = n
        for top in range(0, out_height, chunk_rows):
            count = min(chunk_rows, out_height - top)
            size = (count - 1) * pitch + out_width
            for k in range(4):
                acc[k, :size] = bias[f + k]  # starting from the bias saves a pass
            for t in range(0, offsets.size, 4):
                _fma4x4(acc, canvas, offsets, weights, f, t, top * pitch, size)
            for k in range(min(4, filters - f)):
                plane = out[n, f + k]
                for i in range(count):
                    target, row = plane[top + i], acc[k, i * pitch:i * pitch + out_width]
                    for j in range(out_width):
                        target[j] = row[j]


@njit(parallel=True, **_JIT)
def _conv2d_parallel(x, weights, bias, out, placement, offsets, pitch, chunk_rows, canvas, acc):
    threads = canvas.shape[0]
    items = out.shape[0] * (weights.shape[0] // 4)
    for thread in prange(threads):
        _conv2d_items(x, weights, bias, out, placement, offsets, pitch, chunk_rows,
                      canvas[thread], acc[thread], thread * items // threads,
                      (thread + 1) * items // threads)


def conv2d(x, weight, bias, out, stride, upsample, pad, num_threads):
    if out.size == 0:
        return
    filters, taps = weight.shape[0], math.prod(weight.shape[1:])
    layout = _Layout(x.shape[1:], weight.shape[2:], out.shape[2:], stride, upsample, pad)
    blocks = -(-filters // 4)
    weights = np.zeros((4 * blocks, layout.offsets.size), x.dtype)
    weights[:filters, :taps] = weight.reshape(filters, taps)
    biases = np.zeros(4 * blocks, x.dtype)
    biases[:filters] = bias
    items = out.shape[0] * blocks
    threads = min(num_threads, items) if out.size * taps >= PARALLEL_MIN_WORK else 1
    canvas = _per_thread(threads, (layout.size,), x.dtype)
    acc = _per_thread(threads, (4, layout.chunk_rows * layout.pitch), x.dtype)
    arguments = (x, weights, biases, out, layout.placement, layout.offsets, layout.pitch,
                 layout.chunk_rows)
    if threads > 1:
        parallel_call(_conv2d_parallel, threads, *arguments, canvas, acc)
    else:
        _conv2d_items(*arguments, canvas[0], acc[0], 0, items)


@njit(**_JIT)
def _finite(values):
    nonfinite = 0
    for j in range(values.size):
        nonfinite += values[j] - values[j] != 0  # NaN exactly for inf and NaN
    return nonfinite == 0


@njit(**_DOT_JIT)
def _dot4x4(partial, grads, canvas, offsets, f, t, start, size):
    """``partial[f + k, t + u] += grads[k, run] . run of tap t + u`` for k, u < 4."""
    g0, g1 = grads[0, start:start + size], grads[1, start:start + size]
    g2, g3 = grads[2, start:start + size], grads[3, start:start + size]
    s0 = canvas[offsets[t] + start:offsets[t] + start + size]
    s1 = canvas[offsets[t + 1] + start:offsets[t + 1] + start + size]
    s2 = canvas[offsets[t + 2] + start:offsets[t + 2] + start + size]
    s3 = canvas[offsets[t + 3] + start:offsets[t + 3] + start + size]
    p00, p01, p02, p03 = partial[f, t], partial[f, t + 1], partial[f, t + 2], partial[f, t + 3]
    p10, p11, p12, p13 = (partial[f + 1, t], partial[f + 1, t + 1], partial[f + 1, t + 2],
                          partial[f + 1, t + 3])
    p20, p21, p22, p23 = (partial[f + 2, t], partial[f + 2, t + 1], partial[f + 2, t + 2],
                          partial[f + 2, t + 3])
    p30, p31, p32, p33 = (partial[f + 3, t], partial[f + 3, t + 1], partial[f + 3, t + 2],
                          partial[f + 3, t + 3])
    for j in range(size):
        a0, a1, a2, a3 = g0[j], g1[j], g2[j], g3[j]
        v0, v1, v2, v3 = s0[j], s1[j], s2[j], s3[j]
        p00 += a0 * v0
        p01 += a0 * v1
        p02 += a0 * v2
        p03 += a0 * v3
        p10 += a1 * v0
        p11 += a1 * v1
        p12 += a1 * v2
        p13 += a1 * v3
        p20 += a2 * v0
        p21 += a2 * v1
        p22 += a2 * v2
        p23 += a2 * v3
        p30 += a3 * v0
        p31 += a3 * v1
        p32 += a3 * v2
        p33 += a3 * v3
    partial[f, t], partial[f, t + 1], partial[f, t + 2], partial[f, t + 3] = p00, p01, p02, p03
    partial[f + 1, t], partial[f + 1, t + 1], partial[f + 1, t + 2], partial[f + 1, t + 3] = \
        p10, p11, p12, p13
    partial[f + 2, t], partial[f + 2, t + 1], partial[f + 2, t + 2], partial[f + 2, t + 3] = \
        p20, p21, p22, p23
    partial[f + 3, t], partial[f + 3, t + 1], partial[f + 3, t + 2], partial[f + 3, t + 3] = \
        p30, p31, p32, p33


@njit(**_JIT)
def _grad_units(grad_out, x, placement, offsets, pitch, chunk_rows, canvas, grads, partial,
                block, chunks, begin, end):
    """Units ``begin <= unit < end``: unit = block of images * chunks + chunk of filters.

    Unit (k, q) adds the images of block k, in order, into ``partial[k]`` for
    the blocks of four filters of chunk q: each sum runs over the same images
    in the same order whoever runs it.
    """
    filters, out_height, out_width = grad_out.shape[1], grad_out.shape[2], grad_out.shape[3]
    blocks = partial.shape[1] // 4
    for unit in range(begin, end):
        k, q = unit // chunks, unit % chunks
        first_block, stop_block = q * blocks // chunks, (q + 1) * blocks // chunks
        for n in range(k * block, min(grad_out.shape[0], (k + 1) * block)):
            _fill(canvas, x[n], placement)
            # A run over whole rows multiplies the zeros in the junk columns of
            # `grads` by canvas values: exact, unless one is inf or NaN.
            whole_rows = _finite(canvas)
            for f in range(4 * first_block, 4 * stop_block, 4):
                for m in range(min(4, filters - f)):
                    plane = grad_out[n, f + m]
                    for i in range(out_height):
                        source, row = plane[i], grads[m, i * pitch:i * pitch + out_width]
                        for j in range(out_width):
                            row[j] = source[j]
                for top in range(0, out_height, chunk_rows):
                    count = min(chunk_rows, out_height - top)
                    if whole_rows:
                        runs, size = 1, (count - 1) * pitch + out_width
                    else:
                        runs, size = count, out_width
                    for r in range(runs):
                        for t in range(0, offsets.size, 4):
                            _dot4x4(partial[k], grads, canvas, offsets, f, t, (top + r) * pitch,
                                    size)


@njit(parallel=True, **_JIT)
def _grad_parallel(grad_out, x, placement, offsets, pitch, chunk_rows, canvas, grads, partial,
                   block, chunks):
    threads = canvas.shape[0]
    units = partial.shape[0] * chunks
    for thread in prange(threads):
        _grad_units(grad_out, x, placement, offsets, pitch, chunk_rows, canvas[thread],
                    grads[thread], partial, block, chunks, thread * units // threads,
                    (thread + 1) * units // threads)


def conv2d_grad_weight(grad_out, x, partial, block, stride, pad, num_threads):
    if grad_out.size == 0 or partial.size == 0:
        partial[...] = 0
        return
    filters, taps = partial.shape[1], math.prod(partial.shape[2:])
    layout = _Layout(x.shape[1:], partial.shape[3:], grad_out.shape[2:], stride, (1, 1), pad)
    blocks = -(-filters // 4)
    threads = min(num_threads, len(partial) * blocks) \
        if grad_out.size * taps >= PARALLEL_MIN_WORK else 1
    # Enough chunks of filters for every thread (they split no sum, so any count
    # gives the same result); one when the image blocks suffice, so that each
    # image's canvas is built once.
    chunks = min(blocks, -(-threads // len(partial)))
    canvas = _per_thread(threads, (layout.size,), x.dtype)
    # grad_out rows in the canvas' pitch; the junk columns stay zero.
    grads = _per_thread(threads, (4, grad_out.shape[2] * layout.pitch), x.dtype)
    padded = np.zeros((len(partial), 4 * blocks, layout.offsets.size), x.dtype)
    arguments = (grad_out, x, layout.placement, layout.offsets, layout.pitch, layout.chunk_rows)
    if threads > 1:
        parallel_call(_grad_parallel, threads, *arguments, canvas, grads, padded, block, chunks)
    else:
        _grad_units(*arguments, canvas[0], grads[0], padded, block, chunks, 0,
                    len(partial) * chunks)
    partial[...] = padded[:, :filters, :taps].reshape(partial.shape)
