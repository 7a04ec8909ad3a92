"""IRevNet: the i-RevNet model, with `encode` (x -> Phi), `decode` (Phi -> x) and a classifier head."""

import weakref

import keras
import numpy as np
from keras import ops

from irevnet_tf import backends
from irevnet_tf import stack as stack_lib
from irevnet_tf import validation as argument_validation
from irevnet_tf.layers import decode_input, validation
from irevnet_tf.layers.batch_norm import BatchNorm
from irevnet_tf.layers.block import IRevBlock
from irevnet_tf.layers.bottleneck import release_initializer
from irevnet_tf.layers.fixed_point import (DEFAULT_FRACTION_BITS, FixedPoint, StreamRangeError,
                                           checks_disabled, is_integer)
from irevnet_tf.layers.normalization import PixelNormalization
from irevnet_tf.layers.psi import Psi


# Eager inference calls run compiled (`tf.function` on TensorFlow, `jax.jit` on JAX; eager
# without gradient recording on PyTorch), for speed (eager execution of the blocks is 1.7-2.7x
# slower on CPUs) and for exactness: in a graph, TensorFlow's optimiser fuses float32
# convolution + batch norm + ReLU into one kernel (in Keras' tf.function, a SavedModel and the
# C API alike), which rounds F differently from eager op-by-op execution, so every inference
# path of the model runs compiled. Kept outside the model so that SavedModel export does not
# serialise them with it.
_COMPILED = weakref.WeakKeyDictionary()

# The model's inference paths, by name, and the methods that compute them.
_INFERENCE_METHODS = {"encode": "_encode_inference", "decode": "_decode_inference",
                      "stage": "_stage_representations", "block": "_block_representations"}


def _run_compiled(model, direction, tensor):
    backend_ops = backends.ops()
    functions = _COMPILED.setdefault(model, {})
    if direction not in functions:
        functions[direction] = backend_ops.compile_inference(model,
                                                             _INFERENCE_METHODS[direction])
    try:
        return functions[direction](tensor)
    except backend_ops.ASSERTION_ERRORS as error:
        StreamRangeError.reraise_from(error)


def _in_chunks(function, tensor, chunk, output_channels, output_dtype, scale):
    """`function` on `tensor` `chunk` images at a time (the last chunk zero-padded).

    Each image then goes through kernels of one shape, [chunk, ...], whatever the batch:
    convolution kernels pick their algorithm (and so their order of summation) by shape,
    including the batch size, so F's bits, and the grid points rounded from them, can
    otherwise differ by batch. `scale` maps the input's height and width to the output's.
    """
    def out_shape(shape):
        height, width = shape[1], shape[2]
        return [chunk, None if height is None else int(height * scale),
                None if width is None else int(width * scale), output_channels]

    return backends.ops().in_chunks(function, tensor, chunk, out_shape, output_dtype)


def _positive_int_tuple(value, argument):
    return argument_validation.check_int_sequence(value, f"IRevNet: `{argument}`", 1)


