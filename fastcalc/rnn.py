"""The Elman RNN of the seed's slide 11: forward pass and backpropagation through time.

``h[t] = tanh(Wxh x[t] + Whh h[t - 1] + bh)`` and ``y[t] = Why h[t] + by``
over whole sequences, batched, with the exact gradients of a loss given
dL/dy at every step.  The compiled backends run the whole time loop, forward
and backward, without returning to Python once per step.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from fastcalc import _dispatch, _slices, _validate

__all__ = ["RNNGrads", "rnn_backward", "rnn_forward"]

# From benchmarks/bench_rnn.py: Cython is ahead at both sizes measured.
_AUTO_ORDER = ("cython", "numba", "numpy")

_FLOAT64 = np.dtype(np.float64)
_FLOAT32 = np.dtype(np.float32)
_OPTIONAL = frozenset({"h0", "bh", "by", "dh_last"})  # None means zeros

# A generous estimate of the seconds a kernel takes per multiply-add of the
# forward pass (the backward pass has twice as many): several times what the
# compiled kernels take on one thread, so that a call estimated below two
# slices (fastcalc._slices) is short on every backend.  Each step of each
# sequence also costs the kernels' loops and calls, counted as
# _STEP_MULTIPLY_ADDS (what matters where H is tiny and T * B huge).
_SECONDS_PER_MULTIPLY_ADD = 0.25e-9
_STEP_MULTIPLY_ADDS = 64


class RNNGrads(NamedTuple):
    """The gradients :func:`rnn_backward` returns, each shaped like its variable."""

    dx: np.ndarray
    dh0: np.ndarray
    dWxh: np.ndarray
    dWhh: np.ndarray
    dbh: np.ndarray
    dWhy: np.ndarray
    dby: np.ndarray


def rnn_forward(
    x: ArrayLike,
    h0: ArrayLike | None,
    Wxh: ArrayLike,
    Whh: ArrayLike,
    Why: ArrayLike,
    bh: ArrayLike | None = None,
    by: ArrayLike | None = None,
    *,
    backend: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run an Elman RNN (tanh) over whole sequences: every hidden state and output.

    ``h[t] = tanh(x[t] @ Wxh.T + h[t - 1] @ Whh.T + bh)``, starting from
    ``h[-1] = h0``, and ``y[t] = h[t] @ Why.T + by``: torch's
    ``nn.RNN(nonlinearity="tanh")`` with ``weight_ih_l0 = Wxh``,
    ``weight_hh_l0 = Whh`` (and ``bias_ih_l0 + bias_hh_l0 = bh``), followed
    by ``nn.Linear`` with weight ``Why`` and bias ``by``.

    Parameters
    ----------
    x : array_like, shape (T, B, I) or (T, I)
        B sequences of T steps of I inputs (time first, as in torch), or a
        single sequence.
    h0 : array_like, shape (B, H) or (H,), or None
        The hidden state before the first step; None means zeros.  (H,) for
        a single sequence.
    Wxh : array_like, shape (H, I)
        Input-to-hidden weights.
    Whh : array_like, shape (H, H)
        Hidden-to-hidden weights.
    Why : array_like, shape (O, H)
        Hidden-to-output weights.
    bh : array_like, shape (H,), optional
        Hidden bias (default zeros).
    by : array_like, shape (O,), optional
        Output bias (default zeros).
    backend : {"auto", "numpy", "numba", "cython"}, optional
        Overrides :func:`fastcalc.get_backend`.  numpy steps through time
        in Python.  Numba and Cython run the whole loop compiled: Numba with
        the large matrix products in BLAS (scipy's, on BLAS's own threads);
        Cython shares the batch out among :func:`fastcalc.get_num_threads`
        threads, each running every step of its sequences with the products
        summed in vector registers (the fastest; ``"auto"`` picks it).
        Every backend computes the same calls in the same order whatever the
        thread count (:func:`rnn_backward`), and runs a long call in slices
        of sequences: Ctrl-C raises KeyboardInterrupt within about 0.1 s (a
        slice), and the call returns nothing.  A slice holds at least one
        block of sequences (16 on Cython, 64 on Numba and numpy), which must
        run to its end: a single block of many seconds (huge T or H) is not
        interrupted before.

    Returns
    -------
    h : ndarray, shape (T, B, H) or (T, H)
        The hidden state after every step (``h[-1]`` is the final one).
    y : ndarray, shape (T, B, O) or (T, O)
        The output at every step.  Both in the dtype numpy's promotion gives
        the inputs: float32 stays float32, float16 is computed in float32
        and returned as float16, integers and bool alone give float64.

    Raises
    ------
    TypeError
        A complex or non-numeric input.
    ValueError
        An array of the wrong number of dimensions, or whose shape does not
        match the others (the message names both); a ragged nested list;
        empty arrays whose other dimensions give results numpy cannot
        allocate.

    Examples
    --------
    >>> import numpy as np, fastcalc
    >>> x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])   # T = 3, I = 2
    >>> Wxh, Whh, Why = np.eye(2), 0.5 * np.eye(2), np.ones((1, 2))
    >>> h, y = fastcalc.rnn_forward(x, None, Wxh, Whh, Why)
    >>> h.round(4)
    array([[0.7616, 0.    ],
           [0.3634, 0.7616],
           [0.828 , 0.8811]])
    >>> y.round(4)
    array([[0.7616],
           [1.125 ],
           [1.7091]])
    """
    if _validate.is_dask_array(x):
        return _validate.on_dask("rnn_forward")(x, h0, Wxh, Whh, Why, bh, by, backend=backend)
    args = _Arguments(x=x, h0=h0, Wxh=Wxh, Whh=Whh, Why=Why, bh=bh, by=by)
    T, B, _ = args.x.shape
    compute = args.compute
    h = np.empty((T, B, args.H), compute)
    y = np.empty((T, B, args.O), compute)
    kernel = _dispatch.kernel("rnn", "rnn_forward", backend, _AUTO_ORDER)
    if h.size or y.size:  # else nothing to compute, however long the steps
        threads = _dispatch.kernel_threads()

        def run(start, stop):
            kernel(args.x, args.h0, args.Wxh, args.Whh, args.Why, args.bh, args.by, h, y,
                   start, stop, threads)

        _run_in_slices(run, B, args.seconds_per_sequence, backend)
    if args.as_given:
        return h, y
    return args.deliver(h), args.deliver(y)


