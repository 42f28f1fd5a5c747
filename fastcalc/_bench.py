"""The engine behind ``fastcalc bench``: time every kernel on every backend and peer.

A kernel family contributes *cases*: one callable per (kernel, dtype, size,
implementation).  Every case of one row group (same kernel, dtype and size)
is timed in the same run, so the ratios between them are what the machine
did side by side.  Times are medians over repetitions, with the
interquartile range of the repetitions as their spread; each repetition runs
the case enough times to last at least ``min_time`` seconds.
"""

from __future__ import annotations

import contextlib
import functools
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TypeVar

import numpy as np

from fastcalc import _dispatch

__all__ = ["NOISY_IQR", "RNN_SIZES", "WIDTH", "Case", "Reduced", "Result", "activation_cases",
           "competing_processes", "contention_cases", "conv2d_cases", "convolution_cases",
           "descent_cases", "fill_ratios", "fit_cases", "format_contention", "format_summary",
           "format_table", "format_time", "peak_gflop_per_s", "plot_speedups", "rnn_cases", "run",
           "thread_count"]

REFERENCE = "fastcalc numpy"  # the implementation speed-ups are measured against
AUTO = "fastcalc auto"  # what a plain call runs: the summary compares it with the fastest peer
COPY = "memory copy"  # the same bytes copied on the same threads: an elementwise kernel's limit
# numpy's exp of the same array, written and allocating: what one exponential costs, the
# floor of a small sigmoid call.  Like the copy, a yardstick, not a peer.
EXP, EXP_ALLOCATING = "numpy exp(x)", "numpy exp(x), allocating"
YARDSTICKS = (COPY, EXP, EXP_ALLOCATING)
# A result whose interquartile range is more than this share of its median is flagged as
# noisy: on an idle machine repetitions agree within a few percent, so a wider spread means
# the machine was busy during some of them (pytest-benchmark reports the same IQR).
NOISY_IQR = 0.10
WIDTH = 120  # the longest line the tables and summaries print
REDUCED_SHARE = 16  # a reduced case does about 1/16 of the work of the full one
# Seconds an implementation runs untimed before its repetitions (see run): other
# pools poll that long after a call (OpenBLAS 0.1 s; fastcalc's threads ~10 us).
SETTLE_SECONDS = 0.1


@dataclass
class Reduced:
    """A share of a case's work, along a dimension its time is linear in.

    Its time multiplied by ``scale`` stands for the full call's: :func:`run`
    times it instead of a call that would be slow.
    """

    function: Callable[[], object]
    scale: float  # the full work over this share of it
    note: str  # what the table says of the row, e.g. "31 of 500 steps, scaled"


@dataclass
class Case:
    """One timed call: ``function()`` computes ``kernel`` for one group."""

    kernel: str
    dtype: str
    size: int
    implementation: str
    function: Callable[[], object]
    bytes_moved: int  # bytes read + written by one call
    note: str = ""
    flops: int = 0  # floating-point operations of one call (0: report GB/s instead)
    shape: str = ""  # the problem's size where ``kernel`` does not say it, e.g. "N=1,000"
    threads: int | None = None  # the thread count to time it on (None: the current setting)
    reduced: Reduced | None = None  # a share of the work, timed instead when the call is slow

    @property
    def heading(self) -> str:
        """The group's name in tables: kernel, problem size where needed, and dtype."""
        return _heading(self)


@dataclass
class Result:
    kernel: str
    dtype: str
    size: int
    implementation: str
    median_s: float
    repetitions: int
    calls_per_repetition: int
    bytes_moved: int
    note: str = ""
    flops: int = 0
    speedup_vs_reference: float | None = None
    copy_ratio: float | None = None
    shape: str = ""
    iqr_s: float = 0.0  # interquartile range of the repetitions' times per call
    scale: float = 1.0  # > 1: timed on 1/scale of the work (see Reduced), times multiplied
    threads: int | None = None

    @property
    def noisy(self) -> bool:
        """Whether the repetitions spread by more than ``NOISY_IQR`` of the median."""
        return self.iqr_s > NOISY_IQR * self.median_s

    @property
    def heading(self) -> str:
        """The group's name in tables: kernel, problem size where needed, and dtype."""
        return _heading(self)

    @property
    def gb_per_s(self) -> float:
        return self.bytes_moved / self.median_s / 1e9 if self.median_s > 0 else float("inf")

    @property
    def gflop_per_s(self) -> float:
        return self.flops / self.median_s / 1e9 if self.median_s > 0 else float("inf")

    def throughput(self) -> str:
        if not self.flops:
            return f"{self.gb_per_s:.1f} GB/s"
        return f"{self.gflop_per_s:.1f} GFLOP/s"

    def share_of_peak(self) -> str:
        """GFLOP/s as a share of the measured peak ("" for GB/s, or without the probe)."""
        peak = peak_gflop_per_s(self.dtype) if self.flops else None
        return f"{self.gflop_per_s / peak:.0%}" if peak else ""


def _heading(item: Case | Result) -> str:
    return f"{' '.join(filter(None, (item.kernel, item.shape)))}, {item.dtype}"


def peak_gflop_per_s(dtype: str) -> float | None:
    """This machine's measured peak on ``set_num_threads``'s count of threads, in GFLOP/s.

    Measured once per dtype and thread count by the compiled FMA probe
    (``fma_probe`` of the Cython convolution module, one call per thread, all
    at once, the GIL released): a formula from the CPU's
    features would have to know the width and number of its FMA units (Zen 4
    runs AVX-512 at the rate of AVX2) and its boost clock.  None without the
    Cython extensions.
    """
    return _measured_peak(np.dtype(dtype).itemsize, _dispatch.thread_setting())


@functools.cache
def _measured_peak(itemsize: int, threads: int, seconds: float = 0.05) -> float | None:
    """Best of three runs of the FMA probe on ``threads`` threads at once."""
    try:
        probe = _dispatch._module("cython", "convolution").fma_probe
    except RuntimeError:
        return None
    iterations = 1 << 12
    while True:  # calibrate one thread's run to about seconds / 3
        start = time.perf_counter()
        probe(itemsize, iterations)
        if time.perf_counter() - start >= seconds / 3:
            break
        iterations *= 2
    return max(_probe_on_threads(probe, itemsize, iterations, threads) for _ in range(3))


def _probe_on_threads(probe, itemsize: int, iterations: int, threads: int) -> float:
    """GFLOP/s of ``threads`` probe calls started at once (each releases the GIL)."""
    import threading

    barrier = threading.Barrier(threads + 1)
    flops = [0] * threads

    def work(index):
        barrier.wait()
        flops[index] = probe(itemsize, iterations)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    start = time.perf_counter()
    for worker in workers:
        worker.join()
    return sum(flops) / (time.perf_counter() - start) / 1e9


def _peer_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _peer_expit():
    try:
        from scipy.special import expit
    except ImportError:
        return None
    return expit


