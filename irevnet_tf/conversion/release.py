"""Converts the authors' released PyTorch i-RevNet weights into an IRevNet and a `.keras` file.

The release (i-RevNet-301 on ImageNet, 74.018 % top-1) is a `torch.save` file whose
`state_dict` names every tensor after the PyTorch modules, e.g.
`module.stack.3.bottleneck_block.2.weight` (the `module.` prefix comes from
`DataParallel`). This module maps those names onto an IRevNet of the same naming scheme:

- `stack.K.bottleneck_block.I` -> `model.stack[K].bottleneck`, with I = 0 preact_bn,
  2 conv1, 3 bn1, 5 conv2, 7 bn2, 9 conv3 when the block has a pre-activation (every
  block but the first) and I = 0 conv1, 1 bn1, 3 conv2, 5 bn2, 7 conv3 otherwise (the
  ReLUs and the dropout between them hold no weights but keep their indices);
- `bn1` -> `model.head_bn`, `linear` -> `model.classifier`;
- conv weights OIHW -> Keras kernels HWIO; dense weights (out, in) -> kernels (in, out);
  batch-norm weight/bias/running_mean/running_var -> gamma/beta/moving_mean/
  moving_variance; `num_batches_tracked` is read past (Keras keeps no such counter).

NCHW and NHWC order the channels alike here because psi orders them as
`tf.nn.space_to_depth` does, so no channel permutation is needed.

Nothing is assigned unless every entry is used, every model weight receives a value and
every shape fits; otherwise `ReleaseConversionError` names all offenders.

Example:
>>> summary = convert_release("i-revnet-301.pth.tar", "irevnet301.keras")
>>> model, run_config = restore_model("irevnet301.keras")   # irevnet_tf.model_files
"""

import collections
import collections.abc
import dataclasses
import os
import re

import numpy as np

from irevnet_tf import configs
from irevnet_tf.conversion.torch_checkpoint import (CheckpointError, IgnoredObject,
                                                    TensorRecord, TorchCheckpointReader)
from irevnet_tf.model import IRevNet
from irevnet_tf import model_files as model_dir

# The release's batch norms: PyTorch eps 1e-5, momentum 0.1 in the blocks and 0.9 in the
# head (Keras momentum = 1 - PyTorch momentum). They equal IRevNet's defaults today; they
# are passed explicitly so that a change of defaults can never make converted weights
# compute something other than the release (epsilon matters: Keras' 1e-3 would shift
# every normalisation by the released running variances).
RELEASE_BATCH_NORM = dict(bn_epsilon=1e-5, bn_momentum=0.9, head_bn_momentum=0.1)

_DATA_PARALLEL_PREFIX = "module."
_BLOCK_ENTRY = re.compile(r"^stack\.(\d+)\.bottleneck_block\.(\d+)\.(\w+)$")
# Sequential indices of the layers with weights inside the release's bottleneck.
_PREACTIVATION_INDICES = (("preact_bn", 0), ("conv1", 2), ("bn1", 3), ("conv2", 5),
                          ("bn2", 7), ("conv3", 9))
_FIRST_BLOCK_INDICES = (("conv1", 0), ("bn1", 1), ("conv2", 3), ("bn2", 5), ("conv3", 7))
_BATCH_NORM_FIELDS = (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                      ("running_var", "moving_variance"))
_IGNORED_FIELD = "num_batches_tracked"
# How many names an architecture-mismatch message lists per kind before summarising.
_MISMATCH_LIST_LIMIT = 10


class ReleaseConversionError(ValueError):
    """The checkpoint does not fit the model; nothing was assigned or written.

    Attributes (all names are the checkpoint's, without `module.`; for `missing_variables`
    the model's variable paths):
        unused: checkpoint entries the model has no place for.
        missing: entries the model needs that the checkpoint lacks.
        wrong_shape: `(name, checkpoint_shape, expected_shape)`, both in PyTorch layout.
        wrong_dtype: `(name, checkpoint_dtype)` for non-floating weights.
        missing_variables: model weights the release's naming scheme does not reach.
    """

    def __init__(self, message, unused=(), missing=(), wrong_shape=(), wrong_dtype=(),
                 missing_variables=()):
        super().__init__(message)
        self.unused = list(unused)
        self.missing = list(missing)
        self.wrong_shape = list(wrong_shape)
        self.wrong_dtype = list(wrong_dtype)
        self.missing_variables = list(missing_variables)


