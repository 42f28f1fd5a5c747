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

import copy
import functools
import operator

import numpy as np

try:
    import dask.array as da
except ImportError as error:  # pragma: no cover - the message is the point
    raise ImportError("fastcalc.dask needs dask: pip install 'dask[array]' "
                      "(or fastcalc's extra: pip install 'fastcalc[dask]')") from error

import dask
from dask.highlevelgraph import HighLevelGraph

from fastcalc import _validate, activations, convolution, optim, rnn

__all__ = ["conv2d", "conv2d_backward", "convolve2d", "correlate2d", "fit_linear",
           "fit_logistic", "gradient_descent", "rnn_backward", "rnn_forward", "sigmoid",
           "sigmoid_derivative"]


def _check_dask(x, name: str) -> da.Array:
    if not isinstance(x, da.Array):
        raise TypeError(f"{name} must be a dask.array.Array, got {type(x).__name__} "
                        "(fastcalc's own functions take both)")
    return x


# --- elementwise -------------------------------------------------------------------------

def elementwise(name: str, x, backend: str | None = None) -> da.Array:
    """The activation kernel ``name`` (as :func:`fastcalc.activations.run_backend` names it)
    per block."""
    x = _check_dask(x, "x")
    _, result_dtype = _validate.compute_dtype(x.dtype, "x")
    return x.map_blocks(_elementwise_block, name, backend, dtype=result_dtype,
                        meta=np.empty((0,) * x.ndim, result_dtype))


def _elementwise_block(block, name, backend):
    return activations.run_backend(name, block, None, backend)


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
    by the kernels on the fly, as in memory).  ``method="auto"`` picks the
    direct sum or the FFT once for the whole call, by the kernel, as in
    memory; the FFT's check of accuracy is made per block.  Where the
    result cannot be cut (scipy's swap
    of a larger ``in2`` in "valid" mode, a kernel with more taps than one
    image), the image is one block along its image axes.

    The result has the chunks of ``in1`` along the batch axes; along the
    image axes, ``in1``'s chunk sizes with the change of size of "full" and
    "valid" taken from (or added to) the last chunks.

    Notes
    -----
    Direct method: the in-memory bits, for every chunking and backend (every
    kernel computes each output as the same rounded sum, whichever of its
    paths computes it).  FFT: each block is transformed on its own, so
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
    # Once for the call, as in memory ("auto": the FFT's check is made per block).
    method = convolution.resolved_method(method, image.dtype, kernel.dtype, weights)
    # Rows (columns) before the image in the padded image the result is the
    # valid correlation of.
    before = (kh - 1 - first[0], kw - 1 - first[1])
    row_chunks = _resized(image.chunks[-2], shape[0])
    column_chunks = _resized(image.chunks[-1], shape[1])
    rows = [_reads(part, kh, before[0], height, padding) for part in _bounds(row_chunks)]
    columns = [_reads(part, kw, before[1], width, padding) for part in _bounds(column_chunks)]
    return _region_blocks("correlate2d", image, rows, columns, _correlate_sources,
                          (weights, fill, method, backend, result_dtype), image.chunks[:-2],
                          result_dtype)


def _in_one_block(image, kernel, mode, boundary, fillvalue, method, backend, flip, result_dtype):
    """The in-memory function on the whole image: scipy's rules that see the whole of it."""
    function = convolution.convolve2d if flip else convolution.correlate2d
    _, shape = convolution.window(mode, image.shape[-2:], kernel.shape, flip)
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


