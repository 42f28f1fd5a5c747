"""pytest-benchmark suite: batched gradient descent next to JAX and torch.

Run: ``pytest benchmarks/bench_optim.py``.  Groups:

- 10**6 independent scalar quadratics (the seed's slide 3), 100 steps,
  float64: every backend that runs a user's grad next to JAX (``jit`` of a
  ``fori_loop``).
- 1000 independent logistic regressions of 256 samples x 8 features, 500
  steps, full batch and mini-batches of 32, float32 and float64: every
  backend next to JAX (``vmap`` + ``jit``) and torch (batched ``bmm``).

JAX and torch are optional; their rows are left out when not installed.
``extra_info`` carries the FLOPs of one call.
"""

import pytest

from fastcalc import _bench

CASES = _bench.descent_cases() + _bench.fit_cases()


@pytest.mark.parametrize(
    "case", CASES, ids=[f"{c.kernel}-{c.dtype}-{c.implementation}".replace(" ", "_")
                        for c in CASES]
)
def test_optim(benchmark, case):
    benchmark.group = f"{case.kernel} {case.dtype}"
    benchmark.extra_info["flops"] = case.flops
    benchmark(case.function)
