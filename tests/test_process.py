"""Process-wide effects, each checked in a fresh interpreter: the floating-point
environment, fork safety and import time."""

import subprocess
import sys
import textwrap

import pytest

RUN_EVERY_KERNEL = """
import numpy as np, fastcalc
from fastcalc import _cython
x = np.linspace(-50, 50, 300_000)
for backend in fastcalc.available_backends():
    for dtype in (np.float32, np.float64):
        fastcalc.sigmoid(x.astype(dtype), backend=backend)
        fastcalc.sigmoid_derivative(x.astype(dtype), backend=backend)
        fastcalc.sigmoid_derivative(x.astype(dtype), from_output=True, backend=backend)
for isa in _cython.available_isas("activations"):
    module = _cython.load("activations", isa)
    y = x.copy()
    for name in ("sigmoid", "sigmoid_derivative", "sigmoid_derivative_from_output"):
        getattr(module, name)(x, y, 2)
"""

SUBNORMALS_SURVIVE = """
import numpy as np
assert np.float64(1e-310) * 1.0 == 1e-310, "float64 subnormals flushed to zero"
assert np.float32(1e-40) * np.float32(1) != 0, "float32 subnormals flushed to zero"
assert np.nextafter(0.0, 1.0) > 0
"""


def run_python(code, timeout=600):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_floating_point_environment_is_left_alone():
    """No flush-to-zero after import, nor after every backend and ISA ran every kernel."""
    code = "import fastcalc\n" + SUBNORMALS_SURVIVE + RUN_EVERY_KERNEL + SUBNORMALS_SURVIVE
    result = run_python(code)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="os.fork on Linux only")
def test_forked_child_can_run_kernels_after_the_parent_used_threads():
    """GNU OpenMP hangs or aborts in a forked child; fastcalc runs the child single-threaded."""
    code = RUN_EVERY_KERNEL + """
import os
pid = os.fork()
if pid == 0:
    try:
        for backend in fastcalc.available_backends():
            y = fastcalc.sigmoid(x, backend=backend)
            assert abs(y[-1] - 1) < 1e-15 and y[0] < 1e-21
        assert fastcalc.get_num_threads() == 1
    except BaseException:
        os._exit(1)
    os._exit(0)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
"""
    result = run_python(code, timeout=600)
    assert result.returncode == 0, result.stderr


def test_import_does_not_import_numba_or_the_extensions():
    """Backends load on first use, so ``import fastcalc`` stays fast."""
    result = run_python("""
        import sys, fastcalc
        heavy = [m for m in sys.modules if m == "numba" or m.startswith("fastcalc._cython.")]
        assert not heavy, heavy
    """)
    assert result.returncode == 0, result.stderr


POOLS = """
import concurrent.futures, multiprocessing, sys, warnings
import numpy as np
import fastcalc

METHOD, BACKEND = sys.argv[1], sys.argv[2]
X = np.linspace(-50, 50, 300_000)


def work(index):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fastcalc.set_num_threads(2)
        fastcalc.set_num_threads(2)
    result = fastcalc.sigmoid(X * index, backend=BACKEND)
    return result, fastcalc.get_num_threads(BACKEND), [str(w.message) for w in caught]


if __name__ == "__main__":
    fastcalc.set_num_threads(2)
    expected = [fastcalc.sigmoid(X * index, backend="numpy") for index in range(4)]
    threads_here = fastcalc.get_num_threads(BACKEND)
    context = multiprocessing.get_context(METHOD)
    with context.Pool(2) as pool:
        from_pool = pool.map(work, range(4))
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as executor:
        from_executor = list(executor.map(work, range(4)))
    for results in (from_pool, from_executor):
        for (result, threads, warned), want in zip(results, expected):
            np.testing.assert_allclose(result, want, rtol=1e-14)
            if METHOD == "fork":  # forked after this process ran threaded kernels
                assert threads == 1, threads
                assert len(warned) <= 1 and all("forked" in text for text in warned), warned
            else:
                assert threads == threads_here and not warned, (threads, warned)
    print("ok")
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["cython", "numba"])
@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_worker_pools_never_hang_or_die(tmp_path, method, backend):
    """Pools of every start method, after the parent ran threaded kernels; workers ask for
    threads.  GNU OpenMP deadlocks (Cython) or aborts (Numba) a forked child that starts
    threads: fastcalc keeps forked children on one thread, with one warning per process."""
    import fastcalc

    if backend not in fastcalc.available_backends():
        pytest.skip(f"{backend} is not available")
    if method not in __import__("multiprocessing").get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    script = tmp_path / "pools.py"
    script.write_text(POOLS)
    result = subprocess.run([sys.executable, str(script), method, backend], capture_output=True,
                            text=True, timeout=600, check=False)
    assert result.returncode == 0 and result.stdout.split() == ["ok"], result.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="os.fork on Linux only")
@pytest.mark.parametrize("backend", ["cython", "numba"])
def test_forked_child_asking_for_threads_warns_once_and_stays_on_one(backend):
    code = RUN_EVERY_KERNEL + f"""
import os, warnings
backend = {backend!r}
if backend in fastcalc.available_backends():
    pid = os.fork()
    if pid == 0:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                fastcalc.set_num_threads(2)
                fastcalc.set_num_threads(3)
            assert len(caught) == 1 and caught[0].category is RuntimeWarning, caught
            assert "forked" in str(caught[0].message) and "spawn" in str(caught[0].message)
            assert fastcalc.get_num_threads(backend) == 1
            y = fastcalc.sigmoid(x, backend=backend)
            assert abs(y[-1] - 1) < 1e-15 and y[0] < 1e-21
        except BaseException as error:
            print(repr(error), flush=True)
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
"""
    result = run_python(code, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
