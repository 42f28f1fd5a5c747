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

__all__ = ["correlate"]


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
