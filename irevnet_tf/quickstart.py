r"""The quickstart: the whole system on real images in a few minutes, with no download.

    python -m irevnet_tf.quickstart --output_dir=irevnet_quickstart

1. trains `irevnet_small` (the paper's CIFAR layout at 2 blocks per stage: an injective
   i-RevNet) with the real trainer on the 1,797 handwritten digits embedded in the
   package, upsampled to 32x32, the held-out fifth kept apart;
2. exports it for TensorFlow Serving;
3. loads the export with TensorFlow alone and checks decode(encode(x)) == x through the
   exported `encode` and `decode` signatures on the held-out digits;
4. writes the paper's analyses: reconstructions, interpolations, separation by depth;
and prints where everything went. Run it again with the same --output_dir and the
trainer resumes (a finished run is not trained again); a new export version is written.
The default --output_dir, irevnet_quickstart/ in the current directory, is git-ignored in
this repository's checkout.
"""

import json
import os
import time

from absl import flags, logging

from irevnet_tf import cli
from irevnet_tf import files
from irevnet_tf.training import config as config_lib
from irevnet_tf.training import flags as training_flags
from irevnet_tf.training.recipes import DIGITS_QUICKSTART

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", "irevnet_quickstart", "Where the run, the export and the "
                    "analyses go.")
# The training settings the quickstart lets you change: the trainer's own flags (declared
# once, in irevnet_tf/training/config.py), with the quickstart recipe's defaults.
training_flags.define_flags(
    names=("config", "train_epochs", "batch_size", "base_learning_rate", "seed"),
    defaults=DIGITS_QUICKSTART)
flags.adopt_module_key_flags(training_flags)

# The exported round trip, max |decode(encode(x)) - x| / max |x| (as the package reports it
# everywhere), must hold to this.
ROUND_TRIP_TOLERANCE = 1e-5


def run_quickstart(output_dir, **recipe_overrides):
    """Trains, exports, checks the exported inverse and analyses; returns a summary dict.

    `recipe_overrides` replace entries of `irevnet_tf.training.recipes.DIGITS_QUICKSTART`.
    """
    import tensorflow as tf

    from irevnet_tf.analysis import analysis_data, runner
    from irevnet_tf.serving import export as export_lib
    from irevnet_tf.training import trainer

    cli.check_directory_flag("output_dir", output_dir)  # Before anything is written.
    output_dir = os.path.abspath(output_dir)
    model_dir = os.path.join(output_dir, "model")
    export_dir = os.path.join(output_dir, "export")
    analysis_dir = os.path.join(output_dir, "analysis")
    start = time.perf_counter()

    recipe = dict(DIGITS_QUICKSTART, **recipe_overrides)
    # Every setting is checked (a FlagError naming it) before anything is written.
    config_lib.TrainConfig.from_dict(dict(recipe, model_dir=model_dir)).validate()
    logging.info("1/4 Training %s on the embedded digits (%s epochs) ...", recipe["config"],
                 recipe["train_epochs"])
    result = trainer.train(model_dir=model_dir, **recipe)
    training_seconds = time.perf_counter() - start

    logging.info("2/4 Exporting for TensorFlow Serving ...")
    # With TF Serving warm-up requests when tensorflow-serving-api is installed; without
    # them (said in one line) on the base install.
    version_dir = export_lib.export_model_path(model_dir, export_dir)

    logging.info("3/4 Checking decode(encode(x)) through the exported signatures ...")
    loaded = tf.saved_model.load(version_dir)
    # The export's fixed image shape, e.g. [None, 32, 32, 1].
    spec = loaded.signatures["encode"].structured_input_signature[1]["images"]
    examples = analysis_data.load_examples("digits", tuple(int(d) for d in spec.shape[1:]))
    pixels = tf.constant(examples.holdout_pixels, tf.float32)
    features = loaded.signatures["encode"](images=pixels)["features"]
    restored = loaded.signatures["decode"](features=features)["images"]
    restored = tf.cast(restored, tf.float32)
    round_trip = float(tf.reduce_max(tf.abs(restored - pixels)) / tf.reduce_max(tf.abs(pixels)))
    if not round_trip <= ROUND_TRIP_TOLERANCE:
        raise RuntimeError(f"The exported decode(encode(x)) differs from x by {round_trip:.3g} "
                           f"of the largest |x| (tolerance {ROUND_TRIP_TOLERANCE}).")
    logging.info("Exported round trip: max |decode(encode(x)) - x| = %.3g of the largest |x| "
                 "over %d held-out digits.", round_trip, len(examples.holdout_pixels))

    logging.info("4/4 Analyses: reconstructions, interpolations, separation by depth ...")
    analyses = runner.run_analyses(version_dir, analysis_dir, dataset="digits")

    summary = {
        "held_out_top1": result["eval_top1"],
        "held_out_examples": result["eval_examples"],
        "training_seconds": round(training_seconds, 1),
        "total_seconds": round(time.perf_counter() - start, 1),
        "exported_round_trip_max_error": round_trip,
        "model_dir": model_dir,
        "keras_model": result["keras_model"],
        "export": version_dir,
        "analysis": analysis_dir,
        "analysis_summary": analyses["summary_json"],
        # Every figure written (each labelled; the unlabelled exact grids are not asked for).
        "analysis_figures": [path for path, _ in analyses["written"] if path.endswith(".png")],
    }
    files.write_text(os.path.join(output_dir, "quickstart_summary.json"),
                     json.dumps(summary, indent=2), what="the quickstart summary")
    return summary


def main(argv):
    if len(argv) > 1:
        cli.exit_with_error(f"unexpected arguments: {' '.join(argv[1:])}")
    # A bad flag (cli.PathFlagError, training FlagError) leaves through cli.run: one line,
    # exit status 2, before anything is written.
    summary = run_quickstart(FLAGS.output_dir, config=FLAGS.config,
                             train_epochs=FLAGS.train_epochs, batch_size=FLAGS.batch_size,
                             base_learning_rate=FLAGS.base_learning_rate, seed=FLAGS.seed)
    print()
    print(f"Held-out accuracy:   {100 * summary['held_out_top1']:.2f} % of "
          f"{summary['held_out_examples']} digits never seen in training")
    print(f"Training time:       {summary['training_seconds']:.0f} s "
          f"(all steps: {summary['total_seconds']:.0f} s)")
    print(f"Exported inverse:    max |decode(encode(x)) - x| = "
          f"{summary['exported_round_trip_max_error']:.2e} of the largest |x|")
    print(f"Model directory:     {summary['model_dir']} (checkpoints, run_config.json, "
          "TensorBoard summaries)")
    print(f"Keras model:         {summary['keras_model']}")
    print(f"TF Serving export:   {summary['export']}")
    print(f"Analyses:            {summary['analysis']} (figures: "
          f"{', '.join(os.path.basename(path) for path in summary['analysis_figures'])}; "
          "tables: .json, .csv)")
    print(f"Summary:             {os.path.join(FLAGS.output_dir, 'quickstart_summary.json')}")


if __name__ == "__main__":
    cli.run(main)
