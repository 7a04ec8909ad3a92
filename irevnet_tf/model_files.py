"""Model artifacts: the run configuration, `.keras` files, model directories and restoring them.

This is the one place that reads and writes a trained model, so that serving, conversion and
analysis load models without importing the trainer.

Layout of a model directory (`--model_dir` of trainers/train_imagenet.py):
    run_config.json       RunConfig: named configuration, overrides, data and preprocessing
                          (the trainer writes it first and keeps its flags in `extra`)
    checkpoints/ckpt-N*   tf.train.Checkpoint(model=..., optimizer=..., step=..., ...)
    checkpoints/unreadable/  checkpoints found unreadable on resume, moved aside (never deleted)
    train/, eval/         TensorBoard summaries
    model.keras           the final model (float32) with model.keras.run_config.json

A `.keras` file is the whole model: the model takes pixels and carries its normalisation
(`IRevNet(pixel_mean=..., pixel_std=...)`), so loading, export and analysis need nothing
else. It can stand in for a model directory; its RunConfig, which records where the model
came from (data, recipe, flags), lives beside it as `<file>.run_config.json` (written by
the trainer and by export/convert_release.py) and is optional.

Keras backends: `.keras` files are the interchange format. `save_keras_model` and
`restore_model(<file>.keras)` work on TensorFlow, JAX and PyTorch, and a file written on one
loads on the others with bit-equal weights (tests/backends/test_interchange.py); the
file's machine record names the backend that wrote it (`irevnet_tf.machine`). A model
directory holds `tf.train.Checkpoint`s of the TensorFlow trainer and restores under
`KERAS_BACKEND=tensorflow` only; its model.keras loads anywhere.
"""

import dataclasses
import glob
import json
import os
import re

import tensorflow as tf
from absl import logging

from irevnet_tf import configs
from irevnet_tf import files
from irevnet_tf import machine
from irevnet_tf.data.info import IMAGENET_MEAN, IMAGENET_STD
from irevnet_tf.layers.normalization import PixelNormalization

RUN_CONFIG_FILE = "run_config.json"
CHECKPOINT_SUBDIR = "checkpoints"
CHECKPOINT_PREFIX = "ckpt"
UNREADABLE_SUBDIR = "unreadable"
SIDECAR_SUFFIX = ".run_config.json"

# Fields every run_config.json must hold: a model directory's model is built from them.
REQUIRED_FIELDS = ("config_name", "mean", "std")

__all__ = ["CheckpointMismatchError", "IMAGENET_MEAN", "IMAGENET_STD", "RunConfig",
           "UnreadableCheckpointError", "restore_model", "restore_weights", "save_keras_model"]


class CheckpointMismatchError(ValueError):
    """A checkpoint or model directory does not fit the configuration of this run."""


class UnreadableCheckpointError(ValueError):
    """A directory holds checkpoints, but none of them can be read."""


