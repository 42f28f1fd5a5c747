"""Cython kernels for the convolution family.

Same names and signatures as :mod:`fastcalc.reference.convolution`:
``correlate(image, kernel, out, top, left, fillvalue, num_threads)`` with
``image`` (B, H, W), ``kernel`` (kh, kw) and ``out`` (B, Ho, Wo) C-contiguous,
native, of one dtype (float32 or float64); ``out`` does not overlap the
inputs.  The caller has validated all of that.

Output rows are done in pairs, shared out among the threads.  Where every tap
falls inside the image, C row kernels (below) keep blocks of output columns
in vector registers over all taps and feed each image vector loaded to both
rows of the pair.  The rows and columns near the border, whose taps reach
outside the image, add ``kernel[a, c] * fillvalue`` for those taps instead,
so no padded copy of the image is made (skipped only when that product is
zero: an inf or NaN weight or fill gives NaN, as in the reference).

Index arithmetic cannot overflow: every index is a sum or product of the
sizes of the arrays passed (B, H, W, kh, kw, Ho, Wo; products only up to
``image.size``, ``out.size`` or ``kernel.size``) and of ``top`` and
``left``, which ``correlate`` clamps to [-H, Ho + kh] and [-W, Wo + kw]
(beyond, a tap reads only the fill value, as just beyond: the same result).
So no intermediate exceeds a few array extents, and every read and write
stays inside its array, whatever offsets the caller passes.  The one
product of sizes that could exceed 2**63, the work ``out.size *
kernel.size`` deciding on threads, is computed in double.

The CNN layer's ``conv2d(x, weight, bias, out, stride, upsample, pad,
num_threads)`` and ``conv2d_grad_weight(grad_out, x, partial, block, stride,
pad, num_threads)`` (same contract as the reference) run the C kernels of
conv2d.h.  conv2d's work items are one image and one group of filters; each
thread takes a contiguous range of items, so it pads each of its images into
its canvas once.  The weight gradient's units are one block of images (the
caller's) and a chunk of filter groups, summed into that block's partial
sum image by image in order: the same sums in the same order for any thread
count.

setup.py compiles this file once per instruction set; :func:`fastcalc._cython.load`
imports the best one the CPU runs.
"""

cimport cython
from cython.parallel cimport parallel, prange
from libc.stdlib cimport calloc, free

import numpy as np

from _fused cimport floating
from _openmp cimport FASTCALC_OPENMP, fastcalc_current_cpu, fastcalc_leave_cpu

