"""fastcalc: compiled kernels for the calculus that machine learning runs on.

Every hot path exists three times: a pure-numpy reference (the definition of
truth), a Numba version and a Cython version.  One dispatch picks the fastest
available (``"auto"``) or the one you ask for::

    >>> import numpy as np, fastcalc
    >>> fastcalc.sigmoid(np.array([-1.0, 0.0, 1.0]))
    array([0.26894142, 0.5       , 0.73105858])
"""

__version__ = "0.1.0"

from fastcalc._config import show_config
from fastcalc._dispatch import (
    available_backends,
    get_backend,
    get_num_threads,
    set_backend,
    set_num_threads,
    use_backend,
)
from fastcalc.activations import sigmoid, sigmoid_derivative
from fastcalc.calculus import (
    Integral,
    check_grad,
    derivative,
    exp_taylor,
    gradient,
    integrate,
    jacobian,
    normal_probability,
    taylor,
)
from fastcalc.convolution import conv2d, conv2d_backward, convolve2d, correlate2d
from fastcalc.optim import fit_linear, fit_logistic, gradient_descent
from fastcalc.rnn import RNNGrads, rnn_backward, rnn_forward

__all__ = [
    "Integral",
    "RNNGrads",
    "__version__",
    "available_backends",
    "check_grad",
    "conv2d",
    "conv2d_backward",
    "convolve2d",
    "correlate2d",
    "derivative",
    "exp_taylor",
    "fit_linear",
    "fit_logistic",
    "get_backend",
    "get_num_threads",
    "gradient",
    "gradient_descent",
    "integrate",
    "jacobian",
    "normal_probability",
    "rnn_backward",
    "rnn_forward",
    "set_backend",
    "set_num_threads",
    "show_config",
    "sigmoid",
    "sigmoid_derivative",
    "taylor",
    "use_backend",
]
