/*
 * The CNN layer's kernels (conv2d and its weight gradient) for one work
 * item: one image n and one group of filters.  src_cython/convolution.pyx
 * shares the items out among the threads.
 *
 * Each image is first copied into the thread's "canvas": the zero-padded
 * (and, for the input gradient, zero-upsampled) image that the correlation
 * reads, just large enough for the output.  It stays in cache while every
 * filter group of that image uses it, so no padded copy of the whole batch
 * is ever made.  Each canvas row is stored as sw "phases": canvas column
 * k * sw + p at p * phase_width + k.  Output columns j, j + 1, ... then read
 * consecutive elements for every tap, whatever the stride, and the same
 * vector code serves every stride.
 *
 * conv2d: a tile of FC_CONV_FB filters x FC_CONV_JB vectors of output
 * columns is summed in registers over all C * kh * kw taps: each image
 * vector loaded feeds FC_CONV_FB FMAs, each broadcast weight FC_CONV_JB.
 * The last tile of a row is shifted left to end at the row's end (a few
 * columns computed twice, same values) instead of a scalar tail.
 *
 * Weight gradient: for each (c, a) and group of up to FC_GW_BB taps b, a
 * tile of FC_GW_FB filters x FC_GW_BB taps is summed in registers over all
 * output positions of the image (grad_out vectors times canvas vectors),
 * then reduced across lanes into the partial gradient of the image's block
 * (convolution.pyx: the same sums in the same order for any thread count).
 */
#ifndef FASTCALC_CONV2D_H
#define FASTCALC_CONV2D_H

#include <string.h>

#include "vectors.h"

typedef struct {
    Py_ssize_t channels, height, width; /* one input image: (C, H, W) */
    Py_ssize_t filters, kh, kw;         /* weight: (F, C, kh, kw) */
    Py_ssize_t out_height, out_width;   /* one output image: (F, Ho, Wo) */
    Py_ssize_t sh, sw;                  /* stride */
    Py_ssize_t uh, uw;                  /* upsampling of the image */
    Py_ssize_t top, left;               /* where image (0, 0) lands on the canvas */
    Py_ssize_t canvas_height, canvas_width, phase_width;
} fc_geometry;

/* Tile sizes: accumulators plus the vectors they read must fit the 32
   registers of AVX-512 (16 of AVX2 and SSE2). */
#define FC_CONV_FB 4
#if FC_VECTOR && FC_VBYTES == 64
#define FC_CONV_JB 4
#define FC_GW_FB 4
#else
#define FC_CONV_JB 2
#define FC_GW_FB 2
#endif
#define FC_GW_BB 3

static inline Py_ssize_t fc_ceil_div(Py_ssize_t a, Py_ssize_t b)
{
    return a >= 0 ? (a + b - 1) / b : -((-a) / b);
}

static inline Py_ssize_t fc_min(Py_ssize_t a, Py_ssize_t b) { return a < b ? a : b; }
static inline Py_ssize_t fc_max(Py_ssize_t a, Py_ssize_t b) { return a > b ? a : b; }

/* Set the geometry's canvas fields from the others.

   No size here can overflow: fastcalc.convolution._Layer clamps the stride
   to the padded input (sh <= Hp - kh + 1, so (Ho - 1) * sh + kh <= Hp) and
   rejects a padding for which one padded image, C * Hp * Wp elements, or
   the output would not fit in memory.  The forward and weight-gradient
   canvas is then at most C * Hp * (Wp + sw - 1) < 2 * C * Hp * Wp elements.
   The input gradient's call (stride 1, upsampling by the layer's stride,
   pad kh - 1 - ph >= -ph) has a canvas of F * (H + kh - 1) * (W + kw - 1),
   which _Layer keeps below a few times the sizes of x and grad_out; image
   offsets top + y * uh are computed only for rows that land inside it. */
static inline void fc_canvas_size(fc_geometry* g)
{
    g->canvas_height = (g->out_height - 1) * g->sh + g->kh;
    g->canvas_width = (g->out_width - 1) * g->sw + g->kw;
    g->phase_width = fc_ceil_div(g->canvas_width, g->sw);
}

