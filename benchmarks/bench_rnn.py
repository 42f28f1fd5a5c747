"""pytest-benchmark suite: the Elman RNN next to torch.nn.RNN + Linear.

Run: ``pytest benchmarks/bench_rnn.py``.  One group per size, dtype and
pass (forward, forward + backward), every backend next to torch (forward
under ``no_grad``, forward + backward through autograd) when it is
installed.  Sizes (T, B, I, H, O): (100, 32, 64, 128, 64) and the seed's
slide-11 network (4, 1, 2, 3, 2).  ``extra_info`` carries the FLOPs and the
measured peak, so GFLOP/s and the share of peak can be derived from the JSON.
"""

import pytest

from fastcalc import _bench

CASES = _bench.rnn_cases()


@pytest.mark.parametrize(
    "case", CASES, ids=[f"{c.kernel}-{c.dtype}-{c.implementation}".replace(" ", "_")
                        for c in CASES]
)
def test_rnn(benchmark, case):
    benchmark.group = f"{case.kernel} {case.dtype}"
    benchmark.extra_info["flops"] = case.flops
    benchmark(case.function)
