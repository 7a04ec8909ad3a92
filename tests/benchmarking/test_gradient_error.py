"""Tests of the gradient-error measurement against hand-computed and float64 values."""

import numpy as np

from irevnet_tf.benchmarking import gradient_error


def test_compare_gradients_hand_computed():
    reference = [np.array([3.0, 4.0]), np.array([0.0, 0.0, 1.0])]
    gradients = [np.array([3.0, 4.5]), np.array([0.0, 0.0, 1.0])]
    result = gradient_error.compare_gradients(["a", "b"], gradients, reference)
    # ||(0, 0.5, 0, 0, 0)|| / ||(3, 4, 0, 0, 1)|| = 0.5 / sqrt(26)
    np.testing.assert_allclose(result["relative_error"], 0.5 / np.sqrt(26.0))
    np.testing.assert_allclose(result["worst_variable_error"], 0.1)
    assert result["worst_variable"] == "a"


def test_tiny_bijective_model_float32_gradients_are_accurate():
    result = gradient_error.gradient_errors("irevnet_tiny", image_size=32, batch_size=4)
    for kind in ("reversible", "plain"):
        assert result[kind]["relative_error"] < 1e-5, result
    assert result["blocks"] == [1, 1, 1]
