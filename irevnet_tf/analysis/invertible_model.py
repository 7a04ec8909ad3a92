"""One view of an invertible model for the analyses, whatever it was saved as.

The analyses need three things from a model, all in pixel units (images are float arrays of
pixels in [0, 255], NHWC):

    encode(pixels) -> features                   Phi(x)
    decode(features) -> pixels                   Phi^-1
    stage_representations(pixels, level) -> [representation after the stem, after stage 1, ...]

`InvertibleModel` provides them for

  (a) an IRevNet restored from a model directory or a `.keras` file
      (`irevnet_tf.model_files.restore_model`): the model takes and returns pixels (it
      carries its normalisation); both levels "stage" and "block" are available;
  (b) a SavedModel export (a directory holding saved_model.pb, or a TF Serving base directory
      whose integer-named version subdirectories hold one each: the highest version is used),
      through its signatures `encode` (`images` -> `features`), `decode` (`features` ->
      `images`) and `encode_stages` (`images` -> `stage_0` ... `stage_K`), which work in pixel
      units already; only level "stage" is available.

`load_invertible_model(path)` picks the right one. All methods work in batches of
`batch_size` examples and return numpy arrays. Features and representations are in real units
(the stream's int32 grid points times 2**-fraction_bits), so that they can be interpolated and
fed to classifiers; `decode` rounds them back onto the grid. `encode`'s features are float64,
which holds every grid point exactly, so `decode(encode(x))` is the model's own round trip
(float32 holds a grid point only while |Phi| < 2**(24 - fraction_bits), 64 at the default 18,
and trained models exceed that). Pixels and representations are float32: statistics need no
more.
"""

import json
import os
import re

import numpy as np
import tensorflow as tf

from irevnet_tf.serving import export as export_lib
from irevnet_tf import model_files as model_dir_lib
from irevnet_tf import validation
from irevnet_tf.layers.fixed_point import FixedPoint, StreamRangeError

SAVED_MODEL_FILE = "saved_model.pb"
LEVELS = ("stage", "block")


