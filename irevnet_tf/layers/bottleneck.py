"""Bottleneck: the residual function F inside every i-RevBlock."""

import keras
import tensorflow as tf

from irevnet_tf.layers.batch_norm import BatchNorm


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
        inputs: NHWC tensor.
        training: batch statistics and dropout when True.
        dropout_seed: optional int32 tensor of shape [2]; the same seed gives the same
            dropout mask, which the memory-saving gradient needs when it recomputes F.
        update_statistics: passed to the batch norms (see `BatchNorm`).
    """

    def __init__(self, out_channels, stride=1, preactivation=True, mult=4,
                 dropout_rate=0.0, bn_momentum=0.9, bn_epsilon=1e-5, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"Bottleneck: `dropout_rate` must be in [0, 1), got {dropout_rate!r}.")
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

    def call(self, inputs, training=None, dropout_seed=None, update_statistics=True):
        norm_args = dict(training=training, update_statistics=update_statistics)
        h = inputs
        if self.preact_bn is not None:
            h = tf.nn.relu(self.preact_bn(h, **norm_args))
        if self.stride > 1:
            h = tf.pad(h, [[0, 0], [1, 1], [1, 1], [0, 0]])
        h = self.conv1(h)
        h = tf.nn.relu(self.bn1(h, **norm_args))
        h = self.conv2(h)
        if training and self.dropout_rate > 0:
            if dropout_seed is None:
                dropout_seed = self.seed_generator.next()
            h = tf.nn.experimental.stateless_dropout(
                h, rate=self.dropout_rate, seed=tf.cast(dropout_seed, tf.int32))
        h = tf.nn.relu(self.bn2(h, **norm_args))
        return self.conv3(h)

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