@dataclasses.dataclass
class RunConfig:
    """What a model directory's model is and what its inputs look like.

    Attributes:
        config_name: a name from `irevnet_tf.config_names()`.
        overrides: keyword arguments applied on top of the named configuration
            (e.g. num_classes, input_shape); JSON-serialisable.
        dataset: the dataset trained on (informational).
        image_size: height and width of the model's input images.
        num_classes: classifier outputs.
        mean, std: per-channel normalisation of pixels in [0, 255] (the dataset's): the
            model built from this RunConfig gets them as `pixel_mean`/`pixel_std`. A
            model restored from a `.keras` file carries its own; there these record it.
        extra: anything else the trainer records (flags, preprocessing details).
    """

    config_name: str
    overrides: dict = dataclasses.field(default_factory=dict)
    dataset: str = ""
    image_size: int = 224
    num_classes: int = 1000
    mean: tuple = None
    std: tuple = None
    extra: dict = dataclasses.field(default_factory=dict)

    def model_kwargs(self):
        """The IRevNet keyword arguments this run config describes, the normalisation
        (`pixel_mean`/`pixel_std` from `mean`/`std`) included."""
        return configs.get_config(self.config_name, **self._model_overrides())

    def build_model(self, **extra_overrides):
        """A freshly initialised IRevNet of this configuration, with its normalisation."""
        return configs.build_irevnet(self.config_name,
                                     **{**self._model_overrides(), **extra_overrides})

    def _model_overrides(self):
        for field in ("mean", "std"):
            if getattr(self, field) is None:
                raise ValueError(f"RunConfig of {self.config_name!r}: `{field}` (the pixel "
                                 "normalisation the model is built with) is not set.")
            if f"pixel_{field}" in self.overrides:
                raise ValueError(f"RunConfig of {self.config_name!r}: give the normalisation "
                                 f"as `{field}`, not as the override `pixel_{field}`.")
        return {**self.overrides, "pixel_mean": list(self.mean), "pixel_std": list(self.std)}

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text, source="run config"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{source}: not valid JSON ({error}).") from None
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a JSON object with the fields "
                             f"{', '.join(REQUIRED_FIELDS)}, got {type(data).__name__}.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown field(s) {', '.join(unknown)}; expected "
                             f"the fields {', '.join(sorted(known))}.")
        for field in REQUIRED_FIELDS:
            if data.get(field) is None:
                raise ValueError(f"{source}: the run configuration lacks the required field "
                                 f"{field!r} (required: {', '.join(REQUIRED_FIELDS)}).")
        for field in ("mean", "std"):
            try:
                PixelNormalization(**{field: data[field]})
            except ValueError:
                raise ValueError(f"{source}: field {field!r} must be one finite number or "
                                 f"one per image channel (std > 0), got {data[field]!r}."
                                 ) from None
            data[field] = tuple(float(v) for v in data[field])
        return cls(**data)

    def save(self, path):
        """Writes the JSON atomically; raises `files.WriteError` naming `path` on failure."""
        files.write_text(path, self.to_json() + "\n", what="the run configuration")

    @classmethod
    def load(cls, path):
        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(f"No run configuration at {path}.")
        with tf.io.gfile.GFile(path, "r") as handle:
            return cls.from_json(handle.read(), source=path)


def run_config_path(model_dir):
    return os.path.join(model_dir, RUN_CONFIG_FILE)


def checkpoint_dir(model_dir):
    return os.path.join(model_dir, CHECKPOINT_SUBDIR)


# --- checkpoints that read --------------------------------------------------------------------

_CHECKPOINT_FILE = re.compile(rf"^{CHECKPOINT_PREFIX}-(\d+)\.(index|data-\d+-of-\d+)$")
_SHARD = re.compile(r"\.data-(\d+)-of-(\d+)$")


def checkpoint_paths(directory):
    """Every checkpoint prefix in `directory` (`<dir>/ckpt-N`), newest (highest N) first.

    Found from the files themselves, not only the `checkpoint` state file, so a checkpoint
    whose index is missing still counts (and is then reported unreadable), and a directory
    holding checkpoint files is never mistaken for an empty one.
    """
    if not tf.io.gfile.isdir(directory):
        return []
    numbers = set()
    for name in tf.io.gfile.listdir(directory):
        match = _CHECKPOINT_FILE.match(name.rstrip("/"))
        if match:
            numbers.add(int(match.group(1)))
    state = _checkpoint_state(directory)
    for path in (state.all_model_checkpoint_paths if state else ()):
        match = re.match(rf"^{CHECKPOINT_PREFIX}-(\d+)$", os.path.basename(path))
        if match:
            numbers.add(int(match.group(1)))
    return [os.path.join(directory, f"{CHECKPOINT_PREFIX}-{n}")
            for n in sorted(numbers, reverse=True)]


