"""Interpolation: end points, the pixel row, the representation row, and the strips."""

import json

import numpy as np
import pytest
import tensorflow as tf

from irevnet_tf.analysis import KerasInvertibleModel, analysis_data, interpolation
from tests.analysis.model_fixtures import MEAN, STD
from tests.helpers.models import identity_twin


@pytest.fixture
def setting(tiny_model):
    model = KerasInvertibleModel(tiny_model)
    examples = analysis_data.load_examples("digits", (32, 32, 1), num_examples=40)
    return model, examples


def test_choose_pairs_joins_different_classes():
    labels = np.array([0, 1, 2, 0, 1, 2])
    assert interpolation.choose_pairs(labels, 4) == [(0, 1), (1, 2), (2, 0), (3, 4)]
    with pytest.raises(ValueError, match="at least 2 classes"):
        interpolation.choose_pairs(np.array([3, 3, 3]), 1)


def test_rows(setting, tiny_model):
    model, examples = setting
    first, second = examples.holdout_pixels[0], examples.holdout_pixels[1]
    representation_row, pixel_row, t = interpolation.interpolation_rows(model, first, second,
                                                                        steps=5)
    np.testing.assert_allclose(t, [0, 0.25, 0.5, 0.75, 1])
    decoded = model.decode(model.encode(np.stack([first, second])))
    np.testing.assert_allclose(representation_row[0], decoded[0], atol=1e-5, rtol=0)
    np.testing.assert_allclose(representation_row[-1], decoded[1], atol=1e-5, rtol=0)
    np.testing.assert_allclose(representation_row[0], first, atol=1e-2, rtol=0)
    np.testing.assert_allclose(pixel_row[1], 0.75 * first + 0.25 * second, atol=1e-4)
    # The middle image, independently: the Keras model on the mixed normalised features.
    twin = identity_twin(tiny_model)
    phi_first = twin.dequantize(twin.encode((first[None] - MEAN[0]) / STD[0])).numpy()
    phi_second = twin.dequantize(twin.encode((second[None] - MEAN[0]) / STD[0])).numpy()
    middle = twin.decode(0.5 * phi_first + 0.5 * phi_second).numpy()[0]
    np.testing.assert_allclose(representation_row[2], middle * STD[0] + MEAN[0], atol=1e-2)
    with pytest.raises(ValueError, match="steps"):
        interpolation.interpolation_rows(model, first, second, steps=1)


def test_run_interpolation_writes_strips(setting, tmp_path):
    model, examples = setting
    report = interpolation.run_interpolation(model, examples.holdout_pixels,
                                             examples.holdout_labels, str(tmp_path),
                                             num_pairs=3, steps=6, exact_strips=True)
    assert len(report["pairs"]) == 3
    for record in report["pairs"]:
        first, second = record["indices"]
        assert record["labels"][0] != record["labels"][1]
        strip = tf.io.decode_png(tf.io.read_file(record["strip_png"])).numpy()
        # 2 rows x 6 columns of 32x32, border 2.
        assert strip.shape == (2 * 32 + 3 * 2, 6 * 32 + 7 * 2, 1)
        # Lower row: the pixel-space walk; its ends are the two images.
        np.testing.assert_array_equal(strip[36:68, 2:34],
                                      np.clip(np.rint(examples.holdout_pixels[first]), 0, 255))
        np.testing.assert_array_equal(
            strip[36:68, 2 + 5 * 34:34 + 5 * 34],
            np.clip(np.rint(examples.holdout_pixels[second]), 0, 255))
        assert record["endpoint_max_abs_error"] < 1e-2
    # The figure for people: two panels of 3 pairs x 6 steps side by side, images enlarged
    # (about 90 pixels a cell), so far wider than the two raw 6-image strips.
    overview = tf.io.decode_png(tf.io.read_file(report["overview_png"])).numpy()
    assert overview.shape[1] > 2 * 6 * 80 and overview.shape[0] > 3 * 80
    with open(report["json"], encoding="utf-8") as handle:
        assert len(json.load(handle)["t"]) == 6


class _IntegerStream:
    """A stand-in invertible model whose Phi is int32 (as an integer invertible stream's):
    Phi(x) = round(4 x), decode(f) = f / 4."""

    source = name = "integer stand-in"

    def encode(self, pixels):
        return np.rint(np.asarray(pixels, np.float64) * 4).astype(np.int32)

    def decode(self, features):
        return np.asarray(features, np.float64) / 4


def test_integer_representations_are_mixed_and_drawn(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (4, 8, 8, 1)).astype(np.float32)
    labels = np.array([0, 1, 0, 1])
    representation_row, _, _ = interpolation.interpolation_rows(_IntegerStream(), pixels[0],
                                                                pixels[1], steps=3)
    np.testing.assert_array_equal(representation_row[0], pixels[0])
    np.testing.assert_allclose(representation_row[1], (pixels[0] + pixels[1]) / 2)
    report = interpolation.run_interpolation(_IntegerStream(), pixels, labels, str(tmp_path),
                                             num_pairs=2, steps=3)
    assert tf.io.decode_png(tf.io.read_file(report["overview_png"])).shape[-1] in (3, 4)
    from irevnet_tf.analysis import reconstruction

    report = reconstruction.run_reconstruction(_IntegerStream(), pixels, labels, str(tmp_path))
    assert report["max_abs_error"] == 0
