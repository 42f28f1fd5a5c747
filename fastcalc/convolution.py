"""2-D convolution and correlation: drop-ins for scipy.signal, and the CNN layer.

``convolve2d`` / ``correlate2d`` are ``scipy.signal``'s functions with batches,
float32 and threads; ``conv2d`` / ``conv2d_backward`` are the convolution layer
of a CNN (``torch.nn.functional.conv2d`` and its gradients).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from fastcalc import _dispatch, _slices, _validate

__all__ = ["conv2d", "conv2d_backward", "convolve2d", "correlate2d"]

_AUTO_ORDER = ("cython", "numba", "numpy")
_MODES = ("full", "same", "valid")
_BOUNDARIES = {"fill": "constant", "pad": "constant", "wrap": "wrap", "circular": "wrap",
               "symm": "symmetric", "symmetric": "symmetric"}
_METHODS = ("auto", "direct", "fft")
# method="auto" uses the checked FFT (_correlate_checked) from this many kernel
# taps (kh * kw) on: where it overtook the direct Cython kernel on a 2048x2048
# "same" correlation, both cores (medians of 5: float32 61x61 direct 175 ms vs
# checked FFT 179, 71x71 271 vs 146; float64 41x41 148 vs 206, 51x51 233 vs
# 192).  The FFT's cost barely depends on the kernel.
FFT_MIN_TAPS = {np.dtype(np.float32): 3700, np.dtype(np.float64): 2500}
_FLOAT32_MAX = float(np.finfo(np.float32).max)


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
        In "full" and "same", a kernel with more taps than a single image
        (zeros around, finite values) is correlated with the image instead
        and the result turned, the same numbers at the image's cost per
        output rather than the kernel's.
    boundary : {"fill", "wrap", "symm"}
        Values outside ``in1``: ``fillvalue``, periodic, or mirrored (edge
        included); scipy's aliases "pad", "circular", "symmetric" work too.
    fillvalue : scalar
        The value of the "fill" boundary: a real number (inf and NaN
        included; in float32, beyond its range it is inf).
    method : {"auto", "direct", "fft"}
        "direct" sums the taps; "fft" multiplies spectra, faster for large
        kernels: real FFTs (``scipy.fft``, float32 kept float32) of tiles
        of the image of about ``max(FFT_TILE, 4 * kh)`` by ``max(FFT_TILE,
        4 * kw)`` (overlap-save), so that it needs only a few tiles of
        memory besides the result.  "auto" keeps scipy's results: the
        direct sum, and from ``FFT_MIN_TAPS[dtype]`` kernel taps on (where
        it pays, measured) the FFT where it is as accurate, checked per
        output: the FFT's error is set by an image's largest values, so
        outputs whose taps are all much smaller (a dark region, zeros,
        "full"'s corners) are summed directly.  Every output is then within
        the direct sum's error bound (eps * kh * kw * the sum of
        ``|weight| * |value|``), integers (both inputs) are summed directly
        and stay exact, and inf and NaN stay where the direct sum puts them.
    out : ndarray, optional
        Where to write the result: the shape (..., Ho, Wo) and the result
        dtype (float16 for float16 input), in any byte order or memory
        layout, an ndarray subclass too; anything else is a ValueError, on
        both methods and every backend.  If the call is interrupted
        (KeyboardInterrupt), ``out`` is partially written.
    backend : {"auto", "numpy", "numba", "cython"}, optional
        Overrides :func:`fastcalc.get_backend` for the direct method (and
        for the FFT's tiles that hold an inf or NaN, see Notes).

    Returns
    -------
    ndarray
        float32 if both inputs are float32 (as scipy), float16 for
        float16 (computed in float32), else float64.

    Raises
    ------
    TypeError
        Complex input (scipy accepts it; fastcalc is for real-valued work) or
        another non-real dtype; a mode, boundary or method that is not a
        string; a ``fillvalue`` that is not a real number; an ``out`` that
        is not an ndarray.
    ValueError
        ``in2`` empty or not 2-D; ``in1`` with fewer than 2 dimensions or
        empty images; an unknown mode, boundary or method; in "valid" mode,
        neither input at least as large as the other; a ``fillvalue`` with
        more than one element or beyond float64; an ``out`` of another
        shape or dtype, or read-only.

    Notes
    -----
    inf and NaN give the IEEE result of the sum of products, as scipy's
    direct sum does, on every backend and both methods: the taps outside
    ``in1`` contribute ``weight * fillvalue``, so an infinite weight gives
    NaN where it meets the fill value 0 (``0 * inf``).  An FFT would spread
    one inf or NaN over its whole tile: the FFT method computes the tiles
    that read one (or all, for such a kernel) by the direct sum instead.

    A long call runs in slices of about 0.1 s (whole images, or bands of
    output rows of one image; FFT tiles), so Ctrl-C interrupts it within a
    slice.  The slices change no bit of the result.

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
    if _validate.is_dask_array(in1):
        _validate.no_out_with_dask(out, "in1")
        function = _validate.on_dask("convolve2d" if flip else "correlate2d")
        return function(in1, in2, mode, boundary, fillvalue, method=method, backend=backend)
    image, kernel = _validate.as_array(in1, "in1"), _validate.as_array(in2, "in2")
    compute, result_dtype, fill = check_filter(image, kernel, mode, boundary, fillvalue, method)

    swapped = mode == "valid" and _swap_needed(image.shape[-2:], kernel.shape, image.ndim)
    if swapped:
        image, kernel = kernel, image
    if flip:
        kernel = kernel[::-1, ::-1]
    batch_shape, (height, width), (kh, kw) = image.shape[:-2], image.shape[-2:], kernel.shape
    first, shape = window(mode, (height, width), (kh, kw), flip)
    reversed_result = swapped and not flip
    if _commuting_pays(image, kernel, mode, boundary, fill):
        # Correlation in full commutes up to a half-turn: full(a, k)[r, s] =
        # full(k, a)[H + kh - 2 - r, W + kw - 2 - s].  The window asked for, read
        # from the correlation of the kernel with the image, costs its outputs
        # times the image's taps instead of the kernel's.
        first = (height + kh - 1 - first[0] - shape[0], width + kw - 1 - first[1] - shape[1])
        image, kernel = kernel, image
        kh, kw = kernel.shape
        # Only the rows and columns of the (former) kernel that the window reads.
        low = (max(0, first[0] - kh + 1), max(0, first[1] - kw + 1))
        image = image[low[0]:first[0] + shape[0], low[1]:first[1] + shape[1]]
        first, (height, width) = (first[0] - low[0], first[1] - low[1]), image.shape
        reversed_result = not reversed_result
    pads = [(0, 0), (kh - 1 - first[0], first[0] + shape[0] - height),
            (kw - 1 - first[1], first[1] + shape[1] - width)]
    if out is not None:  # one rule on every path, checked before any work
        _validate.check_out(out, (*batch_shape, *shape), result_dtype)

    images = np.ascontiguousarray(image.reshape(-1, height, width), dtype=compute)
    weights = np.ascontiguousarray(kernel, dtype=compute)
    padding = _BOUNDARIES[boundary]
    target = _direct_target(out, compute, (images, weights), reversed_result)
    result = np.empty((images.shape[0], *shape), compute) if target is None else target
    correlate_padded(images, weights, (pads[1][0], pads[2][0]), padding, fill,
                     resolved_method(method, image.dtype, kernel.dtype, weights), backend,
                     result)
    if target is not None:
        return out
    if reversed_result:
        result = result[:, ::-1, ::-1]  # scipy's convention for swapped correlation
    return _deliver(result.reshape(*batch_shape, *shape), out, result_dtype)


def check_filter(image, kernel, mode, boundary, fillvalue, method):
    """Check the arguments of a correlation: ``(compute dtype, result dtype, fill value)``.

    ``image`` and ``kernel`` need only ``dtype``, ``ndim``, ``shape`` and
    ``size`` (a dask array is not computed).
    """
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
    for name, flag in (("mode", mode), ("boundary", boundary), ("method", method)):
        if not isinstance(flag, str):
            raise TypeError(f"{name} must be a string, got {type(flag).__name__}")
    if mode not in _MODES:
        raise ValueError("Acceptable mode flags are 'valid', 'same', or 'full'.")
    if boundary not in _BOUNDARIES:
        raise ValueError("Acceptable boundary flags are 'fill', 'circular' (or 'wrap'), "
                         "and 'symmetric' (or 'symm').")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, _METHODS))}, got {method!r}")
    return compute, result_dtype, _fill_value(fillvalue, compute)


def window(mode, image_shape, kernel_shape, flip):
    """``(first, shape)``: where the result starts in the full correlation, and its shape.

    The full correlation's row r covers image rows r - kh + 1 ... r.  scipy
    centres "same" at (kh - 1) // 2 for convolution and kh // 2 for
    correlation.
    """
    (height, width), (kh, kw) = image_shape, kernel_shape
    if mode == "full":
        return (0, 0), (height + kh - 1, width + kw - 1)
    if mode == "same":
        return ((kh - 1) // 2, (kw - 1) // 2) if flip else (kh // 2, kw // 2), (height, width)
    return (kh - 1, kw - 1), (height - kh + 1, width - kw + 1)


def resolved_method(method: str, image_dtype, kernel_dtype, weights: np.ndarray) -> str:
    """``method`` as :func:`correlate_padded` takes it for these inputs and ``weights`` (the
    kernel in the compute dtype): "fft", "direct", or "auto" for the FFT checked by
    :func:`_correlate_checked`.  "auto" sums directly below ``FFT_MIN_TAPS`` taps, and
    integer inputs (both), which stay exact."""
    if method == "auto" and (weights.size < FFT_MIN_TAPS[weights.dtype]
                             or (image_dtype.kind in "biu" and kernel_dtype.kind in "biu")):
        return "direct"
    return method


def correlate_padded(images, weights, offsets, padding, fill, method, backend, out):
    """``out`` (B, Ho, Wo) = the valid correlation of ``images`` (B, H, W) padded.

    ``images`` and ``weights`` are in the compute dtype, ``weights`` C-contiguous;
    ``images`` and ``out`` may be views whose rows and images lie apart in a
    larger array, their rows contiguous (the direct kernels read and write
    them in place; the FFT path takes C-contiguous ones).  The
    padded image has ``images``'s (0, 0) at ``offsets`` (top, left) and
    extends as ``np.pad(mode=padding)`` (with ``fill`` for "constant"), to
    at least ``(Ho + kh - 1, Wo + kw - 1)``.  ``method`` is one
    :func:`resolved_method` gives ("auto": the FFT checked by
    :func:`_correlate_checked`).
    """
    if not out.size:
        return
    # The direct kernel, and the time it takes per tap to slice long calls by.
    direct = (_dispatch.kernel("convolution", "correlate", backend, _AUTO_ORDER),
              _dispatch.kernel("convolution", "CORRELATE_SECONDS_PER_TAP", backend, _AUTO_ORDER))
    threads = _dispatch.kernel_threads()
    if method == "fft":
        _correlate_fft(images, weights, padding, offsets, fill, out, direct, threads)
    elif method == "auto":
        _correlate_checked(images, weights, padding, offsets, fill, out, direct, threads)
    else:
        _correlate_any_padding(direct, images, weights, padding, offsets, fill, out, threads)


def _correlate_any_padding(direct, images, weights, padding, offsets, fill, out, threads):
    """The direct kernel for any ``padding``: it fills a constant on the fly, other paddings
    are made with ``np.pad`` first."""
    if padding != "constant":
        (top, left), (_, height, width), (kh, kw) = offsets, images.shape, weights.shape
        images = np.pad(images, [(0, 0), (top, out.shape[1] + kh - 1 - top - height),
                                 (left, out.shape[2] + kw - 1 - left - width)], mode=padding)
        offsets, fill = (0, 0), 0.0
    _correlate_direct(*direct, images, weights, out, *offsets, fill, threads)


# method="auto" keeps the FFT's result in an output only if the output's sum
# of |weight| * |value| is at least this share of its image's largest (see
# _correlate_checked); the others are summed directly, in tiles of
# CHECKED_TILE x CHECKED_TILE outputs.
FFT_SCALE_RANGE = 1 / 64
CHECKED_TILE = 64


def _correlate_checked(images, weights, padding, offsets, fill, out, direct, threads):
    """``method="auto"``'s FFT: the FFT's result where it is as accurate as the direct sum,
    the direct sum's elsewhere.

    The FFT's error in every output of an image is about eps times the
    image's largest sums of ``|weight| * |value|`` (the scale of its
    spectra), while the direct sum's bound in an output is eps times
    ``kh * kw`` times that output's own sum: outputs whose taps are all
    small next to the image's largest (a dark region, a border of zeros,
    the corners of "full") can lose every digit to the FFT.  So the FFT
    also correlates ``|images|`` with ``|weights|``, and the tiles of
    outputs holding a sum below ``FFT_SCALE_RANGE`` of their image's
    largest are summed directly, each over the box of those outputs (the
    whole image, if that is most of it).
    Measured (1024x1024, 41x41 normal kernel): on normal images every
    output is within 1/200 of the direct bound; with a corner scaled by
    1e-6, 12% of the outputs exceed it, up to 160 times.
    """
    _correlate_fft(images, weights, padding, offsets, fill, out, direct, threads)
    scale = np.empty_like(out)
    _correlate_fft(np.abs(images), np.abs(weights), padding, offsets, abs(fill), scale, direct,
                   threads)
    kh, kw = weights.shape
    _, out_height, out_width = out.shape
    inaccurate = ~(scale >= FFT_SCALE_RANGE * scale.max(axis=(1, 2), keepdims=True))  # NaN too
    starts = (np.arange(0, out_height, CHECKED_TILE), np.arange(0, out_width, CHECKED_TILE))
    tiles = np.logical_or.reduceat(np.logical_or.reduceat(inaccurate, starts[0], axis=1),
                                   starts[1], axis=2)
    for image in np.flatnonzero(tiles.any(axis=(1, 2))):
        if tiles[image].mean() > 0.5:
            _correlate_any_padding(direct, images[image:image + 1], weights, padding, offsets,
                                   fill, out[image:image + 1], threads)
            continue
        for i, j in zip(*np.nonzero(tiles[image]), strict=True):
            # The box of the tile's inaccurate outputs (a frame of "full" is thin).
            low, left = starts[0][i], starts[1][j]
            mask = inaccurate[image, low:low + CHECKED_TILE, left:left + CHECKED_TILE]
            down, across = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            rows = (low + down[0], low + down[-1] + 1)
            columns = (left + across[0], left + across[-1] + 1)
            window = _padded_window(images[image], padding, offsets, fill,
                                    (rows[0], rows[1] + kh - 1), (columns[0], columns[1] + kw - 1))
            _correlate_direct(*direct, window[None], weights,
                              out[image:image + 1, rows[0]:rows[1], columns[0]:columns[1]],
                              0, 0, 0.0, threads)


def _fill_value(fillvalue, dtype: np.dtype) -> float:
    """``fillvalue`` as a Python float of ``dtype``'s precision (beyond its range: inf)."""
    if type(fillvalue) in (int, float):  # the common case, without numpy's conversions
        value = fillvalue
    else:
        fill = np.asarray(fillvalue)
        if fill.size != 1:
            raise ValueError("`fillvalue` must be scalar or an array with one element.")
        value = fill.reshape(()).item()
        if fill.dtype.kind not in "biuf" and (isinstance(value, bool)
                                              or not isinstance(value, (int, float))):
            raise TypeError(f"fillvalue must be a real number, got {fillvalue!r}")
    try:
        value = float(value)
    except OverflowError:  # a Python int beyond float64
        raise ValueError(f"fillvalue {fillvalue} is beyond the range of float64") from None
    if dtype.itemsize == 8:
        return value
    if abs(value) <= _FLOAT32_MAX:
        return float(np.float32(value))
    with np.errstate(over="ignore"):  # float32 computes with inf, as IEEE rounds
        return float(np.float32(value))


