"""pytest-benchmark suite: is ``"auto"`` ever slower than fastcalc's best own choice?

Run: ``pytest benchmarks/bench_auto.py --benchmark-json=auto.json``, then
``python tools/auto_ratios.py auto.json`` for auto's time over the best
candidate's in every group (flagged above 1.2).  A group is one shape of one
kernel family; its members are ``auto`` and every backend (and, for
correlate2d, method) that gives the results auto gives: the compiled
backends, and for correlate2d the method auto picks for that shape (the
direct sum below ``FFT_MIN_TAPS`` taps; from there auto's FFT is checked per
output, so both the direct sum and the plain FFT are members; whether the
FFT should be picked at all is not this benchmark's question).  The shapes span
each family's range: from calls dominated by Python overhead to calls
dominated by memory bandwidth or arithmetic.
"""

import functools

import numpy as np
import pytest

import fastcalc
from fastcalc import _bench
from fastcalc.convolution import FFT_MIN_TAPS

rng = np.random.default_rng(0)
COMPILED = [backend for backend in ("numba", "cython") if backend in fastcalc.available_backends()]


def _normal(*shape, dtype="float32", scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def _activation_groups():
    groups = {}
    for kernel in ("sigmoid", "sigmoid_derivative"):
        for dtype in ("float32", "float64"):
            for size in (10, 1000, 100_000, 2**20, 2**24):
                # Into out=: the page faults of a fresh 128 MB result would hide the kernel.
                x, out = _normal(size, dtype=dtype), np.empty(size, dtype)
                function = getattr(fastcalc, kernel)
                groups[f"{kernel} {dtype} N={size:,}"] = {
                    backend: functools.partial(function, x, out, backend=backend)
                    for backend in ("auto", *COMPILED)
                }
    return groups


def _correlate_groups():
    groups = {}
    shapes = [(32, 3), (256, 3), (256, 11), (256, 45), (2048, 3), (2048, 11), (1024, 45)]
    for dtype in ("float32", "float64"):
        for side, taps in shapes:
            image, kernel = _normal(side, side, dtype=dtype), _normal(taps, taps, dtype=dtype)
            methods = (("direct", "fft") if taps * taps >= FFT_MIN_TAPS[np.dtype(dtype)]
                       else ("direct",))
            members = {"auto": functools.partial(fastcalc.correlate2d, image, kernel, "same")}
            for backend in COMPILED:
                for method in methods:
                    members[f"{backend} {method}"] = functools.partial(
                        fastcalc.correlate2d, image, kernel, "same", method=method,
                        backend=backend)
            groups[f"correlate2d same {dtype} {side}x{side} {taps}x{taps}"] = members
    # A kernel larger than the image: the image slides over the kernel, whose
    # 100x100 taps then take the checked FFT.
    image, kernel = _normal(100, 100, dtype="float64"), _normal(200, 200, dtype="float64")
    groups["correlate2d full float64 100x100 200x200"] = {
        "auto": functools.partial(fastcalc.correlate2d, image, kernel, "full"),
        **{f"{backend} {method}": functools.partial(fastcalc.correlate2d, image, kernel, "full",
                                                    method=method, backend=backend)
           for backend in COMPILED for method in ("direct", "fft")},
    }
    return groups


def _conv2d_groups():
    groups = {}
    for n, c, side, f in ((1, 1, 28, 8), (8, 3, 32, 16), (32, 16, 64, 32)):
        x, weight = _normal(n, c, side, side), _normal(f, c, 3, 3, scale=0.1)
        grad_out = _normal(n, f, side, side)

        def forward_backward(backend, x=x, weight=weight, grad_out=grad_out):
            fastcalc.conv2d(x, weight, None, 1, 1, backend=backend)
            fastcalc.conv2d_backward(grad_out, x, weight, 1, 1, backend=backend)

        groups[f"conv2d forward+backward float32 x({n},{c},{side},{side}) w({f},{c},3,3)"] = {
            backend: functools.partial(forward_backward, backend)
            for backend in ("auto", *COMPILED)
        }
    return groups


def _fastcalc_groups(cases, backends):
    """``{group: {backend: function}}`` of the ``fastcalc <backend>`` members of ``cases``
    (their peers, torch or JAX, are not fastcalc's choices)."""
    groups = {}
    for case in cases:
        backend = case.implementation.removeprefix("fastcalc ")
        if case.implementation.startswith("fastcalc ") and backend in backends:
            groups.setdefault(f"{case.kernel} {case.dtype}", {})[backend] = case.function
    return groups


def _rnn_groups():
    sizes = ((4, 1, 2, 3, 2), (20, 8, 16, 32, 8), (100, 32, 64, 128, 64))
    cases = [case for case in _bench.rnn_cases(sizes=sizes, dtypes=("float32",))
             if "backward" in case.kernel]
    return _fastcalc_groups(cases, ("auto", *COMPILED))


def _fit_groups():
    cases = [case for problems in (1, 100, 1000) for batch_size in (None, 32)
             for case in _bench.fit_cases((problems, 256, 8, 100), dtypes=("float32",),
                                          batch_sizes=(batch_size,))]
    return _fastcalc_groups(cases, ("auto", *COMPILED))


def _descent_groups():
    cases = [case for problems in (1, 1000, 10**6)
             for case in _bench.descent_cases(problems=problems)]
    return _fastcalc_groups(cases, ("auto", "numba", "numpy"))  # grads run on numpy too


GROUPS = {**_activation_groups(), **_correlate_groups(), **_conv2d_groups(), **_rnn_groups(),
          **_fit_groups(), **_descent_groups()}
MEMBERS = [(group, member) for group, members in GROUPS.items() for member in members]


@pytest.mark.parametrize(("group", "member"), MEMBERS,
                         ids=[f"{group}-{member}" for group, member in MEMBERS])
def test_auto_against_each_choice(benchmark, group, member):
    benchmark.group = group
    benchmark.extra_info["member"] = member
    GROUPS[group][member]()  # compiles a Numba kernel or grad first: auto's steady state
    benchmark(GROUPS[group][member])
