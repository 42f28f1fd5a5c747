"""``fastcalc demo``: every slide of the seed, computed with fastcalc.

Each slide prints what the seed's code prints (computed with fastcalc's
kernels) and writes its figure, and ``index.html`` shows the figures with
their slide titles.  Slides 12 and 13 run without TensorFlow:
:mod:`fastcalc._examples` says how.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, TextIO

import numpy as np


class Slide(NamedTuple):
    number: int
    title: str
    run: Callable[[TextIO], object]  # prints the slide's results, returns its Figure or None


def _slide_1(out: TextIO):
    from fastcalc import plot, sigmoid

    print(f"sigmoid(-10, 0, 10) = {np.round(sigmoid(np.array([-10.0, 0.0, 10.0])), 6)}",
          file=out)
    return plot.plot_sigmoid()


def _slide_2(out: TextIO):
    from fastcalc import derivative, plot

    x = np.array([-5.0, -2.5, 0.0])
    slope = derivative(lambda x: x**2 + 5 * x + 6, x)
    print(f"f'(x) at x = {x} by central differences: {slope.round(8)} (2x + 5)", file=out)
    return plot.plot_derivative()


def _slide_3(out: TextIO):
    from fastcalc import gradient_descent, plot

    result = gradient_descent(lambda x: 2 * x + 5, 0.0, lr=0.1, n_iter=100, backend="numpy")
    f = result.x**2 + 5 * result.x + 6
    print(f"Minimum found at x = {result.x:.2f}", file=out)
    print(f"f(x) at minimum = {f:.2f}", file=out)
    return plot.plot_gradient_descent()


def _slide_4(out: TextIO):
    from fastcalc import fit_logistic, plot, sigmoid

    X, y, w0 = plot.SEED_NEURON
    neuron = dict(lr=1.0, loss="squared", reduction="sum", fit_intercept=False, w0=w0)
    # The seed prints the layer computed in its last iteration, before that
    # iteration's update: the output of the weights after 9999 steps.
    before_last = fit_logistic(X, y, n_iter=9_999, **neuron)
    print("Output after training:", file=out)
    print(sigmoid(X @ before_last.coef)[:, None], file=out)
    return plot.plot_training_loss(fit_logistic(X, y, n_iter=10_000, **neuron).loss)


def _slide_5(out: TextIO):
    from fastcalc import plot

    print("f(x, y) = sin(sqrt(x**2 + y**2)) on a 30 x 30 grid over [-6, 6]^2", file=out)
    return plot.plot_surface()


def _slide_6(out: TextIO):
    from fastcalc import gradient

    def f(p):
        x, y = p[..., 0], p[..., 1]
        return x**2 + 2 * x * y + y**2

    df_dx, df_dy = gradient(f, [1.0, 2.0])
    print("Function: f(x, y) = x**2 + 2*x*y + y**2", file=out)
    print(f"Partial derivative with respect to x at (1, 2): ∂f/∂x = {df_dx:.6f} "
          "(2*x + 2*y = 6)", file=out)
    print(f"Partial derivative with respect to y at (1, 2): ∂f/∂y = {df_dy:.6f} "
          "(2*x + 2*y = 6)", file=out)


def _slide_7(out: TextIO):
    from fastcalc import derivative, sigmoid, sigmoid_derivative

    x, w1, w2 = 2.0, 3.0, 4.0
    hidden = sigmoid(w1 * x)
    dy_dw2 = sigmoid_derivative(w2 * hidden) * hidden
    dy_dw1 = sigmoid_derivative(w2 * hidden) * w2 * sigmoid_derivative(w1 * x) * x
    print(f"dy/dw2 = {dy_dw2}", file=out)
    print(f"dy/dw1 = {dy_dw1}", file=out)
    numerical_w2 = derivative(lambda w: sigmoid(w * hidden), w2)
    numerical_w1 = derivative(lambda w: sigmoid(w2 * sigmoid(w * x)), w1)
    print(f"by finite differences: dy/dw2 = {numerical_w2}, dy/dw1 = {numerical_w1}",
          file=out)


def _slide_8(out: TextIO):
    from fastcalc import integrate, normal_probability, plot

    probability = normal_probability(-1, 1)
    density = integrate(lambda x: np.exp(-x**2 / 2) / np.sqrt(2 * np.pi), -1, 1)
    print(f"P(-1 < X < 1) = {probability:.4f}", file=out)
    print(f"the density integrated by Simpson's rule: {density.value:.12f} "
          f"(error estimate {density.error:.1e})", file=out)
    return plot.plot_normal_probability()


def _slide_9(out: TextIO):
    from fastcalc import exp_taylor, plot

    for n in (1, 3, 5, 10):
        print(f"Taylor (n={n}) of exp at x = 1: {exp_taylor(1.0, n):.10f} "
              f"(exp(1) = {np.e:.10f})", file=out)
    return plot.plot_taylor()


def _slide_10(out: TextIO):
    from fastcalc import correlate2d, plot

    image = np.random.default_rng(0).random((10, 10))
    output = correlate2d(image, plot.SOBEL_X, mode="valid")
    print(f"image {image.shape}, Sobel x kernel {plot.SOBEL_X.shape} -> output "
          f"{output.shape}; output[0, :3] = {output[0, :3].round(4)}", file=out)
    return plot.plot_convolution(image)


def _slide_11(out: TextIO):
    from fastcalc import plot, rnn_forward

    rng = np.random.default_rng(0)
    hidden_size, input_size = 3, 2
    Wxh = rng.standard_normal((hidden_size, input_size)) * 0.01
    Whh = rng.standard_normal((hidden_size, hidden_size)) * 0.01
    Why = rng.standard_normal((input_size, hidden_size)) * 0.01
    x = rng.standard_normal((1, input_size))  # one step of one sequence
    h, y = rnn_forward(x, np.zeros(hidden_size), Wxh, Whh, Why)
    print("Hidden state:", h[-1][:, None], file=out)
    print("Output:", y[-1][:, None], file=out)
    return plot.plot_rnn_states()


def _slide_12(out: TextIO):
    from fastcalc import _examples, plot

    images, labels = _examples.digit_images(11_000, seed=0)
    train, test = slice(0, 10_000), slice(10_000, None)
    model = _examples.DigitCNN(seed=0)
    print("Digits drawn in matplotlib's fonts and distorted (MNIST needs a download): "
          "10000 to train, 1000 to validate; CNN conv(8)-pool-conv(16)-pool-dense(10) on "
          "fastcalc.conv2d / conv2d_backward, Adam", file=out)
    def progress(epoch, done, batches, loss):  # a line every quarter of an epoch
        if done * 4 // batches > (done - 1) * 4 // batches and done < batches:
            print(f"Epoch {epoch}/2 - {done}/{batches} batches - loss: {loss:.4f}", file=out,
                  flush=True)

    for epoch, loss in _examples.train(model, images[train], labels[train], epochs=2,
                                       batch_size=64, lr=3e-3, seed=1, progress=progress):
        accuracy = model.accuracy(images[test], labels[test])
        print(f"Epoch {epoch}/2 - loss: {loss:.4f} - val_accuracy: {accuracy:.4f}", file=out)
    print(f"Final validation accuracy: {accuracy:.4f}", file=out)
    shown = images[test][:40]
    return plot.plot_digits(shown, labels[test][:40], model.logits(shown).argmax(axis=1))


SENTENCES = ["I love this movie!", "This film is terrible.", "The acting was superb.",
             "I wouldn't recommend it.", "A must-watch for everyone!"]
SENTIMENTS = np.array([1.0, 0.0, 1.0, 0.0, 1.0])


def _slide_13(out: TextIO):
    from fastcalc import _examples

    sequences, vocabulary = _examples.tokenize(SENTENCES)
    model = _examples.SentimentModel(seed=0)
    all_right = None
    for epoch, _ in _examples.train(model, sequences, SENTIMENTS, epochs=500, seed=0):
        right = (model.predict(sequences) > 0.5) == SENTIMENTS
        if epoch == 50:  # the slide's epochs
            print(f"Final training accuracy: {right.mean():.4f}", file=out)
            test_sentence = ["This movie is amazing!"]
            prediction = model.predict(_examples.tokenize(test_sentence, 10, vocabulary)[0])
            print(f"Sentiment prediction for '{test_sentence[0]}': "
                  f"{'Positive' if prediction[0] > 0.5 else 'Negative'}", file=out)
        if right.all():
            all_right = epoch
            break
    print(f"(the five sentences are all classified right after {all_right} epochs of Adam "
          "at lr 0.001; 'amazing' is not in the vocabulary)", file=out)


SLIDES = (
    Slide(1, "The Importance of Calculus in Machine Learning: the sigmoid", _slide_1),
    Slide(2, "Optimization: a function and its derivative", _slide_2),
    Slide(3, "Gradient Descent: Calculus in Action", _slide_3),
    Slide(4, "Backpropagation: training a sigmoid neuron", _slide_4),
    Slide(5, "Understanding Complex Functions: a 3-D surface", _slide_5),
    Slide(6, "Partial Derivatives in Machine Learning", _slide_6),
    Slide(7, "The Chain Rule in Neural Networks", _slide_7),
    Slide(8, "Integrals in Probability and Statistics", _slide_8),
    Slide(9, "Taylor Series in Machine Learning", _slide_9),
    Slide(10, "Calculus in Convolutional Neural Networks", _slide_10),
    Slide(11, "Calculus in Recurrent Neural Networks", _slide_11),
    Slide(12, "Real-Life Example: Image Classification", _slide_12),
    Slide(13, "Real-Life Example: Natural Language Processing", _slide_13),
)


def _index(figures: list[tuple[Slide, str]], printed: dict[int, str]) -> str:
    images = {slide.number: name for slide, name in figures}
    sections = []
    for slide in SLIDES:
        image = images.get(slide.number)
        parts = [f"<h2>Slide {slide.number}: {html.escape(slide.title)}</h2>"]
        if printed.get(slide.number):
            parts.append(f"<pre>{html.escape(printed[slide.number])}</pre>")
        if image:
            parts.append(f'<img src="{image}" alt="{html.escape(slide.title)}" width="800">')
        sections.append("<section>" + "\n".join(parts) + "</section>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>fastcalc demo: Why Calculus is Essential for Machine Learning</title>"
            "<style>body{font-family:sans-serif;max-width:900px;margin:auto}"
            "pre{background:#f4f4f4;padding:8px}</style></head><body>\n"
            "<h1>Why Calculus is Essential for Machine Learning, with fastcalc</h1>\n"
            + "\n".join(sections) + "\n</body></html>\n")


class _Tee:
    """Writes to the console and keeps a copy for index.html."""

    def __init__(self, stream: TextIO):
        self.stream, self.parts = stream, []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def take(self) -> str:
        text, self.parts = "".join(self.parts), []
        return text


def run(out_dir: str | Path, stream: TextIO) -> list[Path]:
    """Run every slide, print its results to ``stream``, write the figures and index.html.

    Returns the files written.
    """
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    tee = _Tee(stream)
    written, figures, printed = [], [], {}
    start = time.perf_counter()
    with np.printoptions(precision=8, suppress=True):
        for slide in SLIDES:
            print(f"\n== Slide {slide.number}: {slide.title}", file=stream)
            tee.take()
            figure = slide.run(tee)
            printed[slide.number] = tee.take()
            if figure is not None:
                name = f"slide{slide.number:02d}.png"
                figure.savefig(directory / name, dpi=100)
                written.append(directory / name)
                figures.append((slide, name))
                print(f"   -> {directory / name}", file=stream)
    index = directory / "index.html"
    index.write_text(_index(figures, printed), encoding="utf-8")
    written.append(index)
    print(f"\nwrote {len(written)} files to {directory} in {time.perf_counter() - start:.1f} s;"
          f" open {index}", file=stream)
    return written
