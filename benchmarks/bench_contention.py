"""pytest-benchmark suite: fastcalc's threads on a busy machine.

Run: ``pytest benchmarks/bench_contention.py``.  Every kernel is timed at the
default thread count and on one thread, first on an idle machine, then with
one CPU-bound competing process per usable core (the ``machine`` fixture
starts them and stops them after): one group per kernel and state, so the
ratios a user meets in a pipeline (default threads over one thread, when
other work shares the cores) stand side by side.  ``fastcalc bench
--contended`` times the same cases the same way, in a table.

Kernels (``fastcalc._bench.contention_cases``): sigmoid on 2**20 and 2**24
float32 (auto, and numba; torch.sigmoid on 2**20 when torch is installed,
its threads set as fastcalc's), correlate2d 2048x2048 5x5 "same" float32, the
CNN layer forward + backward, the RNN forward + backward, and fit_logistic
(full batch), at the sizes of the other benchmark files.

The same calls made by 8 Python threads of a pool at once are timed against
the same 8 calls made one after another (``test_eight_callers``), in both
states.
"""

import concurrent.futures

import pytest

from fastcalc import _bench, _dispatch

STATES = ("idle", "contended")
CASES = {f"{case.heading} {case.implementation}": case.function
         for case in _bench.contention_cases()}


@pytest.fixture(scope="module", params=STATES)
def machine(request):
    """The state of the machine: idle, or one spinning process per usable core."""
    count = _dispatch.usable_cores() if request.param == "contended" else 0
    with _bench.competing_processes(count):
        yield request.param


# The thread counts compared: fastcalc's default here, and one.
THREADS = {"default threads": _dispatch.thread_setting(), "1 thread": 1}


@pytest.mark.parametrize("threads", sorted(THREADS))
@pytest.mark.parametrize("kernel", sorted(CASES))
def test_threads(benchmark, machine, kernel, threads):
    benchmark.group = f"{kernel}, {machine}"
    benchmark.extra_info.update(machine=machine, threads=THREADS[threads])
    with _bench.thread_count(THREADS[threads]):
        benchmark(CASES[kernel])


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
def test_eight_callers(benchmark, machine, callers, kernel, how):
    """8 calls from 8 Python threads at once vs one after another, at the default threads:
    fastcalc's thread budget keeps the first from oversubscribing the cores."""
    benchmark.group = f"{kernel}, {CALLERS} calls, {machine}"
    benchmark.extra_info.update(machine=machine, callers=how)
    run = _concurrently if how == "concurrent" else _one_after_another
    benchmark(run, callers, CASES[kernel])
