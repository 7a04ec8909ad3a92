"""The model carries its pixel normalisation: `encode`/`call` take pixels, `decode` returns
pixels, and a `.keras` file alone is the whole model.

References are independent of the model's own normalisation: numpy computes
`(pixels - mean) / std`, and an identity-normalised twin (the same weights, mean 0 and
std 1) runs the stream on it.
"""

import os
import shutil
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from irevnet_tf import IRevNet, build_irevnet
from irevnet_tf import model_files
from irevnet_tf.layers.fixed_point import DEFAULT_FRACTION_BITS
from tests.helpers import randomize_batch_norms
from tests.helpers.processes import python_env

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
SUBPROCESS_TIMEOUT = 300


def integer_pixels(shape, seed=0):
    """Integer pixels in [0, 255] as float32, with 0 and 255 among them."""
    pixels = np.random.default_rng(seed).integers(0, 256, shape).astype(np.float32)
    pixels.reshape(-1)[:2] = (0.0, 255.0)
    return pixels


def twin(model):
    """`model`'s weights in an identity-normalised model (it takes normalised images)."""
    return model.with_pixel_normalization([0.0], [1.0])


def tiny(**kwargs):
    model = build_irevnet("irevnet_tiny", **kwargs)
    randomize_batch_norms(model, seed=3)
    return model


def test_encode_of_pixels_is_encode_of_numpy_normalised_images_bit_for_bit():
    # mean 128, std 64: (x - 128) / 64 of an integer pixel is exact in float32, so the
    # model's normalisation and numpy's give the same bits and the grid points must agree.
    model = tiny(pixel_mean=(128.0,), pixel_std=(64.0,))
    identity = twin(model)
    pixels = integer_pixels((3, 32, 32, 3))
    normalised = (pixels - np.float32(128.0)) / np.float32(64.0)
    assert np.array_equal(normalised.astype(np.float64),
                          (pixels.astype(np.float64) - 128.0) / 64.0)  # exact indeed
    phi = model.encode(pixels).numpy()
    np.testing.assert_array_equal(phi, identity.encode(normalised).numpy())
    for got, want in zip(model.intermediate_representations(pixels, level="block"),
                         identity.intermediate_representations(normalised, level="block")):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    np.testing.assert_array_equal(model(pixels).numpy(), identity(normalised).numpy())
    # decode returns pixels: the twin's normalised images through x * 64 + 128 (float32).
    decoded = model.decode(phi).numpy()
    np.testing.assert_array_equal(
        decoded, identity.decode(phi).numpy() * np.float32(64.0) + np.float32(128.0))
    np.testing.assert_array_equal(decoded, pixels)  # 2**-18 * 64 grid: integers are on it.
    # Training mode (batch statistics; it updates the moving ones, so it comes last).
    np.testing.assert_array_equal(model.encode(pixels, training=True).numpy(),
                                  identity.encode(normalised, training=True).numpy())


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_integer_pixels_come_back_identical_with_imagenet_normalisation(policy):
    model = tiny(pixel_mean=IMAGENET_MEAN, pixel_std=IMAGENET_STD).with_dtype_policy(policy)
    assert model.normalization.dtype_policy.name == "float32"  # Before the quantisation.
    pixels = integer_pixels((4, 32, 32, 3), seed=1)
    decoded = model.decode(model.encode(pixels)).numpy()
    assert decoded.dtype == np.float32
    np.testing.assert_array_equal(np.round(decoded), pixels)
    # The bound: encode rounds n = (x - mean) / std onto the grid 2**-k, |q - n| <= 2**-(k+1);
    # decode gives q back exactly and maps it to q * std + mean, so in pixels the error is
    # std * 2**-(k+1). float32 adds a rounding of at most half an ulp of 256 (2**-16) at each
    # of the four operations on pixel-sized values (x - mean, / std, * std, + mean; the
    # relative error of the division, times std, is below that of a pixel-sized value).
    bound = max(IMAGENET_STD) * 2.0 ** -(DEFAULT_FRACTION_BITS + 1) + 4 * 2.0 ** -16
    error = np.abs(decoded.astype(np.float64) - pixels)
    assert error.max() <= bound, (error.max(), bound)


