"""Numba implementations of fastcalc's kernels (imported lazily by the dispatcher)."""

import atexit
import os
import shutil
import tempfile
import threading
import warnings

import numba

__all__ = ["parallel_call"]


def _cache_locations() -> int:
    """How many of Numba's cache locations could hold this package's compiled kernels."""
    from numba.core import caching

    def probe():
        pass

    return sum(locator.from_function(probe, __file__) is not None
               for locator in caching.CacheImpl._locator_classes)


def _ensure_a_cache_location() -> None:
    """Give Numba a cache directory when it has none, rather than fail to import.

    Numba caches next to the module (``__pycache__``), else in the user's
    cache directory, or in ``NUMBA_CACHE_DIR``; when none is writable (a
    read-only install and home, as in some containers) defining a
    ``cache=True`` kernel raises.  Then the cache goes to a new temporary
    directory: kernels compile once per process, and a warning says how to
    keep them.
    """
    try:
        if _cache_locations():
            return
    except (AttributeError, TypeError):  # Numba's private API changed: let Numba decide
        return
    numba.config.CACHE_DIR = tempfile.mkdtemp(prefix="fastcalc-numba-cache-")
    atexit.register(shutil.rmtree, numba.config.CACHE_DIR, ignore_errors=True)
    warnings.warn(
        f"fastcalc: Numba finds no writable cache directory (next to {os.path.dirname(__file__)},"
        " in the user's cache directory or in NUMBA_CACHE_DIR); the compiled kernels are cached "
        f"in {numba.config.CACHE_DIR} for this process only.  Set NUMBA_CACHE_DIR to a writable "
        "directory to keep them.", RuntimeWarning, stacklevel=2)


_ensure_a_cache_location()

# Parallel kernels run one at a time, each on all the threads it asked for:
# that is as fast as running them side by side on a machine's cores, and safe
# under every Numba threading layer (the "workqueue" layer aborts the process
# on concurrent launches).
_launch_lock = threading.Lock()


def parallel_call(kernel, num_threads, *args):
    """Call a ``parallel=True`` kernel on ``num_threads`` threads.

    Numba's thread count is per calling thread; it is set for this call and
    restored, so the caller's own Numba setting is left as it was.
    """
    with _launch_lock:
        previous = numba.get_num_threads()
        numba.set_num_threads(min(num_threads, numba.config.NUMBA_NUM_THREADS))
        try:
            kernel(*args)
        finally:
            numba.set_num_threads(previous)
