"""The model directory: what a training run records so that export and analysis need nothing else.

Layout of `--model_dir`:
    run_config.json       RunConfig: named configuration, overrides, data and preprocessing
                          (the trainer writes it first and keeps its flags in `extra`)
    checkpoints/ckpt-N*   tf.train.Checkpoint(model=..., optimizer=..., step=..., ...)
    train/, eval/         TensorBoard summaries
    model.keras           the final model (float32) with model.keras.run_config.json

A `.keras` file can stand in for a model directory; its RunConfig then lives beside it
as `<file>.run_config.json` (written by the trainer and by export/convert_release.py).
"""

import dataclasses
import json
import os
import shutil
import tempfile

import tensorflow as tf

from irevnet_tf import configs
from irevnet_tf.data.info import IMAGENET_MEAN, IMAGENET_STD

RUN_CONFIG_FILE = "run_config.json"
CHECKPOINT_SUBDIR = "checkpoints"

# Per-channel normalisation of pixels in [0, 255]: model input = (pixels - mean) / std.
__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "RunConfig", "restore_model", "restore_weights"]


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
        mean, std: per-channel normalisation of pixels in [0, 255].
        extra: anything else the trainer records (flags, preprocessing details).
    """

    config_name: str
    overrides: dict = dataclasses.field(default_factory=dict)
    dataset: str = ""
    image_size: int = 224
    num_classes: int = 1000
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    extra: dict = dataclasses.field(default_factory=dict)

    def model_kwargs(self):
        """The IRevNet keyword arguments this run config describes."""
        return configs.get_config(self.config_name, **self.overrides)

    def build_model(self, **extra_overrides):
        """A freshly initialised IRevNet of this configuration."""
        return configs.build_irevnet(self.config_name, **{**self.overrides, **extra_overrides})

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text, source="run config"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{source}: not valid JSON ({error}).") from None
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown or "config_name" not in data:
            raise ValueError(f"{source}: expected the fields {sorted(known)} (config_name "
                             f"required), got unknown {unknown}.")
        data["mean"] = tuple(data.get("mean", IMAGENET_MEAN))
        data["std"] = tuple(data.get("std", IMAGENET_STD))
        return cls(**data)

    def save(self, path):
        """Writes the JSON atomically (temporary file, then rename)."""
        atomic_write_text(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path):
        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(f"No run configuration at {path}.")
        with tf.io.gfile.GFile(path, "r") as handle:
            return cls.from_json(handle.read(), source=path)


def atomic_write_text(path, text):
    """Writes `text` to `path` so that readers see the old file or the new one, never half."""
    directory = os.path.dirname(os.path.abspath(path))
    if "://" in path:  # Remote file systems (gs://): gfile's rename is the best available.
        temporary = path + ".tmp"
        with tf.io.gfile.GFile(temporary, "w") as handle:
            handle.write(text)
        tf.io.gfile.rename(temporary, path, overwrite=True)
        return
    os.makedirs(directory, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        # mkstemp creates 0600 files; give the usual permissions (umask applies).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def run_config_path(model_dir):
    return os.path.join(model_dir, RUN_CONFIG_FILE)


def checkpoint_dir(model_dir):
    return os.path.join(model_dir, CHECKPOINT_SUBDIR)


def restore_model(model_path):
    """Loads `(model, run_config)` from a model directory or a `.keras` file.

    Raises a ValueError that names the path when there is no run configuration, no
    checkpoint, or a checkpoint whose variables do not fit the recorded configuration.
    """
    if str(model_path).endswith(".keras"):
        import keras  # Deferred: only this branch needs it.

        sidecar = str(model_path) + ".run_config.json"
        if not tf.io.gfile.exists(model_path):
            raise FileNotFoundError(f"No .keras file at {model_path}.")
        model = keras.saving.load_model(model_path)
        if tf.io.gfile.exists(sidecar):
            run_config = RunConfig.load(sidecar)
        else:
            run_config = RunConfig(
                config_name=model.name if model.name in configs.CONFIGS else "irevnet301",
                image_size=model.image_shape[0], num_classes=model.num_classes)
        return model, run_config
    path = run_config_path(model_path)
    if not tf.io.gfile.exists(path):
        raise ValueError(f"model_dir {model_path!r} holds no {RUN_CONFIG_FILE}: is it a "
                         "model directory written by trainers/train_imagenet.py?")
    run_config = RunConfig.load(path)
    latest = tf.train.latest_checkpoint(checkpoint_dir(model_path))
    if latest is None:
        raise ValueError(f"model_dir {model_path!r} holds no checkpoint under "
                         f"{CHECKPOINT_SUBDIR}/.")
    model = run_config.build_model()
    restore_weights(model, latest)
    return model, run_config


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
        raise ValueError(
            f"Checkpoint {checkpoint_path} holds layers that the model configuration "
            f"{model.name!r} does not have: {', '.join(unknown[:10])}"
            f"{' ...' if len(unknown) > 10 else ''}. It was written for another configuration.")


def restore_weights(model, checkpoint_path):
    """Restores only the model's variables from a training checkpoint, refusing a mismatch."""
    check_checkpoint_layers(model, checkpoint_path)
    checkpoint = tf.train.Checkpoint(model=model)
    try:
        status = checkpoint.restore(checkpoint_path)
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as error:
        raise ValueError(
            f"Checkpoint {checkpoint_path} does not fit the model configuration "
            f"{model.name!r}: {str(error)[:500]}") from None
    status.expect_partial()
    return status