def test_get_config_and_keras_file_keep_the_normalisation(tmp_path):
    model = tiny(pixel_mean=IMAGENET_MEAN, pixel_std=IMAGENET_STD)
    config = model.get_config()
    assert config["pixel_mean"] == list(IMAGENET_MEAN)
    assert config["pixel_std"] == list(IMAGENET_STD)
    copy = IRevNet.from_config(config)
    assert (copy.pixel_mean, copy.pixel_std) == (IMAGENET_MEAN, IMAGENET_STD)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert (loaded.pixel_mean, loaded.pixel_std) == (IMAGENET_MEAN, IMAGENET_STD)
    pixels = integer_pixels((2, 32, 32, 3), seed=2)
    np.testing.assert_array_equal(loaded.encode(pixels).numpy(), model.encode(pixels).numpy())
    # Copies with another policy or chunking keep it too.
    assert model.with_dtype_policy("mixed_bfloat16").pixel_std == IMAGENET_STD
    assert model.with_inference_chunk(1).pixel_mean == IMAGENET_MEAN
    # The default is the identity: existing callers that feed normalised images are unchanged.
    default = build_irevnet("irevnet_tiny")
    assert default.get_config()["pixel_mean"] == [0.0] and default.normalization.is_identity


@pytest.mark.parametrize("kwargs, message", [
    (dict(pixel_std=(1.0, 0.0, 1.0)), "`pixel_std` must be positive"),
    (dict(pixel_std=-2.0), "`pixel_std` must be positive"),
    (dict(pixel_mean=(1.0, 2.0)), r"`pixel_mean` must be one finite number or one per image "
                                  r"channel \(3\)"),
    (dict(pixel_std=(1.0, 1.0, 1.0, 1.0)), r"`pixel_std` .* \(3\)"),
    (dict(pixel_mean=float("nan")), "`pixel_mean`"),
    (dict(pixel_std="wide"), "`pixel_std`"),
])
def test_bad_normalisation_is_refused_naming_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_irevnet("irevnet_tiny", **kwargs)
    # The same check guards a copy with another normalisation.
    with pytest.raises(ValueError, match=message):
        build_irevnet("irevnet_tiny").with_pixel_normalization(
            kwargs.get("pixel_mean", 0.0), kwargs.get("pixel_std", 1.0))