@dataclasses.dataclass
class ConversionSummary:
    """What a conversion did.

    Attributes:
        entries_mapped: state-dict entries assigned to model variables.
        entries_ignored: `num_batches_tracked` counters read past.
        trainable_parameters: trainable parameters of the model (125,120,356 for irevnet301).
        total_parameters: including the batch norms' moving statistics.
        output: the `.keras` file written (None for `load_release_weights`).
        run_config_path: its RunConfig sidecar.
        ignored_globals: pickled globals the reader did not resolve (outside the weights).
    """

    entries_mapped: int
    entries_ignored: int
    trainable_parameters: int
    total_parameters: int
    output: str = None
    run_config_path: str = None
    ignored_globals: tuple = ()


@dataclasses.dataclass
class _Target:
    """One checkpoint entry and the model variable it becomes."""

    name: str
    variable: object
    layout: str  # "conv" (OIHW -> HWIO), "dense" ((out, in) -> (in, out)) or "vector"

    @property
    def checkpoint_shape(self):
        """The shape the entry must have in the checkpoint (PyTorch layout)."""
        shape = tuple(int(d) for d in self.variable.shape)
        if self.layout == "conv":
            height, width, inputs, outputs = shape
            return (outputs, inputs, height, width)
        if self.layout == "dense":
            return shape[::-1]
        return shape

    def to_keras(self, array):
        if self.layout == "conv":
            array = np.transpose(array, (2, 3, 1, 0))
        elif self.layout == "dense":
            array = array.T
        return np.ascontiguousarray(array, dtype=self.variable.dtype)


# --- reading ---------------------------------------------------------------------------


def _is_tensor(value):
    return isinstance(value, (TensorRecord, np.ndarray)) or (
        hasattr(value, "shape") and hasattr(value, "dtype") and hasattr(value, "numpy"))


def extract_state_dict(checkpoint, source="checkpoint"):
    """The state_dict of a loaded checkpoint, with any `module.` prefix removed.

    Accepts `{"state_dict": {...}, ...}` (the release's layout) or a bare state_dict.
    Values may be TensorRecords, numpy arrays or torch tensors.
    """
    if isinstance(checkpoint, IgnoredObject):
        raise ReleaseConversionError(
            f"{source} holds a pickled {checkpoint.global_name} object (torch.save(model)), "
            "not a state_dict; it was not unpickled (that would run code from the file). "
            "Save torch.save({'state_dict': model.state_dict()}, path) instead.")
    if not isinstance(checkpoint, collections.abc.Mapping):
        raise ReleaseConversionError(
            f"{source} holds a {type(checkpoint).__name__}, not a dict: expected a "
            "state_dict or a dict with a 'state_dict' entry (torch.save(model.state_dict()) "
            "or the release's {'state_dict': ..., ...}).")
    state_dict = checkpoint
    nested = checkpoint.get("state_dict")
    if isinstance(nested, collections.abc.Mapping):
        state_dict = nested
    elif not checkpoint or not all(_is_tensor(value) for value in checkpoint.values()):
        keys = [str(key) for key in list(checkpoint)[:20]]
        raise ReleaseConversionError(
            f"{source} has no 'state_dict' entry and is not a state_dict itself (top-level "
            f"keys: {keys}).")
    not_tensors = sorted(str(name) for name, value in state_dict.items() if not _is_tensor(value))
    if not_tensors:
        kinds = sorted({type(state_dict[name]).__name__ for name in not_tensors})
        raise ReleaseConversionError(
            f"{source}: state_dict entries {not_tensors[:20]} are not tensors ({kinds[:5]}).")
    stripped = collections.OrderedDict()
    for name, value in state_dict.items():
        key = str(name)
        if key.startswith(_DATA_PARALLEL_PREFIX):
            key = key[len(_DATA_PARALLEL_PREFIX):]
        if key in stripped:
            raise ReleaseConversionError(
                f"{source}: entry {name!r} and another one are both {key!r} once the "
                f"DataParallel prefix {_DATA_PARALLEL_PREFIX!r} is removed.")
        stripped[key] = value
    return stripped


