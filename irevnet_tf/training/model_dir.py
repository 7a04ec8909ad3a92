"""Resuming in a model directory: refuse to continue a run with a different model configuration.

The model directory's layout and everything that reads or writes its model artifacts
(RunConfig, checkpoints, `.keras` files) live in `irevnet_tf.model_files`; this module keeps
only what the trainer alone needs.
"""

import tensorflow as tf

from irevnet_tf.model_files import RunConfig, run_config_path

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