def activation_cases(
    sizes: Iterable[int], dtypes: Iterable[str], kernels: Iterable[str], seed: int = 0
) -> list[Case]:
    """Cases for sigmoid and sigmoid_derivative on every backend and peer.

    Every implementation writes into a preallocated output where it can
    (``out=``), so the table measures the kernels, not the operating
    system's page faults on fresh memory; numpy's naive formula is timed as
    written, allocating its temporaries.  ``fastcalc auto`` and
    ``torch.sigmoid`` are also timed allocating their result, as a plain
    ``sigmoid(x)`` call does.
    """
    rng = np.random.default_rng(seed)
    cases = []
    for dtype in dtypes:
        for size in sizes:
            x = rng.standard_normal(size).astype(dtype) * 4
            for kernel in kernels:
                cases += _activation_group(kernel, x)
    return cases


def _activation_group(kernel: str, x: np.ndarray) -> list[Case]:
    import fastcalc

    torch, expit = _peer_torch(), _peer_expit()
    public = getattr(fastcalc, kernel)
    out = np.empty_like(x)
    implementations = {
        f"fastcalc {backend}": (lambda b=backend: public(x, out, backend=b), "")
        for backend in fastcalc.available_backends()
    }
    implementations["fastcalc auto, allocating"] = (lambda: public(x), "allocates")
    implementations[COPY] = (lambda: _threaded_copy(out, x), "")
    implementations[EXP] = (lambda: np.exp(x, out=out), "")
    implementations[EXP_ALLOCATING] = (lambda: np.exp(x), "allocates")
    if kernel == "sigmoid":
        implementations["numpy 1/(1+exp(-x))"] = (lambda: 1 / (1 + np.exp(-x)), "allocates")
        if expit is not None:
            implementations["scipy.special.expit"] = (lambda: expit(x, out=out), "")
    else:
        implementations["numpy s*(1-s)"] = (lambda: _naive_derivative(x), "allocates")
    if torch is not None:
        tx, tout = torch.from_numpy(x), torch.from_numpy(out)
        implementations["torch.sigmoid"] = (lambda: torch.sigmoid(tx, out=tout), "")
        implementations["torch.sigmoid, allocating"] = (lambda: torch.sigmoid(tx), "allocates")
    return [
        Case(kernel, str(x.dtype), x.size, name, function, 2 * x.nbytes, note,
             shape=f"N={x.size:,}")
        for name, (function, note) in implementations.items()
    ]


def convolution_cases(
    sizes: Iterable[int], dtypes: Iterable[str], kernel_sizes: Iterable[int] = (3, 5, 11),
    modes: Iterable[str] = ("same",), seed: int = 0,
) -> list[Case]:
    """Cases for correlate2d on an N x N image with k x k kernels, and its peers.

    Peers: scipy.signal.correlate2d, scipy.ndimage.correlate (mode "same"
    only: it has no other extent), scipy.signal.fftconvolve, OpenCV's
    filter2D ("same" only) and torch.nn.functional.conv2d (3x3 only), each
    when installed.  GFLOP/s counts 2 * kh * kw * Ho * Wo for every method.
    """
    rng = np.random.default_rng(seed)
    cases = []
    for dtype in dtypes:
        for size in sizes:
            image = rng.standard_normal((size, size)).astype(dtype)
            for k in kernel_sizes:
                kernel = rng.standard_normal((k, k)).astype(dtype)
                for mode in modes:
                    cases += _convolution_group(image, kernel, mode)
    return cases


def _convolution_group(image: np.ndarray, kernel: np.ndarray, mode: str) -> list[Case]:
    import fastcalc

    k = kernel.shape[0]
    size = image.shape[0]
    side = size if mode == "same" else size - k + 1
    name = f"correlate2d {k}x{k} {mode}"
    implementations = {
        f"fastcalc {backend}": (
            lambda b=backend: fastcalc.correlate2d(image, kernel, mode, backend=b), "")
        for backend in fastcalc.available_backends()
    }
    try:
        import scipy.ndimage
        import scipy.signal
    except ImportError:
        pass
    else:
        if size <= 512 or k <= 3:  # scipy's direct loop takes minutes on large problems
            implementations["scipy.signal.correlate2d"] = (
                lambda: scipy.signal.correlate2d(image, kernel, mode), "float64 result")
        if mode == "same":
            implementations["scipy.ndimage.correlate"] = (
                lambda: scipy.ndimage.correlate(image, kernel, mode="constant"), "")
        implementations["scipy.signal.fftconvolve"] = (
            lambda: scipy.signal.fftconvolve(image, kernel[::-1, ::-1], mode), "")
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None and mode == "same":
        # filter2D correlates; BORDER_CONSTANT pads with zeros like boundary="fill".
        # Its anchor centres even kernels differently; sizes here are odd.
        implementations["cv2.filter2D"] = (
            lambda: cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_CONSTANT), "")
    torch = _peer_torch()
    # torch's single-channel conv2d unfolds kh * kw copies of the image (gigabytes
    # at 11x11 on 2048x2048): the page faults slow down every row timed after it.
    if torch is not None and k <= 3:
        timage = torch.from_numpy(image)[None, None]
        tkernel = torch.from_numpy(np.ascontiguousarray(kernel))[None, None]
        padding = k // 2 if mode == "same" else 0
        implementations["torch conv2d"] = (
            lambda: torch.nn.functional.conv2d(timage, tkernel, padding=padding), "")
    moved = image.nbytes + side * side * image.itemsize
    flops = 2 * k * k * side * side
    return [
        Case(name, str(image.dtype), size, implementation, function, moved, note, flops,
             shape=f"on {size}x{size}")
        for implementation, (function, note) in implementations.items()
    ]


def conv2d_cases(
    batch: int = 32, channels: int = 16, size: int = 64, filters: int = 32, kernel_size: int = 3,
    dtypes: Iterable[str] = ("float32",), seed: int = 0,
) -> list[Case]:
    """Cases for the CNN layer (stride 1, "same" padding): forward, and forward + backward.

    Peers: torch.nn.functional.conv2d, forward under ``no_grad`` and forward +
    ``backward`` through autograd, when torch is installed.  A forward pass
    counts 2 * N * F * C * kh * kw * Ho * Wo FLOPs; forward + backward three
    times that (the input and weight gradients cost one forward each).
    """
    import fastcalc

    rng = np.random.default_rng(seed)
    padding = kernel_size // 2
    torch = _peer_torch()
    cases = []
    for dtype in dtypes:
        x = rng.standard_normal((batch, channels, size, size)).astype(dtype)
        weight = rng.standard_normal((filters, channels, kernel_size, kernel_size)).astype(dtype)
        bias = rng.standard_normal(filters).astype(dtype)
        out_size = size + 2 * padding - kernel_size + 1
        grad_out = rng.standard_normal((batch, filters, out_size, out_size)).astype(dtype)
        shape = f"x{x.shape} w{weight.shape}".replace(" ", "")
        forward = {f"fastcalc {backend}": functools.partial(
            fastcalc.conv2d, x, weight, bias, 1, padding, backend=backend)
            for backend in fastcalc.available_backends()}
        both = {f"fastcalc {backend}": functools.partial(
            _conv2d_forward_backward, x, weight, bias, grad_out, padding, backend)
            for backend in fastcalc.available_backends()}
        if torch is not None:
            forward["torch conv2d"], both["torch conv2d"] = _torch_conv2d(
                torch, x, weight, bias, grad_out, padding)
        flops = 2 * batch * filters * channels * kernel_size**2 * out_size**2
        moved = x.nbytes + weight.nbytes + grad_out.nbytes
        for kernel, implementations, factor in (("conv2d forward", forward, 1),
                                                ("conv2d forward+backward", both, 3)):
            cases += [Case(f"{kernel} {shape}", dtype, batch, name, function, moved * factor,
                           "", flops * factor)
                      for name, function in implementations.items()]
    return cases


