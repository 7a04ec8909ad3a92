"""Serving: export to TensorFlow Serving (signatures, warm-up requests) and its clients.

    from irevnet_tf.serving import export_model_path, RestClient
    export_model_path("runs/tiny", "exports/irevnet")     # writes exports/irevnet/1/
    RestClient("http://localhost:8501").encode(images)   # pixels in [0, 255]
"""

from irevnet_tf.serving.client import GrpcClient, RestClient, ServingError, make_client
from irevnet_tf.serving.export import (existing_versions, export_model_path, export_saved_model,
                                       resolve_version)
from irevnet_tf.serving.signatures import ServingModule

__all__ = ["GrpcClient", "RestClient", "ServingError", "ServingModule", "existing_versions",
           "export_model_path", "export_saved_model", "make_client", "resolve_version"]
