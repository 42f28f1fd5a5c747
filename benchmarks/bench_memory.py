"""pytest-benchmark suite: the peak extra memory of every kernel on every backend.

Run: ``pytest benchmarks/bench_memory.py`` (Linux: it reads ``/proc``).  Each
case runs in a fresh interpreter, which builds the inputs, calls the function
once (compilation, caches, FFT plans), then measures two more calls:

- **RSS high-water**: writing 5 to ``/proc/self/clear_refs`` resets the
  process's peak resident size (``VmHWM``); the call runs; the peak less the
  resident size before the call is every page the call touched, whoever
  allocated it (numpy, Numba's runtime, C scratch, scipy.fft's buffers).
  glibc's allocator is told to map every block above 128 kB and give it back
  at once (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``), so that
  memory freed by the warm-up call is not reused unseen.
  It counts whole pages, and small blocks come from the heap: within about
  0.2 MB of zero it is noise (it can even be slightly negative).
- **tracemalloc**: numpy reports its buffers to tracemalloc, so the traced
  peak of a call is what numpy allocated, exactly (not Numba's runtime or C
  allocations, which tracemalloc does not see).

Both are less the memory the arrays the function returns span (views and
broadcasts counted once): the output is not extra.  ``extra_info`` holds
``peak_extra_bytes`` (RSS), its ratio to the output, ``peak_extra_ratio``,
``peak_extra_traced_bytes`` (tracemalloc) and ``output_bytes``.  The time
pytest-benchmark records is the whole child process's, not a speed figure
(``bench_*.py`` time the kernels).
"""

import json
import os
import subprocess
import sys
import tempfile
import textwrap

import pytest

import fastcalc

BACKENDS = [name for name in fastcalc.available_backends() if name != "auto"]

_RNN = """
T, B, I, H, O = 100, 32, 64, 128, 64
x = normal(T, B, I); h0 = normal(B, H)
Wxh, Whh, Why = normal(H, I, scale=0.1), normal(H, H, scale=0.1), normal(O, H, scale=0.1)
"""
_LAYER = "x = normal(32, 16, 64, 64); weight = normal(32, 16, 3, 3)"
# (name, setup, call, backends): ``normal(*shape, scale=1)`` draws float32 arrays.
CASES = [
    ("sigmoid float64 2**22", "x = normal(2**22).astype(np.float64)",
     "fastcalc.sigmoid(x, backend=backend)", BACKENDS),
    ("correlate2d direct 4096x4096 11x11 same float32",
     "image, kernel = normal(4096, 4096), normal(11, 11)",
     'fastcalc.correlate2d(image, kernel, "same", method="direct", backend=backend)', BACKENDS),
    ("correlate2d fft 8192x8192 45x45 same float32",
     "image, kernel = normal(8192, 8192), normal(45, 45)",
     'fastcalc.correlate2d(image, kernel, "same", method="fft")', ["auto"]),
    ("correlate2d fft 2048x2048 45x45 full float64",
     "image, kernel = normal(2048, 2048).astype(np.float64), normal(45, 45).astype(np.float64)",
     'fastcalc.correlate2d(image, kernel, "full", method="fft")', ["auto"]),
    ("conv2d (32, 16, 64, 64) x (32, 16, 3, 3) float32", _LAYER,
     "fastcalc.conv2d(x, weight, padding=1, backend=backend)", BACKENDS),
    ("conv2d_backward (32, 16, 64, 64) x (32, 16, 3, 3) float32",
     _LAYER + "\ngrad_out = normal(32, 32, 64, 64)",
     "fastcalc.conv2d_backward(grad_out, x, weight, padding=1, backend=backend)", BACKENDS),
    ("rnn_forward (100, 32, 64, 128, 64) float32", _RNN,
     "fastcalc.rnn_forward(x, h0, Wxh, Whh, Why, backend=backend)", BACKENDS),
    ("rnn_backward (100, 32, 64, 128, 64) float32",
     _RNN + "h, y = fastcalc.rnn_forward(x, h0, Wxh, Whh, Why)\ndy = normal(T, B, O)",
     "fastcalc.rnn_backward(dy, x, h, h0, Wxh, Whh, Why, backend=backend)", BACKENDS),
    ("fit_logistic 1000 x (256, 8) float32, 100 steps",
     "X = normal(1000, 256, 8); y = (X[..., 0] > 0).astype(np.float32)",
     "fastcalc.fit_logistic(X, y, n_iter=100, backend=backend)", BACKENDS),
    ("gradient_descent 10**6 quadratics float64, 100 steps",
     "x0 = normal(10**6).astype(np.float64)\ndef grad(x):\n    return 2 * x + 5",
     "fastcalc.gradient_descent(grad, x0, 0.1, 100, backend=backend)",
     [name for name in BACKENDS if name != "cython"]),  # Cython runs no user function
]

_CHILD = """
import gc, json, re, tracemalloc
import numpy as np
import fastcalc

backend = {backend!r}
rng = np.random.default_rng(0)
def normal(*shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)
{setup}
def call():
    return {call}

def status(field):
    with open("/proc/self/status") as lines:
        return int(re.search(field + r":\\s+(\\d+) kB", lines.read()).group(1)) * 1024

def arrays(value):
    if isinstance(value, np.ndarray):
        return [value]
    if isinstance(value, tuple):
        return [array for item in value for array in arrays(item)]
    return []

def spanned(values):  # the bytes the arrays span: views and broadcasts counted once
    total, end = 0, 0
    for low, high in sorted(np.lib.array_utils.byte_bounds(a) for a in values if a.size):
        total += max(0, high - max(low, end))
        end = max(end, high)
    return total

result = call()
output = spanned(arrays(result))
del result
gc.collect()
with open("/proc/self/clear_refs", "w") as reset:
    reset.write("5")
before = status("VmRSS")
result = call()
peak = status("VmHWM") - before
del result
gc.collect()
tracemalloc.start()
result = call()
traced = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
print(json.dumps({{"output": output, "rss": peak - output, "traced": traced - output}}))
"""


def measure(setup, call, backend):
    """``{"output", "rss", "traced"}`` bytes of ``call`` after ``setup``, in a fresh interpreter."""
    code = _CHILD.format(backend=backend, setup=textwrap.dedent(setup), call=call)
    # A file rather than -c: Numba caches functions it compiles from a file only.
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(code)
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    try:
        child = subprocess.run([sys.executable, script.name], capture_output=True, text=True,
                               env=env, timeout=600)
    finally:
        os.unlink(script.name)
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout.splitlines()[-1])


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux's /proc")
@pytest.mark.parametrize(
    ("name", "setup", "call", "backend"),
    [(name, setup, call, backend) for name, setup, call, backends in CASES
     for backend in backends],
    ids=[f"{name}-{backend}".replace(" ", "_") for name, _, _, backends in CASES
         for backend in backends],
)
def test_peak_extra_memory(benchmark, name, setup, call, backend):
    benchmark.group = f"memory: {name}"
    found = benchmark.pedantic(measure, (setup, call, backend), rounds=1, iterations=1)
    benchmark.extra_info["output_bytes"] = found["output"]
    benchmark.extra_info["peak_extra_bytes"] = found["rss"]
    benchmark.extra_info["peak_extra_ratio"] = found["rss"] / found["output"]
    benchmark.extra_info["peak_extra_traced_bytes"] = found["traced"]