def _conv2d_forward_backward(x, weight, bias, grad_out, padding, backend):
    import fastcalc

    fastcalc.conv2d(x, weight, bias, 1, padding, backend=backend)
    return fastcalc.conv2d_backward(grad_out, x, weight, 1, padding, backend=backend)


def _torch_conv2d(torch, x, weight, bias, grad_out, padding):
    """torch's forward (no autograd) and forward + backward, as two callables."""
    conv2d = torch.nn.functional.conv2d
    tx, tweight, tbias = (torch.from_numpy(a) for a in (x, weight, bias))
    leaves = [tensor.clone().requires_grad_() for tensor in (tx, tweight, tbias)]
    tgrad = torch.from_numpy(grad_out)

    def forward():
        with torch.no_grad():
            return conv2d(tx, tweight, tbias, padding=padding)

    def forward_backward():
        for leaf in leaves:
            leaf.grad = None
        conv2d(*leaves, padding=padding).backward(tgrad)

    return forward, forward_backward


# (T, B, I, H, O): a training-sized batch, and the seed's slide-11 network.
RNN_SIZES = ((100, 32, 64, 128, 64), (4, 1, 2, 3, 2))


def rnn_cases(
    sizes: Iterable[tuple[int, int, int, int, int]] = RNN_SIZES,
    dtypes: Iterable[str] = ("float32", "float64"), seed: int = 0,
) -> list[Case]:
    """Cases for the Elman RNN: forward, and forward + backward through time.

    Peers: ``torch.nn.RNN`` (tanh) + ``nn.Linear`` with the same weights,
    forward under ``no_grad`` and forward + ``backward`` through autograd,
    when torch is installed.  A forward pass counts 2 * T * B * H * (I + H +
    O) FLOPs (its three matrix products); forward + backward three times
    that (the backward pass has twice the forward's products).
    """
    import fastcalc

    rng = np.random.default_rng(seed)
    torch = _peer_torch()
    cases = []
    for T, B, I, H, O in sizes:  # noqa: E741 (the RNN's dimension names)
        for dtype in dtypes:
            def normal(*shape, scale=1.0, dtype=dtype):
                return (rng.standard_normal(shape) * scale).astype(dtype)

            weights = (normal(H, I, scale=I**-0.5), normal(H, H, scale=H**-0.5),
                       normal(O, H, scale=H**-0.5), normal(H), normal(O))
            x, h0, dy = normal(T, B, I), normal(B, H), normal(T, B, O)
            forward = {f"fastcalc {backend}": functools.partial(
                fastcalc.rnn_forward, x, h0, *weights, backend=backend)
                for backend in fastcalc.available_backends()}
            both = {f"fastcalc {backend}": functools.partial(
                _rnn_forward_backward, x, h0, weights, dy, backend)
                for backend in fastcalc.available_backends()}
            if torch is not None:
                forward["torch RNN+Linear"], both["torch RNN+Linear"] = _torch_rnn(
                    torch, x, h0, weights, dy)
            flops = 2 * T * B * H * (I + H + O)
            moved = x.nbytes + dy.nbytes + T * B * H * x.itemsize + sum(w.nbytes for w in weights)
            shape = f"(T,B,I,H,O)=({T},{B},{I},{H},{O})"
            for kernel, implementations, factor in (("rnn forward", forward, 1),
                                                    ("rnn forward+backward", both, 3)):
                cases += [Case(f"{kernel} {shape}", dtype, T * B, name, function,
                               moved * factor, "", flops * factor)
                          for name, function in implementations.items()]
    return cases


def _rnn_forward_backward(x, h0, weights, dy, backend):
    import fastcalc

    Wxh, Whh, Why, bh, by = weights
    h, _ = fastcalc.rnn_forward(x, h0, Wxh, Whh, Why, bh, by, backend=backend)
    return fastcalc.rnn_backward(dy, x, h, h0, Wxh, Whh, Why, backend=backend)


def _torch_rnn(torch, x, h0, weights, dy):
    """torch's forward (no autograd) and forward + backward, as two callables."""
    T, B, I = x.shape  # noqa: E741
    Wxh, Whh, Why, bh, by = (torch.from_numpy(w) for w in weights)
    dtype = Wxh.dtype
    rnn = torch.nn.RNN(I, Whh.shape[0], nonlinearity="tanh", dtype=dtype)
    linear = torch.nn.Linear(*Why.shape[::-1], dtype=dtype)
    with torch.no_grad():
        for parameter, value in ((rnn.weight_ih_l0, Wxh), (rnn.weight_hh_l0, Whh),
                                 (rnn.bias_ih_l0, bh), (rnn.bias_hh_l0, 0 * bh),
                                 (linear.weight, Why), (linear.bias, by)):
            parameter.copy_(value)
    tx, th0, tdy = torch.from_numpy(x), torch.from_numpy(h0)[None], torch.from_numpy(dy)
    leaves = [tensor.clone().requires_grad_() for tensor in (tx, th0)]
    parameters = [*rnn.parameters(), *linear.parameters()]

    def forward():
        with torch.no_grad():
            return linear(rnn(tx, th0)[0])

    def forward_backward():
        for tensor in (*leaves, *parameters):
            tensor.grad = None
        linear(rnn(*leaves)[0]).backward(tdy)

    return forward, forward_backward


def _peer_jax():
    """jax with float64 enabled (a process-wide setting), or None if not installed."""
    try:
        import jax
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    return jax


def _quadratic_gradient(x):
    return 2 * x + 5


def descent_cases(problems: int = 10**6, n_iter: int = 100, dtypes: Iterable[str] = ("float64",),
                  seed: int = 0) -> list[Case]:
    """Cases for gradient descent on independent scalar quadratics (the seed's slide 3).

    ``problems`` starting points of f(x) = x**2 + 5x + 6, ``n_iter`` steps
    of lr = 0.1.  Peer: JAX, ``jit`` of a ``fori_loop`` over the whole batch,
    when installed.  A step counts 4 FLOPs per problem.  "fastcalc auto"
    comes after "fastcalc numba", whose first call compiles the grad: auto
    then runs it on Numba (its steady state; its first calls of a new grad
    run on numpy until compiling pays, see :func:`fastcalc.gradient_descent`).
    """
    import fastcalc

    rng = np.random.default_rng(seed)
    jax = _peer_jax()
    cases = []
    for dtype in dtypes:
        x0 = (rng.standard_normal(problems) * 10).astype(dtype)
        implementations = {
            f"fastcalc {backend}": functools.partial(
                fastcalc.gradient_descent, _quadratic_gradient, x0, 0.1, n_iter, backend=backend)
            for backend in fastcalc.available_backends() if backend != "cython"
        }
        if jax is not None:
            implementations["JAX jit fori_loop"] = _jax_descent(jax, x0, n_iter)
        cases += [Case(f"gradient_descent {problems:,} quadratics x {n_iter} steps", dtype,
                       problems, name, function, 2 * x0.nbytes, "", 4 * problems * n_iter)
                  for name, function in implementations.items()]
    return cases


