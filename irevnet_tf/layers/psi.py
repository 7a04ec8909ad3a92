"""Psi: the invertible down-sampling (space-to-depth) of i-RevNet."""

import keras
from keras import ops

from irevnet_tf import backends
from irevnet_tf import validation as argument_validation
from irevnet_tf.layers import validation
from irevnet_tf.layers.fixed_point import is_integer


@keras.saving.register_keras_serializable(package="irevnet_tf")
class Psi(keras.layers.Layer):
    """Invertible space-to-depth with a square block.

    `call` moves each `block_size x block_size` spatial block into channels with the
    exact ordering of TensorFlow's `space_to_depth` (on every backend):
    `out[n, h, w, (i * b + j) * C + c] = in[n, h * b + i, w * b + j, c]`; `inverse` is
    depth-to-space. Nothing is added or lost, so both directions are exact in
    any dtype. A height or width that the block does not divide is an error, never a
    silent crop.

    Args:
        block_size: int >= 1; 1 is the identity.

    Example:
    >>> psi = Psi(2)
    >>> y = psi(keras.ops.zeros([1, 4, 6, 3]))   # shape (1, 2, 3, 12)
    >>> x = psi.inverse(y)                # shape (1, 4, 6, 3)
    """

    def __init__(self, block_size=2, **kwargs):
        super().__init__(**kwargs)
        argument_validation.check_int(block_size, "Psi: `block_size`", 1)
        self.block_size = block_size

    def call(self, inputs):
        validation.check_rank4(inputs, "inputs", self.name)
        if self.block_size == 1:
            return inputs
        validation.check_divisible_spatial(inputs, self.block_size, "inputs", self.name)
        return backends.ops().space_to_depth(inputs, self.block_size)

    def inverse(self, outputs):
        """Exact inverse of `call`: depth-to-space."""
        outputs = ops.convert_to_tensor(outputs)
        if not is_integer(outputs):  # Integer (exact-stream) tensors keep their dtype.
            outputs = ops.cast(outputs, self.compute_dtype)
        validation.check_rank4(outputs, "outputs", self.name)
        if self.block_size == 1:
            return outputs
        channels = outputs.shape[-1]
        if channels is not None and channels % (self.block_size**2):
            raise ValueError(
                f"{self.name}.inverse: `outputs` must have a multiple of "
                f"block_size**2 = {self.block_size ** 2} channels, got shape {outputs.shape}."
            )
        return backends.ops().depth_to_space(outputs, self.block_size)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        b = self.block_size
        return (
            n,
            None if h is None else h // b,
            None if w is None else w // b,
            None if c is None else c * b * b,
        )

    def get_config(self):
        config = super().get_config()
        config.update({"block_size": self.block_size})
        return config
