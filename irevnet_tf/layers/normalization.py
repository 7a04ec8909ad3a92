"""PixelNormalization: the model's invertible entrance, pixels -> (pixels - mean) / std and back."""

import keras
import numpy as np
from keras import ops

from irevnet_tf.layers import validation


def _per_channel(values, argument):
    try:
        array = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        array = None
    if array is None or array.size == 0 or not np.all(np.isfinite(array)):
        raise ValueError(f"PixelNormalization: `{argument}` must be one finite number or one "
                         f"per image channel, got {values!r}.")
    return [float(v) for v in array]


@keras.saving.register_keras_serializable(package="irevnet_tf")
class PixelNormalization(keras.layers.Layer):
    """Per-channel affine map `(pixels - mean) / std`, with `inverse` `x * std + mean`.

    It is the first step of `IRevNet.encode` and the last of `decode`, so that a saved
    model takes and returns pixels and carries the normalisation it was trained with
    (its `get_config`), instead of every caller repeating it. The default (mean 0, std 1)
    is the identity.

    Args:
        mean, std: one value for every channel, or one per channel; std > 0.

    Example:
    >>> norm = PixelNormalization(mean=(123.7, 116.3, 103.5), std=(58.4, 57.1, 57.4))
    >>> x = norm(keras.ops.full([1, 4, 4, 3], 128.0))          # about 0.07, 0.21, 0.43
    >>> pixels = norm.inverse(x)                         # 128.0 again (float rounding)
    """

    def __init__(self, mean=(0.0,), std=(1.0,), **kwargs):
        super().__init__(**kwargs)
        self.mean = _per_channel(mean, "mean")
        self.std = _per_channel(std, "std")
        if min(self.std) <= 0:
            raise ValueError(f"PixelNormalization: `std` must be positive, got {std!r}.")

    @property
    def is_identity(self):
        return all(m == 0.0 for m in self.mean) and all(s == 1.0 for s in self.std)

    def _constants(self, channels, dtype):
        for argument, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, channels):
                raise ValueError(f"{self.name}: `{argument}` has {len(values)} values for "
                                 f"images of {channels} channels; give 1 or {channels}.")
        mean = ops.convert_to_tensor(np.broadcast_to(self.mean, (channels,)), dtype)
        std = ops.convert_to_tensor(np.broadcast_to(self.std, (channels,)), dtype)
        return mean, std

    def call(self, pixels):
        validation.check_rank4(pixels, "pixels", self.name)
        if self.is_identity:
            return pixels
        mean, std = self._constants(pixels.shape[-1], pixels.dtype)
        return (pixels - mean) / std

    def inverse(self, inputs):
        """Pixels from normalised inputs: `inputs * std + mean` (not clipped)."""
        inputs = ops.convert_to_tensor(inputs)
        validation.check_rank4(inputs, "inputs", self.name)
        if self.is_identity:
            return inputs
        mean, std = self._constants(inputs.shape[-1], inputs.dtype)
        return inputs * std + mean

    def get_config(self):
        config = super().get_config()
        config.update({"mean": list(self.mean), "std": list(self.std)})
        return config