def _commuting_pays(image, kernel, mode, boundary, fill) -> bool:
    """Whether to correlate the kernel with the image instead, and turn the result.

    It pays when the kernel has more taps than the image ("full" and "same"
    of a single image): every output then sums the image's taps.  The two
    agree only with zeros around both and finite values: an inf or NaN meets
    the zeros around the other input in one and not the other.
    """
    return (mode != "valid" and image.ndim == 2 and kernel.size > image.size
            and boundary == "fill" and fill == 0
            and bool(np.isfinite(image).all()) and bool(np.isfinite(kernel).all()))


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


def _correlate_direct(correlate, seconds_per_tap, images, weights, out, top, left, fill,
                      threads):
    """The direct kernel over ``out`` (B, Ho, Wo), in slices of bounded time (Ctrl-C).

    The items sliced are pairs of output rows, as the Cython kernel pairs them:
    a slice of whole images is one kernel call; a slice that starts or ends
    inside an image gives that image's band of rows to the kernel with the
    image rows it reads and ``top`` shifted to match.  Every band starts at an
    even row, so every pair and every sum is the one of a single call: the
    result does not depend on the slicing.
    """
    height = images.shape[1]
    kh, kw = weights.shape
    batch, out_height, out_width = out.shape
    pairs = (out_height + 1) // 2

    def run(start, stop):
        while start < stop:
            image, pair = divmod(start, pairs)
            if pair == 0 and stop - start >= pairs:
                count = (stop - start) // pairs
                correlate(images[image:image + count], weights, out[image:image + count],
                          top, left, fill, threads)
                start += count * pairs
            else:
                end = min(stop, (image + 1) * pairs)
                first, last = 2 * pair, min(out_height, 2 * (end - image * pairs))
                # Output rows [first, last) read image rows [low, high).
                low, high = max(0, first - top), min(height, last + kh - 1 - top)
                correlate(images[image:image + 1, low:high], weights,
                          out[image:image + 1, first:last], top - first + low, left, fill,
                          threads)
                start = end

    _slices.run_in_slices(run, batch * pairs, 2 * out_width * kh * kw * seconds_per_tap)