def test_with_pixel_normalization_copies_the_weights_and_takes_one_value_for_all_channels():
    model = tiny()
    copy = model.with_pixel_normalization(128.0, 64.0)
    assert (copy.pixel_mean, copy.pixel_std) == ((128.0,), (64.0,))
    assert copy.get_config()["pixel_std"] == [64.0]
    assert (model.pixel_mean, model.pixel_std) == ((0.0,), (1.0,))  # The original is unchanged.
    for got, want in zip(copy.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(got, want)


def test_keras_file_with_a_conflicting_sidecar_is_refused(tmp_path):
    model = tiny(pixel_mean=(128.0,), pixel_std=(64.0,))
    path = str(tmp_path / "m.keras")
    model_files.save_keras_model(model, model_files.RunConfig("irevnet_tiny", mean=(1.0,),
                                                              std=(2.0,)), path)
    restored, run_config = model_files.restore_model(path)
    # The sidecar records the model's own normalisation, whatever the RunConfig said.
    assert (run_config.mean, run_config.std) == ((128.0,), (64.0,)) == (restored.pixel_mean,
                                                                        restored.pixel_std)
    model_files.RunConfig("irevnet_tiny", mean=(1.0,), std=(2.0,)).save(
        path + model_files.SIDECAR_SUFFIX)
    with pytest.raises(ValueError, match="m.keras: the model normalises pixels with mean"):
        model_files.restore_model(path)
    os.remove(path + model_files.SIDECAR_SUFFIX)
    restored, run_config = model_files.restore_model(path)  # No sidecar: the model's numbers.
    assert run_config.mean == (128.0,) and restored.pixel_std == (64.0,)


# --- a .keras file alone, in a process that never sees the sidecar ------------------------

CHILD_SCRIPT = textwrap.dedent("""
    import os, sys
    import numpy as np
    import keras
    import irevnet_tf  # Registers the layers; nothing else of the package is used.
    directory, pixels_path = sys.argv[1:3]
    assert sorted(os.listdir(directory)) == ["model.keras", "pixels.npy"], os.listdir(directory)
    model = keras.saving.load_model(os.path.join(directory, "model.keras"))
    pixels = np.load(pixels_path)
    phi = model.encode(pixels).numpy()
    np.save(os.path.join(directory, "phi.npy"), phi)
    np.save(os.path.join(directory, "decoded.npy"), model.decode(phi).numpy())
    np.save(os.path.join(directory, "predicted.npy"), model.predict(pixels, verbose=0))
    print("mean", list(model.pixel_mean), "std", list(model.pixel_std))
""")


def _outputs_of_the_keras_file_alone(keras_path, pixels, tmp_path):
    """encode, decode and predict of `pixels` by `keras.saving.load_model` in a fresh process
    that sees only a copy of the .keras file (no sidecar)."""
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(keras_path, alone / "model.keras")
    np.save(alone / "pixels.npy", pixels)
    result = subprocess.run([sys.executable, "-c", CHILD_SCRIPT, str(alone),
                             str(alone / "pixels.npy")], env=python_env(),
                            cwd=str(alone), capture_output=True, text=True,
                            timeout=SUBPROCESS_TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    return {name: np.load(alone / f"{name}.npy") for name in ("phi", "decoded", "predicted")}


def _check_against_references(outputs, reference_model, pixels, export_dir, tmp_path):
    """The child's outputs equal `reference_model`'s (bit for bit) and the export's."""
    phi = reference_model.encode(pixels).numpy()
    np.save(tmp_path / "reference_phi.npy", phi)
    np.testing.assert_array_equal(outputs["phi"], phi)
    np.testing.assert_array_equal(outputs["decoded"], reference_model.decode(phi).numpy())
    np.testing.assert_array_equal(outputs["predicted"],
                                  reference_model.predict(pixels, verbose=0))
    np.testing.assert_array_equal(np.round(outputs["decoded"]), pixels)
    from irevnet_tf.serving import signatures as names

    loaded = tf.saved_model.load(export_dir)
    features = loaded.signatures[names.ENCODE](images=tf.constant(pixels))[names.FEATURES]
    # The export runs one image at a time (inference_chunk=1): a grid point may move by F's
    # rounding in another kernel shape, as in tests/serving.
    assert np.abs(features.numpy() - outputs["phi"]).max() <= 4
    decoded = loaded.signatures[names.DECODE](features=tf.constant(outputs["phi"]))
    np.testing.assert_allclose(decoded[names.IMAGES].numpy(), outputs["decoded"], atol=1e-3)
    np.testing.assert_array_equal(decoded[names.PIXELS].numpy(), pixels.astype(np.uint8))
    logits = loaded.signatures[names.SERVING_DEFAULT](images=tf.constant(pixels))["logits"]
    np.testing.assert_allclose(logits.numpy(), outputs["predicted"], rtol=1e-4, atol=1e-4)


def test_trainer_run_keras_file_alone_equals_the_trainer_and_the_export(tmp_path):
    from irevnet_tf import data
    from irevnet_tf.serving import export as export_lib
    from irevnet_tf.training import trainer

    model_dir = str(tmp_path / "run")
    result = trainer.train(model_dir=model_dir, dataset="digits", config="irevnet_tiny",
                           image_size=16, batch_size=16, train_steps=4, steps_per_loop=2,
                           eval_every=0, checkpoint_every=0, eval_steps=1, summary_images=0,
                           seed=0)
    info = data.dataset_info("digits")
    # The trainer's model (checkpoint + run_config.json) carries the data's normalisation.
    trained, run_config = model_files.restore_model(model_dir)
    assert trained.pixel_mean == tuple(info.mean) and trained.pixel_std == tuple(info.std)
    assert (run_config.mean, run_config.std) == (tuple(info.mean), tuple(info.std))
    images, _ = next(iter(data.build_dataset("digits", "test", global_batch_size=6,
                                             image_size=16, is_training=False)))
    pixels = np.round(images.numpy())  # Pixels in [0, 255] (integers: exact round trip).
    assert pixels.max() > 200 and pixels.min() >= 0
    export_dir = export_lib.export_model_path(model_dir, str(tmp_path / "export"),
                                              warmup=False)
    outputs = _outputs_of_the_keras_file_alone(result["keras_model"], pixels, tmp_path)
    _check_against_references(outputs, trained, pixels, export_dir, tmp_path)


def test_converted_release_keras_file_alone_equals_the_conversion_and_the_export(tmp_path):
    from irevnet_tf.conversion import release
    from irevnet_tf.serving import export as export_lib
    from tests.conversion import fixtures

    fixture = fixtures.release("imagenet_like")
    output = str(tmp_path / "converted.keras")
    release.convert_release(fixture.path, output, overrides=fixture.arch.model_overrides())
    converted, _ = model_files.restore_model(output)
    assert (converted.pixel_mean, converted.pixel_std) == (IMAGENET_MEAN, IMAGENET_STD)
    # The release's normalised test images as pixels, rounded to integers, clipped.
    pixels = np.clip(np.round(fixtures.release_pixels(fixture.reference["images"])), 0, 255)
    export_dir = export_lib.export_model_path(output, str(tmp_path / "export"), warmup=False)
    outputs = _outputs_of_the_keras_file_alone(output, pixels, tmp_path)
    _check_against_references(outputs, converted, pixels, export_dir, tmp_path)
    # And what the release computes: on the exactly normalised pixels, its float64 logits.
    exact = fixtures.release_pixels(fixture.reference["images"])
    fixtures.assert_relative_close(converted.predict(exact, verbose=0),
                                   fixture.reference["logits_float64"], what="logits")
