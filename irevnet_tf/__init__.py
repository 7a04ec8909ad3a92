"""irevnet_tf: i-RevNet, the exactly invertible deep network, as Keras 3 layers and models."""

import importlib
import sys

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


def _command_line_starting():
    """True while one of the package's command lines starts: `python -m irevnet_tf.<x>`
    (while runpy imports the package, sys.argv[0] is "-m") or a repository script that set
    `IREVNET_TF_COMMAND_LINE = True` before importing irevnet_tf."""
    main = sys.modules.get("__main__")
    return sys.argv[:1] == ["-m"] or getattr(main, "IREVNET_TF_COMMAND_LINE", False)


# A library user gets everything (and the Keras registrations that `keras.saving.load_model`
# needs) on `import irevnet_tf`. A command line defers TensorFlow until irevnet_tf.cli has set
# up its logging; `cli.quiet_tensorflow` then imports these.
if not _command_line_starting():
    for _name in __all__:
        __getattr__(_name)
