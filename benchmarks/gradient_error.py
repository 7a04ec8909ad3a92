r"""float32 gradient error at full depth: reversible vs plain autodiff, against float64 autodiff.

Builds the configuration (default irevnet301 at 64x64, batch 2: every block, small images
so that float64 stays cheap), copies the same float32 weights into a float32 reversible, a
float32 plain and a float64 plain model, and reports for each float32 gradient the
relative error of the concatenated gradient vector and the worst per-variable relative
error (irevnet_tf/benchmarking/gradient_error.py). Runs eagerly, in about a minute.

Examples:
    python benchmarks/gradient_error.py
    python benchmarks/gradient_error.py --randomize_batch_norm   # trained-like BN parameters
    python benchmarks/gradient_error.py --config=irevnet_cifar --image_size=32 --batch_size=4
"""

import json
import os
import sys
import tempfile

from absl import app, flags

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

FLAGS = flags.FLAGS
flags.DEFINE_string("config", "irevnet301", "Named configuration (irevnet_tf.config_names()).")
flags.DEFINE_integer("image_size", 64, "Image height and width; 0: the configuration's.")
flags.DEFINE_integer("batch_size", 2, "Images in the batch.")
flags.DEFINE_integer("seed", 0, "Seed of weights, images and labels.")
flags.DEFINE_bool("randomize_batch_norm", False,
                  "Random batch-norm gamma/beta (as in a trained model) instead of 1 and 0.")
flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16", "mixed_float16"],
                  "Dtype policy of the reversible and plain models (same weights).")
flags.DEFINE_string("output", "", "Write the result as JSON to this file.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from irevnet_tf.benchmarking import gradient_error

    result = gradient_error.gradient_errors(
        config_name=FLAGS.config, image_size=FLAGS.image_size or None,
        batch_size=FLAGS.batch_size, seed=FLAGS.seed,
        randomize_batch_norm=FLAGS.randomize_batch_norm, precision=FLAGS.precision)
    print(f"{FLAGS.config} blocks {tuple(result['blocks'])} at {result['image_size']}px, "
          f"batch {result['batch_size']}, {FLAGS.precision} gradients:")
    print(f"{'gradient':>22} {'concatenated':>13} {'worst variable':>15} {'median var.':>12}"
          f"  worst variable")
    for label, title in (("reversible_vs_plain", "reversible vs plain"),
                         ("reversible", "reversible vs float64"),
                         ("plain", "plain vs float64")):
        r = result[label]
        print(f"{title:>22} {r['relative_error']:13.3e} {r['worst_variable_error']:15.3e} "
              f"{r['median_variable_error']:12.3e}  {r['worst_variable']}")
    if FLAGS.output:
        directory = os.path.dirname(os.path.abspath(FLAGS.output))
        os.makedirs(directory, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=".gradient_error_")
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(result, file, indent=2)
        os.replace(temporary, FLAGS.output)


if __name__ == "__main__":
    app.run(main)
