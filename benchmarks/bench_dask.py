"""pytest-benchmark suite: fastcalc on dask arrays, against the same call in memory.

Run: ``pytest benchmarks/bench_dask.py`` (needs ``pip install ".[dask]"``; skipped
without dask).  One group per kernel, its members side by side:

- ``in memory, 1 thread``: fastcalc's call on the whole array, ``out=`` given,
  on one thread (the reference for the scale-out ratios);
- ``in memory``: the same call at fastcalc's default thread count;
- ``LocalCluster 2x1``: the dask array persisted on a ``dask.distributed``
  LocalCluster of 2 worker processes of 1 thread (loopback), the result
  persisted there too (computed, not gathered), the graph built in the
  timed call;
- ``dask-image`` (when installed): ``dask_image.ndfilters.correlate`` on the
  same cluster, for "same" with a zero fill (its ``mode="constant"``).

The cases: a 8192x8192 float32 image in 2048x2048 chunks, correlated with
5x5 and 15x15 kernels, mode "same".

``test_threaded_scheduler``: dask's threaded scheduler on 1 and 2 threads, 1
fastcalc thread per task, correlate2d and sigmoid over a 4096x4096 float32
array in 1024x1024 chunks, stored into an in-memory array.
"""

import time

import numpy as np
import pytest

import fastcalc
from fastcalc import _bench

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

SIZE, CHUNK = 8192, 2048
KERNELS = {"5x5": 5, "15x15": 15}


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of 2 worker processes of 1 thread, on loopback."""
    with _bench.local_cluster(workers=2, threads_per_worker=1) as client:
        yield client


@pytest.fixture(scope="module")
def image(client):
    """The image on the cluster (persisted), and a copy of it in this process."""
    lazy = da.random.default_rng(0).standard_normal((SIZE, SIZE), chunks=CHUNK,
                                                   dtype=np.float32)
    persisted = client.persist(lazy)
    distributed.wait(persisted)
    return persisted, persisted.compute()


def _kernel(size):
    return np.random.default_rng(1).standard_normal((size, size)).astype(np.float32)


def _time_on_cluster(benchmark, client, build):
    """Time building ``build()``'s graph and computing it on the cluster, the result kept there.

    Before each round (untimed), the previous round's result is released and
    forgotten by the cluster: the same keys still in memory would be reused.
    """
    held = []

    def forget_previous():
        while held:
            keys = held.pop()
            while any(client.who_has(keys).values()):
                time.sleep(0.01)

    def compute():
        result = client.persist(build())
        distributed.wait(result)
        held.append([future.key for future in distributed.futures_of(result)])

    benchmark.pedantic(compute, setup=forget_previous, rounds=7, warmup_rounds=1)


@pytest.mark.parametrize("kernel_name", sorted(KERNELS))
@pytest.mark.parametrize("how", ["in memory, 1 thread", "in memory", "LocalCluster 2x1",
                                 "dask-image"])
def test_correlate2d_same(benchmark, client, image, kernel_name, how):
    persisted, local = image
    kernel = _kernel(KERNELS[kernel_name])
    benchmark.group = f"correlate2d {SIZE}x{SIZE} float32 {kernel_name} same, chunks {CHUNK}"
    if how.startswith("in memory"):
        out = np.empty_like(local)
        with _bench.thread_count(1 if how.endswith("1 thread") else None):
            benchmark(fastcalc.correlate2d, local, kernel, "same", out=out)
    elif how == "LocalCluster 2x1":
        _time_on_cluster(benchmark, client,
                         lambda: fastcalc.correlate2d(persisted, kernel, "same"))
    else:
        ndfilters = pytest.importorskip("dask_image.ndfilters")
        _time_on_cluster(benchmark, client,
                         lambda: ndfilters.correlate(persisted, kernel, mode="constant"))


THREADED = {
    "correlate2d 4096x4096 float32 5x5 same": lambda x: fastcalc.correlate2d(
        x, _kernel(5), "same"),
    "sigmoid 4096x4096 float32": fastcalc.sigmoid,
}


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("kernel", sorted(THREADED))
def test_threaded_scheduler(benchmark, kernel, workers):
    """dask's threaded scheduler on 1 and 2 threads, fastcalc's kernels on 1 thread per task:
    the kernels release the GIL, so two tasks run at once.  Results are stored into one
    array (no gathering copy at the end)."""
    image = np.random.default_rng(0).standard_normal((4096, 4096)).astype(np.float32)
    lazy = THREADED[kernel](da.from_array(image, chunks=1024))
    out = np.empty(lazy.shape, lazy.dtype)
    benchmark.group = f"{kernel}, chunks 1024, threaded scheduler"
    with _bench.thread_count(1), dask.config.set(scheduler="threads", num_workers=workers):
        benchmark(da.store, lazy, out, lock=False)