# Fields of a RunConfig that define the model and its inputs: a restarted run must not change
# them. `reversible` only changes how gradients are computed, so it may differ.
_MODEL_FIELDS = ("config_name", "overrides", "dataset", "image_size", "num_classes", "mean", "std")
_FREE_OVERRIDES = ("reversible",)


def _comparable(run_config, field):
    value = getattr(run_config, field)
    if field == "overrides":
        return {k: list(v) if isinstance(v, (list, tuple)) else v
                for k, v in value.items() if k not in _FREE_OVERRIDES}
    if field in ("mean", "std"):
        return [round(float(v), 6) for v in value]
    return value


def run_config_differences(recorded, requested, extra_keys=()):
    """`[(field, recorded value, requested value)]` where two RunConfigs describe different
    models (plus the `extra["flags"]` entries named in `extra_keys`)."""
    differences = []
    for field in _MODEL_FIELDS:
        old, new = _comparable(recorded, field), _comparable(requested, field)
        if old != new:
            differences.append((field, old, new))
    old_flags = recorded.extra.get("flags", {})
    new_flags = requested.extra.get("flags", {})
    for key in extra_keys:
        if key in old_flags and old_flags.get(key) != new_flags.get(key):
            differences.append((f"--{key}", old_flags.get(key), new_flags.get(key)))
    return differences


def check_same_run(model_dir, requested, extra_keys=()):
    """Refuses to continue a run in `model_dir` with a different model configuration.

    Returns the recorded RunConfig (None for a new directory). Raises ValueError listing
    every difference.
    """
    path = run_config_path(model_dir)
    if not tf.io.gfile.exists(path):
        return None
    recorded = RunConfig.load(path)
    differences = run_config_differences(recorded, requested, extra_keys)
    if differences:
        listed = "; ".join(f"{name}: recorded {old!r}, now {new!r}"
                           for name, old, new in differences)
        raise ValueError(
            f"model_dir {model_dir!r} holds a run with a different configuration ({listed}). "
            "Resume it with its original flags, or choose a new --model_dir.")
    return recorded


def save_keras_model(model, run_config, path):
    """Writes `model` as a `.keras` file at `path` with its `<path>.run_config.json` sidecar,
    both atomically (the sidecar first, so a `.keras` file never lacks it)."""
    import keras  # Deferred: only this function needs it.

    if not str(path).endswith(".keras"):
        raise ValueError(f"save_keras_model: `path` must end with .keras, got {path!r}.")
    run_config.save(str(path) + ".run_config.json")
    local_directory = tempfile.mkdtemp(prefix="irevnet-keras-")
    try:
        local_file = os.path.join(local_directory, "model.keras")
        keras.saving.save_model(model, local_file)
        if "://" in str(path):
            temporary = str(path) + ".tmp"
            tf.io.gfile.copy(local_file, temporary, overwrite=True)
            tf.io.gfile.rename(temporary, path, overwrite=True)
        else:
            directory = os.path.dirname(os.path.abspath(path))
            os.makedirs(directory, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-",
                                                     suffix=".keras")
            os.close(descriptor)
            try:
                shutil.copyfile(local_file, temporary)
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(temporary, 0o666 & ~umask)  # mkstemp made it 0600.
                os.replace(temporary, path)
            except BaseException:
                if os.path.exists(temporary):
                    os.remove(temporary)
                raise
    finally:
        shutil.rmtree(local_directory, ignore_errors=True)
    return path
