"""fastcalc.plot and ``fastcalc demo``: every figure renders headless, without warnings or pyplot
state, at the seed's size, labelled; custom arguments; the demo's files and printed results."""

import html
import io
import math
import os
import struct
import subprocess
import sys
import warnings

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")

from matplotlib.figure import Figure  # noqa: E402

import fastcalc  # noqa: E402
from fastcalc import cli, plot  # noqa: E402

PLOT_FUNCTIONS = sorted(name for name in plot.__all__ if name.startswith("plot_"))
WITH_LEGEND = {"plot_sigmoid", "plot_derivative", "plot_gradient_descent",
               "plot_normal_probability", "plot_taylor", "plot_rnn_states"}
SIZE = {"plot_convolution": (1500, 500)}  # pixels at dpi=100; (1000, 600) for the others
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def pyplot():
    """pyplot on the Agg backend, imported here only: to check its state stays untouched."""
    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    assert png[:8] == PNG_SIGNATURE and png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


def render(pyplot, function, *args, **kwargs):
    """``(figure, png bytes)``: the figure built and saved at dpi=100, any warning an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figure = function(*args, **kwargs)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100)
    assert pyplot.get_fignums() == [], f"{function.__name__} left figures in pyplot"
    return figure, buffer.getvalue()


@pytest.fixture(scope="module")
def defaults(pyplot):
    """``{name: (figure, png)}`` of every plot function called with its defaults, once."""
    return {name: render(pyplot, getattr(plot, name)) for name in PLOT_FUNCTIONS}


def main_axes(figure):
    """The figure's axes without its colorbars."""
    return [axes for axes in figure.axes if axes.get_label() != "<colorbar>"]


def legend_labels(axes):
    legend = axes.get_legend()
    assert legend is not None
    return [text.get_text() for text in legend.get_texts()]


def seed_convolve2d(image, kernel):
    """The seed's slide 10 loop (a correlation: the kernel is not flipped)."""
    kh, kw = kernel.shape
    output = np.zeros((image.shape[0] - kh + 1, image.shape[1] - kw + 1))
    for i in range(output.shape[0]):
        for j in range(output.shape[1]):
            output[i, j] = np.sum(image[i:i + kh, j:j + kw] * kernel)
    return output


# ---------------------------------------------------------------------------------------------
# 1. every figure with its defaults

def test_the_plot_functions_are_all_there():
    assert set(PLOT_FUNCTIONS) >= {
        "plot_convolution", "plot_derivative", "plot_gradient_descent",
        "plot_normal_probability", "plot_rnn_states", "plot_sigmoid", "plot_surface",
        "plot_taylor", "plot_training_loss"}
    assert WITH_LEGEND <= set(PLOT_FUNCTIONS)


@pytest.mark.parametrize("name", PLOT_FUNCTIONS)
def test_the_default_figure_renders_at_the_seed_size(defaults, name):
    figure, png = defaults[name]
    assert isinstance(figure, Figure)
    assert len(png) > 5000  # a real picture, not a blank header
    assert png_size(png) == SIZE.get(name, (1000, 600))


@pytest.mark.parametrize("name", sorted(set(PLOT_FUNCTIONS) - {"plot_digits"}))
def test_every_axes_has_a_title_and_labels(defaults, name):
    figure, _ = defaults[name]
    axes_list = main_axes(figure)
    assert len(axes_list) == (3 if name == "plot_convolution" else 1)
    for axes in axes_list:
        assert axes.get_title().strip(), f"{name}: an axes without a title"
        assert axes.get_xlabel().strip() and axes.get_ylabel().strip(), name
        if hasattr(axes, "get_zlabel"):  # the 3-D surface
            assert axes.get_zlabel().strip()


