"""The tests' shared base: every helper more than one test module needs lives here, so that no
test module imports another.

- here: batch-norm randomisation, model directories as the trainer writes them, Bottleneck
  weights for tests/reference.py;
- `tests.helpers.processes`: fresh Python processes (environment, free ports);
- `tests.helpers.models`: identity-normalised twins of models;
- `tests.helpers.layer_test`: the checks every layer of `irevnet_tf.layers` passes;
- `tests.helpers.events`: TensorBoard event files as dicts;
- `tests.helpers.trainer_script`: trainers/train_imagenet.py in subprocesses.
"""

import numpy as np

# The one batch-norm randomiser (the gradient-error benchmark uses it too): random gamma
# and moving variance in [0.5, 1.5], beta and moving mean ~ N(0, shift_std^2), as training
# leaves them (fresh ones are the identity, which would hide mistakes in their handling).
from irevnet_tf.benchmarking.gradient_error import randomize_batch_norms  # noqa: F401


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
        return tuple(np.array(v, np.float64) for v in (
            layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance))

    weights = {
        "conv1": np.array(bottleneck.conv1.kernel, np.float64),
        "bn1": norm(bottleneck.bn1),
        "conv2": np.array(bottleneck.conv2.kernel, np.float64),
        "bn2": norm(bottleneck.bn2),
        "conv3": np.array(bottleneck.conv3.kernel, np.float64),
    }
    if bottleneck.preact_bn is not None:
        weights["preact_bn"] = norm(bottleneck.preact_bn)
    return weights