def read_release_checkpoint(path, reader="builtin"):
    """Reads the state_dict of a release checkpoint into numpy arrays (names without `module.`).

    Args:
        path: a `torch.save` file (zip or legacy format).
        reader: "builtin" (no torch needed, runs no pickled code) or "torch"
            (`torch.load(..., weights_only=True)`, if torch is installed).

    Returns:
        `(state_dict, ignored_globals)`: an OrderedDict name -> numpy array and the
        pickled globals outside the weights that were not resolved.
    """
    path = os.fspath(path)
    source = f"checkpoint {path!r}"
    if reader == "builtin":
        with TorchCheckpointReader(path) as checkpoint_reader:
            state_dict = extract_state_dict(checkpoint_reader.load(), source=source)
            arrays = collections.OrderedDict(
                (name, value.numpy()) for name, value in state_dict.items())
            return arrays, tuple(sorted(checkpoint_reader.ignored_globals))
    if reader == "torch":
        try:
            import torch  # Optional: only this alternative reader needs it.
        except ImportError:
            raise ImportError("read_release_checkpoint: reader='torch' needs torch installed; "
                              "reader='builtin' needs nothing.") from None
        if not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint: no file at {path!r}.")
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises many kinds; all mean "cannot read".
            raise CheckpointError(f"checkpoint {path!r}: torch.load failed: {error}") from None
        state_dict = extract_state_dict(checkpoint, source=source)
        arrays = collections.OrderedDict()
        for name, value in state_dict.items():
            tensor = value.detach().cpu()
            if tensor.dtype == torch.bfloat16:
                tensor = tensor.float()
            arrays[name] = tensor.numpy()
        return arrays, ()
    raise ValueError(f"read_release_checkpoint: `reader` must be 'builtin' or 'torch', "
                     f"got {reader!r}.")


# --- the mapping ------------------------------------------------------------------------


def release_targets(model):
    """Every checkpoint name the release's scheme gives `model`'s weights, with its variable.

    Works for any IRevNet built from the same layers (stack of IRevBlocks with
    Bottlenecks, `head_bn` and `classifier` when `include_top`).
    """
    if not isinstance(model, IRevNet):
        raise TypeError(f"release conversion: `model` must be an irevnet_tf.IRevNet, got "
                        f"{type(model).__name__}.")
    targets = []

    def batch_norm(prefix, layer):
        variables = {"gamma": layer.gamma, "beta": layer.beta,
                     "moving_mean": layer.moving_mean,
                     "moving_variance": layer.moving_variance}
        for field, attribute in _BATCH_NORM_FIELDS:
            if variables[attribute] is None:
                raise ValueError(f"release conversion: {layer.name} has no {attribute}; the "
                                 "release's batch norms are affine (center and scale).")
            targets.append(_Target(f"{prefix}.{field}", variables[attribute], "vector"))

    for index, block in enumerate(model.stack):
        bottleneck = block.bottleneck
        scheme = (_PREACTIVATION_INDICES if bottleneck.preact_bn is not None
                  else _FIRST_BLOCK_INDICES)
        for attribute, position in scheme:
            layer = getattr(bottleneck, attribute)
            prefix = f"stack.{index}.bottleneck_block.{position}"
            if attribute.startswith("conv"):
                targets.append(_Target(f"{prefix}.weight", layer.kernel, "conv"))
            else:
                batch_norm(prefix, layer)
    if model.include_top:
        batch_norm("bn1", model.head_bn)
        targets.append(_Target("linear.weight", model.classifier.kernel, "dense"))
        targets.append(_Target("linear.bias", model.classifier.bias, "vector"))
    return targets


