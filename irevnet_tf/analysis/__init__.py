"""The paper's analyses on any i-RevNet: reconstructions, interpolations, separation by depth.

`run_analyses(model_path, output_dir)` writes PNG pictures and JSON/CSV tables for a model
directory, a `.keras` file or a SavedModel export; `python -m irevnet_tf.analysis` is its
command line. The pieces are usable alone: `load_invertible_model` (the pixel-unit
encode/decode view of a model), `reconstruction`, `interpolation`, `separation`.
"""

from irevnet_tf.analysis.analysis_data import AnalysisExamples, load_examples
from irevnet_tf.analysis.invertible_model import (InvertibleModel, KerasInvertibleModel,
                                                  SavedModelInvertibleModel,
                                                  load_invertible_model, resolve_model_path)
from irevnet_tf.analysis.runner import ANALYSES, run_analyses

__all__ = ["ANALYSES", "AnalysisExamples", "InvertibleModel", "KerasInvertibleModel",
           "SavedModelInvertibleModel", "load_examples", "load_invertible_model",
           "resolve_model_path", "run_analyses"]
