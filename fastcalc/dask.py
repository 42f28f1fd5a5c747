"""fastcalc's kernels over dask arrays: lazy in, lazy out, the in-memory results.

Every function here takes a ``dask.array.Array`` where its namesake in
:mod:`fastcalc` takes an array, and returns a lazy ``dask.array.Array``:
building the graph computes nothing, and the shape, chunks and dtype of the
result are known at once.  The main functions hand a dask array here by
themselves, so a user changes nothing but the input::

    >>> import dask.array as da, fastcalc
    >>> x = da.linspace(-4.0, 4.0, 9, chunks=3)
    >>> y = fastcalc.sigmoid(x)        # fastcalc.dask.sigmoid(x): lazy
    >>> y.chunks
    ((3, 3, 3),)
    >>> float(y.sum().compute())
    4.5

Each task runs fastcalc's in-memory function on its blocks, so dask's
schedulers (threads, processes, ``dask.distributed``) spread the work; this
module builds graphs and never schedules anything itself.  It imports dask,
an optional dependency (``pip install "fastcalc[dask]"``); ``import
fastcalc`` does not import this module.

xarray objects that hold dask arrays go through ``xarray.apply_ufunc``::

    xr.apply_ufunc(fastcalc.sigmoid, data_array, dask="parallelized",
                   output_dtypes=[data_array.dtype])
"""

from __future__ import annotations

import functools

import numpy as np

try:
    import dask.array as da
except ImportError as error:  # pragma: no cover - the message is the point
    raise ImportError("fastcalc.dask needs dask: pip install 'dask[array]' "
                      "(or fastcalc's extra: pip install 'fastcalc[dask]')") from error

from fastcalc import _validate, activations, convolution

__all__ = ["convolve2d", "correlate2d", "sigmoid", "sigmoid_derivative"]


def _check_dask(x, name: str) -> da.Array:
    if not isinstance(x, da.Array):
        raise TypeError(f"{name} must be a dask.array.Array, got {type(x).__name__} "
                        f"(the functions of fastcalc itself take in-memory arrays)")
    return x


# --- elementwise -------------------------------------------------------------------------

def elementwise(name: str, x, backend: str | None = None) -> da.Array:
    """The activation kernel ``name`` (as :func:`fastcalc.activations._run` names it) per block."""
    x = _check_dask(x, "x")
    _, result_dtype = _validate.compute_dtype(x.dtype, "x")
    return x.map_blocks(_elementwise_block, name, backend, dtype=result_dtype,
                        meta=np.empty((0,) * x.ndim, result_dtype))


def _elementwise_block(block, name, backend):
    return activations._run(name, block, None, backend)


def sigmoid(x, *, backend: str | None = None) -> da.Array:
    """:func:`fastcalc.sigmoid` of a dask array, block by block (the same bits).

    Examples
    --------
    >>> import dask.array as da, fastcalc.dask
    >>> fastcalc.dask.sigmoid(da.zeros(4, chunks=2)).compute()
    array([0.5, 0.5, 0.5, 0.5])
    """
    return elementwise("sigmoid", x, backend)


def sigmoid_derivative(x, *, from_output: bool = False, backend: str | None = None) -> da.Array:
    """:func:`fastcalc.sigmoid_derivative` of a dask array, block by block (the same bits).

    Examples
    --------
    >>> import dask.array as da, fastcalc.dask
    >>> fastcalc.dask.sigmoid_derivative(da.zeros(2, chunks=1)).compute()
    array([0.25, 0.25])
    """
    name = "sigmoid_derivative_from_output" if from_output else "sigmoid_derivative"
    return elementwise(name, x, backend)


# --- 2-D correlation ---------------------------------------------------------------------