def rnn_backward(
    dy: ArrayLike,
    x: ArrayLike,
    h: ArrayLike,
    h0: ArrayLike | None,
    Wxh: ArrayLike,
    Whh: ArrayLike,
    Why: ArrayLike,
    dh_last: ArrayLike | None = None,
    *,
    clip: float | None = None,
    backend: str | None = None,
) -> RNNGrads:
    """Backpropagation through time: the gradients of :func:`rnn_forward`.

    The exact gradients of a loss L with respect to the inputs, the initial
    state and every parameter, given ``dy`` = dL/dy at every step and,
    optionally, ``dh_last`` = dL/dh at the last step (when the final state
    itself feeds the loss, e.g. a classifier on ``h[-1]``).

    Parameters
    ----------
    dy : array_like, shape (T, B, O) or (T, O)
        dL/dy, shaped like the forward's ``y``.
    x, h0, Wxh, Whh, Why
        As given to :func:`rnn_forward`.
    h : array_like, shape (T, B, H) or (T, H)
        The hidden states :func:`rnn_forward` returned (the backward pass
        needs them; it does not run the forward again).
    dh_last : array_like, shape (B, H) or (H,), optional
        dL/dh[T - 1] from outside the outputs (default zeros).
    clip : float, optional
        If given, every parameter gradient (dWxh, dWhh, dbh, dWhy, dby) is
        clipped to [-clip, clip] after accumulation, as classic char-RNN
        training does against exploding gradients; dx and dh0 are not.
    backend : {"auto", "numpy", "numba", "cython"}, optional
        Overrides :func:`fastcalc.get_backend` (see :func:`rnn_forward`).
        The parameter gradients are sums over the batch, taken over fixed
        blocks of sequences (16 on Cython, 64 on Numba and numpy) in block
        order: they are bit for bit the same for any thread count (of
        fastcalc or of BLAS), and when a long call runs in slices.

    Returns
    -------
    RNNGrads
        A named tuple ``(dx, dh0, dWxh, dWhh, dbh, dWhy, dby)``: each is
        dL/d(that variable), shaped like it (``dh0`` like ``h0``, also when
        ``h0`` was None), in the dtype :func:`rnn_forward` returns.  The
        bias gradients also hold for torch's separate ``bias_ih`` and
        ``bias_hh``: both get ``dbh``.

    Raises
    ------
    TypeError
        A complex or non-numeric input, or ``clip`` not a real number.
    ValueError
        As :func:`rnn_forward`; ``dy``, ``h`` or ``dh_last`` not shaped like
        ``y``, the forward's ``h`` or ``h0``; ``clip`` not > 0 (NaN
        included), or an int too large for a float.

    Examples
    --------
    >>> import numpy as np, fastcalc
    >>> x = np.array([[1.0], [2.0]])                       # T = 2, I = 1
    >>> Wxh, Whh, Why = np.array([[0.5]]), np.array([[0.5]]), np.array([[2.0]])
    >>> h, y = fastcalc.rnn_forward(x, None, Wxh, Whh, Why)
    >>> grads = fastcalc.rnn_backward(np.ones_like(y), x, h, None, Wxh, Whh, Why)
    >>> grads.dWxh.round(4), grads.dWhh.round(4)
    (array([[2.9588]]), array([[0.2676]]))
    """
    if _validate.is_dask_array(x):
        return _validate.on_dask("rnn_backward")(dy, x, h, h0, Wxh, Whh, Why, dh_last,
                                                 clip=clip, backend=backend)
    args = _Arguments(x=x, h0=h0, Wxh=Wxh, Whh=Whh, Why=Why, dy=dy, h=h, dh_last=dh_last)
    if clip is None:
        limit = math.inf
    else:
        if isinstance(clip, bool) or not isinstance(clip, (int, float, np.integer, np.floating)):
            raise TypeError(f"clip must be a real number or None, got {clip!r}")
        try:
            limit = float(clip)
        except OverflowError:
            raise ValueError(f"clip must be a float, got an int beyond float's range: {clip!r} "
                             "(math.inf is no clipping)") from None
        if not limit > 0:
            raise ValueError(f"clip must be > 0, got {clip!r}")
    T, B, I = args.x.shape
    compute = args.compute
    dx = np.empty((T, B, I), compute)
    dh0 = np.empty((B, args.H), compute)
    # The kernels add every block's share to these.
    dWxh = np.zeros(args.Wxh.shape, compute)
    dWhh = np.zeros(args.Whh.shape, compute)
    dbh = np.zeros(args.H, compute)
    dWhy = np.zeros(args.Why.shape, compute)
    dby = np.zeros(args.O, compute)
    kernel = _dispatch.kernel("rnn", "rnn_backward", backend, _AUTO_ORDER)
    if T and B and (I or args.H or args.O):  # else nothing to compute, however long
        threads = _dispatch.kernel_threads()

        def run(start, stop):
            # Clipped once, when the last slice has added its share.
            kernel(args.dy, args.x, args.h, args.h0, args.Wxh, args.Whh, args.Why,
                   args.dh_last, limit if stop == B else math.inf, dx, dh0, dWxh, dWhh, dbh,
                   dWhy, dby, start, stop, threads)

        _run_in_slices(run, B, 2 * args.seconds_per_sequence, backend)
    else:
        # No step: the loss does not depend on the parameters; dL/dh0 is what
        # reaches the final state directly.
        dh0[...] = args.dh_last
    if args.as_given:
        return RNNGrads(dx, dh0, dWxh, dWhh, dbh, dWhy, dby)
    deliver = args.deliver
    return RNNGrads(deliver(dx), deliver(dh0), deliver(dWxh, False), deliver(dWhh, False),
                    deliver(dbh, False), deliver(dWhy, False), deliver(dby, False))