# The output rows (columns) of one FFT tile are chosen so that its FFT length
# is about max(FFT_TILE, 4 kh): transforms of that size run in cache, while the
# kh - 1 rows of overlap every tile recomputes stay a small share.
FFT_TILE = 512
# A generous time per element and log2(elements) of one tile's two FFTs.
_FFT_SECONDS_PER_POINT = 5e-9


def _correlate_fft(images, weights, padding, offsets, fill, out, direct, threads):
    """Valid correlation of the padded ``images`` into ``out`` by FFTs of tiles (overlap-save).

    ``out`` (B, Ho, Wo) is cut into tiles; each tile's window of the padded
    image (built from ``images`` and ``padding``, never the whole padded
    image) is transformed with real FFTs of ``scipy.fft`` (float32 stays
    float32), multiplied by the kernel's spectrum and transformed back: the
    extra memory is a few tiles, whatever the image.  A tile whose window, or
    a kernel that, holds an inf or NaN goes to the direct kernel instead
    (``direct``: the kernel and its time per tap, for
    :func:`_correlate_direct`): the FFT would spread NaN over the whole tile,
    where the direct sum gives the IEEE result of each output.  Ctrl-C is
    honoured between tiles.
    """
    import scipy.fft  # here: importing it costs every process that never uses the FFT

    kh, kw = weights.shape
    batch, out_height, out_width = out.shape
    (tile_height, fft_height), (tile_width, fft_width) = (_tile(out_height, kh),
                                                          _tile(out_width, kw))
    fft_shape = (fft_height, fft_width)
    # Correlation is convolution with the flipped kernel; in a circular
    # convolution of the window, outputs from (kh - 1, kw - 1) on never wrap around.
    spectrum = scipy.fft.rfft2(weights[::-1, ::-1], fft_shape, workers=threads)
    finite_kernel = bool(np.isfinite(weights).all())
    down, across = -(-out_height // tile_height), -(-out_width // tile_width)

    def run(start, stop):
        for item in range(start, stop):
            image, tile = divmod(item, down * across)
            i, j = tile // across * tile_height, tile % across * tile_width
            target = out[image, i:i + tile_height, j:j + tile_width]
            rows, columns = target.shape
            window = _padded_window(images[image], padding, offsets, fill,
                                    (i, i + rows + kh - 1), (j, j + columns + kw - 1))
            if finite_kernel and np.isfinite(window).all():
                product = scipy.fft.rfft2(window, fft_shape, workers=threads)
                product *= spectrum
                full = scipy.fft.irfft2(product, fft_shape, workers=threads)
                target[...] = full[kh - 1:kh - 1 + rows, kw - 1:kw - 1 + columns]
            else:
                summed = np.empty((1, rows, columns), out.dtype)
                _correlate_direct(*direct, window[None], weights, summed, 0, 0, 0.0, threads)
                target[...] = summed[0]

    seconds = _FFT_SECONDS_PER_POINT * fft_height * fft_width * math.log2(fft_height * fft_width)
    _slices.run_in_slices(run, batch * down * across, seconds)


def _tile(length: int, taps: int) -> tuple[int, int]:
    """``(outputs per tile, FFT length)`` along an axis of ``length`` outputs, ``taps`` taps."""
    import scipy.fft

    whole = scipy.fft.next_fast_len(length + taps - 1, real=True)
    target = max(FFT_TILE, 4 * taps)
    if whole <= target:
        return length, whole
    tiles = -(-length // (target - taps + 1))
    tile = -(-length // tiles)
    return tile, scipy.fft.next_fast_len(tile + taps - 1, real=True)


def _padded_window(image, padding, offsets, fill, rows, columns):
    """Rows ``[r0, r1)`` and columns ``[c0, c1)`` of ``image`` padded as ``np.pad(mode=padding)``.

    ``offsets`` (top, left) is where the image's (0, 0) lies in the padded
    image; "constant" pads with ``fill``.  Only the window is built.
    """
    (top, left), (height, width) = offsets, image.shape
    if padding == "constant":
        window = np.full((rows[1] - rows[0], columns[1] - columns[0]), fill, image.dtype)
        low, high = max(rows[0] - top, 0), min(rows[1] - top, height)
        first, last = max(columns[0] - left, 0), min(columns[1] - left, width)
        if high > low and last > first:
            window[low + top - rows[0]:high + top - rows[0],
                   first + left - columns[0]:last + left - columns[0]] = \
                image[low:high, first:last]
        return window
    return image[np.ix_(_extended(np.arange(*rows) - top, height, padding),
                        _extended(np.arange(*columns) - left, width, padding))]


def _extended(indices, size, padding):
    """The image indices that ``np.pad(mode=padding)`` repeats at ``indices`` (any integers)."""
    if padding == "wrap":
        return indices % size
    mirrored = indices % (2 * size)  # "symmetric": period 2 size, edge included
    return np.where(mirrored < size, mirrored, 2 * size - 1 - mirrored)


def _direct_target(out, dtype, inputs, reversed_result):
    """A valid ``out`` as the (B, Ho, Wo) ndarray the kernels write into, if it can be; else None.

    It can when ``out`` is C-contiguous, native, of the compute dtype (so
    not float16), overlaps no input, and the result needs no reversal
    afterwards.  A subclass is written through a plain ndarray view (Numba
    accepts no subclass).
    """
    if (out is None or reversed_result or out.dtype != dtype or not out.flags.c_contiguous
            or any(np.may_share_memory(out, array) for array in inputs)):
        return None
    return out.view(np.ndarray).reshape(-1, *out.shape[-2:])


def _deliver(result, out, result_dtype):
    """``result`` in ``result_dtype``, or copied into the validated ``out``."""
    if out is None:
        return result.astype(result_dtype, copy=False)
    np.copyto(out, result, casting="unsafe")
    return out


def conv2d(
    x: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    *,
    backend: str | None = None,
) -> np.ndarray:
    """The convolution layer of a CNN, like ``torch.nn.functional.conv2d``.

    ``out[n, f, i, j] = bias[f] + sum over c, a, b of weight[f, c, a, b] *
    xp[n, c, i * sh + a, j * sw + b]``, where ``xp`` is ``x`` with ``padding``
    rows and columns of zeros on each side: a cross-correlation, as in every
    deep-learning framework (the kernel is not flipped).

    Parameters
    ----------
    x : array_like, shape (N, C, H, W)
        A batch of N images with C channels.
    weight : array_like, shape (F, C, kh, kw)
        F filters over the C channels.
    bias : array_like, shape (F,), optional
        Added to every output position of each filter.
    stride : int or (int, int)
        Step (sh, sw) between output positions; at least 1.  Any Python or
        numpy integer: a stride beyond the padded input gives one output row
        (column), like the largest stride that does.
    padding : int or (int, int)
        Zero rows (ph) and columns (pw) added on each side; at least 0.
    backend : {"auto", "numpy", "numba", "cython"}, optional
        Overrides :func:`fastcalc.get_backend`.  numpy is im2col and a matrix
        product; Numba and Cython pad each image into a small buffer and sum
        the taps in vector registers, threads sharing out the images.

    Returns
    -------
    ndarray, shape (N, F, Ho, Wo)
        ``Ho = (H + 2 ph - kh) // sh + 1`` and ``Wo`` likewise.  The dtype
        numpy's promotion gives the inputs (``np.result_type``): float32
        stays float32, float16 is computed in float32 and returned as
        float16, integers and bool alone give float64.

    Raises
    ------
    TypeError
        A complex or non-numeric input, or a stride or padding that is not
        an integer.
    ValueError
        ``x`` or ``weight`` not 4-D, their channel counts differing, ``bias``
        not of shape (F,), an empty kernel or one larger than the padded
        input, ``stride`` < 1, ``padding`` < 0, or a padding so large that
        one padded image or the output would not fit in this machine's
        memory (checked before anything is allocated).
    KeyboardInterrupt
        On Ctrl-C: a long call runs in slices of images, and a SIGINT is
        honoured between two slices.

    Notes
    -----
    Padding contributes ``0 * weight``: like torch, an infinite weight gives
    NaN where it meets the padding.

    Examples
    --------
    >>> import numpy as np, fastcalc
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> fastcalc.conv2d(x, np.ones((1, 1, 2, 2)), bias=np.array([0.5]), stride=2)
    array([[[[10.5, 18.5],
             [42.5, 50.5]]]])
    """
    if _validate.is_dask_array(x):
        return _validate.on_dask("conv2d")(x, weight, bias, stride, padding, backend=backend)
    layer = _Layer(x, weight, bias, stride, padding)
    out = np.empty(layer.out_shape, layer.compute)
    kernel = _dispatch.kernel("convolution", "conv2d", backend, _AUTO_ORDER)
    threads = _dispatch.kernel_threads()

    def run(start, stop):
        kernel(layer.x[start:stop], layer.weight, layer.bias, out[start:stop], layer.stride,
               (1, 1), layer.padding, threads)

    if out.size:
        _slices.run_in_slices(run, len(out), _seconds_per_image(layer, backend, out.shape[2:]))
    return out.astype(layer.result_dtype, copy=False)


def conv2d_backward(
    grad_out: ArrayLike,
    x: ArrayLike,
    weight: ArrayLike,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    *,
    backend: str | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv2d`: backpropagation through the layer.

    The exact gradients of ``sum(grad_out * conv2d(x, weight, bias, stride,
    padding))`` with respect to ``x``, ``weight`` and ``bias`` (the bias
    itself does not enter them), as torch's autograd computes them: an input
    the layer never reads (between strided windows) gets 0, whatever the
    weights, and a non-finite weight reaches only the inputs under it.

    Parameters
    ----------
    grad_out : array_like, shape (N, F, Ho, Wo)
        The gradient of the loss with respect to the layer's output.
    x, weight, stride, padding, backend
        As in :func:`conv2d`, the values of the forward pass.

    Returns
    -------
    grad_x : ndarray, shape (N, C, H, W)
    grad_weight : ndarray, shape (F, C, kh, kw)
    grad_bias : ndarray, shape (F,)
        In the dtype :func:`conv2d` returns for ``x`` and ``weight``.
        ``grad_weight`` and ``grad_bias`` are bit-identical for any thread
        count (sums over fixed blocks of images, added in a fixed order).

    Raises
    ------
    TypeError, ValueError, KeyboardInterrupt
        As :func:`conv2d`; and ValueError if ``grad_out`` does not have the
        shape of the layer's output.

    Examples
    --------
    >>> import numpy as np, fastcalc
    >>> x, weight = np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2))
    >>> grad_x, grad_weight, grad_bias = fastcalc.conv2d_backward(
    ...     np.ones((1, 1, 2, 2)), x, weight)
    >>> grad_x[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    >>> grad_weight[0, 0], grad_bias
    (array([[4., 4.],
           [4., 4.]]), array([4.]))
    """
    if _validate.is_dask_array(x) or _validate.is_dask_array(grad_out):
        return _validate.on_dask("conv2d_backward")(grad_out, x, weight, stride, padding,
                                                    backend=backend)
    layer = _Layer(x, weight, None, stride, padding, grad_out)
    gradient = layer.grad_out
    grad_x = np.empty(layer.x.shape, layer.compute)
    threads = _dispatch.kernel_threads()
    if grad_x.size and gradient.size:
        run, seconds = _input_gradient(layer, backend, grad_x, threads)
        _slices.run_in_slices(run, len(grad_x), seconds)
    else:
        grad_x[...] = 0
    if layer.weight.size and gradient.size:
        grad_weight = _weight_gradient(layer, backend, threads)
    else:
        grad_weight = np.zeros(layer.weight.shape, layer.compute)
    grad_bias = gradient.sum(axis=(0, 2, 3))
    dtype = layer.result_dtype
    return (grad_x.astype(dtype, copy=False), grad_weight.astype(dtype, copy=False),
            grad_bias.astype(dtype, copy=False))


def _input_gradient(layer, backend, grad_x, threads):
    """``(run, seconds)``: ``run(start, stop)`` writes ``grad_x`` of images ``start`` to
    ``stop - 1``, in about ``seconds`` per image at most.

    The input gradient scatters grad_out back through the windows: a
    stride-1 correlation of grad_out, spread out by the stride and padded,
    with the flipped filters, input and output channels swapped (the forward
    kernel).  That correlation also multiplies the weights by the zeros it
    spreads and pads with: exact for finite weights, but an inf or NaN would
    turn them into NaN at inputs the layer never reads.  With a non-finite
    weight, or filters so many more than channels that the spread-out
    grad_out (F channels at the input's size) would outweigh the arrays of
    the call, the windows are scattered tap by tap instead.
    """
    (kh, kw), (ph, pw) = layer.weight.shape[2:], layer.padding
    gradient, weight = layer.grad_out, layer.weight
    if np.isfinite(weight).all() and layer.spread_fits:
        forward = _dispatch.kernel("convolution", "conv2d", backend, _AUTO_ORDER)
        flipped = np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        zeros = np.zeros(flipped.shape[0], layer.compute)

        def run(start, stop):
            forward(gradient[start:stop], flipped, zeros, grad_x[start:stop], (1, 1),
                    layer.stride, (kh - 1 - ph, kw - 1 - pw), threads)
        return run, _seconds_per_image(layer, backend, grad_x.shape[2:])
    height, width = grad_x.shape[2:]
    taps = [(a, b, _landing(gradient.shape[2], layer.stride[0], a, ph, height),
             _landing(gradient.shape[3], layer.stride[1], b, pw, width))
            for a in range(kh) for b in range(kw)]

    def scatter(start, stop):
        target = grad_x[start:stop]
        target[...] = 0
        for a, b, (out_rows, rows), (out_columns, columns) in taps:
            products = np.tensordot(gradient[start:stop, :, out_rows, out_columns],
                                    weight[:, :, a, b], axes=(1, 0))  # (n, i, j, c)
            target[:, :, rows, columns] += products.transpose(0, 3, 1, 2)
    return scatter, _seconds_per_image(layer, "numpy", gradient.shape[2:])


def _landing(out_size, stride, tap, pad, size):
    """``(outputs, inputs)``: the output indices whose ``tap`` lands in x, and where, as slices.

    Output i reads padded index ``i * stride + tap``, input ``i * stride + tap - pad``.
    """
    first = max(0, -((tap - pad) // stride))  # ceil((pad - tap) / stride)
    stop = min(out_size, (size - 1 + pad - tap) // stride + 1)
    if stop <= first:
        return slice(0, 0), slice(0, 0)
    begin = first * stride + tap - pad
    return slice(first, stop), slice(begin, begin + (stop - first - 1) * stride + 1, stride)


def _weight_gradient(layer, backend, threads):
    """grad_weight: sums over fixed blocks of images, added up in order.

    The blocks depend only on the shapes, never on the thread count or on
    where a slice ends, so the result is the same bit for bit whatever both.
    """
    kernel = _dispatch.kernel("convolution", "conv2d_grad_weight", backend, _AUTO_ORDER)
    images, weight_size = len(layer.x), layer.weight.size
    # At most _GRAD_BLOCKS blocks (enough for every thread to take whole
    # ones), fewer when their partial sums would outweigh _GRAD_BLOCK_ELEMENTS.
    blocks = max(1, min(images, _GRAD_BLOCKS, _GRAD_BLOCK_ELEMENTS // weight_size))
    block = -(-images // blocks)
    partial = np.empty((-(-images // block), *layer.weight.shape), layer.compute)

    def run(start, stop):
        kernel(layer.grad_out[start:stop], layer.x[start:stop],
               partial[start // block:-(-stop // block)], block, layer.stride, layer.padding,
               threads)

    _slices.run_in_slices(run, images, _seconds_per_image(layer, backend, layer.out_shape[2:]),
                          align=block)
    with np.errstate(over="ignore", invalid="ignore"):  # inf and NaN as in the kernels
        return partial.sum(axis=0)


# The weight gradient's blocks of images: at most this many, and their
# partial sums at most this many elements (unless one block is more).
_GRAD_BLOCKS = 64
_GRAD_BLOCK_ELEMENTS = 1 << 22
# Rows at least this wide run the compiled kernels' vector code.
_WIDE_ROWS = 16
# The spread-out grad_out of the input gradient may hold this many times
# the elements of one image of x and of grad_out together.
_SPREAD_RATIO = 4


def _seconds_per_image(layer, backend, out_shape):
    """A generous estimate of one image's time in a kernel call writing (Ho, Wo) ``out_shape``.

    Each output position costs one multiply-add per weight (F * C * kh * kw,
    or C * F * kh * kw for the input gradient); each backend says how long
    one takes at most, on rows of vector width and on narrower ones.
    """
    wide, narrow = _dispatch.kernel("convolution", "CONV2D_SECONDS_PER_MULTIPLY_ADD", backend,
                                    _AUTO_ORDER)
    return (layer.weight.size * out_shape[0] * out_shape[1]
            * (wide if out_shape[1] >= _WIDE_ROWS else narrow))


class _Layer:
    """The validated arguments of a conv2d call: contiguous, native, one dtype.

    ``stride`` is clamped to the padded input: the output depends on it only
    up to there, so every kernel sees a stride, and sizes, bounded by the
    padded input.  ``check_memory=False`` skips the check that one padded
    image and the output fit in memory (fastcalc.dask's tiles each hold a part).
    """

    def __init__(self, x, weight, bias, stride, padding, grad_out=None, *, check_memory=True):
        named = {"x": x, "weight": weight}
        if bias is not None:
            named["bias"] = bias
        if grad_out is not None:
            named["grad_out"] = grad_out
        arrays = {name: _validate.as_array(value, name) for name, value in named.items()}
        self.compute, self.result_dtype = _validate.common_dtype(arrays, "convolutions")
        image, filters = arrays["x"], arrays["weight"]
        if image.ndim != 4:
            raise ValueError(f"x must have shape (N, C, H, W), got {image.shape}")
        if filters.ndim != 4:
            raise ValueError(f"weight must have shape (F, C, kh, kw), got {filters.shape}")
        if filters.shape[1] != image.shape[1]:
            raise ValueError(f"weight {filters.shape} expects {filters.shape[1]} input channels, "
                             f"but x {image.shape} has {image.shape[1]}")
        if bias is not None and arrays["bias"].shape != filters.shape[:1]:
            raise ValueError(f"bias must have shape ({filters.shape[0]},) for weight "
                             f"{filters.shape}, got {arrays['bias'].shape}")
        stride = _pair(stride, "stride", 1)
        self.padding = _pair(padding, "padding", 0)
        (kh, kw), (channels, height, width) = filters.shape[2:], image.shape[1:]
        padded = (height + 2 * self.padding[0], width + 2 * self.padding[1])
        if kh == 0 or kw == 0 or kh > padded[0] or kw > padded[1]:
            raise ValueError(f"the kernel of weight {filters.shape} must be non-empty and fit "
                             f"in the padded input of x {image.shape}: {padded[0]} x {padded[1]} "
                             f"with padding {self.padding}")
        self.out_shape = (image.shape[0], filters.shape[0],
                          (padded[0] - kh) // stride[0] + 1, (padded[1] - kw) // stride[1] + 1)
        itemsize = self.compute.itemsize
        padded_bytes = max(channels, 1) * padded[0] * padded[1] * itemsize
        out_bytes = np.prod(self.out_shape, dtype=object) * itemsize
        if check_memory and max(padded_bytes, out_bytes) > _validate.MEMORY_BYTES:
            raise ValueError(f"padding {self.padding} is too large: one padded image of x "
                             f"{image.shape} ({padded_bytes} bytes) or the output "
                             f"{self.out_shape} ({out_bytes} bytes) would exceed this "
                             f"machine's memory ({_validate.MEMORY_BYTES} bytes)")
        if grad_out is not None and arrays["grad_out"].shape != self.out_shape:
            raise ValueError(f"grad_out must have the shape of the layer's output "
                             f"{self.out_shape} (x {image.shape}, weight {filters.shape}, "
                             f"stride {stride}, padding {self.padding}), "
                             f"got {arrays['grad_out'].shape}")
        # A stride beyond padded - k + 1 gives the same single output row (column).
        self.stride = (min(stride[0], padded[0] - kh + 1), min(stride[1], padded[1] - kw + 1))
        out_height, out_width = self.out_shape[2:]
        spread = filters.shape[0] * (height + kh - 1) * (width + kw - 1)
        self.spread_fits = spread <= _SPREAD_RATIO * (
            channels * height * width + filters.shape[0] * out_height * out_width)
        contiguous = {name: np.ascontiguousarray(array, dtype=self.compute)
                      for name, array in arrays.items()}
        self.x, self.weight = contiguous["x"], contiguous["weight"]
        self.bias = contiguous.get("bias", np.zeros(filters.shape[0], self.compute))
        self.grad_out = contiguous.get("grad_out")


def _pair(value, name: str, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints, each >= ``minimum``, as a pair."""
    pair = (value, value) if np.ndim(value) == 0 else tuple(np.asarray(value).tolist())
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                 for v in pair):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(pair[0]), int(pair[1])
