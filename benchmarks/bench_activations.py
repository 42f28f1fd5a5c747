"""pytest-benchmark suite: sigmoid and sigmoid_derivative, every backend and peer side by side.

Run: ``pytest benchmarks/bench_activations.py`` (add ``--benchmark-json FILE`` to
keep the numbers).  One group per kernel, dtype and size; inside a group the
rows are fastcalc's backends, numpy's naive formula, scipy.special.expit,
torch.sigmoid (when torch is installed), numpy's exp of the same array and a
memory copy of the same bytes.
"""

import pytest

from fastcalc import _bench

SIZES = (10, 1000, 1_000_000, 2**24)
CASES = _bench.activation_cases(SIZES, ("float32", "float64"), ("sigmoid", "sigmoid_derivative"))


@pytest.mark.parametrize(
    "case", CASES, ids=[f"{c.kernel}-{c.dtype}-{c.size}-{c.implementation}" for c in CASES]
)
def test_activation(benchmark, case):
    benchmark.group = f"{case.kernel} {case.dtype} N={case.size}"
    benchmark.extra_info["bytes_moved"] = case.bytes_moved
    benchmark(case.function)
