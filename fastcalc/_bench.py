"""The engine behind ``fastcalc bench``: time every kernel on every backend and peer.

A kernel family contributes *cases*: one callable per (kernel, dtype, size,
implementation).  Every case of one row group (same kernel, dtype and size)
is timed in the same run, so the ratios between them are what the machine
did side by side.  Times are medians over repetitions; each repetition runs
the case enough times to last at least ``min_time`` seconds.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TypeVar

import numpy as np

from fastcalc import _dispatch

__all__ = ["RNN_SIZES", "Case", "Result", "activation_cases", "conv2d_cases",
           "convolution_cases", "descent_cases", "fill_ratios", "fit_cases", "format_table",
           "peak_gflop_per_s", "plot_speedups", "rnn_cases", "run"]

REFERENCE = "fastcalc numpy"  # the implementation speed-ups are measured against
COPY = "memory copy"  # the same bytes copied on the same threads: an elementwise kernel's limit


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
    extra: dict = field(default_factory=dict)

    @property
    def gb_per_s(self) -> float:
        return self.bytes_moved / self.median_s / 1e9 if self.median_s > 0 else float("inf")

    @property
    def gflop_per_s(self) -> float:
        return self.flops / self.median_s / 1e9 if self.median_s > 0 else float("inf")

    def throughput(self) -> str:
        if not self.flops:
            return f"{self.gb_per_s:.1f} GB/s"
        peak = peak_gflop_per_s(self.dtype)
        share = f" ({self.gflop_per_s / peak:.0%} of peak)" if peak else ""
        return f"{self.gflop_per_s:.1f} GFLOP/s{share}"


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
        Case(kernel, str(x.dtype), x.size, name, function, 2 * x.nbytes, note)
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
        Case(name, str(image.dtype), size, implementation, function, moved, note, flops)
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
                f"fastcalc {backend}": functools.partial(
                    fastcalc.fit_logistic, X, y, lr=0.1, n_iter=steps, batch_size=batch_size,
                    seed=seed, backend=backend)
                for backend in fastcalc.available_backends()
            }
            if jax is not None and (rows is None or N % batch == 0):
                implementations["JAX vmap+jit"] = _jax_fit(jax, X, y, steps, rows)
            if torch is not None:
                implementations["torch bmm"] = _torch_fit(torch, X, y, steps, rows)
            mode = "full batch" if batch_size is None else f"batches of {batch}"
            cases += [Case(f"fit_logistic {P}x({N}x{D}) x {steps} steps, {mode}", dtype, P,
                           name, function, X.nbytes + y.nbytes, "", 4 * P * batch * D * steps)
                      for name, function in implementations.items()]
    return cases


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


def _calibrate(case: Case, min_time: float) -> tuple[int, float]:
    """Calls per repetition (lasting at least ``min_time``), and that first repetition's time."""
    function = case.function
    function()  # warm up: compiles Numba code, faults in pages
    calls = 1
    while True:
        elapsed = _repetition(function, calls)
        if elapsed >= min_time or calls >= 1 << 20:
            return calls, elapsed / calls
        calls *= 2 if elapsed <= 0 else max(2, min(10, int(min_time / elapsed) + 1))


def _repetition(function: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return time.perf_counter() - start


def run(
    cases: Sequence[Case],
    repeat: int = 7,
    min_time: float = 0.01,
    progress: Callable[[int, int, Case], None] | None = None,
) -> list[Result]:
    """Time ``cases`` and fill in speed-ups and copy ratios per group.

    The implementations of a group (kernel, dtype, size) take turns: each
    repetition times every one of them once, so a slow phase of a shared
    machine slows them all rather than the rows timed during it, and the
    ratios within a group hold.
    """
    import warnings

    torch = _peer_torch()
    if torch is not None:
        torch.set_num_threads(_dispatch.thread_setting())
    position = {id(case): index for index, case in enumerate(cases)}
    calls, samples = [0] * len(cases), [[] for _ in cases]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the naive peers overflow
        for group in _groups(cases).values():
            members = [position[id(case)] for case in group]
            for index in members:
                if progress is not None:
                    progress(index, len(cases), cases[index])
                calls[index], first = _calibrate(cases[index], min_time)
                samples[index].append(first)
            for _ in range(repeat - 1):
                for index in members:
                    samples[index].append(
                        _repetition(cases[index].function, calls[index]) / calls[index])
    results = [
        Result(case.kernel, case.dtype, case.size, case.implementation,
               float(np.median(case_samples)), repeat, case_calls, case.bytes_moved, case.note,
               case.flops)
        for case, case_calls, case_samples in zip(cases, calls, samples, strict=True)
    ]
    fill_ratios(results)
    return results


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


def _format_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def format_table(results: Sequence[Result]) -> str:
    """A Markdown table: one row per result, grouped as they were timed."""
    header = ("kernel", "dtype", "N", "implementation", "median", "vs numpy ref",
              "throughput", "time / copy", "note")
    rows = [header, tuple("---" for _ in header)]
    for r in results:
        rows.append((
            r.kernel, r.dtype, f"{r.size:,}", r.implementation, _format_time(r.median_s),
            "" if r.speedup_vs_reference is None else f"{r.speedup_vs_reference:.2f}x",
            r.throughput(),
            "" if r.copy_ratio is None else f"{r.copy_ratio:.2f}",
            r.note,
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def as_records(results: Sequence[Result]) -> list[dict]:
    """JSON-ready dictionaries, with GB/s and GFLOP/s included."""
    return [{**asdict(r), "gb_per_s": r.gb_per_s, "gflop_per_s": r.gflop_per_s} for r in results]


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
                if r.implementation not in (REFERENCE, COPY)
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