class InvertibleModel:
    """Pixel-unit encode / decode / per-depth representations of an invertible model.

    Subclasses implement `_encode_batch`, `_decode_batch`, `_representations_batch` and
    `representation_names`, each on one batch of tensors.

    Attributes:
        image_shape: `(height, width, channels)` of the images the model takes.
        levels: the representation levels `stage_representations` supports.
        run_config: the `RunConfig` describing the model's training, or None if unknown.
        source: where the model came from (for messages and reports).
        batch_size: examples per call of the underlying model.
    """

    levels = ()

    def __init__(self, image_shape, source, run_config=None, batch_size=64):
        validation.check_int(batch_size, "InvertibleModel: `batch_size`", 1)
        self.image_shape = tuple(int(size) for size in image_shape)
        self.source = str(source)
        self.run_config = run_config
        self.batch_size = batch_size

    @property
    def name(self):
        """A short name for figure titles: the configuration and what it was trained on
        when the run configuration is known (an export's absolute path says nothing a
        reader can use), else the last part of `source`."""
        if self.run_config is not None:
            dataset = getattr(self.run_config, "dataset", "")
            return (f"{self.run_config.config_name} trained on {dataset}" if dataset
                    else self.run_config.config_name)
        if self.source.startswith("Keras model "):
            return self.source
        parent, last = os.path.split(self.source.rstrip("/"))
        if last.isdigit():  # A TF Serving version directory: name the model directory.
            return f"{os.path.basename(parent)} version {last}"
        return last or self.source

    # --- the public, batched, pixel-unit interface -----------------------------------------

    def encode(self, pixels):
        """Phi of `pixels` (N, H, W, C) in [0, 255]: a float64 array (N, *phi_shape) of
        real values, exact (every grid point)."""
        pixels = self._check_pixels(pixels)
        return self._map_batches(lambda batch: [self._encode_batch(batch)], pixels,
                                 np.float64)[0]

    def decode(self, features):
        """The images whose representation is `features` (real values, e.g. from `encode`
        or an interpolation), as float32 pixels in [0, 255]."""
        features = np.asarray(features, np.float64)
        if features.ndim != 4:
            raise ValueError(f"{self.source}: decode takes rank-4 features (N, height, width, "
                             f"channels), got shape {features.shape}.")
        return self._map_batches(lambda batch: [self._decode_batch(batch)], features)[0]

    def stage_representations(self, pixels, level="stage", indices=None):
        """The representations of `pixels` after the stem and after each stage or block.

        Args:
            pixels: (N, H, W, C) pixels in [0, 255].
            level: "stage" (after the stem = the input, then after each stage) or "block"
                (after the stem, then after every block); see `levels`.
            indices: which of them to return (positions in `representation_names(level)`);
                all by default. Asking for fewer saves memory, not computation.

        Returns:
            A list of float32 arrays (N, h, w, c), one per requested representation.
        """
        self.check_level(level)
        names = self.representation_names(level)
        indices = list(range(len(names))) if indices is None else list(indices)
        bad = [index for index in indices if not 0 <= index < len(names)]
        if bad:
            raise ValueError(f"{self.source}: representation indices {bad} out of range; "
                             f"level {level!r} has {len(names)} ({', '.join(names)}).")
        pixels = self._check_pixels(pixels)

        def representations(batch):
            outputs = self._representations_batch(batch, level)
            return [outputs[index] for index in indices]

        return self._map_batches(representations, pixels)

    def representation_names(self, level="stage"):
        """Names of the representations `stage_representations(..., level)` returns."""
        raise NotImplementedError

    def check_level(self, level):
        """Raises ValueError unless `level` is one this model supports."""
        if level not in self.levels:
            if level in LEVELS:
                raise ValueError(
                    f"level {level!r} is not available for {self.source} "
                    f"({type(self).__name__} supports: {', '.join(self.levels) or 'none'}); "
                    "per-block representations need a Keras model (a model directory or a "
                    ".keras file), and per-stage ones a SavedModel with `encode_stages`.")
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}.")

    # --- implementation helpers ---------------------------------------------------------

    def _check_pixels(self, pixels):
        pixels = np.asarray(pixels, np.float32)
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != self.image_shape:
            raise ValueError(f"{self.source}: expected pixels of shape (N, "
                             f"{', '.join(map(str, self.image_shape))}), got {pixels.shape}.")
        return pixels

    def _map_batches(self, function, array, dtype=np.float32):
        """Applies `function` (batch tensor -> list of tensors) to `array` batch by batch and
        concatenates each output, as `dtype`, over the batches."""
        outputs = None
        for start in range(0, len(array), self.batch_size):
            batch = tf.constant(array[start:start + self.batch_size])
            results = [np.asarray(result, dtype) for result in function(batch)]
            if outputs is None:
                outputs = [[] for _ in results]
            for collected, result in zip(outputs, results):
                collected.append(result)
        if outputs is None:
            raise ValueError(f"{self.source}: no examples given (an empty batch).")
        return [np.concatenate(collected, axis=0) for collected in outputs]

    def _encode_batch(self, pixels):
        raise NotImplementedError

    def _decode_batch(self, features):
        raise NotImplementedError

    def _representations_batch(self, pixels, level):
        raise NotImplementedError


