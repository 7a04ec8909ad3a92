"""irevnet_tf: i-RevNet, the exactly invertible deep network, as Keras 3 layers and models."""

import importlib

from irevnet_tf import environment as _environment

__version__ = "0.1.0"

__all__ = ["CONFIGS", "IRevNet", "build_irevnet", "config_names", "get_config", "layers"]

# Where each public name lives.
_EXPORTS = {"CONFIGS": "irevnet_tf.configs", "build_irevnet": "irevnet_tf.configs",
            "config_names": "irevnet_tf.configs", "get_config": "irevnet_tf.configs",
            "IRevNet": "irevnet_tf.model", "layers": None}


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'irevnet_tf' has no attribute {name!r}")
    module = _EXPORTS[name]
    value = (importlib.import_module(f"irevnet_tf.{name}") if module is None
             else getattr(importlib.import_module(module), name))
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)


# TensorFlow's logging defaults (see irevnet_tf/environment.py) must be set before TensorFlow
# loads, which happens just below.
_environment.set_tensorflow_defaults()

# Everything (and the Keras registrations that `keras.saving.load_model` needs) on
# `import irevnet_tf`, the same way however Python was started.
for _name in __all__:
    __getattr__(_name)
importlib.import_module("irevnet_tf.backends").load()
