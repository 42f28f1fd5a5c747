"""The fuzz suite's cases, and the interpreter that runs them (``tests/test_fuzz.py`` drives it).

A case is a JSON object: a public function, its arguments as *specs* (how to
build each value: an array of some shape, dtype, memory layout and values; a
literal; a special float; a gradient function; an ``out=`` buffer), and at
most one argument that was deliberately mangled (``"mutated"``).  Cases are
drawn by hypothesis (:func:`cases`) in the test process and run here, in a
child interpreter, so that a crash or a hang is caught and reported with its
case rather than taking the test run down.

Run as a script, this module reads cases as JSON lines on stdin.  For each it
prints ``{"start": i}`` before and ``{"index": i, "problem": ...}`` after
(``problem`` is None when the case passed), flushing both: the last
``start`` without an answer is the case that crashed or hung.

What passes: the numpy reference either returns, and every other backend
returns the same result (the same shapes, dtypes, NaN and infinity
positions, and values within the tolerance of the dtype), or it raises a
TypeError or ValueError, every other backend raises the same type, and the
message names the mutated argument (or, for a shape mutation, any argument;
or one the case lists in ``"also_named"``: arguments whose random values may
be invalid on their own).  No call may change its inputs.
"""

from __future__ import annotations

import json
import math
import sys
import traceback
import warnings

import numpy as np

FUNCTIONS_WITH_BACKENDS = (
    "sigmoid", "sigmoid_derivative", "correlate2d", "convolve2d", "conv2d", "conv2d_backward",
    "rnn_forward", "rnn_backward", "gradient_descent", "fit_logistic", "fit_linear",
)
# The backends that run a function, where not all do (Cython has no kernel for a user's grad).
BACKENDS_OF = {"gradient_descent": ("numpy", "numba", "auto")}
FUNCTIONS_WITHOUT_BACKENDS = (
    "derivative", "gradient", "jacobian", "check_grad", "integrate", "normal_probability",
    "taylor", "exp_taylor",
)

# Every kind of numpy dtype: the floating ones fastcalc computes in, the ones
# it converts, and the ones it must reject with a TypeError.
DTYPES = ("float64", "float32", "float16", "longdouble", "int8", "int16", "int32", "int64",
          "uint8", "uint16", "uint32", "uint64", "bool", "complex64", "complex128", "object",
          "U3", "S3", "datetime64[s]", "timedelta64[s]", "V8")
LAYOUTS = ("C", "F", "strided", "negative", "readonly", "big-endian", "unaligned", "broadcast",
           "list")
FILLS = ("normal", "nonfinite", "large", "ints")
# Integers at and past the C types' limits, and other junk for integer arguments.
EXTREME_INTS = (0, -1, -2**31, 2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**61, 2**62, 2**63 - 1, 2**63,
                2**64, -2**63, -2**63 - 1, 10**30)
# For counts that set a call's length (n_iter, n): only values that must be
# rejected, since a huge valid one would simply run for a very long time.
JUNK_COUNTS = (-1, -2**31, 2**63, 2**64, -2**63 - 1, 10**30)
JUNK_SCALARS = ({"kind": "float", "value": "nan"}, {"kind": "float", "value": "inf"},
                {"kind": "float", "value": "-inf"}, {"kind": "literal", "value": -1.5},
                {"kind": "literal", "value": 2.5}, {"kind": "literal", "value": "3"},
                {"kind": "literal", "value": None}, {"kind": "literal", "value": True},
                {"kind": "literal", "value": [1, 2, 3]}, {"kind": "literal", "value": {}},
                {"kind": "complex"}, {"kind": "array", "shape": [2], "dtype": "float64",
                                      "layout": "C", "fill": "normal", "seed": 0})
THREADS = (1, 2, 3, 8)


# --- building values from specs -------------------------------------------------------------

