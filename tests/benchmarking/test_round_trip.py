"""The exactness report: bit-exact round trips, the quantisation of off-grid input, the range used."""

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


def test_float64_copy_has_the_same_weights(model_and_images):
    model, images = model_and_images
    twin = round_trip.float64_copy(model)
    assert all(w.dtype == np.float64 for w in twin.get_weights() if w.dtype.kind == "f")
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a.astype(np.float64), b)
    # Both run the exact stream: both give the images' grid points back.
    restored = twin.decode(twin.encode(tf.constant(images, tf.float64))).numpy()
    np.testing.assert_array_equal(restored, np.round(images.astype(np.float64) * 2.0 ** 18)
                                  / 2.0 ** 18)


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_exactness_report(model_and_images, policy):
    model, images = model_and_images
    copy = model.with_dtype_policy(policy)
    report = round_trip.exactness_report(copy, images)
    assert report["bit_exact"] and report["differing_values"] == 0, report
    # Whole batches may differ from single images (kernels pick algorithms by batch size);
    # one image at a time cannot.
    assert isinstance(report["batch_independent"], bool)
    chunked = copy.with_inference_chunk(1)
    assert round_trip.exactness_report(chunked, images)["batch_independent"]
    # Off the grid the quantisation is the only error: at most half a grid step.
    bound = 2.0 ** -19 / np.abs(images).max()
    assert 0.0 < report["input_relative_error"] <= bound, report
    # Phi is one of the stream's representations, so it bounds the largest value below.
    phi = copy.encode(tf.constant(images)).numpy() / 2.0 ** 18
    assert np.abs(phi).max() == report["largest_phi_value"] <= report["largest_stream_value"]
    assert report["range_headroom"] == pytest.approx(4096.0 / report["largest_stream_value"])


def test_exactness_report_sees_a_wrong_inverse(model_and_images, monkeypatch):
    # Off by one grid point in one block's inverse: the report must say so.
    model, images = model_and_images
    original = type(model.stack[0]).inverse

    def perturbed(self, outputs, training=False, dropout_seed=None):
        x1, x2 = original(self, outputs, training=training, dropout_seed=dropout_seed)
        return x1 + 1, x2

    monkeypatch.setattr(type(model.stack[0]), "inverse", perturbed)
    fresh = model.with_dtype_policy("mixed_bfloat16")  # New compiled functions.
    report = round_trip.exactness_report(fresh, images, check_batch_independence=False)
    assert not report["bit_exact"] and report["differing_values"] > 0


def test_smallest_moving_variance_finds_the_collapsed_channel(model_and_images):
    model, _ = model_and_images
    twin = round_trip.float64_copy(model)  # A copy whose statistics this test may change.
    norm = twin.stack[-1].bottleneck.bn2
    variance = np.ones(norm.moving_variance.shape)
    variance[1] = 3e-4  # randomize_batch_norms draws variances well above this.
    norm.moving_variance.assign(variance)
    assert round_trip.smallest_moving_variance(twin) == pytest.approx(3e-4)