def _pieces(reads, chunks: tuple[int, ...]) -> list[tuple[int, slice]]:
    """``reads`` (a slice or indices) as ``(chunk, slice within it)`` pieces, in order.

    Consecutive indices (either way) are one slice, cut where chunks meet.
    An empty read is an empty piece of the chunk it starts in.
    """
    if isinstance(reads, slice):
        runs = [(reads.start, reads.stop - reads.start, 1)] if reads.stop > reads.start else []
    else:
        runs, start = [], 0
        while start < len(reads):
            stop, step = start + 1, 1
            if stop < len(reads) and abs(int(reads[stop]) - int(reads[start])) == 1:
                step = int(reads[stop]) - int(reads[start])
                while stop < len(reads) and int(reads[stop]) - int(reads[stop - 1]) == step:
                    stop += 1
            runs.append((int(reads[start]), stop - start, step))
            start = stop
    bounds = np.cumsum((0, *chunks)).tolist()
    if not runs:  # an empty piece of the chunk the read would start in
        start = reads.start if isinstance(reads, slice) else 0
        return [(min(int(np.searchsorted(bounds, start, side="right")) - 1, len(chunks) - 1),
                 slice(0, 0))]
    pieces = []
    for first, count, step in runs:
        while count:
            chunk = int(np.searchsorted(bounds, first, side="right")) - 1
            low, high = bounds[chunk], bounds[chunk + 1]
            taken = min(count, high - first if step == 1 else first - low + 1)
            local, end = first - low, first - low + step * taken
            pieces.append((chunk, slice(local, None if end < 0 else end, step)))
            first, count = first + step * taken, count - taken
    return pieces


def _region_blocks(prefix, image, rows, columns, compute, arguments, leading_chunks,
                   result_dtype, collections=()):
    """A result of blocks each computed from a region of ``image``'s last two axes.

    One task per block, one task per chunk of ``image`` for its strips.
    ``rows`` and ``columns`` hold, per block of the result along an axis,
    ``(length, reads, offset)`` (see :func:`_reads`).  A block's task calls
    ``compute(grid, whole, (top, left), (height, width), *arguments)``: it
    gets the chunks it reads whole as they are, and the parts of others from
    the tuple of strips their chunk's task cut (copies: a worker sends only
    those); ``arguments`` may hold keys of ``collections``.  The result has
    ``leading_chunks`` before the two axes (as many blocks as ``image``).  The
    graph is written directly: no other tasks (no joins, no aliases).
    """
    row_pieces = [_pieces(reads, image.chunks[-2]) for _, reads, _ in rows]
    column_pieces = [_pieces(reads, image.chunks[-1]) for _, reads, _ in columns]
    # The strips each chunk of the image's axes gives: pieces that are not the whole chunk
    # (slices are unhashable before Python 3.12: lists).
    strips: dict[tuple[int, int], list[tuple[slice, slice]]] = {}
    for across in row_pieces:
        for down in column_pieces:
            for a, row_slice in across:
                for b, column_slice in down:
                    wanted = strips.setdefault((a, b), [])
                    if (not _whole(image, a, row_slice, b, column_slice)
                            and (row_slice, column_slice) not in wanted):
                        wanted.append((row_slice, column_slice))
    token = dask.base.tokenize(image.name, rows, columns, compute, arguments, leading_chunks,
                               result_dtype)
    name, strips_name = f"{prefix}-{token}", f"{prefix}-strips-{token}"
    tasks = {}
    for batch in np.ndindex(*image.numblocks[:-2]):
        for (a, b), wanted in strips.items():
            if wanted:
                tasks[(strips_name, *batch, a, b)] = (_cut_strips, (image.name, *batch, a, b),
                                                      wanted)
        for i, ((height, _, top), across) in enumerate(zip(rows, row_pieces, strict=True)):
            for j, ((width, _, left), down) in enumerate(zip(columns, column_pieces,
                                                             strict=True)):
                whole = [[_whole(image, a, row_slice, b, column_slice)
                          for b, column_slice in down] for a, row_slice in across]
                sources = [[(image.name, *batch, a, b) if is_whole
                            else (operator.getitem, (strips_name, *batch, a, b),
                                  strips[a, b].index((row_slice, column_slice)))
                            for (b, column_slice), is_whole in zip(down, whole_row, strict=True)]
                           for (a, row_slice), whole_row in zip(across, whole, strict=True)]
                tasks[(name, *batch, i, j)] = (
                    compute, sources, whole, (top, left), (height, width), *arguments)
    chunks = (*leading_chunks, tuple(length for length, _, _ in rows),
              tuple(length for length, _, _ in columns))
    graph = HighLevelGraph.from_collections(name, tasks, dependencies=[image, *collections])
    return da.Array(graph, name, chunks, dtype=result_dtype,
                    meta=np.empty((0,) * len(chunks), result_dtype))


