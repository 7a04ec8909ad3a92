"""Test set-up: quiet TensorFlow, two logical CPU devices (for MirroredStrategy), fixed seeds."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Two logical CPUs let MirroredStrategy run two replicas without a GPU. This must happen
# before anything initialises the devices.
_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
except RuntimeError:
    pass


@pytest.fixture(autouse=True)
def _seed_and_reset():
    import keras

    keras.utils.set_random_seed(0)
    np.random.seed(0)
    yield
    keras.config.set_floatx("float32")
    keras.mixed_precision.set_global_policy("float32")
