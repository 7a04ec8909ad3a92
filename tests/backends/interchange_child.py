"""Child process of tests/backends/test_interchange.py, on the backend `KERAS_BACKEND` names.

    python tests/backends/interchange_child.py DIR

writes DIR/<backend>.keras (after one training step), prints "written", waits for a line on
standard input (the parent sends one when every backend has written), then loads every
DIR/*.keras, and prints "read". One process per backend does both, so each pays for its
imports once. `write` leaves the model's weights (`<backend>.weights.npz`, in
`model.weights` order) and its logits on fixed images (`<backend>.logits.npy`) beside the
file; `read` loads each `.keras` file through `model_files.restore_model` and leaves
`<writer>.read_by_<backend>.weights.npz` / `.logits.npy`, what it found (machine record,
compile settings) as `.json`, and what `restore_model` says of a model directory here.
"""

import glob
import json
import os
import sys

import keras
import numpy as np

from irevnet_tf import machine, model_files
from irevnet_tf.benchmarking.gradient_error import randomize_batch_norms
from irevnet_tf.model import IRevNet

SMALL = dict(blocks=(1, 1), strides=(1, 2), channels=(6, 24), init_ds=2,
             input_shape=(16, 16, 3), num_classes=10, reversible=False,
             pixel_mean=(120.0, 115.0, 100.0), pixel_std=(60.0, 62.0, 65.0))


def images():
    return np.random.default_rng(7).uniform(0, 255, (4, 16, 16, 3)).astype("float32")


def save_outputs(model, stem):
    np.savez(stem + ".weights.npz", *[keras.ops.convert_to_numpy(v) for v in model.weights])
    np.save(stem + ".logits.npy", keras.ops.convert_to_numpy(model.predict(images(),
                                                                            verbose=0)))


def write(directory, backend):
    keras.utils.set_random_seed(3)
    model = IRevNet(**SMALL)
    randomize_batch_norms(model, seed=5)
    model.compile(optimizer=keras.optimizers.SGD(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    # One step in training mode: batch statistics move the moving ones by (1 - momentum).
    model.fit(images(), np.arange(4), batch_size=4, epochs=1, verbose=0)
    run_config = model_files.RunConfig(config_name="irevnet_tiny", dataset="synthetic",
                                       image_size=16, num_classes=10, mean=SMALL["pixel_mean"],
                                       std=SMALL["pixel_std"])
    path = os.path.join(directory, f"{backend}.keras")
    model_files.save_keras_model(model, run_config, path)
    save_outputs(model, os.path.join(directory, backend))


def compiled_here():
    """A model compiled on this backend with Keras' defaults: its resolved `jit_compile`."""
    model = IRevNet(**SMALL)
    model.compile(optimizer="sgd", loss="mse")
    return model.jit_compile


def model_directory_error(directory):
    """What `restore_model` says about a model directory (TensorFlow checkpoints) here."""
    try:
        model_files.restore_model(directory)
    except ValueError as error:
        return str(error)
    return None


def read(directory, backend):
    jit_compile_here = compiled_here()
    with open(os.path.join(directory, f"model_dir.{backend}.txt"), "w",
              encoding="utf-8") as handle:
        handle.write(str(model_directory_error(directory)))
    for path in sorted(glob.glob(os.path.join(directory, "*.keras"))):
        writer = os.path.basename(path)[:-len(".keras")]
        model, run_config = model_files.restore_model(path)
        stem = os.path.join(directory, f"{writer}.read_by_{backend}")
        save_outputs(model, stem)
        with open(stem + ".json", "w", encoding="utf-8") as handle:
            json.dump({"class": type(model).__name__, "recorded": machine.recorded(path),
                       "jit_compile": model.jit_compile, "jit_compile_here": jit_compile_here,
                       "optimizer": type(model.optimizer).__name__,
                       "mean": list(run_config.mean), "differences":
                       machine.differences(machine.recorded(path))}, handle)


if __name__ == "__main__":
    write(sys.argv[1], keras.backend.backend())
    print("written", flush=True)
    sys.stdin.readline()
    read(sys.argv[1], keras.backend.backend())
    print("read", flush=True)