def _whole(image, a: int, rows: slice, b: int, columns: slice) -> bool:
    """Whether ``rows`` x ``columns`` of chunk (a, b) of ``image``'s axes is the whole chunk."""
    return all(part.start == 0 and part.stop == size and part.step == 1
               for part, size in ((rows, image.chunks[-2][a]), (columns, image.chunks[-1][b])))


def _cut_strips(chunk, parts):
    """Copies of ``chunk``'s ``(rows, columns)`` parts (a copy sends only the strip)."""
    return tuple(np.ascontiguousarray(chunk[..., rows, columns]) for rows, columns in parts)


# The fewest columns a side band of a block is computed over: rows narrower
# than the kernels' vectors take their scalar path (2041 rows of 7 outputs of
# 15x15 taps, float32: 3 ms, against 0.5 ms for 16 outputs).
SIDE_BAND = 16


def _correlate_sources(grid, whole, offsets, shape, weights, fill, method, backend,
                       result_dtype):
    """One block of the result, from the region the pieces of ``grid`` make up.

    ``grid`` holds the pieces of the region (rows of pieces): chunks of the
    image where ``whole`` is true, strips cut from them elsewhere (see
    :func:`_region_blocks`).  What lies outside the region is the
    "constant" boundary, filled on the fly.  The
    direct method computes the outputs that read only the largest whole
    chunk among the pieces from it, without copying it, then the bands of
    outputs whose taps reach other pieces from windows of the region joined
    from the pieces: every output is the same rounded sum on any path, so
    the block holds the bits of a call on the whole region.
    """
    row_starts = np.cumsum([0] + [across[0].shape[-2] for across in grid]).tolist()
    column_starts = np.cumsum([0] + [piece.shape[-1] for piece in grid[0]]).tolist()
    chunks = [(grid[i][j].size, i, j) for i, across in enumerate(whole)
              for j, is_whole in enumerate(across) if is_whole]
    if method != "direct" or not chunks:
        return _correlate_window(grid, row_starts, column_starts,
                                 (0, row_starts[-1]), (0, column_starts[-1]), weights, offsets,
                                 fill, method, backend, (0, shape[0]), (0, shape[1]),
                                 result_dtype)
    _, i, j = max(chunks)
    main = grid[i][j]
    (kh, kw), (top, left) = weights.shape, offsets
    good_rows = _reaching_only(shape[0], top, kh, row_starts[-1], row_starts[i], row_starts[i + 1])
    good_columns = _reaching_only(shape[1], left, kw, column_starts[-1], column_starts[j],
                                  column_starts[j + 1])
    images = main.reshape(-1, *main.shape[-2:])
    if (images.dtype != weights.dtype or not images.flags.aligned
            or (images.shape[-1] > 1 and images.strides[-1] != images.itemsize)
            or any(stride % images.itemsize for stride in images.strides)):
        images = np.ascontiguousarray(images, dtype=weights.dtype)
    result = np.empty((images.shape[0], *shape), weights.dtype)
    (g0, g1), (c0, c1) = good_rows, good_columns
    if c0:  # side bands some vectors wide (see SIDE_BAND)
        c0 = min(max(c0, SIDE_BAND), c1)
    if c1 < shape[1]:
        c1 = max(min(c1, shape[1] - SIDE_BAND), c0)
    if g1 > g0 and c1 > c0:
        # Where the outputs [g0, g1) x [c0, c1) read the chunk from, as views: the kernels
        # take views whose rows lie apart, and write the result's window in place.
        first_row, first_column = g0 - top - row_starts[i], c0 - left - column_starts[j]
        low_row, low_column = max(first_row, 0), max(first_column, 0)
        convolution.correlate_padded(
            images[:, low_row:, low_column:], weights,
            (low_row - first_row, low_column - first_column), "constant", fill, "direct",
            backend, result[:, g0:g1, c0:c1])
    for rows, columns in (((0, g0), (0, shape[1])), ((g1, shape[0]), (0, shape[1])),
                          ((g0, g1), (0, c0)), ((g0, g1), (c1, shape[1]))):
        if rows[1] > rows[0] and columns[1] > columns[0]:
            band = _correlate_window(grid, row_starts, column_starts,
                                     _reads_of(rows, top, kh, row_starts[-1]),
                                     _reads_of(columns, left, kw, column_starts[-1]), weights,
                                     offsets, fill, "direct", backend, rows, columns, None)
            result[:, rows[0]:rows[1], columns[0]:columns[1]] = band
    return result.reshape(*main.shape[:-2], *shape).astype(result_dtype, copy=False)


