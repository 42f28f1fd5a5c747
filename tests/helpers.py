"""Helpers shared by the test modules: compiled implementations, memory layouts, threads."""

import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np

import fastcalc
from fastcalc import _cython, _dispatch


def kernel_modules(family):
    """``{label: module}`` of every compiled implementation usable here.

    Numba, and every Cython ISA variant this CPU runs (not only the one
    ``auto`` loads), so each compiled build is checked against the reference.
    """
    modules = {}
    if _dispatch.backend_status()["numba"] is None:
        modules["numba"] = _dispatch._module("numba", family)
    for isa in _cython.available_isas(family):
        modules[f"cython-{isa}"] = _cython.load(family, isa)
    return modules


def layouts(array):
    """``{name: view}``: the same values in awkward memory layouts."""
    result = {"C": array}
    if array.ndim >= 2:
        result["Fortran"] = np.asfortranarray(array)
        result["transposed"] = array.T
    if array.ndim >= 1 and array.size:
        doubled = np.repeat(array, 2, axis=-1)
        result["strided"] = doubled[..., ::2]
        result["negative strides"] = array[..., ::-1]
    swapped = array.astype(array.dtype.newbyteorder(">" if array.dtype.byteorder != ">" else "<"))
    result["big-endian" if swapped.dtype.byteorder == ">" else "little-endian"] = swapped
    readonly = array.copy()
    readonly.flags.writeable = False
    result["read-only"] = readonly
    return result


def run_concurrently(work, count=8):
    """Call ``work(index)`` for every index < ``count``, each in its own thread, all at once."""
    barrier = threading.Barrier(count)

    def start(index):
        barrier.wait()
        work(index)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def assert_threads_agree(results, expected, names):
    """Every thread's ``results[i]`` (a tuple of arrays named ``names``) equals ``expected[i]``."""
    for result, want in zip(results, expected, strict=True):
        assert result is not None, "a thread failed"
        for name, actual, value in zip(names, result, want, strict=True):
            np.testing.assert_array_equal(actual, value, err_msg=name)


def assert_gradients_pass_check_grad(loss, arrays, gradients, tolerance):
    """Each of ``gradients`` (``{name: gradient}``) against :func:`fastcalc.check_grad`.

    ``loss(arrays)`` is a scalar function of the named ``arrays``; the
    gradient named ``name`` is checked as the derivative of ``loss`` with
    ``arrays[name]`` varied and every other array held.
    """
    for name, gradient in gradients.items():
        array = arrays[name]

        def loss_of_one(point, name=name, shape=array.shape):
            return loss({**arrays, name: point.reshape(shape)})

        error = fastcalc.check_grad(np.vectorize(loss_of_one, signature="(n)->()"),
                                    lambda point, gradient=gradient: gradient.ravel(),
                                    array.ravel())
        assert error < tolerance, f"{name}: relative error {error:.2e}"


def assert_interrupted(setup, call, label, timeout=600):
    """``call`` (Python source), run after ``setup`` in a fresh interpreter, honours SIGINT.

    The child runs ``call`` once to warm up (compilation is not what is
    interrupted), says how long that took, and runs it again; SIGINT is sent
    a tenth of that time later (0.02 to 0.5 s), early in the call whatever
    the machine's speed.  The child must raise KeyboardInterrupt from that
    call, then run ``call`` once more to completion (the process is still
    sane).  ``call`` must take at least half a second here (else the test
    fails saying so): an interrupt taken only at the call's end must show.
    Prints, after ``label``, how long the warm call took and the seconds from
    SIGINT to the child's report of the KeyboardInterrupt
    (``pytest -m slow -k ctrl_c -s`` lists every call's); no wall time is
    asserted.
    """
    body = textwrap.indent(textwrap.dedent(call).strip(), "    ")
    code = textwrap.dedent(setup) + f"""
import sys, time
def call():
{body}
began = time.perf_counter()
call()
print("ready", time.perf_counter() - began, flush=True)
try:
    call()
except KeyboardInterrupt:
    print("interrupted", flush=True)
else:
    print("finished", flush=True)
    sys.exit(3)
call()
print("sane", flush=True)
"""
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        ready = child.stdout.readline().split()
        assert ready[:1] == ["ready"], f"{ready}\n{child.stderr.read() if not ready else ''}"
        duration = float(ready[1])
        assert duration >= 0.5, f"the call took {duration:.3f} s: too short to test Ctrl-C"
        time.sleep(min(0.5, max(0.02, duration / 10)))
        sent = time.perf_counter()
        child.send_signal(signal.SIGINT)
        reaction = child.stdout.readline().strip()
        latency = time.perf_counter() - sent
        output, errors = child.communicate(timeout=timeout)
    finally:
        child.kill()
    assert reaction == "interrupted", f"{reaction}: {errors}"
    assert child.returncode == 0 and output.split() == ["sane"], f"{output}\n{errors}"
    print(f"{label}: a call of {duration:.2f} s, KeyboardInterrupt {latency:.3f} s after SIGINT")
