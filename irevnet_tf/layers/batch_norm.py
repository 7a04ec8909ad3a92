"""BatchNorm: batch normalisation whose moving-statistics update can be switched off per call.

The memory-saving gradient recomputes every block in training mode during the backward
pass; Keras' own BatchNormalization would then update its moving statistics a second
time. This subclass keeps Keras' variables, configuration and saving, and adds
`update_statistics=False` for such recomputations.

On TensorFlow both modes run its fused kernel (FusedBatchNormV3) on float32, bfloat16 and
float16 inputs, in the input's own dtype (statistics and parameters in float32), instead of
casting to float32 and back around a dozen element-wise ops:
- training: one op forward, one op backward, also compiled by XLA;
- inference: one pass, which TensorFlow's graph optimiser (grappler's remapper, active in
  every TensorFlow loader: `tf.function`, SavedModel, the C API) fuses with a ReLU after it
  (`_FusedBatchNormEx`) and, in float32, with the convolution before it (`_FusedConv2D`).
  This is how the inference batch norms are folded into the convolutions: a convolution
  kernel folded by hand (W * gamma / sigma) would cost one pass over every kernel per
  call, which at irevnet301's batch 8 is more than the activations.
`input_scale` folds a power-of-two scaling of the input into the statistics (mean / s,
variance / s^2, epsilon / s^2, all exact): an i-RevBlock feeds its int32 grid points, cast,
straight into its first batch norm, so the grid's dequantisation costs no pass of its own.
float64 (the exactness tests), JAX and PyTorch take the element-wise path in `keras.ops`
(statistics in float32, or float64 for float64 inputs), where each backend's compiler
(XLA) fuses the element-wise work itself.
"""

import keras
from keras import ops

from irevnet_tf import backends
from irevnet_tf.layers.fixed_point import is_integer

# Input dtypes of TensorFlow's fused batch-norm kernel (its statistics are float32).
FUSED_DTYPES = ("float16", "bfloat16", "float32")