def _run_in_slices(run, batch: int, seconds_per_sequence: float, backend: str | None) -> None:
    """``run(start, stop)`` over the batch, in slices aligned on the backend's blocks.

    A call :func:`fastcalc._slices.run_in_slices` would run whole runs
    directly, sparing that call and the look-up of the block (a microsecond,
    a tenth of the seed's tiny call).  Whole or in slices, the results are
    the same bits.
    """
    if batch * seconds_per_sequence < 2 * _slices.SLICE_SECONDS:
        run(0, batch)
    else:
        _slices.run_in_slices(run, batch, seconds_per_sequence,
                              align=_dispatch.kernel("rnn", "BLOCK_ROWS", backend, _AUTO_ORDER))


class _Arguments:
    """The validated arguments of an RNN call: contiguous, native, one dtype.

    A single sequence is held as a batch of one (``single`` remembers it), so
    the kernels see ``x`` (T, B, I), ``h0`` (B, H) and so on.  Optional
    arrays given as None become zeros.  :meth:`deliver` turns a result back
    into the caller's shape and dtype; ``as_given`` says it would leave every
    result as it is (a batch, computed in the result dtype).
    """

    def __init__(self, **named):
        if not self._take_as_given(named):
            self._convert(named)

    def _take_as_given(self, named: dict) -> bool:
        """Take the arrays as they are if the kernels can (True), else do nothing (False).

        Small sequences are dominated by the call's overhead, and most calls
        pass batched ndarrays of one float dtype, C-contiguous, of the right
        shapes: checking just that is several times faster than the general
        path, which handles everything else and raises the errors.
        """
        x, Wxh, Why = named["x"], named["Wxh"], named["Why"]
        if not (type(x) is np.ndarray and type(Wxh) is np.ndarray and type(Why) is np.ndarray
                and x.ndim == 3 and Wxh.ndim == 2 and Why.ndim == 2):
            return False
        dtype = x.dtype
        if not (dtype is _FLOAT64 or dtype is _FLOAT32):
            return False
        T, B, I = x.shape
        H, O = Wxh.shape[0], Why.shape[0]
        shapes = {"x": (T, B, I), "h0": (B, H), "Wxh": (H, I), "Whh": (H, H), "Why": (O, H),
                  "bh": (H,), "by": (O,), "dy": (T, B, O), "h": (T, B, H), "dh_last": (B, H)}
        for name, array in named.items():
            if array is not None and not (type(array) is np.ndarray and array.dtype is dtype
                                          and array.shape == shapes[name]
                                          and array.flags.c_contiguous):
                return False
        self._sizes(x.shape, T, B, I, H, O, dtype)
        for name, array in named.items():
            setattr(self, name, np.zeros(shapes[name], dtype) if array is None else array)
        self.compute = self.result_dtype = dtype
        self.single = False
        self.as_given = True
        return True

    def _convert(self, named: dict) -> None:
        for name, value in named.items():
            if value is None and name not in _OPTIONAL:
                raise TypeError(f"{name} must be an array, got None")
        arrays = {name: _validate.as_array(value, name) for name, value in named.items()
                  if value is not None}
        self.compute, self.result_dtype = _validate.common_dtype(arrays, "RNNs")

        x = arrays["x"]
        if x.ndim not in (2, 3):
            raise ValueError(f"x must have shape (T, B, I) or (T, I), got {x.shape}")
        self.single = single = x.ndim == 2
        self.as_given = not single and self.compute == self.result_dtype
        T, I = x.shape[0], x.shape[-1]
        B = 1 if single else x.shape[1]
        Wxh, Whh, Why = arrays["Wxh"], arrays["Whh"], arrays["Why"]
        if Wxh.ndim != 2 or Wxh.shape[1] != I:
            raise ValueError(f"Wxh must have shape (H, I) with I = {I} for x {x.shape}, "
                             f"got {Wxh.shape}")
        H = Wxh.shape[0]
        if Whh.shape != (H, H):
            raise ValueError(f"Whh must have shape (H, H) = {(H, H)} for Wxh {Wxh.shape}, "
                             f"got {Whh.shape}")
        if Why.ndim != 2 or Why.shape[1] != H:
            raise ValueError(f"Why must have shape (O, H) with H = {H} for Wxh {Wxh.shape}, "
                             f"got {Why.shape}")
        O = Why.shape[0]
        self._sizes(x.shape, T, B, I, H, O, self.compute)

        # name: (the shape the caller must give, the shape the kernels see)
        state = (B, H)
        shapes = {"x": (x.shape, (T, B, I)), "Wxh": (Wxh.shape,) * 2, "Whh": (Whh.shape,) * 2,
                  "Why": (Why.shape,) * 2, "bh": ((H,),) * 2, "by": ((O,),) * 2,
                  "h0": (state[single:], state), "dh_last": (state[single:], state),
                  "h": ((T, *state[single:]), (T, B, H)),
                  "dy": ((T, B, O)[:: 2 if single else 1], (T, B, O))}
        compute = self.compute
        for name, value in named.items():
            given, kernel_shape = shapes[name]
            if value is None:
                setattr(self, name, np.zeros(kernel_shape, compute))
                continue
            array = arrays[name]
            if array.shape != given:
                raise ValueError(f"{name} must have shape {given} for x {x.shape}, "
                                 f"Wxh {Wxh.shape} and Why {Why.shape}, got {array.shape}")
            array = np.ascontiguousarray(array, dtype=compute)
            setattr(self, name, array.reshape(kernel_shape) if single else array)

    def _sizes(self, x_shape, T, B, I, H, O, dtype) -> None:  # noqa: E741 (the RNN's names)
        """Keep H, O and a sequence's time estimate; results numpy cannot allocate raise.

        Empty arrays (I = 0 or T = 0, say) may have huge other dimensions,
        whose results (h, y, dx: T * B * (H + O + I); h0, dh0: B * H) would
        not fit in memory: a ValueError naming the shapes, before anything is
        allocated.  The
        kernels' own buffers are bounded by these results and the weights.
        """
        self.H, self.O = H, O
        width = I + H + O
        if (T + 1) * B * width * dtype.itemsize > _validate.MEMORY_BYTES:
            raise ValueError(f"x {x_shape} with H = {H} (Wxh) and O = {O} (Why) gives results of "
                             f"({T} + 1) * {B} * ({I} + {H} + {O}) elements, more than this "
                             f"machine's memory ({_validate.MEMORY_BYTES} bytes)")
        self.seconds_per_sequence = (T * (H * width + _STEP_MULTIPLY_ADDS)
                                     * _SECONDS_PER_MULTIPLY_ADD)

    def deliver(self, result: np.ndarray, batched: bool = True) -> np.ndarray:
        """``result`` as the caller gets it, in the result dtype.

        A ``batched`` result (its batch axis second to last) of a single
        sequence drops that axis.
        """
        if batched and self.single:
            result = result.reshape(result.shape[:-2] + result.shape[-1:])
        return result if result.dtype == self.result_dtype else result.astype(self.result_dtype)