def test_digits_figure_titles_every_image_with_its_label(pyplot):
    images = np.random.default_rng(0).random((12, 1, 8, 8))
    labels, predictions = np.arange(12) % 10, np.arange(12) % 10
    predictions[3] = 7
    figure, _ = render(pyplot, plot.plot_digits, images, labels, predictions, columns=5)
    shown = [axes for axes in figure.axes if axes.images]
    assert len(shown) == 12 and len(figure.axes) == 15  # 3 rows of 5, the last 3 empty
    assert [axes.get_title() for axes in shown] == [f"{k % 10} -> {7 if k == 3 else k % 10}"
                                                   for k in range(12)]
    assert [axes.title.get_color() for axes in shown].count("red") == 1
    np.testing.assert_array_equal(shown[4].images[0].get_array(), images[4, 0])
    with pytest.raises(TypeError, match="labels"):
        plot.plot_digits(images)


@pytest.mark.parametrize("name", sorted(WITH_LEGEND))
def test_figures_with_lines_have_a_legend(defaults, name):
    (axes,) = main_axes(defaults[name][0])
    labels = legend_labels(axes)
    lines = [line for line in axes.get_lines() if not line.get_label().startswith("_")]
    assert lines and len(labels) >= len(lines)
    assert {line.get_label() for line in lines} <= set(labels)
    assert all(label.strip() for label in labels)


def test_sigmoid_figure_draws_the_sigmoid_and_its_slope(defaults):
    (axes,) = main_axes(defaults["plot_sigmoid"][0])
    curve, slope = axes.get_lines()[:2]
    x = curve.get_xdata()
    assert x[0] == -10 and x[-1] == 10 and len(x) == 100
    np.testing.assert_allclose(curve.get_ydata(), 1 / (1 + np.exp(-x)), rtol=1e-12)
    np.testing.assert_allclose(slope.get_ydata(), np.exp(-x) / (1 + np.exp(-x)) ** 2,
                               rtol=1e-10)


def test_derivative_figure_draws_the_seed_function(defaults):
    (axes,) = main_axes(defaults["plot_derivative"][0])
    f, df = axes.get_lines()[:2]
    x = f.get_xdata()
    assert x[0] == -10 and x[-1] == 5
    np.testing.assert_allclose(f.get_ydata(), x**2 + 5 * x + 6)
    np.testing.assert_allclose(df.get_ydata(), 2 * x + 5)
    assert legend_labels(axes)[:2] == ["f(x) = x^2 + 5x + 6", "f'(x) = 2x + 5"]


def test_gradient_descent_title_is_the_seed_minimum(defaults):
    (axes,) = main_axes(defaults["plot_gradient_descent"][0])
    assert "-2.50" in axes.get_title()
    iterates = [line for line in axes.get_lines() if line.get_label().startswith("iterates")]
    assert len(iterates) == 1
    path = iterates[0].get_xdata()
    assert path[0] == 0.0 and abs(path[-1] + 2.5) < 1e-6


def test_normal_probability_titles(pyplot, defaults):
    (axes,) = main_axes(defaults["plot_normal_probability"][0])
    assert "0.6827" in axes.get_title() and "P(-1 < X < 1)" in axes.get_title()
    figure, _ = render(pyplot, plot.plot_normal_probability, -2, 2)
    (axes,) = main_axes(figure)
    assert "0.9545" in axes.get_title() and "P(-2 < X < 2)" in axes.get_title()


def test_training_loss_figure_trains_the_seed_neuron(defaults):
    (axes,) = main_axes(defaults["plot_training_loss"][0])
    (line,) = axes.get_lines()
    loss = line.get_ydata()
    assert len(loss) == 10_000 and np.isfinite(loss).all()
    assert loss[-1] < loss[0]