def checkpoint_problem(path):
    """Why the checkpoint `path` (a prefix) cannot be read, in a few words; None if it reads.

    Reads every value once (TensorFlow checks each value's CRC32C as it reads), so a
    truncated or damaged data shard, a missing shard or a bad index are all found before a
    restore half-assigns the variables.
    """
    index = path + ".index"
    if not tf.io.gfile.exists(index):
        return f"its index file {os.path.basename(index)} is missing"
    shards = tf.io.gfile.glob(glob.escape(path) + ".data-*-of-*")
    counts = {int(_SHARD.search(shard).group(2)) for shard in shards if _SHARD.search(shard)}
    expected = max(counts) if counts else 1
    present = {int(_SHARD.search(shard).group(1)) for shard in shards if _SHARD.search(shard)}
    missing = sorted(set(range(expected)) - present)
    if missing:
        return (f"its data shard {os.path.basename(path)}.data-{missing[0]:05d}-of-"
                f"{expected:05d} is missing")
    try:
        reader = tf.train.load_checkpoint(path)
        for key in sorted(reader.get_variable_to_shape_map()):
            reader.get_tensor(key)
    except Exception as error:  # pylint: disable=broad-except
        # The reader raises OpErrors, but also IndexError/ValueError on truncated files.
        return f"it does not read ({type(error).__name__}: {files.reason_of(error)})"
    return None


def move_aside(path):
    """Moves the files of checkpoint `path` into `<its directory>/unreadable/` (never deletes);
    returns the new prefix."""
    directory = os.path.dirname(path)
    target_dir = os.path.join(directory, UNREADABLE_SUBDIR)
    tf.io.gfile.makedirs(target_dir)
    name = os.path.basename(path)
    target = os.path.join(target_dir, name)
    suffix = 1
    while tf.io.gfile.glob(glob.escape(target) + ".*"):  # Keep earlier casualties too.
        target = os.path.join(target_dir, f"{name}.{suffix}")
        suffix += 1
    for source in tf.io.gfile.glob(glob.escape(path) + ".*"):
        tf.io.gfile.rename(source, target + source[len(path):])
    return target


def newest_readable_checkpoint(directory, on_unreadable=None):
    """The newest checkpoint in `directory` that reads, or None if it holds none at all.

    Args:
        directory: a checkpoint directory.
        on_unreadable: called as `on_unreadable(path, problem)` for each newer checkpoint
            that does not read (default: a warning naming it).

    Raises:
        UnreadableCheckpointError: `directory` holds completed checkpoints (listed in its
            state file), but none reads.
    """
    paths = checkpoint_paths(directory)
    for path in paths:
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        if path not in _recorded(directory):
            problem += "; the state file never listed it: a save that did not finish"
        if on_unreadable is None:
            logging.warning("Checkpoint %s is unreadable (%s); using an older one.", path,
                            problem)
        else:
            on_unreadable(path, problem)
    # A save that was interrupted (SIGKILL while writing the first checkpoint) leaves files
    # that the state file never listed: nothing was lost, so starting afresh is right. A
    # listed checkpoint that no longer reads was completed once: never start afresh over it.
    if set(paths) & _recorded(directory):
        raise UnreadableCheckpointError(
            f"No checkpoint in {directory} can be read ({len(paths)} found, newest "
            f"{os.path.basename(paths[0])}); nothing was restored. Restore the checkpoint "
            f"files from a copy, or move them away to start afresh.")
    return None


def _checkpoint_state(directory):
    """The parsed `checkpoint` state file, or None when it is missing or does not parse."""
    try:
        return tf.train.get_checkpoint_state(directory)
    except Exception as error:  # pylint: disable=broad-except
        # A half-written state file (text proto) raises a parse error: the files decide then.
        logging.warning("The checkpoint state file in %s does not read (%s); looking at the "
                        "checkpoint files themselves.", directory, files.reason_of(error))
        return None


def _recorded(directory):
    """The checkpoint prefixes the `checkpoint` state file lists (written after each save)."""
    state = _checkpoint_state(directory)
    if state is None:
        return set()
    listed = list(state.all_model_checkpoint_paths) + [state.model_checkpoint_path]
    return {os.path.join(directory, os.path.basename(path)) for path in listed if path}


def remove_unfinished_saves(directory):
    """Removes the `ckpt-N_temp*` directories an interrupted or failed save leaves behind
    (TensorFlow writes shards there and merges them into `ckpt-N.*` only at the end)."""
    removed = []
    for path in tf.io.gfile.glob(os.path.join(glob.escape(directory),
                                              f"{CHECKPOINT_PREFIX}-*_temp*")):
        files.remove_quietly(path)
        removed.append(path)
    return removed


# --- restoring ----------------------------------------------------------------------------

