"""Reference (numpy) kernels for the convolution family.

``correlate_valid(image, kernel, out, num_threads)``: ``image`` (B, Hp, Wp),
``kernel`` (kh, kw) and ``out`` (B, Hp - kh + 1, Wp - kw + 1) are C-contiguous,
native, of one dtype; ``out`` does not overlap the inputs.  It is the one
primitive every mode and boundary of :func:`fastcalc.correlate2d` and
:func:`fastcalc.convolve2d` reduces to (the public functions pad the image and
flip the kernel).  ``num_threads`` is accepted for the common signature.
"""


__all__ = ["correlate_valid"]


def correlate_valid(image, kernel, out, num_threads):
    """out[b, i, j] = sum over a, c of image[b, i + a, j + c] * kernel[a, c]."""
    kh, kw = kernel.shape
    height, width = out.shape[1:]
    out[...] = 0
    for a in range(kh):
        for c in range(kw):
            out += kernel[a, c] * image[:, a:a + height, c:c + width]