# The row kernels, in C: Cython has no vector types.  FC_ROW(T, V, NAME)
# defines NAME(row, image_width, kernel, kh, kw, out, out_width), which writes
# one output row; row points at the first image row it reads.
#
# A block of FC_NACC vectors of output columns is summed in registers over all
# taps.  FC_NACC independent sums hide the FMA latency (Zen 5 retires two
# 512-bit FMAs a cycle, latency 4).  The last block of a row is shifted left to
# end at the row's end, recomputing a few columns (same values) instead of
# running a scalar tail; rows narrower than a block use single vectors, rows
# narrower than a vector scalar code.
cdef extern from *:
    """
    #include "vectors.h"

    #if FC_VECTOR
    #define FC_NACC 8
    /* Two-row blocks: FC_H vectors of columns per row, 2 * FC_H sums. */
    #if FC_VBYTES == 64
    #define FC_H 8
    #else
    #define FC_H 4
    #endif
    #endif

    #define FC_SCALAR_ROW(T, row, image_width, kernel, kh, kw, out, start, stop)       \\
        do {                                                                           \\
            Py_ssize_t fc_j, fc_a, fc_c;                                               \\
            for (fc_j = (start); fc_j < (stop); fc_j++) {                              \\
                T fc_s = 0;                                                            \\
                for (fc_a = 0; fc_a < (kh); fc_a++) {                                  \\
                    const T* fc_src = (row) + fc_a * (image_width) + fc_j;             \\
                    const T* fc_w = (kernel) + fc_a * (kw);                            \\
                    for (fc_c = 0; fc_c < (kw); fc_c++)                                \\
                        fc_s = fc_madd_##T(fc_w[fc_c], fc_src[fc_c], fc_s);            \\
                }                                                                      \\
                (out)[fc_j] = fc_s;                                                    \\
            }                                                                          \\
        } while (0)

    #if FC_VECTOR
    #define FC_ROW(T, V, NAME)                                                         \\
    static void NAME(const T* row, Py_ssize_t image_width, const T* kernel,            \\
                     Py_ssize_t kh, Py_ssize_t kw, T* out, Py_ssize_t width)           \\
    {                                                                                  \\
        enum { L = FC_VBYTES / sizeof(T), BLOCK = FC_NACC * L };                       \\
        Py_ssize_t j, a, c;                                                            \\
        int u;                                                                         \\
        if (width >= BLOCK) {                                                          \\
            for (j = 0; j < width; j += BLOCK) {                                       \\
                V acc[FC_NACC];                                                        \\
                if (j > width - BLOCK)                                                 \\
                    j = width - BLOCK;                                                 \\
                for (u = 0; u < FC_NACC; u++)                                          \\
                    acc[u] = (V){0};                                                   \\
                for (a = 0; a < kh; a++) {                                             \\
                    const T* src = row + a * image_width + j;                          \\
                    const T* w = kernel + a * kw;                                      \\
                    for (c = 0; c < kw; c++) {                                         \\
                        V wv = w[c] + FC_NEGZERO(V);                                   \\
                        for (u = 0; u < FC_NACC; u++)                                  \\
                            acc[u] += wv * *(const V*)(src + c + u * L);               \\
                    }                                                                  \\
                }                                                                      \\
                for (u = 0; u < FC_NACC; u++)                                          \\
                    *(V*)(out + j + u * L) = acc[u];                                   \\
            }                                                                          \\
        } else if (width >= L) {                                                       \\
            for (j = 0; j < width; j += L) {                                           \\
                V acc = (V){0};                                                        \\
                if (j > width - L)                                                     \\
                    j = width - L;                                                     \\
                for (a = 0; a < kh; a++) {                                             \\
                    const T* src = row + a * image_width + j;                          \\
                    const T* w = kernel + a * kw;                                      \\
                    for (c = 0; c < kw; c++)                                           \\
                        acc += (w[c] + FC_NEGZERO(V)) * *(const V*)(src + c);          \\
                }                                                                      \\
                *(V*)(out + j) = acc;                                                  \\
            }                                                                          \\
        } else {                                                                       \\
            FC_SCALAR_ROW(T, row, image_width, kernel, kh, kw, out, 0, width);         \\
        }                                                                              \\
    }
    /* NAME(row, image_width, kernel, kh, kw, out, width, stride): two output
       rows at once, the second at out + stride.  Each image vector loaded
       feeds both rows' sums (rows i and i + 1 share kh - 1 image rows), FC_H
       vectors of columns per row.  Rows narrower than a block use NAME1 twice. */
    #define FC_ROW2(T, V, NAME, NAME1)                                                 \\
    static void NAME(const T* row, Py_ssize_t image_width, const T* kernel,            \\
                     Py_ssize_t kh, Py_ssize_t kw, T* out, Py_ssize_t width,           \\
                     Py_ssize_t stride)                                                \\
    {                                                                                  \\
        enum { L = FC_VBYTES / sizeof(T), H = FC_H, BLOCK = H * L };                   \\
        Py_ssize_t j, r, c;                                                            \\
        int u;                                                                         \\
        if (width < BLOCK) {                                                           \\
            NAME1(row, image_width, kernel, kh, kw, out, width);                       \\
            NAME1(row + image_width, image_width, kernel, kh, kw, out + stride, width); \\
            return;                                                                    \\
        }                                                                              \\
        for (j = 0; j < width; j += BLOCK) {                                           \\
            V acc0[H], acc1[H];                                                        \\
            if (j > width - BLOCK)                                                     \\
                j = width - BLOCK;                                                     \\
            for (u = 0; u < H; u++) {                                                  \\
                acc0[u] = (V){0};                                                      \\
                acc1[u] = (V){0};                                                      \\
            }                                                                          \\
            /* image row 0 feeds only output row 0 (kernel row 0) */                   \\
            for (c = 0; c < kw; c++) {                                                 \\
                const T* src = row + j + c;                                            \\
                V w0 = kernel[c] + FC_NEGZERO(V);                                      \\
                for (u = 0; u < H; u++)                                                \\
                    acc0[u] += w0 * *(const V*)(src + u * L);                          \\
            }                                                                          \\
            /* image rows 1 .. kh - 1 feed row 0 (kernel row r) and row 1 (r - 1) */   \\
            for (r = 1; r < kh; r++) {                                                 \\
                const T* w0p = kernel + r * kw;                                        \\
                const T* w1p = w0p - kw;                                               \\
                for (c = 0; c < kw; c++) {                                             \\
                    const T* src = row + r * image_width + j + c;                      \\
                    V w0 = w0p[c] + FC_NEGZERO(V);                                     \\
                    V w1 = w1p[c] + FC_NEGZERO(V);                                     \\
                    for (u = 0; u < H; u++) {                                          \\
                        V x = *(const V*)(src + u * L);                                \\
                        FC_KEEP(x);                                                    \\
                        acc0[u] += w0 * x;                                             \\
                        acc1[u] += w1 * x;                                             \\
                    }                                                                  \\
                }                                                                      \\
            }                                                                          \\
            /* image row kh feeds only output row 1 (kernel row kh - 1) */             \\
            for (c = 0; c < kw; c++) {                                                 \\
                const T* src = row + kh * image_width + j + c;                         \\
                V w1 = kernel[(kh - 1) * kw + c] + FC_NEGZERO(V);                      \\
                for (u = 0; u < H; u++)                                                \\
                    acc1[u] += w1 * *(const V*)(src + u * L);                          \\
            }                                                                          \\
            for (u = 0; u < H; u++) {                                                  \\
                *(V*)(out + j + u * L) = acc0[u];                                      \\
                *(V*)(out + stride + j + u * L) = acc1[u];                             \\
            }                                                                          \\
        }                                                                              \\
    }
    FC_ROW(float, fc_vf, fc_row_float)
    FC_ROW(double, fc_vd, fc_row_double)
    /* The columns FC_ROW2 sums in one block (narrower rows take FC_ROW). */
    #define FC_ROW2_BLOCK(size) (FC_H * FC_VBYTES / (size))
    FC_ROW2(float, fc_vf, fc_row2_float, fc_row_float)
    FC_ROW2(double, fc_vd, fc_row2_double, fc_row_double)
    #else
    #define FC_ROW(T, NAME)                                                            \\
    static void NAME(const T* row, Py_ssize_t image_width, const T* kernel,            \\
                     Py_ssize_t kh, Py_ssize_t kw, T* out, Py_ssize_t width)           \\
    {                                                                                  \\
        FC_SCALAR_ROW(T, row, image_width, kernel, kh, kw, out, 0, width);             \\
    }
    FC_ROW(float, fc_row_float)
    FC_ROW(double, fc_row_double)
    #define FC_ROW2(T, NAME)                                                           \\
    static void NAME(const T* row, Py_ssize_t image_width, const T* kernel,            \\
                     Py_ssize_t kh, Py_ssize_t kw, T* out, Py_ssize_t width,           \\
                     Py_ssize_t stride)                                                \\
    {                                                                                  \\
        FC_SCALAR_ROW(T, row, image_width, kernel, kh, kw, out, 0, width);             \\
        FC_SCALAR_ROW(T, row + image_width, image_width, kernel, kh, kw,               \\
                      out + stride, 0, width);                                         \\
    }
    FC_ROW2(float, fc_row2_float)
    FC_ROW2(double, fc_row2_double)
    #define FC_ROW2_BLOCK(size) 1
    #endif
    """
    Py_ssize_t FC_ROW2_BLOCK(Py_ssize_t size) noexcept nogil
    void fc_row_float(const float* row, Py_ssize_t image_width, const float* kernel,
                      Py_ssize_t kh, Py_ssize_t kw, float* out, Py_ssize_t width) noexcept nogil
    void fc_row_double(const double* row, Py_ssize_t image_width, const double* kernel,
                       Py_ssize_t kh, Py_ssize_t kw, double* out, Py_ssize_t width) noexcept nogil
    void fc_row2_float(const float* row, Py_ssize_t image_width, const float* kernel,
                       Py_ssize_t kh, Py_ssize_t kw, float* out, Py_ssize_t width,
                       Py_ssize_t stride) noexcept nogil
    void fc_row2_double(const double* row, Py_ssize_t image_width, const double* kernel,
                        Py_ssize_t kh, Py_ssize_t kw, double* out, Py_ssize_t width,
                       Py_ssize_t stride) noexcept nogil

