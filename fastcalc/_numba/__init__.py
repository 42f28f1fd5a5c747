"""Numba implementations of fastcalc's kernels (imported lazily by the dispatcher)."""

import contextlib
import os
import threading
import warnings

import numba

__all__ = ["DISK_CACHE", "parallel_call"]


def _cache_locations() -> int:
    """How many of Numba's cache locations could hold this package's compiled kernels."""
    from numba.core import caching

    def probe():
        pass

    return sum(locator.from_function(probe, __file__) is not None
               for locator in caching.CacheImpl._locator_classes)


def _compile_in_memory() -> None:
    """Make fastcalc's ``cache=True`` kernels compile in memory, as with ``cache=False``.

    Numba refuses to define a ``cache=True`` function it has nowhere to
    cache; a user's own functions keep that behaviour.
    """
    from numba.core.dispatcher import Dispatcher

    enable_caching = Dispatcher.enable_caching

    def enable_caching_unless_fastcalc(self):
        if not (self.py_func.__module__ or "").startswith("fastcalc."):
            enable_caching(self)

    Dispatcher.enable_caching = enable_caching_unless_fastcalc


def _has_disk_cache() -> bool:
    """Whether Numba can cache fastcalc's kernels on disk; if not, compile them in memory.

    Numba caches next to the module (``__pycache__``), else in the user's
    cache directory, or in ``NUMBA_CACHE_DIR``.  When none is writable (a
    read-only install and home, as in some containers), defining a
    ``cache=True`` kernel would raise: the kernels then compile in memory,
    once per process, and a warning says how to keep them.  No temporary
    directory is tried: it would save nothing in memory does not, and there
    may be none writable either.
    """
    try:
        if _cache_locations():
            return True
        _compile_in_memory()
    except (AttributeError, TypeError, ImportError):  # Numba's private API changed
        return True  # let Numba decide
    warnings.warn(
        f"fastcalc: Numba finds no writable cache directory (next to {os.path.dirname(__file__)},"
        " in the user's cache directory or in NUMBA_CACHE_DIR), so the Numba kernels compile "
        "in memory, again in every process.  Set NUMBA_CACHE_DIR to a writable directory to "
        "cache them.", RuntimeWarning, stacklevel=2)
    return False


# Whether the compiled kernels are cached on disk (``fastcalc warmup`` checks).
DISK_CACHE = _has_disk_cache()


def _start_threading_layer() -> str | None:
    """Start Numba's threading layer now, so that its OpenMP runtime waits briefly.

    Numba loads the layer on its first parallel call; the "omp" layer's
    runtime reads its wait policy then (see
    :func:`fastcalc._dispatch.short_openmp_waits`).  The "tbb" and
    "workqueue" layers are not OpenMP.  Returns the layer's name (None if
    none loads).
    """
    from numba.np.ufunc import parallel

    from fastcalc import _dispatch

    failed = []

    def launch():
        try:
            parallel._launch_threads()
        except ValueError as error:  # no layer loads: Numba says so on the first parallel call
            failed.append(error)

    # On a thread of its own: the "omp" layer sets the OpenMP thread limit of
    # the thread that starts it, which may be the user's, inside a
    # threadpoolctl.threadpool_limits block.
    with _dispatch.short_openmp_waits("numba"):
        launcher = threading.Thread(target=launch, name="fastcalc-numba-layer")
        launcher.start()
        launcher.join()
    if failed:
        return None
    layer = numba.threading_layer()
    if layer != "omp":
        _dispatch.openmp_waits["numba"] = f"the {layer} threading layer (not OpenMP)"
    return layer


# The "workqueue" layer aborts the process on concurrent launches: there,
# parallel kernels run one at a time.  The "omp" and "tbb" layers take
# launches from several threads at once, which 8 Python threads calling a
# kernel need (run one at a time, their calls took 1.54x the time of the same
# calls made in a row, against 0.97-1.18x for the Cython kernels).
_launch_lock = None if _start_threading_layer() in ("omp", "tbb") else threading.Lock()


def _new_launch_lock() -> None:
    # A launch another thread of the parent was in at fork time never ends in
    # the child: its lock would stay held forever.
    global _launch_lock
    if _launch_lock is not None:
        _launch_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_launch_lock)


def parallel_call(kernel, num_threads, *args):
    """Call a ``parallel=True`` kernel on ``num_threads`` threads.

    Numba's thread count is per calling thread; it is set for this call and
    restored, so the caller's own Numba setting is left as it was.
    """
    with _launch_lock or contextlib.nullcontext():
        previous = numba.get_num_threads()
        numba.set_num_threads(min(num_threads, numba.config.NUMBA_NUM_THREADS))
        try:
            kernel(*args)
        finally:
            numba.set_num_threads(previous)
