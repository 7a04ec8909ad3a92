"""BatchNorm: batch statistics against numpy, and the switchable moving-statistics update."""

import numpy as np
import pytest
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


def _numpy_batch_norm_and_gradients(x, gamma, beta, upstream, epsilon):
    """float64 forward and the hand-derived gradients of sum(upstream * y)."""
    axes = (0, 1, 2)
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    normalised = (x - mean) / np.sqrt(var + epsilon)
    y = gamma * normalised + beta
    grad_gamma = (upstream * normalised).sum(axis=axes)
    grad_beta = upstream.sum(axis=axes)
    grad_x = gamma / np.sqrt(var + epsilon) * (
        upstream - upstream.mean(axis=axes) - normalised * (upstream * normalised).mean(axis=axes))
    return y, mean, var, grad_x, grad_gamma, grad_beta


def test_float32_training_mode_fused_kernel_matches_float64_numpy():
    # float32 training mode runs TensorFlow's fused kernel; check its outputs, the biased
    # variance it feeds the moving statistics, and its gradients against numpy float64.
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 5, 4, 7)) * 2.0 + 0.5
    upstream = rng.standard_normal(x.shape)
    gamma, beta = rng.uniform(0.5, 1.5, 7), rng.standard_normal(7)
    norm = BatchNorm(momentum=0.9, epsilon=1e-5, dtype="float32")
    norm.build(x.shape)
    norm.gamma.assign(gamma.astype(np.float32))
    norm.beta.assign(beta.astype(np.float32))
    inputs = tf.constant(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        y = norm(inputs, training=True)
        objective = tf.reduce_sum(y * tf.constant(upstream, tf.float32))
    grad_x, grad_gamma, grad_beta = tape.gradient(objective, [inputs, norm.gamma, norm.beta])
    want_y, mean, var, want_gx, want_gg, want_gb = _numpy_batch_norm_and_gradients(
        x.astype(np.float32).astype(np.float64), gamma, beta, upstream, 1e-5)
    np.testing.assert_allclose(y.numpy(), want_y, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grad_x.numpy(), want_gx, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(grad_gamma.numpy(), want_gg, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(grad_beta.numpy(), want_gb, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(norm.moving_mean.numpy(), 0.1 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(norm.moving_variance.numpy(), 0.9 + 0.1 * var, rtol=1e-5)


def test_float32_training_mode_compiles_with_xla():
    norm = BatchNorm(dtype="float32")
    norm.build((2, 4, 4, 3))
    x = tf.constant(np.random.default_rng(0).standard_normal((2, 4, 4, 3)), tf.float32)
    compiled = tf.function(lambda t: norm(t, training=True, update_statistics=False),
                           jit_compile=True)
    want = (x.numpy() - x.numpy().mean(axis=(0, 1, 2))) / np.sqrt(
        x.numpy().var(axis=(0, 1, 2)) + 1e-5)
    np.testing.assert_allclose(compiled(x).numpy(), want, rtol=1e-4, atol=1e-5)


def _random_norm(channels, dtype, seed=5):
    rng = np.random.default_rng(seed)
    norm = BatchNorm(dtype=dtype)
    norm.build((None, 3, 3, channels))
    values = {"gamma": rng.uniform(-1.5, 1.5, channels), "beta": rng.normal(0, 1, channels),
              "moving_mean": rng.normal(0, 1, channels),
              "moving_variance": rng.uniform(0.5, 1.5, channels)}
    for name, value in values.items():
        getattr(norm, name).assign(value)
    return norm, values


def _numpy_inference(x, values, epsilon=1e-5):
    return ((x - values["moving_mean"]) / np.sqrt(values["moving_variance"] + epsilon)
            * values["gamma"] + values["beta"])


@pytest.mark.parametrize("policy,channels,tolerance", [
    ("float32", 5, 1e-5), ("mixed_bfloat16", 16, 2e-2),
    # 4 channels: the bfloat16 layer runs its kernel in float32 (oneDNN is slow there).
    ("mixed_bfloat16", 4, 2e-2), ("float64", 5, 1e-12)])
def test_grid_points_in_scales_folded_and_relu_match_numpy(policy, channels, tolerance):
    """Integer grid points with their input_scale 2**-k, an output_scale 2**k and the ReLU,
    all folded into one kernel, against float64 numpy on the real values."""
    norm, values = _random_norm(channels, policy)
    k = 18
    grid = np.random.default_rng(6).integers(-2 ** 21, 2 ** 21, (2, 3, 3, channels))
    real = grid * 2.0 ** -k
    out = norm(tf.constant(grid, tf.int32), training=False, input_scale=2.0 ** -k, relu=True,
               output_scale=2.0 ** k)
    assert out.dtype.name == norm.compute_dtype
    expected = np.maximum(_numpy_inference(real, values), 0.0) * 2.0 ** k
    scale = np.abs(expected).max()
    np.testing.assert_allclose(np.asarray(tf.cast(out, tf.float64)) / scale, expected / scale,
                               rtol=0, atol=tolerance)


def test_grid_points_without_their_scale_are_refused():
    norm, _ = _random_norm(3, "float32")
    with pytest.raises(ValueError, match="input_scale"):
        norm(tf.zeros((1, 3, 3, 3), tf.int32), training=False)


def test_training_with_scales_matches_numpy_batch_statistics():
    norm, values = _random_norm(5, "float32")
    x = np.random.default_rng(7).standard_normal((4, 3, 3, 5)) * 2 + 1
    out = norm(tf.constant(x * 4, tf.float32), training=True, update_statistics=False,
               input_scale=0.25, output_scale=8.0).numpy()
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    expected = ((x - mean) / np.sqrt(var + 1e-5) * values["gamma"] + values["beta"]) * 8
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
