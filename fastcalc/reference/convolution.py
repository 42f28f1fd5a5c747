"""Reference (numpy) kernels for the convolution family.

``correlate(image, kernel, out, top, left, fillvalue, num_threads)``:
``image`` (B, H, W), ``kernel`` (kh, kw) and ``out`` (B, Ho, Wo) are
C-contiguous, native, of one dtype; ``out`` does not overlap the inputs.
It computes ``out[b, i, j] = sum over a, c of kernel[a, c] * X[b, i + a - top,
j + c - left]``, where X is the image surrounded by ``fillvalue``: every mode of
:func:`fastcalc.correlate2d` and :func:`fastcalc.convolve2d` with the "fill"
boundary is one call (the public functions pick ``top``, ``left`` and the
output size, and flip the kernel for convolution); "wrap" and "symm" pad the
image first and call it with ``top = left = 0``.  ``num_threads`` is accepted
for the common signature.
"""

import numpy as np

__all__ = ["correlate", "seed_convolve2d"]


def correlate(image, kernel, out, top, left, fillvalue, num_threads):
    kh, kw = kernel.shape
    batch, height, width = out.shape
    rows = (top, max(0, height + kh - 1 - top - image.shape[1]))
    columns = (left, max(0, width + kw - 1 - left - image.shape[2]))
    padded = np.pad(image, [(0, 0), rows, columns], constant_values=fillvalue)
    out[...] = 0
    for a in range(kh):
        for c in range(kw):
            out += kernel[a, c] * padded[:, a:a + height, c:c + width]


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