class KerasInvertibleModel(InvertibleModel):
    """An IRevNet (pixels in, pixels out: the model carries its normalisation).

    Args:
        model: an `irevnet_tf.IRevNet`.
        run_config: the model's `RunConfig`, if any (provenance only).
        image_size: height and width of the analysed images (default: the model's).
        source, batch_size: as in `InvertibleModel`.
    """

    levels = LEVELS

    def __init__(self, model, run_config=None, image_size=None, source=None, batch_size=64):
        height, width, channels = model.image_shape
        if image_size:
            height = width = int(image_size)
        super().__init__((height, width, channels), source or f"Keras model {model.name!r}",
                         run_config, batch_size)
        self.model = model

        def real(grid_points):
            return tf.cast(model.dequantize(grid_points), tf.float32)

        def encode(pixels):
            return model.dequantize(model.encode(pixels), tf.float64)  # Exact.

        def decode(features):  # float64 features: model.decode rounds them exactly.
            return tf.cast(model.decode(features), tf.float32)

        def representations(pixels, level):
            return [real(output) for output in
                    model.intermediate_representations(pixels, level=level)]

        # Graph functions: one trace per batch shape, instead of eager op-by-op calls.
        self._encode_function = tf.function(encode, reduce_retracing=True)
        self._decode_function = tf.function(decode, reduce_retracing=True)
        self._representation_functions = {
            level: tf.function(lambda pixels, level=level: representations(pixels, level),
                               reduce_retracing=True)
            for level in LEVELS}

    @classmethod
    def from_model_path(cls, path, batch_size=64, image_size=None):
        """Restores a model directory or `.keras` file (the model brings its normalisation);
        images are `image_size` (default: the RunConfig's) square."""
        model, run_config = model_dir_lib.restore_model(path)
        return cls(model, run_config=run_config,
                   image_size=image_size or run_config.image_size, source=str(path),
                   batch_size=batch_size)

    def representation_names(self, level="stage"):
        self.check_level(level)
        if level == "stage":
            return [f"stage_{index}" for index in range(len(self.model.stage_ends) + 1)]
        return ["stage_0"] + [block.name for block in self.model.stack]

    def _encode_batch(self, pixels):
        return self._encode_function(pixels)

    def _decode_batch(self, features):
        return self._decode_function(features)

    def _representations_batch(self, pixels, level):
        return self._representation_functions[level](pixels)