def _describe_widths(widths):
    runs = []
    for width in widths:
        if runs and runs[-1][0] == width:
            runs[-1][1] += 1
        else:
            runs.append([width, 1])
    return ", ".join(f"{width} x{count}" for width, count in runs)


def describe_state_dict(state_dict):
    """A one-line summary of the i-RevNet a state_dict holds (for error messages)."""
    last_conv = {}
    for name, value in state_dict.items():
        match = _BLOCK_ENTRY.match(name)
        if match and match.group(3) == "weight" and len(value.shape) == 4:
            block, index = int(match.group(1)), int(match.group(2))
            if index >= last_conv.get(block, (-1, 0))[0]:
                last_conv[block] = (index, int(value.shape[0]))
    widths = [last_conv[block][1] for block in sorted(last_conv)]
    text = f"{len(widths)} blocks (widths {_describe_widths(widths) or 'none'})"
    if "bn1.weight" in state_dict:
        text += f", head {tuple(state_dict['bn1.weight'].shape)[0]}"
    if "linear.weight" in state_dict and len(state_dict["linear.weight"].shape) == 2:
        text += f" -> {tuple(state_dict['linear.weight'].shape)[0]} classes"
    return text


def describe_model(model):
    """The same summary for an IRevNet."""
    widths = [block.out_channels for block in model.stack]
    text = f"{len(widths)} blocks (widths {_describe_widths(widths)})"
    if model.include_top:
        text += f", head {2 * model.channels[-1]} -> {model.num_classes} classes"
    return text


def _format_names(names, limit=None):
    names = list(names)
    if limit is not None and len(names) > limit:
        return f"[{', '.join(names[:limit])}, ... and {len(names) - limit} more]"
    return f"[{', '.join(names)}]"


def plan_conversion(model, state_dict, source="checkpoint"):
    """Matches `state_dict` (names without `module.`) against `model`; assigns nothing.

    Returns:
        `(targets, ignored)`: the `_Target`s, all present with fitting shapes, and the
        names of the `num_batches_tracked` entries read past.

    Raises:
        ReleaseConversionError: naming every unused, missing, wrongly shaped or
            non-floating entry and every model weight the scheme does not reach.
    """
    targets = release_targets(model)
    expected = {target.name for target in targets}
    ignorable = {name.rsplit(".", 1)[0] + "." + _IGNORED_FIELD
                 for name in expected if name.endswith(".running_mean")}
    ignored = [name for name in state_dict if name in ignorable]
    unused = [name for name in state_dict if name not in expected and name not in ignorable]
    missing = [target.name for target in targets if target.name not in state_dict]
    wrong_shape, wrong_dtype = [], []
    for target in targets:
        if target.name not in state_dict:
            continue
        value = state_dict[target.name]
        shape = tuple(int(d) for d in value.shape)
        if shape != target.checkpoint_shape:
            wrong_shape.append((target.name, shape, target.checkpoint_shape))
        dtype = str(value.dtype).replace("torch.", "")
        if not (dtype.startswith("float") or dtype == "bfloat16"):
            wrong_dtype.append((target.name, dtype))
    reached = {id(target.variable) for target in targets}
    missing_variables = [variable.path for variable in model.weights
                         if id(variable) not in reached]

    if not (unused or missing or wrong_shape or wrong_dtype or missing_variables):
        return targets, ignored

    has_blocks = any(_BLOCK_ENTRY.match(name) for name in state_dict)
    checkpoint_summary = describe_state_dict(state_dict)
    model_summary = describe_model(model)
    details = dict(unused=unused, missing=missing, wrong_shape=wrong_shape,
                   wrong_dtype=wrong_dtype, missing_variables=missing_variables)
    if not has_blocks:
        raise ReleaseConversionError(
            f"{source} does not hold an i-RevNet state_dict: none of its {len(state_dict)} "
            "entries is named like the release's blocks ('stack.K.bottleneck_block.I...'); "
            f"its first entries are {_format_names(list(state_dict)[:8])}. Nothing was "
            "written.", **details)
    # Another configuration (another depth, width or class count): a summary says more
    # than hundreds of names; the full lists stay on the exception.
    other_architecture = checkpoint_summary != model_summary
    limit = _MISMATCH_LIST_LIMIT if other_architecture else None
    parts = []
    if unused:
        parts.append(f"unused: {_format_names(unused, limit)}")
    if missing:
        parts.append(f"missing: {_format_names(missing, limit)}")
    if wrong_shape:
        shown = wrong_shape if limit is None else wrong_shape[:limit]
        text = ", ".join(f"{name} (checkpoint {got} vs model {want})"
                         for name, got, want in shown)
        if len(shown) < len(wrong_shape):
            text += f", ... and {len(wrong_shape) - len(shown)} more"
        parts.append(f"wrong shape: {text}")
    if wrong_dtype:
        parts.append("wrong dtype (weights must be floating point): " + ", ".join(
            f"{name} ({dtype})" for name, dtype in wrong_dtype))
    if missing_variables:
        parts.append("model weights outside the release's naming scheme: "
                     f"{_format_names(missing_variables)}")
    lead = (f"{source} holds another i-RevNet configuration than model {model.name!r}: "
            f"checkpoint {checkpoint_summary}; model {model_summary}. Pick the matching "
            "configuration (e.g. --config). "
            if other_architecture else
            f"{source} does not fit model {model.name!r} ({model_summary}): ")
    raise ReleaseConversionError(lead + "; ".join(parts) + ". Nothing was written.", **details)