def _pixel_normalization(mean, std, channels, dtype):
    """The model's entrance `PixelNormalization(mean, std)`, its arguments checked with
    messages that name `pixel_mean`/`pixel_std`."""
    values = {}
    for argument, given in (("pixel_mean", mean), ("pixel_std", std)):
        try:
            array = np.asarray(given, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            array = None
        if array is None or array.size not in (1, channels) or not np.all(np.isfinite(array)):
            raise ValueError(f"IRevNet: `{argument}` must be one finite number or one per "
                             f"image channel ({channels}), got {given!r}.")
        values[argument] = [float(v) for v in array]
    if min(values["pixel_std"]) <= 0:
        raise ValueError(f"IRevNet: `pixel_std` must be positive, got {std!r}.")
    return PixelNormalization(values["pixel_mean"], values["pixel_std"], name="normalization",
                              dtype=dtype)


@keras.saving.register_keras_serializable(package="irevnet_tf")
class IRevNet(keras.Model):
    """i-RevNet (Jacobsen, Smeulders, Oyallon, ICLR 2018): invertible up to the classifier.

    `encode(pixels)` returns Phi(x), the full representation (for the ImageNet model
    `irevnet301`, 224x224x3 -> 7x7x3072: nothing added or lost), as int32 grid points of
    the exact stream (`phi_dtype`; real value = `dequantize(phi)`); `decode(phi)` returns
    the pixels, bit for bit those whose grid points `encode` saw; `call(pixels)` returns
    class logits (head: BN -> ReLU -> global average pool -> Dense), or the float Phi
    when `include_top=False`, so the model drops into other Keras models as a backbone.

    Pixels: the model carries its own normalisation. Its entrance is
    `PixelNormalization(pixel_mean, pixel_std)` (`self.normalization`, float32 even under
    mixed precision): `encode`, `call` and `intermediate_representations` take pixels
    (e.g. in [0, 255]) and normalise them to `(pixels - pixel_mean) / pixel_std`;
    `decode` ends with the inverse and returns pixels. The default (mean 0, std 1) is
    the identity, for callers that feed normalised images. Both are saved in
    `get_config`, so a `.keras` file alone is the whole model.

    The exact stream: normalised images are rounded onto a fixed-point grid of step
    2**-fraction_bits (the only rounding between an image and Phi; in pixel units the
    step is `pixel_std * 2**-fraction_bits`, far below one pixel), and every coupling
    adds F's output rounded onto the same grid, as an integer sum; F itself runs in the
    dtype policy's compute dtype (float32, or bfloat16/float16 under mixed precision).
    See `irevnet_tf.layers.FixedPoint`. `decode(encode(pixels))` is the pixels' grid
    points mapped back through the normalisation's inverse, within about
    `pixel_std * 2**-(fraction_bits + 1)` of the pixels (plus float32 rounding), so
    integer pixels come back as the identical integers after rounding.

    Structure: an optional initial psi of block size `init_ds` (0 for none), a split of
    the channels into halves (the first half has `C // 2` channels), `blocks[k]` blocks
    per stage k whose first block has stride `strides[k]` and whose halves have
    `channels[k]` channels, then the merge of the last pair into Phi.

    Args:
        blocks, strides, channels: per stage, the number of blocks (the release's
            `nBlocks`; held as `blocks_per_stage`, while `stack` holds the block layers),
            the first block's stride and the channels of each half.
        init_ds: block size of the initial psi (0: none).
        mult: bottleneck width divisor.
        dropout_rate: dropout inside every bottleneck.
        num_classes: classifier outputs.
        input_shape: `(height, width, channels)` of the images the model is built for.
            Any other height and width divisible by the total down-sampling work too.
        include_top: whether `call` ends with the classifier.
        bn_momentum, bn_epsilon: batch norms of the blocks (Keras convention; the
            release's values are the defaults: 0.9 and 1e-5).
        head_bn_momentum: the head's batch norm (the release's PyTorch momentum 0.9 is
            Keras 0.1).
        reversible: whether `fit` computes gradients by rebuilding activations from the
            outputs (memory independent of depth) instead of storing them.
        seed: seed for dropout masks.
        fraction_bits: k of the stream's grid 2**-k (range +-2**(30-k)); see `FixedPoint`.
        pixel_mean, pixel_std: the per-channel normalisation at the entrance (one value,
            or one per image channel; std > 0): the model's input is pixels, normalised
            inside to `(pixels - pixel_mean) / pixel_std`. Default: the identity.
        inference_chunk: None (the default) runs `encode`/`decode` on the whole batch at
            once, which is exact whenever `decode` sees the batch `encode` saw. An int c
            runs them c images at a time, so that each image's bits are the same in any
            batch: decode one image of an encoded batch, or let a server batch requests
            (convolutions pick their algorithm by shape, batch size included, and a
            different summation order can move a grid point).

    Example:
    >>> model = IRevNet(blocks=(1, 1), strides=(1, 2), channels=(6, 24), init_ds=2,
    ...                 num_classes=10, input_shape=(16, 16, 3))
    ...                 pixel_mean=(125.3, 123.0, 113.9), pixel_std=(63.0, 62.1, 66.7))
    >>> phi = model.encode(keras.random.uniform([2, 16, 16, 3], 0, 255))  # (2, 4, 4, 48) int32
    >>> pixels = model.decode(phi)                             # (2, 16, 16, 3) float32
    """

    def __init__(self, blocks, strides, channels, init_ds=2, mult=4, dropout_rate=0.0,
                 num_classes=1000, input_shape=(224, 224, 3), include_top=True,
                 bn_momentum=0.9, bn_epsilon=1e-5, head_bn_momentum=0.1, reversible=True,
                 seed=None, fraction_bits=DEFAULT_FRACTION_BITS, inference_chunk=None,
                 pixel_mean=(0.0,), pixel_std=(1.0,), **kwargs):
        kwargs.setdefault("name", "irevnet")
        # Images stay in float32 (the variable dtype) until they are quantised, instead of
        # being rounded to bfloat16/float16 first.
        kwargs["autocast"] = False
        super().__init__(**kwargs)
        self.blocks_per_stage = _positive_int_tuple(blocks, "blocks")
        self.strides = _positive_int_tuple(strides, "strides")
        self.channels = _positive_int_tuple(channels, "channels")
        if not len(self.blocks_per_stage) == len(self.strides) == len(self.channels):
            raise ValueError(
                "IRevNet: `blocks`, `strides` and `channels` need one entry per stage, got "
                f"{len(self.blocks_per_stage)}, {len(self.strides)} and {len(self.channels)}.")
        argument_validation.check_int(
            init_ds, "IRevNet: `init_ds`", 0, what="0 (no initial psi) or a psi block size >= 2")
        image_shape = _positive_int_tuple(input_shape, "input_shape")
        if len(image_shape) != 3:
            raise ValueError("IRevNet: `input_shape` must be (height, width, channels), "
                             f"got {input_shape!r}.")
        argument_validation.check_int(num_classes, "IRevNet: `num_classes`", 1)
        self.init_ds = init_ds
        self.mult = mult
        self.dropout_rate = dropout_rate
        self.num_classes = num_classes
        self.image_shape = image_shape
        self.include_top = bool(include_top)
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        self.head_bn_momentum = head_bn_momentum
        self.reversible = bool(reversible)
        self.seed = seed
        self.grid = FixedPoint(fraction_bits)
        argument_validation.check_int(
            inference_chunk, "IRevNet: `inference_chunk`", 1, optional=True,
            what="None (whole batches) or an int >= 1 (images per chunk)")
        self.inference_chunk = inference_chunk

        self.downsampling = max(init_ds, 1)
        for stride in self.strides:
            self.downsampling *= stride
        height, width, image_channels = image_shape
        if height % self.downsampling or width % self.downsampling:
            raise ValueError(
                f"IRevNet: `input_shape` {image_shape} must have a height and width divisible "
                f"by the total down-sampling {self.downsampling} (init_ds and strides).")
        self._check_channel_flow(image_channels)

        self.float_dtype = self.dtype_policy.variable_dtype
        # Pixels are normalised in float32 (the variable dtype) before they are quantised,
        # whatever the compute dtype.
        self.normalization = _pixel_normalization(pixel_mean, pixel_std, image_channels,
                                                  self.float_dtype)

        # The stream is int32 grid points; images, decoded images and the dequantised
        # inputs of F are in the variable dtype (float32 under mixed precision). Only the
        # bottlenecks and the head compute in the policy's compute dtype.
        self.init_psi = Psi(max(init_ds, 1), name="init_psi", dtype=self.float_dtype)
        self.stack = []
        for stage, (depth, stride, width) in enumerate(
                zip(self.blocks_per_stage, self.strides, self.channels)):
            for index in range(depth):
                self.stack.append(IRevBlock(
                    width, stride=stride if index == 0 else 1, first=not self.stack,
                    mult=mult, dropout_rate=dropout_rate, bn_momentum=bn_momentum,
                    bn_epsilon=bn_epsilon,
                    seed=None if seed is None else seed + len(self.stack),
                    name=f"stage{stage + 1}_block{index + 1}", dtype=self.float_dtype,
                    bottleneck_dtype=self.dtype_policy.name, fraction_bits=fraction_bits))
        # Where each stage ends in `self.stack` (for per-stage representations).
        self.stage_ends = []
        for depth in self.blocks_per_stage:
            self.stage_ends.append((self.stage_ends[-1] if self.stage_ends else 0) + depth)
        self.seed_generator = (keras.random.SeedGenerator(seed, name="dropout_seeds")
                               if dropout_rate > 0 else None)
        if self.include_top:
            self.head_bn = BatchNorm(momentum=head_bn_momentum, epsilon=bn_epsilon,
                                     name="head_bn", dtype=self.dtype_policy)
            self.pool = keras.layers.GlobalAveragePooling2D(name="pool", dtype=self.dtype_policy)
            # Logits in float32 under mixed precision, for a stable softmax.
            classifier_dtype = ("float32" if self.dtype_policy.compute_dtype in
                                ("float16", "bfloat16") else self.dtype_policy)
            self.classifier = keras.layers.Dense(
                num_classes, kernel_initializer=release_initializer(),
                name="classifier", dtype=classifier_dtype)
        self.build((None, *image_shape))

    @staticmethod
    def check_pixel_normalization(pixel_mean, pixel_std, channels):
        """Raises ValueError, naming the argument, unless `pixel_mean`/`pixel_std` are a
        valid normalisation of `channels`-channel images."""
        _pixel_normalization(pixel_mean, pixel_std, channels, "float32")

    def _check_channel_flow(self, image_channels):
        """Follows the channel counts through the stages so that a bad config fails here."""
        total = image_channels * max(self.init_ds, 1) ** 2
        for stage, (stride, width) in enumerate(zip(self.strides, self.channels), start=1):
            if stride > 1 and (total % 2 or (total // 2) * stride * stride != width):
                raise ValueError(
                    f"IRevNet: stage {stage} has stride {stride}, so `channels[{stage - 1}]` "
                    f"must be {stride * stride} x the incoming half width "
                    f"({total / 2:g}) = {stride * stride * total / 2:g}, got {width}.")
            if stride == 1 and 2 * width < total:
                raise ValueError(
                    f"IRevNet: stage {stage} has stride 1, so `channels[{stage - 1}]` must be "
                    f"at least the incoming half width ({total / 2:g}), got {width}.")
            total = 2 * width

    def with_dtype_policy(self, policy):
        """A copy of this model (same weights) computing under dtype policy `policy`:
        "float32", "mixed_bfloat16" (TPUs, AMX CPUs) or "mixed_float16" (GPUs). The
        stream stays exact in each; only F and the head change precision."""
        accepted = ("float32", "mixed_bfloat16", "mixed_float16", "float64")
        if policy not in accepted:
            raise ValueError(f"{self.name}: `policy` must be one of {', '.join(accepted)}, "
                             f"got {policy!r}.")
        if policy == self.dtype_policy.name:
            return self
        return self._rebuilt(dtype=policy)

    def with_inference_chunk(self, chunk):
        """A copy of this model (same weights) whose `encode`/`decode` run `chunk` images at
        a time (None: whole batches); see the `inference_chunk` argument."""
        if chunk == self.inference_chunk:
            return self
        return self._rebuilt(inference_chunk=chunk)

    def with_pixel_normalization(self, pixel_mean, pixel_std):
        """A copy of this model (same weights) whose entrance normalisation is
        `(pixels - pixel_mean) / pixel_std` (one value or one per channel; see the
        `pixel_mean`/`pixel_std` arguments). `(0.0,), (1.0,)` gives a model that takes
        normalised images directly. The constructor checks the values (naming the
        argument) before any weights are copied."""
        return self._rebuilt(pixel_mean=pixel_mean, pixel_std=pixel_std)

    def _rebuilt(self, **overrides):
        copy = type(self).from_config({**self.get_config(), **overrides})
        copy.set_weights(self.get_weights())
        return copy

    def _trackable_children(self, save_type="checkpoint", **kwargs):
        # Keras 3 keeps `self.stack` as its own TrackedList, which TensorFlow's object graph
        # does not follow: without this, tf.train.Checkpoint would save only the head.
        children = super()._trackable_children(save_type, **kwargs)
        for block in self.stack:
            children[block.name] = block
        return children

    @property
    def pixel_mean(self):
        """The per-channel mean of the entrance normalisation (a tuple of floats)."""
        return tuple(self.normalization.mean)

    @property
    def pixel_std(self):
        """The per-channel std of the entrance normalisation (a tuple of floats)."""
        return tuple(self.normalization.std)

    def normalize(self, pixels):
        """Pixels -> the normalised images the stream quantises, `(pixels - mean) / std`,
        in float32 (the model's float dtype)."""
        pixels = ops.cast(pixels, self.float_dtype)
        # Static channels for the layer (TensorFlow graphs may not know them).
        pixels = backends.ops().with_static_channels(pixels, self.image_shape[-1])
        return self.normalization(pixels)

    def denormalize(self, images):
        """Normalised images -> pixels, `images * std + mean` (float32, not clipped)."""
        return self.normalization.inverse(ops.cast(images, self.float_dtype))

    @property
    def phi_dtype(self):
        """The dtype of `encode`'s output: int32 grid points of the exact stream."""
        return "int32"

    def dequantize(self, phi, dtype=None):
        """Real values of grid points from `encode` (floats pass), in `dtype` (default the
        model's float dtype, float32). float32 holds a grid point exactly only while
        |value| < 2**(24 - fraction_bits) (64 at the default 18); float64 always does,
        and `decode` takes it without loss."""
        return self.grid.dequantize(phi, dtype or self.float_dtype)

    @property
    def phi_shape(self):
        """Shape `(height, width, channels)` of Phi for images of `input_shape`."""
        height, width, _ = self.image_shape
        return (height // self.downsampling, width // self.downsampling,
                2 * self.channels[-1])

    def build(self, input_shape):
        shape = tuple(input_shape)
        stem = self.init_psi.compute_output_shape(shape)
        first_half = stem[-1] // 2
        pair = ((*stem[:3], first_half), (*stem[:3], stem[-1] - first_half))
        for block in self.stack:
            block.build(pair)
            pair = block.compute_output_shape(pair)
        if self.include_top:
            merged = (*pair[0][:3], 2 * self.channels[-1])
            self.head_bn.build(merged)
            self.classifier.build((None, merged[-1]))
        self.built = True

    # --- the invertible part -------------------------------------------------------------

    def _check_images(self, images, argument="images"):
        images = ops.convert_to_tensor(images)
        validation.check_rank4(images, argument, self.name)
        validation.check_floating(images, argument, self.name)
        validation.check_channels(images, self.image_shape[-1], argument, self.name)
        validation.check_divisible_spatial(images, self.downsampling, argument, self.name)
        return ops.cast(images, self.float_dtype)

    def stem(self, images):
        """Initial psi and split: images (or their grid points) -> the first pair `(x1, x2)`."""
        x = self.init_psi(images)
        half = x.shape[-1] // 2
        return x[..., :half], x[..., half:]

    def unstem(self, pair):
        """Inverse of `stem`: merge the pair and undo the initial psi."""
        return self.init_psi.inverse(ops.concatenate(list(pair), axis=-1))

    def encode(self, images, training=False, dropout_seed=None):
        """Phi(x) of pixels `images`: normalised by `self.normalization`, then the merged
        output of the invertible stack, shape `(N, *phi_shape)`.

        Inference (the default) returns int32 grid points (`phi_dtype`), exact: `decode`
        gives back the grid points of the normalised `images` bit for bit (as pixels).

        `training=True` returns the float Phi (the same values, dequantised) with its
        gradient: batch statistics and dropout, moving statistics updated once; with
        `reversible=True` the gradient is the memory-saving one
        (`irevnet_tf.stack.run_memory_saving`). `dropout_seed` (int tensor of shape [2]) fixes the
        dropout masks; by default a new seed is drawn per call.
        """
        images = self._check_images(images)
        if not training:
            if backends.ops().is_concrete(images):
                return _run_compiled(self, "encode", images)
            return self._encode_inference(images)
        # A NaN/Inf image would stop the stream's range check with an error; in training it
        # should instead make the loss non-finite, which the trainer (and any loss-scale
        # optimizer) handles: run the batch on zeros and poison Phi with NaN.
        finite = ops.isfinite(ops.sum(images))
        images = ops.where(finite, images, ops.zeros_like(images))
        if dropout_seed is None and self.seed_generator is not None:
            dropout_seed = self.seed_generator.next()
        seeds = stack_lib.block_dropout_seeds(dropout_seed, len(self.stack))
        with checks_disabled():
            pair = self.stem(self.grid.quantize_straight_through(self.normalize(images)))
            if self.reversible:
                pair = stack_lib.run_memory_saving(self.stack, pair, seeds)
            else:
                pair = stack_lib.run(self.stack, pair, seeds, training=True)
        phi = ops.concatenate(list(pair), axis=-1)
        return phi + ops.cast(ops.where(finite, 0.0, float("nan")), phi.dtype)

    def _encode_inference(self, images):
        if self.inference_chunk:
            return _in_chunks(self._encode_batch, images, self.inference_chunk,
                              2 * self.channels[-1], "int32", 1 / self.downsampling)
        return self._encode_batch(images)

    def _encode_batch(self, pixels):
        pair = self.stem(self.grid.quantize(self.normalize(pixels), self.name, "images"))
        pair = stack_lib.run(self.stack, pair, [None] * len(self.stack), training=False)
        return ops.concatenate(list(pair), axis=-1)

    def decode(self, phi):
        """Pixels x with `encode(x) == phi` (inference mode), as floats (not clipped).

        `phi` is what `encode` returns (int32 grid points), or float features (e.g. an
        interpolation of two dequantised Phis), which are rounded onto the grid first.
        On what `encode` returns the result is exact: the grid points of the encoded
        normalised images, bit for bit, mapped back to pixels by the normalisation's
        inverse (`x * pixel_std + pixel_mean` in float32).
        """
        phi = ops.convert_to_tensor(phi)
        validation.check_rank4(phi, "phi", f"{self.name}.decode")
        dtype = keras.backend.standardize_dtype(phi.dtype)
        if not (is_integer(phi) or "float" in dtype):
            raise TypeError(f"{self.name}.decode: `phi` must be int32 grid points (from "
                            f"encode) or floating-point features, got dtype {dtype}.")
        validation.check_channels(phi, 2 * self.channels[-1], "phi", f"{self.name}.decode")
        # Values a caller got wrong (out of range, NaN), named in the caller's units before
        # any cast; an overflow inside the stack stays FixedPoint's to report.
        phi = decode_input.check_values(phi, self.grid.fraction_bits, f"{self.name}.decode",
                                        "phi")
        if "float" in dtype and dtype != "float64":
            # float64 passes as it is: it holds every grid point, float32 only small ones.
            phi = ops.cast(phi, self.float_dtype)
        elif is_integer(phi) and dtype != "int32":
            phi = ops.cast(phi, "int32")
        if backends.ops().is_concrete(phi):
            return _run_compiled(self, "decode", phi)
        return self._decode_inference(phi)

    def _decode_inference(self, phi):
        phi = self.grid.quantize(phi, f"{self.name}.decode", "phi")
        if self.inference_chunk:
            return _in_chunks(self._decode_batch, phi, self.inference_chunk,
                              self.image_shape[-1], self.float_dtype, self.downsampling)
        return self._decode_batch(phi)

    def _decode_batch(self, phi):
        half = self.channels[-1]
        pair = (phi[..., :half], phi[..., half:])
        for block in reversed(self.stack):
            pair = block.inverse(pair, training=False)
        return self.denormalize(self.dequantize(self.unstem(pair)))

    def intermediate_representations(self, images, level="stage"):
        """The merged pair after the stem and after each stage (`level="stage"`) or block
        (`level="block"`) of pixels `images`, in inference mode, as int32 grid points:
        each one is invertible back to the image."""
        if level not in ("stage", "block"):
            raise ValueError(f"IRevNet: `level` must be 'stage' or 'block', got {level!r}.")
        images = self._check_images(images)
        if backends.ops().is_concrete(images):
            return _run_compiled(self, level, images)
        return self._representations(images, level)

    def _stage_representations(self, images):
        return self._representations(images, "stage")

    def _block_representations(self, images):
        return self._representations(images, "block")

    def _representations(self, images, level):
        pair = self.stem(self.grid.quantize(self.normalize(images), self.name, "images"))
        outputs = [ops.concatenate(list(pair), axis=-1)]
        ends = set(self.stage_ends)
        for index, block in enumerate(self.stack, start=1):
            pair = block(pair, training=False)
            if level == "block" or index in ends:
                outputs.append(ops.concatenate(list(pair), axis=-1))
        return outputs

    # --- the classifier ----------------------------------------------------------------

    def classify(self, phi, training=False):
        """The non-invertible head on Phi (grid points or floats): BN -> ReLU -> global
        average pool -> Dense."""
        if not self.include_top:
            raise ValueError("IRevNet.classify: this model was built with include_top=False.")
        phi = self.dequantize(phi)
        h = ops.relu(self.head_bn(phi, training=training))
        return self.classifier(self.pool(h))

    def call(self, images, training=None, dropout_seed=None):
        phi = self.dequantize(
            self.encode(images, training=bool(training), dropout_seed=dropout_seed))
        if not self.include_top:
            return phi
        return self.classify(phi, training=training)

    def compute_output_shape(self, input_shape):
        if self.include_top:
            return (input_shape[0], self.num_classes)
        n, h, w, _ = input_shape
        d = self.downsampling
        return (n, None if h is None else h // d, None if w is None else w // d,
                2 * self.channels[-1])

    def get_config(self):
        config = super().get_config()
        config.update({
            "blocks": list(self.blocks_per_stage), "strides": list(self.strides),
            "channels": list(self.channels), "init_ds": self.init_ds, "mult": self.mult,
            "dropout_rate": self.dropout_rate, "num_classes": self.num_classes,
            "input_shape": list(self.image_shape), "include_top": self.include_top,
            "bn_momentum": self.bn_momentum, "bn_epsilon": self.bn_epsilon,
            "head_bn_momentum": self.head_bn_momentum, "reversible": self.reversible,
            "seed": self.seed, "fraction_bits": self.grid.fraction_bits,
            "inference_chunk": self.inference_chunk,
            "pixel_mean": list(self.normalization.mean),
            "pixel_std": list(self.normalization.std),
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("trainable", None)
        return cls(**config)

    # --- compiling, across Keras backends ------------------------------------------------
    # Keras resolves `jit_compile="auto"` when compiling (XLA on JAX, eager on PyTorch and
    # on TensorFlow CPUs) and saves the resolved value, so a `.keras` file from JAX would
    # make PyTorch run `torch.compile` (not supported here: every coupling's range check is
    # a graph break, every block a recompilation) and a file from TensorFlow would make JAX
    # train without `jax.jit`. The model saves what was asked for instead, and "auto"
    # resolves on the backend that loads the file.

    def compile(self, *args, jit_compile="auto", **kwargs):
        self._requested_jit_compile = jit_compile
        super().compile(*args, jit_compile=jit_compile, **kwargs)

    def get_compile_config(self):
        config = super().get_compile_config()
        if config and getattr(self, "_requested_jit_compile", None) is not None:
            config = {**config, "jit_compile": self._requested_jit_compile}
        return config

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        if backends.name() == "torch" and config.get("jit_compile") is True:
            # A file written before the request was saved: True was another backend's.
            config["jit_compile"] = "auto"
        self.compile(**config)
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)  # As Keras does: its variables.
