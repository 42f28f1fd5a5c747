"""``fastcalc warmup``: compile every Numba kernel now, and cache it on disk.

A Numba kernel compiles on its first call in a process, per dtype, unless
its compiled code is already in Numba's on-disk cache; then the first call
only loads it.  For deployments that want no first-call latency (a web
worker, a batch job started per file), ``fastcalc warmup`` runs once after
installation: every kernel, through the public functions with
``backend="numba"`` (so the cached signatures are the ones real calls use),
for float32 and float64, serial and multi-threaded variants.  Run again, it
shows the warm times: each line is then a load from the cache.

The cache lives where Numba puts it: next to the installed modules when
their directory is writable, else in the user's cache directory, or in
``NUMBA_CACHE_DIR`` when that is set.  When none is writable, warmup
compiles nothing, says it cached nothing and fails (exit status 1).

Not warmed: ``gradient_descent``'s kernels, compiled around each user's
``grad`` (and never cached, see :mod:`fastcalc._numba.optim`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

import numpy as np

DTYPES = ("float32", "float64")


def _calls(dtype: str) -> list[tuple[str, Callable[[], object]]]:
    """(name, call) per kernel family: each call runs every Numba kernel of it for ``dtype``."""
    import fastcalc
    from fastcalc._numba import activations, convolution

    numba = {"backend": "numba"}
    rng = np.random.default_rng(0)

    def normal(*shape):
        return rng.standard_normal(shape).astype(dtype)

    # Large enough for the multi-threaded variants, small enough to run in no time.
    small, large = normal(64), normal(activations.PARALLEL_MIN_SIZE)
    image, big_image, kernel = normal(8, 8), normal(128, 128), normal(5, 5)
    assert big_image.size * kernel.size >= convolution.PARALLEL_MIN_WORK
    x, weight, bias = normal(2, 3, 12, 12), normal(4, 3, 3, 3), normal(4)
    big_x = normal(4, 3, 64, 64)
    steps, batch, inputs, hidden, outputs = 3, 2, 4, 5, 3
    rnn = dict(x=normal(steps, batch, inputs), h0=normal(batch, hidden),
               Wxh=normal(hidden, inputs), Whh=normal(hidden, hidden), Why=normal(outputs, hidden))
    X1, X2 = normal(16, 3), normal(2, 16, 3)
    y1, y2 = (X1[:, 0] > 0).astype(dtype), (X2[..., 0] > 0).astype(dtype)

    def activation_calls():
        for values in (small, large):
            fastcalc.sigmoid(values, **numba)
            fastcalc.sigmoid_derivative(values, **numba)
            fastcalc.sigmoid_derivative(fastcalc.sigmoid(values), from_output=True, **numba)

    def convolution_calls():
        for picture in (image, big_image):
            fastcalc.correlate2d(picture, kernel, **numba)
            fastcalc.convolve2d(picture, kernel, mode="same", boundary="wrap", **numba)

    def conv2d_calls():
        for batch in (x, big_x):
            out = fastcalc.conv2d(batch, weight, bias, padding=1, **numba)
            fastcalc.conv2d_backward(out, batch, weight, padding=1, **numba)

    def rnn_calls():
        h, y = fastcalc.rnn_forward(**rnn, **numba)
        fastcalc.rnn_backward(y, rnn["x"], h, rnn["h0"], rnn["Wxh"], rnn["Whh"], rnn["Why"],
                              clip=1.0, **numba)

    def fit_calls():
        for X, y in ((X1, y1), (X2, y2)):  # one problem (serial), two (threads)
            for batch_size in (None, 4):
                fastcalc.fit_logistic(X, y, n_iter=2, batch_size=batch_size, seed=0, **numba)

    return [("sigmoid, sigmoid_derivative", activation_calls),
            ("correlate2d, convolve2d", convolution_calls),
            ("conv2d, conv2d_backward", conv2d_calls),
            ("rnn_forward, rnn_backward", rnn_calls),
            ("fit_logistic, fit_linear", fit_calls)]


def warmup(dtypes=DTYPES, stream: TextIO | None = None) -> dict[tuple[str, str], float]:
    """Compile (or load from Numba's cache) every Numba kernel for ``dtypes``.

    Returns the seconds each kernel family took per dtype, and prints them to
    ``stream`` when given.

    Raises
    ------
    RuntimeError
        The numba backend is not available here (the message says why), or
        Numba has no writable cache directory (nothing would be cached).
    """
    from fastcalc import _dispatch

    _dispatch.kernel("activations", "sigmoid", "numba", ())  # raises if Numba is missing
    from fastcalc import _numba

    if not _numba.DISK_CACHE:
        raise RuntimeError(
            "cached nothing: Numba finds no writable cache directory (the installed package, "
            "the user's cache directory and NUMBA_CACHE_DIR are not writable); set "
            "NUMBA_CACHE_DIR to a writable directory and run fastcalc warmup again")
    seconds = {}
    for dtype in dtypes:
        for name, call in _calls(dtype):
            start = time.perf_counter()
            call()
            seconds[name, dtype] = time.perf_counter() - start
            if stream is not None:
                print(f"{name:<30} {dtype:<8} {seconds[name, dtype]:6.2f} s", file=stream,
                      flush=True)
    return seconds