def check_checkpoint_layers(model, checkpoint_path):
    """Refuses a checkpoint whose model has layers (e.g. blocks) that `model` lacks.

    Restoring checks every variable of `model` against the checkpoint, but would silently
    ignore a checkpoint's extra blocks (another, deeper configuration). Every layer of a
    checkpointed IRevNet has values under `model/<layer name>/` (at least its batch-norm
    statistics; TensorFlow files trainable values under the optimizer's path instead
    when that path is shorter), so the names there must all be layers of `model`.
    """
    keys = tf.train.load_checkpoint(checkpoint_path).get_variable_to_shape_map()
    stored = {key.split("/")[1] for key in keys
              if key.startswith("model/") and ".OPTIMIZER_SLOT" not in key}
    known = set(model._trackable_children("checkpoint"))
    unknown = sorted(stored - known)
    if unknown:
        raise CheckpointMismatchError(
            f"Checkpoint {checkpoint_path} holds layers that the model configuration "
            f"{model.name!r} does not have: {', '.join(unknown[:10])}"
            f"{' ...' if len(unknown) > 10 else ''}. It was written for another configuration.")


def restore_checkpoint(checkpoint, path, model=None, description=None, advice=""):
    """Restores the `tf.train.Checkpoint` `checkpoint` from `path`, refusing a mismatch.

    Every object of `checkpoint` must find its values; with `model`, the checkpoint must
    also hold no layers that `model` lacks (see `check_checkpoint_layers`).

    Raises:
        CheckpointMismatchError (a ValueError): "Checkpoint <path> does not fit
            <description>: <details><advice>".
    """
    if model is not None:
        check_checkpoint_layers(model, path)
        description = description or f"the model configuration {model.name!r}"
    try:
        status = checkpoint.restore(path)
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.InvalidArgumentError,
            tf.errors.NotFoundError) as error:
        raise CheckpointMismatchError(
            f"Checkpoint {path} does not fit {description or 'this configuration'}: "
            f"{str(error).strip()[:500]}{advice}") from None
    status.expect_partial()
    return status


def restore_weights(model, checkpoint_path):
    """Restores only the model's variables from a training checkpoint, refusing a mismatch."""
    return restore_checkpoint(tf.train.Checkpoint(model=model), checkpoint_path, model=model)


def restore_model(model_path):
    """Loads `(model, run_config)` from a model directory or a `.keras` file.

    A `.keras` file is the whole model (its normalisation included); its sidecar
    `<file>.run_config.json`, when present, is read for provenance, and without one the
    RunConfig is made from the model. A model directory's model is built from its
    run_config.json (configuration and normalisation) and the newest checkpoint that
    reads is restored (a newer unreadable one is named in a warning). Raises a ValueError
    that names the path when there is no run configuration, one without a required
    field, no readable checkpoint, or a checkpoint whose variables do not fit the
    recorded configuration. `.keras` files load on every Keras backend; a model
    directory's checkpoints under TensorFlow only (a ValueError says so elsewhere).
    """
    if str(model_path).endswith(".keras"):
        import keras  # Deferred: only this branch needs it.

        sidecar = str(model_path) + SIDECAR_SUFFIX
        if not tf.io.gfile.exists(model_path):
            raise FileNotFoundError(f"No .keras file at {model_path}.")
        model = keras.saving.load_model(model_path)
        if tf.io.gfile.exists(sidecar):
            run_config = RunConfig.load(sidecar)
            model = _model_with_recorded_normalisation(model, run_config, model_path)
            run_config = dataclasses.replace(run_config, mean=model.pixel_mean,
                                             std=model.pixel_std)
        else:
            run_config = RunConfig(
                config_name=model.name if model.name in configs.CONFIGS else "irevnet301",
                image_size=model.image_shape[0], num_classes=model.num_classes,
                mean=model.pixel_mean, std=model.pixel_std)
        return model, run_config
    _require_tensorflow_for_checkpoints(model_path)
    path = run_config_path(model_path)
    if not tf.io.gfile.exists(path):
        raise ValueError(f"model_dir {model_path!r} holds no {RUN_CONFIG_FILE}: is it a "
                         "model directory written by trainers/train_imagenet.py?")
    run_config = RunConfig.load(path)
    latest = newest_readable_checkpoint(checkpoint_dir(model_path))
    if latest is None:
        raise ValueError(f"model_dir {model_path!r} holds no checkpoint under "
                         f"{CHECKPOINT_SUBDIR}/.")
    model = run_config.build_model()
    restore_weights(model, latest)
    return model, run_config