class SavedModelInvertibleModel(InvertibleModel):
    """A SavedModel export with the signatures `encode`, `decode` (and `encode_stages`).

    Args:
        export_dir: a directory holding saved_model.pb (see `resolve_model_path` for TF
            Serving base directories).
        image_size: image height and width, needed only when the `encode` signature leaves
            them unspecified.
        source, batch_size: as in `InvertibleModel`.
    """

    def __init__(self, export_dir, image_size=None, source=None, batch_size=64):
        self.export_dir = str(export_dir)
        source = source or f"SavedModel {self.export_dir}"
        self._loaded = tf.saved_model.load(self.export_dir)
        signatures = self._loaded.signatures
        missing = [name for name in ("encode", "decode") if name not in signatures]
        if missing:
            raise ValueError(f"{source}: the SavedModel lacks the signature(s) "
                             f"{', '.join(missing)}; it has {', '.join(sorted(signatures))}. "
                             "Expected `encode` (images -> features) and `decode` "
                             "(features -> images).")
        self._encode_signature = signatures["encode"]
        self._decode_signature = signatures["decode"]
        self._stages_signature = signatures.get("encode_stages")
        image_spec = _signature_input(self._encode_signature, "images", "encode", source)
        self._encode_batch_size = image_spec.shape[0]
        self._decode_batch_size = _signature_input(
            self._decode_signature, "features", "decode", source).shape[0]
        if image_spec.shape.rank != 4 or image_spec.shape[-1] is None:
            raise ValueError(f"{source}: the `encode` signature must take images "
                             f"(batch, height, width, channels) with known channels, got "
                             f"{image_spec.shape}.")
        shape = list(image_spec.shape[1:])
        if image_size:
            if any(size is not None and size != image_size for size in shape[:2]):
                raise ValueError(f"{source}: `image_size` {image_size} does not fit the "
                                 f"`encode` signature's images {image_spec.shape}.")
            shape[:2] = [int(image_size)] * 2
        if None in shape:
            raise ValueError(f"{source}: the `encode` signature takes images of shape "
                             f"{image_spec.shape}; pass `image_size` to fix the height and "
                             "width.")
        super().__init__(shape, source, _find_run_config(self.export_dir), batch_size)
        bits = getattr(self._loaded, "fraction_bits", None)
        # The export's number format, so that the analysis quantises as the model does (range
        # check, saturating cast). Exports older than the integer stream have float features
        # in real units and no format (None).
        self._grid = None if bits is None else FixedPoint(int(bits.numpy()))
        self._feature_dtype = _signature_input(self._decode_signature, "features", "decode",
                                               source).dtype
        self.levels = ("stage",) if self._stages_signature is not None else ()
        if self._stages_signature is not None:
            outputs = self._stages_signature.structured_outputs
            stage_names = [name for name in outputs if re.fullmatch(r"stage_\d+", name)]
            self._stage_names = sorted(stage_names, key=lambda name: int(name.split("_")[1]))

    def representation_names(self, level="stage"):
        self.check_level(level)
        return list(self._stage_names)

    def _real(self, grid_points, dtype=tf.float32):
        if self._grid is None:
            return tf.cast(grid_points, dtype)
        return self._grid.dequantize(grid_points, dtype)

    def _encode_batch(self, pixels):
        return self._real(self._call(self._encode_signature, "images", pixels,
                                     self._encode_batch_size)["features"], tf.float64)

    def _decode_batch(self, features):
        if self._feature_dtype.is_integer:  # Real units -> grid points (exact on encode's).
            try:
                features = self._grid.quantize(tf.cast(features, tf.float64),
                                               "InvertibleModel.decode", "the features")
            except tf.errors.InvalidArgumentError as error:
                StreamRangeError.reraise_from(error)
        else:  # An export older than the integer stream takes its float dtype.
            features = tf.cast(features, self._feature_dtype)
        return self._call(self._decode_signature, "features", features,
                          self._decode_batch_size)["images"]

    def _representations_batch(self, pixels, level):
        outputs = self._call(self._stages_signature, "images", pixels, self._encode_batch_size)
        return [self._real(outputs[name]) for name in self._stage_names]

    @staticmethod
    def _call(signature, argument, batch, fixed_batch_size):
        """Calls `signature`, padding the batch when the export fixed its batch size."""
        size = int(batch.shape[0])
        if fixed_batch_size is None or fixed_batch_size == size:
            return signature(**{argument: batch})
        outputs = {}
        for start in range(0, size, fixed_batch_size):
            part = batch[start:start + fixed_batch_size]
            padding = fixed_batch_size - int(part.shape[0])
            if padding:
                part = tf.concat([part, tf.zeros([padding, *part.shape[1:]], part.dtype)], 0)
            for name, value in signature(**{argument: part}).items():
                outputs.setdefault(name, []).append(value[:fixed_batch_size - padding])
        return {name: tf.concat(values, 0) for name, values in outputs.items()}


