"""Export an IRevNet as a versioned SavedModel for TensorFlow Serving, atomically.

TF Serving watches `<export_dir>/` and loads each child directory whose name is an integer
as a version. An export is written whole into a hidden staging directory inside
`export_dir` (a name TF Serving ignores) and renamed into `<export_dir>/<version>/` only
once it is complete, so a server never sees half an export and an interrupted or failed
export leaves no version directory behind.

Layout of one version:
    saved_model.pb, variables/                     the model and its signatures
    assets.extra/tf_serving_warmup_requests        one warm-up request per signature
    assets.extra/irevnet_tf_export.json            run configuration and signature summary
"""

import dataclasses
import json
import os

import tensorflow as tf
from absl import logging

from irevnet_tf import files
from irevnet_tf import machine
from irevnet_tf.serving import signatures as signatures_lib
from irevnet_tf.serving import warmup as warmup_lib
from irevnet_tf import model_files as model_dir_lib
from irevnet_tf import validation

METADATA_FILE = "irevnet_tf_export.json"
STAGING_PREFIX = ".tmp-export-"
DEFAULT_MODEL_NAME = "irevnet"
NO_WARMUP_MESSAGE = ("export: written without TF Serving warm-up requests "
                     "(assets.extra/tf_serving_warmup_requests): tensorflow-serving-api is not "
                     "installed (pip install 'irevnet_tf[serving]'); TF Serving then "
                     "initialises on the first request instead.")


def existing_versions(export_dir):
    """The integer version directories under `export_dir`, sorted (empty if it does not exist)."""
    if not tf.io.gfile.isdir(export_dir):
        return []
    versions = []
    for name in tf.io.gfile.listdir(export_dir):
        name = name.rstrip("/")
        if name.isdigit() and tf.io.gfile.isdir(os.path.join(export_dir, name)):
            versions.append(int(name))
    return sorted(versions)


def resolve_version(export_dir, version=None, overwrite=False):
    """The version to write: `version`, or one past the highest existing one (1 if none).

    Raises ValueError for a version that is not a positive integer and FileExistsError
    for an existing one unless `overwrite`.
    """
    versions = existing_versions(export_dir)
    if version is None:
        return (versions[-1] + 1) if versions else 1
    validation.check_int(version, "export: `version`", 1, what="a positive integer",
                         hint=" (TF Serving's version directories)")
    if version in versions and not overwrite:
        raise FileExistsError(
            f"export: version {version} already exists at "
            f"{os.path.join(export_dir, str(version))}; choose another --version, leave it "
            "out for the next free one, or pass --overwrite to replace it.")
    return version


def _resolve_warmup(warmup):
    """`warmup` as True or False: None means "when tensorflow-serving-api is installed",
    and its absence is said in one line; True demands the package (ImportError without it).
    Decided before anything is written."""
    if warmup is None:
        try:
            warmup_lib.require_serving_api()
        except ImportError:
            logging.warning(NO_WARMUP_MESSAGE)
            return False
        return True
    if warmup:
        warmup_lib.require_serving_api()
    return bool(warmup)