static inline Py_ssize_t fc_canvas_elements(const fc_geometry* g)
{
    return g->channels * g->canvas_height * g->sw * g->phase_width;
}

/* Offset of canvas column `column` within a canvas row. */
static inline Py_ssize_t fc_column(const fc_geometry* g, Py_ssize_t column)
{
    return (column % g->sw) * g->phase_width + column / g->sw;
}

#define FC_CANVAS(T, NAME)                                                                  \
static void NAME(const T* image, const fc_geometry* g, T* canvas)                           \
{                                                                                           \
    Py_ssize_t row_length = g->sw * g->phase_width;                                         \
    Py_ssize_t plane = g->canvas_height * row_length;                                       \
    /* The image rows y with 0 <= top + y * uh < canvas_height; columns likewise. */        \
    Py_ssize_t y0 = fc_max(0, fc_ceil_div(-g->top, g->uh));                                 \
    Py_ssize_t y1 = fc_min(g->height, fc_ceil_div(g->canvas_height - g->top, g->uh));       \
    Py_ssize_t x0 = fc_max(0, fc_ceil_div(-g->left, g->uw));                                \
    Py_ssize_t x1 = fc_min(g->width, fc_ceil_div(g->canvas_width - g->left, g->uw));        \
    Py_ssize_t c, y, x;                                                                     \
    memset(canvas, 0, (size_t)fc_canvas_elements(g) * sizeof(T));                          \
    for (c = 0; c < g->channels; c++)                                                       \
        for (y = y0; y < y1; y++) {                                                         \
            const T* source = image + (c * g->height + y) * g->width;                       \
            T* target = canvas + c * plane + (g->top + y * g->uh) * row_length;             \
            if (g->sw == 1 && g->uw == 1) {                                                 \
                if (x1 > x0)                                                                \
                    memcpy(target + g->left + x0, source + x0, (size_t)(x1 - x0) * sizeof(T)); \
            } else {                                                                        \
                for (x = x0; x < x1; x++)                                                   \
                    target[fc_column(g, g->left + x * g->uw)] = source[x];                  \
            }                                                                               \
        }                                                                                   \
}

/* out[f][j] for one output row, one filter, one column: the plain sum. */
#define FC_CONV_POINT(T, NAME)                                                              \
static inline T NAME(const T* row, const fc_geometry* g, const T* weight, T bias,           \
                     Py_ssize_t j)                                                          \
{                                                                                           \
    Py_ssize_t row_length = g->sw * g->phase_width;                                         \
    Py_ssize_t plane = g->canvas_height * row_length;                                       \
    Py_ssize_t c, a, b;                                                                     \
    T sum = bias;                                                                           \
    for (c = 0; c < g->channels; c++)                                                       \
        for (a = 0; a < g->kh; a++) {                                                       \
            const T* source = row + c * plane + a * row_length + j;                         \
            const T* w = weight + (c * g->kh + a) * g->kw;                                  \
            for (b = 0; b < g->kw; b++)                                                     \
                sum += w[b] * source[fc_column(g, b)];                                      \
        }                                                                                   \
    return sum;                                                                             \
}

/* NAME(row, g, weight, bias, out, j): FB filters x JB vectors of columns
   from column j.  row: the canvas at the first row this output row reads;
   weight, bias, out: at the tile's first filter (out at its output row). */