def _jax_descent(jax, x0, n_iter):
    jnp = jax.numpy
    run = jax.jit(lambda x: jax.lax.fori_loop(0, n_iter, lambda i, x: x - 0.1 * (2 * x + 5), x))
    x = jnp.asarray(x0)
    return lambda: run(x).block_until_ready()


FIT_SIZE = (1000, 256, 8, 500)  # problems, samples, features, steps


def fit_cases(size: tuple[int, int, int, int] = FIT_SIZE,
              dtypes: Iterable[str] = ("float32", "float64"),
              batch_sizes: Iterable[int | None] = (None, 32), seed: int = 0) -> list[Case]:
    """Cases for P independent logistic regressions (the seed's slide-4 neuron, batched).

    ``size`` = (P, N, D, steps): P problems of N samples x D features,
    trained by full-batch gradient descent or mini-batch SGD for ``steps``
    steps (log loss, mean, lr = 0.1).  Peers, when installed: JAX (``vmap``
    of a ``jit``-ed ``fori_loop``) and torch (the P problems as batched
    matrix products, ``bmm``, with hand-written gradients), both given the
    same mini-batch order.  A full-batch step counts 4 N D FLOPs per problem
    (the forward and gradient products).

    The numpy reference and torch run every step in Python, so their time is
    linear in the steps, every step working on the same arrays: each case of
    theirs carries a :class:`Reduced` share of the steps (about 1/16), which
    :func:`run` times instead of a slow call.  A share of the problems would
    not do: their smaller arrays would fit in the caches, and each problem
    would take less time than in the full call.
    """
    import fastcalc
    from fastcalc.optim import _minibatch_order

    P, N, D, steps = size
    rng = np.random.default_rng(seed)
    jax, torch = _peer_jax(), _peer_torch()
    X64 = rng.standard_normal((P, N, D))
    y64 = (X64[..., 0] + rng.standard_normal((P, N)) > 0).astype(np.float64)
    cases = []
    for batch_size in batch_sizes:
        batch = N if batch_size is None else min(batch_size, N)
        per_epoch = -(-N // batch)
        order = _minibatch_order(N, batch, steps, seed)  # what fit_logistic(seed=seed) draws
        rows = [order[t // per_epoch, t % per_epoch * batch:(t % per_epoch + 1) * batch]
                for t in range(steps)] if batch_size is not None else None
        for dtype in dtypes:
            X, y = X64.astype(dtype), y64.astype(dtype)
            implementations = {
                f"fastcalc {backend}": _fastcalc_fit(X, y, steps, batch_size, seed, backend)
                for backend in fastcalc.available_backends()
            }
            part = max(1, steps // REDUCED_SHARE)
            shares = {REFERENCE: _fastcalc_fit(X, y, part, batch_size, seed, "numpy")}
            if jax is not None and (rows is None or N % batch == 0):
                implementations["JAX vmap+jit"] = _jax_fit(jax, X, y, steps, rows)
            if torch is not None:
                implementations["torch bmm"] = _torch_fit(torch, X, y, steps, rows)
                shares["torch bmm"] = _torch_fit(torch, X, y, part,
                                                 None if rows is None else rows[:part])
            mode = "full batch" if batch_size is None else f"batches of {batch}"
            cases += [Case(f"fit_logistic {P}x({N}x{D}) x {steps} steps, {mode}", dtype, P,
                           name, function, X.nbytes + y.nbytes, "", 4 * P * batch * D * steps,
                           reduced=_share(shares.get(name), part, steps, "steps"))
                      for name, function in implementations.items()]
    return cases


def _fastcalc_fit(X, y, steps, batch_size, seed, backend):
    import fastcalc

    return functools.partial(fastcalc.fit_logistic, X, y, lr=0.1, n_iter=steps,
                             batch_size=batch_size, seed=seed, backend=backend)


def _share(function: Callable[[], object] | None, part: int, whole: int,
           unit: str) -> Reduced | None:
    """``function`` computing ``part`` of ``whole`` units as a :class:`Reduced`, if it is less."""
    if function is None or part >= whole:
        return None
    return Reduced(function, whole / part, f"{part:,} of {whole:,} {unit}, scaled")


def _jax_fit(jax, X, y, steps, rows):
    """JAX: one problem's descent in a fori_loop, vmap-ed over the problems, jit-ed."""
    jnp = jax.numpy
    batches = None if rows is None else jnp.asarray(np.stack(rows))

    def fit_one(X, y):
        def step(t, state):
            w, b = state
            Xb, yb = (X, y) if batches is None else (X[batches[t]], y[batches[t]])
            r = (jax.nn.sigmoid(Xb @ w + b) - yb) / Xb.shape[0]
            return w - 0.1 * (Xb.T @ r), b - 0.1 * r.sum()

        zero = jnp.zeros((), X.dtype)
        return jax.lax.fori_loop(0, steps, step, (jnp.zeros(X.shape[1], X.dtype), zero))

    run = jax.jit(jax.vmap(fit_one))
    Xj, yj = jnp.asarray(X), jnp.asarray(y)
    return lambda: jax.block_until_ready(run(Xj, yj))


def _torch_fit(torch, X, y, steps, rows):
    """torch: the P problems' steps as batched products (bmm), gradients by hand."""
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    batches = None if rows is None else [torch.from_numpy(r) for r in rows]

    def run():
        P, _, D = Xt.shape
        w = torch.zeros(P, D, 1, dtype=Xt.dtype)
        b = torch.zeros(P, 1, 1, dtype=Xt.dtype)
        for t in range(steps):
            Xb, yb = (Xt, yt) if batches is None else (Xt[:, batches[t]], yt[:, batches[t]])
            r = (torch.sigmoid(torch.bmm(Xb, w) + b) - yb[..., None]) / Xb.shape[1]
            w -= 0.1 * torch.bmm(Xb.transpose(1, 2), r)
            b -= 0.1 * r.sum(dim=1, keepdim=True)
        return w, b

    return run


def _threaded_copy(out: np.ndarray, x: np.ndarray) -> None:
    """``out[...] = x`` on ``set_num_threads``'s count of threads (np.copyto uses one)."""
    threads = _dispatch.thread_setting()
    if threads == 1 or x.size < 1 << 16:
        np.copyto(out, x)
        return
    bounds = np.linspace(0, x.size, threads + 1).astype(int)
    chunks = [(out[a:b], x[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    list(_copy_pool(threads).map(lambda pair: np.copyto(*pair), chunks))


@functools.cache
def _copy_pool(threads: int):
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(threads, thread_name_prefix="fastcalc-bench-copy")


def _naive_derivative(x):
    s = 1 / (1 + np.exp(-x))
    return s * (1 - s)


def _calibrate(function: Callable[[], object], min_time: float) -> tuple[int, float]:
    """Calls per repetition (lasting at least ``min_time``), and that first repetition's time."""
    function()  # warm up: compiles Numba code, faults in pages
    calls = 1
    while True:
        elapsed = _repetition(function, calls)
        if elapsed >= min_time or calls >= 1 << 20:
            return calls, elapsed / calls
        calls *= 2 if elapsed <= 0 else max(2, min(10, int(min_time / elapsed) + 1))


def _calibrate_case(case: Case, min_time: float,
                    scale_above: float | None) -> tuple[Reduced | None, int, float]:
    """The share of ``case`` to time (None: all of it), its calls per repetition and first time.

    The share's first repetition estimates the full call: the full call is
    never made when it would take longer than ``scale_above`` seconds.
    """
    share = case.reduced
    if share is not None and scale_above is not None:
        calls, first = _calibrate(share.function, min_time)
        if first * share.scale > scale_above:
            return share, calls, first
    return None, *_calibrate(case.function, min_time)


def _repetition(function: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return time.perf_counter() - start


def _settle(function: Callable[[], object], calls: int) -> None:
    """Repetitions of ``function``, untimed, for at least ``SETTLE_SECONDS``."""
    end = time.perf_counter() + SETTLE_SECONDS
    while time.perf_counter() < end:
        _repetition(function, calls)


@contextlib.contextmanager
def thread_count(threads: int | None) -> Iterator[None]:
    """Run fastcalc's kernels, and torch's when installed, on ``threads`` threads in the block.

    Parameters
    ----------
    threads : int or None
        The count for :func:`fastcalc.set_num_threads` and
        ``torch.set_num_threads``; None leaves both as they are.  The previous
        counts are set again on leaving the block, also on an error.
    """
    if threads is None:
        yield
        return
    torch = _peer_torch()
    previous = _dispatch.thread_setting(), None if torch is None else torch.get_num_threads()
    _dispatch.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        _dispatch.set_num_threads(previous[0])
        if torch is not None:
            torch.set_num_threads(previous[1])


def run(
    cases: Sequence[Case],
    repeat: int = 5,
    min_time: float = 0.005,
    progress: Callable[[int, int, Case], None] | None = None,
    scale_above: float | None = None,
) -> list[Result]:
    """Time ``cases``: medians and spreads, then speed-ups and copy ratios per group.

    The implementations of a group (kernel, dtype and size) take turns, in
    two passes (the second in reverse order), each timing about half the
    repetitions of every implementation, so a slow phase of a shared machine
    slows them all rather than the rows timed during it, and the ratios within
    a group hold.  Before its repetitions in a pass, an implementation runs
    untimed for ``SETTLE_SECONDS``: the thread pools of the one before it
    (OpenBLAS's, PyTorch's OpenMP threads) keep polling for up to 0.1 s after
    its last call and would share the cores with it.

    Parameters
    ----------
    cases : sequence of Case
        What to time.  A case with ``threads`` set runs on that many threads
        (fastcalc's and torch's), set between repetitions, outside the timings.
    repeat : int, default 5
        Repetitions per case.  The result is their median time per call, and
        their interquartile range its spread.
    min_time : float, default 0.005
        Seconds one repetition lasts at least: it calls the case as many times
        as that takes (found by calibrating repetitions after a warm-up call,
        which are not among the ``repeat``).
    progress : callable, optional
        Called as ``progress(index, total, case)`` before a case is first timed.
    scale_above : float, optional
        Seconds.  A case with a :class:`Reduced` share whose full call would
        take longer (the share's first repetition times its scale) is timed on
        the share: its times are multiplied by the scale and its note says so.
        None (the default): every case is timed in full.

    Returns
    -------
    list of Result
        One per case, in the order of ``cases``.
    """
    import warnings

    torch = _peer_torch()
    if torch is not None:
        torch.set_num_threads(_dispatch.thread_setting())
    position = {id(case): index for index, case in enumerate(cases)}
    shares: list[Reduced | None] = [None] * len(cases)
    calls, samples = [0] * len(cases), [[] for _ in cases]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the naive peers overflow
        for group in _groups(cases).values():
            members = [position[id(case)] for case in group]
            for index in members:
                case = cases[index]
                if progress is not None:
                    progress(index, len(cases), case)
                with thread_count(case.threads):
                    shares[index], calls[index], _ = _calibrate_case(case, min_time, scale_above)
            for order, count in ((members, (repeat + 1) // 2), (members[::-1], repeat // 2)):
                for index in order if count else ():
                    case, share = cases[index], shares[index]
                    function = case.function if share is None else share.function
                    with thread_count(case.threads):
                        _settle(function, calls[index])
                        samples[index] += [_repetition(function, calls[index]) / calls[index]
                                           for _ in range(count)]
    results = [_result(case, share, case_calls, case_samples)
               for case, share, case_calls, case_samples
               in zip(cases, shares, calls, samples, strict=True)]
    fill_ratios(results)
    return results


def _result(case: Case, share: Reduced | None, calls: int, samples: list[float]) -> Result:
    """The median and interquartile range of ``samples``, scaled up for a share of the work."""
    scale = 1.0 if share is None else share.scale
    first_quartile, median, third_quartile = np.percentile(samples, [25, 50, 75]) * scale
    note = "; ".join(filter(None, (case.note, share and share.note)))
    return Result(case.kernel, case.dtype, case.size, case.implementation, float(median),
                  len(samples), calls, case.bytes_moved, note, case.flops, shape=case.shape,
                  iqr_s=float(third_quartile - first_quartile), scale=scale,
                  threads=case.threads)


_Grouped = TypeVar("_Grouped", "Case", "Result")


def _groups(items: Iterable[_Grouped]) -> dict[tuple[str, str, int], list[_Grouped]]:
    """Cases or results by group, (kernel, dtype, size), in their order."""
    groups: dict[tuple[str, str, int], list[_Grouped]] = {}
    for item in items:
        groups.setdefault((item.kernel, item.dtype, item.size), []).append(item)
    return groups


def fill_ratios(results: Sequence[Result]) -> None:
    """Set every result's speed-up over the numpy reference and its ratio to the memory copy.

    Each result is compared with the ``"fastcalc numpy"`` and ``"memory
    copy"`` results of its own case (same kernel, dtype and size).  Where
    a case has no such row, the field stays None.  :func:`run` calls this;
    :func:`format_table` and :func:`plot_speedups` show the numbers it sets.

    Parameters
    ----------
    results : sequence of Result
        Timed results; modified in place.
    """
    for group in _groups(results).values():
        by_name = {result.implementation: result for result in group}
        reference, copy = by_name.get(REFERENCE), by_name.get(COPY)
        for result in group:
            if reference is not None:
                result.speedup_vs_reference = reference.median_s / result.median_s
            if copy is not None:
                result.copy_ratio = result.median_s / copy.median_s


def format_time(seconds: float) -> str:
    """``seconds`` to three significant digits in s, ms, us or ns, as the tables print it."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _format_spread(result: Result) -> str:
    """The interquartile range as a share of the median, ``!`` after it when noisy."""
    if result.median_s <= 0:
        return ""
    return f"{result.iqr_s / result.median_s:.0%}{' !' if result.noisy else ''}"


def _is_peer(result: Result) -> bool:
    """Whether ``result`` is another library's implementation (not fastcalc's, not a yardstick)."""
    return (not result.implementation.startswith("fastcalc ")
            and result.implementation not in YARDSTICKS)


def _fastest_peer(group: Sequence[Result]) -> Result | None:
    return min((r for r in group if _is_peer(r)), key=lambda r: r.median_s, default=None)


def _layout(header: Sequence[Sequence[str]], blocks: Sequence[tuple[str, Sequence[Sequence[str]]]],
            numeric: Iterable[int]) -> list[str]:
    """Aligned text columns: header lines, then each block's heading line and its rows.

    Rows are indented under their heading; the columns in ``numeric`` are
    right-aligned, the others left-aligned; trailing spaces are dropped.
    """
    indent = "  "
    rows = [row for _, block in blocks for row in block]
    widths = [max(len(row[i]) for row in (*header, *rows)) for i in range(len(header[0]))]
    widths[0] += len(indent)
    right = set(numeric)

    def line(cells: Sequence[str], prefix: str = "") -> str:
        cells = [prefix + cells[0], *cells[1:]]
        return "  ".join(cell.rjust(width) if i in right else cell.ljust(width)
                         for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
                         ).rstrip()

    lines = [line(cells) for cells in header]
    for heading, block in blocks:
        lines += [heading, *(line(row, indent) for row in block)]
    return lines


def wrap(text: str) -> list[str]:
    """``text`` in lines of at most ``WIDTH`` characters."""
    return textwrap.wrap(text, WIDTH, break_on_hyphens=False)


def format_table(results: Sequence[Result], *, full: bool = True) -> str:
    """The results as text: one block per group, at most ``WIDTH`` characters a line.

    A group (kernel, dtype and size) is a heading line and one row per
    implementation, in the order timed: the median time per call, the
    spread of the repetitions (their interquartile range as a share of the
    median, then ``!`` when it is more than ``NOISY_IQR``: a noisy row), the
    speed-up over the numpy reference and a note (a row timed on a share of
    the work says which, and that its times were scaled up).  ``full`` adds
    the throughput (GB/s for elementwise kernels, else GFLOP/s and its share
    of the measured peak) and the time relative to a memory copy of the same
    bytes; without it, a group shows only the numpy reference, ``fastcalc
    auto`` and the fastest peer.  A key to the columns follows the table.

    Parameters
    ----------
    results : sequence of Result
        What :func:`run` returns.
    full : bool, default True
        Every row and column, or the compact table.

    Returns
    -------
    str
        The table and its key, lines separated by newlines.
    """
    header = ["implementation", "median", "IQR", "vs numpy"]
    if full:
        header += ["throughput", "peak", "/ copy"]
    header.append("note")
    blocks = []
    for group in _groups(results).values():
        shown = group if full else [
            r for r in group if r.implementation in (REFERENCE, AUTO) or r is _fastest_peer(group)]
        rows = []
        for r in shown:
            speedup = r.speedup_vs_reference
            row = [r.implementation, format_time(r.median_s), _format_spread(r),
                   "" if speedup is None else _format_speedup(speedup)]
            if full:
                row += [r.throughput(), r.share_of_peak(),
                        "" if r.copy_ratio is None else f"{r.copy_ratio:.2f}"]
            rows.append([*row, r.note])
        blocks.append((group[0].heading, rows))
    lines = _layout([header], blocks, numeric=range(1, len(header) - 1))
    repetitions = sorted({r.repetitions for r in results})
    key = (f"median: time per call, of {' or '.join(map(str, repetitions))} repetitions.  "
           "IQR: their interquartile range, as a share of the median; ! marks a noisy row, "
           f"whose IQR is above {NOISY_IQR:.0%} (rerun it, or compare only within its group).  "
           "vs numpy: speed-up over the numpy reference (fastcalc numpy).")
    if full:
        key += ("  peak: share of this machine's peak GFLOP/s, measured by an FMA probe.  "
                "/ copy: time over a memory copy of the same bytes, an elementwise kernel's "
                "limit.")
    if any(r.scale != 1 for r in results):
        key += ("  scaled: timed on the share of the work its note gives, along a dimension "
                "the time is linear in, and multiplied up to the full work.")
    return "\n".join([*lines, "", *wrap(key)])


def format_summary(results: Sequence[Result]) -> str:
    """One line per case: ``fastcalc auto`` against the fastest peer, float32 where timed.

    The peers are the implementations of other libraries (numpy, scipy,
    torch, JAX, OpenCV...), not the memory copy.  A case is a kernel at one
    size; of its dtypes the summary shows float32 when it was timed, else
    the first (and names it).  A line gives both median times (``!`` after a
    noisy one), the ratio of the peer's time to auto's (above 1: fastcalc is
    faster) and which is faster, e.g. ``sigmoid N=1,000: auto 1.94 us vs
    torch.sigmoid 1.33 us: 0.69x, peer faster``.  A line longer than
    ``WIDTH`` characters goes on over the next.

    Parameters
    ----------
    results : sequence of Result
        What :func:`run` returns.

    Returns
    -------
    str
        A title line and one line per case, separated by newlines.
    """
    chosen: dict[tuple[str, int], list[Result]] = {}
    for group in _groups(results).values():
        key = (group[0].kernel, group[0].size)
        if key not in chosen or (group[0].dtype == "float32"
                                 and chosen[key][0].dtype != "float32"):
            chosen[key] = group
    lines = wrap("Summary: fastcalc auto (auto) against the fastest peer timed, float32 unless "
                 "said; the ratio is the peer's time over auto's (above 1: fastcalc is faster); "
                 "! marks a noisy time")
    for group in chosen.values():
        auto = next((r for r in group if r.implementation == AUTO), None)
        if auto is None:
            continue
        case = " ".join(filter(None, (auto.kernel, auto.shape)))
        if auto.dtype != "float32":
            case += f" ({auto.dtype})"
        peer = _fastest_peer(group)
        if peer is None:
            line = f"{case}: auto {_marked_time(auto)}, no peer timed"
        else:
            ratio = peer.median_s / auto.median_s
            faster = "auto faster" if ratio > 1 else "peer faster" if ratio < 1 else "as fast"
            line = (f"{case}: auto {_marked_time(auto)} vs {peer.implementation} "
                    f"{_marked_time(peer)}: {ratio:.2f}x, {faster}")
        lines += textwrap.wrap(line, WIDTH, subsequent_indent="    ", break_on_hyphens=False)
    return "\n".join(lines)


def _marked_time(result: Result) -> str:
    return format_time(result.median_s) + (" !" if result.noisy else "")


def as_records(results: Sequence[Result]) -> list[dict]:
    """JSON-ready dictionaries, with GB/s, GFLOP/s and the noisy flag included."""
    return [{**asdict(r), "gb_per_s": r.gb_per_s, "gflop_per_s": r.gflop_per_s,
             "noisy": r.noisy} for r in results]


@contextlib.contextmanager
def local_cluster(workers: int = 2, threads_per_worker: int = 1, **options):
    """A ``dask.distributed`` LocalCluster of worker processes and its Client, on loopback.

    ``options`` go to ``LocalCluster`` (e.g. ``memory_limit="1.5GB"``).  The
    cluster and the client are closed on leaving the block (their start-up
    waits at most 120 s).  The nanny sets ``OMP_NUM_THREADS`` and
    other variables in this process's environment before it starts a worker
    (distributed's ``pre-spawn-environ``): the environment is set back as it
    was afterwards.
    """
    import os

    import distributed

    environment = dict(os.environ)
    try:
        with distributed.LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker,
                                      processes=True, host="127.0.0.1",
                                      dashboard_address="127.0.0.1:0", timeout=120,
                                      **options) as cluster, \
                distributed.Client(cluster, timeout=120) as client:
            yield client
    finally:
        os.environ.clear()
        os.environ.update(environment)


@contextlib.contextmanager
def competing_processes(count: int) -> Iterator[list[subprocess.Popen]]:
    """``count`` CPU-bound processes that compete for the cores while the block runs.

    Each is a Python busy loop (``while True: pass``).  On leaving the block,
    whatever happened in it (an error, Ctrl-C), each is killed and waited
    for, so none is left running nor as a zombie.

    Parameters
    ----------
    count : int
        How many to start, e.g. ``fastcalc._dispatch.usable_cores()``: one per
        core this process may use.  0 starts none.

    Yields
    ------
    list of subprocess.Popen
        The running competitors.

    Examples
    --------
    >>> from fastcalc import _bench
    >>> with _bench.competing_processes(2) as competitors:
    ...     [competitor.poll() for competitor in competitors]  # None: running
    [None, None]
    >>> [competitor.returncode is not None for competitor in competitors]  # killed, reaped
    [True, True]
    """
    competitors: list[subprocess.Popen] = []
    try:
        for _ in range(count):
            # Ctrl-C reaches the competitors too (one process group): no traceback from them.
            competitors.append(subprocess.Popen([sys.executable, "-c", "while True: pass"],
                                                stdin=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL))
        yield competitors
    finally:
        for competitor in competitors:
            competitor.kill()
        for competitor in competitors:
            competitor.wait()


def contention_cases(seed: int = 0) -> list[Case]:
    """The kernels timed beside competing processes, at the sizes of ``benchmarks/``.

    ``fastcalc auto`` (and ``fastcalc numba`` for the sigmoid) on: sigmoid of
    2**20 and 2**24 float32 elements, correlate2d of a 2048 x 2048 float32
    image with a 5 x 5 kernel ("same"), the CNN layer forward + backward
    (:func:`conv2d_cases`), the RNN forward + backward at (T, B, I, H, O) =
    (100, 32, 64, 128, 64) and fit_logistic, full batch (``FIT_SIZE``), all
    in float32; and ``torch.sigmoid`` of the 2**20 elements when torch is
    installed.  The cases leave ``threads`` unset: run them under
    :func:`thread_count`, or copy them with ``dataclasses.replace(case,
    threads=n)``.

    Parameters
    ----------
    seed : int, default 0
        Seed of the random inputs.

    Returns
    -------
    list of Case
        In the order above.
    """
    sigmoid = [case for case in activation_cases((1 << 20, 1 << 24), ("float32",), ("sigmoid",),
                                                 seed)
               if case.implementation in (AUTO, "fastcalc numba")
               or (case.implementation == "torch.sigmoid" and case.size == 1 << 20)]
    training = [case for case in (*conv2d_cases(dtypes=("float32",), seed=seed),
                                  *rnn_cases(RNN_SIZES[:1], ("float32",), seed))
                if "forward+backward" in case.kernel]
    others = [*convolution_cases((2048,), ("float32",), (5,), seed=seed), *training,
              *fit_cases(dtypes=("float32",), batch_sizes=(None,), seed=seed)]
    return sigmoid + [case for case in others if case.implementation == AUTO]


CONTENDED_RATIO = 1.5  # default threads slower than one thread by this much on busy cores: flagged


def format_contention(idle: Sequence[Result], contended: Sequence[Result]) -> str:
    """The same cases idle and contended, each on several thread counts, side by side.

    One block per group, one row per implementation: its median time per
    call and the spread (interquartile range as a share of the median, ``!``
    when noisy) on each thread count, idle then contended, and the ratio of
    the contended times on the most threads and on one thread, ``*`` when it
    is above ``CONTENDED_RATIO``: there the threads hurt.  At most ``WIDTH``
    characters a line.

    Parameters
    ----------
    idle, contended : sequence of Result
        :func:`run`'s results of the same cases, each case once per thread
        count (``Case.threads``).

    Returns
    -------
    str
        The table and its key, lines separated by newlines.
    """
    counts = sorted({r.threads for r in idle}, reverse=True)
    header = [["", *(["idle"] + [""] * (len(counts) - 1)),
               *(["contended"] + [""] * (len(counts) - 1)), "contended"],
              ["implementation", *(_thread_label(n) for n in counts * 2),
               f"{counts[0]} / {counts[-1]}"]]
    timed = {(state, r.kernel, r.dtype, r.size, r.implementation, r.threads): r
             for state, results in (("idle", idle), ("contended", contended)) for r in results}
    blocks = []
    for group in _groups(contended).values():
        rows = []
        for r in (r for r in group if r.threads == counts[0]):
            times = {(state, n): timed[state, r.kernel, r.dtype, r.size, r.implementation, n]
                     for state in ("idle", "contended") for n in counts}
            ratio = times["contended", counts[0]].median_s / times["contended", counts[-1]].median_s
            rows.append([r.implementation,
                         *(f"{format_time(result.median_s)} {_format_spread(result)}"
                           for result in times.values()),
                         f"{ratio:.2f}x{' *' if ratio > CONTENDED_RATIO else ''}"])
        blocks.append((group[0].heading, rows))
    lines = _layout(header, blocks, numeric=range(1, len(header[0])))
    key = (f"Median time per call and, after it, the interquartile range of the repetitions as "
           f"a share of the median (! above {NOISY_IQR:.0%}: noisy).  Last column: the "
           f"contended time on {_thread_label(counts[0])} over that on "
           f"{_thread_label(counts[-1])}; * above {CONTENDED_RATIO}: the threads hurt when "
           "other processes want the cores.")
    return "\n".join([*lines, "", *wrap(key)])


def _thread_label(count: int) -> str:
    return f"{count} thread{'s' if count != 1 else ''}"


# Bar colours: fastcalc's own implementations in cool colours, its peers in warm ones
# (matplotlib's tab20 and tab20b).  Past the end of a list, the colours repeat, hatched.
_FASTCALC_COLOURS = ("#1f77b4", "#17becf", "#9467bd", "#2ca02c", "#aec7e8", "#9edae5",
                     "#c5b0d5", "#98df8a", "#393b79", "#6b6ecf")
_PEER_COLOURS = ("#ff7f0e", "#d62728", "#8c564b", "#e377c2", "#bcbd22", "#ffbb78", "#ff9896",
                 "#c49c94", "#f7b6d2", "#dbdb8d", "#843c39", "#e7ba52", "#ad494a", "#d6616b",
                 "#8c6d31", "#e6550d", "#e7969c", "#bd9e39")
_HATCHES = (None, "///", "...", "xxx")
_BAR_INCHES = 0.2  # height of one bar's slot: 20 pixels at 100 dpi
_MIN_GROUP_SLOTS = 3  # a case's label takes three lines: room for them next to one or two bars


def _format_speedup(speedup: float) -> str:
    """A bar's annotation: three significant digits, whole numbers from 100x.

    >>> [_format_speedup(s) for s in (0.01234, 1.0, 12.34, 99.96, 1234.5)]
    ['0.0123x', '1x', '12.3x', '100x', '1234x']
    """
    return f"{speedup:.0f}x" if speedup >= 99.95 else f"{speedup:.3g}x"


def _case_label(kernel: str, dtype: str, size: int) -> str:
    """A case's tick label: the kernel (wrapped) above its dtype and size."""
    import textwrap

    return f"{textwrap.fill(kernel, 32)}\n{dtype}, N={size:,}"


def _colours(names: Iterable[str]) -> dict[str, tuple[str, str | None]]:
    """A (colour, hatch) per implementation, in its family's palette, by order of appearance."""
    styles: dict[str, tuple[str, str | None]] = {}
    counts = {True: 0, False: 0}
    for name in names:
        if name in styles:
            continue
        own = name.startswith("fastcalc ")
        palette = _FASTCALC_COLOURS if own else _PEER_COLOURS
        index = counts[own]
        counts[own] += 1
        hatch = _HATCHES[index // len(palette) % len(_HATCHES)]
        styles[name] = (palette[index % len(palette)], hatch)
    return styles


def plot_speedups(results: Sequence[Result], path=None, *, title: str | None = None,
                  dpi: float = 100):
    """Draw each case's speed-ups over the numpy reference as a bar chart.

    One group of horizontal bars per case (kernel, dtype and size), in the
    order the cases were timed, top to bottom; one bar per implementation,
    fastcalc's backends in blues, greens and purples, the peers in oranges,
    reds and browns, each implementation in the same colour in every group
    (see the legend).  A bar's length is the ``speedup_vs_reference`` the
    table's "vs numpy ref" column shows (set by :func:`fill_ratios`; x > 1
    is faster than ``fastcalc numpy``), annotated with its value.  The x
    axis is logarithmic and the bars start at the reference's 1x, drawn as
    a vertical line: faster implementations extend right of it, slower ones
    left.

    Not drawn: the reference itself (it is the 1x line), the memory copy
    (not an implementation of the kernel; the table's "time / copy" column
    compares with it), results without a speed-up and so every case that
    has no ``fastcalc numpy`` row.  With nothing left to draw, the figure
    says so.

    The figure is 10 inches wide (1000 pixels at the default 100 dpi) and
    0.2 inches per bar high, plus room for the title, legend and axis, so
    the labels keep their size however many cases there are.  It is built
    on :class:`matplotlib.figure.Figure`, never pyplot: no window opens and
    no GUI backend is needed.

    Parameters
    ----------
    results : sequence of Result
        What :func:`run` returns (speed-ups filled in).
    path : str or path-like, optional
        Where to write the figure; the format follows the extension (PNG
        without one).  None: only return the figure.
    title : str, optional
        The figure's title, e.g. the heading ``fastcalc bench`` prints above
        its table (the machine, thread count, versions and repetitions).
    dpi : float, default 100
        Resolution of the written file.

    Returns
    -------
    matplotlib.figure.Figure
        The chart; ``figure.axes[0]`` holds one bar container per
        implementation, labelled with its name.

    Raises
    ------
    ImportError
        Without matplotlib (``pip install "fastcalc[plot]"``).
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, NullFormatter

    cases = []  # (label, [(implementation, speed-up), ...]) of the cases drawn
    for (kernel, dtype, size), group in _groups(results).items():
        bars = [(r.implementation, r.speedup_vs_reference) for r in group
                if r.implementation not in (REFERENCE, *YARDSTICKS)
                and r.speedup_vs_reference is not None
                and np.isfinite(r.speedup_vs_reference) and r.speedup_vs_reference > 0]
        if bars and any(r.implementation == REFERENCE for r in group):
            cases.append((_case_label(kernel, dtype, size), bars))
    styles = _colours(sorted((name for _, bars in cases for name, _ in bars),
                             key=lambda name: not name.startswith("fastcalc ")))
    legend_rows = -(-(len(styles) + 1) // 3)  # + 1: the reference line's entry
    slots = sum(max(len(bars), _MIN_GROUP_SLOTS) + 1 for _, bars in cases)
    height = 1.6 + 0.22 * legend_rows + _BAR_INCHES * max(slots, 4)
    figure = Figure(figsize=(10, height), dpi=dpi, layout="constrained")
    axes = figure.add_subplot()
    figure.suptitle(title or "fastcalc bench")
    axes.axvline(1.0, color="black", linewidth=1.2, label="numpy reference (fastcalc numpy)")
    positions: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in styles}
    ticks, labels = [], []
    top = 0.0
    for label, bars in cases:
        span = max(len(bars), _MIN_GROUP_SLOTS)
        first = top + (span - len(bars)) / 2 + 0.5
        for offset, (name, speedup) in enumerate(bars):
            positions[name][0].append(first + offset)
            positions[name][1].append(speedup)
        ticks.append(top + span / 2)
        labels.append(label)
        top += span + 1
        if top < slots:
            axes.axhline(top - 0.5, color="0.85", linewidth=0.8)
    for name, (ys, speedups) in positions.items():
        colour, hatch = styles[name]
        bars = axes.barh(ys, [s - 1 for s in speedups], height=0.8, left=1.0, color=colour,
                         hatch=hatch, edgecolor="white" if hatch else None, linewidth=0,
                         label=name)
        axes.bar_label(bars, labels=[_format_speedup(s) for s in speedups], padding=2,
                       fontsize=7)
    axes.set_xscale("log")
    values = [s for _, speedups in positions.values() for s in speedups] or [1.0]
    axes.set_xlim(min(min(values) / 2.5, 0.25), max(max(values) * 4, 10.0))  # room for labels
    axes.set_ylim(max(top - 1, 4), 0)  # top to bottom in the order the cases were timed
    axes.set_yticks(ticks, labels, fontsize=8)
    axes.tick_params(axis="y", length=0)
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}x"))
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.grid(True, axis="x", which="major", color="0.9")
    axes.set_axisbelow(True)
    axes.set_xlabel("speed-up over the numpy reference (log scale; right of 1x is faster)")
    if not cases:
        axes.text(0.5, 0.5, "no case has a numpy reference row: no speed-up to draw",
                  transform=axes.transAxes, ha="center", va="center",
                  bbox={"facecolor": "white", "edgecolor": "none"})
    axes.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=3, fontsize=8,
                frameon=False)  # above the axes, below the title
    if path is not None:
        figure.savefig(path, dpi=dpi)
    return figure
