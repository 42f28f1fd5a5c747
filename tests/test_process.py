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


def run_python(code, timeout=120):
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
    result = run_python(code, timeout=60)
    assert result.returncode == 0, result.stderr


def test_import_does_not_import_numba_or_the_extensions():
    """Backends load on first use, so ``import fastcalc`` stays fast."""
    result = run_python("""
        import sys, fastcalc
        heavy = [m for m in sys.modules if m == "numba" or m.startswith("fastcalc._cython.")]
        assert not heavy, heavy
    """)
    assert result.returncode == 0, result.stderr
