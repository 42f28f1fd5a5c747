"""Junk input for every public function on every backend, each batch in a child interpreter.

hypothesis draws batches of cases (:mod:`fuzz` says what a case is and what
passes): valid calls in every dtype, shape and memory layout, and calls with
one argument mangled (every numpy dtype, 0-d, empty and huge-but-empty
dimensions, zero and negative strides, unaligned, read-only, overlapping or
wrong ``out=``, integers past the C types' limits, wrong Python types).  A
batch runs in its own interpreter, so a crash or a hang fails the test with
the case that caused it and a reproducer, instead of killing the test run.

CI runs ``FUZZ_BATCHES`` batches (default 6) of ``FUZZ_CASES`` cases (default
120) from a fixed seed; set ``FUZZ_BATCHES`` higher and ``FUZZ_SEED`` to
explore further.  hypothesis draws its simplest batch first (one trivial case
repeated): a smoke test; the others are random.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import fuzz
import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

BATCHES = int(os.environ.get("FUZZ_BATCHES", "6"))
CASES = int(os.environ.get("FUZZ_CASES", "120"))
SEED = int(os.environ.get("FUZZ_SEED", "15"))
# A batch of small calls takes seconds; this only catches a hang.
BATCH_TIMEOUT = 600

small = st.integers(0, 4)
positive = st.integers(1, 5)
seeds = st.integers(0, 2**16)


@st.composite
def arrays(draw, shape, fill="normal", dtypes=("float64", "float64", "float32", "float16",
                                                  "int64", "bool")):
    """A valid array argument: a computed dtype, any memory layout."""
    return {"kind": "array", "shape": list(shape), "dtype": draw(st.sampled_from(dtypes)),
            "layout": draw(st.sampled_from(fuzz.LAYOUTS)),
            "fill": fill if fill == "labels" else draw(st.sampled_from(("normal", fill))),
            "seed": draw(seeds)}


def literal(value):
    return {"kind": "literal", "value": value}


@st.composite
def junk_array(draw, spec):
    """``spec`` mangled: another dtype, another shape, or not an array at all."""
    how = draw(st.sampled_from(("dtype", "dtype", "rank", "empty", "huge-empty", "python")))
    if spec["kind"] != "array":  # an optional array given as None: give one of a wrong shape
        return draw(arrays([draw(positive), draw(positive)]))
    spec = dict(spec, mutation="value")
    if how == "dtype":
        spec["dtype"] = draw(st.sampled_from(fuzz.DTYPES))
        spec["layout"] = draw(st.sampled_from(("C", "F", "readonly", "list")))
    elif how == "rank":
        spec["mutation"] = "shape"
        shape = list(spec["shape"])
        spec["shape"] = shape[1:] if shape and draw(st.booleans()) else [2, *shape]
    elif how in ("empty", "huge-empty"):
        shape = list(spec["shape"]) or [1]
        axis = draw(st.integers(0, len(shape) - 1))
        shape[axis] = 0
        if how == "huge-empty":
            other = draw(st.integers(0, len(shape) - 1))
            if other != axis:
                shape[other] = 2**40
        spec["shape"], spec["layout"], spec["mutation"] = shape, "C", "shape"
    else:
        return draw(st.sampled_from(fuzz.JUNK_SCALARS[5:10] + (literal("abc"),)))
    return spec


@st.composite
def junk_int(draw, pair=False, count=False):
    """An integer argument mangled: past the C limits, not an integer, a bad pair.

    A ``count`` (a number of steps) gets only values that must be rejected.
    """
    choice = draw(st.sampled_from(("extreme", "extreme", "numpy", "scalar", "pair")))
    extremes = fuzz.JUNK_COUNTS if count else fuzz.EXTREME_INTS
    if choice == "extreme":
        return literal(draw(st.sampled_from(extremes)))
    if choice == "numpy":
        return {"kind": "numpy-int", "value": draw(st.sampled_from(extremes))}
    if choice == "pair" and pair:
        values = draw(st.lists(st.sampled_from((1, 2, *fuzz.EXTREME_INTS)), min_size=1,
                               max_size=3))
        return {"kind": "literal", "value": values, "tuple": draw(st.booleans())}
    return draw(st.sampled_from(fuzz.JUNK_SCALARS))


junk_float = st.sampled_from(fuzz.JUNK_SCALARS + tuple(literal(v) for v in (0, -1, 1e308)))
junk_choice = st.sampled_from(tuple(literal(v) for v in ("", "FULL", "bogus", None, 1, ["same"])))
junk_bool = st.sampled_from(tuple(literal(v) for v in ("no", "yes", 1, 0, None, 2.0)))
JUNK = {"array": junk_array, "int": lambda spec: junk_int(), "pair": lambda spec: junk_int(True),
        "count": lambda spec: junk_int(count=True),
        # Not None: a mini-batch fit without a seed draws a new order in every call.
        "seed": lambda spec: junk_int().filter(lambda junk: junk.get("value", 0) is not None),
        "float": lambda spec: junk_float, "choice": lambda spec: junk_choice,
        "bool": lambda spec: junk_bool,
        "callable": lambda spec: st.just(literal("not a function"))}
OUT_KINDS = ("fresh", "fresh", "fortran", "subclass", "same", "big-endian")
JUNK_OUT_KINDS = ("wrong-dtype", "wrong-shape", "readonly", "list")


@st.composite
def mangle(draw, function, arguments, kinds, out=False):
    """The case: ``arguments`` as drawn, or with one of them (of ``kinds``) mangled."""
    case = {"function": function, "arguments": arguments, "mutated": None}
    if draw(st.integers(0, 3)) == 0:
        case["threads"] = literal(draw(st.sampled_from(fuzz.THREADS)))
    choice = draw(st.integers(0, len(kinds) + 2))
    if out and draw(st.booleans()):
        case["out"] = draw(st.sampled_from(OUT_KINDS + JUNK_OUT_KINDS))
        if case["out"] in JUNK_OUT_KINDS:
            case["mutated"] = "out"
            return case
    if choice < len(kinds):
        name, kind = list(kinds.items())[choice]
        arguments[name] = draw(JUNK[kind](arguments.get(name)))
        case["mutated"] = name
        # A changed shape may be reported as a mismatch with another argument.
        case["mismatch"] = arguments[name].get("mutation") == "shape"
    elif choice == len(kinds) and draw(st.integers(0, 3)) == 0:
        case["threads"] = draw(junk_int())
        case["mutated"] = "threads"
    return case


def image_shape(draw, batch_dims=2):
    batch = draw(st.lists(st.integers(0, 3), max_size=batch_dims))
    return [*batch, draw(positive) + draw(small), draw(positive) + draw(small)]


@st.composite
def activation_cases(draw):
    function = draw(st.sampled_from(("sigmoid", "sigmoid_derivative")))
    shape = draw(st.one_of(st.lists(st.integers(0, 5), max_size=3),
                           st.just([70_000]), st.just([300, 250])))
    arguments = {"x": draw(arrays(shape, "nonfinite"))}
    kinds = {"x": "array"}
    if function == "sigmoid_derivative":
        arguments["from_output"] = literal(draw(st.booleans()))
        kinds["from_output"] = "bool"
    return draw(mangle(function, arguments, kinds, out=True))


@st.composite
def filter_cases(draw):
    function = draw(st.sampled_from(("correlate2d", "convolve2d")))
    mode = draw(st.sampled_from(("full", "same", "valid")))
    image = image_shape(draw)
    kernel = [draw(positive), draw(positive)]
    if mode == "valid":  # valid as drawn: the kernel fits the images
        kernel = [min(k, i) for k, i in zip(kernel, image[-2:], strict=True)]
    arguments = {
        "in1": draw(arrays(image, "nonfinite")),
        "in2": draw(arrays(kernel, "nonfinite")),
        "mode": literal(mode),
        "boundary": literal(draw(st.sampled_from(("fill", "wrap", "symm", "pad", "circular",
                                                  "symmetric")))),
        "fillvalue": draw(st.one_of(st.just(literal(0)), st.just(literal(1.5)),
                                    st.just({"kind": "float", "value": "nan"}))),
        "method": literal(draw(st.sampled_from(("auto", "direct", "fft")))),
    }
    kinds = {"in1": "array", "in2": "array", "mode": "choice", "boundary": "choice",
             "fillvalue": "float", "method": "choice"}
    return draw(mangle(function, arguments, kinds, out=True))


@st.composite
def layer_geometry(draw):
    n, c, f = draw(st.integers(0, 3)), draw(positive), draw(positive)
    stride = [draw(st.integers(1, 3)), draw(st.integers(1, 3))]
    padding = [draw(st.integers(0, 2)), draw(st.integers(0, 2))]
    kernel = [draw(st.integers(1, 4)), draw(st.integers(1, 4))]
    image = [max(1, k - 2 * p) + draw(small) for k, p in zip(kernel, padding, strict=True)]
    return n, c, f, stride, padding, kernel, image


def _stride_spec(draw, values):
    return literal(values[0]) if values[0] == values[1] and draw(st.booleans()) else \
        {"kind": "literal", "value": values, "tuple": draw(st.booleans())}


@st.composite
def layer_cases(draw):
    function = draw(st.sampled_from(("conv2d", "conv2d_backward")))
    n, c, f, stride, padding, kernel, image = draw(layer_geometry())
    arguments = {"x": draw(arrays([n, c, *image], "nonfinite")),
                 "weight": draw(arrays([f, c, *kernel], "nonfinite")),
                 "stride": _stride_spec(draw, stride), "padding": _stride_spec(draw, padding)}
    kinds = {"x": "array", "weight": "array", "stride": "pair", "padding": "pair"}
    if function == "conv2d":
        if draw(st.booleans()):
            arguments["bias"] = draw(arrays([f]))
            kinds["bias"] = "array"
    else:
        out = [(i + 2 * p - k) // s + 1 for i, p, k, s in zip(image, padding, kernel, stride,
                                                              strict=True)]
        arguments["grad_out"] = draw(arrays([n, f, *out], "nonfinite"))
        kinds["grad_out"] = "array"
    return draw(mangle(function, arguments, kinds))


@st.composite
def rnn_cases(draw):
    function = draw(st.sampled_from(("rnn_forward", "rnn_backward")))
    t, b, i, h, o = (draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(positive),
                     draw(positive), draw(st.integers(1, 3)))
    single = draw(st.integers(0, 3)) == 0
    batch = [] if single else [b]
    arguments = {"x": draw(arrays([t, *batch, i])),
                 "h0": draw(arrays([*batch, h])) if draw(st.booleans()) else literal(None),
                 "Wxh": draw(arrays([h, i])), "Whh": draw(arrays([h, h])),
                 "Why": draw(arrays([o, h]))}
    kinds = {name: "array" for name in arguments}
    if function == "rnn_forward":
        for name, size in (("bh", h), ("by", o)):
            if draw(st.booleans()):
                arguments[name] = draw(arrays([size]))
                kinds[name] = "array"
    else:
        arguments["dy"] = draw(arrays([t, *batch, o], "nonfinite"))
        arguments["h"] = draw(arrays([t, *batch, h]))
        kinds.update(dy="array", h="array")
        if draw(st.booleans()):
            arguments["dh_last"] = draw(arrays([*batch, h]))
            kinds["dh_last"] = "array"
        if draw(st.booleans()):
            arguments["clip"] = literal(draw(st.sampled_from((0.5, 1.0, 5.0))))
            kinds["clip"] = "float"
    return draw(mangle(function, arguments, kinds))


@st.composite
def descent_cases(draw):
    shape = draw(st.sampled_from(([], [3], [5], [2, 3], [0], [4, 1])))
    arguments = {"grad": {"kind": "grad", "name": draw(st.sampled_from(("linear", "bowl")))},
                 "x0": draw(arrays(shape)), "lr": literal(draw(st.sampled_from((0.01, 0.1)))),
                 "n_iter": literal(draw(st.integers(0, 20))),
                 "momentum": literal(draw(st.sampled_from((0.0, 0.5)))),
                 "tol": draw(st.sampled_from((literal(None), literal(1e-3)))),
                 "history": literal(draw(st.booleans()))}
    kinds = {"grad": "callable", "x0": "array", "lr": "float", "n_iter": "count",
             "momentum": "float", "tol": "float", "history": "bool"}
    return draw(mangle("gradient_descent", arguments, kinds))


@st.composite
def fit_cases(draw):
    function = draw(st.sampled_from(("fit_logistic", "fit_linear")))
    p, n, d = draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(positive)
    problems = [p] if draw(st.booleans()) else []
    fill = "labels" if function == "fit_logistic" else "normal"
    arguments = {"X": draw(arrays([*problems, n, d])), "y": draw(arrays([*problems, n], fill)),
                 "lr": literal(draw(st.sampled_from((0.05, 0.2)))),
                 "n_iter": literal(draw(st.integers(1, 10))),
                 "reduction": literal(draw(st.sampled_from(("mean", "sum")))),
                 "batch_size": literal(draw(st.one_of(st.none(), st.integers(1, n)))),
                 "l2": literal(draw(st.sampled_from((0.0, 0.1)))),
                 "fit_intercept": literal(draw(st.booleans())),
                 "seed": literal(draw(st.integers(0, 5)))}
    kinds = {"X": "array", "y": "array", "lr": "float", "n_iter": "count", "reduction": "choice",
             "batch_size": "int", "l2": "float", "fit_intercept": "bool", "seed": "seed"}
    if draw(st.booleans()):
        arguments["w0"] = draw(arrays([*problems, d] if draw(st.booleans()) else [d]))
        kinds["w0"] = "array"
    if function == "fit_logistic":
        arguments["loss"] = literal(draw(st.sampled_from(("log", "squared"))))
        kinds["loss"] = "choice"
    return draw(mangle(function, arguments, kinds))


@st.composite
def calculus_cases(draw):
    function = draw(st.sampled_from(fuzz.FUNCTIONS_WITHOUT_BACKENDS))
    points = ([3], [2, 3]) if function in ("gradient", "jacobian", "check_grad") else ([], [3])
    x = draw(arrays(draw(st.sampled_from(points)), dtypes=("float64", "float32")))
    if function in ("derivative", "gradient", "jacobian", "check_grad"):
        name = "elementwise" if function in ("derivative", "jacobian") else "sum_of_cubes"
        arguments = {"f": {"kind": "function", "name": name}, "x": x,
                     "method": literal(draw(st.sampled_from(("central", "forward", "backward",
                                                             "five-point"))))}
        kinds = {"f": "callable", "x": "array", "method": "choice"}
        if function == "check_grad":
            arguments["grad"] = {"kind": "function", "name": "elementwise"}
            kinds["grad"] = "callable"
    elif function == "integrate":
        arguments = {"f": {"kind": "function", "name": "elementwise"}, "a": literal(0.0),
                     "b": x, "n": literal(draw(st.sampled_from((None, 8, 64)))),
                     "method": literal(draw(st.sampled_from(("simpson", "trapezoid", "gauss"))))}
        kinds = {"f": "callable", "b": "array", "n": "count", "method": "choice"}
    elif function == "normal_probability":
        arguments = {"a": literal(-1.0), "b": x, "mu": literal(0.0), "sigma": literal(1.0)}
        kinds = {"b": "array", "mu": "float", "sigma": "float"}
    elif function == "taylor":
        arguments = {"coeffs": draw(arrays([draw(positive)])), "x": x, "x0": literal(0.5)}
        kinds = {"coeffs": "array", "x": "array", "x0": "float"}
    else:
        arguments = {"x": x, "n": literal(draw(positive))}
        kinds = {"x": "array", "n": "count"}
    case = draw(mangle(function, arguments, kinds))
    if function == "normal_probability":
        # b's random values may lie below a or be NaN: an error may name the bounds,
        # whichever argument is mutated.
        case["also_named"] = ["a", "b"]
    return case


any_case = st.one_of(activation_cases(), filter_cases(), layer_cases(), rnn_cases(),
                     descent_cases(), fit_cases(), calculus_cases())


def run_batch(cases):
    """Run ``cases`` in a child interpreter; the problems found, each with its reproducer."""
    here = Path(__file__).parent
    lines = "".join(json.dumps(case) + "\n" for case in cases)
    try:
        child = subprocess.run([sys.executable, str(here / "fuzz.py")], input=lines,
                               capture_output=True, text=True, timeout=BATCH_TIMEOUT,
                               cwd=here.parent, check=False)
        output, errors, code = child.stdout, child.stderr, child.returncode
    except subprocess.TimeoutExpired as timeout:
        output, errors, code = timeout.stdout or "", "timed out (a hang)", None
        output = output.decode() if isinstance(output, bytes) else output
    problems, started, finished = [], None, set()
    for line in output.splitlines():
        record = json.loads(line)
        if "start" in record:
            started = record["start"]
            continue
        finished.add(record["index"])
        if record["problem"] is not None:
            problems.append((cases[record["index"]], record["problem"]))
    if started is not None and started not in finished:
        problems.append((cases[started], f"the interpreter died (exit {code}): {errors[-2000:]}"))
    elif code != 0:
        problems.append(({}, f"the fuzz interpreter failed (exit {code}): {errors[-2000:]}"))
    return problems


def describe(problems):
    return "\n\n".join(f"{problem}\n    case: {json.dumps(case)}\n    reproduce with:\n"
                       + fuzz.reproducer(case) for case, problem in problems)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="the child limits its memory (POSIX)")
@seed(SEED)
@settings(max_examples=BATCHES, deadline=None, database=None, phases=[Phase.generate],
          suppress_health_check=list(HealthCheck))
@given(st.lists(any_case, min_size=CASES, max_size=CASES))
def test_junk_input_gives_the_references_result_or_a_named_error(cases):
    problems = run_batch(cases)
    assert not problems, f"{len(problems)} of {len(cases)} cases failed:\n\n" + describe(problems)
