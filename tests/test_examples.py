"""The seed's real-life examples (slides 12 and 13): data, models, hand-written gradients."""

import numpy as np
import pytest
from helpers import assert_gradients_pass_check_grad

from fastcalc import _examples as examples


def check_model_grads(model, inputs, labels, tolerance):
    """Every parameter's hand-written gradient against fastcalc.check_grad."""
    _, grads = model.loss_and_grads(inputs, labels)
    assert set(grads) == set(model.params)
    params = model.params

    def loss(trial):
        model.params = trial
        try:
            return model.loss_and_grads(inputs, labels)[0]
        finally:
            model.params = params

    assert_gradients_pass_check_grad(loss, params, grads, tolerance)


# ---------------------------------------------------------------------------------------------
# 1. slide 12: digits and the CNN

def test_digit_images_are_mnist_like_and_reproducible():
    images, labels = examples.digit_images(200, seed=3)
    assert images.shape == (200, 1, 28, 28) and images.dtype == np.float32
    assert labels.shape == (200,) and set(labels) <= set(range(10)) and len(set(labels)) == 10
    assert images.min() >= 0 and images.max() <= 1
    assert (images.reshape(200, -1).max(axis=1) == 1).all()  # every image has ink
    # Ink near the centre, dark corners: a digit, not noise.
    assert images[:, 0, 10:18, 10:18].mean() > 3 * images[:, 0, :4, :4].mean()
    again, same_labels = examples.digit_images(200, seed=3)
    np.testing.assert_array_equal(again, images)
    np.testing.assert_array_equal(same_labels, labels)
    other, _ = examples.digit_images(200, seed=4)
    assert not np.array_equal(other, images)


def test_max_pool_and_its_gradient():
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 7))
    pooled, corners = examples._max_pool(x)
    expected = x[:, :, :4, :6].reshape(2, 3, 2, 2, 3, 2).max(axis=(3, 5))
    np.testing.assert_array_equal(pooled, expected)
    grad = np.random.default_rng(1).standard_normal(pooled.shape)
    grad_x = examples._max_pool_backward(grad, pooled, corners, x.shape)
    # Each window's gradient goes to its maximum only; the dropped last row and column get 0.
    assert (grad_x[:, :, 4, :] == 0).all() and (grad_x[:, :, :, 6] == 0).all()
    windows = grad_x[:, :, :4, :6].reshape(2, 3, 2, 2, 3, 2)
    np.testing.assert_array_equal(windows.sum(axis=(3, 5)), grad)
    assert ((windows != 0).sum(axis=(3, 5)) == 1).all()
    # Equal maxima: the first one takes it all, as in torch.
    ties = np.zeros((1, 1, 2, 2))
    pooled, corners = examples._max_pool(ties)
    grad_x = examples._max_pool_backward(np.ones((1, 1, 1, 1)), pooled, corners, ties.shape)
    np.testing.assert_array_equal(grad_x[0, 0], [[1, 0], [0, 0]])


def test_cnn_gradients_pass_check_grad():
    rng = np.random.default_rng(0)
    model = examples.DigitCNN(size=12, channels=(2, 3), seed=0, dtype=np.float64)
    for name in model.params:  # biases away from 0: some units on, some off
        if name.startswith("b"):
            model.params[name] = rng.normal(0, 0.1, model.params[name].shape)
    images = rng.random((3, 1, 12, 12))
    check_model_grads(model, images, np.array([1, 7, 3]), 1e-6)


def test_cnn_learns_the_digits():
    images, labels = examples.digit_images(3000, seed=0)
    model = examples.DigitCNN(seed=0)
    assert model.accuracy(images[2500:], labels[2500:]) < 0.3  # untrained: about chance
    losses = [loss for _, loss in examples.train(model, images[:2500], labels[:2500], epochs=2,
                                                 batch_size=64, lr=3e-3, seed=1)]
    assert losses[1] < losses[0]
    assert model.accuracy(images[2500:], labels[2500:]) > 0.6


# ---------------------------------------------------------------------------------------------
# 2. slide 13: the tokenizer and the sentiment model

SENTENCES = ["I love this movie!", "This film is terrible.", "The acting was superb.",
             "I wouldn't recommend it.", "A must-watch for everyone!"]


