"""Conversion of the authors' released PyTorch weights into irevnet_tf models, without torch."""

from irevnet_tf.conversion.release import (RELEASE_BATCH_NORM, ConversionSummary,
                                           ReleaseConversionError, build_release_model,
                                           convert_release, extract_state_dict,
                                           load_release_weights, read_release_checkpoint)
from irevnet_tf.conversion.torch_checkpoint import (CheckpointError, TensorRecord,
                                                    TorchCheckpointReader, load_torch_checkpoint)

__all__ = ["CheckpointError", "ConversionSummary", "RELEASE_BATCH_NORM",
           "ReleaseConversionError", "TensorRecord", "TorchCheckpointReader",
           "build_release_model", "convert_release", "extract_state_dict",
           "load_release_weights", "load_torch_checkpoint", "read_release_checkpoint"]
