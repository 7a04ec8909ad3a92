"""TensorFlow's logging settings, applied by `import irevnet_tf` before it imports TensorFlow.

TensorFlow's C++ side reads `TF_CPP_MIN_LOG_LEVEL` once, while it loads, so a setting made
after `import tensorflow` changes nothing; and `python -m irevnet_tf.quickstart` imports this
package before the quickstart's own code runs. So the one place that runs before TensorFlow
loads, for every way of starting Python, is the package's `__init__`, and it does the same
thing every time: it sets defaults for settings the user has not set, and nothing else.

- `TF_CPP_MIN_LOG_LEVEL`: 3 (errors off too) on a machine without an NVIDIA driver, where
  the only error-level line TensorFlow prints at start-up is "failed call to cuInit" (there
  is no GPU to initialise); 1 (INFO off, warnings and errors kept) where a driver is
  installed, since there a C++ error explains why a GPU is not used. Errors that stop a
  computation reach Python as exceptions with the same message either way.

A user who sets `TF_CPP_MIN_LOG_LEVEL` before importing (0 shows everything) keeps it. A few
lines TensorFlow prints while its shared libraries load, before its logging reads any
setting ("All log messages before absl::InitializeLog() ...", "oneDNN custom operations are
on", "Could not find cuda drivers"), cannot be silenced by any setting in TensorFlow 2.21.
"""

import os

LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL"
# C++ log levels: 1 drops INFO, 3 drops INFO, WARNING and ERROR.
WITH_GPU_DRIVER_LEVEL = "1"
WITHOUT_GPU_DRIVER_LEVEL = "3"


def has_gpu_driver():
    """True when an NVIDIA driver is loaded (Linux) or the user named CUDA devices."""
    return (os.path.exists("/proc/driver/nvidia")
            or os.environ.get("CUDA_VISIBLE_DEVICES", "").strip() not in ("", "-1"))


def set_tensorflow_defaults(environ=None):
    """Sets TensorFlow's logging defaults in `environ` (default `os.environ`) where unset;
    returns the level now in effect. Has no effect once TensorFlow is loaded."""
    environ = os.environ if environ is None else environ
    default = WITH_GPU_DRIVER_LEVEL if has_gpu_driver() else WITHOUT_GPU_DRIVER_LEVEL
    return environ.setdefault(LOG_LEVEL, default)
