"""Bottleneck (F of a block) against the numpy float64 reference, within a tolerance (how F
computes in inference mode may change, e.g. batch norms folded into the convolutions; what
it computes may not): inference and training mode, strides and the first block's missing
pre-activation, the statistics update, dropout by seed, and clear errors."""

import numpy as np
import pytest
import tensorflow as tf

from irevnet_tf.layers import Bottleneck
from tests import helpers, reference

# (stride, preactivation, input channels, out_channels, mult)
CASES = [(1, True, 8, 8, 4), (2, True, 4, 16, 4), (1, False, 3, 6, 2), (2, False, 2, 8, 2)]


def _build(stride, preactivation, channels, out_channels, mult, dtype="float64", **kwargs):
    layer = Bottleneck(out_channels, stride=stride, preactivation=preactivation, mult=mult,
                       dtype=dtype, **kwargs)
    layer.build((None, 8, 8, channels))
    helpers.randomize_batch_norms(layer, seed=out_channels + stride)
    return layer


def _x(channels, seed=0, batch=3):
    return np.random.default_rng(seed).standard_normal((batch, 8, 8, channels))


@pytest.mark.parametrize("dtype, tolerance", [("float64", 1e-10), ("float32", 1e-5)])
@pytest.mark.parametrize("stride,preactivation,channels,out_channels,mult", CASES)
def test_inference_matches_numpy(stride, preactivation, channels, out_channels, mult, dtype,
                                 tolerance):
    layer = _build(stride, preactivation, channels, out_channels, mult, dtype=dtype)
    x = _x(channels)
    out = layer(tf.constant(x, dtype), training=False).numpy().astype(np.float64)
    expected = reference.bottleneck(x.astype(dtype).astype(np.float64),
                                    helpers.bottleneck_weights(layer), stride, preactivation)
    assert out.shape == (3, 8 // stride, 8 // stride, out_channels)
    np.testing.assert_allclose(out, expected, rtol=0, atol=tolerance * np.abs(expected).max())


def _numpy_training_forward(x, weights, stride, preactivation, eps=1e-5):
    """F with batch statistics (biased variance over N, H, W), and each norm's batch moments."""
    moments = {}

    def norm(h, name):
        mean, var = h.mean(axis=(0, 1, 2)), h.var(axis=(0, 1, 2))
        moments[name] = (mean, var)
        gamma, beta = weights[name][:2]
        return reference.batch_norm_inference(h, gamma, beta, mean, var, eps)

    h = x
    if preactivation:
        h = reference.relu(norm(h, "preact_bn"))
    h = reference.conv3x3(h, weights["conv1"], stride)
    h = reference.relu(norm(h, "bn1"))
    h = reference.conv3x3(h, weights["conv2"])
    h = reference.relu(norm(h, "bn2"))
    return reference.conv3x3(h, weights["conv3"]), moments


@pytest.mark.parametrize("stride,preactivation,channels,out_channels,mult", CASES[1:3])
def test_training_uses_batch_statistics_and_updates_the_moving_ones(
        stride, preactivation, channels, out_channels, mult):
    layer = _build(stride, preactivation, channels, out_channels, mult, bn_momentum=0.75)
    x = _x(channels, seed=1)
    before = helpers.bottleneck_weights(layer)
    expected, moments = _numpy_training_forward(x, before, stride, preactivation)
    out = layer(tf.constant(x), training=True, update_statistics=False).numpy()
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-10 * np.abs(expected).max())
    unchanged = helpers.bottleneck_weights(layer)
    for name, (mean, var) in moments.items():
        np.testing.assert_array_equal(unchanged[name][2:], before[name][2:])
    layer(tf.constant(x), training=True)
    after = helpers.bottleneck_weights(layer)
    for name, (mean, var) in moments.items():
        np.testing.assert_allclose(after[name][2], 0.75 * before[name][2] + 0.25 * mean,
                                   rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(after[name][3], 0.75 * before[name][3] + 0.25 * var,
                                   rtol=1e-10, atol=1e-12)


def test_dropout_mask_follows_the_seed():
    layer = _build(1, True, 8, 8, 4, dropout_rate=0.5, seed=3)
    x = tf.constant(_x(8, seed=2))
    seed_a, seed_b = tf.constant([1, 2]), tf.constant([3, 4])
    first = layer(x, training=True, dropout_seed=seed_a, update_statistics=False).numpy()
    again = layer(x, training=True, dropout_seed=seed_a, update_statistics=False).numpy()
    other = layer(x, training=True, dropout_seed=seed_b, update_statistics=False).numpy()
    np.testing.assert_array_equal(first, again)
    assert np.any(first != other)
    # Inference mode has no dropout: it is the numpy reference's F.
    inference = layer(x, training=False).numpy()
    np.testing.assert_allclose(inference, reference.bottleneck(
        x.numpy(), helpers.bottleneck_weights(layer), 1, True), rtol=0,
        atol=1e-10 * np.abs(inference).max())


@pytest.mark.parametrize("kwargs, message", [
    ({"dropout_rate": 1.0}, r"`dropout_rate` must be in \[0, 1\)"),
    ({"dropout_rate": -0.1}, r"`dropout_rate` must be in \[0, 1\)"),
    ({"mult": 16}, r"`out_channels // mult` must be >= 1"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Bottleneck(8, **kwargs)
