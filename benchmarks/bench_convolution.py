"""pytest-benchmark suite: the convolution family next to scipy, OpenCV and torch.

Run: ``pytest benchmarks/bench_convolution.py``.  correlate2d: one group per
kernel size, mode and dtype on a 2048 x 2048 image.  The CNN layer: x (32,
16, 64, 64), w (32, 16, 3, 3), float32, forward and forward + backward, every
backend next to torch.  ``extra_info`` carries the FLOPs and the measured
peak, so GFLOP/s and the share of peak can be derived from the JSON.  Plus
the seed's slide-10 Python loop at 64 x 64 against fastcalc.
"""

import numpy as np
import pytest

import fastcalc
from fastcalc import _bench
from fastcalc.reference import convolution as reference

CASES = _bench.convolution_cases((2048,), ("float32", "float64"), (3, 5, 11), ("valid", "same"))
LAYER_CASES = _bench.conv2d_cases()


def time_flops(benchmark, case, group):
    """Time ``case`` in ``group``, with its FLOPs and the measured peak for GFLOP/s."""
    benchmark.group = group
    benchmark.extra_info["flops"] = case.flops
    benchmark.extra_info["peak_gflop_per_s"] = _bench.peak_gflop_per_s(case.dtype)
    benchmark(case.function)


@pytest.mark.parametrize(
    "case", CASES, ids=[f"{c.kernel}-{c.dtype}-{c.size}-{c.implementation}" for c in CASES]
)
def test_correlate2d(benchmark, case):
    time_flops(benchmark, case, f"{case.kernel} {case.dtype} {case.size}x{case.size}")


@pytest.mark.parametrize(
    "case", LAYER_CASES, ids=[f"{c.kernel}-{c.dtype}-{c.implementation}" for c in LAYER_CASES]
)
def test_conv2d_layer(benchmark, case):
    time_flops(benchmark, case, f"{case.kernel} {case.dtype}")


SEED_IMAGE = np.random.default_rng(0).random((64, 64))
SOBEL = np.array([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]])


@pytest.mark.parametrize("implementation", ["seed loop", "fastcalc"])
def test_seed_slide_10(benchmark, implementation):
    benchmark.group = "seed slide 10, 64x64, Sobel 3x3 valid"
    if implementation == "seed loop":
        benchmark(reference.seed_convolve2d, SEED_IMAGE, SOBEL)
    else:
        benchmark(fastcalc.correlate2d, SEED_IMAGE, SOBEL, "valid")