def test_convolution_figure_is_the_seed_correlation(defaults):
    figure, _ = defaults["plot_convolution"]
    image_axes, kernel_axes, output_axes = main_axes(figure)
    image = np.asarray(image_axes.get_images()[0].get_array())
    kernel = np.asarray(kernel_axes.get_images()[0].get_array())
    assert image.shape == (10, 10) and kernel.shape == (3, 3)
    np.testing.assert_array_equal(kernel, [[1, 0, -1], [2, 0, -2], [1, 0, -1]])
    assert kernel_axes.get_title() == "Kernel (Sobel X)"
    output = np.asarray(output_axes.get_images()[0].get_array())
    np.testing.assert_allclose(output, seed_convolve2d(image, kernel), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# 2. custom arguments

def test_plot_derivative_of_a_user_function_without_df(pyplot):
    x = np.linspace(0, 2 * np.pi, 50)
    figure, png = render(pyplot, plot.plot_derivative, np.sin, x)
    assert png_size(png) == (1000, 600)
    (axes,) = main_axes(figure)
    f, df = axes.get_lines()[:2]
    np.testing.assert_allclose(f.get_ydata(), np.sin(x))
    np.testing.assert_allclose(df.get_ydata(), np.cos(x), rtol=0, atol=1e-8)  # numerical
    assert legend_labels(axes)[:2] == ["f(x)", "f'(x)"]


def test_plot_derivative_with_df_and_a_name(pyplot):
    x = np.linspace(-1, 1, 11)
    figure, _ = render(pyplot, plot.plot_derivative, np.exp, x, df=lambda t: 3 * t, name="e^x")
    (axes,) = main_axes(figure)
    np.testing.assert_array_equal(axes.get_lines()[1].get_ydata(), 3 * x)
    assert legend_labels(axes)[0] == "e^x"


def test_plot_taylor_with_other_orders(pyplot):
    figure, _ = render(pyplot, plot.plot_taylor, orders=(2, 4))
    (axes,) = main_axes(figure)
    lines = axes.get_lines()
    assert len(lines) == 3
    assert legend_labels(axes) == ["exp(x)", "Taylor (n=2)", "Taylor (n=4)"]
    x = lines[0].get_xdata()
    np.testing.assert_allclose(lines[0].get_ydata(), np.exp(x))
    np.testing.assert_allclose(lines[1].get_ydata(), 1 + x, rtol=0, atol=1e-15)
    np.testing.assert_allclose(lines[2].get_ydata(), 1 + x + x**2 / 2 + x**3 / 6, atol=1e-14)


def test_plot_convolution_with_a_user_image_and_kernel(pyplot):
    rng = np.random.default_rng(5)
    image, kernel = rng.standard_normal((6, 7)), np.array([[1.0, 2.0], [-1.0, 0.5]])
    figure, png = render(pyplot, plot.plot_convolution, image, kernel)
    assert png_size(png) == (1500, 500)
    image_axes, kernel_axes, output_axes = main_axes(figure)
    np.testing.assert_array_equal(image_axes.get_images()[0].get_array(), image)
    assert kernel_axes.get_title() == "Kernel"
    output = np.asarray(output_axes.get_images()[0].get_array())
    assert output.shape == (5, 6)
    np.testing.assert_allclose(output, seed_convolve2d(image, kernel), rtol=1e-12, atol=1e-12)


def test_plot_training_loss_of_several_problems(pyplot):
    steps = np.arange(1, 51)
    loss = np.array([[1.0], [2.0], [0.5]]) * np.exp(-steps / 10)
    figure, png = render(pyplot, plot.plot_training_loss, loss)
    assert png_size(png) == (1000, 600)
    (axes,) = main_axes(figure)
    lines = axes.get_lines()
    assert len(lines) == 3
    for line, row in zip(lines, loss, strict=True):
        np.testing.assert_array_equal(line.get_xdata(), steps)
        np.testing.assert_array_equal(line.get_ydata(), row)
    figure, _ = render(pyplot, plot.plot_training_loss, loss[0])
    assert len(main_axes(figure)[0].get_lines()) == 1


def test_plot_rnn_states_of_a_user_sequence(pyplot):
    hidden = np.tanh(np.random.default_rng(6).standard_normal((12, 4)))
    figure, png = render(pyplot, plot.plot_rnn_states, hidden)
    assert png_size(png) == (1000, 600)
    (axes,) = main_axes(figure)
    lines = axes.get_lines()
    assert len(lines) == 4
    assert legend_labels(axes) == [f"unit {unit}" for unit in range(4)]
    for unit, line in enumerate(lines):
        np.testing.assert_array_equal(line.get_xdata(), np.arange(12))
        np.testing.assert_array_equal(line.get_ydata(), hidden[:, unit])


@pytest.mark.parametrize("shape", [(2, 5, 3), (5,)])
def test_plot_rnn_states_needs_a_2d_array(shape):
    with pytest.raises(ValueError, match="hidden"):
        plot.plot_rnn_states(np.zeros(shape))


def test_plot_surface_of_a_user_function(pyplot):
    x, y = np.linspace(-1, 1, 8), np.linspace(0, 2, 5)
    figure, png = render(pyplot, plot.plot_surface, lambda X, Y: X * Y, x, y)
    assert png_size(png) == (1000, 600)
    assert len(main_axes(figure)) == 1


def test_plotting_never_imports_pyplot():
    # In a fresh interpreter: building and saving every figure leaves pyplot unimported.
    code = (
        "import io, sys\n"
        "import fastcalc.plot as plot\n"
        "for name in plot.__all__:\n"
        "    if name.startswith('plot_'):\n"
        "        getattr(plot, name)().savefig(io.BytesIO(), format='png', dpi=20)\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
    )
    environment = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=environment, timeout=600, check=False)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------------------------