def _require_tensorflow_for_checkpoints(model_path):
    """Training checkpoints are TensorFlow's (`tf.train.Checkpoint` tracks TensorFlow
    variables): on another Keras backend, say how to get a file that loads there."""
    import keras  # Deferred, as above.

    backend = keras.backend.backend()
    if backend != "tensorflow":
        final = os.path.join(str(model_path), "model.keras")
        raise ValueError(
            f"model_dir {model_path!r}: training checkpoints restore under "
            f"KERAS_BACKEND=tensorflow only (this process runs {backend}). Load "
            f"{final} (written at the end of training), or restore the directory under "
            "TensorFlow and save it with model_files.save_keras_model: .keras files load "
            "on every backend.")


def _model_with_recorded_normalisation(model, run_config, model_path):
    """`model`, checked against the normalisation its sidecar records.

    A model carries its normalisation; the sidecar only records it. The one exception is a
    `.keras` file written before models carried it (its model is the identity, its
    sidecar holds the dataset's mean/std): that normalisation moves into the model, with
    a warning, so that the file gives the numbers it always gave.
    """
    channels = model.image_shape[-1]

    def values(numbers):
        return [float(v) for v in (list(numbers) * channels if len(numbers) == 1 else numbers)]

    recorded = (values(run_config.mean), values(run_config.std))
    carried = (values(model.pixel_mean), values(model.pixel_std))
    if recorded == carried:
        return model
    if model.normalization.is_identity:
        logging.warning(
            "%s predates models that carry their normalisation; using the mean %s and std "
            "%s its %s records. Save it again to make the .keras file complete.",
            model_path, list(run_config.mean), list(run_config.std), SIDECAR_SUFFIX)
        return model.with_pixel_normalization(run_config.mean, run_config.std)
    raise ValueError(
        f"{model_path}: the model normalises pixels with mean {list(model.pixel_mean)} and std "
        f"{list(model.pixel_std)}, but {model_path}{SIDECAR_SUFFIX} records mean "
        f"{list(run_config.mean)} and std {list(run_config.std)}; the model's are used by "
        "everything, so remove or correct the sidecar.")


# --- saving -------------------------------------------------------------------------------

def save_keras_model(model, run_config, path, what=None):
    """Writes `model` as a `.keras` file at `path` with its `<path>.run_config.json` sidecar,
    both atomically. The sidecar's mean/std are the model's own normalisation. The model is written to a temporary file first; the sidecar lands
    before that file is renamed into place, so a `.keras` file never lacks its sidecar and
    a failed model write leaves the old pair untouched.

    Raises `files.WriteError` naming `what` (default: the file's name) and `path` when a
    write fails; an existing file at `path` is then unchanged.
    """
    import keras  # Deferred: only this function needs it.

    if not str(path).endswith(".keras"):
        raise ValueError(f"save_keras_model: `path` must end with .keras, got {path!r}.")
    what = what or os.path.basename(str(path))
    # The sidecar records the normalisation the model carries (the numbers come from the model).
    run_config = dataclasses.replace(run_config, mean=tuple(model.pixel_mean),
                                     std=tuple(model.pixel_std))
    with files.atomic_path(path, what=what, suffix=".keras") as temporary:
        try:
            keras.saving.save_model(model, temporary)
            # What chose F's kernels here, for a decoder elsewhere to compare with.
            machine.add_to_keras_file(temporary)
        except files.WRITE_ERRORS:
            raise
        except Exception as error:  # Keras may wrap the OS error (e.g. zipfile's).
            cause = error.__cause__ or error.__context__
            if isinstance(cause, files.WRITE_ERRORS):
                raise cause from None
            raise
        run_config.save(str(path) + SIDECAR_SUFFIX)
    return path
