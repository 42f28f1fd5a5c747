"""Reference (numpy) kernels for the convolution family.

``correlate(image, kernel, out, top, left, fillvalue, num_threads)``:
``image`` (B, H, W), ``kernel`` (kh, kw) and ``out`` (B, Ho, Wo) are
C-contiguous, native, of one dtype; ``out`` does not overlap the inputs.
It computes ``out[b, i, j] = sum over a, c of kernel[a, c] * X[b, i + a - top,
j + c - left]``, where X is the image surrounded by ``fillvalue``: every mode of
:func:`fastcalc.correlate2d` and :func:`fastcalc.convolve2d` with the "fill"
boundary is one call (the public functions pick ``top``, ``left`` and the
output size, and flip the kernel for convolution); "wrap" and "symm" pad the
image first and call it with ``top = left = 0``; the public functions pass
``0 <= top < kh`` and ``0 <= left < kw`` (a band of output rows of a long
call comes with the image rows it reads and ``top`` shifted to match, still
in that range).  The compiled kernels accept any ``top`` and ``left``.
``num_threads`` is accepted for the common signature.

The CNN layer's kernels take an image batch ``x`` (N, C, H, W) and see it
through a *geometry*: ``upsample`` (uh, uw) puts uh - 1 zero rows (uw - 1
zero columns) between neighbouring ones, then ``pad`` (top, left) shifts it
so that its (0, 0) lands at (top, left) of a zero canvas (negative: the first
rows / columns are cut off); ``stride`` (sh, sw) is the correlation's step.
Calling that canvas P, with ``weight`` (F, C, kh, kw), bias (F,) and ``out``
(N, F, Ho, Wo), every array C-contiguous, native, of one dtype:

``conv2d(x, weight, bias, out, stride, upsample, pad, num_threads)`` writes
``out[n, f, i, j] = bias[f] + sum over c, a, b of weight[f, c, a, b] *
P[n, c, i * sh + a, j * sw + b]``.  The layer's forward pass is
``upsample=(1, 1), pad=(ph, pw)``; its gradient with respect to ``x`` is the
same kernel on ``grad_out`` with ``upsample=stride``, ``pad=(kh - 1 - ph,
kw - 1 - pw)``, stride 1 and the weights flipped and transposed to
(C, F, kh, kw).

``conv2d_grad_weight(grad_out, x, partial, block, stride, pad, num_threads)``
writes, for each block k of ``block`` images (the last one may be shorter),
``partial[k, f, c, a, b] = sum over n in block k, i, j of grad_out[n, f, i, j] *
P[n, c, i * sh + a, j * sw + b]`` (with ``upsample=(1, 1)``), ``partial``
being (ceil(N / block), F, C, kh, kw).  Their sum over k is the gradient of
``sum(grad_out * out)`` with respect to ``weight``; the blocks, fixed by the
caller, make it the same bit for bit for any thread count.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["CONV2D_SECONDS_PER_MULTIPLY_ADD", "CORRELATE_SECONDS_PER_TAP", "conv2d",
           "conv2d_grad_weight", "correlate", "seed_convolve2d"]

# A generous time of one multiply-add of ``correlate`` on one thread (a pass
# over the output per tap): what the public functions slice long calls by.
CORRELATE_SECONDS_PER_TAP = 5e-9
# A generous time per multiply-add of conv2d and its weight gradient (wide
# rows, narrow rows): a little slower than the slowest measured on one loaded
# core (the weight gradient's im2col, 0.05 GMAC/s).  The public functions
# slice long calls from it, for Ctrl-C.
CONV2D_SECONDS_PER_MULTIPLY_ADD = (4e-8, 4e-8)


def correlate(image, kernel, out, top, left, fillvalue, num_threads):
    kh, kw = kernel.shape
    batch, height, width = out.shape
    rows = (top, max(0, height + kh - 1 - top - image.shape[1]))
    columns = (left, max(0, width + kw - 1 - left - image.shape[2]))
    padded = np.pad(image, [(0, 0), rows, columns], constant_values=fillvalue)
    out[...] = 0
    with np.errstate(invalid="ignore", over="ignore"):  # inf and NaN silently, as compiled
        for a in range(kh):
            for c in range(kw):
                out += kernel[a, c] * padded[:, a:a + height, c:c + width]


def canvas(x, kernel_shape, out_shape, stride, upsample, pad):
    """The zero canvas P that the kernels correlate: (N, C, Hc, Wc), just large enough."""
    (kh, kw), (out_height, out_width) = kernel_shape, out_shape
    height = (out_height - 1) * stride[0] + kh
    width = (out_width - 1) * stride[1] + kw
    result = np.zeros((*x.shape[:2], height, width), x.dtype)
    # Image row y lands on canvas row pad[0] + y * upsample[0]; keep those inside.
    rows = _inside(x.shape[2], upsample[0], pad[0], height)
    columns = _inside(x.shape[3], upsample[1], pad[1], width)
    if rows.start == rows.stop or columns.start == columns.stop:
        return result  # no image pixel lands on the canvas (only padding is read)
    result[:, :, _placed(rows, upsample[0], pad[0]), _placed(columns, upsample[1], pad[1])] = \
        x[:, :, rows, columns]
    return result


def _inside(size, upsample, pad, limit):
    """The image indices y with 0 <= pad + y * upsample < limit, as a slice."""
    first = max(0, -(pad // upsample))  # ceil(-pad / upsample)
    stop = min(size, -((pad - limit) // upsample))  # ceil((limit - pad) / upsample)
    return slice(first, max(first, stop))


def _placed(indices, upsample, pad):
    return slice(pad + indices.start * upsample, pad + indices.stop * upsample - upsample + 1,
                 upsample)


def _windows(padded, kernel_shape, stride, out_shape):
    """The (kh, kw) windows at every output position: (N, C, Ho, Wo, kh, kw), a view."""
    windows = sliding_window_view(padded, kernel_shape, axis=(2, 3))
    return windows[:, :, ::stride[0], ::stride[1]][:, :, :out_shape[0], :out_shape[1]]


def conv2d(x, weight, bias, out, stride, upsample, pad, num_threads):
    padded = canvas(x, weight.shape[2:], out.shape[2:], stride, upsample, pad)
    windows = _windows(padded, weight.shape[2:], stride, out.shape[2:])
    # (N, Ho, Wo, F): one matrix product over the (c, a, b) axes.
    products = np.tensordot(windows, weight, axes=([1, 4, 5], [1, 2, 3]))
    np.add(products.transpose(0, 3, 1, 2), bias[:, None, None], out=out)


def conv2d_grad_weight(grad_out, x, partial, block, stride, pad, num_threads):
    kernel_shape = partial.shape[3:]
    for k in range(len(partial)):
        images = slice(k * block, (k + 1) * block)
        padded = canvas(x[images], kernel_shape, grad_out.shape[2:], stride, (1, 1), pad)
        windows = _windows(padded, kernel_shape, stride, grad_out.shape[2:])
        partial[k] = np.tensordot(grad_out[images], windows, axes=([0, 2, 3], [0, 2, 3]))


def seed_convolve2d(image, kernel):
    """The seed's slide-10 ``convolve2d``, verbatim: a valid sliding sum of products.

    It does not flip the kernel, so it is ``correlate2d(image, kernel, "valid")``;
    the tests hold fastcalc to it and the benchmarks time it.
    """
    i_height, i_width = image.shape
    k_height, k_width = kernel.shape
    output = np.zeros((i_height - k_height + 1, i_width - k_width + 1))
    for i in range(output.shape[0]):
        for j in range(output.shape[1]):
            output[i, j] = np.sum(image[i:i + k_height, j:j + k_width] * kernel)
    return output