cdef extern from "conv2d.h" nogil:
    ctypedef struct fc_geometry:
        Py_ssize_t channels, height, width, filters, kh, kw, out_height, out_width
        Py_ssize_t sh, sw, uh, uw, top, left, canvas_height, canvas_width, phase_width
    const Py_ssize_t FC_CONV_FB
    void fc_canvas_size(fc_geometry* g)
    Py_ssize_t fc_canvas_elements(const fc_geometry* g)
    void fc_canvas_float(const float* image, const fc_geometry* g, float* canvas)
    void fc_canvas_double(const double* image, const fc_geometry* g, double* canvas)
    void fc_conv_item_float(const float* canvas, const fc_geometry* g, const float* weight,
                            const float* bias, float* out, Py_ssize_t f0, Py_ssize_t f1)
    void fc_conv_item_double(const double* canvas, const fc_geometry* g, const double* weight,
                             const double* bias, double* out, Py_ssize_t f0, Py_ssize_t f1)
    void fc_gw_item_float(const float* canvas, const fc_geometry* g, const float* grad,
                          float* partial, Py_ssize_t f0, Py_ssize_t f1)
    void fc_gw_item_double(const double* canvas, const fc_geometry* g, const double* grad,
                           double* partial, Py_ssize_t f0, Py_ssize_t f1)

cdef extern from "fma_probe.h" nogil:
    const int FC_PROBE_CHAINS
    float fc_fma_probe_float(long iterations, int* lanes)
    double fc_fma_probe_double(long iterations, int* lanes)

__all__ = ["CONV2D_SECONDS_PER_MULTIPLY_ADD", "CORRELATE_SECONDS_PER_TAP", "conv2d",
           "conv2d_grad_weight", "correlate", "fma_probe"]

