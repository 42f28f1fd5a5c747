"""fastcalc on data larger than a worker's memory: zarr on disk, a LocalCluster, zarr out.

Run (not part of CI: it writes about 16 GB to disk and takes minutes; it needs
``pip install ".[dask]" zarr``)::

    python benchmarks/dask_bigger_than_memory.py [--directory DIR] [--scale S]

Three jobs, each on a fresh ``dask.distributed`` LocalCluster of 2 worker
processes of 1 thread limited to 1.5 GB each (loopback), reading its input
from a zarr store on disk and writing its result to another:

1. ``correlate2d`` of a 40000x40000 float32 image (6.4 GB), 5x5 kernel, mode
   "same", chunks of 2000x2000;
2. ``fit_logistic`` of 10**6 problems of 64 samples and 8 features (2 GB),
   chunks of 50000 problems, 100 full-batch steps;
3. ``gradient_descent`` of 10**8 scalar problems (800 MB), chunks of 10**7,
   100 steps of ``lambda x: 2 * x + 5``.

For each: the time to compute and store the result, the peak resident memory
of each worker, and a check of sample tiles (problems) against fastcalc's
in-memory call.  ``--scale`` multiplies every size (0.05 tries the script out
in seconds).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

import fastcalc
from fastcalc import _bench

WORKER_MEMORY = "1.5GB"


def _peak_memory_mb() -> float:
    """This process's peak resident memory, in MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run(name: str, build, check, directory: Path) -> None:
    """Time ``build``'s graph, stored to zarr on a fresh cluster; report memory and checks."""
    import dask.array as da

    with _bench.local_cluster(workers=2, threads_per_worker=1,
                              memory_limit=WORKER_MEMORY) as client:
        start = time.perf_counter()
        lazy, target = build(directory)
        da.to_zarr(lazy, str(directory / target), overwrite=True, compute=True)
        seconds = time.perf_counter() - start
        peaks = client.run(_peak_memory_mb)
    problems = check(directory)
    peak = ", ".join(f"{mb:.0f} MB" for mb in peaks.values())
    print(f"{name}: {seconds:.1f} s; peak RSS per worker {peak} (limit {WORKER_MEMORY}); "
          f"{problems}")


def _image_job(size: int, chunk: int):
    import dask.array as da

    kernel = np.random.default_rng(1).standard_normal((5, 5)).astype(np.float32)

    def build(directory):
        image = da.from_zarr(str(directory / "image.zarr"))
        return fastcalc.correlate2d(image, kernel, "same"), "correlated.zarr"

    def check(directory):
        import zarr

        image, result = (zarr.open_array(str(directory / name), mode="r")
                         for name in ("image.zarr", "correlated.zarr"))
        rng = np.random.default_rng(2)
        for _ in range(4):  # tiles across chunk borders, the image's edges included
            r, c = (int(v) for v in rng.integers(0, size - 600, 2))
            r, c = rng.choice([0, r, size - 600]), rng.choice([0, c, size - 600])
            low_r, low_c = max(r - 2, 0), max(c - 2, 0)
            window = fastcalc.correlate2d(image[low_r:r + 602, low_c:c + 602], kernel, "same")
            expected = window[r - low_r:r - low_r + 600, c - low_c:c - low_c + 600]
            np.testing.assert_array_equal(result[r:r + 600, c:c + 600], expected)
        return "4 tiles of 600x600 equal to the in-memory call"

    def write(directory):
        import dask.array as da

        image = da.random.default_rng(0).standard_normal((size, size), chunks=chunk,
                                                       dtype=np.float32)
        da.to_zarr(image, str(directory / "image.zarr"), overwrite=True)

    return write, build, check


def _fit_job(problems: int, chunk: int):
    import dask.array as da

    def write(directory):
        rng = da.random.default_rng(0)
        X = rng.standard_normal((problems, 64, 8), chunks=(chunk, 64, 8), dtype=np.float32)
        y = (rng.random((problems, 64), chunks=(chunk, 64)) < 0.5).astype(np.float32)
        da.to_zarr(X, str(directory / "X.zarr"), overwrite=True)
        da.to_zarr(y, str(directory / "y.zarr"), overwrite=True)

    def build(directory):
        X, y = (da.from_zarr(str(directory / name)) for name in ("X.zarr", "y.zarr"))
        return fastcalc.fit_logistic(X, y, n_iter=100).coef, "coef.zarr"

    def check(directory):
        import zarr

        X, y, coef = (zarr.open_array(str(directory / name), mode="r")
                      for name in ("X.zarr", "y.zarr", "coef.zarr"))
        sample = slice(problems // 2, problems // 2 + 100)
        expected = fastcalc.fit_logistic(X[sample], y[sample], n_iter=100).coef
        np.testing.assert_array_equal(coef[sample], expected)
        return "100 problems equal to the in-memory call"

    return write, build, check


def _descent_job(problems: int, chunk: int):
    import dask.array as da

    def grad(x):
        return 2 * x + 5

    def write(directory):
        x0 = da.random.default_rng(0).standard_normal(problems, chunks=chunk)
        da.to_zarr(x0, str(directory / "x0.zarr"), overwrite=True)

    def build(directory):
        x0 = da.from_zarr(str(directory / "x0.zarr"))
        return fastcalc.gradient_descent(grad, x0, 0.1, 100).x, "minima.zarr"

    def check(directory):
        import zarr

        x0, minima = (zarr.open_array(str(directory / name), mode="r")
                      for name in ("x0.zarr", "minima.zarr"))
        sample = slice(problems - 1000, problems)
        expected = fastcalc.gradient_descent(grad, x0[sample], 0.1, 100).x
        np.testing.assert_array_equal(minima[sample], expected)
        return "1000 problems equal to the in-memory call"

    return write, build, check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--directory", type=Path, default=None,
                        help="where the zarr stores go (default: a temporary directory)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every size")
    options = parser.parse_args()
    directory = Path(options.directory or tempfile.mkdtemp(prefix="fastcalc-dask-"))
    directory.mkdir(parents=True, exist_ok=True)
    side = max(int(40000 * options.scale**0.5), 1000)
    problems = max(int(10**6 * options.scale), 1000)
    scalars = max(int(10**8 * options.scale), 10**4)
    jobs = {
        f"correlate2d {side}x{side} float32 5x5 same": _image_job(side, 2000),
        f"fit_logistic {problems} x (64 x 8), 100 steps": _fit_job(
            problems, max(problems // 20, 500)),
        f"gradient_descent {scalars} scalars, 100 steps": _descent_job(
            scalars, max(scalars // 10, 10**3)),
    }
    try:
        for name, (write, build, check) in jobs.items():
            with _bench.local_cluster(workers=2, threads_per_worker=1,
                                      memory_limit=WORKER_MEMORY):
                write(directory)
            _run(name, build, check, directory)
    finally:
        if options.directory is None:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