def resolve_model_path(path):
    """What `path` holds, without loading it: `(kind, resolved_path)`.

    kind is "keras_file" (a `.keras` file), "model_dir" (a model directory with a run
    configuration and a checkpoint) or "saved_model" (resolved_path is the directory with
    saved_model.pb: `path` itself, or its highest integer-named version subdirectory).
    Raises ValueError naming `path` and what is accepted when it holds none of these.
    """
    path = str(path)
    accepted = ("a model directory (run_config.json and checkpoints/), a .keras file, or a "
                "SavedModel export (a directory with saved_model.pb, or a TF Serving base "
                "directory with integer version subdirectories)")
    if not path:
        raise ValueError(f"model: a path is required: {accepted}.")
    if not tf.io.gfile.exists(path):
        raise ValueError(f"model {path!r} does not exist; expected {accepted}.")
    if path.endswith(".keras") and not tf.io.gfile.isdir(path):
        return "keras_file", path
    if not tf.io.gfile.isdir(path):
        raise ValueError(f"model {path!r} is a file, not {accepted}.")
    if tf.io.gfile.exists(os.path.join(path, SAVED_MODEL_FILE)):
        return "saved_model", path
    if tf.io.gfile.exists(model_dir_lib.run_config_path(path)):
        if tf.train.latest_checkpoint(model_dir_lib.checkpoint_dir(path)) is None:
            raise ValueError(f"model {path!r} has a {model_dir_lib.RUN_CONFIG_FILE} but no "
                             f"checkpoint under {model_dir_lib.CHECKPOINT_SUBDIR}/.")
        return "model_dir", path
    versions = []
    for entry in tf.io.gfile.listdir(path):
        name = entry.rstrip("/")
        if name.isdigit() and tf.io.gfile.exists(os.path.join(path, name, SAVED_MODEL_FILE)):
            versions.append(int(name))
    if versions:
        # TF Serving serves the numerically highest version ("10" after "9").
        latest = max(versions)
        for entry in tf.io.gfile.listdir(path):
            name = entry.rstrip("/")
            if name.isdigit() and int(name) == latest:
                return "saved_model", os.path.join(path, name)
    raise ValueError(f"model {path!r} holds nothing to load: no {model_dir_lib.RUN_CONFIG_FILE}"
                     f", no {SAVED_MODEL_FILE} and no version subdirectory with one; expected "
                     f"{accepted}.")


def load_invertible_model(path, batch_size=64, image_size=None):
    """An `InvertibleModel` for a model directory, `.keras` file or SavedModel export.

    Args:
        path: see `resolve_model_path`.
        batch_size: examples per call of the underlying model.
        image_size: image height and width to analyse (default: the RunConfig's for Keras
            models, the `encode` signature's for SavedModels; needed when that leaves them
            open).
    """
    kind, resolved = resolve_model_path(path)
    if kind == "saved_model":
        return SavedModelInvertibleModel(resolved, image_size=image_size,
                                         source=f"SavedModel {resolved}",
                                         batch_size=batch_size)
    return KerasInvertibleModel.from_model_path(resolved, batch_size=batch_size,
                                                image_size=image_size)


def _signature_input(signature, name, signature_name, source):
    _, keyword_specs = signature.structured_input_signature
    if name not in keyword_specs:
        raise ValueError(f"{source}: the `{signature_name}` signature must take an input "
                         f"named `{name}`, it takes {', '.join(sorted(keyword_specs))}.")
    return keyword_specs[name]


def _find_run_config(export_dir):
    """The RunConfig an exporter may have written beside or inside the export, else None."""
    # The exporter's own metadata (irevnet_tf.serving) records the run configuration.
    metadata_path = os.path.join(export_dir, "assets.extra", export_lib.METADATA_FILE)
    if tf.io.gfile.exists(metadata_path):
        with tf.io.gfile.GFile(metadata_path) as handle:
            try:
                recorded = json.load(handle).get("run_config")
            except ValueError:
                recorded = None
        if isinstance(recorded, dict):
            try:
                return model_dir_lib.RunConfig.from_json(json.dumps(recorded), metadata_path)
            except ValueError:
                pass  # Provenance only: the export itself works in pixels.
    candidates = [
        os.path.join(export_dir, "assets.extra", model_dir_lib.RUN_CONFIG_FILE),
        os.path.join(export_dir, "assets", model_dir_lib.RUN_CONFIG_FILE),
        os.path.join(export_dir, model_dir_lib.RUN_CONFIG_FILE),
        os.path.join(os.path.dirname(export_dir.rstrip("/")), model_dir_lib.RUN_CONFIG_FILE),
    ]
    for candidate in candidates:
        if tf.io.gfile.exists(candidate):
            try:
                return model_dir_lib.RunConfig.load(candidate)
            except ValueError:
                continue
    return None