def _reaching_only(outputs: int, before: int, taps: int, size: int, start: int, stop: int):
    """``[first, last)``: the outputs along an axis whose taps inside ``[0, size)`` all lie in
    ``[start, stop)`` (output r reads r - before ... r - before + taps - 1); (0, 0) if none."""
    low = np.maximum(np.arange(outputs) - before, 0)
    high = np.minimum(np.arange(outputs) - before + taps, size)
    good = np.flatnonzero((low >= high) | ((low >= start) & (high <= stop)))
    return (int(good[0]), int(good[-1]) + 1) if good.size else (0, 0)


def _reads_of(outputs: tuple[int, int], before: int, taps: int, size: int) -> tuple[int, int]:
    """The part of ``[0, size)`` that outputs ``[first, last)`` read."""
    return max(outputs[0] - before, 0), min(outputs[1] - before + taps - 1, size)


def _correlate_window(grid, row_starts, column_starts, rows, columns, weights, offsets, fill,
                      method, backend, out_rows, out_columns, result_dtype):
    """Outputs ``out_rows`` x ``out_columns`` of the block, from the region's ``rows`` x
    ``columns`` joined from the pieces of ``grid``; the compute dtype, (B, h, w), unless
    ``result_dtype`` is given (then shaped as the block)."""
    pieces = [[piece[..., max(rows[0], r0) - r0:min(rows[1], r1) - r0,
                     max(columns[0], c0) - c0:min(columns[1], c1) - c0]
               for piece, c0, c1 in zip(across, column_starts, column_starts[1:], strict=False)
               if c1 > columns[0] and c0 < columns[1]]
              for across, r0, r1 in zip(grid, row_starts, row_starts[1:], strict=False)
              if r1 > rows[0] and r0 < rows[1]]
    window = pieces[0][0] if len(pieces) == 1 and len(pieces[0]) == 1 else np.block(pieces)
    images = np.ascontiguousarray(window.reshape(-1, *window.shape[-2:]), dtype=weights.dtype)
    shape = (out_rows[1] - out_rows[0], out_columns[1] - out_columns[0])
    result = np.empty((images.shape[0], *shape), weights.dtype)
    top, left = offsets
    convolution.correlate_padded(images, weights,
                                 (top + rows[0] - out_rows[0], left + columns[0] - out_columns[0]),
                                 "constant", fill, method, backend, result)
    if result_dtype is None:
        return result
    return result.reshape(*window.shape[:-2], *shape).astype(result_dtype, copy=False)


# --- functions of independent items along a batch axis ----------------------------------

# How many partial sums (of the gradients over the batch's chunks) are added
# in one task of the tree that reduces them.
SPLIT_EVERY = 8