# A generous time of one multiply-add of ``correlate`` on one thread (the
# baseline build, float64): what the public functions slice long calls by
# (fastcalc._slices).
CORRELATE_SECONDS_PER_TAP = 3e-10
# A generous time per multiply-add of conv2d and its weight gradient, on rows
# at least 16 wide and on narrower ones (scalar code): a little slower than
# the slowest measured on one loaded core, float32 and float64 (1.6 and 0.14
# GMAC/s).  The public functions slice long calls from it, for Ctrl-C.
CONV2D_SECONDS_PER_MULTIPLY_ADD = (2.5e-10, 1e-8)

OPENMP = FASTCALC_OPENMP

# Multiply-adds below which one thread is faster than starting a parallel region.
cdef Py_ssize_t _PARALLEL_MIN_WORK = 200_000
PARALLEL_MIN_WORK = _PARALLEL_MIN_WORK

cdef Py_ssize_t _COLUMNS = 1024


cdef extern from "vectors.h" nogil:
    double fc_madd_double(double a, double b, double c)
    float fc_madd_float(float a, float b, float c)


cdef inline floating _madd(floating a, floating b, floating c) noexcept nogil:
    # a * b + c rounded as the vector kernels round it (see vectors.h).
    if floating is float:
        return fc_madd_float(a, b, c)
    else:
        return fc_madd_double(a, b, c)


