"""ServingModule: an IRevNet wrapped as a tf.Module whose tf.functions are the serving signatures.

Every signature takes and returns float32, int32, uint8 (or tf.string) tensors with a
dynamic batch dimension, so that REST (JSON, no bfloat16) and gRPC clients can call it, and
it runs the model in inference mode. Pixels at the boundary are in [0, 255], NHWC; the
model itself normalises them (`IRevNet(pixel_mean=..., pixel_std=...)`, the normalisation
it was trained with) and `decode` returns pixels.

    serving_default        images [N, H, W, C] -> logits, probabilities, classes, scores
    classify_image_bytes   image_bytes [N] (encoded JPEG/PNG/GIF/BMP) -> as serving_default
    encode                 images -> features (Phi: int32 grid points of the exact stream)
    decode                 features (int32) -> images (float32 pixels, the exact inverse,
                           not clipped) and pixels (uint8: images rounded and clipped, so
                           integer pixel images come back as the identical integers)
    encode_stages          images -> stage_0 (after the stem) ... stage_K (after stage K),
                           int32 grid points

Grid points n stand for n * 2**-fraction_bits; the module's variable `fraction_bits` (and
the export's metadata) records k, so `features * 2.0**-k` is Phi in real units.

A model built with `include_top=False` has no classifier: its `serving_default` is
`encode` and there is no `classify_image_bytes`.
"""

import numpy as np
import tensorflow as tf

from irevnet_tf import validation
from irevnet_tf.data import preprocessing
from irevnet_tf.layers import decode_input
from irevnet_tf.model import IRevNet
from irevnet_tf.serving import image_bytes as image_bytes_lib

SERVING_DEFAULT = "serving_default"
CLASSIFY_IMAGE_BYTES = "classify_image_bytes"
ENCODE = "encode"
DECODE = "decode"
ENCODE_STAGES = "encode_stages"

IMAGES = "images"
IMAGE_BYTES = "image_bytes"
FEATURES = "features"
CLASSIFICATION_OUTPUTS = ("logits", "probabilities", "classes", "scores")
PIXELS = "pixels"
# int32 outputs (grid points and classes) and the uint8 pixels; every other one is float32.
INTEGER_OUTPUTS = ("classes", FEATURES)
UINT8_OUTPUTS = (PIXELS,)

PIXEL_RANGE = (0.0, 255.0)
DEFAULT_TOP_K = 5
DEFAULT_CROP_FRACTION = preprocessing.CENTRE_CROP_FRACTION


class _Untracked:
    """Holds an object out of sight of TensorFlow's object tracking."""

    def __init__(self, value):
        self.value = value


def stage_output_name(index):
    return f"stage_{index}"


