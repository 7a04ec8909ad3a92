"""The invertible Keras layers of i-RevNet, each with a paired `inverse`."""

from irevnet_tf.layers.batch_norm import BatchNorm
from irevnet_tf.layers.block import IRevBlock
from irevnet_tf.layers.decode_input import DecodeInputError
from irevnet_tf.layers.bottleneck import Bottleneck
from irevnet_tf.layers.fixed_point import FixedPoint, StreamRangeError
from irevnet_tf.layers.injective_pad import InjectivePad
from irevnet_tf.layers.psi import Psi

__all__ = ["BatchNorm", "Bottleneck", "DecodeInputError", "FixedPoint", "IRevBlock",
           "InjectivePad", "Psi", "StreamRangeError"]