def test_tokenize_numbers_words_as_keras_does():
    sequences, vocabulary = examples.tokenize(SENTENCES)
    # Keras' Tokenizer(num_words=100, oov_token="<OOV>") on the slide: "<OOV>" is 1, then
    # by count ("i" and "this" twice), ties in order of appearance; "must-watch" splits on
    # the hyphen, "wouldn't" keeps its apostrophe; pad_sequences pads at the end.
    assert list(vocabulary)[:6] == ["<OOV>", "i", "this", "love", "movie", "film"]
    assert vocabulary["wouldn't"] == 13 and vocabulary["must"] == 17
    np.testing.assert_array_equal(sequences[0], [2, 4, 3, 5, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(sequences[4], [16, 17, 18, 19, 20, 0, 0, 0, 0, 0])
    test, _ = examples.tokenize(["This movie is amazing!"], 10, vocabulary)
    np.testing.assert_array_equal(test[0], [3, 5, 7, 1, 0, 0, 0, 0, 0, 0])  # amazing: OOV
    long, _ = examples.tokenize(["a b c d e"], 3)
    np.testing.assert_array_equal(long, [[2, 3, 4]])  # truncated at the end


def test_sentiment_gradients_pass_check_grad():
    sequences, _ = examples.tokenize(SENTENCES)
    model = examples.SentimentModel(seed=0)
    model.params["b1"] += np.random.default_rng(0).normal(0, 0.05, model.params["b1"].shape)
    check_model_grads(model, sequences, np.array([1.0, 0, 1, 0, 1]), 1e-6)


def test_sentiment_model_learns_its_sentences():
    sequences, _ = examples.tokenize(SENTENCES)
    labels = np.array([1.0, 0, 1, 0, 1])
    model = examples.SentimentModel(seed=0)
    losses = [loss for _, loss in examples.train(model, sequences, labels, epochs=200)]
    assert losses[-1] < losses[0] / 2
    np.testing.assert_array_equal(model.predict(sequences) > 0.5, labels == 1)


# ---------------------------------------------------------------------------------------------
# 3. Adam

def test_adam_follows_keras_update_rule():
    params = {"w": np.array([1.0, -2.0])}
    adam = examples.Adam(params, lr=0.1)
    grads = [np.array([0.5, -1.0]), np.array([0.25, 2.0])]
    m, v, w = np.zeros(2), np.zeros(2), np.array([1.0, -2.0])
    for t, g in enumerate(grads, start=1):
        adam.step({"w": g})
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        # TensorFlow's form: the bias corrections folded into the rate, epsilon outside them.
        w = w - 0.1 * np.sqrt(1 - 0.999**t) / (1 - 0.9**t) * m / (np.sqrt(v) + 1e-7)
        np.testing.assert_allclose(params["w"], w, rtol=1e-12)


@pytest.mark.parametrize("batch_size", [2, 5, 32])
def test_train_sees_every_sample_once_per_epoch(batch_size):
    seen = []

    class Recorder:
        params = {"w": np.zeros(1)}

        def loss_and_grads(self, inputs, labels):
            seen.extend(inputs.tolist())
            return float(len(inputs)), {"w": np.zeros(1)}

    epochs = list(examples.train(Recorder(), np.arange(5), np.zeros(5), epochs=3,
                                 batch_size=batch_size))
    assert [epoch for epoch, _ in epochs] == [1, 2, 3]
    assert len(seen) == 15 and all(sorted(seen[k:k + 5]) == list(range(5)) for k in (0, 5, 10))


def test_train_reports_progress_after_every_batch():
    """The demo's slide 12 was silent for 48 s: its epochs now say how far they are."""
    reports = []

    class Constant:
        params = {"w": np.zeros(1)}

        def loss_and_grads(self, inputs, labels):
            return float(inputs[0]), {"w": np.zeros(1)}

    losses = list(examples.train(Constant(), np.ones(5), np.zeros(5), epochs=2, batch_size=2,
                                 progress=lambda *report: reports.append(report)))
    assert reports == [(epoch, done, 3, 1.0) for epoch in (1, 2) for done in (1, 2, 3)]
    assert losses == [(1, 1.0), (2, 1.0)]
