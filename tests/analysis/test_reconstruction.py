"""Reconstruction: error statistics by hand, and the grid and JSON of a tiny model."""

import json

import numpy as np
import pytest
import tensorflow as tf

from irevnet_tf.analysis import KerasInvertibleModel, analysis_data, image_grid, reconstruction
from tests.analysis.model_fixtures import MEAN, STD
from tests.helpers.models import identity_twin


def test_errors_by_hand():
    originals = np.array([[0.0, 100.0], [200.0, 50.0]])
    reconstructions = np.array([[1.0, 100.0], [197.0, 50.0]])
    # Differences 1, 0, -3, 0.
    errors = reconstruction.reconstruction_errors(originals, reconstructions)
    assert errors["max_abs_error"] == pytest.approx(3.0)
    assert errors["max_relative_error"] == pytest.approx(3.0 / 200.0)
    assert errors["rms_error"] == pytest.approx(np.sqrt(10.0 / 4.0))
    assert errors["mean_abs_error"] == pytest.approx(1.0)
    amplified, factor = reconstruction.amplified_difference(originals, reconstructions)
    assert factor == pytest.approx(85.0)
    np.testing.assert_allclose(amplified, [[85.0, 0.0], [255.0, 0.0]])
    exact, unit = reconstruction.amplified_difference(originals, originals)
    assert unit == 1.0 and not exact.any()
    black = reconstruction.reconstruction_errors(np.zeros(3), np.zeros(3))
    assert black["max_relative_error"] == 0.0


def test_pick_examples_goes_round_the_classes():
    labels = np.array([2, 2, 0, 1, 0, 2])
    assert reconstruction.pick_examples(labels, 4) == [2, 3, 0, 4]
    assert reconstruction.pick_examples(labels, 10) == [2, 3, 0, 4, 1, 5]


def test_run_reconstruction_writes_grid_and_json(tiny_model, tmp_path):
    model = KerasInvertibleModel(tiny_model)
    examples = analysis_data.load_examples("digits", (32, 32, 1), num_examples=40)
    pixels, labels = examples.holdout_pixels, examples.holdout_labels
    report = reconstruction.run_reconstruction(model, pixels, labels, str(tmp_path),
                                               exact_grid=True)

    # Nothing lost: float32 rounding only, far below one grey level.
    assert report["max_abs_error"] < 1e-2
    assert report["max_relative_error"] == pytest.approx(
        report["max_abs_error"] / np.abs(pixels).max())
    # Independently: the normalised round trip through the Keras model itself.
    twin = identity_twin(tiny_model)
    direct = twin.decode(twin.encode((pixels - MEAN[0]) / STD[0])).numpy()
    direct_pixels = direct * STD[0] + MEAN[0]
    assert np.abs(direct_pixels - pixels).max() < 1e-2

    grid = tf.io.decode_png(tf.io.read_file(report["grid_png"])).numpy()
    # 3 rows (original, reconstruction, difference) x 8 columns of 32x32, border 2.
    assert grid.shape == (3 * 32 + 4 * 2, 8 * 32 + 9 * 2, 1)
    shown = report["shown_indices"]
    assert len(shown) == 8 and len(set(labels[shown])) == 8
    for column, index in enumerate(shown):
        left = 2 + column * 34
        np.testing.assert_array_equal(grid[2:34, left:left + 32],
                                      np.clip(np.rint(pixels[index]), 0, 255))
        # Within one grey level: rounding may go either way at x.5.
        np.testing.assert_allclose(grid[36:68, left:left + 32],
                                   np.clip(np.rint(direct_pixels[index]), 0, 255), atol=1)
    difference_row = np.concatenate([grid[70:102, 2 + c * 34:34 + c * 34] for c in range(8)])
    assert difference_row.max() == 255  # The largest difference is white.

    with open(report["json"], encoding="utf-8") as handle:
        stored = json.load(handle)
    assert stored["amplification_factor"] == pytest.approx(report["amplification_factor"])
    assert stored["amplification_factor"] > 1
    assert stored["max_abs_error"] == pytest.approx(report["max_abs_error"])
    assert stored["num_images"] == len(pixels)


def test_three_channel_grid(tmp_path):
    from irevnet_tf import IRevNet

    model = IRevNet(blocks=(1, 1), strides=(1, 2), channels=(6, 24), init_ds=2,
                    input_shape=(16, 16, 3), num_classes=4, pixel_mean=(120.0, 110.0, 100.0),
                    pixel_std=(60.0, 60.0, 60.0))
    invertible = KerasInvertibleModel(model)
    pixels = np.random.default_rng(0).uniform(0, 255, (3, 16, 16, 3)).astype(np.float32)
    report = reconstruction.run_reconstruction(invertible, pixels, np.array([0, 1, 2]),
                                               str(tmp_path), exact_grid=True)
    grid = tf.io.decode_png(tf.io.read_file(report["grid_png"])).numpy()
    assert grid.shape == (*image_grid.grid_size(3, 3, 16, 16), 3)