class ServingModule(tf.Module):
    """The serving signatures of one IRevNet, ready for `tf.saved_model.save`.

    Args:
        model: an `IRevNet` (its variables become the SavedModel's variables).
        image_size: height and width of the images the signatures take (default: the
            model's `input_shape`); a multiple of the model's total down-sampling.
        crop_fraction: centre crop of `classify_image_bytes`, as a fraction of the
            shorter side, before the resize to `image_size`.
        top_k: classes and scores returned per image (at most num_classes).

    Example:
    >>> model = build_irevnet("irevnet_tiny", pixel_mean=(125.3,), pixel_std=(63.0,))
    >>> module = ServingModule(model)
    >>> tf.saved_model.save(module, path, signatures=module.signatures())
    """

    def __init__(self, model, image_size=None, crop_fraction=DEFAULT_CROP_FRACTION,
                 top_k=DEFAULT_TOP_K):
        super().__init__(name="irevnet_serving")
        if not isinstance(model, IRevNet):
            raise TypeError(f"ServingModule: `model` must be an irevnet_tf.IRevNet, got "
                            f"{type(model).__name__}.")
        if image_size is None:
            image_size = model.image_shape[0]
        if (not validation.is_int(image_size, 1, numpy_ints=True)
                or image_size % model.downsampling):
            raise ValueError(f"ServingModule: `image_size` must be a positive multiple of the "
                             f"model's total down-sampling {model.downsampling}, got "
                             f"{image_size!r}.")
        preprocessing.check_crop_fraction(crop_fraction, "ServingModule")
        validation.check_int(top_k, "ServingModule: `top_k`", 1)
        channels = model.image_shape[-1]
        # The Keras model itself stays out of the SavedModel's object graph; its variables
        # go in as the plain tf.Variables its functions capture. Tracking the Keras model
        # would save a second copy of every variable (Keras 3's Variable wrappers) that
        # TF1's session loader, and so TF Serving, restores instead of the ones the
        # functions read ("Could not find variable ..." at serving time).
        self._model = _Untracked(model)
        self.model_variables = [variable.value for variable in model.variables]
        self.image_size = int(image_size)
        self.channels = channels
        self.crop_fraction = float(crop_fraction)
        self.top_k = min(top_k, model.num_classes) if model.include_top else 0
        side = self.image_size // model.downsampling
        self.feature_shape = (side, side, 2 * model.channels[-1])
        self.num_stages = len(model.stage_ends)
        # Saved with the module (tf.saved_model.load(path).fraction_bits) so that a user of
        # the export alone can turn grid points into real values.
        self.fraction_bits = tf.Variable(model.grid.fraction_bits, trainable=False,
                                         dtype=tf.int32, name="fraction_bits")

        image_spec = tf.TensorSpec([None, self.image_size, self.image_size, channels],
                                   tf.float32, name=IMAGES)
        feature_spec = tf.TensorSpec([None, *self.feature_shape], model.phi_dtype,
                                     name=FEATURES)
        bytes_spec = tf.TensorSpec([None], tf.string, name=IMAGE_BYTES)
        # Attributes (not only signatures) so that tf.saved_model.load(...).encode(x) works too.
        self.encode = tf.function(self._encode, input_signature=[image_spec])
        self.decode = tf.function(self._decode, input_signature=[feature_spec])
        self.encode_stages = tf.function(self._encode_stages, input_signature=[image_spec])
        if model.include_top:
            self.classify = tf.function(self._classify, input_signature=[image_spec])
            if channels in image_bytes_lib.DECODABLE_CHANNELS:
                self.classify_image_bytes = tf.function(self._classify_image_bytes,
                                                        input_signature=[bytes_spec])

    @property
    def model(self):
        return self._model.value

    # --- signatures -----------------------------------------------------------------------

    def signatures(self):
        """`{signature name: tf.function}` for `tf.saved_model.save(..., signatures=...)`."""
        signatures = {ENCODE: self.encode, DECODE: self.decode, ENCODE_STAGES: self.encode_stages}
        if self.model.include_top:
            signatures[SERVING_DEFAULT] = self.classify
            if hasattr(self, "classify_image_bytes"):
                signatures[CLASSIFY_IMAGE_BYTES] = self.classify_image_bytes
        else:
            signatures[SERVING_DEFAULT] = self.encode
        return signatures

    # TF Serving feeds tensors without comparing them with the signature's shapes, so each
    # signature checks its input at run time (an InvalidArgumentError that names it).
    def _checked_images(self, images):
        return tf.ensure_shape(images, [None, self.image_size, self.image_size, self.channels],
                               name="check_images_shape")

    def _encode(self, images):
        features = self.model.encode(self._checked_images(images), training=False)
        return {FEATURES: features}

    def _decode(self, features):
        # The caller's mistakes in the caller's terms (shape; grid points out of range), one
        # line for a serving client, not a tensor dump or the model's fraction_bits advice.
        features = decode_input.check_shape(
            features, self.feature_shape, DECODE, FEATURES,
            f"Phi of {self.image_size}x{self.image_size} images")
        features = decode_input.check_values(features, self.model.grid.fraction_bits, DECODE,
                                             FEATURES)
        images = tf.cast(self.model.decode(features), tf.float32)  # Pixels, not clipped.
        # The grid is finer than a pixel (std * 2**-k), so rounding recovers integer pixels.
        pixels = tf.cast(tf.clip_by_value(tf.round(images), *PIXEL_RANGE), tf.uint8)
        return {IMAGES: images, PIXELS: pixels}

    def _encode_stages(self, images):
        stages = self.model.intermediate_representations(self._checked_images(images),
                                                         level="stage")
        return {stage_output_name(index): stage for index, stage in enumerate(stages)}

    def _classify(self, images):
        logits = self.model(self._checked_images(images), training=False)
        logits = tf.cast(logits, tf.float32)
        probabilities = tf.nn.softmax(logits, axis=-1)
        scores, classes = tf.math.top_k(probabilities, k=self.top_k)
        return {"logits": logits, "probabilities": probabilities,
                "classes": tf.cast(classes, tf.int32), "scores": scores}

    def _classify_image_bytes(self, image_bytes):
        image_bytes = tf.ensure_shape(image_bytes, [None], name="check_image_bytes_shape")
        images = image_bytes_lib.decode_batch(image_bytes, self.image_size, self.channels,
                                              self.crop_fraction)
        return self._classify(images)

    # --- example inputs (warm-up requests, smoke tests) ---------------------------------------

    def example_images(self, batch_size=1):
        """A deterministic float32 batch of pixels in [0, 255] (a colour gradient)."""
        size, channels = self.image_size, self.channels
        rows = np.linspace(0.0, 255.0, size, dtype=np.float32)
        image = (rows[:, None, None] * 0.5 + rows[None, :, None] * 0.5
                 + np.arange(channels, dtype=np.float32) * 40.0) % 256.0
        return np.repeat(image[None], batch_size, axis=0).astype(np.float32)

    def example_inputs(self, batch_size=1):
        """`{signature name: {input name: numpy array}}` for every signature."""
        images = self.example_images(batch_size)
        features = self.encode(tf.constant(images))[FEATURES].numpy()
        inputs = {ENCODE: {IMAGES: images}, DECODE: {FEATURES: features},
                  ENCODE_STAGES: {IMAGES: images}, SERVING_DEFAULT: {IMAGES: images}}
        if CLASSIFY_IMAGE_BYTES in self.signatures():
            encoded = [tf.io.encode_png(tf.cast(tf.round(image), tf.uint8)).numpy()
                       for image in images]
            inputs[CLASSIFY_IMAGE_BYTES] = {IMAGE_BYTES: np.array(encoded, dtype=object)}
        return inputs

    def output_names(self):
        """`{signature name: tuple of output names}`."""
        stages = tuple(stage_output_name(i) for i in range(self.num_stages + 1))
        names = {ENCODE: (FEATURES,), DECODE: (IMAGES, PIXELS), ENCODE_STAGES: stages}
        if self.model.include_top:
            names[SERVING_DEFAULT] = CLASSIFICATION_OUTPUTS
            if CLASSIFY_IMAGE_BYTES in self.signatures():
                names[CLASSIFY_IMAGE_BYTES] = CLASSIFICATION_OUTPUTS
        else:
            names[SERVING_DEFAULT] = (FEATURES,)
        return names
