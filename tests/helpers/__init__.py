"""The tests' shared base: every helper more than one test module needs lives here, so that no
test module imports another.

- here: the Keras backend of the run (`BACKEND`, `tensorflow_only`), any backend's tensors
  as numpy float64 (`to_numpy`), batch-norm randomisation, model directories as the trainer
  writes them (TensorFlow), Bottleneck weights for tests/reference.py;
- `tests.helpers.processes`: fresh Python processes (environment, free ports);
- `tests.helpers.models`: identity-normalised twins of models;
- `tests.helpers.layer_test`: the checks every layer of `irevnet_tf.layers` passes;
- `tests.helpers.events`: TensorBoard event files as dicts;
- `tests.helpers.trainer_script`: trainers/train_imagenet.py in subprocesses.
"""

import keras
import numpy as np
import pytest

# The one batch-norm randomiser (the gradient-error benchmark uses it too): random gamma
# and moving variance in [0.5, 1.5], beta and moving mean ~ N(0, shift_std^2), as training
# leaves them (fresh ones are the identity, which would hide mistakes in their handling).
from irevnet_tf.benchmarking.trained_like import randomize_batch_norms  # noqa: F401

BACKEND = keras.backend.backend()

# For the checks of a backend-independent test module (tests/conftest.py) that need
# TensorFlow's own API; such a test imports TensorFlow inside its body.
tensorflow_only = pytest.mark.skipif(
    BACKEND != "tensorflow", reason="uses TensorFlow's own API (tf.function, GradientTape)")


def to_numpy(tensor):
    """A tensor of any backend (or a variable, or numpy) as numpy: floats as float64 (through
    float32 for bfloat16/float16, which numpy and PyTorch's conversion lack; float32 holds
    them exactly), integers as they are."""
    dtype = keras.backend.standardize_dtype(tensor.dtype)
    if dtype in ("bfloat16", "float16"):
        tensor = keras.ops.cast(tensor, "float32")
    array = np.asarray(keras.ops.convert_to_numpy(tensor))
    return array.astype(np.float64) if "float" in dtype else array


def write_model_dir(directory, model, run_config):
    """A model directory as the trainer leaves it: run_config.json + checkpoints/ckpt-N."""
    import tensorflow as tf

    from irevnet_tf import model_files as model_dir_lib

    directory = str(directory)
    run_config.save(model_dir_lib.run_config_path(directory))
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=model), model_dir_lib.checkpoint_dir(directory), 3)
    manager.save()
    return directory


def bottleneck_weights(bottleneck):
    """The numpy weights of a Bottleneck, in the layout tests/reference.py expects."""
    def norm(layer):
        return tuple(to_numpy(v) for v in (
            layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance))

    weights = {
        "conv1": to_numpy(bottleneck.conv1.kernel),
        "bn1": norm(bottleneck.bn1),
        "conv2": to_numpy(bottleneck.conv2.kernel),
        "bn2": norm(bottleneck.bn2),
        "conv3": to_numpy(bottleneck.conv3.kernel),
    }
    if bottleneck.preact_bn is not None:
        weights["preact_bn"] = norm(bottleneck.preact_bn)
    return weights
