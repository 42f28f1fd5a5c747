"""The seed's two real-life examples (slides 12 and 13), on fastcalc's kernels.

Slide 12 trains a Keras CNN on MNIST; slide 13 a Keras sentiment model on
five sentences.  Neither TensorFlow nor a download is needed here:

- **Digits.**  MNIST cannot be downloaded offline, so :func:`digit_images`
  draws digits in the fonts matplotlib ships (sans, serif, mono, STIX,
  Computer Modern; upright, bold, italic) and distorts each one at random
  (rotation, shear, scale, shift, stroke width, blur, noise): 28 x 28
  grey images like MNIST's.  :class:`DigitCNN` is a smaller CNN of the
  slide's kind (two convolution + ReLU + 2 x 2 max-pool stages, then a
  dense softmax layer), its convolutions ``fastcalc.conv2d`` and
  ``fastcalc.conv2d_backward``, trained with Adam.
- **Sentiment.**  :func:`tokenize` does what Keras' ``Tokenizer`` and
  ``pad_sequences`` do on the slide, and :class:`SentimentModel` is the
  slide's model (embedding, average over the sequence, dense ReLU, dense
  ``fastcalc.sigmoid``), trained with Adam on binary cross-entropy.

Every gradient is written by hand (the calculus the deck is about) and
checked by ``fastcalc.check_grad`` in the tests.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

from fastcalc.activations import sigmoid
from fastcalc.convolution import conv2d, conv2d_backward

__all__ = ["Adam", "DigitCNN", "SentimentModel", "digit_images", "tokenize", "train"]

# --------------------------------------------------------------------------- training


class Adam:
    """Adam (Kingma and Ba) as Keras runs it, on a dict of parameter arrays, in place.

    Keras' defaults, and TensorFlow's form of the step: the bias corrections
    folded into the rate, ``eps`` added to the uncorrected ``sqrt(v)``.
    """

    def __init__(self, params: dict[str, np.ndarray], lr: float = 1e-3, beta1: float = 0.9,
                 beta2: float = 0.999, eps: float = 1e-7):
        self.params, self.lr, self.beta1, self.beta2, self.eps = params, lr, beta1, beta2, eps
        self.moments = {name: (np.zeros_like(p), np.zeros_like(p)) for name, p in params.items()}
        self.steps = 0

    def step(self, grads: dict[str, np.ndarray]) -> None:
        self.steps += 1
        rate = self.lr * np.sqrt(1 - self.beta2**self.steps) / (1 - self.beta1**self.steps)
        for name, grad in grads.items():
            mean, square = self.moments[name]
            mean += (1 - self.beta1) * (grad - mean)
            square += (1 - self.beta2) * (grad * grad - square)
            self.params[name] -= rate * mean / (np.sqrt(square) + self.eps)


def train(model, inputs: np.ndarray, labels: np.ndarray, *, epochs: int, batch_size: int = 32,
          lr: float = 1e-3, seed: int = 0, progress=None):
    """Mini-batch Adam on ``model.loss_and_grads``, shuffled per epoch, as Keras' ``fit``.

    Yields ``(epoch, mean loss over the epoch's batches)`` after each epoch.
    ``progress``, if given, is called after every batch with the epoch, the
    batches done and in all, and the mean loss so far.
    """
    adam = Adam(model.params, lr)
    rng = np.random.default_rng(seed)
    batches = -(-len(inputs) // batch_size)
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(inputs))
        losses = []
        for start in range(0, len(inputs), batch_size):
            batch = order[start:start + batch_size]
            loss, grads = model.loss_and_grads(inputs[batch], labels[batch])
            adam.step(grads)
            losses.append(loss)
            if progress is not None:
                progress(epoch, len(losses), batches, float(np.mean(losses)))
        yield epoch, float(np.mean(losses))


def _glorot(rng, fan_in: int, fan_out: int, shape: tuple) -> np.ndarray:
    """Keras' default initializer: uniform in +-sqrt(6 / (fan_in + fan_out))."""
    limit = np.sqrt(6 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape)


# --------------------------------------------------------------------------- digits

_FONTS = [(family, weight, style)
          for family in ("DejaVu Sans", "DejaVu Serif", "DejaVu Sans Mono", "STIXGeneral")
          for weight, style in (("normal", "normal"), ("bold", "normal"), ("normal", "italic"))]
_FONTS += [("cmss10", "normal", "normal"), ("cmr10", "normal", "normal"),
           ("cmtt10", "normal", "normal")]


def _digit_glyphs(size: int = 28) -> np.ndarray:
    """Every digit in every font, white on black: (fonts, 10, size, size) in [0, 1]."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties

    scale = 2  # drawn at twice the size, then averaged down: smoother strokes
    cell = size * scale
    glyphs = np.empty((len(_FONTS), 10, size, size))
    for index, (family, weight, style) in enumerate(_FONTS):
        figure = Figure(figsize=(10 * cell / 100, cell / 100), dpi=100)
        font = FontProperties(family=family, weight=weight, style=style,
                              size=0.8 * cell * 72 / 100)
        for digit in range(10):
            figure.text((digit + 0.5) / 10, 0.5, str(digit), ha="center", va="center_baseline",
                        fontproperties=font)
        canvas = FigureCanvasAgg(figure)
        canvas.draw()
        ink = 1 - np.asarray(canvas.buffer_rgba())[:cell, :10 * cell, 0] / 255.0
        cells = ink.reshape(size, scale, 10, size, scale).mean(axis=(1, 4))
        glyphs[index] = cells.transpose(1, 0, 2)
    return glyphs


def digit_images(count: int, seed: int = 0, size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """``count`` distorted digit images and their labels, MNIST-like.

    Returns ``(images (count, 1, size, size) float32 in [0, 1], labels (count,) int64)``.
    Needs matplotlib (for the fonts) and scipy.
    """
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    glyphs = _digit_glyphs(size)
    labels = rng.integers(0, 10, count)
    fonts = rng.integers(0, len(_FONTS), count)
    images = np.empty((count, 1, size, size), np.float32)
    centre = (size - 1) / 2
    for k in range(count):
        angle = rng.uniform(-0.25, 0.25)
        shear = rng.uniform(-0.3, 0.3)
        zoom = rng.uniform(0.8, 1.15)
        # Output pixel o reads the glyph at matrix @ (o - centre) + centre - shift.
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        matrix = rotation @ np.array([[1, 0], [shear, 1]]) / zoom
        shift = rng.uniform(-2, 2, 2)
        offset = centre - matrix @ np.full(2, centre) - shift
        image = ndimage.affine_transform(glyphs[fonts[k], labels[k]], matrix, offset, order=1)
        stroke = rng.integers(-1, 2)  # thinner, unchanged or thicker strokes
        if stroke > 0:
            image = ndimage.grey_dilation(image, size=(2, 2))
        elif stroke < 0:
            image = ndimage.grey_erosion(image, size=(2, 2)) * 0.5 + image * 0.5
        image = ndimage.gaussian_filter(image, rng.uniform(0.3, 0.9))
        image += rng.normal(0, 0.05, image.shape)
        images[k, 0] = np.clip(image / max(image.max(), 1e-6), 0, 1)
    return images, labels


_CORNERS = ((0, 0), (0, 1), (1, 0), (1, 1))


def _max_pool(x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """2 x 2 max-pooling, stride 2 (an odd last row or column is dropped, like Keras).

    Returns the pooled array and the four strided views it is the maximum of.
    """
    height, width = x.shape[2] // 2 * 2, x.shape[3] // 2 * 2
    corners = [x[:, :, i:height:2, j:width:2] for i, j in _CORNERS]
    pooled = np.maximum(np.maximum(corners[0], corners[1]), np.maximum(corners[2], corners[3]))
    return pooled, corners


def _max_pool_backward(grad: np.ndarray, pooled: np.ndarray, corners: list[np.ndarray],
                       shape: tuple) -> np.ndarray:
    """The gradient reaches each window's maximum (the first of equal maxima, as in torch)."""
    height, width = shape[2] // 2 * 2, shape[3] // 2 * 2
    grad_x = np.zeros(shape, grad.dtype)
    taken = np.zeros(pooled.shape, bool)
    for (i, j), corner in zip(_CORNERS, corners, strict=True):
        winner = (corner == pooled) & ~taken
        grad_x[:, :, i:height:2, j:width:2] = grad * winner
        taken |= winner
    return grad_x


def _softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(logits) against integer labels, and d loss / d logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(len(labels))
    grad = np.exp(log_p)
    grad[rows, labels] -= 1
    return -log_p[rows, labels].mean(), grad / len(labels)


class DigitCNN:
    """conv 3x3 (channels[0]) + ReLU + max-pool, conv 3x3 (channels[1]) + ReLU + max-pool, dense.

    ``params`` holds ``w1 (c1, 1, 3, 3)``, ``b1``, ``w2 (c2, c1, 3, 3)``,
    ``b2``, ``w3 (10, features)`` and ``b3``; images are (N, 1, size, size).
    """

    def __init__(self, size: int = 28, channels: tuple[int, int] = (8, 16), seed: int = 0,
                 dtype=np.float32):
        rng = np.random.default_rng(seed)
        c1, c2 = channels
        pooled = ((size - 2) // 2 - 2) // 2
        self.params = {
            "w1": _glorot(rng, 9, 9 * c1, (c1, 1, 3, 3)), "b1": np.zeros(c1),
            "w2": _glorot(rng, 9 * c1, 9 * c2, (c2, c1, 3, 3)), "b2": np.zeros(c2),
            "w3": _glorot(rng, c2 * pooled**2, 10, (10, c2 * pooled**2)), "b3": np.zeros(10),
        }
        self.params = {name: p.astype(dtype) for name, p in self.params.items()}

    def logits(self, images: np.ndarray) -> np.ndarray:
        return self._forward(images)[0]

    def _forward(self, images):
        p = self.params
        z1 = conv2d(images, p["w1"], p["b1"])
        a1, windows1 = _max_pool(np.maximum(z1, 0))
        z2 = conv2d(a1, p["w2"], p["b2"])
        a2, windows2 = _max_pool(np.maximum(z2, 0))
        features = a2.reshape(len(images), -1)
        logits = features @ p["w3"].T + p["b3"]
        return logits, (images, z1, a1, windows1, z2, a2, windows2, features)

    def loss_and_grads(self, images: np.ndarray,
                       labels: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        """Mean cross-entropy on a batch and its gradient for every parameter."""
        p = self.params
        logits, (images, z1, a1, windows1, z2, a2, windows2, features) = self._forward(images)
        loss, grad_logits = _softmax_cross_entropy(logits, labels)
        grads = {"w3": grad_logits.T @ features, "b3": grad_logits.sum(axis=0)}
        grad_a2 = (grad_logits @ p["w3"]).reshape(a2.shape)
        grad_z2 = _max_pool_backward(grad_a2, a2, windows2, z2.shape) * (z2 > 0)
        grad_a1, grads["w2"], grads["b2"] = conv2d_backward(grad_z2, a1, p["w2"])
        grad_z1 = _max_pool_backward(grad_a1, a1, windows1, z1.shape) * (z1 > 0)
        _, grads["w1"], grads["b1"] = conv2d_backward(grad_z1, images, p["w1"])
        return loss, grads

    def accuracy(self, images: np.ndarray, labels: np.ndarray, batch: int = 1000) -> float:
        predictions = np.concatenate([self.logits(images[k:k + batch]).argmax(axis=1)
                                      for k in range(0, len(images), batch)])
        return float(np.mean(predictions == labels))


# --------------------------------------------------------------------------- sentiment

# Keras' Tokenizer: these characters are removed, the text lower-cased and split on spaces.
_KERAS_FILTERS = re.compile(r"""[!"#$%&()*+,\-./:;<=>?@\[\\\]^_`{|}~\t\n]""")
OOV = "<OOV>"


def _words(text: str) -> list[str]:
    return _KERAS_FILTERS.sub(" ", text.lower()).split()


def tokenize(sentences: list[str], maxlen: int = 10,
             vocabulary: dict[str, int] | None = None) -> tuple[np.ndarray, dict[str, int]]:
    """Word indices padded and truncated at the end to ``maxlen``, as Keras does on slide 13.

    The vocabulary (built from ``sentences`` unless given) numbers the words
    from 2 by falling frequency (ties: first seen first); 1 is ``OOV``, any
    word not in it; 0 pads.  Returns ``(sequences (len, maxlen) int64,
    vocabulary)``.
    """
    if vocabulary is None:
        counts = Counter(word for sentence in sentences for word in _words(sentence))
        ranked = sorted(counts, key=lambda word: -counts[word])  # stable: first seen first
        vocabulary = {OOV: 1, **{word: k for k, word in enumerate(ranked, start=2)}}
    sequences = np.zeros((len(sentences), maxlen), np.int64)
    for row, sentence in enumerate(sentences):
        indices = [vocabulary.get(word, 1) for word in _words(sentence)][:maxlen]
        sequences[row, :len(indices)] = indices
    return sequences, vocabulary


class SentimentModel:
    """Embedding (vocabulary, dim), mean over the sequence, dense ReLU (hidden), dense sigmoid.

    The slide's Keras model: ``Embedding(100, 16)``,
    ``GlobalAveragePooling1D()`` (over every position, padding included),
    ``Dense(24, "relu")``, ``Dense(1, "sigmoid")``, Keras' initializers.
    """

    def __init__(self, vocabulary: int = 100, dim: int = 16, hidden: int = 24, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.params = {
            "embedding": rng.uniform(-0.05, 0.05, (vocabulary, dim)),
            "w1": _glorot(rng, dim, hidden, (dim, hidden)), "b1": np.zeros(hidden),
            "w2": _glorot(rng, hidden, 1, (hidden, 1)), "b2": np.zeros(1),
        }

    def predict(self, sequences: np.ndarray) -> np.ndarray:
        """P(positive) per sequence, shape (len,)."""
        return self._forward(sequences)[0]

    def _forward(self, sequences):
        p = self.params
        pooled = p["embedding"][sequences].mean(axis=1)
        z1 = pooled @ p["w1"] + p["b1"]
        hidden = np.maximum(z1, 0)
        z2 = (hidden @ p["w2"] + p["b2"])[:, 0]
        return sigmoid(z2), z2, hidden, z1, pooled

    def loss_and_grads(self, sequences: np.ndarray,
                       labels: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        """Mean binary cross-entropy and its gradient for every parameter."""
        p = self.params
        probability, z2, hidden, z1, pooled = self._forward(sequences)
        # -y log p - (1 - y) log(1 - p) = softplus(z) - y z, computed without overflow.
        loss = np.mean(np.logaddexp(0, z2) - labels * z2)
        grad_z2 = (probability - labels)[:, None] / len(labels)
        grads = {"w2": hidden.T @ grad_z2, "b2": grad_z2.sum(axis=0)}
        grad_z1 = (grad_z2 @ p["w2"].T) * (z1 > 0)
        grads["w1"], grads["b1"] = pooled.T @ grad_z1, grad_z1.sum(axis=0)
        grad_pooled = grad_z1 @ p["w1"].T / sequences.shape[1]
        grads["embedding"] = np.zeros_like(p["embedding"])
        np.add.at(grads["embedding"], sequences,
                  np.broadcast_to(grad_pooled[:, None, :], (*sequences.shape, pooled.shape[1])))
        return float(loss), grads