def _batched(function, arguments: dict, batched: dict, outputs: tuple, *, per_chunk=None,
             summed_last=None):
    """``function(**arguments)`` run per chunk of a batch axis, as a lazy result.

    ``batched`` maps the names of the arguments that hold items along a batch
    axis to that axis; each that is a dask array (at least one) or an
    in-memory array is cut into the chunks of the first dask array, its other
    axes in one chunk.  ``outputs`` gives, per field of ``function``'s result,
    the batch axis its chunks are joined along, or None: a sum over the
    chunks (a tree, ``SPLIT_EVERY`` at a time), to which ``summed_last`` (if
    given) is applied.  The arguments are checked, and the result's shapes
    and dtypes found, by calling ``function`` on an empty batch.
    """
    lazy = {name: arguments[name] for name in batched if isinstance(arguments[name], da.Array)}
    if not lazy:
        raise TypeError(f"one of {', '.join(batched)} must be a dask.array.Array")
    first = next(iter(lazy))
    size, chunks = lazy[first].shape[batched[first]], lazy[first].chunks[batched[first]]
    pieces, empty = {}, dict(arguments)
    for name, axis in batched.items():
        value = arguments[name]
        if value is None:
            continue
        if not isinstance(value, da.Array):
            value = np.asarray(value)
        if value.ndim <= axis or value.shape[axis] != size:
            raise ValueError(f"{name} must have {size} items along axis {axis}, as {first} "
                             f"has, got shape {value.shape}")
        index = [slice(None)] * value.ndim
        index[axis] = slice(0, 0)
        empty[name] = np.empty(value[tuple(index)].shape, value.dtype)
        if not isinstance(value, da.Array):
            value = da.from_array(value, chunks=-1)
        value = value.rechunk({i: chunks if i == axis else -1 for i in range(value.ndim)})
        pieces[name] = value.to_delayed().ravel()
    template = function(**empty)  # checks everything but the batch
    single = not isinstance(template, tuple)
    fields = (template,) if single else template
    call = dask.delayed(function, pure=True, nout=None if single else len(fields))
    common = {**arguments, **(per_chunk or {})}
    parts = [call(**{**common, **{name: blocks[k] for name, blocks in pieces.items()}})
             for k in range(len(chunks))]
    if single:
        parts = [(part,) for part in parts]
    results = []
    for index, (meta, axis) in enumerate(zip(fields, outputs, strict=True)):
        if meta is None:
            results.append(None)
            continue
        meta = np.asarray(meta)
        if axis is None:
            total = da.stack([da.from_delayed(part[index], meta.shape, meta.dtype)
                              for part in parts]).sum(axis=0, split_every=SPLIT_EVERY)
            results.append(total if summed_last is None else summed_last(total))
        else:
            results.append(da.concatenate(
                [da.from_delayed(part[index],
                                 (*meta.shape[:axis], count, *meta.shape[axis + 1:]),
                                 meta.dtype, meta=np.empty((0,) * meta.ndim, meta.dtype))
                 for part, count in zip(parts, chunks, strict=True)], axis=axis))
    if single:
        return results[0]
    return type(template)(*results) if hasattr(template, "_fields") else tuple(results)


def conv2d(x, weight, bias=None, stride=1, padding=0, *, backend: str | None = None):
    """:func:`fastcalc.conv2d` of a dask batch ``x`` (N, C, H, W), per chunk of N, H and W.

    The result has ``x``'s chunks along N.  Where ``x`` is chunked along H
    or W (an image larger than a worker holds), the result has a block per
    chunk: the outputs ``o`` whose ``o * stride`` lies in the chunk (a
    padding that keeps the size keeps the chunks), computed from the chunk,
    strips of its neighbours as deep as the kernel reaches, and the
    padding's zeros.  C is joined.
    Every block holds the in-memory bits on the compiled backends (each
    output is the same sum of taps, wherever it lies); numpy's matrix
    products round by their blocking, to its tolerances.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastcalc
    >>> x = da.ones((4, 1, 3, 3), chunks=(2, 1, 3, 3))
    >>> fastcalc.conv2d(x, np.ones((1, 1, 2, 2))).compute()[:, 0, 0]
    array([[4., 4.],
           [4., 4.],
           [4., 4.],
           [4., 4.]])
    >>> image = da.ones((1, 1, 8, 8), chunks=(1, 1, 4, 4))
    >>> fastcalc.conv2d(image, np.ones((1, 1, 3, 3)), padding=1).chunks
    ((1,), (1,), (4, 4), (4, 4))
    """
    _check_dask(x, "x")
    if x.ndim == 4 and x.numblocks[2:] != (1, 1):
        return _conv2d_tiles(x, weight, bias, stride, padding, backend)
    return _batched(convolution.conv2d, dict(x=x, weight=weight, bias=bias, stride=stride,
                                             padding=padding, backend=backend),
                    {"x": 0}, (0,))