# 3. fastcalc demo

EXPECTED_PNGS = [f"slide{number:02d}.png" for number in range(1, 14)
                 if number not in (6, 7, 13)]
PRINTED = ["Minimum found at x = -2.50", "f(x) at minimum = -0.25", "Output after training:",
           "P(-1 < X < 1) = 0.6827", "dy/dw2 =", "dy/dw1 =", "∂f/∂x", "Hidden state:",
           "Output:", "Final validation accuracy: ", "Final training accuracy: ",
           "Sentiment prediction for 'This movie is amazing!': "]


def check_demo_directory(out):
    assert sorted(path.name for path in out.iterdir()) == sorted([*EXPECTED_PNGS, "index.html"])
    for name in EXPECTED_PNGS:
        png = (out / name).read_bytes()
        assert png_size(png) == ((1500, 500) if name == "slide10.png" else (1000, 600)), name
    index = (out / "index.html").read_text(encoding="utf-8")
    assert index.startswith("<!DOCTYPE html>") and index.rstrip().endswith("</html>")
    for number in range(1, 14):
        assert f"Slide {number}:" in index, number
    for name in EXPECTED_PNGS:
        assert f'src="{name}"' in index, name
    return index


def test_demo_writes_every_slide_and_prints_its_results(pyplot, tmp_path, capsys):
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cli.main(["demo", "--out", str(out)]) == 0
    index = check_demo_directory(out)
    printed = capsys.readouterr().out
    for text in PRINTED:
        assert text in printed, text
        assert html.escape(text) in index, text  # each slide's output, in index.html
    assert pyplot.get_fignums() == []
    # Slide 7's chain rule, as the seed computes it.
    x, w1, w2 = 2.0, 3.0, 4.0
    hidden = 1 / (1 + math.exp(-w1 * x))
    outer = 1 / (1 + math.exp(-w2 * hidden))
    dw2 = outer * (1 - outer) * hidden
    dw1 = outer * (1 - outer) * w2 * hidden * (1 - hidden) * x
    values = dict(line.split(" = ", 1) for line in printed.splitlines()
                  if line.startswith("dy/dw"))
    assert float(values["dy/dw2"]) == pytest.approx(dw2, rel=1e-12)
    assert float(values["dy/dw1"]) == pytest.approx(dw1, rel=1e-12)
    assert "∂f/∂x = 6.000000" in printed and "∂f/∂y = 6.000000" in printed
    assert f"{fastcalc.exp_taylor(1.0, 5):.10f}" in printed
    # Slide 12's CNN learns the digits; slide 13's model learns its five sentences.
    accuracy = float(printed.split("Final validation accuracy: ")[1].split()[0])
    assert accuracy > 0.95
    assert "the five sentences are all classified right after" in printed


def test_python_dash_m_fastcalc_demo_runs_headless(tmp_path):
    out = tmp_path / "demo"
    environment = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}
    # The timeout only catches a hang: how long the demo takes is no test's business.
    result = subprocess.run([sys.executable, "-m", "fastcalc", "demo", "--out", str(out)],
                            capture_output=True, text=True, env=environment, timeout=600,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert "P(-1 < X < 1) = 0.6827" in result.stdout
    check_demo_directory(out)
