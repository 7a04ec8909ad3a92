"""BatchNorm: batch statistics against numpy, and the switchable moving-statistics update."""

import numpy as np
import tensorflow as tf

from irevnet_tf.layers import BatchNorm


def test_training_mode_matches_numpy_and_updates_once_when_asked():
    x = np.random.default_rng(2).standard_normal((4, 3, 3, 5)) * 3 + 1
    norm = BatchNorm(momentum=0.9, epsilon=1e-5, dtype="float64")
    norm.build(x.shape)
    y = norm(tf.constant(x), training=True, update_statistics=False).numpy()
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(norm.moving_mean.numpy(), np.zeros(5))
    norm(tf.constant(x), training=True)
    np.testing.assert_allclose(norm.moving_mean.numpy(), 0.1 * mean, rtol=1e-12)
    np.testing.assert_allclose(norm.moving_variance.numpy(), 0.9 + 0.1 * var, rtol=1e-12)


def test_inference_uses_moving_statistics():
    norm = BatchNorm(dtype="float64")
    norm.build((None, 2, 2, 3))
    norm.moving_mean.assign([1.0, 2.0, 3.0])
    norm.moving_variance.assign([4.0, 1.0, 0.25])
    x = np.ones((1, 2, 2, 3)) * 5
    expected = (5 - np.array([1, 2, 3])) / np.sqrt(np.array([4, 1, 0.25]) + 1e-5)
    np.testing.assert_allclose(norm(x, training=False).numpy()[0, 0, 0], expected, rtol=1e-12)
    config = BatchNorm.from_config(norm.get_config()).get_config()
    assert config["epsilon"] == 1e-5 and config["momentum"] == 0.9
