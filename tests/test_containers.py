"""The containers users' data arrives in: masked arrays, matrices, torch tensors."""

import numpy as np
import pytest

import fastcalc

rng = np.random.default_rng(0)
IMAGES = rng.standard_normal((2, 1, 6, 6))
PROBLEMS = rng.standard_normal((3, 8, 2))
LABELS = (rng.random((3, 8)) < 0.5).astype(float)
SEQUENCES = rng.standard_normal((4, 2, 3))
RNN_WEIGHTS = dict(h0=np.zeros((2, 5)), Wxh=np.ones((5, 3)) / 10, Whh=np.eye(5) / 2,
                   Why=np.ones((1, 5)))

# Each function that combines elements, called with its array argument ``name`` replaced.
CALLS = {
    "sigmoid x": lambda value: fastcalc.sigmoid(value),
    "sigmoid_derivative x": lambda value: fastcalc.sigmoid_derivative(value),
    "correlate2d in1": lambda value: fastcalc.correlate2d(value, np.ones((2, 2))),
    "correlate2d in2": lambda value: fastcalc.correlate2d(np.ones((4, 4)), value),
    "convolve2d in1": lambda value: fastcalc.convolve2d(value, np.ones((2, 2)), "same"),
    "conv2d x": lambda value: fastcalc.conv2d(value, np.ones((1, 1, 3, 3))),
    "conv2d weight": lambda value: fastcalc.conv2d(IMAGES, value),
    "gradient_descent x0": lambda value: fastcalc.gradient_descent(lambda x: 2 * x, value,
                                                                   n_iter=3),
    "fit_logistic X": lambda value: fastcalc.fit_logistic(value, LABELS, n_iter=3),
    "fit_logistic y": lambda value: fastcalc.fit_logistic(PROBLEMS, value, n_iter=3),
    "fit_linear X": lambda value: fastcalc.fit_linear(value, LABELS, n_iter=3),
    "rnn_forward x": lambda value: fastcalc.rnn_forward(value, **RNN_WEIGHTS),
}
VALUES = {
    "sigmoid x": np.linspace(-3, 3, 7), "sigmoid_derivative x": np.linspace(-3, 3, 7),
    "correlate2d in1": rng.standard_normal((5, 5)), "correlate2d in2": np.ones((2, 3)),
    "convolve2d in1": rng.standard_normal((4, 6)), "conv2d x": IMAGES,
    "conv2d weight": np.ones((2, 1, 3, 3)), "gradient_descent x0": np.linspace(-1, 1, 4),
    "fit_logistic X": PROBLEMS, "fit_logistic y": LABELS, "fit_linear X": PROBLEMS,
    "rnn_forward x": SEQUENCES,
}


def _fields(result):
    return [np.asarray(field) for field in (result if isinstance(result, tuple) else (result,))
            if field is not None]


# The elementwise functions keep a masked array's mask (issue 18's ufuncs), not refuse it.
COMBINING = sorted(name for name in CALLS if not name.startswith("sigmoid"))


@pytest.mark.parametrize("call", COMBINING)
def test_a_masked_array_is_a_type_error_where_elements_combine(call):
    value = VALUES[call]
    masked = np.ma.masked_array(value, mask=np.zeros(value.shape, bool))
    masked.mask.flat[0] = True
    name = call.split()[1]
    with pytest.raises(TypeError, match=rf"{name} is a masked array.*{name}\.filled"):
        CALLS[call](masked)
    # Filled, it computes, and the user chose what the masked values are.
    for got, expected in zip(_fields(CALLS[call](masked.filled(0.0))),
                             _fields(CALLS[call](np.where(masked.mask, 0.0, value))),
                             strict=True):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("call", ["correlate2d in1", "correlate2d in2", "convolve2d in1"])
def test_a_matrix_is_read_as_an_ndarray_as_scipy_reads_it(call):
    value = VALUES[call]
    got, expected = CALLS[call](np.asmatrix(value)), CALLS[call](value)
    assert type(got) is np.ndarray
    np.testing.assert_array_equal(got, expected)


# torch's __array_wrap__ predates numpy 2's signature: numpy warns, and still wraps.
@pytest.mark.filterwarnings("ignore:__array_wrap__ must accept context:DeprecationWarning")
@pytest.mark.parametrize("call", sorted(CALLS))
def test_a_torch_tensor_that_requires_grad_says_to_detach_it(call):
    torch = pytest.importorskip("torch")
    tensor = torch.tensor(VALUES[call], requires_grad=True)
    name = call.split()[1]
    with pytest.raises(TypeError, match=rf"{name} is a torch tensor that requires grad: "
                                        rf"pass {name}\.detach\(\)"):
        CALLS[call](tensor)
    for got, expected in zip(_fields(CALLS[call](tensor.detach())),
                             _fields(CALLS[call](VALUES[call])), strict=True):
        np.testing.assert_array_equal(got, expected)