#define FC_CONV_TILE(T, V, NAME, FB, JB)                                                    \
static void NAME(const T* row, const fc_geometry* g, const T* weight, const T* bias,        \
                 T* out, Py_ssize_t j)                                                      \
{                                                                                           \
    enum { L = FC_VBYTES / sizeof(T) };                                                     \
    Py_ssize_t row_length = g->sw * g->phase_width;                                         \
    Py_ssize_t plane = g->canvas_height * row_length;                                       \
    Py_ssize_t filter_stride = g->channels * g->kh * g->kw;                                 \
    Py_ssize_t out_plane = g->out_height * g->out_width;                                    \
    Py_ssize_t c, a, b;                                                                     \
    int f, u;                                                                               \
    V acc[FB][JB];                                                                          \
    for (f = 0; f < FB; f++)                                                                \
        for (u = 0; u < JB; u++)                                                            \
            acc[f][u] = bias[f] + FC_NEGZERO(V);                                            \
    for (c = 0; c < g->channels; c++)                                                       \
        for (a = 0; a < g->kh; a++) {                                                       \
            const T* source = row + c * plane + a * row_length + j;                         \
            const T* w = weight + (c * g->kh + a) * g->kw;                                  \
            /* Tap b reads canvas column offset + phase * phase_width (no divisions). */ \
            Py_ssize_t phase = 0, offset = 0;                                               \
            for (b = 0; b < g->kw; b++) {                                                   \
                const T* s = source + phase * g->phase_width + offset;                      \
                V x[JB];                                                                    \
                for (u = 0; u < JB; u++) {                                                  \
                    x[u] = *(const V*)(s + u * L);                                          \
                    FC_KEEP(x[u]);                                                          \
                }                                                                           \
                for (f = 0; f < FB; f++) {                                                  \
                    V wv = w[f * filter_stride + b] + FC_NEGZERO(V);                        \
                    for (u = 0; u < JB; u++)                                                \
                        acc[f][u] += wv * x[u];                                             \
                }                                                                           \
                if (++phase == g->sw) {                                                     \
                    phase = 0;                                                              \
                    offset++;                                                               \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
    for (f = 0; f < FB; f++)                                                                \
        for (u = 0; u < JB; u++)                                                            \
            *(V*)(out + f * out_plane + j + u * L) = acc[f][u];                             \
}

/* Columns [0, Wo) of one output row for filters [f, f + FB), in tiles of
   JB vectors (the last one shifted left), then single vectors, then scalars
   for rows narrower than a vector. */
#define FC_CONV_ROW(T, NAME, FB, WIDE, NARROW, POINT)                                       \
static void NAME(const T* row, const fc_geometry* g, const T* weight, const T* bias,        \
                 T* out)                                                                    \
{                                                                                           \
    enum { L = FC_VBYTES / sizeof(T), WIDE_BLOCK = FC_CONV_JB * L };                        \
    Py_ssize_t width = g->out_width, filter_stride = g->channels * g->kh * g->kw;           \
    Py_ssize_t out_plane = g->out_height * width, j;                                        \
    int f;                                                                                  \
    if (width >= WIDE_BLOCK) {                                                              \
        for (j = 0; j < width; j += WIDE_BLOCK)                                             \
            WIDE(row, g, weight, bias, out, j + WIDE_BLOCK > width ? width - WIDE_BLOCK : j); \
    } else if (width >= L) {                                                                \
        for (j = 0; j < width; j += L)                                                      \
            NARROW(row, g, weight, bias, out, j + L > width ? width - L : j);               \
    } else {                                                                                \
        for (f = 0; f < FB; f++)                                                            \
            for (j = 0; j < width; j++)                                                     \
                out[f * out_plane + j] = POINT(row, g, weight + f * filter_stride, bias[f], j); \
    }                                                                                       \
}

/* One work item: output image `out` (F, Ho, Wo) for filters [f0, f1). */
#define FC_CONV_ITEM(T, NAME, ROW_FB, ROW_1)                                                \
static void NAME(const T* canvas, const fc_geometry* g, const T* weight, const T* bias,     \
                 T* out, Py_ssize_t f0, Py_ssize_t f1)                                      \
{                                                                                           \
    Py_ssize_t row_length = g->sw * g->phase_width;                                         \
    Py_ssize_t filter_stride = g->channels * g->kh * g->kw;                                 \
    Py_ssize_t out_plane = g->out_height * g->out_width;                                    \
    Py_ssize_t i, f;                                                                        \
    for (i = 0; i < g->out_height; i++) {                                                   \
        const T* row = canvas + i * g->sh * row_length;                                     \
        T* out_row = out + i * g->out_width;                                                \
        for (f = f0; f + FC_CONV_FB <= f1; f += FC_CONV_FB)                                 \
            ROW_FB(row, g, weight + f * filter_stride, bias + f, out_row + f * out_plane);  \
        for (; f < f1; f++)                                                                 \
            ROW_1(row, g, weight + f * filter_stride, bias + f, out_row + f * out_plane);   \
    }                                                                                       \
}

/* partial[f][b] += sum over i, j of grad[f][i][j] * canvas row (i * sh + a),
   column (j * sw + b), for FB filters and the NB taps b0 ... b0 + NB - 1.
   source: the canvas at channel c, row a; partial: at (f, c, a, b0). */
#define FC_GW_TILE(T, V, NAME, FB, NB)                                                      \
static void NAME(const T* grad, const T* source, const fc_geometry* g, Py_ssize_t b0,       \
                 T* partial)                                                                \
{                                                                                           \
    enum { L = FC_VBYTES / sizeof(T) };                                                     \
    Py_ssize_t row_length = g->sw * g->phase_width, width = g->out_width;                   \
    Py_ssize_t grad_plane = g->out_height * width;                                          \
    Py_ssize_t partial_stride = g->channels * g->kh * g->kw;                                \
    Py_ssize_t vector_end = width - width % L, offset[NB], i, j;                            \
    int f, n, lane;                                                                         \
    V acc[FB][NB];                                                                          \
    T tail[FB][NB];                                                                         \
    for (n = 0; n < NB; n++)                                                                \
        offset[n] = fc_column(g, b0 + n);                                                   \
    for (f = 0; f < FB; f++)                                                                \
        for (n = 0; n < NB; n++) {                                                          \
            acc[f][n] = (V){0};                                                             \
            tail[f][n] = 0;                                                                 \
        }                                                                                   \
    for (i = 0; i < g->out_height; i++) {                                                   \
        const T* grad_row = grad + i * width;                                               \
        const T* row = source + i * g->sh * row_length;                                     \
        for (j = 0; j < vector_end; j += L) {                                               \
            V d[FB];                                                                        \
            for (f = 0; f < FB; f++) {                                                      \
                d[f] = *(const V*)(grad_row + f * grad_plane + j);                          \
                FC_KEEP(d[f]);                                                              \
            }                                                                               \
            for (n = 0; n < NB; n++) {                                                      \
                V x = *(const V*)(row + offset[n] + j);                                     \
                FC_KEEP(x);                                                                 \
                for (f = 0; f < FB; f++)                                                    \
                    acc[f][n] += d[f] * x;                                                  \
            }                                                                               \
        }                                                                                   \
        for (j = vector_end; j < width; j++)                                                \
            for (f = 0; f < FB; f++)                                                        \
                for (n = 0; n < NB; n++)                                                    \
                    tail[f][n] += grad_row[f * grad_plane + j] * row[offset[n] + j];        \
    }                                                                                       \
    for (f = 0; f < FB; f++)                                                                \
        for (n = 0; n < NB; n++) {                                                          \
            T sum = tail[f][n];                                                             \
            for (lane = 0; lane < L; lane++)                                                \
                sum += acc[f][n][lane];                                                     \
            partial[f * partial_stride + n] += sum;                                         \
        }                                                                                   \
}

/* The same sums without vectors, for compilers without vector types. */
#define FC_GW_SCALAR(T, NAME)                                                               \
static void NAME(const T* grad, const T* source, const fc_geometry* g, Py_ssize_t b0,       \
                 T* partial)                                                                \
{                                                                                           \
    Py_ssize_t row_length = g->sw * g->phase_width, width = g->out_width, i, j;             \
    Py_ssize_t offset = fc_column(g, b0);                                                   \
    T sum = 0;                                                                              \
    for (i = 0; i < g->out_height; i++)                                                     \
        for (j = 0; j < width; j++)                                                         \
            sum += grad[i * width + j] * source[i * g->sh * row_length + offset + j];       \
    *partial += sum;                                                                        \
}

/* One work item: add image n's contribution to partial (F, C, kh, kw) for
   filters [f0, f1).  grad: grad_out[n] (F, Ho, Wo). */
#define FC_GW_ITEM(T, NAME, TILES_FB, TILES_1)                                              \
static void NAME(const T* canvas, const fc_geometry* g, const T* grad, T* partial,          \
                 Py_ssize_t f0, Py_ssize_t f1)                                              \
{                                                                                           \
    Py_ssize_t row_length = g->sw * g->phase_width;                                         \
    Py_ssize_t plane = g->canvas_height * row_length;                                       \
    Py_ssize_t grad_plane = g->out_height * g->out_width;                                   \
    Py_ssize_t taps = g->channels * g->kh * g->kw;                                          \
    Py_ssize_t f, c, a, b, nb;                                                              \
    for (f = f0; f < f1;) {                                                                 \
        Py_ssize_t fb = f + FC_GW_FB <= f1 ? FC_GW_FB : 1;                                  \
        for (c = 0; c < g->channels; c++)                                                   \
            for (a = 0; a < g->kh; a++) {                                                   \
                const T* source = canvas + c * plane + a * row_length;                      \
                T* target = partial + f * taps + (c * g->kh + a) * g->kw;                   \
                for (b = 0; b < g->kw; b += nb) {                                           \
                    nb = fc_min(FC_GW_BB, g->kw - b);                                       \
                    (fb == 1 ? TILES_1 : TILES_FB)[nb - 1](                                 \
                        grad + f * grad_plane, source, g, b, target + b);                   \
                }                                                                           \
            }                                                                               \
        f += fb;                                                                            \
    }                                                                                       \
}

typedef void (*fc_gw_tile_float)(const float*, const float*, const fc_geometry*, Py_ssize_t,
                                 float*);
typedef void (*fc_gw_tile_double)(const double*, const double*, const fc_geometry*,
                                  Py_ssize_t, double*);

FC_CANVAS(float, fc_canvas_float)
FC_CANVAS(double, fc_canvas_double)
FC_CONV_POINT(float, fc_conv_point_float)
FC_CONV_POINT(double, fc_conv_point_double)

#if FC_VECTOR
FC_CONV_TILE(float, fc_vf, fc_conv_tile_float_fb_jb, FC_CONV_FB, FC_CONV_JB)
FC_CONV_TILE(float, fc_vf, fc_conv_tile_float_fb_1, FC_CONV_FB, 1)
FC_CONV_TILE(float, fc_vf, fc_conv_tile_float_1_jb, 1, FC_CONV_JB)
FC_CONV_TILE(float, fc_vf, fc_conv_tile_float_1_1, 1, 1)
FC_CONV_TILE(double, fc_vd, fc_conv_tile_double_fb_jb, FC_CONV_FB, FC_CONV_JB)
FC_CONV_TILE(double, fc_vd, fc_conv_tile_double_fb_1, FC_CONV_FB, 1)
FC_CONV_TILE(double, fc_vd, fc_conv_tile_double_1_jb, 1, FC_CONV_JB)
FC_CONV_TILE(double, fc_vd, fc_conv_tile_double_1_1, 1, 1)
FC_CONV_ROW(float, fc_conv_row_float_fb, FC_CONV_FB, fc_conv_tile_float_fb_jb,
            fc_conv_tile_float_fb_1, fc_conv_point_float)
FC_CONV_ROW(float, fc_conv_row_float_1, 1, fc_conv_tile_float_1_jb, fc_conv_tile_float_1_1,
            fc_conv_point_float)
FC_CONV_ROW(double, fc_conv_row_double_fb, FC_CONV_FB, fc_conv_tile_double_fb_jb,
            fc_conv_tile_double_fb_1, fc_conv_point_double)
FC_CONV_ROW(double, fc_conv_row_double_1, 1, fc_conv_tile_double_1_jb,
            fc_conv_tile_double_1_1, fc_conv_point_double)

FC_GW_TILE(float, fc_vf, fc_gw_tile_float_fb_1, FC_GW_FB, 1)
FC_GW_TILE(float, fc_vf, fc_gw_tile_float_fb_2, FC_GW_FB, 2)
FC_GW_TILE(float, fc_vf, fc_gw_tile_float_fb_3, FC_GW_FB, 3)
FC_GW_TILE(float, fc_vf, fc_gw_tile_float_1_1, 1, 1)
FC_GW_TILE(float, fc_vf, fc_gw_tile_float_1_2, 1, 2)
FC_GW_TILE(float, fc_vf, fc_gw_tile_float_1_3, 1, 3)
FC_GW_TILE(double, fc_vd, fc_gw_tile_double_fb_1, FC_GW_FB, 1)
FC_GW_TILE(double, fc_vd, fc_gw_tile_double_fb_2, FC_GW_FB, 2)
FC_GW_TILE(double, fc_vd, fc_gw_tile_double_fb_3, FC_GW_FB, 3)
FC_GW_TILE(double, fc_vd, fc_gw_tile_double_1_1, 1, 1)
FC_GW_TILE(double, fc_vd, fc_gw_tile_double_1_2, 1, 2)
FC_GW_TILE(double, fc_vd, fc_gw_tile_double_1_3, 1, 3)
static const fc_gw_tile_float fc_gw_tiles_float_fb[FC_GW_BB] = {
    fc_gw_tile_float_fb_1, fc_gw_tile_float_fb_2, fc_gw_tile_float_fb_3};
static const fc_gw_tile_float fc_gw_tiles_float_1[FC_GW_BB] = {
    fc_gw_tile_float_1_1, fc_gw_tile_float_1_2, fc_gw_tile_float_1_3};
static const fc_gw_tile_double fc_gw_tiles_double_fb[FC_GW_BB] = {
    fc_gw_tile_double_fb_1, fc_gw_tile_double_fb_2, fc_gw_tile_double_fb_3};
static const fc_gw_tile_double fc_gw_tiles_double_1[FC_GW_BB] = {
    fc_gw_tile_double_1_1, fc_gw_tile_double_1_2, fc_gw_tile_double_1_3};
#else
/* No vector types: every row point by point, every tap on its own. */
#define FC_CONV_ROW_SCALAR(T, NAME, FB, POINT)                                              \
static void NAME(const T* row, const fc_geometry* g, const T* weight, const T* bias,        \
                 T* out)                                                                    \
{                                                                                           \
    Py_ssize_t filter_stride = g->channels * g->kh * g->kw;                                 \
    Py_ssize_t out_plane = g->out_height * g->out_width, j;                                 \
    int f;                                                                                  \
    for (f = 0; f < FB; f++)                                                                \
        for (j = 0; j < g->out_width; j++)                                                  \
            out[f * out_plane + j] = POINT(row, g, weight + f * filter_stride, bias[f], j); \
}
FC_CONV_ROW_SCALAR(float, fc_conv_row_float_fb, FC_CONV_FB, fc_conv_point_float)
FC_CONV_ROW_SCALAR(float, fc_conv_row_float_1, 1, fc_conv_point_float)
FC_CONV_ROW_SCALAR(double, fc_conv_row_double_fb, FC_CONV_FB, fc_conv_point_double)
FC_CONV_ROW_SCALAR(double, fc_conv_row_double_1, 1, fc_conv_point_double)
FC_GW_SCALAR(float, fc_gw_scalar_float)
FC_GW_SCALAR(double, fc_gw_scalar_double)
#undef FC_GW_FB
#undef FC_GW_BB
#define FC_GW_FB 1
#define FC_GW_BB 1
static const fc_gw_tile_float fc_gw_tiles_float_fb[1] = {fc_gw_scalar_float};
static const fc_gw_tile_float fc_gw_tiles_float_1[1] = {fc_gw_scalar_float};
static const fc_gw_tile_double fc_gw_tiles_double_fb[1] = {fc_gw_scalar_double};
static const fc_gw_tile_double fc_gw_tiles_double_1[1] = {fc_gw_scalar_double};
#endif

FC_CONV_ITEM(float, fc_conv_item_float, fc_conv_row_float_fb, fc_conv_row_float_1)
FC_CONV_ITEM(double, fc_conv_item_double, fc_conv_row_double_fb, fc_conv_row_double_1)
FC_GW_ITEM(float, fc_gw_item_float, fc_gw_tiles_float_fb, fc_gw_tiles_float_1)
FC_GW_ITEM(double, fc_gw_item_double, fc_gw_tiles_double_fb, fc_gw_tiles_double_1)

#endif
