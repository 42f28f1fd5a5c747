"""Numba implementations of fastcalc's kernels (imported lazily by the dispatcher)."""

import threading

import numba

__all__ = ["parallel_call"]

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