def correlate2d(in1, in2, mode: str = "full", boundary: str = "fill", fillvalue: float = 0, *,
                method: str = "auto", backend: str | None = None) -> da.Array:
    """:func:`fastcalc.correlate2d` of a dask array of images ``(..., H, W)``.

    ``in1`` may be chunked along any axis, the image axes included; ``in2``
    (the kernel) is an in-memory array (a dask kernel is computed once).
    Each block of the result is computed from the part of ``in1`` it reads:
    its own block and strips of its neighbours as deep as the kernel, or,
    at the image's edges, the boundary's values (``fill`` taps are computed
    by the kernels on the fly, as in memory).  ``method="auto"`` is decided
    once for the whole call.  Where the result cannot be cut (scipy's swap
    of a larger ``in2`` in "valid" mode, a kernel with more taps than one
    image), the image is one block along its image axes.

    The result has the chunks of ``in1`` along the batch axes; along the
    image axes, ``in1``'s chunk sizes with the change of size of "full" and
    "valid" taken from (or added to) the last chunks.

    Notes
    -----
    Direct method: every output element is the same sum of the same
    products as in memory; the compiled kernels may round it differently
    where a block's width places it in a vector's remainder, within the
    in-memory tolerances.  FFT: each block is transformed on its own, so
    results match the in-memory FFT to its tolerances, not bit for bit.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastcalc
    >>> image = da.from_array(np.arange(16.0).reshape(4, 4), chunks=2)
    >>> fastcalc.correlate2d(image, np.ones((2, 2)), mode="valid").compute()
    array([[10., 14., 18.],
           [26., 30., 34.],
           [42., 46., 50.]])
    """
    return _filter2d(in1, in2, mode, boundary, fillvalue, method, backend, flip=False)


def convolve2d(in1, in2, mode: str = "full", boundary: str = "fill", fillvalue: float = 0, *,
               method: str = "auto", backend: str | None = None) -> da.Array:
    """:func:`fastcalc.convolve2d` of a dask array of images ``(..., H, W)``.

    :func:`correlate2d` with the kernel flipped, and scipy's centring of
    "same" for convolution.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastcalc
    >>> fastcalc.convolve2d(da.eye(3, chunks=2), np.array([[1.0, 2.0]]), mode="same").compute()
    array([[1., 2., 0.],
           [0., 1., 2.],
           [0., 0., 1.]])
    """
    return _filter2d(in1, in2, mode, boundary, fillvalue, method, backend, flip=True)


def _filter2d(in1, in2, mode, boundary, fillvalue, method, backend, *, flip):
    image = _check_dask(in1, "in1")
    kernel = np.asarray(in2)
    compute, result_dtype, fill = convolution.check_filter(image, kernel, mode, boundary,
                                                           fillvalue, method)
    (height, width), (kh, kw) = image.shape[-2:], kernel.shape
    swapped = (mode == "valid"
               and convolution._swap_needed((height, width), kernel.shape, image.ndim))
    if swapped or (mode != "valid" and image.ndim == 2 and kernel.size > image.size):
        return _in_one_block(image, kernel, mode, boundary, fillvalue, method, backend, flip,
                             result_dtype)
    weights = np.ascontiguousarray(kernel[::-1, ::-1] if flip else kernel, dtype=compute)
    first, shape = convolution.window(mode, (height, width), (kh, kw), flip)
    padding = convolution._BOUNDARIES[boundary]
    if padding != "constant":  # the blocks read the boundary's values themselves
        fill = 0.0
    fft = convolution.uses_fft(method, weights)
    # Rows (columns) before the image in the padded image the result is the
    # valid correlation of.
    before = (kh - 1 - first[0], kw - 1 - first[1])
    row_chunks = _resized(image.chunks[-2], shape[0])
    column_chunks = _resized(image.chunks[-1], shape[1])
    rows = [_reads(part, kh, before[0], height, padding) for part in _bounds(row_chunks)]
    columns = [_reads(part, kw, before[1], width, padding) for part in _bounds(column_chunks)]
    blocks = [[_block(image, row, column, weights, padding, fill, fft, backend, result_dtype)
               for column in columns] for row in rows]
    return da.block(blocks)


def _in_one_block(image, kernel, mode, boundary, fillvalue, method, backend, flip, result_dtype):
    """The in-memory function on the whole image: scipy's rules that see the whole of it."""
    function = convolution.convolve2d if flip else convolution.correlate2d
    first, shape = convolution.window(mode, image.shape[-2:], kernel.shape, flip)
    if mode == "valid" and any(k > i for k, i in zip(kernel.shape, image.shape, strict=True)):
        shape = (kernel.shape[0] - image.shape[0] + 1, kernel.shape[1] - image.shape[1] + 1)
    whole = image.rechunk({image.ndim - 2: -1, image.ndim - 1: -1})
    return whole.map_blocks(
        functools.partial(function, in2=kernel, mode=mode, boundary=boundary,
                          fillvalue=fillvalue, method=method, backend=backend),
        chunks=(*whole.chunks[:-2], (shape[0],), (shape[1],)), dtype=result_dtype,
        meta=np.empty((0,) * image.ndim, result_dtype))