def build_array(spec: dict):
    """The array a spec describes (or a nested list, for the "list" layout)."""
    shape, dtype, layout = tuple(spec["shape"]), np.dtype(spec["dtype"]), spec["layout"]
    rng = np.random.default_rng(spec["seed"])
    count = math.prod(shape)
    fill = spec["fill"]
    if fill == "normal":
        values = rng.standard_normal(count)
    elif fill == "nonfinite":
        values = rng.standard_normal(count)
        values[rng.random(count) < 0.15] = np.inf
        values[rng.random(count) < 0.1] = -np.inf
        values[rng.random(count) < 0.1] = np.nan
    elif fill == "large":
        values = rng.standard_normal(count) * 1e30
    elif fill == "labels":
        values = rng.integers(0, 2, count).astype(np.float64)
    else:
        values = rng.integers(-3, 4, count).astype(np.float64)
    values = values.reshape(shape)
    if dtype.kind in "MmV":
        base = np.asarray(np.nan_to_num(values)).astype(np.int64)
        array = base.view(dtype) if dtype.itemsize == 8 else base
    elif dtype.kind in "US":
        array = values.astype(dtype)
    elif dtype.kind in "biu":
        array = np.asarray(np.nan_to_num(values, posinf=1, neginf=-1)).astype(dtype)
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            array = values.astype(dtype)
    return _lay_out(array, layout)


def _lay_out(array: np.ndarray, layout: str):
    if layout == "C":
        return array
    if layout == "F":
        return np.asfortranarray(array)
    if layout == "strided":
        if array.ndim == 0:
            return array
        doubled = np.repeat(array, 2, axis=-1)
        return doubled[..., ::2]
    if layout == "negative":
        if array.ndim == 0:
            return array
        return np.ascontiguousarray(array[..., ::-1])[..., ::-1]
    if layout == "readonly":
        array = array.copy()
        array.flags.writeable = False
        return array
    if layout == "big-endian":
        if array.dtype.kind not in "biufc" or array.dtype.itemsize == 1:
            return array
        return array.astype(array.dtype.newbyteorder(">"))
    if layout == "unaligned":
        if array.dtype.kind not in "biufc" or array.dtype.itemsize == 1:
            return array
        buffer = bytearray(array.nbytes + 1)
        unaligned = np.frombuffer(buffer, dtype=array.dtype, offset=1,
                                  count=array.size).reshape(array.shape)
        unaligned[...] = array
        return unaligned
    if layout == "broadcast":  # zero strides: every row the same
        if array.ndim == 0 or array.shape[0] == 0:
            return array
        return np.broadcast_to(array[:1], array.shape)
    if array.size == 0:  # a nested list would lose the empty array's shape
        return array
    return array.tolist()


def _grad(name: str):
    if name == "linear":
        return lambda x: 2 * x + 5
    if name == "bowl":
        return lambda x: x - 1.5
    return "not a function"


def _scalar_function(name: str):
    if name == "sum_of_cubes":
        return lambda x: np.sum(np.asarray(x) ** 3, axis=-1)
    if name == "elementwise":
        return np.sin
    return 42


def build(spec):
    """The value of one argument spec."""
    kind = spec["kind"]
    if kind == "array":
        return build_array(spec)  # "mutation" says how the test mangled it, if it did
    if kind == "literal":
        value = spec["value"]
        return tuple(value) if spec.get("tuple") else value
    if kind == "float":
        return float(spec["value"])
    if kind == "complex":
        return 1 + 2j
    if kind == "numpy-int":
        return np.int64(spec["value"]) if -2**63 <= spec["value"] < 2**63 else spec["value"]
    if kind == "grad":
        return _grad(spec["name"])
    if kind == "function":
        return _scalar_function(spec["name"])
    raise ValueError(f"unknown spec kind {kind!r}")


