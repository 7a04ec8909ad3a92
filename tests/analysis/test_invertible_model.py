"""The adapter: Keras models, .keras files and SavedModel exports give the same pixel-unit view."""

import os

import numpy as np
import pytest

from irevnet_tf import IRevNet
from irevnet_tf.analysis import (KerasInvertibleModel, SavedModelInvertibleModel,
                                 load_invertible_model, resolve_model_path)
from irevnet_tf.model_files import RunConfig, run_config_path
from tests.helpers import randomize_batch_norms
from tests.helpers.models import identity_twin
from tests.analysis.model_fixtures import MEAN, STD, export_saved_model, normalised


@pytest.fixture(scope="module")
def pixels():
    return np.random.default_rng(5).uniform(0, 255, (5, 32, 32, 1)).astype(np.float32)


def _real(model, grid_points):
    return model.dequantize(grid_points).numpy()


def _check_against_keras(invertible, keras_model, pixels):
    """encode / decode / stages of `invertible` (real units) against the Keras model's
    identity-normalised twin called directly on numpy-normalised pixels (grid points,
    dequantised here)."""
    keras_model = identity_twin(keras_model)
    features = invertible.encode(pixels)
    np.testing.assert_allclose(features, _real(keras_model, keras_model.encode(
        normalised(pixels))), rtol=1e-4, atol=1e-4)
    # Exact up to the quantisation of the normalised input (STD * 2**-19 pixels).
    np.testing.assert_allclose(invertible.decode(features), pixels, atol=1e-3, rtol=0)
    stages = invertible.stage_representations(pixels)
    expected = keras_model.intermediate_representations(normalised(pixels))
    assert len(stages) == len(expected) == 4
    for stage, reference in zip(stages, expected):
        np.testing.assert_allclose(stage, _real(keras_model, reference), rtol=1e-4, atol=1e-4)


def test_model_directory(tiny_model_dir, pixels):
    invertible = load_invertible_model(tiny_model_dir, batch_size=2)  # Several batches.
    assert isinstance(invertible, KerasInvertibleModel)
    assert invertible.image_shape == (32, 32, 1)
    assert invertible.run_config.mean == MEAN
    # Against the restored Keras model called directly (eager, unbatched, normalised here).
    _check_against_keras(invertible, invertible.model, pixels)
    assert invertible.representation_names() == ["stage_0", "stage_1", "stage_2", "stage_3"]
    only_last = invertible.stage_representations(pixels, indices=[3])
    assert len(only_last) == 1 and only_last[0].shape == (5, 4, 4, 192)


def test_keras_file(tiny_model, tmp_path, pixels):
    path = str(tmp_path / "tiny.keras")
    tiny_model.save(path)
    RunConfig(config_name="irevnet_tiny", overrides={"input_shape": [32, 32, 1]},
              image_size=32, num_classes=10, mean=MEAN, std=STD).save(path + ".run_config.json")
    assert resolve_model_path(path) == ("keras_file", path)
    invertible = load_invertible_model(path)
    _check_against_keras(invertible, tiny_model, pixels)


def test_saved_model_base_directory_takes_highest_version(tiny_model, serving_base_dir,
                                                          pixels):
    kind, resolved = resolve_model_path(serving_base_dir)
    assert kind == "saved_model" and resolved == os.path.join(serving_base_dir, "10")
    invertible = load_invertible_model(serving_base_dir, batch_size=3)
    assert isinstance(invertible, SavedModelInvertibleModel)
    assert invertible.image_shape == (32, 32, 1) and invertible.levels == ("stage",)
    assert invertible.run_config is None
    _check_against_keras(invertible, tiny_model, pixels)
    assert invertible.representation_names() == ["stage_0", "stage_1", "stage_2", "stage_3"]
    with pytest.raises(ValueError, match="per-block representations need a Keras model"):
        invertible.stage_representations(pixels, level="block")


