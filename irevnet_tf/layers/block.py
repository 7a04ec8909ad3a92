"""IRevBlock: the invertible building block of i-RevNet, with its exact inverse."""

import keras
from keras import ops

from irevnet_tf import validation as argument_validation
from irevnet_tf.layers import validation
from irevnet_tf.layers.bottleneck import Bottleneck
from irevnet_tf.layers.fixed_point import DEFAULT_FRACTION_BITS, FixedPoint, is_integer
from irevnet_tf.layers.injective_pad import InjectivePad
from irevnet_tf.layers.psi import Psi


@keras.saving.register_keras_serializable(package="irevnet_tf")
class IRevBlock(keras.layers.Layer):
    """One i-RevNet block on a pair of tensors `(x1, x2)`.

    Forward: `y1 = [F(x2)] + psi(x1)`, `y2 = psi(x2)`, returned as the pair `(y2, y1)`:
    as in the authors' release the halves swap roles, so the next block's bottleneck
    reads the half this block has just updated. psi is the identity for stride 1.
    F is computed on the un-downsampled x2 with a strided first convolution.

    Inverse: `x2 = psi^-1(y2)`, `x1 = psi^-1(y1 - [F(x2)])`.

    The exact stream: the pair is int32 grid points of a `FixedPoint` format (n stands for
    n * 2**-fraction_bits). F runs in the layer's compute dtype (float32, bfloat16,
    float16) on the dequantised x2 and `[F(x2)]` is its output rounded onto the grid, so
    the coupling is an integer sum and `inverse` undoes it bit for bit, at any depth and
    in any precision, whenever F gives the same bits again on the same x2. A pair of
    floats (the plain-autodiff training path) takes the same steps in floating point
    with a straight-through gradient for the rounding; on grid values below
    2**(24 - fraction_bits) in float32 its values equal the integer stream's.

    Injective blocks: a stride-1 block whose output is wider than its input
    (`pad = 2 * out_channels - (c1 + c2) > 0`) first merges the halves, appends `pad`
    zero channels and splits again (the halves may then have unequal widths, e.g. a
    3-channel image split 1 + 2). Its inverse projects the reconstructed x2 back onto
    the padded subspace (padded channels set to their exact value, zero) before it
    recomputes F, then drops the padding. On outputs of `call` the projection changes
    nothing; on other points (an interpolation of two Phis) it keeps decode on the
    image of the network.

    Kernels: F's bits are those of the kernels that run it, so run `call` and `inverse`
    the same way, both eagerly or both compiled (`tf.function`, a SavedModel): in a
    graph TensorFlow fuses F's float32 convolution + batch norm + ReLU into one kernel,
    which rounds differently from eager op-by-op execution. `IRevNet` always runs its
    blocks compiled.

    Training-mode inversion: `inverse(..., training=True, dropout_seed=s)` recomputes F
    with batch statistics of the reconstructed x2 (the same batch, so the same
    statistics) and the dropout mask of seed `s`, so it inverts a training-mode
    forward pass called with the same `dropout_seed`. It never updates moving
    statistics. `training=False` (the default) inverts an inference-mode forward pass.

    Args:
        out_channels: channels of each output half (before nothing is lost:
            a stride-s block needs `out_channels == s * s * c` for input halves of c).
        stride: 1, or the psi block size (2 in every published configuration).
        first: the network's first block, whose F has no pre-activation.
        mult: bottleneck width divisor (inner width `out_channels // mult`).
        dropout_rate: dropout inside F, in [0, 1).
        bn_momentum, bn_epsilon: batch-norm settings (Keras convention).
        seed: seed of the dropout mask generator when no `dropout_seed` is given.
        bottleneck_dtype: dtype policy of F (default: the block's); the block's own
            policy is the float dtype F's input is dequantised to.
        fraction_bits: the stream's grid, 2**-fraction_bits (see `FixedPoint`).

    Example:
    >>> block = IRevBlock(out_channels=32, stride=2)
    >>> x = block.grid.quantize(keras.random.normal([1, 8, 8, 16]))   # int32
    >>> y2, y1 = block((x[..., :8], x[..., 8:]))                    # 4x4x32 each, int32
    >>> x1, x2 = block.inverse((y2, y1))                            # equal to the halves of x
    """

    def __init__(self, out_channels, stride=1, first=False, mult=4, dropout_rate=0.0,
                 bn_momentum=0.9, bn_epsilon=1e-5, seed=None, bottleneck_dtype=None,
                 fraction_bits=DEFAULT_FRACTION_BITS, **kwargs):
        super().__init__(**kwargs)
        for argument, value, low in (("out_channels", out_channels, 1), ("stride", stride, 1),
                                     ("mult", mult, 1)):
            argument_validation.check_int(value, f"IRevBlock: `{argument}`", low)
        self.out_channels = out_channels
        self.stride = stride
        self.first = bool(first)
        self.mult = mult
        self.dropout_rate = dropout_rate
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        self.seed = seed
        self.bottleneck_dtype = bottleneck_dtype
        self.grid = FixedPoint(fraction_bits)
        self.psi = Psi(stride, name="psi", dtype=self.dtype_policy)
        self.bottleneck = Bottleneck(
            out_channels, stride=stride, preactivation=not first, mult=mult,
            dropout_rate=dropout_rate, bn_momentum=bn_momentum, bn_epsilon=bn_epsilon,
            seed=seed, name="bottleneck",
            dtype=self.dtype_policy if bottleneck_dtype is None else bottleneck_dtype)
        self.pad = None
        self.input_halves = None

    def build(self, input_shape):
        if not (isinstance(input_shape, (list, tuple)) and len(input_shape) == 2):
            raise ValueError(
                f"{self.name}: expects a pair of NHWC tensors (x1, x2), got input shape "
                f"{input_shape!r}.")
        shape1, shape2 = (tuple(s) for s in input_shape)
        c1, c2 = shape1[-1], shape2[-1]
        if c1 is None or c2 is None:
            raise ValueError(f"{self.name}: the channel counts of (x1, x2) must be known, "
                             f"got shapes {shape1} and {shape2}.")
        self.input_halves = (c1, c2)
        if self.stride > 1:
            factor = self.stride * self.stride
            if c1 != c2 or c1 * factor != self.out_channels:
                raise ValueError(
                    f"{self.name}: a stride-{self.stride} block maps halves of c channels to "
                    f"halves of {factor}*c channels (psi keeps every value), so "
                    f"out_channels={self.out_channels} needs input halves of "
                    f"{self.out_channels / factor:g} channels each; got {c1} and {c2}.")
            self.pad = 0
        else:
            self.pad = 2 * self.out_channels - (c1 + c2)
            if self.pad < 0:
                raise ValueError(
                    f"{self.name}: a stride-1 block cannot drop channels: input halves "
                    f"{c1} + {c2} > 2 * out_channels = {2 * self.out_channels}.")
            if self.pad == 0 and c1 != c2:
                raise ValueError(
                    f"{self.name}: a bijective stride-1 block needs equal halves, got {c1} and "
                    f"{c2}; use out_channels > {(c1 + c2) / 2:g} to pad.")
        # The block's own policy: a default one would cast the pair to the global
        # policy's compute dtype (bfloat16 under mixed precision, float32 in a
        # float64 model) and the inverse would no longer be exact.
        self.injective_pad = InjectivePad(self.pad, name="injective_pad",
                                          dtype=self.dtype_policy)
        bottleneck_in = (shape2[0], shape2[1], shape2[2],
                         self.out_channels if self.pad else c2)
        self.bottleneck.build(bottleneck_in)

    @property
    def is_injective(self):
        """True for a block that pads channels (built blocks only)."""
        return bool(self.pad)

    def _check_pair(self, pair, argument):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise ValueError(f"{self.name}: `{argument}` must be a pair of NHWC tensors, "
                             f"got {type(pair).__name__}.")
        for index, tensor in enumerate(pair):
            validation.check_rank4(tensor, f"{argument}[{index}]", self.name)

    # --- the coupling: one home for the arithmetic that call, inverse and the
    # memory-saving gradient (irevnet_tf.stack) share --------------------------------------

    def pad_inputs(self, pair):
        """An injective block's widening: merge, append the zero channels, split again."""
        x1, x2 = pair
        if not self.pad:
            return x1, x2
        merged = self.injective_pad(ops.concatenate([x1, x2], axis=-1))
        return merged[..., : self.out_channels], merged[..., self.out_channels:]

    def unpad(self, pair):
        """Inverse of `pad_inputs` (and, being a projection, its adjoint for gradients)."""
        if not self.pad:
            return tuple(pair)
        merged = self.injective_pad.inverse(ops.concatenate(list(pair), axis=-1))
        c1 = self.input_halves[0]
        return merged[..., :c1], merged[..., c1:]

    def residual(self, x2, training=None, dropout_seed=None, update_statistics=True,
                 grid_units=None):
        """F on the (padded) second half.

        x2 is floats, or the integer stream's grid points, which F's first batch norm takes
        directly (its statistics absorb the grid step). With `grid_units` (default: for an
        integer x2) F comes in grid units, `F * 2**k`, as the integer stream's `couple`
        and `first_input` take it: the scale is folded into F's last batch norm.
        """
        if grid_units is None:
            grid_units = is_integer(x2)
        scales = {"output_scale": self.grid.scale if grid_units else None}
        if is_integer(x2):
            scales["input_scale"] = self.grid.step
        return self.bottleneck(x2, training=training, dropout_seed=dropout_seed,
                               update_statistics=update_statistics, **scales)

    def couple(self, pair, fx2):
        """`(y2, y1) = (psi(x2), psi(x1) + [F(x2)])` for the padded pair and F(x2) (in grid
        units for an integer pair, as `residual` gives it)."""
        x1, x2 = pair
        q = self.grid.round_residual(fx2, like=x1, owner=self.name,
                                     grid_units=is_integer(x1))
        return self.psi(x2), self.grid.add(self.psi(x1), q, owner=self.name)

    def second_input(self, y2):
        """The padded x2 from y2 (projected onto the padded subspace)."""
        x2 = self.psi.inverse(y2)
        if not self.pad:
            return x2
        # Channels of x2 at or after this index came from the zero padding.
        data_channels = max(sum(self.input_halves) - self.out_channels, 0)
        return ops.concatenate(
            [x2[..., :data_channels], ops.zeros_like(x2[..., data_channels:])], axis=-1)

    def first_input(self, y1, fx2):
        """The padded x1 from y1 and F(x2): `psi^-1(y1 - [F(x2)])` (F in grid units for an
        integer y1)."""
        q = self.grid.round_residual(fx2, like=y1, owner=self.name,
                                     grid_units=is_integer(y1))
        return self.psi.inverse(self.grid.subtract(y1, q, owner=self.name))

    def call(self, inputs, training=None, dropout_seed=None, update_statistics=True):
        self._check_pair(inputs, "inputs")
        pair = self.pad_inputs(inputs)
        fx2 = self.residual(pair[1], training=training, dropout_seed=dropout_seed,
                            update_statistics=update_statistics)
        return self.couple(pair, fx2)

    def inverse(self, outputs, training=False, dropout_seed=None):
        """Returns the pair `(x1, x2)` that `call` maps to `outputs = (y2, y1)`."""
        self._check_pair(outputs, "outputs")
        y2, y1 = (ops.convert_to_tensor(t) for t in outputs)
        for index, tensor in enumerate(outputs):
            validation.check_channels(tensor, self.out_channels, f"outputs[{index}]", self.name)
        x2 = self.second_input(y2)
        fx2 = self.residual(x2, training=training, dropout_seed=dropout_seed,
                            update_statistics=False)
        return self.unpad((self.first_input(y1, fx2), x2))

    def compute_output_shape(self, input_shape):
        shape2 = tuple(input_shape[1])
        n, h, w = shape2[:3]
        s = self.stride
        out = (n, None if h is None else h // s, None if w is None else w // s,
               self.out_channels)
        return out, out

    def get_config(self):
        config = super().get_config()
        config.update({
            "out_channels": self.out_channels, "stride": self.stride, "first": self.first,
            "mult": self.mult, "dropout_rate": self.dropout_rate,
            "bn_momentum": self.bn_momentum, "bn_epsilon": self.bn_epsilon, "seed": self.seed,
            "bottleneck_dtype": self.bottleneck_dtype,
            "fraction_bits": self.grid.fraction_bits,
        })
        return config