def _conv2d_tiles(x, weight, bias, stride, padding, backend):
    """:func:`conv2d` of ``x`` chunked along H or W: a block of the result per chunk."""
    def template(value):  # checked without computing a dask weight or bias
        return np.empty(value.shape, value.dtype) if isinstance(value, da.Array) else value

    layer = convolution._Layer(np.empty((0, *x.shape[1:]), x.dtype), template(weight),
                               None if bias is None else template(bias), stride, padding,
                               check_memory=False)
    (kh, kw), (sh, sw), (ph, pw) = layer.weight.shape[2:], layer.stride, layer.padding
    rows = _strided_reads(x.chunks[2], ph, kh, sh, layer.out_shape[2], x.shape[2])
    columns = _strided_reads(x.chunks[3], pw, kw, sw, layer.out_shape[3], x.shape[3])
    arguments, collections = [], []
    for value in (weight, bias):
        if isinstance(value, da.Array):
            value = value.rechunk(-1)
            collections.append(value)
            value = (value.name, *(0,) * value.ndim)
        arguments.append(value)
    return _region_blocks("conv2d", x.rechunk({1: -1}), rows, columns, _conv2d_sources,
                          (*arguments, layer.stride, backend),
                          (x.chunks[0], (layer.out_shape[1],)), layer.result_dtype,
                          collections)


