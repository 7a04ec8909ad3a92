"""`run_analyses`: the reconstruction, interpolation and separation analyses of one model.

Everything that can be checked is checked before any analysis work or output: the analysis
names, the numeric options, that the model path holds a model, that the model supports the requested level and PNG-able images, and that the
data have at least 2 examples of every class in both parts (for the separation analysis);
then that the output directory can be written (creating it only once the inputs are known
to be usable, so that a refused run leaves no empty directory).
"""

import os
import time

from absl import logging

from irevnet_tf import validation
from irevnet_tf.analysis import (analysis_data, image_grid, interpolation, output_files,
                                 reconstruction, separation)
from irevnet_tf.analysis.invertible_model import (LEVELS, InvertibleModel,
                                                  load_invertible_model, resolve_model_path)

ANALYSES = ("reconstruction", "interpolation", "separation")
SUMMARY_FILE = "summary.json"


def parse_analyses(analyses):
    """A list of analysis names from a comma-separated string or a sequence; raises
    ValueError on unknown or no names."""
    if isinstance(analyses, str):
        analyses = [name.strip() for name in analyses.split(",")]
    names = [name for name in (analyses or []) if name]
    unknown = [name for name in names if name not in ANALYSES]
    if unknown or not names:
        raise ValueError(f"analyses: unknown {', '.join(map(repr, unknown)) or 'empty list'}; "
                         f"accepted: {', '.join(ANALYSES)} (comma-separated).")
    return list(dict.fromkeys(names))


def run_analyses(model, output_dir, dataset="digits", data_dir=None, num_examples=None,
                 pairs=4, steps=8, level="stage",
                 analyses=ANALYSES, batch_size=64, grid_examples=8, image_size=None,
                 train_split="train", holdout_split="validation", ridge_l2=1.0, seed=0,
                 exact_grids=False):
    """Runs the chosen analyses of `model` and writes their files into `output_dir`.

    Args:
        model: a path (model directory, `.keras` file, SavedModel export or TF Serving base
            directory; see `invertible_model.resolve_model_path`) or an `InvertibleModel`.
        output_dir: where the PNG, JSON and CSV files go (created if needed).
        dataset, data_dir, num_examples, train_split, holdout_split: the examples (see
            `analysis_data.load_examples`); num_examples caps each part.
        pairs, steps: interpolation pairs and images per interpolation strip.
        level: "stage" or "block": the depths the separation analysis measures.
        analyses: names from ANALYSES, as a sequence or a comma-separated string.
        batch_size: examples per model call.
        grid_examples: columns of the reconstruction grid.
        image_size: image height and width (default: the model's); needed for a
            SavedModel whose `encode` signature leaves them open.
        ridge_l2: the ridge classifier's penalty.
        seed: the digits subset's seed.
        exact_grids: also write `reconstructions_grid.png` and `interpolation_pair_K.png`,
            unlabelled exact pixel grids (one PNG pixel per image pixel) for programs; the
            labelled figures are written either way.

    Returns:
        A dict: `output_dir`, `summary_json`, `written` (`[(path, description)]` of every
        file written), and one entry per analysis run holding its written paths and key
        numbers (see each analysis module).
    """
    names = parse_analyses(analyses)
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}.")
    for argument, value, low in (("pairs", pairs, 1), ("steps", steps, 2),
                                 ("batch_size", batch_size, 1),
                                 ("grid_examples", grid_examples, 1)):
        validation.check_int(value, argument, low)
    validation.check_int(num_examples, "num_examples", 1, optional=True)
    if not isinstance(model, InvertibleModel):
        resolve_model_path(model)  # Fails on an empty or wrong path before any loading.
        model = load_invertible_model(model, batch_size=batch_size, image_size=image_size)
    if "separation" in names:
        model.check_level(level)
    channels = model.image_shape[-1]
    if channels not in image_grid.PNG_CHANNELS and {"reconstruction", "interpolation"} & set(
            names):
        raise ValueError(f"{model.source} takes {channels}-channel images; the reconstruction "
                         "and interpolation pictures need 1 (grey) or 3 (RGB) channels.")

    examples = analysis_data.load_examples(
        dataset, model.image_shape, num_examples=num_examples, data_dir=data_dir,
        train_split=train_split, holdout_split=holdout_split, seed=seed)
    if "separation" in names:
        analysis_data.check_examples_per_class(examples)
    if "interpolation" in names:
        interpolation.choose_pairs(examples.holdout_labels, 1)  # At least 2 classes.
    logging.info("Analysing %s on %s: %d training and %d held-out examples of shape %s.",
                 model.source, examples.dataset, len(examples.train_labels),
                 len(examples.holdout_labels), model.image_shape)

    output_dir = output_files.prepare_output_dir(output_dir)
    results = {"output_dir": output_dir}
    for number, name in enumerate(names, 1):
        logging.info("Analysis %d/%d: %s ...", number, len(names), name)
        start = time.perf_counter()
        if name == "reconstruction":
            results[name] = reconstruction.run_reconstruction(
                model, examples.holdout_pixels, examples.holdout_labels, output_dir,
                grid_examples=grid_examples, exact_grid=exact_grids)
            logging.info("Reconstruction: max |decode(encode(x)) - x| = %.3g of the largest "
                         "|x| over %d held-out images.",
                         results[name]["max_relative_error"], results[name]["num_images"])
        elif name == "interpolation":
            results[name] = interpolation.run_interpolation(
                model, examples.holdout_pixels, examples.holdout_labels, output_dir,
                num_pairs=pairs, steps=steps, exact_strips=exact_grids)
        else:
            results[name] = separation.run_separation(
                model, examples, output_dir, level=level, l2=ridge_l2)
        logging.info("Analysis %d/%d: %s done in %.1f s.", number, len(names), name,
                     time.perf_counter() - start)
    if "separation" in names:
        for row in results["separation"]["rows"]:
            logging.info("Separation %-16s linear %.3f  1-NN %.3f  contraction %.3f  "
                         "PCA-90 %d", row["name"], row["linear_accuracy"],
                         row["nearest_neighbour_accuracy"], row["contraction_ratio"],
                         row["pca_components_90"])
    summary = {"model": model.source, "dataset": examples.dataset, "analyses": names,
               **{name: _key_numbers(name, results[name]) for name in names}}
    results["summary_json"] = output_files.write_json(
        os.path.join(output_dir, SUMMARY_FILE), summary)
    results["written"] = written_files(results)
    return results


