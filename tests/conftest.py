"""Shared fixtures: the kernel implementations, dtypes and memory layouts."""

import pytest

import fastcalc
from fastcalc import _dispatch


def pytest_configure(config):
    # Here rather than in pyproject.toml: the tests also run from a copy, against the wheel.
    config.addinivalue_line(
        "markers", "slow: seconds in fresh interpreters (Ctrl-C, pools, memory, fuzz); "
        "deselected by the runs against the installed wheels")


@pytest.fixture(params=fastcalc.available_backends())
def backend(request):
    """Every backend name usable here, ``"auto"`` included."""
    return request.param


@pytest.fixture(autouse=True)
def _restore_global_state():
    """Tests may change the default backend or thread count; put them back."""
    backend, threads = fastcalc.get_backend(), _dispatch.thread_setting()
    yield
    fastcalc.set_backend(backend)
    fastcalc.set_num_threads(threads)