@keras.saving.register_keras_serializable(package="irevnet_tf")
class BatchNorm(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` over the last axis with an optional statistics update.

    Defaults follow the authors' release (PyTorch momentum 0.1, i.e. Keras
    `momentum=0.9`; epsilon 1e-5), not Keras' (0.99, 1e-3). Batch moments are computed
    in float32 (or float64 for float64 inputs), whatever the compute dtype.

    Call arguments:
        inputs: NHWC float tensor, or int32 grid points with their `input_scale`.
        training: use batch statistics (True) or the moving ones.
        update_statistics: in training mode, whether to update the moving statistics.
            False is for recomputations of a forward pass that already updated them.
        input_scale: None, or a power of two s: normalise `inputs * s` (exactly: s is folded
            into the statistics). For inputs that are grid points of a fixed-point format.
        relu: apply a ReLU to the output, in the dtype the kernel runs in, where
            TensorFlow fuses it into the batch norm (ReLU commutes with the cast after it).
        output_scale: None, or a power of two s: return `s *` the normalised output,
            exactly (in inference folded into gamma and beta; in training a multiply).
    """

    def __init__(self, momentum=0.9, epsilon=1e-5, **kwargs):
        kwargs.pop("axis", None)
        super().__init__(axis=-1, momentum=momentum, epsilon=epsilon, **kwargs)

    def call(self, inputs, training=None, update_statistics=True, input_scale=None,
             relu=False, output_scale=None):
        batch_statistics = bool(training) and self.trainable
        integer = is_integer(inputs)
        if integer and input_scale is None:
            raise ValueError(f"{self.name}: integer `inputs` (grid points) need their "
                             f"`input_scale`, the real value of one unit.")
        fused = backends.ops().fused_batch_norm
        if (fused is None or self.compute_dtype not in FUSED_DTYPES
                or keras.backend.standardize_dtype(inputs.dtype) == "float64"):
            outputs = self._generic(inputs, batch_statistics, update_statistics, input_scale)
        elif batch_statistics:
            inputs = ops.cast(inputs, self._kernel_dtype(inputs))
            if input_scale is not None:
                inputs = inputs * ops.cast(input_scale, inputs.dtype)
            outputs, mean, variance = fused(
                inputs, ops.cast(self.gamma, "float32"), ops.cast(self.beta, "float32"),
                epsilon=self.epsilon)
            if update_statistics:
                self._update_statistics(self.moving_mean, self.moving_variance, mean, variance)
        else:
            inputs = ops.cast(inputs, self._kernel_dtype(inputs))
            outputs = self._fused_inference(inputs, input_scale, output_scale)
            output_scale = None  # Folded into gamma and beta.
        if output_scale is not None:
            outputs = outputs * ops.cast(output_scale, outputs.dtype)
        if relu:  # Before the cast: TensorFlow fuses it into the batch norm's kernel.
            outputs = ops.relu(outputs)
        return ops.cast(outputs, self.compute_dtype)

    def _kernel_dtype(self, inputs):
        """The dtype the fused kernel runs in: the compute dtype, except 16-bit inputs with a
        channel count that is not a multiple of 16, which run in float32. oneDNN's bfloat16
        batch norm has no vector path for them: 7 to 25 times slower than its float32 kernel
        on 4, 6, 8 and 24 channels (irevnet_cifar's and irevnet301's first-stage
        bottlenecks), the same speed on 16, 96 and 384 (`benchmarks.breakdown`)."""
        if self.compute_dtype != "float32" and inputs.shape[-1] is not None and (
                inputs.shape[-1] % 16):
            return "float32"
        return self.compute_dtype

    def _generic(self, inputs, batch_statistics, update_statistics, input_scale):
        """The element-wise formulation, for float64 (which the fused kernel lacks)."""
        # Grid points (ints) are normalised in the layer's dtype, at least float32.
        source = keras.backend.standardize_dtype(
            self.compute_dtype if is_integer(inputs) else inputs.dtype)
        # Not keras.backend.result_type(source, "float32"): on JAX and PyTorch it is float32
        # for float64 too, which normalised float64 inputs in float32 there.
        compute_dtype = "float64" if source == "float64" else "float32"
        inputs = ops.cast(inputs, compute_dtype)
        if input_scale is not None:
            inputs = inputs * ops.cast(input_scale, compute_dtype)
        moving_mean = ops.cast(self.moving_mean, compute_dtype)
        moving_variance = ops.cast(self.moving_variance, compute_dtype)
        if batch_statistics:
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

    def _fused_inference(self, inputs, input_scale, output_scale=None):
        """Moving-statistics normalisation in one fused op (see the module docstring)."""
        mean = ops.cast(self.moving_mean, "float32")
        variance = ops.cast(self.moving_variance, "float32")
        gamma, beta = ops.cast(self.gamma, "float32"), ops.cast(self.beta, "float32")
        if output_scale is not None:
            # s * (x * g' + b') = x * (s g') + s b': exact for a power of two s.
            gamma = gamma * float(output_scale)
            beta = beta * float(output_scale)
        epsilon = float(self.epsilon)
        if input_scale is not None:
            # (s x - m) / sqrt(v + e) = (x - m / s) / sqrt(v / s^2 + e / s^2): exact for a
            # power of two s, so the fused op normalises the unscaled inputs.
            inverse = 1.0 / float(input_scale)
            mean = mean * inverse
            variance = variance * (inverse * inverse)
            epsilon = epsilon * inverse * inverse
        return backends.ops().fused_batch_norm(inputs, gamma, beta, mean=mean,
                                               variance=variance, epsilon=epsilon)

    def _update_statistics(self, moving_mean, moving_variance, mean, variance):
        # A Python float: ops.cast(0.9, "float64") would round it to float32 first.
        momentum = float(self.momentum)
        mean = ops.cast(mean, moving_mean.dtype)
        variance = ops.cast(variance, moving_variance.dtype)
        self.moving_mean.assign(
            ops.cast(moving_mean * momentum + mean * (1 - momentum), self.moving_mean.dtype))
        self.moving_variance.assign(
            ops.cast(moving_variance * momentum + variance * (1 - momentum),
                     self.moving_variance.dtype))

    def get_config(self):
        config = super().get_config()
        config.pop("axis", None)
        return config