cdef inline void _add(floating* target, floating weight, const floating* source,
                      Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(n):
        target[j] = _madd(weight, source[j], target[j])


cdef void _row(
    const floating* image, Py_ssize_t height, Py_ssize_t width, Py_ssize_t image_row,
    const floating* kernel, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t top, Py_ssize_t left,
    floating fill, Py_ssize_t row, floating* out, Py_ssize_t begin, Py_ssize_t end,
) noexcept nogil:
    # image: the image of this output row's batch; out: the output row, of
    # which this writes columns [begin, end).
    cdef Py_ssize_t start = begin, stop, a, c, j, low, high, source_row
    cdef floating weight
    cdef bint inside
    while start < end:
        stop = min(end, start + _COLUMNS)
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
                # Outside taps add nothing only if weight * fill is zero: an
                # inf or NaN weight or fill gives NaN (0 * inf), as in the reference.
                if weight * fill != 0:
                    for j in range(start, low):
                        out[j] = _madd(weight, fill, out[j])
                    for j in range(high, stop):
                        out[j] = _madd(weight, fill, out[j])
                if high > low:
                    _add(out + low, weight, image + source_row * image_row + low + c - left,
                         high - low)
        start = stop


cdef void _edge(
    const floating* image, Py_ssize_t height, Py_ssize_t width, Py_ssize_t image_row,
    const floating* kernel, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t top, Py_ssize_t left,
    floating fill, Py_ssize_t row, floating* out, Py_ssize_t begin, Py_ssize_t end,
) noexcept nogil:
    # Columns [begin, end) of output row ``row``, one element at a time: for the
    # few columns at the left and right edges, where _row's per-tap set-up
    # would cost more than the sums.
    cdef Py_ssize_t j, a, c, source_row, source_column
    cdef const floating* source
    cdef const floating* weights
    cdef floating total
    for j in range(begin, end):
        total = 0
        for a in range(kh):
            source_row = row + a - top
            weights = kernel + a * kw
            if 0 <= source_row < height:
                source = image + source_row * image_row
                for c in range(kw):
                    source_column = j + c - left
                    if 0 <= source_column < width:
                        total = _madd(weights[c], source[source_column], total)
                    else:
                        total = _madd(weights[c], fill, total)
            else:
                for c in range(kw):
                    total = _madd(weights[c], fill, total)
        out[j] = total


cdef inline void _fast_rows(const floating* row, Py_ssize_t image_width,
                           const floating* kernel, Py_ssize_t kh, Py_ssize_t kw,
                           floating* out, Py_ssize_t width, Py_ssize_t stride,
                           bint two) noexcept nogil:
    if floating is float:
        if two:
            fc_row2_float(row, image_width, kernel, kh, kw, out, width, stride)
        else:
            fc_row_float(row, image_width, kernel, kh, kw, out, width)
    else:
        if two:
            fc_row2_double(row, image_width, kernel, kh, kw, out, width, stride)
        else:
            fc_row_double(row, image_width, kernel, kh, kw, out, width)


cdef struct _Edges:
    # The left and right edges of the output rows the vector kernels sum
    # (``left`` and ``right`` columns, ``high`` the first right one), copied
    # with their fill values into a scratch image of rows ``columns`` wide:
    # the left edge's taps at column 0, the right edge's at ``start``.  The
    # vector kernels sum it ``width`` columns wide into ``out`` (2 rows).
    Py_ssize_t left, right, high, start, width, columns
    void* image
    void* out


cdef _Edges _edges(Py_ssize_t low, Py_ssize_t high, Py_ssize_t out_width, Py_ssize_t kw,
                   Py_ssize_t size) noexcept nogil:
    cdef _Edges edges
    edges.left, edges.right, edges.high = low, out_width - high, high
    edges.start = low + kw - 1 if low else 0
    edges.width = max(edges.start + edges.right, FC_ROW2_BLOCK(size))
    edges.columns = edges.width + kw - 1
    edges.image = NULL
    edges.out = NULL
    return edges


cdef void _free_scratch(_Edges* edges) noexcept nogil:
    free(edges.image)
    free(edges.out)
    edges.image = NULL
    edges.out = NULL


cdef void _scratch(_Edges* edges, Py_ssize_t kh, Py_ssize_t size) noexcept nogil:
    # Allocates edges' scratch rows (zeros: the columns between and after the
    # edges' taps are summed too, and never read back); out of memory, none
    # (edges.image NULL: _pair sums the edges one column after another).
    edges.image = calloc((kh + 1) * edges.columns, size)
    edges.out = calloc(2 * edges.width, size)
    if edges.image == NULL or edges.out == NULL:
        _free_scratch(edges)


cdef inline void _copy_taps(const floating* source, Py_ssize_t first, Py_ssize_t count,
                            Py_ssize_t width, floating fill, floating* target) noexcept nogil:
    # target[t] = source[first + t] for t < count, fill where that lies outside [0, width).
    cdef Py_ssize_t t, column
    for t in range(count):
        column = first + t
        target[t] = source[column] if 0 <= column < width else fill


cdef void _scratch_edges(
    const floating* image_rows, Py_ssize_t width, Py_ssize_t image_row,
    const floating* kernel, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t left, floating fill,
    floating* out_i, Py_ssize_t out_row, Py_ssize_t n, _Edges* edges,
) noexcept nogil:
    # The edges of n output rows (image_rows: the first image row they read),
    # summed by the vector kernels over the scratch image: each output is the
    # same rounded sum as on every other path (a fill tap is a tap of value
    # fill), many times faster than one column after another for wide kernels.
    cdef floating* scratch = <floating*>edges.image
    cdef floating* sums = <floating*>edges.out
    cdef Py_ssize_t r, t
    for r in range(kh + n - 1):
        if edges.left:
            _copy_taps(image_rows + r * image_row, -left, edges.left + kw - 1, width, fill,
                       scratch + r * edges.columns)
        if edges.right:
            _copy_taps(image_rows + r * image_row, edges.high - left, edges.right + kw - 1,
                       width, fill, scratch + r * edges.columns + edges.start)
    _fast_rows(scratch, edges.columns, kernel, kh, kw, sums, edges.width, edges.width, n == 2)
    for r in range(n):
        for t in range(edges.left):
            out_i[r * out_row + t] = sums[r * edges.width + t]
        for t in range(edges.right):
            out_i[r * out_row + edges.high + t] = sums[r * edges.width + edges.start + t]


@cython.cdivision(True)
cdef void _pair(
    const floating* image, Py_ssize_t height, Py_ssize_t width, Py_ssize_t image_row,
    Py_ssize_t image_plane, const floating* kernel, Py_ssize_t kh, Py_ssize_t kw,
    Py_ssize_t top, Py_ssize_t left, floating fill, floating* out, Py_ssize_t out_height,
    Py_ssize_t out_width, Py_ssize_t out_row, Py_ssize_t out_plane,
    Py_ssize_t pairs_per_image, Py_ssize_t pair, _Edges* edges,
) noexcept nogil:
    # Output rows i = 2 * (pair % pairs_per_image) and i + 1 (if any) of image b.
    # Columns and rows whose taps all fall inside the image go to the vector
    # kernels, and their edges too if ``edges`` has scratch rows (else _edge);
    # the rest to _row, which adds the fill value for outside taps.
    # Rows and images lie image_row (out_row) and image_plane (out_plane)
    # elements apart: views of larger arrays are read and written in place.
    cdef Py_ssize_t b = pair // pairs_per_image
    cdef Py_ssize_t i = 2 * (pair % pairs_per_image)
    cdef Py_ssize_t n = 2 if i + 1 < out_height else 1
    cdef Py_ssize_t r, low = edges.left, high = edges.high
    cdef const floating* image_b = image + b * image_plane
    cdef floating* out_i = out + b * out_plane + i * out_row
    if high > low and i >= top and i + n - 1 - top + kh <= height:
        _fast_rows(image_b + (i - top) * image_row + low - left, image_row, kernel, kh, kw,
                   out_i + low, high - low, out_row, n == 2)
        if edges.image != NULL:
            _scratch_edges(image_b + (i - top) * image_row, width, image_row, kernel, kh, kw,
                           left, fill, out_i, out_row, n, edges)
            return
        for r in range(n):
            _edge(image_b, height, width, image_row, kernel, kh, kw, top, left, fill, i + r,
                  out_i + r * out_row, 0, low)
            _edge(image_b, height, width, image_row, kernel, kh, kw, top, left, fill, i + r,
                  out_i + r * out_row, high, out_width)
    else:
        for r in range(n):
            _row(image_b, height, width, image_row, kernel, kh, kw, top, left, fill, i + r,
                 out_i + r * out_row, 0, out_width)


# Edges at least this many columns wide (kernels 7 wide and more) are summed
# by the vector kernels over scratch rows; narrower ones cost less one column
# after the other.
cdef Py_ssize_t _SCRATCH_EDGE = 3


@cython.cdivision(True)
cdef void _correlate(
    const floating* image, Py_ssize_t batch, Py_ssize_t height, Py_ssize_t width,
    Py_ssize_t image_row, Py_ssize_t image_plane, const floating* kernel, Py_ssize_t kh,
    Py_ssize_t kw, Py_ssize_t top, Py_ssize_t left, floating fill, floating* out,
    Py_ssize_t out_height, Py_ssize_t out_width, Py_ssize_t out_row, Py_ssize_t out_plane,
    int num_threads,
) noexcept nogil:
    cdef Py_ssize_t pairs_per_image = (out_height + 1) // 2
    cdef Py_ssize_t pairs = batch * pairs_per_image
    cdef Py_ssize_t pair, chunk
    cdef int caller_cpu
    # Inside columns [low, high): 0 <= j - left and j + kw - 1 - left < width.
    cdef Py_ssize_t low = min(out_width, max(0, left))
    cdef Py_ssize_t high = max(low, min(out_width, width - kw + 1 + left))
    cdef bint scratch = max(low, out_width - high) >= _SCRATCH_EDGE and high > low
    cdef _Edges edges = _edges(low, high, out_width, kw, sizeof(floating))
    # The work in double: out.size * kernel.size may exceed the int range.
    if num_threads == 1 or <double>(batch * out_height * out_width) * kh * kw < _PARALLEL_MIN_WORK:
        if scratch:
            _scratch(&edges, kh, sizeof(floating))
        for pair in range(pairs):
            _pair(image, height, width, image_row, image_plane, kernel, kh, kw, top, left, fill,
                  out, out_height, out_width, out_row, out_plane, pairs_per_image, pair, &edges)
        _free_scratch(&edges)
        return
    # In chunks taken as threads come free, 16 per thread: when another process
    # holds one thread's core, the other threads take its rows instead of
    # waiting for it.  Chunks of 32 and more pairs keep the rows that
    # consecutive pairs share in cache (chunks of 4 made an idle 3x3 on
    # 2048x2048 take 1.6x as long).
    chunk = max(4, pairs // (16 * num_threads))
    caller_cpu = fastcalc_current_cpu()
    with parallel(num_threads=num_threads):
        fastcalc_leave_cpu(caller_cpu)
        edges = _edges(low, high, out_width, kw, sizeof(floating))  # scratch rows per thread
        if scratch:
            _scratch(&edges, kh, sizeof(floating))
        for pair in prange(pairs, schedule="dynamic", chunksize=chunk):
            _pair(image, height, width, image_row, image_plane, kernel, kh, kw, top, left, fill,
                  out, out_height, out_width, out_row, out_plane, pairs_per_image, pair, &edges)
        _free_scratch(&edges)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef _apply(const floating[:, :, :] image, const floating[:, ::1] kernel,
            floating[:, :, :] out, Py_ssize_t top, Py_ssize_t left, floating fill,
            int num_threads):
    if out.shape[0] == 0 or out.shape[1] == 0 or out.shape[2] == 0:
        return
    # Strides in elements: rows and images may lie apart (views of larger
    # arrays), the elements of a row must be contiguous.
    cdef Py_ssize_t size = sizeof(floating)
    if ((image.shape[2] > 1 and image.strides[2] != size)
            or (out.shape[2] > 1 and out.strides[2] != size)
            or image.strides[0] % size or image.strides[1] % size
            or out.strides[0] % size or out.strides[1] % size):
        raise ValueError("image and out must be contiguous along their last axis, their "
                         "rows and images whole elements apart")
    with nogil:
        _correlate(&image[0, 0, 0], image.shape[0], image.shape[1], image.shape[2],
                   image.strides[1] // size, image.strides[0] // size,
                   &kernel[0, 0], kernel.shape[0], kernel.shape[1], top, left, fill,
                   &out[0, 0, 0], out.shape[1], out.shape[2], out.strides[1] // size,
                   out.strides[0] // size, num_threads)


def correlate(image, kernel, out, Py_ssize_t top, Py_ssize_t left, double fillvalue,
              int num_threads):
    """out[b, i, j] = sum of kernel[a, c] * image[b, i + a - top, j + c - left], fillvalue outside."""
    # Any offset is safe: one beyond the image reads only fill values, as one
    # just beyond it does, so clamped to there it gives the same result, and
    # every index the kernels compute stays within a few validated sizes.
    cdef Py_ssize_t height = image.shape[1], width = image.shape[2]
    top = min(max(top, -height), <Py_ssize_t>(out.shape[1] + kernel.shape[0]))
    left = min(max(left, -width), <Py_ssize_t>(out.shape[2] + kernel.shape[1]))
    # Dispatch on the element size by hand: Cython's dispatcher for a fused def
    # function costs more than a small correlation.
    if image.itemsize == 4:
        _apply[float](image, kernel, out, top, left, <float>fillvalue, num_threads)
    else:
        _apply[double](image, kernel, out, top, left, fillvalue, num_threads)


cdef fc_geometry _geometry(tuple image_shape, tuple weight_shape, tuple out_shape, tuple stride,
                           tuple upsample, tuple pad):
    cdef fc_geometry g
    g.channels, g.height, g.width = image_shape[1], image_shape[2], image_shape[3]
    g.filters, g.kh, g.kw = weight_shape[0], weight_shape[2], weight_shape[3]
    g.out_height, g.out_width = out_shape[2], out_shape[3]
    g.sh, g.sw = stride
    g.uh, g.uw = upsample
    g.top, g.left = pad
    fc_canvas_size(&g)
    return g


cdef int _layer_threads(const fc_geometry* g, Py_ssize_t images, Py_ssize_t items,
                        int num_threads):
    """How many threads to share ``items`` of ``images`` among (1 if the work is too small)."""
    # In floating point: the product of sizes each bounded by memory may
    # overflow 64 bits.
    cdef double work = (<double>images * g.filters * g.out_height * g.out_width * g.channels
                        * g.kh * g.kw)
    if num_threads <= 1 or work < _PARALLEL_MIN_WORK:
        return 1
    return <int>min(num_threads, items)


@cython.cdivision(True)
cdef void _layer_items(
    const floating* images, const fc_geometry* g, const floating* weight, const floating* bias,
    floating* out, floating* canvas, Py_ssize_t first, Py_ssize_t last,
) noexcept nogil:
    # conv2d items [first, last): item = n * groups + group covers image n and
    # filters [group * FC_CONV_FB, ...).
    cdef Py_ssize_t groups = (g.filters + FC_CONV_FB - 1) // FC_CONV_FB
    cdef Py_ssize_t image_size = g.channels * g.height * g.width
    cdef Py_ssize_t out_size = g.filters * g.out_height * g.out_width
    cdef Py_ssize_t item, n, f0, f1, current = -1
    for item in range(first, last):
        n = item // groups
        if n != current:
            _fill_canvas(images + n * image_size, g, canvas)
            current = n
        f0 = item % groups * FC_CONV_FB
        f1 = min(g.filters, f0 + FC_CONV_FB)
        if floating is float:
            fc_conv_item_float(canvas, g, weight, bias, out + n * out_size, f0, f1)
        else:
            fc_conv_item_double(canvas, g, weight, bias, out + n * out_size, f0, f1)


cdef inline void _fill_canvas(const floating* image, const fc_geometry* g,
                              floating* canvas) noexcept nogil:
    if floating is float:
        fc_canvas_float(image, g, canvas)
    else:
        fc_canvas_double(image, g, canvas)


@cython.cdivision(True)
cdef void _gradient_units(
    const floating* images, Py_ssize_t count, const fc_geometry* g, const floating* grad,
    floating* partial, floating* canvas, Py_ssize_t block, Py_ssize_t chunks, Py_ssize_t first,
    Py_ssize_t last,
) noexcept nogil:
    # Weight gradient units [first, last): unit = k * chunks + q adds images
    # [k * block, ...) of the count, in order, into partial block k, for the
    # filter groups of chunk q.  Every sum runs over the same images in the
    # same order, whichever thread runs it.
    cdef Py_ssize_t groups = (g.filters + FC_CONV_FB - 1) // FC_CONV_FB
    cdef Py_ssize_t image_size = g.channels * g.height * g.width
    cdef Py_ssize_t out_size = g.filters * g.out_height * g.out_width
    cdef Py_ssize_t weight_size = g.filters * g.channels * g.kh * g.kw
    cdef Py_ssize_t unit, k, q, n, f0, f1
    for unit in range(first, last):
        k = unit // chunks
        q = unit % chunks
        f0 = q * groups // chunks * FC_CONV_FB
        f1 = min(g.filters, (q + 1) * groups // chunks * FC_CONV_FB)
        for n in range(k * block, min(count, (k + 1) * block)):
            _fill_canvas(images + n * image_size, g, canvas)
            if floating is float:
                fc_gw_item_float(canvas, g, grad + n * out_size, partial + k * weight_size,
                                 f0, f1)
            else:
                fc_gw_item_double(canvas, g, grad + n * out_size, partial + k * weight_size,
                                  f0, f1)


cdef void _share_items(
    const floating* images, const fc_geometry* g, const floating* weight, const floating* bias,
    floating* out, floating* canvas, Py_ssize_t canvas_stride, Py_ssize_t items, int threads,
) noexcept nogil:
    # Thread t takes items [t * items / threads, (t + 1) * items / threads) and its canvas.
    cdef Py_ssize_t t
    cdef int caller_cpu
    if threads == 1:
        _layer_items(images, g, weight, bias, out, canvas, 0, items)
        return
    caller_cpu = fastcalc_current_cpu()
    with parallel(num_threads=threads):
        fastcalc_leave_cpu(caller_cpu)
        for t in prange(threads, schedule="static"):
            _layer_items(images, g, weight, bias, out, canvas + t * canvas_stride,
                         t * items // threads, (t + 1) * items // threads)


cdef void _share_units(
    const floating* images, Py_ssize_t count, const fc_geometry* g, const floating* grad,
    floating* partial, floating* canvas, Py_ssize_t canvas_stride, Py_ssize_t block,
    Py_ssize_t chunks, Py_ssize_t units, int threads,
) noexcept nogil:
    # Thread t takes units [t * units / threads, (t + 1) * units / threads) and its canvas.
    cdef Py_ssize_t t
    cdef int caller_cpu
    if threads == 1:
        _gradient_units(images, count, g, grad, partial, canvas, block, chunks, 0, units)
        return
    caller_cpu = fastcalc_current_cpu()
    with parallel(num_threads=threads):
        fastcalc_leave_cpu(caller_cpu)
        for t in prange(threads, schedule="static"):
            _gradient_units(images, count, g, grad, partial, canvas + t * canvas_stride, block,
                            chunks, t * units // threads, (t + 1) * units // threads)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef _conv2d(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] weight,
             const floating[::1] bias, floating[:, :, :, ::1] out, fc_geometry g, int num_threads):
    cdef Py_ssize_t items = x.shape[0] * ((g.filters + FC_CONV_FB - 1) // FC_CONV_FB)
    cdef int threads = _layer_threads(&g, x.shape[0], items, num_threads)
    cdef floating[:, ::1] canvas = np.empty((threads, fc_canvas_elements(&g)), out.base.dtype)
    with nogil:
        _share_items(&x[0, 0, 0, 0], &g, &weight[0, 0, 0, 0], &bias[0], &out[0, 0, 0, 0],
                     &canvas[0, 0], canvas.shape[1], items, threads)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef _conv2d_grad_weight(const floating[:, :, :, ::1] grad_out, const floating[:, :, :, ::1] x,
                         floating[:, ::1] partial, Py_ssize_t block, fc_geometry g,
                         int num_threads):
    cdef Py_ssize_t groups = (g.filters + FC_CONV_FB - 1) // FC_CONV_FB
    cdef int threads = _layer_threads(&g, x.shape[0], partial.shape[0] * groups, num_threads)
    # Enough chunks of filter groups for every thread (they split no sum, so
    # any count gives the same result); one when the image blocks suffice, so
    # that each image's canvas is built once.
    cdef Py_ssize_t chunks = min(groups, (threads + partial.shape[0] - 1) // partial.shape[0])
    cdef floating[:, ::1] canvas = np.empty((threads, fc_canvas_elements(&g)), partial.base.dtype)
    with nogil:
        _share_units(&x[0, 0, 0, 0], x.shape[0], &g, &grad_out[0, 0, 0, 0], &partial[0, 0],
                     &canvas[0, 0], canvas.shape[1], block, chunks, partial.shape[0] * chunks,
                     threads)


def conv2d(x, weight, bias, out, tuple stride, tuple upsample, tuple pad, int num_threads):
    """out[n, f] = bias[f] + correlation of the canvas of x[n] with weight[f]; see the reference."""
    if out.size == 0:
        return
    cdef fc_geometry g = _geometry(x.shape, weight.shape, out.shape, stride, upsample, pad)
    if x.itemsize == 4:
        _conv2d[float](x, weight, bias, out, g, num_threads)
    else:
        _conv2d[double](x, weight, bias, out, g, num_threads)


def conv2d_grad_weight(grad_out, x, partial, Py_ssize_t block, tuple stride, tuple pad,
                       int num_threads):
    """partial[k] = sum over the images of block k of grad_out times x's canvas; see the reference."""
    partial[...] = 0
    if grad_out.size == 0 or partial.size == 0:
        return
    cdef fc_geometry g = _geometry(x.shape, partial.shape[1:], grad_out.shape, stride, (1, 1),
                                   pad)
    flat = partial.reshape(len(partial), -1)
    if x.itemsize == 4:
        _conv2d_grad_weight[float](grad_out, x, flat, block, g, num_threads)
    else:
        _conv2d_grad_weight[double](grad_out, x, flat, block, g, num_threads)


def fma_probe(int itemsize, long iterations):
    """Run the FMA probe of vectors.h (GIL released); return the FLOPs it did.

    ``iterations`` rounds of FC_PROBE_CHAINS vector multiply-adds of the
    ``itemsize`` (4: float32, 8: float64) this build vectorizes; the
    benchmarks run it on every thread at once to measure the machine's peak
    (:func:`fastcalc._bench.peak_gflop_per_s`).
    """
    cdef int lanes = 1
    cdef double sum
    with nogil:
        if itemsize == 4:
            sum = fc_fma_probe_float(iterations, &lanes)
        else:
            sum = fc_fma_probe_double(iterations, &lanes)
    if sum != sum:  # never true; keeps the result (and so the loop) alive
        raise FloatingPointError("FMA probe diverged")
    return 2 * FC_PROBE_CHAINS * lanes * iterations
