"""Converts the authors' released i-RevNet-301 PyTorch weights into a Keras `.keras` file.

    python export/convert_release.py --checkpoint=path/to/release.pth.tar \\
        --output=irevnet301.keras

Writes `irevnet301.keras` and `irevnet301.keras.run_config.json` (for the exporter and
the analysis tools; `irevnet_tf.model_files.restore_model` reads both). Needs no
torch and runs no code from the checkpoint. All logic lives in
`irevnet_tf.conversion.release`.
"""

import json

from absl import app, flags, logging

from irevnet_tf import cli
from irevnet_tf import configs
from irevnet_tf.conversion import release

FLAGS = flags.FLAGS
flags.DEFINE_string("checkpoint", None, "The release's torch.save file (e.g. the authors' "
                    "i-RevNet-301 ImageNet checkpoint); zip or legacy format.")
flags.DEFINE_string("output", None, "The .keras file to write; its RunConfig goes to "
                    "<output>.run_config.json.")
flags.DEFINE_enum("config", "irevnet301", configs.config_names(),
                  "Named configuration the checkpoint was trained with.")
flags.DEFINE_string("overrides", None, "JSON object of IRevNet keyword arguments on top of "
                    "--config, e.g. '{\"num_classes\": 10}'.")
flags.DEFINE_bool("overwrite", False, "Replace an existing --output.")
flags.DEFINE_enum("reader", "builtin", ["builtin", "torch"], "builtin: torch-free reader "
                  "that runs no pickled code; torch: torch.load(weights_only=True).")
flags.mark_flags_as_required(["checkpoint", "output"])


def _parse_overrides(text):
    if not text:
        return {}
    try:
        overrides = json.loads(text)
    except json.JSONDecodeError as error:
        raise cli.FlagValueError(f"--overrides must be a JSON object, got {text!r} ({error}).")
    if not isinstance(overrides, dict):
        raise cli.FlagValueError(f"--overrides must be a JSON object, got {text!r}.")
    return overrides


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    # Every flag before anything is read or written; a bad one leaves through cli.run (one
    # line, exit status 2).
    cli.check_file_flag("checkpoint", FLAGS.checkpoint, must_exist=True)
    cli.check_file_flag("output", FLAGS.output)
    overrides = _parse_overrides(FLAGS.overrides)
    try:
        summary = release.convert_release(
            FLAGS.checkpoint, FLAGS.output, config_name=FLAGS.config,
            overrides=overrides, overwrite=FLAGS.overwrite, reader=FLAGS.reader)
    except (ValueError, OSError) as error:  # OSError: FileExistsError, files.WriteError.
        # Refusals (a checkpoint that does not fit, an existing output, a corrupt file)
        # are messages for the user, not crashes: no traceback, exit status 1.
        logging.error("Nothing written: %s", error)
        return 1
    if summary.ignored_globals:
        logging.info("Ignored pickled objects outside the weights (never imported): %s",
                     ", ".join(summary.ignored_globals))
    logging.info("Mapped %d checkpoint entries onto the model's variables (%d "
                 "num_batches_tracked counters read past).", summary.entries_mapped,
                 summary.entries_ignored)
    logging.info("Model %r: %s trainable parameters (%s with batch-norm statistics).",
                 FLAGS.config, f"{summary.trainable_parameters:,}",
                 f"{summary.total_parameters:,}")
    logging.info("Wrote %s and %s.", summary.output, summary.run_config_path)


if __name__ == "__main__":
    cli.run(main)