def written_files(results):
    """`[(path, what it is)]` of every file the analyses wrote, in a reading order."""
    written = []
    if "reconstruction" in results:
        report = results["reconstruction"]
        written += [(report["figure_png"], "reconstructions: originals, decode(encode(x)), "
                     "amplified difference (labelled figure)")]
        if report["grid_png"]:
            written += [(report["grid_png"], "the same as an exact, unlabelled pixel grid "
                         "(rows: originals, decode(encode(x)), amplified difference)")]
        written += [(report["json"], "reconstruction errors")]
    if "interpolation" in results:
        report = results["interpolation"]
        written += [(report["overview_png"], "interpolations: representation and pixel "
                     "walks side by side (labelled figure)")]
        written += [(pair["strip_png"], f"pair {k} (classes {pair['labels'][0]} to "
                     f"{pair['labels'][1]}) as an exact, unlabelled pixel strip (rows: "
                     "representation walk, pixel walk)")
                    for k, pair in enumerate(report["pairs"]) if pair["strip_png"]]
        written += [(report["json"], "interpolation pairs and t values")]
    if "separation" in results:
        report = results["separation"]
        if report["plot_png"]:
            written += [(report["plot_png"], "separation by depth (plot)")]
        written += [(report["csv"], "separation by depth (table)"),
                    (report["json"], "separation by depth (table and settings)")]
    written.append((results["summary_json"], "summary of all the analyses"))
    return written


def _key_numbers(name, result):
    """The numbers and paths of one analysis worth a summary line."""
    if name == "reconstruction":
        keys = ("max_abs_error", "max_relative_error", "rms_error", "amplification_factor",
                "figure_png", "grid_png", "json")
        return {key: result[key] for key in keys}
    if name == "interpolation":
        return {"strips": [pair["strip_png"] for pair in result["pairs"] if pair["strip_png"]],
                "overview_png": result["overview_png"], "json": result["json"]}
    return {"rows": [{key: row[key] for key in ("name", "linear_accuracy",
                                                "nearest_neighbour_accuracy",
                                                "contraction_ratio", "pca_components_90")}
                     for row in result["rows"]],
            "csv": result["csv"], "json": result["json"], "plot_png": result["plot_png"]}