def _as_array(value):
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach"):  # A torch tensor.
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
    return np.asarray(value.numpy())


def load_release_weights(model, state_dict, source="checkpoint"):
    """Assigns a release state_dict (names with or without `module.`) to `model`.

    Everything is checked first (`plan_conversion`); a mismatch assigns nothing.

    Returns:
        A ConversionSummary (without output paths).
    """
    if any(str(name).startswith(_DATA_PARALLEL_PREFIX) for name in state_dict):
        state_dict = extract_state_dict(state_dict, source=source)
    targets, ignored = plan_conversion(model, state_dict, source=source)
    for target in targets:
        target.variable.assign(target.to_keras(_as_array(state_dict[target.name])))
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    total = sum(int(np.prod(v.shape)) for v in model.weights)
    return ConversionSummary(entries_mapped=len(targets), entries_ignored=len(ignored),
                             trainable_parameters=trainable, total_parameters=total)


# --- building and writing ---------------------------------------------------------------


def build_release_model(config_name="irevnet301", **overrides):
    """An IRevNet of `config_name` that computes what the release computes.

    The release's batch-norm settings (RELEASE_BATCH_NORM) are fixed: overriding them
    would make converted weights compute something else, so that is an error.
    """
    conflicting = sorted(key for key, value in overrides.items()
                         if key in RELEASE_BATCH_NORM and value != RELEASE_BATCH_NORM[key])
    if conflicting:
        raise ValueError(
            f"build_release_model: {', '.join(conflicting)} must keep the release's values "
            f"{ {key: RELEASE_BATCH_NORM[key] for key in conflicting} } for released weights "
            "to compute what the release computes.")
    return configs.build_irevnet(config_name, **{**overrides, **RELEASE_BATCH_NORM})


def _check_output_path(output_path, overwrite):
    output_path = os.fspath(output_path)
    if not output_path.endswith(".keras"):
        raise ValueError(f"convert_release: `output` must be a path ending in '.keras' (Keras' "
                         f"model file), got {output_path!r}.")
    if os.path.isdir(output_path):
        raise ValueError(f"convert_release: `output` {output_path!r} is a directory.")
    if os.path.exists(output_path) and not overwrite:
        raise FileExistsError(f"convert_release: {output_path!r} exists; pass overwrite=True "
                              "(--overwrite) to replace it.")
    return output_path


def _json_ready(value):
    if isinstance(value, (tuple, list)):
        return [_json_ready(item) for item in value]
    return value


