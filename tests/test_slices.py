"""The slicing of long calls (fastcalc._slices): coverage, alignment, small calls whole."""

import pytest

from fastcalc import _slices


def record_slices(items, seconds_per_item, align=1, work=None):
    calls = []

    def run(start, stop):
        calls.append((start, stop))
        if work is not None:
            work(start, stop)

    _slices.run_in_slices(run, items, seconds_per_item, align=align)
    return calls


def test_a_small_call_runs_whole():
    assert record_slices(1000, 1e-6) == [(0, 1000)]
    assert record_slices(0, 1.0) == [(0, 0)]


@pytest.mark.parametrize("align", [1, 3, 8])
def test_slices_cover_every_item_once_in_order_on_aligned_bounds(align):
    calls = record_slices(1001, 1e-3, align=align)
    assert len(calls) > 1
    assert calls[0][0] == 0 and calls[-1][1] == 1001
    for (_, stop), (start, _) in zip(calls, calls[1:], strict=False):
        assert stop == start
    assert all(start % align == 0 for start, _ in calls)
    assert all(stop > start for start, stop in calls)


def test_slices_follow_the_measured_time(monkeypatch):
    """An estimate 1000x too pessimistic is corrected: slices grow 4x a time to SLICE_SECONDS."""
    now = [0.0]
    monkeypatch.setattr(_slices.time, "perf_counter", lambda: now[0])

    def work(start, stop):  # 10 microseconds per item
        now[0] += (stop - start) * 1e-5

    calls = record_slices(10**5, 1e-2, work=work)
    sizes = [stop - start for start, stop in calls]
    assert sizes[:5] == [10, 40, 160, 640, 2560]
    assert set(sizes[6:-1]) == {int(_slices.SLICE_SECONDS / 1e-5)}
