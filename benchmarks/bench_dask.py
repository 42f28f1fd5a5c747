"""pytest-benchmark suite: fastcalc on dask arrays, against the same call in memory.

Run: ``pytest benchmarks/bench_dask.py`` (needs ``pip install ".[dask]"``; skipped
without dask).  One group per kernel, its members side by side:

- ``in memory, 1 thread``: fastcalc's call on the whole array (``out=`` given
  where the function takes it), on one thread (the reference for the
  scale-out ratios);
- ``in memory``: the same call at fastcalc's default thread count;
- ``LocalCluster 2x1`` and ``LocalCluster 1x1``: the dask array persisted on
  a ``dask.distributed`` LocalCluster of 2 (1) worker processes of 1 thread
  (loopback), the result persisted there too (computed, not gathered), the
  graph built in the timed call;
- ``dask-image`` (when installed): ``dask_image.ndfilters.correlate`` on the
  2x1 cluster, for "same" with a zero fill (its ``mode="constant"``).

Each test's name says which it is (``..._in_memory[...]``,
``..._on_cluster[LocalCluster 2x1-...]``, ``..._dask_image[...]``); only one
cluster runs at a time.

The cases: a 8192x8192 float32 image in 2048x2048 chunks, correlated with
5x5 and 15x15 kernels, mode "same"; ``conv2d`` of one 8-channel 2048x2048
image, 16 filters 3x3, padding 1, the image in 1024x1024 tiles or whole;
``fit_logistic`` of 4000 problems of 256
samples and 8 features (float64), chunks of 500 problems, 1000 steps.

``test_threaded_scheduler``: dask's threaded scheduler on 1 and 2 threads, 1
fastcalc thread per task, over a 4096x4096 float32 array in 1024x1024 chunks
(held in memory as dask holds persisted chunks: each its own array), stored
into one in-memory array.
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


def _image():
    """The image, lazy, in chunks (the same numbers on every run)."""
    return da.random.default_rng(0).standard_normal((SIZE, SIZE), chunks=CHUNK,
                                                   dtype=np.float32)


@pytest.fixture(scope="module", params=[2, 1], ids=["LocalCluster 2x1", "LocalCluster 1x1"])
def cluster(request):
    """A LocalCluster of 2 (1) worker processes of 1 thread on loopback, the image persisted
    there.  One cluster at a time: an idle second cluster slowed the first by up to 40%."""
    with _bench.local_cluster(workers=request.param, threads_per_worker=1) as client:
        image = client.persist(_image())
        distributed.wait(image)
        yield client, image


@pytest.fixture(scope="module")
def local_image():
    """The image in this process."""
    return _image().compute(scheduler="sync")


def _kernel(size):
    return np.random.default_rng(1).standard_normal((size, size)).astype(np.float32)


def _time_on_cluster(benchmark, client, build, rounds=7):
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

    benchmark.pedantic(compute, setup=forget_previous, rounds=rounds, warmup_rounds=1)


IN_MEMORY = ["in memory, 1 thread", "in memory"]


def _threads(how):
    """fastcalc's thread count for the in-memory member ``how`` (one of ``IN_MEMORY``)."""
    return _bench.thread_count(1 if how.endswith("1 thread") else None)


def _correlate_group(kernel_name):
    return f"correlate2d {SIZE}x{SIZE} float32 {kernel_name} same, chunks {CHUNK}"


@pytest.mark.parametrize("kernel_name", sorted(KERNELS))
@pytest.mark.parametrize("how", IN_MEMORY)
def test_correlate2d_same_in_memory(benchmark, local_image, kernel_name, how):
    benchmark.group = _correlate_group(kernel_name)
    out = np.empty_like(local_image)
    with _threads(how):
        benchmark(fastcalc.correlate2d, local_image, _kernel(KERNELS[kernel_name]), "same",
                  out=out)


@pytest.mark.parametrize("kernel_name", sorted(KERNELS))
def test_correlate2d_same_on_cluster(benchmark, cluster, kernel_name):
    benchmark.group = _correlate_group(kernel_name)
    (client, image), kernel = cluster, _kernel(KERNELS[kernel_name])
    _time_on_cluster(benchmark, client, lambda: fastcalc.correlate2d(image, kernel, "same"))


@pytest.mark.parametrize("cluster", [2], indirect=True, ids=["LocalCluster 2x1"])
@pytest.mark.parametrize("kernel_name", sorted(KERNELS))
def test_correlate2d_same_dask_image(benchmark, cluster, kernel_name):
    ndfilters = pytest.importorskip("dask_image.ndfilters")
    benchmark.group = _correlate_group(kernel_name)
    (client, image), kernel = cluster, _kernel(KERNELS[kernel_name])
    _time_on_cluster(benchmark, client, lambda: ndfilters.correlate(image, kernel,
                                                                    mode="constant"))


