"""Bottleneck: the residual function F inside every i-RevBlock."""

import keras
from keras import ops

from irevnet_tf import backends

from irevnet_tf import validation as argument_validation
from irevnet_tf.layers.batch_norm import BatchNorm
from irevnet_tf.layers.fixed_point import is_integer


def release_initializer():
    """PyTorch's default conv/dense initialisation, used by the authors' release.

    Uniform with variance 1 / (3 * fan_in). It matters for exactness: the float32
    round-trip error grows with the bottlenecks' gain, and Keras' glorot_uniform made it
    about 100x worse in a prototype.
    """
    return keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")


@keras.saving.register_keras_serializable(package="irevnet_tf")
class Bottleneck(keras.layers.Layer):
    """`[BN -> ReLU ->] conv3x3(stride) -> BN -> ReLU -> conv3x3 -> Dropout -> BN -> ReLU -> conv3x3`.

    All convolutions have no bias. The inner width is `out_channels // mult`. The first
    block of a network skips the bracketed pre-activation (`preactivation=False`).
    A strided convolution pads one pixel on every side, as PyTorch's `padding=1` does
    (Keras' 'same' would pad only bottom/right for even sizes and shift the sampling
    grid, so released weights would compute something else).

    Args:
        out_channels: channels of F's output.
        stride: stride of the first convolution (1 or the block's psi size).
        preactivation: whether F starts with BN -> ReLU.
        mult: bottleneck width divisor.
        dropout_rate: dropout after the middle convolution, in [0, 1).
        bn_momentum, bn_epsilon: Keras-convention batch-norm settings.

    Call arguments:
        inputs: NHWC float tensor, or int32 grid points whose unit is `input_scale`.
        training: batch statistics and dropout when True.
        dropout_seed: optional int32 tensor of shape [2]; the same seed gives the same
            dropout mask, which the memory-saving gradient needs when it recomputes F.
        update_statistics: passed to the batch norms (see `BatchNorm`).
        output_scale: None, or a power of two s: return `s * F` (an i-RevBlock's integer
            stream takes F in grid units, F * 2**k). In inference (float32, bfloat16) it is
            folded into the last batch norm's gamma and beta, which ReLU and the linear
            conv3 carry through exactly, so F arrives on the grid's scale at no cost; in
            training, and in float16 (whose range cannot hold it) or float64, F is cast to
            the variable dtype and multiplied.
        input_scale: the real value of one unit of integer `inputs` (a power of two, the
            grid step 2**-k of an i-RevBlock's stream). In inference the grid points go
            straight into the pre-activation batch norm (cast to the dtype its kernel runs
            in), which folds the scale into its statistics; in training (and without a
            pre-activation, or in float16, whose range cannot hold grid points) they are
            dequantised to the variable dtype first, the same ops on which the
            memory-saving gradient recomputes F.

    Inference cost: every batch norm runs as one fused op (see `BatchNorm`), the ones after
    conv1 and conv2 fused by TensorFlow with the convolution and the ReLU in float32, so
    F is little more than its three convolutions.
    """

    def __init__(self, out_channels, stride=1, preactivation=True, mult=4,
                 dropout_rate=0.0, bn_momentum=0.9, bn_epsilon=1e-5, seed=None, **kwargs):
        super().__init__(**kwargs)
        argument_validation.check_number(dropout_rate, "Bottleneck: `dropout_rate`", 0.0, 1.0,
                                         high_open=True)
        if out_channels // mult < 1:
            raise ValueError(
                f"Bottleneck: `out_channels // mult` must be >= 1, got out_channels="
                f"{out_channels} and mult={mult}.")
        self.out_channels = out_channels
        self.stride = stride
        self.preactivation = preactivation
        self.mult = mult
        self.dropout_rate = dropout_rate
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        self.seed = seed
        width = out_channels // mult

        def conv(filters, name, stride=1):
            return keras.layers.Conv2D(
                filters, 3, strides=stride, padding="valid" if stride > 1 else "same",
                use_bias=False, kernel_initializer=release_initializer(), name=name,
                dtype=self.dtype_policy)

        def norm(name):
            return BatchNorm(momentum=bn_momentum, epsilon=bn_epsilon, name=name,
                             dtype=self.dtype_policy)

        self.preact_bn = norm("preact_bn") if preactivation else None
        self.conv1 = conv(width, "conv1", stride)
        self.bn1 = norm("bn1")
        self.conv2 = conv(width, "conv2")
        self.bn2 = norm("bn2")
        self.conv3 = conv(out_channels, "conv3")
        self.seed_generator = keras.random.SeedGenerator(seed) if dropout_rate > 0 else None

    def build(self, input_shape):
        shape = tuple(input_shape)
        if self.preact_bn is not None:
            self.preact_bn.build(shape)
        self.conv1.build(self._padded_shape(shape))
        inner = self.conv1.compute_output_shape(self._padded_shape(shape))
        self.bn1.build(inner)
        self.conv2.build(inner)
        self.bn2.build(inner)
        self.conv3.build(inner)

    def _padded_shape(self, shape):
        if self.stride == 1:
            return shape
        n, h, w, c = shape
        return (n, None if h is None else h + 2, None if w is None else w + 2, c)

    def call(self, inputs, training=None, dropout_seed=None, update_statistics=True,
             input_scale=None, output_scale=None):
        norm_args = dict(training=training, update_statistics=update_statistics)
        h, input_scale = self._entry(inputs, training, input_scale)
        if self.preact_bn is not None:
            h = self.preact_bn(h, input_scale=input_scale, relu=True, **norm_args)
        if self.stride > 1:
            h = ops.pad(h, [[0, 0], [1, 1], [1, 1], [0, 0]])
        h = self._convolve(self.conv1, h)
        h = self.bn1(h, relu=True, **norm_args)
        h = self._convolve(self.conv2, h)
        if training and self.dropout_rate > 0:
            if dropout_seed is None:
                dropout_seed = self.seed_generator.next()
            h = backends.ops().stateless_dropout(h, self.dropout_rate, dropout_seed)
        if output_scale is None:
            return self._convolve(self.conv3, self.bn2(h, relu=True, **norm_args))
        if training or self.compute_dtype not in ("float32", "bfloat16"):
            # In the variable dtype (float32, or float64) after the convolution: float16
            # cannot hold F in grid units, and in training the memory-saving gradient
            # recomputes these very ops.
            f = ops.cast(self._convolve(self.conv3, self.bn2(h, relu=True, **norm_args)),
                         self.variable_dtype)
            return f * float(output_scale)
        # relu(s * x) = s * relu(x) for s > 0 and the convolution is linear, so scaling
        # bn2's gamma and beta by the power of two s gives s * F exactly, for free.
        return self._convolve(self.conv3,
                              self.bn2(h, relu=True, output_scale=output_scale, **norm_args))

    @staticmethod
    def _convolve(conv, h):
        """`conv(h)` in the backend's fastest layout for what follows (see
        `irevnet_tf.backends.torch_ops.dense`)."""
        return backends.ops().dense(conv(h))

    def _entry(self, inputs, training, input_scale):
        """F's input in the compute dtype, and the scale its first batch norm still owes."""
        if not is_integer(inputs):
            return inputs, None
        if input_scale is None:
            raise ValueError(f"{self.name}: integer `inputs` (grid points) need their "
                             f"`input_scale`, the real value of one unit.")
        if (training or self.preact_bn is None
                or self.compute_dtype not in ("float32", "bfloat16")):
            # Dequantised in the variable dtype, then cast: the ops (and bits) of an
            # i-RevBlock's float path and of the memory-saving gradient's recomputation.
            h = ops.cast(inputs, self.variable_dtype) * float(input_scale)
            return ops.cast(h, self.compute_dtype), None
        # The batch norm casts the grid points to the dtype its kernel runs in: float32 and
        # bfloat16 hold every int32 grid point's magnitude (float16 does not).
        return inputs, input_scale

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        s = self.stride
        return (n, None if h is None else h // s, None if w is None else w // s,
                self.out_channels)

    def get_config(self):
        config = super().get_config()
        config.update({
            "out_channels": self.out_channels, "stride": self.stride,
            "preactivation": self.preactivation, "mult": self.mult,
            "dropout_rate": self.dropout_rate, "bn_momentum": self.bn_momentum,
            "bn_epsilon": self.bn_epsilon, "seed": self.seed,
        })
        return config