def convert_release(checkpoint_path, output_path, config_name="irevnet301", overrides=None,
                    overwrite=False, reader="builtin", dataset="imagenet2012",
                    mean=model_dir.IMAGENET_MEAN, std=model_dir.IMAGENET_STD):
    """Converts a release checkpoint into `output_path` (.keras) and its RunConfig sidecar.

    Reads and checks the checkpoint, builds `build_release_model(config_name,
    **overrides, pixel_mean=mean, pixel_std=std)` (the model takes pixels in [0, 255] and
    carries the release's normalisation), assigns the weights and writes `output_path` and
    `output_path + ".run_config.json"` atomically (temporary files in the same
    directory, then renames), so `model_dir.restore_model(output_path)` gives the model
    back. On any error nothing is written.

    Args:
        checkpoint_path: the release's `torch.save` file.
        output_path: the `.keras` file to write.
        config_name: a name from `irevnet_tf.config_names()`.
        overrides: IRevNet keyword arguments on top of the configuration.
        overwrite: replace an existing `output_path`.
        reader: "builtin" (torch-free) or "torch" (see `read_release_checkpoint`).
        dataset: recorded in the RunConfig.
        mean, std: the release's normalisation of pixels in [0, 255] (ImageNet's), written
            into the model (`pixel_mean`/`pixel_std`) and recorded in the RunConfig.

    Returns:
        ConversionSummary.
    """
    output_path = _check_output_path(output_path, overwrite)
    if reader not in ("builtin", "torch"):
        raise ValueError(f"convert_release: `reader` must be 'builtin' or 'torch', got "
                         f"{reader!r}.")
    overrides = dict(overrides or {})
    # The normalisation is `mean`/`std`; given as overrides too, those win.
    mean = tuple(float(v) for v in overrides.pop("pixel_mean", mean))
    std = tuple(float(v) for v in overrides.pop("pixel_std", std))
    normalisation = {"pixel_mean": list(mean), "pixel_std": list(std)}
    # Unknown names and a bad normalisation fail before any reading.
    configs.get_config(config_name, **overrides)
    IRevNet.check_pixel_normalization(mean, std, configs.get_config(
        config_name, **overrides)["input_shape"][-1])
    source = f"checkpoint {os.fspath(checkpoint_path)!r}"
    if reader == "builtin":
        # Values are read lazily: a checkpoint that does not fit is refused after reading
        # only its pickle, and only the entries the model uses are ever read.
        with TorchCheckpointReader(checkpoint_path) as checkpoint_reader:
            state_dict = extract_state_dict(checkpoint_reader.load(), source=source)
            ignored_globals = tuple(sorted(checkpoint_reader.ignored_globals))
            model = build_release_model(config_name, **overrides, **normalisation)
            summary = load_release_weights(model, state_dict, source=source)
    else:
        state_dict, ignored_globals = read_release_checkpoint(checkpoint_path, reader=reader)
        model = build_release_model(config_name, **overrides, **normalisation)
        summary = load_release_weights(model, state_dict, source=source)
    del state_dict

    run_config = model_dir.RunConfig(
        config_name=config_name,
        overrides={key: _json_ready(value) for key, value in
                   {**overrides, **RELEASE_BATCH_NORM}.items()},
        dataset=dataset, image_size=int(model.image_shape[0]),
        num_classes=int(model.num_classes), mean=tuple(mean), std=tuple(std),
        extra={"converted_from": os.path.basename(os.fspath(checkpoint_path)),
               "converter": "irevnet_tf.conversion.release",
               "release_evaluation": "resize 256, centre crop 224"})
    sidecar = output_path + model_dir.SIDECAR_SUFFIX
    # Atomically, the sidecar landing first: whoever sees the new .keras file also sees its
    # RunConfig; a failed write names the file and leaves any earlier one as it was.
    model_dir.save_keras_model(model, run_config, output_path, what="the converted model")
    summary.output = output_path
    summary.run_config_path = sidecar
    summary.ignored_globals = ignored_globals
    return summary
