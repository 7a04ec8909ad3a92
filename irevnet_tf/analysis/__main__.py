r"""Command line of the analyses: `python -m irevnet_tf.analysis --model=PATH --output_dir=DIR`.

Writes reconstructions, interpolation strips and separation-by-depth tables and plots for a
model directory, a `.keras` file or a SavedModel export (see `irevnet_tf.analysis.run_analyses`).
Example:

    python -m irevnet_tf.analysis --model=/tmp/run --output_dir=/tmp/run/analysis \\
        --dataset=digits --pairs=4 --steps=8 --level=stage
"""

import json

from absl import flags

from irevnet_tf import cli
from irevnet_tf import files
from irevnet_tf.analysis import runner

flags.DEFINE_string("model", None, "Model directory, .keras file, SavedModel export or TF "
                    "Serving base directory (highest version).", required=True)
flags.DEFINE_string("output_dir", None, "Where the PNG, JSON and CSV files go.",
                    required=True)
flags.DEFINE_string("dataset", "digits", "'digits' (embedded) or a dataset name "
                    "irevnet_tf.data.build_dataset knows.")
flags.DEFINE_string("data_dir", None, "Data directory for datasets other than digits.")
flags.DEFINE_integer("num_examples", None, "At most this many examples from each of the "
                     "train and held-out parts (default: all of digits; required otherwise).",
                     lower_bound=1)
flags.DEFINE_integer("pairs", 4, "Interpolation pairs.", lower_bound=1)
flags.DEFINE_integer("steps", 8, "Images per interpolation strip (end points included).",
                     lower_bound=2)
flags.DEFINE_enum("level", "stage", ["stage", "block"], "Representations measured by the "
                  "separation analysis: after each stage or after each block.")
flags.DEFINE_list("analyses", list(runner.ANALYSES), "Comma-separated subset of "
                  f"{','.join(runner.ANALYSES)}.")
flags.DEFINE_integer("batch_size", 64, "Examples per model call.", lower_bound=1)
flags.DEFINE_integer("image_size", None, "Image height and width (default: the model's).",
                     lower_bound=1)
flags.DEFINE_string("train_split", "train", "Training split (datasets other than digits).")
flags.DEFINE_bool("exact_grids", False, "Also write reconstructions_grid.png and "
                  "interpolation_pair_K.png: unlabelled exact pixel grids (one PNG pixel per "
                  "image pixel) for programs; the labelled figures are written either way.")
flags.DEFINE_string("holdout_split", "validation", "Held-out split (datasets other than "
                    "digits).")


def _check_analyses(names):
    """absl validator of --analyses: the runner's own check, as a flag error."""
    try:
        runner.parse_analyses(names)
    except ValueError as error:
        raise flags.ValidationError(str(error)) from None
    return True


flags.register_validator("analyses", _check_analyses)


def main(argv):
    values = flags.FLAGS
    if len(argv) > 1:
        cli.exit_with_error(f"unexpected arguments: {' '.join(argv[1:])}")
    # A PathFlagError leaves through cli.run: one line, exit status 2, nothing written.
    cli.check_directory_flag("output_dir", values.output_dir)
    try:
        results = runner.run_analyses(
            values.model, values.output_dir, dataset=values.dataset,
            data_dir=values.data_dir, num_examples=values.num_examples, pairs=values.pairs,
            steps=values.steps, level=values.level, analyses=values.analyses,
            batch_size=values.batch_size, image_size=values.image_size,
            train_split=values.train_split, holdout_split=values.holdout_split,
            exact_grids=values.exact_grids)
    except files.WriteError as error:  # Disk full etc.: one line naming the file.
        raise SystemExit(f"error: {error}") from None
    except (ValueError, FileNotFoundError) as error:
        # Bad flags or inputs: a one-line error, not a traceback or the whole usage text.
        cli.exit_with_error(error)
    print(f"Wrote {len(results['written'])} files to {results['output_dir']}:")
    for path, description in results["written"]:
        print(f"  {path}: {description}")
    # The last line stays machine-readable, for scripts that chain training, export and
    # analysis.
    print(json.dumps({"summary_json": results["summary_json"]}))


if __name__ == "__main__":
    cli.run(main)