LAYER_IMAGE, LAYER_CHUNK = (1, 8, 2048, 2048), 1024


def _layer():
    """One image of 8 channels (lazy, in chunks of its rows and columns) and 16 filters 3x3."""
    rng = da.random.default_rng(2)
    x = rng.standard_normal(LAYER_IMAGE, chunks=(1, -1, LAYER_CHUNK, LAYER_CHUNK),
                            dtype=np.float32)
    weight = np.random.default_rng(3).standard_normal((16, 8, 3, 3)).astype(np.float32)
    return x, weight


def _layer_group():
    return (f"conv2d {'x'.join(map(str, LAYER_IMAGE))} float32, 16 filters 3x3, padding 1, "
            f"chunks {LAYER_CHUNK}")


@pytest.mark.parametrize("how", IN_MEMORY)
def test_conv2d_in_memory(benchmark, how):
    benchmark.group = _layer_group()
    x, weight = _layer()
    x = x.compute(scheduler="sync")
    with _threads(how):
        benchmark(fastcalc.conv2d, x, weight, padding=1)


@pytest.mark.parametrize("chunked", ["image in tiles", "image whole"])
def test_conv2d_on_cluster(benchmark, cluster, chunked):
    """The image cut along its rows and columns (a block of the result per tile), or in one
    chunk (the whole image on one worker)."""
    benchmark.group = _layer_group()
    x, weight = _layer()
    if chunked == "image whole":
        x = x.rechunk(-1)
    x = cluster[0].persist(x)
    distributed.wait(x)
    _time_on_cluster(benchmark, cluster[0], lambda: fastcalc.conv2d(x, weight, padding=1))


PROBLEMS, SAMPLES, FEATURES, PROBLEMS_PER_CHUNK = 4000, 256, 8, 500


def _problems():
    """X (P, N, D) and y (P, N) in chunks of problems, lazy (the same numbers on every run)."""
    rng = da.random.default_rng(0)
    X = rng.standard_normal((PROBLEMS, SAMPLES, FEATURES), chunks=(PROBLEMS_PER_CHUNK, -1, -1))
    y = (rng.random((PROBLEMS, SAMPLES), chunks=(PROBLEMS_PER_CHUNK, -1)) < 0.5).astype(
        np.float64)
    return X, y


def _fit_group():
    return (f"fit_logistic {PROBLEMS} x ({SAMPLES} x {FEATURES}) float64, "
            f"chunks {PROBLEMS_PER_CHUNK}")


@pytest.mark.parametrize("how", IN_MEMORY)
def test_fit_logistic_in_memory(benchmark, how):
    benchmark.group = _fit_group()
    X, y = dask.compute(*_problems(), scheduler="sync")
    with _threads(how):
        benchmark.pedantic(fastcalc.fit_logistic, (X, y), rounds=3, warmup_rounds=1)


def test_fit_logistic_on_cluster(benchmark, cluster):
    benchmark.group = _fit_group()
    client = cluster[0]
    X, y = client.persist(list(_problems()))
    distributed.wait([X, y])
    _time_on_cluster(benchmark, client,
                     lambda: [field for field in fastcalc.fit_logistic(X, y) if field is not None],
                     rounds=3)


THREADED = {
    "correlate2d 4096x4096 float32 5x5 same": lambda x: fastcalc.correlate2d(
        x, _kernel(5), "same"),
    "correlate2d 4096x4096 float32 15x15 same": lambda x: fastcalc.correlate2d(
        x, _kernel(15), "same"),
    "sigmoid 4096x4096 float32": fastcalc.sigmoid,
}


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("kernel", sorted(THREADED))
def test_threaded_scheduler(benchmark, kernel, workers):
    """dask's threaded scheduler on 1 and 2 threads, fastcalc's kernels on 1 thread per task:
    the kernels release the GIL, so two tasks run at once.  Results are stored into one
    array (no gathering copy at the end)."""
    image = da.random.default_rng(0).standard_normal((4096, 4096), chunks=1024,
                                                     dtype=np.float32)
    lazy = THREADED[kernel](image.persist(scheduler="sync"))
    out = np.empty(lazy.shape, lazy.dtype)
    benchmark.group = f"{kernel}, chunks 1024, threaded scheduler"
    with _bench.thread_count(1), dask.config.set(scheduler="threads", num_workers=workers):
        benchmark(da.store, lazy, out, lock=False)
