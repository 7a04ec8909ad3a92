"""Exports a trained i-RevNet for TensorFlow Serving: `<export_dir>/<version>/`.

    python export/export_savedmodel.py --model_dir=runs/imagenet --export_dir=exports/irevnet

`--model_dir` is a trainer's model directory (run_config.json + checkpoints/, the latest
checkpoint is used) or a `.keras` file (with its `<file>.run_config.json`). The version is
one past the highest existing one unless `--version` says otherwise; an existing version is
refused unless `--overwrite`. Signatures: serving_default (pixels in [0, 255] -> classes),
classify_image_bytes, encode, decode, encode_stages; see irevnet_tf/serving/signatures.py.
"""

from absl import app, flags, logging

from irevnet_tf import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "Trainer's model directory, or a .keras file.")
flags.DEFINE_string("export_dir", None, "Directory TF Serving watches; versions go below it.")
flags.DEFINE_integer("version", None, "Version to write (default: next free integer).",
                     lower_bound=1)
flags.DEFINE_boolean("overwrite", False, "Replace an existing version.")
flags.DEFINE_boolean("warmup", True, "Write assets.extra/tf_serving_warmup_requests when "
                     "tensorflow-serving-api is installed (without it the export is written "
                     "without them, said in one line); --nowarmup to skip them.")
flags.DEFINE_string("model_name", "irevnet", "TF Serving MODEL_NAME the warm-up requests use.")
flags.DEFINE_float("crop_fraction", 0.875, "Centre crop of classify_image_bytes (fraction of "
                   "the shorter side) before the resize to the model's image size.")
flags.DEFINE_enum("precision", None, ["float32", "mixed_bfloat16", "mixed_float16"],
                  "Dtype policy the export computes in (default: the model's). "
                  "mixed_bfloat16 is the fast path on TPUs and AMX CPUs; every choice is "
                  "exact: decode(encode(x)) gives x back.")
flags.DEFINE_integer("inference_chunk", 1,
                     "Images per model call inside the signatures: 1 makes each image's Phi "
                     "independent of how requests are batched (TF Serving's batching, "
                     "decoding one image of a batch); 0 runs whole batches (faster, exact "
                     "only when decode gets the batch encode made).", lower_bound=0)
flags.mark_flags_as_required(["model_dir", "export_dir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    # Path flags before anything is read or written; a PathFlagError leaves through cli.run
    # (one line, exit status 2). --model_dir may be a directory or a .keras file.
    cli.check_existing_flag("model_dir", FLAGS.model_dir,
                            "a trainer's model directory or a .keras file")
    cli.check_directory_flag("export_dir", FLAGS.export_dir)
    from irevnet_tf.serving import export

    try:
        path = export.export_model_path(
            FLAGS.model_dir, FLAGS.export_dir, version=FLAGS.version,
            overwrite=FLAGS.overwrite, warmup=None if FLAGS.warmup else False,
            model_name=FLAGS.model_name,
            crop_fraction=FLAGS.crop_fraction, precision=FLAGS.precision,
            inference_chunk=FLAGS.inference_chunk or None)
    except (OSError, ImportError, ValueError) as error:  # OSError: files.WriteError too.
        raise SystemExit(f"error: {error}") from None
    logging.info("SavedModel written to %s", path)
    print(path)


if __name__ == "__main__":
    cli.run(main)
