"""The round-trip error budget: the float64 copy, the four round trips and the block figures."""

import numpy as np
import pytest
import tensorflow as tf

import irevnet_tf
from irevnet_tf.benchmarking import round_trip
from tests.helpers import randomize_batch_norms


@pytest.fixture(scope="module", params=["irevnet_tiny", "irevnet_cifar_tiny"])
def model_and_images(request):
    overrides = {}
    name = request.param
    if name == "irevnet_cifar_tiny":  # Injective: the padded blocks take another path.
        name, overrides = "irevnet_cifar", {"blocks": (1, 1, 1)}
    model = irevnet_tf.build_irevnet(name, **overrides)
    randomize_batch_norms(model, seed=3)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((2, *model.image_shape)).astype(np.float32)
    return model, images


def test_float64_copy_computes_the_same_function(model_and_images):
    model, images = model_and_images
    twin = round_trip.float64_copy(model)
    assert all(w.dtype == np.float64 for w in twin.get_weights() if w.dtype.kind == "f")
    phi32 = model.encode(tf.constant(images)).numpy()
    phi64 = twin.encode(tf.constant(images, tf.float64)).numpy()
    assert phi64.dtype == np.float64
    np.testing.assert_allclose(phi32, phi64, atol=1e-5 * np.abs(phi64).max())
    # Exact arithmetic inverts to float64 rounding.
    restored = twin.decode(tf.constant(phi64)).numpy()
    assert np.abs(restored - images).max() < 1e-12 * np.abs(images).max()


def test_round_trip_budget_matches_direct_computations(model_and_images):
    model, images = model_and_images
    budget = round_trip.round_trip_budget(model, images)
    restored = model.decode(model.encode(tf.constant(images))).numpy()
    direct = np.abs(restored.astype(np.float64) - images).max() / np.abs(images).max()
    assert budget["encode32_decode32"] == pytest.approx(direct, rel=1e-6)
    # float32 arithmetic is inexact; storing an exact Phi in float32 costs at most a few
    # float32 units per block; none of it reaches float64 precision.
    for key in ("encode32_decode32", "encode32_decode64", "encode64_decode32",
                "encode64_decode64", "phi32_relative_error"):
        assert 1e-10 < budget[key] < 1e-4, (key, budget)
    # float64 throughout: float64 rounding, a few units per block.
    assert budget["float64_throughout"] < 1e-12, budget


def test_smallest_moving_variance_finds_the_collapsed_channel(model_and_images):
    model, _ = model_and_images
    twin = round_trip.float64_copy(model)  # A copy whose statistics this test may change.
    norm = twin.stack[-1].bottleneck.bn2
    variance = np.ones(norm.moving_variance.shape)
    variance[1] = 3e-4  # randomize_batch_norms draws variances well above this.
    norm.moving_variance.assign(variance)
    assert round_trip.smallest_moving_variance(twin) == pytest.approx(3e-4)


def test_block_figures(model_and_images):
    model, images = model_and_images
    figures = round_trip.block_figures(model, images)
    assert [f["block"] for f in figures] == [block.name for block in model.stack]
    for figure in figures:
        # One float32 rounding of `y1 = F(x2) + psi(x1)` and one of the subtraction.
        assert figure["inversion_error_units"] <= 4.0, figure
        assert 0.0 < figure["f_relative_rms_error"] < 1e-5, figure
        assert 0.0 < figure["f_relative_max_error"] < 1e-5, figure


def test_block_figures_see_a_wrong_inverse(model_and_images, monkeypatch):
    # The inversion figure must notice an inverse that is off by more than rounding.
    model, images = model_and_images
    original = type(model.stack[0]).inverse

    def perturbed(self, outputs, training=False, dropout_seed=None):
        x1, x2 = original(self, outputs, training=training, dropout_seed=dropout_seed)
        return x1 * (1 + 1e-5), x2

    monkeypatch.setattr(type(model.stack[0]), "inverse", perturbed)
    figures = round_trip.block_figures(model, images)
    assert max(f["inversion_error_units"] for f in figures) > 20
