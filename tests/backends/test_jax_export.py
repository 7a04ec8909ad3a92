"""A model trained on JAX exports through the TensorFlow exporter.

A JAX child process trains a small IRevNet two steps with `model.fit` (reversible=False:
plain autodiff) and saves it with `model_files.save_keras_model`; a TensorFlow child runs
`export/export_savedmodel.py` on that file; this (TensorFlow) process loads the SavedModel
and checks its encode/decode signatures against the pixels themselves: integer pixels
under the identity normalisation are grid points (x * 2**18 is exact), so decode must give
them back bit for bit; and its classifier against the JAX model's own logits.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.helpers.processes import ROOT, python_env, require_backends

TRAIN_ON_JAX = textwrap.dedent("""
    import sys
    import keras
    import numpy as np
    from irevnet_tf import model_files
    from irevnet_tf.model import IRevNet

    assert keras.backend.backend() == "jax"
    path, images_path, logits_path = sys.argv[1:4]
    keras.utils.set_random_seed(0)
    model = IRevNet(blocks=(1, 1), strides=(1, 2), channels=(6, 24), init_ds=2,
                    input_shape=(16, 16, 3), num_classes=10, reversible=False)
    model.compile(optimizer=keras.optimizers.SGD(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (8, 16, 16, 3)).astype("float32")
    before = [np.array(v) for v in model.trainable_variables]
    history = model.fit(x, np.arange(8) % 10, batch_size=4, epochs=1, verbose=0)
    assert len(history.history["loss"]) == 1  # One epoch of two steps.
    assert any(not np.array_equal(a, np.array(b))
               for a, b in zip(before, model.trainable_variables))
    model_files.save_keras_model(model, model_files.RunConfig(
        "irevnet_tiny", dataset="synthetic", image_size=16, num_classes=10,
        mean=(0.0,), std=(1.0,)), path)
    images = np.load(images_path)
    np.save(logits_path, keras.ops.convert_to_numpy(model.predict(images, verbose=0)))
""")


@pytest.mark.slow
def test_model_trained_on_jax_exports_exactly(tmp_path):
    require_backends("jax")
    import tensorflow as tf

    from irevnet_tf import machine

    path = str(tmp_path / "jax.keras")
    images = np.random.default_rng(2).integers(0, 256, (3, 16, 16, 3)).astype(np.float32)
    np.save(tmp_path / "images.npy", images)
    result = subprocess.run(
        [sys.executable, "-c", TRAIN_ON_JAX, path, str(tmp_path / "images.npy"),
         str(tmp_path / "logits.npy")], env=python_env(KERAS_BACKEND="jax"),
        capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    assert machine.recorded(path)["keras_backend"] == "jax"

    export_dir = str(tmp_path / "exports")
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "export", "export_savedmodel.py"),
         f"--model_dir={path}", f"--export_dir={export_dir}", "--version=1", "--nowarmup"],
        env=python_env(KERAS_BACKEND="tensorflow"), cwd=str(tmp_path), capture_output=True,
        text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    version_dir = os.path.join(export_dir, "1")
    assert result.stdout.strip().splitlines()[-1] == version_dir
    assert machine.recorded(version_dir)["keras_backend"] == "tensorflow"

    loaded = tf.saved_model.load(version_dir)
    features = loaded.signatures["encode"](images=tf.constant(images))["features"]
    assert features.dtype == tf.int32 and features.shape == (3, 4, 4, 48)
    decoded = loaded.signatures["decode"](features=features)
    # Bit for bit: integer pixels are grid points of the identity normalisation.
    assert np.array_equal(decoded["images"].numpy(), images)
    assert np.array_equal(decoded["pixels"].numpy(), images.astype(np.uint8))
    logits = loaded.signatures["serving_default"](images=tf.constant(images))["logits"]
    np.testing.assert_allclose(logits.numpy(), np.load(tmp_path / "logits.npy"), rtol=0,
                               atol=1e-4)