def _strided_reads(chunks: tuple[int, ...], pad: int, taps: int, step: int, outputs: int,
                   size: int):
    """:func:`_reads` for blocks of a strided window along an axis of ``size`` with ``pad``
    zeros each side.  Output o's window (``taps`` long) starts at ``o * step`` in the padded
    input; a block holds the outputs o whose ``o * step`` lies in one chunk of the input (for
    a padding that keeps the size, the outputs centred on that chunk: its chunks are kept)."""
    starts = np.cumsum((0, *chunks[:-1]))[1:]
    bounds = sorted({0, outputs, *np.clip(-(-starts // step), 0, outputs).tolist()})
    reads = []
    for start, stop in zip(bounds, bounds[1:], strict=False):
        low, high = start * step - pad, (stop - 1) * step + taps - pad  # in the input
        first = min(max(low, 0), size)
        reads.append((stop - start, slice(first, max(min(high, size), first)), first - low))
    return reads


def _conv2d_sources(grid, whole, offsets, shape, weight, bias, stride, backend):
    """One block of :func:`conv2d`'s result from the region the pieces of ``grid`` make up
    (see :func:`_region_blocks`), the padding's zeros around it."""
    (kh, kw), (sh, sw) = np.shape(weight)[2:], stride
    first = grid[0][0]
    window = np.zeros((*first.shape[:2], (shape[0] - 1) * sh + kh, (shape[1] - 1) * sw + kw),
                      first.dtype)
    top = offsets[0]
    for across in grid:
        left = offsets[1]
        for piece in across:
            window[..., top:top + piece.shape[-2], left:left + piece.shape[-1]] = piece
            left += piece.shape[-1]
        top += across[0].shape[-2]
    return convolution.conv2d(window, weight, bias, stride, 0, backend=backend)


def conv2d_backward(grad_out, x, weight, stride=1, padding=0, *, backend: str | None = None):
    """:func:`fastcalc.conv2d_backward` per chunk of N: ``grad_x`` by chunk, the rest summed.

    ``grad_weight`` and ``grad_bias`` are the sums of the chunks' gradients,
    added in a tree (``SPLIT_EVERY`` per task); they match the in-memory
    sums to rounding (the order of the additions differs).
    """
    return _batched(convolution.conv2d_backward,
                    dict(grad_out=grad_out, x=x, weight=weight, stride=stride, padding=padding,
                         backend=backend), {"grad_out": 0, "x": 0}, (0, None, None))


def rnn_forward(x, h0, Wxh, Whh, Why, bh=None, by=None, *, backend: str | None = None):
    """:func:`fastcalc.rnn_forward` of sequences ``x`` (T, B, I) chunked along the batch B.

    Each chunk of sequences runs on its own: ``h`` and ``y`` hold the
    in-memory results, joined along B.
    """
    _check_dask(x, "x")
    return _batched(rnn.rnn_forward, dict(x=x, h0=h0, Wxh=Wxh, Whh=Whh, Why=Why, bh=bh, by=by,
                                          backend=backend), {"x": 1, "h0": 0}, (1, 1))


def rnn_backward(dy, x, h, h0, Wxh, Whh, Why, dh_last=None, *, clip=None,
                 backend: str | None = None):
    """:func:`fastcalc.rnn_backward` per chunk of the batch: ``dx``, ``dh0`` by chunk, the
    weights' and biases' gradients summed over the chunks (a tree), then clipped."""
    return _batched(rnn.rnn_backward,
                    dict(dy=dy, x=x, h=h, h0=h0, Wxh=Wxh, Whh=Whh, Why=Why, dh_last=dh_last,
                         clip=clip, backend=backend),
                    {"dy": 1, "x": 1, "h": 1, "h0": 0, "dh_last": 0},
                    (1, 0, None, None, None, None, None), per_chunk={"clip": None},
                    summed_last=None if clip is None else lambda total: da.clip(
                        total, -clip, clip))


def gradient_descent(grad, x0, lr=0.1, n_iter=100, *, momentum=0.0, tol=None, history=False,
                     backend: str | None = None):
    """:func:`fastcalc.gradient_descent` of problems ``x0`` (B,) or (B, D) chunked along B.

    Every problem is independent: the result's fields hold the in-memory
    results, joined along B (``history`` along its axis 1).
    """
    _check_dask(x0, "x0")
    return _batched(optim.gradient_descent,
                    dict(grad=grad, x0=x0, lr=lr, n_iter=n_iter, momentum=momentum, tol=tol,
                         history=history, backend=backend), {"x0": 0}, (0, 0, 0, 1))


def _fit(function, X, y, w0, seed, batch_size, options):
    _check_dask(X, "X")
    if X.ndim != 3:
        raise ValueError(f"X must be (P, N, D), chunked along P, got shape {X.shape}")
    if batch_size is not None and seed is None:
        raise ValueError("batch_size needs a seed on dask: every chunk of problems must draw "
                         "the same mini-batches")
    batched = {"X": 0, "y": 0}
    if w0 is not None and np.ndim(w0) == 2:
        batched["w0"] = 0
    return _batched(functools.partial(_fit_from_seed, function),
                    dict(X=X, y=y, w0=w0, seed=seed, batch_size=batch_size, **options),
                    batched, (0, 0, 0, 0))


def _fit_from_seed(function, seed, **arguments):
    """``function`` with a copy of ``seed``: every chunk (and the check on an empty batch)
    draws the mini-batches from the same state, the one the caller's generator had."""
    return function(seed=copy.deepcopy(seed), **arguments)


def fit_logistic(X, y, *, lr=0.1, n_iter=1000, loss="log", reduction="mean", batch_size=None,
                 l2=0.0, fit_intercept=True, w0=None, seed=None, backend: str | None = None):
    """:func:`fastcalc.fit_logistic` of problems ``X`` (P, N, D) chunked along P.

    The problems are independent: each field holds the in-memory results.
    With ``batch_size``, ``seed`` is required (every chunk draws the same
    mini-batches, as the P problems share them in memory).
    """
    return _fit(optim.fit_logistic, X, y, w0, seed, batch_size,
                dict(lr=lr, n_iter=n_iter, loss=loss, reduction=reduction, l2=l2,
                     fit_intercept=fit_intercept, backend=backend))


def fit_linear(X, y, *, lr=0.1, n_iter=1000, reduction="mean", batch_size=None, l2=0.0,
               fit_intercept=True, w0=None, seed=None, backend: str | None = None):
    """:func:`fastcalc.fit_linear` of problems ``X`` (P, N, D) chunked along P (see
    :func:`fit_logistic`)."""
    return _fit(optim.fit_linear, X, y, w0, seed, batch_size,
                dict(lr=lr, n_iter=n_iter, reduction=reduction, l2=l2,
                     fit_intercept=fit_intercept, backend=backend))