def _resized(chunks: tuple[int, ...], size: int) -> tuple[int, ...]:
    """``chunks`` made to add up to ``size``: the difference taken from or added to the end."""
    chunks = list(chunks)
    change = size - sum(chunks)
    if change >= 0:
        chunks[-1] += change
    while change < 0:
        taken = min(chunks[-1], -change)
        chunks[-1] -= taken
        change += taken
        if chunks[-1] == 0 and len(chunks) > 1:
            chunks.pop()
    return tuple(chunks)


def _bounds(chunks: tuple[int, ...]) -> list[tuple[int, int]]:
    """``[start, stop)`` of each chunk."""
    stops = np.cumsum(chunks).tolist()
    return list(zip([0, *stops[:-1]], stops, strict=True))


def _reads(part, taps: int, before: int, size: int, padding: str):
    """What outputs ``[start, stop)`` read along an axis of ``size``: ``(length, reads, offset)``.

    ``reads`` is a slice of the image ("constant" padding: the taps outside
    it are filled on the fly, ``offset`` being where the slice starts in the
    padded window) or an index array of the image's elements in the padded
    window ("wrap", "symmetric"; offset 0).
    """
    start, stop = part
    low, high = start - before, stop + taps - 1 - before  # in image coordinates
    if padding == "constant":
        first, last = max(low, 0), min(high, size)
        return stop - start, slice(first, last), first - low
    return stop - start, convolution._extended(np.arange(low, high), size, padding), 0


def _take(image: da.Array, axis: int, reads) -> da.Array:
    """``image``'s elements ``reads`` (a slice or indices) along ``axis``, in runs of slices."""
    index = [slice(None)] * image.ndim
    if isinstance(reads, slice):
        index[axis] = reads
        return image[tuple(index)]
    # Runs of consecutive indices (either way) are slices: no fancy indexing.
    pieces, start = [], 0
    while start < len(reads):
        stop, step = start + 1, 1
        if stop < len(reads) and abs(int(reads[stop]) - int(reads[start])) == 1:
            step = int(reads[stop]) - int(reads[start])
            while stop < len(reads) and int(reads[stop]) - int(reads[stop - 1]) == step:
                stop += 1
        end = int(reads[stop - 1]) + step
        index[axis] = slice(int(reads[start]), None if end < 0 else end, step)
        pieces.append(image[tuple(index)])
        start = stop
    return pieces[0] if len(pieces) == 1 else da.concatenate(pieces, axis=axis)


def _block(image, row, column, weights, padding, fill, fft, backend, result_dtype):
    """One block of the result along the image axes, every batch chunk of it."""
    (rows, row_reads, top), (columns, column_reads, left) = row, column
    region = _take(_take(image, image.ndim - 2, row_reads), image.ndim - 1, column_reads)
    region = region.rechunk({image.ndim - 2: -1, image.ndim - 1: -1})
    return region.map_blocks(
        _correlate_block, weights, (top, left), padding, fill, fft, backend, (rows, columns),
        result_dtype, chunks=(*region.chunks[:-2], (rows,), (columns,)), dtype=result_dtype,
        meta=np.empty((0,) * image.ndim, result_dtype))


def _correlate_block(region, weights, offsets, padding, fill, fft, backend, shape, result_dtype):
    batch_shape = region.shape[:-2]
    images = np.ascontiguousarray(region.reshape(-1, *region.shape[-2:]), dtype=weights.dtype)
    result = np.empty((images.shape[0], *shape), weights.dtype)
    # The region holds every image element the block reads; what lies outside
    # it is the "constant" boundary, filled on the fly.
    convolution.correlate_padded(images, weights, offsets, "constant", fill,
                                 "fft" if fft else "direct", backend, result)
    return result.reshape(*batch_shape, *shape).astype(result_dtype, copy=False)
