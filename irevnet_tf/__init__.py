"""irevnet_tf: i-RevNet, the exactly invertible deep network, as Keras 3 layers and models."""

from irevnet_tf import layers
from irevnet_tf.configs import CONFIGS, build_irevnet, config_names, get_config
from irevnet_tf.model import IRevNet

__version__ = "0.1.0"

__all__ = ["CONFIGS", "IRevNet", "build_irevnet", "config_names", "get_config", "layers"]
