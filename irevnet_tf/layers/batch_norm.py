"""BatchNorm: batch normalisation whose moving-statistics update can be switched off per call.

The memory-saving gradient recomputes every block in training mode during the backward
pass; Keras' own BatchNormalization would then update its moving statistics a second
time. This subclass keeps Keras' variables, configuration and saving, and adds
`update_statistics=False` for such recomputations.
"""

import keras
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
        if training and self.trainable:
            mean, variance = ops.moments(inputs, axes=[0, 1, 2])
            if update_statistics:
                # A Python float: ops.cast(0.9, "float64") would round it to float32 first.
                momentum = float(self.momentum)
                self.moving_mean.assign(
                    ops.cast(moving_mean * momentum + mean * (1 - momentum),
                             self.moving_mean.dtype))
                self.moving_variance.assign(
                    ops.cast(moving_variance * momentum + variance * (1 - momentum),
                             self.moving_variance.dtype))
        else:
            mean, variance = moving_mean, moving_variance
        outputs = ops.batch_normalization(
            inputs, mean, variance, axis=-1,
            offset=ops.cast(self.beta, compute_dtype),
            scale=ops.cast(self.gamma, compute_dtype),
            epsilon=self.epsilon,
        )
        return ops.cast(outputs, self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.pop("axis", None)
        return config
