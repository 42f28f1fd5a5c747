"""The seed's figures, computed with fastcalc: one function per figure.

Every function returns a :class:`matplotlib.figure.Figure` built without
``pyplot``: nothing is shown, no window or GUI backend is touched, and
nothing is left in pyplot's global state (a headless server or a test can
call them freely).  Save one with ``fig.savefig("sigmoid.png")``; in a
notebook, a returned figure displays itself.  The defaults reproduce the
seed's slides; the arguments take your own functions and data.

Needs matplotlib: ``pip install "fastcalc[plot]"``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

try:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
except ImportError as error:  # pragma: no cover (the plot extra is installed in the tests)
    raise ImportError(
        'fastcalc.plot needs matplotlib: pip install "fastcalc[plot]"'
    ) from error

from fastcalc import calculus
from fastcalc.activations import sigmoid
from fastcalc.convolution import correlate2d
from fastcalc.optim import fit_logistic, gradient_descent
from fastcalc.rnn import rnn_forward

__all__ = [
    "SEED_NEURON",
    "plot_convolution",
    "plot_derivative",
    "plot_digits",
    "plot_gradient_descent",
    "plot_normal_probability",
    "plot_rnn_states",
    "plot_sigmoid",
    "plot_surface",
    "plot_taylor",
    "plot_training_loss",
]

FIGSIZE = (10, 6)  # inches: 1000 x 600 pixels at 100 dpi, the seed's size


def _seed_f(x):
    return x**2 + 5 * x + 6


def _seed_df(x):
    return 2 * x + 5


def _axes(title: str, xlabel: str, ylabel: str, figsize=FIGSIZE):
    figure = Figure(figsize=figsize, layout="constrained")
    axes = figure.add_subplot()
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes.grid(True)
    return figure, axes


def plot_sigmoid(x=None) -> Figure:
    """Slide 1: the sigmoid, with its derivative.

    Parameters
    ----------
    x : array_like, optional
        Where to draw it (default: 100 points on [-10, 10]).

    Examples
    --------
    >>> from fastcalc.plot import plot_sigmoid
    >>> plot_sigmoid().savefig("sigmoid.png")  # doctest: +SKIP
    """
    x = np.linspace(-10, 10, 100) if x is None else np.asarray(x)
    figure, axes = _axes("Sigmoid Function", "x", "sigmoid(x)")
    s = sigmoid(x)
    axes.plot(x, s, label="sigmoid(x) = 1 / (1 + exp(-x))")
    axes.plot(x, s * (1 - s), "--", label="sigmoid'(x) = sigmoid(x) (1 - sigmoid(x))")
    axes.legend()
    return figure


def plot_derivative(f: Callable | None = None, x=None, *, df: Callable | None = None,
                    name: str | None = None) -> Figure:
    """Slide 2: a function with its derivative.

    Parameters
    ----------
    f : callable, optional
        An elementwise function (default: the seed's ``x**2 + 5x + 6``).
    x : array_like, optional
        Where to draw it (default: 100 points on [-10, 5]).
    df : callable, optional
        Its derivative; by default the numerical one, from
        :func:`fastcalc.derivative` (the exact ``2x + 5`` for the seed's f).
    name : str, optional
        How the legend writes f (default: ``"f(x)"``, or the seed's formula).
    """
    seed = f is None
    if seed:
        f, df = _seed_f, _seed_df
    x = np.linspace(-10, 5, 100) if x is None else np.asarray(x)
    if name is None:
        name = "f(x) = x^2 + 5x + 6" if seed else "f(x)"
    slope = calculus.derivative(f, x) if df is None else df(x)
    figure, axes = _axes("Function and its Derivative", "x", "y")
    axes.plot(x, f(x), label=name)
    axes.plot(x, slope, label="f'(x) = 2x + 5" if seed else "f'(x)")
    axes.axhline(0, color="gray", linewidth=0.8)
    axes.legend()
    return figure


def plot_gradient_descent(f: Callable | None = None, grad: Callable | None = None,
                          x0: float = 0.0, lr: float = 0.1, n_iter: int = 100) -> Figure:
    """Slide 3: the iterates of gradient descent on the curve, not just the end point.

    Parameters
    ----------
    f, grad : callable, optional
        The function and its gradient (default: the seed's f and ``2x + 5``).
    x0, lr, n_iter
        As for :func:`fastcalc.gradient_descent` (default: the seed's 0,
        0.1 and 100).
    """
    f, grad = (_seed_f, _seed_df) if f is None else (f, grad)
    if grad is None:
        raise TypeError("grad is needed with f (the gradient of f, for gradient_descent)")
    # One scalar problem: numpy runs it at once, where Numba would first compile grad.
    path = gradient_descent(grad, x0, lr, n_iter, history=True, backend="numpy").history
    low, high = min(path.min(), x0) - 1, max(path.max(), x0) + 1
    span = max(high - low, 8.0)
    centre = (low + high) / 2
    x = np.linspace(centre - span / 2, centre + span / 2, 200)
    figure, axes = _axes(f"Gradient Descent: minimum found at x = {path[-1]:.2f}", "x", "f(x)")
    axes.plot(x, f(x), label="f(x)")
    axes.plot(path, f(path), "o-", color="tab:red", markersize=4, linewidth=1,
              label=f"iterates (lr = {lr}, {n_iter} steps)")
    axes.plot([path[-1]], [f(path[-1])], "*", color="black", markersize=14,
              label=f"minimum: f({path[-1]:.2f}) = {f(path[-1]):.2f}")
    axes.legend()
    return figure


# The seed's slide 4: its inputs, targets and starting weights (np.random.seed(1)).
SEED_NEURON = (
    np.array([[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=np.float64),
    np.array([0.0, 1.0, 1.0, 0.0]),
    2 * np.random.RandomState(1).random_sample(3) - 1,
)


def plot_training_loss(loss=None) -> Figure:
    """Slide 4: the training loss of the sigmoid neuron, step by step.

    Parameters
    ----------
    loss : array_like, shape (steps,) or (P, steps), optional
        Losses per step, e.g. ``fit_logistic(...).loss`` (one line per
        problem).  By default, the seed's neuron: its data and starting
        weights, squared error summed, lr = 1, 10000 steps.
    """
    if loss is None:
        X, y, w0 = SEED_NEURON
        loss = fit_logistic(X, y, lr=1.0, n_iter=10_000, loss="squared", reduction="sum",
                            fit_intercept=False, w0=w0).loss
    loss = np.atleast_2d(loss)
    figure, axes = _axes("Training the Sigmoid Neuron by Backpropagation", "step",
                         "loss (before the step)")
    steps = np.arange(1, loss.shape[1] + 1)
    for row in loss:
        axes.plot(steps, row, linewidth=1.5 if loss.shape[0] == 1 else 0.5)
    # Logarithmic axes where the values span decades: the first steps, the loss's fall.
    if loss.shape[1] > 100:
        axes.set_xscale("log")
    if np.all(loss > 0) and loss.max() > 10 * loss.min():
        axes.set_yscale("log")
    axes.text(0.98, 0.95, f"final loss {loss[:, -1].mean():.4g}", transform=axes.transAxes,
              ha="right", va="top")
    return figure


def plot_surface(f: Callable | None = None, x=None, y=None) -> Figure:
    """Slide 5: the 3-D surface of a function of two variables.

    Parameters
    ----------
    f : callable, optional
        ``f(X, Y)`` on meshgrids (default: ``sin(sqrt(x**2 + y**2))``).
    x, y : array_like, optional
        The grid's coordinates (default: 30 points on [-6, 6] each).
    """
    f = (lambda X, Y: np.sin(np.sqrt(X**2 + Y**2))) if f is None else f
    x = np.linspace(-6, 6, 30) if x is None else np.asarray(x)
    y = np.linspace(-6, 6, 30) if y is None else np.asarray(y)
    X, Y = np.meshgrid(x, y)
    figure = Figure(figsize=FIGSIZE, layout="constrained")
    axes = figure.add_subplot(projection="3d")
    surface = axes.plot_surface(X, Y, f(X, Y), cmap="viridis")
    axes.set(title="Complex 3D Function", xlabel="X", ylabel="Y", zlabel="f(X, Y)")
    figure.colorbar(surface, ax=axes, shrink=0.7, label="f(X, Y)")
    return figure


def plot_normal_probability(a: float = -1.0, b: float = 1.0, mu: float = 0.0,
                            sigma: float = 1.0) -> Figure:
    """Slide 8: the normal density, the area between a and b shaded, its probability on top.

    Parameters
    ----------
    a, b : float
        The bounds (default: the seed's -1 and 1).
    mu, sigma : float
        The distribution (default: standard normal).
    """
    probability = calculus.normal_probability(a, b, mu, sigma)
    x = np.linspace(mu - 4 * sigma, mu + 4 * sigma, 400)
    density = np.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
    figure, axes = _axes(f"Normal Distribution: P({a:g} < X < {b:g}) = {probability:.4f}",
                         "X", "Probability Density")
    axes.plot(x, density, "b", label=f"Normal Distribution (mu = {mu:g}, sigma = {sigma:g})")
    axes.fill_between(x, density, where=(x >= a) & (x <= b), color="red", alpha=0.3,
                      label=f"P({a:g} < X < {b:g})")
    axes.legend()
    return figure


def plot_taylor(orders: Sequence[int] = (1, 3, 5), x=None) -> Figure:
    """Slide 9: exp and its Taylor polynomials around 0.

    Parameters
    ----------
    orders : sequence of int
        Numbers of terms, as in the seed's ``taylor_series(x, n)`` (default
        1, 3, 5).
    x : array_like, optional
        Where to draw them (default: 100 points on [-2, 2]).
    """
    x = np.linspace(-2, 2, 100) if x is None else np.asarray(x)
    figure, axes = _axes("Taylor Series Approximation of exp(x)", "x", "y")
    axes.plot(x, np.exp(x), linewidth=2.5, label="exp(x)")
    for n in orders:
        axes.plot(x, calculus.exp_taylor(x, n), "--", label=f"Taylor (n={n})")
    axes.legend()
    return figure


SOBEL_X = np.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])


def plot_convolution(image=None, kernel=None) -> Figure:
    """Slide 10: an image, a kernel and their correlation, side by side.

    Parameters
    ----------
    image : array_like, 2-D, optional
        Default: a 10 x 10 random image (seed 0), as on the slide.
    kernel : array_like, 2-D, optional
        Default: the Sobel x kernel.

    Notes
    -----
    The seed's ``convolve2d`` slides the kernel without flipping it, which
    is a correlation: this draws ``fastcalc.correlate2d(image, kernel,
    "valid")``, what the seed computes (and what CNNs call convolution).
    """
    image = np.random.default_rng(0).random((10, 10)) if image is None else np.asarray(image)
    kernel = SOBEL_X if kernel is None else np.asarray(kernel)
    output = correlate2d(image, kernel, mode="valid")
    figure = Figure(figsize=(15, 5), layout="constrained")
    titles = ("Original Image", "Kernel (Sobel X)" if kernel is SOBEL_X else "Kernel",
              "Convolved Image (correlate2d, valid)")
    for axes, data, title in zip(figure.subplots(1, 3), (image, kernel, output), titles,
                                 strict=True):
        shown = axes.imshow(data, cmap="gray")
        axes.set(title=title, xlabel="column", ylabel="row")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        figure.colorbar(shown, ax=axes, shrink=0.8)
    return figure


def plot_rnn_states(hidden=None) -> Figure:
    """Slide 11: the RNN's hidden states over time, one line per unit.

    Parameters
    ----------
    hidden : array_like, shape (T, H), optional
        Hidden states, e.g. ``rnn_forward(...)[0]`` for one sequence.  By
        default the seed's RNN (3 hidden units, 2 inputs) run over 30 steps
        of random inputs, its weights drawn with scale 0.5 rather than the
        seed's 0.01 (whose states stay near 0 and draw flat lines).
    """
    if hidden is None:
        rng = np.random.default_rng(0)
        hidden_size, input_size, steps = 3, 2, 30
        Wxh = rng.standard_normal((hidden_size, input_size)) * 0.5
        Whh = rng.standard_normal((hidden_size, hidden_size)) * 0.5
        Why = rng.standard_normal((input_size, hidden_size)) * 0.5
        hidden, _ = rnn_forward(rng.standard_normal((steps, input_size)), None, Wxh, Whh, Why)
    hidden = np.asarray(hidden)
    if hidden.ndim != 2:
        raise ValueError(f"hidden must be (T, H), got shape {hidden.shape}")
    figure, axes = _axes("RNN Hidden States over Time", "time step t", "h[t] (tanh)")
    for unit in range(hidden.shape[1]):
        axes.plot(np.arange(hidden.shape[0]), hidden[:, unit], "o-", markersize=3,
                  label=f"unit {unit}")
    axes.set_ylim(-1.05, 1.05)
    axes.legend()
    return figure


def plot_digits(images=None, labels=None, predictions=None, *, columns: int = 10) -> Figure:
    """Slide 12: digit images with their labels (and a classifier's predictions).

    Parameters
    ----------
    images : array_like, shape (N, H, W) or (N, 1, H, W), optional
        The images (grey, any range).  By default 40 of the synthetic
        digits the demo trains its CNN on (see ``fastcalc._examples``).
    labels : array_like of int, shape (N,)
        Their digits (needed with ``images``).
    predictions : array_like of int, shape (N,), optional
        A model's digits: each title reads ``label -> prediction``, in red
        where they differ.
    columns : int
        Images per row.
    """
    if images is None:
        from fastcalc._examples import digit_images

        images, labels = digit_images(40, seed=0)
    elif labels is None:
        raise TypeError("labels are needed with images")
    images = np.asarray(images)
    images = images.reshape(len(images), *images.shape[-2:])
    rows = max(1, -(-len(images) // columns))
    figure = Figure(figsize=FIGSIZE, layout="constrained")
    figure.suptitle("Digits: label" + (" -> prediction" if predictions is not None else ""))
    for k, axes in enumerate(figure.subplots(rows, columns, squeeze=False).ravel()):
        axes.set_axis_off()
        if k >= len(images):
            continue
        axes.imshow(images[k], cmap="gray")
        if predictions is None:
            axes.set_title(str(labels[k]), fontsize=9)
        else:
            wrong = predictions[k] != labels[k]
            axes.set_title(f"{labels[k]} -> {predictions[k]}", fontsize=9,
                           color="red" if wrong else "black")
    return figure
