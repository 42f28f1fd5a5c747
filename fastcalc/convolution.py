"""2-D convolution and correlation: drop-ins for scipy.signal, with batches and threads."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from fastcalc import _dispatch, _validate

__all__ = ["convolve2d", "correlate2d"]

_AUTO_ORDER = ("cython", "numba", "numpy")
_MODES = ("full", "same", "valid")
_BOUNDARIES = {"fill": "constant", "pad": "constant", "wrap": "wrap", "circular": "wrap",
               "symm": "symmetric", "symmetric": "symmetric"}
_METHODS = ("auto", "direct", "fft")
# method="auto" uses the FFT from this many kernel taps (kh * kw) on: where it
# overtook the direct Cython kernel on a 2048x2048 "same" correlation, both
# cores (float32: 41x41 direct 96 ms vs FFT 97 ms, 51x51 167 vs 98; float64:
# 31x31 64 vs 104, 41x41 124 vs 105).  The FFT's cost barely depends on the kernel.
FFT_MIN_TAPS = {np.dtype(np.float32): 1700, np.dtype(np.float64): 1300}


def correlate2d(
    in1: ArrayLike,
    in2: ArrayLike,
    mode: str = "full",
    boundary: str = "fill",
    fillvalue: float = 0,
    *,
    method: str = "auto",
    out: np.ndarray | None = None,
    backend: str | None = None,
) -> np.ndarray:
    """Cross-correlate images with a 2-D kernel, like ``scipy.signal.correlate2d``.

    ``out[i, j] = sum over a, c of in1[i + a, j + c] * in2[a, c]`` (the kernel
    is not flipped), with ``mode`` and ``boundary`` deciding the extent and
    what lies outside ``in1``.  The seed's slide-10 "convolve2d" (a sliding
    sum of products that does not flip the kernel) is
    ``correlate2d(image, kernel, mode="valid")``.

    Parameters
    ----------
    in1 : array_like, shape (..., H, W)
        The image, or a batch of images: every leading index is one image,
        correlated independently.
    in2 : array_like, shape (kh, kw)
        The kernel; not empty.
    mode : {"full", "same", "valid"}
        Output extent, as in scipy: full (H + kh - 1, W + kw - 1); same
        (H, W), centred like scipy's; valid (H - kh + 1, W - kw + 1).  For a
        single 2-D image in "valid" mode, scipy's rule applies: if ``in2`` is
        at least as large as ``in1`` in every dimension the two are swapped.
    boundary : {"fill", "wrap", "symm"}
        Values outside ``in1``: ``fillvalue``, periodic, or mirrored (edge
        included); scipy's aliases "pad", "circular", "symmetric" work too.
    fillvalue : scalar
        The value of the "fill" boundary.
    method : {"auto", "direct", "fft"}
        "direct" sums the taps; "fft" multiplies spectra (numpy.fft), faster
        for large kernels; "auto" uses the FFT from ``FFT_MIN_TAPS[dtype]``
        kernel taps on (1700 for float32, 1300 for float64; measured).
    out : ndarray, optional
        Where to write the result (shape (..., Ho, Wo), the result dtype).
    backend : {"auto", "numpy", "numba", "cython"}, optional
        Overrides :func:`fastcalc.get_backend` for the direct method.

    Returns
    -------
    ndarray
        float32 if both inputs are float32 (scipy would upcast), float16 for
        float16 (computed in float32), else float64.

    Raises
    ------
    TypeError
        Complex input (scipy accepts it; fastcalc is for real-valued work) or
        another non-real dtype.
    ValueError
        ``in2`` empty or not 2-D; ``in1`` with fewer than 2 dimensions or
        empty images; an unknown mode, boundary or method; in "valid" mode,
        neither input at least as large as the other; a bad ``out``.

    Examples
    --------
    >>> import numpy as np, fastcalc
    >>> image = np.arange(16.0).reshape(4, 4)
    >>> fastcalc.correlate2d(image, np.ones((2, 2)), mode="valid")
    array([[10., 14., 18.],
           [26., 30., 34.],
           [42., 46., 50.]])
    """
    return _filter2d(in1, in2, mode, boundary, fillvalue, method, out, backend, flip=False)


def convolve2d(
    in1: ArrayLike,
    in2: ArrayLike,
    mode: str = "full",
    boundary: str = "fill",
    fillvalue: float = 0,
    *,
    method: str = "auto",
    out: np.ndarray | None = None,
    backend: str | None = None,
) -> np.ndarray:
    """Convolve images with a 2-D kernel, like ``scipy.signal.convolve2d``.

    The same as :func:`correlate2d` with the kernel flipped in both axes
    (and scipy's centring of "same" for convolution).  Parameters, returns
    and errors are those of :func:`correlate2d`.

    Examples
    --------
    >>> import numpy as np, fastcalc
    >>> fastcalc.convolve2d(np.eye(3), np.array([[1.0, 2.0]]), mode="same")
    array([[1., 2., 0.],
           [0., 1., 2.],
           [0., 0., 1.]])
    """
    return _filter2d(in1, in2, mode, boundary, fillvalue, method, out, backend, flip=True)


def _filter2d(in1, in2, mode, boundary, fillvalue, method, out, backend, *, flip):
    image, kernel = np.asarray(in1), np.asarray(in2)
    for name, array in (("in1", image), ("in2", kernel)):
        if array.dtype.kind == "c":
            raise TypeError(f"{name} is complex ({array.dtype}); fastcalc computes real "
                            "convolutions only (scipy.signal handles complex input)")
    _validate.compute_dtype(image.dtype, "in1")
    _validate.compute_dtype(kernel.dtype, "in2")
    compute, result_dtype = _validate.compute_dtype(
        np.result_type(image.dtype, kernel.dtype), "in1 and in2")
    if kernel.ndim != 2 or kernel.size == 0:
        raise ValueError(f"in2 must be a non-empty 2-D array, got shape {kernel.shape}")
    if image.ndim < 2 or image.shape[-1] == 0 or image.shape[-2] == 0:
        raise ValueError(f"in1 must have shape (..., H, W) with H, W >= 1, got {image.shape}")
    if mode not in _MODES:
        raise ValueError("Acceptable mode flags are 'valid', 'same', or 'full'.")
    if boundary not in _BOUNDARIES:
        raise ValueError("Acceptable boundary flags are 'fill', 'circular' (or 'wrap'), "
                         "and 'symmetric' (or 'symm').")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, _METHODS))}, got {method!r}")
    fill = np.asarray(fillvalue)
    if fill.size != 1:
        raise ValueError("fillvalue must be scalar or an array with one element.")

    swapped = mode == "valid" and _swap_needed(image.shape[-2:], kernel.shape, image.ndim)
    if swapped:
        image, kernel = kernel, image
    if flip:
        kernel = kernel[::-1, ::-1]
    batch_shape, (height, width), (kh, kw) = image.shape[:-2], image.shape[-2:], kernel.shape
    # The result is a window of the full correlation, whose row r covers image
    # rows r - kh + 1 ... r.  scipy centres "same" at (kh - 1) // 2 for
    # convolution and kh // 2 for correlation.
    if mode == "full":
        first, shape = (0, 0), (height + kh - 1, width + kw - 1)
    elif mode == "same":
        first = ((kh - 1) // 2, (kw - 1) // 2) if flip else (kh // 2, kw // 2)
        shape = (height, width)
    else:
        first, shape = (kh - 1, kw - 1), (height - kh + 1, width - kw + 1)
    pads = [(0, 0), (kh - 1 - first[0], first[0] + shape[0] - height),
            (kw - 1 - first[1], first[1] + shape[1] - width)]

    images = np.ascontiguousarray(image.reshape(-1, height, width), dtype=compute)
    weights = np.ascontiguousarray(kernel, dtype=compute)
    top, left = pads[1][0], pads[2][0]
    padding = _BOUNDARIES[boundary]
    fill = fill.astype(compute).item()
    if method == "fft" or (method == "auto" and kh * kw >= FFT_MIN_TAPS[images.dtype]):
        extra = {"constant_values": fill} if padding == "constant" else {}
        result = _correlate_valid_fft(np.pad(images, pads, mode=padding, **extra), weights)
    else:
        if padding != "constant":  # the kernels pad with a constant on the fly
            images, top, left, fill = np.pad(images, pads, mode=padding), 0, 0, 0.0
        direct = _direct_target(out, (*batch_shape, *shape), compute, (image, kernel),
                                swapped and not flip)
        result = np.empty((images.shape[0], *shape), compute) if direct is None else direct
        if result.size:
            correlate = _dispatch.kernel("convolution", "correlate", backend, _AUTO_ORDER)
            correlate(images, weights, result, top, left, fill, _dispatch.kernel_threads())
        if direct is not None:
            return out
    if swapped and not flip:
        result = result[:, ::-1, ::-1]  # scipy's convention for swapped correlation
    return _deliver(result.reshape(*batch_shape, *shape), out, result_dtype)


def _swap_needed(image_shape, kernel_shape, image_ndim) -> bool:
    """scipy's rule for "valid": the larger input must be at least as large in every axis."""
    image_larger = all(i >= k for i, k in zip(image_shape, kernel_shape, strict=True))
    kernel_larger = all(k >= i for i, k in zip(image_shape, kernel_shape, strict=True))
    if image_larger:
        return False
    if kernel_larger and image_ndim == 2:
        return True
    raise ValueError("For 'valid' mode, one must be at least as large as the other in every "
                     f"dimension (in1 images {tuple(image_shape)}, in2 {tuple(kernel_shape)})")


def _correlate_valid_fft(images, weights):
    kh, kw = weights.shape
    height, width = images.shape[1:]
    shape = (_fast_length(height), _fast_length(width))
    # Correlation is convolution with the flipped kernel; the valid part of the
    # circular convolution starts at (kh - 1, kw - 1) and never wraps around.
    spectrum = np.fft.rfft2(images, shape) * np.fft.rfft2(weights[::-1, ::-1], shape)
    full = np.fft.irfft2(spectrum, shape)
    valid = full[:, kh - 1:height, kw - 1:width]
    return np.ascontiguousarray(valid, dtype=images.dtype)


def _fast_length(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n: FFT sizes numpy transforms fastest."""
    best = 1 << (n - 1).bit_length()
    five = 1
    while five < best:
        three = five
        while three < best:
            size = three
            while size < n:
                size *= 2
            best = min(best, size)
            three *= 3
        five *= 5
    return best


def _direct_target(out, shape, dtype, inputs, reversed_result):
    """``out`` as the (B, Ho, Wo) array the kernel writes into, if it can; else None.

    It can when ``out`` is valid, C-contiguous, native, of the compute dtype,
    overlaps no input, and the result needs no reversal afterwards.
    """
    if (out is None or reversed_result or type(out) is not np.ndarray or out.dtype != dtype
            or not out.flags.c_contiguous):
        return None
    _validate.check_out(out, shape, dtype)
    if any(np.may_share_memory(out, array) for array in inputs):
        return None
    return out.reshape(-1, *shape[-2:])


def _deliver(result, out, result_dtype):
    if out is None:
        return result if result.dtype == result_dtype else result.astype(result_dtype)
    _validate.check_out(out, result.shape, result_dtype)
    np.copyto(out, result, casting="unsafe")
    return out