def export_saved_model(model, run_config, export_dir, version=None, overwrite=False,
                       warmup=None, model_name=DEFAULT_MODEL_NAME,
                       crop_fraction=signatures_lib.DEFAULT_CROP_FRACTION,
                       top_k=signatures_lib.DEFAULT_TOP_K, precision=None,
                       inference_chunk=1):
    """Writes `model` with its serving signatures to `<export_dir>/<version>/`; returns that path.

    Args:
        model: the IRevNet, with its trained weights.
        run_config: its `RunConfig` (image size; recorded in the export's metadata). The
            normalisation is the model's own.
        export_dir: the directory TF Serving watches (created if missing).
        version: positive integer; default one past the highest existing version.
        overwrite: replace an existing version instead of refusing it.
        warmup: write `assets.extra/tf_serving_warmup_requests`: None (default) when
            tensorflow-serving-api is installed (without it the export is written without
            them, and a warning line says so), True always (an ImportError without the
            package, before anything is written), False never.
        model_name: the name the warm-up requests address (TF Serving's MODEL_NAME).
        crop_fraction, top_k: see `ServingModule`.
        precision: the dtype policy the export computes F and the head in: "float32",
            "mixed_bfloat16" (AMX CPUs, TPUs) or "mixed_float16"; default the model's.
            Any of them is exact: `decode(encode(x))` gives x's grid points back.
        inference_chunk: images per call of the model inside the signatures (see
            `IRevNet`'s argument). The default 1 makes every image's Phi independent of
            the batch it arrives in, so that TF Serving's request batching, or a client
            decoding one image of an encoded batch, cannot move a grid point; None runs
            whole batches (faster on large batches, exact only when decode sees the
            batch encode saw).
    """
    warmup = _resolve_warmup(warmup)  # Before anything is written.
    if run_config.image_size != model.image_shape[0]:
        logging.warning("export: run configuration image_size %d differs from the model's "
                        "input_shape %s; the signatures take %dx%d images.",
                        run_config.image_size, model.image_shape, run_config.image_size,
                        run_config.image_size)
    if run_config.num_classes != model.num_classes:
        logging.warning("export: run configuration num_classes %d differs from the model's "
                        "%d; the classifier has %d outputs.", run_config.num_classes,
                        model.num_classes, model.num_classes)
    if precision is not None:
        model = model.with_dtype_policy(precision)
    model = model.with_inference_chunk(inference_chunk)
    module = signatures_lib.ServingModule(
        model, image_size=run_config.image_size, crop_fraction=crop_fraction, top_k=top_k)
    version = resolve_version(export_dir, version, overwrite)
    final_dir = os.path.join(export_dir, str(version))
    what = f"export version {version}"
    staging_dir = files.staging_directory(export_dir, f"{STAGING_PREFIX}{version}-")
    try:
        tf.io.gfile.makedirs(export_dir)
        tf.saved_model.save(module, staging_dir, signatures=module.signatures())
        _write_metadata(staging_dir, module, run_config, version)
        if warmup:
            warmup_lib.write_warmup_file(staging_dir, module.example_inputs(batch_size=1),
                                         model_name)
        files.publish_directory(staging_dir, final_dir, overwrite, what=what)
    except BaseException as error:
        # Includes KeyboardInterrupt: whatever stopped the export, remove its staging copy.
        files.remove_quietly(staging_dir)
        if isinstance(error, files.WRITE_ERRORS) and not isinstance(
                error, (files.WriteError, FileExistsError)):
            versions = existing_versions(export_dir)
            raise files.write_error(
                what, final_dir, error,
                advice=(f"Nothing was published; the newest complete version is "
                        f"{os.path.join(export_dir, str(versions[-1])) if versions else 'none'}"
                        f". Free space and run the same command again.")) from None
        raise
    logging.info("Exported version %d to %s (signatures: %s).", version, final_dir,
                 ", ".join(sorted(module.signatures())))
    return final_dir


def export_model_path(model_path, export_dir, warmup=None, version=None, overwrite=False,
                      **kwargs):
    """Restores a trainer's model directory (or a `.keras` file) and exports it.

    The checkpoint is restored, and refused if it does not fit the recorded
    configuration, before anything is written; a version conflict is refused before the
    (slow) restore. `warmup`: see `export_saved_model`.
    """
    warmup = _resolve_warmup(warmup)
    resolve_version(export_dir, version, overwrite)
    model, run_config = model_dir_lib.restore_model(model_path)
    return export_saved_model(model, run_config, export_dir, version=version,
                              overwrite=overwrite, warmup=warmup, **kwargs)


def _write_metadata(saved_model_dir, module, run_config, version):
    """A JSON summary for people and tools (TF Serving ignores other files in assets.extra)."""
    signatures = module.signatures()
    metadata = {
        "version": version,
        "run_config": dataclasses.asdict(dataclasses.replace(
            run_config, mean=tuple(module.model.pixel_mean), std=tuple(module.model.pixel_std))),
        "image_size": module.image_size,
        "channels": module.channels,
        "pixel_range": list(signatures_lib.PIXEL_RANGE),
        "mean": list(module.model.pixel_mean),
        "std": list(module.model.pixel_std),
        "feature_shape": list(module.feature_shape),
        "feature_dtype": module.model.phi_dtype,
        "fraction_bits": module.model.grid.fraction_bits,
        "compute_dtype": module.model.dtype_policy.compute_dtype,
        "crop_fraction": module.crop_fraction,
        "top_k": module.top_k,
        # The kernel-choosing settings of the exporting machine (irevnet_tf.machine).
        machine.EXPORT_KEY: machine.describe(),
        "signatures": {
            name: {
                "inputs": {spec.name: spec.dtype.name for spec in function.input_signature},
                "outputs": list(module.output_names()[name]),
            }
            for name, function in sorted(signatures.items())
        },
    }
    directory = os.path.join(saved_model_dir, warmup_lib.WARMUP_DIRECTORY)
    tf.io.gfile.makedirs(directory)
    with tf.io.gfile.GFile(os.path.join(directory, METADATA_FILE), "w") as handle:
        handle.write(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
