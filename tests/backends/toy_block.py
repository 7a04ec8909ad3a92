"""A toy i-RevBlock from keras.ops, with the coupling methods of `IRevBlock`, for testing the
PyTorch memory-saving gradient's mechanics independently of the real block.

Stride-1 or stride-2 (psi = space-to-depth), optional injective padding, F = BN -> ReLU ->
conv3x3 -> dropout -> conv3x3 on the (padded) second half; the stream is int32 grid points.
"""

import keras
from keras import ops


class ToyGrid:
    def __init__(self, fraction_bits=18):
        self.fraction_bits = fraction_bits
        self.scale = float(2 ** fraction_bits)

    @property
    def step(self):
        return 1.0 / self.scale

    def quantize(self, x, owner="", what=""):
        if "int" in keras.backend.standardize_dtype(x.dtype):
            return ops.cast(x, "int32")
        return ops.cast(ops.round(ops.cast(x, "float64") * self.scale), "int32")

    def dequantize(self, n, dtype="float32"):
        if "int" not in keras.backend.standardize_dtype(n.dtype):
            return ops.cast(n, dtype)
        return ops.cast(n, dtype) * ops.cast(self.step, dtype)

    def round_residual(self, f, like, grid_units=False):
        """F (in grid units for an integer stream) on the grid."""
        if "int" in keras.backend.standardize_dtype(like.dtype):
            if not grid_units:
                f = f * self.scale
            return ops.cast(ops.round(f), "int32")
        scaled = f * self.scale if not grid_units else f
        r = ops.round(scaled) / self.scale
        f = f if not grid_units else f * self.step
        return ops.cast(f + ops.stop_gradient(r - f), like.dtype)

    def quantize_straight_through(self, x):
        r = ops.round(x * self.scale) / self.scale
        return x + ops.stop_gradient(r - x)


class ToyPsi:
    def __init__(self, block_size):
        self.block_size = block_size

    def __call__(self, x):
        b = self.block_size
        if b == 1:
            return x
        n, h, w, c = x.shape
        x = ops.reshape(x, (n, h // b, b, w // b, b, c))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (n, h // b, w // b, b * b * c))

    def inverse(self, y):
        b = self.block_size
        if b == 1:
            return y
        n, h, w, c = y.shape
        y = ops.reshape(y, (n, h, w, b, b, c // (b * b)))
        y = ops.transpose(y, (0, 1, 3, 2, 4, 5))
        return ops.reshape(y, (n, h * b, w * b, c // (b * b)))


class ToyNorm(keras.layers.Layer):
    """Batch norm (batch statistics in training) with `update_statistics`."""

    def build(self, shape):
        c = shape[-1]
        self.gamma = self.add_weight(shape=(c,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(c,), initializer="zeros", name="beta")
        self.moving_mean = self.add_weight(shape=(c,), initializer="zeros",
                                           trainable=False, name="moving_mean")
        self.moving_variance = self.add_weight(shape=(c,), initializer="ones",
                                               trainable=False, name="moving_variance")

    def call(self, x, training=False, update_statistics=True):
        if training:
            mean, variance = ops.moments(x, axes=[0, 1, 2])
            if update_statistics:
                self.moving_mean.assign(0.9 * self.moving_mean + 0.1 * ops.stop_gradient(mean))
                self.moving_variance.assign(
                    0.9 * self.moving_variance + 0.1 * ops.stop_gradient(variance))
        else:
            mean, variance = self.moving_mean, self.moving_variance
        return ops.batch_normalization(x, mean, variance, axis=-1, offset=self.beta,
                                       scale=self.gamma, epsilon=1e-5)


class ToyBlock(keras.layers.Layer):
    def __init__(self, out_channels, stride=1, dropout_rate=0.0, fraction_bits=18, **kwargs):
        super().__init__(**kwargs)
        self.out_channels = out_channels
        self.stride = stride
        self.dropout_rate = dropout_rate
        self.grid = ToyGrid(fraction_bits)
        self.psi = ToyPsi(stride)
        self.norm = ToyNorm(dtype=self.dtype_policy)
        self.conv1 = keras.layers.Conv2D(out_channels // 2, 3, strides=stride,
                                         padding="same", use_bias=False,
                                         dtype=self.dtype_policy)
        self.conv2 = keras.layers.Conv2D(out_channels, 3, padding="same", use_bias=False,
                                         dtype=self.dtype_policy)

    def build(self, input_shape):
        (c1, c2) = input_shape[0][-1], input_shape[1][-1]
        self.input_halves = (c1, c2)
        self.pad = 0 if self.stride > 1 else 2 * self.out_channels - (c1 + c2)
        shape = tuple(input_shape[1][:-1]) + (self.out_channels if self.pad else c2,)
        self.norm.build(shape)
        self.conv1.build(shape)
        inner = self.conv1.compute_output_shape(shape)
        self.conv2.build(inner)

    def pad_inputs(self, pair):
        x1, x2 = pair
        if not self.pad:
            return x1, x2
        merged = ops.concatenate([x1, x2], axis=-1)
        merged = ops.pad(merged, [[0, 0], [0, 0], [0, 0], [0, self.pad]])
        return merged[..., : self.out_channels], merged[..., self.out_channels:]

    def unpad(self, pair):
        if not self.pad:
            return tuple(pair)
        merged = ops.concatenate(list(pair), axis=-1)
        merged = merged[..., : merged.shape[-1] - self.pad]
        c1 = self.input_halves[0]
        return merged[..., :c1], merged[..., c1:]

    def residual(self, x2, training=None, dropout_seed=None, update_statistics=True,
                 grid_units=None):
        integer = "int" in keras.backend.standardize_dtype(x2.dtype)
        if grid_units is None:
            grid_units = integer
        if integer:
            x2 = self.grid.dequantize(x2, self.compute_dtype)
        h = ops.relu(self.norm(x2, training=training, update_statistics=update_statistics))
        h = self.conv1(h)
        if training and self.dropout_rate > 0:
            h = keras.random.dropout(h, self.dropout_rate, seed=int(dropout_seed))
        f = self.conv2(h)
        if grid_units:
            f = f * self.grid.scale
        return f

    def couple(self, pair, fx2):
        x1, x2 = pair
        q = self.grid.round_residual(fx2, like=x1,
                                     grid_units="int" in str(x1.dtype))
        return self.psi(x2), self.psi(x1) + q

    def second_input(self, y2):
        x2 = self.psi.inverse(y2)
        if not self.pad:
            return x2
        data = max(sum(self.input_halves) - self.out_channels, 0)
        return ops.concatenate([x2[..., :data], ops.zeros_like(x2[..., data:])], axis=-1)

    def first_input(self, y1, fx2):
        q = self.grid.round_residual(fx2, like=y1, grid_units="int" in str(y1.dtype))
        return self.psi.inverse(y1 - q)

    def call(self, inputs, training=None, dropout_seed=None, update_statistics=True):
        pair = self.pad_inputs(inputs)
        fx2 = self.residual(pair[1], training=training, dropout_seed=dropout_seed,
                            update_statistics=update_statistics)
        return self.couple(pair, fx2)