def _out_buffer(how: str, arguments: dict, reference):
    """An ``out=`` of the kind ``how``, next to the reference's result (an array)."""
    if how == "same":
        return arguments["x"] if "x" in arguments else arguments["in1"]
    if how == "fresh":
        return np.empty_like(reference)
    if how == "fortran":
        return np.asfortranarray(np.empty_like(reference))
    if how == "subclass":
        return np.empty_like(reference).view(np.ma.MaskedArray).data.view(_Subclass)
    if how == "wrong-dtype":
        return np.empty(reference.shape, np.int32)
    if how == "wrong-shape":
        return np.empty((*reference.shape, 2), reference.dtype)
    if how == "readonly":
        buffer = np.empty_like(reference)
        buffer.flags.writeable = False
        return buffer
    if how == "big-endian":
        return np.empty(reference.shape, reference.dtype.newbyteorder(">"))
    return [0.0] * max(1, reference.size)  # "list": not an array


class _Subclass(np.ndarray):
    pass


# --- running a case -------------------------------------------------------------------------

class Outcome:
    """What one call did: ``value`` (its result) or ``error`` (the exception)."""

    def __init__(self, value=None, error=None):
        self.value, self.error = value, error


def _call(function, arguments: dict, backend: str | None) -> Outcome:
    keywords = dict(arguments)
    if backend is not None:
        keywords["backend"] = backend
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Outcome(value=function(**keywords))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # noqa: BLE001 - every outcome is judged
        return Outcome(error=error)


def _arrays_of(value) -> list:
    """The arrays (and scalars) in a result: a plain one, a tuple, a NamedTuple."""
    if value is None:
        return []
    if isinstance(value, tuple):
        return [array for item in value for array in _arrays_of(item)]
    if hasattr(value, "_asdict"):
        return [array for item in value._asdict().values() for array in _arrays_of(item)]
    return [value]


def _difference(reference, candidate) -> str | None:
    """Why two results differ, or None."""
    expected, actual = _arrays_of(reference), _arrays_of(candidate)
    if len(expected) != len(actual):
        return f"{len(actual)} results, the reference has {len(expected)}"
    for position, (want, got) in enumerate(zip(expected, actual, strict=True)):
        if type(want) is not type(got) and not (np.isscalar(want) and np.isscalar(got)):
            return f"result {position} is {type(got).__name__}, reference {type(want).__name__}"
        want, got = np.asarray(want), np.asarray(got)
        if want.shape != got.shape or want.dtype != got.dtype:
            return (f"result {position}: {got.dtype}{got.shape}, reference "
                    f"{want.dtype}{want.shape}")
        if want.dtype.kind not in "fc":
            if not np.array_equal(want, got):
                return f"result {position}: values differ"
            continue
        for special, test in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
            if not np.array_equal(test(want), test(got)):
                return (f"result {position}: {special} at {int(test(got).sum())} positions, "
                        f"reference {int(test(want).sum())}")
        finite = np.isfinite(want)
        if not finite.any():
            continue
        scale = max(1.0, float(np.max(np.abs(want[finite]))))
        tolerance = 1e-3 if want.dtype.itemsize <= 4 else 1e-8
        error = float(np.max(np.abs(want[finite].astype(np.float64)
                                    - got[finite].astype(np.float64))))
        if not error <= tolerance * scale:
            return f"result {position}: max difference {error:.3g} (scale {scale:.3g})"
    return None


def _snapshot(arguments: dict) -> dict:
    return {name: value.copy() for name, value in arguments.items()
            if isinstance(value, np.ndarray) and value.dtype.kind in "biufc"}


def _changed(arguments: dict, snapshot: dict, exempt) -> str | None:
    for name, before in snapshot.items():
        if name in exempt:
            continue
        if not np.array_equal(arguments[name], before, equal_nan=before.dtype.kind in "fc"):
            return f"the call changed its input {name}"
    return None


def _judge_error(error: BaseException, mutated: str | None, others=()) -> str | None:
    """Why ``error`` is not a TypeError or ValueError naming ``mutated`` (or one of ``others``)."""
    if not isinstance(error, (TypeError, ValueError)):
        return f"raised {type(error).__name__}: {error}"
    if mutated is not None and not any(name in str(error) for name in (mutated, *others)):
        return (f"{type(error).__name__} does not name the argument {mutated!r}: "
                f"{str(error)[:300]}")
    return None


