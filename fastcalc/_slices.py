"""Long kernel calls in slices of bounded time, so that Ctrl-C is honoured.

A compiled kernel runs without the GIL and never returns to the interpreter
until it is done, so a SIGINT arriving during a 20-second call would wait 20
seconds.  The public functions split such calls into consecutive slices of
their independent items (images, sequences, problems) and run one slice per
kernel call: Python's own signal check, between two calls, then raises
KeyboardInterrupt within one slice's time.

The items of one call are independent (or, for a reduction, summed over a
fixed partition of blocks of ``align`` items, which every slice boundary
respects), so the result does not depend on where the slices fall.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["SLICE_SECONDS", "run_in_slices"]

# The time one slice aims at: well below the 0.5 s a Ctrl-C must take at
# most, well above the microseconds a kernel call costs.
SLICE_SECONDS = 0.1


def run_in_slices(run: Callable[[int, int], object], items: int, seconds_per_item: float,
                  *, align: int = 1) -> None:
    """Call ``run(start, stop)`` over consecutive slices covering ``range(items)``.

    Parameters
    ----------
    run : callable
        Runs the kernel on items ``start`` to ``stop - 1``.
    items : int
        How many items the call has.
    seconds_per_item : float
        A generous estimate of one item's time.  A call estimated below two
        slices runs whole, in one call of ``run``: small calls pay nothing.
        Beyond that the first slice follows the estimate and later ones the
        measured time of the previous slice.
    align : int
        Every slice but the last starts and ends at a multiple of ``align``
        (the block of a fixed-partition reduction).
    """
    if items * seconds_per_item < 2 * SLICE_SECONDS:
        run(0, items)
        return
    size = _aligned(SLICE_SECONDS / max(seconds_per_item, 1e-12), align)
    start = 0
    while start < items:
        stop = min(items, start + size)
        began = time.perf_counter()
        run(start, stop)
        elapsed = time.perf_counter() - began
        # Aim the next slice at SLICE_SECONDS; grow at most 4x at a time (a
        # slice that was quick because the machine was idle for a moment
        # should not jump to minutes).
        rate = (stop - start) / max(elapsed, 1e-9)
        size = _aligned(min(4 * (stop - start), SLICE_SECONDS * rate), align)
        start = stop


def _aligned(size: float, align: int) -> int:
    """``size`` (rounded) down to a positive multiple of ``align``."""
    return max(align, round(size) // align * align)
