"""Time the same kernel calls in two installations of fastcalc, side by side.

Usage::

    python tools/compare_builds.py BASE_PYTHON HEAD_PYTHON [--threads N] [--rounds R]
                                   [--reps K] [--only TEXT]

``BASE_PYTHON`` and ``HEAD_PYTHON`` are the interpreters of two virtual
environments, each with a build of fastcalc (for example one installed from a
``git worktree`` of an older commit).  Rounds alternate between the two, in
turns (base first in even rounds, head first in odd ones), each a fresh
process that warms every call up, waits 0.2 s (OpenBLAS's threads, which
the Numba RNN's products start, poll for 0.1 s after a call: a kernel timed
then shares a core with them) and times it ``reps`` times, so a slow phase
of the machine falls on both.  Prints the median of every call in each build,
their ratio and the interquartile range.  The calls: the CNN layer and its
backward pass, the RNN forward and backward passes, sigmoid on 2**24 float64
elements (each compiled backend) and on 1000, 2**20 and 2**24 float32 ones
(auto), correlate2d direct (2048x2048, 11x11) and FFT (4096x4096, 45x45),
fit_logistic and gradient_descent, at the sizes of ``benchmarks/``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CHILD = """
import json, sys, time
import numpy as np
import fastcalc

threads, reps, only = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
fastcalc.set_num_threads(threads)
rng = np.random.default_rng(0)
calls = {}
x = rng.standard_normal((32, 16, 64, 64)).astype("f4")
w = rng.standard_normal((32, 16, 3, 3)).astype("f4")
g = rng.standard_normal((32, 32, 64, 64)).astype("f4")
T, B, I, H, O = 100, 32, 64, 128, 64
for backend in ("numba", "cython"):
    calls[f"conv2d {backend}"] = lambda b=backend: fastcalc.conv2d(x, w, None, 1, 1, backend=b)
    calls[f"conv2d_backward {backend}"] = (
        lambda b=backend: fastcalc.conv2d_backward(g, x, w, 1, 1, backend=b))
for dtype in ("f4", "f8"):
    def normal(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(dtype)
    weights = (normal(H, I, scale=I**-0.5), normal(H, H, scale=H**-0.5),
               normal(O, H, scale=H**-0.5))
    bh, by = normal(H), normal(O)
    xs, h0, dy = normal(T, B, I), normal(B, H), normal(T, B, O)
    h, _ = fastcalc.rnn_forward(xs, h0, *weights, bh, by)  # not numpy: BLAS threads poll 0.1 s
    for backend in ("numba", "cython"):
        calls[f"rnn_forward {dtype} {backend}"] = (
            lambda b=backend, a=(xs, h0, *weights, bh, by): fastcalc.rnn_forward(*a, backend=b))
        calls[f"rnn_backward {dtype} {backend}"] = (
            lambda b=backend, a=(dy, xs, h, h0, *weights): fastcalc.rnn_backward(*a, backend=b))
big = rng.standard_normal(2**24)
out = np.empty_like(big)
for size in (1000, 2**20, 2**24):
    small = rng.standard_normal(size).astype("f4")
    calls[f"sigmoid {size} f4 auto"] = (
        lambda a=small, o=np.empty_like(small): fastcalc.sigmoid(a, o))
X = rng.standard_normal((1000, 256, 8)).astype("f4")
y = (X[..., 0] > 0).astype("f4")
calls["fit_logistic 1000x256x8 x100 f4 auto"] = lambda: fastcalc.fit_logistic(X, y, n_iter=100)
starts = rng.standard_normal(10**6)
calls["gradient_descent 10**6 x100 numba"] = lambda: fastcalc.gradient_descent(
    lambda v: 2 * v + 5, starts, lr=0.1, n_iter=100, backend="numba")
image = rng.standard_normal((2048, 2048)).astype("f4")
kernel = rng.standard_normal((11, 11)).astype("f4")
for backend in ("numba", "cython"):
    calls[f"sigmoid 2**24 f8 {backend}"] = lambda b=backend: fastcalc.sigmoid(big, out, backend=b)
    calls[f"correlate2d 2048 11x11 f4 {backend}"] = (
        lambda b=backend: fastcalc.correlate2d(image, kernel, "same", backend=b))
large, wide = (rng.standard_normal(shape).astype("f4") for shape in ((4096, 4096), (45, 45)))
calls["correlate2d 4096 45x45 f4 fft"] = (
    lambda: fastcalc.correlate2d(large, wide, "same", method="fft"))
times = {}
for name, call in calls.items():
    if only not in name:
        continue
    call()
    time.sleep(0.2)  # BLAS threads a call started (the Numba RNN's) poll for 0.1 s
    times[name] = []
    for _ in range(reps):
        start = time.perf_counter()
        call()
        times[name].append(time.perf_counter() - start)
print(json.dumps(times))
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the base installation's python")
    parser.add_argument("head", help="the head installation's python")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--only", default="", help="only the calls whose name holds this")
    args = parser.parse_args(argv)
    pythons = {"base": args.base, "head": args.head}
    times: dict[str, dict[str, list[float]]] = {label: {} for label in pythons}
    for round_ in range(args.rounds):
        for label in (("base", "head") if round_ % 2 == 0 else ("head", "base")):
            output = subprocess.run(
                [pythons[label], "-c", CHILD, str(args.threads), str(args.reps), args.only],
                capture_output=True, text=True, check=True, cwd="/").stdout
            for name, values in json.loads(output).items():
                times[label].setdefault(name, []).extend(values)
    print(f"threads {args.threads}, {args.rounds} rounds of {args.reps} calls per build")
    print(f"{'call':34s} {'base ms':>9s} {'head ms':>9s} {'head/base':>9s}  IQR base/head ms")
    for name, head in times["head"].items():
        base = times["base"][name]
        median_base, median_head = statistics.median(base), statistics.median(head)
        spreads = [statistics.quantiles(values, n=4) for values in (base, head)]
        iqr = "/".join(f"{(q[2] - q[0]) * 1e3:.2f}" for q in spreads)
        print(f"{name:34s} {median_base * 1e3:9.2f} {median_head * 1e3:9.2f} "
              f"{median_head / median_base:9.3f}  {iqr}")


if __name__ == "__main__":
    main(sys.argv[1:])
