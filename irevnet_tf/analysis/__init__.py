"""The paper's analyses on any i-RevNet: reconstructions, interpolations, separation by depth.

`run_analyses(model_path, output_dir)` writes PNG pictures and JSON/CSV tables for a model
directory, a `.keras` file or a SavedModel export; `python -m irevnet_tf.analysis` is its
command line. The pieces are usable alone: `load_invertible_model` (the pixel-unit
encode/decode view of a model), `reconstruction`, `interpolation`, `separation`.
"""

import importlib

__all__ = ["ANALYSES", "AnalysisExamples", "InvertibleModel", "KerasInvertibleModel",
           "SavedModelInvertibleModel", "load_examples", "load_invertible_model",
           "resolve_model_path", "run_analyses"]

# Imported on first use (PEP 562), so that `python -m irevnet_tf.analysis` can quiet
# TensorFlow's logging before TensorFlow loads (irevnet_tf/cli.py).
_EXPORTS = {"AnalysisExamples": "analysis_data", "load_examples": "analysis_data",
            "InvertibleModel": "invertible_model", "KerasInvertibleModel": "invertible_model",
            "SavedModelInvertibleModel": "invertible_model",
            "load_invertible_model": "invertible_model",
            "resolve_model_path": "invertible_model", "ANALYSES": "runner",
            "run_analyses": "runner"}


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'irevnet_tf.analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"irevnet_tf.analysis.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
