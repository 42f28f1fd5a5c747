"""pytest-benchmark suite: fastcalc's threads on a busy machine.

Run: ``pytest benchmarks/bench_contention.py``.  Every kernel is timed at the
default thread count and on one thread, first on an idle machine, then with
one CPU-bound competing process per usable core (the ``machine`` fixture
starts them and stops them after): one group per kernel and state, so the
ratios a user meets in a pipeline (default threads over one thread, when
other work shares the cores) stand side by side.  torch, when installed, is
timed the same way (``torch.set_num_threads``).

Kernels: sigmoid on 2**20 and 2**24 float32 (auto, and numba), correlate2d
2048x2048 5x5 "same" float32, the CNN layer forward + backward, the RNN
forward + backward, and fit_logistic (full batch), at the sizes of the other
benchmark files.
"""

import concurrent.futures
import functools
import subprocess
import sys

import numpy as np
import pytest

import fastcalc
from fastcalc import _bench, _dispatch

STATES = ("idle", "contended")
rng = np.random.default_rng(0)
X20, X24 = (rng.standard_normal(n).astype(np.float32) for n in (2**20, 2**24))
IMAGE = rng.standard_normal((2048, 2048)).astype(np.float32)
KERNEL = rng.standard_normal((5, 5)).astype(np.float32)


def _cases():
    """``{kernel: function}``, every function a call of fastcalc at the current thread count."""
    cases = {
        "sigmoid 2**20 float32 auto": functools.partial(fastcalc.sigmoid, X20),
        "sigmoid 2**20 float32 numba": functools.partial(fastcalc.sigmoid, X20, backend="numba"),
        "sigmoid 2**24 float32 auto": functools.partial(fastcalc.sigmoid, X24),
        "sigmoid 2**24 float32 numba": functools.partial(fastcalc.sigmoid, X24, backend="numba"),
        "correlate2d 2048x2048 5x5 same float32": functools.partial(
            fastcalc.correlate2d, IMAGE, KERNEL, "same"),
    }
    picks = (("conv2d forward+backward", _bench.conv2d_cases()),
             ("rnn forward+backward", _bench.rnn_cases(sizes=_bench.RNN_SIZES[:1],
                                                       dtypes=("float32",))),
             ("fit_logistic", _bench.fit_cases(dtypes=("float32",), batch_sizes=(None,))))
    for kernel, found in picks:
        case = next(case for case in found if case.kernel.startswith(kernel)
                    and case.implementation == "fastcalc auto")
        cases[f"{case.kernel} {case.dtype}"] = case.function
    if "numba" not in fastcalc.available_backends():
        cases = {name: call for name, call in cases.items() if "numba" not in name}
    return cases


CASES = _cases()


@pytest.fixture(scope="module", params=STATES)
def machine(request):
    """The state of the machine: idle, or one spinning process per usable core."""
    competitors = []
    if request.param == "contended":
        competitors = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                       for _ in range(_dispatch.usable_cores())]
    try:
        yield request.param
    finally:
        for competitor in competitors:
            competitor.kill()
            competitor.wait()


# The thread counts compared: fastcalc's default here, and one.
THREADS = {"default threads": _dispatch.thread_setting(), "1 thread": 1}


@pytest.mark.parametrize("threads", sorted(THREADS))
@pytest.mark.parametrize("kernel", sorted(CASES))
def test_fastcalc(benchmark, machine, kernel, threads):
    benchmark.group = f"{kernel}, {machine}"
    benchmark.extra_info.update(machine=machine, threads=THREADS[threads])
    setting = _dispatch.thread_setting()
    fastcalc.set_num_threads(THREADS[threads])
    try:
        benchmark(CASES[kernel])
    finally:
        fastcalc.set_num_threads(setting)


@pytest.mark.parametrize("threads", sorted(THREADS))
def test_torch_sigmoid(benchmark, machine, threads):
    torch = pytest.importorskip("torch")
    benchmark.group = f"sigmoid 2**20 float32 torch, {machine}"
    count = THREADS[threads]
    benchmark.extra_info.update(machine=machine, threads=count)
    setting = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        benchmark(torch.sigmoid, torch.from_numpy(X20))
    finally:
        torch.set_num_threads(setting)


CALLERS = 8


@pytest.fixture(scope="module")
def callers():
    """CALLERS Python threads that stay, as a thread pool, Dask's threaded scheduler or a
    web server keeps them (a new thread also starts a new OpenMP team)."""
    with concurrent.futures.ThreadPoolExecutor(CALLERS) as pool:
        yield pool


def _concurrently(pool, call):
    """``call`` made by every thread of ``pool`` at once."""
    for future in [pool.submit(call) for _ in range(CALLERS)]:
        future.result()


def _one_after_another(pool, call):
    for _ in range(CALLERS):
        call()


@pytest.mark.parametrize("how", ("concurrent", "serial"))
@pytest.mark.parametrize("kernel", sorted(CASES))
def test_eight_callers(benchmark, callers, kernel, how):
    """8 calls from 8 Python threads at once vs one after another, at the default threads:
    fastcalc's thread budget keeps the first from oversubscribing the cores."""
    benchmark.group = f"{kernel}, {CALLERS} calls"
    benchmark.extra_info.update(callers=how)
    run = _concurrently if how == "concurrent" else _one_after_another
    benchmark(run, callers, CASES[kernel])
