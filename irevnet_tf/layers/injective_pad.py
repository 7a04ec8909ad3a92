"""InjectivePad: the zero-channel padding that lets an i-RevNet widen without losing information."""

import keras
from keras import ops

from irevnet_tf import validation as argument_validation
from irevnet_tf.layers import validation
from irevnet_tf.layers.fixed_point import is_integer


@keras.saving.register_keras_serializable(package="irevnet_tf")
class InjectivePad(keras.layers.Layer):
    """Appends `pad` zero channels at the end of the channel axis; `inverse` drops them.

    The map is injective, not bijective: `inverse(call(x)) == x` exactly, and `inverse`
    is the left inverse that discards whatever is in the padded channels.

    Args:
        pad: int >= 0, the number of zero channels appended.

    Example:
    >>> pad = InjectivePad(5)
    >>> y = pad(keras.ops.ones([2, 4, 4, 3]))   # shape (2, 4, 4, 8), last 5 channels 0
    >>> pad.inverse(y).shape             # (2, 4, 4, 3)
    """

    def __init__(self, pad, **kwargs):
        super().__init__(**kwargs)
        argument_validation.check_int(pad, "InjectivePad: `pad`", 0)
        self.pad = pad

    def call(self, inputs):
        validation.check_rank4(inputs, "inputs", self.name)
        if self.pad == 0:
            return inputs
        return ops.pad(inputs, [[0, 0], [0, 0], [0, 0], [0, self.pad]])

    def inverse(self, outputs):
        """Drops the last `pad` channels."""
        outputs = ops.convert_to_tensor(outputs)
        if not is_integer(outputs):  # Integer (exact-stream) tensors keep their dtype.
            outputs = ops.cast(outputs, self.compute_dtype)
        validation.check_rank4(outputs, "outputs", self.name)
        channels = outputs.shape[-1]
        if channels is not None and channels <= self.pad:
            raise ValueError(
                f"{self.name}.inverse: `outputs` must have more than pad={self.pad} "
                f"channels, got shape {tuple(outputs.shape)}."
            )
        if self.pad == 0:
            return outputs
        return outputs[..., : channels - self.pad]

    def compute_output_shape(self, input_shape):
        *rest, channels = input_shape
        return (*rest, None if channels is None else channels + self.pad)

    def get_config(self):
        config = super().get_config()
        config.update({"pad": self.pad})
        return config
