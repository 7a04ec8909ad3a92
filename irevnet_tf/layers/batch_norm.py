"""BatchNorm: batch normalisation whose moving-statistics update can be switched off per call.

The memory-saving gradient recomputes every block in training mode during the backward
pass; Keras' own BatchNormalization would then update its moving statistics a second
time. This subclass keeps Keras' variables, configuration and saving, and adds
`update_statistics=False` for such recomputations.

Training mode on float32 inputs runs TensorFlow's fused kernel (one op forward, one op
backward, also compiled by XLA) instead of a dozen element-wise ops: an i-RevNet step is
four batch norms per block, and on a CPU the unfused ones cost as much as the convolutions
on small feature maps. float64 (the exactness tests) and 16-bit inputs take the generic path.
"""

import keras
import tensorflow as tf
from keras import ops


@keras.saving.register_keras_serializable(package="irevnet_tf")
class BatchNorm(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` over the last axis with an optional statistics update.

    Defaults follow the authors' release (PyTorch momentum 0.1, i.e. Keras
    `momentum=0.9`; epsilon 1e-5), not Keras' (0.99, 1e-3). Batch moments are computed
    in float32 (or float64 for float64 inputs), whatever the compute dtype.

    Call arguments:
        inputs: NHWC tensor.
        training: use batch statistics (True) or the moving ones.
        update_statistics: in training mode, whether to update the moving statistics.
            False is for recomputations of a forward pass that already updated them.
    """

    def __init__(self, momentum=0.9, epsilon=1e-5, **kwargs):
        kwargs.pop("axis", None)
        super().__init__(axis=-1, momentum=momentum, epsilon=epsilon, **kwargs)

    def call(self, inputs, training=None, update_statistics=True):
        compute_dtype = keras.backend.result_type(inputs.dtype, "float32")
        inputs = ops.cast(inputs, compute_dtype)
        moving_mean = ops.cast(self.moving_mean, compute_dtype)
        moving_variance = ops.cast(self.moving_variance, compute_dtype)
        # The fused kernel takes float32 (16-bit inputs were cast to it above); float64 below.
        if training and self.trainable and compute_dtype == "float32":
            outputs, mean, variance = self._fused_training(inputs)
            if update_statistics:
                self._update_statistics(moving_mean, moving_variance, mean, variance)
            return ops.cast(outputs, self.compute_dtype)
        if training and self.trainable:
            mean, variance = ops.moments(inputs, axes=[0, 1, 2])
            if update_statistics:
                self._update_statistics(moving_mean, moving_variance, mean, variance)
        else:
            mean, variance = moving_mean, moving_variance
        outputs = ops.batch_normalization(
            inputs, mean, variance, axis=-1,
            offset=ops.cast(self.beta, compute_dtype),
            scale=ops.cast(self.gamma, compute_dtype),
            epsilon=self.epsilon,
        )
        return ops.cast(outputs, self.compute_dtype)

    def _fused_training(self, inputs):
        """Normalised outputs and the biased batch mean and variance, from the fused kernel."""
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, tf.cast(self.gamma, tf.float32), tf.cast(self.beta, tf.float32),
            epsilon=self.epsilon, data_format="NHWC", is_training=True)
        # The kernel returns the variance with Bessel's correction (n / (n - 1)); the
        # moving statistics here, as Keras', follow the biased variance it normalised with.
        shape = tf.shape(inputs)
        count = tf.cast(shape[0] * shape[1] * shape[2], tf.float32)
        variance = variance * (tf.maximum(count - 1.0, 0.0) / count)
        return outputs, tf.stop_gradient(mean), tf.stop_gradient(variance)

    def _update_statistics(self, moving_mean, moving_variance, mean, variance):
        # A Python float: ops.cast(0.9, "float64") would round it to float32 first.
        momentum = float(self.momentum)
        self.moving_mean.assign(
            ops.cast(moving_mean * momentum + mean * (1 - momentum), self.moving_mean.dtype))
        self.moving_variance.assign(
            ops.cast(moving_variance * momentum + variance * (1 - momentum),
                     self.moving_variance.dtype))

    def get_config(self):
        config = super().get_config()
        config.pop("axis", None)
        return config