def test_saved_model_with_fixed_batch_size(tiny_model, tmp_path, pixels):
    export_dir = export_saved_model(tiny_model, tmp_path / "fixed", batch_size=2)
    invertible = load_invertible_model(export_dir, batch_size=5)  # 5 = 2 + 2 + 1 padded.
    features = invertible.encode(pixels)
    twin = identity_twin(tiny_model)
    np.testing.assert_allclose(features, _real(twin, twin.encode(normalised(pixels))),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(invertible.decode(features), pixels, atol=1e-3, rtol=0)


def test_block_level_representations():
    model = IRevNet(blocks=(2, 1), strides=(1, 2), channels=(6, 24), init_ds=2,
                    input_shape=(16, 16, 1), num_classes=3)
    invertible = KerasInvertibleModel(model)
    x = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 1)).astype(np.float32)
    assert invertible.representation_names("block") == [
        "stage_0", "stage1_block1", "stage1_block2", "stage2_block1"]
    assert invertible.representation_names("stage") == ["stage_0", "stage_1", "stage_2"]
    blocks = invertible.stage_representations(x, level="block")
    stages = invertible.stage_representations(x, level="stage")
    assert len(blocks) == 4 and len(stages) == 3
    np.testing.assert_array_equal(blocks[2], stages[1])  # Stage 1 ends after its 2nd block.
    with pytest.raises(ValueError, match="level must be one of"):
        invertible.stage_representations(x, level="layer")


def test_bad_inputs(tiny_model, tmp_path):
    invertible = KerasInvertibleModel(tiny_model)
    with pytest.raises(ValueError, match=r"expected pixels of shape \(N, 32, 32, 1\)"):
        invertible.encode(np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="does not exist"):
        resolve_model_path(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds nothing to load"):
        resolve_model_path(str(tmp_path / "empty"))
    (tmp_path / "plain.txt").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        resolve_model_path(str(tmp_path / "plain.txt"))
    no_checkpoint = tmp_path / "no_checkpoint"
    RunConfig(config_name="irevnet_tiny", mean=MEAN, std=STD).save(
        run_config_path(str(no_checkpoint)))
    with pytest.raises(ValueError, match="no checkpoint"):
        resolve_model_path(str(no_checkpoint))


def test_export_from_the_project_exporter_carries_its_normalisation(tiny_model, tmp_path,
                                                                    pixels):
    from irevnet_tf.serving import export as export_lib

    run_config = RunConfig(config_name="irevnet_tiny", overrides={"input_shape": [32, 32, 1]},
                           dataset="digits", image_size=32, num_classes=10, mean=MEAN, std=STD)
    version_dir = export_lib.export_saved_model(tiny_model, run_config,
                                                str(tmp_path / "exports"), warmup=False)
    invertible = load_invertible_model(version_dir, batch_size=3)
    assert invertible.run_config is not None and tuple(invertible.run_config.mean) == MEAN
    _check_against_keras(invertible, tiny_model, pixels)


def test_round_trip_is_exact_when_phi_outgrows_float32(tmp_path):
    # Identity normalisation on pixels in [0, 255]: Phi reaches past 64 = 2**(24 - 18), where
    # float32 no longer holds every grid point. decode(encode(x)) through the adapter must
    # still give x's grid points, computed here in float64: round(x * 2**18) / 2**18.
    keras_model = IRevNet(blocks=(1, 1), strides=(1, 2), channels=(6, 24), init_ds=2,
                          input_shape=(16, 16, 1), num_classes=3)
    randomize_batch_norms(keras_model, seed=2)  # F's outputs are then far from zero.
    x = np.random.default_rng(7).uniform(0, 255, (3, 16, 16, 1)).astype(np.float32)
    scale = 2.0 ** keras_model.grid.fraction_bits
    expected = (np.round(x.astype(np.float64) * scale) / scale).astype(np.float32)
    export_dir = export_saved_model(keras_model, tmp_path / "export")
    for invertible in (KerasInvertibleModel(keras_model, batch_size=2),
                       load_invertible_model(export_dir)):
        features = invertible.encode(x)
        assert features.dtype == np.float64
        # The case is real: float32 features would have lost bits.
        assert np.abs(features).max() > 64
        assert np.any(features.astype(np.float32).astype(np.float64) != features)
        np.testing.assert_array_equal(invertible.decode(features), expected)


def test_saved_model_decode_quantises_with_the_models_format(serving_base_dir, pixels):
    """The SavedModel adapter rounds features onto the grid with the export's FixedPoint:
    inside the range, the grid points numpy computes in float64; outside it, the stream's
    range error instead of an int32 cast that wraps around."""
    from irevnet_tf.layers.fixed_point import StreamRangeError

    invertible = load_invertible_model(serving_base_dir, batch_size=5)
    features = invertible.encode(pixels)
    scale = 2.0 ** invertible._grid.fraction_bits
    np.testing.assert_array_equal(features * scale, np.round(features * scale))
    too_large = features.copy()
    too_large.flat[0] = 2.0 ** 31 / scale  # Past +-2**30 grid points: would wrap in int32.
    with pytest.raises(StreamRangeError, match="InvertibleModel.decode: the features"):
        invertible.decode(too_large)