def run_case(case: dict, backends: list[str]) -> str | None:
    """Run one case on every backend; None if it passed, else what went wrong."""
    import fastcalc

    function = getattr(fastcalc, case["function"])
    arguments = {name: build(spec) for name, spec in case["arguments"].items()}
    threads = case.get("threads")
    mutated = case.get("mutated")
    if threads is not None:
        outcome = _call(fastcalc.set_num_threads, {"n": build(threads)}, None)
        if outcome.error is not None:
            return _judge_error(outcome.error, "n" if mutated == "threads" else None)
    out_how = case.get("out")
    has_backends = case["function"] in FUNCTIONS_WITH_BACKENDS
    chosen = ([name for name in backends if name in BACKENDS_OF.get(case["function"], backends)]
              if has_backends else [None])
    if out_how is not None:
        # out= is made to match (or, deliberately, not match) the result without it.
        plain = _call(function, arguments, chosen[0])
        if plain.error is not None or not isinstance(plain.value, np.ndarray):
            out_how = None
            mutated = None if mutated == "out" else mutated
    # out="same" writes into the input itself: each backend gets a fresh copy.
    in_place = "x" if "x" in arguments else "in1"
    exempt = {in_place} if out_how == "same" else set()
    results = {}
    for backend in chosen:
        call_arguments = dict(arguments)
        if out_how == "same":
            call_arguments[in_place] = np.array(arguments[in_place])
        if out_how is not None:
            call_arguments["out"] = _out_buffer(out_how, call_arguments, plain.value)
        snapshot = _snapshot(call_arguments)
        results[backend] = _call(function, call_arguments, backend)
        change = _changed(call_arguments, snapshot, exempt | {"out"})
        if change is not None:
            return f"backend {backend}: {change}"
    reference = results[chosen[0]]
    if reference.error is not None:
        others = tuple(case["arguments"]) if case.get("mismatch") else ()
        others += tuple(case.get("also_named", ()))
        if out_how == "same":  # in place: the input's dtype may not be the result's
            others += ("out",)
        problem = _judge_error(reference.error, mutated, others)
        if problem is not None:
            return f"backend {chosen[0]}: {problem}"
        for backend, outcome in results.items():
            if type(outcome.error) is not type(reference.error):
                got = ("returned" if outcome.error is None
                       else f"raised {type(outcome.error).__name__}: {outcome.error}")
                return (f"backend {backend} {got}; the reference raised "
                        f"{type(reference.error).__name__}: {reference.error}")
        return None
    for backend, outcome in results.items():
        if outcome.error is not None:
            return (f"backend {backend} raised {type(outcome.error).__name__}: "
                    f"{outcome.error}; the reference returned")
        difference = _difference(reference.value, outcome.value)
        if difference is not None:
            return f"backend {backend}: {difference}"
    return None


def reproducer(case: dict) -> str:
    """Python that runs ``case`` again, from the repository's root."""
    return ("import json, sys; sys.path.insert(0, 'tests'); import fastcalc, fuzz\n"
            f"case = json.loads({json.dumps(json.dumps(case))})\n"
            "print(fuzz.run_case(case, fastcalc.available_backends()))")


def main() -> None:
    # A call may not take memory out of proportion to its (small) inputs: past
    # this the child gets a MemoryError, which the case reports.
    import resource  # here: POSIX only, and only the child needs it

    limit = 8 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import fastcalc
    from fastcalc import _dispatch

    backends = ["numpy"] + [name for name in fastcalc.available_backends() if name != "numpy"]
    threads = _dispatch.thread_setting()
    for index, line in enumerate(sys.stdin):
        print(json.dumps({"start": index}), flush=True)
        case = json.loads(line)
        try:
            problem = run_case(case, backends)
        except Exception:  # noqa: BLE001 - a bug of the fuzzer itself is reported too
            problem = "the fuzzer failed: " + traceback.format_exc(limit=3)
        fastcalc.set_num_threads(threads)
        print(json.dumps({"index": index, "problem": problem}), flush=True)


if __name__ == "__main__":
    main()
